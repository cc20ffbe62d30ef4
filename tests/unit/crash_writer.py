"""Crash-test workload: writes, overwrites, deletes and completes multipart uploads in a loop on a
durable LocalStore until it is SIGKILLed. Run as: crash_writer.py ROOT LOG SEQ_BASE SEED, with
RS3GW_IO_BACKEND (uring|threads) choosing the I/O backend. With RS3GW_CRASH_VERSIONED=1 the
bucket has versioning Enabled and the operations are new versions, delete markers and deletes
of one version by id (``_one_versioned_op``).

Every operation appends "B\\t<key>\\t<kind>\\t<seq>\\t<data_seq>" to LOG before it starts and
"A\\t<key>\\t<seq>" once it returned, so the checker knows what was acknowledged and what was in
flight. The bytes of version (key, seq) are a pure function of both (see ``version_bytes``).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys

WORKERS = 4
KEYS_PER_WORKER = 3
BUCKET = "crash"


def worker_keys(w: int) -> list[str]:
    return [f"w{w}/plain", f"w{w}/\u00fcn\u00ef/\U0001F600", f"w{w}/../dot"][:KEYS_PER_WORKER]


def all_keys() -> list[str]:
    return [k for w in range(WORKERS) for k in worker_keys(w)]


def version_parts(key: str, seq: int) -> list[bytes]:
    """The bytes of version ``seq`` of ``key``, as the parts it is uploaded in (one if plain)."""
    rnd = random.Random(f"{key}\0{seq}")
    multipart = seq % 5 == 0
    n_parts = rnd.randint(2, 3) if multipart else 1
    # Around the inline threshold (64 KiB) and well above it: inline objects and data files mix,
    # and overwrites go both ways between them.
    sizes = [rnd.choice([0, 1, 4096, 20_000, 65_536, 65_537, 70_000, 300_000, 1_100_000])
             for _ in range(n_parts)]
    return [rnd.randbytes(s) for s in sizes]


def version_etag(key: str, seq: int) -> str:
    parts = version_parts(key, seq)
    if seq % 5 != 0:
        return hashlib.md5(parts[0]).hexdigest()
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


async def _write(store: object, data: bytes) -> object:
    w = store.begin_write(("crc32c",))  # type: ignore[attr-defined]
    try:
        # 16 KiB pieces up to 64 KiB (kept in memory while the body may end up inline), then
        # 256 KiB ones: the file is opened mid-stream when the total crosses the threshold.
        i = 0
        while i < len(data):
            n = 16 * 1024 if i < 64 * 1024 else 256 * 1024
            await w.write(data[i:i + n])
            i += n
        return await w.finish()
    except BaseException:
        await w.abort()
        raise


async def _one_op(store: object, log_fd: int, key: str, seq: int, rnd: random.Random) -> None:
    from rs3gw.storage import ObjectMeta, UploadInfo

    s = store
    kind = rnd.choices(["put", "meta", "delete"], weights=[70, 15, 15])[0]
    data_seq = seq
    cur = await s.get_object(BUCKET, key)  # type: ignore[attr-defined]
    if kind == "meta" and cur is None:
        kind = "put"
    if kind == "meta":
        data_seq = int(cur.headers["x-amz-meta-data-seq"])
    os.write(log_fd, f"B\t{key}\t{kind}\t{seq}\t{data_seq}\n".encode())
    headers = {"x-amz-meta-data-seq": str(data_seq), "x-amz-meta-rev": str(seq)}
    if kind == "delete":
        await s.delete_object(BUCKET, key)  # type: ignore[attr-defined]
    elif kind == "meta":
        meta = ObjectMeta(BUCKET, key, "", cur.size, cur.etag, 0, headers=headers,
                          segments=list(cur.segments), parts_count=cur.parts_count)
        await s.put_object(meta, None)  # type: ignore[attr-defined]
    elif seq % 5 != 0:
        res = await _write(s, version_parts(key, seq)[0])
        meta = ObjectMeta(BUCKET, key, "", 0, version_etag(key, seq), 0, headers=headers)
        await s.put_object(meta, res)  # type: ignore[attr-defined]
    else:
        up = await s.create_upload(UploadInfo("", BUCKET, key, 0, "o"))  # type: ignore[attr-defined]
        parts = version_parts(key, seq)
        # An unused extra part, replaced part numbers: garbage the commit must collect.
        await s.put_part(BUCKET, up.upload_id, 9, await _write(s, b"unused"), {})  # type: ignore[attr-defined]
        for pn, p in enumerate(parts, 1):
            if rnd.random() < 0.3:
                await s.put_part(BUCKET, up.upload_id, pn, await _write(s, b"stale"), {})  # type: ignore[attr-defined]
            await s.put_part(BUCKET, up.upload_id, pn, await _write(s, p), {})  # type: ignore[attr-defined]
        meta = ObjectMeta(BUCKET, key, "", 0, version_etag(key, seq), 0, headers=headers)
        await s.complete_upload(BUCKET, up.upload_id, meta, list(range(1, len(parts) + 1)))  # type: ignore[attr-defined]
    os.write(log_fd, f"A\t{key}\t{seq}\n".encode())


async def _one_versioned_op(store: object, log_fd: int, key: str, seq: int, rnd: random.Random,
                            mine: dict[str, list[str]]) -> None:
    """Log lines: "B key kind seq target" before (target: the version id a "delv" deletes, "-"
    otherwise), "A key seq version-id" after. ``mine``: the ids this worker saw acknowledged."""
    from rs3gw.storage import ObjectMeta, UploadInfo

    s = store
    ids = mine.setdefault(key, [])
    kind = rnd.choices(["put", "marker", "delv"], weights=[65, 15, 20])[0]
    if kind == "delv" and not ids:
        kind = "put"
    target = ids.pop(rnd.randrange(len(ids))) if kind == "delv" else "-"
    os.write(log_fd, f"B\t{key}\t{kind}\t{seq}\t{target}\n".encode())
    headers = {"x-amz-meta-data-seq": str(seq), "x-amz-meta-rev": str(seq)}
    if kind == "delv":
        res = await s.delete_object(BUCKET, key, target)  # type: ignore[attr-defined]
        vid = target
    elif kind == "marker":
        res = await s.delete_object(BUCKET, key, owner_id="o")  # type: ignore[attr-defined]
        vid = res.version_id
    elif seq % 5 != 0:
        meta = ObjectMeta(BUCKET, key, "", 0, version_etag(key, seq), 0, headers=headers)
        await s.put_object(meta, await _write(s, version_parts(key, seq)[0]))  # type: ignore[attr-defined]
        vid = meta.version_id
    else:
        up = await s.create_upload(UploadInfo("", BUCKET, key, 0, "o"))  # type: ignore[attr-defined]
        parts = version_parts(key, seq)
        for pn, p in enumerate(parts, 1):
            await s.put_part(BUCKET, up.upload_id, pn, await _write(s, p), {})  # type: ignore[attr-defined]
        meta = ObjectMeta(BUCKET, key, "", 0, version_etag(key, seq), 0, headers=headers)
        done = await s.complete_upload(BUCKET, up.upload_id, meta, list(range(1, len(parts) + 1)))  # type: ignore[attr-defined]
        vid = done.version_id
    if kind != "delv":
        ids.append(vid)
    os.write(log_fd, f"A\t{key}\t{seq}\t{vid}\n".encode())


async def main(root: str, log_path: str, seq_base: int, seed: int) -> None:
    from rs3gw._core.directio import select_backend
    from rs3gw.storage import BucketExists, LocalStore

    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    backend, _ = select_backend()  # RS3GW_IO_BACKEND from the test
    store = LocalStore(root, durable=True, io_backend=backend)
    await store.open()
    versioned = os.environ.get("RS3GW_CRASH_VERSIONED") == "1"
    try:
        await store.create_bucket(BUCKET, "o", "r")
    except BucketExists:
        pass
    if versioned:
        from rs3gw.storage import VERSIONING
        await store.set_bucket_config(BUCKET, VERSIONING, b"Enabled")
    os.write(log_fd, b"R\n")
    rnd = random.Random(seed)
    mine: dict[str, list[str]] = {}

    async def worker(w: int) -> None:
        seq = seq_base + w * 10_000
        wr = random.Random(rnd.random())
        while True:
            seq += 1
            if versioned:
                await _one_versioned_op(store, log_fd, wr.choice(worker_keys(w)), seq, wr, mine)
                continue
            await _one_op(store, log_fd, wr.choice(worker_keys(w)), seq, wr)
            # Now and then an upload left behind unfinished, its parts still referenced.
            if wr.random() < 0.05:
                from rs3gw.storage import UploadInfo
                up = await store.create_upload(UploadInfo("", BUCKET, f"w{w}/left", 0, "o"))
                await store.put_part(BUCKET, up.upload_id, 1, await _write(store, b"left"), {})

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))

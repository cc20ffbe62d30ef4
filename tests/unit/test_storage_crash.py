"""Crash safety: SIGKILL a durable writer at random moments, reopen, check every key and file."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
from crash_writer import BUCKET, all_keys, version_etag, version_parts

from rs3gw._core.directio import select_backend
from rs3gw.storage import LocalStore

ROUNDS = 24
HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"

State = tuple[int, int] | None     # (data_seq, rev) of the live version, or None when absent


def parse_log(text: str, known: dict[str, State]) -> dict[str, set[State]]:
    """For each key, the states it may legally be in: after its last acknowledged operation, or
    after the one still in flight when the process died."""
    acked: dict[str, State] = dict(known)
    begun: dict[str, tuple[str, int, int]] = {}
    inflight: dict[str, State] = {}
    for line in text.splitlines():
        f = line.split("\t")
        if f[0] == "B":
            key, kind, seq, dseq = f[1], f[2], int(f[3]), int(f[4])
            begun[key] = (kind, seq, dseq)
            inflight[key] = None if kind == "delete" else (dseq, seq)
        elif f[0] == "A":
            key, seq = f[1], int(f[2])
            kind, bseq, dseq = begun[key]
            assert bseq == seq
            acked[key] = None if kind == "delete" else (dseq, seq)
            del inflight[key]
    return {k: {acked.get(k)} | ({inflight[k]} if k in inflight else set()) for k in all_keys()}


async def _check_store(root: Path, allowed: dict[str, set[State]], kind: str) -> dict[str, State]:
    backend, _ = select_backend(kind)
    store = LocalStore(root, durable=True, io_backend=backend)
    try:
        return await _check_keys(store, allowed)
    finally:
        await backend.aclose()


async def _check_keys(store: LocalStore, allowed: dict[str, set[State]]) -> dict[str, State]:
    await store.open()
    actual: dict[str, State] = {}
    try:
        for key in all_keys():
            meta = await store.get_object(BUCKET, key)
            if meta is None:
                state: State = None
            else:
                data_seq = int(meta.headers["x-amz-meta-data-seq"])
                state = (data_seq, int(meta.headers["x-amz-meta-rev"]))
                it = await store.open_reader(meta)
                body = b"".join([c async for c in it])
                assert body == b"".join(version_parts(key, data_seq)), key
                assert meta.etag == version_etag(key, data_seq) and meta.size == len(body)
            assert state in allowed[key], (key, state, allowed[key])
            actual[key] = state
    finally:
        await store.close()
    return actual


def _check_files(root: Path) -> int:
    """Every data file and inline body is referenced and vice versa; returns how many live
    objects are inline."""
    base = root / ".rs3gw"
    assert os.listdir(base / "tmp") == []
    db = sqlite3.connect(base / "meta.db")
    try:
        referenced = {vid for (vid,) in db.execute("SELECT vid FROM parts")}
        inline: set[str] = set()
        for (blob,) in db.execute("SELECT meta FROM objects UNION ALL SELECT meta FROM versions"):
            for seg in msgpack.unpackb(blob)["segments"]:
                (inline if seg[4:5] == [True] else referenced).add(seg[0])
        stored_inline = {vid for (vid,) in db.execute("SELECT vid FROM inline_data")}
        assert db.execute("SELECT count(*) FROM gc").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM renames").fetchone()[0] == 0
    finally:
        db.close()
    files = {p.name for p in (base / "objects").rglob("*") if p.is_file()}
    assert files - referenced == set(), "orphan data files"
    assert referenced - files == set(), "referenced data files missing"
    assert stored_inline == inline, "orphan or missing inline bodies"
    return len(inline)


def _wait_ready(log: Path, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if log.exists() and b"R\n" in log.read_bytes():
            return
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.005)
    raise AssertionError("crash writer never became ready")


def _run_until_killed(root: Path, log: Path, rnd_no: int, rnd: random.Random,
                      env: dict[str, str], pause: tuple[float, float]) -> str:
    """One round: the crash writer runs on ``root`` and is SIGKILLed a random moment (within
    ``pause``) after it is ready; its log's text."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "crash_writer.py"), str(root), str(log),
         str((rnd_no + 1) * 100_000), str(rnd.randrange(1 << 30))],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(log, proc, time.monotonic() + 20)
        time.sleep(rnd.uniform(*pause))
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    return log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["uring", "threads"])
def test_sigkill_leaves_each_key_old_or_new(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    rnd = random.Random(1234)
    known: dict[str, State] = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]),
           "RS3GW_IO_BACKEND": kind}
    acked_total = 0
    inline_seen = 0
    for rnd_no in range(ROUNDS):
        log = tmp_path / f"log{rnd_no}"
        text = _run_until_killed(root, log, rnd_no, rnd, env, (0.0, 0.4))
        acked_total += text.count("\nA\t")
        allowed = parse_log(text, known)
        known = asyncio.run(_check_store(root, allowed, kind))
        inline_seen += _check_files(root)
    # The workload did real work between kills (not just start-up), inline objects included.
    assert acked_total > ROUNDS
    assert inline_seen > 0


# --- versioned bucket -------------------------------------------------------------------------

Versions = dict[str, set[str]]      # key -> the version ids (delete markers too) it holds


def parse_versioned_log(text: str, known: Versions) -> tuple[Versions, dict[str, tuple[str, int, str]]]:
    """What each key must hold after its acknowledged operations, and the operation still in
    flight per key when the process died: (kind, seq, target version id)."""
    present = {k: set(v) for k, v in known.items()}
    begun: dict[str, tuple[str, int, str]] = {}
    for line in text.splitlines():
        f = line.split("\t")
        if f[0] == "B":
            begun[f[1]] = (f[2], int(f[3]), f[4])
        elif f[0] == "A":
            key, seq, vid = f[1], int(f[2]), f[3]
            kind, bseq, target = begun.pop(key)
            assert bseq == seq
            if kind == "delv":
                present.setdefault(key, set()).discard(target)
            else:
                present.setdefault(key, set()).add(vid)
    return present, begun


async def _check_versions(root: Path, present: Versions,
                          inflight: dict[str, tuple[str, int, str]], kind: str) -> Versions:
    backend, _ = select_backend(kind)
    store = LocalStore(root, durable=True, io_backend=backend)
    await store.open()
    actual: Versions = {}
    try:
        entries = []
        marker, vmarker = "", ""
        while True:
            page = await store.list_object_versions(BUCKET, key_marker=marker,
                                                    version_id_marker=vmarker, max_keys=7)
            entries += page.entries
            if not page.is_truncated:
                break
            marker, vmarker = page.next_key_marker or "", page.next_version_id_marker or ""
        for key in all_keys():
            mine = [e for e in entries if e.key == key]
            ids = {e.version_id for e in mine}
            assert len(ids) == len(mine), f"{key}: a version listed twice"
            want = present.get(key, set())
            op = inflight.get(key)
            may_go = {op[2]} if op is not None and op[0] == "delv" else set()
            assert want - may_go <= ids, (key, "acknowledged versions lost", want - ids)
            extra = ids - want
            assert len(extra) <= 1 and (not extra or (op is not None and op[0] != "delv")), \
                (key, "versions nobody wrote", extra, op)
            for e in mine:
                meta = await store.get_object(BUCKET, key, e.version_id)
                assert meta is not None and meta.delete_marker == e.delete_marker
                if e.version_id in extra:
                    assert op is not None and (op[0] == "marker") == e.delete_marker, (key, op)
                    if not e.delete_marker:
                        assert int(meta.headers["x-amz-meta-rev"]) == op[1]
                if e.delete_marker:
                    continue
                seq = int(meta.headers["x-amz-meta-data-seq"])
                body = b"".join([c async for c in await store.open_reader(meta)])
                assert body == b"".join(version_parts(key, seq)), (key, e.version_id)
                assert meta.etag == version_etag(key, seq)
            current = await store.get_object(BUCKET, key)
            if mine and not mine[0].delete_marker:
                assert current is not None and current.version_id == mine[0].version_id
                assert [e.is_latest for e in mine] == [True] + [False] * (len(mine) - 1)
            else:
                assert current is None or current.delete_marker, key
            actual[key] = ids
    finally:
        await store.close()
        await backend.aclose()
    return actual


@pytest.mark.slow
def test_sigkill_leaves_every_version_whole_or_absent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rnd = random.Random(4321)
    known: Versions = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]),
           "RS3GW_CRASH_VERSIONED": "1"}
    acked_total = 0
    for rnd_no in range(ROUNDS // 2):
        log = tmp_path / f"log{rnd_no}"
        text = _run_until_killed(root, log, rnd_no, rnd, env, (0.05, 0.5))
        acked_total += text.count("\nA\t")
        present, inflight = parse_versioned_log(text, known)
        known = asyncio.run(_check_versions(root, present, inflight, "uring"))
        _check_files(root)
    assert acked_total > ROUNDS // 2
    assert sum(len(v) for v in known.values()) > len(all_keys()), "versions piled up"

"""Crash safety: SIGKILL during uploads, and graceful SIGTERM during a download."""
from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from servers import (
    LIVE_SERVERS,
    MIB,
    ServerProcess,
    User,
    make_client,
    sign_headers,
    wait_for,
)

ROUNDS = 10
SHARED_KEYS = [f"shared-{i}" for i in range(4)]
SIZES = [0, 1000, 64 * 1024, 700 * 1024, 3 * MIB]


@dataclass
class Attempt:
    digest: str
    acked: bool = False


@dataclass
class History:
    """Every PUT attempted per key, in order; acked once the server answered 200."""

    attempts: dict[str, list[Attempt]] = field(default_factory=dict)

    def allowed(self, key: str) -> tuple[set[str], bool]:
        """Digests the key may hold after a crash, and whether it may be absent."""
        tries = self.attempts.get(key, [])
        last_ack = max((i for i, a in enumerate(tries) if a.acked), default=-1)
        allowed = {a.digest for a in tries[max(last_ack, 0):]}
        if last_ack >= 0:
            allowed = {tries[last_ack].digest} | {a.digest for a in tries[last_ack + 1:]}
        return allowed, last_ack < 0


def _payload(rng: random.Random) -> bytes:
    size = rng.choice(SIZES)
    return os.urandom(size)


def _writer(client: Any, bucket: str, rnd: int, rng: random.Random, history: History,
            acks: list[int], kill_after: int, kill_now: threading.Event,
            errors: list[BaseException]) -> None:
    i = 0
    while True:
        key = rng.choice(SHARED_KEYS) if rng.random() < 0.4 else f"r{rnd:02d}-{i:04d}"
        body = _payload(rng)
        attempt = Attempt(hashlib.sha256(body).hexdigest())
        history.attempts.setdefault(key, []).append(attempt)
        try:
            resp = client.put_object(Bucket=bucket, Key=key, Body=body)
        except (BotoCoreError, ClientError) as exc:  # the kill shows up as a connection error
            errors.append(exc)
            kill_now.set()
            return
        if resp["ETag"] != f'"{hashlib.md5(body).hexdigest()}"':
            errors.append(AssertionError(f"wrong ETag for {key}: {resp['ETag']}"))
            kill_now.set()
            return
        attempt.acked = True
        acks[0] += 1
        if acks[0] >= kill_after:
            kill_now.set()
        i += 1


def _verify(client: Any, bucket: str, history: History) -> int:
    listed = {o["Key"]: o for p in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
              for o in p.get("Contents", [])}
    assert set(listed) <= set(history.attempts), set(listed) - set(history.attempts)
    checked = 0
    for key in history.attempts:
        allowed, may_be_absent = history.allowed(key)
        try:
            resp = client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "NoSuchKey"
            assert may_be_absent, f"acknowledged key {key} lost after SIGKILL"
            assert key not in listed
            continue
        data = resp["Body"].read()
        assert resp["ETag"] == f'"{hashlib.md5(data).hexdigest()}"', f"torn object {key}"
        assert hashlib.sha256(data).hexdigest() in allowed, f"{key} holds content never acknowledged"
        assert key in listed and listed[key]["Size"] == len(data)
        checked += 1
    return checked


def _tmp_files(root: Path) -> list[Path]:
    tmp = root / ".rs3gw" / "tmp"
    return [p for p in tmp.rglob("*") if p.is_file()] if tmp.exists() else []


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path: Path, root_user: User) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    srv = ServerProcess(storage_root=tmp_path / "root", root_user=root_user, fsync=True)
    LIVE_SERVERS.append(srv)
    history = History()
    bucket = "durable"
    try:
        srv.start()
        make_client(srv).create_bucket(Bucket=bucket)
        for rnd in range(ROUNDS):
            if rnd:
                srv.start()
            client = make_client(srv, connect_timeout=5, read_timeout=30)
            _verify(client, bucket, history)
            acks, kill_now, errors = [0], threading.Event(), []
            kill_after = rng.randint(2, 30)
            writer = threading.Thread(target=_writer, args=(client, bucket, rnd, rng, history, acks,
                                                            kill_after, kill_now, errors), daemon=True)
            writer.start()
            assert kill_now.wait(120), f"writer stalled (seed {seed})"
            assert not errors, f"PUT failed before the kill (seed {seed}): {errors}"
            srv.kill()
            writer.join(60)
            assert not writer.is_alive()
        srv.start()
        client = make_client(srv)
        checked = _verify(client, bucket, history)
        assert checked >= ROUNDS
        wait_for(lambda: not _tmp_files(srv.storage_root), 30,
                 f"tmp/ to be cleaned after restart: {_tmp_files(srv.storage_root)}")
        assert srv.stop() == 0
    except BaseException:
        print(f"durability seed: {seed}")
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill()
        raise
    finally:
        LIVE_SERVERS.remove(srv)


@pytest.mark.slow
def test_sigterm_completes_inflight_download(tmp_path: Path, root_user: User) -> None:
    srv = ServerProcess(storage_root=tmp_path / "root", root_user=root_user)
    LIVE_SERVERS.append(srv)
    try:
        srv.start()
        client = make_client(srv)
        client.create_bucket(Bucket="drain")
        data = os.urandom(48 * MIB)
        client.put_object(Bucket="drain", Key="big", Body=data)

        conn = srv.connection(timeout=60)
        conn.request("GET", "/drain/big",
                      headers=sign_headers(srv, "GET", "/drain/big", user=root_user))
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.read(256 * 1024)
        # The rest of the body cannot all sit in socket buffers yet: the server is mid-stream.
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        rest = resp.read()
        conn.close()
        assert len(first) + len(rest) == len(data)
        assert hashlib.sha256(first + rest).digest() == hashlib.sha256(data).digest()
        assert srv.stop() == 0
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill()
        LIVE_SERVERS.remove(srv)

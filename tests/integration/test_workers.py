"""RS3GW_WORKERS: a supervisor and worker processes on one port and one storage root, tested as a
user runs them (`python -m rs3gw`), with connections spread by the kernel (SO_REUSEPORT)."""
from __future__ import annotations

import http.client
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    LIVE_SERVERS,
    ServerProcess,
    User,
    make_client,
    sign_headers,
    start_server,
    stop_server,
    wait_for,
)

CONNECTIONS = 16


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def established_on(pid: int, port: int) -> int:
    """How many of ``pid``'s sockets are accepted connections on local ``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    n = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local_port = int(f[1].split(":")[1], 16)
        if local_port == port and f[3] == "01" and f[9] in inodes:   # 01: ESTABLISHED
            n += 1
    return n


def open_connections(srv: ServerProcess, n: int) -> list[http.client.HTTPConnection]:
    """``n`` keep-alive connections, each having answered one request (so it is accepted)."""
    conns = []
    for _ in range(n):
        c = srv.connection()
        c.request("GET", "/health")
        r = c.getresponse()
        r.read()
        assert r.status == 200
        conns.append(c)
    return conns


def signed_get(srv: ServerProcess, conn: http.client.HTTPConnection, path: str,
               user: User) -> tuple[int, bytes]:
    conn.request("GET", path, headers=sign_headers(srv, "GET", path, user=user))
    r = conn.getresponse()
    return r.status, r.read()


@pytest.fixture
def workers_server(tmp_path: Path, root_user: User) -> Iterator[ServerProcess]:
    """A gateway with two workers; each test stops it (stop_server checks the exit code), and a
    test that fails before that must not leave its processes behind."""
    srv = start_server(tmp_path, root_user, [], extra_env={"RS3GW_WORKERS": "2"})
    assert srv.proc is not None
    try:
        wait_for(lambda: len(children(srv.proc.pid)) == 2, 10, "two worker processes")
        yield srv
    finally:
        if srv.proc.poll() is None:
            srv.kill()
        if srv in LIVE_SERVERS:
            LIVE_SERVERS.remove(srv)


def test_connections_reach_every_worker_and_bucket_changes_reach_every_connection(
        workers_server: ServerProcess, root_user: User) -> None:
    srv = workers_server
    assert srv.proc is not None and "workers=2" in srv.stderr_text()
    conns = open_connections(srv, CONNECTIONS)
    try:
        # The kernel hashes connections over the two sockets: all 16 on one worker has odds 2**-15.
        per_worker = [established_on(pid, srv.port) for pid in children(srv.proc.pid)]
        assert sum(per_worker) == CONNECTIONS and min(per_worker) > 0, per_worker
        s3 = make_client(srv)
        s3.create_bucket(Bucket="spread")
        # Every connection (so both workers) caches the bucket with no tags ...
        for c in conns:
            status, body = signed_get(srv, c, "/spread?tagging", root_user)
            assert status == 404 and b"NoSuchTagSet" in body
        # ... then one write through another connection must reach all of their caches.
        s3.put_bucket_tagging(Bucket="spread",
                              Tagging={"TagSet": [{"Key": "team", "Value": "hpc"}]})
        for c in conns:
            status, body = signed_get(srv, c, "/spread?tagging", root_user)
            assert status == 200 and b"<Value>hpc</Value>" in body
        s3.delete_bucket_tagging(Bucket="spread")
        s3.delete_bucket(Bucket="spread")
        for c in conns:
            status, body = signed_get(srv, c, "/spread?tagging", root_user)
            assert status == 404 and b"NoSuchBucket" in body
    finally:
        for c in conns:
            c.close()
    stop_server(srv)


def test_metrics_add_up_over_the_workers(workers_server: ServerProcess, root_user: User) -> None:
    srv = workers_server
    s3 = make_client(srv)
    s3.create_bucket(Bucket="counted")
    conns = open_connections(srv, CONNECTIONS)
    try:
        for c in conns:
            for _ in range(3):
                status, _ = signed_get(srv, c, "/counted?list-type=2", root_user)
                assert status == 200
    finally:
        for c in conns:
            c.close()
    status, _, body = srv.raw("GET", "/metrics")
    assert status == 200
    text = body.decode()
    m = re.search(r'^rs3gw_requests_total\{operation="ListObjectsV2",status="200"\} (\S+)$', text,
                  re.MULTILINE)
    assert m and float(m.group(1)) == 3 * CONNECTIONS, text
    assert re.search(r"^rs3gw_requests_in_flight \S+$", text, re.MULTILINE)   # one series, not per pid
    stop_server(srv)


def test_a_dead_worker_is_replaced_and_the_gateway_keeps_serving(
        workers_server: ServerProcess) -> None:
    srv = workers_server
    assert srv.proc is not None
    s3 = make_client(srv)
    s3.create_bucket(Bucket="survives")
    s3.put_object(Bucket="survives", Key="k", Body=b"still here")
    victim = children(srv.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in children(srv.proc.pid) and len(children(srv.proc.pid)) == 2,
             10, "a replacement worker")
    wait_for(lambda: "worker 1 exited unexpectedly (killed by SIGKILL)" in srv.stderr_text()
             or "worker 2 exited unexpectedly (killed by SIGKILL)" in srv.stderr_text(), 10,
             "the supervisor to report the dead worker")
    # Fresh connections land on both workers, the new one included.
    for _ in range(CONNECTIONS):
        assert make_client(srv).get_object(Bucket="survives", Key="k")["Body"].read() == \
            b"still here"
    stop_server(srv)


def test_sigterm_stops_every_process_and_sigkill_of_the_supervisor_takes_the_workers_along(
        tmp_path: Path, root_user: User) -> None:
    srv = start_server(tmp_path, root_user, [], extra_env={"RS3GW_WORKERS": "2"}, fsync=True)
    try:
        assert srv.proc is not None
        wait_for(lambda: len(children(srv.proc.pid)) == 2, 10, "two worker processes")
        s3 = make_client(srv)
        s3.create_bucket(Bucket="lives")
        for i in range(20):
            s3.put_object(Bucket="lives", Key=f"k{i}", Body=os.urandom(100_000 * (i % 3)))
        workers = children(srv.proc.pid)
        srv.kill()
        wait_for(lambda: not any(alive(p) for p in workers), 5, "the workers to die with it")
        # A new gateway on the same root: recovery, then every acknowledged object is there.
        srv.start()
        workers = children(srv.proc.pid)
        s3 = make_client(srv)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lives")["Contents"]]
        assert sorted(keys) == sorted(f"k{i}" for i in range(20))
    except BaseException:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill()
        if srv in LIVE_SERVERS:
            LIVE_SERVERS.remove(srv)
        raise
    stop_server(srv)
    assert not any(alive(p) for p in workers)
    tmp = srv.storage_root / ".rs3gw" / "tmp"
    assert not [p for p in tmp.iterdir() if p.is_file()]


def test_one_worker_means_one_process(tmp_path: Path, root_user: User) -> None:
    srv = start_server(tmp_path, root_user, [], extra_env={"RS3GW_WORKERS": "1"})
    assert srv.proc is not None
    try:
        time.sleep(0.2)
        assert children(srv.proc.pid) == []
        assert "workers=" not in srv.stderr_text()
    finally:
        stop_server(srv)


def test_ctrl_c_reaches_every_process_and_stops_them_cleanly(tmp_path: Path,
                                                            root_user: User) -> None:
    # A terminal's Ctrl-C signals the whole foreground process group: the workers stop on their
    # own while the supervisor stops them too; none of them may be taken for a crash and replaced.
    srv = ServerProcess(storage_root=tmp_path / "root", root_user=root_user,
                        extra_env={"RS3GW_WORKERS": "2"})
    srv.start_new_session = True
    srv.start()
    LIVE_SERVERS.append(srv)
    assert srv.proc is not None
    try:
        wait_for(lambda: len(children(srv.proc.pid)) == 2, 10, "two worker processes")
        os.killpg(srv.proc.pid, signal.SIGINT)
        assert srv.proc.wait(30) == 0
        assert "exited unexpectedly" not in srv.stderr_text()
    finally:
        stop_server(srv)


def test_a_worker_that_cannot_start_stops_the_gateway(tmp_path: Path, root_user: User) -> None:
    # O_DIRECT forced on the thread backend: each worker's store refuses it when it opens.
    srv = ServerProcess(storage_root=tmp_path / "root", root_user=root_user,
                        extra_env={"RS3GW_WORKERS": "2", "RS3GW_IO_BACKEND": "threads",
                                   "RS3GW_DIRECT_IO": "on"})
    with pytest.raises(RuntimeError, match="did not start"):
        srv.start(timeout_s=30)
    assert srv.proc is not None and srv.proc.wait(10) == 1
    assert "RS3GW_DIRECT_IO=on needs the io_uring backend" in srv.stderr_text()
    assert "could not start 2 worker process(es)" in srv.stderr_text()


def test_an_address_it_cannot_listen_on_stops_the_supervisor(tmp_path: Path,
                                                             root_user: User) -> None:
    srv = ServerProcess(storage_root=tmp_path / "root", root_user=root_user,
                        extra_env={"RS3GW_WORKERS": "2", "RS3GW_BIND_ADDR": "192.0.2.1:0"})
    with pytest.raises(RuntimeError, match="did not start"):
        srv.start(timeout_s=30)
    assert srv.proc is not None and srv.proc.wait(10) == 1
    assert srv.stderr_text().count("rs3gw: cannot start") == 1

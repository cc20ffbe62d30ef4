"""Servers a load run starts and stops itself, all on 127.0.0.1: rs3gw (durable, temp storage root),
nginx (static files, generated config), moto in server mode. Each is a context manager that leaves
nothing running and removes what it created only under its own temp directory."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
RS3GW_LISTEN_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def real_disk_dir(prefix: str, candidates: list[str]) -> Path:
    """A new directory under the first candidate that is not on tmpfs."""
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    for cand in candidates:
        real = os.path.realpath(cand)
        best = max((m for m in mounts if real == m[1] or real.startswith(m[1].rstrip("/") + "/")),
                   key=lambda m: len(m[1]))
        if best[2] not in ("tmpfs", "ramfs"):
            return Path(tempfile.mkdtemp(prefix=prefix, dir=real))
    raise RuntimeError(f"no non-tmpfs directory among {candidates}")


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return                               # it answers: that is all we wait for
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url}: not answering after {START_TIMEOUT_S} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


class _Managed:
    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = workdir / f"{self.name}.log"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Rs3gw(_Managed):
    name = "rs3gw"

    def __init__(self, workdir: Path, access_key: str, secret_key: str, fsync: bool = True,
                 storage_root: Path | None = None, env: dict[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.storage_root = storage_root or workdir / "rs3gw-data"
        self.env = {**os.environ, "RS3GW_BIND_ADDR": "127.0.0.1:0", "RS3GW_STORAGE_ROOT": str(self.storage_root),
                    "RS3GW_ACCESS_KEY": access_key, "RS3GW_SECRET_KEY": secret_key,
                    "RS3GW_FSYNC": "true" if fsync else "false", "RS3GW_LOG_LEVEL": "WARNING",
                    **(env or {})}
        self.start_line = ""

    def start(self) -> None:
        self.storage_root.mkdir(parents=True, exist_ok=True)
        # INFO for the start-up line only; WARNING would hide it. Access logging is not per request.
        env = {**self.env, "RS3GW_LOG_LEVEL": "INFO"}
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "rs3gw"], env=env, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            m = RS3GW_LISTEN_RE.search(text)
            if m:
                self.port = int(m.group(1))
                self.start_line = next(ln for ln in text.splitlines() if "listening on" in ln)
                _wait_http(f"http://127.0.0.1:{self.port}/ready", self.proc, self.log)
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"rs3gw exited with {self.proc.returncode}: {text[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("rs3gw did not log its listening line")


class Moto(_Managed):
    name = "moto"

    def start(self) -> None:
        self.port = free_port()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        _wait_http(f"http://127.0.0.1:{self.port}/moto-api/", self.proc, self.log)


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not found:
        raise RuntimeError("nginx not found: run ci/bench-setup.sh (apt-get install nginx-light)")
    return found


class Nginx(_Managed):
    """nginx serving `root` as static files. Run as root, its workers drop to `nobody`, so the served
    tree is made world-readable."""

    name = "nginx"

    def __init__(self, workdir: Path, root: Path) -> None:
        super().__init__(workdir)
        self.root = root

    def start(self) -> None:
        self.port = free_port()
        d = self.workdir / "nginx"
        d.mkdir(exist_ok=True)
        for p in [self.workdir, d, *self.root.rglob("*"), self.root]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(d=d, port=self.port, root=self.root))
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", str(d)],
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        _wait_http(f"http://127.0.0.1:{self.port}/", self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGQUIT)      # graceful: master waits for its workers
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _stop(self.proc)
            self.proc = None


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (rs3gw with RS3GW_WORKERS > 1 is a supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """Resident set of `pid` and its descendants: the sum of their VmRSS (pages the workers
    share copy-on-write count once per process, so this overstates; see pss_bytes). 0 when gone."""
    return sum(_status_kib(p, "VmRSS:") for p in process_tree(pid)) * 1024


def pss_bytes(pid: int) -> int:
    """Proportional set size of `pid` and its descendants: shared pages split between the
    processes that map them, i.e. the memory the tree really holds. 0 when gone."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def process_cpu_s(pid: int) -> float:
    """utime + stime of `pid` and its live descendants from /proc, in seconds."""
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return total

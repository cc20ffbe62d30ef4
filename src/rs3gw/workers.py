"""RS3GW_WORKERS: several server processes on one port and one storage root.

One Python process runs one event loop and, under load, one core's worth of Python (the GIL); the
request path (HTTP parsing, SigV4, the metadata lookup, the response) is Python. So the gateway
runs N worker processes, each a complete server (rs3gw.server.serve) with its own loop, threads
and SQLite connections, and this module is the small supervisor above them.

What the supervisor does, in this order, before any thread exists (fork() copies only the
calling thread, so nothing may run in another one yet):
1. owns the storage root: takes the lock and runs crash recovery (rootlock.take_root); the
   workers inherit the locked descriptor, so the root stays locked while any of them lives;
2. opens one listening socket per worker, all bound to the same address with SO_REUSEPORT (the
   kernel spreads new connections over them); with port 0 the first one picks the port. It keeps
   its own reference to every socket: a worker that dies and is replaced gets the same socket
   back, with the connections that queued on it meanwhile;
3. forks the workers (PR_SET_PDEATHSIG: a supervisor killed with SIGKILL takes them along), waits
   until each reported it is listening, then logs the one "listening on" line;
4. replaces a worker that exits unexpectedly (a few times; a crash loop stops the gateway);
5. on SIGTERM/SIGINT: stops listening, passes SIGTERM on (each worker drains its requests),
   waits, then finishes recovery (rootlock.release_root) once no process writes any more.

Shared state between workers lives in the storage root only: SQLite (WAL) serialises the
metadata writers, data files have unique names, and the bucket cache checks a generation shared
through the root (storage.bucketgen). Metrics use prometheus-client's multi-process mode, set up
by rs3gw.cli.server before prometheus_client is imported. Cluster mode runs one process (the
node's state is in memory), and so does RS3GW_WORKERS=1.
"""
from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass

from . import __version__
from .config import LOG_FORMAT, Config
from .storage.datafiles import DataLayout
from .storage.metadb import connect_writer
from .storage.rootlock import release_root, take_root
from .tls import ssl_context

log = logging.getLogger("rs3gw")

# A previous gateway's workers may outlive their killed supervisor by a few milliseconds
# (PDEATHSIG is delivered as the supervisor exits): wait that long for the root's lock.
ROOT_LOCK_WAIT_S = 5.0
START_TIMEOUT_S = 120.0
# A worker that keeps dying is a bug or a broken host, not bad luck: more than this many
# replacements per worker within RESTART_WINDOW_S stops the gateway.
RESTARTS_PER_WORKER_MAX = 3
RESTART_WINDOW_S = 60.0
# After the drain deadline workers get this long to close before they are killed.
STOP_GRACE_S = 15.0

_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
_PR_SET_PDEATHSIG = 1


@dataclass
class _Slot:
    index: int
    sock: socket.socket
    pid: int = 0


def listening_sockets(host: str, port: int, n: int, backlog: int) -> list[socket.socket]:
    """``n`` listening sockets on one address, SO_REUSEPORT (port 0: the first picks it)."""
    family, type_, proto, _, addr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(family, type_, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(addr)
            addr = s.getsockname()       # the port the first socket was given
            s.listen(backlog)
            s.setblocking(False)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


class Supervisor:
    def __init__(self, cfg: Config, n: int) -> None:
        self.cfg = cfg
        self.n = n
        self.slots: list[_Slot] = []
        self.stopping = False
        self.failed = False
        self.started = False       # every worker reported once: from now on, replace the dead
        self._restarts: dict[int, list[float]] = {}
        self._ready_r = self._ready_w = -1
        self._pending = b""

    # --- workers ---------------------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        parent = os.getpid()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            slot.pid = pid
            return
        rc = 1
        try:
            rc = self._worker(slot, parent)
        except BaseException:  # noqa: BLE001 - a worker must never return into the supervisor
            traceback.print_exc()
        finally:
            logging.shutdown()
            sys.stderr.flush()
            os._exit(rc)

    def _worker(self, slot: _Slot, parent: int) -> int:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:      # the supervisor died before prctl took effect
            return 1
        for other in self.slots:
            if other is not slot:
                other.sock.close()
        os.close(self._ready_r)
        for h in logging.getLogger().handlers:
            h.setFormatter(logging.Formatter(LOG_FORMAT.replace("%(name)s", f"%(name)s[w{slot.index}]")))
        # The server is imported here, after fork(), not by the supervisor: it stays small, and
        # no worker carries pages another one dirtied (CPython's reference counts write to
        # nearly every object it touches, so "shared until written" saves little).
        from .server import WorkerSeat, run
        seat = WorkerSeat(index=slot.index, workers=self.n, sock=slot.sock,
                          ready_fd=self._ready_w)
        return run(self.cfg, None, seat)

    def _reap(self) -> list[tuple[_Slot, int]]:
        """Workers that exited, with their wait status."""
        gone = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for slot in self.slots:
                if slot.pid == pid:
                    slot.pid = 0
                    gone.append((slot, status))
            _forget_metrics(pid)
        return gone

    def _live(self) -> list[_Slot]:
        return [s for s in self.slots if s.pid]

    def _replace(self, slot: _Slot, status: int) -> None:
        now = time.monotonic()
        recent = [t for t in self._restarts.get(slot.index, []) if now - t < RESTART_WINDOW_S]
        if len(recent) >= RESTARTS_PER_WORKER_MAX:
            log.error("worker %d keeps exiting (%s); stopping the gateway", slot.index,
                      _describe(status))
            self.failed = True
            self._stop()
            return
        recent.append(now)
        self._restarts[slot.index] = recent
        log.error("worker %d exited unexpectedly (%s); starting a new one", slot.index,
                  _describe(status))
        self._spawn(slot)

    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        # Stop listening first: connections that would queue on a socket no worker drains any
        # more are refused instead (the workers close their references as they begin to drain).
        for slot in self.slots:
            slot.sock.close()
        for slot in self._live():
            _signal(slot.pid, signal.SIGTERM)

    def _read_ready(self, timeout: float) -> list[str]:
        r, _, _ = select.select([self._ready_r], [], [], timeout)
        if not r:
            return []
        data = os.read(self._ready_r, 65536)
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        return [ln.decode("utf-8", "replace") for ln in lines]

    # --- the supervisor's life ---------------------------------------------------------------------

    def run(self) -> int:
        ssl_context(self.cfg)   # unreadable TLS files: one clear error, not one per worker
        layout = DataLayout(self.cfg.storage_root, self.cfg.fsync)
        lock_fd, conn = take_root(layout, self.cfg.fsync, wait_s=ROOT_LOCK_WAIT_S)
        conn.close()    # a SQLite connection must not cross fork()
        try:
            socks = listening_sockets(self.cfg.bind_host, self.cfg.bind_port, self.n,
                                      backlog=1024)
        except BaseException:
            os.close(lock_fd)
            raise
        self.slots = [_Slot(i + 1, s) for i, s in enumerate(socks)]
        self._ready_r, self._ready_w = os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for slot in self.slots:
                self._spawn(slot)
            if self._await_start():
                self._serve()
            self._await_exit()
        finally:
            for slot in self.slots:
                slot.sock.close()
            os.close(self._ready_r)
            os.close(self._ready_w)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            release_root(layout, connect_writer(layout.base / "meta.db", self.cfg.fsync), lock_fd)
        log.info("rs3gw stopped")
        return 1 if self.failed else 0

    def _await_start(self) -> bool:
        ready: dict[int, str] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(ready) < self.n:
            for line in self._read_ready(0.05):
                index, _, where = line.partition(" ")
                ready[int(index)] = where
            if self._signalled() or self.stopping:
                return False
            if any(not slot.pid for slot in self.slots) or time.monotonic() > deadline:
                # A worker that cannot start (bad TLS files, a forced io_uring the kernel
                # refuses, ...) said why on stderr; the others would only fail the same way.
                log.error("rs3gw could not start %d worker process(es)", self.n)
                self.failed = True
                self._stop()
                return False
        log.info("rs3gw %s listening on %s workers=%d", __version__, ready[1], self.n)
        return True

    def _signalled(self, wait_s: float = 0.0) -> bool:
        """Handle the signals that arrive within ``wait_s`` (and any already pending): a stop
        request stops, a dead worker is replaced once all started. True once stopping."""
        info = signal.sigtimedwait(_SIGNALS, wait_s)
        while info is not None:
            if info.si_signo != signal.SIGCHLD:
                self._stop()
            info = signal.sigtimedwait(_SIGNALS, 0)
        gone = self._reap()
        if self.started and not self.stopping:
            for slot, status in gone:
                self._replace(slot, status)
        return self.stopping

    def _serve(self) -> None:
        self.started = True
        while not self._signalled(1.0):
            self._read_ready(0)          # replacements report too; nothing to do with it

    def _await_exit(self) -> None:
        deadline = time.monotonic() + self.cfg.drain_timeout_s + STOP_GRACE_S
        killed = False
        while self._live():
            self._signalled(0.2)         # stopping: only reaps (a repeated SIGTERM changes nothing)
            if not killed and time.monotonic() > deadline:
                log.error("%d worker(s) still running after the drain deadline; killing them",
                          len(self._live()))
                for slot in self._live():
                    _signal(slot.pid, signal.SIGKILL)
                killed = self.failed = True
        for slot in self.slots:
            slot.pid = 0


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _forget_metrics(pid: int) -> None:
    # A dead worker's live gauges (in-flight requests) must leave the sum; its counters stay.
    # The supervisor only runs with PROMETHEUS_MULTIPROC_DIR set (rs3gw.cli.server), which
    # mark_process_dead reads.
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # no annotations there


def supervise(cfg: Config, n: int) -> int:
    return Supervisor(cfg, n).run()

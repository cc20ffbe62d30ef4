"""One server process: event loop, storage, listener, graceful shutdown on SIGTERM (configuration
and the choice of one or several processes: rs3gw.cli.server; several: rs3gw.workers)."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import __version__, checksums
from ._core.directio import select_backend
from .admin import AdminApi
from .cluster.config import ClusterConfig
from .config import Config
from .http import HttpLimits, HttpServer
from .http.request import Request
from .lifecycle import CursorFile, Scanner, every_key
from .observability import loopguard
from .observability.metrics import Metrics
from .s3 import chunked
from .s3.access import AccessControl
from .s3.app import S3App
from .storage import LocalStore, ObjectStore, StorageError
from .storage.directfiles import IO_BUFFERS
from .tls import ssl_context

log = logging.getLogger("rs3gw")

# A worker keeps enough I/O buffers for a few streams at full ring depth however many there are.
IO_BUFFERS_PER_WORKER_MIN = 16
# How often each worker publishes its in-flight count for the other workers' scrapes.
IN_FLIGHT_PUBLISH_S = 1.0


class StartupError(Exception):
    """Start-up cannot go on (e.g. RS3GW_IO_BACKEND=uring where io_uring is refused)."""


@dataclass(frozen=True)
class WorkerSeat:
    """What a worker process gets from the supervisor (rs3gw.workers): its index, the listening
    socket it accepts on (SO_REUSEPORT, one per worker) and the pipe end where it reports ready."""
    index: int
    workers: int
    sock: socket.socket
    ready_fd: int


async def serve(cfg: Config, stop: asyncio.Event | None = None,
                cluster_cfg: ClusterConfig | None = None, seat: WorkerSeat | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if loopguard.enabled_by_env():
        loopguard.install()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        io_backend, _ = select_backend(cfg.io_backend, cfg.direct_io)
    except RuntimeError as e:  # a forced uring the kernel or the container refuses
        raise StartupError(str(e)) from e
    store = LocalStore(cfg.storage_root, durable=cfg.fsync, io_backend=io_backend,
                       direct_io=cfg.direct_io, inline_max_bytes=cfg.inline_max_bytes,
                       loop_reads=cfg.loop_reads, supervised=seat is not None,
                       io_buffers=_io_buffers(seat))
    try:
        await store.open()
    except BaseException:
        await io_backend.aclose()
        raise
    metrics = Metrics()
    node = None
    front: ObjectStore = store
    if cluster_cfg is not None and cluster_cfg.enabled:
        from .cluster.node import ClusterNode
        try:
            node = await ClusterNode.open(cluster_cfg, store,
                                          s3_endpoint=f"{cfg.bind_host}:{cfg.bind_port}")
        except BaseException:
            await store.close()
            await io_backend.aclose()
            raise
        front = node.store
    access = AccessControl(cfg)
    app = S3App(cfg, front, access)
    # Every request goes to the admin front first; it hands all but its own to app.handle.
    admin = AdminApi(app.handle, access, region=cfg.region, metrics=metrics,
                     cluster=node.view if node is not None else None)
    limits = HttpLimits(max_header_bytes=cfg.max_header_bytes, max_uri_bytes=cfg.max_uri_bytes,
                        idle_timeout_s=cfg.idle_timeout_s, request_timeout_s=cfg.request_timeout_s,
                        max_concurrent=cfg.max_concurrent)

    def on_response(req: Request, status: int, bytes_in: int, bytes_out: int) -> None:
        metrics.observe(req.operation, status, bytes_in, bytes_out,
                        time.monotonic() - req.started)

    tls = ssl_context(cfg)
    server = HttpServer(admin.handle, app.error_response, limits, tls, on_response=on_response,
                        sendfile=cfg.sendfile)
    host, port = await server.start(cfg.bind_host, cfg.bind_port,
                                    sock=seat.sock if seat is not None else None)
    metrics.count_in_flight(lambda: server.active_requests)
    # A scrape reaches one worker; the others' in-flight counts are IN_FLIGHT_PUBLISH_S old at
    # most. Held here: the loop keeps only a weak reference to a task.
    publisher = (loop.create_task(_publish_in_flight(metrics, stop)) if metrics.multiprocess
                 else None)
    backends = {"checksums": checksums.backend, "hasher": checksums.hasher_backend,
                "chunked": chunked.backend, "io": store.io_backend, "direct_io": store.direct_io,
                "http": "httptools+" + type(loop).__module__.split(".")[0],
                "sendfile": "on" if server.sendfile is not None else "off"}
    for comp, impl in backends.items():
        metrics.backend.labels(comp, impl).set(1)
    cluster_note = ""
    if node is not None:
        node.status.backends.update(backends)
        node.advertise_s3(f"{host}:{port}")
        # SIGTERM and POST /api/cluster/leave both mean: leave the cluster gracefully, then exit.
        loop.create_task(_stop_on(node.leave_requested, stop))
        cluster_note = (f" cluster=node:{node.node_id},mode:{node.cfg.replication_mode},"
                        f"factor:{node.cfg.replication_factor},"
                        f"peer_port:{node.membership.local.address[1]}")
    scanner = _lifecycle_scanner(cfg, front, metrics, seat,
                                 node.topology.acts_for if node is not None else every_key)
    if scanner is not None:
        scanner.start()
    admin.ready = True
    scheme = "https" if tls else "http"
    storage_root = await loop.run_in_executor(None, cfg.storage_root.resolve)  # stats: blocking
    where = (f"{scheme}://{host}:{port} storage_root={storage_root} "
             f"fsync={'on' if cfg.fsync else 'off'} "
             + " ".join(f"{k}={v}" for k, v in backends.items()) + cluster_note)
    if seat is None:
        log.info("rs3gw %s listening on %s", __version__, where)
    else:
        # The supervisor logs the one "listening" line once every worker reported; one line,
        # well under PIPE_BUF, so reports from several workers never interleave.
        await loop.run_in_executor(None, os.write, seat.ready_fd,
                                   f"{seat.index} {where}\n".encode())
    await stop.wait()
    if publisher is not None:
        await publisher        # ends with stop
    admin.ready = False
    if scanner is not None:
        await scanner.close()       # between two actions; its cursor names the last batch done
    log.info("rs3gw shutting down: draining %d in-flight request(s)", server.active_requests)
    await server.shutdown(cfg.drain_timeout_s)
    if node is not None:
        await node.depart()
    await store.close()
    await io_backend.aclose()
    # Everything acknowledged is durable and every response went out: a repeated SIGTERM/SIGINT
    # (systemd, a supervisor, an impatient Ctrl-C) during the last teardown must not turn a clean
    # exit into death by signal, so the loop's handlers give way to "ignore" rather than default.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
    log.info("rs3gw stopped")


def _lifecycle_scanner(cfg: Config, store: ObjectStore, metrics: Metrics,
                       seat: WorkerSeat | None,
                       acts_for: Callable[[str, str], bool]) -> Scanner | None:
    """The lifecycle scanner over the store S3 uses (in cluster mode the ClusterStore, so what
    it deletes replicates). Worker processes share one storage root: only worker 1 scans.
    Cluster mode: each node acts only for the keys whose first live replica it is
    (Topology.acts_for); the actions are conditional on what they find, so a second node's try
    during a membership change changes nothing."""
    if seat is not None and seat.index != 1:       # workers count from 1 (rs3gw.workers)
        return None
    cursor = CursorFile(cfg.storage_root / ".rs3gw" / "lifecycle-cursor.json", durable=cfg.fsync)
    return Scanner(store, cursor, day_s=cfg.lifecycle_day_s, rate=cfg.lifecycle_rate,
                   interval_s=cfg.lifecycle_pass_interval_s, acts_for=acts_for,
                   observe=lambda event, n: metrics.lifecycle.labels(event).inc(n))


def _io_buffers(seat: WorkerSeat | None) -> int:
    # The ring's buffer pools stay resident once used: N workers share one process's worth.
    if seat is None:
        return IO_BUFFERS
    return max(IO_BUFFERS_PER_WORKER_MIN, IO_BUFFERS // seat.workers)


async def _publish_in_flight(metrics: Metrics, stop: asyncio.Event) -> None:
    while not stop.is_set():
        metrics.publish_in_flight()
        try:
            await asyncio.wait_for(stop.wait(), IN_FLIGHT_PUBLISH_S)
        except TimeoutError:
            pass


async def _stop_on(event: asyncio.Event, stop: asyncio.Event) -> None:
    await event.wait()
    stop.set()


def run(cfg: Config, cluster_cfg: ClusterConfig | None = None,
        seat: WorkerSeat | None = None) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 if start-up failed."""
    try:
        import uvloop
        uvloop.run(serve(cfg, cluster_cfg=cluster_cfg, seat=seat))
    except (OSError, StorageError, StartupError, ssl.SSLError) as e:
        print(f"rs3gw: cannot start: {e}", file=sys.stderr)
        return 1
    return 0

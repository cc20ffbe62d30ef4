"""Process start-up: config, event loop, storage, listener, graceful shutdown on SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
import time
from typing import Any

from . import __version__, checksums
from ._core.directio import select_backend
from .cluster.config import ClusterConfig, load_cluster_config
from .config import Config, ConfigError, load_config
from .http.request import Request
from .http.server import HttpLimits, HttpServer
from .observability import loopguard
from .observability.metrics import Metrics
from .s3 import chunked
from .s3.app import S3App
from .storage import LocalStore, StorageError

log = logging.getLogger("rs3gw")


class StartupError(Exception):
    """Start-up cannot go on (e.g. RS3GW_IO_BACKEND=uring where io_uring is refused)."""


def _ssl_context(cfg: Config) -> ssl.SSLContext | None:
    if cfg.tls_cert is None or cfg.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
    return ctx


async def serve(cfg: Config, stop: asyncio.Event | None = None,
                cluster_cfg: ClusterConfig | None = None) -> None:
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
                       loop_reads=cfg.loop_reads)
    try:
        await store.open()
    except BaseException:
        await io_backend.aclose()
        raise
    metrics = Metrics()
    node = None
    front: Any = store
    if cluster_cfg is not None and cluster_cfg.enabled:
        from .cluster.node import ClusterNode
        from .cluster.store import ClusterStore
        node = ClusterNode(cluster_cfg, store, s3_endpoint=f"{cfg.bind_host}:{cfg.bind_port}")
        try:
            await node.start()
        except BaseException:
            await node.close()
            await store.close()
            await io_backend.aclose()
            raise
        front = ClusterStore(store, node)
    app = S3App(cfg, front, metrics)
    if node is not None:
        app.cluster = node
        metrics.attach_cluster(node)
    limits = HttpLimits(max_header_bytes=cfg.max_header_bytes, max_uri_bytes=cfg.max_uri_bytes,
                        idle_timeout_s=cfg.idle_timeout_s, request_timeout_s=cfg.request_timeout_s,
                        max_concurrent=cfg.max_concurrent)

    def on_response(req: Request, status: int, bytes_in: int, bytes_out: int) -> None:
        metrics.observe(req.operation, status, bytes_in, bytes_out,
                        time.monotonic() - req.started)

    tls = _ssl_context(cfg)
    server = HttpServer(app.handle, app.error_response, limits, tls, on_response=on_response)
    host, port = await server.start(cfg.bind_host, cfg.bind_port)
    backends = {"checksums": checksums.backend, "hasher": checksums.hasher_backend,
                "chunked": chunked.backend, "io": store.io_backend, "direct_io": store.direct_io,
                "http": "httptools+" + type(loop).__module__.split(".")[0]}
    for comp, impl in backends.items():
        metrics.backend.labels(comp, impl).set(1)
    cluster_note = ""
    if node is not None:
        node.backends.update(backends)
        node.membership.update_metadata({"s3": f"{host}:{port}"})
        # SIGTERM and POST /api/cluster/leave both mean: leave the cluster gracefully, then exit.
        loop.create_task(_stop_on(node.leave_requested, stop))
        cluster_note = (f" cluster=node:{node.node_id},mode:{node.mode},factor:{node.factor},"
                        f"peer_port:{node.membership.local.address[1]}")
    app.ready = True
    scheme = "https" if tls else "http"
    storage_root = await loop.run_in_executor(None, cfg.storage_root.resolve)  # stats: blocking
    log.info("rs3gw %s listening on %s://%s:%d storage_root=%s fsync=%s %s", __version__, scheme, host,
             port, storage_root, "on" if cfg.fsync else "off",
             " ".join(f"{k}={v}" for k, v in backends.items()) + cluster_note)
    await stop.wait()
    app.ready = False
    log.info("rs3gw shutting down: draining %d in-flight request(s)", server.active_requests)
    await server.shutdown(cfg.drain_timeout_s)
    if node is not None:
        await front.close()
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


async def _stop_on(event: asyncio.Event, stop: asyncio.Event) -> None:
    await event.wait()
    stop.set()


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_config()
        cluster_cfg = load_cluster_config(storage_root=cfg.storage_root)
    except ConfigError as e:
        print(f"rs3gw: configuration error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
        uvloop.run(serve(cfg, cluster_cfg=cluster_cfg))
    except (OSError, StorageError, StartupError, ssl.SSLError) as e:
        print(f"rs3gw: cannot start: {e}", file=sys.stderr)
        return 1
    return 0

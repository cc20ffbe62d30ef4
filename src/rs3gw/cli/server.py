"""`rs3gw`: run the server (configuration from RS3GW_* environment variables).

RS3GW_WORKERS > 1 (the default on a machine with several cores) runs the supervisor of
rs3gw.workers; one worker, or cluster mode, runs the server in this process.
"""
from __future__ import annotations

import logging
import os
import shutil
import ssl
import sys
import tempfile


def main() -> None:
    sys.exit(run())


def run() -> int:
    # Nothing here may import prometheus_client before PROMETHEUS_MULTIPROC_DIR is set (see
    # rs3gw.observability.metrics): config modules only, the server comes later.
    from ..cluster.config import load_cluster_config
    from ..config import LOG_FORMAT, ConfigError, load_config
    try:
        cfg = load_config()
        cluster_cfg = load_cluster_config(storage_root=cfg.storage_root)
    except ConfigError as e:
        print(f"rs3gw: configuration error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level, stream=sys.stderr, format=LOG_FORMAT)
    if cfg.workers == 1 or cluster_cfg.enabled:
        if cfg.workers > 1:
            logging.getLogger("rs3gw").info("cluster mode runs one server process "
                                            "(RS3GW_WORKERS=%d ignored)", cfg.workers)
        from .. import server
        return server.run(cfg, cluster_cfg)
    metrics_dir = tempfile.mkdtemp(prefix="rs3gw-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        from .. import workers
        from ..storage import StorageError
        try:
            return workers.supervise(cfg, cfg.workers)
        except (OSError, ssl.SSLError, StorageError) as e:
            print(f"rs3gw: cannot start: {e}", file=sys.stderr)
            return 1
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)

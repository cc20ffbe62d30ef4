"""Cluster fixtures; the helpers live in cluster_helpers.py next to this file."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# The helpers module sits next to this file; make it importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))

from cluster_helpers import ClusterPKI, make_pki
from cluster_procs import CLUSTERS


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test with cluster processes reports what its nodes logged (a timed-out wait says
    little on its own, and the nodes' directories are gone by the time anyone looks)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for c in CLUSTERS:
            rep.sections.append(("cluster node logs", c.log_tails()))
    if rep.when == "teardown":
        CLUSTERS.clear()

"""Cluster fixtures; the helpers live in cluster_helpers.py next to this file."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers module sits next to this file; make it importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))

from cluster_helpers import ClusterPKI, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))

"""Benchmarks: run explicitly, e.g. `pytest benchmarks/ --benchmark-only`; `make test` never collects them.

pyproject's testpaths is "tests" and its python_files pattern is test_*.py, so bench_*.py files are
collected only from here (or when named on the command line).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # --strict-markers is on in pyproject; the marker lives with the benchmarks.
    config.addinivalue_line("markers", "bench: a benchmark (benchmarks/, never in the default run)")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # A file named on the command line is already collected by pytest itself.
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None

"""The layering of src/rs3gw, read from the code: every import statement of every module, at module
level, under TYPE_CHECKING and inside functions alike (a type-only or a late import is still a
dependency between the files).

    admin          -> s3, cluster.view (only), observability, http: the operator surface, above both
    s3             -> storage, http, config, checksums, _core: never the cluster, never admin
    cluster        -> storage, config, _core: never s3, never admin
    storage        -> _core, checksums: never the cluster, s3 or admin
    lifecycle      -> storage (its package face), config: never s3, the cluster or admin (the
                      s3 layer uses its pure rule model; the server runs its scanner)
    http, observability: the floor any layer may stand on; they import no other part of rs3gw

Inside the cluster, the node only wires: no component imports cluster/node.py. Nobody imports
another module's private names. The graph is read by ci/importgraph.py, which also draws
docs/architecture/*.dot: those drawings are checked here to be the code's current picture.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ci"))

from importgraph import GRAPH, MODULES, SRC, circle, cluster_graph, dot, files, inside, layers_graph


def _offenders(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{MODULES[m].relative_to(SRC)} imports {n}"
                  for m, names in GRAPH.items() if inside(m, layer)
                  for n in names if any(inside(n, f) for f in forbidden))


def test_the_reader_sees_the_imports() -> None:
    """The graph is read right: known edges of each kind are found."""
    assert "rs3gw.s3.common" in GRAPH["rs3gw.s3.app"]                  # from .common import Ctx
    assert "rs3gw.s3.sigv4" in GRAPH["rs3gw.s3.app"]                   # from . import sigv4
    assert "rs3gw.storage" in GRAPH["rs3gw.s3.app"]                    # from .. import storage
    assert "rs3gw.storage.store" in GRAPH["rs3gw.storage"]             # a package's face
    assert "rs3gw.s3.access" in GRAPH["rs3gw.s3.common"]               # under TYPE_CHECKING
    assert "rs3gw.cluster.node" in GRAPH["rs3gw.server"]               # inside a function
    assert "rs3gw.cluster.view" in GRAPH["rs3gw.admin.api"]


def test_no_import_circle_betweenfiles() -> None:
    found = circle(GRAPH)
    assert found is None, "import circle: " + files(found)


def test_no_import_circle_outside_the_cluster() -> None:
    """What the rule above already holds to everywhere but inside cluster/."""
    outside = {m: {n for n in names if not inside(n, "rs3gw.cluster")}
               for m, names in GRAPH.items() if not inside(m, "rs3gw.cluster")}
    found = circle(outside)
    assert found is None, "import circle: " + files(found)


@pytest.mark.parametrize("layer,forbidden", [
    ("rs3gw.s3", ("rs3gw.cluster", "rs3gw.admin")),
    ("rs3gw.cluster", ("rs3gw.s3", "rs3gw.admin")),
    ("rs3gw.storage", ("rs3gw.cluster", "rs3gw.s3", "rs3gw.admin")),
    ("rs3gw.lifecycle", ("rs3gw.cluster", "rs3gw.s3", "rs3gw.admin", "rs3gw.server")),
    ("rs3gw.http", ("rs3gw.s3", "rs3gw.cluster", "rs3gw.storage", "rs3gw.admin",
                    "rs3gw.observability")),
    ("rs3gw.observability", ("rs3gw.s3", "rs3gw.cluster", "rs3gw.storage", "rs3gw.admin",
                             "rs3gw.http")),
])
def test_layer_does_not_import_what_is_above_it(layer: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(layer, forbidden) == []


def test_admin_reads_the_cluster_only_through_its_view() -> None:
    assert sorted(f"{MODULES[m].relative_to(SRC)} imports {n}"
                  for m, names in GRAPH.items() if inside(m, "rs3gw.admin")
                  for n in names if inside(n, "rs3gw.cluster") and n != "rs3gw.cluster.view") == []


def test_lifecycle_uses_storage_only_through_its_package_face() -> None:
    assert sorted(f"{MODULES[m].relative_to(SRC)} imports {n}"
                  for m, names in GRAPH.items() if inside(m, "rs3gw.lifecycle")
                  for n in names if inside(n, "rs3gw.storage") and n != "rs3gw.storage") == []


def test_no_cluster_component_imports_the_node() -> None:
    assert sorted(str(MODULES[m].relative_to(SRC)) for m, names in GRAPH.items()
                  if "rs3gw.cluster.node" in names and inside(m, "rs3gw.cluster")) == []


def test_no_module_imports_another_modules_private_names() -> None:
    found = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    # A compiled module's own name (rs3gw._core._uring) is a module, not a secret.
                    if private and f"{node.module}.{alias.name}" not in MODULES \
                            and alias.name != "_uring":
                        found.append(f"{path.relative_to(SRC)}:{node.lineno} {alias.name}")
    assert found == []


@pytest.mark.parametrize("name,graph", [("layers", layers_graph), ("cluster", cluster_graph)])
def test_the_architecture_drawings_are_current(name: str, graph: object) -> None:
    committed = ROOT / "docs" / "architecture" / f"{name}.dot"
    title = "rs3gw layers" if name == "layers" else "rs3gw.cluster"
    assert committed.read_text() == dot(graph(), title), (  # type: ignore[operator]
        f"{committed} is not the code's picture any more: run `make docs-graphs`")

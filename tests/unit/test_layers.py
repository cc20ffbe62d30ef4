"""The layering of src/rs3gw, read from the code: every import statement of every module, at module
level, under TYPE_CHECKING and inside functions alike (a type-only or a late import is still a
dependency between the files).

    admin          -> s3, cluster.view (only), observability, http: the operator surface, above both
    s3             -> storage, http, config, checksums, _core: never the cluster, never admin
    cluster        -> storage, config, _core: never s3, never admin
    storage        -> _core, checksums: never the cluster, s3 or admin
    http, observability: the floor any layer may stand on; they import no other part of rs3gw
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "rs3gw"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(module: str, path: Path) -> set[str]:
    """Every rs3gw module `module` imports, as the most specific module that exists as a file:
    ``from .pkg import name`` names pkg.name if that is a module, else pkg (its __init__)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                # A package's own __init__ is level 1 of itself; a module's, of its package.
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in MODULES else prefix
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # `import rs3gw.a.b` names rs3gw.a.b; cut back to the closest module that is a file.
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("rs3gw") and target != module:
                out.add(target)
    return out


GRAPH: dict[str, set[str]] = {m: _imported(m, p) for m, p in MODULES.items()}


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle between files (the modules in order, the first repeated at the end)."""
    state: dict[str, int] = {}      # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def _files(circle: list[str]) -> str:
    return " -> ".join(str(MODULES[m].relative_to(SRC)) for m in circle)


def _inside(name: str, pkg: str) -> bool:
    return name == pkg or name.startswith(pkg + ".")


def _offenders(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{MODULES[m].relative_to(SRC)} imports {n}"
                  for m, names in GRAPH.items() if _inside(m, layer)
                  for n in names if any(_inside(n, f) for f in forbidden))


def test_the_reader_sees_the_imports() -> None:
    """The graph is read right: known edges of each kind are found."""
    assert "rs3gw.s3.common" in GRAPH["rs3gw.s3.app"]                  # from .common import Ctx
    assert "rs3gw.s3.sigv4" in GRAPH["rs3gw.s3.app"]                   # from . import sigv4
    assert "rs3gw.storage" in GRAPH["rs3gw.s3.app"]                    # from .. import storage
    assert "rs3gw.storage.store" in GRAPH["rs3gw.storage"]             # a package's face
    assert "rs3gw.s3.access" in GRAPH["rs3gw.s3.common"]               # under TYPE_CHECKING
    assert "rs3gw.cluster.node" in GRAPH["rs3gw.server"]               # inside a function
    assert "rs3gw.cluster.view" in GRAPH["rs3gw.admin.api"]


def test_no_import_circle_between_files() -> None:
    circle = _circle(GRAPH)
    assert circle is None, "import circle: " + _files(circle)


def test_no_import_circle_outside_the_cluster() -> None:
    """What the rule above already holds to everywhere but inside cluster/."""
    outside = {m: {n for n in names if not _inside(n, "rs3gw.cluster")}
               for m, names in GRAPH.items() if not _inside(m, "rs3gw.cluster")}
    circle = _circle(outside)
    assert circle is None, "import circle: " + _files(circle)


@pytest.mark.parametrize("layer,forbidden", [
    ("rs3gw.s3", ("rs3gw.cluster", "rs3gw.admin")),
    ("rs3gw.cluster", ("rs3gw.s3", "rs3gw.admin")),
    ("rs3gw.storage", ("rs3gw.cluster", "rs3gw.s3", "rs3gw.admin")),
    ("rs3gw.http", ("rs3gw.s3", "rs3gw.cluster", "rs3gw.storage", "rs3gw.admin",
                    "rs3gw.observability")),
    ("rs3gw.observability", ("rs3gw.s3", "rs3gw.cluster", "rs3gw.storage", "rs3gw.admin",
                             "rs3gw.http")),
])
def test_layer_does_not_import_what_is_above_it(layer: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(layer, forbidden) == []


def test_admin_reads_the_cluster_only_through_its_view() -> None:
    assert sorted(f"{MODULES[m].relative_to(SRC)} imports {n}"
                  for m, names in GRAPH.items() if _inside(m, "rs3gw.admin")
                  for n in names if _inside(n, "rs3gw.cluster") and n != "rs3gw.cluster.view") == []

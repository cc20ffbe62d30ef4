"""The import graph of src/rs3gw, read from the code with ``ast`` (standard library only).

Every import statement counts: at module level, under TYPE_CHECKING and inside functions alike (a
type-only or a late import is still a dependency between the files). tests/unit/test_layers.py
holds the layering rules against this graph; this script also draws it:

    python ci/importgraph.py --check              # exit 1 and name the files of an import circle
    python ci/importgraph.py --dot layers         # packages and top-level modules of rs3gw
    python ci/importgraph.py --dot cluster        # the files of rs3gw.cluster

``make docs-graphs`` writes both as docs/architecture/*.dot and renders them to SVG with Graphviz.
Edges implied by others are left out of the drawings (transitive reduction), so an arrow means a
direct use that no longer path explains.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "rs3gw"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(module: str, path: Path) -> set[str]:
    """Every rs3gw module ``module`` imports, as the most specific module that exists as a file:
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


GRAPH: dict[str, set[str]] = {m: imported(m, p) for m, p in MODULES.items()}


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (the modules in order, the first repeated at the end), or None."""
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


def files(modules: list[str]) -> str:
    return " -> ".join(str(MODULES[m].relative_to(SRC)) for m in modules)


def inside(name: str, pkg: str) -> bool:
    return name == pkg or name.startswith(pkg + ".")


def collapse(graph: dict[str, set[str]], group: dict[str, str]) -> dict[str, set[str]]:
    """The graph between groups (``group[module]``; modules without a group are left out)."""
    out: dict[str, set[str]] = {}
    for m, names in graph.items():
        if m not in group:
            continue
        g = out.setdefault(group[m], set())
        g.update(group[n] for n in names if n in group and group[n] != group[m])
    return out


def reduce(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Transitive reduction of an acyclic graph: u -> v only if no other path leads there."""
    def reach(u: str, skip: str) -> set[str]:
        seen: set[str] = set()
        todo = [n for n in graph.get(u, ()) if n != skip]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(graph.get(n, ()))
        return seen
    return {u: {v for v in vs if v not in reach(u, v)} for u, vs in graph.items()}


def layers_graph() -> dict[str, set[str]]:
    """rs3gw's packages (rs3gw.s3, rs3gw.cluster, ...) and top-level modules as one node each."""
    group = {}
    for m in MODULES:
        parts = m.split(".")
        if len(parts) > 1:
            group[m] = parts[1]
    return collapse(GRAPH, group)


def cluster_graph() -> dict[str, set[str]]:
    group = {m: m.rsplit(".", 1)[1] for m in MODULES
             if inside(m, "rs3gw.cluster") and m != "rs3gw.cluster"}
    return collapse(GRAPH, group)


def dot(graph: dict[str, set[str]], title: str) -> str:
    lines = [f'digraph "{title}" {{', '  rankdir=TB; nodesep=0.25; ranksep=0.45;',
             ('  node [shape=box, style="rounded,filled", fillcolor="#eef3fa", color="#5b7290", '
              'fontname="Helvetica", fontsize=11];'),
             '  edge [color="#7d8da3", arrowsize=0.6];']
    g = reduce(graph)
    for u in sorted(g):
        lines.append(f'  "{u}";')
    for u in sorted(g):
        for v in sorted(g[u]):
            lines.append(f'  "{u}" -> "{v}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail on an import circle between files")
    ap.add_argument("--dot", choices=["layers", "cluster"], help="print a Graphviz drawing")
    a = ap.parse_args(argv)
    if a.check:
        found = circle(GRAPH)
        if found:
            print("import circle: " + files(found), file=sys.stderr)
            return 1
        print(f"no import circle among {len(MODULES)} modules")
    if a.dot == "layers":
        sys.stdout.write(dot(layers_graph(), "rs3gw layers"))
    elif a.dot == "cluster":
        sys.stdout.write(dot(cluster_graph(), "rs3gw.cluster"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""No import cycles in livecast: modules import each other in one direction only.

Every ``import`` of a livecast module counts, at module level or inside a function (an
import moved into a function to dodge a cycle is still a cycle), except those under
``if TYPE_CHECKING:``, which never run. Importing ``a.b.c`` also runs ``a`` and ``a.b``.
The wiring (:mod:`livecast.app`) imports the packages; no package imports it back.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Each module of ``package`` (a directory under ``root``) and the modules of the
    package it imports."""
    files = {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        imported: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, name, is_package):
                if target.split(".")[0] != package:
                    continue
                while target not in files:  # `from a.b import name`: the module a.b
                    target = target.rpartition(".")[0]
                parts = target.split(".")
                imported |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        # A package's own parents run before it: not an edge of its own.
        graph[name] = {t for t in imported if t != name and not name.startswith(t + ".")}
    return graph


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return found


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" for alias in node.names]


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph (``[a, b, a]``), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        found: list[str] = exc.args[1]
        return found
    return None


def test_livecast_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, "livecast")
    assert {"livecast.app", "livecast.cart.service", "livecast.ingest.app"} <= set(graph)
    found = cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(reversed(found or []))


def test_the_check_finds_a_cycle_made_by_an_import_inside_a_function(tmp_path: Path) -> None:
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "service.py").write_text("def setup():\n    from shop import api\n")
    (package / "api.py").write_text("from shop.service import setup\n")
    (package / "types.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shop.api import x\n"
    )
    graph = import_graph(tmp_path, "shop")
    assert graph["shop.types"] == set()  # TYPE_CHECKING imports never run
    assert set(cycle(graph) or []) == {"shop.api", "shop.service"}

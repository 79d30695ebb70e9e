"""The package's import graph has no cycles (data flows one way; see README, Architecture).

Every ``from metal... import`` and ``import metal...`` counts, including imports inside
functions: a lazy import only hides a cycle from Python, not from the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import metal

ROOT = Path(metal.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> nx.DiGraph:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target in modules and target not in (name, "metal"):
                    graph.add_edge(name, target)
    return graph


def test_import_graph_is_found() -> None:
    graph = import_graph()
    # sanity: the walk sees real edges, so an empty cycle list below means something
    assert graph.has_edge("metal.label_model.label_model", "metal.label_model.coding")
    assert graph.has_edge("metal.cli", "metal._cli_io")
    assert graph.number_of_edges() > 100


def test_no_import_cycles() -> None:
    cycles = [c for c in nx.simple_cycles(import_graph()) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:10])


def test_lower_layers_never_import_higher_ones() -> None:
    graph = import_graph()
    layers = ["metal.tasks", "metal.label_model", "metal.end_model", "metal.weasel"]
    for low_i, low in enumerate(layers):
        for high in layers[low_i + 1:]:
            bad = [(a, b) for a, b in graph.edges
                   if a.startswith(low + ".") and b.startswith(high)]
            assert not bad, f"{low} imports {high}: {bad[:5]}"

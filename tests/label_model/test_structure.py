"""Learning a dependency graph from unlabeled votes (metal/label_model/structure.py)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from metal.data.synthetic_dependencies import make_dependent_synthetic
from metal.errors import ConfigError
from metal.label_model.structure import learn_dependencies

STRENGTH = 1.5


@pytest.mark.slow
def test_learn_dependencies_recovers_planted_edges():
    precision, recall = [], []
    for seed in range(2):
        data = make_dependent_synthetic(n=100_000, m=10, density=0.3, n_independent=4,
                                        strength=STRENGTH, seed=seed)
        learned = learn_dependencies(data.L, 2, class_balance=data.class_balance)
        true = {frozenset(e) for e in data.graph.edges}
        found = {frozenset(e) for e in learned.edges}
        precision.append(len(true & found) / max(len(found), 1))
        recall.append(len(true & found) / max(len(true), 1))
    assert np.mean(precision) >= 0.8 and np.mean(recall) >= 0.8, (precision, recall)


def test_learn_dependencies_small_graph_fast():
    data = make_dependent_synthetic(n=30_000, m=7, n_independent=4, strength=2.0, seed=5,
                                    graph=nx.Graph([(4, 5), (5, 6)]))
    learned = learn_dependencies(data.L, 2, class_balance=data.class_balance,
                                 source_names=[f"s{i}" for i in range(7)])
    assert {frozenset(e) for e in learned.edges} == {frozenset(("s4", "s5")),
                                                      frozenset(("s5", "s6"))}
    assert all(learned.edges[e]["p_value"] < 1e-6 for e in learned.edges)


def test_learn_dependencies_independent_sources_give_no_edge() -> None:
    data = make_dependent_synthetic(n=20_000, m=6, n_independent=6, strength=2.0, seed=3,
                                    graph=nx.Graph())
    learned = learn_dependencies(data.L, 2, class_balance=data.class_balance, max_edges=3)
    assert sorted(learned.nodes) == list(range(6))
    assert learned.number_of_edges() == 0


def test_learn_dependencies_bad_arguments() -> None:
    L = np.zeros((10, 3), dtype=np.int8)
    with pytest.raises(ConfigError, match="alpha"):
        learn_dependencies(L, 2, alpha=1.5)
    with pytest.raises(ConfigError, match="source_names"):
        learn_dependencies(L, 2, source_names=["a", "b"])

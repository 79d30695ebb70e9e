"""Dependency graphs: junction trees, exact clique-factor prediction, estimation (learning the
graph: test_structure.py)."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from metal.data.synthetic_dependencies import make_dependent_synthetic
from metal.errors import ConfigError
from metal.label_model.coding import SourceCoding
from metal.label_model.dependencies import build_junction_tree
from metal.label_model.label_model import LabelModel
from metal.matrix import check_label_matrix, to_sparse_labels

STRENGTH = 1.5
STRENGTH_ERRORS = 0.75


def exact_joint(data, coupling="agree", strength=STRENGTH):
    """Every joint value of all sources and ``P(values | y)`` from the generator's formula."""
    m, kp1, k = data.base_probs.shape
    vals = np.array(list(itertools.product(range(kp1), repeat=m)))
    logp = np.zeros((len(vals), k))
    for i in range(m):
        logp += np.log(data.base_probs[i][vals[:, i]])
    for u, v in data.graph.edges:
        same = (vals[:, u] == vals[:, v]) & (vals[:, u] < k)
        for y in range(k):  # "errors": only a shared wrong vote gets the bonus
            logp[:, y] += strength * (same & ((coupling == "agree") | (vals[:, u] != y)))
    P = np.exp(logp)
    return np.where(vals == k, -1, vals), P / P.sum(axis=0, keepdims=True)


def true_indicator_probs(coding, votes, P):
    k, m, base = coding.cardinality, coding.n_sources, coding.cardinality + 1
    mu = np.zeros((coding.n_indicators, k))
    abstain = np.zeros((coding.n_groups, k))
    for i in range(m):
        for v in range(k):
            mu[i * k + v] = P[votes[:, i] == v].sum(0)
        abstain[i] = P[votes[:, i] == -1].sum(0)
    first = coding.offsets[m]
    for ci, c in enumerate(coding.cliques):
        code = ((votes[:, list(c)] + 1) * base ** np.arange(len(c))).sum(1)
        off = coding.offsets[m + ci]
        for cd in range(1, base ** len(c)):
            if coding.clique_emits[off - first + cd - 1]:
                mu[off + cd - 1] = P[code == cd].sum(0)
        abstain[m + ci] = 1 - mu[off:off + coding.n_values[m + ci]].sum(0)
    return mu, abstain


def test_junction_tree_triangulates_and_has_running_intersection():
    g = nx.cycle_graph(5)
    jt = build_junction_tree(g)
    assert not nx.is_chordal(g) and nx.is_chordal(jt.chordal)
    assert len(jt.fill_edges) == 2 and all(len(c) == 3 for c in jt.cliques)
    assert len(jt.tree_edges) == len(jt.cliques) - 1
    tree = nx.Graph([(a, b) for a, b, _ in jt.tree_edges])
    for s in range(5):  # cliques holding s form a connected subtree
        holding = [i for i, c in enumerate(jt.cliques) if s in c]
        assert nx.is_connected(tree.subgraph(holding))


@pytest.mark.parametrize(("seed", "density", "coupling"),
                         [(3, 0.6, "agree"), (1, 1.0, "agree"), (2, 0.4, "agree"),
                          (3, 0.6, "errors"), (1, 1.0, "errors")])
def test_prediction_is_exact_given_true_parameters(seed, density, coupling):
    strength = STRENGTH if coupling == "agree" else STRENGTH_ERRORS
    data = make_dependent_synthetic(n=10, m=7, density=density, n_independent=2,
                                    strength=strength, coupling=coupling, seed=seed)
    votes, P = exact_joint(data, coupling, strength)
    model = LabelModel(cardinality=2, dependencies=data.graph, prob_floor=0.0,
                       model_abstains=True)
    coding = SourceCoding.from_dependencies(7, 2, data.graph)
    mu, abstain = true_indicator_probs(coding, votes, P)
    model._set_fitted(coding, mu, abstain, data.class_balance, np.flatnonzero(mu.sum(1) > 0))
    truth = P * data.class_balance
    truth /= truth.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(votes), truth, atol=1e-8)
    np.testing.assert_allclose(model.get_conditional_probs(), data.conditional_probs, atol=1e-12)
    # chunking and sparse input give the same answer
    model.chunk_rows = 97
    np.testing.assert_allclose(model.predict_proba(to_sparse_labels(votes)), truth, atol=1e-8)
    # abstentions ignored: with one clique the posterior is exact with abstainers marginalised
    if len(coding.cliques) == 1:
        model.evidence_ = "votes"  # what model_abstains=False gives at fit time
        voted = votes >= 0
        marg = np.zeros_like(P)
        for key in np.unique(voted, axis=0):  # loop over voter patterns of 7 sources
            rows = np.flatnonzero((voted == key).all(axis=1))
            sub = votes[:, key]
            for r in rows:  # exact marginal by brute force (tiny: 3^7 values)
                marg[r] = P[(sub == votes[r, key]).all(axis=1)].sum(axis=0)
        truth = marg * data.class_balance
        truth /= truth.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(model.predict_proba(votes), truth, atol=1e-8)


def test_clique_indicators_are_minimal():
    # two triangles sharing an edge: the shared pair's statistics are emitted once
    data = make_dependent_synthetic(n=20000, m=6, n_independent=2, strength=STRENGTH, seed=0,
                                    graph=nx.Graph([(2, 3), (3, 4), (2, 4), (3, 5), (4, 5)]))
    coding = SourceCoding.from_dependencies(6, 2, data.graph)
    assert len(coding.cliques) == 2
    stats = coding.statistics(check_label_matrix(data.L), 4096)
    _, second = stats.moments()
    assert np.linalg.cond(second) < 1e6


def _errors(density, seed=0):
    """MAE of P(lambda_i = v | y): independent model, true-graph model; and both accuracies."""
    data = make_dependent_synthetic(n=40_000, m=10, density=density, n_independent=4,
                                    strength=STRENGTH_ERRORS, coupling="errors", seed=seed)
    p = data.class_balance
    # both moment estimators (EM does not model cliques): the gap is due to the edges only
    kw = {"parameterization": "full", "l2": 0.0, "seed": 0, "mode": "moments"}
    indep = LabelModel(cardinality=2, **kw).fit(data.L, class_balance=p)
    deps = LabelModel(cardinality=2, dependencies=data.graph, **kw).fit(data.L, class_balance=p)
    err_i = np.abs(indep.get_conditional_probs() - data.conditional_probs).mean()
    err_d = np.abs(deps.get_conditional_probs() - data.conditional_probs).mean()
    return (err_i, err_d, (indep.predict(data.L) == data.Y).mean(),
            (deps.predict(data.L) == data.Y).mean())


@pytest.mark.slow  # > 15 s on a shared 2-core machine; run by .ci/run
@pytest.mark.timeout(300)
def test_true_graph_beats_independent_model_under_shared_errors():
    # dependent sources share their mistakes: the independent model double-counts them
    err_i, err_d, acc_i, acc_d = _errors(0.5)
    assert err_d < 0.006
    assert err_d < 0.5 * err_i
    assert acc_d >= acc_i - 0.005
    # without dependencies both models are the same and accurate; the gap is due to the edges
    err_i0, err_d0, _, _ = _errors(0.0)
    assert err_i0 < 0.006 and abs(err_i0 - err_d0) < 1e-6
    assert err_i > 2 * err_i0


def test_save_load_roundtrip_with_dependencies(tmp_path):
    data = make_dependent_synthetic(n=5000, m=8, density=0.5, n_independent=3,
                                    strength=STRENGTH, seed=4)
    names = [f"s{i}" for i in range(8)]
    graph = nx.relabel_nodes(data.graph, dict(enumerate(names)))
    model = LabelModel(cardinality=2, dependencies=graph, source_names=names).fit(data.L)
    model.save(tmp_path / "m.npz")
    loaded = LabelModel.load(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.predict_proba(data.L), model.predict_proba(data.L))
    assert {frozenset(e) for e in loaded.dependencies.edges} == \
        {frozenset(e) for e in graph.edges}


def test_bad_dependency_graphs():
    L = make_dependent_synthetic(n=100, m=4, seed=0).L
    with pytest.raises(ConfigError, match="not a source"):
        LabelModel(dependencies=nx.Graph([(0, 9)])).fit(L)
    with pytest.raises(ConfigError, match="undirected"):
        LabelModel(dependencies=nx.DiGraph([(0, 1)])).fit(L)

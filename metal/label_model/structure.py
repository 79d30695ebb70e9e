"""Learning a source dependency graph from unlabeled votes.

This sits above :mod:`metal.label_model.label_model` (each round fits a :class:`LabelModel`),
while :mod:`metal.label_model.dependencies` holds the graph structures the label model itself
uses; keeping them apart keeps the imports one-way.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from typing import Any

import networkx as nx
import numpy as np

from metal.errors import ConfigError, NotIdentifiableError
from metal.label_model.base import check_cardinality
from metal.label_model.coding import SourceCoding
from metal.label_model.label_model import LabelModel
from metal.matrix import VoteChunk, check_label_matrix


def _pair_model_probs(model: Any, k: int) -> np.ndarray:
    """``(m, m, k+1, k+1, k)`` model ``P(lambda_i = a, lambda_j = b | y)`` (abstain last).

    Pairs in different dependency components multiply their singleton tables; pairs inside a
    component are marginalised from the junction-tree model, enumerating the component's joint
    values (components are small when this is used).
    """
    cond = model.get_conditional_probs()  # (m, k+1, k), abstain last
    cond = np.clip(cond, 1e-12, None)
    probs = np.einsum("iay,jby->ijaby", cond, cond)
    coding = model.coding_
    if coding.all_singletons:
        return probs
    tables = coding.factor_tables(model.indicator_probs_, model.abstain_probs_,
                                  model.class_balance_, model.emitted_, 0.0, True)
    for comp in coding.junction.components:
        r = len(comp)
        if r < 2 or (k + 1) ** r > 50_000:
            continue
        vals = np.array(list(itertools.product(range(k + 1), repeat=r)), dtype=np.int64)
        rows, cols = np.nonzero(vals < k)
        chunk = VoteChunk(0, len(vals), rows, np.asarray(comp)[cols], vals[rows, cols])
        scores = SourceCoding.factor_scores(chunk, tables) - np.log(model.class_balance_)
        joint = np.exp(scores - scores.max(axis=0, keepdims=True))
        joint /= joint.sum(axis=0, keepdims=True)  # P(values of the component | y)
        for (a, i), (b, j) in itertools.combinations(enumerate(comp), 2):
            pair = np.zeros((k + 1, k + 1, k))
            np.add.at(pair, (vals[:, a], vals[:, b]), joint)
            probs[i, j] = pair
            probs[j, i] = pair.transpose(1, 0, 2)
    return probs


def learn_dependencies(
    L: Any,
    cardinality: int = 2,
    *,
    alpha: float = 1e-3,
    max_edges: int | None = None,
    source_names: Sequence[Hashable] | None = None,
    class_balance: Any = None,
    chunk_rows: int = 65536,
    seed: int = 0,
) -> nx.Graph:
    """Propose a source dependency graph from unlabeled votes (a goodness-of-fit search).

    Each round fits the label model with the edges found so far (junction-tree model, Omega =
    pairs from different components), then compares, for every pair of sources not yet joined
    by an edge, the observed joint counts of their values (abstain included) with the counts
    the fitted model predicts: ``sum_y p_y P(lambda_i, lambda_j | y)``, from the singleton
    tables for pairs in different components and from the junction tree for pairs in the same
    component (so a chain ``i - j - l`` does not make ``(i, l)`` look dependent). The pair
    with the largest likelihood-ratio statistic ``G`` becomes an edge if ``G`` is significant
    at level ``alpha`` after a Bonferroni correction over all pairs (chi-square reference with
    ``(k+1)^2 - 1`` degrees of freedom); then the model is refitted. The search stops when no
    pair is significant, or when one more edge would make the accuracies non-identifiable.

    Parameters
    ----------
    L
        ``(n, m)`` label matrix (dense or sparse; -1 abstains).
    cardinality
        Number of classes ``k``.
    alpha
        Family-wise significance level of the edge test.
    max_edges
        Optional cap on the number of edges returned.
    source_names
        Names for the nodes of the returned graph (default: column indices).
    class_balance
        Optional known ``P(Y)`` (recommended: it makes every fit sharper); by default it is
        estimated from ``L`` in every fit.
    chunk_rows
        Rows per block of the statistics passes.
    seed
        Seed of the fits.

    Returns
    -------
    networkx.Graph
        Nodes: every source; edges: proposed dependencies, with attributes ``G`` (statistic),
        ``p_value`` (uncorrected) and ``round``. Inspect it, edit it, and pass it back as
        ``LabelModel(dependencies=...)``.

    Examples
    --------
    >>> from metal.data.synthetic_dependencies import make_dependent_synthetic
    >>> data = make_dependent_synthetic(n=20000, m=8, density=0.3, seed=0)
    >>> G = learn_dependencies(data.L, 2)
    >>> sorted(G.nodes) == list(range(8))
    True
    """
    k = check_cardinality(cardinality)
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha} must be in (0, 1)")
    lm = check_label_matrix(L, cardinality=k)
    m = lm.n_sources
    names = list(source_names) if source_names is not None else list(range(m))
    if len(names) != m:
        raise ConfigError(f"source_names has {len(names)} entries; L has {m} sources")
    coding = SourceCoding(m, k)
    stats = coding.statistics(lm, chunk_rows)
    n = stats.n_rows
    emitted = stats.emitted()
    means, second = stats.moments(emitted)
    src_of = coding.indicator_group(emitted)
    val_of = emitted - coding.offsets[src_of]
    # observed joint counts (k+1)x(k+1) per pair, abstain as the last value
    counts = np.zeros((m, m, k + 1, k + 1))
    counts[src_of[:, None], src_of[None, :], val_of[:, None], val_of[None, :]] = second * n
    marg = np.zeros((m, k + 1))
    marg[src_of, val_of] = means * n
    marg[:, k] = n - marg[:, :k].sum(axis=1)
    counts[:, :, :k, k] = marg[:, None, :k] - counts[:, :, :k, :k].sum(axis=3)
    counts[:, :, k, :k] = marg[None, :, :k] - counts[:, :, :k, :k].sum(axis=2)
    counts[:, :, k, k] = n - counts[:, :, :k, :].sum(axis=(2, 3)) - counts[:, :, k, :k].sum(axis=2)
    counts = np.clip(counts, 0.0, None)
    iu, ju = np.triu_indices(m, 1)
    n_pairs = iu.size
    df = (k + 1) ** 2 - 1
    from scipy.stats import chi2  # heavy import, only needed here

    threshold = chi2.isf(alpha / max(n_pairs, 1), df)

    graph = nx.Graph()
    graph.add_nodes_from(range(m))
    cap = n_pairs if max_edges is None else int(max_edges)
    rejected: set[tuple[int, int]] = set()
    # a flexible model (full tables, no ridge): misfit would look like dependence
    model_kw: dict[str, Any] = {"cardinality": k, "seed": seed, "chunk_rows": chunk_rows,
                                "parameterization": "full", "l2": 0.0}
    balance = "estimate" if class_balance is None else class_balance
    model = LabelModel(check_identifiability=False, **model_kw).fit(lm.data,
                                                                    class_balance=balance)
    round_ = 0
    while graph.number_of_edges() < cap:
        probs = _pair_model_probs(model, k)
        expected = n * np.einsum("ijaby,y->ijab", probs, model.class_balance_)
        obs = counts[iu, ju]
        exp_ = np.clip(expected[iu, ju], 1e-9, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(obs > 0, obs * np.log(obs / exp_), 0.0)
        G = 2.0 * terms.sum(axis=(1, 2))
        done = np.array([graph.has_edge(int(a), int(b)) or (int(a), int(b)) in rejected
                         for a, b in zip(iu, ju, strict=True)], dtype=bool)
        G[done] = -np.inf
        best = int(np.argmax(G))
        if G[best] <= threshold:
            break
        i, j = int(iu[best]), int(ju[best])
        trial = graph.copy()
        trial.add_edge(i, j)
        try:
            model = LabelModel(dependencies=trial, **model_kw).fit(lm.data,
                                                                   class_balance=balance)
        except NotIdentifiableError:
            rejected.add((i, j))
            continue
        graph.add_edge(i, j, G=float(G[best]), p_value=float(chi2.sf(G[best], df)),
                       round=round_)
        round_ += 1
    return nx.relabel_nodes(graph, dict(enumerate(names)))

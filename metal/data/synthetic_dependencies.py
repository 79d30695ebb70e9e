"""Seeded synthetic label matrices with planted pairwise dependencies between sources.

Given ``Y = y`` the sources of one connected component of the planted graph ``E`` vote from a
pairwise Markov random field

    P(lambda_C | y)  ∝  prod_i c_i(lambda_i | y)
                        * prod_{(i, j) in E} exp(w * f(lambda_i, lambda_j, y))

where ``c_i`` is an ordinary class-conditional table (see :func:`make_conditional_probs`) and
``w > 0`` couples each dependent pair. With ``coupling="errors"`` ``f = 1[lambda_i = lambda_j
!= y, both vote]``: dependent sources share their *mistakes* (one reuses another's faulty
logic), the setting where a model assuming independence double-counts them (MeTaL paper,
Fig. 4 middle). With ``coupling="agree"`` (the default) ``f = 1[lambda_i = lambda_j !=
abstain]``: dependent sources agree more often than their accuracies explain, mostly on the
right class. Sources in different components are independent given ``Y``. The
dependency structure of this distribution is exactly ``E`` (a pairwise MRF), so a label model
given ``E`` is correctly specified. Sampling is exact: the joint of each component is enumerated
(``(k+1)^|component|`` values), so components are kept small.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx
import numpy as np

from metal.data.synthetic import draw_class_balance, make_conditional_probs
from metal.errors import ConfigError

MAX_COMPONENT_VALUES = 200_000


@dataclass(frozen=True)
class DependentSyntheticData:
    """A generated label matrix, its planted dependency graph and the true marginals.

    Attributes
    ----------
    L : (n, m) int8 label matrix, -1 = abstain.
    Y : (n,) true classes.
    graph : planted dependency graph over ``0..m-1``.
    conditional_probs : (m, k+1, k) true marginal ``P(lambda_i = v | Y = y)`` (``v = -1``
        abstain), computed exactly from the joint.
    base_probs : (m, k+1, k) the tables ``c_i`` before the pairwise couplings.
    class_balance : (k,) ``P(Y)``.
    """

    L: np.ndarray
    Y: np.ndarray
    graph: nx.Graph
    conditional_probs: np.ndarray
    base_probs: np.ndarray
    class_balance: np.ndarray

    @property
    def cardinality(self) -> int:
        return int(self.class_balance.shape[0])


def plant_edges(m: int, n_independent: int, density: float,
                rng: np.random.Generator) -> nx.Graph:
    """A random graph: ``round(density * C(m_dep, 2))`` edges among the last ``m_dep`` sources."""
    dep = list(range(n_independent, m))
    pairs = list(itertools.combinations(dep, 2))
    n_edges = int(round(density * len(pairs)))
    g = nx.Graph()
    g.add_nodes_from(range(m))
    if n_edges:
        chosen = rng.choice(len(pairs), size=n_edges, replace=False)
        g.add_edges_from(pairs[int(c)] for c in chosen)
    return g


def make_dependent_synthetic(
    n: int = 10_000,
    m: int = 10,
    cardinality: int = 2,
    *,
    density: float = 0.3,
    n_independent: int = 4,
    graph: nx.Graph | None = None,
    strength: float = 1.5,
    coupling: str = "agree",
    class_balance: np.ndarray | None = None,
    coverage: tuple[float, float] = (0.3, 0.7),
    accuracy: tuple[float, float] = (0.6, 0.85),
    unipolar_fraction: float = 0.0,
    seed: int = 0,
) -> DependentSyntheticData:
    """Generate votes whose dependency graph is known.

    Parameters
    ----------
    n, m, cardinality
        Rows, sources, classes.
    density
        Fraction of the pairs among the ``m - n_independent`` *dependent-block* sources that
        become edges (ignored when ``graph`` is given). The first ``n_independent`` sources never
        get an edge: they anchor identifiability (see :func:`metal.check_identifiability`).
    graph
        Explicit dependency graph over ``0..m-1`` instead of a random one.
    strength
        Coupling ``w`` of every edge (log-odds bonus, see ``coupling``).
    coupling
        What an edge rewards. ``"agree"``: the pair casting the same vote,
        ``exp(w * 1[lambda_i = lambda_j != abstain])`` (dependent sources agree, mostly on the
        right class, so a dense block becomes very accurate). ``"errors"``: the pair making the
        same *mistake*, ``exp(w * 1[lambda_i = lambda_j != y, both vote])`` (shared errors,
        e.g. one source reusing another's faulty logic); the votes of a dependent pair are
        then more correlated than their accuracies explain, and a model assuming
        independence double-counts them. Both are pairwise MRFs given ``Y`` whose graph is
        exactly ``E``; the true marginals are computed exactly in both cases.
    class_balance, coverage, accuracy, unipolar_fraction
        As in :func:`metal.data.make_synthetic`.
    seed
        Seed of the generator (no global state is touched).

    Examples
    --------
    >>> d = make_dependent_synthetic(n=100, m=6, density=1.0, coupling="errors", seed=0)
    >>> d.L.shape, d.graph.number_of_edges()
    ((100, 6), 1)
    """
    k = cardinality
    if n < 1 or m < 1 or k < 2:
        raise ConfigError(f"need n >= 1, m >= 1, cardinality >= 2; got {n}, {m}, {k}")
    if not 0.0 <= density <= 1.0 or not 0 <= n_independent <= m:
        raise ConfigError(f"density={density} must be in [0, 1] and n_independent="
                          f"{n_independent} in [0, m]")
    if coupling not in ("agree", "errors"):
        raise ConfigError(f"coupling={coupling!r} is not known; use 'agree' (dependent sources "
                          "agree) or 'errors' (dependent sources share their mistakes)")
    rng = np.random.default_rng(seed)
    p = draw_class_balance(k, class_balance, rng)
    base, _ = make_conditional_probs(m, k, rng, coverage, accuracy, unipolar_fraction)
    if graph is None:
        graph = plant_edges(m, n_independent, density, rng)
    else:
        graph = nx.Graph(graph)
        if sorted(graph.nodes) != list(range(m)):
            graph.add_nodes_from(range(m))
            if sorted(graph.nodes) != list(range(m)):
                raise ConfigError(f"graph nodes must be source indices 0..{m - 1}")
    Y = rng.choice(k, size=n, p=p)
    L = np.full((n, m), -1, dtype=np.int8)
    cond = np.zeros((m, k + 1, k))
    for comp in nx.connected_components(graph):  # loop over components, not rows
        members = sorted(comp)
        r = len(members)
        if (k + 1) ** r > MAX_COMPONENT_VALUES:
            raise ConfigError(f"component {members} has {(k + 1) ** r} joint values; keep "
                              "dependent components smaller")
        # all joint values; value index k = abstain
        values = np.array(list(itertools.product(range(k + 1), repeat=r)), dtype=np.int64)
        logp = np.zeros((values.shape[0], k))
        for j, s in enumerate(members):
            logp += np.log(base[s][values[:, j]])  # (P, k)
        pos = {s: j for j, s in enumerate(members)}
        for u, v in graph.subgraph(members).edges:
            a, b = values[:, pos[u]], values[:, pos[v]]
            if coupling == "agree":
                logp += (strength * ((a == b) & (a < k)))[:, None]
            else:  # same wrong vote: the bonus depends on y (one column per class)
                same = (a == b) & (a < k)
                logp += strength * (same[:, None] & (a[:, None] != np.arange(k)[None, :]))
        logp -= logp.max(axis=0, keepdims=True)
        joint = np.exp(logp)
        joint /= joint.sum(axis=0, keepdims=True)  # (P, k): P(values | y)
        for j, s in enumerate(members):
            np.add.at(cond[s], values[:, j], joint)
        for y in range(k):
            rows = np.flatnonzero(Y == y)
            draw = rng.choice(values.shape[0], size=rows.size, p=joint[:, y])
            votes = values[draw]
            L[np.ix_(rows, members)] = np.where(votes == k, -1, votes).astype(np.int8)
    return DependentSyntheticData(L=L, Y=Y, graph=graph, conditional_probs=cond,
                                  base_probs=base, class_balance=p)

"""Source dependency graphs: junction trees, and learning the graph from unlabeled votes.

Users declare correlated sources (shared code, the same dictionary, the same crowd) as an
undirected ``networkx.Graph`` whose nodes are source indices or names. The label model then
needs three things from that graph, all computed here:

* the *triangulated* graph (fill-in edges added when the graph is not chordal), its maximal
  cliques, and a junction tree over them per connected component (maximum-weight spanning tree
  of the clique-intersection graph, so the running-intersection property holds). Given ``Y`` the
  sources then factorise as ``P(lambda | y) = prod_C P(lambda_C | y) / prod_S P(lambda_S | y)``
  over cliques ``C`` and separators ``S``;
* the connected components: two sources in different components are conditionally independent
  given ``Y`` alone, so only their moments factorise as ``sum_y p_y mu_a(y) mu_b(y)`` (this is
  the index set Omega used in estimation, see :mod:`metal.label_model.coding`);
* when the user does not know the graph, :func:`learn_dependencies` proposes one from the
  votes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
from scipy.stats import chi2

from metal.errors import ConfigError


def resolve_source_nodes(
    nodes: Any, n_sources: int, source_names: Sequence[Hashable] | None
) -> dict[Hashable, int]:
    """Map graph nodes (indices, or names from ``source_names``) to source indices."""
    names = list(source_names) if source_names is not None else None
    index: dict[Hashable, int] = {}
    for node in nodes:
        if names is not None and node in names:
            index[node] = names.index(node)
        elif isinstance(node, (int, np.integer)) and not isinstance(node, bool) \
                and 0 <= int(node) < n_sources:
            index[node] = int(node)
        else:
            known = f"indices 0..{n_sources - 1}" + (f" or names {names}" if names else "")
            raise ConfigError(f"dependency graph node {node!r} is not a source; expected {known}. "
                              "Name nodes by column index, or pass source_names=.")
    return index


def resolve_dependency_graph(
    dependencies: Any, n_sources: int, source_names: Sequence[Hashable] | None = None
) -> nx.Graph:
    """The user's dependency graph re-expressed over source indices ``0..m-1`` (all present).

    Raises
    ------
    ConfigError
        ``dependencies`` is not an undirected ``networkx.Graph``, or names a node that is not a
        source.
    """
    if not isinstance(dependencies, nx.Graph) or dependencies.is_directed():
        raise ConfigError("dependencies must be an undirected networkx.Graph whose edges join "
                          f"dependent sources, got {type(dependencies).__name__}. Build one "
                          "with nx.Graph([(0, 1), (2, 3)]).")
    index = resolve_source_nodes(dependencies.nodes, n_sources, source_names)
    g = nx.Graph()
    g.add_nodes_from(range(n_sources))
    g.add_edges_from((index[u], index[v]) for u, v in dependencies.edges if index[u] != index[v])
    return g


@dataclass(frozen=True)
class JunctionTree:
    """Triangulation, maximal cliques and junction tree of a source dependency graph.

    Attributes
    ----------
    n_sources
        Number of sources ``m``.
    graph
        The user's graph over indices ``0..m-1``.
    chordal
        ``graph`` plus ``fill_edges`` (chordal).
    fill_edges
        Edges added by the triangulation (empty when ``graph`` is chordal).
    cliques
        Maximal cliques of ``chordal`` with at least two sources, sorted tuples.
    tree_edges
        ``(parent, child, separator)`` triples over indices into ``cliques``: a rooted junction
        tree per connected component (roots are the cliques that are never a child).
    components
        Connected components of ``graph`` (sorted lists of sources), in order of first source.
    component_of
        ``(m,)`` component index of every source.
    """

    n_sources: int
    graph: nx.Graph
    chordal: nx.Graph
    fill_edges: list[tuple[int, int]]
    cliques: list[tuple[int, ...]]
    tree_edges: list[tuple[int, int, tuple[int, ...]]]
    components: list[list[int]]
    component_of: np.ndarray = field(repr=False)

    @property
    def roots(self) -> list[int]:
        children = {c for _, c, _ in self.tree_edges}
        return [i for i in range(len(self.cliques)) if i not in children]

    @property
    def isolated(self) -> list[int]:
        """Sources without any dependency edge."""
        return [s for s in range(self.n_sources) if self.graph.degree(s) == 0]


def build_junction_tree(graph: nx.Graph) -> JunctionTree:
    """Triangulate ``graph`` (nodes ``0..m-1``) and build a rooted junction tree per component."""
    m = graph.number_of_nodes()
    if sorted(graph.nodes) != list(range(m)):
        raise ConfigError("build_junction_tree expects nodes 0..m-1; use resolve_dependency_graph")
    if nx.is_chordal(graph):
        chordal = graph.copy()
    else:
        chordal, _ = nx.complete_to_chordal_graph(graph)
    fill = sorted((min(int(u), int(v)), max(int(u), int(v))) for u, v in chordal.edges
                  if not graph.has_edge(u, v))
    cliques = sorted(tuple(sorted(int(s) for s in c)) for c in nx.chordal_graph_cliques(chordal)
                     if len(c) >= 2)
    # clique graph weighted by intersection size; a maximum spanning tree of it is a junction tree
    cg = nx.Graph()
    cg.add_nodes_from(range(len(cliques)))
    sets = [set(c) for c in cliques]
    for a in range(len(cliques)):
        for b in range(a + 1, len(cliques)):
            shared = sets[a] & sets[b]
            if shared:
                cg.add_edge(a, b, weight=len(shared))
    tree = nx.maximum_spanning_tree(cg, weight="weight")
    tree_edges: list[tuple[int, int, tuple[int, ...]]] = []
    for comp in nx.connected_components(tree):
        root = min(comp)
        for parent, child in nx.bfs_edges(tree, root):
            tree_edges.append((parent, child, tuple(sorted(sets[parent] & sets[child]))))
    components = sorted((sorted(int(s) for s in c) for c in nx.connected_components(graph)),
                        key=lambda c: c[0])
    component_of = np.empty(m, dtype=np.int64)
    for i, comp_sources in enumerate(components):
        component_of[comp_sources] = i
    return JunctionTree(n_sources=m, graph=graph, chordal=chordal, fill_edges=fill,
                        cliques=cliques, tree_edges=tree_edges, components=components,
                        component_of=component_of)


# ---------------------------------------------------------------------------------- learning
def learn_dependencies(
    L: Any,
    cardinality: int = 2,
    *,
    alpha: float = 1e-3,
    max_edges: int | None = None,
    edges_per_round: int = 1,
    source_names: Sequence[Hashable] | None = None,
    class_balance: Any = None,
    chunk_rows: int = 65536,
    seed: int = 0,
) -> nx.Graph:
    """Propose a source dependency graph from unlabeled votes (a goodness-of-fit search).

    Each round fits the class-conditional label model on every pair of sources not yet declared
    dependent (masked moments), then compares, for every pair ``(i, j)``, the observed joint
    counts of their values (abstain included) with the counts the fitted model predicts under
    conditional independence given ``Y``. The pair with the largest likelihood-ratio statistic
    ``G`` is added as an edge if ``G`` is significant at level ``alpha`` after a Bonferroni
    correction over all pairs (chi-square reference with ``(k+1)^2 - 1`` degrees of freedom);
    the model is then refitted without that pair, so one strong dependency does not distort the
    test of the others. The search stops when no remaining pair is significant.

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
    edges_per_round
        How many significant pairs to add before refitting (1 is the most careful).
    source_names
        Names for the nodes of the returned graph (default: column indices).
    class_balance
        Optional known ``P(Y)``.
    chunk_rows
        Rows per block of the statistics pass.
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
    from metal.label_model.base import check_cardinality, check_class_balance
    from metal.label_model.coding import SourceCoding
    from metal.label_model.estimation import MomentProblem, fit_moments
    from metal.matrix import check_label_matrix

    k = check_cardinality(cardinality)
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha} must be in (0, 1)")
    if edges_per_round < 1:
        raise ConfigError(f"edges_per_round={edges_per_round} must be >= 1")
    lm = check_label_matrix(L, cardinality=k)
    m = lm.n_sources
    names = list(source_names) if source_names is not None else list(range(m))
    if len(names) != m:
        raise ConfigError(f"source_names has {len(names)} entries; L has {m} sources")
    p_given = None if class_balance is None else check_class_balance(class_balance, k)
    coding = SourceCoding(m, k)
    stats = coding.statistics(lm, chunk_rows)
    n = stats.n_rows
    emitted = stats.emitted()
    means, second = stats.moments(emitted)
    src_of = np.searchsorted(coding.offsets, emitted, side="right") - 1
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
    threshold = chi2.isf(alpha / max(n_pairs, 1), df)

    graph = nx.Graph()
    graph.add_nodes_from(names)
    found: set[tuple[int, int]] = set()
    round_ = 0
    cap = n_pairs if max_edges is None else int(max_edges)
    while len(found) < cap:
        omega = src_of[:, None] != src_of[None, :]
        for i, j in found:
            omega[np.ix_(src_of == i, src_of == j)] = False
            omega[np.ix_(src_of == j, src_of == i)] = False
        problem = MomentProblem(second=second, means=means, groups=src_of, n_groups=m,
                                agreement=coding.agreement(emitted), omega_mask=omega)
        fit = fit_moments(problem, k, class_balance=p_given, seed=seed)
        cond = np.zeros((m, k + 1, k))
        cond[src_of, val_of] = fit.mu
        cond[:, k, :] = np.clip(1.0 - cond[:, :k, :].sum(axis=1), 1e-9, None)
        cond = np.clip(cond, 1e-9, None)
        # expected pair counts under conditional independence: n sum_y p_y c_i(a|y) c_j(b|y)
        expected = n * np.einsum("iay,jby,y->ijab", cond, cond, fit.class_balance)
        obs = counts[iu, ju]
        exp_ = np.clip(expected[iu, ju], 1e-9, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(obs > 0, obs * np.log(obs / exp_), 0.0)
        G = 2.0 * terms.sum(axis=(1, 2))
        for idx in range(n_pairs):
            if (int(iu[idx]), int(ju[idx])) in found:
                G[idx] = -np.inf
        order = np.argsort(-G)
        added = 0
        for idx in order[:edges_per_round]:
            if G[idx] <= threshold or len(found) >= cap:
                break
            i, j = int(iu[idx]), int(ju[idx])
            found.add((i, j))
            graph.add_edge(names[i], names[j], G=float(G[idx]),
                           p_value=float(chi2.sf(G[idx], df)), round=round_)
            added += 1
        if added == 0:
            break
        round_ += 1
    return graph

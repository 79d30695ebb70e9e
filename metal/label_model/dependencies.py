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

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

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
def _pair_model_probs(model: Any, k: int) -> np.ndarray:
    """``(m, m, k+1, k+1, k)`` model ``P(lambda_i = a, lambda_j = b | y)`` (abstain last).

    Pairs in different dependency components multiply their singleton tables; pairs inside a
    component are marginalised from the junction-tree model, enumerating the component's joint
    values (components are small when this is used).
    """
    from metal.label_model.coding import SourceCoding
    from metal.matrix import VoteChunk

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
    from metal.errors import NotIdentifiableError
    from metal.label_model.base import check_cardinality
    from metal.label_model.coding import SourceCoding
    from metal.label_model.label_model import LabelModel
    from metal.matrix import check_label_matrix

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


# ---------------------------------------------------------------------------------- refinement
def refine_by_components(
    second: np.ndarray,
    means: np.ndarray,
    source_of: np.ndarray,
    component_of: np.ndarray,
    mu: np.ndarray,
    class_balance: np.ndarray,
    *,
    fix_balance: bool = False,
    n_sweeps: int = 200,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray]:
    """Block-coordinate refinement of singleton ``mu`` (and ``p``) on the Omega equations.

    With dependencies, Omega only holds pairs from different dependency components, which
    makes the joint gradient fit slow to converge. But given every other component's ``mu``
    and ``p``, one component's equations ``O_ab = sum_y p_y mu_a(y) mu_b(y)`` (``b`` outside
    the component) and ``E[psi_a] = sum_y p_y mu_a(y)`` are linear in its ``mu``, and given all
    ``mu`` they are linear in ``p``: each block is an exact least-squares solve. Sweeps stop
    when ``mu`` moves less than ``tol``.

    Parameters
    ----------
    second, means
        Moments of the emitted singleton indicators.
    source_of, component_of
        Source and dependency component of each indicator.
    mu, class_balance
        Starting point (e.g. from :func:`metal.label_model.estimation.fit_moments`).
    fix_balance
        Keep ``class_balance`` fixed (it was given).
    n_sweeps, tol
        Iteration budget and stopping tolerance.

    Returns
    -------
    mu, class_balance
        Refined ``(d, k)`` and ``(k,)``.
    """
    mu = mu.copy()
    p = class_balance.copy()
    comps = np.unique(component_of)
    blocks = [(np.flatnonzero(component_of == c), np.flatnonzero(component_of != c))
              for c in comps]
    omega = component_of[:, None] != component_of[None, :]
    iu, ju = np.nonzero(np.triu(omega, 1))
    for _ in range(n_sweeps):
        old = mu.copy()
        for inside, outside in blocks:
            if outside.size == 0:
                continue
            A = np.vstack([mu[outside] * p, p[None, :]])
            B = np.vstack([second[np.ix_(outside, inside)], means[inside][None, :]])
            X, *_ = np.linalg.lstsq(A, B, rcond=None)
            new = np.clip(X.T, 1e-9, 1.0)
            # each source's value probabilities must leave room for abstaining
            tot = np.zeros((int(source_of.max()) + 1, mu.shape[1]))
            np.add.at(tot, source_of[inside], new)
            scale = np.minimum(1.0, (1.0 - 1e-6) / np.maximum(tot, 1e-12))
            mu[inside] = new * scale[source_of[inside]]
        if not fix_balance:
            A = np.vstack([mu[iu] * mu[ju], mu, np.ones((1, mu.shape[1]))])
            b = np.concatenate([second[iu, ju], means, [1.0]])
            q, *_ = np.linalg.lstsq(A, b, rcond=None)
            q = np.clip(q, 1e-6, None)
            p = q / q.sum()
        if np.abs(mu - old).max() < tol:
            break
    return mu, p

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

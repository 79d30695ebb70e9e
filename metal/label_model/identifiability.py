"""The compiler-like check: can the sources' accuracies be recovered from unlabeled data?

Structure (MeTaL, AAAI 2019, Section 4, "Checking for identifiability"). Take as nodes the
indicator variables (one per value a source can emit, and one per joint value of a clique of
dependent sources), and as edges the index set Omega (pairs whose second moment factorises
given ``Y``). Writing the Omega equations of the rank-one completion ``(Sigma_O^-1)_ij +
z_i z_j = 0`` in log-squared form gives the linear system ``M_Omega l = q`` with ``l_i =
log z_i^2``, where ``M_Omega`` is the unsigned incidence matrix of that graph. ``l`` is unique
iff ``M_Omega`` has full column rank, iff every connected component of the graph contains an
odd cycle (an unsigned incidence matrix loses exactly one rank per bipartite component and one
per isolated node). Signs are then fixed once per component by an assumption stated in the
report.

In metal Omega joins two indicators iff their sources lie in different connected components of
the dependency graph (see :mod:`metal.label_model.coding`). Indicators of one component share
their neighbourhoods, so the graph is a blow-up of a small *group graph* (nodes: sources and
cliques) and the odd-cycle test runs on that; tests check it against a brute-force
``matrix_rank`` of ``M_Omega``.

Scope for ``k > 2``: the paper's argument is for the binary case, where ``z`` is one vector. With
``k`` classes the completion factor has ``k - 1`` columns; the check applies the same rank
condition to the same Omega, which is necessary (an indicator without an odd cycle in its
component has an unrecoverable scale) but assumes, beyond it, that the class-conditional rows
of the sources are generic (distinct classes are told apart by at least some sources).

On data (``L`` given), the check additionally uses only the values each source actually emits
(a unipolar source has one indicator), keeps only the Omega pairs that actually co-occur, and
reports near-singular moments and very low coverage.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from metal._validate import check_int, check_names
from metal.errors import ConfigError
from metal.label_model.coding import SourceCoding
from metal.label_model.statistics import SourceStatistics

__all__ = ["IdentifiabilityReport", "bipartite_deficiency", "check_coding",
           "check_identifiability", "extended_deficiency", "extended_omega_edges",
           "omega_incidence_rank"]

#: Condition number of the second-moment matrix above which the fit is reported as unstable.
MAX_CONDITION = 1e8
#: Largest number of indicators whose moment matrix is eigen-decomposed for the check.
MAX_CONDITION_DIM = 1500
#: A source with fewer votes than this is reported as too sparse to estimate.
MIN_VOTES = 20


@dataclass
class IdentifiabilityReport:
    """Outcome of :func:`check_identifiability` (``str(report)`` is the human-readable form).

    Attributes
    ----------
    identifiable
        True iff ``M_Omega`` has full column rank (structure, and emitted values when ``L`` was
        given).
    n_indicators
        Number of indicators (columns of ``M_Omega``).
    rank_deficiency
        ``n_indicators - rank(M_Omega)``.
    offending_sources
        Sources whose accuracies cannot be recovered (names when given).
    offending_edges
        Dependency edges responsible (cutting some of them would help).
    components
        Dependency components (sources that are dependent given ``Y`` through some path).
    fill_edges
        Edges the triangulation added to the user's graph.
    suggestions
        What would fix the structure.
    sign_assumptions
        For each identifiable component of the Omega graph, the assumption that fixes signs.
    data_identifiable
        Same test using only the Omega pairs that co-occur in ``L`` (None without ``L``).
    well_conditioned
        False when the observed second-moment matrix is near singular (None without ``L``).
    condition_number
        Of the observed second-moment matrix of the emitted indicators (None without ``L``).
    data_warnings
        Problems found in ``L`` (sparse sources, no overlap, near-singular moments).
    """

    identifiable: bool
    n_indicators: int
    rank_deficiency: int
    offending_sources: list[Hashable] = field(default_factory=list)
    offending_edges: list[tuple[Hashable, Hashable]] = field(default_factory=list)
    components: list[list[Hashable]] = field(default_factory=list)
    fill_edges: list[tuple[Hashable, Hashable]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    sign_assumptions: list[str] = field(default_factory=list)
    data_identifiable: bool | None = None
    well_conditioned: bool | None = None
    condition_number: float | None = None
    data_warnings: list[str] = field(default_factory=list)
    scope: str = ""
    extended_identifiable: bool | None = None
    extended_rank_deficiency: int | None = None

    @property
    def ok(self) -> bool:
        """Identifiable, and (when ``L`` was given) identifiable and well conditioned on data."""
        return self.identifiable and self.data_identifiable is not False \
            and self.well_conditioned is not False

    def __str__(self) -> str:
        # one verdict first: a structure that is identifiable but not on these data must not
        # read "IDENTIFIABLE" at the top and "NOT identifiable" further down
        verdict = ("NOT IDENTIFIABLE" if not self.identifiable else
                   "NOT IDENTIFIABLE ON THIS DATA (the structure is identifiable)"
                   if self.data_identifiable is False else "IDENTIFIABLE")
        head = verdict + \
            f": rank(M_Omega) = {self.n_indicators - self.rank_deficiency} of " \
            f"{self.n_indicators} indicators"
        lines = [head]
        if len(self.components) > 0:
            comps = [c for c in self.components if len(c) > 1]
            lines.append(f"dependency components with >1 source: {comps if comps else 'none'}")
        if self.fill_edges:
            lines.append(f"triangulation added edges {self.fill_edges}")
        if self.extended_identifiable is not None:
            lines.append(
                "junction-tree condition (non-singleton separators, the paper's appendix: Omega "
                "= indicator pairs not inside one clique of the triangulated graph): "
                + ("IDENTIFIABLE" if self.extended_identifiable else "NOT IDENTIFIABLE")
                + f", rank deficiency {self.extended_rank_deficiency}"
                + ("" if self.identifiable or not self.extended_identifiable else
                   " (the accuracies are recoverable, but not by an estimator that uses only "
                   "pairs from different dependency components)"))
        for p in self.problems:
            lines.append(f"problem: {p}")
        for s in self.suggestions:
            lines.append(f"fix: {s}")
        for s in self.sign_assumptions:
            lines.append(f"sign: {s}")
        if self.data_identifiable is not None:
            lines.append("on data: " + ("every Omega component co-occurs enough"
                                        if self.data_identifiable else
                                        "NOT identifiable from the observed overlaps"))
        if self.condition_number is not None:
            lines.append(f"condition number of the observed moments: {self.condition_number:.3g}"
                         + ("" if self.well_conditioned else " (near singular)"))
        for w in self.data_warnings:
            lines.append(f"data: {w}")
        if self.scope:
            lines.append(f"scope: {self.scope}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ rank helpers
def bipartite_deficiency(adjacency: sp.spmatrix | np.ndarray) -> int:
    """Number of bipartite connected components (isolated nodes included) of a graph.

    This is ``n_nodes - rank`` of its unsigned incidence matrix. Computed with the bipartite
    double cover: a component is bipartite iff it lifts to two components, so the deficiency is
    ``components(double cover) - components(graph)`` (sparse, no Python loop over edges).
    """
    A = sp.csr_matrix(adjacency, dtype=np.int8)
    A = ((A + A.T) > 0).astype(np.int8)
    n = A.shape[0]
    if n == 0:
        return 0
    cover = sp.bmat([[None, A], [A, None]], format="csr")
    n_cover, _ = connected_components(cover, directed=False)
    n_graph, _ = connected_components(A, directed=False)
    return int(n_cover - n_graph)


def omega_incidence_rank(n_nodes: int, edges: Sequence[tuple[int, int]]) -> int:
    """Rank of the unsigned incidence matrix of a graph given by its edge list.

    ``n_nodes - rank`` = number of bipartite components (isolated nodes included).
    """
    e = np.asarray(list(edges), dtype=np.int64).reshape(-1, 2)
    A = sp.csr_matrix((np.ones(len(e), dtype=np.int8), (e[:, 0], e[:, 1])),
                      shape=(n_nodes, n_nodes))
    return n_nodes - bipartite_deficiency(A)


def _group_components(
    component: np.ndarray, groups_task: list[frozenset[int]], active: np.ndarray
) -> list[tuple[list[int], bool, tuple[list[int], list[int]] | None]]:
    """Components of the group graph (Omega between groups): (groups, bipartite, sides).

    Groups of one dependency component never pair; two groups pair iff their dependency
    components differ and their task sets meet. With one task set for all (single task) the
    graph is complete multipartite over the active components, solved in closed form.
    """
    idx = [int(i) for i in np.flatnonzero(active)]
    if len({groups_task[i] for i in idx}) <= 1:
        parts: dict[int, list[int]] = {}
        for i in idx:
            parts.setdefault(int(component[i]), []).append(i)
        if len(parts) >= 3:
            return [(idx, False, None)]
        if len(parts) == 2:
            side_a, side_b = parts.values()
            return [(idx, True, (side_a, side_b))]
        return [([i], True, None) for i in idx]
    return _group_components_by_type(component, groups_task, idx)


def _group_components_by_type(
    component: np.ndarray, groups_task: list[frozenset[int]], idx: list[int]
) -> list[tuple[list[int], bool, tuple[list[int], list[int]] | None]]:
    """The multi-task group graph without listing its (up to quadratically many) edges.

    Groups with the same (dependency component, task set) *key* are twins: same neighbours,
    never adjacent to each other, so the graph is a blow-up of the graph over keys, which
    keeps connectivity and bipartiteness. A task set whose keys span >= 3 dependency
    components ("rich") holds a triangle, and every key whose task set meets it is adjacent
    to one of its keys; so only keys of non-rich task sets (at most two per task set) need
    explicit edges. Cost: linear in the groups, quadratic only in the distinct task sets.
    """
    keys: dict[tuple[int, frozenset[int]], list[int]] = {}
    for g in idx:
        keys.setdefault((int(component[g]), groups_task[g]), []).append(g)
    key_list = list(keys)
    by_type: dict[frozenset[int], list[int]] = {}
    for i, (_, tasks) in enumerate(key_list):
        by_type.setdefault(tasks, []).append(i)
    parent = list(range(len(key_list)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[ri] = rj

    rich = {t for t, ks in by_type.items() if len(ks) >= 3}
    odd: set[int] = set()  # keys known to lie in a component with an odd cycle
    edges: list[tuple[int, int]] = []  # explicit edges between keys of non-rich types
    types = list(by_type)
    for a, ta in enumerate(types):
        for tb in types[a:]:
            if not ta & tb:
                continue
            ka, kb = by_type[ta], by_type[tb]
            if ta in rich or tb in rich:
                for i in ka + kb:
                    union(i, ka[0] if ta in rich else kb[0])
                odd.add(ka[0] if ta in rich else kb[0])
                continue
            for i in ka:
                for j in kb:
                    if key_list[i][0] != key_list[j][0] and (ta != tb or i < j):
                        edges.append((i, j))
                        union(i, j)
    odd_roots = {find(i) for i in odd}
    members: dict[int, list[int]] = {}
    for i in range(len(key_list)):
        members.setdefault(find(i), []).append(i)
    sub = nx.Graph()
    sub.add_edges_from(edges)
    out: list[tuple[list[int], bool, tuple[list[int], list[int]] | None]] = []
    for root, ks in members.items():
        groups = sorted(g for i in ks for g in keys[key_list[i]])
        if root in odd_roots:
            out.append((groups, False, None))
        elif len(ks) == 1:  # no edge at all: every group of the key is isolated
            out.extend(([g], True, None) for g in groups)
        else:
            part = sub.subgraph(ks)
            if nx.is_bipartite(part):
                left, right = nx.bipartite.sets(part)
                out.append((groups, True,
                            (sorted(g for i in left for g in keys[key_list[i]]),
                             sorted(g for i in right for g in keys[key_list[i]]))))
            else:
                out.append((groups, False, None))
    return out


def _extended_pairs(coding: SourceCoding, active: np.ndarray,
                    groups_task: list[frozenset[int]]) -> list[tuple[int, int]]:
    """Group pairs in the extended Omega: task sets meet, and the union of their sources lies
    in no maximal clique of the triangulated dependency graph (Loh and Wainwright: the inverse
    covariance of the clique indicators is zero exactly there)."""
    cliques = [frozenset(c) for c in coding.cliques]
    members = [frozenset(g) for g in coding.groups]
    idx = [int(i) for i in np.flatnonzero(active)]
    out = []
    for a, b in itertools.combinations(idx, 2):
        if not groups_task[a] & groups_task[b]:
            continue
        union = members[a] | members[b]
        if not any(union <= c for c in cliques):
            out.append((a, b))
    return out


def extended_deficiency(coding: SourceCoding, n_ind: np.ndarray,
                        groups_task: list[frozenset[int]] | None = None) -> int:
    """``n_indicators - rank(M_Omega)`` under the junction-tree (non-singleton separator)
    condition, from the group graph: an isolated group loses all its indicators, a bipartite
    component one rank, a component with an odd cycle none (indicators of one group share
    their neighbourhood, so the blow-up keeps bipartiteness and connectivity)."""
    tasks = groups_task or [frozenset({0})] * coding.n_groups
    active = np.asarray(n_ind) > 0
    g = nx.Graph()
    g.add_nodes_from(int(i) for i in np.flatnonzero(active))
    g.add_edges_from(_extended_pairs(coding, active, tasks))
    deficiency = 0
    for comp in nx.connected_components(g):
        sub = g.subgraph(comp)
        if sub.number_of_edges() == 0:
            deficiency += int(sum(int(n_ind[i]) for i in comp))
        elif nx.is_bipartite(sub):
            deficiency += 1
    return deficiency


def extended_omega_edges(coding: SourceCoding, n_ind: np.ndarray,
                         groups_task: list[frozenset[int]] | None = None
                         ) -> tuple[int, list[tuple[int, int]]]:
    """Indicator-level extended Omega (for brute-force checks on small structures): the number
    of indicators and the edges between them."""
    tasks = groups_task or [frozenset({0})] * coding.n_groups
    n_ind = np.asarray(n_ind, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(n_ind)])
    edges = [(int(start[a] + i), int(start[b] + j))
             for a, b in _extended_pairs(coding, n_ind > 0, tasks)
             for i in range(int(n_ind[a])) for j in range(int(n_ind[b]))]
    return int(start[-1]), edges


def _structure_report(
    coding: SourceCoding,
    n_ind: np.ndarray,
    names: list[Hashable],
    groups_task: list[frozenset[int]] | None = None,
) -> IdentifiabilityReport:
    """Odd-cycle test on the blown-up group graph, with the report in the user's terms."""
    m = coding.n_sources
    n_groups = coding.n_groups
    tasks = groups_task or [frozenset({0})] * n_groups
    active = n_ind > 0
    isolated: list[int] = []
    deficiency = 0
    bad_groups: set[int] = set()
    problems: list[str] = []
    signs: list[str] = []
    label = _labeller(coding, names)
    # one pass over the sources (a scan per component would be quadratic in m)
    comp_sources: dict[int, list[Hashable]] = {}
    for s, c in enumerate(coding.component[:m].tolist()):
        comp_sources.setdefault(int(c), []).append(names[s])
    comp_sources = dict(sorted(comp_sources.items()))
    for comp, bipartite, sides in _group_components(coding.component, tasks, active):
        srcs = sorted({s for g in comp for s in coding.groups[g]})
        if len(comp) == 1 and bipartite and sides is None:
            (g,) = comp
            deficiency += int(n_ind[g])
            bad_groups.add(g)
            isolated.append(g)
        elif bipartite and sides is not None:
            deficiency += 1
            bad_groups.update(comp)
            left, right = sides
            side = sorted({names[s] for g in left for s in coding.groups[g]}, key=str)
            other = sorted({names[s] for g in right for s in coding.groups[g]}, key=str)
            problems.append(f"sources {side} and {other} only inform each other (two sides of "
                            "conditionally independent sources, no odd cycle): the scale of one "
                            "side's accuracies trades off against the other's")
        else:
            free = [names[s] for s in srcs if coding.graph.degree(s) == 0]
            why = (f"it holds sources independent of all others ({free[:5]}), so, as in the "
                   "paper, 'non-adversarial on average' suffices" if free else
                   "no source in it is independent of all others, so the safe reading is the "
                   "paper's stronger assumption that every source is better than random")
            signs.append(f"sources {[names[s] for s in srcs]}: one sign/class naming for the "
                         "whole component, fixed by assuming the sources are better than random "
                         f"on average (the assignment step); {why}")
    isolated_by_comp: dict[int, list[int]] = {}
    for g in isolated:
        isolated_by_comp.setdefault(int(coding.component[g]), []).append(g)
    for c, members in sorted(isolated_by_comp.items()):
        others = comp_sources[c]
        what = ", ".join(label(g) for g in members[:8]) + (
            f" and {len(members) - 8} more" if len(members) > 8 else "")
        if len(others) > 1:
            problems.append(f"{what}: no Omega partner — every other source that votes on the "
                            "same task is dependent on them through the dependency component "
                            f"{others[:20]}")
        else:
            problems.append(f"{what}: no Omega partner — no other source votes on the same task")
    bad_set = {s for g in bad_groups for s in coding.groups[g]}
    bad_sources = sorted(bad_set)
    graph = coding.graph
    bad_edges = sorted({(min(int(u), int(v)), max(int(u), int(v))) for u, v in graph.edges
                        if u in bad_set or v in bad_set})
    suggestions: list[str] = []
    if deficiency:
        n_parts = len({int(coding.component[g]) for g in np.flatnonzero(active)})
        suggestions.append("add a source that is conditionally independent of the others "
                           f"(there are {n_parts} independent group(s) of voting sources; every "
                           "source needs partners in at least two other groups that also pair "
                           "with each other, i.e. an odd cycle)")
        bridges = [(min(u, v), max(u, v)) for u, v in nx.bridges(graph)
                   if u in bad_set or v in bad_set]
        if bridges:
            suggestions.append("or drop a dependency edge that splits a component, e.g. "
                               + ", ".join(f"({names[u]}, {names[v]})" for u, v in bridges[:5]))
        elif bad_edges:
            suggestions.append("or drop dependency edges among "
                               + ", ".join(f"({names[u]}, {names[v]})" for u, v in bad_edges[:5])
                               + " if those sources are in fact independent given the label")
    return IdentifiabilityReport(
        identifiable=deficiency == 0,
        n_indicators=int(n_ind.sum()),
        rank_deficiency=int(deficiency),
        offending_sources=[names[s] for s in bad_sources],
        offending_edges=[(names[u], names[v]) for u, v in bad_edges],
        components=list(comp_sources.values()),
        fill_edges=([(names[u], names[v]) for u, v in coding.junction.fill_edges]
                    if coding.junction is not None else []),
        problems=problems,
        suggestions=suggestions,
        sign_assumptions=signs,
        extended_identifiable=(deficiency == 0 if coding.all_singletons else
                               extended_deficiency(coding, n_ind, tasks) == 0),
        extended_rank_deficiency=(int(deficiency) if coding.all_singletons else
                                  extended_deficiency(coding, n_ind, tasks)),
    )


def _labeller(coding: SourceCoding, names: list[Hashable]) -> Any:
    def label(g: int) -> str:
        members = coding.groups[g]
        if len(members) == 1:
            return f"source {names[members[0]]!r}"
        return f"clique {[names[s] for s in members]}"
    return label


def _clique_indicator_count(sizes: Sequence[int]) -> int:
    """Joint values of a clique with >= 2 voters, member ``j`` having ``sizes[j]`` values."""
    total = 0
    r = len(sizes)
    for q in range(2, r + 1):
        for sub in itertools.combinations(sizes, q):
            total += math.prod(sub)
    return total


# ------------------------------------------------------------------------------ data checks
def _first_few(items: list[str], shown: int = 5) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _data_checks(report: IdentifiabilityReport, coding: SourceCoding, stats: SourceStatistics,
                 names: list[Hashable]) -> None:
    emitted = stats.emitted()
    report.data_warnings = []
    if emitted.size == 0:
        report.data_identifiable = False
        report.data_warnings.append("L contains no vote")
        return
    means, second = stats.moments(emitted)
    m = coding.n_sources
    votes = np.zeros(m)
    single = emitted < m * coding.cardinality
    np.add.at(votes, coding.indicator_group(emitted[single]), stats.counts[emitted[single]])
    rare = np.flatnonzero((votes > 0) & (votes < MIN_VOTES))
    if rare.size:  # one clause for all of them, not one per source
        report.data_warnings.append(
            f"{rare.size} source(s) vote fewer than {MIN_VOTES} times ("
            + _first_few([f"{names[s]!r} ({int(votes[s])} votes)" for s in rare])
            + "); their accuracy estimates will be very noisy")
    # Omega pairs that actually co-occur
    omega = coding.omega(emitted)
    observed = omega & (second > 0)
    d = emitted.size
    rank = d - bipartite_deficiency(observed)
    report.data_identifiable = rank == d
    grp = coding.indicator_group(emitted)
    partners = observed.any(axis=1)
    lonely = sorted({int(g) for g in grp[~partners]})
    if lonely:
        whats = [f"{names[coding.groups[g][0]]!r}" if len(coding.groups[g]) == 1
                 else f"clique {[names[s] for s in coding.groups[g]]}" for g in lonely]
        report.data_warnings.append(f"{len(lonely)} source(s) never vote on the same row as any "
                                    "source outside their dependency component ("
                                    + _first_few(whats) + "), so their accuracies cannot be "
                                    "estimated; add sources that overlap with them")
    if rank < d and not lonely:
        report.data_warnings.append(f"the observed overlaps leave rank(M_Omega) = {rank} of {d}: "
                                    "some groups of sources only overlap with one other group")
    if d > MAX_CONDITION_DIM or stats.n_rows <= d:
        # too large to factor cheaply, or fewer rows than indicators (singular by construction)
        return
    # a source that never abstains has indicators summing to 1 on every row: drop one of them
    # (a structural, harmless singularity) before measuring the conditioning
    keep = np.ones(d, dtype=bool)
    totals = np.bincount(grp, weights=stats.counts[emitted], minlength=coding.n_groups)
    for full in np.flatnonzero(totals == stats.n_rows):
        keep[np.flatnonzero(grp == full)[-1]] = False
    if not keep.any():  # every source casts one and the same value on every row
        report.data_identifiable = False
        report.data_warnings.append("every source always casts the same vote (never abstains, "
                                    "never changes its value), so the votes carry no information "
                                    "about the class; check that the sources were applied")
        return
    eig = np.linalg.eigvalsh(second[np.ix_(keep, keep)])
    cond = float(eig[-1] / max(eig[0], 1e-300)) if eig[0] > 0 else float("inf")
    report.condition_number = cond
    report.well_conditioned = cond < MAX_CONDITION
    if not report.well_conditioned:
        report.data_warnings.append(
            f"the second-moment matrix of the {d} emitted indicators is near singular "
            f"(condition number {cond:.3g}); some sources duplicate each other or vote too rarely "
            "— drop duplicates, declare them dependent, or gather more data")


# ------------------------------------------------------------------------------ entry points
def check_coding(coding: SourceCoding, stats: SourceStatistics | None = None,
                 source_names: Sequence[Hashable] | None = None) -> IdentifiabilityReport:
    """Check a single-task coding; with ``stats`` use the emitted values and run data checks.

    This is what :meth:`LabelModel.fit` calls (it already has the coding and the statistics).
    """
    m = coding.n_sources
    names: list[Hashable] = list(source_names) if source_names is not None else list(range(m))
    if stats is None:
        n_ind = coding.n_emittable()
    else:
        emitted = stats.emitted()
        n_ind = np.bincount(coding.indicator_group(emitted), minlength=coding.n_groups)
    report = _structure_report(coding, n_ind, names)
    report.scope = ("Omega = indicator pairs from different dependency components; "
                    + ("indicators = emitted values" if stats is not None else
                       "indicators = every class value (pass L to use the emitted ones)")
                    + "; for k > 2 the rank condition is necessary and assumes generic "
                    "class-conditional tables")
    if stats is not None:
        _data_checks(report, coding, stats, names)
    return report


def check_identifiability(
    n_sources: int | None = None,
    cardinality: int | Sequence[int] = 2,
    dependencies: nx.Graph | None = None,
    task_graph: Any = None,
    L: Any = None,
    *,
    coverage: Sequence[Sequence[int]] | None = None,
    source_names: Sequence[Hashable] | None = None,
    chunk_rows: int = 65536,
) -> IdentifiabilityReport:
    """Decide, before training, whether the sources' accuracies are identifiable.

    Parameters
    ----------
    n_sources
        Number of sources ``m`` (taken from ``L`` when omitted).
    cardinality
        Number of classes ``k``; in the multi-task form, one cardinality per task.
    dependencies
        Optional ``networkx.Graph`` of dependent sources (indices or ``source_names``).
    task_graph
        Multi-task form: a ``networkx`` graph over tasks ``0..t-1`` (or an object with a
        ``graph`` attribute holding one). Tasks in different connected components are unrelated
        and checked separately.
    L
        Optional single-task ``(n, m)`` label matrix: use only the values actually emitted, and
        run the data checks (overlaps, conditioning, coverage).
    coverage
        Multi-task form: the tasks each source labels (its coverage set ``tau_i``).
    source_names
        Names used in the report (and accepted as nodes of ``dependencies``).
    chunk_rows
        Rows per block of the statistics pass over ``L``.

    Returns
    -------
    IdentifiabilityReport
        ``.identifiable``, the offending sources and edges, fixes, sign assumptions;
        ``str(report)`` explains it.

    Examples
    --------
    >>> import networkx as nx
    >>> check_identifiability(n_sources=3, cardinality=2).identifiable
    True
    >>> report = check_identifiability(n_sources=3, cardinality=2, dependencies=nx.Graph([(0, 1)]))
    >>> report.identifiable, report.offending_sources
    (False, [0, 1, 2])
    """
    from metal.label_model.base import check_cardinality
    from metal.matrix import check_label_matrix

    multitask = task_graph is not None or coverage is not None or \
        not isinstance(cardinality, (int, np.integer))
    lm = None
    if L is not None:
        if multitask:
            raise ConfigError("L is accepted in the single-task form only; for multi-task "
                              "sources pass coverage= and task_graph= (structure check)")
        lm = check_label_matrix(L, cardinality=check_cardinality(cardinality),
                                n_sources=n_sources)
        n_sources = lm.n_sources
    if n_sources is None:
        raise ConfigError("n_sources=None; expected a positive int (or pass L)")
    m = check_int("n_sources", n_sources, low=1)
    if source_names is not None:
        check_names("source_names", source_names, m)
    names: list[Hashable] = list(source_names) if source_names is not None else list(range(m))
    if not multitask:
        k = check_cardinality(cardinality)
        coding = SourceCoding.from_dependencies(m, k, dependencies, source_names)
        stats = coding.statistics(lm, chunk_rows) if lm is not None else None
        return check_coding(coding, stats, names)

    # ---- multi-task form: tasks, coverage sets and the task graph
    if isinstance(cardinality, (str, bytes)) or not isinstance(
            cardinality, (int, np.integer, Sequence, np.ndarray)):
        raise ConfigError(f"cardinality={cardinality!r}; expected an int or one int per task")
    cards = [check_int(f"cardinality[{i}]", c, low=2) for i, c in enumerate(
        cardinality if not isinstance(cardinality, (int, np.integer)) else [cardinality])]
    if not cards:
        raise ConfigError("cardinality=[] names no task; expected one cardinality per task")
    if coverage is None:
        raise ConfigError("the multi-task form needs coverage=: the tasks each source labels, "
                          "e.g. coverage=[[0], [0, 1], [2]]")
    if len(coverage) != m:
        raise ConfigError(f"coverage has {len(coverage)} entries; expected one per source ({m})")
    t = len(cards)
    graph = task_graph if isinstance(task_graph, nx.Graph) or task_graph is None \
        else getattr(task_graph, "graph", task_graph)
    tg = nx.Graph()
    tg.add_nodes_from(range(t))
    if graph is not None:
        if not isinstance(graph, nx.Graph):
            raise ConfigError("task_graph must be a networkx graph over tasks 0..t-1 (or have a "
                              f".graph attribute holding one), got {type(task_graph).__name__}")
        bad = [u for u in graph.nodes if not (isinstance(u, (int, np.integer)) and 0 <= u < t)]
        if bad:
            raise ConfigError(f"task_graph nodes {bad} are not tasks 0..{t - 1}")
        tg.add_edges_from(graph.to_undirected().edges if graph.is_directed() else graph.edges)
    task_comp = {task: i for i, c in enumerate(nx.connected_components(tg)) for task in c}
    src_tasks: list[frozenset[int]] = []
    sizes: list[int] = []
    for i, cov in enumerate(coverage):
        if isinstance(cov, (str, bytes)) or not isinstance(cov, (Sequence, np.ndarray, set,
                                                                   frozenset)):
            raise ConfigError(f"coverage[{i}]={cov!r}; expected a list of task indices")
        cov_list = sorted({check_int(f"coverage[{i}] entry", x) for x in cov})
        if not cov_list or cov_list[0] < 0 or cov_list[-1] >= t:
            raise ConfigError(f"coverage[{i}]={list(cov)} must be a non-empty set of tasks "
                              f"0..{t - 1}")
        src_tasks.append(frozenset(task_comp[x] for x in cov_list))
        sizes.append(math.prod(cards[x] for x in cov_list))
    coding = SourceCoding.from_dependencies(m, 2, dependencies, source_names)
    groups_task = src_tasks + [frozenset().union(*(src_tasks[s] for s in c))
                               for c in coding.cliques]
    # a clique's joint values with >= 2 voters, minus those inside its separator (the parent's)
    n_ind = np.array(sizes + [_clique_indicator_count([sizes[s] for s in c])
                              - _clique_indicator_count([sizes[s] for s in sep])
                              for c, sep in zip(coding.cliques, coding.separator, strict=True)],
                     dtype=np.int64)
    report = _structure_report(coding, n_ind, names, groups_task)
    report.scope = ("multi-task: Omega = indicator pairs from different dependency components "
                    "whose coverage sets meet a common connected component of the task graph; "
                    "each source has one indicator per label vector over its coverage set")
    return report

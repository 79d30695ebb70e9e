"""The identifiability check agrees with a brute-force rank of M_Omega on a catalogue."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from metal.errors import NotIdentifiableError
from metal.label_model.coding import SourceCoding
from metal.label_model.identifiability import check_identifiability, omega_incidence_rank
from metal.label_model.label_model import LabelModel


def brute_force_rank(m: int, k: int, edges: list[tuple[int, int]],
                     coverage: list[list[int]] | None = None,
                     task_edges: list[tuple[int, int]] | None = None) -> tuple[int, int]:
    """(d, rank M_Omega) with Omega built independently from networkx components."""
    coding = SourceCoding.from_dependencies(m, k, nx.Graph(edges) if edges else None)
    n_ind = coding.n_emittable()
    if coverage is not None:
        # one indicator per label vector over the coverage set (k values per task)
        n_ind = n_ind.copy()
        n_ind[:m] = [k ** len(c) for c in coverage]
    g = nx.Graph()
    g.add_nodes_from(range(m))
    g.add_edges_from(edges)
    comp = {s: i for i, c in enumerate(nx.connected_components(g)) for s in c}
    tg = nx.Graph()
    n_tasks = 1 + max((max(c) for c in coverage), default=0) if coverage else 1
    tg.add_nodes_from(range(n_tasks))
    tg.add_edges_from(task_edges or [])
    tcomp = {t: i for i, c in enumerate(nx.connected_components(tg)) for t in c}
    groups = coding.groups
    if coverage is not None:
        groups = groups[:m]  # multi-task catalogue cases have no cliques
        n_ind = n_ind[:m]
    owner = np.repeat(np.arange(len(groups)), n_ind)
    tasks = [{tcomp[t] for s in grp for t in (coverage[s] if coverage else [0])}
             for grp in groups]
    rows = []
    for a, b in itertools.combinations(range(owner.size), 2):
        ga, gb = owner[a], owner[b]
        if comp[groups[ga][0]] != comp[groups[gb][0]] and tasks[ga] & tasks[gb]:
            row = np.zeros(owner.size)
            row[[a, b]] = 1
            rows.append(row)
    if not rows:
        return owner.size, 0
    return owner.size, int(np.linalg.matrix_rank(np.array(rows)))


CATALOGUE = [
    # (name, m, k, dependency edges, identifiable)
    ("3 independent", 3, 2, [], True),
    ("2 sources", 2, 2, [], False),
    ("4 sources, 2 dependent pairs", 4, 2, [(0, 1), (2, 3)], False),
    ("5 sources, 2 dependent pairs + 1 free", 5, 2, [(0, 1), (2, 3)], True),
    ("chain of 4 alone", 4, 2, [(0, 1), (1, 2), (2, 3)], False),
    ("chain of 3 + 2 independent", 5, 3, [(0, 1), (1, 2)], True),
    ("clique of 3 + 1 independent", 4, 2, [(0, 1), (1, 2), (0, 2)], False),
    ("clique of 3 + 2 independent", 5, 2, [(0, 1), (1, 2), (0, 2)], True),
    ("4-cycle (not chordal) + 2 independent", 6, 3, [(0, 1), (1, 2), (2, 3), (3, 0)], True),
    ("two triangles sharing an edge + 2", 6, 2, [(0, 1), (1, 2), (0, 2), (1, 3), (2, 3)], True),
    ("3 independent, k=4", 3, 4, [], True),
]


@pytest.mark.parametrize(("name", "m", "k", "edges", "expected"), CATALOGUE,
                         ids=[c[0] for c in CATALOGUE])
def test_catalogue_matches_brute_force_rank(name, m, k, edges, expected):
    report = check_identifiability(n_sources=m, cardinality=k,
                                   dependencies=nx.Graph(edges) if edges else None)
    d, rank = brute_force_rank(m, k, edges)
    assert report.n_indicators == d
    assert report.n_indicators - report.rank_deficiency == rank
    assert report.identifiable == (rank == d) == expected
    if not expected:
        assert report.offending_sources and report.suggestions
        assert "NOT IDENTIFIABLE" in str(report)
    else:
        assert report.sign_assumptions


MULTITASK = [
    # (coverage, task-graph edges, identifiable)
    ([[0], [0], [1]], [(0, 1)], True),  # related tasks: three independent sources overall
    ([[0], [0], [1]], [], False),  # unrelated tasks: task 0 has two sources, task 1 one
    ([[0], [0], [0], [1], [1], [1]], [], True),
    ([[0, 1], [1], [2]], [(0, 1)], False),  # task 2 alone
]


@pytest.mark.parametrize(("coverage", "task_edges", "expected"), MULTITASK)
def test_multitask_coverage_matches_brute_force(coverage, task_edges, expected):
    t = 1 + max(max(c) for c in coverage)
    tg = nx.DiGraph(task_edges)
    tg.add_nodes_from(range(t))
    report = check_identifiability(n_sources=len(coverage), cardinality=[2] * t,
                                   task_graph=tg, coverage=coverage)
    d, rank = brute_force_rank(len(coverage), 2, [], coverage, task_edges)
    assert report.n_indicators == d
    assert report.n_indicators - report.rank_deficiency == rank
    assert report.identifiable == expected


def test_incidence_rank_is_odd_cycle_rule():
    # triangle: full rank; square: one short; path: one short; two isolated nodes: two short
    assert omega_incidence_rank(3, [(0, 1), (1, 2), (0, 2)]) == 3
    assert omega_incidence_rank(4, [(0, 1), (1, 2), (2, 3), (3, 0)]) == 3
    assert omega_incidence_rank(3, [(0, 1), (1, 2)]) == 2
    assert omega_incidence_rank(2, []) == 0


def test_fit_raises_with_report_naming_sources():
    rng = np.random.default_rng(0)
    y = rng.integers(2, size=2000)
    L = np.column_stack([np.where(rng.random(2000) < 0.8, y, 1 - y) for _ in range(3)])
    names = ["regex", "dictionary", "crowd"]
    model = LabelModel(cardinality=2, source_names=names,
                       dependencies=nx.Graph([("regex", "dictionary")]))
    with pytest.raises(NotIdentifiableError) as err:
        model.fit(L)
    assert not err.value.report.identifiable
    assert "regex" in str(err.value) and "crowd" in str(err.value)
    assert ("regex", "dictionary") in err.value.report.offending_edges
    assert not hasattr(model, "class_balance_")
    # the same data without the dependency is fine, and the check can be disabled
    LabelModel(cardinality=2).fit(L)
    LabelModel(cardinality=2, source_names=names, check_identifiability=False,
               dependencies=nx.Graph([("regex", "dictionary")])).fit(L)


def test_emitted_values_and_silent_sources_count():
    rng = np.random.default_rng(1)
    y = rng.integers(2, size=3000)
    unipolar = np.where((y == 1) & (rng.random(3000) < 0.7), 1, -1)
    L = np.column_stack([unipolar, np.where(rng.random(3000) < 0.8, y, 1 - y),
                         np.where(rng.random(3000) < 0.7, y, 1 - y), np.full(3000, -1)])
    report = check_identifiability(cardinality=2, L=L)
    assert report.identifiable and report.n_indicators == 1 + 2 + 2  # unipolar: 1, silent: 0
    report = check_identifiability(cardinality=2, L=L[:, [0, 1, 3]])
    assert not report.identifiable  # only two sources actually vote


def test_data_checks_no_overlap_and_duplicates():
    rng = np.random.default_rng(2)
    n = 4000
    y = rng.integers(2, size=n)
    first = np.arange(n) < n // 2
    a = np.where(first, np.where(rng.random(n) < 0.8, y, 1 - y), -1)
    b = np.where(first, np.where(rng.random(n) < 0.75, y, 1 - y), -1)
    c = np.where(~first, np.where(rng.random(n) < 0.7, y, 1 - y), -1)  # never overlaps a, b
    d = np.where(first, np.where(rng.random(n) < 0.7, y, 1 - y), -1)
    report = check_identifiability(cardinality=2, L=np.column_stack([a, b, c, d]))
    assert report.identifiable  # the structure is fine...
    assert report.data_identifiable is False  # ...but source 2 never co-votes
    assert any("never vote on the same row" in w and "(2)" in w for w in report.data_warnings)
    dup = check_identifiability(cardinality=2, L=np.column_stack([a, a, b, d]))
    assert dup.well_conditioned is False and "near singular" in str(dup)


# ---------------------------------------------------------------- junction-tree (extended) check
def _brute_extended_deficiency(coding, n_ind) -> int:  # type: ignore[no-untyped-def]
    from metal.label_model.identifiability import extended_omega_edges

    n, edges = extended_omega_edges(coding, n_ind)
    M = np.zeros((len(edges), n))
    for r, (a, b) in enumerate(edges):
        M[r, a] = M[r, b] = 1.0
    return n - (int(np.linalg.matrix_rank(M)) if edges else 0)


@pytest.mark.parametrize("kind", ["chain", "cycle"])
@pytest.mark.parametrize("n_dep", [3, 4, 5, 6])
@pytest.mark.parametrize("extra", [0, 1, 2])
def test_extended_condition_matches_brute_force_rank(kind: str, n_dep: int, extra: int) -> None:
    import networkx as nx

    from metal.label_model.coding import SourceCoding
    from metal.label_model.identifiability import check_coding, extended_deficiency

    g = nx.path_graph(n_dep) if kind == "chain" else nx.cycle_graph(n_dep)
    m = n_dep + extra
    coding = SourceCoding.from_dependencies(m, 2, g)
    n_ind = coding.n_emittable()
    brute = _brute_extended_deficiency(coding, n_ind)
    assert extended_deficiency(coding, n_ind) == brute
    report = check_coding(coding)
    assert report.extended_rank_deficiency == brute
    assert report.extended_identifiable == (brute == 0)
    assert "junction-tree condition" in str(report)


def test_chain_is_identifiable_under_the_extended_condition_only() -> None:
    import networkx as nx

    from metal import check_identifiability

    report = check_identifiability(n_sources=5, cardinality=2, dependencies=nx.path_graph(5))
    assert not report.identifiable  # main text: one dependency component, no Omega pair
    assert report.extended_identifiable
    three = check_identifiability(n_sources=3, cardinality=2, dependencies=nx.path_graph(3))
    assert not three.extended_identifiable  # 0 and 2 only pair with each other


def _pairwise_group_components(component, groups_task, idx):  # type: ignore[no-untyped-def]
    """The definition, edge by edge (quadratic): the reference for the by-type version."""
    import itertools

    g = nx.Graph()
    g.add_nodes_from(idx)
    for a, b in itertools.combinations(idx, 2):
        if component[a] != component[b] and groups_task[a] & groups_task[b]:
            g.add_edge(a, b)
    out = set()
    for comp in nx.connected_components(g):
        sub = g.subgraph(comp)
        if sub.number_of_edges() == 0:
            out.add((frozenset(comp), True, None))
        elif nx.is_bipartite(sub):
            left, right = nx.bipartite.sets(sub)
            out.add((frozenset(comp), True, frozenset({frozenset(left), frozenset(right)})))
        else:
            out.add((frozenset(comp), False, None))
    return out


def test_multitask_group_graph_matches_the_pairwise_definition() -> None:
    from metal.label_model.identifiability import _group_components_by_type

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 12))
        t = int(rng.integers(1, 4))
        component = rng.integers(0, int(rng.integers(1, 6)), size=n)
        tasks = [frozenset(int(x) for x in np.flatnonzero(rng.random(t) < 0.5)) or frozenset({0})
                 for _ in range(n)]
        idx = sorted(int(i) for i in np.flatnonzero(rng.random(n) < 0.9))
        got = {(frozenset(c), b, None if s is None else
                frozenset({frozenset(s[0]), frozenset(s[1])}))
               for c, b, s in _group_components_by_type(component, tasks, idx)}
        assert got == _pairwise_group_components(component, tasks, idx), trial


@pytest.mark.timeout(60)  # a quadratic pass over 20,000 sources would not finish
def test_multitask_structure_check_is_fast_for_many_sources() -> None:
    report = check_identifiability(n_sources=20_000, cardinality=[2, 3],
                                   coverage=[[i % 2] if i % 3 else [0, 1] for i in range(20_000)])
    assert report.identifiable

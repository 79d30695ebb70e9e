"""TaskHierarchy: feasible sets of trees of depth 1-3, N/A semantics, validation, drawing."""

from __future__ import annotations

import itertools

import matplotlib
import networkx as nx
import numpy as np
import pytest

from metal.errors import TaskGraphError
from metal.tasks import TaskGraph, TaskHierarchy

matplotlib.use("Agg")

FIG2 = {"type": 2, "person": 3, "org": 3}
FIG2_PARENTS = {"person": ("type", 0), "org": ("type", 1)}


def brute_force(h: TaskHierarchy) -> list[list[int]]:
    """Feasible vectors by checking every combination against the parent rules."""
    out = []
    for y in itertools.product(*[range(k) for k in h.cardinalities]):
        ok = True
        for child, (parent, mapping) in h.parents.items():
            c, p = y[h.task_index(child)], y[h.task_index(parent)]
            if isinstance(mapping, int):
                na = h.cardinalities[h.task_index(child)] - 1
                ok &= (c != na) if p == mapping else (c == na)
            else:
                ok &= mapping[c] == p
        if ok:
            out.append(list(y))
    return out


def test_depth_1_forest_is_a_product() -> None:
    h = TaskHierarchy({"a": 2, "b": 3})
    assert h.depth() == 1 and h.n_feasible == 6
    assert h.roots == ["a", "b"]


def test_figure_2_hierarchy() -> None:
    h = TaskHierarchy(FIG2, parents=FIG2_PARENTS,
                      value_names={"type": ["Person", "Org"],
                                   "person": ["Doctor", "Lawyer", "N/A"],
                                   "org": ["Hospital", "Office", "N/A"]})
    assert h.feasible.tolist() == [[0, 0, 2], [0, 1, 2], [1, 2, 0], [1, 2, 1]]
    assert h.depth() == 2 and isinstance(h.graph, nx.DiGraph) and isinstance(h, TaskGraph)
    assert sorted(h.graph.edges) == [("type", "org"), ("type", "person")]
    assert h.na_value == {"person": 2, "org": 2}
    # [Person, N/A, Hospital] is the paper's example of an infeasible vector
    assert h.is_feasible([[0, 2, 0], [0, 0, 2]]).tolist() == [False, True]
    with pytest.raises(TaskGraphError,
                       match=r"task 'person' = 2 \(N/A\) is not allowed when its parent "
                             r"'type' = 0 \(Person\).*one of: 0 \(Doctor\), 1 \(Lawyer\)"):
        h.to_joint([[0, 0, 2], [0, 2, 0]])
    text = h.describe()
    assert "person (3): Doctor, Lawyer, N/A  [active when type = Person]" in text


def test_depth_3_na_propagates_down() -> None:
    h = TaskHierarchy({"a": 2, "b": 3, "c": 4, "d": 3},
                      parents={"b": ("a", 1), "c": ("b", 0), "d": ("a", [0, 0, 1])})
    assert h.depth() == 3
    assert h.feasible.tolist() == brute_force(h)
    # a = 0 makes b N/A, and then c is N/A too
    rows = h.feasible[h.feasible[:, 0] == 0]
    assert (rows[:, 1] == 2).all() and (rows[:, 2] == 3).all()
    assert h.topological_order()[0] == "a"


def test_partition_mapping_coarse_to_fine() -> None:
    rng = np.random.default_rng(0)
    fine_to_coarse = np.sort(np.r_[np.arange(6), rng.integers(0, 6, 44)])
    h = TaskHierarchy({"coarse": 6, "fine": 50}, parents={"fine": ("coarse", fine_to_coarse)})
    assert h.n_feasible == 50
    assert np.array_equal(h.feasible[:, 0], fine_to_coarse[h.feasible[:, 1]])


def test_random_trees_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        t = int(rng.integers(1, 6))
        cards = {f"t{i}": int(rng.integers(2, 4)) for i in range(t)}
        parents: dict = {}
        for i in range(1, t):
            p = int(rng.integers(0, i))
            kp = cards[f"t{p}"]
            real_p = kp - 1 if f"t{p}" in {c for c, (_, m) in parents.items()
                                           if isinstance(m, int)} else kp
            if rng.random() < 0.6:
                parents[f"t{i}"] = (f"t{p}", int(rng.integers(0, real_p)))
            else:
                k = max(cards[f"t{i}"], kp)
                cards[f"t{i}"] = k
                mapping = np.r_[np.arange(kp), rng.integers(0, kp, k - kp)]
                parents[f"t{i}"] = (f"t{p}", rng.permutation(mapping).tolist())
        h = TaskHierarchy(cards, parents)
        assert h.feasible.tolist() == brute_force(h)
        assert np.array_equal(h.from_joint(h.to_joint(h.feasible)), h.feasible)


@pytest.mark.parametrize("tasks, parents, message", [
    ({"a": 2, "b": 2}, {"a": ("b", 0), "b": ("a", 0)}, "cycle: a -> b -> a"),
    ({"a": 2, "b": 2, "c": 2}, {"a": ("c", 0), "b": ("a", 0), "c": ("b", 0)}, "cycle"),
    ({"a": 2}, {"a": ("a", 0)}, "its own parent"),
    ({"a": 2, "b": 3}, {"b": ("zzz", 0)}, "unknown parent 'zzz'"),
    ({"a": 2, "b": 3}, {"q": ("a", 0)}, "unknown task 'q'"),
    ({"a": 2, "b": 3}, {"b": ("a", 2)}, "value 2 of 'a', which has values 0..1"),
    ({"a": 2, "b": 3}, {"b": ("a", [0, 0, 0])}, "value 1 of 'a' has no value of its child"),
    ({"a": 2, "b": 3}, {"b": ("a", [0, 1])}, "expected 3 ints"),
    ({"a": 2, "b": 3}, {"b": ("a", [0, 1, 5])}, "value 2 of task 'b' maps to value 5"),
    ({"a": 2, "b": 3}, {"b": "a"}, "expected \\(parent_name, value\\)"),
    ({"a": 2, "b": 3, "c": 3}, {"b": ("a", 0), "c": ("b", 2)}, "N/A value"),
    ({"a": 2, "b": 0}, {"b": ("a", 0)}, "cardinality 0"),
    ({}, {}, "tasks is empty"),
])
def test_bad_hierarchies_raise_clear_errors(tasks: dict, parents: dict, message: str) -> None:
    with pytest.raises(TaskGraphError, match=message):
        TaskHierarchy(tasks, parents)


def test_feasible_limit_is_checked_while_expanding() -> None:
    with pytest.raises(TaskGraphError, match="more than 100 feasible vectors"):
        TaskHierarchy({"a": 10, "b": 11, "c": 10}, {"b": ("a", 0)}, max_feasible=100)
    # a huge product space with a small feasible set is fine: no product enumeration
    h = TaskHierarchy({"a": 2, **{f"c{i}": 3 for i in range(40)}},
                      {f"c{i}": ("a" if i == 0 else f"c{i - 1}", 0) for i in range(40)})
    assert h.n_feasible == 42  # a = 1; or a chain of 40 choices "real value 1 here, N/A below"


def test_extra_constraint_filters() -> None:
    h = TaskHierarchy(FIG2, FIG2_PARENTS, constraint=lambda y: y[1] != 1)
    assert h.feasible.tolist() == [[0, 0, 2], [1, 2, 0], [1, 2, 1]]


def test_draw_hierarchy() -> None:
    h = TaskHierarchy(FIG2, FIG2_PARENTS)
    ax = h.draw()
    texts = [t.get_text() for t in ax.texts]
    assert "type\n(2)" in texts and "= 0" in texts and "= 1" in texts
    pos = h._layout()
    assert pos["type"][1] > pos["person"][1]  # parent above its children
    import matplotlib.pyplot as plt

    plt.close("all")

"""TaskGraph: feasible sets from constraints or lists, conversions, validation, drawing."""

from __future__ import annotations

import itertools

import matplotlib
import networkx as nx
import numpy as np
import pytest

from metal.errors import MetalError, TaskGraphError
from metal.tasks import TaskGraph, TaskHierarchy, task_graph_from_dict

matplotlib.use("Agg")


def test_custom_constraint_enumerates_exactly_the_accepted_vectors() -> None:
    def at_most_one_positive(y: tuple[int, ...]) -> bool:
        return sum(v > 0 for v in y) <= 1

    g = TaskGraph({"a": 3, "b": 2, "c": 2}, constraint=at_most_one_positive)
    expected = [list(y) for y in itertools.product(range(3), range(2), range(2))
                if at_most_one_positive(y)]
    assert g.feasible.tolist() == expected  # lexicographic, task 0 most significant
    assert g.n_feasible == 5 and g.n_tasks == 3
    assert g.task_names == ["a", "b", "c"] and g.cardinalities == [3, 2, 2]


def test_explicit_list_is_sorted_and_deduplicated() -> None:
    g = TaskGraph({"x": 2, "y": 3}, feasible=[[1, 2], [0, 0], [1, 2], [0, 1]])
    assert g.feasible.tolist() == [[0, 0], [0, 1], [1, 2]]
    with pytest.raises(ValueError):
        g.feasible[0, 0] = 5  # read-only


def test_no_constraint_means_full_product() -> None:
    g = TaskGraph({"x": 2, "y": 3})
    assert g.n_feasible == 6
    assert g.graph.number_of_edges() == 0  # unrelated tasks


def test_joint_index_round_trip_and_feasibility() -> None:
    g = TaskGraph({"a": 2, "b": 2}, constraint=lambda y: y[0] <= y[1])
    Y = np.array([[0, 0], [1, 1], [0, 1], [1, 1]])
    idx = g.to_joint(Y)
    assert idx.tolist() == [0, 2, 1, 2]
    assert np.array_equal(g.from_joint(idx), Y)
    assert g.is_feasible([[1, 0], [0, 1], [2, 0], [-1, 0]]).tolist() == [False, True, False,
                                                                          False]
    assert g.graph.has_edge("a", "b")


def test_infeasible_rows_error_names_task_and_value() -> None:
    g = TaskGraph({"a": 2, "b": 2}, constraint=lambda y: y[0] <= y[1],
                  value_names={"a": ["lo", "hi"], "b": ["lo", "hi"]})
    with pytest.raises(TaskGraphError, match=r"row 1 .*'a' = 1 \(hi\).*'b' = 0 \(lo\)"):
        g.to_joint([[0, 0], [1, 0]])
    with pytest.raises(TaskGraphError, match=r"task 'b' has the value 5; expected 0..1"):
        g.to_joint([[0, 5]])
    with pytest.raises(TaskGraphError, match="out of range"):
        g.from_joint([3])


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": {}}, "tasks is empty"),
    ({"tasks": {"a": 0}}, "cardinality 0"),
    ({"tasks": {"a": 1}}, "cardinality 1"),
    ({"tasks": {"a": 2.5}}, "cardinality 2.5"),
    ({"tasks": [("a", 2)]}, "expected a dict"),
    ({"tasks": {"a": 2}, "constraint": lambda y: False}, "feasible set is empty"),
    ({"tasks": {"a": 2}, "feasible": [[0], [2]]}, "task 'a' the value 2"),
    ({"tasks": {"a": 2, "b": 2}, "feasible": [[0, 1, 1]]}, r"expected \(K, 2\)"),
    ({"tasks": {"a": 2}, "constraint": lambda y: True, "feasible": [[0]]}, "not both"),
    ({"tasks": {"a": 100, "b": 100, "c": 100}}, "limit is 10000"),
    ({"tasks": {"a": 2}, "value_names": {"a": ["x"]}}, "1 names"),
])
def test_bad_task_graphs_raise_clear_errors(kwargs: dict, message: str) -> None:
    tasks = kwargs.pop("tasks")
    with pytest.raises(TaskGraphError, match=message) as info:
        TaskGraph(tasks, **kwargs)
    assert isinstance(info.value, MetalError) and isinstance(info.value, ValueError)


def test_constraint_over_a_huge_product_is_refused_before_looping() -> None:
    calls = []
    with pytest.raises(TaskGraphError, match="candidate vectors"):
        TaskGraph({f"t{i}": 10 for i in range(7)}, constraint=lambda y: calls.append(y) or True)
    assert calls == []


def test_describe_and_draw() -> None:
    g = TaskGraph({"a": 2, "b": 3}, constraint=lambda y: y[1] != 2 or y[0] == 1)
    text = g.describe()
    assert "2 tasks, 5 feasible" in text and "a-b" in text
    ax = g.draw()
    assert ax.get_title().endswith("5 feasible vectors")
    import matplotlib.pyplot as plt

    plt.close("all")


def test_serialisation_round_trip() -> None:
    g = TaskGraph({"a": 2, "b": 3}, constraint=lambda y: y[1] != 2 or y[0] == 1)
    g2 = task_graph_from_dict(g.to_dict())
    assert g2 == g and type(g2) is TaskGraph
    h = TaskHierarchy({"type": 2, "person": 3, "org": 3},
                      parents={"person": ("type", 0), "org": ("type", 1)})
    h2 = task_graph_from_dict(h.to_dict())
    assert h2 == h and isinstance(h2, TaskHierarchy) and h2.parents == h.parents


def test_large_product_keys_fall_back_to_row_matching() -> None:
    # 2**70 combinations: int64 keys would overflow, lookups must still be exact
    tasks = {f"t{i}": 2 for i in range(70)}
    F = np.zeros((3, 70), dtype=np.int64)
    F[1, 5] = 1
    F[2, 69] = 1
    g = TaskGraph(tasks, feasible=F)
    assert not g._fits_int64
    assert g.to_joint(g.feasible[[2, 0, 1]]).tolist() == [2, 0, 1]
    assert g.from_joint([1]).tolist() == [F[2].tolist()]  # sorted: t5 = 1 comes last
    bad = F[:1].copy()
    bad[0, 3] = 1
    assert g.is_feasible(bad).tolist() == [False]


def test_graph_is_networkx() -> None:
    g = TaskGraph({"a": 2, "b": 2, "c": 2}, constraint=lambda y: y[0] == y[1])
    assert isinstance(g.graph, nx.Graph)
    assert sorted(g.graph.edges) == [("a", "b")]


# ---- exact behaviour at the edges (these pin down what the mutation check found loose)
def test_one_task_feasible_may_be_1d_and_integral_floats_are_accepted() -> None:
    g = TaskGraph({"a": 3}, feasible=[2, 0])
    assert g.feasible.tolist() == [[0], [2]]
    h = TaskGraph({"a": 2, "b": 2}, feasible=[[0.0, 1.0], [1.0, 1.0]])
    assert h.feasible.tolist() == [[0, 1], [1, 1]] and h.feasible.dtype == np.int64
    with pytest.raises(TaskGraphError, match=r"expected \(K, 2\)"):
        TaskGraph({"a": 2, "b": 2}, feasible=[0, 1])


def test_lookup_of_vectors_outside_the_feasible_set() -> None:
    g = TaskGraph({"a": 2, "b": 2}, feasible=[[0, 0], [0, 1]])
    # [1, 0] and [1, 1] sort after every feasible key; [0, 5] and [-1, 0] are out of range
    assert g.is_feasible([[1, 0], [1, 1], [0, 5], [-1, 0], [0, 1]]).tolist() == [
        False, False, False, False, True]
    assert g.to_joint([0, 1]).tolist() == [1]  # one vector, given 1-D
    with pytest.raises(TaskGraphError, match="shape"):
        g.is_feasible(np.zeros((2, 2, 1), dtype=int))
    with pytest.raises(TaskGraphError, match="shape"):
        g.is_feasible(np.zeros((2, 3), dtype=int))


def test_explanation_lists_at_most_three_nearest_vectors() -> None:
    g = TaskGraph({"a": 3, "b": 3}, constraint=lambda y: y[0] != y[1])
    text = g.explain_infeasible([1, 1])
    listed = text.split("nearest feasible vectors: ")[1]
    assert listed.count("[") - 1 == 3  # an outer list of three vectors


def test_explanation_names_the_out_of_range_value() -> None:
    g = TaskGraph({"a": 2, "b": 2}, feasible=[[0, 0], [0, 1]])
    assert g.explain_infeasible([0, 5]) == "task 'b' has the value 5; expected 0..1"
    assert g.explain_infeasible([0, 1]) == "it is feasible"
    assert "constraint rejects it" in g.explain_infeasible([1, 0])


def test_limits_are_inclusive_and_one_vector_is_a_feasible_set() -> None:
    every = [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert TaskGraph({"a": 2, "b": 2}, feasible=every, max_feasible=4).n_feasible == 4
    with pytest.raises(TaskGraphError, match="max_feasible=3"):
        TaskGraph({"a": 2, "b": 2}, feasible=every, max_feasible=3)
    assert TaskGraph({"a": 2, "b": 2}, max_feasible=4).n_feasible == 4
    with pytest.raises(TaskGraphError, match="limit is 3"):
        TaskGraph({"a": 2, "b": 2}, max_feasible=3)
    assert TaskGraph({"a": 2}, feasible=[[1]], max_feasible=1).feasible.tolist() == [[1]]
    g = TaskGraph({"a": 2, "b": 2}, constraint=lambda y: y[0] == y[1], max_candidates=4)
    assert g.feasible.tolist() == [[0, 0], [1, 1]]
    with pytest.raises(TaskGraphError, match="limit is 3"):
        TaskGraph({"a": 2, "b": 2}, constraint=lambda y: True, max_candidates=3)


def test_constrained_hierarchy_survives_to_dict_and_back() -> None:
    h = TaskHierarchy({"type": 2, "person": 3}, parents={"person": ("type", 0)},
                      constraint=lambda y: y[1] != 2)
    back = task_graph_from_dict(h.to_dict())
    assert back.feasible.tolist() == h.feasible.tolist() and back.n_feasible < 4


def test_out_of_range_values_never_alias_a_feasible_key() -> None:
    g = TaskGraph({"a": 2, "b": 2}, feasible=[[0, 1]])
    # [1, -1] has the radix key of [0, 1]; it must still be out of range, not feasible
    assert g.is_feasible([[1, -1], [0, 1]]).tolist() == [False, True]
    with pytest.raises(TaskGraphError, match=r"has shape \(2,\)"):
        TaskGraph({"a": 2, "b": 2}, feasible=[0, 1])


def test_limits_must_be_positive_and_the_default_candidate_limit_is_a_million() -> None:
    for bad in (0, -1, True, 2.0):
        with pytest.raises(TaskGraphError, match="max_feasible"):
            TaskGraph({"a": 2}, max_feasible=bad)
    # 101 x 9901 = 1,000,001 candidates: refused up front, before calling the predicate
    calls = []
    with pytest.raises(TaskGraphError, match="limit is 1000000"):
        TaskGraph({"a": 101, "b": 9901}, constraint=lambda y: calls.append(y) or True)
    assert not calls


def test_marginal_indicator_maps_joint_probabilities_to_task_marginals() -> None:
    g = TaskGraph({"a": 2, "b": 3}, feasible=[[0, 0], [0, 2], [1, 1]])
    np.testing.assert_array_equal(g.marginal_indicator("b"), [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    joint = np.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(joint @ g.marginal_indicator("a"), [[0.8, 0.2]])
    np.testing.assert_allclose(joint @ g.marginal_indicator(1), [[0.5, 0.2, 0.3]])


def test_feasible_of_a_non_numeric_dtype_is_refused() -> None:
    with pytest.raises(TaskGraphError, match="expected integer values"):
        TaskGraph({"a": 2, "b": 2}, feasible=[["0", "1"]])


def test_graph_edges_only_between_constrained_tasks() -> None:
    # every combination of a (3 values) and b (2 values): no edge, whatever the cardinalities
    every = list(itertools.product(range(3), range(2)))
    assert TaskGraph({"a": 3, "b": 2}, feasible=every).graph.number_of_edges() == 0
    g = TaskGraph({"a": 3, "b": 2}, feasible=every[:-1]).graph
    assert list(g.edges(data="missing")) == [("a", "b", 1)]


def test_value_names_must_be_a_list_per_task() -> None:
    for bad in ("xy", b"xy", {"x", "y"}, 7):
        with pytest.raises(TaskGraphError, match=r"value_names\['a'\] is a"):
            TaskGraph({"a": 2}, value_names={"a": bad})
    assert TaskGraph({"a": 2}, value_names={"a": ("no", "yes")}).value_name("a", 1) == "yes"


def test_label_vectors_of_a_non_numeric_dtype_are_refused() -> None:
    g = TaskGraph({"a": 2, "b": 2})
    with pytest.raises(TaskGraphError, match="expected integer labels"):
        g.to_joint(np.array([["0", "1"]]))


def test_max_candidates_must_be_positive() -> None:
    with pytest.raises(TaskGraphError, match="max_candidates=0"):
        TaskGraph({"a": 2}, max_candidates=0)
    assert TaskGraph({"a": 2}, constraint=lambda y: True, max_candidates=2).n_feasible == 2


def test_integral_float_label_vectors_are_accepted() -> None:
    g = TaskGraph({"a": 2, "b": 2}, feasible=[[0, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(g.to_joint(np.array([[0.0, 1.0], [1.0, 1.0]])), [1, 2])
    with pytest.raises(TaskGraphError, match="integer labels"):
        g.to_joint(np.array([[0.5, 1.0]]))

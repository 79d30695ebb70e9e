"""Bad task graphs, hierarchies, dependency graphs, identifiability queries and multi-task
inputs: each a metal error with a message that says what was expected."""

from __future__ import annotations

import time

import networkx as nx
import numpy as np
import pytest
from _cases import Case, assert_case

from metal import MultiTaskLabelModel, TaskGraph, TaskHierarchy, check_identifiability
from metal.data.synthetic_hierarchy import make_hierarchical_synthetic
from metal.errors import ConfigError, LabelMatrixError, TaskGraphError
from metal.tasks.serialize import task_graph_from_dict

G = TaskGraph({"a": 2, "b": 2}, constraint=lambda y: y[0] <= y[1])
H = TaskHierarchy({"type": 2, "person": 3}, parents={"person": ("type", 0)})
HDATA = make_hierarchical_synthetic(400, H, seed=0)


def _nan_gold() -> np.ndarray:
    Y = HDATA.Y.astype(float)
    Y[0, 1] = np.nan
    return Y


def _fitted() -> MultiTaskLabelModel:
    return MultiTaskLabelModel(task_graph=H, seed=0).fit(HDATA.L)


def _constraint_array(y):
    return np.array([1, 0])


CASES = [
    # ---- task graphs
    Case("tasks-card-float", lambda: TaskGraph({"a": 2.5}), TaskGraphError, "expected an int >= 2"),
    Case("tasks-card-zero", lambda: TaskGraph({"a": 0}), TaskGraphError, "at least two values"),
    Case("tasks-card-negative", lambda: TaskGraph({"a": -5}), TaskGraphError, "int >= 2"),
    Case("tasks-card-bool", lambda: TaskGraph({"a": True}), TaskGraphError, "int >= 2"),
    Case("tasks-empty", lambda: TaskGraph({}), TaskGraphError, "at least one task"),
    Case("tasks-list", lambda: TaskGraph(["a"]), TaskGraphError, "expected a dict"),
    Case("tasks-name-int", lambda: TaskGraph({1: 2}), TaskGraphError, "non-empty str"),
    Case("constraint-not-bool", lambda: TaskGraph({"a": 2, "b": 2}, constraint=_constraint_array),
         TaskGraphError, r"returned array.*label vector \(0, 0\)"),
    Case("constraint-rejects-all", lambda: TaskGraph({"a": 2}, constraint=lambda y: False),
         TaskGraphError, "feasible set is empty"),
    Case("constraint-not-callable", lambda: TaskGraph({"a": 2}, constraint=3), TaskGraphError,
         "callable"),
    Case("feasible-out-of-range", lambda: TaskGraph({"a": 2, "b": 2}, feasible=[[0, 2]]),
         TaskGraphError, "expected 0..1"),
    Case("feasible-fraction", lambda: TaskGraph({"a": 2, "b": 2}, feasible=[[0, 1.5]]),
         TaskGraphError, "integer values"),
    Case("feasible-nan", lambda: TaskGraph({"a": 2, "b": 2}, feasible=[[0, np.nan]]),
         TaskGraphError, "integer values"),
    Case("feasible-shape", lambda: TaskGraph({"a": 2, "b": 2}, feasible=[[0, 1, 1]]),
         TaskGraphError, r"expected \(K, 2\)"),
    Case("feasible-empty", lambda: TaskGraph({"a": 2}, feasible=np.zeros((0, 1), int)),
         TaskGraphError, "empty"),
    Case("feasible-and-constraint", lambda: TaskGraph({"a": 2}, feasible=[[0]],
                                                      constraint=lambda y: True),
         TaskGraphError, "not both"),
    Case("max-feasible-zero", lambda: TaskGraph({"a": 2}, max_feasible=0), TaskGraphError,
         "positive int"),
    Case("max-candidates-str", lambda: TaskGraph({"a": 2}, max_candidates="x"), TaskGraphError,
         "max_candidates='x'"),
    Case("too-many-candidates", lambda: TaskGraph({f"t{i}": 10 for i in range(9)},
                                                  constraint=lambda y: True),
         TaskGraphError, "limit"),
    Case("value-names-length", lambda: TaskGraph({"a": 2}, value_names={"a": ["x"]}),
         TaskGraphError, "one name per value"),
    Case("value-names-unknown-task", lambda: TaskGraph({"a": 2}, value_names={"b": ["x", "y"]}),
         TaskGraphError, "unknown task 'b'"),
    Case("value-names-duplicate", lambda: TaskGraph({"a": 2}, value_names={"a": ["x", "x"]}),
         TaskGraphError, "duplicates"),
    Case("value-names-string", lambda: TaskGraph({"a": 2}, value_names={"a": "xy"}),
         TaskGraphError, "list of names"),
    Case("hierarchy-cycle", lambda: TaskHierarchy({"a": 2, "b": 2},
                                                  parents={"a": ("b", 0), "b": ("a", 0)}),
         TaskGraphError, "cycle"),
    Case("hierarchy-unknown-parent", lambda: TaskHierarchy({"a": 2, "b": 2},
                                                           parents={"b": ("c", 0)}),
         TaskGraphError, "unknown parent 'c'"),
    Case("hierarchy-self-parent", lambda: TaskHierarchy({"a": 2, "b": 2},
                                                        parents={"b": ("b", 0)}),
         TaskGraphError, "its own parent"),
    Case("hierarchy-parent-value", lambda: TaskHierarchy({"a": 2, "b": 2},
                                                         parents={"b": ("a", 5)}),
         TaskGraphError, "values 0..1"),
    Case("to-joint-infeasible", lambda: G.to_joint([[1, 0]]), TaskGraphError, "not a feasible"),
    Case("to-joint-nan", lambda: G.to_joint(np.array([[0.0, np.nan]])), TaskGraphError,
         "integer labels"),
    Case("to-joint-shape", lambda: G.to_joint([[1, 0, 1]]), TaskGraphError, r"expected \(n, 2\)"),
    Case("from-joint-range", lambda: G.from_joint([7]), TaskGraphError, "out of range"),
    Case("unknown-task", lambda: G.task_index("zz"), TaskGraphError, "unknown task 'zz'"),
    Case("from-dict-kind", lambda: task_graph_from_dict({"kind": "X"}), TaskGraphError,
         "unknown task graph kind"),
    Case("from-dict-list", lambda: task_graph_from_dict([1]), TaskGraphError, "to_dict"),
    Case("from-dict-missing", lambda: task_graph_from_dict({"kind": "TaskGraph"}), TaskGraphError,
         "malformed"),
    # ---- identifiability
    Case("ci-task-card-negative", lambda: check_identifiability(
        n_sources=3, cardinality=[2, -5], coverage=[[0], [1], [0, 1]]), ConfigError,
        r"cardinality\[1\]=-5"),
    Case("ci-task-card-float", lambda: check_identifiability(
        n_sources=3, cardinality=[2, 2.5], coverage=[[0], [1], [0, 1]]), ConfigError,
        r"cardinality\[1\]=2.5 is a float"),
    Case("ci-card-zero", lambda: check_identifiability(n_sources=3, cardinality=0), ConfigError,
         "int >= 2"),
    Case("ci-n-sources-float", lambda: check_identifiability(n_sources=2.5), ConfigError,
         "n_sources=2.5 is a float"),
    Case("ci-n-sources-str", lambda: check_identifiability(n_sources="3"), ConfigError,
         "n_sources='3' is a str"),
    Case("ci-n-sources-zero", lambda: check_identifiability(n_sources=0), ConfigError, ">= 1"),
    Case("ci-n-sources-none", lambda: check_identifiability(), ConfigError, "pass L"),
    Case("ci-names-duplicate", lambda: check_identifiability(n_sources=3,
                                                             source_names=["a", "a", "b"]),
         ConfigError, "duplicates"),
    Case("ci-names-length", lambda: check_identifiability(n_sources=3, source_names=["a"]),
         ConfigError, "expected 3"),
    Case("ci-dependency-unknown", lambda: check_identifiability(
        n_sources=3, dependencies=nx.Graph([(0, 5)])), ConfigError, "node 5 is not a source"),
    Case("ci-dependencies-list", lambda: check_identifiability(n_sources=3,
                                                               dependencies=[(0, 1)]),
         ConfigError, r"nx.Graph"),
    Case("ci-coverage-range", lambda: check_identifiability(
        n_sources=2, cardinality=[2, 2], coverage=[[0], [3]]), ConfigError, "tasks 0..1"),
    Case("ci-coverage-float", lambda: check_identifiability(
        n_sources=2, cardinality=[2, 2], coverage=[[0], [1.5]]), ConfigError, "is a float"),
    Case("ci-coverage-length", lambda: check_identifiability(
        n_sources=2, cardinality=[2, 2], coverage=[[0]]), ConfigError, "one per source"),
    Case("ci-coverage-missing", lambda: check_identifiability(n_sources=2, cardinality=[2, 2]),
         ConfigError, "needs coverage"),
    Case("ci-task-graph-nodes", lambda: check_identifiability(
        n_sources=2, cardinality=[2, 2], coverage=[[0], [1]], task_graph=nx.Graph([(0, 7)])),
        ConfigError, "not tasks 0..1"),
    Case("ci-task-graph-type", lambda: check_identifiability(
        n_sources=2, cardinality=[2, 2], coverage=[[0], [1]], task_graph="x"), ConfigError,
        "networkx graph"),
    Case("ci-L-label", lambda: check_identifiability(L=np.array([[0, 3], [1, 1]])),
         LabelMatrixError, "Raise cardinality"),
    Case("ci-L-multitask", lambda: check_identifiability(L=np.zeros((3, 2), int),
                                                         cardinality=[2, 2]),
         ConfigError, "single-task form only"),
    # ---- multi-task label model
    Case("mt-task-graph-dict", lambda: MultiTaskLabelModel(task_graph={"a": 2}).fit(
        np.zeros((3, 2, 1), int)), ConfigError, "TaskHierarchy"),
    Case("mt-score-nan-gold", lambda: _fitted().score(HDATA.L, _nan_gold()), LabelMatrixError,
         "NaN"),
    Case("mt-score-shape", lambda: _fitted().score(HDATA.L, HDATA.Y[:, :1]), LabelMatrixError,
         r"expected \(400, 2\)"),
    Case("mt-l2-nan", lambda: MultiTaskLabelModel(task_graph=H, l2=float("nan")).fit(HDATA.L),
         ConfigError, "not finite"),
    Case("mt-seed-negative", lambda: MultiTaskLabelModel(task_graph=H, seed=-1).fit(HDATA.L),
         ConfigError, "seed=-1"),
    Case("mt-L-unknown-task", lambda: MultiTaskLabelModel(task_graph=H).fit(
        {"zz": np.zeros((3, 2), int)}), LabelMatrixError, "unknown tasks"),
    Case("mt-L-label", lambda: MultiTaskLabelModel(task_graph=H).fit(np.full((5, 3, 2), 7)),
         LabelMatrixError, "value 7"),
    Case("mt-class-balance-size", lambda: MultiTaskLabelModel(task_graph=H).fit(
        HDATA.L, class_balance=[1.0]), ConfigError, "one per feasible"),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case) -> None:
    assert_case(case)


def test_constraint_exception_names_the_label_vector() -> None:
    def boom(y):
        raise KeyError("lookup")

    with pytest.raises(KeyError) as info:
        TaskGraph({"a": 2, "b": 2}, constraint=boom)
    assert "label vector (0, 0)" in "".join(getattr(info.value, "__notes__", []))


def test_identifiability_is_linear_in_sources() -> None:
    """50,000 independent sources: a structure-only check, done in seconds (was 111 s)."""
    start = time.perf_counter()
    report = check_identifiability(n_sources=50_000)
    assert report.identifiable
    assert time.perf_counter() - start < 20


def test_constant_sources_do_not_crash_the_data_check() -> None:
    report = check_identifiability(L=np.zeros((100, 3), dtype=int))
    assert report.data_identifiable is False
    assert any("same vote" in w for w in report.data_warnings)

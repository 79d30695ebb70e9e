"""Task graphs from dicts and JSON (metal/tasks/serialize.py)."""

from __future__ import annotations

import pytest

from metal.errors import TaskGraphError
from metal.tasks import TaskGraph, TaskHierarchy
from metal.tasks.serialize import task_graph_from_dict, task_graph_from_json


def test_task_graph_from_json_reads_every_documented_form(tmp_path) -> None:
    plain = task_graph_from_json('{"tasks": {"a": 2, "b": 3}}')  # unrelated tasks
    assert type(plain) is TaskGraph and plain.n_feasible == 6
    listed = task_graph_from_json('{"tasks": {"a": 2, "b": 2}, "feasible": [[0, 0], [1, 1]]}')
    assert type(listed) is TaskGraph and listed.feasible.tolist() == [[0, 0], [1, 1]]
    tree = task_graph_from_json('{"tasks": {"coarse": 2, "fine": 4}, '
                                '"parents": {"fine": ["coarse", [0, 0, 1, 1]]}}')
    assert isinstance(tree, TaskHierarchy) and tree.n_feasible == 4
    h = TaskHierarchy({"type": 2, "person": 3}, parents={"person": ("type", 0)})
    path = tmp_path / "h.json"
    path.write_text(h.to_json())
    assert task_graph_from_json(path) == h  # a file, in to_dict's form (with "kind")
    for text, match in [(str(tmp_path / "none.json"), "does not exist"),
                        ("{not json", "not valid JSON"), ('{"parents": {}}', '"tasks"'),
                        ("[1]", "does not exist")]:
        with pytest.raises(TaskGraphError, match=match):
            task_graph_from_json(text)


def test_from_dict_round_trips_both_kinds_and_refuses_bad_descriptions() -> None:
    g = TaskGraph({"a": 2, "b": 3}, feasible=[[0, 0], [1, 2]], value_names={"a": ["x", "y"]})
    h = TaskHierarchy({"type": 2, "person": 3}, parents={"person": ("type", 0)})
    assert task_graph_from_dict(g.to_dict()) == g
    back = task_graph_from_dict(h.to_dict())
    assert isinstance(back, TaskHierarchy) and back == h
    with pytest.raises(TaskGraphError, match="unknown task graph kind"):
        task_graph_from_dict({"kind": "Tree", "tasks": {"a": 2}})
    with pytest.raises(TaskGraphError, match="malformed"):
        task_graph_from_dict({"kind": "TaskGraph", "tasks": {"a": 2}})  # no "feasible"
    with pytest.raises(TaskGraphError, match="is a list"):
        task_graph_from_dict([1, 2])  # type: ignore[arg-type]

"""Task graphs to and from JSON-friendly dicts and files.

Kept apart from :mod:`metal.tasks.graph` because rebuilding needs both :class:`TaskGraph` and
its subclass :class:`TaskHierarchy` (which imports the graph module).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metal.errors import TaskGraphError
from metal.tasks.graph import DEFAULT_MAX_FEASIBLE, TaskGraph
from metal.tasks.hierarchy import TaskHierarchy


def task_graph_from_dict(spec: Mapping[str, Any]) -> TaskGraph:
    """Rebuild a :class:`TaskGraph` or :class:`TaskHierarchy` from :meth:`TaskGraph.to_dict`."""
    if not isinstance(spec, Mapping):
        raise TaskGraphError(f"a task graph description is a {type(spec).__name__}; expected "
                             "the dict written by TaskGraph.to_dict()")
    try:
        return _from_dict(spec)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TaskGraphError):
            raise
        raise TaskGraphError(f"the task graph description is malformed ({type(exc).__name__}: "
                             f"{exc}); expected the dict written by TaskGraph.to_dict()") from exc


def _from_dict(spec: Mapping[str, Any]) -> TaskGraph:
    kind = spec.get("kind")
    if kind == "TaskHierarchy":
        parents = {c: (p, m if isinstance(m, int) else list(m))
                   for c, (p, m) in spec["parents"].items()}
        kept = spec.get("feasible")  # present only when a constraint filtered the hierarchy
        allowed = None if kept is None else {tuple(int(v) for v in row) for row in kept}
        return TaskHierarchy(
            spec["tasks"], parents, value_names=spec.get("value_names"),
            constraint=None if allowed is None else (lambda y: tuple(y) in allowed),
            max_feasible=int(spec.get("max_feasible", DEFAULT_MAX_FEASIBLE)))
    if kind == "TaskGraph":
        return TaskGraph(spec["tasks"], feasible=spec["feasible"],
                         value_names=spec.get("value_names"),
                         max_feasible=max(DEFAULT_MAX_FEASIBLE, len(spec["feasible"])))
    raise TaskGraphError(f"unknown task graph kind {kind!r}; expected 'TaskGraph' or "
                         "'TaskHierarchy'")


def task_graph_from_json(source: str | os.PathLike[str]) -> TaskGraph:
    """A task graph from a JSON file path (or JSON text starting with ``{``).

    The JSON is :meth:`TaskGraph.to_dict`'s form, or the short hand-written forms
    ``{"tasks": {"coarse": 6, "fine": 50}, "parents": {"fine": ["coarse", [0, 0, 1, ...]]}}``
    (a :class:`~metal.tasks.TaskHierarchy`) and ``{"tasks": {...}, "feasible": [[...], ...]}``
    (a :class:`TaskGraph`); with neither ``parents`` nor ``feasible`` the tasks are unrelated.

    Raises
    ------
    TaskGraphError
        The file does not exist, is not valid JSON, or does not describe a task graph.
    """
    text = str(source)
    if not text.lstrip().startswith("{"):
        path = Path(source)
        if not path.is_file():
            raise TaskGraphError(f"task graph file {str(path)!r} does not exist; expected a JSON "
                                 'file like {"tasks": {"coarse": 2, "fine": 4}, "parents": '
                                 '{"fine": ["coarse", [0, 0, 1, 1]]}}')
        text = path.read_text()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskGraphError(f"the task graph is not valid JSON ({exc}); expected e.g. "
                             '{"tasks": {"coarse": 2, "fine": 4}, "parents": {"fine": '
                             '["coarse", [0, 0, 1, 1]]}}') from None
    if not isinstance(spec, dict) or "tasks" not in spec:
        raise TaskGraphError('the task graph JSON needs a "tasks" object {name: cardinality}, '
                             'and optionally "parents" or "feasible"')
    if "kind" not in spec:
        spec = {**spec, "kind": "TaskHierarchy" if "parents" in spec else "TaskGraph"}
        if spec["kind"] == "TaskGraph" and "feasible" not in spec:
            return TaskGraph(spec["tasks"], value_names=spec.get("value_names"))
    return task_graph_from_dict(spec)

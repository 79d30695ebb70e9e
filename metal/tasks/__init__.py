"""Task graphs: tasks, their cardinalities, and the feasible set of label vectors.

:class:`TaskGraph` takes an arbitrary constraint (a predicate or an explicit list of feasible
vectors); :class:`TaskHierarchy` builds trees of any depth where a child refines its parent.
"""

from metal.tasks.graph import TaskGraph
from metal.tasks.hierarchy import TaskHierarchy
from metal.tasks.serialize import task_graph_from_dict, task_graph_from_json

__all__ = ["TaskGraph", "TaskHierarchy", "task_graph_from_dict", "task_graph_from_json"]

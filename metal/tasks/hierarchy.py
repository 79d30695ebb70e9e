"""Task hierarchies: trees (or forests) of tasks where a child refines its parent.

Each child names its parent and how the parent's values map to its own, in one of two styles:

``(parent, v)`` with an int ``v``  (the MeTaL paper's Figure 2)
    The child is *active* only when the parent takes the value ``v``. The child's last value
    (``cardinality - 1``) is *N/A*: it is forced whenever the parent takes another value, and
    impossible when the parent takes ``v``. A child of such a child is N/A whenever its parent
    is N/A, so N/A propagates down a tree of any depth.
``(parent, mapping)`` with a sequence of length ``cardinality(child)``
    A fine-grained partition: child value ``c`` belongs to parent value ``mapping[c]`` (no N/A
    value is added). Every parent value needs at least one child value.

The feasible set is built top-down, one task at a time, by expanding the partial vectors with
the child values each parent value allows; it never enumerates the full product space.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from metal._validate import apply_predicate
from metal.errors import TaskGraphError
from metal.tasks.graph import DEFAULT_MAX_FEASIBLE, TaskGraph, _check_tasks

ParentSpec = tuple[str, "int | Sequence[int]"]


class TaskHierarchy(TaskGraph):
    """A tree or forest of tasks; a child's label is constrained by its parent's.

    Parameters
    ----------
    tasks
        ``{task_name: cardinality}``; insertion order is the task order ``0..t-1``. For a child
        in the ``(parent, int)`` style the cardinality counts the trailing N/A value.
    parents
        ``{child_name: (parent_name, v)}`` (child active only when the parent is ``v``; its
        last value is N/A) or ``{child_name: (parent_name, mapping)}`` (``mapping[c]`` = the
        parent value of child value ``c``). Tasks not listed are roots.
    value_names
        Optional ``{task_name: [names of its values]}``; N/A values are named ``"N/A"`` by
        default.
    constraint
        Optional extra predicate ``constraint(vector) -> bool`` that further filters the
        hierarchy's feasible vectors.
    max_feasible
        Largest allowed feasible set (checked while expanding, before memory is spent).

    Attributes
    ----------
    parents : dict
        ``{child: (parent, v or tuple mapping)}`` as given (validated).
    allowed : dict
        ``{child: (k_parent, k_child) bool matrix}``: which child values each parent value
        allows.
    na_value : dict
        ``{task: index of its N/A value}`` for ``(parent, int)``-style children.
    graph : networkx.DiGraph
        Edges parent -> child, with the attribute ``mapping``.

    Raises
    ------
    TaskGraphError
        Unknown task or parent names, a cycle, a value out of range, a parent value without any
        child value, or a feasible set larger than ``max_feasible``.

    Examples
    --------
    The hierarchy of the MeTaL paper's Figure 2 (Person/Org; Doctor/Lawyer/N/A;
    Hospital/Office/N/A):

    >>> from metal.tasks import TaskHierarchy
    >>> h = TaskHierarchy({"type": 2, "person": 3, "org": 3},
    ...                   parents={"person": ("type", 0), "org": ("type", 1)})
    >>> h.feasible.tolist()
    [[0, 0, 2], [0, 1, 2], [1, 2, 0], [1, 2, 1]]
    """

    def __init__(
        self,
        tasks: Mapping[str, int],
        parents: Mapping[str, ParentSpec] | None = None,
        *,
        value_names: Mapping[str, Sequence[str]] | None = None,
        constraint: Callable[[tuple[int, ...]], bool] | None = None,
        max_feasible: int = DEFAULT_MAX_FEASIBLE,
    ) -> None:
        names, cards = _check_tasks(tasks)
        parents = {} if parents is None else parents
        if not isinstance(parents, Mapping):
            raise TaskGraphError(
                f"parents is a {type(parents).__name__}; expected a dict "
                "{child: (parent, value)} or {child: (parent, [parent value of each child value])}"
            )
        index = {n: i for i, n in enumerate(names)}
        card = dict(zip(names, cards, strict=True))
        self.parents: dict[str, tuple[str, int | tuple[int, ...]]] = {}
        self.allowed: dict[str, np.ndarray] = {}
        self.na_value: dict[str, int] = {}
        for child, spec in parents.items():
            self._add_parent(child, spec, index, card)
        dag = nx.DiGraph()
        for s, n in enumerate(names):
            dag.add_node(n, index=s, cardinality=card[n])
        for child, (parent, mapping) in self.parents.items():
            dag.add_edge(parent, child, mapping=mapping)
        try:
            cycle = nx.find_cycle(dag)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " -> ".join([str(u) for u, _ in cycle] + [str(cycle[0][0])])
            raise TaskGraphError(f"the task hierarchy has a cycle: {path}. A hierarchy must be "
                                 "a tree or forest: remove one of these parent links")
        # a child of an N/A-style child must hang off a real value, not off N/A
        for child, (parent, mapping) in self.parents.items():
            if isinstance(mapping, int) and parent in self.na_value \
                    and mapping == self.na_value[parent]:
                raise TaskGraphError(
                    f"task {child!r} is attached to value {mapping} of {parent!r}, which is "
                    f"{parent!r}'s N/A value; attach it to a real value 0..{card[parent] - 2}"
                )
        defaults = {c: [str(v) for v in range(card[c] - 1)] + ["N/A"] for c in self.na_value}
        self._init_common(names, cards, value_names, defaults, max_feasible)
        self.constraint = constraint
        self._dag = dag
        F = self._enumerate_top_down()
        if constraint is not None:
            if not callable(constraint):
                raise TaskGraphError(f"constraint is a {type(constraint).__name__}; expected a "
                                     "callable vector -> bool")
            keep = apply_predicate(constraint, F, self.task_names, TaskGraphError)
            F = F[keep]
        self._set_feasible(F)
        self._graph = dag

    def _add_parent(self, child: Any, spec: Any, index: dict[str, int],
                    card: dict[str, int]) -> None:
        if child not in index:
            raise TaskGraphError(f"parents names the unknown task {child!r}; known tasks: "
                                 f"{list(index)}. Add it to tasks or fix the name")
        if not isinstance(spec, (tuple, list)) or len(spec) != 2:
            raise TaskGraphError(
                f"parents[{child!r}] is {spec!r}; expected (parent_name, value) or "
                "(parent_name, [parent value of each child value])"
            )
        parent, mapping = spec
        if parent not in index:
            raise TaskGraphError(f"task {child!r} names the unknown parent {parent!r}; known "
                                 f"tasks: {list(index)}")
        if parent == child:
            raise TaskGraphError(f"task {child!r} is its own parent; a hierarchy has no "
                                 "self-loops")
        kp, kc = card[parent], card[child]
        allowed = np.zeros((kp, kc), dtype=bool)
        if isinstance(mapping, (int, np.integer)) and not isinstance(mapping, bool):
            v = int(mapping)
            if not 0 <= v < kp:
                raise TaskGraphError(f"task {child!r} is attached to value {v} of {parent!r}, "
                                     f"which has values 0..{kp - 1}")
            allowed[v, : kc - 1] = True  # active: any real value
            allowed[np.arange(kp) != v, kc - 1] = True  # inactive: N/A only
            self.na_value[child] = kc - 1
            self.parents[child] = (parent, v)
        else:
            try:
                m = np.asarray(mapping)
            except Exception as exc:  # pragma: no cover - exotic objects
                raise TaskGraphError(f"parents[{child!r}] mapping is not a sequence") from exc
            if m.ndim != 1 or m.shape[0] != kc or m.dtype.kind not in "iu":
                raise TaskGraphError(
                    f"parents[{child!r}] mapping has shape {m.shape} and dtype {m.dtype}; "
                    f"expected {kc} ints, the value of {parent!r} each value of {child!r} "
                    "belongs to (or an int parent value for the N/A style)"
                )
            bad = np.flatnonzero((m < 0) | (m >= kp))
            if bad.size:
                c = int(bad[0])
                raise TaskGraphError(f"value {c} of task {child!r} maps to value {int(m[c])} of "
                                     f"{parent!r}, which has values 0..{kp - 1}")
            allowed[m, np.arange(kc)] = True
            empty = np.flatnonzero(~allowed.any(axis=1))
            if empty.size:
                raise TaskGraphError(
                    f"value {int(empty[0])} of {parent!r} has no value of its child {child!r} "
                    f"mapped to it; every parent value needs at least one child value (map a "
                    f"child value to it, e.g. an 'other' or N/A value)"
                )
            self.parents[child] = (parent, tuple(int(x) for x in m))
        self.allowed[child] = allowed

    def _enumerate_top_down(self) -> np.ndarray:
        t = self.n_tasks
        order = list(nx.lexicographical_topological_sort(self._dag, key=self._index.__getitem__))
        F = np.zeros((1, t), dtype=np.int64)
        for task in order:
            s = self._index[task]
            k = self.cardinalities[s]
            if task not in self.parents:
                rows = np.repeat(np.arange(F.shape[0]), k)
                values = np.tile(np.arange(k), F.shape[0])
            else:
                # each partial vector expands into the child values its parent value allows
                parent = self.parents[task][0]
                allowed = self.allowed[task]
                counts = allowed.sum(axis=1)
                pv = F[:, self._index[parent]]
                per_row = counts[pv]
                rows = np.repeat(np.arange(F.shape[0]), per_row)
                # child values allowed by each parent value, listed parent value by parent value
                pv_of, cv_of = np.nonzero(allowed)
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
                row_starts = np.concatenate([[0], np.cumsum(per_row)[:-1]])
                within = np.arange(rows.size) - np.repeat(row_starts, per_row)
                values = cv_of[starts[pv[rows]] + within]
            if rows.size > self.max_feasible:
                raise TaskGraphError(
                    f"the hierarchy has more than {self.max_feasible} feasible vectors "
                    f"({rows.size} after adding task {task!r}); the limit is "
                    f"max_feasible={self.max_feasible}. Split the problem or raise max_feasible"
                )
            F = F[rows]
            F[:, s] = values
        return F

    # ------------------------------------------------------------------ structure
    @property
    def graph(self) -> nx.DiGraph:  # type: ignore[override]
        """``networkx.DiGraph`` with edges parent -> child (attribute ``mapping``)."""
        return self._dag

    @property
    def roots(self) -> list[str]:
        """Tasks without a parent, in task order."""
        return [n for n in self.task_names if n not in self.parents]

    def children(self, task: str) -> list[str]:
        """Direct children of a task, in task order."""
        self.task_index(task)
        return sorted(self._dag.successors(task), key=self._index.__getitem__)

    def topological_order(self) -> list[str]:
        """Tasks ordered parents-first (ties in task order)."""
        return list(nx.lexicographical_topological_sort(self._dag, key=self._index.__getitem__))

    def depth(self) -> int:
        """Number of levels (1 for unrelated tasks)."""
        return 1 + int(nx.dag_longest_path_length(self._dag))

    def _explain_constraint(self, y: np.ndarray) -> str:
        for task in self.topological_order():
            if task not in self.parents:
                continue
            s = self._index[task]
            parent, mapping = self.parents[task]
            p = self._index[parent]
            if not self.allowed[task][y[p], y[s]]:
                ok = np.flatnonzero(self.allowed[task][y[p]])
                ok_txt = ", ".join(f"{int(c)} ({self.value_name(s, int(c))})" for c in ok)
                if isinstance(mapping, int):
                    why = (f"{task!r} is active only when {parent!r} = {mapping} "
                           f"({self.value_name(p, mapping)})")
                else:
                    why = f"{task!r} refines {parent!r}"
                return (f"task {task!r} = {int(y[s])} ({self.value_name(s, int(y[s]))}) is not "
                        f"allowed when its parent {parent!r} = {int(y[p])} "
                        f"({self.value_name(p, int(y[p]))}); {why}, so {task!r} must be one of: "
                        f"{ok_txt}")
        return super()._explain_constraint(y)

    def _describe_tasks(self) -> list[str]:
        lines = []

        def walk(task: str, depth: int, via: str) -> None:
            s = self._index[task]
            vals = ", ".join(self.value_names[task])
            lines.append(f"{'  ' * (depth + 1)}{s}: {task} ({self.cardinalities[s]}): {vals}"
                         + via)
            for child in self.children(task):
                mapping = self.parents[child][1]
                if isinstance(mapping, int):
                    how = f"  [active when {task} = {self.value_name(s, mapping)}]"
                else:
                    how = f"  [refines {task}]"
                walk(child, depth + 1, how)

        for root in self.roots:
            walk(root, 0, "")
        if self.constraint is not None:
            lines.append(f"extra constraint: {getattr(self.constraint, '__name__', 'callable')}")
        return lines

    def _layout(self) -> dict[str, tuple[float, float]]:
        # leaves get consecutive x positions; a parent sits above the middle of its children
        pos: dict[str, tuple[float, float]] = {}
        next_x = [0.0]

        def place(task: str, depth: int) -> float:
            kids = self.children(task)
            if not kids:
                x = next_x[0]
                next_x[0] += 1.0
            else:
                xs = [place(c, depth + 1) for c in kids]
                x = (min(xs) + max(xs)) / 2.0
            pos[task] = (x, -float(depth))
            return x

        for root in self.roots:
            place(root, 0)
        return pos

    def _edge_labels(self) -> dict[tuple[str, str], str]:
        labels = {}
        for child, (parent, mapping) in self.parents.items():
            if isinstance(mapping, int):
                labels[(parent, child)] = f"= {self.value_name(parent, mapping)}"
            else:
                labels[(parent, child)] = "refines"
        return labels

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "TaskHierarchy",
            "tasks": dict(zip(self.task_names, self.cardinalities, strict=True)),
            "parents": {c: [p, m if isinstance(m, int) else list(m)]
                        for c, (p, m) in self.parents.items()},
            "value_names": self.value_names,
            "max_feasible": self.max_feasible,
        }
        if self.constraint is not None:
            out["feasible"] = self.feasible.tolist()
        return out

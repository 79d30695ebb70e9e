"""Task graphs: which combinations of task labels are possible (the feasible set).

A *task* has a name and a cardinality ``k`` (values ``0..k-1``). A *label vector* gives one
value per task. A :class:`TaskGraph` holds the tasks and the *feasible set* of label vectors,
defined by a logical constraint (a predicate over label vectors, or an explicit list). Label
models reason over the feasible set: their latent variable is the index of a feasible vector
(the *joint index*), and per-task labels are read off it.

Feasible vectors are kept sorted lexicographically (task 0 most significant), so joint index
``j`` always means the same vector for the same task graph.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from metal._validate import apply_predicate, check_int, check_unique
from metal.errors import TaskGraphError

DEFAULT_MAX_FEASIBLE = 10_000
DEFAULT_MAX_CANDIDATES = 1_000_000
_INT64_SAFE = 2**62


def _check_tasks(tasks: Any) -> tuple[list[str], list[int]]:
    if not isinstance(tasks, Mapping):
        raise TaskGraphError(
            f"tasks is a {type(tasks).__name__}; expected a dict {{task_name: cardinality}}, "
            "e.g. {'type': 2, 'person': 3}"
        )
    if len(tasks) == 0:
        raise TaskGraphError("tasks is empty; expected at least one task, e.g. {'type': 2}")
    names, cards = [], []
    for name, k in tasks.items():
        if not isinstance(name, str) or not name:
            raise TaskGraphError(f"task name {name!r} is not a non-empty str; name every task "
                                 "with a string (names are used in errors, plots and files)")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TaskGraphError(f"task {name!r} has cardinality {k!r}; expected an int >= 2 "
                                 "(the number of values the task takes)")
        if k < 2:
            raise TaskGraphError(
                f"task {name!r} has cardinality {int(k)}; expected an int >= 2. A task needs at "
                "least two values (a hierarchy child needs one real value plus N/A)"
            )
        names.append(name)
        cards.append(int(k))
    return names, cards


def _check_value_names(value_names: Any, names: list[str], cards: list[int],
                       defaults: dict[str, list[str]]) -> dict[str, list[str]]:
    out = {n: list(defaults.get(n, [str(v) for v in range(k)]))
           for n, k in zip(names, cards, strict=True)}
    if value_names is None:
        return out
    if not isinstance(value_names, Mapping):
        raise TaskGraphError("value_names must be a dict {task_name: [name of value 0, ...]}")
    for task, vals in value_names.items():
        if task not in out:
            raise TaskGraphError(f"value_names names the unknown task {task!r}; known tasks: "
                                 f"{names}")
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
            raise TaskGraphError(f"value_names[{task!r}] is a {type(vals).__name__}; expected a "
                                 "list of names, one per value")
        vals = check_unique(f"value_names[{task!r}]", [str(v) for v in vals], TaskGraphError,
                            "name every value of the task differently")
        k = cards[names.index(task)]
        if len(vals) != k:
            raise TaskGraphError(f"value_names[{task!r}] has {len(vals)} names; task {task!r} "
                                 f"has cardinality {k}. Give one name per value")
        out[task] = vals
    return out


class TaskGraph:
    """Tasks with cardinalities and a logical constraint defining the feasible label vectors.

    Parameters
    ----------
    tasks
        ``{task_name: cardinality}``; insertion order is the task order ``0..t-1``.
    constraint
        Optional predicate ``constraint(vector) -> bool`` over a label vector (a tuple of ``t``
        ints); the feasible set is every vector of the product space it accepts. It is called
        once per candidate vector, so the product space may hold at most ``max_candidates``
        vectors (use ``feasible=`` or :class:`TaskHierarchy` for larger spaces).
    feasible
        Optional explicit list of feasible label vectors (``(K, t)`` ints). Mutually
        exclusive with ``constraint``. With neither, every combination is feasible (the tasks
        are unrelated).
    value_names
        Optional ``{task_name: [names of its values]}`` for descriptions, plots and errors.
    max_feasible
        Largest allowed feasible set; label models cost ``O(K)`` per row.
    max_candidates
        Largest product space enumerated to evaluate ``constraint``.

    Attributes
    ----------
    task_names : list of str
    cardinalities : list of int
    feasible : ndarray of shape (K, t), int64, sorted lexicographically (read-only)

    Raises
    ------
    TaskGraphError
        Empty or malformed tasks, both ``constraint`` and ``feasible``, a value out of range in
        ``feasible``, an empty or too large feasible set.

    Examples
    --------
    >>> from metal.tasks import TaskGraph
    >>> g = TaskGraph({"a": 2, "b": 2}, constraint=lambda y: y[0] <= y[1])
    >>> g.feasible.tolist()
    [[0, 0], [0, 1], [1, 1]]
    >>> g.to_joint([[0, 1], [1, 1]]).tolist()
    [1, 2]
    """

    def __init__(
        self,
        tasks: Mapping[str, int],
        *,
        constraint: Callable[[tuple[int, ...]], bool] | None = None,
        feasible: Any = None,
        value_names: Mapping[str, Sequence[str]] | None = None,
        max_feasible: int = DEFAULT_MAX_FEASIBLE,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
    ) -> None:
        names, cards = _check_tasks(tasks)
        self._init_common(names, cards, value_names, {}, max_feasible)
        check_int("max_candidates", max_candidates, low=1, error=TaskGraphError)
        if constraint is not None and feasible is not None:
            raise TaskGraphError("pass constraint= or feasible=, not both; fold one into the "
                                 "other (e.g. filter your explicit list with the predicate)")
        self.constraint = constraint
        if feasible is not None:
            F = self._check_explicit(feasible)
        else:
            F = self._enumerate_product(constraint, max_candidates)
        self._set_feasible(F)

    # ------------------------------------------------------------------ construction helpers
    def _init_common(self, names: list[str], cards: list[int], value_names: Any,
                     default_names: dict[str, list[str]], max_feasible: int) -> None:
        if isinstance(max_feasible, bool) or not isinstance(max_feasible, (int, np.integer)) \
                or max_feasible < 1:
            raise TaskGraphError(f"max_feasible={max_feasible!r}; expected a positive int")
        self.task_names: list[str] = names
        self.cardinalities: list[int] = cards
        self._card = np.asarray(cards, dtype=np.int64)
        self._index = {n: i for i, n in enumerate(names)}
        self.max_feasible = int(max_feasible)
        self.value_names: dict[str, list[str]] = _check_value_names(value_names, names, cards,
                                                                    default_names)

    def _check_explicit(self, feasible: Any) -> np.ndarray:
        F = np.asarray(feasible)
        t = self.n_tasks
        if F.ndim == 1 and t == 1:
            F = F.reshape(-1, 1)
        if F.ndim != 2 or F.shape[1] != t:
            raise TaskGraphError(f"feasible has shape {F.shape}; expected (K, {t}): one row per "
                                 f"feasible label vector over the tasks {self.task_names}")
        if F.shape[0] == 0:
            raise TaskGraphError("feasible is empty; expected at least one feasible vector")
        if F.dtype.kind not in "iu":
            if F.dtype.kind != "f" or not np.all(np.mod(F, 1) == 0):
                raise TaskGraphError(f"feasible has dtype {F.dtype}; expected integer values")
        F = F.astype(np.int64)
        for s in range(t):
            bad = (F[:, s] < 0) | (F[:, s] >= self._card[s])
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                raise TaskGraphError(
                    f"feasible row {r} gives task {self.task_names[s]!r} the value "
                    f"{int(F[r, s])}; expected 0..{self._card[s] - 1}"
                )
        return np.unique(F, axis=0)

    def _enumerate_product(self, constraint: Callable[..., Any] | None,
                           max_candidates: int) -> np.ndarray:
        total = int(np.prod([int(k) for k in self.cardinalities], dtype=object))
        limit = max_candidates if constraint is not None else self.max_feasible
        if total > limit:
            what = "candidate vectors to test with constraint" if constraint is not None \
                else "feasible vectors (no constraint: every combination)"
            raise TaskGraphError(
                f"the tasks {self.tasks} span {total} "
                f"{what}; the limit is {limit}. Give the feasible set explicitly "
                "(feasible=...), use a TaskHierarchy (enumerated top-down), or raise the limit"
            )
        grids = np.meshgrid(*[np.arange(k) for k in self.cardinalities], indexing="ij")
        F = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)
        if constraint is None:
            return F
        if not callable(constraint):
            raise TaskGraphError(f"constraint is a {type(constraint).__name__}; expected a "
                                 "callable vector -> bool")
        # one call per candidate: the product space is bounded by max_candidates above
        keep = apply_predicate(constraint, F, self.task_names, TaskGraphError)
        return F[keep]

    def _set_feasible(self, F: np.ndarray) -> None:
        if F.shape[0] == 0:
            raise TaskGraphError("the constraint accepts no label vector: the feasible set is "
                                 "empty. Check the predicate (it is called with a tuple of "
                                 f"{self.n_tasks} ints, one per task in {self.task_names})")
        if F.shape[0] > self.max_feasible:
            raise TaskGraphError(f"the feasible set has {F.shape[0]} vectors; the limit is "
                                 f"max_feasible={self.max_feasible}. Split the problem or raise "
                                 "max_feasible (label models cost O(K) per row)")
        F = F[np.lexsort(F.T[::-1])]
        F.setflags(write=False)
        self.feasible: np.ndarray = F
        self._fits_int64 = int(np.prod([int(k) for k in self.cardinalities], dtype=object)) \
            < _INT64_SAFE
        if self._fits_int64:
            self._radix = np.concatenate(
                [np.cumprod(self._card[::-1])[::-1][1:], [1]]).astype(np.int64)
            self._keys = F @ self._radix  # increasing, because F is sorted lexicographically
        self._graph: nx.Graph | None = None

    # ------------------------------------------------------------------ basic properties
    @property
    def tasks(self) -> dict[str, int]:
        """``{task_name: cardinality}`` in task order."""
        return dict(zip(self.task_names, self.cardinalities, strict=True))

    @property
    def n_tasks(self) -> int:
        """Number of tasks ``t``."""
        return len(self.task_names)

    @property
    def n_feasible(self) -> int:
        """Number of feasible label vectors ``K``."""
        return int(self.feasible.shape[0])

    def task_index(self, task: str | int) -> int:
        """Position of a task given its name (or its position)."""
        if isinstance(task, (int, np.integer)) and not isinstance(task, bool):
            if 0 <= int(task) < self.n_tasks:
                return int(task)
        elif task in self._index:
            return self._index[task]  # type: ignore[index]
        raise TaskGraphError(f"unknown task {task!r}; the tasks are {self.task_names}")

    def value_name(self, task: str | int, value: int) -> str:
        """Display name of a task's value."""
        s = self.task_index(task)
        return self.value_names[self.task_names[s]][int(value)]

    def marginal_indicator(self, task: str | int) -> np.ndarray:
        """``(K, k_s)`` 0/1 matrix: feasible vector ``j`` has value ``v`` on the task.

        Multiplying a joint distribution ``(n, K)`` by it gives the task's marginal.
        """
        s = self.task_index(task)
        M = np.zeros((self.n_feasible, self.cardinalities[s]))
        M[np.arange(self.n_feasible), self.feasible[:, s]] = 1.0
        return M

    # ------------------------------------------------------------------ conversions
    def _as_vectors(self, Y: Any, name: str) -> np.ndarray:
        Y = np.asarray(Y)
        if Y.ndim == 1 and Y.shape[0] == self.n_tasks:
            Y = Y.reshape(1, -1)
        if Y.ndim != 2 or Y.shape[1] != self.n_tasks:
            raise TaskGraphError(f"{name} has shape {Y.shape}; expected (n, {self.n_tasks}): one "
                                 f"label per task {self.task_names} in each row")
        if Y.dtype.kind not in "iu":
            if Y.dtype.kind != "f" or not np.all(np.mod(Y, 1) == 0):
                raise TaskGraphError(f"{name} has dtype {Y.dtype}; expected integer labels")
        return Y.astype(np.int64, copy=False)

    def _in_range(self, Y: np.ndarray) -> np.ndarray:
        return np.all((Y >= 0) & (Y < self._card[None, :]), axis=1)

    def _lookup(self, Y: np.ndarray) -> np.ndarray:
        """Joint index of each row of ``Y`` (in range), or -1 where it is not feasible."""
        out = np.full(Y.shape[0], -1, dtype=np.int64)
        ok = self._in_range(Y)
        if not ok.any():
            return out
        Yok = Y[ok]
        if self._fits_int64:
            keys = Yok @ self._radix
            pos = np.clip(np.searchsorted(self._keys, keys), 0, self.n_feasible - 1)
            found = self._keys[pos] == keys
        else:  # too many combinations for int64 keys: match rows by sorting
            both = np.concatenate([self.feasible, Yok])
            _, inv = np.unique(both, axis=0, return_inverse=True)
            inv = inv.ravel()
            first = np.full(inv.max() + 1, -1, dtype=np.int64)
            first[inv[: self.n_feasible]] = np.arange(self.n_feasible)
            pos = first[inv[self.n_feasible:]]
            found = pos >= 0
        out[np.flatnonzero(ok)[found]] = pos[found]
        return out

    def joint_index(self, Y: Any, name: str = "Y") -> np.ndarray:
        """``(n,)`` joint index of each label vector, ``-1`` where it is not feasible (or has a
        value out of range, e.g. ``-1`` = unknown). :meth:`to_joint` raises instead."""
        return self._lookup(self._as_vectors(Y, name))

    def is_feasible(self, Y: Any) -> np.ndarray:
        """``(n,)`` bool: whether each row of ``Y`` (``(n, t)``) is a feasible label vector."""
        found: np.ndarray = self._lookup(self._as_vectors(Y, "Y")) >= 0
        return found

    def to_joint(self, Y: Any) -> np.ndarray:
        """Joint index (row of :attr:`feasible`) of each label vector.

        Parameters
        ----------
        Y
            ``(n, t)`` integer label vectors (a single ``(t,)`` vector is accepted too).

        Returns
        -------
        ndarray of shape (n,)

        Raises
        ------
        TaskGraphError
            A row is not feasible; the message names the row, the task and the value.
        """
        Y = self._as_vectors(Y, "Y")
        idx = self._lookup(Y)
        bad = np.flatnonzero(idx < 0)
        if bad.size:
            r = int(bad[0])
            raise TaskGraphError(
                f"row {r} of Y, {Y[r].tolist()}, is not a feasible label vector: "
                f"{self.explain_infeasible(Y[r])} ({bad.size} infeasible rows in all)"
            )
        return idx

    def from_joint(self, idx: Any) -> np.ndarray:
        """``(n, t)`` label vectors of joint indices ``idx`` (rows of :attr:`feasible`)."""
        idx = np.asarray(idx)
        if idx.dtype.kind not in "iu":
            raise TaskGraphError(f"joint indices have dtype {idx.dtype}; expected ints")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_feasible):
            worst = int(idx.max() if idx.max() >= self.n_feasible else idx.min())
            raise TaskGraphError(f"joint index {worst} is out of range; expected "
                                 f"0..{self.n_feasible - 1}")
        return self.feasible[idx]

    def explain_infeasible(self, y: Any) -> str:
        """Why one label vector is not feasible, naming the task(s) and value(s) at fault."""
        y = np.asarray(y, dtype=np.int64).ravel()
        for s, (name, k) in enumerate(zip(self.task_names, self.cardinalities, strict=True)):
            if not 0 <= y[s] < k:
                return f"task {name!r} has the value {int(y[s])}; expected 0..{k - 1}"
        if self._lookup(y.reshape(1, -1))[0] >= 0:
            return "it is feasible"
        return self._explain_constraint(y)

    def _explain_constraint(self, y: np.ndarray) -> str:
        diff = self.feasible != y[None, :]
        dist = diff.sum(axis=1)
        nearest = np.flatnonzero(dist == dist.min())
        tasks = sorted(set(np.flatnonzero(diff[nearest].any(axis=0)).tolist()))
        parts = [f"{self.task_names[s]!r} = {int(y[s])} ({self.value_name(s, int(y[s]))})"
                 for s in tasks]
        fixes = [self.feasible[j].tolist() for j in nearest[:3]]
        return (f"the constraint rejects it; the values at fault are among {', '.join(parts)} "
                f"(nearest feasible vectors: {fixes})")

    # ------------------------------------------------------------------ structure
    @property
    def graph(self) -> nx.Graph:
        """Undirected ``networkx`` graph of the tasks; an edge joins two tasks whose pair of
        values is constrained (not every combination of their feasible values occurs)."""
        if self._graph is None:
            g = nx.Graph()
            for s, (name, k) in enumerate(zip(self.task_names, self.cardinalities, strict=True)):
                g.add_node(name, index=s, cardinality=k)
            F = self.feasible
            for i, j in itertools.combinations(range(self.n_tasks), 2):
                ni, nj = np.unique(F[:, i]).size, np.unique(F[:, j]).size
                pairs = np.unique(F[:, i] * self.cardinalities[j] + F[:, j]).size
                if pairs < ni * nj:
                    g.add_edge(self.task_names[i], self.task_names[j], missing=ni * nj - pairs)
            self._graph = g
        return self._graph

    def describe(self, max_vectors: int = 10) -> str:
        """A short text description: tasks, values, constrained pairs, feasible vectors."""
        lines = [f"{type(self).__name__}: {self.n_tasks} tasks, {self.n_feasible} feasible "
                 "label vectors"]
        lines += self._describe_tasks()
        lines.append("feasible vectors" + (f" (first {max_vectors})" if
                                           self.n_feasible > max_vectors else "") + ":")
        for row in self.feasible[:max_vectors]:
            lines.append("  (" + ", ".join(self.value_name(s, int(v))
                                           for s, v in enumerate(row)) + ")")
        return "\n".join(lines)

    def _describe_tasks(self) -> list[str]:
        lines = [f"  {s}: {name} ({k}): {', '.join(self.value_names[name])}"
                 for s, (name, k) in enumerate(self.tasks.items())]
        if self.constraint is not None:
            fn = getattr(self.constraint, "__name__", type(self.constraint).__name__)
            lines.append(f"constraint: {fn}")
        edges = [f"{u}-{v}" for u, v in self.graph.edges]
        lines.append("constrained task pairs: " + (", ".join(edges) if edges else "none"))
        return lines

    def __repr__(self) -> str:
        tasks = ", ".join(f"{n!r}: {k}" for n, k in self.tasks.items())
        return f"{type(self).__name__}({{{tasks}}}, n_feasible={self.n_feasible})"

    def _layout(self) -> dict[str, tuple[float, float]]:
        if self.n_tasks == 1:
            return {self.task_names[0]: (0.0, 0.0)}
        pos = nx.circular_layout(self.graph)
        return {str(k): (float(v[0]), float(v[1])) for k, v in pos.items()}

    def _edge_labels(self) -> dict[tuple[str, str], str]:
        return {}

    def draw(self, ax: Any = None) -> Any:
        """Draw the task graph with matplotlib; returns the axes.

        Nodes are tasks (name and cardinality); edges join constrained tasks (for a hierarchy,
        parent -> child, labelled with the parent value that activates the child).
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.0, 1.6 * self.n_tasks), 3.5))
        pos = self._layout()
        g = self.graph
        labels = {n: f"{n}\n({g.nodes[n]['cardinality']})" for n in g.nodes}
        nx.draw_networkx_edges(g, pos, ax=ax, arrows=g.is_directed(), node_size=2200,
                               edge_color="0.4")
        nx.draw_networkx_labels(g, pos, labels=labels, ax=ax, font_size=9,
                                bbox={"boxstyle": "round", "fc": "#dbe9f6", "ec": "0.3"})
        edge_labels = self._edge_labels()
        if edge_labels:
            nx.draw_networkx_edge_labels(g, pos, edge_labels=edge_labels, ax=ax, font_size=8)
        ax.set_title(f"{type(self).__name__}: {self.n_feasible} feasible vectors")
        ax.margins(0.2)
        ax.set_axis_off()
        return ax

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description from which :func:`task_graph_from_dict` rebuilds it.

        A ``constraint`` callable cannot be stored; its feasible set is stored instead.
        """
        return {"kind": "TaskGraph",
                "tasks": dict(zip(self.task_names, self.cardinalities, strict=True)),
                "feasible": self.feasible.tolist(),
                "value_names": self.value_names}

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The :meth:`to_dict` description as JSON text; also written to ``path`` if given.

        :func:`task_graph_from_json` reads it back (e.g. ``metal fit --tasks tasks.json``).
        """
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TaskGraph) and self.task_names == other.task_names
                and self.cardinalities == other.cardinalities
                and np.array_equal(self.feasible, other.feasible))

    __hash__ = None  # type: ignore[assignment]

"""Multi-task label input: validation of ``(n, m, t)`` arrays or per-task matrices, and scores.

Input. Either an ``(n, m, t)`` integer array (``L[r, i, s]`` = source ``i``'s vote on task
``s``; ``-1`` abstains on that task) or a dict ``{task_name: L_t}`` of ``(n, m_t)`` label
matrices (dense or ``scipy.sparse``), each column a source covering that task only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from metal.errors import ConfigError, LabelMatrixError
from metal.matrix import (
    DEFAULT_CHUNK_ROWS,
    LabelMatrix,
    as_integer_labels,
    check_label_matrix,
)
from metal.metrics import score_predictions
from metal.tasks.graph import TaskGraph

_CHUNK_CELLS = 8_000_000  # bound on rows * sources * tasks held at once for dense input


@dataclass(frozen=True)
class MultiTaskChunk:
    """The voting (row, source) pairs of a block of rows and their vote vectors."""

    start: int
    stop: int
    rows: np.ndarray  # local row index, 0..stop-start-1
    sources: np.ndarray
    votes: np.ndarray  # (n_votes, t), -1 on tasks the source abstains on


@dataclass(frozen=True)
class MultiTaskVotes:
    """A validated multi-task label input (an ``(n, m, t)`` array or per-task matrices)."""

    n_rows: int
    n_sources: int
    n_tasks: int
    layout: str  # "array" or "dict"
    dense: np.ndarray | None
    per_task: tuple[LabelMatrix | None, ...] | None
    sources_per_task: tuple[int, ...] | None

    def _chunk(self, chunk_rows: int) -> int:
        if self.dense is None:
            return chunk_rows
        return max(1, min(chunk_rows, _CHUNK_CELLS // max(1, self.n_sources * self.n_tasks)))

    def iter_votes(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[MultiTaskChunk]:
        """Yield the votes block by block (no block holds more than ``chunk_rows`` rows)."""
        step = self._chunk(chunk_rows)
        for start in range(0, self.n_rows, step):
            stop = min(start + step, self.n_rows)
            if self.dense is not None:
                block = self.dense[start:stop]
                r, i = np.nonzero((block >= 0).any(axis=2))
                yield MultiTaskChunk(start, stop, r.astype(np.int64), i.astype(np.int64),
                                     block[r, i].astype(np.int64))
                continue
            assert self.per_task is not None and self.sources_per_task is not None
            rows, srcs, vecs = [], [], []
            offset = 0
            for s, lm in enumerate(self.per_task):
                if lm is not None:
                    ch = lm.votes_in(start, stop)
                    v = np.full((ch.rows.size, self.n_tasks), -1, dtype=np.int64)
                    v[:, s] = ch.values
                    rows.append(ch.rows - start)
                    srcs.append(ch.cols + offset)
                    vecs.append(v)
                offset += self.sources_per_task[s]
            yield MultiTaskChunk(start, stop, np.concatenate(rows), np.concatenate(srcs),
                                 np.concatenate(vecs))

    def coverage(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
        """``(m, t)`` bool: the tasks each source votes on at least once."""
        cov = np.zeros((self.n_sources, self.n_tasks), dtype=bool)
        for ch in self.iter_votes(chunk_rows):
            r, s = np.nonzero(ch.votes >= 0)
            cov[ch.sources[r], s] = True
        return cov


def check_multitask_votes(L: Any, task_graph: TaskGraph, name: str = "L") -> MultiTaskVotes:
    """Validate multi-task votes against a task graph.

    Parameters
    ----------
    L
        ``(n, m, t)`` integer array (``-1`` abstains on a task), or ``{task_name: L_t}`` with
        ``L_t`` an ``(n, m_t)`` dense or sparse label matrix for that task.
    task_graph
        The tasks; values on task ``s`` must lie in ``0..k_s-1``.

    Raises
    ------
    LabelMatrixError
        Wrong shape or dtype, unknown task names, inconsistent row counts, or a value out of
        range (the message names the task and the value).
    """
    if isinstance(L, MultiTaskVotes):  # validated already
        return L
    names, card, t = task_graph.task_names, task_graph.cardinalities, task_graph.n_tasks
    if isinstance(L, Mapping):
        unknown = [k for k in L if k not in names]
        if unknown:
            raise LabelMatrixError(f"{name} has entries for unknown tasks {unknown}; the task "
                                   f"graph's tasks are {names}")
        if not L:
            raise LabelMatrixError(f"{name} is an empty dict; expected {{task_name: (n, m_t) "
                                   "label matrix}} for at least one task")
        per_task: list[LabelMatrix | None] = []
        counts: list[int] = []
        n_rows = None
        for s, task in enumerate(names):
            if task not in L or L[task] is None:
                per_task.append(None)
                counts.append(0)
                continue
            lm = check_label_matrix(L[task], cardinality=card[s], name=f"{name}[{task!r}]")
            if n_rows is not None and lm.n_rows != n_rows:
                raise LabelMatrixError(f"{name}[{task!r}] has {lm.n_rows} rows, another task's "
                                       f"matrix has {n_rows}; expected the same rows for every "
                                       "task")
            n_rows = lm.n_rows
            per_task.append(lm)
            counts.append(lm.n_sources)
        assert n_rows is not None
        return MultiTaskVotes(n_rows=n_rows, n_sources=sum(counts), n_tasks=t, layout="dict",
                              dense=None, per_task=tuple(per_task),
                              sources_per_task=tuple(counts))
    if sp.issparse(L):
        raise LabelMatrixError(f"{name} is a 2-D sparse matrix; expected an (n, m, t) dense array "
                               "or a dict {task_name: (n, m_t) matrix} (sparse allowed there)")
    if isinstance(L, (list, tuple)):
        L = np.asarray(L)
    if not isinstance(L, np.ndarray):
        raise LabelMatrixError(f"{name} is a {type(L).__name__}; expected an (n, m, t) numpy "
                               "array or a dict {task_name: (n, m_t) matrix}")
    if L.ndim == 2 and t == 1:
        L = L[:, :, None]
    if L.ndim != 3 or L.shape[2] != t:
        raise LabelMatrixError(
            f"{name} has shape {L.shape}; expected (n, m, {t}): one vote per row, source and "
            f"task {names} (-1 abstains), or a dict {{task_name: (n, m_t) matrix}}"
        )
    if L.shape[0] == 0 or L.shape[1] == 0:
        raise LabelMatrixError(f"{name} is empty (shape {L.shape}); expected at least one row "
                               "and one source")
    L = as_integer_labels(L, name, "Replace NaN by -1.")
    lo, hi = L.min(axis=(0, 1)), L.max(axis=(0, 1))
    for s in range(t):
        if lo[s] < -1 or hi[s] >= card[s]:
            bad = int(lo[s]) if lo[s] < -1 else int(hi[s])
            raise LabelMatrixError(
                f"{name} contains the value {bad} for task {names[s]!r}; expected -1 (abstain) "
                f"or 0..{card[s] - 1} (cardinality {card[s]}). Check the label mapping of that "
                "task"
            )
    return MultiTaskVotes(n_rows=int(L.shape[0]), n_sources=int(L.shape[1]), n_tasks=t,
                          layout="array", dense=L, per_task=None, sources_per_task=None)



def _check_task_graph(task_graph: Any) -> TaskGraph:
    if not isinstance(task_graph, TaskGraph):
        raise ConfigError(
            f"task_graph is a {type(task_graph).__name__}; expected a metal.TaskGraph or "
            "metal.TaskHierarchy, e.g. TaskHierarchy({'type': 2, 'person': 3, 'org': 3}, "
            "parents={'person': ('type', 0), 'org': ('type', 1)})"
        )
    return task_graph


def joint_balance_from_gold(Y: Any, task_graph: TaskGraph) -> np.ndarray:
    """Prior over the feasible set from labeled vectors (add-one smoothing; rows with an
    unknown ``-1`` entry are skipped)."""
    Y = np.asarray(Y)
    known = (Y >= 0).all(axis=1) if Y.ndim == 2 else np.ones(0, bool)
    Y = Y[known] if Y.ndim == 2 else Y
    counts = np.bincount(task_graph.to_joint(Y), minlength=task_graph.n_feasible) + 1.0
    return counts / counts.sum()



def score_label_vectors(task_graph: TaskGraph, Y: Any, preds: np.ndarray,
                        metrics: Sequence[str] = ("accuracy",)) -> dict[str, dict[str, float]]:
    """Per-task and joint scores of predicted label vectors (see
    :meth:`MultiTaskLabelModel.score`)."""
    Y = np.asarray(Y)
    if Y.ndim == 1 and task_graph.n_tasks == 1:
        Y = Y.reshape(-1, 1)
    if Y.shape != preds.shape:
        raise LabelMatrixError(f"Y has shape {Y.shape}; expected {preds.shape}: one gold label "
                               f"per row and task {task_graph.task_names} (-1 = unknown)")
    if "joint" in task_graph.task_names:
        raise ConfigError("a task is named 'joint', which score() uses for the joint score; "
                          "rename the task")
    Y = as_integer_labels(Y, "Y", "Use -1 for unknown gold labels.").astype(np.int64)
    out: dict[str, dict[str, float]] = {}
    for s, name in enumerate(task_graph.task_names):
        k = task_graph.cardinalities[s]
        bad = Y[:, s][(Y[:, s] < -1) | (Y[:, s] >= k)]
        if bad.size:
            raise LabelMatrixError(f"Y has the value {int(bad[0])} for task {name!r}; "
                                   f"expected 0..{k - 1} or -1 (unknown)")
        out[name] = score_predictions(Y[:, s], preds[:, s], metrics, cardinality=k)
    full = (Y >= 0).all(axis=1)
    if full.any():
        gold = task_graph.to_joint(Y[full])  # raises, naming the task, on an infeasible row
        pj = task_graph.joint_index(preds[full])  # -1 (wrong) for abstained or infeasible vectors
        out["joint"] = score_predictions(gold, pj, metrics, cardinality=task_graph.n_feasible)
        # per-task baselines can predict infeasible vectors: report how often
        out["joint"]["feasible"] = float(np.mean(task_graph.joint_index(preds) >= 0))
    return out

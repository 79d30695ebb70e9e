"""Hierarchical majority vote: the MeTaL paper's multi-task baseline and the EM start.

For each row, majority vote at the top task, then at each child among the values consistent
with the choices above (a hard decision cascade). Votes implied through the task graph count
(a "Doctor" vote is also a "Person" vote). Re-exported by :mod:`metal.label_model.hierarchical`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from metal.errors import ConfigError
from metal.label_model.multitask.coding import complete_votes
from metal.label_model.multitask.votes import (
    MultiTaskChunk,
    _check_task_graph,
    check_multitask_votes,
    score_label_vectors,
)
from metal.matrix import DEFAULT_CHUNK_ROWS
from metal.metrics import TIE_BREAKS, probs_to_preds
from metal.tasks.graph import TaskGraph
from metal.tasks.hierarchy import TaskHierarchy


def _task_order(g: TaskGraph) -> list[int]:
    if isinstance(g, TaskHierarchy):
        return [g.task_index(t) for t in g.topological_order()]
    return list(range(g.n_tasks))


def implied_vote_counts(g: TaskGraph, chunk: MultiTaskChunk) -> list[np.ndarray]:
    """Per task, ``(rows, k_s)`` counts of explicit and implied votes in one chunk."""
    r = chunk.stop - chunk.start
    uniq, inv = np.unique(chunk.votes, axis=0, return_inverse=True)
    completed = complete_votes(uniq, g.feasible)[inv.ravel()]
    out = []
    for s, k in enumerate(g.cardinalities):
        has = completed[:, s] >= 0
        out.append(np.bincount(chunk.rows[has] * k + completed[has, s],
                               minlength=r * k).reshape(r, k).astype(np.float64))
    return out


class HierarchicalMajorityVoter:
    """Top-down majority vote over a task graph (tasks in topological order).

    At each task, every source's vote on it counts, explicit or implied by its votes on other
    tasks through the feasible set; the value with most votes among those consistent with the
    values already chosen wins. Rows without a vote there take a consistent value by
    ``tie_break``. ``fit`` learns nothing (it validates ``L``).

    Parameters
    ----------
    task_graph
        A :class:`~metal.tasks.TaskHierarchy` (top-down order) or any
        :class:`~metal.tasks.TaskGraph` (task order).
    seed
        Seed for random tie breaks.
    chunk_rows
        Rows per block.
    """

    def __init__(self, task_graph: TaskGraph, *, seed: int = 0,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        self.task_graph = task_graph
        self.seed = seed
        self.chunk_rows = chunk_rows

    def fit(self, L: Any, *args: object, **kwargs: object) -> HierarchicalMajorityVoter:
        """Validate ``L``; majority vote has nothing to learn. Returns ``self``."""
        check_multitask_votes(L, _check_task_graph(self.task_graph))
        self.n_tasks_ = self.task_graph.n_tasks
        return self

    def _decide(self, L: Any, tie_break: str) -> tuple[np.ndarray, list[np.ndarray]]:
        if tie_break not in TIE_BREAKS:
            raise ConfigError(f"tie_break={tie_break!r} is not known; expected one of "
                              f"{TIE_BREAKS}")
        g = _check_task_graph(self.task_graph)
        votes = check_multitask_votes(L, g)
        F = g.feasible
        preds = np.full((votes.n_rows, g.n_tasks), -1, dtype=np.int64)
        shares = [np.zeros((votes.n_rows, k)) for k in g.cardinalities]
        order = _task_order(g)
        for ch in votes.iter_votes(int(self.chunk_rows)):
            counts = implied_vote_counts(g, ch)
            alive = np.ones((ch.stop - ch.start, g.n_feasible), dtype=bool)
            tied_any = np.zeros(ch.stop - ch.start, dtype=bool)
            for s in order:
                allowed = (alive.astype(np.float64) @ g.marginal_indicator(s)) > 0
                c = np.where(allowed, counts[s], 0.0)
                total = c.sum(axis=1, keepdims=True)
                share = np.where(total > 0, c / np.maximum(total, 1.0),
                                 allowed / allowed.sum(axis=1, keepdims=True))
                score = np.where(allowed, share, -1.0)
                rule = "first" if tie_break == "first" else "random"
                choice = probs_to_preds(score, rule, seed=int(self.seed) + s)
                if tie_break == "abstain":
                    top = score.max(axis=1, keepdims=True)
                    tied_any |= (score >= top - 1e-5).sum(axis=1) > 1
                preds[ch.start:ch.stop, s] = choice
                shares[s][ch.start:ch.stop] = share
                alive &= F[None, :, s] == choice[:, None]
            preds[ch.start:ch.stop][tied_any] = -1
        return preds, shares

    def predict(self, L: Any, tie_break: str = "random") -> np.ndarray:
        """``(n, t)`` label vectors (always feasible; ``-1`` rows only with ``"abstain"``)."""
        return self._decide(L, tie_break)[0]

    def predict_proba(self, L: Any) -> list[np.ndarray]:
        """Per task ``(n, k_s)``: vote shares among the values consistent with the values
        chosen above it (uniform over them when nobody votes)."""
        return self._decide(L, "random")[1]

    def predict_proba_joint(self, L: Any) -> np.ndarray:
        """``(n, K)`` one-hot of the predicted vector (majority vote makes hard decisions)."""
        g = _check_task_graph(self.task_graph)
        idx = g.to_joint(self.predict(L))
        out = np.zeros((idx.shape[0], g.n_feasible))
        out[np.arange(idx.shape[0]), idx] = 1.0
        return out

    def score(self, L: Any, Y: Any, metrics: Sequence[str] = ("accuracy",),
              tie_break: str = "random") -> dict[str, dict[str, float]]:
        """Per-task and joint scores, as :meth:`MultiTaskLabelModel.score`."""
        return score_label_vectors(self.task_graph, Y, self.predict(L, tie_break), metrics)

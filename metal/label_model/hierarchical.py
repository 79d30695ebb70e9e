"""Multi-task baselines with the :class:`MultiTaskLabelModel` interface.

* :class:`HierarchicalMajorityVoter`: the MeTaL paper's "hierarchical majority vote": for each
  row, majority vote at the top task, then at each child among the values consistent with the
  choices above (a hard decision cascade). Votes implied through the task graph count (a
  "Doctor" vote is also a "Person" vote).
* :class:`SeparateTaskLabelModels`: one single-task :class:`LabelModel` per task on that
  task's own votes (the paper's per-task "DP" baseline); its per-task argmaxes may form an
  infeasible vector.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from metal.label_model.base import check_is_fitted
from metal.label_model.label_model import LabelModel, MetalWarning
from metal.label_model.multitask import (
    MultiTaskVotes,
    _check_task_graph,
    check_multitask_votes,
    score_label_vectors,
)
from metal.label_model.multitask.majority import HierarchicalMajorityVoter, implied_vote_counts
from metal.metrics import probs_to_preds
from metal.tasks.graph import TaskGraph

__all__ = ["HierarchicalMajorityVoter", "SeparateTaskLabelModels", "implied_vote_counts"]


class SeparateTaskLabelModels:
    """One :class:`~metal.label_model.LabelModel` per task, each on that task's votes only.

    Task ``s`` is fitted on the sources that vote on it at least once (their votes on the
    other tasks are ignored, so no cross-task signal is used). Per-task predictions are
    independent argmaxes and may form infeasible vectors.

    Parameters
    ----------
    task_graph
        The tasks.
    seed
        Seed of every per-task model.
    **label_model_params
        Passed to every :class:`~metal.label_model.LabelModel` (e.g. ``method``,
        ``model_abstains``, ``prob_floor``).

    Attributes
    ----------
    models_ : list of (LabelModel or None)
        One per task; ``None`` for a task no source votes on (predicted uniform).
    sources_ : list of ndarray
        The source indices each task's model uses.
    """

    def __init__(self, task_graph: TaskGraph, *, seed: int = 0,
                 **label_model_params: Any) -> None:
        self.task_graph = task_graph
        self.seed = seed
        self.label_model_params = label_model_params

    def _task_matrix(self, votes: MultiTaskVotes, L: Any, s: int, cols: np.ndarray) -> Any:
        if votes.layout == "dict":
            return L[self.task_graph.task_names[s]]
        assert votes.dense is not None
        return votes.dense[:, cols, s]

    def fit(self, L: Any, class_balance: Any = None,
            Y_dev: Any = None) -> SeparateTaskLabelModels:
        """Fit one label model per task. ``Y_dev`` ``(n_dev, t)`` sets each task's balance;
        ``class_balance`` is a list of per-task priors."""
        g = _check_task_graph(self.task_graph)
        votes = check_multitask_votes(L, g)
        if votes.sources_per_task is not None:
            offsets = np.concatenate([[0], np.cumsum(votes.sources_per_task)])
            cover = [np.arange(offsets[s], offsets[s + 1]) for s in range(g.n_tasks)]
        else:
            cov = votes.coverage()
            cover = [np.flatnonzero(cov[:, s]) for s in range(g.n_tasks)]
        models: list[LabelModel | None] = []
        for s, k in enumerate(g.cardinalities):
            if cover[s].size == 0:
                warnings.warn(f"no source votes on task {g.task_names[s]!r}; its prediction "
                              "is uniform", MetalWarning, stacklevel=2)
                models.append(None)
                continue
            kwargs: dict[str, Any] = {}
            if class_balance is not None:
                kwargs["class_balance"] = class_balance[s]
            if Y_dev is not None:
                kwargs["Y_dev"] = np.asarray(Y_dev)[:, s]
            model = LabelModel(cardinality=k, seed=self.seed, **self.label_model_params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MetalWarning)
                model.fit(self._task_matrix(votes, L, s, cover[s]), **kwargs)
            models.append(model)
        self.models_ = models
        self.sources_ = cover
        self.n_sources_ = votes.n_sources
        return self

    def predict_proba(self, L: Any) -> list[np.ndarray]:
        """Per task ``(n, k_s)`` posteriors of the per-task models."""
        check_is_fitted(self, "models_")
        g = self.task_graph
        votes = check_multitask_votes(L, g)
        out = []
        for s, model in enumerate(self.models_):
            k = g.cardinalities[s]
            if model is None:
                out.append(np.full((votes.n_rows, k), 1.0 / k))
            else:
                out.append(model.predict_proba(self._task_matrix(votes, L, s, self.sources_[s])))
        return out

    def predict_proba_joint(self, L: Any) -> np.ndarray:
        """``(n, K)`` product of the per-task posteriors, restricted to the feasible set and
        renormalised (the tasks were modelled as independent)."""
        g = self.task_graph
        logp = np.zeros((0,))
        for s, probs in enumerate(self.predict_proba(L)):
            part = np.log(np.clip(probs, 1e-300, None))[:, g.feasible[:, s]]
            logp = part if logp.size == 0 else logp + part
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, L: Any, tie_break: str = "random") -> np.ndarray:
        """``(n, t)``: each task's own argmax (the vector may be infeasible)."""
        return np.stack([probs_to_preds(p, tie_break, seed=int(self.seed))
                         for p in self.predict_proba(L)], axis=1)

    def score(self, L: Any, Y: Any, metrics: Sequence[str] = ("accuracy",),
              tie_break: str = "random") -> dict[str, dict[str, float]]:
        """Per-task and joint scores, as :meth:`MultiTaskLabelModel.score`."""
        return score_label_vectors(self.task_graph, Y, self.predict(L, tie_break), metrics)

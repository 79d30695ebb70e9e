"""Multi-task WeaSEL: per-task accuracies, aggregation over a task graph's feasible set.

For each task ``s`` the encoder outputs accuracies ``theta_s`` (per source, and per class when
class-conditional) and the reweighted vote ``z_s = sum_j theta_{j,s} V_{j,s}``. The encoder's
label is a distribution over the *feasible label vectors* ``y`` (rows of
``task_graph.feasible``): ``softmax_y(sum_s z_s[y_s] + log p(y))``. The end model has one head
per task; its joint over the same feasible set is ``softmax_y(sum_s log f_s(y_s))``. Both
sides are trained with the same agreement loss as single-task WeaSEL on these joint
distributions, and predictions are argmaxes over the feasible set, so every predicted label
vector is feasible. With one task this is exactly :class:`~metal.weasel.WeaSEL`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from metal.end_model import MultiTaskEndModel
from metal.errors import ConfigError, LabelMatrixError
from metal.tasks.graph import TaskGraph
from metal.tasks.serialize import task_graph_from_dict
from metal.weasel._data import WeakData, check_features, check_task_votes
from metal.weasel.model import WeaSELBase


def _check_task_graph(task_graph: Any) -> TaskGraph:
    if not isinstance(task_graph, TaskGraph):
        raise ConfigError(f"task_graph is a {type(task_graph).__name__}; expected a "
                          "metal.TaskGraph or metal.TaskHierarchy")
    return task_graph


class MultiTaskWeaSEL(WeaSELBase):
    """WeaSEL over several related tasks (a :class:`~metal.TaskGraph`).

    Parameters
    ----------
    task_graph
        Tasks, cardinalities and the feasible set of label vectors.
    end_model
        An unfitted :class:`~metal.end_model.MultiTaskEndModel` over the same tasks (input
        module, shared trunk, one head per task); default ``MultiTaskEndModel(task_graph)``.
    class_balance
        Prior over the feasible label vectors, ``(K,)`` (default uniform).
    **kwargs
        Every other hyperparameter of :class:`~metal.weasel.WeaSEL`; accuracies are per task
        (``tau2`` = sqrt of the row's voters on each task), class-conditional for tasks with
        more than two values by default. ``valid_metric="auto"`` is the mean per-task accuracy.
        ``softmax_over`` defaults to ``"voters"``: with the paper's softmax over all sources
        the joint labels collapsed to uniform on generated hierarchies (the agreement loss
        sat at ``2 log K``), because the encoder can park its weight on abstaining sources.
        ``warm_start="label_model"`` fits one label model per task on that task's votes and
        combines their posteriors over the feasible set, as the encoder's per-task logits.
    """

    _kind = "MultiTaskWeaSEL"

    def __init__(self, task_graph: TaskGraph, softmax_over: str = "voters",
                 **kwargs: Any) -> None:
        super().__init__(softmax_over=softmax_over, **kwargs)
        self.task_graph = task_graph

    # ------------------------------------------------------------------ hooks
    def _cardinalities(self) -> list[int]:
        return list(_check_task_graph(self.task_graph).cardinalities)

    def _label_space_size(self) -> int:
        return int(self.task_graph.n_feasible)

    def _feasible_t(self) -> torch.Tensor:
        return torch.tensor(np.array(self.task_graph.feasible), dtype=torch.long,
                            device=self.device)

    def _joint(self, per_task: list[torch.Tensor]) -> torch.Tensor:
        F = self._feasible_t()
        total = per_task[0][:, F[:, 0]]
        for s in range(1, len(per_task)):
            total = total + per_task[s][:, F[:, s]]
        return total

    def _combine_encoder(self, task_logits: list[torch.Tensor], log_prior: torch.Tensor
                         ) -> torch.Tensor:
        return torch.log_softmax(self._joint(task_logits) + log_prior, dim=1)

    def _combine_end(self, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        per_task = [torch.log_softmax(out[n], dim=1) for n in self.task_graph.task_names]
        return torch.log_softmax(self._joint(per_task), dim=1)

    def _default_end_model(self) -> MultiTaskEndModel:
        return MultiTaskEndModel(self.task_graph, seed=int(self.seed), device=self.device)

    def _check_end_model(self, end: MultiTaskEndModel) -> None:
        g = self.task_graph
        if end.tasks_ != g.tasks:
            raise ConfigError(f"end_model has tasks {end.tasks_}; the task graph has {g.tasks}. "
                              "Build it as MultiTaskEndModel(task_graph, ...)")
        if end.task_graph_ is None:  # decode its predictions over the feasible set too
            end.tasks = g
            end.task_graph_ = g

    def _check_valid_labels(self, Y: Any, n: int) -> np.ndarray:
        Y = np.asarray(Y)
        t = self.task_graph.n_tasks
        if Y.ndim == 1 and t == 1:
            Y = Y.reshape(-1, 1)
        if Y.shape != (n, t):
            raise LabelMatrixError(f"Y_valid has shape {Y.shape}; expected ({n}, {t}): one "
                                   "gold label per task (-1 unknown)")
        return Y.astype(np.int64)

    def _valid_scores(self, log_f: np.ndarray, Y: np.ndarray, metric: str
                      ) -> dict[str, float]:
        if metric not in ("accuracy", "loss"):
            raise ConfigError(f"valid_metric={metric!r}; the multi-task model early-stops on "
                              "'accuracy' (the mean per-task accuracy) or 'loss'")
        preds = self.task_graph.feasible[np.argmax(log_f, axis=1)]
        accs = [float(np.mean(preds[Y[:, s] >= 0, s] == Y[Y[:, s] >= 0, s]))
                for s in range(Y.shape[1]) if (Y[:, s] >= 0).any()]
        full = (Y >= 0).all(axis=1)
        loss = float(-np.mean(log_f[full, self.task_graph.to_joint(Y[full])])) \
            if full.any() else float("nan")
        return {"accuracy": float(np.mean(accs)) if accs else float("nan"), "loss": loss}

    def _extra_params(self) -> dict[str, Any]:
        return {"task_graph": self.task_graph.to_dict()}

    # ------------------------------------------------------------------ input
    def _data(self, L: Any, X: Any, n_sources: Sequence[int] | None = None) -> WeakData:
        cards = self._cardinalities()
        names = self.task_graph.task_names
        if isinstance(L, Mapping):
            unknown = [k for k in L if k not in names]
            if unknown:
                raise LabelMatrixError(f"L names the unknown tasks {unknown}; tasks: {names}")
            missing = [n for n in names if n not in L]
            if missing:
                raise LabelMatrixError(f"L has no votes for the tasks {missing}; give every "
                                       "task an (n, m_task) label matrix or (n, m_task, k) "
                                       "probabilistic votes")
            parts = [L[n] for n in names]
        else:
            arr = np.asarray(L)
            if arr.ndim != 3 or arr.shape[2] != len(names):
                raise LabelMatrixError(
                    f"L has shape {arr.shape}; expected (n, m, {len(names)}) votes "
                    f"(L[r, i, s] = source i's vote on task s, -1 abstain) or a dict "
                    f"{{task_name: votes}} over the tasks {names}")
            parts = [arr[:, :, s] for s in range(len(names))]
        tasks = tuple(
            check_task_votes(p, k, None if n_sources is None else n_sources[s],
                             name=f"L[{names[s]!r}]")
            for s, (p, k) in enumerate(zip(parts, cards, strict=True)))
        rows = {t.n_rows for t in tasks}
        if len(rows) != 1:
            raise LabelMatrixError(f"the tasks' votes have different numbers of rows {rows}; "
                                   "give every task the votes of the same rows")
        Xp = None if X is None else check_features(X, tasks[0].n_rows)
        return WeakData(tasks, Xp)

    # ------------------------------------------------------------------ API
    def fit(self, L: Any, X: Any, X_valid: Any = None, Y_valid: Any = None) -> MultiTaskWeaSEL:
        """Train the encoder and the multi-head end model together (no training labels).

        Parameters
        ----------
        L
            ``(n, m, t)`` votes (``-1`` abstains on that task), or a dict
            ``{task_name: votes}`` with ``(n, m_task)`` label matrices (dense or sparse) or
            ``(n, m_task, k_task)`` probabilistic votes.
        X
            ``(n, d)`` features.
        X_valid, Y_valid
            Optional labelled split for early stopping; ``Y_valid`` is ``(n_valid, t)``.
        """
        _check_task_graph(self.task_graph)
        return self._fit(self._data(L, X), X_valid, Y_valid)  # type: ignore[return-value]

    def predict_proba_joint(self, X: Any) -> np.ndarray:
        """``(n, K)`` the end model's distribution over the feasible label vectors."""
        self._check_fitted()
        return self.end_model_.predict_proba_joint(X)

    def predict_proba(self, X: Any) -> list[np.ndarray]:
        """Per-task marginals ``[(n, k_s)]`` of :meth:`predict_proba_joint`."""
        joint = self.predict_proba_joint(X)
        return [joint @ self.task_graph.marginal_indicator(s)
                for s in range(self.task_graph.n_tasks)]

    def predict(self, X: Any, tie_break: str = "first") -> np.ndarray:
        """``(n, t)`` most probable feasible label vector of each row."""
        self._check_fitted()
        return self.end_model_.predict(X, tie_break)  # type: ignore[no-any-return]

    def score(self, X: Any, Y: Any, metrics: Sequence[str] = ("accuracy",),
              tie_break: str = "first") -> dict[str, Any]:
        """Per-task scores and the joint accuracy (every task right), as the label model's."""
        from metal.label_model.multitask import score_label_vectors

        preds = self.predict(X, tie_break)
        return score_label_vectors(self.task_graph, Y, preds, metrics)

    def predict_proba_encoder(self, L: Any, X: Any = None) -> np.ndarray:
        """``(n, K)`` the encoder's joint labels over the feasible set for votes ``L``."""
        return np.exp(self._encoder_log_proba(self._encoder_data(L, X)))

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> MultiTaskWeaSEL:
        params = dict(params)
        graph = task_graph_from_dict(params.pop("task_graph"))
        return cls(graph, **params)

    @classmethod
    def load(cls, path: str | os.PathLike[str], input_module: nn.Module | None = None,
             heads: Mapping[str, nn.Module] | None = None,
             encoder: nn.Module | None = None) -> MultiTaskWeaSEL:
        """Read a model written by :meth:`save` (pass custom modules it cannot rebuild)."""
        return cls._load(path, input_module, heads, encoder)  # type: ignore[no-any-return]

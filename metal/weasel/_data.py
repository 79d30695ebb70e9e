"""Validated WeaSEL inputs served in mini-batches: votes per task and features.

Votes are kept in their compact form (dense int8/int16, ``scipy.sparse`` storing votes only,
or float distributions for probabilistic sources) and turned into ``(b, m, k)`` float tensors
one mini-batch at a time, so no dense one-hot of the whole data set is ever built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from metal.errors import ConfigError, LabelMatrixError
from metal.matrix import check_label_matrix


@dataclass(frozen=True)
class TaskVotes:
    """One task's votes: discrete ``(n, m)`` labels or probabilistic ``(n, m, k)`` scores."""

    cardinality: int
    labels: np.ndarray | sp.csr_matrix | None  # discrete votes, -1 / unstored = abstain
    probs: np.ndarray | None  # (n, m, k) float32, an all-zero row = abstain

    @property
    def n_rows(self) -> int:
        src = self.labels if self.labels is not None else self.probs
        assert src is not None
        return int(src.shape[0])

    @property
    def n_sources(self) -> int:
        src = self.labels if self.labels is not None else self.probs
        assert src is not None
        return int(src.shape[1])

    def has_vote(self) -> np.ndarray:
        """``(n,)`` bool: the rows on which at least one source votes (one vectorised pass)."""
        if self.probs is not None:
            return np.asarray((self.probs > 0).any(axis=(1, 2)))
        if sp.issparse(self.labels):
            return np.diff(self.labels.indptr) > 0  # type: ignore[union-attr]
        assert isinstance(self.labels, np.ndarray)
        return np.asarray((self.labels >= 0).any(axis=1))

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        """``(b, m, k)`` float32 vote distributions of ``rows`` (zeros where a source abstains)."""
        if self.probs is not None:
            return torch.from_numpy(np.ascontiguousarray(self.probs[rows], dtype=np.float32))
        k = self.cardinality
        if sp.issparse(self.labels):
            sub = self.labels[rows]  # type: ignore[index]
            out = np.zeros((len(rows), self.n_sources, k), dtype=np.float32)
            r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
            out[r, sub.indices, sub.data.astype(np.int64)] = 1.0
            return torch.from_numpy(out)
        assert isinstance(self.labels, np.ndarray)
        votes = torch.from_numpy(self.labels[rows].astype(np.int64))
        onehot = torch.nn.functional.one_hot(votes.clamp(min=0), k).to(torch.float32)
        return onehot * (votes >= 0).unsqueeze(-1).to(torch.float32)


def check_task_votes(L: Any, cardinality: int, n_sources: int | None = None,
                     name: str = "L") -> TaskVotes:
    """Validate one task's votes: ``(n, m)`` labels (dense or sparse) or ``(n, m, k)`` scores."""
    if not sp.issparse(L):
        arr = np.asarray(L)
        if arr.ndim == 3:
            if arr.shape[2] != cardinality:
                raise LabelMatrixError(
                    f"{name} has shape {arr.shape}; a probabilistic label tensor needs "
                    f"(n, m, {cardinality}): one distribution over the {cardinality} classes per "
                    "row and source (all zeros = abstain)")
            probs = arr.astype(np.float32, copy=False)
            if not np.isfinite(probs).all() or (probs < 0).any():
                raise LabelMatrixError(f"{name} holds negative or non-finite scores; expected "
                                       "probabilities in [0, 1] (all zeros = abstain)")
            if (probs.sum(axis=2) > 1.0 + 1e-4).any():
                raise LabelMatrixError(
                    f"{name} has a row whose scores over the classes sum to more than 1; each "
                    "source's entry must be a distribution (sum 1) or all zeros (abstain). "
                    "Normalise with P / P.sum(axis=2, keepdims=True)")
            if n_sources is not None and probs.shape[1] != n_sources:
                raise LabelMatrixError(f"{name} has {probs.shape[1]} sources; expected "
                                       f"{n_sources}, as seen in fit")
            return TaskVotes(cardinality, None, probs)
    lm = check_label_matrix(L, cardinality=cardinality, n_sources=n_sources, name=name)
    return TaskVotes(cardinality, lm.data, None)


@dataclass(frozen=True)
class WeakData:
    """Every task's votes plus the features (prepared as the end model takes them)."""

    tasks: tuple[TaskVotes, ...]
    X: Any  # the output of metal.end_model.prepare_inputs, or None

    @property
    def n_rows(self) -> int:
        return self.tasks[0].n_rows

    def has_vote(self) -> np.ndarray:
        out = np.zeros(self.n_rows, dtype=bool)
        for t in self.tasks:
            out |= t.has_vote()
        return out

    def votes(self, rows: np.ndarray) -> list[torch.Tensor]:
        return [t.batch(rows) for t in self.tasks]

    def features(self, rows: np.ndarray) -> Any:
        from metal.end_model.inputs import take_rows

        return None if self.X is None else take_rows(self.X, rows)


def check_features(X: Any, n_rows: int | None, name: str = "X") -> Any:
    """Validate features once, in the end model's input convention (dense, sparse, dict)."""
    from metal.end_model.inputs import n_rows as count_rows
    from metal.end_model.inputs import prepare_inputs

    if X is None:
        raise ConfigError(f"{name} is None; WeaSEL trains an end model on features, so pass "
                          "the features of the rows of L (numpy, scipy.sparse or a dict of "
                          "arrays, as the end model takes them)")
    Xp = prepare_inputs(X, name)
    if n_rows is not None and count_rows(Xp) != n_rows:
        raise ConfigError(f"{name} has {count_rows(Xp)} rows; the votes have {n_rows}. Pass "
                          "the features of the same rows, in the same order")
    return Xp


def batches(rows: np.ndarray, batch_size: int) -> Sequence[np.ndarray]:
    return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]

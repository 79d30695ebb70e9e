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
    """Every task's votes plus the features, with the same rows."""

    tasks: tuple[TaskVotes, ...]
    X: np.ndarray | sp.csr_matrix | None

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

    def features(self, rows: np.ndarray) -> torch.Tensor:
        assert self.X is not None
        return feature_batch(self.X, rows)


def feature_batch(X: np.ndarray | sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    """Dense float32 ``(b, d)`` features of ``rows`` (a sparse matrix is densified per batch)."""
    sub = X[rows]
    if sp.issparse(sub):
        sub = sub.toarray()
    return torch.from_numpy(np.ascontiguousarray(sub, dtype=np.float32))


def check_features(X: Any, n_rows: int | None, n_features: int | None = None,
                   name: str = "X") -> np.ndarray | sp.csr_matrix:
    """Validate a 2-D feature matrix (numpy or ``scipy.sparse``)."""
    if X is None:
        raise ConfigError(f"{name} is None; WeaSEL trains an end model on features, so pass a "
                          "(n, d) feature matrix (numpy or scipy.sparse) with the rows of L")
    if sp.issparse(X):
        mat: np.ndarray | sp.csr_matrix = sp.csr_matrix(X, dtype=np.float32)
    else:
        mat = np.asarray(X, dtype=np.float32)
        if mat.ndim != 2:
            raise ConfigError(f"{name} has shape {mat.shape}; expected a 2-D (n, d) feature "
                              "matrix (use X.reshape(-1, 1) for one feature)")
        if not np.isfinite(mat).all():
            raise ConfigError(f"{name} holds NaN or infinite values; impute or drop them first")
    if n_rows is not None and mat.shape[0] != n_rows:
        raise ConfigError(f"{name} has {mat.shape[0]} rows; the votes have {n_rows}. Pass the "
                          "features of the same rows, in the same order")
    if n_features is not None and mat.shape[1] != n_features:
        raise ConfigError(f"{name} has {mat.shape[1]} features; the model was fitted on "
                          f"{n_features}")
    return mat


def batches(rows: np.ndarray, batch_size: int) -> Sequence[np.ndarray]:
    return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]

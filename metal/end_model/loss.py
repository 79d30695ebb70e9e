"""Noise-aware losses: expected cross-entropy on probabilistic labels, per task.

Targets of a task are either soft labels (an ``(n, k)`` array of probabilities, e.g. a label
model's ``predict_proba``) or hard labels (``(n,)`` ints, ``-1`` = unknown). The expected
cross-entropy ``-sum_c w_c p_c log softmax(z)_c`` equals the usual cross-entropy when ``p``
is one-hot, with or without class weights ``w`` (same weighted mean as
``torch.nn.functional.cross_entropy(weight=w)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from metal.errors import ConfigError, LabelMatrixError


def soft_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    class_weight: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Expected cross-entropy of ``logits`` under target distributions (or hard labels).

    Parameters
    ----------
    logits
        ``(b, k)`` unnormalised scores.
    targets
        ``(b, k)`` probabilities, or ``(b,)`` int64 class indices (``-1`` rows are ignored).
    class_weight
        Optional ``(k,)`` weights: a row's loss is weighted by ``sum_c w_c p_c``.
    sample_weight
        Optional ``(b,)`` row weights (``0`` masks a row).
    reduction
        ``"mean"`` (weighted mean over rows, normalised by the total weight), ``"sum"`` or
        ``"none"`` (per-row weighted losses).
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    k = logits.shape[-1]
    w = class_weight if class_weight is not None else logits.new_ones(k)
    if targets.dim() == 1:
        known = targets >= 0
        idx = targets.clamp(min=0).long()
        nll = -logp.gather(1, idx[:, None])[:, 0]
        row_w = w[idx] * known.float()
        loss = row_w * nll
    else:
        p = targets.float()
        loss = -(p * w * logp).sum(dim=-1)
        row_w = (p * w).sum(dim=-1)
    if sample_weight is not None:
        loss = loss * sample_weight
        row_w = row_w * sample_weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction != "mean":
        raise ConfigError(f"reduction={reduction!r}; expected 'mean', 'sum' or 'none'")
    total = row_w.sum()
    return loss.sum() / total.clamp(min=1e-12)


# ---------------------------------------------------------------------------- targets
def check_targets(Y: Any, n: int, k: int, name: str = "Y") -> tuple[np.ndarray, np.ndarray]:
    """Validate one task's targets; return them and the mask of rows that carry a label.

    Hard labels: ``(n,)`` ints in ``-1..k-1`` (``-1`` = no label). Soft labels: ``(n, k)``
    non-negative rows summing to 1; a row of NaN or of zeros means no label.
    """
    if isinstance(Y, torch.Tensor):
        Y = Y.detach().cpu().numpy()
    if hasattr(Y, "to_numpy"):
        Y = Y.to_numpy()
    A = np.asarray(Y)
    if A.ndim == 1:
        if A.dtype.kind == "f":
            if not np.all(np.isnan(A) | (np.mod(np.nan_to_num(A), 1) == 0)):
                raise LabelMatrixError(f"{name} is 1-D with fractional values; expected hard "
                                       f"labels 0..{k - 1} (-1 = unknown) or (n, {k}) "
                                       "probabilities")
            A = np.where(np.isnan(A), -1, A)
        A = A.astype(np.int64)
        if A.shape[0] != n:
            raise LabelMatrixError(f"{name} has {A.shape[0]} rows; X has {n}")
        if A.size and (A.min() < -1 or A.max() >= k):
            raise LabelMatrixError(f"{name} contains {int(A.min() if A.min() < -1 else A.max())}"
                                   f"; expected labels 0..{k - 1} or -1 (unknown)")
        return A, A >= 0
    if A.ndim != 2 or A.shape != (n, k):
        raise LabelMatrixError(f"{name} has shape {A.shape}; expected ({n},) hard labels or "
                               f"({n}, {k}) probabilities")
    P = A.astype(np.float32)
    missing: np.ndarray = np.asarray(np.isnan(P).all(axis=1))
    P = np.where(missing[:, None], 0.0, P).astype(np.float32)
    if np.isnan(P).any() or (P < -1e-6).any():
        raise LabelMatrixError(f"{name} has negative or partly-NaN rows; expected "
                               "probabilities (a full row of NaN marks a row with no label)")
    sums = P.sum(axis=1)
    missing |= sums == 0
    bad = ~missing & (np.abs(sums - 1) > 1e-3)
    if bad.any():
        raise LabelMatrixError(f"row {int(np.flatnonzero(bad)[0])} of {name} sums to "
                               f"{sums[bad][0]:.4g}; expected probabilities summing to 1")
    return np.clip(P, 0.0, None), ~missing


def covered_rows(L: Any, n_tasks: int = 1) -> list[np.ndarray]:
    """Per task, which rows have at least one vote in the label matrix ``L``.

    ``L`` is an ``(n, m)`` matrix (dense with ``-1`` abstain, or scipy.sparse storing votes),
    an ``(n, m, t)`` multi-task array, or a dict / list of per-task matrices.
    """
    if isinstance(L, Mapping):
        L = list(L.values())
    if isinstance(L, (list, tuple)):
        if len(L) != n_tasks:
            raise LabelMatrixError(f"L has {len(L)} per-task matrices; expected {n_tasks}")
        return [covered_rows(part, 1)[0] for part in L]
    if sp.issparse(L):
        csr = sp.csr_matrix(L)
        has = np.zeros(csr.shape[0], dtype=bool)
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        has[rows[csr.data != -1]] = True  # explicitly stored -1 still means abstain
        return [has] * n_tasks
    A = np.asarray(L)
    if A.ndim == 2:
        return [(A != -1).any(axis=1)] * n_tasks
    if A.ndim == 3 and A.shape[2] == n_tasks:
        voted = (A != -1).any(axis=1)
        return [voted[:, s] for s in range(n_tasks)]
    raise LabelMatrixError(f"L has shape {A.shape}; expected (n, m) or (n, m, {n_tasks})")


def balanced_class_weight(targets: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """``n / (k * expected count of c)`` over the labeled rows (scikit-learn's "balanced")."""
    if targets.ndim == 1:
        counts = np.bincount(targets[mask], minlength=k).astype(np.float64)
    else:
        counts = targets[mask].sum(axis=0, dtype=np.float64)
    total = counts.sum()
    counts = np.maximum(counts, 1e-3 * max(total, 1.0) / k)  # a class with no mass: cap weight
    return (total / (k * counts)).astype(np.float32)

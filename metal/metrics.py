"""Turning probabilities into predictions, and scoring predictions against gold labels.

Vectorised throughout: no per-row Python loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metal.errors import ConfigError

TIE_BREAKS = ("random", "abstain", "first")
METRICS = ("accuracy", "f1", "precision", "recall", "macro_f1", "coverage")


def probs_to_preds(
    probs: np.ndarray,
    tie_break: str = "random",
    *,
    seed: int = 0,
    tol: float = 1e-5,
) -> np.ndarray:
    """Argmax of each row with an explicit tie policy.

    Parameters
    ----------
    probs
        ``(n, k)`` probabilities.
    tie_break
        ``"random"``: a tied class drawn with a generator seeded by ``seed`` (the same ``seed``
        gives the same draws for every model, so comparisons are fair); ``"abstain"``: ``-1``
        for tied rows; ``"first"``: the lowest tied class.
    tol
        Classes within ``tol`` of the row maximum count as tied.
    """
    if tie_break not in TIE_BREAKS:
        raise ConfigError(f"tie_break={tie_break!r} is not known; expected one of {TIE_BREAKS}")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ConfigError(f"probs has shape {probs.shape}; expected (n, k)")
    top = probs.max(axis=1, keepdims=True)
    tied = probs >= top - tol
    if tie_break == "first":
        return np.argmax(tied, axis=1).astype(np.int64)
    if tie_break == "abstain":
        preds = np.argmax(tied, axis=1).astype(np.int64)
        preds[tied.sum(axis=1) > 1] = -1
        return preds
    keys = np.random.default_rng(seed).random(probs.shape)
    return np.argmax(np.where(tied, keys, -1.0), axis=1).astype(np.int64)


def _f1_parts(Y: np.ndarray, preds: np.ndarray, positive: int) -> tuple[float, float, float]:
    tp = float(np.sum((preds == positive) & (Y == positive)))
    fp = float(np.sum((preds == positive) & (Y != positive)))
    fn = float(np.sum((preds != positive) & (Y == positive)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score_predictions(
    Y: np.ndarray,
    preds: np.ndarray,
    metrics: Sequence[str] = ("accuracy",),
    *,
    cardinality: int | None = None,
    positive: int = 1,
) -> dict[str, float]:
    """Score predictions on the rows whose gold label is known (``Y != -1``).

    A prediction of ``-1`` (abstain) counts as wrong for accuracy and F1; ``coverage`` is the
    fraction of rows with a prediction. ``f1``, ``precision`` and ``recall`` are for class
    ``positive`` (binary tasks); ``macro_f1`` averages F1 over all classes.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metrics {unknown}; expected a subset of {METRICS}")
    Y = np.asarray(Y)
    preds = np.asarray(preds)
    keep = Y != -1
    Y, preds = Y[keep], preds[keep]
    out: dict[str, float] = {}
    if Y.size == 0:
        raise ConfigError("no row has a gold label (all of Y is -1); nothing to score")
    for name in metrics:
        if name == "accuracy":
            out[name] = float(np.mean(preds == Y))
        elif name == "coverage":
            out[name] = float(np.mean(preds != -1))
        elif name in ("f1", "precision", "recall"):
            p, r, f = _f1_parts(Y, preds, positive)
            out[name] = {"f1": f, "precision": p, "recall": r}[name]
        elif name == "macro_f1":
            k = cardinality if cardinality is not None else int(max(Y.max(), preds.max()) + 1)
            out[name] = float(np.mean([_f1_parts(Y, preds, c)[2] for c in range(k)]))
    return out

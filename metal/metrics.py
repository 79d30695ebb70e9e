"""Turning probabilities into predictions, and scoring predictions against gold labels.

Vectorised throughout: no per-row Python loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from metal._validate import check_choice, check_float, check_int, check_seed
from metal.errors import ConfigError, LabelMatrixError

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
    check_choice("tie_break", tie_break, TIE_BREAKS)
    seed = check_seed(seed)
    tol = check_float("tol", tol, low=0.0)
    try:
        probs = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"probs is not a numeric array ({exc}); expected (n, k) "
                          "probabilities") from None
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ConfigError(f"probs has shape {probs.shape}; expected (n, k)")
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():  # argmax of a NaN row would silently be class 0
        raise ConfigError(f"probs has {int(bad.sum())} rows with NaN or infinite entries (first: "
                          f"row {int(np.flatnonzero(bad)[0])}); expected finite probabilities. "
                          "Check the model or file that produced them")
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


def _labels_1d(values: Any, name: str, fix: str) -> np.ndarray:
    """A 1-D array of integer labels >= -1 (NaN, fractions and other dtypes refused)."""
    from metal.matrix import as_integer_labels

    try:
        arr = np.asarray(values)
    except ValueError as exc:
        raise LabelMatrixError(f"{name} is ragged ({exc}); expected a 1-D array of labels") \
            from None
    if arr.ndim != 1:
        raise LabelMatrixError(f"{name} has shape {arr.shape}; expected a 1-D array of labels, "
                               "one per row")
    arr = as_integer_labels(arr, name, fix)
    if arr.size and arr.min() < -1:
        raise LabelMatrixError(f"{name} contains the value {int(arr.min())}; expected -1 or a "
                               f"class 0..k-1. {fix}")
    return arr.astype(np.int64, copy=False)


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
    Y = _labels_1d(Y, "Y", "Use -1 for rows without a gold label.")
    preds = _labels_1d(preds, "preds", "Predictions are class indices (-1 = abstain).")
    if Y.shape != preds.shape:
        raise ConfigError(f"Y has {Y.shape[0]} labels and preds has {preds.shape[0]}; expected "
                          "one prediction per gold label, for the same rows in the same order")
    if cardinality is not None:
        cardinality = check_int("cardinality", cardinality, low=2)
        top = max(int(Y.max(initial=-1)), int(preds.max(initial=-1)))
        if top >= cardinality:
            raise ConfigError(f"the labels go up to {top}; expected 0..{cardinality - 1} "
                              f"(cardinality={cardinality}). Raise cardinality or remap labels")
    positive = check_int("positive", positive, low=0)
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

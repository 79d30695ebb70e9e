"""Plots of source diagnostics and of probabilistic labels, saved as PNG.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so
nothing here touches pyplot's global state or the user's chosen backend.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metal.errors import ConfigError
from metal.matrix import check_gold


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=120)
    return fig


def _need(summary: pd.DataFrame, columns: list[str], hint: str) -> None:
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise ConfigError(f"the summary has no column(s) {missing}; {hint}")


def plot_coverage_accuracy(summary: pd.DataFrame,
                           path: str | os.PathLike[str] | None = None) -> Figure:
    """Horizontal bars per source: coverage, and the accuracies present in ``summary``.

    Parameters
    ----------
    summary
        Output of :func:`metal.labeling.analysis.lf_summary`.
    path
        Where to save the PNG (optional).
    """
    _need(summary, ["coverage"], "pass the output of lf_summary")
    acc_cols = [c for c in ("emp_acc", "learned_acc") if c in summary.columns]
    names = [str(n) for n in summary.index]
    m = len(names)
    height = max(2.5, 0.3 * m + 1.2)
    fig = Figure(figsize=(10 if acc_cols else 5.5, height))
    y = np.arange(m)
    ax = fig.add_subplot(1, 2 if acc_cols else 1, 1)
    ax.barh(y, summary["coverage"].to_numpy(), color="#4C72B0")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("coverage (fraction of rows with a vote)")
    ax.set_title("Coverage")
    if acc_cols:
        ax2 = fig.add_subplot(1, 2, 2, sharey=ax)
        width = 0.8 / len(acc_cols)
        colors = {"emp_acc": "#55A868", "learned_acc": "#C44E52"}
        labels = {"emp_acc": "empirical (gold)", "learned_acc": "learned (model)"}
        for j, col in enumerate(acc_cols):
            ax2.barh(y - 0.4 + width * (j + 0.5), summary[col].to_numpy(dtype=float),
                     height=width, color=colors[col], label=labels[col])
        ax2.set_xlim(0, 1)
        ax2.set_xlabel("accuracy of the source's votes")
        ax2.set_title("Accuracy")
        ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small")
        ax2.tick_params(labelleft=False)
    return _finish(fig, path)


def plot_accuracy_scatter(summary: pd.DataFrame,
                          path: str | os.PathLike[str] | None = None) -> Figure:
    """Learned accuracy (model, no labels) against empirical accuracy (gold), one dot per source.

    Points on the diagonal are sources whose accuracy the model recovered exactly.
    """
    _need(summary, ["emp_acc", "learned_acc"],
          "compute it with lf_summary(L, Y, model=fitted_model)")
    emp = summary["emp_acc"].to_numpy(dtype=float)
    learned = summary["learned_acc"].to_numpy(dtype=float)
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="y = x")
    ax.scatter(emp, learned, color="#C44E52", zorder=3)
    if len(summary) <= 30:  # names stay readable up to a few dozen sources
        for name, xv, yv in zip(summary.index, emp, learned, strict=True):
            if np.isfinite(xv) and np.isfinite(yv):
                ax.annotate(str(name), (xv, yv), textcoords="offset points", xytext=(4, 4),
                            fontsize="small")
    ok = np.isfinite(emp) & np.isfinite(learned)
    mae = float(np.mean(np.abs(emp[ok] - learned[ok]))) if ok.any() else float("nan")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("empirical accuracy (gold labels)")
    ax.set_ylabel("learned accuracy (label model)")
    ax.set_title(f"Learned vs empirical accuracy (mean |diff| {mae:.3f})")
    ax.legend(loc="lower right")
    return _finish(fig, path)


def calibration_table(probs: Any, Y: Any, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table of probabilistic labels: per confidence bin, mean confidence and accuracy.

    The confidence of a row is its highest probability and the prediction its argmax (lowest
    class on ties); rows with ``Y == -1`` are skipped.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ConfigError(f"probs has shape {p.shape}; expected (n, k) probabilities")
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"n_bins={n_bins!r} must be a positive int")
    Y = check_gold(Y, p.shape[0], p.shape[1])
    keep = Y >= 0
    if not keep.any():
        raise ConfigError("no row has a gold label (all of Y is -1); nothing to calibrate")
    p, Y = p[keep], Y[keep]
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == Y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / count
        acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return pd.DataFrame({"low": edges[:-1], "high": edges[1:], "count": count,
                         "confidence": mean_conf, "accuracy": acc})


def expected_calibration_error(probs: Any, Y: Any, n_bins: int = 10) -> float:
    """Row-weighted mean ``|accuracy - confidence|`` over the bins of :func:`calibration_table`."""
    t = calibration_table(probs, Y, n_bins)
    used = t["count"] > 0
    w = t.loc[used, "count"] / t.loc[used, "count"].sum()
    return float((w * (t.loc[used, "accuracy"] - t.loc[used, "confidence"]).abs()).sum())


def plot_calibration(probs: Any, Y: Any, path: str | os.PathLike[str] | None = None,
                     n_bins: int = 10) -> Figure:
    """Reliability diagram of probabilistic labels against gold, with the ECE in the title."""
    t = calibration_table(probs, Y, n_bins)
    ece = expected_calibration_error(probs, Y, n_bins)
    k = np.asarray(probs).shape[1]
    fig = Figure(figsize=(5.5, 6.5))
    ax = fig.add_subplot(2, 1, 1)
    used = t["count"].to_numpy() > 0
    centers = (t["low"] + t["high"]).to_numpy() / 2
    width = float(t["high"].iloc[0] - t["low"].iloc[0])
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    ax.bar(centers[used], t["accuracy"].to_numpy()[used], width=width * 0.9, color="#4C72B0",
           alpha=0.8, label="accuracy in bin")
    ax.plot(t["confidence"].to_numpy()[used], t["accuracy"].to_numpy()[used], "o",
            color="#C44E52", label="(mean confidence, accuracy)")
    ax.set_xlim(1.0 / k - 0.02 if k > 1 else 0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Calibration of probabilistic labels (ECE {ece:.3f})")
    ax.legend(loc="upper left", fontsize="small")
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax)
    ax2.bar(centers, t["count"].to_numpy(), width=width * 0.9, color="#8C8C8C")
    ax2.set_xlabel("confidence (highest probability of the row)")
    ax2.set_ylabel("rows")
    return _finish(fig, path)

"""Per-source diagnostics of a label matrix: polarity, coverage, overlaps, conflicts, accuracy.

Everything is computed in one chunked pass over the votes (dense or sparse ``L``), with sparse
per-row class counts; no dense one-hot matrix is built.

Definitions (``n`` rows, source ``i``):

* **polarity**: the sorted list of labels the source emits.
* **coverage**: fraction of rows on which the source votes.
* **overlaps**: fraction of rows on which the source votes *and* some other source votes.
* **conflicts**: fraction of rows on which the source votes and some other source votes a
  *different* label.
* With gold ``Y`` (``-1`` = unknown, such rows are skipped): **correct** / **incorrect**
  votes, and **emp_acc** = correct / (correct + incorrect) (NaN if it never voted there).
* With a fitted model exposing ``get_accuracies()``: **learned_acc**, the model's estimate of
  ``P(vote correct | vote)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from metal.errors import ConfigError
from metal.matrix import LabelInput, as_integer_labels, check_gold, check_label_matrix


def _names(m: int, names: Sequence[Any] | None) -> list[str]:
    if names is None:
        return [str(i) for i in range(m)]
    out = [getattr(n, "name", n) for n in names]  # LabelingFunction objects or strings
    if len(out) != m:
        raise ConfigError(f"{len(out)} source names for a label matrix with {m} sources; pass "
                          "one name per column, in column order")
    return [str(n) for n in out]


class _Counts:
    """Per-source counts gathered in one pass."""

    def __init__(self, L: LabelInput, Y: Any | None) -> None:
        lm = check_label_matrix(L)
        self.n_rows, self.m = lm.n_rows, lm.n_sources
        if Y is not None:
            Y = as_integer_labels(np.asarray(Y), "Y", "Use -1 for rows without a gold label.")
            Y = check_gold(Y, lm.n_rows,
                           cardinality=max(lm.max_label, int(np.max(Y, initial=-1))) + 1)
        # per-chunk counters are over the labels present in the chunk (compressed), so a label
        # of 10^9 costs nothing more than a label of 1
        pairs: list[np.ndarray] = []
        self.votes = np.zeros(self.m, dtype=np.int64)
        self.overlaps = np.zeros(self.m, dtype=np.int64)
        self.conflicts = np.zeros(self.m, dtype=np.int64)
        self.correct = np.zeros(self.m, dtype=np.int64)
        self.incorrect = np.zeros(self.m, dtype=np.int64)
        self.rows_covered = 0
        self.rows_overlapped = 0
        self.rows_conflicted = 0
        for chunk in lm.iter_votes():
            rows = chunk.rows - chunk.start
            n_chunk = chunk.stop - chunk.start
            # (rows, labels present) vote counts of this chunk, never n x m x k
            labels, code = np.unique(chunk.values, return_inverse=True)
            k = max(labels.size, 1)
            per_class = np.bincount(rows * k + code, minlength=n_chunk * k).reshape(n_chunk, k)
            total = per_class.sum(axis=1)
            same = per_class[rows, code]
            pairs.append(np.unique(chunk.cols * (lm.max_label + 1) + chunk.values))
            self.votes += np.bincount(chunk.cols, minlength=self.m)
            self.overlaps += np.bincount(chunk.cols, weights=total[rows] > 1,
                                         minlength=self.m).astype(np.int64)
            self.conflicts += np.bincount(chunk.cols, weights=same < total[rows],
                                          minlength=self.m).astype(np.int64)
            n_classes_voted = np.count_nonzero(per_class, axis=1)  # distinct labels per row
            self.rows_covered += int(np.count_nonzero(total))
            self.rows_overlapped += int(np.count_nonzero(total > 1))
            self.rows_conflicted += int(np.count_nonzero(n_classes_voted > 1))
            if Y is not None:
                gold = Y[chunk.rows]
                known = gold >= 0
                hit = known & (gold == chunk.values)
                self.correct += np.bincount(chunk.cols[hit], minlength=self.m)
                self.incorrect += np.bincount(chunk.cols[known & ~hit], minlength=self.m)
        width = lm.max_label + 1
        emitted = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, np.int64)
        src = emitted // max(width, 1)
        cuts = np.searchsorted(src, np.arange(self.m + 1))
        #: sorted labels each source emits
        self.emits: list[list[int]] = [(emitted[cuts[i]:cuts[i + 1]] % width).tolist()
                                       for i in range(self.m)]


def lf_polarities(L: LabelInput) -> list[list[int]]:
    """Sorted labels each source emits."""
    c = _Counts(L, None)
    return c.emits


def lf_coverages(L: LabelInput) -> np.ndarray:
    """``(m,)`` fraction of rows each source votes on."""
    c = _Counts(L, None)
    return c.votes / c.n_rows


def lf_overlaps(L: LabelInput) -> np.ndarray:
    """``(m,)`` fraction of rows where the source and at least one other source vote."""
    c = _Counts(L, None)
    return c.overlaps / c.n_rows


def lf_conflicts(L: LabelInput) -> np.ndarray:
    """``(m,)`` fraction of rows where the source votes and another source votes differently."""
    c = _Counts(L, None)
    return c.conflicts / c.n_rows


def lf_empirical_accuracies(L: LabelInput, Y: Any) -> np.ndarray:
    """``(m,)`` accuracy of each source's votes on rows with a gold label (NaN: no such vote)."""
    c = _Counts(L, Y)
    seen = c.correct + c.incorrect
    return np.divide(c.correct, seen, out=np.full(c.m, np.nan), where=seen > 0)


def label_coverage(L: LabelInput) -> float:
    """Fraction of rows with at least one vote."""
    c = _Counts(L, None)
    return c.rows_covered / c.n_rows


def label_overlap(L: LabelInput) -> float:
    """Fraction of rows with at least two votes."""
    c = _Counts(L, None)
    return c.rows_overlapped / c.n_rows


def label_conflict(L: LabelInput) -> float:
    """Fraction of rows with at least two different labels among their votes."""
    c = _Counts(L, None)
    return c.rows_conflicted / c.n_rows


def lf_summary(
    L: LabelInput,
    Y: Any | None = None,
    *,
    names: Sequence[Any] | None = None,
    model: Any | None = None,
) -> pd.DataFrame:
    """One row per source: polarity, coverage, overlaps, conflicts (+ accuracy columns).

    Parameters
    ----------
    L
        ``(n, m)`` label matrix (dense ``-1``-padded or sparse storing votes only). For a
        multi-task dict from an applier, call this once per task.
    Y
        Optional gold labels (``-1`` = unknown); adds ``correct``, ``incorrect``, ``emp_acc``.
    names
        Source names or :class:`~metal.labeling.lf.LabelingFunction` objects, in column order.
    model
        Optional fitted label model with ``get_accuracies()`` (e.g. ``LabelModel``,
        ``DawidSkene``); adds ``learned_acc``.

    Returns
    -------
    pandas.DataFrame
        Indexed by source name; see the module docstring for the definitions.

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[0, 0, -1], [1, 0, -1], [-1, 1, 1], [-1, -1, -1]])
    >>> summary = lf_summary(L, names=["a", "b", "c"])
    >>> summary["coverage"].tolist(), summary["conflicts"].tolist()
    ([0.5, 0.75, 0.25], [0.25, 0.25, 0.0])
    """
    c = _Counts(L, Y)
    index = _names(c.m, names)
    table: dict[str, Any] = {
        "polarity": c.emits,
        "coverage": c.votes / c.n_rows,
        "overlaps": c.overlaps / c.n_rows,
        "conflicts": c.conflicts / c.n_rows,
    }
    if Y is not None:
        seen = c.correct + c.incorrect
        table["correct"] = c.correct
        table["incorrect"] = c.incorrect
        table["emp_acc"] = np.divide(c.correct, seen, out=np.full(c.m, np.nan), where=seen > 0)
    if model is not None:
        if not hasattr(model, "get_accuracies"):
            raise ConfigError(f"model is a {type(model).__name__}, which has no get_accuracies();"
                              " pass a fitted LabelModel or DawidSkene")
        acc = np.asarray(model.get_accuracies(), dtype=np.float64)
        if acc.shape != (c.m,):
            raise ConfigError(f"model has accuracies for {acc.size} sources; L has {c.m}. Pass "
                              "the model fitted on these sources")
        table["learned_acc"] = acc
    return pd.DataFrame(table, index=pd.Index(index, name="source"))

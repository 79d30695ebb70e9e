"""Entity-level (span) precision, recall and F1: exact span and type match, as in seqeval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from metal.errors import LabelMatrixError
from metal.sequence.tags import TagScheme, check_offsets, extract_spans


@dataclass(frozen=True)
class SpanScores:
    """Span metrics: micro P/R/F1 over all types, per-type P/R/F1 and sentence exact match.

    ``exact_match`` is the share of sentences whose predicted span set equals the gold set.
    """

    precision: float
    recall: float
    f1: float
    n_true: int
    n_pred: int
    n_correct: int
    exact_match: float
    per_type: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "n_true": self.n_true, "n_pred": self.n_pred, "n_correct": self.n_correct,
                "exact_match": self.exact_match, "per_type": self.per_type}


def _prf(correct: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def span_scores(Y_true: np.ndarray | Sequence[int], Y_pred: np.ndarray | Sequence[int],
                offsets: np.ndarray | Sequence[int],
                tag_names: Sequence[str] | TagScheme) -> SpanScores:
    """Score predicted tags against gold tags at the entity level.

    Parameters
    ----------
    Y_true, Y_pred
        ``(n_tokens,)`` tag indices. Tokens with gold ``-1`` (unknown) are not allowed: score
        only sentences with gold.
    offsets
        ``(n_sentences + 1,)`` sentence boundaries.
    tag_names
        The tags (or a :class:`TagScheme`).

    Examples
    --------
    >>> tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    >>> s = span_scores([1, 2, 0, 3], [1, 0, 0, 3], [0, 4], tags)
    >>> s.precision, s.recall, s.f1, s.per_type["LOC"]["f1"]
    (0.5, 0.5, 0.5, 1.0)
    """
    scheme = tag_names if isinstance(tag_names, TagScheme) else TagScheme.from_tags(tag_names)
    yt = np.asarray(Y_true, dtype=np.int64)
    yp = np.asarray(Y_pred, dtype=np.int64)
    if yt.shape != yp.shape or yt.ndim != 1:
        raise LabelMatrixError(f"Y_true has shape {yt.shape} and Y_pred {yp.shape}; expected "
                               "two (n_tokens,) arrays")
    k = scheme.n_tags
    for name, y in (("Y_true", yt), ("Y_pred", yp)):
        if y.size and (y.min() < 0 or y.max() >= k):
            raise LabelMatrixError(f"{name} holds tag {int(y.min() if y.min() < 0 else y.max())}"
                                   f"; expected 0..{k - 1}. Score only sentences with gold.")
    off = check_offsets(offsets, yt.size)
    n, t = yt.size, len(scheme.types)
    gold, pred = extract_spans(yt, off, scheme), extract_spans(yp, off, scheme)
    gk, pk = gold.keys(n, t), pred.keys(n, t)
    hit = np.isin(pk, gk)
    per_type: dict[str, dict[str, float]] = {}
    for i, name in enumerate(scheme.types):
        c = int(hit[pred.type == i].sum())
        np_, nt = int((pred.type == i).sum()), int((gold.type == i).sum())
        p, r, f = _prf(c, np_, nt)
        per_type[name] = {"precision": p, "recall": r, "f1": f, "support": float(nt)}
    correct = int(hit.sum())
    p, r, f = _prf(correct, len(pred), len(gold))
    # sentence exact match: a sentence matches iff it has no unmatched gold or predicted span
    n_sent = off.size - 1
    sent_of = np.searchsorted(off, np.arange(n), side="right") - 1
    bad = np.zeros(n_sent, dtype=bool)
    bad[sent_of[pred.start[~hit]]] = True
    bad[sent_of[gold.start[~np.isin(gk, pk)]]] = True
    exact = float(1.0 - bad.mean()) if n_sent else 0.0
    return SpanScores(precision=p, recall=r, f1=f, n_true=len(gold), n_pred=len(pred),
                      n_correct=correct, exact_match=exact, per_type=per_type)

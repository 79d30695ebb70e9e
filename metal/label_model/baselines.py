"""Baselines with the label-model interface."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from metal.label_model.base import BaseLabelModel, check_cardinality, check_class_balance
from metal.matrix import DEFAULT_CHUNK_ROWS, LabelInput, check_label_matrix


def vote_counts(
    L: LabelInput, cardinality: int, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> np.ndarray:
    """``(n, k)`` number of votes for each class in each row (sparse accumulation, no loops)."""
    lm = check_label_matrix(L, cardinality=cardinality)
    out = np.zeros((lm.n_rows, cardinality), dtype=np.float64)
    for chunk in lm.iter_votes(chunk_rows):
        block = sp.csr_matrix(
            (np.ones(chunk.rows.size), (chunk.rows - chunk.start, chunk.values)),
            shape=(chunk.stop - chunk.start, cardinality),
        )
        out[chunk.start : chunk.stop] = block.toarray()
    return out


class MajorityVoter(BaseLabelModel):
    """Majority vote of the non-abstaining sources.

    ``predict_proba`` is the vote share of each class; a row without votes gets
    ``class_balance`` (uniform by default). ``fit`` learns nothing; it exists so the voter is a
    drop-in replacement for a label model.

    Examples
    --------
    >>> import numpy as np
    >>> from metal import MajorityVoter
    >>> L = np.array([[0, 0, 1], [1, -1, 1], [-1, -1, -1]])
    >>> MajorityVoter(cardinality=2).predict(L, tie_break="first").tolist()
    [0, 1, 0]
    """

    def __init__(
        self, cardinality: int = 2, *, class_balance: np.ndarray | None = None, seed: int = 0
    ) -> None:
        self.cardinality = cardinality
        self.class_balance = class_balance
        self.seed = seed

    def fit(self, L: LabelInput, *args: object, **kwargs: object) -> MajorityVoter:
        check_cardinality(self.cardinality)
        check_label_matrix(L, cardinality=self.cardinality)
        return self

    def predict_proba(self, L: LabelInput) -> np.ndarray:
        k = check_cardinality(self.cardinality)
        prior = (
            np.full(k, 1.0 / k)
            if self.class_balance is None
            else check_class_balance(self.class_balance, k)
        )
        counts = vote_counts(L, k)
        total = counts.sum(axis=1, keepdims=True)
        return np.where(total > 0, counts / np.maximum(total, 1.0), prior[None, :])

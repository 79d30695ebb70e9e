"""Dawid-Skene (1979): EM over per-source confusion matrices, the classic crowdsourcing baseline.

Each source (crowd worker) ``i`` has a confusion matrix ``P(lambda_i = v | Y = y, i votes)``;
given ``Y`` the votes are independent. EM alternates the posterior over ``Y`` for each item
(E-step) and confusion matrices / class balance re-estimated from the soft counts (M-step).
Votes enter through a sparse ``(n, m*k)`` indicator matrix with one stored entry per vote, so
each iteration costs two sparse products; everything is in log space.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from metal._io import load_arrays, save_arrays
from metal._validate import (
    check_float,
    check_int,
    check_label_model_size,
    check_seed,
    warn_unvoted_classes,
)
from metal.errors import ConfigError, LabelMatrixError
from metal.label_model.base import (
    BaseLabelModel,
    balance_from_gold,
    check_cardinality,
    check_class_balance,
)
from metal.matrix import LabelInput, LabelMatrix, check_label_matrix


def _indicators(lm: LabelMatrix, k: int) -> sp.csr_matrix:
    """``(n, m*k)`` sparse 0/1 matrix: entry ``(r, i*k + v)`` is 1 when source ``i`` voted ``v``."""
    rows, cols = [], []
    for chunk in lm.iter_votes():
        rows.append(chunk.rows)
        cols.append(chunk.cols * k + chunk.values)
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(r.size), (r, c)), shape=(lm.n_rows, lm.n_sources * k))


# DawidSkene refuses data where fewer than this share of the votes come from sources that
# emit several values (labeling functions are mostly unipolar)
MIN_MULTI_VALUED_SHARE = 0.5


def check_multi_valued(counts: np.ndarray) -> None:
    """Refuse label matrices whose votes come mostly from single-valued (unipolar) sources.

    ``counts[i, v]`` is the number of votes of source ``i`` for value ``v``. Dawid-Skene models
    ``P(vote | class, the source voted)``; a source that only ever emits one value has that
    probability 1 under every class, so its votes carry no evidence and EM drifts (youtube 0.53,
    trec 0.28 on the WRENCH sets).
    """
    total = float(counts.sum())
    multi = (counts > 0).sum(axis=1) > 1
    share = float(counts[multi].sum() / total) if total > 0 else 0.0
    if share < MIN_MULTI_VALUED_SHARE:
        n_uni = int(((counts > 0).sum(axis=1) == 1).sum())
        raise LabelMatrixError(
            f"{n_uni} of {counts.shape[0]} sources emit a single value and cast "
            f"{1 - share:.0%} of the votes; DawidSkene models P(vote | class, voted), under "
            "which such a source's vote is certain whatever the class, so it carries no "
            "evidence (expected at least "
            f"{MIN_MULTI_VALUED_SHARE:.0%} of the votes from sources that emit several "
            "values, as crowd workers do). Use metal.LabelModel, which models when a source "
            "fires, for labeling-function outputs.")


class DawidSkene(BaseLabelModel):
    """Dawid-Skene label model fitted by EM, with the same interface as ``LabelModel``.

    Meant for crowd data, where every worker answers with several values: ``fit`` refuses a
    label matrix whose votes come mostly from sources that emit one value only (labeling
    functions), pointing to :class:`metal.LabelModel`.

    Parameters
    ----------
    cardinality
        Number of classes ``k``.
    max_iter
        Maximum number of EM iterations.
    tol
        Stop when the mean per-item log-likelihood improves by less than ``tol``.
    alpha
        Dirichlet pseudo-count added to every confusion-matrix cell (and to the class
        counts), so no probability is ever exactly 0 and a rare worker stays uncertain.
    seed
        Seed for random tie breaks in :meth:`predict` (EM itself is deterministic: it starts
        from the majority vote).

    Attributes
    ----------
    confusion_ : ndarray of shape (m, k, k)
        ``[i, v, y] = P(lambda_i = v | Y = y, source i votes)``.
    class_balance_ : ndarray of shape (k,)
    n_iter_ : int
    log_likelihood_ : float
        Mean per-item log-likelihood of the votes at the end of the fit.

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[0, 0, 1], [1, 1, 1], [0, 0, -1], [1, -1, 1]])
    >>> DawidSkene(cardinality=2).fit(L).predict(L).tolist()
    [0, 1, 0, 1]
    """

    def __init__(self, cardinality: int = 2, *, max_iter: int = 100, tol: float = 1e-6,
                 alpha: float = 0.01, seed: int = 0) -> None:
        self.cardinality = cardinality
        self.max_iter = max_iter
        self.tol = tol
        self.alpha = alpha
        self.seed = seed

    def _check_params(self) -> int:
        k = check_cardinality(self.cardinality)
        check_int("max_iter", self.max_iter, low=1)
        check_float("tol", self.tol, low=0.0, low_open=True)
        check_float("alpha", self.alpha, low=0.0)  # a pseudo-count
        check_seed(self.seed)
        return k

    def fit(self, L: LabelInput, class_balance: Any = None, Y_dev: Any = None) -> DawidSkene:
        """Run EM on the label matrix ``L`` (``-1`` abstain, dense or sparse); returns ``self``.

        Parameters
        ----------
        L
            ``(n, m)`` label matrix.
        class_balance
            ``(k,)`` prior ``P(Y)`` to keep fixed instead of re-estimating it.
        Y_dev
            Gold labels of a small labeled set, used only to fix the class balance.
        """
        k = self._check_params()
        lm = check_label_matrix(L, cardinality=k)
        check_label_model_size(lm.n_sources, k)
        if not lm.has_votes:
            raise LabelMatrixError("L contains no vote at all (every entry is -1); expected at "
                                   "least some votes. Check that your sources were applied.")
        if class_balance is not None and Y_dev is not None:
            raise ConfigError("pass class_balance or Y_dev, not both")
        fixed_p: np.ndarray | None = None
        if class_balance is not None:
            fixed_p = check_class_balance(class_balance, k)
        elif Y_dev is not None:
            fixed_p = balance_from_gold(Y_dev, k)
        A = _indicators(lm, k)
        counts = np.asarray(A.sum(axis=0)).reshape(lm.n_sources, k)  # votes per (source, value)
        check_multi_valued(counts)
        warn_unvoted_classes(counts.sum(axis=0) > 0, stacklevel=2)
        # Initialise the posterior with the majority vote (vote shares; no vote -> uniform).
        share = np.asarray(A @ np.tile(np.eye(k), (lm.n_sources, 1)))  # votes per class per row
        total = share.sum(axis=1, keepdims=True)
        T = np.where(total > 0, share / np.maximum(total, 1), 1.0 / k)
        ll_prev = -np.inf
        n_iter = 0
        while n_iter < int(self.max_iter):
            n_iter += 1
            log_conf, log_p = self._m_step(A, T, lm.n_sources, k)
            if fixed_p is not None:
                log_p = np.log(fixed_p)
            scores = A @ log_conf + log_p[None, :]
            norm = logsumexp(scores, axis=1, keepdims=True)
            T = np.exp(scores - norm)
            ll = float(norm.mean())
            if ll - ll_prev < self.tol:
                break
            ll_prev = ll
        self.confusion_ = np.exp(log_conf).reshape(lm.n_sources, k, k)
        self.class_balance_ = np.exp(log_p)
        self.n_sources_ = lm.n_sources
        self.n_iter_ = n_iter
        self.log_likelihood_ = ll
        self.vote_counts_ = counts
        return self

    def _m_step(self, A: sp.csr_matrix, T: np.ndarray, m: int, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
        soft = np.asarray(A.T @ T).reshape(m, k, k) + self.alpha  # [i, v, y] soft counts
        denom = soft.sum(axis=1, keepdims=True)  # per (source, true class)
        log_conf = np.log(soft) - np.log(np.maximum(denom, 1e-300))
        p = T.sum(axis=0) + self.alpha
        return log_conf.reshape(m * k, k), np.log(p / p.sum())

    def predict_log_proba(self, L: LabelInput) -> np.ndarray:
        """``(n, k)`` log posterior ``log P(Y = y | votes)``; rows without votes get the prior."""
        self._check_fitted()
        k = int(self.cardinality)
        lm = check_label_matrix(L, cardinality=k, n_sources=self.n_sources_)
        A = _indicators(lm, k)
        log_conf = np.log(np.maximum(self.confusion_, 1e-300)).reshape(-1, k)
        scores = A @ log_conf + np.log(self.class_balance_)[None, :]
        return np.asarray(scores - logsumexp(scores, axis=1, keepdims=True))

    def predict_proba(self, L: LabelInput) -> np.ndarray:
        """``(n, k)`` posterior ``P(Y = y | votes)``; rows sum to 1."""
        return np.exp(self.predict_log_proba(L))

    def get_accuracies(self) -> np.ndarray:
        """``(m,)`` probability that a source's vote is correct, given that it votes."""
        self._check_fitted()
        return np.einsum("iyy,y->i", self.confusion_, self.class_balance_)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted model (``.npz`` with a JSON header; no pickle)."""
        self._check_fitted()
        params = {"cardinality": int(self.cardinality), "max_iter": int(self.max_iter),
                  "tol": float(self.tol), "alpha": float(self.alpha), "seed": int(self.seed)}
        save_arrays(path, "DawidSkene", params, {
            "confusion": self.confusion_, "class_balance": self.class_balance_,
            "vote_counts": self.vote_counts_})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DawidSkene:
        """Load a model written by :meth:`save`."""
        params, arrays = load_arrays(path, "DawidSkene")
        model = cls(**params)
        model.confusion_ = arrays["confusion"]
        model.class_balance_ = arrays["class_balance"]
        model.vote_counts_ = arrays["vote_counts"]
        model.n_sources_ = int(model.confusion_.shape[0])
        return model

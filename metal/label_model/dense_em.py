"""EM over the rows of a dense integer label matrix, without building its one-hot matrix.

:func:`metal.label_model.em.fit_em` reads the votes as a sparse one-hot matrix ``A`` (one
stored entry per vote). For a dense ``(n, m)`` matrix with few indicators (``m*k`` at most
:data:`~metal.label_model.dense.MAX_DENSE_INDICATORS`) whose rows are nearly all distinct, building
``A`` costs more than an EM iteration, and each iteration reads it twice. Here one pass over
``L`` per iteration does both steps with the integer kernels of :mod:`metal.label_model.dense`:

* E-step: the per-class scores of a block are an exact integer product of its ``int8``
  indicators with the fixed-point log tables (:class:`~metal.label_model.dense.DenseScorer`);
* M-step: the expected counts ``X^T P`` of the same block are again an integer product, of the
  indicators with the posterior ``P`` written in fixed point (:data:`POSTERIOR_BITS` bits as
  base-128 digits, so each digit fits ``int8``). The rounding error is below ``2^-29`` per row
  and class, unbiased, against expected counts of order ``n``.

The symbols, the pseudo-counts and the M-step are those of :func:`fit_em` (symbol ``i*k + v`` is
source ``i`` voting ``v``; abstain is implicit or not modelled), with unit row weights and a
warm start (tables, not a posterior): the final fit on all rows after the label-free rule has
fitted the same model on a sample of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metal.errors import ConfigError
from metal.label_model.dense import DenseScorer, _operand, _product, block_rows, dense_applicable
from metal.label_model.em import (
    EMResult,
    FixedPointStop,
    _log_prior_terms,
    _source_sum,
    m_step_from_counts,
    prior_from_mass,
)

__all__ = ["POSTERIOR_BITS", "fit_em_dense"]

# the posterior of a row and class is written as round(p * (2^28 - 1)): four base-128 digits
DIGIT_BITS = 7
N_DIGITS = 4
POSTERIOR_BITS = DIGIT_BITS * N_DIGITS
_SCALE = float(2**POSTERIOR_BITS - 1)


class _CountPass:
    """Gathers ``X^T P`` and ``P.sum(0)`` over the blocks of one pass (class 0 derived)."""

    def __init__(self, n_sources: int, k: int, rows: int) -> None:
        self.m, self.k = n_sources, k
        # digit rows: (class y >= 1, digit d) at (y - 1) * N_DIGITS + d, then one row of ones
        self.n_cols = (k - 1) * N_DIGITS + 1
        self.digits = np.empty((self.n_cols, rows), dtype=np.int8)
        self.digits[-1] = 1  # the ones row: never overwritten
        self.q = np.empty((k - 1, rows), dtype=np.int32)
        self.shifted = np.empty((k - 1, rows), dtype=np.int32)
        self.scaled = np.empty((k - 1, rows))
        self.inv = np.empty(rows)
        self.prod = np.empty((self.n_cols, n_sources), dtype=np.int32)
        self.sums = np.zeros((k, self.n_cols, n_sources), dtype=np.int64)  # [v, col, i]
        self.mass = np.zeros(k)
        self._ops = (_operand(self.digits), _operand(self.prod))

    def add(self, X: np.ndarray, E: np.ndarray, total: np.ndarray, X_op: Any = None) -> None:
        """One block: ``X`` ``(k, r, m)`` indicators and the posterior ``E / total`` (``E``
        ``(k, r)`` class-major, ``total`` ``(r,)``), each row scaled once, not divided first.
        ``X_op``: ``X`` already wrapped as a product operand (else it is wrapped here)."""
        k, r = self.k, E.shape[1]
        inv = np.divide(1.0, total, out=self.inv[:r])
        self.mass += E @ inv
        inv *= _SCALE
        q = self.q[:, :r]
        np.rint(np.multiply(E[1:], inv, out=self.scaled[:, :r]), out=q, casting="unsafe")
        op_d, op_p = self._ops
        if r == self.digits.shape[1]:
            D = self.digits
        else:  # a last, shorter block: a contiguous buffer of its size
            D = np.empty((self.n_cols, r), dtype=np.int8)
            D[-1] = 1
            op_d = _operand(D)
        per_class = D[:-1].reshape(k - 1, N_DIGITS, r)  # [y - 1, d]
        shifted = self.shifted[:, :r]
        low = 2**DIGIT_BITS - 1
        for d in range(N_DIGITS):  # all classes at once, digit by digit
            if d == 0:  # no shift
                np.bitwise_and(q, low, out=per_class[:, d], casting="unsafe")
            elif d == N_DIGITS - 1:  # 0 <= q < 2^POSTERIOR_BITS: the top digit needs no mask
                np.right_shift(q, DIGIT_BITS * d, out=per_class[:, d], casting="unsafe")
            else:
                np.right_shift(q, DIGIT_BITS * d, out=shifted)
                np.bitwise_and(shifted, low, out=per_class[:, d], casting="unsafe")
        op_x = _operand(X) if X_op is None else X_op
        for v in range(k):
            _product(op_d, op_x[v], op_p)
            self.sums[v] += self.prod

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Expected ``(m*k, k)`` symbol counts and ``(k,)`` state counts of the pass."""
        m, k = self.m, self.k
        place = DIGIT_BITS * np.arange(N_DIGITS)
        weights = np.ldexp(1.0, place) / _SCALE
        counts = np.empty((m, k, k))  # [i, v, y]
        votes = self.sums[:, -1, :].T.astype(np.float64)  # [i, v]: the ones row
        per_digit = self.sums[:, :-1, :].reshape(k, k - 1, N_DIGITS, m).astype(np.float64)
        counts[:, :, 1:] = np.einsum("vydi,d->ivy", per_digit, weights)
        # the classes' posteriors sum to 1 on every row: class 0 gets the rest of each vote
        counts[:, :, 0] = np.maximum(votes - counts[:, :, 1:].sum(axis=2), 0.0)
        return counts.reshape(m * k, k), self.mass.copy()


def fit_em_dense(
    L: np.ndarray,
    cardinality: int,
    *,
    init_log_tables: np.ndarray,
    init_log_prior: np.ndarray,
    init_log_abstain: np.ndarray | None = None,
    pseudo_count: float | np.ndarray = 1.0,
    prior_pseudo_count: float | np.ndarray = 1.0,
    fit_prior: bool = True,
    max_iter: int = 100,
    tol: float = 1e-6,
    param_tol: float | None = None,
    implicit_abstain: bool = False,
    abstain_pseudo_count: float = 1.0,
) -> EMResult:
    """:func:`~metal.label_model.em.fit_em` on the rows of a dense label matrix, warm-started.

    Parameters
    ----------
    L
        ``(n, m)`` dense integer label matrix (``-1`` abstain, classes ``0..k-1``), already
        validated; every row has weight 1. ``m * k`` must be at most ``MAX_DENSE_INDICATORS``.
    cardinality
        ``k``: the states are the classes and symbol ``i*k + v`` is source ``i`` voting ``v``.
    init_log_tables, init_log_prior, init_log_abstain
        The starting parameters (``(m*k, k)``, ``(k,)`` and, with ``implicit_abstain``,
        ``(m, k)``). Tables of symbols that occur in ``L`` must be finite (log probabilities
        of a MAP fit with positive pseudo-counts are).
    pseudo_count, prior_pseudo_count, fit_prior, max_iter, tol, param_tol, implicit_abstain, \
abstain_pseudo_count
        As in :func:`~metal.label_model.em.fit_em`.

    Returns
    -------
    EMResult
        ``posterior`` is empty (``(0, k)``): the posterior of all rows is not kept. Its
        ``expected_counts`` are those of the last E-step (at the parameters before the last
        M-step when ``param_tol`` stopped the iteration).
    """
    k = int(cardinality)
    if not dense_applicable(L, L.shape[1] * k) or k < 2:
        raise ConfigError(f"fit_em_dense needs a dense integer (n, m) matrix with m*k at most "
                          f"the dense limit and k >= 2, got {type(L).__name__} of shape "
                          f"{getattr(L, 'shape', None)} and k={k}; use fit_em with one_hot_votes")
    n, m = L.shape
    S = m * k
    log_tables = np.asarray(init_log_tables, dtype=np.float64)
    log_prior = np.asarray(init_log_prior, dtype=np.float64)
    log_abstain = None
    if log_tables.shape != (S, k) or log_prior.shape != (k,):
        raise ConfigError(f"init_log_tables must have shape {(S, k)} and init_log_prior "
                          f"{(k,)}, got {log_tables.shape} and {log_prior.shape}")
    if implicit_abstain:
        if init_log_abstain is None or np.shape(init_log_abstain) != (m, k):
            raise ConfigError(f"implicit_abstain needs init_log_abstain of shape {(m, k)}")
        log_abstain = np.asarray(init_log_abstain, dtype=np.float64)
    if max_iter < 1 or not np.isfinite(tol) or tol < 0:
        raise ConfigError(f"need max_iter >= 1 and a finite tol >= 0, got {max_iter}, {tol}")
    pc = np.broadcast_to(np.asarray(pseudo_count, dtype=np.float64), (S, k))
    ppc = np.broadcast_to(np.asarray(prior_pseudo_count, dtype=np.float64), (k,))
    abst_pc = np.full((m, k), float(abstain_pseudo_count)) if implicit_abstain else None
    symbol_source = np.repeat(np.arange(m), k)
    source_sum = _source_sum(symbol_source, m)
    stop = None if param_tol is None else FixedPointStop(param_tol)
    if stop is not None:
        stop.converged(log_tables, log_abstain, log_prior)
    rows = min(block_rows(S, n), max(n, 1))
    result = EMResult(log_tables=log_tables, log_prior=log_prior, posterior=np.empty((0, k)),
                      log_abstain=log_abstain)
    previous = -np.inf
    for it in range(1, max_iter + 1):
        # E-step: score = base + sum over votes of table (abstain factors folded in)
        if log_abstain is None:
            table, base = log_tables, log_prior
        else:
            table = log_tables - log_abstain[symbol_source]
            base = log_prior + log_abstain.sum(axis=0)
        seen = np.asarray(np.isfinite(table).all(axis=1))
        scorer = DenseScorer(np.where(seen[:, None], table, 0.0), base, m, k)
        gather = _CountPass(m, k, rows)
        log_norm = 0.0
        for _, block in scorer.blocks(L, log=False, normalize=False):
            gather.add(block.X, block.post, block.total, block.X_op)
            log_norm += float(block.top.sum() + np.log(block.total).sum())
        counts, mass = gather.counts()
        votes = counts.sum(axis=1)
        if (votes[~seen] > 0).any():
            raise ConfigError("init_log_tables give probability 0 to a vote that occurs in L; "
                              "start from a fit with positive pseudo-counts")
        # the scorer's scores are relative to class 0's table entries:
        # log P(row) = its log normaliser + the sum of class 0's entries over its votes
        objective = log_norm + float(votes[seen] @ table[seen, 0]) + _log_prior_terms(
            pc, log_tables, abst_pc, log_abstain, ppc, log_prior, fit_prior)
        result.objective.append(objective)
        result.n_iter = it
        result.expected_counts = (counts, mass)
        if np.isfinite(previous) and abs(objective - previous) <= tol * max(1.0, abs(objective)):
            result.converged = True
            break
        previous = objective
        log_tables, log_abstain = m_step_from_counts(counts, mass, source_sum, symbol_source, pc,
                                                     abst_pc)
        if fit_prior:
            log_prior = prior_from_mass(mass, ppc)
        if stop is not None and stop.converged(log_tables, log_abstain, log_prior):
            result.converged = True
            break
    result.log_tables, result.log_prior, result.log_abstain = log_tables, log_prior, log_abstain
    return result

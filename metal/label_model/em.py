"""Maximum-likelihood refinement: sparse EM over a finite set of latent states.

The one likelihood engine behind the single-task and the multi-task label models. Each row has
a latent state ``y`` in ``0..Y-1`` (a class; for a task graph, a feasible label vector) and
every source emits at most one *symbol* per row. Given the state, sources are independent:

    log P(row, y) = log pi_y + sum_{symbols s observed on the row} log theta[s, y]

``theta[s, y] = P(symbol s | state y)`` is normalised over the symbols of one source for each
state. Whether "abstain" is a symbol is the caller's choice:

* abstain modelled: abstain is one more symbol of each source (its silence is evidence);
* votes only: there is no abstain column, so a row where a source is silent simply lacks that
  source's factor, and ``theta`` is ``P(symbol | y, voted)``;
* implicit abstain (``implicit_abstain=True``): abstain is modelled, but ``A`` stores votes only
  and every source gets one more, unstored, symbol that it emits on the rows where it stores
  nothing. The result is the same as with explicit abstain columns, at the cost of the votes
  alone (an explicit column would store ``rows x sources`` entries).

Rows are given as a sparse one-hot matrix ``A`` (rows x symbols, one stored 1 per observed
symbol), so an E-step is one sparse product ``A @ log theta`` and an M-step one sparse product
``A.T @ posterior``: the cost is linear in the number of stored votes, never in ``rows x
symbols``. Duplicate rows can be collapsed first (:func:`unique_rows`) and passed with
``row_weights``; weak-supervision matrices repeat rows a lot, so that is usually much faster.

The M-step is a MAP step under Dirichlet priors expressed as *pseudo-counts* added to the
expected counts. Fixed pseudo-counts are a constant amount of evidence, so their pull vanishes
as the counts grow and the estimate stays consistent; :attr:`EMResult.objective` (log
likelihood plus log prior) never decreases from one iteration to the next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from metal.errors import ConfigError

__all__ = [
    "EMResult",
    "em_log_posterior",
    "fit_em",
    "one_hot_votes",
    "unique_rows",
]


@dataclass
class EMResult:
    """What :func:`fit_em` found.

    Attributes
    ----------
    log_tables
        ``(S, Y)`` ``log P(symbol | state)``, normalised over each source's symbols.
    log_prior
        ``(Y,)`` log class (state) balance.
    posterior
        ``(n_rows, Y)`` posterior over states of the rows that were fitted, at ``log_tables``.
    objective
        Log likelihood plus log prior (the pseudo-count terms) after each iteration; never
        decreases.
    n_iter
        Number of EM iterations run.
    converged
        Whether the relative change of the objective fell below ``tol``.
    log_abstain
        ``(n_sources, Y)`` ``log P(abstain | state)`` with ``implicit_abstain=True``, else None.
    expected_counts
        Set where ``posterior`` is not kept (:func:`metal.label_model.dense_em.fit_em_dense`):
        the expected ``(S, Y)`` symbol counts and ``(Y,)`` state counts of the last E-step,
        i.e. ``A.T @ (weights * posterior)`` and ``(weights * posterior).sum(0)``.
    """

    log_tables: np.ndarray
    log_prior: np.ndarray
    posterior: np.ndarray
    objective: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    log_abstain: np.ndarray | None = None
    expected_counts: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def log_likelihood(self) -> list[float]:
        """Alias kept for readability at call sites that think in likelihoods."""
        return self.objective


def _check_inputs(A: sp.spmatrix, symbol_source: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray,
                                                                       int]:
    if not sp.issparse(A):
        raise ConfigError("A must be a scipy.sparse one-hot matrix of observed symbols "
                          f"(rows x symbols), got {type(A).__name__}; build it with "
                          "metal.label_model.em.one_hot_votes")
    A = sp.csr_matrix(A, dtype=np.float64)
    symbol_source = np.asarray(symbol_source)
    if symbol_source.ndim != 1 or symbol_source.shape[0] != A.shape[1]:
        raise ConfigError(f"symbol_source must have one entry per column of A ({A.shape[1]}), "
                          f"got shape {symbol_source.shape}")
    if symbol_source.size and (symbol_source.min() < 0
                               or not np.issubdtype(symbol_source.dtype, np.integer)):
        raise ConfigError("symbol_source must hold non-negative integer source indices")
    n_sources = int(symbol_source.max()) + 1 if symbol_source.size else 0
    return A, symbol_source.astype(np.int64), n_sources


# stored votes up to which fit_em keeps a CSR copy of A's transpose for the M-step
TRANSPOSE_COPY_NNZ = 250_000


def _source_sum(symbol_source: np.ndarray, n_sources: int) -> sp.csr_matrix:
    """``(n_sources, S)`` 0/1 matrix that sums the rows of an ``(S, Y)`` table per source."""
    S = symbol_source.shape[0]
    return sp.csr_matrix((np.ones(S), (symbol_source, np.arange(S))), shape=(n_sources, S))


def em_log_posterior(
    A: sp.spmatrix,
    symbol_source: np.ndarray,
    log_tables: np.ndarray,
    log_prior: np.ndarray,
    log_abstain: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Log posterior over states of every row, and each row's log marginal likelihood.

    ``log_abstain`` (``(n_sources, Y)``, from ``implicit_abstain=True``) adds the factor of
    every source that stores no symbol on a row.

    Returns
    -------
    log_posterior
        ``(n_rows, Y)``, each row normalised.
    log_marginal
        ``(n_rows,)`` ``log P(row)``.
    """
    A, symbol_source, _ = _check_inputs(A, symbol_source)
    return _log_posterior(A, symbol_source, log_tables, log_prior, log_abstain)


def _log_posterior(A: sp.csr_matrix, symbol_source: np.ndarray, log_tables: np.ndarray,
                   log_prior: np.ndarray, log_abstain: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`em_log_posterior` on checked inputs (the EM loop checks them once)."""
    # in place after the product: these (n, Y) arrays are the EM's largest temporaries
    if log_abstain is None:
        scores = np.array(A @ log_tables, dtype=np.float64, copy=None)
        scores += log_prior[None, :]
    else:
        scores = np.array(A @ (log_tables - log_abstain[symbol_source]), dtype=np.float64,
                          copy=None)
        scores += (log_prior + log_abstain.sum(axis=0))[None, :]
    log_marginal = _row_logsumexp(scores)
    scores -= log_marginal[:, None]
    return scores, log_marginal


def _row_logsumexp(scores: np.ndarray) -> np.ndarray:
    """``logsumexp`` over each row (scipy's general version is several times slower here).

    Column by column: numpy reduces along a short last axis far slower than it combines whole
    columns elementwise (the sum keeps the same left-to-right order, so the result is the same).
    """
    if scores.shape[1] == 0:
        return np.full(scores.shape[0], -np.inf)
    top = scores[:, 0].copy()
    for y in range(1, scores.shape[1]):
        np.maximum(top, scores[:, y], out=top)
    if not np.isfinite(top).all():
        top[~np.isfinite(top)] = 0.0
    total = np.exp(np.subtract(scores[:, 0], top))
    term = np.empty_like(total)  # one buffer for every column's term
    for y in range(1, scores.shape[1]):
        total += np.exp(np.subtract(scores[:, y], top, out=term), out=term)
    with np.errstate(divide="ignore"):
        return np.add(np.log(total, out=total), top, out=total)


#: ``(expected symbol counts + pseudo-counts (S, Y), expected abstain counts + pseudo-counts
#: (n_sources, Y) or None) -> (log_tables, log_abstain or None)``: a caller's M-step for a
#: constrained parameterisation (see ``fit_em(tables_from_counts=...)``).
TablesFromCounts = Callable[[np.ndarray, "np.ndarray | None"],
                            "tuple[np.ndarray, np.ndarray | None]"]


def _m_step(
    AT: sp.csr_matrix | sp.csc_matrix,
    weighted_post: np.ndarray,
    source_sum: sp.csr_matrix,
    symbol_source: np.ndarray,
    pseudo_count: np.ndarray,
    abstain_pseudo: np.ndarray | None = None,
    tables_from_counts: TablesFromCounts | None = None,
    state_mass: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """MAP tables (and, with ``abstain_pseudo``, the implicit abstain symbol's log table).

    ``state_mass``: the column sums of ``weighted_post``, where the caller has them (numpy's
    sum over the long leading axis of a C-ordered ``(n, Y)`` array steps through ``n`` rows
    of ``Y`` numbers, many times slower than a matrix-vector product)."""
    vote_counts = np.asarray(AT @ weighted_post)  # AT: the transpose of the symbol matrix
    if state_mass is None:
        state_mass = weighted_post.sum(axis=0)
    return m_step_from_counts(vote_counts, state_mass, source_sum, symbol_source,
                              pseudo_count, abstain_pseudo, tables_from_counts)


def m_step_from_counts(
    vote_counts: np.ndarray,
    state_mass: np.ndarray,
    source_sum: sp.csr_matrix,
    symbol_source: np.ndarray,
    pseudo_count: np.ndarray,
    abstain_pseudo: np.ndarray | None = None,
    tables_from_counts: TablesFromCounts | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The M-step from the expected counts: ``(S, Y)`` of every symbol and ``(Y,)`` of every
    state (the weighted posterior's column sums), however they were gathered."""
    counts = vote_counts + pseudo_count
    log_abstain = None
    per_source = np.asarray(source_sum @ counts)
    abstained = None
    if abstain_pseudo is not None:
        # a source abstains on every unit of row mass it does not vote on
        voted = np.asarray(source_sum @ vote_counts)
        abstained = np.maximum(state_mass[None, :] - voted, 0.0) + abstain_pseudo
    if tables_from_counts is not None:  # a constrained (e.g. tied) parameterisation
        return tables_from_counts(counts, abstained)
    if abstained is not None:
        per_source = per_source + abstained
        with np.errstate(divide="ignore"):
            log_abstain = np.log(abstained) - np.log(np.maximum(per_source, 1e-300))
    totals = per_source[symbol_source]
    with np.errstate(divide="ignore"):
        # a source/state with no mass at all (zero pseudo-count, never seen) stays uniform
        uniform = totals <= 0
        tables = np.where(uniform, 1.0, counts) / np.where(uniform, 1.0, totals)
    if uniform.any():
        n_sym = np.bincount(symbol_source, minlength=source_sum.shape[0])[symbol_source]
        tables = np.where(uniform, 1.0 / n_sym[:, None], tables)
    with np.errstate(divide="ignore"):
        return np.log(tables), log_abstain


def _log_prior_term(pseudo: np.ndarray, log_values: np.ndarray) -> float:
    # Dirichlet(pseudo + 1) log density up to a constant; 0 * log 0 counts as 0
    mask = pseudo > 0
    return float(np.sum(pseudo[mask] * log_values[mask])) if mask.any() else 0.0


def _log_prior_terms(pseudo: np.ndarray, log_tables: np.ndarray,
                     abstain_pseudo: np.ndarray | None, log_abstain: np.ndarray | None,
                     prior_pseudo: np.ndarray, log_prior: np.ndarray, fit_prior: bool) -> float:
    """The pseudo-count (Dirichlet) terms of the MAP objective: tables, the implicit abstain
    table where modelled, and the state prior where it is fitted."""
    total = _log_prior_term(pseudo, log_tables)
    if abstain_pseudo is not None and log_abstain is not None:
        total += _log_prior_term(abstain_pseudo, log_abstain)
    if fit_prior:
        total += _log_prior_term(prior_pseudo, log_prior)
    return total


def prior_from_mass(state_mass: np.ndarray, prior_pseudo: np.ndarray) -> np.ndarray:
    """MAP log state prior from the expected ``(Y,)`` state counts and their pseudo-counts."""
    mass = state_mass + prior_pseudo
    with np.errstate(divide="ignore"):
        return np.log(mass / mass.sum())


class FixedPointStop:
    """Stop a linearly convergent iteration once it is within ``tol`` of its fixed point.

    EM converges linearly near its fixed point ``theta*``: each step shrinks the distance by
    about a rate ``r < 1``, so the last step ``d_t = |theta_t - theta_{t-1}|`` (largest
    change of any probability) and the rate estimate ``r = d_t / d_{t-1}`` give the remaining
    distance ``|theta_t - theta*| ~ d_t r / (1 - r)`` (Aitken). :meth:`converged` is called
    with the parameters after every M-step (and first with the starting point, if any); it
    says True once that estimate is at most ``tol``, which needs two steps.
    """

    def __init__(self, tol: float) -> None:
        self.tol = float(tol)
        self.stopped = False
        self._last: np.ndarray | None = None
        self._step: float | None = None

    def converged(self, log_tables: np.ndarray, log_abstain: np.ndarray | None,
                  log_prior: np.ndarray) -> bool:
        parts = [log_tables.ravel(), log_prior.ravel()]
        if log_abstain is not None:
            parts.append(log_abstain.ravel())
        point = np.exp(np.concatenate(parts))
        last, self._last = self._last, point
        if last is None:
            return False
        step = float(np.max(np.abs(point - last))) if point.size else 0.0
        previous, self._step = self._step, step
        if step == 0.0:
            self.stopped = True
        elif previous is not None and step < previous:
            rate = step / previous
            self.stopped = step * rate / (1.0 - rate) <= self.tol
        return self.stopped


def fit_em(
    A: sp.spmatrix,
    symbol_source: np.ndarray,
    init_posterior: np.ndarray | None = None,
    *,
    init_log_tables: np.ndarray | None = None,
    init_log_prior: np.ndarray | None = None,
    init_log_abstain: np.ndarray | None = None,
    row_weights: np.ndarray | None = None,
    pseudo_count: float | np.ndarray = 1.0,
    prior_pseudo_count: float | np.ndarray = 1.0,
    fit_prior: bool = True,
    max_iter: int = 100,
    tol: float = 1e-6,
    implicit_abstain: bool = False,
    abstain_pseudo_count: float = 1.0,
    n_sources: int | None = None,
    tables_from_counts: TablesFromCounts | None = None,
    param_tol: float | None = None,
) -> EMResult:
    """Refine a label model by EM (MAP under pseudo-count priors).

    Parameters
    ----------
    A
        ``(n_rows, S)`` sparse one-hot matrix of observed symbols, at most one per source per
        row (see :func:`one_hot_votes`).
    symbol_source
        ``(S,)`` the source each symbol column belongs to.
    init_posterior
        ``(n_rows, Y)`` starting posterior (majority vote, or the moment fit's posterior); EM
        starts with an M-step from it. Give either this or ``init_log_tables`` and
        ``init_log_prior`` (EM then starts with an E-step; with ``implicit_abstain`` also
        ``init_log_abstain``, the ``(n_sources, Y)`` log abstain table).
    row_weights
        ``(n_rows,)`` non-negative weights, e.g. the counts of deduplicated rows.
    pseudo_count
        Dirichlet pseudo-counts added to every ``(symbol, state)`` expected count: a scalar or an
        ``(S, Y)`` array (e.g. larger on the diagonal to encode "better than random").
    prior_pseudo_count
        Pseudo-counts added to the expected state counts (scalar or ``(Y,)``).
    fit_prior
        If False, the state prior stays at ``init_log_prior`` (required then), e.g. a class
        balance the user gave.
    max_iter, tol
        Stop after ``max_iter`` iterations or when the objective's relative change is below
        ``tol``.
    implicit_abstain
        Model abstain as one more symbol of every source without storing it in ``A`` (see the
        module docstring); the result's ``log_abstain`` holds its table.
    abstain_pseudo_count
        Pseudo-count of the implicit abstain symbol (scalar).
    n_sources
        Number of sources, when trailing sources have no symbol column (default: from
        ``symbol_source``). Only matters with ``implicit_abstain``.
    tables_from_counts
        Optional M-step of a constrained parameterisation (e.g. parameters tied across
        states): called with the expected counts plus pseudo-counts of every symbol (and of
        the implicit abstain symbol), it returns the log tables (and log abstain table). The
        default is the free table of each source (counts normalised per source and state).
        With a constraint whose maximiser is only approximated, the objective is no longer
        guaranteed to increase.
    param_tol
        Also stop once the estimated distance of the probabilities (tables, abstain table,
        prior) to EM's fixed point is at most ``param_tol`` (:class:`FixedPointStop`), e.g. a
        small fraction of their standard error. The posterior is then that of the final
        parameters, as always.
    """
    A, symbol_source, found_sources = _check_inputs(A, symbol_source)
    n_sources = found_sources if n_sources is None else int(n_sources)
    if n_sources < found_sources:
        raise ConfigError(f"n_sources={n_sources} but symbol_source names {found_sources}")
    n_rows = A.shape[0]
    if init_posterior is not None:
        post = np.asarray(init_posterior, dtype=np.float64)
        if post.ndim != 2 or post.shape[0] != n_rows:
            raise ConfigError(f"init_posterior must have shape (n_rows={n_rows}, n_states), "
                              f"got {post.shape}")
        Y = post.shape[1]
    elif init_log_tables is not None and init_log_prior is not None:
        Y = int(np.asarray(init_log_prior).shape[0])
        post = None
    else:
        raise ConfigError("give init_posterior, or both init_log_tables and init_log_prior")
    if not fit_prior and init_log_prior is None:
        raise ConfigError("fit_prior=False needs init_log_prior (the fixed state prior)")
    if max_iter < 1 or not np.isfinite(tol) or tol < 0:
        raise ConfigError(f"need max_iter >= 1 and a finite tol >= 0, got {max_iter}, {tol}")
    w = np.ones(n_rows) if row_weights is None else np.asarray(row_weights, dtype=np.float64)
    if w.shape != (n_rows,) or not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError(f"row_weights must be {n_rows} finite non-negative numbers")
    pc = np.broadcast_to(np.asarray(pseudo_count, dtype=np.float64), (A.shape[1], Y))
    ppc = np.broadcast_to(np.asarray(prior_pseudo_count, dtype=np.float64), (Y,))
    if not (np.isfinite(pc).all() and np.isfinite(ppc).all()) or (pc < 0).any() or (ppc < 0).any():
        raise ConfigError("pseudo-counts must be finite and >= 0")

    if not np.isfinite(abstain_pseudo_count) or abstain_pseudo_count < 0:
        raise ConfigError("abstain_pseudo_count must be finite and >= 0")
    abst_pc = np.full((n_sources, Y), float(abstain_pseudo_count)) if implicit_abstain else None
    source_sum = _source_sum(symbol_source, n_sources)
    fixed_prior = None if init_log_prior is None else np.asarray(init_log_prior, np.float64)

    def prior_step(state_mass: np.ndarray) -> np.ndarray:
        if not fit_prior:
            assert fixed_prior is not None
            return fixed_prior
        return prior_from_mass(state_mass, ppc)

    # the M-step's A.T @ post: a CSR copy of the transpose is faster than the CSC view while
    # it is small; for large A the view avoids doubling the memory
    A_m = A.T.tocsr() if A.nnz <= TRANSPOSE_COPY_NNZ else A.T
    log_abstain: np.ndarray | None
    if post is not None:
        wp = post * w[:, None]
        mass = w @ post
        log_tables, log_abstain = _m_step(A_m, wp, source_sum, symbol_source, pc, abst_pc,
                                          tables_from_counts, mass)
        log_prior = prior_step(mass)
    else:
        log_tables = np.asarray(init_log_tables, dtype=np.float64)
        assert fixed_prior is not None
        log_prior = fixed_prior
        if log_tables.shape != (A.shape[1], Y):
            raise ConfigError(f"init_log_tables must have shape {(A.shape[1], Y)}, "
                              f"got {log_tables.shape}")
        log_abstain = None
        if implicit_abstain:
            if init_log_abstain is None:
                raise ConfigError("implicit_abstain needs init_posterior, or init_log_abstain "
                                  "with the initial tables")
            log_abstain = np.asarray(init_log_abstain, dtype=np.float64)
            if log_abstain.shape != (n_sources, Y):
                raise ConfigError(f"init_log_abstain must have shape {(n_sources, Y)}, "
                                  f"got {log_abstain.shape}")

    result = EMResult(log_tables=log_tables, log_prior=log_prior,
                      posterior=np.empty((0, Y)))  # set at the end
    previous = -np.inf
    wp_buf: np.ndarray | None = None
    stop = None if param_tol is None else FixedPointStop(param_tol)
    if stop is not None and post is None:  # a warm start: its parameters are the first point
        stop.converged(log_tables, log_abstain, log_prior)
    for it in range(1, max_iter + 1):
        log_post, log_marginal = _log_posterior(A, symbol_source, log_tables, log_prior,
                                                log_abstain)
        objective = float(w @ log_marginal) + _log_prior_terms(
            pc, log_tables, abst_pc, log_abstain, ppc, log_prior, fit_prior)
        result.objective.append(objective)
        post = np.exp(log_post, out=log_post)  # in place: log_post is not needed again
        result.n_iter = it
        if np.isfinite(previous) and abs(objective - previous) <= tol * max(1.0, abs(objective)):
            result.converged = True
            break
        previous = objective
        wp_buf = np.multiply(post, w[:, None], out=wp_buf)  # one buffer across iterations
        wp = wp_buf
        mass = w @ post
        log_tables, log_abstain = _m_step(A_m, wp, source_sum, symbol_source, pc, abst_pc,
                                          tables_from_counts, mass)
        log_prior = prior_step(mass)
        if stop is not None and stop.converged(log_tables, log_abstain, log_prior):
            result.converged = True
            break
    if not result.converged or stop is not None and stop.stopped:
        # the loop ended on an M-step: report the posterior at the final parameters
        log_post, _ = _log_posterior(A, symbol_source, log_tables, log_prior, log_abstain)
        post = np.exp(log_post, out=log_post)
    assert post is not None
    result.log_tables, result.log_prior, result.posterior = log_tables, log_prior, post
    result.log_abstain = log_abstain
    return result


def _check_votes(values: np.ndarray, k: int, lowest: int) -> None:
    # checked before the abstain symbol (value k) is added: a vote of k must not pass as one
    if values.size and (values.min() < lowest or values.max() >= k):
        raise ConfigError(f"label values must lie in -1..{k - 1} for cardinality={k}")


def one_hot_votes(
    L: np.ndarray | sp.spmatrix,
    cardinality: int,
    *,
    abstain_symbol: bool = False,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """The sparse one-hot symbol matrix of a label matrix (no dense one-hot is built).

    Source ``j``'s symbol ``v`` (a class) is column ``j * W + v`` with ``W = cardinality`` (or
    ``cardinality + 1`` with ``abstain_symbol=True``, abstain being column ``j * W + k``).
    ``L`` is dense with ``-1`` = abstain, or scipy.sparse storing votes only.

    Returns
    -------
    A
        ``(n, m * W)`` CSR matrix, one stored 1 per symbol.
    symbol_source
        ``(m * W,)`` the source of each column.
    """
    k = int(cardinality)
    n, m = L.shape
    W = k + 1 if abstain_symbol else k
    if sp.issparse(L):
        C = sp.coo_matrix(L)
        rows, cols, vals = C.row.astype(np.int64), C.col.astype(np.int64), C.data.astype(np.int64)
        _check_votes(vals, k, lowest=0)  # sparse matrices store votes only
        if abstain_symbol:
            voted = np.zeros((n, m), dtype=bool)
            voted[rows, cols] = True
            ar, ac = np.nonzero(~voted)
            rows = np.concatenate([rows, ar])
            cols = np.concatenate([cols, ac])
            vals = np.concatenate([vals, np.full(ar.shape[0], k)])
    else:
        L = np.asarray(L)
        _check_votes(L, k, lowest=-1)
        if abstain_symbol:
            rows, cols = np.indices((n, m)).reshape(2, -1)
            vals = np.where(L.reshape(-1) < 0, k, L.reshape(-1)).astype(np.int64)
        else:
            # row-major positions of the votes are already in CSR order: build the matrix
            # from them directly instead of sorting coordinates (the cost at n = 1e6), one
            # block of rows at a time so no temporary is as large as L itself
            L = np.ascontiguousarray(L)
            itype: type[np.signedinteger[Any]] = np.int32 if m * W < 2**31 else np.int64
            step = max(1, ONE_HOT_BLOCK // max(m, 1))
            # two passes over the blocks: the row counts first, so the output is allocated once
            per_row = np.empty(n, dtype=np.int64)
            for a in range(0, n, step):
                per_row[a:a + step] = np.count_nonzero(L[a:a + step] >= 0, axis=1)
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(per_row, out=indptr[1:])
            col: np.ndarray = np.empty(int(indptr[-1]), dtype=itype)
            for a in range(0, n, step):
                block = L[a:a + step].reshape(-1)
                pos = np.flatnonzero(block >= 0)
                vals = block[pos]
                # column = position - row start (no integer division)
                starts = np.repeat(np.arange(0, block.size, m, dtype=np.int64),
                                   per_row[a:a + step])
                piece = col[indptr[a]:indptr[min(a + step, n)]]
                np.subtract(pos, starts, out=piece, casting="unsafe")
                np.multiply(piece, W, out=piece)
                np.add(piece, vals, out=piece, casting="unsafe")
            A = sp.csr_matrix((np.ones(col.shape[0]), col, indptr), shape=(n, m * W))
            return A, np.repeat(np.arange(m), W)
    A = sp.csr_matrix((np.ones(rows.shape[0]), (rows, cols * W + vals)), shape=(n, m * W))
    return A, np.repeat(np.arange(m), W)


# cells of L per block when building the one-hot matrix (bounds its temporaries)
ONE_HOT_BLOCK = 1 << 20

# above this many rows, dense rows are grouped by a hash (checked exactly) instead of sorted
HASH_UNIQUE_ROWS = 20_000
# compress_rows keeps L as is when at least this share of its rows are distinct
MOSTLY_DISTINCT = 0.9


def _unique_rows_hashed(
    L: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`unique_rows` of a large dense matrix via one 64-bit hash per row.

    Each row's bytes, read as 64-bit words, are salted, mixed and summed; the grouping is then
    checked word for word, and ``None`` (sort instead) is returned on a collision. The
    distinct rows come in hash order, not sorted.
    """
    h = _row_hashes(L)
    return _group_hashed(L, h, np.argsort(h))


def compress_rows(L: np.ndarray | sp.spmatrix) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray]:
    """Rows and multiplicities that stand for ``L`` in weighted sums over its rows.

    The distinct rows of ``L`` with their counts (:func:`unique_rows`), except for a large
    dense ``L`` whose rows are nearly all distinct (at least ``MOSTLY_DISTINCT`` of them, by
    the row hash): merging would then cost more than it saves, and ``L`` comes back as is with
    counts of 1.
    """
    if not sp.issparse(L) and L.shape[0] > HASH_UNIQUE_ROWS:
        L = np.ascontiguousarray(L)
        h = _row_hashes(L)
        order = np.argsort(h)
        sorted_h = h[order]
        n_distinct = 1 + int(np.count_nonzero(sorted_h[1:] != sorted_h[:-1]))
        if n_distinct >= MOSTLY_DISTINCT * L.shape[0]:
            return L, np.ones(L.shape[0], dtype=np.int64)
        grouped = _group_hashed(L, h, order)
        if grouped is not None:
            return grouped[0], grouped[2]
    unique, _, counts = unique_rows(L)
    return unique, counts


def few_duplicates(sample: np.ndarray, n_rows: int) -> bool:
    """Whether merging the duplicate rows of a dense matrix of ``n_rows`` rows would save
    less than ``1 - MOSTLY_DISTINCT`` of them, judged from ``sample``, a uniform random
    sample of its rows (so that not every row needs hashing).

    Merging saves ``n - n_distinct`` rows, at most the number of pairs of equal rows. The
    pairs in a sample of ``s`` rows estimate that number without bias when scaled by
    ``n (n - 1) / (s (s - 1))``; rows are compared by hash, and a collision only adds pairs.
    """
    s = sample.shape[0]
    if s < 2:
        return False
    h = np.sort(_row_hashes(np.ascontiguousarray(sample)))
    starts = np.flatnonzero(np.concatenate([[True], h[1:] != h[:-1]]))
    size = np.diff(np.append(starts, s)).astype(np.float64)
    pairs = float((size * (size - 1.0)).sum() / 2.0)
    estimate = pairs * n_rows * (n_rows - 1.0) / (s * (s - 1.0))
    return estimate <= (1.0 - MOSTLY_DISTINCT) * n_rows


def _row_hashes(L: np.ndarray) -> np.ndarray:
    """One mixed 64-bit hash per row of a dense matrix (computed a block of rows at a time)."""
    n = L.shape[0]
    raw_all = L.view(np.uint8).reshape(n, -1)
    n_bytes = raw_all.shape[1]
    width = -(-n_bytes // 8) * 8
    salts = np.random.default_rng(0x5EED).integers(1, 2**63, size=width // 8, dtype=np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    step = max(1, ONE_HOT_BLOCK // max(width, 1))
    padded = np.zeros((min(step, n), width), dtype=np.uint8)
    for a in range(0, n, step):
        rows = raw_all[a:a + step]
        buf = padded[:rows.shape[0]]
        buf[:, :n_bytes] = rows  # the padding columns stay zero
        words = buf.view(np.uint64)  # (rows, width / 8)
        hb = h[a:a + step]
        with np.errstate(over="ignore"):
            for w in range(words.shape[1]):
                # each word salted by its position and mixed (splitmix-style) before summing: a
                # plain product keeps a difference in a word's top byte in the top bits only
                z = words[:, w] + salts[w]
                z ^= z >> np.uint64(30)
                z *= np.uint64(0xBF58476D1CE4E5B9)
                z ^= z >> np.uint64(27)
                z *= np.uint64(0x94D049BB133111EB)
                z ^= z >> np.uint64(31)
                hb += z
    return h


def _group_hashed(L: np.ndarray, h: np.ndarray, order: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Group the rows by hash (``order`` sorts ``h``; ties in any order); None on a collision."""
    n = L.shape[0]
    sorted_h = h[order]
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(sorted_h[1:], sorted_h[:-1], out=new_group[1:])
    starts = np.flatnonzero(new_group)
    counts = np.diff(np.append(starts, n))
    first = order[starts]
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(new_group) - 1
    # only rows that share a hash need checking: a collision sends us back to sorting
    shared = np.flatnonzero(counts[inverse] > 1)
    if shared.size and not np.array_equal(L[shared], L[first[inverse[shared]]]):
        return None
    return L[first], inverse, counts.astype(np.int64)


def unique_rows(
    L: np.ndarray | sp.spmatrix,
) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray, np.ndarray]:
    """Collapse duplicate rows of a label matrix.

    Returns ``(unique, inverse, counts)`` with ``L[i] == unique[inverse[i]]``. Dense input is
    compared exactly (above ``HASH_UNIQUE_ROWS`` rows: grouped by a hash first, then checked).
    Sparse input is grouped by two independent 64-bit hashes of each row's stored ``(column,
    value)`` pairs (a collision needs two rows to agree on 128 random bits), so no dense copy
    is made.
    """
    if not sp.issparse(L):
        L = np.ascontiguousarray(L)
        if L.shape[0] == 0:
            return L, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if L.shape[0] > HASH_UNIQUE_ROWS:
            hashed = _unique_rows_hashed(L)
            if hashed is not None:
                return hashed
        view = L.view(np.dtype((np.void, L.dtype.itemsize * L.shape[1])))[:, 0]
        _, first, inverse, counts = np.unique(view, return_index=True, return_inverse=True,
                                              return_counts=True)
        return L[first], inverse.reshape(-1).astype(np.int64), counts.astype(np.int64)
    C = sp.csr_matrix(L)
    C.sum_duplicates()
    n = C.shape[0]
    rng = np.random.default_rng(0x5EED)
    key = C.indices.astype(np.uint64) * np.uint64(1_000_003) + C.data.astype(np.int64).astype(
        np.uint64)
    # per-entry pseudo-random 64-bit values (splitmix-style mixing of the key), summed per row
    # with wrap-around: order-independent and exact integer arithmetic
    hashes = np.zeros((n, 2), dtype=np.uint64)
    for h, salt in enumerate(rng.integers(1, 2**63, size=2, dtype=np.uint64)):
        z = key + salt
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        if z.size:
            starts = C.indptr[:-1]
            filled = np.diff(C.indptr) > 0
            hashes[filled, h] = np.add.reduceat(z, starts[filled])
    _, first, inverse, counts = np.unique(hashes, axis=0, return_index=True, return_inverse=True,
                                          return_counts=True)
    return C[first], inverse.reshape(-1).astype(np.int64), counts.astype(np.int64)

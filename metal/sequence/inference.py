"""Chain inference over many sentences at once: forward-backward and constrained Viterbi.

Sentences are sorted by length and cut into batches of about ``max_cells`` padded cells; in
each batch time runs in an outer loop while all sentences of the batch advance together, and
at step ``t`` only the sentences still running (a prefix, thanks to the sort) are touched. The
forward pass is the scaled (normalised) one, so it works in probability space with matrix
products instead of log-sum-exp.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_CELLS = 1 << 18  # padded (sentence, position) cells per batch


@dataclass(frozen=True)
class Batch:
    """Sentences of one batch, longest first: token rows ``index[b, t]`` (valid if ``t < len``)."""

    sentences: np.ndarray
    lengths: np.ndarray
    index: np.ndarray  # (B, T) flat token row, 0 where padded
    mask: np.ndarray  # (B, T) bool

    @property
    def active(self) -> np.ndarray:
        """``(T,)``: how many sentences are still running at each step."""
        return self.mask.sum(axis=0)


def iter_batches(offsets: np.ndarray, max_cells: int = DEFAULT_MAX_CELLS) -> Iterator[Batch]:
    """Length-sorted batches of non-empty sentences with their padded token index."""
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    order = order[lengths[order] > 0]
    i = 0
    while i < order.size:
        longest = int(lengths[order[i]])
        size = max(1, max_cells // longest)
        sent = order[i:i + size]
        lens = lengths[sent]
        t = np.arange(longest)
        mask = t[None, :] < lens[:, None]
        index = np.where(mask, offsets[sent][:, None] + t[None, :], 0)
        yield Batch(sentences=sent, lengths=lens, index=index, mask=mask)
        i += size


def _scaled_emissions(log_emit: np.ndarray, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """``(B, T, K)`` emissions divided by their row max, and the log of that max."""
    le = log_emit[batch.index]
    top = le.max(axis=2, keepdims=True)
    e = np.exp(le - top)
    e[~batch.mask] = 1.0
    return e, np.where(batch.mask, top[..., 0], 0.0)


def forward_backward(
    log_emit: np.ndarray, offsets: np.ndarray, start: np.ndarray, trans: np.ndarray,
    max_cells: int = DEFAULT_MAX_CELLS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Posterior marginals of a chain with per-token emission scores.

    Parameters
    ----------
    log_emit
        ``(n_tokens, K)`` log emission scores ``log p(x_t | y_t = k)`` (up to a per-token
        constant).
    offsets
        Sentence boundaries.
    start, trans
        ``(K,)`` start and ``(K, K)`` transition probabilities (rows sum to 1; zeros forbid).

    Returns
    -------
    gamma
        ``(n_tokens, K)`` posterior marginals ``P(y_t = k | x)``.
    start_counts, trans_counts
        Expected counts of first tags and of tag bigrams, for the M step.
    loglik
        Total log-likelihood of the observations (plus the dropped per-token constants).
    """
    n, k = log_emit.shape
    gamma = np.zeros((n, k))
    start_counts = np.zeros(k)
    trans_counts = np.zeros((k, k))
    loglik = 0.0
    for batch in iter_batches(offsets, max_cells):
        e, top = _scaled_emissions(log_emit, batch)
        b_size, t_len = batch.mask.shape
        active = batch.active
        alpha = np.zeros((b_size, t_len, k))
        scale = np.ones((b_size, t_len))
        a = start[None, :] * e[:, 0]
        c = a.sum(axis=1)
        alpha[:, 0] = a / c[:, None]
        scale[:, 0] = c
        for t in range(1, t_len):
            r = active[t]
            a = (alpha[:r, t - 1] @ trans) * e[:r, t]
            c = a.sum(axis=1)
            alpha[:r, t] = a / c[:, None]
            scale[:r, t] = c
        beta = np.ones((b_size, t_len, k))
        for t in range(t_len - 2, -1, -1):
            r = active[t + 1]
            nb = e[:r, t + 1] * beta[:r, t + 1]
            beta[:r, t] = (nb @ trans.T) / scale[:r, t + 1, None]
            # expected transitions t -> t+1 summed over the running sentences:
            # sum_b alpha[b, i] trans[i, j] nb[b, j] / c[b] = trans * (alpha^T @ (nb / c))
            trans_counts += trans * (alpha[:r, t].T @ (nb / scale[:r, t + 1, None]))
        g = alpha * beta
        with np.errstate(invalid="ignore"):  # padded cells are 0 / 0 and never read
            g /= g.sum(axis=2, keepdims=True)
        gamma[batch.index[batch.mask]] = g[batch.mask]
        start_counts += g[:, 0].sum(axis=0)
        loglik += float(np.log(scale[batch.mask]).sum() + top.sum())
    return gamma, start_counts, trans_counts, loglik


def viterbi(
    log_score: np.ndarray, offsets: np.ndarray, log_start: np.ndarray, log_trans: np.ndarray,
    max_cells: int = DEFAULT_MAX_CELLS,
) -> np.ndarray:
    """The highest-scoring tag sequence of every sentence.

    ``log_score`` is ``(n_tokens, K)`` per-token scores, ``log_start`` ``(K,)`` and
    ``log_trans`` ``(K, K)`` additive scores; ``-inf`` forbids a start or a transition, which is
    how decoding is constrained to valid BIO. Returns ``(n_tokens,)`` tag indices.
    """
    n, k = log_score.shape
    out = np.zeros(n, dtype=np.int64)
    for batch in iter_batches(offsets, max_cells):
        s = log_score[batch.index]
        b_size, t_len = batch.mask.shape
        active = batch.active
        delta = log_start[None, :] + s[:, 0]
        back = np.zeros((b_size, t_len, k), dtype=np.int64)
        best_end = np.zeros((b_size, k))
        ended = np.zeros(b_size, dtype=bool)
        for t in range(1, t_len):
            r = int(active[t])
            # sentences r.. ended at t-1: keep their final delta
            done = ~ended[r:]
            if done.any():
                idx = np.flatnonzero(done) + r
                best_end[idx] = delta[idx]
                ended[idx] = True
            cand = delta[:r, :, None] + log_trans[None]
            back[:r, t] = cand.argmax(axis=1)
            delta = delta.copy()
            delta[:r] = cand.max(axis=1) + s[:r, t]
        rest = ~ended
        best_end[rest] = delta[rest]
        path = np.zeros((b_size, t_len), dtype=np.int64)
        last = batch.lengths - 1
        rows = np.arange(b_size)
        cur = best_end.argmax(axis=1)
        path[rows, last] = cur
        for t in range(t_len - 1, 0, -1):
            r = int(active[t])
            # sentences whose last position is t-1 start their backtrace here
            path[:r, t - 1] = back[np.arange(r), t, path[:r, t]]
        out[batch.index[batch.mask]] = path[batch.mask]
    return out

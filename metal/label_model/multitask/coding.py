"""Coding of multi-task votes: each source's whole vote vector over its coverage set is one code.

A source's *code* on a row is its vote vector over the tasks it covers (abstain on some of them
is part of the code), in mixed radix ``(k_s + 1)`` over its covered tasks; a source abstains on
a row when it abstains on every task. With one task the code is the vote itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metal.errors import ConfigError
from metal.label_model.multitask.votes import MultiTaskVotes
from metal.label_model.statistics import SourceStatistics

MAX_SOURCE_CODES = 1_000_000

class MultiTaskCoding:
    """Mixed-radix codes of each source's vote vector over its coverage set.

    Source ``i`` with covered tasks ``s_1 < ... < s_r`` emits the code
    ``sum_j (v_{s_j} + 1) * prod_{l<j} (k_{s_l} + 1) - 1`` (``-1`` = abstain on every task).
    With one task the code is the vote itself, as in :class:`~metal.label_model.LabelModel`.
    """

    def __init__(self, cardinalities: Sequence[int], coverage: np.ndarray) -> None:
        self.cardinalities = np.asarray(cardinalities, dtype=np.int64)
        self.coverage = np.asarray(coverage, dtype=bool)
        m, t = self.coverage.shape
        base = self.cardinalities + 1
        W = np.zeros((m, t), dtype=np.int64)
        n_values = np.ones(m, dtype=np.int64)  # a silent source keeps one (never fired) code
        for i in range(m):  # loop over sources, not rows
            covered = np.flatnonzero(self.coverage[i])
            if covered.size == 0:
                continue
            size = int(np.prod([int(b) for b in base[covered]], dtype=object))
            if size - 1 > MAX_SOURCE_CODES:
                raise ConfigError(
                    f"source {i} votes on {covered.size} tasks, giving {size - 1} possible vote "
                    f"vectors (limit {MAX_SOURCE_CODES}); split it into one source per task "
                    "(columns of a dict input)"
                )
            W[i, covered] = np.concatenate([[1], np.cumprod(base[covered])[:-1]])
            n_values[i] = size - 1
        self.weights = W
        self.n_values = n_values
        self.offsets = np.concatenate([[0], np.cumsum(n_values)[:-1]]).astype(np.int64)

    @property
    def n_sources(self) -> int:
        return int(self.coverage.shape[0])

    @property
    def n_indicators(self) -> int:
        return int(self.n_values.sum())

    def encode(self, sources: np.ndarray, votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indicator index of each vote vector, and whether it lies in the source's coverage."""
        W = self.weights[sources]
        inside = ~((votes >= 0) & (W == 0)).any(axis=1)
        code = ((votes + 1) * W).sum(axis=1) - 1
        return self.offsets[sources] + np.maximum(code, 0), inside & (code >= 0)

    def decode(self, indicators: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source and ``(d, t)`` vote vector of each indicator."""
        indicators = np.asarray(indicators, dtype=np.int64)
        src = np.searchsorted(self.offsets, indicators, side="right") - 1
        code = indicators - self.offsets[src] + 1
        W = self.weights[src]
        votes = (code[:, None] // np.maximum(W, 1)) % (self.cardinalities + 1)[None, :] - 1
        return src, np.where(W > 0, votes, -1)

    def statistics(self, votes: MultiTaskVotes, chunk_rows: int) -> SourceStatistics:
        """One chunked pass: counts and co-occurrences of every (source, code) indicator."""
        stats = SourceStatistics(self.n_values)
        for ch in votes.iter_votes(chunk_rows):
            ind, ok = self.encode(ch.sources, ch.votes)
            stats.update(ch.stop - ch.start, ch.rows[ok], ind[ok])
        return stats


def complete_votes(votes: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Add the votes a vote vector implies through the feasible set.

    A task value is implied when every feasible vector consistent with the explicit votes
    has it (e.g. "Doctor" implies "Person" and "organisation type = N/A"). Vote vectors that
    no feasible vector matches keep their explicit votes only.

    Parameters
    ----------
    votes
        ``(d, t)`` vote vectors, ``-1`` = no vote on that task.
    feasible
        ``(K, t)`` feasible label vectors.
    """
    d, t = votes.shape
    consistent = np.ones((d, feasible.shape[0]), dtype=bool)
    for s in range(t):
        consistent &= (votes[:, s, None] < 0) | (votes[:, s, None] == feasible[None, :, s])
    out = votes.copy()
    has = consistent.any(axis=1)
    for s in range(t):
        lo = np.where(consistent, feasible[None, :, s], np.iinfo(np.int64).max).min(axis=1)
        hi = np.where(consistent, feasible[None, :, s], -1).max(axis=1)
        implied = has & (lo == hi) & (votes[:, s] < 0)
        out[implied, s] = lo[implied]
    return out


def vote_agreement(votes: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """``(d, K)``: fraction of each (completed) vote vector's task votes that match ``y_j``."""
    n_votes = np.maximum((votes >= 0).sum(axis=1), 1)
    agree = np.zeros((votes.shape[0], feasible.shape[0]))
    for s in range(votes.shape[1]):
        agree += (votes[:, s, None] >= 0) & (votes[:, s, None] == feasible[None, :, s])
    return agree / n_votes[:, None]


def coverage_projection(sources: np.ndarray, coverage: np.ndarray,
                        feasible: np.ndarray) -> np.ndarray:
    """``(d, K)`` index of ``y_j`` projected on the coverage set of each indicator's source.

    Two feasible vectors that agree on every task a source covers get the same index: tying
    their parameters says the source's behaviour depends on the truth only through the tasks
    it labels.
    """
    d, K = sources.shape[0], feasible.shape[0]
    out = np.zeros((d, K), dtype=np.int64)
    for src in np.unique(sources):
        rows = np.flatnonzero(sources == src)
        covered = np.flatnonzero(coverage[src])
        _, proj = np.unique(feasible[:, covered], axis=0, return_inverse=True)
        out[rows] = proj.ravel()[None, :]
    return out


def agreement_projection(agreement: np.ndarray) -> np.ndarray:
    """``(d, K)`` index of each feasible vector's agreement level with each indicator.

    Tying the parameters of feasible vectors with the same agreement is the MeTaL paper's
    simplified class-conditional model: a source's vote has one probability under the truths
    it matches, and errs uniformly over the truths it contradicts (with one level per partial
    match, e.g. right coarse type but wrong fine type).
    """
    levels = np.round(agreement * 1e6).astype(np.int64)
    order = np.sort(levels, axis=1)
    first = np.concatenate([np.ones((levels.shape[0], 1), bool), order[:, 1:] != order[:, :-1]],
                           axis=1)
    rank = np.cumsum(first, axis=1) - 1
    # rank of each entry = rank of its value in the sorted row
    pos = np.argsort(np.argsort(levels, axis=1, kind="stable"), axis=1, kind="stable")
    return np.take_along_axis(rank, pos, axis=1)

"""Sufficient statistics of a label matrix, gathered in one chunked pass.

Each *group* (a source, or a clique of dependent sources merged into one factor) emits one of
``n_values[g]`` codes or abstains. The statistics are counts of every code (``counts``) and of
every pair of codes on the same row (``cooccurrence``). They are exact integers, so partial
statistics from chunks, files or Dask partitions add up (:meth:`SourceStatistics.merge`).
After this pass the fit never looks at the data again: its cost does not depend on ``n``.

No dense ``n x (m*k)`` one-hot matrix is ever built: each chunk becomes a sparse indicator
matrix with one stored entry per vote.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from metal.errors import ConfigError


@dataclass
class SourceStatistics:
    """Counts of indicator values and of their co-occurrences.

    Attributes
    ----------
    n_values
        ``(G,)`` number of codes each group can emit (abstain excluded).
    n_rows
        Number of rows seen so far.
    counts
        ``(D,)`` int64, how often each indicator ``(group, code)`` fired; ``D = n_values.sum()``.
    cooccurrence
        ``(D, D)`` sparse int64, how often two indicators fired on the same row (the diagonal
        equals ``counts``).
    """

    n_values: np.ndarray
    n_rows: int = 0
    counts: np.ndarray = field(default=None)  # type: ignore[assignment,arg-type]
    cooccurrence: sp.csr_matrix = field(default=None)  # type: ignore[assignment,arg-type]

    def __post_init__(self) -> None:
        self.n_values = np.asarray(self.n_values, dtype=np.int64)
        if self.n_values.ndim != 1 or (self.n_values < 1).any():
            raise ConfigError(f"n_values must be a 1-D array of positive ints, got {self.n_values}")
        D = self.n_indicators
        if self.counts is None:
            self.counts = np.zeros(D, dtype=np.int64)
        if self.cooccurrence is None:
            self.cooccurrence = sp.csr_matrix((D, D), dtype=np.int64)

    @property
    def n_groups(self) -> int:
        return int(self.n_values.shape[0])

    @property
    def n_indicators(self) -> int:
        return int(self.n_values.sum())

    @property
    def offsets(self) -> np.ndarray:
        """Index of each group's first indicator."""
        return np.concatenate([[0], np.cumsum(self.n_values)[:-1]]).astype(np.int64)

    @property
    def indicator_group(self) -> np.ndarray:
        """``(D,)`` the group of every indicator."""
        return np.repeat(np.arange(self.n_groups), self.n_values)

    def update(self, n_rows: int, rows: np.ndarray, indicators: np.ndarray) -> SourceStatistics:
        """Add a block of ``n_rows`` rows whose fired indicators are ``(rows, indicators)``.

        ``rows`` are indices local to the block (``0..n_rows-1``); each row fires at most one
        indicator per group.
        """
        D = self.n_indicators
        self.n_rows += int(n_rows)
        if indicators.size == 0:
            return self
        self.counts += np.bincount(indicators, minlength=D).astype(np.int64)
        A = sp.csr_matrix(
            (np.ones(indicators.size, dtype=np.int64), (rows, indicators)), shape=(n_rows, D)
        )
        self.cooccurrence = (self.cooccurrence + (A.T @ A)).tocsr()
        return self

    def merge(self, other: SourceStatistics) -> SourceStatistics:
        """Statistics of the union of both row sets (a new object)."""
        if not np.array_equal(self.n_values, other.n_values):
            raise ConfigError(
                "cannot merge statistics gathered with different source codings "
                f"({self.n_values.tolist()} vs {other.n_values.tolist()}); gather every part with "
                "the same sources and cardinality"
            )
        return SourceStatistics(
            n_values=self.n_values.copy(),
            n_rows=self.n_rows + other.n_rows,
            counts=self.counts + other.counts,
            cooccurrence=(self.cooccurrence + other.cooccurrence).tocsr(),
        )

    __add__ = merge

    def emitted(self) -> np.ndarray:
        """Indices of the indicators that fired at least once (only these are modelled)."""
        return np.flatnonzero(self.counts > 0)

    def moments(self, indicators: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Means ``E[psi]`` and second moments ``E[psi psi^T]`` of the given indicators."""
        if self.n_rows == 0:
            raise ConfigError("no rows were accumulated; statistics are empty")
        idx = self.emitted() if indicators is None else np.asarray(indicators)
        means = self.counts[idx].astype(np.float64) / self.n_rows
        second = self.cooccurrence[idx][:, idx].toarray().astype(np.float64) / self.n_rows
        return means, second


def third_moments(
    blocks: Iterable[tuple[int, np.ndarray, np.ndarray]], indicators: np.ndarray
) -> np.ndarray:
    """``E[psi_a psi_b psi_c]`` of the given indicators, from ``(n_rows, rows, indicators)``
    blocks (as passed to :meth:`SourceStatistics.update`).

    The cost is one sparse product per indicator and block, so it is meant for small ``d``.
    """
    idx = np.asarray(indicators, dtype=np.int64)
    d = idx.size
    lookup = np.full(int(idx.max()) + 1 if d else 1, -1, dtype=np.int64)
    lookup[idx] = np.arange(d)
    out = np.zeros((d, d, d))
    total = 0
    for n_rows, rows, ind in blocks:
        total += int(n_rows)
        ind = np.asarray(ind)
        keep = ind < lookup.size
        rows, ind = np.asarray(rows)[keep], ind[keep]
        col = lookup[ind]
        keep = col >= 0
        A = sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], col[keep])),
                          shape=(int(n_rows), d))
        AT = A.T.tocsr()
        for a in range(d):
            fired = AT[a].indices
            if fired.size:
                sub = A[fired]
                out[a] += (sub.T @ sub).toarray()
    return out / max(total, 1)

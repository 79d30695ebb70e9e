"""Integer-matrix kernels for dense label-matrix blocks with few indicators.

A dense block of ``R`` rows and ``m`` sources becomes an ``int8`` indicator block ``X``
(``R x m*k``, one column per source and value, built with ``k`` vectorised comparisons). Then

* the statistics pass needs ``X^T X`` (co-occurrence counts, with the counts on its diagonal):
  one integer matrix product with exact ``int32`` accumulation;
* the prediction pass needs ``X @ table`` for a ``float64`` table of log-likelihoods. The table
  is written in fixed point (scale ``2^-e``) as signed base-256 digits, so the product is again
  an exact integer product; the only error is the rounding of the table to ``2^-e``, below
  ``1e-10`` per vote (:data:`SCORE_DIGITS` digits, ``e`` chosen from the table's range).

Both use ``torch._int_mm`` (int8 x int8 -> int32; on recent x86 CPUs it runs on the VNNI/AMX
integer units) and fall back to a ``float64`` NumPy product (exact for these integer ranges)
where it is missing. The block stays bounded (at most :data:`MAX_BLOCK_BYTES` of indicators),
and the kernels are used only when ``m*k`` is at most :data:`MAX_DENSE_INDICATORS`; above that
the sparse path (one stored entry per vote) is cheaper.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from metal.label_model.statistics import SourceStatistics

# m*k up to which the dense (m*k)^2 integer product beats the sparse one
MAX_DENSE_INDICATORS = 1024
# bytes of the int8 indicator block processed at once
MAX_BLOCK_BYTES = 16 * 2**20
# signed base-256 digits of the fixed-point log-likelihood table (40 bits)
SCORE_DIGITS = 5

_INT_MM: Any = None


def _int_mm() -> Any:
    """``torch._int_mm`` if this torch has a working CPU version, else ``False``."""
    global _INT_MM
    if _INT_MM is None:
        try:
            import torch

            a = torch.ones((3, 2), dtype=torch.int8)
            ok = bool((torch._int_mm(a, a.T) == 2).all())
            _INT_MM = torch._int_mm if ok else False
        except Exception:  # missing or unsupported on this build: use the NumPy product
            _INT_MM = False
    return _INT_MM


def _matmul(a: np.ndarray, b: np.ndarray, transpose_a: bool = False) -> np.ndarray:
    """Exact ``a @ b`` (``a.T @ b`` with ``transpose_a``) of int8 matrices, int64 result."""
    mm = _int_mm()
    if mm is not False:
        import torch

        ta = torch.from_numpy(a)
        return mm(ta.T if transpose_a else ta, torch.from_numpy(b)).numpy().astype(np.int64)
    fa = a.astype(np.float64)
    return ((fa.T if transpose_a else fa) @ b.astype(np.float64)).astype(np.int64)


def dense_applicable(L: Any, n_indicators: int) -> bool:
    """Whether ``L`` is a dense integer block small enough in ``m*k`` for these kernels."""
    return (isinstance(L, np.ndarray) and L.ndim == 2 and L.dtype.kind in "iu"
            and 0 < n_indicators <= MAX_DENSE_INDICATORS)


def _block_rows(n_indicators: int) -> int:
    return max(256, MAX_BLOCK_BYTES // max(n_indicators, 1))


def _indicators(block: np.ndarray, k: int, out: np.ndarray) -> np.ndarray:
    """``(k, rows, m)`` int8 one-hot of a block: ``X[v]`` marks the votes ``v`` (each slab
    contiguous, so the comparisons run at full vector speed)."""
    X = out[:, :block.shape[0]]
    for v in range(k):
        np.equal(block, v, out=X[v].view(bool))
    return X


def _source_major(m: int, k: int) -> np.ndarray:
    """Column of the value-major block holding indicator ``i * k + v``."""
    return (np.arange(k)[None, :] * m + np.arange(m)[:, None]).ravel()


def dense_cooccurrence(L: np.ndarray, cardinality: int) -> np.ndarray:
    """``(m*k, m*k)`` int64 co-occurrence counts of a dense ``-1``-padded block.

    Entry ``[i*k + v, j*k + w]`` counts the rows where source ``i`` votes ``v`` and source ``j``
    votes ``w``; the diagonal holds the counts of each ``(source, value)``.
    """
    n, m = L.shape
    k = int(cardinality)
    rows = _block_rows(m * k)
    buf = np.empty((k, min(rows, n), m), dtype=np.int8)
    gram = np.zeros((m, k, m, k), dtype=np.int64)  # [i, v, j, w]
    for start in range(0, n, rows):
        X = _indicators(L[start:start + rows], k, buf)
        for v in range(k):
            for w in range(v, k):
                g = _matmul(X[v], X[w], transpose_a=True)
                gram[:, v, :, w] += g
                if w != v:
                    gram[:, w, :, v] += g.T
    return gram.reshape(m * k, m * k)


def statistics_from_counts(cooccurrence: np.ndarray, n_rows: int, n_sources: int,
                           cardinality: int) -> SourceStatistics:
    """:class:`SourceStatistics` of independent sources from a dense co-occurrence matrix."""
    return SourceStatistics(n_values=np.full(n_sources, int(cardinality)), n_rows=int(n_rows),
                            counts=np.diag(cooccurrence).astype(np.int64),
                            cooccurrence=sp.csr_matrix(cooccurrence))


def dense_statistics(L: np.ndarray, cardinality: int) -> SourceStatistics:
    """Statistics of a validated dense block (the same counts as the sparse path)."""
    n, m = L.shape
    return statistics_from_counts(dense_cooccurrence(L, cardinality), n, m, cardinality)


class DenseScorer:
    """Log posteriors of dense blocks from a per-indicator log-likelihood table.

    The score of class ``y`` on a row is ``base[y] + sum over its votes of table[vote, y]``.
    Softmax does not change when a row's scores shift together, so each vote enters as its
    difference to class 0, ``table[vote, y] - table[vote, 0]``, in fixed point.

    Parameters
    ----------
    table
        ``(m*k, k)`` log-likelihood of each indicator ``i*k + v`` under each class (rows of
        indicators that carry no evidence are 0).
    base
        ``(k,)`` per-class score of a row without votes (log prior and abstention terms).
    unseen
        ``(m*k,)`` mask of indicators never seen in fit; their votes are counted.
    """

    def __init__(self, table: np.ndarray, base: np.ndarray, n_sources: int, cardinality: int,
                 unseen: np.ndarray | None = None) -> None:
        self.m, self.k = int(n_sources), int(cardinality)
        m, k = self.m, self.k
        self.base = np.asarray(base, dtype=np.float64)
        t = np.empty((m * k, k))
        t[_source_major(m, k)] = np.asarray(table, dtype=np.float64)  # to value-major rows
        rel = t[:, 1:] - t[:, :1]
        top = float(np.abs(rel).max()) if rel.size else 0.0
        # a row's digit sum (at most m votes of |digit| <= 128) stays far inside int32, and the
        # fixed-point value of each vote keeps 8*SCORE_DIGITS - 2 bits
        self.exponent = int(np.ceil(np.log2(max(top, 1e-300)))) - (8 * SCORE_DIGITS - 2)
        q = np.round(np.ldexp(rel, -self.exponent)).astype(np.int64)
        digits = []
        for _ in range(SCORE_DIGITS):
            low = ((q + 128) % 256) - 128
            digits.append(low)
            q = (q - low) // 256
        cols = digits  # column d * (k-1) + (y-1): digit d of class y
        self.has_unseen = unseen is not None and bool(np.asarray(unseen).any())
        if self.has_unseen:
            u = np.zeros((m * k, 1), dtype=np.int64)
            u[_source_major(m, k), 0] = np.asarray(unseen, dtype=np.int64)
            cols = cols + [u]
        self.weights = np.ascontiguousarray(np.concatenate(cols, axis=1).astype(np.int8))
        # digit sums -> class scores: column d * (k-1) + (y-1) weighs 256^d * 2^exponent
        self.combine = np.zeros((self.weights.shape[1], k - 1))
        for d in range(SCORE_DIGITS):
            for y in range(k - 1):
                self.combine[d * (k - 1) + y, y] = np.ldexp(256.0 ** d, self.exponent)

    def log_proba(self, L: np.ndarray) -> tuple[np.ndarray, int]:
        """``(n, k)`` log posterior of a dense block and its number of votes on unseen values."""
        n = L.shape[0]
        m, k = self.m, self.k
        rows = _block_rows(m * k)
        buf = np.empty((k, min(rows, n), m), dtype=np.int8)
        out = np.empty((k, n))  # class-major, so the normalisation runs on contiguous rows
        n_unseen = 0
        # the weights' rows are value-major (v * m + i): one slab of m rows per value
        slabs = [np.ascontiguousarray(self.weights[v * m:(v + 1) * m]) for v in range(k)]
        for start in range(0, n, rows):
            X = _indicators(L[start:start + rows], k, buf)
            S = _matmul(X[0], slabs[0])
            for v in range(1, k):
                S += _matmul(X[v], slabs[v])
            S = S.astype(np.float64)
            stop = start + X.shape[1]
            out[0, start:stop] = 0.0
            out[1:, start:stop] = (S @ self.combine).T
            if self.has_unseen:
                n_unseen += int(S[:, -1].sum())
        out += self.base[:, None]
        top = out.max(axis=0)
        total = np.zeros(n)
        for y in range(k):
            total += np.exp(out[y] - top)
        out -= top + np.log(total)
        return out.T.copy(), n_unseen

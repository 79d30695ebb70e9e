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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from metal.label_model.statistics import SourceStatistics

# m*k up to which the dense (m*k)^2 integer product beats the sparse one
MAX_DENSE_INDICATORS = 1024
# bytes of the int8 indicator block processed at once: about a core's L2 cache, so the block
# and its work buffers stay in cache between the comparisons and the products (4 MiB blocks
# were ~8% slower per pass at m*k = 150; smaller ones no faster)
MAX_BLOCK_BYTES = 2**20
# fewest rows per block when a short matrix's blocks are sized down to an eighth of it
MIN_BLOCK_ROWS = 1024
# m*k up to which the statistics pass forms one wide indicator product per block (see
# DenseCounter); measured: 0.6x to 0.85x the time of the per-pair products at m*k <= 150,
# even at 200, 1.3x to 1.7x at 1000
WIDE_COUNT_INDICATORS = 192
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


def _matmul(a: np.ndarray, b: np.ndarray, transpose_a: bool = False,
            out: np.ndarray | None = None) -> np.ndarray:
    """Exact ``a @ b`` (``a.T @ b`` with ``transpose_a``) of int8 matrices, as int32.

    ``out`` (a C-contiguous int32 array of the result's shape) is filled and returned, so a
    caller that reuses it allocates nothing per block.
    """
    if out is None:
        out = np.empty((a.shape[1] if transpose_a else a.shape[0], b.shape[1]), dtype=np.int32)
    _product(_operand(a), _operand(b), _operand(out), transpose_a)
    return out


def _operand(a: np.ndarray) -> Any:
    """``a`` as an operand of :func:`_product`: a torch tensor sharing its memory where
    ``torch._int_mm`` works, else ``a`` itself. Work buffers are wrapped once, and each block
    slices the wrapped buffer, so the per-product conversion of :func:`_matmul` is not paid
    thousands of times per pass."""
    if _int_mm() is False:
        return a
    import torch

    return torch.from_numpy(a)


def _product(a: Any, b: Any, out: Any, transpose_a: bool = False) -> None:
    """:func:`_matmul` on operands from :func:`_operand` (slices of them), into ``out``."""
    mm = _int_mm()
    if mm is not False:
        mm(a.T if transpose_a else a, b, out=out)
        return
    fa = a.astype(np.float64)
    out[...] = ((fa.T if transpose_a else fa) @ b.astype(np.float64)).astype(np.int32)


def dense_applicable(L: Any, n_indicators: int) -> bool:
    """Whether ``L`` is a dense integer block small enough in ``m*k`` for these kernels."""
    return (isinstance(L, np.ndarray) and L.ndim == 2 and L.dtype.kind in "iu"
            and 0 < n_indicators <= MAX_DENSE_INDICATORS)


def block_rows(n_indicators: int, n_rows: int | None = None) -> int:
    """Rows per block: at most :data:`MAX_BLOCK_BYTES` of indicators, and for a short matrix
    at most an eighth of its rows, so the work buffers stay small next to the matrix itself."""
    rows = max(256, MAX_BLOCK_BYTES // max(n_indicators, 1))
    if n_rows is not None:
        rows = min(rows, max(MIN_BLOCK_ROWS, -(-int(n_rows) // 8)))
    return rows


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


class DenseCounter:
    """Accumulates the ``(m*k)^2`` co-occurrence counts of dense blocks, block by block.

    Its work buffers are allocated once and reused for every block added, so a long stream
    of blocks (a file read piece by piece, a Dask partition) does not allocate per block.
    """

    def __init__(self, n_sources: int, cardinality: int, n_rows: int | None = None) -> None:
        self.m, self.k = int(n_sources), int(cardinality)
        m, k = self.m, self.k
        self.rows = block_rows(m * k, n_rows)
        # The integer kernel reorders the transposed operand of every product, which costs
        # as much as the product itself when m is small. Up to WIDE_COUNT_INDICATORS
        # indicators a block is one (rows, m*k) matrix with value-major columns and one
        # product with itself (pairs v > w computed too, but one reorder); above, one
        # contiguous (m, m) product per value pair v <= w of (rows, m) slabs, whose
        # multiply-adds then dominate.
        self._wide = m * k <= WIDE_COUNT_INDICATORS
        self._pairs = [(v, w) for v in range(k) for w in range(v, k)]
        if self._wide:
            self._acc = np.zeros((m * k, m * k), dtype=np.int64)  # [v*m + i, w*m + j]
            self._prod = np.empty((m * k, m * k), dtype=np.int32)
        else:  # one contiguous (m, m) accumulator per pair: a contiguous add per block
            self._acc = np.zeros((len(self._pairs), m, m), dtype=np.int64)
            self._prod = np.empty((m, m), dtype=np.int32)
        self.n_rows = 0
        self._buf: np.ndarray | None = None
        self._ops: tuple[Any, Any] | None = None  # the buffers as product operands

    def add(self, L: np.ndarray) -> DenseCounter:
        """Count the rows of a validated dense ``(rows, m)`` block."""
        n, k, m = L.shape[0], self.k, self.m
        if self._buf is None:
            rows = min(self.rows, max(n, 1))
            # wide: (rows, k, m), a row's indicators together; else (k, rows, m) slabs
            self._buf = np.empty((rows, k, m) if self._wide else (k, rows, m), dtype=np.int8)
        buf, g = self._buf, self._prod
        if self._ops is None:
            self._ops = (_operand(buf.reshape(buf.shape[0], k * m) if self._wide else buf),
                         _operand(g))
        op_x, op_g = self._ops
        step = buf.shape[0] if self._wide else buf.shape[1]
        for start in range(0, n, step):
            if self._wide:
                block = L[start:start + step]
                r = block.shape[0]
                for v in range(k):
                    np.equal(block, v, out=buf[:r, v].view(bool))
                _product(op_x[:r], op_x[:r], op_g, transpose_a=True)
                self._acc += g
                continue
            r = _indicators(L[start:start + step], k, buf).shape[1]
            for p, (v, w) in enumerate(self._pairs):
                _product(op_x[v, :r], op_x[w, :r], op_g, transpose_a=True)
                self._acc[p] += g
        self.n_rows += n
        return self

    def cooccurrence(self) -> np.ndarray:
        m, k = self.m, self.k
        if self._wide:
            gram = self._acc.reshape(k, m, k, m).transpose(1, 0, 3, 2)  # -> [i, v, j, w]
            return np.ascontiguousarray(gram).reshape(m * k, m * k)
        out = np.empty((m, k, m, k), dtype=np.int64)  # [i, v, j, w]
        for p, (v, w) in enumerate(self._pairs):
            out[:, v, :, w] = self._acc[p]
            if w != v:
                out[:, w, :, v] = self._acc[p].T
        return out.reshape(m * k, m * k)


def dense_cooccurrence(L: np.ndarray, cardinality: int) -> np.ndarray:
    """``(m*k, m*k)`` int64 co-occurrence counts of a dense ``-1``-padded block.

    Entry ``[i*k + v, j*k + w]`` counts the rows where source ``i`` votes ``v`` and source ``j``
    votes ``w``; the diagonal holds the counts of each ``(source, value)``.
    """
    n, m = L.shape
    return DenseCounter(m, cardinality, n).add(L).cooccurrence()


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

    def _buffers(self, rows: int) -> dict[str, np.ndarray]:
        """Work buffers for blocks of up to ``rows`` rows, allocated once and reused."""
        bufs = getattr(self, "_bufs", None)
        if bufs is None or bufs["top"].shape[0] < rows:
            k, c = self.k, self.weights.shape[1]
            bufs = {"X": np.empty((k, rows, self.m), dtype=np.int8),
                    "S": np.empty((rows, c), dtype=np.int32),
                    "T": np.empty((rows, c), dtype=np.int32),
                    "F": np.empty((rows, c)),
                    "B": np.empty((k, rows)), "E": np.empty((k, rows)),
                    "top": np.empty(rows), "tot": np.empty(rows)}
            self._bufs = bufs
            self._ops = {name: _operand(bufs[name]) for name in ("X", "S", "T")}
        return bufs

    def log_proba(self, L: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """``(n, k)`` log posterior of a dense block and its number of votes on unseen values.

        ``out`` (an ``(n, k)`` float array, e.g. ``float32`` or a slice of a larger result)
        receives the result; by default a new ``float64`` array. Work buffers are sized to a
        block, not to ``n``, and reused across calls.
        """
        return self._posterior(L, out, log=True)

    def proba(self, L: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """:meth:`log_proba` without the logarithm: ``(n, k)`` posterior, unseen votes."""
        return self._posterior(L, out, log=False)

    def _posterior(self, L: np.ndarray, out: np.ndarray | None, log: bool
                   ) -> tuple[np.ndarray, int]:
        n = L.shape[0]
        if out is None:
            out = np.empty((n, self.k))
        elif out.shape != (n, self.k):
            raise ValueError(f"out has shape {out.shape}; expected {(n, self.k)}")
        n_unseen = 0
        for start, block in self.blocks(L, log=log):
            n_unseen += block.n_unseen
            part = out[start:start + block.post.shape[1]]
            for y in range(self.k):  # column by column: half the time of one transposed copy
                part[:, y] = block.post[y]
        return out, n_unseen

    def blocks(self, L: np.ndarray, log: bool = True, normalize: bool = True
               ) -> Iterator[tuple[int, ScoredBlock]]:
        """Score ``L`` block by block: ``(first row, ScoredBlock)`` for each block, with the
        log posterior (``log=True``) or the posterior.

        With ``log=False, normalize=False`` the block's ``post`` is ``exp(score - top)``, not
        yet divided by ``total`` (for a caller that scales each row anyway: one pass less).
        The block's arrays are work buffers, overwritten by the next block.
        """
        n = L.shape[0]
        m, k = self.m, self.k
        rows = min(block_rows(m * k, n), max(n, 1))
        bufs = self._buffers(rows)
        ops = self._ops
        # the weights' rows are value-major (v * m + i): one slab of m rows per value
        if not hasattr(self, "_slabs"):
            self._slabs = [_operand(np.ascontiguousarray(self.weights[v * m:(v + 1) * m]))
                           for v in range(k)]
            # digit sums -> the scores of classes 1..k-1 (class 0 is the reference: score 0)
            self._combine_t = np.ascontiguousarray(self.combine.T)
        slabs = self._slabs
        for start in range(0, n, rows):
            X = _indicators(L[start:start + rows], k, bufs["X"])
            r = X.shape[1]
            S, T, F = bufs["S"][:r], bufs["T"][:r], bufs["F"][:r]
            op_x, op_s, op_t = ops["X"], ops["S"][:r], ops["T"][:r]
            _product(op_x[0, :r], slabs[0], op_s)
            for v in range(1, k):
                _product(op_x[v, :r], slabs[v], op_t)
                S += T
            n_unseen = int(S[:, -1].sum()) if self.has_unseen else 0
            np.copyto(F, S)
            # class-major (k, r), so the normalisation runs on contiguous rows
            B, E, top, tot = bufs["B"][:, :r], bufs["E"][:, :r], bufs["top"][:r], bufs["tot"][:r]
            np.matmul(self._combine_t, F.T, out=B[1:])
            B[0] = self.base[0]
            B[1:] += self.base[1:, None]
            np.max(B, axis=0, out=top)
            B -= top
            np.exp(B, out=E)
            np.sum(E, axis=0, out=tot)
            if log:
                B -= np.log(tot, out=E[0])  # E is scratch from here on
                post = B
            elif normalize:
                post = np.divide(E, tot, out=E)
            else:
                post = E
            yield start, ScoredBlock(X=X, post=post, top=top, total=tot, n_unseen=n_unseen,
                                     X_op=op_x[:, :r])


@dataclass
class ScoredBlock:
    """One block of :meth:`DenseScorer.blocks` (work buffers, valid until the next block)."""

    X: np.ndarray  # (k, r, m) int8 indicators, X[v] marks the votes v
    post: np.ndarray  # (k, r) posterior or log posterior, class-major
    # the row's log normaliser log sum_y exp(score_y - score_0) is top + log(total)
    top: np.ndarray  # (r,) largest score
    total: np.ndarray  # (r,) sum over classes of exp(score - top)
    n_unseen: int  # votes on values unseen in fit
    X_op: Any = None  # X as a product operand (a view of the wrapped buffer)

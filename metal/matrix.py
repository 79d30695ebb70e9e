"""Label matrices: the one input convention, validated once at the boundary.

Convention everywhere in metal: ``-1`` means *abstain*, classes are ``0..k-1``.

* A dense label matrix is any 2-D integer ``numpy`` array (a float array is accepted when every
  entry is integral; NaN is rejected). It is never copied into a wider dtype: an ``int8``
  matrix stays ``int8``.
* A ``scipy.sparse`` label matrix stores votes only: an entry that is not stored means
  *abstain*, a stored entry is a class label (an explicitly stored ``0`` is class 0).
  Build one with :func:`to_sparse_labels`. Converting a dense ``-1``-padded matrix with
  ``csr_matrix(L)`` would silently drop every class-0 vote, so a sparse matrix that stores
  ``-1`` entries is rejected with an explanation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import scipy.sparse as sp

from metal.errors import LabelMatrixError

ABSTAIN = -1

LabelInput = Union[np.ndarray, sp.spmatrix, sp.sparray, Any]  # noqa: UP007 (runtime alias)

DEFAULT_CHUNK_ROWS = 65536


@dataclass(frozen=True)
class VoteChunk:
    """The non-abstain votes of a block of rows, as coordinate arrays.

    ``rows`` are absolute row indices, ``cols`` source indices, ``values`` the labels.
    """

    start: int
    stop: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class LabelMatrix:
    """A validated label matrix (dense ``ndarray`` or CSR) with its shape and value range."""

    data: np.ndarray | sp.csr_matrix
    n_rows: int
    n_sources: int
    max_label: int  # highest class label present, -1 if there is no vote at all

    @property
    def has_votes(self) -> bool:
        return self.max_label >= 0

    @property
    def n_votes(self) -> int:
        """Number of non-abstain entries (one pass over the data; not needed for validation)."""
        if isinstance(self.data, sp.csr_matrix):
            return int(self.data.nnz)
        return sum(int(np.count_nonzero(self.data[i:i + DEFAULT_CHUNK_ROWS] >= 0))
                   for i in range(0, self.n_rows, DEFAULT_CHUNK_ROWS))

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.data)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_sources)

    def iter_votes(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[VoteChunk]:
        """Yield the votes block by block so no pass ever holds more than one block."""
        for start in range(0, self.n_rows, chunk_rows):
            stop = min(start + chunk_rows, self.n_rows)
            yield self.votes_in(start, stop)

    def votes_in(self, start: int, stop: int) -> VoteChunk:
        if isinstance(self.data, sp.csr_matrix):
            block = self.data[start:stop].tocoo()
            keep = block.data >= 0
            rows = block.row[keep].astype(np.int64) + start
            return VoteChunk(start, stop, rows, block.col[keep].astype(np.int64),
                             block.data[keep].astype(np.int64))
        dense = self.data[start:stop]
        r, c = np.nonzero(dense >= 0)
        return VoteChunk(start, stop, r.astype(np.int64) + start, c.astype(np.int64),
                         dense[r, c].astype(np.int64))


def _fail(name: str, what: str, expected: str, fix: str) -> LabelMatrixError:
    return LabelMatrixError(f"{name} {what}; expected {expected}. {fix}")


def as_integer_labels(A: np.ndarray, name: str, missing_fix: str) -> np.ndarray:
    """``A`` as integer labels: floats must be integral and NaN-free, bool and other dtypes fail.

    Shared by every label check (label matrices, gold labels, multi-task votes); an integer
    array is returned as it is, without a copy.
    """
    expected = "integer labels (-1 abstain/unknown, 0..k-1 classes)"
    if A.dtype.kind == "b":
        raise _fail(name, "has dtype bool", expected,
                    "Convert with A.astype(int) and use -1 for abstain.")
    if A.dtype.kind == "f":
        if np.isnan(A).any():
            raise _fail(name, "contains NaN", expected, missing_fix)
        if A.size and not np.all(np.mod(A, 1) == 0):
            raise _fail(name, "contains non-integral values", expected,
                        "Round or map your labels to integers 0..k-1.")
        return A.astype(np.int64)
    if A.dtype.kind not in "iu":
        raise _fail(name, f"has dtype {A.dtype}", "an integer dtype",
                    "Convert with A.astype(int).")
    return A


def check_label_matrix(
    L: LabelInput,
    *,
    cardinality: int | None = None,
    n_sources: int | None = None,
    name: str = "L",
) -> LabelMatrix:
    """Validate a label matrix and return it as a :class:`LabelMatrix` (no copy when possible).

    Parameters
    ----------
    L
        Dense ``(n, m)`` integer array with ``-1`` for abstain, or a ``scipy.sparse`` matrix
        storing votes only (see the module docstring).
    cardinality
        If given, every vote must be in ``0..cardinality-1``.
    n_sources
        If given, ``L`` must have exactly this many columns (e.g. the number seen in ``fit``).
    name
        Name of the argument, used in error messages.

    Raises
    ------
    LabelMatrixError
        Wrong type, dimensionality, dtype, empty shape, NaN/non-integral values, values below
        -1 or not below ``cardinality``, or a wrong number of columns.
    """
    if sp.issparse(L):
        _check_no_duplicates(L, name)
        csr = sp.csr_matrix(L)
        if csr.ndim != 2:
            raise _fail(name, f"has {csr.ndim} dimensions", "a 2-D (n, m) matrix", "")
        data = as_integer_labels(csr.data, name, "Leave missing votes unstored.")
        if data is not csr.data:
            csr = sp.csr_matrix((data, csr.indices, csr.indptr), shape=csr.shape)
        if csr.nnz and (csr.data == ABSTAIN).any():
            raise _fail(
                name, "is sparse but stores -1 entries",
                "a sparse matrix that stores votes only (unstored = abstain)",
                "It looks converted from a dense -1-padded matrix with csr_matrix(L), which drops "
                "every class-0 vote. Pass the dense matrix, or convert it with "
                "metal.to_sparse_labels(L).",
            )
        mat: np.ndarray | sp.csr_matrix = csr
        values = csr.data
        n_rows, n_cols = csr.shape
    else:
        if isinstance(L, (list, tuple)):
            try:
                L = np.asarray(L)
            except ValueError as exc:  # ragged nested lists
                raise _fail(name, "is a ragged nested list (rows of different lengths)",
                            "a rectangular (n_rows, n_sources) matrix",
                            "Give every row one entry per source, -1 where it abstains.") from exc
        if isinstance(L, np.matrix):  # np.matrix keeps 2-D through indexing; use a plain array
            L = np.asarray(L)
        if not isinstance(L, np.ndarray):
            raise _fail(name, f"is a {type(L).__name__}",
                        "a numpy array or scipy.sparse matrix of shape (n, m)",
                        "Convert it with np.asarray(L).")
        if L.ndim != 2:
            raise _fail(name, f"has shape {L.shape}", "a 2-D (n_rows, n_sources) matrix",
                        "For one source use L.reshape(-1, 1); multi-task (n, m, t) arrays go to "
                        "MultiTaskLabelModel.")
        L = as_integer_labels(L, name, "Replace NaN by -1.")
        mat = L
        values = L
        n_rows, n_cols = L.shape
    if n_rows == 0 or n_cols == 0:
        raise _fail(name, f"is empty (shape {(n_rows, n_cols)})", "at least one row and one source",
                    "Check that your data loaded and your sources were applied.")
    if n_sources is not None and n_cols != n_sources:
        raise _fail(name, f"has {n_cols} sources (columns)", f"{n_sources}, as seen in fit",
                    "Apply the same list of sources, in the same order, as at fit time.")
    if values.size:
        lo, hi = int(values.min()), int(values.max())
    else:
        lo, hi = ABSTAIN, ABSTAIN
    if lo < ABSTAIN:
        raise _fail(name, f"contains the value {lo}", "-1 for abstain and 0..k-1 for classes",
                    "Map your abstain marker to -1 (Snorkel-0.7-style 0-abstain matrices: "
                    "subtract 1).")
    if cardinality is not None and hi >= cardinality:
        raise _fail(name, f"contains the label {hi}",
                    f"labels in 0..{cardinality - 1} (cardinality={cardinality})",
                    "Raise cardinality or remap the labels.")
    return LabelMatrix(data=mat, n_rows=int(n_rows), n_sources=int(n_cols), max_label=hi)


def _check_no_duplicates(L: Any, name: str) -> None:
    """Refuse a sparse matrix storing one cell twice: scipy would *sum* the two votes into a
    different class without a word."""
    if L.format == "csr" and L.has_canonical_format:
        return
    coo = L.tocoo()  # keeps duplicate entries as they are
    if coo.nnz < 2:
        return
    key = coo.row.astype(np.int64) * int(coo.shape[1]) + coo.col.astype(np.int64)
    n_unique = np.unique(key).size
    if n_unique < coo.nnz:
        raise _fail(name, f"is sparse and stores {coo.nnz - n_unique} cells more than once",
                    "at most one vote per (row, source) cell",
                    "scipy would add the duplicate votes into another class; drop the "
                    "duplicates (e.g. keep the first vote per cell) before building the matrix.")


def check_gold(Y: Any, n_rows: int, cardinality: int, name: str = "Y") -> np.ndarray:
    """Validate gold labels: a 1-D integer array of length ``n_rows``, -1 for unknown."""
    Y = np.asarray(Y)
    if Y.ndim != 1 or Y.shape[0] != n_rows:
        raise LabelMatrixError(
            f"{name} has shape {Y.shape}; expected ({n_rows},), one gold label per row of L. "
            "Pass the gold labels of the same rows, in the same order."
        )
    Y = as_integer_labels(Y, name, "Use -1 for rows without a gold label.")
    if Y.size and (Y.min() < -1 or Y.max() >= cardinality):
        raise LabelMatrixError(
            f"{name} has labels in [{Y.min()}, {Y.max()}]; expected 0..{cardinality - 1} "
            f"(cardinality={cardinality}), -1 for unknown. Check the label mapping."
        )
    return Y.astype(np.int64, copy=False)


def to_sparse_labels(L: np.ndarray) -> sp.csr_matrix:
    """Convert a dense ``-1``-padded label matrix to a sparse one that stores votes only.

    Explicit zeros (class-0 votes) are kept as stored entries.
    """
    lm = check_label_matrix(L)
    if lm.is_sparse:
        return lm.data  # type: ignore[return-value]
    r, c = np.nonzero(lm.data >= 0)
    vals = lm.data[r, c]
    return sp.csr_matrix((vals, (r, c)), shape=lm.shape)


def to_dense_labels(L: LabelInput, dtype: Any = np.int16) -> np.ndarray:
    """Dense ``-1``-padded copy of a label matrix (dense or sparse)."""
    lm = check_label_matrix(L)
    dt = np.dtype(dtype)
    if dt.kind != "i":
        raise LabelMatrixError(f"dtype={dt} cannot hold -1 (abstain); expected a signed integer "
                               "dtype such as np.int16 or np.int32")
    if lm.max_label > np.iinfo(dt).max:
        raise LabelMatrixError(f"L has the label {lm.max_label}, which does not fit in {dt} "
                               f"(largest {np.iinfo(dt).max}); expected a wider dtype: pass "
                               "dtype=np.int32 or np.int64")
    out = np.full(lm.shape, ABSTAIN, dtype=dt)
    for chunk in lm.iter_votes():
        out[chunk.rows, chunk.cols] = chunk.values
    return out

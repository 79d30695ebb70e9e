"""Streaming: fit from an iterator of label-matrix chunks in one pass with bounded memory.

The label model only needs the counts of every (source, value) and of every pair of them
(:class:`~metal.SourceStatistics`). Those are exact integers that add up over disjoint row
blocks, so a stream of chunks (files, database cursors, a generator that applies labeling
functions batch by batch) is reduced chunk by chunk with :func:`metal.label_statistics` and
:meth:`~metal.SourceStatistics.merge`; only one chunk and the ``(m*k)^2`` (sparse) statistics
are held at a time. The fit then runs on the statistics alone
(:meth:`~metal.LabelModel.fit_statistics`), so its cost does not depend on the stream length.

Everything here is built on the public statistics API, so the in-memory, streaming and Dask
paths (:mod:`metal.distributed.dask`) all call the same per-chunk function.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from metal.errors import ConfigError, DataFormatError, LabelMatrixError
from metal.label_model.base import balance_from_gold, check_cardinality
from metal.label_model.dense import (
    MAX_DENSE_INDICATORS,
    DenseCounter,
    DenseScorer,
    dense_applicable,
    statistics_from_counts,
)
from metal.label_model.label_model import (
    MAX_MOMENT_INDICATORS,
    LabelModel,
    _warn_unseen,
    label_statistics,
)
from metal.label_model.statistics import SourceStatistics
from metal.matrix import DEFAULT_CHUNK_ROWS, LabelInput, check_label_matrix

__all__ = [
    "BlockPosterior",
    "StatisticsAccumulator",
    "StreamingLabelModel",
    "chunk_statistics",
    "fit_stream",
    "iter_chunks",
    "predict_proba_stream",
    "npy_header",
    "read_npy_chunks",
    "stream_statistics",
]


def iter_chunks(L: LabelInput, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[LabelInput]:
    """Row blocks of an in-memory (or memory-mapped) label matrix, as views where possible."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) \
            or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} must be a positive int")
    n = int(L.shape[0])
    for start in range(0, n, int(chunk_rows)):
        yield L[start:start + int(chunk_rows)]


def npy_header(path: str | os.PathLike[str]) -> tuple[tuple[int, int], np.dtype[Any], int]:
    """Shape, dtype and data offset of a 2-D C-ordered integer ``.npy`` label matrix."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as err:
            raise DataFormatError(f"{path} is not a .npy file ({err}); expected an array "
                                  "written by np.save") from err
        offset = f.tell()
    if len(shape) != 2 or fortran or dtype.hasobject or dtype.kind not in "iu":
        raise DataFormatError(
            f"{path} holds a {'Fortran-ordered ' if fortran else ''}{dtype} array of shape "
            f"{shape}; expected a C-ordered 2-D integer (n, m) label matrix. Re-save it with "
            "np.save(path, np.ascontiguousarray(L).astype(np.int8))")
    return (int(shape[0]), int(shape[1])), dtype, offset


def read_npy_chunks(path: str | os.PathLike[str], chunk_rows: int = DEFAULT_CHUNK_ROWS, *,
                    start: int = 0, stop: int | None = None,
                    reuse_buffer: bool = False) -> Iterator[np.ndarray]:
    """Read a 2-D ``.npy`` label matrix from disk block by block (plain reads, no mmap).

    Only one block is resident at a time: unlike ``np.load(mmap_mode="r")``, whose touched
    pages stay mapped into the process, the memory used does not grow with the file.

    Parameters
    ----------
    path
        A ``.npy`` file holding a C-ordered 2-D integer matrix.
    chunk_rows
        Rows per block.
    start, stop
        Read only rows ``start..stop-1`` (default: all of them).
    reuse_buffer
        Read every block into the same buffer and yield views of it: nothing is allocated
        per block, but a block is overwritten by the next one, so use each before asking for
        the next (as ``fit_stream`` and ``predict_proba_stream`` do).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) \
            or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} must be a positive int")
    (n, m), dtype, offset = npy_header(path)
    stop = n if stop is None else min(int(stop), n)
    if not 0 <= int(start) <= stop:
        raise ConfigError(f"rows {start}..{stop} are not inside the {n} rows of {path}")
    step = int(chunk_rows)
    buf = np.empty((min(step, max(stop - start, 1)), m), dtype=dtype) if reuse_buffer else None
    with open(path, "rb") as f:
        f.seek(offset + int(start) * m * dtype.itemsize)
        for first in range(int(start), stop, step):
            rows = min(step, stop - first)
            block = buf[:rows] if buf is not None else np.empty((rows, m), dtype=dtype)
            got = f.readinto(memoryview(block).cast("B"))  # type: ignore[arg-type]
            if got != block.nbytes:
                raise DataFormatError(f"{path} ended inside the block of rows {first}.."
                                      f"{first + rows - 1} of {n}; the file is truncated")
            yield block


class StatisticsAccumulator:
    """Adds label-matrix chunks up into :class:`~metal.SourceStatistics`, one at a time.

    Dense integer chunks with few indicators (``m*k`` up to
    :data:`metal.label_model.dense.MAX_DENSE_INDICATORS`) are counted by the integer-product
    kernel into one dense ``(m*k)^2`` count matrix; other chunks (sparse, or many sources) by
    :func:`metal.label_statistics`. The counts are exact either way, so the result does not
    depend on how the rows were split or stored.
    """

    def __init__(self, cardinality: int) -> None:
        self.cardinality = check_cardinality(cardinality)
        self.n_sources: int | None = None
        self._dense: DenseCounter | None = None
        self._sparse: SourceStatistics | None = None

    def add(self, chunk: LabelInput) -> StatisticsAccumulator:
        """Count one ``(rows, m)`` chunk (validated here)."""
        k = self.cardinality
        lm = check_label_matrix(chunk, cardinality=k)
        if self.n_sources is not None and lm.n_sources != self.n_sources:
            raise LabelMatrixError(
                f"this chunk has {lm.n_sources} sources (columns); expected {self.n_sources} "
                "as in the chunks before it. Every chunk must hold the same sources in the "
                "same order.")
        self.n_sources = lm.n_sources
        if dense_applicable(lm.data, lm.n_sources * k):
            if self._dense is None:  # one counter: its work buffers serve every chunk
                self._dense = DenseCounter(lm.n_sources, k)
            self._dense.add(lm.data)  # type: ignore[arg-type]
        else:
            part = label_statistics(lm.data, k)
            self._sparse = part if self._sparse is None else self._sparse.merge(part)
        return self

    def add_statistics(self, stats: SourceStatistics) -> StatisticsAccumulator:
        """Add statistics gathered elsewhere (another stream, a file, a worker)."""
        if self.n_sources is not None and stats.n_groups != self.n_sources:
            raise LabelMatrixError(f"statistics of {stats.n_groups} sources cannot be added to "
                                   f"those of {self.n_sources}")
        self.n_sources = stats.n_groups
        self._sparse = stats if self._sparse is None else self._sparse.merge(stats)
        return self

    @property
    def n_rows(self) -> int:
        dense = 0 if self._dense is None else self._dense.n_rows
        return dense + (0 if self._sparse is None else self._sparse.n_rows)

    def result(self) -> SourceStatistics:
        """The statistics of every row added so far."""
        if self.n_sources is None:
            raise LabelMatrixError("no chunk was added; expected at least one (rows, m) "
                                   "label-matrix block")
        parts = [] if self._sparse is None else [self._sparse]
        if self._dense is not None:
            parts.append(statistics_from_counts(self._dense.cooccurrence(), self._dense.n_rows,
                                                self.n_sources, self.cardinality))
        return parts[0] if len(parts) == 1 else parts[0].merge(parts[1])


def chunk_statistics(chunk: LabelInput, cardinality: int) -> SourceStatistics:
    """Statistics of one chunk: the per-partition function of the streaming and Dask paths.

    Equal to :func:`metal.label_statistics` (the same exact counts), with the integer-product
    kernel for dense chunks with few indicators.
    """
    return StatisticsAccumulator(cardinality).add(chunk).result()


def _as_chunk_iterable(chunks: Any) -> Iterable[LabelInput]:
    """An iterable of chunks; a single matrix is refused (pass it to ``fit`` instead)."""
    if isinstance(chunks, np.ndarray) or hasattr(chunks, "tocsr"):
        raise ConfigError("expected an iterable of label-matrix chunks, got one matrix; pass "
                          "it to LabelModel.fit(L), or split it with metal.distributed.iter_chunks")
    if not isinstance(chunks, Iterable):
        raise ConfigError(f"chunks is a {type(chunks).__name__}; expected an iterable of "
                          "(rows, m) label-matrix blocks (numpy or scipy.sparse)")
    return chunks


def stream_statistics(chunks: Iterable[LabelInput], cardinality: int,
                      stats: SourceStatistics | None = None) -> SourceStatistics:
    """Statistics of a stream of label-matrix chunks, gathered in one pass.

    Parameters
    ----------
    chunks
        Iterable of ``(rows, m)`` blocks (dense ``-1``-padded or ``scipy.sparse`` storing
        votes only); every block must have the same ``m``. Blocks may differ in size and type.
    cardinality
        Number of classes ``k``.
    stats
        Statistics to add to (e.g. from an earlier stream); default: start from nothing.

    Returns
    -------
    SourceStatistics
        Equal to ``metal.label_statistics(vstack(chunks), cardinality)``.

    Raises
    ------
    LabelMatrixError
        A chunk is malformed, or has a different number of sources than the others.
    """
    acc = StatisticsAccumulator(cardinality)
    if stats is not None:
        acc.add_statistics(stats)
    for i, chunk in enumerate(_as_chunk_iterable(chunks)):
        try:
            acc.add(chunk)
        except LabelMatrixError as err:
            raise LabelMatrixError(f"chunk {i}: {err}") from err
    if acc.n_sources is None:
        raise LabelMatrixError("the stream of chunks was empty; expected at least one "
                               "(rows, m) label-matrix block")
    return acc.result()


def _resolve_prior(model: LabelModel, class_balance: Any, Y_dev: Any) -> Any:
    if class_balance is not None and Y_dev is not None:
        raise ConfigError("pass class_balance or Y_dev, not both")
    if Y_dev is not None:
        return balance_from_gold(Y_dev, check_cardinality(model.cardinality))
    return class_balance


def _check_streamable(model: LabelModel, class_balance: Any) -> None:
    if model.dependencies is not None:
        raise ConfigError("streaming and distributed fits take independent sources only (the "
                          "dependency cliques' statistics are not gathered per chunk yet); "
                          "fit with LabelModel(dependencies=...).fit(L) in memory")
    if int(model.balance_moments) == 3:
        raise ConfigError("balance_moments=3 needs a second pass over the data for the third "
                          "moments; a stream is read once. Use balance_moments=2 (with "
                          "class_balance='estimate', or a given class balance)")


def fit_statistics_checked(model: LabelModel, stats: SourceStatistics,
                           class_balance: Any = None) -> LabelModel:
    """``model.fit_statistics(stats)``, refused up front beyond the moment estimator's limit.

    Streaming and Dask fits run the moment estimator only (EM needs the rows). Its
    second-moment problem is dense in the emitted source values, so above
    ``MAX_MOMENT_INDICATORS`` of them (where the in-memory ``fit`` switches to EM) it is
    refused with what to do instead.
    """
    d = int(stats.emitted().size)
    if d > MAX_MOMENT_INDICATORS:
        raise ConfigError(
            f"the statistics hold {d} emitted source values; fits from statistics (streaming, "
            f"Dask) run the moment estimator, which takes at most {MAX_MOMENT_INDICATORS} (its "
            f"{d} x {d} second-moment problem would be slow). Fit the rows in memory with "
            "LabelModel().fit(L), which switches to EM above this size, or drop sources that "
            "rarely vote")
    return model.fit_statistics(stats, class_balance=class_balance)


def fit_stream(model: LabelModel, chunks: Iterable[LabelInput], class_balance: Any = None,
               Y_dev: Any = None) -> LabelModel:
    """Fit ``model`` from a stream of chunks (one pass, memory bounded by one chunk).

    Same result as ``model.fit(vstack(chunks))`` for independent sources: the statistics are
    equal, and the fit only sees the statistics. ``class_balance`` and ``Y_dev`` are as in
    :meth:`LabelModel.fit`.
    """
    _check_streamable(model, class_balance)
    prior = _resolve_prior(model, class_balance, Y_dev)
    stats = stream_statistics(chunks, model.cardinality)
    return fit_statistics_checked(model, stats, class_balance=prior)


class BlockPosterior:
    """``model.predict_proba`` of many blocks, with one set of work buffers for all of them.

    For independent sources and dense blocks with few indicators the integer-product scorer
    is built once and reused, so scoring a long stream (or a Dask partition read piece by
    piece) allocates nothing per block beyond its result. Other blocks go through
    ``model.predict_proba``. Results equal ``model.predict_proba(block)``.
    """

    def __init__(self, model: LabelModel) -> None:
        model._check_fitted()
        self.model = model
        self.k = int(model.cardinality)
        self.m = int(model.n_sources_)
        coding = model.coding_
        self.scorer: DenseScorer | None = None
        if coding.all_singletons and 0 < coding.n_indicators <= MAX_DENSE_INDICATORS:
            table, base, unseen = model._log_tables()
            self.scorer = DenseScorer(table, base, self.m, self.k, unseen)

    def __call__(self, block: LabelInput, out: np.ndarray | None = None) -> np.ndarray:
        """``(rows, k)`` posterior of ``block``, written into ``out`` if given."""
        lm = check_label_matrix(block, cardinality=self.k, n_sources=self.m)
        if self.scorer is not None and dense_applicable(lm.data, self.m * self.k):
            res, n_unseen = self.scorer.log_proba(lm.data, out=out)  # type: ignore[arg-type]
            _warn_unseen(n_unseen, stacklevel=2)
            return np.exp(res, out=res)
        probs = self.model.predict_proba(lm.data)
        if out is None:
            return probs
        out[...] = probs
        return out


def predict_proba_stream(model: LabelModel, chunks: Iterable[LabelInput]
                         ) -> Iterator[np.ndarray]:
    """Yield ``model.predict_proba(chunk)`` for every chunk, one at a time."""
    posterior = BlockPosterior(model)
    for i, chunk in enumerate(_as_chunk_iterable(chunks)):
        try:
            yield posterior(chunk)
        except LabelMatrixError as err:
            raise LabelMatrixError(f"chunk {i}: {err}") from err


class StreamingLabelModel(LabelModel):
    """A :class:`~metal.LabelModel` that also learns from streams and batch by batch.

    Same parameters and fitted attributes as :class:`~metal.LabelModel`. ``fit`` accepts a
    matrix (as ``LabelModel``) or an iterable of chunks; :meth:`partial_fit` adds one batch to
    the statistics gathered so far and refits on all of them; :meth:`predict_proba_stream`
    yields posteriors chunk by chunk.

    Examples
    --------
    >>> from metal.data import make_synthetic
    >>> data = make_synthetic(n=4000, m=6, cardinality=2, seed=0)
    >>> model = StreamingLabelModel(cardinality=2, seed=0)
    >>> _ = model.fit(iter_chunks(data.L, 1000))
    >>> model.statistics_.n_rows
    4000
    >>> sum(p.shape[0] for p in model.predict_proba_stream(iter_chunks(data.L, 1000)))
    4000
    """

    def fit(self, L: Any, class_balance: Any = None,  # type: ignore[override]
            Y_dev: Any = None) -> StreamingLabelModel:
        """Fit on a label matrix (as ``LabelModel.fit``), or on an iterable of chunks (one pass,
        the moment estimator); a list of 2-D arrays or sparse matrices is a list of chunks."""
        blocks = isinstance(L, (list, tuple)) and bool(L) and all(
            (isinstance(c, np.ndarray) and c.ndim == 2) or hasattr(c, "tocsr") for c in L)
        if isinstance(L, np.ndarray) or hasattr(L, "tocsr") or (
                isinstance(L, (list, tuple)) and not blocks):  # a matrix (nested lists: rows)
            super().fit(L, class_balance=class_balance, Y_dev=Y_dev)
            return self
        fit_stream(self, L, class_balance=class_balance, Y_dev=Y_dev)
        return self

    def partial_fit(self, L: LabelInput, class_balance: Any = None, Y_dev: Any = None,
                    *, refit: bool = True) -> StreamingLabelModel:
        """Add the rows of ``L`` to the statistics seen so far and refit on all of them.

        With ``refit=False`` only the statistics are updated (cheap, O(rows)); call
        :meth:`refit` (or a later ``partial_fit``) to update the parameters. A fresh model
        starts from no statistics; after ``fit`` the batches add to that fit's data.
        """
        _check_streamable(self, class_balance)
        k = check_cardinality(self.cardinality)
        part = chunk_statistics(L, k)
        prev = getattr(self, "statistics_", None)
        if prev is not None and prev.n_groups != part.n_groups:
            raise LabelMatrixError(f"L has {part.n_groups} sources (columns); the batches "
                                   f"before had {prev.n_groups}. Apply the same sources, in the "
                                   "same order, to every batch.")
        self.statistics_ = part if prev is None else prev.merge(part)  # type: ignore[assignment]
        self._stream_prior = _resolve_prior(self, class_balance, Y_dev)
        if refit:
            self.refit()
        return self

    def refit(self) -> StreamingLabelModel:
        """Fit the parameters on the statistics accumulated by :meth:`partial_fit`."""
        stats = getattr(self, "statistics_", None)
        if stats is None:
            raise ConfigError("no statistics yet; call partial_fit(L) or fit(...) first")
        fit_statistics_checked(self, stats, class_balance=getattr(self, "_stream_prior", None))
        return self

    def predict_proba_stream(self, chunks: Iterable[LabelInput]) -> Iterator[np.ndarray]:
        """Yield the ``(rows, k)`` posterior of every chunk, one chunk at a time."""
        return predict_proba_stream(self, chunks)


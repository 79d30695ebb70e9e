"""Label-model statistics on Dask: gathered where the data lives, the fit on the driver.

Each partition of a Dask collection is reduced to its :class:`~metal.SourceStatistics` by the
same per-chunk function as the in-memory and streaming paths (:func:`metal.label_statistics`);
partial statistics are merged in a tree on the workers, so only one ``(m*k)^2`` sparse count
matrix reaches the driver, whatever ``n`` is. The fit then runs on the driver
(:meth:`~metal.LabelModel.fit_statistics`); its cost does not depend on ``n``.

The work runs on the active ``dask.distributed.Client`` if there is one (a ``LocalCluster`` or
a multi-machine cluster alike), else on Dask's default scheduler. Only this module and
:mod:`metal.labeling.dask` import Dask.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Union

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from metal.distributed.streaming import (
    BlockPosterior,
    StatisticsAccumulator,
    _check_streamable,
    _resolve_prior,
    chunk_statistics,
    fit_statistics_checked,
    npy_header,
    read_npy_chunks,
)
from metal.errors import ConfigError, DataFormatError, LabelMatrixError
from metal.label_model.base import check_cardinality
from metal.label_model.dense import block_rows
from metal.label_model.label_model import LabelModel
from metal.label_model.statistics import SourceStatistics
from metal.labeling.apply import LFApplier
from metal.labeling.lf import LabelingFunction
from metal.matrix import DEFAULT_CHUNK_ROWS, LabelInput

PathLike = Union[str, "os.PathLike[str]"]  # noqa: UP007 (runtime alias)

__all__ = [
    "dask_statistics",
    "fit_dask",
    "from_npy",
    "lf_statistics",
    "predict_proba_dask",
]


def _block_statistics(block: LabelInput, cardinality: int, n_sources: int | None
                      ) -> SourceStatistics | None:
    """Statistics of one partition (runs on a worker); ``None`` for an empty partition."""
    if isinstance(block, pd.DataFrame):
        block = block.to_numpy()
    elif isinstance(block, list):  # a bag partition: a list of rows
        if not block:
            return None
        block = np.asarray(block)
    if block.shape[0] == 0:
        return None
    if n_sources is not None and block.shape[1] != n_sources:
        raise LabelMatrixError(f"a partition has {block.shape[1]} sources (columns); expected "
                               f"{n_sources}. Every partition must hold the same sources.")
    return chunk_statistics(block, cardinality)


def _merge(*parts: SourceStatistics | None) -> SourceStatistics | None:
    out: SourceStatistics | None = None
    for p in parts:
        if p is None:
            continue
        if out is not None and p.n_groups != out.n_groups:
            raise LabelMatrixError(f"partitions have {out.n_groups} and {p.n_groups} sources "
                                   "(columns); every partition must hold the same sources")
        out = p if out is None else out.merge(p)
    return out


def _tree_merge(parts: list[Delayed], split_every: int) -> Delayed:
    """Merge partial statistics in a tree of ``split_every``-ary merges (on the workers)."""
    merge = dask.delayed(_merge, pure=True)
    while len(parts) > 1:
        parts = [merge(*parts[i:i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


def _partitions(data: Any) -> tuple[list[Delayed], int | None]:
    """Delayed partitions of a Dask collection and its number of sources when known."""
    if isinstance(data, da.Array):
        if data.ndim != 2:
            raise LabelMatrixError(f"the Dask array has {data.ndim} dimensions; expected a 2-D "
                                   "(n, m) label matrix")
        if len(data.chunks[1]) > 1:  # a block must hold whole rows (all sources)
            data = data.rechunk({1: -1})
        return list(data.to_delayed().ravel()), int(data.shape[1])
    if isinstance(data, dd.DataFrame):
        return list(data.to_delayed()), len(data.columns)
    if isinstance(data, db.Bag):
        return list(data.to_delayed()), None
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, Delayed) for d in data):
        return list(data), None
    raise ConfigError(f"data is a {type(data).__name__}; expected a dask.array.Array (n, m), a "
                      "dask.dataframe.DataFrame with one integer column per source, a dask.bag."
                      "Bag of rows, or a list of dask.delayed label-matrix blocks")


def _is_path(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike))


def _total_threads() -> int:
    """Worker threads of the active ``dask.distributed`` client, else this machine's cores."""
    try:
        from dask.distributed import default_client

        workers = default_client().scheduler_info()["workers"].values()
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def _row_ranges(n: int, partitions: int | None) -> list[tuple[int, int]]:
    """``partitions`` contiguous row ranges (default: 4 per worker thread, so a slow worker
    does not hold the others up, and few enough that each task has real work to do)."""
    if partitions is None:
        partitions = 4 * _total_threads()
    elif isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ConfigError(f"partitions={partitions!r} must be a positive int")
    p = max(1, min(int(partitions), -(-n // 1024)))  # at least ~1,024 rows a partition
    bounds = np.linspace(0, n, p + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _npy_statistics(path: str, start: int, stop: int, cardinality: int) -> SourceStatistics:
    """Statistics of rows ``start..stop-1`` of a ``.npy`` file (runs on a worker).

    The worker reads its own rows in small pieces into one reused buffer and counts them as
    they come, so the partition is never materialised and nothing but the ``(m*k)^2``
    counts leaves the task.
    """
    (n, m), _, _ = npy_header(path)
    acc = StatisticsAccumulator(cardinality)
    rows = block_rows(m * int(cardinality), n)
    for block in read_npy_chunks(path, rows, start=start, stop=stop, reuse_buffer=True):
        acc.add(block)
    return acc.result()


def _npy_posterior(path: str, start: int, stop: int, model: LabelModel, dtype: Any,
                   out_path: str | None, out_offset: int) -> np.ndarray | int:
    """Posterior of rows ``start..stop-1`` of a ``.npy`` file (runs on a worker): returned, or
    written into the ``.npy`` file ``out_path`` at those rows (then the row count is returned)."""
    (n, m), _, _ = npy_header(path)
    k = int(model.cardinality)
    posterior = BlockPosterior(model)
    rows = block_rows(m * k, n)
    dt = np.dtype(dtype)
    blocks = read_npy_chunks(path, rows, start=start, stop=stop, reuse_buffer=True)
    if out_path is None:
        res = np.empty((stop - start, k), dtype=dt)
        pos = 0
        for block in blocks:
            posterior(block, out=res[pos:pos + block.shape[0]])
            pos += block.shape[0]
        return res
    buf = np.empty((min(rows, stop - start), k), dtype=dt)
    fd = os.open(out_path, os.O_WRONLY)
    try:
        pos = start
        for block in blocks:
            res = posterior(block, out=buf[:block.shape[0]])
            os.pwrite(fd, memoryview(res).cast("B"),  # type: ignore[arg-type]
                      out_offset + pos * k * dt.itemsize)
            pos += block.shape[0]
    finally:
        os.close(fd)
    return stop - start


def dask_statistics(data: Any, cardinality: int, *, split_every: int = 8,
                    compute: bool = True, partitions: int | None = None
                    ) -> SourceStatistics | Delayed:
    """Statistics of a label matrix held in a Dask collection (one pass, on the workers).

    Parameters
    ----------
    data
        A 2-D ``dask.array.Array`` (row blocks; columns are rechunked to one block), a
        ``dask.dataframe.DataFrame`` with one integer column per source, a ``dask.bag.Bag``
        whose elements are rows (sequences of ``m`` votes), or a list of ``dask.delayed``
        objects that each produce a ``(rows, m)`` block (numpy or ``scipy.sparse``); or the
        path of a 2-D integer ``.npy`` file, whose row ranges the workers read themselves
        (the fastest: no block is materialised or shipped, see :func:`from_npy` for the
        shared-file-system caveat). ``-1`` abstains.
    cardinality
        Number of classes ``k``.
    split_every
        Fan-in of the merge tree.
    compute
        If False, return the ``Delayed`` result instead of computing it.
    partitions
        For a ``.npy`` path: number of row ranges (tasks); default 4 per worker thread.

    Returns
    -------
    SourceStatistics
        Equal to ``metal.label_statistics(data.compute(), cardinality)``: the counts are exact
        integers, so the partitioning does not change them.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> L = np.array([[0, 1, -1], [1, 1, 0], [-1, 0, 0], [1, -1, 1]])
    >>> stats = dask_statistics(da.from_array(L, chunks=(2, 3)), 2)
    >>> stats.n_rows, int(stats.counts.sum())
    (4, 9)
    """
    k = check_cardinality(cardinality)
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise ConfigError(f"split_every={split_every!r} must be an int >= 2")
    if _is_path(data):
        path = os.fspath(data)
        (n, _), _, _ = npy_header(path)
        if n == 0:
            raise LabelMatrixError(f"{path} has no rows; expected at least one row of votes")
        task = dask.delayed(_npy_statistics, pure=True)
        total = _tree_merge([task(path, a, b, k) for a, b in _row_ranges(n, partitions)],
                            split_every)
        if not compute:
            return total
        (stats,) = dask.compute(total)
        return stats
    parts, m = _partitions(data)
    if not parts:
        raise LabelMatrixError("the Dask collection has no partitions; expected at least one "
                               "row of votes")
    block = dask.delayed(_block_statistics, pure=True)
    total = _tree_merge([block(p, k, m) for p in parts], split_every)
    if not compute:
        return total
    (stats,) = dask.compute(total)
    if stats is None:
        raise LabelMatrixError("the Dask collection has no rows; expected at least one row of "
                               "votes")
    return stats


def _lf_partition_statistics(part: pd.DataFrame, lfs: list[LabelingFunction], cardinality: int,
                             fault_tolerant: bool) -> SourceStatistics | None:
    """Apply the sources to one partition and reduce its votes to statistics (on a worker)."""
    if len(part) == 0:
        return None
    L = LFApplier(lfs, cardinality=cardinality, fault_tolerant=fault_tolerant,
                  progress=False).apply(part)
    return chunk_statistics(L, cardinality)


def lf_statistics(data: dd.DataFrame, lfs: Sequence[LabelingFunction], cardinality: int, *,
                  fault_tolerant: bool = False, split_every: int = 8) -> SourceStatistics:
    """Apply labeling functions and gather the statistics on the workers, in one pass.

    The label matrix is never assembled: each partition is labeled where it lives and
    reduced to its statistics there, so only the ``(m*k)^2`` counts travel to the driver.
    To keep the label matrix too, use :class:`metal.labeling.dask.DaskLFApplier`.
    """
    k = check_cardinality(cardinality)
    if not isinstance(data, dd.DataFrame):
        raise ConfigError(f"data is a {type(data).__name__}; expected a dask.dataframe.DataFrame "
                          "(build one with dask.dataframe.from_pandas or read_parquet)")
    LFApplier(list(lfs), cardinality=k)  # validate the sources once, on the driver
    fn = dask.delayed(_lf_partition_statistics, pure=True)
    parts = [fn(p, list(lfs), k, fault_tolerant) for p in data.to_delayed()]
    (stats,) = dask.compute(_tree_merge(parts, split_every))
    if stats is None:
        raise LabelMatrixError("the Dask DataFrame has no rows")
    return stats


def fit_dask(model: LabelModel, data: Any, class_balance: Any = None, Y_dev: Any = None,
             *, split_every: int = 8, partitions: int | None = None) -> LabelModel:
    """Fit ``model`` on a Dask collection or ``.npy`` path: statistics on the workers, the fit
    on the driver.

    Same result as ``model.fit(L)`` on the whole matrix for independent sources. ``data`` and
    ``partitions`` are as in :func:`dask_statistics`.
    """
    _check_streamable(model, class_balance)
    prior = _resolve_prior(model, class_balance, Y_dev)
    stats = dask_statistics(data, model.cardinality, split_every=split_every,
                            partitions=partitions)
    assert isinstance(stats, SourceStatistics)
    return fit_statistics_checked(model, stats, class_balance=prior)


def _predict_frame(part: pd.DataFrame, model: LabelModel) -> pd.DataFrame:
    k = int(model.cardinality)
    if len(part) == 0:
        return pd.DataFrame(np.zeros((0, k)), index=part.index, columns=list(range(k)))
    return pd.DataFrame(model.predict_proba(part.to_numpy()), index=part.index,
                        columns=list(range(k)))


def _predict_npy(model: LabelModel, path: str, out: PathLike | None, dtype: Any,
                 partitions: int | None) -> Any:
    (n, _), _, _ = npy_header(path)
    k = int(model.cardinality)
    dt = np.dtype(dtype)
    ranges = _row_ranges(n, partitions)
    task = dask.delayed(_npy_posterior, pure=True)
    if out is None:
        blocks = [da.from_delayed(task(path, a, b, model, dt, None, 0), shape=(b - a, k),
                                  dtype=dt) for a, b in ranges]
        return da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
    out_path = os.fspath(out)
    with open(out_path, "wb") as f:  # the header and the full size; the workers fill the rows
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dt), "fortran_order": False,
                "shape": (n, k)})
        offset = f.tell()
        f.truncate(offset + n * k * dt.itemsize)
    written = dask.compute(*[task(path, a, b, model, dt, out_path, offset) for a, b in ranges])
    if sum(written) != n:
        raise DataFormatError(f"the workers wrote {sum(written)} of the {n} rows of {out_path}")
    return out_path


def predict_proba_dask(model: LabelModel, data: Any, *, out: PathLike | None = None,
                       dtype: Any = np.float64, partitions: int | None = None) -> Any:
    """Posterior of every row, computed partition by partition on the workers.

    Parameters
    ----------
    model
        A fitted :class:`~metal.LabelModel`.
    data
        A ``dask.array.Array`` ``(n, m)``, a ``dask.dataframe.DataFrame``, a ``dask.bag.Bag``
        of rows, or the path of a 2-D integer ``.npy`` file (the workers read their own rows).
    out
        Only with a ``.npy`` path: write the ``(n, k)`` posterior into this ``.npy`` file,
        each worker its own rows (``np.load(out, mmap_mode="r")`` reads it back), and return
        the path. The posterior then never passes through the driver; on a multi-machine
        cluster ``out`` must be on a file system every worker can write.
    dtype
        Floating dtype of the posterior for a ``.npy`` path (``np.float32`` halves what is
        stored or moved); computed in ``float64`` either way.
    partitions
        For a ``.npy`` path: number of row ranges (tasks); default 4 per worker thread.

    Returns
    -------
    dask.array.Array, dask.dataframe.DataFrame, dask.bag.Bag or str
        Lazy: a ``dask.array.Array`` ``(n, k)`` for an array or a ``.npy`` path (call
        ``.persist()`` to keep it on the workers, ``.compute()`` to gather it into the
        driver), a ``dask.dataframe.DataFrame`` with columns ``0..k-1`` for a DataFrame, a
        bag of ``(k,)`` rows for a bag; with ``out``, the written file's path (computed).
    """
    model._check_fitted()
    k = int(model.cardinality)
    if _is_path(data):
        return _predict_npy(model, os.fspath(data), out, dtype, partitions)
    if out is not None:
        raise ConfigError("out= writes the posterior of a .npy input; for a Dask collection "
                          "store the returned lazy result yourself (e.g. dask.array.to_zarr)")
    if isinstance(data, da.Array):
        if data.ndim != 2:
            raise LabelMatrixError(f"the Dask array has {data.ndim} dimensions; expected (n, m)")
        data = data.rechunk({1: -1})
        fn: Callable[[Any], np.ndarray] = model.predict_proba
        return data.map_blocks(fn, chunks=(data.chunks[0], (k,)), dtype=np.float64)
    if isinstance(data, dd.DataFrame):
        meta = pd.DataFrame(np.zeros((0, k)), columns=list(range(k)))
        return data.map_partitions(_predict_frame, model, meta=meta)
    if isinstance(data, db.Bag):
        return data.map_partitions(
            lambda rows: list(model.predict_proba(np.asarray(rows))) if rows else [])
    raise ConfigError(f"data is a {type(data).__name__}; expected a dask.array.Array, a "
                      "dask.dataframe.DataFrame, a dask.bag.Bag or the path of a .npy file")


def _read_rows(path: str, offset: int, start: int, stop: int, m: int,
               dtype: np.dtype[Any]) -> np.ndarray:
    block = np.empty((stop - start, m), dtype=dtype)
    with open(path, "rb") as f:
        f.seek(offset + start * m * dtype.itemsize)
        got = f.readinto(memoryview(block).cast("B"))  # type: ignore[arg-type]
    if got != block.nbytes:
        raise DataFormatError(f"{path} ended inside rows {start}..{stop - 1}; it is truncated")
    return block


def from_npy(path: str | os.PathLike[str], chunk_rows: int = DEFAULT_CHUNK_ROWS * 4
             ) -> da.Array:
    """A Dask array over a 2-D ``.npy`` file whose row blocks are read by the workers.

    Each task reads its own rows with plain file reads, so the matrix never passes through
    the driver. On a multi-machine cluster the path must be readable from every worker (a
    shared file system); otherwise build the collection from your storage (e.g.
    ``dask.dataframe.read_parquet``).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} must be a positive int")
    path = os.fspath(path)
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    if len(shape) != 2 or fortran:
        raise DataFormatError(f"{path} holds an array of shape {shape} (Fortran order: "
                              f"{fortran}); expected a C-ordered 2-D (n, m) label matrix")
    n, m = shape
    read = dask.delayed(_read_rows, pure=True)
    blocks = [da.from_delayed(read(path, offset, s, min(s + chunk_rows, n), m, dtype),
                              shape=(min(s + chunk_rows, n) - s, m), dtype=dtype)
              for s in range(0, n, chunk_rows)]
    return da.concatenate(blocks, axis=0)

"""Apply labeling functions to data and collect their votes in a sparse label matrix.

The matrix is built directly in CSR from coordinate lists of the votes (unstored = abstain,
see :mod:`metal.matrix`); no dense ``n x m`` intermediate is ever allocated, so the memory used
is proportional to the number of votes.
"""

from __future__ import annotations

import warnings
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from metal.errors import MetalWarning
from metal.labeling.lf import ABSTAIN, LabelingFunction, LabelingFunctionError, Row

LabelOutput = Union[sp.csr_matrix, dict[str, sp.csr_matrix]]  # noqa: UP007 - runtime alias


class LabelingFaultWarning(MetalWarning):
    """Some labeling functions crashed on some rows and were counted as abstaining."""


@dataclass
class _Votes:
    """Coordinate buffers of one output matrix (compact ``array`` storage, not Python lists)."""

    n_cols: int
    rows: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    cols: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    vals: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.frombuffer(self.rows, dtype=np.int64), np.frombuffer(self.cols, dtype=np.int64),
                np.frombuffer(self.vals, dtype=np.int64))

    def to_csr(self, n_rows: int) -> sp.csr_matrix:
        return csr_from_votes(*self.arrays(), shape=(n_rows, self.n_cols))


def csr_from_votes(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                   shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR label matrix from vote coordinates (each (row, col) at most once)."""
    return sp.csr_matrix((np.asarray(vals, dtype=np.int32),
                          (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
                         shape=shape)


@dataclass
class _Block:
    """A block of data points with their absolute positions and (for DataFrames) index labels."""

    records: Sequence[Mapping[str, Any]]
    start: int
    labels: Sequence[Any] | None = None
    hint: int | None = None  # total rows of a sized input, for the progress bar


class LFApplier:
    """Run a list of labeling functions over data points.

    Parameters
    ----------
    lfs
        The sources, in column order. Either all single-task (``task=None``) or all bound to
        tasks (see :mod:`metal.labeling.lf`).
    cardinality
        If given, every returned label must be in ``0..cardinality-1`` (an int, or a dict
        ``{task: k}`` for multi-task sources).
    fault_tolerant
        If True, a source that raises (or returns something that is not a label) abstains on
        that row; faults are counted per source in :attr:`fault_counts_` and reported with a
        :class:`LabelingFaultWarning` naming each failing source and its first error. If False,
        the first error propagates with the source's name and the row added to its message.
    progress
        Show a progress bar (tqdm) over the rows.
    chunk_rows
        Rows converted from a DataFrame at a time (bounds the memory of the row dicts).

    Attributes
    ----------
    fault_counts_ : dict[str, int]
        Rows on which each source failed in the last :meth:`apply` (0 when it never failed).
    first_faults_ : dict[str, str]
        For each failing source, its first error and the row it happened on.
    n_rows_ : int
        Rows labeled by the last :meth:`apply`.

    Examples
    --------
    >>> import pandas as pd
    >>> from metal.labeling.lf import labeling_function
    >>> @labeling_function()
    ... def short(x):
    ...     return 0 if len(x.text) < 5 else -1
    >>> L = LFApplier([short], progress=False).apply(pd.DataFrame({"text": ["hi", "hello!"]}))
    >>> L.toarray().tolist()  # stored entries are votes; unstored entries abstain
    [[0], [0]]
    >>> L.nnz
    1
    """

    def __init__(
        self,
        lfs: Sequence[LabelingFunction],
        *,
        cardinality: int | Mapping[str, int] | None = None,
        fault_tolerant: bool = False,
        progress: bool = True,
        chunk_rows: int = 10_000,
    ) -> None:
        self.lfs = list(lfs)
        self.cardinality = cardinality
        self.fault_tolerant = fault_tolerant
        self.progress = progress
        self.chunk_rows = chunk_rows
        self._check()

    # ------------------------------------------------------------------ declaration
    def _check(self) -> None:
        if not self.lfs:
            raise LabelingFunctionError("no labeling functions given; pass a non-empty list")
        bad = [lf for lf in self.lfs if not isinstance(lf, LabelingFunction)]
        if bad:
            raise LabelingFunctionError(
                f"{bad[0]!r} is not a LabelingFunction; wrap plain functions with "
                "@labeling_function() or LabelingFunction(name, f)")
        names = [lf.name for lf in self.lfs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise LabelingFunctionError(f"source names {dup} are used more than once; every "
                                        "source needs a unique name (pass name=...)")
        bound = [lf.tasks is not None for lf in self.lfs]
        if any(bound) and not all(bound):
            single = [lf.name for lf in self.lfs if lf.tasks is None]
            raise LabelingFunctionError(
                f"sources {single} have no task while others are bound to tasks; give every "
                "source task=... (multi-task) or none of them (single task)")
        if not isinstance(self.chunk_rows, Integral) or self.chunk_rows < 1:
            raise LabelingFunctionError(f"chunk_rows={self.chunk_rows!r} must be a positive int")
        self._cardinality_of(None)  # validates the type of ``cardinality``

    @property
    def multi_task(self) -> bool:
        """True when the sources are bound to tasks (``apply`` returns a dict)."""
        return self.lfs[0].tasks is not None

    @property
    def source_names(self) -> list[str]:
        """Names of the sources: the columns of the single-task matrix."""
        return [lf.name for lf in self.lfs]

    @property
    def task_sources(self) -> dict[str, list[str]]:
        """For multi-task sources: ``{task: names of the sources labeling it}`` (column order)."""
        out: dict[str, list[str]] = {}
        for lf in self.lfs:
            for t in lf.tasks or ():
                out.setdefault(t, []).append(lf.name)
        return out

    def _cardinality_of(self, task: str | None) -> int | None:
        k = self.cardinality
        if k is None:
            return None
        if isinstance(k, Mapping):
            if task is None:
                return None
            value = k.get(task)
            return None if value is None else int(value)
        if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
            raise LabelingFunctionError(f"cardinality={k!r}; expected a positive int or a dict "
                                        "{task: int}")
        return int(k)

    # ------------------------------------------------------------------ applying
    def apply(self, data: Any, *, total: int | None = None) -> LabelOutput:
        """Label every data point with every source.

        Parameters
        ----------
        data
            A ``pandas.DataFrame``; a list of dicts; or an iterator/iterable of chunks, each a
            DataFrame or a list of dicts (rows are numbered consecutively across chunks).
        total
            Number of rows, for the progress bar when ``data`` is an iterator of chunks.

        Returns
        -------
        scipy.sparse.csr_matrix or dict
            Single-task sources: ``(n, m)`` CSR label matrix storing votes only (unstored =
            abstain). Task-bound sources: ``{task: (n, m_t) CSR matrix}`` with columns in the
            order of :attr:`task_sources`.

        Raises
        ------
        LabelingFunctionError
            Unsupported ``data``, or (without fault tolerance) a source returned something that
            is not a label. A source's own exception propagates unchanged, with a note naming
            the source and the row.
        """
        votes, n_rows, faults, first = self._run(_blocks(data, int(self.chunk_rows)), total)
        self._record_faults(n_rows, faults, first)
        return self._output([v.to_csr(n_rows) for v in votes])

    def _targets(self) -> tuple[list[str | None], list[list[tuple[int, int]]]]:
        """Output matrices, and for each source its (matrix, column) per declared task."""
        if not self.multi_task:
            return [None], [[(0, j)] for j in range(len(self.lfs))]
        tasks = list(self.task_sources)
        seen = dict.fromkeys(tasks, 0)
        where: list[list[tuple[int, int]]] = []
        for lf in self.lfs:
            slots = []
            for t in lf.tasks or ():
                slots.append((tasks.index(t), seen[t]))
                seen[t] += 1
            where.append(slots)
        return list(tasks), where

    def _new_votes(self) -> list[_Votes]:
        tasks, _ = self._targets()
        if tasks == [None]:
            return [_Votes(len(self.lfs))]
        return [_Votes(len(self.task_sources[str(t)])) for t in tasks]

    def _output(self, mats: list[sp.csr_matrix]) -> LabelOutput:
        """The matrix (single task) or ``{task: matrix}`` (task-bound sources)."""
        if not self.multi_task:
            return mats[0]
        return dict(zip(self.task_sources, mats, strict=True))

    def _record_faults(self, n_rows: int, faults: dict[str, int], first: dict[str, str]) -> None:
        """Store the run's row count and faults, and warn about any fault."""
        self.n_rows_ = n_rows
        self.fault_counts_ = faults
        self.first_faults_ = first
        _warn_faults(faults, first, n_rows)

    def _run(self, blocks: Iterator[_Block], total: int | None
             ) -> tuple[list[_Votes], int, dict[str, int], dict[str, str]]:
        tasks, where = self._targets()
        votes = self._new_votes()
        ks = [self._cardinality_of(t) for t in tasks]
        faults = {lf.name: 0 for lf in self.lfs}
        first: dict[str, str] = {}
        n_rows = 0
        first_block = next(blocks, None)
        if total is None and first_block is not None:
            total = first_block.hint
        bar = tqdm(total=total, disable=not self.progress, unit="rows", desc="labeling")
        try:
            block = first_block
            while block is not None:
                self._label_block(block, where, ks, votes, faults, first)
                n_rows = block.start + len(block.records)
                bar.update(len(block.records))
                block = next(blocks, None)
        finally:
            bar.close()
        return votes, n_rows, faults, first

    def _label_block(self, block: _Block, where: list[list[tuple[int, int]]],
                     ks: list[int | None], votes: list[_Votes], faults: dict[str, int],
                     first: dict[str, str]) -> None:
        lfs = self.lfs
        lf_ks = [[ks[t] for t, _ in slots] for slots in where]
        # Loop over rows is inherent: each source is arbitrary Python code on one data point.
        for offset, record in enumerate(block.records):
            i = block.start + offset
            row = record if isinstance(record, Row) else Row(record)
            cache: dict[tuple[int, ...], Any] = {}
            for lf, slots, slot_ks in zip(lfs, where, lf_ks, strict=True):
                try:
                    x = _preprocessed(lf, row, cache)
                    out = lf.label(x)
                    labels = _normalise(lf, out, slot_ks)
                except Exception as exc:  # noqa: BLE001 - re-raised or counted, never dropped
                    where_txt = _row_text(i, block, offset)
                    if not self.fault_tolerant:
                        if isinstance(exc, LabelingFunctionError):
                            raise LabelingFunctionError(f"{exc} (source {lf.name!r}, "
                                                        f"{where_txt})") from None
                        _add_note(exc, f"raised by labeling function {lf.name!r} on {where_txt}")
                        raise
                    faults[lf.name] += 1
                    if lf.name not in first:
                        first[lf.name] = f"{type(exc).__name__}: {exc} ({where_txt})"
                    continue
                for (t, col), value in zip(slots, labels, strict=True):
                    if value != ABSTAIN:
                        v = votes[t]
                        v.rows.append(i)
                        v.cols.append(col)
                        v.vals.append(value)


def _preprocessed(lf: LabelingFunction, row: Row, cache: dict[tuple[int, ...], Any]) -> Any:
    """Run ``lf``'s preprocessors, reusing results of shared prefixes within this row."""
    x: Any = row
    key: tuple[int, ...] = ()
    for p in lf.pre:
        key = key + (id(p),)
        if key in cache:
            x = cache[key]
        else:
            x = p(x)
            cache[key] = x
    return x


def _check_label(lf: LabelingFunction, value: Any, k: int | None) -> int:
    if value is None:
        return ABSTAIN
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise LabelingFunctionError(
            f"labeling function {lf.name!r} returned {value!r} ({type(value).__name__}); "
            "expected an int class label 0..k-1, or -1/None to abstain (a bool usually means "
            "a missing `1 if ... else -1`)")
    value = int(value)
    if value < ABSTAIN or (k is not None and value >= k):
        upper = "k-1" if k is None else str(k - 1)
        raise LabelingFunctionError(f"labeling function {lf.name!r} returned {value}; expected "
                                    f"-1 (abstain) or a class in 0..{upper}")
    return value


def _normalise(lf: LabelingFunction, out: Any, ks: list[int | None]) -> list[int]:
    """One label per declared task (a single-task source has one slot)."""
    tasks = lf.tasks
    if tasks is None or len(tasks) == 1:
        return [_check_label(lf, out, ks[0])]
    if out is None or (isinstance(out, Integral) and not isinstance(out, bool)
                       and int(out) == ABSTAIN):
        return [ABSTAIN] * len(tasks)
    if isinstance(out, Mapping):
        unknown = set(out) - set(tasks)
        if unknown:
            raise LabelingFunctionError(
                f"labeling function {lf.name!r} returned labels for tasks {sorted(unknown)}; it "
                f"declares task={tasks}")
        return [_check_label(lf, out.get(t), k) for t, k in zip(tasks, ks, strict=True)]
    if isinstance(out, (tuple, list)) and len(out) == len(tasks):
        return [_check_label(lf, v, k) for v, k in zip(out, ks, strict=True)]
    raise LabelingFunctionError(
        f"labeling function {lf.name!r} labels tasks {tasks} and returned {out!r}; expected a "
        f"tuple of {len(tasks)} labels, a dict {{task: label}}, or -1/None to abstain")


def _row_text(i: int, block: _Block, offset: int) -> str:
    if block.labels is not None:
        return f"row {i} (index {block.labels[offset]!r})"
    return f"row {i}"


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(note)
    else:  # pragma: no cover - Python 3.10: the note goes into the message
        exc.args = (f"{exc.args[0] if exc.args else ''} [{note}]",) + tuple(exc.args[1:])


def _warn_faults(faults: dict[str, int], first: dict[str, str], n_rows: int) -> None:
    failing = {name: c for name, c in faults.items() if c}
    if not failing:
        return
    parts = [f"{name!r} on {c}/{n_rows} rows (first: {first[name]})"
             for name, c in failing.items()]
    warnings.warn(
        f"{sum(failing.values())} labeling faults, counted as abstentions: " + "; ".join(parts)
        + ". Inspect applier.fault_counts_ / first_faults_, and fix the sources.",
        LabelingFaultWarning, stacklevel=4)  # _warn_faults <- _record_faults <- apply


def _is_dask(data: Any) -> bool:
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr")


def _frame_blocks(df: pd.DataFrame, start: int, chunk_rows: int, first: bool
                  ) -> Iterator[_Block]:
    n = len(df)
    for s in range(0, n, chunk_rows):
        part = df.iloc[s:s + chunk_rows]
        records = part.to_dict("records")
        labels = list(part.index)
        if first and s == 0:
            yield _Block(records, start + s, labels, n)
        else:
            yield _Block(records, start + s, labels)


def _record_blocks(records: Sequence[Any], start: int, chunk_rows: int,
                   first: bool) -> Iterator[_Block]:
    bad = next((r for r in records if not isinstance(r, Mapping)), None)
    if bad is not None:
        raise LabelingFunctionError(
            f"a data point is a {type(bad).__name__}; expected dicts (a list of dicts), a "
            "DataFrame, or chunks of either")
    n = len(records)
    for s in range(0, n, chunk_rows):
        part = records[s:s + chunk_rows]
        if first and s == 0:
            yield _Block(part, start + s, None, n)
        else:
            yield _Block(part, start + s, None)


def _blocks(data: Any, chunk_rows: int) -> Iterator[_Block]:
    """Normalise every supported input into consecutive blocks of records."""
    if _is_dask(data):
        raise LabelingFunctionError("data is a Dask collection; use "
                                    "metal.labeling.dask.DaskLFApplier for partitioned data")
    if isinstance(data, pd.DataFrame):
        return _frame_blocks(data, 0, chunk_rows, True)
    if isinstance(data, (list, tuple)) and (not data or isinstance(data[0], Mapping)):
        return _record_blocks(data, 0, chunk_rows, True)
    if isinstance(data, (str, bytes, Mapping, np.ndarray)) or not isinstance(data, Iterable):
        raise LabelingFunctionError(
            f"data is a {type(data).__name__}; expected a pandas DataFrame, a list of dicts, or "
            "an iterator of chunks (DataFrames or lists of dicts)")
    return _chunk_blocks(data, chunk_rows)


def _chunk_blocks(chunks: Iterable[Any], chunk_rows: int) -> Iterator[_Block]:
    start = 0
    for c, chunk in enumerate(chunks):
        if isinstance(chunk, pd.DataFrame):
            inner = _frame_blocks(chunk, start, chunk_rows, False)
        elif isinstance(chunk, (list, tuple)):
            inner = _record_blocks(chunk, start, chunk_rows, False)
        else:
            raise LabelingFunctionError(
                f"chunk {c} is a {type(chunk).__name__}; expected each chunk to be a DataFrame "
                "or a list of dicts")
        yield from inner
        start += len(chunk)


def apply_lfs(lfs: Sequence[LabelingFunction], data: Any, **kwargs: Any) -> LabelOutput:
    """Shortcut for ``LFApplier(lfs, **kwargs).apply(data)``."""
    return LFApplier(lfs, **kwargs).apply(data)

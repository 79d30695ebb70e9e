"""Apply labeling functions to partitioned data with Dask (the only module importing Dask).

Each partition is labeled where it lives (a worker of a ``dask.distributed`` cluster, or the
local scheduler); only the votes' coordinates travel back, and the label matrix is assembled
in CSR on the client. Sources must be picklable by cloudpickle (closures and lambdas are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from metal.labeling.apply import (
    LabelOutput,
    LFApplier,
    _frame_blocks,
    csr_from_votes,
)
from metal.labeling.lf import LabelingFunction, LabelingFunctionError

_Coords = tuple[np.ndarray, np.ndarray, np.ndarray]
_Part = tuple[int, list[_Coords], dict[str, int], dict[str, str]]


def _label_partition(part: pd.DataFrame, lfs: list[LabelingFunction],
                     cardinality: int | Mapping[str, int] | None,
                     fault_tolerant: bool) -> _Part:
    """Label one partition (on a worker); return its row count, vote coordinates and faults."""
    applier = LFApplier(lfs, cardinality=cardinality, fault_tolerant=fault_tolerant,
                        progress=False)
    blocks = _frame_blocks(part, 0, max(len(part), 1), True)
    votes, n, faults, first = applier._run(blocks, None)
    coords = [tuple(a.copy() for a in v.arrays()) for v in votes]
    return n, coords, faults, first  # type: ignore[return-value]


class DaskLFApplier(LFApplier):
    """Run labeling functions over a Dask DataFrame, one task per partition.

    Same parameters, attributes and outputs as :class:`~metal.labeling.apply.LFApplier`
    (``progress`` and ``chunk_rows`` are not used: watch progress on the Dask dashboard). The
    work runs on the active ``dask.distributed.Client`` if there is one, else on Dask's default
    scheduler.

    Examples
    --------
    >>> import dask.dataframe as dd, pandas as pd
    >>> from metal.labeling.lf import labeling_function
    >>> @labeling_function()
    ... def short(x):
    ...     return 0 if len(x.text) < 5 else -1
    >>> ddf = dd.from_pandas(pd.DataFrame({"text": ["hi", "hello!", "yo"]}), npartitions=2)
    >>> DaskLFApplier([short]).apply(ddf).nnz
    2
    """

    def apply(self, data: Any, *, total: int | None = None,
              npartitions: int | None = None) -> LabelOutput:
        """Label a ``dask.dataframe.DataFrame`` (or a pandas one, split into ``npartitions``).

        Rows are numbered in partition order, as in ``ddf.compute()``. ``total`` is ignored.
        """
        if isinstance(data, pd.DataFrame):
            data = dd.from_pandas(data, npartitions=npartitions or 1)
        if not isinstance(data, dd.DataFrame):
            raise LabelingFunctionError(f"data is a {type(data).__name__}; DaskLFApplier "
                                        "expects a dask.dataframe.DataFrame (or a pandas "
                                        "DataFrame with npartitions=)")
        tasks = [dask.delayed(_label_partition)(p, self.lfs, self.cardinality,
                                                self.fault_tolerant)
                 for p in data.to_delayed()]
        parts: Sequence[_Part] = dask.compute(*tasks)
        n_targets = len(self._new_votes())
        pieces: list[list[_Coords]] = [[] for _ in range(n_targets)]
        faults = {lf.name: 0 for lf in self.lfs}
        first: dict[str, str] = {}
        offset = 0
        for p_index, (n, coords, p_faults, p_first) in enumerate(parts):
            for t, (rows, cols, vals) in enumerate(coords):
                pieces[t].append((rows + offset, cols, vals))
            for name, c in p_faults.items():
                faults[name] += c
            for name, msg in p_first.items():
                first.setdefault(name, f"partition {p_index}, {msg}")
            offset += n
        self._record_faults(offset, faults, first)
        widths = [v.n_cols for v in self._new_votes()]
        mats = []
        for ps, width in zip(pieces, widths, strict=True):
            rows, cols, vals = (np.concatenate([p[j] for p in ps]) if ps
                                else np.zeros(0, np.int64) for j in range(3))
            mats.append(csr_from_votes(rows, cols, vals, shape=(offset, width)))
        return self._output(mats)

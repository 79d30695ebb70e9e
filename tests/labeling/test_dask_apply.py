"""The Dask applier on a real dask.distributed LocalCluster (worker processes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("dask.distributed")

from metal.labeling.apply import LabelingFaultWarning, LFApplier  # noqa: E402
from metal.labeling.dask import DaskLFApplier  # noqa: E402
from metal.labeling.lf import LabelingFunction, labeling_function  # noqa: E402


@labeling_function()
def even(x):  # type: ignore[no-untyped-def]
    return 0 if x.i % 2 == 0 else -1


@labeling_function(resources={"d": 3})
def div(x, d):  # type: ignore[no-untyped-def]
    return 1 if x.i % d == 0 else -1


def _flaky(x):  # type: ignore[no-untyped-def]
    if x.i % 7 == 0:
        raise ZeroDivisionError("boom")
    return 1


flaky = LabelingFunction("flaky", _flaky)


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    # Thread workers keep the default suite fast; the slow test below uses worker processes.
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_dask_applier_matches_in_memory_applier(client) -> None:  # type: ignore[no-untyped-def]
    df = pd.DataFrame({"i": np.arange(100)})
    ddf = dd.from_pandas(df, npartitions=4)
    applier = DaskLFApplier([even, div, flaky], fault_tolerant=True)
    with pytest.warns(LabelingFaultWarning, match="'flaky' on 15/100 rows"):
        L = applier.apply(ddf)
    with pytest.warns(LabelingFaultWarning):
        ref = LFApplier([even, div, flaky], fault_tolerant=True, progress=False).apply(df)
    assert L.shape == (100, 3) and (L != ref).nnz == 0
    assert applier.fault_counts_ == {"even": 0, "div": 0, "flaky": 15}
    assert applier.n_rows_ == 100
    assert len(client.scheduler_info()["workers"]) == 2


def test_dask_applier_without_fault_tolerance_raises(client) -> None:  # type: ignore[no-untyped-def]
    ddf = dd.from_pandas(pd.DataFrame({"i": np.arange(20)}), npartitions=2)
    with pytest.raises(ZeroDivisionError):
        DaskLFApplier([flaky]).apply(ddf)


def test_in_memory_applier_refuses_dask_data() -> None:
    from metal.labeling.lf import LabelingFunctionError

    ddf = dd.from_pandas(pd.DataFrame({"i": np.arange(4)}), npartitions=2)
    with pytest.raises(LabelingFunctionError, match="DaskLFApplier"):
        LFApplier([even], progress=False).apply(ddf)


@pytest.mark.slow
def test_dask_applier_on_worker_processes() -> None:
    """Sources travel to separate worker processes (pickled) and votes come back."""
    df = pd.DataFrame({"i": np.arange(60)})
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster):
        L = DaskLFApplier([even, div]).apply(dd.from_pandas(df, npartitions=3))
    ref = LFApplier([even, div], progress=False).apply(df)
    assert (L != ref).nnz == 0 and L.nnz == 30 + 20

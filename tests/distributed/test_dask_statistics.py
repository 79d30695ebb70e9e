"""Dask statistics on a real LocalCluster with two worker processes equal in-process ones."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("dask.distributed")

import dask  # noqa: E402

from metal import (  # noqa: E402
    ConfigError,
    DataFormatError,
    LabelMatrixError,
    LabelModel,
    label_statistics,
)
from metal.data import make_synthetic  # noqa: E402
from metal.distributed.dask import (  # noqa: E402
    dask_statistics,
    fit_dask,
    from_npy,
    lf_statistics,
    predict_proba_dask,
)
from metal.label_model import dense  # noqa: E402
from metal.labeling.apply import LFApplier  # noqa: E402
from metal.labeling.lf import labeling_function  # noqa: E402
from metal.matrix import to_sparse_labels  # noqa: E402


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", memory_limit="1GiB")
    c = distributed.Client(cluster)
    # import metal on the workers up front, so the tests below time their own work only
    c.run(importlib.import_module, "metal.distributed.dask")
    c.run(dense._int_mm)  # imports torch for the dense kernel
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return make_synthetic(n=5000, m=7, cardinality=3, seed=5)


def test_statistics_on_two_worker_processes_equal_in_process(same_statistics, client, data):  # type: ignore[no-untyped-def]
    assert len(client.scheduler_info()["workers"]) == 2
    full = label_statistics(data.L, 3)
    arr = da.from_array(data.L.astype(np.int8), chunks=(600, 4))  # columns split too
    same_statistics(dask_statistics(arr, 3, split_every=3), full)
    frame = dd.from_pandas(pd.DataFrame(data.L, columns=[f"s{i}" for i in range(7)]),
                           npartitions=5)
    same_statistics(dask_statistics(frame, 3), full)
    bag = db.from_sequence(data.L.tolist(), npartitions=4)
    same_statistics(dask_statistics(bag, 3), full)
    blocks = [dask.delayed(to_sparse_labels)(data.L[i:i + 1000]) for i in range(0, 5000, 1000)]
    same_statistics(dask_statistics(blocks, 3), full)
    # the tasks really ran on the worker processes, not in this one
    assert client.run(lambda: 1).keys() and len(client.run(lambda: 1)) == 2


def test_fit_and_predict_on_dask_equal_in_process(client, data):  # type: ignore[no-untyped-def]
    ref = LabelModel(cardinality=3, seed=0, mode="moments").fit(data.L)
    arr = da.from_array(data.L, chunks=(700, 7))
    model = fit_dask(LabelModel(cardinality=3, seed=0, mode="moments"), arr)
    np.testing.assert_allclose(model.conditional_probs_, ref.conditional_probs_, atol=1e-10)
    probs = predict_proba_dask(model, arr)
    assert probs.shape == (5000, 3)
    np.testing.assert_allclose(probs.compute(), ref.predict_proba(data.L), atol=1e-10)
    frame = dd.from_pandas(pd.DataFrame(data.L), npartitions=3)
    got = predict_proba_dask(model, frame).compute()
    np.testing.assert_allclose(got.to_numpy(), ref.predict_proba(data.L), atol=1e-10)
    bag = db.from_sequence(data.L[:50].tolist(), npartitions=2)
    np.testing.assert_allclose(np.array(predict_proba_dask(model, bag).compute()),
                               ref.predict_proba(data.L[:50]), atol=1e-10)


def test_from_npy_reads_blocks_on_the_workers(same_statistics, client, tmp_path: Path, data):  # type: ignore[no-untyped-def]
    L = data.L.astype(np.int8)
    np.save(tmp_path / "L.npy", L)
    arr = from_npy(tmp_path / "L.npy", chunk_rows=1100)
    assert arr.shape == L.shape and arr.dtype == np.int8 and len(arr.chunks[0]) == 5
    np.testing.assert_array_equal(arr.compute(), L)
    same_statistics(dask_statistics(arr, 3), label_statistics(L, 3))


@labeling_function()
def small(x):  # type: ignore[no-untyped-def]
    return 0 if x.v < 3 else -1


@labeling_function()
def big(x):  # type: ignore[no-untyped-def]
    return 1 if x.v > 5 else -1


@labeling_function()
def odd(x):  # type: ignore[no-untyped-def]
    return x.v % 2


def test_lf_statistics_equal_apply_then_count(same_statistics, client):  # type: ignore[no-untyped-def]
    frame = pd.DataFrame({"v": np.random.default_rng(0).integers(0, 10, size=400)})
    lfs = [small, big, odd]
    ref = label_statistics(LFApplier(lfs, cardinality=2).apply(frame), 2)
    got = lf_statistics(dd.from_pandas(frame, npartitions=4), lfs, 2)
    same_statistics(got, ref)


def test_dask_errors(client, data):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="expected a dask.array"):
        dask_statistics(data.L, 3)
    with pytest.raises(LabelMatrixError, match="contains the label 2"):
        dask_statistics(da.from_array(data.L, chunks=(1000, 7)), 2)
    bag = db.from_sequence([[0, 1], [1, 0, 1]], npartitions=2)
    with pytest.raises(LabelMatrixError, match="sources"):
        dask_statistics(bag, 2)
    with pytest.raises(ConfigError, match="split_every"):
        dask_statistics(da.from_array(data.L), 3, split_every=1)
    with pytest.raises(ConfigError, match="DataFrame"):
        lf_statistics(pd.DataFrame({"v": [1]}), [small], 2)  # type: ignore[arg-type]


def test_npy_path_is_read_and_scored_on_the_workers(same_statistics, client, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    data):
    L = data.L.astype(np.int8)
    path = tmp_path / "L.npy"
    np.save(path, L)
    with distributed.get_task_stream(client) as ts:
        stats = dask_statistics(path, 3, partitions=6)
    same_statistics(stats, label_statistics(L, 3))
    ran = {t["worker"] for t in ts.data if "npy_statistics" in str(t["key"])}
    assert len(ran) == 2  # both worker processes counted row ranges
    ref = LabelModel(cardinality=3, seed=0, mode="moments").fit(L)
    model = fit_dask(LabelModel(cardinality=3, seed=0, mode="moments"), str(path), partitions=4)
    np.testing.assert_allclose(model.conditional_probs_, ref.conditional_probs_, atol=1e-10)
    expected = ref.predict_proba(L)
    lazy = predict_proba_dask(model, path, partitions=3)
    assert isinstance(lazy, da.Array) and lazy.shape == (5000, 3) and lazy.dtype == np.float64
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-10)
    # written by the workers into an .npy, each its own rows; float32 on request
    out = predict_proba_dask(model, path, out=tmp_path / "post.npy", partitions=5)
    assert out == str(tmp_path / "post.npy")
    np.testing.assert_allclose(np.load(out), expected, atol=1e-10)
    out32 = predict_proba_dask(model, path, out=tmp_path / "post32.npy", dtype=np.float32)
    got32 = np.load(out32)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, atol=1e-6)


def test_npy_path_errors(client, tmp_path: Path, data):  # type: ignore[no-untyped-def]
    path = tmp_path / "L.npy"
    np.save(path, data.L.astype(np.int8))
    with pytest.raises(LabelMatrixError, match="contains the label 2"):
        dask_statistics(path, 2)
    with pytest.raises(ConfigError, match="partitions"):
        dask_statistics(path, 3, partitions=0)
    np.save(tmp_path / "f.npy", data.L.astype(np.float32))
    with pytest.raises(DataFormatError, match="integer"):
        dask_statistics(tmp_path / "f.npy", 3)
    model = LabelModel(cardinality=3, seed=0, mode="moments").fit(data.L)
    with pytest.raises(ConfigError, match="out="):
        predict_proba_dask(model, da.from_array(data.L), out=tmp_path / "p.npy")

"""Streaming: chunked statistics and fits equal the in-memory ones; bounded-memory readers."""

from __future__ import annotations

import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from metal import ConfigError, DataFormatError, LabelMatrixError, LabelModel, label_statistics
from metal.data import make_synthetic
from metal.distributed import (
    StreamingLabelModel,
    fit_stream,
    iter_chunks,
    predict_proba_stream,
    read_npy_chunks,
    stream_statistics,
)
from metal.matrix import to_sparse_labels


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return make_synthetic(n=6000, m=8, cardinality=3, seed=3)


def test_chunked_statistics_equal_in_memory_dense_sparse_and_ragged(same_statistics, data):  # type: ignore[no-untyped-def]
    full = label_statistics(data.L, 3)
    L = data.L
    # ragged chunks, mixing dense int8 and sparse blocks, one row alone
    bounds = [0, 1, 700, 701, 2500, 4999, 6000]
    chunks = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        block = L[a:b].astype(np.int8)
        chunks.append(to_sparse_labels(block) if i % 2 else block)
    same_statistics(stream_statistics(iter(chunks), 3), full)
    same_statistics(stream_statistics(iter_chunks(L, 513), 3), full)
    # statistics add to a given start (resuming a stream)
    first = stream_statistics(iter_chunks(L[:3000], 1000), 3)
    same_statistics(stream_statistics(iter_chunks(L[3000:], 1000), 3, stats=first), full)


def test_stream_statistics_reads_a_generator_once(data):  # type: ignore[no-untyped-def]
    seen: list[int] = []

    def gen():  # type: ignore[no-untyped-def]
        for c in iter_chunks(data.L, 1000):
            seen.append(c.shape[0])
            yield c

    stats = stream_statistics(gen(), 3)
    assert seen == [1000] * 6 and stats.n_rows == 6000


def test_fit_stream_equals_fit_in_memory(data):  # type: ignore[no-untyped-def]
    ref = LabelModel(cardinality=3, seed=0, mode="moments").fit(data.L)
    got = fit_stream(LabelModel(cardinality=3, seed=0, mode="moments"),
                     iter_chunks(data.L, 777))
    np.testing.assert_allclose(got.conditional_probs_, ref.conditional_probs_, atol=1e-10)
    np.testing.assert_allclose(got.class_balance_, ref.class_balance_, atol=1e-12)
    probs = np.vstack(list(predict_proba_stream(got, iter_chunks(data.L, 1000))))
    np.testing.assert_allclose(probs, ref.predict_proba(data.L), atol=1e-10)
    # the fit is informative: well above always predicting the majority class
    majority = np.bincount(data.Y).max() / data.Y.size
    assert (probs.argmax(1) == data.Y).mean() > majority + 0.15


def test_fit_stream_passes_class_balance_and_y_dev(data):  # type: ignore[no-untyped-def]
    p = np.array([0.5, 0.3, 0.2])
    got = fit_stream(LabelModel(cardinality=3, mode="moments"), iter_chunks(data.L, 2000),
                     class_balance=p)
    np.testing.assert_allclose(got.class_balance_, p)
    ref = LabelModel(cardinality=3, mode="moments").fit(data.L, Y_dev=data.Y[:300])
    got = fit_stream(LabelModel(cardinality=3, mode="moments"), iter_chunks(data.L, 2000),
                     Y_dev=data.Y[:300])
    np.testing.assert_allclose(got.class_balance_, ref.class_balance_)
    with pytest.raises(ConfigError, match="not both"):
        fit_stream(LabelModel(cardinality=3), iter_chunks(data.L, 2000), class_balance=p,
                   Y_dev=data.Y[:10])


def test_streaming_model_fit_partial_fit_and_refit(same_statistics, data):  # type: ignore[no-untyped-def]
    ref = LabelModel(cardinality=3, seed=0, mode="moments").fit(data.L)
    model = StreamingLabelModel(cardinality=3, seed=0, mode="moments")
    for c in iter_chunks(data.L, 2000):
        model.partial_fit(c, refit=False)
    same_statistics(model.statistics_, ref.statistics_)
    with pytest.raises(AttributeError):  # statistics only: not fitted yet
        model.predict_proba(data.L[:5])
    model.refit()
    np.testing.assert_allclose(model.conditional_probs_, ref.conditional_probs_, atol=1e-10)
    # fit on a matrix, then a batch more: the statistics of all rows seen
    model = StreamingLabelModel(cardinality=3, seed=0, mode="moments").fit(data.L[:4000])
    model.partial_fit(data.L[4000:])
    np.testing.assert_allclose(model.conditional_probs_, ref.conditional_probs_, atol=1e-10)
    # fit on a stream through the estimator API
    model = StreamingLabelModel(cardinality=3, seed=0, mode="moments")
    model.fit(iter_chunks(data.L, 1500))
    np.testing.assert_allclose(model.predict_proba(data.L), ref.predict_proba(data.L),
                               atol=1e-10)
    assert sum(p.shape[0] for p in model.predict_proba_stream(iter_chunks(data.L, 999))) == 6000
    # a list of blocks is a stream too
    listed = StreamingLabelModel(cardinality=3, seed=0, mode="moments")
    listed.fit([data.L[:2500], data.L[2500:]])
    np.testing.assert_allclose(listed.conditional_probs_, ref.conditional_probs_, atol=1e-10)


def test_read_npy_chunks_round_trip_and_errors(same_statistics, tmp_path: Path, data):  # type: ignore[no-untyped-def]
    L = data.L.astype(np.int8)
    np.save(tmp_path / "L.npy", L)
    blocks = list(read_npy_chunks(tmp_path / "L.npy", 1024))
    assert [b.shape[0] for b in blocks] == [1024] * 5 + [880]
    np.testing.assert_array_equal(np.vstack(blocks), L)
    same_statistics(stream_statistics(read_npy_chunks(tmp_path / "L.npy", 1024), 3),
                           label_statistics(L, 3))
    np.save(tmp_path / "v.npy", np.zeros(5, dtype=np.int8))
    with pytest.raises(DataFormatError, match="2-D"):
        next(read_npy_chunks(tmp_path / "v.npy"))
    raw = (tmp_path / "L.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:-100])
    with pytest.raises(DataFormatError, match="truncated"):
        list(read_npy_chunks(tmp_path / "cut.npy", 1024))


def test_stream_errors_say_what_to_do(data):  # type: ignore[no-untyped-def]
    with pytest.raises(LabelMatrixError, match="chunk 1: this chunk has 7 sources"):
        stream_statistics(iter([data.L[:10], data.L[10:20, :7]]), 3)
    with pytest.raises(LabelMatrixError, match="chunk 1: L contains the label 3"):
        stream_statistics(iter([data.L[:10], np.full((3, 8), 3)]), 3)
    with pytest.raises(LabelMatrixError, match="empty"):
        stream_statistics(iter([]), 3)
    with pytest.raises(ConfigError, match="one matrix"):
        stream_statistics(data.L, 3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one matrix"):
        stream_statistics(sp.csr_matrix((3, 3)), 3)  # type: ignore[arg-type]
    g = nx.Graph([(0, 1)])
    with pytest.raises(ConfigError, match="independent sources only"):
        fit_stream(LabelModel(cardinality=3, dependencies=g), iter_chunks(data.L, 1000))
    with pytest.raises(ConfigError, match="second pass"):
        fit_stream(LabelModel(cardinality=3, balance_moments=3), iter_chunks(data.L, 1000),
                   class_balance="estimate")
    with pytest.raises(LabelMatrixError, match="before had 8"):
        StreamingLabelModel(cardinality=3).partial_fit(data.L[:100], refit=False) \
            .partial_fit(data.L[:100, :5])
    with pytest.raises(ConfigError, match="no statistics"):
        StreamingLabelModel(cardinality=3).refit()


def test_streaming_model_saves_and_loads(tmp_path: Path, data):  # type: ignore[no-untyped-def]
    model = StreamingLabelModel(cardinality=3, seed=0, mode="moments")
    model.fit(iter_chunks(data.L, 2000))
    model.save(tmp_path / "m.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = StreamingLabelModel.load(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.predict_proba(data.L[:50]),
                               model.predict_proba(data.L[:50]))


def test_fits_from_statistics_refuse_too_many_values_up_front() -> None:
    from metal.label_model.label_model import MAX_MOMENT_INDICATORS

    m = MAX_MOMENT_INDICATORS // 2 + 1  # 2 values each: just above the limit
    rng = np.random.default_rng(0)
    L = np.where(rng.random((400, m)) < 0.3, rng.integers(0, 2, size=(400, m)), -1)
    with pytest.raises(ConfigError, match="at most 500.*LabelModel\\(\\).fit\\(L\\)"):
        fit_stream(LabelModel(cardinality=2), iter_chunks(L, 100))


def test_read_npy_chunks_row_ranges_and_reused_buffer(tmp_path: Path, data):  # type: ignore[no-untyped-def]
    L = data.L.astype(np.int8)
    np.save(tmp_path / "L.npy", L)
    part = [b.copy() for b in read_npy_chunks(tmp_path / "L.npy", 700, start=1000, stop=3100)]
    assert [b.shape[0] for b in part] == [700, 700, 700]
    np.testing.assert_array_equal(np.vstack(part), L[1000:3100])
    reused = read_npy_chunks(tmp_path / "L.npy", 1000, reuse_buffer=True)
    first = next(reused)
    np.testing.assert_array_equal(first, L[:1000])
    second = next(reused)
    assert np.shares_memory(first, second)  # one buffer, overwritten block by block
    np.testing.assert_array_equal(second, L[1000:2000])
    with pytest.raises(ConfigError, match="not inside"):
        next(read_npy_chunks(tmp_path / "L.npy", 100, start=7000))


def test_predict_proba_stream_equals_predict_proba_on_every_path(data):  # type: ignore[no-untyped-def]
    model = LabelModel(cardinality=3, seed=0, mode="moments").fit(data.L)
    ref = model.predict_proba(data.L)
    dense_blocks = list(predict_proba_stream(model, iter_chunks(data.L.astype(np.int8), 1300)))
    np.testing.assert_allclose(np.vstack(dense_blocks), ref, atol=1e-10)
    sparse_blocks = predict_proba_stream(model, (to_sparse_labels(c)
                                                 for c in iter_chunks(data.L, 2500)))
    np.testing.assert_allclose(np.vstack(list(sparse_blocks)), ref, atol=1e-10)
    dep = LabelModel(cardinality=3, seed=0, dependencies=nx.Graph([(0, 1)])).fit(data.L)
    got = np.vstack(list(predict_proba_stream(dep, iter_chunks(data.L, 2000))))
    np.testing.assert_allclose(got, dep.predict_proba(data.L), atol=1e-10)

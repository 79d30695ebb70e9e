"""Integer-product kernels for dense blocks equal the sparse statistics and posteriors."""

from __future__ import annotations

import numpy as np
import pytest

from metal import LabelModel, label_statistics
from metal.data import make_synthetic
from metal.distributed import chunk_statistics
from metal.label_model import dense
from metal.label_model.dense import DenseScorer, dense_applicable, dense_cooccurrence
from metal.matrix import to_sparse_labels


@pytest.mark.parametrize("k,m,dtype", [(2, 9, np.int8), (3, 5, np.int16), (5, 4, np.int64)])
def test_dense_cooccurrence_equals_sparse_counts(k: int, m: int, dtype: type) -> None:
    rng = np.random.default_rng(k)
    L = rng.integers(-1, k, size=(3001, m)).astype(dtype)
    ref = label_statistics(to_sparse_labels(L), k)  # the sparse path, not the dense kernel
    np.testing.assert_array_equal(dense_cooccurrence(L, k), ref.cooccurrence.toarray())


def test_numpy_fallback_and_small_blocks_give_the_same_counts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    L = np.random.default_rng(0).integers(-1, 3, size=(2000, 6)).astype(np.int8)
    ref = label_statistics(to_sparse_labels(L), 3).cooccurrence.toarray()
    monkeypatch.setattr(dense, "MAX_BLOCK_BYTES", 100)  # 256-row blocks, a ragged last one
    np.testing.assert_array_equal(dense_cooccurrence(L, 3), ref)
    monkeypatch.setattr(dense, "_INT_MM", False)  # the float64 NumPy product
    np.testing.assert_array_equal(dense_cooccurrence(L, 3), ref)


def test_chunk_statistics_uses_the_kernel_only_where_it_applies() -> None:
    assert dense_applicable(np.zeros((2, 3), np.int8), 6)
    assert not dense_applicable(np.zeros((2, 3), np.float64), 6)
    assert not dense_applicable(np.zeros((2, 3), np.int8), dense.MAX_DENSE_INDICATORS + 1)
    L = np.random.default_rng(1).integers(-1, 2, size=(500, 7))
    got, ref = chunk_statistics(L, 2), label_statistics(L, 2)
    np.testing.assert_array_equal(got.counts, ref.counts)
    assert (got.cooccurrence != ref.cooccurrence).nnz == 0


@pytest.mark.parametrize("k,model_abstains", [(2, False), (3, True), (4, False)])
def test_dense_scorer_matches_the_sparse_posterior(k: int, model_abstains: bool) -> None:
    data = make_synthetic(n=3000, m=6, cardinality=k, seed=k)
    model = LabelModel(cardinality=k, model_abstains=model_abstains, seed=0).fit(data.L)
    table, base, unseen = model._log_tables()
    scorer = DenseScorer(table, base, 6, k, unseen)
    got, n_unseen = scorer.log_proba(data.L.astype(np.int8))
    ref = model.predict_log_proba(data.L)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    assert n_unseen == 0
    # a vote on a value never seen in fit is counted (and carries no evidence)
    seen = np.zeros(6 * k, dtype=bool)
    seen[model.emitted_] = True
    i = int(np.flatnonzero(~seen)[0]) if (~seen).any() else None
    if i is not None:
        L = np.full((2, 6), -1)
        L[0, i // k] = i % k
        _, n_unseen = DenseScorer(table, base, 6, k, ~seen).log_proba(L)
        assert n_unseen == 1


def test_dense_scorer_writes_into_out_in_pieces_and_equals_the_sparse_path() -> None:
    from metal.matrix import to_sparse_labels

    data = make_synthetic(n=5000, m=9, cardinality=3, seed=11)
    model = LabelModel(cardinality=3, seed=0, mode="moments").fit(data.L)
    ref = model.predict_log_proba(to_sparse_labels(data.L))  # the sparse (non-kernel) path
    table, base, unseen = model._log_tables()
    scorer = DenseScorer(table, base, 9, 3, unseen)
    L8 = data.L.astype(np.int8)
    out = np.full((5000, 3), np.nan)
    for start in range(0, 5000, 1700):  # one scorer, its buffers reused, ragged pieces
        scorer.log_proba(L8[start:start + 1700], out=out[start:start + 1700])
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)
    out32 = np.empty((5000, 3), dtype=np.float32)
    got, _ = scorer.log_proba(L8, out=out32)
    assert got is out32
    np.testing.assert_allclose(out32, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        scorer.log_proba(L8, out=np.empty((10, 3)))


def test_block_rows_shrink_with_short_matrices_and_counter_reuses_buffers() -> None:
    big = dense.block_rows(200)
    assert big * 200 <= dense.MAX_BLOCK_BYTES
    assert dense.block_rows(200, 20_000) == 2_500  # an eighth of the rows
    assert dense.block_rows(200, 1000) == dense.MIN_BLOCK_ROWS
    assert dense.block_rows(200, 10**9) == big
    data = make_synthetic(n=7000, m=5, cardinality=3, seed=2)
    counter = dense.DenseCounter(5, 3)
    for start, stop in [(0, 100), (100, 4000), (4000, 7000)]:  # sizes that differ
        counter.add(data.L[start:stop])
    assert counter.n_rows == 7000
    np.testing.assert_array_equal(counter.cooccurrence(),
                                  label_statistics(data.L, 3).cooccurrence.toarray())


@pytest.mark.parametrize("m,k", [(50, 3), (100, 2), (30, 7)])
def test_counter_equals_the_sparse_counts_in_wide_and_per_pair_form(m: int, k: int) -> None:
    """m*k = 150 is counted with one wide product per block, 200 and 210 with one product per
    value pair (WIDE_COUNT_INDICATORS = 192); both equal the sparse path's counts, in blocks of
    any size and with the NumPy fallback."""
    rng = np.random.default_rng(m + k)
    L = np.where(rng.random((900, m)) < 0.3, rng.integers(0, k, (900, m)), -1).astype(np.int8)
    ref = label_statistics(to_sparse_labels(L), k).cooccurrence.toarray()  # the sparse path
    counter = dense.DenseCounter(m, k)
    assert counter._wide == (m * k <= dense.WIDE_COUNT_INDICATORS)
    for start, stop in [(0, 7), (7, 500), (500, 900)]:
        counter.add(L[start:stop])
    np.testing.assert_array_equal(counter.cooccurrence(), ref)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dense, "_INT_MM", False)
        np.testing.assert_array_equal(dense_cooccurrence(L, k), ref)

"""Integer-product kernels for dense blocks equal the sparse statistics and posteriors."""

from __future__ import annotations

import numpy as np
import pytest

from metal import LabelModel, label_statistics
from metal.data import make_synthetic
from metal.distributed import chunk_statistics
from metal.label_model import dense
from metal.label_model.dense import DenseScorer, dense_applicable, dense_cooccurrence


@pytest.mark.parametrize("k,m,dtype", [(2, 9, np.int8), (3, 5, np.int16), (5, 4, np.int64)])
def test_dense_cooccurrence_equals_sparse_counts(k: int, m: int, dtype: type) -> None:
    rng = np.random.default_rng(k)
    L = rng.integers(-1, k, size=(3001, m)).astype(dtype)
    ref = label_statistics(L, k)
    np.testing.assert_array_equal(dense_cooccurrence(L, k), ref.cooccurrence.toarray())


def test_numpy_fallback_and_small_blocks_give_the_same_counts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    L = np.random.default_rng(0).integers(-1, 3, size=(2000, 6)).astype(np.int8)
    ref = label_statistics(L, 3).cooccurrence.toarray()
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

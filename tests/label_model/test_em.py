"""The sparse EM engine: recovery, monotonicity, weights, and the one-hot/dedup helpers."""

import numpy as np
import pytest
import scipy.sparse as sp

from metal.errors import ConfigError
from metal.label_model.em import em_log_posterior, fit_em, one_hot_votes, unique_rows

pytestmark = pytest.mark.timeout(60)


def _dawid_skene(n: int, m: int, k: int, seed: int, abstain: float = 0.3):
    """Rows drawn from the model EM fits: full confusion tables, independent abstains."""
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(k, 5.0))
    y = rng.choice(k, size=n, p=prior)
    conf = np.empty((m, k, k))  # conf[j, y, v] = P(v | y, voted)
    for j in range(m):
        acc = rng.uniform(0.55, 0.9)
        for c in range(k):
            off = rng.dirichlet(np.ones(k - 1)) * (1 - acc)
            conf[j, c] = np.insert(off, c, acc)
    L = np.full((n, m), -1, dtype=np.int8)
    for j in range(m):
        u = rng.random(n)
        cum = conf[j, y].cumsum(axis=1)
        votes = (u[:, None] > cum).sum(axis=1)
        keep = rng.random(n) > abstain
        L[keep, j] = votes[keep]
    return L, y, prior, conf


def _mv_posterior(L: np.ndarray, k: int) -> np.ndarray:
    post = np.zeros((L.shape[0], k))
    for c in range(k):
        post[:, c] = (L == c).sum(axis=1)
    post += 1e-3
    return post / post.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("k", [2, 3])
def test_em_recovers_confusion_tables_and_error_shrinks_with_n(k: int) -> None:
    errors = []
    for n in (2_000, 50_000):
        L, y, prior, conf = _dawid_skene(n, 8, k, seed=1)
        A, src = one_hot_votes(L, k)
        res = fit_em(A, src, _mv_posterior(L, k), pseudo_count=1.0, max_iter=300, tol=1e-9)
        tables = np.exp(res.log_tables).reshape(8, k, k)  # [j, v, y]
        errors.append(np.abs(tables.transpose(0, 2, 1) - conf).mean())
        assert np.allclose(np.exp(res.log_prior), prior, atol=0.05)
    assert errors[1] < errors[0]
    assert errors[1] < 0.01


def test_objective_never_decreases_and_converges() -> None:
    L, *_ = _dawid_skene(5_000, 6, 3, seed=2)
    A, src = one_hot_votes(L, 3, abstain_symbol=True)
    res = fit_em(A, src, _mv_posterior(L, 3), max_iter=200, tol=1e-10)
    obj = np.array(res.objective)
    assert (np.diff(obj) >= -1e-6 * np.abs(obj[1:])).all()
    assert res.converged


def test_deduplicated_rows_with_weights_equal_the_full_fit() -> None:
    L, *_ = _dawid_skene(3_000, 4, 2, seed=3, abstain=0.5)
    U, inverse, counts = unique_rows(L)
    assert U.shape[0] < L.shape[0] and np.array_equal(U[inverse], L)
    A, src = one_hot_votes(L, 2)
    Au, _ = one_hot_votes(U, 2)
    full = fit_em(A, src, _mv_posterior(L, 2), max_iter=50, tol=0)
    dedup = fit_em(Au, src, _mv_posterior(U, 2), row_weights=counts, max_iter=50, tol=0)
    assert np.allclose(full.log_tables, dedup.log_tables)
    assert np.allclose(full.posterior, dedup.posterior[inverse])


def test_sparse_and_dense_inputs_agree() -> None:
    L, *_ = _dawid_skene(500, 5, 3, seed=4, abstain=0.6)
    Ls = sp.csr_matrix((L[L >= 0].astype(np.int64), np.nonzero(L >= 0)), shape=L.shape)
    for abstain in (False, True):
        Ad, sd = one_hot_votes(L, 3, abstain_symbol=abstain)
        As, ss = one_hot_votes(Ls, 3, abstain_symbol=abstain)
        assert (Ad != As).nnz == 0 and np.array_equal(sd, ss)
        assert np.allclose(Ad.sum(axis=1), 5 if abstain else (L >= 0).sum(axis=1)[:, None])
    U, inverse, counts = unique_rows(Ls)
    Ud, inv_d, counts_d = unique_rows(L)
    assert U.shape[0] == Ud.shape[0] and counts.sum() == 500
    assert np.array_equal(U[inverse].toarray(), Ls.toarray())


def test_fixed_prior_is_kept_and_posterior_matches_e_step() -> None:
    L, *_ = _dawid_skene(1_000, 5, 2, seed=5)
    A, src = one_hot_votes(L, 2)
    prior = np.log([0.8, 0.2])
    res = fit_em(A, src, _mv_posterior(L, 2), init_log_prior=prior, fit_prior=False)
    assert np.allclose(res.log_prior, prior)
    log_post, _ = em_log_posterior(A, src, res.log_tables, res.log_prior)
    assert np.allclose(np.exp(log_post), res.posterior)


def test_bad_inputs_are_refused() -> None:
    L, *_ = _dawid_skene(100, 3, 2, seed=6)
    A, src = one_hot_votes(L, 2)
    with pytest.raises(ConfigError, match="sparse"):
        fit_em(A.toarray(), src, _mv_posterior(L, 2))
    with pytest.raises(ConfigError, match="symbol_source"):
        fit_em(A, src[:-1], _mv_posterior(L, 2))
    with pytest.raises(ConfigError, match="init_posterior"):
        fit_em(A, src)
    with pytest.raises(ConfigError, match="pseudo-counts"):
        fit_em(A, src, _mv_posterior(L, 2), pseudo_count=-1.0)
    with pytest.raises(ConfigError, match="fit_prior=False"):
        fit_em(A, src, _mv_posterior(L, 2), fit_prior=False)
    with pytest.raises(ConfigError, match="label values"):
        one_hot_votes(np.array([[0, 5]]), 2)


def test_implicit_abstain_equals_explicit_abstain_columns() -> None:
    L, *_ = _dawid_skene(3_000, 5, 3, seed=4)
    post0 = _mv_posterior(L, 3)
    A, src = one_hot_votes(L, 3, abstain_symbol=True)
    explicit = fit_em(A, src, post0, pseudo_count=0.5, max_iter=50, tol=0)
    Av, srcv = one_hot_votes(L, 3)
    implicit = fit_em(Av, srcv, post0, pseudo_count=0.5, abstain_pseudo_count=0.5, max_iter=50,
                      tol=0, implicit_abstain=True)
    tables = explicit.log_tables.reshape(5, 4, 3)
    assert implicit.log_abstain is not None
    assert np.allclose(implicit.log_tables.reshape(5, 3, 3), tables[:, :3], atol=1e-8)
    assert np.allclose(implicit.log_abstain, tables[:, 3], atol=1e-8)
    assert np.allclose(implicit.posterior, explicit.posterior, atol=1e-8)
    assert np.allclose(implicit.objective, explicit.objective)
    lp, lm = em_log_posterior(Av, srcv, implicit.log_tables, implicit.log_prior,
                              implicit.log_abstain)
    assert np.allclose(np.exp(lp), implicit.posterior, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.int8, np.int64])
def test_unique_rows_by_hash_matches_sorting(monkeypatch, dtype):
    from metal.label_model import em

    rng = np.random.default_rng(3)
    base = rng.integers(-1, 3, size=(400, 11)).astype(dtype)
    L = base[rng.integers(0, 400, size=3000)]  # many repeats
    L[::97, 10] = 2  # and a few rows that differ from their twin in one late byte
    sorted_u, _, sorted_counts = unique_rows(L)
    monkeypatch.setattr(em, "HASH_UNIQUE_ROWS", 10)
    U, inverse, counts = unique_rows(L)
    np.testing.assert_array_equal(U[inverse], L)
    assert U.shape == sorted_u.shape and counts.sum() == L.shape[0]
    np.testing.assert_array_equal(np.sort(counts), np.sort(sorted_counts))
    assert em._unique_rows_hashed(L) is not None  # no collision on this data: the hash ran


def test_compress_rows_merges_duplicates_and_keeps_mostly_distinct_rows(monkeypatch):
    from metal.label_model import em

    monkeypatch.setattr(em, "HASH_UNIQUE_ROWS", 10)
    rng = np.random.default_rng(5)
    distinct = rng.integers(-1, 3, size=(2000, 12)).astype(np.int8)  # ~all rows distinct
    rows, counts = em.compress_rows(distinct)
    assert rows is not None and rows.shape == distinct.shape and (counts == 1).all()
    repeated = distinct[rng.integers(0, 50, size=2000)]
    rows, counts = em.compress_rows(repeated)
    assert rows.shape[0] == len({r.tobytes() for r in repeated}) and counts.sum() == 2000
    # weighted sums over the compressed rows equal sums over all rows
    np.testing.assert_array_equal((rows.astype(np.int64) * counts[:, None]).sum(axis=0),
                                  repeated.astype(np.int64).sum(axis=0))

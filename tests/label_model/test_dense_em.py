"""EM on the rows of a dense label matrix: the same fit as the sparse engine, and the paths
that use it (the stopping rule, the duplicate estimate, the large-L label model)."""

import numpy as np
import pytest

import metal.label_model.label_model as label_model_module
from metal.data import make_synthetic
from metal.errors import ConfigError
from metal.label_model.dense_em import fit_em_dense
from metal.label_model.em import (
    FixedPointStop,
    em_log_posterior,
    few_duplicates,
    fit_em,
    one_hot_votes,
)
from metal.label_model.label_model import LabelModel
from metal.label_model.likelihood import (
    RULE_MAX_ROWS,
    DenseVoteData,
    VoteData,
    em_tables,
    thin_rows,
)

pytestmark = pytest.mark.timeout(60)


def _votes(n: int, m: int, k: int, seed: int) -> np.ndarray:
    data = make_synthetic(n=n, m=m, cardinality=k, coverage=(0.2, 0.7), seed=seed)
    return np.ascontiguousarray(data.L, dtype=np.int8)


def _start(L: np.ndarray, k: int, abstain: bool, seed: int):
    """A few sparse EM steps from a random posterior: a warm start with finite tables."""
    A, src = one_hot_votes(L, k)
    post = np.random.default_rng(seed).dirichlet(np.ones(k), size=L.shape[0])
    return A, src, fit_em(A, src, post, max_iter=3, tol=0.0, implicit_abstain=abstain,
                          n_sources=L.shape[1])


@pytest.mark.parametrize("abstain", [True, False])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_dense_em_matches_the_sparse_engine_step_for_step(abstain: bool, k: int) -> None:
    L = _votes(3_000, 7, k, seed=k)
    A, src, start = _start(L, k, abstain, seed=1)
    pseudo = np.random.default_rng(2).uniform(0.5, 2.0, size=(7 * k, k))
    kw = dict(init_log_tables=start.log_tables, init_log_prior=start.log_prior,
              init_log_abstain=start.log_abstain, pseudo_count=pseudo, max_iter=6, tol=0.0,
              implicit_abstain=abstain, prior_pseudo_count=1.5)
    sparse = fit_em(A, src, n_sources=7, **kw)
    dense = fit_em_dense(L, k, **kw)
    assert dense.n_iter == sparse.n_iter == 6
    assert np.allclose(np.exp(dense.log_tables), np.exp(sparse.log_tables), atol=1e-8)
    assert np.allclose(np.exp(dense.log_prior), np.exp(sparse.log_prior), atol=1e-8)
    if abstain:
        assert np.allclose(np.exp(dense.log_abstain), np.exp(sparse.log_abstain), atol=1e-8)
    # same objective (log likelihood + log prior) at every E-step
    assert np.allclose(dense.objective, sparse.objective, rtol=1e-9, atol=1e-6)
    assert dense.posterior.shape == (0, k) and dense.expected_counts is not None
    counts, mass = dense.expected_counts
    assert np.isclose(mass.sum(), L.shape[0])
    assert np.allclose(counts.sum(axis=1), np.asarray(A.sum(axis=0)).ravel())


def test_dense_em_keeps_a_fixed_prior_and_refuses_bad_input() -> None:
    L = _votes(2_000, 5, 3, seed=3)
    A, src, start = _start(L, 3, True, seed=4)
    fixed = np.log(np.array([0.2, 0.3, 0.5]))
    res = fit_em_dense(L, 3, init_log_tables=start.log_tables, init_log_prior=fixed,
                       init_log_abstain=start.log_abstain, fit_prior=False, max_iter=4,
                       implicit_abstain=True)
    assert np.array_equal(res.log_prior, fixed)
    with pytest.raises(ConfigError, match="init_log_abstain"):
        fit_em_dense(L, 3, init_log_tables=start.log_tables, init_log_prior=fixed,
                     implicit_abstain=True)
    with pytest.raises(ConfigError, match="dense integer"):
        fit_em_dense(L.astype(np.float64), 3, init_log_tables=start.log_tables,
                     init_log_prior=fixed)
    zero = start.log_tables.copy()
    zero[np.flatnonzero(np.asarray(A.sum(axis=0)).ravel() > 0)[0], 1] = -np.inf
    with pytest.raises(ConfigError, match="probability 0"):
        fit_em_dense(L, 3, init_log_tables=zero, init_log_prior=start.log_prior, max_iter=2)


def test_fixed_point_stop_estimates_the_remaining_distance() -> None:
    # a linear iteration x_t = x* + r^t (x_0 - x*): the estimate d r / (1 - r) is exact
    target, rate = np.log(np.array([0.2, 0.3, 0.5])), 0.4
    stop = FixedPointStop(tol=1e-4)
    x0 = np.array([0.5, 0.3, 0.2])
    for t in range(30):
        point = np.exp(target) + rate**t * (x0 - np.exp(target))
        if stop.converged(np.log(point)[:, None], None, np.zeros(1)):
            break
    remaining = np.abs(point - np.exp(target)).max()
    assert remaining <= 1e-4
    assert remaining > 1e-4 * rate  # not a step later than needed
    # a step that does not shrink never stops the iteration
    stop = FixedPointStop(tol=1.0)
    for point in ([0.5, 0.5], [0.4, 0.6], [0.6, 0.4]):
        assert not stop.converged(np.log(np.array(point))[:, None], None, np.zeros(1))


def test_param_tol_stops_early_within_its_tolerance() -> None:
    L = _votes(5_000, 8, 3, seed=5)
    A, src, start = _start(L, 3, True, seed=6)
    kw = dict(init_log_tables=start.log_tables, init_log_prior=start.log_prior,
              init_log_abstain=start.log_abstain, implicit_abstain=True, n_sources=8)
    exact = fit_em(A, src, max_iter=500, tol=1e-14, **kw)
    for engine in ("sparse", "dense"):
        if engine == "sparse":
            early = fit_em(A, src, max_iter=500, tol=0.0, param_tol=1e-4, **kw)
            # the posterior is that of the final parameters
            log_post, _ = em_log_posterior(A, src, early.log_tables, early.log_prior,
                                           early.log_abstain)
            assert np.allclose(early.posterior, np.exp(log_post))
        else:
            kw_dense = {key: v for key, v in kw.items() if key != "n_sources"}
            early = fit_em_dense(L, 3, max_iter=500, tol=0.0, param_tol=1e-4, **kw_dense)
        assert early.converged and early.n_iter < exact.n_iter
        gap = max(np.abs(np.exp(early.log_tables) - np.exp(exact.log_tables)).max(),
                  np.abs(np.exp(early.log_abstain) - np.exp(exact.log_abstain)).max())
        assert gap <= 3e-4  # the estimate, not a bound: a small factor of slack


def test_votes_only_tables_from_expected_counts_match_the_posterior() -> None:
    # the dense fit's expected counts are those of its last E-step: after 6 E-steps, at the
    # parameters of 5 M-steps, where the sparse fit stopped after 5 (its posterior is there)
    L = _votes(3_000, 6, 3, seed=7)
    A, src, start = _start(L, 3, False, seed=8)
    kw = dict(init_log_tables=start.log_tables, init_log_prior=start.log_prior, tol=0.0)
    sparse = fit_em(A, src, max_iter=5, **kw)
    dense = fit_em_dense(L, 3, max_iter=6, **kw)
    data = VoteData(A=A, counts=np.ones(L.shape[0], dtype=np.int64), n_sources=6,
                    cardinality=3)
    w = np.ones(L.shape[0])
    perm = np.array([2, 0, 1])
    a, b = em_tables(data, sparse, False, w, perm), em_tables(data, dense, False, w, perm)
    assert np.allclose(a.abstain, b.abstain, atol=1e-8)  # P(abstain | y) = 1 - P(voted | y)
    assert not np.allclose(a.abstain, a.abstain[:, perm])  # the renaming is checked


def test_few_duplicates_from_a_sample() -> None:
    rng = np.random.default_rng(9)
    distinct = rng.integers(-1, 3, size=(200_000, 30), dtype=np.int8)
    sample = rng.random(200_000) < 0.1
    assert few_duplicates(distinct[sample], 200_000)
    # every row twice: merging halves the rows, and the sample shows it
    doubled = np.repeat(distinct[:100_000], 2, axis=0)
    assert not few_duplicates(doubled[sample], 200_000)
    # one pattern on 20% of the rows
    skewed = distinct.copy()
    skewed[: 40_000] = -1
    assert not few_duplicates(skewed[rng.permutation(200_000)][sample], 200_000)


def test_dense_vote_data_stands_in_for_the_one_hot_votes() -> None:
    L = _votes(RULE_MAX_ROWS + 5_000, 6, 3, seed=10)
    dense = DenseVoteData(L, 3)
    A, _ = one_hot_votes(L, 3)
    sparse = VoteData(A=A, counts=np.ones(L.shape[0], dtype=np.int64), n_sources=6,
                      cardinality=3)
    assert dense._A is None
    assert np.array_equal(dense.vote_counts(), sparse.vote_counts())
    assert dense._A is None  # counted without building A
    (thin_d, keep_d), (thin_s, keep_s) = thin_rows(dense, 3), thin_rows(sparse, 3)
    assert np.array_equal(keep_d, keep_s) and np.array_equal(thin_d.counts, thin_s.counts)
    assert (thin_d.A != thin_s.A).nnz == 0
    assert thin_rows(dense, 3)[0] is thin_d  # drawn once
    assert (dense.A != A).nnz == 0  # built when asked for


@pytest.mark.parametrize("k", [2, 3])
def test_large_fit_with_and_without_merging_duplicates_agrees(monkeypatch, k: int) -> None:
    """Above the rule's sample size a mostly distinct dense L skips merging and the final EM
    reads its rows; forcing the merge path must give the same fit."""
    data = make_synthetic(n=RULE_MAX_ROWS + 10_000, m=12, cardinality=k, coverage=(0.2, 0.6),
                          seed=11)
    L = np.ascontiguousarray(data.L, dtype=np.int8)
    direct = LabelModel(cardinality=k, seed=0).fit(L)
    assert direct.fit_info_.mode != "moments"  # the final EM ran
    monkeypatch.setattr(label_model_module, "few_duplicates", lambda *a: False)
    merged = LabelModel(cardinality=k, seed=0).fit(L)
    assert merged.fit_info_.mode == direct.fit_info_.mode
    assert np.allclose(merged.get_conditional_probs(), direct.get_conditional_probs(),
                       atol=1e-6)
    assert np.allclose(merged.class_balance_, direct.class_balance_, atol=1e-6)
    acc = np.mean(direct.predict(L) == data.Y)
    assert acc == pytest.approx(np.mean(merged.predict(L) == data.Y), abs=1e-4)


def test_large_fit_with_many_duplicates_merges_them(monkeypatch) -> None:
    rng = np.random.default_rng(12)
    y = rng.integers(2, size=RULE_MAX_ROWS + 10_000)
    L = np.where(rng.random((y.size, 4)) < 0.8, y[:, None], 1 - y[:, None]).astype(np.int8)
    seen = []
    monkeypatch.setattr(label_model_module, "few_duplicates",
                        lambda *a: seen.append(1) or few_duplicates(*a))
    model = LabelModel(cardinality=2, seed=0).fit(L)
    assert seen  # asked, and the answer (16 patterns) was no
    assert not few_duplicates(L[rng.random(y.size) < 0.5], y.size)
    assert np.mean(model.predict(L) == y) > 0.85


def test_posterior_without_the_logarithm_equals_exp_of_the_log_posterior() -> None:
    from metal.label_model.dense import DenseScorer
    from metal.matrix import to_sparse_labels

    L = _votes(4_000, 9, 3, seed=13)
    model = LabelModel(cardinality=3, seed=0).fit(L)
    for X in (L, L.astype(np.int64), to_sparse_labels(L)):  # dense kernel, and sparse path
        assert np.allclose(model.predict_proba(X), np.exp(model.predict_log_proba(X)),
                           rtol=1e-12, atol=1e-15)
    rng = np.random.default_rng(14)
    scorer = DenseScorer(np.log(rng.dirichlet(np.ones(3), size=27)), np.log([0.2, 0.3, 0.5]),
                         9, 3, unseen=rng.random(27) < 0.1)
    (p, n_p), (lp, n_lp) = scorer.proba(L), scorer.log_proba(L)
    assert n_p == n_lp > 0
    assert np.allclose(p, np.exp(lp), rtol=1e-12, atol=1e-15)
    assert np.allclose(p.sum(axis=1), 1.0)


def test_run_em_reads_dense_rows_only_where_every_vote_keeps_a_finite_table() -> None:
    from metal.label_model.likelihood import run_em

    L = _votes(RULE_MAX_ROWS + 2_000, 6, 3, seed=15)
    data = DenseVoteData(L, 3)
    w = np.ones(L.shape[0])
    _, _, start = _start(L, 3, False, seed=16)
    dense = run_em(data, None, w, False, None, 50, 1e-9, init=start)
    assert dense.posterior.shape == (0, 3)  # the dense kernel ran
    assert data._A is None
    # a zero in the prior's centre leaves an emitted value without pseudo-counts: the sparse
    # engine (which allows log 0) takes over
    center = np.full((18, 3), 1.0 / 3)
    center[0, 1] = 0.0
    center[1:3, 1] = 0.5
    sparse = run_em(data, None, w, False, None, 50, 1e-9, init=start, center=center)
    assert sparse.posterior.shape == (L.shape[0], 3)
    assert np.isfinite(dense.log_tables[data.emitted()]).all()

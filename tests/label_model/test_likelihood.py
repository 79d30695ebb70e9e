"""The likelihood stage: EM refinement of the moment fit and the label-free rule picking it."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metal.data.synthetic import make_synthetic
from metal.errors import ConfigError
from metal.label_model.baselines import MajorityVoter
from metal.label_model.em import EMResult, one_hot_votes
from metal.label_model.label_model import LabelModel, label_statistics
from metal.label_model.likelihood import (
    MAX_DEGENERATE_VOTES,
    MAX_EXTRA_OVERRULED,
    NOISE_Z,
    TIE_MARGIN,
    Tables,
    VoteData,
    beats_baseline,
    canonical_order,
    degenerate_share,
    held_out_log_likelihood,
    keep_class_names,
    multi_valued_share,
    overruled_share,
    prior_center,
    run_em,
)
from metal.matrix import to_sparse_labels

pytestmark = pytest.mark.timeout(120)


def test_beats_baseline_keeps_the_refinement_unless_the_baseline_wins_beyond_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(-2.0, 0.5, size=400)
    w = np.ones(400)
    noise = rng.normal(0.0, 0.5, size=400)
    noise -= noise.mean()  # spread 0.5 per row: standard error 0.025 of the mean
    se = 0.5 / np.sqrt(400)
    # behind by 1 standard error: noise, the refinement is kept
    kept, z = beats_baseline(base + noise - 1.0 * se, base, w)
    assert kept and z == pytest.approx(-1.0, abs=0.01)
    # behind by more than NOISE_Z standard errors: the baseline wins
    kept, z = beats_baseline(base + noise - (NOISE_Z + 0.5) * se, base, w)
    assert not kept and z < -NOISE_Z
    # no spread (every row scores the same, e.g. unipolar sources: all 0): a margin is needed
    assert beats_baseline(np.zeros(5), np.zeros(5), np.ones(5)) == (False, -np.inf)
    assert beats_baseline(np.full(5, 2 * TIE_MARGIN), np.zeros(5), np.ones(5))[0]
    # weights are row counts: a distinct row held out twice counts twice
    rows, base2 = np.array([0.0, -1.0]), np.zeros(2)
    assert beats_baseline(rows, base2, np.array([1.0, 3.0]))[1] == pytest.approx(
        beats_baseline(np.array([0.0, -1.0, -1.0, -1.0]), np.zeros(4), np.ones(4))[1])


def _mae(model: LabelModel, data) -> float:
    return float(np.abs(model.get_conditional_probs() - data.conditional_probs).mean())


def _vote_data(L: np.ndarray, k: int) -> VoteData:
    A, _ = one_hot_votes(L, k)
    return VoteData(A=A, counts=np.ones(L.shape[0], dtype=np.int64), n_sources=L.shape[1],
                    cardinality=k)


@pytest.mark.parametrize("k", [2, 3])
def test_em_refinement_is_chosen_on_data_from_the_model_and_beats_the_moment_fit(k):
    data = make_synthetic(n=20_000, m=10, cardinality=k, unipolar_fraction=0.3, seed=20 + k)
    auto = LabelModel(cardinality=k, seed=0).fit(data.L)
    moments = LabelModel(cardinality=k, seed=0, mode="moments").fit(data.L)
    assert auto.fit_info_.mode == "em_abstain"  # the generator's model: abstains depend on y
    assert auto.evidence_ == "votes_and_abstains"
    choice = auto.fit_info_.mode_choice
    assert choice is not None and choice.chosen == "em_abstain"
    assert choice.degenerate_share["em_abstain"] <= MAX_DEGENERATE_VOTES
    assert _mae(auto, data) < _mae(moments, data)
    assert _mae(auto, data) < 0.01
    assert auto.score(data.L, data.Y)["accuracy"] >= moments.score(data.L, data.Y)["accuracy"]
    np.testing.assert_allclose(auto.class_balance_, data.class_balance, atol=0.02)


def test_unipolar_sources_with_votes_only_em_keep_the_moment_fit_without_running_em():
    data = make_synthetic(n=5_000, m=10, cardinality=2, unipolar_fraction=1.0, seed=3)
    model = LabelModel(cardinality=2, seed=0, model_abstains=False).fit(data.L)
    assert model.fit_info_.mode == "moments"
    assert model.evidence_ == "votes"
    choice = model.fit_info_.mode_choice
    assert choice is not None and "single value" in choice.reason
    assert choice.held_out_log_likelihood == {}  # EM never ran


def test_unipolar_sources_from_the_model_keep_the_abstain_em_and_it_is_consistent():
    data = make_synthetic(n=10_000, m=10, cardinality=3, unipolar_fraction=1.0, seed=123)
    auto = LabelModel(cardinality=3, seed=123).fit(data.L)
    moments = LabelModel(cardinality=3, seed=123, mode="moments").fit(data.L)
    choice = auto.fit_info_.mode_choice
    assert choice is not None and auto.fit_info_.mode == "em_abstain"
    assert auto.evidence_ == "votes_and_abstains"
    ll = choice.held_out_log_likelihood  # full vote pattern, abstentions included
    assert ll["em_abstain"] > ll["moments"]
    over = choice.overruled_share
    assert over["em_abstain"] <= over["moments"] + MAX_EXTRA_OVERRULED
    assert _mae(auto, data) < 0.01 < _mae(moments, data)


def test_unipolar_sources_with_a_skewed_balance_keep_an_em_that_is_better_than_random():
    # here the true posterior overrules 13% of the unanimous rows (silences are evidence), so
    # it is the other sign that the states name the classes which keeps EM
    data = make_synthetic(n=20_000, m=10, cardinality=2, unipolar_fraction=1.0, seed=123)
    auto = LabelModel(cardinality=2, seed=123).fit(data.L)
    choice = auto.fit_info_.mode_choice
    assert choice is not None and auto.fit_info_.mode == "em_abstain"
    assert choice.overruled_share["em_abstain"] > 0.05
    assert choice.degenerate_share["em_abstain"] == 0.0
    assert "better than random" in choice.reason
    assert _mae(auto, data) < 0.01
    np.testing.assert_allclose(auto.class_balance_, data.class_balance, atol=0.02)


def _nuisance_label_matrix(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unipolar sources whose firing is driven mostly by a nuisance variable (say, long vs
    short documents) independent of the class, and only a little by the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    long_doc = rng.random(n) < 0.5
    L = -np.ones((n, 10), dtype=np.int64)
    for i in range(10):
        p = np.where(long_doc, 0.5, 0.03) * np.where(y == i % 2, 1.3, 0.7)
        L[rng.random(n) < p, i] = i % 2
    return L, y


def test_unipolar_rule_refuses_an_em_whose_states_track_which_sources_fire():
    L, y = _nuisance_label_matrix(5_000, seed=0)
    auto = LabelModel(cardinality=2, seed=0).fit(L)
    em = LabelModel(cardinality=2, seed=0, mode="em", model_abstains=True).fit(L)
    choice = auto.fit_info_.mode_choice
    assert choice is not None and auto.fit_info_.mode == "moments"
    # the likelihood alone prefers the EM (its states explain co-firing, the nuisance) ...
    assert choice.held_out_log_likelihood["em_abstain"] > choice.held_out_log_likelihood[
        "moments"]
    # ... but it overrules unanimous votes wholesale, and names the classes no better than chance
    assert choice.overruled_share["em_abstain"] > 0.3
    assert choice.degenerate_share["em_abstain"] > 0
    assert "overrules" in choice.reason
    assert em.score(L, y)["accuracy"] < 0.55 < 0.65 < auto.score(L, y)["accuracy"]


def test_overruled_share_counts_unanimous_rows_only():
    L = np.array([[0, -1, 0], [1, 1, -1], [0, 1, -1], [-1, -1, -1], [-1, -1, 1]])
    data = _vote_data(L, 2)
    # rows 0, 1, 4 are unanimous (0, 1, 1); row 2 is split, row 3 has no vote
    post = np.array([[0.9, 0.1], [0.8, 0.2], [0.5, 0.5], [0.1, 0.9], [0.3, 0.7]])
    assert overruled_share(data, post, np.ones(5)) == pytest.approx(1 / 3)
    assert overruled_share(data, post, np.array([1.0, 3.0, 1.0, 1.0, 0.0])) == pytest.approx(
        3 / 4)
    assert overruled_share(data, post[:, ::-1], np.ones(5)) == pytest.approx(2 / 3)


def test_held_out_score_of_single_valued_sources_is_zero():
    # P(value | voted) = 1 for a unipolar source under any model, so the score is exactly 0
    L = np.array([[1, -1, 0], [-1, 0, 0], [1, 0, -1], [-1, -1, 0]])
    data = _vote_data(L, 2)
    rng = np.random.default_rng(0)
    votes = rng.uniform(0.05, 0.4, size=(6, 2))
    tables = Tables(votes=votes, abstain=1 - votes.reshape(3, 2, 2).sum(axis=1),
                    class_balance=np.array([0.3, 0.7]))
    assert multi_valued_share(data) == 0.0
    assert held_out_log_likelihood(data, tables, np.ones(4), 1e-3) == pytest.approx(0.0,
                                                                                     abs=1e-12)


def test_degenerate_share_counts_votes_for_values_that_are_not_better_than_random():
    # two sources, k = 2: source 0 is better than random on both values, source 1 on value 0
    # only (P(1 | y=1) = 0.1 < P(1 | y=0) = 0.3)
    tables = np.array([[0.6, 0.1], [0.1, 0.6],    # source 0: rows v = 0, 1; columns y
                       [0.5, 0.2], [0.3, 0.1]])   # source 1
    counts = np.array([10.0, 10.0, 5.0, 15.0])
    assert degenerate_share(tables, counts, 2, 2) == pytest.approx(15.0 / 40.0)


def test_keep_class_names_undoes_a_relabelling():
    rng = np.random.default_rng(1)
    start = rng.dirichlet(np.ones(3), size=50)
    perm = np.array([2, 0, 1])
    result = EMResult(log_tables=np.zeros((3, 3)), log_prior=np.zeros(3),
                      posterior=start[:, np.argsort(perm)])
    found = keep_class_names(start, result, np.ones(50), 3)
    np.testing.assert_allclose(result.posterior[:, found], start)


def test_votes_only_refinement_on_crowd_like_data_and_dense_sparse_agree():
    # every source answers with several values (crowd workers): Dawid-Skene's model
    data = make_synthetic(n=3_000, m=12, cardinality=3, unipolar_fraction=0.0,
                          class_dependent_coverage=0.0, seed=5)
    model = LabelModel(cardinality=3, seed=0, model_abstains=False).fit(data.L)
    assert model.fit_info_.mode == "em_votes" and model.evidence_ == "votes_given_voted"
    mv = MajorityVoter(cardinality=3).score(data.L, data.Y)["accuracy"]
    assert model.score(data.L, data.Y)["accuracy"] > mv
    sparse = LabelModel(cardinality=3, seed=0, model_abstains=False).fit(
        to_sparse_labels(data.L))
    np.testing.assert_allclose(sparse.predict_proba(data.L), model.predict_proba(data.L),
                               atol=1e-10)


def test_many_source_values_skip_the_moment_stage():
    data = make_synthetic(n=2_000, m=200, cardinality=3, unipolar_fraction=0.0,
                          coverage=(0.05, 0.1), seed=6)
    model = LabelModel(cardinality=3, seed=0).fit(data.L)
    assert model.statistics_ is None
    assert model.fit_info_.mode in ("em_votes", "em_abstain", "em_one_coin")
    probs = model.predict_proba(data.L)
    assert np.isfinite(probs).all()
    assert model.score(data.L, data.Y)["accuracy"] > MajorityVoter(cardinality=3).score(
        data.L, data.Y)["accuracy"]


def test_save_load_keeps_the_evidence(tmp_path):
    data = make_synthetic(n=3_000, m=8, cardinality=3, unipolar_fraction=0.0, seed=7)
    model = LabelModel(cardinality=3, seed=0, model_abstains=False).fit(data.L)
    model.save(tmp_path / "m.npz")
    loaded = LabelModel.load(tmp_path / "m.npz")
    assert loaded.evidence_ == model.evidence_ == "votes_given_voted"
    np.testing.assert_array_equal(loaded.predict_proba(data.L), model.predict_proba(data.L))


def test_option_combinations_that_cannot_work_are_refused():
    import networkx as nx

    L = make_synthetic(n=500, m=6, cardinality=2, seed=8).L
    with pytest.raises(ConfigError, match="mode="):
        LabelModel(mode="likelihood").fit(L)
    with pytest.raises(ConfigError, match="dependent sources"):
        LabelModel(mode="em", dependencies=nx.Graph([(0, 1)])).fit(L)
    with pytest.raises(ConfigError, match="needs the rows"):
        LabelModel(mode="em").fit_statistics(label_statistics(L, 2))
    with pytest.raises(ConfigError, match="model_abstains"):
        LabelModel(model_abstains="yes").fit(L)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- class balance
SKEWS = [0.05, 0.1, 0.2, 0.3]


def _skewed(p_minor: float, k: int, seed: int, unipolar: float = 0.3):
    balance = np.full(k, p_minor / (k - 1))
    balance[0] = 1.0 - p_minor
    return make_synthetic(n=5_000, m=10, cardinality=k, class_balance=balance,
                          unipolar_fraction=unipolar, seed=seed)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_estimated_class_balance_never_inverts_the_majority_class(k):
    """Either the estimate has the right majority class, or the fit says it does not trust
    its estimate (a MetalWarning) and falls back to the documented uniform prior."""
    fallbacks = []
    for i, p in enumerate(SKEWS):
        for unipolar in (0.3, 1.0):
            data = _skewed(p, k, seed=100 * k + i, unipolar=unipolar)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = LabelModel(cardinality=k, seed=0).fit(data.L, class_balance="estimate")
            source = model.fit_info_.class_balance_source
            if source == "estimated":
                assert np.argmax(model.class_balance_) == 0, (p, unipolar, model.class_balance_)
            else:
                assert source == "uniform (estimate not trusted)"
                assert any("not trusted" in str(w.message) for w in caught)
                np.testing.assert_allclose(model.class_balance_, 1.0 / k)
                fallbacks.append((p, unipolar))
    # sources that emit several values (unipolar 0.3) always give a trusted estimate; with
    # unipolar sources only, a heavily skewed balance can be refused (never silently inverted)
    assert all(u == 1.0 for _, u in fallbacks), fallbacks


@pytest.mark.parametrize("k", [2, 3])
def test_a_small_labeled_set_helps_on_average_and_never_hurts_beyond_noise(k):
    gains = []
    for i, p in enumerate(SKEWS):
        data = _skewed(p, k, seed=7 * k + i)
        rng = np.random.default_rng(i)
        dev = rng.choice(data.Y.size, size=100, replace=False)
        Y_dev = data.Y[dev]
        plain = LabelModel(cardinality=k, seed=0).fit(data.L).score(data.L, data.Y)
        with_dev = LabelModel(cardinality=k, seed=0).fit(data.L, Y_dev=Y_dev).score(
            data.L, data.Y)
        gains.append(with_dev["accuracy"] - plain["accuracy"])
    assert np.mean(gains) >= -0.002, gains
    assert min(gains) >= -0.01, gains


# ---------------------------------------------------------------------------- recovery
@pytest.mark.slow
# derandomized: CI runs the same examples every time (a random draw found the counterexample
# below, now a test of its own)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(seed=st.integers(0, 10_000), k=st.sampled_from([2, 3]),
       unipolar=st.sampled_from([0.0, 0.3, 1.0]))
def test_property_recovery_error_shrinks_like_one_over_root_n(seed, k, unipolar):
    """The default fit recovers the generator's parameters within C / sqrt(n).

    With unipolar sources only, the default keeps the moment fit and its uniform prior (the
    robust choice on real labeling functions, README "Defaults, and why"), which is biased
    when the true balance is not uniform; there the true balance is given, as a user who
    knows it would.
    """
    for n in (2_000, 20_000):
        data = make_synthetic(n=n, m=8, cardinality=k, unipolar_fraction=unipolar, seed=seed)
        balance = data.class_balance if unipolar == 1.0 else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LabelModel(cardinality=k, seed=0).fit(data.L, class_balance=balance)
        assert _mae(model, data) <= 2.0 / np.sqrt(n), (n, _mae(model, data),
                                                        model.fit_info_.mode)



@pytest.mark.slow
def test_recovery_counterexample_small_n_skewed_balance():
    """Found by the property test above (seed 895, k=2, no unipolar source, true balance
    0.19 / 0.81): at n=2,000 the rule used to keep the biased uniform-prior moment fit (error
    0.066 > 2 / sqrt(n) = 0.045) when its 400 held-out rows happened to score the moment fit a
    little higher than EM (by 0.5 standard errors of the difference: noise). The moment fit
    is now kept only when it is better beyond that noise; EM (and its balance) is kept for
    every split seed tried."""
    data = make_synthetic(n=2_000, m=8, cardinality=2, unipolar_fraction=0.0, seed=895)
    for seed in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LabelModel(cardinality=2, seed=seed).fit(data.L)
        assert model.fit_info_.mode != "moments", seed
        assert _mae(model, data) <= 2.0 / np.sqrt(2_000), seed


@pytest.mark.parametrize(("m", "k"), [(400, 2), (40, 56), (20, 100)])
def test_many_sources_or_classes_fit_without_nan(m, k):
    """Small versions of the scale cases (2,000 sources; k=56 x 1,200; k=100 x 20)."""
    data = make_synthetic(n=2_000, m=m, cardinality=k, coverage=(0.05, 0.3),
                          unipolar_fraction=0.3, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LabelModel(cardinality=k, seed=0).fit(data.L)
    probs = model.predict_proba(data.L)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.isfinite(model.get_conditional_probs()).all()
    mv = MajorityVoter(cardinality=k).score(data.L, data.Y)["accuracy"]
    assert model.score(data.L, data.Y)["accuracy"] >= mv - 0.02


def test_votes_only_prior_is_centred_on_the_moment_fit_with_the_flat_prior_mass():
    L = np.array([[0, 1, -1], [1, 1, 0], [0, -1, 0], [2, 0, -1], [1, 2, 2]])
    data = _vote_data(L, 3)
    rng = np.random.default_rng(1)
    votes = rng.uniform(0.05, 0.3, size=(9, 3))
    tables = Tables(votes=votes, abstain=1 - votes.reshape(3, 3, 3).sum(axis=1),
                    class_balance=np.full(3, 1 / 3))
    center = prior_center(data, tables, 1e-3)
    emitted = data.emitted()
    assert np.all(center[~emitted] == 0)  # never-emitted values keep probability 0
    np.testing.assert_allclose(center.reshape(3, 3, 3).sum(axis=1), 1.0)
    start = np.full((5, 3), 1 / 3)
    # no data (zero row weights): the MAP tables are the prior's centre ...
    res = run_em(data, start, np.zeros(5), False, None, 5, 1e-9, center=center)
    np.testing.assert_allclose(np.exp(res.log_tables)[emitted], center[emitted], atol=1e-12)
    # ... and with data, the prior weighs as much as the flat one (one count per emitted value)
    w = np.full(5, 1000.0)
    flat = run_em(data, start, w, False, None, 1, 1e-9)
    centred = run_em(data, start, w, False, None, 1, 1e-9, center=center)
    gap = np.abs(np.exp(flat.log_tables) - np.exp(centred.log_tables))[emitted].max()
    assert 0 < gap < 3 / 1000


@pytest.mark.parametrize("k", [2, 3])
def test_thinned_rule_with_a_warm_final_fit_matches_the_rule_on_all_rows(monkeypatch, k):
    from metal.label_model import likelihood

    data = make_synthetic(n=8_000, m=10, cardinality=k, unipolar_fraction=0.3, seed=40 + k)
    full = LabelModel(cardinality=k, seed=0).fit(data.L)
    monkeypatch.setattr(likelihood, "RULE_MAX_ROWS", 2_000)  # the rule sees about 2k rows
    thinned = LabelModel(cardinality=k, seed=0).fit(data.L)
    assert thinned.fit_info_.mode == full.fit_info_.mode == "em_abstain"
    assert thinned.fit_info_.mode_choice is not None
    assert thinned.fit_info_.mode_choice.fits == {}  # the warm start is not kept in the model
    # the final EM runs on all rows in both cases: the same maximum up to EM's tolerance
    np.testing.assert_allclose(thinned.get_conditional_probs(), full.get_conditional_probs(),
                               atol=2e-3)
    assert _mae(thinned, data) < 0.02


def test_em_warm_start_from_tables_with_abstain():
    from metal.label_model.em import fit_em

    data = make_synthetic(n=3_000, m=8, cardinality=3, unipolar_fraction=0.3, seed=9)
    A, src = one_hot_votes(data.L, 3)
    start = MajorityVoter(cardinality=3).predict_proba(data.L)
    cold = fit_em(A, src, start, implicit_abstain=True, n_sources=8, max_iter=500, tol=1e-10)
    warm = fit_em(A, src, init_log_tables=cold.log_tables, init_log_prior=cold.log_prior,
                  init_log_abstain=cold.log_abstain, implicit_abstain=True, n_sources=8,
                  max_iter=500, tol=1e-10)
    assert warm.n_iter <= 3  # already at the maximum
    np.testing.assert_allclose(warm.log_tables, cold.log_tables, atol=1e-3)
    with pytest.raises(ConfigError, match="init_log_abstain"):
        fit_em(A, src, init_log_tables=cold.log_tables, init_log_prior=cold.log_prior,
               implicit_abstain=True, n_sources=8)


def test_rule_split_does_not_depend_on_storage():
    """Dense and sparse storage list the distinct rows in different orders; the held-out split
    is drawn in an order of the rows' votes, so both give the same decision and fit."""
    data = make_synthetic(n=3_000, m=12, cardinality=3, unipolar_fraction=0.3, seed=4)
    fits = []
    for L in (data.L, to_sparse_labels(data.L)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LabelModel(cardinality=3, seed=1).fit(L)
        fits.append((model.fit_info_.mode_choice.held_out_log_likelihood,
                     model.predict_proba(data.L)))
    assert fits[0][0] == pytest.approx(fits[1][0], rel=1e-12)
    np.testing.assert_allclose(fits[0][1], fits[1][1], atol=1e-10)


def test_canonical_order_is_the_stable_order_of_the_projection_with_and_without_ties():
    """Quicksort stands in for the stable sort only where no two rows project alike: with
    duplicate rows (ties) the stable order is kept."""
    data = make_synthetic(n=400, m=6, cardinality=2, seed=5)
    distinct = np.unique(data.L, axis=0)
    for L in (distinct, data.L):  # no ties; many duplicate rows
        A, _ = one_hot_votes(L, 2)
        votes = VoteData(A=A, counts=np.ones(L.shape[0], dtype=np.int64), n_sources=6,
                         cardinality=2)
        proj = np.random.default_rng([3, 1]).random(A.shape[1])
        expected = np.argsort(np.asarray(A @ proj).ravel(), kind="stable")
        np.testing.assert_array_equal(canonical_order(votes, 3), expected)

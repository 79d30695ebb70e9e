"""The moment estimator, piece by piece, on tiny exact problems (population moments).

Every fit here has at most 12 indicators, so the file runs in seconds: it is the fast test set
of the mutation check of ``estimation.py``. Each test states a
property the estimator must have, checked against an independent computation.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from metal.errors import ConfigError
from metal.label_model.estimation import (
    MomentProblem,
    _logits_from_mu,
    _Parameterisation,
    _ThreadLimit,
    complete_low_rank,
    fit_moments,
    initial_mu,
)


def sources(m: int, K: int, seed: int) -> np.ndarray:
    """``(m*K, K)`` ``P(source i votes v | y)``: better than random, partial coverage."""
    rng = np.random.default_rng(seed)
    mu = np.zeros((m * K, K))
    for i in range(m):
        acc = rng.uniform(0.7, 0.9)
        block = np.full((K, K), (1 - acc) / (K - 1))
        np.fill_diagonal(block, acc)
        mu[i * K:(i + 1) * K] = rng.uniform(0.5, 0.9) * block
    return mu


def exact(mu: np.ndarray, p: np.ndarray, groups: np.ndarray, agreement: np.ndarray,
          third: bool = False, omega_mask: np.ndarray | None = None) -> MomentProblem:
    """Population moments, summed over every joint outcome (each group emits one of its
    indicators or abstains; groups are independent given Y): no moment formula is assumed."""
    d = mu.shape[0]
    members = [np.flatnonzero(groups == g) for g in range(int(groups.max()) + 1)]
    # every outcome: one choice per group, -1 = abstain
    outcomes = np.array(list(itertools.product(*[[-1, *m] for m in members])))
    X = np.zeros((len(outcomes), d))
    prob = np.tile(p, (len(outcomes), 1))
    for g, m in enumerate(members):
        chosen = outcomes[:, g]
        fired = chosen >= 0
        X[np.flatnonzero(fired), chosen[fired]] = 1.0
        abstain = 1.0 - mu[m].sum(0)
        prob *= np.where(fired[:, None], mu[np.maximum(chosen, 0)], abstain[None, :])
    w = prob.sum(1)
    return MomentProblem(second=np.einsum("n,na,nb->ab", w, X, X), means=w @ X, groups=groups,
                         n_groups=len(members), agreement=agreement, omega_mask=omega_mask,
                         third=np.einsum("n,na,nb,nc->abc", w, X, X, X) if third else None)


def simple(m: int, K: int, p: np.ndarray, seed: int = 0, third: bool = False) -> tuple:
    mu = sources(m, K, seed)
    groups = np.repeat(np.arange(m), K)
    return exact(mu, p, groups, np.tile(np.eye(K), (m, 1)), third=third), mu


def objective(problem: MomentProblem, mu: np.ndarray, p: np.ndarray) -> float:
    """The normalised second-moment objective that :class:`MomentFit` reports as ``loss``."""
    om = problem.omega
    r2 = (((problem.second - (mu * p) @ mu.T) * om) ** 2).sum()
    r1 = ((problem.means - mu @ p) ** 2).sum()
    return float((r2 + r1) / (((problem.second * om) ** 2).sum() + (problem.means ** 2).sum()))


P2 = np.array([0.3, 0.7])


# --- the pieces ------------------------------------------------------------------------------

def test_omega_is_every_pair_of_different_groups_unless_a_mask_is_given() -> None:
    groups = np.array([0, 0, 1, 2])
    prob = MomentProblem(second=np.eye(4), means=np.ones(4), groups=groups, n_groups=3,
                         agreement=np.ones((4, 2)))
    expected = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(prob.omega, expected)
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 3] = mask[3, 0] = True
    custom = MomentProblem(second=np.eye(4), means=np.ones(4), groups=groups, n_groups=3,
                           agreement=np.ones((4, 2)), omega_mask=mask)
    assert custom.omega is mask


def test_initial_mu_by_hand() -> None:
    # group 0: two indicators (means 0.3, 0.2), each agreeing with its own class;
    # group 1: one indicator that never fired
    prob = MomentProblem(second=np.zeros((3, 3)), means=np.array([0.3, 0.2, 0.0]),
                         groups=np.array([0, 0, 1]), n_groups=2,
                         agreement=np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    # weights 2 (agrees) and 1/2 (disagrees), over their uniform-balance mean (2 + 1/2) / 2 =
    # 1.25: [[0.48, 0.12], [0.08, 0.32]]; class totals 0.56 and 0.44, nothing is scaled
    np.testing.assert_allclose(initial_mu(prob, 2), [[0.48, 0.12], [0.08, 0.32], [1e-6, 1e-6]])
    # the point agrees with the observed means under the class balance it is given
    p = np.array([0.7, 0.3])
    got = initial_mu(prob, 2, class_balance=p)
    np.testing.assert_allclose(got[:2] @ p, [0.3, 0.2])
    np.testing.assert_allclose(got[0], 0.3 * np.array([2.0, 0.5]) / (2.0 * 0.7 + 0.5 * 0.3))
    # a larger strength (4) on busier indicators: weights 4 and 1/4 over 2.125 give class 0 a
    # total of (0.9 * 4 + 0.6 / 4) / 2.125 > 0.99, scaled down to 0.99; class 1 likewise
    busy = MomentProblem(second=np.zeros((2, 2)), means=np.array([0.9, 0.6]),
                         groups=np.array([0, 0]), n_groups=1,
                         agreement=np.array([[1.0, 0.0], [0.0, 1.0]]))
    raw = np.array([[0.9 * 4, 0.9 / 4], [0.6 / 4, 0.6 * 4]]) / 2.125
    got = initial_mu(busy, 2, strength=4.0)
    np.testing.assert_allclose(got, raw * 0.99 / raw.sum(axis=0))
    # half agreement sits halfway between 1/strength and strength: weights 1.25 and 0.5, mean
    # 0.875
    half = MomentProblem(second=np.zeros((1, 1)), means=np.array([0.1]), groups=np.array([0]),
                         n_groups=1, agreement=np.array([[0.5, 0.0]]))
    np.testing.assert_allclose(initial_mu(half, 2), [[0.1 * 1.25 / 0.875, 0.1 * 0.5 / 0.875]])


def test_parameterisation_is_a_softmax_with_abstain_and_never_overflows() -> None:
    groups = np.array([0, 0, 1, 1, 1])
    mu = np.array([[0.2, 0.1], [0.3, 0.05], [0.1, 0.2], [0.25, 0.05], [0.05, 0.6]])
    param = _Parameterisation(torch.as_tensor(groups), 2, 2)
    got, abstain = param(torch.as_tensor(_logits_from_mu(mu, groups, 2)))
    np.testing.assert_allclose(got.numpy(), mu, rtol=1e-12)
    totals = np.array([mu[:2].sum(0), mu[2:].sum(0)])
    np.testing.assert_allclose(abstain.numpy(), 1.0 - totals, rtol=1e-12)
    # extreme logits: a near-certain vote and a near-certain abstention, both finite
    big = torch.tensor([[800.0, -800.0], [0.0, -800.0], [-800.0, 0.0], [-800.0, -900.0],
                        [-850.0, -800.0]], dtype=torch.float64)
    got, abstain = param(big)
    assert torch.isfinite(got).all() and torch.isfinite(abstain).all()
    np.testing.assert_allclose(got[0].numpy(), [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(abstain.numpy(), [[0.0, 1.0], [1.0, 0.5]], atol=1e-12)


def test_thread_limit_is_one_thread_for_small_problems_and_restores_the_setting() -> None:
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with _ThreadLimit(10):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with _ThreadLimit(10_000):  # large problems keep every thread
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
        assert _ThreadLimit(9, threshold=10).active and not _ThreadLimit(10, threshold=10).active
    finally:
        torch.set_num_threads(saved)


def test_cuda_without_a_gpu_is_a_config_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    prob, _ = simple(3, 2, P2)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        fit_moments(prob, 2, class_balance=P2, device="cuda")


# --- fits on exact moments -------------------------------------------------------------------

def test_known_balance_recovers_the_parameters_and_reports_its_objective() -> None:
    prob, mu = simple(3, 2, P2)
    fit = fit_moments(prob, 2, class_balance=P2)
    np.testing.assert_allclose(fit.mu, mu, atol=1e-5)
    np.testing.assert_array_equal(fit.class_balance, P2)
    np.testing.assert_allclose(fit.abstain, 1.0 - np.add.reduceat(mu, [0, 2, 4]), atol=1e-5)
    np.testing.assert_array_equal(fit.permutation, [0, 1])
    assert 1 <= fit.n_iter <= 500
    assert fit.loss < 1e-10
    assert fit.loss == pytest.approx(objective(prob, fit.mu, P2), rel=1e-6, abs=1e-14)


def test_iteration_budget_and_tolerance_are_obeyed() -> None:
    prob, mu = simple(3, 2, P2)
    start = initial_mu(prob, 2, class_balance=P2)
    # a tolerance already met at the start: no step, the start and its objective come back
    idle = fit_moments(prob, 2, class_balance=P2, tol=1e6)
    assert idle.n_iter == 0
    np.testing.assert_allclose(idle.mu, start, rtol=1e-9)
    assert idle.loss == pytest.approx(objective(prob, start, P2), rel=1e-9)
    # one iteration: better than the start, far from the optimum
    one = fit_moments(prob, 2, class_balance=P2, max_iter=1)
    assert one.n_iter == 1
    assert 1e-8 < one.loss < idle.loss
    assert one.loss == pytest.approx(objective(prob, one.mu, P2), rel=1e-9)


def test_l2_ridge_pulls_the_fit_to_its_start() -> None:
    prob, mu = simple(3, 2, P2)
    start = initial_mu(prob, 2, class_balance=P2)
    pinned = fit_moments(prob, 2, class_balance=P2, l2=1e6)
    np.testing.assert_allclose(pinned.mu, start, atol=1e-4)
    light = fit_moments(prob, 2, class_balance=P2, l2=0.5)
    gap = np.abs(light.mu - mu).max()
    assert 1e-4 < gap < np.abs(start - mu).max()  # between the truth and the start


def test_inverse_method_completes_the_low_rank_part_everywhere() -> None:
    prob, mu = simple(4, 2, P2, seed=1)
    Q = complete_low_rank(prob, 2)
    np.testing.assert_allclose(Q, (mu * P2) @ mu.T, atol=1e-6)
    fit = fit_moments(prob, 2, class_balance=P2, method="inverse")
    np.testing.assert_allclose(fit.mu, mu, atol=1e-4)


def test_third_moments_identify_a_skewed_class_balance() -> None:
    p = np.array([0.15, 0.85])
    prob, mu = simple(3, 2, p, seed=2, third=True)
    fit = fit_moments(prob, 2)
    np.testing.assert_allclose(fit.class_balance, p, atol=1e-3)
    np.testing.assert_allclose(fit.mu, mu, atol=1e-3)
    # third moments serve the balance only: with the balance given they are ignored, even
    # nonsense ones
    nonsense = MomentProblem(second=prob.second, means=prob.means, groups=prob.groups,
                             n_groups=prob.n_groups, agreement=prob.agreement,
                             third=np.ones_like(prob.third))
    np.testing.assert_allclose(fit_moments(nonsense, 2, class_balance=p).mu,
                               fit_moments(prob, 2, class_balance=p).mu, atol=1e-9)


def test_third_moments_use_only_triples_of_three_different_groups() -> None:
    p = np.array([0.2, 0.8])
    prob, mu = simple(3, 2, p, seed=3, third=True)
    t = prob.third.copy()
    g = prob.groups
    distinct = ((g[:, None, None] != g[None, :, None]) & (g[:, None, None] != g[None, None, :])
                & (g[None, :, None] != g[None, None, :]))
    t[~distinct] = 5.0  # entries that do not factorise given Y: must not matter
    spoiled = MomentProblem(second=prob.second, means=prob.means, groups=g,
                            n_groups=prob.n_groups, agreement=prob.agreement, third=t)
    np.testing.assert_allclose(fit_moments(spoiled, 2).class_balance, p, atol=1e-3)


def test_omega_mask_leaves_out_pairs_that_do_not_factorise() -> None:
    # sources 0 and 1 are dependent: their joint second moment is not mu P mu^T
    prob, mu = simple(4, 2, P2, seed=4)
    second = prob.second.copy()
    second[0:2, 2:4] = second[2:4, 0:2] = 0.02
    mask = prob.omega.copy()
    mask[0:2, 2:4] = mask[2:4, 0:2] = False
    masked = MomentProblem(second=second, means=prob.means, groups=prob.groups,
                           n_groups=prob.n_groups, agreement=prob.agreement, omega_mask=mask)
    np.testing.assert_allclose(fit_moments(masked, 2, class_balance=P2).mu, mu, atol=1e-4)
    unmasked = MomentProblem(second=second, means=prob.means, groups=prob.groups,
                             n_groups=prob.n_groups, agreement=prob.agreement)
    assert np.abs(fit_moments(unmasked, 2, class_balance=P2).mu - mu).max() > 1e-3


def _two_tasks() -> tuple[MomentProblem, np.ndarray, np.ndarray, np.ndarray]:
    """Two binary tasks, latent Y = (y1, y2) in 4 states; 3 sources look at task 1 only and 3
    at task 2 only, so mu[a, y] depends on y only through that task (the projection)."""
    states = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    p = np.array([0.35, 0.15, 0.1, 0.4])
    rng = np.random.default_rng(5)
    mu = np.zeros((12, 4))
    projection = np.zeros((12, 4), dtype=np.int64)
    agreement = np.zeros((12, 4))
    for i in range(6):
        task = i // 3
        acc, cov = rng.uniform(0.7, 0.9), rng.uniform(0.5, 0.9)
        for v in range(2):
            a = 2 * i + v
            y_task = states[:, task]
            mu[a] = cov * np.where(y_task == v, acc, 1 - acc)
            projection[a] = y_task
            agreement[a] = y_task == v
    groups = np.repeat(np.arange(6), 2)
    return exact(mu, p, groups, agreement), mu, p, projection


def test_projection_ties_the_classes_a_source_cannot_tell_apart() -> None:
    prob, mu, p, projection = _two_tasks()
    fit = fit_moments(prob, 4, class_balance=p, projection=projection)
    np.testing.assert_allclose(fit.mu, mu, atol=1e-4)
    for a in range(12):  # exactly tied within each block
        for b in range(2):
            block = fit.mu[a, projection[a] == b]
            np.testing.assert_array_equal(block, block[0])
    # the start of a projected fit is the block mean of the untied start's logits
    idle = fit_moments(prob, 4, class_balance=p, projection=projection, tol=1e6)
    logits0 = _logits_from_mu(initial_mu(prob, 4, class_balance=p), prob.groups, prob.n_groups)
    means = np.zeros_like(logits0)
    for a in range(12):
        for b in range(2):
            means[a, projection[a] == b] = logits0[a, projection[a] == b].mean()
    param = _Parameterisation(torch.as_tensor(prob.groups), prob.n_groups, 4)
    np.testing.assert_allclose(idle.mu, param(torch.as_tensor(means))[0].numpy(), rtol=1e-9)


def test_projection_needs_moments_and_is_ignored_when_tied() -> None:
    prob, mu, p, projection = _two_tasks()
    with pytest.raises(ConfigError, match="projection"):
        fit_moments(prob, 4, class_balance=p, projection=projection, method="inverse")
    tied = fit_moments(prob, 4, class_balance=p, tied=True, tol=1e6)
    both = fit_moments(prob, 4, class_balance=p, tied=True, projection=projection, tol=1e6)
    np.testing.assert_array_equal(both.mu, tied.mu)


def test_tied_start_is_the_mean_logit_of_agreeing_and_other_classes() -> None:
    prob, _ = simple(3, 2, P2, seed=6)
    # a start that favours the wrong class: the tied start still votes for the agreeing one
    wrong = initial_mu(prob, 2)[:, ::-1].copy()
    wrong[0] = [0.2, 0.05]  # and one indicator that agrees, to see both sides of the clamp
    idle = fit_moments(prob, 2, class_balance=P2, init_mu=wrong, tied=True, tol=1e6)
    logits0 = _logits_from_mu(wrong, prob.groups, prob.n_groups)
    agree = prob.agreement
    on = (logits0 * agree).sum(1) / agree.sum(1)
    off = (logits0 * (1 - agree)).sum(1) / (1 - agree).sum(1)
    assert on[0] > off[0] and (on < off).sum() >= 3  # some start worse than random ...
    expected = off[:, None] + np.maximum(on - off, 1e-3)[:, None] * agree  # ... and is clamped
    param = _Parameterisation(torch.as_tensor(prob.groups), prob.n_groups, 2)
    np.testing.assert_allclose(idle.mu, param(torch.as_tensor(expected))[0].numpy(), rtol=1e-7)
    np.testing.assert_array_equal(idle.permutation, [0, 1])


def test_classes_found_under_other_names_are_renamed() -> None:
    prob, mu = simple(3, 2, P2, seed=7, third=True)
    swapped = initial_mu(prob, 2)[:, ::-1].copy()
    # balance estimated: mu and the balance are renamed together
    fit = fit_moments(prob, 2, init_mu=swapped)
    np.testing.assert_array_equal(fit.permutation, [1, 0])
    np.testing.assert_allclose(fit.mu, mu, atol=1e-3)
    np.testing.assert_allclose(fit.class_balance, P2, atol=1e-3)
    # balance given and symmetric: the swapped solution is renamed, the prior kept
    half = np.array([0.5, 0.5])
    prob_half, mu_half = simple(3, 2, half, seed=7)
    fit = fit_moments(prob_half, 2, class_balance=half, init_mu=initial_mu(prob_half, 2)[:, ::-1])
    np.testing.assert_array_equal(fit.permutation, [1, 0])
    np.testing.assert_allclose(fit.mu, mu_half, atol=1e-4)
    np.testing.assert_allclose(fit.abstain, 1.0 - np.add.reduceat(mu_half, [0, 2, 4]),
                               atol=1e-4)
    np.testing.assert_array_equal(fit.class_balance, half)

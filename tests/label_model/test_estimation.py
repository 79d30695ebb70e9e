"""The moment stage: fit_moments on exact population moments, class naming, starting point."""

import numpy as np
import pytest

from metal.errors import ConfigError
from metal.label_model.estimation import MomentProblem, fit_moments, initial_mu, name_classes


def _population(k: int, m: int, seed: int):
    """Exact moments of a model with tied, better-than-random, unipolar+multi-polar sources."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 5.0))
    mu = np.zeros((m * k, k))
    for i in range(m):
        cov = rng.uniform(0.3, 0.6)
        acc = rng.uniform(0.65, 0.9)
        for v in range(k):
            mu[i * k + v, :] = cov * (1 - acc) / (k - 1)
            mu[i * k + v, v] = cov * acc
    groups = np.repeat(np.arange(m), k)
    second = (mu * p) @ mu.T
    same = groups[:, None] == groups[None, :]
    second[same] = 0.0
    means = mu @ p
    second[np.diag_indices_from(second)] = means
    agreement = np.tile(np.eye(k), (m, 1))
    problem = MomentProblem(second=second, means=means, groups=groups, n_groups=m,
                            agreement=agreement)
    return problem, mu, p


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("tied", [True, False])
def test_exact_moments_give_back_the_parameters(k, tied):
    problem, mu, p = _population(k, m=6, seed=k)
    fit = fit_moments(problem, k, class_balance=p, tied=tied, max_iter=2000, tol=1e-12)
    np.testing.assert_allclose(fit.mu, mu, atol=2e-3)
    totals = np.zeros((6, k))
    np.add.at(totals, problem.groups, fit.mu)
    np.testing.assert_allclose(fit.abstain, 1 - totals, atol=1e-10)
    assert fit.loss < 1e-6


def test_name_classes_undoes_a_permutation():
    problem, mu, _ = _population(3, m=5, seed=4)
    perm = np.array([1, 2, 0])
    renamed = mu[:, perm]  # latent class j is truly class perm[j]
    np.testing.assert_array_equal(name_classes(renamed, problem.agreement), perm)


def test_initial_point_is_better_than_random_and_below_coverage():
    problem, _, _ = _population(3, m=4, seed=5)
    mu0 = initial_mu(problem, 3)
    on = (mu0 * problem.agreement).sum(axis=1)
    off = (mu0 * (1 - problem.agreement)).max(axis=1)
    assert (on > off).all()
    totals = np.zeros((4, 3))
    np.add.at(totals, problem.groups, mu0)
    assert (totals < 1).all()


def test_unknown_method_is_refused():
    problem, _, _ = _population(2, m=3, seed=6)
    with pytest.raises(ConfigError, match="method"):
        fit_moments(problem, 2, method="svd")


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("estimate_balance", [True, False])
@pytest.mark.parametrize("layout", ["sorted", "singletons", "unsorted"])
def test_closed_form_gradient_matches_finite_differences(tied, estimate_balance, layout):
    from scipy.optimize import approx_fprime

    from metal.label_model.estimation import _logits_from_mu, _MomentLoss

    rng = np.random.default_rng(7)
    d, k = 12, 3
    groups = {"sorted": np.repeat([0, 2, 3, 5], 3), "singletons": np.arange(d),
              "unsorted": rng.permutation(np.repeat(np.arange(4), 3))}[layout]
    n_groups = int(groups.max()) + 2  # one silent group
    A = rng.random((d, d))
    agreement = np.zeros((d, k))
    agreement[np.arange(d), rng.integers(0, k, d)] = 1.0
    problem = MomentProblem(second=A @ A.T / 50, means=rng.random(d) / 4, groups=groups,
                            n_groups=n_groups, agreement=agreement)
    logits0 = _logits_from_mu(initial_mu(problem, k), groups, n_groups)
    fun = _MomentLoss(problem, k, logits0, None if estimate_balance else np.full(k, 1 / k),
                      l2=0.3, tied=tied)
    x = rng.standard_normal((2 * d if tied else d * k) + (k if estimate_balance else 0))
    numeric = approx_fprime(x, lambda z: fun(z)[0], 1e-7)
    np.testing.assert_allclose(fun(x)[1], numeric, atol=1e-6)
    mu, abstain = fun.probs(fun.logits(fun.split(x)[0]))
    totals = np.zeros((n_groups, k))
    np.add.at(totals, groups, mu)
    np.testing.assert_allclose(totals + abstain, 1.0)  # each group's values + abstain sum to 1


def test_numpy_and_torch_paths_reach_the_same_fit():
    # an identity projection (every class its own block) is the free parameterisation, fitted
    # by the torch path; without it the closed-form numpy path runs
    problem, mu, p = _population(3, m=6, seed=5)
    identity = np.tile(np.arange(3), (problem.means.shape[0], 1))
    numpy_fit = fit_moments(problem, 3, class_balance=p, l2=0.01, max_iter=2000, tol=1e-12)
    torch_fit = fit_moments(problem, 3, class_balance=p, l2=0.01, max_iter=2000, tol=1e-12,
                            projection=identity)
    np.testing.assert_allclose(numpy_fit.mu, torch_fit.mu, atol=1e-5)
    assert numpy_fit.loss <= torch_fit.loss + 1e-10

"""The moment estimator on exact (population) moments: it must recover the parameters that
generated them, name the classes right, and respect a given class balance. Small and fast, so
it is also the test set of the mutation check of ``estimation.py``."""

from __future__ import annotations

import numpy as np
import pytest

from metal.errors import ConfigError
from metal.label_model.estimation import (
    MomentProblem,
    fit_moments,
    initial_mu,
    name_classes,
)


def population_problem(mu: np.ndarray, p: np.ndarray) -> MomentProblem:
    """Exact moments of conditionally independent sources, each with ``K`` indicators
    (``mu[(i, v), y] = P(lambda_i = v | y)``)."""
    d, K = mu.shape
    m = d // K
    groups = np.repeat(np.arange(m), K)
    second = (mu * p) @ mu.T
    same = groups[:, None] == groups[None, :]
    means = mu @ p
    second[same] = 0.0
    second[np.diag_indices(d)] = means
    agreement = np.tile(np.eye(K), (m, 1))
    return MomentProblem(second=second, means=means, groups=groups, n_groups=m,
                         agreement=agreement)


def truth(m: int, K: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = np.zeros((m * K, K))
    for i in range(m):
        cover = rng.uniform(0.5, 0.9)
        acc = rng.uniform(0.65, 0.9)
        block = np.full((K, K), (1 - acc) / (K - 1))
        np.fill_diagonal(block, acc)
        mu[i * K:(i + 1) * K] = cover * block
    p = rng.dirichlet(np.full(K, 5.0))
    return mu, p


@pytest.mark.parametrize("K", [2, 3])
def test_recovers_parameters_with_known_balance(K: int) -> None:
    mu, p = truth(6, K, seed=K)
    fit = fit_moments(population_problem(mu, p), K, class_balance=p, max_iter=300, l2=0.0)
    np.testing.assert_allclose(fit.mu, mu, atol=2e-3)
    np.testing.assert_allclose(fit.class_balance, p)
    totals = np.add.reduceat(fit.mu, np.arange(0, mu.shape[0], K), axis=0)
    np.testing.assert_allclose(fit.abstain, 1.0 - totals, atol=1e-9)
    assert fit.loss < 1e-6 and fit.n_iter >= 1
    np.testing.assert_array_equal(np.sort(fit.permutation), np.arange(K))


def test_estimates_the_class_balance_without_labels() -> None:
    mu, p = truth(8, 3, seed=7)
    fit = fit_moments(population_problem(mu, p), 3, class_balance=None, max_iter=500, l2=0.0)
    np.testing.assert_allclose(fit.class_balance.sum(), 1.0)
    np.testing.assert_allclose(fit.mu, mu, atol=0.03)
    assert np.argmax(fit.class_balance) == np.argmax(p)


def test_inverse_method_agrees() -> None:
    mu, p = truth(6, 2, seed=3)
    fit = fit_moments(population_problem(mu, p), 2, class_balance=p, method="inverse",
                      max_iter=300)
    np.testing.assert_allclose(fit.mu, mu, atol=0.02)


def test_tied_parameterisation_keeps_off_diagonal_equal() -> None:
    mu, p = truth(6, 3, seed=5)
    fit = fit_moments(population_problem(mu, p), 3, class_balance=p, tied=True, max_iter=300)
    for a in range(fit.mu.shape[0]):
        v = a % 3
        off = np.delete(fit.mu[a], v)
        np.testing.assert_allclose(off, off[0], atol=1e-4)
    np.testing.assert_allclose(fit.mu, mu, atol=2e-3)  # the truth is tied here


def test_l2_pulls_towards_the_start() -> None:
    mu, p = truth(6, 2, seed=1)
    prob = population_problem(mu, p)
    free = fit_moments(prob, 2, class_balance=p, l2=0.0)
    ridge = fit_moments(prob, 2, class_balance=p, l2=10.0)
    start = initial_mu(prob, 2)
    assert np.abs(ridge.mu - start).sum() < np.abs(free.mu - start).sum()


def test_initial_point_is_better_than_random_and_valid() -> None:
    mu, p = truth(5, 3, seed=2)
    prob = population_problem(mu, p)
    start = initial_mu(prob, 3)
    assert start.shape == mu.shape and (start > 0).all()
    totals = np.add.reduceat(start, np.arange(0, start.shape[0], 3), axis=0)
    assert (totals <= 0.99 + 1e-12).all()
    for a in range(start.shape[0]):  # agreeing class gets the largest share
        assert np.argmax(start[a]) == a % 3


def test_name_classes_undoes_a_permutation() -> None:
    mu, p = truth(5, 3, seed=4)
    agreement = np.tile(np.eye(3), (5, 1))
    perm = np.array([2, 0, 1])
    shuffled = np.empty_like(mu)
    shuffled[:, perm] = mu  # column perm[c] of shuffled holds true class c
    got = name_classes(shuffled, agreement)
    np.testing.assert_array_equal(np.sort(got), np.arange(3))
    # applying the naming puts each latent column where it belongs
    named = np.empty_like(shuffled)
    named[:, got] = shuffled
    np.testing.assert_allclose(named, mu)


def test_bad_device_and_method() -> None:
    mu, p = truth(4, 2, seed=0)
    with pytest.raises(ConfigError, match="not a torch device"):
        fit_moments(population_problem(mu, p), 2, class_balance=p, device="nowhere")
    with pytest.raises(ConfigError):
        fit_moments(population_problem(mu, p), 2, class_balance=p, method="em")

"""The joint moment estimator's one-coin tie (``tie="exact"``) and its start."""

from __future__ import annotations

import numpy as np

from metal.label_model.estimation import MomentProblem
from metal.label_model.multitask.moments import ONE_COIN_START, one_coin_start


def _problem(agreement: np.ndarray, means: np.ndarray) -> MomentProblem:
    d = means.size
    return MomentProblem(second=np.zeros((d, d)), means=means, groups=np.arange(d),
                         n_groups=d, agreement=agreement)


# six feasible vectors: a fine vote names one, a coarse vote a branch of three, the third
# indicator is a vote vector no feasible vector matches
AGREE = np.array([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0],
                  [1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
                  [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]])
MEANS = np.array([0.05, 0.1, 0.02])


def test_one_coin_start_matches_the_means_under_the_prior() -> None:
    for p in (np.full(6, 1 / 6), np.array([0.3, 0.1, 0.1, 0.2, 0.2, 0.1])):
        mu = one_coin_start(_problem(AGREE, MEANS), p, ONE_COIN_START)
        assert np.allclose(mu @ p, MEANS)
        # P(truth among the named vectors | the vote) is the start's accuracy
        assert np.isclose((mu[0] * p)[:1].sum() / MEANS[0], ONE_COIN_START)
        assert np.isclose((mu[1] * p)[:3].sum() / MEANS[1], ONE_COIN_START)


def test_one_coin_start_weighs_a_vote_by_how_much_of_the_feasible_set_it_rules_out() -> None:
    mu = one_coin_start(_problem(AGREE, MEANS), None, 0.7)  # uniform prior when estimated
    log_mu = np.log(mu)
    odds = np.log(0.7 / 0.3)
    # fine vote: one vector named, five ruled out; coarse vote: three and three
    assert np.isclose(log_mu[0, 0] - log_mu[0, 1], odds + np.log(5.0))
    assert np.isclose(log_mu[0, 1], log_mu[0, 5])  # a sibling is as wrong as another branch
    assert np.isclose(log_mu[1, 0] - log_mu[1, 3], odds)
    assert log_mu[0, 0] - log_mu[0, 1] > log_mu[1, 0] - log_mu[1, 3]
    # a vote that names no feasible vector starts as no evidence
    assert np.allclose(mu[2], MEANS[2])

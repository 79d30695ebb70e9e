"""The joint moment fit (MeTaL's matrix completion over the feasible set).

``mu[(i, code), j] = P(lambda_i = code | Y = y_j)`` is estimated from the second moments of the
(source, code) indicators by :func:`~metal.label_model.estimation.fit_moments` with
``K = |feasible set|`` latent classes. ``MultiTaskLabelModel(estimator="moments")`` uses it
as its estimator; the default EM estimator does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metal.label_model.estimation import MomentProblem, fit_moments
from metal.label_model.multitask.coding import (
    MultiTaskCoding,
    agreement_projection,
    complete_votes,
    coverage_projection,
    vote_agreement,
)
from metal.label_model.statistics import SourceStatistics

TIES = ("none", "coverage", "agreement", "linear", "exact")
#: ``tie="exact"``'s start (and ridge centre): a vote is right (the truth lies in the feasible
#: vectors it names) with this probability, as Snorkel's label model initialises its
#: precisions (``prec_init=0.7``); the fitted tables move from it where the moments say so
ONE_COIN_START = 0.7


@dataclass
class MomentTables:
    """What the moment fit found, per emitted (source, code) indicator."""

    emitted: np.ndarray
    mu: np.ndarray  # (d, K)
    abstain: np.ndarray  # (m, K)
    class_balance: np.ndarray
    loss: float
    n_iter: int
    permutation: np.ndarray


def fit_joint_moments(stats: SourceStatistics, coding: MultiTaskCoding, feasible: np.ndarray,
                      class_balance: np.ndarray | None, *, tie: str, method: str,
                      max_iter: int, tol: float, l2: float, device: str,
                      seed: int) -> MomentTables:
    """Fit the class-conditional tables of every emitted code from second moments.

    ``tie`` as in :class:`~metal.label_model.multitask.MultiTaskLabelModel`.
    """
    K = feasible.shape[0]
    emitted = stats.emitted()
    src, V = coding.decode(emitted)
    means, second = stats.moments(emitted)
    agreement = vote_agreement(complete_votes(V, feasible), feasible)
    problem = MomentProblem(second=second, means=means, groups=src,
                            n_groups=coding.n_sources, agreement=agreement)
    common = dict(class_balance=class_balance, max_iter=max_iter, tol=tol, l2=l2,
                  device=device, seed=seed)
    if tie == "exact":
        # the one-coin model: the vote's probability is one value under the feasible vectors
        # it names (agreement 1) and one under all others
        named = (agreement >= 1.0 - 1e-9).astype(np.float64)
        one_coin = MomentProblem(second=second, means=means, groups=src,
                                 n_groups=coding.n_sources, agreement=named)
        start = one_coin_start(one_coin, class_balance, ONE_COIN_START)
        result = fit_moments(one_coin, K, method=method, tied=True, init_mu=start,
                             **common)  # type: ignore[arg-type]
    elif tie == "linear":
        result = fit_moments(problem, K, method=method, tied=True, **common)  # type: ignore[arg-type]
    elif tie != "none":
        projection = (coverage_projection(src, coding.coverage, feasible)
                      if tie == "coverage" else agreement_projection(agreement))
        result = fit_moments(problem, K, projection=projection, **common)  # type: ignore[arg-type]
    else:
        result = fit_moments(problem, K, method=method, **common)  # type: ignore[arg-type]
    return MomentTables(emitted, result.mu, result.abstain, result.class_balance, result.loss,
                        result.n_iter, result.permutation)


def one_coin_start(problem: MomentProblem, class_balance: np.ndarray | None,
                   accuracy: float) -> np.ndarray:
    """``(d, K)`` one-coin start: each vote is right with probability ``accuracy``.

    Indicator ``a`` names the feasible vectors ``A`` where ``problem.agreement[a] == 1``.
    Under the prior ``p`` (uniform when it is estimated), ``P(Y in A | a fired) = accuracy``
    and ``Y`` is spread by ``p`` inside ``A`` and outside it, so ``P(a | y) = means[a] *
    accuracy / p(A)`` on ``A`` and ``means[a] * (1 - accuracy) / p(not A)`` off it (the
    means are matched exactly). A vote is then evidence in proportion to how much of the
    feasible set it rules out: a fine type's vote (one vector) says more than its coarse
    type's (a whole branch), where a start that is a fixed ratio per vote (as in
    :func:`~metal.label_model.estimation.initial_mu`) makes them equally strong. A vote that
    names no feasible vector starts as no evidence. Each source's total is kept below 0.99.
    """
    d, K = problem.agreement.shape
    p = np.full(K, 1.0 / K) if class_balance is None else np.asarray(class_balance, np.float64)
    named = problem.agreement >= 1.0 - 1e-9
    p_named = named @ p
    has = (p_named > 0) & (p_named < 1.0 - 1e-12)
    on = np.where(has, accuracy / np.where(has, p_named, 1.0), 1.0)
    off = np.where(has, (1.0 - accuracy) / np.where(has, 1.0 - p_named, 1.0), 1.0)
    mu = problem.means[:, None] * np.where(named, on[:, None], off[:, None])
    totals = np.zeros((problem.n_groups, K))
    np.add.at(totals, problem.groups, mu)
    scale = np.minimum(1.0, 0.99 / np.maximum(totals, 1e-12))
    out: np.ndarray = np.clip(mu * scale[problem.groups], 1e-6, None)
    return out


__all__ = ["ONE_COIN_START", "TIES", "MomentTables", "fit_joint_moments", "one_coin_start"]

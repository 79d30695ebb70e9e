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

TIES = ("none", "coverage", "agreement", "linear")


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
    if tie == "linear":
        result = fit_moments(problem, K, method=method, tied=True, **common)  # type: ignore[arg-type]
    elif tie != "none":
        projection = (coverage_projection(src, coding.coverage, feasible)
                      if tie == "coverage" else agreement_projection(agreement))
        result = fit_moments(problem, K, projection=projection, **common)  # type: ignore[arg-type]
    else:
        result = fit_moments(problem, K, method=method, **common)  # type: ignore[arg-type]
    return MomentTables(emitted, result.mu, result.abstain, result.class_balance, result.loss,
                        result.n_iter, result.permutation)


__all__ = ["TIES", "MomentTables", "fit_joint_moments"]

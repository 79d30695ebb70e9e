"""Seeded synthetic label matrices with known class balance and conditional probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metal.errors import ConfigError


@dataclass(frozen=True)
class SyntheticData:
    """A generated label matrix with the ground truth that produced it.

    Attributes
    ----------
    L : (n, m) int8 label matrix, -1 = abstain.
    Y : (n,) true classes.
    conditional_probs : (m, k+1, k) ``[i, v, y] = P(lambda_i = v | Y = y)``, ``v = -1`` abstain.
    class_balance : (k,) ``P(Y)``.
    unipolar : (m,) the class a unipolar source emits, or -1 for a source that can emit all.
    """

    L: np.ndarray
    Y: np.ndarray
    conditional_probs: np.ndarray
    class_balance: np.ndarray
    unipolar: np.ndarray

    @property
    def cardinality(self) -> int:
        return int(self.class_balance.shape[0])


def draw_class_balance(
    K: int, class_balance: np.ndarray | None, rng: np.random.Generator, what: str = ""
) -> np.ndarray:
    """The given ``P(Y)`` (checked), or a draw from a Dirichlet(5) (never too skewed)."""
    if class_balance is None:
        return rng.dirichlet(np.full(K, 5.0))
    p = np.asarray(class_balance, dtype=np.float64)
    if p.shape != (K,) or (p < 0).any() or abs(p.sum() - 1) > 1e-6:
        raise ConfigError(f"class_balance must be {K} probabilities summing to 1{what}")
    return p


def make_conditional_probs(
    m: int,
    cardinality: int,
    rng: np.random.Generator,
    coverage: tuple[float, float] = (0.2, 0.6),
    accuracy: tuple[float, float] = (0.6, 0.9),
    unipolar_fraction: float = 0.3,
    class_dependent_coverage: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(m, k+1, k)`` conditional probability tables and the unipolar class per source.

    A multi-polar source votes with probability ``coverage`` (perturbed per class by up to
    ``class_dependent_coverage``), and when it votes it is right with probability ``accuracy``,
    its errors spread uniformly. A unipolar source emits one class ``c``: it fires with
    probability ``coverage`` when ``Y = c`` and ``coverage * (1 - accuracy)`` otherwise.
    """
    k = cardinality
    cond = np.zeros((m, k + 1, k))
    unipolar = np.full(m, -1, dtype=np.int64)
    for i in range(m):  # loop over sources, not rows
        cov = rng.uniform(*coverage)
        acc = rng.uniform(*accuracy)
        if rng.random() < unipolar_fraction:
            c = int(rng.integers(k))
            unipolar[i] = c
            cond[i, c, :] = cov * (1.0 - acc)
            cond[i, c, c] = cov
        else:
            per_class = cov * (1.0 + class_dependent_coverage * rng.uniform(-1, 1, size=k))
            per_class = np.clip(per_class, 0.01, 0.99)
            wrong = (1.0 - acc) / (k - 1)
            table = np.full((k, k), wrong)
            np.fill_diagonal(table, acc)
            cond[i, :k, :] = table * per_class[None, :]
        cond[i, k, :] = 1.0 - cond[i, :k, :].sum(axis=0)
    return cond, unipolar


def sample_label_matrix(
    Y: np.ndarray, conditional_probs: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw votes ``lambda_i ~ P(. | Y)`` for every row, one source at a time (vectorised)."""
    m, kp1, _ = conditional_probs.shape
    L = np.empty((Y.shape[0], m), dtype=np.int8 if kp1 <= 127 else np.int32)
    u = np.empty(Y.shape[0])
    for i in range(m):
        cum = np.cumsum(conditional_probs[i], axis=0)[:, Y]  # (k+1, n)
        rng.random(out=u)
        idx = (u[None, :] > cum).sum(axis=0)
        idx = np.minimum(idx, kp1 - 1)
        L[:, i] = np.where(idx == kp1 - 1, -1, idx)
    return L


def make_synthetic(
    n: int = 10_000,
    m: int = 10,
    cardinality: int = 2,
    *,
    class_balance: np.ndarray | None = None,
    coverage: tuple[float, float] = (0.2, 0.6),
    accuracy: tuple[float, float] = (0.6, 0.9),
    unipolar_fraction: float = 0.3,
    class_dependent_coverage: float = 0.3,
    seed: int = 0,
) -> SyntheticData:
    """Generate a label matrix from a known class-conditional model.

    Parameters
    ----------
    n, m, cardinality
        Rows, sources, classes.
    class_balance
        ``P(Y)``; default: a random draw from a Dirichlet(5) (never too skewed).
    coverage, accuracy
        Ranges that each source's coverage and accuracy are drawn from.
    unipolar_fraction
        Expected fraction of unipolar sources (emit one class or abstain).
    class_dependent_coverage
        Relative spread of a multi-polar source's coverage across classes.
    seed
        Seed of the generator (no global state is touched).

    Examples
    --------
    >>> data = make_synthetic(n=100, m=5, cardinality=3, seed=0)
    >>> data.L.shape, data.conditional_probs.shape
    ((100, 5), (5, 4, 3))
    """
    if n < 1 or m < 1 or cardinality < 2:
        raise ConfigError(f"need n >= 1, m >= 1, cardinality >= 2; got {n}, {m}, {cardinality}")
    if not (0 < coverage[0] <= coverage[1] <= 1 and 0 < accuracy[0] <= accuracy[1] <= 1):
        raise ConfigError(f"coverage={coverage} and accuracy={accuracy} must be ranges in (0, 1]")
    rng = np.random.default_rng(seed)
    p = draw_class_balance(cardinality, class_balance, rng)
    cond, unipolar = make_conditional_probs(m, cardinality, rng, coverage, accuracy,
                                            unipolar_fraction, class_dependent_coverage)
    Y = rng.choice(cardinality, size=n, p=p)
    L = sample_label_matrix(Y, cond, rng)
    return SyntheticData(L=L, Y=Y, conditional_probs=cond, class_balance=p, unipolar=unipolar)

"""Behaviour shared by every label model: validation of hyperparameters, predict, score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from metal._validate import check_bool, check_float, check_int, check_seed
from metal.errors import ConfigError, NotFittedError
from metal.matrix import LabelInput, check_gold
from metal.metrics import probs_to_preds, score_predictions


def check_cardinality(cardinality: Any) -> int:
    if isinstance(cardinality, bool) or not isinstance(cardinality, (int, np.integer)) \
            or cardinality < 2:
        raise ConfigError(f"cardinality={cardinality!r}; expected an int >= 2 (the number of "
                          "classes; binary tasks use 2)")
    return int(cardinality)


def check_class_balance(class_balance: Any, cardinality: int) -> np.ndarray:
    p = np.asarray(class_balance, dtype=np.float64)
    if p.shape != (cardinality,):
        raise ConfigError(f"class_balance has {p.size} entries; the model has cardinality "
                          f"{cardinality}. Pass one probability per class.")
    if not np.all(np.isfinite(p)) or (p <= 0).any():
        raise ConfigError(f"class_balance={p.tolist()} must be positive and finite; give each "
                          "class a probability > 0")
    if abs(p.sum() - 1.0) > 1e-6:
        raise ConfigError(f"class_balance sums to {p.sum():.6g}; expected 1. Normalise it with "
                          "p / p.sum().")
    return p


def check_is_fitted(model: object, attr: str = "class_balance_") -> None:
    """Raise :class:`NotFittedError` unless ``model`` has the fitted attribute ``attr``."""
    if not hasattr(model, attr):
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call "
                             f".fit(L) before using it")


def check_fit_params(model: Any) -> None:
    """Validate the estimator hyperparameters shared by the moment-based label models."""
    from metal.label_model.estimation import METHODS

    if model.method not in METHODS:
        raise ConfigError(f"method={model.method!r} is not known; expected one of {METHODS}")
    check_float("prob_floor", model.prob_floor, low=0.0, high=0.5, high_open=True)
    for name in ("max_iter", "chunk_rows"):
        check_int(name, getattr(model, name), low=1)
    if not (model.l2 is None and _defaults_to_none(model, "l2")):  # None: decided per fit
        check_float("l2", model.l2, low=0.0)
    check_float("tol", model.tol, low=0.0, low_open=True)
    check_seed(model.seed)
    if not (model.model_abstains is None and _defaults_to_none(model, "model_abstains")):
        check_bool("model_abstains", model.model_abstains)


def _defaults_to_none(model: Any, name: str) -> bool:
    """Whether the model's constructor takes ``name=None`` as "decide at fit time"."""
    import inspect

    param = inspect.signature(type(model).__init__).parameters.get(name)
    return param is not None and param.default is None


def balance_from_gold(Y: np.ndarray, cardinality: int) -> np.ndarray:
    """Class balance from a small labeled set, with add-one smoothing so no class gets 0."""
    Y = check_gold(Y, len(np.asarray(Y)), cardinality, name="Y_dev")
    counts = np.bincount(Y[Y >= 0], minlength=cardinality).astype(np.float64) + 1.0
    return counts / counts.sum()


class BaseLabelModel:
    """Common API: ``predict_proba`` (subclasses), ``predict``, ``score``."""

    cardinality: int
    seed: int

    def _check_fitted(self, attr: str = "class_balance_") -> None:
        check_is_fitted(self, attr)

    def predict_proba(self, L: LabelInput) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(
        self,
        L: LabelInput,
        tie_break: str = "random",
        return_probs: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Most probable class of each row.

        Parameters
        ----------
        L
            Label matrix.
        tie_break
            ``"random"`` (seeded by the model's ``seed``), ``"abstain"`` (-1) or ``"first"``.
        return_probs
            Also return the probabilities.
        """
        probs = self.predict_proba(L)
        preds = probs_to_preds(probs, tie_break, seed=self.seed)
        return (preds, probs) if return_probs else preds

    def score(
        self,
        L: LabelInput,
        Y: Any,
        metrics: Sequence[str] = ("accuracy",),
        tie_break: str = "random",
    ) -> dict[str, float]:
        """Score predictions against gold labels ``Y`` (rows with ``Y == -1`` are skipped).

        Returns a dict metric name -> value; see :func:`metal.metrics.score_predictions`.
        """
        preds = self.predict(L, tie_break=tie_break)
        assert isinstance(preds, np.ndarray)
        Y = check_gold(Y, preds.shape[0], self.cardinality)
        return score_predictions(Y, preds, metrics, cardinality=self.cardinality)

"""metal.metrics: exact predictions under each tie policy and exact scores."""

from __future__ import annotations

import numpy as np
import pytest

from metal.errors import ConfigError
from metal.metrics import probs_to_preds, score_predictions

P = np.array([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8], [0.5, 0.5]])


def test_tie_policies() -> None:
    np.testing.assert_array_equal(probs_to_preds(P, "first"), [0, 0, 1, 0])
    np.testing.assert_array_equal(probs_to_preds(P, "abstain"), [0, -1, 1, -1])
    r = probs_to_preds(P, "random", seed=3)
    assert r[0] == 0 and r[2] == 1 and set(r[[1, 3]]) <= {0, 1}
    np.testing.assert_array_equal(r, probs_to_preds(P, "random", seed=3))  # seeded
    draws = {tuple(probs_to_preds(np.full((50, 2), 0.5), seed=s)) for s in range(3)}
    assert len(draws) == 3  # different seeds, different draws


def test_tolerance_defines_ties() -> None:
    near = np.array([[0.5 + 1e-7, 0.5 - 1e-7]])
    assert probs_to_preds(near, "abstain")[0] == -1
    assert probs_to_preds(near, "abstain", tol=0.0)[0] == 0
    assert probs_to_preds(np.array([[0.4, 0.6]]), "abstain", tol=0.3)[0] == -1


def test_scores_exact() -> None:
    Y = np.array([1, 0, 1, 1, -1, 0])
    preds = np.array([1, 1, 0, 1, 0, -1])
    s = score_predictions(Y, preds, ["accuracy", "precision", "recall", "f1", "coverage",
                                     "macro_f1"], cardinality=2)
    # rows with gold: Y = [1, 0, 1, 1, 0], preds = [1, 1, 0, 1, -1]
    assert s["accuracy"] == pytest.approx(2 / 5)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["coverage"] == pytest.approx(4 / 5)
    f1_class0 = 0.0  # class 0 never predicted correctly
    assert s["macro_f1"] == pytest.approx((f1_class0 + 2 / 3) / 2)


def test_positive_class_and_single_metric_string() -> None:
    Y = np.array([0, 0, 1])
    preds = np.array([0, 1, 1])
    assert score_predictions(Y, preds, "f1", positive=0)["f1"] == pytest.approx(2 / 3)
    assert score_predictions(Y, preds, "recall", positive=0)["recall"] == pytest.approx(0.5)
    assert score_predictions(Y, preds, "precision", positive=0)["precision"] == 1.0


def test_degenerate_f1_is_zero_not_nan() -> None:
    s = score_predictions(np.array([0, 0]), np.array([0, 0]), ["f1", "precision", "recall"])
    assert s == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_errors() -> None:
    with pytest.raises(ConfigError, match="no row has a gold label"):
        score_predictions([-1], [0])
    with pytest.raises(ConfigError, match="tol"):
        probs_to_preds(P, tol=float("nan"))

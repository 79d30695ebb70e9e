"""Redundancy weights: copies of a source share one source's weight; independent ones keep 1."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from metal.label_model.label_model import MetalWarning
from metal.label_model.multitask import MultiTaskLabelModel
from metal.label_model.redundancy import redundancy_weights, residual_correlation
from metal.tasks import TaskHierarchy


def _independent_fires(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources firing independently given a 2-class label (fire rates differ by class)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    fire_probs = np.array([[0.6, 0.1], [0.5, 0.2], [0.1, 0.5], [0.2, 0.7], [0.4, 0.3]])
    X = rng.random((n, 5)) < fire_probs[:, y].T
    posterior = np.eye(2)[y]  # the true label as the posterior
    return X, posterior, fire_probs


def test_independent_sources_keep_weight_one() -> None:
    X, post, f = _independent_fires(20000, 0)
    corr = residual_correlation(sp.csr_matrix(X), post, f)
    assert np.abs(corr).max() < 0.05
    np.testing.assert_array_equal(redundancy_weights(sp.csr_matrix(X), post, f), np.ones(5))


def test_copies_share_one_weight() -> None:
    X, post, f = _independent_fires(20000, 1)
    X = np.column_stack([X, X[:, 0], X[:, 0]])  # two exact copies of source 0
    f = np.vstack([f, f[0], f[0]])
    w = redundancy_weights(sp.csr_matrix(X), post, f)
    np.testing.assert_allclose(w[[0, 5, 6]], 1 / 3, atol=0.02)
    np.testing.assert_array_equal(w[1:5], np.ones(4))


def test_row_weights_equal_repeated_rows() -> None:
    X, post, f = _independent_fires(3000, 2)
    X = np.column_stack([X, X[:, 1]])
    f = np.vstack([f, f[1]])
    w_rows = np.arange(1, 4)[np.arange(3000) % 3]
    rep = np.repeat(np.arange(3000), w_rows)
    a = redundancy_weights(sp.csr_matrix(X[rep]), post[rep], f)
    b = redundancy_weights(sp.csr_matrix(X), post, f, row_weights=w_rows)
    np.testing.assert_allclose(a, b)


def _unipolar_votes(n: int, seed: int) -> tuple[TaskHierarchy, np.ndarray, np.ndarray]:
    """A 2 -> 4 hierarchy with unipolar sources only (the moment path), independent given Y."""
    h = TaskHierarchy({"coarse": 2, "fine": 4},
                      parents={"fine": ("coarse", [0, 0, 1, 1])})
    rng = np.random.default_rng(seed)
    Y = h.feasible[rng.integers(0, h.n_feasible, n)]
    specs = [(0, 0, 0.5), (0, 1, 0.5), (0, 0, 0.4), (0, 1, 0.4)]  # (task, value, coverage)
    specs += [(1, v, 0.3) for v in range(4)] + [(1, v, 0.25) for v in range(4)]
    L = np.full((n, len(specs), 2), -1, dtype=np.int64)
    for i, (s, v, cov) in enumerate(specs):
        hit = Y[:, s] == v
        fire = rng.random(n) < np.where(hit, cov, 0.03)
        L[fire, i, s] = v
    return h, L, Y


def test_moment_fit_down_weights_duplicated_sources() -> None:
    h, L, _ = _unipolar_votes(6000, 3)
    L3 = np.concatenate([L, L[:, [0, 0, 0]]], axis=1)  # three more copies of source 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetalWarning)
        model = MultiTaskLabelModel(h, seed=0).fit(L3)
    assert model.em_choice_["chosen"] == "moments"
    w = model.source_weights_
    # the four copies of source 0 share about one source's weight; the others are untouched
    assert w[[0, 12, 13, 14]].sum() < 1.5
    assert np.all(w[1:12] > 0.8)


def test_weights_survive_save_and_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    h, L, _ = _unipolar_votes(3000, 4)
    L2 = np.concatenate([L, L[:, [4]]], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetalWarning)
        model = MultiTaskLabelModel(h, seed=0).fit(L2)
        model.save(tmp_path / "m.npz")
        loaded = MultiTaskLabelModel.load(tmp_path / "m.npz")
        np.testing.assert_array_equal(loaded.source_weights_, model.source_weights_)
        np.testing.assert_allclose(loaded.predict_proba_joint(L2), model.predict_proba_joint(L2))

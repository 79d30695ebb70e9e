"""The generators: shapes, conventions, determinism and that they follow their parameters."""

from __future__ import annotations

import numpy as np
import pytest

from metal.data import make_synthetic
from metal.data.synthetic_dependencies import make_dependent_synthetic
from metal.data.synthetic_hierarchy import make_hierarchical_synthetic
from metal.errors import ConfigError
from metal.tasks import TaskHierarchy


def test_make_synthetic_follows_its_model() -> None:
    d = make_synthetic(n=20_000, m=6, cardinality=3, seed=0,
                       class_balance=np.array([0.5, 0.3, 0.2]), unipolar_fraction=0.0)
    assert d.L.shape == (20_000, 6) and d.Y.shape == (20_000,)
    assert d.L.min() >= -1 and d.L.max() <= 2
    np.testing.assert_allclose(d.conditional_probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.bincount(d.Y) / 20_000, [0.5, 0.3, 0.2], atol=0.015)
    # empirical P(lambda_0 = v | y) matches the table
    for y in range(3):
        rows = d.L[d.Y == y, 0]
        emp = [np.mean(rows == v) for v in (0, 1, 2, -1)]
        np.testing.assert_allclose(emp, d.conditional_probs[0, :, y], atol=0.03)


def test_same_seed_same_data_and_ranges() -> None:
    a = make_synthetic(n=500, m=4, seed=5)
    b = make_synthetic(n=500, m=4, seed=5)
    c = make_synthetic(n=500, m=4, seed=6)
    np.testing.assert_array_equal(a.L, b.L)
    assert not np.array_equal(a.L, c.L)
    with pytest.raises(ConfigError):
        make_synthetic(n=0)
    with pytest.raises(ConfigError):
        make_synthetic(coverage=(0.5, 0.2))


def test_unipolar_sources_emit_one_class() -> None:
    d = make_synthetic(n=3000, m=8, cardinality=3, unipolar_fraction=1.0, seed=2)
    for i in range(8):
        voted = np.unique(d.L[:, i][d.L[:, i] >= 0])
        assert d.unipolar[i] >= 0 and set(voted.tolist()) <= {int(d.unipolar[i])}


def test_dependent_and_hierarchical_generators() -> None:
    dep = make_dependent_synthetic(n=2000, m=8, seed=1)
    assert dep.L.shape == (2000, 8) and dep.L.min() >= -1
    h = TaskHierarchy({"type": 2, "person": 3}, parents={"person": ("type", 0)})
    hd = make_hierarchical_synthetic(800, h, seed=0)
    assert hd.Y.shape == (800, 2) and h.is_feasible(hd.Y).all()

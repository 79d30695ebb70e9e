"""Multi-task baselines: hierarchical majority vote and separate per-task label models."""

from __future__ import annotations

import numpy as np
import pytest

from metal.data.synthetic_hierarchy import make_hierarchical_synthetic
from metal.errors import ConfigError, NotFittedError
from metal.label_model.hierarchical import HierarchicalMajorityVoter, SeparateTaskLabelModels
from metal.label_model.label_model import LabelModel
from metal.tasks import TaskGraph, TaskHierarchy

FIG2 = TaskHierarchy({"type": 2, "person": 3, "org": 3},
                     parents={"person": ("type", 0), "org": ("type", 1)})
_ = -1


def test_hierarchical_vote_counts_implied_votes_top_down() -> None:
    # three sources; tasks (type, person, org); values: Person=0/Org=1, Doctor=0/Lawyer=1,
    # Hospital=0/Office=1, N/A=2
    L = np.array([
        # coarse says Org, two fine sources say Doctor (=> Person): Person wins, then Doctor
        [[1, _, _], [_, 0, _], [_, 0, _]],
        # two coarse say Person, one says Hospital (=> Org): Person, then nobody votes on the
        # person task among Doctor/Lawyer, so "first" picks Doctor
        [[0, _, _], [0, _, _], [_, _, 0]],
        # Org; the org task: Office 2 votes vs Hospital 1
        [[1, _, 1], [_, _, 1], [_, _, 0]],
        # a person-task vote of N/A implies Org (type has two values)
        [[_, 2, _], [_, _, _], [_, _, _]],
    ])
    hmv = HierarchicalMajorityVoter(FIG2).fit(L)
    preds = hmv.predict(L, tie_break="first")
    assert preds.tolist() == [[0, 0, 2], [0, 0, 2], [1, 2, 1], [1, 2, 0]]
    shares = hmv.predict_proba(L)
    assert np.allclose(shares[0][0], [2 / 3, 1 / 3])
    assert np.allclose(shares[2][2], [1 / 3, 2 / 3, 0.0])  # N/A not allowed under Org
    assert np.allclose(shares[1][1], [0.5, 0.5, 0.0])  # no vote: uniform over allowed values
    joint = hmv.predict_proba_joint(L)
    assert joint.sum(axis=1).tolist() == [1.0] * 4


def test_hierarchical_vote_predictions_are_feasible_and_seeded() -> None:
    data = make_hierarchical_synthetic(3000, FIG2, seed=1)
    hmv = HierarchicalMajorityVoter(FIG2, seed=3).fit(data.L)
    a, b = hmv.predict(data.L), hmv.predict(data.L)
    assert np.array_equal(a, b) and FIG2.is_feasible(a).all()
    ab = hmv.predict(data.L, tie_break="abstain")
    tied = (ab == -1).all(axis=1)
    assert tied.any() and FIG2.is_feasible(ab[~tied]).all()
    with pytest.raises(ConfigError, match="tie_break"):
        hmv.predict(data.L, tie_break="coin")


def test_hierarchical_vote_on_a_general_task_graph() -> None:
    g = TaskGraph({"a": 2, "b": 2}, constraint=lambda y: y[0] <= y[1])
    L = np.array([[[1, _], [_, 0]], [[_, 0], [_, 0]]])
    preds = HierarchicalMajorityVoter(g).fit(L).predict(L, tie_break="first")
    # row 0: "a = 1" implies b = 1 and "b = 0" implies a = 0 (a <= b), so both tasks tie
    # 1 vote to 1 and "first" picks 0 twice; row 1: two "b = 0" votes imply a = 0
    assert preds.tolist() == [[0, 0], [0, 0]]
    assert g.is_feasible(preds).all()


def test_separate_models_match_one_label_model_per_task() -> None:
    data = make_hierarchical_synthetic(3000, FIG2, seed=2)
    sep = SeparateTaskLabelModels(FIG2, seed=0, max_iter=200).fit(data.L)
    with pytest.raises(NotFittedError):
        SeparateTaskLabelModels(FIG2).predict_proba(data.L)
    probs = sep.predict_proba(data.L)
    for s, k in enumerate(FIG2.cardinalities):
        cols = np.flatnonzero((data.L[:, :, s] >= 0).any(axis=0))
        assert cols.tolist() == sep.sources_[s].tolist()
        lm = LabelModel(cardinality=k, seed=0, max_iter=200).fit(data.L[:, cols, s])
        assert np.allclose(probs[s], lm.predict_proba(data.L[:, cols, s]))
    preds = sep.predict(data.L)
    scores = sep.score(data.L, data.Y)
    assert scores["joint"]["feasible"] == pytest.approx(FIG2.is_feasible(preds).mean())
    joint = sep.predict_proba_joint(data.L)
    assert joint.shape == (3000, 4) and np.allclose(joint.sum(axis=1), 1.0)

"""The v2 multi-task model: EM over the feasible set, one-task equality, dependencies, I/O."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from metal import LabelModel, MultiTaskLabelModel, TaskGraph, TaskHierarchy
from metal.data import make_synthetic
from metal.data.synthetic_hierarchy import default_sources, make_hierarchical_synthetic
from metal.label_model.hierarchical import HierarchicalMajorityVoter, SeparateTaskLabelModels
from metal.tasks import task_graph_from_json

H = TaskHierarchy({"type": 2, "person": 3, "org": 3},
                  parents={"person": ("type", 0), "org": ("type", 1)})


def test_one_task_equals_label_model_exactly() -> None:
    data = make_synthetic(n=1500, m=6, cardinality=3, seed=2)
    lm = LabelModel(cardinality=3, seed=0).fit(data.L)
    mt = MultiTaskLabelModel(TaskGraph({"y": 3}), seed=0).fit(data.L[:, :, None])
    (marginal,) = mt.predict_proba(data.L[:, :, None])
    assert np.array_equal(marginal, lm.predict_proba(data.L))
    assert np.array_equal(mt.predict(data.L[:, :, None])[:, 0], lm.predict(data.L))


def test_joint_em_beats_separate_and_majority_when_fine_sources_fire_on_their_branch() -> None:
    specs = [replace(s, false_fire=0.0) for s in default_sources(H, 3, n_full=2)]
    data = make_hierarchical_synthetic(8000, H, specs, seed=3)

    def acc(model: object) -> float:
        preds = model.fit(data.L).predict(data.L)  # type: ignore[attr-defined]
        return float((preds == data.Y).all(axis=1).mean())

    joint = acc(MultiTaskLabelModel(H, seed=0))
    others = max(acc(SeparateTaskLabelModels(H, seed=0)), acc(HierarchicalMajorityVoter(H)))
    assert joint >= others + 0.02


def test_em_save_load_round_trip(tmp_path: Path) -> None:
    data = make_hierarchical_synthetic(2000, H, seed=0)
    model = MultiTaskLabelModel(H, seed=0).fit(data.L)
    model.save(tmp_path / "mt.npz")
    back = MultiTaskLabelModel.load(tmp_path / "mt.npz")
    assert np.allclose(back.predict_proba_joint(data.L), model.predict_proba_joint(data.L))


def test_dependencies_group_sources_into_one_symbol() -> None:
    data = make_hierarchical_synthetic(3000, H, seed=1)
    L = data.L.copy()
    L[:, 1] = L[:, 0]  # a duplicated source: fully dependent on source 0
    dep = MultiTaskLabelModel(H, dependencies=nx.Graph([(0, 1)]), seed=0).fit(L)
    assert [list(u) for u in dep.joint_fit_.units.members][:1] == [[0, 1]]
    probs = dep.predict_proba(L)
    assert all(np.allclose(p.sum(axis=1), 1.0) for p in probs)
    with pytest.raises(Exception, match="not a source"):
        MultiTaskLabelModel(H, dependencies=nx.Graph([(0, 99)])).fit(L)


def test_task_graph_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    H.to_json(path)
    assert task_graph_from_json(path) == H
    short = task_graph_from_json('{"tasks": {"coarse": 2, "fine": 4}, '
                                 '"parents": {"fine": ["coarse", [0, 0, 1, 1]]}}')
    assert short.n_feasible == 4


def test_single_valued_sources_keep_the_moment_estimator_with_a_uniform_prior() -> None:
    data = make_hierarchical_synthetic(3000, H, seed=0)
    # keep only each source's most frequent vote vector: every source becomes single-valued
    L = data.L.copy()
    for i in range(L.shape[1]):
        voted = (L[:, i, :] >= 0).any(axis=1)
        vectors, counts = np.unique(L[voted, i, :], axis=0, return_counts=True)
        top = vectors[counts.argmax()]
        keep = (L[:, i, :] == top).all(axis=1)
        L[~keep, i, :] = -1
    model = MultiTaskLabelModel(H, seed=0).fit(L)
    assert model.em_choice_ == {"chosen": "moments",
                                "reason": "every source emits a single vote vector"}
    assert np.allclose(model.class_balance_, 1.0 / H.n_feasible)
    moments = MultiTaskLabelModel(H, estimator="moments", seed=0).fit(L)
    assert np.array_equal(model.predict_proba_joint(L), moments.predict_proba_joint(L))
    # the same data with the sources' other votes keeps EM
    assert MultiTaskLabelModel(H, seed=0).fit(data.L).em_choice_["chosen"] != "moments"

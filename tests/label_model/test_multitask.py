"""MultiTaskLabelModel: single-task equivalence, input formats, feasibility, recovery, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metal.data.synthetic import make_synthetic
from metal.data.synthetic_hierarchy import (
    SourceSpec,
    make_hierarchical_synthetic,
)
from metal.errors import ConfigError, LabelMatrixError, NotFittedError, TaskGraphError
from metal.label_model.hierarchical import HierarchicalMajorityVoter, SeparateTaskLabelModels
from metal.label_model.label_model import LabelModel, MetalWarning
from metal.label_model.multitask import (
    MultiTaskCoding,
    MultiTaskLabelModel,
    agreement_projection,
    complete_votes,
    vote_agreement,
)
from metal.matrix import to_sparse_labels
from metal.tasks import TaskGraph, TaskHierarchy

FIG2 = TaskHierarchy({"type": 2, "person": 3, "org": 3},
                     parents={"person": ("type", 0), "org": ("type", 1)})


@pytest.fixture(scope="module")
def fig2_data():  # type: ignore[no-untyped-def]
    return make_hierarchical_synthetic(10_000, FIG2, seed=0)


# The generator's model family: free tables, abstentions as evidence, unknown prior. The
# defaults (tied, uniform prior) are chosen on real data; see test_defaults_* below.
WELL_SPECIFIED = {"tie": "none", "model_abstains": True, "l2": 0.0}
SEPARATE_WELL_SPECIFIED = {"parameterization": "full", "model_abstains": True, "l2": 0.0}


def fit_well_specified(L):  # type: ignore[no-untyped-def]
    joint = MultiTaskLabelModel(task_graph=FIG2, seed=0, **WELL_SPECIFIED)
    separate = SeparateTaskLabelModels(FIG2, seed=0, **SEPARATE_WELL_SPECIFIED)
    return (joint.fit(L, class_balance="estimate"),
            separate.fit(L, class_balance=["estimate"] * FIG2.n_tasks))


@pytest.fixture(scope="module")
def fig2_model(fig2_data):  # type: ignore[no-untyped-def]
    return fit_well_specified(fig2_data.L)[0]


# ---------------------------------------------------------------------------- single task
@pytest.mark.parametrize("method", ["moments", "inverse"])
def test_single_task_agrees_with_label_model(method: str) -> None:
    data = make_synthetic(n=2000, m=8, cardinality=3, seed=1)
    lm = LabelModel(cardinality=3, method=method, max_iter=200, seed=0, parameterization="full",
                    model_abstains=True, l2=0.0, mode="moments").fit(data.L,
                                                                      class_balance="estimate")
    g = TaskGraph({"y": 3})
    full = {"tie": "none", "model_abstains": True, "l2": 0.0}
    mt = MultiTaskLabelModel(task_graph=g, method=method, max_iter=200, seed=0,
                             estimator="moments", **full)
    mt.fit(data.L[:, :, None], class_balance="estimate")
    expected = lm.predict_proba(data.L)
    (marginal,) = mt.predict_proba(data.L[:, :, None])
    assert np.allclose(marginal, expected, atol=1e-10)
    assert np.allclose(mt.predict_proba_joint(data.L[:, :, None]), expected, atol=1e-10)
    assert np.allclose(mt.class_balance_, lm.class_balance_)
    assert np.allclose(np.stack(mt.get_conditional_probs()), lm.get_conditional_probs())
    # the same through the dict input, dense and sparse
    for Ld in (data.L, to_sparse_labels(data.L)):
        m2 = MultiTaskLabelModel(task_graph=g, method=method, max_iter=200, seed=0,
                                 estimator="moments", **full)
        m2.fit({"y": Ld}, class_balance="estimate")
        assert np.allclose(m2.predict_proba({"y": Ld})[0], expected, atol=1e-10)


def test_single_task_defaults_agree_with_label_model_defaults() -> None:
    data = make_synthetic(n=2000, m=8, cardinality=3, seed=1)
    # with one task the multi-task model is LabelModel (same defaults)
    lm = LabelModel(cardinality=3, max_iter=200, seed=0).fit(data.L)
    mt = MultiTaskLabelModel(TaskGraph({"y": 3}), max_iter=200, seed=0)
    mt.fit(data.L[:, :, None])
    assert np.allclose(mt.predict_proba(data.L[:, :, None])[0], lm.predict_proba(data.L),
                       atol=1e-10)


# ---------------------------------------------------------------------------- coding
def test_cross_task_agreement_of_a_doctor_vote() -> None:
    votes = np.array([[-1, 0, -1],   # "Doctor" only
                      [1, -1, -1],   # "Org" only
                      [0, -1, 0]])   # inconsistent: Person and Hospital
    completed = complete_votes(votes, FIG2.feasible)
    assert completed.tolist() == [[0, 0, 2], [1, 2, -1], [0, -1, 0]]
    agree = vote_agreement(completed, FIG2.feasible)
    # feasible: (P, Doc, NA), (P, Law, NA), (O, NA, Hosp), (O, NA, Off)
    assert np.allclose(agree, [[1, 2 / 3, 0, 0], [0, 0, 1, 1], [0.5, 0.5, 0.5, 0]])
    assert agreement_projection(agree).tolist() == [[2, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 0]]


def test_mixed_radix_codes_round_trip() -> None:
    coverage = np.array([[True, False, True], [False, True, False], [False, False, False]])
    coding = MultiTaskCoding([2, 3, 3], coverage)
    assert coding.n_values.tolist() == [3 * 4 - 1, 3, 1]
    votes = np.array([[1, -1, 2], [-1, -1, 0], [-1, 2, -1], [0, 1, -1]])
    ind, ok = coding.encode(np.array([0, 0, 1, 0]), votes)
    assert ok.tolist() == [True, True, True, False]  # last: source 0 never covers task 1
    src, back = coding.decode(ind[ok])
    assert src.tolist() == [0, 0, 1] and back.tolist() == votes[:3].tolist()


# ---------------------------------------------------------------------------- outputs
def test_outputs_are_feasible_and_consistent(fig2_data, fig2_model) -> None:  # type: ignore[no-untyped-def]
    L = fig2_data.L
    joint = fig2_model.predict_proba_joint(L)
    assert joint.shape == (L.shape[0], FIG2.n_feasible)
    assert np.allclose(joint.sum(axis=1), 1.0)
    marg = fig2_model.predict_proba(L)
    assert [p.shape for p in marg] == [(L.shape[0], 2), (L.shape[0], 3), (L.shape[0], 3)]
    for s, p in enumerate(marg):
        assert np.allclose(p, joint @ FIG2.marginal_indicator(s))
    preds = fig2_model.predict(L)
    assert preds.shape == (L.shape[0], 3) and FIG2.is_feasible(preds).all()
    first = fig2_model.predict(L, tie_break="first")
    assert np.array_equal(first, FIG2.feasible[np.argmax(joint >= joint.max(1, keepdims=True)
                                                         - 1e-5, axis=1)])
    scores = fig2_model.score(L, fig2_data.Y, metrics=("accuracy", "macro_f1"))
    assert set(scores) == {"type", "person", "org", "joint"}
    assert scores["joint"]["feasible"] == 1.0


def test_joint_model_beats_separate_models_and_hierarchical_vote(fig2_data, fig2_model) -> None:  # type: ignore[no-untyped-def]
    """Sources at different granularity: coarse ones noisy, fine ones good but sparse.

    Checked on seeds 0-6 (see docs/multitask.md); here seed 0 with a 0.02 margin per task.
    """
    L, Y = fig2_data.L, fig2_data.Y
    joint = fig2_model.score(L, Y)
    separate = fit_well_specified(L)[1].score(L, Y)
    hmv = HierarchicalMajorityVoter(FIG2, seed=0).fit(L).score(L, Y)
    for task in FIG2.task_names:
        assert joint[task]["accuracy"] >= separate[task]["accuracy"] + 0.01, task
        assert joint[task]["accuracy"] >= hmv[task]["accuracy"] + 0.01, task
    assert joint["joint"]["accuracy"] > max(separate["joint"]["accuracy"],
                                            hmv["joint"]["accuracy"]) + 0.02


def test_defaults_beat_baselines_defaults(fig2_data) -> None:  # type: ignore[no-untyped-def]
    L, Y = fig2_data.L, fig2_data.Y
    joint = MultiTaskLabelModel(task_graph=FIG2, seed=0).fit(L).score(L, Y)
    separate = SeparateTaskLabelModels(FIG2, seed=0).fit(L).score(L, Y)
    hmv = HierarchicalMajorityVoter(FIG2, seed=0).fit(L).score(L, Y)
    for task in (*FIG2.task_names, "joint"):
        assert joint[task]["accuracy"] > separate[task]["accuracy"], task
        assert joint[task]["accuracy"] > hmv[task]["accuracy"], task


def test_recovers_class_balance_and_tables(fig2_data, fig2_model) -> None:  # type: ignore[no-untyped-def]
    """Coarse recovery check. Measured (seed 0): median table error 0.025 at n=10k, 0.006 at
    n=200k; the prior's L1 error stays near 0.1 even at n=200k (second moments leave flat
    directions between the org-level vectors), hence the loose prior bound."""
    learned = fig2_model.get_conditional_probs()
    errs = [np.abs(a - b).max() for a, b in zip(learned, fig2_data.conditional_probs, strict=True)]
    assert np.median(errs) < 0.05
    assert np.abs(fig2_model.class_balance_ - fig2_data.class_balance).sum() < 0.25
    assert np.array_equal(fig2_model.coverage_, fig2_data.coverage)
    codes = fig2_model.source_codes(len(fig2_data.sources) - 1)  # the whole-vector source
    assert codes.shape == (3 * 4 * 4 - 1, 3)


@pytest.mark.parametrize("tie", ["coverage", "agreement", "linear", "exact"])
def test_tied_parameterisations(fig2_data, tie: str) -> None:  # type: ignore[no-untyped-def]
    # ``tie`` is a setting of the moment estimator (EM always starts from the linear tie)
    model = MultiTaskLabelModel(FIG2, tie=tie, estimator="moments", seed=0).fit(
        fig2_data.L[:3000])
    assert FIG2.is_feasible(model.predict(fig2_data.L[:3000])).all()
    # the bar is the trivial baseline on the same rows (hierarchical majority vote, 0.633 at
    # seed 0), not a fixed number it could pass while doing worse (the tied models: 0.66-0.67)
    L, Y = fig2_data.L[:3000], fig2_data.Y[:3000]
    hmv = HierarchicalMajorityVoter(FIG2, seed=0).fit(L).score(L, Y)["joint"]["accuracy"]
    assert model.score(L, Y)["joint"]["accuracy"] > hmv + 0.02
    if tie in ("coverage", "agreement"):  # projections: implemented for method="moments"
        with pytest.raises(ConfigError, match="method='moments'"):
            MultiTaskLabelModel(FIG2, tie=tie, method="inverse").fit(fig2_data.L)


def test_dict_input_equals_array_input() -> None:
    specs = [SourceSpec(("type",), 0.5, 0.7), SourceSpec(("type",), 0.4, 0.65),
             SourceSpec(("type",), 0.5, 0.6), SourceSpec(("person",), 0.3, 0.8),
             SourceSpec(("person",), 0.3, 0.85, kind="unipolar", value=(1,)),
             SourceSpec(("org",), 0.3, 0.8), SourceSpec(("org",), 0.4, 0.7),
             SourceSpec(("person",), 0.3, 0.75)]
    data = make_hierarchical_synthetic(4000, FIG2, specs, seed=2)
    L = data.L
    order = [0, 1, 2, 3, 4, 7, 5, 6]  # dict input lists sources task by task
    as_dict = {"type": L[:, [0, 1, 2], 0], "person": to_sparse_labels(L[:, [3, 4, 7], 1]),
               "org": L[:, [5, 6], 2]}
    a = MultiTaskLabelModel(FIG2, seed=0).fit(L[:, order])
    d = MultiTaskLabelModel(FIG2, seed=0).fit(as_dict)
    assert np.allclose(a.predict_proba_joint(L[:, order]), d.predict_proba_joint(as_dict))
    with pytest.raises(LabelMatrixError, match="sources per task"):
        d.predict_proba({"type": L[:, [0, 1], 0], "person": L[:, [3, 4, 7], 1],
                         "org": L[:, [5, 6, 2], 2]})


def test_class_balance_and_y_dev(fig2_data) -> None:  # type: ignore[no-untyped-def]
    L = fig2_data.L[:3000]
    given = MultiTaskLabelModel(FIG2, seed=0).fit(L, class_balance=fig2_data.class_balance)
    assert np.allclose(given.class_balance_, fig2_data.class_balance)
    assert given.fit_info_.class_balance_source == "given"
    dev = MultiTaskLabelModel(FIG2, seed=0).fit(L, Y_dev=fig2_data.Y[:200])
    counts = np.bincount(FIG2.to_joint(fig2_data.Y[:200]), minlength=4) + 1.0
    assert np.allclose(dev.class_balance_, counts / counts.sum())
    with pytest.raises(ConfigError, match=r"expected \(4,\)"):
        MultiTaskLabelModel(FIG2).fit(L, class_balance=[0.5, 0.5])
    with pytest.raises(ConfigError, match="not both"):
        MultiTaskLabelModel(FIG2).fit(L, class_balance=fig2_data.class_balance,
                                      Y_dev=fig2_data.Y[:10])
    with pytest.raises(TaskGraphError, match="'org' = 0"):
        MultiTaskLabelModel(FIG2).fit(L, Y_dev=[[0, 0, 0]])


def test_save_load_round_trip(tmp_path, fig2_data, fig2_model) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mt.npz"
    fig2_model.save(path)
    loaded = MultiTaskLabelModel.load(path)
    assert loaded.task_graph == FIG2 and isinstance(loaded.task_graph, TaskHierarchy)
    L = fig2_data.L[:500]
    assert np.allclose(loaded.predict_proba_joint(L), fig2_model.predict_proba_joint(L))
    with open(path, "rb") as fh:
        assert b"pickle" not in fh.read(200)


# ---------------------------------------------------------------------------- errors
def test_input_errors_name_task_and_value(fig2_data, fig2_model) -> None:  # type: ignore[no-untyped-def]
    L = fig2_data.L.copy()
    with pytest.raises(NotFittedError):
        MultiTaskLabelModel(FIG2).predict_proba(L)
    bad = L.copy()
    bad[3, 2, 1] = 3
    with pytest.raises(LabelMatrixError, match="value 3 for task 'person'.*0..2"):
        MultiTaskLabelModel(FIG2).fit(bad)
    with pytest.raises(LabelMatrixError, match=r"expected \(n, m, 3\)"):
        MultiTaskLabelModel(FIG2).fit(L[:, :, :2])
    with pytest.raises(LabelMatrixError, match="no vote"):
        MultiTaskLabelModel(FIG2).fit(np.full((10, 2, 3), -1))
    with pytest.raises(LabelMatrixError, match="fitted on 17"):
        fig2_model.predict_proba(L[:, :5])
    with pytest.raises(LabelMatrixError, match="unknown tasks"):
        MultiTaskLabelModel(FIG2).fit({"colour": L[:, :2, 0]})
    with pytest.raises(ConfigError, match="TaskGraph"):
        MultiTaskLabelModel({"type": 2}).fit(L)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tie="):
        MultiTaskLabelModel(FIG2, tie="sometimes").fit(L)


def test_unseen_votes_warn_and_count_as_abstain(fig2_data, fig2_model) -> None:  # type: ignore[no-untyped-def]
    L = fig2_data.L[:50].copy()
    base = fig2_model.predict_proba_joint(L)
    L2 = L.copy()
    L2[:, 0, :] = -1
    L2[:, 0, 1] = 0  # a coarse source now votes on a task it never covered
    with pytest.warns(MetalWarning, match="treated as abstentions"):
        out = fig2_model.predict_proba_joint(L2)
    L3 = L.copy()
    L3[:, 0, :] = -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.allclose(out, fig2_model.predict_proba_joint(L3))
    assert base.shape == out.shape


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 7))
def test_joint_model_wins_on_other_seeds(seed: int) -> None:
    """The default-test comparison on seeds 1-6, with issue 10's margin: joint >= the others
    + 0.01 on every task. (It was 0.02 until the BIC rule gained the one-coin 'exact' tables:
    on seed 3 they are chosen and the org task leads the separate model by 0.016.)"""
    data = make_hierarchical_synthetic(10_000, FIG2, seed=seed)
    L, Y = data.L, data.Y
    joint_model, separate_model = fit_well_specified(L)
    joint, separate = joint_model.score(L, Y), separate_model.score(L, Y)
    hmv = HierarchicalMajorityVoter(FIG2, seed=0).fit(L).score(L, Y)
    for task in FIG2.task_names:
        assert joint[task]["accuracy"] >= separate[task]["accuracy"] + 0.01, task
        assert joint[task]["accuracy"] >= hmv[task]["accuracy"] + 0.01, task

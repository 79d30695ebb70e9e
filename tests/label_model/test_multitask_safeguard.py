"""The multi-task EM default's label-free safeguards: indistinguishable states share their
tables, and EM that reaches different labels from two starts is replaced by the moment fit."""

from __future__ import annotations

import warnings

import numpy as np

from metal import HierarchicalMajorityVoter, MultiTaskLabelModel, TaskHierarchy
from metal.label_model.label_model import MetalWarning
from metal.label_model.multitask.coding import MultiTaskCoding
from metal.label_model.multitask.likelihood import (
    Units,
    fit_joint_em,
    indistinguishable_states,
    joint_log_posterior,
    source_codes,
)
from metal.label_model.multitask.votes import check_multitask_votes


def typing_like(seed: int, n: int = 3000, n_coarse: int = 3,
                n_fine: int = 6) -> tuple[TaskHierarchy, np.ndarray, np.ndarray]:
    """Entity-typing shape: fine value 0 of each coarse type is "no finer type" (75% of the
    rows); coarse sources are frequent, only two fine types per coarse type have a (rare,
    unipolar) source each, so one source alone tells a fine type from its siblings."""
    rng = np.random.default_rng(seed)
    h = TaskHierarchy({"coarse": n_coarse, "fine": n_coarse * n_fine},
                      parents={"fine": ("coarse", [c for c in range(n_coarse)
                                                   for _ in range(n_fine)])})
    c = rng.integers(0, n_coarse, n)
    f = c * n_fine + np.where(rng.random(n) < 0.75, 0, rng.integers(1, n_fine, n))
    cols: list[tuple[int, np.ndarray]] = []
    for acc, cov in [(0.85, 0.5), (0.75, 0.4)]:  # multi-valued coarse sources
        v = np.where(rng.random(n) < acc, c, rng.integers(0, n_coarse, n))
        cols.append((0, np.where(rng.random(n) < cov, v, -1)))
    for k in range(n_coarse):  # a unipolar keyword source per coarse type
        fire = ((c == k) & (rng.random(n) < 0.6)) | ((c != k) & (rng.random(n) < 0.03))
        cols.append((0, np.where(fire, k, -1)))
    for k in range(n_coarse):
        for j in (1, 2):
            t = k * n_fine + j
            fire = ((f == t) & (rng.random(n) < 0.5)) | ((f != t) & (rng.random(n) < 0.002))
            cols.append((1, np.where(fire, t, -1)))
    L = np.full((n, len(cols), 2), -1, dtype=np.int64)
    for i, (s, v) in enumerate(cols):
        L[:, i, s] = v
    return h, L, np.stack([c, f], axis=1)


def leaf_accuracy(preds: np.ndarray, Y: np.ndarray) -> float:
    return float((preds == Y).all(axis=1).mean())


def test_indistinguishable_states_are_the_equal_agreement_columns() -> None:
    agreement = np.array([[1.0, 1.0, 0.5, 0.0, 1.0],
                          [0.0, 0.0, 1.0, 0.0, 0.0]])
    classes, n = indistinguishable_states(agreement)
    assert n == 3
    assert classes.tolist() == [0, 0, 1, 2, 0]
    assert indistinguishable_states(np.zeros((0, 4)))[1] == 1


def test_states_no_source_names_share_tables_and_prior() -> None:
    h, L, _ = typing_like(0)
    model = MultiTaskLabelModel(h, seed=0)
    # fine values 3, 4, 5 of coarse type 0 have no source: their columns are the same class
    votes = check_multitask_votes(L, h)
    coding = MultiTaskCoding(h.cardinalities, votes.coverage())
    codes, _ = source_codes(votes, coding, 10_000)
    units = Units.build([[i] for i in range(L.shape[1])], coding.n_values)
    start = model._start_posterior(votes, coding, "majority")
    fit = fit_joint_em(units.keys(codes), units, coding, h.feasible, start, log_prior=None,
                       pseudo_count=1.0, tilt=2.0, max_iter=50, tol=1e-8, tables="free")
    same = [h.to_joint(np.array([[0, j]]))[0] for j in (3, 4, 5)]
    assert np.allclose(fit.log_tables[:, same], fit.log_tables[:, same[:1]])
    assert np.allclose(fit.log_prior[same], fit.log_prior[same[0]])
    assert fit.n_classes < h.n_feasible


def test_em_that_depends_on_its_start_falls_back_to_the_moment_fit() -> None:
    h, L, Y = typing_like(1)
    mv_preds = HierarchicalMajorityVoter(h, seed=0).fit(L).predict(L, tie_break="first")
    mv = leaf_accuracy(np.asarray(mv_preds), Y)
    # plain EM from the majority-vote start collapses here: rare fine sources let a fine
    # type absorb its parent's "no finer type" mass (the entity-typing failure)
    votes = check_multitask_votes(L, h)
    coding = MultiTaskCoding(h.cardinalities, votes.coverage())
    codes, _ = source_codes(votes, coding, 10_000)
    units = Units.build([[i] for i in range(L.shape[1])], coding.n_values)
    keys = units.keys(codes)
    probe = MultiTaskLabelModel(h, seed=0)
    start = probe._start_posterior(votes, coding, "majority")
    raw = fit_joint_em(keys, units, coding, h.feasible, start, log_prior=None,
                       pseudo_count=1.0, tilt=2.0, max_iter=300, tol=1e-8, tables="tied")
    raw_acc = leaf_accuracy(h.feasible[joint_log_posterior(raw, keys).argmax(axis=1)], Y)
    assert raw_acc < mv - 0.3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetalWarning)
        model = MultiTaskLabelModel(h, seed=0).fit(L)
    assert any("different labels" in str(w.message) for w in caught)
    assert model.em_choice_["chosen"] == "moments"
    assert max(model.em_choice_["start_agreement"].values()) < 0.95
    preds = model.predict(L, tie_break="first")
    assert isinstance(preds, np.ndarray)
    assert leaf_accuracy(preds, Y) >= mv - 0.01


def test_identified_hierarchy_keeps_em_with_agreeing_starts() -> None:
    from metal.data.synthetic_hierarchy import make_hierarchical_synthetic

    H = TaskHierarchy({"type": 2, "person": 3, "org": 3},
                      parents={"person": ("type", 0), "org": ("type", 1)})
    data = make_hierarchical_synthetic(4000, H, seed=0)
    model = MultiTaskLabelModel(H, seed=0).fit(data.L)
    chosen = model.em_choice_["chosen"]
    assert chosen in ("free", "tied", "exact", "projected")
    assert model.em_choice_["start_agreement"][chosen] >= 0.95


def test_exact_tables_have_two_levels_per_symbol() -> None:
    from metal.data.synthetic_hierarchy import make_hierarchical_synthetic
    from metal.label_model.multitask.likelihood import n_parameters, table_levels

    agree = np.array([[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.0, 1.0]])
    np.testing.assert_array_equal(table_levels(agree, "exact"),
                                  [[1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
    # "tied" keeps one level per degree of agreement
    assert table_levels(agree, "tied")[0].tolist() == [2, 1, 0, 0]
    H = TaskHierarchy({"type": 2, "person": 3, "org": 3},
                      parents={"person": ("type", 0), "org": ("type", 1)})
    data = make_hierarchical_synthetic(3000, H, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetalWarning)
        model = MultiTaskLabelModel(H, seed=0, tables="exact").fit(data.L)
    fit = model.joint_fit_
    for row in np.round(np.exp(fit.log_tables), 12):  # one value under named states, one else
        assert np.unique(row).size <= 2
    assert n_parameters(fit, "exact") <= 2 * fit.symbols.vocab.size + H.n_feasible - 1
    assert n_parameters(fit, "exact") < n_parameters(fit, "tied")

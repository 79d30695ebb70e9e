"""Core end-model behaviour: shapes, masking, loss, early stopping, resume, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from metal import TaskHierarchy
from metal.end_model import (
    DenseInput,
    EndModel,
    MultiTaskEndModel,
    SparseInput,
    Trainer,
    covered_rows,
    soft_cross_entropy,
    take_rows,
)
from metal.errors import ConfigError, LabelMatrixError, NotFittedError, SaveFormatError

FAST = {"n_epochs": 8, "batch_size": 32, "lr": 0.01, "patience": None}


def two_task_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Task a: sign of x0 (2 classes); task b: which of x1, x2, x3 is largest (3 classes)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64), np.argmax(X[:, 1:4], axis=1)


def noisy_probs(y: np.ndarray, k: int, flip: float, seed: int) -> np.ndarray:
    """Soft labels: 0.7 on a label that is wrong with probability ``flip``."""
    rng = np.random.default_rng(seed)
    noisy = np.where(rng.random(y.size) < flip, rng.integers(0, k, y.size), y)
    P = np.full((y.size, k), 0.3 / (k - 1))
    P[np.arange(y.size), noisy] = 0.7
    return P


# ---------------------------------------------------------------------------- loss
def test_soft_loss_equals_cross_entropy_on_one_hot() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, generator=g)
    y = torch.randint(0, 4, (50,), generator=g)
    onehot = F.one_hot(y, 4).float()
    assert torch.allclose(soft_cross_entropy(logits, onehot), F.cross_entropy(logits, y))
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    assert torch.allclose(soft_cross_entropy(logits, onehot, w),
                          F.cross_entropy(logits, y, weight=w))
    # hard labels are accepted directly, -1 ignored like ignore_index
    y_missing = y.clone()
    y_missing[:10] = -1
    assert torch.allclose(soft_cross_entropy(logits, y_missing, w),
                          F.cross_entropy(logits, y_missing, weight=w, ignore_index=-1))


def test_soft_loss_is_expectation_over_targets_and_masks_rows() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, generator=g)
    p = torch.softmax(torch.randn(6, 3, generator=g), -1)
    expected = -(p * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(logits, p), expected)
    mask = torch.tensor([1.0, 0, 1, 0, 1, 1])
    keep = mask.bool()
    assert torch.allclose(soft_cross_entropy(logits, p, sample_weight=mask),
                          soft_cross_entropy(logits[keep], p[keep]))
    per_row = soft_cross_entropy(logits, p, reduction="none")
    assert per_row.shape == (6,)


def test_covered_rows_dense_sparse_multitask() -> None:
    L = np.array([[-1, -1], [0, -1], [-1, 1]])
    assert covered_rows(L)[0].tolist() == [False, True, True]
    S = sp.csr_matrix(np.array([[0, 0], [1, 0], [0, 2]]))  # stores votes only (value = class+1
    # is not the convention; here any stored entry is a vote)
    assert covered_rows(S)[0].tolist() == [False, True, True]
    L3 = np.full((3, 2, 2), -1)
    L3[0, 0, 1] = 1
    L3[2, 1, 0] = 0
    cov = covered_rows(L3, 2)
    assert cov[0].tolist() == [False, False, True] and cov[1].tolist() == [True, False, False]


# ---------------------------------------------------------------------------- shapes, masking
def test_shapes_single_and_multitask() -> None:
    X, ya, yb = two_task_data(120, 0)
    single = EndModel(2, hidden=(16,), **FAST).fit(X, ya)
    assert single.predict_proba(X).shape == (120, 2)
    assert single.predict(X).shape == (120,)
    assert set(single.score(X, ya, metrics=["accuracy", "f1"])) == {"accuracy", "f1"}
    multi = MultiTaskEndModel({"a": 2, "b": 3}, hidden=(16, 8), head_depth={"a": 1},
                              **FAST).fit(X, [ya, noisy_probs(yb, 3, 0.0, 0)])
    pa, pb = multi.predict_proba(X)
    assert pa.shape == (120, 2) and pb.shape == (120, 3)
    assert np.allclose(pa.sum(1), 1) and np.allclose(pb.sum(1), 1)
    assert multi.predict(X).shape == (120, 2)
    assert set(multi.score(X, {"a": ya, "b": yb})) == {"a", "b"}
    assert multi.network_.head_depth == {"a": 1, "b": 2}
    assert multi.network_.head("a").in_features == 16


def test_uncovered_rows_are_masked_by_default() -> None:
    """Rows without a vote carry adversarial labels: masked they cannot hurt."""
    X, y, _ = two_task_data(600, 1)
    L = np.full((600, 3), -1)
    covered = np.arange(600) < 300
    L[covered, 0] = y[covered]
    probs = np.zeros((600, 2))
    probs[np.arange(600), y] = 1.0
    probs[~covered] = probs[~covered][:, ::-1]  # uncovered rows: the wrong class
    Xt, yt, _ = two_task_data(400, 2)
    masked = EndModel(2, hidden=(16,), **FAST).fit(X, probs, L=L)
    unmasked = EndModel(2, hidden=(16,), mask_uncovered=False, **FAST).fit(X, probs, L=L)
    assert masked.score(Xt, yt)["accuracy"] > 0.9
    assert unmasked.score(Xt, yt)["accuracy"] < masked.score(Xt, yt)["accuracy"] - 0.2


def test_nan_and_minus_one_rows_are_masked() -> None:
    X, y, _ = two_task_data(200, 3)
    probs = np.eye(2)[y]
    probs_nan = probs.copy()
    probs_nan[100:] = np.nan
    y_hard = y.copy()
    y_hard[100:] = -1
    raw = DenseInput(6, standardize=False)  # standardising would see the masked rows' X
    a = EndModel(2, raw, hidden=(8,), **FAST).fit(X, probs_nan)
    b = EndModel(2, raw, hidden=(8,), **FAST).fit(X[:100], probs[:100])
    c = EndModel(2, raw, hidden=(8,), **FAST).fit(X, y_hard)
    # same rows, same seed, same batches -> same model
    assert np.allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)
    assert np.allclose(a.predict_proba(X), c.predict_proba(X), atol=1e-6)


def test_sparse_input_matches_dense_computation() -> None:
    rng = np.random.default_rng(0)
    D = rng.random((5, 30)) * (rng.random((5, 30)) < 0.2)
    S = sp.csr_matrix(D)
    module = SparseInput(30, 7, activation=None)
    with torch.no_grad():
        from_sparse = module(take_rows(S.astype(np.float32), np.arange(5)))
        from_dense = module(torch.tensor(D, dtype=torch.float32))
    assert torch.allclose(from_sparse, from_dense, atol=1e-5)


def test_sparse_tfidf_like_input_trains() -> None:
    rng = np.random.default_rng(0)
    n, V = 400, 200
    y = rng.integers(0, 2, n)
    counts = rng.random((n, V)) < 0.03
    counts[np.arange(n), y * 5 + rng.integers(0, 5, n)] = True  # one class-revealing word
    X = sp.csr_matrix(counts.astype(np.float32))
    model = EndModel(2, hidden=(), **FAST).fit(X[:300], y[:300])
    assert isinstance(model.network_.input_module, SparseInput)
    assert model.score(X[300:], y[300:])["accuracy"] > 0.9


# ---------------------------------------------------------------------------- learning
def test_two_head_model_learns_two_task_problem() -> None:
    X, ya, yb = two_task_data(1500, 4)
    Xt, yta, ytb = two_task_data(500, 5)
    model = MultiTaskEndModel({"a": 2, "b": 3}, hidden=(32,), n_epochs=15, lr=0.01,
                              patience=None).fit(
        X, {"a": noisy_probs(ya, 2, 0.2, 0), "b": noisy_probs(yb, 3, 0.2, 1)})
    scores = model.score(Xt, {"a": yta, "b": ytb})
    assert scores["a"]["accuracy"] > 0.9 and scores["b"]["accuracy"] > 0.85


def test_single_task_and_multitask_agree_on_one_task() -> None:
    X, y, _ = two_task_data(200, 6)
    probs = noisy_probs(y, 2, 0.2, 2)
    one = EndModel(2, hidden=(16,), **FAST).fit(X, probs)
    multi = MultiTaskEndModel({"y": 2}, hidden=(16,), **FAST).fit(X, [probs])
    assert np.array_equal(one.predict_proba(X), multi.predict_proba(X)[0])
    assert np.array_equal(one.predict(X), multi.predict(X)[:, 0])


def test_determinism_per_seed_and_global_rng_untouched() -> None:
    X, y, _ = two_task_data(200, 7)
    torch.manual_seed(123)
    reference = torch.rand(3)
    torch.manual_seed(123)
    a = EndModel(2, hidden=(16,), dropout=0.3, seed=5, **FAST).fit(X, y)
    assert torch.equal(torch.rand(3), reference)  # fit did not consume the global RNG
    b = EndModel(2, hidden=(16,), dropout=0.3, seed=5, **FAST).fit(X, y)
    c = EndModel(2, hidden=(16,), dropout=0.3, seed=6, **FAST).fit(X, y)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.allclose(a.predict_proba(X), c.predict_proba(X))
    assert [h["train_loss"] for h in a.history_] == [h["train_loss"] for h in b.history_]


def test_joint_decoding_over_feasible_set() -> None:
    h = TaskHierarchy({"type": 2, "person": 3}, parents={"person": ("type", 0)})
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    ytype = (X[:, 0] > 0).astype(np.int64)
    yperson = np.where(ytype == 0, (X[:, 1] > 0).astype(np.int64), 2)
    model = MultiTaskEndModel(h, hidden=(16,), **FAST).fit(X, [ytype, yperson])
    preds = model.predict(X)
    assert h.is_feasible(preds).all()
    joint = model.predict_proba_joint(X)
    assert joint.shape == (300, h.n_feasible) and np.allclose(joint.sum(1), 1)
    assert model.score(X, np.stack([ytype, yperson], 1))["type"]["accuracy"] > 0.85


def _hierarchy_data(n: int) -> tuple[TaskHierarchy, np.ndarray, np.ndarray, np.ndarray]:
    h = TaskHierarchy({"type": 2, "person": 3}, parents={"person": ("type", 0)})
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    ytype = (X[:, 0] > 0).astype(np.int64)
    yperson = np.where(ytype == 0, (X[:, 1] > 0).astype(np.int64), 2)
    return h, X, ytype, yperson


def test_joint_training_predicts_the_marginals_of_the_decoded_distribution() -> None:
    h, X, ytype, yperson = _hierarchy_data(300)
    joint_model = MultiTaskEndModel(h, hidden=(16,), **FAST).fit(X, [ytype, yperson])
    joint = joint_model.predict_proba_joint(X)
    F = h.feasible
    for s, p in enumerate(joint_model.predict_proba(X)):
        marginal = np.stack([joint[:, F[:, s] == c].sum(1) for c in range(p.shape[1])], 1)
        assert np.allclose(p, marginal, atol=1e-5)
    # apart, each head's softmax is its own: not the marginals of the product
    apart = MultiTaskEndModel(h, hidden=(16,), joint_training=False, **FAST).fit(
        X, [ytype, yperson])
    joint = apart.predict_proba_joint(X)
    p_type = apart.predict_proba(X)[0]
    assert not np.allclose(p_type, np.stack([joint[:, F[:, 0] == c].sum(1) for c in (0, 1)], 1),
                           atol=1e-3)


def test_joint_training_carries_a_fine_label_to_its_coarse_class() -> None:
    # only the fine task is labelled: through the joint, its loss also trains the coarse
    # marginal; heads trained apart leave the coarse head untrained (its accuracy is chance,
    # whatever the shared trunk happens to line up with)
    h, X, ytype, yperson = _hierarchy_data(400)
    no_type = np.full_like(ytype, -1)
    joint = MultiTaskEndModel(h, hidden=(16,), **FAST).fit(X, [no_type, yperson])
    apart = MultiTaskEndModel(h, hidden=(16,), joint_training=False, **FAST).fit(
        X, [no_type, yperson])
    acc_joint = np.mean(joint.predict_proba(X)[0].argmax(1) == ytype)
    acc_apart = np.mean(apart.predict_proba(X)[0].argmax(1) == ytype)
    assert acc_joint > 0.9 and acc_joint > acc_apart


# ---------------------------------------------------------------------------- trainer
def _snapshots() -> tuple[list[dict[str, torch.Tensor]], object]:
    states: list[dict[str, torch.Tensor]] = []

    def record(epoch: int, rec: dict, net: torch.nn.Module) -> None:
        states.append({k: v.clone() for k, v in net.state_dict().items()})

    return states, record


def test_early_stopping_restores_best_epoch() -> None:
    X, y, _ = two_task_data(300, 8)
    Xv, yv, _ = two_task_data(100, 9)
    states, record = _snapshots()
    # the validation labels are the opposite class: validation loss gets worse as training
    # fits the training labels, so an early epoch is best and training stops early
    model = EndModel(2, hidden=(16,), n_epochs=30, lr=0.01, patience=3, valid_metric="loss")
    model.fit(X, y, X_valid=Xv, Y_valid=1 - yv, callbacks=[record])
    assert model.stopped_early_ and len(model.history_) == model.best_epoch_ + 4
    best = states[model.best_epoch_]
    for k, v in model.network_.state_dict().items():
        assert torch.equal(v, best[k])
    losses = [h["valid_loss"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmin(losses))
    assert model.best_score_ == pytest.approx(min(losses))


def test_early_stopping_on_accuracy_selects_max() -> None:
    X, y, _ = two_task_data(300, 10)
    Xv, yv, _ = two_task_data(100, 11)
    model = EndModel(2, hidden=(16,), n_epochs=6, lr=0.01, patience=None).fit(
        X, y, X_valid=Xv, Y_valid=yv)
    accs = [h["valid_accuracy"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmax(accs))
    assert model.score(Xv, yv)["accuracy"] == pytest.approx(max(accs))


def test_early_stopping_on_one_task_of_several() -> None:
    X, ya, yb = two_task_data(300, 13)
    Xv, yva, yvb = two_task_data(100, 14)
    model = MultiTaskEndModel({"a": 2, "b": 3}, hidden=(16,), n_epochs=6, lr=0.01,
                              patience=None, valid_metric="b_accuracy")
    model.fit(X, [ya, yb], X_valid=Xv, Y_valid=[yva, yvb])
    accs_b = [h["valid_b_accuracy"] for h in model.history_]
    means = [h["valid_accuracy"] for h in model.history_]
    # selected on task b's accuracy, not on the mean over tasks
    assert model.best_epoch_ == int(np.argmax(accs_b))
    assert model.best_score_ == pytest.approx(max(accs_b))
    assert model.score(Xv, [yva, yvb])["b"]["accuracy"] == pytest.approx(max(accs_b))
    assert len(means) == len(accs_b)
    with pytest.raises(ConfigError, match="<task>_<metric>"):
        MultiTaskEndModel({"a": 2, "b": 3}, valid_metric="c_accuracy", **FAST).fit(
            X, [ya, yb], X_valid=Xv, Y_valid=[yva, yvb])


class Interrupt(Exception):
    pass


def test_resume_ends_where_uninterrupted_run_ends(tmp_path) -> None:
    X, y, _ = two_task_data(300, 12)
    Xv, yv, _ = two_task_data(100, 13)
    probs = noisy_probs(y, 2, 0.3, 3)
    opts = dict(hidden=(16,), dropout=0.2, n_epochs=6, lr=0.01, patience=None,
                lr_schedule="cosine", seed=3)
    full = EndModel(2, **opts).fit(X, probs, X_valid=Xv, Y_valid=yv)

    ckpt = str(tmp_path / "ckpt.npz")

    def crash(epoch: int, rec: dict, net: torch.nn.Module) -> None:
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        EndModel(2, checkpoint_path=ckpt, **opts).fit(X, probs, X_valid=Xv, Y_valid=yv,
                                                      callbacks=[crash])
    resumed = EndModel(2, checkpoint_path=ckpt, **opts).fit(X, probs, X_valid=Xv, Y_valid=yv)
    assert np.allclose(resumed.predict_proba(X), full.predict_proba(X), atol=1e-6)
    assert [h["train_loss"] for h in resumed.history_] == pytest.approx(
        [h["train_loss"] for h in full.history_])
    assert resumed.best_epoch_ == full.best_epoch_


def test_trainer_generic_loop_and_schedules() -> None:
    net = torch.nn.Linear(3, 1)
    g = torch.Generator().manual_seed(0)
    X, w = torch.randn(128, 3, generator=g), torch.tensor([[1.0], [-2.0], [0.5]])
    y = X @ w
    lrs = []

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        return ((net(X[rows]) - y[rows]) ** 2).mean()

    def keep_lr(epoch: int, rec: dict, module: torch.nn.Module) -> None:
        lrs.append(rec["lr"])

    trainer = Trainer(n_epochs=20, batch_size=8, lr=0.05, lr_schedule="step", step_size=10,
                      gamma=0.1, patience=None, optimizer="sgd")
    result = trainer.fit(net, batch_loss, 128, callbacks=[keep_lr])
    assert result.history[-1]["train_loss"] < 0.01 * result.history[0]["train_loss"]
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] == pytest.approx(0.005)


# ---------------------------------------------------------------------------- persistence
def test_save_load_roundtrip_dense_and_sparse(tmp_path) -> None:
    X, y, _ = two_task_data(150, 14)
    model = EndModel(2, hidden=(8,), **FAST).fit(X, y)
    model.save(tmp_path / "m.npz")
    back = EndModel.load(tmp_path / "m.npz")
    assert np.array_equal(back.predict_proba(X), model.predict_proba(X))
    assert back.history_ == model.history_
    assert isinstance(back.network_.input_module, DenseInput)

    S = sp.random(150, 40, density=0.1, random_state=0, format="csr", dtype=np.float32)
    h = TaskHierarchy({"type": 2, "person": 3}, parents={"person": ("type", 0)})
    yp = np.where(y == 0, 1, 2)
    multi = MultiTaskEndModel(h, hidden=(8,), **FAST).fit(S, [y, yp])
    multi.save(tmp_path / "mt.npz")
    back2 = MultiTaskEndModel.load(tmp_path / "mt.npz")
    assert np.array_equal(back2.predict(S), multi.predict(S))
    assert back2.task_graph_ == h
    with pytest.raises(SaveFormatError):
        EndModel.load(tmp_path / "mt.npz")  # a MultiTaskEndModel file


def test_custom_input_module_must_be_passed_to_load(tmp_path) -> None:
    X, y, _ = two_task_data(100, 15)
    custom = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh())
    model = EndModel(2, input_module=custom, hidden=(), **FAST).fit(X, y)
    assert model.input_dim_ == 5
    model.save(tmp_path / "c.npz")
    with pytest.raises(ConfigError, match="custom input module"):
        EndModel.load(tmp_path / "c.npz")
    fresh = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh())
    back = EndModel.load(tmp_path / "c.npz", input_module=fresh)
    assert np.array_equal(back.predict_proba(X), model.predict_proba(X))


def test_history_plot_and_progress(tmp_path) -> None:
    X, y, _ = two_task_data(100, 16)
    model = EndModel(2, hidden=(8,), n_epochs=3, progress=True).fit(
        X, y, X_valid=X[:20], Y_valid=y[:20])
    model.plot_history(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------- errors
def test_errors_are_clear() -> None:
    X, y, _ = two_task_data(50, 17)
    with pytest.raises(NotFittedError):
        EndModel(2).predict(X)
    with pytest.raises(LabelMatrixError, match="expected"):
        EndModel(2, **FAST).fit(X, np.full((50, 3), 1 / 3))
    with pytest.raises(LabelMatrixError, match="sums to"):
        EndModel(2, **FAST).fit(X, np.full((50, 2), 0.7))
    with pytest.raises(ConfigError, match="unknown training options"):
        EndModel(2, n_epoch=3).fit(X, y)
    with pytest.raises(ConfigError, match="optimizer"):
        EndModel(2, optimizer="adagrad").fit(X, y)
    with pytest.raises(ConfigError, match="valid_metric"):
        EndModel(2, valid_metric="auc", **{k: v for k, v in FAST.items()}).fit(
            X, y, X_valid=X, Y_valid=y)
    with pytest.raises(ConfigError, match="head_depth"):
        MultiTaskEndModel({"a": 2}, head_depth={"a": 5}, **FAST).fit(X, y)

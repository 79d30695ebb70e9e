"""WeaSEL: the math (stop-gradients, aggregation, masking), the models and their contracts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from metal import HierarchicalMajorityVoter, TaskGraph, TaskHierarchy
from metal.data import make_hierarchical_synthetic
from metal.end_model import DenseInput, EndModel, MultiTaskEndModel
from metal.errors import ConfigError, LabelMatrixError, NotFittedError, SaveFormatError
from metal.weasel import MultiTaskWeaSEL, WeaSEL, roc_auc
from metal.weasel._core import (
    ACCURACY_FUNCTIONS,
    LOSSES,
    accuracies,
    aggregate,
    agreement_loss,
    voted_scores,
)
from metal.weasel.model import _distinct_columns

FAST = {"n_epochs": 3, "batch_size": 64}


def make_data(n: int = 600, k: int = 2, m: int = 5, d: int = 8, seed: int = 0,
              acc: float = 0.75, cov: float = 0.6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features whose first k coordinates carry the class; conditionally independent sources."""
    rng = np.random.default_rng(seed)
    Y = rng.integers(0, k, n)
    X = rng.normal(size=(n, d))
    X[np.arange(n), Y % d] += 2.0
    right = rng.random((n, m)) < acc
    wrong = (Y[:, None] + rng.integers(1, k, (n, m))) % k
    L = np.where(right, Y[:, None], wrong)
    L[rng.random((n, m)) > cov] = -1
    return L.astype(np.int64), X, Y


# ---------------------------------------------------------------------------- the math
def test_stop_gradient_sends_each_side_only_its_own_term() -> None:
    torch.manual_seed(0)
    zf = torch.randn(6, 3, requires_grad=True)
    ze = torch.randn(6, 3, requires_grad=True)
    log_f, log_e = torch.log_softmax(zf, 1), torch.log_softmax(ze, 1)
    agreement_loss(log_f, log_e, "symmetric_ce", stop_grad=True).sum().backward()
    assert zf.grad is not None and ze.grad is not None
    # expected: the end model sees only CE(y_f, const y_e), the encoder only CE(y_e, const y_f)
    zf2, ze2 = zf.detach().clone().requires_grad_(), ze.detach().clone().requires_grad_()
    lf, le = torch.log_softmax(zf2, 1), torch.log_softmax(ze2, 1)
    (-(le.exp().detach() * lf).sum()).backward()
    (-(lf.exp().detach() * le).sum()).backward()
    assert torch.allclose(zf.grad, zf2.grad, atol=1e-6)  # type: ignore[arg-type]
    assert torch.allclose(ze.grad, ze2.grad, atol=1e-6)  # type: ignore[arg-type]
    # without the stop-gradient each side also gets the gradient through its role as target
    zf3, ze3 = zf.detach().clone().requires_grad_(), ze.detach().clone().requires_grad_()
    agreement_loss(torch.log_softmax(zf3, 1), torch.log_softmax(ze3, 1), "symmetric_ce",
                   stop_grad=False).sum().backward()
    assert not torch.allclose(zf.grad, zf3.grad, atol=1e-4)  # type: ignore[arg-type]


def test_stop_gradient_in_a_training_step_leaves_the_encoder_out_of_the_end_models_term() -> None:
    """The end model's term CE(y_f, [y_e]) gives the encoder no gradient, and vice versa."""
    L, X, _ = make_data(64)
    model = WeaSEL(**FAST).fit(L, X)
    enc, end = model.encoder_, model.end_model_.network_
    enc.train()
    end.train()
    data = model._data(L, X)
    rows = np.arange(64)
    votes, x = data.votes(rows), data.features(rows)
    log_e = model._log_encoder(enc, votes, x)
    log_f = model._combine_end(end(x))
    end_term = -(log_e.exp().detach() * log_f).sum()  # what the end model learns from
    grads = torch.autograd.grad(end_term, list(enc.parameters()), allow_unused=True)
    assert all(g is None for g in grads)
    full = agreement_loss(log_f, log_e).sum()
    enc_grads = torch.autograd.grad(full, list(enc.parameters()), retain_graph=True)
    assert any(float(g.abs().sum()) > 0 for g in enc_grads)


@pytest.mark.parametrize("loss", ["hellinger", "l1"])
def test_symmetric_losses_are_symmetric_and_zero_at_agreement(loss: str) -> None:
    p = torch.log_softmax(torch.randn(5, 4), 1)
    q = torch.log_softmax(torch.randn(5, 4), 1)
    assert torch.allclose(agreement_loss(p, q, loss), agreement_loss(q, p, loss), atol=1e-6)
    assert torch.allclose(agreement_loss(p, p, loss), torch.zeros(5), atol=1e-6)


def test_accuracies_softmax_scale_and_positivity() -> None:
    e = torch.randn(4, 9, 1)
    theta = accuracies(e, "softmax", tau1=1.0, tau2=3.0)
    assert torch.allclose(theta.sum(dim=1), torch.full((4, 1), 3.0), atol=1e-5)
    assert (accuracies(e, "sigmoid", 1.0, 3.0) > 0).all()
    assert (accuracies(e, "relu") > 0).all()
    assert (accuracies(torch.full((1, 3, 1), -5.0), "tanh") < 0).all()  # may go adversarial
    # tau1 -> 0: equal weights, the equal-weighted vote
    flat = accuracies(e, "softmax", tau1=1e-6, tau2=3.0)
    assert torch.allclose(flat, torch.full_like(flat, 3.0 / 9), atol=1e-5)


def test_aggregate_with_equal_weights_is_the_majority_vote() -> None:
    L, _, _ = make_data(400, k=3, m=7)
    V = torch.nn.functional.one_hot(torch.from_numpy(L).clamp(min=0), 3).float()
    V = V * torch.from_numpy(L >= 0).unsqueeze(-1).float()
    logits = aggregate(torch.full((400, 7, 1), 0.5), V)
    counts = V.sum(dim=1)
    assert torch.allclose(logits, 0.5 * counts)


def test_class_conditional_voters_share_one_budget() -> None:
    # a row's evidence sums to tau2 whatever the encoder outputs: the encoder cannot give every
    # voted class the whole budget (a separate softmax per class column could: the label of a
    # row with conflicting votes would then be uniform over the voted classes)
    gen = torch.Generator().manual_seed(0)
    L = torch.randint(-1, 4, (64, 6), generator=gen)
    L[:, 0] = torch.randint(0, 4, (64,), generator=gen)  # every row has a vote
    V = torch.nn.functional.one_hot(L.clamp(min=0), 4).float() * (L >= 0).unsqueeze(-1).float()
    e = 10 * torch.randn(64, 6, 4, generator=gen)
    voting = L >= 0
    theta = accuracies(voted_scores(e, V), "softmax", 1.0, 2.0, voting)
    assert theta.shape == (64, 6, 1)
    assert torch.allclose(aggregate(theta, V).sum(dim=1), torch.full((64,), 2.0), atol=1e-4)
    # the score of source j is e[j, its vote]
    picked = e.gather(2, L.clamp(min=0).unsqueeze(-1))
    assert torch.allclose(voted_scores(e, V)[voting], picked[voting])
    # per column the budget is per class: conflicting rows get more than tau2 in total
    per_column = aggregate(accuracies(e, "softmax", 1.0, 2.0, voting), V).sum(dim=1)
    assert (per_column > 2.5).any()


# ---------------------------------------------------------------------------- initial labels
def test_random_encoder_labels_are_close_to_majority_vote() -> None:
    L, X, _ = make_data(1000, k=3, m=9, cov=0.7)
    # lr ~ 0: the encoder stays at its random initialisation
    model = WeaSEL(cardinality=3, lr=1e-12, n_epochs=1).fit(L, X)
    probs = model.predict_proba_encoder(L, X)
    counts = np.stack([(L == c).sum(1) for c in range(3)], 1)
    top = np.sort(counts, 1)
    clear = top[:, -1] - top[:, -2] >= 2  # a majority of two votes or more
    agree = np.mean(probs[clear].argmax(1) == counts[clear].argmax(1))
    assert clear.sum() > 300
    assert agree > 0.97
    # and on every row with a unique majority most of the time
    unique = top[:, -1] > top[:, -2]
    assert np.mean(probs[unique].argmax(1) == counts[unique].argmax(1)) > 0.85


@pytest.mark.parametrize("softmax_over", ["voters", "all"])
def test_zero_encoder_output_gives_exactly_the_scaled_majority_vote(softmax_over: str) -> None:
    L, X, _ = make_data(300, k=2, m=4)
    model = WeaSEL(lr=1e-12, n_epochs=1, softmax_over=softmax_over).fit(L, X)
    last = model.encoder_.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    probs = model.predict_proba_encoder(L, X)
    counts = np.stack([(L == c).sum(1) for c in range(2)], 1).astype(float)
    if softmax_over == "all":
        scale = np.full((len(L), 1), np.sqrt(4) / 4)  # theta_j = tau2 / m, tau2 = sqrt(m)
    else:  # theta_j = tau2 / v with tau2 = sqrt(v), v the number of voters on the row
        scale = 1 / np.sqrt(np.maximum((L >= 0).sum(1, keepdims=True), 1))
    logits = counts * scale
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert np.allclose(probs, expected, atol=1e-5)


# ---------------------------------------------------------------------------- masking
def test_rows_without_votes_are_masked_from_training() -> None:
    L, X, _ = make_data(300)
    L[::7] = -1  # some rows have no vote at all
    rng = np.random.default_rng(1)
    extra_L = np.full((50, L.shape[1]), -1)
    extra_X = rng.normal(size=(50, X.shape[1])) * 100  # would wreck training if used
    a = WeaSEL(**FAST).fit(L, X)
    b = WeaSEL(**FAST).fit(np.vstack([L, extra_L]), np.vstack([X, extra_X]))
    assert a.n_train_rows_ == b.n_train_rows_ == int(((L >= 0).any(1)).sum())
    assert np.allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)
    # the encoder's label of a row without votes is the prior
    enc = b.predict_proba_encoder(extra_L, extra_X)
    assert np.allclose(enc, 0.5)


def test_no_votes_at_all_is_an_error() -> None:
    with pytest.raises(ConfigError, match="have a vote"):
        WeaSEL(**FAST).fit(np.full((20, 3), -1), np.zeros((20, 2)))


# ---------------------------------------------------------------------------- inputs
def test_probabilistic_one_hot_input_equals_discrete_input() -> None:
    L, X, _ = make_data(300, k=3)
    P = np.zeros(L.shape + (3,))
    r, c = np.nonzero(L >= 0)
    P[r, c, L[r, c]] = 1.0
    a = WeaSEL(cardinality=3, **FAST).fit(L, X)
    b = WeaSEL(cardinality=3, **FAST).fit(P, X)
    assert np.allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)
    assert np.allclose(a.predict_proba_encoder(L, X), b.predict_proba_encoder(P, X), atol=1e-6)


def test_probabilistic_votes_weigh_by_their_confidence() -> None:
    # one source sure of class 0, one 60/40 for class 1: equal accuracies -> class 0 wins
    V = torch.tensor([[[1.0, 0.0], [0.4, 0.6]]])
    logits = aggregate(torch.ones(1, 2, 1), V)
    assert logits.argmax().item() == 0
    # a uniform distribution carries no evidence
    V2 = torch.tensor([[[0.0, 1.0], [0.5, 0.5]]])
    logits2 = aggregate(torch.ones(1, 2, 1), V2)
    assert torch.isclose(logits2[0, 1] - logits2[0, 0], torch.tensor(1.0))


def test_probabilistic_input_trains_and_is_validated() -> None:
    L, X, Y = make_data(400)
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.55, 1.0, L.shape)
    P = np.zeros(L.shape + (2,))
    voted = L >= 0
    P[..., 1] = np.where(voted, np.where(L == 1, conf, 1 - conf), 0.0)
    P[..., 0] = np.where(voted, 1 - P[..., 1], 0.0)
    model = WeaSEL(n_epochs=10).fit(P, X)
    assert model.score(X, Y)["accuracy"] > 0.8
    with pytest.raises(LabelMatrixError, match="sum to more than 1"):
        WeaSEL(**FAST).fit(P * 2, X)
    with pytest.raises(LabelMatrixError, match=r"\(n, m, 2\)"):
        WeaSEL(**FAST).fit(np.zeros((400, 5, 3)), X)


def test_fit_and_predict_leave_the_callers_unsorted_sparse_features_intact() -> None:
    # float64 CSR with unsorted column indices (as TfidfVectorizer returns): converting it to
    # float32 shares the index arrays, and sorting them in place used to permute the caller's
    # values among its columns, so a second fit on the same matrix saw other features
    rng = np.random.default_rng(0)
    L, X, _ = make_data(300, k=2, m=4)
    dense = np.where(rng.random((300, 12)) < 0.3, rng.random((300, 12)), 0.0)
    dense[:, :2] = X[:, :2]
    csr = sp.csr_matrix(dense)
    order = np.arange(csr.indptr[-1])
    for r in range(300):  # reverse each row's stored entries: same matrix, unsorted indices
        a, b = csr.indptr[r], csr.indptr[r + 1]
        order[a:b] = order[a:b][::-1]
    Xs = sp.csr_matrix((csr.data[order], csr.indices[order], csr.indptr), shape=csr.shape)
    assert not Xs.has_sorted_indices
    model = WeaSEL(n_epochs=2, seed=0).fit(L, Xs, X_valid=Xs[:50], Y_valid=L[:50, 0])
    model.predict_proba(Xs)
    assert np.array_equal(Xs.toarray(), dense)
    again = WeaSEL(n_epochs=2, seed=0).fit(L, Xs, X_valid=Xs[:50], Y_valid=L[:50, 0])
    assert np.allclose(again.predict_proba(Xs), model.predict_proba(Xs))


def test_sparse_votes_equal_dense_and_sparse_features_train() -> None:
    from metal import to_sparse_labels
    from metal.end_model import SparseInput

    L, X, Y = make_data(300)
    a = WeaSEL(**FAST).fit(L, X)
    b = WeaSEL(**FAST).fit(to_sparse_labels(L), X)
    assert np.allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)
    # TF-IDF-like sparse features go through the end model's sparse input module (never
    # densified), in the end model and in the encoder
    Xs = sp.csr_matrix(np.where(X > 1.0, X, 0.0))
    c = WeaSEL(n_epochs=10).fit(L, Xs)
    assert isinstance(c.end_model_.network_.input_module, SparseInput)
    assert isinstance(c.encoder_.feature_module, SparseInput)
    assert c.score(Xs, Y)["accuracy"] > 0.75


# ---------------------------------------------------------------------------- learning
def test_learns_better_than_its_initial_majority_vote_labels() -> None:
    L, X, Y = make_data(1500, acc=0.7, cov=0.5)
    tr, va, te = slice(0, 1000), slice(1000, 1100), slice(1100, None)
    model = WeaSEL(n_epochs=15).fit(L[tr], X[tr], X[va], Y[va])
    counts = np.stack([(L[te] == c).sum(1) for c in range(2)], 1)
    mv_acc = np.mean(counts.argmax(1) == Y[te])  # ties -> class 0
    assert model.score(X[te], Y[te])["accuracy"] > mv_acc + 0.05
    assert model.best_epoch_ <= 15 and "valid_auc" in model.history_[0]


@pytest.mark.parametrize("accuracy", ACCURACY_FUNCTIONS)
def test_every_accuracy_function_trains(accuracy: str) -> None:
    L, X, Y = make_data(300)
    model = WeaSEL(accuracy=accuracy, **FAST).fit(L, X)
    assert np.isfinite(model.history_[-1]["train_loss"])


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains(loss: str) -> None:
    L, X, _ = make_data(300)
    model = WeaSEL(loss=loss, stop_grad=False, use_features=False, tau2=1.0,
                   encoder_batch_norm=False, **FAST).fit(L, X)
    assert np.isfinite(model.history_[-1]["train_loss"])
    assert model.predict_proba_encoder(L).shape == (300, 2)  # no features needed


def test_tau_defaults_follow_the_paper() -> None:
    L, X, Y = make_data(200, m=9)
    with_valid = WeaSEL(softmax_over="all", **FAST).fit(L, X, X[:50], Y[:50])
    without = WeaSEL(**FAST).fit(L, X)
    assert with_valid.tau2_ == [3.0] and with_valid.tau1_ == 1.0  # sqrt(m), softmax over all
    assert without.tau2_ == [None]  # over the voters: sqrt(voters) per row, tested above
    assert without.tau1_ == pytest.approx(1 / 3)
    assert with_valid.columns_ == [1]
    assert WeaSEL(cardinality=3, **FAST).fit(L, X).columns_ == [3]  # class-conditional


class TinyEncoder(torch.nn.Module):
    """A custom encoder: votes only, one linear layer (the paper's "linear e" ablation)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(n_in, n_out)

    def forward(self, votes: torch.Tensor, features: object = None) -> torch.Tensor:
        return self.lin(votes)


def test_custom_end_model_and_encoder_are_copied_and_trained() -> None:
    L, X, Y = make_data(200)
    spec = EndModel(2, hidden=(16,))
    enc = TinyEncoder(5 * 2, 5)
    before = enc.lin.weight.detach().clone()
    model = WeaSEL(end_model=spec, encoder=enc, use_features=False, **FAST).fit(L, X)
    assert not hasattr(spec, "network_")  # the hyperparameter is left as passed
    assert torch.equal(enc.lin.weight, before)
    assert not torch.equal(model.encoder_.lin.weight, before)
    assert isinstance(model.end_model_, EndModel)
    assert model.end_model_.network_.trunk[0][0].out_features == 16
    # the trained end model is an ordinary fitted EndModel
    assert np.allclose(model.end_model_.predict_proba(X), model.predict_proba(X))
    with pytest.raises(ConfigError, match="EndModel"):
        WeaSEL(cardinality=3, end_model=spec, **FAST).fit(L, X)
    with pytest.raises(ConfigError, match="unfitted"):
        WeaSEL(end_model=torch.nn.Linear(8, 2), **FAST).fit(L, X)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- contracts
def test_determinism_and_global_rng_untouched() -> None:
    L, X, _ = make_data(300)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = WeaSEL(seed=5, **FAST).fit(L, X)
    assert torch.equal(state, torch.random.get_rng_state())
    b = WeaSEL(seed=5, **FAST).fit(L, X)
    c = WeaSEL(seed=6, **FAST).fit(L, X)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.allclose(a.predict_proba(X), c.predict_proba(X))


def test_save_load_roundtrip(tmp_path: object) -> None:
    from pathlib import Path

    L, X, Y = make_data(300, k=3)
    model = WeaSEL(cardinality=3, **FAST).fit(L, X, X[:50], Y[:50])
    path = Path(str(tmp_path)) / "w.npz"
    model.save(path)
    back = WeaSEL.load(path)
    assert np.allclose(back.predict_proba(X), model.predict_proba(X))
    assert np.allclose(back.predict_proba_encoder(L, X), model.predict_proba_encoder(L, X))
    assert back.history_ == model.history_ and back.tau2_ == model.tau2_
    custom = WeaSEL(encoder=TinyEncoder(5 * 2, 5), use_features=False,
                    end_model=EndModel(2, input_module=DenseInput(X.shape[1], hidden=(7,))),
                    **FAST).fit(L % 2, X)
    custom.save(path)
    with pytest.raises(ConfigError, match="custom encoder"):
        WeaSEL.load(path)
    again = WeaSEL.load(path, encoder=TinyEncoder(5 * 2, 5))
    assert np.allclose(again.predict_proba(X), custom.predict_proba(X))
    assert np.allclose(again.predict_proba_encoder(L % 2), custom.predict_proba_encoder(L % 2))
    with pytest.raises(SaveFormatError):
        MultiTaskWeaSEL.load(path)


def test_errors_say_what_is_wrong() -> None:
    L, X, Y = make_data(100)
    with pytest.raises(NotFittedError):
        WeaSEL().predict_proba(X)
    with pytest.raises(ConfigError, match="accuracy="):
        WeaSEL(accuracy="max", **FAST).fit(L, X)
    with pytest.raises(ConfigError, match="loss="):
        WeaSEL(loss="mig", **FAST).fit(L, X)
    with pytest.raises(ConfigError, match="rows"):
        WeaSEL(**FAST).fit(L, X[:50])
    with pytest.raises(ConfigError, match="both"):
        WeaSEL(**FAST).fit(L, X, X_valid=X[:10])
    model = WeaSEL(**FAST).fit(L, X)
    with pytest.raises(Exception, match="features"):
        model.predict_proba(X[:, :3])
    with pytest.raises(LabelMatrixError):
        model.predict_proba_encoder(L[:, :2], X)


def test_score_reports_auc() -> None:
    L, X, Y = make_data(400)
    model = WeaSEL(n_epochs=5).fit(L, X)
    s = model.score(X, Y, ["accuracy", "auc"])
    assert s["auc"] == pytest.approx(roc_auc(Y, model.predict_proba(X)[:, 1]))
    assert 0.5 < s["auc"] <= 1.0


def test_roc_auc_matches_the_pair_count() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 5, 60).astype(float)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(y, s) == pytest.approx(pairs)


# ---------------------------------------------------------------------------- multi-task
@pytest.mark.parametrize("softmax_over", ["all", "voters"])
def test_one_task_through_the_multitask_path_equals_the_single_task_path(softmax_over: str
                                                                         ) -> None:
    L, X, Y = make_data(500, k=3)
    kw = {**FAST, "seed": 4, "softmax_over": softmax_over}
    single = WeaSEL(cardinality=3, **kw).fit(L, X, X[:80], Y[:80])
    multi = MultiTaskWeaSEL(TaskGraph({"t": 3}), **kw).fit(L[:, :, None], X, X[:80], Y[:80])
    assert np.allclose(single.predict_proba(X), multi.predict_proba_joint(X), atol=1e-5)
    assert np.allclose(single.predict_proba_encoder(L, X),
                       multi.predict_proba_encoder({"t": L}, X), atol=1e-4)
    assert single.best_epoch_ == multi.best_epoch_
    assert isinstance(multi.end_model_, MultiTaskEndModel)


def _hierarchy_data(n: int = 1200) -> tuple[TaskHierarchy, np.ndarray, np.ndarray, np.ndarray]:
    h = TaskHierarchy({"type": 2, "person": 3, "org": 3},
                      parents={"person": ("type", 0), "org": ("type", 1)})
    data = make_hierarchical_synthetic(n, h, seed=0)
    rng = np.random.default_rng(0)
    joint = h.to_joint(data.Y)
    X = rng.normal(size=(n, 6))
    X[np.arange(n), joint] += 2.0
    return h, data.L, X, data.Y


def test_multitask_predicts_only_feasible_vectors_and_learns() -> None:
    h, L, X, Y = _hierarchy_data()
    model = MultiTaskWeaSEL(h, n_epochs=20).fit(L[:1000], X[:1000])
    preds = model.predict(X[1000:])
    assert preds.shape == (200, 3)
    assert h.is_feasible(preds).all()
    assert model.predict_proba_joint(X).shape == (1200, h.n_feasible)
    marg = model.predict_proba(X[:5])
    assert [p.shape for p in marg] == [(5, 2), (5, 3), (5, 3)]
    hmv = HierarchicalMajorityVoter(h).score(L[1000:], Y[1000:])["joint"]["accuracy"]
    assert model.score(X[1000:], Y[1000:])["joint"]["accuracy"] > hmv + 0.05
    # the per-task accuracies: one block of m accuracies per task (class-conditional for k > 2)
    assert model.columns_ == [1, 3, 3]


def test_multitask_save_load_and_dict_input(tmp_path: object) -> None:
    from pathlib import Path

    h, L, X, Y = _hierarchy_data(300)
    as_dict = {name: L[:, :, s] for s, name in enumerate(h.task_names)}
    a = MultiTaskWeaSEL(h, **FAST).fit(L, X, X[:50], Y[:50])
    b = MultiTaskWeaSEL(h, **FAST).fit(as_dict, X, X[:50], Y[:50])
    assert np.allclose(a.predict_proba_joint(X), b.predict_proba_joint(X), atol=1e-6)
    path = Path(str(tmp_path)) / "mt.npz"
    a.save(path)
    back = MultiTaskWeaSEL.load(path)
    assert back.task_graph == h
    assert np.allclose(back.predict_proba_joint(X), a.predict_proba_joint(X))
    with pytest.raises(LabelMatrixError, match="unknown tasks"):
        MultiTaskWeaSEL(h, **FAST).fit({**as_dict, "other": L[:, :, 0]}, X)
    with pytest.raises(LabelMatrixError, match=r"\(n, m, 3\)"):
        MultiTaskWeaSEL(h, **FAST).fit(L[:, :, :2], X)


# ---------------------------------------------------------------------------- warm start
def test_distinct_columns_keeps_one_copy_of_each_source() -> None:
    L, _, _ = make_data(200, m=4)
    dup = np.concatenate([L, L[:, [1]], L[:, [1]], L[:, [3]]], axis=1)
    assert np.array_equal(_distinct_columns(dup), L)
    assert _distinct_columns(L) is L  # nothing to drop: the same array
    sparse = sp.csr_matrix(np.where(dup >= 0, dup + 1, 0))  # sparse stores votes only
    assert np.array_equal(_distinct_columns(sparse).toarray(), np.where(L >= 0, L + 1, 0))


def test_warm_targets_follow_the_label_model_and_ignore_copies() -> None:
    from metal import LabelModel

    L, X, _ = make_data(600, m=5)
    model = WeaSEL(**FAST)
    data = model._data(L, X)
    rows = np.arange(600)
    expected = LabelModel(2, seed=0).fit(L).predict_proba(L)
    assert np.allclose(model._warm_targets(data, rows), expected, atol=1e-5)
    # 20 extra copies of source 0 change nothing: the label model sees each source once
    copies = np.concatenate([L, np.repeat(L[:, [0]], 20, axis=1)], axis=1)
    assert np.allclose(model._warm_targets(model._data(copies, X), rows), expected, atol=1e-5)
    mv = WeaSEL(warm_start="majority_vote", **FAST)
    from metal import MajorityVoter

    assert np.allclose(mv._warm_targets(mv._data(L, X), rows),
                       MajorityVoter(2).predict_proba(L), atol=1e-5)


def test_two_distinct_sources_fall_back_to_the_vote() -> None:
    from metal import MajorityVoter

    L, X, _ = make_data(300, m=2, cov=1.0)  # a label model of two sources is not identifiable
    copies = np.concatenate([L, L[:, [1]]], axis=1)
    model = WeaSEL(**FAST)
    targets = model._warm_targets(model._data(copies, X), np.arange(300))
    assert np.allclose(targets, MajorityVoter(2).predict_proba(L), atol=1e-6)  # copy dropped
    fitted = model.fit(copies, X)
    assert fitted.warm_history_ and np.isfinite(fitted.warm_history_[-1]["train_loss"])


def test_the_warm_start_is_the_selection_epoch_before_the_joint_training(
        tmp_path: object) -> None:
    from pathlib import Path

    L, X, Y = make_data(800, acc=0.7, cov=0.5)
    tr, va = slice(0, 600), slice(600, 700)
    for n_epochs in (1, 6):
        model = WeaSEL(n_epochs=n_epochs, seed=1).fit(L[tr], X[tr], X[va], Y[va])
        joint = max(h["valid_auc"] for h in model.history_)
        assert model.warm_score_ is not None
        assert model.warm_start_kept_ == (model.warm_score_ > joint)
        assert model.best_valid_score_ == max(model.warm_score_, joint)
        assert (model.best_epoch_ == -1) == model.warm_start_kept_
        # the end model that is kept is the one that validated best
        auc = roc_auc(Y[va], model.predict_proba(X[va])[:, 1])
        assert auc == pytest.approx(model.best_valid_score_, abs=1e-6)
        model.save(Path(str(tmp_path)) / "w.npz")
        back = WeaSEL.load(Path(str(tmp_path)) / "w.npz")
        assert back.warm_start_kept_ == model.warm_start_kept_
        assert back.warm_score_ == model.warm_score_


def test_without_warm_start_the_end_model_starts_at_random() -> None:
    L, X, Y = make_data(400)
    cold = WeaSEL(warm_start=None, **FAST).fit(L, X, X[:50], Y[:50])
    warm = WeaSEL(**FAST).fit(L, X, X[:50], Y[:50])
    assert cold.warm_score_ is None and not cold.warm_start_kept_ and cold.warm_history_ == []
    assert warm.warm_history_ and not np.allclose(cold.predict_proba(X), warm.predict_proba(X))
    with pytest.raises(ConfigError, match="warm_start"):
        WeaSEL(warm_start="snorkel", **FAST).fit(L, X)

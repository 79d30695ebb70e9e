"""WeaSEL: train an end model directly from weak sources (Cachay et al., NeurIPS 2021).

An *encoder* ``e`` reads each example's votes (one-hot, or distributions for probabilistic
sources) and, by default, its features, and outputs per-example source accuracies
``theta = tau2 * softmax(tau1 * e(votes, x))`` (over the sources; one column per class when
accuracies are class-conditional). Its label is ``y_e = softmax(sum_j theta_j * V_j + log p)``,
a reweighted vote. The *end model* ``f`` sees only the features. Both are trained together to
agree: ``CE(y_f, stopgrad(y_e)) + CE(y_e, stopgrad(y_f))``, on the rows with at least one vote,
with early stopping on a small labelled validation split when one is given.

:class:`WeaSEL` is the single-task model; :class:`MultiTaskWeaSEL` (``metal.weasel.multitask``)
aggregates over a task graph's feasible set and trains a multi-head end model. Both share the
training loop of :class:`WeaSELBase`.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from metal._io import load_arrays, save_arrays
from metal.errors import ConfigError, NotFittedError
from metal.metrics import probs_to_preds, score_predictions
from metal.weasel._core import (
    ACCURACY_FUNCTIONS,
    LOSSES,
    accuracies,
    aggregate,
    agreement_loss,
    default_tau2,
    masked_mean,
)
from metal.weasel._data import (
    WeakData,
    batches,
    check_features,
    check_task_votes,
    feature_batch,
)
from metal.weasel.networks import Encoder, MLPEndModel

VALID_METRICS = ("auto", "auc", "accuracy", "f1", "macro_f1")
_PREDICT_BATCH = 4096


def roc_auc(Y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for class 1 (rank formula, ties averaged)."""
    from scipy.stats import rankdata

    Y = np.asarray(Y)
    keep = Y >= 0
    Y, score = Y[keep], np.asarray(score, dtype=np.float64)[keep]
    n_pos, n_neg = int((Y == 1).sum()), int((Y != 1).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[Y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class WeaSELBase:
    """Hyperparameters, validation and the training loop shared by the WeaSEL models.

    Subclasses say how per-task logits become one distribution over the label space
    (:meth:`_combine_encoder`, :meth:`_combine_end`) and how a validation split is scored.
    """

    _kind = "WeaSELBase"

    def __init__(
        self,
        *,
        end_model: nn.Module | None = None,
        end_hidden: Sequence[int] = (50, 50, 25),
        encoder: nn.Module | None = None,
        encoder_hidden: Sequence[int] = (70, 70),
        encoder_batch_norm: bool = True,
        dropout: float = 0.3,
        use_features: bool = True,
        accuracy: str = "softmax",
        class_conditional: bool | None = None,
        tau1: float | None = None,
        tau2: float | None = None,
        loss: str = "symmetric_ce",
        stop_grad: bool = True,
        class_balance: Any = None,
        lr: float = 1e-3,
        weight_decay: float = 7e-7,
        batch_size: int = 64,
        max_epochs: int = 100,
        patience: int = 10,
        valid_metric: str = "auto",
        seed: int = 0,
        device: str = "cpu",
        progress: bool = True,
    ) -> None:
        self.end_model = end_model
        self.end_hidden = end_hidden
        self.encoder = encoder
        self.encoder_hidden = encoder_hidden
        self.encoder_batch_norm = encoder_batch_norm
        self.dropout = dropout
        self.use_features = use_features
        self.accuracy = accuracy
        self.class_conditional = class_conditional
        self.tau1 = tau1
        self.tau2 = tau2
        self.loss = loss
        self.stop_grad = stop_grad
        self.class_balance = class_balance
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.valid_metric = valid_metric
        self.seed = seed
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ subclass hooks
    def _cardinalities(self) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _label_space_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _combine_encoder(self, task_logits: list[torch.Tensor], log_prior: torch.Tensor
                         ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _combine_end(self, out: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _default_end_model(self, n_features: int) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _valid_score(self, log_f: np.ndarray, Y: np.ndarray, metric: str
                     ) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _auto_metric(self) -> str:
        return "accuracy"

    def _extra_params(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        if self.accuracy not in ACCURACY_FUNCTIONS:
            raise ConfigError(f"accuracy={self.accuracy!r} is not known; expected one of "
                              f"{ACCURACY_FUNCTIONS} (softmax is the paper's default)")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r} is not known; expected one of {LOSSES} "
                              "(symmetric_ce is the paper's default)")
        if self.valid_metric not in VALID_METRICS:
            raise ConfigError(f"valid_metric={self.valid_metric!r} is not known; expected one "
                              f"of {VALID_METRICS}")
        for name in ("batch_size", "max_epochs", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{name}={v!r}; expected a positive int")
        for name in ("tau1", "tau2"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name}={v!r}; expected a positive number or None (the "
                                  "paper's default)")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"dropout={self.dropout}; expected a value in [0, 1)")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"lr={self.lr} must be > 0 and weight_decay={self.weight_decay} "
                              ">= 0")

    def _check_fitted(self) -> None:
        if not hasattr(self, "end_model_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call "
                                 ".fit(L, X) before using it")

    def _log_prior(self) -> np.ndarray:
        K = self._label_space_size()
        if self.class_balance is None:
            return np.full(K, -math.log(K))
        p = np.asarray(self.class_balance, dtype=np.float64)
        if p.shape != (K,) or not np.all(np.isfinite(p)) or (p <= 0).any() \
                or abs(p.sum() - 1.0) > 1e-6:
            raise ConfigError(f"class_balance={p.tolist()}; expected {K} positive "
                              "probabilities summing to 1 (one per label of the label space)")
        return np.log(p)

    # ------------------------------------------------------------------ networks
    def _encoder_input(self, votes: list[torch.Tensor], x: torch.Tensor | None
                       ) -> torch.Tensor:
        parts = [v.reshape(v.shape[0], -1) for v in votes]
        if self.use_features and x is not None:
            parts.append(x)
        return torch.cat(parts, dim=1)

    def _task_scores(self, enc: nn.Module, votes: list[torch.Tensor], x: torch.Tensor | None
                     ) -> list[torch.Tensor]:
        """Per-task aggregated scores ``sum_j theta_j V_j`` (before the prior), ``(b, k_s)``."""
        raw = enc(self._encoder_input(votes, x))
        out, start = [], 0
        for v, c in zip(votes, self.columns_, strict=True):
            b, m, _ = v.shape
            e = raw[:, start:start + m * c].reshape(b, m, c)
            start += m * c
            theta = accuracies(e, self.accuracy, self.tau1_, self.tau2_[len(out)])
            out.append(aggregate(theta, v))
        return out

    def _log_encoder(self, enc: nn.Module, votes: list[torch.Tensor],
                     x: torch.Tensor | None) -> torch.Tensor:
        return self._combine_encoder(self._task_scores(enc, votes, x), self._log_prior_t)

    # ------------------------------------------------------------------ fit
    def _fit(self, data: WeakData, X_valid: Any, Y_valid: Any) -> WeaSELBase:
        self._check_params()
        assert data.X is not None
        rows = np.flatnonzero(data.has_vote())  # rows with no vote carry no signal: masked
        if rows.size < 2:
            raise ConfigError(f"only {rows.size} row(s) have a vote; WeaSEL trains on the rows "
                              "where at least one source votes. Check the label matrix")
        has_valid = X_valid is not None and Y_valid is not None
        if (X_valid is None) != (Y_valid is None):
            raise ConfigError("pass both X_valid and Y_valid (a small labelled split for early "
                              "stopping), or neither")
        cards = self._cardinalities()
        n_sources = [t.n_sources for t in data.tasks]
        n_features = int(data.X.shape[1])
        # paper defaults: tau2 = sqrt(m); tau1 = 1 with early stopping, 1/3 without (Sec. 6)
        self.tau1_ = float(self.tau1) if self.tau1 is not None else (1.0 if has_valid else 1 / 3)
        self.tau2_ = [float(self.tau2) if self.tau2 is not None else default_tau2(m)
                      for m in n_sources]
        cc = self.class_conditional
        self.columns_ = [k if (cc if cc is not None else k > 2) else 1 for k in cards]
        self._log_prior_t = torch.as_tensor(self._log_prior(), dtype=torch.float32,
                                            device=self.device)
        metric = self.valid_metric if self.valid_metric != "auto" else self._auto_metric()
        if has_valid:
            Xv = check_features(X_valid, None, n_features, name="X_valid")
            Yv = self._check_valid_labels(Y_valid, Xv.shape[0])
        dev = torch.device(self.device)
        enc_in = sum(m * k for m, k in zip(n_sources, cards, strict=True)) \
            + (n_features if self.use_features else 0)
        enc_out = sum(m * c for m, c in zip(n_sources, self.columns_, strict=True))

        history: list[dict[str, float]] = []
        with torch.random.fork_rng(devices=[]):  # seeded locally; the global state is restored
            torch.manual_seed(int(self.seed))
            end = copy.deepcopy(self.end_model) if self.end_model is not None \
                else self._default_end_model(n_features)
            enc = copy.deepcopy(self.encoder) if self.encoder is not None else Encoder(
                enc_in, enc_out, self.encoder_hidden, self.encoder_batch_norm, self.dropout)
            end.to(dev)
            enc.to(dev)
            opt = torch.optim.Adam(list(end.parameters()) + list(enc.parameters()),
                                   lr=self.lr, weight_decay=self.weight_decay)
            gen = torch.Generator().manual_seed(int(self.seed))
            best = (-math.inf, 0, None)
            epochs = _progress(range(int(self.max_epochs)), self.progress, type(self).__name__)
            for epoch in epochs:
                end.train()
                enc.train()
                order = rows[torch.randperm(rows.size, generator=gen).numpy()]
                total, count = 0.0, 0
                for b in batches(order, int(self.batch_size)):
                    if b.size < 2:  # batch norm cannot train on a single row
                        continue
                    votes = [v.to(dev) for v in data.votes(b)]
                    x = data.features(b).to(dev)
                    log_e = self._log_encoder(enc, votes, x)
                    log_f = self._combine_end(end(x))
                    mask = torch.stack([v.sum(dim=(1, 2)) > 0 for v in votes]).any(dim=0)
                    loss = masked_mean(agreement_loss(log_f, log_e, self.loss, self.stop_grad),
                                       mask)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * b.size
                    count += b.size
                record = {"epoch": float(epoch), "loss": total / max(count, 1)}
                if has_valid:
                    score = self._valid_score(self._end_log_probs(end, Xv), Yv, metric)
                    record[f"valid_{metric}"] = score
                    if score > best[0]:
                        best = (score, epoch, (copy.deepcopy(end.state_dict()),
                                               copy.deepcopy(enc.state_dict())))
                    elif epoch - best[1] >= int(self.patience):
                        history.append(record)
                        break
                history.append(record)
                if hasattr(epochs, "set_postfix"):
                    epochs.set_postfix({k: round(v, 4) for k, v in record.items()
                                        if k != "epoch"})
            if has_valid and best[2] is not None:
                end.load_state_dict(best[2][0])
                enc.load_state_dict(best[2][1])
                self.best_epoch_ = int(best[1])
                self.best_valid_score_ = float(best[0])
            else:
                self.best_epoch_ = len(history) - 1
                self.best_valid_score_ = float("nan")
        end.eval()
        enc.eval()
        self.end_model_ = end
        self.encoder_ = enc
        self.history_ = history
        self.n_sources_ = n_sources
        self.n_features_ = n_features
        self.n_train_rows_ = int(rows.size)
        return self

    def _check_valid_labels(self, Y: Any, n: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def _end_log_probs(self, end: nn.Module, X: Any) -> np.ndarray:
        was_training = end.training
        end.eval()
        out = []
        rows = np.arange(X.shape[0])
        for b in batches(rows, _PREDICT_BATCH):
            x = feature_batch(X, b).to(self.device)
            out.append(self._combine_end(end(x)).double().cpu().numpy())
        end.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, self._label_space_size()))

    def _predict_log_proba(self, X: Any) -> np.ndarray:
        self._check_fitted()
        Xc = check_features(X, None, self.n_features_)
        return self._end_log_probs(self.end_model_, Xc)

    @torch.no_grad()
    def _encoder_log_proba(self, data: WeakData) -> np.ndarray:
        self._check_fitted()
        out = []
        for b in batches(np.arange(data.n_rows), _PREDICT_BATCH):
            votes = [v.to(self.device) for v in data.votes(b)]
            x = data.features(b).to(self.device) if data.X is not None else None
            out.append(self._log_encoder(self.encoder_, votes, x).double().cpu().numpy())
        log_p = np.concatenate(out)
        # a row without any vote gets the prior: the encoder has nothing to reweight
        none = ~data.has_vote()
        log_p[none] = self._log_prior()
        return log_p

    # ------------------------------------------------------------------ persistence
    def _params(self) -> dict[str, Any]:
        names = ("end_hidden", "encoder_hidden", "encoder_batch_norm", "dropout", "use_features",
                 "accuracy", "class_conditional", "tau1", "tau2", "loss", "stop_grad", "lr",
                 "weight_decay", "batch_size", "max_epochs", "patience", "valid_metric", "seed",
                 "device", "progress")
        out = {n: getattr(self, n) for n in names}
        out["end_hidden"] = [int(h) for h in self.end_hidden]
        out["encoder_hidden"] = [int(h) for h in self.encoder_hidden]
        out["class_balance"] = None if self.class_balance is None \
            else np.asarray(self.class_balance, dtype=float).tolist()
        return {**out, **self._extra_params()}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model (state dicts + JSON header; no pickle) to ``path``.

        A model built with a custom ``end_model`` or ``encoder`` module is saved too; loading
        it needs a module of the same architecture (``load(path, end_model=..., encoder=...)``).
        """
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {}
        for prefix, net in (("end", self.end_model_), ("enc", self.encoder_)):
            for name, t in net.state_dict().items():
                arrays[f"{prefix}.{name}"] = t.detach().cpu().numpy()
        fitted = {"n_sources_": self.n_sources_, "n_features_": self.n_features_,
                  "tau1_": self.tau1_, "tau2_": self.tau2_, "columns_": self.columns_,
                  "best_epoch_": self.best_epoch_, "best_valid_score_": self.best_valid_score_,
                  "n_train_rows_": self.n_train_rows_, "history_": self.history_,
                  "custom_end_model": self.end_model is not None,
                  "custom_encoder": self.encoder is not None}
        save_arrays(path, self._kind, {"params": self._params(), "fitted": fitted}, arrays)

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> WeaSELBase:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def _load(cls, path: str | os.PathLike[str], end_model: nn.Module | None,
              encoder: nn.Module | None) -> Any:
        meta, arrays = load_arrays(path, cls._kind)
        params, fitted = meta["params"], meta["fitted"]
        model = cls._from_params(params)
        for key in ("n_sources_", "n_features_", "tau1_", "tau2_", "columns_", "best_epoch_",
                    "best_valid_score_", "n_train_rows_", "history_"):
            setattr(model, key, fitted[key])
        if fitted["custom_end_model"] and end_model is None:
            raise ConfigError(f"{path} was fitted with a custom end model; pass a module of the "
                              "same architecture: load(path, end_model=module)")
        if fitted["custom_encoder"] and encoder is None:
            raise ConfigError(f"{path} was fitted with a custom encoder; pass a module of the "
                              "same architecture: load(path, encoder=module)")
        model.end_model = end_model
        model.encoder = encoder
        cards = model._cardinalities()
        enc_in = sum(m * k for m, k in zip(model.n_sources_, cards, strict=True)) \
            + (model.n_features_ if model.use_features else 0)
        enc_out = sum(m * c for m, c in zip(model.n_sources_, model.columns_, strict=True))
        end = copy.deepcopy(end_model) if end_model is not None \
            else model._default_end_model(model.n_features_)
        enc = copy.deepcopy(encoder) if encoder is not None else Encoder(
            enc_in, enc_out, model.encoder_hidden, model.encoder_batch_norm, model.dropout)
        for prefix, net in (("end", end), ("enc", enc)):
            state = {k[len(prefix) + 1:]: torch.from_numpy(np.array(v))
                     for k, v in arrays.items() if k.startswith(prefix + ".")}
            net.load_state_dict(state)
            net.to(model.device)
            net.eval()
        model.end_model_ = end
        model.encoder_ = enc
        model._log_prior_t = torch.as_tensor(model._log_prior(), dtype=torch.float32,
                                             device=model.device)
        return model


def _progress(it: range, enabled: bool, name: str) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=f"{name} epochs", leave=False)


class WeaSEL(WeaSELBase):
    """End-to-end weak supervision for one task (Cachay et al., NeurIPS 2021, Algorithm 1).

    Parameters
    ----------
    cardinality
        Number of classes ``k``.
    end_model
        A ``torch.nn.Module`` mapping ``(b, d)`` float features to ``(b, k)`` logits; it is
        copied, trained and kept as ``end_model_``. Default: :class:`~metal.weasel.networks.
        MLPEndModel` with hidden sizes ``end_hidden`` (the paper's 50, 50, 25) and ``dropout``.
    encoder
        A module mapping ``(b, m*k [+ d])`` (the flattened one-hot votes, then the features
        when ``use_features``) to ``(b, m)`` or ``(b, m*k)`` raw accuracy scores. Default: an
        MLP with hidden sizes ``encoder_hidden`` (70, 70), batch norm
        (``encoder_batch_norm``) and ``dropout``.
    use_features
        Feed the features to the encoder besides the votes (paper: on).
    accuracy
        ``"softmax"`` (paper), ``"sigmoid"``, ``"relu"`` or ``"tanh"`` (Table 5 ablations).
    class_conditional
        One accuracy per source and class (default: when ``k > 2``, as in the paper).
    tau1, tau2
        Inverse temperatures: ``theta = tau2 * softmax(tau1 * e)``. ``tau2`` defaults to
        ``sqrt(m)``; ``tau1`` to 1 when a validation split is given and 1/3 otherwise (the
        paper's advice against collapse without early stopping).
    loss, stop_grad
        ``"symmetric_ce"`` with stop-gradients on both targets (paper); ablations:
        ``"hellinger"``, ``"l1"``, ``"ce_end"``, ``"ce_encoder"``, ``stop_grad=False``.
    class_balance
        ``P(y)`` added as ``log p`` to the encoder's logits (default uniform: no prior, as the
        paper runs WeaSEL).
    lr, weight_decay, batch_size, max_epochs, patience
        Adam on both networks; early stopping after ``patience`` epochs without a better
        validation score (only with ``X_valid``/``Y_valid``), then the best epoch is restored.
    valid_metric
        ``"auto"`` (ROC AUC for two classes, as in the paper; accuracy otherwise),
        ``"auc"``, ``"accuracy"``, ``"f1"`` or ``"macro_f1"``.
    seed
        Seeds initialisation, shuffling and dropout (torch's global RNG is restored after fit).
    device
        ``"cpu"`` or ``"cuda"``.
    progress
        Show a progress bar over epochs.

    Examples
    --------
    >>> import numpy as np
    >>> from metal.weasel import WeaSEL
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 5)); Y = (X[:, 0] > 0).astype(int)
    >>> L = np.where(rng.random((400, 3)) < 0.8, Y[:, None], 1 - Y[:, None])
    >>> model = WeaSEL(max_epochs=5, progress=False).fit(L, X)
    >>> model.predict_proba(X).shape
    (400, 2)
    """

    _kind = "WeaSEL"

    def __init__(self, cardinality: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cardinality = cardinality

    def _cardinalities(self) -> list[int]:
        from metal.label_model.base import check_cardinality

        return [check_cardinality(self.cardinality)]

    def _label_space_size(self) -> int:
        return int(self.cardinality)

    def _auto_metric(self) -> str:
        return "auc" if self.cardinality == 2 else "accuracy"

    def _combine_encoder(self, task_logits: list[torch.Tensor], log_prior: torch.Tensor
                         ) -> torch.Tensor:
        return torch.log_softmax(task_logits[0] + log_prior, dim=1)

    def _combine_end(self, out: Any) -> torch.Tensor:
        return torch.log_softmax(out, dim=1)

    def _default_end_model(self, n_features: int) -> nn.Module:
        return MLPEndModel(n_features, int(self.cardinality), self.end_hidden, self.dropout)

    def _check_valid_labels(self, Y: Any, n: int) -> np.ndarray:
        from metal.matrix import check_gold

        return check_gold(Y, n, int(self.cardinality), name="Y_valid")

    def _valid_score(self, log_f: np.ndarray, Y: np.ndarray, metric: str) -> float:
        if metric == "auc":
            return roc_auc(Y, log_f[:, 1])
        preds = np.argmax(log_f, axis=1)
        return score_predictions(Y, preds, [metric], cardinality=self.cardinality)[metric]

    def _extra_params(self) -> dict[str, Any]:
        return {"cardinality": int(self.cardinality)}

    def _data(self, L: Any, X: Any, n_sources: int | None = None) -> WeakData:
        votes = check_task_votes(L, self._cardinalities()[0], n_sources)
        Xc = None if X is None else check_features(X, votes.n_rows,
                                                   getattr(self, "n_features_", None))
        return WeakData((votes,), Xc)

    def fit(self, L: Any, X: Any, X_valid: Any = None, Y_valid: Any = None) -> WeaSEL:
        """Train the encoder and the end model together; no labels of the training rows used.

        Parameters
        ----------
        L
            Votes: an ``(n, m)`` label matrix (``-1`` abstain; numpy or ``scipy.sparse``
            storing votes only) or an ``(n, m, k)`` array of probabilistic votes (each source's
            distribution over the classes; all zeros = abstain).
        X
            ``(n, d)`` features of the same rows (numpy or ``scipy.sparse``).
        X_valid, Y_valid
            Optional small labelled split for early stopping (gold labels, ``-1`` unknown).
        """
        data = self._data(L, X)
        return self._fit(data, X_valid, Y_valid)  # type: ignore[return-value]

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, k)`` class probabilities of the end model (features only, no votes needed)."""
        return np.exp(self._predict_log_proba(X))

    def predict(self, X: Any, tie_break: str = "random") -> np.ndarray:
        """The end model's most probable class of each row (ties as in ``probs_to_preds``)."""
        return probs_to_preds(self.predict_proba(X), tie_break, seed=int(self.seed))

    def score(self, X: Any, Y: Any, metrics: Sequence[str] = ("accuracy",),
              tie_break: str = "random") -> dict[str, float]:
        """Score the end model's predictions against gold ``Y`` (``-1`` rows skipped).

        Besides :data:`metal.metrics.METRICS`, ``"auc"`` (binary) is accepted.
        """
        from metal.matrix import check_gold

        probs = self.predict_proba(X)
        Yc = check_gold(Y, probs.shape[0], int(self.cardinality))
        rest = [m for m in metrics if m != "auc"]
        out = score_predictions(Yc, probs_to_preds(probs, tie_break, seed=int(self.seed)),
                                rest, cardinality=int(self.cardinality)) if rest else {}
        if "auc" in metrics:
            out["auc"] = roc_auc(Yc, probs[:, 1])
        return {m: out[m] for m in metrics}

    def predict_proba_encoder(self, L: Any, X: Any = None) -> np.ndarray:
        """``(n, k)`` the encoder's labels ``y_e`` for votes ``L`` (and features ``X``).

        These are WeaSEL's probabilistic training labels; a row without any vote gets the
        prior. ``X`` is required when the encoder uses features.
        """
        self._check_fitted()
        if self.use_features and X is None:
            raise ConfigError("this WeaSEL's encoder reads the features; pass X as well")
        data = self._data(L, X if self.use_features else None, self.n_sources_[0])
        return np.exp(self._encoder_log_proba(data))

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> WeaSEL:
        return cls(**params)

    @classmethod
    def load(cls, path: str | os.PathLike[str], end_model: nn.Module | None = None,
             encoder: nn.Module | None = None) -> WeaSEL:
        """Read a model written by :meth:`save`."""
        return cls._load(path, end_model, encoder)  # type: ignore[no-any-return]

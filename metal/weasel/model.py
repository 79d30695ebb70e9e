"""WeaSEL: train an end model directly from weak sources (Cachay et al., NeurIPS 2021).

An *encoder* ``e`` reads each example's votes (one-hot, or distributions for probabilistic
sources) and, by default, its features, and outputs per-example source accuracies
``theta = tau2 * softmax(tau1 * e(votes, x))`` (over the sources; one column per class when
accuracies are class-conditional). Its label is ``y_e = softmax(sum_j theta_j * V_j + log p)``,
a reweighted vote. The *end model* ``f`` (the project's :class:`~metal.end_model.EndModel`,
with its input modules) sees only the features. Both are trained together to agree:
``CE(y_f, stopgrad(y_e)) + CE(y_e, stopgrad(y_f))``, on the rows with at least one vote, by
the end model's :class:`~metal.end_model.Trainer`, with early stopping on a small labelled
validation split when one is given. By default the end model is first warm-started on a label
model's posteriors (``warm_start``), which breaks tied votes by the sources' accuracies.

:class:`WeaSEL` is the single-task model; :class:`~metal.weasel.MultiTaskWeaSEL` aggregates
over a task graph's feasible set and trains a :class:`~metal.end_model.MultiTaskEndModel`.
Both share :class:`WeaSELBase`.
"""

from __future__ import annotations

import copy
import io
import math
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from metal._io import load_arrays, save_arrays
from metal.end_model import EndModel, MultiTaskEndModel, Trainer, TrainerConfig
from metal.end_model.inputs import (
    INPUT_MODULES,
    build_input_module,
    default_input_module,
    to_device,
)
from metal.end_model.trainer import _better, arrays_to_state, seeded_rng, state_to_arrays
from metal.errors import ConfigError, MetalWarning, NotFittedError, NotIdentifiableError
from metal.label_model import LabelModel, MajorityVoter
from metal.metrics import score_predictions
from metal.weasel._core import (
    ACCURACY_FUNCTIONS,
    LOSSES,
    accuracies,
    aggregate,
    agreement_loss,
    default_tau2,
    masked_mean,
    voted_scores,
)
from metal.weasel._data import WeakData, batches, check_features, check_task_votes
from metal.weasel.networks import Encoder

SOFTMAX_OVER = ("all", "voters")
WARM_STARTS = (None, "label_model", "majority_vote")
VALID_METRICS = ("auto", "auc", "accuracy", "f1", "macro_f1", "loss")
# Training defaults of WeaSEL where they differ from TrainerConfig's: the paper's weight decay
# and a longer budget (early stopping usually ends training well before it). Patience 15: with
# many duplicated sources the valid score can dip for ~10 epochs while the encoder moves its
# weight off them, then recover (sms + 2,000 coin-flip copies, benchmarks/RESULTS.md); a
# longer patience only costs time, the best validated epoch is restored either way.
TRAINING_DEFAULTS: dict[str, Any] = {"n_epochs": 50, "weight_decay": 7e-7, "patience": 15}
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
    """Hyperparameters, validation, training and persistence shared by the WeaSEL models.

    Subclasses say which end model they train, how per-task logits become one distribution
    over the label space (:meth:`_combine_encoder`, :meth:`_combine_end`) and how a
    validation split is scored.
    """

    _kind = "WeaSELBase"

    def __init__(
        self,
        *,
        end_model: MultiTaskEndModel | None = None,
        encoder: nn.Module | None = None,
        encoder_hidden: Sequence[int] = (70, 70),
        encoder_batch_norm: bool = True,
        encoder_dropout: float = 0.3,
        encoder_feature_width: int = 64,
        use_features: bool = True,
        accuracy: str = "softmax",
        softmax_over: str = "voters",
        class_conditional: bool | None = None,
        tau1: float | None = None,
        tau2: float | None = None,
        loss: str = "symmetric_ce",
        stop_grad: bool = True,
        class_balance: Any = None,
        warm_start: str | None = "label_model",
        valid_metric: str = "auto",
        trainer: TrainerConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
        **train_options: Any,
    ) -> None:
        self.end_model = end_model
        self.encoder = encoder
        self.encoder_hidden = encoder_hidden
        self.encoder_batch_norm = encoder_batch_norm
        self.encoder_dropout = encoder_dropout
        self.encoder_feature_width = encoder_feature_width
        self.use_features = use_features
        self.accuracy = accuracy
        self.softmax_over = softmax_over
        self.class_conditional = class_conditional
        self.tau1 = tau1
        self.tau2 = tau2
        self.loss = loss
        self.stop_grad = stop_grad
        self.class_balance = class_balance
        self.warm_start = warm_start
        self.valid_metric = valid_metric
        self.trainer = trainer
        self.seed = seed
        self.device = device
        self.train_options = train_options

    # ------------------------------------------------------------------ subclass hooks
    def _cardinalities(self) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _label_space_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _combine_encoder(self, task_logits: list[torch.Tensor], log_prior: torch.Tensor
                         ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _combine_end(self, out: Mapping[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _default_end_model(self) -> MultiTaskEndModel:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_end_model(self, end: MultiTaskEndModel) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _valid_scores(self, log_f: np.ndarray, Y: np.ndarray, metric: str
                      ) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_valid_labels(self, Y: Any, n: int) -> np.ndarray:  # pragma: no cover
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
        if self.softmax_over not in SOFTMAX_OVER:
            raise ConfigError(f"softmax_over={self.softmax_over!r}; expected one of "
                              f"{SOFTMAX_OVER}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r} is not known; expected one of {LOSSES} "
                              "(symmetric_ce is the paper's default)")
        if self.warm_start not in WARM_STARTS:
            raise ConfigError(f"warm_start={self.warm_start!r}; expected one of {WARM_STARTS}")
        if self.valid_metric not in VALID_METRICS:
            raise ConfigError(f"valid_metric={self.valid_metric!r} is not known; expected one "
                              f"of {VALID_METRICS}")
        for name in ("tau1", "tau2"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name}={v!r}; expected a positive number or None (the "
                                  "paper's default)")
        if not 0.0 <= float(self.encoder_dropout) < 1.0:
            raise ConfigError(f"encoder_dropout={self.encoder_dropout}; expected [0, 1)")
        if self.end_model is not None and not isinstance(self.end_model, MultiTaskEndModel):
            raise ConfigError(f"end_model is a {type(self.end_model).__name__}; expected an "
                              "(unfitted) metal.end_model.EndModel / MultiTaskEndModel, whose "
                              "input module, trunk and heads WeaSEL trains")

    def _trainer_config(self, metric: str) -> TrainerConfig:
        base = self.trainer if self.trainer is not None \
            else {**TrainerConfig().to_dict(), **TRAINING_DEFAULTS}
        return TrainerConfig.from_options(base, **{**self.train_options,
                                                   "valid_metric": metric})

    def _check_fitted(self) -> None:
        if not hasattr(self, "end_model_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call "
                                 ".fit(L, X) before using it")

    def _row_tau2(self) -> bool:
        """Whether the default ``tau2`` is per row: ``sqrt(v)``, ``v`` the row's voters.

        The paper's ``tau2 = sqrt(m)`` scales a softmax over all ``m`` sources; a row with ``v``
        voters then starts with evidence ``v / sqrt(m)``, which is ``sqrt(m)`` when every
        source votes. Restricted to the voters, the same ``sqrt(m)`` would give a row with a
        single vote among many sparse sources a near-certain label; ``sqrt(v)`` keeps the
        paper's value on dense sources (``v = m``, its robustness experiments) and lets the
        evidence grow with the votes actually cast.
        """
        return self.tau2 is None and self.softmax_over == "voters" and self.accuracy == "softmax"

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

    # ------------------------------------------------------------------ encoder side
    def _task_scores(self, enc: nn.Module, votes: list[torch.Tensor], x: Any
                     ) -> list[torch.Tensor]:
        """Per-task aggregated scores ``sum_j theta_j V_j`` (before the prior), ``(b, k_s)``."""
        flat = torch.cat([v.reshape(v.shape[0], -1) for v in votes], dim=1)
        raw = enc(flat, x if self.use_features else None)
        out, start = [], 0
        for s, (v, c) in enumerate(zip(votes, self.columns_, strict=True)):
            b, m, _ = v.shape
            e = raw[:, start:start + m * c].reshape(b, m, c)
            start += m * c
            if self.softmax_over == "voters" and c > 1 and self.accuracy == "softmax":
                e = voted_scores(e, v)  # one budget shared by the voted cells, see voted_scores
            out.append(aggregate(self._theta(e, v.sum(dim=2) > 0, self.tau2_[s]), v))
        return out

    def _theta(self, e: torch.Tensor, votes_cast: torch.Tensor, tau2: float | None
               ) -> torch.Tensor:
        """Accuracies of scores ``e`` ``(b, m, c)``; ``votes_cast`` ``(b, m)`` marks the sources
        that vote; ``tau2=None``: sqrt(voters) per row."""
        voting = votes_cast if self.softmax_over == "voters" else None
        scale: float | torch.Tensor
        if tau2 is None:  # per row: sqrt(number of voting sources), see _row_tau2
            assert voting is not None
            scale = voting.sum(dim=1, keepdim=True).clamp(min=1).to(e.dtype).sqrt()
            scale = scale.unsqueeze(-1)
        else:
            scale = tau2
        return accuracies(e, self.accuracy, self.tau1_, scale, voting)

    def _log_encoder(self, enc: nn.Module, votes: list[torch.Tensor], x: Any) -> torch.Tensor:
        return self._combine_encoder(self._task_scores(enc, votes, x), self._log_prior_t)

    def _build_encoder(self, X: Any, n_sources: list[int], cards: list[int]) -> nn.Module:
        if self.encoder is not None:
            return copy.deepcopy(self.encoder)
        feature_module, dim = None, 0
        if self.use_features:
            feature_module = default_input_module(X, width=int(self.encoder_feature_width))
            prepare = getattr(feature_module, "prepare", None)
            if callable(prepare):
                prepare(X)
            dim = int(feature_module.out_features)  # type: ignore[arg-type]
        n_in = sum(m * k for m, k in zip(n_sources, cards, strict=True))
        n_out = sum(m * c for m, c in zip(n_sources, self.columns_, strict=True))
        return Encoder(n_in, n_out, feature_module, dim, self.encoder_hidden,
                       self.encoder_batch_norm, float(self.encoder_dropout))

    # ------------------------------------------------------------------ fit
    def _fit(self, data: WeakData, X_valid: Any, Y_valid: Any) -> WeaSELBase:
        self._check_params()
        rows = np.flatnonzero(data.has_vote())  # rows with no vote carry no signal: masked
        if rows.size < 2:
            raise ConfigError(f"only {rows.size} row(s) have a vote; WeaSEL trains on the rows "
                              "where at least one source votes. Check the label matrix")
        if (X_valid is None) != (Y_valid is None):
            raise ConfigError("pass both X_valid and Y_valid (a small labelled split for early "
                              "stopping), or neither")
        has_valid = X_valid is not None
        cards = self._cardinalities()
        n_sources = [t.n_sources for t in data.tasks]
        # paper defaults: tau2 = sqrt(m); tau1 = 1 with early stopping, 1/3 without (Sec. 6)
        self.tau1_ = float(self.tau1) if self.tau1 is not None else (1.0 if has_valid else 1 / 3)
        self.tau2_ = [float(self.tau2) if self.tau2 is not None
                      else None if self._row_tau2() else default_tau2(m) for m in n_sources]
        cc = self.class_conditional
        self.columns_ = [k if (cc if cc is not None else k > 2) else 1 for k in cards]
        device = torch.device(self.device)
        self._log_prior_t = torch.as_tensor(self._log_prior(), dtype=torch.float32,
                                            device=device)
        metric = self.valid_metric if self.valid_metric != "auto" else self._auto_metric()
        cfg = self._trainer_config(metric)
        validate = None
        if has_valid:
            Xv = check_features(X_valid, None, name="X_valid")
            Yv = self._check_valid_labels(Y_valid, _n_rows(Xv))

        end = copy.deepcopy(self.end_model) if self.end_model is not None \
            else self._default_end_model()
        end.tasks_, end.task_graph_ = end._task_spec()
        self._check_end_model(end)
        X_train = _subset(data.X, rows)  # input modules standardise on the training rows only
        with seeded_rng(int(self.seed), device):  # both networks start from the seed
            net, dim = end._build(X_train)
            enc = self._build_encoder(X_train, n_sources, cards)
        del X_train
        net.to(device)
        enc.to(device)
        both = nn.ModuleDict({"end": net, "encoder": enc})
        has_bn = any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in enc.modules())

        def batch_loss(batch: np.ndarray) -> torch.Tensor:
            idx = rows[batch]
            votes = [v.to(device) for v in data.votes(idx)]
            x = to_device(data.features(idx), device)
            if has_bn and idx.size < 2:  # batch norm cannot normalise one row: use its stats
                enc.eval()
            log_e = self._log_encoder(enc, votes, x)
            enc.train()
            log_f = self._combine_end(net(x))
            mask = torch.stack([v.sum(dim=(1, 2)) > 0 for v in votes]).any(dim=0)
            return masked_mean(agreement_loss(log_f, log_e, self.loss, self.stop_grad), mask)

        if has_valid:
            def validate() -> dict[str, float]:
                return self._valid_scores(self._end_log_probs(net, Xv), Yv, metric)

        warm = self._warm_start(data, rows, both, cfg, validate, device)
        result = Trainer(cfg).fit(both, batch_loss, int(rows.size), validate=validate,
                                  seed=int(self.seed), device=device)
        self.warm_score_ = None if warm is None else warm[0]
        self.warm_start_kept_ = False
        if warm is not None and warm[0] is not None and (
                result.best_score is None or _better(cfg.valid_metric, warm[0],
                                                      result.best_score, 0.0)):
            # the warm start is the selection's epoch -1: no joint epoch validated better
            both.load_state_dict(warm[1])
            self.warm_start_kept_ = True
        end.network_, end.input_dim_ = net, dim
        end.class_weights_ = [None] * len(end.tasks_)
        end._set_result(result)
        enc.eval()
        self.end_model_ = end
        self.encoder_ = enc
        self.history_ = result.history
        self.best_epoch_ = -1 if self.warm_start_kept_ else result.best_epoch
        self.best_valid_score_ = self.warm_score_ if self.warm_start_kept_ \
            else result.best_score
        self.n_sources_ = n_sources
        self.n_train_rows_ = int(rows.size)
        return self

    def _warm_targets(self, data: WeakData, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), K)`` label-free starting labels of the end model over the label space.

        Each task's votes are aggregated on their own (``"label_model"``: a
        :class:`~metal.LabelModel` fitted on the training rows, whose class-conditional source
        accuracies come from the sources' agreements; ``"majority_vote"``), and the per-task
        posteriors are combined over the label space like the encoder's per-task logits.
        Probabilistic votes enter as their most probable class.
        """
        logs = []
        for t in data.tasks:
            if t.labels is not None:
                L = t.labels[rows]
            else:
                assert t.probs is not None
                P = t.probs[rows]
                L = np.where(P.sum(axis=2) > 0, P.argmax(axis=2), -1)
            probs = None
            if self.warm_start == "label_model":
                L = _distinct_columns(L)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", MetalWarning)
                        lm = LabelModel(t.cardinality, seed=int(self.seed)).fit(L)
                        probs = lm.predict_proba(L)
                except NotIdentifiableError:  # e.g. two distinct sources: the vote itself
                    probs = None
            if probs is None:
                probs = MajorityVoter(t.cardinality).predict_proba(L)
            logs.append(torch.as_tensor(np.log(np.clip(probs, 1e-8, None)),
                                        dtype=torch.float32))
        zero = torch.zeros(self._label_space_size(), dtype=torch.float32)
        return np.exp(self._combine_encoder(logs, zero).numpy())

    def _warm_start(self, data: WeakData, rows: np.ndarray, both: nn.ModuleDict,
                    cfg: TrainerConfig, validate: Any, device: torch.device
                    ) -> tuple[float | None, dict[str, torch.Tensor]] | None:
        """Train the end model alone on the warm-start labels (same budget and early stopping
        as the joint training); returns its best valid score and the state of both networks
        (``None`` without ``warm_start``)."""
        self.warm_history_: list[dict[str, float]] = []
        if self.warm_start is None:
            return None
        target = torch.as_tensor(self._warm_targets(data, rows), dtype=torch.float32)
        net = both["end"]

        def warm_loss(batch: np.ndarray) -> torch.Tensor:
            x = to_device(data.features(rows[batch]), device)
            log_f = self._combine_end(net(x))
            return -(target[batch].to(device) * log_f).sum(dim=1).mean()

        warm_cfg = TrainerConfig.from_options(cfg.to_dict(), checkpoint_path=None)
        res = Trainer(warm_cfg).fit(net, warm_loss, int(rows.size), validate=validate,
                                    seed=int(self.seed), device=device)
        self.warm_history_ = res.history
        return res.best_score, {k: v.detach().clone() for k, v in both.state_dict().items()}

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def _end_log_probs(self, net: nn.Module, X: Any) -> np.ndarray:
        from metal.end_model.inputs import take_rows

        was_training = net.training
        net.eval()
        out = []
        for b in batches(np.arange(_n_rows(X)), _PREDICT_BATCH):
            x = to_device(take_rows(X, b), torch.device(self.device))
            out.append(self._combine_end(net(x)).double().cpu().numpy())
        net.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, self._label_space_size()))

    @torch.no_grad()
    def _encoder_log_proba(self, data: WeakData) -> np.ndarray:
        self._check_fitted()
        dev = torch.device(self.device)
        out = []
        for b in batches(np.arange(data.n_rows), _PREDICT_BATCH):
            votes = [v.to(dev) for v in data.votes(b)]
            x = to_device(data.features(b), dev)
            out.append(self._log_encoder(self.encoder_, votes, x).double().cpu().numpy())
        log_p = np.concatenate(out)
        # a row without any vote gets the prior: the encoder has nothing to reweight
        log_p[~data.has_vote()] = self._log_prior()
        return log_p

    def _encoder_data(self, L: Any, X: Any) -> WeakData:
        self._check_fitted()
        if self.use_features and X is None:
            raise ConfigError("this model's encoder reads the features; pass X as well")
        return self._data(L, X if self.use_features else None, self.n_sources_)

    def _data(self, L: Any, X: Any, n_sources: Sequence[int] | None = None
              ) -> WeakData:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ persistence
    def _params(self) -> dict[str, Any]:
        names = ("encoder_batch_norm", "encoder_dropout", "encoder_feature_width",
                 "use_features", "accuracy",
                 "softmax_over", "warm_start",
                 "class_conditional", "tau1", "tau2", "loss", "stop_grad", "valid_metric",
                 "seed", "device")
        out: dict[str, Any] = {n: getattr(self, n) for n in names}
        out["encoder_hidden"] = [int(h) for h in self.encoder_hidden]
        out["class_balance"] = None if self.class_balance is None \
            else np.asarray(self.class_balance, dtype=float).tolist()
        out["trainer"] = self._trainer_config(
            self.valid_metric if self.valid_metric != "auto" else self._auto_metric()).to_dict()
        return {**out, **self._extra_params()}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to ``path`` (``.npz`` + JSON header; no pickle).

        The end model is stored in its own save format inside the file (``end_model_`` can
        also be saved on its own and read with ``EndModel.load``). Custom input modules,
        heads or encoders are saved as weights; ``load`` needs the modules passed again.
        """
        self._check_fitted()
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "end_model.npz"
            self.end_model_.save(file)
            end_bytes = np.frombuffer(file.read_bytes(), dtype=np.uint8)
        enc = self.encoder_
        feature = getattr(enc, "feature_module", None)
        spec = None
        if isinstance(enc, Encoder) and feature is not None \
                and type(feature).__name__ in INPUT_MODULES and hasattr(feature, "config"):
            spec = {"name": type(feature).__name__, "config": feature.config()}
        fitted = {"n_sources_": self.n_sources_, "tau1_": self.tau1_, "tau2_": self.tau2_,
                  "columns_": self.columns_, "best_epoch_": self.best_epoch_,
                  "best_valid_score_": self.best_valid_score_,
                  "n_train_rows_": self.n_train_rows_, "warm_score_": self.warm_score_,
                  "warm_start_kept_": self.warm_start_kept_,
                  "encoder": enc.config() if isinstance(enc, Encoder) else None,
                  "feature_module": spec}
        arrays = {"end_model_file": end_bytes, **state_to_arrays(enc.state_dict(), "encoder/")}
        save_arrays(path, self._kind, {"params": self._params(), "fitted": fitted}, arrays)

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> WeaSELBase:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def _load(cls, path: str | os.PathLike[str], input_module: nn.Module | None,
              heads: Mapping[str, nn.Module] | None, encoder: nn.Module | None) -> Any:
        meta, arrays = load_arrays(path, cls._kind)
        params, fitted = meta["params"], meta["fitted"]
        model = cls._from_params(params)
        for key in ("n_sources_", "tau1_", "tau2_", "columns_", "best_epoch_",
                    "best_valid_score_", "n_train_rows_"):
            setattr(model, key, fitted[key])
        model.warm_score_ = fitted.get("warm_score_")
        model.warm_start_kept_ = bool(fitted.get("warm_start_kept_", False))
        end_cls = EndModel if cls._kind == "WeaSEL" else MultiTaskEndModel
        end = end_cls.load(io.BytesIO(arrays["end_model_file"].tobytes()),  # type: ignore[arg-type]
                           input_module=input_module, heads=heads, device=model.device)
        if encoder is not None:
            enc = copy.deepcopy(encoder)
        elif fitted["encoder"] is None:
            raise ConfigError(f"{path} was fitted with a custom encoder; pass a module of the "
                              "same architecture: load(path, encoder=module)")
        else:
            cfg = dict(fitted["encoder"])
            feature = None
            if cfg["feature_dim"]:
                spec = fitted["feature_module"]
                if spec is None:
                    raise ConfigError(f"{path}'s encoder reads features through a custom "
                                      "module; pass the whole encoder: load(path, encoder=...)")
                feature = build_input_module(spec)
            enc = Encoder(cfg["n_vote_inputs"], cfg["n_outputs"], feature, cfg["feature_dim"],
                          cfg["hidden"], cfg["batch_norm"], cfg["dropout"])
        enc.load_state_dict(arrays_to_state(arrays, "encoder/"))
        enc.to(torch.device(model.device))
        enc.eval()
        model.end_model_ = end
        model.encoder_ = enc
        model.history_ = end.history_
        model._log_prior_t = torch.as_tensor(model._log_prior(), dtype=torch.float32,
                                             device=torch.device(model.device))
        return model


def _distinct_columns(L: Any) -> Any:
    """``L`` with each set of identical source columns kept once.

    Copies of a source break the label model's conditional independence in the worst way (they
    always agree, so it trusts them most); their votes add nothing a single copy does not say.
    """
    seen: dict[tuple[bytes, bytes], int] = {}
    if sp.issparse(L):
        C = sp.csc_matrix(L)
        C.sort_indices()
        for j in range(C.shape[1]):
            lo, hi = C.indptr[j], C.indptr[j + 1]
            seen.setdefault((C.indices[lo:hi].tobytes(), C.data[lo:hi].tobytes()), j)
    else:
        A = np.asarray(L)
        for j in range(A.shape[1]):
            seen.setdefault((np.ascontiguousarray(A[:, j]).tobytes(), b""), j)
    keep = sorted(seen.values())
    return L if len(keep) == L.shape[1] else L[:, keep]


def _subset(X: Any, rows: np.ndarray) -> Any:
    """The rows ``rows`` of a prepared input (array, sparse matrix, dict, or ``take``-able)."""
    if isinstance(X, Mapping):
        return {k: _subset(v, rows) for k, v in X.items()}
    if isinstance(X, np.ndarray) or hasattr(X, "tocsr"):
        return X[rows]
    return X.take(rows) if hasattr(X, "take") else X


def _n_rows(X: Any) -> int:
    from metal.end_model.inputs import n_rows

    return int(n_rows(X))


class WeaSEL(WeaSELBase):
    """End-to-end weak supervision for one task (Cachay et al., NeurIPS 2021, Algorithm 1).

    Parameters
    ----------
    cardinality
        Number of classes ``k``.
    end_model
        An unfitted :class:`~metal.end_model.EndModel` whose network (input module, trunk,
        head) WeaSEL trains; default ``EndModel(k)``, the same end model the label-model
        pipeline uses. Its training options are not used: WeaSEL's (below) are.
    encoder
        A module ``forward(votes, features) -> (b, m)`` or ``(b, m * k)`` raw accuracy scores,
        ``votes`` being the flattened ``(m, k)`` one-hot votes. Default:
        :class:`~metal.weasel.Encoder`, an MLP with hidden sizes ``encoder_hidden`` (the
        paper's 70, 70), batch norm (``encoder_batch_norm``) and ``encoder_dropout`` (0.3),
        reading the features through the end model's default input module for ``X``
        (standardised dense features; a sparse TF-IDF matrix through a
        ``SparseInput`` of width ``encoder_feature_width``, 64).
    use_features
        Feed the features to the encoder besides the votes (paper: on).
    accuracy
        ``"softmax"`` (paper), ``"sigmoid"``, ``"relu"`` or ``"tanh"`` (Table 5 ablations).
    softmax_over
        ``"voters"`` (default; departs from the paper): the softmax of the accuracies runs only
        over the sources that vote on the row, so a random encoder gives a (scaled) majority
        vote, the starting point the paper's Section 6 relies on. ``"all"`` (the paper): over
        every source; with sparse sources a random encoder then spreads ``tau2`` over the ``m``
        sources and a row with one vote gets a near-uniform label (semeval: 1.3 votes of 164
        sources per row), and the encoder can flatten labels by moving weight onto abstaining
        sources (it collapsed on generated hierarchies). On the six WRENCH sets the
        default scored higher than ``"all"`` on five of six valid splits (mean 0.676 vs 0.642,
        seed 0); see docs/weasel.md.
    class_conditional
        One accuracy per source and class (default: when ``k > 2``, as in the paper). With the
        softmax over the voters, source ``j`` voting ``c`` takes the score ``e[j, c]`` and one
        softmax runs over the voters (one budget ``tau2`` for the row, not one per class).
    tau1, tau2
        Inverse temperatures: ``theta = tau2 * softmax(tau1 * e)``. ``tau2`` defaults to
        ``sqrt(v)`` per row, ``v`` the number of sources voting on it (``sqrt(m)``, the paper's,
        with ``softmax_over="all"`` or a non-softmax ``accuracy``; the two agree when every
        source votes); ``tau1`` to 1 when a validation split is given and 1/3 otherwise (the
        paper's advice against collapse without early stopping).
    loss, stop_grad
        ``"symmetric_ce"`` with stop-gradients on both targets (paper); ablations:
        ``"hellinger"`` (squared Hellinger), ``"l1"``, ``"ce_end"`` / ``"ce_encoder"`` (one
        asymmetric term), ``stop_grad=False``.
    class_balance
        ``P(y)`` added as ``log p`` to the encoder's logits (default uniform, as the paper runs
        WeaSEL).
    warm_start
        ``"label_model"`` (default; departs from the paper): before the joint training, the
        end model trains alone (same budget and early stopping) on the posteriors of a
        :class:`~metal.LabelModel` fitted to the training votes without labels, each set of
        identical source columns kept once (copies carry no new information and break its
        conditional independence; a majority vote where two or fewer distinct sources make it
        not identifiable). The joint training then starts from that end model, and the warm
        start counts as the selection's epoch -1: when no joint epoch validates better, it is
        the end model returned (``warm_start_kept_``, ``best_epoch_ == -1``). The label model
        breaks tied votes by the sources' class-conditional accuracies, which the agreement
        loss alone has no signal for (docs/weasel.md). ``"majority_vote"``: the same with a
        majority vote; ``None``: the paper's random start.
    valid_metric
        Early-stopping metric on ``(X_valid, Y_valid)``: ``"auto"`` (ROC AUC for two classes,
        as in the paper; accuracy otherwise), ``"auc"``, ``"accuracy"``, ``"f1"``,
        ``"macro_f1"`` or ``"loss"``.
    trainer, **train_options
        :class:`~metal.end_model.TrainerConfig` fields (``n_epochs``, ``lr``, ``batch_size``,
        ``patience``, ``weight_decay``, ``progress``, ``checkpoint_path`` ...). Defaults: the
        TrainerConfig defaults with :data:`TRAINING_DEFAULTS` (50 epochs, weight decay 7e-7,
        patience 15); one Adam optimiser over both networks.
    seed
        Seeds initialisation, batch order and dropout (torch's global RNG is not touched).
    device
        ``"cpu"`` or ``"cuda"``.

    Attributes
    ----------
    end_model_ : EndModel
        The trained end model (a fitted ``EndModel``: ``predict_proba``, ``save`` ...).
    encoder_ : torch.nn.Module
    history_ : list of dict
        Per epoch: ``train_loss`` (the agreement loss), ``valid_<metric>``, ``lr``, ``time``.
    best_epoch_ : int or None
        The joint epoch restored, ``-1`` when the warm start validated best.
    warm_score_ : float or None
        The warm-started end model's best valid score (``None`` without warm start or valid
        split).
    warm_start_kept_ : bool
    warm_history_ : list of dict
        The warm start's per-epoch records (empty without warm start).

    Examples
    --------
    >>> import numpy as np
    >>> from metal.weasel import WeaSEL
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 5)); Y = (X[:, 0] > 0).astype(int)
    >>> L = np.where(rng.random((400, 3)) < 0.8, Y[:, None], 1 - Y[:, None])
    >>> model = WeaSEL(n_epochs=5).fit(L, X)
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

    def _default_end_model(self) -> MultiTaskEndModel:
        return EndModel(int(self.cardinality), seed=int(self.seed), device=self.device)

    def _check_end_model(self, end: MultiTaskEndModel) -> None:
        if list(end.tasks_.values()) != [int(self.cardinality)]:
            raise ConfigError(f"end_model has tasks {end.tasks_}; WeaSEL(cardinality="
                              f"{self.cardinality}) needs EndModel({self.cardinality})")

    def _combine_encoder(self, task_logits: list[torch.Tensor], log_prior: torch.Tensor
                         ) -> torch.Tensor:
        return torch.log_softmax(task_logits[0] + log_prior, dim=1)

    def _combine_end(self, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.log_softmax(next(iter(out.values())), dim=1)

    def _check_valid_labels(self, Y: Any, n: int) -> np.ndarray:
        from metal.matrix import check_gold

        return check_gold(Y, n, int(self.cardinality), name="Y_valid")

    def _valid_scores(self, log_f: np.ndarray, Y: np.ndarray, metric: str) -> dict[str, float]:
        keep = Y >= 0
        out = {"loss": float(-np.mean(log_f[keep, Y[keep]]))}
        if metric == "auc":
            out["auc"] = roc_auc(Y, log_f[:, 1])
        elif metric != "loss":
            preds = np.argmax(log_f, axis=1)
            out[metric] = score_predictions(Y, preds, [metric],
                                            cardinality=int(self.cardinality))[metric]
        return out

    def _extra_params(self) -> dict[str, Any]:
        return {"cardinality": int(self.cardinality)}

    def _data(self, L: Any, X: Any, n_sources: Sequence[int] | None = None) -> WeakData:
        votes = check_task_votes(L, self._cardinalities()[0],
                                 None if n_sources is None else n_sources[0])
        Xp = None if X is None else check_features(X, votes.n_rows)
        return WeakData((votes,), Xp)

    def fit(self, L: Any, X: Any, X_valid: Any = None, Y_valid: Any = None) -> WeaSEL:
        """Train the encoder and the end model together; no labels of the training rows used.

        Parameters
        ----------
        L
            Votes: an ``(n, m)`` label matrix (``-1`` abstain; numpy or ``scipy.sparse``
            storing votes only) or an ``(n, m, k)`` array of probabilistic votes (each source's
            distribution over the classes; all zeros = abstain).
        X
            Features of the same rows, in any form the end model takes (dense array,
            ``scipy.sparse`` TF-IDF, dict of token arrays).
        X_valid, Y_valid
            Optional small labelled split for early stopping (gold labels, ``-1`` unknown).
        """
        data = self._data(L, X)
        return self._fit(data, X_valid, Y_valid)  # type: ignore[return-value]

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, k)`` class probabilities of the end model (features only, no votes needed)."""
        self._check_fitted()
        probs = self.end_model_.predict_proba(X)
        assert isinstance(probs, np.ndarray)  # an EndModel returns one (n, k) array
        return probs

    def predict(self, X: Any, tie_break: str = "first") -> np.ndarray:
        """The end model's most probable class of each row."""
        self._check_fitted()
        return self.end_model_.predict(X, tie_break)  # type: ignore[no-any-return]

    def score(self, X: Any, Y: Any, metrics: Sequence[str] = ("accuracy",),
              tie_break: str = "first") -> dict[str, float]:
        """Score the end model against gold ``Y`` (``-1`` rows skipped); ``"auc"`` accepted
        besides :data:`metal.metrics.METRICS`."""
        from metal.matrix import check_gold
        from metal.metrics import probs_to_preds

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
        return np.exp(self._encoder_log_proba(self._encoder_data(L, X)))

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> WeaSEL:
        return cls(**params)

    @classmethod
    def load(cls, path: str | os.PathLike[str], input_module: nn.Module | None = None,
             encoder: nn.Module | None = None) -> WeaSEL:
        """Read a model written by :meth:`save` (pass custom modules it cannot rebuild)."""
        return cls._load(path, input_module, None, encoder)  # type: ignore[no-any-return]

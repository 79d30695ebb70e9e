"""Multi-task end models trained on probabilistic labels, behind the scikit-learn contract."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from metal._io import load_arrays, save_arrays
from metal.end_model.inputs import (
    INPUT_MODULES,
    build_input_module,
    default_input_module,
    n_rows,
    prepare_inputs,
    take_rows,
    to_device,
)
from metal.end_model.loss import (
    balanced_class_weight,
    check_targets,
    covered_rows,
    soft_cross_entropy,
)
from metal.end_model.network import MultiTaskNetwork, reset_parameters
from metal.end_model.trainer import (
    Trainer,
    TrainerConfig,
    TrainResult,
    arrays_to_state,
    plot_history,
    seeded_rng,
    state_to_arrays,
)
from metal.errors import ConfigError, LabelMatrixError, NotFittedError
from metal.metrics import METRICS, probs_to_preds, score_predictions
from metal.tasks.graph import TaskGraph
from metal.tasks.serialize import task_graph_from_dict

PREDICT_BATCH = 4096


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available; use device='cpu' or "
                          "'auto'")
    return dev


class MultiTaskEndModel:
    """Input module -> shared trunk -> one head per task, trained on (soft) labels.

    Parameters
    ----------
    tasks
        ``{task_name: cardinality}``, or a :class:`~metal.TaskGraph` /
        :class:`~metal.TaskHierarchy`; with a graph, :meth:`predict` decodes jointly over its
        feasible set (every prediction is a feasible label vector).
    input_module
        Any ``torch.nn.Module`` mapping a batch of ``X`` to ``(b, d)`` features (see
        :mod:`metal.end_model.inputs`); ``None`` picks one from ``X``: :class:`SparseInput`
        for scipy.sparse, :class:`DenseInput` for dense arrays. It is copied at ``fit`` and
        re-initialised from ``seed`` (``reinitialize=False`` keeps its weights).
    hidden
        Widths of the shared trunk's layers.
    dropout
        Dropout after each trunk layer.
    head_depth
        ``{task: depth}``: attach a head after trunk layer ``depth`` (0 = on the input module).
    heads
        ``{task: module}`` replacing the default linear heads.
    task_weights
        ``{task: weight}`` in the summed loss (default 1 each).
    class_weight
        ``None``, ``"balanced"`` (inverse expected class frequency of the training targets,
        per task; for imbalanced tasks scored by F1) or ``{task: (k,) weights}``.
    mask_uncovered
        When ``fit`` receives the label matrix ``L``, drop each task's rows on which no source
        voted (their probabilistic labels are only the prior). ``False`` keeps them.
    joint_training
        With a task graph: the heads' logits are the factors of one distribution over the
        graph's feasible label vectors, ``q(y) ∝ exp(sum_s z_s(y_s))``, each task's loss is on
        its marginal of ``q``, and ``predict_proba`` returns those marginals; so training and
        the joint decoding of :meth:`predict` see the same distribution. ``False`` trains each
        head on its own softmax; the product taken at decoding then counts the evidence the
        heads share (a fine head already implies its coarse class) twice, and a weaker head
        overrides a better one (TREC coarse/fine: fine accuracy 0.72 vs 0.75, see
        ``benchmarks/RESULTS.md``). Ignored without a task graph.
    trainer
        A :class:`TrainerConfig` or dict; ``**train_options`` override its fields (e.g.
        ``n_epochs=20, lr=1e-3, patience=5, valid_metric="f1"``). With several tasks,
        ``valid_metric`` is the mean over tasks, or one task's score as
        ``"<task>_<metric>"`` (e.g. ``"fine_accuracy"``).
    seed
        Seeds initialisation, batch order and dropout (the global RNG is not touched).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.

    Attributes
    ----------
    network_ : MultiTaskNetwork
    history_ : list of dict
        Per epoch: ``train_loss``, ``lr``, ``valid_<metric>``, ``time``.
    best_epoch_ : int or None
        The epoch whose parameters were restored (``None`` without validation data).
    """

    # the training loop; metal.distributed.ddp swaps in its data-parallel subclass
    trainer_class: type[Trainer] = Trainer

    def __init__(
        self,
        tasks: Mapping[str, int] | TaskGraph,
        input_module: nn.Module | None = None,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.1,
        head_depth: Mapping[str, int] | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        task_weights: Mapping[str, float] | None = None,
        class_weight: str | Mapping[str, Any] | None = None,
        mask_uncovered: bool = True,
        joint_training: bool = True,
        reinitialize: bool = True,
        trainer: TrainerConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
        **train_options: Any,
    ) -> None:
        self.tasks = tasks
        self.input_module = input_module
        self.hidden = hidden
        self.dropout = dropout
        self.head_depth = head_depth
        self.heads = heads
        self.task_weights = task_weights
        self.class_weight = class_weight
        self.mask_uncovered = mask_uncovered
        self.joint_training = joint_training
        self.reinitialize = reinitialize
        self.trainer = trainer
        self.seed = seed
        self.device = device
        self.train_options = train_options

    # ------------------------------------------------------------------ configuration
    def _task_spec(self) -> tuple[dict[str, int], TaskGraph | None]:
        if isinstance(self.tasks, TaskGraph):
            g = self.tasks
            return dict(zip(g.task_names, g.cardinalities, strict=True)), g
        if not isinstance(self.tasks, Mapping) or not self.tasks:
            raise ConfigError(f"tasks={self.tasks!r}; expected {{task_name: cardinality}} or "
                              "a TaskGraph")
        spec = {str(t): int(k) for t, k in self.tasks.items()}
        bad = {t: k for t, k in spec.items() if k < 2}
        if bad:
            raise ConfigError(f"tasks {bad} have fewer than 2 classes; every task needs >= 2")
        return spec, None

    def _config(self) -> TrainerConfig:
        return TrainerConfig.from_options(self.trainer, **self.train_options)

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call "
                                 ".fit(X, Y) first")

    def _split_targets(self, Y: Any, n: int, name: str) -> list[Any]:
        """One target array per task from a list/tuple, dict, or (n, t) int array."""
        names = list(self.tasks_)
        if isinstance(Y, Mapping):
            missing = [t for t in names if t not in Y]
            if missing:
                raise LabelMatrixError(f"{name} has no entry for tasks {missing}; expected one "
                                       f"per task {names}")
            return [Y[t] for t in names]
        if isinstance(Y, (list, tuple)):
            if len(Y) != len(names):
                raise LabelMatrixError(f"{name} has {len(Y)} entries; expected one per task "
                                       f"{names}")
            return list(Y)
        A = np.asarray(Y)
        if len(names) == 1:
            return [A]
        if A.ndim == 2 and A.shape[1] == len(names) and A.dtype.kind in "iu":
            return [A[:, s] for s in range(len(names))]
        raise LabelMatrixError(f"{name} has shape {A.shape}; for tasks {names} pass a list or "
                               "dict of per-task targets ((n,) labels or (n, k) probabilities) "
                               f"or an (n, {len(names)}) int array")

    # ------------------------------------------------------------------ build
    def _build(self, X: Any) -> tuple[MultiTaskNetwork, int]:
        module = self.input_module
        if module is None:
            module = default_input_module(X)
        else:
            module = copy.deepcopy(module)
        if self.reinitialize:
            reset_parameters(module)
        prepare = getattr(module, "prepare", None)
        if callable(prepare):
            prepare(X)
        dim = getattr(module, "out_features", None)
        if dim is None:  # a custom module: read its width from one batch
            with torch.no_grad():
                dim = int(module(take_rows(X, np.arange(min(2, n_rows(X))))).shape[-1])
        net = MultiTaskNetwork(module, int(dim), self.tasks_, self.hidden, float(self.dropout),
                               self.head_depth, copy.deepcopy(dict(self.heads or {})))
        for t in net.heads:  # heads and trunk always start from the seed
            reset_parameters(net.heads[t])
        reset_parameters(net.trunk)
        return net, int(dim)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: Any,
        Y: Any,
        *,
        L: Any = None,
        X_valid: Any = None,
        Y_valid: Any = None,
        sample_weight: Any = None,
        callbacks: Sequence[Callable[[int, dict[str, float], nn.Module], None]] = (),
    ) -> MultiTaskEndModel:
        """Train on features ``X`` and per-task targets ``Y``.

        Parameters
        ----------
        X
            Features: dense array, scipy.sparse matrix, dict of arrays (see
            :mod:`metal.end_model.inputs`).
        Y
            Per task, ``(n, k)`` probabilities (e.g. a label model's ``predict_proba``) or
            ``(n,)`` hard labels (``-1`` = none). Several tasks: a list or dict of those, or an
            ``(n, t)`` int array. A row of NaN (soft) or ``-1`` (hard) is masked.
        L
            The label matrix the targets came from; with ``mask_uncovered`` the rows without
            a vote (per task) are left out of the loss.
        X_valid, Y_valid
            A small labeled validation split (gold hard labels) for early stopping and
            best-epoch selection on ``valid_metric``.
        sample_weight
            Optional ``(n,)`` non-negative row weights.
        callbacks
            Called after each epoch as ``callback(epoch, record, network)``.
        """
        self.tasks_, self.task_graph_ = self._task_spec()
        cfg = self._config()
        device = _resolve_device(self.device)
        Xp = prepare_inputs(X)
        n = n_rows(Xp)
        names = list(self.tasks_)
        targets, masks = [], []
        for t, Yt in zip(names, self._split_targets(Y, n, "Y"), strict=True):
            tgt, mask = check_targets(Yt, n, self.tasks_[t], name=f"Y[{t!r}]")
            targets.append(tgt)
            masks.append(mask)
        if L is not None and self.mask_uncovered:
            for s, cov in enumerate(covered_rows(L, len(names))):
                if cov.shape[0] != n:
                    raise LabelMatrixError(f"L has {cov.shape[0]} rows; X has {n}")
                masks[s] = masks[s] & cov
        weights = np.stack([m.astype(np.float32) for m in masks], axis=1)
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float32)
            if sw.shape != (n,) or (sw < 0).any():
                raise ConfigError(f"sample_weight has shape {sw.shape}; expected ({n},) "
                                  "non-negative weights")
            weights *= sw[:, None]
        task_w = dict(self.task_weights or {})
        unknown = sorted(set(task_w) - set(names))
        if unknown:
            raise ConfigError(f"task_weights names unknown tasks {unknown}; tasks are {names}")
        self.class_weights_ = self._class_weights(targets, masks)
        train_rows = np.flatnonzero(weights.sum(axis=1) > 0)

        with seeded_rng(self.seed, device):
            net, dim = self._build(Xp)
        net.to(device)
        self.network_, self.input_dim_ = net, dim
        tw = [float(task_w.get(t, 1.0)) for t in names]
        cw = [None if w is None else torch.as_tensor(w, device=device)
              for w in self.class_weights_]
        tgt_t = [torch.from_numpy(t) for t in targets]
        w_t = torch.from_numpy(weights)

        self._joint_index = self._joint_indices(device)

        def batch_loss(rows: np.ndarray) -> torch.Tensor:
            idx = train_rows[rows]
            out = self._outputs(net(to_device(take_rows(Xp, idx), device)))
            total = torch.zeros((), device=device)
            ti = torch.from_numpy(idx)
            for s, t in enumerate(names):
                sw_s = w_t[ti, s].to(device)
                if float(sw_s.sum()) == 0:
                    continue
                total = total + tw[s] * soft_cross_entropy(
                    out[t], tgt_t[s][ti].to(device), cw[s], sw_s)
            return total

        validate = None
        if X_valid is not None:
            if Y_valid is None:
                raise ConfigError("X_valid was given without Y_valid; pass the gold labels of "
                                  "the validation rows")
            Xv = prepare_inputs(X_valid, "X_valid")
            Yv = [check_targets(y, n_rows(Xv), self.tasks_[t], f"Y_valid[{t!r}]")[0]
                  for t, y in zip(names, self._split_targets(Y_valid, n_rows(Xv), "Y_valid"),
                                  strict=True)]
            validate = self._validator(Xv, Yv, cfg.valid_metric, device)
        result = self.trainer_class(cfg).fit(net, batch_loss, len(train_rows),
                                             validate=validate, seed=self.seed, device=device,
                                             callbacks=callbacks)
        self._set_result(result)
        return self

    def _joint_indices(self, device: torch.device) -> list[torch.Tensor] | None:
        """Per task, the ``(K,)`` value of each feasible vector (``None``: heads apart)."""
        if self.task_graph_ is None or not self.joint_training:
            return None
        F = np.asarray(self.task_graph_.feasible, dtype=np.int64)
        return [torch.from_numpy(F[:, s].copy()).to(device) for s in range(F.shape[1])]

    def _outputs(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per task, log-probabilities to train and predict on: the heads' own logits, or with
        joint training the log-marginals of ``q(y) ∝ exp(sum_s z_s(y_s))`` over the feasible
        vectors (already normalised, so a softmax of them returns the marginals)."""
        index = getattr(self, "_joint_index", None)
        if index is None:
            return logits
        names = list(self.tasks_)
        score = sum(logits[t].float()[:, index[s]] for s, t in enumerate(names))
        assert isinstance(score, torch.Tensor)
        logq = torch.log_softmax(score, dim=-1)  # (b, K)
        out = {}
        for s, t in enumerate(names):
            k = self.tasks_[t]
            # log sum over the feasible vectors whose task-s value is c, for each class c
            grouped = logq.new_full((logq.shape[0], k, logq.shape[1]), float("-inf"))
            grouped[:, index[s], torch.arange(logq.shape[1], device=logq.device)] = logq
            out[t] = torch.logsumexp(grouped, dim=-1).clamp(min=-1e4)
        return out

    def _set_result(self, result: TrainResult) -> None:
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.best_score_ = result.best_score
        self.stopped_early_ = result.stopped_early

    def _class_weights(self, targets: list[np.ndarray],
                       masks: list[np.ndarray]) -> list[np.ndarray | None]:
        cw = self.class_weight
        names = list(self.tasks_)
        if cw is None:
            return [None] * len(names)
        if cw == "balanced":
            return [balanced_class_weight(t, m, self.tasks_[name])
                    for t, m, name in zip(targets, masks, names, strict=True)]
        if isinstance(cw, Mapping):
            out: list[np.ndarray | None] = []
            for name in names:
                if name not in cw or cw[name] is None:
                    out.append(None)
                    continue
                w = cw[name]
                if w == "balanced":
                    s = names.index(name)
                    out.append(balanced_class_weight(targets[s], masks[s], self.tasks_[name]))
                    continue
                arr = np.asarray(w, dtype=np.float32)
                if arr.shape != (self.tasks_[name],) or (arr < 0).any():
                    raise ConfigError(f"class_weight[{name!r}] has shape {arr.shape}; expected "
                                      f"({self.tasks_[name]},) non-negative weights")
                out.append(arr)
            return out
        raise ConfigError(f"class_weight={cw!r}; expected None, 'balanced' or {{task: weights}}")

    def _validator(self, Xv: Any, Yv: list[np.ndarray], metric: str,
                   device: torch.device) -> Callable[[], dict[str, float]]:
        names = list(self.tasks_)
        base = metric[len("valid_"):] if metric.startswith("valid_") else metric
        # "<task>_<metric>" selects on one task's score (e.g. the fine level of a hierarchy);
        # the validator then reports every task's score under that name
        if len(names) > 1 and base not in METRICS and base != "loss":
            for t in names:
                if base.startswith(f"{t}_") and base[len(t) + 1:] in METRICS:
                    base = base[len(t) + 1:]
                    break
        wanted = [m for m in (base,) if m in METRICS]
        if base not in METRICS and base != "loss":
            raise ConfigError(f"valid_metric={metric!r}; expected 'loss', one of {METRICS} or, "
                              f"with several tasks, '<task>_<metric>' for a task in {names}")

        def validate() -> dict[str, float]:
            probs = self._predict_proba_list(Xv, device)
            out: dict[str, float] = {}
            losses, scores = [], []
            for s, t in enumerate(names):
                y = Yv[s]
                hard = y if y.ndim == 1 else y.argmax(axis=1)
                keep = hard >= 0
                if not keep.any():
                    continue
                p = np.clip(probs[s][keep, hard[keep]], 1e-12, None)
                losses.append(float(-np.log(p).mean()))
                if wanted:
                    preds = probs_to_preds(probs[s], "first")
                    sc = score_predictions(hard, preds, wanted, cardinality=self.tasks_[t])
                    scores.append(sc[base])
                    if len(names) > 1:
                        out[f"{t}_{base}"] = sc[base]
            out["loss"] = float(np.mean(losses)) if losses else float("nan")
            if wanted:
                out[base] = float(np.mean(scores)) if scores else float("nan")
            return out

        return validate

    # ------------------------------------------------------------------ predict
    def _predict_proba_list(self, X: Any, device: torch.device | None = None,
                            heads_only: bool = False) -> list[np.ndarray]:
        """Per-task probabilities (marginals of the joint with ``joint_training``; each head's
        own softmax with ``heads_only``)."""
        net = self.network_
        dev = device if device is not None else next(net.parameters()).device
        was_training = net.training
        net.eval()
        n = n_rows(X)
        parts: dict[str, list[np.ndarray]] = {t: [] for t in self.tasks_}
        with torch.no_grad():
            for b in range(0, n, PREDICT_BATCH):
                rows = np.arange(b, min(b + PREDICT_BATCH, n))
                out = net(to_device(take_rows(X, rows), dev))
                if not heads_only:
                    out = self._outputs(out)
                for t in self.tasks_:
                    parts[t].append(torch.softmax(out[t].float(), -1).cpu().numpy())
        net.train(was_training)
        return [np.concatenate(parts[t]).astype(np.float64) if parts[t]
                else np.zeros((0, k)) for t, k in self.tasks_.items()]

    def predict_proba(self, X: Any) -> list[np.ndarray]:
        """Per-task class probabilities: a list of ``(n, k_task)`` arrays (task order)."""
        self._check_fitted()
        return self._predict_proba_list(prepare_inputs(X))

    def predict_proba_joint(self, X: Any) -> np.ndarray:
        """``(n, K)`` distribution over the task graph's feasible label vectors.

        ``P(y) ∝ prod_s p_s(y_s)`` restricted to the feasible set, with ``p_s`` the softmax of
        head ``s`` (each head's output taken as a factor, renormalised over the vectors the
        graph allows); with ``joint_training`` that is the distribution trained.
        """
        self._check_fitted()
        if self.task_graph_ is None:
            raise ConfigError("joint decoding needs a task graph; build the model with "
                              "tasks=TaskGraph(...) or TaskHierarchy(...)")
        F = self.task_graph_.feasible
        probs = self._predict_proba_list(prepare_inputs(X), heads_only=True)
        logj = np.zeros((probs[0].shape[0], F.shape[0]))
        for s, p in enumerate(probs):
            logj += np.log(np.clip(p, 1e-300, None))[:, F[:, s]]
        logj -= logj.max(axis=1, keepdims=True)
        joint = np.exp(logj)
        return joint / joint.sum(axis=1, keepdims=True)

    def predict(self, X: Any, tie_break: str = "first") -> np.ndarray:
        """``(n, t)`` predicted label vectors: joint feasible decoding with a task graph,
        per-task argmax otherwise."""
        return self._predict_vectors(X, tie_break)

    def _predict_vectors(self, X: Any, tie_break: str) -> np.ndarray:
        self._check_fitted()
        if self.task_graph_ is not None:
            idx = probs_to_preds(self.predict_proba_joint(X), tie_break, seed=self.seed)
            out = np.full((idx.shape[0], len(self.tasks_)), -1, dtype=np.int64)
            out[idx >= 0] = self.task_graph_.feasible[idx[idx >= 0]]
            return out
        return np.stack([probs_to_preds(p, tie_break, seed=self.seed)
                         for p in self._predict_proba_list(prepare_inputs(X))], axis=1)

    def score(self, X: Any, Y: Any, metrics: Sequence[str] = ("accuracy",),
              tie_break: str = "first") -> dict[str, dict[str, float]]:
        """``{task: {metric: value}}`` against gold labels (``-1`` rows skipped per task)."""
        preds = self._predict_vectors(X, tie_break)
        ys = self._split_targets(Y, preds.shape[0], "Y")
        out = {}
        for s, (t, y) in enumerate(zip(self.tasks_, ys, strict=True)):
            gold, _ = check_targets(y, preds.shape[0], self.tasks_[t], f"Y[{t!r}]")
            if gold.ndim != 1:
                raise LabelMatrixError("score needs gold hard labels, not probabilities")
            out[t] = score_predictions(gold, preds[:, s], metrics, cardinality=self.tasks_[t])
        return out

    def plot_history(self, path: str | os.PathLike[str]) -> None:
        """Save the learning curves of the last ``fit`` as a PNG."""
        self._check_fitted()
        plot_history(self.history_, path, self.best_epoch_)

    # ------------------------------------------------------------------ persistence
    def _params(self) -> dict[str, Any]:
        module = self.network_.input_module
        spec = None
        config = getattr(module, "config", None)
        if type(module).__name__ in INPUT_MODULES and callable(config):
            spec = {"name": type(module).__name__, "config": config()}
        cw = self.class_weight
        return {
            "tasks": self.tasks_,
            "task_graph": None if self.task_graph_ is None else self.task_graph_.to_dict(),
            "input_module": spec, "input_dim": self.input_dim_,
            "hidden": [int(h) for h in self.hidden], "dropout": float(self.dropout),
            "head_depth": self.network_.head_depth,
            "custom_heads": sorted(self.heads or {}),
            "task_weights": dict(self.task_weights or {}),
            "class_weight": cw if cw is None or isinstance(cw, str) else
            {t: (w if isinstance(w, str) or w is None else np.asarray(w).tolist())
             for t, w in cw.items()},
            "mask_uncovered": bool(self.mask_uncovered),
            "joint_training": bool(self.joint_training),
            "trainer": self._config().to_dict(), "seed": int(self.seed),
            "device": str(self.device), "history": self.history_,
            "best_epoch": self.best_epoch_, "best_score": self.best_score_,
            "stopped_early": self.stopped_early_,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted model: ``.npz`` arrays (the state dict) + a JSON header; no pickle.

        Built-in input modules are rebuilt by :meth:`load` from their ``config()``; a custom
        input module or head must be passed to ``load`` again (its weights are in the file).
        """
        self._check_fitted()
        save_arrays(path, type(self).__name__, self._params(),
                    state_to_arrays(self.network_.state_dict(), "state/"))

    @classmethod
    def load(cls, path: str | os.PathLike[str], input_module: nn.Module | None = None,
             heads: Mapping[str, nn.Module] | None = None,
             device: str | None = None) -> MultiTaskEndModel:
        """Load a model written by :meth:`save` (pass custom modules it cannot rebuild)."""
        params, arrays = load_arrays(path, cls.__name__)
        spec = params["input_module"]
        if input_module is None:
            if spec is None:
                raise ConfigError(f"{path} was trained with a custom input module; pass an "
                                  "identically built one as load(path, input_module=...)")
            if spec["name"] in ("SpanEncoder", "ConcatInput"):
                import metal.end_model.text  # noqa: F401  (registers the text modules)
            input_module = build_input_module(spec)
        missing = sorted(set(params["custom_heads"]) - set(heads or {}))
        if missing:
            raise ConfigError(f"{path} has custom heads for tasks {missing}; pass them as "
                              "load(path, heads={...})")
        graph = (task_graph_from_dict(params["task_graph"]) if params["task_graph"] is not None
                 else None)
        model = cls._from_params(params, graph, input_module, heads, device)
        model.tasks_, model.task_graph_ = dict(params["tasks"]), graph
        model.input_dim_ = int(params["input_dim"])
        net = MultiTaskNetwork(input_module, model.input_dim_, model.tasks_, params["hidden"],
                               params["dropout"], params["head_depth"], dict(heads or {}))
        net.load_state_dict(arrays_to_state(arrays, "state/"))
        net.to(_resolve_device(model.device))
        net.eval()
        model.network_ = net
        model._joint_index = model._joint_indices(_resolve_device(model.device))
        model._set_result(TrainResult(params["history"], params["best_epoch"],
                                      params["best_score"], params["stopped_early"]))
        model.class_weights_ = []
        return model

    @classmethod
    def _from_params(cls, params: dict[str, Any], graph: TaskGraph | None,
                     input_module: nn.Module, heads: Mapping[str, nn.Module] | None,
                     device: str | None) -> MultiTaskEndModel:
        return cls(graph if graph is not None else params["tasks"], input_module=input_module,
                   hidden=params["hidden"], dropout=params["dropout"],
                   head_depth=params["head_depth"], heads=heads,
                   task_weights=params["task_weights"], class_weight=params["class_weight"],
                   mask_uncovered=params["mask_uncovered"],
                   # files written before the option trained the heads apart
                   joint_training=bool(params.get("joint_training", False)),
                   trainer=params["trainer"],
                   seed=params["seed"], device=device or params["device"])


class EndModel(MultiTaskEndModel):
    """A single-task end model: :class:`MultiTaskEndModel` with one head.

    ``predict_proba`` returns one ``(n, k)`` array, ``predict`` an ``(n,)`` array and
    ``score`` a flat ``{metric: value}`` dict.

    Parameters
    ----------
    cardinality
        Number of classes.
    **kwargs
        As for :class:`MultiTaskEndModel` (except ``tasks``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> model = EndModel(2, n_epochs=20, patience=None, seed=0).fit(X, y)
    >>> model.predict_proba(X).shape
    (200, 2)
    >>> model.score(X, y)["accuracy"] > 0.9
    True
    """

    TASK = "task"

    def __init__(self, cardinality: int, input_module: nn.Module | None = None,
                 hidden: Sequence[int] = (128,), dropout: float = 0.1,
                 class_weight: str | Sequence[float] | None = None,
                 mask_uncovered: bool = True, reinitialize: bool = True,
                 trainer: TrainerConfig | Mapping[str, Any] | None = None,
                 seed: int = 0, device: str = "cpu", **train_options: Any) -> None:
        self.cardinality = cardinality
        super().__init__({self.TASK: int(cardinality)}, input_module=input_module,
                         hidden=hidden, dropout=dropout,
                         class_weight=class_weight if class_weight is None
                         or isinstance(class_weight, str) else {self.TASK: class_weight},
                         mask_uncovered=mask_uncovered, reinitialize=reinitialize,
                         trainer=trainer, seed=seed, device=device, **train_options)

    def predict_proba(self, X: Any) -> np.ndarray:  # type: ignore[override]
        """``(n, k)`` class probabilities."""
        return super().predict_proba(X)[0]

    def predict(self, X: Any, tie_break: str = "first") -> np.ndarray:
        """``(n,)`` predicted classes."""
        return super().predict(X, tie_break)[:, 0]

    def score(self, X: Any, Y: Any, metrics: Sequence[str] = ("accuracy",),  # type: ignore[override]
              tie_break: str = "first") -> dict[str, float]:
        """``{metric: value}`` against gold labels ``Y`` (``-1`` rows skipped)."""
        return super().score(X, Y, metrics, tie_break)[self.TASK]

    @classmethod
    def _from_params(cls, params: dict[str, Any], graph: TaskGraph | None,
                     input_module: nn.Module, heads: Mapping[str, nn.Module] | None,
                     device: str | None) -> MultiTaskEndModel:
        cw = params["class_weight"]
        return cls(int(params["tasks"][cls.TASK]), input_module=input_module,
                   hidden=params["hidden"], dropout=params["dropout"],
                   class_weight=cw[cls.TASK] if isinstance(cw, Mapping) else cw,
                   mask_uncovered=params["mask_uncovered"], trainer=params["trainer"],
                   seed=params["seed"], device=device or params["device"])

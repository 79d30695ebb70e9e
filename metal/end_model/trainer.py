"""A small, deterministic training loop with early stopping, checkpoints and resume.

:class:`Trainer` knows nothing about tasks or labels: it calls ``batch_loss(rows)`` for the
shuffled mini-batches of each epoch and ``validate()`` after each epoch, so the end models,
WeaSEL and sequence taggers share it. Everything random (initialisation by the caller, batch
order, dropout) runs inside a forked torch RNG seeded by ``seed``: the global RNG is left as it
was, two runs with one seed are identical, and a run resumed from a checkpoint (model,
optimiser, RNG states, history, best state) ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metal._io import load_arrays, save_arrays
from metal.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear", "exponential", "step")


@dataclass(frozen=True)
class TrainerConfig:
    """Training hyperparameters, with their defaults in one place.

    Parameters
    ----------
    n_epochs
        Maximum number of passes over the training rows.
    batch_size
        Rows per optimisation step.
    optimizer
        ``"adam"``, ``"adamw"`` or ``"sgd"`` (with ``momentum``).
    lr, weight_decay, momentum
        Optimiser settings.
    lr_schedule
        Factor applied to ``lr`` per epoch: ``"constant"``, ``"cosine"`` (to 0 at
        ``n_epochs``), ``"linear"`` (to 0), ``"exponential"`` (``gamma ** epoch``) or
        ``"step"`` (``gamma`` every ``step_size`` epochs); after ``warmup_epochs`` of linear
        warm-up.
    grad_clip
        Clip the gradients' global norm to this value (``None``: no clipping).
    patience
        Stop after this many validations without improvement (``None``: never stop early).
        Needs ``validate``.
    valid_metric
        Key of the dict returned by ``validate`` to select on; larger is better unless the
        name ends with ``"loss"``.
    min_delta
        Improvement needed to count as better.
    restore_best
        Load the best validated parameters at the end.
    checkpoint_path
        Write a checkpoint there every ``checkpoint_every`` epochs (and at the end).
    resume
        If ``checkpoint_path`` exists when training starts, continue from it.
    progress
        Show a tqdm progress bar over epochs.
    """

    n_epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    gamma: float = 0.5
    step_size: int = 10
    grad_clip: float | None = 5.0
    patience: int | None = 10
    valid_metric: str = "accuracy"
    min_delta: float = 0.0
    restore_best: bool = True
    checkpoint_path: str | None = None
    checkpoint_every: int = 1
    resume: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(f"lr_schedule={self.lr_schedule!r}; expected one of {SCHEDULES}")
        for name in ("n_epochs", "batch_size", "checkpoint_every", "step_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{name}={v!r}; expected a positive int")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience={self.patience}; expected a positive int or None")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError(f"lr={self.lr} must be > 0, weight_decay={self.weight_decay} and "
                              f"warmup_epochs={self.warmup_epochs} >= 0")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip={self.grad_clip}; expected > 0 or None")

    @classmethod
    def from_options(cls, base: TrainerConfig | Mapping[str, Any] | None = None,
                     **options: Any) -> TrainerConfig:
        """A config from ``base`` (a config or a dict) with ``options`` overriding it."""
        known = {f.name for f in fields(cls)}
        given = dict(base) if isinstance(base, Mapping) else {}
        unknown = sorted((set(given) | set(options)) - known)
        if unknown:
            raise ConfigError(f"unknown training options {unknown}; TrainerConfig accepts "
                              f"{sorted(known)}")
        cfg = base if isinstance(base, TrainerConfig) else cls(**given)
        return replace(cfg, **options) if options else cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_factor(cfg: TrainerConfig, epoch: int) -> float:
    """Multiplier of ``lr`` during ``epoch`` (0-based)."""
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    e = epoch - cfg.warmup_epochs
    span = max(cfg.n_epochs - cfg.warmup_epochs, 1)
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * e / span))
    if cfg.lr_schedule == "linear":
        return max(1.0 - e / span, 0.0)
    if cfg.lr_schedule == "exponential":
        return float(cfg.gamma ** e)
    if cfg.lr_schedule == "step":
        return float(cfg.gamma ** (e // cfg.step_size))
    return 1.0


def make_optimizer(cfg: TrainerConfig, params: Any) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------------------- state <-> arrays
def state_to_arrays(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, np.ndarray]:
    """A module ``state_dict`` as named numpy arrays (for the .npz format)."""
    return {f"{prefix}{k}": v.detach().cpu().numpy() for k, v in state.items()}


def arrays_to_state(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
            if k.startswith(prefix)}


def _optimizer_to_arrays(opt: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    sd = opt.state_dict()
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                arrays[f"opt/{pid}/{key}"] = val.detach().cpu().numpy()
            else:
                scalars[f"{pid}/{key}"] = val
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
              for g in sd["param_groups"]]
    return {"param_groups": groups, "scalars": scalars}, arrays


def _optimizer_from_arrays(opt: torch.optim.Optimizer, meta: Mapping[str, Any],
                           arrays: Mapping[str, np.ndarray]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in arrays.items():
        if name.startswith("opt/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = torch.from_numpy(np.array(val))
    for name, val in meta["scalars"].items():
        pid, key = name.split("/", 1)
        state.setdefault(int(pid), {})[key] = val
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
              for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


# ---------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """What a training run produced: per-epoch history and the selected epoch."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    stopped_early: bool = False


def _better(metric: str, new: float, best: float | None, min_delta: float) -> bool:
    if best is None:
        return True
    if metric.endswith("loss"):
        return new < best - min_delta
    return new > best + min_delta


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global torch RNG seeded by ``seed``; restore it afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


class Trainer:
    """Mini-batch training with early stopping, best-checkpoint restore and resume.

    Parameters
    ----------
    config
        A :class:`TrainerConfig` (or dict); keyword ``options`` override its fields.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> X, y = torch.randn(64, 2), torch.randn(64, 1)
    >>> def batch_loss(rows):
    ...     return ((net(X[rows]) - y[rows]) ** 2).mean()
    >>> result = Trainer(n_epochs=3, patience=None).fit(net, batch_loss, n_train=64)
    >>> len(result.history)
    3
    """

    def __init__(self, config: TrainerConfig | Mapping[str, Any] | None = None,
                 **options: Any) -> None:
        self.config = TrainerConfig.from_options(config, **options)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, path: str, model: nn.Module, opt: torch.optim.Optimizer,
                         gen: torch.Generator, epoch: int, result: TrainResult,
                         best_state: Mapping[str, torch.Tensor] | None, bad: int) -> None:
        opt_meta, opt_arrays = _optimizer_to_arrays(opt)
        arrays = {**state_to_arrays(model.state_dict(), "model/"), **opt_arrays,
                  "rng/torch": torch.get_rng_state().numpy(),
                  "rng/batches": gen.get_state().numpy()}
        if best_state is not None:
            arrays.update(state_to_arrays(best_state, "best/"))
        params = {"epoch": epoch, "history": result.history, "best_epoch": result.best_epoch,
                  "best_score": result.best_score, "bad_epochs": bad, "optimizer": opt_meta,
                  "config": self.config.to_dict()}
        tmp = f"{path}.tmp"
        save_arrays(tmp, "TrainerCheckpoint", params, arrays)
        os.replace(tmp, path)  # a crash while writing never leaves a half-written checkpoint

    def _load_checkpoint(self, path: str, model: nn.Module, opt: torch.optim.Optimizer,
                         gen: torch.Generator, result: TrainResult,
                         device: torch.device) -> tuple[int, dict[str, torch.Tensor] | None, int]:
        params, arrays = load_arrays(path, "TrainerCheckpoint")
        model.load_state_dict(arrays_to_state(arrays, "model/"))
        _optimizer_from_arrays(opt, params["optimizer"], arrays)
        torch.set_rng_state(torch.from_numpy(np.array(arrays["rng/torch"])))
        gen.set_state(torch.from_numpy(np.array(arrays["rng/batches"])))
        result.history = list(params["history"])
        result.best_epoch = params["best_epoch"]
        result.best_score = params["best_score"]
        best = arrays_to_state(arrays, "best/") or None
        if best is not None:
            best = {k: v.to(device) for k, v in best.items()}
        return int(params["epoch"]) + 1, best, int(params["bad_epochs"])

    # ------------------------------------------------------------------ loop
    def fit(
        self,
        model: nn.Module,
        batch_loss: Callable[[np.ndarray], torch.Tensor],
        n_train: int,
        *,
        validate: Callable[[], Mapping[str, float]] | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        callbacks: Sequence[Callable[[int, dict[str, float], nn.Module], None]] = (),
    ) -> TrainResult:
        """Train ``model`` in place.

        Parameters
        ----------
        model
            The module whose parameters are optimised (already on ``device``).
        batch_loss
            ``batch_loss(rows)`` -> scalar loss of the training rows ``rows`` (int64 indices
            into ``0..n_train-1``); it moves its batch to the device itself.
        n_train
            Number of training rows.
        validate
            ``validate()`` -> dict of validation metrics, called with the model in eval
            mode; needed for early stopping and best-epoch selection.
        seed
            Seeds batch order and every torch random draw during training (dropout).
        device
            Where the model lives; its RNG is the one forked.
        callbacks
            ``callback(epoch, record, model)`` after each epoch (and after the checkpoint is
            written); an exception there interrupts training, which ``resume`` continues.
        """
        cfg = self.config
        device = torch.device(device)
        if n_train < 1:
            raise ConfigError("no training rows (every row is masked); check the labels and "
                              "mask_uncovered")
        result = TrainResult()
        with seeded_rng(seed, device):
            gen = torch.Generator().manual_seed(int(seed) + 1)
            opt = make_optimizer(cfg, model.parameters())
            start, best_state, bad = 0, None, 0
            ckpt = cfg.checkpoint_path
            if ckpt is not None and cfg.resume and Path(ckpt).is_file():
                start, best_state, bad = self._load_checkpoint(ckpt, model, opt, gen, result,
                                                               device)
            epochs: Any = range(start, cfg.n_epochs)
            bar = None
            if cfg.progress:
                from tqdm.auto import tqdm

                bar = tqdm(epochs, desc="training", unit="epoch", initial=start,
                           total=cfg.n_epochs)
                epochs = bar
            stop = bad >= cfg.patience if (cfg.patience is not None and validate) else False
            for epoch in epochs:
                if stop:
                    break
                t0 = time.perf_counter()
                factor = lr_factor(cfg, epoch)
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * factor
                model.train()
                order = torch.randperm(n_train, generator=gen).numpy()
                total, count = 0.0, 0
                for b in range(0, n_train, cfg.batch_size):
                    rows = order[b:b + cfg.batch_size]
                    opt.zero_grad(set_to_none=True)
                    loss = batch_loss(rows)
                    if not torch.isfinite(loss):
                        raise ConfigError(f"the training loss became {loss.item()} at epoch "
                                          f"{epoch}; lower lr or enable grad_clip")
                    loss.backward()
                    if cfg.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    total += float(loss.detach()) * len(rows)
                    count += len(rows)
                record: dict[str, float] = {"epoch": float(epoch),
                                            "train_loss": total / max(count, 1),
                                            "lr": cfg.lr * factor}
                if validate is not None:
                    model.eval()
                    with torch.no_grad():
                        scores = dict(validate())
                    if cfg.valid_metric not in scores:
                        raise ConfigError(f"valid_metric={cfg.valid_metric!r} is not among the "
                                          f"validation metrics {sorted(scores)}")
                    record.update({f"valid_{k}": float(v) for k, v in scores.items()})
                    score = float(scores[cfg.valid_metric])
                    if _better(cfg.valid_metric, score, result.best_score, cfg.min_delta):
                        result.best_score, result.best_epoch, bad = score, epoch, 0
                        best_state = {k: v.detach().clone() for k, v in
                                      model.state_dict().items()}
                    else:
                        bad += 1
                    stop = cfg.patience is not None and bad >= cfg.patience
                record["time"] = time.perf_counter() - t0
                result.history.append(record)
                if bar is not None:
                    bar.set_postfix({k: round(v, 4) for k, v in record.items()
                                     if k.startswith("valid_") or k == "train_loss"})
                last = epoch == cfg.n_epochs - 1 or stop
                if ckpt is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or last):
                    self._save_checkpoint(ckpt, model, opt, gen, epoch, result, best_state, bad)
                for callback in callbacks:
                    callback(epoch, record, model)
            if bar is not None:
                bar.close()
            result.stopped_early = bool(stop) and len(result.history) < cfg.n_epochs
        if cfg.restore_best and best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return result


def plot_history(history: Sequence[Mapping[str, float]], path: str | os.PathLike[str],
                 best_epoch: int | None = None) -> None:
    """Learning curves (training loss, validation metrics per epoch) saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not history:
        raise ConfigError("the history is empty; train first")
    epochs = [h["epoch"] for h in history]
    keys = [k for k in history[0] if k.startswith("valid_")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(epochs, [h["train_loss"] for h in history], label="train loss")
    for k in keys:
        if k.endswith("loss"):
            axes[0].plot(epochs, [h.get(k, np.nan) for h in history], label=k)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    for k in keys:
        if not k.endswith("loss"):
            axes[1].plot(epochs, [h.get(k, np.nan) for h in history], label=k)
    if best_epoch is not None:
        for ax in axes:
            ax.axvline(best_epoch, color="grey", linestyle=":", label="best epoch")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation metric")
    if keys:
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Data-parallel training on ``torch.distributed``, launched with ``torchrun``.

Every process (rank) holds a full copy of the model and the same training rows. All ranks
draw the same shuffled order from the seed, so they agree on each global mini-batch of
``batch_size`` rows; rank ``r`` of ``W`` computes the loss and gradients of rows
``r, r + W, r + 2W, ...`` of it (the split a ``DistributedSampler`` makes of a shuffled epoch,
with per-rank batches of ``batch_size / W``). The gradients are averaged over the ranks with one
``all_reduce`` per step (gloo on CPU, NCCL on GPU), weighted so that the average is the
gradient of the whole mini-batch's mean loss. Every rank then takes the same optimiser step
from the same parameters, so training is the one-process run up to floating-point rounding
(for row-mean losses without dropout; dropout masks are drawn per rank). Only rank 0 writes
checkpoints; every rank resumes from them.

This is the algorithm of ``torch.nn.parallel.DistributedDataParallel`` (averaged gradient
all-reduce, buffers broadcast from rank 0), done inside :class:`~metal.end_model.Trainer`, so
every model that trains with it runs data-parallel without wrapping its modules.

Launch::

    torchrun --nproc_per_node 2 -m metal.distributed.train_ddp --features X.npy \\
        --targets probs.npy --out model.npz

or, in your own script, call :func:`init_distributed`, then fit ``data_parallel(model)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from metal.end_model.trainer import Trainer, TrainResult
from metal.errors import ConfigError

__all__ = [
    "DistributedContext",
    "DistributedTrainer",
    "data_parallel",
    "init_distributed",
    "is_main_process",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job: its rank, the number of ranks, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str


def init_distributed(backend: str | None = None, device: str | None = None
                     ) -> DistributedContext:
    """Join the process group set up by ``torchrun`` (reads ``RANK``, ``WORLD_SIZE``, ...).

    Parameters
    ----------
    backend
        ``"gloo"`` or ``"nccl"``; default NCCL when CUDA is available, else gloo.
    device
        ``"cpu"`` or ``"cuda"``; default CUDA when available. On CUDA each rank uses GPU
        ``LOCAL_RANK``.

    Returns
    -------
    DistributedContext
        A single-process context (rank 0 of 1) when not launched by ``torchrun``.
    """
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available; use device='cpu'")
    backend = backend or ("nccl" if use_cuda else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"backend={backend!r}; expected 'gloo' (CPU) or 'nccl' (GPU)")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if "WORLD_SIZE" not in os.environ:
        return DistributedContext(0, 1, 0, dev, backend)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed): the rank that saves and reports."""
    return not dist.is_initialized() or dist.get_rank() == 0


class DistributedTrainer(Trainer):
    """:class:`~metal.end_model.Trainer` whose mini-batches are split over the ranks.

    Same configuration and results as ``Trainer``; needs an initialised process group
    (:func:`init_distributed`), else it trains in this process alone. ``train_loss`` in the
    history is the mean over the whole mini-batch (all ranks). Validation runs on every rank
    on its full validation set, so all ranks take the same early-stopping decision.
    """

    def _save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        if is_main_process():  # rank 0 writes; the others read it when resuming
            super()._save_checkpoint(*args, **kwargs)

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
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return super().fit(model, batch_loss, n_train, validate=validate, seed=seed,
                               device=device, callbacks=callbacks)
        rank, world = dist.get_rank(), dist.get_world_size()
        params = [p for p in model.parameters() if p.requires_grad]
        with torch.no_grad():  # one starting point, whatever each rank initialised
            for t in model.state_dict().values():
                dist.broadcast(t, src=0)
        buffers = list(model.buffers())

        def local_loss(rows: np.ndarray) -> torch.Tensor:
            for b in buffers:  # as DDP: batch-norm statistics follow rank 0
                dist.broadcast(b.data, src=0)
            shard = rows[rank::world]
            grads: Sequence[torch.Tensor | None] = [None] * len(params)
            if shard.size:
                # the ranks' average of these is the mean loss over all of `rows`
                loss = batch_loss(shard) * (shard.size * world / rows.size)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                value = loss.detach().reshape(1)
            else:  # fewer rows than ranks in the last batch: nothing to add here
                value = torch.zeros(1, device=params[0].device)
            flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                              for p, g in zip(params, grads, strict=True)]
                             + [value.to(params[0].dtype)])
            dist.all_reduce(flat)
            flat /= world
            offset = 0
            for p in params:
                p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
                offset += p.numel()
            # the Trainer calls backward() on this: a leaf, so the gradients above stay
            return flat[-1].detach().clone().requires_grad_(True)

        config = self.config if rank == 0 else replace(self.config, progress=False)
        trainer = type(self)(config)
        return Trainer.fit(trainer, model, local_loss, n_train, validate=validate, seed=seed,
                           device=device, callbacks=callbacks)


M = TypeVar("M")


def data_parallel(model: M) -> M:
    """Make ``model`` train data-parallel over the ranks of the process group; returns it.

    ``model`` is any estimator that trains with :class:`~metal.end_model.Trainer` through its
    ``trainer_class`` attribute (:class:`~metal.end_model.EndModel`,
    :class:`~metal.end_model.MultiTaskEndModel`). Only the training loop changes: the model
    saves, loads and predicts as before, so a model trained on ``W`` ranks is an ordinary
    model file.
    """
    if not hasattr(model, "trainer_class"):
        raise ConfigError(f"{type(model).__name__} has no trainer_class; data_parallel works "
                          "with models that train through metal.end_model.Trainer")
    model.trainer_class = DistributedTrainer  # type: ignore[attr-defined]
    return model

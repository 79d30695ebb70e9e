"""Train an end model data-parallel: ``torchrun --nproc_per_node N -m metal.distributed.train_ddp``.

Every rank loads the same features and targets, trains its share of each mini-batch
(:mod:`metal.distributed.ddp`), and rank 0 writes the model (and, if asked, the training rows'
probabilities). Run without ``torchrun`` it trains in one process, with the same result up to
floating-point rounding.

Example::

    torchrun --standalone --nproc_per_node 2 -m metal.distributed.train_ddp \\
        --features X.npy --targets probs.npy --out model.npz --epochs 10 \\
        --checkpoint ckpt.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from metal.errors import ConfigError, DataFormatError


def _load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataFormatError(f"{what} file {path} does not exist")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        return sp.load_npz(path).tocsr()
    raise DataFormatError(f"{what} file {path} has suffix {path.suffix!r}; expected a .npy "
                          "array or a scipy.sparse .npz (scipy.sparse.save_npz)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metal.distributed.train_ddp",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True,
                   help="training features: dense .npy (n, d) or scipy.sparse .npz")
    p.add_argument("--targets", type=Path, required=True,
                   help=".npy (n, k) probabilities (a label model's output) or (n,) labels")
    p.add_argument("--out", type=Path, required=True, help="where rank 0 saves the model")
    p.add_argument("--cardinality", type=int, default=None,
                   help="number of classes (default: the targets' width)")
    p.add_argument("--valid-features", type=Path, default=None)
    p.add_argument("--valid-labels", type=Path, default=None)
    p.add_argument("--hidden", type=int, nargs="*", default=[128])
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64,
                   help="global mini-batch size, split over the ranks")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=str, default=None,
                   help="rank 0 writes a checkpoint here each epoch; a rerun resumes from it")
    p.add_argument("--predict-out", type=Path, default=None,
                   help="rank 0 writes the training rows' probabilities here (.npy)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cuda when available")
    p.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                   help="default: nccl on cuda, gloo on cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch.distributed as dist

    from metal.distributed.ddp import data_parallel, init_distributed, is_main_process
    from metal.end_model import EndModel

    ctx = init_distributed(backend=args.backend, device=args.device)
    try:
        X = _load(args.features, "features")
        Y = _load(args.targets, "targets")
        if sp.issparse(Y):
            raise DataFormatError("targets must be a dense .npy array")
        k = args.cardinality or (Y.shape[1] if Y.ndim == 2 else int(Y.max()) + 1)
        if k < 2:
            raise ConfigError(f"cardinality {k}; expected >= 2 classes")
        valid: dict[str, Any] = {}
        if args.valid_features is not None:
            if args.valid_labels is None:
                raise ConfigError("--valid-features needs --valid-labels")
            valid = {"X_valid": _load(args.valid_features, "validation features"),
                     "Y_valid": _load(args.valid_labels, "validation labels")}
        model = data_parallel(EndModel(
            k, hidden=tuple(args.hidden), dropout=args.dropout, seed=args.seed,
            device=str(ctx.device), n_epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, patience=args.patience, checkpoint_path=args.checkpoint))
        start = time.perf_counter()
        model.fit(X, Y, **valid)
        elapsed = time.perf_counter() - start
        if is_main_process():
            model.save(args.out)
            if args.predict_out is not None:
                np.save(args.predict_out, model.predict_proba(X))
            print(json.dumps({"world_size": ctx.world_size, "backend": ctx.backend,
                              "device": str(ctx.device), "epochs": len(model.history_),
                              "train_loss": model.history_[-1]["train_loss"],
                              "seconds": elapsed}), flush=True)
    finally:
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

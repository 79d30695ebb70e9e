"""The ``metal weasel`` subcommand: train an end model end to end from the sources.

``metal weasel DATA`` reads votes and features, trains :class:`~metal.weasel.WeaSEL` (no
training labels), early-stops on a labelled validation split when there is one, reports the
end model's score on the validation and test splits, and writes the model and the end model's
probabilities.

Inputs:

* a WRENCH folder: votes of ``--split`` (default train); features are the examples' numeric
  ``feature`` vectors when they have them (tabular sets such as census), else TF-IDF of their
  ``text`` fitted on the training split (needs scikit-learn); ``valid`` and ``test`` are used
  when they have gold labels;
* an ``.npz`` with ``L`` and ``X`` (and optionally ``X_valid``/``Y_valid`` and
  ``X_test``/``Y_test``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np


def add_parser(sub: Any) -> None:
    """Register ``metal weasel`` on the subparsers ``sub`` of the ``metal`` command."""
    p = sub.add_parser(
        "weasel", help="train an end model end to end from the sources (WeaSEL)",
        description="Train an end model and an encoder of per-example source accuracies "
        "together from the votes and features of DATA, without its labels (Cachay et al., "
        "NeurIPS 2021). Early-stops on the valid split when it has gold labels.")
    p.add_argument("data", metavar="DATA", help="WRENCH folder or .npz with L and X")
    p.add_argument("--split", default="train", choices=("train", "valid"),
                   help="WRENCH split to train on (default train)")
    p.add_argument("--cardinality", "-k", type=int, default=None,
                   help="number of classes (default: from label.json / the data)")
    p.add_argument("--epochs", type=int, default=50, help="maximum epochs (default 50)")
    p.add_argument("--patience", type=int, default=15,
                   help="early-stopping patience in epochs (default 15)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--tau1", type=float, default=None,
                   help="inverse temperature of the accuracies (default 1 with a validation "
                   "split, 1/3 without)")
    p.add_argument("--no-features", action="store_true",
                   help="the encoder reads the votes only (not the features)")
    p.add_argument("--warm-start", default="label_model",
                   choices=("label_model", "majority_vote", "none"),
                   help="train the end model first on this aggregate of the votes (default "
                   "label_model; none: the paper's random start)")
    p.add_argument("--metric", default="auto",
                   choices=("auto", "auc", "accuracy", "f1", "macro_f1", "loss"),
                   help="early-stopping metric (default auto: AUC for 2 classes, else accuracy)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--probs", metavar="FILE", help="write the end model's probabilities on "
                   "the training rows (.npy or .csv)")
    p.add_argument("--model-out", metavar="FILE.npz", help="write the fitted WeaSEL model")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _wrench_inputs(path: str, split: str, k: int | None) -> dict[str, Any]:
    from metal._cli_io import InputError
    from metal.data.wrench import load_wrench, wrench_splits

    train = load_wrench(path, split)
    others: dict[str, Any] = {s: load_wrench(path, s) for s in ("valid", "test")
                              if s != split and s in wrench_splits(path)}
    parts: dict[str, Any] = {split: train, **others}
    if train.features is not None:
        X = {s: ws.features for s, ws in parts.items()}
    else:
        try:
            from sklearn.feature_extraction.text import TfidfVectorizer
        except ImportError:  # pragma: no cover - depends on the environment
            raise InputError("text features need scikit-learn (pip install scikit-learn); or "
                             "pass an .npz with L and X") from None
        texts = {s: [str(ex.get("text", "")) for ex in ws.examples] for s, ws in parts.items()}
        if not any(texts[split]):
            raise InputError(f"{path} has neither numeric features nor text; pass an .npz "
                             "with L and X")
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=20000,
                              sublinear_tf=True)
        X = {split: vec.fit_transform(texts[split])}
        X.update({s: vec.transform(texts[s]) for s in others})
    out: dict[str, Any] = {"L": train.L, "X": X[split], "k": k or train.cardinality,
                           "name": f"{train.name}/{split}"}
    for s, ws in others.items():
        if (ws.Y >= 0).any():
            out[f"X_{s}"], out[f"Y_{s}"] = X[s], ws.Y
    return out


def _npz_inputs(path: str, k: int | None) -> dict[str, Any]:
    from metal._cli_io import InputError

    with np.load(path, allow_pickle=False) as archive:
        files = set(archive.files)
        if not {"L", "X"} <= files:
            raise InputError(f"{path} holds {sorted(files)}; expected L (n, m) votes and X "
                             "(n, d) features, optionally X_valid/Y_valid and X_test/Y_test")
        out: dict[str, Any] = {key: archive[key] for key in files}
    L = out["L"]
    top = int(L.max(initial=-1)) if L.ndim == 2 else int(L.shape[-1]) - 1
    for key in ("Y_valid", "Y_test"):
        if key in out:
            top = max(top, int(out[key].max(initial=-1)))
    out["k"] = k or max(top + 1, 2)
    out["name"] = Path(path).name
    return out


def run(args: argparse.Namespace) -> int:
    """Handler of ``metal weasel``."""
    from metal._cli_io import InputError, _write_probs
    from metal.weasel.model import WeaSEL

    for path, suffixes in ((args.probs, (".npy", ".csv")), (args.model_out, (".npz",))):
        if path and Path(path).suffix not in suffixes:
            raise InputError(f"{path}: expected a file name ending in {' or '.join(suffixes)}")
    p = Path(args.data)
    if not p.exists():
        raise InputError(f"{args.data} does not exist; expected a WRENCH folder or an .npz "
                         "with L and X")
    data = _npz_inputs(args.data, args.cardinality) if p.suffix == ".npz" \
        else _wrench_inputs(args.data, args.split, args.cardinality)
    k = int(data["k"])
    model = WeaSEL(k, tau1=args.tau1, use_features=not args.no_features,
                   warm_start=None if args.warm_start == "none" else args.warm_start,
                   valid_metric=args.metric, seed=args.seed, n_epochs=args.epochs,
                   patience=args.patience, lr=args.lr, batch_size=args.batch_size,
                   progress=not args.no_progress)
    has_valid = "X_valid" in data
    print(f"{data['name']}: {data['L'].shape[0]} rows, {data['L'].shape[1]} sources, k={k}; "
          f"features {tuple(data['X'].shape)}; early stopping: "
          f"{'on the valid split' if has_valid else 'none (no labelled valid split)'}")
    start = time.perf_counter()
    model.fit(data["L"], data["X"], data.get("X_valid"), data.get("Y_valid"))
    print(f"trained in {time.perf_counter() - start:.1f} s, {len(model.history_)} epochs"
          + (f", best epoch {model.best_epoch_}" if model.best_epoch_ is not None else "")
          + f" (rows with a vote: {model.n_train_rows_})")
    metrics = ["accuracy", "f1", "auc"] if k == 2 else ["accuracy", "macro_f1"]
    for split in ("valid", "test"):
        if f"X_{split}" in data:
            scores = model.score(data[f"X_{split}"], data[f"Y_{split}"], metrics)
            shown = ", ".join(f"{m} {v:.4f}" for m, v in scores.items())
            print(f"end model on {split}: {shown}")
    if args.probs:
        _write_probs(args.probs, model.predict_proba(data["X"]))
        print(f"end-model probabilities written to {args.probs}")
    if args.model_out:
        model.save(args.model_out)
        print(f"model written to {args.model_out}")
    return 0

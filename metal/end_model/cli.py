"""``metal train``: label model -> probabilistic labels -> end model -> test scores.

Registered in :data:`metal.cli.COMMANDS` by :func:`add_train`.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from metal.errors import ConfigError

FEATURES = ("auto", "numeric", "text", "relation", "votes")
LABELS = ("metal", "majority", "gold")


class TrainInputError(ConfigError):
    """A ``metal train`` argument or input is unusable (a usage error: exit status 2)."""


def _features(split: Any, kind: str) -> tuple[Any, str]:
    """Features of a WRENCH split and a description of them."""
    from metal.end_model.text import char_spans, embed_texts, relation_embeddings

    ex0 = split.examples[0] if split.examples else {}
    if kind == "auto":
        if split.features is not None:
            kind = "numeric"
        elif "text" in ex0 and "span1" in ex0 and "span2" in ex0:
            kind = "relation"
        elif "text" in ex0:
            kind = "text"
        else:
            kind = "votes"
    if kind == "numeric":
        if split.features is None:
            raise TrainInputError(f"{split.name}/{split.split} has no numeric feature vectors; "
                                  "use --features text / relation / votes")
        return split.features.astype(np.float32), f"{split.features.shape[1]} numeric features"
    if kind in ("text", "relation"):
        if "text" not in ex0:
            raise TrainInputError(f"{split.name}/{split.split} has no 'text' in its examples; "
                                  "use --features numeric / votes")
        texts = [str(e.get("text", "")) for e in split.examples]
        if kind == "relation":
            return (relation_embeddings(texts, char_spans(split.examples)),
                    "wordllama embeddings of entity 1, entity 2, the words between, the text")
        return embed_texts(texts), "wordllama sentence embeddings (256-d)"
    L = np.asarray(split.L, dtype=np.int64)
    k = max(int(L.max(initial=-1)) + 1, 2)
    X = np.zeros((L.shape[0], L.shape[1] * k), dtype=np.float32)
    rows, cols = np.nonzero(L != -1)
    X[rows, cols * k + L[rows, cols]] = 1.0
    return X, "one-hot source votes"


def cmd_train(args: argparse.Namespace) -> int:
    from metal import LabelModel, MajorityVoter
    from metal.data.wrench import load_wrench, wrench_splits
    from metal.end_model import DenseInput, EndModel
    from metal.metrics import probs_to_preds, score_predictions

    if args.model_out and Path(args.model_out).suffix != ".npz":
        raise TrainInputError(f"{args.model_out}: expected a file name ending in .npz")
    if not Path(args.data).exists():
        raise TrainInputError(f"{args.data} does not exist; expected a WRENCH folder (or .npz "
                              "with L_<split>, X_<split>, y_<split>)")
    available = wrench_splits(args.data)
    if args.split not in available:
        raise TrainInputError(f"{args.data} has no {args.split!r} split (it has {available}); "
                              "pick one with --split")
    train = load_wrench(args.data, args.split)
    k = args.cardinality or train.cardinality
    valid = load_wrench(args.data, args.valid_split) if args.valid_split in available \
        and args.valid_split != args.split else None
    test = load_wrench(args.data, args.test_split) if args.test_split in available else None
    print(f"{train.name}: train on {args.split} ({train.n_rows} rows, {train.n_sources} "
          f"sources, {k} classes)" + (f", early stopping on {args.valid_split} "
                                      f"({valid.n_rows} labeled rows)" if valid else "")
          + (f", test on {args.test_split} ({test.n_rows} rows)" if test else ""))

    label_model = None
    if args.probs:
        from metal._cli_io import _read_probs

        targets = _read_probs(args.probs)
        if targets.shape != (train.n_rows, k):
            raise TrainInputError(f"{args.probs} has shape {targets.shape}; expected "
                                  f"({train.n_rows}, {k}) for {args.split}")
        source = f"probabilities from {args.probs}"
    elif args.labels == "metal":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            label_model = LabelModel(cardinality=k, seed=args.seed).fit(train.L)
            targets = label_model.predict_proba(train.L)
        source = "LabelModel probabilities (fit on the train votes, no labels)"
    elif args.labels == "majority":
        targets = np.asarray(MajorityVoter(cardinality=k, seed=args.seed).predict(train.L))
        source = "majority-vote labels"
    else:
        if (train.Y < 0).all():
            raise TrainInputError(f"{args.split} has no gold labels; use --labels metal")
        targets, source = train.Y, "gold labels"
    weak = args.probs is not None or args.labels != "gold"
    X, described = _features(train, args.features)
    kind = args.features
    print(f"labels: {source}; features: {described}")
    Xv = _features(valid, kind)[0] if valid is not None else None
    model = EndModel(k, input_module=DenseInput(X.shape[1]), hidden=tuple(args.hidden),
                     dropout=args.dropout,
                     class_weight=None if args.class_weight == "none" else args.class_weight,
                     mask_uncovered=not args.keep_uncovered, seed=args.seed,
                     device=args.device, n_epochs=args.epochs, lr=args.lr,
                     batch_size=args.batch_size, patience=args.patience,
                     valid_metric=args.valid_metric, progress=args.progress)
    start = time.perf_counter()
    model.fit(X, targets, L=train.L if weak else None, X_valid=Xv,
              Y_valid=None if valid is None else valid.Y)
    print(f"trained {len(model.history_)} epochs in {time.perf_counter() - start:.1f} s"
          + (f"; best epoch {model.best_epoch_} ({args.valid_metric} "
             f"{model.best_score_:.4f} on {args.valid_split})" if model.best_epoch_ is not None
             else ""))
    if test is not None and (test.Y >= 0).any():
        Xt = _features(test, kind)[0]
        scores = model.score(Xt, test.Y, args.metrics)
        print(f"end model on {args.test_split}: "
              + ", ".join(f"{m} {v:.4f}" for m, v in scores.items()))
        if label_model is not None:
            preds = probs_to_preds(label_model.predict_proba(test.L), "random", seed=args.seed)
            lm_scores = score_predictions(test.Y, preds, args.metrics, cardinality=k)
            print(f"label model alone on {args.test_split}: "
                  + ", ".join(f"{m} {v:.4f}" for m, v in lm_scores.items()))
    if args.model_out:
        model.save(args.model_out)
        print(f"end model written to {args.model_out}")
    if args.history_png:
        model.plot_history(args.history_png)
        print(f"learning curves written to {args.history_png}")
    return 0


def add_train(sub: Any) -> None:
    """Register ``metal train`` on the ``metal`` parser's subcommands."""
    from metal.metrics import METRICS

    p = sub.add_parser(
        "train", help="label model -> end model on its probabilistic labels -> test scores",
        description="Fit the label model on the train split's votes (no labels), train an end "
        "model on its probabilistic labels (early stopping on the labeled valid split when "
        "there is one), score it on the test split and save it.")
    p.add_argument("data", metavar="DATA", help="WRENCH folder (or .npz with L_<split>, "
                   "X_<split>, y_<split>)")
    p.add_argument("--split", default="train", help="split to train on (default train; "
                   "chemprot: valid)")
    p.add_argument("--valid-split", default="valid",
                   help="labeled split for early stopping (default valid; skipped if absent)")
    p.add_argument("--test-split", default="test", help="split to score (default test)")
    p.add_argument("--cardinality", "-k", type=int, default=None, help="number of classes")
    p.add_argument("--labels", choices=LABELS, default="metal",
                   help="training labels: metal (LabelModel probabilities, default), majority "
                   "or gold (upper bound)")
    p.add_argument("--probs", metavar="FILE", help="use these probabilities (.npy/.csv from "
                   "`metal fit --probs`) as training labels instead")
    p.add_argument("--features", choices=FEATURES, default="auto",
                   help="auto (numeric vectors if present, else relation / text embeddings "
                   "from wordllama, else the votes), numeric, text, relation or votes")
    p.add_argument("--hidden", type=int, nargs="*", default=[128],
                   help="trunk layer widths (default 128)")
    p.add_argument("--dropout", type=float, default=0.5, help="dropout (default 0.5)")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate (default 3e-4)")
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--patience", type=int, default=6,
                   help="early-stopping patience in epochs (default 6)")
    p.add_argument("--valid-metric", default="accuracy", choices=("loss",) + METRICS,
                   help="metric for early stopping (default accuracy)")
    p.add_argument("--class-weight", choices=("none", "balanced"), default="none",
                   help="balanced: inverse class frequency of the training labels")
    p.add_argument("--keep-uncovered", action="store_true",
                   help="train on rows without any vote too (masked by default)")
    p.add_argument("--metrics", nargs="+", choices=METRICS, default=["accuracy"],
                   help="test metrics (default accuracy)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument("--model-out", metavar="FILE.npz", help="write the trained end model")
    p.add_argument("--history-png", metavar="FILE.png", help="write learning curves")
    p.set_defaults(func=cmd_train)


def demo_end_model(L: np.ndarray, Y: np.ndarray, label_model: Any, k: int, seed: int,
                   n_features: int = 20) -> dict[str, float]:
    """The demo's last step: an end model on the label model's probabilities.

    Generates features that carry the (hidden) class, ``X = means[Y] + noise``, trains an
    :class:`~metal.end_model.EndModel` on the first 80% of rows with the label model's
    probabilities as targets (rows without a vote masked; 200 labeled rows for early stopping)
    and prints accuracy on the last 20%, where it also labels rows no source voted on.
    """
    from metal.end_model import EndModel
    from metal.metrics import probs_to_preds

    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, n_features))
    X = (means[Y] + 1.6 * rng.normal(size=(Y.shape[0], n_features))).astype(np.float32)
    n = Y.shape[0]
    cut, n_valid = int(0.8 * n), min(200, n // 10)
    tr, va, te = slice(0, cut - n_valid), slice(cut - n_valid, cut), slice(cut, n)
    probs = label_model.predict_proba(L[tr])
    start = time.perf_counter()
    model = EndModel(k, hidden=(64,), dropout=0.1, lr=3e-3, n_epochs=15, patience=4,
                     batch_size=256, seed=seed)
    model.fit(X[tr], probs, L=L[tr], X_valid=X[va], Y_valid=Y[va])
    seconds = time.perf_counter() - start
    lm_pred = probs_to_preds(label_model.predict_proba(L[te]), "random", seed=seed)
    uncovered = (L[te] == -1).all(axis=1)
    em_pred = model.predict(X[te])
    out = {"label_model": float(np.mean(lm_pred == Y[te])),
           "end_model": float(np.mean(em_pred == Y[te])),
           "label_model_uncovered": float(np.mean(lm_pred[uncovered] == Y[te][uncovered]))
           if uncovered.any() else float("nan"),
           "end_model_uncovered": float(np.mean(em_pred[uncovered] == Y[te][uncovered]))
           if uncovered.any() else float("nan")}
    print(f"\nend model: {n_features} generated features per row (class means + noise); "
          f"trained on the label model's probabilities of {cut - n_valid} rows in "
          f"{seconds:.1f} s ({n_valid} labeled rows for early stopping)")
    print(f"held-out accuracy ({n - cut} rows): label model {out['label_model']:.3f}, "
          f"end model {out['end_model']:.3f}"
          + (f"; on the {int(uncovered.sum())} rows without any vote: "
             f"{out['label_model_uncovered']:.3f} vs {out['end_model_uncovered']:.3f}"
             if uncovered.any() else ""))
    return out

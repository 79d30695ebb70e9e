"""The ``metal`` command line.

Subcommands (``metal COMMAND --help`` for each):

* ``demo``: fit a label model on generated data and compare it with the truth;
* ``analyze``: per-source summary (polarity, coverage, overlaps, conflicts, accuracy) of a
  dataset, optionally with plots;
* ``check``: are the sources' accuracies identifiable for this dependency (and task) graph?
* ``fit``: fit a label model on a dataset; write probabilistic labels and the model;
* ``evaluate``: score saved probabilistic labels or a saved model against gold labels;
* ``train``: label model -> end model on its probabilistic labels -> test scores
  (:mod:`metal.end_model.cli`).
* ``weasel``: train an end model end to end from the sources (WeaSEL, ``metal.weasel.cli``).

Datasets (the ``DATA`` argument) are WRENCH folders, ``.npz`` files holding ``L`` (and
optionally ``Y``), crowd folders (``answer.csv`` + ``truth.csv``) or crowd answer csv files.

Each subcommand is one ``_add_*`` function in :data:`COMMANDS` that registers its parser and
its ``_cmd_*`` handler, so new subcommands (e.g. end-model training) are added by appending one
entry. Errors from bad input print one readable line to stderr (never a traceback) and exit with
status 2 for a bad command line and 1 for unusable data (missing, malformed or too large);
``check`` also exits 1 when the structure is not identifiable.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metal._cli_io import InputError, _read_probs, _write_probs
from metal._version import __version__
from metal.errors import MetalError

MODEL_KINDS = ("metal", "dawid-skene", "majority")


# ---------------------------------------------------------------------------- data loading
@dataclass
class Dataset:
    """What every subcommand needs from an input: votes, gold, names, classes."""

    L: Any  # dense -1-padded ndarray or CSR storing votes only
    Y: np.ndarray | None  # -1 = unknown; None when the input has no gold at all
    source_names: list[str]
    cardinality: int
    label_names: list[str] | None
    description: str

    @property
    def n_rows(self) -> int:
        return int(self.L.shape[0])

    @property
    def n_sources(self) -> int:
        return int(self.L.shape[1])


def _infer_k(L: Any, Y: np.ndarray | None, given: int | None) -> int:
    if given is not None:
        return int(given)
    import scipy.sparse as sp

    top = int(L.data.max(initial=-1)) if sp.issparse(L) else int(np.max(L, initial=-1))
    if Y is not None:
        top = max(top, int(np.max(Y, initial=-1)))
    return max(top + 1, 2)


def load_dataset(path: str, split: str = "train", cardinality: int | None = None) -> Dataset:
    """Read a WRENCH folder, ``.npz``, crowd folder or crowd csv into a :class:`Dataset`."""
    if cardinality is not None:
        from metal._validate import check_int

        check_int("--cardinality", cardinality, low=2)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path} does not exist; expected a WRENCH folder, a .npz file with "
                         "L (and Y), a crowd folder (answer.csv, truth.csv) or a crowd .csv")
    if (p.is_dir() and (p / "answer.csv").exists()) or (p.is_file() and p.suffix == ".csv"):
        from metal.data.crowd import load_crowd

        crowd = load_crowd(p)
        has_truth = bool((crowd.Y >= 0).any())
        k = cardinality if cardinality is not None else max(crowd.cardinality, 2)
        return Dataset(crowd.L, crowd.Y if has_truth else None,
                       [str(w) for w in crowd.workers], k, [str(c) for c in crowd.classes],
                       f"crowd data {crowd.name}: {crowd.L.shape[0]} questions, "
                       f"{crowd.L.shape[1]} workers, classes {crowd.classes} (all items)")
    if p.is_file() and p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as archive:
                files = set(archive.files)
                L = archive["L"] if "L" in files else None
                Y = archive["Y"] if "Y" in files else None
        except Exception as exc:  # zip, truncated member, pickled object arrays
            from metal.errors import DataFormatError

            raise DataFormatError(f"{path} is not a readable .npz archive ({exc}); expected an "
                                  "archive written by np.savez with an array 'L'") from exc
        if L is not None:
            from metal.matrix import check_gold, check_label_matrix

            lm = check_label_matrix(L, name=f"L in {p.name}")
            k = _infer_k(lm.data, Y, cardinality)
            Yc = None if Y is None else check_gold(Y, lm.n_rows, k, name=f"Y in {p.name}")
            return Dataset(lm.data, Yc, [str(i) for i in range(lm.n_sources)], k, None,
                           f"{p.name}: {lm.n_rows} rows, {lm.n_sources} sources")
        if not any(f.startswith("L_") for f in files):
            raise InputError(f"{path} holds {sorted(files)}; expected an array 'L' (n, m) with "
                             "-1 for abstain and optionally 'Y' (n,), or WRENCH-style "
                             "'L_<split>'/'y_<split>'")
    from metal.data.wrench import load_wrench

    ws = load_wrench(p, split)
    has_gold = bool((ws.Y >= 0).any())
    k = cardinality if cardinality is not None else ws.cardinality
    return Dataset(ws.L, ws.Y if has_gold else None, [str(i) for i in range(ws.n_sources)], k,
                   ws.label_names,
                   f"{ws.name}/{split}: {ws.n_rows} rows, {ws.n_sources} sources, {k} classes")


def _read_edges(args: argparse.Namespace) -> list[tuple[int, int]]:
    """Dependency edges from repeated ``--edge i,j`` and an ``--edges FILE`` of "i j" lines."""
    edges: list[tuple[int, int]] = []
    texts = [(f"--edge {e}", e.replace(",", " ")) for e in (args.edge or [])]
    if args.edges:
        try:
            lines = Path(args.edges).read_text().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read the edge file {args.edges} ({exc})") from exc
        texts += [(f"{args.edges} line {i + 1}", line.split("#")[0].replace(",", " "))
                  for i, line in enumerate(lines)]
    for where, text in texts:
        parts = text.split()
        if not parts:
            continue
        try:
            i, j = (int(x) for x in parts)
        except ValueError:
            raise InputError(f"{where}: {text.strip()!r} is not an edge; expected two source "
                             "indices 'i j' (or i,j)") from None
        edges.append((i, j))
    return edges


def _dependency_graph(edges: list[tuple[int, int]], m: int) -> Any:
    if not edges:
        return None
    import networkx as nx

    bad = [e for e in edges if not (0 <= e[0] < m and 0 <= e[1] < m) or e[0] == e[1]]
    if bad:
        raise InputError(f"dependency edges {bad} are not pairs of distinct sources 0..{m - 1}")
    return nx.Graph(edges)


def _model_kind(path: str) -> Any:
    import json

    p = Path(path)
    if not p.exists():
        raise InputError(f"{path} does not exist; write it with `metal fit ... --model-out "
                         f"{path}`")
    try:
        with np.load(p, allow_pickle=False) as archive:
            return json.loads(str(archive["__meta__"])).get("kind")
    except Exception as exc:  # zip, key or json errors all mean "not a model file"
        from metal.errors import SaveFormatError  # a data error (exit 1), not a usage one

        raise SaveFormatError(f"{path} is not a metal model file ({exc}); save one with `metal "
                              "fit ... --model-out FILE`") from exc


def _load_model(path: str) -> Any:
    p = Path(path)
    kind = _model_kind(path)
    if kind == "MultiTaskLabelModel":
        from metal.label_model.multitask import MultiTaskLabelModel

        return MultiTaskLabelModel.load(p)
    if kind == "LabelModel":
        from metal.label_model.label_model import LabelModel

        return LabelModel.load(p)
    if kind == "DawidSkene":
        from metal.label_model.dawid_skene import DawidSkene

        return DawidSkene.load(p)
    raise InputError(f"{path} holds a {kind}; metal evaluate reads LabelModel, DawidSkene and "
                     "MultiTaskLabelModel files")


def _add_data_args(p: argparse.ArgumentParser, split_default: str) -> None:
    p.add_argument("data", metavar="DATA", help="WRENCH folder, .npz with L (and Y), crowd "
                   "folder (answer.csv + truth.csv) or crowd answers .csv")
    p.add_argument("--split", default=split_default, choices=("train", "valid", "test"),
                   help=f"WRENCH split to read (default {split_default}; ignored for .npz "
                   "with L and crowd data)")
    p.add_argument("--cardinality", "-k", type=int, default=None,
                   help="number of classes (default: from label.json / the data)")


def _add_edge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--edge", action="append", metavar="I,J",
                   help="a dependency between sources I and J (repeatable)")
    p.add_argument("--edges", metavar="FILE",
                   help="file of dependency edges, one 'i j' pair per line (# comments)")


def _cmd_demo(args: argparse.Namespace) -> int:
    from metal import LabelModel, MajorityVoter
    from metal.data import make_synthetic

    k = args.cardinality
    data = make_synthetic(n=args.n, m=args.m, cardinality=k, seed=args.seed)
    print(f"metal {__version__} demo: {args.n} rows, {args.m} sources, {k} classes "
          f"(generated, seed {args.seed}); {np.mean(data.L >= 0):.0%} of entries are votes, "
          f"{int((data.unipolar >= 0).sum())} unipolar sources")
    # The generator draws free class-conditional tables, class-dependent coverage and a random
    # class balance, so fit the model family it follows (the defaults are tuned for real LFs).
    model = LabelModel(cardinality=k, parameterization="full", model_abstains=True, l2=0.0,
                       seed=args.seed).fit(data.L, class_balance="estimate")
    print("fitted LabelModel(parameterization='full', model_abstains=True, l2=0) with the class "
          "balance estimated, without labels")
    learned = model.get_accuracies()
    cond = data.conditional_probs
    correct = np.einsum("iyy,y->i", cond[:, :k, :], data.class_balance)
    voted = ((1 - cond[:, k, :]) * data.class_balance).sum(axis=1)
    true_acc = correct / voted
    print("\nsource  polarity  coverage  accuracy(true)  accuracy(learned)")
    for i in range(args.m):
        pol = "all" if data.unipolar[i] < 0 else f"only {data.unipolar[i]}"
        print(f"{i:>6}  {pol:>8}  {np.mean(data.L[:, i] >= 0):>8.2f}  {true_acc[i]:>14.3f}  "
              f"{learned[i]:>17.3f}")
    mae = np.abs(model.get_conditional_probs() - cond).mean()
    print(f"\nmean |learned - true| over all P(lambda_i = v | Y = y): {mae:.4f}")
    print(f"class balance: true {np.round(data.class_balance, 3).tolist()}, "
          f"learned {np.round(model.class_balance_, 3).tolist()}")
    ours = model.score(data.L, data.Y)["accuracy"]
    default = LabelModel(cardinality=k, seed=args.seed).fit(data.L).score(data.L, data.Y)
    mv = MajorityVoter(cardinality=k).score(data.L, data.Y)["accuracy"]
    print(f"label accuracy: LabelModel {ours:.3f} (with its defaults {default['accuracy']:.3f}) "
          f"vs majority vote {mv:.3f}")
    if not args.no_end_model:  # the rest of the pipeline: probabilistic labels -> end model
        from metal.end_model.cli import demo_end_model

        demo_end_model(data.L, data.Y, model, k, args.seed)
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    import pandas as pd

    from metal.labeling.analysis import label_conflict, label_coverage, lf_summary

    data = load_dataset(args.data, args.split, args.cardinality)
    model = _load_model(args.model) if args.model else None
    summary = lf_summary(data.L, data.Y, names=data.source_names, model=model)
    print(data.description)
    print(f"rows with a vote: {label_coverage(data.L):.1%}; rows with conflicting votes: "
          f"{label_conflict(data.L):.1%}" + ("" if data.Y is not None else "; no gold labels"))
    with pd.option_context("display.max_rows", None, "display.width", 120,
                           "display.float_format", "{:.3f}".format):
        print(summary.to_string())
    if args.out:
        summary.to_csv(args.out)
        print(f"summary written to {args.out}")
    if args.plots:
        from metal.labeling.plots import (
            plot_accuracy_scatter,
            plot_calibration,
            plot_coverage_accuracy,
        )

        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / "coverage_accuracy.png"]
        plot_coverage_accuracy(summary, written[0])
        if "emp_acc" in summary and "learned_acc" in summary:
            written.append(folder / "accuracy_scatter.png")
            plot_accuracy_scatter(summary, written[-1])
        if model is not None and data.Y is not None:
            written.append(folder / "calibration.png")
            plot_calibration(model.predict_proba(data.L), data.Y, written[-1])
        print("plots written: " + ", ".join(str(w) for w in written))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from metal.label_model.identifiability import check_identifiability

    edges = _read_edges(args)
    L = None
    if args.data:
        data = load_dataset(args.data, args.split, args.cardinality)
        L, m, k = data.L, data.n_sources, data.cardinality
        print(data.description)
    else:
        if args.n_sources is None:
            raise InputError("give the number of sources with --n-sources M (and --cardinality "
                             "K), or a dataset with --data DATA")
        m, k = args.n_sources, args.cardinality if args.cardinality is not None else 2
    graph = _dependency_graph(edges, m)
    if args.tasks:
        import networkx as nx

        try:
            cards = [int(c) for c in args.tasks.split(",")]
        except ValueError:
            raise InputError(f"--tasks {args.tasks}: expected comma-separated task "
                             "cardinalities, e.g. --tasks 2,3") from None
        if L is not None:
            raise InputError("--tasks (multi-task structure check) cannot be combined with "
                             "--data; give --n-sources and --coverage")
        if not args.coverage or len(args.coverage) != m:
            raise InputError(f"--tasks needs --coverage with one entry per source ({m}), e.g. "
                             "--coverage 0 0,1 1")
        try:
            coverage = [[int(t) for t in c.split(",")] for c in args.coverage]
            task_edges = [tuple(int(t) for t in e.split(",")) for e in args.task_edge or []]
        except ValueError:
            raise InputError("--coverage entries and --task-edge must be comma-separated task "
                             "indices") from None
        task_graph = nx.Graph()
        task_graph.add_nodes_from(range(len(cards)))
        task_graph.add_edges_from(task_edges)
        report = check_identifiability(n_sources=m, cardinality=cards, dependencies=graph,
                                       task_graph=task_graph, coverage=coverage)
    else:
        report = check_identifiability(n_sources=m, cardinality=k, dependencies=graph, L=L)
    print(report)
    ok = report.identifiable and report.data_identifiable is not False
    return 0 if ok else 1


def _make_model(args: argparse.Namespace, k: int, graph: Any) -> Any:
    if args.model == "metal":
        from metal.label_model.label_model import LabelModel

        return LabelModel(cardinality=k, method=args.method, dependencies=graph, seed=args.seed)
    if graph is not None:
        raise InputError(f"--model {args.model} does not model dependencies; drop --edge/--edges"
                         " or use --model metal")
    if args.model == "dawid-skene":
        from metal.label_model.dawid_skene import DawidSkene

        return DawidSkene(cardinality=k, seed=args.seed)
    from metal.label_model.baselines import MajorityVoter

    return MajorityVoter(cardinality=k, seed=args.seed)


def _cmd_fit(args: argparse.Namespace) -> int:
    if getattr(args, "tasks", None):  # multi-task: metal/label_model/multitask/cli.py
        from metal.label_model.multitask.cli import fit_multitask

        return fit_multitask(args)
    for path, suffixes in ((args.probs, (".npy", ".csv")), (args.model_out, (".npz",))):
        if path and Path(path).suffix not in suffixes:
            raise InputError(f"{path}: expected a file name ending in {' or '.join(suffixes)}")
    if args.model_out and args.model == "majority":
        raise InputError("--model majority learns nothing to save; drop --model-out")
    data = load_dataset(args.data, args.split, args.cardinality)
    graph = _dependency_graph(_read_edges(args), data.n_sources)
    model = _make_model(args, data.cardinality, graph)
    print(data.description)
    start = time.perf_counter()
    model.fit(data.L)
    probs = model.predict_proba(data.L)
    seconds = time.perf_counter() - start
    print(f"fitted {type(model).__name__} ({args.model}) on {data.n_rows} rows x "
          f"{data.n_sources} sources, k={data.cardinality}, in {seconds:.2f} s (no labels used)")
    if hasattr(model, "class_balance_"):
        print(f"class balance: {np.round(model.class_balance_, 3).tolist()}")
    if hasattr(model, "get_accuracies"):
        acc = model.get_accuracies()
        pairs = zip(data.source_names[:10], acc[:10], strict=True)
        shown = ", ".join(f"{n}: {a:.3f}" for n, a in pairs)
        more = "" if data.n_sources <= 10 else f" ... ({data.n_sources} sources)"
        print(f"learned source accuracies: {shown}{more}")
    if args.probs:
        _write_probs(args.probs, probs)
        print(f"probabilistic labels ({probs.shape[0]} x {probs.shape[1]}) written to "
              f"{args.probs}")
    if args.model_out:
        model.save(args.model_out)
        print(f"model written to {args.model_out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from metal.matrix import check_gold
    from metal.metrics import probs_to_preds, score_predictions

    if (args.probs is None) == (args.model is None):
        raise InputError("give exactly one of --probs FILE (saved probabilistic labels) or "
                         "--model FILE (a saved model, applied to DATA)")
    if args.model is not None and _model_kind(args.model) == "MultiTaskLabelModel":
        from metal.label_model.multitask.cli import evaluate_multitask

        return evaluate_multitask(_load_model(args.model), args)
    data = load_dataset(args.data, args.split, args.cardinality)
    if data.Y is None:
        raise InputError(f"{args.data} ({args.split}) has no gold labels to evaluate against; "
                         "pick a split with labels (--split test / valid)")
    if args.probs:
        probs = _read_probs(args.probs)
        source = args.probs
        seed = args.seed
    else:
        model = _load_model(args.model)
        probs = model.predict_proba(data.L)
        source = f"{type(model).__name__} from {args.model}"
        seed = args.seed if args.seed is not None else int(getattr(model, "seed", 0))
    if probs.shape[0] != data.n_rows:
        raise InputError(f"{source} has {probs.shape[0]} rows; {args.data} ({args.split}) has "
                         f"{data.n_rows}. Evaluate labels on the rows they were computed for")
    k = probs.shape[1]
    Y = check_gold(data.Y, data.n_rows, k)
    preds = probs_to_preds(probs, args.tie_break, seed=seed or 0)
    scores = score_predictions(Y, preds, args.metrics, cardinality=k)
    print(data.description)
    print(f"scoring {source} on {int((Y >= 0).sum())} rows with gold labels "
          f"(ties: {args.tie_break})")
    for name, value in scores.items():
        print(f"{name:>10}: {value:.4f}")
    if args.calibration:
        from metal.labeling.plots import expected_calibration_error

        print(f"{'ece':>10}: {expected_calibration_error(probs, Y):.4f}")
    return 0


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser("demo", help="fit a label model on generated data and report",
                          description="Generate a label matrix with known source accuracies, "
                          "fit the label model without labels and compare what it learned.")
    demo.add_argument("--n", type=int, default=20_000, help="rows (default 20000)")
    demo.add_argument("--m", type=int, default=10, help="sources (default 10)")
    demo.add_argument("--cardinality", "-k", type=int, default=3, help="classes (default 3)")
    demo.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    demo.add_argument("--no-end-model", action="store_true",
                      help="stop after the label model (skip the end-model step)")
    demo.set_defaults(func=_cmd_demo)


def _add_analyze(sub: Any) -> None:
    p = sub.add_parser("analyze", help="per-source summary of a dataset",
                       description="Print one row per source: polarity, coverage, overlaps, "
                       "conflicts; with gold labels also correct/incorrect/empirical accuracy; "
                       "with --model the learned accuracy.")
    _add_data_args(p, "train")
    p.add_argument("--model", metavar="FILE", help="a model saved by `metal fit --model-out`")
    p.add_argument("--out", metavar="CSV", help="also write the summary table to this csv")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots to this folder")
    p.set_defaults(func=_cmd_analyze)


def _add_check(sub: Any) -> None:
    p = sub.add_parser("check", help="identifiability of a dependency (and task) graph",
                       description="Decide before training whether the sources' accuracies "
                       "are identifiable from unlabeled data. Exit status 0: identifiable; 1: "
                       "not identifiable; 2: bad input.")
    p.add_argument("--n-sources", "-m", type=int, help="number of sources")
    p.add_argument("--cardinality", "-k", type=int, default=None,
                   help="number of classes (default 2, or inferred from --data)")
    p.add_argument("--data", metavar="DATA", help="dataset to infer sources/classes from and "
                   "to run the data checks on (WRENCH folder, .npz, crowd folder/csv)")
    p.add_argument("--split", default="train", choices=("train", "valid", "test"),
                   help="WRENCH split for --data (default train)")
    _add_edge_args(p)
    p.add_argument("--tasks", metavar="K1,K2,...", help="multi-task form: the cardinality of "
                   "each task (needs --coverage)")
    p.add_argument("--coverage", nargs="+", metavar="T[,T...]",
                   help="multi-task form: the tasks each source labels, one entry per source")
    p.add_argument("--task-edge", action="append", metavar="A,B",
                   help="multi-task form: an edge of the task graph (repeatable)")
    p.set_defaults(func=_cmd_check)


def _add_fit(sub: Any) -> None:
    p = sub.add_parser("fit", help="fit a label model; write probabilistic labels and the model",
                       description="Fit a label model on DATA without using its labels, then "
                       "write P(Y | votes) for every row (--probs) and the model (--model-out).")
    _add_data_args(p, "train")
    p.add_argument("--model", choices=MODEL_KINDS, default="metal",
                   help="metal (MeTaL LabelModel, default), dawid-skene or majority")
    p.add_argument("--method", choices=("moments", "inverse"), default="moments",
                   help="LabelModel estimator (default moments)")
    _add_edge_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--probs", metavar="FILE", help="write probabilistic labels (.npy or .csv)")
    p.add_argument("--model-out", metavar="FILE.npz", help="write the fitted model")
    p.add_argument("--tasks", metavar="TASKS.json", help="multi-task: a task graph JSON file; "
                   "DATA is then an .npz with L of shape (n, m, t)")
    p.set_defaults(func=_cmd_fit)


def _add_evaluate(sub: Any) -> None:
    from metal.metrics import METRICS, TIE_BREAKS

    p = sub.add_parser("evaluate", help="score saved labels or a saved model against gold",
                       description="Score probabilistic labels (--probs) or a saved model "
                       "applied to DATA (--model) against DATA's gold labels.")
    _add_data_args(p, "test")
    p.add_argument("--probs", metavar="FILE", help="probabilities from `metal fit --probs`")
    p.add_argument("--model", metavar="FILE", help="model from `metal fit --model-out`")
    p.add_argument("--metrics", nargs="+", choices=METRICS, default=["accuracy"],
                   help="metrics to report (default accuracy)")
    p.add_argument("--tie-break", choices=TIE_BREAKS, default="random",
                   help="how tied classes are broken (default random, seeded)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of random tie breaks (default: the model's seed, else 0)")
    p.add_argument("--calibration", action="store_true",
                   help="also report the expected calibration error of the probabilities")
    p.set_defaults(func=_cmd_evaluate)


def _add_train(sub: Any) -> None:
    from metal.end_model.cli import add_train  # torch is imported only when training runs

    add_train(sub)


def _add_weasel(sub: Any) -> None:
    from metal.weasel.cli import add_parser

    add_parser(sub)


def _add_ner(sub: Any) -> None:
    from metal.sequence.cli import add_parser

    add_parser(sub)


# One entry per subcommand.
COMMANDS: list[Callable[[Any], None]] = [_add_demo, _add_analyze, _add_check, _add_fit,
                                         _add_evaluate, _add_train, _add_weasel, _add_ner]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (status 2) like every other user error."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="metal", description="Multi-task weak supervision: label models without labels.")
    parser.add_argument("--version", action="version", version=f"metal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


#: Exit status of a user error: 2 for a bad command line (usage), 1 for unusable data.
USAGE_ERROR, DATA_ERROR = 2, 1


def _exit_code(exc: BaseException) -> int | None:
    """2 for usage errors, 1 for data errors, None for a bug (which keeps its traceback)."""
    from metal.errors import ConfigError, ResourceLimitError, TaskGraphError

    if isinstance(exc, ResourceLimitError):
        return DATA_ERROR
    if isinstance(exc, (InputError, ConfigError, TaskGraphError)):
        return USAGE_ERROR
    if isinstance(exc, (MetalError, OSError, MemoryError)):
        return DATA_ERROR
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = f"out of memory ({text}); try a smaller input or a larger machine"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a user error prints one line to stderr and returns its status
    (2: usage, 1: data) instead of a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:
        code = _exit_code(exc)
        if code is None:
            raise
        print(f"metal {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Label-model benchmark: every real set vs the peers, consistency, crowd scale, scaling.

Run ``python benchmarks/label_model.py`` (several minutes on 2 cores; ``--only SECTION`` runs
one). It prints every table and rewrites the ``label_model``, ``consistency``, ``crowd_scale``
and ``scaling`` sections of ``benchmarks/RESULTS.md``.

Protocol (that of ``../shared/docs/ANCHORS.md``):

* Every real set in ``../shared/data``: the WRENCH classification sets, Snorkel's spouse task
  (``spear_cage_spouse``) and the four crowd sets. Fit on the train split (chemprot has none:
  fit on valid; crowd sets: all items), score on test (crowd: items with truth). No gold label
  is read by any model.
* Prediction = argmax of each model's probabilities, ties broken at random with the same keys
  for every model (``metal.metrics.probs_to_preds(probs, "random", seed=...)``). Rows no source
  covers keep the model's own output (its class balance).
* Metric: accuracy; F1 of class 1 for sms, census and spouse (the "main" metric, as in the
  anchors). Both accuracy and F1 are printed for the binary sets.
* Snorkel 0.10.0 ``LabelModel`` with its defaults (``n_epochs=100, lr=0.01``), seed fixed;
  ours with its constructor defaults. One thread each (``OMP/MKL_NUM_THREADS=1``,
  ``torch.set_num_threads(1)``). Time = ``fit`` on the fit split + ``predict_proba`` on the
  test split, wall clock, after one warm-up fit of each model on a tiny matrix.

The scaling table runs every (model, n) in a fresh subprocess that loads an int8 label matrix
written by this script, records ``ru_maxrss`` after imports and loading (baseline) and after
``fit`` + ``predict_proba``, and reports the increase.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import SHARED_DATA, machine_line, markdown_table, write_section  # noqa: E402

SEED = 123  # model seeds and tie-break keys
MAIN_F1 = {"sms", "census", "spouse"}  # sets scored by F1 of class 1 (as in ANCHORS.md)
# the main table breaks ties with one set of keys (SEED); where many rows are tied (rows no
# source covers), the score also depends on those keys: spread over this many other keys
TIE_KEYS = 100
TIE_LABELS = ("majority vote", "snorkel", "ours")


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str
    fit_split: str  # "all" for crowd sets (fit and score on the same items)
    kind: str  # "wrench", "spouse" or "crowd"


DATASETS = [
    Dataset("youtube", "wrench_youtube", "train", "wrench"),
    Dataset("sms", "wrench_sms", "train", "wrench"),
    Dataset("trec", "wrench_trec", "train", "wrench"),
    Dataset("semeval", "wrench_semeval", "train", "wrench"),
    Dataset("chemprot", "wrench_chemprot", "valid", "wrench"),
    Dataset("census", "wrench_census", "train", "wrench"),
    Dataset("spouse", "spear_cage_spouse", "train", "spouse"),
    Dataset("dog", "crowd_dog", "all", "crowd"),
    Dataset("face", "crowd_face_sentiment", "all", "crowd"),
    Dataset("product", "crowd_product", "all", "crowd"),
    Dataset("web", "crowd_web_zhou2012", "all", "crowd"),
]
# best peer per set and the best peer's mean, from ../shared/docs/ANCHORS.md (same protocol)
ANCHOR_BEST = {"census": 0.512, "chemprot": 0.488, "dog": 0.843, "face": 0.661,
               "product": 0.940, "web": 0.864, "semeval": 0.825, "sms": 0.220,
               "spouse": 0.345, "trec": 0.608, "youtube": 0.856}
ANCHOR_BEST_PEER_MEAN = 0.618  # snorkel 0.10.0


def _threads() -> None:
    import torch

    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.WARNING)  # snorkel logs every fit at INFO


# ---------------------------------------------------------------------------- models
class Refused(Exception):
    """A model refused the data with a metal error (reported in the table)."""


@dataclass
class Variant:
    """One model configuration: how to fit it and get test probabilities."""

    label: str
    run: Callable[[Any, Any, np.ndarray | None, int], np.ndarray]
    timed: bool = False


MODES_SEEN: dict[str, str] = {}  # set name -> mode our default kept (filled by _ours)


def _ours(tag: str | None = None, **kwargs: Any) -> Callable[..., np.ndarray]:
    from metal.label_model.label_model import LabelModel

    def run(L_fit: Any, L_test: Any, Y_dev: np.ndarray | None, k: int) -> np.ndarray:
        model = LabelModel(cardinality=k, seed=SEED, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. sources that never vote in the fit split
            model.fit(L_fit)
            if tag is not None:
                MODES_SEEN[tag] = model.fit_info_.mode
            return model.predict_proba(L_test)

    return run


def _snorkel() -> Callable[..., np.ndarray]:
    from snorkel.labeling.model import LabelModel as SnorkelLabelModel

    from metal.matrix import to_dense_labels

    def run(L_fit: Any, L_test: Any, Y_dev: np.ndarray | None, k: int) -> np.ndarray:
        model = SnorkelLabelModel(cardinality=k, verbose=False)
        model.fit(to_dense_labels(L_fit), n_epochs=100, lr=0.01, seed=SEED, progress_bar=False)
        return np.asarray(model.predict_proba(to_dense_labels(L_test)))

    return run


def _majority() -> Callable[..., np.ndarray]:
    from metal.label_model.baselines import MajorityVoter

    def run(L_fit: Any, L_test: Any, Y_dev: np.ndarray | None, k: int) -> np.ndarray:
        return MajorityVoter(cardinality=k).fit(L_fit).predict_proba(L_test)

    return run


def _dawid_skene() -> Callable[..., np.ndarray]:
    from metal.errors import MetalError
    from metal.label_model.dawid_skene import DawidSkene

    def run(L_fit: Any, L_test: Any, Y_dev: np.ndarray | None, k: int) -> np.ndarray:
        try:
            return DawidSkene(cardinality=k).fit(L_fit).predict_proba(L_test)
        except MetalError as exc:
            raise Refused(str(exc)) from exc

    return run


def _crowdkit() -> Callable[..., np.ndarray]:
    import pandas as pd
    import scipy.sparse as sp

    def run(L_fit: Any, L_test: Any, Y_dev: np.ndarray | None, k: int) -> np.ndarray:
        from crowdkit.aggregation import DawidSkene as CKDawidSkene

        def frame(L: Any) -> Any:
            C = sp.coo_matrix(L) if sp.issparse(L) else None
            if C is None:
                r, c = np.nonzero(np.asarray(L) >= 0)
                v = np.asarray(L)[r, c]
            else:
                keep = C.data >= 0
                r, c, v = C.row[keep], C.col[keep], C.data[keep]
            return pd.DataFrame({"task": r, "worker": c, "label": v})

        ds = CKDawidSkene(n_iter=100).fit(frame(L_fit))
        # crowd-kit predicts the items it was fitted on: refit-free prediction on other rows
        # uses its confusion matrices and priors (same E-step)
        errors: Any = ds.errors_  # index (worker, label), columns true label
        priors: Any = ds.priors_
        out = np.tile(np.log(np.maximum(priors.reindex(range(k)).fillna(1e-12).to_numpy(),
                                        1e-12)), (L_test.shape[0], 1))
        df = frame(L_test)
        for true in range(k):
            col = errors[true] if true in errors.columns else None
            if col is None:
                continue
            key = pd.MultiIndex.from_arrays([df["worker"], df["label"]])
            vals = col.reindex(key).to_numpy()
            logv = np.log(np.maximum(np.nan_to_num(vals, nan=1.0), 1e-12))
            np.add.at(out[:, true], df["task"].to_numpy(), logv)
        out -= out.max(axis=1, keepdims=True)
        probs = np.exp(out)
        return probs / probs.sum(axis=1, keepdims=True)

    return run


def variants() -> list[Variant]:
    return [
        Variant("majority vote", _majority()),
        Variant("snorkel", _snorkel(), timed=True),
        Variant("DawidSkene (ours)", _dawid_skene()),
        Variant("crowd-kit DS", _crowdkit()),
        Variant("ours", _ours(tag="default"), timed=True),
        Variant("ours: moments only", _ours(mode="moments")),
        Variant("ours: EM votes only", _ours(mode="em", model_abstains=False)),
        Variant("ours: EM with abstains", _ours(mode="em", model_abstains=True)),
    ]


PEERS = ["majority vote", "snorkel", "DawidSkene (ours)", "crowd-kit DS"]


# ---------------------------------------------------------------------------- scoring
@dataclass
class SetResult:
    name: str
    kind: str
    info: dict[str, Any]
    acc: dict[str, float] = field(default_factory=dict)
    f1: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    mode: str = ""
    mode_reason: str = ""
    # main metric over TIE_KEYS tie-break keys (0..TIE_KEYS-1): mean and standard deviation
    tie_mean: dict[str, float] = field(default_factory=dict)
    tie_sd: dict[str, float] = field(default_factory=dict)
    tied_rows: dict[str, int] = field(default_factory=dict)
    all_positive_f1: float = float("nan")  # F1 of predicting class 1 on every test row

    def main(self, label: str) -> float:
        return self.f1[label] if self.name in MAIN_F1 else self.acc[label]


def describe(L_fit: np.ndarray, k: int) -> dict[str, Any]:
    """Facts that explain wins and losses: size, coverage, unipolar sources."""
    voted = L_fit >= 0
    emitted = np.stack([(L_fit == c).any(axis=0) for c in range(k)])
    n_classes = emitted.sum(axis=0)
    return {"n_fit": L_fit.shape[0], "m": L_fit.shape[1], "k": k,
            "coverage_fit": float(voted.any(axis=1).mean()),
            "votes_per_row": float(voted.sum(axis=1).mean()),
            "unipolar": int((n_classes == 1).sum())}


def load_set(ds: Dataset) -> tuple[Any, Any, np.ndarray, int] | None:
    """``(L_fit, L_test, Y_test, k)`` or None when the folder is absent."""
    folder = SHARED_DATA / ds.folder
    if not folder.is_dir():
        return None
    if ds.kind == "crowd":
        from metal.data.crowd import load_crowd

        data = load_crowd(folder)
        return data.L, data.L, np.asarray(data.Y), int(data.cardinality)
    from metal.data.wrench import load_wrench

    fit = load_wrench(folder, ds.fit_split)
    test = load_wrench(folder, "test")
    return fit.L, test.L, test.Y, max(fit.cardinality, test.cardinality)


def _main_score(name: str, Y: np.ndarray, preds: np.ndarray, k: int) -> float:
    from metal.metrics import score_predictions

    scores = score_predictions(Y, preds, ("accuracy", "f1") if k == 2 else ("accuracy",))
    return float(scores["f1"] if name in MAIN_F1 else scores["accuracy"])


def run_real(repeats: int, verbose: bool = False) -> list[SetResult]:
    from metal.label_model.label_model import LabelModel
    from metal.matrix import to_dense_labels
    from metal.metrics import probs_to_preds, score_predictions

    _threads()
    models = variants()
    # warm-up: first calls pay torch/lazy-import costs that are not the models' fit time
    Lw = np.array([[0, 1, -1], [1, 1, 0], [0, -1, 0], [1, 0, 1]] * 5, dtype=np.int8)
    for v in models:
        if v.timed:
            v.run(Lw, Lw, None, 2)
    results = []
    for ds in DATASETS:
        loaded = load_set(ds)
        if loaded is None:
            print(f"  {ds.name}: {SHARED_DATA / ds.folder} absent, skipped")
            continue
        L_fit, L_test, Y_test, k = loaded
        res = SetResult(ds.name, ds.kind, describe(to_dense_labels(L_fit), k))
        if ds.name in MAIN_F1:
            res.all_positive_f1 = _main_score(ds.name, Y_test, np.ones(len(Y_test), dtype=int), k)
        for v in models:
            times, cpu_times = [], []
            try:
                for _ in range(repeats if v.timed else 1):
                    start, cpu_start = time.perf_counter(), time.process_time()
                    probs = v.run(L_fit, L_test, None, k)
                    times.append(time.perf_counter() - start)
                    cpu_times.append(time.process_time() - cpu_start)
            except Refused:
                res.acc[v.label] = res.f1[v.label] = float("nan")
                res.refused.append(v.label)
                continue
            preds = probs_to_preds(probs, "random", seed=SEED)
            scores = score_predictions(Y_test, preds, ("accuracy", "f1") if k == 2
                                       else ("accuracy",))
            res.acc[v.label] = scores["accuracy"]
            res.f1[v.label] = scores.get("f1", float("nan"))
            if v.label in TIE_LABELS:
                top = probs.max(axis=1, keepdims=True)
                res.tied_rows[v.label] = int(((probs >= top - 1e-5).sum(axis=1) > 1).sum())
                per_key = [_main_score(ds.name, Y_test, probs_to_preds(probs, "random", seed=key),
                                       k) for key in range(TIE_KEYS)]
                res.tie_mean[v.label] = float(np.mean(per_key))
                res.tie_sd[v.label] = float(np.std(per_key))
            res.seconds[v.label] = float(np.median(times))
            res.cpu_seconds[v.label] = float(np.median(cpu_times))
            if verbose:
                print(f"    {ds.name} {v.label}: main {res.main(v.label):.3f} "
                      f"({times[0]:.2f}s)", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LabelModel(cardinality=k, seed=SEED).fit(L_fit)
        res.mode = model.fit_info_.mode
        choice = model.fit_info_.mode_choice
        res.mode_reason = choice.reason if choice is not None else ""
        print(f"  {ds.name}: ours {res.main('ours'):.3f} ({res.mode}, "
              f"{res.seconds['ours']:.2f}s), snorkel {res.main('snorkel'):.3f} "
              f"({res.seconds['snorkel']:.2f}s)", flush=True)
        results.append(res)
    return results


def report_real(results: list[SetResult], repeats: int) -> str:
    labels = [v.label for v in variants()]

    def fmt(r: SetResult, lab: str) -> object:
        return "refused" if lab in r.refused else r.main(lab)

    def mean(lab: str) -> float:
        vals = [r.main(lab) for r in results if lab not in r.refused]
        return float(np.mean(vals)) if len(vals) == len(results) else float("nan")

    rows: list[list[object]] = []
    for r in results:
        metric = "F1" if r.name in MAIN_F1 else "acc"
        best = ANCHOR_BEST[r.name]
        ok = r.main("ours") >= best - 0.01
        rows.append([r.name, r.kind, r.info["n_fit"], r.info["m"], r.info["k"],
                     r.info["unipolar"], metric] + [fmt(r, lab) for lab in labels]
                    + [best, "yes" if ok else "**no**", r.mode])
    rows.append(["**mean**", "", "", "", "", "", "", *[mean(lab) for lab in labels]]
                + [float(np.mean(list(ANCHOR_BEST.values()))), "", ""])
    headers = (["set", "kind", "n fit", "m", "k", "unipolar sources", "metric"] + labels
               + ["ANCHORS best peer", "ours >= best - 0.01", "mode kept by the rule"])
    table = markdown_table(headers, rows)
    ours_mean = mean("ours")
    n_ok = sum(r.main("ours") >= ANCHOR_BEST[r.name] - 0.01 for r in results)
    t_ours = sum(r.seconds["ours"] for r in results)
    t_snk = sum(r.seconds["snorkel"] for r in results)
    c_ours = sum(r.cpu_seconds["ours"] for r in results)
    c_snk = sum(r.cpu_seconds["snorkel"] for r in results)
    trows = [[r.name, r.seconds["ours"], r.seconds["snorkel"], r.cpu_seconds["ours"],
              r.cpu_seconds["snorkel"]] for r in results]
    trows.append(["**total**", t_ours, t_snk, c_ours, c_snk])
    time_table = markdown_table(["set", "ours fit+predict s", "snorkel fit+predict s",
                                 "ours CPU s", "snorkel CPU s"], trows)
    tie_rows: list[list[object]] = []
    for r in results:
        tie_rows.append([r.name, *[
            f"{r.main(lab):.3f} / {r.tie_mean[lab]:.3f} ± {r.tie_sd[lab]:.3f} ({r.tied_rows[lab]})"
            for lab in TIE_LABELS], ANCHOR_BEST[r.name],
            f"{r.all_positive_f1:.3f}" if r.name in MAIN_F1 else "–"])
    tie_table = markdown_table(["set"] + [f"{lab}: keys {SEED} / mean ± sd (tied rows)"
                                          for lab in TIE_LABELS]
                               + ["ANCHORS best peer", "class 1 everywhere (F1)"], tie_rows)
    load = os.getloadavg()[0]
    reasons = "\n".join(f"* {r.name}: {r.mode_reason or r.mode}" for r in results)
    verdict = (
        f"Acceptance: ours >= the ANCHORS best peer - 0.01 on {n_ok} of {len(results)} sets "
        f"({'met' if n_ok == len(results) else 'NOT met'}); mean {ours_mean:.3f} vs the best "
        f"peer's mean {ANCHOR_BEST_PEER_MEAN:.3f} + 0.03 = {ANCHOR_BEST_PEER_MEAN + 0.03:.3f} "
        f"({'met' if ours_mean >= ANCHOR_BEST_PEER_MEAN + 0.03 else 'NOT met'}); fit+predict "
        f"summed over the sets ours {t_ours:.2f} s vs snorkel {t_snk:.2f} s (target < 1 s: "
        f"{'met' if t_ours < 1 else 'NOT met'}; CPU time ours {c_ours:.2f} s vs snorkel "
        f"{c_snk:.2f} s; 1-minute load average at the end {load:.1f})."
    )
    return f"""## Label model on real data (`benchmarks/label_model.py`)

Every real set in `../shared/data`: the 6 WRENCH classification sets, Snorkel's spouse task and
the 4 crowd sets. Protocol of `shared/docs/ANCHORS.md`: fit on the unlabeled split (train;
chemprot: valid; crowd: all items), no gold read; score on test (crowd: the items with truth).
Prediction = argmax of each model's probabilities, ties broken at random with the same keys
(seed {SEED}) for every model. Main metric: F1 of class 1 for sms, census, spouse, accuracy
elsewhere. Peers with their defaults: `MajorityVoter`; snorkel 0.10.0 `LabelModel`
(`n_epochs=100, lr=0.01, seed={SEED}`); our `DawidSkene` (it refuses data whose votes come
mostly from single-valued sources, pointing to `LabelModel`); crowd-kit `DawidSkene(n_iter=100)`
(fitted on the fit split, its confusion matrices applied to the test rows). Ours =
`metal.LabelModel(cardinality=k, seed={SEED})` with its defaults (`mode="auto"`). The last
three "ours" columns force one stage: the moment fit only, or EM (votes only / with abstains)
from the moment fit. Times: fit + predict_proba, median of {repeats} run(s), one thread each,
after a warm-up fit; wall clock, and CPU time (`time.process_time()`, less disturbed by other
processes on a loaded machine). {machine_line()}.

{table}

{verdict}

How much the scores depend on the tie-break keys: the main metric with the keys above, and
its mean ± standard deviation over {TIE_KEYS} other keys (seeds 0..{TIE_KEYS - 1}), with the
number of test rows whose top classes tie (mostly rows no source covers: the model's output
there is its class balance, uniform by default). For the F1 sets the last column is the F1 of
predicting class 1 on every test row (a trivial predictor, no model).

{tie_table}

What the label-free rule decided on each set (`fit_info_.mode_choice.reason`):

{reasons}

Fit + predict time (ours default vs snorkel):

{time_table}
"""


# ---------------------------------------------------------------------------- consistency
CONSISTENCY_N = (1_000, 10_000, 100_000, 1_000_000)


def run_consistency(max_n: int) -> str:
    from metal.data.synthetic import make_synthetic
    from metal.label_model.label_model import LabelModel

    _threads()
    rows = []
    for unipolar in (0.3, 1.0):
        for k in (2, 3, 5):
            row: list[object] = [k, "all" if unipolar == 1.0 else "30%"]
            for n in CONSISTENCY_N:
                if n > max_n:
                    row.append("–")
                    continue
                data = make_synthetic(n=n, m=10, cardinality=k, unipolar_fraction=unipolar,
                                      seed=SEED)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = LabelModel(cardinality=k, seed=SEED).fit(data.L)
                mae = float(np.abs(model.get_conditional_probs()
                                   - data.conditional_probs).mean())
                row.append(f"{mae:.4f} ({model.fit_info_.mode})")
            print("  consistency", row, flush=True)
            rows.append(row)
    table = markdown_table(["k", "unipolar sources"] + [f"n={n:,}" for n in CONSISTENCY_N],
                           rows)
    srows = []
    for k, mult in ((2, 1.0), (3, 1.0), (2, 5.0)):
        srows.append(_snorkel_generator_row(k, mult))
        print("  snorkel generator", srows[-1], flush=True)
    stable = markdown_table(
        ["k", "abstain multiplier", "ours MAE", "snorkel MAE", "ours accuracy",
         "snorkel accuracy", "mode kept"], srows)
    return f"""## Consistency (`benchmarks/label_model.py`)

Mean absolute error of the conditional probabilities `P(lambda_i = v | y)` (abstain included)
of our default fit against the generator's, on data drawn from the model
(`metal.data.make_synthetic`, m=10, seed {SEED}, class balance drawn from a Dirichlet(5);
"30%" = about 30% unipolar sources, "all" = every source unipolar). In brackets the model the
label-free rule kept. {machine_line()}.

{table}

With unipolar sources only, the rule keeps the abstain-modelled EM where its states name the
classes (README "Defaults, and why"), and otherwise the moment fit with a uniform prior,
whose error then includes the bias of that prior when the true balance is not uniform.

Snorkel's own generator (`snorkel.synthetic.synthetic_data.generate_simple_label_matrix`,
n=10,000, m=10, `np.random.seed({SEED})` before each call, as in snorkel's LabelModel tests),
ours with defaults vs snorkel 0.10.0 `LabelModel` (`n_epochs=100, lr=0.01`); accuracy of the
argmax against the generator's labels (ties at random):

{stable}
"""


def _snorkel_generator_row(k: int, mult: float) -> list[object]:
    from snorkel.labeling.model import LabelModel as SnorkelLabelModel
    from snorkel.synthetic.synthetic_data import generate_simple_label_matrix

    from metal.label_model.label_model import LabelModel
    from metal.metrics import probs_to_preds

    np.random.seed(SEED)  # noqa: NPY002 - snorkel's generator draws from the global RNG
    P, Y, L = generate_simple_label_matrix(10_000, 10, k, abstain_multiplier=mult)
    truth = np.concatenate([P[:, 1:, :], P[:, :1, :]], axis=1)  # abstain last, as ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = LabelModel(cardinality=k, seed=SEED).fit(L)
    snk = SnorkelLabelModel(cardinality=k, verbose=False)
    snk.fit(L, n_epochs=100, lr=0.01, seed=SEED, progress_bar=False)
    acc_o = float(np.mean(probs_to_preds(ours.predict_proba(L), "random", seed=SEED) == Y))
    acc_s = float(np.mean(probs_to_preds(np.asarray(snk.predict_proba(L)), "random",
                                         seed=SEED) == Y))
    return [k, mult, float(np.abs(ours.get_conditional_probs() - truth).mean()),
            float(np.abs(snk.get_conditional_probs() - P).mean()), acc_o, acc_s,
            ours.fit_info_.mode]


# ---------------------------------------------------------------------------- scaling
SCALING_N = (10_000, 100_000, 1_000_000)
SCALING_M, SCALING_K = 50, 3


def _rss_now_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _maxrss_mb() -> float:
    """Peak RSS of this process: ``VmHWM`` (resettable), else ``ru_maxrss``.

    ``ru_maxrss`` also folds in the peak recorded when a thread exits, which resetting the
    mark through ``/proc/self/clear_refs`` does not clear, so ``VmHWM`` is read where it exists.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(model: str, L_path: str, Y_path: str) -> None:
    """Fit + predict once in this fresh process and print a json line of measurements."""
    if model == "ours":
        from metal.label_model.label_model import LabelModel
    else:
        from snorkel.labeling.model import LabelModel as SnorkelLabelModel
    _threads()
    card = [SCALING_K]

    def fit_predict(L: np.ndarray) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        if model == "ours":
            m = LabelModel(cardinality=card[0], seed=SEED).fit(L)
            t_fit = time.perf_counter() - start
            return t_fit, m.predict_proba(L)
        s = SnorkelLabelModel(cardinality=card[0], verbose=False)
        s.fit(L, n_epochs=100, lr=0.01, seed=SEED, progress_bar=False)
        t_fit = time.perf_counter() - start
        return t_fit, np.asarray(s.predict_proba(L))

    # warm-up on a tiny matrix: the first torch.optim optimizer in a process imports
    # torch._dynamo (+ sympy), seconds and ~90 MB that are not the model's cost
    fit_predict(np.array([[0, 1, 2], [1, 1, -1], [2, -1, 2], [0, 0, 1]] * 5, dtype=np.int8))
    L = np.load(L_path)
    Y = np.load(Y_path)
    card[0] = int(max(L.max(), Y.max())) + 1
    try:  # reset the peak to the current RSS so transient import/warm-up peaks hide nothing
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then the last column shows how much an earlier peak could hide
    base_peak, base_now = _maxrss_mb(), _rss_now_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    fit_s, probs = fit_predict(L)
    stop, cpu_s = time.perf_counter(), time.process_time() - cpu_start
    t_fit = start + fit_s
    peak = _maxrss_mb()
    from metal.metrics import probs_to_preds

    acc = float(np.mean(probs_to_preds(probs, "random", seed=SEED) == Y))
    print(json.dumps({"fit_s": t_fit - start, "predict_s": stop - t_fit, "cpu_s": cpu_s,
                      "load": os.getloadavg()[0], "base_peak_mb": base_peak,
                      "base_now_mb": base_now, "peak_mb": peak, "accuracy": acc}))


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose fit + predict wall time is the median of ``runs`` (lower median)."""
    order = sorted(runs, key=lambda r: r["fit_s"] + r["predict_s"])
    return dict(order[(len(order) - 1) // 2], n_runs=len(runs),
                all_s=[round(r["fit_s"] + r["predict_s"], 3) for r in runs])


def run_scaling(ns: tuple[int, ...], repeats: int = 1) -> list[dict[str, Any]]:
    """Each (model, n) ``repeats`` times in fresh processes, ours and snorkel alternating;
    the run with the median fit + predict time of each model is reported."""
    from metal.data.synthetic import make_synthetic

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            data = make_synthetic(n=n, m=SCALING_M, cardinality=SCALING_K, coverage=(0.2, 0.4),
                                  seed=SEED)
            L = np.ascontiguousarray(data.L, dtype=np.int8)
            L_path, Y_path = Path(tmp) / f"L_{n}.npy", Path(tmp) / f"Y_{n}.npy"
            np.save(L_path, L)
            np.save(Y_path, data.Y.astype(np.int8))
            row: dict[str, Any] = {"n": n, "matrix_mb": L.nbytes / 2**20,
                                   "coverage": float((L >= 0).mean())}
            del data, L
            runs: dict[str, list[dict[str, Any]]] = {"ours": [], "snorkel": []}
            for _ in range(max(1, repeats)):
                for model in ("ours", "snorkel"):
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", model, str(L_path), str(Y_path)],
                        capture_output=True, text=True, check=False)
                    if out.returncode != 0:
                        raise RuntimeError(f"{model} at n={n} failed:\n{out.stderr[-3000:]}")
                    runs[model].append(json.loads(out.stdout.strip().splitlines()[-1]))
            for model in runs:
                row[model] = _median_run(runs[model])
            print(f"  n={n}: ours {row['ours']['all_s']} s, snorkel {row['snorkel']['all_s']} s "
                  "(fit + predict per run)", flush=True)
            rows.append(row)
    return rows


def report_scaling(rows: list[dict[str, Any]]) -> str:
    from metal.label_model.label_model import LabelModel

    chunk = int(LabelModel().chunk_rows)

    def inc(r: dict[str, Any], model: str) -> float:
        return float(r[model]["peak_mb"] - r[model]["base_peak_mb"])

    # Ours streams the matrix in blocks of `chunk` rows, so its working set grows with n only
    # until the first block is full: the constant is read off the runs with n >= chunk, as the
    # intercept of increase = C + slope * size (slope = bytes per byte of the int8 matrix).
    full = [r for r in rows if r["n"] >= chunk]
    if len(full) >= 2:
        slope, const = np.polyfit([r["matrix_mb"] for r in full], [inc(r, "ours") for r in full],
                                  1)
    else:
        slope, const = float("nan"), inc(rows[0], "ours")
    const = max(float(const), 0.0)
    const_small = inc(rows[0], "ours")
    worst_small = max([(inc(r, "ours") - const_small) / r["matrix_mb"] for r in rows[1:]],
                      default=0.0)
    trows = []
    worst = 0.0
    for r in rows:
        o, s = r["ours"], r["snorkel"]
        t_o, t_s = o["fit_s"] + o["predict_s"], s["fit_s"] + s["predict_s"]
        ratio = (inc(r, "ours") - const) / r["matrix_mb"]
        if r["n"] >= chunk:
            worst = max(worst, ratio)
        gap = max(o["base_peak_mb"] - o["base_now_mb"], s["base_peak_mb"] - s["base_now_mb"])
        trows.append([
            f"{r['n']:,}", f"{r['matrix_mb']:.1f}", f"{o['fit_s']:.2f} + {o['predict_s']:.2f}",
            f"{s['fit_s']:.2f} + {s['predict_s']:.2f}", f"{t_s / max(t_o, 1e-9):.1f}x",
            f"{o['cpu_s']:.2f} / {s['cpu_s']:.2f}", f"{s['cpu_s'] / max(o['cpu_s'], 1e-9):.1f}x",
            f"{o['load']:.1f} / {s['load']:.1f}",
            f"{inc(r, 'ours'):.0f}", f"{inc(r, 'snorkel'):.0f}",
            f"{inc(r, 'ours') / r['matrix_mb']:.2f}",
            f"{inc(r, 'snorkel') / r['matrix_mb']:.1f}",
            f"{ratio:.2f}" if r["n"] >= chunk else "– (partial block)",
            f"{o['accuracy']:.3f} / {s['accuracy']:.3f}", f"{max(gap, 0.0):.0f}",
        ])
    table = markdown_table(
        ["n", "int8 L (MB)", "ours fit + predict s", "snorkel fit + predict s", "speed-up",
         "CPU s ours / snorkel", "CPU speed-up", "load average ours / snorkel",
         "ours peak increase MB", "snorkel peak increase MB", "ours increase / L",
         "snorkel increase / L", f"ours (increase - C) / L, C = {const:.0f} MB",
         "accuracy ours / snorkel", "baseline peak - RSS MB"], trows)
    met = worst < 3.0 and (not np.isfinite(slope) or slope < 3.0)
    big = rows[-1]
    wall_up = ((big["snorkel"]["fit_s"] + big["snorkel"]["predict_s"])
               / max(big["ours"]["fit_s"] + big["ours"]["predict_s"], 1e-9))
    cpu_up = big["snorkel"]["cpu_s"] / max(big["ours"]["cpu_s"], 1e-9)
    n_runs = int(big["ours"].get("n_runs", 1))
    runs_line = ""
    if n_runs > 1:
        per_run = [f"{s_ / max(o_, 1e-9):.1f}x" for o_, s_ in
                   zip(big["ours"]["all_s"], big["snorkel"]["all_s"], strict=True)]
        runs_line = (f"\nEach row is the median of {n_runs} runs per model (by fit + predict "
                     f"time), ours and snorkel alternating. At n = {big['n']:,} the runs took "
                     f"{big['ours']['all_s']} s (ours) and {big['snorkel']['all_s']} s "
                     f"(snorkel); run by run, snorkel / ours = {', '.join(per_run)}.\n")
    return f"""## Scaling (`benchmarks/label_model.py`)

Generated data (`metal.data.make_synthetic`, m={SCALING_M}, k={SCALING_K}, coverage drawn in
[0.2, 0.4] per source, seed {SEED}). Each (model, n) runs in a fresh subprocess that loads the
int8 label matrix (and gold, for the sanity accuracy) from `.npy` files after a warm-up fit on a
tiny matrix (the first `torch.optim` optimizer in a process imports `torch._dynamo`), resets
the process's peak-RSS mark to its current RSS (`echo 5 > /proc/self/clear_refs`, so the
transient peaks of imports and warm-up hide nothing), records the peak RSS (baseline), runs
`fit(L)` + `predict_proba(L)` on the same rows, and reports the increase of the peak RSS. The
peak is `VmHWM` from `/proc/self/status` (`ru_maxrss` where that does not exist): `ru_maxrss`
keeps the peak recorded when a helper thread exits and so cannot be reset reliably. One
thread each; snorkel with `n_epochs=100, lr=0.01`. The last column is how far the baseline peak
was above the resident memory at that moment (0 when the reset worked; otherwise an earlier
peak could hide up to that much of a later increase). CPU s: `time.process_time()` of the
same fit + predict (one thread, so close to the wall time on an idle machine, and less
disturbed by other processes on a loaded one); load average: the 1-minute load when the run
ended.
{machine_line()}.
{runs_line}
{table}

Ours reads the matrix in blocks of {chunk:,} rows, so its working set stops growing with n once
a block is full. The constant C is therefore read off the runs with n >= {chunk:,}: fitting
increase = C + slope x size gives C = {const:.0f} MB (one block's working set) and slope =
{slope:.2f} bytes per byte of the int8 matrix. Had C been taken from the n={rows[0]['n']:,} run
({const_small:.0f} MB, a partial block), the worst ratio would read {worst_small:.2f}: that is
one full block's working set charged to a small matrix, not growth with n.
Acceptance "peak memory under 3x the int8 label matrix plus a constant": worst
(increase - C) / size over n >= {chunk:,} is {worst:.2f} and the slope {slope:.2f}
({'met' if met else 'NOT met'}).
Acceptance "n = {big['n']:,}, m = {SCALING_M}, k = {SCALING_K} fit + predict >= 10x faster than
snorkel": {wall_up:.1f}x wall clock, {cpu_up:.1f}x CPU time
({'met' if min(wall_up, cpu_up) >= 10 else 'met on CPU time only' if cpu_up >= 10
  else 'NOT met'}).

`benchmarks/scale.py` reports another snorkel / ours ratio at n = 1,000,000 because it measures
another setting: m = 100, k = 2, 10% coverage per source, and its main "ours" row runs the
moment estimator alone (`mode="moments"`: one pass and a predict), the default `mode="auto"`
in a second row. Snorkel's cost grows with the one-hot width m*k (it builds an (n, m*k)
float64 one-hot in fit and again in predict, and `L^T L` in fit: n (m*k)^2), 200 columns
there against 150 here, while ours with k = 2 needs 2 indicator slabs, 3 co-occurrence
products and one score column per pass instead of 3, 6 and 2. Here the default runs its
whole refinement: one statistics pass, the label-free rule on a thinning to about 50,000
rows, two EM passes over all rows and the predict pass.
"""


# ---------------------------------------------------------------------------- crowd scale
CROWD_WORKERS, CROWD_ITEMS, CROWD_ANSWERS, CROWD_K = 1_000, 20_000, 10, 5


def run_crowd_speed() -> str:
    """A generated crowd set: each item answered by 10 random workers (Dawid-Skene's model)."""
    rng = np.random.default_rng(SEED)
    Y = rng.integers(CROWD_K, size=CROWD_ITEMS)
    acc = rng.uniform(0.4, 0.9, size=CROWD_WORKERS)
    workers = np.argsort(rng.random((CROWD_ITEMS, CROWD_WORKERS)), axis=1)[:, :CROWD_ANSWERS]
    right = rng.random(workers.shape) < acc[workers]
    wrong = (Y[:, None] + rng.integers(1, CROWD_K, size=workers.shape)) % CROWD_K
    answers = np.where(right, Y[:, None], wrong)
    L = np.full((CROWD_ITEMS, CROWD_WORKERS), -1, dtype=np.int8)
    L[np.arange(CROWD_ITEMS)[:, None], workers] = answers
    with tempfile.TemporaryDirectory() as tmp:
        L_path, Y_path = Path(tmp) / "L.npy", Path(tmp) / "Y.npy"
        np.save(L_path, L)
        np.save(Y_path, Y.astype(np.int8))
        out = subprocess.run([sys.executable, __file__, "--child", "ours", str(L_path),
                              str(Y_path)], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"crowd speed run failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
    total = r["fit_s"] + r["predict_s"]
    peak = r["peak_mb"] - r["base_peak_mb"]
    met = "met" if total < 2 and peak < 1024 else "NOT met"
    print(f"  crowd: {total:.2f}s, peak increase {peak:.0f} MB", flush=True)
    return f"""## Crowd scale (`benchmarks/label_model.py`)

A generated crowd set: {CROWD_WORKERS:,} workers, {CROWD_ITEMS:,} items, {CROWD_ANSWERS} answers
per item from random workers, k={CROWD_K}, worker accuracy uniform in [0.4, 0.9], errors
uniform over the other classes. `LabelModel(cardinality={CROWD_K})` with defaults, fit +
predict_proba on all items, in a fresh process (as in the scaling table; peak = increase of
`VmHWM` over the baseline after loading the matrix), one thread. {machine_line()}.

| fit s | predict s | fit + predict s | peak memory increase MB | accuracy | target |
|---|---|---|---|---|---|
| {r['fit_s']:.2f} | {r['predict_s']:.2f} | {total:.2f} | {peak:.0f} | {r['accuracy']:.3f} \
| < 2 s and < 1 GB: {met} |
"""


# ---------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "L_NPY", "Y_NPY"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("label_model", "consistency", "crowd", "scaling"),
                        help="run one section only")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs per (set, model) for the timed models, and fresh-process "
                             "runs per (model, n) in the scaling table (median)")
    parser.add_argument("--max-n", type=int, default=max(SCALING_N),
                        help="largest n of the scaling table")
    parser.add_argument("--max-consistency-n", type=int, default=max(CONSISTENCY_N),
                        help="largest n of the consistency table")
    parser.add_argument("--verbose", action="store_true", help="print every model's result")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    if args.only in (None, "label_model"):
        if not SHARED_DATA.is_dir():
            print(f"{SHARED_DATA} is absent: skipping the real-data benchmark")
        else:
            print("label model on real data:", flush=True)
            results = run_real(args.repeats, args.verbose)
            text = report_real(results, args.repeats)
            print(text)
            if not args.no_write:
                write_section("label_model", text)
    if args.only in (None, "consistency"):
        print("consistency:", flush=True)
        text = run_consistency(args.max_consistency_n)
        print(text)
        if not args.no_write:
            write_section("consistency", text)
    if args.only in (None, "crowd"):
        print("crowd scale:", flush=True)
        text = run_crowd_speed()
        print(text)
        if not args.no_write:
            write_section("crowd_scale", text)
    if args.only in (None, "scaling"):
        print("scaling:", flush=True)
        text = report_scaling(run_scaling(tuple(n for n in SCALING_N if n <= args.max_n),
                                          args.repeats))
        print(text)
        if not args.no_write:
            write_section("scaling", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

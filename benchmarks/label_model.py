"""Label-model benchmark: real WRENCH sets (accuracy, F1, time) and a scaling table.

Run ``python benchmarks/label_model.py`` (about 2-4 minutes on 2 cores). It prints every table
and rewrites the ``label_model`` and ``scaling`` sections of ``benchmarks/RESULTS.md``.

Protocol (that of ``../shared/docs/ANCHORS.md``):

* Every WRENCH classification set in ``../shared/data`` plus Snorkel's spouse task
  (``spear_cage_spouse``, not a WRENCH set). Fit on the train split (chemprot has none: fit on
  valid), score on test. Gold labels of the fit split are never read; ``Y_dev`` columns use the
  gold of the valid split to set the class balance only.
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
import signal  # noqa: E402
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


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str
    fit_split: str
    wrench: bool


DATASETS = [
    Dataset("youtube", "wrench_youtube", "train", True),
    Dataset("sms", "wrench_sms", "train", True),
    Dataset("trec", "wrench_trec", "train", True),
    Dataset("semeval", "wrench_semeval", "train", True),
    Dataset("chemprot", "wrench_chemprot", "valid", True),
    Dataset("census", "wrench_census", "train", True),
    Dataset("spouse", "spear_cage_spouse", "train", False),
]


def _threads() -> None:
    import torch

    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.WARNING)  # snorkel logs every fit at INFO


# ---------------------------------------------------------------------------- models
@dataclass
class Variant:
    """One model configuration: how to fit it and get test probabilities."""

    label: str
    run: Callable[[np.ndarray, np.ndarray, np.ndarray | None, int], np.ndarray]
    timed: bool = False
    limited: bool = True  # subject to the per-run time limit (our variants only)


def _ours(method: str | None = None, model_abstains: bool | None = None,
          balance: str = "default", parameterization: str | None = None,
          balance_moments: int = 2) -> Callable[..., np.ndarray]:
    """``balance``: "default" (uniform), "dev" (``Y_dev``) or "estimate" (from the votes)."""
    from metal.label_model.label_model import LabelModel

    def run(L_fit: np.ndarray, L_test: np.ndarray, Y_dev: np.ndarray | None,
            k: int) -> np.ndarray:
        kwargs: dict[str, Any] = {"cardinality": k, "seed": SEED}
        if method is not None:
            kwargs["method"] = method
        if model_abstains is not None:
            kwargs["model_abstains"] = model_abstains
        if parameterization is not None:
            kwargs["parameterization"] = parameterization
        model = LabelModel(balance_moments=balance_moments, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. sources that never vote in the fit split
            if balance == "dev":
                model.fit(L_fit, Y_dev=Y_dev)
            elif balance == "estimate":
                model.fit(L_fit, class_balance="estimate")
            else:
                model.fit(L_fit)
            return model.predict_proba(L_test)

    return run


def _snorkel(use_dev: bool = False) -> Callable[..., np.ndarray]:
    from snorkel.labeling.model import LabelModel as SnorkelLabelModel

    def run(L_fit: np.ndarray, L_test: np.ndarray, Y_dev: np.ndarray | None,
            k: int) -> np.ndarray:
        model = SnorkelLabelModel(cardinality=k, verbose=False)
        model.fit(L_fit, Y_dev=Y_dev if use_dev else None, n_epochs=100, lr=0.01, seed=SEED,
                  progress_bar=False)
        return np.asarray(model.predict_proba(L_test))

    return run


def _majority() -> Callable[..., np.ndarray]:
    from metal.label_model.baselines import MajorityVoter

    def run(L_fit: np.ndarray, L_test: np.ndarray, Y_dev: np.ndarray | None,
            k: int) -> np.ndarray:
        return MajorityVoter(cardinality=k).fit(L_fit).predict_proba(L_test)

    return run


def _default_params() -> tuple[str, bool, str, float]:
    from metal.label_model.label_model import LabelModel

    m = LabelModel()
    return str(m.method), bool(m.model_abstains), str(m.parameterization), float(m.l2)


def variants() -> list[Variant]:
    out = [Variant("majority vote", _majority(), limited=False),
           Variant("snorkel", _snorkel(), timed=True, limited=False),
           Variant("ours", _ours(), timed=True),
           Variant("snorkel +Y_dev", _snorkel(True), limited=False)]
    for method in ("moments", "inverse"):
        for abst in (True, False):
            for balance, tag in (("default", "uni"), ("estimate", "est"), ("dev", "dev")):
                label = f"{method[:3]}/{'abst' if abst else 'votes'}/{tag}"
                out.append(Variant(label, _ours(method, abst, balance)))
    out.append(Variant("full/votes/uni", _ours(parameterization="full")))
    out.append(Variant("full/abst/est", _ours(parameterization="full", model_abstains=True,
                                              balance="estimate")))
    out.append(Variant("mom/votes/est3", _ours(balance="estimate", balance_moments=3)))
    return out


# ---------------------------------------------------------------------------- scoring
@dataclass
class SetResult:
    name: str
    wrench: bool
    info: dict[str, Any]
    acc: dict[str, float] = field(default_factory=dict)
    f1: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    timeouts: list[str] = field(default_factory=list)

    def main(self, label: str) -> float:
        return self.f1[label] if self.name in MAIN_F1 else self.acc[label]


def describe(L_fit: np.ndarray, L_test: np.ndarray, Y_test: np.ndarray, Y_dev: np.ndarray,
             k: int) -> dict[str, Any]:
    """Facts that explain wins and losses: coverage, balance, unipolar sources."""
    voted = L_fit >= 0
    # a source is unipolar if it emits one class only in the fit split
    emitted = np.stack([(L_fit == c).any(axis=0) for c in range(k)])
    n_classes = emitted.sum(axis=0)
    test_balance = np.bincount(Y_test[Y_test >= 0], minlength=k) / max((Y_test >= 0).sum(), 1)
    dev_balance = np.bincount(Y_dev[Y_dev >= 0], minlength=k) / max((Y_dev >= 0).sum(), 1)
    return {
        "n_fit": L_fit.shape[0], "n_test": L_test.shape[0], "m": L_fit.shape[1], "k": k,
        "coverage_fit": float(voted.any(axis=1).mean()),
        "coverage_test": float((L_test >= 0).any(axis=1).mean()),
        "votes_per_row": float(voted.sum(axis=1).mean()),
        "unipolar": int((n_classes == 1).sum()), "silent": int((n_classes == 0).sum()),
        "majority_class_test": float(test_balance.max()),
        "balance_test": np.round(test_balance, 3).tolist(),
        "balance_dev": np.round(dev_balance, 3).tolist(),
    }


class VariantTimeout(Exception):
    """A variant ran past the per-variant time limit (reported in the table, not hidden)."""


def _alarm(signum: int, frame: object) -> None:
    raise VariantTimeout


def run_real(repeats: int, verbose: bool = False, limit: int = 60) -> list[SetResult]:
    from metal.data.wrench import load_wrench
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
        folder = SHARED_DATA / ds.folder
        if not folder.is_dir():
            print(f"  {ds.name}: {folder} absent, skipped")
            continue
        fit = load_wrench(folder, ds.fit_split)
        test = load_wrench(folder, "test")
        dev = load_wrench(folder, "valid")
        k = max(fit.cardinality, test.cardinality)
        res = SetResult(ds.name, ds.wrench, describe(fit.L, test.L, test.Y, dev.Y, k))
        for v in models:
            times = []
            try:
                for _ in range(repeats if v.timed else 1):
                    signal.signal(signal.SIGALRM, _alarm)
                    signal.alarm(limit if v.limited else 0)  # references are never stopped
                    start = time.perf_counter()
                    try:
                        probs = v.run(fit.L, test.L, dev.Y, k)
                    finally:
                        signal.alarm(0)
                    times.append(time.perf_counter() - start)
            except VariantTimeout:
                print(f"    {ds.name} {v.label}: TIMEOUT after {limit}s", flush=True)
                res.acc[v.label] = res.f1[v.label] = float("nan")
                res.seconds[v.label] = float("nan")
                res.timeouts.append(v.label)
                continue
            preds = probs_to_preds(probs, "random", seed=SEED)
            scores = score_predictions(test.Y, preds, ("accuracy", "f1"))
            res.acc[v.label], res.f1[v.label] = scores["accuracy"], scores["f1"]
            res.seconds[v.label] = float(np.median(times))
            if verbose:
                print(f"    {ds.name} {v.label}: main {res.main(v.label):.3f} "
                      f"({times[0]:.2f}s)", flush=True)
        print(f"  {ds.name}: done (ours {res.seconds['ours']:.2f}s, "
              f"snorkel {res.seconds['snorkel']:.2f}s)", flush=True)
        results.append(res)
    return results


def report_real(results: list[SetResult], repeats: int, limit: int) -> str:
    method, abst, param, l2 = _default_params()
    labels = [v.label for v in variants()]
    main3 = ["majority vote", "snorkel", "ours"]

    def mean(label: str, sets: list[SetResult], how: str) -> float:
        vals = [r.acc[label] if how == "acc" else r.main(label) for r in sets]
        return float(np.mean(vals))

    wrench = [r for r in results if r.wrench]
    # main table
    rows = []
    for r in results:
        name = r.name + ("" if r.wrench else " (not WRENCH)")
        metric = "F1" if r.name in MAIN_F1 else "acc"
        row: list[object] = [name, r.info["n_fit"], r.info["m"], r.info["k"], metric]
        row += [r.main(lab) for lab in main3]
        row += [r.acc[lab] for lab in main3]
        row += [r.f1[lab] if r.info["k"] == 2 else "–" for lab in main3]
        row += [r.seconds["ours"], r.seconds["snorkel"],
                f"{r.seconds['snorkel'] / max(r.seconds['ours'], 1e-9):.1f}x"]
        rows.append(row)
    for tag, sets in (("mean, all sets", results), ("mean, WRENCH sets", wrench)):
        if not sets:
            continue
        row = [f"**{tag}**", "", "", "", ""]
        row += [mean(lab, sets, "main") for lab in main3]
        row += [mean(lab, sets, "acc") for lab in main3]
        row += ["", "", ""]
        t_ours = sum(r.seconds["ours"] for r in sets)
        t_snk = sum(r.seconds["snorkel"] for r in sets)
        row += [f"{t_ours:.2f} (sum)", f"{t_snk:.2f} (sum)", f"{t_snk / max(t_ours, 1e-9):.1f}x"]
        rows.append(row)
    headers = (["set", "n fit", "m", "k", "main metric"]
               + [f"{lab}: main" for lab in main3] + [f"{lab}: acc" for lab in main3]
               + [f"{lab}: F1" for lab in main3]
               + ["ours fit+predict s", "snorkel fit+predict s", "speed-up"])
    main_table = markdown_table(headers, rows)

    # ablation table (main metric)
    abl = [lab for lab in labels if lab not in ("majority vote",)]
    arows: list[list[object]] = []
    for r in results:
        arows.append([r.name] + [r.main(lab) for lab in abl])
    arows.append(["**mean main**"] + [mean(lab, results, "main") for lab in abl])
    arows.append(["**mean acc**"] + [mean(lab, results, "acc") for lab in abl])
    if wrench:
        arows.append(["**mean main, WRENCH**"] + [mean(lab, wrench, "main") for lab in abl])
    arows.append(list[object](["**sets >= snorkel (main)**"])
                 + [str(sum(r.main(lab) >= r.main("snorkel") - 1e-12 for r in results))
                    for lab in abl])
    arows.append(list[object](["**sets >= best of MV, snorkel**"])
                 + [str(sum(r.main(lab) >= max(r.main("snorkel"), r.main("majority vote"))
                            - 1e-12 for r in results)) for lab in abl])
    abl_table = markdown_table(["set"] + abl, arows)

    # data facts
    drows = [[r.name, r.info["n_fit"], r.info["n_test"], r.info["m"], r.info["k"],
              r.info["unipolar"], r.info["silent"], r.info["coverage_fit"],
              r.info["coverage_test"], r.info["votes_per_row"],
              str(r.info["balance_dev"]), str(r.info["balance_test"])] for r in results]
    data_table = markdown_table(
        ["set", "n fit", "n test", "m", "k", "unipolar LFs", "silent LFs", "coverage fit",
         "coverage test", "votes/row fit", "class balance valid", "class balance test"], drows)

    acc_ours, acc_snk = mean("ours", results, "acc"), mean("snorkel", results, "acc")
    main_ours, main_snk = mean("ours", results, "main"), mean("snorkel", results, "main")
    t_ours = sum(r.seconds["ours"] for r in results)
    t_snk = sum(r.seconds["snorkel"] for r in results)
    verdict = (
        f"Acceptance: mean accuracy ours {acc_ours:.3f} vs snorkel {acc_snk:.3f} "
        f"({'met' if acc_ours >= acc_snk else 'NOT met'}); mean main metric ours "
        f"{main_ours:.3f} vs snorkel {main_snk:.3f}; fit+predict time ours {t_ours:.2f}s vs "
        f"snorkel {t_snk:.2f}s summed ({'met' if t_ours < t_snk else 'NOT met'}); ours faster "
        f"on {sum(r.seconds['ours'] < r.seconds['snorkel'] for r in results)} of "
        f"{len(results)} sets."
    )
    timeouts = [f"{r.name} {lab}" for r in results for lab in r.timeouts]
    timeout_note = (f"Timed out (stopped after {limit} s; shown as nan, and the means that "
                    f"include them are nan): {', '.join(timeouts)}." if timeouts else "")
    text = f"""## Label model on real data (`benchmarks/label_model.py`)

Fit on the train split (chemprot: valid; no gold read), score on test. Prediction = argmax of
each model's probabilities with ties broken at random, the same keys (seed {SEED}) for every
model. "main" = F1 of class 1 for sms, census, spouse, accuracy elsewhere (as in
`shared/docs/ANCHORS.md`); "acc" = accuracy everywhere. spouse (Snorkel's task, from
`spear_cage_spouse`) is not a WRENCH set; means are given with and without it. snorkel =
`snorkel.labeling.model.LabelModel` 0.10.0 with `n_epochs=100, lr=0.01, seed={SEED}`; ours =
`metal.LabelModel(cardinality=k, seed={SEED})` with its defaults (`method="{method}"`,
`parameterization="{param}"`, `model_abstains={abst}`, `l2={l2}`, uniform class balance).
Time = fit + predict_proba on test, wall clock, median of {repeats} run(s), one thread each,
after a warm-up fit of each model. {machine_line()}.

{main_table}

{verdict} {timeout_note}

Ablations of ours (main metric; column = method/abstentions/class balance: `mom` = moment
matching, `inv` = the paper's inverse-completion algorithm; `abst` = abstentions are evidence
(`model_abstains=True`), `votes` = only votes count; `uni` = uniform class balance (the
default), `est` = estimated from the votes (`class_balance="estimate"`), `dev` = from the valid
split's gold labels, `Y_dev`; for chemprot the valid split is also the fit split, its gold sets
the class balance only). All use the default tied parameterization except the `full/...`
columns (`parameterization="full"`; `full/abst/est` is the model our synthetic generator
follows); `est3` estimates the class balance from second and third moments
(`balance_moments=3`). "snorkel +Y_dev" is snorkel with the same `Y_dev`.

{abl_table}

The data (fit split; unipolar = emits a single class in the fit split, silent = never votes):

{data_table}
"""
    return text


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

    def fit_predict(L: np.ndarray) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        if model == "ours":
            m = LabelModel(cardinality=SCALING_K, seed=SEED).fit(L)
            t_fit = time.perf_counter() - start
            return t_fit, m.predict_proba(L)
        s = SnorkelLabelModel(cardinality=SCALING_K, verbose=False)
        s.fit(L, n_epochs=100, lr=0.01, seed=SEED, progress_bar=False)
        t_fit = time.perf_counter() - start
        return t_fit, np.asarray(s.predict_proba(L))

    # warm-up on a tiny matrix: the first torch.optim optimizer in a process imports
    # torch._dynamo (+ sympy), seconds and ~90 MB that are not the model's cost
    fit_predict(np.array([[0, 1, 2], [1, 1, -1], [2, -1, 2], [0, 0, 1]] * 5, dtype=np.int8))
    L = np.load(L_path)
    Y = np.load(Y_path)
    try:  # reset the peak to the current RSS so transient import/warm-up peaks hide nothing
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then the last column shows how much an earlier peak could hide
    base_peak, base_now = _maxrss_mb(), _rss_now_mb()
    start = time.perf_counter()
    fit_s, probs = fit_predict(L)
    stop = time.perf_counter()
    t_fit = start + fit_s
    peak = _maxrss_mb()
    from metal.metrics import probs_to_preds

    acc = float(np.mean(probs_to_preds(probs, "random", seed=SEED) == Y))
    print(json.dumps({"fit_s": t_fit - start, "predict_s": stop - t_fit, "base_peak_mb": base_peak,
                      "base_now_mb": base_now, "peak_mb": peak, "accuracy": acc}))


def run_scaling(ns: tuple[int, ...]) -> list[dict[str, Any]]:
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
            for model in ("ours", "snorkel"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", model, str(L_path), str(Y_path)],
                    capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise RuntimeError(f"{model} at n={n} failed:\n{out.stderr[-3000:]}")
                row[model] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  n={n}: ours {row['ours']['fit_s'] + row['ours']['predict_s']:.2f}s, "
                  f"snorkel {row['snorkel']['fit_s'] + row['snorkel']['predict_s']:.2f}s",
                  flush=True)
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
            f"{inc(r, 'ours'):.0f}", f"{inc(r, 'snorkel'):.0f}",
            f"{inc(r, 'ours') / r['matrix_mb']:.2f}",
            f"{inc(r, 'snorkel') / r['matrix_mb']:.1f}",
            f"{ratio:.2f}" if r["n"] >= chunk else "– (partial block)",
            f"{o['accuracy']:.3f} / {s['accuracy']:.3f}", f"{max(gap, 0.0):.0f}",
        ])
    table = markdown_table(
        ["n", "int8 L (MB)", "ours fit + predict s", "snorkel fit + predict s", "speed-up",
         "ours peak increase MB", "snorkel peak increase MB", "ours increase / L",
         "snorkel increase / L", f"ours (increase - C) / L, C = {const:.0f} MB",
         "accuracy ours / snorkel", "baseline peak - RSS MB"], trows)
    met = worst < 3.0 and (not np.isfinite(slope) or slope < 3.0)
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
peak could hide up to that much of a later increase).
{machine_line()}.

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
"""


# ---------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "L_NPY", "Y_NPY"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("label_model", "scaling"),
                        help="run one section only")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs per (set, model) for the timed models (median)")
    parser.add_argument("--max-n", type=int, default=max(SCALING_N),
                        help="largest n of the scaling table")
    parser.add_argument("--limit", type=int, default=30,
                        help="seconds before a run of one of our variants is stopped and marked as "
                        "timed out (majority vote and snorkel always run to the end)")
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
            results = run_real(args.repeats, args.verbose, args.limit)
            text = report_real(results, args.repeats, args.limit)
            print(text)
            if not args.no_write:
                write_section("label_model", text)
    if args.only in (None, "scaling"):
        print("scaling:", flush=True)
        text = report_scaling(run_scaling(tuple(n for n in SCALING_N if n <= args.max_n)))
        print(text)
        if not args.no_write:
            write_section("scaling", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Crowdsourcing benchmark: majority vote, Dawid-Skene (ours and crowd-kit's), our LabelModel.

Run ``python benchmarks/crowd.py`` (needs the ``bench`` extra for crowd-kit). It prints one
table and rewrites the ``crowd`` section of ``benchmarks/RESULTS.md``.

Protocol (that of ``../shared/docs/ANCHORS.md``):

* The four crowd sets in ``../shared/data`` (``crowd_*``: ``answer.csv`` + ``truth.csv``),
  loaded with :func:`metal.data.crowd.load_crowd`: questions are rows, workers are sources, the
  answer values sorted are the classes (web's answers 1..5 become classes 0..4).
* Every model is fitted on all items (no labels) and scored on the items with a truth label.
* Prediction = argmax of each model's probabilities, ties broken at random with the same keys
  for every model (``metal.metrics.probs_to_preds(probs, "random", seed=SEED)``).
* Models with their defaults: ``MajorityVoter``; our ``DawidSkene`` (EM, alpha=0.01, from the
  majority vote); crowd-kit's ``DawidSkene(n_iter=100)``, whose posterior
  (``fit_predict_proba``) is aligned to our row and class order; our ``LabelModel``.
* One thread each (``OMP/MKL_NUM_THREADS=1``, ``torch.set_num_threads(1)``). Time = fit +
  predict_proba, wall clock, one run (a shared 2-core machine: read the times as ratios).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import SHARED_DATA, machine_line, markdown_table, write_section  # noqa: E402

SEED = 123
SETS = {"crowd_dog": "dog", "crowd_face_sentiment": "face", "crowd_product": "product",
        "crowd_web_zhou2012": "web"}
# crowd-kit DawidSkene and snorkel-metal 0.5.0 accuracy from ../shared/docs/ANCHORS.md
ANCHOR_DS = {"dog": 0.843, "face": 0.640, "product": 0.940, "web": 0.827}
ANCHOR_METAL = {"dog": 0.830, "face": 0.661, "product": 0.748, "web": 0.864}
MODELS = ["majority vote", "DawidSkene (ours)", "crowd-kit DawidSkene", "LabelModel (ours)"]


def crowdkit_probs(data: object) -> np.ndarray:
    """crowd-kit's Dawid-Skene posterior, in our row (question) and class order."""
    from crowdkit.aggregation import DawidSkene as CKDawidSkene

    L = data.L.tocoo()  # type: ignore[attr-defined]
    df = pd.DataFrame({"task": L.row, "worker": L.col, "label": L.data})
    probas = CKDawidSkene(n_iter=100).fit_predict_proba(df)
    k = data.cardinality  # type: ignore[attr-defined]
    out = np.zeros((data.L.shape[0], k))  # type: ignore[attr-defined]
    cols = [c for c in probas.columns]
    out[np.asarray(probas.index)[:, None], np.asarray(cols)[None, :]] = probas.to_numpy()
    return out


def run_set(folder: Path) -> dict[str, tuple[float, float]]:
    import torch

    from metal.data.crowd import load_crowd
    from metal.label_model.baselines import MajorityVoter
    from metal.label_model.dawid_skene import DawidSkene
    from metal.label_model.label_model import LabelModel
    from metal.metrics import probs_to_preds, score_predictions

    torch.set_num_threads(1)
    data = load_crowd(folder)
    k = data.cardinality
    fits: dict[str, Callable[[], np.ndarray]] = {
        "majority vote": lambda: MajorityVoter(cardinality=k).fit(data.L).predict_proba(data.L),
        "DawidSkene (ours)": lambda: DawidSkene(cardinality=k).fit(data.L).predict_proba(data.L),
        "crowd-kit DawidSkene": lambda: crowdkit_probs(data),
        "LabelModel (ours)": lambda: LabelModel(cardinality=k, seed=SEED).fit(data.L)
        .predict_proba(data.L),
    }
    out: dict[str, tuple[float, float]] = {}
    for name, fit in fits.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # data warnings (rare workers) are expected here
            probs = fit()
        seconds = time.perf_counter() - start
        preds = probs_to_preds(probs, "random", seed=SEED)
        acc = score_predictions(data.Y, preds, ["accuracy"])["accuracy"]
        out[name] = (acc, seconds)
        print(f"  {name:<22} accuracy {acc:.3f}  ({seconds:.2f} s)", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    folders = [SHARED_DATA / s for s in SETS if (SHARED_DATA / s).exists()]
    if not folders:
        print(f"skipped: no crowd sets under {SHARED_DATA}")
        return 0
    try:
        import crowdkit  # noqa: F401
    except ImportError:
        print("skipped: crowd-kit is not installed (pip install -e '.[bench]')")
        return 0
    results = {}
    for folder in folders:
        print(f"{folder.name}:", flush=True)
        results[SETS[folder.name]] = run_set(folder)
    rows = []
    for name, res in results.items():
        rows.append([name] + [res[m][0] for m in MODELS]
                    + [ANCHOR_DS[name], ANCHOR_METAL[name]])
    mean = ["mean"] + [float(np.mean([r[i] for r in rows])) for i in range(1, len(rows[0]))]
    rows.append(mean)
    headers = ["set"] + MODELS + ["anchor: crowd-kit DS", "anchor: snorkel-metal 0.5.0"]
    times = [[name] + [res[m][1] for m in MODELS] for name, res in results.items()]
    table = markdown_table(headers, rows)
    time_table = markdown_table(["set"] + [f"{m} (s)" for m in MODELS], times)
    print()
    print(table)
    print()
    print(time_table)
    text = f"""## Crowdsourcing: majority vote, Dawid-Skene, LabelModel

Written by `python benchmarks/crowd.py` ({machine_line()}). Each model is fitted on all items
of a crowd set without labels (workers are sources) and scored on the items with a truth
label; accuracy of the argmax, ties broken at random with the same keys for every model.
Default hyperparameters everywhere. The anchor columns are the peers' numbers from
`../shared/docs/ANCHORS.md` (same protocol), not re-run here.

{table}

Fit + predict time, one thread each, one run on a shared machine (compare within a row):

{time_table}
"""
    if not args.no_write:
        write_section("crowd", text)
        print("\nwrote the crowd section of benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

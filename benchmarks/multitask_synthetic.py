"""Multi-task label model on generated hierarchies: joint vs separate vs hierarchical vote.

Intended home: ``benchmarks/multitask_synthetic.py`` (runs from either place). Run with
``python benchmarks/multitask_synthetic.py`` (about 3 minutes on 2 cores); it prints the
tables and writes the ``multitask_synthetic`` section of ``benchmarks/RESULTS.md``.

What is measured. (A) The MeTaL paper's Figure 2 hierarchy (Person/Org -> Doctor/Lawyer/N/A,
Hospital/Office/N/A), n = 10,000 generated rows, 17 sources from
``default_sources`` (4 noisy coarse, 8 unipolar fine, 4 fine multi-polar, 1 whole-vector),
seeds 0-6: per-task accuracy on the generated rows of the joint model, one label model per task,
hierarchical majority vote, and the Bayes posterior with the true parameters (oracle). (B) A
coarse -> fine partition with 6 coarse and 50 fine classes (K = 50 feasible vectors, TREC's
shape), n = 5,000, 158 sources: fit time and accuracy of the parameterisations. Fit time is
wall time of ``fit`` with one thread.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from metal.data.synthetic_hierarchy import (  # noqa: E402
    default_sources,
    make_hierarchical_synthetic,
)
from metal.label_model.hierarchical import (  # noqa: E402
    HierarchicalMajorityVoter,
    SeparateTaskLabelModels,
)
from metal.label_model.multitask import MultiTaskCoding, MultiTaskLabelModel  # noqa: E402
from metal.tasks import TaskHierarchy  # noqa: E402

torch.set_num_threads(1)
ROOT = next(p for p in Path(__file__).resolve().parents
            if (p / "benchmarks" / "_results.py").is_file())
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import markdown_table, write_section  # noqa: E402


def oracle_predict(data, graph) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Argmax of the posterior under the true tables and prior."""
    coding = MultiTaskCoding(graph.cardinalities, data.coverage)
    n = data.L.shape[0]
    logp = np.tile(np.log(data.class_balance), (n, 1))
    for i, table in enumerate(data.conditional_probs):
        ind, ok = coding.encode(np.full(n, i), data.L[:, i, :].astype(np.int64))
        code = np.where(ok, ind - coding.offsets[i], table.shape[0] - 1)
        logp += np.log(np.clip(table[code], 1e-12, None))
    return graph.feasible[logp.argmax(axis=1)]


def accuracies(preds: np.ndarray, Y: np.ndarray) -> list[float]:
    return [float(x) for x in (preds == Y).mean(axis=0)] + [float((preds == Y).all(1).mean())]


def part_a(seeds: range) -> tuple[str, list[list[object]]]:
    h = TaskHierarchy({"type": 2, "person": 3, "org": 3},
                      parents={"person": ("type", 0), "org": ("type", 1)})
    # (factory, fit keyword arguments); "well-specified" = the generator's model family
    well = {"tie": "none", "model_abstains": True, "l2": 0.0}
    sep_well = {"parameterization": "full", "model_abstains": True, "l2": 0.0}
    models: dict[str, tuple[Any, dict[str, Any]]] = {
        "joint, defaults (tie='linear', uniform prior)": (
            lambda: MultiTaskLabelModel(h, seed=0), {}),
        "joint, tie='agreement'": (lambda: MultiTaskLabelModel(h, tie="agreement", seed=0), {}),
        "joint, well-specified (tie='none', abstains, prior estimated)": (
            lambda: MultiTaskLabelModel(h, seed=0, **well), {"class_balance": "estimate"}),
        "separate LabelModel per task, defaults": (
            lambda: SeparateTaskLabelModels(h, seed=0), {}),
        "separate LabelModel per task, well-specified": (
            lambda: SeparateTaskLabelModels(h, seed=0, **sep_well),
            {"class_balance": ["estimate"] * 3}),
        "hierarchical majority vote": (lambda: HierarchicalMajorityVoter(h, seed=0), {}),
    }
    acc: dict[str, list[list[float]]] = {k: [] for k in [*models, "oracle (true parameters)"]}
    times: dict[str, list[float]] = {k: [] for k in models}
    wins = {"joint, defaults (tie='linear', uniform prior)": 0,
            "joint, well-specified (tie='none', abstains, prior estimated)": 0}
    for seed in seeds:
        data = make_hierarchical_synthetic(10_000, h, seed=seed)
        row = {}
        for name, (make, fit_kw) in models.items():
            t0 = time.perf_counter()
            model = make().fit(data.L, **fit_kw)
            times[name].append(time.perf_counter() - t0)
            row[name] = accuracies(model.predict(data.L), data.Y)
            acc[name].append(row[name])
        acc["oracle (true parameters)"].append(accuracies(oracle_predict(data, h), data.Y))
        for joint, sep in (("joint, defaults (tie='linear', uniform prior)",
                            "separate LabelModel per task, defaults"),
                           ("joint, well-specified (tie='none', abstains, prior estimated)",
                            "separate LabelModel per task, well-specified")):
            wins[joint] += all(row[joint][s] > max(row[sep][s],
                                                   row["hierarchical majority vote"][s])
                               for s in range(3))
        print(f"seed {seed}: " + "; ".join(f"{k}: {' '.join(f'{x:.3f}' for x in v)}"
                                           for k, v in row.items()), flush=True)
    rows = []
    for name, vals in acc.items():
        a = np.asarray(vals)
        mean, lo = a.mean(axis=0), a.min(axis=0)
        t = f"{np.median(times[name]):.2f}" if name in times else "-"
        rows.append([name] + [f"{m:.3f} (min {x:.3f})" for m, x in zip(mean, lo, strict=True)]
                    + [t])
    table = markdown_table(["model", "type", "person", "org", "joint (all 3)", "fit s (median)"],
                           rows)
    note = " ".join(
        f"{name}: beats the matching separate models and hierarchical MV on every task in "
        f"{w} of {len(seeds)} seeds (seeds {seeds.start}-{seeds.stop - 1})."
        for name, w in wins.items())
    return table + "\n\n" + note, rows


def part_b() -> str:
    rng = np.random.default_rng(0)
    fine_to_coarse = np.sort(np.r_[np.arange(6), rng.integers(0, 6, 44)])
    h = TaskHierarchy({"coarse": 6, "fine": 50}, parents={"fine": ("coarse", fine_to_coarse)})
    specs = default_sources(h, seed=0, n_coarse=8, n_unipolar=3, n_child=0, n_full=0)
    data = make_hierarchical_synthetic(5000, h, specs, seed=0)
    K = h.n_feasible
    rows: list[list[object]] = []
    runs = [("none", "estimate"), ("coverage", "estimate"), ("agreement", "estimate"),
            ("linear", "estimate"), ("none", "uniform"), ("agreement", "uniform"),
            ("linear", "uniform")]
    for tie, prior in runs:
        model = MultiTaskLabelModel(h, tie=tie, seed=0)
        t0 = time.perf_counter()
        model.fit(data.L, class_balance=prior)
        dt = time.perf_counter() - t0
        a = accuracies(model.predict(data.L), data.Y)
        rows.append([f"joint, tie={tie!r}, prior " + ("estimated" if prior == "estimate"
                                                       else "uniform (default)"),
                     f"{a[0]:.3f}", f"{a[1]:.3f}", f"{dt:.1f}", model.fit_info_.n_iter])
        print(rows[-1], flush=True)
    for name, model in [("separate LabelModel per task", SeparateTaskLabelModels(h, seed=0)),
                        ("hierarchical majority vote", HierarchicalMajorityVoter(h, seed=0))]:
        t0 = time.perf_counter()
        model.fit(data.L)
        dt = time.perf_counter() - t0
        a = accuracies(model.predict(data.L), data.Y)
        rows.append([name, f"{a[0]:.3f}", f"{a[1]:.3f}", f"{dt:.1f}", "-"])
    a = accuracies(oracle_predict(data, h), data.Y)
    rows.append(["oracle (true parameters)", f"{a[0]:.3f}", f"{a[1]:.3f}", "-", "-"])
    return (f"Coarse -> fine, K = {K}, n = 5000, m = {data.L.shape[1]} sources "
            "(8 coarse, 3 unipolar per fine class):\n\n"
            + markdown_table(["model", "coarse acc", "fine acc", "fit s", "L-BFGS iters"], rows))


def main() -> None:
    table_a, _ = part_a(range(7))
    print(table_a)
    table_b = part_b()
    print(table_b)
    if Path(__file__).resolve().parent.name != "benchmarks":
        print("(not run from benchmarks/: RESULTS.md left untouched)")
        return
    write_section("multitask_synthetic", "## Multi-task label model on generated hierarchies\n\n"
                  "Script: `benchmarks/multitask_synthetic.py`. Accuracy on the generated rows "
                  "(no labels used in fitting); mean over seeds 0-6 with the minimum.\n\n"
                  + table_a + "\n\n" + table_b)


if __name__ == "__main__":
    main()

"""Multi-task label model on generated hierarchies: joint vs separate vs hierarchical vote.

Run ``python benchmarks/multitask_synthetic.py`` (add ``--quick`` for two seeds and no
RESULTS.md update); it prints one table per regime and writes the ``multitask_synthetic``
section of ``benchmarks/RESULTS.md``. To use two cores: run ``--regime R --parts DIR`` in
parallel processes (every regime once), then ``--collect --parts DIR``.

Regimes (``metal.data.synthetic_hierarchy``; each over seeds 0-4, n rows, no labels used in
fitting, scored on the same rows):

* ``branch-only``: the MeTaL paper's Figure 2 hierarchy (Person/Org -> Doctor/Lawyer/N/A,
  Hospital/Office/N/A); fine sources fire only on items of their own branch.
* ``fire-anywhere``: the same, fine multi-polar sources also fire (at random) off their branch.
* ``two-level voters``: three sources vote whole label vectors (both levels at once).
* ``mostly unipolar``: two noisy coarse sources, three unipolar sources per fine value.
* ``3 levels``: a third level under Doctor (a specialty, N/A elsewhere).
* ``K=12, 2 levels``: a 4 -> 12 partition (no N/A values).
* ``K=50, 2 levels``: a 6 -> 50 partition (TREC's shape), 158 sources.

Models: the joint ``MultiTaskLabelModel`` with its defaults; one ``LabelModel`` per task
(``SeparateTaskLabelModels``, defaults); ``HierarchicalMajorityVoter``; the oracle (Bayes
posterior with the generator's true tables and prior). *leaf accuracy* is the accuracy of the
whole label vector (the leaf value determines its path). The acceptance check per (regime,
seed): joint >= max(separate, hierarchical MV) + 0.01, and joint >= oracle - 0.01 (n >= 10,000).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.special import logsumexp  # noqa: E402

from metal.data.synthetic_hierarchy import (  # noqa: E402
    HierarchicalSyntheticData,
    SourceSpec,
    default_sources,
    make_hierarchical_synthetic,
)
from metal.label_model.hierarchical import (  # noqa: E402
    HierarchicalMajorityVoter,
    SeparateTaskLabelModels,
)
from metal.label_model.label_model import MetalWarning  # noqa: E402
from metal.label_model.multitask import MultiTaskCoding, MultiTaskLabelModel  # noqa: E402
from metal.label_model.multitask.likelihood import (  # noqa: E402
    fit_joint_em,
    joint_log_posterior,
    source_codes,
)
from metal.label_model.multitask.votes import check_multitask_votes  # noqa: E402
from metal.tasks import TaskGraph, TaskHierarchy  # noqa: E402

torch.set_num_threads(1)
ROOT = next(p for p in Path(__file__).resolve().parents
            if (p / "benchmarks" / "_results.py").is_file())
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import machine_line, markdown_table, write_section  # noqa: E402

FIGURE2 = TaskHierarchy({"type": 2, "person": 3, "org": 3},
                        parents={"person": ("type", 0), "org": ("type", 1)})
THREE_LEVELS = TaskHierarchy({"type": 2, "person": 3, "org": 3, "doctor": 3},
                             parents={"person": ("type", 0), "org": ("type", 1),
                                      "doctor": ("person", 0)})


def partition(n_coarse: int, n_fine: int, seed: int = 0) -> TaskHierarchy:
    rng = np.random.default_rng(seed)
    mapping = np.sort(np.r_[np.arange(n_coarse), rng.integers(0, n_coarse, n_fine - n_coarse)])
    return TaskHierarchy({"coarse": n_coarse, "fine": n_fine},
                         parents={"fine": ("coarse", [int(c) for c in mapping])})


K12, K50 = partition(4, 12), partition(6, 50)

Regime = tuple[TaskGraph, int, Callable[[TaskGraph, int], list[SourceSpec]]]


def _branch_only(g: TaskGraph, seed: int) -> list[SourceSpec]:
    return [replace(s, false_fire=0.0) for s in default_sources(g, seed, n_full=2)]


def _anywhere(g: TaskGraph, seed: int) -> list[SourceSpec]:
    return [replace(s, false_fire=1.0) for s in default_sources(g, seed, n_full=1)]


REGIMES: dict[str, Regime] = {
    "branch-only": (FIGURE2, 20_000, _branch_only),
    "fire-anywhere": (FIGURE2, 20_000, _anywhere),
    "two-level voters": (FIGURE2, 20_000, lambda g, s: default_sources(g, s, n_full=3)),
    "mostly unipolar": (FIGURE2, 20_000, lambda g, s: default_sources(
        g, s, n_coarse=2, n_unipolar=3, n_child=0, n_full=1)),
    "3 levels": (THREE_LEVELS, 20_000, lambda g, s: default_sources(g, s, n_full=2)),
    "K=12, 2 levels": (K12, 20_000, lambda g, s: default_sources(g, s)),
    "K=50, 2 levels": (K50, 20_000, lambda g, s: default_sources(
        g, s, n_coarse=8, n_unipolar=3, n_child=0, n_full=0)),
}


def oracle_log_posterior(data: HierarchicalSyntheticData, graph: TaskGraph) -> np.ndarray:
    """``(n, K)`` unnormalised log posterior under the true tables and prior."""
    coding = MultiTaskCoding(graph.cardinalities, data.coverage)
    n = data.L.shape[0]
    logp = np.tile(np.log(data.class_balance), (n, 1))
    for i, table in enumerate(data.conditional_probs):
        ind, ok = coding.encode(np.full(n, i), data.L[:, i, :].astype(np.int64))
        code = np.where(ok, ind - coding.offsets[i], table.shape[0] - 1)
        logp += np.log(np.clip(table[code], 1e-12, None))
    return logp


def em_from_truth(model: MultiTaskLabelModel, data: HierarchicalSyntheticData,
                  graph: TaskGraph, oracle_logp: np.ndarray) -> tuple[float, float] | None:
    """Diagnostic: the joint default's EM (same units, tables and settings) started at the
    true posterior instead of its own starts. Returns its leaf accuracy and its log-likelihood
    minus the default's (> 0: the default stopped short of a better likelihood; <= 0: the
    data prefer the default's solution, so no likelihood-based rule would pick the other).
    ``None`` where the default kept the moment estimator."""
    if not hasattr(model, "joint_fit_"):
        return None
    post = np.exp(oracle_logp - logsumexp(oracle_logp, axis=1, keepdims=True))
    codes, _ = source_codes(check_multitask_votes(data.L, graph), model.coding_,
                            int(model.chunk_rows))
    fit = model.joint_fit_
    keys = fit.units.keys(codes)
    tables = str(model.em_choice_["chosen"])
    # tilt 2.0 as in MultiTaskLabelModel._fit_em
    refit = fit_joint_em(keys, fit.units, model.coding_, graph.feasible, post, log_prior=None,
                         pseudo_count=float(model.pseudo_count), tilt=2.0,
                         max_iter=int(model.em_max_iter), tol=float(model.em_tol),
                         tables=tables)
    acc = leaf_accuracy(graph.feasible[joint_log_posterior(refit, keys).argmax(axis=1)], data.Y)
    return acc, refit.log_likelihood - fit.log_likelihood


def leaf_accuracy(preds: np.ndarray, Y: np.ndarray) -> float:
    return float((preds == Y).all(axis=1).mean())


MODELS: dict[str, Callable[[TaskGraph], object]] = {
    "joint (defaults)": lambda g: MultiTaskLabelModel(g, seed=0),
    "separate LabelModels": lambda g: SeparateTaskLabelModels(g, seed=0),
    "hierarchical MV": lambda g: HierarchicalMajorityVoter(g, seed=0),
}


def run_regime(name: str, seeds: list[int]) -> tuple[list[list[object]], int]:
    graph, n, make_sources = REGIMES[name]
    rows: list[list[object]] = []
    passed = 0
    for seed in seeds:
        data = make_hierarchical_synthetic(n, graph, make_sources(graph, seed), seed=seed)
        acc, secs = {}, {}
        fitted = {}
        for model_name, make in MODELS.items():
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MetalWarning)
                model = make(graph).fit(data.L)  # type: ignore[attr-defined]
                preds = model.predict(data.L)
            fitted[model_name] = model
            secs[model_name] = time.perf_counter() - t0
            acc[model_name] = leaf_accuracy(preds, data.Y)
        oracle_logp = oracle_log_posterior(data, graph)
        oracle = leaf_accuracy(graph.feasible[oracle_logp.argmax(axis=1)], data.Y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetalWarning)
            truth = em_from_truth(fitted["joint (defaults)"], data, graph,  # type: ignore[arg-type]
                                  oracle_logp)
        joint = acc["joint (defaults)"]
        best_other = max(acc["separate LabelModels"], acc["hierarchical MV"])
        ok = joint >= best_other + 0.01 and (n < 10_000 or joint >= oracle - 0.01)
        passed += ok
        rows.append([name, seed, n, data.L.shape[1], graph.n_feasible,
                     *[f"{acc[m]:.3f}" for m in MODELS], f"{oracle:.3f}",
                     f"{joint - best_other:+.3f}", f"{joint - oracle:+.3f}",
                     "yes" if ok else "NO",
                     "-" if truth is None else f"{truth[0]:.3f}",
                     "-" if truth is None else f"{truth[1]:+.1f}",
                     f"{secs['joint (defaults)']:.1f}"])
        print(" | ".join(str(x) for x in rows[-1]), flush=True)
    return rows, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="seeds 0-1, RESULTS.md untouched")
    parser.add_argument("--regime", action="append", choices=list(REGIMES),
                        help="run only these regimes (repeatable)")
    parser.add_argument("--parts", metavar="DIR", help="with --regime: save the rows in DIR; "
                        "with --collect: read them from DIR (to run regimes in parallel)")
    parser.add_argument("--collect", action="store_true",
                        help="write RESULTS.md from the rows saved in --parts DIR")
    args = parser.parse_args()
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    rows: list[list[object]] = []
    summary = []
    for name in ([] if args.collect else args.regime or list(REGIMES)):
        r, passed = run_regime(name, seeds)
        rows += r
        summary.append(f"{name}: {passed} of {len(seeds)} seeds pass")
        if args.parts:
            Path(args.parts).mkdir(parents=True, exist_ok=True)
            (Path(args.parts) / f"{list(REGIMES).index(name)}.json").write_text(
                json.dumps({"rows": r, "summary": summary[-1]}))
    if args.collect:
        if not args.parts:
            parser.error("--collect needs --parts DIR")
        for i in range(len(REGIMES)):
            part = json.loads((Path(args.parts) / f"{i}.json").read_text())
            rows += part["rows"]
            summary.append(part["summary"])
    headers = ["regime", "seed", "n", "sources", "K", *MODELS, "oracle",
               "joint - best other", "joint - oracle", "check", "EM from the true posterior",
               "its log-lik - default's", "joint fit+predict s"]
    table = markdown_table(headers, rows)
    print(table)
    print("\n".join(summary))
    if args.quick or (args.regime and not args.collect):
        return
    write_section("multitask_synthetic", "\n".join([
        "## Multi-task label model on generated hierarchies",
        "",
        "Script: `benchmarks/multitask_synthetic.py` (regimes in its docstring). Leaf "
        "accuracy (the whole label vector) on the generated rows; no labels used in fitting. "
        "*check*: joint >= max(separate, hierarchical MV) + 0.01 and joint >= oracle - 0.01. "
        "*EM from the true posterior* (a diagnostic, not a model: it uses the truth): the "
        "default's EM with the same tables and settings started at the oracle posterior, and "
        "its log-likelihood minus the default's (<= 0: the data prefer the default's "
        "solution, so no likelihood-based, label-free rule would choose the other). "
        f"Machine: {machine_line()}, one thread.",
        "",
        table,
        "",
        *[f"- {s}" for s in summary],
    ]))


if __name__ == "__main__":
    main()

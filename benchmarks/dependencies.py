"""Source dependencies on generated data (MeTaL paper, Fig. 4 left and middle).

Data: ``metal.data.synthetic_dependencies.make_dependent_synthetic`` — 10 binary sources, the
first 4 independent given Y, the other 6 (the *dependent block*) coupled by planted pairwise
edges (pairwise MRF given Y); true marginals are exact (enumerated joint). Two couplings:
``coupling="errors"`` (w = 0.75 on a pair casting the same *wrong* vote: shared mistakes, the
paper's setting) and ``coupling="agree"`` (w = 1.5 on a pair casting the same vote).

1. Dependency density (fraction of the 15 pairs of the dependent block that are edges) from 0
   to 0.5, n = 50,000, for each coupling: mean absolute error of the estimated
   ``P(lambda_i = v | y)`` for the model given the true graph vs the
   conditionally-independent model.
2. Estimation error ``||c_hat - c*||_2`` of the model given the true graph vs n, from 1e3 to
   1e6 (density 0.3); the fitted log-log slope (theory: -1/2) and a plot.
3. ``learn_dependencies``: precision and recall of the planted edges at n = 1e5.

Both models get the true class balance (the paper's Algorithm 1 takes it as known), so the
comparison isolates the source parameters, and both use ``parameterization="full"``, ``l2=0``
(the generator's tables are full class-conditional ones). Each cell averages several
generator seeds.
Run: ``python benchmarks/dependencies.py`` (2-5 minutes on 2 cores);
``python benchmarks/dependencies.py --density-only`` prints only the density tables and does
not write RESULTS.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine_line, markdown_table, write_section  # noqa: E402

from metal.data.synthetic_dependencies import make_dependent_synthetic  # noqa: E402
from metal.label_model.label_model import LabelModel  # noqa: E402
from metal.label_model.structure import learn_dependencies  # noqa: E402

torch.set_num_threads(1)
FIGURES = Path(__file__).resolve().parent / "figures"
M, N_INDEP, STRENGTH = 10, 4, 1.5
# shared-error coupling: 0.75 keeps every block source better than random up to density 0.5
# (at 1.5 a dense block falls below chance, where no sign assumption holds)
STRENGTH_ERRORS = 0.75
# the generator's tables are full class-conditional ones (class-dependent coverage), so both
# models use the full parameterization, without a ridge towards the starting point
MODEL: dict[str, Any] = {"parameterization": "full", "l2": 0.0, "model_abstains": True,
                         "mode": "moments"}


def fit_pair(data: object, n_seed: int) -> tuple[float, ...]:
    L, p = data.L, data.class_balance  # type: ignore[attr-defined]
    truth = data.conditional_probs  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        indep = LabelModel(cardinality=2, seed=n_seed, **MODEL).fit(L, class_balance=p)
        deps = LabelModel(cardinality=2, seed=n_seed, **MODEL,
                          dependencies=data.graph).fit(L, class_balance=p)  # type: ignore
    Y = data.Y  # type: ignore[attr-defined]
    dep = np.array([data.graph.degree(s) > 0 for s in range(M)])  # type: ignore[attr-defined]
    err_i = np.abs(indep.get_conditional_probs() - truth)
    err_d = np.abs(deps.get_conditional_probs() - truth)
    # sources with at least one dependency (NaN when there is none)
    dep_i = float(err_i[dep].mean()) if dep.any() else float("nan")
    dep_d = float(err_d[dep].mean()) if dep.any() else float("nan")
    return (float(err_i.mean()), float(err_d.mean()), dep_i, dep_d,
            float((indep.predict(L) == Y).mean()), float((deps.predict(L) == Y).mean()))


def true_accuracy(data: object, sources: np.ndarray) -> float:
    """Mean over ``sources`` of the true P(lambda_i = Y | lambda_i votes)."""
    c, p = data.conditional_probs, data.class_balance  # type: ignore[attr-defined]
    k = p.shape[0]
    right = (c[:, np.arange(k), np.arange(k)] * p).sum(axis=1)  # (m,) P(lambda_i = Y)
    votes = (c[:, :k, :] * p).sum(axis=(1, 2))  # (m,) P(lambda_i votes); row k = abstain
    return float((right / votes)[sources].mean())


def density_table(seeds: range, coupling: str,
                  strength: float) -> tuple[str, list[list[object]]]:
    rows: list[list[object]] = []
    for density in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        res, edges = [], []
        for seed in seeds:
            data = make_dependent_synthetic(n=50_000, m=M, density=density,
                                            n_independent=N_INDEP, strength=strength,
                                            coupling=coupling, seed=seed)
            edges.append(data.graph.number_of_edges())
            res.append(fit_pair(data, 0) + (true_accuracy(data, np.arange(N_INDEP, M)),))
        r = np.nanmean(np.array(res), axis=0) if density > 0 else np.mean(res, axis=0)
        rows.append([density, float(np.mean(edges)), *[float(x) for x in r]])
        print(f"[{coupling}] density {density:.1f}: err indep {r[0]:.4f} true graph "
              f"{r[1]:.4f} dependent sources {r[2]:.4f} / {r[3]:.4f} acc {r[4]:.4f} / "
              f"{r[5]:.4f} true acc of block {r[6]:.3f}", flush=True)
    headers = ["density", "edges", "MAE independent", "MAE true graph",
               "MAE dep. sources, independent", "MAE dep. sources, true graph",
               "acc independent", "acc true graph", "true acc. of block sources"]
    return markdown_table(headers, rows), rows


def scaling(seeds: range) -> tuple[str, float, list[float], list[float]]:
    ns = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]
    errs = []
    for n in ns:
        e = []
        for seed in seeds:
            data = make_dependent_synthetic(n=n, m=M, density=0.3, n_independent=N_INDEP,
                                            strength=STRENGTH, seed=100 + seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = LabelModel(cardinality=2, dependencies=data.graph, **MODEL).fit(
                    data.L, class_balance=data.class_balance)
            e.append(float(np.linalg.norm(model.get_conditional_probs()
                                          - data.conditional_probs)))
        errs.append(float(np.mean(e)))
        print(f"n = {n:>9,}: ||c_hat - c*||_2 = {errs[-1]:.4f}", flush=True)
    slope = float(np.polyfit(np.log(ns), np.log(errs), 1)[0])
    print(f"fitted log-log slope: {slope:.3f} (theory -0.5)")
    table = markdown_table(["n", "error"], [[f"{n:,}", e] for n, e in zip(ns, errs, strict=True)])
    return table, slope, [float(n) for n in ns], errs


def learning(seeds: range) -> tuple[str, list[list[object]]]:
    rows: list[list[object]] = []
    for density in (0.2, 0.3, 0.4):
        prec, rec, secs = [], [], []
        for seed in seeds:
            data = make_dependent_synthetic(n=100_000, m=M, density=density,
                                            n_independent=N_INDEP, strength=STRENGTH,
                                            seed=200 + seed)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                learned = learn_dependencies(data.L, 2, class_balance=data.class_balance)
            secs.append(time.perf_counter() - t0)
            true = {frozenset(e) for e in data.graph.edges}
            found = {frozenset(e) for e in learned.edges}
            prec.append(len(true & found) / max(len(found), 1) if found else 1.0)
            rec.append(len(true & found) / max(len(true), 1) if true else 1.0)
        rows.append([density, float(np.mean(prec)), float(np.mean(rec)), float(np.mean(secs))])
        print(f"learn density {density:.1f}: precision {rows[-1][1]:.3f} recall "
              f"{rows[-1][2]:.3f} ({rows[-1][3]:.1f}s)", flush=True)
    return markdown_table(["density", "precision", "recall", "seconds"], rows), rows


def main() -> None:
    t0 = time.perf_counter()
    err_md, _ = density_table(range(3), "errors", STRENGTH_ERRORS)
    dens_md, _ = density_table(range(3), "agree", STRENGTH)
    if "--density-only" in sys.argv[1:]:
        return
    scale_md, slope, ns, errs = scaling(range(3))
    learn_md, _ = learning(range(3))
    FIGURES.mkdir(exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.loglog(ns, errs, "o-", label="true graph")
    ref = errs[0] * (np.array(ns) / ns[0]) ** -0.5
    ax.loglog(ns, ref, "--", color="grey", label="n^-1/2")
    ax.set_xlabel("unlabeled points n")
    ax.set_ylabel("||c_hat - c*||_2")
    ax.set_title(f"estimation error vs n (slope {slope:.2f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "dependencies_scaling.png", dpi=120)
    total = time.perf_counter() - t0
    md = f"""## Source dependencies (`benchmarks/dependencies.py`)

Generated data: {M} binary sources, the first {N_INDEP} independent given Y, planted pairwise
dependencies (pairwise MRF given Y) among the other {M - N_INDEP} (the block);
density = fraction of those {(M - N_INDEP) * (M - N_INDEP - 1) // 2} pairs that are edges.
Both models get the true class balance and use `parameterization="full"`, `l2=0`.
MAE = mean absolute error of the estimated
P(lambda_i = v | y) (abstain included) over all sources, and over the sources that have at
least one dependency; accuracy of the argmax posterior against the true Y; last column: the
true mean accuracy (when voting) of the 6 block sources, from the exact marginals. 3 generator
seeds per row (the same seeds for both couplings), n = 50,000. The true marginals are exact
(the joint of each dependency component is enumerated), not Monte-Carlo.

**Shared errors** (`coupling="errors"`, each edge multiplies the probability of the pair
casting the same wrong vote by e^{STRENGTH_ERRORS}; the paper's Fig. 4 middle setting):

{err_md}

**Agreement** (`coupling="agree"`, each edge multiplies the probability of the pair casting the
same vote, right or wrong, by e^{STRENGTH}; a dense block agrees and is mostly right):

{dens_md}

Estimation error of the model given the true graph vs n (density 0.3, 3 seeds);
fitted log-log slope **{slope:.2f}** (theory -0.5);
plot `benchmarks/figures/dependencies_scaling.png`.

{scale_md}

`learn_dependencies` at n = 100,000 (3 seeds per density, true class balance given):

{learn_md}

{machine_line()}; total {total:.0f} s.
"""
    write_section("dependencies", md)
    print(md)


if __name__ == "__main__":
    main()

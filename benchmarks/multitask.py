"""Hierarchical multi-task label model vs. hierarchical majority vote vs. separate per-task models.

Three two-level hierarchies (task 0 = parent, task 1 = child that refines it):

* synthetic: :func:`metal.data.synthetic_hierarchy.make_hierarchical_synthetic` on a 4 x 3
  hierarchy (4 coarse classes, each with 3 fine classes) and its default sources (noisy coarse
  sources, precise unipolar and multi-polar fine sources, one source voting both levels);
* TREC question classification (6 coarse / 50 fine): the 68 WRENCH labeling functions on the
  coarse level, our question-word and head-noun regexes on the fine level
  (``hierarchy_sources/trec.py``);
* 20 Newsgroups (7 top-level / 20 groups): keyword sources at both levels
  (``hierarchy_sources/newsgroups.py``).

Protocol: every model is fitted on the train split without labels and scored on the test split
against gold; ties are broken at random with seed 0 for every model. Rows report coarse and
fine (= full path, since the fine class determines the coarse one) accuracy, the share of
predicted vectors that are consistent with the hierarchy, and the fit time. The main
columns use the models' defaults (only votes count); the "abstains modelled" columns switch
``model_abstains`` on for the same fit: a unipolar source's silence becomes evidence against its
class (only the posterior changes).

Run ``python benchmarks/multitask.py`` (add ``--verbose`` for every source's coverage and
accuracy on the train split, the development report the sources were written with).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import SHARED_DATA, machine_line, markdown_table, write_section  # noqa: E402
from hierarchy_sources import load_newsgroups, load_trec, source_report  # noqa: E402
from hierarchy_sources.trec import HierarchicalDataset  # noqa: E402

from metal.data.synthetic_hierarchy import make_hierarchical_synthetic  # noqa: E402
from metal.label_model.hierarchical import (  # noqa: E402
    HierarchicalMajorityVoter,
    SeparateTaskLabelModels,
)
from metal.label_model.label_model import MetalWarning  # noqa: E402
from metal.label_model.multitask import MultiTaskLabelModel  # noqa: E402
from metal.metrics import probs_to_preds  # noqa: E402
from metal.tasks import TaskHierarchy  # noqa: E402

SEED = 0
N_DEV = 200  # labelled train rows used only for the class balance in the "dev" rows
HEADERS = ["hierarchy", "model", "P(Y) from", "coarse acc", "fine acc", "consistent",
           "coarse acc, abstains modelled", "fine acc, abstains modelled", "fit s"]
MODELS = ("hierarchical MV", "separate per-task LMs",
          "separate per-task LMs + implied parent votes", "joint multi-task LM (defaults)",
          "joint multi-task LM (estimator=moments)")
# the class balance from a few labels as a second row (``--dev-balance-all``: every model)
DEV_BALANCE_MODELS: set[str] = {MODELS[1], MODELS[3]}
DEFAULT_BALANCE = "default"
CHOICES: dict[str, dict[str, object]] = {}
#: fine accuracy on the test rows with / without a fine-level vote, per (hierarchy, model)
SPLITS: dict[str, dict[str, tuple[float, float, int]]] = {}
#: per hierarchy, test fine accuracy of one-coin tables counted from the train labels
#: (votes only, votes and abstentions): a diagnostic, see counted_one_coin_ceiling
CEILINGS: dict[str, tuple[float, float]] = {}


def synthetic_dataset(n_train: int = 10000, n_test: int = 10000) -> HierarchicalDataset:
    """One seeded draw split into train and test (same sources and class balance)."""
    mapping = np.repeat(np.arange(4), 3)
    h = hierarchy_of(("coarse", "fine"), (4, 12), mapping)
    data = make_hierarchical_synthetic(n_train + n_test, h, seed=SEED)
    names = [f"synthetic_{i}" for i in range(data.L.shape[1])]
    empty = np.array([], dtype=object)
    import pandas as pd

    return HierarchicalDataset(
        name="synthetic", task_names=("coarse", "fine"),
        class_names=(tuple(map(str, range(4))), tuple(map(str, range(12)))),
        child_to_parent=mapping, source_names=names,
        texts_train=pd.Series(empty), texts_test=pd.Series(empty),
        L_train=data.L[:n_train], L_test=data.L[n_train:],
        Y_train=data.Y[:n_train], Y_test=data.Y[n_train:], info={})


def hierarchy_of(task_names: tuple[str, str], cards: tuple[int, int],
                 child_to_parent: np.ndarray) -> TaskHierarchy:
    parent, child = task_names
    return TaskHierarchy({parent: int(cards[0]), child: int(cards[1])},
                         parents={child: (parent, [int(c) for c in child_to_parent])})


def scores(h: TaskHierarchy, preds: np.ndarray, Y: np.ndarray) -> tuple[float, float, float]:
    """Coarse accuracy, fine accuracy, share of predicted vectors that are feasible."""
    return (float(np.mean(preds[:, 0] == Y[:, 0])), float(np.mean(preds[:, 1] == Y[:, 1])),
            float(np.mean(h.is_feasible(preds))))


def timed_fit(make: Callable[[], Any], L: np.ndarray, Y_dev: np.ndarray | None
              ) -> tuple[Any, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetalWarning)
        model = make().fit(L) if Y_dev is None else make().fit(L, Y_dev=Y_dev)
    return model, time.perf_counter() - start


def predict(model: Any, L: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetalWarning)
        return np.asarray(model.predict(L, tie_break="random"))


def with_abstains(model: Any, on: bool) -> Any:
    """The fitted model with ``model_abstains`` switched; the fit does not depend on it."""
    out = copy.copy(model)
    if isinstance(out, SeparateTaskLabelModels):
        out.models_ = [None if m is None else with_abstains(m, on) for m in model.models_]
        out.label_model_params = {**model.label_model_params, "model_abstains": on}
    else:
        out.model_abstains = on
    return out


def run_hierarchy(ds: HierarchicalDataset, implied: HierarchicalDataset) -> list[list[object]]:
    """All models on one hierarchy; ``implied`` has child votes copied to the parent level.

    Label models run twice: with the class balance estimated from the unlabeled votes (the
    protocol) and with it taken from ``N_DEV`` labelled train rows (only the balance).
    """
    h = hierarchy_of(ds.task_names, ds.cardinalities, ds.child_to_parent)
    dev_rows = np.random.default_rng(SEED).choice(ds.Y_train.shape[0], N_DEV, replace=False)
    Y_dev = ds.Y_train[dev_rows]
    rows: list[list[object]] = []
    makers: dict[str, Callable[[], Any]] = {
        MODELS[0]: lambda: HierarchicalMajorityVoter(h, seed=SEED),
        MODELS[1]: lambda: SeparateTaskLabelModels(h, seed=SEED),
        MODELS[2]: lambda: SeparateTaskLabelModels(h, seed=SEED),
        MODELS[3]: lambda: MultiTaskLabelModel(h, seed=SEED),
        MODELS[4]: lambda: MultiTaskLabelModel(h, estimator="moments", seed=SEED),
    }
    for label, make in makers.items():
        data = implied if label == MODELS[2] else ds
        is_mv = label == MODELS[0]
        balances: tuple[str, ...] = (DEFAULT_BALANCE,)
        if label in DEV_BALANCE_MODELS:
            balances += (f"{N_DEV} labels",)
        for balance in ("-",) if is_mv else balances:
            model, fit_s = timed_fit(make, data.L_train,
                                     None if balance in ("-", DEFAULT_BALANCE) else Y_dev)
            if label == MODELS[3] and balance == DEFAULT_BALANCE:
                choice = getattr(model, "em_choice_", {"chosen": "moments (not fitted by EM)"})
                CHOICES[ds.name] = {
                    "chosen": choice["chosen"],
                    **{f"{k} {c}": round(float(v), 3) for k in ("bic", "degenerate_share")
                       for c, v in choice.get(k, {}).items()}}
                weights = getattr(model, "source_weights_", None)
                if weights is not None:  # the moment posterior's redundancy weights
                    cov = model.coverage_
                    CHOICES[ds.name]["mean redundancy weight, coarse / fine-level sources"] = (
                        round(float(weights[cov[:, 0]].mean()), 3),
                        round(float(weights[cov[:, 1]].mean()), 3))
            preds = predict(model, data.L_test)
            on = scores(h, preds, ds.Y_test)
            if balance in ("-", DEFAULT_BALANCE) and label in (MODELS[0], MODELS[1], MODELS[3]):
                has_fine = (ds.L_test[:, :, 1] >= 0).any(axis=1)
                ok = preds[:, 1] == ds.Y_test[:, 1]
                SPLITS.setdefault(ds.name, {})[label] = (
                    float(ok[has_fine].mean()), float(ok[~has_fine].mean()), int(has_fine.sum()))
            if is_mv:
                off: tuple[object, ...] = ("-", "-")
            else:
                c_off, f_off, _ = scores(h, predict(with_abstains(model, True), data.L_test),
                                         ds.Y_test)
                off = (c_off, f_off)
            rows.append([ds.name, label, balance, *on, *off, round(fit_s, 2)])
            print(f"  {label}, P(Y) from {balance}: fit {fit_s:.1f} s", flush=True)
    return rows


def counted_one_coin_ceiling(ds: HierarchicalDataset, h: TaskHierarchy) -> tuple[float, float]:
    """Diagnostic that uses the train labels (not a model): test fine accuracy of the one-coin
    posterior whose tables are *counted* from the gold train labels, votes only / votes and
    abstentions. Per (source, vote vector) ``c``: ``P(c | y) = on_c`` on the feasible vectors
    the vote names and ``off_c`` elsewhere (add-one smoothed counts); uniform prior, every
    source counted once, random tie breaks with seed 0. It bounds what better label-free
    one-coin tables could give."""
    F = h.feasible
    K = F.shape[0]
    base = np.asarray(h.cardinalities) + 1
    radix = np.cumprod(np.r_[1, base[:-1]])

    def codes(L: np.ndarray) -> np.ndarray:  # (n, m) mixed-radix vote vector, 0 = abstain
        return np.einsum("nms,s->nm", L.astype(np.int64) + 1, radix)

    c_tr, c_te = codes(ds.L_train), codes(ds.L_test)
    y = h.to_joint(ds.Y_train)
    n_y = np.bincount(y, minlength=K).astype(np.float64)
    votes = np.zeros((c_te.shape[0], K))
    silences = np.zeros((c_te.shape[0], K))
    for i in range(c_tr.shape[1]):  # loop over sources and their vote vectors, not rows
        fire = np.zeros(K)
        for c in np.unique(c_tr[:, i][c_tr[:, i] > 0]):
            vote = (c // radix) % base - 1
            named = np.all((vote < 0) | (F == vote), axis=1)
            hits = np.bincount(y[c_tr[:, i] == c], minlength=K).astype(np.float64)
            on = (hits[named].sum() + 1) / (n_y[named].sum() + 2)
            off = (hits[~named].sum() + 1) / (n_y[~named].sum() + 2)
            fire += np.where(named, on, off)
            votes[c_te[:, i] == c] += np.log(np.where(named, on, off))
        silences[c_te[:, i] == 0] += np.log(np.clip(1.0 - fire, 1e-6, None))
    out = []
    for score in (votes, votes + silences):
        post = np.exp(score - score.max(axis=1, keepdims=True))
        idx = probs_to_preds(post / post.sum(axis=1, keepdims=True), "random", seed=SEED)
        out.append(float(np.mean(F[idx, 1] == ds.Y_test[:, 1])))
    return out[0], out[1]


def describe(ds: HierarchicalDataset) -> str:
    L = ds.L_train
    per_task = [int((L[:, :, s] >= 0).any(axis=0).sum()) for s in range(2)]
    cover = [float((L[:, :, s] >= 0).any(axis=1).mean()) for s in range(2)]
    uni = np.array([np.unique(L[:, j, :][L[:, j, :] >= 0]).size <= 1 for j in range(L.shape[1])])
    return (f"{ds.name}: {L.shape[0]} train / {ds.L_test.shape[0]} test rows, "
            f"{ds.cardinalities[0]} / {ds.cardinalities[1]} classes, sources voting "
            f"coarse / fine: {per_task[0]} / {per_task[1]} ({int(uni.sum())} of {L.shape[1]} "
            f"unipolar); train rows with a coarse / fine vote: {cover[0]:.1%} / {cover[1]:.1%}")


def margins(rows: list[list[object]], name: str, balance: str) -> str:
    """One line on the direction joint > separate > MV (fine accuracy, abstains modelled)."""
    def fine(model: str, bal: str) -> float:
        return next(float(r[4]) for r in rows  # type: ignore[arg-type]
                    if r[0] == name and r[1] == model and r[2] == bal)

    mv = fine(MODELS[0], "-")
    def best(models: tuple[str, ...]) -> float:
        found = [fine(m, balance) for m in models
                 if any(r[0] == name and r[1] == m and r[2] == balance for r in rows)]
        return max(found) if found else float("nan")

    def coarse(model: str, bal: str) -> float:
        return next(float(r[3]) for r in rows  # type: ignore[arg-type]
                    if r[0] == name and r[1] == model and r[2] == bal)

    sep = fine(MODELS[1], balance)
    joint = fine(MODELS[3], balance)
    best_coarse = max(coarse(MODELS[0], "-"), coarse(MODELS[1], balance))
    jc = coarse(MODELS[3], balance)
    holds = joint >= max(sep, mv) + 0.01 and jc >= best_coarse
    return (f"{name}: joint (defaults) fine {joint:.3f} vs separate {sep:.3f} / hierarchical MV "
            f"{mv:.3f} (margin {joint - max(sep, mv):+.3f}); coarse {jc:.3f} vs best other "
            f"{best_coarse:.3f}. Acceptance (fine >= best other + 0.01, coarse >= best other): "
            f"{'MET' if holds else 'NOT MET'}")


def interpretation(rows: list[list[object]], names: list[str]) -> list[str]:
    """Numbers of this run behind the verdicts: the prior and the unipolar switch."""
    def get(name: str, model: str, bal: str, col: int) -> float:
        for r in rows:
            if r[0] == name and r[1] == model and r[2] == bal:
                return float(r[col])  # type: ignore[arg-type]
        return float("nan")

    dev = f"{N_DEV} labels"
    lines = []
    for name in names:
        jd, jl = get(name, MODELS[3], DEFAULT_BALANCE, 4), get(name, MODELS[3], dev, 4)
        ja = get(name, MODELS[3], DEFAULT_BALANCE, 7)
        sd, sl = get(name, MODELS[1], DEFAULT_BALANCE, 4), get(name, MODELS[1], dev, 4)
        lines.append(
            f"{name}: fine accuracy of the joint model {jd:.3f} with its default prior, "
            f"{jl:.3f} with P(Y) from {N_DEV} labels, {ja:.3f} with abstentions modelled; "
            f"separate per-task LMs {sd:.3f} / {sl:.3f} (default / {N_DEV} labels).")
    for name, split in SPLITS.items():
        parts = [f"{m} {a:.3f} / {b:.3f}" for m, (a, b, _) in split.items()]
        n_fine = next(iter(split.values()))[2]
        lines.append(f"{name}: fine accuracy on the {n_fine} test rows with a fine-level vote / "
                     f"on the rows without one: " + "; ".join(parts) + ".")
    for name, (votes_only, with_abstains) in CEILINGS.items():
        target = max(get(name, MODELS[0], "-", 4), get(name, MODELS[1], DEFAULT_BALANCE, 4))
        lines.append(
            f"{name}: one-coin tables *counted from the gold train labels* (a diagnostic that "
            f"uses labels, not a model; uniform prior, every source counted once) give test fine "
            f"accuracy {votes_only:.3f} from the votes alone and {with_abstains:.3f} with each "
            f"source's abstention as evidence too; the acceptance target is "
            f"{target + 0.01:.3f}.")
    lines.append(
        "Every real source here is unipolar and sparse, and the sources are correlated (WRENCH "
        "LFs share question-word patterns, keyword lists overlap); no model here is told about "
        "those dependencies. The joint default is EM over the feasible set (abstentions "
        "modelled, so its two accuracy column pairs are the same model); its label-free rule "
        "(BIC between free, tied, one-coin and projected tables, rejection of fits whose votes "
        "are not better than random or depend on the EM start, moment fallback) is recorded "
        "per fit in `em_choice_`. The moment fallback fits one-coin tables (`tie='exact'`: "
        "per vote one probability under the feasible vectors it names, one under the others, "
        "started at 'right with probability 0.7', so a fine type's vote outweighs its coarse "
        "type's) and weights each source's evidence by its label-free redundancy weight "
        "(`metal/label_model/redundancy.py`: 1 / (1 + its significant positive residual "
        "correlations given Y); mean weights in the choice lines above).")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", action="store_true",
                        help="print every source's coverage and accuracy on the train split")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--dev-balance-all", action="store_true",
                        help=f"fit every label model also with the class balance of {N_DEV} "
                             "labelled train rows (slow on TREC, see DEV_BALANCE_MODELS)")
    args = parser.parse_args()
    if args.dev_balance_all:
        DEV_BALANCE_MODELS.update(MODELS[1:])
    torch.set_num_threads(1)
    datasets: list[tuple[HierarchicalDataset, HierarchicalDataset]] = []
    syn = synthetic_dataset()
    syn_implied = copy.copy(syn)
    from hierarchy_sources import imply_parent_votes

    syn_implied.L_train = imply_parent_votes(syn.L_train, syn.child_to_parent)
    syn_implied.L_test = imply_parent_votes(syn.L_test, syn.child_to_parent)
    datasets.append((syn, syn_implied))
    notes = []
    if (SHARED_DATA / "trec_coarse_fine").exists() and (SHARED_DATA / "wrench_trec").exists():
        trec = load_trec(SHARED_DATA)
        datasets.append((trec, trec.with_implied_parent_votes()))
        i = trec.info
        notes.append(f"TREC join: {i['n_joined_train']}/{i['n_train']} train questions "
                     f"({i['join_rate_train']:.2%}) found in WRENCH train+valid, "
                     f"{i['n_joined_test']}/{i['n_test']} test questions "
                     f"({i['join_rate_test']:.2%}) in WRENCH test; the 68 WRENCH regexes "
                     f"re-applied to the joined questions reproduce WRENCH's stored votes in "
                     f"{i['reapplied_agreement_train']:.4%} (train) / "
                     f"{i['reapplied_agreement_test']:.2%} (test) of cells, and supply the "
                     f"votes of the unjoined rows.")
    else:
        print(f"skipping TREC: {SHARED_DATA} has no trec_coarse_fine / wrench_trec")
    if (SHARED_DATA / "20newsgroups_bydate").exists():
        ng = load_newsgroups(SHARED_DATA)
        datasets.append((ng, ng.with_implied_parent_votes()))
    else:
        print(f"skipping 20 Newsgroups: {SHARED_DATA} has no 20newsgroups_bydate")

    rows: list[list[object]] = []
    descriptions = []
    for ds, implied in datasets:
        descriptions.append(describe(ds))
        print(descriptions[-1])
        if args.verbose and len(ds.texts_train):
            report = source_report(ds.L_train, ds.Y_train, ds.source_names, ds.class_names)
            print(report.to_string(float_format=lambda x: f"{x:.3f}"))
        start = time.perf_counter()
        rows += run_hierarchy(ds, implied)
        CEILINGS[ds.name] = counted_one_coin_ceiling(
            ds, hierarchy_of(ds.task_names, ds.cardinalities, ds.child_to_parent))
        print(f"  {ds.name}: all models in {time.perf_counter() - start:.1f} s")
    table = markdown_table(HEADERS, rows)
    print(table)
    verdicts = [margins(rows, ds.name, DEFAULT_BALANCE) for ds, _ in datasets]
    choices = [f"{ds.name}: joint default EM choice {CHOICES.get(ds.name)}" for ds, _ in datasets]
    print("\n".join(choices))
    print("\n".join(verdicts))
    if args.no_write:
        return
    md = "\n".join([
        "## Multi-task (hierarchical) label model",
        "",
        "`python benchmarks/multitask.py`: every model fitted on the train split without "
        "labels, scored on the test split against gold; random tie breaks with seed 0 for all "
        "models. *fine acc* is the accuracy of the full path (the fine class determines the "
        "coarse one); *consistent* is the share of predicted (coarse, fine) pairs that respect "
        "the hierarchy (separate per-task models need not). The first three accuracy columns "
        "use each model's defaults; the *abstains modelled* columns use the same fit with "
        "`model_abstains=True` (a unipolar source's silence is evidence: the unipolar on/off "
        "comparison; the joint EM default models abstentions either way). *P(Y) from*: "
        f"`default` = each model's default prior, no labels (uniform for the separate "
        "label models and the moment estimator, estimated by EM for the joint default); "
        f"`{N_DEV} labels` = class balance (and "
        "nothing else) from the gold "
        f"labels of {N_DEV} random train rows (`Y_dev`, add-one smoothed), as WRENCH gives "
        "label models a dev-set balance. *implied parent votes*: a fine source's vote is also "
        "given to the coarse-level model as the implied coarse vote (the joint model and "
        "hierarchical MV derive these implications from the hierarchy themselves). "
        f"Machine: {machine_line()}, one thread.",
        "",
        *[f"- {d}" for d in descriptions],
        *[f"- {n}" for n in notes],
        "",
        table,
        "",
        *[f"- {v}" for v in verdicts],
        *[f"- {c}" for c in choices],
        *[f"- {v}" for v in interpretation(rows, [ds.name for ds, _ in datasets])],
    ])
    write_section("multitask", md)


if __name__ == "__main__":
    main()

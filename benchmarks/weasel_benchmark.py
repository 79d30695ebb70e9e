"""WeaSEL (end-to-end) vs label model + end model vs majority vote + end model.

Run ``python benchmarks/weasel_benchmark.py`` (one thread). It prints every table and
rewrites the ``weasel``, ``weasel_ablation``, ``weasel_robustness``, ``weasel_multitask`` and
``weasel_probabilistic`` sections of ``benchmarks/RESULTS.md``; the robustness plot goes to
``benchmarks/figures/weasel_robustness.png``. ``--skip`` leaves parts out (e.g. ``--skip main
ablation`` and ``--skip robustness multitask probabilistic`` split the run in two processes);
``--quick`` runs a small smoke version (one set, one seed, few epochs) and writes nothing.

Protocol.

* Sets: youtube, sms, trec, semeval, chemprot, census (WRENCH, ``../shared/data``). Train
  without labels on the train split (chemprot has none: on 90% of its valid split), early-stop
  on the valid split (chemprot: the other 10% of valid), score on test. The test metric is
  accuracy, or F1 of class 1 for sms and census (as in ``ANCHORS.md``).
* Model selection, as in the paper (Appendix C): WeaSEL early-stops on its default valid
  metric (ROC AUC for two classes, accuracy otherwise); the end models of the two label-model
  pipelines early-stop on the set's metric (F1 or accuracy). On the F1 sets every pipeline's
  decision threshold on P(y=1) is then tuned for F1 on the valid split. (Early-stopping WeaSEL
  on F1 at threshold 0.5 was what made it fail on sms and census before: its soft labels of an
  imbalanced set keep every P(spam) below 0.5 at first, so valid F1 is 0 and training stopped
  after ``patience`` epochs.)
* Features, the same for every model: TF-IDF of the text (word 1-2 grams, fitted on the train
  texts) for youtube, sms, trec; for the relation sets semeval and chemprot TF-IDF of the
  sentence plus TF-IDF of the words between the two entities; census: its 105 tabular
  features. Built once per set and run (memoised). (``benchmarks/end_model.py``'s wordllama
  features are not used: WeaSEL's encoder reads the features through its own input module,
  which would need a dict-input module for them, and the run had to fit the time budget.)
* End model, the same for every pipeline: ``metal.end_model.EndModel(k)`` with a
  ``SparseInput`` of width 128 (TF-IDF) or a ``DenseInput`` (census), one hidden layer of 64,
  dropout 0.1; Adam lr 1e-3, batch 128, weight decay 7e-7, at most ``EPOCHS`` (20) epochs,
  patience ``PATIENCE`` (5), best validation epoch restored.
* Pipelines: ``WeaSEL(k)`` with its defaults (the paper's encoder: MLP 70-70 with batch norm,
  softmax accuracies over the voting sources with tau2 = sqrt(voters), symmetric
  cross-entropy with stop-gradients, tau1 = 1 with the validation split, the end model
  warm-started on a label model's posteriors, ``warm_start="label_model"``);
  ``LabelModel(k)`` (defaults) + end model on its probabilities; ``MajorityVoter`` + end
  model on its probabilities. The label-model pipelines train on the rows with at least one
  vote, as WeaSEL does.
* Three seeds (model initialisation, batch order, dropout); mean and standard deviation.
  Pipelines whose inputs do not change (the F.1 run without copies) are memoised, not rerun.
* Ablation: WeaSEL with the paper's softmax over all sources (tau2 = sqrt(m)), and WeaSEL
  without the warm start (``warm_start=None``, the paper's random start), same protocol.

Robustness (paper Appendix F). On census (tabular features) and sms (TF-IDF): one source equal
to the true label plus 2, 25, 100, 500 and 2,000 copies of one coin-flip source (votes drawn
from the class balance). Test ROC AUC of WeaSEL, of the label-model pipeline and of the same
end model trained on the gold labels, every model with WeaSEL's default budget (50 epochs,
patience 15; ``ROBUST_TRAIN``). F.1: on youtube, an adversarial source made from the most
accurate "spam" source (chosen on the valid split) by turning its abstentions into "ham"
votes, duplicated 0-10 times (main-table protocol, seed 0).

Multi-task: TREC coarse (6) / fine (50) with the sources of ``hierarchy_sources/trec.py``:
multi-task WeaSEL vs single-task WeaSEL per level vs ``MultiTaskLabelModel`` +
``MultiTaskEndModel``; features TF-IDF of the question; 300 labelled train questions held out
for early stopping.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import SHARED_DATA, machine_line, markdown_table, write_section  # noqa: E402

from metal import LabelModel, MajorityVoter, load_wrench  # noqa: E402
from metal.end_model import EndModel, MultiTaskEndModel  # noqa: E402
from metal.label_model.label_model import MetalWarning  # noqa: E402
from metal.metrics import probs_to_preds, score_predictions  # noqa: E402
from metal.weasel import MultiTaskWeaSEL, WeaSEL, roc_auc  # noqa: E402

SEEDS = (0, 1, 2)
EPOCHS = 20
PATIENCE = 5
TRAIN = {"n_epochs": EPOCHS, "patience": PATIENCE, "weight_decay": 7e-7, "batch_size": 128,
         "lr": 1e-3}
# Appendix F budget, for every model of the robustness table: WeaSEL's own defaults (50 epochs,
# patience 15); with 2,000 duplicates its valid AUC dips for ~10 epochs before it recovers
# (the paper, F.2.1: "convergence becomes slower as the LF set contains more duplicates")
ROBUST_TRAIN = {**TRAIN, "n_epochs": 50, "patience": 15}
END_HIDDEN = (64,)  # the end model's trunk, the same for every pipeline
SPARSE_WIDTH = 128  # width of the sparse (TF-IDF) input layer of the end model
F1_SETS = {"sms", "census"}
SETS = ("youtube", "sms", "trec", "semeval", "chemprot", "census")
DUPLICATES = (2, 25, 100, 500, 2000)
LM_MAX_DUPLICATES = 500  # the label model's moment fit grows with m^2: 2,000 copies take minutes
ADVERSARIAL = (0, 1, 2, 5, 10)
FIGURES = Path(__file__).resolve().parent / "figures"


# ---------------------------------------------------------------------------- data
@dataclass
class Split:
    L: np.ndarray
    X: Any
    Y: np.ndarray


@dataclass
class Task:
    name: str
    k: int
    metric: str
    train: Split
    valid: Split
    test: Split


def _tfidf(fit_texts: list[str], *others: list[str]) -> list[sp.csr_matrix]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=5000, sublinear_tf=True)
    out = [vec.fit_transform(fit_texts)]
    return out + [vec.transform(t) for t in others]


def _between(examples: list[dict[str, Any]]) -> list[str]:
    out = []
    for ex in examples:
        (s1, e1), (s2, e2) = sorted([tuple(ex["span1"]), tuple(ex["span2"])])
        out.append(ex["text"][e1:s2])
    return out


def _text_features(name: str, parts: list[list[dict[str, Any]]]) -> list[sp.csr_matrix]:
    texts = [[ex["text"] for ex in p] for p in parts]
    feats = _tfidf(*texts)
    if name in ("semeval", "chemprot"):
        between = _tfidf(*[_between(p) for p in parts])
        feats = [sp.hstack([a, b]).tocsr() for a, b in zip(feats, between, strict=True)]
    return feats


@functools.cache
def load_task(name: str) -> Task:
    """Load a set and build its features once per run (memoised)."""
    folder = SHARED_DATA / f"wrench_{name}"
    metric = "f1" if name in F1_SETS else "accuracy"
    test = load_wrench(folder, "test")
    valid = load_wrench(folder, "valid")
    k = test.cardinality
    if name == "chemprot":  # no train split: train on 90% of valid, early-stop on the rest
        rng = np.random.default_rng(0)
        order = rng.permutation(valid.n_rows)
        cut = int(0.9 * valid.n_rows)
        tr_idx, va_idx = np.sort(order[:cut]), np.sort(order[cut:])
        ex = valid.examples
        tr_ex, va_ex = [ex[i] for i in tr_idx], [ex[i] for i in va_idx]
        Ls = (valid.L[tr_idx], valid.L[va_idx])
        Ys = (valid.Y[tr_idx], valid.Y[va_idx])
    else:
        train = load_wrench(folder, "train")
        tr_ex, va_ex = train.examples, valid.examples
        Ls, Ys = (train.L, valid.L), (train.Y, valid.Y)
        if name == "census":
            feats = [train.features, valid.features, test.features]
    if name != "census":
        feats = _text_features(name, [tr_ex, va_ex, test.examples])
    return Task(name, k, metric, Split(Ls[0], feats[0], Ys[0]), Split(Ls[1], feats[1], Ys[1]),
                Split(test.L, feats[2], test.Y))


# ---------------------------------------------------------------------------- pipelines
def f1_threshold(Y: np.ndarray, p1: np.ndarray) -> float:
    """The decision threshold on ``P(y=1)`` with the best F1 on ``(Y, p1)`` (the valid split).

    The paper tunes every model's threshold this way on its F1-scored sets (Appendix C): F1
    depends on the threshold, and soft labels of an imbalanced set (WeaSEL's especially) can
    leave every probability of the rare class below 0.5.
    """
    keep = Y >= 0
    Y, p1 = Y[keep], p1[keep]
    cands = np.unique(p1)
    if cands.size > 200:
        cands = np.unique(np.quantile(p1, np.linspace(0, 1, 201)))
    best, best_t = -1.0, 0.5
    for t in cands:
        pred = p1 >= t
        tp = float(np.sum(pred & (Y == 1)))
        f1 = 2 * tp / max(float(pred.sum() + (Y == 1).sum()), 1.0)
        if f1 > best:
            best, best_t = f1, float(t)
    return best_t


def _preds(task: Task, probs: np.ndarray, threshold: float | None) -> np.ndarray:
    if threshold is None:
        return probs_to_preds(probs, "first")
    return (probs[:, 1] >= threshold).astype(np.int64)


def _score(task: Task, probs: np.ndarray, metric: str | None = None,
           valid_probs: np.ndarray | None = None) -> float:
    """Test score of ``probs``; on the F1 sets the threshold is tuned on ``valid_probs``."""
    metric = metric or task.metric
    if metric == "auc":
        return roc_auc(task.test.Y, probs[:, 1])
    threshold = None
    if metric == "f1" and valid_probs is not None:
        threshold = f1_threshold(task.valid.Y, valid_probs[:, 1])
    preds = _preds(task, probs, threshold)
    return score_predictions(task.test.Y, preds, [metric], cardinality=task.k)[metric]


def _valid_score(task: Task, valid_probs: np.ndarray) -> float:
    """The valid split's metric, with the threshold tuned there for F1 (optimistic, as any
    score on the selection split is)."""
    threshold = None
    if task.metric == "f1":
        threshold = f1_threshold(task.valid.Y, valid_probs[:, 1])
    preds = _preds(task, valid_probs, threshold)
    return score_predictions(task.valid.Y, preds, [task.metric], cardinality=task.k)[task.metric]


def end_model(X: Any, k: int | Any, seed: int, **kw: Any) -> Any:
    """The end model of every pipeline: input module by feature type, trunk END_HIDDEN."""
    from metal.end_model import DenseInput, SparseInput

    module = SparseInput(X.shape[1], SPARSE_WIDTH) if sp.issparse(X) else DenseInput(X.shape[1])
    if isinstance(k, int):
        return EndModel(k, input_module=module, hidden=END_HIDDEN, seed=seed, **kw)
    return MultiTaskEndModel(k, input_module=module, hidden=END_HIDDEN, seed=seed, **kw)


Result = tuple[np.ndarray, np.ndarray]  # (valid probabilities, test probabilities)
_CACHE: dict[tuple[str, str, int, str, str], Result] = {}


def _cached(pipeline: str, task: Task, seed: int, extra: str, run: Callable[[], Result]
            ) -> Result:
    """Memoise a pipeline's output on (pipeline, set, seed, label matrix, options): the
    robustness and F.1 experiments rerun the main table's unchanged configurations."""
    import hashlib

    key = (pipeline, task.name, seed, hashlib.sha1(np.ascontiguousarray(task.train.L)
                                                   .tobytes()).hexdigest(), extra)
    if key not in _CACHE:
        _CACHE[key] = run()
    return _CACHE[key]


def run_weasel(task: Task, seed: int, **kw: Any) -> Result:
    """WeaSEL with its defaults: early stopping on its own valid metric ("auto": ROC AUC for
    two classes as in the paper, accuracy otherwise)."""
    def fit() -> Result:
        model = WeaSEL(task.k, seed=seed, end_model=end_model(task.train.X, task.k, seed),
                       **{**TRAIN, **kw})
        model.fit(task.train.L, task.train.X, task.valid.X, task.valid.Y)
        return model.predict_proba(task.valid.X), model.predict_proba(task.test.X)

    return _cached("weasel", task, seed, repr(sorted(kw.items())), fit)


def run_end_model(task: Task, targets: np.ndarray, seed: int, L: np.ndarray | None,
                  train: dict[str, Any] | None = None) -> Result:
    em = end_model(task.train.X, task.k, seed, valid_metric=task.metric, **(train or TRAIN))
    em.fit(task.train.X, targets, L=L, X_valid=task.valid.X, Y_valid=task.valid.Y)
    return em.predict_proba(task.valid.X), em.predict_proba(task.test.X)


def label_model_probs(L: np.ndarray, k: int, seed: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetalWarning)
        return LabelModel(k, seed=seed).fit(L).predict_proba(L)


def run_lm(task: Task, seed: int) -> Result:
    return _cached("lm", task, seed, "", lambda: run_end_model(
        task, label_model_probs(task.train.L, task.k, seed), seed, task.train.L))


def run_mv(task: Task, seed: int) -> Result:
    return _cached("mv", task, seed, "", lambda: run_end_model(
        task, MajorityVoter(task.k).predict_proba(task.train.L), seed, task.train.L))


PIPELINES: dict[str, Callable[[Task, int], Result]] = {
    "WeaSEL": run_weasel,
    "label model + end model": run_lm,
    "majority vote + end model": run_mv,
}


def main_table(sets: tuple[str, ...], seeds: tuple[int, ...],
               pipelines: dict[str, Callable[[Task, int], Result]] | None = None
               ) -> tuple[str, dict[str, Any]]:
    PIPELINES = pipelines or globals()["PIPELINES"]  # noqa: N806
    results: dict[str, dict[str, list[float]]] = {}
    valids: dict[str, dict[str, list[float]]] = {}
    times: dict[str, float] = {p: 0.0 for p in PIPELINES}
    for name in sets:
        t0 = time.perf_counter()
        task = load_task(name)
        print(f"{name}: train {task.train.L.shape}, k={task.k}, metric {task.metric}, "
              f"features {task.train.X.shape} (loaded in {time.perf_counter() - t0:.1f} s)",
              flush=True)
        results[name], valids[name] = {}, {}
        for pname, run in PIPELINES.items():
            scores, vscores = [], []
            for seed in seeds:
                t = time.perf_counter()
                pv, pt = run(task, seed)
                times[pname] += time.perf_counter() - t
                scores.append(_score(task, pt, valid_probs=pv))
                vscores.append(_valid_score(task, pv))
            results[name][pname], valids[name][pname] = scores, vscores
            print(f"  {pname:<30} test {np.mean(scores):.3f} ± {np.std(scores):.3f}   "
                  f"(valid {np.mean(vscores):.3f})", flush=True)
    headers = ["set", "metric"] + list(PIPELINES)
    rows: list[list[object]] = []
    for name in sets:
        metric = "F1" if name in F1_SETS else "acc"
        rows.append([name, metric, *[f"{np.mean(results[name][p]):.3f} ± "
                                      f"{np.std(results[name][p]):.3f}" for p in PIPELINES]])
    means = {p: float(np.mean([np.mean(results[n][p]) for n in sets])) for p in PIPELINES}
    vmeans = {p: float(np.mean([np.mean(valids[n][p]) for n in sets])) for p in PIPELINES}
    rows.append(["**mean**", "", *[f"{means[p]:.3f}" for p in PIPELINES]])
    rows.append(["mean on valid (early-stopping split)", "",
                 *[f"{vmeans[p]:.3f}" for p in PIPELINES]])
    rows.append(["train time, s (all sets and seeds)", "",
                 *[f"{times[p]:.0f}" for p in PIPELINES]])
    table = markdown_table(headers, rows)
    return table, {"results": results, "means": means, "valid_means": vmeans}


# ---------------------------------------------------------------------------- robustness
def robustness(seed: int = 0, sets: tuple[str, ...] = ("census", "sms"),
               duplicates: tuple[int, ...] = DUPLICATES, lm_max: int = LM_MAX_DUPLICATES
               ) -> tuple[str, dict[str, Any]]:
    rows: list[list[object]] = []
    curves: dict[str, Any] = {}
    for name in sets:
        task = load_task(name)
        gold = end_model(task.train.X, 2, seed, valid_metric=task.metric, **ROBUST_TRAIN)
        gold.fit(task.train.X, task.train.Y, X_valid=task.valid.X, Y_valid=task.valid.Y)
        gold_auc = _score(task, gold.predict_proba(task.test.X), "auc")
        rng = np.random.default_rng(seed)
        Y = task.train.Y
        coin = (rng.random(Y.size) < Y.mean()).astype(np.int8)
        curves[name] = {"gold": gold_auc, "WeaSEL": [], "label model + end model": [],
                        "duplicates": list(duplicates)}
        for d in duplicates:
            L = np.concatenate([Y[:, None].astype(np.int8), np.repeat(coin[:, None], d, 1)], 1)
            t = time.perf_counter()
            model = WeaSEL(2, seed=seed, end_model=end_model(task.train.X, 2, seed),
                           **ROBUST_TRAIN)
            model.fit(L, task.train.X, task.valid.X, task.valid.Y)
            w_auc = _score(task, model.predict_proba(task.test.X), "auc")
            wt = time.perf_counter() - t
            lm_auc = float("nan")
            lt = float("nan")
            if d <= lm_max:
                t = time.perf_counter()
                probs = label_model_probs(L, 2, seed)
                _, p = run_end_model(task, probs, seed, L, ROBUST_TRAIN)
                lm_auc = _score(task, p, "auc")
                lt = time.perf_counter() - t
            curves[name]["WeaSEL"].append(w_auc)
            curves[name]["label model + end model"].append(lm_auc)
            ok = "yes" if w_auc >= gold_auc - 0.03 else "NO"
            rows.append([name, d + 1, f"{gold_auc:.3f}", f"{w_auc:.3f}", ok,
                         "not run" if np.isnan(lm_auc) else f"{lm_auc:.3f}",
                         f"{wt:.0f}", "–" if np.isnan(lt) else f"{lt:.0f}"])
            print(f"  {name} m={d + 1}: gold {gold_auc:.3f}, WeaSEL {w_auc:.3f} ({wt:.0f} s), "
                  f"LM+EM {lm_auc:.3f}", flush=True)
    table = markdown_table(["set", "sources m", "end model on gold, AUC", "WeaSEL AUC",
                            "within 0.03 of gold", "label model + end model AUC",
                            "WeaSEL s", "LM+EM s"], rows)
    return table, curves


def adversarial(seed: int = 0, counts: tuple[int, ...] = ADVERSARIAL
                ) -> tuple[str, dict[str, Any]]:
    task = load_task("youtube")
    Lv, Yv = task.valid.L, task.valid.Y
    # the source that votes "spam" (1) most accurately on the valid split (ties: coverage)
    stats = []
    for j in range(Lv.shape[1]):
        v = Lv[:, j]
        if (v == 1).sum() == 0 or (v == 0).sum() > 0:
            continue
        stats.append((float(np.mean(Yv[v == 1] == 1)), float(np.mean(v == 1)), j))
    acc, _, j = max(stats)
    adv_train = np.where(task.train.L[:, j] == -1, 0, -1).astype(task.train.L.dtype)
    # the reference of the acceptance criterion: the same end model trained on the gold labels
    gold_valid, gold_test = run_end_model(task, task.train.Y, seed, None)
    gold = _score(task, gold_test, valid_probs=gold_valid)
    rows: list[list[object]] = []
    curve: dict[str, Any] = {"WeaSEL": [], "label model + end model": [],
                                     "majority vote + end model": [], "counts": list(counts),
                                     "gold": gold}
    for c in counts:
        L = np.concatenate([task.train.L, np.repeat(adv_train[:, None], c, 1)], 1)
        sub = Task(task.name, task.k, task.metric, Split(L, task.train.X, task.train.Y),
                   task.valid, task.test)
        vals = [_score(task, pt, valid_probs=pv)
                for pv, pt in (run_weasel(sub, seed), run_lm(sub, seed), run_mv(sub, seed))]
        for key, val in zip(("WeaSEL", "label model + end model", "majority vote + end model"),
                            vals, strict=True):
            curve[key].append(val)
        rows.append([c, f"{gold:.3f}"] + [f"{v:.3f}" for v in vals]
                    + ["yes" if vals[0] >= gold - 0.03 else "NO"])
        print(f"  youtube + {c} adversarial copies: WeaSEL {vals[0]:.3f}, LM+EM {vals[1]:.3f}, "
              f"MV+EM {vals[2]:.3f}", flush=True)
    table = markdown_table(["adversarial copies", "end model on gold, acc", "WeaSEL acc",
                            "label model + end model acc", "majority vote + end model acc",
                            "WeaSEL within 0.03 of gold"], rows)
    note = (f"Adversarial source: the abstentions of youtube source {j} (valid accuracy "
            f"{acc:.2f} on its spam votes) turned into ham votes.")
    return note + "\n\n" + table, curve


def plot(curves: dict[str, Any], adv: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves) + 1, figsize=(5 * (len(curves) + 1), 4))
    for ax, (name, c) in zip(axes, curves.items(), strict=False):
        x = [d + 1 for d in c["duplicates"]]
        ax.plot(x, c["WeaSEL"], "o-", label="WeaSEL")
        ax.plot(x, c["label model + end model"], "s--", label="label model + end model")
        ax.axhline(c["gold"], color="red", label="end model on gold")
        ax.axhline(c["gold"] - 0.03, color="red", linestyle=":", label="gold - 0.03")
        ax.set_xscale("log")
        ax.set_xlabel("sources (1 true label + duplicated coin flips)")
        ax.set_ylabel("test ROC AUC")
        ax.set_title(f"{name}: duplicated coin flips (F.2.1)")
        # the floor follows the lowest curve, so a collapsed pipeline is drawn, not clipped
        low = min([0.4, *c["WeaSEL"], *c["label model + end model"]])
        ax.set_ylim(low - 0.02, 1.0)
        ax.legend(fontsize=8)
    ax = axes[-1]
    for key, style in (("WeaSEL", "o-"), ("label model + end model", "s--"),
                       ("majority vote + end model", "^:")):
        ax.plot(adv["counts"], adv[key], style, label=key)
    ax.axhline(adv["gold"], color="red", label="end model on gold")
    ax.axhline(adv["gold"] - 0.03, color="red", linestyle=":", label="gold - 0.03")
    ax.set_xlabel("copies of the adversarial source")
    ax.set_ylabel("test accuracy")
    ax.set_title("youtube: duplicated adversarial source (F.1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- probabilistic
def spouse_scores_to_votes(S: np.ndarray, lf_class: np.ndarray) -> np.ndarray:
    """``(n, m, 2)`` probabilistic votes from spouse's LF scores.

    Source ``j`` votes for class ``lf_class[j]``; its score ``s`` becomes the distribution
    ``P(lf_class[j]) = s``, ``P(other) = 1 - s``. A score of exactly 0.5 carries no preference
    and is stored as an abstention (all zeros), so rows without information stay masked.
    """
    n, m = S.shape
    P = np.zeros((n, m, 2), dtype=np.float32)
    cols = np.arange(m)
    P[:, cols, lf_class] = S
    P[:, cols, 1 - lf_class] = 1.0 - S
    P[S == 0.5] = 0.0
    return P


def probabilistic(seeds: tuple[int, ...]) -> str:
    """Spouse (``spear_cage_spouse``): WeaSEL on discrete votes vs on the LF scores ``S``."""
    with np.load(SHARED_DATA / "spear_cage_spouse" / "spouse_wrench_convention.npz") as d:
        data = {k: d[k] for k in d.files}
    lf_class = data["k"].astype(np.int64)
    P_train = spouse_scores_to_votes(data["S_train"], lf_class)
    values = sorted({float(v) for v in np.unique(data["S_train"])})
    # features: the scores themselves (the archive has no text); the same for every model
    X = {s: data[f"S_{s}"].astype(np.float32) for s in ("train", "dev", "test")}
    task = Task("spouse", 2, "f1", Split(data["L_train"], X["train"], np.full(len(X["train"]), -1)),
                Split(data["L_dev"], X["dev"], data["y_dev"].astype(np.int64)),
                Split(data["L_test"], X["test"], data["y_test"].astype(np.int64)))
    rows = []
    for label, run in (
            ("WeaSEL, discrete votes L", lambda sd: run_weasel(task, sd)),
            ("WeaSEL, probabilistic votes from S", lambda sd: run_weasel(
                Task(task.name, 2, "f1", Split(P_train, task.train.X, task.train.Y),
                     task.valid, task.test), sd)),
            ("label model + end model", lambda sd: run_lm(task, sd)),
            ("majority vote + end model", lambda sd: run_mv(task, sd))):
        scores = [_score(task, pt, valid_probs=pv) for pv, pt in map(run, seeds)]
        rows.append([label, f"{np.mean(scores):.3f} ± {np.std(scores):.3f}"])
        print(f"  spouse {label:<40} F1 {np.mean(scores):.3f}", flush=True)
    note = (f"The stored scores take the values {values} only (0.5 where a source abstains), "
            "so the probabilistic input carries the same information as the discrete votes; "
            "the example shows the (n, m, k) input path on real data.")
    return markdown_table(["spouse (test F1)", "mean ± std"], rows) + "\n\n" + note


# ---------------------------------------------------------------------------- multi-task
def multitask(seeds: tuple[int, ...]) -> str:
    from hierarchy_sources import load_trec
    from hierarchy_sources.trec import FINE_TO_COARSE

    from metal import MultiTaskLabelModel, TaskHierarchy

    ds = load_trec(SHARED_DATA)
    implied = ds.with_implied_parent_votes()
    h = TaskHierarchy({"coarse": 6, "fine": 50},
                      parents={"fine": ("coarse", [int(c) for c in FINE_TO_COARSE])})
    rng = np.random.default_rng(0)
    n = ds.L_train.shape[0]
    va = np.sort(rng.permutation(n)[:300])
    tr = np.setdiff1d(np.arange(n), va)
    texts = ds.texts_train.tolist()
    Xtr, Xva, Xte = _tfidf([texts[i] for i in tr], [texts[i] for i in va],
                           ds.texts_test.tolist())
    L, Li, Y = ds.L_train, implied.L_train, ds.Y_train
    Yte = ds.Y_test
    res: dict[str, list[tuple[float, float, float, float]]] = {}

    def record(name: str, preds: np.ndarray) -> None:
        coarse = float(np.mean(preds[:, 0] == Yte[:, 0]))
        fine = float(np.mean(preds[:, 1] == Yte[:, 1]))
        both = float(np.mean((preds == Yte).all(axis=1)))
        feas = float(np.mean(h.is_feasible(preds)))
        res.setdefault(name, []).append((coarse, fine, both, feas))
        print(f"  {name:<45} coarse {coarse:.3f} fine {fine:.3f} feasible {feas:.3f}",
              flush=True)

    for seed in seeds:
        kw: dict[str, Any] = {**TRAIN, "seed": seed, "valid_metric": "accuracy"}
        mt = MultiTaskWeaSEL(h, end_model=end_model(Xtr, h, seed), **kw).fit(L[tr], Xtr, Xva,
                                                                         Y[va])
        record("multi-task WeaSEL", mt.predict(Xte))
        coarse = WeaSEL(6, end_model=end_model(Xtr, 6, seed), **kw).fit(Li[tr, :, 0], Xtr, Xva,
                                                                       Y[va, 0])
        fine = WeaSEL(50, end_model=end_model(Xtr, 50, seed), **kw).fit(L[tr, :, 1], Xtr, Xva,
                                                                       Y[va, 1])
        record("single-task WeaSEL per level",
               np.stack([coarse.predict(Xte), fine.predict(Xte)], axis=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetalWarning)
            lm = MultiTaskLabelModel(task_graph=h, seed=seed).fit(L[tr])
            joint = lm.predict_proba_joint(L[tr])
        marg = [joint @ h.marginal_indicator(s) for s in range(2)]
        em = end_model(Xtr, h, seed, **{k: v for k, v in kw.items() if k != "seed"})
        em.fit(Xtr, marg, L=L[tr], X_valid=Xva, Y_valid=Y[va])
        record("multi-task label model + multi-task end model", em.predict(Xte))
    rows = []
    for name, vals in res.items():
        a = np.array(vals)
        rows.append([name] + [f"{a[:, i].mean():.3f} ± {a[:, i].std():.3f}" for i in range(3)]
                    + [f"{a[:, 3].mean():.3f}"])
    return markdown_table(["model", "coarse acc", "fine acc", "both right", "feasible"], rows)


# ---------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, writes nothing")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("main", "ablation", "robustness", "multitask",
                                 "probabilistic"))
    parser.add_argument("--mt-seeds", type=int, nargs="+", default=[0],
                        help="seeds of the TREC multi-task comparison (default 0)")
    parser.add_argument("--lm-max-duplicates", type=int, default=LM_MAX_DUPLICATES,
                        help="largest copy count the label-model pipeline is run on")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not (SHARED_DATA / "wrench_youtube").exists():
        print(f"skipping: {SHARED_DATA} has no WRENCH data")
        return 0
    seeds: tuple[int, ...] = SEEDS
    sets = tuple(args.sets)
    if args.quick:
        TRAIN["n_epochs"] = ROBUST_TRAIN["n_epochs"] = 3
        seeds, sets = (0,), ("youtube",)
    start = time.perf_counter()

    class Sections(dict[str, str]):
        """Each section goes to RESULTS.md as soon as it is computed (a long run that is cut
        short keeps what it finished)."""

        def __setitem__(self, name: str, text: str) -> None:
            super().__setitem__(name, text)
            if not args.quick:
                write_section(name, text)

    sections = Sections()
    if "main" not in args.skip:
        table, info = main_table(sets, seeds)
        print(table)
        m = info["means"]
        wins = [n for n in sets if np.mean(info["results"][n]["WeaSEL"])
                >= np.mean(info["results"][n]["label model + end model"])]
        summary = (f"Mean test metric: WeaSEL {m['WeaSEL']:.3f}, label model + end model "
                   f"{m['label model + end model']:.3f}, majority vote + end model "
                   f"{m['majority vote + end model']:.3f}. WeaSEL >= the label-model pipeline "
                   f"on {len(wins)} of {len(sets)} sets ({', '.join(wins) or 'none'}).")
        print(summary)
        sections["weasel"] = (
            "## WeaSEL vs label model + end model vs majority vote + end model\n\n"
            f"`python benchmarks/weasel_benchmark.py` ({machine_line()}, one thread). Test "
            "metric (F1 of class 1 for sms and census, accuracy otherwise), mean ± std over seeds "
            f"{list(seeds)}; same EndModel network, features and training budget "
            f"({TRAIN['n_epochs']} epochs max, patience {PATIENCE}) for every pipeline. Early "
            "stopping on the valid split: WeaSEL on its default metric (ROC AUC for two "
            "classes, as in the paper; accuracy otherwise), the label-model pipelines' end "
            "models on the set's metric; on the F1 sets every pipeline's decision threshold is "
            "tuned for F1 on the valid split (paper, Appendix C). Features: TF-IDF (text; "
            "relation sets add TF-IDF of the words between the entities), census tabular.\n\n"
            + table + "\n\n" + summary)
    if "ablation" not in args.skip:
        ablations: dict[str, Callable[[Task, int], Result]] = {
            "WeaSEL (defaults: softmax over the voters)": run_weasel,  # memoised above
            "WeaSEL (softmax over all sources, the paper)": lambda t, s: run_weasel(
                t, s, softmax_over="all"),
            "WeaSEL (no warm start, the paper)": lambda t, s: run_weasel(
                t, s, warm_start=None),
        }
        table, info = main_table(sets, seeds, ablations)
        print(table)
        sections["weasel_ablation"] = (
            "## WeaSEL ablation: softmax over the voting sources (default) vs over all; "
            "warm start (default) vs none\n\n"
            "The protocol of the main WeaSEL table (same runs for the default column). The "
            "*valid* row is what the default was chosen on (test labels never).\n\n"
            + table)
    if "robustness" not in args.skip:
        dups = (2, 25) if args.quick else DUPLICATES
        rob_table, curves = robustness(duplicates=dups, lm_max=args.lm_max_duplicates,
                                       sets=("sms",) if args.quick else ("census", "sms"))
        adv_table, adv = adversarial(counts=(0, 2) if args.quick else ADVERSARIAL)
        print(rob_table)
        print(adv_table)
        fig = FIGURES / "weasel_robustness.png"
        if not args.quick:
            plot(curves, adv, fig)
        sections["weasel_robustness"] = (
            "## WeaSEL robustness (paper Appendix F)\n\n"
            "One source equal to the true label plus copies of one coin-flip source; test ROC "
            "AUC (seed 0). Every model here (WeaSEL, the label-model pipeline's end model, the "
            f"gold-trained end model) trains at most {ROBUST_TRAIN['n_epochs']} epochs with "
            f"patience {ROBUST_TRAIN['patience']} (WeaSEL's defaults), early-stopping on valid "
            "(WeaSEL on AUC, the end models on F1). The label-model pipeline is not run above "
            f"{args.lm_max_duplicates} copies (its moment fit grows with m²).\n\n"
            + rob_table + "\n\nF.1, duplicated adversarial source (youtube, seed 0):\n\n"
            + adv_table + f"\n\n![robustness](figures/{fig.name})")
    if "multitask" not in args.skip and (SHARED_DATA / "trec_coarse_fine").exists():
        mt_seeds = (0,) if args.quick else tuple(args.mt_seeds)
        mt_table = multitask(mt_seeds)
        print(mt_table)
        sections["weasel_multitask"] = (
            "## Multi-task WeaSEL on TREC coarse / fine\n\n"
            "Sources of `benchmarks/hierarchy_sources/trec.py` (68 WRENCH coarse sources, "
            "unipolar fine sources); TF-IDF features; 300 labelled train questions held out for "
            f"early stopping; seeds {list(mt_seeds)}. Single-task "
            "WeaSEL per level: coarse on the coarse votes plus the coarse votes implied by fine "
            "votes, fine on the fine votes; their two predictions can be inconsistent "
            "(feasible column).\n\n" + mt_table)
    if "probabilistic" not in args.skip and (SHARED_DATA / "spear_cage_spouse").exists():
        prob_table = probabilistic((0,) if args.quick else SEEDS)
        print(prob_table)
        sections["weasel_probabilistic"] = (
            "## WeaSEL with probabilistic sources: spouse\n\n"
            "Snorkel's spouse task (`spear_cage_spouse`): train on the 22,276 unlabelled rows, "
            "early-stop on dev, F1 of class 1 on test. Features: the 10 LF scores `S` (the "
            "archive has no text); the same end model for every row.\n\n" + prob_table)
    print(f"total {time.perf_counter() - start:.0f} s; sections written: "
          f"{', '.join(sections) if not args.quick else 'none (--quick)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

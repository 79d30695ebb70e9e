"""NER from weak sources on the seven WRENCH sequence sets: span F1 of token majority vote, the
sequence label model, and the BiLSTM tagger trained on the label model's outputs (and on gold).

Run from the repository root::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/ner.py [--sets conll,bc5cdr] [--no-write]

or, on two cores, two runs over disjoint sets in parallel and one table::

    python benchmarks/ner.py --sets conll,wikigold,bc5cdr,ncbi_disease --save-rows a.json &
    python benchmarks/ner.py --sets laptopreview,mit_restaurants,ontonotes --save-rows b.json
    wait; python benchmarks/ner.py --combine a.json b.json

``--no-gold`` skips the gold-trained tagger (half the time; such a run never writes
RESULTS.md).

Protocol (no gold label is used by anything but the "gold" column and the final scores):

* The label model is fitted on the votes and words of the unlabeled training split
  (``train``; sets that ship without one, conll and mit_restaurants, use ``valid``, as WRENCH
  fits on whatever unlabeled split it has) with its default configuration. That default was
  chosen by the mean span F1 on the dev splits (``valid``; ontonotes: ``valid[3000:4000]``),
  printed as the "LM dev" column; the test split played no part in it.
* Scores are on ``test``. ontonotes ships only ``valid`` (5000 sentences): its first 4000
  sentences are the training split and the last 1000 the test split.
* The tagger (``SequenceTagger`` defaults: BiLSTM-CRF over wordllama vectors, word
  embeddings, a character CNN and shape features, validated and predicting with a moving
  average of its weights) is trained on the label model's token
  posteriors over the training split; 10% of the training sentences (seeded) are held out to
  pick the epoch by span F1 *against the label model's predictions* (label-free, patience 5);
  all remaining sentences train it, for about 500k token updates (``tagger_epochs``: 500k /
  training tokens, between 4 and 40 epochs; batch 16: the budget of two shared CPU cores).
  Sequences longer than 64 tokens (the bc5cdr and ncbi_disease abstracts) are cut at sentence
  ends into pieces of at most 64 tokens (``SequenceTagger(max_length=64)``). The gold column
  trains the same tagger on the gold tags of the same sentences and picks the epoch on the
  same held-out sentences' gold tags.
* Every source's ``O`` is read as abstain (the WRENCH LFs are dictionaries, patterns and
  taggers whose ``O`` mixes "no opinion" and "not an entity").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._results import SHARED_DATA, machine_line, markdown_table, write_section  # noqa: E402
from metal.data.wrench_sequence import SequenceSplit, load_wrench_sequence  # noqa: E402
from metal.sequence import SequenceLabelModel, TokenMajorityVoter, span_scores  # noqa: E402
from metal.sequence.end_model import SequenceTagger  # noqa: E402

SETS = ("conll", "wikigold", "bc5cdr", "ncbi_disease", "laptopreview", "mit_restaurants",
        "ontonotes")
# WRENCH (Zhang et al. 2021), span F1 on test: best label model, best end model on weak labels
ANCHOR_LM = {"conll": 63.6, "wikigold": 59.1, "bc5cdr": 83.7, "ncbi_disease": 78.7,
             "laptopreview": 73.3, "mit_restaurants": 47.6, "ontonotes": 63.2}
ANCHOR_EM = {"conll": 54.4, "wikigold": 59.0, "bc5cdr": 76.1, "ncbi_disease": 74.3,
             "laptopreview": 60.8, "mit_restaurants": 41.0, "ontonotes": 69.8}
WHY = """Where the targets are missed, and why (measured in the run above):

* Label model: one default configuration (votes plus a per-tag word emission; a voted token
  may still be O; the vote restriction applied in the EM fit too), chosen by the mean dev span
  F1 over the seven sets (68.31 vs 67.65 for the previous votes-only default; the "LM dev"
  column). It beats token majority vote on every set but mit_restaurants (47.61 vs 47.67: a
  tie) and reaches the best WRENCH label model on all sets but conll, where it stays 0.35
  short of data programming (ontonotes on a different split: WRENCH's test split is not in
  the shared data).
* End model: the tagger is a BiLSTM-CRF with a character CNN (the SequenceTagger
  defaults), trained on the expected CRF likelihood of the label model's soft posteriors,
  on all training sentences for about 500k token updates, and since this run it validates,
  keeps and predicts with a moving average of its weights (``average=True``, chosen on dev:
  ncbi_disease 73.08 -> 73.77, laptopreview 63.66 -> 64.11 at 250k token updates). It
  reaches the WRENCH weak-label cell on conll (56.8 vs 54.4) and wikigold (60.2 vs 59.0) and
  misses laptopreview by 0.1 (60.71 vs 60.8), bc5cdr by 0.7 (75.4 vs 76.1), ncbi_disease by
  2.0 (72.3 vs 74.3), mit_restaurants (36.9 vs 41.0) and ontonotes (48.0 vs 69.8): 2 of 7.
  Against the previous run (the same tagger without the weight average): conll 57.8 -> 56.8,
  wikigold 60.2 -> 60.2, bc5cdr 76.0 -> 75.4, ncbi_disease 67.1 -> 72.3, laptopreview
  59.9 -> 60.7, mit_restaurants 32.1 -> 36.9, ontonotes 45.7 -> 48.0 (mean 57.0 -> 58.6). A
  second seed of the weak-label tagger (seed 1, run only to judge noise, after the default was
  fixed) gave laptopreview 61.3 and bc5cdr 75.1: the laptopreview miss is within seed noise.
* Tried on the dev splits after that run, not adopted (the defaults did not change; the
  table above is a rerun of all seven sets with the tree that adds the options below, and
  gives the same F1s and epochs as that run, only the times differ). Dev span F1 (valid
  gold; tagger on the label model's posteriors of 90% of train, seed 0, 500k token updates)
  of bc5cdr / ncbi_disease /
  laptopreview, mean: default (random batches) 76.66 / 75.51 / 64.65, 72.27. Length-sorted
  batches (``bucket=True``, about 1.7 times faster per epoch) with the time saved spent on
  850k token updates: 77.60 / 75.30 / 62.53, 71.81 (laptopreview stopped at epoch 9, best 3).
  The same batches with two seeds averaged (``ensemble=2``, 500k updates each, about 1.15
  times the time): 77.53 / 73.48 / 64.01, 71.67. Both help bc5cdr by about 0.9 and lose on
  the other two, so neither became the default; both stay as options. A larger tagger,
  longer training or more seeds at the default speed would not fit the benchmark's budget
  of about 25 minutes on two shared cores.
* Why the rest are missed: the tagger still under-learns. The label model's own test F1 (the
  tagger's targets) is 6 to 15 points above the tagger's on every set but wikigold (where the
  tagger is above it, 60.2 vs 59.3), and even trained on gold under the same budget the tagger
  stays far below WRENCH's gold cells on conll (76.5 vs 91.1), mit_restaurants (64.1 vs 79.2)
  and ontonotes (57.5 vs 77.6): a few CPU minutes per tagger (the "tagger s" column, on a
  shared machine) is a small training budget. mit_restaurants has only 4.6k unlabeled training
  tokens (its 500-sentence valid split) and a 50-sentence held-out set, a noisy stopping
  signal (it stopped at epoch 21 of 40, best 15); ontonotes (18 types, 37 tags) is the furthest
  from its cell, and WRENCH's ontonotes test split differs from ours (the last 1000 valid
  sentences)."""

# the budget of two shared CPU cores, in token updates per tagger: all training sentences,
# for about this many tokens in total (at least 6 and at most 40 epochs)
TAGGER_TOKEN_UPDATES = 500_000
MIN_EPOCHS, MAX_EPOCHS = 4, 40
TAGGER: dict[str, Any] = {"batch_size": 16, "lr": 5e-3, "patience": 5}


def set_budget(token_updates: int, min_epochs: int) -> None:
    """Change the tagger budget (``--token-updates``, ``--min-epochs``)."""
    global TAGGER_TOKEN_UPDATES, MIN_EPOCHS
    TAGGER_TOKEN_UPDATES, MIN_EPOCHS = token_updates, min_epochs


def tagger_epochs(n_tokens: int) -> int:
    """Epochs for ``n_tokens`` training tokens: about TAGGER_TOKEN_UPDATES token updates."""
    return int(np.clip(round(TAGGER_TOKEN_UPDATES / max(n_tokens, 1)), MIN_EPOCHS, MAX_EPOCHS))
ANCHOR_GOLD = {"conll": 91.1, "wikigold": 77.0, "bc5cdr": 87.0, "ncbi_disease": 80.3,
               "laptopreview": 68.1, "mit_restaurants": 79.2, "ontonotes": 77.6}


@dataclass
class Part:
    """Sentences of a split (or part of one) as flat token arrays."""

    L: np.ndarray
    Y: np.ndarray
    offsets: np.ndarray
    tokens: list[list[str]]


def _part(split: Part | SequenceSplit, sentences: np.ndarray) -> Part:
    off = split.offsets
    rows = np.concatenate([np.arange(off[s], off[s + 1]) for s in sentences]) \
        if sentences.size else np.zeros(0, np.int64)
    lengths = off[sentences + 1] - off[sentences]
    return Part(L=split.L[rows], Y=split.Y[rows],
                offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                tokens=[split.tokens[s] for s in sentences])


def _whole(split: SequenceSplit) -> Part:
    return Part(split.L, split.Y, split.offsets, split.tokens)


def load_set(name: str) -> tuple[Part, Part, Part, list[str], str, str]:
    """``(fit part, test part, dev part, tags, fit split name, test split name)``."""
    folder = SHARED_DATA / f"wrench_seq_{name}"
    if name == "ontonotes":
        valid = load_wrench_sequence(folder, "valid")
        idx = np.arange(valid.n_sentences)
        return (_part(valid, idx[:4000]), _part(valid, idx[4000:]), _part(valid, idx[3000:4000]),
                valid.tag_names, "valid[:4000]", "valid[4000:]")
    has_train = (folder / "train.json").is_file()
    fit_split = "train" if has_train else "valid"
    test = load_wrench_sequence(folder, "test")
    fit = _whole(load_wrench_sequence(folder, fit_split))
    dev = _whole(load_wrench_sequence(folder, "valid")) if has_train else fit
    return fit, _whole(test), dev, test.tag_names, fit_split, "test"


def run_set(name: str, end_model: bool, seed: int = 0, gold: bool = True) -> dict[str, object]:
    train, test, dev, tags, fit_split, eval_split = load_set(name)
    row: dict[str, object] = {"set": name, "fit on": fit_split, "scored on": eval_split,
                              "sentences": len(train.tokens)}
    mv = TokenMajorityVoter(tags, seed=seed).predict(test.L, test.offsets)
    row["MV"] = span_scores(test.Y, mv, test.offsets, tags).f1
    t0 = time.perf_counter()
    lm = SequenceLabelModel(tags, seed=seed).fit(train.L, train.offsets, train.tokens)
    lm_test = lm.predict(test.L, test.offsets, test.tokens)
    row["label model"] = span_scores(test.Y, lm_test, test.offsets, tags).f1
    row["lm time (s)"] = time.perf_counter() - t0
    row["LM dev"] = lm.score(dev.L, dev.offsets, dev.Y, dev.tokens).f1
    print(f"{name}: MV {row['MV']:.3f}  label model {row['label model']:.3f} "
          f"({row['lm time (s)']:.1f} s)", flush=True)
    if not end_model:
        return row
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train.tokens))
    n_hold = max(1, len(order) // 10)
    hold = np.sort(order[:n_hold])
    fit_idx = np.sort(order[n_hold:])
    part_fit, part_hold = _part(train, fit_idx), _part(train, hold)
    row["tagger sentences"] = len(fit_idx)
    n_epochs = tagger_epochs(int(part_fit.offsets[-1]))
    posterior = lm.predict_proba(part_fit.L, part_fit.offsets, part_fit.tokens)
    hold_weak = lm.predict(part_hold.L, part_hold.offsets, part_hold.tokens)
    t0 = time.perf_counter()
    weak = SequenceTagger(tags, seed=seed, n_epochs=n_epochs, **TAGGER).fit(
        part_fit.tokens, posterior, valid=(part_hold.tokens, hold_weak))
    row["end model (weak)"] = weak.score(test.tokens, test.Y).f1
    row["em time (s)"] = time.perf_counter() - t0
    row["epochs"] = f"{len(weak.history_)}/{weak.best_epoch_} of {n_epochs}"
    print(f"{name}: end model on label-model outputs {row['end model (weak)']:.3f} "
          f"({row['em time (s)']:.0f} s, {len(weak.history_)} epochs, best "
          f"{weak.best_epoch_})", flush=True)
    if not gold:
        return row
    on_gold = SequenceTagger(tags, seed=seed, n_epochs=n_epochs, **TAGGER).fit(
        part_fit.tokens, part_fit.Y, valid=(part_hold.tokens, part_hold.Y))
    row["end model (gold)"] = on_gold.score(test.tokens, test.Y).f1
    row["epochs"] = f"{row['epochs']}; {len(on_gold.history_)}/{on_gold.best_epoch_}"
    print(f"{name}: end model on gold {row['end model (gold)']:.3f}", flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--no-end-model", action="store_true")
    parser.add_argument("--no-gold", action="store_true",
                        help="skip the tagger trained on gold (the upper-bound column)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--save-rows", help="also write the per-set results to this json")
    parser.add_argument("--combine", nargs="+", metavar="JSON",
                        help="only print (and write) the table of rows saved by --save-rows "
                             "runs, e.g. two runs over disjoint --sets in parallel")
    parser.add_argument("--token-updates", type=int, default=TAGGER_TOKEN_UPDATES,
                        help="tagger budget in token updates (default %(default)s)")
    parser.add_argument("--min-epochs", type=int, default=MIN_EPOCHS,
                        help="fewest tagger epochs (default %(default)s)")
    args = parser.parse_args(argv)
    set_budget(args.token_updates, args.min_epochs)
    if args.combine:
        rows = [r for f in args.combine for r in json.loads(Path(f).read_text())]
        rows.sort(key=lambda r: SETS.index(str(r["set"])))
        report(rows, float(sum(float(r.get("total (s)", 0.0)) for r in rows)),
               write=not args.no_write and len(rows) == len(SETS), parts=len(args.combine))
        return
    torch.set_num_threads(1)
    names = [s for s in args.sets.split(",") if s]
    missing = [s for s in names if not (SHARED_DATA / f"wrench_seq_{s}").is_dir()]
    if missing:
        print(f"skipping: no shared data for {missing} under {SHARED_DATA}")
    names = [s for s in names if s not in missing]
    if not names:
        return
    t_all = time.perf_counter()
    rows = [run_set(s, end_model=not args.no_end_model, gold=not args.no_gold) for s in names]
    total = time.perf_counter() - t_all
    if rows:
        rows[0]["total (s)"] = total
    if args.save_rows:
        Path(args.save_rows).write_text(json.dumps(rows))
    report(rows, total, write=not args.no_write and not args.no_gold and len(names) == len(SETS))


def report(rows: list[dict[str, object]], total: float, write: bool, parts: int = 1) -> None:
    headers = ["set", "fit on", "scored on", "LM sentences", "tagger sentences", "token MV",
               "LM dev", "label model",
               "best WRENCH LM", "end model (weak)", "WRENCH end model (weak)",
               "end model (gold)", "WRENCH gold", "LM s", "tagger s (weak)",
               "epochs run/best (0-based) of max (weak; gold)"]
    table = []
    lm_wins = em_wins = 0
    for r in rows:
        s = str(r["set"])
        lm_f1 = 100 * float(r["label model"])  # type: ignore[arg-type]
        lm_wins += lm_f1 >= ANCHOR_LM[s]
        em = r.get("end model (weak)")
        em_f1 = None if em is None else 100 * float(em)  # type: ignore[arg-type]
        em_wins += em_f1 is not None and em_f1 >= ANCHOR_EM[s]
        gold = r.get("end model (gold)")
        table.append([s, r["fit on"], r["scored on"], r["sentences"],
                      r.get("tagger sentences", "–"),
                      f"{100 * float(r['MV']):.2f}",  # type: ignore[arg-type]
                      f"{100 * float(r['LM dev']):.2f}",  # type: ignore[arg-type]
                      f"{lm_f1:.2f}",
                      f"{ANCHOR_LM[s]:.1f}", "–" if em_f1 is None else f"{em_f1:.2f}",
                      f"{ANCHOR_EM[s]:.1f}",
                      "–" if gold is None else f"{100 * float(gold):.2f}",  # type: ignore[arg-type]
                      f"{ANCHOR_GOLD[s]:.1f}", f"{float(r['lm time (s)']):.1f}",  # type: ignore[arg-type]
                      "–" if "em time (s)" not in r else f"{float(r['em time (s)']):.0f}",  # type: ignore[arg-type]
                      r.get("epochs", "–")])
    md = markdown_table(headers, table)
    summary = (f"Label model >= best WRENCH label model on {lm_wins} of {len(rows)} sets; "
               f"end model on weak labels >= WRENCH's weak-label end model on {em_wins} of "
               f"{len(rows)}. Total time {total:.0f} s"
               + (f", summed over {parts} runs side by side" if parts > 1 else "")
               + f" ({machine_line()}, one thread per run).")
    print(md)
    print(summary)
    if not write:
        return
    write_section("ner", "## NER from weak sources (`benchmarks/ner.py`)\n\n"
                  "Span-level F1 (exact span and type, seqeval semantics) on the WRENCH "
                  "sequence sets; see the script's docstring for the protocol. The label "
                  "model is metal.sequence.SequenceLabelModel with its defaults; the end "
                  "model is metal.sequence.SequenceTagger with its defaults (wordllama "
                  "vectors, word embeddings, character CNN, shape features, BiLSTM-CRF, "
                  "moving average of the weights; sequences cut to at most 64 tokens; "
                  "all training sentences for about "
                  f"{TAGGER_TOKEN_UPDATES // 1000}k token updates, {MIN_EPOCHS} to "
                  f"{MAX_EPOCHS} epochs) trained on the label model's token posteriors. "
                  "Times are wall-clock seconds on the shared "
                  "machine (other jobs running), so only rough.\n\n"
                  + md + "\n\n" + summary + "\n\n" + WHY + "\n")


if __name__ == "__main__":
    main()

"""The ``metal ner`` subcommand: NER from weak sources on a WRENCH sequence folder.

``metal ner FOLDER`` fits :class:`~metal.sequence.SequenceLabelModel` on the votes (and words)
of ``--split`` (default: ``train``, else ``valid``), without its gold tags, and prints the span
F1 of token majority vote and of the label model on every split that has gold. With
``--tagger`` it also trains :class:`~metal.sequence.end_model.SequenceTagger` on the label
model's token posteriors (early-stopped on held-out training sentences against the label
model's own predictions: no gold) and scores it. ``--model-out`` / ``--tagger-out`` write the
fitted models (``.npz`` + JSON header, no pickle) and ``--tags-out`` the label model's tags of
the fitted split as JSON (one list of tag strings per sentence).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def add_parser(sub: Any) -> None:
    """Register ``metal ner`` on the subparsers ``sub`` of the ``metal`` command."""
    p = sub.add_parser(
        "ner", help="sequence label model (and tagger) on a WRENCH sequence folder",
        description="Fit the BIO hidden Markov label model on the token votes of a WRENCH "
        "sequence folder without its gold tags; report span F1 (exact span and type) of "
        "token majority vote and of the label model on the splits with gold; optionally "
        "train a BiLSTM tagger on the label model's posteriors.")
    p.add_argument("data", metavar="FOLDER", help="WRENCH sequence folder")
    p.add_argument("--split", default=None, choices=("train", "valid", "test"),
                   help="split to fit on (default: train if present, else valid)")
    p.add_argument("--o-is-vote", action="store_true",
                   help="read every source's O as a 'not an entity' vote (default: abstain)")
    p.add_argument("--tagger", action="store_true",
                   help="also train the sequence tagger on the label model's outputs")
    p.add_argument("--epochs", type=int, default=12, help="tagger epochs (default 12)")
    p.add_argument("--max-tokens", type=int, default=50_000,
                   help="tagger training tokens at most (default 50000)")
    p.add_argument("--vectors", default="wordllama", choices=("wordllama", "none"),
                   help="tagger's frozen word vectors (default wordllama, offline)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--model-out", metavar="FILE.npz", help="write the fitted label model")
    p.add_argument("--tagger-out", metavar="FILE.npz", help="write the fitted tagger")
    p.add_argument("--tags-out", metavar="FILE.json",
                   help="write the label model's tags of the fitted split")
    p.set_defaults(func=run)


def _sentences(split: Any, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    off = split.offsets
    rows = np.concatenate([np.arange(off[s], off[s + 1]) for s in idx]) if idx.size else \
        np.zeros(0, np.int64)
    lengths = off[idx + 1] - off[idx]
    return rows, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), \
        [split.tokens[s] for s in idx]


def run(args: argparse.Namespace) -> int:
    from metal.data.wrench_sequence import load_wrench_sequence, sequence_splits
    from metal.sequence import SequenceLabelModel, TokenMajorityVoter

    folder = Path(args.data)
    available = sequence_splits(folder)
    fit_split = args.split or ("train" if "train" in available else "valid")
    o_abstain = not args.o_is_vote
    fit = load_wrench_sequence(folder, fit_split, o_is_abstain=o_abstain)
    tags = fit.tag_names
    t0 = time.perf_counter()
    lm = SequenceLabelModel(tags, seed=args.seed).fit(fit.L, fit.offsets, fit.tokens)
    print(f"label model fitted on {fit_split} ({fit.n_sentences} sentences, {fit.n_tokens} "
          f"tokens, {fit.n_sources} sources) in {time.perf_counter() - t0:.1f} s, "
          f"{lm.n_iter_} EM iterations")
    scored = {}
    for name in available:
        part = fit if name == fit_split else load_wrench_sequence(folder, name,
                                                                   o_is_abstain=o_abstain)
        if not part.has_gold:
            continue
        mv = TokenMajorityVoter(tags, seed=args.seed).score(part.L, part.offsets, part.Y)
        ours = lm.score(part.L, part.offsets, part.Y, part.tokens)
        scored[name] = part
        print(f"{name}: span F1 token majority vote {mv.f1:.4f}, label model {ours.f1:.4f} "
              f"(P {ours.precision:.4f}, R {ours.recall:.4f})")
    if args.model_out:
        lm.save(args.model_out)
        print(f"wrote {args.model_out}")
    if args.tags_out:
        pred = lm.predict(fit.L, fit.offsets, fit.tokens)
        names = np.asarray(tags)[pred]
        out = [names[a:b].tolist() for a, b in zip(fit.offsets[:-1], fit.offsets[1:],
                                                   strict=True)]
        Path(args.tags_out).write_text(json.dumps(out))
        print(f"wrote {args.tags_out}")
    if args.tagger or args.tagger_out:
        from metal.sequence.end_model import SequenceTagger

        rng = np.random.default_rng(args.seed)
        order = rng.permutation(fit.n_sentences)
        n_hold = max(1, order.size // 10)
        rest = order[n_hold:]
        sizes = np.cumsum(fit.lengths[rest])
        train_idx = np.sort(rest[sizes <= max(args.max_tokens, int(sizes[0]))])
        rows, off, tokens = _sentences(fit, train_idx)
        h_rows, h_off, h_tokens = _sentences(fit, np.sort(order[:n_hold]))
        posterior = lm.predict_proba(fit.L[rows], off, tokens)
        held = lm.predict(fit.L[h_rows], h_off, h_tokens)
        t0 = time.perf_counter()
        tagger = SequenceTagger(tags, vectors=args.vectors, seed=args.seed,
                                n_epochs=args.epochs).fit(tokens, posterior,
                                                          valid=(h_tokens, held))
        print(f"tagger trained on {len(tokens)} sentences ({int(off[-1])} tokens) in "
              f"{time.perf_counter() - t0:.0f} s, best epoch {tagger.best_epoch_}")
        for name, part in scored.items():
            print(f"{name}: span F1 tagger {tagger.score(part.tokens, part.Y).f1:.4f}")
        if args.tagger_out:
            tagger.save(args.tagger_out)
            print(f"wrote {args.tagger_out}")
    return 0

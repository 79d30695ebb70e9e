"""Multi-task: TREC questions at two granularities (6 coarse, 50 fine classes).

    python examples/trec_hierarchy.py

Coarse sources are WRENCH's 68 TREC labeling functions, fine sources are question-word and
head-noun regexes (``benchmarks/hierarchy_sources/trec.py``). The multi-task label model fits
both levels jointly over the hierarchy's feasible (coarse, fine) pairs; a multi-task end model
(shared trunk, one head per level) learns from the argmax of its per-level probabilities and
decodes jointly, so its (coarse, fine) predictions always agree.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from hierarchy_sources import imply_parent_votes, load_trec  # noqa: E402

from metal import MultiTaskLabelModel, TaskHierarchy  # noqa: E402
from metal.end_model import DenseInput, MultiTaskEndModel, SparseInput  # noqa: E402
from metal.end_model.text import ConcatInput, embed_texts  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    if not (DATA / "trec_coarse_fine").exists():
        print(f"no TREC data under {DATA}")
        return
    ds = load_trec(DATA)
    h = TaskHierarchy({"coarse": 6, "fine": 50},
                      parents={"fine": ("coarse", [int(c) for c in ds.child_to_parent])})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        label_model = MultiTaskLabelModel(task_graph=h, seed=0).fit(ds.L_train)
    coarse_p, fine_p = label_model.predict_proba(ds.L_train)

    # 500 train questions keep their gold labels for early stopping; the rest train
    rng = np.random.default_rng(0)
    valid = np.zeros(len(ds.texts_train), dtype=bool)
    valid[rng.choice(valid.size, 500, replace=False)] = True
    texts = ds.texts_train.tolist()
    tr_texts = [t for t, v in zip(texts, valid, strict=True) if not v]
    va_texts = [t for t, v in zip(texts, valid, strict=True) if v]
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(tr_texts)
    X_train, X_valid, X_test = ({"tfidf": tfidf.transform(t), "emb": embed_texts(t)}
                                for t in (tr_texts, va_texts, ds.texts_test.tolist()))
    inputs = ConcatInput({"tfidf": SparseInput(len(tfidf.vocabulary_), 64),
                          "emb": DenseInput(256, standardize=False)})
    # the fine level is the harder one: its loss counts twice and the best epoch is chosen on
    # its validation accuracy
    end_model = MultiTaskEndModel(h, input_module=inputs, hidden=(128,), dropout=0.5, lr=3e-3,
                                  n_epochs=30, patience=6, task_weights={"fine": 2.0},
                                  valid_metric="fine_accuracy", seed=0)
    covered = imply_parent_votes(ds.L_train, ds.child_to_parent)[~valid]  # a fine vote counts
    # the argmax of the marginals: the 50 fine marginals are flat (benchmarks/end_model.py
    # selects hard targets on its valid questions)
    end_model.fit(X_train, [coarse_p[~valid].argmax(1), fine_p[~valid].argmax(1)], L=covered,
                  X_valid=X_valid, Y_valid=ds.Y_train[valid])

    lm = label_model.score(ds.L_test, ds.Y_test)
    em = end_model.score(X_test, ds.Y_test)
    for level in ("coarse", "fine"):
        print(f"{level:6s}: label model alone {lm[level]['accuracy']:.3f}, "
              f"multi-task end model {em[level]['accuracy']:.3f}")
    assert h.is_feasible(end_model.predict(X_test)).all()


if __name__ == "__main__":
    main()

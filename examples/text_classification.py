"""Sources -> label model -> end model -> test scores on a WRENCH text set (default youtube).

    python examples/text_classification.py [--data ../shared/data/wrench_youtube]

The WRENCH folder holds each labeling source's votes on every comment. The label model turns
the train votes into probabilistic labels without any gold label; an end model on offline text
features (TF-IDF through a sparse first layer + wordllama sentence embeddings) learns from them
and generalises to comments no source covers. The valid split's gold labels are used for early
stopping only. Needs scikit-learn (TF-IDF) and wordllama.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer

from metal import LabelModel, load_wrench
from metal.end_model import DenseInput, EndModel, SparseInput
from metal.end_model.text import ConcatInput, embed_texts

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wrench_youtube"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT, help="a WRENCH text folder")
    parser.add_argument("--metric", default="accuracy", help="accuracy (default) or f1")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"no data at {args.data}; pass --data PATH_TO_WRENCH_FOLDER")
        return
    train, valid, test = (load_wrench(args.data, s) for s in ("train", "valid", "test"))
    k = train.cardinality

    # 1. label model: probabilistic labels from the sources' votes, no gold labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        label_model = LabelModel(cardinality=k, seed=0).fit(train.L)
    probs = label_model.predict_proba(train.L)

    # 2. features: TF-IDF (fit on the unlabeled train texts) + wordllama sentence embeddings
    texts = [[e["text"] for e in s.examples] for s in (train, valid, test)]
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                            max_features=10000).fit(texts[0])
    X_train, X_valid, X_test = ({"tfidf": tfidf.transform(t), "emb": embed_texts(t)}
                                for t in texts)
    inputs = ConcatInput({"tfidf": SparseInput(len(tfidf.vocabulary_), 64),
                          "emb": DenseInput(256, standardize=False)})

    # 3. end model on the probabilistic labels (rows without any vote are masked via L)
    end_model = EndModel(k, input_module=inputs, hidden=(128,), dropout=0.5, lr=3e-4,
                         n_epochs=30, patience=6, valid_metric=args.metric, seed=0)
    end_model.fit(X_train, probs, L=train.L, X_valid=X_valid, Y_valid=valid.Y)

    # 4. test scores: the end model also labels comments the sources abstain on
    print(f"{train.name}: {train.n_rows} train rows, {train.n_sources} sources")
    print("label model alone:", label_model.score(test.L, test.Y, [args.metric]))
    print("end model:        ", end_model.score(X_test, test.Y, [args.metric]),
          f"(best epoch {end_model.best_epoch_})")
    end_model.save("end_model_text.npz")
    end_model.plot_history("end_model_text_curves.png")


if __name__ == "__main__":
    main()

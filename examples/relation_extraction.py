"""Sources -> label model -> end model -> test scores on a WRENCH relation set (semeval).

    python examples/relation_extraction.py [--data ../shared/data/wrench_semeval] [--bilstm]

Each example is a sentence with two entity spans (``span1``, ``span2`` in characters). The end
model reads, by default, wordllama embeddings of entity 1, entity 2, the words between them and
the whole sentence, plus TF-IDF of the words between the entities. ``--bilstm`` uses the token
encoder instead: wordllama token embeddings -> BiLSTM -> mean-pooled over each entity span.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer

from metal import LabelModel, load_wrench
from metal.end_model import DenseInput, EndModel, SparseInput
from metal.end_model.text import (
    ConcatInput,
    SpanEncoder,
    char_spans,
    compact_vocabulary,
    encode_tokens,
    relation_embeddings,
    relation_segments,
)

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wrench_semeval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT, help="a WRENCH relation folder")
    parser.add_argument("--bilstm", action="store_true", help="BiLSTM span encoder")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"no data at {args.data}; pass --data PATH_TO_WRENCH_FOLDER")
        return
    train, valid, test = (load_wrench(args.data, s) for s in ("train", "valid", "test"))
    k = train.cardinality
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        label_model = LabelModel(cardinality=k, seed=0).fit(train.L)
    probs = label_model.predict_proba(train.L)

    texts = [[e["text"] for e in s.examples] for s in (train, valid, test)]
    spans = [char_spans(s.examples) for s in (train, valid, test)]
    if args.bilstm:
        encoded, pretrained = compact_vocabulary(
            *(encode_tokens(t, s, max_len=64) for t, s in zip(texts, spans, strict=True)))
        X_train, X_valid, X_test = encoded
        inputs = SpanEncoder(pretrained.shape[0], 256, hidden=64, n_spans=2,
                             pretrained=pretrained)
        hidden: tuple[int, ...] = ()
    else:
        between = [relation_segments(t, s)["between"] for t, s in zip(texts, spans, strict=True)]
        tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(between[0])
        X_train, X_valid, X_test = (
            {"tfidf": tfidf.transform(b), "emb": relation_embeddings(t, s)}
            for b, t, s in zip(between, texts, spans, strict=True))
        inputs = ConcatInput({"tfidf": SparseInput(len(tfidf.vocabulary_), 64),
                              "emb": DenseInput(4 * 256 + 1, standardize=False)})
        hidden = (128,)
    end_model = EndModel(k, input_module=inputs, hidden=hidden, dropout=0.5, lr=3e-4 if hidden
                         else 2e-3, n_epochs=30, patience=6, seed=0)
    end_model.fit(X_train, probs, L=train.L, X_valid=X_valid, Y_valid=valid.Y)
    print(f"{train.name}: {train.n_rows} train sentences, {train.n_sources} sources, {k} "
          "relation classes")
    print("label model alone:", label_model.score(test.L, test.Y))
    print("end model:        ", end_model.score(X_test, test.Y),
          f"(best epoch {end_model.best_epoch_})")


if __name__ == "__main__":
    main()

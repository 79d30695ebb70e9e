"""Text features (wordllama, entity spans) and the span / concatenation input modules."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from metal.end_model import DenseInput, EndModel, SparseInput
from metal.errors import ConfigError

text = pytest.importorskip("metal.end_model.text")
pytest.importorskip("wordllama")


def test_sentence_embeddings_are_256d_and_normalised() -> None:
    E = text.embed_texts(["free cash now", "", "see you at lunch"])
    assert E.shape == (3, 256) and E.dtype == np.float32
    assert np.allclose(np.linalg.norm(E[[0, 2]], axis=1), 1, atol=1e-4)
    assert not E[1].any()  # empty text -> zero vector


def test_relation_segments_and_markers() -> None:
    s = "Alice married Bob in Paris ."
    spans = np.array([[[14, 17], [0, 5]]])  # entity 1 = Bob, entity 2 = Alice
    seg = text.relation_segments([s], spans)
    assert seg["e1"] == ["Bob"] and seg["e2"] == ["Alice"]
    assert seg["between"] == [" married "] and seg["after"] == [" in Paris ."]
    marked = text.marked_text([s], spans)[0]
    assert marked.index("E2START") < marked.index("Alice") < marked.index("E2END")
    assert marked.index("E1START") < marked.index("Bob") < marked.index("E1END")
    assert text.relation_embeddings([s], spans).shape == (1, 4 * 256 + 1)


def test_encode_tokens_maps_character_spans_to_tokens() -> None:
    texts = ["The cat sat on the mat", "Paris is the capital of France"]
    spans = np.array([[[4, 7], [19, 22]], [[0, 5], [24, 30]]])
    enc = text.encode_tokens(texts, spans)
    tokens, tok_spans = enc["tokens"], enc["spans"]
    assert tokens.shape[0] == 2 and tok_spans.shape == (2, 2, 2)
    wl = text.load_wordllama()
    for r, t in enumerate(texts):
        e = wl.tokenize([t])[0]
        for s in range(2):
            a, b = tok_spans[r, s]
            covered = "".join(e.tokens[a:b]).replace("▁", " ").replace("Ġ", " ").strip()
            target = t[spans[r, s, 0]:spans[r, s, 1]]
            assert target in covered or covered in target


def test_encode_tokens_moves_window_to_the_entities() -> None:
    long = " ".join(["word"] * 200) + " Alice met Bob"
    start = long.index("Alice")
    spans = np.array([[[start, start + 5], [start + 10, start + 13]]])
    enc = text.encode_tokens([long], spans, max_len=16)
    a, b = enc["spans"][0, 0]
    assert enc["tokens"].shape == (1, 16) and 0 <= a < b <= 16


def test_compact_vocabulary_and_unknown_ids() -> None:
    train = text.encode_tokens(["a cat", "a dog"])
    test = text.encode_tokens(["a zebra"])
    (tr, te), pretrained = text.compact_vocabulary(train, test)
    V = pretrained.shape[0]
    assert tr["tokens"].max() < V - 1  # training ids are 1..V-2
    assert (te["tokens"] == V - 1).any()  # unseen -> the unknown id
    assert not pretrained[0].any() and not pretrained[-1].any()


def test_span_encoder_learns_which_entity_matters() -> None:
    """The label is the first entity's word (one of two); the span pooling must find it."""
    rng = np.random.default_rng(0)
    words = ["apple", "stone", "river", "cloud"]
    texts, spans, y = [], [], []
    for _ in range(200):
        w1, w2, filler = rng.choice(words, 2), rng.integers(0, 2), rng.choice(words, 3)
        s = f"{filler[0]} {w1[0]} {filler[1]} {w1[1]} {filler[2]}"
        i1 = s.index(f" {w1[0]} ") + 1
        i2 = s.index(f" {w1[1]} ", i1 + len(w1[0])) + 1
        texts.append(s)
        spans.append([[i1, i1 + len(w1[0])], [i2, i2 + len(w1[1])]])
        y.append(int(w1[0] in ("apple", "stone")))
        del w2
    enc = text.encode_tokens(texts, np.array(spans))
    (enc,), pretrained = text.compact_vocabulary(enc)
    module = text.SpanEncoder(pretrained.shape[0], 256, hidden=8, n_spans=2,
                              pretrained=pretrained)
    model = EndModel(2, input_module=module, hidden=(), n_epochs=6, lr=0.02, patience=None)
    model.fit({k: v[:150] for k, v in enc.items()}, np.array(y[:150]))
    assert model.score({k: v[150:] for k, v in enc.items()}, np.array(y[150:]))["accuracy"] > 0.9
    frozen = model.network_.input_module.embedding.weight
    assert torch.allclose(frozen, torch.from_numpy(pretrained))  # freeze=True kept them


def test_concat_input_and_save_load(tmp_path) -> None:
    rng = np.random.default_rng(1)
    n = 200
    y = rng.integers(0, 2, n)
    dense = rng.normal(size=(n, 3)).astype(np.float32)
    dense[:, 0] += 2 * y
    words = sp.csr_matrix((rng.random((n, 50)) < 0.05).astype(np.float32))
    X = {"words": words, "dense": dense}
    module = text.ConcatInput({"words": SparseInput(50, 8), "dense": DenseInput(3)})
    assert module.out_features == 11
    model = EndModel(2, input_module=module, hidden=(8,), n_epochs=10, lr=0.01,
                     patience=None).fit(X, y)
    assert model.score(X, y)["accuracy"] > 0.8
    model.save(tmp_path / "concat.npz")
    back = EndModel.load(tmp_path / "concat.npz")
    assert np.array_equal(back.predict_proba(X), model.predict_proba(X))


def test_span_encoder_save_load(tmp_path) -> None:
    enc = text.encode_tokens(["one two three", "four five six"], np.array([[[0, 3], [8, 13]],
                                                                         [[0, 4], [10, 13]]]))
    (enc,), pretrained = text.compact_vocabulary(enc)
    module = text.SpanEncoder(pretrained.shape[0], 256, hidden=4, pretrained=pretrained)
    model = EndModel(2, input_module=module, hidden=(), n_epochs=1, patience=None)
    model.fit(enc, np.array([0, 1]))
    model.save(tmp_path / "span.npz")
    back = EndModel.load(tmp_path / "span.npz")
    assert np.allclose(back.predict_proba(enc), model.predict_proba(enc))


def test_bad_pretrained_shape() -> None:
    with pytest.raises(ConfigError, match="pretrained"):
        text.SpanEncoder(10, 8, pretrained=np.zeros((9, 8)))

"""Sequence (NER) layer on small generated data: loading, abstain conventions, spans, metrics,
decoding and the label models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metal.data.wrench import load_wrench
from metal.data.wrench_sequence import load_wrench_sequence
from metal.errors import ConfigError, LabelMatrixError, NotFittedError, WrenchFormatError
from metal.sequence import (
    SequenceLabelModel,
    TagScheme,
    TokenMajorityVoter,
    extract_spans,
    span_scores,
    spans_to_tags,
)
from metal.sequence.inference import forward_backward, viterbi
from metal.sequence.label_model import vote_support

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _write_seq(folder: Path) -> None:
    rows = {
        "0": {"data": {"text": ["Ann", "Lee", "left", "Paris"]},
              "label": ["B-PER", "I-PER", "O", "B-LOC"],
              "weak_labels": [["B-PER", "O", "B-LOC"], ["I-PER", "O", "O"], ["O", "O", "O"],
                              ["B-LOC", "B-LOC", "O"]]},
        "1": {"data": {"text": ["Rome"]}, "label": ["B-LOC"],
              "weak_labels": [["O", "B-LOC", "O"]]},
    }
    (folder / "train.json").write_text(json.dumps(rows))
    (folder / "label.json").write_text(json.dumps(dict(enumerate(TAGS))))
    (folder / "meta.json").write_text(json.dumps({"lf": ["dict", "gaz", "noisy"]}))


# ---------------------------------------------------------------------------- loading
def test_token_label_matrix_construction(tmp_path: Path) -> None:
    _write_seq(tmp_path)
    s = load_wrench_sequence(tmp_path, "train")
    assert s.L.tolist() == [[1, -1, 3], [2, -1, -1], [-1, -1, -1], [3, 3, -1], [-1, 3, -1]]
    assert s.Y.tolist() == [1, 2, 0, 3, 3]
    assert s.offsets.tolist() == [0, 4, 5]
    assert s.tokens == [["Ann", "Lee", "left", "Paris"], ["Rome"]]
    assert s.source_names == ["dict", "gaz", "noisy"]
    assert s.tag_names == TAGS and s.n_sentences == 2 and s.cardinality == 5
    assert s.o_is_abstain.tolist() == [True, True, True]


def test_abstain_convention_is_switchable_per_source(tmp_path: Path) -> None:
    _write_seq(tmp_path)
    all_votes = load_wrench_sequence(tmp_path, o_is_abstain=False)
    assert (all_votes.L >= 0).all()  # every O is a vote for class 0
    mixed = load_wrench_sequence(tmp_path, o_is_abstain=[False, True, True])
    assert mixed.L[:, 0].tolist() == [1, 2, 0, 3, 0]
    assert mixed.L[:, 1].tolist() == [-1, -1, -1, 3, 3]
    with pytest.raises(WrenchFormatError, match="one bool per source"):
        load_wrench_sequence(tmp_path, o_is_abstain=[True, False])


def test_format_errors_name_the_other_loader(tmp_path: Path) -> None:
    _write_seq(tmp_path)
    with pytest.raises(WrenchFormatError, match="load_wrench_sequence"):
        load_wrench(tmp_path, "train")
    cls = tmp_path / "cls"
    cls.mkdir()
    (cls / "train.json").write_text(json.dumps(
        {"0": {"label": 1, "weak_labels": [1, -1], "data": {"text": "win"}}}))
    (cls / "label.json").write_text(json.dumps({"0": "ham", "1": "spam"}))
    with pytest.raises(WrenchFormatError, match="load_wrench"):
        load_wrench_sequence(cls, "train")
    with pytest.raises(WrenchFormatError, match="no test.json"):
        load_wrench_sequence(tmp_path, "test")


def test_unknown_tag_is_reported(tmp_path: Path) -> None:
    _write_seq(tmp_path)
    (tmp_path / "label.json").write_text(json.dumps(dict(enumerate(TAGS[:3]))))
    with pytest.raises(WrenchFormatError, match="B-LOC"):
        load_wrench_sequence(tmp_path)


# ---------------------------------------------------------------------------- spans, metrics
def test_span_extraction_follows_conlleval() -> None:
    s = TagScheme.from_tags(TAGS)
    # B-PER I-PER | I-LOC (starts a span) | B-LOC B-LOC (two spans) | I-PER after B-LOC (new)
    tags = np.array([1, 2, 0, 4, 3, 3, 2])
    sp = extract_spans(tags, np.array([0, 7]), s)
    assert sp.start.tolist() == [0, 3, 4, 5, 6]
    assert sp.end.tolist() == [2, 4, 5, 6, 7]
    assert sp.type.tolist() == [0, 1, 1, 1, 0]
    # a span never crosses a sentence boundary
    sp2 = extract_spans(np.array([1, 2, 2]), np.array([0, 2, 3]), s)
    assert sp2.start.tolist() == [0, 2] and sp2.end.tolist() == [2, 3]
    assert spans_to_tags(sp, 7, s).tolist() == [1, 2, 0, 3, 3, 3, 1]
    assert len(extract_spans(np.zeros(4, dtype=np.int64), np.array([0, 4]), s)) == 0
    assert span_scores([0, 0], [0, 0], [0, 2], TAGS).f1 == 0.0


def test_span_f1_hand_computed() -> None:
    # gold: PER[0:2], LOC[3:4] | LOC[0:1] ; pred: PER[0:1] (boundary wrong), LOC[3:4] | LOC[0:1],
    # PER[1:2] (spurious)
    gold = [1, 2, 0, 3, 3, 0]
    pred = [1, 0, 0, 3, 3, 1]
    s = span_scores(gold, pred, [0, 4, 6], TAGS)
    assert (s.n_true, s.n_pred, s.n_correct) == (3, 4, 2)
    assert s.precision == pytest.approx(2 / 4)
    assert s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s.per_type["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1.0}
    assert s.per_type["LOC"]["f1"] == pytest.approx(1.0)
    assert s.exact_match == 0.0  # both sentences have an error


def test_span_f1_matches_seqeval_on_random_tags() -> None:
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(0)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(1, 12, size=60))])
    n = int(offsets[-1])
    gold, pred = rng.integers(0, 5, n), rng.integers(0, 5, n)
    names = np.array(TAGS)
    as_lists = [[list(names[y[a:b]]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
                for y in (gold, pred)]
    ours = span_scores(gold, pred, offsets, TAGS)
    assert ours.f1 == pytest.approx(seqeval.f1_score(*as_lists))
    assert ours.precision == pytest.approx(seqeval.precision_score(*as_lists))
    assert ours.recall == pytest.approx(seqeval.recall_score(*as_lists))


def test_metric_input_errors() -> None:
    with pytest.raises(LabelMatrixError, match="offsets"):
        span_scores([0, 1], [0, 1], [0, 3], TAGS)
    with pytest.raises(LabelMatrixError, match="Score only sentences with gold"):
        span_scores([-1, 1], [0, 1], [0, 2], TAGS)
    with pytest.raises(ConfigError, match="BIOES"):
        TagScheme.from_tags(["O", "S-PER"])


# ---------------------------------------------------------------------------- decoding
def _is_valid_bio(tags: np.ndarray, offsets: np.ndarray, scheme: TagScheme) -> bool:
    ok_t, ok_s = scheme.allowed_transitions(), scheme.allowed_starts()
    first = np.zeros(tags.size, dtype=bool)
    first[offsets[:-1][np.diff(offsets) > 0]] = True
    prev = np.concatenate([[0], tags[:-1]])
    return bool(ok_s[tags[first]].all() and ok_t[prev[~first], tags[~first]].all())


def test_viterbi_is_bio_valid_and_exact() -> None:
    scheme = TagScheme.from_tags(TAGS)
    rng = np.random.default_rng(1)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 9, size=40))])
    n = int(offsets[-1])
    score = rng.normal(size=(n, 5))
    score[:, 2] += 2.0  # I-PER is the per-token favourite: naive argmax is invalid
    log_start = np.where(scheme.allowed_starts(), 0.0, -np.inf)
    log_trans = np.where(scheme.allowed_transitions(), 0.0, -np.inf)
    path = viterbi(score, offsets, log_start, log_trans, max_cells=37)  # many batches
    assert not _is_valid_bio(score.argmax(1), offsets, scheme)
    assert _is_valid_bio(path, offsets, scheme)
    # exact: brute force on the short sentences
    import itertools
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        if 0 < b - a <= 4:
            best = max(
                (seq for seq in itertools.product(range(5), repeat=int(b - a))
                 if _is_valid_bio(np.array(seq), np.array([0, b - a]), scheme)),
                key=lambda seq: score[np.arange(a, b), list(seq)].sum())
            assert path[a:b].tolist() == list(best)


def test_forward_backward_matches_brute_force() -> None:
    rng = np.random.default_rng(2)
    k = 3
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k)
    offsets = np.array([0, 3, 3, 5])
    log_emit = rng.normal(size=(5, k))
    gamma, s_counts, t_counts, ll = forward_backward(log_emit, offsets, start, trans,
                                                     max_cells=4)
    import itertools
    total_ll = 0.0
    t_brute = np.zeros((k, k))
    for a, b in ((0, 3), (3, 5)):
        seqs = list(itertools.product(range(k), repeat=b - a))
        w = np.array([start[s[0]] * np.prod([trans[s[i], s[i + 1]] for i in range(len(s) - 1)])
                      * np.exp(log_emit[np.arange(a, b), list(s)].sum()) for s in seqs])
        total_ll += np.log(w.sum())
        post = w / w.sum()
        for i in range(a, b):
            marg = np.array([post[[s[i - a] == c for s in seqs]].sum() for c in range(k)])
            np.testing.assert_allclose(gamma[i], marg, atol=1e-10)
        for p, s in zip(post, seqs, strict=True):
            for i in range(len(s) - 1):
                t_brute[s[i], s[i + 1]] += p
    assert ll == pytest.approx(total_ll)
    np.testing.assert_allclose(t_counts, t_brute, atol=1e-10)
    np.testing.assert_allclose(s_counts, gamma[[0, 3]].sum(0), atol=1e-12)


# ---------------------------------------------------------------------------- label models
def _generated_ner(n_sent: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sentences with PER/LOC spans; three dictionary-like sources that miss entities, confuse
    types and split spans, and one noisy source that fires on random tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 12, size=n_sent)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    Y = np.zeros(n, dtype=np.int64)
    starts = offsets[:-1] + rng.integers(0, 3, size=n_sent)
    ends = np.minimum(starts + rng.integers(1, 4, size=n_sent), offsets[1:])
    types = rng.integers(0, 2, size=n_sent)
    for a, b, t in zip(starts, ends, types, strict=True):
        Y[a] = 1 + 2 * t
        Y[a + 1:b] = 2 + 2 * t
    L = np.full((n, 4), -1, dtype=np.int64)
    ent = Y > 0
    for j, (recall, confuse) in enumerate(((0.7, 0.05), (0.6, 0.1), (0.5, 0.3))):
        fire = ent & (rng.random(n) < recall)
        vote = Y.copy()
        swap = fire & (rng.random(n) < confuse)
        vote[swap] = np.where(vote[swap] <= 2, vote[swap] + 2, vote[swap] - 2)
        split = fire & (vote % 2 == 0) & (rng.random(n) < 0.3)  # I- read as B-
        vote[split] -= 1
        L[fire, j] = vote[fire]
    noise = rng.random(n) < 0.05
    L[noise, 3] = rng.integers(1, 5, size=int(noise.sum()))
    return L, Y, offsets


def test_sequence_label_model_beats_token_majority_vote() -> None:
    L, Y, offsets = _generated_ner(600, seed=0)
    mv = TokenMajorityVoter(TAGS).score(L, offsets, Y).f1
    model = SequenceLabelModel(TAGS, seed=0).fit(L, offsets)
    ours = model.score(L, offsets, Y).f1
    assert ours > mv + 0.03, (ours, mv)
    pred = model.predict(L, offsets)
    assert _is_valid_bio(pred, offsets, model.scheme_)
    proba = model.predict_proba(L, offsets)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    # votes decide where an entity may be: unvoted tokens are O, voted ones take a voted
    # type or O (outside_where_voted)
    support = vote_support(L, model.scheme_)
    support[:, model.scheme_.outside] = True
    assert support[np.arange(L.shape[0]), pred].all()
    strict = SequenceLabelModel(TAGS, outside_where_voted=False).fit(L, offsets)
    assert vote_support(L, strict.scheme_)[np.arange(L.shape[0]),
                                           strict.predict(L, offsets)].all()
    assert np.all(np.diff(model.loglik_) > -1e-8)  # EM never decreases the likelihood


def test_marginal_decoding_and_persistence(tmp_path: Path) -> None:
    L, Y, offsets = _generated_ner(200, seed=1)
    model = SequenceLabelModel(TAGS, decode="marginal", n_iter=10).fit(L, offsets)
    path = tmp_path / "seq.npz"
    model.save(str(path))
    again = SequenceLabelModel.load(str(path))
    np.testing.assert_array_equal(again.predict(L, offsets), model.predict(L, offsets))
    np.testing.assert_allclose(again.predict_proba(L, offsets), model.predict_proba(L, offsets))


def _with_words(L: np.ndarray, Y: np.ndarray, offsets: np.ndarray, seed: int
                ) -> tuple[np.ndarray, list[list[str]]]:
    """Words for the generated sentences, plus a source that votes B-PER on most PER starts
    and on a fifth of the tokens "the"."""
    rng = np.random.default_rng(seed)
    names = np.array([[f"person{i}" for i in range(30)], [f"place{i}" for i in range(30)]])
    filler = np.array(["the", "went", "to", "a", "of"])
    words = np.where(Y > 0, names[(Y - 1) // 2, rng.integers(0, 30, Y.size)],
                     filler[rng.integers(0, 5, Y.size)])
    extra = np.full((Y.size, 1), -1, dtype=np.int64)
    extra[(words == "the") & (rng.random(Y.size) < 0.2), 0] = 1
    extra[(Y == 1) & (rng.random(Y.size) < 0.8), 0] = 1
    tokens = [words[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return np.hstack([L, extra]), tokens


def test_word_emission_fits_persists_and_needs_the_tokens(tmp_path: Path) -> None:
    L, Y, offsets = _generated_ner(400, seed=4)
    L, tokens = _with_words(L, Y, offsets, seed=4)
    the = (L[:, -1] >= 0) & np.asarray([w == "the" for sent in tokens for w in sent])
    votes_only = SequenceLabelModel(TAGS, word_emission=False).fit(L, offsets, tokens)
    with_words = SequenceLabelModel(TAGS).fit(L, offsets, tokens)
    assert with_words.word_log_emission_ is not None and votes_only.vocab_ is None
    pred = with_words.predict(L, offsets, tokens)
    # "the" is never an entity although a source votes B-PER on it; names keep their type
    assert (pred[the & (Y == 0)] == 0).mean() > 0.95
    assert with_words.score(L, offsets, Y, tokens).f1 > votes_only.score(L, offsets, Y).f1
    with pytest.raises(LabelMatrixError, match="tokens"):
        with_words.predict(L, offsets)
    with pytest.raises(LabelMatrixError, match="rows"):
        with_words.predict(L, offsets, tokens[:-1])
    path = tmp_path / "words.npz"
    with_words.save(str(path))
    again = SequenceLabelModel.load(str(path))
    np.testing.assert_array_equal(again.predict(L, offsets, tokens), pred)


def test_label_model_errors() -> None:
    L, _, offsets = _generated_ner(10, seed=2)
    with pytest.raises(NotFittedError):
        SequenceLabelModel(TAGS).predict(L, offsets)
    with pytest.raises(LabelMatrixError, match="tag index"):
        SequenceLabelModel(TAGS).fit(L + 5, offsets)
    with pytest.raises(ConfigError, match="decode"):
        SequenceLabelModel(TAGS, decode="beam").fit(L, offsets)
    with pytest.raises(LabelMatrixError, match="offsets"):
        SequenceLabelModel(TAGS).fit(L, offsets[:-1])


# ---------------------------------------------------------------------------- tagger
def test_tagger_learns_from_soft_labels_and_decodes_valid_bio() -> None:
    pytest.importorskip("torch")
    from metal.sequence.end_model import SequenceTagger

    rng = np.random.default_rng(3)
    names, places, filler = ["ann", "bob", "cy"], ["rome", "oslo"], ["went", "to", "the", "x"]
    tokens: list[list[str]] = []
    tags: list[int] = []
    for _ in range(80):
        person, place = rng.choice(names), rng.choice(places)
        sent = [person.title(), "Smith", *rng.choice(filler, 2), place.title()]
        tokens.append(sent)
        tags += [1, 2, 0, 0, 3]
    Y = np.asarray(tags)
    soft = np.full((Y.size, 5), 0.05)
    soft[np.arange(Y.size), Y] = 0.8  # soft targets whose argmax is the truth
    # 10 epochs: the default weight average lags the last steps by about an epoch
    tagger = SequenceTagger(TAGS, vectors="none", hidden=8, word_dim=8, n_epochs=10,
                            lr=2e-2, batch_size=8, patience=None,
                            seed=0).fit(tokens[:60], soft[: 60 * 5])
    pred = tagger.predict(tokens[60:])
    offsets = np.arange(0, 20 * 5 + 1, 5)
    assert _is_valid_bio(pred, offsets, tagger.scheme_)
    assert tagger.score(tokens[60:], Y[300:]).f1 > 0.9
    assert len(tagger.history_) == 10
    with pytest.raises(LabelMatrixError, match="expected"):
        SequenceTagger(TAGS, vectors="none").fit(tokens[:10], soft[:7])
    with pytest.raises(ConfigError, match="max_length"):
        SequenceTagger(TAGS, vectors="none", max_length=0).fit(tokens[:10], soft[:50])


def test_split_long_keeps_token_order() -> None:
    from metal.sequence.end_model import split_long

    sents = [["a", "b", ".", "c", "d", "e", "f", "g", "."], ["x", "y"]]
    pieces = split_long(sents, 4)
    assert pieces == [["a", "b", "."], ["c", "d", "e", "f"], ["g", "."], ["x", "y"]]
    assert [w for p in pieces for w in p] == [w for s in sents for w in s]
    assert split_long(sents, None) == sents


def test_tagger_on_long_sequences_windows_and_persists(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from metal.sequence.end_model import SequenceTagger

    # "documents" of 20 five-token sentences: one gradient step per document would not do
    rng = np.random.default_rng(5)
    docs: list[list[str]] = []
    tags: list[int] = []
    for _ in range(14):
        doc: list[str] = []
        for _ in range(20):
            doc += [str(rng.choice(["Ann", "Bob", "Cy"])), "saw", "the", "lake", "."]
            tags += [1, 0, 0, 0, 0]
        docs.append(doc)
    Y = np.asarray(tags)
    tagger = SequenceTagger(TAGS, vectors="none", hidden=8, word_dim=8, max_length=16,
                            suffix_dim=4, char_filters=0, crf=False,  # the soft-CE path
                            n_epochs=4, lr=2e-2, batch_size=8, patience=None,
                            entity_weight=2.0, seed=0).fit(docs[:10], Y[:1000])
    assert tagger.n_train_sequences_ == 10 * 20
    assert tagger.score(docs[10:], Y[1000:]).f1 > 0.95
    path = tmp_path / "tagger.npz"
    tagger.save(str(path))
    again = SequenceTagger.load(str(path))
    np.testing.assert_allclose(again.predict_proba(docs[10:]), tagger.predict_proba(docs[10:]),
                               atol=1e-6)
    np.testing.assert_array_equal(again.predict(docs[10:]), tagger.predict(docs[10:]))
    custom = SequenceTagger(TAGS, vectors=lambda w: np.zeros((len(w), 2)), hidden=4,
                            word_dim=4, n_epochs=1).fit(docs[:2], Y[:200])
    with pytest.raises(ConfigError, match="vectors"):
        custom.save(str(tmp_path / "custom.npz"))


def test_ner_subcommand_fits_scores_and_writes(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from metal.cli import main

    L, Y, offsets = _generated_ner(60, seed=6)
    L, tokens = _with_words(L, Y, offsets, seed=6)
    names = np.asarray(TAGS)
    rows = {str(s): {"data": {"text": tokens[s]},
                     "label": names[Y[a:b]].tolist(),
                     "weak_labels": np.where(L[a:b] >= 0, names[np.maximum(L[a:b], 0)],
                                             "O").tolist()}
            for s, (a, b) in enumerate(zip(offsets[:-1], offsets[1:], strict=True))}
    (tmp_path / "train.json").write_text(json.dumps(rows))
    (tmp_path / "label.json").write_text(json.dumps(dict(enumerate(TAGS))))
    model, tags = tmp_path / "lm.npz", tmp_path / "tags.json"
    assert main(["ner", str(tmp_path), "--model-out", str(model), "--tags-out", str(tags),
                 "--tagger", "--vectors", "none", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "label model fitted on train" in out and "span F1 tagger" in out
    f1 = float(out.split("label model ")[2].split()[0])
    expected = SequenceLabelModel(TAGS).fit(L, offsets, tokens).score(L, offsets, Y, tokens).f1
    assert f1 == pytest.approx(expected, abs=1e-4)
    written = json.loads(tags.read_text())
    assert [len(s) for s in written] == np.diff(offsets).tolist()
    again = SequenceLabelModel.load(str(model))
    assert names[again.predict(L, offsets, tokens)].tolist() == sum(written, [])


def test_crf_soft_nll_matches_enumeration() -> None:
    torch = pytest.importorskip("torch")
    import itertools

    from metal.sequence.end_model import crf_soft_nll

    scheme = TagScheme.from_tags(TAGS)
    k, t_len = len(TAGS), 3
    gen = torch.Generator().manual_seed(0)
    emit = torch.randn(2, t_len, k, generator=gen, dtype=torch.float64)
    start = torch.randn(k, generator=gen, dtype=torch.float64)
    trans = torch.randn(k, k, generator=gen, dtype=torch.float64)
    q = torch.softmax(torch.randn(2, t_len, k, generator=gen, dtype=torch.float64), dim=-1)
    lengths = [3, 2]  # the second sentence is padded
    mask = torch.tensor([[True, True, True], [True, True, False]])
    ok_start = torch.as_tensor(scheme.allowed_starts())
    ok_trans = torch.as_tensor(scheme.allowed_transitions())
    expected = 0.0
    for b, n in enumerate(lengths):
        log_z, exp_score = [], 0.0
        for ys in itertools.product(range(k), repeat=n):
            s = start[ys[0]] + sum(emit[b, t, y] for t, y in enumerate(ys))
            s = s + sum(trans[ys[t - 1], ys[t]] for t in range(1, n))
            weight = np.prod([float(q[b, t, y]) for t, y in enumerate(ys)])
            exp_score += weight * float(s)  # expectation over every sequence, valid or not
            if ok_start[ys[0]] and all(ok_trans[ys[t - 1], ys[t]] for t in range(1, n)):
                log_z.append(float(s))
        expected += float(np.logaddexp.reduce(log_z)) - exp_score
    got = crf_soft_nll(emit, q, mask, start, trans, ok_start, ok_trans)
    assert float(got) == pytest.approx(expected, rel=1e-9)
    # one-hot targets: the usual CRF negative log-likelihood, and > 0
    hard = torch.nn.functional.one_hot(torch.tensor([[1, 2, 0], [3, 4, 0]]), k).double()
    assert float(crf_soft_nll(emit, hard, mask, start, trans, ok_start, ok_trans)) > 0


def _typed_by_spelling(n: int, seed: int) -> tuple[list[list[str]], np.ndarray]:
    """Sentences whose entity type shows only in the spelling of never-repeated names."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghiklmnoprstuvwz")
    tokens: list[list[str]] = []
    tags: list[int] = []
    for _ in range(n):
        stem = "".join(rng.choice(letters, 4)).title()
        person = bool(rng.random() < 0.5)
        name = [stem + ("ov" if person else "burg")]
        if rng.random() < 0.5:
            name.append(("Von" if person else "Port") + "".join(rng.choice(letters, 2)))
        verb = [str(rng.choice(["was", "is"])), str(rng.choice(["seen", "big", "far"]))]
        tokens.append([*name, *verb])
        first = 1 if person else 3
        tags += [first, *([first + 1] * (len(name) - 1)), 0, 0]
    return tokens, np.asarray(tags)


# a tagger small enough for a unit test (no word vectors, tiny layers, fixed 10 epochs)
SMALL_TAGGER = {"vectors": "none", "hidden": 8, "word_dim": 4, "char_filters": 8,
                "n_epochs": 10, "lr": 2e-2, "batch_size": 8, "patience": None}


def _typed_soft_targets(seed: int) -> tuple[list[list[str]], np.ndarray, int, np.ndarray]:
    """100 generated sentences, the first 75's token count and soft targets (0.84 on the true
    tag, 0.04 elsewhere) for those 75."""
    tokens, Y = _typed_by_spelling(100, seed=seed)
    n_fit = sum(map(len, tokens[:75]))
    soft = np.full((n_fit, 5), 0.04)
    soft[np.arange(n_fit), Y[:n_fit]] = 0.84
    return tokens, Y, n_fit, soft

def test_tagger_char_cnn_and_crf_type_unseen_words_and_persist(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from metal.sequence.end_model import SequenceTagger

    tokens, Y, n_fit, soft = _typed_soft_targets(seed=7)
    # 10 epochs: the default weight average lags the last steps by about an epoch
    opts = {**SMALL_TAGGER, "seed": 0}
    tagger = SequenceTagger(TAGS, crf=True, **opts).fit(tokens[:75], soft)
    f1 = tagger.score(tokens[75:], Y[n_fit:]).f1
    assert f1 > 0.9
    # without characters the type of an unseen name is a guess: context is the same for both
    no_chars = {**opts, "char_filters": 0}
    plain = SequenceTagger(TAGS, crf=False, **no_chars).fit(tokens[:75], soft)
    assert plain.score(tokens[75:], Y[n_fit:]).f1 < f1 - 0.2
    proba = tagger.predict_proba(tokens[75:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)  # the CRF's marginals
    pred = tagger.predict(tokens[75:])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in tokens[75:]])])
    assert _is_valid_bio(pred, offsets, tagger.scheme_)
    path = tmp_path / "crf.npz"
    tagger.save(str(path))
    again = SequenceTagger.load(str(path))
    assert again.crf and again.char_filters == 8
    np.testing.assert_allclose(again.predict_proba(tokens[75:]), proba, atol=1e-6)
    np.testing.assert_array_equal(again.predict(tokens[75:]), pred)


def test_tagger_weight_average_learns_and_persists(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from metal.sequence.end_model import SequenceTagger

    tokens, Y, n_fit, soft = _typed_soft_targets(seed=8)
    opts = {**SMALL_TAGGER, "seed": 0}
    avg = SequenceTagger(TAGS, average=True, **opts).fit(tokens[:75], soft)
    last = SequenceTagger(TAGS, average=False, **opts).fit(tokens[:75], soft)
    # same seed, same steps: only the weights predicted with differ (the running average)
    diff = [float((a - b).abs().max()) for a, b in
            zip(avg.net_.parameters(), last.net_.parameters(), strict=True)]
    assert max(diff) > 1e-3
    assert avg.score(tokens[75:], Y[n_fit:]).f1 > 0.9
    # with a validation set the average of the best epoch is kept
    valid = (tokens[75:], Y[n_fit:])
    picked = SequenceTagger(TAGS, average=True, **opts).fit(tokens[:75], soft, valid=valid)
    best = max(h["valid_span_f1"] for h in picked.history_)
    assert picked.score(*valid).f1 == pytest.approx(best)
    path = tmp_path / "avg.npz"
    picked.save(str(path))
    again = SequenceTagger.load(str(path))
    assert again.average
    np.testing.assert_array_equal(again.predict(tokens[75:]), picked.predict(tokens[75:]))


def test_length_batches_cover_every_sequence_once_with_less_padding() -> None:
    from metal.sequence.end_model import length_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 65, size=1000)
    batches = length_batches(lengths, 16, np.random.default_rng(1))
    assert len(batches) == 63 and all(len(b) == 16 for b in batches[:-1])
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    # cost of a batch = its longest sequence: far below random batches of the same size
    random = np.random.default_rng(1).permutation(1000)
    padded_random = sum(lengths[random[b:b + 16]].max() for b in range(0, 1000, 16))
    padded = sum(lengths[b].max() for b in batches)
    assert padded < 0.7 * padded_random
    # the next epoch's batches differ
    again = length_batches(lengths, 16, np.random.default_rng(2))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_tagger_length_batches_learn_like_random_batches(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from metal.sequence.end_model import SequenceTagger

    tokens, Y, n_fit, soft = _typed_soft_targets(seed=9)
    opts = {**SMALL_TAGGER, "seed": 0}
    bucketed = SequenceTagger(TAGS, bucket=True, **opts).fit(tokens[:75], soft)
    assert bucketed.score(tokens[75:], Y[n_fit:]).f1 > 0.9
    crf_free = SequenceTagger(TAGS, bucket=True, crf=False, **opts).fit(tokens[:75], soft)
    assert crf_free.score(tokens[75:], Y[n_fit:]).f1 > 0.9
    path = tmp_path / "bucket.npz"
    bucketed.save(str(path))
    again = SequenceTagger.load(str(path))
    assert again.bucket
    np.testing.assert_array_equal(again.predict(tokens[75:]), bucketed.predict(tokens[75:]))


def test_tagger_ensemble_decodes_the_members_mean_score_and_persists(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from metal.sequence.end_model import SequenceTagger

    tokens, Y, n_fit, soft = _typed_soft_targets(seed=10)
    opts = {**SMALL_TAGGER, "n_epochs": 8, "bucket": True}
    pair = SequenceTagger(TAGS, ensemble=2, seed=3, **opts).fit(tokens[:75], soft)
    assert len(pair.nets_) == 2 and len(pair.histories_) == 2
    assert pair.score(tokens[75:], Y[n_fit:]).f1 > 0.9
    # the first member is the single tagger of the same seed; the mean score differs from it
    single = SequenceTagger(TAGS, seed=3, **opts).fit(tokens[:75], soft)
    feats = single._featurize(tokens[75:])
    z1 = single._logits(feats)
    z2 = pair._logits(pair._featurize(tokens[75:]))
    assert not np.allclose(z1, z2)
    np.testing.assert_allclose(
        2 * z2 - z1, SequenceTagger(TAGS, seed=4, **opts).fit(tokens[:75], soft)._logits(feats),
        atol=1e-5)
    path = tmp_path / "pair.npz"
    pair.save(str(path))
    again = SequenceTagger.load(str(path))
    assert again.ensemble == 2 and len(again.nets_) == 2
    np.testing.assert_allclose(again.predict_proba(tokens[75:]), pair.predict_proba(tokens[75:]),
                               atol=1e-6)
    with pytest.raises(ConfigError, match="ensemble"):
        SequenceTagger(TAGS, ensemble=0, **opts).fit(tokens[:75], soft)

"""Sources and data joins of the hierarchical benchmarks (benchmarks/hierarchy_sources)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from hierarchy_sources._common import (  # noqa: E402
    KeywordSource,
    PatternSource,
    apply_keyword_sources,
    apply_sources,
    imply_parent_votes,
    normalise_term,
    source_report,
)
from hierarchy_sources.newsgroups import (  # noqa: E402
    GROUP_SOURCES,
    GROUP_TO_TOP,
    GROUPS,
    SOURCES,
    TOP,
    TOP_SOURCES,
    post_text,
)
from hierarchy_sources.trec import (  # noqa: E402
    COARSE,
    FINE,
    FINE_SOURCES,
    FINE_TO_COARSE,
    load_trec,
    normalise,
)

SHARED = REPO.parent / "shared" / "data"


def fine_votes(question: str) -> set[str]:
    """Names of the fine classes voted for ``question`` by the TREC fine sources."""
    L = apply_sources(pd.Series([question]), FINE_SOURCES)[0, :, 1]
    return {FINE[v] for v in L[L >= 0]}


# ---------------------------------------------------------------- TREC fine sources
def test_trec_label_sets() -> None:
    assert len(COARSE) == 6 and len(FINE) == 50 and len(set(FINE)) == 50
    assert [COARSE[c] for c in FINE_TO_COARSE] == [f.split(":")[0] for f in FINE]
    names = [s.name for s in FINE_SOURCES]
    assert len(names) == len(set(names))
    assert all(s.task == 1 and 0 <= s.label < 50 for s in FINE_SOURCES)
    # every fine class has at least one source
    assert {s.label for s in FINE_SOURCES} == set(range(50))


@pytest.mark.parametrize("question, expected", [
    ("How many hearts does an octopus have ?", "NUM:count"),
    ("Who invented the telephone ?", "HUM:ind"),
    ("Who is Zebulon Pike ?", "HUM:desc"),
    ("What does NASA stand for ?", "ABBR:exp"),
    ("Why is the sky blue ?", "DESC:reason"),
    ("What city hosted the 1936 Olympics ?", "LOC:city"),
    ("When did Hawaii become a state ?", "NUM:date"),
    ("How far is it from Denver to Aspen ?", "NUM:dist"),
    ("How do you make a paper airplane ?", "DESC:manner"),
    ("What is the speed of light ?", "NUM:speed"),
    ("What color is a poppy ?", "ENTY:color"),
    ("What breed of dog has a blue tongue ?", "ENTY:animal"),
    ("Where is the Eiffel Tower ?", "LOC:other"),
    ("What country borders Chile to the east ?", "LOC:country"),
])
def test_trec_fine_sources_on_handwritten_questions(question: str, expected: str) -> None:
    assert expected in fine_votes(question)


def test_trec_fine_sources_distinguish_who_questions() -> None:
    # a bare name asks for a description, a relative clause for an individual
    assert "HUM:ind" not in fine_votes("Who is Zebulon Pike ?")
    assert "HUM:desc" not in fine_votes("Who is the mayor of Marbella ?")
    assert "HUM:ind" in fine_votes("Who is the mayor of Marbella ?")


def test_trec_fine_sources_abstain_on_unrelated_text() -> None:
    assert fine_votes("Lorem ipsum dolor sit amet .") == set()


def test_normalise_join_key() -> None:
    keys = normalise(pd.Series(["What 's the capital of Peru ?", "what's  the CAPITAL of peru?"]))
    assert keys[0] == "what s the capital of peru"
    assert keys[1] == "what s the capital of peru"


def _write_fake_trec(root: Path) -> None:
    """A tiny data folder in the shared layout: 3 train and 2 test questions, 2 WRENCH LFs."""
    trec = root / "trec_coarse_fine"
    trec.mkdir(parents=True)
    (trec / "train_5500.label").write_text(
        "NUM:count How many legs does a spider have ?\n"
        "LOC:other Where is Kings Canyon ?\n"
        "HUM:ind Who invented the zipper ?\n")
    (trec / "TREC_10.label").write_text(
        "NUM:count How many moons does Mars have ?\n"
        "LOC:city What city is the Golden Gate Bridge in ?\n")
    wrench = root / "wrench_trec"
    wrench.mkdir()
    # WRENCH's class order differs from the sorted TREC order
    order = {"0": "DESC", "1": "ENTY", "2": "HUM", "3": "ABBR", "4": "LOC", "5": "NUM"}
    (wrench / "label.json").write_text(json.dumps(order))
    (wrench / "readme.txt").write_text(
        "intro\n# Label Functions\n\n"
        "NUMERIC\t( |^)(how|how)[^\\w]* (\\w+ ){0,1}(many|many)[^\\w]*( |$)\tHow many ?\r\n"
        "LOCATION\t( |^)(where|where)[^\\w]*( |$)\tWhere is it ?\r\n")

    def rows(texts: list[str], votes: list[list[int]]) -> str:
        return json.dumps({str(i): {"label": 0, "weak_labels": v, "data": {"text": t}}
                           for i, (t, v) in enumerate(zip(texts, votes, strict=True))})

    # stored votes in WRENCH's order: NUM = 5, LOC = 4; the spider question is not in WRENCH
    (wrench / "train.json").write_text(rows(["where is kings canyon ?"], [[-1, 4]]))
    (wrench / "valid.json").write_text(rows(["who invented the zipper ?"], [[-1, -1]]))
    (wrench / "test.json").write_text(rows(
        ["count How many moons does Mars have ?", "city What city is the Golden Gate Bridge in ?"],
        [[5, -1], [-1, -1]]))


def test_load_trec_joins_and_remaps_wrench_votes(tmp_path: Path) -> None:
    _write_fake_trec(tmp_path)
    ds = load_trec(tmp_path)
    m = 2 + len(FINE_SOURCES)
    assert ds.L_train.shape == (3, m, 2) and ds.L_test.shape == (2, m, 2)
    assert ds.info["n_joined_train"] == 2 and ds.info["join_rate_test"] == 1.0
    assert ds.info["reapplied_agreement_train"] == 1.0
    num, loc = COARSE.index("NUM"), COARSE.index("LOC")
    # joined row: stored WRENCH vote 4 (LOC in WRENCH's order) becomes our LOC index
    assert ds.L_train[1, :2, 0].tolist() == [-1, loc]
    # unjoined row: the re-applied regex supplies the NUM vote
    assert ds.L_train[0, :2, 0].tolist() == [num, -1]
    # test rows: WRENCH's leading fine-label token is stripped before the join
    assert ds.L_test[0, :2, 0].tolist() == [num, -1]
    # coarse LFs vote only on task 0, fine sources only on task 1
    assert (ds.L_train[:, :2, 1] == -1).all() and (ds.L_train[:, 2:, 0] == -1).all()
    assert ds.Y_train[0].tolist() == [num, FINE.index("NUM:count")]
    implied = load_trec(tmp_path, imply_coarse=True)
    fine = ds.L_train[:, 2:, 1]
    assert (implied.L_train[:, 2:, 0][fine >= 0] == FINE_TO_COARSE[fine[fine >= 0]]).all()


# ---------------------------------------------------------------- shared helpers
def test_imply_parent_votes_keeps_explicit_parent_votes() -> None:
    L = np.array([[[-1, 2], [0, -1], [1, 3]]], dtype=np.int8)  # (1, 3, 2)
    out = imply_parent_votes(L, np.array([0, 0, 1, 1]))
    assert out[0, :, 0].tolist() == [1, 0, 1]
    assert out[0, :, 1].tolist() == L[0, :, 1].tolist()
    assert L[0, 0, 0] == -1  # the input is not modified


def test_pattern_source_min_hits_and_case() -> None:
    texts = pd.Series(["gun gun", "gun", "GUN GUN"])
    src = PatternSource("g", 1, 3, r"\bgun\b", min_hits=2)
    assert src.apply(texts.str.lower()).tolist() == [3, -1, 3]
    cased = PatternSource("c", 1, 3, r"\bGUN\b", lowercase=False)
    L = apply_sources(texts, [cased])
    assert L[:, 0, 1].tolist() == [-1, -1, 3]


def test_keyword_sources_count_phrases_and_repeats() -> None:
    assert normalise_term("Windows 3.1") == "windows 3 1"
    with pytest.raises(ValueError, match="tokens"):
        normalise_term("a b c d")
    texts = pd.Series(["I run Windows 3.1 and windows-3-1 daily", "windows only once",
                       "the NHL playoffs: hockey, hockey, hockey"])
    sources = [KeywordSource("win", 1, 2, ("windows 3.1",), min_hits=2),
               KeywordSource("hockey", 0, 5, ("hockey", "nhl"), min_hits=3)]
    L = apply_keyword_sources(texts, sources)
    assert L.shape == (3, 2, 2)
    assert L[:, 0, 1].tolist() == [2, -1, -1]
    assert L[:, 1, 0].tolist() == [-1, -1, 5]
    assert (L[:, 0, 0] == -1).all() and (L[:, 1, 1] == -1).all()


def test_source_report_accuracy() -> None:
    L = np.array([[[0, -1]], [[0, -1]], [[-1, -1]]])
    Y = np.array([[0, 1], [1, 2], [0, 0]])
    rep = source_report(L, Y, ["s"], [("a", "b"), ("x", "y", "z")])
    assert rep.loc[0, "coverage"] == pytest.approx(2 / 3)
    assert rep.loc[0, "accuracy"] == pytest.approx(0.5)


# ---------------------------------------------------------------- 20 Newsgroups sources
def test_newsgroups_structure() -> None:
    assert len(TOP) == 7 and len(GROUPS) == 20
    assert [TOP[t] for t in GROUP_TO_TOP] == [g.split(".")[0] for g in GROUPS]
    assert {s.label for s in GROUP_SOURCES} == set(range(20))
    assert {s.label for s in TOP_SOURCES} == set(range(7))
    assert all(s.task == 1 for s in GROUP_SOURCES) and all(s.task == 0 for s in TOP_SOURCES)
    for s in SOURCES:  # every keyword is countable
        s.normalised_terms()


def test_post_text_drops_headers_and_newsgroups_lines() -> None:
    raw = pd.Series(["From: a@b.c\nSubject: Re: Leafs win\nOrganization: Hockey U\n\n"
                     "> Newsgroups: rec.sport.hockey\nGreat game last night."])
    text = post_text(raw)[0]
    assert "Leafs win" in text and "Great game" in text
    assert "Organization" not in text and "rec.sport.hockey" not in text


def test_newsgroups_sources_on_handwritten_posts() -> None:
    posts = pd.Series([
        "Subject: Penguins\n\nLemieux scored twice; the Penguins beat the Bruins in the NHL "
        "playoffs. Great hockey, and the goalie was on fire.",
        "Subject: Clipper chip\n\nThe Clipper chip uses key escrow; PGP and RSA encryption "
        "are far better for privacy than the NSA's Skipjack.",
        "Subject: nothing\n\nLorem ipsum dolor sit amet.",
    ])
    L = apply_keyword_sources(posts, SOURCES)
    voted = [{GROUPS[v] for v in L[i, :, 1] if v >= 0} for i in range(3)]
    assert voted[0] == {"rec.sport.hockey"}
    assert voted[1] == {"sci.crypt"}
    assert (L[2] == -1).all()


# ---------------------------------------------------------------- real data (integration)
@pytest.mark.slow  # > 15 s on a shared 2-core machine; run by .ci/run
@pytest.mark.timeout(300)
@pytest.mark.integration
def test_trec_real_join_and_source_quality() -> None:
    if not (SHARED / "trec_coarse_fine").exists() or not (SHARED / "wrench_trec").exists():
        pytest.skip(f"shared data not found at {SHARED}")
    ds = load_trec(SHARED)
    assert ds.L_train.shape == (5452, 68 + len(FINE_SOURCES), 2)
    assert ds.L_test.shape[0] == 500
    assert ds.info["join_rate_train"] > 0.99 and ds.info["join_rate_test"] > 0.99
    assert ds.info["reapplied_agreement_train"] > 0.999
    rep = source_report(ds.L_train, ds.Y_train, ds.source_names, ds.class_names)
    fine = rep[rep.task == 1]
    # written as better-than-chance heuristics: on the train split most are far above 1/50
    assert (fine.accuracy > 0.2).mean() > 0.9
    assert (ds.L_train[:, 68:, 1] >= 0).any(axis=1).mean() > 0.5


@pytest.mark.integration
@pytest.mark.slow
def test_newsgroups_real_sources() -> None:
    if not (SHARED / "20newsgroups_bydate").exists():
        pytest.skip(f"shared data not found at {SHARED}")
    from hierarchy_sources.newsgroups import load_newsgroups

    ds = load_newsgroups(SHARED)
    assert ds.L_train.shape == (11314, len(SOURCES), 2) and ds.L_test.shape[0] == 7532
    rep = source_report(ds.L_train, ds.Y_train, ds.source_names, ds.class_names)
    chance = np.where(rep.task == 0, 1 / 7, 1 / 20)
    assert (rep.accuracy.to_numpy() > chance).all()

"""Shared pieces of the hierarchical benchmark sources: keyword sources, application, reports."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ABSTAIN = -1


def default_data_dir() -> Path:
    """``$METAL_SHARED_DATA``, else ``<repo>/../shared/data`` (the same rule as ``_results``)."""
    env = os.environ.get("METAL_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass(frozen=True)
class PatternSource:
    """A unipolar source: votes ``label`` on ``task`` when ``pattern`` matches often enough.

    ``pattern`` is a regular expression applied to the lower-cased text (to the original text
    when ``lowercase`` is False, e.g. to see capitalised names); the source votes when
    it has at least ``min_hits`` non-overlapping matches (1 for short texts such as questions,
    more for long posts where a single word is weak evidence), and abstains otherwise.
    """

    name: str
    task: int
    label: int
    pattern: str
    min_hits: int = 1
    flags: int = 0
    lowercase: bool = True
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile(self.pattern, self.flags))

    def hits(self, texts: pd.Series) -> np.ndarray:
        """``(n,)`` bool: where this source votes (vectorised over the column)."""
        if self.min_hits <= 1:
            return texts.str.contains(self._compiled, regex=True).to_numpy(dtype=bool)
        return (texts.str.count(self._compiled) >= self.min_hits).to_numpy(dtype=bool)

    def apply(self, texts: pd.Series) -> np.ndarray:
        """``(n,)`` votes: ``label`` where the source fires, ``-1`` elsewhere."""
        return np.where(self.hits(texts), self.label, ABSTAIN).astype(np.int64)


def words(*terms: str) -> str:
    """Regex alternation of whole words/phrases (spaces inside a phrase match any whitespace)."""
    alts = sorted({t.strip() for t in terms if t.strip()}, key=len, reverse=True)
    alts_re = [r"\s+".join(re.escape(p) for p in t.split()) for t in alts]
    return r"\b(?:" + "|".join(alts_re) + r")\b"


def apply_sources(texts: pd.Series, sources: Sequence[PatternSource],
                  n_tasks: int = 2) -> np.ndarray:
    """``(n, m, n_tasks)`` int8 label tensor; each source fills only its own task."""
    lowered = texts.str.lower()
    L = np.full((len(texts), len(sources), n_tasks), ABSTAIN, dtype=np.int8)
    for j, src in enumerate(sources):
        L[:, j, src.task] = src.apply(lowered if src.lowercase else texts)
    return L


def source_report(L: np.ndarray, Y: np.ndarray, names: Sequence[str],
                  class_names: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Coverage and accuracy of each source on the task(s) it votes on (for development)."""
    rows = []
    for j, name in enumerate(names):
        for t in range(L.shape[2]):
            votes = L[:, j, t]
            fired = votes >= 0
            if not fired.any():
                continue
            emitted = np.unique(votes[fired])
            rows.append({
                "source": name, "task": t,
                "emits": ",".join(class_names[t][v] for v in emitted[:3])
                         + ("..." if emitted.size > 3 else ""),
                "coverage": float(fired.mean()),
                "accuracy": float(np.mean(votes[fired] == Y[fired, t])),
                "n_fired": int(fired.sum()),
            })
    return pd.DataFrame(rows)


def imply_parent_votes(L: np.ndarray, child_to_parent: np.ndarray, parent: int = 0,
                       child: int = 1) -> np.ndarray:
    """Copy of ``L`` where every child-task vote also fills the implied parent vote.

    A source voting fine class ``c`` implicitly claims coarse class ``child_to_parent[c]``;
    a per-task model that sees only task columns cannot know that, so the separate-models
    baseline can be given these implied votes (where the source did not vote the parent
    itself).
    """
    out = L.copy()
    child_votes = L[:, :, child]
    fill = (child_votes >= 0) & (L[:, :, parent] < 0)
    out[:, :, parent][fill] = np.asarray(child_to_parent)[child_votes[fill]]
    return out


TOKEN_PATTERN = r"\$|[a-z0-9]+"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
MAX_NGRAM = 3


def normalise_term(term: str) -> str:
    """A keyword as the space-joined tokens the keyword counter sees ("win.ini" -> "win ini")."""
    tokens = _TOKEN_RE.findall(term.lower())
    if not tokens or len(tokens) > MAX_NGRAM:
        raise ValueError(f"keyword {term!r} has {len(tokens)} tokens; expected 1..{MAX_NGRAM}")
    return " ".join(tokens)


@dataclass(frozen=True)
class KeywordSource:
    """A unipolar keyword source for long texts: votes ``label`` on ``task`` when the keywords
    occur at least ``min_hits`` times in total (counting repeats), else abstains.

    Texts are lower-cased and split into runs of letters/digits (and ``$``); a keyword is one
    to three such tokens, so ``"windows 3.1"`` matches "Windows 3.1" and "windows-3-1".
    """

    name: str
    task: int
    label: int
    terms: tuple[str, ...]
    min_hits: int = 2

    def normalised_terms(self) -> list[str]:
        return sorted({normalise_term(t) for t in self.terms})


def apply_keyword_sources(texts: pd.Series, sources: Sequence[KeywordSource],
                          n_tasks: int = 2) -> np.ndarray:
    """``(n, m, n_tasks)`` int8 label tensor from one sparse keyword-count pass over ``texts``."""
    from sklearn.feature_extraction.text import CountVectorizer

    vocab = sorted({t for s in sources for t in s.normalised_terms()})
    index = {t: i for i, t in enumerate(vocab)}
    counter = CountVectorizer(token_pattern=TOKEN_PATTERN, ngram_range=(1, MAX_NGRAM),
                              vocabulary=vocab, lowercase=True)
    X = counter.transform(texts.fillna("")).tocsc()
    L = np.full((len(texts), len(sources), n_tasks), ABSTAIN, dtype=np.int8)
    for j, src in enumerate(sources):
        cols = [index[t] for t in src.normalised_terms()]
        counts = np.asarray(X[:, cols].sum(axis=1)).ravel()
        L[:, j, src.task] = np.where(counts >= src.min_hits, src.label, ABSTAIN)
    return L

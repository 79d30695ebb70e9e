"""Loading WRENCH-format sequence-tagging (NER) benchmarks into token-level label matrices.

A WRENCH sequence folder holds ``{train,valid,test}.json``, ``label.json`` (index -> BIO tag,
``"O"`` first) and ``meta.json`` (``"lf"``: the labeling functions' names). Each split is
``{id: {"data": {"text": [token, ...]}, "label": [tag, ...], "weak_labels": [[tag per LF]
per token]}}`` with tags as strings.

:func:`load_wrench_sequence` flattens a split into one row per token: an ``(n_tokens, m)``
label matrix whose classes are the BIO tags (``0..K-1`` in ``label.json`` order), gold tags,
and ``offsets`` marking where each sentence starts (sentence ``s`` is rows
``offsets[s]:offsets[s + 1]``).

The abstain convention is explicit: in WRENCH an LF's ``O`` means *either* "I have nothing to
say" or "this is not an entity". ``o_is_abstain`` decides per source: ``True`` (the default, and
the only reading that is right for dictionary / pattern LFs) stores ``O`` as ``-1``; ``False``
stores it as the class of ``O`` (a deliberate "not an entity" vote, e.g. from a trained tagger
that labels every token).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metal.errors import WrenchFormatError

SPLITS = ("train", "valid", "test")
OUTSIDE = "O"


@dataclass(frozen=True)
class SequenceSplit:
    """One split of a WRENCH sequence-tagging dataset, flattened to one row per token.

    Attributes
    ----------
    L
        ``(n_tokens, m)`` int8/int16 token label matrix: tag index ``0..K-1`` or ``-1``
        (abstain; an ``O`` vote of a source whose ``o_is_abstain`` is true).
    Y
        ``(n_tokens,)`` int64 gold tag index, ``-1`` where the split has no gold.
    offsets
        ``(n_sentences + 1,)`` int64; sentence ``s`` is rows ``offsets[s]:offsets[s + 1]``.
    tokens
        The sentences' tokens (list of lists of str), in row order.
    tag_names
        Tag of each class index (``label.json``; ``tag_names[0]`` is normally ``"O"``).
    source_names
        The labeling functions' names (``meta.json`` ``"lf"``; ``lf_<j>`` without it).
    o_is_abstain
        ``(m,)`` bool: which sources' ``O`` was read as abstain.
    ids
        Sentence ids, in order.
    name, split
        Folder name and split.
    """

    L: np.ndarray
    Y: np.ndarray
    offsets: np.ndarray
    tokens: list[list[str]]
    tag_names: list[str]
    source_names: list[str]
    o_is_abstain: np.ndarray
    ids: list[str]
    name: str
    split: str

    @property
    def n_tokens(self) -> int:
        return int(self.L.shape[0])

    @property
    def n_sentences(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def n_sources(self) -> int:
        return int(self.L.shape[1])

    @property
    def cardinality(self) -> int:
        return len(self.tag_names)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def has_gold(self) -> bool:
        return bool((self.Y >= 0).any())


def _sequence_label_names(folder: Path) -> list[str]:
    file = folder / "label.json"
    if not file.is_file():
        raise WrenchFormatError(f"{folder} has no label.json; a WRENCH sequence folder needs it "
                                "to map tag indices to BIO tags (e.g. {\"0\": \"O\", \"1\": "
                                "\"B-PER\", ...})")
    try:
        raw = json.loads(file.read_text())
        names = {int(k): str(v) for k, v in raw.items()}
    except (json.JSONDecodeError, ValueError, AttributeError) as exc:
        raise WrenchFormatError(f"{file} is not a json object mapping tag indices to tags "
                                f"({exc})") from exc
    if sorted(names) != list(range(len(names))):
        raise WrenchFormatError(f"{file} has tag indices {sorted(names)}; expected 0..K-1")
    tags = [names[i] for i in range(len(names))]
    if OUTSIDE not in tags:
        raise WrenchFormatError(f"{file} has no \"O\" tag ({tags}); expected BIO tags with O")
    return tags


def _source_names(folder: Path, m: int) -> list[str]:
    file = folder / "meta.json"
    if file.is_file():
        try:
            lfs = json.loads(file.read_text()).get("lf")
        except (json.JSONDecodeError, AttributeError):
            lfs = None
        if isinstance(lfs, list) and len(lfs) == m:
            return [str(x) for x in lfs]
    return [f"lf_{j}" for j in range(m)]


def _abstain_mask(o_is_abstain: bool | Sequence[bool], m: int) -> np.ndarray:
    if isinstance(o_is_abstain, bool | np.bool_):
        return np.full(m, bool(o_is_abstain))
    mask = np.asarray(o_is_abstain, dtype=bool)
    if mask.shape != (m,):
        raise WrenchFormatError(f"o_is_abstain has {mask.size} entries but the data has {m} "
                                "labeling functions; pass one bool per source, or one bool for "
                                "all")
    return mask


def load_wrench_sequence(
    path: str | os.PathLike[str],
    split: str = "train",
    *,
    o_is_abstain: bool | Sequence[bool] = True,
) -> SequenceSplit:
    """Load one split of a WRENCH sequence-tagging folder as a token-level label matrix.

    Parameters
    ----------
    path
        The folder (``<split>.json``, ``label.json``, optionally ``meta.json``).
    split
        ``"train"``, ``"valid"`` or ``"test"``.
    o_is_abstain
        Whether a source's ``O`` is an abstention (``-1``) or a vote for the ``O`` class; one
        bool for every source or one per source. The default, ``True``, is the right reading
        for dictionary and pattern sources, which say nothing about tokens they do not match.

    Returns
    -------
    SequenceSplit

    Raises
    ------
    WrenchFormatError
        Missing folder, split or ``label.json``; a classification file (one integer label per
        example) instead of a sequence file; unknown tags; rows whose lengths disagree.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = {"0": {"data": {"text": ["Ann", "ran"]}, "label": ["B-PER", "O"],
    ...               "weak_labels": [["B-PER", "O"], ["O", "O"]]}}
    >>> _ = (d / "train.json").write_text(json.dumps(rows))
    >>> _ = (d / "label.json").write_text(json.dumps({"0": "O", "1": "B-PER", "2": "I-PER"}))
    >>> s = load_wrench_sequence(d)
    >>> s.L.tolist(), s.Y.tolist(), s.offsets.tolist()
    ([[1, -1], [-1, -1]], [1, 0], [0, 2])
    >>> load_wrench_sequence(d, o_is_abstain=[False, True]).L.tolist()
    [[1, -1], [0, -1]]
    """
    if split not in SPLITS:
        raise WrenchFormatError(f"split={split!r} is not known; expected one of {SPLITS}")
    folder = Path(path)
    if not folder.is_dir():
        raise WrenchFormatError(f"{folder} is not a folder; expected a WRENCH sequence folder "
                                "with train/valid/test json files and label.json")
    file = folder / f"{split}.json"
    if not file.is_file():
        have = [s for s in SPLITS if (folder / f"{s}.json").is_file()]
        raise WrenchFormatError(f"{folder} has no {split}.json; it has {have or 'no split'}. "
                                "Some WRENCH sequence sets ship without train (conll, "
                                "ontonotes, mit_restaurants): use 'valid' instead.")
    try:
        with open(file, "rb") as fh:
            raw: Any = json.load(fh)
    except json.JSONDecodeError as exc:
        raise WrenchFormatError(f"{file} is not valid json ({exc})") from exc
    if not isinstance(raw, dict) or not raw:
        raise WrenchFormatError(f"{file} holds no examples; expected {{id: {{\"data\": "
                                "{\"text\": [...]}, \"label\": [...], \"weak_labels\": "
                                "[[...], ...]}}")
    ids = [str(k) for k in raw]
    records = list(raw.values())
    first = records[0].get("weak_labels") if isinstance(records[0], dict) else None
    if not isinstance(first, list) or (first and not isinstance(first[0], list)):
        raise WrenchFormatError(
            f"{file}: weak_labels of example {ids[0]!r} are {type(first).__name__} "
            f"{str(first)[:60]}; expected the WRENCH *sequence* format, a list with one list of "
            "tags (one per labeling function) per token. This looks like a classification "
            "file: read it with metal.data.load_wrench.")
    tags = _sequence_label_names(folder)
    tokens: list[list[str]] = []
    weak: list[list[str]] = []
    gold: list[str | None] = []
    lengths = np.empty(len(records), dtype=np.int64)
    m = len(first[0]) if first else -1
    for r, (sid, rec) in enumerate(zip(ids, records, strict=True)):
        text = rec.get("data", {}).get("text")
        wl = rec.get("weak_labels")
        if not isinstance(text, list) or not isinstance(wl, list) or len(wl) != len(text):
            raise WrenchFormatError(
                f"{file}: example {sid!r} has {len(text) if isinstance(text, list) else text!r}"
                f" tokens but {len(wl) if isinstance(wl, list) else wl!r} rows of weak labels; "
                "expected data.text as a token list and one weak-label row per token")
        lab = rec.get("label")
        if lab is not None and (not isinstance(lab, list) or len(lab) != len(text)):
            raise WrenchFormatError(f"{file}: example {sid!r} has {len(text)} tokens but its "
                                    "label is not a list of as many tags")
        tokens.append([str(t) for t in text])
        weak.extend(wl)
        gold.extend(lab if lab is not None else [None] * len(text))
        lengths[r] = len(text)
    widths = np.fromiter(map(len, weak), dtype=np.int64, count=len(weak))
    if m < 0 and widths.size:
        m = int(widths[0])
    if widths.size and (widths != m).any():
        bad = int(np.flatnonzero(widths != m)[0])
        raise WrenchFormatError(f"{file}: token row {bad} has {int(widths[bad])} weak labels but "
                                f"the first has {m}; expected one tag per labeling function")
    code = {t: i for i, t in enumerate(tags)}
    flat = np.asarray(weak, dtype=object).reshape(len(weak), max(m, 0))
    uniq, inv = np.unique(flat.astype(str), return_inverse=True)
    unknown = [u for u in uniq.tolist() if u not in code]
    if unknown:
        raise WrenchFormatError(f"{file}: weak labels use tags {unknown[:5]} that label.json "
                                f"does not list ({tags}); fix label.json or the data")
    L = np.asarray([code[u] for u in uniq.tolist()], dtype=np.int64)[inv].reshape(flat.shape)
    abstain = _abstain_mask(o_is_abstain, m)
    outside = code[OUTSIDE]
    L[(L == outside) & abstain[None, :]] = -1
    gold_codes = [code.get(g, -2) if g is not None else -1 for g in gold]
    Y = np.asarray(gold_codes, dtype=np.int64)
    if (Y == -2).any():
        bad_tag = next(g for g, c in zip(gold, gold_codes, strict=True) if c == -2)
        raise WrenchFormatError(f"{file}: gold tag {bad_tag!r} is not in label.json ({tags})")
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    dtype = np.int8 if len(tags) <= np.iinfo(np.int8).max else np.int16
    return SequenceSplit(L=L.astype(dtype), Y=Y, offsets=offsets, tokens=tokens, tag_names=tags,
                         source_names=_source_names(folder, m), o_is_abstain=abstain, ids=ids,
                         name=folder.name, split=split)


def sequence_splits(path: str | os.PathLike[str]) -> list[str]:
    """Which of ``train``, ``valid``, ``test`` the sequence folder provides."""
    folder = Path(path)
    return [s for s in SPLITS if (folder / f"{s}.json").is_file()]

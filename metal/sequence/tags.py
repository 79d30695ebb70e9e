"""BIO tag schemes and span extraction over flat token arrays.

Sequences are stored flat: one row per token, with ``offsets`` (``(n_sentences + 1,)``) saying
where each sentence starts, so every operation here is a handful of vectorised numpy passes
over all tokens at once, never a loop over sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metal.errors import ConfigError, LabelMatrixError

OUTSIDE, BEGIN, INSIDE = 0, 1, 2


@dataclass(frozen=True)
class TagScheme:
    """A BIO (or IO) tag set: which tag begins / continues which entity type.

    Build it with :meth:`from_tags`. Tags are ``"O"``, ``"B-<type>"`` and ``"I-<type>"``; a
    type with only ``I-`` tags is read as IO tagging (then ``I-`` may start an entity).

    Attributes
    ----------
    tag_names
        Tag of each class index.
    types
        Entity types, in order of first appearance.
    prefix
        ``(K,)`` int: 0 for ``O``, 1 for ``B-``, 2 for ``I-``.
    entity_type
        ``(K,)`` int: index into ``types``, ``-1`` for ``O``.
    outside
        Class index of ``O``.
    """

    tag_names: tuple[str, ...]
    types: tuple[str, ...]
    prefix: np.ndarray
    entity_type: np.ndarray
    outside: int

    @classmethod
    def from_tags(cls, tag_names: Sequence[str]) -> TagScheme:
        """Parse ``["O", "B-PER", "I-PER", ...]``.

        Raises
        ------
        ConfigError
            A tag is neither ``O`` nor ``B-``/``I-`` prefixed, or ``O`` is missing.

        Examples
        --------
        >>> s = TagScheme.from_tags(["O", "B-PER", "I-PER"])
        >>> s.types, s.prefix.tolist(), s.entity_type.tolist()
        (('PER',), [0, 1, 2], [-1, 0, 0])
        """
        names = tuple(str(t) for t in tag_names)
        if "O" not in names:
            raise ConfigError(f"tag set {list(names)} has no 'O' tag; expected BIO tags")
        types: list[str] = []
        prefix = np.zeros(len(names), dtype=np.int64)
        etype = np.full(len(names), -1, dtype=np.int64)
        for i, tag in enumerate(names):
            if tag == "O":
                continue
            head, sep, typ = tag.partition("-")
            if not sep or head not in ("B", "I") or not typ:
                raise ConfigError(f"tag {tag!r} is not 'O', 'B-<type>' or 'I-<type>'; "
                                  "convert other schemes (BIOES, BILOU) to BIO first")
            if typ not in types:
                types.append(typ)
            prefix[i] = BEGIN if head == "B" else INSIDE
            etype[i] = types.index(typ)
        return cls(tag_names=names, types=tuple(types), prefix=prefix, entity_type=etype,
                   outside=names.index("O"))

    @property
    def n_tags(self) -> int:
        return len(self.tag_names)

    def _has_begin(self) -> np.ndarray:
        """``(n_types,)`` whether the type has a ``B-`` tag (else it is IO-tagged)."""
        out = np.zeros(len(self.types), dtype=bool)
        out[self.entity_type[self.prefix == BEGIN]] = True
        return out

    def allowed_transitions(self) -> np.ndarray:
        """``(K, K)`` bool: may tag ``b`` follow tag ``a``? (``I-x`` only after ``B-x``/``I-x``)."""
        k = self.n_tags
        ok = np.ones((k, k), dtype=bool)
        inside = np.flatnonzero((self.prefix == INSIDE) & self._has_begin()[self.entity_type])
        for b in inside:
            ok[:, b] = (self.entity_type == self.entity_type[b]) & (self.prefix != OUTSIDE)
        return ok

    def allowed_starts(self) -> np.ndarray:
        """``(K,)`` bool: may a sentence start with this tag? (not ``I-x`` when ``B-x`` exists)."""
        return ~((self.prefix == INSIDE) & self._has_begin()[np.maximum(self.entity_type, 0)])


@dataclass(frozen=True)
class Spans:
    """Entity spans over flat tokens: ``start`` (inclusive), ``end`` (exclusive), ``type``."""

    start: np.ndarray
    end: np.ndarray
    type: np.ndarray

    def __len__(self) -> int:
        return int(self.start.size)

    def keys(self, n_tokens: int, n_types: int) -> np.ndarray:
        """One int64 per span, equal iff start, end and type are equal."""
        return (self.start * (n_tokens + 1) + self.end) * max(n_types, 1) + self.type


def check_offsets(offsets: np.ndarray | Sequence[int], n_tokens: int) -> np.ndarray:
    """Validate sentence offsets: ``0 = o_0 <= o_1 <= ... = n_tokens``."""
    off = np.asarray(offsets, dtype=np.int64)
    if off.ndim != 1 or off.size < 1 or off[0] != 0 or off[-1] != n_tokens \
            or (np.diff(off) < 0).any():
        raise LabelMatrixError(
            f"offsets must be a non-decreasing 1-D array from 0 to the number of tokens "
            f"({n_tokens}); got shape {off.shape}"
            + (f", first {off[0]}, last {off[-1]}" if off.size else "")
            + ". Sentence s is rows offsets[s]:offsets[s + 1].")
    return off


def sentence_starts(offsets: np.ndarray, n_tokens: int) -> np.ndarray:
    """``(n_tokens,)`` bool, True at the first token of each non-empty sentence."""
    first = np.zeros(n_tokens + 1, dtype=bool)
    first[offsets[:-1]] = True
    return first[:n_tokens]


def extract_spans(tags: np.ndarray, offsets: np.ndarray, scheme: TagScheme) -> Spans:
    """Entity spans of a flat tag array, with seqeval's default (conlleval) semantics.

    A span starts at ``B-x``, or at ``I-x`` that does not continue an ``x`` span (after ``O``,
    after another type, or at a sentence start); it continues over ``I-x`` tokens. Spans never
    cross sentence boundaries.

    Examples
    --------
    >>> s = TagScheme.from_tags(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    >>> sp = extract_spans(np.array([1, 2, 0, 2, 4, 3]), np.array([0, 6]), s)
    >>> sp.start.tolist(), sp.end.tolist(), sp.type.tolist()
    ([0, 3, 4, 5], [2, 4, 5, 6], [0, 0, 1, 1])
    """
    tags = np.asarray(tags, dtype=np.int64)
    n = tags.size
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Spans(empty, empty, empty)
    prefix = scheme.prefix[tags]
    etype = scheme.entity_type[tags]
    first = sentence_starts(offsets, n)
    prev_prefix = np.concatenate([[OUTSIDE], prefix[:-1]])
    prev_type = np.concatenate([[-1], etype[:-1]])
    cont = (prefix == INSIDE) & ~first & (prev_prefix != OUTSIDE) & (prev_type == etype)
    begin = (prefix == BEGIN) | ((prefix == INSIDE) & ~cont)
    member = begin | cont
    idx = np.flatnonzero(member)
    if idx.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Spans(empty, empty, empty)
    ent = np.cumsum(begin)[idx]
    last = np.concatenate([ent[1:] != ent[:-1], [True]])
    starts = np.flatnonzero(begin)
    return Spans(start=starts, end=idx[last] + 1, type=etype[starts])


def spans_to_tags(spans: Spans, n_tokens: int, scheme: TagScheme) -> np.ndarray:
    """Flat BIO tags of non-overlapping spans (tokens outside every span get ``O``)."""
    begin_tag = np.full(len(scheme.types), -1, dtype=np.int64)
    inside_tag = np.full(len(scheme.types), -1, dtype=np.int64)
    for i in range(scheme.n_tags):
        t = scheme.entity_type[i]
        if t >= 0:
            (begin_tag if scheme.prefix[i] == BEGIN else inside_tag)[t] = i
    begin_tag = np.where(begin_tag < 0, inside_tag, begin_tag)
    out = np.full(n_tokens, scheme.outside, dtype=np.int64)
    lengths = spans.end - spans.start
    if lengths.size:
        rows = np.repeat(spans.start, lengths) + (
            np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
        out[rows] = np.repeat(inside_tag[spans.type], lengths)
        out[spans.start] = begin_tag[spans.type]
    return out

"""Offline text features: wordllama sentence embeddings, token ids with entity spans, and the
modules that read them (a BiLSTM span encoder, a concatenation of input modules).

wordllama 0.4 ships its 256-d token embeddings and tokenizer inside the wheel; nothing is
downloaded. The tokenizer gives character offsets, so entity spans given in characters (as in
WRENCH relation sets: ``span1``, ``span2``) become token spans.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metal.end_model.inputs import INPUT_MODULES, init_embedding, register_input_module
from metal.errors import ConfigError, DataFormatError


@functools.lru_cache(maxsize=1)
def load_wordllama() -> Any:
    """The packaged wordllama model (256-d), loaded once without any download."""
    try:
        import wordllama
        from wordllama import WordLlama
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("wordllama is not installed; pip install 'wordllama==0.4.*' for "
                          "offline text embeddings") from exc
    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


def embed_texts(texts: Sequence[str], norm: bool = True, batch_size: int = 256) -> np.ndarray:
    """``(n, 256)`` float32 wordllama sentence embeddings (mean of token embeddings).

    Empty strings get a zero vector.
    """
    texts = [str(t) for t in texts]
    out = np.zeros((len(texts), 256), dtype=np.float32)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if keep:
        emb = load_wordllama().embed([texts[i] for i in keep], norm=norm, batch_size=batch_size)
        out[keep] = np.asarray(emb, dtype=np.float32)
    return out


def char_spans(examples: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("span1", "span2")
               ) -> np.ndarray:
    """``(n, len(keys), 2)`` character spans ``[start, end)`` read from WRENCH ``data``."""
    try:
        return np.asarray([[ex[k] for k in keys] for ex in examples], dtype=np.int64)
    except KeyError as exc:
        raise DataFormatError(f"an example has no {exc}; relation examples need "
                              f"{list(keys)} character spans") from exc


def relation_segments(texts: Sequence[str], spans: np.ndarray) -> dict[str, list[str]]:
    """Split each text around its two entity spans: ``e1``, ``e2``, ``between``, ``before``
    (text before the first entity) and ``after`` (after the second)."""
    out: dict[str, list[str]] = {k: [] for k in ("e1", "e2", "between", "before", "after")}
    for text, ((s1, t1), (s2, t2)) in zip(texts, spans.tolist(), strict=True):
        first, second = sorted([(s1, t1), (s2, t2)])
        out["e1"].append(text[s1:t1])
        out["e2"].append(text[s2:t2])
        out["between"].append(text[first[1]:second[0]])
        out["before"].append(text[:first[0]])
        out["after"].append(text[second[1]:])
    return out


def relation_embeddings(texts: Sequence[str], spans: np.ndarray) -> np.ndarray:
    """Dense relation features: wordllama embeddings of entity 1, entity 2, the text between
    them and the whole sentence, plus a flag for "entity 1 comes first" (``(n, 4 * 256 + 1)``).
    """
    seg = relation_segments(texts, spans)
    parts = [embed_texts(seg["e1"]), embed_texts(seg["e2"]), embed_texts(seg["between"]),
             embed_texts(list(texts))]
    order = (spans[:, 0, 0] < spans[:, 1, 0]).astype(np.float32)[:, None]
    return np.concatenate(parts + [order], axis=1)


def marked_text(texts: Sequence[str], spans: np.ndarray) -> list[str]:
    """Texts with entity markers ``[E1] ... [/E1]`` and ``[E2] ... [/E2]`` inserted."""
    out = []
    for text, ((s1, t1), (s2, t2)) in zip(texts, spans.tolist(), strict=True):
        cuts = sorted([(s1, " E1START "), (t1, " E1END "), (s2, " E2START "), (t2, " E2END ")],
                      key=lambda c: c[0])
        pieces, last = [], 0
        for pos, mark in cuts:
            pieces += [text[last:pos], mark]
            last = pos
        pieces.append(text[last:])
        out.append("".join(pieces))
    return out


# ---------------------------------------------------------------------------- token ids
def encode_tokens(texts: Sequence[str], spans: np.ndarray | None = None,
                  max_len: int = 96) -> dict[str, np.ndarray]:
    """wordllama token ids of each text (``0``-padded) and token spans of character spans.

    Parameters
    ----------
    texts
        ``n`` strings.
    spans
        Optional ``(n, S, 2)`` character spans ``[start, end)``; returned as token spans
        (the tokens overlapping each character span; at least one token).
    max_len
        Tokens kept per text. When the spans do not fit, the window is moved to cover them.

    Returns
    -------
    dict
        ``{"tokens": (n, T) int64 (wordllama id + 1, 0 = padding), "spans": (n, S, 2)}``.
    """
    encodings = load_wordllama().tokenize([str(t) for t in texts])
    n = len(texts)
    T = min(max_len, max((len(e.ids) for e in encodings), default=1)) or 1
    tokens: np.ndarray = np.zeros((n, T), dtype=np.int64)
    n_spans = 0 if spans is None else spans.shape[1]
    tok_spans: np.ndarray = np.zeros((n, n_spans, 2), dtype=np.int64)
    for r, enc in enumerate(encodings):  # per text: tokenizer output is per text anyway
        ids = np.asarray(enc.ids, dtype=np.int64) + 1
        offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        start = 0
        if spans is not None and len(ids):
            ts = np.empty((n_spans, 2), dtype=np.int64)
            for s in range(n_spans):
                c0, c1 = int(spans[r, s, 0]), int(spans[r, s, 1])
                inside = np.flatnonzero((offsets[:, 1] > c0) & (offsets[:, 0] < c1))
                if inside.size == 0:
                    inside = np.array([min(int(np.searchsorted(offsets[:, 0], c0)),
                                           len(ids) - 1)])
                ts[s] = inside[0], inside[-1] + 1
            lo, hi = int(ts[:, 0].min()), int(ts[:, 1].max())
            if hi > T:  # move the window so the entities are inside it
                start = max(0, min(lo, hi - T))
            tok_spans[r] = np.clip(ts - start, 0, T)
            tok_spans[r, :, 1] = np.maximum(tok_spans[r, :, 1], tok_spans[r, :, 0] + 1)
            tok_spans[r] = np.minimum(tok_spans[r], T)
        window = ids[start:start + T]
        tokens[r, :len(window)] = window
    out = {"tokens": tokens}
    if spans is not None:
        out["spans"] = tok_spans
    return out


def compact_vocabulary(*encoded: dict[str, np.ndarray]) -> tuple[list[dict[str, np.ndarray]],
                                                                np.ndarray]:
    """Renumber the token ids used in ``encoded`` to ``1..V`` (``0`` stays padding) and return
    the matching rows of wordllama's embedding table as a ``(V + 1, 256)`` matrix.

    Ids not in the first input (the training texts) map to ``V + 1`` ("unknown", zero vector)
    in the others, as they would for new texts at prediction time.
    """
    table = np.asarray(load_wordllama().embedding, dtype=np.float32)
    used = np.unique(encoded[0]["tokens"])
    used = used[used > 0]
    remap = np.full(table.shape[0] + 2, len(used) + 1, dtype=np.int64)
    remap[0] = 0
    remap[used] = np.arange(1, len(used) + 1)
    pretrained = np.zeros((len(used) + 2, table.shape[1]), dtype=np.float32)
    pretrained[1:len(used) + 1] = table[used - 1]
    out = [{**e, "tokens": remap[e["tokens"]]} for e in encoded]
    return out, pretrained


# ---------------------------------------------------------------------------- modules
def _check_pretrained(pretrained: Any, rows: int, dim: int) -> torch.Tensor | None:
    if pretrained is None:
        return None
    P = torch.as_tensor(np.asarray(pretrained, dtype=np.float32))
    if P.shape != (rows, dim):
        raise ConfigError(f"pretrained has shape {tuple(P.shape)}; expected ({rows}, {dim})")
    return P


@register_input_module
class SpanEncoder(nn.Module):
    """Token embeddings -> BiLSTM -> mean-pooled over each entity span (+ max over the text).

    For entity typing pass one span per row, for relations two (``spans`` of
    :func:`encode_tokens`); with ``n_spans=0`` it encodes the whole text. Output:
    ``(b, 2 * hidden * (n_spans + 1))``.

    Parameters
    ----------
    vocab_size
        Rows of the embedding table (ids ``0..vocab_size-1``; ``0`` is padding).
    dim
        Embedding width (256 for wordllama vectors).
    hidden
        LSTM width per direction.
    n_spans
        Spans pooled per row.
    pretrained
        Optional initial embeddings, e.g. from :func:`compact_vocabulary`; kept by
        :meth:`reset_parameters`.
    freeze
        Keep the embeddings fixed.
    dropout
        Dropout on the embeddings and on the output.
    """

    def __init__(self, vocab_size: int, dim: int = 256, hidden: int = 64, n_spans: int = 2,
                 pretrained: Any = None, freeze: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.hidden = int(vocab_size), int(dim), int(hidden)
        self.n_spans, self.freeze, self.dropout = int(n_spans), bool(freeze), float(dropout)
        self.embedding = nn.Embedding(self.vocab_size, self.dim, padding_idx=0)
        self.embedding.weight.requires_grad_(not self.freeze)
        # kept outside the state dict: only needed to re-initialise before fitting
        self._pretrained = _check_pretrained(pretrained, self.vocab_size, self.dim)
        self.lstm = nn.LSTM(self.dim, self.hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(self.dropout)
        self.out_features = 2 * self.hidden * (self.n_spans + 1)
        self.reset_parameters()

    def config(self) -> dict[str, Any]:
        """Constructor arguments (the embeddings themselves are in the state dict)."""
        return {"vocab_size": self.vocab_size, "dim": self.dim, "hidden": self.hidden,
                "n_spans": self.n_spans, "freeze": self.freeze, "dropout": self.dropout}

    def reset_parameters(self) -> None:
        init_embedding(self.embedding.weight, self._pretrained)
        self.lstm.reset_parameters()

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["tokens"]
        mask = (ids > 0).float()
        lengths = mask.sum(1).clamp(min=1).long().cpu()
        emb = self.drop(self.embedding(ids.clamp(max=self.vocab_size - 1)))
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=ids.shape[1])
        pooled = [h.masked_fill(mask[..., None] == 0, -1e4).max(dim=1).values]
        if self.n_spans:
            spans = batch["spans"]
            pos = torch.arange(ids.shape[1], device=ids.device)[None, :]
            for s in range(self.n_spans):
                inside = ((pos >= spans[:, s, :1]) & (pos < spans[:, s, 1:])).float()
                pooled.append((h * inside[..., None]).sum(1)
                              / inside.sum(1, keepdim=True).clamp(min=1))
        return self.drop(torch.cat(pooled, dim=1))


@register_input_module
class ConcatInput(nn.Module):
    """Feed each key of a dict batch to its own input module and concatenate the outputs.

    E.g. ``ConcatInput({"tfidf": SparseInput(V, 256), "emb": DenseInput(256)})`` for
    ``X = {"tfidf": csr_matrix, "emb": ndarray}``.
    """

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not modules:
            raise ConfigError("ConcatInput needs at least one module")
        self.parts = nn.ModuleDict(dict(modules))
        widths = [getattr(m, "out_features", None) for m in self.parts.values()]
        if any(w is None for w in widths):
            raise ConfigError("every module of ConcatInput needs an out_features attribute")
        self.out_features = int(sum(int(w) for w in widths if w is not None))

    def config(self) -> dict[str, Any]:
        specs = {}
        for key, module in self.parts.items():
            cfg = getattr(module, "config", None)
            if type(module).__name__ not in INPUT_MODULES or not callable(cfg):
                raise ConfigError(f"ConcatInput part {key!r} is a custom module; pass the "
                                  "whole input module to load()")
            specs[key] = {"name": type(module).__name__, "config": cfg()}
        return {"modules": specs}

    @classmethod
    def from_config(cls, modules: Mapping[str, Mapping[str, Any]]) -> ConcatInput:
        return cls({k: INPUT_MODULES[v["name"]](**v["config"]) for k, v in modules.items()})

    def prepare(self, X: Any) -> None:
        for key, module in self.parts.items():
            prepare = getattr(module, "prepare", None)
            if callable(prepare) and isinstance(X, Mapping):
                prepare(X[key])

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return torch.cat([m(batch[k]) for k, m in self.parts.items()], dim=1)

"""A BiLSTM-CRF sequence tagger trained on token-level probabilistic labels.

Each token is represented by frozen pretrained word vectors (wordllama's token embeddings,
averaged over the word's sub-word pieces; offline, no download), a small trainable embedding of
frequent lower-cased words, a character CNN, and word-shape features (capitalised, all caps,
digits...). A bidirectional LSTM reads the sentence and a linear layer scores the tags; a
linear-chain CRF adds learned tag-bigram scores. It is trained with
:class:`metal.end_model.Trainer` on the expected CRF log-likelihood of the label model's token
posteriors (or hard tags), or on the token-level soft cross-entropy without the CRF, and decodes
valid BIO with constrained Viterbi. By default it validates and predicts with an exponential
moving average of the weights over the training steps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from metal._io import load_arrays, save_arrays
from metal.end_model.loss import soft_cross_entropy
from metal.end_model.trainer import (
    Trainer,
    TrainerConfig,
    TrainResult,
    arrays_to_state,
    state_to_arrays,
)
from metal.errors import ConfigError, LabelMatrixError, NotFittedError
from metal.sequence.inference import forward_backward, viterbi
from metal.sequence.metrics import SpanScores, span_scores
from metal.sequence.tags import TagScheme, check_offsets

N_SHAPE = 6
MAX_CHARS = 16  # characters of a word the character CNN reads (the rest is cut)
SUFFIX = 3  # characters of the word-ending feature
SAVE_KIND = "SequenceTagger"
SENTENCE_END = frozenset({".", "!", "?", ";"})


def split_long(tokens: Sequence[Sequence[str]], max_length: int | None) -> list[list[str]]:
    """Cut sequences longer than ``max_length`` into contiguous pieces, in order.

    A long sequence (a whole abstract, say) is cut after sentence-ending tokens (``.``, ``!``,
    ``?``, ``;``) and any piece still longer is cut every ``max_length`` tokens. The pieces
    concatenated give back the flat token order, so token-level targets need no reindexing.
    """
    if max_length is None:
        return [list(sent) for sent in tokens]
    out: list[list[str]] = []
    for sent in tokens:
        if len(sent) <= max_length:
            out.append(list(sent))
            continue
        piece: list[str] = []
        for w in sent:
            piece.append(w)
            if w in SENTENCE_END or len(piece) == max_length:
                out.append(piece)
                piece = []
        if piece:
            out.append(piece)
    return out


def length_batches(lengths: np.ndarray, batch_size: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of sequences of similar length: ``ceil(n / batch_size)`` index arrays that
    cover ``0..n-1`` once.

    The sequences are shuffled, split into pools of 32 batches, and each pool is sorted by
    length and cut into batches: a batch costs as much as its longest sequence (the BiLSTM
    and the CRF's forward loop run that many steps), so this cuts padding while the batches
    still change from one call (epoch) to the next.
    """
    n = len(lengths)
    perm = rng.permutation(n)
    pool = 32 * batch_size
    for p0 in range(0, n, pool):
        chunk = perm[p0:p0 + pool]
        perm[p0:p0 + pool] = chunk[np.argsort(lengths[chunk], kind="stable")]
    return [perm[b:b + batch_size] for b in range(0, n, batch_size)]


def word_shapes(words: Sequence[str]) -> np.ndarray:
    """``(n, 6)`` float32 shape features: capitalised, all caps, has digit, all digits,
    has hyphen, is punctuation."""
    out = np.zeros((len(words), N_SHAPE), dtype=np.float32)
    for i, w in enumerate(words):
        out[i] = (w[:1].isupper(), w.isupper() and len(w) > 1, any(c.isdigit() for c in w),
                  w.isdigit(), "-" in w, not any(c.isalnum() for c in w))
    return out


def wordllama_vectors(words: Sequence[str]) -> np.ndarray:
    """``(n, 256)`` float32 vectors from wordllama's offline token embeddings.

    A word's vector is the mean of its sub-word pieces' embeddings (the model bundled with the
    ``wordllama`` package; nothing is downloaded).
    """
    from pathlib import Path

    import wordllama
    from wordllama import WordLlama

    wl = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    table = np.asarray(wl.embedding, dtype=np.float32)
    out = np.zeros((len(words), table.shape[1]), dtype=np.float32)
    if not words:
        return out
    enc = wl.tokenizer.encode_batch(list(words), add_special_tokens=False)
    for i, e in enumerate(enc):
        ids = [t for t in e.ids if t > 0]
        if ids:
            out[i] = table[ids].mean(axis=0)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-6)


class _CharCNN(nn.Module):
    """Word vectors from the word's characters: embedding, width-3 convolution, max-pool."""

    def __init__(self, n_chars: int, char_dim: int, filters: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, kernel_size=3, padding=1)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        # chars: (..., MAX_CHARS) ids, 0 = padding; padded positions are masked out of the max
        shape = chars.shape
        flat = chars.reshape(-1, shape[-1])
        h = self.conv(self.emb(flat).transpose(1, 2))  # (N, filters, MAX_CHARS)
        h = h.masked_fill((flat == 0)[:, None, :], -1e4).max(dim=2).values
        h = torch.where((flat > 0).any(dim=1, keepdim=True), h, torch.zeros_like(h))
        return h.reshape(*shape[:-1], -1)


class _TaggerNet(nn.Module):
    def __init__(self, n_words: int, word_dim: int, frozen_dim: int, hidden: int,
                 n_tags: int, dropout: float, n_suffixes: int = 2, suffix_dim: int = 0,
                 n_chars: int = 2, char_filters: int = 0, crf: bool = False) -> None:
        super().__init__()
        self.words = nn.Embedding(n_words, word_dim, padding_idx=0)
        self.suffixes = nn.Embedding(n_suffixes, max(suffix_dim, 1), padding_idx=0)
        self.chars = _CharCNN(n_chars, 16, char_filters) if char_filters > 0 else None
        self.drop = nn.Dropout(dropout)
        # a narrow projection first: the LSTM's input product dominates the cost on CPU
        self.proj = nn.Linear(word_dim + max(suffix_dim, 1) + frozen_dim + N_SHAPE
                              + char_filters, 2 * hidden)
        self.lstm = nn.LSTM(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, n_tags)
        # CRF scores: first tag and tag bigram (added to the BIO constraints when decoding)
        self.start = nn.Parameter(torch.zeros(n_tags)) if crf else None
        self.trans = nn.Parameter(torch.zeros(n_tags, n_tags)) if crf else None

    def chain(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The CRF's start and transition scores (``crf=True`` only)."""
        if self.start is None or self.trans is None:
            raise ConfigError("this tagger network has no CRF layer (crf=False)")
        return self.start, self.trans

    def forward(self, word_ids: torch.Tensor, frozen: torch.Tensor, shape: torch.Tensor,
                lengths: torch.Tensor, chars: torch.Tensor | None = None) -> torch.Tensor:
        # word_ids[..., 0]: trainable word id, word_ids[..., 1]: suffix id
        parts = [self.words(word_ids[..., 0]), self.suffixes(word_ids[..., 1]), frozen, shape]
        if self.chars is not None and chars is not None:
            parts.append(self.chars(chars))
        x = torch.relu(self.proj(self.drop(torch.cat(parts, dim=-1))))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=word_ids.shape[1])
        return self.out(self.drop(h))  # type: ignore[no-any-return]


def crf_soft_nll(emit: torch.Tensor, q: torch.Tensor, mask: torch.Tensor, start: torch.Tensor,
                 trans: torch.Tensor, allowed_start: torch.Tensor,
                 allowed_trans: torch.Tensor) -> torch.Tensor:
    """Summed CRF negative log-likelihood of target tag distributions.

    With token targets ``q`` (``(B, T, K)``; one-hot for hard tags) read as independent per
    token, the expected sequence score is ``sum_t q_t . emit_t + q_0 . start +
    sum_t q_{t-1}^T trans q_t``; the log-partition comes from the forward algorithm with
    invalid BIO starts and transitions removed (so the model is the one constrained Viterbi
    decodes). Padded cells (``mask`` false) take no part.
    """
    m = mask.to(emit.dtype)
    qm = q * m[..., None]
    score = (qm * emit).sum(dim=(1, 2)) + (qm[:, 0] * start).sum(dim=1)
    score = score + torch.einsum("bti,ij,btj->b", qm[:, :-1], trans, qm[:, 1:])
    neg = torch.finfo(emit.dtype).min / 4
    s_eff = torch.where(allowed_start, start, torch.full_like(start, neg))
    t_eff = torch.where(allowed_trans, trans, torch.full_like(trans, neg))
    alpha = s_eff[None] + emit[:, 0]
    for t in range(1, emit.shape[1]):
        nxt = torch.logsumexp(alpha[:, :, None] + t_eff[None], dim=1) + emit[:, t]
        alpha = torch.where(mask[:, t, None], nxt, alpha)
    return (torch.logsumexp(alpha, dim=1) - score).sum()


class SequenceTagger:
    """BiLSTM tagger over frozen word vectors, trained on token-level (soft) labels.

    Parameters
    ----------
    tag_names
        The BIO tags (class index order of the targets).
    hidden
        LSTM units per direction.
    word_dim
        Size of the trainable embedding of lower-cased training words seen ``min_count`` times
        (``0``: none).
    min_count
        Frequency a training word needs to get its own trainable embedding.
    suffix_dim
        Size of the trainable embedding of the words' last three letters (seen ``min_count``
        times; ``0``, the default: none). Off by default: 16 dimensions lowered the span F1
        on the ncbi_disease dev split from 68.7 to 64.5.
    char_filters
        Width of the character CNN's word vector (``0``: no character features). Characters
        seen in training get a 16-dimensional embedding; a width-3 convolution and a max over
        the word's first 16 characters give the vector.
    crf
        Score tag bigrams too (a linear-chain CRF over the BiLSTM's tag scores): trained on
        the expected sequence log-likelihood of the (soft) targets, decoded by Viterbi with
        the learned transitions plus the BIO constraints; ``predict_proba`` then gives the
        CRF's marginals. ``entity_weight`` does not apply to it.

        Both are on by default: on 20k training tokens of the label model's posteriors (dev
        span F1, one seed) they took laptopreview from 58.5 to 62.8 and ncbi_disease from
        64.0 to 66.2 (on laptopreview the CRF alone gave 60.1, the character CNN alone
        56.9); argmax targets instead of soft ones gave 62.3 and 64.9.
    word_dropout
        Probability of replacing a training word's trainable id by "unknown" (so the tagger
        learns to use the frozen vectors and context too).
    dropout
        Dropout on the token features and the LSTM output.
    max_length
        Sequences longer than this are cut into sentences / windows (:func:`split_long`) for
        training and prediction: an LSTM over a 250-token abstract gets one gradient step per
        abstract and learns to predict ``O`` everywhere. ``None``: never cut.
    entity_weight
        Loss weight of tokens whose target is not ``O`` (probability-weighted for soft
        targets), relative to ``O`` tokens. Entities are 5 to 15% of the tokens of a NER set;
        weighting them up keeps the tagger from settling on all-``O``.
    average
        Validate, keep and predict with an exponential moving average of the weights over
        the optimiser steps (horizon: about one epoch, ``1 - 1 / steps_per_epoch`` decay,
        shorter over the first steps) instead of the last step's weights: the average smooths
        the noise of small-batch training on noisy targets, so the epoch picked on ``valid``
        matters less. On the dev splits (label model's posteriors, 250k token updates, one
        seed) it took ncbi_disease from 73.08 to 73.77 and laptopreview from 63.66 to 64.11.
        It lags the last steps by about an epoch: very short trainings need more epochs.
    bucket
        Train on batches of sentences of similar length (:func:`length_batches`: shuffled
        pools of 32 batches, each sorted by length, new batches every epoch) instead of
        random batches. A batch costs as much as its longest sentence, so this is about 1.7
        times faster per epoch on bc5cdr-like data; each batch's loss is divided by the mean
        batch's token count, so a batch of short sentences weighs its tokens as a random
        batch would.
    ensemble
        Train this many taggers (seeds ``seed``, ``seed + 1``, ...; each picks its own epoch on
        ``valid``) and score a sequence by their mean score: the mean of their tag scores and
        of their CRF start and transition scores, decoded as one chain.
    vectors
        ``"wordllama"`` (offline pretrained vectors), ``"none"``, or a callable mapping a list
        of words to an ``(n, d)`` array.
    trainer
        A :class:`~metal.end_model.TrainerConfig` or dict; ``train_options`` override it.
        Defaults here: 8 epochs, batch 16 sentences, lr 5e-3, patience 3.
    seed
        Seeds initialisation, batch order and dropout.

    Attributes
    ----------
    net_
        The fitted torch module.
    history_
        Per-epoch training record from the Trainer.
    """

    def __init__(
        self,
        tag_names: Sequence[str],
        *,
        hidden: int = 64,
        word_dim: int = 50,
        min_count: int = 2,
        suffix_dim: int = 0,
        char_filters: int = 32,
        crf: bool = True,
        word_dropout: float = 0.1,
        dropout: float = 0.3,
        max_length: int | None = 64,
        entity_weight: float = 1.0,
        average: bool = True,
        bucket: bool = False,
        ensemble: int = 1,
        vectors: str | Callable[[Sequence[str]], np.ndarray] = "wordllama",
        trainer: TrainerConfig | dict[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
        **train_options: Any,
    ) -> None:
        self.tag_names = tag_names
        self.hidden = hidden
        self.word_dim = word_dim
        self.min_count = min_count
        self.suffix_dim = suffix_dim
        self.char_filters = char_filters
        self.crf = crf
        self.word_dropout = word_dropout
        self.dropout = dropout
        self.max_length = max_length
        self.entity_weight = entity_weight
        self.average = average
        self.bucket = bucket
        self.ensemble = ensemble
        self.vectors = vectors
        self.trainer = trainer
        self.seed = seed
        self.device = device
        self.train_options = train_options

    # ------------------------------------------------------------------ features
    def _vector_fn(self) -> Callable[[Sequence[str]], np.ndarray] | None:
        if callable(self.vectors):
            return self.vectors
        if self.vectors == "wordllama":
            return wordllama_vectors
        if self.vectors == "none":
            return None
        raise ConfigError(f"vectors={self.vectors!r}; expected 'wordllama', 'none' or a "
                          "callable words -> (n, d) array")

    def _featurize(self, tokens: Sequence[Sequence[str]]) -> dict[str, Any]:
        """Flat per-token word ids, frozen vectors and shapes, with sentence offsets."""
        flat = [w for sent in tokens for w in sent]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        uniq, inv = np.unique(np.asarray(flat, dtype=str), return_inverse=True)
        uniq_list = uniq.tolist()
        missing = [w for w in uniq_list if w not in self.frozen_]
        if missing and self.vector_fn_ is not None:
            vecs = self.vector_fn_(missing)
            self.frozen_.update(zip(missing, vecs, strict=True))
        dim = self.frozen_dim_
        table = (np.stack([self.frozen_[w] for w in uniq_list]).astype(np.float32)
                 if dim and uniq_list else np.zeros((len(uniq_list), dim), np.float32))
        chars = np.zeros((len(uniq_list), MAX_CHARS), dtype=np.int64)
        if self.char_filters > 0:
            for i, w in enumerate(uniq_list):
                ids_c = [self.char_vocab_.get(c, 1) for c in w[:MAX_CHARS]]
                chars[i, :len(ids_c)] = ids_c
        ids = np.asarray([[self.vocab_.get(w.lower(), 1),
                           self.suffix_vocab_.get(w.lower()[-SUFFIX:], 1)] for w in uniq_list],
                         dtype=np.int64).reshape(len(uniq_list), 2)
        return {"word": ids[inv] if flat else np.zeros((0, 2), np.int64),
                "frozen": table[inv] if flat else np.zeros((0, dim), np.float32),
                "shape": word_shapes(uniq_list)[inv] if flat else np.zeros((0, N_SHAPE),
                                                                              np.float32),
                "type": inv if flat else np.zeros(0, np.int64), "chars": chars,
                "offsets": offsets}

    def _batch(self, feats: dict[str, Any], sentences: np.ndarray,
               train: bool = False) -> tuple[Any, ...]:
        off = feats["offsets"]
        lengths = off[sentences + 1] - off[sentences]
        t_max = max(int(lengths.max()), 1)
        t = np.arange(t_max)
        mask = t[None, :] < lengths[:, None]
        index = np.where(mask, off[sentences][:, None] + t[None, :], 0)
        word = np.where(mask[..., None], feats["word"][index], 0)
        if train and self.word_dropout > 0:
            drop = self.rng_.random(mask.shape) < self.word_dropout
            word[..., 0] = np.where(drop & mask, 1, word[..., 0])
        dev = torch.device(self.device)
        return (torch.as_tensor(word, device=dev),
                torch.as_tensor(feats["frozen"][index] * mask[..., None], device=dev),
                torch.as_tensor(feats["shape"][index] * mask[..., None], device=dev),
                torch.as_tensor(np.maximum(lengths, 1)), torch.as_tensor(mask, device=dev),
                torch.as_tensor(index, device=dev),
                torch.as_tensor(feats["chars"][feats["type"][index]] * mask[..., None],
                                device=dev) if self.char_filters > 0 else None)

    # ------------------------------------------------------------------ API
    def fit(
        self,
        tokens: Sequence[Sequence[str]],
        Y: Any,
        *,
        valid: tuple[Sequence[Sequence[str]], Any] | None = None,
    ) -> SequenceTagger:
        """Train on sentences ``tokens`` with token targets ``Y``.

        Parameters
        ----------
        tokens
            The training sentences.
        Y
            ``(n_tokens, K)`` tag probabilities (e.g. a sequence label model's posteriors) or
            ``(n_tokens,)`` tag indices (``-1`` = ignore), in the sentences' token order.
        valid
            ``(tokens, tags)`` used to select the epoch by span F1 (``tags`` may be a label
            model's predictions: no gold needed). Without it, all epochs run.
        """
        if self.ensemble < 1:
            raise ConfigError(f"ensemble={self.ensemble}; expected an int >= 1 (taggers)")
        if self.ensemble > 1:
            return self._fit_ensemble(tokens, Y, valid)
        scheme = TagScheme.from_tags(self.tag_names)
        k = scheme.n_tags
        n_tokens = sum(map(len, tokens))
        targets = np.asarray(Y)
        if targets.shape not in ((n_tokens, k), (n_tokens,)):
            raise LabelMatrixError(f"Y has shape {targets.shape}; expected ({n_tokens}, {k}) "
                                   f"probabilities or ({n_tokens},) tags for the {n_tokens} "
                                   "tokens of tokens")
        if self.max_length is not None and self.max_length < 1 or self.entity_weight <= 0:
            raise ConfigError(f"max_length={self.max_length}, entity_weight="
                              f"{self.entity_weight}; expected max_length >= 1 (or None) and "
                              "entity_weight > 0")
        tokens = split_long(tokens, self.max_length)
        self.scheme_ = scheme
        self.rng_ = np.random.default_rng(self.seed)
        counts = Counter(w.lower() for sent in tokens for w in sent)
        keep = sorted(w for w, c in counts.items() if c >= self.min_count)
        self.vocab_ = {w: i + 2 for i, w in enumerate(keep)}  # 0 pad, 1 unknown
        suffixes = Counter(w.lower()[-SUFFIX:] for sent in tokens for w in sent)
        self.suffix_vocab_ = ({w: i + 2 for i, w in enumerate(
            sorted(w for w, c in suffixes.items() if c >= self.min_count))}
            if self.suffix_dim > 0 else {})
        chars = Counter(c for sent in tokens for w in sent for c in w[:MAX_CHARS])
        self.char_vocab_ = ({c: i + 2 for i, c in enumerate(sorted(chars))}
                            if self.char_filters > 0 else {})
        self.vector_fn_ = self._vector_fn()
        self.frozen_: dict[str, np.ndarray] = {}
        self.frozen_dim_ = 0
        if self.vector_fn_ is not None:
            self.frozen_dim_ = int(np.asarray(self.vector_fn_(["the"])).shape[1])
        feats = self._featurize(tokens)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.net_ = self._make_net().to(torch.device(self.device))
        self.nets_ = [self.net_]
        y_t = torch.as_tensor(targets.astype(np.float32) if targets.ndim == 2
                              else targets.astype(np.int64), device=torch.device(self.device))

        class_weight = torch.full((k,), float(self.entity_weight),
                                  device=torch.device(self.device))
        class_weight[scheme.outside] = 1.0

        if self.crf:
            q_all = (y_t if targets.ndim == 2 else torch.nn.functional.one_hot(
                y_t.clamp(min=0), k).float() * (y_t >= 0).float()[:, None])
            allowed_start = torch.as_tensor(scheme.allowed_starts(), device=y_t.device)
            allowed_trans = torch.as_tensor(scheme.allowed_transitions(), device=y_t.device)

        params = [p for p in self.net_.parameters()]
        ema = [p.detach().clone() for p in params] if self.average else []
        defaults = {"n_epochs": 8, "batch_size": 16, "lr": 5e-3, "patience": 3,
                    "valid_metric": "span_f1"}
        base = TrainerConfig.from_options(self.trainer if self.trainer is not None else defaults)
        config = TrainerConfig.from_options(base, **self.train_options)
        # an average over about the last epoch's steps; shorter over the first steps (as the
        # step count t grows: (1 + t) / (10 + t)) so the random initial weights fade out
        decay = 1.0 - config.batch_size / max(len(tokens), config.batch_size)
        steps = [0]
        n_seq = len(tokens)
        n_batches = -(-n_seq // config.batch_size)
        seq_len = np.diff(feats["offsets"])
        # per-token loss scale of a batch: the mean batch's token count, so that a bucketed
        # batch of short sentences weighs its tokens as a random batch would
        token_norm = float(config.batch_size * seq_len.mean()) if n_seq else 1.0
        buckets: list[np.ndarray] = []

        def batch_loss(rows: np.ndarray) -> torch.Tensor:
            if ema:  # the weights after the previous step enter the average
                d = min(decay, (1 + steps[0]) / (10 + steps[0]))
                with torch.no_grad():
                    torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - d)
            if self.bucket:  # rows: one batch index (the Trainer's batch size is 1 then)
                if steps[0] % n_batches == 0:  # new batches every epoch
                    buckets[:] = length_batches(seq_len, config.batch_size, self.rng_)
                rows = buckets[int(rows[0])]
            steps[0] += 1
            word, frozen, shape, lengths, mask, index, chars = self._batch(feats, rows,
                                                                           train=True)
            logits = self.net_(word, frozen, shape, lengths, chars)
            if not self.crf:
                ce = soft_cross_entropy(logits[mask], y_t[index[mask]], class_weight)
                return ce * (mask.sum() / token_norm) if self.bucket else ce
            q = q_all[index] * mask[..., None]
            nll = crf_soft_nll(logits, q, mask, *self.net_.chain(), allowed_start,
                               allowed_trans)
            # per token, as the cross-entropy
            return nll / (token_norm if self.bucket else mask.sum())

        validate = None
        best_avg: dict[str, Any] = {"f1": None, "state": None}
        if valid is not None:
            v_tokens, v_tags = valid
            v_off = np.concatenate([[0], np.cumsum([len(s) for s in v_tokens])])
            v_feats = self._featurize(split_long(v_tokens, self.max_length))
            v_tags = np.asarray(v_tags, dtype=np.int64)

            def validate() -> dict[str, float]:
                with self._averaged(params, ema):
                    pred = self._decode(self._emissions(v_feats), v_feats["offsets"])
                f1 = span_scores(v_tags, pred, v_off, scheme).f1
                if ema and (best_avg["f1"] is None or f1 > best_avg["f1"]):
                    best_avg["f1"], best_avg["state"] = f1, [e.clone() for e in ema]
                return {"span_f1": f1}

        result: TrainResult = Trainer(
            TrainerConfig.from_options(config, batch_size=1) if self.bucket else config).fit(
            self.net_, batch_loss, n_batches if self.bucket else n_seq, validate=validate,
            seed=self.seed, device=self.device)
        if ema:  # predict with the average of the picked epoch (the last one without valid)
            with torch.no_grad():
                for p, e in zip(params, best_avg["state"] or ema, strict=True):
                    p.copy_(e)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.n_train_sequences_ = len(tokens)
        return self

    def _fit_ensemble(self, tokens: Sequence[Sequence[str]], Y: Any,
                      valid: tuple[Sequence[Sequence[str]], Any] | None) -> SequenceTagger:
        # members: the same tagger with seeds seed, seed + 1, ...; each picks its own epoch
        params = {k: v for k, v in vars(self).items()
                  if not k.endswith("_") and k not in ("train_options", "seed", "ensemble")}
        members = [SequenceTagger(**params, seed=self.seed + i, ensemble=1,
                                  **self.train_options).fit(tokens, Y, valid=valid)
                   for i in range(self.ensemble)]
        first = members[0]
        for name in ("scheme_", "rng_", "vocab_", "suffix_vocab_", "char_vocab_",
                     "vector_fn_", "frozen_", "frozen_dim_", "net_", "history_",
                     "best_epoch_", "n_train_sequences_"):
            setattr(self, name, getattr(first, name))
        self.nets_ = [m.net_ for m in members]
        self.histories_ = [m.history_ for m in members]
        return self

    @staticmethod
    @contextmanager
    def _averaged(params: list[nn.Parameter], ema: list[torch.Tensor]) -> Iterator[None]:
        """Swap the averaged weights into the network for the block (no-op without them)."""
        if not ema:
            yield
            return
        with torch.no_grad():
            current = [p.detach().clone() for p in params]
            for p, e in zip(params, ema, strict=True):
                p.copy_(e)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, c in zip(params, current, strict=True):
                    p.copy_(c)

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("this SequenceTagger is not fitted; call fit(tokens, Y) first")

    def _make_net(self) -> _TaggerNet:
        return _TaggerNet(len(self.vocab_) + 2, max(self.word_dim, 1), self.frozen_dim_,
                          self.hidden, self.scheme_.n_tags, self.dropout,
                          len(self.suffix_vocab_) + 2, self.suffix_dim,
                          len(self.char_vocab_) + 2, self.char_filters, self.crf)

    def _crf_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Log start and transition scores for decoding: learned (CRF) plus BIO constraints."""
        s = self.scheme_
        start = np.where(s.allowed_starts(), 0.0, -np.inf)
        trans = np.where(s.allowed_transitions(), 0.0, -np.inf)
        if self.crf:  # an ensemble scores a sequence by its members' mean score
            nets = self.nets_
            for net in nets:
                learned_start, learned_trans = net.chain()
                start = start + learned_start.detach().double().cpu().numpy() / len(nets)
                trans = trans + learned_trans.detach().double().cpu().numpy() / len(nets)
        return start, trans

    def _logits(self, feats: dict[str, Any], batch: int = 64) -> np.ndarray:
        """``(n_tokens, K)`` raw tag scores of the network (an ensemble: the members' mean),
        in token order."""
        off = feats["offsets"]
        out = np.zeros((int(off[-1]), self.scheme_.n_tags), dtype=np.float64)
        nets = self.nets_
        for net in nets:
            net.eval()
        with torch.no_grad():
            order = np.argsort(np.diff(off))
            for b in range(0, off.size - 1, batch):
                word, frozen, shape, lengths, mask, index, chars = self._batch(
                    feats, order[b:b + batch])
                logits = sum(net(word, frozen, shape, lengths, chars) for net in nets)
                out[index[mask].cpu().numpy()] = (logits[mask] / len(nets)).double().cpu().numpy()
        return out

    def _emissions(self, feats: dict[str, Any]) -> np.ndarray:
        """Per-token decoding scores: log-softmax, or the CRF's emission scores."""
        z = self._logits(feats)
        if self.crf:
            return z
        return z - np.logaddexp.reduce(z, axis=1, keepdims=True)  # type: ignore[no-any-return]

    def _proba(self, emissions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        if not self.crf:
            return np.exp(emissions)  # type: ignore[no-any-return]
        start, trans = self._crf_scores()
        return forward_backward(emissions, offsets, np.exp(start), np.exp(trans))[0]

    def _decode(self, scores: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        start, trans = self._crf_scores()
        return viterbi(scores, offsets, start, trans)

    def predict_proba(self, tokens: Sequence[Sequence[str]]) -> np.ndarray:
        """``(n_tokens, K)`` tag probabilities of every token, in order (with ``crf``: the
        chain's marginals)."""
        self._check_fitted()
        feats = self._featurize(split_long(tokens, self.max_length))
        return self._proba(self._emissions(feats), feats["offsets"])

    def predict(self, tokens: Sequence[Sequence[str]]) -> np.ndarray:
        """``(n_tokens,)`` tags: the best valid BIO sequence under the tagger's scores."""
        self._check_fitted()
        feats = self._featurize(split_long(tokens, self.max_length))
        return self._decode(self._emissions(feats), feats["offsets"])

    def score(self, tokens: Sequence[Sequence[str]], Y: Any) -> SpanScores:
        """Span P/R/F1 of the predicted tags against gold tags ``Y`` (flat, in order)."""
        pred = self.predict(tokens)
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in tokens])]).astype(np.int64)
        return span_scores(Y, pred, check_offsets(offsets, pred.size), self.scheme_)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """Write the fitted tagger as ``.npz`` (weights, vocabulary) + JSON header; no pickle.

        The frozen word vectors are not stored: :meth:`load` recomputes them from the same
        offline source, so only the built-in ``vectors`` (``"wordllama"``, ``"none"``) can be
        saved.
        """
        self._check_fitted()
        if not isinstance(self.vectors, str):
            raise ConfigError("this SequenceTagger uses a custom vectors callable, which "
                              "cannot be saved; use vectors='wordllama' or 'none' to save")
        trainer = self.trainer
        if isinstance(trainer, TrainerConfig):
            trainer = trainer.to_dict()
        params = {"tag_names": list(self.scheme_.tag_names), "hidden": self.hidden,
                  "word_dim": self.word_dim, "min_count": self.min_count,
                  "suffix_dim": self.suffix_dim, "char_filters": self.char_filters,
                  "crf": self.crf,
                  "word_dropout": self.word_dropout, "dropout": self.dropout,
                  "max_length": self.max_length, "entity_weight": self.entity_weight,
                  "average": self.average, "bucket": self.bucket,
                  "ensemble": self.ensemble,
                  "vectors": self.vectors, "trainer": trainer, "seed": self.seed,
                  "device": self.device, "train_options": self.train_options,
                  "frozen_dim": self.frozen_dim_, "history": self.history_,
                  "best_epoch": self.best_epoch_}
        vocab = np.asarray(sorted(self.vocab_, key=self.vocab_.__getitem__), dtype=str)
        suffixes = np.asarray(sorted(self.suffix_vocab_, key=self.suffix_vocab_.__getitem__),
                              dtype=str)
        save_arrays(path, SAVE_KIND, params,
                    {"vocab": vocab, "suffixes": suffixes,
                     "chars": np.asarray(sorted(self.char_vocab_, key=self.char_vocab_.__getitem__),
                                         dtype=str),
                     **{k: v for i, net in enumerate(self.nets_) for k, v in
                        state_to_arrays(net.state_dict(), f"state{i or ''}/").items()}})

    @classmethod
    def load(cls, path: str) -> SequenceTagger:
        """Load a tagger written by :meth:`save`."""
        params, arrays = load_arrays(path, SAVE_KIND)
        frozen_dim = int(params.pop("frozen_dim"))
        history, best_epoch = params.pop("history"), params.pop("best_epoch")
        options = params.pop("train_options")
        model = cls(params.pop("tag_names"), **params, **options)
        model.scheme_ = TagScheme.from_tags(model.tag_names)
        model.vocab_ = {str(w): i + 2 for i, w in enumerate(arrays["vocab"].tolist())}
        model.suffix_vocab_ = {str(w): i + 2
                               for i, w in enumerate(arrays["suffixes"].tolist())}
        model.char_vocab_ = {str(c): i + 2 for i, c in enumerate(arrays["chars"].tolist())}
        model.vector_fn_ = model._vector_fn()
        model.frozen_ = {}
        model.frozen_dim_ = frozen_dim
        model.rng_ = np.random.default_rng(model.seed)
        model.nets_ = []
        for i in range(model.ensemble):
            net = model._make_net()
            net.load_state_dict(arrays_to_state(arrays, f"state{i or ''}/"))
            model.nets_.append(net.to(torch.device(model.device)))
        model.net_ = model.nets_[0]
        model.history_, model.best_epoch_ = history, best_epoch
        return model

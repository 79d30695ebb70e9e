"""Label models for token-level weak labels: per-token majority vote and a BIO hidden Markov model.

Input everywhere is a flat token label matrix ``L`` (``(n_tokens, m)``, tag index or ``-1``)
plus sentence ``offsets`` (see :func:`metal.data.load_wrench_sequence`).

:class:`SequenceLabelModel` treats the true tags as a Markov chain (transitions restricted to
valid BIO) and every source as a noisy channel with its own confusion matrix
``P(source emits v | true tag s)``, where "abstains" is one of the values it can emit, so a
dictionary's silence on a token is evidence too, weighed by how often that source misses
entities. Given the sentences' words it also emits each (lower-cased) word from a per-tag
unigram distribution, as a classic HMM tagger does: the votes say where the entities may be,
the words learn which voted words are rarely entities ("patients", "the") and which type a
word usually takes. Transitions and emissions are fitted by EM (forward-backward) without
labels, starting from majority vote. Prediction decodes the most probable valid BIO sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from metal._io import load_arrays, save_arrays
from metal.errors import ConfigError, LabelMatrixError, NotFittedError
from metal.metrics import probs_to_preds
from metal.sequence.inference import forward_backward, viterbi
from metal.sequence.metrics import SpanScores, span_scores
from metal.sequence.tags import TagScheme, check_offsets

SAVE_KIND = "SequenceLabelModel"


def check_token_matrix(L: Any, offsets: Any, n_tags: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a token label matrix and its offsets; returns ``(L as int64, offsets)``."""
    if sp.issparse(L):
        raise LabelMatrixError("sequence label models take a dense (n_tokens, m) token label "
                               "matrix; convert with .toarray() and mark abstains -1")
    arr = np.asarray(L)
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise LabelMatrixError(f"L has shape {arr.shape} and dtype {arr.dtype}; expected an "
                               "integer (n_tokens, m) matrix of tag indices, -1 = abstain")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < -1 or arr.max() >= n_tags):
        raise LabelMatrixError(f"L holds values from {int(arr.min())} to {int(arr.max())}; "
                               f"expected -1 (abstain) or a tag index 0..{n_tags - 1}")
    return arr, check_offsets(offsets, arr.shape[0])


def vote_support(L: np.ndarray, scheme: TagScheme) -> np.ndarray:
    """``(n_tokens, K)`` bool: the tags a token may take when votes decide what is an entity.

    A token some source votes on may take the ``B-``/``I-`` tags of any type voted there (not
    ``O``); a token nobody votes on is ``O``.
    """
    k, n_types = scheme.n_tags, len(scheme.types)
    counts = token_vote_counts(L, k)
    entity = scheme.entity_type >= 0
    by_type = counts[:, entity] @ (scheme.entity_type[entity][:, None]
                                   == np.arange(n_types)[None, :])
    ok = np.zeros((L.shape[0], k), dtype=bool)
    ok[:, entity] = by_type[:, scheme.entity_type[entity]] > 0
    ok[:, scheme.outside] = ~ok.any(axis=1)
    return ok


def token_vote_counts(L: np.ndarray, n_tags: int) -> np.ndarray:
    """``(n_tokens, K)`` number of sources voting each tag (abstains not counted)."""
    rows, cols = np.nonzero(L >= 0)
    return sp.csr_matrix((np.ones(rows.size), (rows, L[rows, cols])),
                         shape=(L.shape[0], n_tags)).toarray()


class TokenMajorityVoter:
    """Per-token majority vote over the sources that vote; a token nobody votes on is ``O``.

    Each token is an independent item (no BIO consistency): this is the baseline sequence
    label models are measured against. Ties are broken at random (seeded).

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[1, 1, -1], [2, -1, -1], [-1, -1, -1]])
    >>> TokenMajorityVoter(["O", "B-PER", "I-PER"]).predict(L, [0, 3]).tolist()
    [1, 2, 0]
    """

    def __init__(self, tag_names: Sequence[str], *, seed: int = 0) -> None:
        self.tag_names = tag_names
        self.seed = seed

    def fit(self, L: Any, offsets: Any) -> TokenMajorityVoter:
        check_token_matrix(L, offsets, len(self.tag_names))
        return self

    def predict_proba(self, L: Any, offsets: Any) -> np.ndarray:
        scheme = TagScheme.from_tags(self.tag_names)
        arr, _ = check_token_matrix(L, offsets, scheme.n_tags)
        counts = token_vote_counts(arr, scheme.n_tags)
        total = counts.sum(axis=1)
        counts[total == 0, scheme.outside] = 1.0
        return counts / counts.sum(axis=1, keepdims=True)

    def predict(self, L: Any, offsets: Any) -> np.ndarray:
        return probs_to_preds(self.predict_proba(L, offsets), "random", seed=self.seed)

    def score(self, L: Any, offsets: Any, Y: Any) -> SpanScores:
        return span_scores(Y, self.predict(L, offsets), offsets, self.tag_names)


class SequenceLabelModel:
    """Hidden Markov label model over BIO tags with one confusion matrix per source.

    Parameters
    ----------
    tag_names
        The tags, e.g. ``["O", "B-PER", "I-PER", ...]`` (``SequenceSplit.tag_names``).
    n_iter
        Maximum EM iterations.
    tol
        Stop when the per-token log-likelihood improves by less than this.
    prior_strength
        Pseudo-tokens of the Dirichlet prior on each row of each confusion matrix. The prior
        says "a source that votes is usually right, and it abstains on most tokens of every
        tag"; it keeps rarely-firing sources from getting extreme confusions.
    prior_accuracy
        The share of the prior's non-abstain mass on the correct tag (the rest is spread over
        the other tags).
    transition_prior
        Pseudo-counts added to every allowed transition.
    word_emission
        Model the words too when ``fit`` is given the sentences' ``tokens`` (then ``predict``
        needs them as well). Every word seen in fit has its own row; a word not seen in fit
        gets only the prior's share, which favours the tags with few tokens (unseen words are
        more often names than function words).
    word_prior
        Pseudo-count of every (word, tag) pair of the word emission.
    restrict_to_votes
        Decode entity tags only at tokens where some source votes that entity type (a token
        no source votes on is ``O``).
    outside_where_voted
        With ``restrict_to_votes``, also allow ``O`` at voted tokens (so a vote of an
        unreliable source can be overruled); ``False`` makes every voted token an entity.
    restrict_in_fit
        Apply the same restriction in the EM fit.
    decode
        ``"viterbi"``: the most probable valid BIO sequence under the HMM;
        ``"marginal"``: the valid BIO sequence maximising the sum of log posterior marginals
        (closer to per-token accuracy).
    seed
        Seed for tie-breaking in the majority-vote start.

    Attributes
    ----------
    emission_
        ``(m, K, K + 1)`` fitted ``P(source emits v | tag s)``; ``v = K`` is "abstains".
    start_, transition_
        ``(K,)`` and ``(K, K)`` fitted start and transition probabilities.
    n_iter_, loglik_
        EM iterations run and the per-token log-likelihood history.

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[1, 1], [2, -1], [-1, -1], [1, -1]])
    >>> m = SequenceLabelModel(["O", "B-PER", "I-PER"], n_iter=5).fit(L, [0, 4])
    >>> m.predict(L, [0, 4]).tolist()
    [1, 2, 0, 1]
    """

    def __init__(
        self,
        tag_names: Sequence[str],
        *,
        n_iter: int = 50,
        tol: float = 1e-5,
        prior_strength: float = 10.0,
        prior_accuracy: float = 0.9,
        transition_prior: float = 1.0,
        word_emission: bool = True,
        word_prior: float = 1.0,
        restrict_to_votes: bool = True,
        outside_where_voted: bool = True,
        restrict_in_fit: bool = True,
        decode: str = "viterbi",
        seed: int = 0,
    ) -> None:
        self.tag_names = tag_names
        self.n_iter = n_iter
        self.tol = tol
        self.prior_strength = prior_strength
        self.prior_accuracy = prior_accuracy
        self.transition_prior = transition_prior
        self.word_emission = word_emission
        self.word_prior = word_prior
        self.restrict_to_votes = restrict_to_votes
        self.outside_where_voted = outside_where_voted
        self.restrict_in_fit = restrict_in_fit
        self.decode = decode
        self.seed = seed

    # ------------------------------------------------------------------ helpers
    def _scheme(self) -> TagScheme:
        if self.decode not in ("viterbi", "marginal"):
            raise ConfigError(f"decode={self.decode!r}; expected 'viterbi' or 'marginal'")
        if not 0.0 < self.prior_accuracy <= 1.0 or self.prior_strength < 0 \
                or self.transition_prior < 0 or self.n_iter < 0 or self.word_prior <= 0:
            raise ConfigError("expected 0 < prior_accuracy <= 1, prior_strength >= 0, "
                              "transition_prior >= 0, word_prior > 0 and n_iter >= 0")
        return TagScheme.from_tags(self.tag_names)

    @staticmethod
    def _observations(L: np.ndarray, k: int) -> sp.csr_matrix:
        """``(n, m * (K + 1))`` one-hot of every source's emitted value (abstain = ``K``)."""
        n, m = L.shape
        obs = np.where(L < 0, k, L) + (k + 1) * np.arange(m)[None, :]
        return sp.csr_matrix((np.ones(n * m), obs.ravel(), np.arange(0, n * m + 1, m)),
                             shape=(n, m * (k + 1)))

    def _emission_prior(self, scheme: TagScheme, abstain_rate: np.ndarray) -> np.ndarray:
        """``(m, K, K + 1)`` Dirichlet pseudo-counts; abstain mass from each source's rate."""
        k = scheme.n_tags
        m = abstain_rate.size
        vote = np.full((k, k), (1.0 - self.prior_accuracy) / max(k - 1, 1))
        np.fill_diagonal(vote, self.prior_accuracy)
        prior = np.empty((m, k, k + 1))
        prior[:, :, :k] = (1.0 - abstain_rate)[:, None, None] * vote[None]
        prior[:, :, k] = abstain_rate[:, None]
        return self.prior_strength * prior

    def _m_step(self, obs: sp.csr_matrix, gamma: np.ndarray, prior: np.ndarray) -> np.ndarray:
        m, k = prior.shape[0], prior.shape[1]
        counts = np.asarray(obs.T @ gamma).reshape(m, k + 1, k).transpose(0, 2, 1)
        counts = counts + prior
        return counts / counts.sum(axis=2, keepdims=True)

    def _transitions(self, scheme: TagScheme, start_counts: np.ndarray,
                     trans_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok_t, ok_s = scheme.allowed_transitions(), scheme.allowed_starts()
        t = np.where(ok_t, trans_counts + self.transition_prior, 0.0)
        s = np.where(ok_s, start_counts + self.transition_prior, 0.0)
        return s / s.sum(), t / t.sum(axis=1, keepdims=True)

    def _word_ids(self, tokens: Sequence[Sequence[str]] | None, n_tokens: int) -> np.ndarray | None:
        """Row of each token's lower-cased word in the word emission (0: not seen in fit)."""
        if not hasattr(self, "vocab_") or self.vocab_ is None:
            return None
        if tokens is None:
            raise LabelMatrixError("this SequenceLabelModel was fitted with the sentences' "
                                   "words (word_emission=True); pass the same kind of "
                                   "tokens to predict, or fit without tokens")
        flat = [w.lower() for sent in tokens for w in sent]
        if len(flat) != n_tokens:
            raise LabelMatrixError(f"tokens hold {len(flat)} words; L has {n_tokens} rows "
                                   "(one per token, in sentence order)")
        get = self.vocab_.get
        return np.fromiter((get(w, 0) for w in flat), dtype=np.int64, count=n_tokens)

    def _word_table(self, word_ids: np.ndarray, gamma: np.ndarray) -> np.ndarray:
        """``(V + 1, K)`` log ``P(word | tag)`` from expected counts plus the prior."""
        counts = np.zeros((int(word_ids.max(initial=0)) + 1 if self.vocab_ is None
                           else len(self.vocab_) + 1, gamma.shape[1]))
        np.add.at(counts, word_ids, gamma)
        counts += self.word_prior
        return np.log(counts / counts.sum(axis=0, keepdims=True))  # type: ignore[no-any-return]

    def _log_emit(self, L: np.ndarray, emission: np.ndarray, restrict: bool,
                  word_ids: np.ndarray | None = None,
                  word_table: np.ndarray | None = None) -> np.ndarray:
        m, k = emission.shape[0], emission.shape[1]
        table = np.log(emission).transpose(0, 2, 1).reshape(m * (k + 1), k)
        out = np.asarray(self._observations(L, k) @ table)
        if word_ids is not None and word_table is not None:
            out += word_table[word_ids]
        if restrict:
            ok = vote_support(L, self.scheme_)
            if self.outside_where_voted:
                ok[:, self.scheme_.outside] = True
            out[~ok] = -np.inf
        return out

    # ------------------------------------------------------------------ API
    def fit(self, L: Any, offsets: Any,
            tokens: Sequence[Sequence[str]] | None = None) -> SequenceLabelModel:
        """Fit transitions, source confusions (and word emissions) by EM without labels.

        ``tokens`` (the sentences' words, in row order) turns on the word emission when
        ``word_emission`` is true.
        """
        scheme = self._scheme()
        k = scheme.n_tags
        arr, off = check_token_matrix(L, offsets, k)
        self.scheme_ = scheme
        self.vocab_: dict[str, int] | None = None
        if self.word_emission and tokens is not None:
            seen = sorted({w.lower() for sent in tokens for w in sent})
            self.vocab_ = {w: i + 1 for i, w in enumerate(seen)}
        word_ids = self._word_ids(tokens, arr.shape[0])
        obs = self._observations(arr, k)
        abstain_rate = np.clip((arr < 0).mean(axis=0), 0.05, 0.995) if arr.size else \
            np.zeros(arr.shape[1])
        prior = self._emission_prior(scheme, abstain_rate)
        # start: majority vote as soft labels
        gamma = TokenMajorityVoter(self.tag_names, seed=self.seed).predict_proba(arr, off)
        first = gamma[off[:-1][np.diff(off) > 0]]
        same = np.ones(arr.shape[0] - 1, dtype=bool)
        same[off[1:-1] - 1] = False  # no bigram across sentence ends
        same = same[: max(arr.shape[0] - 1, 0)]
        bigram = gamma[:-1][same].T @ gamma[1:][same] if arr.shape[0] > 1 else np.zeros((k, k))
        start, trans = self._transitions(scheme, first.sum(axis=0), bigram)
        emission = self._m_step(obs, gamma, prior)
        words = None if word_ids is None else self._word_table(word_ids, gamma)
        history: list[float] = []
        n_tok = max(arr.shape[0], 1)
        it = 0
        for it in range(1, self.n_iter + 1):  # noqa: B007
            gamma, s_counts, t_counts, ll = forward_backward(
                self._log_emit(arr, emission, self.restrict_in_fit, word_ids, words), off,
                start, trans)
            history.append(ll / n_tok)
            emission = self._m_step(obs, gamma, prior)
            if word_ids is not None:
                words = self._word_table(word_ids, gamma)
            start, trans = self._transitions(scheme, s_counts, t_counts)
            if len(history) > 1 and abs(history[-1] - history[-2]) < self.tol:
                break
        self.emission_ = emission
        self.word_log_emission_ = words
        self.start_ = start
        self.transition_ = trans
        self.n_iter_ = it
        self.loglik_ = np.asarray(history)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "emission_"):
            raise NotFittedError("this SequenceLabelModel is not fitted; call fit(L, offsets) "
                                 "first")

    def _fitted_log_emit(self, L: Any, offsets: Any, tokens: Sequence[Sequence[str]] | None
                         ) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        k = self.scheme_.n_tags
        arr, off = check_token_matrix(L, offsets, k)
        if arr.shape[1] != self.emission_.shape[0]:
            raise LabelMatrixError(f"L has {arr.shape[1]} sources; the model was fitted on "
                                   f"{self.emission_.shape[0]}")
        return self._log_emit(arr, self.emission_, self.restrict_to_votes,
                              self._word_ids(tokens, arr.shape[0]),
                              self.word_log_emission_), off

    def predict_proba(self, L: Any, offsets: Any,
                      tokens: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """``(n_tokens, K)`` posterior tag marginals given all the sentence's votes (and words:
        ``tokens`` is required when the model was fitted with them)."""
        le, off = self._fitted_log_emit(L, offsets, tokens)
        return forward_backward(le, off, self.start_, self.transition_)[0]

    def predict(self, L: Any, offsets: Any,
                tokens: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """``(n_tokens,)`` tags of the best valid BIO sequence of each sentence."""
        le, off = self._fitted_log_emit(L, offsets, tokens)
        ok_t = self.scheme_.allowed_transitions()
        ok_s = self.scheme_.allowed_starts()
        with np.errstate(divide="ignore"):
            if self.decode == "viterbi":
                return viterbi(le, off, np.log(self.start_), np.log(self.transition_))
            post = np.log(np.maximum(
                forward_backward(le, off, self.start_, self.transition_)[0], 1e-300))
            return viterbi(post, off, np.where(ok_s, 0.0, -np.inf),
                           np.where(ok_t, 0.0, -np.inf))

    def score(self, L: Any, offsets: Any, Y: Any,
              tokens: Sequence[Sequence[str]] | None = None) -> SpanScores:
        return span_scores(Y, self.predict(L, offsets, tokens), offsets, self.tag_names)

    def save(self, path: str) -> None:
        """Write the fitted model as ``.npz`` + JSON header (no pickle)."""
        self._check_fitted()
        params = {"tag_names": list(self.scheme_.tag_names), "n_iter": self.n_iter,
                  "tol": self.tol, "prior_strength": self.prior_strength,
                  "prior_accuracy": self.prior_accuracy,
                  "transition_prior": self.transition_prior,
                  "word_emission": self.word_emission, "word_prior": self.word_prior,
                  "restrict_to_votes": self.restrict_to_votes,
                  "outside_where_voted": self.outside_where_voted,
                  "restrict_in_fit": self.restrict_in_fit, "decode": self.decode,
                  "seed": self.seed}
        arrays: dict[str, np.ndarray] = {"emission": self.emission_, "start": self.start_,
                  "transition": self.transition_, "loglik": self.loglik_}
        if self.vocab_ is not None and self.word_log_emission_ is not None:
            # fixed-width unicode, not object: readable with allow_pickle=False
            arrays["vocab"] = np.asarray(sorted(self.vocab_, key=self.vocab_.__getitem__),
                                         dtype=str)
            arrays["word_log_emission"] = self.word_log_emission_
        save_arrays(path, SAVE_KIND, params, arrays)

    @classmethod
    def load(cls, path: str) -> SequenceLabelModel:
        params, arrays = load_arrays(path, SAVE_KIND)
        model = cls(params.pop("tag_names"), **params)
        model.emission_ = arrays["emission"]
        model.start_ = arrays["start"]
        model.transition_ = arrays["transition"]
        model.loglik_ = arrays["loglik"]
        model.vocab_ = None
        model.word_log_emission_ = None
        if "vocab" in arrays:
            model.vocab_ = {str(w): i + 1 for i, w in enumerate(arrays["vocab"].tolist())}
            model.word_log_emission_ = arrays["word_log_emission"]
        model.n_iter_ = int(model.loglik_.size)
        model.scheme_ = TagScheme.from_tags(model.tag_names)
        return model

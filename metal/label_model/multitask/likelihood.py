"""The multi-task likelihood: EM over the feasible label vectors (:mod:`metal.label_model.em`).

Latent states are the rows of ``task_graph.feasible``. Each *unit* (a source, or a connected
group of dependent sources) emits one symbol per row: its members' whole vote vectors over
their coverage sets, **abstain included** (a fine source that is silent is a symbol too, so
its silence is evidence about the coarse level and a source that only fires on its own branch
is expressed exactly). ``P(symbol | state)`` is a free table per unit, so branch-specific
firing, sources voting on several levels and unipolar sources need no special case: this is
the Dawid-Skene model over the feasible set. Dependent sources in one unit are modelled by
their joint symbol, which is exact for any dependence inside the unit.

Symbols are the *observed* vote combinations of a unit (a vocabulary sorted by key), so the
table size is bounded by the data, never by the product of the members' value spaces.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from metal.errors import ConfigError
from metal.label_model.em import EMResult, em_log_posterior, fit_em, unique_rows
from metal.label_model.label_model import MetalWarning
from metal.label_model.multitask.coding import MultiTaskCoding, complete_votes, vote_agreement
from metal.label_model.multitask.votes import MultiTaskVotes

MAX_UNIT_KEY = 2**62


def source_codes(votes: MultiTaskVotes, coding: MultiTaskCoding,
                 chunk_rows: int) -> tuple[np.ndarray, int]:
    """``(n, m)`` int32 code of every source on every row (``n_values[i]`` = abstain).

    A vote outside the source's coverage (a task it never voted on in fit) counts as abstain;
    the second return value is how many such votes there were.
    """
    n_values = coding.n_values
    codes = np.empty((votes.n_rows, coding.n_sources), dtype=np.int32)
    n_outside = 0
    for ch in votes.iter_votes(chunk_rows):
        block = np.broadcast_to(n_values.astype(np.int32), (ch.stop - ch.start, n_values.size))
        block = block.copy()
        ind, ok = coding.encode(ch.sources, ch.votes)
        n_outside += int((~ok).sum())
        block[ch.rows[ok], ch.sources[ok]] = (ind - coding.offsets[ch.sources])[ok]
        codes[ch.start:ch.stop] = block
    return codes, n_outside


@dataclass
class Units:
    """Groups of sources modelled jointly (singletons when sources are independent)."""

    members: list[np.ndarray]
    radix: list[np.ndarray]  # mixed-radix weight of each member's code in the unit key

    @classmethod
    def build(cls, groups: Sequence[Sequence[int]], n_values: np.ndarray) -> Units:
        members, radix = [], []
        for g in groups:
            idx = np.asarray(sorted(int(i) for i in g), dtype=np.int64)
            base = n_values[idx].astype(object) + 1
            if int(np.prod(base)) >= MAX_UNIT_KEY:
                raise ConfigError(f"dependent sources {idx.tolist()} have too many joint vote "
                                  "combinations to key; split the dependency component")
            members.append(idx)
            radix.append(np.concatenate([[1], np.cumprod(base[:-1])]).astype(np.int64))
        return cls(members, radix)

    def keys(self, codes: np.ndarray) -> np.ndarray:
        """``(n, U)`` int64 key of each unit's joint symbol on each row."""
        out = np.empty((codes.shape[0], len(self.members)), dtype=np.int64)
        for u, (idx, w) in enumerate(zip(self.members, self.radix, strict=True)):
            out[:, u] = codes[:, idx].astype(np.int64) @ w
        return out


@dataclass
class SymbolTable:
    """The observed symbols of every unit: ``vocab[offsets[u]:offsets[u + 1]]`` (sorted keys)."""

    vocab: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_keys(cls, keys: np.ndarray) -> SymbolTable:
        vocabs = [np.unique(keys[:, u]) for u in range(keys.shape[1])]
        sizes = np.array([v.size for v in vocabs], dtype=np.int64)
        return cls(np.concatenate(vocabs), np.concatenate([[0], np.cumsum(sizes)]))

    @property
    def symbol_unit(self) -> np.ndarray:
        return np.repeat(np.arange(self.offsets.size - 1), np.diff(self.offsets))

    def one_hot(self, keys: np.ndarray) -> tuple[sp.csr_matrix, int]:
        """Sparse ``(n, S)`` one-hot of the rows' symbols; unseen symbols get no entry (no
        evidence). Returns the matrix and the number of unseen (row, unit) symbols."""
        n, U = keys.shape
        cols = np.empty((n, U), dtype=np.int64)
        seen = np.empty((n, U), dtype=bool)
        for u in range(U):
            lo, hi = self.offsets[u], self.offsets[u + 1]
            voc = self.vocab[lo:hi]
            pos = np.minimum(np.searchsorted(voc, keys[:, u]), voc.size - 1)
            seen[:, u] = voc[pos] == keys[:, u]
            cols[:, u] = lo + pos
        r = np.repeat(np.arange(n), U).reshape(n, U)
        A = sp.csr_matrix((np.ones(int(seen.sum())), (r[seen], cols[seen])),
                          shape=(n, int(self.offsets[-1])))
        return A, int((~seen).sum())


def symbol_agreement(symbols: SymbolTable, units: Units, coding: MultiTaskCoding,
                     feasible: np.ndarray) -> np.ndarray:
    """``(S, K)`` mean agreement of a symbol's votes (implied ones included) with each state;
    0 for an all-abstain symbol."""
    S, K = symbols.vocab.size, feasible.shape[0]
    agree = np.zeros((S, K))
    n_voting = np.zeros(S)
    unit_of = symbols.symbol_unit
    for u, (idx, w) in enumerate(zip(units.members, units.radix, strict=True)):
        sel = np.flatnonzero(unit_of == u)
        keys = symbols.vocab[sel]
        for j, i in enumerate(idx):
            code = (keys // w[j]) % (coding.n_values[i] + 1)
            votes_i = code < coding.n_values[i]
            if not votes_i.any():
                continue
            _, V = coding.decode(coding.offsets[i] + code[votes_i])
            agree[sel[votes_i]] += vote_agreement(complete_votes(V, feasible), feasible)
            n_voting[sel[votes_i]] += 1
    return agree / np.maximum(n_voting, 1)[:, None]


def pseudo_counts(A: sp.csr_matrix, weights: np.ndarray, symbols: SymbolTable,
                  agreement: np.ndarray, strength: float, tilt: float) -> np.ndarray:
    """``(S, K)`` Dirichlet pseudo-counts: ``strength`` rows' worth per (unit, state), spread
    over the unit's symbols by their frequency, tilted towards symbols that agree with the
    state ("better than random"). A constant amount of evidence, so it vanishes with n."""
    freq = np.asarray(A.T @ weights).ravel() + 1e-9
    q = freq[:, None] * np.exp(tilt * agreement)
    unit = symbols.symbol_unit
    total = np.zeros((symbols.offsets.size - 1, agreement.shape[1]))
    np.add.at(total, unit, q)
    out: np.ndarray = strength * q / total[unit]
    return out


@dataclass
class JointFit:
    """A fitted joint likelihood (what prediction and persistence need)."""

    units: Units
    symbols: SymbolTable
    log_tables: np.ndarray  # (S, K)
    log_prior: np.ndarray  # (K,)
    result: EMResult | None = None


def fit_joint_em(keys: np.ndarray, units: Units, coding: MultiTaskCoding, feasible: np.ndarray,
                 init_posterior: np.ndarray, *, log_prior: np.ndarray | None,
                 pseudo_count: float, tilt: float, max_iter: int, tol: float) -> JointFit:
    """EM from a starting posterior over the feasible set (rows deduplicated first).

    ``log_prior=None`` estimates the prior over the feasible vectors; an array fixes it.
    """
    symbols = SymbolTable.from_keys(keys)
    uniq, inverse, counts = unique_rows(keys)
    assert isinstance(uniq, np.ndarray)
    A, _ = symbols.one_hot(uniq)
    w = counts.astype(np.float64)
    # the start, averaged over each group of identical rows
    post = np.zeros((uniq.shape[0], feasible.shape[0]))
    np.add.at(post, inverse, init_posterior)
    post /= counts[:, None]
    agree = symbol_agreement(symbols, units, coding, feasible)
    pc = pseudo_counts(A, w, symbols, agree, pseudo_count, tilt)
    result = fit_em(A, symbols.symbol_unit, post, row_weights=w, pseudo_count=pc,
                    prior_pseudo_count=1.0, fit_prior=log_prior is None,
                    init_log_prior=log_prior, max_iter=max_iter, tol=tol)
    return JointFit(units, symbols, result.log_tables, result.log_prior, result)


def joint_log_posterior(fit: JointFit, keys: np.ndarray, stacklevel: int = 3) -> np.ndarray:
    """``(n, K)`` log posterior over the feasible vectors; unseen symbols carry no evidence."""
    A, n_unseen = fit.symbols.one_hot(keys)
    if n_unseen:
        warnings.warn(f"{n_unseen} (row, source) vote combinations were never seen in fit; they "
                      "were treated as no evidence. Refit on data that includes them.",
                      MetalWarning, stacklevel=stacklevel)
    log_post, _ = em_log_posterior(A, fit.symbols.symbol_unit, fit.log_tables, fit.log_prior)
    return log_post


__all__ = ["JointFit", "SymbolTable", "Units", "fit_joint_em", "joint_log_posterior",
           "pseudo_counts", "source_codes", "symbol_agreement"]

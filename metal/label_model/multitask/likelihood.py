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
from metal.label_model.em import (
    EMResult,
    TablesFromCounts,
    em_log_posterior,
    fit_em,
    unique_rows,
)
from metal.label_model.label_model import MetalWarning
from metal.label_model.multitask.coding import (
    MultiTaskCoding,
    agreement_projection,
    complete_votes,
    vote_agreement,
)
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

    def abstain_keys(self, n_values: np.ndarray) -> np.ndarray:
        """``(U,)`` the key of each unit when all its members abstain."""
        return np.array([int(n_values[idx].astype(np.int64) @ w)
                         for idx, w in zip(self.members, self.radix, strict=True)],
                        dtype=np.int64)

    def keys(self, codes: np.ndarray) -> np.ndarray:
        """``(n, U)`` int64 key of each unit's joint symbol on each row."""
        out = np.empty((codes.shape[0], len(self.members)), dtype=np.int64)
        for u, (idx, w) in enumerate(zip(self.members, self.radix, strict=True)):
            out[:, u] = codes[:, idx].astype(np.int64) @ w
        return out


@dataclass
class SymbolTable:
    """The observed vote symbols of every unit: ``vocab[offsets[u]:offsets[u + 1]]`` (sorted
    keys). A unit's all-abstain key is not in it: abstain is the EM engine's implicit symbol."""

    vocab: np.ndarray
    offsets: np.ndarray
    abstain_keys: np.ndarray  # (U,) the all-abstain key of each unit

    @classmethod
    def from_keys(cls, keys: np.ndarray, abstain_keys: np.ndarray) -> SymbolTable:
        vocabs = [np.setdiff1d(np.unique(keys[:, u]), abstain_keys[u:u + 1])
                  for u in range(keys.shape[1])]
        sizes = np.array([v.size for v in vocabs], dtype=np.int64)
        return cls(np.concatenate(vocabs).astype(np.int64),
                   np.concatenate([[0], np.cumsum(sizes)]), np.asarray(abstain_keys, np.int64))

    @property
    def n_units(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def symbol_unit(self) -> np.ndarray:
        return np.repeat(np.arange(self.offsets.size - 1), np.diff(self.offsets))

    def one_hot(self, keys: np.ndarray) -> tuple[sp.csr_matrix, int]:
        """Sparse ``(n, S)`` one-hot of the rows' vote symbols (abstentions store nothing).
        A symbol never seen in fit is stored as nothing too, i.e. read as an abstention;
        returns the matrix and the number of such (row, unit) symbols."""
        n, U = keys.shape
        rows, cols = [], []
        n_unseen = 0
        for u in range(U):
            lo, hi = self.offsets[u], self.offsets[u + 1]
            voted = np.flatnonzero(keys[:, u] != self.abstain_keys[u])
            if hi == lo:
                n_unseen += voted.size
                continue
            voc = self.vocab[lo:hi]
            pos = np.minimum(np.searchsorted(voc, keys[voted, u]), voc.size - 1)
            seen = voc[pos] == keys[voted, u]
            n_unseen += int((~seen).sum())
            rows.append(voted[seen])
            cols.append(lo + pos[seen])
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        A = sp.csr_matrix((np.ones(r.size), (r, c)), shape=(n, int(self.offsets[-1])))
        return A, n_unseen


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
    unit = symbol_unit = symbols.symbol_unit
    n_abstain = float(weights.sum()) - np.bincount(symbol_unit, weights=freq,
                                                   minlength=symbols.n_units)
    q = freq[:, None] * np.exp(tilt * agreement)
    total = np.zeros((symbols.n_units, agreement.shape[1]))
    np.add.at(total, unit, q)
    total += np.maximum(n_abstain, 1e-9)[:, None]
    out: np.ndarray = strength * q / total[unit]
    return out


def tied_m_step(levels: np.ndarray, symbol_unit: np.ndarray, n_units: int,
                min_abstain: float = 1e-3) -> TablesFromCounts:
    """M-step of the tied parameterisation: ``P(s | y) = theta[s, levels[s, y]]``.

    ``levels`` ranks each state's agreement with the symbol's votes (e.g. fine value right;
    coarse right, fine wrong; coarse wrong), so a unipolar fine source has three parameters
    instead of one per feasible vector. ``theta`` is the pooled expected count over the pooled
    row mass of the states of a level; the unit's abstain probability is the remainder (kept
    >= ``min_abstain``). For a unit with one vote symbol (a unipolar source) this is the exact
    maximiser; with several it is the usual pooled approximation.
    """
    S, K = levels.shape
    n_levels = int(levels.max()) + 1 if levels.size else 1
    cell = (np.arange(S)[:, None] * n_levels + levels).ravel()
    unit_sum = sp.csr_matrix((np.ones(S), (symbol_unit, np.arange(S))), shape=(n_units, S))

    def m_step(counts: np.ndarray, abstained: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray | None]:
        assert abstained is not None
        mass = np.asarray(unit_sum @ counts) + abstained  # (U, K) row mass per unit and state
        num = np.bincount(cell, weights=counts.ravel(), minlength=S * n_levels)
        den = np.bincount(cell, weights=mass[symbol_unit].ravel(), minlength=S * n_levels)
        probs = (num / np.maximum(den, 1e-300))[cell].reshape(S, K)
        total = np.asarray(unit_sum @ probs)
        scale = np.maximum(total / (1.0 - min_abstain), 1.0)
        probs = probs / scale[symbol_unit]
        with np.errstate(divide="ignore"):
            return np.log(probs), np.log(1.0 - total / scale)

    return m_step


@dataclass
class JointFit:
    """A fitted joint likelihood (what prediction and persistence need)."""

    units: Units
    symbols: SymbolTable
    log_tables: np.ndarray  # (S, K) log P(vote symbol | state)
    log_abstain: np.ndarray  # (U, K) log P(unit abstains | state)
    log_prior: np.ndarray  # (K,)
    result: EMResult | None = None
    agreement: np.ndarray | None = None  # (S, K), set by fit_joint_em
    vote_counts: np.ndarray | None = None  # (S,) votes per symbol in fit
    log_likelihood: float = 0.0  # of the fitted rows (pseudo-count terms excluded)
    n_rows: float = 0.0
    n_classes: int = 0  # classes of indistinguishable states EM ran over (0: not recorded)
    row_weights: np.ndarray | None = None  # (n_unique,) counts of the fitted unique rows


def fit_joint_em(keys: np.ndarray, units: Units, coding: MultiTaskCoding, feasible: np.ndarray,
                 init_posterior: np.ndarray, *, log_prior: np.ndarray | None,
                 pseudo_count: float, tilt: float, max_iter: int, tol: float,
                 tables: str = "free") -> JointFit:
    """EM from a starting posterior over the feasible set (rows deduplicated first).

    ``log_prior=None`` estimates the prior over the feasible vectors; an array fixes it.
    """
    symbols = SymbolTable.from_keys(keys, units.abstain_keys(coding.n_values))
    uniq, inverse, counts = unique_rows(keys)
    assert isinstance(uniq, np.ndarray)
    A, _ = symbols.one_hot(uniq)
    w = counts.astype(np.float64)
    K = feasible.shape[0]
    agree = symbol_agreement(symbols, units, coding, feasible)
    # EM runs over the classes of states that no observed symbol tells apart (see
    # indistinguishable_states); the class tables and prior are expanded back to the states
    state_class, n_classes = indistinguishable_states(agree)
    member = sp.csr_matrix((np.ones(K), (np.arange(K), state_class)), shape=(K, n_classes))
    size = np.asarray(member.sum(axis=0)).ravel()
    rep = np.zeros(n_classes, dtype=np.int64)
    rep[state_class[::-1]] = np.arange(K)[::-1]  # first state of each class
    agree_c = agree[:, rep]
    # the start, averaged over each group of identical rows and summed over each class
    post = np.zeros((uniq.shape[0], K))
    np.add.at(post, inverse, init_posterior)
    post /= counts[:, None]
    post = np.asarray(post @ member)
    class_log_prior = None
    if log_prior is not None:  # a given prior: its class totals (the split is kept on expansion)
        class_log_prior = np.log(np.asarray(np.exp(log_prior) @ member).ravel())
    pc = pseudo_counts(A, w, symbols, agree_c, pseudo_count, tilt)
    m_step = None
    if tables in ("tied", "exact"):
        m_step = tied_m_step(table_levels(agree_c, tables), symbols.symbol_unit,
                             symbols.n_units)
    elif tables == "projected":
        m_step = tied_m_step(unit_partition(agree_c, symbols.symbol_unit, symbols.n_units),
                             symbols.symbol_unit, symbols.n_units)
    result = fit_em(A, symbols.symbol_unit, post, row_weights=w, pseudo_count=pc,
                    prior_pseudo_count=1.0, fit_prior=log_prior is None,
                    init_log_prior=class_log_prior, max_iter=max_iter, tol=tol,
                    implicit_abstain=True, abstain_pseudo_count=float(pseudo_count),
                    n_sources=symbols.n_units, tables_from_counts=m_step)
    assert result.log_abstain is not None
    _, log_marginal = em_log_posterior(A, symbols.symbol_unit, result.log_tables,
                                       result.log_prior, result.log_abstain)
    if log_prior is None:  # no evidence splits a class: its members share its mass equally
        full_log_prior = result.log_prior[state_class] - np.log(size[state_class])
    else:
        full_log_prior = np.asarray(log_prior, dtype=np.float64)
    return JointFit(units, symbols, result.log_tables[:, state_class],
                    result.log_abstain[:, state_class], full_log_prior, result, agree,
                    np.asarray(A.T @ w).ravel(), float(w @ log_marginal), float(w.sum()),
                    n_classes, w)


def table_levels(agreement: np.ndarray, tables: str) -> np.ndarray:
    """``(S, K)`` level of each state in a symbol's tied table.

    ``"tied"``: one level per degree of agreement with the symbol's votes
    (:func:`agreement_projection`). ``"exact"``: two levels, the states the symbol agrees with
    most (its vote read as a label vector) and all others: the one-coin model, one probability
    of the symbol under the truths it names and one under every other truth.
    """
    if tables == "exact":
        top = agreement >= agreement.max(axis=1, keepdims=True) - 1e-9
        return np.where(top, 1, 0).astype(np.int64)
    return agreement_projection(agreement)


def unit_partition(agreement: np.ndarray, symbol_unit: np.ndarray,
                   n_units: int) -> np.ndarray:
    """``(S, K)`` label of each state in its symbol's *unit partition*: states with the same
    agreement with every symbol of the unit share a label.

    The projected parameterisation: a unit's table depends on the truth only through what
    its own votes can tell apart (a coarse source sees the coarse type; a unipolar fine source
    sees "its type / its parent's other types / elsewhere"), with a free table over the parts.
    All symbols of a unit share the partition, so pooling counts per part is the exact M-step.
    """
    levels = np.round(agreement * 1e6).astype(np.int64)
    out = np.zeros(levels.shape, dtype=np.int64)
    for u in range(n_units):
        sel = np.flatnonzero(symbol_unit == u)
        if sel.size:
            _, label = np.unique(levels[sel].T, axis=0, return_inverse=True)
            out[sel] = label.ravel()[None, :]
    return out


def indistinguishable_states(agreement: np.ndarray) -> tuple[np.ndarray, int]:
    """``(K,)`` class of each state, and the number of classes: states whose agreement with
    every observed symbol is the same.

    No source's vote tells such states apart (e.g. "no finer type" and every fine type that
    no source names, below a coarse type that sources do name), so the votes cannot identify
    how the mass splits between them, nor give them different tables: with free tables the
    extra states would be unanchored mixture components that drift to whatever clusters of
    firing patterns raise the likelihood, and the prior between them would follow the start.
    They share one table and split their class's prior mass equally.
    """
    levels = np.round(agreement * 1e6).astype(np.int64)
    if levels.shape[0] == 0:
        return np.zeros(agreement.shape[1], dtype=np.int64), 1
    _, first, inverse = np.unique(levels.T, axis=0, return_index=True, return_inverse=True)
    # number classes in the order of their first state (stable, readable)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse.ravel()].astype(np.int64), int(first.size)


def start_agreement(fits: Sequence[JointFit]) -> float:
    """Share of the rows (weighted) on which every fit gives the same most probable class of
    states (1.0 for a single fit): EM from different starts reaching different labels means
    the votes do not identify the model."""
    if len(fits) < 2:
        return 1.0
    best = []
    for f in fits:
        assert f.result is not None
        best.append(f.result.posterior.argmax(axis=1))
    weights = fits[0].row_weights
    assert weights is not None
    same = np.all([b == best[0] for b in best[1:]], axis=0)
    return float(weights[same].sum() / max(float(weights.sum()), 1e-300))


def n_parameters(fit: JointFit, tables: str) -> int:
    """Free parameters of a fitted joint likelihood (for the BIC): per unit and state, its
    symbols' probabilities (free tables), or per symbol one per agreement level (tied) or per
    part of its unit's partition (projected), plus the prior."""
    K = fit.n_classes or fit.log_prior.shape[0]
    if tables in ("tied", "exact", "projected"):
        assert fit.agreement is not None
        levels = (table_levels(fit.agreement, tables) if tables != "projected" else
                  unit_partition(fit.agreement, fit.symbols.symbol_unit, fit.symbols.n_units))
        n_tables = int(sum(np.unique(row).size for row in levels))
    else:
        n_tables = int(fit.symbols.vocab.size) * K
    return n_tables + K - 1


def degenerate_share(fit: JointFit, vote_counts: np.ndarray) -> float:
    """Share of the votes cast with symbols the fit does not treat as better than random: the
    states that agree most with the symbol do not hold its largest probability."""
    agree = fit.agreement
    assert agree is not None
    top = agree >= agree.max(axis=1, keepdims=True) - 1e-9
    best_top = np.where(top, fit.log_tables, -np.inf).max(axis=1)
    best_other = np.where(top, -np.inf, fit.log_tables).max(axis=1)
    bad = best_other > best_top + 1e-9
    total = float(vote_counts.sum())
    return float(vote_counts[bad].sum()) / total if total > 0 else 0.0


def joint_log_posterior(fit: JointFit, keys: np.ndarray, stacklevel: int = 3) -> np.ndarray:
    """``(n, K)`` log posterior over the feasible vectors; unseen symbols carry no evidence."""
    A, n_unseen = fit.symbols.one_hot(keys)
    if n_unseen:
        warnings.warn(f"{n_unseen} (row, source) vote combinations were never seen in fit; they "
                      "were treated as abstentions. Refit on data that includes them.",
                      MetalWarning, stacklevel=stacklevel)
    log_post, _ = em_log_posterior(A, fit.symbols.symbol_unit, fit.log_tables, fit.log_prior,
                                   fit.log_abstain)
    return log_post


__all__ = ["JointFit", "SymbolTable", "Units", "fit_joint_em", "joint_log_posterior",
           "pseudo_counts", "source_codes", "symbol_agreement", "degenerate_share",
           "n_parameters", "table_levels", "tied_m_step"]

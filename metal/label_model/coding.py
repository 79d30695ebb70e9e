"""How raw votes become indicator variables, and how fitted indicators become factor tables.

Every source is a *singleton group* whose codes are its class labels ``0..k-1`` (abstain is the
dropped value). When the user declares dependencies, every maximal clique ``C`` (``|C| >= 2``)
of the triangulated dependency graph is an extra *clique group* whose codes are the joint values
of its members on which at least two members vote, coded ``sum_j (v_j + 1) (k+1)^j - 1``
(``-1`` = abstain). Values with fewer than two voters are already described by the singletons,
so the indicator set is minimal (no exact linear dependence between indicators) while spanning
the statistics of every sub-clique (MeTaL's ``psi(C)``).

Estimation (index set Omega). The moments of two indicators factorise given ``Y``
(``E[psi_a psi_b] = sum_y p_y mu_a(y) mu_b(y)``) exactly when their sources lie in different
connected components of the dependency graph: sources joined by a path of dependencies are
dependent given ``Y`` alone, even when they share no edge (a chain ``0 - 1 - 2`` correlates 0
with 2). Omega is therefore the set of pairs from different components, and each singleton and
clique is its own softmax factor.

Prediction (junction tree). Given ``Y`` the votes factorise over the junction tree:
``log P(lambda | y) = sum_C log P(lambda_C | y) - sum_S log P(lambda_S | y)``. Each clique's
full table (``(k+1)^|C|`` values) is assembled from its clique indicators (>= 2 voters), its
members' singleton indicators (exactly one voter: the singleton probability minus the clique
values that extend it) and the remainder (no voter). A separator's table is the marginal of the
*child* clique's table, so every child contributes an exact conditional
``P(lambda_{C \\ S} | lambda_S, y)`` and the product is a normalised distribution.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.sparse as sp

from metal.errors import ConfigError
from metal.label_model.dense import dense_applicable, dense_statistics
from metal.label_model.dependencies import (
    JunctionTree,
    build_junction_tree,
    resolve_dependency_graph,
    resolve_source_nodes,
)
from metal.label_model.statistics import SourceStatistics
from metal.matrix import LabelMatrix, VoteChunk

MAX_GROUP_CODES = 1_000_000

__all__ = ["MAX_GROUP_CODES", "FactorTables", "SourceCoding", "resolve_source_nodes"]


def _expand_memberships(
    chunk: VoteChunk, starts: np.ndarray, n_memb: np.ndarray, memb_group: np.ndarray,
    memb_weight: np.ndarray, n_groups: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every (row, group) with a voting member: local row, group, code + 1, voter count."""
    rows = chunk.rows - chunk.start
    reps = n_memb[chunk.cols]
    if reps.sum() == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    vote_idx = np.repeat(np.arange(chunk.cols.size), reps)
    # position of each repeated vote inside its source's membership list
    within = np.arange(vote_idx.size) - np.repeat(np.cumsum(reps) - reps, reps)
    memb = starts[chunk.cols[vote_idx]] + within
    grp = memb_group[memb]
    key = rows[vote_idx] * n_groups + grp
    uniq, inv = np.unique(key, return_inverse=True)
    code = np.bincount(inv, weights=(chunk.values[vote_idx] + 1) * memb_weight[memb])
    voters = np.bincount(inv)
    return uniq // n_groups, uniq % n_groups, code.astype(np.int64), voters.astype(np.int64)


def _membership_index(sets: Sequence[Sequence[int]], n_sources: int, base: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR-like lists of (group, digit weight) per source for the given member sets."""
    pairs = sorted((s, g, base**j) for g, members in enumerate(sets)
                   for j, s in enumerate(members))
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    grp = np.array([p[1] for p in pairs], dtype=np.int64)
    weight = np.array([p[2] for p in pairs], dtype=np.int64)
    n_memb = np.bincount(src, minlength=n_sources).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(n_memb)[:-1]]).astype(np.int64)
    return starts, n_memb, grp, weight


def _digits(n_members: int, base: int) -> np.ndarray:
    """``(base^r, r)`` digits of every joint value code (little-endian), value-1 = vote."""
    return np.array(list(itertools.product(range(base), repeat=n_members)),
                    dtype=np.int64)[:, ::-1]


def _voter_marginals(table: np.ndarray, r: int, base: int) -> np.ndarray:
    """``out[code] = P(the members voting in code vote as in code | y)`` (others free)."""
    digits = _digits(r, base)
    voted = digits > 0
    weights = base ** np.arange(r)
    out = np.empty_like(table)
    for A in range(2**r):  # loop over voter sets of one small factor, not rows
        in_a = ((A >> np.arange(r)) & 1).astype(bool)
        rows = np.flatnonzero((voted == in_a[None, :]).all(axis=1))
        key = (digits * in_a[None, :] * weights).sum(axis=1)
        sums = np.zeros((base**r, table.shape[1]))
        np.add.at(sums, key, table)
        out[rows] = sums[key[rows]]
    return out


@dataclass
class FactorTables:
    """Log tables of the junction-tree factors, ready for chunked look-ups.

    ``delta`` rows are indexed by ``offsets[f] + code - 1`` (code 0 = no member votes, which is
    folded into ``base``); ``sign`` is +1 for cliques and singletons, -1 for separators.
    """

    members: list[tuple[int, ...]]
    offsets: np.ndarray
    delta: np.ndarray  # (n_codes, k): log T_f[code] - log T_f[0], times sign
    base: np.ndarray  # (k,): log p_y + sum_f sign_f log T_f[0]
    starts: np.ndarray
    n_memb: np.ndarray
    memb_group: np.ndarray
    memb_weight: np.ndarray


class SourceCoding:
    """Indicator coding of the sources (and of cliques of dependent sources).

    Parameters
    ----------
    n_sources
        Number of sources ``m``.
    cardinality
        Number of classes ``k`` each source votes among.
    cliques
        Maximal cliques (``>= 2`` sources each) of a chordal dependency graph over ``0..m-1``;
        default none (every source independent given ``Y``).
    graph
        The user's dependency graph over indices, if any (kept for reports and saving).

    Attributes
    ----------
    groups
        Member lists: ``[0], [1], ..., [m-1]`` followed by the cliques.
    n_values
        Codes per group (``k`` for a singleton, ``(k+1)^|C| - 1`` for a clique).
    offsets
        First indicator of each group.
    component
        ``(n_groups,)`` connected component of each group's sources.
    """

    def __init__(self, n_sources: int, cardinality: int,
                 cliques: Sequence[Sequence[int]] | None = None,
                 graph: nx.Graph | None = None) -> None:
        self.n_sources = int(n_sources)
        self.cardinality = int(cardinality)
        m, base = self.n_sources, self.cardinality + 1
        clique_list = [tuple(sorted(int(s) for s in c)) for c in (cliques or [])]
        for c in clique_list:
            if len(c) < 2 or len(set(c)) != len(c) or c[0] < 0 or c[-1] >= m:
                raise ConfigError(f"clique {list(c)} must hold >= 2 distinct sources in 0..{m - 1}")
            if base ** len(c) - 1 > MAX_GROUP_CODES:
                raise ConfigError(
                    f"sources {list(c)} form a clique of the (triangulated) dependency graph "
                    f"with {base ** len(c) - 1} joint values (limit {MAX_GROUP_CODES}); remove "
                    "some dependency edges, or drop redundant sources"
                )
        self.cliques: list[tuple[int, ...]] = clique_list
        self.groups: list[list[int]] = [[i] for i in range(m)] + [list(c) for c in clique_list]
        self.n_values = np.array([self.cardinality] * m + [base ** len(c) - 1 for c in clique_list],
                                 dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.n_values)[:-1]]).astype(np.int64)
        self.all_singletons = not clique_list
        if graph is None:
            graph = nx.Graph()
            graph.add_nodes_from(range(m))
            for c in clique_list:
                graph.add_edges_from(itertools.combinations(c, 2))
        self.graph = graph
        self.junction: JunctionTree | None = None
        comp = np.arange(m, dtype=np.int64)
        if clique_list:
            chordal = nx.Graph()
            chordal.add_nodes_from(range(m))
            for c in clique_list:
                chordal.add_edges_from(itertools.combinations(c, 2))
            jt = build_junction_tree(chordal)
            if sorted(jt.cliques) != sorted(clique_list):
                raise ConfigError("cliques must be exactly the maximal cliques of a chordal graph; "
                                  "build the coding with SourceCoding.from_dependencies")
            self.junction = jt
            comp = jt.component_of
        self.component = np.concatenate(
            [comp, [comp[c[0]] for c in clique_list]]).astype(np.int64)
        self._memb = _membership_index(self.groups[m:], m, base)
        # separator of each clique with its parent in the junction tree (empty for roots), and
        # which joint values the clique emits: >= 2 voters, not all inside the separator (those
        # are the parent's statistics already; emitting them twice makes O exactly singular)
        self.separator: list[tuple[int, ...]] = [()] * len(clique_list)
        self.parent: list[int | None] = [None] * len(clique_list)
        if self.junction is not None:
            for par, child, sep in self.junction.tree_edges:
                self.separator[child] = sep
                self.parent[child] = par
        emits = []
        for ci, c in enumerate(clique_list):
            digits = _digits(len(c), base)
            in_sep = np.isin(np.array(c), np.array(self.separator[ci], dtype=np.int64))
            voters = (digits > 0).sum(axis=1)
            outside = ((digits > 0) & ~in_sep[None, :]).sum(axis=1)
            emits.append(((voters >= 2) & (outside >= 1))[1:])
        self.clique_emits = (np.concatenate(emits) if emits else np.zeros(0, dtype=bool))

    @classmethod
    def from_dependencies(
        cls,
        n_sources: int,
        cardinality: int,
        dependencies: nx.Graph | None,
        source_names: Sequence[Hashable] | None = None,
    ) -> SourceCoding:
        """Singletons plus the maximal cliques of the triangulated dependency graph."""
        if dependencies is None:
            return cls(n_sources, cardinality)
        graph = resolve_dependency_graph(dependencies, n_sources, source_names)
        jt = build_junction_tree(graph)
        return cls(n_sources, cardinality, jt.cliques, graph=graph)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def n_indicators(self) -> int:
        return int(self.n_values.sum())

    @property
    def singleton_indicators(self) -> np.ndarray:
        """Indices of the per-source indicators (the first ``m * k``)."""
        return np.arange(self.n_sources * self.cardinality)

    # ------------------------------------------------------------------ encoding
    def encode(self, chunk: VoteChunk) -> tuple[np.ndarray, np.ndarray]:
        """Local row index and indicator index of every fired indicator in the chunk."""
        rows = chunk.rows - chunk.start
        single = self.offsets[chunk.cols] + chunk.values
        if self.all_singletons:
            return rows, single
        starts, n_memb, grp, weight = self._memb
        r, g, code, voters = _expand_memberships(chunk, starts, n_memb, grp, weight,
                                                 len(self.cliques))
        first = self.offsets[self.n_sources]
        clique_ind = self.offsets[self.n_sources + g] + code - 1
        keep = self.clique_emits[clique_ind - first]
        clique_ind = clique_ind[keep]
        return np.concatenate([rows, r[keep]]), np.concatenate([single, clique_ind])

    def n_emittable(self) -> np.ndarray:
        """``(n_groups,)`` number of indicators each group can fire (its statistics)."""
        first = self.offsets[self.n_sources] if self.cliques else 0
        per_clique = [int(self.clique_emits[self.offsets[self.n_sources + ci] - first:
                                            self.offsets[self.n_sources + ci] - first
                                            + self.n_values[self.n_sources + ci]].sum())
                      for ci in range(len(self.cliques))]
        return np.array([self.cardinality] * self.n_sources + per_clique, dtype=np.int64)

    def statistics(self, L: LabelMatrix, chunk_rows: int,
                   progress: bool = False) -> SourceStatistics:
        """One chunked pass over ``L``."""
        if self.all_singletons and dense_applicable(L.data, self.n_indicators):
            return dense_statistics(L.data, self.cardinality)  # type: ignore[arg-type]
        stats = SourceStatistics(self.n_values)
        chunks = L.iter_votes(chunk_rows)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, total=-(-L.n_rows // chunk_rows), desc="statistics",
                          unit="chunk")
        for chunk in chunks:
            rows, ind = self.encode(chunk)
            stats.update(chunk.stop - chunk.start, rows, ind)
        return stats

    # ------------------------------------------------------------------ decoding
    def indicator_group(self, indicators: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, np.asarray(indicators, dtype=np.int64),
                               side="right") - 1

    def member_values(self, indicators: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode indicators into (indicator position, source, vote) triples (votes only)."""
        indicators = np.asarray(indicators, dtype=np.int64)
        grp = self.indicator_group(indicators)
        local = indicators - self.offsets[grp]
        is_single = grp < self.n_sources
        pos = [np.flatnonzero(is_single)]
        src = [grp[is_single]]
        val = [local[is_single]]
        base = self.cardinality + 1
        for ci, members in enumerate(self.cliques):
            idx = np.flatnonzero(grp == self.n_sources + ci)
            if idx.size == 0:
                continue
            code = local[idx] + 1
            for j, s in enumerate(members):
                v = (code // base**j) % base - 1
                keep = v >= 0
                pos.append(idx[keep])
                src.append(np.full(int(keep.sum()), s, dtype=np.int64))
                val.append(v[keep])
        return np.concatenate(pos), np.concatenate(src), np.concatenate(val)

    def agreement(self, indicators: np.ndarray) -> np.ndarray:
        """``(d, k)``: fraction of the votes, in each indicator, that say class ``y``."""
        d = len(indicators)
        pos, _, val = self.member_values(indicators)
        agree = np.zeros((d, self.cardinality))
        np.add.at(agree, (pos, val), 1.0)
        return agree / np.maximum(agree.sum(axis=1, keepdims=True), 1.0)

    def omega(self, indicators: np.ndarray) -> np.ndarray:
        """``(d, d)`` mask of indicator pairs whose moments factorise given ``Y``."""
        comp = self.component[self.indicator_group(indicators)]
        return comp[:, None] != comp[None, :]

    def fit_cliques(self, emitted: np.ndarray, means: np.ndarray, second: np.ndarray,
                    single_mu: np.ndarray, class_balance: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Clique-indicator probabilities given the fitted singletons (linear least squares).

        With ``p`` and the singletons' ``mu`` known, the Omega equations of a clique indicator
        ``c``, ``E[psi_c psi_a] = sum_y p_y mu_a(y) mu_c(y)`` over singletons ``a`` of other
        components, plus ``E[psi_c] = sum_y p_y mu_c(y)``, are linear in ``mu_c``; all the
        indicators of one clique share the same design matrix, so one ``lstsq`` per clique
        solves them (then clipped to ``[0, 1]``). Identifiable whenever the singletons are.

        Parameters
        ----------
        emitted, means, second
            Emitted indicators and their moments (as in :class:`MomentProblem`).
        single_mu
            ``(n_emitted_singletons, k)`` fitted ``mu`` of the emitted singleton indicators, in
            the order they appear in ``emitted``.
        class_balance
            ``(k,)`` fitted ``P(Y)``.

        Returns
        -------
        mu_cliques, abstain_cliques
            ``(n_emitted_clique_indicators, k)`` and ``(n_cliques, k)``.
        """
        grp = self.indicator_group(emitted)
        single = grp < self.n_sources
        comp = self.component[grp]
        s_idx = np.flatnonzero(single)
        n_classes = single_mu.shape[1]  # latent classes (feasible label vectors in multi-task)
        mu_out = np.zeros((int((~single).sum()), n_classes))
        abstain = np.ones((len(self.cliques), n_classes))
        c_pos = np.flatnonzero(~single)
        for ci in range(len(self.cliques)):
            rows = np.flatnonzero(grp[c_pos] == self.n_sources + ci)
            if rows.size == 0:
                continue
            partners = s_idx[comp[s_idx] != self.component[self.n_sources + ci]]
            A = np.vstack([single_mu[np.searchsorted(s_idx, partners)] * class_balance,
                           class_balance[None, :]])
            B = np.vstack([second[np.ix_(partners, c_pos[rows])], means[c_pos[rows]][None, :]])
            X, *_ = np.linalg.lstsq(A, B, rcond=None)
            mu = np.clip(X.T, 0.0, 1.0)
            mu_out[rows] = mu
            abstain[ci] = np.clip(1.0 - mu.sum(axis=0), 0.0, 1.0)
        return mu_out, abstain

    # ------------------------------------------------------------------ prediction
    def clique_table(self, clique: int, singles: np.ndarray, mu: np.ndarray,
                     seen: np.ndarray, floor: float,
                     parent_table: np.ndarray | None = None) -> np.ndarray:
        """Full ``((k+1)^r, k)`` table ``P(lambda_C = code | y)`` of clique ``clique``.

        ``singles`` is the ``(m, k+1, k)`` singleton table (index 0 = abstain, ``v+1`` = vote
        ``v``); ``mu`` the fitted probability of every indicator; ``seen`` marks indicators
        emitted during fit. Unseen joint values fall back to the members' independence product;
        every value is kept above ``floor`` times that product, then each column is normalised.
        """
        members = self.cliques[clique]
        r, base = len(members), self.cardinality + 1
        digits = _digits(r, base)  # (P, r) digit j of code = value of member j (+1)
        indep = np.ones((digits.shape[0], mu.shape[1]))
        for j, s in enumerate(members):
            indep *= singles[s][digits[:, j]]
        voters = (digits > 0).sum(axis=1)
        sep = self.separator[clique]
        in_sep = np.isin(np.array(members), np.array(sep, dtype=np.int64))
        outside = ((digits > 0) & ~in_sep[None, :]).sum(axis=1)
        table = np.zeros_like(indep)
        own = np.flatnonzero((voters >= 2) & (outside >= 1))
        ind = self.offsets[self.n_sources + clique] + own - 1
        table[own] = np.where(seen[ind][:, None], mu[ind], indep[own])
        if sep and parent_table is not None:
            # values voted only inside the separator: the parent's marginal minus extensions
            parent = self.cliques[self.parent[clique]]  # type: ignore[index]
            pdig = _digits(len(parent), base)
            pcols = [parent.index(s) for s in sep]
            ccols = [members.index(s) for s in sep]
            weights = base ** np.arange(len(sep))
            marg = np.zeros((base ** len(sep), mu.shape[1]))
            np.add.at(marg, (pdig[:, pcols] * weights).sum(axis=1), parent_table)
            sep_code = (digits[:, ccols] * weights).sum(axis=1)
            inside = np.flatnonzero((outside == 0) & (voters >= 1))
            ext_mask = outside >= 1
            for p in inside:
                ext = ext_mask & (sep_code == sep_code[p])
                table[p] = marg[sep_code[p]] - table[ext].sum(axis=0)
        for j, s in enumerate(members):
            if in_sep[j] and parent_table is not None:
                continue
            for v in range(1, base):
                one = np.flatnonzero((voters == 1) & (digits[:, j] == v))
                ext = (voters >= 2) & (digits[:, j] == v)
                table[one] = singles[s][v] - table[ext].sum(axis=0)
        table[0] = 1.0 - table[1:].sum(axis=0)
        table = np.maximum(table, floor * indep)
        return table / table.sum(axis=0, keepdims=True)

    def factor_tables(self, indicator_probs: np.ndarray, abstain_probs: np.ndarray,
                      class_balance: np.ndarray, emitted: np.ndarray, floor: float,
                      model_abstains: bool) -> FactorTables:
        """Log tables of every junction-tree factor (cliques, separators, isolated sources)."""
        # k codes per source; K latent classes (k in single-task, |feasible set| in multi-task)
        m, k, base = self.n_sources, self.cardinality, self.cardinality + 1
        K = indicator_probs.shape[1]
        floor = max(floor, 1e-12)
        seen = np.zeros(self.n_indicators, dtype=bool)
        seen[emitted] = True
        singles = np.zeros((m, base, K))
        singles[:, 1:, :] = indicator_probs[: m * k].reshape(m, k, K)
        singles[:, 0, :] = abstain_probs[:m]
        # an unseen value carries no evidence: give it the abstain probability
        unseen_single = ~seen[: m * k].reshape(m, k)
        singles[:, 1:, :] = np.where(unseen_single[:, :, None], singles[:, :1, :],
                                     singles[:, 1:, :])
        singles = np.maximum(singles, floor)
        factors: list[tuple[tuple[int, ...], np.ndarray, float]] = []
        jt = self.junction
        in_clique = np.zeros(m, dtype=bool)
        tables: list[np.ndarray] = []
        if jt is not None:
            # parents before children (tree_edges are in breadth-first order)
            tables_by: dict[int, np.ndarray] = {}
            for ci in jt.roots:
                tables_by[ci] = self.clique_table(ci, singles, indicator_probs, seen, floor)
            for par, child, _ in jt.tree_edges:
                tables_by[child] = self.clique_table(child, singles, indicator_probs, seen,
                                                     floor, tables_by[par])
            tables = [tables_by[ci] for ci in range(len(self.cliques))]
            for ci, c in enumerate(self.cliques):
                factors.append((c, tables[ci], 1.0))
                in_clique[list(c)] = True
            for _, child, sep in jt.tree_edges:
                c = self.cliques[child]
                keep = [c.index(s) for s in sep]
                digits = _digits(len(c), base)
                sep_code = (digits[:, keep] * (base ** np.arange(len(sep)))).sum(axis=1)
                marg = np.zeros((base ** len(sep), K))
                np.add.at(marg, sep_code, tables[child])
                factors.append((sep, marg, -1.0))
        for s in np.flatnonzero(~in_clique):
            factors.append(((int(s),), singles[s], 1.0))
        members = [f[0] for f in factors]
        n_codes = np.array([base ** len(f) - 1 for f in members], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(n_codes)[:-1]]).astype(np.int64)
        delta = np.zeros((int(n_codes.sum()), K))
        base_score = np.log(class_balance).astype(np.float64).copy()
        for f, (mem, table, sign) in enumerate(factors):
            logt = np.log(np.maximum(table, 1e-300))
            if not model_abstains:
                # abstentions ignored: the factor enters as the probability of its voters'
                # values, marginalising its abstaining members (a singleton: P(v | y))
                logt = np.log(np.maximum(_voter_marginals(table, len(mem), base), 1e-300))
            base_score += sign * logt[0]
            delta[offsets[f]: offsets[f] + n_codes[f]] = sign * (logt[1:] - logt[0])
        starts, n_memb, grp, weight = _membership_index(members, m, base)
        return FactorTables(members=members, offsets=offsets, delta=delta, base=base_score,
                            starts=starts, n_memb=n_memb, memb_group=grp, memb_weight=weight)

    @staticmethod
    def factor_scores(chunk: VoteChunk, tables: FactorTables) -> np.ndarray:
        """``(rows, k)`` unnormalised ``log p_y + log P(lambda | y)`` for a chunk of votes."""
        n_rows = chunk.stop - chunk.start
        r, g, code, _ = _expand_memberships(chunk, tables.starts, tables.n_memb,
                                            tables.memb_group, tables.memb_weight,
                                            len(tables.members))
        A = sp.csr_matrix((np.ones(r.size), (r, tables.offsets[g] + code - 1)),
                          shape=(n_rows, tables.delta.shape[0]))
        return tables.base[None, :] + A @ tables.delta

"""How raw votes become indicator variables.

Each *group* is a source, or a set of mutually dependent sources (a connected component of the
user's dependency graph) modelled as one factor over their joint vote. A group with members
``s_1..s_r`` emits the code ``sum_j (v_j + 1) (k+1)^j - 1`` of its members' votes ``v_j``
(``-1`` = abstain), or abstains when all members abstain. A single source's code is its label.
Joint modelling is exact (no independence assumed inside a group) and is used both in
estimation and in prediction.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import networkx as nx
import numpy as np

from metal.errors import ConfigError
from metal.label_model.statistics import SourceStatistics
from metal.matrix import LabelMatrix, VoteChunk

MAX_GROUP_CODES = 1_000_000


class SourceCoding:
    """Partition of the sources into conditionally independent groups, and their codes.

    Parameters
    ----------
    n_sources
        Number of sources ``m``.
    cardinality
        Number of classes ``k`` each source votes among.
    groups
        Lists of source indices, a partition of ``0..m-1``; default: every source alone.
    """

    def __init__(self, n_sources: int, cardinality: int,
                 groups: Sequence[Sequence[int]] | None = None) -> None:
        self.n_sources = int(n_sources)
        self.cardinality = int(cardinality)
        if groups is None:
            groups = [[i] for i in range(self.n_sources)]
        groups = [sorted(int(s) for s in g) for g in groups]
        groups.sort(key=lambda g: g[0])
        flat = sorted(s for g in groups for s in g)
        if flat != list(range(self.n_sources)):
            raise ConfigError("source groups must partition the sources 0..m-1 exactly once")
        self.groups: list[list[int]] = groups
        self.group_of = np.empty(self.n_sources, dtype=np.int64)
        self.weight = np.empty(self.n_sources, dtype=np.int64)
        base = self.cardinality + 1
        n_values = []
        for g, members in enumerate(groups):
            if base ** len(members) - 1 > MAX_GROUP_CODES:
                raise ConfigError(
                    f"sources {members} are mutually dependent and form one factor with "
                    f"{base ** len(members) - 1} joint values (limit {MAX_GROUP_CODES}); "
                    "remove some dependency edges or drop redundant sources"
                )
            for j, s in enumerate(members):
                self.group_of[s] = g
                self.weight[s] = base**j
            n_values.append(self.cardinality if len(members) == 1 else base ** len(members) - 1)
        self.n_values = np.asarray(n_values, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.n_values)[:-1]]).astype(np.int64)
        self.all_singletons = all(len(g) == 1 for g in groups)

    @classmethod
    def from_dependencies(
        cls,
        n_sources: int,
        cardinality: int,
        dependencies: nx.Graph | None,
        source_names: Sequence[Hashable] | None = None,
    ) -> SourceCoding:
        """Groups = connected components of the dependency graph (nodes: indices or names)."""
        if dependencies is None:
            return cls(n_sources, cardinality)
        if not isinstance(dependencies, nx.Graph) or dependencies.is_directed():
            raise ConfigError("dependencies must be an undirected networkx.Graph over sources, "
                              f"got {type(dependencies).__name__}")
        index = resolve_source_nodes(dependencies.nodes, n_sources, source_names)
        g = nx.Graph()
        g.add_nodes_from(range(n_sources))
        g.add_edges_from((index[u], index[v]) for u, v in dependencies.edges if u != v)
        return cls(n_sources, cardinality, [sorted(c) for c in nx.connected_components(g)])

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def n_indicators(self) -> int:
        return int(self.n_values.sum())

    def encode(self, chunk: VoteChunk) -> tuple[np.ndarray, np.ndarray]:
        """Local row index and indicator index of every group vote in the chunk."""
        rows = chunk.rows - chunk.start
        if self.all_singletons:
            return rows, self.offsets[chunk.cols] + chunk.values
        grp = self.group_of[chunk.cols]
        key = rows * self.n_groups + grp
        uniq, inv = np.unique(key, return_inverse=True)
        code = np.bincount(inv, weights=(chunk.values + 1) * self.weight[chunk.cols]).astype(np.int64)
        g = uniq % self.n_groups
        return uniq // self.n_groups, self.offsets[g] + code - 1

    def statistics(self, L: LabelMatrix, chunk_rows: int,
                   progress: bool = False) -> SourceStatistics:
        """One chunked pass over ``L``."""
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

    def member_values(self, indicators: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode indicators into (indicator position, source, vote) triples (votes only)."""
        indicators = np.asarray(indicators, dtype=np.int64)
        grp = np.searchsorted(self.offsets, indicators, side="right") - 1
        code = indicators - self.offsets[grp] + 1
        pos, src, val = [], [], []
        base = self.cardinality + 1
        for j in range(max(len(g) for g in self.groups)):
            has = np.array([len(self.groups[g]) > j for g in grp], dtype=bool)
            if not has.any():
                break
            idx = np.flatnonzero(has)
            members = np.array([self.groups[g][j] for g in grp[idx]], dtype=np.int64)
            single = np.array([len(self.groups[g]) == 1 for g in grp[idx]], dtype=bool)
            v = np.where(single, code[idx] - 1, (code[idx] // base**j) % base - 1)
            keep = v >= 0
            pos.append(idx[keep])
            src.append(members[keep])
            val.append(v[keep])
        return np.concatenate(pos), np.concatenate(src), np.concatenate(val)

    def agreement(self, indicators: np.ndarray) -> np.ndarray:
        """``(d, k)``: fraction of the group's votes, in each indicator, that say class ``y``."""
        d = len(indicators)
        pos, _, val = self.member_values(indicators)
        agree = np.zeros((d, self.cardinality))
        np.add.at(agree, (pos, val), 1.0)
        return agree / np.maximum(agree.sum(axis=1, keepdims=True), 1.0)


def resolve_source_nodes(
    nodes: object, n_sources: int, source_names: Sequence[Hashable] | None
) -> dict[Hashable, int]:
    """Map graph nodes (indices, or names from ``source_names``) to source indices."""
    names = list(source_names) if source_names is not None else None
    index: dict[Hashable, int] = {}
    for node in nodes:  # type: ignore[attr-defined]
        if names is not None and node in names:
            index[node] = names.index(node)
        elif isinstance(node, (int, np.integer)) and 0 <= int(node) < n_sources:
            index[node] = int(node)
        else:
            known = f"indices 0..{n_sources - 1}" + (f" or names {names}" if names else "")
            raise ConfigError(f"dependency graph node {node!r} is not a source; expected {known}")
    return index

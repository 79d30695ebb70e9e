"""Labeling sources and data loaders for the two real hierarchical benchmarks.

* :mod:`.trec`: TREC question classification, 6 coarse / 50 fine classes; coarse votes from
  the 68 WRENCH labeling functions, fine votes from question-word and head-noun regexes.
* :mod:`.newsgroups`: 20 Newsgroups, 7 top-level prefixes / 20 groups; keyword sources at both
  levels.

Both loaders return a :class:`~.trec.HierarchicalDataset` whose label tensors have shape
``(n, m, 2)`` (task 0 = parent level, task 1 = child level, ``-1`` = abstain) and read the
shared data folder (``$METAL_SHARED_DATA`` or ``<repo>/../shared/data``).
"""

from ._common import (
    KeywordSource,
    PatternSource,
    apply_keyword_sources,
    apply_sources,
    imply_parent_votes,
    source_report,
)
from .newsgroups import load_newsgroups
from .trec import HierarchicalDataset, load_trec

__all__ = [
    "HierarchicalDataset",
    "KeywordSource",
    "PatternSource",
    "apply_keyword_sources",
    "apply_sources",
    "imply_parent_votes",
    "load_newsgroups",
    "load_trec",
    "source_report",
]

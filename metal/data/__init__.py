"""Data loaders and synthetic generators."""

from metal.data.crowd import (
    CrowdData,
    CrowdFormatError,
    CrowdMatrix,
    crowd_to_label_matrix,
    load_crowd,
)
from metal.data.synthetic import SyntheticData, make_synthetic
from metal.data.synthetic_dependencies import make_dependent_synthetic
from metal.data.synthetic_hierarchy import (
    HierarchicalSyntheticData,
    SourceSpec,
    make_hierarchical_synthetic,
)
from metal.data.wrench import WrenchFormatError, WrenchSplit, load_wrench, wrench_splits
from metal.data.wrench_sequence import SequenceSplit, load_wrench_sequence, sequence_splits

__all__ = [
    "CrowdData",
    "CrowdFormatError",
    "CrowdMatrix",
    "HierarchicalSyntheticData",
    "SourceSpec",
    "SyntheticData",
    "WrenchFormatError",
    "WrenchSplit",
    "crowd_to_label_matrix",
    "load_crowd",
    "make_dependent_synthetic",
    "make_hierarchical_synthetic",
    "make_synthetic",
    "load_wrench",
    "wrench_splits",
    "SequenceSplit",
    "load_wrench_sequence",
    "sequence_splits",
]

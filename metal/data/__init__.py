"""Data loaders and synthetic generators."""

from metal.data.synthetic import SyntheticData, make_synthetic
from metal.data.synthetic_hierarchy import (
    HierarchicalSyntheticData,
    SourceSpec,
    make_hierarchical_synthetic,
)

__all__ = ["HierarchicalSyntheticData", "SourceSpec", "SyntheticData", "make_hierarchical_synthetic",
           "make_synthetic"]

"""Data loaders and synthetic generators."""

from metal.data.synthetic import SyntheticData, make_synthetic

__all__ = ["SyntheticData", "make_synthetic"]

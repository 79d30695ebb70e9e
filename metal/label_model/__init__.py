"""Label models: statistics, estimation, the single-task model and baselines."""

from metal.label_model.baselines import MajorityVoter
from metal.label_model.dawid_skene import DawidSkene
from metal.label_model.label_model import FitInfo, LabelModel, MetalWarning, label_statistics
from metal.label_model.statistics import SourceStatistics

__all__ = [
    "DawidSkene",
    "FitInfo",
    "LabelModel",
    "MajorityVoter",
    "MetalWarning",
    "SourceStatistics",
    "label_statistics",
]

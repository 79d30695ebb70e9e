"""metal: multi-task weak supervision.

Declare tasks and labeling sources, check that the sources' accuracies are identifiable,
fit a label model without labels, and train end models on its probabilistic labels.
"""

from metal._version import __version__
from metal.data.crowd import crowd_to_label_matrix, load_crowd
from metal.data.wrench import load_wrench
from metal.errors import (
    ConfigError,
    CrowdFormatError,
    DataFormatError,
    LabelingFunctionError,
    LabelMatrixError,
    MetalError,
    NotFittedError,
    NotIdentifiableError,
    SaveFormatError,
    TaskGraphError,
    WrenchFormatError,
)
from metal.label_model import (
    LabelModel,
    MajorityVoter,
    MetalWarning,
    SourceStatistics,
    label_statistics,
)
from metal.label_model.dawid_skene import DawidSkene
from metal.label_model.hierarchical import HierarchicalMajorityVoter, SeparateTaskLabelModels
from metal.label_model.identifiability import IdentifiabilityReport, check_identifiability
from metal.label_model.multitask import MultiTaskLabelModel
from metal.label_model.structure import learn_dependencies
from metal.labeling import LabelingFunction, LFApplier, labeling_function, lf_summary
from metal.matrix import ABSTAIN, check_label_matrix, to_dense_labels, to_sparse_labels
from metal.metrics import probs_to_preds, score_predictions
from metal.tasks import TaskGraph, TaskHierarchy

__all__ = [
    "ABSTAIN",
    "ConfigError",
    "CrowdFormatError",
    "DataFormatError",
    "LabelingFunctionError",
    "WrenchFormatError",
    "DawidSkene",
    "LFApplier",
    "LabelingFunction",
    "crowd_to_label_matrix",
    "labeling_function",
    "lf_summary",
    "load_crowd",
    "load_wrench",
    "HierarchicalMajorityVoter",
    "IdentifiabilityReport",
    "check_identifiability",
    "learn_dependencies",
    "MultiTaskLabelModel",
    "SeparateTaskLabelModels",
    "TaskGraph",
    "TaskHierarchy",
    "LabelMatrixError",
    "LabelModel",
    "MajorityVoter",
    "MetalError",
    "MetalWarning",
    "NotFittedError",
    "NotIdentifiableError",
    "SaveFormatError",
    "SourceStatistics",
    "TaskGraphError",
    "__version__",
    "check_label_matrix",
    "label_statistics",
    "probs_to_preds",
    "score_predictions",
    "to_dense_labels",
    "to_sparse_labels",
]

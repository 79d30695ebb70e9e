"""Labeling sources as Python functions, applying them to data, and analysing them.

* :mod:`metal.labeling.lf`: :func:`labeling_function` and :class:`LabelingFunction`;
* :mod:`metal.labeling.apply`: :class:`LFApplier` (DataFrames, dicts, chunk iterators);
* :mod:`metal.labeling.dask`: ``DaskLFApplier`` for partitioned data (imports Dask, so it is
  not imported here);
* :mod:`metal.labeling.analysis`: per-source summary tables;
* :mod:`metal.labeling.plots`: coverage/accuracy, learned-vs-empirical and calibration plots.
"""

from metal.labeling.analysis import (
    label_conflict,
    label_coverage,
    label_overlap,
    lf_conflicts,
    lf_coverages,
    lf_empirical_accuracies,
    lf_overlaps,
    lf_polarities,
    lf_summary,
)
from metal.labeling.apply import LabelingFaultWarning, LFApplier, apply_lfs
from metal.labeling.lf import (
    ABSTAIN,
    LabelingFunction,
    LabelingFunctionError,
    Row,
    labeling_function,
)
from metal.labeling.plots import (
    calibration_table,
    expected_calibration_error,
    plot_accuracy_scatter,
    plot_calibration,
    plot_coverage_accuracy,
)

__all__ = [
    "ABSTAIN",
    "LFApplier",
    "LabelingFaultWarning",
    "LabelingFunction",
    "LabelingFunctionError",
    "Row",
    "apply_lfs",
    "calibration_table",
    "expected_calibration_error",
    "label_conflict",
    "label_coverage",
    "label_overlap",
    "lf_conflicts",
    "lf_coverages",
    "lf_empirical_accuracies",
    "lf_overlaps",
    "lf_polarities",
    "lf_summary",
    "labeling_function",
    "plot_accuracy_scatter",
    "plot_calibration",
    "plot_coverage_accuracy",
]

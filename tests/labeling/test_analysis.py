"""LF analysis numbers against values computed by hand on a tiny matrix, and the plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metal.errors import ConfigError
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
from metal.matrix import to_sparse_labels

# 6 rows, 4 sources, 3 classes.
L = np.array([
    [0, 0, -1, -1],   # a, b agree
    [1, 0, -1, -1],   # a, b conflict
    [-1, 2, 2, -1],   # b, c agree
    [-1, -1, 1, -1],  # c alone
    [-1, -1, -1, -1],  # nobody
    [0, -1, 1, 1],    # a conflicts with c, d; c and d agree with each other
])
Y = np.array([0, 1, 2, 2, 0, -1])  # last row has no gold label

# By hand, per source (a, b, c, d):
#   votes:     a rows 0,1,5 (3); b rows 0,1,2 (3); c rows 2,3,5 (3); d row 5 (1)
#   overlaps:  a 0,1,5 -> 3; b 0,1,2 -> 3; c 2,5 -> 2; d 5 -> 1
#   conflicts: a 1,5 -> 2; b 1 -> 1; c 5 -> 1; d 5 -> 1
#   gold (rows 0..4): a: row0 ok, row1 ok -> 2/0; b: row0 ok, row1 wrong (0 vs 1), row2 ok
#   -> 2/1; c: row2 ok, row3 wrong (1 vs 2) -> 1/1; d: only row 5 (no gold) -> 0/0
HAND = {
    "polarity": [[0, 1], [0, 2], [1, 2], [1]],
    "coverage": [3 / 6, 3 / 6, 3 / 6, 1 / 6],
    "overlaps": [3 / 6, 3 / 6, 2 / 6, 1 / 6],
    "conflicts": [2 / 6, 1 / 6, 1 / 6, 1 / 6],
    "correct": [2, 2, 1, 0],
    "incorrect": [0, 1, 1, 0],
    "emp_acc": [1.0, 2 / 3, 0.5, np.nan],
}


@pytest.mark.parametrize("matrix", [L, to_sparse_labels(L)], ids=["dense", "sparse"])
def test_summary_matches_hand_computed_values(matrix: object) -> None:
    s = lf_summary(matrix, Y, names=["a", "b", "c", "d"])
    assert list(s.index) == ["a", "b", "c", "d"]
    assert s["polarity"].tolist() == HAND["polarity"]
    for col in ("coverage", "overlaps", "conflicts", "emp_acc"):
        np.testing.assert_allclose(s[col].to_numpy(dtype=float), HAND[col], err_msg=col)
    for col in ("correct", "incorrect"):
        assert s[col].tolist() == HAND[col], col


def test_single_statistics_functions() -> None:
    assert lf_polarities(L) == HAND["polarity"]
    np.testing.assert_allclose(lf_coverages(L), HAND["coverage"])
    np.testing.assert_allclose(lf_overlaps(L), HAND["overlaps"])
    np.testing.assert_allclose(lf_conflicts(L), HAND["conflicts"])
    np.testing.assert_allclose(lf_empirical_accuracies(L, Y), HAND["emp_acc"])
    assert label_coverage(L) == pytest.approx(5 / 6)  # row 4 has no vote
    assert label_overlap(L) == pytest.approx(4 / 6)   # rows 0, 1, 2, 5
    assert label_conflict(L) == pytest.approx(2 / 6)  # rows 1 and 5


def test_summary_with_a_fitted_model_and_errors() -> None:
    from metal.label_model.dawid_skene import DawidSkene

    model = DawidSkene(cardinality=3).fit(L)
    s = lf_summary(L, Y, model=model)
    np.testing.assert_allclose(s["learned_acc"], model.get_accuracies())
    assert list(s.index) == ["0", "1", "2", "3"]
    with pytest.raises(ConfigError, match="one name per column"):
        lf_summary(L, names=["a"])
    with pytest.raises(ConfigError, match="get_accuracies"):
        lf_summary(L, model=object())


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    from metal.label_model.dawid_skene import DawidSkene
    from metal.labeling.plots import (
        plot_accuracy_scatter,
        plot_calibration,
        plot_coverage_accuracy,
    )

    model = DawidSkene(cardinality=3).fit(L)
    s = lf_summary(L, Y, model=model)
    paths = [tmp_path / "cov.png", tmp_path / "scatter.png", tmp_path / "calib.png"]
    plot_coverage_accuracy(s, paths[0])
    plot_accuracy_scatter(s, paths[1])
    plot_calibration(model.predict_proba(L), Y, paths[2], n_bins=5)
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    with pytest.raises(ConfigError, match="learned_acc"):
        plot_accuracy_scatter(lf_summary(L, Y))


def test_calibration_table_by_hand() -> None:
    from metal.labeling.plots import calibration_table, expected_calibration_error

    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    gold = np.array([0, 1, 1, 0])
    t = calibration_table(probs, gold, n_bins=2)  # bins [0, .5), [.5, 1]
    assert t["count"].tolist() == [0, 4]
    assert t["confidence"].iloc[1] == pytest.approx((0.9 + 0.8 + 0.7 + 0.55) / 4)
    assert t["accuracy"].iloc[1] == pytest.approx(2 / 4)
    assert expected_calibration_error(probs, gold, n_bins=2) == pytest.approx(
        abs(0.5 - 2.95 / 4))

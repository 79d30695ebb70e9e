"""The end-model benchmark's F1 decision rule (threshold on P(class 1) chosen for F1)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))  # the benchmark imports its sibling _results
# loaded under its own name: "end_model" would clash with the tests/end_model folder
_spec = importlib.util.spec_from_file_location("end_model_benchmark", BENCH / "end_model.py")
assert _spec is not None and _spec.loader is not None
_bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _bench  # its dataclasses look their module up there
_spec.loader.exec_module(_bench)
f1_threshold = _bench.f1_threshold


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum((pred == 1) & (y == 1)))
    return 2 * tp / (pred.sum() + y.sum()) if pred.sum() + y.sum() else 0.0


@pytest.mark.parametrize("seed", range(20))
def test_f1_threshold_matches_exhaustive_search(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    p = np.round(rng.random(n), 1)  # many ties: cuts must fall between distinct values
    y = (rng.random(n) < 0.3).astype(np.int64)
    y[0] = 1
    t = f1_threshold(p, y)
    best = max(_f1(y, (p >= c).astype(np.int64)) for c in np.unique(p))
    assert _f1(y, (p >= t).astype(np.int64)) == pytest.approx(best)
    assert t not in set(p.tolist()) or t == p.min()  # halfway between values, or all positive


def test_f1_threshold_separates_a_separable_set_below_one_half() -> None:
    # positives score 0.2-0.3, negatives 0-0.1: the argmax (0.5) finds none, the rule all
    p = np.array([0.0, 0.05, 0.1, 0.2, 0.25, 0.3])
    y = np.array([0, 0, 0, 1, 1, 1])
    t = f1_threshold(p, y)
    assert 0.1 < t < 0.2
    assert _f1(y, (p >= t).astype(np.int64)) == 1.0

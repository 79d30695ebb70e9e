"""`metal fit --tasks tasks.json` and `metal evaluate` on a multi-task model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metal.cli import main
from metal.data.synthetic_hierarchy import make_hierarchical_synthetic
from metal.tasks import TaskHierarchy


def test_fit_and_evaluate_multitask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = TaskHierarchy({"coarse": 2, "fine": 4}, parents={"fine": ("coarse", [0, 0, 1, 1])})
    data = make_hierarchical_synthetic(3000, h, seed=0)
    np.savez(tmp_path / "d.npz", L=data.L, Y=data.Y)
    (tmp_path / "tasks.json").write_text(
        '{"tasks": {"coarse": 2, "fine": 4}, "parents": {"fine": ["coarse", [0, 0, 1, 1]]}}')
    assert main(["fit", str(tmp_path / "d.npz"), "--tasks", str(tmp_path / "tasks.json"),
                 "--probs", str(tmp_path / "p.npy"), "--model-out",
                 str(tmp_path / "m.npz")]) == 0
    assert np.load(tmp_path / "p.npy").shape == (3000, h.n_feasible)
    assert main(["evaluate", str(tmp_path / "d.npz"), "--model", str(tmp_path / "m.npz")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("fine") and "accuracy" in x)
    assert float(line.split(":")[-1]) > 0.5  # four fine classes: chance is 0.25
    assert main(["fit", str(tmp_path / "d.npz"), "--tasks", str(tmp_path / "nope.json")]) == 2

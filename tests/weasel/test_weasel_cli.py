"""``metal weasel`` on a generated .npz (votes, features, labelled valid and test splits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metal.cli import main
from metal.weasel import WeaSEL


def _npz(path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 500
    Y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 6))
    X[:, 0] += 2 * Y
    L = np.where(rng.random((n, 4)) < 0.8, Y[:, None], 1 - Y[:, None])
    L[rng.random((n, 4)) < 0.4] = -1
    np.savez(path, L=L[:300], X=X[:300], X_valid=X[300:400], Y_valid=Y[300:400],
             X_test=X[400:], Y_test=Y[400:])


def test_cli_trains_scores_and_saves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.npz"
    _npz(data)
    out = tmp_path / "w.npz"
    probs = tmp_path / "p.npy"
    code = main(["weasel", str(data), "--epochs", "5", "--no-progress", "--model-out", str(out),
                 "--probs", str(probs)])
    text = capsys.readouterr().out
    assert code == 0
    assert "end model on test: accuracy" in text and "early stopping: on the valid split" in text
    assert np.load(probs).shape == (300, 2)
    model = WeaSEL.load(out)
    assert model.predict_proba(np.zeros((3, 6))).shape == (3, 2)


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, L=np.zeros((3, 2)))
    assert main(["weasel", str(bad), "--no-progress"]) == 2
    assert "expected L (n, m) votes and X" in capsys.readouterr().err
    assert main(["weasel", str(tmp_path / "missing"), "--no-progress"]) == 2


def test_cli_warm_start_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.npz"
    _npz(data)
    for choice, kept_possible in (("none", False), ("majority_vote", True)):
        out = tmp_path / f"{choice}.npz"
        assert main(["weasel", str(data), "--epochs", "2", "--no-progress", "--warm-start",
                     choice, "--model-out", str(out)]) == 0
        model = WeaSEL.load(out)
        assert model.warm_start == (None if choice == "none" else choice)
        assert (model.warm_score_ is not None) == kept_possible
    capsys.readouterr()

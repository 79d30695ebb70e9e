"""``metal train``: label matrix + features in, test scores and a saved end model out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metal.cli import main
from metal.data.synthetic import make_synthetic
from metal.end_model import EndModel


@pytest.fixture(scope="module")
def data_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WRENCH-style archive: votes, numeric features that carry the class, gold."""
    d = tmp_path_factory.mktemp("train")
    syn = make_synthetic(n=1500, m=5, cardinality=2, seed=4, unipolar_fraction=0.0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 4)) + 1.5 * syn.Y[:, None]
    parts = {"train": slice(0, 1000), "valid": slice(1000, 1100), "test": slice(1100, 1500)}
    arrays = {}
    for split, rows in parts.items():
        arrays[f"L_{split}"] = syn.L[rows]
        arrays[f"X_{split}"] = X[rows]
        arrays[f"y_{split}"] = syn.Y[rows] if split != "train" else np.full(1000, -1)
    np.savez(d / "data.npz", **arrays)
    return d / "data.npz"


def test_train_end_to_end(data_npz: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "end.npz"
    code = main(["train", str(data_npz), "--epochs", "8", "--lr", "0.003", "--metrics",
                 "accuracy", "f1", "--model-out", str(out), "--history-png",
                 str(tmp_path / "curves.png")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "numeric features" in text and "best epoch" in text
    end_acc = float(text.split("end model on test: accuracy ")[1].split(",")[0])
    lm_acc = float(text.split("label model alone on test: accuracy ")[1].split(",")[0])
    assert end_acc > 0.8 and lm_acc > 0.7
    model = EndModel.load(out)
    assert model.predict_proba(np.zeros((3, 4), dtype=np.float32)).shape == (3, 2)
    assert (tmp_path / "curves.png").exists()


def test_train_bad_input(data_npz: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(data_npz), "--labels", "gold"]) == 2
    assert "no gold labels" in capsys.readouterr().err
    assert main(["train", str(data_npz), "--model-out", "model.pt"]) == 2
    assert ".npz" in capsys.readouterr().err

"""Data-parallel training: 2 CPU ranks under a real torchrun == one process (up to rounding)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metal import ConfigError
from metal.distributed.ddp import DistributedTrainer, data_parallel, init_distributed
from metal.end_model import EndModel

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--epochs", "3", "--batch-size", "64", "--dropout", "0", "--hidden", "16", "--lr",
        "0.01", "--seed", "3"]


def _data(tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(301, 6)).astype(np.float32)  # 301 rows: a ragged last batch
    p1 = 1 / (1 + np.exp(-2 * (X[:, 0] - 0.5 * X[:, 1])))
    P = np.stack([1 - p1, p1], axis=1).astype(np.float32)
    np.save(tmp / "X.npy", X)
    np.save(tmp / "P.npy", P)
    return X, P


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_without_torchrun_the_trainer_is_the_plain_one(tmp_path: Path) -> None:
    ctx = init_distributed(device="cpu")
    assert (ctx.rank, ctx.world_size, ctx.backend) == (0, 1, "gloo")
    X, P = _data(tmp_path)
    kw = dict(hidden=(16,), dropout=0.0, seed=3, n_epochs=2, batch_size=64, lr=0.01,
              patience=None)
    ref = EndModel(2, **kw).fit(X, P)  # type: ignore[arg-type]
    got = data_parallel(EndModel(2, **kw)).fit(X, P)  # type: ignore[arg-type]
    assert got.trainer_class is DistributedTrainer and type(got) is EndModel
    np.testing.assert_array_equal(got.predict_proba(X), ref.predict_proba(X))
    with pytest.raises(ConfigError, match="trainer_class"):
        data_parallel(object())
    with pytest.raises(ConfigError, match="backend"):
        init_distributed(backend="mpi", device="cpu")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_two_cpu_ranks_under_torchrun_equal_one_process(tmp_path: Path) -> None:
    X, P = _data(tmp_path)
    common = ["--features", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "P.npy"),
              *ARGS]
    ddp = subprocess.run(
        ["torchrun", "--standalone", "--nproc_per_node", "2", "-m",
         "metal.distributed.train_ddp", *common, "--out", str(tmp_path / "m2.npz"),
         "--predict-out", str(tmp_path / "p2.npy"), "--checkpoint", str(tmp_path / "ck.npz")],
        capture_output=True, text=True, env=_env(), timeout=600, check=False)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    info = json.loads(ddp.stdout.strip().splitlines()[-1])  # printed by rank 0 only
    assert info["world_size"] == 2 and info["backend"] == "gloo" and info["epochs"] == 3
    one = subprocess.run(
        [sys.executable, "-m", "metal.distributed.train_ddp", *common,
         "--out", str(tmp_path / "m1.npz"), "--predict-out", str(tmp_path / "p1.npy")],
        capture_output=True, text=True, env=_env(), timeout=600, check=False)
    assert one.returncode == 0, one.stderr[-3000:]
    p1, p2 = np.load(tmp_path / "p1.npy"), np.load(tmp_path / "p2.npy")
    np.testing.assert_allclose(p2, p1, rtol=0, atol=1e-5)
    # training moved the model: its output is far from the initial near-uniform guess
    assert np.abs(p1 - 0.5).mean() > 0.05
    # the ranks' model file is an ordinary EndModel; rank 0 wrote the checkpoint
    loaded = EndModel.load(tmp_path / "m2.npz")
    np.testing.assert_allclose(loaded.predict_proba(X), p2, atol=1e-6)
    assert (tmp_path / "ck.npz").is_file()
    # resuming from the finished checkpoint with more epochs continues on both ranks
    more = subprocess.run(
        ["torchrun", "--standalone", "--nproc_per_node", "2", "-m",
         "metal.distributed.train_ddp", *common[:4], *ARGS[2:], "--epochs", "4",
         "--out", str(tmp_path / "m3.npz"), "--checkpoint", str(tmp_path / "ck.npz")],
        capture_output=True, text=True, env=_env(), timeout=600, check=False)
    assert more.returncode == 0, more.stderr[-3000:]
    assert json.loads(more.stdout.strip().splitlines()[-1])["epochs"] == 4

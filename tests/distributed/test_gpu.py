"""GPU paths: the label model's fit and the end models on CUDA; NCCL data parallelism.

Every test here skips cleanly on a machine without CUDA (or with fewer GPUs than it needs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from metal import LabelModel
from metal.data import make_synthetic
from metal.end_model import EndModel

REPO = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_label_model_fits_on_cuda_like_on_cpu() -> None:
    data = make_synthetic(n=20_000, m=10, cardinality=3, seed=4)
    cpu = LabelModel(cardinality=3, seed=0, mode="moments").fit(data.L)
    gpu = LabelModel(cardinality=3, seed=0, mode="moments", device="cuda").fit(data.L)
    np.testing.assert_allclose(gpu.conditional_probs_, cpu.conditional_probs_, atol=1e-5)
    np.testing.assert_allclose(gpu.predict_proba(data.L), cpu.predict_proba(data.L),
                               atol=1e-5)


@needs_cuda
def test_end_model_trains_on_cuda() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    p1 = 1 / (1 + np.exp(-2 * X[:, 0]))
    P = np.stack([1 - p1, p1], axis=1).astype(np.float32)
    kw = dict(hidden=(16,), dropout=0.0, seed=3, n_epochs=3, batch_size=64, lr=0.01,
              patience=None)
    cpu = EndModel(2, **kw).fit(X, P)  # type: ignore[arg-type]
    gpu = EndModel(2, device="cuda", **kw).fit(X, P)  # type: ignore[arg-type]
    assert next(gpu.network_.parameters()).is_cuda
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2 or shutil.which("torchrun") is None,
                    reason="needs 2 CUDA GPUs and torchrun")
def test_two_gpu_ranks_with_nccl_equal_one_gpu(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(301, 6)).astype(np.float32)
    p1 = 1 / (1 + np.exp(-2 * X[:, 0]))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "P.npy", np.stack([1 - p1, p1], axis=1).astype(np.float32))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = ["-m", "metal.distributed.train_ddp", "--features", str(tmp_path / "X.npy"),
            "--targets", str(tmp_path / "P.npy"), "--epochs", "3", "--dropout", "0",
            "--hidden", "16", "--lr", "0.01", "--device", "cuda"]
    out = {}
    for n in (1, 2):
        res = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", str(n), *args,
                              "--out", str(tmp_path / f"m{n}.npz"),
                              "--predict-out", str(tmp_path / f"p{n}.npy")],
                             capture_output=True, text=True, env=env, timeout=600, check=False)
        assert res.returncode == 0, res.stderr[-3000:]
        out[n] = json.loads(res.stdout.strip().splitlines()[-1])
    assert out[2]["backend"] == "nccl" and out[2]["world_size"] == 2
    np.testing.assert_allclose(np.load(tmp_path / "p2.npy"), np.load(tmp_path / "p1.npy"),
                               atol=1e-4)

"""Test-wide settings: one torch thread (the fits here are small; with 2 cores shared by
other processes, OpenMP threads spin and slow small torch ops down many times)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

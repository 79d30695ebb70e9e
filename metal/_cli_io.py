"""Input/output helpers shared by the ``metal`` subcommands.

They live below :mod:`metal.cli` so that subcommands registered from other packages
(:mod:`metal.end_model.cli`, :mod:`metal.weasel.cli`) import them without importing the
command line itself (which imports those packages).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metal.errors import MetalError


class InputError(MetalError, ValueError):
    """A command-line argument or input file is unusable."""


def _write_probs(path: str, probs: np.ndarray) -> None:
    out = Path(path)
    if out.suffix == ".npy":
        np.save(out, probs)
    elif out.suffix == ".csv":
        header = ",".join(f"p{c}" for c in range(probs.shape[1]))
        np.savetxt(out, probs, delimiter=",", header=header, comments="", fmt="%.6g")
    else:
        raise InputError(f"--probs {path}: expected a file name ending in .npy or .csv")


def _read_probs(path: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path} does not exist; write it with `metal fit ... --probs {path}`")
    if p.suffix not in (".npy", ".csv"):
        raise InputError(f"{path}: expected a .npy or .csv file of probabilities")
    try:
        if p.suffix == ".npy":
            probs = np.load(p, allow_pickle=False)
        else:
            probs = np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2)
    except (OSError, ValueError) as exc:
        from metal.errors import DataFormatError

        raise DataFormatError(f"{path} is not a readable probability file ({exc})") from exc
    from metal._validate import check_probabilities
    from metal.errors import DataFormatError

    return check_probabilities(path, probs, error=DataFormatError, atol=1e-3)

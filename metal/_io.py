"""A safe, versioned file format for fitted models (no pickle).

A model file is a ``.npz`` archive holding named float/int arrays plus one JSON document
(``__meta__``) with the format version, the class name, the metal version and the
hyperparameters. Loading uses ``allow_pickle=False``, so a file cannot execute code.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from metal._version import __version__
from metal.errors import SaveFormatError

FORMAT_VERSION = 1


def save_arrays(
    path: str | os.PathLike[str], kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "metal_version": __version__,
        "params": params,
    }
    payload = {f"a_{k}": np.asarray(v) for k, v in arrays.items()}
    payload["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:  # np.savez would append ".npz" to a path without it
        np.savez(fh, **payload)  # type: ignore[arg-type]


def load_arrays(
    path: str | os.PathLike[str], kind: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["__meta__"]))
            arrays = {k[2:]: archive[k] for k in archive.files if k.startswith("a_")}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip errors, missing key, bad json
        raise SaveFormatError(
            f"{path} is not a metal model file ({exc}); save models with "
            ".save(path) and load them with the same class's .load(path)"
        ) from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise SaveFormatError(
            f"{path} has format version {meta.get('format_version')}; this metal "
            f"({__version__}) reads version {FORMAT_VERSION}. Re-fit and save with this version."
        )
    if meta.get("kind") != kind:
        raise SaveFormatError(
            f"{path} holds a {meta.get('kind')}, not a {kind}; load it with "
            f"metal.{meta.get('kind')}.load"
        )
    return meta["params"], arrays

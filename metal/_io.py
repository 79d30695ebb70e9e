"""A safe, versioned file format for fitted models (no pickle).

A model file is a ``.npz`` archive holding named float/int arrays plus one JSON document
(``__meta__``) with the format version, the class name, the metal version, the
hyperparameters and a SHA-256 checksum over the header and every array (name, dtype, shape,
bytes). Loading uses ``allow_pickle=False``, so a file cannot execute code, and then checks,
before any model is built from it:

* the checksum (a tampered or truncated file is refused);
* the required header fields and arrays of the model kind (:data:`SCHEMAS`), their types,
  shapes and ranges: probabilities finite and in ``[0, 1]``, a class balance positive and
  summing to 1, indices in range.

Every failure is a :class:`~metal.errors.SaveFormatError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from metal._version import __version__
from metal.errors import SaveFormatError

FORMAT_VERSION = 2
#: Versions this metal reads; version 1 files carry no checksum (their arrays are still checked).
READABLE_VERSIONS = (1, 2)


def _checksum(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "checksum"}
    h.update(json.dumps(body, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_arrays(
    path: str | os.PathLike[str], kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "metal_version": __version__,
        "params": params,
    }
    named = {k: np.asarray(v) for k, v in arrays.items()}
    meta["checksum"] = _checksum(meta, named)
    payload = {f"a_{k}": v for k, v in named.items()}
    payload["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:  # np.savez would append ".npz" to a path without it
        np.savez(fh, **payload)  # type: ignore[arg-type]


def load_arrays(
    path: str | os.PathLike[str], kind: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and validate a model file of ``kind``; return its ``(params, arrays)``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    SaveFormatError
        Not a metal model file, another kind or format version, a checksum mismatch
        (tampered or truncated), or a missing / malformed field or array.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["__meta__"]))
            arrays = {k[2:]: archive[k] for k in archive.files if k.startswith("a_")}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip errors, missing key, bad json, truncated members
        raise SaveFormatError(
            f"{path} is not a metal model file, or is truncated ({type(exc).__name__}: {exc}). "
            "Save models with .save(path) and load them with the same class's .load(path)"
        ) from exc
    if not isinstance(meta, dict):
        raise SaveFormatError(f"{path}: the header is a {type(meta).__name__}; expected a JSON "
                              "object. The file is not a metal model file")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise SaveFormatError(
            f"{path} has format version {version!r}; this metal ({__version__}) reads versions "
            f"{list(READABLE_VERSIONS)}. Re-fit and save with this version."
        )
    if meta.get("kind") != kind:
        raise SaveFormatError(
            f"{path} holds a {meta.get('kind')}, not a {kind}; load it with "
            f"metal.{meta.get('kind')}.load"
        )
    if version >= 2:
        stored = meta.get("checksum")
        if not isinstance(stored, str) or stored != _checksum(meta, arrays):
            raise SaveFormatError(
                f"{path}: the checksum does not match its contents; the file was modified or "
                "damaged after it was saved. Save the model again from the fitted object")
    params = meta.get("params")
    if not isinstance(params, dict):
        raise SaveFormatError(f"{path}: the header has no 'params' object; the file is damaged")
    check = SCHEMAS.get(kind)
    if check is not None:
        try:
            check(params, arrays)
        except _Bad as bad:
            raise SaveFormatError(f"{path}: {bad}; the file is damaged or was not written by "
                                  f"{kind}.save. Re-fit and save the model") from None
    return params, arrays


# ---------------------------------------------------------------------------- schemas
class _Bad(Exception):
    """A schema violation (turned into a SaveFormatError naming the file)."""


def _param(params: dict[str, Any], name: str, kind: type | tuple[type, ...],
           ok: Callable[[Any], bool] = lambda v: True, expected: str = "") -> Any:
    if name not in params:
        raise _Bad(f"the required header field {name!r} is missing")
    value = params[name]
    if isinstance(value, bool) and kind is not bool and bool not in (
            kind if isinstance(kind, tuple) else (kind,)):
        raise _Bad(f"header field {name}={value!r}; expected {expected or kind}")
    if not isinstance(value, kind) or not ok(value):
        raise _Bad(f"header field {name}={value!r}; expected {expected or kind}")
    return value


def _optional(params: dict[str, Any], name: str, kind: type | tuple[type, ...],
              ok: Callable[[Any], bool] = lambda v: True, expected: str = "") -> Any:
    """Like :func:`_param`, but ``null`` is allowed (a default decided at fit time)."""
    if name in params and params[name] is None:
        return None
    return _param(params, name, kind, ok, expected)


def _array(arrays: dict[str, np.ndarray], name: str, ndim: int, kinds: str) -> np.ndarray:
    if name not in arrays:
        raise _Bad(f"the required array {name!r} is missing")
    a = arrays[name]
    if a.ndim != ndim or a.dtype.kind not in kinds:
        raise _Bad(f"array {name!r} has shape {a.shape} and dtype {a.dtype}; expected a "
                   f"{ndim}-D {'integer' if kinds == 'iu' else 'numeric'} array")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise _Bad(f"array {name!r} has {int(a.size - np.isfinite(a).sum())} NaN or infinite "
                   "entries")
    return a


def _probs(arrays: dict[str, np.ndarray], name: str, ndim: int) -> np.ndarray:
    a = _array(arrays, name, ndim, "f")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise _Bad(f"array {name!r} has values in [{a.min():.6g}, {a.max():.6g}]; expected "
                   "probabilities in [0, 1]")
    return a


def _balance(arrays: dict[str, np.ndarray], size: int | None) -> np.ndarray:
    p = _probs(arrays, "class_balance", 1)
    if size is not None and p.shape != (size,):
        raise _Bad(f"array 'class_balance' has shape {p.shape}; expected ({size},)")
    if p.size == 0 or (p <= 0).any() or abs(p.sum() - 1.0) > 1e-6:
        raise _Bad(f"array 'class_balance'={p.tolist()[:10]} is not a distribution; expected "
                   "positive entries summing to 1")
    return p


def _common(params: dict[str, Any]) -> None:
    _param(params, "seed", int, lambda v: 0 <= v < 2**63, "an int >= 0")
    _param(params, "max_iter", int, lambda v: v >= 1, "an int >= 1")
    _param(params, "tol", float, lambda v: np.isfinite(v) and v > 0, "a finite float > 0")


def _emitted(arrays: dict[str, np.ndarray], n_indicators: int) -> None:
    e = _array(arrays, "emitted", 1, "iu")
    if e.size and (e.min() < 0 or e.max() >= n_indicators or (np.diff(e) <= 0).any()):
        raise _Bad(f"array 'emitted' must hold increasing indicator indices in "
                   f"0..{n_indicators - 1}")


def _check_label_model(params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    _common(params)
    k = _param(params, "cardinality", int, lambda v: v >= 2, "an int >= 2")
    m = _param(params, "n_sources", int, lambda v: v >= 1, "an int >= 1")
    _param(params, "prob_floor", float, lambda v: 0 <= v < 0.5, "a float in [0, 0.5)")
    _optional(params, "model_abstains", bool, expected="true, false or null")
    _optional(params, "l2", float, lambda v: np.isfinite(v) and v >= 0,
              "a finite float >= 0 or null")
    _param(params, "chunk_rows", int, lambda v: v >= 1, "an int >= 1")
    names = params.get("source_names")
    if names is not None and (not isinstance(names, list) or len(names) != m
                              or len(set(map(str, names))) != m):
        raise _Bad(f"header field source_names must be null or {m} distinct names")
    for key, size in (("cliques", None), ("dependency_edges", 2)):
        value = _param(params, key, list, expected="a list of lists of source indices")
        for item in value:
            if not isinstance(item, list) or (size is not None and len(item) != size) or not all(
                    isinstance(s, int) and not isinstance(s, bool) and 0 <= s < m for s in item):
                raise _Bad(f"header field {key} holds {item!r}; expected lists of source "
                           f"indices 0..{m - 1}")
    probs = _probs(arrays, "indicator_probs", 2)
    if probs.shape[1] != k or probs.shape[0] < m * k:
        raise _Bad(f"array 'indicator_probs' has shape {probs.shape}; expected (>= {m * k}, {k})")
    abstain = _probs(arrays, "abstain_probs", 2)
    if abstain.shape[1] != k or abstain.shape[0] < m:
        raise _Bad(f"array 'abstain_probs' has shape {abstain.shape}; expected (>= {m}, {k})")
    _balance(arrays, k)
    _emitted(arrays, probs.shape[0])


def _check_dawid_skene(params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    _common(params)
    k = _param(params, "cardinality", int, lambda v: v >= 2, "an int >= 2")
    _param(params, "alpha", float, lambda v: np.isfinite(v) and v >= 0, "a finite float >= 0")
    conf = _probs(arrays, "confusion", 3)
    if conf.shape[0] < 1 or conf.shape[1:] != (k, k):
        raise _Bad(f"array 'confusion' has shape {conf.shape}; expected (m, {k}, {k})")
    _balance(arrays, k)
    counts = _array(arrays, "vote_counts", 2, "iuf")
    if counts.shape[0] != conf.shape[0]:
        raise _Bad(f"array 'vote_counts' has shape {counts.shape}; expected {conf.shape[0]} rows, "
                   "one per source")


def _check_multitask(params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    _common(params)
    _param(params, "task_graph", dict, expected="a task graph description (a JSON object)")
    _param(params, "prob_floor", float, lambda v: 0 <= v < 0.5, "a float in [0, 0.5)")
    _optional(params, "model_abstains", bool, expected="true, false or null")
    coverage = _array(arrays, "coverage", 2, "biu")
    p = _balance(arrays, None)
    for name in [k for k in arrays if k.startswith("log_")]:  # likelihood-fit tables
        a = arrays[name]
        if a.dtype.kind != "f" or np.isnan(a).any() or (a.size and a.max() > 1e-9):
            raise _Bad(f"array {name!r} must hold log-probabilities (<= 0, no NaN)")
    if "indicator_probs" not in arrays and any(k.startswith("log_") for k in arrays):
        return  # a likelihood (EM) fit stores its tables as log_* arrays
    probs = _probs(arrays, "indicator_probs", 2)
    if probs.shape[1] != p.size:
        raise _Bad(f"array 'indicator_probs' has {probs.shape[1]} columns; expected {p.size}, one "
                   "per feasible label vector")
    abstain = _probs(arrays, "abstain_probs", 2)
    if abstain.shape != (coverage.shape[0], p.size):
        raise _Bad(f"array 'abstain_probs' has shape {abstain.shape}; expected "
                   f"({coverage.shape[0]}, {p.size})")
    e = _array(arrays, "emitted", 1, "iu")
    if e.shape != (probs.shape[0],) or (e.size and (e.min() < 0 or (np.diff(e) <= 0).any())):
        raise _Bad(f"array 'emitted' has shape {e.shape}; expected ({probs.shape[0]},) increasing "
                   "indicator indices, one per row of 'indicator_probs'")


#: Per model kind: the check run on (params, arrays) before a model is built from a file.
SCHEMAS: dict[str, Callable[[dict[str, Any], dict[str, np.ndarray]], None]] = {
    "LabelModel": _check_label_model,
    "DawidSkene": _check_dawid_skene,
    "MultiTaskLabelModel": _check_multitask,
}

"""Reusable checks for values crossing metal's public boundary.

Every public entry point (constructors' hyperparameters are checked at ``fit``, as in
scikit-learn) validates its arguments with these helpers, so the same mistake gets the same
message everywhere: what was wrong, what was expected, how to fix it.

Resource limits
---------------
Before allocating something whose size grows with the input (moment matrices, per-class
tables, per-label counters), metal estimates its size and refuses with
:class:`~metal.errors.ResourceLimitError` when it exceeds

* :data:`MAX_ALLOC_BYTES` (default 4 GiB; environment variable ``METAL_MAX_BYTES``) for one
  array, and
* :data:`MAX_MOMENT_INDICATORS` (default 2000; ``METAL_MAX_INDICATORS``) emitted
  ``(source, value)`` indicators in one dense moment fit, whose cost grows as ``d^2`` per
  iteration (about a minute at 2000 on one core).

Both are read when a check runs, so a process can raise them with ``os.environ`` before a fit.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from metal.errors import ConfigError, MetalError, MetalWarning, ResourceLimitError

DEFAULT_MAX_ALLOC_BYTES = 4 * 2**30
DEFAULT_MAX_MOMENT_INDICATORS = 2000


def _env_limit(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a number; expected a "
                          f"positive integer (default {default})") from None
    if value < 1:
        raise ConfigError(f"environment variable {name}={raw!r}; expected a positive integer")
    return value


def max_alloc_bytes() -> int:
    """The current per-array memory limit (``METAL_MAX_BYTES`` or 4 GiB)."""
    return _env_limit("METAL_MAX_BYTES", DEFAULT_MAX_ALLOC_BYTES)


def max_moment_indicators() -> int:
    """The current limit on indicators in one moment fit (``METAL_MAX_INDICATORS`` or 2000)."""
    return _env_limit("METAL_MAX_INDICATORS", DEFAULT_MAX_MOMENT_INDICATORS)


MAX_ALLOC_BYTES = DEFAULT_MAX_ALLOC_BYTES
MAX_MOMENT_INDICATORS = DEFAULT_MAX_MOMENT_INDICATORS


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


# ---------------------------------------------------------------------------- scalars
def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None,
              error: type[MetalError] = ConfigError) -> int:
    """``value`` as a Python int in ``[low, high]``; bools, floats and strings are refused.

    An integral float (``3.0``) is refused too: silently truncating ``2.5`` was the bug this
    guards against, and accepting ``3.0`` but not ``2.5`` would hide it for some inputs.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = (" (pass int(...) if you meant a whole number)"
                if isinstance(value, numbers.Real) else "")
        raise error(f"{name}={value!r} is a {type(value).__name__}{hint}; expected an int"
                    + _range_text(low, high))
    out = int(value)
    if (low is not None and out < low) or (high is not None and out > high):
        raise error(f"{name}={out}; expected an int{_range_text(low, high)}")
    return out


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def check_float(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False,
                error: type[MetalError] = ConfigError) -> float:
    """``value`` as a finite float in the given range (NaN, inf, bools and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name}={value!r} is a {type(value).__name__}; expected a finite number"
                    + _interval_text(low, high, low_open, high_open))
    out = float(value)
    if not math.isfinite(out):
        raise error(f"{name}={out} is not finite; expected a finite number"
                    + _interval_text(low, high, low_open, high_open))
    interval = _interval_text(low, high, low_open, high_open)
    if low is not None and (out < low or (low_open and out == low)):
        raise error(f"{name}={out}; expected a number{interval}")
    if high is not None and (out > high or (high_open and out == high)):
        raise error(f"{name}={out}; expected a number{interval}")
    return out


def _interval_text(low: float | None, high: float | None, low_open: bool,
                   high_open: bool) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {low}"
    if low is None:
        return f" {'<' if high_open else '<='} {high}"
    return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; only ``True``/``False`` (and numpy bools) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name}={value!r} is a {type(value).__name__}; expected True or False")
    return bool(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: an int in ``[0, 2**63)`` (what numpy's and torch's generators accept)."""
    return check_int(name, value, low=0, high=2**63 - 1)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    if not isinstance(value, Hashable) or value not in choices:
        raise ConfigError(f"{name}={value!r} is not known; expected one of {tuple(choices)}")
    return value


def check_unique(name: str, values: Iterable[Any], error: type[MetalError] = ConfigError,
                 fix: str = "give every entry a distinct name") -> list[Any]:
    """``values`` as a list, refusing duplicates (which would silently resolve to the first)."""
    out = list(values)
    try:
        counts = Counter(out)
    except TypeError:
        raise error(f"{name} holds unhashable entries; expected names (str or int)") from None
    dup = sorted((str(v) for v, c in counts.items() if c > 1))
    if dup:
        raise error(f"{name} has duplicates {dup[:10]}{' ...' if len(dup) > 10 else ''}; "
                    f"expected distinct entries: {fix}")
    return out


def check_names(name: str, names: Any, expected: int, what: str = "sources") -> list[Any]:
    """A sequence of ``expected`` distinct, hashable names (e.g. ``source_names``)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise ConfigError(f"{name} is a {type(names).__name__}; expected a list of {expected} "
                          f"names, one per {what[:-1] if what.endswith('s') else what}")
    out = list(names)
    if len(out) != expected:
        raise ConfigError(f"{name} has {len(out)} entries; expected {expected}, one per "
                          f"{what[:-1] if what.endswith('s') else what} (column of L)")
    return check_unique(name, out, fix=f"name every one of the {expected} {what} differently")


# ---------------------------------------------------------------------------- arrays
def check_finite_array(name: str, values: Any, *, low: float | None = None,
                       high: float | None = None,
                       error: type[MetalError] = ConfigError) -> np.ndarray:
    """A float64 array with finite entries in ``[low, high]``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} is not a numeric array ({exc}); expected finite numbers") from None
    if not np.all(np.isfinite(arr)):
        raise error(f"{name} has {int(np.size(arr) - np.isfinite(arr).sum())} NaN or infinite "
                    "entries; expected finite numbers")
    if arr.size and low is not None and arr.min() < low:
        raise error(f"{name} has the value {arr.min():.6g}; expected values >= {low}")
    if arr.size and high is not None and arr.max() > high:
        raise error(f"{name} has the value {arr.max():.6g}; expected values <= {high}")
    return arr


def check_probabilities(name: str, probs: Any, *, n_rows: int | None = None,
                        atol: float = 1e-4, error: type[MetalError] = ConfigError) -> np.ndarray:
    """``(n, k)`` probabilities: finite, in ``[0, 1]``, each row summing to 1 (within ``atol``).

    A NaN row or a negative entry is an error, never a silent class 0.
    """
    try:
        P = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} is not a numeric array ({exc}); expected (n, k) probabilities") \
            from None
    if P.ndim != 2 or P.shape[1] < 1:
        raise error(f"{name} has shape {P.shape}; expected (n, k) probabilities, one row per "
                    "item")
    if n_rows is not None and P.shape[0] != n_rows:
        raise error(f"{name} has {P.shape[0]} rows; expected {n_rows}, one per row of the gold "
                    "labels")
    bad = ~np.isfinite(P).all(axis=1)
    if bad.any():
        raise error(f"{name} has {int(bad.sum())} rows with NaN or infinite entries (first: row "
                    f"{int(np.flatnonzero(bad)[0])}); expected finite probabilities. Check the "
                    "model that produced them")
    if P.size and (P.min() < 0 or P.max() > 1):
        raise error(f"{name} has entries in [{P.min():.6g}, {P.max():.6g}]; expected "
                    "probabilities in [0, 1] (pass probabilities, not scores or logits)")
    sums = P.sum(axis=1)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise error(f"{name} has {int(off.sum())} rows that do not sum to 1 (row {i} sums to "
                    f"{sums[i]:.6g}); expected one probability distribution per row. Normalise "
                    "with P / P.sum(axis=1, keepdims=True)")
    return P


def check_same_length(name_a: str, a: Any, name_b: str, b: Any) -> None:
    la, lb = len(a), len(b)
    if la != lb:
        raise ConfigError(f"{name_a} has {la} entries and {name_b} has {lb}; expected one entry "
                          "per item in both, in the same order")


# ---------------------------------------------------------------------------- resources
def check_allocation(what: str, shape: Sequence[int], itemsize: int = 8, *,
                     fix: str) -> None:
    """Refuse, before allocating, an array of ``shape`` larger than :data:`MAX_ALLOC_BYTES`."""
    n = 1
    for s in shape:
        n *= int(s)
    n_bytes = n * int(itemsize)
    limit = max_alloc_bytes()
    if n_bytes > limit:
        raise ResourceLimitError(
            f"{what} would need an array of shape {tuple(int(s) for s in shape)} "
            f"({_gib(n_bytes)}); the limit is {_gib(limit)} (environment variable "
            f"METAL_MAX_BYTES). {fix}")


def check_moment_size(n_indicators: int, *, what: str = "the moment fit") -> None:
    """Refuse a dense moment fit over more than :data:`MAX_MOMENT_INDICATORS` indicators."""
    limit = max_moment_indicators()
    if n_indicators > limit:
        raise ResourceLimitError(
            f"{what} has {n_indicators} emitted (source, value) indicators; the limit is {limit} "
            "(environment variable METAL_MAX_INDICATORS): each iteration costs O(d^2) and the "
            f"moment matrix alone {_gib(8.0 * n_indicators**2)}. Use DawidSkene or "
            "MajorityVoter, merge or drop rarely voting sources, or raise the limit")
    check_allocation(what + "'s second-moment matrix", (n_indicators, n_indicators),
                     fix="Use DawidSkene or MajorityVoter, or drop rarely voting sources")


def check_label_model_size(n_sources: int, cardinality: int) -> None:
    """Refuse up front a single-task model whose per-class tables cannot be allocated.

    The fitted tables hold ``(m * k) x k`` values (and ``m x (k+1) x k`` conditionals), so a
    huge ``k`` is refused here, before any pass over the data.
    """
    m, k = int(n_sources), int(cardinality)
    check_allocation(f"a label model with {m} sources and cardinality {k}", (m, k + 1, k),
                     fix="Check the cardinality (is it the number of classes?), or group rare "
                     "classes into one")


# ---------------------------------------------------------------------------- warnings
def warn_counted(category: type[MetalWarning], cause: str, items: Sequence[Any], *,
                 detail: str = "", stacklevel: int = 2, shown: int = 5) -> None:
    """One warning for one cause: ``cause`` with the number of items and the first few.

    Replaces a warning per item (a wall of repeated text) with e.g. ``"12 sources vote fewer
    than 20 times: 'w3', 'w7', ... (and 9 more); their accuracy estimates are noisy"``.
    """
    if not items:
        return
    head = ", ".join(repr(x) if isinstance(x, str) else str(x) for x in items[:shown])
    more = f" (and {len(items) - shown} more)" if len(items) > shown else ""
    text = f"{len(items)} {cause}: {head}{more}" + (f"; {detail}" if detail else "")
    warnings.warn(text, category, stacklevel=stacklevel + 1)


def check_cooccurrence_size(lm: Any, n_indicators: int) -> None:
    """Refuse a statistics pass whose sparse co-occurrence counts cannot fit in memory.

    The counts hold at most ``min(D^2, sum_rows votes^2)`` entries (about 16 bytes each). The
    per-row vote counts are only gathered when ``D^2`` alone is over the limit.
    """
    d = int(n_indicators)
    per_entry = 16
    limit = max_alloc_bytes()
    if d * d * per_entry <= limit:
        return
    if getattr(lm, "is_sparse", False):
        per_row = np.diff(lm.data.indptr).astype(np.float64)
        bound = float(np.sum(per_row ** 2))
    else:
        bound = 0.0
        for start in range(0, lm.n_rows, 65536):
            v = np.count_nonzero(lm.data[start:start + 65536] >= 0, axis=1).astype(np.float64)
            bound += float(np.sum(v ** 2))
    n_bytes = min(float(d) * d, bound) * per_entry
    if n_bytes > limit:
        raise ResourceLimitError(
            f"the statistics pass over {lm.n_rows} rows x {lm.n_sources} sources with {d} "
            f"(source, value) indicators would hold up to {_gib(n_bytes)} of co-occurrence "
            f"counts; the limit is {_gib(limit)} (environment variable METAL_MAX_BYTES). Use "
            "DawidSkene or MajorityVoter, lower the cardinality, or drop rarely voting sources")


def warn_unvoted_classes(voted: np.ndarray, stacklevel: int = 2) -> None:
    """Warn when some classes never receive a vote: nothing in the data tells them apart, so
    their posterior comes from the prior alone (and can take most of the mass when ``k`` is
    large)."""
    from metal.errors import DataWarning

    voted = np.asarray(voted, dtype=bool)
    never = np.flatnonzero(~voted)
    if never.size:
        warn_counted(DataWarning, f"of the {voted.size} classes never receive a vote",
                     never.tolist(), stacklevel=stacklevel + 1,
                     detail="the data cannot tell them apart, so their probability comes from "
                     "the class balance alone. Check the cardinality, or give a class_balance "
                     "that puts little mass on them")


def apply_predicate(predicate: Any, vectors: np.ndarray, task_names: Sequence[str],
                    error: type[MetalError]) -> np.ndarray:
    """``predicate(tuple)`` for every row of ``vectors``, as a bool mask.

    An exception raised by the user's predicate keeps its type but gains a note naming the
    label vector it failed on; a result that is not a truth value (an array, a string) is an
    ``error`` naming the vector too.
    """
    out = np.empty(vectors.shape[0], dtype=bool)
    for r, row in enumerate(vectors):
        vec = tuple(int(x) for x in row)
        where = (f"the constraint was called with the label vector {vec} (one value per task "
                 f"in {list(task_names)})")
        try:
            value = predicate(vec)
        except Exception as exc:
            exc.add_note(where)
            raise
        if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral)
                                                   and int(value) in (0, 1)):
            out[r] = bool(value)
        else:
            raise error(f"the constraint returned {value!r} ({type(value).__name__}); expected "
                        f"True or False. {where[0].upper()}{where[1:]}")
    return out

"""Loading WRENCH-format weak-supervision benchmarks (classification / relation extraction).

A WRENCH folder holds ``{train,valid,test}.json`` and ``label.json``. Each split is
``{id: {"label": int, "weak_labels": [int] * m, "data": {...}}}`` with ``-1`` for abstain;
``label.json`` maps ``"0".."k-1"`` to class names. :func:`load_wrench` turns one split into a
:class:`WrenchSplit`: an int8/int16 label matrix, gold labels, ids and the raw ``data`` fields.

Besides plain folders it reads two compact layouts found in the wild, so the same call works on
every label-matrix benchmark of the project:

* a ``.npz`` archive with ``L_<split>`` (``(n, m)`` votes, ``-1`` abstain) and optionally
  ``y_<split>``, ``ids_<split>``, ``X_<split>`` (features) and ``S_<split>`` (continuous LF
  scores). ``valid`` also matches ``L_dev``/``y_dev``. Used when the folder has no
  ``<split>.json`` (e.g. WRENCH census as ``census_compact.npz``, Snorkel's spouse task as
  ``spouse_wrench_convention.npz``), or when ``path`` is the ``.npz`` file itself;
* a ``.tar.gz`` archive that contains the split json (e.g. ``census.tar.gz``), used last.

Gold labels that are missing (``"label": null``, absent, or no ``y_<split>`` in an archive)
become ``-1``.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from metal.errors import WrenchFormatError

SPLITS = ("train", "valid", "test")
_SPLIT_ALIASES = {"train": ("train",), "valid": ("valid", "dev"), "test": ("test",)}


@dataclass(frozen=True)
class WrenchSplit:
    """One split of a WRENCH dataset.

    Attributes
    ----------
    L
        ``(n, m)`` label matrix, ``int8`` when every vote fits, else ``int16``; ``-1`` abstain.
    Y
        ``(n,)`` int64 gold labels, ``-1`` where unknown.
    ids
        The example ids, in row order (as in the file).
    examples
        The ``data`` dict of every example (text, spans, features...), in row order.
    label_names
        Class names from ``label.json`` (index = class), or ``None`` if there is none.
    name
        Dataset name (the folder's name).
    split
        Which split this is (``"train"``, ``"valid"`` or ``"test"``).
    labeled
        ``(n,)`` bool, True for rows listed in ``labeled_ids.json`` (``labeled_ids`` or
        ``lf_exemplar_ids``: WRENCH's few labeled rows appended to some train splits, e.g.
        the examples the LFs were written from); all False when there is no such file.
    features
        ``(n, f)`` float array when the examples carry a numeric ``feature`` vector (tabular
        sets such as census), else ``None``.
    scores
        ``(n, m)`` continuous LF scores when the archive has ``S_<split>``, else ``None``.
    """

    L: np.ndarray
    Y: np.ndarray
    ids: list[str]
    examples: list[dict[str, Any]]
    label_names: list[str] | None
    name: str
    split: str = "train"
    labeled: np.ndarray | None = None
    features: np.ndarray | None = None
    scores: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.L.shape[0])

    @property
    def n_sources(self) -> int:
        return int(self.L.shape[1])

    @property
    def cardinality(self) -> int:
        """Number of classes: from ``label.json``, else the largest label or vote seen + 1."""
        if self.label_names is not None:
            return len(self.label_names)
        top = max(int(self.L.max(initial=-1)), int(self.Y.max(initial=-1)))
        return max(top + 1, 2)


# ---------------------------------------------------------------------------- helpers
def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise WrenchFormatError(f"split={split!r} is not known; expected one of {SPLITS}")
    return split


def _narrow(L: np.ndarray) -> np.ndarray:
    """The smallest signed dtype (int8, else int16) that holds every vote."""
    hi = int(L.max(initial=-1))
    if hi <= np.iinfo(np.int8).max:
        return L.astype(np.int8, copy=False)
    if hi <= np.iinfo(np.int16).max:
        return L.astype(np.int16, copy=False)
    raise WrenchFormatError(f"the label matrix contains the class {hi}; expected classes below "
                            f"{np.iinfo(np.int16).max}. Check the weak labels.")


def _check_votes(L: np.ndarray, Y: np.ndarray, k: int | None, where: str) -> None:
    if L.size and int(L.min()) < -1:
        raise WrenchFormatError(f"{where}: weak_labels contain {int(L.min())}; expected -1 for "
                                "abstain and 0..k-1 for classes. Map your abstain marker to -1.")
    if Y.size and int(Y.min()) < -1:
        raise WrenchFormatError(f"{where}: labels contain {int(Y.min())}; expected 0..k-1, or "
                                "-1 / null where unknown.")
    if k is not None:
        top = max(int(L.max(initial=-1)), int(Y.max(initial=-1)))
        if top >= k:
            raise WrenchFormatError(f"{where}: a label or vote is {top} but label.json names "
                                    f"only {k} classes (0..{k - 1}). Fix label.json or the data.")


def _read_label_names(folder: Path) -> list[str] | None:
    file = folder / "label.json"
    if not file.is_file():
        return None
    return _parse_label_names(file.read_bytes(), str(file))


def _parse_label_names(text: bytes | str, file: str) -> list[str]:
    try:
        raw = json.loads(text)
        names = {int(key): str(value) for key, value in raw.items()}
    except (json.JSONDecodeError, ValueError, AttributeError) as exc:
        raise WrenchFormatError(f"{file} is not a json object mapping class indices to names "
                                f"({exc}); expected e.g. {{\"0\": \"ham\", \"1\": \"spam\"}}"
                                ) from exc
    if sorted(names) != list(range(len(names))):
        raise WrenchFormatError(f"{file} has class indices {sorted(names)}; expected 0..k-1 "
                                "with none missing")
    return [names[i] for i in range(len(names))]


def _read_labeled_ids(folder: Path) -> set[str]:
    file = folder / "labeled_ids.json"
    if not file.is_file():
        return set()
    try:
        raw = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise WrenchFormatError(f"{file} is not valid json ({exc})") from exc
    # WRENCH: {"labeled_ids": [...], "lf_exemplar_ids": [...]}; both are labeled rows
    lists = [raw.get("labeled_ids", []), raw.get("lf_exemplar_ids", [])] \
        if isinstance(raw, dict) else [raw]
    if not all(isinstance(ids, list) for ids in lists):
        raise WrenchFormatError(f"{file} should hold a list of ids, or {{\"labeled_ids\": [...], "
                                "\"lf_exemplar_ids\": [...]}")
    return {str(i) for ids in lists for i in ids}


def _labeled_mask(ids: list[str], labeled_ids: set[str]) -> np.ndarray:
    if not labeled_ids:
        return np.zeros(len(ids), dtype=bool)
    return np.isin(np.asarray(ids, dtype=str), np.asarray(sorted(labeled_ids), dtype=str))


def _features(examples: Sequence[dict[str, Any]]) -> np.ndarray | None:
    """Stack ``data["feature"]`` into an (n, f) array when every example has a numeric one."""
    if not examples or not all(isinstance(e, dict) and "feature" in e for e in examples[:1]):
        return None
    try:
        X = np.asarray(list(map(itemgetter("feature"), examples)), dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    return X if X.ndim == 2 else None


def _parse_split(raw: Any, where: str, name: str, split: str,
                 label_names: list[str] | None, labeled_ids: set[str]) -> WrenchSplit:
    """Turn a parsed split json into a :class:`WrenchSplit` (list-level, not row-level, work)."""
    if not isinstance(raw, dict):
        raise WrenchFormatError(f"{where} holds a json {type(raw).__name__}; expected an object "
                                "{id: {\"label\": ..., \"weak_labels\": [...], \"data\": {...}}}")
    if not raw:
        raise WrenchFormatError(f"{where} has no examples; expected at least one")
    ids = list(map(str, raw.keys()))
    records = list(raw.values())
    if not all(isinstance(r, dict) for r in records):
        raise WrenchFormatError(f"{where}: every example must be a json object with "
                                "\"weak_labels\", \"label\" and \"data\"")
    try:
        weak = list(map(itemgetter("weak_labels"), records))
    except KeyError:
        missing = next(i for i, r in zip(ids, records, strict=True) if "weak_labels" not in r)
        raise WrenchFormatError(f"{where}: example {missing!r} has no \"weak_labels\"; expected a "
                                "list with one vote per labeling function") from None
    first = weak[0]
    if isinstance(records[0].get("label"), list) or (
            isinstance(first, list) and first and isinstance(first[0], (list, str))):
        raise WrenchFormatError(
            f"{where}: this is a WRENCH sequence-tagging (NER) file: each example has a list of "
            "tags per token, not one label per example. load_wrench reads classification and "
            "relation sets (one label and one vote per labeling function per example); read it "
            "with metal.data.load_wrench_sequence")
    if not all(isinstance(w, list) for w in weak):
        bad_id = next(i for i, w in zip(ids, weak, strict=True) if not isinstance(w, list))
        raise WrenchFormatError(f"{where}: example {bad_id!r} has weak_labels that are not a list; "
                                "expected a list with one vote per labeling function")
    lengths = np.fromiter(map(len, weak), dtype=np.int64, count=len(weak))
    m = int(lengths[0])
    if (lengths != m).any():
        bad = int(np.flatnonzero(lengths != m)[0])
        raise WrenchFormatError(
            f"{where}: example {ids[bad]!r} has {int(lengths[bad])} weak labels but example "
            f"{ids[0]!r} has {m}; expected the same number of labeling functions in every row. "
            "Re-apply the same list of labeling functions to every example.")
    if m == 0:
        raise WrenchFormatError(f"{where}: examples have no weak labels; expected at least one "
                                "labeling function")
    try:
        L = np.asarray(weak, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        hint = (" It looks like a sequence (NER) dataset with a tag per token; load_wrench "
                "reads classification sets only.") if isinstance(weak[0][0], list) else ""
        raise WrenchFormatError(f"{where}: weak_labels are not integers ({exc}); expected -1 "
                                f"(abstain) or a class index 0..k-1.{hint}") from exc
    labels = [r.get("label") for r in records]
    try:
        Y = np.asarray([-1 if y is None else y for y in labels], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise WrenchFormatError(f"{where}: labels are not integers ({exc}); expected a class "
                                "index 0..k-1, or null where unknown") from exc
    if Y.ndim != 1:
        raise WrenchFormatError(f"{where}: labels are not single integers; load_wrench reads "
                                "classification sets (one label per example) only")
    _check_votes(L, Y, None if label_names is None else len(label_names), where)
    examples = [r.get("data", {}) for r in records]
    return WrenchSplit(L=_narrow(L), Y=Y, ids=ids, examples=examples, label_names=label_names,
                       name=name, split=split, labeled=_labeled_mask(ids, labeled_ids),
                       features=_features(examples))


def _load_json(file: Path) -> Any:
    try:
        with open(file, "rb") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise WrenchFormatError(f"{file} is not valid json ({exc}); re-download or re-export "
                                "the split") from exc


def _npz_key(keys: Sequence[str], prefix: str, split: str) -> str | None:
    for alias in _SPLIT_ALIASES[split]:
        if f"{prefix}_{alias}" in keys:
            return f"{prefix}_{alias}"
    return None


def _npz_candidates(folder: Path) -> dict[Path, list[str]]:
    """The folder's ``.npz`` archives and their keys (read from the zip index only)."""
    out: dict[Path, list[str]] = {}
    for file in sorted(folder.glob("*.npz")):
        try:
            with np.load(file, allow_pickle=False) as archive:
                out[file] = list(archive.files)
        except Exception:  # not a readable npz: not a candidate
            continue
    return out


def _load_npz(file: Path, split: str, name: str, label_names: list[str] | None,
              labeled_ids: set[str]) -> WrenchSplit:
    where = f"{file} ({split})"
    try:
        archive = np.load(file, allow_pickle=False)
    except Exception as exc:
        raise WrenchFormatError(f"{file} is not a readable .npz archive ({exc})") from exc
    with archive:
        keys = list(archive.files)
        lkey = _npz_key(keys, "L", split)
        if lkey is None:
            raise WrenchFormatError(
                f"{file} has no label matrix for split {split!r} (keys: {keys}); expected "
                f"L_{split}" + (" or L_dev" if split == "valid" else ""))
        L = np.asarray(archive[lkey])
        if L.ndim != 2 or L.dtype.kind not in "iuf":
            raise WrenchFormatError(f"{where}: {lkey} has shape {L.shape} and dtype {L.dtype}; "
                                    "expected a 2-D integer (n, m) matrix")
        if L.dtype.kind == "f":
            if not np.all(np.mod(L, 1) == 0):
                raise WrenchFormatError(f"{where}: {lkey} has non-integral votes")
        L = L.astype(np.int64, copy=False)
        n = L.shape[0]
        ykey = _npz_key(keys, "y", split)
        Y = (np.asarray(archive[ykey]).astype(np.int64) if ykey is not None
             else np.full(n, -1, dtype=np.int64))
        ikey = _npz_key(keys, "ids", split)
        ids = ([str(i) for i in archive[ikey].tolist()] if ikey is not None
               else [str(i) for i in range(n)])
        xkey = _npz_key(keys, "X", split)
        X = np.asarray(archive[xkey], dtype=np.float64) if xkey is not None else None
        skey = _npz_key(keys, "S", split)
        S = np.asarray(archive[skey], dtype=np.float64) if skey is not None else None
    for what, arr in (("y", Y), ("ids", ids), ("X", X), ("S", S)):
        if arr is not None and len(arr) != n:
            raise WrenchFormatError(f"{where}: {what} has {len(arr)} rows but L has {n}; "
                                    "expected one entry per row")
    if Y.ndim != 1:
        raise WrenchFormatError(f"{where}: y has shape {Y.shape}; expected ({n},)")
    _check_votes(L, Y, None if label_names is None else len(label_names), where)
    examples: list[dict[str, Any]] = ([{"feature": row} for row in X] if X is not None
                                      else [{} for _ in range(n)])
    return WrenchSplit(L=_narrow(L), Y=Y, ids=ids, examples=examples, label_names=label_names,
                       name=name, split=split, labeled=_labeled_mask(ids, labeled_ids),
                       features=X, scores=S)


def _tar_member(file: Path, member: str) -> bytes | None:
    try:
        with tarfile.open(file, "r:*") as tar:
            for info in tar:
                if info.isfile() and Path(info.name).name == member:
                    fh = tar.extractfile(info)
                    return None if fh is None else fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise WrenchFormatError(f"{file} is not a readable tar archive ({exc})") from exc
    return None


def _tar_members(file: Path) -> list[str]:
    try:
        with tarfile.open(file, "r:*") as tar:
            return [Path(n).name for n in tar.getnames()]
    except (tarfile.TarError, OSError, EOFError):
        return []


# ---------------------------------------------------------------------------- public API
def wrench_splits(path: str | os.PathLike[str]) -> list[str]:
    """Which of ``train``, ``valid``, ``test`` the WRENCH folder (or ``.npz`` file) provides.

    A split counts if ``<split>.json`` exists, or a ``.npz`` archive in the folder has
    ``L_<split>`` (``L_dev`` for ``valid``), or a ``.tar.gz`` archive contains
    ``<split>.json``.

    Raises
    ------
    WrenchFormatError
        ``path`` does not exist.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        keys = _npz_candidates(path.parent).get(path, [])
        return [s for s in SPLITS if _npz_key(keys, "L", s) is not None]
    if not path.is_dir():
        raise WrenchFormatError(f"{path} is not a folder; expected a WRENCH dataset folder with "
                                "train/valid/test json files (or a .npz archive)")
    found = {s for s in SPLITS if (path / f"{s}.json").is_file()}
    for keys in _npz_candidates(path).values():
        found |= {s for s in SPLITS if _npz_key(keys, "L", s) is not None}
    if len(found) < len(SPLITS):
        for tar in sorted(path.glob("*.tar.gz")) + sorted(path.glob("*.tgz")):
            members = _tar_members(tar)
            found |= {s for s in SPLITS if f"{s}.json" in members}
    return [s for s in SPLITS if s in found]


def load_wrench(path: str | os.PathLike[str], split: str = "train") -> WrenchSplit:
    """Load one split of a WRENCH-format dataset.

    Parameters
    ----------
    path
        A WRENCH folder (``<split>.json`` + ``label.json``; or a ``.npz`` / ``.tar.gz`` archive
        inside it, see the module docstring), or a ``.npz`` archive itself.
    split
        ``"train"``, ``"valid"`` or ``"test"``.

    Returns
    -------
    WrenchSplit
        Label matrix (int8 when it fits), gold labels (-1 unknown), ids and examples.

    Raises
    ------
    WrenchFormatError
        Missing folder or split, malformed json, inconsistent number of labeling functions,
        votes or labels outside ``-1..k-1``, or an ambiguous folder (several archives hold the
        split).

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = {"0": {"label": 1, "weak_labels": [1, -1], "data": {"text": "win cash"}},
    ...         "1": {"label": 0, "weak_labels": [-1, 0], "data": {"text": "hi mum"}}}
    >>> _ = (d / "train.json").write_text(json.dumps(rows))
    >>> _ = (d / "label.json").write_text(json.dumps({"0": "ham", "1": "spam"}))
    >>> s = load_wrench(d, "train")
    >>> s.L.tolist(), s.Y.tolist(), s.L.dtype.name, s.label_names
    ([[1, -1], [-1, 0]], [1, 0], 'int8', ['ham', 'spam'])
    """
    split = _check_split(split)
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        folder = path.parent
        return _load_npz(path, split, folder.name, _read_label_names(folder),
                         _read_labeled_ids(folder))
    if not path.is_dir():
        raise WrenchFormatError(f"{path} is not a folder; expected a WRENCH dataset folder with "
                                "train/valid/test json files (or a .npz archive)")
    name = path.name
    label_names = _read_label_names(path)
    labeled_ids = _read_labeled_ids(path)
    file = path / f"{split}.json"
    if file.is_file():
        return _parse_split(_load_json(file), str(file), name, split, label_names, labeled_ids)
    archives = [f for f, keys in _npz_candidates(path).items()
                if _npz_key(keys, "L", split) is not None]
    if len(archives) > 1:
        raise WrenchFormatError(f"{path} has no {split}.json and several archives with split "
                                f"{split!r}: {[a.name for a in archives]}; pass the one you mean "
                                "as path")
    if archives:
        return _load_npz(archives[0], split, name, label_names, labeled_ids)
    for tar in sorted(path.glob("*.tar.gz")) + sorted(path.glob("*.tgz")):
        blob = _tar_member(tar, f"{split}.json")
        if blob is None:
            continue
        try:
            raw = json.loads(blob)
        except json.JSONDecodeError as exc:
            raise WrenchFormatError(f"{tar}:{split}.json is not valid json ({exc})") from exc
        if label_names is None:
            names_blob = _tar_member(tar, "label.json")
            if names_blob is not None:
                label_names = _parse_label_names(names_blob, f"{tar}:label.json")
        return _parse_split(raw, f"{tar}:{split}.json", name, split, label_names, labeled_ids)
    available = wrench_splits(path)
    raise WrenchFormatError(
        f"{path} has no {split!r} split (no {split}.json, no .npz with L_{split}, no archive "
        f"containing {split}.json); it has {available or 'no split at all'}. "
        + (f"Pick one of {available}" + (" (WRENCH chemprot ships without train: fit on "
                                         "'valid')." if "chemprot" in name.lower() else ".")
           if available else "Point path at a WRENCH dataset folder."))

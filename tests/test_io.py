"""metal._io: the model file format (header, checksum, schema checks)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metal._io import FORMAT_VERSION, _checksum, load_arrays, save_arrays
from metal.errors import SaveFormatError


def test_round_trip_keeps_params_and_arrays(tmp_path) -> None:
    arrays = {"a": np.arange(6).reshape(2, 3), "b": np.array([0.25, 0.75])}
    save_arrays(tmp_path / "f", "Thing", {"x": 1, "y": [1, 2]}, arrays)  # no suffix added
    params, got = load_arrays(tmp_path / "f", "Thing")
    assert params == {"x": 1, "y": [1, 2]}
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k])
        assert got[k].dtype == arrays[k].dtype
    with np.load(tmp_path / "f") as z:
        meta = json.loads(str(z["__meta__"]))
    assert meta["format_version"] == FORMAT_VERSION and meta["kind"] == "Thing"
    assert len(meta["checksum"]) == 64


def test_checksum_sees_names_shapes_dtypes_and_header() -> None:
    base = _checksum({"p": 1}, {"a": np.zeros(4)})
    assert base == _checksum({"p": 1, "checksum": "ignored"}, {"a": np.zeros(4)})
    assert base != _checksum({"p": 2}, {"a": np.zeros(4)})
    assert base != _checksum({"p": 1}, {"b": np.zeros(4)})
    assert base != _checksum({"p": 1}, {"a": np.zeros((2, 2))})
    assert base != _checksum({"p": 1}, {"a": np.zeros(4, dtype=np.float32)})
    assert base != _checksum({"p": 1}, {"a": np.array([0.0, 0.0, 0.0, 1e-300])})


def test_version_one_files_load_without_checksum(tmp_path) -> None:
    meta = {"format_version": 1, "kind": "Thing", "params": {"x": 1}}
    with open(tmp_path / "old.npz", "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(meta)), a_v=np.ones(2))
    params, arrays = load_arrays(tmp_path / "old.npz", "Thing")
    assert params == {"x": 1} and arrays["v"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("meta,match", [
    ({"format_version": 2, "kind": "Thing", "params": {}}, "checksum"),
    ({"format_version": 3, "kind": "Thing", "params": {}}, "format version 3"),
    ({"format_version": 1, "kind": "Other", "params": {}}, "holds a Other"),
    ({"format_version": 1, "kind": "Thing"}, "'params'"),
    ([1, 2], "JSON object"),
])
def test_bad_headers(tmp_path, meta, match) -> None:
    with open(tmp_path / "m.npz", "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(SaveFormatError, match=match):
        load_arrays(tmp_path / "m.npz", "Thing")


def test_missing_file_is_file_not_found(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_arrays(tmp_path / "absent.npz", "Thing")

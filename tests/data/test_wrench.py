"""Unit tests of the WRENCH loader on tiny folders written by the tests themselves."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from metal.data.wrench import WrenchFormatError, WrenchSplit, load_wrench, wrench_splits
from metal.errors import MetalError

ROWS = {
    "10": {"label": 1, "weak_labels": [1, -1, 1], "data": {"text": "win cash now"}},
    "11": {"label": 0, "weak_labels": [-1, 0, -1], "data": {"text": "see you at 5"}},
    "12": {"label": None, "weak_labels": [-1, -1, -1], "data": {"text": "ok"}},
    "13": {"weak_labels": [0, 0, 1], "data": {"text": "no gold here"}},
}


def write_folder(folder: Path, splits: dict[str, object], labels: object | None = None,
                 labeled_ids: object | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (folder / f"{split}.json").write_text(json.dumps(rows))
    if labels is not None:
        (folder / "label.json").write_text(json.dumps(labels))
    if labeled_ids is not None:
        (folder / "labeled_ids.json").write_text(json.dumps(labeled_ids))
    return folder


def test_json_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "wrench_toy", {"train": ROWS, "test": ROWS},
                          {"0": "ham", "1": "spam"},
                          {"labeled_ids": ["12"], "lf_exemplar_ids": ["13", "99"]})
    s = load_wrench(folder, "train")
    assert isinstance(s, WrenchSplit)
    assert s.L.dtype == np.int8 and s.L.shape == (4, 3)
    np.testing.assert_array_equal(s.L, [[1, -1, 1], [-1, 0, -1], [-1, -1, -1], [0, 0, 1]])
    assert s.Y.dtype == np.int64
    np.testing.assert_array_equal(s.Y, [1, 0, -1, -1])  # null and absent label -> -1
    assert s.ids == ["10", "11", "12", "13"]
    assert [e["text"] for e in s.examples] == ["win cash now", "see you at 5", "ok",
                                                "no gold here"]
    assert s.label_names == ["ham", "spam"] and s.cardinality == 2
    assert s.name == "wrench_toy" and s.split == "train"
    np.testing.assert_array_equal(s.labeled, [False, False, True, True])
    assert s.features is None and s.scores is None
    assert wrench_splits(folder) == ["train", "test"]


def test_frozen(tmp_path: Path) -> None:
    s = load_wrench(write_folder(tmp_path / "d", {"train": ROWS}), "train")
    with pytest.raises(AttributeError):
        s.name = "other"  # type: ignore[misc]


def test_without_label_json(tmp_path: Path) -> None:
    s = load_wrench(write_folder(tmp_path / "d", {"valid": ROWS}), "valid")
    assert s.label_names is None and s.cardinality == 2
    np.testing.assert_array_equal(s.labeled, np.zeros(4, dtype=bool))


def test_int16_when_classes_do_not_fit_int8(tmp_path: Path) -> None:
    rows = {"0": {"label": 200, "weak_labels": [200, -1]},
            "1": {"label": 3, "weak_labels": [-1, 3]}}
    s = load_wrench(write_folder(tmp_path / "d", {"train": rows}), "train")
    assert s.L.dtype == np.int16
    np.testing.assert_array_equal(s.L, [[200, -1], [-1, 3]])
    assert s.examples == [{}, {}]


def test_feature_vectors_are_stacked(tmp_path: Path) -> None:
    rows = {str(i): {"label": i % 2, "weak_labels": [i % 2], "data": {"feature": [i, 2.0 * i]}}
            for i in range(3)}
    s = load_wrench(write_folder(tmp_path / "d", {"train": rows}), "train")
    assert s.features is not None
    np.testing.assert_allclose(s.features, [[0, 0], [1, 2], [2, 4]])


def test_missing_folder_and_split(tmp_path: Path) -> None:
    with pytest.raises(WrenchFormatError, match="not a folder"):
        load_wrench(tmp_path / "nope")
    with pytest.raises(WrenchFormatError, match="not a folder"):
        wrench_splits(tmp_path / "nope")
    folder = write_folder(tmp_path / "chem", {"valid": ROWS, "test": ROWS})
    with pytest.raises(WrenchFormatError, match=r"no 'train' split.*\['valid', 'test'\]") as err:
        load_wrench(folder, "train")
    assert isinstance(err.value, MetalError) and isinstance(err.value, ValueError)
    with pytest.raises(WrenchFormatError, match="split='dev' is not known"):
        load_wrench(folder, "dev")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert wrench_splits(empty) == []
    with pytest.raises(WrenchFormatError, match="no split at all"):
        load_wrench(empty, "test")


def test_malformed_json(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.json").write_text('{"0": {"label": 1, "weak_labels": [1, ')
    with pytest.raises(WrenchFormatError, match="not valid json"):
        load_wrench(folder)
    (folder / "train.json").write_text("[1, 2, 3]")
    with pytest.raises(WrenchFormatError, match="expected an object"):
        load_wrench(folder)
    (folder / "train.json").write_text("{}")
    with pytest.raises(WrenchFormatError, match="no examples"):
        load_wrench(folder)
    (folder / "train.json").write_text(json.dumps({"0": {"label": 1, "data": {}}}))
    with pytest.raises(WrenchFormatError, match="'0' has no \"weak_labels\""):
        load_wrench(folder)
    (folder / "train.json").write_text(json.dumps({"0": {"label": "spam", "weak_labels": [1]}}))
    with pytest.raises(WrenchFormatError, match="labels are not integers"):
        load_wrench(folder)
    (folder / "train.json").write_text(json.dumps(ROWS))
    (folder / "label.json").write_text('["ham", "spam"]')
    with pytest.raises(WrenchFormatError, match="label.json"):
        load_wrench(folder)
    (folder / "label.json").write_text('{"0": "ham", "2": "spam"}')
    with pytest.raises(WrenchFormatError, match="expected 0..k-1 with none missing"):
        load_wrench(folder)


def test_inconsistent_number_of_lfs(tmp_path: Path) -> None:
    rows = {"a": {"label": 0, "weak_labels": [0, -1]}, "b": {"label": 1, "weak_labels": [1]}}
    with pytest.raises(WrenchFormatError, match="'b' has 1 weak labels but example 'a' has 2"):
        load_wrench(write_folder(tmp_path / "d", {"train": rows}))


def test_votes_out_of_range(tmp_path: Path) -> None:
    rows = {"a": {"label": 0, "weak_labels": [-2, 0]}}
    with pytest.raises(WrenchFormatError, match="contain -2"):
        load_wrench(write_folder(tmp_path / "d1", {"train": rows}))
    rows = {"a": {"label": 0, "weak_labels": [2, 0]}}
    with pytest.raises(WrenchFormatError, match="names only 2 classes"):
        load_wrench(write_folder(tmp_path / "d2", {"train": rows}, {"0": "a", "1": "b"}))
    rows = {"a": {"label": 5, "weak_labels": [1, 0]}}
    with pytest.raises(WrenchFormatError, match="names only 2 classes"):
        load_wrench(write_folder(tmp_path / "d3", {"train": rows}, {"0": "a", "1": "b"}))


def test_sequence_dataset_is_rejected(tmp_path: Path) -> None:
    rows = {"0": {"label": ["O", "B-PER"], "weak_labels": [["O", "O"], ["B-PER", "O"]],
                  "data": {"text": ["hi", "Bob"]}}}
    with pytest.raises(WrenchFormatError, match="sequence"):
        load_wrench(write_folder(tmp_path / "seq", {"train": rows}))


def write_npz(file: Path, **arrays: np.ndarray) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return file


def test_npz_archive(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    L_tr = rng.integers(-1, 2, size=(7, 4))
    L_dev = rng.integers(-1, 2, size=(3, 4)).astype(np.int8)
    folder = tmp_path / "spouse"
    file = write_npz(folder / "compact.npz", L_train=L_tr, L_dev=L_dev,
                     y_dev=np.array([0, 1, 1], dtype=np.int8), S_dev=np.ones((3, 4)),
                     ids_train=np.arange(100, 107), X_train=np.eye(7, 2))
    assert wrench_splits(folder) == ["train", "valid"]
    assert wrench_splits(file) == ["train", "valid"]
    train = load_wrench(folder, "train")
    assert train.L.dtype == np.int8 and train.name == "spouse"
    np.testing.assert_array_equal(train.L, L_tr)
    np.testing.assert_array_equal(train.Y, np.full(7, -1))  # no y_train: gold unknown
    assert train.ids == [str(i) for i in range(100, 107)]
    assert train.features is not None and train.features.shape == (7, 2)
    np.testing.assert_array_equal(train.examples[1]["feature"], [0.0, 1.0])
    valid = load_wrench(file, "valid")  # "valid" reads L_dev / y_dev
    np.testing.assert_array_equal(valid.L, L_dev)
    np.testing.assert_array_equal(valid.Y, [0, 1, 1])
    assert valid.ids == ["0", "1", "2"] and valid.scores is not None
    with pytest.raises(WrenchFormatError, match="no label matrix for split 'test'"):
        load_wrench(file, "test")


def test_npz_inconsistent_and_ambiguous(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write_npz(folder / "a.npz", L_train=np.zeros((3, 2), dtype=np.int8), y_train=np.zeros(4))
    with pytest.raises(WrenchFormatError, match="y has 4 rows but L has 3"):
        load_wrench(folder)
    write_npz(folder / "a.npz", L_train=np.zeros((3,), dtype=np.int8))
    with pytest.raises(WrenchFormatError, match="expected a 2-D integer"):
        load_wrench(folder)
    write_npz(folder / "a.npz", L_train=np.zeros((3, 2), dtype=np.int8))
    write_npz(folder / "b.npz", L_train=np.zeros((3, 2), dtype=np.int8))
    with pytest.raises(WrenchFormatError, match="several archives"):
        load_wrench(folder)
    np.testing.assert_array_equal(load_wrench(folder / "b.npz").L, np.zeros((3, 2)))


def test_json_takes_precedence_over_npz(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d", {"train": ROWS})
    write_npz(folder / "extra.npz", L_train=np.zeros((4, 9), dtype=np.int8),
              L_test=np.zeros((2, 9), dtype=np.int8))
    assert load_wrench(folder, "train").L.shape == (4, 3)
    assert load_wrench(folder, "test").L.shape == (2, 9)


def test_tar_archive(tmp_path: Path) -> None:
    folder = tmp_path / "census"
    folder.mkdir()
    with tarfile.open(folder / "census.tar.gz", "w:gz") as tar:
        for name, obj in (("train.json", ROWS), ("label.json", {"0": "neg", "1": "pos"})):
            blob = json.dumps(obj).encode()
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    assert wrench_splits(folder) == ["train"]
    s = load_wrench(folder, "train")
    assert s.L.shape == (4, 3) and s.label_names == ["neg", "pos"]
    with pytest.raises(WrenchFormatError, match="no 'test' split"):
        load_wrench(folder, "test")

"""Load every WRENCH classification set (and Snorkel's spouse task) from ../shared/data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from metal.data.wrench import load_wrench, wrench_splits
from metal.matrix import check_label_matrix

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# folder: (sizes per split as in shared/data/README.md, number of LFs, number of classes)
EXPECTED = {
    "wrench_youtube": ({"train": 1686, "valid": 120, "test": 250}, 10, 2),
    "wrench_sms": ({"train": 4571, "valid": 500, "test": 500}, 73, 2),
    "wrench_trec": ({"train": 5033, "valid": 500, "test": 500}, 68, 6),
    "wrench_semeval": ({"train": 1749, "valid": 178, "test": 600}, 164, 9),
    "wrench_chemprot": ({"valid": 1607, "test": 1607}, 26, 10),
    "wrench_census": ({"train": 10083, "valid": 5561, "test": 16281}, 83, 2),
    "spear_cage_spouse": ({"train": 22276, "valid": 2814, "test": 2702}, 10, 2),
}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent"),
]


def test_every_classification_set_is_known() -> None:
    found = {p.name for p in SHARED_DATA.glob("wrench_*") if not p.name.startswith("wrench_seq")}
    assert found <= set(EXPECTED), f"new WRENCH sets to add here: {found - set(EXPECTED)}"


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_load_real_set(folder: str) -> None:
    path = SHARED_DATA / folder
    if not path.is_dir():
        pytest.skip(f"{folder} is absent")
    sizes, m, k = EXPECTED[folder]
    assert wrench_splits(path) == list(sizes)
    for split, n in sizes.items():
        s = load_wrench(path, split)
        assert s.L.shape == (n, m) and s.L.dtype == np.int8
        assert s.Y.shape == (n,) and len(s.ids) == n and len(s.examples) == n
        assert len(set(s.ids)) == n
        assert s.L.min() >= -1 and s.L.max() <= k - 1
        check_label_matrix(s.L, cardinality=k)
        assert (s.L >= 0).any(axis=0).sum() >= 1
        assert s.label_names is None or len(s.label_names) == k
        gold = s.Y[s.Y >= 0]
        if folder == "spear_cage_spouse" and split == "train":
            assert gold.size == 0  # spouse train has no gold
        else:
            assert gold.size == n and gold.max() <= k - 1
            assert np.unique(gold).size >= 2
    if folder == "wrench_census":
        assert s.features is not None and s.features.shape == (16281, 105)
    if folder in ("wrench_trec", "wrench_youtube", "wrench_sms"):
        assert load_wrench(path, "train").labeled.sum() > 0  # labeled_ids.json rows


@pytest.mark.slow
def test_census_json_loads_fast(tmp_path: Path) -> None:
    """The 10k x 83 census train json (from census.tar.gz) loads in about a second.

    Measured as CPU time of this process, so a busy shared machine does not fail it.
    """
    tar = SHARED_DATA / "wrench_census" / "census.tar.gz"
    if not tar.is_file():
        pytest.skip("census.tar.gz is absent")
    import tarfile

    with tarfile.open(tar) as archive:
        member = archive.extractfile("train.json")
        assert member is not None
        (tmp_path / "train.json").write_bytes(member.read())
    start = time.process_time()
    s = load_wrench(tmp_path, "train")
    elapsed = time.process_time() - start
    assert s.L.shape == (10083, 83)
    compact = load_wrench(SHARED_DATA / "wrench_census", "train")
    np.testing.assert_array_equal(s.L, compact.L)
    np.testing.assert_array_equal(s.Y, compact.Y)
    assert elapsed < 3.0, f"census train json took {elapsed:.2f}s of CPU"

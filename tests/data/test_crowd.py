"""Crowd answers (long format) to label matrices, on constructed examples and the real sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metal.data.crowd import CrowdFormatError, crowd_to_label_matrix, load_crowd
from metal.matrix import check_label_matrix, to_dense_labels

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def answers() -> pd.DataFrame:
    return pd.DataFrame({
        "item": ["q3", "q1", "q1", "q2", "q3", "q2"],
        "who": ["w9", "w9", "w2", "w2", "w2", "w5"],
        "said": ["pos", "neg", "neg", "pos", "neu", "neg"],
    })


def test_ids_are_mapped_and_unanswered_cells_abstain() -> None:
    L, questions, workers, classes = crowd_to_label_matrix(
        answers(), "item", "who", "said", classes=["neg", "neu", "pos"])
    assert list(questions) == ["q1", "q2", "q3"] and list(workers) == ["w2", "w5", "w9"]
    assert classes == ["neg", "neu", "pos"]
    np.testing.assert_array_equal(to_dense_labels(L), [[0, -1, 0], [2, 0, -1], [1, -1, 2]])
    assert L.nnz == 6  # class-0 answers are stored, unanswered cells are not
    check_label_matrix(L, cardinality=3)


def test_integer_answers_need_no_class_list_but_others_do() -> None:
    df = pd.DataFrame({"question": [5, 5, 7], "worker": ["a", "b", "a"], "answer": [0, 2, 1]})
    cm = crowd_to_label_matrix(df)
    assert cm.classes == [0, 1, 2]
    np.testing.assert_array_equal(to_dense_labels(cm.L), [[0, 2], [1, -1]])
    with pytest.raises(CrowdFormatError, match=r"not integers 0\.\.k-1.*classes="):
        crowd_to_label_matrix(answers(), "item", "who", "said")
    with pytest.raises(CrowdFormatError, match=r"\['neu'\].*not in classes"):
        crowd_to_label_matrix(answers(), "item", "who", "said", classes=["neg", "pos"])
    with pytest.raises(CrowdFormatError, match="missing"):
        crowd_to_label_matrix(answers())


def test_duplicate_answers() -> None:
    df = pd.DataFrame({"question": [1, 1, 2], "worker": [1, 1, 1], "answer": [0, 1, 1]})
    with pytest.raises(CrowdFormatError, match="question 1 by worker 1"):
        crowd_to_label_matrix(df)
    first = crowd_to_label_matrix(df, duplicates="first").L
    last = crowd_to_label_matrix(df, duplicates="last").L
    assert to_dense_labels(first)[0, 0] == 0 and to_dense_labels(last)[0, 0] == 1


def test_load_crowd_folder_maps_answers_and_truth(tmp_path: Path) -> None:
    pd.DataFrame({"question": [1, 1, 2, 3], "worker": [8, 9, 8, 9],
                  "answer": [5, 3, 3, 4]}).to_csv(tmp_path / "answer.csv", index=False)
    pd.DataFrame({"question": [2, 1, 99], "truth": [3, 5, 4]}).to_csv(
        tmp_path / "truth.csv", index=False)
    data = load_crowd(tmp_path)
    assert data.classes == [3, 4, 5] and data.cardinality == 3
    np.testing.assert_array_equal(to_dense_labels(data.L), [[2, 0], [0, -1], [-1, 1]])
    assert data.Y.tolist() == [2, 0, -1]  # question 3 has no truth; question 99 no answers
    (tmp_path / "answer.csv").write_text("q,w\n1,2\n")
    with pytest.raises(CrowdFormatError, match="expected question, worker, answer"):
        load_crowd(tmp_path)
    with pytest.raises(CrowdFormatError, match="answer.csv"):
        load_crowd(tmp_path / "nothing")


@pytest.mark.integration
@pytest.mark.parametrize("name,n,m,k", [("crowd_dog", 807, 109, 4),
                                        ("crowd_web_zhou2012", 2665, 177, 5)])
def test_real_crowd_sets(name: str, n: int, m: int, k: int) -> None:
    folder = SHARED / name
    if not folder.exists():
        pytest.skip(f"{folder} is absent")
    data = load_crowd(folder)
    assert data.L.shape == (n, m) and data.cardinality == k
    raw = pd.read_csv(folder / "answer.csv")
    assert data.L.nnz == len(raw)

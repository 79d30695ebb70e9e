"""Labeling functions and the in-memory applier on a small real DataFrame."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from metal.labeling.apply import LabelingFaultWarning, LFApplier, apply_lfs
from metal.labeling.lf import LabelingFunction, LabelingFunctionError, Row, labeling_function
from metal.matrix import check_label_matrix, to_dense_labels

SPAM, HAM = 1, 0


@pytest.fixture()
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {"text": ["FREE money now", "see you at lunch?", "win a free prize http://x.io",
                  "ok", None, "call me"],
         "author": ["bot1", "ann", "bot2", "bob", "carl", "ann"]},
        index=[10, 11, 12, 13, 14, 15])


def lower(x: Row) -> Row:
    y = x.copy()
    y.text = x.text.lower() if isinstance(x.text, str) else ""  # missing text reads as NaN
    return y


@labeling_function(pre=[lower])
def has_free(x: Row) -> int:
    return SPAM if "free" in x.text else -1


@labeling_function(name="known_ham_author", resources={"authors": {"ann", "bob"}})
def author_lf(x: Row, authors: set[str]) -> int | None:
    return HAM if x.author in authors else None


@labeling_function()
def short(x: Row) -> int:  # crashes on the missing text (None) by design
    return HAM if len(x.text) < 10 else -1


EXPECTED = np.array([  # has_free, known_ham_author, short
    [1, -1, -1],
    [-1, 0, -1],
    [1, -1, -1],
    [-1, 0, 0],
    [-1, -1, -1],  # short crashes here
    [-1, 0, 0],
])


def test_decorator_builds_named_sources() -> None:
    assert isinstance(has_free, LabelingFunction)
    assert has_free.name == "has_free" and author_lf.name == "known_ham_author"
    assert has_free.task is None and has_free.pre == (lower,)
    assert has_free(Row(text="Free!")) == SPAM  # preprocessor lowercases first
    assert author_lf(Row(author="ann")) == HAM and author_lf(Row(author="zed")) is None
    assert "has_free" in repr(has_free)


def test_applier_on_dataframe_with_faulty_source(df: pd.DataFrame) -> None:
    applier = LFApplier([has_free, author_lf, short], fault_tolerant=True, progress=False)
    with pytest.warns(LabelingFaultWarning, match=r"'short' on 1/6 rows .*TypeError.*row 4 "
                                                  r"\(index 14\)"):
        L = applier.apply(df)
    assert sp.isspmatrix_csr(L) and L.shape == (6, 3)
    np.testing.assert_array_equal(to_dense_labels(L), EXPECTED)
    assert L.nnz == int((EXPECTED >= 0).sum())  # votes only; class-0 votes are stored
    assert applier.fault_counts_ == {"has_free": 0, "known_ham_author": 0, "short": 1}
    assert "TypeError" in applier.first_faults_["short"]
    assert applier.source_names == ["has_free", "known_ham_author", "short"]
    check_label_matrix(L, cardinality=2)


def test_without_fault_tolerance_the_original_error_propagates_with_context(
        df: pd.DataFrame) -> None:
    applier = LFApplier([has_free, short], progress=False)
    with pytest.raises(TypeError) as info:
        applier.apply(df)
    notes = " ".join(getattr(info.value, "__notes__", [])) or str(info.value)
    assert "'short'" in notes and "row 4" in notes and "index 14" in notes


def test_same_matrix_from_dicts_and_from_chunks(df: pd.DataFrame) -> None:
    lfs = [has_free, author_lf]
    ref = LFApplier(lfs, progress=False).apply(df.iloc[:4])
    records = df.iloc[:4].to_dict("records")
    from_dicts = LFApplier(lfs, progress=False).apply(records)
    chunks = iter([df.iloc[:1], records[1:3], df.iloc[3:4]])
    from_chunks = LFApplier(lfs, progress=False, chunk_rows=1).apply(chunks)
    for other in (from_dicts, from_chunks):
        assert (ref != other).nnz == 0 and other.shape == ref.shape


def test_progress_bar_writes_to_stderr(df: pd.DataFrame,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    LFApplier([has_free], progress=True).apply(df)
    assert "6/6" in capsys.readouterr().err


def test_shared_preprocessor_runs_once_per_row(df: pd.DataFrame) -> None:
    calls = []

    def count(x: Row) -> Row:
        calls.append(1)
        return x

    a = LabelingFunction("a", lambda x: -1, pre=[count])
    b = LabelingFunction("b", lambda x: 0, pre=[count, lower])
    L = LFApplier([a, b], progress=False).apply(df)
    assert len(calls) == len(df)
    assert L.nnz == len(df)


def test_bad_return_values_are_explained(df: pd.DataFrame) -> None:
    returns_bool = LabelingFunction("returns_bool", lambda x: x.author == "ann")
    with pytest.raises(LabelingFunctionError, match=r"returns_bool.*returned False.*row 0"):
        LFApplier([returns_bool], progress=False).apply(df)
    too_big = LabelingFunction("too_big", lambda x: 5)
    with pytest.raises(LabelingFunctionError, match=r"returned 5; expected -1 .* 0\.\.1"):
        LFApplier([too_big], cardinality=2, progress=False).apply(df)
    # with fault tolerance a bad return value is a counted fault, not a silent vote
    applier = LFApplier([too_big], cardinality=2, fault_tolerant=True, progress=False)
    with pytest.warns(LabelingFaultWarning):
        L = applier.apply(df)
    assert L.nnz == 0 and applier.fault_counts_["too_big"] == len(df)


def test_declaration_errors() -> None:
    with pytest.raises(LabelingFunctionError, match="unique name"):
        LFApplier([has_free, has_free])
    with pytest.raises(LabelingFunctionError, match="not a LabelingFunction"):
        LFApplier([lambda x: 1])  # type: ignore[list-item]
    with pytest.raises(LabelingFunctionError, match="with parentheses"):
        labeling_function(lambda x: 1)  # type: ignore[arg-type]
    with pytest.raises(LabelingFunctionError, match="no task"):
        LFApplier([has_free, LabelingFunction("t", lambda x: 1, task="coarse")])
    with pytest.raises(LabelingFunctionError, match="expected a pandas DataFrame"):
        LFApplier([has_free]).apply("some text")
    with pytest.raises(LabelingFunctionError, match="expected dicts"):
        LFApplier([has_free], progress=False).apply([{"text": "a"}, "b"])


def test_multi_task_sources_return_one_matrix_per_task() -> None:
    @labeling_function(task=("coarse", "fine"))
    def both(x: Row) -> object:
        if x.text.startswith("who"):
            return (0, 2)  # tuple: one label per declared task, in order
        if x.text.startswith("where"):
            return {"coarse": 1}  # dict: missing task = abstain on it
        return -1  # abstain on both

    @labeling_function(task="coarse")
    def has_q(x: Row) -> int:
        return 0 if "?" in x.text else -1

    @labeling_function(task="fine")
    def city(x: Row) -> int:
        return 3 if "city" in x.text else -1

    data = [{"text": "who is it?"}, {"text": "where is the city"}, {"text": "hm"}]
    applier = LFApplier([both, has_q, city], cardinality={"coarse": 2, "fine": 4},
                        progress=False)
    out = applier.apply(data)
    assert applier.task_sources == {"coarse": ["both", "has_q"], "fine": ["both", "city"]}
    assert set(out) == {"coarse", "fine"}
    np.testing.assert_array_equal(to_dense_labels(out["coarse"]), [[0, 0], [1, -1], [-1, -1]])
    np.testing.assert_array_equal(to_dense_labels(out["fine"]), [[2, -1], [-1, 3], [-1, -1]])

    @labeling_function(task=("coarse", "fine"))
    def wrong(x: Row) -> object:
        return {"other": 1}

    with pytest.raises(LabelingFunctionError, match="returned labels for tasks"):
        LFApplier([wrong], progress=False).apply(data)


def test_apply_lfs_shortcut_and_no_dense_intermediate() -> None:
    # 200k rows x 2 sources voting on 1% of rows: the result stores only the votes
    n = 200_000
    data = pd.DataFrame({"i": np.arange(n)})
    every_100 = LabelingFunction("every_100", lambda x: 1 if x.i % 100 == 0 else -1)
    never = LabelingFunction("never", lambda x: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L = apply_lfs([every_100, never], data, progress=False)
    assert L.shape == (n, 2) and L.nnz == n // 100
    assert L.data.nbytes + L.indices.nbytes <= 8 * L.nnz

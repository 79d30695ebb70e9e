"""Crowdsourced answers in long format (``question, worker, answer``) as a sparse label matrix.

Workers are sources and questions are rows: ``L[q, w]`` is worker ``w``'s answer to question
``q`` mapped to a class index, and a question a worker did not answer is an abstention (an
unstored entry; see :mod:`metal.matrix`). Question and worker ids can be anything hashable
(strings, ints); the returned mappings give the id of each row and column.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metal.errors import CrowdFormatError

DUPLICATE_POLICIES = ("error", "first", "last")


class CrowdMatrix(NamedTuple):
    """A crowd label matrix with its index mappings (unpacks as ``L, questions, workers, classes``).

    Attributes
    ----------
    L
        ``(n_questions, n_workers)`` CSR matrix storing answers only (class indices).
    questions
        Question id of each row.
    workers
        Worker id of each column.
    classes
        Answer value of each class index (``classes[c]`` is what class ``c`` was called).
    """

    L: sp.csr_matrix
    questions: pd.Index
    workers: pd.Index
    classes: list[Any]


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """0-based codes and the sorted distinct ids (first-seen order if ids are not orderable)."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed types that do not compare: keep the order of first appearance
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64), pd.Index(uniques)


def _class_codes(values: pd.Series, classes: Sequence[Any] | None, what: str
                 ) -> tuple[np.ndarray, list[Any]]:
    if classes is None:
        numeric = pd.to_numeric(values, errors="coerce")
        ok = numeric.notna().all() and (np.mod(numeric, 1) == 0).all() and (numeric >= 0).all()
        if not ok:
            shown = sorted(map(str, values.unique()))[:10]
            raise CrowdFormatError(
                f"{what} are not integers 0..k-1 (values include {shown}); pass the explicit "
                "class list, e.g. classes=sorted(df['answer'].unique()), to map each value to "
                "its index")
        codes = numeric.to_numpy().astype(np.int64)
        return codes, list(range(int(codes.max()) + 1 if codes.size else 0))
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise CrowdFormatError(f"classes={classes} lists a value twice; list each class once")
    codes = pd.Index(classes).get_indexer(values)
    if (codes < 0).any():
        unknown = sorted(map(str, pd.unique(values[codes < 0])))[:10]
        raise CrowdFormatError(f"{what} contain values {unknown} that are not in classes="
                               f"{classes}; add them to the class list or fix the data")
    return codes.astype(np.int64), classes


def crowd_to_label_matrix(
    df: pd.DataFrame,
    question_col: str = "question",
    worker_col: str = "worker",
    answer_col: str = "answer",
    *,
    classes: Sequence[Any] | None = None,
    duplicates: str = "error",
) -> CrowdMatrix:
    """Turn long-format crowd answers into a sparse ``(questions, workers)`` label matrix.

    Parameters
    ----------
    df
        One row per answer.
    question_col, worker_col, answer_col
        Column names.
    classes
        The answer values in class order: value ``classes[c]`` becomes class ``c``. Without
        it, answers must already be integers ``0..k-1``. A missing answer (NaN) is an
        abstention.
    duplicates
        What to do when a worker answered a question more than once: ``"error"`` (default),
        keep the ``"first"`` or the ``"last"`` answer (in ``df`` order).

    Returns
    -------
    CrowdMatrix
        ``L`` plus the question ids (rows), worker ids (columns) and class values.

    Raises
    ------
    CrowdFormatError
        Missing columns, answers that are not classes, repeated answers with
        ``duplicates="error"``.

    Examples
    --------
    >>> df = pd.DataFrame({"question": ["q1", "q1", "q2"], "worker": ["ann", "bob", "bob"],
    ...                    "answer": ["cat", "dog", "dog"]})
    >>> L, questions, workers, classes = crowd_to_label_matrix(df, classes=["cat", "dog"])
    >>> L.toarray().tolist(), list(questions), list(workers)
    ([[0, 1], [0, 1]], ['q1', 'q2'], ['ann', 'bob'])
    >>> L.nnz  # stored entries are answers; (q2, ann) is unstored, i.e. abstain
    3
    """
    if not isinstance(df, pd.DataFrame):
        raise CrowdFormatError(f"df is a {type(df).__name__}; expected a pandas DataFrame with "
                               "one row per answer")
    missing = [c for c in (question_col, worker_col, answer_col) if c not in df.columns]
    if missing:
        raise CrowdFormatError(f"columns {missing} are missing; the answers have columns "
                               f"{list(df.columns)}. Pass question_col=, worker_col=, answer_col=")
    if duplicates not in DUPLICATE_POLICIES:
        raise CrowdFormatError(f"duplicates={duplicates!r}; expected one of {DUPLICATE_POLICIES}")
    if df[[question_col, worker_col]].isna().any().any():
        raise CrowdFormatError(f"some answers have no {question_col} or {worker_col} id; drop "
                               "those rows first")
    q_codes, questions = _factorize(df[question_col])
    w_codes, workers = _factorize(df[worker_col])
    answered = df[answer_col].notna().to_numpy()
    a_codes, class_list = _class_codes(df[answer_col][answered], classes, "answers")
    q_codes, w_codes = q_codes[answered], w_codes[answered]
    pair = q_codes * len(workers) + w_codes
    if duplicates == "error":
        uniq, counts = np.unique(pair, return_counts=True)
        if (counts > 1).any():
            first = int(uniq[counts > 1][0])
            q, w = questions[first // len(workers)], workers[first % len(workers)]
            q, w = (v.item() if isinstance(v, np.generic) else v for v in (q, w))
            raise CrowdFormatError(
                f"{int((counts > 1).sum())} (question, worker) pairs have more than one answer, "
                f"e.g. question {q!r} by worker {w!r}; pass duplicates='first' or 'last'")
    else:
        order = np.arange(pair.size)
        if duplicates == "last":
            order = order[::-1]
        _, keep = np.unique(pair[order], return_index=True)
        keep = np.sort(order[keep])
        q_codes, w_codes, a_codes = q_codes[keep], w_codes[keep], a_codes[keep]
    L = sp.csr_matrix((a_codes.astype(np.int32), (q_codes, w_codes)),
                      shape=(len(questions), len(workers)))
    return CrowdMatrix(L, questions, workers, class_list)


@dataclass(frozen=True)
class CrowdData:
    """A crowdsourcing data set: answers as a label matrix, and the truth where known.

    Attributes
    ----------
    L
        ``(n_questions, n_workers)`` sparse label matrix (answers only).
    Y
        ``(n_questions,)`` int64 true class, ``-1`` where the truth is unknown.
    questions, workers
        Ids of the rows and of the columns.
    classes
        Original answer value of each class index.
    name
        Folder name.
    """

    L: sp.csr_matrix
    Y: np.ndarray
    questions: pd.Index
    workers: pd.Index
    classes: list[Hashable]
    name: str

    @property
    def cardinality(self) -> int:
        return len(self.classes)


def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except pd.errors.ParserError as exc:
        raise CrowdFormatError(f"{path} is not a readable csv ({exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise CrowdFormatError(f"{path} is empty; expected a header {','.join(columns)}") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CrowdFormatError(f"{path} has columns {list(df.columns)}; expected "
                               f"{', '.join(columns)} (missing {missing})")
    if df.empty:
        raise CrowdFormatError(f"{path} has no rows; expected at least one answer")
    return df


def load_crowd(path: str | Path, *, classes: Sequence[Any] | None = None,
               duplicates: str = "error") -> CrowdData:
    """Load a crowd folder (``answer.csv``: question,worker,answer; optional ``truth.csv``:
    question,truth), or an answers csv file directly.

    Parameters
    ----------
    path
        The folder, or the answers csv (a ``truth.csv`` beside it is then not read).
    classes
        Answer values in class order. Default: the sorted distinct values of the answers and
        the truth (e.g. answers 1..5 become classes 0..4; see :attr:`CrowdData.classes`).
    duplicates
        See :func:`crowd_to_label_matrix`.

    Returns
    -------
    CrowdData
        Rows are the questions that have at least one answer; truth for other questions is
        ignored.
    """
    path = Path(path)
    if path.is_dir():
        answers_file, truth_file = path / "answer.csv", path / "truth.csv"
    elif path.suffix == ".csv":
        answers_file, truth_file = path, None
    else:
        raise CrowdFormatError(f"{path} is neither a folder with answer.csv nor a .csv file")
    if not answers_file.exists():
        raise CrowdFormatError(f"{answers_file} does not exist; a crowd folder needs answer.csv "
                               "with columns question,worker,answer")
    answers = _read_csv(answers_file, ("question", "worker", "answer"))
    truth = None
    if truth_file is not None and truth_file.exists():
        truth = _read_csv(truth_file, ("question", "truth"))
    if classes is None:
        values = answers["answer"].dropna()
        if truth is not None:
            values = pd.concat([values, truth["truth"].dropna()])
        try:
            classes = sorted(pd.unique(values).tolist())
        except TypeError as exc:
            raise CrowdFormatError(f"answers in {path} mix types that cannot be ordered; pass "
                                   "classes=[...] explicitly") from exc
    cm = crowd_to_label_matrix(answers, classes=classes, duplicates=duplicates)
    Y = np.full(len(cm.questions), -1, dtype=np.int64)
    if truth is not None:
        truth = truth.dropna(subset=["truth"])
        rows = cm.questions.get_indexer(truth["question"])
        known = rows >= 0
        codes, _ = _class_codes(truth["truth"][known], cm.classes, "truth labels")
        Y[rows[known]] = codes
    return CrowdData(L=cm.L, Y=Y, questions=cm.questions, workers=cm.workers,
                     classes=cm.classes, name=path.name if path.is_dir() else path.stem)

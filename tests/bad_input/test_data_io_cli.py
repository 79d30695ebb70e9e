"""Bad inputs to the loaders, labeling functions, metrics, model files and the ``metal``
command: a metal error (or one line and exit status 2/1) that says what to do."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cases import Case, assert_case

from metal import (
    DawidSkene,
    LabelingFunction,
    LabelModel,
    LFApplier,
    crowd_to_label_matrix,
    labeling_function,
    lf_summary,
    load_crowd,
    load_wrench,
    probs_to_preds,
    score_predictions,
)
from metal.cli import main
from metal.data import make_synthetic
from metal.errors import (
    ConfigError,
    CrowdFormatError,
    LabelingFunctionError,
    LabelMatrixError,
    SaveFormatError,
    WrenchFormatError,
)

DATA = make_synthetic(n=300, m=4, cardinality=2, seed=1)


@labeling_function()
def lf_ok(x):
    return 1


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    # WRENCH folders: a NER file, a folder with only test, ragged votes, a non-int label
    ner = d / "ner"
    ner.mkdir()
    (ner / "train.json").write_text(json.dumps({"0": {"label": ["O", "B-X"], "weak_labels": [
        ["O", "O"], ["B-X", "O"]], "data": {"text": ["a", "b"]}}}))
    only_test = d / "only_test"
    only_test.mkdir()
    (only_test / "test.json").write_text(json.dumps({"0": {"label": 0, "weak_labels": [0]}}))
    ragged = d / "ragged"
    ragged.mkdir()
    (ragged / "train.json").write_text(json.dumps({
        "0": {"label": 0, "weak_labels": [0, 1]}, "1": {"label": 1, "weak_labels": [1]}}))
    badjson = d / "badjson"
    badjson.mkdir()
    (badjson / "train.json").write_text("{not json")
    # crowd
    (d / "answers_missing_col.csv").write_text("question,worker\nq1,w1\n")
    (d / "dup.csv").write_text("question,worker,answer\nq1,w1,0\nq1,w1,1\n")
    # model files
    model = LabelModel(seed=0).fit(DATA.L)
    model.save(d / "model.npz")
    raw = (d / "model.npz").read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    _rewrite(d / "model.npz", d / "tampered_header.npz",
             lambda meta, arrays: meta["params"].__setitem__("cardinality", 3))
    _rewrite(d / "model.npz", d / "nan_balance.npz",
             lambda meta, arrays: arrays.__setitem__("a_class_balance",
                                                     np.array([np.nan, 1.0])),
             fix_checksum=True)
    _rewrite(d / "model.npz", d / "missing_array.npz",
             lambda meta, arrays: arrays.pop("a_emitted"), fix_checksum=True)
    _rewrite(d / "model.npz", d / "missing_field.npz",
             lambda meta, arrays: meta["params"].pop("n_sources"), fix_checksum=True)
    _rewrite(d / "model.npz", d / "bad_clique.npz",
             lambda meta, arrays: meta["params"].__setitem__("cliques", [[0, 99]]),
             fix_checksum=True)
    _rewrite(d / "model.npz", d / "old_version.npz",
             lambda meta, arrays: meta.__setitem__("format_version", 99))
    _rewrite(d / "model.npz", d / "wrong_shape.npz",
             lambda meta, arrays: arrays.__setitem__("a_indicator_probs",
                                                     arrays["a_indicator_probs"][:, :1]),
             fix_checksum=True)
    np.savez(d / "foreign.npz", x=np.zeros(3))
    (d / "not_a_zip.npz").write_bytes(b"hello")
    np.savez(d / "syn.npz", L=DATA.L, Y=DATA.Y)
    np.save(d / "neg.npy", np.tile([[-0.5, 1.5]], (300, 1)))
    np.save(d / "nan.npy", np.full((300, 2), np.nan))
    np.save(d / "good.npy", np.full((300, 2), 0.5))
    DawidSkene(seed=0).fit(DATA.L).save(d / "ds.npz")
    return d


def _rewrite(src: Path, dst: Path, edit, fix_checksum: bool = False) -> None:
    """Copy a model file with its header or arrays edited (optionally re-signed, to reach the
    checks behind the checksum)."""
    from metal._io import _checksum

    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
        meta = json.loads(str(z["__meta__"]))
    edit(meta, arrays)
    if fix_checksum:
        meta["checksum"] = _checksum(meta, {k[2:]: v for k, v in arrays.items()})
    with open(dst, "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(meta)), **arrays)


def _file_cases(d: Path) -> list[Case]:
    return [
        # ---- WRENCH and crowd loaders
        Case("wrench-ner-file", lambda: load_wrench(d / "ner", "train"), WrenchFormatError,
             "sequence-tagging"),
        Case("wrench-missing-split", lambda: load_wrench(d / "only_test", "train"),
             WrenchFormatError, r"Pick one of \['test'\]\.$"),
        Case("wrench-bad-split-name", lambda: load_wrench(d / "only_test", "dev"),
             WrenchFormatError, "train"),
        Case("wrench-ragged", lambda: load_wrench(d / "ragged", "train"), WrenchFormatError,
             "same number of labeling functions"),
        Case("wrench-bad-json", lambda: load_wrench(d / "badjson", "train"), WrenchFormatError,
             "json"),
        Case("wrench-no-folder", lambda: load_wrench(d / "nowhere", "train"), WrenchFormatError,
             "not a folder"),
        Case("crowd-missing-column", lambda: load_crowd(d / "answers_missing_col.csv"),
             CrowdFormatError, "missing"),
        Case("crowd-duplicate-answers", lambda: load_crowd(d / "dup.csv"), CrowdFormatError,
             "duplicates"),
        Case("crowd-not-a-frame", lambda: crowd_to_label_matrix([1, 2]), CrowdFormatError,
             "DataFrame"),
        Case("crowd-bad-policy", lambda: crowd_to_label_matrix(
            pd.DataFrame({"question": [1], "worker": [1], "answer": [0]}), duplicates="x"),
            CrowdFormatError, "duplicates='x'"),
        Case("crowd-no-path", lambda: load_crowd(d / "nothing.txt"), CrowdFormatError,
             "neither a folder"),
        # ---- labeling functions
        Case("lf-empty-name", lambda: LabelingFunction("", lambda x: 0), LabelingFunctionError,
             "non-empty string"),
        Case("lf-not-callable", lambda: LabelingFunction("a", 3), LabelingFunctionError,
             "not callable"),
        Case("lf-decorator-no-parens", lambda: labeling_function(lambda x: 0),
             LabelingFunctionError, "parentheses"),
        Case("applier-empty", lambda: LFApplier([]), LabelingFunctionError, "non-empty"),
        Case("applier-duplicate-names", lambda: LFApplier([lf_ok, lf_ok]),
             LabelingFunctionError, "more than once"),
        Case("applier-not-lf", lambda: LFApplier([lambda x: 0]), LabelingFunctionError,
             "@labeling_function"),
        Case("applier-chunk-rows", lambda: LFApplier([lf_ok], chunk_rows=0),
             LabelingFunctionError, "chunk_rows"),
        Case("lf-returns-out-of-range", lambda: LFApplier(
            [LabelingFunction("big", lambda x: 7)], cardinality=2, progress=False).apply(
                [{"t": 1}]), LabelingFunctionError, "big"),
        Case("lf-summary-names", lambda: lf_summary(DATA.L, names=["a"]), ConfigError,
             "one name per column"),
        Case("lf-summary-nan-gold", lambda: lf_summary(DATA.L, Y=np.full(300, np.nan)),
             LabelMatrixError, "NaN"),
        Case("lf-summary-model", lambda: lf_summary(DATA.L, model=object()), ConfigError,
             "get_accuracies"),
        # ---- metrics
        Case("preds-nan-row", lambda: probs_to_preds(np.array([[np.nan, np.nan], [.2, .8]])),
             ConfigError, "NaN"),
        Case("preds-1d", lambda: probs_to_preds(np.array([0.2, 0.8])), ConfigError,
             r"expected \(n, k\)"),
        Case("preds-tie-break", lambda: probs_to_preds(np.eye(2), tie_break="x"), ConfigError,
             "tie_break='x'"),
        Case("preds-seed", lambda: probs_to_preds(np.eye(2), seed=-1), ConfigError, "seed=-1"),
        Case("score-lengths", lambda: score_predictions(np.array([0, 1, 1]), np.array([0, 1])),
             ConfigError, "3 labels and preds has 2"),
        Case("score-nan-gold", lambda: score_predictions(np.array([0.0, np.nan]),
                                                         np.array([0, 1])),
             LabelMatrixError, "NaN"),
        Case("score-unknown-metric", lambda: score_predictions([0, 1], [0, 1], ["auc"]),
             ConfigError, "unknown metrics"),
        Case("score-no-gold", lambda: score_predictions([-1, -1], [0, 1]), ConfigError,
             "no row has a gold label"),
        Case("score-label-above-k", lambda: score_predictions([0, 5], [0, 1], cardinality=2),
             ConfigError, "cardinality=2"),
        Case("score-2d", lambda: score_predictions(np.zeros((2, 2)), np.zeros((2, 2))),
             LabelMatrixError, "1-D"),
        # ---- model files
        Case("load-truncated", lambda: LabelModel.load(d / "truncated.npz"), SaveFormatError,
             "truncated"),
        Case("load-tampered-header", lambda: LabelModel.load(d / "tampered_header.npz"),
             SaveFormatError, "checksum"),
        Case("load-nan-balance", lambda: LabelModel.load(d / "nan_balance.npz"),
             SaveFormatError, "class_balance.*NaN"),
        Case("load-missing-array", lambda: LabelModel.load(d / "missing_array.npz"),
             SaveFormatError, "'emitted' is missing"),
        Case("load-missing-field", lambda: LabelModel.load(d / "missing_field.npz"),
             SaveFormatError, "'n_sources' is missing"),
        Case("load-bad-clique", lambda: LabelModel.load(d / "bad_clique.npz"),
             SaveFormatError, "cliques"),
        Case("load-version", lambda: LabelModel.load(d / "old_version.npz"), SaveFormatError,
             "format version 99"),
        Case("load-wrong-shape", lambda: LabelModel.load(d / "wrong_shape.npz"),
             SaveFormatError, "indicator_probs"),
        Case("load-foreign", lambda: LabelModel.load(d / "foreign.npz"), SaveFormatError,
             "not a metal model"),
        Case("load-not-zip", lambda: LabelModel.load(d / "not_a_zip.npz"), SaveFormatError,
             "not a metal model"),
        Case("load-wrong-kind", lambda: LabelModel.load(d / "ds.npz"), SaveFormatError,
             "DawidSkene.load"),
        Case("load-missing-file", lambda: LabelModel.load(d / "absent.npz"), FileNotFoundError,
             "absent"),
        Case("save-unfitted", lambda: LabelModel().save(d / "x.npz"), Exception, "not fitted"),
    ]


CASE_IDS = [c.id for c in _file_cases(Path("."))]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input(files: Path, case_id: str) -> None:
    (case,) = [c for c in _file_cases(files) if c.id == case_id]
    assert_case(case)


# ---- the command line: one line on stderr, exit 2 (usage) or 1 (data), no traceback
CLI_CASES = [
    ("cli-tasks-not-int", ["check", "-m", "3", "--tasks", "2,x", "--coverage", "0", "0", "1"],
     2, "--tasks 2,x"),
    ("cli-tasks-negative", ["check", "-m", "3", "--tasks", "2,-5", "--coverage", "0", "0", "1"],
     2, "cardinality[1]=-5"),
    ("cli-truncated-npz", ["analyze", "{d}/not_a_zip.npz"], 1, "not a readable .npz"),
    ("cli-truncated-model", ["evaluate", "{d}/syn.npz", "--model", "{d}/truncated.npz"], 1,
     "not a metal model file"),
    ("cli-tampered-model", ["evaluate", "{d}/syn.npz", "--model", "{d}/tampered_header.npz"], 1,
     "checksum"),
    ("cli-negative-probs", ["evaluate", "{d}/syn.npz", "--probs", "{d}/neg.npy"], 1,
     r"probabilities in [0, 1]"),
    ("cli-nan-probs", ["evaluate", "{d}/syn.npz", "--probs", "{d}/nan.npy"], 1, "NaN"),
    ("cli-ner-folder", ["fit", "{d}/ner"], 1, "sequence-tagging"),
    ("cli-missing-split", ["fit", "{d}/only_test"], 1, "Pick one of ['test']"),
    ("cli-cardinality-zero", ["fit", "{d}/syn.npz", "-k", "0"], 2, "cardinality=0"),
    ("cli-n-sources-zero", ["check", "-m", "0"], 2, "n_sources=0"),
    ("cli-edge-out-of-range", ["fit", "{d}/syn.npz", "--edge", "0,9"], 2, "distinct sources"),
]


@pytest.mark.parametrize("argv,fragment", [
    (["check", "-m", "x"], "invalid int value: 'x'"),
    (["fit", "x.npz", "--bogus"], "unrecognized arguments"),
    (["evaluate", "x.npz", "--metrics", "auc"], "invalid choice"),
], ids=["cli-usage-not-int", "cli-usage-unknown-option", "cli-usage-bad-choice"])
def test_cli_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str],
                          fragment: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("case_id,argv,code,fragment", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(files: Path, capsys: pytest.CaptureFixture[str], case_id: str,
                       argv: list[str], code: int, fragment: str) -> None:
    assert main([a.replace("{d}", str(files)) for a in argv]) == code
    err = capsys.readouterr().err
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_valid_probabilities_are_scored(files: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The legitimate neighbour of the bad-probability cases: uniform probabilities, ties broken
    by the first class, score exactly the share of class 0."""
    assert main(["evaluate", str(files / "syn.npz"), "--probs", str(files / "good.npy"),
                 "--tie-break", "first"]) == 0
    acc = float(capsys.readouterr().out.split("accuracy:")[1].split()[0])
    assert acc == pytest.approx(np.mean(DATA.Y == 0), abs=1e-4)


def test_untampered_file_loads(files: Path) -> None:
    model = LabelModel.load(files / "model.npz")
    np.testing.assert_array_equal(model.predict_proba(DATA.L),
                                  LabelModel(seed=0).fit(DATA.L).predict_proba(DATA.L))
    assert zipfile.is_zipfile(files / "model.npz")


def test_crowd_warnings_are_one_line_per_cause() -> None:
    """Many rare workers: one warning clause with a count, not one clause per worker."""
    import warnings

    rng = np.random.default_rng(0)
    L = np.full((400, 60), -1)
    L[:, :4] = rng.integers(0, 2, size=(400, 4))
    for j in range(4, 60):  # 56 workers answering 3 questions each
        L[rng.choice(400, 3, replace=False), j] = rng.integers(0, 2, size=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LabelModel(seed=0).fit(L)
    texts = [str(w.message) for w in caught]
    assert any("56 source(s) vote fewer than 20 times" in t for t in texts), texts
    assert all(t.count("votes only") == 0 for t in texts)

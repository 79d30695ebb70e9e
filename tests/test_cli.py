"""The ``metal`` command: every subcommand as a subprocess on generated data and on bad input,
plus in-process checks of the options (fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metal.cli import COMMANDS, build_parser, main
from metal.data.synthetic import make_synthetic

SUBCOMMANDS = ["demo", "analyze", "check", "fit", "evaluate", "train", "weasel", "ner"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m metal.cli ...`` (the same ``main`` as the installed ``metal`` script)."""
    return subprocess.run([sys.executable, "-m", "metal.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                               "PATH": "/usr/bin:/bin", "HOME": str(cwd),
                               # this checkout's metal, not whichever one is installed
                               "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    data = make_synthetic(n=600, m=5, cardinality=2, seed=3, unipolar_fraction=0.0)
    np.savez(d / "syn.npz", L=data.L, Y=data.Y)
    # a WRENCH folder (train without gold, test with gold) from the same generator
    rows = {str(i): {"label": int(y), "weak_labels": [int(v) for v in l], "data": {"text": ""}}
            for i, (l, y) in enumerate(zip(data.L, data.Y, strict=True))}
    wrench = d / "wrench"
    wrench.mkdir()
    (wrench / "label.json").write_text(json.dumps({"0": "neg", "1": "pos"}))
    (wrench / "train.json").write_text(json.dumps(rows))
    (wrench / "test.json").write_text(json.dumps(rows))
    # a crowd folder with string ids and answers 1..3
    crowd = d / "crowd"
    crowd.mkdir()
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 4, size=60)
    ans = [(f"q{q}", f"w{w}", int(truth[q]) if rng.random() < 0.8 else int(rng.integers(1, 4)))
           for q in range(60) for w in rng.choice(8, size=4, replace=False)]
    pd.DataFrame(ans, columns=["question", "worker", "answer"]).to_csv(crowd / "answer.csv",
                                                                      index=False)
    pd.DataFrame({"question": [f"q{q}" for q in range(60)], "truth": truth}).to_csv(
        crowd / "truth.csv", index=False)
    (d / "bad.npz").write_bytes(b"not a zip archive")
    return d


# ------------------------------------------------------------------ subprocesses
def test_help_of_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(COMMANDS) == len(SUBCOMMANDS)
    for cmd in SUBCOMMANDS:
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([cmd, "--help"])
        assert info.value.code == 0
        assert f"usage: metal {cmd}" in capsys.readouterr().out


@pytest.mark.slow  # > 15 s on a shared 2-core machine; run by .ci/run
@pytest.mark.timeout(300)
def test_demo_subprocess(work: Path) -> None:
    r = run("demo", "--n", "2000", "--m", "6", "-k", "2", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "label accuracy: LabelModel" in r.stdout and "majority vote" in r.stdout


@pytest.mark.slow  # > 15 s on a shared 2-core machine; run by .ci/run
@pytest.mark.timeout(300)
def test_fit_then_evaluate_and_analyze_subprocess(work: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    r = run("fit", "syn.npz", "--probs", "p.csv", "--model-out", "m.npz", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "written to p.csv" in r.stdout and (work / "m.npz").exists()
    probs = np.loadtxt(work / "p.csv", delimiter=",", skiprows=1)
    assert probs.shape == (600, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)

    r = run("evaluate", "syn.npz", "--probs", "p.csv", "--metrics", "accuracy", "f1",
            "--calibration", cwd=work)
    assert r.returncode == 0, r.stderr
    acc = float(r.stdout.split("accuracy:")[1].split()[0])
    assert 0.6 < acc <= 1.0 and "f1:" in r.stdout and "ece:" in r.stdout
    assert main(["evaluate", str(work / "syn.npz"), "--model", str(work / "m.npz")]) == 0
    assert f"accuracy: {acc:.4f}" in capsys.readouterr().out  # same model seed, same ties

    r = run("analyze", "syn.npz", "--model", "m.npz", "--out", "s.csv", "--plots", "plots",
            cwd=work)
    assert r.returncode == 0, r.stderr
    assert "learned_acc" in r.stdout and "emp_acc" in r.stdout
    summary = pd.read_csv(work / "s.csv", index_col=0)
    assert len(summary) == 5 and summary["coverage"].between(0, 1).all()
    assert sorted(p.name for p in (work / "plots").iterdir()) == [
        "accuracy_scatter.png", "calibration.png", "coverage_accuracy.png"]


def test_check_exit_codes(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = run("check", "--n-sources", "3", "--edge", "0,1", cwd=work)
    assert bad.returncode == 1 and "NOT IDENTIFIABLE" in bad.stdout, bad.stderr
    assert "fix:" in bad.stdout
    assert main(["check", "--n-sources", "3", "--cardinality", "2"]) == 0
    assert capsys.readouterr().out.startswith("IDENTIFIABLE:")
    (work / "edges.txt").write_text("# dependent pair\n0 1\n")
    assert main(["check", "-m", "4", "--edges", str(work / "edges.txt")]) == 0
    assert "[[0, 1]]" in capsys.readouterr().out


# Each subprocess pays the interpreter + torch start-up, so only two run by default; the
# same errors are also checked in process below.
@pytest.mark.parametrize("args,message,code", [
    (["fit", "missing_folder"], "does not exist", 2),
    (["analyze", "bad.npz"], "not a readable .npz", 1),
    pytest.param(["evaluate", "syn.npz"], "exactly one of --probs", 2, marks=pytest.mark.slow),
    pytest.param(["check", "--n-sources", "3", "--edge", "0,x"], "is not an edge", 2,
                 marks=pytest.mark.slow),
    pytest.param(["demo", "--n", "0"], "need n >= 1", 2, marks=pytest.mark.slow),
])
def test_bad_input_subprocess(work: Path, args: list[str], message: str, code: int) -> None:
    r = run(*args, cwd=work)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and r.stderr.startswith(f"metal {args[0]}: error:")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# ------------------------------------------------------------------ in process (fast)
def test_fit_dawid_skene_on_crowd_folder_and_evaluate(work: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", str(work / "crowd"), "--model", "dawid-skene", "--probs",
                 str(work / "c.npy"), "--model-out", str(work / "ds.npz")]) == 0
    out = capsys.readouterr().out
    assert "classes [1, 2, 3]" in out and "DawidSkene" in out
    assert np.load(work / "c.npy").shape == (60, 3)
    assert main(["evaluate", str(work / "crowd"), "--model", str(work / "ds.npz")]) == 0
    acc = float(capsys.readouterr().out.split("accuracy:")[1].split()[0])
    assert acc > 0.8


def test_wrench_folder_splits(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", str(work / "wrench"), "--model", "majority", "--probs",
                 str(work / "w.npy")]) == 0
    assert main(["evaluate", str(work / "wrench"), "--split", "test", "--probs",
                 str(work / "w.npy")]) == 0
    out = capsys.readouterr().out
    assert "wrench/test: 600 rows, 5 sources, 2 classes" in out
    assert main(["check", "--data", str(work / "wrench")]) == 0
    assert "on data:" in capsys.readouterr().out


def test_in_process_errors(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["fit", str(work / "syn.npz"), "--probs", str(work / "p.txt")], ".npy or .csv"),
        (["fit", str(work / "syn.npz"), "--model", "majority", "--model-out",
          str(work / "x.npz")], "learns nothing"),
        (["fit", str(work / "syn.npz"), "--model", "dawid-skene", "--edge", "0,1"],
         "does not model dependencies"),
        (["fit", str(work / "syn.npz"), "--edge", "0,9"], "not pairs of distinct sources"),
        (["evaluate", str(work / "crowd"), "--probs", str(work / "c_missing.npy")],
         "does not exist"),
        (["evaluate", str(work / "syn.npz"), "--probs", str(work / "c.npy")], "has 60 rows"),
        (["check"], "--n-sources"),
        (["check", "-m", "3", "--edge", "0,x"], "is not an edge"),
        (["demo", "--n", "0"], "need n >= 1"),
        (["check", "-m", "3", "--tasks", "2,2"], "--coverage"),
    ]
    assert main(["fit", str(work / "crowd"), "--model", "dawid-skene", "--probs",
                 str(work / "c.npy")]) == 0
    capsys.readouterr()
    data_errors = [
        (["evaluate", str(work / "syn.npz"), "--model", str(work / "syn.npz")],
         "not a metal model file"),
        (["analyze", str(work / "bad.npz")], "not a readable .npz"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
    for argv, message in data_errors:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_multi_task_check(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "-m", "3", "--tasks", "2,3", "--coverage", "0", "0,1", "1",
                 "--task-edge", "0,1"])
    out = capsys.readouterr().out
    # the same question asked through the API decides what the command must answer
    import networkx as nx

    from metal import check_identifiability

    expected = check_identifiability(n_sources=3, cardinality=[2, 3], coverage=[[0], [0, 1], [1]],
                                     task_graph=nx.Graph([(0, 1)]))
    assert out.splitlines()[0] == str(expected).splitlines()[0]
    assert code == (0 if expected.identifiable else 1)
    assert out.startswith("NOT IDENTIFIABLE") == (not expected.identifiable)

"""The README runs as written: every ```python block, in order, in one namespace; and the
``metal`` commands of the "A complete session" section (slow: one interpreter each)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SESSION = "## A complete session"


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_has_the_complete_session() -> None:
    text = README.read_text()
    assert SESSION in text
    section = text.split(SESSION, 1)[1]
    assert len(blocks(section, "python")) >= 5


@pytest.mark.slow  # > 15 s on a shared 2-core machine; run by .ci/run
@pytest.mark.timeout(300)
def test_python_blocks_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for i, code in enumerate(blocks(README.read_text(), "python")):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    # the session's files exist and its model beats majority vote on the held-out split
    for name in ("coverage_accuracy.png", "learned_vs_empirical.png", "calibration.png",
                 "spam_model.npz", "probs_train.npy", "spam_train.npz", "spam_test.npz"):
        assert (tmp_path / name).stat().st_size > 0, name
    model, L_test, test = namespace["model"], namespace["L_test"], namespace["test"]
    from metal import MajorityVoter

    ours = model.score(L_test, test.label)["accuracy"]  # type: ignore[attr-defined]
    mv = MajorityVoter(cardinality=2).score(L_test, test.label)["accuracy"]  # type: ignore[attr-defined]
    assert ours > mv


@pytest.mark.slow
def test_session_shell_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    text = README.read_text()
    for code in blocks(text, "python"):
        exec(code, namespace)
    section = text.split(SESSION, 1)[1]
    commands = [line.split("#")[0].strip() for b in blocks(section, "bash")
                for line in b.splitlines() if line.startswith("metal ")]
    assert len(commands) >= 4
    for cmd in commands:
        args = shlex.split(cmd)[1:]
        r = subprocess.run([sys.executable, "-m", "metal.cli", *args], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, (cmd, r.stderr)
    assert (tmp_path / "probs.csv").exists() and (tmp_path / "model.npz").exists()

"""Mutation check: do the fast tests of a module notice when its code is changed?

Each mutant changes one spot of a module's syntax tree (a comparison flipped, an arithmetic
operator swapped, a constant moved by one, ``and``/``or`` swapped, a ``not`` dropped, a boolean
constant flipped); the module's fast tests then run against the mutated package in a forked
process with a time limit. A mutant is *killed* when a test fails (or errors, or times out),
and *survives* when every test still passes. The raw kill rate is the share of killed mutants;
the score leaves out the survivors registered as equivalent (:data:`EQUIVALENT`: changes that
cannot alter any result, each with its reason).

The parent imports the heavy dependencies once and forks per mutant, so a mutant costs its
tests, not an interpreter start. The mutated package is a copy of ``metal/`` in a temporary
folder, first on ``sys.path`` of the child only; the working tree is never modified.

Each mutant runs the fast tests *of its own module* (:data:`MODULE_TESTS`, or ``--tests`` for
every target), so a mutant of one module does not pay for the tests of the others.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/mutation.py --scope hardening \\
        --sample 240 --seed 0 --section mutation

Prints one line per mutant and a table; with ``--section`` writes that section of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
            ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
            ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
            ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
            ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.MatMult: ast.Mult}


#: The fast tests of each module (a few seconds each): what a mutant of that module runs.
MODULE_TESTS: dict[str, list[str]] = {
    "metal/tasks/graph.py": ["tests/tasks/test_task_graph.py",
                             "tests/tasks/test_task_hierarchy.py"],
    "metal/tasks/hierarchy.py": ["tests/tasks/test_task_hierarchy.py",
                                 "tests/tasks/test_task_graph.py"],
    "metal/label_model/statistics.py": ["tests/label_model/test_statistics.py"],
    "metal/label_model/estimation.py": ["tests/label_model/test_estimation_exact.py"],
    "metal/label_model/em.py": ["tests/label_model/test_em.py",
                                "tests/label_model/test_em_exact.py"],
    "metal/label_model/posterior.py": ["tests/label_model/test_posterior.py"],
}

#: Named sets of targets. ``hardening``: issue 15's scope (the task graphs, and the label
#: model's statistics, estimation -- moments and EM -- and posterior modules).
SCOPES: dict[str, list[str]] = {"hardening": list(MODULE_TESTS)}

_SPARSE_MATMUL = ("for a scipy.sparse *matrix* (csr_matrix) `*` is the matrix product, so "
                  "`@` -> `*` computes the same thing")
_HASH = ("a constant or the salt's sign in unique_rows' 64-bit mixing hash: equal rows still get "
         "equal hashes, distinct rows still collide with negligible probability")
#: Equivalent mutants: changes that cannot alter any result, so no test can kill them. Written
#: from reading the code (each with its reason), before the measured run; a mutant counts as
#: equivalent only if it matches an entry *and* survives. Matched by (file, a fragment of the
#: mutated line, mutation kind). The score excludes them (killed / (mutants - equivalent)).
EQUIVALENT: list[tuple[str, str, tuple[str, ...], str]] = [
    ("metal/label_model/em.py", "A @ log_tables", ("operator MatMult",), _SPARSE_MATMUL),
    ("metal/label_model/em.py", "A @ (log_tables", ("operator MatMult",), _SPARSE_MATMUL),
    ("metal/label_model/em.py", "A.T @ weighted_post", ("operator MatMult",), _SPARSE_MATMUL),
    ("metal/label_model/em.py", "source_sum @", ("operator MatMult",), _SPARSE_MATMUL),
    ("metal/label_model/statistics.py", "(A.T @ A)", ("operator MatMult",), _SPARSE_MATMUL),
    ("metal/label_model/statistics.py", "(sub.T @ sub)", ("operator MatMult",), _SPARSE_MATMUL),
    ("metal/label_model/posterior.py", "A @ table", ("operator MatMult",), _SPARSE_MATMUL),
    ("metal/label_model/em.py", "default_rng(0x5EED)", ("constant 24301",), _HASH),
    ("metal/label_model/em.py", "np.uint64(1_000_003)", ("constant 1000003", "operator Add"),
     _HASH + " (the key stays injective: values are below the multiplier)"),
    ("metal/label_model/em.py", "rng.integers(1, 2**63", ("constant 1", "constant 63",
                                                         "operator Pow"), _HASH),
    ("metal/label_model/em.py", "z = key + salt", ("operator Add",), _HASH),
    ("metal/label_model/em.py", "np.uint64(30)", ("constant 30", "constant 13787848793156543929"),
     _HASH),
    ("metal/label_model/em.py", "np.uint64(27)", ("constant 27", "constant 10723151780598845931"),
     _HASH),
    ("metal/label_model/em.py", "np.uint64(31)", ("constant 31",), _HASH),
    ("metal/label_model/em.py", "np.isfinite(top), top, 0.0", ("constant 0.0",),
     "the shift used for rows whose scores are all -inf: log(sum(exp(-inf - c))) + c is -inf "
     "for every c"),
    ("metal/label_model/estimation.py", "self.saved != 1", ("constant 1",),
     "setting one thread when the setting already is one thread is a no-op"),
    ("metal/label_model/estimation.py", "threshold: int = 400", ("constant 400",),
     "the size below which one torch thread is used: a speed switch, results are identical"),
    ("metal/label_model/estimation.py", 'state.get("n_iter", 0)', ("constant 0",),
     "torch's L-BFGS always stores n_iter in its state, so the default is never used"),
    ("metal/tasks/graph.py", "_INT64_SAFE = 2**62", ("operator Pow",),
     "switches which of two exact feasible-vector lookups is used (int64 radix keys or rows)"),
]


def equivalent_reason(mut: Mutation) -> str | None:
    """The registered reason why ``mut`` cannot change behaviour, or None."""
    line = _source(mut.file).splitlines()[mut.line - 1] if mut.line else ""
    for file, fragment, kinds, reason in EQUIVALENT:
        if file == mut.file and fragment in line and mut.kind in kinds:
            return reason
    return None


@dataclass(frozen=True)
class Mutation:
    file: str
    index: int  # position among the mutable nodes of the file (walk order)
    kind: str
    line: int


def _skip(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Docstrings, type annotations, and error-message f-strings are not behaviour."""
    p = parents.get(node)
    while p is not None:
        if isinstance(p, (ast.JoinedStr,)):
            return True
        if isinstance(p, ast.arg) or (isinstance(p, ast.AnnAssign) and node is not p.value):
            return True
        if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) and node is p.returns:
            return True
        if isinstance(p, ast.Raise):  # the message of an error, not whether it is raised
            return True
        p = parents.get(p)
    return False


#: Boolean keyword arguments whose flip cannot change a result (equivalent mutants).
EQUIVALENT_KEYWORDS = {"strict", "copy"}

#: Presentation-only functions (plots, layouts, text descriptions): not mutated.
PRESENTATION = {"draw", "_layout", "_edge_labels", "describe", "_describe_tasks", "__repr__",
                "__str__"}


def _points(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    shown = {n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
             and f.name in PRESENTATION for n in ast.walk(f)}
    out: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if node in shown or _skip(node, parents):
            continue
        if isinstance(node, ast.Compare) and type(node.ops[0]) in CMP_SWAP:
            out.append((node, f"compare {type(node.ops[0]).__name__}"))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BIN_SWAP:
            out.append((node, f"operator {type(node.op).__name__}"))
        elif isinstance(node, ast.BoolOp):
            out.append((node, f"boolean {type(node.op).__name__}"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append((node, "drop not"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            kw = parents.get(node)
            if isinstance(kw, ast.keyword) and kw.arg in EQUIVALENT_KEYWORDS:
                continue  # zip(strict=...) on equal lengths, astype(copy=...): no behaviour
            out.append((node, f"flip {node.value}"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) \
                and not isinstance(parents.get(node), ast.Subscript):
            out.append((node, f"constant {node.value!r}"))
    return out


def _apply(node: ast.AST) -> None:
    if isinstance(node, ast.Compare):
        node.ops[0] = CMP_SWAP[type(node.ops[0])]()
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        node.op = BIN_SWAP[type(node.op)]()
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        node.value = not node.value
    elif isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        node.value = node.value + 1 if node.value != 1 else 0


#: the sources as they were when the run started (edits made during a run do not leak in)
_SOURCES: dict[str, str] = {}


def _source(file: str) -> str:
    if file not in _SOURCES:
        _SOURCES[file] = (ROOT / file).read_text()
    return _SOURCES[file]


def enumerate_mutations(file: str) -> list[Mutation]:
    tree = ast.parse(_source(file))
    return [Mutation(file, i, kind, getattr(node, "lineno", 0))
            for i, (node, kind) in enumerate(_points(tree))]


def mutated_source(mut: Mutation) -> str:
    tree = ast.parse(_source(mut.file))
    node, _ = _points(tree)[mut.index]
    if isinstance(node, ast.UnaryOp):  # drop the `not`: replace the node in its parent
        parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
        parent = parents[node]
        for field, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, field, node.operand)
            elif isinstance(value, list):
                setattr(parent, field, [node.operand if v is node else v for v in value])
    else:
        _apply(node)
    return ast.unparse(ast.fix_missing_locations(copy.deepcopy(tree)))


def _run_tests(pkg_root: str, tests: list[str], timeout: float) -> tuple[bool, float]:
    """Fork; the child runs pytest on ``tests`` with ``pkg_root`` first on sys.path.
    Returns (tests passed, seconds)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            sys.path.insert(0, pkg_root)
            for name in [m for m in sys.modules if m == "metal" or m.startswith("metal.")]:
                del sys.modules[name]
            import pytest

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            rc = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly",
                              "-m", "not slow", "-o", "addopts=", "--timeout", str(int(timeout)),
                              *tests])
            os._exit(int(rc))
        except BaseException:
            os._exit(99)
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0, time.perf_counter() - start
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False, time.perf_counter() - start
        time.sleep(0.05)


def _warm_up() -> None:
    """Import what the first torch optimiser step and the assignment solver import lazily
    (several hundred modules, seconds), once in the parent instead of in every child."""
    import scipy.optimize  # noqa: F401
    import torch

    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([x], max_iter=2, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((x - 1.0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # pytest's plugins and the tests' own heavy imports
    import _hypothesis_pytestplugin  # noqa: F401
    import hypothesis  # noqa: F401
    import pytest_timeout  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", nargs="+", default=[], help="module files to mutate")
    ap.add_argument("--scope", choices=sorted(SCOPES), help="a named set of targets")
    ap.add_argument("--tests", nargs="+", default=[],
                    help="tests for every target (default: each target's MODULE_TESTS)")
    ap.add_argument("--sample", type=int, default=0, help="random sample size (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=0,
                    help="seconds per mutant (default: 3 x the clean run + 10)")
    ap.add_argument("--budget", type=float, default=0,
                    help="stop starting mutants after this many seconds (the ones run are a "
                    "prefix of the random sample, hence still a random sample)")
    ap.add_argument("--section", help="write the result to this section of RESULTS.md")
    ap.add_argument("--note", default="", help="a line added under the section's table")
    args = ap.parse_args(argv)
    targets = list(args.target) + (SCOPES[args.scope] if args.scope else [])
    if not targets:
        ap.error("give --target files or a --scope")
    missing = [t for t in targets if not args.tests and t not in MODULE_TESTS]
    if missing:
        ap.error(f"no fast tests known for {missing}; pass --tests")
    tests_of = {t: list(args.tests) or MODULE_TESTS[t] for t in targets}

    # heavy imports once, before forking
    import networkx  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    import scipy.sparse  # noqa: F401
    import torch  # noqa: F401

    _warm_up()
    muts = [m for f in targets for m in enumerate_mutations(f)]
    total = len(muts)
    # always in a seeded random order, so that a run cut by --budget is a random sample too
    muts = random.Random(args.seed).sample(muts, min(args.sample or total, total))
    tmp = Path(tempfile.mkdtemp(prefix="metal-mut-"))
    try:
        shutil.copytree(ROOT / "metal", tmp / "metal",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for f in targets:
            (tmp / f).write_text(_source(f))
        # import metal's own dependencies once (the child drops metal.* and re-imports it)
        sys.path.insert(0, str(tmp))
        import matplotlib

        matplotlib.use("Agg")
        import metal
        import metal.cli
        import metal.label_model.multitask
        import metal.labeling.plots  # noqa: F401
        sys.path.remove(str(tmp))
        for name in [m for m in sys.modules if m == "metal" or m.startswith("metal.")]:
            del sys.modules[name]
        timeouts: dict[str, float] = {}
        for t in targets:  # a clean run of each module's tests sets its mutants' time limit
            ok, clean_s = _run_tests(str(tmp), tests_of[t], timeout=600)
            if not ok:
                print(f"the tests of {t} fail on the unmutated code; fix them first",
                      file=sys.stderr)
                return 1
            timeouts[t] = args.timeout or 3 * clean_s + 10
            print(f"{t}: clean run {clean_s:.1f} s, timeout {timeouts[t]:.0f} s per mutant",
                  flush=True)
        print(f"{total} mutation points, running {len(muts)}", flush=True)
        killed = 0
        survivors: list[Mutation] = []
        per_file: dict[str, list[int]] = {}
        started = time.perf_counter()
        ran = 0
        for i, mut in enumerate(muts, 1):
            if args.budget and time.perf_counter() - started > args.budget:
                print(f"time budget reached after {ran} mutants", flush=True)
                break
            ran += 1
            target = tmp / mut.file
            original = _source(mut.file)
            target.write_text(mutated_source(mut))
            passed, secs = _run_tests(str(tmp), tests_of[mut.file], timeouts[mut.file])
            target.write_text(original)
            stats = per_file.setdefault(mut.file, [0, 0])
            stats[1] += 1
            if passed:
                survivors.append(mut)
            else:
                killed += 1
                stats[0] += 1
            print(f"[{i}/{len(muts)}] {'SURVIVED' if passed else 'killed  '} "
                  f"{mut.file}:{mut.line} {mut.kind} ({secs:.1f} s)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    muts = muts[:ran]
    equivalent = [m for m in survivors if equivalent_reason(m) is not None]
    real = [m for m in survivors if equivalent_reason(m) is None]
    n_eq = len(equivalent)
    rate = killed / max(len(muts), 1)
    score = killed / max(len(muts) - n_eq, 1)
    lines = ["| module | mutants | killed | survived, equivalent | survived | score "
             "| raw kill rate |", "|---|---:|---:|---:|---:|---:|---:|"]
    for f, (k, n) in sorted(per_file.items()):
        e = sum(m.file == f for m in equivalent)
        lines.append(f"| `{f}` | {n} | {k} | {e} | {n - k - e} | {k / max(n - e, 1):.0%} | "
                     f"{k / n:.0%} |")
    lines.append(f"| **all** | {len(muts)} | {killed} | {n_eq} | {len(real)} | **{score:.1%}** | "
                 f"{rate:.1%} |")
    table = "\n".join(lines)
    print(table)
    if survivors:
        print("survivors:\n" + "\n".join(
            f"  {m.file}:{m.line} {m.kind}" + (" [equivalent]" if m in equivalent else "")
            for m in survivors))
    if args.section:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _results import write_section

        cmd = ("OMP_NUM_THREADS=1 python benchmarks/mutation.py"
               + (f" --scope {args.scope}" if args.scope else "")
               + (" --target " + " ".join(args.target) if args.target else "")
               + (" --tests " + " ".join(args.tests) if args.tests else "")
               + (f" --sample {args.sample}" if args.sample else "") + f" --seed {args.seed}"
               + (f" --budget {args.budget:g}" if args.budget else ""))
        tests_used = "; ".join(f"`{Path(t).name}`: " + ", ".join(f"`{x}`" for x in tests_of[t])
                               for t in targets)
        limits = ", ".join(f"{Path(t).name} {timeouts[t]:.0f} s" for t in targets)
        body = (f"{table}\n\nA random sample of {len(muts)} of the {total} mutation points "
                f"(seed {args.seed}); each mutant ran its own module's fast tests "
                f"(`-m 'not slow'`) in a forked process ({tests_used}); time limit per mutant "
                f"{limits}. Score = killed / (mutants - equivalent survivors); raw kill rate = "
                f"killed / mutants.\n\nSurvivors ({len(real)}): "
                + (", ".join(f"`{Path(m.file).name}:{m.line}` {m.kind}" for m in real)
                   or "none") + ".\n\nEquivalent survivors (" + str(n_eq) + ", reasons in "
                "`EQUIVALENT` of benchmarks/mutation.py): "
                + (", ".join(f"`{Path(m.file).name}:{m.line}` {m.kind}" for m in equivalent)
                   or "none") + ".\n\nCommand: `" + cmd + "`"
                + (f"\n\n{args.note}" if args.note else ""))
        write_section(args.section, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

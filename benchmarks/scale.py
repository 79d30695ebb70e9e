"""Scale benchmark: label-model fit and predict vs n, in memory, streamed and on Dask.

Generated binary data (m=100 sources, 10% coverage each, accuracies in [0.6, 0.9]) with
n in {1e5, 1e6, 1e7} rows, stored as int8 ``.npy`` files (1 GB at n=1e7). Every configuration
runs in a fresh subprocess with one thread (Dask: two single-threaded worker processes), which
resets its peak-RSS mark after imports and warm-up (``echo 5 > /proc/self/clear_refs``) and
reads the peak (``VmHWM``) after the measured work; "added" memory is that peak minus the RSS
at the reset. Configurations:

* ``numpy count``: the yardstick, a plain NumPy counting pass over the in-memory int8 matrix
  (per block of 65,536 rows, ``np.bincount`` of every source's values);
* ``ours in-memory``: ``LabelModel(mode="moments").fit(L)`` + ``predict_proba(L)`` on the
  loaded matrix (the moment estimator, which the chunked and Dask fits also run);
* ``ours chunked``: ``fit_stream`` + ``predict_proba_stream`` reading the file block by block
  (plain reads, the matrix is never in memory), posteriors written to a file;
* ``ours Dask``: ``fit_dask`` + ``predict_proba_dask`` on a ``LocalCluster`` with 2 worker
  processes (1 thread each), given the ``.npy`` path: the workers read their own row ranges,
  the driver only fits; the ``(n, 2)`` float64 posterior is written by the workers into an
  ``.npy`` file (``out=``). The same posterior gathered into the driver as one array instead
  is timed as a second row. Memory is the sum over the driver (which also runs the
  scheduler) and both workers. Each worker is moved to its own session (``os.setsid``): the
  kernel's per-session fair scheduling (autogroup) would otherwise give the driver and both
  workers one CPU share between them on a shared machine; on an idle machine it changes
  nothing;
* ``ours in-memory, mode=auto``: the default ``LabelModel().fit(L)``, whose EM refinement
  passes over the rows several times (measured up to n=1e6);
* ``snorkel``: snorkel 0.10's ``LabelModel`` (100 epochs, lr 0.01) on the loaded matrix, where
  its dense float64 one-hot (``n x m*k x 8`` bytes) fits in memory.

A second table fits the many-sources / many-classes configurations of issue 14 in memory.

Usage::

    python benchmarks/scale.py            # the full run (about 10 minutes; ~3 GB of files)
    python benchmarks/scale.py --quick    # n in {1e4, 1e5} and small stress rows, no RESULTS
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine_line, markdown_table, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = 123
M, K, COVERAGE = 100, 2, 0.1
NS = (100_000, 1_000_000, 10_000_000)
QUICK_NS = (10_000, 100_000)
MODES = ("numpy count", "ours in-memory", "ours chunked", "ours Dask", "ours in-memory, mode=auto",
         "snorkel")
# the EM refinement of mode="auto" makes several passes over the rows: measured up to this n
AUTO_MAX_N = 1_000_000
# snorkel densifies an (n, m*k) float64 one-hot (and more): beyond this it does not fit here
SNORKEL_MAX_BYTES = 4 * 2**30
COUNT_ROWS = 65_536
# the memory target (< 3x the int8 matrix) is checked over the n in {1e5, 1e6, 1e7}
MEMORY_CHECK_MIN_N = 100_000
# the estimator the streaming and Dask fits run; in memory too, so every "ours" row is the same
MOMENTS = "moments"
# many sources / many classes (issue 14): (name, n, m, k, coverage per source)
STRESS = (
    ("2,000 sources", 100_000, 2_000, 2, 0.01),
    ("k=56 x 1,200 sources", 20_000, 1_200, 56, 0.01),
    ("k=100 x 20 sources", 100_000, 20, 100, 0.3),
)
QUICK_STRESS = (
    ("500 sources", 10_000, 500, 2, 0.01),
    ("k=56 x 100 sources", 5_000, 100, 56, 0.02),
    ("k=100 x 20 sources", 10_000, 20, 100, 0.3),
)
STRESS_TIME_S, STRESS_MEM_MB = 30.0, 4096.0


# ---------------------------------------------------------------------------- data
def generate(path: Path, n: int, m: int, k: int, coverage: float, seed: int) -> None:
    """Write an int8 label matrix (and gold labels) block by block: a class-conditional model
    with accuracies in [0.6, 0.9], wrong votes uniform over the other classes."""
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.6, 0.9, size=m).astype(np.float32)
    block = 200_000
    Y_all = np.empty(n, dtype=np.int8)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.dtype(np.int8).str, "fortran_order": False, "shape": (n, m)})
        for start in range(0, n, block):
            r = min(block, n - start)
            Y = rng.integers(0, k, size=r)
            voted = rng.random((r, m), dtype=np.float32) < coverage
            correct = rng.random((r, m), dtype=np.float32) < acc
            wrong = (Y[:, None] + rng.integers(1, k, size=(r, m))) % k
            L = np.where(correct, Y[:, None], wrong)
            L[~voted] = -1
            f.write(L.astype(np.int8).tobytes())
            Y_all[start:start + r] = Y
    tmp.rename(path)
    np.save(path.with_name(path.stem + "_Y.npy"), Y_all)


def dataset(workdir: Path, n: int, m: int = M, k: int = K, coverage: float = COVERAGE) -> Path:
    path = workdir / f"L_n{n}_m{m}_k{k}_c{coverage}_s{SEED}.npy"
    if not path.exists():
        t = time.perf_counter()
        generate(path, n, m, k, coverage, SEED)
        print(f"  generated {path.name} in {time.perf_counter() - t:.1f} s", flush=True)
    return path


# ---------------------------------------------------------------------------- memory
def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> float:
    """Reset this process's peak-RSS mark to its current RSS; return that RSS (MB)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS")


def peak() -> float:
    return _status("VmHWM")


# ---------------------------------------------------------------------------- children
def _warm_up() -> None:
    """One tiny fit + predict, so imports and first-call costs are not measured."""
    from metal import LabelModel

    L = np.array([[0, 1, 1], [1, 1, -1], [1, -1, 1], [0, 0, 1]] * 5, dtype=np.int8)
    LabelModel(cardinality=2, seed=SEED).fit(L).predict_proba(L)


def _own_session() -> None:
    try:
        os.setsid()
    except OSError:  # already a session leader
        pass


def numpy_count(L: np.ndarray, k: int) -> np.ndarray:
    """The yardstick: count every source's values, block by block, in plain NumPy."""
    counts = np.zeros((L.shape[1], k + 1), dtype=np.int64)
    for start in range(0, L.shape[0], COUNT_ROWS):
        block = L[start:start + COUNT_ROWS]
        for j in range(L.shape[1]):
            counts[j] += np.bincount(block[:, j] + 1, minlength=k + 1)
    return counts


def _accuracy(probs: np.ndarray, Y_path: Path) -> float:
    Y = np.load(Y_path)
    return float((probs.argmax(axis=1) == Y).mean())


def child(mode: str, L_path: Path, k: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    Y_path = L_path.with_name(L_path.stem + "_Y.npy")
    out: dict[str, Any] = {}
    if mode == "numpy count":
        L = np.load(L_path)
        base = reset_peak()
        t = time.perf_counter()
        c0 = time.process_time()
        numpy_count(L, k)
        out["count_s"] = time.perf_counter() - t
        out["cpu_s"] = time.process_time() - c0
    elif mode in ("ours in-memory", "ours in-memory, mode=auto"):
        from metal import LabelModel

        _warm_up()
        L = np.load(L_path)
        base = reset_peak()
        c0 = time.process_time()
        t0 = time.perf_counter()
        model = LabelModel(cardinality=k, seed=SEED, mode=MOMENTS if mode == "ours in-memory"
                           else "auto").fit(L)
        t1 = time.perf_counter()
        probs = model.predict_proba(L)
        t2 = time.perf_counter()
        out.update(fit_s=t1 - t0, predict_s=t2 - t1, cpu_s=time.process_time() - c0)
        out["peak_mb"] = peak() - base
        if mode == "ours in-memory":
            t = time.perf_counter()
            stats = model.statistics_
            assert stats is not None
            LabelModel(cardinality=k, seed=SEED, mode=MOMENTS).fit_statistics(stats)
            out["fit_after_stats_s"] = time.perf_counter() - t
        out["accuracy"] = _accuracy(probs, Y_path)
        out["nan"] = bool(np.isnan(probs).any())
        return out
    elif mode == "ours chunked":
        from metal import LabelModel
        from metal.distributed import fit_stream, predict_proba_stream, read_npy_chunks

        _warm_up()
        base = reset_peak()
        c0 = time.process_time()
        t0 = time.perf_counter()
        model = fit_stream(LabelModel(cardinality=k, seed=SEED, mode=MOMENTS),
                           read_npy_chunks(L_path))
        t1 = time.perf_counter()
        correct = total = 0
        Y = np.load(Y_path, mmap_mode="r")
        with tempfile.TemporaryFile() as sink:  # posteriors go to disk, chunk by chunk
            for probs in predict_proba_stream(model, read_npy_chunks(L_path)):
                sink.write(probs.tobytes())
                correct += int((probs.argmax(1) == Y[total:total + probs.shape[0]]).sum())
                total += probs.shape[0]
        t2 = time.perf_counter()
        out.update(fit_s=t1 - t0, predict_s=t2 - t1, accuracy=correct / total,
                   cpu_s=time.process_time() - c0)
    elif mode == "ours Dask":
        import dask
        from dask.distributed import Client, LocalCluster

        from metal import LabelModel
        from metal.distributed.dask import fit_dask, predict_proba_dask

        _warm_up()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0", memory_limit="6GiB")
        client = Client(cluster)
        # each worker gets its own session, hence its own CPU share under the kernel's
        # per-session fair scheduling (autogroup) on a shared machine, as separate machines
        # would; on an idle machine this changes nothing
        client.run(_own_session)
        out_path = L_path.with_name(L_path.stem + "_posterior.npy")
        try:
            # a long-lived cluster has its imports done: one tiny Dask fit + predict first
            tiny_path = L_path.with_name("tiny_warm_up.npy")
            np.save(tiny_path, np.array([[0, 1, 1], [1, 1, -1], [1, -1, 1], [0, 0, 1]] * 5,
                                        dtype=np.int8))
            warm = fit_dask(LabelModel(cardinality=2, seed=SEED), tiny_path)
            predict_proba_dask(warm, tiny_path).compute()
            predict_proba_dask(warm, tiny_path, out=out_path)
            # measure in the driver (which also runs the scheduler) and in both workers
            workers_base = client.run(reset_peak)
            workers_cpu = client.run(time.process_time)
            base = reset_peak()
            c0 = time.process_time()
            t0 = time.perf_counter()
            model = fit_dask(LabelModel(cardinality=k, seed=SEED, mode=MOMENTS), str(L_path))
            t1 = time.perf_counter()
            predict_proba_dask(model, str(L_path), out=out_path)  # each worker writes its rows
            t2 = time.perf_counter()
            driver_cpu = time.process_time() - c0
            worker_cpu = [t - workers_cpu[w] for w, t in client.run(time.process_time).items()]
            workers_peak = client.run(peak)
            out.update(fit_s=t1 - t0, predict_s=t2 - t1, cpu_s=driver_cpu + sum(worker_cpu),
                       critical_cpu_s=driver_cpu + max(worker_cpu))
            out["workers_mb"] = sum(workers_peak[w] - workers_base[w] for w in workers_base)
            out["peak_mb"] = peak() - base + out["workers_mb"]
            # the same posterior gathered into the driver as one float64 array instead
            workers_base = client.run(reset_peak)
            base = reset_peak()
            t2 = time.perf_counter()
            probs = predict_proba_dask(model, str(L_path)).compute()
            out["gather_predict_s"] = time.perf_counter() - t2
            workers_peak = client.run(peak)
            out["gather_peak_mb"] = peak() - base + sum(workers_peak[w] - workers_base[w]
                                                        for w in workers_base)
            out["accuracy"] = _accuracy(probs, Y_path)
            out["written_equals_gathered"] = bool(np.array_equal(np.load(out_path,
                                                                         mmap_mode="r"), probs))
            out["dask_version"] = dask.__version__
        finally:
            client.close()
            cluster.close()
            out_path.unlink(missing_ok=True)
        return out
    elif mode == "snorkel":
        import logging

        from snorkel.labeling.model import LabelModel as SnorkelLabelModel

        logging.getLogger().setLevel(logging.WARNING)
        L0 = np.array([[0, 1, 1], [1, 1, -1], [1, -1, 1], [0, 0, 1]] * 5)
        SnorkelLabelModel(cardinality=k, verbose=False).fit(L0, n_epochs=2, progress_bar=False)
        L = np.load(L_path)
        base = reset_peak()
        t0 = time.perf_counter()
        s = SnorkelLabelModel(cardinality=k, verbose=False)
        s.fit(L, n_epochs=100, lr=0.01, seed=SEED, progress_bar=False)
        t1 = time.perf_counter()
        probs = np.asarray(s.predict_proba(L))
        t2 = time.perf_counter()
        out.update(fit_s=t1 - t0, predict_s=t2 - t1, accuracy=_accuracy(probs, Y_path))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    out["peak_mb"] = peak() - base
    return out


def stress_child(L_path: Path, k: int) -> dict[str, Any]:
    """Fit + predict in memory on a many-sources / many-classes matrix (or a clear refusal)."""
    import torch

    from metal import LabelModel, MetalError

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    _warm_up()
    L = np.load(L_path)
    base = reset_peak()
    t0 = time.perf_counter()
    try:
        model = LabelModel(cardinality=k, seed=SEED).fit(L)
    except MetalError as err:  # a documented limit, refused up front
        return {"refused": f"{type(err).__name__}: {err}", "fit_s": time.perf_counter() - t0,
                "peak_mb": peak() - base}
    t1 = time.perf_counter()
    probs = model.predict_proba(L)
    t2 = time.perf_counter()
    from metal import MajorityVoter

    Y_path = L_path.with_name(L_path.stem + "_Y.npy")
    return {"fit_s": t1 - t0, "predict_s": t2 - t1, "peak_mb": peak() - base,
            "nan": bool(np.isnan(probs).any() or np.isnan(model.conditional_probs_).any()),
            "accuracy": _accuracy(probs, Y_path),
            "mv_accuracy": float(MajorityVoter(cardinality=k).score(L, np.load(Y_path))[
                "accuracy"])}


def run_child(args: list[str], timeout: float = 900) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", *args]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                             check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if res.returncode != 0:
        tail = res.stderr.strip().splitlines()[-1:] or [f"exit code {res.returncode}"]
        return {"error": f"exit code {res.returncode}: {tail[0][:200]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- driver
def run_scaling(workdir: Path, ns: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    for n in ns:
        path = dataset(workdir, n)
        row: dict[str, Any] = {"matrix_mb": n * M / 2**20}
        for mode in MODES:
            if mode == "snorkel" and n * M * K * 8 > SNORKEL_MAX_BYTES:
                row[mode] = {"skipped": f"skipped: its float64 one-hot alone is "
                                        f"{n * M * K * 8 / 2**30:.0f} GB"}
                continue
            if mode == "ours in-memory, mode=auto" and n > AUTO_MAX_N:
                row[mode] = {"skipped": f"skipped above n={AUTO_MAX_N:,} (EM passes over "
                                        "the rows; see the smaller n)"}
                continue
            row[mode] = run_child([mode, str(path), str(K)])
            print(f"  n={n:,} {mode}: {row[mode]}", flush=True)
        results[n] = row
    return results


def run_stress(workdir: Path, configs: tuple[tuple[str, int, int, int, float], ...]
               ) -> list[dict[str, Any]]:
    rows = []
    for name, n, m, k, cov in configs:
        path = dataset(workdir, n, m, k, cov)
        res = run_child(["stress", str(path), str(k)])
        res.update(name=name, n=n, m=m, k=k, coverage=cov)
        print(f"  {name}: {res}", flush=True)
        rows.append(res)
    return rows


def _cpu(r: dict[str, Any]) -> str:
    """CPU seconds of all the mode's processes; for Dask also the driver + busiest worker."""
    if "cpu_s" not in r:
        return "–"
    if "critical_cpu_s" in r:
        return f"{r['cpu_s']:.2f} (path {r['critical_cpu_s']:.2f})"
    return f"{r['cpu_s']:.2f}"


def _total(r: dict[str, Any]) -> float:
    return float(r["fit_s"] + r["predict_s"])


def report(results: dict[int, dict[str, Any]], stress: list[dict[str, Any]],
           load: str = "not measured") -> str:
    fmt: Callable[[float], str] = lambda x: f"{x:.2f}"  # noqa: E731
    rows = []
    for n, row in results.items():
        mb = row["matrix_mb"]
        for mode in MODES:
            r = row[mode]
            if "skipped" in r or "error" in r:
                rows.append([f"{n:,}", mode, r.get("skipped") or r["error"], "", "", "", "", "",
                             ""])
                continue
            if mode == "numpy count":
                t = r["count_s"]
                rows.append([f"{n:,}", mode, f"count {fmt(t)}", _cpu(r), "–",
                             f"{mb / 1024 / t:.3f}", f"{r['peak_mb']:.0f}",
                             f"{r['peak_mb'] / mb:.2f}", "–"])
                continue
            t = _total(r)
            extra = (f"{r['fit_after_stats_s']:.2f}" if "fit_after_stats_s" in r else "–")
            name = "ours Dask, posterior written by the workers" if mode == "ours Dask" else mode
            rows.append([f"{n:,}", name, f"{fmt(r['fit_s'])} + {fmt(r['predict_s'])} = {fmt(t)}",
                         _cpu(r), extra, f"{mb / 1024 / t:.3f}", f"{r['peak_mb']:.0f}",
                         f"{r['peak_mb'] / mb:.2f}", f"{r.get('accuracy', float('nan')):.3f}"])
            if mode == "ours Dask" and "gather_predict_s" in r:
                tg = r["fit_s"] + r["gather_predict_s"]
                rows.append([f"{n:,}", "ours Dask, posterior gathered to the driver",
                             f"{fmt(r['fit_s'])} + {fmt(r['gather_predict_s'])} = {fmt(tg)}",
                             "–", "–", f"{mb / 1024 / tg:.3f}",
                             f"predict {r['gather_peak_mb']:.0f}",
                             f"{r['gather_peak_mb'] / mb:.2f}",
                             f"{r.get('accuracy', float('nan')):.3f}"])
    table = markdown_table(["n", "mode", "fit + predict s", "CPU s", "fit after statistics s",
                            "GB/s of int8 L", "peak added MB", "added / int8 L",
                            "accuracy"], rows)
    checks = []
    n_big, n_mid = max(results), sorted(results)[-2] if len(results) > 1 else max(results)
    big = results[n_big]
    base = big["numpy count"].get("count_s")
    for mode in ("ours in-memory", "ours chunked", "ours Dask"):
        r = big[mode]
        if base and "fit_s" in r:
            checks.append(f"n={n_big:,}, {mode}: fit + predict / numpy count = "
                          f"{_total(r) / base:.2f} (target <= 1)")
    d, i = big["ours Dask"], big["ours in-memory"]
    if "fit_s" in d and "fit_s" in i:
        checks.append(f"n={n_big:,}: Dask (2 workers, posterior written by the workers) / "
                      f"in-memory time = {_total(d) / _total(i):.2f} (target < 1)")
        if "critical_cpu_s" in d and "cpu_s" in i:
            checks.append(f"n={n_big:,}: Dask CPU path (driver + busiest worker) / in-memory CPU "
                          f"= {d['critical_cpu_s'] / i['cpu_s']:.2f} (what the time ratio tends "
                          "to when every process has a core to itself)")
        if "gather_predict_s" in d:
            checks.append(f"n={n_big:,}: Dask (2 workers, posterior gathered to the driver) / "
                          f"in-memory time = "
                          f"{(d['fit_s'] + d['gather_predict_s']) / _total(i):.2f}")
    for mode in ("ours in-memory", "ours chunked", "ours Dask", "ours in-memory, mode=auto"):
        # the range; below it a few MB of fixed per-process costs dominate the ratio
        ratios = [(results[n][mode]["peak_mb"] / results[n]["matrix_mb"], n) for n in results
                  if n >= MEMORY_CHECK_MIN_N and "peak_mb" in results[n][mode]]
        if ratios:
            worst, at = max(ratios)
            checks.append(f"{mode}: worst peak added / int8 L over n >= {MEMORY_CHECK_MIN_N:,} "
                          f"= {worst:.2f} at n={at:,} (target < 3)")
    fas = [results[n]["ours in-memory"].get("fit_after_stats_s") for n in results]
    checks.append("fit after statistics (in-memory) by n: "
                  + ", ".join(f"{x:.2f} s" for x in fas if x is not None))
    s, o = results[n_mid]["snorkel"], results[n_mid]["ours in-memory"]
    if "fit_s" in s and "fit_s" in o:
        checks.append(f"n={n_mid:,}: snorkel / ours in-memory time = {_total(s) / _total(o):.1f}x "
                      "(target >= 10)")
    a = results[n_mid]["ours in-memory, mode=auto"]
    if "fit_s" in s and "fit_s" in a:
        checks.append(f"n={n_mid:,}: snorkel / ours in-memory mode=auto time = "
                      f"{_total(s) / _total(a):.1f}x")
    srows = []
    for r in stress:
        if "error" in r:
            status = r["error"]
        elif "refused" in r:
            status = "refused: " + r["refused"][:160]
        else:
            ok = (not r["nan"] and _total(r) < STRESS_TIME_S and r["peak_mb"] < STRESS_MEM_MB)
            status = "within limits" if ok else "NOT within limits"
            if r["accuracy"] < r["mv_accuracy"] - 0.05:
                status += "; accuracy far below majority vote (a wrong fit)"
        srows.append([r["name"], f"{r['n']:,}", r["m"], r["k"], r["coverage"],
                      f"{r['fit_s']:.2f}" if "fit_s" in r else "–",
                      f"{r['predict_s']:.2f}" if "predict_s" in r else "–",
                      f"{r['peak_mb']:.0f}" if "peak_mb" in r else "–",
                      str(r.get("nan", "–")),
                      f"{r['accuracy']:.3f}" if "accuracy" in r else "–",
                      f"{r['mv_accuracy']:.3f}" if "mv_accuracy" in r else "–", status])
    stable = markdown_table(["config", "n", "m", "k", "coverage", "fit s", "predict s",
                             "peak added MB", "NaN", "accuracy", "majority vote", "status"],
                            srows)
    return f"""## Scale (`benchmarks/scale.py`)

"ours" rows other than `mode=auto` run the moment estimator (`mode="moments"`), the same in
memory, chunked and on Dask. Generated data: m={M} sources, k={K}, each source votes on
{COVERAGE:.0%} of the rows with an accuracy drawn in [0.6, 0.9] (seed {SEED}), stored as an
int8 `.npy` file. Each configuration runs in a fresh subprocess, one thread (Dask: 2 worker
processes x 1 thread), after a warm-up; peak memory is `VmHWM` after resetting the mark
(`/proc/self/clear_refs`) once the inputs are loaded, so "added" is what fit + predict needed
on top of the loaded matrix (chunked and Dask never load it; Dask sums the driver and both
workers). The yardstick "numpy count" is a plain NumPy pass that counts every source's values
(`np.bincount` per source and block of {COUNT_ROWS:,} rows). Snorkel 0.10 runs with 100 epochs,
lr 0.01, where its dense float64 one-hot fits. The Dask workers run in their own sessions
(`os.setsid`) so that the kernel's per-session fair scheduling (autogroup) gives each a CPU
share as separate machines would; on an idle machine that changes nothing. What each mode
delivers: in memory, the `(n, 2)` float64 posterior as an array; chunked, written to a file
chunk by chunk; Dask, written by the workers into an `.npy` file (`out=`), or gathered into
the driver as one array (second Dask row; its memory is that of the predict step). Page-cache
pages of the input and output files are counted in no mode. "CPU s" is the CPU time of
fit + predict summed over the mode's processes; for Dask, "path" is the driver's CPU time plus
that of the busiest worker, which the wall time approaches when every process has a core of
its own (a load-independent reading of the parallel speed-up). {machine_line()}; load average
{load}. The machine is shared, so read ratios within one run.

{table}

{chr(10).join('* ' + c for c in checks)}

### Many sources and classes

Fit + predict in memory (`LabelModel(cardinality=k).fit(L)`), generated as above. Target:
no error or NaN, each < {STRESS_TIME_S:.0f} s and < {STRESS_MEM_MB / 1024:.0f} GB added, or a
clear refusal up front where a documented limit applies (docs/scale.md).

{stable}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small n and small stress rows; RESULTS.md is not written")
    parser.add_argument("--only", choices=("scaling", "stress"))
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the generated matrices here for the next run (default: a "
                             "temporary folder, removed at the end)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, path, k = args.child
        res = (stress_child(Path(path), int(k)) if mode == "stress"
               else child(mode, Path(path), int(k)))
        print(json.dumps(res))
        return
    ns = QUICK_NS if args.quick else NS
    stress_cfg = QUICK_STRESS if args.quick else STRESS
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) if args.workdir is None else args.workdir  # kept if given
        workdir.mkdir(parents=True, exist_ok=True)
        results = run_scaling(workdir, ns) if args.only in (None, "scaling") else {}
        stress = run_stress(workdir, stress_cfg) if args.only in (None, "stress") else []
    load_end = os.getloadavg()
    load = (f"{load_start[0]:.1f} at the start and {load_end[0]:.1f} at the end "
            f"(1-minute, {os.cpu_count()} cores)")
    if results:
        text = report(results, stress, load)
        print(text)
        if not args.quick and args.only is None:
            write_section("scale", text)


if __name__ == "__main__":
    main()

"""``metal fit --tasks tasks.json`` and ``metal evaluate`` for multi-task models.

Data: an ``.npz`` with ``L`` of shape ``(n, m, t)`` (``-1`` abstains on a task) and optionally
``Y`` of shape ``(n, t)`` (``-1`` = unknown). The task graph is a small JSON file read by
:func:`metal.tasks.task_graph_from_json`, e.g.
``{"tasks": {"coarse": 2, "fine": 4}, "parents": {"fine": ["coarse", [0, 0, 1, 1]]}}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from metal.errors import DataFormatError
from metal.label_model.multitask.model import MultiTaskLabelModel
from metal.tasks.graph import TaskGraph
from metal.tasks.serialize import task_graph_from_json


def load_multitask_npz(path: str, graph: TaskGraph) -> tuple[np.ndarray, np.ndarray | None]:
    """``L`` ``(n, m, t)`` and, if present, ``Y`` ``(n, t)`` from an ``.npz`` archive."""
    p = Path(path)
    if not (p.is_file() and p.suffix == ".npz"):
        raise DataFormatError(f"{path}: multi-task data must be an .npz file with L of shape "
                              f"(n, m, {graph.n_tasks}) and optionally Y of shape "
                              f"(n, {graph.n_tasks})")
    with np.load(p, allow_pickle=False) as archive:
        if "L" not in archive.files:
            raise DataFormatError(f"{path} holds {sorted(archive.files)}; expected an array 'L' "
                                  f"of shape (n, m, {graph.n_tasks})")
        L = archive["L"]
        Y = archive["Y"] if "Y" in archive.files else None
    if L.ndim != 3 or L.shape[2] != graph.n_tasks:
        raise DataFormatError(f"L in {p.name} has shape {L.shape}; expected (n, m, "
                              f"{graph.n_tasks}): one vote per row, source and task "
                              f"{graph.task_names}")
    return L, Y


def _write(path: str, joint: np.ndarray) -> None:
    if path.endswith(".npy"):
        np.save(path, joint)
    else:
        np.savetxt(path, joint, delimiter=",", comments="", fmt="%.6g",
                   header=",".join(f"p{j}" for j in range(joint.shape[1])))


def fit_multitask(args: argparse.Namespace) -> int:
    """Fit a :class:`MultiTaskLabelModel` on ``args.data`` with the graph ``args.tasks``."""
    graph = task_graph_from_json(args.tasks)
    L, _ = load_multitask_npz(args.data, graph)
    start = time.perf_counter()
    model = MultiTaskLabelModel(graph, seed=args.seed).fit(L)
    joint = model.predict_proba_joint(L)
    print(f"{Path(args.data).name}: {L.shape[0]} rows, {L.shape[1]} sources, tasks "
          f"{graph.task_names} ({graph.n_feasible} feasible label vectors)")
    print(f"fitted MultiTaskLabelModel in {time.perf_counter() - start:.2f} s (no labels used)"
          + (f"; EM tables: {model.em_choice_['chosen']}" if hasattr(model, "em_choice_")
             else ""))
    if args.probs:
        _write(args.probs, joint)
        print(f"joint probabilistic labels ({joint.shape[0]} x {joint.shape[1]}, columns = rows "
              f"of the task graph's feasible set) written to {args.probs}")
    if args.model_out:
        model.save(args.model_out)
        print(f"model written to {args.model_out}")
    return 0


def evaluate_multitask(model: Any, args: argparse.Namespace) -> int:
    """Score a loaded multi-task model on ``args.data`` (its ``Y`` holds gold vectors)."""
    L, Y = load_multitask_npz(args.data, model.task_graph)
    if Y is None:
        raise DataFormatError(f"{args.data} has no Y (gold label vectors) to evaluate against")
    scores = model.score(L, Y, metrics=args.metrics, tie_break=args.tie_break)
    print(f"scoring MultiTaskLabelModel from {args.model} on {Path(args.data).name}")
    for task, values in scores.items():
        for name, value in values.items():
            print(f"{task:>10} {name:>10}: {value:.4f}")
    return 0


__all__ = ["evaluate_multitask", "fit_multitask", "load_multitask_npz"]

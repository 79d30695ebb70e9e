"""Seeded multi-task synthetic data over a task graph, with known source parameters.

Sources label at several levels: coarse sources vote on a root task, fine sources on a child
task (their vote implies the parent through the hierarchy), unipolar sources emit one value
or abstain, and multi-task sources emit a whole label vector. Every source's behaviour is a
known table ``P(vote vector | true feasible vector)``, so estimators can be checked against
the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metal.data.synthetic import draw_class_balance
from metal.errors import ConfigError
from metal.tasks.graph import TaskGraph
from metal.tasks.hierarchy import TaskHierarchy


@dataclass(frozen=True)
class SourceSpec:
    """How one synthetic source behaves.

    Attributes
    ----------
    tasks
        Names of the tasks the source votes on (its coverage set).
    coverage
        Probability that the source votes when the truth is one it can emit.
    accuracy
        ``"multi"``: probability that a vote is the truth (errors uniform over the other values
        it can emit). ``"unipolar"``: it fires with probability ``coverage`` on its value and
        ``coverage * (1 - accuracy)`` otherwise.
    kind
        ``"multi"`` or ``"unipolar"``.
    value
        For ``"unipolar"``: the vote vector it emits over ``tasks``.
    emits_na
        Whether the source can vote a child's N/A value; if not, on rows whose truth is N/A on
        its tasks it fires with probability ``coverage * false_fire``, uniformly at random.
    false_fire
        See ``emits_na``.
    """

    tasks: tuple[str, ...]
    coverage: float
    accuracy: float
    kind: str = "multi"
    value: tuple[int, ...] | None = None
    emits_na: bool = False
    false_fire: float = 0.3


@dataclass(frozen=True)
class HierarchicalSyntheticData:
    """Generated multi-task votes with the ground truth that produced them.

    Attributes
    ----------
    L : (n, m, t) int8, ``-1`` = abstain on that task.
    Y : (n, t) true label vectors (all feasible).
    Y_joint : (n,) index of each row's vector in ``task_graph.feasible``.
    conditional_probs : list of ``(C_i + 1, K)`` arrays, ``P(code | y_j)`` in the mixed-radix
        coding of :class:`metal.label_model.multitask.MultiTaskCoding` over the source's tasks;
        the last row is abstain.
    class_balance : (K,) ``P(Y = y_j)``.
    sources : the :class:`SourceSpec` of every source.
    coverage : (m, t) bool, the tasks each source votes on.
    """

    L: np.ndarray
    Y: np.ndarray
    Y_joint: np.ndarray
    conditional_probs: list[np.ndarray]
    class_balance: np.ndarray
    sources: list[SourceSpec]
    coverage: np.ndarray


def _na_values(task_graph: TaskGraph) -> dict[int, int]:
    if isinstance(task_graph, TaskHierarchy):
        return {task_graph.task_index(t): v for t, v in task_graph.na_value.items()}
    return {}


def default_sources(task_graph: TaskGraph, seed: int = 0, *, n_coarse: int = 4,
                    n_unipolar: int = 2, n_child: int = 2, n_full: int = 1) -> list[SourceSpec]:
    """Sources at several granularities for a task graph.

    Per root task, ``n_coarse`` noisy multi-polar sources (accuracy 0.55-0.75, coverage
    0.3-0.6). Per child task, ``n_unipolar`` unipolar sources per real value (accuracy
    0.8-0.95, coverage 0.1-0.3) and ``n_child`` multi-polar sources that never say N/A
    (accuracy 0.65-0.85, coverage 0.15-0.35). ``n_full`` sources that vote whole label
    vectors (accuracy 0.6-0.8, coverage 0.2-0.4). Fine sources are better but sparser than
    coarse ones: the setting of the MeTaL paper's Figure 2.
    """
    rng = np.random.default_rng(seed)
    names = task_graph.task_names
    roots = task_graph.roots if isinstance(task_graph, TaskHierarchy) else list(names)
    na = _na_values(task_graph)
    specs: list[SourceSpec] = []
    for task in roots:
        for _ in range(n_coarse):
            specs.append(SourceSpec((task,), float(rng.uniform(0.3, 0.6)),
                                    float(rng.uniform(0.55, 0.75))))
    for task in names:
        if task in roots:
            continue
        s = task_graph.task_index(task)
        real = [v for v in range(task_graph.cardinalities[s]) if na.get(s) != v]
        for v in real:
            for _ in range(n_unipolar):
                specs.append(SourceSpec((task,), float(rng.uniform(0.1, 0.3)),
                                        float(rng.uniform(0.8, 0.95)), kind="unipolar",
                                        value=(v,)))
        for _ in range(n_child):
            specs.append(SourceSpec((task,), float(rng.uniform(0.15, 0.35)),
                                    float(rng.uniform(0.65, 0.85))))
    for _ in range(n_full):
        specs.append(SourceSpec(tuple(names), float(rng.uniform(0.2, 0.4)),
                                float(rng.uniform(0.6, 0.8)), emits_na=True))
    return specs


def _code_vectors(cards: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """``(C, t)`` vote vector of every code over the covered tasks (mixed radix, -1 elsewhere)."""
    base = cards[covered] + 1
    C = int(np.prod(base)) - 1
    codes = np.arange(1, C + 1)
    out = np.full((C, cards.shape[0]), -1, dtype=np.int64)
    w = 1
    for j, s in enumerate(covered):
        out[:, s] = (codes // w) % base[j] - 1
        w *= int(base[j])
    return out


def source_table(spec: SourceSpec, task_graph: TaskGraph) -> np.ndarray:
    """``(C + 1, K)`` table ``P(code | y_j)`` of one source (last row: abstain)."""
    F = task_graph.feasible
    K = F.shape[0]
    cards = np.asarray(task_graph.cardinalities, dtype=np.int64)
    covered = np.array(sorted(task_graph.task_index(t) for t in spec.tasks), dtype=np.int64)
    vecs = _code_vectors(cards, covered)
    C = vecs.shape[0]
    na = _na_values(task_graph)
    # the vote vectors the source can emit: projections of feasible vectors on its tasks
    proj = F[:, covered]
    is_na = np.zeros(K, dtype=bool)  # truth is N/A on every covered task
    if not spec.emits_na:
        is_na = np.all([F[:, s] == na[s] if s in na else np.zeros(K, bool) for s in covered],
                       axis=0)
    emittable = np.unique(proj[~is_na], axis=0)
    code_of = np.zeros(emittable.shape[0], dtype=np.int64)
    w = 1
    for j, s in enumerate(covered):
        code_of += (emittable[:, j] + 1) * w
        w *= int(cards[s] + 1)
    code_of -= 1
    table = np.zeros((C + 1, K))
    truth_code = np.zeros(K, dtype=np.int64)
    w = 1
    for j, s in enumerate(covered):
        truth_code += (proj[:, j] + 1) * w
        w *= int(cards[s] + 1)
    truth_code -= 1
    E = code_of.shape[0]
    if spec.kind == "unipolar":
        if spec.value is None or len(spec.value) != covered.size:
            raise ConfigError(f"a unipolar source needs value= a vote vector over {spec.tasks}")
        c = sum((int(v) + 1) * int(np.prod(cards[covered[:j]] + 1))
                for j, v in enumerate(spec.value)) - 1
        fire = np.where(truth_code == c, spec.coverage, spec.coverage * (1.0 - spec.accuracy))
        table[c] = fire
    else:
        for j in range(K):  # loop over feasible vectors, not rows
            if is_na[j] or E == 1:
                table[code_of, j] = spec.coverage * (spec.false_fire if is_na[j] else 1.0) / E
                continue
            table[code_of, j] = spec.coverage * (1.0 - spec.accuracy) / (E - 1)
            table[truth_code[j], j] = spec.coverage * spec.accuracy
    table[C] = 1.0 - table[:C].sum(axis=0)
    if vecs.shape[0] != C:  # pragma: no cover - internal consistency
        raise AssertionError
    return table


def make_hierarchical_synthetic(
    n: int,
    task_graph: TaskGraph,
    sources: Sequence[SourceSpec] | None = None,
    *,
    class_balance: np.ndarray | None = None,
    seed: int = 0,
) -> HierarchicalSyntheticData:
    """Generate multi-task votes from known per-source tables over the feasible set.

    Parameters
    ----------
    n
        Number of rows.
    task_graph
        The tasks and feasible set (e.g. a :class:`~metal.tasks.TaskHierarchy`).
    sources
        The sources; default :func:`default_sources` (seeded with ``seed``).
    class_balance
        ``P(Y = y_j)`` over ``task_graph.feasible``; default a Dirichlet(5) draw.
    seed
        Seed of the generator (no global state is touched).

    Examples
    --------
    >>> from metal.tasks import TaskHierarchy
    >>> h = TaskHierarchy({"type": 2, "person": 3, "org": 3},
    ...                   parents={"person": ("type", 0), "org": ("type", 1)})
    >>> data = make_hierarchical_synthetic(500, h, seed=0)
    >>> data.L.shape, bool(h.is_feasible(data.Y).all())
    ((500, 17, 3), True)
    """
    if n < 1:
        raise ConfigError(f"n={n}; expected at least one row")
    rng = np.random.default_rng(seed)
    K, t = task_graph.n_feasible, task_graph.n_tasks
    specs = list(default_sources(task_graph, seed) if sources is None else sources)
    if not specs:
        raise ConfigError("sources is empty; give at least one SourceSpec")
    p = draw_class_balance(K, class_balance, rng, " (one per feasible vector)")
    cards = np.asarray(task_graph.cardinalities, dtype=np.int64)
    Yj = rng.choice(K, size=n, p=p)
    L = np.full((n, len(specs), t), -1, dtype=np.int8 if cards.max() < 127 else np.int32)
    tables, coverage = [], np.zeros((len(specs), t), dtype=bool)
    u = np.empty(n)
    for i, spec in enumerate(specs):  # loop over sources, not rows
        unknown = [x for x in spec.tasks if x not in task_graph.task_names]
        if unknown or not spec.tasks:
            raise ConfigError(f"source {i} names tasks {list(spec.tasks)}; expected a non-empty "
                              f"subset of {task_graph.task_names}")
        table = source_table(spec, task_graph)
        covered = np.array(sorted(task_graph.task_index(x) for x in spec.tasks))
        coverage[i, covered] = True
        vecs = np.vstack([_code_vectors(cards, covered), np.full((1, t), -1)])
        cum = np.cumsum(table, axis=0)[:, Yj]
        rng.random(out=u)
        code = np.minimum((u[None, :] > cum).sum(axis=0), table.shape[0] - 1)
        L[:, i, :] = vecs[code]
        tables.append(table)
    return HierarchicalSyntheticData(L=L, Y=task_graph.feasible[Yj].copy(), Y_joint=Yj,
                                     conditional_probs=tables, class_balance=p, sources=specs,
                                     coverage=coverage)

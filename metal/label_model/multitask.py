"""The multi-task label model: one latent label vector over a task graph's feasible set.

Sources may vote on several tasks at once (a *coverage set* of tasks). The latent variable is
the index ``j`` of a feasible label vector ``y_j`` (a row of ``task_graph.feasible``), so every
prediction is feasible by construction, and cross-task agreement is used: a source that says
"Doctor" on the person task is, through the feasible set, also evidence for "Person" and for
"organisation type = N/A".

Coding. A source's *code* on a row is its whole vote vector over the tasks it covers (abstain
on some of them is part of the code), in mixed radix ``(k_s + 1)`` over its covered tasks;
a source abstains on a row when it abstains on every task. Each (source, code) pair is one
indicator of :class:`~metal.label_model.statistics.SourceStatistics`, and the class-conditional
model ``mu[(i, code), j] = P(lambda_i = code | Y = y_j)`` is estimated from the second moments
by :func:`~metal.label_model.estimation.fit_moments` with ``K = |feasible set|`` latent
classes. With a single task this is exactly :class:`~metal.label_model.LabelModel`.

Input. Either an ``(n, m, t)`` integer array (``L[r, i, s]`` = source ``i``'s vote on task
``s``; ``-1`` abstains on that task) or a dict ``{task_name: L_t}`` of ``(n, m_t)`` label
matrices (dense or ``scipy.sparse``), each column a source covering that task only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from metal._io import load_arrays, save_arrays
from metal.errors import ConfigError, LabelMatrixError
from metal.label_model.base import check_fit_params, check_is_fitted
from metal.label_model.estimation import (
    MomentProblem,
    fit_moments,
)
from metal.label_model.label_model import FitInfo, MetalWarning, resolve_class_balance
from metal.label_model.statistics import SourceStatistics
from metal.matrix import (
    DEFAULT_CHUNK_ROWS,
    LabelMatrix,
    as_integer_labels,
    check_label_matrix,
)
from metal.metrics import probs_to_preds, score_predictions
from metal.tasks.graph import TaskGraph, task_graph_from_dict

MAX_SOURCE_CODES = 1_000_000
_CHUNK_CELLS = 8_000_000  # bound on rows * sources * tasks held at once for dense input
TIES = ("none", "coverage", "agreement", "linear")


# ---------------------------------------------------------------------------- input
@dataclass(frozen=True)
class MultiTaskChunk:
    """The voting (row, source) pairs of a block of rows and their vote vectors."""

    start: int
    stop: int
    rows: np.ndarray  # local row index, 0..stop-start-1
    sources: np.ndarray
    votes: np.ndarray  # (n_votes, t), -1 on tasks the source abstains on


@dataclass(frozen=True)
class MultiTaskVotes:
    """A validated multi-task label input (an ``(n, m, t)`` array or per-task matrices)."""

    n_rows: int
    n_sources: int
    n_tasks: int
    layout: str  # "array" or "dict"
    dense: np.ndarray | None
    per_task: tuple[LabelMatrix | None, ...] | None
    sources_per_task: tuple[int, ...] | None

    def _chunk(self, chunk_rows: int) -> int:
        if self.dense is None:
            return chunk_rows
        return max(1, min(chunk_rows, _CHUNK_CELLS // max(1, self.n_sources * self.n_tasks)))

    def iter_votes(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[MultiTaskChunk]:
        """Yield the votes block by block (no block holds more than ``chunk_rows`` rows)."""
        step = self._chunk(chunk_rows)
        for start in range(0, self.n_rows, step):
            stop = min(start + step, self.n_rows)
            if self.dense is not None:
                block = self.dense[start:stop]
                r, i = np.nonzero((block >= 0).any(axis=2))
                yield MultiTaskChunk(start, stop, r.astype(np.int64), i.astype(np.int64),
                                     block[r, i].astype(np.int64))
                continue
            assert self.per_task is not None and self.sources_per_task is not None
            rows, srcs, vecs = [], [], []
            offset = 0
            for s, lm in enumerate(self.per_task):
                if lm is not None:
                    ch = lm.votes_in(start, stop)
                    v = np.full((ch.rows.size, self.n_tasks), -1, dtype=np.int64)
                    v[:, s] = ch.values
                    rows.append(ch.rows - start)
                    srcs.append(ch.cols + offset)
                    vecs.append(v)
                offset += self.sources_per_task[s]
            yield MultiTaskChunk(start, stop, np.concatenate(rows), np.concatenate(srcs),
                                 np.concatenate(vecs))

    def coverage(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
        """``(m, t)`` bool: the tasks each source votes on at least once."""
        cov = np.zeros((self.n_sources, self.n_tasks), dtype=bool)
        for ch in self.iter_votes(chunk_rows):
            r, s = np.nonzero(ch.votes >= 0)
            cov[ch.sources[r], s] = True
        return cov


def check_multitask_votes(L: Any, task_graph: TaskGraph, name: str = "L") -> MultiTaskVotes:
    """Validate multi-task votes against a task graph.

    Parameters
    ----------
    L
        ``(n, m, t)`` integer array (``-1`` abstains on a task), or ``{task_name: L_t}`` with
        ``L_t`` an ``(n, m_t)`` dense or sparse label matrix for that task.
    task_graph
        The tasks; values on task ``s`` must lie in ``0..k_s-1``.

    Raises
    ------
    LabelMatrixError
        Wrong shape or dtype, unknown task names, inconsistent row counts, or a value out of
        range (the message names the task and the value).
    """
    names, card, t = task_graph.task_names, task_graph.cardinalities, task_graph.n_tasks
    if isinstance(L, Mapping):
        unknown = [k for k in L if k not in names]
        if unknown:
            raise LabelMatrixError(f"{name} has entries for unknown tasks {unknown}; the task "
                                   f"graph's tasks are {names}")
        if not L:
            raise LabelMatrixError(f"{name} is an empty dict; expected {{task_name: (n, m_t) "
                                   "label matrix}} for at least one task")
        per_task: list[LabelMatrix | None] = []
        counts: list[int] = []
        n_rows = None
        for s, task in enumerate(names):
            if task not in L or L[task] is None:
                per_task.append(None)
                counts.append(0)
                continue
            lm = check_label_matrix(L[task], cardinality=card[s], name=f"{name}[{task!r}]")
            if n_rows is not None and lm.n_rows != n_rows:
                raise LabelMatrixError(f"{name}[{task!r}] has {lm.n_rows} rows, another task's "
                                       f"matrix has {n_rows}; expected the same rows for every "
                                       "task")
            n_rows = lm.n_rows
            per_task.append(lm)
            counts.append(lm.n_sources)
        assert n_rows is not None
        return MultiTaskVotes(n_rows=n_rows, n_sources=sum(counts), n_tasks=t, layout="dict",
                              dense=None, per_task=tuple(per_task),
                              sources_per_task=tuple(counts))
    if sp.issparse(L):
        raise LabelMatrixError(f"{name} is a 2-D sparse matrix; expected an (n, m, t) dense array "
                               "or a dict {task_name: (n, m_t) matrix} (sparse allowed there)")
    if isinstance(L, (list, tuple)):
        L = np.asarray(L)
    if not isinstance(L, np.ndarray):
        raise LabelMatrixError(f"{name} is a {type(L).__name__}; expected an (n, m, t) numpy "
                               "array or a dict {task_name: (n, m_t) matrix}")
    if L.ndim == 2 and t == 1:
        L = L[:, :, None]
    if L.ndim != 3 or L.shape[2] != t:
        raise LabelMatrixError(
            f"{name} has shape {L.shape}; expected (n, m, {t}): one vote per row, source and "
            f"task {names} (-1 abstains), or a dict {{task_name: (n, m_t) matrix}}"
        )
    if L.shape[0] == 0 or L.shape[1] == 0:
        raise LabelMatrixError(f"{name} is empty (shape {L.shape}); expected at least one row "
                               "and one source")
    L = as_integer_labels(L, name, "Replace NaN by -1.")
    lo, hi = L.min(axis=(0, 1)), L.max(axis=(0, 1))
    for s in range(t):
        if lo[s] < -1 or hi[s] >= card[s]:
            bad = int(lo[s]) if lo[s] < -1 else int(hi[s])
            raise LabelMatrixError(
                f"{name} contains the value {bad} for task {names[s]!r}; expected -1 (abstain) "
                f"or 0..{card[s] - 1} (cardinality {card[s]}). Check the label mapping of that "
                "task"
            )
    return MultiTaskVotes(n_rows=int(L.shape[0]), n_sources=int(L.shape[1]), n_tasks=t,
                          layout="array", dense=L, per_task=None, sources_per_task=None)


# ---------------------------------------------------------------------------- coding
class MultiTaskCoding:
    """Mixed-radix codes of each source's vote vector over its coverage set.

    Source ``i`` with covered tasks ``s_1 < ... < s_r`` emits the code
    ``sum_j (v_{s_j} + 1) * prod_{l<j} (k_{s_l} + 1) - 1`` (``-1`` = abstain on every task).
    With one task the code is the vote itself, as in :class:`~metal.label_model.LabelModel`.
    """

    def __init__(self, cardinalities: Sequence[int], coverage: np.ndarray) -> None:
        self.cardinalities = np.asarray(cardinalities, dtype=np.int64)
        self.coverage = np.asarray(coverage, dtype=bool)
        m, t = self.coverage.shape
        base = self.cardinalities + 1
        W = np.zeros((m, t), dtype=np.int64)
        n_values = np.ones(m, dtype=np.int64)  # a silent source keeps one (never fired) code
        for i in range(m):  # loop over sources, not rows
            covered = np.flatnonzero(self.coverage[i])
            if covered.size == 0:
                continue
            size = int(np.prod([int(b) for b in base[covered]], dtype=object))
            if size - 1 > MAX_SOURCE_CODES:
                raise ConfigError(
                    f"source {i} votes on {covered.size} tasks, giving {size - 1} possible vote "
                    f"vectors (limit {MAX_SOURCE_CODES}); split it into one source per task "
                    "(columns of a dict input)"
                )
            W[i, covered] = np.concatenate([[1], np.cumprod(base[covered])[:-1]])
            n_values[i] = size - 1
        self.weights = W
        self.n_values = n_values
        self.offsets = np.concatenate([[0], np.cumsum(n_values)[:-1]]).astype(np.int64)

    @property
    def n_sources(self) -> int:
        return int(self.coverage.shape[0])

    @property
    def n_indicators(self) -> int:
        return int(self.n_values.sum())

    def encode(self, sources: np.ndarray, votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indicator index of each vote vector, and whether it lies in the source's coverage."""
        W = self.weights[sources]
        inside = ~((votes >= 0) & (W == 0)).any(axis=1)
        code = ((votes + 1) * W).sum(axis=1) - 1
        return self.offsets[sources] + np.maximum(code, 0), inside & (code >= 0)

    def decode(self, indicators: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source and ``(d, t)`` vote vector of each indicator."""
        indicators = np.asarray(indicators, dtype=np.int64)
        src = np.searchsorted(self.offsets, indicators, side="right") - 1
        code = indicators - self.offsets[src] + 1
        W = self.weights[src]
        votes = (code[:, None] // np.maximum(W, 1)) % (self.cardinalities + 1)[None, :] - 1
        return src, np.where(W > 0, votes, -1)

    def statistics(self, votes: MultiTaskVotes, chunk_rows: int) -> SourceStatistics:
        """One chunked pass: counts and co-occurrences of every (source, code) indicator."""
        stats = SourceStatistics(self.n_values)
        for ch in votes.iter_votes(chunk_rows):
            ind, ok = self.encode(ch.sources, ch.votes)
            stats.update(ch.stop - ch.start, ch.rows[ok], ind[ok])
        return stats


def complete_votes(votes: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Add the votes a vote vector implies through the feasible set.

    A task value is implied when every feasible vector consistent with the explicit votes
    has it (e.g. "Doctor" implies "Person" and "organisation type = N/A"). Vote vectors that
    no feasible vector matches keep their explicit votes only.

    Parameters
    ----------
    votes
        ``(d, t)`` vote vectors, ``-1`` = no vote on that task.
    feasible
        ``(K, t)`` feasible label vectors.
    """
    d, t = votes.shape
    consistent = np.ones((d, feasible.shape[0]), dtype=bool)
    for s in range(t):
        consistent &= (votes[:, s, None] < 0) | (votes[:, s, None] == feasible[None, :, s])
    out = votes.copy()
    has = consistent.any(axis=1)
    for s in range(t):
        lo = np.where(consistent, feasible[None, :, s], np.iinfo(np.int64).max).min(axis=1)
        hi = np.where(consistent, feasible[None, :, s], -1).max(axis=1)
        implied = has & (lo == hi) & (votes[:, s] < 0)
        out[implied, s] = lo[implied]
    return out


def vote_agreement(votes: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """``(d, K)``: fraction of each (completed) vote vector's task votes that match ``y_j``."""
    n_votes = np.maximum((votes >= 0).sum(axis=1), 1)
    agree = np.zeros((votes.shape[0], feasible.shape[0]))
    for s in range(votes.shape[1]):
        agree += (votes[:, s, None] >= 0) & (votes[:, s, None] == feasible[None, :, s])
    return agree / n_votes[:, None]


def coverage_projection(sources: np.ndarray, coverage: np.ndarray,
                        feasible: np.ndarray) -> np.ndarray:
    """``(d, K)`` index of ``y_j`` projected on the coverage set of each indicator's source.

    Two feasible vectors that agree on every task a source covers get the same index: tying
    their parameters says the source's behaviour depends on the truth only through the tasks
    it labels.
    """
    d, K = sources.shape[0], feasible.shape[0]
    out = np.zeros((d, K), dtype=np.int64)
    for src in np.unique(sources):
        rows = np.flatnonzero(sources == src)
        covered = np.flatnonzero(coverage[src])
        _, proj = np.unique(feasible[:, covered], axis=0, return_inverse=True)
        out[rows] = proj.ravel()[None, :]
    return out


def agreement_projection(agreement: np.ndarray) -> np.ndarray:
    """``(d, K)`` index of each feasible vector's agreement level with each indicator.

    Tying the parameters of feasible vectors with the same agreement is the MeTaL paper's
    simplified class-conditional model: a source's vote has one probability under the truths
    it matches, and errs uniformly over the truths it contradicts (with one level per partial
    match, e.g. right coarse type but wrong fine type).
    """
    levels = np.round(agreement * 1e6).astype(np.int64)
    order = np.sort(levels, axis=1)
    first = np.concatenate([np.ones((levels.shape[0], 1), bool), order[:, 1:] != order[:, :-1]],
                           axis=1)
    rank = np.cumsum(first, axis=1) - 1
    # rank of each entry = rank of its value in the sorted row
    pos = np.argsort(np.argsort(levels, axis=1, kind="stable"), axis=1, kind="stable")
    return np.take_along_axis(rank, pos, axis=1)


# ---------------------------------------------------------------------------- the model
def _check_task_graph(task_graph: Any) -> TaskGraph:
    if not isinstance(task_graph, TaskGraph):
        raise ConfigError(
            f"task_graph is a {type(task_graph).__name__}; expected a metal.TaskGraph or "
            "metal.TaskHierarchy, e.g. TaskHierarchy({'type': 2, 'person': 3, 'org': 3}, "
            "parents={'person': ('type', 0), 'org': ('type', 1)})"
        )
    return task_graph


def joint_balance_from_gold(Y: Any, task_graph: TaskGraph) -> np.ndarray:
    """Prior over the feasible set from labeled vectors (add-one smoothing; rows with an
    unknown ``-1`` entry are skipped)."""
    Y = task_graph._as_vectors(Y, "Y_dev")
    Y = Y[(Y >= 0).all(axis=1)]
    counts = np.bincount(task_graph.to_joint(Y), minlength=task_graph.n_feasible) + 1.0
    return counts / counts.sum()


class MultiTaskLabelModel:
    """Label model over a task graph's feasible label vectors, fitted without labels.

    Given the true label vector ``Y = y_j`` (a feasible vector), sources vote independently;
    source ``i`` emits a vote vector over its coverage set (or abstains) with probability
    ``P(lambda_i | y_j)``. These tables and ``P(Y)`` are estimated from the second moments of
    the votes (MeTaL, Ratner et al. AAAI 2019) after one chunked pass over the data; the
    posterior ``P(Y | lambda)`` is computed in log space over the feasible set, so
    predictions are always feasible, and per-task marginals are sums of the joint.

    Parameters
    ----------
    task_graph
        A :class:`~metal.tasks.TaskGraph` or :class:`~metal.tasks.TaskHierarchy`.
    method
        ``"moments"`` (masked least squares) or ``"inverse"`` (the paper's Algorithm 1); see
        :func:`~metal.label_model.estimation.fit_moments`.
    tie
        ``"none"``: a free probability for every (source, code, feasible vector).
        ``"coverage"``: a source's behaviour depends on the truth only through the tasks it
        covers (feasible vectors with the same values there share parameters); with one task
        this is the same model as ``"none"``. ``"agreement"``: the paper's simplified
        class-conditional model, one parameter per (code, level of agreement with the
        truth), far fewer parameters when the feasible set is large. These two need
        ``method="moments"``. ``"linear"``: two parameters per code, the logit linear in the
        agreement with the truth and increasing (``fit_moments(..., tied=True)``); with one
        task it is ``LabelModel(parameterization="tied")``. The default, ``"linear"``, is the
        best on the real hierarchies (benchmarks/multitask.py).
    model_abstains
        If True an abstention is evidence (``P(abstain | y)`` enters the posterior), so the
        silence of a unipolar source counts.
    prob_floor
        Lower bound on the probabilities used in prediction (no source vetoes a vector).
    max_iter, tol, l2
        Optimiser budget, gradient tolerance, ridge towards the initial point.
    chunk_rows
        Rows per block in the statistics and prediction passes.
    device
        Torch device for the fit.
    seed
        Seed of this instance (tie breaks, initialisation).

    Attributes
    ----------
    class_balance_ : ndarray of shape (K,)
        Estimated (or given) ``P(Y = y_j)`` over the feasible vectors.
    coverage_ : ndarray of shape (m, t)
        The tasks each source voted on during fit.
    statistics_ : SourceStatistics
    fit_info_ : FitInfo

    Examples
    --------
    >>> from metal.tasks import TaskHierarchy
    >>> from metal.data.synthetic_hierarchy import make_hierarchical_synthetic
    >>> from metal.label_model.multitask import MultiTaskLabelModel
    >>> h = TaskHierarchy({"type": 2, "person": 3, "org": 3},
    ...                   parents={"person": ("type", 0), "org": ("type", 1)})
    >>> data = make_hierarchical_synthetic(2000, h, seed=0)
    >>> model = MultiTaskLabelModel(task_graph=h, seed=0).fit(data.L)
    >>> [p.shape for p in model.predict_proba(data.L)]
    [(2000, 2), (2000, 3), (2000, 3)]
    >>> bool(h.is_feasible(model.predict(data.L)).all())
    True
    """

    def __init__(
        self,
        task_graph: TaskGraph,
        *,
        method: str = "moments",
        tie: str = "linear",
        model_abstains: bool = False,
        prob_floor: float = 1e-3,
        max_iter: int = 500,
        tol: float = 1e-10,
        l2: float = 0.1,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        self.task_graph = task_graph
        self.method = method
        self.tie = tie
        self.model_abstains = model_abstains
        self.prob_floor = prob_floor
        self.max_iter = max_iter
        self.tol = tol
        self.l2 = l2
        self.chunk_rows = chunk_rows
        self.device = device
        self.seed = seed

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> TaskGraph:
        g = _check_task_graph(self.task_graph)
        check_fit_params(self)
        if self.tie not in TIES:
            raise ConfigError(f"tie={self.tie!r} is not known; expected one of {TIES}")
        if self.tie in ("coverage", "agreement") and self.method != "moments":
            raise ConfigError(f"tie={self.tie!r} is implemented for method='moments' only; use "
                              "method='moments' or tie='none'")
        return g

    def _check_fitted(self) -> None:
        check_is_fitted(self)

    def _votes(self, L: Any) -> MultiTaskVotes:
        votes = check_multitask_votes(L, self.task_graph)
        if votes.n_sources != self.n_sources_:
            raise LabelMatrixError(
                f"L has {votes.n_sources} sources; the model was fitted on {self.n_sources_}. "
                "Apply the same sources, in the same order, as at fit time"
            )
        if votes.layout == "dict" and self.sources_per_task_ is not None \
                and votes.sources_per_task != self.sources_per_task_:
            raise LabelMatrixError(
                f"L has {list(votes.sources_per_task or ())} sources per task; the model was "
                f"fitted on {list(self.sources_per_task_)}. Pass the same matrices as in fit"
            )
        return votes

    # ------------------------------------------------------------------ fitting
    def fit(self, L: Any, class_balance: Any = None, Y_dev: Any = None) -> MultiTaskLabelModel:
        """Estimate every source's conditional vote probabilities from unlabeled votes.

        Parameters
        ----------
        L
            ``(n, m, t)`` int array (``-1`` abstains on a task), or ``{task_name: L_t}`` of
            ``(n, m_t)`` dense or sparse matrices (each column a source covering that task).
        class_balance
            ``(K,)`` prior over the feasible vectors (``task_graph.feasible``), if known;
            ``"uniform"``; or ``"estimate"`` (jointly from ``L``, no labels). Default
            (``None``): from ``Y_dev`` if given, else uniform over the feasible vectors.
        Y_dev
            ``(n_dev, t)`` gold label vectors of a small labeled set, used only to estimate the
            prior.

        Returns
        -------
        MultiTaskLabelModel
            ``self``, fitted.

        Raises
        ------
        LabelMatrixError
            Malformed ``L`` (the message names the task and value), or no vote at all.
        ConfigError
            Bad hyperparameters, a bad prior, or both ``class_balance`` and ``Y_dev``.
        TaskGraphError
            A row of ``Y_dev`` is not feasible.
        """
        g = self._check_params()
        votes = check_multitask_votes(L, g)
        coverage = votes.coverage(int(self.chunk_rows))
        if not coverage.any():
            raise LabelMatrixError("L contains no vote at all (every entry is -1); expected at "
                                   "least some votes. Check that your sources were applied.")
        K = g.n_feasible

        def check_prior(prior: Any) -> np.ndarray:
            p = np.asarray(prior, dtype=np.float64)
            if p.shape != (K,) or not np.all(np.isfinite(p)) or (p <= 0).any() \
                    or abs(p.sum() - 1.0) > 1e-6:
                raise ConfigError(
                    f"class_balance has shape {p.shape}; expected ({K},) positive probabilities "
                    "summing to 1, one per feasible label vector (rows of task_graph.feasible)"
                )
            return p

        p, p_source = resolve_class_balance(
            class_balance, Y_dev, K, from_gold=lambda Y: joint_balance_from_gold(Y, g),
            check=check_prior)
        coding = MultiTaskCoding(g.cardinalities, coverage)
        stats = coding.statistics(votes, int(self.chunk_rows))
        return self._fit_statistics(stats, coding, p, p_source, votes)

    def _fit_statistics(self, stats: SourceStatistics, coding: MultiTaskCoding,
                        p: np.ndarray | None, p_source: str, votes: MultiTaskVotes
                        ) -> MultiTaskLabelModel:
        g = self.task_graph
        K = g.n_feasible
        emitted = stats.emitted()
        src, V = coding.decode(emitted)
        silent = np.setdiff1d(np.arange(coding.n_sources), src)
        if silent.size:
            warnings.warn(f"sources {silent.tolist()} never vote in L; they carry no information "
                          "and are ignored (remove them, or check that they were applied)",
                          MetalWarning, stacklevel=3)
        means, second = stats.moments(emitted)
        agreement = vote_agreement(complete_votes(V, g.feasible), g.feasible)
        problem = MomentProblem(second=second, means=means, groups=src,
                                n_groups=coding.n_sources, agreement=agreement)
        if self.tie == "linear":
            result = fit_moments(problem, K, class_balance=p, method=self.method,
                                 max_iter=int(self.max_iter), tol=float(self.tol),
                                 l2=float(self.l2), tied=True, device=self.device,
                                 seed=int(self.seed))
        elif self.tie != "none":
            projection = (coverage_projection(src, coding.coverage, g.feasible)
                          if self.tie == "coverage" else agreement_projection(agreement))
            result = fit_moments(problem, K, class_balance=p, projection=projection,
                                 max_iter=int(self.max_iter), tol=float(self.tol),
                                 l2=float(self.l2), device=self.device, seed=int(self.seed))
        else:
            result = fit_moments(problem, K, class_balance=p, method=self.method,
                                 max_iter=int(self.max_iter), tol=float(self.tol),
                                 l2=float(self.l2), device=self.device, seed=int(self.seed))
        self._set_fitted(coding, emitted, result.mu, result.abstain, result.class_balance,
                         votes.sources_per_task)
        self.statistics_ = stats
        self.fit_info_ = FitInfo(loss=result.loss, n_iter=result.n_iter, n_rows=stats.n_rows,
                                 n_indicators=int(emitted.size),
                                 permutation=result.permutation.tolist(),
                                 class_balance_source=p_source)
        return self

    def _set_fitted(self, coding: MultiTaskCoding, emitted: np.ndarray, mu: np.ndarray,
                    abstain: np.ndarray, class_balance: np.ndarray,
                    sources_per_task: tuple[int, ...] | None) -> None:
        self.coding_ = coding
        self.coverage_ = coding.coverage
        self.n_sources_ = coding.n_sources
        self.sources_per_task_ = sources_per_task
        self.emitted_ = emitted
        self.indicator_probs_ = mu
        self.abstain_probs_ = abstain
        self.class_balance_ = class_balance

    # ------------------------------------------------------------------ parameters
    def get_conditional_probs(self) -> list[np.ndarray]:
        """Per source ``i``, a ``(C_i + 1, K)`` array ``[code, j] = P(lambda_i = code | y_j)``.

        Codes are the mixed-radix codes of :class:`MultiTaskCoding` (decode them with
        :meth:`source_codes`); the last row is abstain. Codes never seen in fit have 0.
        """
        self._check_fitted()
        coding = self.coding_
        src = np.searchsorted(coding.offsets, self.emitted_, side="right") - 1
        out = []
        for i in range(coding.n_sources):  # loop over sources, not rows
            table = np.zeros((int(coding.n_values[i]) + 1, self.class_balance_.shape[0]))
            sel = src == i
            table[self.emitted_[sel] - coding.offsets[i]] = self.indicator_probs_[sel]
            table[-1] = self.abstain_probs_[i]
            out.append(table)
        return out

    def source_codes(self, source: int) -> np.ndarray:
        """``(C_i, t)`` the vote vector of each code of a source (``-1`` = no vote there)."""
        self._check_fitted()
        coding = self.coding_
        if not 0 <= int(source) < coding.n_sources:
            raise ConfigError(f"source {source} is out of range; the model has "
                              f"{coding.n_sources} sources")
        ind = coding.offsets[source] + np.arange(coding.n_values[source])
        return coding.decode(ind)[1]

    def _log_tables(self) -> tuple[np.ndarray, np.ndarray]:
        floor = max(float(self.prob_floor), 1e-12)
        src = np.searchsorted(self.coding_.offsets, self.emitted_, side="right") - 1
        mu = np.clip(self.indicator_probs_, floor, None)
        abst = np.clip(self.abstain_probs_, floor, None)
        if self.model_abstains:
            table = np.log(mu) - np.log(abst)[src]
            base = np.log(self.class_balance_) + np.log(abst).sum(axis=0)
        else:  # votes enter as P(v | y), abstentions are ignored (as in LabelModel)
            table = np.log(mu)
            base = np.log(self.class_balance_)
        return table, base

    # ------------------------------------------------------------------ outputs
    def predict_log_proba_joint(self, L: Any) -> np.ndarray:
        """``(n, K)`` log posterior over the feasible vectors (``task_graph.feasible``)."""
        self._check_fitted()
        votes = self._votes(L)
        table, base = self._log_tables()
        d = self.emitted_.size
        out = np.empty((votes.n_rows, base.shape[0]))
        n_unseen = 0
        for ch in votes.iter_votes(int(self.chunk_rows)):
            ind, ok = self.coding_.encode(ch.sources, ch.votes)
            pos = np.minimum(np.searchsorted(self.emitted_, ind), d - 1)
            seen = ok & (self.emitted_[pos] == ind)
            n_unseen += int((~seen).sum())
            A = sp.csr_matrix((np.ones(int(seen.sum())), (ch.rows[seen], pos[seen])),
                              shape=(ch.stop - ch.start, d))
            scores = base[None, :] + A @ table
            out[ch.start:ch.stop] = scores - logsumexp(scores, axis=1, keepdims=True)
        if n_unseen:
            warnings.warn(f"{n_unseen} vote vectors were never emitted by their source during "
                          "fit (a new value, or a task outside its coverage); they were treated "
                          "as abstentions. Refit on data that includes them.",
                          MetalWarning, stacklevel=2)
        return out

    def predict_proba_joint(self, L: Any) -> np.ndarray:
        """``(n, K)`` posterior ``P(Y = y_j | lambda)`` over ``task_graph.feasible``."""
        return np.exp(self.predict_log_proba_joint(L))

    def marginals(self, joint: np.ndarray) -> list[np.ndarray]:
        """Per-task marginals ``(n, k_s)`` of a joint ``(n, K)`` distribution."""
        g = self.task_graph
        return [joint @ g.marginal_indicator(s) for s in range(g.n_tasks)]

    def predict_proba(self, L: Any) -> list[np.ndarray]:
        """Per-task posteriors: a list of ``t`` arrays ``(n, k_s)``, each row summing to 1."""
        return self.marginals(self.predict_proba_joint(L))

    def predict(self, L: Any, tie_break: str = "random",
                return_probs: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``(n, t)`` most probable feasible label vector of each row.

        Parameters
        ----------
        tie_break
            ``"random"`` (seeded by ``seed``), ``"first"`` or ``"abstain"`` (a row of ``-1``).
        return_probs
            Also return the ``(n, K)`` joint posterior.
        """
        joint = self.predict_proba_joint(L)
        idx = probs_to_preds(joint, tie_break, seed=int(self.seed))
        preds = np.full((idx.shape[0], self.task_graph.n_tasks), -1, dtype=np.int64)
        preds[idx >= 0] = self.task_graph.feasible[idx[idx >= 0]]
        return (preds, joint) if return_probs else preds

    def score(self, L: Any, Y: Any, metrics: Sequence[str] = ("accuracy",),
              tie_break: str = "random") -> dict[str, dict[str, float]]:
        """Score the predicted label vectors against gold ``(n, t)`` vectors.

        Returns ``{task_name: {metric: value}, ..., "joint": {metric: value}}``. A task is
        scored on the rows where its gold label is known (not ``-1``); ``"joint"`` scores
        exact matches of the whole vector on rows where every task is known.
        """
        preds = self.predict(L, tie_break=tie_break)
        assert isinstance(preds, np.ndarray)
        return score_label_vectors(self.task_graph, Y, preds, metrics)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted model (``.npz`` arrays and a JSON header; no pickle)."""
        self._check_fitted()
        params = {
            "method": self.method, "tie": self.tie, "model_abstains": bool(self.model_abstains),
            "prob_floor": float(self.prob_floor), "max_iter": int(self.max_iter),
            "tol": float(self.tol), "l2": float(self.l2), "chunk_rows": int(self.chunk_rows),
            "device": str(self.device), "seed": int(self.seed),
            "task_graph": self.task_graph.to_dict(),
            "sources_per_task": None if self.sources_per_task_ is None
            else list(self.sources_per_task_),
        }
        save_arrays(path, "MultiTaskLabelModel", params, {
            "coverage": self.coverage_, "emitted": self.emitted_,
            "indicator_probs": self.indicator_probs_, "abstain_probs": self.abstain_probs_,
            "class_balance": self.class_balance_,
        })

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MultiTaskLabelModel:
        """Load a model written by :meth:`save`."""
        params, arrays = load_arrays(path, "MultiTaskLabelModel")
        graph = task_graph_from_dict(params.pop("task_graph"))
        spt = params.pop("sources_per_task")
        model = cls(graph, **params)
        coding = MultiTaskCoding(graph.cardinalities, arrays["coverage"])
        model._set_fitted(coding, arrays["emitted"], arrays["indicator_probs"],
                          arrays["abstain_probs"], arrays["class_balance"],
                          None if spt is None else tuple(spt))
        return model


def score_label_vectors(task_graph: TaskGraph, Y: Any, preds: np.ndarray,
                        metrics: Sequence[str] = ("accuracy",)) -> dict[str, dict[str, float]]:
    """Per-task and joint scores of predicted label vectors (see
    :meth:`MultiTaskLabelModel.score`)."""
    Y = np.asarray(Y)
    if Y.ndim == 1 and task_graph.n_tasks == 1:
        Y = Y.reshape(-1, 1)
    if Y.shape != preds.shape:
        raise LabelMatrixError(f"Y has shape {Y.shape}; expected {preds.shape}: one gold label "
                               f"per row and task {task_graph.task_names} (-1 = unknown)")
    if "joint" in task_graph.task_names:
        raise ConfigError("a task is named 'joint', which score() uses for the joint score; "
                          "rename the task")
    Y = as_integer_labels(Y, "Y", "Use -1 for unknown gold labels.").astype(np.int64)
    out: dict[str, dict[str, float]] = {}
    for s, name in enumerate(task_graph.task_names):
        k = task_graph.cardinalities[s]
        bad = Y[:, s][(Y[:, s] < -1) | (Y[:, s] >= k)]
        if bad.size:
            raise LabelMatrixError(f"Y has the value {int(bad[0])} for task {name!r}; "
                                   f"expected 0..{k - 1} or -1 (unknown)")
        out[name] = score_predictions(Y[:, s], preds[:, s], metrics, cardinality=k)
    full = (Y >= 0).all(axis=1)
    if full.any():
        gold = task_graph.to_joint(Y[full])  # raises, naming the task, on an infeasible row
        pj = task_graph._lookup(preds[full])  # -1 (wrong) for abstained or infeasible vectors
        out["joint"] = score_predictions(gold, pj, metrics, cardinality=task_graph.n_feasible)
        # per-task baselines can predict infeasible vectors: report how often
        out["joint"]["feasible"] = float(np.mean(task_graph._lookup(preds) >= 0))
    return out


__all__ = ["MultiTaskChunk", "MultiTaskCoding", "MultiTaskLabelModel", "MultiTaskVotes",
           "check_multitask_votes", "complete_votes", "score_label_vectors",
           "vote_agreement"]

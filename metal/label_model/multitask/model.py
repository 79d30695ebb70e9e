"""The multi-task label model: one latent label vector over a task graph's feasible set."""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from metal._io import load_arrays, save_arrays
from metal.errors import ConfigError, LabelMatrixError
from metal.label_model.base import BaseLabelModel, check_fit_params
from metal.label_model.label_model import (
    FitInfo,
    LabelModel,
    MetalWarning,
    resolve_class_balance,
)
from metal.label_model.multitask.coding import MultiTaskCoding
from metal.label_model.multitask.likelihood import (
    JointFit,
    SymbolTable,
    Units,
    degenerate_share,
    fit_joint_em,
    joint_log_posterior,
    n_parameters,
    source_codes,
    start_agreement,
)
from metal.label_model.multitask.moments import TIES, fit_joint_moments
from metal.label_model.multitask.votes import (
    MultiTaskVotes,
    _check_task_graph,
    check_multitask_votes,
    joint_balance_from_gold,
    score_label_vectors,
)
from metal.label_model.redundancy import redundancy_weights
from metal.matrix import DEFAULT_CHUNK_ROWS
from metal.metrics import probs_to_preds
from metal.tasks.graph import TaskGraph
from metal.tasks.serialize import task_graph_from_dict

ESTIMATORS = ("em", "moments")
TABLES = ("auto", "free", "tied", "exact", "projected")
#: EM fits with more of their votes than this from symbols that are not better than random
#: are rejected (label-free; the same threshold as the single-task rule)
MAX_DEGENERATE_SHARE = 0.1
STARTS = ("majority", "moments")
#: parameterisations ``tables="auto"`` chooses from
AUTO_TABLES = ("free", "tied", "exact", "projected")
#: EM fits from the majority-vote and the moment starts must give the same label vector on
#: at least this share of the rows; else the votes do not identify the model (label-free)
MIN_START_AGREEMENT = 0.95
#: passes of "posterior, then redundancy weights" after a moment fit
MAX_WEIGHT_PASSES = 5
#: the moment fit EM starts from (``start="moments"``, and the second start of the
#: identifiability check). Not the one-coin ``tie="exact"`` of the moment estimator: its
#: start gives a rare fine source's vote the full weight of naming one vector, which puts EM
#: in the same basin as the majority-vote start where a fine type absorbs its parent's mass
#: (tests/label_model/test_multitask_safeguard.py), so the check would no longer see it
START_TIE = "linear"


class MultiTaskLabelModel(BaseLabelModel):
    """Label model over a task graph's feasible label vectors, fitted without labels.

    Given the true label vector ``Y = y_j`` (a feasible vector), sources (or groups of
    dependent sources) vote independently; source ``i`` emits a vote vector over its coverage
    set, or abstains, with probability ``P(lambda_i | y_j)``. The posterior ``P(Y | lambda)``
    is computed in log space over the feasible set, so predictions are always feasible, and
    per-task marginals are sums of the joint.

    The rule (``estimator="em"``, ``tables="auto"``; label-free, once per fit). Each
    parameterisation (free, tied, exact, projected) is fitted by EM from hierarchical majority
    vote and from the moment fit; it is usable only if both runs give the same most probable label
    vector on at least 95% of the rows (else the votes do not identify the model: e.g. a fine
    type that one rare source names absorbs its parent's mass) and at most 10% of its votes
    come from symbols it does not treat as better than random (the states that agree most with
    the symbol do not hold its largest probability: the latent states then track which sources
    fire, not the labels). The usable one with the higher BIC (log likelihood of all votes,
    abstentions included, minus ``0.5 * n_parameters * log n``) wins; if none is usable, the
    moment estimator is used (``em_choice_`` records the scores). Feasible vectors that no
    observed vote tells apart share one table and split their prior mass equally. With fewer
    than three independent source groups voting, EM is not run (the tables of the start are
    kept).

    Estimators. ``"em"`` (default): maximum likelihood (MAP under small pseudo-count priors
    that vanish with n) by EM over the feasible set, started from hierarchical majority vote
    (``start="majority"``) or from the moment fit (``start="moments"``). Each source's symbol
    is its whole vote vector, *abstain included*, with a free table ``P(symbol | y_j)``: this
    expresses sources that fire only on their own branch (their silence is evidence about the
    coarse level), sources voting on several levels and unipolar sources. ``"moments"``: the
    MeTaL second-moment fit (``tie``, ``method``, ``l2``, ``model_abstains`` apply to it only),
    by default one-coin tables (``tie="exact"``).
    Its posterior weights each source's evidence by a label-free *redundancy weight*
    (:mod:`metal.label_model.redundancy`): ``1 / (1 + sum of the source's significantly
    positive residual correlations given Y)``, so ``r`` copies of a source count about once
    (``source_weights_``; the moment fit itself is unchanged).

    With a single task the model *is* :class:`~metal.label_model.LabelModel`: ``fit``
    delegates to ``LabelModel(cardinality=k, seed=seed, dependencies=dependencies,
    source_names=source_names, chunk_rows=chunk_rows, device=device)`` (kept as
    ``label_model_``), with its defaults unless ``method``, ``tie`` (``"exact"`` or
    ``"linear"`` = tied, else full), ``model_abstains``, ``prob_floor``, ``max_iter``,
    ``tol`` or ``l2`` were changed from theirs (``estimator="moments"`` adds
    ``mode="moments"``), so both give identical outputs.

    Parameters
    ----------
    task_graph
        A :class:`~metal.tasks.TaskGraph` or :class:`~metal.tasks.TaskHierarchy`.
    estimator
        ``"em"`` or ``"moments"``, see above.
    dependencies
        Optional undirected ``networkx.Graph`` joining dependent sources (nodes are source
        indices, or names from ``source_names``). With ``estimator="em"`` each connected
        component is modelled by the joint symbol of its members (exact for any dependence
        inside the component). Not supported by ``estimator="moments"``.
    source_names
        Optional names of the sources (for ``dependencies``).
    start
        EM start: ``"majority"`` (hierarchical majority vote) or ``"moments"``.
    tables
        EM parameterisation: ``"free"`` (a free table ``P(symbol | y_j)`` per source),
        ``"tied"`` (one parameter per symbol and *level of agreement* with ``y_j``: e.g. fine
        value right / coarse right but fine wrong / coarse wrong, so a unipolar fine source has
        three parameters however many feasible vectors there are), ``"exact"`` (the one-coin
        model: per symbol one parameter under the feasible vectors it names and one under all
        others), ``"projected"`` (a free table over the parts of the feasible set the source's
        own votes tell apart), or ``"auto"`` (default): all four are fitted and the label-free
        rule above picks one.
    pseudo_count
        Dirichlet pseudo-counts per (source, feasible vector), in rows: spread over the
        source's observed symbols by frequency and tilted towards symbols that agree with the
        vector. A fixed amount of evidence, so its pull vanishes as n grows.
    em_max_iter, em_tol
        EM budget and relative tolerance on the objective.
    method, tie, model_abstains, l2, max_iter, tol
        Moment-fit settings (``estimator="moments"``, or ``start="moments"``). ``tie``
        (moment estimator only; EM's moment start is always ``"linear"``, see
        ``START_TIE``): ``"exact"`` (default: the one-coin model, two parameters per code: one
        under the feasible vectors the vote names, one under all others; started, and held
        by ``l2``, at "the vote is right with probability 0.7" under the prior, so a vote is
        evidence in proportion to how much of the feasible set it rules out: a fine type's
        vote more than its coarse type's), ``"linear"`` (two parameters per code, logit linear
        in the share of the vote's tasks that agree with the truth: a fine vote's evidence
        against a sibling type is half that against another branch), ``"none"`` (free
        table), ``"coverage"`` or ``"agreement"``.
        ``model_abstains`` (moment estimator only): an abstention enters the posterior.
    prob_floor
        Lower bound on the moment estimator's probabilities used in prediction.
    chunk_rows
        Rows per block in the statistics and prediction passes.
    device
        Torch device for the moment fit.
    seed
        Seed of this instance (tie breaks, initialisation).

    Attributes
    ----------
    class_balance_ : ndarray of shape (K,)
        Estimated (or given) ``P(Y = y_j)`` over the feasible vectors.
    coverage_ : ndarray of shape (m, t)
        The tasks each source voted on during fit.
    joint_fit_ : JointFit
        (``"em"``) the units, their symbols and the fitted tables.
    label_model_ : LabelModel
        (one task) the single-task model everything delegates to.
    source_weights_ : ndarray of shape (m,)
        (moment estimator) each source's redundancy weight in the posterior.
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
        estimator: str = "em",
        dependencies: nx.Graph | None = None,
        source_names: Sequence[Hashable] | None = None,
        start: str = "majority",
        tables: str = "auto",
        pseudo_count: float = 1.0,
        em_max_iter: int = 300,
        em_tol: float = 1e-8,
        method: str = "moments",
        tie: str = "exact",
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
        self.estimator = estimator
        self.dependencies = dependencies
        self.source_names = source_names
        self.start = start
        self.tables = tables
        self.pseudo_count = pseudo_count
        self.em_max_iter = em_max_iter
        self.em_tol = em_tol
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
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"estimator={self.estimator!r} is not known; expected one of "
                              f"{ESTIMATORS}")
        if self.tables not in TABLES:
            raise ConfigError(f"tables={self.tables!r} is not known; expected one of {TABLES}")
        if self.start not in STARTS:
            raise ConfigError(f"start={self.start!r} is not known; expected one of {STARTS}")
        if self.tie not in TIES:
            raise ConfigError(f"tie={self.tie!r} is not known; expected one of {TIES}")
        if self.tie in ("coverage", "agreement") and self.method != "moments":
            raise ConfigError(f"tie={self.tie!r} is implemented for method='moments' only; use "
                              "method='moments' or tie='none'")
        if not np.isfinite(self.pseudo_count) or self.pseudo_count < 0:
            raise ConfigError(f"pseudo_count={self.pseudo_count!r}; expected a finite number "
                              ">= 0 (rows of prior evidence per source and feasible vector)")
        if isinstance(self.em_max_iter, bool) or not isinstance(self.em_max_iter,
                                                                (int, np.integer)) \
                or self.em_max_iter < 1 or not self.em_tol > 0:
            raise ConfigError(f"em_max_iter={self.em_max_iter!r} must be a positive int and "
                              f"em_tol={self.em_tol!r} > 0")
        if self.dependencies is not None and g.n_tasks > 1 and self.estimator == "moments":
            raise ConfigError("dependencies= needs estimator='em' for several tasks (the moment "
                              "estimator models independent sources only)")
        return g

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

    def _single_task_matrix(self, L: Any) -> Any:
        """The ``(n, m)`` label matrix of a one-task input (array or dict form)."""
        if isinstance(L, dict):
            return L[self.task_graph.task_names[0]]
        arr = L if sp.issparse(L) else np.asarray(L)
        return arr[:, :, 0] if getattr(arr, "ndim", 2) == 3 else arr

    def _source_groups(self, n_sources: int) -> list[list[int]]:
        """Connected components of the dependency graph (singletons without one)."""
        if self.dependencies is None:
            return [[i] for i in range(n_sources)]
        if not isinstance(self.dependencies, nx.Graph):
            raise ConfigError(f"dependencies is a {type(self.dependencies).__name__}; expected "
                              "an undirected networkx.Graph over source indices or names")
        names = list(self.source_names) if self.source_names is not None else None
        index = {n: i for i, n in enumerate(names)} if names is not None else None
        graph = nx.Graph()
        graph.add_nodes_from(range(n_sources))
        for u, v in self.dependencies.edges:
            ends = []
            for x in (u, v):
                i = index.get(x) if index is not None else x
                if isinstance(i, bool) or not isinstance(i, (int, np.integer)) \
                        or not 0 <= int(i) < n_sources:
                    raise ConfigError(f"dependency edge ({u!r}, {v!r}) names {x!r}, which is "
                                      f"not a source (0..{n_sources - 1}"
                                      + (" or a name in source_names)" if names else ")"))
                ends.append(int(i))
            graph.add_edge(*ends)
        return [sorted(c) for c in sorted(nx.connected_components(graph), key=min)]

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
            (``None``): from ``Y_dev`` if given; else estimated with ``estimator="em"`` (the
            likelihood, abstentions included, identifies it) and uniform with ``"moments"``.
        Y_dev
            ``(n_dev, t)`` gold label vectors of a small labeled set, used only for the prior.

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
        if g.n_tasks == 1:
            return self._fit_single_task(L, class_balance, Y_dev)
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

        # EM estimates the balance by default; the moment fallback keeps the uniform prior
        default_balance = class_balance is None and Y_dev is None
        if default_balance and self.estimator == "em":
            class_balance = "estimate"
        p, p_source = resolve_class_balance(
            class_balance, Y_dev, K, from_gold=lambda Y: joint_balance_from_gold(Y, g),
            check=check_prior)
        coding = MultiTaskCoding(g.cardinalities, coverage)
        silent = np.flatnonzero(~coverage.any(axis=1))
        if silent.size:
            warnings.warn(f"sources {silent.tolist()} never vote in L; they carry no information "
                          "and are ignored (remove them, or check that they were applied)",
                          MetalWarning, stacklevel=2)
        for stale in ("joint_fit_", "emitted_", "label_model_", "em_choice_",
                      "source_weights_"):
            if hasattr(self, stale):
                delattr(self, stale)
        self.coding_ = coding
        self.coverage_ = coverage
        self.n_sources_ = coding.n_sources
        self.sources_per_task_ = votes.sources_per_task
        if self.estimator == "moments":
            return self._fit_moments(votes, coding, p, p_source)
        return self._fit_em(votes, coding, p, p_source, default_balance)

    def _label_model_params(self) -> dict[str, Any]:
        """The moment settings a one-task model hands to its LabelModel, where they differ
        from LabelModel's own defaults (so default settings give LabelModel's defaults)."""
        ours = {"method": self.method, "model_abstains": self.model_abstains,
                "prob_floor": self.prob_floor, "max_iter": self.max_iter, "tol": self.tol,
                "l2": self.l2,
                "parameterization": "tied" if self.tie in ("linear", "exact") else "full"}
        defaults = {"method": "moments", "model_abstains": False, "prob_floor": 1e-3,
                    "max_iter": 500, "tol": 1e-10, "l2": 0.1, "parameterization": "tied"}
        out = {k: v for k, v in ours.items() if v != defaults[k]}
        if self.estimator == "moments":  # LabelModel's moment stage only
            out["mode"] = "moments"
        return out

    def _fit_single_task(self, L: Any, class_balance: Any, Y_dev: Any) -> MultiTaskLabelModel:
        g = self.task_graph
        model = LabelModel(cardinality=g.cardinalities[0], dependencies=self.dependencies,
                           source_names=self.source_names, chunk_rows=self.chunk_rows,
                           device=self.device, seed=self.seed, **self._label_model_params())
        if Y_dev is not None:
            Y_dev = np.asarray(Y_dev)
            Y_dev = Y_dev[:, 0] if Y_dev.ndim == 2 else Y_dev
        model.fit(self._single_task_matrix(L), class_balance=class_balance, Y_dev=Y_dev)
        self.label_model_ = model
        self.n_sources_ = model.n_sources_
        self.sources_per_task_ = None
        self.coverage_ = np.ones((model.n_sources_, 1), dtype=bool)
        self.class_balance_ = model.class_balance_
        self.fit_info_ = model.fit_info_
        return self

    def _fit_moments(self, votes: MultiTaskVotes, coding: MultiTaskCoding, p: np.ndarray | None,
                     p_source: str) -> MultiTaskLabelModel:
        stats = coding.statistics(votes, int(self.chunk_rows))
        res = fit_joint_moments(stats, coding, self.task_graph.feasible, p, tie=self.tie,
                                method=self.method, max_iter=int(self.max_iter),
                                tol=float(self.tol), l2=float(self.l2), device=self.device,
                                seed=int(self.seed))
        self.emitted_ = res.emitted
        self.indicator_probs_ = res.mu
        self.abstain_probs_ = res.abstain
        self.class_balance_ = res.class_balance
        self.statistics_ = stats
        self.source_weights_ = self._redundancy_weights(votes)
        self.fit_info_ = FitInfo(loss=res.loss, n_iter=res.n_iter, n_rows=stats.n_rows,
                                 n_indicators=int(res.emitted.size),
                                 permutation=res.permutation.tolist(),
                                 class_balance_source=p_source)
        return self

    def _redundancy_weights(self, votes: MultiTaskVotes) -> np.ndarray:
        """``(m,)`` weights of the sources' evidence in the moment posterior
        (:mod:`metal.label_model.redundancy`): the posterior and the weights are updated in
        turn (at most ``MAX_WEIGHT_PASSES`` passes, or until no weight moves by 1e-3)."""
        m = self.coding_.n_sources
        weights = np.ones(m)
        A, _ = self._moment_one_hot(votes)
        src = np.searchsorted(self.coding_.offsets, self.emitted_, side="right") - 1
        fires = (A @ sp.csr_matrix((np.ones(src.size), (np.arange(src.size), src)),
                                   shape=(src.size, m))).sign()
        fire_probs = 1.0 - self.abstain_probs_
        for _ in range(MAX_WEIGHT_PASSES):
            table, base = self._moment_log_tables(weights)
            scores = base[None, :] + A @ table
            post = np.exp(scores - logsumexp(scores, axis=1, keepdims=True))
            new = redundancy_weights(fires, post, fire_probs)
            done = np.abs(new - weights).max() < 1e-3
            weights = new
            if done:
                break
        return weights

    def _moment_one_hot(self, votes: MultiTaskVotes) -> tuple[sp.csr_matrix, int]:
        """``(n, d)`` one-hot of the emitted (source, code) indicators on each row, and the
        number of votes whose indicator was never emitted in fit (left out)."""
        d = self.emitted_.size
        blocks = []
        n_unseen = 0
        for ch in votes.iter_votes(int(self.chunk_rows)):
            ind, ok = self.coding_.encode(ch.sources, ch.votes)
            pos = np.minimum(np.searchsorted(self.emitted_, ind), d - 1)
            seen = ok & (self.emitted_[pos] == ind)
            n_unseen += int((~seen).sum())
            blocks.append(sp.csr_matrix((np.ones(int(seen.sum())), (ch.rows[seen], pos[seen])),
                                        shape=(ch.stop - ch.start, d)))
        return sp.vstack(blocks, format="csr"), n_unseen

    def _start_posterior(self, L_votes: MultiTaskVotes, coding: MultiTaskCoding,
                         start: str) -> np.ndarray:
        """``(n, K)`` starting posterior: smoothed hierarchical majority vote, or the moment
        fit's posterior."""
        g = self.task_graph
        K = g.n_feasible
        if start == "moments":
            stats = coding.statistics(L_votes, int(self.chunk_rows))
            # always the agreement-linear fit (see START_TIE), whatever ``tie`` says
            res = fit_joint_moments(stats, coding, g.feasible, None, tie=START_TIE,
                                    method=self.method, max_iter=int(self.max_iter),
                                    tol=float(self.tol), l2=float(self.l2), device=self.device,
                                    seed=int(self.seed))
            table = np.log(np.clip(res.mu, max(float(self.prob_floor), 1e-12), None))
            post = np.empty((L_votes.n_rows, K))
            for ch in L_votes.iter_votes(int(self.chunk_rows)):
                ind, ok = coding.encode(ch.sources, ch.votes)
                pos = np.searchsorted(res.emitted, ind)
                A = sp.csr_matrix((np.ones(int(ok.sum())), (ch.rows[ok], pos[ok])),
                                  shape=(ch.stop - ch.start, res.emitted.size))
                s = np.log(res.class_balance)[None, :] + A @ table
                post[ch.start:ch.stop] = np.exp(s - logsumexp(s, axis=1, keepdims=True))
            return post
        from metal.label_model.multitask.majority import HierarchicalMajorityVoter

        mv = HierarchicalMajorityVoter(g, seed=int(self.seed), chunk_rows=int(self.chunk_rows))
        idx = g.to_joint(mv.predict(L_votes))
        post = np.full((idx.size, K), 0.1 / K)
        post[np.arange(idx.size), idx] += 0.9
        return post

    def _fit_em(self, votes: MultiTaskVotes, coding: MultiTaskCoding, p: np.ndarray | None,
                p_source: str, default_balance: bool) -> MultiTaskLabelModel:
        """EM over the feasible set; ``default_balance``: no prior was given (the moment
        fallback for single-valued sources then keeps LabelModel's uniform prior)."""
        g = self.task_graph
        codes, _ = source_codes(votes, coding, int(self.chunk_rows))
        voting = np.asarray(coding.coverage.any(axis=1), dtype=bool)
        groups = [grp for grp in self._source_groups(coding.n_sources)
                  if bool(voting[np.asarray(grp)].any())]
        units = Units.build(groups, coding.n_values)
        if not _some_source_emits_several_values(codes, coding.n_values):
            # the single-task rule (LabelModel, mode="auto"): when every source emits one
            # vote vector only, the likelihood has no disagreement between a source's values
            # to learn from (each table is "fires or not" per state), and on such sources
            # (sparse, correlated labeling functions) EM tracks which sources fire rather than
            # the labels; the moment estimator is kept
            choice: dict[str, Any] = {"chosen": "moments",
                                      "reason": "every source emits a single vote vector"}
            self.em_choice_ = choice
            if default_balance:  # LabelModel's default prior for the moment fit
                p, p_source = np.full(g.n_feasible, 1.0 / g.n_feasible), "uniform"
            return self._fit_moments(votes, coding, p, p_source)
        keys = units.keys(codes)
        del codes
        max_iter = int(self.em_max_iter)
        if len(groups) < 3:
            # two independent views cannot separate accuracy from class balance: keep the
            # tables of the start (one M-step), i.e. a weighted majority vote
            warnings.warn(f"only {len(groups)} independent source group(s) vote; the joint "
                          "model is not identifiable from unlabeled data, so EM is not run and "
                          "the tables are those of the majority-vote start",
                          MetalWarning, stacklevel=3)
            max_iter = 1
        # EM runs from the chosen start and, as an identifiability check, from the other one
        start_names = [str(self.start)]
        if max_iter > 1:
            start_names.append("moments" if self.start == "majority" else "majority")
        starts = {name: self._start_posterior(votes, coding, name) for name in start_names}
        log_prior = None if p is None else np.log(p)
        candidates = list(AUTO_TABLES) if self.tables == "auto" else [str(self.tables)]
        fits, scores, shares, agreements = {}, {}, {}, {}
        for name in candidates:
            runs = [fit_joint_em(keys, units, coding, g.feasible, start, log_prior=log_prior,
                                 pseudo_count=float(self.pseudo_count), tilt=2.0,
                                 max_iter=max_iter, tol=float(self.em_tol), tables=name)
                    for start in starts.values()]
            fit = max(runs, key=lambda f: f.log_likelihood)
            assert fit.vote_counts is not None
            fits[name] = fit
            agreements[name] = start_agreement(runs)
            # BIC: the likelihood of the votes (abstentions included) against the parameters
            scores[name] = (fit.log_likelihood - 0.5 * n_parameters(fit, name)
                            * np.log(max(fit.n_rows, 2.0)))
            shares[name] = degenerate_share(fit, fit.vote_counts)
        ranked = sorted(candidates, key=lambda c: -scores[c])
        usable = [c for c in ranked if shares[c] <= MAX_DEGENERATE_SHARE
                  and agreements[c] >= MIN_START_AGREEMENT]
        if max_iter == 1:
            usable = ranked[:1]
        chosen = usable[0] if usable else "moments"
        self.em_choice_ = {"chosen": chosen, "bic": scores, "degenerate_share": shares,
                           "start_agreement": agreements}
        if chosen == "moments":
            warnings.warn("EM over the feasible set is not usable here: from the majority-vote "
                          "and the moment starts it reaches different labels (agreement "
                          f"{agreements}, needed {MIN_START_AGREEMENT:.0%}: the votes do not "
                          "identify the model), or it leaves 'better than random' for more than "
                          f"{MAX_DEGENERATE_SHARE:.0%} of the votes (shares {shares}); the "
                          "moment estimator is used instead", MetalWarning, stacklevel=3)
            if default_balance:  # LabelModel's default prior for the moment fit
                p, p_source = np.full(g.n_feasible, 1.0 / g.n_feasible), "uniform"
            self._fit_moments(votes, coding, p, p_source)
            return self
        fit = fits[chosen]
        self.joint_fit_ = fit
        self.class_balance_ = np.exp(fit.log_prior)
        res = fit.result
        assert res is not None
        self.fit_info_ = FitInfo(loss=-float(res.objective[-1]) / votes.n_rows,
                                 n_iter=res.n_iter, n_rows=votes.n_rows,
                                 n_indicators=int(fit.symbols.vocab.size),
                                 permutation=list(range(g.n_feasible)),
                                 class_balance_source=p_source)
        return self

    # ------------------------------------------------------------------ parameters
    def get_conditional_probs(self) -> list[np.ndarray]:
        """Per source ``i``, a ``(C_i + 1, K)`` array ``[code, j] = P(lambda_i = code | y_j)``.

        Codes are the mixed-radix codes of :class:`MultiTaskCoding` (decode them with
        :meth:`source_codes`); the last row is abstain. Codes never seen in fit have 0. For a
        group of dependent sources these are the members' marginals.
        """
        self._check_fitted()
        if hasattr(self, "label_model_"):
            return list(self.label_model_.get_conditional_probs())
        coding = self.coding_
        K = self.class_balance_.shape[0]
        out = [np.zeros((int(coding.n_values[i]) + 1, K)) for i in range(coding.n_sources)]
        for i in range(coding.n_sources):
            out[i][-1] = 1.0  # a source that never voted always abstains
        if hasattr(self, "joint_fit_"):
            fit = self.joint_fit_
            probs = np.exp(fit.log_tables)
            unit_of = fit.symbols.symbol_unit
            for u, (idx, w) in enumerate(zip(fit.units.members, fit.units.radix, strict=True)):
                sel = np.flatnonzero(unit_of == u)
                for j, i in enumerate(idx):
                    code = (fit.symbols.vocab[sel] // w[j]) % (coding.n_values[i] + 1)
                    out[i][:] = 0.0
                    np.add.at(out[i], code, probs[sel])
                    out[i][-1] += np.exp(fit.log_abstain[u])
            return out
        src = np.searchsorted(coding.offsets, self.emitted_, side="right") - 1
        for i in range(coding.n_sources):  # loop over sources, not rows
            sel = src == i
            out[i][self.emitted_[sel] - coding.offsets[i]] = self.indicator_probs_[sel]
            out[i][-1] = self.abstain_probs_[i]
        return out

    def source_codes(self, source: int) -> np.ndarray:
        """``(C_i, t)`` the vote vector of each code of a source (``-1`` = no vote there)."""
        self._check_fitted()
        if hasattr(self, "label_model_"):
            return np.arange(int(self.task_graph.cardinalities[0])).reshape(-1, 1)
        coding = self.coding_
        if not 0 <= int(source) < coding.n_sources:
            raise ConfigError(f"source {source} is out of range; the model has "
                              f"{coding.n_sources} sources")
        ind = coding.offsets[source] + np.arange(coding.n_values[source])
        return coding.decode(ind)[1]

    def _moment_log_tables(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log tables and base of the moment posterior, each source's evidence scaled by its
        redundancy weight in ``weights`` (``(m,)``; 1 = independent)."""
        floor = max(float(self.prob_floor), 1e-12)
        src = np.searchsorted(self.coding_.offsets, self.emitted_, side="right") - 1
        mu = np.clip(self.indicator_probs_, floor, None)
        abst = np.clip(self.abstain_probs_, floor, None)
        w = weights[src][:, None]  # per emitted indicator
        if self.model_abstains:
            table = (np.log(mu) - np.log(abst)[src]) * w
            base = np.log(self.class_balance_) + (np.log(abst) * weights[:, None]).sum(axis=0)
        else:  # votes enter as P(v | y), abstentions are ignored (as in LabelModel)
            table = np.log(mu) * w
            base = np.log(self.class_balance_)
        return table, base

    # ------------------------------------------------------------------ outputs
    def predict_log_proba_joint(self, L: Any) -> np.ndarray:
        """``(n, K)`` log posterior over the feasible vectors (``task_graph.feasible``)."""
        self._check_fitted()
        if hasattr(self, "label_model_"):
            return self.label_model_.predict_log_proba(self._single_task_matrix(L))
        votes = self._votes(L)
        if hasattr(self, "joint_fit_"):
            codes, n_out = source_codes(votes, self.coding_, int(self.chunk_rows))
            if n_out:
                warnings.warn(f"{n_out} votes fall on tasks their source never voted on in "
                              "fit; they were treated as abstentions", MetalWarning,
                              stacklevel=2)
            return joint_log_posterior(self.joint_fit_, self.joint_fit_.units.keys(codes))
        table, base = self._moment_log_tables(self.source_weights_)
        A, n_unseen = self._moment_one_hot(votes)
        out = base[None, :] + A @ table
        out -= logsumexp(out, axis=1, keepdims=True)
        if n_unseen:
            warnings.warn(f"{n_unseen} vote vectors were never emitted by their source during "
                          "fit (a new value, or a task outside its coverage); they were treated "
                          "as abstentions. Refit on data that includes them.",
                          MetalWarning, stacklevel=2)
        return out

    def predict_proba_joint(self, L: Any) -> np.ndarray:
        """``(n, K)`` posterior ``P(Y = y_j | lambda)`` over ``task_graph.feasible``."""
        if hasattr(self, "label_model_"):  # one task: exactly the single-task posterior
            return self.label_model_.predict_proba(self._single_task_matrix(L))
        out = self.predict_log_proba_joint(L)
        return np.exp(out, out=out)

    def marginals(self, joint: np.ndarray) -> list[np.ndarray]:
        """Per-task marginals ``(n, k_s)`` of a joint ``(n, K)`` distribution."""
        g = self.task_graph
        return [joint @ g.marginal_indicator(s) for s in range(g.n_tasks)]

    def predict_proba(self, L: Any) -> list[np.ndarray]:  # type: ignore[override]
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

    def score(self, L: Any, Y: Any, metrics: Sequence[str] = ("accuracy",),  # type: ignore[override]
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
        """Save the fitted model (``.npz`` arrays and a JSON header; no pickle).

        A one-task model is its :class:`LabelModel`: save ``model.label_model_`` instead.
        """
        self._check_fitted()
        if hasattr(self, "label_model_"):
            raise ConfigError("a one-task MultiTaskLabelModel is a LabelModel; save "
                              "model.label_model_ (LabelModel.save) instead")
        params = {
            "estimator": self.estimator, "start": self.start, "tables": self.tables,
            "pseudo_count": float(self.pseudo_count), "em_max_iter": int(self.em_max_iter),
            "em_tol": float(self.em_tol),
            "method": self.method, "tie": self.tie, "model_abstains": bool(self.model_abstains),
            "prob_floor": float(self.prob_floor), "max_iter": int(self.max_iter),
            "tol": float(self.tol), "l2": float(self.l2), "chunk_rows": int(self.chunk_rows),
            "device": str(self.device), "seed": int(self.seed),
            "source_names": (None if self.source_names is None
                             else [str(s) for s in self.source_names]),
            "task_graph": self.task_graph.to_dict(),
            "sources_per_task": None if self.sources_per_task_ is None
            else list(self.sources_per_task_),
        }
        arrays: dict[str, np.ndarray] = {"coverage": self.coverage_,
                                         "class_balance": self.class_balance_}
        if hasattr(self, "joint_fit_"):
            fit = self.joint_fit_
            params["units"] = [m.tolist() for m in fit.units.members]
            arrays.update(vocab=fit.symbols.vocab, vocab_offsets=fit.symbols.offsets,
                          abstain_keys=fit.symbols.abstain_keys, log_tables=fit.log_tables,
                          log_abstain=fit.log_abstain, log_prior=fit.log_prior)
        else:
            arrays.update(emitted=self.emitted_, indicator_probs=self.indicator_probs_,
                          abstain_probs=self.abstain_probs_,
                          source_weights=self.source_weights_)
        save_arrays(path, "MultiTaskLabelModel", params, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MultiTaskLabelModel:
        """Load a model written by :meth:`save`."""
        params, arrays = load_arrays(path, "MultiTaskLabelModel")
        graph = task_graph_from_dict(params.pop("task_graph"))
        spt = params.pop("sources_per_task")
        units = params.pop("units", None)
        model = cls(graph, **params)
        coding = MultiTaskCoding(graph.cardinalities, arrays["coverage"])
        model.coding_ = coding
        model.coverage_ = coding.coverage
        model.n_sources_ = coding.n_sources
        model.sources_per_task_ = None if spt is None else tuple(spt)
        model.class_balance_ = arrays["class_balance"]
        if units is not None:
            model.joint_fit_ = JointFit(Units.build(units, coding.n_values),
                                        SymbolTable(arrays["vocab"], arrays["vocab_offsets"],
                                                    arrays["abstain_keys"]),
                                        arrays["log_tables"], arrays["log_abstain"],
                                        arrays["log_prior"])
        else:
            model.emitted_ = arrays["emitted"]
            model.indicator_probs_ = arrays["indicator_probs"]
            model.abstain_probs_ = arrays["abstain_probs"]
            # files written before the redundancy weights: every source counts fully
            model.source_weights_ = arrays.get("source_weights",
                                               np.ones(coding.n_sources))
        return model


__all__ = ["ESTIMATORS", "MultiTaskLabelModel"]


def _some_source_emits_several_values(codes: np.ndarray, n_values: np.ndarray) -> bool:
    """Whether any source emits two or more distinct vote vectors (codes ``< n_values``)."""
    m = codes.shape[1]
    offsets = np.concatenate([[0], np.cumsum(n_values + 1)[:-1]])
    counts = np.bincount((codes + offsets[None, :]).ravel(), minlength=int((n_values + 1).sum()))
    emitted = np.add.reduceat(counts > 0, offsets) - (counts[offsets + n_values] > 0)
    return bool((emitted[:m] > 1).any())

"""The single-task label model (MeTaL's matrix-completion estimator)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from metal._io import load_arrays, save_arrays
from metal._validate import (
    check_cooccurrence_size,
    check_label_model_size,
    check_moment_size,
    check_names,
    warn_unvoted_classes,
)
from metal.errors import ConfigError, LabelMatrixError, MetalWarning, NotIdentifiableError
from metal.label_model.base import (
    BaseLabelModel,
    balance_from_gold,
    check_cardinality,
    check_class_balance,
    check_fit_params,
)
from metal.label_model.coding import SourceCoding
from metal.label_model.dense import DenseScorer, dense_applicable
from metal.label_model.dependencies import refine_by_components
from metal.label_model.em import compress_rows, few_duplicates, one_hot_votes
from metal.label_model.estimation import MomentProblem, fit_moments
from metal.label_model.identifiability import check_coding
from metal.label_model.likelihood import (
    CANDIDATES,
    MAX_DEGENERATE_VOTES,
    MODES,
    RULE_MAX_ROWS,
    DenseVoteData,
    ModeChoice,
    Tables,
    VoteData,
    choose_mode,
    degenerate_share,
    em_tables,
    keep_class_names,
    multi_valued_share,
    one_coin_em,
    prior_center,
    run_em,
    thin_rows,
)
from metal.label_model.posterior import log_posterior, log_tables
from metal.label_model.statistics import SourceStatistics, third_moments
from metal.matrix import DEFAULT_CHUNK_ROWS, LabelInput, LabelMatrix, check_label_matrix

# third moments (d^3 entries) are gathered only up to this many emitted indicators
MAX_THIRD_MOMENT_INDICATORS = 200
# above this many indicators (sources x classes) the moment stage (dense d x d matrices, an
# L-BFGS fit whose cost grows like d^2 per step) is skipped when EM can take over: EM then
# starts from the majority vote
MAX_MOMENT_INDICATORS = 500
# the default ridge of the moment fit is worth this many rows: l2 = L2_PRIOR_ROWS / n_rows, so
# it vanishes as the data grows and the estimate stays consistent
L2_PRIOR_ROWS = 1000.0
# L-BFGS iterations of the moment fit when it only starts EM (sources emit several values)
START_MAX_ITER = 50
# the final EM on all rows, warm-started from the rule's fit on a thinning of them, stops once
# its estimated distance to the fixed point is at most WARM_PARAM_TOL / sqrt(n_rows) in every
# probability: a tenth of the largest standard error of a proportion estimated from n rows
# (0.5 / sqrt(n)), and each probability is estimated from at most n rows
WARM_PARAM_TOL = 0.05


@dataclass
class FitInfo:
    """Diagnostics of one fit."""

    loss: float
    n_iter: int
    n_rows: int
    n_indicators: int
    permutation: list[int]
    class_balance_source: str  # "given", "Y_dev", "uniform" or "estimated"
    mode: str = "moments"  # kept: "moments", "em_votes", "em_abstain" or "em_one_coin"
    mode_choice: ModeChoice | None = None  # what the label-free rule compared (mode="auto")
    em_iter: int = 0


class LabelModel(BaseLabelModel):
    """Recover each source's class-conditional probabilities from unlabeled votes.

    The model: given the true class ``Y``, sources (or groups of dependent sources) vote
    independently, source ``i`` emitting value ``v`` (a class, or abstain) with probability
    ``P(lambda_i = v | Y = y)``. Fitting has two stages, after one chunked pass over ``L``:

    1. *moments*: the probabilities are estimated from the second moments of the votes
       (MeTaL, Ratner et al. AAAI 2019), which needs no labels and no starting point;
    2. *likelihood*: started from the moment fit's posterior, EM maximises the likelihood of the
       votes over full per-source tables, either of the votes alone (Dawid-Skene) or of votes
       and abstentions (:mod:`metal.label_model.likelihood`).

    With ``mode="auto"`` a label-free rule decides per fit which one to keep: the EM refinements are
    scored on 20% of the rows held out from their fit, a refinement that treats more than 10% of
    the votes as no better than random counts as degenerate, and the best non-degenerate
    refinement is kept unless the moment fit's held-out log-likelihood is higher by more than
    2 standard errors of the paired per-row difference; otherwise the moment fit is kept (see
    ``fit_info_.mode_choice``). The votes-only EM's prior is centred on the moment fit.
    When every source is unipolar, the abstain-modelled EM is compared with the moment fit by
    the held-out likelihood of the full vote pattern (same rule), after a check that its
    states name the classes (it keeps every source better than random, or it overrules at most
    1% of the unanimous rows beyond what the moment fit overrules). With more than 50,000 rows
    the rule looks at a seeded thinning to about that many, and the kept EM is refitted on all
    rows from its thinned fit. With more than ``MAX_MOMENT_INDICATORS`` (500) emitted source
    values the moment stage is skipped and EM starts from the majority vote. The posterior
    ``P(Y | lambda)`` is computed in log space.

    Parameters
    ----------
    cardinality
        Number of classes ``k``; votes are ``0..k-1``, ``-1`` abstains.
    mode
        ``"auto"`` (the rule above), ``"moments"`` (moment fit only) or ``"em"`` (always
        refine; the EM variant is picked by the same held-out rule, or by ``model_abstains``).
        With ``dependencies``, ``"auto"`` keeps the moment fit (EM does not model cliques) and
        ``"em"`` is refused.
    method
        Moment stage: ``"moments"``, masked least squares on the observed moments;
        ``"inverse"``, the paper's Algorithm 1 (complete the inverse second-moment matrix, then
        factor it).
    parameterization
        Moment stage: ``"full"``, a free ``P(lambda_i = v | y)`` for every value and class;
        ``"tied"``, two per emitted value, ``P(v | y = v)`` and one shared ``P(v | y != v)``
        (the paper's simplified class-conditional model), far better conditioned for sparse
        unipolar sources. EM always refines full tables.
    model_abstains
        What counts as evidence. ``None`` (default): decided per fit, the moment fit predicts
        from votes only, ``"em_votes"`` from votes given that the source voted,
        ``"em_abstain"`` from votes and abstentions. ``True``: abstentions are evidence (a
        unipolar source's silence counts; EM models them). ``False``: only votes are (EM is
        Dawid-Skene's).
    dependencies
        Optional undirected ``networkx.Graph`` whose edges join dependent sources (nodes are
        source indices, or names from ``source_names``). The graph is triangulated; each
        maximal clique gets joint-value indicators, estimation uses only moments of sources in
        different connected components, and prediction factorises over the junction tree
        (see :mod:`metal.label_model.coding`).
    source_names
        Optional names of the sources, for ``dependencies`` and reports.
    prob_floor
        Lower bound on every estimated probability used in prediction, so that one source
        cannot veto a class outright.
    max_iter, tol
        Iteration budget and tolerance of the moment optimiser (EM uses its own: at most
        ``max_iter`` iterations, relative tolerance 1e-7 on the objective; the final EM on
        more than 50,000 rows also stops once its estimated distance to the fixed point is
        below ``0.05 / sqrt(n_rows)`` in every probability).
    l2
        Ridge of the moment fit towards its "better than random" starting point. ``None``
        (default): ``1000 / n_rows``, a prior worth 1000 rows (chosen on the WRENCH valid
        splits), so it vanishes as the data grows
        and the estimate converges to the truth on data drawn from the model. A float: that
        fixed strength.
    chunk_rows
        Rows per block in the statistics and prediction passes (bounds memory).
    device
        Torch device for the moment fit, e.g. ``"cpu"`` or ``"cuda"``.
    seed
        Seed of this instance (tie breaks, initialisation, the held-out split); no global RNG
        is touched.
    progress
        Show a progress bar over the statistics pass.
    check_identifiability
        Run :func:`metal.check_identifiability` in ``fit`` (on the structure and the emitted
        values) and raise :class:`~metal.errors.NotIdentifiableError` when the accuracies
        cannot be recovered; data problems (no overlap, near-singular moments) only warn.
    balance_moments
        With ``fit(L, class_balance="estimate")``: estimate the class balance from second
        moments (2) or from second and third moments (3; one more pass over ``L``, at most
        200 emitted values). Second moments leave the balance weakly identified (for two
        classes, one exactly flat direction); third moments identify it when the sources are
        conditionally independent, but on the real WRENCH sets, whose sources are correlated,
        they made it worse (``benchmarks/label_model.py``), hence the default 2. ``3`` is refused
        where it would do nothing: with a given class balance (the default uniform one
        included), with dependencies, in :meth:`fit_statistics` and on streams.

    Attributes
    ----------
    class_balance_ : ndarray of shape (k,)
    conditional_probs_ : ndarray of shape (m, k+1, k)
        ``[i, v, y] = P(lambda_i = v | Y = y)``; index ``-1`` (i.e. ``k``) is abstain.
    evidence_ : str
        What the posterior uses: ``"votes"`` (``P(v | y)`` of each vote), ``"votes_given_voted"``
        (``P(v | y, voted)``) or ``"votes_and_abstains"``.
    statistics_ : SourceStatistics or None
        None when the moment stage was skipped.
    fit_info_ : FitInfo

    Examples
    --------
    >>> from metal import LabelModel
    >>> from metal.data import make_synthetic
    >>> data = make_synthetic(n=2000, m=8, cardinality=3, seed=1)
    >>> model = LabelModel(cardinality=3, seed=0).fit(data.L)
    >>> model.predict_proba(data.L).shape
    (2000, 3)
    >>> model.fit_info_.mode in ("moments", "em_votes", "em_abstain", "em_one_coin")
    True
    """

    # fitted state (set by fit)
    class_balance_: np.ndarray
    fit_info_: FitInfo
    statistics_: SourceStatistics | None
    _kept_moments_start: np.ndarray | None

    def __init__(
        self,
        cardinality: int = 2,
        *,
        mode: str = "auto",
        method: str = "moments",
        parameterization: str = "tied",
        model_abstains: bool | None = None,
        dependencies: nx.Graph | None = None,
        source_names: Sequence[Hashable] | None = None,
        prob_floor: float = 1e-3,
        max_iter: int = 500,
        tol: float = 1e-10,
        l2: float | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        device: str = "cpu",
        seed: int = 0,
        progress: bool = False,
        check_identifiability: bool = True,
        balance_moments: int = 2,
    ) -> None:
        self.cardinality = cardinality
        self.mode = mode
        self.method = method
        self.parameterization = parameterization
        self.model_abstains = model_abstains
        self.dependencies = dependencies
        self.source_names = source_names
        self.prob_floor = prob_floor
        self.max_iter = max_iter
        self.tol = tol
        self.l2 = l2
        self.chunk_rows = chunk_rows
        self.device = device
        self.seed = seed
        self.progress = progress
        self.check_identifiability = check_identifiability
        self.balance_moments = balance_moments

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> int:
        k = check_cardinality(self.cardinality)
        check_fit_params(self)
        if self.parameterization not in ("full", "tied"):
            raise ConfigError(f"parameterization={self.parameterization!r} is not known; "
                              "expected 'full' or 'tied'")
        if self.balance_moments not in (2, 3):
            raise ConfigError(f"balance_moments={self.balance_moments!r}; expected 2 or 3")
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r} is not known; expected one of {MODES}")
        if self.model_abstains not in (None, True, False):
            raise ConfigError(f"model_abstains={self.model_abstains!r}; expected None (decided "
                              "per fit), True or False")
        if self.mode == "em" and self.dependencies is not None:
            raise ConfigError("mode='em' does not model dependent sources (the EM tables are "
                              "per source); use mode='moments' with dependencies")
        return k

    def _candidates(self) -> tuple[str, ...]:
        """EM refinements the fit may keep (empty: moment fit only)."""
        if self.mode == "moments" or self.dependencies is not None:
            return ()
        if self.model_abstains is None:
            return CANDIDATES
        return ("em_abstain",) if self.model_abstains else ("em_votes",)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        L: LabelInput,
        class_balance: Any = None,
        Y_dev: Any = None,
    ) -> LabelModel:
        """Estimate the sources' conditional probabilities from the label matrix ``L``.

        Parameters
        ----------
        L
            ``(n, m)`` label matrix, dense or sparse (-1 abstain, classes ``0..k-1``).
        class_balance
            ``(k,)`` prior ``P(Y)`` if known; ``"estimate"`` to estimate it jointly from ``L``
            (no labels); ``"uniform"``. Default (``None``): from ``Y_dev`` if given, else
            uniform, which is the most robust choice on the WRENCH benchmarks (the unlabeled
            estimate is only weakly identified when sources are sparse and correlated; see
            benchmarks/RESULTS.md).
        Y_dev
            Gold labels of a small labeled set, used only to estimate the class balance.

        Returns
        -------
        LabelModel
            ``self``, fitted.

        Raises
        ------
        LabelMatrixError
            ``L`` is malformed, or contains no vote at all.
        ConfigError
            Bad hyperparameters, or both ``class_balance`` and ``Y_dev`` given.
        """
        k = self._check_params()
        lm = check_label_matrix(L, cardinality=k)
        check_label_model_size(lm.n_sources, k)
        if self.source_names is not None:
            check_names("source_names", self.source_names, lm.n_sources)
        if not lm.has_votes:
            raise LabelMatrixError("L contains no vote at all (every entry is -1); expected at "
                                   "least some votes. Check that your sources were applied.")
        p, p_source = resolve_class_balance(class_balance, Y_dev, k)
        if int(self.balance_moments) == 3 and p is not None:
            # third moments only change how the class balance is estimated: refuse rather
            # than silently ignore the option
            raise ConfigError(f"balance_moments=3 has no effect here: the class balance is "
                              f"given ({p_source}); third moments only serve "
                              "fit(L, class_balance='estimate'). Drop balance_moments=3 or "
                              "fit with class_balance='estimate'")
        # the moment stage keeps a uniform balance by default; the EM stage then estimates it.
        # Y_dev's labels enter EM as pseudo-counts of the classes (evidence added to the
        # unlabeled rows', not a replacement for it)
        fixed_balance = p is not None and class_balance is not None
        self._prior_pseudo: float | np.ndarray = 1.0
        if Y_dev is not None:
            self._prior_pseudo = 1.0 + np.bincount(
                np.asarray(Y_dev)[np.asarray(Y_dev) >= 0], minlength=k).astype(np.float64)
        candidates = self._candidates()
        data = None
        if candidates:
            data = _vote_data(lm, k, int(self.seed))
            # (with fewer indicators than the limit, no count is needed)
            if (lm.n_sources * k > MAX_MOMENT_INDICATORS
                    and int((data[0].vote_counts() > 0).sum()) > MAX_MOMENT_INDICATORS):
                # too many source values for the dense moment stage: EM from the majority vote
                return self._refine(lm, k, data, p, p_source, fixed_balance, candidates,
                                    moments=False)
        coding = SourceCoding.from_dependencies(lm.n_sources, k, self.dependencies,
                                                self.source_names)
        check_cooccurrence_size(lm, coding.n_indicators)
        stats = coding.statistics(lm, int(self.chunk_rows), progress=self.progress)
        if data is not None and isinstance(data[0], DenseVoteData):
            data[0].set_vote_counts(stats.counts)  # counted by this pass: no pass of its own
        check_moment_size(int(stats.emitted().size))
        _, _, voted = coding.member_values(coding.singleton_indicators[stats.counts[
            coding.singleton_indicators] > 0])
        warn_unvoted_classes(np.bincount(voted, minlength=k) > 0, stacklevel=2)
        if self.check_identifiability:
            self._check_identifiable(coding, stats)
        third = None
        emitted = stats.emitted()
        if self.balance_moments == 3 and not coding.all_singletons:
            raise ConfigError("balance_moments=3 does not support dependencies (third moments "
                              "are gathered for independent sources only); use "
                              "balance_moments=2, or give the class balance")
        if self.balance_moments == 3 and p is None:
            if emitted.size > MAX_THIRD_MOMENT_INDICATORS:
                raise ConfigError(
                    f"balance_moments=3 needs a ({emitted.size},)^3 third-moment tensor; the limit "
                    f"is {MAX_THIRD_MOMENT_INDICATORS} emitted values. Use balance_moments=2 or "
                    "give the class balance (class_balance= or Y_dev=)")
            # a second pass, only when asked for (see MomentProblem.third)
            blocks = ((c.stop - c.start, *coding.encode(c))
                      for c in lm.iter_votes(int(self.chunk_rows)))
            third = third_moments(blocks, emitted)
        # when EM will refine it, the moment fit is only a starting point: a short budget
        starts_em = data is not None and multi_valued_share(data[0]) > 0
        self._fit_statistics(stats, coding, p, p_source, third,
                             max_iter=min(int(self.max_iter), START_MAX_ITER) if starts_em
                             else None)
        if data is not None:
            self._kept_moments_start = None
            self._refine(lm, k, data, p, p_source, fixed_balance, candidates, moments=True)
            start = self._kept_moments_start
            del self._kept_moments_start
            if start is not None:
                self._moment_balance(data[0], start, k, stats, coding, p_source, third)
        return self

    def _moment_balance(self, data: VoteData, start: np.ndarray, k: int,
                        stats: SourceStatistics, coding: SourceCoding, p_source: str,
                        third: np.ndarray | None) -> None:
        """``class_balance="estimate"`` with the moment fit kept: refit its tables under the
        likelihood's balance when that is trusted, else (with a warning) under the uniform
        prior."""
        choice = self.fit_info_.mode_choice
        balance, share = self._trusted_balance(data, start, k)
        if balance is None:
            warnings.warn(
                f"class_balance='estimate': the likelihood fit of the balance treats "
                f"{share:.0%} of the votes as no better than random, so its balance is not "
                "trusted; using the uniform prior instead (pass class_balance= or Y_dev= if "
                "you know it)", MetalWarning, stacklevel=3)
            self._fit_statistics(stats, coding, np.full(k, 1.0 / k),
                                 "uniform (estimate not trusted)", third)
            self.fit_info_.mode_choice = choice
            return
        self._fit_statistics(stats, coding, balance, p_source, third)
        self.fit_info_.mode_choice = choice

    # ------------------------------------------------------------------ likelihood stage
    def _trusted_balance(self, data: VoteData, start: np.ndarray, k: int
                         ) -> tuple[np.ndarray | None, float]:
        """The class balance of the maximum-likelihood (abstain-modelled) EM fit, or None
        when that fit is degenerate (and the share of votes it treats as no better than
        random).

        Second moments leave the balance weakly identified (a flat direction for two
        classes); the likelihood identifies it when the model holds, and the degenerate
        check refuses it where the model does not (on the real labeling-function sets).
        """
        weights = data.counts.astype(np.float64)
        res = run_em(data, start, weights, True, None, int(self.max_iter), 1e-7,
                     self._prior_pseudo)
        perm = keep_class_names(start, res, weights, k)
        tables = em_tables(data, res, True, weights, perm)
        share = degenerate_share(tables.votes, data.vote_counts(), data.n_sources, k)
        return (tables.class_balance if share <= MAX_DEGENERATE_VOTES else None), share

    def _refine(self, lm: LabelMatrix, k: int,
                vote_data: tuple[VoteData, np.ndarray | sp.csr_matrix],
                p: np.ndarray | None, p_source: str, fixed_balance: bool,
                candidates: tuple[str, ...], moments: bool) -> LabelModel:
        """EM refinement of the moment fit (or of the majority vote), chosen by the rule."""
        data, unique = vote_data
        n_rows = lm.n_rows
        rule = len(candidates) > 1 or moments and self.mode == "auto"
        # with many rows the rule looks at a thinning of them: the starting posterior is needed
        # on those rows only, and on all rows only when the final fit cannot start warm
        rule_data, keep = thin_rows(data, int(self.seed)) if rule else (data, None)

        def start_of(rows: np.ndarray | None) -> np.ndarray:
            if moments:
                balance = self.class_balance_
                if p is None:  # start from the moment tables with a uniform, not drifted, prior
                    self.class_balance_ = np.full(k, 1.0 / k)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MetalWarning)  # unseen values: fit's rows
                    if rows is None:
                        out = self.predict_proba(unique)
                    elif isinstance(data, DenseVoteData) and unique is data.rows:
                        out = self.predict_proba(data.rows_at(rows))  # gathered by the thinning
                    else:  # in blocks: no copy of the thinned rows of L at once
                        step = DEFAULT_CHUNK_ROWS // 4
                        out = np.concatenate([self.predict_proba(unique[rows[a:a + step]])
                                              for a in range(0, rows.size, step)])
                self.class_balance_ = balance
                return out
            A = data.A if rows is None else data.A[rows]
            share = np.asarray(A @ np.tile(np.eye(k), (lm.n_sources, 1)))
            total = share.sum(axis=1, keepdims=True)
            return np.where(total > 0, share / np.maximum(total, 1.0), 1.0 / k)

        moment_tables = None
        if moments:
            moment_tables = Tables(votes=self.indicator_probs_[: lm.n_sources * k],
                                   abstain=self.abstain_probs_[: lm.n_sources],
                                   class_balance=self.class_balance_)
        start: np.ndarray | None = start_of(keep)
        # a class balance the user gave (or Y_dev, or "uniform") stays fixed; by default the
        # EM stage estimates it (the moment stage keeps it uniform)
        fixed = np.log(p) if fixed_balance and p is not None else None
        max_iter = int(self.max_iter)
        em_tol = 1e-7
        choice = None
        warm = None
        if rule:
            assert start is not None
            choice = choose_mode(rule_data, start, moment_tables, candidates, fixed,
                                 float(self.prob_floor), int(self.seed), max_iter, em_tol,
                                 self._prior_pseudo, thinned=True)
            chosen = choice.chosen
            if keep is not None:
                warm = choice.fits.get(chosen)
            choice.fits = {}
            del rule_data  # the thinned rows are not needed by the final fit on all rows
        else:
            chosen = candidates[0]
        if keep is not None:
            # the thinned rows' start is no start for all rows: a warm start replaces it, or
            # the start is computed on all rows where needed
            start = None
            if warm is None and (chosen != "moments" or (p is None and moments)):
                start = start_of(None)
        if chosen == "moments":
            assert self.fit_info_ is not None
            self.fit_info_.mode_choice = choice
            if p is None and moment_tables is not None:
                # class_balance="estimate" and the moment fit is kept: take the likelihood's
                # class balance if it can be trusted and refit the moment tables under it (see
                # fit). Not by default: on youtube the trusted estimate cost 6 points, and the
                # uniform prior is the robust choice on labeling functions
                self._kept_moments_start = start
            return self
        weights = data.counts.astype(np.float64)
        if chosen == "em_one_coin":
            assert start is not None
            tables, n_iter = one_coin_em(data, start, weights, max_iter, em_tol, fixed)
            self._set_fitted(SourceCoding(lm.n_sources, k), tables.votes, tables.abstain,
                             tables.class_balance, np.flatnonzero(data.vote_counts() > 0),
                             "votes_given_voted")
            self.statistics_ = None
            self.fit_info_ = FitInfo(loss=float("nan"), n_iter=0, n_rows=n_rows,
                                     n_indicators=int(self.emitted_.size),
                                     permutation=list(range(k)), class_balance_source=(
                                         p_source if fixed is not None else "estimated"),
                                     mode=chosen, mode_choice=choice, em_iter=n_iter)
            return self
        abstain = chosen == "em_abstain"
        center = (prior_center(data, moment_tables, float(self.prob_floor))
                  if moment_tables is not None and not abstain else None)
        res = run_em(data, start, weights, abstain, fixed, max_iter,
                     em_tol, self._prior_pseudo, init=None if warm is None else warm[0],
                     center=center,
                     param_tol=None if warm is None else WARM_PARAM_TOL / np.sqrt(n_rows))
        if warm is None:
            assert start is not None
            perm = keep_class_names(start, res, weights, k)
        else:  # the warm start's states: named on the thinned rows
            perm = warm[1]
        tables = em_tables(data, res, abstain, weights, perm)
        coding = SourceCoding(lm.n_sources, k)
        emitted = np.flatnonzero(data.vote_counts() > 0)
        evidence = "votes_and_abstains" if abstain else "votes_given_voted"
        self._set_fitted(coding, tables.votes, tables.abstain, tables.class_balance, emitted,
                         evidence)
        if not moments:
            self.statistics_ = None
        previous = getattr(self, "fit_info_", None) if moments else None
        self.fit_info_ = FitInfo(
            loss=float(-res.objective[-1] / max(n_rows, 1)) if res.objective else float("nan"),
            n_iter=previous.n_iter if previous is not None else 0, n_rows=n_rows,
            n_indicators=int(emitted.size), permutation=perm.tolist(),
            class_balance_source=(p_source if fixed is not None else
                                  "Y_dev + estimated" if p_source == "Y_dev" else "estimated"),
            mode=chosen, mode_choice=choice, em_iter=res.n_iter)
        return self

    def _check_identifiable(self, coding: SourceCoding, stats: SourceStatistics) -> None:
        """Raise NotIdentifiableError on a non-identifiable structure; warn on data problems."""
        report = check_coding(coding, stats, self.source_names)
        if not report.identifiable:
            raise NotIdentifiableError(
                "the source accuracies are not identifiable from unlabeled data for this "
                f"dependency structure and these votes:\n{report}\n(pass "
                "check_identifiability=False to fit anyway)", report)
        if report.data_warnings:
            warnings.warn("identifiability check: " + "; ".join(report.data_warnings),
                          MetalWarning, stacklevel=3)

    def fit_statistics(self, stats: SourceStatistics, class_balance: Any = None) -> LabelModel:
        """Fit from precomputed (e.g. merged, streamed or distributed) statistics.

        The statistics must come from :func:`label_statistics` with the same ``cardinality``;
        statistics of parts of the data add up with ``SourceStatistics.merge``. Only the moment
        stage runs (the likelihood stage needs the rows), so ``mode="em"`` is refused and
        ``mode="auto"`` keeps the moment fit.
        """
        k = self._check_params()
        if self.dependencies is not None:
            raise ConfigError("fit_statistics does not take dependencies yet; use fit(L)")
        if self.mode == "em":
            raise ConfigError("mode='em' needs the rows of L (EM is not a function of the "
                              "pairwise statistics); call fit(L), or use mode='moments'")
        if int(self.balance_moments) == 3:
            raise ConfigError("balance_moments=3 needs third moments, which pairwise statistics "
                              "do not hold; call fit(L), or use balance_moments=2")
        coding = SourceCoding(stats.n_groups, k)
        if not np.array_equal(coding.n_values, stats.n_values):
            raise ConfigError(f"statistics were gathered for {stats.n_values.tolist()} values "
                              f"per source; this model has cardinality {k}")
        p, p_source = resolve_class_balance(class_balance, None, k)
        return self._fit_statistics(stats, coding, p, p_source)

    def _fit_statistics(self, stats: SourceStatistics, coding: SourceCoding,
                        p: np.ndarray | None, p_source: str,
                        third: np.ndarray | None = None,
                        max_iter: int | None = None) -> LabelModel:
        k = int(self.cardinality)
        emitted = stats.emitted()
        group_of_ind = np.searchsorted(coding.offsets, emitted, side="right") - 1
        # a clique that never has two voters on a row is not a silent source
        silent = np.setdiff1d(np.arange(coding.n_sources), group_of_ind)
        if silent.size:
            names = [coding.groups[g] for g in silent]
            warnings.warn(f"sources {names} never vote in L; they carry no information and are "
                          "ignored (remove them, or check that they were applied correctly)",
                          MetalWarning, stacklevel=3)
        means, second = stats.moments(emitted)
        # with dependencies: singletons first (Omega = pairs from different dependency
        # components), then the clique indicators by least squares given the singletons
        fit_idx = np.flatnonzero(group_of_ind < coding.n_sources)
        problem = MomentProblem(second=second[np.ix_(fit_idx, fit_idx)], means=means[fit_idx],
                                groups=group_of_ind[fit_idx], n_groups=coding.n_sources,
                                agreement=coding.agreement(emitted[fit_idx]),
                                third=None if third is None else third[np.ix_(fit_idx, fit_idx,
                                                                              fit_idx)])
        l2 = L2_PRIOR_ROWS / max(stats.n_rows, 1) if self.l2 is None else float(self.l2)
        fit_kw = dict(class_balance=p, method=self.method,
                      max_iter=int(self.max_iter) if max_iter is None else max_iter,
                      tol=float(self.tol), l2=l2,
                      tied=self.parameterization == "tied", device=self.device,
                      seed=int(self.seed))
        result = fit_moments(problem, k, **fit_kw)  # type: ignore[arg-type]
        if not coding.all_singletons:
            # the independent fit is a warm start; the masked fit converges slowly along the
            # directions only cross-component pairs pin down, so finish with exact block solves
            masked = replace(problem, omega_mask=coding.omega(emitted[fit_idx]))
            result = fit_moments(masked, k, init_mu=result.mu, **fit_kw)  # type: ignore[arg-type]
            src = group_of_ind[fit_idx]
            if self.parameterization == "full":  # block solves do not keep parameters tied
                result.mu, result.class_balance = refine_by_components(
                    masked.second, masked.means, src, coding.component[src], result.mu,
                    result.class_balance, fix_balance=p is not None)
            tot = np.zeros((coding.n_sources, k))
            np.add.at(tot, src, result.mu)
            result.abstain = np.clip(1.0 - tot, 0.0, 1.0)
        indicator_probs = np.zeros((coding.n_indicators, k))
        indicator_probs[emitted[fit_idx]] = result.mu
        abstain = result.abstain
        if not coding.all_singletons:
            clique_idx = np.flatnonzero(group_of_ind >= coding.n_sources)
            mu_c, abstain_c = coding.fit_cliques(emitted, means, second, result.mu,
                                                 result.class_balance)
            indicator_probs[emitted[clique_idx]] = mu_c
            abstain = np.vstack([result.abstain, abstain_c])
        self._set_fitted(coding, indicator_probs, abstain, result.class_balance, emitted)
        self.statistics_ = stats
        self.fit_info_ = FitInfo(loss=result.loss, n_iter=result.n_iter, n_rows=stats.n_rows,
                                 n_indicators=int(emitted.size),
                                 permutation=result.permutation.tolist(),
                                 class_balance_source=p_source)
        return self

    def _set_fitted(self, coding: SourceCoding, indicator_probs: np.ndarray,
                    abstain: np.ndarray, class_balance: np.ndarray, emitted: np.ndarray,
                    evidence: str | None = None) -> None:
        if evidence is None:
            evidence = "votes_and_abstains" if self.model_abstains else "votes"
        self.evidence_ = evidence
        self.coding_ = coding
        self.n_sources_ = coding.n_sources
        self.indicator_probs_ = indicator_probs
        self.abstain_probs_ = abstain
        self.emitted_ = emitted
        self.class_balance_ = class_balance
        self.conditional_probs_ = self._marginal_conditionals()

    def _marginal_conditionals(self) -> np.ndarray:
        coding, k = self.coding_, int(self.cardinality)
        cond = np.zeros((coding.n_sources, k + 1, k))
        # singleton indicators only: clique indicators describe the same votes jointly
        pos, src, val = coding.member_values(coding.singleton_indicators)
        np.add.at(cond, (src, val), self.indicator_probs_[pos])
        cond[:, k, :] = np.clip(1.0 - cond[:, :k, :].sum(axis=1), 0.0, 1.0)
        return cond

    # ------------------------------------------------------------------ outputs
    def get_conditional_probs(self) -> np.ndarray:
        """``(m, k+1, k)`` array ``[i, v, y] = P(lambda_i = v | Y = y)``; ``v = -1`` is abstain."""
        self._check_fitted()
        return self.conditional_probs_.copy()

    def get_accuracies(self) -> np.ndarray:
        """``(m,)`` probability that a source's vote is correct, given that it votes."""
        self._check_fitted()
        k = int(self.cardinality)
        cond, p = self.conditional_probs_, self.class_balance_
        correct = np.einsum("iyy,y->i", cond[:, :k, :], p)
        voted = ((1.0 - cond[:, k, :]) * p).sum(axis=1)
        return np.divide(correct, voted, out=np.full_like(correct, np.nan), where=voted > 0)

    def _log_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-indicator log table, per-class base score, unseen-indicator mask."""
        coding = self.coding_
        group = np.repeat(np.arange(coding.n_groups), coding.n_values)
        return log_tables(self.indicator_probs_, self.abstain_probs_, self.class_balance_,
                          group, self.emitted_, self.evidence_, float(self.prob_floor))

    def predict_log_proba(self, L: LabelInput) -> np.ndarray:
        """``(n, k)`` log posterior ``log P(Y = y | lambda)``."""
        return self._posterior(L, log=True)

    def _posterior(self, L: LabelInput, log: bool) -> np.ndarray:
        """The (log) posterior; warnings point at the caller of the public method."""
        self._check_fitted()
        k = int(self.cardinality)
        lm = check_label_matrix(L, cardinality=k, n_sources=self.n_sources_)
        if not self.coding_.all_singletons:
            out = self._predict_log_proba_junction(lm)
            return out if log else np.exp(out, out=out)
        table, base, unseen = self._log_tables()
        if dense_applicable(lm.data, self.coding_.n_indicators):  # integer-product kernel
            scorer = DenseScorer(table, base, lm.n_sources, k, unseen)
            # the posterior directly where it is asked for: no logarithm and exponential
            out, n_unseen = (scorer.log_proba if log else scorer.proba)(
                lm.data)  # type: ignore[arg-type]
            _warn_unseen(n_unseen, stacklevel=3)
            return out
        out, n_unseen = log_posterior(lm, self.coding_.encode, table, base, unseen,
                                      int(self.chunk_rows))
        _warn_unseen(n_unseen, stacklevel=3)
        return out if log else np.exp(out, out=out)

    def _predict_log_proba_junction(self, lm: LabelMatrix) -> np.ndarray:
        """Posterior with dependent sources: clique tables over the junction tree."""
        k = int(self.cardinality)
        tables = self.coding_.factor_tables(
            self.indicator_probs_, self.abstain_probs_, self.class_balance_, self.emitted_,
            float(self.prob_floor), self.evidence_ == "votes_and_abstains")
        m_k = self.n_sources_ * k
        unseen = np.ones(m_k, dtype=bool)
        unseen[self.emitted_[self.emitted_ < m_k]] = False
        out = np.empty((lm.n_rows, k))
        n_unseen = 0
        for chunk in lm.iter_votes(int(self.chunk_rows)):
            n_unseen += int(unseen[chunk.cols * k + chunk.values].sum())
            scores = SourceCoding.factor_scores(chunk, tables)
            out[chunk.start:chunk.stop] = scores - logsumexp(scores, axis=1, keepdims=True)
        _warn_unseen(n_unseen, stacklevel=4)
        return out

    def predict_proba(self, L: LabelInput) -> np.ndarray:
        """``(n, k)`` posterior ``P(Y = y | lambda)``; rows sum to 1."""
        return self._posterior(L, log=False)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted model to ``path`` (an ``.npz`` archive with a JSON header; no pickle)."""
        self._check_fitted()
        params = {
            "cardinality": int(self.cardinality), "mode": self.mode, "method": self.method,
            "parameterization": self.parameterization,
            "balance_moments": int(self.balance_moments),
            "model_abstains": (None if self.model_abstains is None
                               else bool(self.model_abstains)),
            "prob_floor": float(self.prob_floor),
            "max_iter": int(self.max_iter), "tol": float(self.tol),
            "l2": None if self.l2 is None else float(self.l2),
            "chunk_rows": int(self.chunk_rows), "device": str(self.device),
            "seed": int(self.seed),
            "source_names": (None if self.source_names is None
                             else [str(s) for s in self.source_names]),
            "n_sources": int(self.coding_.n_sources),
            "cliques": [list(c) for c in self.coding_.cliques],
            "dependency_edges": [[int(u), int(v)] for u, v in self.coding_.graph.edges],
            "evidence": self.evidence_,
        }
        save_arrays(path, "LabelModel", params, {
            "indicator_probs": self.indicator_probs_, "abstain_probs": self.abstain_probs_,
            "class_balance": self.class_balance_, "emitted": self.emitted_,
        })

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabelModel:
        """Load a model written by :meth:`save`."""
        params, arrays = load_arrays(path, "LabelModel")
        n_sources = params.pop("n_sources")
        cliques = params.pop("cliques")
        edges = params.pop("dependency_edges")
        evidence = params.pop("evidence", None)  # files written before the EM stage: None
        model = cls(**params)
        graph = nx.Graph()
        graph.add_nodes_from(range(n_sources))
        graph.add_edges_from((int(u), int(v)) for u, v in edges)
        coding = SourceCoding(n_sources, params["cardinality"], cliques, graph=graph)
        if edges:
            names = model.source_names
            model.dependencies = graph if names is None else nx.relabel_nodes(
                graph, {i: names[i] for i in range(n_sources)})
        model._set_fitted(coding, arrays["indicator_probs"], arrays["abstain_probs"],
                          arrays["class_balance"], arrays["emitted"], evidence)
        return model


def _vote_data(lm: LabelMatrix, k: int, seed: int
               ) -> tuple[VoteData, np.ndarray | sp.csr_matrix]:
    """The distinct rows of ``L`` (with their counts) as sparse one-hot votes.

    A large dense ``L`` (more rows than the rule looks at, few indicators) whose rule sample
    shows few duplicate rows is kept as it is (:class:`DenseVoteData`): merging would save
    little, and the final EM reads its rows directly.
    """
    X = lm.data
    if (lm.n_rows > RULE_MAX_ROWS and isinstance(X, np.ndarray)
            and dense_applicable(X, lm.n_sources * k)):
        dense = DenseVoteData(X, k)
        _, keep = thin_rows(dense, seed)  # the rows the rule will look at (memoised)
        if keep is not None and few_duplicates(dense.rows_at(keep), lm.n_rows):
            return dense, X
    if isinstance(X, sp.csr_matrix):
        C = X.tocoo()
        keep = C.data >= 0  # a stored -1 is an abstention
        X = sp.csr_matrix((C.data[keep], (C.row[keep], C.col[keep])), shape=X.shape)
    unique, counts = compress_rows(X)
    A, _ = one_hot_votes(unique, k)
    return VoteData(A=A, counts=counts, n_sources=lm.n_sources, cardinality=k), unique


def _warn_unseen(n_unseen: int, stacklevel: int) -> None:
    """Warn about votes with values unseen in fit (``stacklevel`` as seen by the caller)."""
    if n_unseen:
        warnings.warn(f"{n_unseen} votes use a value their source never emitted during fit; "
                      "they were treated as abstentions. Refit on data that includes them.",
                      MetalWarning, stacklevel=stacklevel + 1)


def resolve_class_balance(
    class_balance: Any,
    Y_dev: Any,
    k: int,
    *,
    from_gold: Callable[[Any], np.ndarray] | None = None,
    check: Callable[[Any], np.ndarray] | None = None,
) -> tuple[np.ndarray | None, str]:
    """The prior to fit with (``None`` = estimate it) and where it came from.

    ``from_gold`` and ``check`` turn ``Y_dev`` into a prior and validate a given one; the
    defaults are the single-task ones (the multi-task model passes its own, over the feasible
    vectors).
    """
    if class_balance is not None and Y_dev is not None:
        raise ConfigError("pass class_balance or Y_dev, not both")
    if Y_dev is not None:
        return (balance_from_gold(Y_dev, k) if from_gold is None else from_gold(Y_dev)), "Y_dev"
    if class_balance is None or (isinstance(class_balance, str) and class_balance == "uniform"):
        return np.full(k, 1.0 / k), "uniform"
    if isinstance(class_balance, str):
        if class_balance == "estimate":
            return None, "estimated"
        raise ConfigError(f"class_balance={class_balance!r} is not known; expected an array of "
                          "k probabilities, 'uniform' or 'estimate'")
    return (check_class_balance(class_balance, k) if check is None
            else check(class_balance)), "given"


def label_statistics(L: LabelInput, cardinality: int,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> SourceStatistics:
    """One chunked pass over ``L``: the statistics :meth:`LabelModel.fit_statistics` needs.

    Statistics of disjoint row blocks (chunks of a file, Dask partitions) can be gathered
    separately and combined with :meth:`SourceStatistics.merge`.
    """
    k = check_cardinality(cardinality)
    lm = check_label_matrix(L, cardinality=k)
    return SourceCoding(lm.n_sources, k).statistics(lm, chunk_rows)

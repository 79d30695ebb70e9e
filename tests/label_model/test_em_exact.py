"""The EM engine against a dense, loop-by-loop reference of the same model, on tiny inputs.

Each check is exact (to rounding): E-step, MAP M-step with pseudo-counts, the implicit abstain
symbol, the objective, the stopping rule, and the one-hot / dedup helpers. Runs in a second or
two: the fast test set of the mutation check of ``em.py`` (with ``test_em.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from metal.errors import ConfigError
from metal.label_model.em import (
    _row_logsumexp,
    em_log_posterior,
    fit_em,
    one_hot_votes,
    unique_rows,
)

# 5 rows, 3 sources with 2 symbols each (source j: columns 2j, 2j+1), 2 states
L = np.array([[0, 1, -1], [1, 1, 0], [-1, -1, 1], [0, 0, 0], [1, -1, -1]])
SRC = np.repeat(np.arange(3), 2)
POST0 = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.7, 0.3], [0.4, 0.6]])
W = np.array([1.0, 2.0, 1.0, 0.5, 3.0])


def dense_one_hot(L: np.ndarray, k: int) -> np.ndarray:
    A = np.zeros((L.shape[0], L.shape[1] * k))
    for i, row in enumerate(L):
        for j, v in enumerate(row):
            if v >= 0:
                A[i, j * k + v] = 1.0
    return A


class Reference:
    """Dense EM with pseudo-counts, written out loop by loop."""

    def __init__(self, A, src, w, pc, ppc, implicit=False, apc=0.0):
        self.A, self.src, self.w = A, src, w
        self.pc, self.ppc, self.implicit, self.apc = pc, ppc, implicit, apc
        self.m = int(src.max()) + 1

    def m_step(self, post):
        A, src, m = self.A, self.src, self.m
        wp = post * self.w[:, None]
        counts = A.T @ wp + self.pc
        Y = post.shape[1]
        tables = np.zeros_like(counts)
        abst = np.zeros((m, Y))
        for j in range(m):
            cols = src == j
            total = counts[cols].sum(0)
            if self.implicit:
                silent = wp.sum(0) - (A[:, cols].T @ wp).sum(0) + self.apc
                total = total + silent
                abst[j] = silent / total
            tables[cols] = counts[cols] / total
        prior = (wp.sum(0) + self.ppc) / (wp.sum(0) + self.ppc).sum()
        return np.log(tables), np.log(prior), (np.log(abst) if self.implicit else None)

    def e_step(self, lt, lp, la):
        n, Y = self.A.shape[0], lt.shape[1]
        joint = np.zeros((n, Y))
        for i in range(n):
            for y in range(Y):
                s = lp[y]
                for j in range(self.m):
                    cols = np.flatnonzero(self.src == j)
                    fired = cols[self.A[i, cols] > 0]
                    if fired.size:
                        s += lt[fired[0], y]
                    elif la is not None:
                        s += la[j, y]
                joint[i, y] = s
        marg = np.log(np.exp(joint).sum(1))
        return np.exp(joint - marg[:, None]), marg

    def objective(self, lt, lp, la, marg):
        obj = self.w @ marg + (self.pc * lt).sum() + (self.ppc * lp).sum()
        if la is not None:
            obj += self.apc * la.sum()
        return obj


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("iters", [1, 2, 3])
@pytest.mark.parametrize("mass", [1.0, 0.01])  # 0.01: every count and total below 1
def test_fit_em_equals_the_dense_reference(implicit: bool, iters: int, mass: float) -> None:
    A = dense_one_hot(L, 2)
    pc = np.array([[2.0, 0.5], [0.5, 2.0]] * 3) * mass  # "better than random" pseudo-counts
    ppc = np.array([1.0, 3.0]) * mass
    ref = Reference(A, SRC, W * mass, pc, ppc, implicit=implicit,
                    apc=0.7 * mass if implicit else 0.0)
    res = fit_em(sp.csr_matrix(A), SRC, POST0, row_weights=W * mass, pseudo_count=pc,
                 prior_pseudo_count=ppc, max_iter=iters, tol=0.0, implicit_abstain=implicit,
                 abstain_pseudo_count=0.7 * mass)
    lt, lp, la = ref.m_step(POST0)
    objectives = []
    for _ in range(iters):
        post, marg = ref.e_step(lt, lp, la)
        objectives.append(ref.objective(lt, lp, la, marg))
        lt, lp, la = ref.m_step(post)
    post, _ = ref.e_step(lt, lp, la)  # the posterior at the final parameters
    np.testing.assert_allclose(res.log_tables, lt, rtol=1e-12)
    np.testing.assert_allclose(res.log_prior, lp, rtol=1e-12)
    np.testing.assert_allclose(res.posterior, post, rtol=1e-12)
    np.testing.assert_allclose(res.objective, objectives, rtol=1e-12)
    assert res.n_iter == iters and not res.converged
    if implicit:
        np.testing.assert_allclose(res.log_abstain, la, rtol=1e-12)
    else:
        assert res.log_abstain is None


def test_default_priors_are_one_pseudo_count_each() -> None:
    A = dense_one_hot(L, 2)
    ref = Reference(A, SRC, np.ones(5), 1.0, 1.0, implicit=True, apc=1.0)
    res = fit_em(sp.csr_matrix(A), SRC, POST0, max_iter=1, tol=0.0, implicit_abstain=True)
    lt, lp, la = ref.m_step(ref.e_step(*ref.m_step(POST0))[0])
    np.testing.assert_allclose(res.log_tables, lt, rtol=1e-12)
    np.testing.assert_allclose(res.log_prior, lp, rtol=1e-12)
    np.testing.assert_allclose(res.log_abstain, la, rtol=1e-12)


def test_fixed_prior_and_a_start_from_tables() -> None:
    A = dense_one_hot(L, 2)
    ref = Reference(A, SRC, np.ones(5), 1.0, 0.0)
    lt0 = np.log(np.array([[0.7, 0.2], [0.3, 0.8]] * 3))
    lp = np.log([0.25, 0.75])
    res = fit_em(sp.csr_matrix(A), SRC, init_log_tables=lt0, init_log_prior=lp,
                 fit_prior=False, max_iter=2, tol=0.0)
    post, marg = ref.e_step(lt0, lp, None)  # starts with an E-step at the given tables
    lt, _, _ = ref.m_step(post)
    np.testing.assert_allclose(res.objective[0], np.sum(marg) + np.sum(lt0), rtol=1e-12)
    post, _ = ref.e_step(lt, lp, None)
    lt, _, _ = ref.m_step(post)
    np.testing.assert_allclose(res.log_tables, lt, rtol=1e-12)
    np.testing.assert_array_equal(res.log_prior, lp)  # never refitted


def test_convergence_stops_at_the_relative_tolerance() -> None:
    A = sp.csr_matrix(dense_one_hot(L, 2))
    loose = fit_em(A, SRC, POST0, max_iter=500, tol=1e-3)
    tight = fit_em(A, SRC, POST0, max_iter=500, tol=1e-12)
    assert loose.converged and tight.converged
    assert 2 <= loose.n_iter < tight.n_iter < 500
    obj = np.array(loose.objective)
    assert abs(obj[-1] - obj[-2]) <= 1e-3 * max(1.0, abs(obj[-1]))
    assert abs(obj[-2] - obj[-3]) > 1e-3 * max(1.0, abs(obj[-2]))  # and not one step earlier
    # the posterior is the E-step at the returned parameters
    lp, _ = em_log_posterior(A, SRC, loose.log_tables, loose.log_prior)
    np.testing.assert_allclose(np.exp(lp), loose.posterior, rtol=1e-10)
    assert (np.diff(tight.objective) >= -1e-9).all()  # never decreases
    capped = fit_em(A, SRC, POST0, max_iter=1, tol=1.0)  # a budget of one: no convergence yet
    assert capped.n_iter == 1 and not capped.converged


def test_a_source_without_mass_gets_uniform_tables() -> None:
    # source 2 never votes and there are no pseudo-counts: its tables cannot be estimated
    Lq = L.copy()
    Lq[:, 2] = -1
    A = sp.csr_matrix(dense_one_hot(Lq, 2))
    res = fit_em(A, SRC, POST0, pseudo_count=0.0, prior_pseudo_count=0.0, max_iter=1, tol=0)
    np.testing.assert_allclose(np.exp(res.log_tables[4:]), 0.5)
    assert np.isfinite(res.log_tables).all()
    np.testing.assert_allclose(np.exp(res.log_tables[:4]).reshape(2, 2, 2).sum(1), 1.0)


def test_tables_from_counts_replaces_the_free_m_step() -> None:
    A = sp.csr_matrix(dense_one_hot(L, 2))
    seen = []

    def tied(counts, abstained):
        seen.append((counts.copy(), abstained))
        return np.log(np.full(counts.shape, 0.5)), None

    res = fit_em(A, SRC, POST0, pseudo_count=0.25, max_iter=1, tol=0, tables_from_counts=tied)
    np.testing.assert_allclose(seen[0][0], A.T @ POST0 + 0.25)  # expected counts + pseudo
    assert seen[0][1] is None
    np.testing.assert_allclose(res.log_tables, np.log(0.5))


def test_row_logsumexp_is_stable() -> None:
    x = np.array([[1000.0, 1000.0], [-np.inf, -np.inf], [-1000.0, -1001.0], [0.0, np.log(3)]])
    with np.errstate(all="raise"):
        got = _row_logsumexp(x)
    np.testing.assert_allclose(got[[0, 2, 3]], [1000 + np.log(2), -1000 + np.log1p(np.exp(-1)),
                                                np.log(4)])
    assert got[1] == -np.inf


def test_em_log_posterior_by_hand() -> None:
    # one source, two symbols; row 0 votes symbol 1, row 1 is silent
    A = sp.csr_matrix(np.array([[0.0, 1.0], [0.0, 0.0]]))
    lt = np.log(np.array([[0.6, 0.1], [0.2, 0.5]]))
    lp = np.log([0.3, 0.7])
    lpost, marg = em_log_posterior(A, np.array([0, 0]), lt, lp)
    j = np.array([0.3 * 0.2, 0.7 * 0.5])
    np.testing.assert_allclose(np.exp(lpost[0]), j / j.sum())
    np.testing.assert_allclose(marg, [np.log(j.sum()), 0.0], atol=1e-15)
    la = np.log(np.array([[0.2, 0.4]]))  # silent rows now carry P(abstain | y)
    lpost, marg = em_log_posterior(A, np.array([0, 0]), lt, lp, la)
    s = np.array([0.3 * 0.2, 0.7 * 0.4])
    np.testing.assert_allclose(np.exp(lpost), [j / j.sum(), s / s.sum()])
    np.testing.assert_allclose(marg, np.log([j.sum(), s.sum()]))


def test_bad_arguments_are_refused() -> None:
    A = sp.csr_matrix(dense_one_hot(L, 2))
    with pytest.raises(ConfigError, match="non-negative integer"):
        fit_em(A, SRC - 1, POST0)
    with pytest.raises(ConfigError, match="non-negative integer"):
        fit_em(A, SRC.astype(float), POST0)
    with pytest.raises(ConfigError, match="n_sources=2"):
        fit_em(A, SRC, POST0, n_sources=2)
    with pytest.raises(ConfigError, match="init_posterior must have shape"):
        fit_em(A, SRC, POST0[:4])
    with pytest.raises(ConfigError, match="max_iter"):
        fit_em(A, SRC, POST0, max_iter=0)
    with pytest.raises(ConfigError, match="max_iter"):
        fit_em(A, SRC, POST0, tol=float("nan"))
    with pytest.raises(ConfigError, match="max_iter"):
        fit_em(A, SRC, POST0, tol=-1.0)
    with pytest.raises(ConfigError, match="row_weights"):
        fit_em(A, SRC, POST0, row_weights=-W)
    with pytest.raises(ConfigError, match="row_weights"):
        fit_em(A, SRC, POST0, row_weights=W[:3])
    with pytest.raises(ConfigError, match="pseudo-counts"):
        fit_em(A, SRC, POST0, prior_pseudo_count=np.inf)
    with pytest.raises(ConfigError, match="abstain_pseudo_count"):
        fit_em(A, SRC, POST0, abstain_pseudo_count=-1.0)
    lt = np.zeros((6, 2))
    with pytest.raises(ConfigError, match="or both init_log_tables and init_log_prior"):
        fit_em(A, SRC, init_log_tables=lt)
    with pytest.raises(ConfigError, match="or both init_log_tables and init_log_prior"):
        fit_em(A, SRC, init_log_prior=np.zeros(2))
    with pytest.raises(ConfigError, match="init_log_tables must have shape"):
        fit_em(A, SRC, init_log_tables=lt[:5], init_log_prior=np.zeros(2))
    with pytest.raises(ConfigError, match="implicit_abstain needs init_posterior"):
        fit_em(A, SRC, init_log_tables=lt, init_log_prior=np.zeros(2), implicit_abstain=True)
    # a fourth, silent source beyond the columns is fine with implicit abstain
    res = fit_em(A, SRC, POST0, n_sources=4, implicit_abstain=True, max_iter=1, tol=0)
    assert res.log_abstain is not None and res.log_abstain.shape == (4, 2)


def test_one_hot_votes_layout() -> None:
    Lx = np.array([[1, -1], [-1, 0]])
    A, src = one_hot_votes(Lx, 2)
    np.testing.assert_array_equal(A.toarray(), [[0, 1, 0, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(src, [0, 0, 1, 1])
    A, src = one_hot_votes(Lx, 2, abstain_symbol=True)  # abstain is symbol k of each source
    np.testing.assert_array_equal(A.toarray(), [[0, 1, 0, 0, 0, 1], [0, 0, 1, 1, 0, 0]])
    np.testing.assert_array_equal(src, [0, 0, 0, 1, 1, 1])
    # sparse input stores votes only (a stored 0 is class 0)
    S = sp.coo_matrix((np.array([1, 0]), (np.array([0, 1]), np.array([0, 1]))), shape=(2, 2))
    A, _ = one_hot_votes(S, 2, abstain_symbol=True)
    np.testing.assert_array_equal(A.toarray(), [[0, 1, 0, 0, 0, 1], [0, 0, 1, 1, 0, 0]])
    # a vote of k must not pass as the abstain symbol (k) -- it did before, with abstain_symbol
    for bad in (np.array([[2, -1]]), np.array([[0, -3]]),
                sp.coo_matrix((np.array([2]), ([0], [0])), shape=(1, 2))):
        for abst in (False, True):
            with pytest.raises(ConfigError, match=r"-1\.\.1"):
                one_hot_votes(bad, 2, abstain_symbol=abst)
    with pytest.raises(ConfigError, match=r"-1\.\.1"):
        one_hot_votes(sp.coo_matrix((np.array([-3]), ([0], [0])), shape=(1, 2)), 2)


def test_unique_rows_exact() -> None:
    Lx = np.array([[0, -1], [1, 1], [0, -1], [-1, -1], [1, 1], [0, -1]])
    U, inv, counts = unique_rows(Lx)
    np.testing.assert_array_equal(U[inv], Lx)
    assert sorted(counts.tolist()) == [1, 2, 3] and U.shape == (3, 2)
    empty, inv0, c0 = unique_rows(np.zeros((0, 3), dtype=int))
    assert empty.shape == (0, 3) and inv0.size == 0 and c0.size == 0
    # sparse: empty rows group together; entries stored in any order hash alike
    S = sp.csr_matrix((np.array([1, 2, 2, 1, 3]), np.array([0, 1, 1, 0, 0]),
                       np.array([0, 2, 4, 4, 5, 5])), shape=(5, 2))
    Us, invs, cs = unique_rows(S)
    np.testing.assert_array_equal(Us[invs].toarray(), S.toarray())
    assert Us.shape[0] == 3 and sorted(cs.tolist()) == [1, 2, 2]
    assert invs[0] == invs[1] and invs[2] == invs[4] and invs[3] != invs[0]


def test_stopping_rule_is_relative_with_a_floor_of_one() -> None:
    # small weights: the objective is below 1 in size, so the rule is |change| <= tol itself
    A = sp.csr_matrix(dense_one_hot(L, 2))
    res = fit_em(A, SRC, POST0, row_weights=W * 0.01, pseudo_count=0.01,
                 prior_pseudo_count=0.01, max_iter=500, tol=1e-4)
    obj = np.array(res.objective)
    assert res.converged and np.abs(obj).max() < 1.0
    assert abs(obj[-1] - obj[-2]) <= 1e-4 < abs(obj[-2] - obj[-3])


def test_objective_without_pseudo_counts_is_the_log_likelihood() -> None:
    A = dense_one_hot(L, 2)
    ref = Reference(A, SRC, W, 0.0, 0.0)
    res = fit_em(sp.csr_matrix(A), SRC, POST0, row_weights=W, pseudo_count=0.0,
                 prior_pseudo_count=0.0, max_iter=1, tol=0.0)
    _, marg = ref.e_step(*ref.m_step(POST0)[:2], None)
    np.testing.assert_allclose(res.objective, [W @ marg], rtol=1e-12)


def test_zero_row_weights_are_allowed_and_drop_the_row() -> None:
    A = sp.csr_matrix(dense_one_hot(L, 2))
    w = np.array([1.0, 0.0, 1.0, 1.0, 1.0])
    with_zero = fit_em(A, SRC, POST0, row_weights=w, max_iter=3, tol=0.0)
    keep = w > 0
    dropped = fit_em(A[keep], SRC, POST0[keep], max_iter=3, tol=0.0)
    np.testing.assert_allclose(with_zero.log_tables, dropped.log_tables, rtol=1e-12)


def test_unique_rows_of_one_row() -> None:
    U, inv, counts = unique_rows(np.array([[0, -1, 1]]))
    np.testing.assert_array_equal(U, [[0, -1, 1]])
    assert inv.tolist() == [0] and counts.tolist() == [1]

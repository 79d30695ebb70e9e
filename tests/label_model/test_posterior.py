"""The posterior stage: log tables and chunked log posteriors against brute-force Bayes."""

import itertools

import numpy as np
import pytest

from metal.errors import ConfigError
from metal.label_model.coding import SourceCoding
from metal.label_model.posterior import EVIDENCE, log_posterior, log_tables
from metal.matrix import check_label_matrix


def _model(m: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    cond = rng.dirichlet(np.ones(k + 1), size=(m, k)).transpose(0, 2, 1)  # [i, v, y], v=k abst
    prior = rng.dirichlet(np.ones(k))
    return cond, prior


def _brute_force(L: np.ndarray, cond: np.ndarray, prior: np.ndarray, evidence: str):
    k = prior.size
    out = np.zeros((L.shape[0], k))
    for r, row in enumerate(L):
        for y in range(k):
            p = prior[y]
            for i, v in enumerate(row):
                if v >= 0:
                    p *= cond[i, v, y] / ((1 - cond[i, k, y]) if evidence == "votes_given_voted"
                                          else 1.0)
                elif evidence == "votes_and_abstains":
                    p *= cond[i, k, y]
            out[r, y] = p
    return out / out.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("evidence", EVIDENCE)
def test_posterior_equals_bayes_rule_for_every_kind_of_evidence(evidence):
    m, k = 3, 3
    cond, prior = _model(m, k, seed=1)
    L = np.array(list(itertools.product(range(-1, k), repeat=m)))  # every vote pattern
    coding = SourceCoding(m, k)
    group = np.repeat(np.arange(m), k)
    table, base, unseen = log_tables(cond[:, :k, :].reshape(m * k, k), cond[:, k, :], prior,
                                     group, np.arange(m * k), evidence, floor=0.0)
    assert not unseen.any()
    out, n_unseen = log_posterior(check_label_matrix(L, cardinality=k), coding.encode, table,
                                  base, unseen, chunk_rows=7)  # several chunks
    assert n_unseen == 0
    np.testing.assert_allclose(np.exp(out), _brute_force(L, cond, prior, evidence), atol=1e-12)


def test_unseen_values_carry_no_evidence_and_are_counted():
    m, k = 2, 2
    cond, prior = _model(m, k, seed=2)
    group = np.repeat(np.arange(m), k)
    emitted = np.array([0, 1, 2])  # source 1 never voted 1 in fit
    table, base, unseen = log_tables(cond[:, :k, :].reshape(m * k, k), cond[:, k, :], prior,
                                     group, emitted, "votes", floor=1e-3)
    assert unseen.tolist() == [False, False, False, True]
    L = np.array([[0, 1], [0, -1]])
    out, n_unseen = log_posterior(check_label_matrix(L, cardinality=k), SourceCoding(m, k).encode,
                                  table, base, unseen, chunk_rows=10)
    assert n_unseen == 1
    np.testing.assert_allclose(out[0], out[1])  # the unseen vote changed nothing


def test_floor_bounds_every_log_probability_and_bad_evidence_is_refused():
    cond = np.zeros((2, 1))  # a probability of exactly 0
    table, base, _ = log_tables(cond, np.ones((1, 1)), np.ones(1), np.zeros(2, dtype=int),
                                np.arange(2), "votes", floor=1e-3)
    assert np.isfinite(table).all() and table.min() >= np.log(1e-3)
    with pytest.raises(ConfigError, match="evidence"):
        log_tables(cond, np.ones((1, 1)), np.ones(1), np.zeros(2, dtype=int), np.arange(2),
                   "abstains", floor=1e-3)


def test_normalise_is_exact_and_does_not_overflow():
    from metal.label_model.posterior import normalise

    scores = np.array([[1000.0, 1000.0 + np.log(3.0)], [-1000.0, -1000.0], [0.0, np.log(0.25)]])
    with np.errstate(all="raise"):
        got = normalise(scores.copy())
    np.testing.assert_allclose(np.exp(got), [[0.25, 0.75], [0.5, 0.5], [0.8, 0.2]])

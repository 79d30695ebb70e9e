"""Majority vote: exact vote counts and vote shares, prior for rows without votes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from metal import MajorityVoter, to_sparse_labels
from metal.label_model.baselines import vote_counts

L = np.array([[0, 0, 1], [1, -1, 1], [-1, -1, -1], [2, 1, 0]])


def test_vote_counts_exact_dense_sparse_chunked() -> None:
    expected = np.array([[2, 1, 0], [0, 2, 0], [0, 0, 0], [1, 1, 1]], dtype=float)
    np.testing.assert_array_equal(vote_counts(L, 3), expected)
    np.testing.assert_array_equal(vote_counts(to_sparse_labels(L), 3, chunk_rows=1), expected)
    assert isinstance(to_sparse_labels(L), sp.csr_matrix)


def test_vote_shares_and_prior() -> None:
    mv = MajorityVoter(cardinality=3, class_balance=np.array([0.2, 0.3, 0.5])).fit(L)
    P = mv.predict_proba(L)
    np.testing.assert_allclose(P[0], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(P[1], [0, 1, 0])
    np.testing.assert_allclose(P[2], [0.2, 0.3, 0.5])  # no vote: the prior
    np.testing.assert_allclose(P[3], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_array_equal(mv.predict(L, tie_break="first"), [0, 1, 2, 0])
    np.testing.assert_array_equal(mv.predict(L, tie_break="abstain"), [0, 1, 2, -1])


def test_uniform_prior_by_default_and_score() -> None:
    mv = MajorityVoter(cardinality=3)
    np.testing.assert_allclose(mv.predict_proba(L)[2], [1 / 3] * 3)
    assert mv.score(L[:2], [0, 1])["accuracy"] == 1.0

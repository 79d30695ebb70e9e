"""The posterior stage: from fitted tables to ``log P(Y | votes)``, chunk by chunk.

Pure functions, below the estimators and above the statistics in the data flow: a label
matrix's votes (:mod:`metal.matrix`) and a fitted model's tables in, log posteriors out.

What counts as evidence (``evidence``):

``"votes"``
    each vote ``v`` of a source enters as ``P(v | y)``; abstentions are ignored (the moment
    fit's default: its abstention probabilities are the least reliable part of it).
``"votes_given_voted"``
    each vote enters as ``P(v | y, the source voted)`` (Dawid-Skene's model: coverage does not
    depend on the class).
``"votes_and_abstains"``
    the exact posterior of the model: votes as ``P(v | y)`` and every silent source as
    ``P(abstain | y)``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from metal.errors import ConfigError
from metal.matrix import LabelMatrix

EVIDENCE = ("votes", "votes_given_voted", "votes_and_abstains")


def log_tables(
    indicator_probs: np.ndarray,
    abstain_probs: np.ndarray,
    class_balance: np.ndarray,
    indicator_group: np.ndarray,
    emitted: np.ndarray,
    evidence: str,
    floor: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-indicator log table, per-class base score, and the mask of unseen indicators.

    Parameters
    ----------
    indicator_probs
        ``(D, K)`` ``P(indicator fires | y)``.
    abstain_probs
        ``(G, K)`` ``P(group abstains | y)``.
    class_balance
        ``(K,)``.
    indicator_group
        ``(D,)`` group of each indicator.
    emitted
        Indices of the indicators seen in fit; the others carry no evidence (table row 0).
    evidence
        One of :data:`EVIDENCE`.
    floor
        Lower bound on every probability, so one source cannot veto a class outright.

    Returns
    -------
    table, base, unseen
        ``score(row) = base + sum of table rows of the indicators that fired``.
    """
    if evidence not in EVIDENCE:
        raise ConfigError(f"evidence={evidence!r} is not known; expected one of {EVIDENCE}")
    floor = max(float(floor), 1e-12)
    mu = np.clip(indicator_probs, floor, None)
    abst = np.clip(abstain_probs, floor, None)
    base = np.log(class_balance).astype(np.float64)
    if evidence == "votes_and_abstains":
        table = np.log(mu) - np.log(abst)[indicator_group]
        base = base + np.log(abst).sum(axis=0)
    elif evidence == "votes_given_voted":
        voted = np.clip(1.0 - abstain_probs, floor, None)
        table = np.log(mu) - np.log(voted)[indicator_group]
    else:
        table = np.log(mu)
    unseen = np.ones(indicator_probs.shape[0], dtype=bool)
    unseen[emitted] = False
    table[unseen] = 0.0
    return table, base, unseen


def normalise(scores: np.ndarray) -> np.ndarray:
    """Rows of unnormalised log scores -> log probabilities (in place where possible)."""
    top = scores.max(axis=1, keepdims=True)
    scores -= top
    scores -= np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return scores


def log_posterior(
    L: LabelMatrix,
    encode: object,
    table: np.ndarray,
    base: np.ndarray,
    unseen: np.ndarray,
    chunk_rows: int,
) -> tuple[np.ndarray, int]:
    """``(n, K)`` log posterior of every row of ``L`` and the number of unseen votes.

    ``encode(chunk) -> (local rows, indicators)`` maps a chunk of votes to fired indicators
    (:meth:`metal.label_model.coding.SourceCoding.encode`). One sparse product per chunk.
    """
    out = np.empty((L.n_rows, table.shape[1]))
    n_unseen = 0
    for chunk in L.iter_votes(chunk_rows):
        rows, ind = encode(chunk)  # type: ignore[operator]
        n_unseen += int(unseen[ind].sum())
        A = sp.csr_matrix((np.ones(ind.size), (rows, ind)),
                          shape=(chunk.stop - chunk.start, table.shape[0]))
        out[chunk.start:chunk.stop] = normalise(base[None, :] + A @ table)
    return out, n_unseen

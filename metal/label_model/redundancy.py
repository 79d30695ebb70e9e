"""Label-free down-weighting of redundant sources (sources that fire together beyond ``Y``).

A label model that treats its sources as independent given the label counts a group of
near-duplicate sources (labeling functions sharing a pattern, overlapping keyword lists) once
per member: ``r`` copies of one source move the posterior ``r`` times as far as one. Where the
dependency graph is not known, the fitted model itself shows the redundancy: given ``Y`` the
sources' firing indicators should be uncorrelated, so the *residual* correlation

    R_ij = E_rows E_{y ~ posterior} [(x_i - f_i(y)) (x_j - f_j(y))] / sqrt(C_ii C_jj)

(``x_i`` = source ``i`` fired on the row, ``f_i(y)`` = the model's ``P(i fires | y)``) is
near zero for independent sources and near one for copies. Source ``i``'s evidence is then
weighted by ``w_i = 1 / (1 + sum_j R_ij)`` over the sources ``j`` whose residual correlation
with ``i`` is significantly positive: ``r`` exact copies get ``1 / r`` each (together one
source), an independent source keeps 1. Only correlations above the noise level count: a
one-sided test at family-wise level ``alpha`` (Bonferroni over the pairs) against the null
standard error ``1 / sqrt(n)``, so sampling noise over many sources does not shrink every
weight. The weights change the posterior, not the fitted tables.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import norm

#: family-wise level of the "positively correlated given Y" test (a conventional 5%)
REDUNDANCY_ALPHA = 0.05

__all__ = ["REDUNDANCY_ALPHA", "redundancy_weights", "residual_correlation"]


def residual_correlation(fires: sp.spmatrix, posterior: np.ndarray, fire_probs: np.ndarray,
                         row_weights: np.ndarray | None = None) -> np.ndarray:
    """``(m, m)`` correlation of the sources' firing indicators given the latent state.

    Parameters
    ----------
    fires
        ``(n, m)`` 0/1 sparse matrix: source ``i`` fired (voted) on row ``r``.
    posterior
        ``(n, K)`` the model's posterior over the latent states of each row.
    fire_probs
        ``(m, K)`` the model's ``P(source i fires | state y)``.
    row_weights
        Optional ``(n,)`` counts of the rows (for deduplicated rows).

    Returns
    -------
    ndarray
        Residual correlations, 0 on the diagonal.
    """
    X = sp.csr_matrix(fires, dtype=np.float64)
    w = np.ones(X.shape[0]) if row_weights is None else np.asarray(row_weights, np.float64)
    Xw = sp.diags(w) @ X
    xx = np.asarray((X.T @ Xw).todense())
    # E_post[x_i f_j(y)] and E_post[f_i(y) f_j(y)], summed over the rows
    xf = np.asarray(Xw.T @ (posterior @ fire_probs.T))
    mass = w @ posterior
    ff = (fire_probs * mass[None, :]) @ fire_probs.T
    cov = xx - xf - xf.T + ff
    sd = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    corr: np.ndarray = cov / sd[:, None] / sd[None, :]
    np.fill_diagonal(corr, 0.0)
    return corr


def redundancy_weights(fires: sp.spmatrix, posterior: np.ndarray, fire_probs: np.ndarray,
                       row_weights: np.ndarray | None = None,
                       alpha: float = REDUNDANCY_ALPHA) -> np.ndarray:
    """``(m,)`` weight of each source's evidence: ``1 / (1 + sum of its significant positive
    residual correlations)`` (see the module docstring); 1 for a source with none."""
    corr = residual_correlation(fires, posterior, fire_probs, row_weights)
    m = corr.shape[0]
    n = float(fires.shape[0] if row_weights is None else np.sum(row_weights))
    n_pairs = max(m * (m - 1) // 2, 1)
    threshold = float(norm.isf(alpha / n_pairs)) / np.sqrt(max(n, 1.0))
    excess = np.where(corr > threshold, corr, 0.0).sum(axis=1)
    out: np.ndarray = 1.0 / (1.0 + excess)
    return out

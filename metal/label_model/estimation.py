"""Estimating class-conditional source parameters from second moments (no labels).

Pure functions on small dense matrices: their cost depends on the number of indicators ``d``,
never on the number of rows.

Model. Each group ``g`` (a source, or a clique of dependent sources) emits one of its codes or
abstains; ``mu[a, y] = P(indicator a fires | Y = y)`` and the abstain probability of a group
is ``1 - sum`` of its indicators' ``mu``. Groups are conditionally independent given ``Y``,
so for indicators ``a, b`` of different groups (the index set *Omega*)::

    E[psi_a psi_b] = sum_y p_y mu[a, y] mu[b, y]         i.e.  O = mu P mu^T  on Omega
    E[psi_a]       = sum_y p_y mu[a, y]

Two estimators are implemented:

``"moments"``
    Masked least squares on those equations (the moment-matching view).
``"inverse"``
    The paper's Algorithm 1 generalised to ``k`` classes: with ``O = D + mu P mu^T`` (``D``
    block diagonal over groups), Woodbury gives ``O^-1 + Z Z^T = D^-1``, zero on Omega, with
    ``Z`` of rank ``k``. Solve ``min_Z ||O^-1 + Z Z^T||_Omega``, complete the low-rank part
    ``Q = O Z (I + Z^T O Z)^-1 Z^T O = mu P mu^T`` everywhere, then fit ``mu`` to ``Q``.

``mu`` is parameterised by a softmax over each group's codes plus abstain, so the row-sum
(coverage) constraint holds by construction. Class permutation symmetry is broken afterwards
by an assignment step ("sources agree with the truth more than with any other class, on
average"), never by enumerating ``k!`` permutations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from metal.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used, so `import metal` stays light
    import torch

METHODS = ("moments", "inverse")


@dataclass(frozen=True)
class MomentProblem:
    """Observed statistics of the emitted indicators, and how each relates to the classes.

    Attributes
    ----------
    second
        ``(d, d)`` ``E[psi psi^T]``.
    means
        ``(d,)`` ``E[psi]``.
    groups
        ``(d,)`` group (source or clique) of each indicator, ``0..n_groups-1``.
    n_groups
        Number of groups.
    agreement
        ``(d, K)`` in ``[0, 1]``: how much indicator ``a`` says "the class is ``y``". Used for
        the initial point and to name the recovered classes.
    omega_mask
        Optional ``(d, d)`` boolean mask of the pairs whose moments factorise given ``Y``
        (e.g. excluding pairs of dependent sources, or overlapping cliques). Default: every
        pair of indicators from different groups.
    third
        Optional ``(d, d, d)`` third moments ``E[psi_a psi_b psi_c]``. Used (on triples from
        three different groups) only when the class balance is estimated: second moments leave
        it weakly identified (for two classes, exactly one flat direction), third moments pin
        it down.
    """

    second: np.ndarray
    means: np.ndarray
    groups: np.ndarray
    n_groups: int
    agreement: np.ndarray
    omega_mask: np.ndarray | None = None
    third: np.ndarray | None = None

    @property
    def omega(self) -> np.ndarray:
        """Boolean ``(d, d)`` mask of the index set Omega used in the fit."""
        if self.omega_mask is not None:
            return self.omega_mask
        return self.groups[:, None] != self.groups[None, :]


@dataclass
class MomentFit:
    """Result of :func:`fit_moments`."""

    mu: np.ndarray  # (d, K)
    abstain: np.ndarray  # (n_groups, K)
    class_balance: np.ndarray  # (K,)
    # final objective: squared residuals of the second moments on Omega (of Q everywhere for
    # "inverse") and of the means, over the squared norm of those targets (1 at mu = 0); plus
    # the third-moment and l2 terms when they are used
    loss: float
    n_iter: int  # L-BFGS iterations taken (0: the tolerance was met at the start)
    permutation: np.ndarray  # latent class j was renamed permutation[j]


def _resolve_device(device: str | torch.device) -> torch.device:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={device!r} is not a torch device; use 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r} was requested but CUDA is not available on this machine; "
            "use device='cpu'"
        )
    return dev


def initial_mu(problem: MomentProblem, K: int, strength: float = 2.0,
               class_balance: np.ndarray | None = None) -> np.ndarray:
    """A "better than random" starting point: agreeing indicators fire more often.

    ``mu[a, y] = means[a] * w[a, y] / sum_c p_c w[a, c]`` with ``w = strength`` where indicator
    ``a`` agrees with ``y``, ``1 / strength`` where it does not (linear in between), and ``p``
    the class balance of the fit (uniform when it is estimated). The normalisation makes the
    point agree with the observed first moments, ``sum_y p_y mu[a, y] = means[a]``, which the
    fit matches exactly: the point is also the centre of the fit's ridge, and a centre that
    contradicts the means makes the ridge pull each source's accuracy by an amount that depends
    on its coverage and on ``K`` (unnormalised, a unipolar source's centre implied a coverage
    ``(strength + (K - 1) / strength) / K`` times the observed one). Where a group's total for
    a class exceeds 0.99 its indicators are scaled down to 0.99, and no entry is below ``1e-6``.
    """
    weight = 1.0 / strength + (strength - 1.0 / strength) * problem.agreement
    p = np.full(K, 1.0 / K) if class_balance is None else np.asarray(class_balance, np.float64)
    weight = weight / (weight @ p)[:, None]
    mu = problem.means[:, None] * weight
    # keep each group's total below 0.99 so the abstain logit stays finite
    totals = np.zeros((problem.n_groups, K))
    np.add.at(totals, problem.groups, mu)
    scale = np.minimum(1.0, 0.99 / np.maximum(totals, 1e-12))
    return np.clip(mu * scale[problem.groups], 1e-6, None)


def _logits_from_mu(mu: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    totals = np.zeros((n_groups, mu.shape[1]))
    np.add.at(totals, groups, mu)
    abstain = np.clip(1.0 - totals, 1e-6, None)
    return np.log(np.clip(mu, 1e-12, None)) - np.log(abstain)[groups]


class _Parameterisation:
    """Softmax over each group's codes plus a fixed zero logit for abstain."""

    def __init__(self, groups: torch.Tensor, n_groups: int, K: int) -> None:
        self.groups = groups
        self.n_groups = n_groups
        self.K = K

    def __call__(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        zeros = torch.zeros(self.n_groups, self.K, dtype=logits.dtype, device=logits.device)
        index = self.groups[:, None].expand_as(logits)
        gmax = zeros.scatter_reduce(0, index, logits.detach(), "amax", include_self=True)
        e = torch.exp(logits - gmax[self.groups])
        denom = torch.exp(-gmax).index_add(0, self.groups, e)
        return e / denom[self.groups], torch.exp(-gmax) / denom


class _ThreadLimit:
    """Use one torch thread while fitting small problems, then restore the setting.

    The moment matrices are tiny (d x d, d = number of indicators); OpenMP threads only add
    synchronisation, which on a busy machine slows small ops down by an order of magnitude.
    """

    def __init__(self, d: int, threshold: int = 400) -> None:
        import torch

        self.active = d < threshold
        self.saved = torch.get_num_threads()

    def __enter__(self) -> None:
        import torch

        if self.active and self.saved != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.active and self.saved != 1:
            torch.set_num_threads(self.saved)


def _lbfgs(
    params: list[torch.Tensor],
    loss_fn: Callable[[], torch.Tensor],
    max_iter: int,
    tol: float,
) -> tuple[float, int]:
    import torch

    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol * 1e-3,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)
    state = opt.state[opt._params[0]]
    with torch.no_grad():
        final = float(loss_fn())
    return final, int(state.get("n_iter", 0))


def complete_low_rank(
    problem: MomentProblem,
    K: int,
    *,
    max_iter: int = 500,
    tol: float = 1e-10,
    ridge: float = 1e-8,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> np.ndarray:
    """Algorithm 1's completion step: return ``Q``, the estimate of ``mu P mu^T`` everywhere."""
    import torch

    dev = _resolve_device(device)
    O = torch.as_tensor(problem.second, dtype=torch.float64, device=dev)
    d = O.shape[0]
    O_inv = torch.linalg.inv(O + ridge * torch.eye(d, dtype=torch.float64, device=dev))
    mask = torch.as_tensor(problem.omega, device=dev)
    scale = float((O_inv[mask] ** 2).sum().clamp_min(1e-30))
    # start from the Woodbury form with D approximated by diag(means)
    mu0 = initial_mu(problem, K)
    gen = np.random.default_rng(seed)
    z0 = mu0 / np.maximum(problem.means, 1e-6)[:, None] * np.sqrt(1.0 / K)
    z0 = z0 + 1e-3 * gen.standard_normal(z0.shape)
    Z = torch.tensor(z0, dtype=torch.float64, device=dev, requires_grad=True)

    weight = mask.to(torch.float64)

    def loss_fn() -> torch.Tensor:
        R = (O_inv + Z @ Z.T) * weight
        return (R**2).sum() / scale

    with _ThreadLimit(d):
        _lbfgs([Z], loss_fn, max_iter, tol)
    with torch.no_grad():
        I = torch.eye(K, dtype=torch.float64, device=dev)
        OZ = O @ Z
        Q = OZ @ torch.linalg.solve(I + Z.T @ OZ, OZ.T)
    return Q.cpu().numpy()


def fit_moments(
    problem: MomentProblem,
    K: int,
    *,
    class_balance: np.ndarray | None = None,
    method: str = "moments",
    init_mu: np.ndarray | None = None,
    max_iter: int = 500,
    tol: float = 1e-10,
    l2: float = 0.0,
    tied: bool = False,
    projection: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> MomentFit:
    """Fit ``mu`` (and the class balance when it is not given) to the observed moments.

    Parameters
    ----------
    problem
        The observed statistics.
    K
        Number of latent classes.
    class_balance
        ``(K,)`` prior ``P(Y)``; ``None`` estimates it jointly with ``mu``.
    method
        ``"moments"`` (masked least squares) or ``"inverse"`` (Algorithm 1).
    init_mu
        Optional ``(d, K)`` starting point; default :func:`initial_mu`.
    max_iter, tol
        L-BFGS iteration budget and gradient tolerance (on a loss normalised to start near 1).
    l2
        Strength of a ridge pulling the logits towards the starting point.
    tied
        If True, each indicator has two parameters, not ``K``: its logit is
        ``b + (a - b) * agreement[:, y]``, so the probability of a vote is the same under every
        class it disagrees with (the paper's simplified class-conditional model; far better
        conditioned for sparse, unipolar sources). If False, every ``(indicator, class)`` pair
        is free.
    projection
        Optional ``(d, K)`` int array: ``mu[a, y]`` shares one parameter across the classes
        ``y`` with the same ``projection[a, y]`` (e.g. feasible vectors that agree on a
        source's tasks). Needs ``method="moments"``; ignored when ``tied``.
    device
        Torch device for the fit (``"cpu"`` or ``"cuda"``). On ``"cpu"``, ``method="moments"``
        without a projection (and without third moments) runs in numpy with a closed-form
        gradient and scipy's L-BFGS-B (the same objective; no autograd overhead per step);
        the other cases use torch's L-BFGS.
    seed
        Seed of this fit's own random generator (no global state is touched).
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not known; expected one of {METHODS}")
    if (method == "moments" and (projection is None or tied) and str(device) == "cpu"
            and (class_balance is not None or problem.third is None)):
        # the default path: closed-form gradient in numpy and scipy's L-BFGS-B (the same
        # optimum as the torch path below, without autograd's per-step overhead on tiny d)
        return _fit_moments_numpy(problem, K, class_balance=class_balance, init_mu=init_mu,
                                  max_iter=max_iter, tol=tol, l2=l2, tied=tied, seed=seed)
    return _fit_moments_torch(problem, K, class_balance=class_balance, method=method,
                              init_mu=init_mu, max_iter=max_iter, tol=tol, l2=l2, tied=tied,
                              projection=projection, device=device, seed=seed)


# ------------------------------------------------------------------ the torch path, by stage
def _moment_target(problem: MomentProblem, means: torch.Tensor, K: int, method: str,
                   max_iter: int, tol: float, dev: torch.device, seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Stage 1: the second-moment target, its 0/1 weight (Omega, or all entries after a
    low-rank completion) and the loss scale (so the loss starts near 1)."""
    import torch

    if method == "inverse":
        target = torch.as_tensor(
            complete_low_rank(problem, K, max_iter=max_iter, tol=tol, device=dev, seed=seed),
            dtype=torch.float64, device=dev)
        mask = torch.ones_like(target, dtype=torch.bool)
    else:
        target = torch.as_tensor(problem.second, dtype=torch.float64, device=dev)
        mask = torch.as_tensor(problem.omega, device=dev)
    scale = float((target[mask] ** 2).sum() + (means**2).sum())
    # multiplying by a 0/1 weight is much cheaper than boolean indexing (and its backward)
    return target, mask.to(torch.float64), max(scale, 1e-30)


def _logit_parameters(logits0: torch.Tensor, agree: torch.Tensor, tied: bool,
                      projection: np.ndarray | None
                      ) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """Stage 2: the free parameters of the logits (tied, projected or free) started at
    ``logits0``, and the map from them back to the ``(d, K)`` logits."""
    import torch

    if projection is not None and not tied:
        proj = torch.as_tensor(projection, dtype=torch.int64, device=logits0.device)
        # start: the mean logit of the untied starting point over each tied block
        n_blocks = int(projection.max()) + 1
        block_sum = torch.zeros(proj.shape[0], n_blocks, dtype=torch.float64,
                                device=logits0.device)
        block_sum.scatter_add_(1, proj, logits0)
        count = torch.zeros_like(block_sum).scatter_add_(1, proj, torch.ones_like(logits0))
        theta = (block_sum / count.clamp_min(1.0)).requires_grad_(True)
        return [theta], lambda: theta.gather(1, proj)
    if tied:
        on = (logits0 * agree).sum(1) / agree.sum(1).clamp_min(1e-12)
        off = (logits0 * (1 - agree)).sum(1) / (1 - agree).sum(1).clamp_min(1e-12)
        # "better than random" per indicator: on = off + softplus(gap) >= off
        gap0 = torch.clamp(on - off, min=1e-3)
        gap_raw0 = gap0 + torch.log(-torch.expm1(-gap0))  # inverse softplus
        ab = torch.stack([gap_raw0, off], 1).clone().requires_grad_(True)
        return [ab], lambda: ab[:, 1:2] + torch.nn.functional.softplus(ab[:, 0:1]) * agree
    free = logits0.clone().requires_grad_(True)
    return [free], lambda: free


def _balance_parameter(class_balance: np.ndarray | None, K: int, dev: torch.device
                       ) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """Stage 3: ``P(Y)``, a softmax parameter when it is estimated, else the given constant."""
    import torch

    if class_balance is None:
        p_logits = torch.zeros(K, dtype=torch.float64, device=dev, requires_grad=True)
        return [p_logits], lambda: torch.softmax(p_logits, 0)
    p_fixed = torch.as_tensor(class_balance, dtype=torch.float64, device=dev)
    return [], lambda: p_fixed


def _third_moment_term(problem: MomentProblem, dev: torch.device
                       ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The normalised third-moment residual over triples from three different groups."""
    import torch

    assert problem.third is not None
    third = torch.as_tensor(problem.third, dtype=torch.float64, device=dev)
    g = torch.as_tensor(problem.groups, device=dev)
    mask3 = ((g[:, None, None] != g[None, :, None]) & (g[:, None, None] != g[None, None, :])
             & (g[None, :, None] != g[None, None, :]))
    scale3 = max(float((third[mask3] ** 2).sum()), 1e-30)

    def term(mu: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        pred3 = torch.einsum("ay,by,cy,y->abc", mu, mu, mu, p)
        return ((third - pred3)[mask3] ** 2).sum() / scale3

    return term


def _fit_moments_torch(problem: MomentProblem, K: int, *, class_balance: np.ndarray | None,
                       method: str, init_mu: np.ndarray | None, max_iter: int, tol: float,
                       l2: float, tied: bool, projection: np.ndarray | None,
                       device: str | torch.device, seed: int) -> MomentFit:
    """:func:`fit_moments` with torch's L-BFGS: target, parameters, loss, optimise, name."""
    import torch

    if projection is not None and not tied and method != "moments":
        raise ConfigError("a projection (tied blocks of classes) needs method='moments'")
    dev = _resolve_device(device)
    param = _Parameterisation(torch.as_tensor(problem.groups, dtype=torch.int64, device=dev),
                              problem.n_groups, K)
    means = torch.as_tensor(problem.means, dtype=torch.float64, device=dev)
    target, weight, scale = _moment_target(problem, means, K, method, max_iter, tol, dev,
                                           seed)
    mu_start = (initial_mu(problem, K, class_balance=class_balance) if init_mu is None
                else init_mu)
    logits0 = torch.tensor(_logits_from_mu(mu_start, problem.groups, problem.n_groups),
                           dtype=torch.float64, device=dev)
    agree = torch.as_tensor(problem.agreement, dtype=torch.float64, device=dev)
    params, current_logits = _logit_parameters(logits0, agree, tied, projection)
    balance_params, balance = _balance_parameter(class_balance, K, dev)
    params += balance_params
    estimate_balance = class_balance is None
    third_term = (_third_moment_term(problem, dev)
                  if estimate_balance and problem.third is not None else None)

    def loss_fn() -> torch.Tensor:
        logits = current_logits()
        mu, _ = param(logits)
        p = balance()
        R = (target - mu @ (mu * p).T) * weight
        r1 = means - mu @ p
        loss = ((R**2).sum() + (r1**2).sum()) / scale
        if third_term is not None:
            loss = loss + third_term(mu, p)
        if l2 > 0:
            loss = loss + l2 * ((logits - logits0) ** 2).mean()
        return loss

    with _ThreadLimit(problem.means.shape[0]):
        loss, n_iter = _lbfgs(params, loss_fn, max_iter, tol)
    with torch.no_grad():
        mu_t, abst_t = param(current_logits())
        mu = mu_t.cpu().numpy()
        abstain = abst_t.cpu().numpy()
        p = balance().cpu().numpy().copy()

    # stage 5: name the classes. Tied parameters name them by construction (a vote "agrees"
    # with one class)
    perm = np.arange(K) if tied else name_classes(mu, problem.agreement)
    if not np.array_equal(perm, np.arange(K)):
        inv = np.argsort(perm)
        mu, abstain, p_perm = mu[:, inv], abstain[:, inv], p[inv]
        if estimate_balance:
            p = p_perm
        elif init_mu is None:  # refit once; a refit never triggers another
            # the prior pins the class names: restart from the renamed solution
            refit = _fit_moments_torch(
                problem, K, class_balance=class_balance, method=method, init_mu=mu,
                max_iter=max_iter, tol=tol, l2=l2, tied=tied, projection=projection,
                device=dev, seed=seed)
            refit.permutation = perm
            return refit
    return MomentFit(mu=mu, abstain=abstain, class_balance=p, loss=loss, n_iter=n_iter,
                     permutation=perm)


class _MomentLoss:
    """Loss of :func:`fit_moments` (method ``"moments"``) and its gradient, in numpy.

    The same objective as the torch path: ``(||W o (O - mu P mu^T)||^2 + ||means - mu p||^2) /
    scale + l2 * mean((logits - logits0)^2)``, with ``mu`` a softmax over each group's codes
    plus a zero abstain logit, and either free or tied logits (``off + softplus(gap) *
    agreement``). The matrices are ``d x d`` with small ``d``: a closed-form gradient costs a
    few matrix products, where autograd's bookkeeping dominated the step.
    """

    def __init__(self, problem: MomentProblem, K: int, logits0: np.ndarray,
                 class_balance: np.ndarray | None, l2: float, tied: bool) -> None:
        import scipy.sparse as sp

        d = problem.means.shape[0]
        self.K, self.d, self.tied, self.l2 = K, d, tied, float(l2)
        self.groups = np.asarray(problem.groups, dtype=np.int64)
        self.n_groups = int(problem.n_groups)
        # group sums and maxima of per-indicator quantities: by segments when the indicators
        # come sorted by group (the usual case), else through a 0/1 matrix
        self.sorted = bool((np.diff(self.groups) >= 0).all())
        present, self.starts, self.sizes = np.unique(self.groups, return_index=True,
                                                     return_counts=True)
        self.singletons = self.sorted and bool((self.sizes == 1).all())
        self.present = present
        self.member = sp.csr_matrix((np.ones(d), (self.groups, np.arange(d))),
                                    shape=(self.n_groups, d))
        self.target = np.asarray(problem.second, dtype=np.float64)
        self.weight = np.asarray(problem.omega, dtype=np.float64)
        self.symmetric = bool(np.array_equal(self.target, self.target.T)
                              and np.array_equal(self.weight, self.weight.T))
        self.means = np.asarray(problem.means, dtype=np.float64)
        mask = self.weight > 0
        self.scale = max(float((self.target[mask] ** 2).sum() + (self.means ** 2).sum()), 1e-30)
        self.agree = np.asarray(problem.agreement, dtype=np.float64)
        self.logits0 = logits0
        self.estimate_balance = class_balance is None
        self.p_fixed = None if class_balance is None else np.asarray(class_balance, np.float64)

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        n = 2 * self.d if self.tied else self.d * self.K
        body = x[:n].reshape(self.d, 2) if self.tied else x[:n].reshape(self.d, self.K)
        return body, (x[n:] if self.estimate_balance else None)

    def logits(self, body: np.ndarray) -> np.ndarray:
        if self.tied:
            return body[:, 1:2] + np.logaddexp(0.0, body[:, 0:1]) * self.agree
        return body

    def balance(self, p_logits: np.ndarray | None) -> np.ndarray:
        if p_logits is None:
            assert self.p_fixed is not None
            return self.p_fixed
        e = np.exp(p_logits - p_logits.max())
        return e / e.sum()

    def probs(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mu`` (d, K) and the abstain probabilities (n_groups, K)."""
        if self.singletons:  # one indicator per group: no reductions needed
            gmax = np.maximum(logits, 0.0)
            e = np.exp(logits - gmax)
            rest = np.exp(-gmax)
            denom = rest + e
            abstain = np.ones((self.n_groups, self.K))
            abstain[self.present] = rest / denom
            return e / denom, abstain
        gmax = np.zeros((self.n_groups, self.K))
        if self.sorted:
            gmax[self.present] = np.maximum(np.maximum.reduceat(logits, self.starts, axis=0), 0)
        else:
            np.maximum.at(gmax, self.groups, logits)
        e = np.exp(logits - gmax[self.groups])
        denom = np.exp(-gmax) + self.group_sum(e)
        return e / denom[self.groups], np.exp(-gmax) / denom

    def group_sum(self, x: np.ndarray) -> np.ndarray:
        """``(n_groups, K)`` sums of the rows of ``x`` over each group."""
        if self.sorted:
            out = np.zeros((self.n_groups, x.shape[1]))
            out[self.present] = np.add.reduceat(x, self.starts, axis=0)
            return out
        return np.asarray(self.member @ x)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        body, p_logits = self.split(x)
        logits = self.logits(body)
        mu, _ = self.probs(logits)
        p = self.balance(p_logits)
        mu_p = mu * p
        R = (self.target - mu @ mu_p.T) * self.weight
        r1 = self.means - mu @ p
        loss = (float((R * R).sum()) + float(r1 @ r1)) / self.scale
        # d loss / d mu (R is already masked; d pred / d mu through both factors)
        RmuP = R @ mu_p
        g_mu = -2.0 * (RmuP + (RmuP if self.symmetric else R.T @ mu_p))
        g_mu -= 2.0 * r1[:, None] * p[None, :]
        g_mu /= self.scale
        # through the group softmax: d mu_a / d l_b = mu_a (1[a=b] - mu_b) within a group
        gm = g_mu * mu
        inner = gm if self.singletons else self.group_sum(gm)[self.groups]
        g_logits = mu * g_mu - mu * inner
        if self.l2 > 0:
            diff = logits - self.logits0
            loss += self.l2 * float((diff * diff).mean())
            g_logits += (2.0 * self.l2 / diff.size) * diff
        if self.tied:
            # softplus' = sigmoid; exp overflows to inf for very negative bodies, which gives
            # the right limit 0, so the warning is noise (same formula, same bits otherwise)
            with np.errstate(over="ignore"):
                soft_grad = 1.0 / (1.0 + np.exp(-body[:, 0]))
            g_body = np.stack([(g_logits * self.agree).sum(1) * soft_grad,
                               g_logits.sum(1)], axis=1)
        else:
            g_body = g_logits
        if not self.estimate_balance:
            return loss, g_body.ravel()
        # d loss / d p, then through the softmax of the balance logits
        g_p = -2.0 * (np.einsum("ay,ay->y", mu, R @ mu) + r1 @ mu) / self.scale
        g_pl = p * (g_p - float(g_p @ p))
        return loss, np.concatenate([g_body.ravel(), g_pl])


def _fit_moments_numpy(problem: MomentProblem, K: int, *, class_balance: np.ndarray | None,
                       init_mu: np.ndarray | None, max_iter: int, tol: float, l2: float,
                       tied: bool, seed: int) -> MomentFit:
    """:func:`fit_moments` for ``method="moments"`` without a projection or third moments."""
    from scipy.optimize import minimize

    mu_start = (initial_mu(problem, K, class_balance=class_balance) if init_mu is None
                else init_mu)
    logits0 = _logits_from_mu(mu_start, problem.groups, problem.n_groups)
    fun = _MomentLoss(problem, K, logits0, class_balance, l2, tied)
    if tied:
        agree = fun.agree
        on = (logits0 * agree).sum(1) / np.maximum(agree.sum(1), 1e-12)
        off = (logits0 * (1 - agree)).sum(1) / np.maximum((1 - agree).sum(1), 1e-12)
        # "better than random" per indicator: on = off + softplus(gap) >= off
        gap0 = np.maximum(on - off, 1e-3)
        body0 = np.stack([gap0 + np.log(-np.expm1(-gap0)), off], axis=1)  # inverse softplus
    else:
        body0 = logits0
    x0 = body0.ravel()
    if class_balance is None:
        x0 = np.concatenate([x0, np.zeros(K)])
    res = minimize(fun, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": int(max_iter), "maxfun": int(max_iter * 1.25) + 1,
                            "maxcor": 50, "gtol": tol, "ftol": tol * 1e-3})
    body, p_logits = fun.split(res.x)
    mu, abstain = fun.probs(fun.logits(body))
    p = fun.balance(p_logits).copy()
    loss = float(fun(res.x)[0])
    n_iter = int(res.nit)
    # tied parameters name the classes by construction (a vote "agrees" with one class)
    perm = np.arange(K) if tied else name_classes(mu, problem.agreement)
    if not np.array_equal(perm, np.arange(K)):
        inv = np.argsort(perm)
        mu, abstain, p_perm = mu[:, inv], abstain[:, inv], p[inv]
        if class_balance is None:
            p = p_perm
        elif init_mu is None:  # refit once; a refit never triggers another
            # the prior pins the class names: restart from the renamed solution
            refit = _fit_moments_numpy(problem, K, class_balance=class_balance, init_mu=mu,
                                       max_iter=max_iter, tol=tol, l2=l2, tied=tied, seed=seed)
            refit.permutation = perm
            return refit
    return MomentFit(mu=mu, abstain=abstain, class_balance=p, loss=loss, n_iter=n_iter,
                     permutation=perm)


def name_classes(mu: np.ndarray, agreement: np.ndarray) -> np.ndarray:
    """Assign a class name to each latent class (linear assignment, not ``k!`` enumeration).

    Returns ``perm`` with ``perm[j]`` = the class that latent class ``j`` should be called: the
    assignment maximising the total agreement of the votes each latent class produces.
    """
    # score[j, c]: expected agreement with class c of the votes cast when the latent class is j
    score = mu.T @ agreement
    rows, cols = linear_sum_assignment(-score)
    perm = np.empty(mu.shape[1], dtype=np.int64)
    perm[rows] = cols
    return perm

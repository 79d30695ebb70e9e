"""The math of WeaSEL as small pure torch functions (no state, no data handling).

Notation (Cachay et al., NeurIPS 2021): ``V`` is a batch of votes as distributions over the
classes, shape ``(b, m, k)`` (a one-hot row for a discrete vote, all zeros for an abstention,
any distribution for a probabilistic source); ``e`` are the encoder's raw scores, shape
``(b, m, c)`` with ``c = k`` (class-conditional accuracies) or ``c = 1``; ``theta`` are the
accuracies; the encoder's label is ``softmax(sum_j theta_j * V_j + log p)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ACCURACY_FUNCTIONS = ("softmax", "sigmoid", "relu", "tanh")
LOSSES = ("symmetric_ce", "hellinger", "l1", "ce_end", "ce_encoder")
_RELU_FLOOR = 1e-5  # the paper's ReLU ablation adds it so that no accuracy is exactly zero


def one_hot_votes(L: torch.Tensor, cardinality: int) -> torch.Tensor:
    """``(b, m)`` integer votes (``-1`` abstain) -> ``(b, m, k)`` float one-hot, zeros = abstain.

    Only ever called on a mini-batch, so the dense one-hot never covers the whole data set.
    """
    onehot = F.one_hot(L.clamp(min=0).long(), cardinality).to(torch.float32)
    return onehot * (L >= 0).unsqueeze(-1).to(torch.float32)


def accuracies(scores: torch.Tensor, kind: str = "softmax", tau1: float = 1.0,
               tau2: float | torch.Tensor = 1.0, voting: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Per-example source accuracies ``theta`` from the encoder's scores ``(b, m, c)``.

    ``softmax`` (the paper's choice): ``tau2 * softmax(tau1 * e)`` over the *sources* axis,
    separately for each of the ``c`` columns; ``sigmoid``: ``tau2 * sigmoid(tau1 * e)``;
    ``relu``: ``relu(e) + 1e-5``; ``tanh``: ``tanh(e)`` (may go negative: the paper's
    ablation that lets sources be adversarial).

    ``tau2`` is a number or a tensor broadcasting against ``(b, m, c)`` (one value per row).
    ``voting`` (``(b, m)`` bool), when given, restricts the softmax to the sources that vote
    on each row: the encoder then distributes a fixed budget ``tau2`` among the voters and
    cannot flatten its label by moving weight onto sources that abstain.
    """
    if kind == "softmax":
        z = tau1 * scores
        if voting is not None:
            z = z.masked_fill(~voting.unsqueeze(-1), -1e9)  # a row without votes: uniform
        return tau2 * torch.softmax(z, dim=1)
    if kind == "sigmoid":
        return tau2 * torch.sigmoid(tau1 * scores)
    if kind == "relu":
        return torch.relu(scores) + _RELU_FLOOR
    if kind == "tanh":
        return torch.tanh(scores)
    raise ValueError(f"unknown accuracy function {kind!r}; expected one of {ACCURACY_FUNCTIONS}")


def voted_scores(scores: torch.Tensor, votes: torch.Tensor) -> torch.Tensor:
    """Class-conditional scores ``(b, m, k)`` -> one score per source ``(b, m, 1)``: the score
    of the class it votes for (the expected score under a probabilistic vote).

    With the softmax over the voting sources, the accuracy of source ``j`` voting ``c`` is
    ``e[j, c]`` and all voters share one budget ``tau2``: the softmax runs over the voted
    cells of the ``(m, k)`` score matrix. A separate softmax per class column would give every
    voted class the whole budget (in column ``c`` only the sources voting ``c`` count, so the
    encoder can move all of column ``c``'s weight onto them), and the label of a row with
    conflicting votes would be uniform over the voted classes.
    """
    mass = votes.sum(dim=2, keepdim=True)
    return (scores * votes).sum(dim=2, keepdim=True) / mass.clamp(min=1e-12)


def aggregate(theta: torch.Tensor, votes: torch.Tensor, log_prior: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Logits ``sum_j theta_j * V_j (+ log p)`` of the encoder's label, shape ``(b, k)``.

    ``theta`` is ``(b, m, 1)`` (one accuracy per source) or ``(b, m, k)`` (class-conditional);
    either broadcasts against the votes ``(b, m, k)``.
    """
    logits = (theta * votes).sum(dim=1)
    return logits if log_prior is None else logits + log_prior


def default_tau2(n_sources: int) -> float:
    """The paper's scale of the accuracies: ``sqrt(m)``."""
    return math.sqrt(n_sources)


def _ce(log_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * log_pred).sum(dim=-1)


def agreement_loss(log_f: torch.Tensor, log_e: torch.Tensor, loss: str = "symmetric_ce",
                   stop_grad: bool = True) -> torch.Tensor:
    """Per-row loss between the end model's and the encoder's label distributions.

    Parameters
    ----------
    log_f, log_e
        ``(b, k)`` log-probabilities of the end model and of the encoder.
    loss
        ``"symmetric_ce"``: ``CE(y_f, [y_e]) + CE(y_e, [y_f])`` where ``[.]`` is the
        stop-gradient (when ``stop_grad``): the end model learns from the encoder's label and
        the encoder from the end model's, each as a constant target. ``"hellinger"`` (squared
        Hellinger distance ``1 - sum sqrt(y_f y_e)``) and ``"l1"`` are symmetric already and
        pass gradients to both sides. ``"ce_end"``: only ``CE(y_f, y_e)``; ``"ce_encoder"``:
        only ``CE(y_e, y_f)``; both asymmetric ablations pass gradients to both networks
        (a stop-gradient would leave one of them untrained).
    stop_grad
        Detach each side's target in ``"symmetric_ce"`` (``False`` is the paper's
        "no stop-grad" ablation). Ignored by the other losses.
    """
    if loss == "symmetric_ce":
        tgt_e = log_e.exp()
        tgt_f = log_f.exp()
        if stop_grad:
            tgt_e, tgt_f = tgt_e.detach(), tgt_f.detach()
        return _ce(log_f, tgt_e) + _ce(log_e, tgt_f)
    if loss == "hellinger":
        # 1 - Bhattacharyya coefficient, computed in log space so that sqrt never sees 0
        return 1.0 - torch.exp(0.5 * (log_f + log_e)).sum(dim=-1)
    if loss == "l1":
        return (log_f.exp() - log_e.exp()).abs().sum(dim=-1)
    if loss == "ce_end":
        return _ce(log_f, log_e.exp())
    if loss == "ce_encoder":
        return _ce(log_e, log_f.exp())
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the rows where ``mask`` holds (0 when no row does)."""
    weight = mask.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)

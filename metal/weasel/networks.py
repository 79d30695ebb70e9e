"""WeaSEL's encoder network: votes (+ features) -> raw per-source accuracy scores.

The end model is not defined here: WeaSEL trains the project's own end models
(:class:`metal.end_model.EndModel` / :class:`~metal.end_model.MultiTaskEndModel`), with their
input modules, trunk and heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def encoder_layers(in_dim: int, hidden: Sequence[int], batch_norm: bool, dropout: float
                   ) -> tuple[list[nn.Module], int]:
    """Hidden blocks ``Linear -> [BatchNorm] -> ReLU -> [Dropout]``; returns them and the width."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, int(h)))
        if batch_norm:
            layers.append(nn.BatchNorm1d(int(h)))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    return layers, width


class Encoder(nn.Module):
    """The paper's encoder: an MLP (two hidden layers of 70, batch norm) on votes and features.

    ``forward(votes, features)``: ``votes`` is ``(b, n_vote_inputs)``, the flattened ``(m, k)``
    one-hot (or probabilistic) votes of every task; ``features`` is a feature batch as the end
    model's input modules take it (dense tensor, sparse rows...) or ``None``. The features go
    through ``feature_module`` (e.g. :class:`~metal.end_model.DenseInput`, which standardises
    them, or :class:`~metal.end_model.SparseInput` for TF-IDF) and are concatenated with the
    votes. Output: ``(b, n_outputs)`` raw accuracy scores (``m`` or ``m * k`` per task).

    Any module with the same ``forward(votes, features)`` signature can replace it.
    """

    def __init__(self, n_vote_inputs: int, n_outputs: int,
                 feature_module: nn.Module | None = None, feature_dim: int = 0,
                 hidden: Sequence[int] = (70, 70), batch_norm: bool = True,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.n_vote_inputs = int(n_vote_inputs)
        self.n_outputs = int(n_outputs)
        self.feature_module = feature_module
        self.feature_dim = int(feature_dim) if feature_module is not None else 0
        self.hidden = [int(h) for h in hidden]
        self.batch_norm = bool(batch_norm)
        self.dropout = float(dropout)
        layers, width = encoder_layers(self.n_vote_inputs + self.feature_dim, self.hidden,
                                       self.batch_norm, self.dropout)
        self.net = nn.Sequential(*layers, nn.Linear(width, self.n_outputs))

    def config(self) -> dict[str, Any]:
        return {"n_vote_inputs": self.n_vote_inputs, "n_outputs": self.n_outputs,
                "feature_dim": self.feature_dim, "hidden": self.hidden,
                "batch_norm": self.batch_norm, "dropout": self.dropout}

    def forward(self, votes: torch.Tensor, features: Any = None) -> torch.Tensor:
        if self.feature_module is not None:
            if features is None:
                raise ValueError("this encoder reads the features; pass them")
            votes = torch.cat([votes, self.feature_module(features)], dim=1)
        return self.net(votes)  # type: ignore[no-any-return]

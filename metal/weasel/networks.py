"""The default networks of WeaSEL: the encoder and the (multi-task) MLP end model.

Both are plain ``torch.nn`` modules; any module with the same input and output shapes can
replace them (``WeaSEL(encoder=..., end_model=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp_layers(in_dim: int, hidden: Sequence[int], batch_norm: bool, dropout: float
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
    """The paper's encoder: an MLP (batch norm by default) from one-hot votes (+ features).

    Input: ``(b, in_dim)`` = the flattened ``(m, k)`` vote distributions of every task,
    followed by the features when they are used. Output: ``(b, out_dim)`` raw accuracy scores
    (``m`` or ``m * k`` per task).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (70, 70),
                 batch_norm: bool = True, dropout: float = 0.3) -> None:
        super().__init__()
        layers, width = mlp_layers(in_dim, hidden, batch_norm, dropout)
        self.net = nn.Sequential(*layers, nn.Linear(width, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class MLPEndModel(nn.Module):
    """Single-task end model: MLP trunk and one linear head; returns ``(b, k)`` logits."""

    def __init__(self, in_dim: int, cardinality: int, hidden: Sequence[int] = (50, 50, 25),
                 dropout: float = 0.3) -> None:
        super().__init__()
        layers, width = mlp_layers(in_dim, hidden, False, dropout)
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(width, cardinality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))  # type: ignore[no-any-return]


class MultiTaskMLPEndModel(nn.Module):
    """Shared MLP trunk with one linear head per task (``nn.ModuleDict`` keyed by task name).

    ``forward`` returns ``{task_name: (b, k_task) logits}``. The heads are stored under
    ``task_0, task_1, ...`` (a task name such as ``"type"`` may not be a module attribute).
    With one task it builds its
    parameters in the same order as :class:`MLPEndModel`, so the same seed gives the same
    initial weights.
    """

    def __init__(self, in_dim: int, tasks: dict[str, int], hidden: Sequence[int] = (50, 50, 25),
                 dropout: float = 0.3) -> None:
        super().__init__()
        layers, width = mlp_layers(in_dim, hidden, False, dropout)
        self.trunk = nn.Sequential(*layers)
        self.task_names = list(tasks)
        self.heads = nn.ModuleDict({f"task_{i}": nn.Linear(width, k)
                                    for i, k in enumerate(tasks.values())})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.trunk(x)
        return {name: self.heads[f"task_{i}"](z) for i, name in enumerate(self.task_names)}

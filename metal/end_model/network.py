"""The multi-task network: input module -> shared trunk -> one head per task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from metal.end_model.inputs import mlp_layers
from metal.errors import ConfigError


class MultiTaskNetwork(nn.Module):
    """``input_module`` -> trunk layers -> heads attached at chosen depths.

    Parameters
    ----------
    input_module
        Any module mapping a batch to ``(b, input_dim)``.
    input_dim
        Width of the input module's output.
    tasks
        ``{task_name: cardinality}`` in task order.
    hidden
        Widths of the shared trunk's layers (``Linear -> activation -> Dropout`` each).
    head_depth
        ``{task_name: depth}``: a head reads the output of trunk layer ``depth`` (``0`` = the
        input module's output); default the last layer. E.g. a coarse task at depth 1 and a
        fine task at depth 2.
    heads
        Optional ``{task_name: module}`` replacing the default ``Linear(width, k)`` head; it
        must map ``(b, width)`` to ``(b, k)`` logits.
    """

    def __init__(
        self,
        input_module: nn.Module,
        input_dim: int,
        tasks: Mapping[str, int],
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        head_depth: Mapping[str, int] | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.input_module = input_module
        self.task_names = list(tasks)
        self.trunk = nn.ModuleList(mlp_layers(int(input_dim), hidden, dropout, activation))
        widths = [int(input_dim)] + [int(h) for h in hidden]
        depth = dict(head_depth or {})
        unknown = sorted(set(depth) - set(tasks)) + sorted(set(heads or {}) - set(tasks))
        if unknown:
            raise ConfigError(f"head_depth/heads name tasks {unknown} that are not among "
                              f"{self.task_names}")
        self.head_depth = {t: int(depth.get(t, len(hidden))) for t in tasks}
        for t, d in self.head_depth.items():
            if not 0 <= d <= len(hidden):
                raise ConfigError(f"head_depth[{t!r}]={d}; expected 0..{len(hidden)} (0 = on "
                                  "the input module, len(hidden) = after the last trunk layer)")
        custom = dict(heads or {})
        # keyed by task position: task names may clash with Module attributes or contain dots
        self.heads = nn.ModuleDict({
            str(i): custom[t] if t in custom else nn.Linear(widths[self.head_depth[t]], int(k))
            for i, (t, k) in enumerate(tasks.items())})

    def head(self, task: str) -> nn.Module:
        """The head of ``task``."""
        return self.heads[str(self.task_names.index(task))]

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """``{task_name: (b, k_task) logits}``."""
        h = self.input_module(batch)
        out: dict[str, torch.Tensor] = {}
        for d in range(len(self.trunk) + 1):
            for t in self.task_names:
                if self.head_depth[t] == d:
                    out[t] = self.head(t)(h)
            if d < len(self.trunk):
                h = self.trunk[d](h)
        return {t: out[t] for t in self.task_names}


def reset_parameters(module: nn.Module) -> None:
    """Re-initialise ``module`` in place with the current torch RNG (deterministic per seed).

    A module with its own ``reset_parameters`` resets itself (and is trusted to reset its
    children, e.g. keeping pretrained embeddings); otherwise its children are visited.
    """
    if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
        module.reset_parameters()
        return
    for child in module.children():
        reset_parameters(child)

"""WeaSEL mode: train the end model directly from weak sources (no separate label model).

:class:`WeaSEL` (one task) and :class:`MultiTaskWeaSEL` (a task graph, one head per task)
follow the same ``fit / predict_proba / predict / score / save / load`` conventions as the label
models and train the project's end models (:mod:`metal.end_model`). See ``docs/weasel.md``.

The classes are imported on first use, so that ``import metal.weasel`` (e.g. by the command
line) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metal.weasel.model import WeaSEL, WeaSELBase, roc_auc
    from metal.weasel.multitask import MultiTaskWeaSEL
    from metal.weasel.networks import Encoder

_WHERE = {"WeaSEL": "model", "WeaSELBase": "model", "roc_auc": "model",
          "MultiTaskWeaSEL": "multitask", "Encoder": "networks"}

__all__ = ["Encoder", "MultiTaskWeaSEL", "WeaSEL", "WeaSELBase", "roc_auc"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"metal.weasel.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'metal.weasel' has no attribute {name!r}")

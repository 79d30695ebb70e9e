"""WeaSEL mode: train the end model directly from weak sources (no separate label model).

:class:`WeaSEL` (one task) and :class:`MultiTaskWeaSEL` (a task graph, one head per task)
follow the same ``fit / predict_proba / predict / score / save / load`` conventions as the label
models. See ``docs/weasel.md``.
"""

from metal.weasel.model import WeaSEL, WeaSELBase, roc_auc
from metal.weasel.multitask import MultiTaskWeaSEL
from metal.weasel.networks import Encoder

__all__ = ["Encoder", "MultiTaskWeaSEL", "WeaSEL", "WeaSELBase", "roc_auc"]

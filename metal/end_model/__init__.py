"""End models trained on probabilistic labels: input module -> shared trunk -> task heads.

The API other parts of metal build on:

* :class:`MultiTaskEndModel` ``(tasks, input_module=None, hidden=(128,), dropout=0.1,
  head_depth=None, heads=None, task_weights=None, class_weight=None, mask_uncovered=True,
  trainer=None, seed=0, device="cpu", **train_options)``: ``fit(X, Y, L=None, X_valid=None,
  Y_valid=None)`` with ``Y`` per task either ``(n, k)`` probabilities or ``(n,)`` hard labels
  (``-1`` = none); ``predict_proba(X)`` -> list of ``(n, k_s)``; ``predict(X)`` -> ``(n, t)``
  (joint decoding over the feasible set when ``tasks`` is a :class:`~metal.TaskGraph`);
  ``score``; ``save(path)`` / ``load(path)`` (``.npz`` + JSON, no pickle).
  :class:`EndModel` ``(cardinality, ...)`` is the single-task form (arrays, flat scores).
* Input modules (:mod:`metal.end_model.inputs`): :class:`DenseInput` (standardised dense
  features + optional MLP), :class:`SparseInput` (``EmbeddingBag``-based first layer for
  scipy.sparse TF-IDF, never densified), :class:`EmbeddingBagEncoder` (mean of token
  embeddings). Any ``torch.nn.Module`` that maps a batch to ``(b, d)`` works; batches come
  from :func:`take_rows` (dense -> float tensor, sparse -> :class:`SparseRows`, dict -> dict).
* Losses (:mod:`metal.end_model.loss`): :func:`soft_cross_entropy` (expected cross-entropy,
  class weights, row weights/masks), :func:`covered_rows` (rows with a vote),
  :func:`check_targets`, :func:`balanced_class_weight`.
* Training (:mod:`metal.end_model.trainer`): :class:`TrainerConfig` (optimiser, LR schedule,
  grad clipping, early stopping on ``valid_metric``, checkpoint path / resume, progress bar) and
  :class:`Trainer` ``.fit(module, batch_loss(rows) -> loss, n_train, validate=fn, seed=,
  device=, callbacks=)`` -> :class:`TrainResult` (history, best epoch); deterministic per seed
  through a forked torch RNG (:func:`seeded_rng`); :func:`plot_history` writes PNG curves;
  :func:`state_to_arrays` / :func:`arrays_to_state` store state dicts in the ``metal._io``
  format.

Example
-------
>>> import numpy as np
>>> from metal.end_model import EndModel
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 4)).astype(np.float32)
>>> probs = np.stack([X[:, 0] < 0, X[:, 0] >= 0], axis=1) * 0.8 + 0.1  # soft labels
>>> model = EndModel(2, n_epochs=10, patience=None).fit(X, probs)
>>> model.predict(X).shape
(300,)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metal.end_model.end_model import EndModel, MultiTaskEndModel
    from metal.end_model.inputs import (
        DenseInput,
        EmbeddingBagEncoder,
        SparseInput,
        SparseRows,
        prepare_inputs,
        register_input_module,
        take_rows,
        to_device,
    )
    from metal.end_model.loss import (
        balanced_class_weight,
        check_targets,
        covered_rows,
        soft_cross_entropy,
    )
    from metal.end_model.network import MultiTaskNetwork, reset_parameters
    from metal.end_model.trainer import (
        Trainer,
        TrainerConfig,
        TrainResult,
        arrays_to_state,
        plot_history,
        seeded_rng,
        state_to_arrays,
    )

# torch is imported on first use of a name, so `metal --help` and the label-model commands
# do not pay for it
_HOME = {
    "EndModel": "end_model", "MultiTaskEndModel": "end_model",
    "DenseInput": "inputs", "EmbeddingBagEncoder": "inputs", "SparseInput": "inputs",
    "SparseRows": "inputs", "prepare_inputs": "inputs", "register_input_module": "inputs",
    "take_rows": "inputs", "to_device": "inputs",
    "balanced_class_weight": "loss", "check_targets": "loss", "covered_rows": "loss",
    "soft_cross_entropy": "loss",
    "MultiTaskNetwork": "network", "reset_parameters": "network",
    "Trainer": "trainer", "TrainerConfig": "trainer", "TrainResult": "trainer",
    "arrays_to_state": "trainer", "plot_history": "trainer", "seeded_rng": "trainer",
    "state_to_arrays": "trainer",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"metal.end_model.{_HOME[name]}"), name)
    raise AttributeError(f"module 'metal.end_model' has no attribute {name!r}")


__all__ = [
    "DenseInput",
    "EmbeddingBagEncoder",
    "EndModel",
    "MultiTaskEndModel",
    "MultiTaskNetwork",
    "SparseInput",
    "SparseRows",
    "TrainResult",
    "Trainer",
    "TrainerConfig",
    "arrays_to_state",
    "balanced_class_weight",
    "check_targets",
    "covered_rows",
    "plot_history",
    "prepare_inputs",
    "register_input_module",
    "reset_parameters",
    "seeded_rng",
    "soft_cross_entropy",
    "state_to_arrays",
    "take_rows",
    "to_device",
]

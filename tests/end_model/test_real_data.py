"""End to end on real data (../shared/data): label model -> end model beats the label model."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED_DATA / "wrench_youtube").is_dir(),
                       reason="../shared/data is absent"),
]


def test_youtube_end_model_beats_label_model_alone() -> None:
    pytest.importorskip("wordllama")
    from metal import LabelModel, load_wrench
    from metal.end_model import EndModel
    from metal.end_model.text import embed_texts
    from metal.metrics import probs_to_preds, score_predictions

    train, valid, test = (load_wrench(SHARED_DATA / "wrench_youtube", s)
                          for s in ("train", "valid", "test"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = LabelModel(cardinality=2, seed=0).fit(train.L)
    X = [embed_texts([e["text"] for e in s.examples]) for s in (train, valid, test)]
    model = EndModel(2, hidden=(128,), dropout=0.5, lr=1e-3, n_epochs=20, patience=5, seed=0)
    model.fit(X[0], lm.predict_proba(train.L), L=train.L, X_valid=X[1], Y_valid=valid.Y)
    lm_acc = score_predictions(test.Y, probs_to_preds(lm.predict_proba(test.L), seed=0))
    end_acc = model.score(X[2], test.Y)["accuracy"]
    assert end_acc > lm_acc["accuracy"] + 0.02, (end_acc, lm_acc)
    assert np.isfinite([h["train_loss"] for h in model.history_]).all()

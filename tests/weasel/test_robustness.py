"""Paper Appendix F on generated data: one perfect source plus many duplicated coin flips.

A label model that assumes conditionally independent sources trusts the duplicated coin flip
(it "agrees with itself"); WeaSEL's encoder learns to weigh the perfect source instead and its
end model matches the same end model trained on the gold labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from metal.end_model import EndModel
from metal.weasel import WeaSEL, roc_auc


def _data(seed: int = 0, n: int = 1600, d: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    Y = ((X @ w + 0.5 * rng.normal(size=n)) > 0).astype(np.int64)
    return X, Y


def _gold_auc(X: np.ndarray, Y: np.ndarray, tr: slice, te: slice, epochs: int) -> float:
    """The same end model (EndModel's default network, same epochs) trained on gold labels."""
    gold = EndModel(2, n_epochs=epochs, weight_decay=7e-7, patience=None).fit(X[tr], Y[tr])
    return roc_auc(Y[te], gold.predict_proba(X[te])[:, 1])


def _duplicated_coin_flips(Y: np.ndarray, n_duplicates: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coin = (rng.random(Y.size) < Y.mean()).astype(np.int64)  # votes by the class balance
    return np.concatenate([Y[:, None], np.repeat(coin[:, None], n_duplicates, axis=1)], axis=1)


def _check(n_duplicates: int) -> None:
    X, Y = _data()
    tr, va, te = slice(0, 1000), slice(1000, 1100), slice(1100, None)
    L = _duplicated_coin_flips(Y, n_duplicates, seed=1)
    model = WeaSEL(n_epochs=20).fit(L[tr], X[tr], X[va], Y[va])
    weasel_auc = model.score(X[te], Y[te], ["auc"])["auc"]
    gold_auc = _gold_auc(X, Y, tr, te, epochs=20)
    # the coin flip alone (what a label model that trusts the duplicates recovers) is at 0.5
    coin_auc = roc_auc(Y[te], L[te, 1].astype(float))
    assert abs(coin_auc - 0.5) < 0.08
    assert gold_auc > 0.95
    assert weasel_auc >= gold_auc - 0.03, (weasel_auc, gold_auc)


def test_one_perfect_source_and_25_duplicated_coin_flips() -> None:
    _check(25)


@pytest.mark.slow
@pytest.mark.parametrize("n_duplicates", [2, 100, 500, 2000])
def test_one_perfect_source_and_many_duplicated_coin_flips(n_duplicates: int) -> None:
    _check(n_duplicates)

"""Bad inputs to the label models and label-matrix helpers: each gets a metal error whose
message says what was wrong and what was expected (or, when legitimate, the right result)."""

from __future__ import annotations

import warnings

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from _cases import Case, assert_case

from metal import (
    DawidSkene,
    LabelModel,
    MajorityVoter,
    MetalWarning,
    check_label_matrix,
    to_dense_labels,
    to_sparse_labels,
)
from metal.data import make_synthetic
from metal.errors import ConfigError, LabelMatrixError, ResourceLimitError

DATA = make_synthetic(n=400, m=5, cardinality=2, seed=0)
L = DATA.L


def _fit(**kw):
    return lambda: LabelModel(**kw).fit(L)


def _fit_ds(**kw):
    return lambda: DawidSkene(**kw).fit(L)


CASES = [
    # ---- label matrices
    Case("L-none", lambda: LabelModel().fit(None), LabelMatrixError, "numpy array"),
    Case("L-1d", lambda: LabelModel().fit(np.array([0, 1, -1])), LabelMatrixError,
         r"reshape\(-1, 1\)"),
    Case("L-3d", lambda: LabelModel().fit(np.zeros((2, 2, 2), int)), LabelMatrixError,
         "MultiTaskLabelModel"),
    Case("L-empty", lambda: LabelModel().fit(np.zeros((0, 3), int)), LabelMatrixError, "empty"),
    Case("L-no-sources", lambda: LabelModel().fit(np.zeros((3, 0), int)), LabelMatrixError,
         "empty"),
    Case("L-nan", lambda: LabelModel().fit(np.array([[0, np.nan], [1, 0.0]])), LabelMatrixError,
         "NaN.*-1"),
    Case("L-fraction", lambda: LabelModel().fit(np.array([[0, 0.5], [1, 0.0]])),
         LabelMatrixError, "non-integral"),
    Case("L-bool", lambda: LabelModel().fit(np.ones((3, 2), bool)), LabelMatrixError,
         "bool.*astype"),
    Case("L-strings", lambda: LabelModel().fit(np.array([["a", "b"], ["b", "a"]])),
         LabelMatrixError, "dtype"),
    Case("L-below-abstain", lambda: LabelModel().fit(np.array([[0, -2], [1, 0]])),
         LabelMatrixError, "-1 for abstain"),
    Case("L-too-large-label", lambda: LabelModel(cardinality=2).fit(np.array([[0, 2], [1, 0]])),
         LabelMatrixError, "Raise cardinality"),
    Case("L-all-abstain", lambda: LabelModel().fit(np.full((5, 3), -1)), LabelMatrixError,
         "no vote"),
    Case("L-ragged-list", lambda: LabelModel().fit([[0, 1], [1]]), LabelMatrixError, "ragged"),
    Case("L-sparse-minus-one", lambda: LabelModel().fit(sp.csr_matrix(np.array([[0, -1],
                                                                                [1, 1]]))),
         LabelMatrixError, "to_sparse_labels"),
    Case("L-sparse-duplicates", lambda: LabelModel().fit(sp.coo_matrix(
        (np.array([1, 1, 0]), (np.array([0, 0, 1]), np.array([0, 0, 1]))), shape=(2, 2))),
        LabelMatrixError, "more than once"),
    Case("L-dataframe", lambda: LabelModel().fit(__import__("pandas").DataFrame(L)),
         LabelMatrixError, "np.asarray"),
    Case("predict-wrong-columns", lambda: LabelModel(seed=0).fit(L).predict(L[:, :3]),
         LabelMatrixError, "same list of sources"),
    Case("to-dense-overflow", lambda: to_dense_labels(np.array([[200, -1]]), dtype=np.int8),
         LabelMatrixError, "does not fit in int8"),
    Case("to-dense-unsigned", lambda: to_dense_labels(np.array([[1, -1]]), dtype=np.uint8),
         LabelMatrixError, "signed integer"),
    Case("to-sparse-bad", lambda: to_sparse_labels(np.array([[0, -3]])), LabelMatrixError,
         "-1 for abstain"),
    # ---- hyperparameters
    Case("cardinality-1", _fit(cardinality=1), ConfigError, "int >= 2"),
    Case("cardinality-float", _fit(cardinality=2.0), ConfigError, "int >= 2"),
    Case("cardinality-bool", _fit(cardinality=True), ConfigError, "int >= 2"),
    Case("l2-nan", _fit(l2=float("nan")), ConfigError, "l2=nan is not finite"),
    Case("l2-inf", _fit(l2=float("inf")), ConfigError, "l2=inf is not finite"),
    Case("l2-negative", _fit(l2=-1.0), ConfigError, "l2=-1.0; expected"),
    Case("l2-string", _fit(l2="0.1"), ConfigError, "l2='0.1' is a str"),
    Case("tol-nan", _fit(tol=float("nan")), ConfigError, "tol=nan is not finite"),
    Case("tol-zero", _fit(tol=0.0), ConfigError, "tol=0.0"),
    Case("prob-floor-half", _fit(prob_floor=0.5), ConfigError, r"prob_floor.*\[0.0, 0.5\)"),
    Case("max-iter-float", _fit(max_iter=10.5), ConfigError, "max_iter=10.5 is a float"),
    Case("max-iter-zero", _fit(max_iter=0), ConfigError, "max_iter=0"),
    Case("chunk-rows-zero", _fit(chunk_rows=0), ConfigError, "chunk_rows=0"),
    Case("seed-negative", _fit(seed=-1), ConfigError, "seed=-1"),
    Case("seed-float", _fit(seed=1.5), ConfigError, "seed=1.5 is a float"),
    Case("seed-string", _fit(seed="0"), ConfigError, "seed='0' is a str"),
    Case("method-unknown", _fit(method="em"), ConfigError, "method='em' is not known"),
    Case("parameterization-unknown", _fit(parameterization="free"), ConfigError,
         "parameterization"),
    Case("balance-moments-4", _fit(balance_moments=4), ConfigError, "expected 2 or 3"),
    Case("model-abstains-string", _fit(model_abstains="yes"), ConfigError, "True or False"),
    Case("source-names-short", _fit(source_names=["a", "b"]), ConfigError,
         "source_names has 2 entries; expected 5"),
    Case("source-names-duplicate", _fit(source_names=["a", "a", "b", "c", "d"]), ConfigError,
         "duplicates.*'a'"),
    Case("class-balance-wrong-size", lambda: LabelModel().fit(L, class_balance=[1.0]),
         ConfigError, "cardinality 2"),
    Case("class-balance-nan", lambda: LabelModel().fit(L, class_balance=[np.nan, 1.0]),
         ConfigError, "positive and finite"),
    Case("class-balance-unnormalised", lambda: LabelModel().fit(L, class_balance=[2.0, 2.0]),
         ConfigError, "p / p.sum"),
    Case("class-balance-word", lambda: LabelModel().fit(L, class_balance="learn"), ConfigError,
         "'estimate'"),
    Case("class-balance-and-dev", lambda: LabelModel().fit(L, class_balance=[.5, .5],
                                                           Y_dev=DATA.Y[:10]),
         ConfigError, "not both"),
    Case("y-dev-nan", lambda: LabelModel().fit(L, Y_dev=np.array([0.0, np.nan])),
         LabelMatrixError, "NaN"),
    Case("score-y-wrong-length", lambda: LabelModel(seed=0).fit(L).score(L, DATA.Y[:10]),
         LabelMatrixError, r"expected \(400,\)"),
    Case("dependency-unknown-source", _fit(dependencies=nx.Graph([(0, 9)])), ConfigError, "9"),
    # ---- resource guards: refused up front, quickly
    Case("k-100000", lambda: LabelModel(cardinality=100_000).fit(
        np.random.default_rng(0).integers(-1, 100_000, size=(50, 8))),
        ResourceLimitError, "METAL_MAX_BYTES"),
    Case("dawid-skene-k-100000", lambda: DawidSkene(cardinality=100_000).fit(
        np.random.default_rng(0).integers(-1, 100_000, size=(50, 8))),
        ResourceLimitError, "cardinality"),
    # the moment stage's limits (by default fits this large skip it and run EM instead)
    Case("too-many-indicators", lambda: LabelModel(mode="moments",
                                                   check_identifiability=False).fit(
        np.random.default_rng(0).integers(0, 2, size=(50, 1100))),
        ResourceLimitError, "METAL_MAX_INDICATORS"),
    Case("m1200-k56", lambda: LabelModel(cardinality=56, mode="moments",
                                         check_identifiability=False).fit(
        np.random.default_rng(0).integers(0, 56, size=(3000, 1200), dtype=np.int8)),
        ResourceLimitError, "limit"),
    # ---- Dawid-Skene
    Case("ds-alpha-inf", _fit_ds(alpha=float("inf")), ConfigError, "alpha=inf is not finite"),
    Case("ds-alpha-negative", _fit_ds(alpha=-0.1), ConfigError, "alpha=-0.1"),
    Case("ds-tol-nan", _fit_ds(tol=float("nan")), ConfigError, "tol=nan"),
    Case("ds-max-iter-str", _fit_ds(max_iter="10"), ConfigError, "max_iter='10' is a str"),
    Case("ds-seed-negative", _fit_ds(seed=-3), ConfigError, "seed=-3"),
    # ---- baselines
    Case("mv-class-balance-bad", lambda: MajorityVoter(class_balance=[0.2, 0.2]).predict_proba(L),
         ConfigError, "sums to"),
    Case("mv-predict-tie-break", lambda: MajorityVoter().predict(L, tie_break="coin"),
         ConfigError, "tie_break='coin'"),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case) -> None:
    assert_case(case)


def test_failed_fit_leaves_model_untouched() -> None:
    model = LabelModel(seed=0).fit(L)
    before = model.class_balance_.copy()
    model.l2 = float("nan")
    with pytest.raises(ConfigError):
        model.fit(L)
    np.testing.assert_array_equal(model.class_balance_, before)


def test_np_matrix_is_accepted_like_an_array() -> None:
    a = LabelModel(seed=0).fit(L).predict_proba(L)
    b = LabelModel(seed=0).fit(np.asmatrix(L)).predict_proba(np.asmatrix(L))
    np.testing.assert_array_equal(a, b)
    assert check_label_matrix(np.asmatrix(L)).data.__class__ is np.ndarray


def test_same_class_everywhere_is_reported_not_a_crash() -> None:
    """Every source votes class 0 on every row: nothing to learn, said in words."""
    L0 = np.zeros((200, 4), dtype=int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = LabelModel(seed=0).fit(L0)
        except Exception as exc:  # a metal error is fine, a crash is not
            from metal.errors import MetalError

            assert isinstance(exc, MetalError), repr(exc)
            return
    assert np.all(np.isfinite(model.predict_proba(L0)))
    assert any(issubclass(w.category, MetalWarning) for w in caught)


def test_high_cardinality_few_sources_warns_about_never_voted_classes() -> None:
    rng = np.random.default_rng(0)
    Lk = rng.integers(-1, 3, size=(500, 5))  # only classes 0..2 ever voted, k = 1000
    with pytest.warns(MetalWarning, match="never"):
        DawidSkene(cardinality=1000, max_iter=5).fit(Lk)


def test_sparse_duplicate_free_coo_is_fine() -> None:
    coo = sp.coo_matrix(to_sparse_labels(L))
    np.testing.assert_array_equal(to_dense_labels(coo), L)


def test_balance_moments_3_is_refused_where_it_would_be_ignored() -> None:
    """balance_moments=3 only shapes the estimated class balance: with a given balance, with
    dependencies, from pairwise statistics or on a stream it would do nothing, so it is refused."""
    from metal.distributed import fit_stream
    from metal.label_model.label_model import label_statistics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    L = np.where(rng.random((2000, 6)) < 0.8, y[:, None], 1 - y[:, None])
    L[rng.random(L.shape) < 0.3] = -1
    with pytest.raises(ConfigError, match="balance_moments=3 has no effect"):
        LabelModel(balance_moments=3).fit(L)
    with pytest.raises(ConfigError, match="balance_moments=3 has no effect"):
        LabelModel(balance_moments=3).fit(L, class_balance=[0.3, 0.7])
    with pytest.raises(ConfigError, match="does not support dependencies"):
        LabelModel(balance_moments=3, dependencies=nx.Graph([(0, 1)])).fit(
            L, class_balance="estimate")
    with pytest.raises(ConfigError, match="pairwise statistics"):
        LabelModel(balance_moments=3).fit_statistics(label_statistics(L, 2))
    with pytest.raises(ConfigError, match="a stream is read once"):
        fit_stream(LabelModel(balance_moments=3), iter([L[:1000], L[1000:]]),
                   class_balance=[0.5, 0.5])
    # where it does something, it runs
    model = LabelModel(balance_moments=3).fit(L, class_balance="estimate")
    assert model.class_balance_.shape == (2,)

"""Property tests (hypothesis) for the label-matrix and task-graph validators and for
save/load round trips: valid inputs are accepted unchanged, invalid ones always rejected."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from metal import DawidSkene, TaskGraph, check_label_matrix, to_dense_labels, to_sparse_labels
from metal._io import load_arrays, save_arrays
from metal.errors import LabelMatrixError, SaveFormatError, TaskGraphError

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def label_matrices(draw):
    k = draw(st.integers(2, 6))
    n = draw(st.integers(1, 30))
    m = draw(st.integers(1, 6))
    L = draw(arrays(np.int64, (n, m), elements=st.integers(-1, k - 1)))
    return L, k


@FAST
@given(label_matrices())
def test_valid_matrices_are_accepted_and_round_trip(case) -> None:
    L, k = case
    lm = check_label_matrix(L, cardinality=k)
    assert lm.shape == L.shape and lm.max_label == L.max()
    np.testing.assert_array_equal(to_dense_labels(to_sparse_labels(L)), L)
    np.testing.assert_array_equal(to_dense_labels(sp.coo_matrix(to_sparse_labels(L))), L)


@FAST
@given(label_matrices(), st.integers(-100, -2))
def test_values_below_abstain_are_rejected(case, bad: int) -> None:
    L, k = case
    L = L.copy()
    L.flat[0] = bad
    with pytest.raises(LabelMatrixError, match="-1 for abstain"):
        check_label_matrix(L, cardinality=k)


@FAST
@given(label_matrices(), st.floats(0.01, 0.99))
def test_fractional_and_nan_values_are_rejected(case, frac: float) -> None:
    L, k = case
    F = L.astype(float)
    F.flat[0] = F.flat[0] + frac
    with pytest.raises(LabelMatrixError, match="non-integral"):
        check_label_matrix(F)
    F.flat[0] = np.nan
    with pytest.raises(LabelMatrixError, match="NaN"):
        check_label_matrix(F)


@FAST
@given(label_matrices())
def test_labels_at_or_above_cardinality_are_rejected(case) -> None:
    L, k = case
    L = L.copy()
    L.flat[-1] = k
    with pytest.raises(LabelMatrixError, match=f"cardinality={k}"):
        check_label_matrix(L, cardinality=k)


@FAST
@given(st.lists(st.integers(2, 4), min_size=1, max_size=3), st.data())
def test_task_graph_feasible_sets_round_trip(cards, data) -> None:
    tasks = {f"t{i}": k for i, k in enumerate(cards)}
    space = np.stack(np.meshgrid(*[np.arange(k) for k in cards], indexing="ij"),
                     axis=-1).reshape(-1, len(cards))
    keep = data.draw(st.lists(st.booleans(), min_size=len(space), max_size=len(space)))
    if not any(keep):
        with pytest.raises(TaskGraphError, match="empty"):
            TaskGraph(tasks, feasible=space[np.array(keep)])
        return
    F = space[np.array(keep)]
    g = TaskGraph(tasks, feasible=F[::-1])  # order does not matter
    np.testing.assert_array_equal(g.feasible, F)  # stored sorted lexicographically
    idx = np.arange(g.n_feasible)
    np.testing.assert_array_equal(g.to_joint(g.from_joint(idx)), idx)
    assert g.is_feasible(F).all()
    rejected = space[~np.array(keep)]
    if rejected.size:
        assert not g.is_feasible(rejected).any()
        with pytest.raises(TaskGraphError, match="not a feasible"):
            g.to_joint(rejected[:1])


@FAST
@given(st.one_of(st.integers(-5, 1), st.floats(-3, 10).filter(lambda x: x != int(x)),
                 st.text(max_size=3), st.none(), st.booleans()))
def test_bad_cardinalities_are_rejected(k) -> None:
    with pytest.raises(TaskGraphError, match="cardinality"):
        TaskGraph({"a": 2, "b": k})


@FAST
@given(st.dictionaries(st.text("abc", min_size=1, max_size=4),
                       arrays(np.float64, st.integers(0, 5),
                              elements=st.floats(-1e6, 1e6, allow_nan=False)), max_size=4),
       st.integers(0, 10), st.data())
def test_save_load_round_trip_and_any_flipped_byte_is_caught(tmp_path_factory, arrs, seed,
                                                            data) -> None:
    path = tmp_path_factory.mktemp("io") / "m.npz"
    params = {"seed": seed, "note": "x"}
    save_arrays(path, "Thing", params, arrs)
    got_params, got = load_arrays(path, "Thing")
    assert got_params == params and set(got) == set(arrs)
    for k, v in arrs.items():
        np.testing.assert_array_equal(got[k], v)
    raw = bytearray(path.read_bytes())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))
    try:
        got_params2, got2 = load_arrays(path, "Thing")
    except SaveFormatError:
        return
    # a flip in bytes no reader looks at (zip timestamps, padding) changes nothing
    assert got_params2 == params
    for k, v in arrs.items():
        np.testing.assert_array_equal(got2[k], v)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31))
def test_model_save_load_round_trip(seed: int) -> None:
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(seed)
    L = rng.integers(-1, 3, size=(60, 4))
    model = DawidSkene(cardinality=3, seed=seed % 1000, max_iter=5).fit(L)
    with tempfile.TemporaryDirectory() as d:
        model.save(Path(d) / "ds.npz")
        loaded = DawidSkene.load(Path(d) / "ds.npz")
    np.testing.assert_array_equal(loaded.predict_proba(L), model.predict_proba(L))
    assert loaded.seed == model.seed

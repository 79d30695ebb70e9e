"""metal._validate: the shared checks at the public boundary, and the resource limits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metal._validate import (
    apply_predicate,
    check_allocation,
    check_bool,
    check_choice,
    check_finite_array,
    check_float,
    check_int,
    check_moment_size,
    check_names,
    check_probabilities,
    check_same_length,
    check_seed,
    check_unique,
    max_alloc_bytes,
    max_moment_indicators,
    warn_counted,
    warn_unvoted_classes,
)
from metal.errors import (
    ConfigError,
    DataWarning,
    MetalWarning,
    ResourceLimitError,
    TaskGraphError,
)


def test_check_int_bounds_are_inclusive_and_non_ints_refused() -> None:
    assert check_int("n", 3, low=3, high=3) == 3 and type(check_int("n", np.int8(4))) is int
    for bad, match in [(2, "n=2; expected an int in \\[3, 5\\]"), (6, "in \\[3, 5\\]"),
                       (3.0, "is a float \\(pass int"), (True, "is a bool"), ("3", "is a str")]:
        with pytest.raises(ConfigError, match=match):
            check_int("n", bad, low=3, high=5)
    with pytest.raises(TaskGraphError, match=">= 1"):
        check_int("k", 0, low=1, error=TaskGraphError)
    with pytest.raises(ConfigError, match="<= 1$"):
        check_int("k", 2, high=1)


def test_check_float_intervals_and_finiteness() -> None:
    assert check_float("x", 0.0, low=0.0) == 0.0 and check_float("x", 1, high=1.0) == 1.0
    for kwargs, match in [({"low": 0.0, "low_open": True}, r"in \(0.0, 1.0\]"),
                          ({"low": 0.0}, r"in \[0.0, 1.0\]")]:
        with pytest.raises(ConfigError, match=match):
            check_float("x", -1.0 if "low_open" not in kwargs else 0.0, high=1.0, **kwargs)
    with pytest.raises(ConfigError, match=r"x=1.0; expected a number < 1.0"):
        check_float("x", 1.0, high=1.0, high_open=True)
    with pytest.raises(ConfigError, match="> 0"):
        check_float("x", 0.0, low=0.0, low_open=True)
    for bad, match in [(float("nan"), "not finite"), (float("inf"), "not finite"),
                       (True, "is a bool"), ("1", "is a str")]:
        with pytest.raises(ConfigError, match=match):
            check_float("x", bad)


def test_bool_seed_choice_and_names() -> None:
    assert check_bool("b", np.bool_(True)) is True
    with pytest.raises(ConfigError, match="True or False"):
        check_bool("b", 1)
    assert check_seed(2**63 - 1) == 2**63 - 1
    for bad in (-1, 2**63, 1.5):
        with pytest.raises(ConfigError, match="seed"):
            check_seed(bad)
    assert check_choice("m", "a", ("a", "b")) == "a"
    with pytest.raises(ConfigError, match=r"one of \('a', 'b'\)"):
        check_choice("m", ["a"], ("a", "b"))  # unhashable: refused, not a TypeError
    assert check_names("names", ("x", "y"), 2) == ["x", "y"]
    with pytest.raises(ConfigError, match="one per source"):
        check_names("names", "xy", 2)
    with pytest.raises(ConfigError, match="has 1 entries; expected 2"):
        check_names("names", ["x"], 2)
    with pytest.raises(ConfigError, match=r"duplicates \['x'\]"):
        check_names("names", ["x", "x"], 2)
    with pytest.raises(ConfigError, match="unhashable"):
        check_unique("names", [[1], [2]])
    many = [f"n{i}" for i in range(12)] * 2
    with pytest.raises(ConfigError, match=r"\.\.\.\]?; expected distinct"):
        check_unique("names", many)


def test_arrays_and_probabilities() -> None:
    np.testing.assert_array_equal(check_finite_array("a", [0, 1], low=0, high=1), [0.0, 1.0])
    for bad, match in [([0, np.nan], "1 NaN or infinite"), ([-1.0], "value -1; expected values "
                       ">= 0"), ([2.0], "<= 1"), (["x"], "not a numeric array")]:
        with pytest.raises(ConfigError, match=match):
            check_finite_array("a", bad, low=0, high=1)
    P = check_probabilities("P", [[0.25, 0.75], [1.0, 0.0]], n_rows=2)
    assert P.dtype == np.float64 and P.shape == (2, 2)
    for bad, kwargs, match in [
        ([0.5, 0.5], {}, r"shape \(2,\)"),
        ([[0.5, 0.5]], {"n_rows": 2}, "1 rows; expected 2"),
        ([[np.nan, 1.0]], {}, "first: row 0"),
        ([[-0.5, 1.5]], {}, r"\[-0.5, 1.5\]"),
        ([[0.5, 0.4], [0.2, 0.2]], {}, r"2 rows that do not sum to 1 \(row 0 sums to 0.9\)"),
    ]:
        with pytest.raises(ConfigError, match=match):
            check_probabilities("P", bad, **kwargs)
    check_probabilities("P", [[0.5, 0.50005]])  # within atol
    check_same_length("a", [1, 2], "b", (3, 4))
    with pytest.raises(ConfigError, match="a has 2 entries and b has 1"):
        check_same_length("a", [1, 2], "b", [3])


def test_resource_limits_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_alloc_bytes() == 4 * 2**30 and max_moment_indicators() == 2000
    check_allocation("x", (2**27, 4), fix="-")  # exactly 4 GiB: allowed
    with pytest.raises(ResourceLimitError, match=r"shape \(134217729, 4\).*METAL_MAX_BYTES\)\. "
                                                  "do less"):
        check_allocation("x", (2**27 + 1, 4), fix="do less")
    monkeypatch.setenv("METAL_MAX_INDICATORS", "10")
    check_moment_size(10)
    with pytest.raises(ResourceLimitError, match="11 emitted.*limit is 10"):
        check_moment_size(11)
    monkeypatch.setenv("METAL_MAX_BYTES", "1e3")  # a float in the environment is fine
    assert max_alloc_bytes() == 1000
    check_moment_size(10)  # 10 x 10 x 8 = 800 bytes
    monkeypatch.setenv("METAL_MAX_INDICATORS", "100")
    with pytest.raises(ResourceLimitError, match="second-moment matrix"):
        check_moment_size(12)  # 12 x 12 x 8 = 1152 bytes: within the count, over the bytes


def test_environment_limits_must_be_positive_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAL_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="METAL_MAX_BYTES='lots' is not a number"):
        max_alloc_bytes()
    monkeypatch.setenv("METAL_MAX_BYTES", "0")
    with pytest.raises(ConfigError, match="positive integer"):
        max_alloc_bytes()


def test_warnings_are_one_per_cause_with_counts() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_counted(MetalWarning, "sources are odd", [f"s{i}" for i in range(8)], detail="hm")
        warn_counted(MetalWarning, "nothing", [])
        warn_unvoted_classes(np.array([True, False, True, False]))
    texts = [str(w.message) for w in caught]
    assert texts[0] == "8 sources are odd: 's0', 's1', 's2', 's3', 's4' (and 3 more); hm"
    assert len(texts) == 2 and texts[1].startswith("2 of the 4 classes never receive a vote: 1, 3")
    assert caught[1].category is DataWarning


def test_apply_predicate_masks_and_names_the_vector() -> None:
    V = np.array([[0, 1], [1, 1]])
    np.testing.assert_array_equal(apply_predicate(lambda y: y[0] == 1, V, ["a", "b"], ConfigError),
                                  [False, True])
    np.testing.assert_array_equal(apply_predicate(lambda y: int(y[0]), V, ["a", "b"],
                                                  ConfigError), [False, True])
    with pytest.raises(ConfigError, match=r"returned 2 \(int\).*label vector \(0, 1\)"):
        apply_predicate(lambda y: 2, V, ["a", "b"], ConfigError)
    with pytest.raises(ZeroDivisionError) as info:
        apply_predicate(lambda y: 1 / 0, V, ["a", "b"], ConfigError)
    assert "label vector (0, 1)" in info.value.__notes__[0]

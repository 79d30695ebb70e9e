"""metal.errors: one catchable hierarchy that still works with the builtin handlers."""

from __future__ import annotations

import inspect
import warnings

import pytest

import metal.errors as errors


def test_every_error_is_a_metal_error_and_its_builtin() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if c.__module__ == errors.__name__]
    excs = [c for c in classes if issubclass(c, BaseException) and not issubclass(c, Warning)]
    assert len(excs) >= 10
    for c in excs:
        assert issubclass(c, errors.MetalError), c
    for name in ("LabelMatrixError", "ConfigError", "TaskGraphError", "SaveFormatError",
                 "DataFormatError", "WrenchFormatError", "CrowdFormatError",
                 "LabelingFunctionError", "ResourceLimitError"):
        assert issubclass(getattr(errors, name), ValueError), name
    assert issubclass(errors.NotFittedError, AttributeError)
    assert issubclass(errors.ResourceLimitError, errors.ConfigError)
    with pytest.raises(ValueError, match="bad k"):
        raise errors.ConfigError("bad k")


def test_not_identifiable_carries_its_report() -> None:
    exc = errors.NotIdentifiableError("cannot", report={"why": "two sources"})
    assert str(exc) == "cannot" and exc.report == {"why": "two sources"}
    assert errors.NotIdentifiableError("x").report is None


def test_warnings_share_one_base_that_filters_them_all() -> None:
    for w in (errors.DataWarning, errors.FitWarning):
        assert issubclass(w, errors.MetalWarning) and issubclass(w, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.MetalWarning)
        with pytest.raises(errors.FitWarning):
            warnings.warn("unreliable", errors.FitWarning, stacklevel=1)

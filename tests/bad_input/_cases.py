"""Helpers of the bad-input battery: every case names the error class it must raise
and a fragment of the message that tells the user what to do."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Case:
    id: str
    call: Callable[[], Any]
    error: type[BaseException]
    match: str

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


def assert_case(case: Case) -> None:
    with pytest.raises(case.error) as info:
        case.call()
    text = str(info.value)
    assert re.search(case.match, text, flags=re.IGNORECASE | re.DOTALL), \
        f"{case.id}: message {text!r} lacks {case.match!r}"
    # no error class outside metal's hierarchy (or the builtin FileNotFoundError) leaks out
    from metal.errors import MetalError

    assert isinstance(info.value, (MetalError, FileNotFoundError)), type(info.value)

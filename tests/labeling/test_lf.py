"""metal.labeling.lf: data-point rows, labeling functions and the decorator."""

from __future__ import annotations

import pytest

from metal.errors import LabelingFunctionError
from metal.labeling.lf import LabelingFunction, Row, labeling_function


def test_row_reads_keys_as_attributes_and_names_missing_fields() -> None:
    x = Row(text="hi", n=2)
    assert x.text == "hi" and x["n"] == 2
    x.extra = 5
    assert x["extra"] == 5
    y = x.copy()
    y.text = "changed"
    assert type(y) is Row and x.text == "hi"
    with pytest.raises(AttributeError, match=r"no field 'missing'; its fields are \['extra', 'n'"):
        x.missing  # noqa: B018


def test_preprocessors_run_in_order_then_f_with_resources() -> None:
    calls = []

    def lower(x):
        calls.append("lower")
        return Row(x, text=x.text.lower())

    def strip(x):
        calls.append("strip")
        return Row(x, text=x.text.strip())

    lf = LabelingFunction("kw", lambda x, word: int(x.text == word), resources={"word": "spam"},
                          pre=[lower, strip])
    assert lf(Row(text="  SPAM ")) == 1 and calls == ["lower", "strip"]
    assert lf.label(Row(text="  SPAM ")) == 0  # label() skips the preprocessors
    assert repr(lf) == "LabelingFunction('kw', pre=['lower', 'strip'])"


def test_tasks_as_declared() -> None:
    assert LabelingFunction("a", abs).task is None
    one = LabelingFunction("a", abs, task="coarse")
    assert one.task == "coarse" and one.tasks == ("coarse",)
    assert repr(one) == "LabelingFunction('a', task='coarse')"
    two = LabelingFunction("a", abs, task=["coarse", "fine"])
    assert two.task == ("coarse", "fine") and two.tasks == ("coarse", "fine")
    for bad, match in [([], "non-empty sequence"), (["a", ""], "non-empty sequence"),
                       (["a", "a"], "names a task twice")]:
        with pytest.raises(LabelingFunctionError, match=match):
            LabelingFunction("a", abs, task=bad)
    with pytest.raises(LabelingFunctionError, match="preprocessors \\[3\\] are not callable"):
        LabelingFunction("a", abs, pre=[3])


def test_decorator_names_the_source_after_the_function() -> None:
    @labeling_function(resources={"k": 2})
    def times(x, k):
        return x.v * k

    assert isinstance(times, LabelingFunction) and times.name == "times"
    assert times(Row(v=3)) == 6

    @labeling_function("custom", task="t")
    def g(x):
        return 0

    assert g.name == "custom" and g.task == "t"

"""Labeling sources written as Python functions.

A *labeling function* (LF) looks at one data point and returns a class label ``0..k-1`` or
abstains with ``-1`` (``None`` also means abstain). Wrap a function with
:func:`labeling_function` to give it a name, the task(s) it labels, keyword resources and
preprocessors; apply a list of them with :class:`metal.labeling.apply.LFApplier`.

Tasks
-----
A source labels one task or several:

* ``task=None`` (default): a single-task source; appliers return one ``(n, m)`` matrix.
* ``task="coarse"``: the source labels the task ``"coarse"`` of a multi-task problem; it returns
  one label for that task (or ``-1``).
* ``task=("coarse", "fine")``: the source labels both tasks at once. It returns either a tuple
  with one label per task, in the order of ``task``, or a dict ``{task_name: label}`` (a task
  missing from the dict is an abstention for that task); returning plain ``-1``/``None``
  abstains on every task.

With any task-bound source, appliers return ``{task_name: sparse (n, m_t) matrix}``; the
columns of task ``t`` are the sources that label ``t``, in the order they were given (see
:attr:`metal.labeling.apply.LFApplier.task_sources`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from metal.errors import LabelingFunctionError

ABSTAIN = -1

Preprocessor = Callable[[Any], Any]


class Row(dict):  # type: ignore[type-arg]
    """One data point: a ``dict`` whose keys can also be read as attributes (``x.text``).

    DataFrame rows and dict records are both handed to labeling functions as a ``Row``, so an
    LF works unchanged on either input.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"the data point has no field {name!r}; its fields are {sorted(map(str, self))}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def copy(self) -> Row:
        return Row(self)


def _task_tuple(task: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if task is None:
        return None
    if isinstance(task, str):
        return (task,)
    tasks = tuple(task)
    if not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise LabelingFunctionError(
            f"task={task!r}; expected a task name, a non-empty sequence of task names, or None "
            "for a single-task source")
    if len(set(tasks)) != len(tasks):
        raise LabelingFunctionError(f"task={task!r} names a task twice; list each task once")
    return tasks


class LabelingFunction:
    """A named labeling source backed by a Python function.

    Parameters
    ----------
    name
        Name of the source, used in matrices' column lists, reports and error messages.
    f
        ``f(x, **resources) -> label``; ``x`` is a :class:`Row` (attribute or key access).
    task
        ``None`` (single task), one task name, or a sequence of task names (see module docs).
    resources
        Keyword arguments passed to ``f`` on every call (dictionaries, models, thresholds).
    pre
        Preprocessors applied in order before ``f``: each takes the data point and returns the
        (new) data point. Appliers cache their results per row, so a preprocessor shared by
        several sources runs once per row.

    Examples
    --------
    >>> lf = LabelingFunction("has_free", lambda x: 1 if "free" in x.text else -1)
    >>> lf(Row(text="free money")), lf(Row(text="hello"))
    (1, -1)
    """

    def __init__(
        self,
        name: str,
        f: Callable[..., Any],
        *,
        task: str | Sequence[str] | None = None,
        resources: Mapping[str, Any] | None = None,
        pre: Sequence[Preprocessor] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise LabelingFunctionError(f"name={name!r}; expected a non-empty string")
        if not callable(f):
            raise LabelingFunctionError(f"labeling function {name!r}: f={f!r} is not callable")
        pre_list = list(pre) if pre is not None else []
        bad = [p for p in pre_list if not callable(p)]
        if bad:
            raise LabelingFunctionError(f"labeling function {name!r}: preprocessors {bad} are "
                                        "not callable; pass functions x -> x")
        self.name = name
        self.f = f
        self.tasks = _task_tuple(task)
        self.resources: dict[str, Any] = dict(resources) if resources is not None else {}
        self.pre: tuple[Preprocessor, ...] = tuple(pre_list)

    @property
    def task(self) -> str | tuple[str, ...] | None:
        """The task argument as declared: ``None``, one name, or a tuple of names."""
        if self.tasks is None or len(self.tasks) > 1:
            return self.tasks
        return self.tasks[0]

    def preprocess(self, x: Any) -> Any:
        """Run the preprocessors on ``x`` (no caching; appliers cache)."""
        for p in self.pre:
            x = p(x)
        return x

    def label(self, x: Any) -> Any:
        """Call ``f`` on an already preprocessed data point (raw return value)."""
        return self.f(x, **self.resources)

    def __call__(self, x: Any) -> Any:
        """Label one data point: preprocess, then call ``f``."""
        return self.label(self.preprocess(x))

    def __repr__(self) -> str:
        extra = "" if self.tasks is None else f", task={self.task!r}"
        pre = "" if not self.pre else f", pre={[getattr(p, '__name__', p) for p in self.pre]}"
        return f"LabelingFunction({self.name!r}{extra}{pre})"


def labeling_function(
    name: str | None = None,
    *,
    task: str | Sequence[str] | None = None,
    resources: Mapping[str, Any] | None = None,
    pre: Sequence[Preprocessor] | None = None,
) -> Callable[[Callable[..., Any]], LabelingFunction]:
    """Decorator turning a function into a :class:`LabelingFunction`.

    Parameters
    ----------
    name
        Source name; default: the function's ``__name__``.
    task, resources, pre
        See :class:`LabelingFunction`.

    Examples
    --------
    >>> @labeling_function(resources={"words": {"free", "win"}})
    ... def spammy_words(x, words):
    ...     return 1 if words & set(x.text.split()) else -1
    >>> spammy_words(Row(text="win a prize"))
    1
    """
    if callable(name):
        raise LabelingFunctionError("use @labeling_function() with parentheses (optionally "
                                    "with name=, task=, resources=, pre=)")

    def wrap(f: Callable[..., Any]) -> LabelingFunction:
        return LabelingFunction(name or f.__name__, f, task=task, resources=resources, pre=pre)

    return wrap

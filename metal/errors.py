"""Exception hierarchy for metal.

Every error raised on bad user input derives from :class:`MetalError`, so callers can catch
all of them at once; each also derives from the matching builtin (``ValueError``, ...) so
generic handlers keep working. Messages say what was wrong, what was expected, and how to fix
it.
"""

from __future__ import annotations


class MetalError(Exception):
    """Base class of every error metal raises on bad input or misuse."""


class LabelMatrixError(MetalError, ValueError):
    """A label matrix has the wrong shape, dtype or values."""


class ConfigError(MetalError, ValueError):
    """A hyperparameter or argument is out of range or inconsistent with another."""


class NotFittedError(MetalError, AttributeError):
    """A model was used for prediction before ``fit`` was called."""


class TaskGraphError(MetalError, ValueError):
    """A task graph or hierarchy is malformed (cycle, unknown parent, empty cardinality...)."""


class NotIdentifiableError(MetalError):
    """The source accuracies cannot be recovered from unlabeled data for this structure.

    The :attr:`report` attribute carries the :class:`~metal.IdentifiabilityReport` that names
    the sources and edges responsible and what would fix them.
    """

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class SaveFormatError(MetalError, ValueError):
    """A saved model file is missing, corrupt, or from an incompatible format version."""


class DataFormatError(MetalError, ValueError):
    """A data file or folder (WRENCH, crowd csv, npz) is missing, malformed or inconsistent."""


class WrenchFormatError(DataFormatError):
    """A WRENCH folder or file is missing, malformed, or inconsistent."""


class CrowdFormatError(DataFormatError):
    """Crowd answers or truth files are missing, malformed or inconsistent."""


class LabelingFunctionError(MetalError, ValueError):
    """A labeling function was declared wrongly or returned something that is not a label."""


class ResourceLimitError(ConfigError):
    """A request would need more memory or time than metal's documented limits allow.

    Raised *before* allocating, with the estimate, the limit (see :mod:`metal._validate`:
    ``MAX_ALLOC_BYTES``, ``MAX_MOMENT_INDICATORS``; environment variables ``METAL_MAX_BYTES``,
    ``METAL_MAX_INDICATORS``) and what to do instead.
    """


# ---------------------------------------------------------------------------- warnings
class MetalWarning(UserWarning):
    """Something in the input is suspicious but metal can go on.

    Every warning metal emits is one of these subclasses, raised once per cause with a count
    (never once per row or per item), so ``warnings.simplefilter("error", MetalWarning)``
    turns them all into errors and ``"ignore"`` silences them all.
    """


class DataWarning(MetalWarning):
    """The data is legal but suspicious (silent sources, unseen values, dropped answers...)."""


class FitWarning(MetalWarning):
    """A fit ran but its result may be unreliable (weak identifiability, poor conditioning)."""

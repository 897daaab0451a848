"""nnfit's exception and warning classes, all in one place.

Every error nnfit raises for a user's mistake is one of these, so callers can catch
``nnfit.errors.NnfitError`` (or the ValueError/TypeError it also is).
"""

from __future__ import annotations

import difflib


class NnfitError(Exception):
    """Base class of every error nnfit raises on purpose."""


class FormulaError(NnfitError, ValueError):
    """A formula that cannot be read or that names something the data lacks."""


class DataError(NnfitError, ValueError):
    """Data that cannot be used as it is: missing columns, wrong types, no rows."""


class LevelError(DataError):
    """A factor level that training never saw."""


class ArgumentError(NnfitError, ValueError):
    """An argument outside its allowed values."""


class ArgumentTypeError(NnfitError, TypeError):
    """An argument of the wrong type."""


class ModelFileError(NnfitError, ValueError):
    """A model file that is missing, corrupted, unsafe or from an unknown format."""


class TrainingError(NnfitError, RuntimeError):
    """An error raised inside a user's module, loss, metric or callback during fit."""


class DivergenceError(TrainingError):
    """The training loss became NaN or infinite. ``.model`` holds the last finite weights;
    ``.epoch`` and ``.batch`` (1-based) say where, ``.last_finite_loss`` what came before."""

    def __init__(self, message: str, model=None, epoch=None, batch=None, last_finite_loss=None):
        super().__init__(message)
        self.model, self.epoch, self.batch, self.last_finite_loss = model, epoch, batch, last_finite_loss


class MissingDependencyError(NnfitError, ImportError):
    """An optional package that a feature needs is not installed (the message says how to install it)."""


class FormulaWarning(UserWarning):
    """A formula that R reads with a warning too (the response named on the right, a spline's df too small)."""


class MissingValuesWarning(UserWarning):
    """Rows were left out because a variable the formula uses is missing in them."""


class InterruptedWarning(UserWarning):
    """Ctrl-C ended a fit early; the model is returned as it was when training stopped."""


def close_names(name: str, candidates, n: int = 3) -> str:
    """' (did you mean 'a', 'b'?)' for the candidates closest to ``name``, or ''."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.5)
    if not matches:
        return ""
    return " (did you mean " + ", ".join(repr(m) for m in matches) + "?)"


def check_choice(argument: str, value, choices) -> str:
    """Return ``value`` lower-cased if it is one of ``choices``, else raise ArgumentError."""
    if not isinstance(value, str) or value.lower() not in choices:
        raise ArgumentError(
            f"Unknown {argument} {value!r}; choose one of: {', '.join(sorted(choices))}."
        )
    return value.lower()

"""nnfit's exception and warning classes, all in one place.

Every error nnfit raises for a user's mistake is one of these, so callers can catch
``nnfit.errors.NnfitError`` (or the ValueError/TypeError it also is).
"""

from __future__ import annotations

import difflib
import math
import numbers


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
    """The training loss diverged: an epoch's loss became NaN or infinite, or grew past 10,000
    times the untrained network's loss (``nnfit.checkpoints.GROWTH`` times the first batch's
    loss; see ``nnfit.checkpoints.Divergence``). ``.model`` holds the last finite weights (one
    model); ``.epoch`` and ``.batch`` (1-based) say where, ``.last_finite_loss`` what came before."""

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


def is_positive_int(value) -> bool:
    """True for a whole number of at least 1 (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_positive_int(name: str, value, allow_none: bool = False, unit: str = "") -> int | None:
    """``value`` as an int if it is a positive whole number (or None, when ``allow_none``), else an
    ``ArgumentError`` naming the argument: the one check of epochs, batch sizes, model counts, ...

    >>> from nnfit.errors import check_positive_int
    >>> check_positive_int("n_models", 3)
    3
    >>> check_positive_int("batch_size", 0, allow_none=True)
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: batch_size must be a positive whole number or None, not 0.
    """
    if value is None and allow_none:
        return None
    if not is_positive_int(value):
        raise ArgumentError(
            f"{name} must be a positive whole number{f' of {unit}' if unit else ''}{' or None' if allow_none else ''}, "
            f"not {value!r}."
        )
    return int(value)


def check_rate(name: str, value, allow_none: bool = False, allow_zero: bool = False):
    """``value`` as a float if it is a finite number above zero (or at least zero, when
    ``allow_zero``; None when ``allow_none``), else an ``ArgumentError``: the one check of
    learning rates and weight decays, made before any work starts.

    >>> from nnfit.errors import check_rate
    >>> check_rate("lr", -0.01)
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: lr must be a finite number above 0, not -0.01.
    """
    if value is None and allow_none:
        return None
    bound = "at least 0" if allow_zero else "above 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a finite number {bound}, not {value!r}.")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ArgumentError(f"{name} must be a finite number {bound}, not {value!r}.")
    return float(value)

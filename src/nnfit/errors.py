"""nnfit's exception and warning classes, all in one place.

Every error nnfit raises for a user's mistake is one of these, so callers can catch
``nnfit.errors.NnfitError`` (or the ValueError/TypeError it also is).

>>> import nnfit as nf
>>> try:
...     nf.datasets.load("pinguins")
... except nf.errors.NnfitError as error:
...     print(type(error).__name__, isinstance(error, ValueError))
ArgumentError True
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import functools
import math
import numbers
import os
import sys
import warnings

# nnfit's own files, as a frame may name them: the path it was imported by (perhaps with a "..",
# as after sys.path.insert(0, "../src")), and that path made absolute and with links resolved
_PACKAGE = tuple(dict.fromkeys(os.path.join(way(os.path.dirname(__file__)), "")
                               for way in (lambda path: path, os.path.abspath, os.path.realpath)))


# Inside ``said_once``: the (category, message) pairs given so far, each given once.
_SAID = contextvars.ContextVar("nnfit_warnings_said", default=None)


@contextlib.contextmanager
def said_once():
    """Inside, ``warn`` gives each distinct warning (its category and message) once: one call of
    ``grid`` that fits the same formula many times says what the formula dropped once, not once
    per fit. Per thread and task (a ContextVar): no process-wide state changes; nested, the
    outermost counts.

    >>> import warnings
    >>> from nnfit.errors import said_once, warn
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     with said_once():
    ...         for _ in range(3):
    ...             warn("the same")
    >>> len(caught)
    1
    """
    if _SAID.get() is not None:
        yield
        return
    token = _SAID.set(set())
    try:
        yield
    finally:
        _SAID.reset(token)


def says_once(function):
    """``function`` with its body ``said_once`` (a front door that fits several times).

    >>> import warnings
    >>> from nnfit.errors import says_once, warn
    >>> @says_once
    ... def fits_twice():
    ...     warn("dropped"); warn("dropped")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     fits_twice(); fits_twice()
    >>> len(caught)                       # once per call
    2
    """
    @functools.wraps(function)
    def run(*args, **kwargs):
        with said_once():
            return function(*args, **kwargs)

    return run


def warn(message: str, category=UserWarning) -> None:
    """``warnings.warn`` at the user's line: the first caller outside nnfit's own files, however
    many of nnfit's calls lie between (``fit.evaluate`` on a file, a chunk's ``fit.predict``, a
    callback inside ``fit``). Every warning nnfit gives goes through here.

    >>> import warnings
    >>> from nnfit.errors import warn
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("careful")
    >>> caught[0].filename.startswith(_PACKAGE), str(caught[0].message)   # this line, not errors.py
    (False, 'careful')
    """
    said = _SAID.get()
    if said is not None:
        if (category, str(message)) in said:
            return
        said.add((category, str(message)))
    frame, level = sys._getframe(1), 2  # stacklevel 2: the caller of warn
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class NnfitError(Exception):
    """Base class of every error nnfit raises on purpose.

    >>> import nnfit as nf
    >>> issubclass(nf.errors.LevelError, nf.errors.NnfitError)
    True
    """


class FormulaError(NnfitError, ValueError):
    """A formula that cannot be read or that names something the data lacks.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> nf.Design("body_mass_g ~ flipper_lenght_mm").fit(penguins)
    Traceback (most recent call last):
    ...
    nnfit.errors.FormulaError: The formula 'body_mass_g ~ flipper_lenght_mm' uses 'flipper_lenght_mm', which is not a column of the data (did you mean 'flipper_length_mm', 'bill_length_mm'?).
    """


class DataError(NnfitError, ValueError):
    """Data that cannot be used as it is: missing columns, wrong types, no rows.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> design = nf.Design("body_mass_g ~ sex").fit(penguins)
    >>> design.tensors(penguins.drop(columns="sex"))
    Traceback (most recent call last):
    ...
    nnfit.errors.DataError: The data has no column 'sex', which the design uses.
    """


class LevelError(DataError):
    """A factor level that training never saw.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> design = nf.Design("body_mass_g ~ island").fit(penguins)
    >>> design.transform(penguins.head(1).assign(island="Atlantis"))
    Traceback (most recent call last):
    ...
    nnfit.errors.LevelError: Column 'island' has the level 'Atlantis', which training never saw (levels: Biscoe, Dream, Torgersen).
    """


class ArgumentError(NnfitError, ValueError):
    """An argument outside its allowed values.

    >>> import nnfit as nf
    >>> nf.split(nf.datasets.load("penguins"), prop=1.5)
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: prop must be a number strictly between 0 and 1, not 1.5.
    """


class ArgumentTypeError(NnfitError, TypeError):
    """An argument of the wrong type.

    >>> import nnfit as nf
    >>> nf.Design(42)
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentTypeError: formula must be a string such as 'y ~ x', not int.
    """


class ModelFileError(NnfitError, ValueError):
    """A model file that is missing, corrupted, unsafe or from an unknown format.

    >>> import nnfit as nf
    >>> nf.load("no-such-file.nnfit")
    Traceback (most recent call last):
    ...
    nnfit.errors.ModelFileError: No model file at 'no-such-file.nnfit'.
    """


class TrainingError(NnfitError, RuntimeError):
    """An error raised inside a user's module, loss, metric or callback during fit.

    The message names the module (or callback) and where training was; the original error is
    its ``__cause__``.

    >>> import torch
    >>> from torch import nn
    >>> import nnfit as nf
    >>> class Broken(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.linear = nn.Linear(2, 1)
    ...     def forward(self, x):
    ...         raise RuntimeError("forgot the bias")
    >>> nf.setup(Broken, loss="mse").fit((torch.randn(8, 2), torch.randn(8, 1)), epochs=1, verbose=False)
    Traceback (most recent call last):
    ...
    nnfit.errors.TrainingError: Broken.forward failed in epoch 1, batch 1: RuntimeError: forgot the bias
    """


class DivergenceError(TrainingError):
    """The training loss diverged: an epoch's loss became NaN or infinite, or grew past 10,000
    times the untrained network's loss (``nnfit.train.divergence.GROWTH`` times the first batch's
    loss; see ``nnfit.train.divergence.Divergence``). ``.model`` holds the last finite weights (one
    model); ``.epoch`` and ``.batch`` (1-based) say where, ``.last_finite_loss`` what came before.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> try:
    ...     nf.mlp("body_mass_g ~ flipper_length_mm", data=penguins, optimizer="sgd", lr=1e6,
    ...            epochs=5, seed=1, verbose=False)
    ... except nf.errors.DivergenceError as error:
    ...     print("diverged in epoch", error.epoch)
    diverged in epoch 1
    """

    def __init__(self, message: str, model=None, epoch=None, batch=None, last_finite_loss=None):
        super().__init__(message)
        self.model, self.epoch, self.batch, self.last_finite_loss = model, epoch, batch, last_finite_loss


class MissingDependencyError(NnfitError, ImportError):
    """An optional package that a feature needs is not installed (the message says how to install it).

    It is also an ImportError, so ``except ImportError`` catches it too.

    >>> from nnfit.errors import MissingDependencyError
    >>> issubclass(MissingDependencyError, ImportError)
    True
    """


class FormulaWarning(UserWarning):
    """A formula that R reads with a warning too (the response named on the right, a spline's df too small).

    >>> import warnings
    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     design = nf.Design("body_mass_g ~ body_mass_g + sex").fit(penguins)
    >>> caught[0].category.__name__, design.columns
    ('FormulaWarning', ['(Intercept)', 'sexmale'])
    """


class MissingValuesWarning(UserWarning):
    """Rows were left out because a variable the formula uses is missing in them.

    >>> import warnings
    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins")            # 11 rows have no sex
    >>> design = nf.Design("body_mass_g ~ sex").fit(penguins.dropna())
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     X, y = design.tensors(penguins)
    >>> caught[0].category.__name__, len(X)
    ('MissingValuesWarning', 333)
    >>> str(caught[0].message)
    'Left out 11 of 344 rows with a missing value (body_mass_g: 2, sex: 11).'
    """


class InterruptedWarning(UserWarning):
    """Ctrl-C ended a fit early; the model is returned as it was when training stopped.

    A script that must not go on with a half-trained model can make it an error:

    >>> import warnings
    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", nf.errors.InterruptedWarning)   # Ctrl-C now raises
    ...     fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=penguins, epochs=2, seed=1, verbose=False)
    """


def close_names(name: str, candidates, n: int = 3) -> str:
    """' (did you mean 'a', 'b'?)' for the candidates closest to ``name``, or ''.

    >>> from nnfit.errors import close_names
    >>> close_names("flipper", ["flipper_length_mm", "body_mass_g"])
    " (did you mean 'flipper_length_mm'?)"
    >>> close_names("zzz", ["flipper_length_mm"])
    ''
    """
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.5)
    if not matches:
        return ""
    return " (did you mean " + ", ".join(repr(m) for m in matches) + "?)"


def check_choice(argument: str, value, choices) -> str:
    """Return ``value`` lower-cased if it is one of ``choices``, else raise ArgumentError.

    >>> from nnfit.errors import check_choice
    >>> check_choice("optimizer", "Adam", {"adam", "sgd"})
    'adam'
    >>> check_choice("optimizer", "lbfgs", {"adam", "sgd"})
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: Unknown optimizer 'lbfgs'; choose one of: adam, sgd.
    """
    if not isinstance(value, str) or value.lower() not in choices:
        raise ArgumentError(
            f"Unknown {argument} {value!r}; choose one of: {', '.join(sorted(choices))}."
        )
    return value.lower()


def is_positive_int(value) -> bool:
    """True for a whole number of at least 1 (not a bool).

    >>> from nnfit.errors import is_positive_int
    >>> is_positive_int(3), is_positive_int(0), is_positive_int(2.0), is_positive_int(True)
    (True, False, False, False)
    """
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

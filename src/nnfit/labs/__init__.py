"""The labs: the R course's penguins and ISLR chapter 10's deep-learning labs, offline.

Each lab fits nnfit's networks to a bundled data set, prints its test figures beside the book's
(or the R course's) and beside a linear baseline fitted on the same split, and writes its plots
into ``out``. ``nnfit lab NAME`` runs one from the command line; ``nnfit lab --list`` lists them.

>>> import nnfit as nf
>>> list(nf.labs.LABS)
['penguins', 'hitters', 'mnist', 'documents', 'nyse', 'sound']
>>> figures = nf.labs.run("hitters", out=None, epochs=20, seeds=1)   # doctest: +ELLIPSIS
ISLR Table 10.2, Hitters: ...

Each lab is also a function, ``nf.labs.hitters(out="nnfit-lab")``, and a module that holds its
steps, ``nnfit.labs.hitters_lab`` (its data, baselines and book figures); ``epochs=None`` uses the
lab's own number (the book's where it fits in a minute). Every lab passes ``threads=1`` to
``fit``, so its figures are the same on every machine with the same seed.
"""

from __future__ import annotations

import importlib

from ..errors import ArgumentError, close_names

LABS = {
    "penguins": "The R course's two penguin labs: body mass (network vs least squares) and species (vs multinomial logistic).",
    "hitters": "ISLR Table 10.2: Hitters salaries, a network vs least squares vs the lasso, on the book's split and 5 seeds.",
    "mnist": "ISLR 10.9.2: 5,000 MNIST digits, the 256-128 network with dropout vs multinomial logistic, and a small CNN.",
    "documents": "ISLR 10.9.5 on Jane Austen's novels: bag of words (network and lasso) and an embedding + LSTM.",
    "nyse": "ISLR 10.9.6: NYSE log volume from 5 lags: autoregression, with day of week, an RNN and a nonlinear AR.",
    "sound": "Spectrograms (torch.stft) and a CNN telling synthetic tones, chirps, pulses and noise apart.",
}


def run(name: str = "penguins", out="nnfit-lab", seed: int = 1, epochs: int | None = None, stream=None, **options) -> dict:
    """Run the lab ``name``: print its figures beside the book's and a linear baseline's; write plots to ``out``.

    ``out=None`` writes no plots. ``epochs=None`` uses the lab's own number of epochs. Other
    keyword options go to the lab (e.g. ``seeds=`` for hitters). Returns the measured figures.

    >>> import nnfit as nf
    >>> figures = nf.labs.run("penguins", out=None, epochs=2)     # R's lab, in 2 epochs
    The R course's penguin labs: 266 training and 67 test penguins (seed 1)
    ...
    >>> sorted(figures)
    ['mass_mae', 'mass_ols_mae', 'species_accuracy', 'species_logistic_accuracy']
    """
    if name not in LABS:
        raise ArgumentError(f"Unknown lab {name!r}{close_names(name, LABS)}; labs: {', '.join(LABS)}.")
    module = importlib.import_module(f"{__name__}.{name}_lab")
    return module.run(out=out, seed=seed, epochs=epochs, stream=stream, **options)


# Each lab function's example: one short run (one epoch, no plots), its first printed line and
# the figures it returns. They run with the other docstring examples.
_EXAMPLES = {
    "penguins": ("nf.labs.penguins(out=None, epochs=1)", "The R course's penguin labs: ...",
                 "['mass_mae', 'mass_ols_mae', 'species_accuracy', 'species_logistic_accuracy']"),
    "hitters": ("nf.labs.hitters(out=None, epochs=1, seeds=1)", "ISLR Table 10.2, Hitters: ...",
                "['lasso_lambda', 'lasso_mae', 'mean', 'network_mae', 'ols_mae', 'per_seed', 'ratios', 'seconds']"),
    "mnist": ("nf.labs.mnist(out=None, epochs=1)", "ISLR 10.9.2, MNIST digits: ...",
              "['cnn_accuracy', 'logistic_accuracy', 'network_accuracy', 'seconds']"),
    "documents": ("nf.labs.documents(out=None, epochs=1)", "ISLR 10.9.5, documents: ...",
                  "['lasso_C', 'lasso_accuracy', 'lasso_cv_accuracy', 'lstm_accuracy', 'majority_accuracy', "
                  "'network_accuracy', 'seconds', 'vocabulary']"),
    "nyse": ("nf.labs.nyse(out=None, epochs=1)", "ISLR 10.9.6, NYSE: ...",
             "['ar_day_r2', 'ar_r2', 'nar_r2', 'rnn_r2', 'seconds']"),
    "sound": ("nf.labs.sound(out=None, epochs=1)", "Sound: 4 classes of SYNTHETIC clips ...",
              "['chance', 'cnn_accuracy', 'logistic_accuracy', 'seconds']"),
}


def _lab(name):
    def lab(out="nnfit-lab", seed: int = 1, epochs: int | None = None, stream=None, **options) -> dict:
        return run(name, out=out, seed=seed, epochs=epochs, stream=stream, **options)

    call, first_line, figures = _EXAMPLES[name]
    lab.__name__ = lab.__qualname__ = name
    lab.__doc__ = (
        f"{LABS[name]}\n\nThe same as ``nf.labs.run({name!r}, ...)``; the lab's code is ``nnfit.labs.{name}_lab``.\n\n"
        f"    >>> import nnfit as nf\n"
        f"    >>> figures = {call}   # doctest: +ELLIPSIS\n"
        f"    {first_line}\n"
        f"    >>> sorted(figures)\n"
        f"    {figures}\n"
    )
    return lab


penguins = _lab("penguins")
hitters = _lab("hitters")
mnist = _lab("mnist")
documents = _lab("documents")
nyse = _lab("nyse")
sound = _lab("sound")

__all__ = ["LABS", "run", *LABS]

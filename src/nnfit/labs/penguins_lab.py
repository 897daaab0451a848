"""The R course's two penguin labs, end to end, with nnfit's defaults.

Lab 1 predicts body mass with one hidden layer of 50 ReLU units (dropout 0.4, RMSprop, 100
epochs); lab 2 predicts species with hidden layers of 10 and 5 units (dropout 0.4 and 0.3).
Each is compared with the R lab's published figure and with a linear model fitted on the same
split: OLS for body mass, multinomial logistic regression (a network with no hidden layer)
for species.

>>> import nnfit as nf
>>> figures = nf.labs.penguins(out=None, epochs=5)     # doctest: +ELLIPSIS
The R course's penguin labs: 266 training and 67 test penguins (seed 1)
...
>>> sorted(figures)
['mass_mae', 'mass_ols_mae', 'species_accuracy', 'species_logistic_accuracy']
"""

from __future__ import annotations

import os
import warnings

import numpy as np

R_LAB = {"mass_mae": 423.0, "species_accuracy": 1.0}
FORMULAS = {"mass": "body_mass_g ~ .", "species": "species ~ ."}


def data(seed: int = 1):
    """The labs' data as R prepares it: drop_na(), select(-year), an 80/20 split."""
    from ..datasets import load
    from ..sampling import split

    penguins = load("penguins").dropna().drop(columns="year")
    return split(penguins, prop=0.8, seed=seed)


def ols_mae(training, testing) -> float:
    """Test MAE of ordinary least squares on the same design (numpy's lstsq)."""
    from ..design import Design

    design = Design(FORMULAS["mass"]).fit(training)
    train = design.transform(training)
    beta, *_ = np.linalg.lstsq(train.X, train.y, rcond=None)
    test = design.transform(testing)
    return float(np.abs(test.X @ beta - test.y).mean())


def run(out: str | os.PathLike | None = "nnfit-lab", seed: int = 1, epochs: int | None = None, stream=None) -> dict:
    """Run both labs; print each test metric beside the R lab's and a linear model's; write plots.

    ``epochs`` defaults to the R lab's 100. Returns the measured figures as a dict.
    """
    import sys

    from .. import plot
    from ..mlpfit import mlp

    epochs = 100 if epochs is None else epochs
    stream = stream or sys.stdout
    training, testing = data(seed)
    say = lambda text="": print(text, file=stream)  # noqa: E731
    options = dict(epochs=epochs, seed=seed, verbose=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mass = mlp(FORMULAS["mass"], training, hidden=50, activation="relu", dropout=0.4, optimizer="rmsprop", **options)
        species = mlp(FORMULAS["species"], training, hidden=[10, 5], dropout=[0.4, 0.3], optimizer="rmsprop", **options)
        logistic = mlp(FORMULAS["species"], training, hidden=[], optimizer="adam", lr=0.05, batch_size=None,
                       epochs=300, seed=seed, verbose=False)
    figures = {
        "mass_mae": mass.evaluate(testing)["mae"],
        "mass_ols_mae": ols_mae(training, testing),
        "species_accuracy": species.evaluate(testing)["accuracy"],
        "species_logistic_accuracy": logistic.evaluate(testing)["accuracy"],
    }
    say(f"The R course's penguin labs: {len(training)} training and {len(testing)} test penguins (seed {seed})")
    say()
    say(f"Lab 1  {FORMULAS['mass']}   one hidden layer, 50 ReLU units, dropout 0.4, RMSprop, {epochs} epochs")
    say(f"  test MAE (g)      nnfit {figures['mass_mae']:7.1f}   R lab {R_LAB['mass_mae']:7.1f}   "
        f"OLS {figures['mass_ols_mae']:7.1f}")
    say(f"Lab 2  {FORMULAS['species']}   hidden layers 10 and 5, dropout 0.4 and 0.3, RMSprop, {epochs} epochs")
    say(f"  test accuracy     nnfit {figures['species_accuracy']:7.3f}   R lab {R_LAB['species_accuracy']:7.3f}   "
        f"multinomial logistic {figures['species_logistic_accuracy']:.3f}")

    if out is not None:
        os.makedirs(out, exist_ok=True)
        plot.save(plot.truth_vs_predicted(testing["body_mass_g"], mass.predict(testing), "Truth (g)",
                                          "Predicted (g)", "Body mass, test set"), os.path.join(out, "mass_truth_vs_predicted.png"))
        plot.save(mass.plot(), os.path.join(out, "mass_learning_curves.png"))
        plot.save(plot.confusion_matrix(testing["species"], species.predict(testing), title="Species, test set"),
                  os.path.join(out, "species_confusion_matrix.png"))
        plot.save(species.plot(), os.path.join(out, "species_learning_curves.png"))
        say()
        say(f"Plots written to {out}/")
    return figures

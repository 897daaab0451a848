"""The labs over five seeds: test MAE of body mass and test accuracy of species, as nf.mlp fits them.

The R lab's figures: MAE 423 g, accuracy 1. Run: python examples/five_seeds.py
"""

import statistics
import warnings

import nnfit as nf

warnings.simplefilter("ignore", nf.errors.MissingValuesWarning)
penguins = nf.datasets.load("penguins").dropna().drop(columns="year")
maes, accuracies = [], []
for seed in range(1, 6):
    training, testing = nf.split(penguins, prop=0.8, seed=seed)
    mass = nf.mlp("body_mass_g ~ .", training, hidden=50, dropout=0.4, optimizer="rmsprop", epochs=100, seed=seed,
                  verbose=False)
    species = nf.mlp("species ~ .", training, hidden=[10, 5], dropout=[0.4, 0.3], epochs=100, seed=seed, verbose=False)
    maes.append(mass.evaluate(testing)["mae"])
    accuracies.append(species.evaluate(testing)["accuracy"])
print("body mass test MAE (g):", ", ".join(f"{m:.1f}" for m in maes), f"; median {statistics.median(maes):.1f}")
print("species test accuracy: ", ", ".join(f"{a:.3f}" for a in accuracies))

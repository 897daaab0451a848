"""Measure the coverage of nnfit's conformal prediction intervals over random splits.

For each of 20 random 80/20 splits of a data set, fit ``nf.mlp`` on the 80%, then measure on
the 20% how often the interval at level 0.95 holds the response, and how wide it is:

- split conformal: ``nf.mlp(..., valid=0.25)``, calibrated on its validation rows;
- CV+: the same network fitted on all the training rows, ``fit.calibrate(training, method="cv+", folds=10)``.

Data: Hitters (``log(Salary) ~ .``, rows without a Salary dropped) and a simulated set
(y = sin(2 x1) + x2 / 2 + noise whose sd grows with |x1|, 400 rows). Run:

    .venv/bin/python tools/coverage.py              # prints a table; docs/intervals.md shows one
    .venv/bin/python tools/coverage.py --splits 200 # the same over more splits
"""

import argparse
import math
import time
import warnings

import numpy as np
import pandas as pd

import nnfit as nf

LEVEL = 0.95


def simulated(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(-2, 2, n), rng.normal(size=n)
    noise = rng.normal(scale=0.3 + 0.2 * np.abs(x1), size=n)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": np.sin(2 * x1) + 0.5 * x2 + noise})


def measure(name, formula, data, response, splits, options):
    rows = []
    for seed in range(splits):
        training, testing = nf.split(data, prop=0.8, seed=seed)
        truth = response(testing)
        split = nf.mlp(formula, data=training, valid=0.25, seed=seed, verbose=False, **options)
        cv = nf.mlp(formula, data=training, seed=seed, verbose=False, **options)
        cv.calibrate(training, method="cv+", folds=10)
        n_cal = split.calibration_.n
        for method, fit in (("split", split), ("cv+", cv)):
            bounds = fit.predict(testing, type="interval", level=LEVEL)
            inside = (truth >= bounds["lower"]) & (truth <= bounds["upper"])
            # split conformal's coverage, averaged over draws of calibration and test rows, is
            # exactly ceil((n + 1) level) / (n + 1) for n calibration scores without ties
            expected = math.ceil(round((n_cal + 1) * LEVEL, 9)) / (n_cal + 1) if method == "split" else np.nan
            rows.append({"data": name, "method": method, "coverage": inside.mean(), "expected": expected,
                         "width": (bounds["upper"] - bounds["lower"]).mean()})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=20)
    splits = parser.parse_args().splits
    began = time.perf_counter()
    warnings.simplefilter("ignore")
    hitters = nf.datasets.load("Hitters").dropna(subset=["Salary"])
    rows = measure("Hitters", "log(Salary) ~ .", hitters, lambda d: np.log(d["Salary"]), splits,
                   dict(hidden=10, epochs=100))
    rows += measure("simulated", "y ~ x1 + x2", simulated(), lambda d: d["y"], splits, dict(hidden=10, epochs=100))
    frame = pd.DataFrame(rows)
    table = frame.groupby(["data", "method"], sort=False).agg(
        mean_coverage=("coverage", "mean"), se=("coverage", "sem"), min=("coverage", "min"),
        max=("coverage", "max"), expected=("expected", "mean"), mean_width=("width", "mean"))
    print(f"Coverage of nnfit's conformal intervals at level {LEVEL}, {splits} random 80/20 splits")
    print(table.round(3).to_string())
    print("se: the standard error of the mean over splits; expected: split conformal's exact mean coverage for "
          "its number of calibration rows")
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()

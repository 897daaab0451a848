"""ISLR 10.9.1 and Table 10.2: baseball salaries from a network, least squares and the lasso.

The book drops the 59 players without a salary (263 remain), keeps a random third of them
(``trunc(n / 3)``, 87 players) for testing and fits ``Salary ~ .`` three ways on the rest:
least squares, the lasso with its penalty chosen by 10-fold cross-validation of the mean
absolute error (glmnet's ``cv.glmnet(type.measure = "mae")``, ``lambda.min``), and a network
of 50 ReLU units with dropout 0.4, trained with RMSprop (learning rate 0.001) for 1,500 epochs
in batches of 32. Table 10.2 gives the test mean absolute errors: 254.7, 252.3 and 257.4.

nnfit's split draws its third with numpy, not R's ``set.seed(13)``, so the same figures cannot
come out; the lab therefore also repeats the three fits on 5 splits (seeds ``seed`` to
``seed + 4``) and prints their mean. Two differences from the book, both on purpose: the
predictors are standardized with the training rows only (the book scales all 263 rows before
splitting), and ``nf.mlp`` also standardizes the response and maps predictions back.

The lasso uses scikit-learn (``pip install scikit-learn``) for its coordinate descent.
"""

from __future__ import annotations

import warnings

import numpy as np

from .report import Report, number

BOOK = {"network_mae": 257.4, "lasso_mae": 252.3, "ols_mae": 254.7}  # ISLR 2nd ed., Table 10.2
FORMULA = "Salary ~ ."
EPOCHS = 1500


def data(seed: int = 1):
    """(training, testing): the players with a salary, a third of them (rounded down) for testing."""
    from ..datasets import load
    from ..sampling import split

    hitters = load("Hitters").dropna()
    n = len(hitters)
    return split(hitters, prop=(n - n // 3) / n, seed=seed)


def matrices(training, testing):
    """The design ``Salary ~ .`` (R's model.matrix, with intercept) of both parts: (X, y, X_test, y_test)."""
    from ..design import Design

    design = Design(FORMULA).fit(training)
    train, test = design.transform(training), design.transform(testing)
    return (np.asarray(train.X, dtype=float), np.asarray(train.y, dtype=float).ravel(),
            np.asarray(test.X, dtype=float), np.asarray(test.y, dtype=float).ravel())


def ols_mae(training, testing) -> float:
    """Test MAE of least squares (numpy's lstsq on the model matrix)."""
    X, y, X_test, y_test = matrices(training, testing)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(np.abs(X_test @ beta - y_test).mean())


def lasso_mae(training, testing, seed: int = 1, folds: int = 10, n_lambdas: int = 100) -> tuple[float, float, int]:
    """The lasso as ``cv.glmnet(type.measure = "mae")`` picks it: (test MAE, lambda.min, nonzero coefficients).

    Predictors are standardized with the training rows (as glmnet does); the path has
    ``n_lambdas`` values from the smallest lambda that zeroes every coefficient down to 1e-4 of
    it (glmnet's defaults when n > p); folds are drawn with numpy from ``seed``.
    """
    try:
        from sklearn.linear_model import lasso_path
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("The Hitters lab's lasso needs scikit-learn: pip install scikit-learn") from None
    X, y, X_test, y_test = matrices(training, testing)
    X, X_test = X[:, 1:], X_test[:, 1:]  # the intercept is fitted separately, by centring
    mean, sd = X.mean(axis=0), X.std(axis=0)
    sd[sd == 0] = 1.0
    Z, Z_test = (X - mean) / sd, (X_test - mean) / sd
    top = np.abs(Z.T @ (y - y.mean())).max() / len(y)
    lambdas = top * np.logspace(0, -4, n_lambdas)
    fold = np.random.default_rng(seed).permutation(np.arange(len(y)) % folds)
    errors = np.zeros((folds, n_lambdas))
    for k in range(folds):
        inside, outside = fold != k, fold == k
        zm, ym = Z[inside].mean(axis=0), y[inside].mean()
        _, coefs, _ = lasso_path(Z[inside] - zm, y[inside] - ym, alphas=lambdas, max_iter=10_000)
        predicted = ym + (Z[outside] - zm) @ coefs  # (rows, lambdas): sklearn returns lambdas largest first
        errors[k] = np.abs(predicted - y[outside, None]).mean(axis=0)
    best = float(lambdas[int(np.argmin(errors.mean(axis=0)))])
    zm, ym = Z.mean(axis=0), y.mean()
    _, coefs, _ = lasso_path(Z - zm, y - ym, alphas=[best], max_iter=10_000)
    beta = coefs[:, 0]
    predicted = ym + (Z_test - zm) @ beta
    return float(np.abs(predicted - y_test).mean()), best, int(np.count_nonzero(beta))


def network(training, seed: int, epochs: int):
    """The book's network: 50 ReLU units, dropout 0.4, RMSprop (lr 0.001), batches of 32."""
    from ..mlpfit import mlp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlp(FORMULA, training, hidden=50, activation="relu", dropout=0.4, optimizer="rmsprop", lr=0.001,
                   epochs=epochs, batch_size=32, seed=seed, verbose=False, threads=1)


def run(out="nnfit-lab", seed: int = 1, epochs: int | None = None, stream=None, seeds: int = 5) -> dict:
    """Table 10.2 on the bundled Hitters table: one split (``seed``) in full, then ``seeds`` splits' means."""
    from .. import plot

    epochs = EPOCHS if epochs is None else epochs
    report = Report(stream)
    rows = []
    for k in range(seeds):
        training, testing = data(seed + k)
        fitted = network(training, seed + k, epochs)
        lasso, lam, nonzero = lasso_mae(training, testing, seed=seed + k)
        rows.append({"network_mae": fitted.evaluate(testing)["mae"], "ols_mae": ols_mae(training, testing),
                     "lasso_mae": lasso, "lasso_lambda": lam, "lasso_nonzero": nonzero})
        if k == 0:
            first, first_testing, first_training = fitted, testing, training
    mean = {key: float(np.mean([row[key] for row in rows])) for key in ("network_mae", "ols_mae", "lasso_mae")}
    sd = {key: float(np.std([row[key] for row in rows], ddof=1)) if seeds > 1 else None for key in mean}
    ratios = [row["network_mae"] / row["ols_mae"] for row in rows]

    report.say(f"ISLR Table 10.2, Hitters: {FORMULA}, {len(first_training) + len(first_testing)} players with a salary "
               "(the bundled ISLR2 table)")
    report.say(f"  {len(first_training)} training and {len(first_testing)} test players (a third, as the book; seed {seed}); "
               f"network: 50 ReLU units, dropout 0.4, RMSprop lr 0.001, {epochs} epochs, batches of 32")
    report.say()
    spread = lambda key: f"{mean[key]:.1f} +- {sd[key]:.1f}" if sd[key] is not None else f"{mean[key]:.1f}"  # noqa: E731
    report.table(
        ["test MAE ($1000s)", f"nnfit, seed {seed}", f"mean of {seeds} seeds", "book"],
        [["neural network", number(rows[0]["network_mae"], 1), spread("network_mae"), number(BOOK["network_mae"], 1)],
         ["least squares", number(rows[0]["ols_mae"], 1), spread("ols_mae"), number(BOOK["ols_mae"], 1)],
         [f"lasso (CV MAE, {rows[0]['lasso_nonzero']} of 19 kept)", number(rows[0]["lasso_mae"], 1), spread("lasso_mae"),
          number(BOOK["lasso_mae"], 1)],
         ["network / least squares", number(ratios[0], 3), f"{np.mean(ratios):.3f} (max {max(ratios):.3f})",
          number(BOOK["network_mae"] / BOOK["ols_mae"], 3)]],
    )
    report.say()
    report.say(f"  ({report.seconds():.1f} s; the split is numpy's, not R's set.seed(13), so no row matches the book exactly)")
    figures = {**{key: rows[0][key] for key in ("network_mae", "ols_mae", "lasso_mae", "lasso_lambda")},
               "mean": mean, "ratios": ratios, "per_seed": rows, "seconds": report.seconds()}
    if out is None:
        return figures
    predicted = first.predict(first_testing)
    report.plots(out, {
        "hitters_truth_vs_predicted.png": plot.truth_vs_predicted(first_testing["Salary"], predicted, "Salary ($1000s)",
                                                                  "Predicted", "Hitters, test set: the network"),
        "hitters_learning_curves.png": first.plot(),
    })
    return figures

"""ISLR 10.9.6: forecasting the NYSE's log trading volume from the five previous days.

Three daily series (``DJ_return``, ``log_volume``, ``log_volatility``) are standardized; each
day's ``log_volume`` is predicted from the L = 5 previous days of all three (``nf.lags``), on the
book's training period (``train``, 1962-1980) and scored on the rest (1980-1986) by
R^2 = 1 - mean squared error / variance of the test days' log volume. The book's four models:

- a linear autoregression on the 15 lags (R^2 0.41),
- the same with the day of the week as a factor (0.46),
- an RNN reading the 5 days as a sequence of 3-vectors: 12 units, dropout 0.1, RMSprop, 200
  epochs in batches of 64 (0.42),
- a nonlinear autoregression: one hidden layer of 32 ReLU units with dropout 0.5 on the 15 lags
  and the day of the week (0.47).

One difference from the book, on purpose: the series are standardized with the training
period's means and standard deviations (the book uses all days). The book's keras RNN also had
a recurrent dropout of 0.1, which torch's RNN lacks.
"""

from __future__ import annotations

import numpy as np

from .report import Report, number

BOOK = {"ar_r2": 0.41, "ar_day_r2": 0.46, "rnn_r2": 0.42, "nar_r2": 0.47}  # ISLR 2nd ed., 10.9.6
SERIES = ["DJ_return", "log_volume", "log_volatility"]
LAGS = 5
EPOCHS = {"rnn": 200, "nar": 200}  # the book's


def data(lags: int = LAGS):
    """(frame, X3, train): the standardized series with their lags, the (rows, lags, 3) tensor, the book's split.

    The first ``lags`` days, which lack a full history, are dropped from all three.
    """
    from ..datasets import load
    from ..sequences import lags as lagged

    nyse = load("NYSE")
    train = nyse["train"].to_numpy()
    series = nyse[SERIES]
    scaled = (series - series[train].mean()) / series[train].std()
    frame = lagged(scaled, SERIES, lags)
    frame.insert(0, "log_volume", scaled["log_volume"])
    frame["day_of_week"] = nyse["day_of_week"]
    sequences = lagged(scaled, SERIES, lags, as_tensor=True)
    keep = slice(lags, None)
    return frame.iloc[keep].reset_index(drop=True), sequences[keep], train[keep]


def r2(predicted, truth) -> float:
    """The book's R^2: 1 - mean squared error / var(truth), with R's var (n - 1)."""
    predicted, truth = np.asarray(predicted, float).ravel(), np.asarray(truth, float).ravel()
    return float(1 - np.mean((predicted - truth) ** 2) / np.var(truth, ddof=1))


def design(frame, day: bool):
    """The lag columns (and day-of-week indicators, R's treatment coding) with an intercept."""
    columns = [c for c in frame.columns if c.startswith("L")]
    parts = [np.ones((len(frame), 1)), frame[columns].to_numpy()]
    if day:
        levels = list(frame["day_of_week"].cat.categories)
        parts.append(np.column_stack([(frame["day_of_week"] == level).to_numpy(float) for level in levels[1:]]))
    return np.hstack(parts)


def autoregression(frame, train, day: bool) -> tuple[float, np.ndarray]:
    """Test R^2 and predictions of least squares on the lags (numpy's lstsq)."""
    X, y = design(frame, day), frame["log_volume"].to_numpy()
    beta, *_ = np.linalg.lstsq(X[train], y[train], rcond=None)
    predicted = X[~train] @ beta
    return r2(predicted, y[~train]), predicted


def fit_rnn(X3, y, epochs, seed):
    import torch
    from torch import nn

    from ..train.learner import setup
    from ..modules import RNN

    return (setup(RNN, loss=nn.MSELoss(), optimizer=torch.optim.RMSprop)
            .set_hparams(input_size=X3.shape[2], hidden_size=12, dropout=0.1)
            .set_opt_hparams(lr=0.001)
            .fit((X3, y), epochs=epochs, batch_size=64, seed=seed, verbose=False, threads=1))


def fit_nar(X, y, epochs, seed):
    import torch
    from torch import nn

    from ..train.learner import setup
    from ..modules import MLP

    return (setup(MLP, loss=nn.MSELoss(), optimizer=torch.optim.RMSprop)
            .set_hparams(input_size=X.shape[1], hidden=32, dropout=0.5)
            .set_opt_hparams(lr=0.001)
            .fit((X, y), epochs=epochs, batch_size=64, seed=seed, verbose=False, threads=1))


def run(out="nnfit-lab", seed: int = 1, epochs: int | None = None, stream=None) -> dict:
    """The four models of the book's NYSE lab, their test R^2 beside the book's."""
    import torch

    report = Report(stream)
    epochs = dict(EPOCHS) if epochs is None else {key: epochs for key in EPOCHS}
    frame, X3, train = data()
    y = torch.tensor(frame["log_volume"].to_numpy(), dtype=torch.float32).reshape(-1, 1)
    mask = torch.from_numpy(train.copy())
    truth = y[~mask].numpy()
    figures = {}
    figures["ar_r2"], ar_predicted = autoregression(frame, train, day=False)
    figures["ar_day_r2"], _ = autoregression(frame, train, day=True)
    rnn = fit_rnn(X3[mask], y[mask], epochs["rnn"], seed)
    rnn_predicted = rnn.predict(X3[~mask]).numpy()
    figures["rnn_r2"] = r2(rnn_predicted, truth)
    X = torch.tensor(design(frame, day=True)[:, 1:], dtype=torch.float32)  # the network has its own intercept
    nar = fit_nar(X[mask], y[mask], epochs["nar"], seed)
    figures["nar_r2"] = r2(nar.predict(X[~mask]).numpy(), truth)

    report.say(f"ISLR 10.9.6, NYSE: log_volume from {LAGS} lags of {', '.join(SERIES)} (the bundled ISLR2 table); "
               f"{int(train.sum())} training days (1962-1980) and {int((~train).sum())} test days (seed {seed})")
    report.say("  series standardized with the training days; R^2 = 1 - MSE / var(test log_volume)")
    report.say()
    report.table(
        ["test R^2", "nnfit", "book", "epochs"],
        [["linear AR, 15 lags (least squares)", number(figures["ar_r2"]), number(BOOK["ar_r2"], 2), "-"],
         ["linear AR + day_of_week", number(figures["ar_day_r2"]), number(BOOK["ar_day_r2"], 2), "-"],
         ["RNN, 12 units, dropout 0.1", number(figures["rnn_r2"]), number(BOOK["rnn_r2"], 2), epochs["rnn"]],
         ["nonlinear AR, 32 ReLU, dropout 0.5, + day", number(figures["nar_r2"]), number(BOOK["nar_r2"], 2), epochs["nar"]]],
    )
    report.finish(figures)
    if out is None:
        return figures
    report.plots(out, {
        "nyse_test_predictions.png": _series_figure(truth.ravel(), ar_predicted, rnn_predicted.ravel()),
        "nyse_rnn_learning_curves.png": rnn.plot(),
    })
    return figures


def _series_figure(truth, ar, rnn):
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4))
    days = np.arange(len(truth))
    axis.plot(days, truth, color="0.6", linewidth=0.6, label="log_volume (standardized)")
    axis.plot(days, ar, linewidth=0.8, label="linear AR")
    axis.plot(days, rnn, linewidth=0.8, label="RNN")
    axis.set_xlabel("test day (1980-1986)")
    axis.legend(loc="upper left")
    axis.set_title("NYSE: test-period log volume and its one-day-ahead forecasts")
    figure.tight_layout()
    return figure

"""Plots of the R lab: truth against prediction, learning curves, a confusion matrix.

Each function returns a matplotlib Figure (matplotlib is imported on first use).
"""

from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib.pyplot as plt  # headless machines get the Agg backend automatically

    return plt


def _numbers(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _is_fit(value) -> bool:
    """Whether ``value`` is a fitted formula model (``nf.mlp``'s): it has a design and predicts."""
    return hasattr(value, "design") and hasattr(value, "predict") and hasattr(value, "task")


def _pandas(data):
    return data.to_pandas() if hasattr(data, "to_pandas") and not hasattr(data, "iloc") else data


def _scored(fit, data):
    """(truth, predicted, frame) on the rows ``fit.evaluate(data)`` scores: response and predictors present.

    Regression: truth and predictions in the response's units; classification: labels.
    """
    frame = _pandas(data)
    matrices = fit.design.transform(frame, response=True)
    if fit.task == "regression":
        truth = fit.design.unscale_response(matrices.y, matrices.offset)[:, 0]
        predicted = np.asarray(fit.predict(frame), dtype=np.float64).reshape(len(frame), -1)[matrices.rows, 0]
    else:
        levels = list(fit.design.levels)
        truth = np.asarray([levels[code] for code in np.asarray(matrices.y, dtype=np.int64)], dtype=object)
        predicted = np.asarray(fit.predict(frame), dtype=object)[matrices.rows]
    return truth, predicted, frame


def _response_name(fit) -> str:
    columns = list(getattr(fit.design, "response_columns", None) or fit.design.response)
    return columns[0] if len(columns) == 1 else ", ".join(columns)


def _with_unit(text: str, unit: str | None) -> str:
    return f"{text} ({unit})" if unit else text


def truth_vs_predicted(truth, predicted, xlabel: str | None = None, ylabel: str | None = None,
                       title: str | None = None, unit: str | None = None, rows: str = "rows"):
    """The R lab's scatter of true against predicted values, with the line y = x.

    Takes arrays ``(truth, predicted)`` (tensors, Series, lists; rows with a NaN are left out), or
    a fitted model and a data frame, ``(fit, data)``: then it draws the rows ``fit.evaluate(data)``
    scores (those with the response and every predictor), predictions as ``fit.predict(data)``
    gives them, axes named after the response (``unit="g"`` adds its unit; nnfit cannot know it),
    and a title with the number of rows, the MAE and the R² (``rows="test rows"`` says which rows).

    >>> import nnfit as nf
    >>> figure = nf.plot.truth_vs_predicted([1, 2, 3], [1.1, 1.9, 3.2], xlabel="body_mass_g")
    >>> figure.axes[0].get_xlabel()
    'body_mass_g'
    >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", training, hidden=5, epochs=5, seed=1, verbose=False)
    >>> axis = nf.plot.truth_vs_predicted(fit, testing, unit="g").axes[0]
    >>> axis.get_xlabel(), axis.get_ylabel()
    ('True body_mass_g (g)', 'Predicted body_mass_g (g)')
    >>> len(axis.collections[0].get_offsets()) == fit.evaluate(testing).n
    True
    """
    if _is_fit(truth):
        fit = truth
        if fit.task != "regression" or len(getattr(fit.design, "response_columns", [])) != 1:
            from .errors import ArgumentError

            what = "a classifier" if fit.task != "regression" else f"{len(fit.design.response_columns)} responses"
            raise ArgumentError(f"truth_vs_predicted(fit, data) draws one numeric response; this fit has {what}. "
                                "For classes use nf.plot.confusion_matrix(fit, data); for several responses pass "
                                "each one's (truth, predicted) arrays.")
        truth, predicted, _ = _scored(fit, predicted)
        name = _response_name(fit)
        xlabel = xlabel or _with_unit(f"True {name}", unit)
        ylabel = ylabel or _with_unit(f"Predicted {name}", unit)
        if title is None:
            errors = predicted - truth
            total = ((truth - truth.mean()) ** 2).sum()
            r2 = 1 - (errors**2).sum() / total if total > 0 else float("nan")
            title = f"{len(truth)} {rows}\nMAE {np.abs(errors).mean():.4g}{' ' + unit if unit else ''}, R² {r2:.3f}"
    plt = _pyplot()
    truth, predicted = _numbers(truth), _numbers(predicted)
    keep = np.isfinite(truth) & np.isfinite(predicted)
    truth, predicted = truth[keep], predicted[keep]
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(truth, predicted, s=14, alpha=0.7)
    if len(truth):
        low = min(truth.min(), predicted.min())
        high = max(truth.max(), predicted.max())
        axes.plot([low, high], [low, high], color="black", linewidth=1, label="y = x")
        axes.legend(loc="upper left")
    axes.set_xlabel(xlabel or "Truth")
    axes.set_ylabel(ylabel or "Predicted")
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


# What each recorded quantity is, for the y axis: (label, unit). "response" is the response's unit.
_QUANTITIES = {"mae": ("MAE", "response"), "rmse": ("RMSE", "response"), "accuracy": ("accuracy", "proportion correct")}
_LOSSES = {"regression": "loss: MSE of the standardized response",
           "binary": "loss: binary cross-entropy (log loss)", "multiclass": "loss: cross-entropy (log loss)"}


def _fit_dropout(fit) -> bool:
    rates = np.asarray(getattr(fit.model, "dropouts", []) or [], dtype=object).ravel().tolist()
    flat = [float(r) for rate in rates for r in (rate if isinstance(rate, (list, tuple)) else [rate])]
    return any(r > 0 for r in flat)


def learning_curves(history, title: str | None = None, unit: str | None = None):
    """One panel per metric, training and validation value by epoch, every axis named.

    ``history`` is a long frame (columns set, metric, epoch, value, and model for an ensemble,
    which is drawn as the mean over models), or a fit from ``nf.mlp``, which also tells the plot
    what each number is:

    - a numeric response is trained on the standardized scale, so the loss (a mean squared
      error there) is shown converted back, as the RMSE in the response's units:
      RMSE = sd(response) x sqrt(loss), exact since the loss is the mean over the epoch's rows;
      beside the MAE, both on the response's own scale (``unit="g"`` names it; otherwise
      "<response> units"). Several responses keep the loss on the standardized scale, so labelled.
    - a classifier's loss is the cross-entropy (log loss), accuracy a proportion.
    - training values are averaged over each epoch's batches while the network trains, with
      dropout on when it has dropout (the legend says so): they read worse than the same network
      scores in eval mode; validation values are measured in eval mode after each epoch.

    ``fit.plot()`` draws the curves of a fit.

    >>> import pandas as pd, nnfit as nf
    >>> history = pd.DataFrame({"set": ["train", "valid"] * 4, "metric": ["loss"] * 4 + ["mae"] * 4,
    ...                         "epoch": [1, 1, 2, 2] * 2, "value": [0.9, 1.0, 0.5, 0.7, 9, 10, 5, 7]})
    >>> figure = nf.plot.learning_curves(history, title="body_mass_g ~ .")
    >>> [axis.get_title() for axis in figure.axes]
    ['loss', 'mae']
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm", penguins, hidden=5, dropout=0.4, epochs=3,
    ...              valid=0.2, seed=1, verbose=False)
    >>> figure = nf.plot.learning_curves(fit, unit="g")
    >>> [(axis.get_title(), axis.get_ylabel()) for axis in figure.axes]
    [('rmse (from the loss)', 'RMSE (g)'), ('mae', 'MAE (g)')]
    >>> [line.get_label() for line in figure.axes[0].lines]
    ['train (dropout on, during the epoch)', 'validation (eval mode)']
    """
    plt = _pyplot()
    fit = history if _is_fit(history) else None
    frame = fit.metrics if fit is not None else history
    models = frame["model"].nunique() if "model" in frame.columns else 1
    if "model" in frame.columns:  # an ensemble: the mean over its models
        frame = frame.groupby(["set", "metric", "epoch"], sort=False, as_index=False)["value"].mean()
    names = list(dict.fromkeys(frame["metric"]))
    titles, labels, values = {}, {}, {}
    split_names = {"train": "train", "valid": "valid"}
    note = None
    if fit is not None:
        title = fit.settings.get("formula") if title is None else title
        columns = list(getattr(fit.design, "response_columns", []) or [])
        response_unit = unit or (f"{columns[0]} units" if len(columns) == 1 else None)
        one_response = fit.task == "regression" and len(columns) == 1
        for name in names:
            label, kind = _QUANTITIES.get(name, (name, None))
            labels[name] = _with_unit(label, response_unit if kind == "response" else kind)
        if "loss" in names:
            if one_response:
                sd = float(np.asarray(fit.design.response_scale_, dtype=np.float64).reshape(-1)[0])
                values["loss"] = lambda v, sd=sd: sd * np.sqrt(np.asarray(v, dtype=np.float64))
                titles["loss"], labels["loss"] = "rmse (from the loss)", _with_unit("RMSE", response_unit)
            else:
                labels["loss"] = _LOSSES.get(fit.task, "loss")
        dropout = _fit_dropout(fit)
        split_names = {"train": "train (dropout on, during the epoch)" if dropout else "train (during the epoch)",
                       "valid": "validation (eval mode)"}
        if dropout and "train" in set(frame["set"]):
            note = ("Training values: the mean over each epoch's batches, with dropout on, while the weights "
                    "move; validation values: eval mode after the epoch.")
    count = max(len(names), 1)
    figure, axes = plt.subplots(1, count, figsize=(4.2 * count, 3.4 + (0.3 if note else 0)), squeeze=False)
    for axis, name in zip(axes[0], names):
        for split, part in frame[frame["metric"] == name].groupby("set", sort=False):
            shown = values[name](part["value"]) if name in values else part["value"]
            label = split_names.get(split, split) + (f", mean of {models} models" if models > 1 else "")
            axis.plot(part["epoch"], shown, label=label)
        axis.set_title(titles.get(name, name))
        axis.set_xlabel("epoch")
        axis.set_ylabel(labels.get(name, name))
        axis.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    if note:
        figure.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, wrap=True)
        figure.tight_layout(rect=(0, 0.07, 1, 1))
    else:
        figure.tight_layout()
    return figure


def _luminance(rgba) -> float:
    """WCAG relative luminance of an sRGB colour (0 black, 1 white)."""
    channels = np.asarray(rgba[:3], dtype=np.float64)
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def text_colour(background) -> str:
    """Black or white, whichever contrasts more with ``background`` (an RGB(A) tuple in 0..1).

    >>> import nnfit as nf
    >>> nf.plot.text_colour((0.03, 0.19, 0.42)), nf.plot.text_colour((0.97, 0.98, 1.0))   # navy, near white
    ('white', 'black')
    """
    light = _luminance(background)
    # WCAG contrast ratios (L1 + 0.05) / (L2 + 0.05) against black (L = 0) and white (L = 1)
    return "black" if (light + 0.05) / 0.05 >= 1.05 / (light + 0.05) else "white"


def confusion_matrix(truth, predicted, levels=None, title: str | None = None, xlabel: str | None = None,
                     ylabel: str | None = None):
    """A table of counts, true class by predicted class, drawn as a heat map with the counts.

    Each count is written in black or white, whichever contrasts more with its cell; the title
    gives the accuracy (after ``title`` when one is given). Takes label arrays
    ``(truth, predicted)`` or a fitted classifier and a data frame, ``(fit, data)``: then it
    counts the rows ``fit.evaluate(data)`` scores, and names the axes after the response.

    >>> import nnfit as nf
    >>> figure = nf.plot.confusion_matrix(["Adelie", "Gentoo", "Gentoo"], ["Adelie", "Gentoo", "Adelie"])
    >>> [text.get_text() for text in figure.axes[0].texts]   # rows: truth; columns: predicted
    ['1', '0', '1', '1']
    >>> figure.axes[0].get_title()
    'Accuracy 0.667 (2 of 3 rows)'
    """
    import pandas as pd

    if _is_fit(truth):
        fit = truth
        if fit.task == "regression":
            from .errors import ArgumentError

            raise ArgumentError("confusion_matrix(fit, data) needs a classifier; this fit is a regression: "
                                "use nf.plot.truth_vs_predicted(fit, data).")
        truth, predicted, _ = _scored(fit, predicted)
        levels = list(fit.design.levels) if levels is None else levels
        name = _response_name(fit)
        xlabel, ylabel = xlabel or f"Predicted {name}", ylabel or f"True {name}"
    plt = _pyplot()
    truth = pd.Categorical(np.asarray(truth, dtype=object), categories=levels) if levels is not None else pd.Categorical(truth)
    predicted = pd.Categorical(np.asarray(predicted, dtype=object), categories=list(truth.categories))
    labels = list(truth.categories)
    table = pd.crosstab(
        pd.Categorical(truth, categories=labels), pd.Categorical(predicted, categories=labels), dropna=False
    ).reindex(index=labels, columns=labels, fill_value=0)
    counts = table.to_numpy()
    figure, axis = plt.subplots(figsize=(1.2 * len(labels) + 2.5, 1.2 * len(labels) + 2))
    image = axis.imshow(counts, cmap="Blues", vmin=0)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel(xlabel or "Predicted class")
    axis.set_ylabel(ylabel or "True class")
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = text_colour(image.cmap(image.norm(counts[i, j])))
            axis.text(j, i, int(counts[i, j]), ha="center", va="center", color=colour, fontsize=11)
    total = int(counts.sum())
    correct = int(np.trace(counts)) if len(labels) else 0
    accuracy = f"Accuracy {correct / total:.3f} ({correct} of {total} rows)" if total else "No rows"
    axis.set_title(f"{title}: {accuracy[0].lower() + accuracy[1:]}" if title else accuracy, fontsize=10)
    figure.tight_layout()
    return figure


def save(figure, path) -> None:
    """Write a figure as PNG, atomically (a temporary file renamed into place), and close it.

    The file gets the user's umask (0644 under umask 022); a file it replaces keeps its mode.

    >>> import os, tempfile, nnfit as nf
    >>> path = os.path.join(tempfile.mkdtemp(), "scatter.png")
    >>> nf.plot.save(nf.plot.truth_vs_predicted([1, 2, 3], [1.1, 1.9, 3.2]), path)
    >>> open(path, "rb").read(4)
    b'\\x89PNG'
    """
    import io

    from .files import atomic_write

    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        atomic_write(path, buffer.getvalue())
    finally:
        _pyplot().close(figure)

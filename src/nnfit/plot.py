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


def truth_vs_predicted(truth, predicted, xlabel: str = "Truth", ylabel: str = "Predicted", title: str | None = None):
    """The R lab's scatter of true against predicted values, with the line y = x.

    >>> import nnfit as nf
    >>> figure = nf.plot.truth_vs_predicted([1, 2, 3], [1.1, 1.9, 3.2], xlabel="body_mass_g")
    >>> figure.axes[0].get_xlabel()
    'body_mass_g'
    """
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
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure


def learning_curves(history, title: str | None = None):
    """One panel per metric, training and validation value by epoch, from a long history frame.

    The frame is a fit's ``.metrics`` (columns set, metric, epoch, value); ``fit.plot()`` draws it.

    >>> import pandas as pd, nnfit as nf
    >>> history = pd.DataFrame({"set": ["train", "valid"] * 4, "metric": ["loss"] * 4 + ["mae"] * 4,
    ...                         "epoch": [1, 1, 2, 2] * 2, "value": [0.9, 1.0, 0.5, 0.7, 9, 10, 5, 7]})
    >>> figure = nf.plot.learning_curves(history, title="body_mass_g ~ .")
    >>> [axis.get_title() for axis in figure.axes]
    ['loss', 'mae']
    """
    plt = _pyplot()
    names = list(dict.fromkeys(history["metric"]))
    figure, axes = plt.subplots(1, max(len(names), 1), figsize=(4 * max(len(names), 1), 3.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        for split, part in history[history["metric"] == name].groupby("set", sort=False):
            axis.plot(part["epoch"], part["value"], label=split)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_matrix(truth, predicted, levels=None, title: str | None = None):
    """A table of counts, true class by predicted class, drawn as a heat map with the counts.

    >>> import nnfit as nf
    >>> figure = nf.plot.confusion_matrix(["Adelie", "Gentoo", "Gentoo"], ["Adelie", "Gentoo", "Adelie"])
    >>> [text.get_text() for text in figure.axes[0].texts]   # rows: truth; columns: predicted
    ['1', '0', '1', '1']
    """
    import pandas as pd

    plt = _pyplot()
    truth = pd.Categorical(np.asarray(truth, dtype=object), categories=levels) if levels is not None else pd.Categorical(truth)
    predicted = pd.Categorical(np.asarray(predicted, dtype=object), categories=list(truth.categories))
    labels = list(truth.categories)
    table = pd.crosstab(
        pd.Categorical(truth, categories=labels), pd.Categorical(predicted, categories=labels), dropna=False
    ).reindex(index=labels, columns=labels, fill_value=0)
    figure, axis = plt.subplots(figsize=(1.2 * len(labels) + 2.5, 1.2 * len(labels) + 2))
    axis.imshow(table.to_numpy(), cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("Predicted")
    axis.set_ylabel("Truth")
    for i in range(len(labels)):
        for j in range(len(labels)):
            axis.text(j, i, int(table.iat[i, j]), ha="center", va="center")
    if title:
        axis.set_title(title)
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

"""What drives a fit's predictions: permutation importance and partial dependence (with ICE).

Both work on the data frame, before the design: a column is permuted or set to a value where
the data holds it, and the fit's own design then rebuilds every term that uses it, so a factor
moves with all its dummy columns, and ``poly(x, 2)``, ``log(x)`` or ``x:z`` move with ``x``.
Rows with a missing value in a column the formula uses are left out first (with a warning),
so every permutation and every grid value scores the same rows.

The few lines of each are written here rather than borrowed from scikit-learn's
``sklearn.inspection``, so that nnfit needs no scikit-learn at run time; the tests check the
numbers against ``permutation_importance`` and ``partial_dependence`` on the same data.

>>> import nnfit as nf
>>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
>>> fit = nf.mlp("body_mass_g ~ species + sex + flipper_length_mm", training, hidden=[], epochs=5,
...              seed=1, verbose=False)
>>> ranked = importance(fit, testing, repeats=3, seed=1)
>>> list(ranked.table.columns)
['column', 'kind', 'importance', 'sd', 'lower', 'upper']
>>> sorted(ranked.table["column"])
['flipper_length_mm', 'sex', 'species']
>>> curve = partial_dependence(fit, testing, "species")
>>> list(curve.table.columns), list(curve.table["species"])
(['species', 'body_mass_g'], ['Adelie', 'Chinstrap', 'Gentoo'])
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .design import as_pandas, warn_left_out
from .errors import ArgumentError, ArgumentTypeError, close_names

# The metrics of fit.evaluate() that importance can use: (higher is better, name, unit);
# unit "response" means the response's own units.
METRICS = {
    "rmse": (False, "RMSE", "response"),
    "mae": (False, "MAE", "response"),
    "r2": (True, "R²", "proportion of variance"),
    "accuracy": (True, "accuracy", "proportion of rows"),
    "balanced_accuracy": (True, "balanced accuracy", "proportion"),
    "log_loss": (False, "log loss", "nats per row"),
    "brier": (False, "Brier score", "squared probability"),
    "auc": (True, "AUC", "probability"),
}
DEFAULT_METRIC = {"regression": "rmse", "binary": "log_loss", "multiclass": "log_loss"}
LEVEL = 0.95


# ---------------------------------------------------------------------- importance
def importance(fit, data, repeats: int = 5, seed=None, metric=None) -> Importance:
    """Permutation importance: how much worse ``fit`` scores on ``data`` when one column is shuffled.

    Each data column the formula uses is permuted in turn (a factor as one column, so its
    dummy columns move together; a column inside ``poly()``, ``log()`` or an interaction is
    permuted where the data holds it, before the design), ``repeats`` times, and the fit's
    ``evaluate()`` score on the permuted data is compared with the score on ``data`` as it is.
    Importance is the loss of quality: the increase of an error (RMSE, MAE, log loss) or the
    drop of a score (accuracy, R²). Positive: the predictions rely on the column; near 0: they
    do not (use held-out rows: on training rows a network's reliance on noise looks real).

    metric : a metric of ``fit.evaluate()``. Default "rmse" (regression, in the response's
        units) or "log_loss" (classification: a proper score that sees a probability move
        before the predicted class changes; "accuracy" moves in steps of 1/n).
    repeats : permutations per column; the table gives their mean, sd (n - 1) and a 95%
        interval over repeats: where 95% of single permutations' importance fall, mean ± t ·
        sd · √(1 + 1/repeats) (t with repeats - 1 degrees of freedom), the spread of single
        permutations, as R's iml reports quantiles of its repetitions. For a column the
        predictions ignore, that spread is about the size of the scored rows' own sampling
        noise, so the interval covers 0 for such a column on about 95% of fresh test sets
        (the mean's interval, ± t · sd / √repeats, shrinks with repeats to the permutation
        mean of these rows, and covers 0 far less often). The mean's standard error is
        sd / √repeats.
    seed : permutations are drawn as scikit-learn's ``permutation_importance`` draws them
        (numpy's RandomState), so ``seed=s`` gives its ``random_state=s`` numbers when it is
        given the same columns in the same order and the same score. None: fresh randomness.

    An ensemble (``n_models > 1``) is scored on its mean prediction, as ``evaluate`` does.

    >>> import nnfit as nf
    >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("species ~ bill_length_mm + island", training, hidden=[], epochs=5, seed=1, verbose=False)
    >>> result = importance(fit, testing, repeats=2, seed=0)
    >>> result.metric, list(result.values.columns)
    ('log_loss', ['repeat_1', 'repeat_2'])
    """
    import pandas as pd

    from .errors import check_positive_int

    repeats = check_positive_int("repeats", repeats)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32):
        raise ArgumentError(f"seed must be None or a whole number from 0 to 2**32 - 1, not {seed!r}.")
    design = fit.design
    frame = _complete_rows(fit, data, response=True)
    baseline_scores = fit.evaluate(frame)
    metric = _check_metric(fit, metric, baseline_scores)
    higher_is_better = METRICS[metric][0]
    baseline = float(baseline_scores[metric])
    columns = _columns(design)
    # As scikit-learn: one seed drawn from `seed`, the same stream for every column, each
    # repeat shuffling the index array again and applying it to the already-permuted column.
    draw = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    drops = np.empty((len(columns), repeats))
    for j, name in enumerate(columns):
        stream = np.random.RandomState(draw)
        permuted = frame.copy()
        order = np.arange(len(frame))
        for r in range(repeats):
            stream.shuffle(order)
            column = permuted[name].iloc[order]
            column.index = permuted.index
            permuted[name] = column
            value = float(fit.evaluate(permuted)[metric])
            drops[j, r] = baseline - value if higher_is_better else value - baseline
    mean = drops.mean(axis=1)
    sd = drops.std(axis=1, ddof=1) if repeats > 1 else np.full(len(columns), np.nan)
    # where a further permutation's importance falls (a prediction interval), not the mean's interval
    half = t_quantile(LEVEL, repeats - 1) * sd * math.sqrt(1 + 1 / repeats) if repeats > 1 else sd
    table = pd.DataFrame({
        "column": columns,
        "kind": [design.variables_[name]["kind"] for name in columns],
        "importance": mean, "sd": sd, "lower": mean - half, "upper": mean + half,
    })
    table = table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    values = pd.DataFrame(drops, index=pd.Index(columns, name="column"),
                          columns=[f"repeat_{r}" for r in range(1, repeats + 1)])
    return Importance(table, values, metric, baseline, len(frame), _response_unit(design), design.formula)


class Importance:
    """What ``importance`` measured: ``.table`` (one row per column, most important first),
    ``.values`` (every repeat's loss of quality), ``.metric``, ``.baseline`` (the score on the
    data as given), ``.n`` (rows scored); ``.plot()`` draws it."""

    def __init__(self, table, values, metric: str, baseline: float, n: int, response_unit: str, formula: str):
        self.table, self.values = table, values
        self.metric, self.baseline, self.n = metric, baseline, n
        self.repeats = values.shape[1]
        self.response_unit, self.formula = response_unit, formula

    def label(self) -> str:
        """The quantity and its unit, as the plot's axis names it."""
        higher_is_better, name, unit = METRICS[self.metric]
        change = "Drop in" if higher_is_better else "Increase in"
        return f"{change} {name} when the column is permuted ({self.response_unit if unit == 'response' else unit})"

    def plot(self, xlabel: str | None = None):
        """Horizontal bars (most important on top), whiskers over 95% of permutations; a matplotlib Figure.

        >>> import nnfit as nf
        >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
        >>> fit = nf.mlp("body_mass_g ~ sex + flipper_length_mm", training, hidden=[], epochs=5, seed=1, verbose=False)
        >>> figure = importance(fit, testing, repeats=2, seed=0).plot()
        >>> figure.axes[0].get_xlabel()
        'Increase in RMSE when the column is permuted (body_mass_g units)'
        """
        import matplotlib.pyplot as plt

        table = self.table.iloc[::-1]  # barh draws from the bottom up
        figure, axis = plt.subplots(figsize=(6.4, 1.2 + 0.4 * len(table)))
        positions = np.arange(len(table))
        bars = table["importance"].to_numpy()
        whiskers = np.vstack([bars - table["lower"].to_numpy(), table["upper"].to_numpy() - bars])
        axis.barh(positions, bars, color="#4c72b0", height=0.6,
                  xerr=None if np.isnan(whiskers).all() else whiskers, error_kw={"capsize": 3, "ecolor": "black"})
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set_yticks(positions, list(table["column"]))
        axis.set_xlabel(xlabel or self.label())
        axis.set_title(f"Permutation importance: {self.repeats} repeats on {self.n} rows\n"
                       "whiskers: where 95% of permutations fall", fontsize=10)
        figure.tight_layout()
        return figure

    def __repr__(self):
        head = (f"Permutation importance for {self.formula}\n"
                f"  {self.label().lower()}; {self.metric} {self.baseline:.4g} on {self.n} rows as given\n"
                f"  {self.repeats} repeats per column; lower, upper: where 95% of permutations fall\n")
        return head + _indent(self.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    def _repr_html_(self):
        return f"<p><b>{_escape(self.label())}</b> ({self.repeats} repeats, {self.n} rows)</p>" + self.table.to_html(
            index=False, float_format=lambda v: f"{v:.4g}")


# ---------------------------------------------------------------------- partial dependence
def partial_dependence(fit, data, column: str, grid=20, ice: bool = False) -> PartialDependence:
    """The fit's mean prediction over the rows of ``data`` as one column is set to each value of a grid.

    Every row keeps its other columns; ``column`` is set to the value in the data frame, before
    the design, so every term using it follows. A numeric column's grid is ``grid`` quantiles of
    its values in ``data`` (from the minimum to the maximum, duplicates dropped), or the values
    of a given list; a factor's (or True/False column's) grid is its levels, or a given list of
    them. Regression gives the mean prediction in the response's units; classification the
    mean probability of each level. ``ice=True`` also keeps each row's own curve (ICE) in
    ``.ice``. An ensemble's prediction is its mean over models, as ``predict`` gives.

    >>> import nnfit as nf
    >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("sex ~ body_mass_g + species", training, hidden=[], epochs=5, seed=1, verbose=False)
    >>> curve = partial_dependence(fit, testing, "body_mass_g", grid=5, ice=True)
    >>> list(curve.table.columns), len(curve.table), len(curve.ice) == 5 * len(testing)
    (['body_mass_g', 'female', 'male'], 5, True)
    """
    import pandas as pd

    design = fit.design
    frame = as_pandas(data)
    _check_column(design, frame, column)
    frame = _complete_rows(fit, frame, response=False)
    info = design.variables_[column]
    values = _grid(frame[column], info, column, grid)
    outputs = _outputs(fit)
    predictions = np.empty((len(values), len(frame), len(outputs)))
    original = frame[column]
    for g, value in enumerate(values):
        changed = frame.copy()
        if isinstance(original.dtype, pd.CategoricalDtype):
            changed[column] = pd.Categorical([value] * len(frame), dtype=original.dtype)
        else:
            changed[column] = value
        predicted = fit.predict(changed, type="prob" if fit.task != "regression" else "response")
        predictions[g] = np.asarray(predicted, dtype=np.float64).reshape(len(frame), len(outputs))
    grid_column = pd.Series(values, name=column, dtype=object if info["kind"] != "numeric" else None)
    table = pd.concat([grid_column, pd.DataFrame(predictions.mean(axis=1), columns=outputs)], axis=1)
    curves = None
    if ice:
        curves = pd.DataFrame(predictions.reshape(-1, len(outputs)), columns=outputs)
        curves.insert(0, column, np.repeat(grid_column.to_numpy(), len(frame)))
        curves.insert(0, "row", np.tile(frame.index.to_numpy(), len(values)))
    deciles = original.quantile(np.linspace(0.1, 0.9, 9)).tolist() if info["kind"] == "numeric" else None
    return PartialDependence(column, info["kind"], table, curves, len(frame), fit.task, design, deciles)


class PartialDependence:
    """What ``partial_dependence`` computed: ``.table`` (the grid and the mean prediction of each
    output), ``.ice`` (every row's curve, long: row, value, outputs; None unless ``ice=True``),
    ``.column``, ``.kind``, ``.n`` (rows averaged); ``.plot()`` draws it."""

    def __init__(self, column, kind, table, ice, n, task, design, deciles=None):
        self.column, self.kind, self.table, self.ice, self.n, self.task = column, kind, table, ice, n, task
        self.deciles = deciles  # of a numeric column in the rows averaged: the plot's ticks along the x axis
        self.response = design.lhs_
        self.response_unit = _response_unit(design)
        self.formula = design.formula

    @property
    def outputs(self) -> list:
        """The table's prediction columns: the response columns, or one probability per level."""
        return list(self.table.columns[1:])

    def plot(self, xlabel: str | None = None, ylabel: str | None = None):
        """The mean prediction against the column (ICE curves in grey when kept); a matplotlib Figure.

        A numeric column is drawn as a line, a factor as a point per level. A binary classifier
        shows the probability of its second level (as ``glm``), a multiclass one every level.

        >>> import nnfit as nf
        >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
        >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm", training, hidden=[], epochs=5, seed=1, verbose=False)
        >>> axis = partial_dependence(fit, testing, "flipper_length_mm", grid=5).plot().axes[0]
        >>> axis.get_xlabel(), axis.get_ylabel()
        ('flipper_length_mm', 'Predicted body_mass_g (body_mass_g units)')
        """
        import matplotlib.pyplot as plt
        import pandas as pd
        from matplotlib.collections import LineCollection

        shown = self.outputs[1:] if self.task == "binary" else self.outputs
        panels = shown if self.task == "regression" else [None]
        figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        numeric = self.kind == "numeric"
        x = _plottable(self.table[self.column]) if numeric else np.arange(len(self.table))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for axis, panel in zip(axes[0], panels):
            lines = [panel] if panel is not None else shown
            for k, output in enumerate(lines):
                color = "black" if len(lines) == 1 else colors[k % len(colors)]
                if self.ice is not None:
                    curves = self.ice[output].to_numpy().reshape(len(self.table), -1).T
                    segments = np.stack([np.broadcast_to(x, curves.shape), curves], axis=-1)
                    alpha = max(0.03, min(0.4, 20 / max(len(curves), 1)))
                    axis.add_collection(LineCollection(segments, colors="grey" if len(lines) == 1 else color,
                                                       linewidths=0.6, alpha=alpha))
                label = None if panel is not None else str(output)
                axis.plot(x, self.table[output].to_numpy(), color=color, linewidth=2,
                          marker=None if numeric else "o", linestyle="-" if numeric else "none", label=label)
            if not numeric:
                axis.set_xticks(x, [str(v) for v in self.table[self.column]])
            elif self.table[self.column].dtype.kind == "M":
                axis.xaxis_date()
            if numeric and self.deciles:  # where the data lie, as scikit-learn's display marks them
                axis.plot(_plottable(pd.Series(self.deciles)), np.zeros(len(self.deciles)), "|", color="black",
                          markersize=10, transform=axis.get_xaxis_transform(), label=None)
            axis.autoscale_view()
            axis.set_xlabel(xlabel or self.column)
            axis.set_ylabel(ylabel or self._ylabel(panel, shown))
            if panel is None and len(shown) > 1:
                axis.legend(title=self.response)
        note = " (thin lines: each row's curve)" if self.ice is not None else ""
        figure.suptitle(f"Partial dependence, {self.n} rows{note}", fontsize=10)
        figure.tight_layout()
        return figure

    def _ylabel(self, panel, shown) -> str:
        if panel is not None:
            unit = f"{panel} units" if len(self.outputs) > 1 else self.response_unit
            return f"Predicted {panel} ({unit})"
        if len(shown) == 1:
            return f"Predicted probability of {self.response} = {shown[0]}"
        return "Predicted probability of each level"

    def __repr__(self):
        what = "mean prediction" if self.task == "regression" else "mean probability of each level"
        head = (f"Partial dependence on {self.column} ({self.kind}) for {self.formula}\n"
                f"  {what} over {self.n} rows" + (", with ICE curves in .ice" if self.ice is not None else "") + "\n")
        return head + _indent(self.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    def _repr_html_(self):
        return (f"<p><b>Partial dependence on {_escape(self.column)}</b> ({self.n} rows)</p>"
                + self.table.to_html(index=False, float_format=lambda v: f"{v:.4g}"))


# ---------------------------------------------------------------------- shared pieces
def _columns(design) -> list:
    """The data columns the predictions read: those in the formula's terms and offsets, in the
    data's order. A removed variable (``- year``) is not one, nor is the response."""
    from .design.terms import names_in

    terms, used = design.terms_, set()
    for term in terms.terms:
        for index in term:
            used |= names_in(terms.variables[index])
    for node in terms.offsets:
        used |= names_in(node)
    return [name for name in design.predictors if name in used and name not in design.response]


def _complete_rows(fit, data, response: bool):
    """``data`` without the rows the design cannot use (a missing value), with one warning."""
    frame = as_pandas(data)
    matrices = fit.design.transform(frame, response=response)
    warn_left_out(matrices, len(frame))
    if not matrices.rows.any():
        from .errors import DataError

        raise DataError("No rows to use: every row has a missing value in a column the formula uses.")
    return frame if matrices.rows.all() else frame[matrices.rows]


def _check_metric(fit, metric, scores) -> str:
    usable = [name for name in scores if name in METRICS and isinstance(scores[name], numbers.Real)]
    if metric is None:
        return DEFAULT_METRIC[fit.task]
    if metric not in usable:
        raise ArgumentError(f"metric must be one of {', '.join(map(repr, usable))} for this model, not {metric!r}.")
    return metric


def _check_column(design, frame, column) -> None:
    if not isinstance(column, str):
        raise ArgumentTypeError(f"column must be a column name (a string), not {type(column).__name__}.")
    used = _columns(design)
    if column in design.response:
        raise ArgumentError(
            f"{column!r} is the response of {design.formula!r}; partial dependence is of a column the formula "
            f"uses as a predictor: {', '.join(used)}."
        )
    if column in used:
        return
    if column in frame.columns:
        raise ArgumentError(
            f"Column {column!r} is not used by the formula {design.formula!r}; choose one it uses: {', '.join(used)}."
        )
    raise ArgumentError(
        f"The data has no column {column!r}{close_names(column, used)}; the formula uses {', '.join(used)}."
    )


def _grid(values, info: dict, column: str, grid) -> list:
    """The values to set ``column`` to: quantiles or a given list (numeric), the levels (factor)."""
    from .errors import LevelError

    if info["kind"] != "numeric":
        levels = list(info["levels"]) if info["kind"] == "factor" else [False, True]
        if isinstance(grid, numbers.Integral) and not isinstance(grid, bool):
            return levels
        chosen = _as_list(grid, column)
        for value in chosen:
            if value not in levels:
                raise LevelError(
                    f"grid has {value!r}, which is not a level of {column!r} (levels: {', '.join(map(str, levels))})."
                )
        return chosen
    if isinstance(grid, numbers.Integral) and not isinstance(grid, bool):
        if grid < 2:
            raise ArgumentError(f"grid must be a whole number of at least 2 or a list of values, not {grid!r}.")
        return values.quantile(np.linspace(0.0, 1.0, grid)).drop_duplicates().tolist()
    chosen = _as_list(grid, column)
    if values.dtype.kind != "M":
        bad = [v for v in chosen if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)]
        if bad:
            raise ArgumentError(f"grid for the numeric column {column!r} must hold finite numbers, not {bad[0]!r}.")
    return chosen


def _as_list(grid, column) -> list:
    if isinstance(grid, (str, bytes)) or not hasattr(grid, "__iter__"):
        raise ArgumentTypeError(
            f"grid must be a whole number of values or a list of values of {column!r}, not {type(grid).__name__}."
        )
    chosen = [v.item() if hasattr(v, "item") else v for v in grid]
    if not chosen:
        raise ArgumentError(f"grid for {column!r} is empty; give at least one value.")
    return chosen


def _outputs(fit) -> list:
    if fit.task == "regression":
        return list(fit.design.response_columns)
    return [str(level) for level in fit.design.levels]


def _response_unit(design) -> str:
    if design.response_kind != "numeric":
        return f"{design.lhs_} units"
    return f"{design.response_columns[0]} units" if len(design.response_columns) == 1 else \
        f"units of {', '.join(design.response_columns)}"


def t_quantile(level: float, df: int) -> float:
    """The t quantile with ``df`` degrees of freedom for a two-sided ``level`` interval
    (scipy's ``t.ppf((1 + level) / 2, df)``), from the exact finite series of P(|T| < t)
    for whole df (Abramowitz and Stegun 26.7.3-4), inverted by bisection.

    >>> round(t_quantile(0.95, 4), 4)
    2.7764
    """
    low, high = 0.0, 1.0
    while _t_central(high, df) < level:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if _t_central(middle, df) < level:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    return 0.5 * (low + high)


def _t_central(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with ``df`` (a whole number >= 1) degrees of freedom."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    term = total = 1.0
    if df % 2 == 0:
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * c2
            total += term
        return math.sin(theta) * total
    if df == 1:
        return 2.0 * theta / math.pi
    for k in range(1, (df - 1) // 2):
        term *= (2 * k) / (2 * k + 1) * c2
        total += term
    return 2.0 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


def _plottable(values) -> np.ndarray:
    """Numbers for matplotlib's lines: dates become matplotlib's day numbers."""
    if values.dtype.kind == "M":
        from matplotlib import dates

        return np.asarray(dates.date2num(values.to_numpy()), dtype=np.float64)
    return values.to_numpy(dtype=np.float64)


def _indent(text: str) -> str:
    return "  " + text.replace("\n", "\n  ")


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


"""R's ``summary`` habit for ``nf.mlp`` fits, and the linear model's coefficients in the data's units.

A network with ``hidden=[]`` is the linear model (numeric response), the logistic model (a
two-level factor) or the multinomial logit model (more levels), trained on standardized
predictors and a standardized numeric response. ``coefficients_in_data_units`` maps its
weights back, so that they read as ``lm``, ``glm(family = binomial)`` and ``nnet::multinom``
report them: one coefficient per column of R's ``model.matrix``, ``(Intercept)`` first.
``summary`` gathers what R's ``summary()`` shows: the call, the rows used and left out, the
network, the training time, metrics measured in eval mode, and for ``hidden=[]`` the
coefficient table with its classical standard errors.

>>> import nnfit as nf
>>> from nnfit.summaries import coefficients_in_data_units, summary
>>> penguins = nf.datasets.load("penguins").dropna()
>>> fit = nf.mlp("body_mass_g ~ flipper_length_mm", penguins, hidden=[], optimizer="sgd", lr=0.3,
...              batch_size=len(penguins), epochs=300, seed=1, verbose=False)
>>> coefficients_in_data_units(fit).round(2)   # lm(body_mass_g ~ flipper_length_mm): -5872.09, 50.15
(Intercept)         -5872.09
flipper_length_mm      50.15
Name: body_mass_g, dtype: float64
>>> print(summary(fit))                         # doctest: +ELLIPSIS
nnfit summary: nf.mlp("body_mass_g ~ flipper_length_mm", data, hidden=[], optimizer="sgd", ...
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ArgumentError

CONVERGED = 0.01  # estimates this many standard errors from the optimum, or closer, are converged
_STATISTIC = {"regression": "t value", "binary": "z value", "multiclass": "z value"}


# ---------------------------------------------------------------------------- coefficients
def coefficients_in_data_units(fit):
    """The coefficients of a ``hidden=[]`` fit in the data's units, named as R's model.matrix names them.

    The network computes ``b + W x_std`` with ``x_std = (x - center) / scale`` (the design's
    ``center_`` and ``scale_``), and for a numeric response in units of its standard
    deviation (``response_center_``, ``response_scale_``). Undoing both gives, for each output,
    an intercept and one slope per column of the model matrix, in the response's units per unit
    of the predictor: ``lm``'s coefficients once the network has converged. A two-level factor
    response has one output, the log-odds of its second level, as ``glm(family = binomial)``.
    With more levels the softmax's logits are identifiable only up to a common shift, so they
    are given relative to the first level, as ``nnet::multinom`` gives them: one column per other
    level. The network's bias is named ``(Intercept)`` even when the formula removes R's
    intercept (``- 1``), since the network always has one.

    Returns a Series indexed by term (one output), or a DataFrame with one column per response
    (``cbind``) or per level after the first. ``fit.coef(scale="data")`` calls this.

    >>> # coefficients_in_data_units(nf.mlp("default ~ balance", default, hidden=[], ...))
    >>> # (Intercept) -10.65, balance 0.0055: the log-odds of 'Yes', as glm and ISLR Table 4.1
    """
    import pandas as pd

    beta = _beta(fit)  # (terms, outputs) in the data's units
    names = _term_names(fit)
    columns = _output_names(fit)
    if len(columns) == 1:
        return pd.Series(beta[:, 0], index=names, name=columns[0])
    return pd.DataFrame(beta, index=names, columns=columns)


def _check_linear(fit) -> None:
    sizes = list(fit.model.sizes)
    if sizes:
        raise ArgumentError(
            f"Coefficients in the data's units exist only for hidden=[] (a linear or logistic model); this network "
            f"has hidden layers {sizes}, whose weights have no units of the data. fit.coef() gives its weights "
            "in the course's notation."
        )
    if getattr(fit.model, "n_models", 1) > 1:
        raise ArgumentError(
            f"Coefficients in the data's units are those of one network; this fit is an ensemble of "
            f"{fit.model.n_models}. Fit with n_models=1 for the linear model's coefficients."
        )
    if fit.design.embedded_:
        raise ArgumentError(
            f"Coefficients in the data's units need every factor as dummy columns; this fit embeds "
            f"{', '.join(map(repr, fit.design.embedded_))}. Fit with embed=None for the linear model's coefficients."
        )


def _standardized(fit):
    """(W, b): the output layer's weights (outputs, p) and biases (outputs,), in float64."""
    _check_linear(fit)
    W = fit.model.output.weight.detach().double().cpu().numpy()
    b = fit.model.output.bias.detach().double().cpu().numpy()
    return W, b


def _to_data_units(fit) -> np.ndarray:
    """T (outputs, 1 + p, 1 + p): the linear map from the standardized (b, w) of each output to
    its (intercept, slopes) in the data's units. A numeric response also adds its center to the
    intercept (``_shift``)."""
    design = fit.design
    c, s = np.asarray(design.center_, dtype=np.float64), np.asarray(design.scale_, dtype=np.float64)
    p = len(c)
    T = np.zeros((1 + p, 1 + p))
    T[0, 0] = 1.0
    T[0, 1:] = -c / s
    T[1:, 1:] = np.diag(1.0 / s)
    outputs = fit.model.output_size
    sy = np.asarray(design.response_scale_, dtype=np.float64) if fit.task == "regression" else np.ones(outputs)
    return sy[:, None, None] * T[None]


def _shift(fit) -> np.ndarray:
    if fit.task == "regression":
        return np.asarray(fit.design.response_center_, dtype=np.float64)
    return np.zeros(fit.model.output_size)


def _reference_contrast(fit, theta: np.ndarray) -> np.ndarray:
    """(terms, outputs) -> relative to the first level for a multiclass fit (nnet::multinom)."""
    return theta[:, 1:] - theta[:, :1] if fit.task == "multiclass" else theta


def _beta(fit) -> np.ndarray:
    W, b = _standardized(fit)
    theta = np.column_stack([b, W])  # (outputs, 1 + p), standardized
    T = _to_data_units(fit)
    beta = np.einsum("tij,tj->it", T, theta)
    beta[0] += _shift(fit)
    return _reference_contrast(fit, beta)


def _term_names(fit) -> list:
    return ["(Intercept)"] + list(fit.design.columns)


def _output_names(fit) -> list:
    if fit.task == "regression":
        return list(fit.design.response_columns)
    levels = [str(level) for level in fit.design.levels]
    return [levels[1]] if fit.task == "binary" else levels[1:]


# ---------------------------------------------------------------------------- standard errors
def _standard_errors(fit, X_std: np.ndarray, y: np.ndarray, weight=None):
    """Classical standard errors of the data-unit coefficients, (terms, outputs), and the largest
    distance of the estimates from the optimum in standard errors (one Newton step).

    Case weights, when training had them, enter as R's ``weights=`` do: sigma^2 (X'WX)^-1 with
    sigma^2 = sum(w r^2) / (n - p) for regression, and w times each row's term of the Hessian.

    The Hessian of the negative log-likelihood is formed in the standardized coordinates,
    where it is well conditioned, and carried to the data's units by the same linear map as the
    coefficients: cov_data = T cov_std T'. That equals sigma^2 (X'X)^-1 (regression) and
    (X'WX)^-1 (logistic) computed with X in the data's units.
    """
    W, b = _standardized(fit)
    n = len(X_std)
    weight = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    Z = np.column_stack([np.ones(n), X_std])
    Zw = Z * weight[:, None]
    q = Z.shape[1]
    theta = np.column_stack([b, W])  # (outputs, q)
    eta = Z @ theta.T  # (n, outputs)
    T = _to_data_units(fit)
    if fit.task == "regression":
        residuals = y - eta
        df = n - q
        sigma2 = (weight[:, None] * residuals**2).sum(axis=0) / df if df > 0 else np.full(len(theta), np.nan)
        H = Zw.T @ Z
        inverse = _inverse(H)
        covs = [s2 * inverse for s2 in sigma2]
        steps = [inverse @ (Zw.T @ residuals[:, t]) for t in range(len(theta))]
        se = np.column_stack([np.sqrt(np.diag(T[t] @ cov @ T[t].T)) for t, cov in enumerate(covs)])
        moved = np.column_stack([T[t] @ step for t, step in enumerate(steps)])
        extra = {"sigma": np.sqrt(sigma2) * np.asarray(fit.design.response_scale_, dtype=np.float64), "df": df,
                 "n": n, "q": q}
    elif fit.task == "binary":
        prob = 1.0 / (1.0 + np.exp(-eta[:, 0]))
        H = Zw.T @ (Z * (prob * (1 - prob))[:, None])
        inverse = _inverse(H)
        se = np.sqrt(np.diag(T[0] @ inverse @ T[0].T))[:, None]
        moved = (T[0] @ (inverse @ (Zw.T @ (y - prob))))[:, None]
        extra = {"n": n, "q": q}
    else:
        # Parameters relative to the first level: theta_k - theta_1, k = 2..K. The Hessian of
        # the negative log-likelihood has blocks sum_i z_i z_i' p_ik (delta_kl - p_il).
        K = theta.shape[0]
        shifted = eta - eta.max(axis=1, keepdims=True)
        prob = np.exp(shifted)
        prob /= prob.sum(axis=1, keepdims=True)
        H = np.zeros(((K - 1) * q, (K - 1) * q))
        for k in range(1, K):
            for m in range(1, K):
                w = prob[:, k] * ((k == m) - prob[:, m])
                H[(k - 1) * q:k * q, (m - 1) * q:m * q] = Zw.T @ (Z * w[:, None])
        onehot = np.eye(K)[y]
        gradient = np.concatenate([Zw.T @ (onehot[:, k] - prob[:, k]) for k in range(1, K)])
        inverse = _inverse(H)
        step = inverse @ gradient
        # every level shares the map T (no response scaling for factors)
        se = np.column_stack([np.sqrt(np.diag(T[0] @ inverse[(k - 1) * q:k * q, (k - 1) * q:k * q] @ T[0].T))
                              for k in range(1, K)])
        moved = np.column_stack([T[0] @ step[(k - 1) * q:k * q] for k in range(1, K)])
        extra = {"n": n, "q": q}
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = float(np.nanmax(np.abs(moved) / se)) if np.isfinite(se).any() else math.nan
    return se, distance, extra


def _inverse(H: np.ndarray) -> np.ndarray:
    """H^-1, or NaN where H is singular (aliased columns: R reports NA for them)."""
    try:
        if np.linalg.cond(H) > 1e12:
            raise np.linalg.LinAlgError
        return np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return np.full_like(H, np.nan)


# ---------------------------------------------------------------------------- training rows
def _rows(fit, data):
    """{"training": (X_std, y, weight), "validation": ...}: y standardized (regression) or class
    codes; weight None, or the case weights per row.

    Without ``data``: the rows the fit trained and validated on, as it holds them
    (``fit.fitted``: a single network fitted in this session). With ``data``: all its
    complete rows, as training rows.
    """
    if data is not None:
        from .design import as_pandas

        matrices = fit.design.transform(as_pandas(data), response=True)
        y = matrices.y if fit.task == "regression" else np.asarray(matrices.y).reshape(-1)
        return {"training": (np.asarray(matrices.inputs(), dtype=np.float64), np.asarray(y), None)}, \
            int(matrices.n_left_out)
    fitted = getattr(fit, "fitted", None)
    ctx = getattr(fitted, "ctx", None)
    out = {}
    for name, held in (("training", getattr(ctx, "train_data", None)), ("validation", getattr(ctx, "valid_data", None))):
        X, y = getattr(held, "X", None), getattr(held, "y", None)
        if X is None or y is None:
            continue
        X = X.detach().cpu().double().numpy()
        y = y.detach().cpu().numpy()
        weight = getattr(held, "weight", None)  # case weights, when training had them
        out[name] = (X, y.astype(np.float64) if fit.task == "regression" else y.reshape(-1).astype(np.int64),
                     None if weight is None else weight.detach().cpu().double().numpy())
    return out, None


def _metrics(fit, X_std: np.ndarray, y: np.ndarray) -> dict:
    """The fit's metrics on standardized rows, in eval mode (no dropout), in the response's units."""
    from .scores import classification_scores, score

    # The fit's own prediction path (eval mode, fixed-size blocks); an ensemble is scored on its mean.
    values = fit._responses(fit._outputs(X_std)).mean(axis=0)
    if fit.task == "regression":
        return score(values, fit.design.unscale_response(y), fit.task)
    return dict(classification_scores(values, y, fit.design.levels, fit.threshold))


# ---------------------------------------------------------------------------- the summary
def summary(fit, data=None) -> Summary:
    """What R's ``summary()`` shows, for an ``nf.mlp`` fit: a ``Summary`` that prints.

    The call (formula and main settings); the rows used for training and validation and how
    many were left out for missing values; the network in the course's notation and its
    parameter count; the training time; metrics on the training rows and on the validation rows
    (if any), computed afresh in eval mode, without dropout (the learning curves measure
    training rows with dropout on). For ``hidden=[]``, the coefficient table in the data's
    units (``coefficients_in_data_units``) with classical standard errors: sigma^2 (X'X)^-1
    for regression, (X'WX)^-1 for logistic and the multinomial Hessian for more levels, at the
    fitted coefficients on the training rows, as ``summary(lm)`` and ``summary(glm)`` give them
    (for several levels the Hessian's exact inverse, as ``solve(multinom(..., Hess = TRUE)$Hessian)``;
    ``summary(multinom)``'s generalized inverse drops the weakest direction of an ill-conditioned
    Hessian). Case weights, when training had them, enter as R's ``weights=``. The Hessian is
    formed in the standardized coordinates and carried to the data's units by the coefficients'
    own linear map (the same numbers, better conditioned). These are the linear model's standard errors: valid for
    ``hidden=[]`` only, once the network has converged (the summary says how far, in standard
    errors, the estimates lie from the optimum), and without weight decay.

    ``data``: rows to take as the training rows, for a fit that no longer holds them (one
    loaded from a file, or an ensemble); all its complete rows are used.
    ``fit.summary()`` and ``nf.summary(fit)`` call this.

    >>> # print(nf.summary(fit)); fit.summary().coefficients
    """
    import pandas as pd

    settings = fit.settings
    rows, data_left_out = _rows(fit, data)
    metrics = {name: _metrics(fit, X, y) for name, (X, y, _) in rows.items()}
    measured = bool(metrics)
    if not measured:  # rows not held (a loaded fit, an ensemble): what training recorded
        metrics = {split: {name: value for name, value in values.items() if name != "loss"}
                   for split, values in fit.last_metrics().items()}
    coefficients, fit_stats = None, {}
    linear = not list(fit.model.sizes) and getattr(fit.model, "n_models", 1) == 1 and not fit.design.embedded_
    if linear:
        beta = _beta(fit)
        names, outputs = _term_names(fit), _output_names(fit)
        if "training" in rows:
            se, distance, fit_stats = _standard_errors(fit, *rows["training"])
            fit_stats["distance"] = distance
        else:
            se = np.full_like(beta, np.nan)
        statistic = _STATISTIC[fit.task]
        frames = {}
        for t, output in enumerate(outputs):
            with np.errstate(invalid="ignore", divide="ignore"):
                frames[output] = pd.DataFrame({"Estimate": beta[:, t], "Std. Error": se[:, t],
                                               statistic: beta[:, t] / se[:, t]}, index=names)
        coefficients = frames[outputs[0]] if len(outputs) == 1 else pd.concat(frames, names=["output", "term"])
    n_train = settings.get("n_train") if data is None else len(rows["training"][0])
    return Summary(
        call=_call(fit), task=fit.task, n_train=n_train,
        n_valid=settings.get("n_valid", 0) if data is None else 0,
        n_left_out=settings.get("n_left_out", 0) if data is None else data_left_out,
        notation=fit.notation(), n_parameters=sum(p.numel() for p in fit.model.parameters()),
        seconds=settings.get("seconds"), epochs=fit.epochs_run,
        metrics=metrics, coefficients=coefficients, fit_stats=fit_stats,
        response=_response_text(fit), outputs=_output_names(fit) if linear else [],
        weight_decay=settings.get("weight_decay") or 0.0, measured=measured,
    )


def _response_text(fit) -> str:
    if fit.task == "regression":
        return "for " + ", ".join(fit.design.response_columns)
    levels = [str(level) for level in fit.design.levels]
    if fit.task == "binary":
        return f"for the log-odds of {levels[1]!r} against {levels[0]!r}"
    return f"for the log-odds of each level against {levels[0]!r}"


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value) if isinstance(value, str) else str(value)


def _call(fit) -> str:
    """nf.mlp(...) as it could have been typed: the formula and the settings that shape the fit."""
    s = fit.settings
    model = fit.model
    sizes = list(model.sizes)
    parts = [f'"{s["formula"]}"', "data", f"hidden={sizes}"]
    if sizes:
        activations = sorted(set(model.activations))
        parts.append(f'activation="{activations[0]}"' if len(activations) == 1 else f"activation={model.activations}")
        dropouts = model.dropouts if getattr(model, "n_models", 1) == 1 else list(model.dropouts[0])
        if any(dropouts):
            shown = sorted({round(float(d), 6) for d in dropouts})
            parts.append(f"dropout={shown[0]:g}" if len(shown) == 1 else f"dropout=[{', '.join(f'{d:g}' for d in dropouts)}]")
    parts.append(f'optimizer="{s.get("optimizer")}"')
    if s.get("lr") is not None:
        parts.append(f"lr={_number(s['lr'])}")
    if s.get("weight_decay"):
        parts.append(f"weight_decay={_number(s['weight_decay'])}")
    parts += [f"epochs={s.get('epochs')}", f"batch_size={s.get('batch_size')}"]
    valid = s.get("valid")
    if valid is not None:  # a fraction, or rows given as a data frame
        parts.append(f"valid={_number(valid)}" if isinstance(valid, (int, float)) else "valid=validation")
    if getattr(model, "n_models", 1) > 1:
        parts.append(f"n_models={model.n_models}")
    if s.get("seed") is not None:
        parts.append(f"seed={s['seed']}")
    return "nf.mlp(" + ", ".join(parts) + ")"


class Summary:
    """An ``nf.mlp`` fit summarized as R's ``summary()`` does; print it, or read its attributes.

    ``call`` (str), ``n_train``, ``n_valid``, ``n_left_out`` (rows), ``notation`` (the network),
    ``n_parameters``, ``seconds`` (training time), ``epochs``, ``metrics`` ({"training": {...},
    "validation": {...}}, in eval mode; when the fit holds no rows and no ``data`` is given, the
    last epoch's {"train": ..., "valid": ...} as training recorded them, and ``measured`` is
    False), ``distance`` (how many standard errors the estimates lie from the optimum, one
    Newton step), and for ``hidden=[]`` ``coefficients``: a DataFrame
    with R's columns Estimate, Std. Error and t value (regression) or z value (classification),
    indexed by term, or by (output, term) for several responses or levels; else None.
    ``sigma`` and ``df_residual`` for a regression's coefficient table.

    >>> import nnfit as nf
    >>> cars = nf.datasets.load("Auto")
    >>> fit = nf.mlp("mpg ~ horsepower", data=cars, hidden=[], epochs=30, seed=1, verbose=False)
    >>> s = fit.summary()
    >>> s.n_train, s.n_parameters, s.coefficients.index.tolist(), list(s.coefficients.columns)
    (392, 2, ['(Intercept)', 'horsepower'], ['Estimate', 'Std. Error', 't value'])
    """

    def __init__(self, call, task, n_train, n_valid, n_left_out, notation, n_parameters, seconds, epochs, metrics,
                 coefficients, fit_stats, response, outputs, weight_decay=0.0, measured=True):
        self.call = call
        self.task = task
        self.n_train = n_train
        self.n_valid = n_valid or 0
        self.n_left_out = n_left_out or 0
        self.notation = notation
        self.n_parameters = n_parameters
        self.seconds = seconds
        self.epochs = epochs
        self.metrics = metrics
        self.coefficients = coefficients
        self.response = response
        self.outputs = outputs
        self.distance = fit_stats.get("distance", math.nan)
        sigma = fit_stats.get("sigma")
        self.sigma = None if sigma is None else (float(sigma[0]) if len(sigma) == 1 else [float(v) for v in sigma])
        self.df_residual = fit_stats.get("df")
        self.weight_decay = weight_decay
        self.measured = measured

    # ------------------------------------------------------------ text
    def _data_line(self) -> str:
        total = self.n_train + self.n_valid + self.n_left_out
        used = f"{self.n_train} for training"
        if self.n_valid:
            used += f", {self.n_valid} for validation"
        left = f"{self.n_left_out} left out for missing values" if self.n_left_out else "none left out for missing values"
        return f"Data: {total} rows: {used}, {left}"

    def _training_line(self) -> str:
        seconds = "" if self.seconds is None else f" in {self.seconds:.2f} s"
        return f"Training: {self.epochs} epochs{seconds}"

    def _metric_lines(self) -> list:
        names = list(dict.fromkeys(name for values in self.metrics.values() for name in values))
        width = max(len(split) for split in self.metrics)
        widths = [max(10, len(name)) for name in names]  # a column as wide as its name
        header = " " * width + "".join(f"  {name:>{w}}" for name, w in zip(names, widths))
        lines = [header]
        for split, values in self.metrics.items():
            lines.append(f"{split:<{width}}" + "".join(f"  {_format(values.get(name, math.nan)):>{w}}"
                                                       for name, w in zip(names, widths)))
        return lines

    def _coefficient_lines(self) -> list:
        frame = self.coefficients
        blocks = [(None, frame)] if len(self.outputs) == 1 else [(o, frame.loc[o]) for o in self.outputs]
        lines = []
        for output, table in blocks:
            if output is not None:
                lines.append(f"{output}:")
            width = max(len(str(term)) for term in table.index)
            lines.append(" " * width + "".join(f"  {column:>11}" for column in table.columns))
            for term, row in table.iterrows():
                lines.append(f"{term!s:<{width}}" + "".join(f"  {_format(v):>11}" for v in row))
        return lines

    def __repr__(self):
        lines = [f"nnfit summary: {self.call}", "", self._data_line(),
                 f"Network ({self.n_parameters:,} parameters):", "  " + self.notation.replace("\n", "\n  "),
                 self._training_line(), "", self._metrics_title() + ":"]
        lines += ["  " + line for line in self._metric_lines()]
        if self.coefficients is not None:
            lines += ["", f"Coefficients in the data's units, {self.response}:"]
            lines += ["  " + line for line in self._coefficient_lines()]
            if self.sigma is not None:
                sigmas = [self.sigma] if not isinstance(self.sigma, list) else self.sigma
                lines.append(f"Residual standard error: {', '.join(_format(s) for s in sigmas)} on "
                             f"{self.df_residual} degrees of freedom")
            lines += self._convergence_lines()
        return "\n".join(lines)

    def _metrics_title(self) -> str:
        if self.measured:
            return "Metrics (eval mode, no dropout)"
        return ("Metrics of the last epoch, as training recorded them (training rows with dropout on; "
                "summary(fit, data=training) measures them in eval mode)")

    def _convergence_lines(self) -> list:
        if math.isnan(self.distance):
            return ["Standard errors need the training rows, which this fit does not hold: summary(fit, data=training)."]
        lines = []
        if self.weight_decay:
            lines.append(f"weight_decay={self.weight_decay:g} shrinks the estimates; the standard errors are the "
                         "unpenalized model's, at these estimates.")
        optimum = {"regression": "lm's", "binary": "glm's", "multiclass": "multinom's"}[self.task]
        if self.distance <= CONVERGED:
            lines.append(f"Converged: the estimates lie within {self.distance:.2g} standard errors of the optimum "
                         f"({optimum}, one Newton step away).")
        else:
            lines.append(f"Not converged: the estimates lie up to {self.distance:.2g} standard errors from the optimum "
                         f"({optimum}, one Newton step away); train longer (more epochs, full-batch gradient descent) "
                         "before reading this as the linear model's table.")
        lines.append("Standard errors are the classical linear model's (valid for hidden=[] only).")
        return lines

    def _repr_html_(self):
        """Jupyter's view: the facts, the metrics and the coefficient table as HTML tables."""
        from . import display

        facts = [("call", self.call), ("training rows", self.n_train), ("validation rows", self.n_valid),
                 ("left out (missing values)", self.n_left_out), ("network", self.notation),
                 ("parameters", f"{self.n_parameters:,}"), ("epochs", self.epochs)]
        if self.seconds is not None:
            facts.append(("training time", f"{float(self.seconds):.2f} s"))
        parts = [display.table(facts, title="nnfit summary")]
        names = list(dict.fromkeys(name for values in self.metrics.values() for name in values))
        rows = [[split] + [values.get(name, math.nan) for name in names] for split, values in self.metrics.items()]
        parts.append(display.table(rows, title=self._metrics_title(), header=["rows"] + names))
        if self.coefficients is not None:
            frame = self.coefficients
            index = [" / ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in frame.index]
            rows = [[name] + [float(v) for v in values] for name, values in zip(index, frame.to_numpy())]
            parts.append(display.table(rows, title=f"Coefficients in the data's units, {self.response}",
                                       header=["term"] + list(frame.columns)))
        return "".join(parts)


def _format(value) -> str:
    value = float(value)
    return "NaN" if math.isnan(value) else f"{value:.4g}"

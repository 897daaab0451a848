"""Prediction intervals and prediction sets with a stated coverage: conformal prediction.

A fitted network says nothing by itself about how far a new response may fall from its
prediction. Conformal prediction measures that on rows the network did not train on and turns
it into a guarantee that needs no model assumptions, only that the new row and the
calibration rows are exchangeable (drawn the same way, in no meaningful order):

- **split conformal** (``fit.calibrate(held_out)``, or automatically from ``valid=``): the
  scores are the held-out rows' absolute residuals |y - fit(x)| (for a classifier,
  1 - p(true class)); an interval at ``level`` is fit(x) -+ the ceil((n + 1) * level)-th
  smallest of the n scores, a set holds the levels whose score would be no larger.
- **CV+** (``fit.calibrate(training, method="cv+", folds=10)``, Barber, Candes, Ramdas and
  Tibshirani 2021): the fit's recipe is refitted on the folds, every fold at once, and each
  training row's residual is taken from the fold model that did not see it; no rows are given
  up to calibration. Its intervals cover with probability at least 2 * level - 1 in theory,
  and about ``level`` in practice.

For split conformal, P(y in interval) >= level over new rows and calibration rows together
(marginal coverage), and < level + 1 / (n + 1) when the scores have no ties.
``docs/intervals.md`` has the measured coverage.

>>> import nnfit as nf
>>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
>>> fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=training, hidden=5, epochs=20,
...              valid=0.25, seed=1, verbose=False)
>>> fit.calibration_
<nnfit Calibration> split conformal on 66 held-out rows
>>> fit.predict(testing, type="interval", level=0.9).columns.tolist()
['fit', 'lower', 'upper']
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .errors import ArgumentError, DataError, warn

METHODS = ("split", "cv+")
PREFIX = "calibration."  # the names of CV+ fold networks' tensors in a model file
_BLOCK = 2**22  # test rows x calibration rows compared at once by CV+


class Calibration:
    """What conformal calibration learned; a fit holds one as ``fit.calibration_``.

    ``method`` is "split" or "cv+". ``scores`` holds one nonconformity score per calibration
    row: the absolute residual in the response's units (regression) or 1 - p(true class)
    (classification). For CV+, ``folds`` holds each row's fold (0-based), ``models`` the fold
    networks (``members`` per fold, an ensemble's recipe), stacked and mapped to the fit's own
    scaling of inputs and response, so they read the rows the fit reads.

    >>> import numpy as np
    >>> from nnfit.intervals import Calibration
    >>> Calibration("split", np.array([0.3, 0.1, 0.2]))
    <nnfit Calibration> split conformal on 3 held-out rows
    """

    def __init__(self, method: str, scores, folds=None, models=None, members: int = 1):
        self.method = method
        self.scores = np.asarray(scores, dtype=np.float64)
        self.folds = None if folds is None else np.asarray(folds, dtype=np.int64)
        self.models = models
        self.members = members

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def n_folds(self) -> int:
        return 0 if self.models is None else self.models.n_models // self.members

    def __repr__(self):
        return f"<nnfit Calibration> {self.describe()}"

    def describe(self) -> str:
        """What calibrates the intervals, in words (a fit's print shows it).

        >>> import numpy as np
        >>> from nnfit.intervals import Calibration
        >>> Calibration("split", np.zeros(52)).describe()
        'split conformal on 52 held-out rows'
        """
        if self.method == "split":
            return f"split conformal on {self.n} held-out rows"
        return f"CV+ on {self.n} rows in {self.n_folds} folds"

    def to_saved(self):
        """(plain JSON data, {name: tensor}) for a model file; ``from_saved`` reads them back."""
        data = {"method": self.method, "scores": self.scores.tolist()}
        tensors = {}
        if self.method == "cv+":
            data.update(fold=self.folds.tolist(), folds=self.n_folds, members=self.members,
                        architecture=self.models.architecture())
            tensors = {PREFIX + name: tensor for name, tensor in self.models.state_dict().items()}
        return data, tensors


def quantile_rank(level: float, n: int) -> int:
    """The rank k of the split-conformal quantile: the k-th smallest of n scores, k = ceil((n + 1) * level).

    k > n means no score is large enough: the interval is infinite (and the set every level).
    The product is rounded to 9 digits first, so 0.9 * 10 is 9, not 9.000000000000002.

    >>> from nnfit.intervals import quantile_rank
    >>> quantile_rank(0.95, 99), quantile_rank(0.9, 9), quantile_rank(0.95, 10)
    (95, 9, 11)
    """
    return math.ceil(round(level * (n + 1), 9))


def conformal_quantile(scores, level: float) -> float:
    """The ceil((n + 1) * level)-th smallest of the n ``scores``; infinite when that rank exceeds n.

    >>> from nnfit.intervals import conformal_quantile
    >>> conformal_quantile([4.0, 1.0, 3.0, 2.0], 0.6)     # ceil(5 * 0.6) = 3: the third smallest
    3.0
    >>> conformal_quantile([4.0, 1.0, 3.0, 2.0], 0.9)     # ceil(5 * 0.9) = 5 > 4
    inf
    """
    scores = np.asarray(scores, dtype=np.float64)
    k = quantile_rank(level, len(scores))
    if k > len(scores):
        return math.inf
    return float(np.partition(scores, k - 1)[k - 1])


def check_level(level) -> float:
    """A coverage level: a number strictly between 0 and 1.

    >>> from nnfit.intervals import check_level
    >>> check_level(0.9)
    0.9
    >>> check_level(95)
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: level must be a probability strictly between 0 and 1 (such as 0.95), not 95.
    """
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ArgumentError(f"level must be a probability strictly between 0 and 1 (such as 0.95), not {level!r}.")
    return float(level)


# ------------------------------------------------------------------ calibrating
def calibrate(fit, data, method: str = "split", folds: int = 10, refit=None):
    """Calibrate ``fit`` on ``data`` (``MLPFit.calibrate`` calls this); return the fit.

    "split": ``data`` are held-out rows with the response, which the fit never trained on.
    "cv+": ``data`` are the training rows; the fit's recipe is refitted on ``folds`` folds by
    ``refit(X, y, **options)``, the recipe's K-model fit on those tensors (``MLPFit.calibrate``
    passes nf.mlp's, so this module needs no import of the one-liner that calls it).

    >>> import nnfit as nf
    >>> from nnfit import intervals
    >>> training, held_out = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=training, hidden=3, epochs=5, seed=1,
    ...              verbose=False)
    >>> intervals.calibrate(fit, held_out).calibration_
    <nnfit Calibration> split conformal on 67 held-out rows
    """
    from .design import as_pandas, warn_left_out

    if method not in METHODS:
        raise ArgumentError(f"method must be 'split' (held-out rows) or 'cv+' (the training rows, refitted on "
                            f"folds), not {method!r}.")
    frame = as_pandas(data)
    missing = [name for name in fit.design.response if name not in frame.columns]
    if missing:
        raise DataError(f"calibrate needs the response: the data has no column {missing[0]!r}.")
    _check_task(fit, method)
    matrices = fit.design.transform(frame, response=True)
    warn_left_out(matrices, len(frame))
    return calibrate_matrices(fit, matrices, method, folds, refit)


def calibrate_matrices(fit, matrices, method: str = "split", folds: int = 10, refit=None):
    """``calibrate`` on rows already encoded by the fit's design (a ``Matrices``); return the fit.

    >>> import nnfit as nf
    >>> from nnfit import intervals
    >>> training, held_out = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=training, hidden=3, epochs=5, seed=1,
    ...              verbose=False)
    >>> intervals.calibrate_matrices(fit, fit.design.transform(held_out)).calibration_
    <nnfit Calibration> split conformal on 67 held-out rows
    """
    _check_task(fit, method)
    if method == "cv+":
        fit.calibration_ = _cv_plus(fit, matrices, folds, refit)
        return fit
    if not len(matrices.X):
        raise DataError("calibrate has no rows: every row has a missing value.")
    fit.calibration_ = Calibration("split", _scores(fit, matrices.inputs(), matrices.y))
    return fit


def on_validation(fit, valid, y=None, rows=None):
    """``fit``, calibrated by split conformal on its validation rows when it has them.

    ``valid`` is the rows the fit held out, as a Dataset with ``X`` and ``y`` (``nf.mlp``), or
    the tensors X and y with ``rows``, each model's validation row indices (an ensemble's
    ``fit_models``). Folds (X of one block per model) and validation rows that differ between
    models are not one held-out set, so those fits stay uncalibrated.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=penguins, hidden=3, epochs=2, valid=0.1,
    ...              seed=1, verbose=False)                 # nf.mlp calls on_validation itself
    >>> fit.calibration_.n == fit.settings["n_valid"]
    True
    """
    if y is not None:  # X, y and each model's rows
        if rows is None or valid.dim() != 2 or any(not _same(r, rows[0]) for r in rows):
            return fit
        X, y = valid[rows[0]], y[rows[0]]
    elif valid is None or not len(valid):
        return fit
    else:
        X, y = valid.X, valid.y
    if not len(X) or (fit.task == "regression" and fit.model.output_size != 1):
        return fit
    fit.calibration_ = Calibration("split", _scores(fit, X.cpu().numpy(), y.cpu().numpy()))
    return fit


def _same(a, b) -> bool:
    return a is b or (len(a) == len(b) and bool((a == b).all()))


def _check_task(fit, method: str) -> None:
    if fit.task == "regression" and fit.model.output_size != 1:
        raise ArgumentError(f"Conformal intervals are for one numeric response; this model has "
                            f"{fit.model.output_size} ({', '.join(fit.design.response_columns)}). Fit one model per response.")
    if method == "cv+" and fit.task != "regression":
        raise ArgumentError("method='cv+' is for a numeric response; calibrate a classifier's prediction sets on "
                            "held-out rows: fit.calibrate(held_out).")


def _scores(fit, X, y) -> np.ndarray:
    """Nonconformity scores of rows X (as the fit reads them) with responses y (as the design encodes them)."""
    values = fit._responses(fit._outputs(X)).mean(axis=0)  # an ensemble: the mean of its members
    if fit.task == "regression":
        scores = np.abs(fit.design.unscale_response(np.asarray(y, dtype=np.float64).reshape(-1, 1)) - values)[:, 0]
    else:
        scores = 1.0 - values[np.arange(len(y)), np.asarray(y, dtype=np.int64)]
    if not np.isfinite(scores).all():
        raise DataError("The fit's predictions on the calibration rows are not all finite numbers, so they cannot "
                        "be calibrated; check the fit for divergence.")
    return np.maximum(scores, 0.0)  # 1 - p rounds to -1e-16 when p is 1


def _cv_plus(fit, matrices, folds, refit) -> Calibration:
    """Refit the fit's recipe on folds of the rows in ``matrices``, all folds (times an ensemble's
    members) in one stacked pass; the out-of-fold residuals and the fold networks."""
    import torch

    from .train.ensemble import seeds_for
    from .folds import assign_folds, standardize

    settings, design, model = fit.settings, fit.design, fit.model
    if design.embedded_:
        raise ArgumentError("method='cv+' cannot refit a fit with embedded factors yet; calibrate on held-out "
                            "rows: fit.calibrate(held_out).")
    if settings.get("weights") is not None or settings.get("class_weight") is not None:
        raise ArgumentError("method='cv+' cannot refit a fit with case weights yet; calibrate on held-out rows: "
                            "fit.calibrate(held_out).")
    n, members = len(matrices.X), fit.n_models
    fold = assign_folds(None, n, folds, settings.get("seed"), stratify=False)
    train_rows = [np.flatnonzero(fold != k) for k in range(folds)]
    # Each fold's network is scaled with its own training rows, as cross_validate's are; the
    # fit's design scaled them with all of them. raw = the fit's inputs in the data's units.
    # From the inputs as training read them (float32): the same folds from a frame or from the
    # tensors nf.mlp trained on (MLPFit._calibrate_on_training).
    raw = np.asarray(matrices.X, dtype=np.float32) * design.scale_ + design.center_
    scaled = (design.scale_ != 1) | (design.center_ != 0)  # the columns the fit's design scales
    y_raw = design.unscale_response(np.asarray(matrices.y, dtype=np.float32).astype(np.float64))
    x_stats, y_stats = [], []
    for rows in train_rows:
        _, center, sd = standardize(raw, rows)
        x_stats.append((np.where(scaled, center, 0.0), np.where(scaled, sd, 1.0)))
        y_stats.append(standardize(y_raw, rows, response=True)[1:])
    group = [k for k in range(folds) for _ in range(members)]  # model g = fold k's member j
    X = torch.as_tensor(np.stack([(raw - x_stats[k][0]) / x_stats[k][1] for k in group]), dtype=torch.float32)
    y = torch.as_tensor(np.stack([(y_raw - y_stats[k][0]) / y_stats[k][1] for k in group]), dtype=torch.float32)
    y_scale = torch.as_tensor(np.stack([y_stats[k][1] for k in group])[:, None, :], dtype=torch.float32)
    per_model = lambda value: value if isinstance(value, list) else [value] * members  # noqa: E731
    dropouts = model.dropouts if members > 1 else [model.dropouts]
    names = [f"fold {k + 1} of {folds}" + (f", model {j + 1}" if members > 1 else "")
             for k in range(folds) for j in range(members)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. "looks like class codes": said at fit time
        stack = refit(
            X, y, model.sizes, model.activations, [dropouts[j] for _ in range(folds) for j in range(members)],
            settings["optimizer"], per_model(settings.get("lr")) * folds, per_model(settings.get("weight_decay", 0.0)) * folds,
            settings["epochs"], settings["batch_size"], None, seeds_for(settings.get("seed"), folds * members),
            "auto", None, settings["formula"], train_rows=[torch.as_tensor(train_rows[k]) for k in group],
            response_scale=y_scale, names=names,
        ).model
    _in_fit_scale(stack, design, [x_stats[k] for k in group], [y_stats[k] for k in group])
    calibration = Calibration("cv+", np.zeros(n), fold, stack, members)
    mu = _fold_predictions(fit, calibration, matrices.inputs())  # (folds, n), no offset: it cancels
    residuals = np.abs(y_raw[:, 0] - mu[fold, np.arange(n)])
    if not np.isfinite(residuals).all():
        raise DataError("The fold networks' predictions are not all finite numbers, so they cannot be calibrated; "
                        "check the fit's recipe for divergence.")
    calibration.scores = residuals
    return calibration


def _in_fit_scale(stack, design, x_stats, y_stats) -> None:
    """Fold the affine maps between each fold's scaling and the fit's into the first and last
    layers, so each network reads the fit's inputs and answers in the fit's response scale."""
    import torch

    with torch.no_grad():
        first, last = stack.weights[0], stack.weights[-1]
        for g, ((center, sd), (y_center, y_sd)) in enumerate(zip(x_stats, y_stats)):
            # fold input = fit input * a + d
            a = torch.as_tensor(design.scale_ / sd, dtype=first.dtype)
            d = torch.as_tensor((design.center_ - center) / sd, dtype=first.dtype)
            stack.biases[0][g] += d @ first[g]
            first[g] *= a[:, None]
            # fit output = fold output * b + e
            b = torch.as_tensor(y_sd / design.response_scale_, dtype=last.dtype)
            e = torch.as_tensor((y_center - design.response_center_) / design.response_scale_, dtype=last.dtype)
            last[g] *= b[None, :]
            stack.biases[-1][g] = stack.biases[-1][g] * b + e


def _fold_predictions(fit, calibration, X, offset=None) -> np.ndarray:
    """(folds, n) predictions of each fold's networks (their mean) in the response's units."""
    folds = type(fit)(fit.design, calibration.models, fit.task, [], fit.settings)  # the fold networks as a fit
    values = folds._responses(folds._outputs(X), offset)[:, :, 0]
    return values.reshape(calibration.n_folds, calibration.members, -1).mean(axis=1)


# ------------------------------------------------------------------ predicting
def _calibration_of(fit, what: str) -> Calibration:
    calibration = getattr(fit, "calibration_", None)
    if calibration is None:
        cv = ", or fit.calibrate(training, method='cv+')" if fit.task == "regression" else ""
        raise ArgumentError(
            f"type={what!r} needs a calibrated fit, and this one has no held-out rows to calibrate on: fit with "
            f"valid= (a fraction, or a data frame of held-out rows), or call fit.calibrate(held_out) with rows "
            f"the fit did not train on{cv}."
        )
    return calibration


def _warn_infinite(calibration, level, k, what) -> None:
    enough = math.ceil(round(level / (1 - level), 9))
    warn(
        f"With {calibration.n} calibration rows, level={level:g} needs the {k}-th smallest of {calibration.n} "
        f"scores, so every {what} is infinite; calibrate on at least {enough} rows, or ask for a lower level.",
        UserWarning,
    )


def interval(fit, values, matrices, index, level) -> "pd.DataFrame":
    """Conformal intervals (``predict(type="interval")``): a DataFrame of fit, lower, upper.

    ``values`` are the fit's (K, n, 1) predictions of the rows in ``matrices``; ``index`` is the
    data's index (rows with a missing predictor get NaN).

    >>> import nnfit as nf
    >>> training, held_out = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=training, hidden=3, epochs=5, seed=1,
    ...              verbose=False).calibrate(held_out)
    >>> bounds = fit.predict(held_out, type="interval", level=0.8)      # calls interval
    >>> float(((held_out["body_mass_g"] >= bounds["lower"]) & (held_out["body_mass_g"] <= bounds["upper"])).mean()) >= 0.8
    True
    """
    import pandas as pd

    level = check_level(level)
    if fit.model.output_size != 1:
        _check_task(fit, "split")
    calibration = _calibration_of(fit, "interval")
    center = values.mean(axis=0)[:, 0]
    n = calibration.n
    k = quantile_rank(level, n)
    if k > n:
        _warn_infinite(calibration, level, k, "interval")
    if calibration.method == "split":
        q = conformal_quantile(calibration.scores, level)
        lower, upper = center - q, center + q
    else:
        mu = _fold_predictions(fit, calibration, matrices.inputs(), matrices.offset)
        lower, upper = cv_plus_bounds(mu, calibration.scores, calibration.folds, level)
    out = np.full((len(index), 3), np.nan)
    out[matrices.rows] = np.column_stack([center, lower, upper])
    return pd.DataFrame(out, index=index, columns=["fit", "lower", "upper"])


def cv_plus_bounds(mu, residuals, folds, level):
    """CV+ (jackknife+) bounds for each test row from fold predictions ``mu`` (folds, m), the
    calibration rows' out-of-fold ``residuals`` (n) and their ``folds`` (n).

    lower: the floor(alpha (n + 1))-th smallest of mu[fold_i] - R_i (-inf below rank 1);
    upper: the ceil((1 - alpha) (n + 1))-th smallest of mu[fold_i] + R_i (inf above rank n),
    alpha = 1 - level (Barber et al. 2021, section 2.2).

    >>> import numpy as np
    >>> from nnfit.intervals import cv_plus_bounds
    >>> mu = np.array([[1.0], [2.0]])                    # two folds, one test row
    >>> lower, upper = cv_plus_bounds(mu, np.array([0.5, 1.0, 0.2, 0.4]), np.array([0, 0, 1, 1]), 0.6)
    >>> lower.tolist(), upper.tolist()                  # ranks floor(0.4 * 5) = 2 and ceil(0.6 * 5) = 3
    ([0.5], [2.2])
    """
    n = len(residuals)
    alpha = 1.0 - level
    low_rank, high_rank = math.floor(round(alpha * (n + 1), 9)), quantile_rank(level, n)
    m = mu.shape[1]
    lower, upper = np.full(m, -np.inf), np.full(m, np.inf)
    block = max(1, _BLOCK // max(n, 1))
    for start in range(0, m, block):
        part = mu[folds, start:start + block].T  # (rows, n): mu_{-k(i)}(x)
        if low_rank >= 1:
            lower[start:start + block] = np.partition(part - residuals, low_rank - 1, axis=1)[:, low_rank - 1]
        if high_rank <= n:
            upper[start:start + block] = np.partition(part + residuals, high_rank - 1, axis=1)[:, high_rank - 1]
    return lower, upper


def prediction_set(fit, values, rows, index, level) -> "pd.DataFrame":
    """Conformal prediction sets (``predict(type="set")``): one boolean column per level.

    A level is in a row's set when 1 - p(level) is at most the ceil((n + 1) * level)-th smallest
    of the calibration rows' scores 1 - p(true class) (the LAC, or "score", method).

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> fit = nf.mlp("species ~ bill_length_mm + flipper_length_mm", data=penguins, hidden=10, epochs=10,
    ...              valid=0.3, seed=1, verbose=False)
    >>> sets = fit.predict(penguins.head(2), type="set", level=0.9)   # calls prediction_set
    >>> sets.dtypes.tolist()
    [BooleanDtype, BooleanDtype, BooleanDtype]
    """
    import pandas as pd

    level = check_level(level)
    calibration = _calibration_of(fit, "set")
    k = quantile_rank(level, calibration.n)
    if k > calibration.n:
        _warn_infinite(calibration, level, k, "set")  # every set holds every level
    q = conformal_quantile(calibration.scores, level)
    inside = (1.0 - values.mean(axis=0)) <= q
    levels = [str(name) for name in fit.design.levels]
    held, unknown = np.zeros((len(index), len(levels)), dtype=bool), np.ones((len(index), len(levels)), dtype=bool)
    held[rows], unknown[rows] = inside, False  # a row with a missing predictor has no set: <NA>
    return pd.DataFrame({level: pd.arrays.BooleanArray(held[:, j], unknown[:, j]) for j, level in enumerate(levels)},
                        index=index)


def spread(values, index, rows) -> "pd.DataFrame":
    """An ensemble's disagreement (``predict(type="spread")``): mean, sd and the 2.5% and 97.5%
    quantiles of its members' predictions; not a prediction interval.

    >>> import numpy as np, pandas as pd
    >>> from nnfit.intervals import spread
    >>> values = np.array([[[1.0], [5.0]], [[3.0], [5.0]]])          # 2 models, 2 rows
    >>> spread(values, pd.RangeIndex(2), np.array([True, True]))[["mean", "sd"]].round(3).values.tolist()
    [[2.0, 1.414], [5.0, 0.0]]
    """
    import pandas as pd

    if values.shape[2] != 1:
        raise ArgumentError(f"type='spread' is for one response; this model predicts {values.shape[2]}. "
                            "Use type='all' for every model's prediction of each.")
    v = values[:, :, 0]
    stats = np.column_stack([v.mean(0), v.std(0, ddof=1), np.quantile(v, 0.025, axis=0), np.quantile(v, 0.975, axis=0)])
    out = np.full((len(index), 4), np.nan)
    out[rows] = stats
    return pd.DataFrame(out, index=index, columns=["mean", "sd", "lower", "upper"])


# ------------------------------------------------------------------ files
def from_saved(data, tensors: dict):
    """The Calibration a model file holds (None for a file without one).

    ``data`` has passed ``nnfit.schema.check_calibration``: its types, lengths, finite numbers
    and the fold networks' shapes are those of the fit. A refusal is a ``nnfit.schema.Refusal``.

    >>> from nnfit.intervals import from_saved
    >>> from_saved({"method": "split", "scores": [0.5, 0.25]}, {})
    <nnfit Calibration> split conformal on 2 held-out rows
    """
    if data is None:
        return None
    if data["method"] == "split":
        return Calibration("split", data["scores"])
    import torch

    from .train.ensemble import StackedMLP
    from .schema import Refusal

    weights = {name[len(PREFIX):]: tensor for name, tensor in tensors.items() if name.startswith(PREFIX)}
    architecture = data["architecture"]
    rates = weights["dropout"]
    if not torch.equal(rates, torch.tensor(architecture["dropout"], dtype=rates.dtype)):
        raise Refusal("the tensor 'calibration.dropout' does not hold the rates of calibration.architecture.dropout")
    models = StackedMLP.from_architecture(architecture)
    models.load_state_dict(weights)
    return Calibration("cv+", data["scores"], data["fold"], models.eval(), data["members"])

"""Model selection with many networks trained at once: cross-validation and grids.

Both build on ``nf.mlp``'s vectorized ensembles: the folds of a cross-validation, or every
same-shape combination of a grid, are stacked and trained in one pass.
"""

from __future__ import annotations

import itertools

import numpy as np

from .design import Design, as_pandas, warn_left_out
from .errors import ArgumentError, DivergenceError, says_once, warn
from .folds import assign_folds, check_folds, standardize
from .recipe import DEFAULTS
from .train.distributed import follows_choice
from .modules import check_architecture

_HIGHER_IS_BETTER = {"accuracy": True, "r2": True, "mae": False, "rmse": False, "log_loss": False}


class CVResult:
    """Cross-validation results: ``folds`` (one row per fold), ``summary`` (mean, sd and standard
    error) and ``metrics`` (the training history, with a ``model`` column numbering the folds).

    ``dropped`` names the folds whose training diverged and were left out
    (``on_divergence="drop"``), with the reason; ``folds`` and ``summary`` hold the others.

    ``nf.cross_validate`` returns one.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> cv = nf.cross_validate("body_mass_g ~ flipper_length_mm + sex", penguins, folds=3, hidden=5,
    ...                        epochs=5, seed=1, verbose=False)
    >>> cv.folds.columns.tolist(), len(cv.folds)
    (['fold', 'n', 'mae', 'rmse', 'r2'], 3)
    >>> cv.summary.columns.tolist()
    ['metric', 'mean', 'sd', 'se']
    """

    def __init__(self, folds, formula: str, seconds: float, metrics, dropped=None):
        self.folds = folds
        self.formula = formula
        self.seconds = seconds
        self.metrics = metrics
        self.dropped = dict(dropped or {})

    @property
    def summary(self):
        """mean, sd (n - 1) and standard error (sd / sqrt(folds scored)) of each metric over the folds.

        The standard error is that of the cross-validated mean, the yardstick of the
        one-standard-error rule (``nf.grid(..., folds=k, rule="1se")``).

        >>> import nnfit as nf
        >>> penguins = nf.datasets.load("penguins").dropna()
        >>> cv = nf.cross_validate("species ~ bill_length_mm + flipper_length_mm", penguins, folds=3,
        ...                        hidden=5, epochs=5, seed=1, verbose=False)
        >>> cv.summary["metric"].tolist()
        ['accuracy', 'log_loss']
        >>> row = cv.summary.iloc[0]
        >>> bool(abs(row["se"] - row["sd"] / 3 ** 0.5) < 1e-12)
        True
        """
        import pandas as pd

        metrics = [c for c in self.folds.columns if c not in ("fold", "n")]
        sd = [self.folds[m].std(ddof=1) for m in metrics]
        return pd.DataFrame({"metric": metrics, "mean": [self.folds[m].mean() for m in metrics], "sd": sd,
                             "se": [value / np.sqrt(len(self.folds)) for value in sd]})

    def __repr__(self):
        lines = [f"<nnfit CVResult> {len(self.folds)}-fold cross-validation of {self.formula} ({self.seconds:.2f} s)"]
        for row in self.summary.itertuples():
            lines.append(f"  {row.metric:<9} {row.mean:.4g} (se {row.se:.3g}, sd {row.sd:.3g})")
        if self.dropped:
            lines.append(f"  left out, their training diverged: {', '.join(self.dropped)}")
        return "\n".join(lines)


@follows_choice
@says_once
def cross_validate(formula, data, folds: int = 10, seed=None, scale=True, on_divergence="error", distributed=None,
                   **mlp_options) -> CVResult:
    """K-fold cross-validation of ``nf.mlp(formula, ...)``, every fold trained at once.

    Each fold's network is scaled with, and trained on, its own training rows only, then
    scored on its held-out rows in original units. Folds are stratified for a classifier.
    ``mlp_options`` are those of ``nf.mlp`` (hidden, dropout, optimizer, lr, epochs, ...).
    A fold whose training diverges raises ``DivergenceError`` naming it ("fold 2 of 5"); with
    ``on_divergence="drop"`` it is left out of ``folds`` and ``summary`` (with a warning) and
    named in ``.dropped``. Under torchrun the folds are spread over the processes; with
    ``distributed=False`` each process trains them all itself (docs/distributed.md).

    The luz-style form takes a learner and (X, y) tensors instead:
    ``nf.cross_validate(nf.setup(Net, loss=..., metrics=[...]).set_hparams(...), (X, y), folds=5,
    epochs=20)``; its folds train together through ``fit(n_models=folds)`` (each on the same
    number of rows: a fold with one row more leaves one random training row out), and are
    scored with the learner's loss and metrics.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> cv = nf.cross_validate("body_mass_g ~ . - year", penguins, folds=5, epochs=5, seed=1, verbose=False)
    >>> cv                                             # doctest: +ELLIPSIS
    <nnfit CVResult> 5-fold cross-validation of body_mass_g ~ . - year (... s)
      mae       ... (se ..., sd ...)
      rmse      ... (se ..., sd ...)
      r2        ... (se ..., sd ...)
    >>> cv.summary["metric"].tolist()
    ['mae', 'rmse', 'r2']
    """
    import time

    import pandas as pd

    from .train.learner import Learner

    if isinstance(formula, Learner):
        return _cross_validate_learner(formula, data, folds, seed, on_divergence=on_divergence, **mlp_options)
    from .train.ensemble import seeds_for
    from .mlpfit import check_training

    for option in ("valid", "n_models", "callbacks"):
        if option in mlp_options:
            raise ArgumentError(f"cross_validate chooses {option} itself; leave it out.")
    began = time.perf_counter()
    options = dict(mlp_options)
    hidden, activation, dropout, optimizer, lr, weight_decay, epochs, batch_size = (
        options.pop(name, DEFAULTS[name]) for name in
        ("hidden", "activation", "dropout", "optimizer", "lr", "weight_decay", "epochs", "batch_size"))
    device, threads = options.pop("device", "auto"), options.pop("threads", None)
    options.pop("verbose", None)
    if options:
        raise ArgumentError(f"Unknown options for cross_validate: {', '.join(sorted(options))}.")
    sizes = check_architecture(hidden, activation, dropout)[0]
    check_training(lr, weight_decay, epochs, batch_size, on_divergence)
    check_folds(folds)
    split = _Folds(formula, data, folds, seed, scale)
    names = [f"fold {k + 1} of {folds}" for k in range(folds)]
    fit, scores = split.train(list(range(folds)), sizes, activation, [dropout] * folds, optimizer, [lr] * folds,
                              [weight_decay] * folds, epochs, batch_size, seeds_for(seed, folds), device, threads,
                              formula, names, on_divergence)
    dropped = fit.settings.get("dropped", {})
    kept = [k for k in range(folds) if scores[k] is not None]
    if not kept:
        raise DivergenceError(f"Every one of the {folds} folds diverged, so none is left to score; the first: "
                              f"{next(iter(dropped.values()))}")
    _warn_dropped("folds", dropped, folds)
    rows = [dict(fold=k + 1, n=len(split.valid_rows[k]), **scores[k]) for k in kept]
    metrics = fit.metrics[fit.metrics["model"].isin([k + 1 for k in kept])].reset_index(drop=True)
    return CVResult(pd.DataFrame(rows), formula, time.perf_counter() - began, metrics, dropped)


class _Folds:
    """A formula's complete rows split into k folds (stratified for a classifier), each fold's
    inputs, and a regression's response, scaled with that fold's own training rows.

    ``train`` fits any number of networks of one shape in one stacked pass, model m on the
    training rows of fold ``fold_of_model[m]``, and scores each on its held-out rows in
    original units: cross_validate's folds, and a grid's cells times folds.
    """

    def __init__(self, formula, data, folds: int, seed, scale):
        import torch

        from .mlpfit import task_of

        design = Design(formula, scale=False, intercept=False).fit(data)
        frame = as_pandas(data)
        matrices = design.transform(frame, response=True)
        warn_left_out(matrices, len(frame))
        task = task_of(design)
        n = len(matrices.X)
        codes = matrices.y if task != "regression" else None
        assignment = assign_folds(codes, n, folds, seed, stratify=task != "regression")
        self.train_rows = [np.flatnonzero(assignment != k) for k in range(folds)]
        self.valid_rows = [np.flatnonzero(assignment == k) for k in range(folds)]
        self.X = torch.as_tensor(
            np.stack([standardize(matrices.X, rows)[0] if scale else matrices.X for rows in self.train_rows]),
            dtype=torch.float32,
        )
        if task == "regression":
            scaled = [standardize(matrices.y, rows, response=True) for rows in self.train_rows]
            self.y = torch.as_tensor(np.stack([s[0] for s in scaled]), dtype=torch.float32)
            self.y_center = np.stack([s[1] for s in scaled])
            self.y_scale = np.stack([s[2] for s in scaled])
        else:
            self.y = torch.as_tensor(codes, dtype=torch.int64)
        self.design, self.matrices, self.task, self.codes = design, matrices, task, codes
        self.n_outputs = len(design.levels) if task == "multiclass" else 1 if task == "binary" else matrices.y.shape[-1]

    def train(self, fold_of_model, sizes, activation, dropouts, optimizer, lrs, weight_decays, epochs, batch_size,
              seeds, device, threads, formula, names, on_divergence):
        """The fitted stack and each model's scores on its fold's held-out rows (None: it diverged)."""
        import torch

        from .mlpfit import Prepared, fit_models
        from .scores import probabilities, score

        index = torch.as_tensor(fold_of_model)
        same = list(fold_of_model) == list(range(len(self.train_rows)))
        X = self.X if same else self.X[index]
        regression = self.task == "regression"
        y = (self.y if same else self.y[index]) if regression else self.y
        response_scale = None
        if regression:
            response_scale = torch.as_tensor(self.y_scale[fold_of_model][:, None, :], dtype=torch.float32)
        prepared = Prepared(self.design, self.task, self.n_outputs, X, y, self.matrices.n_left_out,
                            self.matrices.offset)
        fit = fit_models(
            prepared, sizes, activation, dropouts, optimizer, lrs, weight_decays, epochs, batch_size, None, seeds,
            device, threads, formula, train_rows=[torch.as_tensor(self.train_rows[k]) for k in fold_of_model],
            valid_rows=[torch.as_tensor(self.valid_rows[k]) for k in fold_of_model], response_scale=response_scale,
            names=names, on_divergence=on_divergence, keep_diverged=True,
        )
        dropped = fit.settings.get("dropped", {})
        with np.errstate(all="ignore"):  # a diverged model's outputs may overflow; it is not scored
            outputs = fit._outputs(X.numpy())
        offset = self.matrices.offset
        scores = []
        for m, k in enumerate(fold_of_model):
            if names[m] in dropped:
                scores.append(None)
                continue
            rows = self.valid_rows[k]
            part = outputs[m, rows]
            if regression:
                shift = 0.0 if offset is None else offset[rows, None]  # offset() terms
                pred = part * self.y_scale[k] + self.y_center[k] + shift
                truth = self.matrices.y[rows] + shift
            else:
                pred, truth = probabilities(part, self.task), self.codes[rows]
            scores.append(score(pred, truth, self.task))
        return fit, scores


def _warn_dropped(what: str, dropped: dict, total: int) -> None:
    if dropped:
        warn(
            f"{len(dropped)} of {total} {what} diverged and were left out ({', '.join(dropped)}); the results "
            "hold the others, and .dropped says why.",
        )


def _cross_validate_learner(learner, data, folds, seed, epochs=10, batch_size=32, device="auto", threads=None,
                            on_divergence="error"):
    """cross_validate's luz-style form: a learner and (X, y), folds trained with fit(n_models=folds)."""
    import time

    import pandas as pd
    import torch

    from .train.data import as_data
    from .train.learner import resolve_device
    from .train.loop import epoch_range
    from .train.vectorized import fit_many

    began = time.perf_counter()
    epochs = epoch_range(epochs)[1]
    source = as_data(data, batch_size, False)
    if getattr(source, "y", None) is None:
        raise ArgumentError("cross_validate with a learner needs (X, y) tensors or arrays.")
    X, y = source.X, source.y
    classes = y.ndim == 1 and not y.is_floating_point()
    assignment = assign_folds(y.numpy() if classes else None, len(X), folds, seed, stratify=classes)
    rng = np.random.default_rng(seed)
    train_rows = [np.flatnonzero(assignment != k) for k in range(folds)]
    n_min = min(len(rows) for rows in train_rows)
    train_rows = [torch.as_tensor(np.sort(rng.choice(rows, n_min, replace=False))) for rows in train_rows]
    names = [f"fold {k + 1} of {folds}" for k in range(folds)]
    fitted = fit_many(learner, (X, y), folds, epochs, batch_size, seed, resolve_device(device), threads,
                      train_rows=train_rows, names=names, on_divergence=on_divergence)
    kept = [k for k in range(folds) if names[k] not in fitted.dropped]
    _warn_dropped("folds", fitted.dropped, folds)
    rows = []
    for index, k in enumerate(kept):
        held_out = torch.as_tensor(np.flatnonzero(assignment == k))
        scores = fitted.evaluate_model(index, (X[held_out], y[held_out]))
        rows.append(dict(fold=k + 1, n=len(held_out), **scores))
    metrics = fitted.metrics
    metrics["model"] = metrics["model"].map({index + 1: k + 1 for index, k in enumerate(kept)})
    return CVResult(pd.DataFrame(rows), type(fitted.models[0]).__name__, time.perf_counter() - began, metrics,
                    fitted.dropped)


_RULES = ("min", "1se")


class GridResult:
    """A grid search: ``results`` (one row per combination), ``best`` (its settings), ``fit`` (the refit).

    ``results`` holds each combination's settings, its number of weights and biases
    (``n_params``) and its metrics: on one hold-out (mean over seeds, and ``_sd`` their sd), or
    with ``folds`` the cross-validated mean, ``_sd`` the sd over folds and ``_se`` the
    standard error of the mean (sd / sqrt(folds)). ``folds`` is then the table the means come
    from, one row per combination (``cell``, the row of ``results``) and fold; ``rule`` says how
    ``best`` was chosen ("min" or "1se"), ``n_folds`` the number of folds (None: one hold-out).

    ``dropped`` names the models whose training diverged and were left out
    (``on_divergence="drop"``), with the reason: a combination is scored on its other seeds,
    and left out of ``results`` when every seed diverged (with folds: every seed of one fold).

    ``nf.grid`` returns one.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> result = nf.grid("body_mass_g ~ flipper_length_mm + sex", penguins, hidden=5, lr=[0.003, 0.01],
    ...                  epochs=5, seed=1, verbose=False)
    >>> result.results["lr"].tolist()
    [0.003, 0.01]
    >>> result.best["lr"] in (0.003, 0.01), type(result.fit).__name__
    (True, 'MLPFit')
    >>> cv = nf.grid("body_mass_g ~ flipper_length_mm + sex", penguins, hidden=5, lr=[0.003, 0.01], folds=3,
    ...              epochs=5, seed=1, refit=False)
    >>> cv.folds.columns.tolist()[:3], len(cv.folds), cv.n_folds, cv.rule
    (['cell', 'fold', 'n'], 6, 3, 'min')
    """

    def __init__(self, results, best: dict, metric: str, fit, seconds: float, dropped=None, folds=None,
                 rule: str = "min", n_folds=None):
        self.results = results
        self.best = best
        self.metric = metric
        self.fit = fit
        self.seconds = seconds
        self.dropped = dict(dropped or {})
        self.folds = folds
        self.rule = rule
        self.n_folds = n_folds

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.best.items())
        how = f"validation {self.metric}" if self.n_folds is None else f"{self.n_folds}-fold CV {self.metric}"
        if self.rule == "1se":
            how += " (the simplest within one standard error of the best)"
        return (
            f"<nnfit GridResult> {len(self.results)} combinations in {self.seconds:.2f} s; best by {how}: {settings}"
            + (f"; left out, their training diverged: {', '.join(self.dropped)}" if self.dropped else "")
        )


@follows_choice
@says_once
def grid(formula: str, data, hidden=DEFAULTS["hidden"], lr=DEFAULTS["lr"], dropout=DEFAULTS["dropout"],
         weight_decay=DEFAULTS["weight_decay"], activation=DEFAULTS["activation"], seeds: int = 1,
         valid: float | None = None, metric: str | None = None, seed: int = 1, refit: bool = True,
         on_divergence="error", folds: int | None = None, rule: str = "min", distributed=None,
         **mlp_options) -> GridResult:
    """Every combination of ``hidden``, ``lr``, ``dropout``, ``weight_decay`` and ``activation``.

    Each argument takes one value or a list of values; ``hidden`` takes a list of shapes, each
    a number of units or a list of them (``hidden=[10, 50]`` compares one layer of 10 with one
    of 50; ``hidden=[[10, 5]]`` is one two-layer shape). Same-shape combinations (one hidden/activation
    setting) are trained together in one vectorized pass, ``seeds`` models each.

    How combinations are scored:

    - ``folds=None`` (the default): on one hold-out, the ``valid`` fraction of the rows (default
      0.2), the same rows for every model. Quick, but on a small data set one hold-out is noisy.
    - ``folds=k``: by k-fold cross-validation, as ``nf.cross_validate`` (stratified for a
      classifier, each fold scaled with its own training rows), every combination on the same
      folds; each combination's k folds train in the same stacked pass as the others. The
      results then give the cross-validated mean, its sd over folds and its standard error
      (sd / sqrt(k)); ``valid`` is not used.

    ``results`` has one row per combination (see ``GridResult``). ``best`` is chosen by
    ``metric`` (default: mae for regression, log_loss for classifiers) with ``rule``:
    ``"min"`` (the default) takes the best mean; ``"1se"`` (needs ``folds``) takes the
    simplest combination whose cross-validated mean is within one standard error of the best
    one's, as ``cv.glmnet``'s ``lambda.1se``: the fewest parameters, then the largest
    weight_decay, then the largest dropout, then the smallest lr, then the better mean.
    ``best`` is refit on all of ``data`` when ``refit``. ``mlp_options`` may be optimizer,
    epochs, batch_size, scale, device, threads and verbose. Under torchrun the cells (and
    folds) are spread over the processes; ``distributed=False`` keeps them all here.

    A model whose training diverges raises ``DivergenceError`` naming its combination ("grid
    cell hidden=[20], lr=1e+06", and ", fold 2 of 5" with folds); with ``on_divergence="drop"``
    it is left out (with a warning), and ``.dropped`` names it.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> result = nf.grid("body_mass_g ~ . - year", penguins, lr=[0.003, 0.01], dropout=[0, 0.4],
    ...                  epochs=10, seed=1, verbose=False)
    >>> result.results[["lr", "dropout"]].values.tolist()   # one row per combination
    [[0.003, 0.0], [0.003, 0.4], [0.01, 0.0], [0.01, 0.4]]
    >>> sorted(result.best)                            # the best combination, refit as result.fit
    ['activation', 'dropout', 'hidden', 'lr', 'weight_decay']
    >>> cv = nf.grid("body_mass_g ~ . - year", penguins, hidden=[[2], [8]], folds=3, rule="1se", epochs=5,
    ...              seed=1, refit=False)
    >>> cv.results[["hidden", "n_params", "mae", "mae_sd", "mae_se"]].shape
    (2, 5)
    >>> cv                                             # doctest: +ELLIPSIS
    <nnfit GridResult> 2 combinations in ... s; best by 3-fold CV mae (the simplest within one standard error of the best): ...
    """
    import time

    import pandas as pd

    from .train.ensemble import OPTIMIZER_DEFAULTS
    from .errors import check_positive_int
    from .mlpfit import fit_models, check_training, mlp, prepare

    for option in ("valid_data", "n_models", "callbacks"):
        if option in mlp_options:
            raise ArgumentError(f"grid chooses {option} itself; leave it out.")
    unknown = sorted(set(mlp_options) - {"optimizer", "epochs", "batch_size", "scale", "device", "threads", "verbose"})
    if unknown:
        raise ArgumentError(
            f"Unknown options for grid: {', '.join(unknown)}; it takes optimizer, epochs, batch_size, scale, device, "
            "threads and verbose besides the grid's own arguments."
        )
    check_training(lr, weight_decay, mlp_options.get("epochs", DEFAULTS["epochs"]),
                   mlp_options.get("batch_size", DEFAULTS["batch_size"]), on_divergence)
    if folds is not None:
        check_folds(folds)
        if valid is not None:
            raise ArgumentError(
                f"Give valid= (one hold-out) or folds= (cross-validation), not both: with folds={folds} each fold is "
                "held out in turn."
            )
    if not isinstance(rule, str) or rule not in _RULES:
        raise ArgumentError(
            "rule must be 'min' (the best cross-validated mean) or '1se' (the simplest combination within one "
            f"standard error of it), not {rule!r}."
        )
    if rule == "1se" and folds is None:
        raise ArgumentError("rule='1se' needs folds=: the standard error is that of the mean over cross-validation "
                            "folds (e.g. folds=5).")
    if folds is None and valid is None:
        valid = 0.2
    began = time.perf_counter()
    as_list = lambda v: list(v) if isinstance(v, (list, tuple)) else [v]  # noqa: E731
    shapes = [h if isinstance(h, (list, tuple)) else [h] for h in as_list(hidden)]
    axes = {"lr": as_list(lr), "dropout": as_list(dropout), "weight_decay": as_list(weight_decay),
            "activation": as_list(activation)}
    if not shapes or any(len(v) == 0 for v in axes.values()):
        raise ArgumentError("The grid is empty: give at least one value for each of hidden, lr, dropout, weight_decay.")
    check_positive_int("seeds", seeds)
    scale = mlp_options.pop("scale", True)
    if folds is None:
        prepared = prepare(formula, data, scale)
        task, n_inputs, n_outputs = prepared.task, prepared.X.shape[-1], prepared.n_outputs
    else:
        split = _Folds(formula, data, folds, seed, scale)
        task, n_inputs, n_outputs = split.task, split.X.shape[-1], split.n_outputs
    metric = metric or ("mae" if task == "regression" else "log_loss")
    if metric not in _HIGHER_IS_BETTER:
        raise ArgumentError(f"Unknown metric {metric!r}; choose one of: {', '.join(sorted(_HIGHER_IS_BETTER))}.")
    optimizer = mlp_options.get("optimizer", DEFAULTS["optimizer"])
    epochs, batch_size = mlp_options.get("epochs", DEFAULTS["epochs"]), mlp_options.get("batch_size", DEFAULTS["batch_size"])
    device, threads = mlp_options.get("device", "auto"), mlp_options.get("threads")
    rows, fold_rows, dropped = [], [], {}
    varying = [axis for axis, values in axes.items() if len(values) > 1]
    for shape in shapes:
        for act in axes["activation"]:
            cells = list(itertools.product(axes["lr"], axes["dropout"], axes["weight_decay"]))
            check_architecture(shape, act, [0.0] * len(shape))
            for _, rate, _ in cells:
                check_architecture(shape, act, rate)
            per_model = [cell for cell in cells for _ in range(seeds)]
            model_seeds = [seed + s for _ in cells for s in range(seeds)]
            names = [_cell_name(shape, act, cell, varying, s if seeds > 1 else None) for cell in cells for s in range(seeds)]
            n_params = _n_parameters(n_inputs, shape, n_outputs)
            if folds is not None:
                # Every cell x seed x fold in one stack; fold k of seed s starts from seed + s + k, so
                # a cell's first seed is nf.cross_validate(..., folds=folds, seed=seed) of that cell.
                fit, scores = split.train(
                    [k for _ in per_model for k in range(folds)], shape, act,
                    [c[1] for c in per_model for _ in range(folds)], optimizer,
                    [c[0] for c in per_model for _ in range(folds)], [c[2] for c in per_model for _ in range(folds)],
                    epochs, batch_size, [s + k for s in model_seeds for k in range(folds)], device, threads, formula,
                    [f"{name}, fold {k + 1} of {folds}" for name in names for k in range(folds)], on_divergence,
                )
                dropped.update(fit.settings.get("dropped", {}))
                for index, cell in enumerate(cells):
                    per_fold = _fold_means(scores[index * seeds * folds:(index + 1) * seeds * folds], seeds, folds)
                    if per_fold is None:
                        continue  # every seed of one of its folds diverged
                    row = _settings(shape, act, cell, n_params)
                    for name in per_fold.columns:
                        values = per_fold[name].to_numpy()
                        row[name], row[f"{name}_sd"] = values.mean(), values.std(ddof=1)
                        row[f"{name}_se"] = row[f"{name}_sd"] / np.sqrt(folds)
                    fold_rows += [dict(cell=len(rows), fold=k + 1, n=len(split.valid_rows[k]), **per_fold.iloc[k])
                                  for k in range(folds)]
                    rows.append(row)
                continue
            fit = fit_models(
                prepared, shape, act, [c[1] for c in per_model], optimizer, [c[0] for c in per_model],
                [c[2] for c in per_model], epochs, batch_size, valid, model_seeds, device, threads, formula,
                names=names, on_divergence=on_divergence, keep_diverged=True,
            )
            cell_dropped = fit.settings.get("dropped", {})
            dropped.update(cell_dropped)
            with np.errstate(all="ignore"):  # a diverged model's outputs may overflow; it is left out below
                scores = _validation_scores(fit, prepared, valid, model_seeds[0])
            scores = scores[[name not in cell_dropped for name in names]]
            for index, cell in enumerate(cells):
                models = scores[(scores["model"] > index * seeds) & (scores["model"] <= (index + 1) * seeds)]
                if not len(models):
                    continue  # every seed of this combination diverged
                row = _settings(shape, act, cell, n_params)
                for name in [c for c in scores.columns if c != "model"]:
                    row[name] = models[name].mean()
                    row[f"{name}_sd"] = models[name].std(ddof=1) if len(models) > 1 else float("nan")
                rows.append(row)
    if not rows:
        raise DivergenceError(
            f"Every model of the grid diverged, so there is nothing to choose from; the first: "
            f"{next(iter(dropped.values()))}"
        )
    n_cells = len(axes["lr"]) * len(axes["dropout"]) * len(axes["weight_decay"])
    _warn_dropped("models", dropped, len(shapes) * len(axes["activation"]) * n_cells * seeds * (folds or 1))
    results = pd.DataFrame(rows)
    name = optimizer.lower() if isinstance(optimizer, str) else None
    best_row = results.loc[_choose(results, metric, rule, OPTIMIZER_DEFAULTS.get(name, {}).get("lr"))]
    best = {k: getattr(best_row[k], "item", lambda v=best_row[k]: v)() for k in ("hidden", "activation", "lr", "dropout", "weight_decay")}
    refitted = None
    if refit:
        options = {k: v for k, v in mlp_options.items() if k not in ("verbose",)}
        refitted = mlp(formula, data, hidden=list(best["hidden"]), activation=best["activation"], lr=best["lr"],
                       dropout=best["dropout"], weight_decay=best["weight_decay"], seed=seed, verbose=False,
                       scale=scale, **options)
    return GridResult(results, best, metric, refitted, time.perf_counter() - began, dropped,
                      None if folds is None else pd.DataFrame(fold_rows), rule, folds)


def _settings(shape, activation, cell, n_params: int) -> dict:
    """A results row's settings: the shape, activation, (lr, dropout, weight_decay) and the parameter count."""
    return {"hidden": list(shape), "activation": activation, "lr": cell[0], "dropout": cell[1], "weight_decay": cell[2],
            "n_params": n_params}


def _n_parameters(n_inputs: int, sizes, n_outputs: int) -> int:
    """Weights and biases of a network with hidden layers ``sizes``."""
    widths = [n_inputs, *sizes, n_outputs]
    return int(sum(a * b + b for a, b in itertools.pairwise(widths)))


def _fold_means(scores: list, seeds: int, folds: int):
    """One cell's scores per fold (rows) as the mean over its seeds that did not diverge; None
    when every seed of some fold diverged. ``scores`` is seed-major: seed s, fold k at s * folds + k."""
    import pandas as pd

    per_fold = []
    for k in range(folds):
        kept = [scores[s * folds + k] for s in range(seeds) if scores[s * folds + k] is not None]
        if not kept:
            return None
        per_fold.append({name: float(np.mean([one[name] for one in kept])) for name in kept[0]})
    return pd.DataFrame(per_fold)


def _choose(results, metric: str, rule: str, default_lr=None):
    """The index of the chosen row of ``results``: the best mean ("min"), or ("1se") the simplest
    row whose mean is within one standard error of the best row's: fewest parameters, then the
    largest weight_decay, the largest dropout, the smallest lr (None: ``default_lr``), the better mean."""
    import pandas as pd

    higher = _HIGHER_IS_BETTER[metric]
    best = results[metric].rank(ascending=not higher, method="first").idxmin()
    if rule == "min":
        return best
    bound = results.loc[best, metric] + (-1 if higher else 1) * results.loc[best, f"{metric}_se"]
    within = results[results[metric] >= bound] if higher else results[results[metric] <= bound]
    if within.empty:  # a standard error of nan (a constant metric gives 0, and keeps the best)
        return best
    key = pd.DataFrame({
        "n_params": within["n_params"], "weight_decay": -within["weight_decay"].astype(float),
        "dropout": -within["dropout"].astype(float),
        "lr": pd.to_numeric(within["lr"]).fillna(np.nan if default_lr is None else default_lr),
        "score": -within[metric] if higher else within[metric],
    })
    return key.sort_values(list(key.columns), kind="stable").index[0]


def _cell_name(shape, activation, cell, varying, seed_index) -> str:
    """'grid cell hidden=[20], lr=1e+06' (lr and the axes that vary), and ', seed 2' with several seeds."""
    values = {"lr": cell[0], "dropout": cell[1], "weight_decay": cell[2], "activation": activation}
    shown = ", ".join(f"{axis}={values[axis]:g}" if isinstance(values[axis], float) else f"{axis}={values[axis]!r}"
                      for axis in ("activation", "lr", "dropout", "weight_decay")
                      if axis in varying or (axis == "lr" and values["lr"] is not None))
    text = f"grid cell hidden={list(shape)}" + (f", {shown}" if shown else "")
    return text + (f", seed {seed_index + 1}" if seed_index is not None else "")


def _validation_scores(fit, prepared, valid, seed):
    """Each model's metrics (original units) on the held-out rows, one row per model."""
    import pandas as pd
    import torch

    from .train.data import InMemory, split_valid
    from .scores import score

    generator = torch.Generator().manual_seed(seed)
    _, held_out = split_valid(InMemory(torch.arange(len(prepared.X)), prepared.y), valid, generator,
                              stratify=prepared.task != "regression")
    rows = held_out.X.numpy()
    offset = None if prepared.offset is None else prepared.offset[rows]
    values = fit._responses(fit._outputs(prepared.X.numpy()[rows]), offset)
    truth = prepared.design.unscale_response(prepared.y.numpy()[rows], offset) if prepared.task == "regression" else prepared.y.numpy()[rows]
    return pd.DataFrame([dict(model=k + 1, **score(v, truth, prepared.task)) for k, v in enumerate(values)])

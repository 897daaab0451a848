"""The formula one-liner: ``nf.mlp("body_mass_g ~ . - year", data=training, hidden=50)``.

It composes the three layers below it: a ``Design`` (formula, levels, scaling learned on the
training data), an ``MLP`` module, and the training loop. Predictions come back as pandas
objects in the response's own units or labels, aligned to the rows given.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from .design import Design, Matrices, as_pandas, is_polars, warn_left_out
from .scores import Scores, classification_scores, probabilities, score  # noqa: F401  (nnfit.mlpfit's names)
from .errors import ArgumentError, DataError, warn
from .train import ensemble
from . import intervals
from .train.ensemble import StackedMLP, check_n_models
from .recipe import DEFAULTS
from .train.distributed import choice, follows_choice
from .train.fitted import History
from .modules import ACTIVATION_FORMULAS, MLP, check_architecture, embedding_size


CV_FOLDS = 10  # an uncalibrated fit asked for intervals calibrates by CV+ on this many folds



@follows_choice
def mlp(formula: str, data, hidden=DEFAULTS["hidden"], activation=DEFAULTS["activation"], dropout=DEFAULTS["dropout"],
        optimizer=DEFAULTS["optimizer"], lr=DEFAULTS["lr"], epochs=DEFAULTS["epochs"], batch_size=DEFAULTS["batch_size"],
        valid=None, seed=None, weight_decay=DEFAULTS["weight_decay"], callbacks=None,
        device="auto", verbose=None, threads=None, scale=True, n_models=1, embed=None, unknown="error",
        on_divergence="error", weights=None, class_weight=None, threshold=None, distributed=None):
    """Fit a neural network from a formula and a data frame; return an ``MLPFit``.

    Predictors are standardized with the training data; a numeric response is standardized for
    training and predictions are mapped back. The loss follows the response: numeric -> MSE,
    factor -> cross-entropy, two-level factor -> binary cross-entropy on one logit. Rows with a
    missing value in a variable the formula uses are left out of training (with a warning).

    Parameters
    ----------
    hidden : units per hidden layer (a number or a list; ``[]`` is the linear / logistic model).
    activation, dropout : one value, or one per hidden layer.
    optimizer : "rmsprop" (default, as the R lab), "sgd", "adam", "adamw", or a torch.optim class.
    lr : learning rate (default: the optimizer's own, 0.01 for RMSprop).
    valid : a fraction of the training rows held out for validation metrics, or a data frame of
        validation rows (encoded with the training design; its rows with a missing value are left
        out, counted in ``fit.settings["n_valid_left_out"]``, with a warning).
    weights : case weights, as R's ``weights=``: the name of a column of ``data`` (which is then not
        a predictor, not even for ``.``) or one number per row of ``data``; each batch's loss is
        sum(w * loss) / sum(w), so whole-number weights act as repeated rows.
    class_weight : classifiers only: "balanced" (n / (levels * n_level), as scikit-learn's
        ``compute_class_weight``) or {level: weight}; multiplies ``weights``.
    threshold : binary classifiers only: the probability of the second level above which
        ``predict(type="class")`` and ``evaluate`` say the second level (default 0.5);
        ``fit.choose_threshold`` picks one on validation rows.
    distributed : None (the default: data-parallel when torchrun started this process), True
        (require torchrun) or False (fit in this process alone, even under torchrun); see
        docs/distributed.md.
    n_models : train this many networks at once (an ensemble; model k uses seed + k), in one
        vectorized pass; predictions are their mean.
    on_divergence : a fit whose training loss diverges (NaN, infinite, or 10,000 times the
        untrained network's; see ``nnfit.train.divergence.Divergence``) raises ``DivergenceError``
        ("error"); with n_models > 1, "drop" keeps the models that did not diverge, renumbered,
        with a warning, and ``fit.settings["dropped"]`` names the others ("model 3 of 5").
    embed : "auto" gives each factor with more than 10 levels a learned embedding of
        min(50, (levels + 1) // 2) numbers instead of dummy columns; or a list of factors.
    unknown : for embedded factors, a level training never saw is an error ("error"), or
        "other": it gets the average of the learned level embeddings.
    Other options are those of ``Learner.fit``.

    >>> import nnfit as nf
    >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("body_mass_g ~ . - year", data=training, hidden=50, dropout=0.4,
    ...              epochs=20, seed=1, verbose=False)
    >>> fit.predict(testing).head(3).index.tolist()    # a Series in grams, aligned to the rows given
    [0, 4, 5]
    >>> fit.evaluate(testing)["r2"] > 0.7
    True
    >>> species = nf.mlp("species ~ bill_length_mm + flipper_length_mm", data=training, hidden=10,
    ...                  epochs=10, seed=1, verbose=False)
    >>> species.predict(testing.head(3)).tolist()      # the labels; type="prob" gives probabilities
    ['Adelie', 'Adelie', 'Adelie']
    """
    from .train import losses, metrics
    from .train import learner as learner_module
    from .train.data import row_weights

    sizes = check_architecture(hidden, activation, dropout)[0]  # before any work starts
    check_training(lr, weight_decay, epochs, batch_size, on_divergence)
    threshold = check_threshold(threshold)
    if _is_streamed(data):  # Parquet files, a pyarrow dataset or a polars LazyFrame: never all in memory
        prepared = _streamed(formula, data, scale, embed, unknown, valid, weights, class_weight, n_models)
        frame = weight_column = None
    else:
        frame = as_pandas(data)
        if isinstance(weights, str):  # a column of data, not a predictor
            if weights not in frame.columns:
                raise DataError(f"weights names the column {weights!r}, which the data does not have.")
            weight_column, frame = frame[weights], frame.drop(columns=[weights])
        else:
            weight_column = weights
        prepared = prepare(formula, frame, scale, embed=embed, unknown=unknown)
    design, task, n_outputs = prepared.design, prepared.task, prepared.n_outputs
    X, y = getattr(prepared, "X", None), getattr(prepared, "y", None)
    if threshold is not None and task != "binary":
        raise ArgumentError(f"threshold is for a two-level factor response; this model's task is {_TASK_NAMES[task]}.")
    sample_weight = _case_weights(weight_column, frame, getattr(prepared, "rows", None), weights)
    class_weight = _class_weight_codes(class_weight, design, task)
    valid, n_valid_left_out = _validation(valid, design, task, n_models)
    embeddings = [  # one row per level, and one more for "other"
        [len(levels) + (unknown == "other"), embedding_size(len(levels))] for levels in design.embedded_.values()
    ]
    if task == "regression":
        loss = "mse"
        tracked = [metrics.Rescaled(metrics.MAE(), design.response_center_, design.response_scale_)]
    else:
        loss = losses.BinaryLogitLoss() if task == "binary" else "cross_entropy"
        tracked = [metrics.Accuracy(threshold=0.5 if threshold is None else threshold)]  # the fit's decisions
    if check_n_models(n_models) > 1:
        import torch

        if embeddings:
            raise ArgumentError("embed is not supported with n_models > 1 yet; fit one model, or leave embed=None.")
        weight = row_weights(y, sample_weight, class_weight)
        rows = {}
        if not isinstance(valid, (type(None), float, int)):  # validation rows given: after the training rows
            n, m = len(X), len(valid[0])
            prepared = Prepared(design, task, n_outputs, torch.cat([X, valid[0]]), torch.cat([y, valid[1]]),
                                prepared.n_left_out, prepared.offset, prepared.rows)
            rows = {"train_rows": [torch.arange(n)] * n_models, "valid_rows": [torch.arange(n, n + m)] * n_models}
            if weight is not None:  # validation rows are scored unweighted
                weight = torch.cat([weight, torch.ones(m, dtype=weight.dtype)])
            valid = None
        many = fit_models(prepared, sizes, activation, [dropout] * n_models, optimizer, [lr] * n_models,
                         [weight_decay] * n_models, epochs, batch_size, valid, ensemble.seeds_for(seed, n_models),
                         device, threads, formula, on_divergence=on_divergence, callbacks=callbacks, weight=weight,
                         verbose=verbose, **rows)
        many.settings.update(_extra_settings(valid, n_valid_left_out, weights, class_weight, threshold, design))
        if rows:
            many.settings["valid"] = "data frame"
        return _keep_training(many, prepared, weighted=weight is not None) if valid is None and not rows else many
    opt_hparams = {"weight_decay": weight_decay}
    if lr is not None:
        opt_hparams["lr"] = lr
    learner = (
        learner_module.setup(MLP, loss=loss, optimizer=optimizer, metrics=tracked)
        .set_hparams(input_size=len(design.columns), hidden=sizes, output_size=n_outputs, activation=activation,
                     dropout=dropout, **({"embeddings": embeddings} if embeddings else {}))
        .set_opt_hparams(**opt_hparams)
    )
    learner.run_info = {"formula": repr(formula), "scale": repr(scale), "embed": repr(embed), "unknown": repr(unknown)}
    if not embeddings:  # the fused step has no embedding layer
        learner = learner_module.learner_for(learner, callbacks)  # closed-form gradients when nothing needs autograd
    if task == "binary" and (sample_weight is not None or class_weight is not None):
        # The closed-form step weights rows itself; the Learner still wraps the loss in
        # SampleWeighted (for validation, unweighted), which asks for a `reduction` that
        # BinaryLogitLoss does not have. Autograd would need a per-row BinaryLogitLoss.
        if not isinstance(learner, learner_module.FusedLearner):
            raise ArgumentError("weights and class_weight with a two-level response need the fast path: "
                                "no embed=, and callbacks that act only between epochs.")
        learner.loss.reduction = "mean"
    fitted = learner.fit(
        prepared.data if X is None else (X, y), epochs=epochs, batch_size=batch_size, valid_data=valid, callbacks=callbacks,
        device=device, verbose=verbose, seed=seed, threads=threads, sample_weight=sample_weight,
        class_weight=class_weight,
    )
    settings = {
        "formula": formula, "optimizer": optimizer_name(learner.optimizer), "lr": learner.opt_hparams.get("lr"),
        "weight_decay": weight_decay, "epochs": epochs, "batch_size": batch_size,
        "valid": valid if isinstance(valid, (type(None), float, int)) else "data frame", "seed": seed,
        "n_train": len(fitted.ctx.train_data), "n_valid": len(fitted.ctx.valid_data) if fitted.ctx.valid_data else 0,
        "n_left_out": prepared.n_left_out, "seconds": fitted.seconds,
        "threads": fitted.threads,
        **_extra_settings(valid, n_valid_left_out, weights, class_weight, threshold, design),
    }
    model = fitted.model.cpu()
    if embeddings and unknown == "other":
        _other_as_average(model)
    fit = intervals.on_validation(MLPFit(design, model, task, fitted.records, settings, fitted=fitted), fitted.ctx.valid_data)
    if valid is not None:
        return fit
    return _keep_training(fit, prepared, weighted=sample_weight is not None or class_weight is not None)


def _keep_training(fit: "MLPFit", prepared, weighted: bool) -> "MLPFit":
    """``fit``, holding the tensors it trained on when it is uncalibrated and CV+ could calibrate it
    later (``MLPFit._calibrate_on_training``): they are the ones training used, so nothing is copied."""
    X = getattr(prepared, "X", None)
    if (getattr(fit, "calibration_", None) is None and X is not None and fit.task == "regression"
            and fit.model.output_size == 1 and not weighted and prepared.offset is None and not fit.design.embedded_):
        fit._training = (X, prepared.y)
    return fit


def _is_streamed(data) -> bool:
    """Whether ``data`` is streamed (``nnfit.streaming.is_source``): a Parquet file, folder or list
    of files, a pyarrow dataset or a polars LazyFrame."""
    from .streaming import is_source

    return is_source(data)


def _streamed(formula, folder, scale, embed, unknown, valid, weights, class_weight, n_models):
    """nf.mlp's data streamed from Parquet (``nnfit.streaming``), or the error for what needs memory."""
    given = [name for name, value, default in (("valid as a fraction", valid if isinstance(valid, (int, float)) else None, None),
                                                ("weights", weights, None), ("class_weight", class_weight, None),
                                                ("n_models", n_models, 1)) if value != default]
    if given:
        raise ArgumentError(f"data is streamed, never all in memory; {given[0]} needs the rows in memory. "
                            "Read a sample with nf.read(), or give valid= a data frame of validation rows.")
    from .streaming import prepare as prepare_streamed

    return prepare_streamed(formula, folder, scale=scale, embed=embed, unknown=unknown)


def check_threshold(threshold):
    """A decision threshold: None (0.5) or a number strictly between 0 and 1.

    >>> from nnfit.mlpfit import check_threshold
    >>> check_threshold(0.3)
    0.3
    >>> check_threshold(1.5)
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: threshold must be a probability strictly between 0 and 1, not 1.5.
    """
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) or not 0 < threshold < 1:
        raise ArgumentError(f"threshold must be a probability strictly between 0 and 1, not {threshold!r}.")
    return float(threshold)


def _case_weights(given, frame, rows, weights):
    """One weight per training row (the rows the design kept), or None; a clear error otherwise."""
    if given is None:
        return None
    what = f"the weights column {weights!r}" if isinstance(weights, str) else "weights"
    try:
        values = np.asarray(given, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{what} must hold numbers, one per row of data.") from None
    if len(values) != len(frame):
        raise DataError(f"{what} has {len(values)} values, but data has {len(frame)} rows; give one per row.")
    if rows is not None:
        values = values[rows]
    if np.isnan(values).any():
        raise DataError(f"{what} is missing for {int(np.isnan(values).sum())} rows used for fitting; give every "
                        f"row a weight (0 leaves a row out).")
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise DataError(f"{what} must hold finite, non-negative numbers.")
    if not values.sum() > 0:
        raise DataError(f"{what} sums to zero; at least one row needs a positive weight.")
    return values


def _class_weight_codes(class_weight, design, task):
    """class_weight by level name, as the engine takes it: "balanced" or {code: weight}."""
    if class_weight is None:
        return None
    if task == "regression":
        raise ArgumentError("class_weight is for a factor response; for a numeric one, use weights=.")
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ArgumentError(f"class_weight must be 'balanced' or a dict {{level: weight}}, not {class_weight!r}.")
        return class_weight
    if not isinstance(class_weight, dict):
        raise ArgumentError(f"class_weight must be 'balanced' or a dict {{level: weight}}, not {class_weight!r}.")
    levels = [str(level) for level in design.levels]
    codes = {}
    for level, weight in class_weight.items():
        if str(level) not in levels:
            raise ArgumentError(f"class_weight names the level {level!r}, which the response does not have "
                                f"(levels: {', '.join(levels)}).")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (math.isfinite(weight) and weight >= 0):
            raise ArgumentError(f"class_weight[{level!r}] must be a finite number of at least 0, not {weight!r}.")
        codes[levels.index(str(level))] = float(weight)
    return codes


def _validation(valid, design, task, n_models):
    """valid= as the engine takes it: None, a fraction, or (X, y) tensors from a data frame encoded
    with the training design; and how many of its rows had a missing value."""
    import torch

    if valid is None or (isinstance(valid, (int, float)) and not isinstance(valid, bool)):
        return valid, 0
    if isinstance(valid, bool) or not (hasattr(valid, "columns") or is_polars(valid)):
        raise ArgumentError(f"valid must be a fraction of the training rows or a data frame of validation rows, "
                            f"not {type(valid).__name__}.")
    frame = as_pandas(valid)
    missing = [name for name in design.response if name not in frame.columns]
    if missing:
        raise DataError(f"valid needs the response: the validation data has no column {missing[0]!r}.")
    matrices = design.transform(frame, response=True)
    warn_left_out(matrices, len(frame))
    if not len(matrices.X):
        raise DataError("valid has no rows to score: every row has a missing value.")
    X = torch.as_tensor(matrices.inputs(), dtype=torch.float32)
    y = torch.as_tensor(matrices.y, dtype=torch.float32 if task == "regression" else torch.int64)
    return (X, y), int(matrices.n_left_out)


def _extra_settings(valid, n_valid_left_out, weights, class_weight, threshold, design) -> dict:
    """The settings of weights, validation rows and threshold that were given (none when not)."""
    extra = {}
    if n_valid_left_out:
        extra["n_valid_left_out"] = n_valid_left_out
    if weights is not None:
        extra["weights"] = weights if isinstance(weights, str) else "given"
    if class_weight is not None:
        extra["class_weight"] = (class_weight if isinstance(class_weight, str)
                                 else {str(design.levels[code]): w for code, w in class_weight.items()})
    if threshold is not None:
        extra["threshold"] = threshold
    return extra


def _other_as_average(model) -> None:
    """The "other" row (last) of each embedding becomes the mean of the levels' learned rows.

    Training never sees that row, so a level met only at prediction time is treated as an
    average level, not as a random vector.
    """
    import torch

    with torch.no_grad():
        for table in model.embed:
            table.weight[-1] = table.weight[:-1].mean(dim=0)


def check_training(lr, weight_decay, epochs, batch_size, on_divergence="error") -> None:
    """The training arguments of nf.mlp, cross_validate and grid, checked before any work starts.

    >>> from nnfit.mlpfit import check_training
    >>> check_training(lr=0.01, weight_decay=0.0, epochs=(5, 50), batch_size=None)
    >>> check_training(lr=-1, weight_decay=0.0, epochs=10, batch_size=32)
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: lr must be a finite number above 0, not -1.
    """
    from .train.divergence import check_on_divergence
    from .errors import check_positive_int, check_rate
    from .train.loop import epoch_range

    for rate in lr if isinstance(lr, (list, tuple)) else [lr]:
        check_rate("lr", rate, allow_none=True)
    for decay in weight_decay if isinstance(weight_decay, (list, tuple)) else [weight_decay]:
        check_rate("weight_decay", decay, allow_zero=True)
    epoch_range(epochs)
    check_positive_int("batch_size", batch_size, allow_none=True)
    check_on_divergence(on_divergence)


def fit_models(prepared, sizes, activation, dropouts, optimizer, lrs, weight_decays, epochs, batch_size, valid,
              seeds, device, threads, formula, train_rows=None, valid_rows=None, response_scale=None,
              names=None, on_divergence="error", keep_diverged=False, callbacks=None, weight=None,
              verbose=None, metrics=None) -> "MLPFit":
    """Train len(seeds) networks of one shape at once (an ensemble, folds or a grid's cell).

    The models train in the ordinary loop as one stacked module (``nnfit.train.many``): ``callbacks``
    work per model, ``weight`` (one per row of ``prepared``) weighs the rows' losses.

    Models that diverge raise ``DivergenceError`` naming them (``names``), or with
    ``on_divergence="drop"`` are left out (``keep_diverged``: left in the stack, for a caller
    that maps models to folds) and named in ``settings["dropped"]``, with a warning.

    >>> import nnfit as nf
    >>> from nnfit.mlpfit import fit_models, prepare
    >>> prepared = prepare("body_mass_g ~ flipper_length_mm", nf.datasets.load("penguins").dropna())
    >>> fit = fit_models(prepared, [4], "relu", [[0.0]] * 3, "rmsprop", [None] * 3, [0.0] * 3, 2, 32, None,
    ...                  [1, 2, 3], "cpu", 1, "body_mass_g ~ flipper_length_mm", verbose=False)
    >>> fit.n_models, fit.settings["n_train"]
    (3, 333)
    """
    import torch

    from .train.data import InMemory, split_valid
    from .train.learner import resolve_device
    from .train.loop import epoch_range

    min_epochs, max_epochs = epoch_range(epochs)
    check_training(lrs, weight_decays, epochs, batch_size, on_divergence)
    name = optimizer.lower() if isinstance(optimizer, str) else optimizer_name(optimizer)
    defaults = ensemble.OPTIMIZER_DEFAULTS.get(name, {})
    lrs = [defaults.get("lr") if lr is None else lr for lr in lrs]
    X, y = prepared.X, prepared.y
    generators = None
    if valid is not None and train_rows is None:
        # Every model validates on the rows model 0's seed holds out, as nf.mlp(seed=seeds[0], valid=)
        # would; each generator makes the same draw first, so shuffling continues as in a single fit.
        rows = InMemory(torch.arange(len(X)), y)
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        splits = [split_valid(rows, valid, g, stratify=prepared.task != "regression") for g in generators]
        train_rows, valid_rows = [splits[0][0].X] * len(seeds), [splits[0][1].X] * len(seeds)
    scale = response_scale
    if scale is None and prepared.task == "regression":
        scale = prepared.design.response_scale_
    from .train.checkpoints import describe_value

    description = {  # what AutoResume compares: the recipe of every model, and (below) the data
        "formula": repr(formula), "design": repr(prepared.design.columns), "task": prepared.task,
        "hidden": repr(list(sizes)), "activation": describe_value(activation), "dropout": describe_value(dropouts),
        "optimizer": name, "lr": describe_value(lrs), "weight_decay": describe_value(weight_decays),
        "seeds": repr(list(seeds)), "epochs": repr(epochs), "batch_size": repr(batch_size), "valid": repr(valid),
        "n_models": str(len(seeds)), "names": repr(names),
    }
    net, records, seconds, n_threads, diverged = ensemble.fit(
        X, y, prepared.task, prepared.n_outputs, sizes, activation, dropouts, name, lrs, weight_decays,
        max_epochs, batch_size, seeds, train_rows, valid_rows, scale,
        resolve_device(device), threads, generators, names=names, on_divergence=on_divergence,
        callbacks=list(callbacks or []), weight=weight, min_epochs=min_epochs, metrics=metrics,
        verbose=sys.stdout.isatty() if verbose is None else verbose, description=description,
    )
    names = names or [f"model {k + 1} of {len(seeds)}" for k in range(len(seeds))]
    dropped = {names[k]: str(error) for k, error in sorted(diverged.items())}
    if len(diverged) == len(seeds) and not keep_diverged:
        from .train.divergence import all_diverged_error

        raise all_diverged_error(diverged[k] for k in sorted(diverged))
    if diverged and not keep_diverged:
        kept = [k for k in range(len(seeds)) if k not in diverged]
        net, records = ensemble.keep_models(net, records, kept)
        seeds = [seeds[k] for k in kept]
        lrs, weight_decays = [lrs[k] for k in kept], [weight_decays[k] for k in kept]
        warn(
            f"{len(diverged)} of {len(names)} models diverged and were dropped ({', '.join(dropped)}); the "
            f"{len(kept)} others are kept, numbered 1 to {len(kept)}. fit.settings['dropped'] says why.",
        )
    settings = {
        "formula": formula, "optimizer": name, "lr": lrs[0] if len(set(lrs)) == 1 else lrs,
        "weight_decay": weight_decays[0] if len(set(weight_decays)) == 1 else weight_decays, "epochs": epochs,
        "batch_size": batch_size, "valid": valid, "seed": seeds[0], "n_models": len(seeds),
        "n_train": int(len(X) if train_rows is None else len(train_rows[0])),
        "n_valid": 0 if valid_rows is None else int(len(valid_rows[0])), "n_left_out": prepared.n_left_out,
        "seconds": seconds, "threads": n_threads,
    }
    if dropped:
        settings["dropped"] = dropped
    return intervals.on_validation(MLPFit(prepared.design, net, prepared.task, records, settings), X, y, valid_rows)


@dataclass
class Prepared:
    """A formula's training data as tensors: standardized X, and y as floats or class codes.

    ``prepare`` makes one.

    >>> import nnfit as nf
    >>> from nnfit.mlpfit import prepare
    >>> prepared = prepare("species ~ bill_length_mm + flipper_length_mm", nf.datasets.load("penguins").dropna())
    >>> prepared.task, prepared.n_outputs, tuple(prepared.X.shape), prepared.y.dtype
    ('multiclass', 3, (333, 2), torch.int64)
    """

    design: Design
    task: str
    n_outputs: int
    X: "torch.Tensor"
    y: "torch.Tensor"
    n_left_out: int
    offset: np.ndarray | None = None  # the formula's offset() per row (added to predictions)
    rows: np.ndarray | None = None  # which rows of the data were used (a boolean mask)


def prepare(formula: str, data, scale=True, embed=None, unknown="error") -> Prepared:
    """Fit the Design on ``data`` and encode it (rows with a missing value left out, with a warning).

    >>> import nnfit as nf
    >>> from nnfit.mlpfit import prepare
    >>> prepared = prepare("body_mass_g ~ flipper_length_mm + sex", nf.datasets.load("penguins").dropna())
    >>> prepared.design.columns, prepared.task, prepared.n_left_out   # no intercept: the network has biases
    (['flipper_length_mm', 'sexmale'], 'regression', 0)
    """
    import torch

    design = Design(formula, scale=scale, scale_response=True, intercept=False, embed=embed, unknown=unknown)
    matrices = design.fit_transform(data, dtype=np.float32)  # X as the tensor holds it: no float64 copy
    warn_left_out(matrices, len(matrices.rows))
    task = task_of(design)
    if task == "regression":
        _warn_if_classes(design, matrices.y)
    n_outputs = len(design.levels) if task == "multiclass" else 1 if task == "binary" else len(design.response_columns)
    X = torch.as_tensor(matrices.inputs(), dtype=torch.float32)
    y = torch.as_tensor(matrices.y, dtype=torch.float32 if task == "regression" else torch.int64)
    return Prepared(design, task, n_outputs, X, y, int(matrices.n_left_out), matrices.offset, matrices.rows)


def _warn_if_classes(design: Design, y: np.ndarray) -> None:
    """Warn when a numeric response looks like class codes (a few whole numbers, as 0/1 or 1..5)."""
    if len(design.response_columns) != 1 or not len(y):
        return
    with np.errstate(all="ignore"):
        values = np.unique(design.unscale_response(y).round(9))
    if not 2 <= len(values) <= 10 or not np.all(np.isfinite(values) & (values == np.round(values))):
        return
    name = design.response_columns[0]
    shown = ", ".join(f"{v:g}" for v in values)
    warn(
        f"The response {name!r} is numeric with only {len(values)} distinct whole-number values ({shown}), so it "
        f"is fitted as a regression (mean squared error). To fit a classifier, make it a factor in the formula: "
        f"'factor({name}) ~ ...'.",
    )


def task_of(design: Design) -> str:
    """'regression' for a numeric response, 'binary' for a two-level factor, else 'multiclass'.

    >>> import nnfit as nf
    >>> from nnfit.mlpfit import task_of
    >>> design = nf.Design("sex ~ body_mass_g").fit(nf.datasets.load("penguins").dropna())
    >>> task_of(design)
    'binary'
    """
    if design.response_kind == "numeric":
        return "regression"
    return "binary" if len(design.levels) == 2 else "multiclass"


def optimizer_name(optimizer) -> str:
    """The name a fit's settings give a torch optimizer class: 'rmsprop', 'adam', ...

    >>> import torch
    >>> from nnfit.mlpfit import optimizer_name
    >>> optimizer_name(torch.optim.RMSprop), optimizer_name(torch.optim.AdamW)
    ('rmsprop', 'adamw')
    """
    from .train.optimizers import name_of

    return name_of(optimizer)


_TASK_NAMES = {"regression": "regression", "binary": "binary classification", "multiclass": "classification"}


class MLPFit(History):
    """A network fitted by ``nf.mlp``: predict, evaluate, coef, plot, save, print.

    With ``n_models=K`` it holds K networks of one shape (an ensemble): predictions are their
    mean (for a classifier, the mean probabilities); ``type="all"`` gives every model's.

    >>> import os, tempfile
    >>> import nnfit as nf
    >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=training, hidden=5, epochs=10,
    ...              seed=1, verbose=False)
    >>> fit                                            # R's print(fit)
    nnfit MLP (regression): body_mass_g ~ flipper_length_mm + sex
      f(X) = beta_0 + sum_{k=1}^{K} beta_k g(w_k0 + sum_{l=1}^{p} w_kl X_l)
        K = 5 hidden units, g = ReLU, g(z) = max(0, z), p = 2 predictors
      21 parameters; rmsprop, batch size 32, 10 epochs
      trained on 266 rows
      last epoch: train mae ... (body_mass_g units)
    >>> scores = fit.evaluate(testing)
    >>> sorted(scores), scores.n
    (['mae', 'r2', 'rmse'], 67)
    >>> fit.coef()["term"].head(3).tolist()            # every weight, in the course's notation
    ['w^(1)_{1,0}', 'w^(1)_{1,1}', 'w^(1)_{1,2}']
    >>> path = os.path.join(tempfile.mkdtemp(), "mass.nnfit")
    >>> fit.save(path)
    >>> nf.load(path).predict(testing).equals(fit.predict(testing))
    True

    Prediction intervals with a stated coverage come from rows the fit held out (``valid=``,
    or ``fit.calibrate``); see ``nnfit.intervals``. An ensemble of three networks, its
    conformal intervals, and its spread across models (their disagreement, not an interval):

    >>> ensemble = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=training, hidden=5,
    ...                   epochs=10, valid=0.25, seed=1, verbose=False, n_models=3)
    >>> ensemble.predict(testing, type="interval", level=0.95).columns.tolist()
    ['fit', 'lower', 'upper']
    >>> ensemble.predict(testing, type="spread").columns.tolist()
    ['mean', 'sd', 'lower', 'upper']
    """

    def __init__(self, design: Design, model, task: str, history: list, settings: dict, fitted=None):
        self.design = design
        self.model = model.eval()
        self.task = task
        self.history = list(history)
        self.settings = settings
        self.fitted = fitted

    @property
    def records(self) -> list:
        """The training history's records (``History`` reads them): ``history``."""
        return self.history

    @property
    def n_models(self) -> int:
        return getattr(self.model, "n_models", 1)

    def models(self) -> list:
        """The fitted networks as ordinary ``MLP`` modules (one for a single fit)."""
        return [self.model.unstack(k) for k in range(self.n_models)] if self.n_models > 1 else [self.model]

    # -------------------------------------------------------------- predictions
    def _outputs(self, X: np.ndarray) -> np.ndarray:
        """Network outputs (K, n, outputs), in float64, for standardized rows X.

        Rows go through the network in blocks of one size (``prediction.predict_in_blocks``), so
        a row's prediction does not depend on the rows that come with it.
        """
        import torch

        from .train.prediction import predict_in_blocks

        self.model.eval()
        if not len(X):
            return np.zeros((self.n_models, 0, self.model.output_size))
        with torch.no_grad():
            inputs = torch.as_tensor(X, dtype=torch.float32)
            stacked = isinstance(self.model, StackedMLP)  # (K, n, outputs), K = 1 included (a grid cell)
            out = predict_in_blocks(self.model, inputs, dim=1 if stacked else 0, in_dim=1 if inputs.dim() == 3 else 0)
            out = out.double().numpy()
        return out if out.ndim == 3 else out[None]

    def _responses(self, out: np.ndarray, offset=None) -> np.ndarray:
        """(K, n, k) predictions in the response's units (plus the formula's ``offset``, per
        row), or (K, n, levels) probabilities."""
        if self.task == "regression":
            return self.design.unscale_response(out, offset)
        return np.stack([probabilities(o, self.task) for o in out])

    def predict(self, data, type: str | None = None, level: float = 0.95, out=None):
        """Predictions for every row of ``data``, aligned to its index (NaN where a predictor is missing).

        ``data`` streamed from Parquet (a file, folder or list of files, a pyarrow dataset or a
        polars LazyFrame; see docs/streaming.md) is predicted chunk by chunk into the Parquet
        file ``out`` (which must not exist yet), and the path comes back.

        Regression: a Series in the response's units (a DataFrame for several responses);
        ``type="response"`` (the default) and ``"link"`` are the same, as for a gaussian glm.
        ``type="interval"``: conformal prediction intervals (``nnfit.intervals``), a DataFrame of
        ``fit``, ``lower`` and ``upper`` that holds a new response with probability at least
        ``level`` (over new rows and calibration rows, if they are exchangeable). They need
        calibration: ``valid=`` at fit time does it, or ``fit.calibrate(held_out)``, or
        ``fit.calibrate(training, method="cv+")``; a regression fit with none of these
        calibrates itself the first time it is asked, by CV+ on the rows it trained on (10
        refits, with a warning), when it still holds them (fitted in memory by ``nf.mlp``,
        without weights, embeddings or offset; a loaded fit does not).

        Classification, as R's ``predict``:

        - ``type="class"`` (the default): a categorical Series of labels. For two levels, the
          second where its probability is above the fit's threshold (``fit.threshold``, 0.5
          unless ``nf.mlp(threshold=)`` or ``fit.threshold = ...`` set it).
        - ``type="prob"``: a DataFrame with one column of probabilities per level.
        - ``type="response"``: two levels: a Series of the probability of the second level, as
          ``predict(glm, type="response")``; more levels: the probabilities, as ``"prob"`` (the
          response scale of a multinomial model).
        - ``type="link"``: the logits: two levels, a Series of the log-odds of the second level;
          more levels, a DataFrame with one column per level (softmax gives the probabilities).
        - ``type="set"``: conformal prediction sets, a DataFrame of booleans (pandas' nullable
          "boolean", <NA> where a predictor is missing) with one column per level, True where
          the level is in the row's set. The set holds the true level with probability at
          least ``level`` (marginal coverage: on average over rows, not for each row); it is
          calibrated as intervals are, on the score 1 - p(true level).

        Ensembles: the mean over models (of probabilities; ``"link"`` the mean logit);
        ``type="all"`` gives each model's prediction (one column per model); intervals and sets
        are conformal around the mean. For regression ``type="spread"`` gives mean, sd and the
        2.5% and 97.5% quantiles across models: how much the models disagree, NOT a prediction
        interval (it leaves out the noise in the response). A polars frame gives polars results
        (labels as an Enum in level order, null where a predictor is missing).

        >>> import nnfit as nf
        >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
        >>> fit = nf.mlp("species ~ bill_length_mm + flipper_length_mm", data=training, hidden=10,
        ...              epochs=10, seed=1, verbose=False)
        >>> fit.predict(testing.head(2)).tolist()
        ['Adelie', 'Adelie']
        >>> probs = fit.predict(testing.head(2), type="prob")
        >>> probs.columns.tolist(), probs.sum(axis=1).round(6).tolist()
        (['Adelie', 'Chinstrap', 'Gentoo'], [1.0, 1.0])
        >>> sex = nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=training, hidden=[], epochs=10,
        ...              seed=1, verbose=False)
        >>> p = sex.predict(testing.head(3), type="response")      # P(sex == "male"), as glm
        >>> p.name, bool(((p > 0) & (p < 1)).all())
        ('sex', True)
        >>> import numpy as np
        >>> link = sex.predict(testing.head(3), type="link")       # its log-odds
        >>> np.allclose(1 / (1 + np.exp(-link)), p)
        True
        >>> mass = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=training, hidden=5, epochs=20,
        ...               valid=0.25, seed=1, verbose=False)  # calibrated on its 66 validation rows
        >>> bounds = mass.predict(testing.head(3), type="interval", level=0.9)
        >>> bounds.columns.tolist(), bool((bounds["lower"] < bounds["fit"]).all())
        (['fit', 'lower', 'upper'], True)
        >>> species = nf.mlp("species ~ bill_length_mm + flipper_length_mm", data=training, hidden=10,
        ...                  epochs=10, valid=0.25, seed=1, verbose=False)
        >>> species.predict(testing.head(2), type="set", level=0.9).columns.tolist()
        ['Adelie', 'Chinstrap', 'Gentoo']
        """
        import pandas as pd

        if out is not None or _is_streamed(data):
            return self._predict_streamed(data, type, level, out)
        if type == "interval":
            self._calibrate_on_training()
        if is_polars(data):
            return _as_polars(self.predict(as_pandas(data), type=type, level=level))
        if type is None:
            type = "response" if self.task == "regression" else "class"
        choices = ["response", "link"] + (["class", "prob", "set"] if self.task != "regression" else ["interval"])
        if self.n_models > 1:
            choices += ["all"] + (["spread"] if self.task == "regression" else [])
        if type not in choices:
            raise ArgumentError(f"type must be one of {', '.join(map(repr, choices))} for this model, not {type!r}.")
        frame = as_pandas(data)
        matrices = self.design.transform(frame, response=False)
        outputs = self._outputs(matrices.inputs())

        def full(array, columns):  # rows with a missing predictor stay NaN
            out = np.full((len(frame), array.shape[1]), np.nan)
            out[matrices.rows] = array
            return pd.DataFrame(out, index=frame.index, columns=columns)

        levels = [str(level) for level in self.design.levels] if self.task != "regression" else None
        if type == "link" and self.task != "regression":
            mean = outputs.mean(axis=0)
            if self.task == "binary":
                return full(mean, [self.design.response[0]]).iloc[:, 0]
            return full(mean, levels)
        values = self._responses(outputs, matrices.offset)
        models = [f"model_{k}" for k in range(1, self.n_models + 1)]
        if type == "all" and self.task == "regression":
            if values.shape[2] == 1:
                return full(values[:, :, 0].T, models)
            return pd.concat({m: full(v, self.design.response_columns) for m, v in zip(models, values)}, axis=1)
        if type == "all":
            return pd.DataFrame({m: self._labels(frame, matrices.rows, v) for m, v in zip(models, values)})
        if type == "interval":
            return intervals.interval(self, values, matrices, frame.index, level)
        if type == "set":
            return intervals.prediction_set(self, values, matrices.rows, frame.index, level)
        if type == "spread":
            return intervals.spread(values, frame.index, matrices.rows)
        mean = values.mean(axis=0)
        if self.task == "regression":
            result = full(mean, self.design.response_columns)
            return result.iloc[:, 0] if mean.shape[1] == 1 else result
        if type == "response" and self.task == "binary":
            return full(mean[:, 1:], [self.design.response[0]]).iloc[:, 0]
        if type in ("prob", "response"):
            return full(mean, levels)
        return self._labels(frame, matrices.rows, mean)

    def _predict_streamed(self, data, type, level, out):
        """predict for streamed data: written to the Parquet file ``out`` (``nnfit.streaming``)."""
        from .streaming import predict_to_parquet

        if not _is_streamed(data):
            raise ArgumentError("out= writes the predictions of streamed data (Parquet, a pyarrow dataset, a polars "
                                "LazyFrame); for a data frame, "
                                "predict returns them (write them with .to_parquet(path)).")
        if out is None:
            raise ArgumentError("data is streamed, so its predictions need not fit in memory: give "
                                "out= the path of a new .parquet file to write them to.")
        return predict_to_parquet(self, data, out, type=type, level=level)

    def calibrate(self, data, method: str = "split", folds: int = 10) -> "MLPFit":
        """Calibrate the fit's prediction intervals and sets (``nnfit.intervals``); return the fit.

        ``method="split"``: ``data`` are held-out rows with the response, rows the fit did not
        train on; their scores (absolute residuals in the response's units, or 1 - p(true
        level) for a classifier) replace any calibration the fit had, e.g. from ``valid=``.
        ``method="cv+"`` (a numeric response): ``data`` are the training rows; the fit's recipe
        (formula, network, optimizer, lr, epochs, batch size, seed) is refitted on ``folds``
        folds, all at once, and each row is scored by the fold network that did not see it
        (Barber et al. 2021), so no rows are given up. The result is ``fit.calibration_``, and
        ``fit.save`` keeps it.

        >>> import nnfit as nf
        >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
        >>> training, held_out = nf.split(training, prop=0.75, seed=2)
        >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=training, hidden=5, epochs=20,
        ...              seed=1, verbose=False)
        >>> fit.calibrate(held_out).calibration_
        <nnfit Calibration> split conformal on 66 held-out rows
        >>> fit.calibrate(training, method="cv+", folds=5).calibration_
        <nnfit Calibration> CV+ on 200 rows in 5 folds
        >>> fit.predict(testing, type="interval", level=0.9).columns.tolist()
        ['fit', 'lower', 'upper']
        """
        if is_polars(data):
            data = as_pandas(data)
        self.__dict__.pop("_training", None)
        return intervals.calibrate(self, data, method=method, folds=folds, refit=self._refit)

    def _refit(self, X, y, *args, **options):
        """The recipe's K-model fit on the folds' tensors (CV+ calls it)."""
        return fit_models(Prepared(self.design, self.task, 1, X, y, 0), *args, **options)

    def _calibrate_on_training(self) -> None:
        """An uncalibrated fit asked for intervals calibrates itself once, by CV+ on the rows it
        trained on, when nf.mlp left it those rows (a regression without weights, embeddings
        or offset, fitted in memory without valid=): with a warning that says so."""
        training = self.__dict__.pop("_training", None)
        if training is None or getattr(self, "calibration_", None) is not None:
            return
        X, y = (tensor.numpy() for tensor in training)
        warn(
            f"This fit has no calibration, so type='interval' calibrates it now by CV+ on the {len(X)} rows it "
            f"trained on: {CV_FOLDS} folds, the network refitted {CV_FOLDS} times, once (fit.calibration_ keeps it). "
            "Fit with valid=, or call fit.calibrate(), to choose how.")
        matrices = Matrices(X, y, np.ones(len(X), dtype=bool), 0, {})
        with choice(False):  # here, in this process: a predict under torchrun may run on one rank only
            intervals.calibrate_matrices(self, matrices, method="cv+", folds=CV_FOLDS, refit=self._refit)

    @property
    def threshold(self) -> float | None:
        """A binary classifier's decision threshold on the probability of the second level (None: 0.5).

        Set it to change what ``predict(type="class")`` and ``evaluate`` decide; ``choose_threshold``
        picks one.

        >>> import nnfit as nf
        >>> training = nf.datasets.load("penguins").dropna()
        >>> sex = nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=training, hidden=[], epochs=5,
        ...              seed=1, verbose=False, threshold=0.4)
        >>> sex.threshold
        0.4
        >>> sex.threshold = 0.6
        >>> sex.settings["threshold"]
        0.6
        """
        return self.settings.get("threshold")

    @threshold.setter
    def threshold(self, value) -> None:
        value = check_threshold(value)
        if value is not None and self.task != "binary":
            raise ArgumentError(f"threshold is for a two-level factor response; this model's task is {_TASK_NAMES[self.task]}.")
        if value is None:
            self.settings.pop("threshold", None)
        else:
            self.settings["threshold"] = value

    def choose_threshold(self, data, target: str = "balanced_accuracy", sensitivity=None, specificity=None) -> float:
        """A decision threshold for a binary classifier, picked on the rows of ``data`` (validation
        rows, not the test rows you report on). Returns it; set ``fit.threshold`` to use it.

        ``target="balanced_accuracy"`` (or ``"accuracy"``, ``"f1"``) takes the threshold that
        scores best on those rows (the midpoint between neighbouring predicted probabilities);
        ``sensitivity=0.9`` instead takes the largest threshold whose sensitivity (recall of the
        second level) is at least 0.9, and ``specificity=0.9`` the smallest whose specificity is.

        >>> import nnfit as nf
        >>> training, validation = nf.split(nf.datasets.load("penguins").dropna(), prop=0.7, seed=1)
        >>> sex = nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=training, hidden=[], epochs=20,
        ...              seed=1, verbose=False)
        >>> sex.threshold = sex.choose_threshold(validation, sensitivity=0.95)
        >>> sex.evaluate(validation)["sensitivity"] >= 0.95
        True
        """
        if self.task != "binary":
            raise ArgumentError(f"choose_threshold is for a two-level factor response; this model's task is "
                                f"{_TASK_NAMES[self.task]}.")
        targets = ("balanced_accuracy", "accuracy", "f1")
        if target not in targets:
            raise ArgumentError(f"target must be one of {', '.join(map(repr, targets))}, not {target!r}.")
        if sensitivity is not None and specificity is not None:
            raise ArgumentError("give sensitivity= or specificity=, not both.")
        for name, value in (("sensitivity", sensitivity), ("specificity", specificity)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1):
                raise ArgumentError(f"{name} must be a number above 0 and at most 1, not {value!r}.")
        probs, truth, _ = self._scored(data)
        p = probs[:, 1]
        positive = truth == 1
        if positive.all() or not positive.any():
            raise DataError("choose_threshold needs rows of both levels in data.")
        distinct = np.unique(p)
        cuts = np.concatenate([[distinct[0] / 2], (distinct[1:] + distinct[:-1]) / 2,
                               [(distinct[-1] + 1) / 2]])  # every distinct decision, as a threshold
        above = p[None, :] > cuts[:, None]
        tp = (above & positive).sum(axis=1)
        fp = (above & ~positive).sum(axis=1)
        sens, spec = tp / positive.sum(), 1 - fp / (~positive).sum()
        if sensitivity is not None:
            return float(cuts[np.flatnonzero(sens >= sensitivity - 1e-12).max()])
        if specificity is not None:
            return float(cuts[np.flatnonzero(spec >= specificity - 1e-12).min()])
        scores = {
            "balanced_accuracy": (sens + spec) / 2,
            "accuracy": (tp + (~positive).sum() - fp) / len(p),
            "f1": 2 * tp / np.maximum(tp + fp + positive.sum(), 1),
        }[target]
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        return float(cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]])  # of equals, the nearest to 0.5

    def _labels(self, frame, rows, probs):
        import pandas as pd

        codes = np.full(len(frame), -1, dtype=np.int64)
        if self.task == "binary":  # the second level above the threshold, as nnfit.train.metrics decides
            codes[rows] = probs[:, 1] > (self.threshold if self.threshold is not None else 0.5)
        else:
            codes[rows] = probs.argmax(axis=1)
        labels = pd.Categorical.from_codes(codes, categories=self.design.levels)
        return pd.Series(labels, index=frame.index, name=self.design.response[0])

    def _scored(self, data):
        """(K, n, ...) predictions' mean, the truth, and the Matrices of the rows of ``data`` that can be scored."""
        frame = as_pandas(data)
        if not all(name in frame.columns for name in self.design.response):
            missing = [n for n in self.design.response if n not in frame.columns]
            raise DataError(f"evaluate needs the response: the data has no column {missing[0]!r}.")
        matrices = self.design.transform(frame, response=True)
        warn_left_out(matrices, len(frame))
        if not len(matrices.X):
            raise DataError("No rows to score: every row has a missing value.")
        values = self._responses(self._outputs(matrices.inputs()), matrices.offset)
        truth = self.design.unscale_response(matrices.y, matrices.offset) if self.task == "regression" else matrices.y
        return values.mean(axis=0), truth, (values, matrices)

    def evaluate(self, data, by_model: bool = False):
        """Metrics on the rows of ``data`` it can score, in original units or labels.

        Regression: mae, rmse, r2. Classification (``classification_scores``): accuracy,
        balanced_accuracy, log_loss, auc, brier and, for two levels, sensitivity and specificity
        of the second level at the fit's threshold; the returned Scores also holds
        ``.confusion`` and ``.by_class``. The number of rows left out for a missing value is in
        ``.n_left_out`` (and a warning). An ensemble is scored on its mean prediction;
        ``by_model=True`` gives a DataFrame with one row per model. Data streamed from Parquet
        (see ``predict``) is scored chunk by chunk, to the same numbers.

        >>> import nnfit as nf
        >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
        >>> ensemble = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=training, hidden=5,
        ...                   epochs=10, seed=1, verbose=False, n_models=3)
        >>> sorted(ensemble.evaluate(testing))            # the mean prediction's mae, rmse, r2
        ['mae', 'r2', 'rmse']
        >>> ensemble.evaluate(testing, by_model=True).columns.tolist()
        ['model', 'mae', 'rmse', 'r2']
        >>> species = nf.mlp("species ~ bill_length_mm + flipper_length_mm", data=training, hidden=10,
        ...                  epochs=10, seed=1, verbose=False)
        >>> scores = species.evaluate(testing)
        >>> list(scores)
        ['accuracy', 'balanced_accuracy', 'log_loss', 'auc', 'brier']
        >>> scores.confusion.columns.tolist(), scores.by_class.columns.tolist()
        (['Adelie', 'Chinstrap', 'Gentoo'], ['sensitivity', 'specificity', 'precision', 'recall', 'f1', 'support'])
        """
        import pandas as pd

        if _is_streamed(data):  # Parquet: read in chunks (nnfit.streaming), never all rows at once
            from .streaming import evaluate_streamed

            if by_model:
                raise ArgumentError("by_model=True is not available for streamed data; read the "
                                    "rows with nf.read() to score each model.")
            return evaluate_streamed(self, data)
        mean, truth, (values, matrices) = self._scored(data)
        if by_model:
            if self.task == "regression":
                rows = [dict(model=k + 1, **score(v, truth, self.task)) for k, v in enumerate(values)]
            else:
                rows = [dict(model=k + 1, **classification_scores(v, truth, self.design.levels, self.threshold))
                        for k, v in enumerate(values)]
            return pd.DataFrame(rows)
        if self.task == "regression":
            return Scores(score(mean, truth, self.task), n=len(matrices.X), n_left_out=matrices.n_left_out)
        scores = classification_scores(mean, truth, self.design.levels, self.threshold)
        scores.n_left_out = matrices.n_left_out
        return scores

    # -------------------------------------------------------------- the network
    def coef(self, scale=None):
        """Every weight, named in the course's notation, as a DataFrame.

        Hidden layer h: ``w^(h)_{k,j}`` from input j (0 is the bias) to unit k. Output layer:
        ``beta_{t,m}`` from hidden unit m (0 is the bias) to outcome t (``beta_m`` with one
        outcome, as in f(X) = beta_0 + sum_k beta_k A_k). Ensembles add a ``model`` column.
        An embedded factor adds ``E(name)_{level,d}``, coordinate d of a level's vector, and
        its d coordinates ``E(name)_d`` are inputs of the first layer after the columns of X.

        ``scale="data"`` (``hidden=[]`` only): the linear or logistic model's coefficients in the
        data's units instead, named as R's model.matrix names them, "(Intercept)" first, equal
        to lm / glm / nnet::multinom once the network has converged
        (``nnfit.summaries.coefficients_in_data_units``).
        """
        if scale == "data":
            from .summaries import coefficients_in_data_units

            return coefficients_in_data_units(self)
        if scale is not None:
            raise ArgumentError(f"scale must be None (the network's weights) or 'data' (hidden=[]: the coefficients "
                                f"in the data's units), not {scale!r}.")
        import pandas as pd

        frames = []
        for k, model in enumerate(self.models(), start=1):
            rows, inputs = _embedding_rows(model, self.design)
            for h, linear in enumerate(model.hidden, start=1):
                rows += _layer_rows(linear, f"hidden {h}", lambda u, j, h=h: f"w^({h})_{{{u},{j}}}", inputs)
                inputs = [f"A^({h})_{u}" for u in range(1, linear.out_features + 1)]
            single = model.output_size == 1
            name = (lambda t, m: f"beta_{m}") if single else (lambda t, m: f"beta_{{{t},{m}}}")
            rows += _layer_rows(model.output, "output", name, inputs)
            frame = pd.DataFrame(rows, columns=["term", "layer", "unit", "input", "from", "value"])
            if self.n_models > 1:
                frame.insert(0, "model", k)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def summary(self, data=None):
        """R's summary(): the call, the rows, the network, training time, metrics in eval mode and,
        for hidden=[], the coefficient table in the data's units (``nnfit.summaries.summary``)."""
        from .summaries import summary

        return summary(self, data=data)

    def importance(self, data, repeats=5, seed=None, metric=None):
        """Permutation importance of each column the formula uses (``nnfit.inspection.importance``);
        ``.plot()`` draws it."""
        from .inspection import importance

        return importance(self, data, repeats=repeats, seed=seed, metric=metric)

    def partial_dependence(self, data, column, grid=20, ice=False):
        """Mean prediction as ``column`` moves over a grid, with ICE curves optionally
        (``nnfit.inspection.partial_dependence``); ``.plot()`` draws it."""
        from .inspection import partial_dependence

        return partial_dependence(self, data, column, grid=grid, ice=ice)

    def report(self, path, data=None, **options):
        """Write one self-contained HTML page about this fit to ``path`` (``nnfit.report.write``):
        summary, metrics, plots and, given ``data`` (held-out rows), importance."""
        from .report import write

        return write(self, path, data=data, **options)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def plot(self):
        """Learning curves (loss and metrics by epoch).

        >>> import nnfit as nf
        >>> penguins = nf.datasets.load("penguins").dropna()
        >>> fit = nf.mlp("species ~ bill_length_mm + flipper_length_mm", data=penguins, hidden=10,
        ...              epochs=3, valid=0.2, seed=1, verbose=False)
        >>> figure = fit.plot()                        # a matplotlib Figure; nf.plot.save writes it
        >>> [axis.get_title() for axis in figure.axes]
        ['loss', 'accuracy']
        """
        from . import plot

        return plot.learning_curves(self, title=self.settings["formula"])

    def save(self, path, key=None) -> None:
        """One file: weights as safetensors, the design, architecture and history as JSON.

        With ``key`` (bytes or a str your team shares) the file is signed with HMAC-SHA256, and
        ``nf.load(path, key=key)`` refuses any file that was changed after it was signed.

        >>> import os, tempfile
        >>> import nnfit as nf
        >>> penguins = nf.datasets.load("penguins").dropna()
        >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=penguins, hidden=5, epochs=2,
        ...              seed=1, verbose=False)
        >>> path = os.path.join(tempfile.mkdtemp(), "mass.nnfit")
        >>> fit.save(path, key="our team's secret")   # e.g. key=os.environ["NNFIT_KEY"]
        >>> nf.load(path, key="our team's secret").settings["formula"]
        'body_mass_g ~ flipper_length_mm'
        """
        from . import files

        metadata = {
            "kind": "mlp",
            "task": self.task,
            "design": self.design.to_dict(),
            "architecture": self.model.architecture(),
            "settings": self.settings,
            "history": self.history,
        }
        tensors = self.model.state_dict()
        calibration = getattr(self, "calibration_", None)
        if calibration is not None:  # conformal scores as JSON, CV+ fold networks as calibration.* tensors
            metadata["calibration"], fold_tensors = calibration.to_saved()
            tensors = {**tensors, **fold_tensors}
        files.write(path, tensors, metadata, key=key)

    @classmethod
    def from_saved(cls, tensors: dict, metadata: dict, path=None) -> "MLPFit":
        """The fit an ``nf.mlp`` model file holds (``nf.load`` calls this after reading the file).

        Every size in the metadata is checked against the tensors (``nnfit.schema.check_mlp``)
        and the design against the network before anything is built, so a file that lies is a
        ModelFileError naming the field, never a network larger than the file.
        """
        import torch

        from . import schema
        from .errors import ModelFileError
        from .modules import ACTIVATIONS

        where = f"{str(path)!r}" if path is not None else "The model file"

        def refuse(detail):
            return ModelFileError(f"{where} is not a valid nnfit model file: {detail}.")

        def mismatch(design, task: str, architecture: dict):
            """What in a loaded design disagrees with the network it was saved with (None if nothing)."""
            p = len(design.columns)
            if p != architecture["input_size"]:
                return f"design.columns has {p} names, but architecture.input_size is {architecture['input_size']}"
            for field, values in (("center", design.center_), ("scale_values", design.scale_)):
                if len(values) != p:
                    return f"design.{field} has {len(values)} values for the {p} columns of design.columns"
            embeddings = architecture.get("embeddings", [])
            if len(design.embedded_) != len(embeddings):
                return f"design.embedded has {len(design.embedded_)} factors, but architecture.embeddings has {len(embeddings)}"
            for k, ((factor, levels), (rows, _)) in enumerate(zip(design.embedded_.items(), embeddings)):
                if rows not in (len(levels), len(levels) + 1):  # one row per level, and one for "other"
                    return (f"architecture.embeddings[{k}][0] is {rows} rows, but the embedded factor {factor!r} "
                            f"has {len(levels)} levels")
            outputs = architecture["output_size"]
            if task == "regression":
                if design.response_kind != "numeric":
                    return "task is 'regression', but the design's response is a factor"
                columns = design.response_columns
                if len(columns) != outputs:
                    return f"design.response_columns has {len(columns)} names, but architecture.output_size is {outputs}"
                for field, values in (("response_center", design.response_center_), ("response_scale", design.response_scale_)):
                    if len(values) != len(columns):
                        return f"design.{field} has {len(values)} values for the {len(columns)} response columns"
                return None
            if design.response_kind != "factor":
                return f"task is {task!r}, but the design's response is numeric"
            levels = len(design.levels)
            if task == "binary" and (levels != 2 or outputs != 1):
                return f"task is 'binary', but design.levels has {levels} levels and architecture.output_size is {outputs}"
            if task == "multiclass" and levels != outputs:
                return f"design.levels has {levels} levels, but architecture.output_size is {outputs}"
            return None

        try:
            architecture = schema.check_mlp(metadata, {name: tuple(t.shape) for name, t in tensors.items()})
        except schema.Refusal as refusal:
            raise refuse(refusal) from None
        for i, name in enumerate(architecture["activation"]):
            if name not in ACTIVATIONS:
                raise refuse(f"architecture.activation[{i}] is {schema.short(name)}, not one of {', '.join(ACTIVATIONS)}")
        try:
            design = Design.from_dict(metadata["design"])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise ModelFileError(f"{where} is not a valid nnfit model file: {error}") from None
        problem = mismatch(design, metadata["task"], architecture)
        if problem:
            raise refuse(problem)
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                raise refuse(f"the tensor {name!r} holds NaN or infinite values (a fit that diverged, or a damaged file)")
        rates = tensors.get("dropout")
        if "n_models" in architecture and not torch.equal(rates, torch.tensor(architecture["dropout"], dtype=rates.dtype)):
            raise refuse("the tensor 'dropout' does not hold the rates of architecture.dropout")
        try:
            model = StackedMLP.from_architecture(architecture) if "n_models" in architecture else MLP(**architecture)
            model.load_state_dict({n: t for n, t in tensors.items() if not n.startswith(intervals.PREFIX)})
            calibration = intervals.from_saved(metadata.get("calibration"), tensors)
        except (KeyError, TypeError, RuntimeError, ValueError) as error:
            raise refuse(error) from None
        history = [tuple(row) for row in metadata["history"]]
        fit = cls(design, model, metadata["task"], history, metadata["settings"])
        if calibration is not None:
            fit.calibration_ = calibration
        return fit

    # -------------------------------------------------------------- printing
    def notation(self) -> str:
        """The network in the course's notation, with its sizes.

        >>> import nnfit as nf
        >>> penguins = nf.datasets.load("penguins").dropna()
        >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=penguins, hidden=5, epochs=1,
        ...              seed=1, verbose=False)
        >>> print(fit.notation())
        f(X) = beta_0 + sum_{k=1}^{K} beta_k g(w_k0 + sum_{l=1}^{p} w_kl X_l)
          K = 5 hidden units, g = ReLU, g(z) = max(0, z), p = 2 predictors
        """
        sizes = self.model.sizes
        p = len(self.design.columns)
        activations = self.model.activations
        lines = []
        if not sizes:
            lines.append("f_t(X) = beta_t0 + sum_{j=1}^{p} beta_tj X_j   (a linear model: no hidden layer)")
        elif len(sizes) == 1:
            lines.append("f(X) = beta_0 + sum_{k=1}^{K} beta_k g(w_k0 + sum_{l=1}^{p} w_kl X_l)")
            lines.append(f"  K = {sizes[0]} hidden units, g = {ACTIVATION_FORMULAS[activations[0]]}, p = {p} predictors")
        else:
            letters = "klmnopqrs"
            previous, count = "j", "p"
            for h, size in enumerate(sizes, start=1):
                unit = letters[(h - 1) % len(letters)]
                source = "X_j" if h == 1 else f"A^({h - 1})_{previous}"
                g = ACTIVATION_FORMULAS[activations[h - 1]].split(",")[0]
                lines.append(
                    f"A^({h})_{unit} = g(w^({h})_{unit}0 + sum_{{{previous}=1}}^{{{count}}} w^({h})_{unit}{previous} {source})"
                    f"   {unit} = 1..{size}, g = {g}"
                )
                previous, count = unit, str(size)
            lines.append(f"f_t(X) = beta_t0 + sum_{{{previous}=1}}^{{{count}}} beta_t{previous} A^({len(sizes)})_{previous}")
            lines.append(f"  p = {p} predictors, hidden sizes {sizes}")
        outputs = self.model.output_size
        if self.task == "multiclass":
            lines.append(f"  T = {outputs} outputs, softmax over the levels {', '.join(map(str, self.design.levels))}")
        elif self.task == "binary":
            lines.append(f"  one output: the log-odds of {self.design.levels[1]!r} (against {self.design.levels[0]!r})")
        elif outputs > 1:
            lines.append(f"  T = {outputs} outputs: {', '.join(self.design.response_columns)}")
        for (name, levels), (_, size) in zip(self.design.embedded_.items(), getattr(self.model, "embeddings", [])):
            lines.append(f"  embedded factor {name}: {len(levels)} levels, each a learned vector E({name}) of "
                         f"{size} numbers, input beside X")
        dropouts = self.model.dropouts if self.n_models == 1 else sorted({tuple(d) for d in self.model.dropouts})
        if self.n_models == 1 and any(dropouts):
            lines.append(f"  dropout after each hidden layer: {_rates(dropouts)}")
        elif self.n_models > 1:
            shown = ", ".join(_rates(d) for d in dropouts)
            lines.append(f"  an ensemble of {self.n_models} such networks (own initialization, shuffling, dropout); "
                         f"dropout per layer: {shown}")
        return "\n".join(lines)

    def __repr__(self):
        s = self.settings
        task = _TASK_NAMES[self.task]
        lr = f", lr {s['lr']}" if s.get("lr") is not None else ""
        lines = [
            f"nnfit MLP ({task}): {s['formula']}",
            "  " + self.notation().replace("\n", "\n  "),
            f"  {self.n_parameters:,} parameters; {s['optimizer']}{lr}, batch size {s['batch_size']}, "
            f"{self.epochs_run} epochs",
            f"  trained on {s['n_train']} rows"
            + (f", {s['n_valid']} held out for validation" if s.get("n_valid") else "")
            + (f" ({s['n_left_out']} left out for missing values)" if s.get("n_left_out") else ""),
        ]
        weighted = [f"case weights {s['weights']!r}" if s.get("weights") not in (None, "given") else
                    "case weights given" if s.get("weights") else "",
                    f"class weights {s['class_weight']}" if s.get("class_weight") else "",
                    f"decision threshold {s['threshold']:g} on P({self.design.levels[1]!r})" if s.get("threshold") else ""]
        if any(weighted):
            lines.append("  " + "; ".join(text for text in weighted if text))
        calibration = getattr(self, "calibration_", None)
        if calibration is not None:
            lines.append(f"  prediction intervals: {calibration.describe()}")
        last = self.last_metrics()
        if last:
            unit = f" ({self.design.response_columns[0]} units)" if self.task == "regression" and len(self.design.response_columns) == 1 else ""
            lines.append("  last epoch: " + _format_last(last) + unit)
        return "\n".join(lines)

    def _title(self) -> str:
        return f"nnfit MLP ({_TASK_NAMES[self.task]})"

    def _facts(self) -> list:
        """What the notebook view shows (``History._repr_html_``)."""
        s = self.settings
        facts = [
            ("formula", s["formula"]),
            ("network", self.notation()),
            ("parameters", f"{self.n_parameters:,}"),
            ("optimizer", s["optimizer"] + (f", lr {s['lr']}" if s.get("lr") is not None else "")),
            ("batch size", s["batch_size"]),
            ("epochs", self.epochs_run),
            ("training rows", s["n_train"]),
            ("left out (missing values)", s.get("n_left_out") or 0),
        ] + [(name, s[key]) for name, key in (("case weights", "weights"), ("class weights", "class_weight"),
                                              ("decision threshold", "threshold")) if s.get(key) is not None]
        if getattr(self, "calibration_", None) is not None:
            facts.append(("prediction intervals", self.calibration_.describe()))
        return facts


def _embedding_rows(model, design):
    """coef rows of each embedding table, and the names of the first layer's inputs."""
    rows, inputs = [], list(design.columns)
    for (name, levels), (n_rows, size), table in zip(design.embedded_.items(), getattr(model, "embeddings", []),
                                                     getattr(model, "embed", [])):
        weight = table.weight.detach().double().numpy()
        labels = [str(level) for level in levels] + ["(other)"] * (n_rows - len(levels))
        for j, label in enumerate(labels):
            for d in range(size):
                term = f"E({name})_{{{label},{d + 1}}}"
                rows.append((term, f"embedding {name}", d + 1, j + 1, label, float(weight[j, d])))
        inputs += [f"E({name})_{d}" for d in range(1, size + 1)]
    return rows, inputs


def _layer_rows(linear, layer, name, inputs):
    weight = linear.weight.detach().double().numpy()
    bias = linear.bias.detach().double().numpy()
    rows = []
    for k in range(weight.shape[0]):
        rows.append((name(k + 1, 0), layer, k + 1, 0, "(bias)", float(bias[k])))
        for j in range(weight.shape[1]):
            rows.append((name(k + 1, j + 1), layer, k + 1, j + 1, inputs[j], float(weight[k, j])))
    return rows


def _as_polars(result):
    """A pandas prediction as a polars Series or DataFrame; labels become an Enum in level order."""
    import pandas as pd
    import polars as pl

    converted = pl.from_pandas(result)
    if isinstance(result, pd.Series) and isinstance(result.dtype, pd.CategoricalDtype):
        levels = list(result.cat.categories)
        if all(isinstance(level, str) for level in levels):
            converted = converted.cast(pl.String).cast(pl.Enum(levels))
    return converted


def _rates(rates) -> str:
    """Dropout rates as given, not as float32 stores them: [0.4, 0.3], not [0.4000000059604645, ...]."""
    return "[" + ", ".join(f"{float(r):.4g}" for r in rates) + "]"


def _format_last(last: dict) -> str:
    parts = []
    for split, values in last.items():
        shown = {k: v for k, v in values.items() if k != "loss" or len(values) == 1}
        parts.append(f"{split} " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items() if not math.isnan(v)))
    return "; ".join(parts)

"""The formula one-liner: ``nf.mlp("body_mass_g ~ . - year", data=training, hidden=50)``.

It composes the three layers below it: a ``Design`` (formula, levels, scaling learned on the
training data), an ``MLP`` module, and the training loop. Predictions come back as pandas
objects in the response's own units or labels, aligned to the rows given.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .design import Design, as_pandas, warn_left_out
from .errors import ArgumentError, DataError
from .modules import ACTIVATION_FORMULAS, MLP, check_architecture


def mlp(formula: str, data, hidden=50, activation="relu", dropout=0.0, optimizer="rmsprop", lr=None,
        epochs=100, batch_size=32, valid=None, seed=None, weight_decay=0.0, callbacks=None,
        device="auto", verbose=None, threads=None, scale=True):
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
    valid : a fraction of the training rows held out for validation metrics.
    Other options are those of ``Learner.fit``.

    >>> import nnfit as nf
    >>> training, testing = nf.split(nf.datasets.load("penguins"), prop=0.8, seed=1)
    >>> fit = nf.mlp("body_mass_g ~ . - year", data=training, hidden=50, dropout=0.4,
    ...              epochs=20, seed=1, verbose=False)  # doctest: +SKIP
    """
    from . import learner as learner_module
    from . import losses, metrics

    sizes = check_architecture(hidden, activation, dropout)[0]  # before any work starts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Design warns once, below, about missing rows
        design = Design(formula, scale=scale, scale_response=True, intercept=False).fit(data)
    frame = as_pandas(data)
    matrices = design.transform(frame, response=True)
    warn_left_out(matrices, len(frame))
    task = _task(design)
    n_outputs = len(design.levels) if task == "multiclass" else 1 if task == "binary" else len(design.response_columns)

    import torch

    X = torch.as_tensor(matrices.X, dtype=torch.float32)
    if task == "regression":
        y = torch.as_tensor(matrices.y, dtype=torch.float32)
        loss = "mse"
        tracked = [metrics.Rescaled(metrics.MAE(), design.response_center_, design.response_scale_)]
    else:
        y = torch.as_tensor(matrices.y, dtype=torch.int64)
        loss = losses.BinaryLogitLoss() if task == "binary" else "cross_entropy"
        tracked = [metrics.Accuracy()]
    opt_hparams = {"weight_decay": weight_decay} if weight_decay else {}
    if lr is not None:
        opt_hparams["lr"] = lr
    learner = (
        learner_module.setup(MLP, loss=loss, optimizer=optimizer, metrics=tracked)
        .set_hparams(input_size=X.shape[1], hidden=sizes, output_size=n_outputs, activation=activation, dropout=dropout)
        .set_opt_hparams(**opt_hparams)
    )
    fitted = learner.fit(
        (X, y), epochs=epochs, batch_size=batch_size, valid_data=valid, callbacks=callbacks,
        device=device, verbose=verbose, seed=seed, threads=threads,
    )
    settings = {
        "formula": formula, "optimizer": _optimizer_name(learner.optimizer), "lr": learner.opt_hparams.get("lr"),
        "weight_decay": weight_decay, "epochs": epochs, "batch_size": batch_size, "valid": valid, "seed": seed,
        "n_train": int(len(X)), "n_left_out": int(matrices.n_left_out), "seconds": fitted.seconds,
        "threads": fitted.threads,
    }
    return MLPFit(design, fitted.model.cpu(), task, fitted.records, settings, fitted=fitted)


def _task(design: Design) -> str:
    if design.response_kind == "numeric":
        return "regression"
    return "binary" if len(design.levels) == 2 else "multiclass"


def _optimizer_name(optimizer) -> str:
    from .optimizers import name_of

    return name_of(optimizer)


class Scores(dict):
    """Evaluation metrics (a dict) that also knows how many rows it scored and left out."""

    def __init__(self, values: dict, n: int, n_left_out: int):
        super().__init__(values)
        self.n = n
        self.n_left_out = n_left_out

    def __repr__(self):
        text = ", ".join(f"{k}: {v:.4g}" for k, v in self.items())
        extra = f", {self.n_left_out} left out (missing values)" if self.n_left_out else ""
        return f"{{{text}}} ({self.n} rows scored{extra})"


class MLPFit:
    """A network fitted by ``nf.mlp``: predict, evaluate, coef, plot, save, print."""

    def __init__(self, design: Design, model: MLP, task: str, history: list, settings: dict, fitted=None):
        self.design = design
        self.model = model.eval()
        self.task = task
        self.history = list(history)
        self.settings = settings
        self.fitted = fitted

    # -------------------------------------------------------------- predictions
    def _outputs(self, data):
        """Raw network outputs for the complete rows of ``data``, and the row mask."""
        import torch

        frame = as_pandas(data)
        matrices = self.design.transform(frame, response=False)
        X = torch.as_tensor(matrices.X, dtype=torch.float32)
        self.model.eval()
        with torch.no_grad():
            out = self.model(X).double().numpy() if len(X) else np.zeros((0, self.model.output_size))
        return frame, out, matrices.rows

    def predict(self, data, type: str = "response"):
        """Predictions for every row of ``data``, aligned to its index (NaN where a predictor is missing).

        Regression: a Series in the response's units (a DataFrame for several responses).
        Classification: ``type="response"`` or ``"class"`` gives a categorical Series of labels;
        ``type="prob"`` a DataFrame with one column of probabilities per level.
        """
        import pandas as pd

        choices = ("response", "class", "prob") if self.task != "regression" else ("response",)
        if type not in choices:
            raise ArgumentError(f"type must be one of {', '.join(map(repr, choices))} for this model, not {type!r}.")
        frame, out, rows = self._outputs(data)
        if self.task == "regression":
            values = self.design.unscale_response(out)
            full = np.full((len(frame), values.shape[1]), np.nan)
            full[rows] = values
            if full.shape[1] == 1:
                return pd.Series(full[:, 0], index=frame.index, name=self.design.response_columns[0])
            return pd.DataFrame(full, index=frame.index, columns=self.design.response_columns)
        probs = _probabilities(out, self.task)
        levels = self.design.levels
        if type == "prob":
            full = np.full((len(frame), len(levels)), np.nan)
            full[rows] = probs
            return pd.DataFrame(full, index=frame.index, columns=[str(level) for level in levels])
        codes = np.full(len(frame), -1, dtype=np.int64)
        codes[rows] = probs.argmax(axis=1)
        labels = pd.Categorical.from_codes(codes, categories=levels)
        return pd.Series(labels, index=frame.index, name=self.design.response[0])

    def evaluate(self, data) -> Scores:
        """Metrics on the rows of ``data`` it can score, in original units or labels.

        Regression: mae, rmse, r2. Classification: accuracy, log_loss. The number of rows left
        out for a missing value is in ``.n_left_out`` (and a warning).
        """
        import torch

        frame = as_pandas(data)
        if not all(name in frame.columns for name in self.design.response):
            missing = [n for n in self.design.response if n not in frame.columns]
            raise DataError(f"evaluate needs the response: the data has no column {missing[0]!r}.")
        matrices = self.design.transform(frame, response=True)
        warn_left_out(matrices, len(frame))
        if not len(matrices.X):
            raise DataError("No rows to score: every row has a missing value.")
        with torch.no_grad():
            out = self.model(torch.as_tensor(matrices.X, dtype=torch.float32)).double().numpy()
        if self.task == "regression":
            pred = self.design.unscale_response(out)
            truth = self.design.unscale_response(matrices.y)
            errors = pred - truth
            total = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
            r2 = 1 - (errors**2).sum(axis=0) / np.where(total > 0, total, np.nan)
            values = {
                "mae": float(np.abs(errors).mean()),
                "rmse": float(np.sqrt((errors**2).mean())),
                "r2": float(np.mean(r2)),
            }
        else:
            probs = _probabilities(out, self.task)
            codes = matrices.y
            eps = np.finfo(np.float64).eps
            picked = np.clip(probs[np.arange(len(codes)), codes], eps, 1.0)
            values = {
                "accuracy": float((probs.argmax(axis=1) == codes).mean()),
                "log_loss": float(-np.log(picked).mean()),
            }
        return Scores(values, n=len(matrices.X), n_left_out=matrices.n_left_out)

    # -------------------------------------------------------------- the network
    def coef(self):
        """Every weight, named in the course's notation, as a DataFrame.

        Hidden layer h: ``w^(h)_{k,j}`` from input j (0 is the bias) to unit k. Output layer:
        ``beta_{t,m}`` from hidden unit m (0 is the bias) to outcome t (``beta_m`` with one
        outcome, as in f(X) = beta_0 + sum_k beta_k A_k).
        """
        import pandas as pd

        rows = []
        inputs = list(self.design.columns)
        for h, linear in enumerate(self.model.hidden, start=1):
            rows += _layer_rows(linear, f"hidden {h}", lambda k, j, h=h: f"w^({h})_{{{k},{j}}}", inputs)
            inputs = [f"A^({h})_{k}" for k in range(1, linear.out_features + 1)]
        single = self.model.output_size == 1
        rows += _layer_rows(
            self.model.output, "output", (lambda t, m: f"beta_{m}") if single else (lambda t, m: f"beta_{{{t},{m}}}"), inputs
        )
        return pd.DataFrame(rows, columns=["term", "layer", "unit", "input", "from", "value"])

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def metrics(self):
        """Training history as a long DataFrame: set, metric, epoch, value."""
        import pandas as pd

        return pd.DataFrame(self.history, columns=["set", "metric", "epoch", "value"])

    def plot(self):
        """Learning curves (loss and metrics by epoch)."""
        from . import plot

        return plot.learning_curves(self.metrics, title=self.settings["formula"])

    def save(self, path) -> None:
        """One file: weights as safetensors, the design, architecture and history as JSON."""
        from . import files

        metadata = {
            "kind": "mlp",
            "task": self.task,
            "design": self.design.to_dict(),
            "architecture": self.model.architecture(),
            "settings": self.settings,
            "history": self.history,
        }
        files.write(path, self.model.state_dict(), metadata)

    @classmethod
    def from_saved(cls, tensors: dict, metadata: dict) -> "MLPFit":
        from .errors import ModelFileError

        try:
            design = Design.from_dict(metadata["design"])
            model = MLP(**metadata["architecture"])
            model.load_state_dict(tensors)
        except (KeyError, TypeError, RuntimeError, ValueError) as error:
            raise ModelFileError(f"The model file's contents are inconsistent: {error}") from None
        history = [tuple(row) for row in metadata["history"]]
        return cls(design, model, metadata["task"], history, metadata["settings"])

    # -------------------------------------------------------------- printing
    def notation(self) -> str:
        """The network in the course's notation, with its sizes."""
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
        if any(self.model.dropouts):
            lines.append(f"  dropout after each hidden layer: {self.model.dropouts}")
        return "\n".join(lines)

    def __repr__(self):
        s = self.settings
        task = {"regression": "regression", "binary": "binary classification", "multiclass": "classification"}[self.task]
        lr = f", lr {s['lr']}" if s.get("lr") is not None else ""
        lines = [
            f"nnfit MLP ({task}): {s['formula']}",
            "  " + self.notation().replace("\n", "\n  "),
            f"  {self.n_parameters:,} parameters; {s['optimizer']}{lr}, batch size {s['batch_size']}, "
            f"{_epochs_run(self.history)} epochs",
            f"  trained on {s['n_train']} rows"
            + (f" ({s['n_left_out']} left out for missing values)" if s.get("n_left_out") else ""),
        ]
        last = _last_epoch(self.history)
        if last:
            unit = f" ({self.design.response_columns[0]} units)" if self.task == "regression" and len(self.design.response_columns) == 1 else ""
            lines.append("  last epoch: " + _format_last(last) + unit)
        return "\n".join(lines)


def _layer_rows(linear, layer, name, inputs):
    weight = linear.weight.detach().double().numpy()
    bias = linear.bias.detach().double().numpy()
    rows = []
    for k in range(weight.shape[0]):
        rows.append((name(k + 1, 0), layer, k + 1, 0, "(bias)", float(bias[k])))
        for j in range(weight.shape[1]):
            rows.append((name(k + 1, j + 1), layer, k + 1, j + 1, inputs[j], float(weight[k, j])))
    return rows


def _probabilities(out: np.ndarray, task: str) -> np.ndarray:
    if task == "binary":
        p = 1.0 / (1.0 + np.exp(-out.reshape(-1)))
        return np.column_stack([1 - p, p])
    shifted = out - out.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _epochs_run(history) -> int:
    return max((row[2] for row in history), default=0)


def _last_epoch(history) -> dict:
    last = _epochs_run(history)
    out = {}
    for split, name, epoch, value in history:
        if epoch == last:
            out.setdefault(split, {})[name] = value
    return out


def _format_last(last: dict) -> str:
    parts = []
    for split, values in last.items():
        shown = {k: v for k, v in values.items() if k != "loss" or len(values) == 1}
        parts.append(f"{split} " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items() if not math.isnan(v)))
    return "; ".join(parts)

"""luz's workflow: ``setup(module, loss, optimizer, metrics) -> set_hparams -> fit -> predict``.

>>> import torch, nnfit as nf
>>> from torch import nn
>>> X = torch.randn(64, 3); y = X @ torch.tensor([[1.0], [2.0], [-1.0]])
>>> fitted = nf.setup(nn.Linear, loss=nn.MSELoss(), optimizer="adam").set_hparams(
...     in_features=3, out_features=1).set_opt_hparams(lr=0.05).fit((X, y), epochs=20, seed=1, verbose=False)
>>> fitted.predict(X).shape
torch.Size([64, 1])
"""

from __future__ import annotations

import copy
import sys
import time

import torch
from torch import nn

from . import callbacks as cb
from . import losses, metrics as metrics_module, optimizers, threads as threads_module
from .data import InMemory, as_data, split_valid
from .errors import ArgumentError, ArgumentTypeError, TrainingError
from .loop import Context, run


def setup(module, loss=None, optimizer="adam", metrics=None) -> "Learner":
    """Describe how to train ``module``: its loss, optimizer and metrics (luz's ``setup``).

    ``module`` is an ``nn.Module`` class (built at fit time from ``set_hparams``) or an instance
    (copied, so each fit starts from it). ``loss`` is a loss module, function or name ('mse',
    'cross_entropy', 'bce'); without one, the module's own ``loss(pred, target)`` method is
    used. ``optimizer`` is a torch.optim class or a name ('sgd', 'rmsprop', 'adam', 'adamw').
    """
    return Learner(module, loss=loss, optimizer=optimizer, metrics=metrics)


class Learner:
    """A module with its loss, optimizer, metrics and hyperparameters, ready to ``fit``."""

    def __init__(self, module, loss=None, optimizer="adam", metrics=None):
        if not (isinstance(module, nn.Module) or (isinstance(module, type) and issubclass(module, nn.Module))):
            raise ArgumentTypeError(f"setup takes an nn.Module class or instance, not {module!r}.")
        self.module = module
        if loss is None and not hasattr(module, "loss"):
            raise ArgumentError("setup needs a loss (e.g. nn.MSELoss() or 'mse'), or a module with a loss() method.")
        self.loss = losses.resolve(loss) if loss is not None else None
        self.optimizer = optimizers.resolve(optimizer)
        self.metrics = [metrics_module.resolve(m) for m in (metrics or [])]
        self.hparams = {}
        self.opt_hparams = {}

    def set_hparams(self, **hparams) -> "Learner":
        """Arguments for the module class when fit builds it (luz's ``set_hparams``)."""
        self.hparams.update(hparams)
        return self

    def set_opt_hparams(self, **opt_hparams) -> "Learner":
        """Arguments for the optimizer, e.g. ``lr=0.01`` (luz's ``set_opt_hparams``)."""
        self.opt_hparams.update(opt_hparams)
        return self

    def build(self) -> nn.Module:
        """A fresh module: the class built with the hparams, or a copy of the instance."""
        if isinstance(self.module, nn.Module):
            return copy.deepcopy(self.module)
        try:
            return self.module(**self.hparams)
        except TypeError as error:
            raise ArgumentError(
                f"Cannot build {self.module.__name__} with set_hparams({_kwargs(self.hparams)}): {error}"
            ) from None

    def optimizers_for(self, model) -> dict:
        """{name: optimizer}; a module may define ``set_optimizers(**opt_hparams)`` for several."""
        if hasattr(model, "set_optimizers"):
            made = model.set_optimizers(**self.opt_hparams)
            return dict(made) if isinstance(made, dict) else {"opt": made}
        return {"opt": self.optimizer(model.parameters(), **self.opt_hparams)}

    def fit(self, data, epochs=10, batch_size=32, valid_data=None, callbacks=None, device="auto",
            verbose=None, seed=None, threads=None, drop_last=False, accumulate=1, dataloader_options=None):
        """Train and return a ``Fitted`` model (luz's ``fit``).

        ``data``: (X, y) tensors or arrays, a Dataset or a DataLoader. ``epochs``: a number, or
        (min, max) with early stopping. ``batch_size=None`` is full-batch gradient descent.
        ``valid_data``: a fraction of ``data``, (X, y), a Dataset or a DataLoader. ``device``:
        "auto" picks cuda, then mps, then cpu. ``verbose`` defaults to showing progress on a
        terminal. ``seed`` makes the initialization, shuffling and dropout reproducible.
        ``threads``: CPU threads (default: one for small networks, all cores for large ones).
        """
        min_epochs, max_epochs = _epochs(epochs)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ArgumentError(f"batch_size must be a positive whole number or None, not {batch_size!r}.")
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ArgumentError(f"accumulate must be a positive whole number, not {accumulate!r}.")
        device = resolve_device(device)
        callbacks = list(callbacks or [])
        if verbose is None:
            verbose = sys.stdout.isatty()
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        train = as_data(data, batch_size, True, generator, drop_last, dataloader_options)
        valid = self._valid(valid_data, train, batch_size, generator, dataloader_options)
        if valid is not None and valid[0] is not None:
            train, valid = valid
        else:
            valid = None if valid is None else valid[1]

        began = time.perf_counter()
        with torch.random.fork_rng(devices=_rng_devices(device), enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            model = self.build().to(device)
            loss_fn = self.loss if self.loss is not None else model.loss
            if isinstance(loss_fn, nn.Module):
                loss_fn = loss_fn.to(device)
            n_threads = threads if threads is not None else threads_module.choose(model, batch_size, len(train), device)
            with threads_module.using(n_threads):
                ctx = Context(
                    model, loss_fn, self.optimizers_for(model), train.to(device),
                    None if valid is None else valid.to(device), max_epochs, min_epochs, batch_size,
                    [copy.deepcopy(m) for m in self.metrics], [copy.deepcopy(m) for m in self.metrics],
                    device, generator, drop_last, accumulate,
                )
                all_callbacks = [cb.MetricsRecorder()] + ([cb.Progress()] if verbose else []) + callbacks
                run(ctx, all_callbacks)
        return Fitted(self, ctx, seconds=time.perf_counter() - began, threads=n_threads, callbacks=callbacks)

    def _valid(self, valid_data, train, batch_size, generator, options):
        """(train, valid) when valid_data is a fraction of train, else (None, valid) or None."""
        if valid_data is None:
            return None
        if isinstance(valid_data, float) or (isinstance(valid_data, int) and not isinstance(valid_data, bool)):
            if not isinstance(train, InMemory):
                raise ArgumentError("valid_data as a fraction needs in-memory (X, y) data; pass a Dataset or DataLoader instead.")
            return split_valid(train, float(valid_data), generator, stratify=True)
        return None, as_data(valid_data, batch_size, False, None, False, options)

    def __repr__(self):
        name = self.module.__name__ if isinstance(self.module, type) else type(self.module).__name__
        metrics = ", ".join(type(m).__name__ for m in self.metrics) or "none"
        return (
            f"<nnfit Learner> {name}({_kwargs(self.hparams)})\n"
            f"  loss: {self.loss!r}, optimizer: {optimizers.name_of(self.optimizer)}({_kwargs(self.opt_hparams)}), "
            f"metrics: {metrics}"
        )


class Evaluation:
    """Loss and metrics of a fitted model on some data: ``.metrics`` is a plain dict."""

    def __init__(self, metrics: dict, n: int):
        self.metrics = metrics
        self.n = n

    def __repr__(self):
        values = ", ".join(f"{k}: {v:.4g}" for k, v in self.metrics.items())
        return f"<nnfit Evaluation> {self.n} rows; {values}"


class Fitted:
    """A trained module with its history: predict, evaluate, plot, save (luz's fitted object)."""

    def __init__(self, learner: Learner, ctx: Context, seconds: float, threads: int, callbacks=()):
        self.learner = learner
        self.model = ctx.model
        self.ctx = ctx
        self.records = list(ctx.records)
        self.seconds = seconds
        self.epoch_seconds = list(ctx.epoch_seconds)
        self.threads = threads
        self.callbacks = list(callbacks)
        self.device = ctx.device
        self.epochs_run = len(ctx.epoch_seconds)

    @property
    def metrics(self):
        """Training history as a long DataFrame: set, metric, epoch, value."""
        import pandas as pd

        return pd.DataFrame(self.records, columns=["set", "metric", "epoch", "value"])

    def last_metrics(self) -> dict:
        """{set: {metric: value}} of the last epoch."""
        out = {}
        for split, name, epoch, value in self.records:
            if epoch == self.epochs_run:
                out.setdefault(split, {})[name] = value
        return out

    @torch.no_grad()
    def predict(self, data, batch_size: int = 4096) -> torch.Tensor:
        """Predictions for X (a tensor, array, (X,) tuple, Dataset or DataLoader), in eval mode.

        The result is on the CPU; ``batch_size`` only bounds memory.
        """
        self.model.eval()
        source = as_data(data, batch_size, False).to(self.device)
        custom = getattr(self.model, "predict", None)
        forward = custom if callable(custom) else self.model
        outputs = []
        for x, _ in source.batches(batch_size, shuffle=False):
            try:
                outputs.append(forward(x))
            except Exception as error:
                raise TrainingError(f"{type(self.model).__name__} failed while predicting: {type(error).__name__}: {error}") from error
        return torch.cat(outputs).cpu()

    @torch.no_grad()
    def evaluate(self, data, batch_size: int = 4096) -> Evaluation:
        """Loss and metrics on (X, y), a Dataset or a DataLoader, as an ``Evaluation``."""
        self.model.eval()
        source = as_data(data, batch_size, False).to(self.device)
        recorder = cb.MetricsRecorder()
        ctx = self.ctx
        metrics = [copy.deepcopy(m) for m in self.learner.metrics]
        recorder._begin(ctx, metrics)
        state = (ctx.pred, ctx.target, ctx.loss, ctx.iter)
        n = 0
        for ctx.iter, (x, ctx.target) in enumerate(source.batches(batch_size, shuffle=False)):
            if ctx.target is None:
                raise ArgumentError("evaluate needs targets: pass (X, y).")
            ctx.pred = self.model(x)
            ctx.loss = ctx.loss_fn(ctx.pred, ctx.target)
            recorder._update(ctx, metrics)
            n += len(x)
        values = recorder._compute(ctx, metrics)
        ctx.pred, ctx.target, ctx.loss, ctx.iter = state
        return Evaluation(values, n)

    def plot(self):
        """Learning curves: one panel per metric, training and validation by epoch."""
        from . import plot

        return plot.learning_curves(self.metrics)

    def save(self, path):
        """Save the weights (safetensors) and a description of the module into one file."""
        from . import files

        files.save_module(path, self)

    def __repr__(self):
        name = type(self.model).__name__
        per_epoch = self.seconds / max(self.epochs_run, 1)
        lines = [
            f"<nnfit Fitted> {name}, {sum(p.numel() for p in self.model.parameters()):,} parameters",
            f"  trained {self.epochs_run} epochs in {self.seconds:.2f} s ({per_epoch * 1000:.1f} ms per epoch) "
            f"on {self.device}, {self.threads} thread(s)",
            f"  last epoch: {cb.format_records(self.last_metrics())}",
            "  module: " + repr(self.model).replace("\n", "\n  "),
        ]
        return "\n".join(lines)


def resolve_device(device) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; anything else as torch.device reads it."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ArgumentError(f"Unknown device {device!r}: {error}") from None


def _rng_devices(device):
    return [device.index or 0] if device.type == "cuda" else []


def _epochs(epochs):
    if isinstance(epochs, (tuple, list)):
        if len(epochs) != 2 or not all(_positive_int(e) for e in epochs):
            raise ArgumentError(f"epochs as a pair must be (min, max) positive whole numbers, not {epochs!r}.")
        if epochs[0] > epochs[1]:
            raise ArgumentError(f"epochs=(min, max) needs min <= max; got {tuple(epochs)!r}.")
        return int(epochs[0]), int(epochs[1])
    if not _positive_int(epochs):
        raise ArgumentError(f"epochs must be a positive whole number, not {epochs!r}.")
    return int(epochs), int(epochs)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _kwargs(values: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())

"""Callbacks: behaviour that runs at named moments of the training loop, as in luz.

Subclass ``Callback`` and define any of the hooks in ``HOOKS``; each receives the loop's
context ``ctx`` (model, optimizers, epoch, iter, input, target, pred, loss, ...). Hooks that no
callback defines are never called. ``weight`` orders callbacks (lower runs first).

>>> import nnfit as nf
>>> class Shout(nf.callbacks.Callback):
...     def on_epoch_end(self, ctx):
...         print("epoch", ctx.epoch, "done")
"""

from __future__ import annotations

import math
import sys
import time

import torch

from .errors import ArgumentError, ArgumentTypeError, TrainingError

HOOKS = (
    "on_fit_begin",
    "on_epoch_begin",
    "on_train_begin",
    "on_train_batch_begin",
    "on_train_batch_after_pred",
    "on_train_batch_after_loss",
    "on_train_batch_before_backward",
    "on_train_batch_before_step",
    "on_train_batch_after_step",
    "on_train_batch_end",
    "on_train_end",
    "on_valid_begin",
    "on_valid_batch_begin",
    "on_valid_batch_after_pred",
    "on_valid_batch_after_loss",
    "on_valid_batch_end",
    "on_valid_end",
    "on_epoch_end",
    "on_early_stopping",
    "on_fit_end",
)


class Callback:
    """Base class of callbacks. Override hooks; keep state in ``state_dict`` for checkpoints."""

    weight = 0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self):
        return f"{type(self).__name__}()"


for _hook in HOOKS:
    setattr(Callback, _hook, lambda self, ctx: None)


class Hooks:
    """Calls each hook on the callbacks that define it; errors are re-raised naming where."""

    def __init__(self, callbacks):
        for cb in callbacks:
            if isinstance(cb, type):
                raise ArgumentTypeError(
                    f"callbacks takes instances; got the class {cb.__name__}. Write {cb.__name__}(...) instead."
                )
            if not isinstance(cb, Callback):
                raise ArgumentTypeError(f"{cb!r} is not an nnfit callback (subclass nf.callbacks.Callback).")
        self.callbacks = sorted(callbacks, key=lambda cb: cb.weight)
        self.table = {
            hook: [getattr(cb, hook) for cb in self.callbacks if getattr(type(cb), hook) is not getattr(Callback, hook)]
            for hook in HOOKS
        }

    def __call__(self, hook: str, ctx) -> None:
        for method in self.table[hook]:
            try:
                method(ctx)
            except TrainingError:
                raise
            except Exception as error:
                raise TrainingError(
                    f"{type(method.__self__).__name__}.{hook} failed {where(ctx)}: {type(error).__name__}: {error}"
                ) from error


def where(ctx) -> str:
    """'in epoch 3, batch 7' for error messages (1-based, as people count)."""
    text = f"in epoch {ctx.epoch + 1}"
    if ctx.iter is not None:
        text += f", batch {ctx.iter + 1}"
    return text


class MetricsRecorder(Callback):
    """Accumulates the loss and metrics of each epoch on the device and records them once."""

    weight = -1000

    def on_train_begin(self, ctx):
        self._begin(ctx, ctx.train_metrics)

    def on_valid_begin(self, ctx):
        self._begin(ctx, ctx.valid_metrics)

    def on_train_batch_end(self, ctx):
        self._update(ctx, ctx.train_metrics)

    def on_valid_batch_end(self, ctx):
        self._update(ctx, ctx.valid_metrics)

    def on_train_end(self, ctx):
        ctx.record("train", self._compute(ctx, ctx.train_metrics))

    def on_valid_end(self, ctx):
        ctx.record("valid", self._compute(ctx, ctx.valid_metrics))

    def _begin(self, ctx, metrics):
        self._loss_sum = None
        self._n = 0
        for metric in metrics:
            metric.reset()

    def _update(self, ctx, metrics):
        n = len(ctx.target) if ctx.target is not None else len(ctx.pred)
        loss = ctx.loss.detach() * n
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        self._n += n
        for metric in metrics:
            try:
                metric.update(ctx.pred, ctx.target)
            except Exception as error:
                raise TrainingError(
                    f"Metric {type(metric).__name__}.update failed {where(ctx)}: {type(error).__name__}: {error}"
                ) from error

    def _compute(self, ctx, metrics):
        # The one device-to-host transfer of the epoch: every value at once.
        values = [self._loss_sum / max(self._n, 1) if self._loss_sum is not None else torch.tensor(math.nan)]
        for metric in metrics:
            try:
                values.append(metric.compute())
            except Exception as error:
                raise TrainingError(
                    f"Metric {type(metric).__name__}.compute failed {where(ctx)}: {type(error).__name__}: {error}"
                ) from error
        numbers = torch.stack([v.detach().to("cpu", torch.float64).reshape(()) for v in values]).tolist()
        names = ["loss"] + [metric.name for metric in metrics]
        return dict(zip(names, numbers))


class Progress(Callback):
    """Shows training progress: a live line on a terminal, one line per epoch otherwise.

    The live line counts batches only, so it never waits for the device.
    """

    weight = 1000

    def __init__(self, stream=None, every: float = 0.2):
        self.stream = stream
        self.every = every

    def on_fit_begin(self, ctx):
        self._stream = self.stream or sys.stdout
        self._live = bool(getattr(self._stream, "isatty", lambda: False)())
        self._last = 0.0

    def on_train_batch_end(self, ctx):
        if not self._live:
            return
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            total = ctx.n_batches or "?"
            self._stream.write(f"\rEpoch {ctx.epoch + 1}/{ctx.epochs}  batch {ctx.iter + 1}/{total}")
            self._stream.flush()

    def on_epoch_end(self, ctx):
        line = f"Epoch {ctx.epoch + 1}/{ctx.epochs}  " + format_records(ctx.last_records())
        self._stream.write(("\r" + line + " " * 8 + "\n") if self._live else line + "\n")
        self._stream.flush()


def format_records(records: dict) -> str:
    """'train: loss 0.1234, mae 0.2345 | valid: ...' from {set: {metric: value}}."""
    parts = []
    for split, values in records.items():
        parts.append(f"{split}: " + ", ".join(f"{name} {value:.4g}" for name, value in values.items()))
    return " | ".join(parts)


class EarlyStopping(Callback):
    """Stop when a monitored metric has not improved for ``patience`` epochs.

    ``monitor`` is 'set_metric' ('valid_loss', 'train_mae', ...). Training always runs the
    minimum number of epochs given by ``fit(epochs=(min, max))``.

    >>> import nnfit as nf
    >>> stop = nf.callbacks.EarlyStopping(monitor="valid_loss", patience=5)
    """

    def __init__(self, monitor: str = "valid_loss", patience: int = 3, min_delta: float = 0.0, mode: str = "auto", baseline=None):
        if mode not in ("auto", "min", "max"):
            raise ArgumentError(f"mode must be 'auto', 'min' or 'max', not {mode!r}.")
        if patience < 1:
            raise ArgumentError(f"patience must be at least 1, not {patience!r}.")
        self.monitor, self.patience, self.min_delta, self.mode, self.baseline = monitor, patience, min_delta, mode, baseline
        self.best = None
        self.wait = 0
        self.stopped_epoch = None

    def _direction(self):
        if self.mode != "auto":
            return self.mode
        maximize = ("accuracy", "r2", "auc", "precision", "recall", "f1")
        return "max" if any(self.monitor.endswith(name) for name in maximize) else "min"

    def on_epoch_end(self, ctx):
        value = ctx.monitored(self.monitor)
        sign = 1.0 if self._direction() == "min" else -1.0
        reference = self.best if self.best is not None else self.baseline
        if reference is None or sign * (reference - value) > self.min_delta:
            self.best = value
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience and ctx.epoch + 1 >= ctx.min_epochs:
            self.stopped_epoch = ctx.epoch
            ctx.stop_training = True
            ctx.hooks("on_early_stopping", ctx)

    def state_dict(self):
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        self.best, self.wait, self.stopped_epoch = state["best"], state["wait"], state["stopped_epoch"]

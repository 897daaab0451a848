"""The training loop: epochs, batches and hooks. Everything else is a callback.

The loop works on tensors, Datasets and modules only. It never reads a value back from the
device during an epoch; the metrics callback does that once per epoch.
"""

from __future__ import annotations

import time

import torch

from .callbacks import Hooks, where
from .errors import ArgumentError, TrainingError


class Context:
    """What callbacks see: the model, optimizers and the state of the loop (luz's ``ctx``)."""

    def __init__(self, model, loss_fn, optimizers, train_data, valid_data, epochs, min_epochs,
                 batch_size, train_metrics, valid_metrics, device, generator, drop_last=False, accumulate=1):
        self.model = model
        self.loss_fn = loss_fn
        self.optimizers = optimizers
        self.train_data = train_data
        self.valid_data = valid_data
        self.epochs = epochs
        self.min_epochs = min_epochs
        self.batch_size = batch_size
        self.train_metrics = train_metrics
        self.valid_metrics = valid_metrics
        self.device = device
        self.generator = generator
        self.drop_last = drop_last
        self.accumulate = accumulate
        self.epoch = 0
        self.iter = None
        self.n_batches = None
        self.input = self.target = self.pred = self.loss = None
        self.training = True
        self.stop_training = False
        self.records = []  # rows: (set, metric, epoch, value)
        self.epoch_seconds = []
        self.hooks = None

    @property
    def opt(self):
        """The first (usually only) optimizer."""
        return next(iter(self.optimizers.values()))

    def record(self, split: str, values: dict):
        for name, value in values.items():
            self.records.append((split, name, self.epoch + 1, value))

    def last_records(self) -> dict:
        """{set: {metric: value}} for the current epoch."""
        out = {}
        for split, name, epoch, value in self.records:
            if epoch == self.epoch + 1:
                out.setdefault(split, {})[name] = value
        return out

    def monitored(self, monitor: str) -> float:
        """The current epoch's value of 'set_metric' ('valid_loss', 'train_mae')."""
        split, _, name = monitor.partition("_")
        values = self.last_records().get(split, {})
        if name not in values:
            existing = [f"{s}_{n}" for s, metrics in self.last_records().items() for n in metrics]
            raise ArgumentError(f"Nothing records {monitor!r}; the metrics are: {', '.join(existing)}.")
        return values[name]


def run(ctx: Context, callbacks, start_epoch: int = 0) -> Context:
    """Train ``ctx.model`` for ``ctx.epochs`` epochs, calling the callbacks' hooks."""
    hooks = ctx.hooks = Hooks(callbacks)
    hooks("on_fit_begin", ctx)
    for epoch in range(start_epoch, ctx.epochs):
        ctx.epoch = epoch
        began = time.perf_counter()
        hooks("on_epoch_begin", ctx)
        _train_epoch(ctx, hooks)
        if ctx.valid_data is not None:
            _valid_epoch(ctx, hooks)
        ctx.iter = None
        hooks("on_epoch_end", ctx)
        ctx.epoch_seconds.append(time.perf_counter() - began)
        if ctx.stop_training and epoch + 1 >= ctx.min_epochs:
            break
    hooks("on_fit_end", ctx)
    return ctx


def _train_epoch(ctx, hooks):
    ctx.model.train()
    ctx.training = True
    ctx.n_batches = ctx.train_data.n_batches(ctx.batch_size, ctx.drop_last)
    hooks("on_train_begin", ctx)
    custom_step = getattr(ctx.model, "step", None)
    table = hooks.table
    for ctx.iter, (ctx.input, ctx.target) in enumerate(
        ctx.train_data.batches(ctx.batch_size, shuffle=True, generator=ctx.generator, drop_last=ctx.drop_last)
    ):
        if table["on_train_batch_begin"]:
            hooks("on_train_batch_begin", ctx)
        if custom_step is not None:
            _call(ctx, "the module's step()", custom_step, ctx)
        else:
            _default_step(ctx, hooks, table)
        hooks("on_train_batch_end", ctx)
    hooks("on_train_end", ctx)


def _default_step(ctx, hooks, table):
    ctx.pred = _call(ctx, f"{type(ctx.model).__name__}.forward", ctx.model, ctx.input)
    if table["on_train_batch_after_pred"]:
        hooks("on_train_batch_after_pred", ctx)
    ctx.loss = _call(ctx, "the loss", ctx.loss_fn, ctx.pred, ctx.target)
    if table["on_train_batch_after_loss"]:
        hooks("on_train_batch_after_loss", ctx)
    accumulate = ctx.accumulate
    if accumulate == 1 or ctx.iter % accumulate == 0:
        for opt in ctx.optimizers.values():
            opt.zero_grad(set_to_none=True)
    if table["on_train_batch_before_backward"]:
        hooks("on_train_batch_before_backward", ctx)
    loss = ctx.loss if accumulate == 1 else ctx.loss / accumulate
    _call(ctx, "backward", loss.backward)
    last = ctx.n_batches is not None and ctx.iter + 1 == ctx.n_batches
    if accumulate == 1 or (ctx.iter + 1) % accumulate == 0 or last:
        if table["on_train_batch_before_step"]:
            hooks("on_train_batch_before_step", ctx)
        for opt in ctx.optimizers.values():
            opt.step()
        if table["on_train_batch_after_step"]:
            hooks("on_train_batch_after_step", ctx)


@torch.no_grad()
def _valid_epoch(ctx, hooks):
    ctx.model.eval()
    ctx.training = False
    ctx.n_batches = ctx.valid_data.n_batches(ctx.batch_size)
    hooks("on_valid_begin", ctx)
    for ctx.iter, (ctx.input, ctx.target) in enumerate(ctx.valid_data.batches(ctx.batch_size, shuffle=False)):
        hooks("on_valid_batch_begin", ctx)
        ctx.pred = _call(ctx, f"{type(ctx.model).__name__}.forward", ctx.model, ctx.input)
        hooks("on_valid_batch_after_pred", ctx)
        ctx.loss = _call(ctx, "the loss", ctx.loss_fn, ctx.pred, ctx.target)
        hooks("on_valid_batch_after_loss", ctx)
        hooks("on_valid_batch_end", ctx)
    hooks("on_valid_end", ctx)


def _call(ctx, what, function, *args):
    try:
        return function(*args)
    except TrainingError:
        raise
    except Exception as error:
        raise TrainingError(f"{what} failed {where(ctx)}: {type(error).__name__}: {error}") from error

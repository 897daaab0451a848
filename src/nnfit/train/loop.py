"""The training loop: epochs, batches and hooks. Everything else is a callback.

The loop works on tensors, Datasets and modules only. It never reads a value back from the
device during an epoch; the metrics callback does that once per epoch.
"""

from __future__ import annotations

import contextlib
import time

import torch

from .closed_form import torch_step
from .hooks import Hooks, where
from ..errors import ArgumentError, NnfitError, TrainingError, check_positive_int, is_positive_int as _positive_int


class _Column:
    """A list of tensors of one shape, gathered into one tensor allocated for ``capacity`` of them:
    appended tensors wait in a short list and are written into it ``BLOCK`` at a time (a list of
    small tensors kept through an epoch scatters the allocator's heap, so that the large blocks
    each batch frees are not reused: 0.9-1.1 GB against 0.66 GB for workload L; a copy per item
    costs 2-3 us a batch, a list append a tenth of that). Anything else (a dict, a number,
    another shape, dtype or device, more than ``capacity``) turns it into a plain list.

    >>> import torch
    >>> from nnfit.train.loop import _Column
    >>> column = _Column(capacity=3)
    >>> for value in (1.0, 2.0, 3.0):
    ...     column.append(torch.tensor(value))
    >>> column.stacked().tolist(), len(column), float(column.last())
    ([1.0, 2.0, 3.0], 3, 3.0)
    >>> column.append({"a": 1}); column.stacked() is None, len(column.list())   # a dict: a list from now on
    (True, 4)
    """

    BLOCK = 64

    def __init__(self, capacity=None):
        self.capacity = capacity if isinstance(capacity, int) and not isinstance(capacity, bool) and capacity > 0 else 0
        self.items = []  # the items not written into the buffer yet; every item once the column is a list
        self.buffer, self.n = None, 0  # the buffer and how many items it holds
        self.listed = not self.capacity

    def __len__(self):
        return self.n + len(self.items)

    def append(self, item) -> None:
        items = self.items
        items.append(item)
        if self.listed:
            return
        if not isinstance(item, torch.Tensor):
            self._to_list()
        elif len(items) == self.BLOCK:
            self._write()

    def _write(self) -> None:
        """Write the waiting items into the buffer; a list instead if they do not fit it."""
        items = self.items
        if not items:
            return
        first = items[0]
        if self.buffer is None:
            self.buffer = torch.empty((self.capacity, *first.shape), dtype=first.dtype, device=first.device)
        buffer = self.buffer
        if self.n + len(items) > len(buffer) or any(
                item.shape != buffer.shape[1:] or item.dtype != buffer.dtype or item.device != buffer.device
                for item in items):
            self._to_list()
            return
        torch.stack(items, out=buffer[self.n : self.n + len(items)])
        self.n += len(items)
        self.items = []

    def _to_list(self) -> None:
        if self.buffer is not None:  # the items written so far: views of the buffer
            self.items = list(self.buffer[: self.n].unbind(0)) + self.items
        self.buffer, self.n, self.listed = None, 0, True

    def stacked(self):
        """Every item as one tensor (n, ...) of the buffer, or None once the column is a list (or empty)."""
        if not self.listed:
            self._write()
        if self.listed or not self.n:
            return None
        return self.buffer[: self.n]

    def list(self) -> list:
        stacked = self.stacked()
        return list(stacked.unbind(0)) if stacked is not None else self.items

    def first(self):
        """The first item, or None (without making the list)."""
        if self.n:
            return self.buffer[0]
        return self.items[0] if self.items else None

    def last(self):
        """The last item, or None (without making the list)."""
        if self.items:
            return self.items[-1]
        return self.buffer[self.n - 1] if self.n else None


class BatchLosses:
    """One set's per-batch losses in the current epoch, kept on the device: the one record of them.

    The loop appends each batch's loss once, right after its step (``ctx.batch_losses["train"]``,
    and ``["valid"]`` in validation, each begun afresh in every epoch); ``MetricsRecorder`` makes
    the epoch's loss of it and ``DivergenceGuard`` finds the batch that diverged in it, and any
    callback may read it. ``values[i]`` is batch i's loss, detached: a 0-d tensor, one per model
    ((K,)) for K stacked models, a {name: loss} dict when a module's own ``step(ctx)`` set
    several, or None; ``rows[i]`` its rows (K models: each model's, a (K,) tensor or a number).
    Given the epoch's ``n_batches``, tensor losses (and K models' row counts) are written into
    one tensor allocated once, rather than kept as one small tensor per batch.

    >>> import torch
    >>> from nnfit.train.loop import BatchLosses
    >>> record = BatchLosses(n_batches=2)
    >>> record.append(torch.tensor(0.5), 32); record.append(torch.tensor(0.25), 16)
    >>> len(record), record.rows, [float(v) for v in record.values], float(record.first())
    (2, [32, 16], [0.5, 0.25], 0.5)
    """

    def __init__(self, n_batches=None):
        self._values, self._rows = _Column(n_batches), _Column(n_batches)
        self.plain = True  # every value is a tensor (no dict, no None)

    def __len__(self):
        return len(self._values)

    @property
    def values(self) -> list:
        return self._values.list()

    @property
    def rows(self) -> list:
        return self._rows.list()

    def append(self, loss, rows) -> None:
        if isinstance(loss, torch.Tensor):  # a copy: a step may write its next loss into the same tensor
            loss = loss.detach().clone()  # (a CUDA graph's output is overwritten by its next replay)
        else:
            self.plain = False
            if isinstance(loss, dict):
                loss = {key: value.detach() if isinstance(value, torch.Tensor) else value for key, value in loss.items()}
        self._values.append(loss)
        self._rows.append(rows)

    def named(self) -> dict:
        """{'loss': ([losses], [rows]), 'loss_<name>': ...}: each loss a step set, over the batches that have it."""
        if self.plain:
            return {"loss": (self.values, self.rows)} if len(self) else {}
        named = {}
        for loss, rows in zip(self.values, self.rows):
            for key, value in (loss.items() if isinstance(loss, dict) else [(None, loss)]):
                if value is not None:
                    values, counts = named.setdefault("loss" if key is None else f"loss_{key}", ([], []))
                    values.append(value)
                    counts.append(rows)
        return named

    def totals(self) -> list:
        """Each batch's loss as one 0-d tensor (several summed: finite iff each is); batches without one left out."""
        if self.plain:
            return [loss.reshape(()) for loss in self.values]
        totals = []
        for loss in self.values:
            if isinstance(loss, dict):
                loss = sum(value.reshape(()) for value in loss.values() if isinstance(value, torch.Tensor))
            if isinstance(loss, torch.Tensor):
                totals.append(loss.reshape(()))
        return totals

    def weighted_sums(self) -> dict:
        """{'loss': sum over batches of loss * rows, 'loss_<name>': ...}, float64 tensors on the
        device, from ``named()``; of the one buffer at once when every loss is a number."""
        stacked = self._values.stacked() if self.plain else None
        if stacked is not None and stacked.dim() == 1:
            rows = torch.tensor(self.rows, dtype=torch.float64, device=stacked.device)
            return {"loss": stacked.to(torch.float64) @ rows}
        return {name: _weighted_sum(values, rows) for name, (values, rows) in self.named().items()}

    def model_sums(self):
        """K models: sum over batches of loss_b * rows_b, (K,) in float64 on the device, added in batch
        order (as Python's ``sum`` adds them; a cumulative sum keeps that order); 0 for no batches."""
        stacked = self._values.stacked() if self.plain else None
        if stacked is None:
            values, rows = self.named().get("loss", ([], []))
            if not values:
                return 0
            stacked = torch.stack(values)
        else:
            rows = self.rows
        stacked = stacked.to(torch.float64)
        return torch.cumsum(stacked * _batch_weights(rows, stacked), 0)[-1]

    def last(self):
        """(the last batch's loss, summed as in ``totals``, and how many batches have one), or None."""
        if self.plain:
            return (self._values.last().reshape(()), len(self)) if len(self) else None
        totals = self.totals()
        return (totals[-1], len(totals)) if totals else None

    def first(self):
        """The first batch's loss (summed as in ``totals``; one per model), or None."""
        if self.plain:
            return self._values.first()
        for loss in self.values:
            if isinstance(loss, dict):
                loss = sum(value.reshape(()) for value in loss.values() if isinstance(value, torch.Tensor))
            if isinstance(loss, torch.Tensor):
                return loss
        return None


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
        self.batch_losses = {}  # {"train": BatchLosses, "valid": ...}: this epoch's loss of each batch
        self.epoch_seconds = []
        self.hooks = None
        self.start_epoch = 0
        self.interruptible = self.interrupted = False
        self.weight = None  # the batch's sample weights, when fit was given some
        self.autocast = contextlib.nullcontext  # MixedPrecision swaps in torch.autocast
        self.scaler = None  # MixedPrecision's gradient scaler (float16 on CUDA)
        self.backward = torch.Tensor.backward  # setup(backward=) replaces it
        self.buffers = {}  # scratch space that callbacks may share (luz's ctx$buffers)
        self.seed = None  # the seed fit was given
        self.description = {}  # what identifies the run ({field: text}); AutoResume compares it
        self.data_given = None  # {"data": ..., "validation data": ...} as fit was given them
        # K models trained as one (nnfit.train.many): records get a model column, values are lists
        self.n_models = 1
        self.model_metrics = None  # {"train": [K metric lists], "valid": [...]}
        self.model_names = None  # ["model 1 of 5", ...] or ["fold 1", ...]
        self.on_divergence = "error"  # or "drop": a model that diverges stops, the others go on
        self.diverged = {}  # {model index: DivergenceError} of the models dropped
        self._active = None  # (K,) bool on the device, once a model stopped; None: all train

    @property
    def opt(self):
        """The first (usually only) optimizer."""
        return next(iter(self.optimizers.values()))

    @property
    def max_epochs(self) -> int:
        return self.epochs

    @property
    def batch(self):
        """The current (input, target) pair."""
        return self.input, self.target

    @property
    def data(self):
        """The data of the current phase: ``train_data`` while training, else ``valid_data``."""
        return self.train_data if self.training else self.valid_data

    @property
    def metrics(self) -> dict:
        """{'train': [...], 'valid': [...]}: the metric objects of each set."""
        return {"train": self.train_metrics, "valid": self.valid_metrics}

    @property
    def stacked(self) -> bool:
        """Whether this fit trains a stack of K models (``nnfit.train.many``; K may be 1): values are per model."""
        return self.model_metrics is not None

    @property
    def active(self) -> list:
        """Which of the K models still train (early stopping and divergence stop them one by one)."""
        if self._active is None:
            return [True] * self.n_models
        return self._active.tolist()

    @property
    def active_tensor(self):
        """``active`` as a (K,) bool tensor on the device, or None while every model trains."""
        return self._active

    def deactivate(self, k: int) -> None:
        """Stop training model k (0-based): its steps are masked from now on; all stopped ends the fit."""
        if self._active is None:
            self._active = torch.ones(self.n_models, dtype=torch.bool, device=self.device)
        self._active[k] = False
        if not bool(self._active.any()):
            self.stop_training = True

    def call_callbacks(self, hook: str) -> None:
        """Run a hook on every callback, e.g. from a module's own ``step(ctx)``."""
        self.hooks(hook, self)

    def log(self, split: str, name: str, value) -> None:
        """Record a value of this epoch under 'split_name' (a tensor is read now: log once per epoch)."""
        self.records.append((split, name, self.epoch + 1, float(value)))

    def get_metrics(self, split: str | None = None, epoch: int | None = None) -> dict:
        """{set: {metric: value}} of an epoch (1-based; default the current), or one set's dict.

        With K models each value is a list of K numbers, model 1's first."""
        epoch = self.epoch + 1 if epoch is None else epoch
        out = {}
        for s, name, e, value, *model in reversed(self.records):
            if e != epoch:
                if e < epoch:
                    break
                continue
            if model:
                out.setdefault(s, {}).setdefault(name, [None] * self.n_models)[model[0] - 1] = value
            else:
                out.setdefault(s, {})[name] = value
        out = {s: dict(reversed(list(values.items()))) for s, values in reversed(list(out.items()))}
        return out if split is None else out.get(split, {})

    def record(self, split: str, values: dict):
        """Record this epoch's {metric: value} of a set; with K models, {metric: [K values]}."""
        epoch = self.epoch + 1
        for name, value in values.items():
            if isinstance(value, (list, tuple)):
                self.records.extend((split, name, epoch, v, k + 1) for k, v in enumerate(value))
            else:
                self.records.append((split, name, epoch, value))

    def last_records(self) -> dict:
        """{set: {metric: value}} for the current epoch."""
        return self.get_metrics()

    def monitored(self, monitor: str, by: str = "A callback") -> float:
        """The current epoch's value of 'set_metric' ('valid_loss', 'train_mae')."""
        split, _, name = monitor.partition("_")
        values = self.last_records().get(split, {})
        if name not in values:
            existing = [f"{s}_{n}" for s, metrics in self.last_records().items() for n in metrics]
            raise ArgumentError(
                f"{by} monitors {monitor!r}, which no metric records; the names recorded are: "
                f"{', '.join(existing)}. Pass one of them as monitor=."
            )
        return values[name]


def run(ctx: Context, callbacks, start_epoch: int = 0) -> Context:
    """Train ``ctx.model`` for ``ctx.epochs`` epochs, calling the callbacks' hooks."""
    hooks = ctx.hooks = Hooks(callbacks)
    ctx.start_epoch = start_epoch
    hooks("on_fit_begin", ctx)  # AutoResume may move ctx.start_epoch on
    try:
        for epoch in range(ctx.start_epoch, ctx.epochs):
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
    except KeyboardInterrupt:
        if not ctx.interruptible:  # set by the Interrupt callback
            raise
        ctx.interrupted = True
    hooks("on_fit_end", ctx)
    return ctx


def _train_epoch(ctx, hooks):
    ctx.model.train()
    ctx.training = True
    ctx.n_batches = ctx.train_data.n_batches(ctx.batch_size, ctx.drop_last)
    losses = ctx.batch_losses["train"] = BatchLosses(ctx.n_batches)
    hooks("on_train_begin", ctx)
    custom_step = getattr(ctx.model, "step", None)
    table = hooks.table
    begin, end = table["on_train_batch_begin"], table["on_train_batch_end"]  # hooks no callback has cost nothing
    steps = [torch_step(opt) for opt in ctx.optimizers.values()] if custom_step is None else None
    forward = f"{type(ctx.model).__name__}.forward"
    rows = _model_rows if ctx.stacked else _rows
    for ctx.iter, batch in enumerate(
        ctx.train_data.batches(ctx.batch_size, shuffle=True, generator=ctx.generator, drop_last=ctx.drop_last)
    ):
        ctx.input, ctx.target = batch[0], batch[1]
        ctx.weight = batch[2] if len(batch) > 2 else None
        if begin:
            hooks("on_train_batch_begin", ctx)
        if custom_step is not None:
            _call(ctx, "the module's step()", custom_step, ctx)
        else:
            _default_step(ctx, hooks, table, steps, forward)
        losses.append(ctx.loss, rows(ctx))
        if end:
            hooks("on_train_batch_end", ctx)
    hooks("on_train_end", ctx)


def _rows(ctx) -> int:
    """Rows in the batch: its target's, else its input's (the first tensor's of several)."""
    return rows_of(ctx.target if ctx.target is not None else ctx.input)


def _model_rows(ctx):
    """K models: the rows each has in the batch ((K,), from its ``RowWeights``), or the batch's."""
    return ctx.weight.counts if ctx.weight is not None else rows_of(ctx.target)


def rows_of(batch) -> int:
    """Rows in a batch: a tensor's length, or the first tensor's for several inputs.

    >>> import torch
    >>> from nnfit.train.loop import rows_of
    >>> rows_of(torch.zeros(5, 2)), rows_of({"a": torch.zeros(3), "b": torch.zeros(3)})
    (5, 3)
    """
    while isinstance(batch, (list, tuple, dict)):
        batch = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return len(batch)


def _default_step(ctx, hooks, table, steps, forward):
    with ctx.autocast():
        ctx.pred = _call(ctx, forward, ctx.model, ctx.input)
        if table["on_train_batch_after_pred"]:
            hooks("on_train_batch_after_pred", ctx)
        ctx.loss = _loss(ctx)
        if table["on_train_batch_after_loss"]:
            hooks("on_train_batch_after_loss", ctx)
    accumulate = ctx.accumulate
    if accumulate == 1 or ctx.iter % accumulate == 0:
        for opt in ctx.optimizers.values():
            _zero_grad(opt)
    if table["on_train_batch_before_backward"]:
        hooks("on_train_batch_before_backward", ctx)
    loss = ctx.loss if accumulate == 1 else ctx.loss / _group_size(ctx)
    if ctx.scaler is not None:
        loss = ctx.scaler.scale(loss)
    _call(ctx, "backward", ctx.backward, loss)
    last = ctx.n_batches is not None and ctx.iter + 1 == ctx.n_batches
    if accumulate == 1 or (ctx.iter + 1) % accumulate == 0 or last:
        if table["on_train_batch_before_step"]:
            hooks("on_train_batch_before_step", ctx)
        if ctx.scaler is None:
            for step in steps:
                step()
        else:
            for opt in ctx.optimizers.values():
                ctx.scaler.step(opt)
            ctx.scaler.update()
        if table["on_train_batch_after_step"]:
            hooks("on_train_batch_after_step", ctx)


@torch.no_grad()
def _valid_epoch(ctx, hooks):
    ctx.model.eval()
    ctx.training = False
    ctx.n_batches = ctx.valid_data.n_batches(ctx.batch_size)
    losses = ctx.batch_losses["valid"] = BatchLosses(ctx.n_batches)
    hooks("on_valid_begin", ctx)
    custom_step = getattr(ctx.model, "step", None)  # luz: a module's step() runs in validation too
    ctx.weight = None  # validation scores every row alike
    stacked = ctx.stacked
    rows = _model_rows if stacked else _rows
    for ctx.iter, batch in enumerate(ctx.valid_data.batches(ctx.batch_size, shuffle=False)):
        ctx.input, ctx.target = batch[0], batch[1]
        if stacked:  # K models: which rows of the batch each model has
            ctx.weight = batch[2]
        hooks("on_valid_batch_begin", ctx)
        if custom_step is not None:
            _call(ctx, "the module's step()", custom_step, ctx)
        else:
            with ctx.autocast():
                ctx.pred = _call(ctx, f"{type(ctx.model).__name__}.forward", ctx.model, ctx.input)
                hooks("on_valid_batch_after_pred", ctx)
                ctx.loss = _loss(ctx)
                hooks("on_valid_batch_after_loss", ctx)
        losses.append(ctx.loss, rows(ctx))
        hooks("on_valid_batch_end", ctx)
    hooks("on_valid_end", ctx)


def _loss(ctx):
    """The batch's loss (weighted when fit got sample weights), checked to be one number."""
    weighted = ctx.weight is not None
    args = (ctx.pred, ctx.target, ctx.weight) if weighted else (ctx.pred, ctx.target)
    loss = _call(ctx, "the loss", ctx.loss_fn, *args)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ArgumentError(
            f"The loss returned {shape} {where(ctx)}; it must return one number (a 0-d tensor). "
            "Give a torch loss reduction='mean' (its default), or end your loss function with .mean()."
        )
    return loss


def _group_size(ctx) -> int:
    """Batches in the current accumulation group (the last group of an epoch may be short)."""
    if ctx.n_batches is None:
        return ctx.accumulate
    first = ctx.iter - ctx.iter % ctx.accumulate
    return min(ctx.accumulate, ctx.n_batches - first)


def _zero_grad(opt):
    """``opt.zero_grad(set_to_none=True)``; for torch's own, without its per-call profiling and
    dynamo wrappers (a few percent of a small network's step)."""
    if type(opt).zero_grad is not torch.optim.Optimizer.zero_grad:
        opt.zero_grad(set_to_none=True)
        return
    for group in opt.param_groups:
        for param in group["params"]:
            param.grad = None


def _call(ctx, what, function, *args):
    try:
        return function(*args)
    except NnfitError:  # already says what is wrong
        raise
    except Exception as error:
        raise TrainingError(f"{what} failed {where(ctx)}: {type(error).__name__}: {error}") from error


def epoch_range(epochs) -> tuple:
    """(min, max) epochs from ``fit(epochs=)``: a number is the most epochs (min 1), a pair is (min, max).

    >>> from nnfit.train.loop import epoch_range
    >>> epoch_range(10), epoch_range((5, 20))
    ((1, 10), (5, 20))
    """
    if isinstance(epochs, (tuple, list)):
        if len(epochs) != 2 or not all(_positive_int(e) for e in epochs):
            raise ArgumentError(f"epochs as a pair must be (min, max) positive whole numbers, not {epochs!r}.")
        if epochs[0] > epochs[1]:
            raise ArgumentError(f"epochs=(min, max) needs min <= max; got {tuple(epochs)!r}.")
        return int(epochs[0]), int(epochs[1])
    return 1, check_positive_int("epochs", epochs)  # as in luz: a single number is the most epochs


def _weighted_sum(losses, rows) -> torch.Tensor:
    """sum(loss_b * rows_b) over batches, in float64, without leaving the device."""
    stacked = torch.stack([loss if loss.dim() == 0 else loss.reshape(()) for loss in losses]).to(torch.float64)
    return stacked @ torch.tensor(rows, dtype=torch.float64, device=stacked.device)


def _batch_weights(rows, stacked) -> torch.Tensor:
    """Each batch's rows as weights for ``stacked`` (B, K) losses: (B, 1) when every batch gives one
    number, else (B, K) with the batches that give each model's rows (a tensor) in their place."""
    numbers = [0.0 if isinstance(r, torch.Tensor) else float(r) for r in rows]
    weights = torch.tensor(numbers, dtype=torch.float64, device=stacked.device).reshape(-1, *[1] * (stacked.dim() - 1))
    if not any(isinstance(r, torch.Tensor) for r in rows):
        return weights
    weights = weights.expand(stacked.shape).clone()
    for i, r in enumerate(rows):
        if isinstance(r, torch.Tensor):
            weights[i] = r
    return weights

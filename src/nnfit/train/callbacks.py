"""Callbacks: behaviour that runs at named moments of the training loop, as in luz.

Subclass ``Callback`` and define any of the hooks in ``HOOKS``; each receives the loop's
context ``ctx`` (model, optimizers, epoch, iter, input, target, pred, loss, ...). Hooks that no
callback defines are never called. ``weight`` orders callbacks (lower runs first). An error
raised in a hook is re-raised as ``TrainingError`` naming the callback, the hook, the epoch
and the batch.

Built in: ``EarlyStopping``, ``LRScheduler``, ``CSVLogger``, ``TensorBoard``, ``GradientClip``,
``Mixup``, ``MixedPrecision``, ``Progress`` (shown by default on a terminal); the checkpoint
callbacks ``ModelCheckpoint``, ``KeepBestModel``, ``Interrupt`` and ``AutoResume`` come from
``nnfit.train.checkpoints``. Each keeps what a resumed fit needs in ``state_dict()``. The callbacks
that watch a metric (early stopping, checkpoints, keep-best, ``ReduceLROnPlateau``) share one
``nnfit.train.monitor.Monitor``, so they agree on which way is better.

>>> import nnfit as nf
>>> class Shout(nf.callbacks.Callback):
...     def on_epoch_end(self, ctx):
...         print("epoch", ctx.epoch, "done")
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import time

import torch

from ..errors import ArgumentError, ArgumentTypeError, MissingDependencyError, TrainingError
from .hooks import HOOKS, Callback, Hooks, where  # noqa: F401  (Callback and HOOKS: nf.callbacks' names)
from .monitor import Monitor

class MetricsRecorder(Callback):
    """Makes each epoch's loss and metrics on the device and records them once.

    The loss is the rows-weighted mean of the batch losses the loop keeps in
    ``ctx.batch_losses`` (``loop.BatchLosses``, which ``DivergenceGuard`` reads too); the
    metrics see the epoch's predictions. Every fit has one (the loop adds it first), so its
    records are what ``Fitted.metrics`` shows:

    >>> import torch, nnfit as nf
    >>> X = torch.randn(20, 2); y = X.sum(dim=1, keepdim=True)
    >>> fitted = nf.setup(torch.nn.Linear, loss="mse", metrics=["mae"]).set_hparams(
    ...     in_features=2, out_features=1).fit((X, y), epochs=2, batch_size=8, seed=1, verbose=False)
    >>> from nnfit.train.callbacks import MetricsRecorder
    >>> [type(c).__name__ for c in fitted.ctx.hooks.callbacks][0], fitted.metrics["metric"].unique().tolist()
    ('MetricsRecorder', ['loss', 'mae'])
    """

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
        ctx.record("train", self._compute(ctx, ctx.train_metrics, ctx.batch_losses["train"]))

    def on_valid_end(self, ctx):
        ctx.record("valid", self._compute(ctx, ctx.valid_metrics, ctx.batch_losses["valid"]))

    # Batches wait on the device and reach the metrics together, once per epoch or per
    # ``pending_limit`` predicted values: a few large operations instead of several small ones
    # per step. The limit is low because the waiting predictions are small blocks that live
    # while each step's large ones come and go, which scatters the C allocator's heap: on
    # workload L (1024-row batches) a whole epoch's wait made setup().fit peak at 1.1-1.7 GB, a
    # wait of 64 batches at 0.70 GB (the expert loop 0.85 GB). A fit's first batch goes
    # straight through, so a metric that fails says where.
    pending_limit = 1 << 16
    _checked = frozenset()  # ids of the metric lists whose first batch went through

    def _begin(self, ctx, metrics):
        self._pending = []  # (pred, target) batches the metrics have not seen yet
        self._pending_size = 0
        for model_list in self._per_model(ctx, metrics):
            for metric in model_list:
                metric.reset()

    @staticmethod
    def _per_model(ctx, metrics) -> list:
        """One list of metrics per model: [metrics] for one model, K lists for K models."""
        if not ctx.stacked:
            return [metrics]
        return ctx.model_metrics["train" if ctx.training else "valid"]

    def _update(self, ctx, metrics):
        if not metrics:
            return
        if ctx.stacked:  # K models: the epoch's predictions reach each model's metrics once
            rows = ctx.weight
            self._pending.append((ctx.pred.detach(), ctx.target, None if rows is None else rows.mask))
            return
        pred, target = ctx.pred, ctx.target
        pending = self._pending
        if id(metrics) in self._checked and _joins(pending, pred, target):
            pending.append((pred.detach(), target.detach()))
            self._pending_size += pred.numel()
            if self._pending_size >= self.pending_limit:
                self._flush(ctx, metrics)
        else:
            self._flush(ctx, metrics)
            self._update_metrics(ctx, metrics, pred, target)
            self._checked = self._checked | {id(metrics)}

    def _flush(self, ctx, metrics):
        if self._pending:
            preds, targets = zip(*self._pending)
            self._pending, self._pending_size = [], 0
            self._update_metrics(ctx, metrics, torch.cat(preds), torch.cat(targets))

    def _update_metrics(self, ctx, metrics, pred, target):
        for metric in metrics:
            try:
                metric.update(pred, target)
            except Exception as error:
                raise TrainingError(
                    f"Metric {type(metric).__name__}.update failed {where(ctx)}: {type(error).__name__}: {error}"
                ) from error

    # K models (nnfit.train.many): the loss is one number per model and each batch says which rows
    # each model has (RowWeights).
    def _compute_many(self, ctx, metrics, losses):
        data = ctx.train_data if ctx.training else ctx.valid_data
        sizes = torch.tensor(data.sizes, dtype=torch.float64, device=ctx.device)
        losses = losses.model_sums() / sizes
        numbers = {"loss": losses}
        if metrics and self._pending:
            preds = torch.cat([p for p, _, _ in self._pending], dim=1)
            targets = torch.cat([t for _, t, _ in self._pending], dim=1)
            masks = None
            if any(m is not None for _, _, m in self._pending):  # the rows each model has: all, but where a batch says
                masks = torch.ones(preds.shape[:2], dtype=torch.bool, device=preds.device)
                start = 0
                for p, _, m in self._pending:
                    if m is not None:
                        masks[:, start : start + p.shape[1]] = m
                    start += p.shape[1]
            self._pending = []
            per_model = self._per_model(ctx, metrics)
            from .metrics import Metric

            for i, metric in enumerate(metrics):  # one batched update per metric, each model on its rows
                update = getattr(type(metric), "update_models", None) or Metric.update_models
                try:
                    update([m[i] for m in per_model], preds, targets, masks)
                except Exception as error:
                    raise TrainingError(f"Metric {type(metric).__name__}.update failed {where(ctx)}: "
                                        f"{type(error).__name__}: {error}") from error
            for i, metric in enumerate(metrics):
                compute = getattr(type(metric), "compute_models", None) or Metric.compute_models
                try:
                    numbers[metric.name] = compute([m[i] for m in per_model])
                except Exception as error:
                    raise TrainingError(
                        f"Metric {type(metric).__name__}.compute failed {where(ctx)}: {type(error).__name__}: {error}"
                    ) from error
        read = torch.stack([v.to("cpu", torch.float64) for v in numbers.values()]).tolist()  # one transfer
        return dict(zip(numbers, read))

    def _compute(self, ctx, metrics, losses):
        """{name: value} of the epoch: the losses of ``losses`` (a ``loop.BatchLosses``) and the metrics."""
        if ctx.stacked:
            return self._compute_many(ctx, metrics, losses)
        self._flush(ctx, metrics)
        # The one device-to-host transfer of the epoch: every value at once.
        sums = losses.weighted_sums() or {"loss": torch.tensor(math.nan)}
        n = sum(losses.rows)
        values = [total / max(n, 1) for total in sums.values()]
        for metric in metrics:
            try:
                values.append(metric.compute())
            except Exception as error:
                raise TrainingError(
                    f"Metric {type(metric).__name__}.compute failed {where(ctx)}: {type(error).__name__}: {error}"
                ) from error
        numbers = torch.stack([v.detach().to("cpu", torch.float64).reshape(()) for v in values]).tolist()
        names = list(sums) + [metric.name for metric in metrics]
        return dict(zip(names, numbers))


def _joins(pending, pred, target) -> bool:
    """Whether a batch can be concatenated with the pending ones (tensors with matching rows)."""
    if not (isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor) and pred.ndim and target.ndim):
        return False
    return not pending or (pending[-1][0].shape[1:] == pred.shape[1:] and pending[-1][1].shape[1:] == target.shape[1:])


class Progress(Callback):
    """Shows training progress: a live bar on a terminal, one line per epoch otherwise (luz's
    ``luz_callback_progress``; on by default when the output is a terminal).

    The live bar counts batches only, so it never waits for the device; it is redrawn at most
    every ``every`` seconds. Each epoch ends with its line of metrics.

    >>> import sys, nnfit as nf
    >>> progress = nf.callbacks.Progress(stream=sys.stderr)
    """

    weight = 1000
    width = 20
    needs_autograd = False

    def __init__(self, stream=None, every: float = 0.2):
        self.stream = stream
        self.every = every

    def on_fit_begin(self, ctx):
        self._stream = self.stream or sys.stdout
        self._live = bool(getattr(self._stream, "isatty", lambda: False)())
        self._last = 0.0
        self._drawn = 0

    def on_train_batch_end(self, ctx):
        if not self._live:
            return
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            done, total = ctx.iter + 1, ctx.n_batches
            filled = self.width * done // total if total else 0
            bar = f"[{'=' * filled}{' ' * (self.width - filled)}] " if total else ""
            text = f"Epoch {ctx.epoch + 1}/{ctx.epochs}  {bar}batch {done}/{total or '?'}"
            self._stream.write("\r" + text)
            self._stream.flush()
            self._drawn = len(text)

    def on_epoch_end(self, ctx):
        line = f"Epoch {ctx.epoch + 1}/{ctx.epochs}  " + format_records(ctx.last_records())
        if self._live:  # overwrite the bar, blanking what the line does not cover
            line = "\r" + line + " " * max(self._drawn - len(line), 0)
            self._drawn = 0
        self._stream.write(line + "\n")
        self._stream.flush()


def format_records(records: dict) -> str:
    """'train: loss 0.1234, mae 0.2345 | valid: ...' from {set: {metric: value}}; K models' values
    (a list per metric) as their mean and range.

    >>> from nnfit.train.callbacks import format_records
    >>> format_records({"train": {"loss": 0.123456, "mae": 0.5}, "valid": {"loss": [0.2, 0.4]}})
    'train: loss 0.1235, mae 0.5 | valid: loss 0.3 [0.2, 0.4]'
    """
    parts = []
    for split, values in records.items():
        parts.append(f"{split}: " + ", ".join(f"{name} {_shown(value)}" for name, value in values.items()))
    return " | ".join(parts)


def _shown(value) -> str:
    """A number as '0.1234'; K models' values as their mean and range, '0.1234 [0.1011, 0.1502]'."""
    if not isinstance(value, (list, tuple)):
        return f"{value:.4g}"
    finite = [v for v in value if v is not None and math.isfinite(v)]
    if not finite:
        return "nan"
    return f"{sum(finite) / len(finite):.4g} [{min(finite):.4g}, {max(finite):.4g}]"


class EarlyStopping(Monitor, Callback):
    """Stop when a monitored metric has not improved for ``patience`` epochs (luz's ``luz_callback_early_stopping``).

    ``monitor`` is 'set_metric' ('valid_loss', 'train_mae', ...). An epoch improves when it
    beats the best value so far by more than ``min_delta``; ``mode`` 'auto' asks the metric
    (losses are minimized, a metric with ``maximize = True`` such as accuracy or AUROC is
    maximized) and raises when it cannot tell; pass ``mode="min"`` or ``"max"`` then. With a
    ``baseline``, epochs count as not improving until the metric beats it. Training always runs
    the minimum number of epochs given by ``fit(epochs=(min, max))``. ``stopped_epoch`` is the
    epoch (1-based) it stopped at, or None; on stopping the ``on_early_stopping`` hook runs.
    ``best`` and ``best_epoch`` are the best value and its epoch (see ``nnfit.train.monitor.Monitor``).

    >>> import torch, nnfit as nf
    >>> X = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)); y = X.sum(dim=1, keepdim=True)
    >>> stop = nf.callbacks.EarlyStopping(monitor="valid_loss", patience=2, min_delta=10.0)
    >>> fitted = (nf.setup(torch.nn.Linear, loss="mse").set_hparams(in_features=2, out_features=1)
    ...           .fit((X, y), epochs=20, valid_data=0.25, seed=1, verbose=False, callbacks=[stop]))
    >>> stop.mode_, stop.best_epoch, stop.stopped_epoch   # no epoch beat the first by 10
    ('min', 1, 3)
    """

    needs_autograd = False

    def __init__(self, monitor: str = "valid_loss", patience: int = 3, min_delta: float = 0.0, mode: str = "auto", baseline=None):
        super().__init__(monitor, mode, min_delta, baseline)
        if patience < 1:
            raise ArgumentError(f"patience must be at least 1, not {patience!r}.")
        self.patience = patience
        self.wait = 0
        self.stopped_epoch = None

    def on_fit_begin(self, ctx):
        super().on_fit_begin(ctx)
        self.wait = 0 if not ctx.stacked else [0] * ctx.n_models
        self.stopped_epoch = None if not ctx.stacked else [None] * ctx.n_models

    def on_epoch_end(self, ctx):
        improved, _ = self.update(ctx)
        if ctx.stacked:
            return self._per_model(ctx, improved)
        if improved:
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience and ctx.epoch + 1 >= ctx.min_epochs:
            self.stopped_epoch = ctx.epoch + 1
            ctx.stop_training = True
            ctx.hooks("on_early_stopping", ctx)

    def _per_model(self, ctx, improved):
        """K models: each stops on its own (its steps are masked); the fit ends when all have."""
        for k, (better, training) in enumerate(zip(improved, ctx.active)):
            if not training:
                continue
            self.wait[k] = 0 if better else self.wait[k] + 1
            if self.wait[k] >= self.patience and ctx.epoch + 1 >= ctx.min_epochs:
                self.stopped_epoch[k] = ctx.epoch + 1
                ctx.deactivate(k)
        if ctx.stop_training:
            ctx.hooks("on_early_stopping", ctx)

    def state_dict(self):
        return {**super().state_dict(), "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]


class LRScheduler(Callback):
    """Step a torch learning-rate scheduler at a hook of your choice (luz's ``luz_callback_lr_scheduler``).

    ``scheduler`` is a class from ``torch.optim.lr_scheduler`` (or any function
    ``optimizer -> scheduler``), built at fit time with ``options``; ``call_on`` is the hook
    that steps it (``"on_epoch_end"``, or ``"on_train_batch_after_step"`` for per-step schedules
    such as OneCycleLR). ``ReduceLROnPlateau`` is stepped with the epoch mean of ``monitor``
    (default: 'valid_loss' with validation data, else 'train_loss'), never with one batch's
    loss; its ``mode`` is the one ``nnfit.train.monitor.Monitor`` finds (the metric's own direction,
    as for ``EarlyStopping``) unless given. ``opt_name`` picks one of several optimizers
    (default: the first).

    >>> import torch, nnfit as nf
    >>> halve = nf.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=10, gamma=0.5)
    >>> plateau = nf.callbacks.LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="train_r2", patience=0)
    >>> X = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)); y = X.sum(dim=1, keepdim=True)
    >>> fitted = (nf.setup(torch.nn.Linear, loss="mse", metrics=["r2"]).set_hparams(in_features=2, out_features=1)
    ...           .fit((X, y), epochs=2, seed=1, verbose=False, callbacks=[plateau]))
    >>> plateau.monitor_, plateau.scheduler_.mode   # R2 is better higher
    ('train_r2', 'max')
    """

    def __init__(self, scheduler, call_on: str = "on_epoch_end", monitor: str | None = None, opt_name: str | None = None, **options):
        if isinstance(scheduler, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)):
            raise ArgumentTypeError(
                f"LRScheduler takes the scheduler class and its options, e.g. LRScheduler({type(scheduler).__name__}, ...), "
                "not a scheduler already built: the optimizer is made at fit time."
            )
        if not callable(scheduler):
            raise ArgumentTypeError(f"LRScheduler takes a torch.optim.lr_scheduler class, not {scheduler!r}.")
        if call_on not in HOOKS:
            raise ArgumentError(f"call_on must be a hook name such as 'on_epoch_end', not {call_on!r}.")
        self.plateau = isinstance(scheduler, type) and issubclass(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        name = getattr(scheduler, "__name__", "the scheduler")
        if self.plateau and call_on != "on_epoch_end":
            raise ArgumentError(
                f"{name} steps on a metric, which exists once per epoch; use call_on='on_epoch_end', not {call_on!r}."
            )
        if monitor is not None and not self.plateau:
            raise ArgumentError(f"{name} does not use a metric; leave out monitor={monitor!r}.")
        self.scheduler, self.call_on, self.monitor, self.opt_name, self.options = scheduler, call_on, monitor, opt_name, options
        self._monitor = Monitor(monitor, options.get("mode", "auto"), by="LRScheduler") if self.plateau else None
        self.scheduler_ = None
        self._state = None
        setattr(self, call_on, self._step)

    def on_fit_begin(self, ctx):
        if self.opt_name is not None and self.opt_name not in ctx.optimizers:
            raise ArgumentError(
                f"LRScheduler(opt_name={self.opt_name!r}): there is no such optimizer; the optimizers are: "
                f"{', '.join(ctx.optimizers)}."
            )
        optimizer = ctx.optimizers[self.opt_name] if self.opt_name is not None else ctx.opt
        options = dict(self.options)
        if self.plateau:
            self.monitor_ = self._monitor.name(ctx)
            options["mode"] = self._monitor.direction(ctx)
        self.scheduler_ = self.scheduler(optimizer, **options)
        if self._state is not None:
            self.scheduler_.load_state_dict(self._state)

    def _step(self, ctx):
        if self.plateau:
            self.scheduler_.step(ctx.monitored(self.monitor_, by="LRScheduler"))
        else:
            self.scheduler_.step()

    def state_dict(self):
        return {"scheduler": self.scheduler_.state_dict() if self.scheduler_ is not None else self._state}

    def load_state_dict(self, state):
        self._state = state["scheduler"]
        if self.scheduler_ is not None and self._state is not None:
            self.scheduler_.load_state_dict(self._state)

    def __repr__(self):
        return f"LRScheduler({getattr(self.scheduler, '__name__', self.scheduler)}, call_on={self.call_on!r})"


class CSVLogger(Callback):
    """Write the metrics to a CSV file after every epoch: one row per epoch and set (luz's ``luz_callback_csv_logger``).

    Columns: epoch, set, loss and each metric. The file is rewritten atomically each epoch,
    so it is always complete, even if training is killed.

    >>> import nnfit as nf
    >>> logger = nf.callbacks.CSVLogger("history.csv")
    """

    needs_autograd = False

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, ctx):
        import csv
        import io

        from ..files import atomic_write

        rows, names = {}, {}
        for split, name, epoch, value, *model in ctx.records:  # K models: a model column
            rows.setdefault((epoch, split, *model), {})[name] = value
            names[name] = None
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["epoch", "set", *(["model"] if ctx.stacked else []), *names])
        for key, values in rows.items():
            writer.writerow([*key, *(repr(values[n]) if n in values else "" for n in names)])
        atomic_write(self.path, text.getvalue().encode())

    def __repr__(self):
        return f"CSVLogger({str(self.path)!r})"


class TensorBoard(Callback):
    """Log each epoch's metrics to TensorBoard (luz's ``luz_callback_tfevents``); needs ``pip install tensorboard``.

    Scalars are named 'metric/set' ('loss/train', 'loss/valid', 'mae/train', ...), by epoch.

    >>> import nnfit as nf
    >>> board = nf.callbacks.TensorBoard("runs/first")   # doctest: +SKIP
    """

    needs_autograd = False

    def __init__(self, log_dir="runs"):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MissingDependencyError(
                "The TensorBoard callback needs the tensorboard package, which is not installed; "
                "install it with: pip install 'nnfit[tensorboard]' (or pip install tensorboard)."
            ) from None
        self.log_dir = log_dir
        self._writer_class = SummaryWriter
        self.writer_ = None

    def on_fit_begin(self, ctx):
        self.writer_ = self._writer_class(log_dir=str(self.log_dir))

    def on_epoch_end(self, ctx):
        for split, values in ctx.last_records().items():
            for name, value in values.items():
                self.writer_.add_scalar(f"{name}/{split}", value, ctx.epoch + 1)
        self.writer_.flush()

    def on_fit_end(self, ctx):
        self.writer_.close()

    def __repr__(self):
        return f"TensorBoard({str(self.log_dir)!r})"


class GradientClip(Callback):
    """Rescale the gradients before each optimizer step so that their total norm is at most ``max_norm``.

    luz's ``luz_callback_gradient_clip``; ``norm_type`` is the p of the p-norm (2 by default).

    >>> import nnfit as nf
    >>> clip = nf.callbacks.GradientClip(max_norm=1.0)
    """

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0):
        if not max_norm > 0:
            raise ArgumentError(f"GradientClip needs max_norm > 0, not {max_norm!r}.")
        self.max_norm, self.norm_type = max_norm, norm_type

    def on_train_batch_before_step(self, ctx):
        if ctx.scaler is not None:  # clip the true gradients, not the loss-scaled ones
            for opt in ctx.optimizers.values():
                ctx.scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), self.max_norm, norm_type=self.norm_type)

    def __repr__(self):
        return f"GradientClip(max_norm={self.max_norm})"


class Mixup(Callback):
    """Train on convex mixtures of pairs of rows (mixup, Zhang et al. 2018; luz's ``luz_callback_mixup``).

    Each training batch becomes ``lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(alpha, alpha)``
    and a random pairing ``perm``, and its loss ``lam * loss(pred, y) + (1 - lam) * loss(pred, y[perm])``.
    Validation is untouched. ``lam_`` and ``perm_`` hold the last batch's draw.

    >>> import nnfit as nf
    >>> mixup = nf.callbacks.Mixup(alpha=0.4)
    """

    def __init__(self, alpha: float = 0.4):
        if not alpha > 0:
            raise ArgumentError(f"Mixup needs alpha > 0, not {alpha!r}.")
        self.alpha = alpha
        self.lam_ = self.perm_ = None

    def on_train_batch_begin(self, ctx):
        x = ctx.input
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            raise ArgumentError("Mixup needs one floating-point input tensor per batch.")
        alpha = torch.tensor(float(self.alpha), device=x.device)
        # drawn on the device from torch's generator, so fit(seed=) repeats it and nothing waits
        self.lam_ = torch.distributions.Beta(alpha, alpha).sample()
        self.perm_ = torch.randperm(len(x), device=x.device)
        ctx.input = self.lam_ * x + (1 - self.lam_) * x[self.perm_]

    def on_train_batch_after_loss(self, ctx):
        args = (ctx.pred, ctx.target[self.perm_]) + (() if ctx.weight is None else (ctx.weight[self.perm_],))
        ctx.loss = self.lam_ * ctx.loss + (1 - self.lam_) * ctx.loss_fn(*args)

    def __repr__(self):
        return f"Mixup(alpha={self.alpha})"


class MixedPrecision(Callback):
    """Run forward passes and losses in half precision (luz's ``luz_callback_mixed_precision``).

    On the CPU: bfloat16 autocast. On CUDA: float16 autocast with gradient scaling, so small
    gradients do not vanish (``GradientClip`` unscales before clipping). Weights stay float32.

    >>> import nnfit as nf
    >>> half = nf.callbacks.MixedPrecision()
    """

    def __init__(self, dtype: torch.dtype | None = None):
        self.dtype = dtype
        self._state = None

    def on_fit_begin(self, ctx):
        device_type = torch.device(ctx.device).type
        self.dtype_ = self.dtype or (torch.bfloat16 if device_type == "cpu" else torch.float16)
        ctx.autocast = functools.partial(torch.autocast, device_type=device_type, dtype=self.dtype_)
        ctx.scaler = None
        if device_type == "cuda" and self.dtype_ == torch.float16:
            ctx.scaler = torch.amp.GradScaler("cuda")
            if self._state is not None:
                ctx.scaler.load_state_dict(self._state)
        self._ctx = ctx

    def on_fit_end(self, ctx):
        self._state = self.state_dict()["scaler"]
        ctx.autocast, ctx.scaler = contextlib.nullcontext, None
        self._ctx = None

    def state_dict(self):
        ctx = getattr(self, "_ctx", None)
        scaler = ctx.scaler if ctx is not None else None
        return {"scaler": scaler.state_dict() if scaler is not None else self._state}

    def load_state_dict(self, state):
        self._state = state.get("scaler")
        ctx = getattr(self, "_ctx", None)  # AutoResume restores after on_fit_begin made the scaler
        if ctx is not None and ctx.scaler is not None and self._state is not None:
            ctx.scaler.load_state_dict(self._state)

    def __repr__(self):
        return "MixedPrecision()" if self.dtype is None else f"MixedPrecision(dtype={self.dtype})"


# nf.callbacks lists every callback a user passes: the checkpoint ones live in checkpoints.py.
from .checkpoints import AutoResume, Interrupt, KeepBestModel, ModelCheckpoint  # noqa: E402,F401

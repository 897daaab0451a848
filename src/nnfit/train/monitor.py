"""The monitor: one recorded quantity of a fit, watched epoch by epoch, and which way is better.

``EarlyStopping``, ``ModelCheckpoint``, ``KeepBestModel`` and ``LRScheduler``'s
``ReduceLROnPlateau`` all watch one quantity of the history ('valid_loss', 'train_mae', ...) and
ask one question of it: is this epoch's value a new best? ``Monitor`` answers it for all of them
(luz's monitor callbacks, Keras 3's ``MonitorCallback``), so they always agree. The direction
comes from what is monitored, never from its name: a loss is better lower, a metric says so
with its ``maximize`` attribute, an explicit ``mode="min"`` or ``"max"`` overrides both, and a
quantity that says nothing raises an ``ArgumentError`` asking for ``mode=``, as Keras does.

>>> import torch, nnfit as nf
>>> from nnfit.train.monitor import Monitor
>>> class BestEpoch(Monitor, nf.callbacks.Callback):
...     def on_epoch_end(self, ctx):
...         self.update(ctx)
>>> X = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)); y = X.sum(dim=1, keepdim=True)
>>> watch = BestEpoch("train_r2")
>>> fitted = (nf.setup(torch.nn.Linear, loss="mse", metrics=["r2"]).set_hparams(in_features=2, out_features=1)
...           .fit((X, y), epochs=3, seed=1, verbose=False, callbacks=[watch]))
>>> watch.monitor_, watch.mode_   # R2 says: larger is better
('train_r2', 'max')
>>> r2 = {epoch: value for split, name, epoch, value in fitted.records if name == "r2"}
>>> watch.best == max(r2.values()) and watch.best_epoch == max(r2, key=r2.get)
True
"""

from __future__ import annotations

import math
import numbers

from ..errors import ArgumentError

MODES = ("auto", "min", "max")


class Monitor:
    """Which quantity to watch, which way is better, and its best value so far.

    A base for callbacks, named before ``Callback`` so that its ``on_fit_begin`` and
    ``state_dict`` are the callback's (``class EarlyStopping(Monitor, Callback)``; a subclass
    that defines them calls ``super()``). ``monitor`` is
    'set_name' ('valid_loss', 'train_mae', 'valid_loss_kl' for a module's own loss 'kl');
    None watches 'valid_loss', or 'train_loss' when the fit has no validation data. ``mode``
    'auto' asks what is monitored: losses are minimized, a metric is maximized when its
    ``maximize`` is true; 'min' or 'max' says it outright. An epoch is a new best when its value
    beats the best so far (or, before any, the ``baseline``, when given) by more than
    ``min_delta``; a NaN never is. ``by`` names the callback in error messages (default: the
    class's name).

    After a fit: ``monitor_`` is the quantity watched, ``mode_`` its direction, ``best`` its
    best value and ``best_epoch`` (1-based) the epoch of it. Each fit starts afresh
    (``on_fit_begin``); ``state_dict`` keeps what ``AutoResume`` restores.

    >>> from nnfit.train.monitor import Monitor
    >>> Monitor("train_mae", min_delta=0.5).state_dict()
    {'best': None, 'best_epoch': None}
    >>> Monitor("valid_loss", mode="lowest")
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: mode must be 'auto', 'min' or 'max', not 'lowest'.
    """

    def __init__(self, monitor: str | None = None, mode: str = "auto", min_delta: float = 0.0, baseline=None,
                 by: str | None = None):
        if monitor is not None and not isinstance(monitor, str):
            raise ArgumentError(f"monitor must be a name such as 'valid_loss', not {monitor!r}.")
        if mode not in MODES:
            raise ArgumentError(f"mode must be 'auto', 'min' or 'max', not {mode!r}.")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or not 0 <= min_delta < math.inf:
            raise ArgumentError(f"min_delta must be a finite number, 0 or more, not {min_delta!r}.")
        self.monitor, self.mode, self.min_delta, self.baseline = monitor, mode, min_delta, baseline
        self.by = by or type(self).__name__
        self.reset()

    def reset(self) -> None:
        """Forget the best value and the resolved name and direction."""
        self.best = self.best_epoch = None
        self.monitor_ = self.mode_ = None

    def on_fit_begin(self, ctx) -> None:
        """Each fit starts afresh; ``AutoResume`` (later in ``on_fit_begin``) restores a resumed one's state."""
        self.reset()

    def name(self, ctx) -> str:
        """The quantity watched in ``ctx``'s fit: ``monitor``, or its default."""
        if self.monitor is not None:
            return self.monitor
        return "valid_loss" if ctx.valid_data is not None else "train_loss"

    def direction(self, ctx) -> str:
        """'min' or 'max': the given ``mode``, else what the monitored loss or metric says.

        An ``ArgumentError`` asking for ``mode=`` when neither says: a metric without a
        ``maximize`` attribute, or a value that is neither a loss nor a metric (``ctx.log``).
        """
        if self.mode != "auto":
            return self.mode
        name = self.name(ctx)
        split, _, quantity = name.partition("_")
        metrics = ctx.metrics
        for metric in metrics.get(split, ()):
            if metric.name == quantity:
                maximize = getattr(metric, "maximize", None)
                if maximize is None:
                    raise self._cannot_tell(name, f"its metric {type(metric).__name__} has no maximize attribute")
                return "max" if maximize else "min"
        if quantity == "loss" or quantity.startswith("loss_"):
            return "min"
        splits = ["train"] + (["valid"] if ctx.valid_data is not None else [])
        known = [f"{s}_{m.name}" for s in splits for m in metrics[s]]
        listed = f" ({', '.join(known)})" if known else ""
        raise self._cannot_tell(name, f"it is neither a loss nor one of this fit's metrics{listed}")

    def _cannot_tell(self, name: str, why: str) -> ArgumentError:
        return ArgumentError(
            f"{self.by} cannot tell whether a lower or a higher {name!r} is better: {why}. "
            "Pass mode='min' or mode='max'."
        )

    def update(self, ctx) -> tuple:
        """(improved, value): this epoch's value, and whether it is a new best (then kept as ``best``).

        With K models (``ctx.n_models``) each has its own best: ``improved`` and ``value`` are
        lists of K, and so are ``best`` and ``best_epoch``."""
        name = self.name(ctx)
        value = ctx.monitored(name, by=self.by)
        if self.mode_ is None:
            self.monitor_, self.mode_ = name, self.direction(ctx)
        if isinstance(value, list):
            if not isinstance(self.best, list):
                self.best, self.best_epoch = [None] * len(value), [None] * len(value)
            improved = [self._beats(v, self.best[k]) for k, v in enumerate(value)]
            for k, better in enumerate(improved):
                if better:
                    self.best[k], self.best_epoch[k] = value[k], ctx.epoch + 1
            return improved, value
        if not self._beats(value, self.best):
            return False, value
        self.best, self.best_epoch = value, ctx.epoch + 1
        return True, value

    def _beats(self, value: float, best) -> bool:
        """Whether ``value`` improves on ``best`` (or the baseline) by more than ``min_delta``."""
        reference = best if best is not None else self.baseline
        if value is None or math.isnan(value):
            return False
        if reference is None:
            return True
        return (reference - value if self.mode_ == "min" else value - reference) > self.min_delta

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]

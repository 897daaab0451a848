"""The learning-rate finder (luz's ``lr_finder``): train briefly while the learning rate grows.

The loss against the learning rate falls while the rate is useful and climbs once it is too
large; a good rate lies where the (smoothed) loss falls fastest, well before its minimum.

>>> import torch, nnfit as nf
>>> from torch import nn
>>> X = torch.randn(256, 3, generator=torch.Generator().manual_seed(0)); y = X @ torch.tensor([[1.0], [2.0], [-1.0]])
>>> learner = nf.setup(nn.Linear, loss=nn.MSELoss(), optimizer="sgd").set_hparams(in_features=3, out_features=1)
>>> records = nf.lr_finder(learner, (X, y), steps=50, seed=1)
>>> list(records.columns)
['lr', 'loss', 'smoothed_loss']
>>> 1e-7 <= records.suggested_lr <= 1e-1
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .hooks import Callback
from ..errors import ArgumentError, DivergenceError, NnfitError


class LRFinderResult(pd.DataFrame):
    """The finder's records (lr, loss, smoothed_loss, one row per step) with ``suggested_lr`` and ``plot()``.

    Slices and computations on it give plain DataFrames.

    >>> import torch, nnfit as nf
    >>> from torch import nn
    >>> X = torch.randn(64, 2); y = X.sum(1, keepdim=True)
    >>> learner = nf.setup(nn.Linear, loss="mse", optimizer="sgd").set_hparams(in_features=2, out_features=1)
    >>> records = nf.lr_finder(learner, (X, y), steps=10, seed=0)
    >>> figure = records.plot()
    """

    _metadata = ["suggested_lr"]

    @property
    def _constructor(self):
        return pd.DataFrame  # a slice or a computed frame is a plain DataFrame

    def plot(self, title: str | None = "Learning-rate finder"):
        """Loss and smoothed loss against the learning rate (log scale), the suggestion marked."""
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5.5, 3.6))
        axis.plot(self["lr"], self["loss"], alpha=0.35, label="loss")
        axis.plot(self["lr"], self["smoothed_loss"], label="smoothed loss")
        axis.axvline(self.suggested_lr, color="black", linestyle="--", linewidth=1,
                     label=f"suggested lr {self.suggested_lr:.2g}")
        axis.set_xscale("log")
        axis.set_xlabel("learning rate")
        axis.set_ylabel("loss")
        finite = self["smoothed_loss"][np.isfinite(self["smoothed_loss"])]
        if len(finite):  # keep the diverged tail from squashing the useful part
            low, high = finite.min(), finite.iloc[0]
            axis.set_ylim(low - 0.1 * abs(high - low), high + 0.5 * abs(high - low) + 1e-12)
        axis.legend()
        if title:
            axis.set_title(title)
        figure.tight_layout()
        return figure


def lr_finder(learner, data, steps: int = 100, start_lr: float = 1e-7, end_lr: float = 1e-1,
              log_spaced: bool = True, smoothing: float = 0.9, batch_size: int | None = 32,
              seed=None, device="auto", **fit_options) -> LRFinderResult:
    """Train a fresh copy of ``learner``'s module for ``steps`` batches, the learning rate rising
    from ``start_lr`` to ``end_lr`` (evenly on a log scale, or linearly with ``log_spaced=False``).

    Returns the records as a DataFrame (``lr``, ``loss`` of each batch, ``smoothed_loss``: an
    exponential moving average with weight ``smoothing``, bias-corrected) with
    ``.suggested_lr`` (where the smoothed loss falls fastest before its minimum) and
    ``.plot()``. The learner itself is left as it was. ``data`` and ``fit_options`` are as for
    ``fit``. The losses stay on the device until the sweep ends; a loss that diverges ends it.

    >>> import torch, nnfit as nf
    >>> from torch import nn
    >>> X = torch.randn(128, 2); y = X.sum(1, keepdim=True)
    >>> learner = nf.setup(nn.Linear, loss="mse", optimizer="sgd").set_hparams(in_features=2, out_features=1)
    >>> records = nf.lr_finder(learner, (X, y), steps=20, seed=0)
    >>> len(records)
    20
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ArgumentError(f"lr_finder needs steps to be a whole number of at least 2, not {steps!r}.")
    if not 0 < start_lr < end_lr:
        raise ArgumentError(f"lr_finder needs 0 < start_lr < end_lr; got start_lr={start_lr!r}, end_lr={end_lr!r}.")
    if not 0 <= smoothing < 1:
        raise ArgumentError(f"smoothing must lie in [0, 1), not {smoothing!r}.")
    if log_spaced:
        lrs = np.geomspace(start_lr, end_lr, steps)
    else:
        lrs = np.linspace(start_lr, end_lr, steps)
    sweep = _Sweep(lrs)
    try:
        learner.fit(data, epochs=steps, batch_size=batch_size, seed=seed, device=device, verbose=False,
                    callbacks=list(fit_options.pop("callbacks", [])) + [sweep], **fit_options)
    except _SweepDone:
        pass
    except DivergenceError:  # a rate so large that a whole epoch went non-finite: the sweep ends there
        pass
    # The one read from the device: every loss of the sweep at once.
    losses = torch.stack(sweep.losses).to("cpu", torch.float64).numpy() if sweep.losses else np.zeros(0)
    lrs = lrs[: len(losses)]
    smoothed = _smooth(losses, smoothing)
    result = LRFinderResult({"lr": lrs, "loss": losses, "smoothed_loss": smoothed})
    result.suggested_lr = suggest(lrs, smoothed)
    return result


def _smooth(losses: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average; it stays NaN/inf once the loss is."""
    out = np.empty_like(losses)
    average = 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out[i] = average / (1 - beta ** (i + 1))
    return out


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> float:
    """The rate where the smoothed loss falls fastest (per log-rate) before its minimum.

    >>> import numpy as np
    >>> lrs = np.geomspace(1e-4, 1, 5)
    >>> float(suggest(lrs, np.array([1.0, 0.9, 0.5, 0.3, 2.0])))
    0.01
    """
    finite = np.isfinite(smoothed)
    if not finite.any():
        return float(lrs[0])
    end = int(np.argmin(np.where(finite, smoothed, np.inf)))
    if end < 2:
        return float(lrs[end]) / 10
    slopes = np.gradient(smoothed[: end + 1], np.log(lrs[: end + 1]))
    return float(lrs[int(np.argmin(slopes))])


class _SweepDone(NnfitError):
    """Raised by the sweep after its last step; lr_finder catches it."""


class _Sweep(Callback):
    """Sets each batch's learning rate and keeps its loss on the device."""

    def __init__(self, lrs):
        self.lrs = lrs
        self.losses = []

    def on_train_batch_begin(self, ctx):
        lr = float(self.lrs[len(self.losses)])
        for opt in ctx.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr

    def on_train_batch_end(self, ctx):
        if not isinstance(ctx.loss, torch.Tensor):
            raise ArgumentError("lr_finder needs one loss per batch; a module's step() set several.")
        self.losses.append(ctx.loss.detach().reshape(()))
        if len(self.losses) == len(self.lrs):
            raise _SweepDone()

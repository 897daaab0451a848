"""Training that diverges is never returned silently: the one rule, and the guard every fit has.

``Divergence`` is the rule, the same for every engine and for one model or K: an epoch's training
loss that is NaN or infinite, or more than ``GROWTH`` times the untrained network's loss, has
diverged. ``DivergenceGuard`` applies it in every fit (one model: stop and keep the last finite
weights; K models: raise naming the model, or drop it with ``on_divergence="drop"``).

>>> from nnfit.train.divergence import Divergence, GROWTH
>>> GROWTH
10000.0
"""

from __future__ import annotations

import math

import torch

from ..errors import ArgumentError, DivergenceError
from .checkpoints import copy_weights
from .hooks import Callback

GROWTH = 1e4
"""An epoch whose training loss exceeds GROWTH times the untrained network's loss has diverged."""


class Divergence:
    """The one rule for a training loss that diverged, applied once per epoch by every engine.

    An epoch's training loss has diverged when it is NaN or infinite, or when it is more than
    ``GROWTH`` (10,000) times the loss of the untrained network: the loss of the first batch,
    computed before any step. The untrained loss is the reference because it is where every
    fit starts and what every useful fit improves on: a mean-squared error, cross-entropy or
    binary loss that training brings down never ends an epoch 10,000 times above it, while a
    learning rate too large for the problem multiplies it by 1e10 and more within a few
    batches (RMSprop at lr=1e6 on the penguins: 1e31 times, in the second batch). A reference taken after the
    first epoch would miss a fit that blew up in its first epoch and stayed there; one taken
    from the best loss so far would stop a fit that came close to zero loss and then moved a
    little. A loss that can be negative or is zero at the start (a reference <= 0) is checked
    only for NaN and infinity.

    ``n_models`` losses are checked at once (a stack of networks); ``first(losses)`` takes the
    first batch's loss of each (a device tensor, kept there), and ``check(values)`` the epoch's
    losses already read to the host; it reads the first batch's losses once per fit.

    >>> from nnfit.train.divergence import Divergence
    >>> rule = Divergence(n_models=2)
    >>> rule.reference = [1.0, 1.0]
    >>> rule.check([0.5, 3e4])
    [1]
    """

    def __init__(self, n_models: int = 1):
        self.n_models = n_models
        self.reference = None  # one float per model, once read
        self._first = None

    def first(self, losses) -> None:
        """Offer a batch's loss (one per model), or a ``loop.BatchLosses`` record to take its first
        batch's from when needed; the first loss offered in a fit is the reference."""
        if self.reference is not None:
            return
        if self._first is None or (not isinstance(self._first, torch.Tensor) and self._first.first() is None):
            self._first = losses.detach().reshape(-1) if isinstance(losses, torch.Tensor) else losses

    def _read_reference(self) -> None:
        if self.reference is None and self._first is not None:
            first = self._first if isinstance(self._first, torch.Tensor) else self._first.first()
            if first is not None:
                self.reference = first.detach().reshape(-1).to("cpu", torch.float64).tolist()  # once per fit

    def reason(self, value: float, k: int = 0):
        """'non-finite', 'growth' or None for model k's epoch loss ``value``."""
        if not math.isfinite(value):
            return "non-finite"
        self._read_reference()
        if self.reference is not None and self.reference[k] > 0 and value > GROWTH * self.reference[k]:
            return "growth"
        return None

    def check(self, values) -> list:
        """The models (0-based) whose epoch losses ``values`` have diverged."""
        return [k for k, value in enumerate(values) if self.reason(value, k) is not None]

    def describe(self, value: float, at: str, k: int = 0, of: str = "") -> str:
        """'The training loss{of} became nan in {at}', or '... grew to 3e+29 in {at}, more than ...'."""
        if self.reason(value, k) == "growth":
            return (
                f"The training loss{of} grew to {value:.4g} in {at}, more than {GROWTH:,.0f} times the untrained "
                f"network's loss ({self.reference[k]:.4g})"
            )
        return f"The training loss{of} became {value} in {at}"

    def state_dict(self) -> dict:
        self._read_reference()
        return {"reference": self.reference}

    def load_state_dict(self, state: dict) -> None:
        self.reference, self._first = state.get("reference"), None


def lower_rate(lr) -> str:
    """' (e.g. lr=0.001 instead of 0.01)' for a learning rate, or ''.

    >>> from nnfit.train.divergence import lower_rate
    >>> lower_rate(0.01), lower_rate(None)
    (' (e.g. lr=0.001 instead of 0.01)', '')
    """
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0:
        return f" (e.g. lr={lr / 10:g} instead of {lr:g})"
    return ""


SCALE_HINT = (
    "or scale the response (standardize y, e.g. nf.Design(..., scale_response=True)) and the predictors."
)


def divergence_error(rule: Divergence, k: int, value: float, epoch: int, name: str, lr=None,
                     can_drop: bool = True) -> DivergenceError:
    """The DivergenceError for model k of a stack (named ``name``: 'model 3 of 5', 'fold 2', ...).

    >>> from nnfit.train.divergence import Divergence, divergence_error
    >>> str(divergence_error(Divergence(2), 1, float("nan"), 3, "model 2 of 2", 0.1))[:53]
    'The training loss of model 2 of 2 became nan in epoch'
    """
    drop = " To keep the other models and drop the ones that diverge, pass on_divergence='drop'." if can_drop else ""
    return DivergenceError(
        f"{rule.describe(value, f'epoch {epoch}', k, of=f' of {name}')}. Training stopped. "
        f"Try a lower learning rate{lower_rate(lr)}, {SCALE_HINT}{drop}",
        epoch=epoch, last_finite_loss=None,
    )


def all_diverged_error(errors) -> DivergenceError:
    """The error when every one of several models diverged: it quotes the first one's.

    >>> from nnfit.errors import DivergenceError
    >>> from nnfit.train.divergence import all_diverged_error
    >>> str(all_diverged_error([DivergenceError("A."), DivergenceError("B.")]))
    'Every one of the 2 models diverged, so none is left to keep; the first: A.'
    """
    errors = list(errors)
    first = errors[0]
    if len(errors) == 1:
        return first
    return DivergenceError(
        f"Every one of the {len(errors)} models diverged, so none is left to keep; the first: {first}", epoch=first.epoch
    )


def check_on_divergence(value) -> str:
    """'error' or 'drop', else an ArgumentError.

    >>> from nnfit.train.divergence import check_on_divergence
    >>> check_on_divergence("drop")
    'drop'
    """
    if value not in ("error", "drop"):
        raise ArgumentError(
            f"on_divergence must be 'error' (raise DivergenceError) or 'drop' (keep the models that did not "
            f"diverge), not {value!r}."
        )
    return value


class DivergenceGuard(Callback):
    """Stops a fit whose training loss diverges; the model keeps its last finite weights.

    The rule is ``Divergence``'s, the same for every engine: an epoch's training loss that is
    NaN or infinite, or more than ``GROWTH`` (10,000) times the untrained network's loss (the
    first batch's, before any step) has diverged. Every fit has a guard. It reads nothing from
    the device during an epoch: it reads the loop's record of the batch losses, kept on the
    device (``ctx.batch_losses``, the one ``MetricsRecorder`` reads too), and checks the epoch's
    loss once the metrics are recorded (and reads the first batch's loss once, at the end of
    the first epoch). At the start of each epoch whose weights are all finite it copies
    them, on the device (one copy, chosen there with ``torch.where``, so that no read is
    needed), to go back to. The ``DivergenceError`` names the epoch and batch and holds the
    model with those weights:

    >>> import nnfit as nf
    >>> try:
    ...     fitted = learner.fit((X, y), epochs=50)  # doctest: +SKIP
    ... except nf.errors.DivergenceError as error:
    ...     model = error.model  # the last finite weights  # doctest: +SKIP
    """

    weight = -900  # after MetricsRecorder has recorded the epoch's loss

    def __init__(self):
        self.rule = Divergence()

    def on_fit_begin(self, ctx):
        self._snapshot = self._snapshot_epoch = None  # the weights, and their epoch as a device tensor
        self._flat = None  # (the flat weights, their copy) when the model's state is one optimizer buffer
        self._last_finite = None  # (loss, epoch, batch), 1-based; the loss a 0-d device tensor
        self.rule = Divergence(ctx.n_models)  # AutoResume (later in on_fit_begin) may restore its reference

    def on_epoch_begin(self, ctx):
        if ctx.stacked:  # K models: a diverged one is dropped or named in the error, not rolled back
            return
        if self._flat is not None:  # the weights are one flat buffer: one check and one copy
            weights, snapshot = self._flat
            finite = torch.isfinite(weights).all()
            torch.where(finite, weights, snapshot, out=snapshot)
            epoch = torch.tensor(ctx.epoch + 1, device=weights.device)
            self._snapshot_epoch = torch.where(finite, epoch, self._snapshot_epoch)
            return
        state = ctx.model.state_dict()
        floating = [value for value in state.values() if value.is_floating_point()]
        if not floating:
            return
        epoch = torch.tensor(ctx.epoch + 1, device=floating[0].device)
        if self._snapshot is None:
            found = _flat_snapshot(state, getattr(getattr(ctx, "opt", None), "flat_params", None))
            if found is None:
                self._snapshot = copy_weights(ctx.model)
            else:  # from now on one check and one copy of the flat buffer (above)
                weights, copy, views = found
                self._flat, self._snapshot = (weights, copy), views
            self._snapshot_epoch = epoch
            return
        if len({value.device for value in floating}) == 1:  # one check of all the weights at once
            finite = torch.isfinite(torch.cat([value.reshape(-1) for value in floating])).all()
        else:
            finite = torch.stack([torch.isfinite(value).all() for value in floating]).all()
        for name, value in state.items():  # keep the old copy where the new weights are broken
            snapshot = self._snapshot[name]
            torch.where(finite, value, snapshot, out=snapshot)
        self._snapshot_epoch = torch.where(finite, epoch, self._snapshot_epoch)

    def on_train_begin(self, ctx):
        # The loop's record of this epoch's batch losses (``ctx.batch_losses``, which
        # MetricsRecorder reads too); its first batch's is the untrained loss, until one is read.
        self._losses = ctx.batch_losses["train"]
        self.rule.first(self._losses)

    def on_train_end(self, ctx):
        if ctx.stacked:
            return self._check_models(ctx)
        loss = _train_loss(ctx)
        if loss is None or self.rule.reason(loss) is None:
            last = self._losses.last()
            if last is not None:  # kept on the device; read only if a later epoch diverges
                self._last_finite = (last[0], ctx.epoch + 1, last[1])
            return
        raise self._diverged(ctx, loss)

    def state_dict(self):
        return self.rule.state_dict()

    def load_state_dict(self, state):
        self.rule.load_state_dict(state)

    def _check_models(self, ctx):
        """K models: each one's epoch loss by the rule; one that diverged raises, or with
        ``ctx.on_divergence == "drop"`` stops training and is listed in ``ctx.diverged``."""
        losses = ctx.get_metrics("train").get("loss", [])
        lr = ctx.opt.param_groups[0].get("lr")
        for k in self.rule.check(losses):
            if k in ctx.diverged:
                continue
            rate = lr[k] if isinstance(lr, (list, tuple)) else lr
            error = divergence_error(self.rule, k, losses[k], ctx.epoch + 1, ctx.model_names[k], rate,
                                     can_drop=ctx.on_divergence == "error")
            if ctx.on_divergence == "error":
                raise error
            ctx.diverged[k] = error
            ctx.deactivate(k)

    def _diverged(self, ctx, epoch_loss):
        # Only now, on the way to an error, are the batch losses read from the device.
        totals = self._losses.totals()
        losses = torch.stack(totals).double().cpu() if totals else torch.zeros(0)
        epoch = ctx.epoch + 1
        reference = (self.rule.reference or [None])[0]
        if math.isfinite(epoch_loss):  # grew too much: the first batch past the threshold
            bad = (losses > GROWTH * reference).nonzero().reshape(-1)
        else:
            bad = (~torch.isfinite(losses)).nonzero().reshape(-1)
        if len(bad):
            first = int(bad[0])
            value, at, batch = float(losses[first]), f"epoch {epoch}, batch {first + 1}", first + 1
            if first > 0:
                self._last_finite = (losses[first - 1], epoch, first)
        elif math.isfinite(epoch_loss):
            value, at, batch = epoch_loss, f"epoch {epoch} (no single batch loss went past it)", None
        else:
            value, at, batch = epoch_loss, f"epoch {epoch} (every batch loss was finite; their sum overflowed)", None
        if _all_finite(self._snapshot):
            ctx.model.load_state_dict(self._snapshot)
            keeps = f"the model keeps its weights from the start of epoch {int(self._snapshot_epoch)}"
        else:
            keeps = "no finite weights were left to keep"
        grew = math.isfinite(value)
        if self._last_finite is None:
            before = "no loss came before it" if grew else "no finite loss came before it"
        else:
            last, last_epoch, last_batch = self._last_finite
            before = ("the loss before it was" if grew else "the last finite loss was") + (
                f" {float(last):.6g}, in epoch {last_epoch}, batch {last_batch}")
        lr = ctx.opt.param_groups[0].get("lr") if ctx.optimizers else None
        return DivergenceError(
            f"{self.rule.describe(value, at)}; {before}. Training stopped and {keeps}. "
            f"Try a lower learning rate{lower_rate(lr)}, {SCALE_HINT}",
            model=ctx.model, epoch=epoch, batch=batch,
            last_finite_loss=None if self._last_finite is None else float(self._last_finite[0]),
        )


def _train_loss(ctx):
    """This epoch's recorded training loss (the first non-finite one of several), or None."""
    found = None
    for split, name, epoch, value in reversed(ctx.records):
        if epoch != ctx.epoch + 1:
            break
        if split == "train" and (name == "loss" or name.startswith("loss_")):
            if not math.isfinite(value):
                return value
            found = value
    return found


def _flat_snapshot(state: dict, flat):
    """(flat, its copy, {name: the copy's view}) when every value of ``state`` is a floating view of
    the one flat tensor ``flat`` (nnfit's closed-form optimizer holds a network's weights so) and
    together they are all of it; else None.

    >>> import torch
    >>> from nnfit.train.divergence import _flat_snapshot
    >>> flat = torch.arange(5.0)
    >>> weights, copy, views = _flat_snapshot({"w": flat[:3].view(3, 1), "b": flat[3:]}, flat)
    >>> copy.data_ptr() != flat.data_ptr(), views["w"].shape, views["b"].tolist()
    (True, torch.Size([3, 1]), [3.0, 4.0])
    >>> _flat_snapshot({"w": flat[:3]}, flat) is None   # not all of it
    True
    """
    if not isinstance(flat, torch.Tensor) or not flat.is_floating_point() or not flat.is_contiguous():
        return None
    start, size, offsets = flat.data_ptr(), flat.element_size(), {}
    for name, value in state.items():
        inside = (value.dtype == flat.dtype and value.device == flat.device and value.is_contiguous()
                  and value.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr())
        if not inside:
            return None
        offsets[name] = ((value.data_ptr() - start) // size, value.numel(), value.shape)
    spans = sorted((offset, n) for offset, n, _ in offsets.values())
    if [offset for offset, _ in spans] != [sum(n for _, n in spans[:i]) for i in range(len(spans))] \
            or sum(n for _, n in spans) != flat.numel():
        return None
    copy = flat.clone()
    return flat, copy, {name: copy[offset : offset + n].view(shape) for name, (offset, n, shape) in offsets.items()}


def _all_finite(weights) -> bool:
    if weights is None:
        return False
    return all(bool(torch.isfinite(w).all()) for w in weights.values() if w.is_floating_point())

"""Checkpoints: the whole state of a fit in one safe file, and the callbacks that use it.

A checkpoint holds what continuing a fit exactly needs: the model's weights, every optimizer's
state, every random-number generator (torch's global CPU and CUDA generators that dropout
draws from, the loop's shuffling generator, numpy's and Python's), the number of epochs done,
the history and each callback's ``state_dict``. It is a model file like any other (safetensors
for the tensors, JSON for the rest, a checksum, an atomic write), so loading one runs no code.

Checkpoints are taken at the end of an epoch: resuming redoes the epoch that was cut short,
from the same generator states, so the result is bit for bit that of an uninterrupted run.

>>> import nnfit as nf
>>> callbacks = [nf.callbacks.AutoResume("run-state"), nf.callbacks.KeepBestModel()]
"""

from __future__ import annotations

import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import files
from .callbacks import Callback, direction, where
from .errors import ArgumentError, DivergenceError, InterruptedWarning, ModelFileError, TrainingError

CHECKPOINT_FILE = "checkpoint.nnfit"
KIND = "checkpoint"


# ---------------------------------------------------------------------- saving and loading
def save_checkpoint(path, ctx, epoch_seconds: float = 0.0) -> None:
    """Write the state of ``ctx``'s fit at the end of its current epoch to ``path``, atomically.

    ``epoch_seconds`` is how long the epoch took (the loop records it after the epoch's hooks).
    Call it from a callback's ``on_epoch_end``, as ``ModelCheckpoint`` and ``AutoResume`` do:

    >>> import nnfit as nf
    >>> from nnfit.checkpoints import save_checkpoint
    >>> class EveryTenth(nf.callbacks.Callback):
    ...     def on_epoch_end(self, ctx):
    ...         if (ctx.epoch + 1) % 10 == 0:
    ...             save_checkpoint(f"run/epoch-{ctx.epoch + 1}.nnfit", ctx)
    """
    state = {
        "model": ctx.model.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in ctx.optimizers.items()},
        "rng": _rng_state(ctx.generator),
        "epoch": ctx.epoch + 1,
        "batch": 0,  # the position to go on from: epoch `epoch` (0-based), its first batch
        "finished": bool(ctx.stop_training and ctx.epoch + 1 >= ctx.min_epochs),
        "records": list(ctx.records),
        "epoch_seconds": list(ctx.epoch_seconds) + [float(epoch_seconds)],
        "callbacks": {},
    }
    for key, callback in _keyed(ctx.hooks.callbacks):
        state["callbacks"][key] = callback.state_dict()
    tensors = {}
    packed = {}
    for key, value in state.items():
        try:
            packed[key] = files.pack(value, tensors, key)
        except TypeError as error:
            raise TrainingError(
                f"Cannot write the checkpoint {str(path)!r}: the {key} state holds a value that cannot be "
                f"stored safely ({error}). A callback's state_dict() must return tensors, numbers, strings, "
                "lists and dicts."
            ) from None
    model = type(ctx.model)
    files.write(path, tensors, {"kind": KIND, "module": f"{model.__module__}.{model.__qualname__}", "state": packed})


def read_checkpoint(path) -> dict:
    """The state a checkpoint file holds (weights, optimizers, generators, epoch, history, callbacks).

    ``state["model"]`` is the model's state_dict: ``module.load_state_dict(state["model"])``
    restores the weights of an epoch that ``ModelCheckpoint`` saved.

    >>> from nnfit.checkpoints import read_checkpoint
    >>> # state = read_checkpoint("checkpoints/epoch-07.nnfit"); state["epoch"]  -> 7
    """
    tensors, metadata = files.read(path)
    if metadata.get("kind") != KIND:
        raise ModelFileError(f"{str(path)!r} is a model file, not a checkpoint; load it with nf.load().")
    try:
        state = {key: files.unpack(value, tensors) for key, value in metadata["state"].items()}
        state["module"] = metadata["module"]
        return state
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelFileError(f"The checkpoint {str(path)!r} is inconsistent ({error}).") from None


def load_checkpoint(path, ctx) -> None:
    """Restore the fit in ``ctx`` to the state saved in ``path``; training continues after its epoch.

    What ``AutoResume`` does when a fit begins; a callback's ``on_fit_begin`` may do the same:

    >>> from nnfit.checkpoints import load_checkpoint
    >>> # load_checkpoint("run/epoch-10.nnfit", ctx); ctx.start_epoch  -> 10
    """
    state = read_checkpoint(path)
    if state.get("batch", 0) != 0:
        raise ModelFileError(
            f"The checkpoint {str(path)!r} was taken in the middle of an epoch, which this nnfit cannot resume; "
            "upgrade nnfit, or delete it to start again."
        )
    try:
        ctx.model.load_state_dict(state["model"])
        if sorted(state["optimizers"]) != sorted(ctx.optimizers):
            raise ValueError(f"optimizers {sorted(state['optimizers'])} instead of {sorted(ctx.optimizers)}")
        for name, opt in ctx.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        callbacks = dict(_keyed(ctx.hooks.callbacks))
        for key, callback_state in state["callbacks"].items():
            if key in callbacks:
                callbacks[key].load_state_dict(callback_state)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise ModelFileError(
            f"The checkpoint {str(path)!r} does not match this fit (it was written for {state['module']}): "
            f"{error}. Delete it, or resume with the same module, optimizer and callbacks."
        ) from None
    _set_rng_state(state["rng"], ctx.generator)
    ctx.records[:] = [tuple(row) for row in state["records"]]
    ctx.epoch_seconds[:] = state["epoch_seconds"]
    ctx.epoch = state["epoch"] - 1
    ctx.start_epoch = max(ctx.epochs, state["epoch"]) if state["finished"] else state["epoch"]


def _keyed(callbacks):
    """('EarlyStopping', cb), ('EarlyStopping#2', cb2), ...: names that survive reordering."""
    counts = {}
    for callback in callbacks:
        name = type(callback).__name__
        counts[name] = counts.get(name, 0) + 1
        yield (name if counts[name] == 1 else f"{name}#{counts[name]}"), callback


def _rng_state(generator) -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "generator": None if generator is None else generator.get_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator) -> None:
    torch.set_rng_state(state["torch"])
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _copy_weights(model, into=None) -> dict:
    """A copy of the model's state_dict on its device, reusing ``into``'s buffers when given."""
    state = model.state_dict()
    if into is None:
        return {name: value.detach().clone() for name, value in state.items()}
    for name, value in state.items():
        into[name].copy_(value)
    return into


class _Best:
    """The best value so far of a monitored metric ('valid_loss', 'train_mae', ...)."""

    def __init__(self, monitor, mode: str, min_delta: float):
        if monitor is not None and not isinstance(monitor, str):
            raise ArgumentError(f"monitor must be a name such as 'valid_loss', not {monitor!r}.")
        if mode not in ("auto", "min", "max"):
            raise ArgumentError(f"mode must be 'auto', 'min' or 'max', not {mode!r}.")
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.value = self.epoch = None

    def name(self, ctx) -> str:
        """The monitor, by default 'valid_loss' (or 'train_loss' without validation data)."""
        if self.monitor is not None:
            return self.monitor
        return "valid_loss" if ctx.valid_data is not None else "train_loss"

    def update(self, ctx):
        """(improved, value) for the current epoch."""
        name = self.name(ctx)
        value = ctx.monitored(name)
        sign = 1.0 if direction(name, self.mode) == "min" else -1.0
        if not math.isnan(value) and (self.value is None or sign * (self.value - value) > self.min_delta):
            self.value, self.epoch = value, ctx.epoch + 1
            return True, value
        return False, value

    def state_dict(self) -> dict:
        return {"value": self.value, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.epoch = state["value"], state["epoch"]


# ---------------------------------------------------------------------- callbacks
class ModelCheckpoint(Callback):
    """Save a checkpoint at the end of each epoch, or only when ``monitor`` improves.

    ``path`` is a template: ``{epoch}`` is the epoch (1-based) and ``{monitor}`` the monitored
    value, with any format spec (``"checkpoints/epoch-{epoch:02d}-{monitor:.3f}.nnfit"``);
    missing folders are created. ``monitor`` defaults to 'valid_loss', or 'train_loss' when
    there is no validation data; ``mode`` 'auto' minimizes losses and errors and maximizes
    accuracy, r2, auc, ... Each file is a full checkpoint: ``read_checkpoint(path)["model"]`` is
    the model's state_dict. ``.saved`` lists the files written, ``.best_path`` the best one.

    >>> import nnfit as nf
    >>> keep = nf.callbacks.ModelCheckpoint("checkpoints/epoch-{epoch:02d}.nnfit", save_best_only=True)
    """

    weight = 900  # after callbacks that change state at the end of an epoch

    def __init__(self, path, monitor: str | None = None, save_best_only: bool = False, mode: str = "auto",
                 min_delta: float = 0.0):
        if not isinstance(path, (str, Path)):
            raise ArgumentError(f"path must be a file name template such as 'epoch-{{epoch}}.nnfit', not {path!r}.")
        self.path = str(path)
        try:
            self.path.format(epoch=1, monitor=0.5)
        except (KeyError, IndexError, ValueError) as error:
            raise ArgumentError(
                f"The path template {self.path!r} cannot be filled ({type(error).__name__}: {error}); "
                "it may use {epoch} and {monitor}, e.g. 'epoch-{epoch:02d}-{monitor:.3f}.nnfit'."
            ) from None
        self.save_best_only = bool(save_best_only)
        self._best = _Best(monitor, mode, min_delta)
        self.saved = []
        self.best_path = None

    def on_epoch_begin(self, ctx):
        self._began = time.perf_counter()

    def on_epoch_end(self, ctx):
        improved, value = self._best.update(ctx)
        if self.save_best_only and not improved:
            return
        target = Path(self.path.format(epoch=ctx.epoch + 1, monitor=value))
        if target.is_dir():
            raise ArgumentError(f"The checkpoint path {str(target)!r} is a directory; give a file name template.")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.saved.append(str(target))
        if improved:
            self.best_path = str(target)
        save_checkpoint(target, ctx, time.perf_counter() - self._began)

    def state_dict(self):
        return {"best": self._best.state_dict(), "saved": self.saved, "best_path": self.best_path}

    def load_state_dict(self, state):
        self._best.load_state_dict(state["best"])
        self.saved, self.best_path = list(state["saved"]), state["best_path"]

    def __repr__(self):
        return f"ModelCheckpoint({self.path!r}, monitor={self._best.monitor!r}, save_best_only={self.save_best_only})"


class KeepBestModel(Callback):
    """At the end of the fit, give the model the weights of its best epoch by ``monitor``.

    The best weights are kept in memory (on the model's device) as training goes.
    ``monitor`` defaults to 'valid_loss', or 'train_loss' without validation data;
    ``.best_epoch`` and ``.best_value`` say which epoch won.

    >>> import nnfit as nf
    >>> best = nf.callbacks.KeepBestModel(monitor="valid_loss")
    """

    weight = 800

    def __init__(self, monitor: str | None = None, mode: str = "auto", min_delta: float = 0.0):
        self._best = _Best(monitor, mode, min_delta)
        self._weights = None

    @property
    def best_epoch(self):
        return self._best.epoch

    @property
    def best_value(self):
        return self._best.value

    def on_epoch_end(self, ctx):
        improved, _ = self._best.update(ctx)
        if improved:
            self._weights = _copy_weights(ctx.model, self._weights)

    def on_fit_end(self, ctx):
        if self._weights is not None:
            ctx.model.load_state_dict(self._weights)

    def state_dict(self):
        return {"best": self._best.state_dict(), "weights": self._weights}

    def load_state_dict(self, state):
        self._best.load_state_dict(state["best"])
        self._weights = state["weights"]

    def __repr__(self):
        return f"KeepBestModel(monitor={self._best.monitor!r})"


class Interrupt(Callback):
    """Ctrl-C ends the fit and returns the model as it is then, with an ``InterruptedWarning``.

    Without it, Ctrl-C raises KeyboardInterrupt as usual. The epochs that finished are in the
    history; the last, cut-short epoch's batches did update the weights.

    >>> import nnfit as nf
    >>> # fitted = learner.fit(data, epochs=1000, callbacks=[nf.callbacks.Interrupt()])  # Ctrl-C when bored
    """

    def on_fit_begin(self, ctx):
        ctx.interruptible = True

    def on_fit_end(self, ctx):
        if ctx.interrupted:
            warnings.warn(
                f"Training was interrupted {where(ctx)}; the model is returned as it was then "
                f"({len(ctx.epoch_seconds)} complete epochs).",
                InterruptedWarning,
                stacklevel=2,
            )


class AutoResume(Callback):
    """Rerun a script after a crash and the fit continues from its last checkpoint in ``path``.

    A checkpoint (``path``/checkpoint.nnfit) is written atomically at the end of every
    ``every`` epochs. When the fit starts and one is there, the weights, optimizers, random
    generators, history and callback states are restored and training goes on after that
    epoch, so with the same ``seed`` the result is bit-identical to an uninterrupted run. The
    checkpoint is deleted when the fit ends normally (kept after Ctrl-C with ``Interrupt``).
    A larger ``epochs`` on the rerun trains on; a fit that early stopping ended stays ended.

    >>> import nnfit as nf
    >>> resume = nf.callbacks.AutoResume("mass-run")
    >>> # fitted = learner.fit((X, y), epochs=500, seed=1, callbacks=[resume])
    """

    weight = 950  # restores after other callbacks began, saves after they ended the epoch

    def __init__(self, path="nnfit-resume", every: int = 1):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ArgumentError(f"every must be a positive whole number of epochs, not {every!r}.")
        self.path = Path(path)
        self.every = every
        self.resumed_from = None

    @property
    def file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    def on_fit_begin(self, ctx):
        if self.path.exists() and not self.path.is_dir():
            raise ArgumentError(f"AutoResume needs a folder, but {str(self.path)!r} is a file.")
        self.path.mkdir(parents=True, exist_ok=True)
        files.remove_temporaries(self.file)  # a write that a crash cut short
        self.resumed_from = None
        if self.file.exists():
            load_checkpoint(self.file, ctx)
            self.resumed_from = ctx.start_epoch

    def on_epoch_begin(self, ctx):
        self._began = time.perf_counter()

    def on_epoch_end(self, ctx):
        if (ctx.epoch + 1) % self.every == 0 or ctx.epoch + 1 == ctx.epochs or ctx.stop_training:
            save_checkpoint(self.file, ctx, time.perf_counter() - self._began)

    def on_fit_end(self, ctx):
        if not ctx.interrupted and self.file.exists():
            self.file.unlink()

    def __repr__(self):
        return f"AutoResume({str(self.path)!r})"


class DivergenceGuard(Callback):
    """Stops a fit whose training loss becomes NaN or infinite; the model keeps finite weights.

    Every fit has one. It reads nothing from the device during an epoch: it keeps each batch's
    loss on the device and checks the epoch's loss once the metrics are recorded. At the start
    of each epoch whose weights are all finite it copies them, on the device (one copy, chosen
    there with ``torch.where``, so that no read is needed), to go back to. The
    ``DivergenceError`` names the epoch and batch and holds the model with those weights:

    >>> import nnfit as nf
    >>> try:
    ...     fitted = learner.fit((X, y), epochs=50)  # doctest: +SKIP
    ... except nf.errors.DivergenceError as error:
    ...     model = error.model  # the last finite weights  # doctest: +SKIP
    """

    weight = -900  # after MetricsRecorder has recorded the epoch's loss

    def on_fit_begin(self, ctx):
        self._snapshot = self._snapshot_epoch = None  # the weights, and their epoch as a device tensor
        self._last_finite = None  # (loss, epoch, batch), 1-based; the loss a 0-d device tensor

    def on_epoch_begin(self, ctx):
        state = ctx.model.state_dict()
        floating = [value for value in state.values() if value.is_floating_point()]
        if not floating:
            return
        epoch = torch.tensor(ctx.epoch + 1, device=floating[0].device)
        if self._snapshot is None:
            self._snapshot, self._snapshot_epoch = _copy_weights(ctx.model), epoch
            return
        finite = torch.stack([torch.isfinite(value).all() for value in floating]).all()
        for name, value in state.items():  # keep the old copy where the new weights are broken
            self._snapshot[name].copy_(torch.where(finite, value, self._snapshot[name]))
        self._snapshot_epoch = torch.where(finite, epoch, self._snapshot_epoch)

    def on_train_begin(self, ctx):
        self._losses = []

    def on_train_batch_end(self, ctx):
        loss = ctx.loss
        if isinstance(loss, dict):  # a module's step() may set several: their sum is finite iff each is
            loss = sum(value.detach().reshape(()) for value in loss.values() if isinstance(value, torch.Tensor))
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach().reshape(()))

    def on_train_end(self, ctx):
        loss = _train_loss(ctx)
        if loss is None or math.isfinite(loss):
            if self._losses:  # kept on the device; read only if a later epoch diverges
                self._last_finite = (self._losses[-1], ctx.epoch + 1, len(self._losses))
            return
        raise self._diverged(ctx, loss)

    def _diverged(self, ctx, epoch_loss):
        # Only now, on the way to an error, are the batch losses read from the device.
        losses = torch.stack(self._losses).double().cpu() if self._losses else torch.zeros(0)
        bad = (~torch.isfinite(losses)).nonzero().reshape(-1)
        epoch = ctx.epoch + 1
        if len(bad):
            first = int(bad[0])
            value, at = float(losses[first]), f"epoch {epoch}, batch {first + 1}"
            if first > 0:
                self._last_finite = (losses[first - 1], epoch, first)
            batch = first + 1
        else:
            value, at, batch = epoch_loss, f"epoch {epoch} (every batch loss was finite; their sum overflowed)", None
        if _all_finite(self._snapshot):
            ctx.model.load_state_dict(self._snapshot)
            keeps = f"the model keeps its weights from the start of epoch {int(self._snapshot_epoch)}"
        else:
            keeps = "no finite weights were left to keep"
        if self._last_finite is None:
            before = "no finite loss came before it"
        else:
            last, last_epoch, last_batch = self._last_finite
            before = f"the last finite loss was {float(last):.6g}, in epoch {last_epoch}, batch {last_batch}"
        lr = ctx.opt.param_groups[0].get("lr") if ctx.optimizers else None
        lower = f" (e.g. lr={lr / 10:g} instead of {lr:g})" if isinstance(lr, (int, float)) else ""
        return DivergenceError(
            f"The training loss became {value} in {at}; {before}. Training stopped and {keeps}. "
            f"Try a lower learning rate{lower}, or scale the response (standardize y, e.g. "
            "nf.Design(..., scale_response=True)) and the predictors.",
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


def _all_finite(weights) -> bool:
    if weights is None:
        return False
    return all(bool(torch.isfinite(w).all()) for w in weights.values() if w.is_floating_point())

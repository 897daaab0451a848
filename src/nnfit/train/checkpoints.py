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

import hashlib
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import files
from .callbacks import Callback, where
from ..errors import ArgumentError, ArgumentTypeError, DivergenceError, InterruptedWarning, ModelFileError, TrainingError
from .monitor import Monitor

CHECKPOINT_FILE = "checkpoint.nnfit"
KIND = "checkpoint"


# ---------------------------------------------------------------------- saving and loading
def save_checkpoint(path, ctx, epoch_seconds: float = 0.0, run: dict | None = None) -> None:
    """Write the state of ``ctx``'s fit at the end of its current epoch to ``path``, atomically.

    ``epoch_seconds`` is how long the epoch took (the loop records it after the epoch's hooks);
    ``run`` is the fit's ``run_fingerprint``, which AutoResume compares before resuming.
    Call it from a callback's ``on_epoch_end``, as ``ModelCheckpoint`` and ``AutoResume`` do:

    >>> import nnfit as nf
    >>> from nnfit.train.checkpoints import save_checkpoint
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
    if ctx.stacked:  # K models: each one's shuffling generator, which still train, which diverged
        state["generators"] = [g.get_state() for g in ctx.train_data.generators]
        state["active"] = ctx.active
        state["diverged"] = {str(k): str(error) for k, error in ctx.diverged.items()}
    if run is not None:
        state["run"] = dict(run)
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

    >>> from nnfit.train.checkpoints import read_checkpoint
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


def load_checkpoint(path, ctx, state: dict | None = None) -> None:
    """Restore the fit in ``ctx`` to the state saved in ``path``; training continues after its epoch.

    What ``AutoResume`` does when a fit begins; a callback's ``on_fit_begin`` may do the same:

    >>> from nnfit.train.checkpoints import load_checkpoint
    >>> # load_checkpoint("run/epoch-10.nnfit", ctx); ctx.start_epoch  -> 10

    ``state`` is the file's contents when they were read already (``read_checkpoint(path)``).
    """
    state = read_checkpoint(path) if state is None else state
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
    if ctx.stacked:
        for generator, saved in zip(ctx.train_data.generators, state["generators"]):
            generator.set_state(saved)
        for k, training in enumerate(state["active"]):
            if not training:
                ctx.deactivate(k)
        ctx.diverged = {int(k): DivergenceError(text) for k, text in state["diverged"].items()}
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


def _copy_weights(model, into=None, models=None) -> dict:
    """A copy of the model's state_dict on its device, reusing ``into``'s buffers when given.

    ``models`` (K stacked models, every tensor (K, ...)): copy only those models' slices into ``into``."""
    state = model.state_dict()
    if into is None:
        return {name: value.detach().clone() for name, value in state.items()}
    for name, value in state.items():
        if models is None:
            into[name].copy_(value)
        else:
            into[name][models] = value[models]
    return into


# ---------------------------------------------------------------------- callbacks
class ModelCheckpoint(Monitor, Callback):
    """Save a checkpoint at the end of each epoch, or only when ``monitor`` improves.

    ``path`` is a template: ``{epoch}`` is the epoch (1-based) and ``{monitor}`` the monitored
    value, with any format spec (``"checkpoints/epoch-{epoch:02d}-{monitor:.3f}.nnfit"``);
    missing folders are created. ``monitor`` defaults to 'valid_loss', or 'train_loss' when
    there is no validation data; ``mode`` 'auto' asks the metric which way is better, as
    ``EarlyStopping`` does (``nnfit.train.monitor.Monitor``), and ``min_delta`` is the least gain
    that counts. Each file is a full checkpoint: ``read_checkpoint(path)["model"]`` is the
    model's state_dict. ``.saved`` lists the files written, ``.best_path`` the best one.

    >>> import os, tempfile, torch, nnfit as nf
    >>> folder = tempfile.mkdtemp()
    >>> keep = nf.callbacks.ModelCheckpoint(os.path.join(folder, "epoch-{epoch:02d}.nnfit"), save_best_only=True)
    >>> X = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)); y = X.sum(dim=1, keepdim=True)
    >>> fitted = (nf.setup(torch.nn.Linear, loss="mse").set_hparams(in_features=2, out_features=1)
    ...           .fit((X, y), epochs=3, seed=1, verbose=False, callbacks=[keep]))
    >>> keep.monitor_, os.path.basename(keep.best_path) == f"epoch-{keep.best_epoch:02d}.nnfit"
    ('train_loss', True)
    >>> import shutil; shutil.rmtree(folder)
    """

    weight = 900  # after callbacks that change state at the end of an epoch
    needs_autograd = False  # weights and optimizer state between epochs: the closed-form step has both

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
        super().__init__(monitor, mode, min_delta)
        self.save_best_only = bool(save_best_only)
        self.saved = []
        self.best_path = None

    def on_fit_begin(self, ctx):
        super().on_fit_begin(ctx)
        self.saved, self.best_path = [], None

    def on_epoch_begin(self, ctx):
        self._began = time.perf_counter()

    def on_epoch_end(self, ctx):
        improved, value = self.update(ctx)
        if ctx.stacked:  # K models: a checkpoint when any improves; {monitor} is their mean
            improved = any(improved)
            finite = [v for v in value if math.isfinite(v)]
            value = sum(finite) / len(finite) if finite else math.nan
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
        return {**super().state_dict(), "saved": self.saved, "best_path": self.best_path}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.saved, self.best_path = list(state["saved"]), state["best_path"]

    def __repr__(self):
        return f"ModelCheckpoint({self.path!r}, monitor={self.monitor!r}, save_best_only={self.save_best_only})"


class KeepBestModel(Monitor, Callback):
    """At the end of the fit, give the model the weights of its best epoch by ``monitor``.

    The best weights are kept in memory (on the model's device) as training goes.
    ``monitor`` defaults to 'valid_loss', or 'train_loss' without validation data; ``mode``
    'auto' asks the metric which way is better, as ``EarlyStopping`` does
    (``nnfit.train.monitor.Monitor``). ``.best_epoch`` and ``.best_value`` say which epoch won.

    >>> import torch, nnfit as nf
    >>> best = nf.callbacks.KeepBestModel(monitor="valid_loss")
    >>> X = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)); y = X.sum(dim=1, keepdim=True)
    >>> fitted = (nf.setup(torch.nn.Linear, loss="mse").set_hparams(in_features=2, out_features=1)
    ...           .fit((X, y), epochs=3, valid_data=0.25, seed=1, verbose=False, callbacks=[best]))
    >>> losses = {epoch: value for split, name, epoch, value in fitted.records if (split, name) == ("valid", "loss")}
    >>> best.best_value == min(losses.values()) and best.best_epoch == min(losses, key=losses.get)
    True
    """

    weight = 800
    needs_autograd = False

    def __init__(self, monitor: str | None = None, mode: str = "auto", min_delta: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        self._weights = None

    @property
    def best_value(self):
        return self.best

    def on_fit_begin(self, ctx):
        super().on_fit_begin(ctx)
        self._weights = None

    def on_epoch_end(self, ctx):
        improved, _ = self.update(ctx)
        if ctx.stacked:  # K models: each keeps the weights of its own best epoch
            better = [k for k, b in enumerate(improved) if b]
            if better:
                first = self._weights is None
                self._weights = _copy_weights(ctx.model, self._weights, None if first else better)
            return
        if improved:
            self._weights = _copy_weights(ctx.model, self._weights)

    def on_fit_end(self, ctx):
        if self._weights is not None:
            ctx.model.load_state_dict(self._weights)

    def state_dict(self):
        return {**super().state_dict(), "weights": self._weights}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._weights = state["weights"]

    def __repr__(self):
        return f"KeepBestModel(monitor={self.monitor!r})"


class Interrupt(Callback):
    """Ctrl-C ends the fit and returns the model as it is then, with an ``InterruptedWarning``.

    Without it, Ctrl-C raises KeyboardInterrupt as usual. The epochs that finished are in the
    history; the last, cut-short epoch's batches did update the weights.

    >>> import nnfit as nf
    >>> # fitted = learner.fit(data, epochs=1000, callbacks=[nf.callbacks.Interrupt()])  # Ctrl-C when bored
    """

    needs_autograd = False

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
    A fit that early stopping ended stays ended.

    A checkpoint continues only its own run. Each one records what makes the run (see
    ``run_fingerprint``): the module and its hyperparameters, the optimizer and its options,
    the seed, epochs, batch size, the formula when ``nf.mlp`` drives the fit, and the data's
    shape and a hash of its contents. A checkpoint of another run is refused with a
    ``ModelFileError`` naming what changed; with ``on_mismatch="restart"`` it is set aside
    (renamed ``checkpoint-other-run-N.nnfit`` in the same folder, never deleted) with a
    warning, and the fit starts afresh. ``extend=True`` lets a rerun with a larger ``epochs``
    train on from the checkpoint.

    ``path`` defaults to a folder of the running script's own, ``nnfit-resume/<script
    name>-<8 hex digits of a hash of its absolute path>`` (relative to the working directory),
    so two scripts never share one; in an interactive session (a notebook, ``python -c``, the
    REPL) it is ``nnfit-resume/interactive``. The default folders are removed at the end of the
    fit when they are empty.

    >>> import nnfit as nf
    >>> resume = nf.callbacks.AutoResume("mass-run")
    >>> # fitted = learner.fit((X, y), epochs=500, seed=1, callbacks=[resume])
    """

    weight = 950  # restores after other callbacks began, saves after they ended the epoch
    needs_autograd = False

    def __init__(self, path=None, every: int = 1, on_mismatch: str = "error", extend: bool = False):
        from ..errors import check_positive_int

        every = check_positive_int("every", every, unit="epochs")
        if on_mismatch not in ("error", "restart"):
            raise ArgumentError(
                f"on_mismatch must be 'error' (refuse another run's checkpoint) or 'restart' (set it aside and "
                f"start afresh), not {on_mismatch!r}."
            )
        if path is not None and not isinstance(path, (str, Path)):
            raise ArgumentTypeError(f"path must be a folder name such as 'mass-run', not {path!r}.")
        self._own_folder = path is None
        self.path = default_folder() if path is None else Path(path)
        self.every = every
        self.on_mismatch = on_mismatch
        self.extend = bool(extend)
        self.resumed_from = None
        self.set_aside = None  # where another run's checkpoint went (on_mismatch="restart")

    @property
    def file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    def on_fit_begin(self, ctx):
        if self.path.exists() and not self.path.is_dir():
            raise ArgumentError(f"AutoResume needs a folder, but {str(self.path)!r} is a file.")
        self.path.mkdir(parents=True, exist_ok=True)
        files.remove_temporaries(self.file)  # a write that a crash cut short
        self.resumed_from = self.set_aside = None
        self._run = run_fingerprint(ctx)
        if not self.file.exists():
            return
        state = read_checkpoint(self.file)
        changes = _changes(state.get("run"), self._run, self.extend)
        if not changes:
            load_checkpoint(self.file, ctx, state)
            self.resumed_from = ctx.start_epoch
            return
        if self.on_mismatch == "error":
            raise ModelFileError(
                f"The checkpoint {str(self.file)!r} belongs to another run: {changes}; delete it, give AutoResume "
                "another folder, or pass AutoResume(..., on_mismatch='restart') to set it aside and start afresh."
            )
        self.set_aside = _free_name(self.path, "checkpoint-other-run-{}.nnfit")
        os.replace(self.file, self.set_aside)
        warnings.warn(
            f"The checkpoint {str(self.file)!r} belongs to another run ({changes}); it was set aside as "
            f"{str(self.set_aside)!r} and this fit starts afresh.",
            UserWarning,
            stacklevel=2,
        )

    def on_epoch_begin(self, ctx):
        self._began = time.perf_counter()

    def on_epoch_end(self, ctx):
        if (ctx.epoch + 1) % self.every == 0 or ctx.epoch + 1 == ctx.epochs or ctx.stop_training:
            save_checkpoint(self.file, ctx, time.perf_counter() - self._began, run=self._run)

    def on_fit_end(self, ctx):
        if ctx.interrupted:
            return
        if self.file.exists():
            self.file.unlink()
        for folder in (self.path, self.path.parent) if self._own_folder else ():
            try:
                folder.rmdir()  # only when empty: never anything in it
            except OSError:
                break

    def __repr__(self):
        return f"AutoResume({str(self.path)!r})"


def default_folder() -> Path:
    """AutoResume's folder: ``nnfit-resume/<script>-<hash of its absolute path>``, or
    ``nnfit-resume/interactive`` in a session without a script file.

    >>> from nnfit.train.checkpoints import default_folder
    >>> default_folder().parent.name
    'nnfit-resume'
    """
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if not script:
        return Path("nnfit-resume") / "interactive"
    script = Path(script).resolve()
    digest = hashlib.sha256(str(script).encode()).hexdigest()[:8]
    return Path("nnfit-resume") / f"{script.stem}-{digest}"


def run_fingerprint(ctx) -> dict:
    """What identifies a fit, as {field: text}: AutoResume resumes only a checkpoint whose run matches.

    The fields are those ``Learner.fit`` puts in ``ctx.description`` (module, each of its
    hyperparameters, parameter shapes, optimizer, each of its options, seed, epochs,
    batch size, validation fraction, and what ``nf.mlp`` adds: formula and scaling), then the
    data as fit was given it (before a validation fraction is split off, so that a change of
    seed is not also reported as a change of data) and separate validation data: each
    tensor's dtype and shape, and a BLAKE2b hash of all their bytes.
    All the bytes, not a sample of rows: an edit to any row (a corrected outlier) makes another
    run, and hashing reads the data once, less than the one pass every epoch makes anyway
    (about 1 s per GB, once per fit and only with AutoResume). A Dataset or DataLoader is
    known by its class and length only.
    """
    from .data import InMemory

    run = dict(getattr(ctx, "description", None) or {})
    given = getattr(ctx, "data_given", None) or {"data": ctx.train_data, "validation data": ctx.valid_data}
    for label, data in given.items():
        if data is None:
            continue
        if isinstance(data, InMemory):
            tensors = [(name, t) for name, t in (("X", data.X), ("y", data.y), ("weights", data.weight)) if t is not None]
            run[f"{label} shape"] = ", ".join(f"{name} {str(t.dtype).replace('torch.', '')} {tuple(t.shape)}" for name, t in tensors)
            run[f"{label} hash"] = _hash_tensors([t for _, t in tensors])
        else:
            inner = getattr(data, "loader", data)
            source = getattr(inner, "dataset", inner)
            try:
                size = len(source)
            except TypeError:
                size = "unknown"
            run[f"{label} shape"] = f"{type(source).__name__} of {size} rows"
    return run


def _hash_tensors(tensors, chunk: int = 1 << 24) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for tensor in tensors:
        flat = tensor.detach().reshape(-1)
        for start in range(0, flat.numel(), chunk):  # in pieces: a device tensor is copied 16M values at a time
            piece = flat[start : start + chunk].contiguous().cpu()
            digest.update(piece.view(torch.uint8).numpy().tobytes() if piece.dtype != torch.uint8 else piece.numpy().tobytes())
    return digest.hexdigest()


def _changes(saved, current: dict, extend: bool) -> str:
    """'lr changed from 0.01 to 0.001, seed from 1 to 2', or '' when the runs match."""
    if saved is None:
        return "it was written without a record of its run (by an older nnfit), so it cannot be told from another run's"
    parts = []
    for name in list(current) + [name for name in saved if name not in current]:
        old, new = saved.get(name, "(none)"), current.get(name, "(none)")
        if old == new:
            continue
        if extend and name == "epochs" and old.isdigit() and new.isdigit() and int(new) >= int(old):
            continue
        parts.append(f"{name} {'changed ' if not parts else ''}from {old} to {new}")
    return ", ".join(parts)


def _free_name(folder: Path, template: str) -> Path:
    n = 1
    while (folder / template.format(n)).exists():
        n += 1
    return folder / template.format(n)


def describe_value(value) -> str:
    """A value as a fingerprint shows it: repr for plain data, a qualified name for classes and
    functions, class and shape for tensors, never a memory address (that differs every run)."""
    if isinstance(value, torch.Tensor):
        return f"tensor {str(value.dtype).replace('torch.', '')} {tuple(value.shape)} {_hash_tensors([value])}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(describe_value(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {describe_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else text


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

    >>> from nnfit.train.checkpoints import Divergence
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
        """Offer a batch's loss (one per model); the first one offered in a fit is the reference."""
        if self.reference is None and self._first is None:
            self._first = losses.detach().reshape(-1)

    def _read_reference(self) -> None:
        if self.reference is None and self._first is not None:
            self.reference = self._first.to("cpu", torch.float64).tolist()  # once per fit

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
    """' (e.g. lr=0.001 instead of 0.01)' for a learning rate, or ''."""
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0:
        return f" (e.g. lr={lr / 10:g} instead of {lr:g})"
    return ""


SCALE_HINT = (
    "or scale the response (standardize y, e.g. nf.Design(..., scale_response=True)) and the predictors."
)


def divergence_error(rule: Divergence, k: int, value: float, epoch: int, name: str, lr=None,
                     can_drop: bool = True) -> DivergenceError:
    """The DivergenceError for model k of a stack (named ``name``: 'model 3 of 5', 'fold 2', ...)."""
    drop = " To keep the other models and drop the ones that diverge, pass on_divergence='drop'." if can_drop else ""
    return DivergenceError(
        f"{rule.describe(value, f'epoch {epoch}', k, of=f' of {name}')}. Training stopped. "
        f"Try a lower learning rate{lower_rate(lr)}, {SCALE_HINT}{drop}",
        epoch=epoch, last_finite_loss=None,
    )


def all_diverged_error(errors) -> DivergenceError:
    """The error when every one of several models diverged: it quotes the first one's."""
    errors = list(errors)
    first = errors[0]
    if len(errors) == 1:
        return first
    return DivergenceError(
        f"Every one of the {len(errors)} models diverged, so none is left to keep; the first: {first}", epoch=first.epoch
    )


def check_on_divergence(value) -> str:
    """'error' or 'drop', else an ArgumentError."""
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
    the device during an epoch: it keeps each batch's loss on the device and checks the
    epoch's loss once the metrics are recorded (and reads the first batch's loss once, at the
    end of the first epoch). At the start of each epoch whose weights are all finite it copies
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
        self._last_finite = None  # (loss, epoch, batch), 1-based; the loss a 0-d device tensor
        self.rule = Divergence(ctx.n_models)  # AutoResume (later in on_fit_begin) may restore its reference

    def on_epoch_begin(self, ctx):
        if ctx.stacked:  # K models: a diverged one is dropped or named in the error, not rolled back
            return
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
        if ctx.stacked:
            self.rule.first(ctx.loss)
            return
        loss = ctx.loss
        if isinstance(loss, dict):  # a module's step() may set several: their sum is finite iff each is
            loss = sum(value.detach().reshape(()) for value in loss.values() if isinstance(value, torch.Tensor))
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().reshape(())
            self._losses.append(loss)
            self.rule.first(loss)

    def on_train_end(self, ctx):
        if ctx.stacked:
            return self._check_models(ctx)
        loss = _train_loss(ctx)
        if loss is None or self.rule.reason(loss) is None:
            if self._losses:  # kept on the device; read only if a later epoch diverges
                self._last_finite = (self._losses[-1], ctx.epoch + 1, len(self._losses))
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
        losses = torch.stack(self._losses).double().cpu() if self._losses else torch.zeros(0)
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


def _all_finite(weights) -> bool:
    if weights is None:
        return False
    return all(bool(torch.isfinite(w).all()) for w in weights.values() if w.is_floating_point())

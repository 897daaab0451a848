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
from pathlib import Path

import numpy as np
import torch

from .. import files
from .hooks import Callback, where
from ..errors import (ArgumentError, ArgumentTypeError, DivergenceError, InterruptedWarning, ModelFileError,
                      TrainingError, warn)
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


def copy_weights(model, into=None, models=None) -> dict:
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
        self._kept = set()  # K models: those that ever improved (the others keep their last weights)

    def on_epoch_end(self, ctx):
        improved, _ = self.update(ctx)
        if ctx.stacked:  # K models: each keeps the weights of its own best epoch
            better = [k for k, b in enumerate(improved) if b]
            if better:
                first = self._weights is None
                self._weights = copy_weights(ctx.model, self._weights, None if first else better)
                self._kept.update(better)
            return
        if improved:
            self._weights = copy_weights(ctx.model, self._weights)

    def on_fit_end(self, ctx):
        if self._weights is None:
            return
        if ctx.stacked and len(self._kept) < ctx.n_models:  # a model that never improved keeps its last weights
            kept = sorted(self._kept)
            for name, value in ctx.model.state_dict().items():
                value[kept] = self._weights[name][kept]
            return
        ctx.model.load_state_dict(self._weights)

    def state_dict(self):
        return {**super().state_dict(), "weights": self._weights, "kept": sorted(self._kept)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._weights = state["weights"]
        self._kept = set(state.get("kept", []))

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
            warn(
                f"Training was interrupted {where(ctx)}; the model is returned as it was then "
                f"({len(ctx.epoch_seconds)} complete epochs).",
                InterruptedWarning,
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
        warn(
            f"The checkpoint {str(self.file)!r} belongs to another run ({changes}); it was set aside as "
            f"{str(self.set_aside)!r} and this fit starts afresh.",
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
            run[f"{label} hash"] = hash_tensors([t for _, t in tensors])
        else:
            inner = getattr(data, "loader", data)
            source = getattr(inner, "dataset", inner)
            try:
                size = len(source)
            except TypeError:
                size = "unknown"
            run[f"{label} shape"] = f"{type(source).__name__} of {size} rows"
    return run


def hash_tensors(tensors, chunk: int = 1 << 24) -> str:
    """A BLAKE2b hash of the tensors' bytes (16 hex digits): what a run fingerprint shows of its data."""
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
        return f"tensor {str(value.dtype).replace('torch.', '')} {tuple(value.shape)} {hash_tensors([value])}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(describe_value(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {describe_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else text

"""luz's workflow: ``setup(module, loss, optimizer, metrics) -> set_hparams -> fit -> predict``.

>>> import torch, nnfit as nf
>>> from torch import nn
>>> X = torch.randn(64, 3); y = X @ torch.tensor([[1.0], [2.0], [-1.0]])
>>> fitted = nf.setup(nn.Linear, loss=nn.MSELoss(), optimizer="adam").set_hparams(
...     in_features=3, out_features=1).set_opt_hparams(lr=0.05).fit((X, y), epochs=20, seed=1, verbose=False)
>>> fitted.predict(X).shape
torch.Size([64, 1])
"""

from __future__ import annotations

import copy
import sys
import time
import warnings

import torch
from torch import nn

from . import callbacks as cb
from . import distributed as parallel
from . import losses, metrics as metrics_module, optimizers, threads as threads_module
from .divergence import DivergenceGuard
from . import closed_form
from .fused import ClosedFormOptimizer, FusedMLP
from .data import InMemory, as_data, no_weights, row_weights, split_valid
from ..errors import check_positive_int
from ..errors import ArgumentError, ArgumentTypeError, DataError, TrainingError
from .fitted import History
from .loop import BatchLosses, Context, epoch_range, rows_of, run
from .prediction import PREDICT_BLOCK, predict_in_blocks



def setup(module, loss=None, optimizer="adam", metrics=None, backward=None) -> "Learner":
    """Describe how to train ``module``: its loss, optimizer and metrics (luz's ``setup``).

    ``module`` is an ``nn.Module`` class (built at fit time from ``set_hparams``) or an instance
    (copied, so each fit starts from it). ``loss`` is a loss module, function or name ('mse',
    'cross_entropy', 'bce'); without one, the module's own ``loss(pred, target)`` method is
    used. ``optimizer`` is a torch.optim class or a name ('sgd', 'rmsprop', 'adam', 'adamw').
    ``metrics`` run on training and validation alike; wrap one in ``nf.metrics.train_only`` or
    ``nf.metrics.valid_only`` to restrict it. ``backward(loss)`` replaces ``loss.backward()``
    (e.g. ``lambda loss: loss.backward(retain_graph=True)``); a custom step finds it as
    ``ctx.backward``.

    A module may define its own ``loss(pred, target)``, ``predict(x)``, several optimizers with
    ``set_optimizers(**opt_hparams)`` returning {name: optimizer}, and a whole training step
    ``step(ctx)`` (which then does the backward pass and optimizer steps itself, and also runs in
    validation with ``ctx.training`` False), as in luz.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna()
    >>> design = nf.Design("species ~ bill_length_mm + flipper_length_mm - 1", scale=True).fit(penguins)
    >>> X, y = design.tensors(penguins)
    >>> learner = nf.setup(nf.MLP, loss="cross_entropy", metrics=[nf.metrics.Accuracy()])
    >>> learner = learner.set_hparams(input_size=2, hidden=[16], output_size=3).set_opt_hparams(lr=0.01)
    >>> learner
    <nnfit Learner> MLP(input_size=2, hidden=[16], output_size=3)
      loss: CrossEntropyLoss(), optimizer: adam(lr=0.01), metrics: Accuracy
    >>> fitted = learner.fit((X, y), epochs=20, valid_data=0.2, seed=1, verbose=False)
    >>> fitted.epochs_run
    20
    >>> sorted(fitted.last_metrics()["valid"])
    ['accuracy', 'loss']
    """
    return Learner(module, loss=loss, optimizer=optimizer, metrics=metrics, backward=backward)


class Learner:
    """A module with its loss, optimizer, metrics and hyperparameters, ready to ``fit``.

    ``nf.setup`` makes one; ``set_hparams`` and ``set_opt_hparams`` return it, so calls chain.

    >>> import nnfit as nf
    >>> learner = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=3, hidden=[8], output_size=1)
    >>> net = learner.build()          # what fit trains: a fresh MLP(3 -> 8 -> 1)
    >>> sum(p.numel() for p in net.parameters())
    41
    """

    def __init__(self, module, loss=None, optimizer="adam", metrics=None, backward=None):
        if not (isinstance(module, nn.Module) or (isinstance(module, type) and issubclass(module, nn.Module))):
            raise ArgumentTypeError(f"setup takes an nn.Module class or instance, not {module!r}.")
        self.module = module
        if loss is None and not hasattr(module, "loss") and not hasattr(module, "step"):
            raise ArgumentError("setup needs a loss (e.g. nn.MSELoss() or 'mse'), or a module with a loss() method.")
        self.loss = losses.resolve(loss) if loss is not None else None
        self.optimizer = optimizers.resolve(optimizer)
        self.metrics = [metrics_module.resolve(m) for m in (metrics or [])]
        if backward is not None and not callable(backward):
            raise ArgumentTypeError(f"backward must be a function of the loss, such as lambda loss: loss.backward(), not {backward!r}.")
        self.backward = backward
        self.hparams = {}
        self.opt_hparams = {}
        self.run_info = {}  # what else identifies a run ({field: text}; nf.mlp adds its formula)

    def set_hparams(self, **hparams) -> "Learner":
        """Arguments for the module class when fit builds it (luz's ``set_hparams``)."""
        self.hparams.update(hparams)
        return self

    def set_opt_hparams(self, **opt_hparams) -> "Learner":
        """Arguments for the optimizer, e.g. ``lr=0.01`` (luz's ``set_opt_hparams``)."""
        self.opt_hparams.update(opt_hparams)
        return self

    def build(self) -> nn.Module:
        """A fresh module: the class built with the hparams, or a copy of the instance."""
        if isinstance(self.module, nn.Module):
            return copy.deepcopy(self.module)
        try:
            return self.module(**self.hparams)
        except TypeError as error:
            raise ArgumentError(
                f"Cannot build {self.module.__name__} with set_hparams({_kwargs(self.hparams)}): {error}"
            ) from None

    def optimizers_for(self, model) -> dict:
        """{name: optimizer}; a module may define ``set_optimizers(**opt_hparams)`` for several."""
        if hasattr(model, "set_optimizers"):
            made = model.set_optimizers(**self.opt_hparams)
            return dict(made) if isinstance(made, dict) else {"opt": made}
        return {"opt": self.build_optimizer(model.parameters())}

    def build_optimizer(self, params):
        """The learner's optimizer over ``params``, with ``opt_hparams``; values it refuses are an ArgumentError."""
        try:
            return self.optimizer(params, **self.opt_hparams)
        except (ValueError, TypeError) as error:  # torch.optim's own checks: "Invalid learning rate: -1"
            raise ArgumentError(
                f"The optimizer {optimizers.name_of(self.optimizer)} cannot be built with "
                f"set_opt_hparams({_kwargs(self.opt_hparams)}): {error}."
            ) from None

    @parallel.follows_choice
    def fit(self, data, epochs=10, batch_size=32, valid_data=None, callbacks=None, device="auto",
            verbose=None, seed=None, threads=None, drop_last=False, accumulate=1, dataloader_options=None,
            sample_weight=None, class_weight=None, n_models=1, distributed=None):
        """Train and return a ``Fitted`` model (luz's ``fit``).

        ``data``: (X, y) tensors or arrays, a Dataset or a DataLoader. ``epochs``: a number, or
        (min, max) with early stopping. ``batch_size=None`` is full-batch gradient descent.
        ``valid_data``: a fraction of ``data``, (X, y), a Dataset or a DataLoader. ``device``:
        "auto" picks cuda, then mps, then cpu. ``verbose`` defaults to showing progress on a
        terminal. ``seed`` makes the initialization, shuffling and dropout reproducible.
        ``threads``: CPU threads (default: one for small networks, all cores for large ones).
        ``drop_last`` leaves out a last, smaller training batch. ``accumulate=k`` adds up the
        gradients of k batches before each optimizer step (one step as from a k times larger
        batch). ``dataloader_options``: keyword arguments for the DataLoader built over a Dataset
        (``num_workers``, ``collate_fn``, ...). ``sample_weight`` (one per row) and
        ``class_weight`` ({code: weight}, one per class, or "balanced" as in scikit-learn) weight
        each row's training loss: sum(w * loss) / sum(w); they need (X, y) data and a torch loss.
        ``n_models=K`` trains K copies (model k seeded with seed + k) at once and returns a
        ``FittedMany`` whose predictions are their mean (see ``nnfit.train.vectorized``).
        ``distributed``: None trains data-parallel when torchrun started this process, True
        requires that, False fits in this process alone (``distributed.choice``).

        >>> import torch, nnfit as nf
        >>> X = torch.randn(64, 3); y = (X[:, 0] > 0.8).long()     # a rare class: about 1 row in 5
        >>> learner = nf.setup(nf.MLP, loss="cross_entropy", metrics=["accuracy"]).set_hparams(
        ...     input_size=3, hidden=[8], output_size=2)
        >>> fitted = learner.fit((X, y), epochs=5, batch_size=16, class_weight="balanced", seed=1, verbose=False)
        >>> fitted.epochs_run, sorted(fitted.last_metrics()["train"])
        (5, ['accuracy', 'loss'])
        """
        min_epochs, max_epochs = epoch_range(epochs)
        if n_models == 1 and type(self) is Learner and accumulate == 1 and self.backward is None:
            fast = learner_for(self, callbacks)  # nf.MLP in the closed-form family: no autograd needed
            if fast is not self:
                return fast.fit(data, epochs=epochs, batch_size=batch_size, valid_data=valid_data, callbacks=callbacks,
                                device=device, verbose=verbose, seed=seed, threads=threads, drop_last=drop_last,
                                dataloader_options=dataloader_options, sample_weight=sample_weight,
                                class_weight=class_weight)
        if n_models != 1:
            return self._fit_many(data, n_models, epochs, batch_size, seed, device, threads,
                                  valid_data=valid_data, callbacks=callbacks, accumulate=accumulate,
                                  sample_weight=sample_weight, class_weight=class_weight,
                                  verbose=sys.stdout.isatty() if verbose is None else verbose)
        batch_size = check_positive_int("batch_size", batch_size, allow_none=True)
        accumulate = check_positive_int("accumulate", accumulate)
        device = resolve_device(device)
        callbacks = list(callbacks or [])
        if verbose is None:
            verbose = sys.stdout.isatty()
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        train = as_data(data, batch_size, True, generator, drop_last, dataloader_options)
        _check_finite(train, "data")
        in_memory = isinstance(train, InMemory) and train.y is not None
        weight = row_weights(train.y, sample_weight, class_weight) if in_memory else no_weights(sample_weight, class_weight)
        if weight is not None:
            train = InMemory(train.X, train.y, weight)
        given = {"data": train}  # before a validation fraction is split off: what AutoResume hashes
        valid = self._valid(valid_data, train, batch_size, generator, dataloader_options)
        if valid is not None and valid[0] is not None:
            train, valid = valid
        else:
            valid = None if valid is None else valid[1]
            given["validation data"] = valid

        began = time.perf_counter()
        with torch.random.fork_rng(devices=_rng_devices(device), enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            model = self.build().to(device)
            loss_fn = self.loss if self.loss is not None else getattr(model, "loss", None)
            if weight is not None:
                loss_fn = losses.SampleWeighted(loss_fn)
            if isinstance(loss_fn, nn.Module):
                loss_fn = loss_fn.to(device)
            n_threads = threads if threads is not None else threads_module.choose(model, batch_size, len(train), device)
            with threads_module.using(n_threads), warnings.catch_warnings():
                # torch only warns when a loss broadcasts (n, 1) predictions against (n,) targets,
                # and then trains on the wrong thing: make it the error it is.
                warnings.filterwarnings("error", message="Using a target size", category=UserWarning)
                ctx = Context(
                    model, loss_fn, self.optimizers_for(model), train.to(device),
                    None if valid is None else valid.to(device), max_epochs, min_epochs, batch_size,
                    metrics_module.for_set(self.metrics, "train"), metrics_module.for_set(self.metrics, "valid"),
                    device, generator, drop_last, accumulate,
                )
                if self.backward is not None:
                    ctx.backward = self.backward
                ctx.seed = seed
                ctx.data_given = given
                ctx.description = self._describe_run(ctx, batch_size, accumulate, drop_last, valid_data)
                all_callbacks = [cb.MetricsRecorder(), DivergenceGuard()] + ([cb.Progress()] if verbose else []) + callbacks
                if parallel.active():  # under torchrun: each process trains on its share of each batch
                    ctx.train_data, all_callbacks = parallel.data_parallel(ctx, all_callbacks)
                run(ctx, all_callbacks)
        return Fitted(self, ctx, seconds=time.perf_counter() - began, threads=n_threads, callbacks=callbacks)

    def _describe_run(self, ctx, batch_size, accumulate, drop_last, valid_data) -> dict:
        """What identifies this fit, {field: text}, for AutoResume's ``run_fingerprint``."""
        from .checkpoints import describe_value

        module = self.module if isinstance(self.module, type) else type(self.module)
        run = {"module": f"{module.__module__}.{module.__qualname__}"}
        run.update({name: describe_value(value) for name, value in self.hparams.items()})
        run["parameter shapes"] = ", ".join(
            "x".join(map(str, value.shape)) or "scalar" for value in ctx.model.state_dict().values()
        )
        run["loss"] = describe_value(self.loss)
        for key, opt in ctx.optimizers.items():  # the class, its learning rate and the options given
            prefix = "" if len(ctx.optimizers) == 1 else f"{key} "
            run[f"{prefix}optimizer"] = getattr(opt, "imitates", type(opt)).__name__
            group = opt.param_groups[0]
            for name in ["lr"] + [name for name in self.opt_hparams if name != "lr" and name in group]:
                if name in group:
                    field = f"{prefix}{name}" if f"{prefix}{name}" not in run else f"{prefix}optimizer {name}"
                    run[field] = describe_value(group[name])
        run.update(seed=repr(ctx.seed), epochs=str(ctx.epochs), min_epochs=str(ctx.min_epochs), batch_size=repr(batch_size),
                   accumulate=repr(accumulate), drop_last=repr(bool(drop_last)))
        fraction = isinstance(valid_data, (int, float)) and not isinstance(valid_data, bool)
        run["valid_data"] = repr(valid_data) if valid_data is None or fraction else "given"
        run.update(self.run_info)
        return run

    def _fit_many(self, data, n_models, epochs, batch_size, seed, device, threads, accumulate=1, **options):
        """``fit(n_models=K)``: K copies trained at once in the ordinary loop (see nnfit.train.vectorized)."""
        from .vectorized import fit_many

        if accumulate != 1:
            raise ArgumentError("fit(n_models > 1) steps after every batch; accumulate must be 1. Fit one model to "
                                "accumulate gradients.")
        return fit_many(self, data, check_positive_int("n_models", n_models), epochs, batch_size, seed,
                        resolve_device(device), threads, **options)

    def _valid(self, valid_data, train, batch_size, generator, options):
        """(train, valid) when valid_data is a fraction of train, else (None, valid) or None."""
        if valid_data is None:
            return None
        if isinstance(valid_data, float) or (isinstance(valid_data, int) and not isinstance(valid_data, bool)):
            if not isinstance(train, InMemory):
                raise ArgumentError("valid_data as a fraction needs in-memory (X, y) data; pass a Dataset or DataLoader instead.")
            return split_valid(train, float(valid_data), generator, stratify=True)
        return None, as_data(valid_data, batch_size, False, None, False, options)

    def __repr__(self):
        name = self.module.__name__ if isinstance(self.module, type) else type(self.module).__name__
        metrics = ", ".join(type(m).__name__ for m in self.metrics) or "none"
        return (
            f"<nnfit Learner> {name}({_kwargs(self.hparams)})\n"
            f"  loss: {self.loss!r}, optimizer: {optimizers.name_of(self.optimizer)}({_kwargs(self.opt_hparams)}), "
            f"metrics: {metrics}"
        )


class Evaluation:
    """Loss and metrics of a fitted model on some data: ``.metrics`` is a plain dict.

    ``Fitted.evaluate`` returns one.

    >>> from nnfit.train.learner import Evaluation
    >>> result = Evaluation({"loss": 0.25, "accuracy": 0.9}, n=68)
    >>> result
    <nnfit Evaluation> 68 rows; loss: 0.25, accuracy: 0.9
    >>> result.metrics["accuracy"]
    0.9
    """

    def __init__(self, metrics: dict, n: int):
        self.metrics = metrics
        self.n = n

    def __repr__(self):
        values = ", ".join(f"{k}: {v:.4g}" for k, v in self.metrics.items())
        return f"<nnfit Evaluation> {self.n} rows; {values}"

    def _repr_html_(self):
        from .. import display

        return display.table(list(self.metrics.items()) + [("rows", self.n)], title="nnfit evaluation")


class Fitted(History):
    """A trained module with its history: predict, evaluate, plot, save (luz's fitted object).

    ``Learner.fit`` returns one.

    >>> import os, tempfile, torch
    >>> import nnfit as nf
    >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> design = nf.Design("species ~ bill_length_mm + flipper_length_mm - 1", scale=True).fit(training)
    >>> learner = nf.setup(nf.MLP, loss="cross_entropy", metrics=[nf.metrics.Accuracy()]).set_hparams(
    ...     input_size=2, hidden=[16], output_size=3).set_opt_hparams(lr=0.01)
    >>> fitted = learner.fit(design.tensors(training), epochs=20, seed=1, verbose=False)
    >>> logits = fitted.predict(design.tensors(testing, response=False))
    >>> logits.shape                                   # one row per penguin, one column per species
    torch.Size([67, 3])
    >>> list(design.decode(logits.argmax(dim=1))[:3])   # the most likely species, as labels
    ['Adelie', 'Adelie', 'Adelie']
    >>> fitted.evaluate(design.tensors(testing)).metrics["accuracy"] > 0.9
    True
    >>> fitted.metrics.columns.tolist()                # the history, one row per set, metric and epoch
    ['set', 'metric', 'epoch', 'value']
    >>> path = os.path.join(tempfile.mkdtemp(), "species.nnfit")
    >>> fitted.save(path)
    >>> net = nf.load(path, module=nf.MLP)             # the MLP, built with the saved hparams
    >>> torch.allclose(net(design.tensors(testing, response=False)), logits, atol=1e-5)
    True
    """

    def __init__(self, learner: Learner, ctx: Context, seconds: float, threads: int, callbacks=()):
        self.learner = learner
        self.model = ctx.model
        self.ctx = ctx
        self.records = list(ctx.records)
        self.seconds = seconds
        self.epoch_seconds = list(ctx.epoch_seconds)
        self.threads = threads
        self.callbacks = list(callbacks)
        self.device = ctx.device

    @torch.no_grad()
    def predict(self, data, batch_size: int = PREDICT_BLOCK) -> torch.Tensor:
        """Predictions for X (a tensor, array, (X,) tuple, Dataset or DataLoader), in eval mode.

        The result is on the CPU. Rows are evaluated in blocks of exactly ``batch_size`` rows
        (the last block filled up by repeating one of its rows), so that the matrix kernels
        are the same for every row and a row's prediction never depends on the rows passed
        with it or their order (see ``predict_in_blocks``); a larger ``batch_size`` takes
        more memory. Inputs that are not one tensor (a Dataset of tuples) go batch by batch.
        """
        self.model.eval()
        source = as_data(data, batch_size, False).to(self.device)
        custom = getattr(self.model, "predict", None)
        forward = custom if callable(custom) else self.model

        def guarded(x):
            try:
                return forward(x)
            except Exception as error:
                raise TrainingError(
                    f"{type(self.model).__name__} failed while predicting: {type(error).__name__}: {error}"
                ) from error

        return predict_in_blocks(guarded, (x for x, _ in source.batches(batch_size, shuffle=False)), batch_size).cpu()

    @torch.no_grad()
    def evaluate(self, data, batch_size: int = 4096, metrics=None, dataloader_options=None) -> Evaluation:
        """Loss and metrics on (X, y), a Dataset or a DataLoader, as an ``Evaluation`` (luz's ``evaluate``).

        ``metrics`` replaces the learner's validation metrics for this call (luz's
        ``evaluate(metrics=)``); ``dataloader_options`` are for the DataLoader over a Dataset.
        """
        self.model.eval()
        source = as_data(data, batch_size, False, loader_options=dataloader_options).to(self.device)
        recorder = cb.MetricsRecorder()
        ctx = self.ctx
        if metrics is None:
            metrics = metrics_module.for_set(self.learner.metrics, "valid")
        else:
            metrics = [copy.deepcopy(metrics_module.resolve(m)) for m in metrics]
        recorder._begin(ctx, metrics)
        losses = BatchLosses()
        state = (ctx.pred, ctx.target, ctx.loss, ctx.iter)
        n = 0
        for ctx.iter, (x, ctx.target) in enumerate(source.batches(batch_size, shuffle=False)):
            if ctx.target is None:
                raise ArgumentError("evaluate needs targets: pass (X, y).")
            ctx.pred = self.model(x)
            ctx.loss = ctx.loss_fn(ctx.pred, ctx.target)
            losses.append(ctx.loss, rows_of(ctx.target))
            recorder._update(ctx, metrics)
            n += len(x)
        values = recorder._compute(ctx, metrics, losses)
        ctx.pred, ctx.target, ctx.loss, ctx.iter = state
        return Evaluation(values, n)

    def plot(self):
        """Learning curves: one panel per metric, training and validation by epoch."""
        from .. import plot

        return plot.learning_curves(self.metrics)

    def save(self, path, key=None):
        """Save the weights (safetensors) and a description of the module into one file;
        with ``key``, signed with HMAC-SHA256 (``nf.load(path, module=..., key=key)`` checks it)."""
        from .. import files

        files.save_module(path, self, key=key)

    def __repr__(self):
        name = type(self.model).__name__
        per_epoch = self.seconds / max(self.epochs_run, 1)
        lines = [
            f"<nnfit Fitted> {name}, {sum(p.numel() for p in self.model.parameters()):,} parameters",
            f"  trained {self.epochs_run} epochs in {self.seconds:.2f} s ({per_epoch * 1000:.1f} ms per epoch) "
            f"on {self.device}, {self.threads} thread(s)",
            f"  last epoch: {cb.format_records(self.last_metrics())}",
            "  module: " + repr(self.model).replace("\n", "\n  "),
        ]
        return "\n".join(lines)

    def _title(self) -> str:
        return "nnfit fitted model"

    def _facts(self) -> list:
        return [
            ("module", type(self.model).__name__),
            ("parameters", f"{sum(p.numel() for p in self.model.parameters()):,}"),
            ("epochs", self.epochs_run),
            ("seconds", round(self.seconds, 2)),
            ("device", self.device),
            ("threads", self.threads),
        ]


def resolve_device(device) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; anything else as torch.device reads it.

    >>> from nnfit.train.learner import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ArgumentError(f"Unknown device {device!r}: {error}") from None


def _check_finite(data, what: str) -> None:
    """In-memory X and a float y must be finite: a NaN would only surface as a diverged loss."""
    if not isinstance(data, InMemory):
        return
    for name, tensor in (("X", data.X), ("y", data.y)):
        if tensor is None or not tensor.is_floating_point():
            continue
        bad = ~torch.isfinite(tensor)
        if bad.any():  # one check per fit, before training
            row = int(bad.reshape(len(tensor), -1).any(dim=1).nonzero()[0])
            raise DataError(
                f"{name} in the {what} has {int(bad.sum())} NaN or infinite value(s), the first in row {row}; "
                "remove or impute them before fitting (nf.Design and nf.mlp leave such rows out)."
            )


def _rng_devices(device):
    return [device.index or 0] if device.type == "cuda" else []


def _kwargs(values: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


# ---------------------------------------------------------------------- the closed-form step
def learner_for(learner: Learner, callbacks=None) -> Learner:
    """A ``FusedLearner`` when ``learner`` trains an ``MLP`` within the fused family, else ``learner``.

    The family: activations relu/sigmoid/tanh/identity; an MSE, cross-entropy (class codes,
    no weights or label smoothing), ``BinaryLogitLoss`` or ``nn.BCEWithLogitsLoss`` (mean, no
    weights) loss; SGD, RMSprop, Adam or AdamW with the options in
    ``closed_form.OPTIMIZER_OPTIONS``; and callbacks that only act between epochs
    (``closed_form.family_gradient``). ``Learner.fit`` asks it by itself.

    >>> import nnfit as nf
    >>> from nnfit.train.learner import learner_for
    >>> learner = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=3, hidden=4)
    >>> type(learner_for(learner)).__name__, type(learner_for(learner, [nf.callbacks.GradientClip()])).__name__
    ('FusedLearner', 'Learner')
    """
    loss_gradient = closed_form.family_gradient(learner, callbacks)
    return learner if loss_gradient is None else FusedLearner(learner, loss_gradient)


class FusedLearner(Learner):
    """A ``Learner`` for ``MLP`` whose training steps compute gradients and updates in closed form.

    Made by ``learner_for`` from an ordinary learner; ``fit`` and everything after it is the
    ``Learner``'s own, rows weighted with ``sample_weight`` or ``class_weight`` included; a
    fit with ``accumulate`` > 1 is trained by the ordinary learner.

    >>> import torch, nnfit as nf
    >>> learner = nf.setup(nf.MLP, loss="mse", optimizer="sgd").set_hparams(input_size=2, hidden=3)
    >>> fitted = learner.fit((torch.randn(20, 2), torch.randn(20, 1)), epochs=1, verbose=False)
    >>> type(fitted.learner).__name__, type(fitted.model).__name__     # trained in closed form, back as an MLP
    ('FusedLearner', 'MLP')
    """

    def __init__(self, learner: Learner, loss_gradient):
        super().__init__(FusedMLP, loss=learner.loss, optimizer=learner.optimizer, metrics=learner.metrics)
        self.autograd = learner
        self.hparams = dict(learner.hparams)
        self.opt_hparams = dict(learner.opt_hparams)
        self.run_info = dict(learner.run_info)
        self.loss_gradient = loss_gradient

    def build(self) -> "FusedMLP":
        model = super().build()
        model.loss_gradient = self.loss_gradient
        return model

    def optimizers_for(self, model) -> dict:
        return {"opt": ClosedFormOptimizer(model.parameters(), self.optimizer, self.opt_hparams)}

    def _describe_run(self, ctx, *args) -> dict:
        """The run as the ordinary learner describes it: a checkpoint resumes on either path."""
        return self.autograd._describe_run(ctx, *args)

    def fit(self, data, *args, **kwargs):
        """``Learner.fit``; the trained network comes back as a plain ``MLP``."""
        accumulate = kwargs.get("accumulate", args[9] if len(args) > 9 else 1)
        if accumulate != 1:  # the closed-form step updates after every batch
            return self.autograd.fit(data, *args, **kwargs)
        fitted = super().fit(data, *args, **kwargs)
        fitted.model = fitted.ctx.model = fitted.model.as_mlp()
        return fitted

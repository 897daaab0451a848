"""``Learner.fit(..., n_models=K)``: K copies of a module trained at once, in the ordinary loop.

The K modules (model k built under seed + k, exactly as ``fit(seed=seed + k)`` builds it) are
stacked into one module (``nnfit.train.many``): nnfit's own ``MLP`` as a ``StackedMLP`` trained in
closed form, any other module as a ``VmapStack`` run with ``torch.func.vmap`` (one batched
forward and backward per step for all of them). Each model has its own shuffling order
(a generator seeded with seed + k) and its own dropout masks; one optimizer of the learner's
class updates the stacked weights, which for elementwise optimizers (SGD, RMSprop, Adam, ...)
is exactly K separate optimizers. Callbacks, validation data and row weights work per model.
"""

from __future__ import annotations

import copy
import time

import torch

from .data import InMemory, as_data
from .fitted import History
from ..errors import ArgumentError


class FittedMany(History):
    """K fitted copies of a module: predict (mean, or every model's), evaluate, metrics.

    ``dropped`` lists the models left out because their training diverged
    (``on_divergence="drop"``), by name, with the reason; the others are renumbered.

    ``Learner.fit(..., n_models=K)`` returns one.

    >>> import torch, nnfit as nf
    >>> X = torch.randn(64, 3); y = X @ torch.tensor([[1.0], [2.0], [-1.0]])
    >>> learner = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=3, hidden=[8], output_size=1)
    >>> many = learner.fit((X, y), epochs=3, seed=1, n_models=4, verbose=False)
    >>> many.n_models, many.predict(X).shape, many.predict(X, type="all").shape
    (4, torch.Size([64, 1]), torch.Size([4, 64, 1]))
    >>> many.evaluate((X, y)).columns.tolist()          # one row per model
    ['model', 'loss']
    >>> sorted(many.last_metrics()["train"])             # the last epoch, mean over the models
    ['loss']
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "four.nnfit")
    >>> many.save(path)
    >>> nets = nf.load(path, module=nf.MLP)             # the K modules, built with the saved hparams
    >>> len(nets), torch.allclose(torch.stack([net(X) for net in nets]), many.predict(X, type="all"))
    (4, True)
    """

    def __init__(self, learner, models: list, records: list, seconds: float, threads: int, device, dropped=None,
                 ctx=None):
        self.learner = learner
        self.models = models
        self.records = records
        self.seconds = seconds
        self.threads = threads
        self.device = device
        self.dropped = dict(dropped or {})
        self.ctx = ctx  # the training loop's context

    @property
    def n_models(self) -> int:
        return len(self.models)

    @torch.no_grad()
    def predict(self, data, type: str = "response", batch_size: int = 4096) -> torch.Tensor:
        """The models' mean prediction, or with ``type="all"`` every model's, stacked (K, n, ...)."""
        if type not in ("response", "all"):
            raise ArgumentError(f"type must be 'response' or 'all', not {type!r}.")
        from .prediction import predict_in_blocks

        source = as_data(data, batch_size, False)
        outputs = []
        for model in self.models:
            model.eval()
            batches = (x.to(self.device) for x, _ in source.batches(batch_size, shuffle=False))
            outputs.append(predict_in_blocks(model, batches).cpu())
        stacked = torch.stack(outputs)
        return stacked if type == "all" else stacked.mean(dim=0)

    def evaluate(self, data, batch_size: int = 4096):
        """Loss and metrics of every model on (X, y), one row per model (a DataFrame)."""
        import pandas as pd

        return pd.DataFrame([dict(model=k + 1, **self.evaluate_model(k, data, batch_size)) for k in range(self.n_models)])

    @torch.no_grad()
    def evaluate_model(self, k: int, data, batch_size: int = 4096) -> dict:
        """{'loss': ..., metric: ...} of model k (from 0) on (X, y)."""
        model = self.models[k].eval()
        metrics = [copy.deepcopy(m) for m in self.learner.metrics]
        for metric in metrics:
            metric.reset()
        loss_sum, n = 0.0, 0
        for x, target in as_data(data, batch_size, False).batches(batch_size, shuffle=False):
            if target is None:
                raise ArgumentError("evaluate needs targets: pass (X, y).")
            pred = model(x.to(self.device)).cpu()
            loss_sum += float(self.learner.loss(pred, target)) * len(x)
            n += len(x)
            for metric in metrics:
                metric.update(pred, target)
        return dict(loss=loss_sum / n, **{m.name: float(m.compute()) for m in metrics})

    def plot(self):
        """Learning curves: one panel per metric, training and validation by epoch, the mean over the models."""
        from .. import plot

        return plot.learning_curves(self.metrics)

    def save(self, path, key=None) -> None:
        """Save the K models' weights (safetensors), the module's description and the history into
        one file; ``nf.load(path, module=...)`` gives the K modules back as a list. With ``key``,
        signed with HMAC-SHA256."""
        from .. import files

        files.save_modules(path, self, key=key)

    def _title(self) -> str:
        return f"nnfit fitted models ({self.n_models})"

    def _facts(self) -> list:
        model = self.models[0]
        return [
            ("module", type(model).__name__),
            ("models", self.n_models),
            ("parameters per model", f"{sum(p.numel() for p in model.parameters()):,}"),
            ("epochs", self.epochs_run),
            ("seconds", round(self.seconds, 2)),
            ("device", self.device),
            ("threads", self.threads),
        ] + ([("dropped (diverged)", ", ".join(self.dropped))] if self.dropped else [])

    def __repr__(self):
        model = self.models[0]
        return (
            f"<nnfit FittedMany> {self.n_models} x {type(model).__name__} "
            f"({sum(p.numel() for p in model.parameters()):,} parameters each), trained together in "
            f"{self.seconds:.2f} s on {self.device}, {self.threads} thread(s)"
        )


def fit_many(learner, data, n_models: int, epochs, batch_size, seed, device, threads, train_rows=None,
             names=None, on_divergence: str = "error", valid_data=None, callbacks=None, sample_weight=None,
             class_weight=None, verbose=False):
    """Train ``n_models`` copies of the learner's module together in the ordinary loop; return a ``FittedMany``.

    An ``nf.MLP`` the closed-form step can train (``closed_form.family_gradient``) is stacked as a
    ``StackedMLP`` and trained without autograd; any other module runs as a ``many.VmapStack``.
    Every callback works per model (``nnfit.train.many``). ``train_rows``: one index tensor per model
    (cross-validation folds). ``valid_data``: a fraction (the rows model 1's seed holds out,
    for every model) or (X, y). Each model's epoch loss is checked by
    ``divergence.Divergence``, the rule of every engine: one that diverges raises a
    ``DivergenceError`` naming it (``names[k]``, default 'model k of K'), or with
    ``on_divergence="drop"`` is left out of the result (``FittedMany.dropped``).

    ``Learner.fit(..., n_models=K)`` calls it; ``train_rows`` gives each model its own rows:

    >>> import torch, nnfit as nf
    >>> from nnfit.train.vectorized import fit_many
    >>> X = torch.randn(60, 3); y = X @ torch.tensor([[1.0], [2.0], [-1.0]])
    >>> learner = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=3, hidden=[8], output_size=1)
    >>> halves = [torch.arange(0, 30), torch.arange(30, 60)]
    >>> many = fit_many(learner, (X, y), n_models=2, epochs=2, batch_size=10, seed=1, device=torch.device("cpu"),
    ...                 threads=1, train_rows=halves)
    >>> many.n_models
    2
    """
    from . import closed_form, many
    from . import metrics as metrics_module
    from . import threads as threads_module
    from .divergence import all_diverged_error, check_on_divergence
    from .data import split_valid
    from .ensemble import StackedMLP, optimizer_for, seeds_for
    from ..errors import check_positive_int
    from .data import row_weights
    from .loop import epoch_range

    check_on_divergence(on_divergence)
    batch_size = check_positive_int("batch_size", batch_size, allow_none=True)
    min_epochs, max_epochs = epoch_range(epochs)
    names = names or [f"model {k + 1} of {n_models}" for k in range(n_models)]
    if learner.loss is None:
        raise ArgumentError("n_models needs a loss given to setup (a module's own loss() method is not vectorized).")
    train = as_data(data, batch_size, True)
    if not isinstance(train, InMemory) or train.y is None:
        raise ArgumentError("n_models > 1 needs in-memory (X, y) data: tensors or arrays, not a Dataset or DataLoader.")
    seeds = seeds_for(seed, n_models)
    began = time.perf_counter()
    models = []
    for s in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            models.append(learner.build().to(device))
    X, y = train.X.to(device), train.y.to(device)
    weight = row_weights(y, sample_weight, class_weight)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    rows = list(train_rows) if train_rows is not None else [torch.arange(len(X))] * n_models
    valid = None
    if isinstance(valid_data, (int, float)) and not isinstance(valid_data, bool):
        if train_rows is not None:
            raise ArgumentError("valid_data as a fraction cannot be combined with train_rows; give each model's rows.")
        # every model holds out the rows model 1's seed does; each generator makes that draw, so
        # model 1 shuffles on as a single fit with its seed would
        splits = [split_valid(InMemory(torch.arange(len(X)), y.cpu()), float(valid_data), g, stratify=True) for g in generators]
        rows = [splits[0][0].X.to(device)] * n_models
        valid = many.ManyRows(X, y, [splits[0][1].X.to(device)] * n_models, block=1 << 16)
    elif valid_data is not None:
        given = as_data(valid_data, batch_size, False)
        if not isinstance(given, InMemory) or given.y is None:
            raise ArgumentError("valid_data with n_models > 1 must be a fraction or (X, y) tensors or arrays.")
        n_valid = len(given.X)
        valid = many.ManyRows(given.X.to(device), given.y.to(device), [torch.arange(n_valid, device=device)] * n_models,
                              block=1 << 16)
    callbacks = list(callbacks or [])
    gradient = closed_form.family_gradient(learner, callbacks)
    if gradient is not None:
        stack = StackedMLP(models).to(device)
        stack.loss_gradient = gradient
        def optimizer(stack, models):
            return optimizer_for(stack, learner.optimizer, learner.opt_hparams)
    else:
        stack = many.VmapStack(models, learner.loss).to(device)

        def optimizer(stack, models):
            return learner.build_optimizer(list(stack.parameters()))
    train_rows_data = many.ManyRows(X, y, rows, generators=generators, weight=weight)
    metrics = many.model_metrics(metrics_module.for_set(learner.metrics, "train"), n_models)
    valid_metrics = many.model_metrics(metrics_module.for_set(learner.metrics, "valid"), n_models)
    if threads is None:
        threads = threads_module.choose(models[0], batch_size, len(rows[0]), device)
        threads = 1 if threads == 1 and n_models * sum(p.numel() for p in models[0].parameters()) < 2e5 else threads

    def describe(ctx) -> dict:  # what AutoResume compares: the learner's run, the number of models and their rows
        return {**learner._describe_run(ctx, batch_size, 1, False, valid_data), "n_models": str(n_models),
                "rows": train_rows_data.describe()}

    with torch.random.fork_rng(devices=[]), threads_module.using(threads):
        torch.manual_seed(seeds[0])
        ctx = many.fit(stack, learner.loss, optimizer, train_rows_data, valid, max_epochs, batch_size, metrics,
                       callbacks, min_epochs=min_epochs, device=device, names=names, on_divergence=on_divergence,
                       verbose=verbose, seed=seed, description=describe, valid_metrics=valid_metrics,
                       data_given={"data": InMemory(X, y, weight)})
    if len(ctx.diverged) == n_models:
        raise all_diverged_error(ctx.diverged[k] for k in sorted(ctx.diverged))
    for param in stack.parameters():  # out of a closed-form optimizer's flat buffer
        param.data, param.grad = param.data.clone(), None
    kept = [k for k in range(n_models) if k not in ctx.diverged]
    number = {k + 1: i + 1 for i, k in enumerate(kept)}
    records = [(*row[:4], number[row[4]]) for row in ctx.records if row[4] in number]
    trained = [_as_module(stack, k, models[k]) for k in kept]
    return FittedMany(learner, trained, records, time.perf_counter() - began, threads, device,
                      dropped={names[k]: str(error) for k, error in sorted(ctx.diverged.items())}, ctx=ctx)


def _as_module(stack, k: int, built) -> torch.nn.Module:
    """Model k of the stack as the learner's own module, with its trained weights."""
    model = stack.unstack(k)
    if model is not built:
        built.load_state_dict(model.state_dict())
    return built.eval()

"""``Learner.fit(..., n_models=K)``: K copies of any vmap-able module trained at once.

The K modules (model k built under seed + k, exactly as ``fit(seed=seed + k)`` builds it) are
stacked with ``torch.func.stack_module_state`` and run with ``torch.func.vmap``: one batched
forward and backward per step for all of them. Each model has its own shuffling order
(a generator seeded with seed + k) and its own dropout masks; one optimizer of the learner's
class updates the stacked weights, which for elementwise optimizers (SGD, RMSprop, Adam, ...)
is exactly K separate optimizers.
"""

from __future__ import annotations

import copy
import time

import torch

from .data import InMemory, as_data
from .errors import ArgumentError, TrainingError


class FittedMany:
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
    """

    def __init__(self, learner, models: list, records: list, seconds: float, threads: int, device, dropped=None):
        self.learner = learner
        self.models = models
        self.records = records
        self.seconds = seconds
        self.threads = threads
        self.device = device
        self.dropped = dict(dropped or {})

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def metrics(self):
        """Training history: set, metric, epoch, value, model."""
        import pandas as pd

        return pd.DataFrame(self.records, columns=["set", "metric", "epoch", "value", "model"])

    @torch.no_grad()
    def predict(self, data, type: str = "response", batch_size: int = 4096) -> torch.Tensor:
        """The models' mean prediction, or with ``type="all"`` every model's, stacked (K, n, ...)."""
        if type not in ("response", "all"):
            raise ArgumentError(f"type must be 'response' or 'all', not {type!r}.")
        from .learner import predict_in_blocks

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

    def __repr__(self):
        model = self.models[0]
        return (
            f"<nnfit FittedMany> {self.n_models} x {type(model).__name__} "
            f"({sum(p.numel() for p in model.parameters()):,} parameters each), trained together in "
            f"{self.seconds:.2f} s on {self.device}, {self.threads} thread(s)"
        )


def fit_many(learner, data, n_models: int, epochs: int, batch_size, seed, device, threads, train_rows=None,
             names=None, on_divergence: str = "error"):
    """Train ``n_models`` copies of the learner's module together; return a ``FittedMany``.

    ``train_rows``: one index tensor per model, all of one length (cross-validation folds).
    Each model's epoch loss is checked by ``checkpoints.Divergence``, the rule of every engine:
    one that diverges raises a ``DivergenceError`` naming it (``names[k]``, default 'model k
    of K'), or with ``on_divergence="drop"`` is left out of the result (``FittedMany.dropped``).

    ``Learner.fit(..., n_models=K)`` calls it; ``train_rows`` gives each model its own rows:

    >>> import torch, nnfit as nf
    >>> from nnfit.vectorized import fit_many
    >>> X = torch.randn(60, 3); y = X @ torch.tensor([[1.0], [2.0], [-1.0]])
    >>> learner = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=3, hidden=[8], output_size=1)
    >>> halves = [torch.arange(0, 30), torch.arange(30, 60)]
    >>> many = fit_many(learner, (X, y), n_models=2, epochs=2, batch_size=10, seed=1, device=torch.device("cpu"),
    ...                 threads=1, train_rows=halves)
    >>> many.n_models
    2
    """
    from torch.func import functional_call, stack_module_state, vmap

    from . import threads as threads_module
    from .checkpoints import Divergence, all_diverged_error, check_on_divergence, divergence_error
    from .ensemble import seeds_for
    from .errors import check_positive_int

    check_on_divergence(on_divergence)
    batch_size = check_positive_int("batch_size", batch_size, allow_none=True)
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
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def forward(p, b, x):
        return functional_call(base, (p, b), (x,))

    batched = vmap(forward, in_dims=(0, 0, 0), randomness="different")
    batched_loss = vmap(learner.loss, in_dims=(0, 0))
    optimizer = learner.build_optimizer(list(params.values()))
    lr = learner.opt_hparams.get("lr", optimizer.param_groups[0].get("lr"))
    rule, diverged = Divergence(n_models), {}
    X, y = train.X.to(device), train.y.to(device)
    rows = train_rows if train_rows is not None else [torch.arange(len(X))] * n_models
    if len({len(r) for r in rows}) != 1:
        raise ArgumentError("Every model must train on the same number of rows.")
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    n = len(rows[0])
    size = n if batch_size is None else batch_size
    metrics = [[copy.deepcopy(m) for m in learner.metrics] for _ in range(n_models)]
    if threads is None:
        threads = threads_module.choose(models[0], batch_size, n, device)
        threads = 1 if threads == 1 and n_models * sum(p.numel() for p in models[0].parameters()) < 2e5 else threads
    records = []
    with torch.random.fork_rng(devices=[]), threads_module.using(threads):
        torch.manual_seed(seeds[0])
        for epoch in range(1, epochs + 1):
            for model_metrics in metrics:
                for metric in model_metrics:
                    metric.reset()
            order = torch.stack([r[torch.randperm(n, generator=g)] for r, g in zip(rows, generators)]).to(device)
            loss_sum = torch.zeros(n_models, device=device)
            seen = []
            for batch, start in enumerate(range(0, n, size)):
                index = order[:, start : start + size]
                xb, yb = X[index], y[index]
                try:
                    pred = batched(params, buffers, xb)
                    losses = batched_loss(pred, yb)
                except Exception as error:
                    raise _vmap_error(models[0], error, epoch, batch) from error
                if losses.shape != (n_models,):
                    raise ArgumentError(f"The loss must give one number per batch; it gave shape {tuple(losses.shape[1:])}.")
                if epoch == 1 and batch == 0:
                    rule.first(losses)  # the untrained models' losses, each one's reference
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()
                optimizer.step()
                loss_sum += losses.detach() * index.shape[1]
                if metrics[0]:
                    seen.append((pred.detach(), yb))
            # Metrics are sums over rows: one update per model with the whole epoch's predictions
            # gives what an update per batch would, at a K-th of the calls.
            if seen:
                preds, targets = torch.cat([p for p, _ in seen], dim=1), torch.cat([t for _, t in seen], dim=1)
                seen.clear()
                for k, model_metrics in enumerate(metrics):
                    for metric in model_metrics:
                        metric.update(preds[k], targets[k])
            values = [loss_sum / n] + [torch.stack([m[i].compute() for m in metrics]) for i in range(len(learner.metrics))]
            metric_names = ["loss"] + [m.name for m in learner.metrics]
            read = torch.stack([v.to("cpu", torch.float64) for v in values]).tolist()
            for metric, row in zip(metric_names, read):
                records += [("train", metric, epoch, value, k + 1) for k, value in enumerate(row)]
            for k in rule.check(read[0]):
                if k not in diverged:
                    can_drop = n_models > 1 and on_divergence == "error"
                    diverged[k] = divergence_error(rule, k, read[0][k], epoch, names[k], lr, can_drop=can_drop)
                    if on_divergence == "error":
                        raise diverged[k]
            if len(diverged) == n_models:
                raise all_diverged_error(diverged[k] for k in sorted(diverged))
    for k, model in enumerate(models):
        model.load_state_dict({name: value[k].detach() for name, value in {**params, **buffers}.items()})
    kept = [k for k in range(n_models) if k not in diverged]
    number = {k + 1: i + 1 for i, k in enumerate(kept)}
    records = [(*row[:4], number[row[4]]) for row in records if row[4] in number]
    return FittedMany(learner, [models[k].eval() for k in kept], records, time.perf_counter() - began, threads, device,
                      dropped={names[k]: str(error) for k, error in sorted(diverged.items())})


def _vmap_error(model, error, epoch, batch):
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, (RuntimeError, ValueError, NotImplementedError)) and ("vmap" in text or "functorch" in text or "batched" in text.lower()):
        return ArgumentError(
            f"{type(model).__name__} cannot be trained as several models at once (torch.func.vmap: {text}); "
            "use n_models=1, or write the module without in-place updates of its buffers."
        )
    return TrainingError(f"{type(model).__name__} failed in epoch {epoch}, batch {batch + 1}: {type(error).__name__}: {text}")

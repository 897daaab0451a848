"""Many networks of one shape trained at once: ensembles, cross-validation folds, grids.

K multilayer perceptrons with the same layer sizes are stacked into one set of batched
weights, shape (K, in, out), and trained together with batched matrix products. On small data
the cost of a step is mostly overhead, so K models cost little more than one.

Each model keeps its own initialization (model k is built exactly as ``nf.mlp(seed=seeds[k])``
builds its network), its own shuffling order (a generator seeded with ``seeds[k]``), its own
dropout masks and its own optimizer state; learning rate, weight decay and dropout may differ
between models (a grid), and so may the rows each model trains on (cross-validation folds).
With the same seed, model k equals the model trained alone, to float tolerance.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ArgumentError
from .modules import ACTIVATIONS, MLP

OPTIMIZER_DEFAULTS = {
    "sgd": {"lr": 1e-3, "momentum": 0.0},
    "rmsprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8},
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8},
    "adamw": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8},
}


class StackedMLP(nn.Module):
    """K MLPs of one shape with stacked weights; ``forward`` gives (K, n, outputs).

    >>> import torch, nnfit as nf
    >>> from nnfit.ensemble import StackedMLP
    >>> nets = [nf.MLP(4, hidden=[3], output_size=1) for _ in range(5)]
    >>> StackedMLP(nets)(torch.zeros(7, 4)).shape
    torch.Size([5, 7, 1])
    """

    def __init__(self, models: list, dropout=None):
        super().__init__()
        first = models[0]
        shape = (first.input_size, first.sizes, first.output_size, first.activations)
        for model in models:
            if (model.input_size, model.sizes, model.output_size, model.activations) != shape:
                raise ArgumentError("Stacked models must share input size, hidden sizes, outputs and activations.")
        self.n_models = len(models)
        self.input_size, self.sizes, self.output_size, self.activations = shape
        layers = lambda m: list(m.hidden) + [m.output]  # noqa: E731
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([layers(m)[i].weight.detach().T for m in models]).contiguous())
            for i in range(len(self.sizes) + 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([layers(m)[i].bias.detach()[None, :] for m in models]).contiguous())
            for i in range(len(self.sizes) + 1)
        )
        rates = dropout if dropout is not None else [m.dropouts for m in models]
        self.register_buffer("dropout", torch.as_tensor(rates, dtype=torch.float32).reshape(self.n_models, len(self.sizes)))
        self.g = nn.ModuleList(ACTIVATIONS[a]() for a in self.activations)

    @property
    def dropouts(self) -> list:
        return self.dropout.tolist()

    def forward(self, x):
        """x: (n, p), shared by every model, or (K, n, p), one batch per model."""
        if x.dim() == 2:
            x = x.expand(self.n_models, *x.shape)
        use_dropout = self.training and bool(self.dropout.any())
        for layer, g in enumerate(self.g):
            x = g(torch.baddbmm(self.biases[layer], x, self.weights[layer]))
            if use_dropout:
                p = self.dropout[:, layer].reshape(-1, 1, 1)
                x = x * (torch.rand_like(x) >= p) / (1 - p)
        return torch.baddbmm(self.biases[-1], x, self.weights[-1])

    def unstack(self, k: int) -> MLP:
        """Model k as an ordinary ``MLP``."""
        model = MLP(self.input_size, self.sizes, self.output_size, self.activations, self.dropout[k].tolist())
        layers = list(model.hidden) + [model.output]
        with torch.no_grad():
            for layer, weight, bias in zip(layers, self.weights, self.biases):
                layer.weight.copy_(weight[k].T)
                layer.bias.copy_(bias[k, 0])
        return model.eval()

    def architecture(self) -> dict:
        return {
            "input_size": self.input_size, "hidden": self.sizes, "output_size": self.output_size,
            "activation": self.activations, "dropout": self.dropouts, "n_models": self.n_models,
        }

    @classmethod
    def from_architecture(cls, architecture: dict) -> "StackedMLP":
        dropout = architecture["dropout"]
        models = [
            MLP(architecture["input_size"], architecture["hidden"], architecture["output_size"], architecture["activation"], d)
            for d in dropout
        ]
        return cls(models)


class StackedOptimizer:
    """SGD (momentum), RMSprop, Adam and AdamW on stacked weights, as torch.optim computes them.

    ``lr`` and ``weight_decay`` hold one value per model; ``step(active)`` updates only the
    models marked active (a fold with no rows left in this epoch's batch stays as it is).
    """

    def __init__(self, params, name: str, lr, weight_decay, **options):
        if name not in OPTIMIZER_DEFAULTS:
            raise ArgumentError(
                f"Training several models at once supports the optimizers {', '.join(OPTIMIZER_DEFAULTS)}, not {name!r}."
            )
        self.params = list(params)
        self.name = name
        self.options = dict(OPTIMIZER_DEFAULTS[name], **options)
        device = self.params[0].device
        self.lr = torch.as_tensor(lr, dtype=torch.float32, device=device).reshape(-1, 1, 1)
        self.weight_decay = torch.as_tensor(weight_decay, dtype=torch.float32, device=device).reshape(-1, 1, 1)
        self.state = [{} for _ in self.params]
        self.steps = torch.zeros(len(self.lr), 1, 1, device=device)

    @torch.no_grad()
    def step(self, active=None):
        mask = None if active is None else active.reshape(-1, 1, 1)
        self.steps += 1 if mask is None else mask.to(self.steps.dtype)
        for param, state in zip(self.params, self.state):
            new_param, new_state = self._update(param, param.grad, state)
            if mask is None:
                param.copy_(new_param)
                state.update(new_state)
            else:
                param.copy_(torch.where(mask, new_param, param))
                for key, value in new_state.items():
                    state[key] = torch.where(mask, value, state[key]) if key in state else torch.where(mask, value, 0.0)

    def _update(self, p, g, state):
        o, lr, wd = self.options, self.lr, self.weight_decay
        if self.name == "adamw":
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        if self.name == "sgd":
            momentum = o["momentum"]
            if momentum:
                buf = g if "momentum_buffer" not in state else momentum * state["momentum_buffer"] + g
                return p - lr * buf, {"momentum_buffer": buf}
            return p - lr * g, {}
        if self.name == "rmsprop":
            alpha = o["alpha"]
            square_avg = state.get("square_avg", torch.zeros_like(p)) * alpha + (1 - alpha) * g * g
            return p - lr * g / (square_avg.sqrt() + o["eps"]), {"square_avg": square_avg}
        beta1, beta2 = o["betas"]
        exp_avg = state.get("exp_avg", torch.zeros_like(p)) * beta1 + (1 - beta1) * g
        exp_avg_sq = state.get("exp_avg_sq", torch.zeros_like(p)) * beta2 + (1 - beta2) * g * g
        steps = self.steps.clamp(min=1)
        bias1 = 1 - beta1**steps
        bias2_sqrt = (1 - beta2**steps).sqrt()
        denom = exp_avg_sq.sqrt() / bias2_sqrt + o["eps"]
        return p - (lr / bias1) * exp_avg / denom, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def row_losses(pred, target, task: str):
    """Per-row losses (K, n): squared error averaged over outputs, cross-entropy, or binary."""
    K, n = pred.shape[:2]
    if task == "regression":
        return (pred - target).square().mean(dim=2)
    if task == "binary":
        return F.binary_cross_entropy_with_logits(pred[..., 0], target.to(pred.dtype), reduction="none")
    return F.cross_entropy(pred.reshape(K * n, -1), target.reshape(K * n), reduction="none").reshape(K, n)


def row_metric(pred, target, task: str, response_scale=None):
    """Per-row metric (K, n): absolute error in original units (regression) or correctness."""
    if task == "regression":
        return ((pred - target).abs() * response_scale).mean(dim=2)
    if task == "binary":
        return ((pred[..., 0] > 0).to(torch.int64) == target).to(pred.dtype)
    return (pred.argmax(dim=2) == target).to(pred.dtype)


def build_models(seeds, input_size, sizes, n_outputs, activation, dropout) -> list:
    """One MLP per seed, each initialized exactly as a single fit with that seed would be."""
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(MLP(input_size, sizes, n_outputs, activation, dropout))
    return models


def train(net: StackedMLP, X, y, task: str, seeds, optimizer: str, lr, weight_decay, epochs: int,
          batch_size, train_rows=None, valid_rows=None, response_scale=None, options=None, generators=None):
    """Train the stacked models; return history rows (set, metric, epoch, value, model).

    X is (n, p), shared, or (K, n, p), one version per model (each fold scaled with its own
    training rows); y likewise. ``train_rows`` / ``valid_rows``: one index tensor per model
    (default: every row, no validation). ``response_scale`` (outputs,) or (K, 1, outputs) maps
    errors back to original units. Each epoch's loss and metric are summed on the device and
    read once.
    """
    K = net.n_models
    n = X.shape[-2]
    per_model_x, per_model_y = X.dim() == 3, y.dim() == (3 if task == "regression" else 2)
    model_index = torch.arange(K, device=X.device)[:, None]
    device = X.device
    if train_rows is None:
        train_rows = [torch.arange(n, device=device)] * K
    sizes = torch.tensor([len(rows) for rows in train_rows], device=device)
    n_max = int(sizes.max())
    ragged = bool((sizes != n_max).any())
    if generators is None:
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    opt = StackedOptimizer(net.parameters(), optimizer, lr, weight_decay, **(options or {}))
    scale = None if response_scale is None else torch.as_tensor(response_scale, dtype=X.dtype, device=device)
    metric_name = "mae" if task == "regression" else "accuracy"
    size = n_max if batch_size is None else batch_size
    positions = torch.arange(n_max, device=device)
    valid_mask = _rows_mask(valid_rows, K, n, device)
    records = []
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.stack([
            torch.cat([rows[torch.randperm(len(rows), generator=g).to(device)], rows.new_zeros(n_max - len(rows))])
            for rows, g in zip(train_rows, generators)
        ])
        loss_sum = torch.zeros(K, device=device)
        metric_sum = torch.zeros(K, device=device)
        for start in range(0, n_max, size):
            index = order[:, start : start + size]
            xb = X[model_index, index] if per_model_x else X[index]
            yb = y[model_index, index] if per_model_y else y[index]
            pred = net(xb)
            losses = row_losses(pred, yb, task)
            if ragged:
                rows_in = (positions[start : start + size][None, :] < sizes[:, None]).to(losses.dtype)
                counts = rows_in.sum(dim=1)
                per_model = (losses * rows_in).sum(dim=1) / counts.clamp(min=1)
                per_model.sum().backward()
                opt.step(active=counts > 0)
                metric_rows = row_metric(pred.detach(), yb, task, scale) * rows_in
                loss_sum += (losses.detach() * rows_in).sum(dim=1)
            else:
                losses.mean(dim=1).sum().backward()
                opt.step()
                metric_rows = row_metric(pred.detach(), yb, task, scale)
                loss_sum += losses.detach().sum(dim=1)
            metric_sum += metric_rows.sum(dim=1)
            for p in net.parameters():
                p.grad = None
        values = {("train", "loss"): loss_sum / sizes, ("train", metric_name): metric_sum / sizes}
        if valid_mask is not None:
            values.update(_valid_values(net, X, y, task, scale, valid_mask, metric_name))
        _record(records, values, epoch)
    return records


def _rows_mask(rows, K, n, device):
    if rows is None:
        return None
    mask = torch.zeros(K, n, dtype=torch.bool, device=device)
    for k, index in enumerate(rows):
        mask[k, index] = True
    return mask


@torch.no_grad()
def _valid_values(net, X, y, task, scale, mask, metric_name):
    net.eval()
    pred = net(X)
    target = y if y.dim() == pred.dim() - (task != "regression") else y.expand(net.n_models, *y.shape)
    weight = mask.to(pred.dtype)
    count = weight.sum(dim=1)
    return {
        ("valid", "loss"): (row_losses(pred, target, task) * weight).sum(dim=1) / count,
        ("valid", metric_name): (row_metric(pred, target, task, scale) * weight).sum(dim=1) / count,
    }


def _record(records, values: dict, epoch: int):
    """One device-to-host transfer per epoch for every model's values."""
    keys = list(values)
    numbers = torch.stack([values[key] for key in keys]).cpu().tolist()
    for (split, name), row in zip(keys, numbers):
        for k, value in enumerate(row):
            records.append((split, name, epoch, value if math.isfinite(value) else float("nan"), k + 1))


def seeds_for(seed, n_models: int) -> list:
    """Model k's seed: ``seed + k`` (a random base when ``seed`` is None)."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    return [int(seed) + k for k in range(n_models)]


def check_n_models(n_models) -> int:
    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
        raise ArgumentError(f"n_models must be a positive whole number, not {n_models!r}.")
    return n_models


def fit(X, y, task: str, n_outputs: int, hidden, activation, dropouts, optimizer: str, lr, weight_decay,
        epochs: int, batch_size, seeds, train_rows=None, valid_rows=None, response_scale=None,
        device="cpu", threads=None, generators=None):
    """Build one MLP per seed, stack them and train them together.

    ``dropouts``, ``lr`` and ``weight_decay`` hold one entry per model. Returns the trained
    ``StackedMLP`` (on the CPU), its history rows, the seconds it took and the threads used.
    """
    import time

    from . import threads as threads_module

    began = time.perf_counter()
    models = []
    for seed, rates in zip(seeds, dropouts):
        models += build_models([seed], X.shape[-1], hidden, n_outputs, activation, rates)
    net = StackedMLP(models).to(device)
    X, y = X.to(device), y.to(device)
    rows_on = lambda rows: None if rows is None else [r.to(device) for r in rows]  # noqa: E731
    if threads is None:
        threads = threads_module.choose(net, batch_size, len(X), device)
    with torch.random.fork_rng(devices=[]), threads_module.using(threads):
        torch.manual_seed(seeds[0])
        records = train(net, X, y, task, seeds, optimizer, lr, weight_decay, epochs, batch_size,
                        rows_on(train_rows), rows_on(valid_rows), response_scale, generators=generators)
    return net.cpu().eval(), records, time.perf_counter() - began, threads

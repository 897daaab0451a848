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
        self._dropout_changed()

    @property
    def dropouts(self) -> list:
        return self.dropout.tolist()

    @property
    def has_dropout(self) -> bool:
        return self._has_dropout

    def _dropout_changed(self):
        """Per-layer (K, 1, 1) drop probabilities and 1 / (1 - p), computed once."""
        self._has_dropout = bool(self.dropout.any())
        self.drop_p = [self.dropout[:, layer].reshape(-1, 1, 1) for layer in range(len(self.sizes))]
        self.drop_scale = [1 / (1 - p) for p in self.drop_p]

    def _apply(self, fn, *args, **kwargs):  # .to(device) moves the buffer; recompute what derives from it
        result = super()._apply(fn, *args, **kwargs)
        self._dropout_changed()
        return result

    def forward(self, x):
        """x: (n, p), shared by every model, or (K, n, p), one batch per model."""
        if x.dim() == 2:
            x = x.expand(self.n_models, *x.shape)
        use_dropout = self.training and self.has_dropout
        for layer, g in enumerate(self.g):
            x = g(torch.baddbmm(self.biases[layer], x, self.weights[layer]))
            if use_dropout:
                x = x * (torch.rand_like(x) >= self.drop_p[layer]).to(x.dtype) * self.drop_scale[layer]
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

    ``lr`` and ``weight_decay`` hold one value per model. ``step(grads)`` updates every model
    with in-place multi-tensor (``torch._foreach``) operations; ``step(grads, active)`` leaves
    the models marked inactive as they were (a fold with no rows in this batch).
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
        per_model = lambda v: torch.as_tensor(v, dtype=torch.float32, device=device).reshape(-1, 1, 1)  # noqa: E731
        lr, weight_decay = per_model(lr), per_model(weight_decay)
        # Per-model values spread to each parameter's shape, so the _foreach ops stay on their fast path.
        self.lr = [lr.expand_as(p).contiguous() for p in self.params]
        self.weight_decay = [weight_decay.expand_as(p).contiguous() for p in self.params] if bool(weight_decay.any()) else None
        self.decay_factor = [1 - a * b for a, b in zip(self.lr, self.weight_decay)] if self.weight_decay and name == "adamw" else None
        buffers = {
            "sgd": ["momentum_buffer"] if self.options.get("momentum") else [],
            "rmsprop": ["square_avg"],
            "adam": ["exp_avg", "exp_avg_sq"],
            "adamw": ["exp_avg", "exp_avg_sq"],
        }[name]
        # Zero buffers reproduce torch's first steps: momentum * 0 + grad is the grad itself.
        self.state = {key: [torch.zeros_like(p) for p in self.params] for key in buffers}
        self.steps = torch.zeros(len(lr), 1, 1, device=device)
        self.n_steps = 0  # while every model has taken every step, a plain number

    @torch.no_grad()
    def step(self, grads, active=None):
        if active is None:
            self._step_all(list(grads))
            return
        mask = active.reshape(-1, 1, 1)
        before = [p.clone() for p in self.params], {k: [t.clone() for t in v] for k, v in self.state.items()}
        self._step_all(list(grads), steps_mask=mask)
        for tensors, old in [(self.params, before[0])] + [(self.state[k], before[1][k]) for k in self.state]:
            for tensor, saved in zip(tensors, old):
                tensor.copy_(torch.where(mask, tensor, saved))

    def _step_all(self, grads, steps_mask=None):
        o, params = self.options, self.params
        self.steps += 1 if steps_mask is None else steps_mask.to(self.steps.dtype)
        if steps_mask is None and self.n_steps is not None:
            self.n_steps += 1
        else:
            self.n_steps = None
        if self.decay_factor is not None:
            torch._foreach_mul_(params, self.decay_factor)
        elif self.weight_decay is not None:
            grads = torch._foreach_add(grads, torch._foreach_mul(params, self.weight_decay))
        if self.name == "sgd":
            if o["momentum"]:
                buffers = self.state["momentum_buffer"]
                torch._foreach_mul_(buffers, o["momentum"])
                torch._foreach_add_(buffers, grads)
                grads = buffers
            update = torch._foreach_mul(grads, self.lr)
        elif self.name == "rmsprop":
            square_avg = self.state["square_avg"]
            torch._foreach_mul_(square_avg, o["alpha"])
            torch._foreach_addcmul_(square_avg, grads, grads, 1 - o["alpha"])
            denom = torch._foreach_sqrt(square_avg)
            torch._foreach_add_(denom, o["eps"])
            update = torch._foreach_div(grads, denom)
            torch._foreach_mul_(update, self.lr)
        else:
            beta1, beta2 = o["betas"]
            exp_avg, exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
            if self.n_steps is not None:
                bias1, bias2_sqrt = 1 - beta1**self.n_steps, math.sqrt(1 - beta2**self.n_steps)
            else:  # models have taken different numbers of steps
                steps = self.steps.clamp(min=1)
                bias1 = [(1 - beta1**steps).expand_as(p) for p in params]
                bias2_sqrt = [(1 - beta2**steps).sqrt().expand_as(p) for p in params]
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, bias2_sqrt)
            torch._foreach_add_(denom, o["eps"])
            update = torch._foreach_div(exp_avg, denom)
            torch._foreach_mul_(update, self.lr)
            torch._foreach_div_(update, bias1)
        torch._foreach_sub_(params, update)


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
        errors = (pred - target).abs()
        return (errors if response_scale is None else errors * response_scale).mean(dim=2)
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


CLOSED_FORM = {"relu", "sigmoid", "tanh", "identity", "linear"}


def train(net: StackedMLP, X, y, task: str, seeds, optimizer: str, lr, weight_decay, epochs: int,
          batch_size, train_rows=None, valid_rows=None, response_scale=None, options=None, generators=None,
          names=None, on_divergence: str = "error"):
    """Train the stacked models; return history rows (set, metric, epoch, value, model) and
    {model index: DivergenceError} for the models whose training diverged.

    X is (n, p), shared, or (K, n, p), one version per model (each fold scaled with its own
    training rows); y likewise. ``train_rows`` / ``valid_rows``: one index tensor per model
    (default: every row, no validation). ``response_scale`` (outputs,) or (K, 1, outputs) maps
    errors back to original units. Gradients are computed in closed form for relu, sigmoid,
    tanh and identity networks (autograd otherwise). Each epoch's loss and metric are summed
    on the device and read once.

    Each model's epoch loss is checked by ``checkpoints.Divergence``, the rule of every engine
    (NaN, infinite, or 10,000 times the untrained loss). A model that diverges raises a
    ``DivergenceError`` naming it (``names[k]``, default 'model k of K'), or with
    ``on_divergence="drop"`` it trains on apart (the stacked models never mix) and is reported
    in the dict returned (training ends early when every model diverged).
    """
    from .checkpoints import Divergence, divergence_error

    K = net.n_models
    names = names or [f"model {k + 1} of {K}" for k in range(K)]
    rates = list(lr) if isinstance(lr, (list, tuple)) else [lr] * K
    rule, diverged = Divergence(K), {}
    n = X.shape[-2]
    device = X.device
    per_model_x, per_model_y = X.dim() == 3, y.dim() == (3 if task == "regression" else 2)
    model_index = torch.arange(K, device=device)[:, None]
    if train_rows is None:
        train_rows = [torch.arange(n, device=device)] * K
    sizes = [len(rows) for rows in train_rows]
    n_max, n_min = max(sizes), min(sizes)
    sizes_tensor = torch.tensor(sizes, device=device, dtype=X.dtype)
    if generators is None:
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    opt = StackedOptimizer(net.parameters(), optimizer, lr, weight_decay, **(options or {}))
    scale = None if response_scale is None else torch.as_tensor(response_scale, dtype=X.dtype, device=device)
    metric_name = "mae" if task == "regression" else "accuracy"
    size = n_max if batch_size is None else batch_size
    positions = torch.arange(n_max, device=device)
    valid_mask = _rows_mask(valid_rows, K, n, device)
    closed_form = all(name in CLOSED_FORM for name in net.activations)
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
            # Folds of different sizes: mask the rows a model does not have (decided on the host).
            rows_in = counts = active = None
            if min(start + size, n_max) > n_min:
                rows_in = (positions[start : start + size][None, :] < sizes_tensor[:, None]).to(X.dtype)
                counts = rows_in.sum(dim=1).clamp(min=1).reshape(K, 1, 1)
                if start >= n_min:
                    active = torch.tensor([s > start for s in sizes], device=device)
            else:
                counts = index.shape[1]
            step = _closed_form_step if closed_form else _autograd_step
            grads, losses, metric_rows = step(net, xb, yb, task, rows_in, counts, scale)
            if epoch == 1 and start == 0:  # the untrained networks' losses, each model's reference
                rule.first(losses.sum(dim=1) / (counts.reshape(-1) if isinstance(counts, torch.Tensor) else counts))
            opt.step(grads, active)
            loss_sum += losses.sum(dim=1)
            metric_sum += metric_rows.sum(dim=1)
        values = {("train", "loss"): loss_sum / sizes_tensor, ("train", metric_name): metric_sum / sizes_tensor}
        if valid_mask is not None:
            values.update(_valid_values(net, X, y, task, scale, valid_mask, metric_name))
        epoch_losses = _record(records, values, epoch)[("train", "loss")]
        for k in rule.check(epoch_losses):
            if k not in diverged:
                diverged[k] = divergence_error(rule, k, epoch_losses[k], epoch, names[k], rates[k],
                                               can_drop=K > 1 and on_divergence == "error")
                if on_divergence == "error":
                    raise diverged[k]
        if len(diverged) == K:
            break  # nothing left to train; the caller says so
    return records, diverged


def _loss_gradient(pred, target, task, rows_in, counts, response_scale):
    """(d mean-loss / d pred (K, B, outputs), per-row loss (K, B), per-row metric (K, B))."""
    if task == "regression":
        diff = pred - target
        losses = diff.square().mean(dim=2)
        errors = diff.abs() if response_scale is None else diff.abs() * response_scale
        metric = errors.mean(dim=2)
        d = diff * (2.0 / pred.shape[2]) if pred.shape[2] > 1 else diff * 2.0
    else:
        if task == "binary":
            logits = pred[..., 0]
            losses = F.binary_cross_entropy_with_logits(logits, target.to(pred.dtype), reduction="none")
            d = (torch.sigmoid(logits) - target.to(pred.dtype))[..., None]
            metric = ((logits > 0) == target.bool()).to(pred.dtype)
        else:
            log_probs = torch.log_softmax(pred, dim=2)
            losses = -log_probs.gather(2, target[..., None])[..., 0]
            d = log_probs.exp_().scatter_add_(2, target[..., None], torch.full_like(target[..., None], -1, dtype=pred.dtype))
            metric = (pred.argmax(dim=2) == target).to(pred.dtype)
    d = d / counts
    if rows_in is not None:
        d, losses, metric = d * rows_in[..., None], losses * rows_in, metric * rows_in
    return d, losses, metric


@torch.no_grad()
def _closed_form_step(net: StackedMLP, x, target, task, rows_in, counts, response_scale):
    """Forward pass, then every weight's gradient by the chain rule, without autograd."""
    inputs, gates = [x], []
    use_dropout = net.training and net.has_dropout
    a = x
    for layer, name in enumerate(net.activations):
        z = torch.baddbmm(net.biases[layer], a, net.weights[layer])
        keep = torch.rand_like(z).ge_(net.drop_p[layer]).mul_(net.drop_scale[layer]) if use_dropout else None
        if name == "relu":
            a = z.clamp_min_(0) if keep is None else z.clamp_min_(0).mul_(keep)
            gate = a.sign() if keep is None else a.sign().mul_(net.drop_scale[layer])
        else:
            if name == "sigmoid":
                a = torch.sigmoid(z)
                gate = a * (1 - a)
            elif name == "tanh":
                a = torch.tanh(z)
                gate = 1 - a * a
            else:
                a, gate = z, None
            if keep is not None:
                a = a * keep
                gate = keep if gate is None else gate.mul_(keep)
        inputs.append(a)
        gates.append(gate)
    pred = torch.baddbmm(net.biases[-1], a, net.weights[-1])
    d, losses, metric = _loss_gradient(pred, target, task, rows_in, counts, response_scale)
    weight_grads, bias_grads = [], []
    for layer in range(len(net.weights) - 1, -1, -1):
        weight_grads.append(torch.bmm(inputs[layer].transpose(1, 2), d))
        bias_grads.append(d.sum(dim=1, keepdim=True))
        if layer:
            d = torch.bmm(d, net.weights[layer].transpose(1, 2))
            if gates[layer - 1] is not None:
                d = d * gates[layer - 1]
    return weight_grads[::-1] + bias_grads[::-1], losses, metric


def _autograd_step(net: StackedMLP, x, target, task, rows_in, counts, response_scale):
    """The same step through autograd, for activations without a closed form here."""
    pred = net(x)
    per_row = row_losses(pred, target, task)
    metric = row_metric(pred.detach(), target, task, response_scale)
    if rows_in is not None:
        per_row, metric = per_row * rows_in, metric * rows_in
    (per_row.sum(dim=1) / torch.as_tensor(counts).reshape(-1)).sum().backward()
    losses = per_row.detach()
    grads = [p.grad for p in net.parameters()]
    for p in net.parameters():
        p.grad = None
    return grads, losses, metric


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


def _record(records, values: dict, epoch: int) -> dict:
    """One device-to-host transfer per epoch for every model's values; returns them, {key: [per model]}."""
    keys = list(values)
    numbers = torch.stack([values[key] for key in keys]).cpu().tolist()
    for (split, name), row in zip(keys, numbers):
        for k, value in enumerate(row):
            records.append((split, name, epoch, value if math.isfinite(value) else float("nan"), k + 1))
    return dict(zip(keys, numbers))


def seeds_for(seed, n_models: int) -> list:
    """Model k's seed: ``seed + k`` (a random base when ``seed`` is None)."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    return [int(seed) + k for k in range(n_models)]


def check_n_models(n_models) -> int:
    """``n_models`` if it is a positive whole number, else an ArgumentError."""
    from .errors import check_positive_int

    return check_positive_int("n_models", n_models)


def fit(X, y, task: str, n_outputs: int, hidden, activation, dropouts, optimizer: str, lr, weight_decay,
        epochs: int, batch_size, seeds, train_rows=None, valid_rows=None, response_scale=None,
        device="cpu", threads=None, generators=None, names=None, on_divergence: str = "error"):
    """Build one MLP per seed, stack them and train them together.

    ``dropouts``, ``lr`` and ``weight_decay`` hold one entry per model. Returns the trained
    ``StackedMLP`` (on the CPU), its history rows, the seconds it took, the threads used and
    {model index: DivergenceError} of the models that diverged (see ``train``; with
    ``on_divergence="drop"`` they are still in the stack, for the caller to leave out).
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
        records, diverged = train(net, X, y, task, seeds, optimizer, lr, weight_decay, epochs, batch_size,
                                  rows_on(train_rows), rows_on(valid_rows), response_scale, generators=generators,
                                  names=names, on_divergence=on_divergence)
    return net.cpu().eval(), records, time.perf_counter() - began, threads, diverged


def keep_models(net: StackedMLP, records: list, kept: list):
    """The stack and history of the models ``kept`` (0-based), renumbered 1..len(kept)."""
    if len(kept) == net.n_models:
        return net, records
    number = {k + 1: i + 1 for i, k in enumerate(kept)}
    records = [(*row[:4], number[row[4]]) for row in records if row[4] in number]
    return StackedMLP([net.unstack(k) for k in kept]).eval(), records

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


import torch
from torch import nn
from torch.nn import functional as F

from . import closed_form
from ..errors import ArgumentError
from .many import Stacked
from ..modules import ACTIVATIONS, MLP

OPTIMIZERS = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
OPTIMIZER_DEFAULTS = {name: closed_form.defaults(optimizer) for name, optimizer in OPTIMIZERS.items()}


class StackedMLP(Stacked, nn.Module):
    """K MLPs of one shape with stacked weights; ``forward`` gives (K, n, outputs).

    >>> import torch, nnfit as nf
    >>> from nnfit.train.ensemble import StackedMLP
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

    # -------------------------------------------------------------- training (nnfit.train.many's step)
    loss_gradient = None  # the closed-form loss of the task (closed_form.LOSSES), set by the trainer
    _layers = _layers_of = None  # the closed-form view of the layers, and the optimizer it was made from

    def losses(self, ctx, pred, target, weight=None, total=None):
        """Each model's loss on its rows of the batch, (K,)."""
        return self.loss_gradient(pred, target, weight, total)[0]

    def train_batch(self, ctx, weight, total):
        """(prediction, loss per model) of a training batch, the gradients written in the optimizer's buffer."""
        opt = ctx.opt
        if all(name in CLOSED_FORM for name in self.activations):
            if self._layers_of is not opt:
                L = len(self.weights)
                self._layers = closed_form.Layers(opt.params[:L], opt.params[L:], opt.grads[:L], opt.grads[L:],
                                                  self.activations, [1 - p for p in self.drop_p], uniform_noise=True)
                self._layers_of = opt
            return self._layers.train_step(ctx.input, ctx.target, self.loss_gradient, weight, total)
        pred = self(ctx.input)  # other activations: autograd, with the same loss and its gradient
        loss, grad = self.loss_gradient(pred.detach(), ctx.target, weight, total)
        opt.flat_grads.zero_()
        pred.backward(grad)
        return pred.detach(), loss

    def subset(self, models) -> "StackedMLP":
        """A stack of the models listed (0-based), with their weights and dropout rates."""
        stack = StackedMLP([self.unstack(k) for k in models]).to(self.weights[0].device).train(self.training)
        stack.loss_gradient = self.loss_gradient
        return stack

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


def row_losses(pred, target, task: str):
    """Per-row losses (K, n): squared error averaged over outputs, cross-entropy, or binary."""
    K, n = pred.shape[:2]
    if task == "regression":
        return (pred - target).square().mean(dim=2)
    if task == "binary":
        return F.binary_cross_entropy_with_logits(pred[..., 0], target.to(pred.dtype), reduction="none")
    return F.cross_entropy(pred.reshape(K * n, -1), target.reshape(K * n), reduction="none").reshape(K, n)


def build_models(seeds, input_size, sizes, n_outputs, activation, dropout) -> list:
    """One MLP per seed, each initialized exactly as a single fit with that seed would be."""
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(MLP(input_size, sizes, n_outputs, activation, dropout))
    return models


CLOSED_FORM = set(closed_form.ACTIVATIONS)
LOSSES = {"regression": closed_form.mse, "binary": closed_form.binary}  # any other task: cross_entropy


VALID_BLOCK = 1 << 16  # validation rows per forward pass (no gradients are kept)


def train(net: StackedMLP, X, y, task: str, seeds, optimizer: str, lr, weight_decay, epochs: int,
          batch_size, train_rows=None, valid_rows=None, response_scale=None, options=None, generators=None,
          names=None, on_divergence: str = "error", callbacks=(), weight=None, metrics=None, verbose=False,
          min_epochs=None, description=None):
    """Train the stacked models with the ordinary loop (``nnfit.train.many``); return the loop's context.

    X is (n, p), shared, or (K, n, p), one version per model (each fold scaled with its own
    training rows); y likewise. ``train_rows`` / ``valid_rows``: one index tensor per model
    (default: every row, no validation). ``response_scale`` (outputs,) or (K, 1, outputs) maps
    errors back to original units for the default metric (mae; accuracy for classes), or
    ``metrics`` gives one list of metrics per model. ``weight`` (n,) weighs the rows.
    Gradients are computed in closed form for relu, sigmoid, tanh and identity networks
    (``nnfit.train.closed_form``; through autograd otherwise, with the same loss and its gradient), and
    the optimizer is ``closed_form.Optimizer``, as for a single fused fit. ``callbacks`` work as
    for one model, per model (see ``nnfit.train.many``).

    The divergence guard checks each model's epoch loss by ``divergence.Divergence``, the rule of
    every engine (NaN, infinite, or 10,000 times the untrained loss). A model that diverges raises
    a ``DivergenceError`` naming it (``names[k]``, default 'model k of K'), or with
    ``on_divergence="drop"`` it stops training (the stacked models never mix) and is listed in
    ``ctx.diverged`` (training ends early when every model diverged).
    """
    from . import many
    from . import metrics as metrics_module

    K = net.n_models
    rates = list(lr) if isinstance(lr, (list, tuple)) else [lr] * K
    n = X.shape[-2]
    device = X.device
    per_model_y = y.dim() == (3 if task == "regression" else 2)
    if train_rows is None:
        train_rows = [torch.arange(n, device=device)] * K
    data = many.ManyRows(X, y, train_rows, seeds=seeds, generators=generators, weight=weight, per_model_y=per_model_y)
    valid = None
    if valid_rows is not None:
        valid = many.ManyRows(X, y, valid_rows, block=VALID_BLOCK, per_model_y=per_model_y)
    decays = list(weight_decay) if isinstance(weight_decay, (list, tuple)) else [weight_decay] * K

    def opt(stack, models):  # the closed-form optimizer of the models a stack holds, each with its rate
        return _optimizer(stack, optimizer, [rates[k] for k in models], [decays[k] for k in models], options)

    net.loss_gradient = LOSSES.get(task, closed_form.cross_entropy)
    if metrics is None:
        if task == "regression":
            scale = torch.ones(y.shape[-1]) if response_scale is None else torch.as_tensor(response_scale, dtype=torch.float32)
            scales = [scale[k].reshape(-1) if scale.dim() == 3 else scale.reshape(-1) for k in range(K)]
            metrics = [[metrics_module.Rescaled(metrics_module.MAE(), 0.0, s)] for s in scales]
        else:
            metrics = [[metrics_module.Accuracy()] for _ in range(K)]
    many.check_callbacks(callbacks)  # first: a step-level callback is refused for what it is
    needs = [type(c).__name__ for c in callbacks if getattr(c, "needs_autograd", True)]
    if needs:
        raise ArgumentError(
            f"Several models at once train in closed form, without autograd or a torch optimizer, and {needs[0]} "
            "needs them (gradients, a torch optimizer or batch-level state). Fit the models one at a time, or use "
            "nf.setup(nf.MLP, ...).fit(..., n_models=K), which trains through autograd when a callback needs it."
        )
    from .data import InMemory

    description = {**(description or {}), "rows": data.describe()}
    ctx = many.fit(net, None, opt, data, valid, epochs, batch_size, metrics, callbacks, min_epochs=min_epochs,
                   device=device, names=names, on_divergence=on_divergence, verbose=verbose, seed=seeds[0],
                   description=description, data_given={"data": InMemory(X, y, weight)})
    for param in net.parameters():  # each its own tensor again, out of the optimizer's buffer
        param.data, param.grad = param.data.clone(), None
    net._layers = net._layers_of = None
    return ctx


def optimizer_for(net: StackedMLP, optimizer_class, options: dict) -> closed_form.Optimizer:
    """The closed-form form of a torch optimizer class with ``options`` over the stacked weights."""
    return closed_form.Optimizer(net.parameters(), optimizer_class, dict(options), n_models=net.n_models)


def _optimizer(net: StackedMLP, name: str, lr, weight_decay, options) -> closed_form.Optimizer:
    """The closed-form optimizer ``name`` over the stacked weights, with one lr and weight decay per model."""
    if name not in OPTIMIZERS:
        raise ArgumentError(
            f"Training several models at once supports the optimizers {', '.join(OPTIMIZERS)}, not {name!r}."
        )
    def per_model(value):
        return list(value) if isinstance(value, (list, tuple)) else [value] * net.n_models

    settings = {**(options or {}), "lr": per_model(lr), "weight_decay": per_model(weight_decay)}
    return closed_form.Optimizer(net.parameters(), OPTIMIZERS[name], settings, n_models=net.n_models)


def seeds_for(seed, n_models: int) -> list:
    """Model k's seed: ``seed + k`` (a random base when ``seed`` is None)."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    return [int(seed) + k for k in range(n_models)]


def check_n_models(n_models) -> int:
    """``n_models`` if it is a positive whole number, else an ArgumentError."""
    from ..errors import check_positive_int

    return check_positive_int("n_models", n_models)


def fit(X, y, task: str, n_outputs: int, hidden, activation, dropouts, optimizer: str, lr, weight_decay,
        epochs: int, batch_size, seeds, train_rows=None, valid_rows=None, response_scale=None,
        device="cpu", threads=None, generators=None, names=None, on_divergence: str = "error", **training):
    """Build one MLP per seed, stack them and train them together.

    ``dropouts``, ``lr`` and ``weight_decay`` hold one entry per model; ``training`` holds
    ``train``'s other options (callbacks, weight, metrics, verbose, min_epochs, description).
    Returns the trained
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
        threads = threads_module.choose(net, batch_size, X.shape[-2], device)  # rows: X is (n, p) or (K, n, p)
    with torch.random.fork_rng(devices=[]), threads_module.using(threads):
        torch.manual_seed(seeds[0])
        weight = training.pop("weight", None)
        ctx = train(net, X, y, task, seeds, optimizer, lr, weight_decay, epochs, batch_size,
                    rows_on(train_rows), rows_on(valid_rows), response_scale, generators=generators,
                    names=names, on_divergence=on_divergence, weight=None if weight is None else weight.to(device),
                    **training)
    return net.cpu().eval(), ctx.records, time.perf_counter() - began, threads, ctx.diverged


def keep_models(net: StackedMLP, records: list, kept: list):
    """The stack and history of the models ``kept`` (0-based), renumbered 1..len(kept)."""
    if len(kept) == net.n_models:
        return net, records
    number = {k + 1: i + 1 for i, k in enumerate(kept)}
    records = [(*row[:4], number[row[4]]) for row in records if row[4] in number]
    return StackedMLP([net.unstack(k) for k in kept]).eval(), records

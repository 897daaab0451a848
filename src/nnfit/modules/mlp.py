"""Networks in the course's notation: single-layer and multilayer perceptrons.

A single-layer network is f(X) = b0 + sum_k b_k g(w_k0 + sum_l w_kl X_l); a multilayer one
feeds each hidden layer's activations A^(h) into the next, and the output layer computes
f_t(X) = beta_t0 + sum_m beta_tm A^(H)_m for each outcome t.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ArgumentError, ArgumentTypeError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
    "linear": nn.Identity,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}

# How the course writes g(z), for printing.
ACTIVATION_FORMULAS = {
    "relu": "ReLU, g(z) = max(0, z)",
    "sigmoid": "sigmoid, g(z) = e^z / (1 + e^z)",
    "tanh": "tanh, g(z) = (e^z - e^-z) / (e^z + e^-z)",
    "identity": "identity, g(z) = z",
    "linear": "identity, g(z) = z",
    "elu": "ELU, g(z) = z if z > 0 else e^z - 1",
    "gelu": "GELU, g(z) = z Phi(z)",
    "leaky_relu": "leaky ReLU, g(z) = max(0.01 z, z)",
    "silu": "SiLU, g(z) = z / (1 + e^-z)",
    "softplus": "softplus, g(z) = log(1 + e^z)",
}


def per_layer(value, n_layers: int, name: str) -> list:
    """A value given once or once per hidden layer, as a list of ``n_layers`` values.

    >>> from nnfit.modules import per_layer
    >>> per_layer(0.4, 2, "dropout"), per_layer([0.4, 0.3], 2, "dropout")
    ([0.4, 0.4], [0.4, 0.3])
    """
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_layers
    if len(values) != n_layers:
        raise ArgumentError(f"{name} has {len(values)} values but there are {n_layers} hidden layers.")
    return values


def hidden_sizes(hidden) -> list[int]:
    """Hidden layer sizes from a number or a list (``[]`` is the linear model).

    >>> from nnfit.modules import hidden_sizes
    >>> hidden_sizes(50), hidden_sizes([256, 128]), hidden_sizes([])
    ([50], [256, 128], [])
    """
    sizes = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    if not isinstance(sizes, (list, tuple)):
        raise ArgumentTypeError(f"hidden must be a number of units or a list of them, not {hidden!r}.")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ArgumentError(f"hidden layer sizes must be positive whole numbers, not {size!r}.")
    return list(sizes)


def check_architecture(hidden, activation, dropout):
    """(sizes, activations, dropouts), one per hidden layer, or a clear error.

    >>> from nnfit.modules import check_architecture
    >>> check_architecture([10, 5], "ReLU", [0.4, 0.3])
    ([10, 5], ['relu', 'relu'], [0.4, 0.3])
    >>> check_architecture(10, "relu", 1.5)
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: dropout must lie in [0, 1), not 1.5.
    """
    sizes = hidden_sizes(hidden)
    activations = per_layer(activation, len(sizes), "activation")
    dropouts = per_layer(dropout, len(sizes), "dropout")
    for name in activations:
        if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
            raise ArgumentError(f"Unknown activation {name!r}; choose one of: {', '.join(sorted(ACTIVATIONS))}.")
    for p in dropouts:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ArgumentError(f"dropout must lie in [0, 1), not {p!r}.")
    return sizes, [a.lower() for a in activations], [float(p) for p in dropouts]


class MLP(nn.Module):
    """A multilayer perceptron: Linear -> g -> Dropout per hidden layer, then a linear output.

    Parameters
    ----------
    input_size : int
        p, the number of predictor columns.
    hidden : int or list of int
        Units per hidden layer (K, or K1, K2, ...); ``[]`` gives the linear model.
    output_size : int
        T, the number of outputs (1 for regression, the number of classes for a classifier).
    activation : str or list of str
        g: "relu", "sigmoid", "tanh", "identity", "elu", "gelu", "leaky_relu", "silu", "softplus".
    dropout : float or list of float
        Dropout probability after each hidden layer, in [0, 1).
    embeddings : list of (n_levels, size) pairs, optional
        One learned embedding per factor (fastai's entity embeddings): the input has
        ``input_size`` numeric columns, then one column of level codes per factor, and each
        code is replaced by its ``size``-long vector before the first hidden layer.

    >>> import torch, nnfit as nf
    >>> net = nf.MLP(9, hidden=[10, 5], output_size=3, dropout=[0.4, 0.3])
    >>> net(torch.zeros(2, 9)).shape
    torch.Size([2, 3])
    >>> embedded = nf.MLP(2, hidden=4, embeddings=[(100, 50)])   # 2 numbers, then a code in 0..99
    >>> embedded(torch.tensor([[0.5, -1.0, 42.0]])).shape
    torch.Size([1, 1])
    """

    def __init__(self, input_size: int, hidden=50, output_size: int = 1, activation="relu", dropout=0.0,
                 embeddings=None):
        super().__init__()
        sizes, activations, dropouts = check_architecture(hidden, activation, dropout)
        self.input_size = int(input_size)
        self.sizes = sizes
        self.output_size = int(output_size)
        self.activations = activations
        self.dropouts = dropouts
        self.embeddings = [[int(n), int(size)] for n, size in embeddings or []]
        if self.embeddings:  # only then, so plain networks keep their parameter names
            self.embed = nn.ModuleList(nn.Embedding(n, size) for n, size in self.embeddings)
            for table in self.embed:  # small vectors to start, as fastai's entity embeddings
                nn.init.trunc_normal_(table.weight, std=0.01, a=-0.02, b=0.02)
        widths = [self.input_size + sum(size for _, size in self.embeddings)] + sizes
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.g = nn.ModuleList(ACTIVATIONS[a]() for a in self.activations)
        self.dropout = nn.ModuleList(nn.Dropout(p) for p in self.dropouts)
        self.output = nn.Linear(widths[-1], self.output_size)

    def forward(self, x):
        if self.embeddings:
            x = self.embed_inputs(x)
        for linear, g, dropout in zip(self.hidden, self.g, self.dropout):
            x = dropout(g(linear(x)))
        return self.output(x)

    def embed_inputs(self, x):
        """The numeric columns, then each factor's embedding vector in place of its code column."""
        codes = x[:, self.input_size:].long()
        vectors = [table(codes[:, k]) for k, table in enumerate(self.embed)]
        return torch.cat([x[:, : self.input_size]] + vectors, dim=1)

    def architecture(self) -> dict:
        """What it takes to build this network again (JSON-ready)."""
        built = {
            "input_size": self.input_size,
            "hidden": self.sizes,
            "output_size": self.output_size,
            "activation": self.activations,
            "dropout": self.dropouts,
        }
        if self.embeddings:
            built["embeddings"] = self.embeddings
        return built


def embedding_size(n_levels: int) -> int:
    """The length of a factor's embedding vector: min(50, (levels + 1) // 2), the fast.ai course's rule of thumb.

    >>> from nnfit.modules import embedding_size
    >>> embedding_size(3), embedding_size(24), embedding_size(1000)
    (2, 12, 50)
    """
    return min(50, (n_levels + 1) // 2)

"""Networks in the course's notation: single-layer and multilayer perceptrons.

A single-layer network is f(X) = b0 + sum_k b_k g(w_k0 + sum_l w_kl X_l); a multilayer one
feeds each hidden layer's activations A^(h) into the next, and the output layer computes
f_t(X) = beta_t0 + sum_m beta_tm A^(H)_m for each outcome t.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ArgumentError, ArgumentTypeError

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


# Ready networks for sequences, text, images and sound (ISLR chapter 10's labs). Each takes a
# batch first and returns (n, output_size) scores, so it plugs into ``nf.setup`` as it is.


class RNN(nn.Module):
    """A simple recurrent network for sequences: (n, L, p) inputs, one (n, output_size) output.

    The book's NYSE model: ``hidden_size`` units of an Elman RNN read the L lagged vectors in
    order, the last hidden state goes through dropout and one linear output layer.
    ``nf.lags(..., as_tensor=True)`` makes the (rows, lags, variables) input.

    >>> import torch, nnfit as nf
    >>> net = nf.modules.RNN(input_size=3, hidden_size=12, dropout=0.1)
    >>> net(torch.zeros(8, 5, 3)).shape
    torch.Size([8, 1])
    >>> fitted = nf.setup(nf.modules.RNN, loss=torch.nn.MSELoss()).set_hparams(input_size=3).fit(
    ...     (torch.randn(64, 5, 3), torch.randn(64, 1)), epochs=2, verbose=False, seed=1)
    """

    def __init__(self, input_size: int, hidden_size: int = 12, output_size: int = 1, dropout: float = 0.1,
                 num_layers: int = 1, nonlinearity: str = "tanh"):
        super().__init__()
        _check_sizes(input_size=input_size, hidden_size=hidden_size, output_size=output_size, num_layers=num_layers)
        _check_dropout(dropout)
        self.rnn = nn.RNN(input_size, hidden_size, num_layers=num_layers, nonlinearity=nonlinearity, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        _check_sequence(x, self.rnn.input_size, "RNN")
        states, _ = self.rnn(x)
        return self.output(self.dropout(states[:, -1]))


class LSTM(nn.Module):
    """A long short-term memory network, for word sequences (with an embedding) or numeric ones.

    With ``vocab_size``, the input is (n, L) word indices (0 is padding, as
    ``nf.text.Vectorizer(mode="sequence")`` makes them), each replaced by an
    ``embedding_dim``-long learned vector: the book's IMDb model (embedding 32, LSTM 32, one
    output). Without it, the input is (n, L, input_size) numbers. The LSTM's last hidden state
    feeds one linear output layer. Sequences padded at the front (the vectorizer's default)
    end on a real word, so the last state has read the whole document.

    >>> import torch, nnfit as nf
    >>> net = nf.modules.LSTM(vocab_size=1000, embedding_dim=32, hidden_size=32)
    >>> net(torch.randint(0, 1000, (4, 20))).shape
    torch.Size([4, 1])
    >>> nf.modules.LSTM(input_size=3, output_size=2)(torch.zeros(4, 7, 3)).shape
    torch.Size([4, 2])
    """

    def __init__(self, vocab_size: int | None = None, input_size: int | None = None, hidden_size: int = 32,
                 output_size: int = 1, embedding_dim: int = 32, dropout: float = 0.0, num_layers: int = 1):
        super().__init__()
        if (vocab_size is None) == (input_size is None):
            raise ArgumentError("LSTM takes vocab_size (word indices, through an embedding) or input_size "
                                "(numeric sequences), exactly one of them.")
        _check_sizes(hidden_size=hidden_size, output_size=output_size, num_layers=num_layers,
                     **({"vocab_size": vocab_size, "embedding_dim": embedding_dim} if vocab_size is not None
                        else {"input_size": input_size}))
        _check_dropout(dropout)
        self.vocab_size = vocab_size
        if vocab_size is not None:
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
            input_size = embedding_dim
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        if self.vocab_size is not None:
            if x.ndim != 2:
                raise ArgumentError(f"LSTM with a vocabulary takes (n, L) word indices, not a tensor of shape {tuple(x.shape)}.")
            x = self.embedding(x.long())
        else:
            _check_sequence(x, self.lstm.input_size, "LSTM")
        states, _ = self.lstm(x)
        return self.output(self.dropout(states[:, -1]))


class CNN(nn.Module):
    """A convolutional network of the book's blocks: (3 x 3 convolution, ReLU, 2 x 2 max-pool) per block.

    ``channels`` gives each block's number of filters (the book's CIFAR-100 network:
    32, 64, 128, 256); the pooled maps are flattened, go through dropout, a hidden layer of
    ``hidden`` ReLU units and a linear output of ``output_size`` classes. ``input_shape`` is
    (channels, height, width) of one image; each block halves height and width.

    >>> import torch, nnfit as nf
    >>> net = nf.modules.CNN(input_shape=(3, 32, 32), output_size=100)   # the book's CIFAR-100 CNN
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 100])
    >>> digits = nf.modules.CNN(input_shape=(1, 28, 28), channels=(16, 32), hidden=64)
    >>> digits(torch.zeros(5, 1, 28, 28)).shape
    torch.Size([5, 10])
    """

    def __init__(self, input_shape=(1, 28, 28), output_size: int = 10, channels=(32, 64, 128, 256),
                 hidden: int = 512, dropout: float = 0.5):
        super().__init__()
        if len(tuple(input_shape)) != 3:
            raise ArgumentError(f"input_shape is (channels, height, width) of one image, not {input_shape!r}.")
        in_channels, height, width = (int(v) for v in input_shape)
        channels = [int(c) for c in channels]
        _check_sizes(output_size=output_size, hidden=hidden, in_channels=in_channels,
                     **{f"channels[{i}]": c for i, c in enumerate(channels)})
        _check_dropout(dropout)
        if height >> len(channels) < 1 or width >> len(channels) < 1:
            raise ArgumentError(f"{len(channels)} blocks halve a {height} x {width} image to nothing; "
                                "use fewer channels (blocks) or larger images.")
        self.input_shape = (in_channels, height, width)
        blocks = []
        for out_channels in channels:
            blocks += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        flat = in_channels * (height >> len(channels)) * (width >> len(channels))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(),
                                        nn.Linear(hidden, output_size))

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ArgumentError(f"CNN built for images of shape {self.input_shape} (channels, height, width) got "
                                f"a batch of shape {tuple(x.shape)}; expected (n, {', '.join(map(str, self.input_shape))}).")
        return self.classifier(self.features(x))


class Spectrogram(nn.Module):
    """Sound to a log-power spectrogram with ``torch.stft``: (n, samples) -> (n, 1, frequencies, frames).

    Each row is cut into frames of ``n_fft`` samples, ``hop_length`` apart, weighted by a Hann
    window; the output is log(|STFT|^power + eps), a one-channel image (``n_fft // 2 + 1``
    frequencies) that a ``CNN`` reads. Put it first in an ``nn.Sequential`` to train on raw
    sound, or call it once to turn a batch of sounds into images. It has no parameters.

    >>> import math, torch, nnfit as nf
    >>> t = torch.arange(4000) / 4000
    >>> tone = torch.sin(2 * math.pi * 500 * t)                 # 500 Hz, sampled at 4 kHz
    >>> spec = nf.modules.Spectrogram(n_fft=128, hop_length=64)(tone[None])
    >>> spec.shape
    torch.Size([1, 1, 65, 63])
    >>> int(spec[0, 0].mean(dim=1).argmax())                    # the 500 Hz bin: 500 / (4000 / 128)
    16
    """

    def __init__(self, n_fft: int = 256, hop_length: int | None = None, power: float = 2.0, log: bool = True,
                 eps: float = 1e-10):
        super().__init__()
        _check_sizes(n_fft=n_fft, **({} if hop_length is None else {"hop_length": hop_length}))
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length) if hop_length is not None else self.n_fft // 4
        self.power, self.log, self.eps = float(power), bool(log), float(eps)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, x):
        if x.ndim == 3 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 2:
            raise ArgumentError(f"Spectrogram takes sounds as (n, samples) or (n, 1, samples), not {tuple(x.shape)}.")
        if x.shape[1] < self.n_fft:
            raise ArgumentError(f"Spectrogram with n_fft={self.n_fft} needs at least {self.n_fft} samples a sound; "
                                f"these have {x.shape[1]}.")
        stft = torch.stft(x.float(), self.n_fft, hop_length=self.hop_length, window=self.window, center=True,
                          return_complex=True)
        spec = stft.abs().pow(self.power)
        if self.log:
            spec = torch.log(spec + self.eps)
        return spec.unsqueeze(1)


def _check_sizes(**sizes):
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(f"{name} must be a positive whole number, not {value!r}.")


def _check_dropout(p):
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ArgumentError(f"dropout must lie in [0, 1), not {p!r}.")


def _check_sequence(x, input_size, name):
    if x.ndim != 3 or x.shape[2] != input_size:
        raise ArgumentError(f"{name} built for input_size={input_size} takes (n, L, {input_size}) sequences, "
                            f"not a tensor of shape {tuple(x.shape)}; nf.lags(..., as_tensor=True) makes them.")

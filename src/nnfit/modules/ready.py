"""Ready networks for sequences, text, images and sound (ISLR chapter 10's labs).

Each takes a batch first and returns (n, output_size) scores, so it plugs into ``nf.setup`` as it is.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ArgumentError


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

import pytest
import torch

import nnfit as nf
from nnfit.errors import ArgumentError


def test_mlp_layers_and_forward_by_hand():
    torch.manual_seed(0)
    net = nf.MLP(4, hidden=[3, 2], output_size=2, activation=["tanh", "sigmoid"], dropout=[0.0, 0.0])
    x = torch.randn(5, 4)
    h1 = torch.tanh(x @ net.hidden[0].weight.T + net.hidden[0].bias)
    h2 = torch.sigmoid(h1 @ net.hidden[1].weight.T + net.hidden[1].bias)
    expected = h2 @ net.output.weight.T + net.output.bias
    torch.testing.assert_close(net(x), expected)
    assert net.architecture() == {
        "input_size": 4, "hidden": [3, 2], "output_size": 2, "activation": ["tanh", "sigmoid"], "dropout": [0.0, 0.0],
    }


def test_no_hidden_layer_is_linear():
    net = nf.MLP(3, hidden=[], output_size=1)
    assert len(net.hidden) == 0 and sum(p.numel() for p in net.parameters()) == 4


def test_dropout_is_active_only_in_training():
    net = nf.MLP(10, hidden=50, dropout=0.5)
    x = torch.ones(1, 10)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    torch.manual_seed(1)
    a = net(x)
    b = net(x)
    assert not torch.equal(a, b)


def test_errors():
    with pytest.raises(ArgumentError) as error:
        nf.MLP(3, hidden=[4], activation=["relu", "tanh"])
    assert str(error.value) == "activation has 2 values but there are 1 hidden layers."


# ---------------------------------------------------------------------- RNN, LSTM, CNN, Spectrogram

import math  # noqa: E402

import numpy as np  # noqa: E402


def test_rnn_is_the_elman_recurrence_then_a_linear_output():
    torch.manual_seed(1)
    net = nf.modules.RNN(input_size=3, hidden_size=4, output_size=2, dropout=0.0).eval()
    x = torch.randn(5, 6, 3, dtype=torch.float32)
    W_ih, W_hh = net.rnn.weight_ih_l0.detach().numpy(), net.rnn.weight_hh_l0.detach().numpy()
    b = (net.rnn.bias_ih_l0 + net.rnn.bias_hh_l0).detach().numpy()
    h = np.zeros((5, 4))
    for t in range(6):
        h = np.tanh(x[:, t].numpy() @ W_ih.T + h @ W_hh.T + b)
    expected = h @ net.output.weight.detach().numpy().T + net.output.bias.detach().numpy()
    np.testing.assert_allclose(net(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_lstm_embeds_words_and_runs_the_gates_by_hand():
    torch.manual_seed(2)
    net = nf.modules.LSTM(vocab_size=7, embedding_dim=3, hidden_size=2, output_size=1).eval()
    assert net.embedding.weight[0].abs().sum() == 0  # index 0 is padding
    codes = torch.tensor([[0, 0, 4, 2, 6], [1, 3, 3, 5, 2]])
    E = net.embedding.weight.detach().numpy()
    W_ih, W_hh = net.lstm.weight_ih_l0.detach().numpy(), net.lstm.weight_hh_l0.detach().numpy()
    b = (net.lstm.bias_ih_l0 + net.lstm.bias_hh_l0).detach().numpy()
    h, c = np.zeros((2, 2)), np.zeros((2, 2))
    for t in range(5):
        z = E[codes[:, t].numpy()] @ W_ih.T + h @ W_hh.T + b
        i, f, g, o = sigmoid(z[:, 0:2]), sigmoid(z[:, 2:4]), np.tanh(z[:, 4:6]), sigmoid(z[:, 6:8])  # torch's gate order
        c = f * c + i * g
        h = o * np.tanh(c)
    expected = h @ net.output.weight.detach().numpy().T + net.output.bias.detach().numpy()
    np.testing.assert_allclose(net(codes).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    numeric = nf.modules.LSTM(input_size=3, hidden_size=2)
    assert numeric(torch.zeros(4, 5, 3)).shape == (4, 1)


def conv3x3_same(image, weight, bias):
    """numpy: (c, h, w) image, (k, c, 3, 3) filters -> (k, h, w), zero padding (cross-correlation, as torch)."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2, w + 2))
    padded[:, 1:-1, 1:-1] = image
    out = np.zeros((weight.shape[0], h, w))
    for k in range(weight.shape[0]):
        for i in range(h):
            for j in range(w):
                out[k, i, j] = (padded[:, i:i + 3, j:j + 3] * weight[k]).sum() + bias[k]
    return out


def test_cnn_block_is_conv_relu_pool_then_dense_by_hand():
    torch.manual_seed(3)
    net = nf.modules.CNN(input_shape=(2, 4, 6), output_size=3, channels=(5,), hidden=4, dropout=0.0).eval()
    x = torch.randn(2, 2, 4, 6)
    conv, dense1, dense2 = net.features[0], net.classifier[2], net.classifier[4]
    outputs = []
    for image in x.numpy():
        maps = np.maximum(conv3x3_same(image, conv.weight.detach().numpy(), conv.bias.detach().numpy()), 0)
        pooled = maps.reshape(5, 2, 2, 3, 2).max(axis=(2, 4))  # 2 x 2 max-pool
        hidden = np.maximum(pooled.reshape(-1) @ dense1.weight.detach().numpy().T + dense1.bias.detach().numpy(), 0)
        outputs.append(hidden @ dense2.weight.detach().numpy().T + dense2.bias.detach().numpy())
    np.testing.assert_allclose(net(x).detach().numpy(), np.array(outputs), rtol=1e-5, atol=1e-5)
    with pytest.raises(ArgumentError) as error:
        net(torch.zeros(1, 3, 4, 6))
    assert str(error.value) == ("CNN built for images of shape (2, 4, 6) (channels, height, width) got a batch of shape "
                                "(1, 3, 4, 6); expected (n, 2, 4, 6).")
    with pytest.raises(ArgumentError, match="4 blocks halve a 8 x 8 image to nothing"):
        nf.modules.CNN(input_shape=(1, 8, 8))


def test_spectrogram_matches_a_numpy_stft():
    rng = np.random.default_rng(4)
    sound = rng.standard_normal((2, 300)).astype(np.float32)
    n_fft, hop = 64, 16
    spec = nf.modules.Spectrogram(n_fft=n_fft, hop_length=hop)(torch.from_numpy(sound)).numpy()
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann, torch's default
    padded = np.pad(sound.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")  # center=True
    frames = 1 + (padded.shape[1] - n_fft) // hop
    expected = np.stack([np.abs(np.fft.rfft(padded[:, t * hop: t * hop + n_fft] * window, axis=1)) ** 2
                         for t in range(frames)], axis=2)
    assert spec.shape == (2, 1, n_fft // 2 + 1, frames)
    np.testing.assert_allclose(spec[:, 0], np.log(expected + 1e-10), rtol=1e-4, atol=1e-3)
    # A 1 kHz tone sampled at 8 kHz peaks in bin 1000 / (8000 / 64) = 8.
    tone = torch.sin(2 * math.pi * 1000 * torch.arange(2000) / 8000)[None]
    assert int(nf.modules.Spectrogram(n_fft=64)(tone)[0, 0].mean(dim=1).argmax()) == 8
    with pytest.raises(ArgumentError, match="needs at least 64 samples a sound; these have 10"):
        nf.modules.Spectrogram(n_fft=64)(torch.zeros(1, 10))


def test_rnn_learns_a_sequence_task_through_setup():
    # y = the sum of the last two steps' first variable: learnable by an RNN, not by a constant.
    g = torch.Generator().manual_seed(5)
    x = torch.randn(512, 4, 2, generator=g)
    y = (x[:, -1, 0] + x[:, -2, 0]).reshape(-1, 1)
    fitted = (nf.setup(nf.modules.RNN, loss=torch.nn.MSELoss(), optimizer=torch.optim.Adam)
              .set_hparams(input_size=2, hidden_size=16, dropout=0.0).set_opt_hparams(lr=0.01)
              .fit((x, y), epochs=40, batch_size=64, seed=1, verbose=False, threads=1))
    mse = float(((fitted.predict(x) - y) ** 2).mean())
    assert mse < 0.1 * float(y.var())  # the variance is what a constant would leave


def test_ready_module_errors():
    with pytest.raises(ArgumentError) as error:
        nf.modules.RNN(input_size=3)(torch.zeros(2, 5, 4))
    assert str(error.value) == ("RNN built for input_size=3 takes (n, L, 3) sequences, not a tensor of shape (2, 5, 4); "
                                "nf.lags(..., as_tensor=True) makes them.")
    with pytest.raises(ArgumentError, match="exactly one of them"):
        nf.modules.LSTM(vocab_size=10, input_size=3)
    with pytest.raises(ArgumentError, match="hidden_size must be a positive whole number, not 0"):
        nf.modules.RNN(input_size=3, hidden_size=0)
    with pytest.raises(ArgumentError, match=r"dropout must lie in \[0, 1\), not 1.5"):
        nf.modules.LSTM(vocab_size=10, dropout=1.5)

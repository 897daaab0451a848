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

import pytest
import torch
from torch import nn

from nnfit.train import losses
from nnfit.errors import ArgumentError


def test_names_give_torch_losses():
    assert isinstance(losses.resolve("mse"), nn.MSELoss)
    assert isinstance(losses.resolve("cross_entropy"), nn.CrossEntropyLoss)
    assert isinstance(losses.resolve("bce"), nn.BCEWithLogitsLoss)
    assert isinstance(losses.resolve(nn.L1Loss), nn.L1Loss)


def test_unknown_loss_lists_names():
    with pytest.raises(ArgumentError) as error:
        losses.resolve("hinge")
    assert str(error.value) == (
        "Unknown loss 'hinge'; choose one of: bce, binary_cross_entropy, cross_entropy, huber, l1, mae, mse, nll, poisson."
    )


def test_binary_logit_loss_equals_the_closed_form():
    logits = torch.tensor([[0.3], [-1.2], [2.0]])
    codes = torch.tensor([1, 0, 1])
    p = torch.sigmoid(logits.reshape(-1))
    expected = -(codes * torch.log(p) + (1 - codes) * torch.log(1 - p)).mean()
    torch.testing.assert_close(losses.BinaryLogitLoss()(logits, codes), expected)

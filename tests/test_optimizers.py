import pytest
import torch

from nnfit.train import optimizers
from nnfit.errors import ArgumentError


def test_names_and_classes():
    assert optimizers.resolve("RMSprop") is torch.optim.RMSprop
    assert optimizers.resolve("adamw") is torch.optim.AdamW
    assert optimizers.resolve(torch.optim.SGD) is torch.optim.SGD
    assert optimizers.name_of(torch.optim.RMSprop) == "rmsprop"


def test_unknown_optimizer():
    with pytest.raises(ArgumentError) as error:
        optimizers.resolve("newton")
    assert str(error.value) == "Unknown optimizer 'newton'; choose one of: adagrad, adam, adamw, rmsprop, sgd."

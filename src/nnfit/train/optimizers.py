"""Optimizers by name or class."""

from __future__ import annotations

import torch

from ..errors import ArgumentError

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
}


def resolve(optimizer):
    """An optimizer class from a class or a name ('sgd', 'rmsprop', 'adam', 'adamw', 'adagrad')."""
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in OPTIMIZERS:
            raise ArgumentError(f"Unknown optimizer {optimizer!r}; choose one of: {', '.join(sorted(OPTIMIZERS))}.")
        return OPTIMIZERS[key]
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):  # a factory: params -> optimizer
        return optimizer
    raise ArgumentError(f"optimizer must be a name or a torch.optim class, not {optimizer!r}.")


def name_of(optimizer_class) -> str:
    for name, cls in OPTIMIZERS.items():
        if cls is optimizer_class:
            return name
    return getattr(optimizer_class, "__name__", str(optimizer_class))

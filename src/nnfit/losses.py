"""Loss functions by name or as modules."""

from __future__ import annotations

from torch import nn

from .errors import ArgumentError

LOSSES = {
    "mse": nn.MSELoss,
    "mae": nn.L1Loss,
    "l1": nn.L1Loss,
    "huber": nn.HuberLoss,
    "cross_entropy": nn.CrossEntropyLoss,
    "bce": nn.BCEWithLogitsLoss,
    "binary_cross_entropy": nn.BCEWithLogitsLoss,
    "nll": nn.NLLLoss,
    "poisson": nn.PoissonNLLLoss,
}


def resolve(loss):
    """A callable loss from a module, a function, a loss class or a name ('mse', 'cross_entropy', ...)."""
    if isinstance(loss, str):
        key = loss.lower().replace("-", "_")
        if key not in LOSSES:
            raise ArgumentError(f"Unknown loss {loss!r}; choose one of: {', '.join(sorted(LOSSES))}.")
        return LOSSES[key]()
    if isinstance(loss, type) and issubclass(loss, nn.Module):
        return loss()
    if callable(loss):
        return loss
    raise ArgumentError(f"loss must be a name, a loss module or a function, not {loss!r}.")


class BinaryLogitLoss(nn.Module):
    """Binary cross-entropy from one logit per row against 0/1 class codes (n,) or (n, 1)."""

    def forward(self, pred, target):
        return nn.functional.binary_cross_entropy_with_logits(pred.reshape(-1), target.reshape(-1).to(pred.dtype))

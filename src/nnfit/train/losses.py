"""Loss functions by name or as modules."""

from __future__ import annotations

import copy

from torch import nn

from ..errors import ArgumentError

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


class SampleWeighted(nn.Module):
    """A torch loss averaged with a weight per row: sum(w_i * loss_i) / sum(w_i).

    Without weights (validation, evaluate) it is the plain mean. Built by ``fit(sample_weight=,
    class_weight=)``; for class codes the result equals the loss's own ``weight=`` option.
    """

    def __init__(self, loss):
        super().__init__()
        if not (isinstance(loss, nn.Module) and hasattr(loss, "reduction")):
            raise ArgumentError(
                f"sample_weight and class_weight need a torch loss module with a reduction option "
                f"(such as nn.MSELoss() or nn.CrossEntropyLoss()), not {loss!r}; "
                "or weight the rows in your own loss function."
            )
        self.loss = copy.copy(loss)
        self.loss.reduction = "none"

    def forward(self, pred, target, weight=None):
        per_row = self.loss(pred, target)
        if per_row.ndim > 1:
            per_row = per_row.reshape(len(per_row), -1).mean(dim=1)
        if weight is None:
            return per_row.mean()
        weight = weight.to(per_row.dtype)
        # A batch whose rows all weigh 0 contributes nothing (0, not 0 / 0 = NaN).
        return (per_row * weight).sum() / weight.sum().clamp(min=1e-12)

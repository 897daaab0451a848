"""Metrics that accumulate on the device and are read once per epoch.

The protocol (for your own metrics): ``reset()`` clears the state, ``update(pred, target)``
adds a batch without leaving the device (no ``.item()``), ``compute()`` returns a 0-d tensor.
``name`` is the key under which the value is reported.

>>> import torch, nnfit as nf
>>> mae = nf.metrics.MAE()
>>> mae.update(torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [2.0]]))
>>> round(float(mae.compute()), 4)
0.25
"""

from __future__ import annotations

import torch

from .errors import ArgumentError


class Metric:
    """Base class: subclasses set ``name`` and implement ``update`` and ``compute``."""

    name = "metric"

    def __init__(self):
        self.reset()

    def reset(self):
        """Clear the accumulated state (called before each epoch and evaluation)."""
        self._sum = None
        self._count = None

    def update(self, pred: torch.Tensor, target: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        """The metric over everything seen since ``reset``, as a 0-d tensor."""
        if self._sum is None:
            return torch.tensor(float("nan"))
        return self._sum / self._count

    def _add(self, total: torch.Tensor, count):
        # Running sums stay on the device; nothing here synchronises with the host.
        total = total.detach().to(torch.float64)
        if self._sum is None:
            self._sum = total.clone()
            self._count = torch.zeros((), dtype=torch.float64, device=total.device)
        else:
            self._sum += total
        self._count += count

    def __repr__(self):
        return f"{type(self).__name__}()"


def _regression_pair(pred, target):
    pred = pred.detach()
    target = target.detach()
    if pred.shape != target.shape:
        if pred.numel() != target.numel():
            raise ArgumentError(
                f"Predictions of shape {tuple(pred.shape)} do not match targets of shape {tuple(target.shape)}."
            )
        target = target.reshape(pred.shape)
    return pred.to(torch.float64), target.to(torch.float64)


class MAE(Metric):
    """Mean absolute error: mean |pred - target| over all elements."""

    name = "mae"

    def update(self, pred, target):
        pred, target = _regression_pair(pred, target)
        self._add((pred - target).abs().sum(), target.numel())


class MSE(Metric):
    """Mean squared error: mean (pred - target)^2 over all elements."""

    name = "mse"

    def update(self, pred, target):
        pred, target = _regression_pair(pred, target)
        self._add((pred - target).square().sum(), target.numel())


class RMSE(MSE):
    """Root mean squared error: the square root of MSE over the whole epoch."""

    name = "rmse"

    def compute(self):
        return super().compute().sqrt()


class R2(Metric):
    """Coefficient of determination 1 - SS_res / SS_tot, averaged over outputs (as scikit-learn)."""

    name = "r2"

    def reset(self):
        self._n = self._sy = self._syy = self._sres = None

    def update(self, pred, target):
        pred, target = _regression_pair(pred, target)
        pred = pred.reshape(len(pred), -1)
        target = target.reshape(len(target), -1)
        parts = (
            torch.tensor(float(len(target)), dtype=torch.float64, device=target.device),
            target.sum(0),
            target.square().sum(0),
            (target - pred).square().sum(0),
        )
        if self._n is None:
            self._n, self._sy, self._syy, self._sres = (p.clone() for p in parts)
        else:
            self._n += parts[0]
            self._sy += parts[1]
            self._syy += parts[2]
            self._sres += parts[3]

    def compute(self):
        if self._n is None:
            return torch.tensor(float("nan"))
        total = self._syy - self._sy.square() / self._n
        return (1 - self._sres / total).mean()


class Accuracy(Metric):
    """Share of correct classes: multiclass from logits (n, k), binary from one logit (n,) or (n, 1).

    Targets are class codes (n,) or, for one logit, 0/1 values.
    """

    name = "accuracy"

    def update(self, pred, target):
        pred = pred.detach()
        target = target.detach()
        if pred.ndim == 2 and pred.shape[1] > 1:
            classes = pred.argmax(dim=1)
        else:
            classes = (pred.reshape(-1) > 0).to(torch.int64)
        target = target.reshape(-1).to(torch.int64)
        self._add((classes == target).sum(), target.numel())


class Rescaled(Metric):
    """A regression metric computed in original units from standardized predictions and targets."""

    def __init__(self, metric: Metric, center, scale):
        self.metric = metric
        self.name = metric.name
        self.center = torch.as_tensor(center, dtype=torch.float32).reshape(1, -1)
        self.scale = torch.as_tensor(scale, dtype=torch.float32).reshape(1, -1)

    def reset(self):
        self.metric.reset()

    def update(self, pred, target):
        if self.scale.device != pred.device:
            self.center, self.scale = self.center.to(pred.device), self.scale.to(pred.device)
        shape = (len(pred), -1)
        self.metric.update(
            pred.detach().reshape(shape) * self.scale + self.center,
            target.detach().reshape(shape) * self.scale + self.center,
        )

    def compute(self):
        return self.metric.compute()

    def __repr__(self):
        return f"Rescaled({self.metric!r})"


_NAMES = {"mae": MAE, "mse": MSE, "rmse": RMSE, "r2": R2, "accuracy": Accuracy, "acc": Accuracy}


def resolve(metric) -> Metric:
    """A metric instance from an instance, a class or a name ('mae', 'accuracy', ...)."""
    if isinstance(metric, str):
        key = metric.lower()
        if key not in _NAMES:
            raise ArgumentError(f"Unknown metric {metric!r}; choose one of: {', '.join(sorted(_NAMES))}.")
        return _NAMES[key]()
    if isinstance(metric, type) and issubclass(metric, Metric):
        return metric()
    if hasattr(metric, "update") and hasattr(metric, "compute") and hasattr(metric, "reset"):
        return metric
    raise ArgumentError(
        f"{metric!r} is not a metric: pass an nnfit metric such as nf.metrics.MAE() or an object "
        "with reset/update/compute."
    )

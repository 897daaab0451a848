"""Metrics that accumulate on the device and are read once per epoch.

The protocol (for your own metrics, luz's ``luz_metric``): ``reset()`` clears the state,
``update(pred, target)`` adds a batch without leaving the device (no ``.item()``, no
``float()``), ``compute()`` returns a 0-d tensor. ``name`` is the key under which the value
is reported; ``maximize = True`` tells monitors (early stopping, schedulers) that larger is
better. Subclass ``Metric`` and use ``self._add(total, count)`` for a running mean.

Classification metrics read logits by default, as the losses want them: (n, k) scores for k
classes, or one column (n,) / (n, 1) for a binary problem; pass ``from_logits=False`` for
probabilities. Targets are class codes (n,), or 0/1 values for a binary problem.

``train_only(metric)`` and ``valid_only(metric)`` restrict a metric to one set (luz's
``luz_metric_set``); every other metric runs in both.

>>> import torch, nnfit as nf
>>> mae = nf.metrics.MAE()
>>> mae.update(torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [2.0]]))
>>> round(float(mae.compute()), 4)
0.25
>>> class MaxError(nf.metrics.Metric):
...     name = "max_error"
...     def reset(self):
...         self.worst = None
...     def update(self, pred, target):
...         batch = (pred - target.reshape(pred.shape)).abs().max().detach()
...         self.worst = batch if self.worst is None else torch.maximum(self.worst, batch)
...     def compute(self):
...         return self.worst
>>> worst = MaxError()
>>> worst.update(torch.tensor([[1.0], [4.0]]), torch.tensor([[1.5], [2.0]]))
>>> float(worst.compute())
2.0
>>> learner = nf.setup(nf.MLP, loss="mse", metrics=["mae", MaxError()])   # reported each epoch
"""

from __future__ import annotations

import copy

import torch

from ..errors import ArgumentError


class Metric:
    """Base class: subclasses set ``name`` and implement ``update`` (and ``compute``).

    The default state is a running sum and count (``_add``); ``compute`` returns their ratio.

    >>> import torch, nnfit as nf
    >>> class MeanBias(nf.metrics.Metric):
    ...     name = "bias"
    ...     def update(self, pred, target):
    ...         self._add((pred - target.reshape(pred.shape)).sum(), len(pred))
    >>> bias = MeanBias()
    >>> bias.update(torch.tensor([[2.0], [3.0]]), torch.tensor([[1.0], [1.0]]))
    >>> float(bias.compute())
    1.5
    """

    name = "metric"
    maximize = False

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

    @classmethod
    def update_models(cls, metrics: list, preds: torch.Tensor, targets: torch.Tensor, mask=None) -> None:
        """Update K models' metrics (one each, of this class) with their stacked predictions (K, n, ...);
        ``mask`` (K, n) bool, the rows each model has (None: all).

        K separate ``update`` calls; a metric that can do it in one batched computation overrides it.

        >>> import torch, nnfit as nf
        >>> maes = [nf.metrics.MAE(), nf.metrics.MAE()]
        >>> preds, targets = torch.tensor([[[1.0], [2.0]], [[0.0], [9.0]]]), torch.zeros(2, 2, 1)
        >>> nf.metrics.MAE.update_models(maes, preds, targets, mask=torch.tensor([[True, True], [True, False]]))
        >>> [float(m.compute()) for m in maes]
        [1.5, 0.0]
        """
        for k, (metric, pred, target) in enumerate(zip(metrics, preds, targets)):
            if mask is None:
                metric.update(pred, target)
            else:
                metric.update(pred[mask[k]], target[mask[k]])

    @classmethod
    def compute_models(cls, metrics: list) -> torch.Tensor:
        """K models' values (one metric each, of this class), (K,): each one's ``compute()``; in one
        division when they keep this base's running sum and count.

        >>> import torch, nnfit as nf
        >>> maes = [nf.metrics.MAE(), nf.metrics.MAE()]
        >>> nf.metrics.MAE.update_models(maes, torch.tensor([[[1.0]], [[3.0]]]), torch.zeros(2, 1, 1))
        >>> nf.metrics.MAE.compute_models(maes).tolist()
        [1.0, 3.0]
        """
        if (len({type(m) for m in metrics}) == 1 and type(metrics[0]).compute is Metric.compute
                and all(isinstance(m._sum, torch.Tensor) and m._sum.dim() == 0 for m in metrics)):
            return torch.stack([m._sum for m in metrics]) / torch.stack([m._count for m in metrics])
        return torch.stack([m.compute().reshape(()) for m in metrics])

    @staticmethod
    def _add_models(metrics: list, totals: torch.Tensor, counts) -> None:
        """``_add`` of each model's total (K,) and count; for fresh metrics without an operation per model."""
        if any(m._sum is not None for m in metrics):
            for metric, total, count in zip(metrics, totals, counts):
                metric._add(total, count)
            return
        totals = totals.detach().to(torch.float64)
        counts = torch.as_tensor(counts, dtype=torch.float64, device=totals.device)
        for metric, total, count in zip(metrics, totals.unbind(), counts.unbind()):  # views of the two (K,) tensors
            metric._sum, metric._count = total, count

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
    """Mean absolute error: mean |pred - target| over all elements.

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.MAE()
    >>> metric.update(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]))
    >>> float(metric.compute())
    1.0
    """

    name = "mae"

    def update(self, pred, target):
        pred, target = _regression_pair(pred, target)
        self._add((pred - target).abs().sum(), target.numel())

    @classmethod
    def update_models(cls, metrics, preds, targets, mask=None):
        if type(metrics[0]) is not MAE or preds.shape != targets.shape:
            return super().update_models(metrics, preds, targets, mask)
        errors = (preds.detach().double() - targets.detach().double()).abs().reshape(*preds.shape[:2], -1)
        if mask is None:
            sums, counts = errors.sum(dim=(1, 2)), [preds[0].numel()] * len(metrics)
        else:
            sums = (errors * mask[..., None]).sum(dim=(1, 2))
            counts = (mask.sum(dim=1) * errors.shape[2]).to(torch.float64)
        cls._add_models(metrics, sums, counts)


class MSE(Metric):
    """Mean squared error: mean (pred - target)^2 over all elements.

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.MSE()
    >>> metric.update(torch.tensor([1.0, 4.0]), torch.tensor([2.0, 2.0]))
    >>> float(metric.compute())
    2.5
    """

    name = "mse"

    def update(self, pred, target):
        pred, target = _regression_pair(pred, target)
        self._add((pred - target).square().sum(), target.numel())


class RMSE(MSE):
    """Root mean squared error: the square root of MSE over the whole epoch (not a mean of batch RMSEs).

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.RMSE()
    >>> metric.update(torch.tensor([1.0, 4.0]), torch.tensor([1.0, 2.0]))
    >>> round(float(metric.compute()), 4)
    1.4142
    """

    name = "rmse"

    def compute(self):
        return super().compute().sqrt()


class R2(Metric):
    """Coefficient of determination 1 - SS_res / SS_tot, averaged over outputs (as scikit-learn).

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.R2()
    >>> metric.update(torch.tensor([1.0, 2.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))
    >>> float(metric.compute())
    0.5
    """

    name = "r2"
    maximize = True

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


class _Classification(Metric):
    """Shared reading of classification predictions: logits or probabilities, binary or k classes."""

    maximize = True

    def __init__(self, from_logits: bool = True, threshold: float = 0.5):
        self.from_logits = from_logits
        self.threshold = threshold
        super().__init__()

    @staticmethod
    def _binary(pred) -> bool:
        return not (pred.ndim == 2 and pred.shape[1] > 1)

    def _probabilities(self, pred) -> torch.Tensor:
        """(n, k) class probabilities, k = 2 for one binary score."""
        pred = pred.detach().to(torch.float64)
        if self._binary(pred):
            positive = pred.reshape(-1).sigmoid() if self.from_logits else pred.reshape(-1)
            return torch.stack([1 - positive, positive], dim=1)
        return pred.softmax(dim=1) if self.from_logits else pred

    def _classes(self, pred) -> torch.Tensor:
        """Predicted class codes (n,): the largest score, or the positive class above ``threshold``."""
        pred = pred.detach()
        if not self._binary(pred):
            return pred.argmax(dim=1)
        score = pred.reshape(-1).to(torch.float64)
        return ((score.sigmoid() if self.from_logits else score) > self.threshold).to(torch.int64)

    @staticmethod
    def _codes(target) -> torch.Tensor:
        return target.detach().reshape(-1).to(torch.int64)


class Accuracy(_Classification):
    """Share of correct classes: multiclass from scores (n, k), binary from one score (n,) or (n, 1).

    Targets are class codes (n,) or, for one score, 0/1 values.

    >>> import torch, nnfit as nf
    >>> accuracy = nf.metrics.Accuracy()
    >>> accuracy.update(torch.tensor([[2.0, 0.1], [0.3, 1.0]]), torch.tensor([0, 0]))
    >>> float(accuracy.compute())
    0.5
    """

    name = "accuracy"

    def update(self, pred, target):
        target = self._codes(target)
        self._add((self._classes(pred) == target).sum(), target.numel())

    @classmethod
    def update_models(cls, metrics, preds, targets, mask=None):
        """K models' accuracies from (K, n, k) scores at once: the same counts as one ``update`` each."""
        K, n = preds.shape[:2]
        settings = {(m.from_logits, m.threshold) for m in metrics}
        if ({type(m) for m in metrics} != {Accuracy} or len(settings) != 1 or preds.dim() != 3
                or targets.numel() != K * n):
            return super().update_models(metrics, preds, targets, mask)
        pred = preds.detach()
        if pred.shape[2] > 1:
            classes = pred.argmax(dim=2)
        else:
            from_logits, threshold = settings.pop()
            score = pred.reshape(K, n).to(torch.float64)
            classes = ((score.sigmoid() if from_logits else score) > threshold).to(torch.int64)
        correct = classes == targets.detach().reshape(K, n).to(torch.int64)
        if mask is None:
            cls._add_models(metrics, correct.sum(dim=1), [n] * K)
        else:
            cls._add_models(metrics, (correct & mask).sum(dim=1), mask.sum(dim=1))


class BinaryAccuracy(Accuracy):
    """Accuracy of a binary classifier with one score per row: positive when its probability exceeds ``threshold``.

    ``from_logits=True`` (default) reads logits, as ``nn.BCEWithLogitsLoss`` wants them; pass
    ``from_logits=False`` for probabilities (luz's ``luz_metric_binary_accuracy``).

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.BinaryAccuracy(threshold=0.7, from_logits=False)
    >>> metric.update(torch.tensor([0.9, 0.6, 0.2]), torch.tensor([1.0, 1.0, 0.0]))
    >>> round(float(metric.compute()), 4)
    0.6667
    """

    name = "binary_accuracy"

    def update(self, pred, target):
        if not self._binary(pred):
            raise ArgumentError(
                f"BinaryAccuracy needs one score per row; the predictions have {pred.shape[1]} columns. "
                "Use nf.metrics.Accuracy() for several classes."
            )
        super().update(pred, target)


class TopKAccuracy(_Classification):
    """Share of rows whose true class is among the ``k`` highest scores (scikit-learn's top_k_accuracy_score).

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.TopKAccuracy(k=2)
    >>> metric.update(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]]), torch.tensor([1, 0]))
    >>> float(metric.compute())
    0.5
    """

    def __init__(self, k: int = 5):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ArgumentError(f"TopKAccuracy needs k to be a positive whole number, not {k!r}.")
        self.k = k
        self.name = f"top{k}_accuracy"
        super().__init__()

    def update(self, pred, target):
        if self._binary(pred) or pred.shape[1] <= self.k:
            columns = 1 if self._binary(pred) else pred.shape[1]
            raise ArgumentError(
                f"TopKAccuracy(k={self.k}) needs more than {self.k} class scores per row; the predictions have {columns}."
            )
        target = self._codes(target)
        top = pred.detach().topk(self.k, dim=1).indices
        self._add((top == target.reshape(-1, 1)).any(dim=1).sum(), target.numel())


class LogLoss(_Classification):
    """Mean negative log-likelihood of the true class (scikit-learn's log_loss), binary or multiclass.

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.LogLoss(from_logits=False)
    >>> metric.update(torch.tensor([0.8, 0.4]), torch.tensor([1, 0]))
    >>> round(float(metric.compute()), 4)
    0.367
    """

    name = "log_loss"
    maximize = False

    def update(self, pred, target):
        target = self._codes(target)
        pred = pred.detach().to(torch.float64)
        if self.from_logits:
            if self._binary(pred):
                logit = pred.reshape(-1)
                log_true = torch.where(target == 1, -torch.nn.functional.softplus(-logit), -torch.nn.functional.softplus(logit))
            else:
                log_true = pred.log_softmax(dim=1).gather(1, target.reshape(-1, 1)).reshape(-1)
        else:
            eps = torch.finfo(torch.float64).eps
            probabilities = self._probabilities(pred).clamp(eps, 1 - eps)
            log_true = probabilities.gather(1, target.reshape(-1, 1)).reshape(-1).log()
        self._add(-log_true.sum(), target.numel())


class _ClassCounts(_Classification):
    """Per-class counts on the device: true positives, predicted and true rows of each class."""

    averages = ("binary", "macro", "micro")

    def __init__(self, average: str = "binary", from_logits: bool = True, threshold: float = 0.5):
        if average not in self.averages:
            raise ArgumentError(
                f"{type(self).__name__} takes average='binary', 'macro' or 'micro', not {average!r}."
            )
        self.average = average
        self.name = self.base_name if average == "binary" else f"{self.base_name}_{average}"
        super().__init__(from_logits=from_logits, threshold=threshold)

    def reset(self):
        self._tp = self._predicted = self._true = None

    def update(self, pred, target):
        k = 2 if self._binary(pred) else pred.shape[1]
        if self.average == "binary" and k != 2:
            raise ArgumentError(
                f"{type(self).__name__}(average='binary') needs two classes; the predictions have {k} columns. "
                "Use average='macro' or average='micro'."
            )
        classes, target = self._classes(pred), self._codes(target)
        if self._tp is None:
            self._tp, self._predicted, self._true = (
                torch.zeros(k, dtype=torch.float64, device=target.device) for _ in range(3)
            )
        # index_add_ keeps everything on the device (bincount would read the largest code back).
        ones = torch.ones(len(target), dtype=torch.float64, device=target.device)
        self._tp.index_add_(0, target, (classes == target).to(torch.float64))
        self._predicted.index_add_(0, classes, ones)
        self._true.index_add_(0, target, ones)

    def compute(self):
        if self._tp is None:
            return torch.tensor(float("nan"))
        if self.average == "micro":
            tp, predicted, true = self._tp.sum(), self._predicted.sum(), self._true.sum()
            return self._score(tp, predicted, true)
        per_class = self._score(self._tp, self._predicted, self._true)
        if self.average == "binary":
            return per_class[1]
        present = (self._predicted + self._true) > 0  # scikit-learn averages over classes seen in either
        return (per_class * present).sum() / present.sum()

    @staticmethod
    def _ratio(numerator, denominator):
        # scikit-learn's zero_division: 0 where nothing was predicted (or present)
        return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), torch.zeros_like(numerator))


class Precision(_ClassCounts):
    """Precision tp / (tp + fp): binary (class 1), or averaged over classes ('macro') or rows ('micro').

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.Precision()
    >>> metric.update(torch.tensor([2.0, 1.0, -1.0]), torch.tensor([1, 0, 0]))
    >>> float(metric.compute())
    0.5
    """

    base_name = "precision"

    def _score(self, tp, predicted, true):
        return self._ratio(tp, predicted)


class Recall(_ClassCounts):
    """Recall tp / (tp + fn): binary (class 1), or averaged over classes ('macro') or rows ('micro').

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.Recall()
    >>> metric.update(torch.tensor([2.0, -1.0, -1.0]), torch.tensor([1, 1, 0]))
    >>> float(metric.compute())
    0.5
    """

    base_name = "recall"

    def _score(self, tp, predicted, true):
        return self._ratio(tp, true)


class F1(_ClassCounts):
    """F1, the harmonic mean of precision and recall: binary, 'macro' or 'micro' (as scikit-learn's f1_score).

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.F1(average="macro")
    >>> metric.update(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), torch.tensor([0, 1, 1]))
    >>> round(float(metric.compute()), 4)
    0.6667
    """

    base_name = "f1"

    def _score(self, tp, predicted, true):
        return self._ratio(2 * tp, predicted + true)


class AUROC(_Classification):
    """Area under the ROC curve: binary from one score; for k classes one-vs-rest, averaged.

    ``average`` (several classes only): 'macro' (the mean over classes, default), 'weighted'
    (by each class's share of rows) or 'micro' (one curve over every class-row pair), as
    scikit-learn's ``roc_auc_score``. Scores are kept on the device through the epoch and ranked
    exactly once in ``compute``; ties count one half (luz's ``luz_metric_binary_auroc`` and
    ``luz_metric_multiclass_auroc``, which approximate with thresholds).

    >>> import torch, nnfit as nf
    >>> metric = nf.metrics.AUROC()
    >>> metric.update(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
    >>> float(metric.compute())
    0.75
    """

    averages = ("macro", "weighted", "micro")

    def __init__(self, average: str = "macro", from_logits: bool = True):
        if average not in self.averages:
            raise ArgumentError(f"AUROC takes average='macro', 'weighted' or 'micro', not {average!r}.")
        self.average = average
        self.name = "auroc" if average == "macro" else f"auroc_{average}"
        super().__init__(from_logits=from_logits)

    def reset(self):
        self._scores, self._targets = [], []

    def update(self, pred, target):
        self._scores.append(self._probabilities(pred))
        self._targets.append(self._codes(target))

    def compute(self):
        if not self._scores:
            return torch.tensor(float("nan"))
        scores, target = torch.cat(self._scores), torch.cat(self._targets)
        if scores.shape[1] == 2:
            return _auc(scores[:, 1], target == 1)
        truth = target.reshape(-1, 1) == torch.arange(scores.shape[1], device=target.device)
        if self.average == "micro":
            return _auc(scores.reshape(-1), truth.reshape(-1))
        per_class = torch.stack([_auc(scores[:, c], truth[:, c]) for c in range(scores.shape[1])])
        if self.average == "weighted":
            share = truth.to(torch.float64).mean(dim=0)
            return (per_class * share).sum()
        return per_class.mean()


def _auc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mann-Whitney AUC with average ranks for ties (equals the trapezoidal ROC area)."""
    order = scores.argsort()
    _, group, counts = torch.unique_consecutive(scores[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    ranks = torch.empty_like(scores)
    ranks[order] = (ends - (counts - 1) / 2)[group]
    positive = positive.to(torch.float64)
    n_pos = positive.sum()
    n_neg = len(positive) - n_pos
    return ((ranks * positive).sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


class Rescaled(Metric):
    """A regression metric computed in original units from standardized predictions and targets.

    ``nf.mlp`` trains on a standardized response and reports its mae in the response's units.

    >>> import torch
    >>> from nnfit.train.metrics import MAE, Rescaled
    >>> mae = Rescaled(MAE(), center=4200.0, scale=800.0)   # body mass: mean 4200 g, sd 800 g
    >>> mae.update(torch.tensor([[0.5]]), torch.tensor([[0.0]]))
    >>> float(mae.compute())
    400.0
    """

    def __init__(self, metric: Metric, center, scale):
        self.metric = metric
        self.name = metric.name
        self.maximize = getattr(metric, "maximize", False)
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

    @classmethod
    def update_models(cls, metrics, preds, targets, mask=None):
        inner = [m.metric for m in metrics]
        if preds.dim() != 3 or len({type(m) for m in inner}) != 1:
            return super().update_models(metrics, preds, targets, mask)
        scale, center = cls._stacked(metrics, preds.device)
        K, n = preds.shape[:2]
        type(inner[0]).update_models(inner, preds.detach().reshape(K, n, -1) * scale + center,
                                     targets.detach().reshape(K, n, -1) * scale + center, mask)

    @staticmethod
    def _stacked(metrics, device):
        """(K, 1, outputs) scales and centers of K models' metrics, stacked once per list of them."""
        key = [m.scale for m in metrics] + [m.center for m in metrics]  # the tensors themselves: compared by identity
        found = getattr(metrics[0], "_stacked_cache", None)
        if (found is None or len(found[0]) != len(key) or any(a is not b for a, b in zip(found[0], key))
                or found[1].device != torch.device(device)):
            scale = torch.stack([m.scale for m in metrics]).to(device)
            center = torch.stack([m.center for m in metrics]).to(device)
            found = metrics[0]._stacked_cache = (key, scale, center)
        return found[1], found[2]

    @classmethod
    def compute_models(cls, metrics):
        inner = [m.metric for m in metrics]
        return type(inner[0]).compute_models(inner) if len({type(m) for m in inner}) == 1 else super().compute_models(metrics)

    def __repr__(self):
        return f"Rescaled({self.metric!r})"


_NAMES = {
    "mae": MAE, "mse": MSE, "rmse": RMSE, "r2": R2, "accuracy": Accuracy, "acc": Accuracy,
    "binary_accuracy": BinaryAccuracy, "auroc": AUROC, "auc": AUROC, "precision": Precision,
    "recall": Recall, "f1": F1, "log_loss": LogLoss, "top_k_accuracy": TopKAccuracy, "logloss": LogLoss,
}


def resolve(metric) -> Metric:
    """A metric instance from an instance, a class or a name ('mae', 'accuracy', 'auroc', ...).

    >>> import nnfit as nf
    >>> nf.metrics.resolve("f1")
    F1()
    """
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


def train_only(metric) -> Metric:
    """A copy of ``metric`` that runs on the training set only (luz's ``luz_metric_set(train_metrics=)``).

    >>> import nnfit as nf
    >>> metrics = [nf.metrics.MAE(), nf.metrics.train_only(nf.metrics.RMSE())]
    """
    return _only(metric, "train")


def valid_only(metric) -> Metric:
    """A copy of ``metric`` that runs on validation (and ``evaluate``) only, e.g. a costly AUROC.

    >>> import nnfit as nf
    >>> metrics = [nf.metrics.Accuracy(), nf.metrics.valid_only(nf.metrics.AUROC())]
    """
    return _only(metric, "valid")


def _only(metric, split: str):
    metric = copy.copy(resolve(metric))
    metric.only = split
    return metric


def for_set(metrics, split: str) -> list:
    """Fresh copies of the metrics that run on ``split`` ('train' or 'valid').

    >>> import nnfit as nf
    >>> from nnfit.train.metrics import for_set
    >>> metrics = [nf.metrics.MAE(), nf.metrics.valid_only(nf.metrics.R2())]
    >>> [m.name for m in for_set(metrics, "train")], [m.name for m in for_set(metrics, "valid")]
    (['mae'], ['mae', 'r2'])
    """
    return [copy.deepcopy(m) for m in metrics if getattr(m, "only", split) == split]

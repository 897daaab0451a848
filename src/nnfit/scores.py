"""Scores of predictions against the truth: regression (MAE, RMSE, R²) and classification
(accuracy, balanced accuracy, log loss, AUC, Brier, the confusion table and per-class rates),
all computed with ``nnfit.train.metrics`` (one implementation). ``evaluate``, ``summary``,
cross-validation, grids and the estimators read them from here.

>>> import numpy as np
>>> from nnfit.scores import score
>>> score(np.array([[1.0], [3.0]]), np.array([[2.0], [3.0]]), "regression")["mae"]
0.5
"""

from __future__ import annotations

import math

import numpy as np

class Scores(dict):
    """Evaluation metrics (a dict) that also knows how many rows it scored and left out.

    ``MLPFit.evaluate`` returns one. A classifier's also holds ``.confusion`` (a DataFrame: rows
    the true levels, columns the predicted ones), ``.by_class`` (sensitivity, specificity,
    precision, recall, f1 and support per level) and ``.threshold`` (binary: the decision threshold).

    >>> from nnfit.scores import Scores
    >>> scores = Scores({"mae": 279.1, "r2": 0.85}, n=67, n_left_out=1)
    >>> scores
    {mae: 279.1, r2: 0.85} (67 rows scored, 1 left out (missing values))
    >>> scores["mae"], scores.n
    (279.1, 67)
    """

    def __init__(self, values: dict, n: int, n_left_out: int, confusion=None, by_class=None, threshold=None):
        super().__init__(values)
        self.n = n
        self.n_left_out = n_left_out
        self.confusion = confusion
        self.by_class = by_class
        self.threshold = threshold

    def __repr__(self):
        text = ", ".join(f"{k}: {v:.4g}" for k, v in self.items())
        extra = f", {self.n_left_out} left out (missing values)" if self.n_left_out else ""
        extra += f", threshold {self.threshold:g}" if self.threshold is not None else ""
        lines = [f"{{{text}}} ({self.n} rows scored{extra})"]
        if self.confusion is not None:
            lines += ["confusion (rows: truth, columns: predicted):", _indent(self.confusion.to_string())]
        if self.by_class is not None:
            lines += ["by class:", _indent(self.by_class.round(4).to_string())]
        return "\n".join(lines)

    def _repr_html_(self):
        from . import display

        rows = list(self.items()) + [("rows scored", self.n), ("left out (missing values)", self.n_left_out)]
        if self.threshold is not None:
            rows.append(("threshold", self.threshold))
        parts = [display.table(rows, title="nnfit evaluation")]
        if self.confusion is not None:
            parts.append(display.frame(self.confusion, title="Confusion (rows: truth, columns: predicted)"))
        if self.by_class is not None:
            parts.append(display.frame(self.by_class, title="By class"))
        return "".join(parts)


def _indent(text: str) -> str:
    return "  " + text.replace("\n", "\n  ")


def score(pred: np.ndarray, truth: np.ndarray, task: str) -> dict:
    """mae, rmse, r2 (regression, averaged over outputs) or accuracy, log_loss (classification).

    >>> import numpy as np
    >>> from nnfit.scores import score
    >>> scores = score(np.array([[1.0], [2.0], [4.0]]), np.array([[1.0], [3.0], [4.0]]), "regression")
    >>> {name: round(value, 3) for name, value in scores.items()}
    {'mae': 0.333, 'rmse': 0.577, 'r2': 0.786}
    """
    if task == "regression":
        errors = pred - truth
        total = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
        r2 = 1 - (errors**2).sum(axis=0) / np.where(total > 0, total, np.nan)
        return {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt((errors**2).mean())), "r2": float(np.mean(r2))}
    eps = np.finfo(np.float64).eps
    picked = np.clip(pred[np.arange(len(truth)), truth], eps, 1.0)
    return {"accuracy": float((pred.argmax(axis=1) == truth).mean()), "log_loss": float(-np.log(picked).mean())}


def classification_scores(probs: np.ndarray, truth: np.ndarray, levels, threshold=None) -> Scores:
    """The full evaluation of a classifier from its probabilities (n, levels) and true codes (n,).

    accuracy, balanced_accuracy (the mean recall over the levels present), log_loss, auc (binary;
    the macro mean one-vs-rest for several levels) and brier (binary: mean (p - y)^2 of the second
    level; several levels: the mean over rows of the sum over levels, as scikit-learn's
    ``brier_score_loss``); for two levels also sensitivity and specificity of the second level
    (the one a logistic model predicts the probability of, as glm). ``.confusion`` and
    ``.by_class`` hold the table and the per-level sensitivity, specificity, precision, recall,
    f1 and support. Classes are the largest probability, or for two levels the second level where
    its probability is above ``threshold`` (0.5 by default). Every number comes from
    ``nnfit.train.metrics``.

    >>> import numpy as np
    >>> from nnfit.scores import classification_scores
    >>> probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
    >>> scores = classification_scores(probs, np.array([0, 0, 1, 1]), ["no", "yes"])
    >>> scores["accuracy"], scores["sensitivity"], scores["specificity"], scores["auc"]
    (0.5, 0.5, 0.5, 0.75)
    >>> scores.confusion
    predicted  no  yes
    truth
    no          1    1
    yes         1    1
    """
    import pandas as pd
    import torch

    from .train import metrics

    t = 0.5 if threshold is None else threshold
    binary = probs.shape[1] == 2
    pred = torch.as_tensor(probs[:, 1] if binary else probs, dtype=torch.float64)
    target = torch.as_tensor(truth, dtype=torch.int64)

    def measured(metric):
        metric.update(pred, target)
        return metric

    def per_class(metric):  # the per-level values behind a macro average
        metric = measured(metric)
        return metric._score(metric._tp, metric._predicted, metric._true).numpy()

    k = probs.shape[1]
    options = {"from_logits": False, "threshold": t}
    classes = metrics.Accuracy(**options)._classes(pred).numpy()
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, classes), 1)
    precision = per_class(metrics.Precision("macro", **options))
    recall = per_class(metrics.Recall("macro", **options))
    f1 = per_class(metrics.F1("macro", **options))
    negatives = confusion.sum() - confusion.sum(axis=1)
    false_positives = confusion.sum(axis=0) - np.diag(confusion)
    specificity = np.where(negatives > 0, (negatives - false_positives) / np.maximum(negatives, 1), np.nan)
    support = confusion.sum(axis=1)
    onehot = np.eye(k)[truth]
    squared = (probs - onehot) ** 2
    values = {
        "accuracy": float(measured(metrics.Accuracy(**options)).compute()),
        "balanced_accuracy": float(recall[support > 0].mean()),
        "log_loss": float(measured(metrics.LogLoss(from_logits=False)).compute()),
        "auc": float(measured(metrics.AUROC("macro", from_logits=False)).compute()) if (support > 0).all() else math.nan,
        "brier": float(squared[:, 1].mean() if binary else squared.sum(axis=1).mean()),
    }
    if binary:
        values["sensitivity"], values["specificity"] = float(recall[1]), float(specificity[1])
    names = pd.Index([str(level) for level in levels])
    table = pd.DataFrame(confusion, index=names.rename("truth"), columns=names.rename("predicted"))
    by_class = pd.DataFrame({"sensitivity": recall, "specificity": specificity, "precision": precision,
                             "recall": recall, "f1": f1, "support": support}, index=names.rename("level"))
    return Scores(values, n=len(truth), n_left_out=0, confusion=table, by_class=by_class,
                  threshold=threshold if binary else None)


def probabilities(out: np.ndarray, task: str) -> np.ndarray:
    """Class probabilities (n, levels) from a network's outputs (n, outputs): the logistic of the
    one logit for a binary task, the softmax otherwise.

    >>> probabilities(np.array([[0.0], [np.log(3.0)]]), "binary").round(3).tolist()
    [[0.5, 0.5], [0.25, 0.75]]
    """
    if task == "binary":
        p = 1.0 / (1.0 + np.exp(-out.reshape(-1)))
        return np.column_stack([1 - p, p])
    shifted = out - out.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)

"""What every fitted object shares: its training history and what is read from it.

A fit's history is a list of records ``(set, metric, epoch, value)``, or ``(set, metric, epoch,
value, model)`` for K models trained at once. ``Fitted`` (``setup().fit``), ``FittedMany``
(``setup().fit(n_models=K)``) and ``MLPFit`` (``nf.mlp``, 1 or K models) all derive from
``History``, which reads the records one way for all three: the long metrics frame, the epochs
run, the last epoch's values, and the notebook view built from each class's own facts.

>>> from nnfit.train.fitted import last_epoch
>>> records = [("train", "loss", 1, 0.9, 1), ("train", "loss", 2, 0.5, 1),   # model 1: 2 epochs
...            ("train", "loss", 1, 0.7, 2)]                                 # model 2 stopped after 1
>>> last_epoch(records)                    # each model's own last epoch, the mean over models
{'train': {'loss': 0.6}}
"""

from __future__ import annotations

COLUMNS = ["set", "metric", "epoch", "value"]


def history_frame(records):
    """The records as a long DataFrame: set, metric, epoch, value (and model, for K models).

    >>> from nnfit.train.fitted import history_frame
    >>> history_frame([("train", "loss", 1, 0.5)]).columns.tolist()
    ['set', 'metric', 'epoch', 'value']
    """
    import pandas as pd

    columns = COLUMNS + (["model"] if records and len(records[0]) == 5 else [])
    return pd.DataFrame([tuple(row) for row in records], columns=columns)


def epochs_run(records) -> int:
    """The most epochs any model ran (0 for no records).

    >>> from nnfit.train.fitted import epochs_run
    >>> epochs_run([("train", "loss", 1, 0.9), ("train", "loss", 2, 0.5)]), epochs_run([])
    (2, 0)
    """
    return max((row[2] for row in records), default=0)


def last_epoch(records) -> dict:
    """{set: {metric: value}} of the last epoch; for K models, each model's own last epoch (a model
    that stopped early counts with its last), averaged over the models."""
    last = {}
    for row in records:
        model = row[4] if len(row) == 5 else 0
        last[model, row[0]] = max(last.get((model, row[0]), 0), row[2])
    values = {}
    for row in records:
        model = row[4] if len(row) == 5 else 0
        if row[2] == last[model, row[0]]:
            values.setdefault(row[0], {}).setdefault(row[1], []).append(float(row[3]))
    return {split: {name: sum(v) / len(v) for name, v in metrics.items()} for split, metrics in values.items()}


class History:
    """The base of nnfit's fitted objects: ``records`` read as ``metrics``, ``epochs_run``,
    ``last_metrics()``, and a notebook view of ``_facts()`` (what was fitted and how), the last
    epoch and ``plot()`` (the learning curves). A subclass sets ``records`` and defines
    ``_title``, ``_facts`` and ``plot``.

    >>> import torch, nnfit as nf
    >>> from nnfit.train.fitted import History
    >>> X = torch.randn(40, 2); y = X.sum(dim=1, keepdim=True)
    >>> fitted = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=2, hidden=[3], output_size=1).fit(
    ...     (X, y), epochs=2, seed=1, verbose=False)
    >>> isinstance(fitted, History), fitted.epochs_run, list(fitted.last_metrics())
    (True, 2, ['train'])
    """

    records: list

    @property
    def metrics(self):
        """Training history as a long DataFrame: set, metric, epoch, value (and model, for K models)."""
        return history_frame(self.records)

    @property
    def epochs_run(self) -> int:
        return epochs_run(self.records)

    def last_metrics(self) -> dict:
        """{set: {metric: value}} of the last epoch (for K models, the mean of each one's last)."""
        return last_epoch(self.records)

    def _title(self) -> str:
        raise NotImplementedError

    def _facts(self) -> list:
        raise NotImplementedError

    def plot(self):
        raise NotImplementedError

    def _repr_html_(self):
        """Jupyter's view: what was fitted and how, the last epoch's metrics, the learning curves."""
        from .. import display

        return display.fitted(self._title(), self._facts(), self.last_metrics(), self.plot() if self.records else None)

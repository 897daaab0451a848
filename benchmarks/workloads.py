"""The three workloads every contender trains: what the data is and what the network is.

R: penguins, body mass from everything else (regression). C: penguins, species (3 classes).
L: a synthetic 1,000,000 x 20 regression with a 20-256-256-1 network (large work per step).

Hand loops and ``setup().fit()`` get the tensors of ``Data`` (predictors and a numeric response
standardized with training statistics, as nf.mlp does inside); nf.mlp gets the frames and
does that itself. Test metrics are in the response's own units.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Workload:
    """One benchmark task: data, network, loss, optimizer and schedule."""

    name: str
    title: str
    formula: str
    task: str  # "regression" or "classification"
    hidden: tuple
    dropout: tuple
    optimizer: str  # "rmsprop" or "adam"
    lr: float
    batch_size: int
    epochs: int
    seed: int = 1
    warmup_rows: int | None = None  # warm-up fit on this many rows (None: a whole cold fit)
    thread_check_rows: int | None = None  # rows for the 1-vs-2-threads check (None: all)
    options: dict = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return "mae" if self.task == "regression" else "accuracy"

    def network(self, n_inputs: int, n_outputs: int):
        """The torch network every hand loop and setup().fit() trains (nf.mlp builds the same)."""
        from torch import nn

        layers, width = [], n_inputs
        for size, p in zip(self.hidden, self.dropout):
            layers += [nn.Linear(width, size), nn.ReLU()] + ([nn.Dropout(p)] if p else [])
            width = size
        return nn.Sequential(*layers, nn.Linear(width, n_outputs))

    def optimizer_class(self):
        import torch

        return {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}[self.optimizer]

    def loss(self):
        from torch import nn

        return nn.MSELoss() if self.task == "regression" else nn.CrossEntropyLoss()


WORKLOADS = {
    "R": Workload(
        "R", "penguins regression (body_mass_g ~ .), 266 rows, 9-50-1, RMSprop, batch 32, 100 epochs",
        "body_mass_g ~ .", "regression", hidden=(50,), dropout=(0.4,), optimizer="rmsprop", lr=0.01,
        batch_size=32, epochs=100,
    ),
    "C": Workload(
        "C", "penguins classification (species ~ .), 266 rows, 9-10-5-3, RMSprop, batch 32, 100 epochs",
        "species ~ .", "classification", hidden=(10, 5), dropout=(0.4, 0.3), optimizer="rmsprop", lr=0.01,
        batch_size=32, epochs=100,
    ),
    "L": Workload(
        "L", "synthetic regression, 1,000,000 x 20, 20-256-256-1, Adam, batch 1024, 1 epoch",
        "y ~ .", "regression", hidden=(256, 256), dropout=(0.0, 0.0), optimizer="adam", lr=0.001,
        batch_size=1024, epochs=1, warmup_rows=20_000, thread_check_rows=100_000,
    ),
}


@dataclass
class Data:
    """A workload's training and test data, as frames and as standardized tensors."""

    train_frame: object
    test_frame: object
    X: object  # training predictors, float32 (n, p)
    y: object  # training response: standardized float32 (n, 1), or class codes int64 (n,)
    test_X: object
    test_y: object  # in original units, or class codes
    n_outputs: int
    center: float = 0.0  # response mean and sd: original = standardized * scale + center
    scale: float = 1.0

    def rows(self, n: int | None) -> "Data":
        """The first ``n`` training rows (for warm-up fits)."""
        if n is None:
            return self
        return Data(self.train_frame.iloc[:n], self.test_frame, self.X[:n], self.y[:n], self.test_X, self.test_y,
                    self.n_outputs, self.center, self.scale)

    def score(self, pred) -> float:
        """The test metric of network outputs on ``test_X``: MAE in original units, or accuracy."""
        import torch

        if self.n_outputs > 1:
            return float((pred.argmax(dim=1) == self.test_y).double().mean())
        return float((pred.reshape(-1).double() * self.scale + self.center - self.test_y.double()).abs().mean())


def load(workload: Workload) -> Data:
    """The workload's data, built the same way in every process."""
    return _synthetic(workload) if workload.name == "L" else _penguins(workload)


def _penguins(workload: Workload) -> Data:
    import warnings

    import torch

    import nnfit as nf

    penguins = nf.datasets.load("penguins").dropna().drop(columns="year")
    training, testing = nf.split(penguins, prop=0.8, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = nf.Design(workload.formula, scale=True, scale_response=True, intercept=False).fit(training)
    X, y = design.tensors(training)
    test_X, _ = design.tensors(testing)
    if workload.task == "regression":
        center, scale = float(design.response_center_[0]), float(design.response_scale_[0])
        test_y = torch.as_tensor(testing[workload.formula.split("~")[0].strip()].to_numpy(), dtype=torch.float64)
        return Data(training, testing, X, y, test_X, test_y, 1, center, scale)
    _, test_y = design.tensors(testing)
    return Data(training, testing, X, y, test_X, test_y, len(design.levels))


def _synthetic(workload: Workload, n_train: int = 1_000_000, n_test: int = 100_000, p: int = 20) -> Data:
    import pandas as pd
    import torch

    generator = torch.Generator().manual_seed(workload.seed)
    X = torch.randn(n_train + n_test, p, generator=generator)
    weights = torch.randn(p, 1, generator=generator) / p**0.5
    signal = X @ weights + 0.5 * torch.sin(2 * X[:, :1]) * X[:, 1:2]
    y = signal + 0.1 * torch.randn(n_train + n_test, 1, generator=generator)
    y = (y - y[:n_train].mean()) / y[:n_train].std()  # already standardized: nf.mlp's scaling is ~identity
    frame = pd.DataFrame(X.numpy(), columns=[f"x{j}" for j in range(1, p + 1)]).assign(y=y.numpy()[:, 0])
    return Data(
        frame.iloc[:n_train], frame.iloc[n_train:], X[:n_train], y[:n_train], X[n_train:],
        y[n_train:, 0].double(), 1,
    )

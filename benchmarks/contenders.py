"""The implementations raced on each workload, each a function ``(workload, data, threads) -> Result``.

All train the same network with the same loss, optimizer, batch size and epochs, and are
scored on the same test rows. ``fit_seconds`` times what the user calls to train (for nf.mlp
that includes the formula and design); ``train_seconds`` the training loop alone.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass


@dataclass
class Result:
    fit_seconds: float
    train_seconds: float
    metric: float
    threads: int


def expert(workload, data, threads):
    """The best hand loop: pre-built tensors, one randperm per epoch, contiguous slices."""
    import torch

    model, optimizer, loss_fn = _torch_parts(workload, data)
    X, y = data.X, data.y
    n, size = len(X), workload.batch_size
    began = time.perf_counter()
    for _ in range(workload.epochs):
        order = torch.randperm(n)
        X_epoch, y_epoch = X[order], y[order]
        for start in range(0, n, size):
            loss = loss_fn(model(X_epoch[start : start + size]), y_epoch[start : start + size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - began
    return Result(seconds, seconds, _score(model, data), torch.get_num_threads())


def dataloader(workload, data, threads):
    """The typical hand loop: a DataLoader over a TensorDataset."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    model, optimizer, loss_fn = _torch_parts(workload, data)
    began = time.perf_counter()
    loader = DataLoader(TensorDataset(data.X, data.y), batch_size=workload.batch_size, shuffle=True)
    for _ in range(workload.epochs):
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - began
    return Result(seconds, seconds, _score(model, data), torch.get_num_threads())


def nnfit_setup(workload, data, threads):
    """nnfit's luz workflow: setup(...).set_opt_hparams(...).fit((X, y))."""
    import torch

    import nnfit as nf

    torch.manual_seed(workload.seed)
    network = workload.network(data.X.shape[1], data.n_outputs)
    metric = nf.metrics.MAE() if workload.task == "regression" else nf.metrics.Accuracy()
    began = time.perf_counter()
    fitted = (
        nf.setup(network, loss=workload.loss(), optimizer=workload.optimizer_class(), metrics=[metric])
        .set_opt_hparams(lr=workload.lr)
        .fit((data.X, data.y), epochs=workload.epochs, batch_size=workload.batch_size, seed=workload.seed,
             verbose=False, threads=threads)
    )
    seconds = time.perf_counter() - began
    return Result(seconds, fitted.seconds, data.score(fitted.predict(data.test_X)), fitted.threads)


def nnfit_setup_mlp(workload, data, threads):
    """nnfit's luz workflow on its own network: setup(nf.MLP).set_hparams(...).fit((X, y)), which
    the engine trains in closed form by itself."""
    import nnfit as nf

    metric = nf.metrics.MAE() if workload.task == "regression" else nf.metrics.Accuracy()
    began = time.perf_counter()
    fitted = (
        nf.setup(nf.MLP, loss=workload.loss(), optimizer=workload.optimizer_class(), metrics=[metric])
        .set_hparams(input_size=data.X.shape[1], hidden=list(workload.hidden), output_size=data.n_outputs,
                     dropout=list(workload.dropout))
        .set_opt_hparams(lr=workload.lr)
        .fit((data.X, data.y), epochs=workload.epochs, batch_size=workload.batch_size, seed=workload.seed,
             verbose=False, threads=threads)
    )
    seconds = time.perf_counter() - began
    return Result(seconds, fitted.seconds, data.score(fitted.predict(data.test_X)), fitted.threads)


def nnfit_mlp(workload, data, threads):
    """nnfit's formula one-liner on the data frame (the fused trainer)."""
    import warnings

    import nnfit as nf

    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = nf.mlp(
            workload.formula, data=data.train_frame, hidden=list(workload.hidden), dropout=list(workload.dropout),
            optimizer=workload.optimizer, lr=workload.lr, epochs=workload.epochs, batch_size=workload.batch_size,
            seed=workload.seed, verbose=False, threads=threads,
        )
    seconds = time.perf_counter() - began
    scores = fit.evaluate(data.test_frame)
    return Result(seconds, fit.settings["seconds"], scores[workload.metric], fit.settings["threads"])


# ---------------------------------------------------------------- many models at once (R and C)
ENSEMBLE_SIZE = 32
FOLDS = 10


def _mlp_options(workload, threads):
    return dict(hidden=list(workload.hidden), dropout=list(workload.dropout), optimizer=workload.optimizer,
                lr=workload.lr, epochs=workload.epochs, batch_size=workload.batch_size, threads=threads)


def _mean_prediction_metric(fits, data, workload) -> float:
    """The test metric of the models' mean prediction (probabilities for a classifier)."""
    import numpy as np

    truth = data.test_frame[workload.formula.split("~")[0].strip()]
    if workload.task == "regression":
        pred = np.mean([fit.predict(data.test_frame).to_numpy() for fit in fits], axis=0)
        return float(np.abs(pred - truth.to_numpy()).mean())
    probs = np.mean([fit.predict(data.test_frame, type="prob").to_numpy() for fit in fits], axis=0)
    return float((probs.argmax(axis=1) == truth.cat.codes.to_numpy()).mean())


def nnfit_ensemble(workload, data, threads):
    """nf.mlp(n_models=32): 32 networks stacked and trained in one pass."""
    import warnings

    import nnfit as nf

    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = nf.mlp(workload.formula, data=data.train_frame, n_models=ENSEMBLE_SIZE, seed=workload.seed, verbose=False,
                     **_mlp_options(workload, threads))
    seconds = time.perf_counter() - began
    return Result(seconds, fit.settings["seconds"], _mean_prediction_metric([fit], data, workload), fit.settings["threads"])


def nnfit_ensemble_stopping(workload, data, threads):
    """nf.mlp(n_models=32, valid=0.2) with EarlyStopping: each model stops on its own, its steps masked."""
    import warnings

    import nnfit as nf

    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = nf.mlp(workload.formula, data=data.train_frame, n_models=ENSEMBLE_SIZE, seed=workload.seed, verbose=False,
                     valid=0.2, callbacks=[nf.callbacks.EarlyStopping(patience=10)], **_mlp_options(workload, threads))
    seconds = time.perf_counter() - began
    return Result(seconds, fit.settings["seconds"], _mean_prediction_metric([fit], data, workload), fit.settings["threads"])


def nnfit_ensemble_sequential(workload, data, threads):
    """The sequential alternative: 32 nf.mlp fits, one after another."""
    import warnings

    import nnfit as nf

    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [nf.mlp(workload.formula, data=data.train_frame, seed=workload.seed + k, verbose=False,
                       **_mlp_options(workload, threads)) for k in range(ENSEMBLE_SIZE)]
    seconds = time.perf_counter() - began
    return Result(seconds, sum(f.settings["seconds"] for f in fits), _mean_prediction_metric(fits, data, workload),
                  fits[0].settings["threads"])


def nnfit_setup_many(workload, data, threads):
    """nnfit's luz workflow with fit(n_models=32): torch.func over 32 copies of the module."""
    import torch

    import nnfit as nf

    network = lambda: workload.network(data.X.shape[1], data.n_outputs)  # noqa: E731
    began = time.perf_counter()
    fitted = (
        nf.setup(network(), loss=workload.loss(), optimizer=workload.optimizer_class())
        .set_opt_hparams(lr=workload.lr)
        .fit((data.X, data.y), epochs=workload.epochs, batch_size=workload.batch_size, seed=workload.seed,
             threads=threads, n_models=ENSEMBLE_SIZE)
    )
    seconds = time.perf_counter() - began
    mean = fitted.predict(data.test_X) if workload.task == "regression" else torch.softmax(
        fitted.predict(data.test_X, type="all"), dim=2).mean(dim=0)
    return Result(seconds, fitted.seconds, data.score(mean), fitted.threads)


def nnfit_cross_validate(workload, data, threads):
    """nf.cross_validate(folds=10) on the training rows: the folds trained together (metric: CV mean)."""
    import warnings

    import nnfit as nf

    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = nf.cross_validate(workload.formula, data.train_frame, folds=FOLDS, seed=workload.seed,
                               **_mlp_options(workload, threads))
    seconds = time.perf_counter() - began
    return Result(seconds, seconds, float(cv.folds[workload.metric].mean()), threads or 1)


def nnfit_cross_validate_sequential(workload, data, threads):
    """The sequential alternative: one nf.mlp per fold, each scored on its held-out rows."""
    import warnings

    import nnfit as nf
    from nnfit.folds import assign_folds

    frame = data.train_frame
    codes = frame[workload.formula.split("~")[0].strip()].cat.codes.to_numpy() if workload.task != "regression" else None
    assignment = assign_folds(codes, len(frame), FOLDS, workload.seed, stratify=codes is not None)
    began = time.perf_counter()
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(FOLDS):
            fit = nf.mlp(workload.formula, data=frame[assignment != k], seed=workload.seed + k, verbose=False,
                         **_mlp_options(workload, threads))
            scores.append(fit.evaluate(frame[assignment == k])[workload.metric])
    seconds = time.perf_counter() - began
    return Result(seconds, seconds, sum(scores) / len(scores), fit.settings["threads"])


def nnfit_sklearn(workload, data, threads):
    """nnfit's scikit-learn face: MLPRegressor for R, MLPClassifier for C, fit on the arrays."""
    import torch

    from nnfit.sklearn import MLPClassifier, MLPRegressor

    kind = MLPRegressor if workload.task == "regression" else MLPClassifier
    estimator = kind(hidden=list(workload.hidden), dropout=list(workload.dropout), optimizer=workload.optimizer,
                     lr=workload.lr, epochs=workload.epochs, batch_size=workload.batch_size,
                     random_state=workload.seed, device="cpu")
    X, y = data.X.numpy(), data.y.numpy()
    began = time.perf_counter()
    estimator.fit(X, y.reshape(-1) if workload.task == "regression" else y)
    seconds = time.perf_counter() - began
    test_X = data.test_X.numpy()
    pred = estimator.predict(test_X) if workload.task == "regression" else estimator.predict_proba(test_X)
    return Result(seconds, seconds, data.score(torch.as_tensor(pred)), torch.get_num_threads())


def skorch(workload, data, threads):
    """skorch's NeuralNetRegressor / NeuralNetClassifier."""
    import torch
    from skorch import NeuralNetClassifier, NeuralNetRegressor

    torch.manual_seed(workload.seed)
    module = workload.network(data.X.shape[1], data.n_outputs)
    kind = NeuralNetRegressor if workload.task == "regression" else NeuralNetClassifier
    net = kind(
        module, criterion=type(workload.loss()), optimizer=workload.optimizer_class(), lr=workload.lr,
        max_epochs=workload.epochs, batch_size=workload.batch_size, train_split=None, verbose=0,
        iterator_train__shuffle=True,
    )
    if workload.task == "classification":
        net.set_params(classes=list(range(data.n_outputs)))
    began = time.perf_counter()
    net.fit(data.X, data.y)
    seconds = time.perf_counter() - began
    return Result(seconds, seconds, _score(net.module_, data), torch.get_num_threads())


def lightning(workload, data, threads):
    """PyTorch Lightning's Trainer over a DataLoader."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(workload.seed)
    network, loss_fn, optimizer_class, lr = (
        workload.network(data.X.shape[1], data.n_outputs), workload.loss(), workload.optimizer_class(), workload.lr
    )

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.network = network

        def training_step(self, batch, index):
            x, y = batch
            return loss_fn(self.network(x), y)

        def configure_optimizers(self):
            return optimizer_class(self.parameters(), lr=lr)

    module = Module()
    trainer = L.Trainer(
        max_epochs=workload.epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    began = time.perf_counter()
    trainer.fit(module, DataLoader(TensorDataset(data.X, data.y), batch_size=workload.batch_size, shuffle=True))
    seconds = time.perf_counter() - began
    return Result(seconds, seconds, _score(module.network, data), torch.get_num_threads())


def keras(workload, data, threads):
    """Keras 3 on the torch backend: Sequential, compile, fit."""
    import os

    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import torch

    keras.utils.set_random_seed(workload.seed)
    layers = [keras.Input((data.X.shape[1],))]
    for size, p in zip(workload.hidden, workload.dropout):
        layers += [keras.layers.Dense(size, activation="relu")] + ([keras.layers.Dropout(p)] if p else [])
    layers.append(keras.layers.Dense(data.n_outputs))
    model = keras.Sequential(layers)
    optimizer = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}[workload.optimizer](workload.lr)
    regression = workload.task == "regression"
    model.compile(optimizer=optimizer, loss="mse" if regression else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    began = time.perf_counter()
    model.fit(data.X.numpy(), data.y.numpy(), batch_size=workload.batch_size, epochs=workload.epochs, verbose=0)
    seconds = time.perf_counter() - began
    pred = torch.as_tensor(model.predict(data.test_X.numpy(), verbose=0, batch_size=4096))
    return Result(seconds, seconds, data.score(pred), torch.get_num_threads())


# name -> (function, the package it needs beyond nnfit's own dependencies)
CONTENDERS = {
    "expert hand loop": (expert, None),
    "DataLoader hand loop": (dataloader, None),
    "nnfit setup().fit()": (nnfit_setup, None),
    "nnfit setup(nf.MLP).fit()": (nnfit_setup_mlp, None),
    "nnfit nf.mlp (fused)": (nnfit_mlp, None),
    "nnfit sklearn MLPRegressor / MLPClassifier": (nnfit_sklearn, None),
    "nf.mlp(n_models=32)": (nnfit_ensemble, None),
    "nf.mlp(n_models=32) + EarlyStopping + valid 0.2": (nnfit_ensemble_stopping, None),
    "32 x nf.mlp in sequence": (nnfit_ensemble_sequential, None),
    "setup().fit(n_models=32)": (nnfit_setup_many, None),
    "nf.cross_validate(folds=10)": (nnfit_cross_validate, None),
    "10 x nf.mlp (one per fold)": (nnfit_cross_validate_sequential, None),
    "skorch": (skorch, "skorch"),
    "Lightning": (lightning, "lightning"),
    "Keras 3 (torch)": (keras, "keras"),
}


# Many-model rows race on the small workloads only: 32 fits of L would take an hour.
SMALL_WORKLOADS_ONLY = {
    "nf.mlp(n_models=32)", "nf.mlp(n_models=32) + EarlyStopping + valid 0.2", "32 x nf.mlp in sequence",
    "setup().fit(n_models=32)",
    "nf.cross_validate(folds=10)", "10 x nf.mlp (one per fold)",
}


def available() -> list[str]:
    """The contenders whose packages are installed here."""
    return [name for name, (_, package) in CONTENDERS.items() if package is None or importlib.util.find_spec(package)]


def _torch_parts(workload, data):
    import torch

    torch.manual_seed(workload.seed)
    model = workload.network(data.X.shape[1], data.n_outputs)
    return model, workload.optimizer_class()(model.parameters(), lr=workload.lr), workload.loss()


def _score(model, data) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return data.score(model(data.test_X))

"""K models in one fit (nnfit.train.many): every callback works per model, and model k equals its fit alone."""

import csv
import io
import os

import numpy as np
import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit.train import many
from nnfit.train.checkpoints import read_checkpoint
from nnfit.errors import DivergenceError


class Small(nn.Module):
    """A module outside nnfit's closed-form family: trained as a VmapStack."""

    def __init__(self, p):
        super().__init__()
        self.a = nn.Linear(p, 6)
        self.b = nn.Linear(6, 1)

    def forward(self, x):
        return self.b(torch.nn.functional.softplus(self.a(x)))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 4, generator=g)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.3 * torch.randn(96, 1, generator=g)
    return X[:72], y[:72], X[72:], y[72:]


def mlp_learner():
    return (nf.setup(nf.MLP, loss="mse", optimizer="sgd", metrics=[nf.metrics.MAE()])
            .set_hparams(input_size=4, hidden=[6], output_size=1).set_opt_hparams(lr=0.05))


def close(a: nn.Module, b: nn.Module):
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_many_rows_pad_and_mask_the_shorter_model():
    X = torch.arange(10.0)[:, None]
    rows = many.ManyRows(X, X, [torch.arange(0, 10), torch.arange(0, 6)], seeds=[1, 2])
    batches = list(rows.batches(4, shuffle=False))
    assert [tuple(x.shape) for x, _, _ in batches] == [(2, 4, 1), (2, 4, 1), (2, 2, 1)]
    second, third = batches[1][2], batches[2][2]
    assert second.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert second.counts.tolist() == [4, 2] and second.active is None
    assert third.active.tolist() == [True, False] and third.counts.tolist() == [2, 0]
    assert rows.n_batches(4) == 3 and len(rows) == 10


@pytest.mark.parametrize("module", ["mlp", "vmap"])
def test_early_stopping_stops_each_model_on_its_own(data, module):
    X, y, Xv, yv = data
    learner = mlp_learner() if module == "mlp" else nf.setup(Small, loss="mse", optimizer="sgd").set_hparams(p=4)
    learner.set_opt_hparams(lr=0.05)
    stop = nf.callbacks.EarlyStopping(monitor="valid_loss", patience=2, min_delta=0.02)
    fitted = learner.fit((X, y), epochs=30, batch_size=16, valid_data=(Xv, yv), n_models=3, seed=3,
                         callbacks=[stop], verbose=False)
    stopped = []
    for k in range(3):
        alone_stop = nf.callbacks.EarlyStopping(monitor="valid_loss", patience=2, min_delta=0.02)
        alone = learner.fit((X, y), epochs=30, batch_size=16, valid_data=(Xv, yv), seed=3 + k,
                            callbacks=[alone_stop], verbose=False)
        stopped.append(alone_stop.stopped_epoch)
        assert stop.best_epoch[k] == alone_stop.best_epoch
        close(fitted.models[k], alone.model)  # a stopped model's steps are masked: it stays as it stopped
    assert stop.stopped_epoch == stopped
    assert len(set(stopped)) > 1  # the models did stop at different epochs
    assert fitted.ctx.active == [s is None for s in stopped]


class RisingScore(nf.metrics.Metric):
    """The issue's case: a metric with maximize = True that rises 2, 3, 4, 5, 6 over five epochs."""

    name = "score"
    maximize = True

    def __init__(self):
        self.epoch = 1

    def reset(self):
        self.epoch += 1

    def update(self, pred, target):
        pass

    def compute(self):
        return torch.tensor(float(self.epoch))


def test_keep_best_model_keeps_each_models_best_epoch(data):
    X, y, Xv, yv = data
    learner = mlp_learner().set_opt_hparams(lr=0.2)  # a rate that overshoots: the best epoch is not the last
    best = nf.callbacks.KeepBestModel(monitor="valid_loss")
    fitted = learner.fit((X, y), epochs=12, batch_size=8, valid_data=(Xv, yv), n_models=3, seed=11,
                         callbacks=[best], verbose=False)
    for k in range(3):
        alone_best = nf.callbacks.KeepBestModel(monitor="valid_loss")
        alone = learner.fit((X, y), epochs=12, batch_size=8, valid_data=(Xv, yv), seed=11 + k,
                            callbacks=[alone_best], verbose=False)
        assert best.best_epoch[k] == alone_best.best_epoch
        close(fitted.models[k], alone.model)
    losses = fitted.metrics.query("set == 'valid' and metric == 'loss'")
    for k in range(3):
        mine = losses[losses["model"] == k + 1].set_index("epoch")["value"]
        assert best.best_epoch[k] == mine.idxmin()
    # a maximized custom metric: every model keeps its last (highest) epoch, never the first
    score = nf.callbacks.KeepBestModel(monitor="train_score")
    learner = nf.setup(nf.MLP, loss="mse", metrics=[RisingScore()]).set_hparams(input_size=4, hidden=[3], output_size=1)
    learner.fit((X, y), epochs=5, n_models=2, seed=1, callbacks=[score], verbose=False)
    assert score.mode_ == "max" and score.best == [6.0, 6.0] and score.best_epoch == [5, 5]


def test_csv_logger_and_progress_show_every_model(data, tmp_path):
    X, y, Xv, yv = data
    path = tmp_path / "log.csv"
    stream = io.StringIO()
    fitted = mlp_learner().fit((X, y), epochs=2, valid_data=(Xv, yv), n_models=2, seed=1,
                               callbacks=[nf.callbacks.CSVLogger(path), nf.callbacks.Progress(stream=stream)])
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["epoch", "set", "model", "loss", "mae"]
    assert len(rows) == 2 * 2 * 2  # epochs x sets x models
    metrics = fitted.metrics
    for row in rows:
        value = metrics.query(f"epoch == {row['epoch']} and set == '{row['set']}' and model == {row['model']} "
                              "and metric == 'loss'")["value"].item()
        assert float(row["loss"]) == value
    last = metrics.query("epoch == 2 and set == 'train' and metric == 'loss'")["value"].to_numpy()
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith(f"Epoch 2/2  train: loss {last.mean():.4g} [{last.min():.4g}, {last.max():.4g}], mae ")


def test_model_checkpoint_saves_the_whole_stack(data, tmp_path):
    X, y, _, _ = data
    keep = nf.callbacks.ModelCheckpoint(tmp_path / "epoch-{epoch}.nnfit")
    fitted = mlp_learner().fit((X, y), epochs=3, n_models=4, seed=1, callbacks=[keep], verbose=False)
    assert [os.path.basename(p) for p in keep.saved] == ["epoch-1.nnfit", "epoch-2.nnfit", "epoch-3.nnfit"]
    state = read_checkpoint(keep.saved[-1])
    assert state["model"]["weights.0"].shape == (4, 4, 6)
    assert len(state["generators"]) == 4 and state["active"] == [True] * 4
    torch.testing.assert_close(state["model"]["weights.0"][2], fitted.models[2].hidden[0].weight.T)


class Crash(nf.callbacks.Callback):
    weight = 2000  # after AutoResume wrote the epoch's checkpoint
    needs_autograd = False

    def on_epoch_end(self, ctx):
        if ctx.epoch + 1 == 3:
            raise KeyboardInterrupt


@pytest.mark.parametrize("module", ["mlp", "vmap"])
def test_auto_resume_continues_a_stack_bit_for_bit(data, tmp_path, module):
    X, y, Xv, yv = data
    learner = mlp_learner() if module == "mlp" else nf.setup(Small, loss="mse", optimizer="adam").set_hparams(p=4)
    options = dict(epochs=6, batch_size=16, valid_data=(Xv, yv), n_models=3, seed=5, verbose=False)
    stop = lambda: nf.callbacks.EarlyStopping(patience=2, min_delta=0.01)  # noqa: E731
    whole = learner.fit((X, y), callbacks=[stop()], **options)
    with pytest.raises(KeyboardInterrupt):
        learner.fit((X, y), callbacks=[stop(), nf.callbacks.AutoResume(tmp_path), Crash()], **options)
    resume = nf.callbacks.AutoResume(tmp_path)
    again = learner.fit((X, y), callbacks=[stop(), resume], **options)
    assert resume.resumed_from == 3
    for a, b in zip(whole.models, again.models):
        for x, z in zip(a.state_dict().values(), b.state_dict().values()):
            assert torch.equal(x, z)
    assert whole.records == again.records


def test_an_ensemble_weighs_rows_as_each_model_alone():
    penguins = nf.datasets.load("penguins").dropna().reset_index(drop=True)
    weights = np.random.default_rng(1).uniform(0.2, 3.0, len(penguins))
    options = dict(hidden=4, epochs=3, optimizer="sgd", lr=0.05, verbose=False)
    ensemble = nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=penguins, weights=weights, class_weight="balanced",
                      n_models=2, seed=4, **options)
    for k, model in enumerate(ensemble.models()):
        alone = nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=penguins, weights=weights, class_weight="balanced",
                       seed=4 + k, **options)
        close(model, alone.model)


def test_an_ensemble_takes_callbacks_and_names_a_model_that_diverges():
    penguins = nf.datasets.load("penguins").dropna()
    stop = nf.callbacks.EarlyStopping(monitor="valid_loss", patience=1, min_delta=1.0)
    fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=penguins, hidden=3, epochs=20, valid=0.2, n_models=3,
                 seed=1, callbacks=[stop], verbose=False)
    assert fit.n_models == 3 and all(epoch is not None for epoch in stop.stopped_epoch)
    assert max(fit.metrics["epoch"]) == max(stop.stopped_epoch)
    with pytest.raises(DivergenceError) as error:
        nf.mlp("body_mass_g ~ flipper_length_mm", data=penguins, hidden=3, epochs=3, n_models=2, seed=1,
               lr=1e6, verbose=False)
    assert str(error.value).startswith("The training loss of model 1 of 2 ")


def test_an_ensemble_refuses_callbacks_that_act_inside_a_step_and_those_that_need_autograd():
    penguins = nf.datasets.load("penguins").dropna()
    call = lambda callback: nf.mlp("body_mass_g ~ flipper_length_mm", data=penguins, hidden=3, epochs=1,  # noqa: E731
                                   n_models=2, seed=1, verbose=False, callbacks=[callback])
    with pytest.raises(nf.errors.ArgumentError) as error:
        call(nf.callbacks.GradientClip(1.0))
    assert str(error.value) == ("GradientClip acts inside a training step (on_train_batch_before_step), which a stack "
                                "of K models takes as one step, so it would not run; fit the models one at a time "
                                "to use it.")
    with pytest.raises(nf.errors.ArgumentError) as error:
        call(nf.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1))
    assert str(error.value).startswith("Several models at once train in closed form, without autograd or a torch "
                                       "optimizer, and LRScheduler needs them")
    with pytest.raises(nf.errors.ArgumentError, match="^Mixup acts inside a training step"):
        call(nf.callbacks.Mixup())


def test_auto_resume_refuses_an_ensembles_checkpoint_for_another_recipe(tmp_path):
    penguins = nf.datasets.load("penguins").dropna()

    def ensemble(formula, callbacks, seed=1):
        return nf.mlp(formula, data=penguins, hidden=3, epochs=4, n_models=2, seed=seed, verbose=False,
                      callbacks=callbacks)

    with pytest.raises(KeyboardInterrupt):
        ensemble("body_mass_g ~ flipper_length_mm", [nf.callbacks.AutoResume(tmp_path), Crash()])
    for formula, seed in (("body_mass_g ~ bill_depth_mm", 1), ("body_mass_g ~ flipper_length_mm", 2)):
        with pytest.raises(nf.errors.ModelFileError, match="belongs to another run"):
            ensemble(formula, [nf.callbacks.AutoResume(tmp_path)], seed=seed)
    resume = nf.callbacks.AutoResume(tmp_path)
    resumed = ensemble("body_mass_g ~ flipper_length_mm", [resume])
    whole = ensemble("body_mass_g ~ flipper_length_mm", [])
    assert resume.resumed_from == 3 and resumed.history == whole.history


def test_keep_best_leaves_a_model_that_never_improved_as_it_ended(data):
    X, y, Xv, yv = data
    learner = mlp_learner()
    best = nf.callbacks.KeepBestModel(monitor="valid_loss", mode="min")
    fitted = learner.fit((X, y), epochs=3, valid_data=(Xv, yv), n_models=2, seed=1, callbacks=[best], verbose=False)
    alone = learner.fit((X, y), epochs=3, valid_data=(Xv, yv), seed=1, verbose=False,
                        callbacks=[nf.callbacks.KeepBestModel(monitor="valid_loss", mode="min")])
    close(fitted.models[0], alone.model)
    assert best._kept == {0, 1}

"""checkpoints.py: checkpoint files, ModelCheckpoint, KeepBestModel, Interrupt, AutoResume
and the divergence guard."""

import os
import signal
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit import checkpoints, files
from nnfit.callbacks import AutoResume, Callback, EarlyStopping, Interrupt, KeepBestModel, ModelCheckpoint
from nnfit.errors import (
    ArgumentError,
    DataError,
    DivergenceError,
    InterruptedWarning,
    ModelFileError,
    TrainingError,
)

g = torch.Generator().manual_seed(0)
X = torch.randn(200, 5, generator=g)
Y = X @ torch.tensor([[1.0], [-2.0], [0.5], [0.0], [1.5]]) + 0.1 * torch.randn(200, 1, generator=g)


class Net(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Dropout(0.2), nn.Linear(width, 1))

    def forward(self, x):
        return self.layers(x)


def learner(**opt):
    return nf.setup(Net, loss="mse", optimizer="adam").set_opt_hparams(**(opt or {"lr": 0.01}))


def fit(callbacks=(), epochs=6, **kwargs):
    options = dict(epochs=epochs, seed=3, valid_data=0.25, verbose=False, callbacks=list(callbacks))
    options.update(kwargs)
    return learner().fit((X, Y), **options)


def weights(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def same(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


class Snapshots(Callback):
    """The weights at the end of each epoch, after every other callback."""

    weight = 5000

    def __init__(self):
        self.by_epoch = {}

    def on_epoch_end(self, ctx):
        self.by_epoch[ctx.epoch + 1] = weights(ctx.model)


class Crash(Callback):
    weight = 5000

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, ctx):
        if ctx.epoch + 1 == self.epoch:
            raise RuntimeError("power cut")


def valid_losses(fitted):
    return {epoch: value for split, metric, epoch, value in fitted.records if split == "valid" and metric == "loss"}


# ---------------------------------------------------------------------- checkpoint files
def test_checkpoint_round_trip_restores_every_state(tmp_path):
    snap = Snapshots()
    saver = ModelCheckpoint(tmp_path / "epoch-{epoch}.nnfit")
    fitted = fit([saver, snap, EarlyStopping("valid_loss", patience=50)], epochs=3)
    state = checkpoints.read_checkpoint(tmp_path / "epoch-2.nnfit")
    assert state["epoch"] == 2 and state["finished"] is False
    assert state["module"] == f"{Net.__module__}.Net"
    assert same(state["model"], snap.by_epoch[2])
    assert [row for row in state["records"]] == [row for row in fitted.records if row[2] <= 2]
    assert len(state["epoch_seconds"]) == 2
    assert set(state["rng"]) >= {"torch", "generator", "numpy", "python"}
    assert state["rng"]["numpy"][0] == "MT19937" and state["rng"]["python"][0] == 3
    assert set(state["callbacks"]) == {"MetricsRecorder", "DivergenceGuard", "ModelCheckpoint", "Snapshots", "EarlyStopping"}
    assert state["callbacks"]["EarlyStopping"]["wait"] in (0, 1)
    opt = state["optimizers"]["opt"]
    assert opt["param_groups"][0]["betas"] == (0.9, 0.999)
    assert int(opt["state"][0]["step"]) == 2 * 5  # 150 training rows in batches of 32


def test_nf_load_reads_the_weights_of_a_checkpoint(tmp_path):
    snap = Snapshots()
    fit([ModelCheckpoint(tmp_path / "last.nnfit"), snap], epochs=2)
    module = nf.load(tmp_path / "last.nnfit", module=Net)
    assert same(weights(module), snap.by_epoch[2]) and not module.training


def test_read_checkpoint_refuses_a_model_file(tmp_path):
    fitted = fit(epochs=1)
    fitted.save(tmp_path / "model.nnfit")
    with pytest.raises(ModelFileError) as error:
        checkpoints.read_checkpoint(tmp_path / "model.nnfit")
    assert str(error.value) == f"{str(tmp_path / 'model.nnfit')!r} is a model file, not a checkpoint; load it with nf.load()."


def test_a_callback_state_that_needs_pickle_is_a_clear_error(tmp_path):
    class Odd(Callback):
        def state_dict(self):
            return {"when": object}

    with pytest.raises(TrainingError) as error:
        fit([Odd(), ModelCheckpoint(tmp_path / "c.nnfit")], epochs=1)
    assert "Cannot write the checkpoint" in str(error.value)
    assert "the callbacks state holds a value that cannot be stored safely (cannot store a value of type type" in str(error.value)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_fills_the_template_every_epoch(tmp_path):
    saver = ModelCheckpoint(str(tmp_path / "runs" / "e{epoch:02d}-{monitor:.4f}.nnfit"))
    fitted = fit([saver], epochs=3)
    losses = valid_losses(fitted)
    expected = [str(tmp_path / "runs" / f"e{e:02d}-{losses[e]:.4f}.nnfit") for e in (1, 2, 3)]
    assert saver.saved == expected
    assert sorted(os.listdir(tmp_path / "runs")) == sorted(os.path.basename(p) for p in expected)


def test_model_checkpoint_save_best_only_writes_improvements(tmp_path):
    snap = Snapshots()
    saver = ModelCheckpoint(tmp_path / "best-{epoch}.nnfit", monitor="train_loss", save_best_only=True)
    fitted = nf.setup(Net, loss="mse", optimizer="sgd").set_opt_hparams(lr=0.3).fit(
        (X, Y), epochs=8, seed=3, verbose=False, callbacks=[saver, snap]
    )
    train = {e: v for s, m, e, v in fitted.records if s == "train" and m == "loss"}
    improved, best = [], float("inf")
    for epoch in sorted(train):
        if train[epoch] < best:
            best = train[epoch]
            improved.append(epoch)
    assert improved != list(train)  # the high learning rate makes some epochs worse
    assert saver.saved == [str(tmp_path / f"best-{e}.nnfit") for e in improved]
    assert saver.best_path == saver.saved[-1]
    last = checkpoints.read_checkpoint(saver.best_path)
    assert same(last["model"], snap.by_epoch[improved[-1]])


def test_model_checkpoint_monitor_defaults_to_train_loss_without_validation(tmp_path):
    saver = ModelCheckpoint(tmp_path / "{monitor:.6f}.nnfit")
    fitted = fit([saver], epochs=1, valid_data=None)
    train = [v for s, m, e, v in fitted.records if s == "train" and m == "loss"]
    assert os.listdir(tmp_path) == [f"{train[0]:.6f}.nnfit"]


def test_model_checkpoint_rejects_a_template_it_cannot_fill():
    with pytest.raises(ArgumentError) as error:
        ModelCheckpoint("model-{valid_loss}.nnfit")
    assert str(error.value) == (
        "The path template 'model-{valid_loss}.nnfit' cannot be filled (KeyError: 'valid_loss'); it may use "
        "{epoch} and {monitor}, e.g. 'epoch-{epoch:02d}-{monitor:.3f}.nnfit'."
    )


def test_model_checkpoint_unknown_monitor_names_the_metrics(tmp_path):
    with pytest.raises(ArgumentError) as error:
        fit([ModelCheckpoint(tmp_path / "x.nnfit", monitor="valid_mae")], epochs=1)
    assert "'valid_mae'" in str(error.value) and "train_loss, valid_loss" in str(error.value)


# ---------------------------------------------------------------------- KeepBestModel
def test_keep_best_model_ends_with_the_best_epochs_weights():
    snap = Snapshots()
    best = KeepBestModel()
    fitted = nf.setup(Net, loss="mse", optimizer="adam").set_opt_hparams(lr=0.3).fit(
        (X, Y), epochs=8, seed=3, valid_data=0.25, verbose=False, callbacks=[best, snap]
    )
    losses = valid_losses(fitted)
    winner = min(losses, key=lambda e: (losses[e], e))
    assert winner != 8, "the test needs a fit whose last epoch is not its best"
    assert best.best_epoch == winner and best.best_value == losses[winner]
    assert same(weights(fitted.model), snap.by_epoch[winner])


def test_keep_best_model_rejects_a_bad_mode():
    with pytest.raises(ArgumentError) as error:
        KeepBestModel(mode="lowest")
    assert str(error.value) == "mode must be 'auto', 'min' or 'max', not 'lowest'."


# ---------------------------------------------------------------------- Interrupt
class CtrlC(Callback):
    """Presses Ctrl-C (a real SIGINT) after a given batch and remembers the weights then."""

    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, ctx):
        if ctx.epoch + 1 == self.epoch and ctx.iter + 1 == self.batch:
            self.weights = weights(ctx.model)
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupt_returns_the_partial_model_with_a_warning():
    ctrl_c = CtrlC(epoch=3, batch=2)
    with pytest.warns(InterruptedWarning) as caught:
        fitted = fit([Interrupt(), ctrl_c], epochs=10)
    assert [str(w.message) for w in caught] == [
        "Training was interrupted in epoch 3, batch 2; the model is returned as it was then (2 complete epochs)."
    ]
    assert fitted.epochs_run == 2
    assert {row[2] for row in fitted.records} == {1, 2}
    assert same(weights(fitted.model), ctrl_c.weights)
    assert fitted.predict(X[:3]).shape == (3, 1)


def test_without_interrupt_ctrl_c_raises():
    with pytest.raises(KeyboardInterrupt):
        fit([CtrlC(epoch=1, batch=1)], epochs=3)


# ---------------------------------------------------------------------- AutoResume
def test_auto_resume_after_a_crash_is_bit_identical(tmp_path):
    reference = fit([EarlyStopping("valid_loss", patience=100)], epochs=7)
    with pytest.raises(TrainingError, match="power cut"):
        fit([AutoResume(tmp_path / "state"), Crash(epoch=4), EarlyStopping("valid_loss", patience=100)], epochs=7)
    assert checkpoints.read_checkpoint(tmp_path / "state" / "checkpoint.nnfit")["epoch"] == 4
    resume = AutoResume(tmp_path / "state")
    stop = EarlyStopping("valid_loss", patience=100)
    resumed = fit([resume, stop], epochs=7)
    assert resume.resumed_from == 4
    assert same(weights(resumed.model), weights(reference.model))
    assert resumed.records == reference.records and resumed.epochs_run == 7
    assert stop.best == reference.callbacks[0].best
    assert os.listdir(tmp_path / "state") == []  # deleted after the fit ended normally


def test_auto_resume_trains_on_when_epochs_grow_and_removes_stale_temporaries(tmp_path):
    reference = fit(epochs=6)
    with pytest.raises(TrainingError):
        fit([AutoResume(tmp_path), Crash(epoch=4)], epochs=4)
    stale = tmp_path / ".checkpoint.nnfit.abc123.tmp"
    stale.write_bytes(b"half a file")
    resumed = fit([AutoResume(tmp_path)], epochs=6)
    assert same(weights(resumed.model), weights(reference.model))
    assert os.listdir(tmp_path) == []


def test_auto_resume_keeps_a_fit_that_early_stopping_ended(tmp_path):
    stop = EarlyStopping("valid_loss", patience=1, min_delta=10.0)
    with pytest.raises(TrainingError):
        fit([stop, AutoResume(tmp_path), Crash(epoch=2)], epochs=(1, 9))
    resumed = fit([EarlyStopping("valid_loss", patience=1, min_delta=10.0), AutoResume(tmp_path)], epochs=(1, 9))
    assert resumed.epochs_run == 2
    assert max(row[2] for row in resumed.records) == 2


def test_auto_resume_keeps_its_checkpoint_after_ctrl_c(tmp_path):
    with pytest.warns(InterruptedWarning):
        fit([AutoResume(tmp_path), Interrupt(), CtrlC(epoch=3, batch=1)], epochs=5)
    assert checkpoints.read_checkpoint(tmp_path / "checkpoint.nnfit")["epoch"] == 2


def test_auto_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    with pytest.raises(TrainingError):
        fit([AutoResume(tmp_path), Crash(epoch=1)], epochs=3)
    wide = nf.setup(Net, loss="mse").set_hparams(width=8)
    with pytest.raises(ModelFileError) as error:
        wide.fit((X, Y), epochs=3, seed=3, verbose=False, callbacks=[AutoResume(tmp_path)])
    message = str(error.value)
    assert message.startswith(
        f"The checkpoint {str(tmp_path / 'checkpoint.nnfit')!r} does not match this fit (it was written for "
        f"{Net.__module__}.Net): Error(s) in loading state_dict for Net:"
    )
    assert message.endswith("Delete it, or resume with the same module, optimizer and callbacks.")


def test_auto_resume_needs_a_folder(tmp_path):
    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(ArgumentError) as error:
        fit([AutoResume(tmp_path / "state")], epochs=1)
    assert str(error.value) == f"AutoResume needs a folder, but {str(tmp_path / 'state')!r} is a file."
    with pytest.raises(ArgumentError) as error:
        AutoResume(tmp_path, every=0)
    assert str(error.value) == "every must be a positive whole number of epochs, not 0."


def test_checkpoint_callbacks_are_reexported_without_an_import_cycle():
    code = "import nnfit.checkpoints, nnfit.callbacks as c; print(c.AutoResume is nnfit.checkpoints.AutoResume)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
    assert nf.callbacks.ModelCheckpoint is checkpoints.ModelCheckpoint


# ---------------------------------------------------------------------- the divergence guard
class EpochStart(Callback):
    weight = -5000

    def __init__(self):
        self.by_epoch = {}

    def on_epoch_begin(self, ctx):
        self.by_epoch[ctx.epoch + 1] = weights(ctx.model)


class BatchLosses(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, ctx):
        self.losses.append((ctx.epoch + 1, ctx.iter + 1, float(ctx.loss.detach())))


def test_a_diverging_fit_stops_naming_where_and_keeps_finite_weights():
    starts, losses = EpochStart(), BatchLosses()
    big = Y * 1000
    diverging = nf.setup(nn.Linear, loss="mse", optimizer="sgd").set_hparams(in_features=5, out_features=1)
    with pytest.raises(DivergenceError) as error:
        diverging.set_opt_hparams(lr=2.0).fit((X, big), epochs=20, seed=1, verbose=False, callbacks=[starts, losses])
    bad = next(i for i, (_, _, loss) in enumerate(losses.losses) if not torch.isfinite(torch.tensor(loss)))
    epoch, batch, value = losses.losses[bad]
    last = losses.losses[bad - 1][2]
    assert isinstance(error.value, TrainingError)
    assert (error.value.epoch, error.value.batch) == (epoch, batch)
    assert error.value.last_finite_loss == pytest.approx(last, rel=1e-6)
    before = losses.losses[bad - 1]
    assert str(error.value).startswith(
        f"The training loss became {value} in epoch {epoch}, batch {batch}; the last finite loss was {last:.6g}, in epoch"
    )
    assert str(error.value).endswith(
        f"Training stopped and the model keeps its weights from the start of epoch {epoch}. Try a lower learning "
        "rate (e.g. lr=0.2 instead of 2), or scale the response (standardize y, e.g. "
        "nf.Design(..., scale_response=True)) and the predictors."
    )
    assert f"in epoch {before[0]}, batch {before[1]}. Training stopped" in str(error.value)
    assert same(weights(error.value.model), starts.by_epoch[epoch])


def test_non_finite_training_data_is_refused_before_training():
    bad = X.clone()
    bad[7, 2] = float("nan")
    with pytest.raises(DataError) as error:
        learner().fit((bad, Y), epochs=1, verbose=False)
    assert str(error.value) == (
        "X in the data has 1 NaN or infinite value(s), the first in row 7; remove or impute them before fitting "
        "(nf.Design and nf.mlp leave such rows out)."
    )
    y = Y.clone()
    y[3] = float("inf")
    with pytest.raises(DataError, match=r"^y in the data has 1 NaN or infinite value\(s\), the first in row 3;"):
        learner().fit((X, y), epochs=1, verbose=False)


def test_the_guard_reads_nothing_from_the_device(monkeypatch):
    """The guard adds no device-to-host read: a fit makes as many as one without it."""

    def reads(guarded):
        calls = []
        if not guarded:
            monkeypatch.setattr(nf.learner, "DivergenceGuard", Callback)
        for name in ("item", "tolist", "__bool__", "__float__", "cpu"):
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, **k: calls.append(1) or _real(self, *a, **k))
        learner().fit((X, Y), epochs=4, seed=1, threads=1, verbose=False)
        monkeypatch.undo()
        return len(calls)

    assert reads(guarded=True) == reads(guarded=False)


def test_auto_resume_restores_a_learning_rate_scheduler(tmp_path):
    def halving():
        return nf.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)

    reference = fit([halving()], epochs=6)
    with pytest.raises(TrainingError):
        fit([halving(), AutoResume(tmp_path), Crash(epoch=3)], epochs=6)
    resumed = fit([halving(), AutoResume(tmp_path)], epochs=6)
    assert resumed.model is not reference.model
    assert same(weights(resumed.model), weights(reference.model))
    assert resumed.ctx.opt.param_groups[0]["lr"] == reference.ctx.opt.param_groups[0]["lr"] == 0.01 * 0.5**3


def test_auto_resume_with_the_formula_one_liner(penguins, tmp_path):
    def mass(callbacks):
        return nf.mlp("body_mass_g ~ . - year", data=penguins.dropna(), hidden=8, dropout=0.3, epochs=5, valid=0.2,
                      seed=2, verbose=False, callbacks=callbacks)

    reference = mass([])
    with pytest.raises(TrainingError):
        mass([AutoResume(tmp_path), Crash(epoch=2)])
    resumed = mass([AutoResume(tmp_path)])
    assert same(weights(resumed.model), weights(reference.model))
    assert resumed.history == reference.history
    assert resumed.predict(penguins).equals(reference.predict(penguins))


def test_auto_resume_refuses_corrupted_and_mid_epoch_checkpoints(tmp_path):
    with pytest.raises(TrainingError):
        fit([AutoResume(tmp_path), Crash(epoch=1)], epochs=3)
    path = tmp_path / "checkpoint.nnfit"
    tensors, metadata = files.read(path)
    metadata["state"]["batch"] = 3
    files.write(path, tensors, metadata)
    with pytest.raises(ModelFileError) as error:
        fit([AutoResume(tmp_path)], epochs=3)
    assert str(error.value) == (
        f"The checkpoint {str(path)!r} was taken in the middle of an epoch, which this nnfit cannot resume; "
        "upgrade nnfit, or delete it to start again."
    )
    payload = bytearray(path.read_bytes())
    payload[-1] ^= 0x01
    path.write_bytes(bytes(payload))
    with pytest.raises(ModelFileError) as error:
        fit([AutoResume(tmp_path)], epochs=3)
    assert str(error.value) == f"{str(path)!r} is corrupted: its checksum does not match its contents."


def test_the_guard_goes_back_past_weights_that_broke_without_a_bad_loss():
    class BreakAfterEpoch2(Callback):
        def on_train_end(self, ctx):
            if ctx.epoch + 1 == 2:
                with torch.no_grad():
                    ctx.model.layers[0].weight[0, 0] = float("nan")  # as if the last step went wrong

    starts = EpochStart()
    with pytest.raises(DivergenceError) as error:
        fit([starts, BreakAfterEpoch2()], epochs=5)
    assert (error.value.epoch, error.value.batch) == (3, 1)
    assert "the last finite loss was" in str(error.value) and "in epoch 2, batch 5." in str(error.value)
    assert "the model keeps its weights from the start of epoch 2." in str(error.value)
    assert same(weights(error.value.model), starts.by_epoch[2])

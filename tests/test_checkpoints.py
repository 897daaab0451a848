"""checkpoints.py: checkpoint files, ModelCheckpoint, KeepBestModel, Interrupt, AutoResume
and the divergence guard."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit import files
from nnfit.train import checkpoints, divergence
from nnfit.train import learner as learner_module
from nnfit.train.callbacks import AutoResume, Callback, EarlyStopping, Interrupt, KeepBestModel, ModelCheckpoint
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


def test_keep_best_model_and_model_checkpoint_states_round_trip(tmp_path):
    best, saver = KeepBestModel(), ModelCheckpoint(tmp_path / "e{epoch}.nnfit", save_best_only=True)
    fitted = fit([best, saver], epochs=4)
    losses = valid_losses(fitted)
    winner = min(losses, key=lambda e: (losses[e], e))
    assert set(best.state_dict()) == {"best", "best_epoch", "weights", "kept"}
    assert {key: saver.state_dict()[key] for key in ("best", "best_epoch", "best_path")} == {
        "best": losses[winner], "best_epoch": winner, "best_path": str(tmp_path / f"e{winner}.nnfit")}
    again_best, again_saver = KeepBestModel(), ModelCheckpoint(tmp_path / "e{epoch}.nnfit", save_best_only=True)
    again_best.load_state_dict(best.state_dict())
    again_saver.load_state_dict(saver.state_dict())
    assert (again_best.best_epoch, again_best.best_value) == (winner, losses[winner])
    assert (again_saver.best_epoch, again_saver.saved) == (winner, saver.saved)
    assert same(again_best.state_dict()["weights"], weights(fitted.model))


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


def test_auto_resume_trains_on_when_epochs_grow_with_extend_and_removes_stale_temporaries(tmp_path):
    reference = fit(epochs=6)
    with pytest.raises(TrainingError):
        fit([AutoResume(tmp_path), Crash(epoch=4)], epochs=4)
    before = (tmp_path / "checkpoint.nnfit").read_bytes()
    with pytest.raises(ModelFileError) as error:
        fit([AutoResume(tmp_path)], epochs=6)
    assert str(error.value) == (
        f"The checkpoint {str(tmp_path / 'checkpoint.nnfit')!r} belongs to another run: epochs changed from 4 to 6; "
        "delete it, give AutoResume another folder, or pass AutoResume(..., on_mismatch='restart') to set it aside "
        "and start afresh."
    )
    assert (tmp_path / "checkpoint.nnfit").read_bytes() == before
    stale = tmp_path / ".checkpoint.nnfit.abc123.tmp"
    stale.write_bytes(b"half a file")
    resumed = fit([AutoResume(tmp_path, extend=True)], epochs=6)
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
    before = (tmp_path / "checkpoint.nnfit").read_bytes()
    wide = nf.setup(Net, loss="mse", optimizer="adam").set_hparams(width=8).set_opt_hparams(lr=0.01)
    with pytest.raises(ModelFileError) as error:
        wide.fit((X, Y), epochs=3, seed=3, valid_data=0.25, verbose=False, callbacks=[AutoResume(tmp_path)])
    assert str(error.value) == (
        f"The checkpoint {str(tmp_path / 'checkpoint.nnfit')!r} belongs to another run: width changed from (none) "
        "to 8, parameter shapes from 16x5, 16, 1x16, 1 to 8x5, 8, 1x8, 1; delete it, give AutoResume another folder, "
        "or pass AutoResume(..., on_mismatch='restart') to set it aside and start afresh."
    )
    assert (tmp_path / "checkpoint.nnfit").read_bytes() == before  # the other run's checkpoint is untouched


def test_auto_resume_needs_a_folder(tmp_path):
    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(ArgumentError) as error:
        fit([AutoResume(tmp_path / "state")], epochs=1)
    assert str(error.value) == f"AutoResume needs a folder, but {str(tmp_path / 'state')!r} is a file."
    with pytest.raises(ArgumentError) as error:
        AutoResume(tmp_path, every=0)
    assert str(error.value) == "every must be a positive whole number of epochs, not 0."


def test_checkpoint_callbacks_are_reexported_without_an_import_cycle():
    code = "import nnfit.train.checkpoints, nnfit.train.callbacks as c; print(c.AutoResume is nnfit.train.checkpoints.AutoResume)"
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


def test_a_fit_whose_loss_grows_ten_thousand_fold_stops_naming_where_and_keeps_its_weights():
    starts, losses = EpochStart(), BatchLosses()
    big = Y * 1000
    diverging = nf.setup(nn.Linear, loss="mse", optimizer="sgd").set_hparams(in_features=5, out_features=1)
    with pytest.raises(DivergenceError) as error:
        diverging.set_opt_hparams(lr=2.0).fit((X, big), epochs=20, seed=1, verbose=False, callbacks=[starts, losses])
    untrained = losses.losses[0][2]
    bad = next(i for i, (_, _, loss) in enumerate(losses.losses) if loss > divergence.GROWTH * untrained)
    epoch, batch, value = losses.losses[bad]
    before = losses.losses[bad - 1]
    assert all(torch.isfinite(torch.tensor(loss)) for _, _, loss in losses.losses)  # grew, never went non-finite
    assert (error.value.epoch, error.value.batch) == (epoch, batch)
    assert error.value.last_finite_loss == pytest.approx(before[2], rel=1e-6)
    assert str(error.value) == (
        f"The training loss grew to {value:.4g} in epoch {epoch}, batch {batch}, more than 10,000 times the untrained "
        f"network's loss ({untrained:.4g}); the loss before it was {before[2]:.6g}, in epoch {before[0]}, batch "
        f"{before[1]}. Training stopped and the model keeps its weights from the start of epoch {epoch}. Try a lower "
        "learning rate (e.g. lr=0.2 instead of 2), or scale the response (standardize y, e.g. "
        "nf.Design(..., scale_response=True)) and the predictors."
    )
    assert same(weights(error.value.model), starts.by_epoch[epoch])


class PoisonBatch(Callback):
    """Makes one batch's input infinite, so its loss is NaN and the step breaks the weights."""

    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_train_batch_begin(self, ctx):
        if (ctx.epoch + 1, ctx.iter + 1) == self.at:
            ctx.input = ctx.input * float("inf")


def test_a_fit_whose_loss_becomes_nan_stops_naming_where_and_keeps_finite_weights():
    starts, losses = EpochStart(), BatchLosses()
    with pytest.raises(DivergenceError) as error:
        fit([starts, losses, PoisonBatch(epoch=2, batch=3)], epochs=5)
    at = [(epoch, batch) for epoch, batch, _ in losses.losses].index((2, 3))
    last = losses.losses[at - 1]
    assert last[:2] == (2, 2) and torch.isnan(torch.tensor(losses.losses[at][2]))
    assert isinstance(error.value, TrainingError)
    assert (error.value.epoch, error.value.batch) == (2, 3)
    assert error.value.last_finite_loss == pytest.approx(last[2], rel=1e-6)
    assert str(error.value) == (
        f"The training loss became nan in epoch 2, batch 3; the last finite loss was {last[2]:.6g}, in epoch 2, "
        "batch 2. Training stopped and the model keeps its weights from the start of epoch 2. Try a lower learning "
        "rate (e.g. lr=0.001 instead of 0.01), or scale the response (standardize y, e.g. "
        "nf.Design(..., scale_response=True)) and the predictors."
    )
    assert same(weights(error.value.model), starts.by_epoch[2])


def test_the_growth_threshold_is_ten_thousand_times_the_untrained_loss():
    rule = divergence.Divergence(n_models=3)
    rule.first(torch.tensor([2.0, 0.0, -1.0]))
    assert rule.check([2e4, 1e9, 1e9]) == []  # 10,000 x 2 is not past it; a reference <= 0 checks finiteness only
    assert rule.check([2.0001e4, float("nan"), float("inf")]) == [0, 1, 2]
    assert rule.reference == [2.0, 0.0, -1.0]
    assert divergence.GROWTH == 1e4


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


def test_the_guard_reads_from_the_device_once_per_fit(monkeypatch):
    """The guard's one device-to-host read is the untrained loss, at the end of the first
    epoch; it adds none per epoch or per batch."""

    def reads(guarded, epochs):
        calls = []
        if not guarded:
            monkeypatch.setattr(learner_module, "DivergenceGuard", Callback)
        for name in ("item", "tolist", "__bool__", "__float__", "cpu"):
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, **k: calls.append(1) or _real(self, *a, **k))
        learner().fit((X, Y), epochs=epochs, seed=1, threads=1, verbose=False)
        monkeypatch.undo()
        return len(calls)

    assert reads(guarded=True, epochs=4) == reads(guarded=False, epochs=4) + 1
    assert reads(guarded=True, epochs=8) == reads(guarded=False, epochs=8) + 1


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
    crash = Crash(epoch=2)
    crash.needs_autograd = False  # acts between epochs: the fit stays on the closed-form path, as resumed
    with pytest.raises(TrainingError):
        mass([AutoResume(tmp_path), crash])
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



def test_the_guard_of_a_closed_form_fit_copies_the_one_flat_buffer_and_goes_back_to_it():
    from nnfit.train.divergence import DivergenceGuard

    class BreakAfterEpoch2(Callback):
        needs_autograd = False  # keeps the closed-form step

        def on_train_end(self, ctx):
            if ctx.epoch + 1 == 2:
                guard = next(c for c in ctx.hooks.callbacks if isinstance(c, DivergenceGuard))
                self.seen = type(ctx.opt).__name__, guard._flat[0] is ctx.opt.flat_params
                with torch.no_grad():
                    ctx.opt.flat_params[0] = float("nan")  # as if the last step went wrong

    class Starts(EpochStart):
        needs_autograd = False

    starts, breaking = Starts(), BreakAfterEpoch2()
    learner = nf.setup(nf.MLP, loss="mse", optimizer="sgd").set_hparams(input_size=5, hidden=[4])
    with pytest.raises(DivergenceError) as error:
        learner.fit((X, Y), epochs=5, seed=1, verbose=False, callbacks=[starts, breaking])
    assert breaking.seen == ("Optimizer", True)  # nnfit's closed-form optimizer: the weights are its flat buffer
    assert "the model keeps its weights from the start of epoch 2." in str(error.value)
    assert same(weights(error.value.model), starts.by_epoch[2])

# ---------------------------------------------------------------------- AutoResume: only its own run
def crashed_run(folder, **kwargs):
    """A fit that crashes after epoch 2, leaving its checkpoint; returns the checkpoint's bytes."""
    with pytest.raises(TrainingError, match="power cut"):
        fit([AutoResume(folder), Crash(epoch=2)], **kwargs)
    return (folder / "checkpoint.nnfit").read_bytes()


def refusal(path, changes):
    return (
        f"The checkpoint {str(path / 'checkpoint.nnfit')!r} belongs to another run: {changes}; delete it, give "
        "AutoResume another folder, or pass AutoResume(..., on_mismatch='restart') to set it aside and start afresh."
    )


def edited(tensor, row, by):
    out = tensor.clone()
    out[row] += by
    return out


@pytest.mark.parametrize(
    "rerun, changes",
    [
        (lambda folder: fit([AutoResume(folder)], seed=4), "seed changed from 3 to 4"),
        (lambda folder: learner(lr=0.001).fit((X, Y), epochs=6, seed=3, valid_data=0.25, verbose=False,
                                               callbacks=[AutoResume(folder)]), "lr changed from 0.01 to 0.001"),
        (lambda folder: fit([AutoResume(folder)], batch_size=16), "batch_size changed from 32 to 16"),
        (lambda folder: fit([AutoResume(folder)], valid_data=0.5), "valid_data changed from 0.25 to 0.5"),
        (lambda folder: fit([AutoResume(folder)], epochs=(3, 6)), "min_epochs changed from 1 to 3"),
        (lambda folder: learner().fit((X, edited(Y, 17, 0.5)), epochs=6, seed=3, valid_data=0.25, verbose=False,
                                      callbacks=[AutoResume(folder)]),
         "data hash changed from {old} to {new}"),
        (lambda folder: learner().fit((X[:150], Y[:150]), epochs=6, seed=3, valid_data=0.25, verbose=False,
                                      callbacks=[AutoResume(folder)]),
         "data shape changed from X float32 (200, 5), y float32 (200, 1) to X float32 (150, 5), y float32 (150, 1), "
         "data hash from {old} to {new}"),
        (lambda folder: nf.setup(Net, loss="mse", optimizer="rmsprop").set_opt_hparams(lr=0.01).fit(
            (X, Y), epochs=6, seed=3, valid_data=0.25, verbose=False, callbacks=[AutoResume(folder)]),
         "optimizer changed from Adam to RMSprop"),
    ],
    ids=["seed", "lr", "batch_size", "valid_data", "min_epochs", "one_value_of_y", "rows", "optimizer"],
)
def test_auto_resume_refuses_another_runs_checkpoint_naming_what_changed(tmp_path, rerun, changes):
    before = crashed_run(tmp_path)
    with pytest.raises(ModelFileError) as error:
        rerun(tmp_path)
    if "{old}" in changes:
        old = checkpoints.read_checkpoint(tmp_path / "checkpoint.nnfit")["run"]["data hash"]
        new = str(error.value).split(f"from {old} to ")[1][:16]
        changes = changes.format(old=old, new=new)
    assert str(error.value) == refusal(tmp_path, changes)
    assert (tmp_path / "checkpoint.nnfit").read_bytes() == before  # the other run's checkpoint is untouched
    assert os.listdir(tmp_path) == ["checkpoint.nnfit"]


def test_auto_resume_of_the_same_run_with_a_new_data_object_resumes(tmp_path):
    reference = fit(epochs=6)
    crashed_run(tmp_path)
    resume = AutoResume(tmp_path)
    resumed = learner().fit((X.clone(), Y.clone()), epochs=6, seed=3, valid_data=0.25, verbose=False, callbacks=[resume])
    assert resume.resumed_from == 2
    assert same(weights(resumed.model), weights(reference.model))


def test_auto_resume_restart_sets_another_runs_checkpoint_aside_and_starts_afresh(tmp_path):
    before = crashed_run(tmp_path)
    fresh = fit(seed=4)
    resume = AutoResume(tmp_path, on_mismatch="restart")
    with pytest.warns(UserWarning) as caught:
        restarted = fit([resume], seed=4)
    aside = tmp_path / "checkpoint-other-run-1.nnfit"
    assert [str(w.message) for w in caught] == [
        f"The checkpoint {str(tmp_path / 'checkpoint.nnfit')!r} belongs to another run (seed changed from 3 to 4); "
        f"it was set aside as {str(aside)!r} and this fit starts afresh."
    ]
    assert resume.set_aside == aside and resume.resumed_from is None
    assert aside.read_bytes() == before  # renamed, never deleted
    assert os.listdir(tmp_path) == ["checkpoint-other-run-1.nnfit"]
    assert same(weights(restarted.model), weights(fresh.model))


def test_auto_resume_refuses_a_checkpoint_without_a_record_of_its_run(tmp_path):
    crashed_run(tmp_path)
    path = tmp_path / "checkpoint.nnfit"
    tensors, metadata = files.read(path)
    del metadata["state"]["run"]
    files.write(path, tensors, metadata)
    with pytest.raises(ModelFileError) as error:
        fit([AutoResume(tmp_path)])
    assert str(error.value) == refusal(
        tmp_path, "it was written without a record of its run (by an older nnfit), so it cannot be told from another run's"
    )


def test_auto_resume_refuses_a_formula_change_in_nf_mlp(penguins, tmp_path):
    data = penguins.dropna()

    def mass(formula, callbacks):
        return nf.mlp(formula, data=data, hidden=4, epochs=4, seed=2, verbose=False, callbacks=callbacks)

    with pytest.raises(TrainingError):
        mass("body_mass_g ~ . - year", [AutoResume(tmp_path), Crash(epoch=2)])
    before = (tmp_path / "checkpoint.nnfit").read_bytes()
    with pytest.raises(ModelFileError) as error:
        mass("body_mass_g ~ . - year - sex", [AutoResume(tmp_path)])
    old, new = (checkpoints.read_checkpoint(tmp_path / "checkpoint.nnfit")["run"]["data hash"],
                str(error.value).split(" data hash from ")[1].split(" to ")[1][:16])
    assert str(error.value) == refusal(
        tmp_path,
        "input_size changed from 8 to 7, parameter shapes from 4x8, 4, 1x4, 1 to 4x7, 4, 1x4, 1, formula from "
        "'body_mass_g ~ . - year' to 'body_mass_g ~ . - year - sex', data shape from X float32 (333, 8), "
        f"y float32 (333, 1) to X float32 (333, 7), y float32 (333, 1), data hash from {old} to {new}",
    )
    assert (tmp_path / "checkpoint.nnfit").read_bytes() == before


def test_auto_resume_options_are_checked():
    with pytest.raises(ArgumentError) as error:
        AutoResume("state", on_mismatch="ignore")
    assert str(error.value) == (
        "on_mismatch must be 'error' (refuse another run's checkpoint) or 'restart' (set it aside and start "
        "afresh), not 'ignore'."
    )
    with pytest.raises(nf.errors.ArgumentTypeError) as error:
        AutoResume(3)
    assert str(error.value) == "path must be a folder name such as 'mass-run', not 3."


def test_the_default_folder_belongs_to_the_script(tmp_path, monkeypatch):
    """Two scripts (even of one name) get two folders; the second never touches the first's checkpoint."""
    import hashlib

    monkeypatch.chdir(tmp_path)
    main = sys.modules["__main__"]
    first, second = tmp_path / "a" / "train.py", tmp_path / "b" / "train.py"
    monkeypatch.setattr(main, "__file__", str(first), raising=False)
    folder = checkpoints.default_folder()
    assert folder == checkpoints.Path("nnfit-resume") / f"train-{hashlib.sha256(str(first).encode()).hexdigest()[:8]}"
    with pytest.raises(TrainingError):
        fit([AutoResume(), Crash(epoch=2)])
    before = (folder / "checkpoint.nnfit").read_bytes()
    monkeypatch.setattr(main, "__file__", str(second))
    other = AutoResume()
    assert other.path != folder and other.path.parent == folder.parent
    fit([other])
    assert other.resumed_from is None
    assert (folder / "checkpoint.nnfit").read_bytes() == before
    assert sorted(os.listdir("nnfit-resume")) == [folder.name]  # the second's own folder is gone, empty
    monkeypatch.setattr(main, "__file__", str(first))
    resume = AutoResume()
    fit([resume])
    assert resume.resumed_from == 2
    assert not os.path.exists("nnfit-resume")  # emptied and removed at the end
    monkeypatch.delattr(main, "__file__")
    assert checkpoints.default_folder() == checkpoints.Path("nnfit-resume") / "interactive"


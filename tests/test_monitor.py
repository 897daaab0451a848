"""monitor.py: one rule for which way is better, shared by EarlyStopping, ModelCheckpoint,
KeepBestModel and ReduceLROnPlateau; the fast path's test of a callback by what it says."""

import os

import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit.train import learner as learner_module
from nnfit.train import fused
from nnfit.train.callbacks import AutoResume, Callback, EarlyStopping, KeepBestModel, LRScheduler, ModelCheckpoint
from nnfit.errors import ArgumentError, TrainingError
from nnfit.train.monitor import Monitor

g = torch.Generator().manual_seed(0)
X = torch.randn(200, 5, generator=g)
Y = X @ torch.tensor([[1.0], [-2.0], [0.5], [0.0], [1.5]]) + 0.1 * torch.randn(200, 1, generator=g)


class Scripted(nf.metrics.Metric):
    """A metric whose value in epoch e is values[e - 1] (copied per set, so each set counts alone)."""

    name = "score"

    def __init__(self, values, maximize=False):
        self.values, self.maximize, self.calls = list(values), maximize, 0

    def reset(self):
        pass

    def update(self, pred, target):
        pass

    def compute(self):
        self.calls += 1
        return torch.tensor(self.values[self.calls - 1], dtype=torch.float64)


class Undeclared:
    """A metric by the protocol (reset/update/compute, name) that does not say which way is better."""

    name = "auc"  # a name that once made the monitors guess 'max'

    def reset(self):
        pass

    def update(self, pred, target):
        pass

    def compute(self):
        return torch.tensor(0.5)


class Snapshots(Callback):
    """The weights at the end of each epoch, after every other callback."""

    weight = 5000

    def __init__(self):
        self.by_epoch = {}

    def on_epoch_end(self, ctx):
        self.by_epoch[ctx.epoch + 1] = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}


class Crash(Callback):
    weight = 5000

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, ctx):
        if ctx.epoch + 1 == self.epoch:
            raise RuntimeError("power cut")


def same(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def linear(metrics=()):
    return (nf.setup(nn.Linear, loss="mse", optimizer="sgd", metrics=list(metrics))
            .set_hparams(in_features=5, out_features=1).set_opt_hparams(lr=0.05))


def fit(callbacks, metrics=(), epochs=5, **options):
    return linear(metrics).fit((X, Y), epochs=epochs, callbacks=list(callbacks), seed=1, verbose=False, **options)


# --- every monitor asks the metric ----------------------------------------------------------

def test_a_maximized_custom_metric_is_read_the_same_way_by_every_monitor(tmp_path):
    # The case: a custom metric with maximize = True rising from 2 to 6 over 5 epochs.
    stop = EarlyStopping("train_score", patience=10)
    best = KeepBestModel("train_score")
    saver = ModelCheckpoint(tmp_path / "e{epoch}.nnfit", monitor="train_score", save_best_only=True)
    snap = Snapshots()
    fitted = fit([stop, best, saver, snap], metrics=[Scripted([2, 3, 4, 5, 6], maximize=True)])
    assert [value for _, name, _, value in fitted.records if name == "score"] == [2, 3, 4, 5, 6]
    assert (stop.mode_, best.mode_, saver.mode_) == ("max", "max", "max")
    assert stop.best_epoch == best.best_epoch == saver.best_epoch == 5
    assert best.best_value == stop.best == saver.best == 6
    assert saver.saved == [str(tmp_path / f"e{epoch}.nnfit") for epoch in (1, 2, 3, 4, 5)]
    assert same(fitted.model.state_dict(), snap.by_epoch[5])


def test_the_best_epoch_need_not_be_the_last(tmp_path):
    stop = EarlyStopping("train_score", patience=10)
    best = KeepBestModel("train_score")
    saver = ModelCheckpoint(tmp_path / "e{epoch}.nnfit", monitor="train_score", save_best_only=True)
    plateau = LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="train_score", patience=0, factor=0.5)
    snap = Snapshots()
    fitted = fit([stop, best, saver, plateau, snap], metrics=[Scripted([2, 3, 6, 4, 5], maximize=True)])
    assert stop.best_epoch == best.best_epoch == saver.best_epoch == 3
    assert saver.best_path == str(tmp_path / "e3.nnfit") and plateau.scheduler_.mode == "max"
    assert fitted.ctx.opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**2)  # epochs 4 and 5 were no better
    assert same(fitted.model.state_dict(), snap.by_epoch[3])


def test_losses_are_minimized_and_metrics_say_which_way():
    watched = [KeepBestModel("train_loss"), KeepBestModel(), KeepBestModel("train_mae"), KeepBestModel("valid_r2"),
               EarlyStopping("valid_score", patience=50)]
    fit(watched, metrics=["mae", "r2", Scripted([1, 2], maximize=True)], epochs=2, valid_data=0.25)
    assert [(m.monitor_, m.mode_) for m in watched] == [
        ("train_loss", "min"), ("valid_loss", "min"), ("train_mae", "min"), ("valid_r2", "max"), ("valid_score", "max")]


def test_an_explicit_mode_wins_over_the_metric():
    best = KeepBestModel("train_score", mode="min")
    fit([best], metrics=[Scripted([2, 3, 6, 4, 5], maximize=True)])
    assert (best.mode_, best.best_epoch, best.best_value) == ("min", 1, 2)


# --- when it cannot tell, it says to pass mode= ---------------------------------------------

@pytest.mark.parametrize(
    "callback, name",
    [
        (lambda folder: EarlyStopping("train_auc"), "EarlyStopping"),
        (lambda folder: KeepBestModel("train_auc"), "KeepBestModel"),
        (lambda folder: ModelCheckpoint(folder / "e{epoch}.nnfit", monitor="train_auc"), "ModelCheckpoint"),
        (lambda folder: LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="train_auc"), "LRScheduler"),
    ],
)
def test_a_metric_that_does_not_say_its_direction_asks_for_mode(tmp_path, callback, name):
    with pytest.raises(ArgumentError) as error:
        fit([callback(tmp_path)], metrics=[Undeclared()], epochs=2)
    assert str(error.value) == (
        f"{name} cannot tell whether a lower or a higher 'train_auc' is better: its metric Undeclared has no "
        "maximize attribute. Pass mode='min' or mode='max'."
    )
    assert os.listdir(tmp_path) == []  # asked before anything was written


def test_with_mode_given_an_undeclared_metric_is_fine():
    best = KeepBestModel("train_auc", mode="max")
    fit([best], metrics=[Undeclared()], epochs=2)
    assert (best.mode_, best.best_epoch) == ("max", 1)  # 0.5 twice: the second is no gain


class LogsGap(Callback):
    """Logs a value of its own, 'train_gap', which neither a loss nor a metric records."""

    weight = -10

    def on_epoch_end(self, ctx):
        ctx.log("train", "gap", float(ctx.epoch))


def test_a_logged_value_is_neither_a_loss_nor_a_metric():
    with pytest.raises(ArgumentError) as error:
        fit([LogsGap(), KeepBestModel("train_gap")], metrics=["mae"], epochs=2, valid_data=0.25)
    assert str(error.value) == (
        "KeepBestModel cannot tell whether a lower or a higher 'train_gap' is better: it is neither a loss nor one "
        "of this fit's metrics (train_mae, valid_mae). Pass mode='min' or mode='max'."
    )
    with pytest.raises(ArgumentError) as error:  # the plateau scheduler is built, so asks, before the first epoch
        fit([LogsGap(), LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="train_gap")], epochs=2)
    assert str(error.value) == (
        "LRScheduler cannot tell whether a lower or a higher 'train_gap' is better: it is neither a loss nor one "
        "of this fit's metrics. Pass mode='min' or mode='max'."
    )
    best = KeepBestModel("train_gap", mode="max")
    fit([LogsGap(), best], epochs=3)
    assert (best.best_epoch, best.best_value) == (3, 2.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda mode: EarlyStopping(mode=mode),
        lambda mode: KeepBestModel(mode=mode),
        lambda mode: ModelCheckpoint("x-{epoch}.nnfit", mode=mode),
        lambda mode: LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, mode=mode),
        lambda mode: Monitor(mode=mode),
    ],
)
def test_a_bad_mode_is_refused_by_every_monitor(make):
    with pytest.raises(ArgumentError) as error:
        make("down")
    assert str(error.value) == "mode must be 'auto', 'min' or 'max', not 'down'."


def test_bad_monitor_and_min_delta_are_refused():
    with pytest.raises(ArgumentError) as error:
        KeepBestModel(monitor=3)
    assert str(error.value) == "monitor must be a name such as 'valid_loss', not 3."
    for bad in (-0.1, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ArgumentError) as error:
            EarlyStopping(min_delta=bad)
        assert str(error.value) == f"min_delta must be a finite number, 0 or more, not {bad!r}."


# --- min_delta, baseline, NaN ---------------------------------------------------------------

@pytest.mark.parametrize(
    "values, maximize, min_delta, bests",
    [
        ([5, 4.8, 4.0, 3.9, 3.6], False, 0.5, [1, 3]),  # 4.8, 3.9 and 3.6 gain less than 0.5 on the best
        ([0.5, 0.55, 0.7, 0.75, 0.9], True, 0.1, [1, 3, 5]),
        ([5, 4.8, 4.0, 3.9, 3.6], False, 0.0, [1, 2, 3, 4, 5]),
        ([5, 5, 5, 4, 4], False, 0.0, [1, 4]),  # equal is no gain
    ],
)
def test_min_delta_is_the_least_gain_that_counts(tmp_path, values, maximize, min_delta, bests):
    saver = ModelCheckpoint(tmp_path / "e{epoch}.nnfit", monitor="train_score", save_best_only=True,
                            min_delta=min_delta)
    best = KeepBestModel("train_score", min_delta=min_delta)
    stop = EarlyStopping("train_score", patience=10, min_delta=min_delta)
    fit([saver, best, stop], metrics=[Scripted(values, maximize)])
    assert saver.saved == [str(tmp_path / f"e{epoch}.nnfit") for epoch in bests]
    assert best.best_epoch == stop.best_epoch == bests[-1]
    assert best.best_value == values[bests[-1] - 1]
    assert stop.wait == len(values) - bests[-1]


def test_a_nan_is_never_a_best():
    best = KeepBestModel("train_score")
    stop = EarlyStopping("train_score", patience=2)
    fit([best, stop], metrics=[Scripted([float("nan"), 3, float("nan"), 2, 2.5])])
    assert (best.best_epoch, best.best_value) == (4, 2)
    assert stop.best_epoch == 4 and stop.stopped_epoch is None


def test_each_fit_starts_afresh():
    best, snap = KeepBestModel("train_score"), Snapshots()
    fit([best], metrics=[Scripted([1, 2, 3])], epochs=3)
    assert (best.best_epoch, best.best_value) == (1, 1)
    again = fit([best, snap], metrics=[Scripted([9, 8, 7])], epochs=3)  # every epoch worse than the first fit's best
    assert (best.best_epoch, best.best_value) == (3, 7)
    assert same(again.model.state_dict(), snap.by_epoch[3])  # this fit's best weights, not the first fit's


# --- the fast path asks the callback --------------------------------------------------------

def fused_path(fit) -> bool:
    return type(fit.fitted.learner) is learner_module.FusedLearner


def test_a_subclass_of_early_stopping_keeps_the_fast_path(lab_split, quiet):
    class Patient(EarlyStopping):
        def on_early_stopping(self, ctx):
            self.said = f"stopped in epoch {ctx.epoch + 1}"

    training, _ = lab_split
    stop = Patient("valid_loss", patience=1, min_delta=1e9)
    fitted = nf.mlp("body_mass_g ~ .", data=training, hidden=5, epochs=10, valid=0.2, seed=1, callbacks=[stop])
    assert fused_path(fitted)
    assert stop.stopped_epoch == 2 and stop.said == "stopped in epoch 2" and stop.best_epoch == 1
    assert max(epoch for _, _, epoch, _ in fitted.history) == 2


def test_a_subclass_that_needs_autograd_says_so(lab_split, quiet):
    class Gradients(EarlyStopping):
        needs_autograd = True

        def on_train_batch_before_step(self, ctx):
            self.norm = float(next(ctx.model.parameters()).grad.norm())

    training, _ = lab_split
    stop = Gradients("valid_loss", patience=5)
    fitted = nf.mlp("body_mass_g ~ .", data=training, hidden=5, epochs=1, valid=0.2, seed=1, callbacks=[stop])
    assert not fused_path(fitted) and stop.norm > 0


def test_the_built_in_callbacks_that_take_the_fast_path_are_those_that_say_so():
    names = ["Progress", "EarlyStopping", "CSVLogger", "TensorBoard", "LRScheduler", "GradientClip", "Mixup",
             "MixedPrecision", "ModelCheckpoint", "KeepBestModel", "Interrupt", "AutoResume"]
    fast = [name for name in names if not getattr(nf.callbacks, name).needs_autograd]
    # between epochs, with weights and optimizer state the closed-form step has too (its optimizer's state_dict)
    assert fast == ["Progress", "EarlyStopping", "CSVLogger", "TensorBoard", "ModelCheckpoint", "KeepBestModel",
                    "Interrupt", "AutoResume"]
    learner = nf.setup(nf.MLP, loss="mse", optimizer="adam").set_hparams(input_size=3, hidden=4)
    for callback in (nf.callbacks.Progress(), EarlyStopping(), nf.callbacks.CSVLogger("h.csv"), KeepBestModel(),
                     ModelCheckpoint("c-{epoch}.nnfit")):
        assert type(learner_module.learner_for(learner, [callback])) is learner_module.FusedLearner
    for callback in (nf.callbacks.GradientClip(),
                     LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1), "not a callback"):
        assert learner_module.learner_for(learner, [callback]) is learner


# --- the monitors' state survives a crash ---------------------------------------------------

def net():
    return nf.setup(nf.MLP, loss="mse", optimizer="adam").set_hparams(input_size=5, hidden=16).set_opt_hparams(lr=0.3)


def monitors(folder):
    return [KeepBestModel(), EarlyStopping("valid_loss", patience=100),
            ModelCheckpoint(folder / "e{epoch}.nnfit", save_best_only=True)]


def test_the_monitors_state_round_trips_through_auto_resume(tmp_path):
    reference = monitors(tmp_path / "reference")
    expected = net().fit((X, Y), epochs=8, seed=3, valid_data=0.25, verbose=False, callbacks=list(reference))
    crash = Crash(epoch=6)
    crash.needs_autograd = False  # acts between epochs: the run stays on the closed-form step, as resumed
    with pytest.raises(TrainingError, match="power cut"):
        net().fit((X, Y), epochs=8, seed=3, valid_data=0.25, verbose=False,
                  callbacks=[AutoResume(tmp_path / "state"), crash] + monitors(tmp_path / "run"))
    resume, watched = AutoResume(tmp_path / "state"), monitors(tmp_path / "run")
    resumed = net().fit((X, Y), epochs=8, seed=3, valid_data=0.25, verbose=False, callbacks=[resume] + watched)
    assert resume.resumed_from == 6  # its checkpoint was written before the crash, at the end of epoch 6
    for mine, theirs in zip(watched, reference):
        assert (mine.monitor_, mine.mode_, mine.best, mine.best_epoch) == (
            theirs.monitor_, theirs.mode_, theirs.best, theirs.best_epoch)
    assert watched[1].wait == reference[1].wait
    assert [os.path.basename(p) for p in watched[2].saved] == [os.path.basename(p) for p in reference[2].saved]
    assert same(resumed.model.state_dict(), expected.model.state_dict())  # KeepBestModel's weights, restored
    losses = {e: v for s, m, e, v in expected.records if (s, m) == ("valid", "loss")}
    assert reference[0].best_epoch == min(losses, key=lambda e: (losses[e], e))

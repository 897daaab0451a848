"""Each callback does what it says: the epoch early stopping stops at, the learning rate after a
scheduler step, the rows a CSV holds, the gradient norm after clipping, the mixed batch, ..."""

import io
import sys
import types

import pandas as pd
import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit.errors import ArgumentError, ArgumentTypeError, MissingDependencyError


class Scripted(nf.metrics.Metric):
    """A metric whose value in epoch e is values[e - 1]: monitors see a known sequence."""

    name = "score"

    def __init__(self, values, maximize=False):
        self.values, self.maximize, self.calls = list(values), maximize, 0

    def reset(self):
        pass

    def update(self, pred, target):
        pass

    def compute(self):
        self.calls += 1
        return torch.tensor(self.values[self.calls - 1])


class Spy(nf.callbacks.Callback):
    """Calls ``function(ctx)`` at one hook and keeps what it returns."""

    def __init__(self, hook, function, weight=10):
        self.weight, self.function, self.seen = weight, function, []
        setattr(self, hook, lambda ctx: self.seen.append(function(ctx)))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 3, generator=g)
    return X, X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(96, 1, generator=g)


def linear(metrics=(), optimizer="sgd", lr=0.05):
    return (nf.setup(nn.Linear, loss=nn.MSELoss(), optimizer=optimizer, metrics=list(metrics))
            .set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=lr))


def fit(data, callbacks, metrics=(), epochs=8, **options):
    return linear(metrics).fit(data, epochs=epochs, callbacks=callbacks, seed=1, verbose=False, **options)


# --- EarlyStopping -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "values, options, epochs, stopped",
    [
        ([5, 4, 4.5, 4.2, 4.1, 3, 2, 1], dict(patience=2), 8, 4),  # two epochs without a new best
        ([5, 4.95, 4.9, 4.85, 4.8, 4.7], dict(patience=2, min_delta=0.1), 6, 3),  # too small to count
        ([5, 4, 4.5, 4.2, 4.1, 4.3, 3, 2], dict(patience=2), (6, 8), 6),  # but never before min epochs
        ([0.5, 0.6, 0.55, 0.58, 0.7, 0.8], dict(patience=2), 6, 4),  # a maximized metric (see maximize)
        ([5, 4, 3, 2.5, 2.2, 2.1], dict(patience=2, baseline=2.0), 6, 2),  # never beats the baseline
        ([5, 4, 3, 2, 1, 0.5], dict(patience=1), 6, None),  # always improving: runs to the end
    ],
)
def test_early_stopping_stops_at_the_right_epoch(data, values, options, epochs, stopped):
    maximize = values[1] > values[0]
    stop = nf.callbacks.EarlyStopping(monitor="train_score", **options)
    hook = Spy("on_early_stopping", lambda ctx: ctx.epoch + 1)
    fitted = fit(data, [stop, hook], metrics=[Scripted(values, maximize)], epochs=epochs)
    assert stop.stopped_epoch == stopped
    assert fitted.epochs_run == (stopped or len(values))
    assert hook.seen == ([stopped] if stopped else [])


def test_early_stopping_mode_overrides_the_metric_direction(data):
    stop = nf.callbacks.EarlyStopping(monitor="train_score", patience=1, mode="max")
    fit(data, [stop], metrics=[Scripted([5, 4, 3, 2])], epochs=4)  # falling, but max wanted
    assert stop.stopped_epoch == 2


def test_early_stopping_state_round_trips(data):
    stop = nf.callbacks.EarlyStopping(monitor="train_score", patience=3)
    fit(data, [stop], metrics=[Scripted([5, 4, 4.5])], epochs=3)
    assert stop.state_dict() == {"best": 4.0, "best_epoch": 2, "wait": 1, "stopped_epoch": None}
    again = nf.callbacks.EarlyStopping(monitor="train_score", patience=3)
    again.load_state_dict(stop.state_dict())
    assert (again.best, again.best_epoch, again.wait) == (4.0, 2, 1)


def test_early_stopping_on_a_name_nothing_records_lists_the_names(data):
    stop = nf.callbacks.EarlyStopping(monitor="valid_loss")
    with pytest.raises(ArgumentError) as error:
        fit(data, [stop], metrics=[nf.metrics.MAE()], epochs=2)
    assert str(error.value) == (
        "EarlyStopping monitors 'valid_loss', which no metric records; the names recorded are: "
        "train_loss, train_mae. Pass one of them as monitor=."
    )


def test_early_stopping_bad_options():
    with pytest.raises(ArgumentError) as error:
        nf.callbacks.EarlyStopping(mode="down")
    assert str(error.value) == "mode must be 'auto', 'min' or 'max', not 'down'."
    with pytest.raises(ArgumentError) as error:
        nf.callbacks.EarlyStopping(patience=0)
    assert str(error.value) == "patience must be at least 1, not 0."


# --- LRScheduler ---------------------------------------------------------------------------

def lr_of(ctx):
    return ctx.opt.param_groups[0]["lr"]


def test_step_lr_halves_the_rate_every_two_epochs(data):
    seen = Spy("on_epoch_begin", lr_of)
    sched = nf.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
    fit(data, [sched, seen], epochs=5)
    assert seen.seen == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.0125])
    assert sched.state_dict()["scheduler"]["last_epoch"] == 5


def test_a_scheduler_state_carries_over_to_a_new_fit(data):
    first = nf.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
    fit(data, [first], epochs=3)
    resumed = nf.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
    resumed.load_state_dict(first.state_dict())
    seen = Spy("on_epoch_end", lambda ctx: resumed.scheduler_.last_epoch)
    fit(data, [resumed, seen], epochs=2)
    assert seen.seen == [4, 5]  # counting on from the first fit's 3 epochs


def test_a_scheduler_called_on_each_batch_steps_once_per_batch(data):
    sched = nf.callbacks.LRScheduler(torch.optim.lr_scheduler.ExponentialLR, call_on="on_train_batch_end", gamma=0.9)
    seen = Spy("on_fit_end", lr_of)
    fit(data, [sched, seen], epochs=2, batch_size=32)  # 3 batches a epoch
    assert seen.seen == pytest.approx([0.05 * 0.9**6])


def test_reduce_on_plateau_gets_the_epoch_mean_of_the_monitored_metric(data):
    given = []

    class Recording(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics):
            given.append(metrics)
            super().step(metrics)

    sched = nf.callbacks.LRScheduler(Recording, patience=0, factor=0.5)
    fitted = fit(data, [sched], epochs=3, valid_data=0.25)
    history = fitted.metrics
    assert given == history[(history.set == "valid") & (history.metric == "loss")].value.tolist()
    assert sched.monitor_ == "valid_loss" and sched.scheduler_.mode == "min"


def test_reduce_on_plateau_cuts_the_rate_when_the_metric_stalls(data):
    seen = Spy("on_epoch_begin", lr_of)
    sched = nf.callbacks.LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="train_score", patience=0, factor=0.5)
    fit(data, [sched, seen], metrics=[Scripted([0.5, 0.6, 0.55, 0.7, 0.65], maximize=True)], epochs=5)
    assert sched.scheduler_.mode == "max"  # taken from the metric
    assert seen.seen == pytest.approx([0.05, 0.05, 0.05, 0.025, 0.025])


def test_reduce_on_plateau_takes_an_explicit_mode_over_the_metric(data):
    sched = nf.callbacks.LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="train_score", mode="min",
                                     patience=0, factor=0.5)
    fitted = fit(data, [sched], metrics=[Scripted([0.5, 0.6, 0.7], maximize=True)], epochs=3)
    assert sched.scheduler_.mode == "min"
    assert fitted.ctx.opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**2)  # rising is worse when min is asked


def test_reduce_on_plateau_without_an_epoch_metric_is_refused():
    with pytest.raises(ArgumentError) as error:
        nf.callbacks.LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, call_on="on_train_batch_end")
    assert str(error.value) == (
        "ReduceLROnPlateau steps on a metric, which exists once per epoch; use call_on='on_epoch_end', "
        "not 'on_train_batch_end'."
    )


def test_lr_scheduler_bad_arguments():
    with pytest.raises(ArgumentError) as error:
        nf.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, monitor="valid_loss", step_size=1)
    assert str(error.value) == "StepLR does not use a metric; leave out monitor='valid_loss'."
    with pytest.raises(ArgumentError) as error:
        nf.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, call_on="on_epoch_ending", step_size=1)
    assert str(error.value) == "call_on must be a hook name such as 'on_epoch_end', not 'on_epoch_ending'."
    built = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), step_size=1)
    with pytest.raises(ArgumentTypeError) as error:
        nf.callbacks.LRScheduler(built)
    assert str(error.value) == (
        "LRScheduler takes the scheduler class and its options, e.g. LRScheduler(StepLR, ...), "
        "not a scheduler already built: the optimizer is made at fit time."
    )


def test_lr_scheduler_names_an_optimizer_that_does_not_exist(data):
    sched = nf.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, opt_name="generator", step_size=1)
    with pytest.raises(ArgumentError) as error:
        fit(data, [sched], epochs=1)
    assert str(error.value) == "LRScheduler(opt_name='generator'): there is no such optimizer; the optimizers are: opt."


# --- CSVLogger and TensorBoard -------------------------------------------------------------

def test_csv_logger_writes_one_row_per_epoch_and_set(data, tmp_path):
    path = tmp_path / "history.csv"
    fitted = fit(data, [nf.callbacks.CSVLogger(path)], metrics=[nf.metrics.MAE()], epochs=3, valid_data=0.25)
    written = pd.read_csv(path)
    assert list(written.columns) == ["epoch", "set", "loss", "mae"]
    expected = fitted.metrics.pivot_table(index=["epoch", "set"], columns="metric", values="value").reset_index()
    assert written[["epoch", "set"]].values.tolist() == [[e, s] for e in (1, 2, 3) for s in ("train", "valid")]
    merged = written.merge(expected, on=["epoch", "set"], suffixes=("", "_expected"))
    assert merged["loss"].tolist() == merged["loss_expected"].tolist()  # repr keeps every digit
    assert merged["mae"].tolist() == merged["mae_expected"].tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temporary file left


def test_tensorboard_without_the_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    with pytest.raises(MissingDependencyError) as error:
        nf.callbacks.TensorBoard("runs")
    assert str(error.value) == (
        "The TensorBoard callback needs the tensorboard package, which is not installed; "
        "install it with: pip install 'nnfit[tensorboard]' (or pip install tensorboard)."
    )
    assert isinstance(error.value, ImportError)


def test_tensorboard_logs_every_recorded_value_by_epoch(monkeypatch, data):
    calls = []

    class Writer:
        def __init__(self, log_dir):
            calls.append(("open", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    fitted = fit(data, [nf.callbacks.TensorBoard("runs/a")], metrics=[nf.metrics.MAE()], epochs=2, valid_data=0.25)
    expected = [(f"{m}/{s}", v, e) for s, m, e, v in fitted.records]
    assert calls == [("open", "runs/a")] + sorted(expected, key=lambda c: c[2]) + [("close",)]


# --- GradientClip, Mixup, MixedPrecision ---------------------------------------------------

def grad_norm(ctx):
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ctx.model.parameters()])))


def test_gradient_clip_bounds_the_gradient_norm_before_each_step(data):
    before = Spy("on_train_batch_before_step", grad_norm, weight=-10)
    after = Spy("on_train_batch_before_step", grad_norm, weight=10)
    fit(data, [nf.callbacks.GradientClip(max_norm=0.5), before, after], epochs=2)
    assert len(after.seen) == 6
    for raw, clipped in zip(before.seen, after.seen):
        assert clipped == pytest.approx(min(raw, 0.5), rel=1e-4)
    assert max(before.seen) > 0.5  # the clip had work to do


def test_mixup_mixes_inputs_and_losses_of_paired_rows(data):
    mixup = nf.callbacks.Mixup(alpha=0.4)
    original = Spy("on_train_batch_begin", lambda ctx: (ctx.input.clone(), ctx.target.clone()), weight=-10)
    mixed = Spy("on_train_batch_after_loss",
                lambda ctx: (ctx.input.clone(), ctx.pred.detach(), ctx.loss.detach(), mixup.lam_, mixup.perm_), weight=10)
    fit(data, [mixup, original, mixed], epochs=1, batch_size=32)
    lams = []
    for (x, y), (x_mixed, pred, loss, lam, perm) in zip(original.seen, mixed.seen):
        assert torch.allclose(x_mixed, lam * x + (1 - lam) * x[perm])
        expected = lam * nn.functional.mse_loss(pred, y) + (1 - lam) * nn.functional.mse_loss(pred, y[perm])
        assert float(loss) == pytest.approx(float(expected), rel=1e-5)
        lams.append(float(lam))
    assert len(lams) == 3 and len(set(lams)) == 3 and all(0 < lam < 1 for lam in lams)


def test_mixup_leaves_validation_alone(data):
    mixup = nf.callbacks.Mixup()
    seen = Spy("on_valid_batch_after_pred", lambda ctx: ctx.input.clone())
    fitted = fit(data, [mixup, seen], epochs=1, valid_data=(data[0][:10], data[1][:10]))
    assert torch.equal(seen.seen[0], data[0][:10])
    assert fitted.epochs_run == 1


def test_mixed_precision_runs_forward_in_bfloat16_on_the_cpu(data):
    half = nf.callbacks.MixedPrecision()
    dtypes = Spy("on_train_batch_after_pred", lambda ctx: (ctx.pred.dtype, ctx.model.weight.dtype))
    valid = Spy("on_valid_batch_after_pred", lambda ctx: ctx.pred.dtype)
    fitted = linear(optimizer="adam", lr=0.05).fit(data, epochs=30, callbacks=[half, dtypes, valid], seed=1,
                                                   verbose=False, valid_data=0.25)
    assert set(dtypes.seen) == {(torch.bfloat16, torch.float32)}
    assert set(valid.seen) == {torch.bfloat16}
    assert fitted.predict(data[0]).dtype == torch.float32  # nothing stays in half precision after fit
    assert fitted.last_metrics()["valid"]["loss"] < 0.1  # and it still learns y = Xb
    assert fitted.ctx.scaler is None


def test_mixed_precision_uses_float16_and_a_grad_scaler_on_cuda():
    ctx = types.SimpleNamespace(device=torch.device("cuda"), autocast=None, scaler=None)
    half = nf.callbacks.MixedPrecision()
    with pytest.warns(UserWarning):  # no CUDA on this machine: the scaler says it is disabled
        half.on_fit_begin(ctx)
    assert half.dtype_ == torch.float16
    assert isinstance(ctx.scaler, torch.amp.GradScaler)
    assert ctx.autocast().fast_dtype == torch.float16


# --- Progress ------------------------------------------------------------------------------

def test_progress_writes_one_line_per_epoch_when_not_a_terminal(data):
    stream = io.StringIO()
    fitted = fit(data, [nf.callbacks.Progress(stream=stream)], metrics=[nf.metrics.MAE()], epochs=2, valid_data=0.25)
    lines = stream.getvalue().splitlines()
    expected = []
    for epoch in (1, 2):
        rows = fitted.metrics[fitted.metrics.epoch == epoch]
        parts = [f"{s}: " + ", ".join(f"{m} {v:.4g}" for m, v in zip(g.metric, g.value)) for s, g in rows.groupby("set", sort=False)]
        expected.append(f"Epoch {epoch}/2  " + " | ".join(parts))
    assert lines == expected


def test_progress_on_a_terminal_shows_a_live_batch_counter(data):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    fit(data, [nf.callbacks.Progress(stream=stream, every=0)], epochs=1, batch_size=32)
    text = stream.getvalue()
    bars = ["[======              ] batch 1/3", "[=============       ] batch 2/3", "[====================] batch 3/3"]
    assert [f"\rEpoch 1/1  {bar}" in text for bar in bars] == [True] * 3
    assert text.endswith("\n") and text.count("\n") == 1 and "\rEpoch 1/1  train: loss" in text


def test_fit_shows_progress_only_when_asked_or_on_a_terminal(data, capsys):
    linear().fit(data, epochs=1, verbose=True, seed=1)
    assert capsys.readouterr().out.startswith("Epoch 1/1  train: loss ")
    linear().fit(data, epochs=1, seed=1)  # pytest's stdout is not a terminal
    assert capsys.readouterr().out == ""


# --- MetricsRecorder -------------------------------------------------------------------------

def test_the_recorder_hands_waiting_predictions_to_the_metrics_every_pending_limit_values(data, monkeypatch):
    from nnfit.train.callbacks import MetricsRecorder

    def waiting(ctx):
        recorder = next(c for c in ctx.hooks.callbacks if isinstance(c, MetricsRecorder))
        return recorder._pending_size, len(recorder._pending)

    assert MetricsRecorder.pending_limit == 1 << 16  # 64 batches of 1024 rows: few small blocks wait at a time
    monkeypatch.setattr(MetricsRecorder, "pending_limit", 50)
    spy = Spy("on_train_batch_end", waiting)
    fit(data, [spy], metrics=[nf.metrics.MAE()], epochs=2, batch_size=40)
    # batches of 40, 40 and 16 rows; the fit's first batch goes straight to the metric (so a failing
    # metric says where), then batches wait until 50 values do, and the epoch's end takes the rest
    assert spy.seen == [(0, 0), (40, 1), (0, 0), (40, 1), (0, 0), (16, 1)]


def test_metrics_read_the_same_rows_when_predictions_wait_in_small_groups(monkeypatch):
    from nnfit.train.callbacks import MetricsRecorder
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(3)
    X = torch.randn(200, 2, generator=g)
    y = (X[:, 0] + 0.5 * torch.randn(200, generator=g) > 0).long()
    learner = (nf.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer="sgd", metrics=[nf.metrics.AUROC()])
               .set_hparams(in_features=2, out_features=2).set_opt_hparams(lr=0.1))
    whole = learner.fit((X, y), epochs=3, batch_size=16, seed=1, verbose=False).metrics
    monkeypatch.setattr(MetricsRecorder, "pending_limit", 40)  # 2 scores a row: every batch or two go to the metric
    scores = []
    watch = Spy("on_train_batch_end", lambda ctx: scores.append((ctx.epoch, ctx.pred.detach().softmax(1)[:, 1],
                                                                 ctx.target.clone())))
    flushed = learner.fit((X, y), epochs=3, batch_size=16, seed=1, verbose=False, callbacks=[watch]).metrics
    pd.testing.assert_frame_equal(flushed, whole)
    last = [(p, t) for epoch, p, t in scores if epoch == 2]  # ctx.epoch counts from 0
    expected = roc_auc_score(torch.cat([t for _, t in last]).numpy(), torch.cat([p for p, _ in last]).numpy())
    got = whole.query("set == 'train' and metric == 'auroc' and epoch == 3")["value"].item()
    assert got == pytest.approx(expected, abs=1e-6)

"""The loop: hook order, errors that say where, no device reads per batch, accumulation."""

import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit.train.callbacks import HOOKS
from nnfit.errors import ArgumentError, ArgumentTypeError, TrainingError


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 3, generator=g)
    return X, X @ torch.tensor([[1.0], [-2.0], [0.5]])


def learner(metrics=(), optimizer="sgd", module=nn.Linear, loss=None, **hparams):
    return (nf.setup(module, loss=loss or nn.MSELoss(), optimizer=optimizer, metrics=list(metrics))
            .set_hparams(**(hparams or dict(in_features=3, out_features=1))).set_opt_hparams(lr=0.05))


class Recorder(nf.callbacks.Callback):
    def __init__(self, weight=0, tag=""):
        self.weight, self.tag, self.calls = weight, tag, []
        for hook in HOOKS:
            setattr(self, hook, lambda ctx, hook=hook: self.calls.append((self.tag + hook, ctx.epoch + 1, ctx.iter)))


def test_hooks_run_in_luz_order(data):
    recorder = Recorder()
    nf_fit = learner().fit(data, epochs=1, batch_size=32, valid_data=(data[0][:5], data[1][:5]),
                           callbacks=[recorder, nf.callbacks.EarlyStopping(monitor="valid_loss", patience=1)],
                           verbose=False, seed=1)
    batch = ["on_train_batch_begin", "on_train_batch_after_pred", "on_train_batch_after_loss",
             "on_train_batch_before_backward", "on_train_batch_before_step", "on_train_batch_after_step",
             "on_train_batch_end"]
    valid = ["on_valid_batch_begin", "on_valid_batch_after_pred", "on_valid_batch_after_loss", "on_valid_batch_end"]
    expected = (["on_fit_begin", "on_epoch_begin", "on_train_begin"] + batch + batch + ["on_train_end", "on_valid_begin"]
                + valid + ["on_valid_end", "on_epoch_end", "on_fit_end"])
    assert [c[0] for c in recorder.calls] == expected
    assert [c[2] for c in recorder.calls if c[0] == "on_train_batch_end"] == [0, 1]
    assert nf_fit.epochs_run == 1


def test_callbacks_run_in_order_of_weight(data):
    late, early = Recorder(weight=5, tag="late:"), Recorder(weight=-5, tag="early:")
    calls = []
    late.calls = early.calls = calls
    learner().fit(data, epochs=1, batch_size=64, callbacks=[late, early], verbose=False, seed=1)
    assert [c[0] for c in calls[:2]] == ["early:on_fit_begin", "late:on_fit_begin"]


def test_early_stopping_runs_its_hook_once(data):
    recorder = Recorder()
    stop = nf.callbacks.EarlyStopping(monitor="train_loss", patience=1, min_delta=1e9)
    learner().fit(data, epochs=5, callbacks=[stop, recorder], verbose=False, seed=1)
    assert [c[1] for c in recorder.calls if c[0] == "on_early_stopping"] == [2]
    assert stop.stopped_epoch == 2


# --- errors that say where -----------------------------------------------------------------

class Boom(nf.callbacks.Callback):
    def on_train_batch_end(self, ctx):
        if ctx.epoch == 1 and ctx.iter == 2:
            raise ValueError("bad value")


class Broken(nf.metrics.Metric):
    name = "broken"

    def update(self, pred, target):
        raise RuntimeError("cannot update")


class Fragile(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 4:
            raise RuntimeError("shape trouble")
        return self.linear(x)


def test_an_error_in_a_callback_names_the_class_the_hook_the_epoch_and_the_batch(data):
    with pytest.raises(TrainingError) as error:
        learner().fit(data, epochs=3, batch_size=16, callbacks=[Boom()], verbose=False, seed=1)
    assert str(error.value) == "Boom.on_train_batch_end failed in epoch 2, batch 3: ValueError: bad value"
    assert isinstance(error.value.__cause__, ValueError)


def test_an_error_in_a_metric_names_it(data):
    with pytest.raises(TrainingError) as error:
        learner(metrics=[Broken()]).fit(data, epochs=1, verbose=False, seed=1)
    assert str(error.value) == "Metric Broken.update failed in epoch 1, batch 1: RuntimeError: cannot update"


def test_an_error_in_the_module_names_it(data):
    with pytest.raises(TrainingError) as error:
        nf.setup(Fragile(), loss=nn.MSELoss()).fit(data, epochs=2, batch_size=32, verbose=False, seed=1)
    assert str(error.value) == "Fragile.forward failed in epoch 2, batch 2: RuntimeError: shape trouble"


def test_an_error_in_the_loss_names_it(data):
    def loss(pred, target):
        raise KeyError("weights")

    with pytest.raises(TrainingError) as error:
        learner(loss=loss).fit(data, epochs=1, verbose=False, seed=1)
    assert str(error.value) == "the loss failed in epoch 1, batch 1: KeyError: 'weights'"


def test_a_loss_that_is_not_one_number_is_a_clear_error(data):
    with pytest.raises(ArgumentError) as error:
        learner(loss=nn.MSELoss(reduction="none")).fit(data, epochs=1, verbose=False, seed=1)
    assert str(error.value) == (
        "The loss returned a tensor of shape (32, 1) in epoch 1, batch 1; it must return one number (a 0-d tensor). "
        "Give a torch loss reduction='mean' (its default), or end your loss function with .mean()."
    )


def test_a_callback_class_instead_of_an_instance_is_a_clear_error(data):
    with pytest.raises(ArgumentTypeError) as error:
        learner().fit(data, epochs=1, callbacks=[nf.callbacks.EarlyStopping], verbose=False)
    assert str(error.value) == "callbacks takes instances; got the class EarlyStopping. Write EarlyStopping(...) instead."


# --- no device reads per batch -------------------------------------------------------------

def count_reads(monkeypatch):
    reads = []
    for method in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda self, *a, _o=original, _m=method, **k: reads.append(_m) or _o(self, *a, **k))
    return reads


@pytest.mark.parametrize("verbose", [False, True])
def test_device_reads_do_not_grow_with_the_number_of_batches(data, monkeypatch, verbose):
    """The loop, the metrics and Progress read the device once per epoch, whatever the batch count."""

    class Terminal:
        def write(self, text):
            pass

        def flush(self):
            pass

        def isatty(self):
            return True

    metrics = [nf.metrics.MAE(), nf.metrics.R2()]
    callbacks = [nf.callbacks.Progress(stream=Terminal(), every=0)] if verbose else []
    counts = []
    for batch_size in (32, 4):  # 2 and 16 batches per epoch
        fit_learner = learner(metrics=metrics)
        reads = count_reads(monkeypatch)
        fit_learner.fit(data, epochs=2, batch_size=batch_size, valid_data=(data[0][:8], data[1][:8]),
                        callbacks=list(callbacks), verbose=False, seed=1)
        counts.append(len(reads))
        monkeypatch.undo()
    assert counts[0] == counts[1]


# --- gradient accumulation -----------------------------------------------------------------

def test_accumulated_batches_make_the_same_step_as_one_big_batch(data):
    big = learner().fit(data, epochs=1, batch_size=64, verbose=False, seed=3)
    small = learner().fit(data, epochs=1, batch_size=16, accumulate=4, verbose=False, seed=3)
    for a, b in zip(big.model.parameters(), small.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    one_step = learner().fit(data, epochs=1, batch_size=16, verbose=False, seed=3)  # 4 steps: different
    assert not torch.allclose(one_step.model.weight, big.model.weight, atol=1e-3)


def test_accumulation_steps_the_optimizer_every_k_batches_and_at_the_end(data):
    recorder = Recorder()
    learner().fit(data, epochs=1, batch_size=8, accumulate=3, callbacks=[recorder], verbose=False, seed=1)
    steps = [c[2] for c in recorder.calls if c[0] == "on_train_batch_after_step"]
    assert steps == [2, 5, 7]  # 8 batches: groups of 3, 3 and the last 2


def test_a_short_last_group_averages_over_its_own_batches(data):
    # 64 rows in batches of 16 with accumulate=3: steps after batches 3 and 4; the last "group"
    # is batch 4 alone, so its step must equal a plain step on that batch (divided by 1, not 3).
    seen = {}

    class Grab(nf.callbacks.Callback):
        def on_train_batch_before_step(self, ctx):
            seen[ctx.iter] = (ctx.input.clone(), ctx.target.clone(), [p.grad.clone() for p in ctx.model.parameters()],
                              [p.detach().clone() for p in ctx.model.parameters()])

    learner().fit(data, epochs=1, batch_size=16, accumulate=3, callbacks=[Grab()], verbose=False, seed=1)
    x, y, grads, params = seen[3]
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(params[0]), model.bias.copy_(params[1])
    nn.functional.mse_loss(model(x), y).backward()
    assert torch.allclose(grads[0], model.weight.grad, atol=1e-6)


def test_accumulate_must_be_a_positive_whole_number(data):
    with pytest.raises(ArgumentError) as error:
        learner().fit(data, accumulate=0)
    assert str(error.value) == "accumulate must be a positive whole number, not 0."


# --- the context ---------------------------------------------------------------------------

def test_the_context_has_luz_fields(data):
    seen = {}

    class Look(nf.callbacks.Callback):
        def on_train_batch_after_loss(self, ctx):
            if ctx.iter == 0 and ctx.epoch == 1:
                seen.update(epoch=ctx.epoch, iter=ctx.iter, input=ctx.input.shape, target=ctx.target.shape,
                            pred=ctx.pred.shape, loss=ctx.loss.ndim, training=ctx.training, batch=len(ctx.batch),
                            optimizers=list(ctx.optimizers), opt=type(ctx.opt).__name__, max_epochs=ctx.max_epochs,
                            metrics=[m.name for m in ctx.metrics["train"]], previous=ctx.get_metrics("train", epoch=1),
                            data=ctx.data is ctx.train_data, buffers=ctx.buffers, min_epochs=ctx.min_epochs)

        def on_epoch_end(self, ctx):
            ctx.log("train", "twice_loss", 2 * ctx.get_metrics("train")["loss"])

    fitted = learner(metrics=[nf.metrics.MAE()]).fit(data, epochs=2, batch_size=16, callbacks=[Look()], verbose=False, seed=1)
    assert {k: v for k, v in seen.items() if k != "previous"} == dict(
        epoch=1, iter=0, input=(16, 3), target=(16, 1), pred=(16, 1), loss=0, training=True, batch=2,
        optimizers=["opt"], opt="SGD", max_epochs=2, metrics=["mae"], data=True, buffers={}, min_epochs=1)
    assert set(seen["previous"]) == {"loss", "mae", "twice_loss"}
    history = fitted.metrics.set_index(["set", "metric", "epoch"]).value
    assert history["train", "twice_loss", 2] == 2 * history["train", "loss", 2]


def test_a_custom_step_can_run_hooks_through_the_context(data):
    class OwnStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 1)

        def forward(self, x):
            return self.linear(x)

        def step(self, ctx):
            ctx.pred = self(ctx.input)
            ctx.call_callbacks("on_train_batch_after_pred" if ctx.training else "on_valid_batch_after_pred")
            ctx.loss = nn.functional.mse_loss(ctx.pred, ctx.target)
            if ctx.training:
                ctx.opt.zero_grad()
                ctx.backward(ctx.loss)
                ctx.opt.step()

    recorder = Recorder()
    fitted = nf.setup(OwnStep).fit(data, epochs=1, batch_size=32, valid_data=(data[0][:8], data[1][:8]),
                                   callbacks=[recorder], verbose=False, seed=1)
    called = [c[0] for c in recorder.calls if c[0].endswith("after_pred")]
    assert called == ["on_train_batch_after_pred"] * 2 + ["on_valid_batch_after_pred"]
    assert sorted(fitted.last_metrics()) == ["train", "valid"]


class ReadsTheRecord(nf.callbacks.Callback):
    """A custom callback reading the loop's one record of the epoch's batch losses."""

    needs_autograd = False

    def __init__(self):
        self.seen = []

    def on_train_end(self, ctx):
        record = ctx.batch_losses["train"]
        self.seen.append((record, [v.tolist() for v in record.values], list(record.rows)))


def test_one_record_of_batch_losses_is_read_by_the_recorder_the_guard_and_any_callback(data):
    from nnfit.train.callbacks import MetricsRecorder
    from nnfit.train.divergence import DivergenceGuard

    reader = ReadsTheRecord()
    fitted = learner().fit(data, epochs=2, batch_size=24, callbacks=[reader], verbose=False, seed=1)
    guard = next(c for c in fitted.ctx.hooks.callbacks if isinstance(c, DivergenceGuard))
    assert any(isinstance(c, MetricsRecorder) for c in fitted.ctx.hooks.callbacks)
    record, values, rows = reader.seen[-1]
    assert guard._losses is record is fitted.ctx.batch_losses["train"]  # the guard reads the loop's record
    assert rows == [24, 24, 16] and len(values) == 3
    # the recorder's epoch loss is the rows-weighted mean of the same record
    assert fitted.ctx.get_metrics("train", epoch=2)["loss"] == pytest.approx(sum(v * r for v, r in zip(values, rows)) / 64)
    assert reader.seen[0][0] is not record  # each epoch begins its own
    assert guard.rule.reference == [pytest.approx(reader.seen[0][1][0])]  # the untrained loss: epoch 1, batch 1


def test_the_record_holds_one_loss_per_model_and_their_rows_for_k_models(data):
    from nnfit.train import many

    X, y = data
    reader = ReadsTheRecord()
    stack = many.VmapStack([nn.Linear(3, 1) for _ in range(2)], nn.MSELoss())
    rows = many.ManyRows(X, y, [torch.arange(64), torch.arange(40)], seeds=[1, 2])
    ctx = many.fit(stack, None, torch.optim.SGD(stack.parameters(), lr=0.05), rows, None, epochs=1, batch_size=32,
                   metrics=many.model_metrics([], 2), callbacks=[reader])
    record = ctx.batch_losses["train"]
    assert [tuple(v.shape) for v in record.values] == [(2,), (2,)]
    assert record.rows[0] == 32 and record.rows[1].tolist() == [32, 8]  # model 2 has 8 rows in batch 2
    expected = (record.values[0] * 32 + record.values[1] * record.rows[1]) / torch.tensor([64.0, 40.0])
    assert ctx.get_metrics("train")["loss"] == pytest.approx(expected.tolist())


def test_the_loss_record_writes_tensor_losses_into_one_tensor_and_turns_into_a_list_when_it_must():
    from nnfit.train.loop import BatchLosses

    record = BatchLosses(n_batches=3)
    for value, rows in [(0.5, 32), (0.25, 32)]:
        record.append(torch.tensor(value, requires_grad=True) * 1.0, rows)
    first, second = record.values
    assert first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()  # one allocation
    assert [float(v) for v in record.values] == [0.5, 0.25] and record.rows == [32, 32]
    assert not first.requires_grad
    record.append({"a": torch.tensor(1.0)}, 8)  # a module's own step set several losses: a list from here
    assert len(record) == 3 and not record.plain
    assert [float(v) for v in record.values[:2]] == [0.5, 0.25] and record.values[2]["a"] == 1.0
    more = BatchLosses(n_batches=1)
    more.append(torch.tensor(1.0), 4)
    more.append(torch.tensor(2.0), 4)  # more batches than the epoch was to have: still recorded
    assert [float(v) for v in more.values] == [1.0, 2.0]
    stacked = BatchLosses(n_batches=2)
    stacked.append(torch.tensor([1.0, 2.0]), torch.tensor([3, 4]))  # K = 2 models: their losses and rows
    stacked.append(torch.tensor([5.0, 6.0]), torch.tensor([7, 8]))
    assert torch.equal(torch.stack(stacked.rows), torch.tensor([[3, 4], [7, 8]]))
    assert torch.equal(stacked.first(), torch.tensor([1.0, 2.0]))


def test_the_loss_record_keeps_each_batch_loss_as_it_was_when_appended():
    from nnfit.train.loop import BatchLosses

    record, running = BatchLosses(n_batches=4), torch.zeros(())
    for _ in range(4):
        running += 1  # a step that writes each loss into the same tensor
        record.append(running, 10)
    assert [float(v) for v in record.values] == [1.0, 2.0, 3.0, 4.0]
    assert float(record.weighted_sums()["loss"]) == 100.0

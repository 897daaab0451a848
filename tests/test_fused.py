"""The fused trainer against autograd and torch.optim, step by step and fit by fit."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit.train import learner as learner_module
from nnfit.train import closed_form, fused
from nnfit.train.losses import BinaryLogitLoss, SampleWeighted

ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity"]
OPTIMIZERS = [
    (torch.optim.SGD, {"lr": 0.1}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (torch.optim.RMSprop, {}),
    (torch.optim.RMSprop, {"lr": 0.005, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1, "momentum": 0.5}),
    (torch.optim.Adam, {"lr": 0.01}),
    (torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    (torch.optim.AdamW, {"lr": 0.01}),
    (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.3, "eps": 1e-6}),
]


def fused_path(fit) -> bool:
    """Whether nf.mlp trained this fit with the fused trainer."""
    return type(fit.fitted.learner) is learner_module.FusedLearner


def task(kind, n=24, p=5, seed=0):
    """(X, y, loss, outputs) for one of the three losses."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g)
    if kind == "mse":
        return X, torch.randn(n, 2, generator=g), nn.MSELoss(), 2
    if kind == "cross_entropy":
        return X, torch.randint(0, 3, (n,), generator=g), nn.CrossEntropyLoss(), 3
    return X, torch.randint(0, 2, (n,), generator=g), BinaryLogitLoss(), 1


def twins(activation, outputs, p=5, dropout=0.0, seed=3):
    """An MLP and a FusedMLP with the same weights."""
    torch.manual_seed(seed)
    reference = nf.MLP(p, hidden=[7, 4], output_size=outputs, activation=activation, dropout=dropout)
    twin = fused.FusedMLP(p, hidden=[7, 4], output_size=outputs, activation=activation, dropout=dropout)
    twin.load_state_dict(reference.state_dict())
    return reference, twin


class Batch:
    """The part of the loop's context a step reads and writes."""

    def __init__(self, x, y, optimizer, loss_fn, weight=None):
        self.input, self.target, self.opt, self.loss_fn, self.weight = x, y, optimizer, loss_fn, weight
        self.training = True
        self.pred = self.loss = None


def fused_step(model, x, y, optimizer, loss_fn):
    ctx = Batch(x, y, optimizer, loss_fn)
    model.step(ctx)
    return ctx


def autograd_step(model, x, y, optimizer, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


@pytest.mark.parametrize("optimizer_class, options", OPTIMIZERS)
@pytest.mark.parametrize("loss_kind", ["mse", "cross_entropy", "binary"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_step_has_autograds_gradients_and_torch_optims_update(activation, loss_kind, optimizer_class, options):
    X, y, loss_fn, outputs = task(loss_kind)
    reference, twin = twins(activation, outputs)
    reference_opt = optimizer_class(reference.parameters(), **options)
    twin.loss_gradient = closed_form.loss_gradient(loss_fn)
    twin_opt = fused.ClosedFormOptimizer(twin.parameters(), optimizer_class, options)
    for start in (0, 8, 16, 0, 8):  # five steps, so momentum and running averages matter
        x, target = X[start : start + 8], y[start : start + 8]
        loss = autograd_step(reference, x, target, reference_opt, loss_fn)
        ctx = fused_step(twin, x, target, twin_opt, loss_fn)
        torch.testing.assert_close(ctx.loss, loss.detach(), rtol=1e-6, atol=1e-7)
        for (name, a), b in zip(reference.named_parameters(), twin.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=f"gradient of {name}")
            torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-7, msg=f"update of {name}")


@pytest.mark.parametrize("loss_kind", ["mse", "cross_entropy", "binary"])
def test_dropout_draws_the_masks_nn_dropout_draws(loss_kind):
    X, y, loss_fn, outputs = task(loss_kind)
    reference, twin = twins("relu", outputs, dropout=[0.4, 0.3])
    reference_opt = torch.optim.RMSprop(reference.parameters(), lr=0.01)
    twin.loss_gradient = closed_form.loss_gradient(loss_fn)
    twin_opt = fused.ClosedFormOptimizer(twin.parameters(), torch.optim.RMSprop, {"lr": 0.01})
    for start in (0, 8, 16):
        x, target = X[start : start + 8], y[start : start + 8]
        torch.manual_seed(start)
        autograd_step(reference, x, target, reference_opt, loss_fn)
        torch.manual_seed(start)
        fused_step(twin, x, target, twin_opt, loss_fn)
        for a, b in zip(reference.parameters(), twin.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-7)


def test_the_gradient_of_each_loss_is_autograds():
    for kind in ("mse", "cross_entropy", "binary"):
        _, y, loss_fn, outputs = task(kind)
        pred = torch.randn(len(y), outputs, requires_grad=True)
        expected = loss_fn(pred, y)
        expected.backward()
        loss, grad = closed_form.loss_gradient(loss_fn)(pred.detach(), y)
        torch.testing.assert_close(loss, expected.detach())
        torch.testing.assert_close(grad, pred.grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("task_name", ["regression", "multiclass"])
def test_a_seeded_mlp_fit_is_the_autograd_fit(lab_split, quiet, task_name):
    training, _ = lab_split
    formula = "body_mass_g ~ ." if task_name == "regression" else "species ~ ."
    options = dict(hidden=[10, 5], dropout=[0.4, 0.3], epochs=5, seed=7, verbose=False, valid=0.2)
    fast = nf.mlp(formula, data=training, **options)
    # an nnfit callback outside the fused family keeps the autograd path
    slow = nf.mlp(formula, data=training, callbacks=[nf.callbacks.GradientClip(max_norm=1e9)], **options)
    assert fused_path(fast) and not fused_path(slow)
    assert type(fast.model) is nf.MLP  # the network comes back as the MLP it is
    assert [row[:3] for row in fast.history] == [row[:3] for row in slow.history]
    for a, b in zip(fast.history, slow.history):
        assert a[3] == pytest.approx(b[3], rel=1e-5, abs=1e-6), a[:3]
    for a, b in zip(fast.model.parameters(), slow.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_fused_fit_repeats_with_its_seed_and_reports_original_units(lab_split, quiet):
    training, testing = lab_split
    first = nf.mlp("body_mass_g ~ .", data=training, hidden=50, dropout=0.4, epochs=3, seed=1, verbose=False)
    second = nf.mlp("body_mass_g ~ .", data=training, hidden=50, dropout=0.4, epochs=3, seed=1, verbose=False)
    assert first.history == second.history
    assert {(s, m) for s, m, _, _ in first.history} == {("train", "loss"), ("train", "mae")}
    # the training MAE is in grams: the network's predictions on its training rows, unscaled
    assert 100 < first.history[-1][3] < 2000
    assert first.evaluate(testing)["mae"] == second.evaluate(testing)["mae"]


def test_the_binary_loss_is_fused(penguins, quiet):
    data = penguins.dropna()
    data = data[data["species"] != "Gentoo"].assign(species=lambda d: d["species"].cat.remove_unused_categories())
    fast = nf.mlp("species ~ bill_length_mm + bill_depth_mm", data=data, hidden=4, epochs=3, seed=2, verbose=False)
    slow = nf.mlp(
        "species ~ bill_length_mm + bill_depth_mm", data=data, hidden=4, epochs=3, seed=2, verbose=False,
        callbacks=[nf.callbacks.GradientClip(max_norm=1e9)],
    )
    assert fused_path(fast) and not fused_path(slow)
    for a, b in zip(fast.history, slow.history):
        assert a[3] == pytest.approx(b[3], rel=1e-5, abs=1e-6)


def learner(**changes):
    options = dict(loss="mse", optimizer="rmsprop", activation="relu", opt_hparams={})
    options.update(changes)
    return (
        nf.setup(nf.MLP, loss=options["loss"], optimizer=options["optimizer"])
        .set_hparams(input_size=3, hidden=4, activation=options["activation"])
        .set_opt_hparams(**options["opt_hparams"])
    )


def test_what_falls_back_to_autograd():
    assert type(learner_module.learner_for(learner())) is learner_module.FusedLearner
    assert type(learner_module.learner_for(learner(), [nf.callbacks.Progress(), nf.callbacks.EarlyStopping()])) is learner_module.FusedLearner

    class Custom(nf.callbacks.Callback):
        def on_train_batch_after_loss(self, ctx):
            pass

    outside = [
        learner(activation="gelu"),
        learner(activation="elu"),
        learner(loss="l1"),
        learner(loss=nn.MSELoss(reduction="sum")),
        learner(loss=nn.CrossEntropyLoss(label_smoothing=0.1)),
        learner(optimizer="adagrad"),
        learner(optimizer="adam", opt_hparams={"amsgrad": True}),
        learner(optimizer="rmsprop", opt_hparams={"centered": True}),
        learner(optimizer="adam", opt_hparams={"lr": torch.tensor(0.01)}),
        learner(optimizer="adam", opt_hparams={"lr": -1.0}),  # torch's own error, from the autograd path
        learner(optimizer="sgd", opt_hparams={"nesterov": True}),
        nf.setup(nn.Linear, loss="mse").set_hparams(in_features=3, out_features=1),
    ]
    for candidate in outside:
        assert learner_module.learner_for(candidate) is candidate
    assert learner_module.learner_for(learner(), [Custom()]).__class__ is nf.Learner


def test_fallback_is_silent_and_trains_with_autograd(lab_split, quiet):
    training, _ = lab_split
    fit = nf.mlp("body_mass_g ~ .", data=training, hidden=5, activation="gelu", epochs=2, seed=1, verbose=False)
    assert not fused_path(fit)
    assert fit.history[-1][:3] == ("train", "mae", 2)


def test_progress_works_on_the_fused_path(lab_split, quiet):
    import io

    training, _ = lab_split
    stream = io.StringIO()
    fit = nf.mlp("body_mass_g ~ .", data=training, hidden=5, epochs=2, seed=1, callbacks=[nf.callbacks.Progress(stream)])
    assert fused_path(fit)
    lines = stream.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]


def test_changing_lr_in_param_groups_takes_effect():
    param = nn.Parameter(torch.ones(2))
    optimizer = fused.ClosedFormOptimizer([param], torch.optim.SGD, {"lr": 0.5})
    param.grad.fill_(1.0)
    optimizer.param_groups[0]["lr"] = 0.25
    optimizer.step()
    torch.testing.assert_close(param.detach(), torch.full((2,), 0.75))


def test_a_fused_fit_imports_no_torch_dynamo():
    script = (
        "import sys, warnings; warnings.simplefilter('ignore'); import nnfit as nf\n"
        "training = nf.datasets.load('penguins').dropna()\n"
        "fit = nf.mlp('body_mass_g ~ . - year', data=training, hidden=5, epochs=1, seed=1, verbose=False)\n"
        "print(type(fit.fitted.learner).__name__, 'torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["FusedLearner", "False"]


def test_a_fused_fit_saves_and_loads_like_any_other(lab_split, quiet, tmp_path):
    training, testing = lab_split
    fit = nf.mlp("species ~ .", data=training, hidden=[10, 5], dropout=[0.4, 0.3], epochs=2, seed=1, verbose=False)
    assert fused_path(fit)
    pointers = {param.data_ptr() for param in fit.model.parameters()}
    assert len(pointers) == len(list(fit.model.parameters()))  # no parameter shares the training buffer
    fit.save(tmp_path / "species.nnfit")
    again = nf.load(tmp_path / "species.nnfit")
    assert (again.predict(testing, type="prob").to_numpy() == fit.predict(testing, type="prob").to_numpy()).all()


def test_a_fused_fit_leaves_torchs_generator_alone(lab_split, quiet):
    training, _ = lab_split
    torch.manual_seed(5)
    state = torch.get_rng_state()
    fit = nf.mlp("body_mass_g ~ .", data=training, hidden=5, dropout=0.3, epochs=2, seed=1, verbose=False)
    assert fused_path(fit)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("loss_kind, weighting", [("mse", "sample_weight"), ("cross_entropy", "sample_weight"),
                                                   ("cross_entropy", "class_weight")])
def test_weighted_rows_are_trained_in_closed_form_as_autograd_trains_them(loss_kind, weighting):
    X, y, loss_fn, outputs = task(loss_kind, n=40, p=3)
    weights = {"sample_weight": torch.rand(40, generator=torch.Generator().manual_seed(1))}
    if weighting == "class_weight":
        weights = {"class_weight": "balanced"}
    def make():
        return (
            nf.setup(nf.MLP, loss=loss_fn, optimizer="adam").set_hparams(input_size=3, hidden=[6], output_size=outputs)
            .set_opt_hparams(lr=0.01)
        )

    fast = learner_module.learner_for(make())
    weighted = fast.fit((X, y), epochs=3, batch_size=8, seed=1, verbose=False, **weights)
    reference = make().fit((X, y), epochs=3, batch_size=8, seed=1, verbose=False, **weights,
                           callbacks=[nf.callbacks.Callback()])  # a callback that may need autograd keeps it
    assert type(weighted.learner) is learner_module.FusedLearner and type(reference.learner) is nf.Learner
    for a, b in zip(weighted.records, reference.records):
        assert a[:3] == b[:3] and a[3] == pytest.approx(b[3], rel=1e-5)
    for a, b in zip(weighted.model.parameters(), reference.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_step_with_row_weights_has_autograds_gradients():
    X, y, loss_fn, outputs = task("mse")
    reference, twin = twins("tanh", outputs)
    weight = torch.rand(8, generator=torch.Generator().manual_seed(2))
    weighted_loss = SampleWeighted(loss_fn)
    reference_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    twin.loss_gradient = closed_form.loss_gradient(loss_fn)
    twin_opt = fused.ClosedFormOptimizer(twin.parameters(), torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True})
    for start in (0, 8, 16):
        x, target = X[start : start + 8], y[start : start + 8]
        reference_opt.zero_grad()
        loss = weighted_loss(reference(x), target, weight)
        loss.backward()
        reference_opt.step()
        ctx = Batch(x, target, twin_opt, loss_fn, weight)
        twin.step(ctx)
        torch.testing.assert_close(ctx.loss, loss.detach(), rtol=1e-6, atol=1e-7)
        for a, b in zip(reference.parameters(), twin.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-7)


def test_accumulated_gradients_are_trained_by_autograd():
    X, y = torch.randn(40, 3), torch.randn(40, 1)
    fitted = learner_module.learner_for(learner()).fit((X, y), epochs=1, seed=1, verbose=False, accumulate=2)
    assert type(fitted.learner) is nf.Learner

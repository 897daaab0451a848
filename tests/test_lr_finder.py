"""nf.lr_finder: the rates it tries, the losses it records (against a hand-written sweep), the
smoothing, the suggestion and the plot."""

import numpy as np
import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit.errors import ArgumentError
from nnfit.train.rate_finder import suggest


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 3, generator=g)
    return X, X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(64, 1, generator=g)


def learner():
    return nf.setup(nn.Linear, loss=nn.MSELoss(), optimizer="sgd").set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=0.5)


def test_the_sweep_records_the_loss_of_each_step_at_each_rate(data):
    X, y = data
    records = nf.lr_finder(learner(), data, steps=30, start_lr=1e-4, end_lr=1.0, batch_size=None, seed=3)
    lrs = np.geomspace(1e-4, 1.0, 30)
    assert list(records.columns) == ["lr", "loss", "smoothed_loss"]
    assert np.allclose(records["lr"], lrs)
    torch.manual_seed(3)  # what fit does before it builds the module
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    expected = []
    for lr in lrs:
        optimizer.param_groups[0]["lr"] = lr
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(X), y)
        loss.backward()
        optimizer.step()
        expected.append(float(loss.detach()))
    assert np.allclose(records["loss"], expected, rtol=1e-5)
    average, smoothed = 0.0, []
    for i, loss in enumerate(records["loss"]):
        average = 0.9 * average + 0.1 * loss
        smoothed.append(average / (1 - 0.9 ** (i + 1)))
    assert np.allclose(records["smoothed_loss"], smoothed)
    end = int(np.argmin(smoothed))
    slopes = np.gradient(np.array(smoothed[: end + 1]), np.log(lrs[: end + 1]))
    assert records.suggested_lr == pytest.approx(lrs[int(np.argmin(slopes))])
    assert 1e-4 < records.suggested_lr < lrs[end]


def test_linear_spacing_and_several_epochs_of_batches(data):
    records = nf.lr_finder(learner(), data, steps=12, start_lr=0.01, end_lr=0.12, log_spaced=False, batch_size=16, seed=1)
    assert np.allclose(records["lr"], np.linspace(0.01, 0.12, 12))  # 4 batches an epoch: 3 epochs
    assert records["loss"].iloc[-1] < records["loss"].iloc[0]


def test_a_diverging_sweep_ends_early_and_still_suggests_a_finite_rate(data):
    records = nf.lr_finder(learner(), data, steps=60, start_lr=1e-3, end_lr=1e3, batch_size=None, seed=1)
    assert len(records) < 60
    last = records["loss"].iloc[-1]  # ended by the divergence rule: non-finite, or past 10,000 times the start
    assert not np.isfinite(last) or last > 1e4 * records["loss"].iloc[0]
    assert 1e-3 <= records.suggested_lr < 1.0


def test_the_learner_is_left_as_it_was(data):
    fit_learner = learner()
    nf.lr_finder(fit_learner, data, steps=5, seed=1)
    assert fit_learner.opt_hparams == {"lr": 0.5}


def test_the_plot_draws_loss_against_a_log_rate_axis_with_the_suggestion(data):
    records = nf.lr_finder(learner(), data, steps=20, seed=1)
    figure = records.plot()
    axis = figure.axes[0]
    assert axis.get_xscale() == "log"
    assert [line.get_label() for line in axis.lines] == ["loss", "smoothed loss", f"suggested lr {records.suggested_lr:.2g}"]
    assert list(axis.lines[2].get_xdata()) == [records.suggested_lr] * 2
    assert type(records[["lr"]]) is type(records.head().copy()) is __import__("pandas").DataFrame


def test_suggest_is_the_steepest_fall_before_the_minimum():
    lrs = np.geomspace(1e-4, 1, 5)
    assert suggest(lrs, np.array([1.0, 0.9, 0.5, 0.3, 2.0])) == pytest.approx(1e-2)
    assert suggest(lrs, np.array([1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(1e-5)  # no fall: a tenth of the best
    assert suggest(lrs, np.full(5, np.nan)) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(steps=1), "lr_finder needs steps to be a whole number of at least 2, not 1."),
        (dict(start_lr=0.1, end_lr=0.01), "lr_finder needs 0 < start_lr < end_lr; got start_lr=0.1, end_lr=0.01."),
        (dict(smoothing=1.0), "smoothing must lie in [0, 1), not 1.0."),
    ],
)
def test_bad_arguments_are_clear_errors(data, options, message):
    with pytest.raises(ArgumentError) as error:
        nf.lr_finder(learner(), data, **options)
    assert str(error.value) == message

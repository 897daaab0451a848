import numpy as np
import pandas as pd
import pytest
import torch

import nnfit as nf
from nnfit.train.ensemble import StackedMLP
from nnfit.errors import ArgumentError

pytestmark = pytest.mark.filterwarnings("ignore::nnfit.errors.MissingValuesWarning")


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    "optimizer, options",
    [("sgd", {"lr": 0.05}), ("rmsprop", {"lr": 0.01}), ("adam", {"lr": 0.01}), ("adamw", {"lr": 0.01}),
     ("adam", {"lr": 0.01, "weight_decay": 0.01}), ("rmsprop", {"lr": 0.003, "weight_decay": 0.05})],
)
def test_model_k_equals_the_model_trained_alone(lab_split, optimizer, options):
    training, _ = lab_split
    # tanh, not ReLU: Adam's m / sqrt(v) turns float rounding into full-size steps for a weight
    # whose gradient is all but zero, as at a ReLU kink, and the runs would part for that alone.
    common = dict(hidden=[16, 8], activation="tanh", optimizer=optimizer, epochs=5, verbose=False, **options)
    together = nf.mlp("body_mass_g ~ .", training, seed=10, n_models=3, **common)
    for k in range(3):
        alone = nf.mlp("body_mass_g ~ .", training, seed=10 + k, **common)
        assert _max_difference(together.models()[k], alone.model) < 1e-4


def test_classifier_models_equal_the_models_trained_alone(lab_split):
    training, _ = lab_split
    common = dict(hidden=[10, 5], optimizer="adam", lr=0.01, epochs=4, verbose=False)
    together = nf.mlp("species ~ .", training, seed=3, n_models=2, **common)
    alone = nf.mlp("species ~ .", training, seed=4, **common)
    assert _max_difference(together.models()[1], alone.model) < 1e-4


def test_stack_and_unstack_round_trip():
    torch.manual_seed(0)
    nets = [nf.MLP(4, hidden=[3, 2], output_size=2, activation="tanh") for _ in range(3)]
    stacked = StackedMLP(nets).eval()
    x = torch.randn(5, 4)
    out = stacked(x)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net.eval()(x))
        torch.testing.assert_close(stacked.unstack(k)(x), net(x))


def test_each_model_has_its_own_dropout_masks():
    nets = [nf.MLP(3, hidden=[200], dropout=0.5) for _ in range(2)]
    with torch.no_grad():
        nets[1].load_state_dict(nets[0].state_dict())
    stacked = StackedMLP(nets).train()
    torch.manual_seed(0)
    out = stacked(torch.ones(1, 3))
    assert not torch.equal(out[0], out[1])
    kept = (torch.rand(100000) >= 0.5).float().mean()
    assert abs(float(kept) - 0.5) < 0.01


def test_ensemble_predicts_the_mean_and_every_model(lab_split):
    training, testing = lab_split
    fit = nf.mlp("body_mass_g ~ .", training, hidden=8, epochs=5, seed=1, n_models=4, verbose=False)
    every = fit.predict(testing, type="all")
    assert list(every.columns) == ["model_1", "model_2", "model_3", "model_4"]
    pd.testing.assert_series_equal(fit.predict(testing), every.mean(axis=1), check_names=False)
    interval = fit.predict(testing, type="spread")
    np.testing.assert_allclose(interval["sd"], every.std(axis=1, ddof=1), rtol=1e-9)
    np.testing.assert_allclose(interval["lower"], every.quantile(0.025, axis=1), rtol=1e-9)
    by_model = fit.evaluate(testing, by_model=True)
    assert list(by_model.columns) == ["model", "mae", "rmse", "r2"] and len(by_model) == 4
    truth = testing["body_mass_g"].to_numpy()
    assert by_model["mae"].tolist() == pytest.approx([np.abs(every[c].to_numpy() - truth).mean() for c in every])
    assert set(fit.metrics["model"]) == {1, 2, 3, 4}
    assert fit.coef()["model"].nunique() == 4


def test_classifier_ensemble_averages_probabilities(lab_split):
    training, testing = lab_split
    fit = nf.mlp("species ~ .", training, hidden=[10, 5], epochs=10, seed=1, n_models=3, verbose=False)
    probs = fit.predict(testing, type="prob")
    single = [fit.models()[k] for k in range(3)]
    X = fit.design.tensors(testing, response=False)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(X), dim=1) for m in single]).mean(0).double().numpy()
    np.testing.assert_allclose(probs.to_numpy(), mean, rtol=1e-5)
    labels = fit.predict(testing, type="all")
    assert labels.shape == (len(testing), 3) and str(labels["model_1"].dtype) == "category"


def test_ensemble_save_and_load(lab_split, tmp_path):
    training, testing = lab_split
    fit = nf.mlp("body_mass_g ~ .", training, hidden=8, epochs=3, seed=1, n_models=3, verbose=False)
    fit.save(tmp_path / "e.nnfit")
    same = nf.load(tmp_path / "e.nnfit")
    pd.testing.assert_frame_equal(same.predict(testing, type="all"), fit.predict(testing, type="all"))


def test_valid_fraction_gives_valid_metrics_per_model(lab_split):
    training, _ = lab_split
    fit = nf.mlp("body_mass_g ~ .", training, hidden=8, epochs=3, seed=1, n_models=2, valid=0.25, verbose=False)
    history = fit.metrics
    assert set(history["set"]) == {"train", "valid"}
    assert len(history) == 2 * 2 * 3 * 2  # sets x metrics x epochs x models


@pytest.mark.parametrize("n_models", [0, -1, 2.5, True])
def test_bad_n_models(lab_split, n_models):
    with pytest.raises(ArgumentError) as error:
        nf.mlp("body_mass_g ~ .", lab_split[0], n_models=n_models, epochs=1)
    assert str(error.value) == f"n_models must be a positive whole number, not {n_models!r}."


def test_unsupported_optimizer_for_many_models(lab_split):
    with pytest.raises(ArgumentError) as error:
        nf.mlp("body_mass_g ~ .", lab_split[0], n_models=2, optimizer="adagrad", epochs=1)
    assert str(error.value) == "Training several models at once supports the optimizers sgd, rmsprop, adam, adamw, not 'adagrad'."


def test_activation_without_closed_form_falls_back_to_autograd(lab_split):
    training, _ = lab_split
    common = dict(hidden=[6], activation="elu", optimizer="sgd", lr=0.05, epochs=3, verbose=False)
    together = nf.mlp("body_mass_g ~ .", training, seed=2, n_models=2, **common)
    alone = nf.mlp("body_mass_g ~ .", training, seed=3, **common)
    assert _max_difference(together.models()[1], alone.model) < 1e-5


def test_train_drops_only_the_models_that_diverge_and_they_never_touch_the_others(lab_split):
    from nnfit.train import ensemble
    from nnfit.mlpfit import prepare

    prepared = prepare("body_mass_g ~ .", lab_split[0])
    common = dict(X=prepared.X, y=prepared.y, task="regression", n_outputs=1, hidden=[6], activation="relu",
                  optimizer="rmsprop", epochs=3, batch_size=32, device="cpu", threads=1)
    net, records, _, _, diverged = ensemble.fit(dropouts=[[0.0]] * 3, lr=[0.01, 1e6, 0.01], weight_decay=[0.0] * 3,
                                                seeds=[1, 2, 3], on_divergence="drop", **common)
    assert list(diverged) == [1]
    assert str(diverged[1]).startswith("The training loss of model 2 of 3 grew to ")
    assert diverged[1].epoch == 1
    assert len({row[2] for row in records}) == 3  # the others trained on to the end
    kept, kept_records = ensemble.keep_models(net, records, [0, 2])
    assert kept.n_models == 2 and sorted({row[4] for row in kept_records}) == [1, 2]
    alone, *_ = ensemble.fit(dropouts=[[0.0]] * 2, lr=[0.01, 0.01], weight_decay=[0.0] * 2, seeds=[1, 3], **common)
    assert _max_difference(kept, alone) == 0.0  # stacked models never mix: bit for bit the same


def test_train_raises_for_the_first_model_that_diverges_by_default(lab_split):
    from nnfit.train import ensemble
    from nnfit.errors import DivergenceError
    from nnfit.mlpfit import prepare

    prepared = prepare("body_mass_g ~ .", lab_split[0])
    with pytest.raises(DivergenceError) as error:
        ensemble.fit(prepared.X, prepared.y, "regression", 1, [6], "relu", [[0.0]] * 2, "rmsprop", [0.01, 1e6],
                     [0.0] * 2, 3, 32, [1, 2], names=["the first", "the second"], device="cpu", threads=1)
    assert str(error.value).startswith("The training loss of the second grew to ")
    assert str(error.value).endswith(
        "Try a lower learning rate (e.g. lr=100000 instead of 1e+06), or scale the response (standardize y, e.g. "
        "nf.Design(..., scale_response=True)) and the predictors. To keep the other models and drop the ones that "
        "diverge, pass on_divergence='drop'."
    )


def test_ensemble_predictions_are_the_same_alone_and_among_other_rows(lab_split):
    training, testing = lab_split
    fit = nf.mlp("species ~ .", training, hidden=5, epochs=2, seed=1, n_models=4, verbose=False)
    full = fit._outputs(fit.design.transform(testing, response=False).inputs())
    some = fit._outputs(fit.design.transform(testing.iloc[[3, 1]], response=False).inputs())
    assert full.shape[0] == 4 and np.array_equal(some, full[:, [3, 1]])

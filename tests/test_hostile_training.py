"""The hostile catalogue, training part: arguments that would have raised raw tracebacks,
training that diverges in every engine, checkpoints of another run, and predictions that
depended on the other rows passed with them. Each case asserts the exception class and its
exact message (a regex where the message holds a loss value), and what was kept."""

import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit.train.callbacks import AutoResume, Callback
from nnfit.errors import ArgumentError, DivergenceError, ModelFileError, TrainingError
from nnfit.sklearn import MLPClassifier, MLPRegressor

FORMULA = "body_mass_g ~ . - year"
SCALE = r"or scale the response \(standardize y, e\.g\. nf\.Design\(\.\.\., scale_response=True\)\) and the predictors\."
DROP = r" To keep the other models and drop the ones that diverge, pass on_divergence='drop'\."
NUMBER = r"[0-9.]+(e[+-][0-9]+)?"
GREW = rf"grew to {NUMBER} in epoch 1, more than 10,000 times the untrained network's loss \({NUMBER}\)"


@pytest.fixture(scope="module")
def penguins_complete():
    return nf.datasets.load("penguins").dropna()


def tiny(**options):
    return dict(dict(hidden=4, epochs=2, seed=1, verbose=False), **options)


def small_data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g)
    return X, X.sum(dim=1, keepdim=True)


def linear():
    return nf.setup(nn.Linear, loss="mse", optimizer="sgd").set_hparams(in_features=3, out_features=1)


# ---------------------------------------------------------------------- arguments: one check, one message
MLP_ARGUMENTS = [
    ({"lr": -0.01}, "lr must be a finite number above 0, not -0.01."),
    ({"lr": float("nan")}, "lr must be a finite number above 0, not nan."),
    ({"lr": float("inf")}, "lr must be a finite number above 0, not inf."),
    ({"lr": 0}, "lr must be a finite number above 0, not 0."),
    ({"lr": "0.1"}, "lr must be a finite number above 0, not '0.1'."),
    ({"lr": True}, "lr must be a finite number above 0, not True."),
    ({"weight_decay": -1}, "weight_decay must be a finite number at least 0, not -1."),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number at least 0, not nan."),
    ({"epochs": 0}, "epochs must be a positive whole number, not 0."),
    ({"epochs": 2.5}, "epochs must be a positive whole number, not 2.5."),
    ({"epochs": (3, 1)}, "epochs=(min, max) needs min <= max; got (3, 1)."),
    ({"batch_size": 0}, "batch_size must be a positive whole number or None, not 0."),
    ({"batch_size": -5}, "batch_size must be a positive whole number or None, not -5."),
    ({"batch_size": 1.5}, "batch_size must be a positive whole number or None, not 1.5."),
    ({"n_models": 0}, "n_models must be a positive whole number, not 0."),
    ({"n_models": -2}, "n_models must be a positive whole number, not -2."),
    ({"n_models": 2.5}, "n_models must be a positive whole number, not 2.5."),
    ({"n_models": True}, "n_models must be a positive whole number, not True."),
    ({"on_divergence": "skip"}, "on_divergence must be 'error' (raise DivergenceError) or 'drop' (keep the models that "
                                "did not diverge), not 'skip'."),
    ({"n_models": 2, "lr": -0.01}, "lr must be a finite number above 0, not -0.01."),
    ({"n_models": 2, "lr": float("nan")}, "lr must be a finite number above 0, not nan."),
    ({"n_models": 2, "batch_size": 0}, "batch_size must be a positive whole number or None, not 0."),
    ({"n_models": 2, "epochs": 0}, "epochs must be a positive whole number, not 0."),
    ({"n_models": 2, "weight_decay": -0.5}, "weight_decay must be a finite number at least 0, not -0.5."),
]


@pytest.mark.parametrize("options, message", MLP_ARGUMENTS, ids=[repr(o) for o, _ in MLP_ARGUMENTS])
def test_mlp_refuses_a_training_argument_before_any_work(penguins_complete, options, message):
    with pytest.raises(ArgumentError) as error:
        nf.mlp(FORMULA, penguins_complete, **dict(tiny(), **options))
    assert str(error.value) == message


CV_ARGUMENTS = [
    ({"lr": -1}, "lr must be a finite number above 0, not -1."),
    ({"lr": float("nan")}, "lr must be a finite number above 0, not nan."),
    ({"epochs": 0}, "epochs must be a positive whole number, not 0."),
    ({"batch_size": 0}, "batch_size must be a positive whole number or None, not 0."),
    ({"folds": 1}, "folds must be a whole number of at least 2, not 1."),
    ({"folds": 2.5}, "folds must be a whole number of at least 2, not 2.5."),
    ({"on_divergence": None}, "on_divergence must be 'error' (raise DivergenceError) or 'drop' (keep the models that "
                              "did not diverge), not None."),
    ({"n_models": 3}, "cross_validate chooses n_models itself; leave it out."),
    ({"colour": "red"}, "Unknown options for cross_validate: colour."),
]


@pytest.mark.parametrize("options, message", CV_ARGUMENTS, ids=[repr(o) for o, _ in CV_ARGUMENTS])
def test_cross_validate_refuses_a_training_argument(penguins_complete, options, message):
    with pytest.raises(ArgumentError) as error:
        nf.cross_validate(FORMULA, penguins_complete, **dict(dict(folds=2, epochs=1, seed=1), **options))
    assert str(error.value) == message


GRID_ARGUMENTS = [
    ({"lr": [0.01, -1]}, "lr must be a finite number above 0, not -1."),
    ({"lr": [float("inf")]}, "lr must be a finite number above 0, not inf."),
    ({"weight_decay": [0, -0.1]}, "weight_decay must be a finite number at least 0, not -0.1."),
    ({"seeds": 0}, "seeds must be a positive whole number, not 0."),
    ({"epochs": 0}, "epochs must be a positive whole number, not 0."),
    ({"batch_size": -1}, "batch_size must be a positive whole number or None, not -1."),
    ({"foo": 1}, "Unknown options for grid: foo; it takes optimizer, epochs, batch_size, scale, device, threads and "
                 "verbose besides the grid's own arguments."),
    ({"on_divergence": "keep"}, "on_divergence must be 'error' (raise DivergenceError) or 'drop' (keep the models that "
                                "did not diverge), not 'keep'."),
]


@pytest.mark.parametrize("options, message", GRID_ARGUMENTS, ids=[repr(o) for o, _ in GRID_ARGUMENTS])
def test_grid_refuses_a_training_argument(penguins_complete, options, message):
    with pytest.raises(ArgumentError) as error:
        nf.grid(FORMULA, penguins_complete, **dict(dict(hidden=[4], epochs=1, seed=1, refit=False), **options))
    assert str(error.value) == message


SKLEARN_ARGUMENTS = [
    (MLPRegressor, {"lr": -1}, "lr must be a finite number above 0, not -1."),
    (MLPRegressor, {"lr": float("nan")}, "lr must be a finite number above 0, not nan."),
    (MLPClassifier, {"lr": 0.0}, "lr must be a finite number above 0, not 0.0."),
    (MLPClassifier, {"weight_decay": -1e-3}, "weight_decay must be a finite number at least 0, not -0.001."),
    (MLPRegressor, {"epochs": 0}, "epochs must be a positive whole number, not 0."),
    (MLPClassifier, {"batch_size": 0}, "batch_size must be a positive whole number or None, not 0."),
]


@pytest.mark.parametrize("estimator, options, message", SKLEARN_ARGUMENTS,
                         ids=[f"{e.__name__}-{o!r}" for e, o, _ in SKLEARN_ARGUMENTS])
def test_sklearn_estimators_refuse_a_training_argument(estimator, options, message):
    X = np.random.default_rng(0).normal(size=(20, 2))
    y = X[:, 0] if estimator is MLPRegressor else np.where(X[:, 0] > 0, "yes", "no")
    with pytest.raises(ArgumentError) as error:
        estimator(**dict(dict(epochs=1, random_state=0), **options)).fit(X, y)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: linear().set_opt_hparams(lr=-1.0).fit(small_data(), epochs=1, verbose=False),
         "The optimizer sgd cannot be built with set_opt_hparams(lr=-1.0): Invalid learning rate: -1.0."),
        (lambda: linear().set_opt_hparams(lr=-1.0).fit(small_data(), epochs=1, n_models=2, verbose=False),
         "The optimizer sgd cannot be built with set_opt_hparams(lr=-1.0): Invalid learning rate: -1.0."),
        (lambda: linear().set_opt_hparams(lr=0.1, momentum=-1).fit(small_data(), epochs=1, verbose=False),
         "The optimizer sgd cannot be built with set_opt_hparams(lr=0.1, momentum=-1): Invalid momentum value: -1."),
        (lambda: linear().fit(small_data(), epochs=1, batch_size=0, verbose=False),
         "batch_size must be a positive whole number or None, not 0."),
        (lambda: linear().fit(small_data(), epochs=1, accumulate=0, verbose=False),
         "accumulate must be a positive whole number, not 0."),
        (lambda: linear().fit(small_data(), epochs=1, n_models=0, verbose=False),
         "n_models must be a positive whole number, not 0."),
        (lambda: linear().fit(small_data(), epochs=1, n_models=2, batch_size=0, verbose=False),
         "batch_size must be a positive whole number or None, not 0."),
        (lambda: nf.cross_validate(linear(), small_data(), folds=3, epochs=0),
         "epochs must be a positive whole number, not 0."),
        (lambda: AutoResume("state", every=0), "every must be a positive whole number of epochs, not 0."),
    ],
    ids=["lr", "lr-n_models", "momentum", "batch_size", "accumulate", "n_models", "n_models-batch_size",
         "cv-learner-epochs", "autoresume-every"],
)
def test_learner_arguments_are_nnfit_errors(call, message):
    with pytest.raises(ArgumentError) as error:
        call()
    assert str(error.value) == message


def test_numpy_whole_numbers_are_whole_numbers(penguins_complete):
    fit = nf.mlp(FORMULA, penguins_complete, **tiny(epochs=np.int64(2), batch_size=np.int32(64)))
    assert fit.settings["epochs"] == 2 and len({row[2] for row in fit.history}) == 2


# ---------------------------------------------------------------------- divergence, in every engine
def test_the_issue_repro_one_model_explodes_loudly(penguins_complete):
    """nf.mlp(lr=1e6, optimizer="rmsprop") returned MAE 4.6e17 g without a word."""
    with pytest.raises(DivergenceError) as error:
        nf.mlp(FORMULA, penguins_complete, lr=1e6, optimizer="rmsprop", epochs=5, seed=1, verbose=False)
    assert re.fullmatch(
        rf"The training loss grew to {NUMBER} in epoch 1, batch \d+, more than 10,000 times the untrained network's "
        rf"loss \({NUMBER}\); the loss before it was {NUMBER}, in epoch 1, batch \d+\. Training stopped and the model "
        rf"keeps its weights from the start of epoch 1\. Try a lower learning rate \(e\.g\. lr=100000 instead of "
        rf"1e\+06\), {SCALE}",
        str(error.value),
    )
    assert error.value.model is not None and all(torch.isfinite(p).all() for p in error.value.model.parameters())


@pytest.mark.parametrize("formula", ["species ~ . - year", "sex ~ . - year"], ids=["multiclass", "binary"])
def test_a_classifier_that_explodes_is_stopped(penguins_complete, formula):
    with pytest.raises(DivergenceError) as error:
        nf.mlp(formula, penguins_complete, lr=1e6, epochs=3, seed=1, verbose=False)
    assert re.fullmatch(rf"The training loss grew to {NUMBER} in epoch 1, batch \d+, more than 10,000 times .*{SCALE}",
                        str(error.value))


def test_an_ensemble_member_that_diverges_is_named(penguins_complete):
    """n_models=3 with a divergent rate returned all-NaN predictions silently."""
    with pytest.raises(DivergenceError) as error:
        nf.mlp(FORMULA, penguins_complete, lr=1e6, epochs=3, seed=1, n_models=3, verbose=False)
    assert re.fullmatch(
        rf"The training loss of model 1 of 3 {GREW}\. Training stopped\. Try a lower learning rate "
        rf"\(e\.g\. lr=100000 instead of 1e\+06\), {SCALE}{DROP}",
        str(error.value),
    )


def test_a_non_finite_ensemble_loss_is_named(penguins_complete):
    with pytest.raises(DivergenceError) as error:
        nf.mlp(FORMULA, penguins_complete, lr=1e30, epochs=3, seed=1, n_models=2, verbose=False)
    assert re.fullmatch(
        rf"The training loss of model 1 of 2 became nan in epoch 1\. Training stopped\. Try a lower learning rate "
        rf"\(e\.g\. lr=1e\+29 instead of 1e\+30\), {SCALE}{DROP}",
        str(error.value),
    )


def test_an_ensemble_where_every_member_diverges_has_nothing_to_drop_to(penguins_complete):
    with pytest.raises(DivergenceError) as error:
        nf.mlp(FORMULA, penguins_complete, lr=1e6, epochs=3, seed=1, n_models=3, on_divergence="drop", verbose=False)
    assert re.fullmatch(
        rf"Every one of the 3 models diverged, so none is left to keep; the first: The training loss of model 1 of 3 "
        rf"{GREW}\. Training stopped\. Try a lower learning rate \(e\.g\. lr=100000 instead of 1e\+06\), {SCALE}",
        str(error.value),
    )


def test_ensemble_drop_keeps_the_members_that_did_not_diverge(penguins_complete):
    from nnfit.mlpfit import fit_models, prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(FORMULA, penguins_complete)
    with pytest.warns(UserWarning) as caught:
        fit = fit_models(prepared, [4], "relu", [0.0] * 3, "rmsprop", [0.01, 1e6, 0.01], [0.0] * 3, 3, 32, None,
                        [1, 2, 3], "cpu", 1, FORMULA, on_divergence="drop")
    assert [str(w.message) for w in caught] == [
        "1 of 3 models diverged and were dropped (model 2 of 3); the 2 others are kept, numbered 1 to 2. "
        "fit.settings['dropped'] says why."
    ]
    assert list(fit.settings["dropped"]) == ["model 2 of 3"]
    assert re.fullmatch(rf"The training loss of model 2 of 3 {GREW}\. Training stopped\. .*{SCALE}",
                        fit.settings["dropped"]["model 2 of 3"])
    assert fit.n_models == 2 and fit.settings["n_models"] == 2 and fit.settings["lr"] == 0.01
    assert sorted({row[4] for row in fit.history}) == [1, 2]
    assert np.isfinite(fit.predict(penguins_complete).to_numpy()).all()
    alone = fit_models(prepared, [4], "relu", [0.0] * 2, "rmsprop", [0.01, 0.01], [0.0] * 2, 3, 32, None, [1, 3],
                      "cpu", 1, FORMULA)
    assert np.allclose(fit.predict(penguins_complete), alone.predict(penguins_complete), rtol=1e-5)


def test_a_fold_that_diverges_is_named(penguins_complete):
    """cross_validate with a divergent rate returned all-NaN summaries silently."""
    with pytest.raises(DivergenceError) as error:
        nf.cross_validate(FORMULA, penguins_complete, folds=3, lr=1e6, epochs=3, seed=1)
    assert re.fullmatch(
        rf"The training loss of fold 1 of 3 {GREW}\. Training stopped\. Try a lower learning rate "
        rf"\(e\.g\. lr=100000 instead of 1e\+06\), {SCALE}{DROP}",
        str(error.value),
    )


def test_cross_validation_where_every_fold_diverges(penguins_complete):
    with pytest.raises(DivergenceError) as error:
        nf.cross_validate(FORMULA, penguins_complete, folds=3, lr=1e6, epochs=3, seed=1, on_divergence="drop")
    assert re.fullmatch(
        rf"Every one of the 3 folds diverged, so none is left to score; the first: The training loss of fold 1 of 3 "
        rf"{GREW}\. Training stopped\. Try a lower learning rate \(e\.g\. lr=100000 instead of 1e\+06\), {SCALE}",
        str(error.value),
    )


def poisoned(pred, target):
    """MSE, but infinite for a batch that holds the marked row (target 999)."""
    mse = ((pred - target) ** 2).mean()
    return torch.where((target > 900).any(), torch.full_like(mse, float("inf")), mse)


def test_cross_validation_drop_keeps_the_folds_that_did_not_diverge():
    from nnfit.folds import assign_folds

    X, y = small_data()
    y[7] = 999.0  # in the training rows of every fold but the one that holds it out
    learner = nf.setup(nn.Linear, loss=poisoned, optimizer="sgd").set_hparams(in_features=3, out_features=1)
    clean = int(assign_folds(None, len(X), 3, 1, stratify=False)[7])
    dropped = [f"fold {k + 1} of 3" for k in range(3) if k != clean]
    with pytest.warns(UserWarning) as caught:
        cv = nf.cross_validate(learner, (X, y), folds=3, epochs=2, seed=1, on_divergence="drop")
    assert [str(w.message) for w in caught] == [
        f"2 of 3 folds diverged and were left out ({', '.join(dropped)}); the results hold the others, and "
        ".dropped says why."
    ]
    assert list(cv.dropped) == dropped
    assert cv.folds["fold"].tolist() == [clean + 1]
    assert sorted(cv.metrics["model"].unique()) == [clean + 1]
    for name in dropped:
        assert cv.dropped[name].startswith(f"The training loss of {name} became inf in epoch 1. Training stopped.")
    with pytest.raises(DivergenceError) as error:
        nf.cross_validate(learner, (X, y), folds=3, epochs=2, seed=1)
    first = min(k for k in range(3) if k != clean)
    assert str(error.value) == (
        f"The training loss of fold {first + 1} of 3 became inf in epoch 1. Training stopped. Try a lower learning "
        "rate (e.g. lr=0.0001 instead of 0.001), or scale the response (standardize y, e.g. "
        "nf.Design(..., scale_response=True)) and the predictors. To keep the other models and drop the ones that "
        "diverge, pass on_divergence='drop'."
    )


def test_a_grid_cell_that_diverges_is_named(penguins_complete):
    with pytest.raises(DivergenceError) as error:
        nf.grid(FORMULA, penguins_complete, hidden=[5, 20], lr=[0.01, 1e6], epochs=2, seed=1, refit=False)
    assert re.fullmatch(rf"The training loss of grid cell hidden=\[5\], lr=1e\+06 {GREW}\. Training stopped\. .*{DROP}",
                        str(error.value))


def test_grid_drop_keeps_the_cells_that_did_not_diverge(penguins_complete):
    with pytest.warns(UserWarning) as caught:
        result = nf.grid(FORMULA, penguins_complete, hidden=[5, 20], lr=[0.01, 1e6], epochs=2, seed=1, refit=False,
                         on_divergence="drop")
    names = ["grid cell hidden=[5], lr=1e+06", "grid cell hidden=[20], lr=1e+06"]
    assert [str(w.message) for w in caught if "diverged" in str(w.message)] == [
        f"2 of 4 models diverged and were left out ({', '.join(names)}); the results hold the others, and "
        ".dropped says why."
    ]
    assert list(result.dropped) == names
    assert result.results["lr"].tolist() == [0.01, 0.01]
    assert result.results["hidden"].tolist() == [[5], [20]]
    assert np.isfinite(result.results["mae"]).all()
    assert repr(result).endswith(f"; left out, their training diverged: {', '.join(names)}")


def test_a_grid_where_every_model_diverged(penguins_complete):
    with pytest.raises(DivergenceError) as error:
        nf.grid(FORMULA, penguins_complete, hidden=[4], lr=1e6, seeds=2, epochs=2, seed=1, on_divergence="drop")
    assert re.fullmatch(
        rf"Every model of the grid diverged, so there is nothing to choose from; the first: The training loss of grid "
        rf"cell hidden=\[4\], lr=1e\+06, seed 1 {GREW}\. Training stopped\. .*{SCALE}",
        str(error.value),
    )


def test_learner_n_models_names_the_member_that_diverges():
    with pytest.raises(DivergenceError) as error:
        linear().set_opt_hparams(lr=100.0).fit(small_data(), epochs=5, seed=1, n_models=3, verbose=False)
    assert re.fullmatch(
        rf"The training loss of model 1 of 3 {GREW}\. Training stopped\. Try a lower learning rate "
        rf"\(e\.g\. lr=10 instead of 100\), {SCALE}{DROP}",
        str(error.value),
    )


def test_a_scikit_learn_estimator_that_explodes_is_stopped():
    X, y = small_data()
    with pytest.raises(DivergenceError) as error:
        MLPRegressor(lr=1e6, epochs=3, random_state=0).fit(X.numpy(), y.numpy().ravel())
    assert re.fullmatch(rf"The training loss grew to {NUMBER} in epoch 1, batch \d+, more than 10,000 times .*{SCALE}",
                        str(error.value))


def test_a_fit_that_learns_normally_is_never_stopped(penguins_complete):
    fit = nf.mlp(FORMULA, penguins_complete, hidden=8, epochs=30, seed=1, verbose=False)
    losses = [value for split, name, _, value in fit.history if split == "train" and name == "loss"]
    assert len(losses) == 30 and losses[-1] < losses[0]


# ---------------------------------------------------------------------- checkpoints of another run
class Crash(Callback):
    def on_epoch_end(self, ctx):
        if ctx.epoch + 1 == 2:
            raise RuntimeError("power cut")


def mass(data, callbacks, **options):
    return nf.mlp(FORMULA, data, **dict(tiny(epochs=4, seed=2), callbacks=callbacks, **options))


@pytest.mark.parametrize(
    "change, text",
    [
        ({"lr": 0.001}, "lr changed from 0.01 to 0.001"),
        ({"seed": 5}, "seed changed from 2 to 5"),
        ({"epochs": 6}, "epochs changed from 4 to 6"),
    ],
    ids=["lr", "seed", "epochs"],
)
def test_auto_resume_of_nf_mlp_refuses_another_run_and_leaves_its_checkpoint(penguins_complete, tmp_path, change, text):
    with pytest.raises(TrainingError, match="power cut"):
        mass(penguins_complete, [AutoResume(tmp_path), Crash()])
    before = (tmp_path / "checkpoint.nnfit").read_bytes()
    with pytest.raises(ModelFileError) as error:
        mass(penguins_complete, [AutoResume(tmp_path)], **change)
    assert str(error.value) == (
        f"The checkpoint {str(tmp_path / 'checkpoint.nnfit')!r} belongs to another run: {text}; delete it, give "
        "AutoResume another folder, or pass AutoResume(..., on_mismatch='restart') to set it aside and start afresh."
    )
    assert (tmp_path / "checkpoint.nnfit").read_bytes() == before


def test_auto_resume_of_nf_mlp_refuses_other_data(penguins_complete, tmp_path):
    with pytest.raises(TrainingError, match="power cut"):
        mass(penguins_complete, [AutoResume(tmp_path), Crash()])
    before = (tmp_path / "checkpoint.nnfit").read_bytes()
    other = penguins_complete.copy()
    other.iloc[0, other.columns.get_loc("body_mass_g")] += 1.0
    with pytest.raises(ModelFileError, match=r"belongs to another run: data hash changed from [0-9a-f]{16} to [0-9a-f]{16};"):
        mass(other, [AutoResume(tmp_path)])
    assert (tmp_path / "checkpoint.nnfit").read_bytes() == before


# ---------------------------------------------------------------------- a row's prediction is its own
def test_nf_mlp_predictions_do_not_depend_on_the_other_rows(penguins_complete):
    regression = nf.mlp(FORMULA, penguins_complete, **tiny())
    classes = nf.mlp("species ~ . - year", penguins_complete, **tiny())
    ensemble = nf.mlp("species ~ . - year", penguins_complete, **tiny(n_models=3))
    order = np.random.default_rng(0).permutation(len(penguins_complete))
    for fit, kind in [(regression, "response"), (classes, "prob"), (ensemble, "prob")]:
        full = fit.predict(penguins_complete, type=kind)
        for rows in ([5], [5, 0, 9], list(order), list(range(200))):
            part = fit.predict(penguins_complete.iloc[rows], type=kind)
            assert np.array_equal(np.asarray(part), np.asarray(full.iloc[rows]))  # to the bit


def test_fitted_predict_does_not_depend_on_the_batches():
    X, y = small_data(n=300)
    fitted = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=3, hidden=16).fit((X, y), epochs=2, seed=1, verbose=False)
    full = fitted.predict(X)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X), batch_size=7)
    assert torch.equal(fitted.predict(loader), full)
    assert torch.equal(fitted.predict(X[[17]]), full[[17]])
    reverse = torch.arange(299, -1, -1)
    assert torch.equal(fitted.predict(X[reverse]), full[reverse])


def test_scikit_learn_order_invariance_with_the_other_core_busy():
    from sklearn.utils.estimator_checks import check_methods_sample_order_invariance, check_methods_subset_invariance

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for state in range(5):
            for estimator in (MLPClassifier(epochs=3, random_state=state), MLPRegressor(epochs=3, random_state=state)):
                check_methods_sample_order_invariance(type(estimator).__name__, estimator)
                check_methods_subset_invariance(type(estimator).__name__, estimator)
    finally:
        busy.kill()
        busy.wait()


# ---------------------------------------------------------------------- polars objects that are not frames
LAZY = "data must be a data frame, not a polars LazyFrame; call .collect() first."
SERIES = "data must be a data frame, not a polars Series; pass a data frame (series.to_frame())."


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda frame: nf.cross_validate(FORMULA, frame.lazy(), folds=2, epochs=1), LAZY),
        (lambda frame: nf.cross_validate(FORMULA, frame["body_mass_g"], folds=2, epochs=1), SERIES),
        (lambda frame: nf.grid(FORMULA, frame.lazy(), hidden=[4], epochs=1), LAZY),
        (lambda frame: nf.grid(FORMULA, frame["body_mass_g"], hidden=[4], epochs=1), SERIES),
        (lambda frame: MLPRegressor(formula=FORMULA, epochs=1).fit(frame.lazy()), LAZY),
        (lambda frame: MLPRegressor(formula=FORMULA, epochs=1, random_state=0).fit(frame).predict(frame.lazy()), LAZY),
    ],
    ids=["cross_validate-lazy", "cross_validate-series", "grid-lazy", "grid-series", "sklearn-fit-lazy",
         "sklearn-predict-lazy"],
)
def test_a_polars_lazy_frame_or_series_is_refused_by_name(penguins_complete, call, message):
    pl = pytest.importorskip("polars")
    with pytest.raises(nf.errors.ArgumentTypeError) as error:
        call(pl.from_pandas(penguins_complete))
    assert str(error.value) == message

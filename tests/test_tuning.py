import numpy as np
import pandas as pd
import pytest

import nnfit as nf
from nnfit.errors import ArgumentError
from nnfit.tuning import _assign_folds

pytestmark = pytest.mark.filterwarnings("ignore::nnfit.errors.MissingValuesWarning")


@pytest.fixture(scope="module")
def penguins333():
    return nf.datasets.load("penguins").dropna().drop(columns="year").reset_index(drop=True)


def test_each_fold_equals_a_model_fitted_on_its_training_rows(penguins333):
    options = dict(hidden=[8], activation="tanh", optimizer="rmsprop", lr=0.01, epochs=4)
    cv = nf.cross_validate("body_mass_g ~ .", penguins333, folds=4, seed=5, **options)
    assignment = _assign_folds(None, len(penguins333), 4, 5, stratify=False)
    for k in range(4):
        training = penguins333[assignment != k]
        held_out = penguins333[assignment == k]
        alone = nf.mlp("body_mass_g ~ .", training, seed=5 + k, verbose=False, **options)
        expected = alone.evaluate(held_out)
        row = cv.folds.iloc[k]
        assert row["n"] == len(held_out)
        assert row["mae"] == pytest.approx(expected["mae"], rel=1e-4)
        assert row["r2"] == pytest.approx(expected["r2"], rel=1e-4)


def test_summary_is_mean_and_sd_of_folds(penguins333):
    cv = nf.cross_validate("body_mass_g ~ .", penguins333, folds=5, hidden=8, epochs=3, seed=1)
    assert list(cv.folds.columns) == ["fold", "n", "mae", "rmse", "r2"]
    assert cv.folds["n"].sum() == 333
    summary = cv.summary.set_index("metric")
    assert summary.loc["mae", "mean"] == pytest.approx(cv.folds["mae"].mean())
    assert summary.loc["rmse", "sd"] == pytest.approx(cv.folds["rmse"].std(ddof=1))
    assert set(cv.metrics["model"]) == set(range(1, 6))
    assert set(cv.metrics["set"]) == {"train", "valid"}


def test_classifier_folds_are_stratified(penguins333):
    codes = penguins333["species"].cat.codes.to_numpy()
    assignment = _assign_folds(codes, len(codes), 10, 1, stratify=True)
    for k in range(10):
        counts = np.bincount(codes[assignment == k], minlength=3)
        assert (np.abs(counts - np.bincount(codes) / 10) <= 1).all()
    cv = nf.cross_validate("species ~ .", penguins333, folds=5, hidden=[10, 5], epochs=30, seed=1)
    assert list(cv.folds.columns) == ["fold", "n", "accuracy", "log_loss"]
    assert cv.summary.set_index("metric").loc["accuracy", "mean"] > 0.9


def test_cross_validate_errors(penguins333):
    with pytest.raises(ArgumentError) as error:
        nf.cross_validate("species ~ .", penguins333, folds=100)
    assert str(error.value) == "folds=100 is more than the 68 rows of the smallest class; use at most 68 folds."
    with pytest.raises(ArgumentError) as error:
        nf.cross_validate("body_mass_g ~ .", penguins333.head(5), folds=6)
    assert str(error.value) == "folds=6 is more than the 5 rows with complete data."
    with pytest.raises(ArgumentError) as error:
        nf.cross_validate("body_mass_g ~ .", penguins333, folds=1)
    assert str(error.value) == "folds must be a whole number of at least 2, not 1."
    with pytest.raises(ArgumentError) as error:
        nf.cross_validate("body_mass_g ~ .", penguins333, folds=3, n_models=2)
    assert str(error.value) == "cross_validate chooses n_models itself; leave it out."
    with pytest.raises(ArgumentError) as error:
        nf.cross_validate("body_mass_g ~ .", penguins333, folds=3, epoch=2)
    assert str(error.value) == "Unknown options for cross_validate: epoch."


def test_grid_tries_every_combination_and_refits_the_best(penguins333):
    result = nf.grid("body_mass_g ~ .", penguins333, lr=[0.001, 0.01], dropout=[0.0, 0.3], weight_decay=[0.0, 0.01],
                     seeds=2, epochs=5, seed=1)
    results = result.results
    assert len(results) == 8
    assert results[["lr", "dropout", "weight_decay"]].drop_duplicates().shape[0] == 8
    assert {"mae", "mae_sd", "rmse", "r2"} <= set(results.columns)
    best = results.loc[results["mae"].idxmin()]
    assert result.best == {"hidden": [50], "activation": "relu", "lr": best["lr"], "dropout": best["dropout"],
                           "weight_decay": best["weight_decay"]}
    assert isinstance(result.fit, nf.MLPFit) and result.fit.settings["lr"] == best["lr"]


def test_grid_cell_equals_the_model_trained_alone(penguins333):
    """Every cell starts from the same seed (common random numbers); cell 2 equals nf.mlp with its lr."""
    result = nf.grid("body_mass_g ~ .", penguins333, hidden=[[6]], activation="tanh", lr=[0.003, 0.03], epochs=3,
                     seed=7, refit=False)
    fit = nf.mlp("body_mass_g ~ .", penguins333, hidden=6, activation="tanh", lr=0.03, epochs=3, seed=7, valid=0.2,
                 verbose=False)
    history = fit.metrics
    valid_mae = history[(history["set"] == "valid") & (history["metric"] == "mae") & (history["epoch"] == 3)]["value"].item()
    assert result.results.iloc[1]["mae"] == pytest.approx(valid_mae, rel=1e-4)


def test_grid_groups_shapes_and_picks_log_loss_for_classifiers(penguins333):
    result = nf.grid("species ~ .", penguins333, hidden=[[10, 5], 20], lr=[0.01, 0.03], epochs=5, seed=1, refit=False)
    assert result.metric == "log_loss"
    assert [h for h in result.results["hidden"]] == [[10, 5], [10, 5], [20], [20]]
    assert result.fit is None


def test_empty_grid(penguins333):
    with pytest.raises(ArgumentError) as error:
        nf.grid("body_mass_g ~ .", penguins333, lr=[])
    assert str(error.value) == "The grid is empty: give at least one value for each of hidden, lr, dropout, weight_decay."


def test_cross_validation_names_the_fold_that_diverges(penguins333):
    from nnfit.errors import DivergenceError

    with pytest.raises(DivergenceError, match=r"^The training loss of fold 1 of 2 grew to .* in epoch 1, more than "
                                              r"10,000 times the untrained network's loss"):
        nf.cross_validate("body_mass_g ~ .", penguins333, folds=2, lr=1e6, epochs=2, seed=1)


def test_grid_results_leave_out_diverged_models_and_say_so(penguins333):
    with pytest.warns(UserWarning, match=r"^1 of 2 models diverged and were left out \(grid cell hidden=\[4\], "
                                         r"lr=1e\+06\); the results hold the others, and \.dropped says why\.$"):
        result = nf.grid("body_mass_g ~ .", penguins333, hidden=[4], lr=[0.01, 1e6], epochs=2, seed=1, refit=False,
                         on_divergence="drop")
    assert list(result.dropped) == ["grid cell hidden=[4], lr=1e+06"]
    assert result.results[["lr", "mae"]].shape == (1, 2) and result.best["lr"] == 0.01


def test_grid_cell_names_show_lr_and_the_axes_that_vary():
    from nnfit.tuning import _cell_name

    assert _cell_name([20], "relu", (1e6, 0.0, 0.0), [], None) == "grid cell hidden=[20], lr=1e+06"
    assert _cell_name([4, 2], "tanh", (None, 0.4, 0.01), ["activation", "dropout"], 1) == (
        "grid cell hidden=[4, 2], activation='tanh', dropout=0.4, seed 2"
    )


def test_cv_result_prints_the_folds_it_left_out():
    result = nf.tuning.CVResult(pd.DataFrame({"fold": [1], "n": [10], "mae": [2.0]}), "y ~ x", 0.1, None,
                                dropped={"fold 2 of 2": "The training loss of fold 2 of 2 became nan in epoch 1."})
    assert repr(result).splitlines()[-1] == "  left out, their training diverged: fold 2 of 2"


def test_a_grid_whose_cells_hold_one_model_each_scores_them(penguins, quiet):
    """hidden=[[5], [10]] with one seed and one rate: each cell is a stack of one network."""
    search = nf.grid("species ~ . - year", penguins.dropna(), hidden=[[5], [10]], epochs=2, seed=1)
    assert search.results["hidden"].tolist() == [[5], [10]]
    assert search.results["accuracy"].between(0, 1).all()

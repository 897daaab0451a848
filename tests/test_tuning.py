import numpy as np
import pandas as pd
import pytest

import nnfit as nf
from nnfit.errors import ArgumentError
from nnfit.folds import assign_folds

pytestmark = pytest.mark.filterwarnings("ignore::nnfit.errors.MissingValuesWarning")


@pytest.fixture(scope="module")
def penguins333():
    return nf.datasets.load("penguins").dropna().drop(columns="year").reset_index(drop=True)


def test_each_fold_equals_a_model_fitted_on_its_training_rows(penguins333):
    options = dict(hidden=[8], activation="tanh", optimizer="rmsprop", lr=0.01, epochs=4)
    cv = nf.cross_validate("body_mass_g ~ .", penguins333, folds=4, seed=5, **options)
    assignment = assign_folds(None, len(penguins333), 4, 5, stratify=False)
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
    assert list(cv.summary.columns) == ["metric", "mean", "sd", "se"]
    summary = cv.summary.set_index("metric")
    assert summary.loc["mae", "mean"] == pytest.approx(cv.folds["mae"].mean())
    assert summary.loc["rmse", "sd"] == pytest.approx(cv.folds["rmse"].std(ddof=1))
    assert set(cv.metrics["model"]) == set(range(1, 6))
    assert set(cv.metrics["set"]) == {"train", "valid"}


def test_classifier_folds_are_stratified(penguins333):
    codes = penguins333["species"].cat.codes.to_numpy()
    assignment = assign_folds(codes, len(codes), 10, 1, stratify=True)
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


def test_cv_standard_error_is_sd_over_root_folds(penguins333):
    cv = nf.cross_validate("body_mass_g ~ .", penguins333, folds=5, hidden=8, epochs=3, seed=1)
    summary = cv.summary.set_index("metric")
    for name in ("mae", "rmse", "r2"):
        scores = cv.folds[name].to_numpy()
        assert summary.loc[name, "sd"] == pytest.approx(np.std(scores, ddof=1), rel=1e-12)
        assert summary.loc[name, "se"] == pytest.approx(np.std(scores, ddof=1) / np.sqrt(5), rel=1e-12)
    mae = summary.loc["mae"]
    assert repr(cv).splitlines()[1] == f"  mae       {mae['mean']:.4g} (se {mae['se']:.3g}, sd {mae['sd']:.3g})"


GRID_FOLD_COLUMNS = ["hidden", "activation", "lr", "dropout", "weight_decay", "n_params", "mae", "mae_sd", "mae_se",
                     "rmse", "rmse_sd", "rmse_se", "r2", "r2_sd", "r2_se"]


def test_grid_with_folds_scores_each_cell_by_cross_validation(penguins333):
    """Each cell's first seed is nf.cross_validate of that cell on the same folds; best = the best CV mean."""
    result = nf.grid("body_mass_g ~ .", penguins333, hidden=[[3], [8]], activation="tanh", lr=[0.003, 0.03],
                     folds=4, epochs=3, seed=2, refit=False)
    results = result.results
    assert list(results.columns) == GRID_FOLD_COLUMNS
    assert list(result.folds.columns) == ["cell", "fold", "n", "mae", "rmse", "r2"]
    assert result.folds["cell"].tolist() == [c for c in range(4) for _ in range(4)]
    assert result.n_folds == 4 and result.rule == "min"
    for cell, row in results.iterrows():
        cv = nf.cross_validate("body_mass_g ~ .", penguins333, folds=4, hidden=row["hidden"], activation="tanh",
                               lr=row["lr"], epochs=3, seed=2)
        folds = result.folds[result.folds["cell"] == cell]
        np.testing.assert_allclose(folds["mae"], cv.folds["mae"], rtol=1e-5)
        assert folds["n"].tolist() == cv.folds["n"].tolist()
        scores = folds["mae"].to_numpy()
        assert row["mae"] == pytest.approx(scores.mean(), rel=1e-12)
        assert row["mae_sd"] == pytest.approx(np.std(scores, ddof=1), rel=1e-12)
        assert row["mae_se"] == pytest.approx(np.std(scores, ddof=1) / np.sqrt(4), rel=1e-12)
    best = results.loc[results["mae"].idxmin()]
    assert result.best == {"hidden": best["hidden"], "activation": "tanh", "lr": best["lr"], "dropout": 0.0,
                           "weight_decay": 0.0}
    assert repr(result).startswith("<nnfit GridResult> 4 combinations in ")
    assert repr(result).endswith(f"s; best by 4-fold CV mae: hidden={best['hidden']}, activation='tanh', "
                                 f"lr={best['lr']}, dropout=0.0, weight_decay=0.0")


def test_grid_with_folds_averages_seeds_within_each_fold(penguins333):
    """Seed s of fold k starts from seed + s + k, on folds drawn with seed: each equals nf.mlp on its rows."""
    result = nf.grid("species ~ .", penguins333, hidden=[[4]], weight_decay=[0.0, 0.01], seeds=2, folds=3, epochs=2,
                     seed=1, refit=False)
    assert list(result.results.columns) == ["hidden", "activation", "lr", "dropout", "weight_decay", "n_params",
                                            "accuracy", "accuracy_sd", "accuracy_se", "log_loss", "log_loss_sd",
                                            "log_loss_se"]
    assert len(result.folds) == 6 and result.metric == "log_loss"
    codes = penguins333["species"].cat.codes.to_numpy()
    assignment = assign_folds(codes, len(codes), 3, 1, stratify=True)
    folds = result.folds[result.folds["cell"] == 1]
    for k in range(3):
        alone = [nf.mlp("species ~ .", penguins333[assignment != k], hidden=4, weight_decay=0.01, epochs=2,
                        seed=1 + s + k, verbose=False).evaluate(penguins333[assignment == k])["log_loss"]
                 for s in range(2)]
        assert folds.iloc[k]["log_loss"] == pytest.approx(np.mean(alone), rel=1e-4)


def test_one_standard_error_rule_on_a_constructed_grid():
    from nnfit.tuning import _choose

    results = pd.DataFrame({
        "n_params": [1051, 211, 211, 211, 36, 211],
        "weight_decay": [0.0, 0.0, 0.01, 0.01, 0.0, 0.01],
        "dropout": [0.0, 0.0, 0.0, 0.0, 0.0, 0.4],
        "lr": [0.01, 0.01, 0.01, 0.003, 0.01, 0.01],
        "mae": [100.0, 104.0, 109.0, 108.0, 111.0, 112.0],
        "mae_se": [10.0, 3.0, 3.0, 3.0, 3.0, 3.0],
    })
    # within 100 + 10: rows 0-3 (row 4 has fewest parameters but 111 > 110; row 5 is out too);
    # fewest parameters: rows 1-3; largest weight decay: rows 2, 3; smallest lr: row 3
    assert _choose(results, "mae", "min") == 0
    assert _choose(results, "mae", "1se") == 3
    results.loc[3, "lr"] = 0.01  # a tie in every setting: the better mean, row 3 (108) before row 2 (109)
    assert _choose(results, "mae", "1se") == 3
    accuracy = pd.DataFrame({"n_params": [91, 36, 36], "weight_decay": [0.0] * 3, "dropout": [0.0, 0.0, 0.4],
                             "lr": [None] * 3, "accuracy": [0.95, 0.94, 0.90], "accuracy_se": [0.02] * 3})
    assert _choose(accuracy, "accuracy", "min") == 0
    assert _choose(accuracy, "accuracy", "1se", default_lr=0.001) == 1  # 0.90 < 0.95 - 0.02


def test_grid_one_standard_error_rule_takes_the_simplest_cell_near_the_best(penguins333):
    result = nf.grid("body_mass_g ~ .", penguins333, hidden=[[2], [16]], weight_decay=[0.0, 0.1], folds=3,
                     rule="1se", epochs=3, seed=1)
    results = result.results
    inputs = 8  # species and island (2 dummies each), bill length and depth, flipper length, sex
    assert results["n_params"].tolist() == [(inputs + 2) * 2 + 1] * 2 + [(inputs + 2) * 16 + 1] * 2
    assert results.loc[2, "n_params"] == sum(p.numel() for p in nf.mlp(
        "body_mass_g ~ .", penguins333, hidden=16, epochs=1, seed=1, verbose=False).model.parameters())
    best = results.loc[results["mae"].idxmin()]
    near = results[results["mae"] <= best["mae"] + best["mae_se"]]
    simplest = near.sort_values(["n_params", "weight_decay", "mae"], ascending=[True, False, True]).iloc[0]
    assert (best.name, simplest.name) == (2, 3)  # [16] with weight decay 0.1, not the best mean's 0
    assert (result.best["hidden"], result.best["weight_decay"]) == (simplest["hidden"], simplest["weight_decay"])
    assert result.rule == "1se" and result.fit.settings["weight_decay"] == simplest["weight_decay"]
    assert "best by 3-fold CV mae (the simplest within one standard error of the best): " in repr(result)


def test_grid_without_folds_keeps_its_hold_out(penguins333):
    result = nf.grid("body_mass_g ~ .", penguins333, hidden=[[3]], lr=[0.003, 0.03], epochs=2, seed=1, refit=False)
    assert list(result.results.columns) == ["hidden", "activation", "lr", "dropout", "weight_decay", "n_params", "mae",
                                            "mae_sd", "rmse", "rmse_sd", "r2", "r2_sd"]
    assert result.folds is None and result.n_folds is None and result.rule == "min"
    assert " best by validation mae: " in repr(result)


GRID_FOLD_ERRORS = [
    ({"folds": 1}, "folds must be a whole number of at least 2, not 1."),
    ({"folds": 2.5}, "folds must be a whole number of at least 2, not 2.5."),
    ({"folds": True}, "folds must be a whole number of at least 2, not True."),
    ({"folds": 400}, "folds=400 is more than the 333 rows with complete data."),
    ({"folds": 3, "valid": 0.2}, ("Give valid= (one hold-out) or folds= (cross-validation), not both: with folds=3 "
                                  "each fold is held out in turn.")),
    ({"folds": 3, "rule": "best"}, ("rule must be 'min' (the best cross-validated mean) or '1se' (the simplest "
                                    "combination within one standard error of it), not 'best'.")),
    ({"folds": 3, "rule": None}, ("rule must be 'min' (the best cross-validated mean) or '1se' (the simplest "
                                  "combination within one standard error of it), not None.")),
    ({"rule": "1se"}, ("rule='1se' needs folds=: the standard error is that of the mean over cross-validation "
                       "folds (e.g. folds=5).")),
]


@pytest.mark.parametrize("options, message", GRID_FOLD_ERRORS, ids=[repr(o) for o, _ in GRID_FOLD_ERRORS])
def test_grid_fold_and_rule_errors(penguins333, options, message):
    with pytest.raises(ArgumentError) as error:
        nf.grid("body_mass_g ~ .", penguins333, hidden=[4], epochs=1, seed=1, refit=False, **options)
    assert str(error.value) == message


def test_grid_folds_for_a_classifier_are_limited_by_its_smallest_class(penguins333):
    with pytest.raises(ArgumentError) as error:
        nf.grid("species ~ .", penguins333, hidden=[4], folds=100, epochs=1, refit=False)
    assert str(error.value) == "folds=100 is more than the 68 rows of the smallest class; use at most 68 folds."


def test_grid_with_folds_leaves_out_a_cell_that_diverged(penguins333):
    names = ["grid cell hidden=[4], lr=1e+06, fold 1 of 2", "grid cell hidden=[4], lr=1e+06, fold 2 of 2"]
    with pytest.warns(UserWarning) as caught:
        result = nf.grid("body_mass_g ~ .", penguins333, hidden=[4], lr=[0.01, 1e6], folds=2, epochs=2, seed=1,
                         refit=False, on_divergence="drop")
    assert [str(w.message) for w in caught if "diverged" in str(w.message)] == [
        (f"2 of 4 models diverged and were left out ({', '.join(names)}); the results hold the others, and "
         ".dropped says why.")
    ]
    assert list(result.dropped) == names
    assert result.results["lr"].tolist() == [0.01] and result.folds["cell"].tolist() == [0, 0]
    assert result.best["lr"] == 0.01

"""nnfit.inspection: permutation importance and partial dependence, against closed forms and
against scikit-learn's ``sklearn.inspection`` on the same network and the same permutations."""

import numpy as np
import pandas as pd
import pytest

import nnfit as nf
from nnfit import inspection
from nnfit.errors import ArgumentError, ArgumentTypeError, LevelError, MissingValuesWarning
from nnfit.inspection import importance, partial_dependence

sklearn_inspection = pytest.importorskip("sklearn.inspection")
from nnfit.sklearn import MLPClassifier, MLPRegressor

PREDICTORS = ["x1", "x2", "x3", "f"]
EFFECTS = {"a": 0.0, "b": 1.0, "c": -2.0}


def simulate(n, seed):
    """y depends on x1 strongly, on x2 weakly, on x3 not at all; f shifts it by level; g is a class."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, n))
    f = rng.choice(list(EFFECTS), size=n)
    y = 3.0 * x1 + 0.5 * x2 + np.vectorize(EFFECTS.get)(f) + rng.normal(scale=0.5, size=n)
    score = x1 - x2 + np.vectorize(EFFECTS.get)(f)
    g = np.where(score < -1, "low", np.where(score < 1, "mid", "high"))
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "f": f, "y": y, "g": g, "up": np.where(score > 0, "yes", "no")})


@pytest.fixture(scope="module")
def frames():
    return simulate(500, seed=1), simulate(300, seed=2)


@pytest.fixture(scope="module")
def linear(frames):
    training, _ = frames
    return nf.mlp("y ~ x1 + x2 + x3 + f", training, hidden=[], epochs=15, seed=1, verbose=False)


@pytest.fixture(scope="module")
def network(frames):
    training, _ = frames
    return nf.mlp("y ~ x1 + x2 + x3", training, hidden=8, epochs=15, seed=1, verbose=False)


def data_units(fit, column):
    """A hidden=[] regression's coefficient of a design column in the data's units (closed form)."""
    coef = fit.coef()
    weight = coef.loc[(coef["layer"] == "output") & (coef["from"] == column), "value"].item()
    j = fit.design.columns.index(column)
    return weight * fit.design.response_scale_[0] / fit.design.scale_[j]


def adapter(fit):
    """The thinnest scikit-learn estimator over an nf.mlp fit (any number of models)."""

    class Fitted:
        def fit(self, X, y=None):
            return self

        def predict(self, X):
            return fit.predict(X).to_numpy()

    return Fitted()


def rmse_scorer(estimator, X, y):
    return -float(np.sqrt(np.mean((estimator.predict(X) - np.asarray(y)) ** 2)))


# ---------------------------------------------------------------- permutation importance
def test_importance_ranks_strong_weak_and_irrelevant_columns(frames, network):
    _, testing = frames
    result = importance(network, testing, repeats=10, seed=0)
    table = result.table.set_index("column")
    assert list(table.index) == ["x1", "x2", "x3"]
    assert table.loc["x1", "lower"] > table.loc["x2", "upper"]  # strong, clearly above weak
    assert table.loc["x2", "lower"] > 0
    assert table.loc["x3", "lower"] <= 0 <= table.loc["x3", "upper"]
    assert list(result.table.columns) == ["column", "kind", "importance", "sd", "lower", "upper"]
    assert result.metric == "rmse" and result.n == 300 and result.repeats == 10


def test_importance_interval_of_an_irrelevant_column_covers_0_on_fresh_test_sets(network):
    """The interval holds 95% of permutations; for x3, which y ignores, it covers 0 on about
    95% of new test sets (the mean's own interval, +- t sd / sqrt(repeats), on about 70%)."""
    covered = 0
    for k in range(20):
        row = importance(network, simulate(300, seed=100 + k), repeats=5, seed=k).table.set_index("column").loc["x3"]
        covered += row["lower"] <= 0 <= row["upper"]
    assert covered >= 17


def test_importance_interval_is_mean_plus_minus_t_sd_root_one_plus_one_over_repeats(frames, network):
    from scipy import stats

    _, testing = frames
    result = importance(network, testing, repeats=4, seed=5)
    drops = result.values.loc[result.table["column"]].to_numpy()
    mean, sd = drops.mean(axis=1), drops.std(axis=1, ddof=1)
    half = stats.t.ppf(0.975, 3) * sd * np.sqrt(1 + 1 / 4)
    np.testing.assert_allclose(result.table["importance"], mean, rtol=1e-12)
    np.testing.assert_allclose(result.table["sd"], sd, rtol=1e-12)
    np.testing.assert_allclose(result.table["lower"], mean - half, rtol=1e-9)
    np.testing.assert_allclose(result.table["upper"], mean + half, rtol=1e-9)
    # each repeat is the increase in evaluate()'s RMSE on that permutation
    baseline = network.evaluate(testing)["rmse"]
    assert result.baseline == pytest.approx(baseline, rel=1e-12)


def test_importance_equals_scikit_learn_on_the_same_permutations_regression(frames):
    training, testing = frames
    estimator = MLPRegressor(formula="y ~ x1 + x2 + x3 + f", hidden=[5], epochs=8, random_state=0).fit(training)
    ours = importance(estimator.fitted_model(), testing, repeats=4, seed=3)
    theirs = sklearn_inspection.permutation_importance(
        estimator, testing[PREDICTORS], testing["y"], scoring="neg_root_mean_squared_error", n_repeats=4,
        random_state=3)
    np.testing.assert_allclose(ours.values.loc[PREDICTORS].to_numpy(), theirs.importances, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.values.loc[PREDICTORS].to_numpy().std(axis=1), theirs.importances_std, rtol=1e-9)
    assert ours.table.set_index("column").loc["f", "kind"] == "factor"  # permuted as one column: its dummies together
    assert ours.table.set_index("column").loc["f", "importance"] > 0.5


@pytest.mark.parametrize("response, metric, scoring", [
    ("up", "log_loss", "neg_log_loss"), ("g", "log_loss", "neg_log_loss"), ("g", "accuracy", "accuracy"),
])
def test_importance_equals_scikit_learn_for_classifiers(frames, response, metric, scoring):
    training, testing = frames
    estimator = MLPClassifier(formula=f"{response} ~ x1 + x2 + x3 + f", hidden=[5], epochs=8, random_state=0)
    estimator.fit(training)
    fit = estimator.fitted_model()
    assert fit.task == ("binary" if response == "up" else "multiclass")
    ours = importance(fit, testing, repeats=3, seed=7, metric=None if metric == "log_loss" else metric)
    assert ours.metric == metric
    theirs = sklearn_inspection.permutation_importance(
        estimator, testing[PREDICTORS], testing[response], scoring=scoring, n_repeats=3, random_state=7)
    np.testing.assert_allclose(ours.values.loc[PREDICTORS].to_numpy(), theirs.importances, rtol=1e-7, atol=1e-12)


def test_importance_of_an_ensemble_equals_scikit_learn_on_its_mean_prediction(frames):
    training, testing = frames
    ensemble = nf.mlp("y ~ x1 + x2 + x3 + f", training, hidden=4, epochs=5, seed=2, n_models=3, verbose=False)
    ours = importance(ensemble, testing, repeats=3, seed=11)
    theirs = sklearn_inspection.permutation_importance(
        adapter(ensemble), testing[PREDICTORS], testing["y"], scoring=rmse_scorer, n_repeats=3, random_state=11)
    np.testing.assert_allclose(ours.values.loc[PREDICTORS].to_numpy(), theirs.importances, rtol=1e-9, atol=1e-12)


def test_importance_permutes_data_columns_before_the_design(frames):
    """poly(x1, 2) and x1:f move with x1; a removed variable is not permuted."""
    training, testing = frames
    fit = nf.mlp("y ~ poly(x1, 2) + x2:f", training, hidden=[], epochs=3, seed=1, verbose=False)
    result = importance(fit, testing, repeats=2, seed=0)
    assert sorted(result.table["column"]) == ["f", "x1", "x2"]
    theirs = sklearn_inspection.permutation_importance(
        adapter(fit), testing[["x1", "x2", "f"]], testing["y"], scoring=rmse_scorer, n_repeats=2, random_state=0)
    np.testing.assert_allclose(result.values.loc[["x1", "x2", "f"]].to_numpy(), theirs.importances, rtol=1e-9)
    removed = nf.mlp("y ~ . - x3 - g - up", training, hidden=[], epochs=1, seed=1, verbose=False)
    assert list(importance(removed, testing, repeats=1, seed=0).values.index) == ["x1", "x2", "f"]


def test_importance_leaves_out_incomplete_rows_once(frames, linear):
    _, testing = frames
    holey = testing.copy()
    holey.loc[holey.index[:7], "x2"] = np.nan
    with pytest.warns(MissingValuesWarning, match="Left out 7 of 300 rows"):
        result = importance(linear, holey, repeats=2, seed=0)
    complete = importance(linear, holey.dropna(), repeats=2, seed=0)
    assert result.n == 293
    pd.testing.assert_frame_equal(result.table, complete.table)


def test_importance_metric_choices_and_errors(frames, linear):
    _, testing = frames
    mae = importance(linear, testing, repeats=2, seed=0, metric="mae")
    assert mae.metric == "mae" and mae.label() == "Increase in MAE when the column is permuted (y units)"
    r2 = importance(linear, testing, repeats=2, seed=0, metric="r2")
    assert r2.label() == "Drop in R² when the column is permuted (proportion of variance)"
    assert r2.table["importance"].iloc[0] > 0  # a drop of R² is a positive importance
    with pytest.raises(ArgumentError) as error:
        importance(linear, testing, metric="accuracy")
    assert str(error.value) == "metric must be one of 'mae', 'rmse', 'r2' for this model, not 'accuracy'."
    with pytest.raises(ArgumentError) as error:
        importance(linear, testing, repeats=0)
    assert str(error.value) == "repeats must be a positive whole number, not 0."
    with pytest.raises(ArgumentError) as error:
        importance(linear, testing, seed=-1)
    assert str(error.value) == "seed must be None or a whole number from 0 to 2**32 - 1, not -1."
    with pytest.raises(nf.errors.DataError, match="no response 'y'"):
        importance(linear, testing.drop(columns="y"))


def test_importance_single_repeat_has_no_interval(frames, linear):
    _, testing = frames
    table = importance(linear, testing, repeats=1, seed=0).table
    assert table[["sd", "lower", "upper"]].isna().all().all()
    assert table["importance"].notna().all()


def test_importance_plot_and_print(frames, linear):
    _, testing = frames
    result = importance(linear, testing, repeats=3, seed=0)
    figure = result.plot()
    axis = figure.axes[0]
    assert axis.get_xlabel() == "Increase in RMSE when the column is permuted (y units)"
    # most important on top: barh draws upward, so the last tick is the first row of the table
    assert [t.get_text() for t in axis.get_yticklabels()] == list(result.table["column"])[::-1]
    widths = sorted(p.get_width() for p in axis.patches)
    np.testing.assert_allclose(widths, sorted(result.table["importance"]))
    assert result.plot(xlabel="Increase in RMSE (g)").axes[0].get_xlabel() == "Increase in RMSE (g)"
    text = repr(result).splitlines()
    assert text[0] == "Permutation importance for y ~ x1 + x2 + x3 + f"
    assert text[1].startswith("  increase in rmse when the column is permuted (y units); rmse ")
    assert text[1].endswith(" on 300 rows as given")
    assert text[3].split() == ["column", "kind", "importance", "sd", "lower", "upper"]
    assert text[4].split()[:2] == ["x1", "numeric"]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_t_quantile_equals_scipy():
    from scipy import stats

    for df in [1, 2, 3, 4, 5, 9, 10, 29, 30, 99, 100]:
        assert inspection.t_quantile(0.95, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-10)
    assert inspection.t_quantile(0.5, 7) == pytest.approx(stats.t.ppf(0.75, 7), rel=1e-10)


# ---------------------------------------------------------------- partial dependence
def test_partial_dependence_of_a_linear_fit_is_a_line_with_the_coefficient_as_slope(frames, linear):
    _, testing = frames
    result = partial_dependence(linear, testing, "x1", ice=True)
    grid = result.table["x1"].to_numpy()
    np.testing.assert_allclose(grid, np.quantile(testing["x1"], np.linspace(0, 1, 20)), rtol=1e-12)
    mean = result.table["y"].to_numpy()
    slope = data_units(linear, "x1")
    np.testing.assert_allclose(np.diff(mean) / np.diff(grid), slope, rtol=2e-4)
    # at x1 = v the mean prediction is the mean prediction plus slope * (v - mean(x1))
    baseline = linear.predict(testing).mean()
    np.testing.assert_allclose(mean, baseline + slope * (grid - testing["x1"].mean()), rtol=1e-4, atol=1e-4)
    # every row's curve is the mean curve shifted: ICE curves of a linear model are parallel
    curves = result.ice.pivot(index="row", columns="x1", values="y").to_numpy()
    shifts = curves - mean
    np.testing.assert_allclose(shifts, shifts[:, :1] * np.ones_like(shifts), atol=1e-4)
    assert list(result.ice.columns) == ["row", "x1", "y"] and len(result.ice) == 20 * 300


def test_partial_dependence_of_a_factor_equals_the_level_effects(frames, linear):
    _, testing = frames
    result = partial_dependence(linear, testing, "f")
    assert list(result.table["f"]) == ["a", "b", "c"] and result.kind == "factor"
    effects = result.table["y"].to_numpy() - result.table["y"].iloc[0]
    expected = [0.0, data_units(linear, "fb"), data_units(linear, "fc")]
    np.testing.assert_allclose(effects, expected, rtol=1e-4, atol=1e-4)
    # and they estimate the simulated effects
    np.testing.assert_allclose(effects, list(EFFECTS.values()), atol=0.15)


def test_partial_dependence_equals_scikit_learn_regression(frames):
    training, testing = frames
    estimator = MLPRegressor(formula="y ~ x1 + x2 + x3 + f", hidden=[5], epochs=8, random_state=0).fit(training)
    fit = estimator.fitted_model()
    ours = partial_dependence(fit, testing, "x2", grid=[-1.0, 0.0, 0.5, 2.0], ice=True)
    theirs = sklearn_inspection.partial_dependence(
        estimator, testing[PREDICTORS], ["x2"], custom_values={"x2": [-1.0, 0.0, 0.5, 2.0]}, kind="both")
    np.testing.assert_allclose(ours.table["y"], theirs["average"][0], rtol=1e-12)
    individual = ours.ice.pivot(index="row", columns="x2", values="y").loc[testing.index].to_numpy()
    np.testing.assert_allclose(individual, theirs["individual"][0], rtol=1e-12)
    factor = partial_dependence(fit, testing, "f")
    theirs = sklearn_inspection.partial_dependence(estimator, testing[PREDICTORS], ["f"], categorical_features=["f"])
    assert list(theirs["grid_values"][0]) == list(factor.table["f"])
    np.testing.assert_allclose(factor.table["y"], theirs["average"][0], rtol=1e-12)


@pytest.mark.parametrize("response", ["up", "g"])
def test_partial_dependence_equals_scikit_learn_classifiers(frames, response):
    training, testing = frames
    estimator = MLPClassifier(formula=f"{response} ~ x1 + x2 + x3 + f", hidden=[5], epochs=8, random_state=0)
    fit = estimator.fit(training).fitted_model()
    ours = partial_dependence(fit, testing, "x1", grid=5)
    levels = list(fit.design.levels)
    assert list(ours.table.columns) == ["x1"] + levels
    np.testing.assert_allclose(ours.table[levels].sum(axis=1), 1.0, rtol=1e-12)
    theirs = sklearn_inspection.partial_dependence(
        estimator, testing[PREDICTORS], ["x1"], custom_values={"x1": ours.table["x1"].to_numpy()})
    # scikit-learn gives a binary classifier's second class only, a multiclass one every class
    shown = levels[1:] if len(levels) == 2 else levels
    np.testing.assert_allclose(ours.table[shown].to_numpy().T, theirs["average"], rtol=1e-10)


def test_partial_dependence_of_an_ensemble_is_of_its_mean_prediction(frames):
    training, testing = frames
    ensemble = nf.mlp("g ~ x1 + x2 + f", training, hidden=4, epochs=4, seed=2, n_models=2, verbose=False)
    result = partial_dependence(ensemble, testing, "f", ice=True)
    for level in ["a", "b", "c"]:
        members = ensemble.predict(testing.assign(f=level), type="prob")
        np.testing.assert_allclose(result.table.set_index("f").loc[level], members.mean(), rtol=1e-12)
    assert len(result.ice) == 3 * 300


def test_partial_dependence_grid_of_a_categorical_column_and_given_levels(frames, linear):
    _, testing = frames
    categorical = testing.assign(f=pd.Categorical(testing["f"], categories=["a", "b", "c"]))
    result = partial_dependence(linear, categorical, "f", grid=["c", "a"])
    assert list(result.table["f"]) == ["c", "a"]
    plain = partial_dependence(linear, testing, "f", grid=["c", "a"])
    np.testing.assert_allclose(result.table["y"], plain.table["y"], rtol=1e-12)
    with pytest.raises(LevelError) as error:
        partial_dependence(linear, testing, "f", grid=["a", "z"])
    assert str(error.value) == "grid has 'z', which is not a level of 'f' (levels: a, b, c)."
    with pytest.raises(ArgumentError) as error:
        partial_dependence(linear, testing, "x1", grid=1)
    assert str(error.value) == "grid must be a whole number of at least 2 or a list of values, not 1."
    with pytest.raises(ArgumentError) as error:
        partial_dependence(linear, testing, "x1", grid=[0.0, "high"])
    assert str(error.value) == "grid for the numeric column 'x1' must hold finite numbers, not 'high'."


def test_partial_dependence_column_errors(frames, linear):
    _, testing = frames
    with pytest.raises(ArgumentError) as error:
        partial_dependence(linear, testing, "x4")
    assert str(error.value) == (
        "The data has no column 'x4' (did you mean 'x3', 'x2', 'x1'?); the formula uses x1, x2, x3, f.")
    narrow = nf.mlp("y ~ x1 + f", frames[0], hidden=[], epochs=2, seed=1, verbose=False)
    with pytest.raises(ArgumentError) as error:
        partial_dependence(narrow, testing, "x3")
    assert str(error.value) == "Column 'x3' is not used by the formula 'y ~ x1 + f'; choose one it uses: x1, f."
    with pytest.raises(ArgumentError) as error:
        partial_dependence(linear, testing, "y")
    assert str(error.value) == (
        "'y' is the response of 'y ~ x1 + x2 + x3 + f'; partial dependence is of a column the formula uses as a "
        "predictor: x1, x2, x3, f.")
    with pytest.raises(ArgumentTypeError) as error:
        partial_dependence(linear, testing, 1)
    assert str(error.value) == "column must be a column name (a string), not int."


def test_partial_dependence_plots_name_the_column_and_the_response(frames, linear):
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    training, testing = frames
    result = partial_dependence(linear, testing, "x1", grid=6, ice=True)
    axis = result.plot().axes[0]
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("x1", "Predicted y (y units)")
    (curves,) = [c for c in axis.collections if isinstance(c, LineCollection)]
    assert len(curves.get_segments()) == 300
    np.testing.assert_allclose(axis.lines[0].get_ydata(), result.table["y"])
    binary = nf.mlp("up ~ x1 + f", training, hidden=[], epochs=3, seed=1, verbose=False)
    axis = partial_dependence(binary, testing, "f").plot().axes[0]
    assert axis.get_ylabel() == "Predicted probability of up = yes"
    assert [t.get_text() for t in axis.get_xticklabels()] == ["a", "b", "c"]
    multiclass = nf.mlp("g ~ x1 + f", training, hidden=[], epochs=3, seed=1, verbose=False)
    axis = partial_dependence(multiclass, testing, "x1", grid=4).plot().axes[0]
    assert axis.get_ylabel() == "Predicted probability of each level"
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["high", "low", "mid"]
    assert axis.get_legend().get_title().get_text() == "g"
    text = repr(partial_dependence(multiclass, testing, "f")).splitlines()
    assert text[:2] == ["Partial dependence on f (factor) for g ~ x1 + f",
                        "  mean probability of each level over 300 rows"]
    assert text[2].split() == ["f", "high", "low", "mid"]
    plt.close("all")

"""nnfit.summaries: hidden=[] coefficients in the data's units against R's lm, glm and multinom.

The fixture tests/fixtures/r_linear_models.json is written by tests/r/linear_models.R (R 4.2, read
its header for how to run it) from the same bundled CSVs nf.datasets.load reads. Each network is
trained until it has converged (full-batch gradient descent or Adam), so that its coefficients,
mapped back to the data's units, are R's maximum-likelihood estimates.
"""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import nnfit as nf
from nnfit.errors import ArgumentError
from nnfit.summaries import coefficients_in_data_units, summary

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "r_linear_models.json").read_text())
R = {model["id"]: model for model in FIXTURE["models"]}

# Settings that converge in about a second each (measured: within 1e-4 standard errors of the optimum).
CONVERGING = {
    "penguins_lm": {"optimizer": "sgd", "lr": 0.3, "epochs": 3000},
    "default_glm": {"optimizer": "adam", "lr": 0.1, "epochs": 2000},
    "default_balance_glm": {"optimizer": "adam", "lr": 0.1, "epochs": 2000},
    "penguins_multinom": {"optimizer": "adam", "lr": 0.1, "epochs": 3000},
}


def fitted(model_id, **options):
    r = R[model_id]
    data = nf.datasets.load(r["data"])
    settings = dict(CONVERGING[model_id], batch_size=len(data), seed=1, verbose=False)
    settings.update(options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rows left out for missing values
        return nf.mlp(r["formula"], data, hidden=[], **settings)


@pytest.fixture(scope="module")
def fits():
    return {model_id: fitted(model_id) for model_id in R}


def relative(actual, expected):
    actual, expected = np.asarray(actual, dtype=np.float64).ravel(), np.asarray(expected, dtype=np.float64).ravel()
    return float(np.max(np.abs(actual - expected) / np.abs(expected)))


@pytest.mark.parametrize("model_id", sorted(R))
def test_coefficients_in_the_data_units_are_r_estimates(fits, model_id):
    fit, r = fits[model_id], R[model_id]
    beta = coefficients_in_data_units(fit)
    assert list(beta.index) == r["names"]
    assert fit.settings["n_train"] == r["n"] and fit.settings["n_left_out"] == r["n_left_out"]
    if r["kind"] == "multinom":  # one column per level after the first, as nnet::multinom's rows
        assert list(beta.columns) == r["rows"] and r["levels"][0] == fit.design.levels[0]
        assert relative(beta.to_numpy().T, r["estimates"]) < 1e-3
    else:
        assert relative(beta, r["estimates"]) < 1e-3


@pytest.mark.parametrize("model_id", sorted(R))
def test_standard_errors_are_r_standard_errors(fits, model_id):
    fit, r = fits[model_id], R[model_id]
    s = summary(fit)
    if r["kind"] == "multinom":
        table = s.coefficients["Std. Error"].unstack("output")  # terms x levels
        table = table.loc[r["names"], r["rows"]]
        assert relative(table.to_numpy().T, r["std_errors_solve"]) < 1e-3
    else:
        assert list(s.coefficients.index) == r["names"]
        assert relative(s.coefficients["Std. Error"], r["std_errors"]) < 1e-3
        statistic = "t value" if r["kind"] == "lm" else "z value"
        assert relative(s.coefficients[statistic], r["t_values" if r["kind"] == "lm" else "z_values"]) < 1e-3
    assert s.distance < 1e-3  # converged


def test_summary_multinom_loses_a_direction_of_an_ill_conditioned_hessian():
    """R's summary(multinom) inverts the Hessian with a generalized inverse that drops singular
    values below sqrt(eps) times the largest; this one's condition number is 2e8, so R's own
    standard errors differ from the Hessian's inverse, which nnfit reports (as solve() gives it)."""
    r = R["penguins_multinom"]
    assert r["hessian_condition"] > 1 / np.sqrt(np.finfo(float).eps)
    assert r["std_errors"][1][0] == pytest.approx(1.579899, rel=1e-6)
    assert r["std_errors_solve"][1][0] == pytest.approx(23.46901, rel=1e-6)


def test_glm_on_default_is_islr_tables_4_1_and_4_3(fits):
    """ISLR Table 4.1 (default ~ balance): -10.6513 and 0.0055 per dollar; Table 4.3
    (default ~ balance + income + student): balance 0.0057, student[Yes] -0.6468."""
    one = coefficients_in_data_units(fits["default_balance_glm"])
    assert (round(one["(Intercept)"], 4), round(one["balance"], 4)) == (-10.6513, 0.0055)
    three = coefficients_in_data_units(fits["default_glm"])
    assert (round(three["balance"], 4), round(three["studentYes"], 4)) == (0.0057, -0.6468)


def test_the_regression_summary_prints_r_table(fits):
    fit = fits["penguins_lm"]
    lines = repr(summary(fit)).splitlines()
    assert re.fullmatch(r"Training: 3000 epochs in \d+\.\d\d s", lines.pop(5))
    assert lines == [
        ('nnfit summary: nf.mlp("body_mass_g ~ . - year", data, hidden=[], optimizer="sgd", lr=0.3, epochs=3000, '
         'batch_size=344, seed=1)'),
        "",
        "Data: 344 rows: 333 for training, 11 left out for missing values",
        "Network (9 parameters):",
        "  f_t(X) = beta_t0 + sum_{j=1}^{p} beta_tj X_j   (a linear model: no hidden layer)",
        "",
        "Metrics (eval mode, no dropout):",
        "                   mae        rmse          r2",
        "  training       226.4         284      0.8752",
        "",
        "Coefficients in the data's units, for body_mass_g:",
        "                        Estimate   Std. Error      t value",
        "  (Intercept)              -1500        575.8       -2.605",
        "  speciesChinstrap        -260.3        88.55        -2.94",
        "  speciesGentoo            987.8        137.2        7.197",
        "  islandDream              -13.1        58.54      -0.2238",
        "  islandTorgersen         -48.06        60.92      -0.7889",
        "  bill_length_mm           18.19        7.136        2.549",
        "  bill_depth_mm            67.58        19.82        3.409",
        "  flipper_length_mm        16.24        2.939        5.524",
        "  sexmale                  387.2        48.14        8.044",
        "Residual standard error: 287.9 on 324 degrees of freedom",
        "Converged: the estimates lie within 2.9e-05 standard errors of the optimum (lm's, one Newton step away).",
        "Standard errors are the classical linear model's (valid for hidden=[] only).",
    ]
    assert summary(fit).sigma == pytest.approx(R["penguins_lm"]["sigma"], rel=1e-6)
    assert summary(fit).metrics["training"]["r2"] == pytest.approx(R["penguins_lm"]["r_squared"], rel=1e-6)


def test_the_classification_summaries_print_log_odds_tables(fits):
    lines = repr(summary(fits["default_balance_glm"])).splitlines()
    start = lines.index("Coefficients in the data's units, for the log-odds of 'Yes' against 'No':")
    assert lines[start - 4:start + 3] == [
        "Metrics (eval mode, no dropout):",
        "              accuracy  balanced_accuracy    log_loss         auc       brier  sensitivity  specificity",
        "  training      0.9725              0.648     0.07982       0.948     0.02171       0.3003       0.9957",
        "",
        "Coefficients in the data's units, for the log-odds of 'Yes' against 'No':",
        "                  Estimate   Std. Error      z value",
        "  (Intercept)       -10.65       0.3612       -29.49",
    ]
    assert lines[start + 3] == "  balance         0.005499    0.0002204        24.95"
    lines = repr(summary(fits["penguins_multinom"])).splitlines()
    start = lines.index("Coefficients in the data's units, for the log-odds of each level against 'Adelie':")
    assert lines[start + 1:start + 11] == [
        "  Chinstrap:",
        "                        Estimate   Std. Error      z value",
        "  (Intercept)             -26.61        10.61       -2.509",
        "  bill_length_mm           1.347        0.231        5.833",
        "  flipper_length_mm      -0.1697      0.06684       -2.538",
        "  Gentoo:",
        "                        Estimate   Std. Error      z value",
        "  (Intercept)             -119.9        23.47       -5.107",
        "  bill_length_mm          0.4819       0.2134        2.258",
        "  flipper_length_mm       0.4826       0.1189         4.06",
    ]


def test_a_network_stopped_early_says_it_has_not_converged():
    fit = fitted("default_balance_glm", epochs=20)
    last = repr(summary(fit)).splitlines()[-2]
    assert last.startswith("Not converged: the estimates lie up to ")
    assert last.endswith(" standard errors from the optimum (glm's, one Newton step away); train longer (more "
                         "epochs, full-batch gradient descent) before reading this as the linear model's table.")


def test_metrics_are_measured_in_eval_mode_on_training_and_validation_rows(penguins, quiet):
    fit = nf.mlp("body_mass_g ~ . - year", penguins, hidden=[8], dropout=0.4, epochs=3, seed=1, verbose=False)
    s = summary(fit)
    assert s.coefficients is None and "Coefficients" not in repr(s)
    assert s.metrics["training"] == pytest.approx(dict(fit.evaluate(penguins)), rel=1e-5)  # no dropout: as predict
    assert 'hidden=[8], activation="relu", dropout=0.4, optimizer="rmsprop", epochs=3, batch_size=32' in s.call
    held = nf.mlp("species ~ bill_length_mm + flipper_length_mm", penguins, hidden=[], valid=0.25, epochs=2, seed=1,
                  verbose=False)
    s = summary(held)
    assert (s.n_train, s.n_valid, s.n_left_out) == (held.settings["n_train"], held.settings["n_valid"], 2)
    assert s.n_train + s.n_valid == 342 and list(s.metrics) == ["training", "validation"]
    assert repr(s).splitlines()[2] == f"Data: 344 rows: {s.n_train} for training, {s.n_valid} for validation, 2 left out for missing values"


def test_a_loaded_fit_takes_its_training_rows_from_data(fits, tmp_path):
    fit = fits["penguins_lm"]
    fit.save(tmp_path / "mass.nnfit")
    loaded = nf.load(tmp_path / "mass.nnfit")
    assert repr(summary(loaded)).splitlines()[-1] == (
        "Standard errors need the training rows, which this fit does not hold: summary(fit, data=training).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = summary(loaded, data=nf.datasets.load("penguins"))
    np.testing.assert_allclose(again.coefficients.to_numpy(), summary(fit).coefficients.to_numpy(), rtol=1e-6)  # float32 rows
    assert (again.n_train, again.n_left_out) == (333, 11)


def test_the_notebook_view_has_the_facts_metrics_and_coefficients(fits):
    page = summary(fits["default_balance_glm"])._repr_html_()
    assert page.startswith('<div class="nnfit"><strong>nnfit summary</strong>')
    assert "<strong>Metrics (eval mode, no dropout)</strong>" in page
    assert "<strong>Coefficients in the data&#x27;s units, for the log-odds of &#x27;Yes&#x27; against &#x27;No&#x27;</strong>" in page
    assert "<th style='text-align:left'>balance</th><td style='text-align:left'>0.005499</td>" in page
    assert "<th style='text-align:left'>training rows</th><td style='text-align:left'>10000</td>" in page


def test_coefficients_in_data_units_refuse_networks_that_are_not_linear_models(penguins, quiet):
    deep = nf.mlp("body_mass_g ~ . - year", penguins, hidden=[4, 3], epochs=1, seed=1, verbose=False)
    with pytest.raises(ArgumentError) as error:
        coefficients_in_data_units(deep)
    assert str(error.value) == (
        "Coefficients in the data's units exist only for hidden=[] (a linear or logistic model); this network has "
        "hidden layers [4, 3], whose weights have no units of the data. fit.coef() gives its weights in the "
        "course's notation."
    )
    ensemble = nf.mlp("body_mass_g ~ . - year", penguins, hidden=[], n_models=2, epochs=1, seed=1, verbose=False)
    with pytest.raises(ArgumentError) as error:
        coefficients_in_data_units(ensemble)
    assert str(error.value) == (
        "Coefficients in the data's units are those of one network; this fit is an ensemble of 2. Fit with "
        "n_models=1 for the linear model's coefficients."
    )
    embedded = nf.mlp("body_mass_g ~ . - year", penguins, hidden=[], embed=["island"], epochs=1, seed=1, verbose=False)
    with pytest.raises(ArgumentError) as error:
        coefficients_in_data_units(embedded)
    assert str(error.value) == (
        "Coefficients in the data's units need every factor as dummy columns; this fit embeds 'island'. Fit with "
        "embed=None for the linear model's coefficients."
    )


def test_an_ensemble_summary_says_its_metrics_are_those_training_recorded(penguins, quiet):
    fit = nf.mlp("species ~ .", penguins, hidden=[5], dropout=0.3, n_models=2, epochs=2, seed=1, verbose=False)
    s = summary(fit)
    assert not s.measured and list(s.metrics) == ["train"]
    assert ("Metrics of the last epoch, as training recorded them (training rows with dropout on; "
            "summary(fit, data=training) measures them in eval mode):") in repr(s).splitlines()
    measured = summary(fit, data=penguins)
    assert measured.measured and measured.metrics["training"] == pytest.approx(dict(fit.evaluate(penguins)), rel=1e-6)

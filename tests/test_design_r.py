"""nnfit's model matrices against R's, formula by formula.

The fixture tests/fixtures/r_formulas.json is written by tests/r/formulas.R (R 4.2, read its
header for how to run it): for each formula, R's column names, term assignment, the rows its
model frame keeps, the first rows of the model matrix, column sums and sums of squares, the
response, and the model matrix of held-out rows built with what training learned. CI reads
the fixture; it does not need R.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nnfit as nf
from nnfit.errors import DataError, FormulaError, FormulaWarning, LevelError, NnfitError

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "r_formulas.json").read_text())
CASES = {case["id"]: case for case in FIXTURE["cases"]}

# Where nnfit reads a formula differently from R on purpose, and what it does instead.
DEVIATIONS = {
    # R evaluates poly() before leaving out incomplete rows, and refuses missing values;
    # nnfit learns the polynomial from the values that are there.
    "pg_poly3_na": "fits",
    # R reads '|' as a logical or; nnfit refuses it (it usually means a random effect, (1 | g)).
    "pg_bar_factor": FormulaError,
    "pg_bar_numeric": FormulaError,
    # R turns log() of a negative into NaN rows that vanish with a warning, and of zero into
    # -Inf; nnfit names the column, the count and the first row.
    "pg_log_nan": DataError,
    "pg_log_zero": DataError,
    "carseats_log_sales": DataError,
    # R asks for contrasts of every factor in the model frame, even one the formula removed;
    # nnfit needs contrasts only for the factors in the model.
    "wage_dot_minus": "fits",
    "wage_dot_minus_region": "fits",
}
FITS_INSTEAD = {  # what nnfit gives: the columns of a formula R accepts, plus those of `prefix`
    "pg_poly3_na": {"like": "pg_intercept_only", "prefix": "poly(bill_length_mm, 3)", "n": 342},
    "wage_dot_minus": {"like": "wage_all_but_region", "prefix": "\0", "n": 3000},
    "wage_dot_minus_region": {"like": "wage_all_but_region", "prefix": "logwage", "n": 3000},
}
# Held-out rows where R refuses its own training's cut() levels; nnfit re-applies the breaks.
NEWDATA_DEVIATIONS = {"pg_cut3"}


def frame(name: str) -> pd.DataFrame:
    """A data set of the fixture, built as tests/r/formulas.R builds it."""
    spec = FIXTURE["frames"].get(name)
    if spec is None:
        return nf.datasets.load(name)
    data = frame(spec["from"]).copy()
    if "rename" in spec:
        data = data.rename(columns=spec["rename"])
    if spec.get("complete_cases"):
        data = data.dropna().reset_index(drop=True)
    for column, levels in spec.get("ordered", {}).items():
        data[column] = pd.Categorical(data[column].astype(object), categories=levels, ordered=True)
    for column, (source, value) in spec.get("logical", {}).items():
        data[column] = pd.array([None if pd.isna(v) else str(v) == value for v in data[source]], dtype="boolean")
    if spec.get("grade"):
        data["grade"] = pd.Categorical([("abcde")[i % 5] for i in range(len(data))], categories=list("abcde"), ordered=True)
    return data


def close(actual, expected, what):
    expected = np.array([[np.nan if v is None else float(v) for v in row] for row in expected]) if np.ndim(expected) == 2 \
        else np.array([np.nan if v is None else float(v) for v in expected])
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=1e-6, atol=1e-8, err_msg=what)


def check_matrix(X, rows, expected, offset=0):
    assert list(np.flatnonzero(rows) + offset) == expected["rows"]
    assert len(X) == expected["n"]
    close(X[: len(expected["x_head"])], expected["x_head"], "first rows")
    close(X.sum(axis=0), expected["x_sum"], "column sums")
    close((X ** 2).sum(axis=0), expected["x_sumsq"], "column sums of squares")


def fitted(case, data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        design = nf.Design(case["formula"]).fit(data)
    formula_warnings = [str(w.message) for w in caught if issubclass(w.category, FormulaWarning)]
    return design, formula_warnings


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_model_matrix_matches_r(case_id):
    case = CASES[case_id]
    data = frame(case["data"])
    deviation = DEVIATIONS.get(case_id)
    if case["error"] is not None and deviation is None or isinstance(deviation, type):
        with pytest.raises(deviation or NnfitError):
            nf.Design(case["formula"]).fit(data)
        return
    if case.get("response", 0) is None:  # a one-sided formula: nnfit's designs always have a response
        with pytest.raises(FormulaError, match="has no response on the left of '~'"):
            nf.Design(case["formula"])
        return
    design, formula_warnings = fitted(case, data)
    if deviation == "fits":
        expected = FITS_INSTEAD[case_id]
        assert [c for c in design.columns if not c.startswith(expected["prefix"])] == CASES[expected["like"]]["columns"]
        assert design.transform(data).X.shape == (expected["n"], len(design.columns))
        return
    assert design.columns == case["columns"]
    assert design.assign_ == case["assign"]
    m = design.transform(data)
    check_matrix(m.X, m.rows, case)
    if any("response appeared on the right-hand side" in w for w in case["warnings"]):
        assert formula_warnings == [
            f"The response {case['response_name']!r} appears on the right-hand side of {case['formula']!r}; "
            "it was dropped from the predictors, as R does."
        ]
    response = case["response"]
    if response["type"] in ("factor", "ordered", "logical"):
        levels = response.get("levels", ["FALSE", "TRUE"])
        codes = response.get("codes") or [None if v is None else int(v) for v in response["values"]]
        assert design.levels == levels
        assert m.y.tolist() == codes
    else:
        values = np.asarray(response["values"], dtype=np.float64).reshape(len(m.X), -1)
        y = m.y + (m.offset[:, None] if m.offset is not None else 0)
        close(y, values, "response")
        if response["type"] == "matrix":
            assert design.response_columns == response["colnames"]
    if "offset" in case and case["offset"] is not None:
        close(m.offset[: len(case["offset"]["head"])], case["offset"]["head"], "offset")
        assert m.offset.sum() == pytest.approx(case["offset"]["sum"], rel=1e-9)


NEWDATA = sorted(i for i, c in CASES.items() if c.get("newdata") and c["error"] is None and i not in DEVIATIONS)


@pytest.mark.parametrize("case_id", NEWDATA)
def test_held_out_rows_reuse_what_training_learned_as_r_predict_does(case_id):
    case = CASES[case_id]
    new = case["newdata"]
    data = frame(case["data"])
    start, stop = new["train_rows"]
    design, _ = fitted(case, data.iloc[start:stop])
    held_out = data.iloc[stop:]
    if new["error"] is not None:
        if case_id in NEWDATA_DEVIATIONS:
            m = design.transform(held_out, response=False)
            assert m.X.shape[1] == len(design.columns) and np.isfinite(m.X).all()
        else:
            with pytest.raises(LevelError):
                design.transform(held_out, response=False)
        return
    assert design.columns == new["train"]["columns"] == new["columns"]
    m = design.transform(held_out, response=False)  # R: delete.response(terms)
    check_matrix(m.X, m.rows, new, offset=stop)


@pytest.mark.parametrize("name", sorted(FIXTURE["lm"]))
def test_least_squares_on_the_design_gives_r_lm_coefficients(name):
    fit = FIXTURE["lm"][name]
    design = nf.Design(fit["formula"]).fit(frame(fit["data"]))
    m = design.transform(frame(fit["data"]))
    beta, *_ = np.linalg.lstsq(m.X, m.y[:, 0], rcond=None)
    assert design.columns == fit["names"]
    close(beta, fit["coefficients"], "coefficients")


def test_the_fixture_covers_what_the_issue_asks():
    assert len(CASES) >= 70
    formulas = " ".join(case["formula"] for case in CASES.values())
    for function in ["I(", "log(", "log2(", "log10(", "log1p(", "exp(", "expm1(", "sqrt(", "abs(", "sin(", "cos(",
                     "tanh(", "pmin(", "pmax(", "round(", "floor(", "ceiling(", "sign(", "factor(", "as.factor(",
                     "as.numeric(", "relevel(", "cut(", "poly(", "bs(", "ns(", "scale(", "offset(", "lag(", "%in%",
                     "==", "!=", "<=", ">="]:
        assert function in formulas, function


def test_a_network_without_hidden_layers_trained_by_gradient_descent_reaches_r_lm():
    """hidden=[] is the linear model: full-batch gradient descent on the standardized Carseats
    design converges to lm()'s coefficients, mapped back to the data's units."""
    fit_r = FIXTURE["lm"]["carseats_interactions"]
    carseats = frame(fit_r["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = nf.mlp(fit_r["formula"], carseats, hidden=[], optimizer="sgd", lr=0.3, batch_size=len(carseats),
                     epochs=3000, seed=1, verbose=False)
    weights = fit.model.state_dict()
    w, b = weights["output.weight"].double().numpy()[0], float(weights["output.bias"])
    design = fit.design
    sy, cy = design.response_scale_[0], design.response_center_[0]
    beta = sy * w / design.scale_
    intercept = cy + sy * (b - np.sum(w * design.center_ / design.scale_))
    assert ["(Intercept)"] + design.columns == fit_r["names"]
    np.testing.assert_allclose(np.r_[intercept, beta], fit_r["coefficients"], rtol=1e-3)

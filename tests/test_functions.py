"""The function table: each function against a closed form or numpy, its errors word for word.

R's own values for every function are in tests/test_design_r.py (the R fixture); these tests
check the properties that define them and what nnfit adds: learned state re-applied to new
data, and errors that name the call, the column and the row.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import nnfit as nf
from nnfit.design.frame import contr_poly
from nnfit.design.functions import spline_design
from nnfit.errors import ArgumentTypeError, DataError, FormulaError, LevelError, MissingValuesWarning


@pytest.fixture()
def data():
    rng = np.random.default_rng(3)
    n = 40
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.uniform(1, 10, size=n), "z": rng.uniform(-1, 1, size=n),
        "g": pd.Categorical(rng.choice(["a", "b", "c"], size=n), categories=["a", "b", "c"]),
        "k": rng.integers(2000, 2003, size=n),
    })


def columns(design, frame, name_prefix):
    m = design.transform(frame)
    keep = [i for i, c in enumerate(design.columns) if c.startswith(name_prefix)]
    return m.X[:, keep]


def test_orthogonal_poly_is_orthonormal_on_training_rows(data):
    design = nf.Design("y ~ poly(x, 3)").fit(data)
    Z = columns(design, data, "poly(x, 3)")
    np.testing.assert_allclose(Z.T @ Z, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(Z.sum(axis=0), 0, atol=1e-12)
    # Each column is a polynomial in x of its degree: the raw powers span the same space.
    raw = np.vander(data["x"].to_numpy(), 4, increasing=True)
    residual = Z - raw @ np.linalg.lstsq(raw, Z, rcond=None)[0]
    assert np.abs(residual).max() < 1e-10


def test_b_splines_sum_to_one_and_natural_splines_are_linear_beyond_the_boundary(data):
    knots = np.r_[[1.0] * 4, 4.0, 6.0, [10.0] * 4]
    x = np.linspace(1, 10, 50)
    np.testing.assert_allclose(spline_design(knots, x, 4).sum(axis=1), 1.0, atol=1e-12)
    design = nf.Design("y ~ ns(x, df = 3)").fit(data)
    beyond = pd.DataFrame({"y": 0.0, "x": np.array([12.0, 13.0, 14.0, 15.0])})
    values = design.transform(beyond).X[:, 1:]
    np.testing.assert_allclose(np.diff(values, n=2, axis=0), 0, atol=1e-10)


def test_contr_poly_matches_its_closed_form():
    np.testing.assert_allclose(contr_poly(3), np.array([[-1, 1], [0, -2], [1, 1]]) / np.sqrt([2, 6]), atol=1e-15)
    C = contr_poly(5)
    np.testing.assert_allclose(C.T @ C, np.eye(4), atol=1e-12)


def test_scale_factor_and_cut_reapply_what_training_learned(data):
    training, new = data.iloc[:30], data.iloc[30:]
    design = nf.Design("y ~ scale(x) + factor(k) + cut(z, 2)").fit(training)
    mean, sd = training["x"].mean(), training["x"].std(ddof=1)
    m = design.transform(new)
    np.testing.assert_allclose(m.X[:, design.columns.index("scale(x)")], (new["x"] - mean) / sd)
    assert design.columns[2:4] == ["factor(k)2001", "factor(k)2002"]
    beyond = pd.DataFrame({"y": [0.0, 0.0], "x": [5.0, 5.0], "k": [2000, 2001], "z": [0.0, 9.0]})
    with pytest.warns(MissingValuesWarning, match=r"^Left out 1 of 2 rows with a missing value \(cut\(z, 2\): 1\)\.$"):
        X, _ = design.tensors(beyond)
    assert X.shape == (1, len(design.columns))


def test_a_level_training_never_saw_is_named(data):
    design = nf.Design("y ~ factor(k)").fit(data)
    with pytest.raises(LevelError) as error:
        design.transform(data.assign(k=2009))
    assert str(error.value) == (
        "factor(k) has the level '2009' (row 0), which training never saw (levels: 2000, 2001, 2002)."
    )


def test_lag_leaves_out_the_first_rows_and_counts_them(data):
    design = nf.Design("y ~ lag(x, 2) + lag(z, n = 1)").fit(data)
    assert design.columns == ["(Intercept)", "lag(x, 2)", "lag(z, n = 1)"]
    m = design.transform(data)
    assert m.n_left_out == 2 and m.missing_by_column == {"lag(x, 2)": 2, "lag(z, n = 1)": 1}
    np.testing.assert_array_equal(m.X[:, 1], data["x"].to_numpy()[:-2])


def test_offset_is_left_out_of_the_matrix_and_taken_off_the_response(data):
    design = nf.Design("y ~ x + offset(log(x)) + offset(z)").fit(data)
    assert design.columns == ["(Intercept)", "x"] and design.has_offset
    m = design.transform(data)
    np.testing.assert_allclose(m.offset, np.log(data["x"]) + data["z"])
    np.testing.assert_allclose(m.y[:, 0], data["y"] - m.offset)
    np.testing.assert_allclose(design.unscale_response(m.y, m.offset)[:, 0], data["y"])


def test_membership_comparison_and_logical_operators(data):
    design = nf.Design('y ~ I(g %in% c("a", "c")) + I(x > 5 & z < 0) + as.numeric(g)').fit(data)
    assert design.columns == ["(Intercept)", 'I(g %in% c("a", "c"))TRUE', "I(x > 5 & z < 0)TRUE", "as.numeric(g)"]
    m = design.transform(data)
    np.testing.assert_array_equal(m.X[:, 1], data["g"].isin(["a", "c"]).astype(float))
    np.testing.assert_array_equal(m.X[:, 2], ((data["x"] > 5) & (data["z"] < 0)).astype(float))
    np.testing.assert_array_equal(m.X[:, 3], data["g"].cat.codes + 1)


@pytest.mark.parametrize("formula, error, message", [
    ("y ~ poly(x, deg = 2)", FormulaError,
     "The formula 'y ~ poly(x, deg = 2)' gives poly() the argument 'deg' at position 18, which poly() does not have "
     "(its arguments: x, degree, raw)."),
    ("y ~ poly(x, degree = z)", FormulaError,
     "The formula 'y ~ poly(x, degree = z)' gives poly() the column 'z' as its argument 'degree' at position 21; "
     "'degree' must be a constant such as a number, TRUE/FALSE or a string."),
    ("y ~ log(x, 2, 3)", FormulaError,
     "The formula 'y ~ log(x, 2, 3)' gives log() more arguments than it takes, at position 14 (its arguments: x, base)."),
    ("y ~ relevel(g, ref = \"d\")", FormulaError,
     "The formula 'y ~ relevel(g, ref = \"d\")' asks relevel() for the reference level 'd', which 'g' does not have "
     "(levels: a, b, c)."),
    ("y ~ relevel(x, ref = \"a\")", FormulaError,
     "The formula 'y ~ relevel(x, ref = \"a\")' relevels 'x', which is not a factor; use relevel(factor(x), ref = ...)."),
    ("y ~ poly(x, 2) * 2", FormulaError,
     "The formula 'y ~ poly(x, 2) * 2' has the number 2 at position 17, where only 0 or 1 (the intercept) may stand; "
     "for a constant predictor write I(...)."),
    ("y ~ I(poly(x, 2) + 1)", FormulaError,
     "The formula 'y ~ I(poly(x, 2) + 1)' applies '+' to the several columns of 'poly(x, 2)' at position 17; '+' needs "
     "numbers (for a factor's codes write as.numeric())."),
    ("y ~ I(g + 1)", FormulaError,
     "The formula 'y ~ I(g + 1)' applies '+' to the factor 'g' at position 8; '+' needs numbers (for a factor's codes "
     "write as.numeric())."),
    ("y ~ I(1:3)", FormulaError,
     "The formula 'y ~ I(1:3)' uses ':' inside a call at position 7; there it would be R's sequence operator, which "
     "nnfit does not read. Write interactions outside calls (a:b)."),
    ("y ~ sqrt(z)", DataError,
     "sqrt(z): z has 19 negative values (the first in row 0); sqrt needs values of at least 0."),
    ("y ~ poly(k, 3)", DataError,
     "poly(k, 3): the degree must be less than the number of distinct values of k (3)."),
    ("y ~ log(x, base = 1)", FormulaError,
     "The formula 'y ~ log(x, base = 1)' takes logarithms to the base 1; the base must be positive and not 1."),
])
def test_errors_name_the_call_the_argument_and_the_position(data, formula, error, message):
    with pytest.raises(error) as caught:
        nf.Design(formula).fit(data)
    assert str(caught.value) == message


def test_dates_are_numeric_days_at_fit_and_at_predict(data):
    dated = data.assign(when=pd.date_range("2020-01-01", periods=len(data), freq="D"))
    design = nf.Design("y ~ when").fit(dated)
    m = design.transform(dated)
    np.testing.assert_array_equal(m.X[:, 1], 18262 + np.arange(len(data)))  # days since 1970-01-01


def test_a_series_or_a_lazy_frame_is_not_a_data_frame(data):
    import polars as pl

    with pytest.raises(ArgumentTypeError, match=r"^data must be a data frame, not a pandas Series; pass a data frame \(series.to_frame\(\)\)\.$"):
        nf.Design("y ~ x").fit(data["x"])
    with pytest.raises(ArgumentTypeError, match=r"^data must be a data frame, not a polars LazyFrame; call .collect\(\) first\.$"):
        nf.Design("y ~ x").fit(pl.from_pandas(data[["y", "x"]]).lazy())
    with pytest.raises(ArgumentTypeError, match=r"^data must be a data frame, not a polars Series"):
        nf.Design("y ~ x").fit(pl.Series("x", [1.0, 2.0]))


def test_a_response_named_on_the_right_is_dropped_with_a_warning(data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        design = nf.Design("y ~ x + y").fit(data)
    assert design.columns == ["(Intercept)", "x"]
    assert [str(w.message) for w in caught] == [
        "The response 'y' appears on the right-hand side of 'y ~ x + y'; it was dropped from the predictors, as R does."
    ]


def test_removed_terms_still_leave_out_their_missing_rows(penguins):
    # R: nrow(model.frame(body_mass_g ~ . - sex, penguins)) is 333, not 342.
    design = nf.Design("body_mass_g ~ . - sex").fit(penguins)
    assert design.n_left_out_ == 11 and "sexmale" not in design.columns


@pytest.mark.parametrize("key, edit, message", [
    ("poly(x, 2)", lambda s: s.update(alpha=[1.0]), "The learned state of 'poly(x, 2)' has an invalid 'alpha'"),
    ("poly(x, 2)", lambda s: s.update(norm2=[1.0, 0.0, -1.0, 2.0]), "The learned state of 'poly(x, 2)' has an invalid 'norm2'"),
    ("ns(x, 3)", lambda s: s.update(boundary=[5.0, 1.0]), "The learned state of 'ns(x, 3)' has an invalid 'boundary'"),
    ("ns(x, 3)", lambda s: s.update(knots=[-50.0, 2.0]), "The learned knots of 'ns(x, 3)' are inconsistent"),
    ("scale(z)", lambda s: s.update(scale=0.0), "The learned state of 'scale(z)' has an invalid 'scale'"),
    ("scale(z)", lambda s: s.update(center="0"), "The learned state of 'scale(z)' has an invalid 'center'"),
    ("cut(z, 2)", lambda s: s.update(breaks=[1.0, 0.0, 2.0]), "The learned state of 'cut(z, 2)' has an invalid 'breaks'"),
    ("factor(k)", lambda s: s.update(labels=["2000"]), "The learned levels of 'factor(k)' are inconsistent"),
    ("factor(k)", lambda s: s.clear(), "The design has no valid learned state for 'factor(k)'"),
])
def test_a_saved_learned_state_that_does_not_fit_its_function_is_refused(data, key, edit, message):
    from nnfit.errors import ModelFileError

    state = nf.Design("y ~ poly(x, 2) + ns(x, 3) + scale(z) + cut(z, 2) + factor(k)").fit(data).to_dict()
    edit(state["state"][key])
    with pytest.raises(ModelFileError) as error:
        nf.Design.from_dict(state)
    assert str(error.value).startswith("The saved design is not valid: " + message)

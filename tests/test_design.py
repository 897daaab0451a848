import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import nnfit as nf
from nnfit.errors import ArgumentError, DataError, FormulaError, FormulaWarning, LevelError, MissingValuesWarning

# R 4.x: colnames(model.matrix(body_mass_g ~ . - 1, penguins |> drop_na() |> select(-year)))
R_MASS_COLUMNS = [
    "speciesAdelie", "speciesChinstrap", "speciesGentoo", "islandDream", "islandTorgersen",
    "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "sexmale",
]
# colnames(model.matrix(species ~ . - 1, ...))
R_SPECIES_COLUMNS = [
    "islandBiscoe", "islandDream", "islandTorgersen", "bill_length_mm", "bill_depth_mm",
    "flipper_length_mm", "body_mass_g", "sexmale",
]


def test_r_model_matrix_names(lab_split):
    training, _ = lab_split
    assert nf.Design("body_mass_g ~ . - 1").fit(training).columns == R_MASS_COLUMNS
    assert nf.Design("species ~ . - 1").fit(training).columns == R_SPECIES_COLUMNS


def test_intercept_interaction_and_transform_names(lab_split):
    training, _ = lab_split
    design = nf.Design("body_mass_g ~ log(bill_length_mm) + island*sex").fit(training)
    assert design.columns == [
        "(Intercept)", "log(bill_length_mm)", "islandDream", "islandTorgersen", "sexmale",
        "islandDream:sexmale", "islandTorgersen:sexmale",
    ]


def test_model_matrix_values_match_a_hand_encoding(lab_split):
    training, _ = lab_split
    X, _ = nf.Design("body_mass_g ~ . - 1").fit(training).tensors(training)
    expected = np.column_stack([
        (training["species"] == "Adelie"), (training["species"] == "Chinstrap"), (training["species"] == "Gentoo"),
        (training["island"] == "Dream"), (training["island"] == "Torgersen"),
        training["bill_length_mm"], training["bill_depth_mm"], training["flipper_length_mm"],
        (training["sex"] == "male"),
    ]).astype(np.float32)
    np.testing.assert_array_equal(X.numpy(), expected)


def test_scaling_uses_training_mean_and_sd_like_r_scale(lab_split):
    training, testing = lab_split
    design = nf.Design("body_mass_g ~ . - 1", scale=True).fit(training)
    raw = nf.Design("body_mass_g ~ . - 1").fit(training)
    Xtrain_raw = raw.transform(training).X
    mean, sd = Xtrain_raw.mean(axis=0), Xtrain_raw.std(axis=0, ddof=1)
    Xtest, Ytest = design.tensors(testing)
    np.testing.assert_allclose(Xtest.numpy(), (raw.transform(testing).X - mean) / sd, rtol=1e-5, atol=1e-6)
    Xtrain, _ = design.tensors(training)
    np.testing.assert_allclose(Xtrain.numpy().std(axis=0, ddof=1), np.ones(9), rtol=1e-5)
    assert Ytest.dtype == torch.float32 and Ytest.shape == (len(testing), 1)
    np.testing.assert_array_equal(Ytest.numpy()[:, 0], testing["body_mass_g"].to_numpy(np.float32))


def test_scaled_columns_are_exactly_value_minus_mean_over_sd():
    # The design scales each model-matrix column on its own (never holding the float64 matrix):
    # its numbers must be exactly those of numpy on that column, in float64, cast at the end.
    n = 3000
    i = np.arange(n)
    frame = pd.DataFrame({
        "y": np.sin(i).astype(np.float32),
        "a": (1000 + (i * 37 % 101) / 7).astype(np.float32),  # float32 data, read in float64
        "b": i * 13 % 50,  # integers
        "g": pd.Categorical(np.array(["p", "q", "r"])[i * 7 % 3]),
    })
    frame.loc[[5, 17, 2999], "a"] = np.nan  # rows left out: the statistics are of the other rows
    kept = frame.dropna()
    a, b = kept["a"].to_numpy(np.float64), kept["b"].to_numpy(np.float64)
    q, r = (kept["g"] == "q").to_numpy(np.float64), (kept["g"] == "r").to_numpy(np.float64)
    formula = "y ~ a + b + g + g:a + poly(b, 2)"
    raw = nf.Design(formula).fit(frame).transform(frame).X  # unscaled, float64
    assert nf.Design(formula).fit(frame).columns[1:] == [
        "a", "b", "gq", "gr", "poly(b, 2)1", "poly(b, 2)2", "a:gq", "a:gr"]
    np.testing.assert_array_equal(raw[:, [1, 2, 3, 4, 7, 8]], np.column_stack([a, b, q, r, a * q, a * r]))
    for dtype in (np.float64, np.float32):
        design = nf.Design(formula, scale=True, scale_response=True)
        m = design.fit_transform(frame, dtype=dtype)
        assert m.X.dtype == dtype and m.X.flags.c_contiguous and m.X.shape == (n - 3, 9)
        assert m.rows.sum() == n - 3 and m.missing_by_column == {"a": 3}
        np.testing.assert_array_equal(m.X[:, 0], np.ones(n - 3, dtype=dtype))  # the intercept stays 1
        for j in range(1, 9):
            column = np.ascontiguousarray(raw[:, j])
            mean, sd = column.mean(), column.std(ddof=1)
            assert design.center_[j] == mean and design.scale_[j] == sd
            np.testing.assert_array_equal(m.X[:, j], ((column - mean) / sd).astype(dtype))
        y = kept["y"].to_numpy(np.float64)
        assert design.response_center_[0] == y.mean() and design.response_scale_[0] == y.std(ddof=1)
        np.testing.assert_array_equal(m.y[:, 0], (y - y.mean()) / y.std(ddof=1))
    # Pinned: the numbers themselves, so that a change of summation order shows.
    assert design.center_[1:3].tolist() == [1007.1427619839892, 24.500166833500167]
    assert design.scale_[1:3].tolist() == [4.1660920366196335, 14.4375092104489]
    assert float(m.X[1, 1]) == -0.4457550048828125


def test_scale_numeric_leaves_dummies(lab_split):
    training, _ = lab_split
    X, _ = nf.Design("body_mass_g ~ . - 1", scale="numeric").fit(training).tensors(training)
    assert set(np.unique(X[:, 0].numpy())) == {0.0, 1.0}
    assert abs(float(X[:, 5].mean())) < 1e-5


def test_factor_response_gives_codes_levels_and_decode(lab_split):
    training, testing = lab_split
    design = nf.Design("species ~ . - 1", scale=True).fit(training)
    assert design.levels == ["Adelie", "Chinstrap", "Gentoo"]
    _, y = design.tensors(testing)
    assert y.dtype == torch.int64 and y.shape == (len(testing),)
    np.testing.assert_array_equal(y.numpy(), testing["species"].cat.codes.to_numpy())
    labels = design.decode(y)
    assert list(labels) == list(testing["species"])
    assert list(labels.categories) == ["Adelie", "Chinstrap", "Gentoo"]


def test_string_columns_become_factors_with_sorted_levels():
    frame = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "g": ["b", "a", "c", "a"]})
    design = nf.Design("y ~ g").fit(frame)
    assert design.columns == ["(Intercept)", "gb", "gc"]


def test_numeric_response_transform_and_several_responses(lab_split):
    training, _ = lab_split
    design = nf.Design("log(body_mass_g) ~ bill_length_mm").fit(training)
    _, y = design.tensors(training)
    np.testing.assert_allclose(y.numpy()[:, 0], np.log(training["body_mass_g"].to_numpy()), rtol=1e-6)
    both = nf.Design("cbind(body_mass_g, flipper_length_mm) ~ bill_length_mm").fit(training)
    assert both.response_columns == ["body_mass_g", "flipper_length_mm"]
    assert both.tensors(training)[1].shape == (len(training), 2)
    # R reads 'a + b ~' as the sum of a and b; nnfit asks which of the two was meant.
    with pytest.raises(FormulaError) as error:
        nf.Design("body_mass_g + flipper_length_mm ~ bill_length_mm")
    assert str(error.value) == (
        "The response 'body_mass_g + flipper_length_mm' adds columns, as R would; for several responses write "
        "cbind(body_mass_g, flipper_length_mm), for their sum I(body_mass_g + flipper_length_mm)."
    )


def test_scale_response_round_trip(lab_split):
    training, _ = lab_split
    design = nf.Design("body_mass_g ~ .", scale=True, scale_response=True).fit(training)
    _, y = design.tensors(training)
    assert abs(float(y.mean())) < 1e-5
    np.testing.assert_allclose(design.unscale_response(y).numpy()[:, 0], training["body_mass_g"], rtol=1e-5)


def test_missing_rows_are_left_out_and_reported(penguins):
    design = nf.Design("body_mass_g ~ . - year").fit(penguins)
    assert design.n_left_out_ == 11
    with pytest.warns(MissingValuesWarning, match=r"^Left out 11 of 344 rows with a missing value \(body_mass_g: 2, "):
        X, y = design.tensors(penguins)
    assert len(X) == len(y) == 333


def test_dot_expands_to_every_other_column_and_minus_drops(penguins):
    design = nf.Design("body_mass_g ~ . - year - island", scale=True).fit(penguins.dropna())
    assert design.rhs_ == "species + bill_length_mm + bill_depth_mm + flipper_length_mm + sex"
    # As in R's model frame, the removed columns are still variables: a row missing one is left out.
    assert design.predictors == ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "sex", "year"]


def test_state_survives_json_and_applies_to_new_data(lab_split):
    training, testing = lab_split
    formula = "body_mass_g ~ scale(bill_length_mm) + poly(flipper_length_mm, 2) + species:sex + log(bill_depth_mm)"
    design = nf.Design(formula, scale=True, scale_response=True).fit(training)
    again = nf.Design.from_dict(json.loads(json.dumps(design.to_dict())))
    assert again.columns == design.columns
    X1, y1 = design.tensors(testing)
    X2, y2 = again.tensors(testing)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)



def test_a_design_whose_response_is_named_on_the_right_too_survives_json(lab_split):
    training, testing = lab_split
    with pytest.warns(FormulaWarning, match="appears on the right-hand side"):
        design = nf.Design("body_mass_g ~ body_mass_g + flipper_length_mm", scale=True).fit(training)
    again = nf.Design.from_dict(json.loads(json.dumps(design.to_dict())))  # one description of body_mass_g
    assert again.columns == design.columns == ["(Intercept)", "flipper_length_mm"]
    X1, y1 = design.tensors(testing)
    X2, y2 = again.tensors(testing)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)

def test_predictors_only_when_response_absent(lab_split):
    training, testing = lab_split
    design = nf.Design("body_mass_g ~ . - 1").fit(training)
    X = design.tensors(testing.drop(columns="body_mass_g"))
    assert isinstance(X, torch.Tensor) and X.shape == (len(testing), 9)


# ---------------------------------------------------------------- bad input
def test_unknown_column_lists_close_names(lab_split):
    training, _ = lab_split
    with pytest.raises(FormulaError) as error:
        nf.Design("body_mass_g ~ bill_lenght_mm").fit(training)
    assert str(error.value) == (
        "The formula 'body_mass_g ~ bill_lenght_mm' uses 'bill_lenght_mm', which is not a column of the data "
        "(did you mean 'bill_length_mm', 'bill_depth_mm', 'flipper_length_mm'?)."
    )


def test_unknown_column_inside_a_transform(lab_split):
    training, _ = lab_split
    with pytest.raises(FormulaError, match=r"^The formula 'body_mass_g ~ scale\(flipper\)' uses 'flipper', which is not a column of the data \(did you mean 'flipper_length_mm'\?\)\.$"):
        nf.Design("body_mass_g ~ scale(flipper)").fit(training)


def test_missing_response(lab_split):
    training, _ = lab_split
    with pytest.raises(DataError) as error:
        nf.Design("mass ~ .").fit(training)
    assert str(error.value) == "The response 'mass' is not a column of the data (did you mean 'body_mass_g'?)."


def test_formula_without_tilde():
    with pytest.raises(FormulaError) as error:
        nf.Design("body_mass_g")
    assert str(error.value) == "The formula 'body_mass_g' has no '~'; write it as 'response ~ predictors'."


def test_unseen_level_at_predict_time_is_named(lab_split):
    training, testing = lab_split
    design = nf.Design("body_mass_g ~ . - 1").fit(training)
    new = testing.copy()
    new["island"] = new["island"].astype(str)
    new.iloc[0, new.columns.get_loc("island")] = "Atlantis"
    with pytest.raises(LevelError) as error:
        design.tensors(new)
    assert str(error.value) == (
        "Column 'island' has the level 'Atlantis', which training never saw (levels: Biscoe, Dream, Torgersen)."
    )


def test_missing_column_at_predict_time_is_named(lab_split):
    training, testing = lab_split
    design = nf.Design("body_mass_g ~ . - 1").fit(training)
    with pytest.raises(DataError) as error:
        design.tensors(testing.drop(columns="sex"))
    assert str(error.value) == "The data has no column 'sex', which the design uses."


def test_non_numeric_value_in_numeric_column():
    frame = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "x": ["1.5", "2.5", "abc", "4"]})
    with pytest.raises(DataError) as error:
        nf.Design("y ~ x").fit(frame)
    assert str(error.value) == (
        "Column 'x' is numeric but holds the non-numeric value 'abc' (row 2); fix or remove it, "
        "or make the column a factor."
    )
    good = pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0]})
    design = nf.Design("y ~ x").fit(good)
    with pytest.raises(DataError) as error:
        design.tensors(pd.DataFrame({"y": [1.0], "x": ["seven"]}))
    assert str(error.value) == "Column 'x' must be numeric, as in training, but holds 'seven' (row 0)."


def test_empty_after_missing_rows():
    frame = pd.DataFrame({"y": [1.0, np.nan, 3.0], "x": [np.nan, 2.0, np.nan]})
    with pytest.raises(DataError) as error:
        nf.Design("y ~ x").fit(frame)
    assert str(error.value) == (
        "No rows are left after leaving out the 3 rows with a missing value (y: 1, x: 2)."
    )


def test_factor_response_with_one_level(lab_split):
    training, _ = lab_split
    adelie = training[training["species"] == "Adelie"]
    with pytest.raises(DataError) as error:
        nf.Design("species ~ bill_length_mm").fit(adelie)
    assert str(error.value) == (
        "The response 'species' has only one level in the training data ('Adelie'); a classifier needs at least two."
    )


def test_levels_of_numeric_response_and_unfitted_design(lab_split):
    training, _ = lab_split
    with pytest.raises(ArgumentError, match=r"^This Design is not fitted yet"):
        nf.Design("y ~ x").tensors(training)
    with pytest.raises(ArgumentError) as error:
        nf.Design("body_mass_g ~ .").fit(training).levels
    assert str(error.value) == "The response 'body_mass_g' is numeric; it has no levels."


def test_bad_scale_argument():
    with pytest.raises(ArgumentError) as error:
        nf.Design("y ~ x", scale="yes")
    assert str(error.value) == "scale must be True, False or 'numeric', not 'yes'."


def test_design_does_not_import_torch_nn_or_the_loop():
    import subprocess
    import sys

    code = (
        "import sys, nnfit.design;"
        "bad = [m for m in ('nnfit.train.loop', 'nnfit.train.learner', 'nnfit.modules') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_warning_without_missing_rows(lab_split):
    training, _ = lab_split
    design = nf.Design("body_mass_g ~ .").fit(training)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        design.tensors(training)


@pytest.mark.parametrize("formula", ["body_mass_g ~ . - year", "species ~ . - year", "cbind(log(body_mass_g), bill_depth_mm) ~ island*sex"])
def test_fit_transform_equals_fit_then_transform(penguins, formula):
    once = nf.Design(formula, scale=True, scale_response=True)
    both = once.fit_transform(penguins)
    separate = nf.Design(formula, scale=True, scale_response=True).fit(penguins).transform(penguins)
    np.testing.assert_array_equal(both.X, separate.X)
    np.testing.assert_array_equal(both.y, separate.y)
    np.testing.assert_array_equal(both.rows, separate.rows)
    assert (both.n_left_out, both.missing_by_column) == (separate.n_left_out, separate.missing_by_column)


def test_new_data_without_a_complete_row_gives_empty_matrices(lab_split):
    training, testing = lab_split
    design = nf.Design("body_mass_g ~ . - 1").fit(training)
    m = design.transform(testing.assign(bill_length_mm=np.nan))
    assert m.X.shape == (0, 9) and m.n_left_out == len(testing) and not m.rows.any()

"""Frames and files: polars wherever pandas works, and nf.read / the CLI on CSV and Parquet."""

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import nnfit as nf
from nnfit.cli import main


@pytest.fixture(scope="module")
def frames():
    penguins = nf.datasets.load("penguins")
    return penguins, pl.from_pandas(penguins)


def test_design_reads_polars_as_pandas(frames):
    pandas_frame, polars_frame = frames
    # polars keeps a Categorical's levels in order of appearance; the Design sorts them as R does.
    assert polars_frame["species"].unique(maintain_order=True).to_list() == ["Adelie", "Gentoo", "Chinstrap"]
    from_pandas = nf.Design("body_mass_g ~ . - year", scale=True).fit(pandas_frame.dropna())
    from_polars = nf.Design("body_mass_g ~ . - year", scale=True).fit(polars_frame.drop_nulls())
    assert from_polars.columns == from_pandas.columns
    assert from_polars.columns[:3] == ["(Intercept)", "speciesChinstrap", "speciesGentoo"]
    X, y = from_polars.tensors(polars_frame.drop_nulls())
    X0, y0 = from_pandas.tensors(pandas_frame.dropna())
    assert X.equal(X0) and y.equal(y0)


def test_a_polars_enum_keeps_its_level_order():
    frame = pl.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "size": ["small", "large", "medium", "small"]})
    frame = frame.with_columns(pl.col("size").cast(pl.Enum(["small", "medium", "large"])))
    design = nf.Design("y ~ size - 1").fit(frame)
    assert design.columns == ["sizesmall", "sizemedium", "sizelarge"]


def test_split_gives_polars_frames_with_the_same_rows(frames):
    pandas_frame, polars_frame = frames
    training, testing = nf.split(polars_frame, prop=0.8, seed=1, strata="species")
    expected_training, expected_testing = nf.split(pandas_frame, prop=0.8, seed=1, strata="species")
    assert isinstance(training, pl.DataFrame) and isinstance(testing, pl.DataFrame)
    np.testing.assert_array_equal(training["bill_length_mm"].to_numpy(), expected_training["bill_length_mm"])
    np.testing.assert_array_equal(testing["body_mass_g"].to_numpy(), expected_testing["body_mass_g"])
    assert testing["species"].to_list() == expected_testing["species"].tolist()


def test_mlp_on_polars_predicts_polars(frames, quiet):
    pandas_frame, polars_frame = frames
    training, testing = nf.split(polars_frame, prop=0.8, seed=1)
    pandas_training, pandas_testing = nf.split(pandas_frame, prop=0.8, seed=1)
    fit = nf.mlp("body_mass_g ~ . - year", data=training, hidden=5, epochs=3, seed=1, verbose=False)
    same = nf.mlp("body_mass_g ~ . - year", data=pandas_training, hidden=5, epochs=3, seed=1, verbose=False)
    predicted = fit.predict(testing)
    assert isinstance(predicted, pl.Series) and predicted.name == "body_mass_g"
    expected = same.predict(pandas_testing)
    assert predicted.null_count() == int(expected.isna().sum()) == 1  # a row with missing predictors
    np.testing.assert_allclose(predicted.to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert fit.evaluate(testing) == same.evaluate(pandas_testing)

    classes = nf.mlp("species ~ . - year", data=training, hidden=5, epochs=3, seed=1, verbose=False)
    labels = classes.predict(testing)
    assert labels.dtype == pl.Enum(["Adelie", "Chinstrap", "Gentoo"])
    expected_labels = [None if pd.isna(label) else label for label in classes.predict(pandas_testing)]
    assert labels.to_list() == expected_labels and labels.null_count() == 1
    probabilities = classes.predict(testing, type="prob")
    assert isinstance(probabilities, pl.DataFrame) and probabilities.columns == ["Adelie", "Chinstrap", "Gentoo"]
    complete = probabilities.drop_nulls()
    np.testing.assert_allclose(complete.sum_horizontal().to_numpy(), 1.0, rtol=1e-12)


def test_sklearn_estimators_take_polars_frames(frames):
    from nnfit.sklearn import MLPRegressor

    data = frames[0].dropna()[["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]]
    X, y = data.drop(columns="body_mass_g"), data["body_mass_g"].to_numpy()
    from_polars = MLPRegressor(hidden=4, epochs=3, random_state=0).fit(pl.from_pandas(X), y)
    from_pandas = MLPRegressor(hidden=4, epochs=3, random_state=0).fit(X, y)
    assert from_polars.feature_names_in_.tolist() == ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
    np.testing.assert_array_equal(from_polars.predict(pl.from_pandas(X)), from_pandas.predict(X))


def test_parquet_round_trip_keeps_types_and_level_order(tmp_path, frames):
    penguins = frames[0].copy()
    penguins["island"] = penguins["island"].cat.reorder_categories(["Torgersen", "Dream", "Biscoe"])
    penguins.to_parquet(tmp_path / "penguins.parquet")
    back = nf.read(tmp_path / "penguins.parquet")
    pd.testing.assert_frame_equal(back, penguins)
    assert list(back["island"].cat.categories) == ["Torgersen", "Dream", "Biscoe"]
    assert nf.Design("body_mass_g ~ island - 1").fit(back.dropna()).columns == [
        "islandTorgersen", "islandDream", "islandBiscoe"]
    # A file polars wrote reads back the same way.
    pl.from_pandas(penguins).write_parquet(tmp_path / "polars.parquet")
    from_polars = nf.read(tmp_path / "polars.parquet")
    assert from_polars["body_mass_g"].equals(penguins["body_mass_g"])
    assert from_polars["year"].dtype == np.int64


def test_csv_keeps_number_types(tmp_path, frames):
    frames[0].to_csv(tmp_path / "penguins.csv", index=False)
    back = nf.read(tmp_path / "penguins.csv")
    assert back.dtypes.astype(str).to_dict() == {
        "species": "str", "island": "str", "bill_length_mm": "float64", "bill_depth_mm": "float64",
        "flipper_length_mm": "float64", "body_mass_g": "float64", "sex": "str", "year": "int64"}
    assert int(back["sex"].isna().sum()) == 11


def test_cli_fits_and_predicts_from_parquet(tmp_path, frames, capsys):
    training, testing = nf.split(frames[0], prop=0.8, seed=1)
    training.to_parquet(tmp_path / "training.parquet")
    testing.to_parquet(tmp_path / "testing.parquet")
    assert main(["fit", str(tmp_path / "training.parquet"), "body_mass_g ~ . - year", "--out", str(tmp_path / "mass"),
                 "--hidden", "5", "--epochs", "3", "--seed", "1"]) == 0
    assert main(["predict", str(tmp_path / "mass"), str(tmp_path / "testing.parquet"),
                 "--out", str(tmp_path / "predictions.csv")]) == 0
    written = pd.read_csv(tmp_path / "predictions.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = nf.load(tmp_path / "mass" / "model.nnfit").predict(testing)
    np.testing.assert_allclose(written[".pred"].to_numpy(), expected.to_numpy(), rtol=1e-9)
    assert written.columns.tolist() == testing.columns.tolist() + [".pred"]

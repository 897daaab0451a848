import numpy as np
import pandas as pd
import pytest

import nnfit as nf
from nnfit.errors import ArgumentError, DataError


def test_penguins_as_r_has_them(penguins):
    assert penguins.shape == (344, 8)
    assert list(penguins.columns) == [
        "species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year",
    ]
    assert list(penguins["species"].cat.categories) == ["Adelie", "Chinstrap", "Gentoo"]
    assert list(penguins["island"].cat.categories) == ["Biscoe", "Dream", "Torgersen"]
    assert list(penguins["sex"].cat.categories) == ["female", "male"]
    # R: summary(penguins): 152 Adelie, 68 Chinstrap, 124 Gentoo; 11 NA sex; 2 NA bill length
    assert penguins["species"].value_counts().to_dict() == {"Adelie": 152, "Gentoo": 124, "Chinstrap": 68}
    assert int(penguins["sex"].isna().sum()) == 11
    assert int(penguins["bill_length_mm"].isna().sum()) == 2
    assert len(penguins.dropna()) == 333
    assert penguins["year"].dtype == np.int64
    assert penguins["body_mass_g"].mean() == pytest.approx(4201.754386, rel=1e-9)


def test_names_and_unknown():
    assert nf.datasets.names() == ["penguins"]
    with pytest.raises(ArgumentError) as error:
        nf.datasets.load("iris")
    assert str(error.value) == "Unknown data set 'iris'; bundled data sets: penguins."


def test_read_csv_bundled_and_errors(tmp_path, penguins):
    path = tmp_path / "p.csv"
    penguins.to_csv(path, index=False)
    frame = nf.datasets.read(path)
    assert frame.shape == (344, 8)
    assert nf.datasets.read("penguins").equals(penguins)
    with pytest.raises(DataError) as error:
        nf.datasets.read(tmp_path / "none.csv")
    assert str(error.value) == f"No data file {str(tmp_path / 'none.csv')!r}, and no bundled data set of that name (penguins)."
    with pytest.raises(DataError, match="is a directory"):
        nf.datasets.read(tmp_path)

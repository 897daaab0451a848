import numpy as np
import pandas as pd
import pytest

import nnfit as nf
from nnfit.errors import ArgumentError, DataError


def test_split_sizes_order_and_disjointness(penguins):
    training, testing = nf.split(penguins, prop=0.8, seed=1)
    assert len(training) == 275 and len(testing) == 69  # round(0.8 * 344)
    assert training.index.is_monotonic_increasing and testing.index.is_monotonic_increasing
    assert set(training.index).isdisjoint(testing.index)
    assert sorted(training.index.tolist() + testing.index.tolist()) == list(range(344))


def test_split_is_reproducible_and_seed_dependent(penguins):
    a, _ = nf.split(penguins, prop=0.8, seed=1)
    b, _ = nf.split(penguins, prop=0.8, seed=1)
    c, _ = nf.split(penguins, prop=0.8, seed=2)
    assert a.index.equals(b.index)
    assert not a.index.equals(c.index)


def test_stratified_split_keeps_class_shares(penguins):
    training, testing = nf.split(penguins, prop=0.8, seed=3, strata="species")
    counts = penguins["species"].value_counts()
    train_counts = training["species"].value_counts()
    for level in counts.index:
        assert train_counts[level] == round(0.8 * counts[level])


@pytest.mark.parametrize("prop", [0, 1, 1.5, -0.2, True, "half"])
def test_prop_outside_zero_one(penguins, prop):
    with pytest.raises(ArgumentError) as error:
        nf.split(penguins, prop=prop)
    assert str(error.value) == f"prop must be a number strictly between 0 and 1, not {prop!r}."


def test_split_too_small_and_unknown_strata(penguins):
    with pytest.raises(DataError, match=r"^Cannot split a data frame with 1 row\(s\); it needs at least 2\.$"):
        nf.split(penguins.head(1), prop=0.5)
    with pytest.raises(DataError) as error:
        nf.split(penguins, prop=0.5, strata="colour")
    assert str(error.value) == "strata column 'colour' is not in the data."
    with pytest.raises(DataError, match=r"leaves one part of the 2 rows empty"):
        nf.split(pd.DataFrame({"x": [1, 2]}), prop=0.1)

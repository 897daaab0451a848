"""Property tests: for random frames of numbers, levels and missing values, Design and predict
either succeed or raise one of nnfit's own errors; predict gives one value per row, in order."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import nnfit as nf
from nnfit.errors import NnfitError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-10**6, max_value=10**6),
    st.none(),
)
words = st.one_of(st.sampled_from(["a", "b", "c", "B", " a", "", "NA"]), st.none(), st.floats(-5, 5))


def column(n):
    """A column of n values: numeric, text, Categorical, boolean or a mix of numbers and text."""
    return st.one_of(
        st.lists(numbers, min_size=n, max_size=n).map(lambda v: pd.Series(v, dtype="float64")),
        st.lists(st.integers(-3, 3), min_size=n, max_size=n).map(lambda v: pd.Series(v, dtype="int64")),
        st.lists(words, min_size=n, max_size=n).map(lambda v: pd.Series(v, dtype=object)),
        st.lists(st.sampled_from(["x", "y", "z", None]), min_size=n, max_size=n).map(
            lambda v: pd.Series(pd.Categorical(v, categories=["x", "y", "z"]))
        ),
        st.lists(st.booleans(), min_size=n, max_size=n).map(pd.Series),
    )


@st.composite
def frames(draw, min_rows=0, max_rows=12):
    n = draw(st.integers(min_rows, max_rows))
    names = draw(st.lists(st.sampled_from(["y", "x1", "x2", "x3", "group"]), min_size=1, max_size=4, unique=True))
    if "y" not in names:
        names = ["y"] + names
    return pd.DataFrame({name: draw(column(n)).to_numpy() if n else [] for name in names})


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


@SETTINGS
@given(frames(), st.sampled_from(["y ~ .", "y ~ . - 1", "y ~ x1 * group"]), st.sampled_from([True, False, "numeric"]))
def test_design_succeeds_or_raises_its_own_errors(frame, formula, scale):
    try:
        design = quietly(nf.Design(formula, scale=scale).fit, frame)
        matrices = quietly(design.transform, frame)
    except NnfitError as error:
        event(f"refused: {type(error).__name__}")
        return
    event("encoded")
    assert matrices.X.shape == (int(matrices.rows.sum()), len(design.columns))
    assert len(matrices.rows) == len(frame)
    assert np.isfinite(matrices.X).all()
    assert matrices.y is not None and len(matrices.y) == matrices.X.shape[0]
    # Encoding new data the same way gives the same matrix (what training learned is kept).
    again = quietly(design.transform, frame)
    assert np.array_equal(again.X, matrices.X)


@pytest.fixture(scope="module")
def fits(penguins):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        training = penguins.iloc[::2]
        return [
            nf.mlp("body_mass_g ~ bill_length_mm + island + sex", data=training, hidden=3, epochs=1, seed=1, verbose=False),
            nf.mlp("species ~ bill_length_mm + island", data=training, hidden=3, epochs=1, seed=1, verbose=False),
        ]


island = st.one_of(st.sampled_from(["Biscoe", "Dream", "Torgersen", "Anvers"]), st.none())
sex = st.one_of(st.sampled_from(["female", "male"]), st.none())
bill = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["39.1", "n/a"]), st.none())


@st.composite
def new_rows(draw):
    n = draw(st.integers(0, 15))
    rows = {
        "bill_length_mm": draw(st.lists(bill, min_size=n, max_size=n)),
        "island": draw(st.lists(island, min_size=n, max_size=n)),
        "sex": draw(st.lists(sex, min_size=n, max_size=n)),
    }
    index = draw(st.permutations(list(range(100, 100 + n))))
    frame = pd.DataFrame(rows, index=index)
    if draw(st.booleans()):
        known = frame["island"].where(frame["island"] != "Anvers")  # a Categorical cannot hold it
        frame["island"] = pd.Categorical(known, categories=["Biscoe", "Dream", "Torgersen"])
    return frame


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=new_rows())
def test_predict_gives_one_value_per_row_in_input_order(fits, frame):
    for fit in fits:
        try:
            predicted = quietly(fit.predict, frame)
        except NnfitError as error:
            event(f"{fit.task} refused: {type(error).__name__}")
            continue
        event(f"{fit.task} predicted")
        assert len(predicted) == len(frame)
        assert list(predicted.index) == list(frame.index)
        numeric = pd.to_numeric(frame["bill_length_mm"], errors="coerce").astype(float)
        used = ["bill_length_mm", "island", "sex"] if fit.task == "regression" else ["bill_length_mm", "island"]
        missing = frame[used].isna().any(axis=1).to_numpy() | ~np.isfinite(numeric.to_numpy())
        assert predicted.isna().to_numpy().tolist() == missing.tolist()
        # Each row's prediction does not depend on the rows around it.
        for i in np.flatnonzero(~missing)[:3]:
            alone = quietly(fit.predict, frame.iloc[[i]])
            if fit.task == "regression":
                assert math.isclose(alone.iloc[0], predicted.iloc[i], rel_tol=1e-6)
            else:
                assert alone.iloc[0] == predicted.iloc[i]

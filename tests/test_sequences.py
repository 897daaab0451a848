import numpy as np
import pandas as pd
import pytest

import nnfit as nf
from nnfit.errors import ArgumentError, DataError


def lagm(x, k):
    """The R lab's lagm(): k rows of NA, then x without its last k rows."""
    return np.vstack([np.full((k, x.shape[1]), np.nan), x[: len(x) - k]])


def test_lags_are_the_r_labs_lagm_with_its_names():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.standard_normal((9, 3)), columns=["DJ_return", "log_volume", "log_volatility"],
                         index=range(100, 109))
    lagged = nf.lags(frame, list(frame.columns), 3)
    assert list(lagged.columns) == [f"L{k}.{c}" for k in (1, 2, 3) for c in frame.columns]
    assert list(lagged.index) == list(frame.index)
    expected = np.hstack([lagm(frame.to_numpy(), k) for k in (1, 2, 3)])
    np.testing.assert_array_equal(lagged.to_numpy(), expected)
    assert int(lagged.isna().any(axis=1).sum()) == 3


def test_the_tensor_is_the_r_labs_array_reversed_and_permuted():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.standard_normal((8, 3)), columns=list("abc"))
    lagged = nf.lags(frame, ["a", "b", "c"], 4).to_numpy()
    # R: xrnn <- array(lagged, c(n, 3, 4)); xrnn <- xrnn[,, 4:1]; aperm(xrnn, c(1, 3, 2))
    xrnn = lagged.reshape(8, 4, 3)[:, ::-1, :]  # (rows, lag, variable), oldest lag first
    tensor = nf.lags(frame, ["a", "b", "c"], 4, as_tensor=True)
    assert tuple(tensor.shape) == (8, 4, 3) and str(tensor.dtype) == "torch.float32"
    np.testing.assert_allclose(tensor.numpy(), xrnn.astype(np.float32), equal_nan=True)
    np.testing.assert_allclose(tensor[5, -1].numpy(), frame.iloc[4].to_numpy(np.float32))  # yesterday last
    np.testing.assert_allclose(tensor[5, 0].numpy(), frame.iloc[1].to_numpy(np.float32))  # 4 days back first


def test_chosen_lags_and_groups():
    frame = pd.DataFrame({"g": ["x", "x", "x", "y", "y", "y"], "v": [1.0, 2, 3, 10, 20, 30]})
    assert nf.lags(frame, "v", [1, 3])["L3.v"].tolist()[3:] == [1.0, 2.0, 3.0]
    grouped = nf.lags(frame, "v", 1, group="g")["L1.v"].tolist()
    assert grouped[1:3] == [1.0, 2.0] and grouped[4:] == [10.0, 20.0] and np.isnan(grouped[0]) and np.isnan(grouped[3])


def test_nyse_lags_match_the_book_setup():
    nyse = nf.datasets.load("NYSE")
    lagged = nf.lags(nyse, ["DJ_return", "log_volume", "log_volatility"], 5)
    assert lagged.shape == (6051, 15)
    assert lagged["L5.log_volume"].iloc[5] == nyse["log_volume"].iloc[0]


def test_errors():
    frame = pd.DataFrame({"volume": [1.0, 2.0], "day": pd.Categorical(["mon", "tues"])})
    with pytest.raises(DataError) as error:
        nf.lags(frame, ["volum"], 1)
    assert str(error.value) == "The frame has no column 'volum' (did you mean 'volume'?)."
    with pytest.raises(DataError, match="Column 'day' is not numeric"):
        nf.lags(frame, "day", 1)
    with pytest.raises(ArgumentError, match="k must be a positive number of lags, not 0"):
        nf.lags(frame, "volume", 0)
    with pytest.raises(ArgumentError, match="must be increasing positive whole numbers"):
        nf.lags(frame, "volume", [2, 1])

"""Lagged predictors for time series: a frame of lags for a linear model, a 3-D tensor for an RNN.

ISLR's NYSE lab predicts today's log trading volume from the last L days of three series. Its
linear autoregression takes the lags as columns, named as the R lab's ``data.frame(L1 = lagm(x,
1), ...)`` names them: ``L1.DJ_return``, ``L1.log_volume``, ..., ``L2.DJ_return``, ...; its RNN
takes them as a sequence, a tensor of shape (rows, lags, variables) ordered from the oldest day
(lag L) to yesterday (lag 1), as the R lab's ``aperm(xrnn[,, L:1], c(1, 3, 2))``.

>>> import pandas as pd, nnfit as nf
>>> frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [10.0, 20.0, 30.0, 40.0]})
>>> nf.lags(frame, ["x", "y"], 2)
   L1.x  L1.y  L2.x  L2.y
0   NaN   NaN   NaN   NaN
1   1.0  10.0   NaN   NaN
2   2.0  20.0   1.0  10.0
3   3.0  30.0   2.0  20.0
>>> nf.lags(frame, ["x", "y"], 2, as_tensor=True)[3]     # row 3: lag 2 first, then lag 1
tensor([[ 2., 20.],
        [ 3., 30.]])
"""

from __future__ import annotations

from .errors import ArgumentError, ArgumentTypeError, DataError, close_names


def lags(frame, columns, k, as_tensor: bool = False, group=None):
    """Lagged copies of ``columns``: lag 1 to ``k`` (or the lags in a list ``k``), first rows missing.

    Returns a DataFrame with the frame's index and the columns ``L1.<name>``, ..., ``Lk.<name>``
    (lag by lag, the columns in the order given), or with ``as_tensor=True`` a float32 tensor of
    shape (rows, lags, columns) with the oldest lag first, for ``nf.modules.RNN``; rows whose
    lags reach before the start are NaN, so keep rows ``k:`` (``frame.iloc[k:]``) for fitting.
    Rows are taken in the frame's order, which must be time order. With ``group`` (a column
    name), lags never cross from one group into the next.

    >>> import nnfit as nf
    >>> nyse = nf.datasets.load("NYSE")
    >>> X = nf.lags(nyse, ["DJ_return", "log_volume", "log_volatility"], 5)
    >>> list(X.columns[:4])
    ['L1.DJ_return', 'L1.log_volume', 'L1.log_volatility', 'L2.DJ_return']
    >>> nf.lags(nyse, ["DJ_return", "log_volume", "log_volatility"], 5, as_tensor=True).shape
    torch.Size([6051, 5, 3])
    """
    import numpy as np
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise ArgumentTypeError(f"lags takes a pandas DataFrame, not {type(frame).__name__}.")
    columns = [columns] if isinstance(columns, str) else list(columns)
    if not columns:
        raise ArgumentError("lags needs at least one column to lag.")
    for column in columns:
        if column not in frame.columns:
            raise DataError(f"The frame has no column {column!r}{close_names(column, frame.columns)}.")
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise DataError(f"Column {column!r} is not numeric ({frame[column].dtype}); lag numbers only.")
    steps = _steps(k)
    source = frame[columns].astype("float64")
    if group is None:
        shifted = {step: source.shift(step) for step in steps}
    else:
        if group not in frame.columns:
            raise DataError(f"The frame has no group column {group!r}{close_names(group, frame.columns)}.")
        grouped = source.groupby(frame[group].to_numpy(), sort=False)
        shifted = {step: grouped.shift(step) for step in steps}
    if as_tensor:
        import torch

        oldest_first = np.stack([shifted[step].to_numpy() for step in sorted(steps, reverse=True)], axis=1)
        return torch.from_numpy(oldest_first.astype(np.float32))
    out = pd.DataFrame(index=frame.index)
    for step in steps:
        for column in columns:
            out[f"L{step}.{column}"] = shifted[step][column]
    return out


def _steps(k) -> list[int]:
    steps = [k] if isinstance(k, int) and not isinstance(k, bool) else None
    if steps is not None:
        if k < 1:
            raise ArgumentError(f"k must be a positive number of lags, not {k!r}.")
        return list(range(1, k + 1))
    try:
        steps = [int(step) for step in k]
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"k must be a number of lags or a list of positive lags, not {k!r}.") from None
    if not steps or any(step < 1 for step in steps) or len(set(steps)) != len(steps) or steps != sorted(steps):
        raise ArgumentError(f"A list of lags must be increasing positive whole numbers, not {k!r}.")
    return steps

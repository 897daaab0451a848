"""Training/testing splits of a data frame, as R's ``slice_sample(prop=)`` + ``anti_join``."""

from __future__ import annotations

import numpy as np

from .errors import ArgumentError, DataError


def split(data, prop: float = 0.75, seed: int | None = None, strata: str | None = None):
    """Split ``data`` into (training, testing) with ``prop`` of the rows in training.

    Rows are drawn at random (reproducibly with ``seed``); each part keeps the original row
    order and index; a polars frame gives polars frames. With ``strata``, ``prop`` of each
    level of that column goes to training (missing values form their own stratum).

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins")
    >>> training, testing = nf.split(penguins, prop=0.8, seed=1)
    >>> len(training), len(testing)
    (275, 69)
    """
    import pandas as pd

    from .design import as_pandas, is_polars

    given, data = data, as_pandas(data)
    if isinstance(prop, bool) or not isinstance(prop, (int, float)) or not 0 < prop < 1:
        raise ArgumentError(f"prop must be a number strictly between 0 and 1, not {prop!r}.")
    n = len(data)
    if n < 2:
        raise DataError(f"Cannot split a data frame with {n} row(s); it needs at least 2.")
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = [np.arange(n)]
    else:
        if strata not in data.columns:
            raise DataError(f"strata column {strata!r} is not in the data.")
        codes = pd.factorize(data[strata], use_na_sentinel=False)[0]
        groups = [np.flatnonzero(codes == code) for code in np.unique(codes)]
    chosen = []
    for rows in groups:
        k = int(round(prop * len(rows)))
        chosen.append(rng.choice(rows, size=k, replace=False))
    mask = np.zeros(n, dtype=bool)
    mask[np.concatenate(chosen)] = True
    if mask.all() or not mask.any():
        raise DataError(f"prop={prop} leaves one part of the {n} rows empty; use more rows or another prop.")
    if is_polars(given):  # the same rows, still as polars frames
        return given.filter(mask), given.filter(~mask)
    return data.iloc[mask], data.iloc[~mask]

"""Folds for cross-validation: which fold each row is in, and each fold's own scaling.

``cross_validate``, ``grid(folds=)`` and CV+ intervals share them, so the same seed gives the
same folds everywhere.

>>> from nnfit.folds import assign_folds
>>> assign_folds(None, 10, 5, seed=1, stratify=False).tolist().count(0)
2
"""

from __future__ import annotations

import numpy as np

from .design import column_stats, scaling
from .errors import ArgumentError

def assign_folds(codes, n: int, folds: int, seed, stratify: bool) -> np.ndarray:
    """Fold number (0..folds-1) per row; stratified by class so each fold has every class.

    >>> import numpy as np
    >>> from nnfit.folds import assign_folds
    >>> codes = np.array([0] * 6 + [1] * 3)
    >>> fold = assign_folds(codes, 9, 3, seed=1, stratify=True)
    >>> [sorted(codes[fold == k].tolist()) for k in range(3)]      # every fold has both classes
    [[0, 0, 1], [0, 0, 1], [0, 0, 1]]
    """
    check_folds(folds)
    if folds > n:
        raise ArgumentError(f"folds={folds} is more than the {n} rows with complete data.")
    rng = np.random.default_rng(seed)
    assignment = np.empty(n, dtype=np.int64)
    if stratify:
        counts = np.bincount(codes)
        present = counts[counts > 0]
        if folds > present.min():
            raise ArgumentError(
                f"folds={folds} is more than the {present.min()} rows of the smallest class; use at most {present.min()} folds."
            )
        offset = 0
        for level in np.flatnonzero(counts):
            rows = rng.permutation(np.flatnonzero(codes == level))
            assignment[rows] = (np.arange(len(rows)) + offset) % folds
            offset += len(rows)
    else:
        assignment[rng.permutation(n)] = np.arange(n) % folds
    return assignment


def standardize(values: np.ndarray, rows: np.ndarray, response: bool = False):
    """Values scaled with the statistics of ``rows`` only, as a Design fitted on them would scale them.

    >>> import numpy as np
    >>> from nnfit.folds import standardize
    >>> scaled, center, sd = standardize(np.array([[1.0], [3.0], [100.0]]), np.array([0, 1]))
    >>> center.tolist(), scaled[:2, 0].round(4).tolist()                  # row 2 plays no part
    ([2.0], [-0.7071, 0.7071])
    """
    part = values[rows]
    center, sd = column_stats(part) if response else scaling(part, True, [])
    return (values - center) / sd, center, sd


def check_folds(folds) -> None:
    """``folds`` must be a whole number of at least 2.

    >>> from nnfit.folds import check_folds
    >>> check_folds(1)
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: folds must be a whole number of at least 2, not 1.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ArgumentError(f"folds must be a whole number of at least 2, not {folds!r}.")

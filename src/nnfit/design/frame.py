"""R's ``model.frame`` and ``model.matrix``: evaluated variables in, named columns out.

How a factor is coded in a term follows R's rule (``TermCode`` in R's model.c): a factor is
coded by contrasts when the term without it is the empty term or is contained in an earlier
term, and by indicators of all its levels otherwise; without an intercept, the first factor
of the first term that has one gets all its levels. Unordered factors use treatment contrasts
(columns named by level), ordered ones ``contr.poly`` (``.L``, ``.Q``, ``.C``, ``^4``, ...),
logicals are factors with levels FALSE and TRUE. In an interaction, the first variable's
columns vary fastest and names join with ':'.

>>> import numpy as np
>>> contr_poly(4).round(4).tolist()[0]
[-0.6708, 0.5, -0.2236]
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .functions import Value, level_label
from .grammar import deparse

CONTRAST, INDICATORS = 1, 2


def as_factor(value: Value) -> Value:
    """Logicals as R's model.matrix sees them: a factor with levels FALSE, TRUE."""
    if value.kind != "logical":
        return value
    data = np.asarray(value.data, dtype=np.float64)
    codes = np.where(np.isnan(data), -1, data != 0).astype(np.int64)
    return Value("factor", codes, ("FALSE", "TRUE"), False)


def is_factor(value: Value) -> bool:
    return value.kind in ("factor", "logical")


def factor_codes(terms: list, values: list, intercept: bool) -> list:
    """For each term, {variable index: CONTRAST or INDICATORS} for its factors, as R decides."""
    codes = []
    for k, term in enumerate(terms):
        pattern = {}
        for i in term:
            if not is_factor(values[i]):
                continue
            rest = frozenset(term) - {i}
            if not rest or any(rest <= frozenset(earlier) for earlier in terms[:k]):
                pattern[i] = CONTRAST
            else:
                pattern[i] = INDICATORS
        codes.append(pattern)
    if not intercept:
        for k, term in enumerate(terms):
            first = next((i for i in sorted(term) if is_factor(values[i]) and len(as_factor(values[i]).levels) > 1), None)
            if first is not None:
                codes[k][first] = INDICATORS
                break
    return codes


def contr_poly(n: int) -> np.ndarray:
    """R's ``contr.poly(n)``: orthonormal polynomial contrasts on the scores 1..n, (n, n - 1)."""
    scores = np.arange(1, n + 1, dtype=np.float64)
    X = np.power.outer(scores - scores.mean(), np.arange(n))
    q, r = np.linalg.qr(X)
    Z = q * np.diag(r)
    Z /= np.sqrt((Z ** 2).sum(axis=0))
    return Z[:, 1:]


def poly_names(n: int) -> list:
    names = [".L", ".Q", ".C"] + [f"^{d}" for d in range(4, n)]
    return names[: n - 1]


def variable_names(value: Value, label: str, code) -> list:
    """The names of the columns that one variable contributes to a term."""
    if value.kind == "numeric":
        return [label]
    if value.kind == "matrix":
        return [label + c for c in value.colnames]
    value = as_factor(value)
    levels = [level_label(level) for level in value.levels]
    if code == INDICATORS:
        return [label + level for level in levels]
    if len(levels) < 2:
        raise DataError(
            f"The factor {label!r} has only one level ({levels[0] if levels else 'none'!r}) in the training data; "
            "contrasts need at least two. Leave it out of the formula (- " + label + ")."
        )
    if value.ordered:
        return [label + name for name in poly_names(len(levels))]
    return [label + level for level in levels[1:]]


def variable_columns(value: Value, label: str, code):
    """The columns (n, k) and their names that one variable contributes to a term."""
    names = variable_names(value, label, code)
    if value.kind == "numeric":
        data = np.asarray(value.data, dtype=np.float64)
        return data.reshape(-1, 1), names
    if value.kind == "matrix":
        return np.asarray(value.data, dtype=np.float64), names
    value = as_factor(value)
    n_levels = len(value.levels)
    onehot = np.zeros((len(value.data), n_levels))
    rows = value.data >= 0
    onehot[np.flatnonzero(rows), value.data[rows]] = 1.0
    if code == INDICATORS:
        return onehot, names
    if value.ordered:
        return onehot @ contr_poly(n_levels), names
    return onehot[:, 1:], names


def model_matrix(n: int, terms: list, values: list, labels: list, codes: list, intercept: bool, skip=(),
                 intercept_column: bool = True):
    """R's model matrix of ``n`` rows, one block of columns per term: (blocks, names, assign, factor flags).

    ``intercept`` is the formula's (it decides the coding); ``intercept_column=False`` leaves
    its column out, as ``model.matrix(...)[, -1]``. ``skip`` holds the indices of terms that
    give no columns (the response named on the right). Each block is a function that builds
    its term's columns (the intercept's first) as a column-major float64 array, so that the
    caller can scale and store one term at a time and the whole float64 matrix never exists.
    """
    blocks, names, assign, from_factor = [], [], [], []
    if intercept and intercept_column:
        blocks.append(lambda: np.ones((n, 1), order="F"))
        names.append("(Intercept)")
        assign.append(0)
        from_factor.append(False)
    for k, term in enumerate(terms):
        if k in skip:
            continue
        column_names = [""]
        for i in term:  # the first variable's columns vary fastest
            var_names = variable_names(values[i], labels[i], codes[k].get(i))
            column_names = [f"{c}:{v}" if c else v for v in var_names for c in column_names]
        blocks.append(lambda term=term, code=codes[k]: _term_columns(
            n, [variable_columns(values[i], labels[i], code.get(i))[0] for i in term]))
        names.extend(column_names)
        assign.extend([k + 1] * len(column_names))
        has_factor = any(is_factor(values[i]) for i in term)
        from_factor.extend([has_factor] * len(column_names))
    return blocks, names, assign, from_factor


def _term_columns(n: int, parts: list) -> np.ndarray:
    """A term's columns from its variables' (n, k) columns: a main effect's are the variable's
    own (not copied when already column-major), an interaction's are multiplied (the first
    variable's columns varying fastest).

    Column-major, each column contiguous: the column statistics computed from it are then
    the same numbers as from that column of the whole model matrix.
    """
    columns = parts[0]
    for data in parts[1:]:
        columns = (columns[:, None, :] * data[:, :, None]).reshape(n, columns.shape[1] * data.shape[1])
    return np.asfortranarray(columns)


def labels_of(variables: list) -> list:
    return [deparse(node) for node in variables]

"""The design: from a data frame and an R formula to tensors, as R's ``model.matrix`` + ``scale``.

A ``Design`` learns everything it needs from the training data once (which variables the
formula names, each factor's levels, what ``poly``/``ns``/``bs``/``scale``/``cut`` learn, the
centring and scaling of every column) and re-applies exactly that to new data, so test data
never leaks into the encoding. The formula is parsed as data by ``grammar`` (never evaluated as
code), expanded by ``terms`` as R's ``terms()`` does, and its variables are computed by the
closed function table in ``functions``; ``frame`` builds R's model matrix, names and order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    DataError,
    FormulaError,
    FormulaWarning,
    LevelError,
    MissingValuesWarning,
    ModelFileError,
    close_names,
    warn,
)
from . import functions, grammar, terms as terms_module
from .frame import factor_codes, labels_of, model_matrix
from .functions import Environment, Value

_SCALE_CHOICES = (True, False, "numeric")
EMBED_LEVELS = 10  # embed="auto" gives a factor with more levels than this an embedding
MAX_LEVELS = 1_000_000
MAX_SAVED_COLUMNS = 1_000_000
_STORE_COLUMNS = 8  # model-matrix columns stored into X at a time (Design._scaled_matrix)


@dataclass
class Matrices:
    """What ``Design.transform`` returns: X (and y) for the complete rows of a frame.

    ``rows`` is a boolean mask over the frame's rows (True where a row was used) and
    ``n_left_out`` counts the rows left out for a missing value. ``codes`` holds the level
    codes (n, k) of the k embedded factors, or None; ``offset`` the summed ``offset()`` terms
    (in the response's units), or None.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins")
    >>> design = nf.Design("body_mass_g ~ flipper_length_mm + sex").fit(penguins.dropna())
    >>> matrices = design.transform(penguins)
    >>> matrices.X.shape, matrices.y.shape, matrices.n_left_out
    ((333, 3), (333, 1), 11)
    >>> matrices.missing_by_column
    {'body_mass_g': 2, 'flipper_length_mm': 2, 'sex': 11}
    """

    X: np.ndarray
    y: np.ndarray | None
    rows: np.ndarray
    n_left_out: int
    missing_by_column: dict
    codes: np.ndarray | None = None
    offset: np.ndarray | None = None

    def inputs(self) -> np.ndarray:
        """X, then one column of level codes per embedded factor (what ``MLP(embeddings=)`` reads)."""
        return self.X if self.codes is None else np.column_stack([self.X, self.codes])


class Design:
    """An R formula and the encoding it learned from training data.

    Parameters
    ----------
    formula : str
        An R formula, read as R's ``model.matrix`` reads it (see docs/formulas.md):
        ``"body_mass_g ~ . - year"``, ``"y ~ log(x) + a:b - 1"``, ``"y ~ poly(x, 2) + ns(z, 3)"``,
        ``"cbind(a, b) ~ ."`` for several numeric responses. It is parsed as data and never
        evaluated as code; only the functions of ``nnfit.design.functions.FUNCTIONS`` may be called.
    scale : True, False or "numeric"
        True standardizes every column of the model matrix with the training mean and
        standard deviation (n - 1), as R's ``scale()`` after ``model.matrix()``;
        "numeric" leaves dummy columns as 0/1; False leaves everything as it is.
    scale_response : bool
        Also standardize a numeric response (``unscale_response`` maps back).
    intercept : bool
        False drops the '(Intercept)' column while keeping R's treatment coding of factors
        (a network has its own biases), as ``model.matrix(...)[, -1]`` in R.
    embed : None, "auto" or a list of column names
        Factors to give as level codes (for a network's learned embedding) instead of dummy
        columns: "auto" takes every factor predictor with more than ``EMBED_LEVELS`` levels
        that appears only as a main effect. ``embedded_`` maps each to its levels.
    unknown : "error" or "other"
        A level of an embedded factor that training never saw: a ``LevelError`` naming the
        column and the level, or the extra code ``len(levels)`` ("other"). Dummy-coded
        factors always raise, since a dummy column has no place for a new level.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins").dropna().drop(columns="year")
    >>> design = nf.Design("body_mass_g ~ . - 1", scale=True).fit(penguins)
    >>> design.columns[:4]
    ['speciesAdelie', 'speciesChinstrap', 'speciesGentoo', 'islandDream']
    >>> X, y = design.tensors(penguins)
    >>> tuple(X.shape), tuple(y.shape)
    ((333, 9), (333, 1))
    >>> nf.Design("body_mass_g ~ poly(flipper_length_mm, 2) + I(sex == 'male')").fit(penguins).columns
    ['(Intercept)', 'poly(flipper_length_mm, 2)1', 'poly(flipper_length_mm, 2)2', 'I(sex == "male")TRUE']
    """

    def __init__(self, formula: str, scale=False, scale_response: bool = False, intercept: bool = True,
                 embed=None, unknown: str = "error"):
        if not isinstance(formula, str):
            raise ArgumentTypeError(f"formula must be a string such as 'y ~ x', not {type(formula).__name__}.")
        if not any(scale is choice for choice in _SCALE_CHOICES) and scale != "numeric":
            raise ArgumentError(f"scale must be True, False or 'numeric', not {scale!r}.")
        names = isinstance(embed, (list, tuple)) and all(isinstance(e, str) for e in embed)
        if not (embed is None or embed == "auto" or names):
            raise ArgumentError(f"embed must be None, 'auto' or a list of column names, not {embed!r}.")
        if unknown not in ("error", "other"):
            raise ArgumentError(f"unknown must be 'error' or 'other', not {unknown!r}.")
        self.parsed_ = _parse_formula(formula)
        self._responses()  # a response the design cannot read is an error before any data is seen
        self.embed = list(embed) if isinstance(embed, (list, tuple)) else embed
        self.unknown = unknown
        self.formula = formula
        self.scale = scale
        self.scale_response = bool(scale_response)
        self.intercept = bool(intercept)
        self.fitted_ = False

    # ------------------------------------------------------------------ learning
    def fit(self, data) -> "Design":
        """Learn columns, levels and scaling from ``data`` (rows with a missing value are left out)."""
        self._learn(as_pandas(data))
        return self

    def fit_transform(self, data, dtype=np.float64) -> Matrices:
        """``fit(data)`` and then ``transform(data)``, building the training matrices only once.

        ``dtype=np.float32`` gives X as tensors hold it, computed in float64 as always and cast
        once at the end, without a second float64 copy.
        """
        return self._learn(as_pandas(data), dtype)

    def _learned(self, variables: dict) -> None:
        """What fitting learns before the matrices: each variable's kind and levels, and what follows from them."""
        self.variables_ = variables
        self.lhs_ = grammar.deparse(self.parsed_.lhs)
        self.rhs_ = " + ".join(self.terms_.labels) or ("1" if self.terms_.intercept else "0")
        self.state_ = {}
        self.embedded_ = self._embedded()
        self._skip = self._response_on_right()
        self.response_center_ = self.response_scale_ = None

    def _learn(self, frame, dtype=np.float64) -> Matrices:
        if len(frame) == 0:
            raise DataError("The training data has no rows.")
        self._setup(frame.columns)
        self._learned({name: _learn_variable(frame[name], name) for name in self.response + self.predictors})
        matrices = self._encode(frame, response=True, learn=True, dtype=dtype)
        self.n_left_out_ = matrices.n_left_out
        self.fitted_ = True
        return matrices

    def _setup(self, columns) -> None:
        """The terms, response and predictors the formula reads from data with these column names."""
        parsed = self.parsed_
        self.terms_ = terms_module.expand(parsed, columns)
        self._check_calls()
        self.response = _ordered(terms_module.names_in(parsed.lhs), columns)
        for name in self.response:
            if name not in map(str, columns):
                raise DataError(f"The response {name!r} is not a column of the data{close_names(name, columns)}.")
        used = set()
        for node in self.terms_.variables + self.terms_.offsets:
            used |= terms_module.names_in(node)
        terms_module.check_columns(sorted(used), columns, self.formula)
        self.predictors = _ordered(used, columns)

    def columns_needed(self, columns) -> list:
        """The data columns the formula reads (response first), given the data's column names.

        ``.`` stands for every column the response does not use, as in ``fit``; a reader of
        files larger than memory reads only these.

        >>> import nnfit as nf
        >>> nf.Design("body_mass_g ~ log(flipper_length_mm) + sex").columns_needed(
        ...     ["species", "sex", "flipper_length_mm", "body_mass_g"])
        ['body_mass_g', 'sex', 'flipper_length_mm']
        """
        self._setup(list(columns))
        return self.response + self.predictors

    def fit_chunks(self, chunks, columns) -> "Design":
        """Learn from data given in chunks, never all in memory: the same design as ``fit`` on
        all the chunks' rows at once (levels, columns, centring and scaling).

        ``chunks`` is a function without arguments that returns an iterable of pandas frames,
        a fresh pass over the data at each call; it is called twice. ``columns`` are the data's
        column names (what ``.`` stands for); each frame needs only ``columns_needed(columns)``.
        The first pass learns each variable's kind and a factor's levels (the union over the
        chunks, sorted as R's ``factor()`` sorts them; a pandas Categorical keeps its levels
        only when every chunk has the same ones); the second builds each chunk's model matrix
        and merges the columns' counts, means and sums of squared deviations (Chan, Golub and
        LeVeque's pairwise update), minima and maxima, and the response's. Calls that learn
        from the whole column at once (``poly`` without ``raw = TRUE``, ``ns``/``bs`` without
        explicit knots, ``cut`` with a number of intervals, ``scale``, ``factor`` without
        ``levels``, ``lag``) are a ``FormulaError`` that says what to write instead.
        ``n_rows_`` and ``n_left_out_`` count the rows used and left out (a missing value),
        ``missing_by_column_`` the missing values per variable.

        >>> import nnfit as nf
        >>> penguins = nf.datasets.load("penguins")
        >>> parts = lambda: (penguins.iloc[i: i + 100] for i in range(0, len(penguins), 100))
        >>> design = nf.Design("body_mass_g ~ sex + flipper_length_mm", scale=True).fit_chunks(parts, penguins.columns)
        >>> whole = nf.Design("body_mass_g ~ sex + flipper_length_mm", scale=True).fit(penguins)
        >>> design.columns == whole.columns, bool(abs(design.center_ - whole.center_).max() < 1e-9)
        (True, True)
        >>> design.n_rows_, design.n_left_out_
        (333, 11)
        """
        self._setup(list(columns))
        self._check_streamable()
        self._learned(_merged_variables(chunks, self.response + self.predictors))
        x_moments = y_moments = None
        n_rows, missing, classes, first = 0, {}, None, True
        for frame in chunks():
            if len(frame) == 0:
                continue
            matrices = self._encode(frame, response=True, learn=first, unscaled=True)
            first = False
            n_rows += len(frame)
            for label, count in matrices.missing_by_column.items():
                missing[label] = missing.get(label, 0) + count
            x_moments = _merge_moments(x_moments, matrices.X)
            if self.response_kind_ == "factor":
                counts = np.bincount(matrices.y, minlength=len(self.levels_))
                classes = counts if classes is None else classes + counts
            else:
                y_moments = _merge_moments(y_moments, matrices.y)
        if first:
            raise DataError("The training data has no rows.")
        kept = x_moments[0]
        if kept == 0:
            raise DataError(
                f"No rows are left after leaving out the {n_rows} rows with a missing value" + _missing_summary(missing) + "."
            )
        self.center_, self.scale_ = scaling_from_moments(x_moments, self.scale, self._factor_columns, self.columns)
        if self.response_kind_ == "factor":
            present = np.flatnonzero(classes)
            if len(present) < 2:
                raise DataError(
                    f"The response {self.lhs_text()!r} has only one level in the training data "
                    f"({self.levels_[present[0]] if len(present) else 'none'!r}); a classifier needs at least two."
                )
        elif self.scale_response:
            self.response_center_, self.response_scale_ = stats_from_moments(y_moments)
        else:
            self.response_center_, self.response_scale_ = np.zeros(len(y_moments[1])), np.ones(len(y_moments[1]))
        self.n_rows_, self.n_left_out_, self.missing_by_column_ = int(kept), n_rows - int(kept), missing
        self.fitted_ = True
        return self

    def _check_streamable(self) -> None:
        """Refuse the calls whose learned state needs the whole column at once."""
        for node in self.terms_.variables + self.terms_.offsets + self._responses():
            for sub in node.walk():
                if sub.kind == "call" and functions.resolve(sub.value) is not None:
                    fix = _streaming_fix(sub, functions.resolve(sub.value), self.formula)
                    if fix:
                        raise FormulaError(
                            f"The formula {self.formula!r} calls {grammar.deparse(sub)}, {fix}, or fit the design "
                            "on an in-memory sample of the data."
                        )

    def _check_calls(self):
        for node in self.terms_.variables + self.terms_.offsets + self._responses():
            functions.check(node, self.formula)

    def _responses(self) -> list:
        """The response's expressions: each argument of cbind(...), else the left-hand side."""
        lhs = self.parsed_.lhs
        if lhs is None:
            raise FormulaError(f"The formula {self.formula!r} has no response on the left of '~'.")
        if lhs.kind == "call" and lhs.value == "cbind":
            if not lhs.args or any(name is not None for name in lhs.names):
                raise FormulaError(f"cbind() on the left of '~' takes the response columns, as in cbind(a, b); got {self.lhs_text()!r}.")
            return list(lhs.args)
        if lhs.kind == "binary" and lhs.value == "+":
            raise FormulaError(
                f"The response {self.lhs_text()!r} adds columns, as R would; for several responses write "
                f"cbind({', '.join(grammar.deparse(a) for a in lhs.args)}), for their sum I({self.lhs_text()})."
            )
        return [lhs]

    def lhs_text(self) -> str:
        return grammar.deparse(self.parsed_.lhs)

    def _response_on_right(self, say: bool = True) -> set:
        """Terms holding the response itself: R drops them from the model matrix, with a warning
        (``say=False``: without, as a saved design is loaded)."""
        lhs = self.parsed_.lhs
        if lhs not in self.terms_.variables:
            return set()
        index = self.terms_.variables.index(lhs)
        skip = {k for k, term in enumerate(self.terms_.terms) if index in term}
        if skip and say:
            warn(
                f"The response {self.lhs_text()!r} appears on the right-hand side of {self.formula!r}; it was dropped "
                "from the predictors, as R does.",
                FormulaWarning,
            )
        return skip

    def _encode(self, frame, response, learn, unscaled=False, dtype=np.float64) -> Matrices:
        """Evaluate the formula's variables on ``frame`` and build the matrices (learning on training).

        ``unscaled`` (fitting from chunks) learns the columns but not their scaling, and gives X and y
        unscaled: the caller merges the chunks' statistics.
        """
        responses = self._responses() if response else []
        raw = self.response + self.predictors if response else self.predictors
        bare = self._bare_names()
        columns = {name: _column_value(frame[name], self.variables_[name], name, name in self.embedded_, name in bare)
                   for name in raw}
        env = Environment(columns, len(frame), self.state_, learn, index=frame.index, text=self.formula)
        values = [functions.evaluate(node, env) for node in self.terms_.variables]
        offsets = [functions.evaluate(node, env) for node in self.terms_.offsets]
        targets = [functions.evaluate(node, env) for node in responses]
        for note in env.notes:
            warn(note, FormulaWarning)
        labels = labels_of(self.terms_.variables)
        named = list(zip(labels_of(responses), targets)) + list(zip(labels, values))
        named += list(zip(labels_of(self.terms_.offsets), offsets))
        missing, rows = {}, np.ones(len(frame), dtype=bool)
        for label, value in named:
            _check_not_string(value, label)
            na = np.broadcast_to(value.missing(), (len(frame),))
            if na.any():
                missing[label] = missing.get(label, 0) + int(na.sum())
                rows &= ~na
        n_left_out = int((~rows).sum())
        if not rows.any() and learn and not unscaled:  # new data may have no complete row: predictions are then all missing
            raise DataError(
                f"No rows are left after leaving out the {len(frame)} rows with a missing value"
                + _missing_summary(missing) + "."
            )
        values = [_subset(v, rows, len(frame)) for v in values]
        if learn:
            self._learn_response(targets, rows, len(frame), check=not unscaled)
        kept_terms = [t for k, t in enumerate(self.terms_.terms) if not self._embedded_term(t)]
        skip = {kept_terms.index(t) for k, t in enumerate(self.terms_.terms) if k in self._skip and t in kept_terms}
        codes = factor_codes(kept_terms, values, self.terms_.intercept)
        blocks, names, assign, from_factor = model_matrix(int(rows.sum()), kept_terms, values, labels, codes,
                                                          self.terms_.intercept, skip, intercept_column=self.intercept)
        if learn:
            self.columns, self.assign_ = names, assign
            self._factor_columns = [n for n, f in zip(names, from_factor) if f]
            self.center_, self.scale_ = np.zeros(len(names)), np.ones(len(names))  # unscaled: the caller merges
        elif names != self.columns:
            raise DataError("The data does not rebuild the design's columns; the model file may be corrupted.")
        X = self._scaled_matrix(blocks, int(rows.sum()), learn and not unscaled, dtype)
        del values, env, named, blocks  # the variables are in X now
        if not self.embedded_:
            del columns
        offset = None
        if offsets:
            offset = sum(np.broadcast_to(np.asarray(v.data, dtype=np.float64), (len(frame),)) for v in offsets)[rows]
        y = self._response_values(targets, rows, len(frame), offset, unscaled) if response else None
        codes_embedded = None
        if self.embedded_:
            codes_embedded = np.column_stack([
                _embedded_codes(columns[name], levels) for name, levels in self.embedded_.items()
            ])[rows]
        return Matrices(X, y, rows, n_left_out, missing, codes_embedded, offset)

    def _scaled_matrix(self, blocks, n, learn, dtype) -> np.ndarray:
        """X, row-major as tensors and mini-batches read it: each term's block of model-matrix
        columns centred and scaled (learning ``center_`` and ``scale_`` from it when ``learn``)
        and cast to ``dtype`` as it is stored, so that the float64 matrix is never whole.

        The same numbers as scaling the whole column-major matrix: the statistics of a column
        come from that column alone, contiguous in its block as it would be in the matrix.
        """
        X = np.empty((n, len(self.columns)), dtype=dtype)
        # Narrow blocks (a numeric variable's is one column) wait in a column-major buffer and
        # go into X a few columns at a time: storing one column at a time into a row-major X
        # would read and write all of X's memory once per column.
        waiting = np.empty((n, min(_STORE_COLUMNS, len(self.columns))), dtype=dtype, order="F")
        start = at = 0  # X's columns start..at are in the buffer
        for build in blocks:
            block = build()
            part = slice(at, at + block.shape[1])
            if learn:
                self.center_[part], self.scale_[part] = scaling(block, self.scale, self._factor_columns,
                                                                self.columns[part])
            block = block - self.center_[part]  # a new array: the block may be the data's own
            block /= self.scale_[part]
            if part.stop - start > waiting.shape[1]:
                X[:, start:at] = waiting[:, : at - start]
                start = at
            if block.shape[1] > waiting.shape[1]:
                X[:, part] = block
                start = part.stop
            else:
                waiting[:, at - start: part.stop - start] = block
            at = part.stop
        X[:, start:at] = waiting[:, : at - start]
        return X

    def _bare_names(self) -> set:
        """The columns the formula uses only as themselves (``x``, as ``.`` gives them, not ``log(x)``)."""
        nodes = self.terms_.variables + self.terms_.offsets + self._responses()
        used = set().union(*(terms_module.names_in(node) for node in nodes))
        inside = set().union(*(terms_module.names_in(node) for node in nodes if node.kind != "name"))
        return used - inside

    def _learn_response(self, targets, rows, n, check=True):
        kinds = {t.kind for t in targets}
        if len(targets) == 1 and targets[0].kind in ("factor", "logical"):
            target = _subset(targets[0], rows, n)
            if target.kind == "logical":
                target = Value("factor", target.data.astype(np.int64), ("FALSE", "TRUE"))
            self.response_kind_, self.levels_ = "factor", [functions.level_label(level) for level in target.levels]
            present = sorted(set(target.data.tolist()))
            if len(present) < 2 and check:
                shown = self.levels_[present[0]] if present else "none"
                raise DataError(
                    f"The response {self.lhs_text()!r} has only one level in the training data ({shown!r}); "
                    "a classifier needs at least two."
                )
            if self.terms_.offsets:
                raise FormulaError(
                    f"The formula {self.formula!r} has an offset with a factor response; offset() is supported for "
                    "numeric responses (it is added to the network's output)."
                )
            return
        if kinds - {"numeric", "matrix"}:
            kind = next(iter(kinds - {"numeric", "matrix"}))
            raise FormulaError(f"The response {self.lhs_text()!r} is a {kind}; use a numeric or a factor response.")
        if self.terms_.offsets and len(targets) > 1:
            raise FormulaError(f"The formula {self.formula!r} has an offset and several responses; use one response with offset().")
        self.response_kind_, self.levels_ = "numeric", None
        self.response_columns = []
        for node, target in zip(self._responses(), targets):
            label = grammar.deparse(node)
            if target.kind == "matrix":
                self.response_columns += [label + c for c in target.colnames]
            else:
                self.response_columns.append(label)

    def _response_values(self, targets, rows, n, offset, unscaled=False):
        if self.response_kind_ == "factor":
            target = targets[0]
            data = target.data if target.kind == "factor" else np.where(np.isnan(target.data), -1, target.data).astype(np.int64)
            return np.asarray(data, dtype=np.int64)[rows]
        Y = np.column_stack([
            np.broadcast_to(np.asarray(t.data, dtype=np.float64), (n,) if t.kind != "matrix" else t.data.shape)
            for t in targets
        ])[rows]
        if offset is not None:
            Y = Y - offset[:, None]
        if self.response_center_ is None:
            if unscaled:
                return Y
            if self.scale_response:
                self.response_center_, self.response_scale_ = column_stats(Y)
            else:
                self.response_center_, self.response_scale_ = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        return (Y - self.response_center_) / self.response_scale_

    @property
    def response_kind(self) -> str:
        """'factor' for a categorical response (class codes), 'numeric' otherwise."""
        self._check_fitted()
        return self.response_kind_

    @property
    def levels(self) -> list:
        """The response's levels (class labels, in code order) for a factor response."""
        self._check_fitted()
        if self.response_kind_ != "factor":
            raise ArgumentError(f"The response {self.lhs_text()!r} is numeric; it has no levels.")
        return list(self.levels_)

    @property
    def has_offset(self) -> bool:
        """True when the formula has ``offset()`` terms (added to the network's output)."""
        self._check_fitted()
        return bool(self.terms_.offsets)

    # ------------------------------------------------------------------ applying
    def transform(self, data, response: bool | None = None) -> Matrices:
        """Encode ``data`` with what training learned; rows with a missing value are left out.

        ``response=None`` encodes the response when its columns are present.
        """
        self._check_fitted()
        frame = as_pandas(data)
        if response is None:
            response = all(name in frame.columns for name in self.response)
        used = (self.response if response else []) + self.predictors
        absent = [name for name in used if name not in frame.columns]
        if absent:
            what = "response" if set(absent) <= set(self.response) else "column"
            raise DataError(
                f"The data has no {what} {', '.join(repr(a) for a in absent)}, which the design uses"
                f"{close_names(absent[0], [c for c in frame.columns if c not in used])}."
            )
        for name in used:
            if not (name in self.embedded_ and self.unknown == "other"):
                hint = "; fit with unknown='other' to give new levels an 'other' code" if name in self.embedded_ else ""
                _check_variable(frame[name], name, self.variables_[name], hint)
        if len(frame) == 0:
            raise DataError("The data has no rows.")
        return self._encode(frame, response=response, learn=False)

    def tensors(self, data, response: bool | None = None):
        """(X, y) as torch tensors: X float32 (n, p); y float32 (n, k), or int64 codes (n,).

        Rows with a missing value are left out, with a ``MissingValuesWarning`` that says how
        many. Without the response columns (or with ``response=False``) only X is returned.
        With ``offset()`` in the formula, y is the response minus the offset.
        """
        import torch

        m = self.transform(data, response=response)
        warn_left_out(m, len(m.rows))
        _check_float32(m.X, self.columns)
        X = torch.as_tensor(m.inputs(), dtype=torch.float32)
        if m.y is None:
            return X
        if self.response_kind_ == "factor":
            return X, torch.as_tensor(m.y, dtype=torch.int64)
        _check_float32(m.y, self.response_columns)
        return X, torch.as_tensor(m.y, dtype=torch.float32)

    def decode(self, codes):
        """Class labels for integer codes (a tensor, array or list), as a pandas Categorical.

        >>> import nnfit as nf
        >>> design = nf.Design("species ~ bill_length_mm").fit(nf.datasets.load("penguins").dropna())
        >>> design.levels, list(design.decode([0, 2]))
        (['Adelie', 'Chinstrap', 'Gentoo'], ['Adelie', 'Gentoo'])
        """
        import pandas as pd

        levels = self.levels
        codes = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes).astype(np.int64).reshape(-1)
        if codes.size and (codes.min() < 0 or codes.max() >= len(levels)):
            raise ArgumentError(f"Class codes must lie in 0..{len(levels) - 1}; got {codes.min()}..{codes.max()}.")
        return pd.Categorical.from_codes(codes, categories=levels)

    def unscale_response(self, y, offset=None):
        """Map standardized response values (array or tensor, (n, k)) back to original units,
        adding ``offset`` (a ``Matrices.offset``) when the formula has one.

        >>> import numpy as np, nnfit as nf
        >>> penguins = nf.datasets.load("penguins").dropna()
        >>> design = nf.Design("body_mass_g ~ flipper_length_mm", scale_response=True).fit(penguins)
        >>> design.unscale_response(np.array([[0.0], [1.0]])).round(1)   # the mean, one sd above
        array([[4207.1],
               [5012.3]])
        """
        if hasattr(y, "new_tensor"):
            out = y * y.new_tensor(self.response_scale_) + y.new_tensor(self.response_center_)
            return out if offset is None else out + y.new_tensor(offset)[:, None]
        out = y * self.response_scale_ + self.response_center_
        return out if offset is None else out + np.asarray(offset)[:, None]

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict:
        """Everything the design learned, as JSON-ready plain data (see ``from_dict``)."""
        self._check_fitted()
        state = {
            "formula": self.formula,
            "parsed": self.parsed_.to_data(),
            "dot": self.terms_.dot,
            "scale": self.scale,
            "intercept": self.intercept,
            "scale_response": self.scale_response,
            "response": self.response,
            "predictors": self.predictors,
            "variables": self.variables_,
            "state": self.state_,
            "columns": self.columns,
            "center": self.center_.tolist(),
            "scale_values": self.scale_.tolist(),
            "n_left_out": self.n_left_out_,
            "embed": self.embed,
            "unknown": self.unknown,
            "embedded": [[name, levels] for name, levels in self.embedded_.items()],  # a list keeps the order
            "response_kind": self.response_kind_,
            "levels": self.levels_,
        }
        if self.response_kind_ == "numeric":
            state.update(
                response_columns=self.response_columns,
                response_center=self.response_center_.tolist(),
                response_scale=self.response_scale_.tolist(),
            )
        return state

    @classmethod
    def from_dict(cls, state: dict) -> "Design":
        """Rebuild a fitted design from ``to_dict`` output, without the training data.

        A saved design may come from anyone: its formula goes through the same parser and
        function table as a typed one (nothing in it is evaluated as code), every size and
        type is checked before use, and the design must rebuild exactly the saved columns.
        Any inconsistency is a ``ModelFileError`` naming the field.
        """
        try:
            return cls._from_dict(state)
        except (FormulaError, DataError) as error:
            raise ModelFileError(f"The saved design is not valid: {error}") from None

    @classmethod
    def _from_dict(cls, state: dict) -> "Design":
        check = _StateChecker(state)
        formula = check.text("formula", 20_000)
        design = cls(
            formula, scale=check.choice("scale", _SCALE_CHOICES), scale_response=check.flag("scale_response"),
            intercept=check.flag("intercept"), embed=state.get("embed"), unknown=check.choice("unknown", ("error", "other")),
        )
        if state.get("parsed") != design.parsed_.to_data():
            raise ModelFileError("The saved design's field 'parsed' does not match its formula; the file was edited.")
        dot = check.names("dot")
        design.response, design.predictors = check.names("response"), check.names("predictors")
        design.variables_ = check.variables(list(dict.fromkeys(design.response + design.predictors)))  # a
        # response may be named on the right too (R drops it there): one description of each column
        design.state_ = check.function_state()
        design.embedded_ = check.embedded(design.variables_)
        design.terms_ = terms_module.expand(design.parsed_, design.response + dot)
        if design.terms_.dot != dot:
            raise ModelFileError("The saved design's field 'dot' does not match its formula.")
        design._check_calls()
        used = set()
        for node in design.terms_.variables + design.terms_.offsets:
            used |= terms_module.names_in(node)
        if sorted(used) != sorted(design.predictors) or sorted(terms_module.names_in(design.parsed_.lhs)) != sorted(design.response):
            raise ModelFileError("The saved design's fields 'response' and 'predictors' do not match its formula.")
        design.lhs_ = grammar.deparse(design.parsed_.lhs)
        design.rhs_ = " + ".join(design.terms_.labels) or ("1" if design.terms_.intercept else "0")
        design.columns = check.names("columns", MAX_SAVED_COLUMNS)
        design.center_ = check.numbers("center", len(design.columns))
        design.scale_ = check.numbers("scale_values", len(design.columns), positive=True)
        design.n_left_out_ = check.count("n_left_out")
        design.response_kind_ = check.choice("response_kind", ("numeric", "factor"))
        if design.response_kind_ == "numeric":
            design.levels_ = None
            design.response_columns = check.names("response_columns", 10_000)
            design.response_center_ = check.numbers("response_center", len(design.response_columns))
            design.response_scale_ = check.numbers("response_scale", len(design.response_columns), positive=True)
        else:
            design.levels_ = check.names("levels", MAX_LEVELS)
            design.response_center_ = design.response_scale_ = None
        design._skip = design._response_on_right(say=False)  # said when it was fitted
        design.fitted_ = True
        design._encode(design._prototype(), response=False, learn=False)  # rebuilds and checks the columns
        return design

    # ------------------------------------------------------------------ internals
    def _prototype(self):
        """An empty frame of the training kinds, from which the saved encoding is rebuilt."""
        import pandas as pd

        out = {}
        for name in self.predictors:
            info = self.variables_[name]
            if info["kind"] == "factor":
                out[name] = pd.Categorical([], categories=info["levels"])
            else:
                out[name] = np.array([], dtype=bool if info["kind"] == "logical" else np.float64)
        return pd.DataFrame(out)

    def _embedded(self) -> dict:
        """{factor: levels} of the predictors that ``embed`` gives as codes, in column order."""
        if not self.embed:
            return {}
        variables, terms = self.terms_.variables, self.terms_.terms
        for name in self.embed if self.embed != "auto" else []:
            if name not in self.predictors:
                raise DataError(
                    f"embed names {name!r}, which is not a predictor in the formula{close_names(name, self.predictors)}."
                )
            if self.variables_[name]["kind"] != "factor":
                raise ArgumentError(f"Column {name!r} is numeric; only factors can be embedded.")
        chosen = {}
        for name in self.predictors:
            info = self.variables_[name]
            if self.embed == "auto":
                if info["kind"] != "factor" or len(info["levels"]) <= EMBED_LEVELS:
                    continue
            elif name not in self.embed:
                continue
            uses = [t for t in terms if any(name in terms_module.names_in(variables[i]) for i in t)]
            alone = grammar.Node("name", name)
            if not (len(uses) == 1 and [variables[i] for i in uses[0]] == [alone]):
                if self.embed == "auto":
                    continue  # inside an interaction or a function: it stays dummy-coded
                other = next((":".join(grammar.deparse(variables[i]) for i in t) for t in uses
                              if [variables[i] for i in t] != [alone]), name)
                raise FormulaError(
                    f"Column {name!r} can be embedded only as a main effect, but the formula also uses it in {other!r}."
                )
            chosen[name] = list(info["levels"])
        return chosen

    def _embedded_term(self, term) -> bool:
        return len(term) == 1 and self.terms_.variables[term[0]] in [grammar.Node("name", n) for n in self.embedded_]

    def _check_fitted(self):
        if not self.fitted_:
            raise ArgumentError("This Design is not fitted yet; call design.fit(training) first.")

    def __repr__(self):
        if not self.fitted_:
            return f"Design({self.formula!r}, scale={self.scale!r}) (not fitted)"
        kind = f"factor with levels {', '.join(map(str, self.levels))}" if self.response_kind_ == "factor" else "numeric"
        embedded = "".join(f"\n  embedded: {name} ({len(levels)} levels)" for name, levels in self.embedded_.items())
        return (
            f"Design({self.formula!r}, scale={self.scale!r})\n"
            f"  response: {self.lhs_} ({kind})\n"
            f"  {len(self.columns)} columns: {', '.join(self.columns)}"
            + embedded
        )


def _parse_formula(text: str):
    parsed = grammar.parse(text)
    if parsed.lhs is None:
        raise FormulaError(f"The formula {text!r} has no response on the left of '~'.")
    return parsed


def _ordered(names, columns) -> list:
    """Names in the data's column order."""
    order = [str(c) for c in columns]
    return sorted(names, key=lambda n: order.index(n) if n in order else len(order))


def _subset(value: Value, rows, n) -> Value:
    data = value.data
    if np.ndim(data) == 0:
        data = np.full(n, data, dtype=np.float64)
    elif rows.all():
        return value
    return Value(value.kind, np.asarray(data)[rows], value.levels, value.ordered, value.colnames)


def _check_not_string(value: Value, label: str) -> None:
    """A string constant (as in I("a")) is not a variable."""
    if value.kind == "string":
        raise FormulaError(f"The term {label!r} is a string constant, not a variable.")


def _embedded_codes(value: Value, levels) -> np.ndarray:
    """0-based level codes; a level training never saw (unknown="other") has len(levels)."""
    return np.asarray(value.data, dtype=np.int64)


def _column_value(column, info: dict, name: str, embedded: bool = False, bare: bool = False) -> Value:
    """A data column as the evaluator reads it, with the kind and levels training saw.

    A ``bare`` column of numbers (one the formula uses only as itself) keeps the data's own
    dtype: the model matrix and the response convert it to float64 (exactly) when they read
    it, so a frame of float32 columns never has a float64 copy of all of them at once.
    """
    import pandas as pd

    if info["kind"] == "factor":
        codes = pd.Index(info["levels"], dtype=object).get_indexer(column.astype(object)).astype(np.int64)
        if embedded:  # a level training never saw (unknown="other") gets the extra code len(levels)
            codes = np.where((codes < 0) & ~column.isna().to_numpy(), len(info["levels"]), codes)
        return Value("factor", codes, tuple(info["levels"]), bool(info.get("ordered", False)))
    if info["kind"] == "logical":
        flags = pd.array(column.astype(object).where(column.notna(), None), dtype="boolean")
        return Value("logical", flags.to_numpy(dtype=np.float64, na_value=np.nan))
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        days = (column - pd.Timestamp("1970-01-01", tz=getattr(column.dtype, "tz", None))) / pd.Timedelta(days=1)
        return Value("numeric", days.to_numpy(dtype=np.float64, na_value=np.nan))
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiu":  # no pd.NA to replace: one copy
        data = column.to_numpy()
        return Value("numeric", data if bare else np.asarray(data, dtype=np.float64))
    values = pd.to_numeric(column, errors="coerce") if column.dtype == object else column
    return Value("numeric", np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64))


class _StateChecker:
    """Checks each field of a saved design against its type and size before it is used."""

    def __init__(self, state):
        if not isinstance(state, dict):
            raise ModelFileError("The saved design is not a mapping.")
        self.state = state

    def get(self, key):
        if key not in self.state:
            raise ModelFileError(f"The saved design has no field {key!r}.")
        return self.state[key]

    def fail(self, key, what):
        raise ModelFileError(f"The saved design's field {key!r} {what}.")

    def text(self, key, limit):
        value = self.get(key)
        if not isinstance(value, str) or len(value) > limit:
            self.fail(key, f"must be text of at most {limit} characters")
        return value

    def flag(self, key):
        value = self.get(key)
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
        return value

    def choice(self, key, choices):
        value = self.get(key)
        if not any(value is c or (isinstance(c, str) and value == c) for c in choices):
            self.fail(key, f"must be one of {', '.join(map(repr, choices))}")
        return value

    def count(self, key):
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(key, "must be a whole number of at least 0")
        return value

    def names(self, key, limit=100_000):
        value = self.get(key)
        if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, str) and len(v) <= 10_000 for v in value):
            self.fail(key, f"must be a list of at most {limit} names")
        return list(value)

    def numbers(self, key, length, positive=False):
        value = self.get(key)
        if not isinstance(value, list) or len(value) != length:
            self.fail(key, f"must hold {length} numbers, one per column")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            self.fail(key, "must hold finite numbers")
        if positive and not all(v > 0 for v in value):
            self.fail(key, "must hold positive numbers")
        return np.asarray(value, dtype=np.float64)

    def variables(self, names):
        value = self.get("variables")
        if not isinstance(value, dict) or sorted(value) != sorted(names):
            self.fail("variables", "must describe exactly the response and predictor columns")
        out = {}
        for name in names:
            info = value[name]
            if not isinstance(info, dict) or info.get("kind") not in ("numeric", "factor", "logical"):
                self.fail("variables", f"has no valid kind for {name!r}")
            if info["kind"] == "factor":
                levels = info.get("levels")
                if not isinstance(levels, list) or not levels or len(levels) > MAX_LEVELS or not all(
                    isinstance(v, (str, int, float, bool)) and (not isinstance(v, str) or len(v) <= 10_000) for v in levels
                ):
                    self.fail("variables", f"has no valid levels for {name!r}")
                if len(set(map(repr, levels))) != len(levels):
                    self.fail("variables", f"repeats a level of {name!r}")
            out[name] = info
        return out

    def function_state(self):
        value = self.get("state")
        if not isinstance(value, dict) or len(value) > 10_000:
            self.fail("state", "must be a mapping of at most 10000 entries")
        for key, entry in value.items():
            try:
                functions.check_state(key, entry)
            except DataError as error:
                raise ModelFileError(str(error)) from None
        return value

    def embedded(self, variables):
        value = self.get("embedded")
        if not isinstance(value, list):
            self.fail("embedded", "must be a list")
        out = {}
        for item in value:
            if (not isinstance(item, list) or len(item) != 2 or item[0] not in variables
                    or item[1] != variables[item[0]].get("levels")):
                self.fail("embedded", "must list factor predictors with their levels")
            out[item[0]] = list(item[1])
        return out


# ---------------------------------------------------------------------- helpers
def as_pandas(data):
    """A pandas DataFrame for pandas or polars input; anything else is a type error.

    >>> import nnfit as nf
    >>> from nnfit.design import as_pandas
    >>> penguins = nf.datasets.load("penguins")
    >>> as_pandas(penguins) is penguins                # a polars frame comes back converted
    True
    >>> as_pandas([181, 186])
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentTypeError: data must be a pandas (or polars) DataFrame, not list.
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        duplicated = data.columns[data.columns.duplicated()]
        if len(duplicated):
            raise DataError(
                f"The data has more than one column named {duplicated[0]!r}; rename them so that each "
                "column has its own name."
            )
        return data
    if isinstance(data, pd.Series) or type(data).__name__ in ("Series", "LazyFrame") and is_polars(data):
        kind = "a polars LazyFrame" if type(data).__name__ == "LazyFrame" else f"a {type(data).__module__.split('.')[0]} Series"
        fix = "call .collect() first" if "LazyFrame" in kind else "pass a data frame (series.to_frame())"
        raise ArgumentTypeError(f"data must be a data frame, not {kind}; {fix}.")
    if is_polars(data):
        import polars as pl

        frame = data.to_pandas()
        # A polars Categorical has no level order of its own (an Enum has): sort its levels as
        # R's factor() does, so a frame gives the same columns whichever library holds it.
        for name, dtype in data.schema.items():
            if isinstance(dtype, pl.Categorical):
                frame[name] = frame[name].cat.reorder_categories(sorted(frame[name].cat.categories))
        return frame
    raise ArgumentTypeError(f"data must be a pandas (or polars) DataFrame, not {type(data).__name__}.")


def is_polars(data) -> bool:
    """True for a polars DataFrame or Series (without importing polars).

    >>> import nnfit as nf
    >>> from nnfit.design import is_polars
    >>> is_polars(nf.datasets.load("penguins"))
    False
    """
    return type(data).__module__.split(".")[0] == "polars"


def warn_left_out(m: Matrices, n_rows: int):
    """Say how many rows were left out for a missing value, if any.

    >>> import warnings, nnfit as nf
    >>> from nnfit.design import warn_left_out
    >>> penguins = nf.datasets.load("penguins")
    >>> matrices = nf.Design("body_mass_g ~ sex").fit(penguins.dropna()).transform(penguins)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_left_out(matrices, len(penguins))
    >>> str(caught[0].message)
    'Left out 11 of 344 rows with a missing value (body_mass_g: 2, sex: 11).'
    """
    if m.n_left_out:
        warn(f"Left out {m.n_left_out} of {n_rows} rows with a missing value{_missing_summary(m.missing_by_column)}.",
             MissingValuesWarning)


def _learn_variable(column, name: str) -> dict:
    """The kind of a column ('numeric', 'logical' or 'factor') and a factor's levels, in R's order.

    Text becomes a factor with its levels sorted (R's ``factor()``); True/False a logical;
    dates and times are numeric (days since 1970-01-01, as R's ``Date``).
    """
    import pandas as pd

    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        levels = [_plain(v) for v in dtype.categories]
        if len(levels) > MAX_LEVELS:
            raise DataError(f"Column {name!r} has {len(levels)} levels; nnfit takes at most {MAX_LEVELS}.")
        return {"kind": "factor", "levels": levels, "ordered": bool(dtype.ordered)}
    if pd.api.types.is_bool_dtype(dtype):
        return {"kind": "logical"}
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return {"kind": "numeric"}
    if pd.api.types.is_numeric_dtype(dtype):
        return {"kind": "numeric"}
    values = column.dropna()
    if len(values) and all(isinstance(v, (bool, np.bool_)) for v in values):
        return {"kind": "logical"}
    if len(values):
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna()
        if bad.mean() < 0.5 and bad.any():
            first = values[bad].iloc[0]
            raise DataError(
                f"Column {name!r} is numeric but holds the non-numeric value {first!r} "
                f"(row {_plain(values[bad].index[0])!r}); fix or remove it, or make the column a factor."
            )
        if not bad.any() and not all(isinstance(v, str) for v in values):
            return {"kind": "numeric"}
    unknown = [v for v in values if not isinstance(v, (str, int, float, bool, np.generic))]
    if unknown:
        raise DataError(
            f"Column {name!r} holds {type(unknown[0]).__name__} values such as {unknown[0]!r}; nnfit reads numbers, "
            "text, True/False and dates."
        )
    levels = sorted({_plain(v) for v in values}, key=lambda v: (str(type(v)), v))
    if len(levels) > MAX_LEVELS:
        raise DataError(f"Column {name!r} has {len(levels)} distinct values; nnfit takes at most {MAX_LEVELS} levels.")
    return {"kind": "factor", "levels": levels, "ordered": False}


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _check_variable(column, name: str, info: dict, hint: str = ""):
    """Unseen levels and non-numeric values are errors that name the column."""
    import pandas as pd

    values = column.dropna()
    if info["kind"] == "factor":
        seen = set(info["levels"])
        unseen = [v for v in pd.unique(values.astype(object)) if _plain(v) not in seen]
        if unseen:
            levels = info["levels"]
            shown = ", ".join(map(str, levels[:10])) + (f", ... ({len(levels)} in all)" if len(levels) > 10 else "")
            raise LevelError(f"Column {name!r} has the level {unseen[0]!r}, which training never saw (levels: {shown}){hint}.")
    elif info["kind"] == "logical":
        bad = [v for v in pd.unique(values.astype(object)) if not isinstance(v, (bool, np.bool_))]
        if bad:
            raise DataError(f"Column {name!r} must be True/False, as in training, but holds {bad[0]!r}.")
    elif pd.api.types.is_datetime64_any_dtype(column.dtype):
        return
    elif not pd.api.types.is_numeric_dtype(column.dtype):
        bad = pd.to_numeric(values.astype(object), errors="coerce").isna()
        if bad.any():
            raise DataError(
                f"Column {name!r} must be numeric, as in training, but holds {values[bad].iloc[0]!r} "
                f"(row {_plain(values[bad].index[0])!r})."
            )


def _missing_summary(missing: dict) -> str:
    if not missing:
        return ""
    return " (" + ", ".join(f"{name}: {count}" for name, count in missing.items()) + ")"


def _check_float32(values: np.ndarray, columns) -> None:
    """Values beyond float32's range (about 3.4e38) would silently become infinite in a tensor."""
    limit = np.finfo(np.float32).max
    with np.errstate(invalid="ignore"):
        beyond = np.abs(values) > limit
    if beyond.any():
        column = columns[int(np.argmax(beyond.any(axis=0)))]
        raise DataError(
            f"Column {column!r} has values as large as {np.nanmax(np.abs(values)):.3g}, beyond the float32 range "
            f"of tensors ({limit:.3g}); standardize it (scale=True) or change its units."
        )


def column_stats(X):
    """The mean and sd (n - 1) of each column; a zero or non-finite sd becomes 1.

    >>> import numpy as np
    >>> [a.tolist() for a in column_stats(np.array([[1.0, 5.0], [3.0, 5.0]]))]
    [[2.0, 5.0], [1.4142135623730951, 1.0]]
    """
    with np.errstate(over="ignore", invalid="ignore"):
        center = X.mean(axis=0)
        scale = _column_sd(X, center) if len(X) > 1 else np.ones(X.shape[1])
        # Magnitudes near 1e300 overflow the sums of squares, near 1e-300 underflow them to 0:
        # compute those columns in units of their largest value.
        extreme = ~np.isfinite(center) | ~np.isfinite(scale)
        zero = scale == 0
        if len(X) and zero.any():
            extreme[zero] |= np.ptp(X[:, zero], axis=0) > 0
        if np.any(extreme):
            size = np.abs(X[:, extreme]).max(axis=0)
            unit = X[:, extreme] / size
            center[extreme] = unit.mean(axis=0) * size
            scale[extreme] = (unit.std(axis=0, ddof=1) if len(X) > 1 else 1.0) * size
    scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    return center, scale


def _column_sd(X, center):
    """``X.std(axis=0, ddof=1)``, the same numbers, without its temporary copy of X.

    A column-major X is read column by column (each column contiguous), which sums each
    column in the order ``X.std`` does; other layouts go to ``X.std`` itself.
    """
    if X.ndim != 2 or X.flags.c_contiguous or not X.flags.f_contiguous:
        return X.std(axis=0, ddof=1)
    n = len(X)
    sums, work = np.empty(X.shape[1]), np.empty(n)
    for j in range(X.shape[1]):
        np.subtract(X[:, j], center[j], out=work)
        np.multiply(work, work, out=work)
        sums[j] = np.add.reduce(work)
    return np.sqrt(sums / (n - 1))


def scaling(X, scale, factor_columns, columns=None):
    """Training mean and sd (n - 1) per column; constant columns (the intercept) stay as they are.

    >>> import numpy as np
    >>> [a.tolist() for a in scaling(np.array([[1.0, 1.0], [3.0, 1.0]]), True, [], ["x", "(Intercept)"])]
    [[2.0, 0.0], [1.4142135623730951, 1.0]]
    """
    if scale is False:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    center, sd = column_stats(X)
    keep = np.ptp(X, axis=0) > 0 if len(X) else np.zeros(X.shape[1], dtype=bool)
    if scale == "numeric":
        keep &= ~np.isin(np.asarray(columns, dtype=object), factor_columns)
    return np.where(keep, center, 0.0), np.where(keep, sd, 1.0)




# ---------------------------------------------------------------------- fitting from chunks
def _merged_variables(chunks, names) -> dict:
    """Each variable's kind and levels over all chunks, as ``_learn_variable`` gives them for all rows."""
    import pandas as pd

    merged = {}
    for frame in chunks():
        for name in names:
            column = frame[name]
            categorical = isinstance(column.dtype, pd.CategoricalDtype)
            if not (categorical or pd.api.types.is_numeric_dtype(column.dtype)) and not column.notna().any():
                continue  # an all-missing chunk of text or flags says nothing of the column's kind
            info = _learn_variable(column, name)
            seen = merged.get(name)
            if seen is None:
                merged[name] = seen = {"kind": info["kind"], "levels": set(), "categories": None, "mixed": False}
                if categorical:
                    seen["categories"] = (list(info["levels"]), info["ordered"])
            elif seen["kind"] != info["kind"]:
                raise DataError(
                    f"Column {name!r} reads as {seen['kind']} in one chunk of the data and as {info['kind']} in another; "
                    "give it one type throughout."
                )
            if info["kind"] != "factor":
                continue
            if not categorical or seen["categories"] != (list(info["levels"]), info["ordered"]):
                seen["mixed"] = True
            seen["levels"].update(info["levels"])
            if len(seen["levels"]) > MAX_LEVELS:
                raise DataError(f"Column {name!r} has more than {MAX_LEVELS} distinct values; nnfit takes at most {MAX_LEVELS} levels.")
    out = {}
    for name in names:
        seen = merged.get(name, {"kind": "factor", "levels": set(), "categories": None, "mixed": True})
        if seen["kind"] != "factor":
            out[name] = {"kind": seen["kind"]}
        elif seen["categories"] is not None and not seen["mixed"]:
            levels, ordered = seen["categories"]
            out[name] = {"kind": "factor", "levels": levels, "ordered": ordered}
        else:  # as pandas concatenates frames whose categories differ: text, sorted as R's factor()
            out[name] = {"kind": "factor", "levels": sorted(seen["levels"], key=lambda v: (str(type(v)), v)), "ordered": False}
    return out


def _merge_moments(moments, X):
    """(n, mean, sum of squared deviations, min, max, shift) per column, merged with X's rows.

    The pairwise update of Chan, Golub and LeVeque (1979), on the data less a shift (the first
    row seen) so that a column far from 0 (1e9 + noise) loses no digits: exact up to rounding
    whatever the chunk sizes, without the cancellation of summed squares. ``mean`` is of the
    shifted data; ``stats_from_moments`` adds the shift back.
    """
    X = np.asarray(X, dtype=np.float64)
    if moments is None:
        p = X.shape[1]
        moments = (0, np.zeros(p), np.zeros(p), np.full(p, np.inf), np.full(p, -np.inf), None)
    if len(X) == 0:
        return moments
    n_a, mean_a, m2_a, low, high, shift = moments
    if shift is None:
        shift = np.where(np.isfinite(X[0]), X[0], 0.0)
    shifted = X - shift
    n_b = len(X)
    mean_b = shifted.mean(axis=0)
    m2_b = ((shifted - mean_b) ** 2).sum(axis=0)
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a + m2_b + delta ** 2 * (n_a * n_b / n)
    return n, mean, m2, np.minimum(low, X.min(axis=0)), np.maximum(high, X.max(axis=0)), shift


def stats_from_moments(moments):
    """``column_stats`` from merged moments: the mean and sd (n - 1) per column, 1 for a zero sd.

    >>> import numpy as np
    >>> from nnfit.design.design import _merge_moments, stats_from_moments
    >>> X = np.array([[1.0], [2.0], [4.0]])
    >>> center, scale = stats_from_moments(_merge_moments(_merge_moments(None, X[:1]), X[1:]))
    >>> bool(np.isclose(center[0], X.mean())), bool(np.isclose(scale[0], X.std(ddof=1)))
    (True, True)
    """
    n, mean, m2, shift = moments[0], moments[1], moments[2], moments[5]
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.sqrt(m2 / (n - 1)) if n > 1 else np.ones(len(mean))
    center = mean + shift if shift is not None else mean.copy()
    return center, np.where((scale > 0) & np.isfinite(scale), scale, 1.0)


def scaling_from_moments(moments, scale, factor_columns, columns):
    """``scaling`` from merged moments: constant columns (the intercept) stay as they are.

    >>> import numpy as np
    >>> from nnfit.design.design import _merge_moments, scaling_from_moments
    >>> moments = _merge_moments(None, np.array([[1.0, 1.0], [3.0, 1.0]]))
    >>> [a.tolist() for a in scaling_from_moments(moments, True, [], ["x", "(Intercept)"])]
    [[2.0, 0.0], [1.4142135623730951, 1.0]]
    """
    p = len(moments[1])
    if scale is False:
        return np.zeros(p), np.ones(p)
    center, sd = stats_from_moments(moments)
    keep = moments[4] - moments[3] > 0
    if scale == "numeric":
        keep &= ~np.isin(np.asarray(columns, dtype=object), factor_columns)
    return np.where(keep, center, 0.0), np.where(keep, sd, 1.0)


def _streaming_fix(node, name: str, text: str):
    """Why a call cannot learn from chunks and what to write instead, or None when it can."""
    bound = functions.bind(node, name, text)
    env = Environment({}, 1, {}, False, text=text)
    x = grammar.deparse(bound["x"]) if "x" in bound else "x"
    whole = "can be learned only from the whole column at once, which streamed data never holds"
    if name == "poly" and not ("raw" in bound and bool(functions.constant(bound["raw"], env))):
        degree = grammar.deparse(bound["degree"]) if "degree" in bound else "1"
        return f"whose orthogonal basis {whole}; write poly({x}, {degree}, raw = TRUE)"
    if name in ("ns", "bs") and ("Boundary.knots" not in bound or ("knots" not in bound and "df" in bound)):
        return (f"whose knots (quantiles and range of {x}) {whole}; give them explicitly, as in "
                f"{name}({x}, knots = c(...), Boundary.knots = c(lower, upper))")
    if name == "cut" and np.size(functions.constant(bound["breaks"], env)) == 1:
        return f"whose breaks (the range of {x}) {whole}; give the breaks explicitly, as in cut({x}, breaks = c(...))"
    if name == "scale":
        return f"whose mean and standard deviation {whole}; write {x}: the design standardizes every column (scale=True)"
    if name in ("factor", "as.factor", "ordered") and "levels" not in bound:
        call = "ordered" if name == "ordered" else "factor"
        return f"whose levels {whole}; give them explicitly, as in {call}({x}, levels = c(...))"
    if name == "lag":
        return (f"which reads the rows before each row, in another chunk or file at a chunk's start; compute the lagged "
                "column before writing the files")
    return None

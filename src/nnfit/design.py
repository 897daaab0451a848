"""The design: from a data frame and an R formula to tensors, as R's ``model.matrix`` + ``scale``.

A ``Design`` learns everything it needs from the training data once (which columns the formula
uses, each factor's levels, the centring and scaling of every column) and re-applies exactly
that to new data, so test data never leaks into the encoding. Formulas are read by formulaic;
column names follow R's ``model.matrix`` (``speciesAdelie``, ``islandDream``, ``a:b``).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import (
    ArgumentError,
    ArgumentTypeError,
    DataError,
    FormulaError,
    LevelError,
    MissingValuesWarning,
    close_names,
)

_DOT = re.compile(r"(?<![\w.`])\.(?![\w.`])")
_LEVEL = re.compile(r"\[(?:T\.)?([^\]]*)\]")
_IDENTIFIER = re.compile(r"`([^`]+)`|([A-Za-z_.][A-Za-z0-9_.]*)")
_UNDEFINED = re.compile(r"name '([^']+)' is not defined")
_CBIND = re.compile(r"^\s*cbind\((.*)\)\s*$", re.DOTALL)
_SCALE_CHOICES = (True, False, "numeric")
# What a formula read from a file may call: formulaic's transforms and a few numpy functions.
SAFE_FUNCTIONS = frozenset(
    "C I Q center scale standardize poly bs cs cr cc te hashed lag log log2 log10 exp exp2 exp10 "
    "Treatment Sum Helmert Diff Poly contr.treatment contr.sum contr.helmert contr.diff contr.poly "
    "np.log np.log2 np.log10 np.log1p np.exp np.expm1 np.sqrt np.abs np.square np.power np.sin np.cos "
    "np.tanh np.maximum np.minimum np.clip abs round pow min max".split()
)
_FORMULA_TOKEN = re.compile(
    r"""\s+|`[^`]*`|"[^"\\]*"|'[^'\\]*'|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+|[A-Za-z_.][A-Za-z0-9_.]*"""
    r"""|==|!=|<=|>=|\*\*|%in%|[-+*/:^~|,()=<>]"""
)
EMBED_LEVELS = 10  # embed="auto" gives a factor with more levels than this an embedding


@dataclass
class Matrices:
    """What ``Design.transform`` returns: X (and y) for the complete rows of a frame.

    ``rows`` is a boolean mask over the frame's rows (True where a row was used) and
    ``n_left_out`` counts the rows left out for a missing value. ``codes`` holds the level
    codes (n, k) of the k embedded factors, or None.
    """

    X: np.ndarray
    y: np.ndarray | None
    rows: np.ndarray
    n_left_out: int
    missing_by_column: dict
    codes: np.ndarray | None = None

    def inputs(self) -> np.ndarray:
        """X, then one column of level codes per embedded factor (what ``MLP(embeddings=)`` reads)."""
        return self.X if self.codes is None else np.column_stack([self.X, self.codes])


class Design:
    """An R formula and the encoding it learned from training data.

    Parameters
    ----------
    formula : str
        An R formula: ``"body_mass_g ~ . - year"``, ``"y ~ log(x) + a:b - 1"``,
        ``"cbind(a, b) ~ ."`` or ``"a + b ~ ."`` for several numeric responses.
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
    """

    def __init__(self, formula: str, scale=False, scale_response: bool = False, intercept: bool = True,
                 embed=None, unknown: str = "error"):
        if not isinstance(formula, str):
            raise ArgumentTypeError(f"formula must be a string such as 'y ~ x', not {type(formula).__name__}.")
        if "~" not in formula:
            raise FormulaError(f"The formula {formula!r} has no '~'; write it as 'response ~ predictors'.")
        if not any(scale is choice for choice in _SCALE_CHOICES) and scale != "numeric":
            raise ArgumentError(f"scale must be True, False or 'numeric', not {scale!r}.")
        names = isinstance(embed, (list, tuple)) and all(isinstance(e, str) for e in embed)
        if not (embed is None or embed == "auto" or names):
            raise ArgumentError(f"embed must be None, 'auto' or a list of column names, not {embed!r}.")
        if unknown not in ("error", "other"):
            raise ArgumentError(f"unknown must be 'error' or 'other', not {unknown!r}.")
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

    def fit_transform(self, data) -> Matrices:
        """``fit(data)`` and then ``transform(data)``, building the training matrices only once."""
        frame = as_pandas(data)
        rows, missing, complete, X, Y = self._learn(frame)
        if self.response_kind == "factor":
            y = complete[self.response[0]].cat.codes.to_numpy().astype(np.int64)
        else:
            y = (Y - self.response_center_) / self.response_scale_
        return Matrices((X - self.center_) / self.scale_, y, rows, int((~rows).sum()), missing, self._codes(complete))

    def _learn(self, frame):
        """What ``fit`` learns; returns the training rows' mask, missing counts, complete frame,
        unscaled model matrix and response matrix (None for a factor response)."""
        if len(frame) == 0:
            raise DataError("The training data has no rows.")
        lhs, rhs = _split_formula(self.formula)
        self.response = _response_names(lhs, frame)
        self.rhs_ = _expand_dot(rhs, frame.columns, exclude=self.response)
        predictors = _required_variables(self.rhs_, frame.columns, self.formula)
        self.predictors = [c for c in frame.columns if c in predictors]
        for name in self.response:
            if name not in frame.columns:
                raise DataError(
                    f"The response {name!r} is not a column of the data{close_names(name, frame.columns)}."
                )
        self.lhs_ = lhs
        self.variables_ = {name: _learn_variable(frame[name], name) for name in self.response + self.predictors}
        self.embedded_ = self._embedded(self.rhs_)
        # Embedded factors leave the model matrix; transform gives their level codes instead.
        self.rhs_ += "".join(f" - {_quote(name)}" for name in self.embedded_)

        used = self.response + self.predictors
        rows, missing = _complete_rows(frame, used)
        self.n_left_out_ = int((~rows).sum())
        if not rows.any():
            raise DataError(
                f"No rows are left after leaving out the {len(frame)} rows with a missing value"
                + _missing_summary(missing)
                + "."
            )
        complete = self._prepare(frame.loc[rows], used)

        factor_response = self.response_kind == "factor"
        if factor_response:
            name = self.response[0]
            present = complete[name].dropna().unique().tolist()
            if len(present) < 2:
                raise DataError(
                    f"The response {name!r} has only one level in the training data ({present[0]!r}); "
                    "a classifier needs at least two."
                )
        X, spec = _materialize(self.rhs_, complete, candidates=frame.columns)
        self.spec_ = spec
        self._keep = self._kept_columns()
        X = X[:, self._keep]
        self.columns = [_r_name(c) for c, keep in zip(spec.column_names, self._keep) if keep]
        self.center_, self.scale_ = _scaling(
            X, self.scale, [_r_name(c) for c in self._factor_columns()], self.columns
        )

        Y = None
        if not factor_response:
            Y, response_spec = _materialize(self.lhs_ + " - 1", complete)
            self.response_spec_ = response_spec
            self.response_columns = [_r_name(c) for c in response_spec.column_names]
            if self.scale_response:
                self.response_center_, self.response_scale_ = _column_stats(Y)
            else:
                self.response_center_ = np.zeros(Y.shape[1])
                self.response_scale_ = np.ones(Y.shape[1])
        self.fitted_ = True
        return rows, missing, complete, X, Y

    @property
    def response_kind(self) -> str:
        """'factor' for a categorical response (class codes), 'numeric' otherwise."""
        first = self.variables_[self.response[0]]
        return "factor" if len(self.response) == 1 and first["kind"] == "factor" and self.lhs_.strip() == self.response[0] else "numeric"

    @property
    def levels(self) -> list:
        """The response's levels (class labels, in code order) for a factor response."""
        self._check_fitted()
        if self.response_kind != "factor":
            raise ArgumentError(f"The response {self.lhs_.strip()!r} is numeric; it has no levels.")
        return list(self.variables_[self.response[0]]["levels"])

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
        rows, missing = _complete_rows(frame, used)
        complete = self._prepare(frame.loc[rows], used)
        X = np.asarray(self.spec_.get_model_matrix(complete), dtype=np.float64)[:, self._keep]
        X = (X - self.center_) / self.scale_
        y = None
        if response:
            if self.response_kind == "factor":
                y = complete[self.response[0]].cat.codes.to_numpy().astype(np.int64)
            else:
                Y = np.asarray(self.response_spec_.get_model_matrix(complete), dtype=np.float64)
                y = (Y - self.response_center_) / self.response_scale_
        return Matrices(X, y, rows, int((~rows).sum()), missing, self._codes(complete))

    def _codes(self, complete):
        """Level codes (n, k) of the k embedded factors, or None."""
        if not self.embedded_:
            return None
        return np.column_stack([_level_codes(complete[name], levels) for name, levels in self.embedded_.items()])

    def tensors(self, data, response: bool | None = None):
        """(X, y) as torch tensors: X float32 (n, p); y float32 (n, k), or int64 codes (n,).

        Rows with a missing value are left out, with a ``MissingValuesWarning`` that says how
        many. Without the response columns (or with ``response=False``) only X is returned.
        """
        import torch

        m = self.transform(data, response=response)
        warn_left_out(m, len(m.rows))
        _check_float32(m.X, self.columns)
        X = torch.as_tensor(m.inputs(), dtype=torch.float32)
        if m.y is None:
            return X
        if self.response_kind == "factor":
            return X, torch.as_tensor(m.y, dtype=torch.int64)
        _check_float32(m.y, self.response_columns)
        return X, torch.as_tensor(m.y, dtype=torch.float32)

    def decode(self, codes):
        """Class labels for integer codes (a tensor, array or list), as a pandas Categorical."""
        import pandas as pd

        levels = self.levels
        codes = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes).astype(np.int64).reshape(-1)
        if codes.size and (codes.min() < 0 or codes.max() >= len(levels)):
            raise ArgumentError(f"Class codes must lie in 0..{len(levels) - 1}; got {codes.min()}..{codes.max()}.")
        return pd.Categorical.from_codes(codes, categories=levels)

    def unscale_response(self, y):
        """Map standardized response values (array or tensor, (n, k)) back to original units."""
        return y * self.response_scale_ + self.response_center_ if not hasattr(y, "new_tensor") else (
            y * y.new_tensor(self.response_scale_) + y.new_tensor(self.response_center_)
        )

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict:
        """Everything the design learned, as JSON-ready values (see ``from_dict``)."""
        self._check_fitted()
        state = {
            "formula": self.formula,
            "scale": self.scale,
            "intercept": self.intercept,
            "scale_response": self.scale_response,
            "lhs": self.lhs_,
            "rhs": self.rhs_,
            "response": self.response,
            "predictors": self.predictors,
            "variables": self.variables_,
            "columns": self.columns,
            "center": self.center_.tolist(),
            "scale_values": self.scale_.tolist(),
            "transform_state": to_json(dict(self.spec_.transform_state)),
            "n_left_out": self.n_left_out_,
            "embed": self.embed,
            "unknown": self.unknown,
            "embedded": [[name, levels] for name, levels in self.embedded_.items()],  # a list keeps the order
        }
        if self.response_kind == "numeric":
            state.update(
                response_columns=self.response_columns,
                response_center=self.response_center_.tolist(),
                response_scale=self.response_scale_.tolist(),
                response_transform_state=to_json(dict(self.response_spec_.transform_state)),
            )
        return state

    @classmethod
    def from_dict(cls, state: dict) -> "Design":
        """Rebuild a fitted design from ``to_dict`` output, without the training data.

        The formula is checked before formulaic evaluates it: a saved file may come from anyone,
        and a formula such as ``y ~ I(__import__('os').system(...))`` would run code.
        """
        for text in (state["formula"], state["lhs"], state["rhs"]):
            check_safe_formula(text)
        design = cls(
            state["formula"], scale=state["scale"], scale_response=state["scale_response"], intercept=state["intercept"],
            embed=state.get("embed"), unknown=state.get("unknown", "error"),
        )
        design.embedded_ = {name: list(levels) for name, levels in state.get("embedded", [])}
        design.lhs_, design.rhs_ = state["lhs"], state["rhs"]
        design.response, design.predictors = list(state["response"]), list(state["predictors"])
        design.variables_ = state["variables"]
        design.columns = list(state["columns"])
        design.center_ = np.asarray(state["center"], dtype=np.float64)
        design.scale_ = np.asarray(state["scale_values"], dtype=np.float64)
        design.n_left_out_ = state["n_left_out"]
        prototype = design._prototype()
        _, spec = _materialize(design.rhs_, prototype)
        design.spec_ = spec.update(transform_state=from_json(state["transform_state"]))
        design._keep = design._kept_columns()
        if "response_columns" in state:
            _, rspec = _materialize(design.lhs_ + " - 1", prototype)
            design.response_spec_ = rspec.update(transform_state=from_json(state["response_transform_state"]))
            design.response_columns = list(state["response_columns"])
            design.response_center_ = np.asarray(state["response_center"], dtype=np.float64)
            design.response_scale_ = np.asarray(state["response_scale"], dtype=np.float64)
        design.fitted_ = True
        if [_r_name(c) for c, k in zip(design.spec_.column_names, design._keep) if k] != design.columns:
            raise DataError("The saved design does not rebuild to the same columns; the file may be corrupted.")
        return design

    # ------------------------------------------------------------------ internals
    def _prepare(self, frame, used):
        """Columns as training saw them: factors as Categorical with the training levels."""
        import pandas as pd

        out = {}
        for name in used:
            info = self.variables_[name]
            column = frame[name]
            if info["kind"] == "factor":
                values = column.astype(object)
                if name in self.embedded_:  # unseen levels (unknown="other") become missing codes here
                    values = values.where(values.isin(info["levels"]))
                out[name] = pd.Categorical(values, categories=info["levels"])
            else:
                out[name] = pd.to_numeric(column).astype(np.float64).to_numpy()
        return pd.DataFrame(out, index=frame.index)

    def _prototype(self):
        """A small frame with every training level, from which formulaic rebuilds the encoding."""
        import pandas as pd

        n = max([len(v.get("levels", [])) for v in self.variables_.values()] + [3])
        out = {}
        for name, info in self.variables_.items():
            if info["kind"] == "factor":
                levels = info["levels"]
                out[name] = pd.Categorical([levels[i % len(levels)] for i in range(n)], categories=levels)
            else:
                out[name] = np.linspace(1.0, 2.0, n)
        return pd.DataFrame(out)

    def _embedded(self, rhs: str) -> dict:
        """{factor: levels} of the predictors that ``embed`` gives as codes, in column order."""
        if not self.embed:
            return {}
        terms = [[factor.expr for factor in term.factors] for term in _parse(rhs, self.formula)]
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
            uses = [t for t in terms if any(expr == name or name in _identifiers(expr) for expr in t)]
            if uses != [[name]]:
                if self.embed == "auto":
                    continue  # inside an interaction or a function: it stays dummy-coded
                other = next(":".join(t) for t in uses if t != [name])
                raise FormulaError(
                    f"Column {name!r} can be embedded only as a main effect, but the formula also uses it in {other!r}."
                )
            chosen[name] = list(info["levels"])
        return chosen

    def _kept_columns(self) -> np.ndarray:
        names = list(self.spec_.column_names)
        return np.array([self.intercept or name != "Intercept" for name in names], dtype=bool)

    def _factor_columns(self) -> list:
        """Model-matrix columns that come from a term with a factor in it (dummy columns)."""
        factors = {name for name, info in self.variables_.items() if info["kind"] == "factor"}
        out = []
        for term in self.spec_.structure:
            if {str(f) for f in term.term.factors} & factors:
                out.extend(term.columns)
        return out

    def _check_fitted(self):
        if not self.fitted_:
            raise ArgumentError("This Design is not fitted yet; call design.fit(training) first.")

    def __repr__(self):
        if not self.fitted_:
            return f"Design({self.formula!r}, scale={self.scale!r}) (not fitted)"
        kind = f"factor with levels {', '.join(map(str, self.levels))}" if self.response_kind == "factor" else "numeric"
        embedded = "".join(f"\n  embedded: {name} ({len(levels)} levels)" for name, levels in self.embedded_.items())
        return (
            f"Design({self.formula!r}, scale={self.scale!r})\n"
            f"  response: {self.lhs_.strip()} ({kind})\n"
            f"  {len(self.columns)} columns: {', '.join(self.columns)}"
            + embedded
        )


# ---------------------------------------------------------------------- helpers
def as_pandas(data):
    """A pandas DataFrame for pandas or polars input; anything else is a type error."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        duplicated = data.columns[data.columns.duplicated()]
        if len(duplicated):
            raise DataError(
                f"The data has more than one column named {duplicated[0]!r}; rename them so that each "
                "column has its own name."
            )
        return data
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
    """True for a polars DataFrame or Series (without importing polars)."""
    return type(data).__module__.split(".")[0] == "polars"


def check_safe_formula(text: str) -> None:
    """Refuse a formula from a file unless it calls only ``SAFE_FUNCTIONS`` and names no dunder.

    Names are looked up, never called, so any name may appear; a call needs an allowed function.

    >>> check_safe_formula("y ~ log(x) + poly(z, 2) + a:b - 1")
    >>> check_safe_formula("y ~ I(__import__('os').getcwd())")
    Traceback (most recent call last):
    ...
    nnfit.errors.DataError: The saved formula "y ~ I(__import__('os').getcwd())" uses '__import__', which nnfit does not evaluate when it loads a file (it could run code).
    """
    if not isinstance(text, str):
        raise DataError(f"The saved formula {text!r} is not text.")
    tokens, position = [], 0
    while position < len(text):
        match = _FORMULA_TOKEN.match(text, position)
        if match is None:
            raise DataError(
                f"The saved formula {text!r} holds {text[position]!r}, which nnfit does not evaluate when it "
                "loads a file (it could run code)."
            )
        if match.group().strip():
            tokens.append(match.group())
        position = match.end()
    for i, token in enumerate(tokens):
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        before = tokens[i - 1] if i else ""
        if token == "(" and before and (before == ")" or before[0] in "`\"'0123456789"):
            bad = before + "("  # calling the result of an expression
        elif token[0] in "\"'" and before and (before[0].isalpha() or before[0] == "_"):
            bad = before + token  # a prefixed string: f"{...}" runs code
        elif not (token[0].isalpha() or token[0] in "_."):
            continue
        elif "__" in token or (after == "(" and token not in SAFE_FUNCTIONS):
            bad = token
        else:
            continue
        raise DataError(
            f"The saved formula {text!r} uses {bad!r}, which nnfit does not evaluate when it loads a file "
            "(it could run code)."
        )


def warn_left_out(m: Matrices, n_rows: int, stacklevel: int = 3):
    """Say how many rows were left out for a missing value, if any."""
    if m.n_left_out:
        warnings.warn(
            f"Left out {m.n_left_out} of {n_rows} rows with a missing value{_missing_summary(m.missing_by_column)}.",
            MissingValuesWarning,
            stacklevel=stacklevel,
        )


def _split_formula(formula: str):
    lhs, _, rhs = formula.partition("~")
    if not lhs.strip():
        raise FormulaError(f"The formula {formula!r} has no response on the left of '~'.")
    if not rhs.strip():
        raise FormulaError(f"The formula {formula!r} has nothing on the right of '~' (use '~ 1' or '~ .').")
    match = _CBIND.match(lhs)
    if match:
        lhs = " + ".join(part.strip() for part in match.group(1).split(","))
    return lhs.strip(), rhs.strip()


def _parse(text: str, formula: str):
    from formulaic import Formula

    try:
        return Formula(text)
    except Exception as error:  # formulaic raises several parser errors
        raise FormulaError(f"Cannot read the formula {formula!r}: {error}") from None


def _response_names(lhs: str, frame) -> list:
    names = sorted(_parse(lhs, lhs).required_variables)
    names.sort(key=lambda n: list(frame.columns).index(n) if n in frame.columns else -1)
    if not names:
        raise FormulaError(f"The response {lhs!r} names no column.")
    return names


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) else "`" + name.replace("`", "") + "`"


def _expand_dot(rhs: str, columns, exclude) -> str:
    """R's '.': every column that is not a response."""
    if not _DOT.search(rhs):
        return rhs
    others = [_quote(str(c)) for c in columns if c not in exclude]
    if not others:
        raise FormulaError("'.' stands for the columns other than the response, but there are none.")
    return _DOT.sub("(" + " + ".join(others) + ")", rhs)


def _identifiers(text: str) -> set:
    return {m.group(1) or m.group(2) for m in _IDENTIFIER.finditer(text)}


def _required_variables(rhs: str, columns, formula: str) -> set:
    """Columns the right-hand side uses, including those inside stateful transforms (scale, poly)."""
    parsed = _parse(rhs, formula)
    names = set(parsed.required_variables)
    known = set(map(str, columns))
    for name in sorted(names - known):
        raise FormulaError(
            f"The formula {formula!r} uses {name!r}, which is not a column of the data"
            f"{close_names(name, columns)}."
        )
    expressions = [factor.expr for term in parsed for factor in term.factors if factor.eval_method.value == "python"]
    mentioned = {m.group(1) or m.group(2) for expr in expressions for m in _IDENTIFIER.finditer(expr)}
    return names | (mentioned & known)


def _learn_variable(column, name: str) -> dict:
    """The kind of a column ('numeric' or 'factor') and a factor's levels, in R's order."""
    import pandas as pd

    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return {"kind": "factor", "levels": [_plain(v) for v in dtype.categories]}
    if pd.api.types.is_bool_dtype(dtype):
        return {"kind": "factor", "levels": [False, True]}
    if pd.api.types.is_numeric_dtype(dtype):
        return {"kind": "numeric"}
    values = column.dropna()
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
    levels = sorted({_plain(v) for v in values}, key=lambda v: (str(type(v)), v))
    return {"kind": "factor", "levels": levels}


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
    elif not pd.api.types.is_numeric_dtype(column.dtype):
        bad = pd.to_numeric(values.astype(object), errors="coerce").isna()
        if bad.any():
            raise DataError(
                f"Column {name!r} must be numeric, as in training, but holds {values[bad].iloc[0]!r} "
                f"(row {_plain(values[bad].index[0])!r})."
            )


def _level_codes(column, levels) -> np.ndarray:
    """0-based codes of a Categorical; a level training never saw (unknown="other") gets len(levels)."""
    codes = column.cat.codes.to_numpy().astype(np.int64)
    return np.where(codes < 0, len(levels), codes)


def _complete_rows(frame, used):
    import pandas as pd

    missing = {}
    rows = np.ones(len(frame), dtype=bool)
    for name in used:
        column = frame[name]
        na = column.isna().to_numpy().copy()
        if pd.api.types.is_float_dtype(column.dtype):
            na |= ~np.isfinite(column.to_numpy(dtype=np.float64, na_value=np.nan))
        if na.any():
            missing[name] = int(na.sum())
            rows &= ~na
    return rows, missing


def _missing_summary(missing: dict) -> str:
    if not missing:
        return ""
    return " (" + ", ".join(f"{name}: {count}" for name, count in missing.items()) + ")"


def _materialize(text: str, frame, candidates=None):
    from formulaic import model_matrix

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            matrix = model_matrix(text, frame, na_action="raise")
    except Exception as error:
        undefined = _UNDEFINED.search(str(error))
        if undefined:
            name = undefined.group(1)
            raise FormulaError(
                f"The formula uses {name!r}, which is not a column of the data{close_names(name, frame.columns if candidates is None else candidates)}."
            ) from None
        raise FormulaError(f"Cannot build the model matrix for {text!r}: {error}") from None
    return np.asarray(matrix, dtype=np.float64), matrix.model_spec


def _r_name(column: str) -> str:
    """formulaic's 'species[T.Gentoo]' as R's 'speciesGentoo'; 'Intercept' as '(Intercept)'."""
    if column == "Intercept":
        return "(Intercept)"
    return _LEVEL.sub(r"\1", column)


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


def _column_stats(X):
    with np.errstate(over="ignore", invalid="ignore"):
        center = X.mean(axis=0)
        scale = X.std(axis=0, ddof=1) if len(X) > 1 else np.ones(X.shape[1])
        # Magnitudes near 1e300 overflow the sums of squares, near 1e-300 underflow them to 0:
        # compute those columns in units of their largest value.
        extreme = ~np.isfinite(center) | ~np.isfinite(scale) | ((scale == 0) & (np.ptp(X, axis=0) > 0) if len(X) else False)
        if np.any(extreme):
            size = np.abs(X[:, extreme]).max(axis=0)
            unit = X[:, extreme] / size
            center[extreme] = unit.mean(axis=0) * size
            scale[extreme] = (unit.std(axis=0, ddof=1) if len(X) > 1 else 1.0) * size
    scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    return center, scale


def _scaling(X, scale, factor_columns, columns=None):
    """Training mean and sd (n - 1) per column; constant columns (the intercept) stay as they are."""
    if scale is False:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    center, sd = _column_stats(X)
    keep = np.ptp(X, axis=0) > 0 if len(X) else np.zeros(X.shape[1], dtype=bool)
    if scale == "numeric":
        keep &= ~np.isin(np.asarray(columns, dtype=object), factor_columns)
    return np.where(keep, center, 0.0), np.where(keep, sd, 1.0)


def to_json(value):
    """numpy- and tuple-carrying state as JSON values (``from_json`` reverses it)."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: to_json(v) for k, v in value.items()}
        return {"__items__": [[to_json(k), to_json(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise DataError(f"Cannot save the design state value {value!r} of type {type(value).__name__}.")


def from_json(value):
    if isinstance(value, dict):
        if "__items__" in value:
            return {from_json(k): from_json(v) for k, v in value["__items__"]}
        if "__array__" in value:
            return np.asarray(value["__array__"], dtype=value["dtype"])
        if "__float__" in value:
            return float(value["__float__"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value

"""The closed table of R functions a formula may call, each with R's arguments and semantics.

A formula's calls are checked against ``FUNCTIONS`` before any data is read (``check``): an
unknown function, an argument the function does not have, or a column where a constant
belongs is a ``FormulaError`` pointing at its position. ``evaluate`` then computes a variable
from the data with numpy. Functions that learn from data (``poly``, ``bs``, ``ns``, ``scale``,
``factor``, ``cut``, ``relevel``) record what they learned in a plain-data ``state``, keyed by
the call's text, and re-apply it to new data, as R's ``predict`` does for ``poly``/``ns``/``bs``.

>>> import numpy as np
>>> from nnfit.design.grammar import parse
>>> node = parse("y ~ poly(x, 2)").rhs
>>> state = {}
>>> value = evaluate(node, Environment({"x": Value("numeric", np.arange(5.0))}, 5, state, learn=True))
>>> value.colnames, np.round(value.data[:, 0], 4).tolist()
(('1', '2'), [-0.6325, -0.3162, 0.0, 0.3162, 0.6325])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, FormulaError, LevelError
from .grammar import Node, deparse, r_number

MAX_DEGREE = 20
MAX_BASIS = 100


@dataclass
class Value:
    """A variable's values: numeric (float64, NaN missing), logical (float64 0/1, NaN missing),
    factor (int64 codes, -1 missing, with ``levels``), matrix (n, k), or a constant."""

    kind: str
    data: object
    levels: tuple = ()
    ordered: bool = False
    colnames: tuple = ()
    constant: bool = False

    def missing(self) -> np.ndarray:
        if self.kind == "factor":
            return self.data < 0
        if self.kind == "matrix":
            return ~np.isfinite(self.data).all(axis=1)
        data = np.asarray(self.data)
        if data.dtype.kind in "iu":  # whole numbers (a bare column keeps its dtype) hold no missing value
            return np.zeros(data.shape, dtype=bool)
        return ~np.isfinite(data)


@dataclass
class Environment:
    """What evaluation reads: the prepared columns, the row count, the learned state and
    whether to learn it (training) or apply it (new data); ``index`` labels rows in errors."""

    columns: dict
    n: int
    state: dict
    learn: bool
    index: object = None
    text: str = ""
    notes: list = field(default_factory=list)

    def row_label(self, position: int):
        if self.index is None:
            return position
        label = self.index[position]
        return label.item() if hasattr(label, "item") else label


@dataclass(frozen=True)
class Spec:
    """A function's R signature: argument names in order, how many are required, which are
    constants (never columns), and whether it takes any number of data arguments (``...``)."""

    params: tuple
    required: int = 1
    constants: frozenset = frozenset()
    variadic: bool = False
    learns: bool = False
    r_name: str = ""


def _spec(params, required=1, constants=(), variadic=False, learns=False, r_name=""):
    return Spec(tuple(params), required, frozenset(constants), variadic, learns, r_name)


FUNCTIONS = {
    "I": _spec(["x"]),
    "log": _spec(["x", "base"], constants=["base"]),
    "log2": _spec(["x"]), "log10": _spec(["x"]), "log1p": _spec(["x"]),
    "exp": _spec(["x"]), "expm1": _spec(["x"]), "sqrt": _spec(["x"]), "abs": _spec(["x"]),
    "sin": _spec(["x"]), "cos": _spec(["x"]), "tan": _spec(["x"]), "tanh": _spec(["x"]),
    "floor": _spec(["x"]), "ceiling": _spec(["x"]), "sign": _spec(["x"]), "trunc": _spec(["x"]),
    "round": _spec(["x", "digits"], constants=["digits"]),
    "pmin": _spec(["na.rm"], required=0, constants=["na.rm"], variadic=True),
    "pmax": _spec(["na.rm"], required=0, constants=["na.rm"], variadic=True),
    "factor": _spec(["x", "levels", "labels", "ordered"], constants=["levels", "labels", "ordered"], learns=True),
    "as.factor": _spec(["x"], learns=True),
    "ordered": _spec(["x", "levels"], constants=["levels"], learns=True),
    "as.numeric": _spec(["x"]),
    "relevel": _spec(["x", "ref"], required=2, constants=["ref"]),
    "cut": _spec(["x", "breaks", "labels", "include.lowest", "right", "dig.lab", "ordered_result"], required=2,
                 constants=["breaks", "labels", "include.lowest", "right", "dig.lab", "ordered_result"], learns=True),
    "poly": _spec(["x", "degree", "raw"], constants=["degree", "raw"], learns=True),
    "bs": _spec(["x", "df", "knots", "degree", "intercept", "Boundary.knots"],
                constants=["df", "knots", "degree", "intercept", "Boundary.knots"], learns=True),
    "ns": _spec(["x", "df", "knots", "intercept", "Boundary.knots"],
                constants=["df", "knots", "intercept", "Boundary.knots"], learns=True),
    "scale": _spec(["x", "center", "scale"], constants=["center", "scale"], learns=True),
    "lag": _spec(["x", "n"], constants=["n"]),
    "c": _spec([], required=0, variadic=True),
}
# R's namespaces: splines::ns(x, 3) names the same function as ns(x, 3).
NAMESPACES = {"base": set(FUNCTIONS) - {"poly", "bs", "ns", "lag"}, "stats": {"poly", "offset"},
              "splines": {"bs", "ns"}, "dplyr": {"lag"}}
_ALIASES = {"k": "n"}  # lag(x, k = 2): stats::lag's name for dplyr's n


def resolve(name: str) -> str | None:
    """The table's name for a (possibly namespaced) function name, or None."""
    if "::" in name:
        namespace, _, bare = name.partition("::")
        bare = bare.lstrip(":")
        return bare if bare in NAMESPACES.get(namespace, ()) else None
    return name if name in FUNCTIONS else None


def check(node: Node, text: str) -> None:
    """Refuse any call outside the table, and any argument a function does not have, before
    anything is evaluated. ``node`` is a variable's expression (an arithmetic context)."""
    for sub in node.walk():
        if sub.kind == "binary" and sub.value in (":", "~"):
            raise FormulaError(
                f"The formula {text!r} uses {sub.value!r} inside a call at position {sub.pos}; there it would be R's "
                "sequence operator, which nnfit does not read. Write interactions outside calls (a:b)."
            )
        if sub.kind != "call":
            continue
        name = resolve(sub.value)
        if name is None:
            known = ", ".join(sorted(n for n in FUNCTIONS if n != "c"))
            raise FormulaError(
                f"The formula {text!r} calls {sub.value}() at position {sub.pos}, which is not in nnfit's table of R "
                f"functions: {known} (and offset() as a term, cbind() on the left). See docs/formulas.md."
            )
        bind(sub, name, text)


def bind(node: Node, name: str, text: str) -> dict:
    """Match a call's arguments to R's parameters (positional, then by exact name)."""
    spec = FUNCTIONS[name]
    bound, extra = {}, []
    positional = [p for p in spec.params if p not in ("na.rm",)]
    slots = list(positional)
    for arg_name, arg in zip(node.names, node.args):
        if arg_name is None:
            continue
        key = _ALIASES.get(arg_name, arg_name) if name == "lag" else arg_name
        if key not in spec.params:
            allowed = ", ".join(spec.params) if spec.params else "none"
            raise FormulaError(
                f"The formula {text!r} gives {name}() the argument {arg_name!r} at position {arg.pos}, which {name}() "
                f"does not have (its arguments: {allowed})."
            )
        if key in bound:
            raise FormulaError(f"The formula {text!r} gives {name}() the argument {arg_name!r} twice.")
        bound[key] = arg
        if key in slots:
            slots.remove(key)
    for arg_name, arg in zip(node.names, node.args):
        if arg_name is not None:
            continue
        if spec.variadic:
            extra.append(arg)
            continue
        if not slots:
            raise FormulaError(
                f"The formula {text!r} gives {name}() more arguments than it takes, at position {arg.pos} "
                f"(its arguments: {', '.join(spec.params)})."
            )
        bound[slots.pop(0)] = arg
    if spec.variadic:
        bound["..."] = extra
    given = len(extra) if spec.variadic else sum(1 for p in spec.params[: spec.required] if p in bound)
    if given < max(spec.required, 1 if name in ("pmin", "pmax", "c") else 0):
        needs = ", ".join(spec.params[: spec.required]) or "at least one value"
        raise FormulaError(f"The formula {text!r} calls {deparse(node)} without {needs} (position {node.pos}).")
    for param in spec.constants:
        if param in bound:
            for sub in bound[param].walk():
                if sub.kind == "name":
                    raise FormulaError(
                        f"The formula {text!r} gives {name}() the column {sub.value!r} as its argument {param!r} at "
                        f"position {sub.pos}; {param!r} must be a constant such as a number, TRUE/FALSE or a string."
                    )
    return bound


# ---------------------------------------------------------------------- evaluation
def evaluate(node: Node, env: Environment) -> Value:
    """The value of a variable's expression on the environment's data."""
    kind = node.kind
    if kind == "name":
        if node.value not in env.columns:
            raise FormulaError(f"The formula {env.text!r} uses {node.value!r}, which is not a column of the data.")
        return env.columns[node.value]
    if kind == "number":
        return Value("numeric", np.float64(node.value), constant=True)
    if kind == "logical":
        return Value("logical", np.float64(node.value), constant=True)
    if kind == "string":
        return Value("string", node.value, constant=True)
    if kind == "paren":
        return evaluate(node.args[0], env)
    if kind == "unary":
        operand = evaluate(node.args[0], env)
        if node.value == "!":
            data = _numbers(operand, node, env, "!")
            return Value("logical", np.where(np.isnan(data), np.nan, (data == 0).astype(float)), constant=operand.constant)
        data = _numbers(operand, node, env, node.value)
        return Value("numeric", -data if node.value == "-" else data, constant=operand.constant)
    if kind == "binary":
        return _binary(node, env)
    name = resolve(node.value)
    if name is None:
        check(node, env.text)
    bound = bind(node, name, env.text)
    return _CALLS[name](node, bound, env)


def constant(node: Node, env: Environment):
    """A constant argument's value: a number, string, flag or a c(...) vector of them."""
    value = evaluate(node, Environment({}, 1, env.state, env.learn, text=env.text))
    if not value.constant:
        raise FormulaError(f"The formula {env.text!r} needs a constant at position {node.pos}, not {deparse(node)!r}.")
    return value.data


def _numbers(value: Value, node: Node, env: Environment, op: str) -> np.ndarray:
    if value.kind in ("numeric", "logical"):
        return np.asarray(value.data, dtype=np.float64)
    what = {"factor": "the factor", "matrix": "the several columns of", "string": "the string"}[value.kind]
    raise FormulaError(
        f"The formula {env.text!r} applies {op!r} to {what} {deparse(node.args[0]) if node.args else deparse(node)!r} "
        f"at position {node.pos}; {op!r} needs numbers (for a factor's codes write as.numeric())."
    )


_COMPARE = {"==": np.equal, "!=": np.not_equal, "<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal}
_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power,
               "%%": lambda a, b: a - np.floor(a / b) * b, "%/%": lambda a, b: np.floor(a / b)}


def _binary(node: Node, env: Environment) -> Value:
    op = node.value
    left, right = (evaluate(a, env) for a in node.args)
    is_constant = left.constant and right.constant
    if op in _COMPARE or op == "%in%":
        return _compare(op, left, right, node, env)
    if op in ("&", "&&", "|", "||"):
        a, b = (_numbers(v, node, env, op) for v in (left, right))
        with np.errstate(invalid="ignore"):
            if op in ("&", "&&"):
                out = np.where((a == 0) | (b == 0), 0.0, np.where(np.isnan(a) | np.isnan(b), np.nan, 1.0))
            else:
                out = np.where((a == 1) | (b == 1), 1.0, np.where(np.isnan(a) | np.isnan(b), np.nan, 0.0))
        return Value("logical", out, constant=is_constant)
    if op not in _ARITHMETIC:
        raise FormulaError(f"The formula {env.text!r} uses {op!r} at position {node.pos}, which nnfit does not read inside a call.")
    a, b = _numbers(left, node, env, op), _numbers(right, node, env, op)
    with np.errstate(all="ignore"):
        out = _ARITHMETIC[op](a, b)
    return Value("numeric", np.asarray(out, dtype=np.float64), constant=is_constant)


def _compare(op, left: Value, right: Value, node: Node, env: Environment) -> Value:
    def labels(value):
        if value.kind == "factor":
            lab = np.asarray([str(level) for level in value.levels] + [""], dtype=object)
            return lab[value.data], value.data < 0
        if value.kind == "string":
            return np.asarray(value.data, dtype=object), np.zeros((), dtype=bool)
        if value.kind in ("numeric", "logical"):
            data = np.asarray(value.data, dtype=np.float64)
            return data, np.isnan(data)
        raise FormulaError(f"The formula {env.text!r} compares several columns at position {node.pos}; compare one column.")

    (a, na_a), (b, na_b) = labels(left), labels(right)
    textual = left.kind in ("factor", "string") or right.kind in ("factor", "string")
    if textual and not (left.kind in ("factor", "string") and right.kind in ("factor", "string")):
        a = a.astype(object) if left.kind in ("factor", "string") else np.array([r_number(v) for v in np.atleast_1d(a)], dtype=object).reshape(np.shape(a))
        b = b.astype(object) if right.kind in ("factor", "string") else np.array([r_number(v) for v in np.atleast_1d(b)], dtype=object).reshape(np.shape(b))
    if op == "%in%":
        pool = set(np.atleast_1d(b).tolist())
        out = np.array([v in pool for v in np.atleast_1d(a).tolist()], dtype=float).reshape(np.shape(a))
        out = np.where(na_a, 0.0, out)  # R: NA %in% x is FALSE unless x holds NA
        return Value("logical", out, constant=left.constant)
    with np.errstate(invalid="ignore"):
        out = _COMPARE[op](a, b).astype(float)
    out = np.where(na_a | na_b, np.nan, out)
    return Value("logical", np.asarray(out, dtype=np.float64), constant=left.constant and right.constant)


def _data_arg(bound, key, env, node):
    value = evaluate(bound[key], env)
    if value.kind == "matrix":
        raise FormulaError(
            f"The formula {env.text!r} passes {deparse(bound[key])!r}, which gives several columns, to "
            f"{node.value}() at position {node.pos}; such a call can stand only as a term of its own."
        )
    return value


def _flag(bound, key, env, default):
    if key not in bound:
        return default
    value = constant(bound[key], env)
    if isinstance(value, str) or np.ndim(value) != 0 or not np.isfinite(value):
        raise FormulaError(f"The formula {env.text!r} needs TRUE or FALSE for {key!r} at position {bound[key].pos}.")
    return bool(value)


def _number(bound, key, env, default=None, whole=False, low=None, high=None):
    if key not in bound:
        return default
    value = constant(bound[key], env)
    if isinstance(value, str) or np.ndim(value) != 0 or not np.isfinite(value) or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise FormulaError(f"The formula {env.text!r} needs {kind} for {key!r} at position {bound[key].pos}, not {deparse(bound[key])}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise FormulaError(
            f"The formula {env.text!r} gives {key} = {deparse(bound[key])} at position {bound[key].pos}; it must lie "
            f"between {low} and {high}."
        )
    return int(value) if whole else float(value)


def _vector(bound, key, env, strings=False):
    if key not in bound:
        return None
    value = constant(bound[key], env)
    values = np.atleast_1d(value)
    if strings:
        return [str(v) for v in values.tolist()]
    if values.dtype == object or not np.isfinite(values.astype(float)).all():
        raise FormulaError(f"The formula {env.text!r} needs finite numbers for {key!r} at position {bound[key].pos}.")
    if values.size > 10_000:
        raise FormulaError(f"The formula {env.text!r} gives {values.size} values for {key!r}; nnfit takes at most 10000.")
    return values.astype(np.float64)


def _state(node: Node, env: Environment, learn, shape: dict):
    """The learned state of a call: computed now (training) or read back (new data).

    ``shape`` maps each field to what it must be: "number", "positive", "numbers", "sorted"
    (strictly increasing numbers), "texts", or an int (the length of a list of numbers); a
    state read back that does not fit is an error before it is used.
    """
    key = deparse(node)
    if env.learn:
        if key not in env.state:
            env.state[key] = learn()
        return env.state[key]
    state = env.state.get(key)
    if not isinstance(state, dict) or sorted(state) != sorted(shape):
        raise DataError(f"The design has no valid learned state for {key!r}; the model file may be corrupted.")
    for field_name, kind in shape.items():
        value = state[field_name]
        if kind in ("number", "positive"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (kind == "number" or value > 0)
        elif kind == "texts":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            if ok and kind == "sorted":
                ok = all(a < b for a, b in zip(value, value[1:]))
            if ok and isinstance(kind, int):
                ok = len(value) == kind
        if not ok:
            raise DataError(f"The learned state of {key!r} has an invalid {field_name!r}; the model file may be corrupted.")
    return state


def _finite(values):
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


# ---------------------------------------------------------------------- the functions
def _elementwise(fn, domain=None, what="", hint=""):
    def call(node, bound, env):
        value = _data_arg(bound, "x", env, node)
        x = _numbers(value, node, env, node.value)
        if domain is not None:
            _check_domain(x, domain, node, bound, env, what, hint)
        with np.errstate(all="ignore"):
            return Value("numeric", np.asarray(fn(x), dtype=np.float64), constant=value.constant)
    return call


def _check_domain(x, domain, node, bound, env, what, hint):
    """A value a function is not defined for is an error naming the call, the count and the first row."""
    with np.errstate(invalid="ignore"):
        bad = ~domain(x) & np.isfinite(x)
    if np.any(bad):
        count, first = int(np.sum(bad)), int(np.flatnonzero(np.atleast_1d(bad))[0])
        values = "value" if count == 1 else "values"
        where = f" (the first in row {env.row_label(first)!r})" if np.ndim(x) else ""
        raise DataError(f"{deparse(node)}: {deparse(bound['x'])} has {count} {what} {values}{where}; {hint}")


def _log(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    x = _numbers(value, node, env, "log")
    base = _number(bound, "base", env, default=math.e)
    if base <= 0 or base == 1:
        raise FormulaError(f"The formula {env.text!r} takes logarithms to the base {r_number(base)}; the base must be positive and not 1.")
    _check_domain(x, lambda v: v > 0, node, bound, env, "zero or negative",
                  "log needs positive values (for counts with zeros use log1p() or log(x + 1)).")
    return Value("numeric", np.log(x) / (1.0 if base == math.e else math.log(base)), constant=value.constant)


def _round(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    digits = _number(bound, "digits", env, default=0, whole=True, low=-15, high=15)
    return Value("numeric", np.round(_numbers(value, node, env, "round"), digits), constant=value.constant)


def _parallel(fn):
    def call(node, bound, env):
        values = [_data_arg({"x": a}, "x", env, node) for a in bound["..."]]
        arrays = [_numbers(v, node, env, node.value) for v in values]
        na_rm = _flag(bound, "na.rm", env, False)
        stacked = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in arrays])
        stacked = np.stack(stacked)
        with np.errstate(all="ignore"):
            out = (np.fmin if fn is np.minimum else np.fmax).reduce(stacked) if na_rm else fn.reduce(stacked)
        return Value("numeric", out, constant=all(v.constant for v in values))
    return call


def _c(node, bound, env):
    values = [evaluate(a, env) for a in bound["..."]]
    if not all(v.constant for v in values):
        raise FormulaError(f"The formula {env.text!r} uses c() with a column at position {node.pos}; c() takes constants only.")
    kinds = {v.kind for v in values}
    if "string" in kinds:
        return Value("string", np.array([v.data if v.kind == "string" else r_number(float(v.data)) for v in values], dtype=object), constant=True)
    return Value("numeric", np.concatenate([np.atleast_1d(np.asarray(v.data, dtype=np.float64)) for v in values]), constant=True)


def _as_numeric(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    if value.kind == "factor":
        return Value("numeric", np.where(value.data < 0, np.nan, value.data + 1.0))
    return Value("numeric", _numbers(value, node, env, "as.numeric"), constant=value.constant)


def level_label(level) -> str:
    """A level as R prints it: numbers as R formats them, logicals as TRUE/FALSE."""
    if isinstance(level, bool) or isinstance(level, np.bool_):
        return "TRUE" if level else "FALSE"
    if isinstance(level, (int, np.integer)):
        return str(int(level))
    if isinstance(level, (float, np.floating)):
        return r_number(float(level))
    return str(level)


def _factor(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    given = _vector(bound, "levels", env, strings=True)
    labels = _vector(bound, "labels", env, strings=True)
    ordered = _flag(bound, "ordered", env, node.value == "ordered" or (value.kind == "factor" and value.ordered and node.value != "as.factor"))
    if value.kind == "string":
        raise FormulaError(f"The formula {env.text!r} makes a factor of a constant at position {node.pos}.")
    # Each distinct value's label, and each row's index into them (-1 where missing).
    if value.kind == "factor":
        present = np.unique(value.data[value.data >= 0])
        keys = [str(value.levels[i]) for i in present]
        inverse = np.full(value.data.shape, -1, dtype=np.int64)
        inverse[value.data >= 0] = np.searchsorted(present, value.data[value.data >= 0])
    else:
        x = np.asarray(value.data, dtype=np.float64)
        finite = np.isfinite(x)
        distinct, at = np.unique(x[finite], return_inverse=True)
        keys = [("TRUE" if v else "FALSE") if value.kind == "logical" else level_label(float(v)) for v in distinct]
        inverse = np.full(x.shape, -1, dtype=np.int64)
        inverse[finite] = at

    def learn():
        levels = given if given is not None else keys
        if labels is not None and len(labels) != len(levels):
            raise FormulaError(f"The formula {env.text!r} gives {len(labels)} labels for {len(levels)} levels at position {node.pos}.")
        if len(set(levels)) != len(levels):
            raise FormulaError(f"The formula {env.text!r} repeats a level in {deparse(node)}.")
        return {"levels": list(levels), "labels": list(labels) if labels is not None else list(levels)}

    state = _state(node, env, learn, {"levels": "texts", "labels": "texts"})
    if len(state["labels"]) != len(state["levels"]) or len(set(state["levels"])) != len(state["levels"]):
        raise DataError(f"The learned levels of {deparse(node)!r} are inconsistent; the model file may be corrupted.")
    lookup = {level: i for i, level in enumerate(state["levels"])}
    key_codes = np.array([lookup.get(k, -2) for k in keys] + [-1], dtype=np.int64)
    codes = key_codes[inverse]
    unseen = codes == -2
    if unseen.any():
        if given is not None:  # R: values outside explicit levels become NA
            codes = np.where(unseen, -1, codes)
        else:
            first = int(np.flatnonzero(unseen)[0])
            raise LevelError(
                f"{deparse(node)} has the level {keys[inverse[first]]!r} (row {env.row_label(first)!r}), which training "
                f"never saw (levels: {', '.join(state['levels'][:10])})."
            )
    return Value("factor", codes, tuple(state["labels"]), ordered)


def _relevel(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    if value.kind != "factor":
        raise FormulaError(f"The formula {env.text!r} relevels {deparse(bound['x'])!r}, which is not a factor; use relevel(factor(x), ref = ...).")
    ref = constant(bound["ref"], env)
    ref = level_label(ref) if not isinstance(ref, str) else ref
    labels = [str(level) for level in value.levels]
    if ref not in labels:
        raise FormulaError(
            f"The formula {env.text!r} asks relevel() for the reference level {ref!r}, which {deparse(bound['x'])!r} does "
            f"not have (levels: {', '.join(labels)})."
        )
    at = labels.index(ref)
    order = [at] + [i for i in range(len(labels)) if i != at]
    mapping = np.empty(len(labels) + 1, dtype=np.int64)
    mapping[order] = np.arange(len(labels))
    mapping[-1] = -1
    return Value("factor", mapping[value.data], tuple(value.levels[i] for i in order), False)


def _cut(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    x = _numbers(value, node, env, "cut")
    right = _flag(bound, "right", env, True)
    lowest = _flag(bound, "include.lowest", env, False)
    dig = _number(bound, "dig.lab", env, default=3, whole=True, low=1, high=12)
    ordered = _flag(bound, "ordered_result", env, False)
    breaks = _vector(bound, "breaks", env)
    labels = _vector(bound, "labels", env, strings=True)

    def learn():
        if breaks.size == 1:
            nb = int(breaks[0]) + 1
            if breaks[0] < 2 or breaks[0] != int(breaks[0]) or nb > 10_001:
                raise FormulaError(f"The formula {env.text!r} asks cut() for {r_number(breaks[0])} intervals; give a whole number from 2.")
            finite = _finite(x)
            if finite.size == 0:
                raise DataError(f"{deparse(node)}: {deparse(bound['x'])} has no values to cut.")
            lo, hi = finite.min(), finite.max()
            dx = hi - lo
            if dx == 0:
                dx = abs(lo) if lo != 0 else 1.0
                points = np.linspace(lo - dx / 1000, hi + dx / 1000, nb)
            else:
                points = np.linspace(lo, hi, nb)
                points[0], points[-1] = lo - dx / 1000, hi + dx / 1000
        else:
            points = np.sort(breaks)
        if len(np.unique(points)) != len(points):
            raise FormulaError(f"The formula {env.text!r} gives cut() breaks that are not unique.")
        nb = len(points)
        names = list(labels) if labels is not None else None
        if names is None:
            for digits in range(dig, max(12, dig) + 1):
                text = [f"{0 + b:.{digits}g}" for b in points]
                if all(a != b for a, b in zip(text[1:], text[:-1])):
                    break
            names = [f"{'(' if right else '['}{a},{b}{']' if right else ')'}" for a, b in zip(text[:-1], text[1:])]
            if lowest and names:
                if right:
                    names[0] = "[" + names[0][1:]
                else:
                    names[-1] = names[-1][:-1] + "]"
        if len(names) != nb - 1:
            raise FormulaError(f"The formula {env.text!r} gives cut() {len(names)} labels for {nb - 1} intervals.")
        return {"breaks": points.tolist(), "labels": names}

    state = _state(node, env, learn, {"breaks": "sorted", "labels": "texts"})
    if len(state["labels"]) != len(state["breaks"]) - 1 or len(state["breaks"]) < 2:
        raise DataError(f"The learned breaks of {deparse(node)!r} are inconsistent; the model file may be corrupted.")
    points = np.asarray(state["breaks"], dtype=np.float64)
    side = "left" if right else "right"
    codes = np.searchsorted(points, x, side=side) - 1
    inside = (x > points[0]) & (x <= points[-1]) if right else (x >= points[0]) & (x < points[-1])
    if lowest:
        inside |= (x == points[0]) if right else (x == points[-1])
        codes = np.where((x == points[0]) & right, 0, codes)
        codes = np.where((x == points[-1]) & (not right), len(points) - 2, codes)
    codes = np.where(inside & np.isfinite(x), codes, -1).astype(np.int64)
    return Value("factor", codes, tuple(state["labels"]), ordered)


def _poly(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    x = _numbers(value, node, env, "poly")
    degree = _number(bound, "degree", env, default=1, whole=True, low=1, high=MAX_DEGREE)
    raw = _flag(bound, "raw", env, False)
    names = tuple(str(i) for i in range(1, degree + 1))
    if raw:
        with np.errstate(all="ignore"):
            return Value("matrix", np.column_stack([x ** d for d in range(1, degree + 1)]), colnames=names)

    def learn():
        v = _finite(x)
        if len(np.unique(v)) <= degree:
            raise DataError(
                f"{deparse(node)}: the degree must be less than the number of distinct values of "
                f"{deparse(bound['x'])} ({len(np.unique(v))})."
            )
        center = v.mean()
        X = np.power.outer(v - center, np.arange(degree + 1))
        q, r = np.linalg.qr(X)
        Z = q * np.diag(r)
        norm2 = (Z ** 2).sum(axis=0)
        alpha = ((v - center)[:, None] * Z ** 2).sum(axis=0) / norm2 + center
        return {"alpha": alpha[:degree].tolist(), "norm2": [1.0] + norm2.tolist()}

    state = _state(node, env, learn, {"alpha": degree, "norm2": degree + 2})
    alpha, norm2 = np.asarray(state["alpha"]), np.asarray(state["norm2"])
    if not (norm2 > 0).all():
        raise DataError(f"The learned state of {deparse(node)!r} has an invalid 'norm2'; the model file may be corrupted.")
    Z = np.empty((np.size(x), degree + 1))
    Z[:, 0] = 1.0
    Z[:, 1] = x - alpha[0]
    for i in range(1, degree):
        Z[:, i + 1] = (x - alpha[i]) * Z[:, i] - (norm2[i + 1] / norm2[i]) * Z[:, i - 1]
    Z /= np.sqrt(norm2[1:])
    return Value("matrix", Z[:, 1:], colnames=names)


def spline_design(knots, x, order: int, deriv: int = 0) -> np.ndarray:
    """R's ``splines::splineDesign``: B-spline basis functions (or a derivative) at ``x``.

    Cox-de Boor recursion; a point on the last knot belongs to the last non-empty interval.
    """
    t = np.asarray(knots, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    m = len(t) - 1
    B = np.zeros((len(x), m))
    last = int(np.flatnonzero(t[1:] > t[:-1])[-1])
    for j in range(m):
        if t[j] < t[j + 1]:
            B[:, j] = (t[j] <= x) & ((x < t[j + 1]) | ((j == last) & (x == t[j + 1])))
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(2, order + 1):
            width = len(t) - k
            left = t[k - 1: k - 1 + width] - t[:width]
            right = t[k: k + width] - t[1: 1 + width]
            a = np.where(left > 0, 1 / np.where(left > 0, left, 1), 0.0)
            b = np.where(right > 0, 1 / np.where(right > 0, right, 1), 0.0)
            if k <= order - deriv:
                B = (x[:, None] - t[:width]) * a * B[:, :width] + (t[k: k + width] - x[:, None]) * b * B[:, 1: 1 + width]
            else:
                B = (k - 1) * (a * B[:, :width] - b * B[:, 1: 1 + width])
    return B


def _spline_knots(node, bound, env, x, degree, intercept, natural):
    v = _finite(x)
    given = _vector(bound, "knots", env)
    boundary = _vector(bound, "Boundary.knots", env)
    if boundary is None:
        if v.size == 0:
            raise DataError(f"{deparse(node)}: {deparse(bound['x'])} has no values.")
        boundary = np.array([v.min(), v.max()])
    if boundary.size != 2 or boundary[0] >= boundary[1]:
        raise FormulaError(f"The formula {env.text!r} needs two increasing Boundary.knots for {node.value}().")
    df = _number(bound, "df", env, whole=True, low=1, high=MAX_BASIS)
    if given is None and df is not None:
        n_inner = df - (1 + intercept if natural else degree + intercept)
        if n_inner < 0:
            env.notes.append(f"{deparse(node)}: df was too small; it uses df = {df - n_inner}, as R does.")
            n_inner = 0
        inside = v[(v >= boundary[0]) & (v <= boundary[1])]
        probs = np.linspace(0, 1, n_inner + 2)[1:-1]
        given = np.quantile(inside, probs) if n_inner else np.array([])
    return np.sort(given) if given is not None else np.array([]), boundary


def _bs(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    x = _numbers(value, node, env, node.value)
    degree = _number(bound, "degree", env, default=3, whole=True, low=1, high=MAX_DEGREE)
    intercept = _flag(bound, "intercept", env, False)

    def learn():
        knots, boundary = _spline_knots(node, bound, env, x, degree, intercept, natural=False)
        return {"knots": knots.tolist(), "boundary": boundary.tolist()}

    state = _state(node, env, learn, {"knots": "numbers", "boundary": "sorted"})
    knots, boundary = _checked_knots(node, state)
    order = degree + 1
    all_knots = np.sort(np.concatenate([np.repeat(boundary, order), knots]))
    basis = _extended(all_knots, x, order, boundary, degree)
    if not intercept:
        basis = basis[:, 1:]
    return Value("matrix", basis, colnames=tuple(str(i) for i in range(1, basis.shape[1] + 1)))


def _extended(all_knots, x, order, boundary, degree, linear=False):
    """The basis at x, extended beyond the boundary knots as R does (Taylor at a pivot)."""
    n_basis = len(all_knots) - order
    basis = np.full((len(x), n_basis), np.nan)
    finite = np.isfinite(x)
    below, above = finite & (x < boundary[0]), finite & (x > boundary[1])
    inside = finite & ~below & ~above
    basis[inside] = spline_design(all_knots, x[inside], order)
    for rows, side in ((below, 0), (above, 1)):
        if not rows.any():
            continue
        if linear:
            pivot, powers = boundary[side], 1
        else:
            e = 0.25
            pivot = (1 - e) * boundary[0] + e * all_knots[order] if side == 0 else (1 - e) * boundary[1] + e * all_knots[-order - 1]
            powers = degree
        derivatives = np.vstack([spline_design(all_knots, [pivot], order, d) for d in range(powers + 1)])
        scale = np.array([math.factorial(d) for d in range(powers + 1)], dtype=np.float64)[:, None]
        steps = np.power.outer(x[rows] - pivot, np.arange(powers + 1))
        basis[rows] = steps @ (derivatives / scale)
    return basis


def _checked_knots(node, state):
    knots, boundary = np.asarray(state["knots"], dtype=np.float64), np.asarray(state["boundary"], dtype=np.float64)
    inside = (np.diff(knots) >= 0).all() and (not len(knots) or (knots[0] >= boundary[0] and knots[-1] <= boundary[1]))
    if len(boundary) != 2 or len(knots) > MAX_BASIS or not inside:
        raise DataError(f"The learned knots of {deparse(node)!r} are inconsistent; the model file may be corrupted.")
    return knots, boundary


def _ns(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    x = _numbers(value, node, env, node.value)
    intercept = _flag(bound, "intercept", env, False)

    def learn():
        knots, boundary = _spline_knots(node, bound, env, x, 3, intercept, natural=True)
        return {"knots": knots.tolist(), "boundary": boundary.tolist()}

    state = _state(node, env, learn, {"knots": "numbers", "boundary": "sorted"})
    knots, boundary = _checked_knots(node, state)
    all_knots = np.sort(np.concatenate([np.repeat(boundary, 4), knots]))
    basis = _extended(all_knots, x, 4, boundary, 3, linear=True)
    const = np.vstack([spline_design(all_knots, [b], 4, 2) for b in boundary])
    if not intercept:
        const, basis = const[:, 1:], basis[:, 1:]
    q, _ = np.linalg.qr(const.T, mode="complete")
    basis = (basis @ q)[:, 2:]
    return Value("matrix", basis, colnames=tuple(str(i) for i in range(1, basis.shape[1] + 1)))


def _scale(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    x = _numbers(value, node, env, "scale")
    center = _flag(bound, "center", env, True)
    spread = _flag(bound, "scale", env, True)

    def learn():
        v = _finite(x)
        m = float(v.mean()) if center and v.size else 0.0
        if spread:
            s = float(np.sqrt(((v - m) ** 2).sum() / max(v.size - 1, 1))) if v.size else 1.0
        else:
            s = 1.0
        return {"center": m, "scale": s if s > 0 else 1.0}

    state = _state(node, env, learn, {"center": "number", "scale": "positive"})
    return Value("numeric", (x - state["center"]) / state["scale"])


def _lag(node, bound, env):
    value = _data_arg(bound, "x", env, node)
    steps = _number(bound, "n", env, default=1, whole=True, low=0, high=1_000_000)
    if value.constant:
        raise FormulaError(f"The formula {env.text!r} lags a constant at position {node.pos}.")
    data = value.data
    fill = -1 if value.kind == "factor" else np.nan
    out = np.full(data.shape, fill, dtype=data.dtype)
    if steps < len(data):
        out[steps:] = data[: len(data) - steps]
    return Value(value.kind, out, value.levels, value.ordered)


def _identity(node, bound, env):
    return evaluate(bound["x"], env)


_CALLS = {
    "I": _identity,
    "log": _log,
    "log2": _elementwise(np.log2, lambda v: v > 0, "zero or negative", "log2 needs positive values."),
    "log10": _elementwise(np.log10, lambda v: v > 0, "zero or negative", "log10 needs positive values."),
    "log1p": _elementwise(np.log1p, lambda v: v > -1, "at or below -1", "log1p needs values above -1."),
    "exp": _elementwise(np.exp), "expm1": _elementwise(np.expm1),
    "sqrt": _elementwise(np.sqrt, lambda v: v >= 0, "negative", "sqrt needs values of at least 0."),
    "abs": _elementwise(np.abs), "sin": _elementwise(np.sin), "cos": _elementwise(np.cos),
    "tan": _elementwise(np.tan), "tanh": _elementwise(np.tanh), "floor": _elementwise(np.floor),
    "ceiling": _elementwise(np.ceil), "sign": _elementwise(np.sign), "trunc": _elementwise(np.trunc),
    "round": _round, "pmin": _parallel(np.minimum), "pmax": _parallel(np.maximum),
    "factor": _factor, "as.factor": _factor, "ordered": _factor, "as.numeric": _as_numeric,
    "relevel": _relevel, "cut": _cut, "poly": _poly, "bs": _bs, "ns": _ns, "scale": _scale, "lag": _lag,
    "c": _c,
}
assert set(_CALLS) == set(FUNCTIONS)


# ---------------------------------------------------------------------- saved state
def check_state(key: str, state) -> None:
    """A learned state read from a file must have the shape its function writes."""
    def fail(what):
        raise DataError(f"The saved state of {key!r} {what}; the model file may be corrupted or edited.")

    if not isinstance(state, dict) or len(state) > 4:
        fail("is not a small mapping")
    for name, item in state.items():
        items = item if isinstance(item, list) else [item]
        if len(items) > 100_000:
            fail(f"has {len(items)} values in {name!r}")
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                fail(f"holds a {type(v).__name__} in {name!r}")
            if isinstance(v, float) and not math.isfinite(v):
                fail(f"holds a non-finite number in {name!r}")
            if isinstance(v, str) and len(v) > 1000:
                fail(f"holds a string of {len(v)} characters in {name!r}")

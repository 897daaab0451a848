"""R's formula language, parsed into plain data: nothing in a formula is ever evaluated as code.

A formula is tokenized and parsed by a small precedence-climbing parser that knows R's
operators and nothing else. The result is a tree of ``Node`` values (names, numbers, strings,
logical constants, calls, operators, parentheses); what a call may name is checked against
nnfit's closed function table before any data is touched (``functions.check``).

Operator precedence, highest first, as in R's ``?Syntax``::

    ^ (right to left)   unary - +   :   %in% %% %/%   * /   + -   < > <= >= == !=   !   &   |   ~

>>> formula = parse("log(y) ~ x + I(z^2) - 1")
>>> deparse(formula.lhs), deparse(formula.rhs)
('log(y)', 'x + I(z^2) - 1')
>>> parse("y ~ a$b")
Traceback (most recent call last):
...
nnfit.errors.FormulaError: The formula 'y ~ a$b' has '$' at position 5, which R's formula language does not allow here (attribute access, subscripts and blocks are code); nnfit reads formulas as data and never runs them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import FormulaError

MAX_FORMULA_LENGTH = 20_000
MAX_DEPTH = 100

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?L?)
  | (?P<name>(?:[A-Za-z][A-Za-z0-9._]*:::?)?(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]*)
  | (?P<backtick>`[^`]*`)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>%in%|%%|%/%|==|!=|<=|>=|\*\*|&&|\|\||[-+*/:^~(),=<>!&|])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_SYNTACTIC = re.compile(r"(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]*")
_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "in", "TRUE", "FALSE",
             "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_"}
# Binary operators: (left binding power, right binding power). Right-associative ^ binds its right
# operand less tightly than its left.
_BINARY = {
    "|": (2, 3), "||": (2, 3), "&": (4, 5), "&&": (4, 5),
    "==": (8, 9), "!=": (8, 9), "<": (8, 9), ">": (8, 9), "<=": (8, 9), ">=": (8, 9),
    "+": (10, 11), "-": (10, 11), "*": (12, 13), "/": (12, 13),
    "%in%": (14, 15), "%%": (14, 15), "%/%": (14, 15), ":": (16, 17), "^": (21, 20),
}
_UNARY = {"-": 18, "+": 18, "!": 6}
# How R's deparse spaces each binary operator.
_TIGHT = {"/", "^", ":", "%%", "%/%"}


@dataclass(frozen=True)
class Node:
    """One piece of a parsed formula: plain data, compared and hashed without its position.

    ``kind`` is one of name, number, string, logical, call, binary, unary, paren; ``value`` the
    name, number, string, flag, function name or operator; ``args`` the operands (for a call,
    its arguments, with their names in ``names``, None for a positional one).
    """

    kind: str
    value: object = None
    args: tuple = ()
    names: tuple = ()
    integer: bool = False
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)

    def to_data(self):
        """The node as nested JSON-ready lists (what a model file records)."""
        if self.kind in ("name", "string", "logical"):
            return [self.kind, self.value]
        if self.kind == "number":
            return ["number", self.value if math.isfinite(self.value) else repr(self.value), self.integer]
        if self.kind == "call":
            return ["call", self.value, [[n, a.to_data()] for n, a in zip(self.names, self.args)]]
        return [self.kind, self.value, [a.to_data() for a in self.args]]

    def walk(self):
        """This node and every node below it, depth first."""
        yield self
        for arg in self.args:
            yield from arg.walk()


@dataclass(frozen=True)
class Formula:
    """A parsed formula: ``lhs`` (None for a one-sided formula) and ``rhs``."""

    text: str
    lhs: Node | None
    rhs: Node

    def to_data(self):
        return {"lhs": None if self.lhs is None else self.lhs.to_data(), "rhs": self.rhs.to_data()}


def parse(text: str) -> Formula:
    """Parse an R formula (``response ~ predictors`` or ``~ predictors``) into a ``Formula``."""
    if not isinstance(text, str):
        raise FormulaError(f"A formula must be text such as 'y ~ x', not {type(text).__name__}.")
    if len(text) > MAX_FORMULA_LENGTH:
        raise FormulaError(f"The formula has {len(text)} characters; nnfit reads formulas of at most {MAX_FORMULA_LENGTH}.")
    parser = _Parser(text)
    if not parser.tokens:
        raise FormulaError("The formula is empty; write it as 'response ~ predictors'.")
    tree = parser.expression(0)
    if parser.index < len(parser.tokens):
        kind, token, pos = parser.tokens[parser.index]
        raise parser.error(token, pos, "where the formula should end")
    tildes = [node for node in _formula_level(tree) if node.kind in ("binary", "unary") and node.value == "~"]
    if not tildes:
        raise FormulaError(f"The formula {text!r} has no '~'; write it as 'response ~ predictors'.")
    top = tildes[0]
    if len(tildes) > 1 or top is not tree or any(n.value == "~" for a in top.args for n in a.walk() if n.kind in ("binary", "unary")):
        second = sorted(n.pos for n in tree.walk() if n.kind in ("binary", "unary") and n.value == "~")[1:2]
        where = f" (the second at position {second[0]})" if second else ""
        raise FormulaError(
            f"The formula {text!r} has more than one '~'{where}; a formula is one 'response ~ predictors'."
        )
    for node in _formula_level(top.args[-1]):
        if node.kind == "binary" and node.value in ("|", "||"):
            raise FormulaError(
                f"The formula {text!r} has '|' at position {node.pos}: random-effect and conditioning terms "
                "(as in lme4's (1 | g)) are not part of R's model.matrix, and nnfit does not read them."
            )
    lhs, rhs = (None, top.args[0]) if top.kind == "unary" else top.args
    return Formula(text, lhs, rhs)


def _formula_level(node: Node):
    """The nodes that R reads as formula operators: those outside any call."""
    yield node
    if node.kind in ("binary", "unary", "paren"):
        for arg in node.args:
            yield from _formula_level(arg)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = list(self._tokenize(text))
        self.index = 0
        self.depth = 0

    def _tokenize(self, text):
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                piece = re.match(r"[A-Za-z0-9_.]+|\[\[|.", text[position:], re.DOTALL).group()
                raise self.error(piece, position)
            kind = match.lastgroup
            if kind != "space":
                yield kind, match.group(), position
            position = match.end()

    def error(self, token, pos, where="here"):
        if token in ("$", "@", "[", "[[", "{", ";", "\\", "?", "#"):
            meaning = " (attribute access, subscripts and blocks are code)"
        else:
            meaning = ""
        return FormulaError(
            f"The formula {self.text!r} has {token!r} at position {pos}, which R's formula language does not "
            f"allow {where}{meaning}; nnfit reads formulas as data and never runs them."
        )

    def peek(self):
        return self.tokens[self.index] if self.index < len(self.tokens) else (None, None, len(self.text))

    def take(self, expected=None):
        kind, token, pos = self.peek()
        if kind is None:
            missing = f"{expected!r}" if expected else "more"
            raise FormulaError(f"The formula {self.text!r} ends too early: it needs {missing} at position {pos}.")
        if expected is not None and token != expected:
            raise self.error(token, pos, f"where {expected!r} should be")
        self.index += 1
        return kind, token, pos

    def expression(self, min_power: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError(f"The formula nests more than {MAX_DEPTH} levels deep; nnfit does not read it.")
        left = self.prefix()
        while True:
            kind, token, pos = self.peek()
            if kind != "op" or token in ("(", ")", ",", "=", "!"):
                if kind not in (None, "op"):
                    raise self.error(token, pos, "after a complete term (is an operator missing?)")
                break
            token = "^" if token == "**" else token
            if token == "~":
                power = (1, 1)
            elif token in _BINARY:
                power = _BINARY[token]
            else:
                raise self.error(token, pos)
            if power[0] < min_power:
                break
            self.index += 1
            right = self.expression(power[1])
            left = Node("binary", token, (left, right), pos=pos, end=right.end)
        self.depth -= 1
        return left

    def prefix(self) -> Node:
        kind, token, pos = self.take()
        if kind == "number":
            return _number(token, pos)
        if kind == "string":
            return Node("string", _unescape(token, self.text, pos), pos=pos, end=pos + len(token))
        if kind == "backtick":
            name = token[1:-1]
            if not name:
                raise FormulaError(f"The formula {self.text!r} has an empty name `` at position {pos}.")
            return self.after_name(name, pos, pos + len(token))
        if kind == "name":
            if token in ("TRUE", "FALSE"):
                return Node("logical", token == "TRUE", pos=pos, end=pos + len(token))
            if token in ("Inf", "NaN"):
                return Node("number", float(token.lower() if token == "NaN" else "inf"), pos=pos, end=pos + len(token))
            if token in _RESERVED:
                raise FormulaError(
                    f"The formula {self.text!r} has the R keyword {token!r} at position {pos}, which formulas "
                    "do not use (nnfit reads formulas as data and never runs them)."
                )
            return self.after_name(token, pos, pos + len(token))
        if token == "(":
            inner = self.expression(0)
            _, _, close = self.take(")")
            return Node("paren", None, (inner,), pos=pos, end=close + 1)
        if token == "~":
            operand = self.expression(1)
            return Node("unary", "~", (operand,), pos=pos, end=operand.end)
        if token in _UNARY:
            operand = self.expression(_UNARY[token])
            return Node("unary", token, (operand,), pos=pos, end=operand.end)
        raise self.error(token, pos)

    def after_name(self, name: str, pos: int, end: int) -> Node:
        kind, token, _ = self.peek()
        if token != "(":
            return Node("name", name, pos=pos, end=end)
        self.index += 1
        args, names = [], []
        if self.peek()[1] == ")":
            _, _, close = self.take(")")
            return Node("call", name, (), (), pos=pos, end=close + 1)
        while True:
            arg_name = None
            kind, token, at = self.peek()
            following = self.tokens[self.index + 1][1] if self.index + 1 < len(self.tokens) else None
            if kind in ("name", "backtick", "string") and following == "=":
                arg_name = token.strip("`\"'")
                self.index += 2
            args.append(self.expression(0))
            names.append(arg_name)
            if self.peek()[0] is None:
                self.take(")")
            kind, token, at = self.take()
            if token == ")":
                return Node("call", name, tuple(args), tuple(names), pos=pos, end=at + 1)
            if token != ",":
                raise self.error(token, at, "inside a call, where ',' or ')' should be")


def _number(token: str, pos: int) -> Node:
    integer = token.endswith("L")
    value = float(token[:-1] if integer else token)
    if integer and value != int(value):
        integer = False
    return Node("number", value, integer=integer, pos=pos, end=pos + len(token))


def _unescape(token: str, text: str, pos: int) -> str:
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            char = body[i + 1]
            if char not in _ESCAPES:
                raise FormulaError(f"The formula {text!r} has the escape '\\{char}' at position {pos + i + 1}, which nnfit does not read.")
            out.append(_ESCAPES[char])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------- deparsing
def deparse(node: Node) -> str:
    """The node as R's ``deparse`` writes it: the text R uses for model-matrix column names.

    >>> deparse(parse("y ~ I(1e-4*x) + poly(x,2,raw=TRUE) + `my var`").rhs)
    'I(1e-04 * x) + poly(x, 2, raw = TRUE) + `my var`'
    """
    kind = node.kind
    if kind == "name":
        return quote_name(node.value)
    if kind == "number":
        return r_number(node.value)  # R names columns without the L of integer literals
    if kind == "string":
        return r_string(node.value)
    if kind == "logical":
        return "TRUE" if node.value else "FALSE"
    if kind == "paren":
        return "(" + deparse(node.args[0]) + ")"
    if kind == "unary":
        return node.value + deparse(node.args[0])
    if kind == "binary":
        left, right = deparse(node.args[0]), deparse(node.args[1])
        return f"{left}{node.value}{right}" if node.value in _TIGHT else f"{left} {node.value} {right}"
    parts = [deparse(a) if n is None else f"{quote_name(n)} = {deparse(a)}" for n, a in zip(node.names, node.args)]
    return f"{quote_name(node.value)}({', '.join(parts)})"


def quote_name(name: str) -> str:
    """A name as R writes it: bare when syntactic (``splines::ns`` too), else in backticks."""
    parts = name.split("::") if re.fullmatch(r"[A-Za-z][A-Za-z0-9._]*::[^:].*", name) else [name]
    if all(_SYNTACTIC.fullmatch(part) and part not in _RESERVED for part in parts):
        return name
    return f"`{name}`"


def r_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def r_number(value: float) -> str:
    """A number as R prints it with 15 significant digits: '2', '0.5', '1e-04', '1e+05', '123456'.

    R picks fixed notation unless scientific notation is narrower (``options(scipen = 0)``).

    >>> [r_number(v) for v in (2.0, 0.5, 1e-4, 1e5, 123456.0, 0.00012, 1 / 3, -2.5)]
    ['2', '0.5', '1e-04', '1e+05', '123456', '0.00012', '0.333333333333333', '-2.5']
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    mantissa, exponent = f"{abs(value):.14e}".split("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    exponent = int(exponent)
    sign = "-" if value < 0 else ""
    nsig = len(digits)
    if exponent >= 0:
        decimals = max(0, nsig - exponent - 1)
        fixed_width = exponent + 1 + (decimals + 1 if decimals else 0)
    else:
        decimals = nsig - exponent - 1
        fixed_width = 2 + decimals
    sci_width = nsig + (1 if nsig > 1 else 0) + (5 if abs(exponent) >= 100 else 4)
    if fixed_width <= sci_width:
        return sign + f"{abs(value):.{decimals}f}"
    head = digits[0] + ("." + digits[1:] if nsig > 1 else "")
    return f"{sign}{head}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"

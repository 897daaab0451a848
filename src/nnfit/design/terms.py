"""R's ``terms()``: a parsed right-hand side expanded into variables and terms, as R expands it.

Each term is a set of variables; R's formula operators combine sets of terms: ``a + b`` joins,
``a:b`` crosses, ``a * b`` is ``a + b + a:b``, ``a %in% b`` adds all of b to each term of a,
``a / b`` is ``a + b %in% a``, ``(a + b)^2`` crosses up to two factors, ``- b`` removes, and
``0``/``1``/``-1`` set the intercept. Terms are then ordered by their number of variables,
keeping the formula's order within each degree; a term's variables follow the order in which
the formula first names them. ``.`` stands for every column that the response does not use.

>>> from nnfit.design.grammar import parse
>>> t = expand(parse("y ~ b:a + a + c %in% a + d/e"), columns=["y", "a", "b", "c", "d", "e"])
>>> t.labels
['a', 'd', 'b:a', 'a:c', 'd:e']
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormulaError, close_names
from .grammar import Formula, Node, deparse

_FORMULA_OPERATORS = {"+", "-", "*", "/", ":", "^", "%in%"}


@dataclass
class Terms:
    """The expanded right-hand side of a formula.

    ``variables`` are the expressions the formula names (removed ones too, since R's model
    frame keeps them and leaves out rows where they are missing), in R's order; ``terms``
    holds each term as a tuple of variable indices in that order; ``offsets`` the expressions
    inside ``offset()``; ``dot`` the columns that ``.`` stood for.
    """

    response: Node | None
    variables: list
    terms: list
    intercept: bool
    offsets: list
    dot: list

    @property
    def labels(self) -> list:
        """R's term labels: 'a', 'b:a', 'poly(x, 2)'."""
        return [":".join(deparse(self.variables[i]) for i in term) for term in self.terms]


def expand(formula: Formula, columns) -> Terms:
    """R's terms for ``formula``, with ``.`` standing for ``columns`` not used by the response."""
    response_names = names_in(formula.lhs) if formula.lhs is not None else set()
    dot = [str(c) for c in columns if str(c) not in response_names]
    expander = _Expander(formula.text, dot)
    terms = expander.encode(formula.rhs)
    ordered = sorted(dict.fromkeys(t for t in terms if t), key=len)
    variables = expander.variables
    # Within a term, variables follow their order in the formula.
    as_tuples = [tuple(sorted(term)) for term in ordered]
    return Terms(formula.lhs, variables, as_tuples, expander.intercept, expander.offsets,
                 dot if expander.used_dot else [])


class _Expander:
    def __init__(self, text: str, dot: list):
        self.text = text
        self.dot = dot
        self.variables: list = []
        self.offsets: list = []
        self.intercept = True
        self.parity = True
        self.used_dot = False

    def variable(self, node: Node) -> frozenset:
        if node not in self.variables:
            self.variables.append(node)
        return frozenset([self.variables.index(node)])

    def encode(self, node: Node) -> list:
        kind = node.kind
        if kind == "number":
            if node.value in (0.0, 1.0):
                self.intercept = (node.value == 1.0) == self.parity
                return []
            raise FormulaError(
                f"The formula {self.text!r} has the number {deparse(node)} at position {node.pos}, where only "
                "0 or 1 (the intercept) may stand; for a constant predictor write I(...)."
            )
        if kind == "paren":
            return self.encode(node.args[0])
        if kind == "name" and node.value == ".":
            self.used_dot = True
            if not self.dot:
                raise FormulaError(
                    f"The formula {self.text!r} uses '.', which stands for the columns other than the response, "
                    "but there are none."
                )
            return [self.variable(Node("name", name)) for name in self.dot]
        if kind == "call" and node.value in ("offset", "stats::offset"):
            if len(node.args) != 1 or node.names[0] is not None:
                raise FormulaError(f"offset() takes one argument, as in offset(log(exposure)); got {deparse(node)!r}.")
            if node.args[0] not in self.offsets:
                self.offsets.append(node.args[0])
            return []
        if kind == "unary" and node.value in ("+", "-"):
            if node.value == "+":
                return self.encode(node.args[0])
            self.parity = not self.parity
            self.encode(node.args[0])
            self.parity = not self.parity
            return []
        if kind == "binary" and node.value in _FORMULA_OPERATORS:
            op, (left, right) = node.value, node.args
            if op == "^":
                return self._power(left, right)
            lterms = self.encode(left)
            if op == "-":
                self.parity = not self.parity
                rterms = self.encode(right)
                self.parity = not self.parity
                return [t for t in lterms if t not in rterms]
            rterms = self.encode(right)
            if op == "+":
                return _unique(lterms + rterms)
            if op == ":":
                return _unique([a | b for a in lterms for b in rterms])
            if op == "*":
                return _unique(lterms + rterms + [a | b for a in lterms for b in rterms])
            if op == "%in%":
                everything = frozenset().union(*rterms) if rterms else frozenset()
                return _unique([t | everything for t in lterms])
            everything = frozenset().union(*lterms) if lterms else frozenset()  # a / b
            return _unique(lterms + [t | everything for t in rterms])
        if kind == "string":
            raise FormulaError(
                f"The formula {self.text!r} has the string {deparse(node)} at position {node.pos}, where a column or "
                "a term should be."
            )
        return [self.variable(node)]

    def _power(self, left: Node, right: Node) -> list:
        if right.kind != "number" or right.value < 1 or right.value != int(right.value):
            raise FormulaError(
                f"The formula {self.text!r} raises terms to {deparse(right)!r} at position {right.pos}; the power of "
                "terms must be a whole number such as 2 ((a + b + c)^2: all interactions of up to two). "
                "For the square of a variable write I(x^2)."
            )
        base = self.encode(left)
        result = list(base)
        for _ in range(int(right.value) - 1):
            result = _unique(result + [a | b for a in result for b in base])
        return result


def _unique(terms: list) -> list:
    return list(dict.fromkeys(terms))


def names_in(node: Node | None) -> set:
    """Column names an expression refers to (names outside the value position of a call's
    named literal arguments are all candidates)."""
    if node is None:
        return set()
    return {n.value for n in node.walk() if n.kind == "name" and n.value != "."}


def check_columns(names, columns, formula_text: str) -> None:
    """Every name the formula uses must be a column of the data."""
    known = [str(c) for c in columns]
    known_set = set(known)
    for name in names:
        if name not in known_set:
            raise FormulaError(
                f"The formula {formula_text!r} uses {name!r}, which is not a column of the data"
                f"{close_names(name, known)}."
            )

"""The formula grammar: R's operators and precedence, R's deparse, and formulas that would be code.

Every injection payload below would create a marker file if any part of nnfit evaluated the
formula as Python; each is refused with a FormulaError that quotes the piece and its position,
at fit time, through the command line, and inside a model file, and the marker never appears.
"""

import json
import os

import pytest

import nnfit as nf
from nnfit.design.grammar import Node, deparse, parse, r_number
from nnfit.errors import FormulaError, ModelFileError


def test_precedence_follows_r():
    tree = parse("y ~ -x^2").rhs
    assert (tree.kind, tree.value, tree.args[0].kind, tree.args[0].value) == ("unary", "-", "binary", "^")
    tree = parse("y ~ a + b:c * d").rhs  # ':' binds tighter than '*', which binds tighter than '+'
    assert deparse(tree.args[1]) == "b:c * d" and tree.args[1].value == "*"
    tree = parse("y ~ 2^3^2").rhs  # ^ is right-associative
    assert tree.args[1].kind == "binary" and tree.args[1].value == "^"
    tree = parse("y ~ I(!x == 1)").rhs.args[0]
    assert (tree.kind, tree.value) == ("unary", "!")


def test_deparse_spells_formulas_as_r_does():
    cases = {
        "y ~ I(x^2)": "I(x^2)",
        "y ~ exp(bill/10)": "exp(bill/10)",
        "y ~ I(x*2)": "I(x * 2)",
        "y ~ poly(x,2,raw=TRUE)": "poly(x, 2, raw = TRUE)",
        "y ~ relevel(x, ref='N')": 'relevel(x, ref = "N")',
        "y ~ I(year%%2)": "I(year%%2)",
        "y ~ I(x+1e5)": "I(x + 1e+05)",
        "y ~ I(1e-4*x)": "I(1e-04 * x)",
        "y ~ `my var`": "`my var`",
        "y ~ splines::ns(x, df = 3)": "splines::ns(x, df = 3)",
        "y ~ I(x^2L)": "I(x^2)",
    }
    for formula, expected in cases.items():
        assert deparse(parse(formula).rhs) == expected


def test_numbers_as_r_prints_them():
    assert [r_number(v) for v in (1e5, 1e6, 123456.0, 1234567.0, 1e-4, 0.00015, 1000.0, 1e15, 1e-15, 1 / 3)] == [
        "1e+05", "1e+06", "123456", "1234567", "1e-04", "0.00015", "1000", "1e+15", "1e-15", "0.333333333333333"]


def test_nodes_compare_without_positions_and_serialize_as_plain_data():
    a, b = parse("y ~ log(x)").rhs, parse("y ~   log( x )").rhs
    assert a == b and hash(a) == hash(b) and (a.pos, b.pos) == (4, 6)
    assert parse("y ~ poly(x, 2, raw = TRUE)").to_data() == {
        "lhs": ["name", "y"],
        "rhs": ["call", "poly", [[None, ["name", "x"]], [None, ["number", 2.0, False]], ["raw", ["logical", True]]]],
    }
    assert json.loads(json.dumps(parse("y ~ a:b + I('s')").to_data()))["rhs"][0] == "binary"
    assert isinstance(parse("y ~ x").rhs, Node)


@pytest.mark.parametrize("formula, message", [
    ("y ~ x ~ z", "The formula 'y ~ x ~ z' has more than one '~' (the second at position 6); a formula is one "
                  "'response ~ predictors'."),
    ("y ~ x | z", "The formula 'y ~ x | z' has '|' at position 6: random-effect and conditioning terms (as in "
                  "lme4's (1 | g)) are not part of R's model.matrix, and nnfit does not read them."),
    ("y ~ (1 | g)", "The formula 'y ~ (1 | g)' has '|' at position 7: random-effect and conditioning terms (as in "
                    "lme4's (1 | g)) are not part of R's model.matrix, and nnfit does not read them."),
    ("y ~ x +", "The formula 'y ~ x +' ends too early: it needs more at position 7."),
    ("y ~ log(x", "The formula 'y ~ log(x' ends too early: it needs ')' at position 9."),
    ("y ~ x z", "The formula 'y ~ x z' has 'z' at position 6, which R's formula language does not allow after a "
                "complete term (is an operator missing?); nnfit reads formulas as data and never runs them."),
    ("y ~ 3", "The formula 'y ~ 3' has the number 3 at position 4, where only 0 or 1 (the intercept) may stand; "
              "for a constant predictor write I(...)."),
    ("y ~ (a + b)^x", "The formula 'y ~ (a + b)^x' raises terms to 'x' at position 12; the power of terms must be a "
                      "whole number such as 2 ((a + b + c)^2: all interactions of up to two). For the square of a "
                      "variable write I(x^2)."),
    ("y", "The formula 'y' has no '~'; write it as 'response ~ predictors'."),
    ("", "The formula is empty; write it as 'response ~ predictors'."),
    ("~ x", "The formula '~ x' has no response on the left of '~'."),
])
def test_malformed_formulas_are_clear_errors(formula, message):
    with pytest.raises(FormulaError) as error:
        nf.Design(formula).fit(nf.datasets.load("penguins").rename(columns={"body_mass_g": "y", "bill_length_mm": "x"}).assign(z=1.0, a=1.0, b=2.0, g=1.0))
    assert str(error.value) == message


def test_deep_nesting_and_huge_formulas_are_refused_before_parsing_recursion():
    with pytest.raises(FormulaError, match="nests more than 100 levels deep"):
        parse("y ~ " + "(" * 5000 + "x" + ")" * 5000)
    with pytest.raises(FormulaError, match="^The formula has 20001 characters; nnfit reads formulas of at most 20000.$"):
        parse("y ~ x" + " " * 19996)


# ---------------------------------------------------------------------- injection
PAYLOADS = [
    "y ~ x + I(open('{m}', 'w').close() or 1)",
    "y ~ I(__import__('os').system('touch {m}'))",
    "y ~ max('touch {m}', 'x', key=np.testing._private.utils.os.system)",
    "y ~ I((lambda: open('{m}', 'w'))())",
    "y ~ I([open('{m}', 'w') for _ in [1]])",
    "y ~ I(f\"{{open('{m}', 'w')}}\")",
    "y ~ I(x.__class__.__bases__[0].__subclasses__())",
    "y ~ np.os.system('touch {m}')",
    "y ~ exec(\"open('{m}', 'w')\")",
    "y ~ eval(\"open('{m}', 'w')\")",
    "y ~ log(x, base = open('{m}', 'w'))",
    "y ~ poly(x, degree = __import__('os').system('touch {m}'))",
    "y ~ C(x, open('{m}', 'w'))",
    "y ~ {{open('{m}', 'w')}}",
    "y ~ x; open('{m}', 'w')",
    "y ~ x\nopen('{m}', 'w')",
    "y ~ I(getattr(__builtins__, 'open')('{m}', 'w'))",
    "y ~ I(x if open('{m}', 'w') else x)",
    "y ~ I(print(open('{m}', 'w')))",
    "y ~ I(globals()['__builtins__'])",
    "y ~ scale(x, center = lambda v: open('{m}', 'w'))",
    "y ~ I(x @ open('{m}', 'w'))",
    "y ~ I(x[open('{m}', 'w')])",
    "y ~ I(\"\\\"\" + open('{m}', 'w') + \"\\\"\")",
    "y ~ I('\\'' + open('{m}', 'w') + '\\'')",
    "y ~ `open`('{m}', 'w')",
    "y ~ Q('x') + open('{m}', 'w')",
    "y ~ I(os.system('touch {m}'))",
    "y ~ I(x := open('{m}', 'w'))",
    "y ~ I(*[open('{m}', 'w')])",
    "y ~ I(**{{'a': open('{m}', 'w')}})",
    "y ~ relevel(x, ref = open('{m}', 'w'))",
    "y ~ cut(x, breaks = c(open('{m}', 'w'), 2))",
    "open('{m}', 'w') ~ x",
    "cbind(y, open('{m}', 'w')) ~ x",
    "y ~ offset(open('{m}', 'w'))",
    "y ~ base::system('touch {m}')",
    "y ~ I(`__import__`('os').system('touch {m}'))",
    "y ~ factor(x, levels = __import__('os').listdir('.'))",
    "y ~ lag(x, n = (lambda: 1)())",
]


@pytest.fixture()
def frame():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    return pd.DataFrame({"y": rng.normal(size=20), "x": rng.uniform(1, 2, size=20)})


def payload(template, marker):
    return template.format(m=str(marker).replace("\\", "/"))


@pytest.mark.parametrize("template", PAYLOADS)
def test_injection_at_fit_time_is_refused_before_anything_runs(template, frame, tmp_path):
    marker = tmp_path / "marker"
    formula = payload(template, marker)
    with pytest.raises(FormulaError) as error:
        nf.Design(formula).fit(frame)
    assert not marker.exists()
    message = str(error.value)
    assert message.startswith(f"The formula {formula!r} ")
    assert "position" in message or "not a column" in message


@pytest.mark.parametrize("template", PAYLOADS[:12])
def test_injection_through_the_command_line_is_one_line_and_writes_nothing(template, frame, tmp_path, capsys):
    from nnfit import cli

    marker, data, out = tmp_path / "marker", tmp_path / "data.csv", tmp_path / "out"
    frame.to_csv(data, index=False)
    before = sorted(os.listdir(tmp_path))
    status = cli.main(["fit", str(data), payload(template, marker), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("nnfit: error: The formula ") and err.count("\n") == 1
    assert not marker.exists() and sorted(os.listdir(tmp_path)) == before


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import warnings

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(2)
    data = pd.DataFrame({"y": rng.normal(size=30), "x": rng.uniform(1, 2, size=30)})
    path = tmp_path_factory.mktemp("model") / "m.nnfit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nf.mlp("y ~ x", data, hidden=2, epochs=1, seed=1, verbose=False).save(path)
    return path


@pytest.mark.parametrize("template", PAYLOADS)
def test_injection_inside_a_model_file_is_refused_when_it_loads(template, saved, tmp_path):
    from nnfit import files

    marker = tmp_path / "marker"
    tensors, metadata = files.read(saved)
    formula = payload(template, marker)
    metadata["design"]["formula"] = formula
    metadata["settings"]["formula"] = formula
    edited = tmp_path / "edited.nnfit"
    files.write(edited, tensors, {k: v for k, v in metadata.items() if k not in ("format", "format_version")})
    with pytest.raises(ModelFileError) as error:
        nf.load(edited)
    assert not marker.exists()
    assert "The formula" in str(error.value) or "formula" in str(error.value)


def test_an_edited_parse_tree_must_match_its_formula(saved, tmp_path):
    from nnfit import files

    tensors, metadata = files.read(saved)
    metadata["design"]["parsed"]["rhs"] = ["name", "y"]
    edited = tmp_path / "edited.nnfit"
    files.write(edited, tensors, {k: v for k, v in metadata.items() if k not in ("format", "format_version")})
    with pytest.raises(ModelFileError, match="The saved design's field 'parsed' does not match its formula; the file was edited."):
        nf.load(edited)

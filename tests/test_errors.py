"""nnfit's errors and warnings: every warning it gives points at the user's line (errors.warn),
however deep inside nnfit it is raised."""

import inspect
import warnings

import nnfit as nf
from nnfit.errors import FormulaWarning, MissingValuesWarning


def caught_from(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return caught


def test_a_warning_from_deep_inside_a_fit_points_at_the_line_that_called_nnfit():
    penguins = nf.datasets.load("penguins")
    line = inspect.currentframe().f_lineno + 2
    caught = caught_from(
        lambda: nf.mlp("body_mass_g ~ body_mass_g + flipper_length_mm", data=penguins, hidden=2, epochs=1, seed=1,
                       verbose=False))
    assert [(w.category, w.filename, w.lineno) for w in caught] == [
        (FormulaWarning, __file__, line),  # raised in the design, several calls down
        (MissingValuesWarning, __file__, line),  # raised in nf.mlp's preparation of the rows
    ]
    assert str(caught[0].message) == ("The response 'body_mass_g' appears on the right-hand side of "
                                      "'body_mass_g ~ body_mass_g + flipper_length_mm'; it was dropped from the "
                                      "predictors, as R does.")


def test_the_same_warning_from_a_design_called_directly():
    penguins = nf.datasets.load("penguins")
    design = nf.Design("body_mass_g ~ flipper_length_mm").fit(penguins)
    line = inspect.currentframe().f_lineno + 1
    caught = caught_from(lambda: design.tensors(penguins))
    assert [(w.category, w.filename, w.lineno) for w in caught] == [(MissingValuesWarning, __file__, line)]
    assert str(caught[0].message) == "Left out 2 of 344 rows with a missing value (body_mass_g: 2, flipper_length_mm: 2)."


def test_nnfit_warns_through_one_function():
    import pathlib
    import re

    source = pathlib.Path(nf.__file__).parent
    calls = {str(path.relative_to(source)) for path in source.rglob("*.py")
             if re.search(r"\bwarnings\.warn\(", path.read_text())}
    assert calls == {"errors.py"}  # errors.warn: no stacklevel counted by hand anywhere else


def test_cross_validation_and_the_estimators_say_what_the_formula_dropped_too():
    from nnfit.sklearn import MLPRegressor

    penguins = nf.datasets.load("penguins").dropna()
    formula = "body_mass_g ~ body_mass_g + flipper_length_mm"
    line = inspect.currentframe().f_lineno + 2
    calls = [
        lambda: nf.cross_validate(formula, penguins, folds=2, hidden=2, epochs=1, seed=1, verbose=False),
        lambda: MLPRegressor(formula=formula, hidden=2, epochs=1, random_state=1).fit(penguins),
    ]
    for k, call in enumerate(calls):
        caught = caught_from(call)
        assert [(w.category, w.filename, w.lineno) for w in caught] == [(FormulaWarning, __file__, line + k)], k


def test_each_call_says_what_its_formula_dropped_once():
    penguins = nf.datasets.load("penguins").dropna()
    formula = "body_mass_g ~ body_mass_g + flipper_length_mm"
    calls = {
        "nf.mlp": lambda: nf.mlp(formula, data=penguins, hidden=2, epochs=1, seed=1, verbose=False),
        "cross_validate": lambda: nf.cross_validate(formula, penguins, folds=3, hidden=2, epochs=1, seed=1,
                                                    verbose=False),
        "grid, which fits each cell and then the best one again": lambda: nf.grid(
            formula, penguins, hidden=[2, 3], folds=2, epochs=1, seed=1, verbose=False),
    }
    for name, call in calls.items():
        caught = caught_from(call)  # every warning given, with the "always" filter
        assert [w.category for w in caught].count(FormulaWarning) == 1, name  # as R's lm() says it, once a call


def test_a_warning_points_outside_nnfit_however_the_path_to_nnfit_was_written(tmp_path):
    import pathlib
    import subprocess
    import sys

    src = pathlib.Path(nf.__file__).resolve().parents[1]
    script = tmp_path / "user.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(src / '..' / src.name)!r})  # a path with '..', as a notebook may add\n"
        "import warnings\nimport nnfit as nf\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    nf.Design('body_mass_g ~ body_mass_g + flipper_length_mm').fit(nf.datasets.load('penguins'))\n"
        "print(nf.__file__)\nprint(caught[0].filename, caught[0].lineno)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported, where = done.stdout.splitlines()
    assert ".." in imported  # nnfit was imported by the path with '..'
    assert where == f"{script} 7"

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

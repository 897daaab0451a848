"""Every public name has a docstring with a runnable example (STYLE: "A docstring on every public
name, with a runnable example"). The examples themselves run as tests: ``--doctest-modules`` in
pyproject.toml collects them from every module of src/nnfit."""

import importlib
import inspect

import pytest

import nnfit

# The modules nnfit exports, the modules that hold the names it exports, and the fitted objects
# users get back from them.
MODULES = sorted({module for module, _ in nnfit._EXPORTS.values()} | {
    "nnfit.design.design", "nnfit.train.vectorized", "nnfit.train.many", "nnfit.train.hooks", "nnfit.train.divergence",
    "nnfit.train.prediction", "nnfit.scores", "nnfit.folds", "nnfit.intervals", "nnfit.report", "nnfit.streaming"})

# Public names that have no example yet, each with the reason; this list only ever shrinks.
WITHOUT_EXAMPLE = {
}


def public_names(module):
    """The classes and functions a module defines (not imports) whose names have no leading underscore."""
    exported = getattr(module, "__all__", None)
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if value.__module__ == module.__name__ or (exported is not None and name in exported):
            yield name, value


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_has_a_runnable_example(module_name):
    if module_name == "nnfit.sklearn":
        pytest.importorskip("sklearn")
    module = importlib.import_module(module_name)
    missing = [
        f"{module_name}.{name}"
        for name, value in public_names(module)
        if ">>>" not in (value.__doc__ or "") and f"{module_name}.{name}" not in WITHOUT_EXAMPLE
    ]
    assert missing == []

"""Settings for every test and docstring example. ``make test`` collects ``tests/`` and, with
``--doctest-modules`` (pyproject.toml), the docstring examples of every module in ``src/nnfit``."""

import importlib.util
import os
import sys

import pytest
import torch

# Tiny networks are far faster on one thread; tests and examples need no more.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")

# scikit-learn is optional (``pip install -e ".[test]"`` installs it): without it nnfit.sklearn
# cannot be imported, and the labs' examples (their lasso baselines) cannot run.
_HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
collect_ignore = [] if _HAS_SKLEARN else ["src/nnfit/sklearn.py"]


@pytest.fixture(autouse=True)
def _doctest_in_a_scratch_folder(request):
    """A docstring example runs in an empty temporary folder: a file it writes never lands in the repository."""
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    if not _HAS_SKLEARN and request.node.dtest.globs.get("__name__", "").startswith("nnfit.labs"):
        pytest.skip("the labs need scikit-learn")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.chdir(request.getfixturevalue("tmp_path"))
    yield
    if "matplotlib.pyplot" in sys.modules:  # the figures an example drew
        sys.modules["matplotlib.pyplot"].close("all")

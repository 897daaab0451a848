import warnings

import pytest

# One torch thread and matplotlib's Agg backend are set for tests and docstring examples alike
# in the repository's conftest.py.


@pytest.fixture(scope="session")
def penguins():
    import nnfit as nf

    return nf.datasets.load("penguins")


@pytest.fixture(scope="session")
def lab_split(penguins):
    """The R lab's data: NA rows and year dropped, 80/20 split with seed 1."""
    import nnfit as nf

    return nf.split(penguins.dropna().drop(columns="year"), prop=0.8, seed=1)


@pytest.fixture()
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

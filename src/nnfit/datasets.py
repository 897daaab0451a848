"""Data sets bundled with nnfit, read offline from the package."""

from __future__ import annotations

from importlib import resources

from .errors import ArgumentError

# name -> (file, description, factor columns with R's level order)
_DATASETS = {
    "penguins": (
        "penguins.csv",
        "Palmer Archipelago penguins (palmerpenguins, CC0): 344 rows, 8 columns, with missing values.",
        {
            "species": ["Adelie", "Chinstrap", "Gentoo"],
            "island": ["Biscoe", "Dream", "Torgersen"],
            "sex": ["female", "male"],
        },
    ),
}


def names() -> list[str]:
    """Names of the bundled data sets.

    >>> import nnfit as nf
    >>> nf.datasets.names()
    ['penguins']
    """
    return sorted(_DATASETS)


def describe() -> dict[str, str]:
    """A one-line description of each bundled data set."""
    return {name: _DATASETS[name][1] for name in names()}


def load(name: str):
    """Load a bundled data set as a pandas DataFrame, factors as pandas Categorical.

    Levels follow R's order (alphabetical, as ``factor()`` makes them); missing values are NaN.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins")
    >>> penguins.shape
    (344, 8)
    >>> list(penguins["species"].cat.categories)
    ['Adelie', 'Chinstrap', 'Gentoo']
    """
    import pandas as pd

    if name not in _DATASETS:
        raise ArgumentError(f"Unknown data set {name!r}; bundled data sets: {', '.join(names())}.")
    filename, _, factors = _DATASETS[name]
    with resources.files("nnfit").joinpath("data", filename).open("r") as handle:
        frame = pd.read_csv(handle, na_values=["NA"], keep_default_na=False)
    for column, levels in factors.items():
        frame[column] = pd.Categorical(frame[column], categories=levels)
    for column in frame.columns:
        if column not in factors and frame[column].dtype.kind == "i":
            frame[column] = frame[column].astype("int64")
    return frame


def read(source):
    """A data frame from a bundled data set's name, or a CSV or Parquet file's path.

    CSV columns of text become factors when a formula uses them; "NA" and empty cells are
    missing values. Parquet (read with pyarrow) keeps every column's type, and a pandas
    Categorical keeps its levels in their order.

    >>> import nnfit as nf
    >>> penguins = nf.read("penguins")   # or nf.read("penguins.parquet"), nf.read("data.csv")
    >>> penguins.shape
    (344, 8)
    """
    import os

    import pandas as pd

    from .errors import DataError

    source = str(source)
    if source in _DATASETS:
        return load(source)
    if not os.path.exists(source):
        raise DataError(f"No data file {source!r}, and no bundled data set of that name ({', '.join(names())}).")
    if os.path.isdir(source):
        raise DataError(f"{source!r} is a directory; give a CSV or Parquet file.")
    try:
        if source.lower().endswith((".parquet", ".pq")):
            return pd.read_parquet(source)
        frame = pd.read_csv(source)
    except ImportError as error:
        raise DataError(f"Cannot read {source!r}: {error}") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"Cannot read {source!r} as {'Parquet' if source.lower().endswith(('.parquet', '.pq')) else 'CSV'}: {error}") from None
    _check_header(source)
    return frame


def _check_header(source: str) -> None:
    """pandas renames a repeated CSV column 'a' to 'a.1'; say so instead of failing later on 'a.1'."""
    import csv

    from .errors import DataError

    with open(source, newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    repeated = [name for i, name in enumerate(header) if name in header[:i]]
    if repeated:
        raise DataError(
            f"{source!r} has more than one column named {repeated[0]!r}; rename them so that each column "
            "has its own name."
        )

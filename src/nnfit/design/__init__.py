"""The design: from a data frame and an R formula to model matrices and tensors.

``grammar`` parses R's formula language into plain data, ``terms`` expands it into R's terms,
``functions`` is the closed table of R functions a formula may call, ``frame`` evaluates the
variables and builds R's model matrix, and ``design`` holds ``Design``, which learns all of it
from training data and re-applies it to new data.
"""

from .design import (  # noqa: F401
    EMBED_LEVELS,
    Design,
    Matrices,
    column_stats,
    scaling,
    as_pandas,
    is_polars,
    warn_left_out,
)

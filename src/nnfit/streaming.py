"""Data larger than memory: a folder of Parquet files, read in chunks, as ``nf.mlp`` trains on it.

``ParquetFolder`` checks a folder's files before anything is trained (regular files only, every
footer's declared sizes against the file's size, one schema for all) and reads them in chunks
of at most ``chunk_rows`` rows, only the columns a formula needs. ``prepare`` fits the design
in two streaming passes (``Design.fit_chunks``: the levels, then the merged column moments)
and returns a ``Streamed`` source: the training loop's data, which reads the files in a
shuffled order each epoch, shuffles rows within a buffer of ``buffer_rows`` rows and encodes
each chunk exactly as ``mlpfit.prepare`` encodes a data frame in memory. At no time does it
hold more than about ``chunk_rows + buffer_rows`` rows. See docs/streaming.md.

>>> import tempfile, nnfit as nf
>>> from nnfit.streaming import write_parts
>>> folder = write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=3)
>>> prepared = prepare("body_mass_g ~ flipper_length_mm + sex", folder, chunk_rows=50, buffer_rows=100)
>>> prepared.task, prepared.n_rows, prepared.n_left_out, prepared.design.columns
('regression', 333, 11, ['flipper_length_mm', 'sexmale'])
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass

from .design import Design
from .errors import ArgumentError, DataError, MissingValuesWarning

MAGIC = b"PAR1"
MAX_EXPANSION = 1000  # a column chunk may declare at most this many bytes uncompressed per byte it holds
CHUNK_ROWS = 65_536
BUFFER_ROWS = 262_144


class ParquetFolder:
    """The ``*.parquet`` files of a folder, checked once, read in chunks of rows.

    The files are taken in sorted order; each must be a regular file (a symbolic link or
    anything else is refused), its footer's sizes must fit in the file (the footer, each
    column chunk's place and its uncompressed size, at most ``MAX_EXPANSION`` times what it
    holds), and every file must have the same columns with the same types (a dictionary
    column counts as its values' type). Row counts come from the footers; no data is read.
    ``largest_chunk_`` is the most rows any chunk read so far has held.

    >>> import tempfile, nnfit as nf
    >>> from nnfit.streaming import ParquetFolder, write_parts
    >>> folder = ParquetFolder(write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=4))
    >>> [os.path.basename(f) for f in folder.files], folder.n_rows
    (['part-0.parquet', 'part-1.parquet', 'part-2.parquet', 'part-3.parquet'], 344)
    >>> [len(chunk) for chunk in folder.chunks(["sex", "body_mass_g"], chunk_rows=40)][:4]
    [40, 40, 6, 40]
    """

    def __init__(self, path):
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise DataError(f"{path!r} is not a folder; give a folder of .parquet files.")
        self.path = path
        names = sorted(name for name in os.listdir(path) if name.endswith(".parquet"))
        if not names:
            raise DataError(f"The folder {path!r} holds no .parquet files.")
        self.files, self.sizes, rows, schemas = [], [], [], []
        for name in names:
            full = os.path.join(path, name)
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                raise DataError(
                    f"{name!r} in {path!r} is a symbolic link; nnfit reads only regular files inside the folder "
                    "(copy the file in instead)."
                )
            if not stat.S_ISREG(info.st_mode):
                raise DataError(f"{name!r} in {path!r} is not a regular file; remove it or rename it.")
            with _open(full, name, info.st_size) as handle:
                metadata, schema = _footer(handle, name, info.st_size)
            self.files.append(full)
            self.sizes.append(info.st_size)
            rows.append(metadata.num_rows)
            schemas.append(schema)
        self.rows_per_file = rows
        self.n_rows = sum(rows)
        self.columns = _agreed_columns(names, schemas)
        self.largest_chunk_ = 0

    def __repr__(self):
        return f"ParquetFolder({self.path!r}): {len(self.files)} files, {self.n_rows} rows, {len(self.columns)} columns"

    def chunks(self, columns=None, chunk_rows: int = CHUNK_ROWS, order=None):
        """pandas frames of at most ``chunk_rows`` rows: the files in ``order`` (indices; all of them,
        sorted, by default), only ``columns`` (all by default); dictionary columns come as text.

        A file whose rows disagree with its footer, or that changed since the folder was
        checked, is a ``DataError``.

        >>> import tempfile, nnfit as nf
        >>> from nnfit.streaming import ParquetFolder, write_parts
        >>> folder = ParquetFolder(write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=2))
        >>> first = next(folder.chunks(["species"], chunk_rows=3, order=[1]))
        >>> first["species"].tolist()
        ['Gentoo', 'Gentoo', 'Gentoo']
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        chunk_rows = _positive("chunk_rows", chunk_rows)
        columns = list(self.columns) if columns is None else list(columns)
        absent = [c for c in columns if c not in self.columns]
        if absent:
            raise DataError(f"The files in {self.path!r} have no column {absent[0]!r}.")
        for index in range(len(self.files)) if order is None else order:
            index = int(index)
            name = os.path.basename(self.files[index])
            read = 0
            with _open(self.files[index], name, self.sizes[index]) as handle:
                try:
                    batches = pq.ParquetFile(handle).iter_batches(batch_size=chunk_rows, columns=columns)
                    for batch in batches:
                        arrays = [a.dictionary_decode() if pa.types.is_dictionary(a.type) else a for a in batch.columns]
                        frame = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names).to_pandas()
                        read += len(frame)
                        self.largest_chunk_ = max(self.largest_chunk_, len(frame))
                        if len(frame):
                            yield frame
                except (OSError, ValueError, pa.ArrowException) as error:
                    raise DataError(f"Cannot read the rows of {name!r}: {error}") from None
            if read != self.rows_per_file[index]:
                raise DataError(
                    f"File {name!r} declares {self.rows_per_file[index]} rows in its footer but holds {read}; "
                    "the file is corrupted."
                )


class Streamed:
    """The training loop's data over a ``ParquetFolder``: encoded batches, never all rows at once.

    Each epoch reads the files in an order drawn from the loop's generator, encodes each chunk
    with the fitted ``design`` (rows with a missing value left out, as in ``Design.transform``),
    and shuffles rows within a buffer: once it holds ``buffer_rows`` rows it is permuted, and
    batches are cut from it until half of it is left to mix with the next chunks. X is float32
    (the design's inputs, embedded factors' codes last); y float32 (n, k) for a numeric
    response, int64 class codes for a factor, as ``mlpfit.prepare`` gives them. ``len()`` is
    the number of rows used (counted when the design was fitted). ``largest_buffer_rows_`` is
    the most rows the buffer has held (below ``buffer_rows + chunk_rows``).

    >>> import tempfile, torch, nnfit as nf
    >>> from nnfit.streaming import prepare, write_parts
    >>> folder = write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=3)
    >>> data = prepare("species ~ bill_length_mm", folder, chunk_rows=64, buffer_rows=128).data
    >>> len(data), data.n_batches(100)
    (342, 4)
    >>> [(tuple(x.shape), y.dtype) for x, y in data.batches(100, shuffle=True, generator=torch.Generator())][-1]
    ((42, 1), torch.int64)
    """

    def __init__(self, folder: ParquetFolder, design: Design, n_rows: int, chunk_rows: int = CHUNK_ROWS,
                 buffer_rows: int = BUFFER_ROWS, device=None):
        self.folder, self.design, self.n_rows = folder, design, int(n_rows)
        self.chunk_rows = _positive("chunk_rows", chunk_rows)
        self.buffer_rows = _positive("buffer_rows", buffer_rows)
        self.device = device
        self.largest_buffer_rows_ = 0

    def __len__(self):
        return self.n_rows

    def __repr__(self):
        return f"Streamed({self.folder.path!r}): {self.n_rows} rows, chunks of {self.chunk_rows}, buffer of {self.buffer_rows}"

    def to(self, device) -> "Streamed":
        """The same source, its batches moved to ``device``.

        >>> import tempfile, nnfit as nf
        >>> from nnfit.streaming import prepare, write_parts
        >>> data = prepare("body_mass_g ~ sex", write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp())).data
        >>> data.to("cpu").device
        'cpu'
        """
        return Streamed(self.folder, self.design, self.n_rows, self.chunk_rows, self.buffer_rows, device)

    def n_batches(self, batch_size, drop_last: bool = False):
        """Batches in an epoch, as ``InMemory`` counts them for ``len(self)`` rows.

        >>> import tempfile, nnfit as nf
        >>> from nnfit.streaming import prepare, write_parts
        >>> data = prepare("body_mass_g ~ sex", write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp())).data
        >>> data.n_batches(100), data.n_batches(100, drop_last=True)
        (4, 3)
        """
        size = self._batch_size(batch_size)
        n = len(self)
        return n // size if drop_last and n >= size else -(-n // size)

    def batches(self, batch_size, shuffle: bool, generator=None, drop_last: bool = False):
        """(x, y) tensor pairs of ``batch_size`` rows (the last may be smaller, unless ``drop_last``).

        >>> import tempfile, torch, nnfit as nf
        >>> from nnfit.streaming import prepare, write_parts
        >>> data = prepare("body_mass_g ~ sex", write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp())).data
        >>> [len(x) for x, _ in data.batches(100, shuffle=False)]
        [100, 100, 100, 33]
        """
        import torch

        size = self._batch_size(batch_size)
        if shuffle and size > self.buffer_rows:
            raise ArgumentError(
                f"batch_size ({size}) is larger than buffer_rows ({self.buffer_rows}); a shuffled batch is drawn from "
                "the buffer, so give a buffer of at least one batch."
            )
        n_files = len(self.folder.files)
        order = torch.randperm(n_files, generator=generator).tolist() if shuffle else range(n_files)
        names = self.design.response + self.design.predictors
        factor = self.design.response_kind == "factor"
        X = y = None
        seen = 0
        for frame in self.folder.chunks(names, self.chunk_rows, order):
            m = self.design.transform(frame, response=True)
            seen += len(m.y)
            x_new = torch.as_tensor(m.inputs(), dtype=torch.float32)
            y_new = torch.as_tensor(m.y, dtype=torch.int64 if factor else torch.float32)
            X, y = (x_new, y_new) if X is None else (torch.cat([X, x_new]), torch.cat([y, y_new]))
            self.largest_buffer_rows_ = max(self.largest_buffer_rows_, len(X))
            if not shuffle:
                n_out = len(X) - len(X) % size
            elif len(X) >= self.buffer_rows:
                permutation = torch.randperm(len(X), generator=generator)
                X, y = X[permutation], y[permutation]
                n_out = max((len(X) - self.buffer_rows // 2) // size * size, size)
            else:
                continue
            yield from self._cut(X[:n_out], y[:n_out], size)
            X, y = X[n_out:], y[n_out:]
        if seen != self.n_rows:
            raise DataError(
                f"The files in {self.folder.path!r} gave {seen} rows this epoch, but {self.n_rows} when the design was "
                "fitted; they changed during training."
            )
        if X is None or not len(X):
            return
        if shuffle:
            permutation = torch.randperm(len(X), generator=generator)
            X, y = X[permutation], y[permutation]
        if drop_last and self.n_rows >= size:
            keep = len(X) - len(X) % size
            X, y = X[:keep], y[:keep]
        yield from self._cut(X, y, size)

    def _cut(self, X, y, size):
        for start in range(0, len(X), size):
            x_batch, y_batch = X[start: start + size], y[start: start + size]
            if self.device is not None:
                x_batch, y_batch = x_batch.to(self.device), y_batch.to(self.device)
            yield x_batch, y_batch

    @staticmethod
    def _batch_size(batch_size) -> int:
        if batch_size is None:
            raise ArgumentError("Streamed data needs a batch_size: the whole folder as one batch would not fit in memory.")
        return _positive("batch_size", batch_size)


@dataclass
class Prepared:
    """A formula's streamed training data: ``mlpfit.Prepared`` without the tensors.

    ``design``, ``task`` ('regression', 'binary' or 'multiclass'), ``n_outputs`` and
    ``n_left_out`` are as in ``mlpfit.Prepared``; instead of X and y, ``data`` is the
    ``Streamed`` source for the training loop, and ``n_rows`` the number of rows it gives
    per epoch. There is no ``offset`` or ``rows`` (no per-row arrays are kept).

    >>> import tempfile, nnfit as nf
    >>> from nnfit.streaming import prepare, write_parts
    >>> prepared = prepare("species ~ bill_length_mm", write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp()))
    >>> prepared.task, prepared.n_outputs, prepared.n_rows, prepared.n_left_out
    ('multiclass', 3, 342, 2)
    """

    design: Design
    task: str
    n_outputs: int
    data: Streamed
    n_rows: int
    n_left_out: int


def prepare(formula: str, folder, scale=True, chunk_rows: int = CHUNK_ROWS, buffer_rows: int = BUFFER_ROWS,
            embed=None, unknown: str = "error") -> Prepared:
    """Fit the design on a folder of Parquet files in two streaming passes, as ``mlpfit.prepare``
    fits it on a data frame (the same columns, levels and scaling), and return the ``Streamed``
    source. Rows with a missing value are left out, with one ``MissingValuesWarning``.

    ``folder`` is a path or a ``ParquetFolder``. Calls whose learned state needs the whole
    column at once (``poly()``, ``ns()``/``bs()`` without knots, ``cut(x, 3)``, ``scale()``,
    ``factor()`` without levels, ``lag()``) are a ``FormulaError`` saying what to write instead.

    >>> import tempfile, nnfit as nf
    >>> from nnfit.streaming import prepare, write_parts
    >>> folder = write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=3)
    >>> prepare("body_mass_g ~ poly(flipper_length_mm, 2)", folder)
    Traceback (most recent call last):
    ...
    nnfit.errors.FormulaError: The formula 'body_mass_g ~ poly(flipper_length_mm, 2)' calls poly(flipper_length_mm, 2), whose orthogonal basis ...
    """
    source = folder if isinstance(folder, ParquetFolder) else ParquetFolder(folder)
    chunk_rows, buffer_rows = _positive("chunk_rows", chunk_rows), _positive("buffer_rows", buffer_rows)
    design = Design(formula, scale=scale, scale_response=True, intercept=False, embed=embed, unknown=unknown)
    needed = design.columns_needed(source.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingValuesWarning)
        design.fit_chunks(lambda: source.chunks(needed, chunk_rows), source.columns)
    if design.n_left_out_:
        summary = ", ".join(f"{name}: {count}" for name, count in design.missing_by_column_.items())
        warnings.warn(
            f"Left out {design.n_left_out_} of {design.n_rows_ + design.n_left_out_} rows with a missing value ({summary}).",
            MissingValuesWarning, stacklevel=2,
        )
    if design.response_kind == "numeric":
        task, n_outputs = "regression", len(design.response_columns)
    else:
        task = "binary" if len(design.levels) == 2 else "multiclass"
        n_outputs = 1 if task == "binary" else len(design.levels)
    data = Streamed(source, design, design.n_rows_, chunk_rows, buffer_rows)
    return Prepared(design, task, n_outputs, data, design.n_rows_, design.n_left_out_)


def write_parts(frame, folder, n_files: int = 2, row_group_rows=None) -> str:
    """Write a data frame into ``n_files`` Parquet files of consecutive rows (part-0.parquet, ...)
    in ``folder``, text and categorical columns as text; returns the folder. For examples and tests.

    >>> import tempfile, nnfit as nf
    >>> from nnfit.streaming import write_parts
    >>> folder = write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=2)
    >>> sorted(os.listdir(folder))
    ['part-0.parquet', 'part-1.parquet']
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = frame.copy()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    os.makedirs(folder, exist_ok=True)
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), _positive("n_files", n_files))):
        table = pa.Table.from_pandas(frame.iloc[rows], preserve_index=False)
        pq.write_table(table, os.path.join(folder, f"part-{k}.parquet"), row_group_size=row_group_rows)
    return os.fspath(folder)


# ---------------------------------------------------------------------- checks
def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(f"{name} must be a whole number of at least 1, not {value!r}.")
    return value


def _open(path: str, name: str, size: int):
    """The file, opened without following a link, that must still be the regular file of ``size`` bytes checked."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise DataError(f"Cannot open {name!r}: {error.strerror}.") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
        os.close(fd)
        raise DataError(f"File {name!r} changed since its folder was checked; read the folder again.")
    return os.fdopen(fd, "rb")


def _footer(handle, name: str, size: int):
    """The file's metadata and arrow schema, every size the footer declares checked against the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if size < 12:
        raise DataError(f"File {name!r} holds {size} bytes, too few for a Parquet file; it is truncated or not Parquet.")
    head = handle.read(4)
    handle.seek(size - 8)
    tail = handle.read(8)
    if tail[4:] == b"PARE":
        raise DataError(f"File {name!r} is an encrypted Parquet file; nnfit reads only unencrypted files.")
    if head != MAGIC or tail[4:] != MAGIC:
        raise DataError(f"File {name!r} does not begin and end with 'PAR1'; it is truncated or not a Parquet file.")
    length = int.from_bytes(tail[:4], "little")
    data_end = size - 8 - length
    if data_end < 4:
        raise DataError(
            f"File {name!r} declares a footer of {length} bytes, but holds only {size} bytes; the file is corrupted."
        )
    handle.seek(0)
    try:
        reader = pq.ParquetFile(handle)
        metadata, schema = reader.metadata, reader.schema_arrow
    except (OSError, ValueError, pa.ArrowException) as error:
        raise DataError(f"Cannot read the footer of {name!r}: {error}") from None
    total = 0
    for r in range(metadata.num_row_groups):
        group = metadata.row_group(r)
        if group.num_rows < 0:
            raise DataError(f"File {name!r} declares {group.num_rows} rows in row group {r}; the file is corrupted.")
        total += group.num_rows
        for c in range(group.num_columns):
            chunk = group.column(c)
            starts = [chunk.data_page_offset] + ([chunk.dictionary_page_offset] if chunk.has_dictionary_page else [])
            start, held = min(s for s in starts if s is not None), chunk.total_compressed_size
            if start < 4 or held < 0 or start + held > data_end:
                raise DataError(
                    f"File {name!r} declares column {chunk.path_in_schema!r} of row group {r} at bytes {start} to "
                    f"{start + held}, outside the {data_end} bytes of data the file holds; the file is corrupted."
                )
            if chunk.total_uncompressed_size > MAX_EXPANSION * max(held, 1):
                raise DataError(
                    f"File {name!r} declares {chunk.total_uncompressed_size} bytes uncompressed for column "
                    f"{chunk.path_in_schema!r} of row group {r}, more than {MAX_EXPANSION} times the {held} bytes it "
                    "holds; nnfit refuses it as a decompression bomb (rewrite the file with another compression)."
                )
    if total != metadata.num_rows:
        raise DataError(
            f"File {name!r} declares {metadata.num_rows} rows, but its row groups {total}; the file is corrupted."
        )
    return metadata, schema


def _agreed_columns(names, schemas) -> list:
    """The column names all files share, in the first file's order; any difference is an error naming it."""
    import pyarrow as pa

    def types(schema, name):
        out = {}
        for field in schema:
            if field.name in out:
                raise DataError(f"File {name!r} has more than one column named {field.name!r}; rename them.")
            kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
            out[field.name] = kind
        return out

    first = types(schemas[0], names[0])
    for name, schema in zip(names[1:], schemas[1:]):
        other = types(schema, name)
        for column, kind in first.items():
            if column not in other:
                raise DataError(
                    f"File {name!r} has no column {column!r}, which {names[0]!r} has; every file in the folder must "
                    "have the same columns."
                )
            if other[column] != kind:
                raise DataError(
                    f"Column {column!r} is {kind} in {names[0]!r} but {other[column]} in {name!r}; every file in the "
                    "folder must give a column the same type."
                )
        extra = [column for column in other if column not in first]
        if extra:
            raise DataError(
                f"File {name!r} has the column {extra[0]!r}, which {names[0]!r} does not have; every file in the "
                "folder must have the same columns."
            )
    return list(first)

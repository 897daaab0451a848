"""Data larger than memory: Parquet files or a polars LazyFrame, read in chunks, as ``nf.mlp`` trains on it.

A source (``is_source``) is a folder of ``.parquet`` files, one such file, a list of them, a
``pyarrow.dataset`` of Parquet files or a polars ``LazyFrame``. ``Source`` checks it before
anything is trained (for files: regular files only, every footer's declared sizes against the
file's size, one schema for all) and reads it by groups of rows (a file's row groups, which
the footers list; a LazyFrame is written once to a temporary Parquet file), in chunks of
at most ``chunk_rows`` rows, only the columns a formula needs. ``prepare`` fits the design in
two streaming passes (``Design.fit_chunks``: the levels, then the merged column moments) and
returns a ``Streamed`` source: the training loop's data, which visits the groups in a seeded
random order each epoch, shuffles rows within a buffer of ``buffer_rows`` rows and encodes
each chunk exactly as ``mlpfit.prepare`` encodes a data frame in memory; ``Streamed.shard``
gives each of several processes its own groups. At no time does it hold more than about
``chunk_rows + buffer_rows`` rows. ``predict_to_parquet`` and ``evaluate_streamed`` predict
and score a fitted ``nf.mlp`` model on a source the same way. See docs/streaming.md.

>>> import tempfile, nnfit as nf
>>> from nnfit.streaming import write_parts
>>> folder = write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=3)
>>> prepared = prepare("body_mass_g ~ flipper_length_mm + sex", folder, chunk_rows=50, buffer_rows=100)
>>> prepared.task, prepared.n_rows, prepared.n_left_out, prepared.design.columns
('regression', 333, 11, ['flipper_length_mm', 'sexmale'])
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref
import stat
from dataclasses import dataclass

import numpy as np

from .design import Design, Matrices, as_pandas, warn_left_out
from .errors import ArgumentError, DataError, MissingValuesWarning, warn
from .files import create_temporary, remove_temporaries
from .scores import Scores, classification_scores, score

MAGIC = b"PAR1"
MAX_EXPANSION = 1000  # a column chunk may declare at most this many bytes uncompressed per byte it holds
CHUNK_ROWS = 65_536
BUFFER_ROWS = 262_144
GROUP_ROWS = 65_536  # the row groups of a LazyFrame's temporary Parquet file


def is_source(data) -> bool:
    """Whether ``data`` is streamed rather than read into memory: a folder (any directory: one
    without ``.parquet`` files is then an error that names it), the path of one ``.parquet`` file
    (present or not: a missing one is then an error that names it), a non-empty list or tuple of
    such paths, a ``pyarrow.dataset.Dataset``, a polars ``LazyFrame``, or a ``Source``. A data
    frame, a CSV path, tensors and anything else are not. It looks at ``type(data).__module__``
    first, so neither pyarrow nor polars is imported to answer for other objects.

    >>> import tempfile, nnfit as nf
    >>> penguins = nf.datasets.load("penguins")
    >>> is_source(tempfile.mkdtemp()), is_source(["a.parquet", "b.parquet"]), is_source("a.parquet")
    (True, True, True)
    >>> is_source(penguins), is_source("penguins.csv"), is_source([]), is_source(("x.parquet", 3))
    (False, False, False, False)
    """
    module = type(data).__module__.split(".")[0]
    if module == "polars":
        import polars as pl

        return isinstance(data, pl.LazyFrame)
    if module == "pyarrow":
        import pyarrow.dataset as ds

        return isinstance(data, ds.Dataset)
    if isinstance(data, Source):
        return True
    if isinstance(data, (list, tuple)):
        return len(data) > 0 and all(_is_parquet_path(item) for item in data)
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        return isinstance(path, str) and (_is_parquet_path(path) or os.path.isdir(path))
    return False


def _is_parquet_path(item) -> bool:
    if not isinstance(item, (str, os.PathLike)):
        return False
    path = os.fspath(item)
    return isinstance(path, str) and path.lower().endswith(".parquet")


class Source:
    """A source's rows (see ``is_source``), checked once, read by groups in chunks of rows.

    Files (a folder's ``*.parquet`` files in sorted order, one file, a list of files, or a
    ``pyarrow.dataset.FileSystemDataset`` of Parquet files on the local disk, whose ``.files``
    are read) are checked as they are given: each must be a regular file (a symbolic link or
    anything else is refused), its footer's sizes must fit in the file (the footer, each column
    chunk's place and its uncompressed size, at most ``MAX_EXPANSION`` times what it holds),
    and every file must have the same columns with the same types (a dictionary column counts
    as its values' type). Its groups are the files' non-empty row groups, in order; row counts
    come from the footers and no data is read. A polars ``LazyFrame`` is never collected
    whole: its query runs once in polars' streaming engine into a temporary Parquet file of
    row groups of ``group_rows`` rows, read like any file and removed with the source; a
    Categorical column is read as text (an Enum keeps its levels). ``groups`` lists
    (file, row group) pairs, ``group_rows_`` their row counts. ``largest_chunk_`` is the most rows any chunk read so far has held.

    >>> import tempfile, nnfit as nf
    >>> from nnfit.streaming import Source, write_parts
    >>> source = Source(write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=4, row_group_rows=50))
    >>> source.n_rows, len(source.groups), source.columns[:2]
    (344, 8, ['species', 'island'])
    >>> source.group_rows_
    [50, 36, 50, 36, 50, 36, 50, 36]
    >>> [len(chunk) for chunk in source.chunks(["sex", "body_mass_g"], chunk_rows=40)][:4]
    [40, 10, 36, 40]
    """

    def __init__(self, data, group_rows: int = GROUP_ROWS):
        self.group_rows = _positive("group_rows", group_rows)
        self.largest_chunk_ = 0
        self.files, self.names, self.sizes, self.metadata, self.enum_levels = [], [], [], [], {}
        self.identities = []  # each file's _identity when it was checked: every later opening must find it again
        module = type(data).__module__.split(".")[0]
        if module == "polars" and type(data).__name__ == "LazyFrame":
            self._from_lazy(data)
            return
        if module == "pyarrow":
            paths, names, self.what = _dataset_files(data), None, "the dataset's files"
            self._from_files(paths, paths, folder=False)
            extra = [name for name in data.schema.names if name not in self.columns]
            if extra:
                raise DataError(
                    f"The dataset's column {extra[0]!r} is not in its files (it comes from their paths, a partitioning); "
                    f"nnfit streams the files' own columns: write {extra[0]!r} into the files, or pass the files' paths."
                )
            return
        elif isinstance(data, (list, tuple)):
            paths = [os.fspath(item) for item in data]
            if not paths:
                raise DataError("The list of files is empty; give at least one .parquet file.")
            not_parquet = [p for p in paths if not _is_parquet_path(p)]
            if not_parquet:
                raise DataError(f"{not_parquet[0]!r} in the list of files does not end in .parquet; list only "
                                "Parquet files.")
            names, self.what = None, f"the {len(paths)} listed files" if len(paths) > 1 else f"the file {paths[0]!r}"
        elif isinstance(data, (str, os.PathLike)) and os.path.isdir(data):
            path = os.fspath(data)
            listed = sorted(name for name in os.listdir(path) if name.endswith(".parquet"))
            if not listed:
                raise DataError(f"The folder {path!r} holds no .parquet files.")
            paths, names = [os.path.join(path, name) for name in listed], listed
            self.what = f"the folder {path!r}"
            self.path = path
        elif _is_parquet_path(data):
            paths, names, self.what = [os.fspath(data)], None, f"the file {os.fspath(data)!r}"
        else:
            raise DataError(
                f"{data!r} is neither a folder, a .parquet file, a list of .parquet files, a pyarrow Dataset "
                "nor a polars LazyFrame; give one of those (see nnfit.streaming.is_source)."
            )
        self._from_files(paths, names or paths, folder=names is not None)

    def _from_files(self, paths, names, folder: bool):
        schemas, seen = [], {}
        for full, name in zip(paths, names):
            where = f"{name!r} in {self.path!r}" if folder else repr(name)
            try:
                info = os.lstat(full)
            except OSError as error:
                raise DataError(f"Cannot find the file {name!r} ({error.strerror}); check the path.") from None
            if stat.S_ISLNK(info.st_mode):
                fix = ("copy the file in instead" if folder else
                       f"give the path of the file itself, {os.path.realpath(full)!r}")
                raise DataError(f"{where} is a symbolic link; nnfit reads only regular files ({fix}).")
            if not stat.S_ISREG(info.st_mode):
                raise DataError(f"{where} is not a regular file; remove it or rename it.")
            if (info.st_dev, info.st_ino) in seen:
                raise DataError(f"{name!r} is the same file as {seen[info.st_dev, info.st_ino]!r}; list each file once.")
            seen[info.st_dev, info.st_ino] = name
            with _open(full, name, _identity(info)) as handle:  # the file lstat saw, not one put there since
                metadata, schema = _footer(handle, name, info.st_size)
            self.files.append(full)
            self.names.append(name)
            self.sizes.append(info.st_size)
            self.identities.append(_identity(info))
            self.metadata.append(metadata)
            schemas.append(schema)
        self.columns = _agreed_columns(self.names, schemas, "every file in the folder" if folder else "every file")
        self.groups, self.group_rows_ = [], []
        for f, metadata in enumerate(self.metadata):
            for r in range(metadata.num_row_groups):
                rows = metadata.row_group(r).num_rows
                if rows:
                    self.groups.append((f, r))
                    self.group_rows_.append(rows)
        self.n_rows = sum(self.group_rows_)

    def _from_lazy(self, frame):
        """A LazyFrame is written once, by polars' streaming engine, to a temporary Parquet file
        (row groups of ``group_rows`` rows; removed with this source), which every pass then reads:
        a query re-run for each pass need not give its rows in the same order (a ``group_by``
        does not), and one run costs one pass. An Enum column keeps its levels' order."""
        import polars as pl

        try:
            schema = frame.collect_schema()
            self.enum_levels = {name: [str(level) for level in dtype.categories]
                                for name, dtype in schema.items() if isinstance(dtype, pl.Enum)}
            folder = tempfile.mkdtemp(prefix="nnfit-lazyframe-")
            weakref.finalize(self, shutil.rmtree, folder, True)
            path = os.path.join(folder, "rows.parquet")
            frame.sink_parquet(path, row_group_size=self.group_rows)
        except pl.exceptions.PolarsError as error:
            raise DataError(f"Cannot read the LazyFrame: {error}") from None
        self._from_files([path], ["the LazyFrame's rows"], folder=False)
        self.what = "the LazyFrame"

    def __repr__(self):
        return f"Source: {self.what}: {self.n_rows} rows, {len(self.columns)} columns in {len(self.groups)} groups"

    def chunks(self, columns=None, chunk_rows: int = CHUNK_ROWS, groups=None):
        """pandas frames of at most ``chunk_rows`` rows: the groups in ``groups`` (indices into
        ``self.groups``; all of them, in order, by default), only ``columns`` (all by default);
        dictionary columns come as text. A chunk never spans two groups.

        A group whose rows disagree with its footer, or a file that changed since it was
        checked, is a ``DataError``.

        >>> import tempfile, nnfit as nf
        >>> from nnfit.streaming import Source, write_parts
        >>> source = Source(write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=2))
        >>> first = next(source.chunks(["species"], chunk_rows=3, groups=[1]))
        >>> first["species"].tolist()
        ['Gentoo', 'Gentoo', 'Gentoo']
        """
        import pandas as pd

        chunk_rows = _positive("chunk_rows", chunk_rows)
        columns = list(self.columns) if columns is None else list(columns)
        absent = [c for c in columns if c not in self.columns]
        if absent:
            raise DataError(f"There is no column {absent[0]!r} in {self.what}.")
        groups = range(len(self.groups)) if groups is None else [int(g) for g in groups]
        enums = {name: levels for name, levels in self.enum_levels.items() if name in columns}
        for frame in self._file_chunks(columns, chunk_rows, groups):
            self.largest_chunk_ = max(self.largest_chunk_, len(frame))
            for name, levels in enums.items():  # a LazyFrame's Enum: its levels, in its order
                frame[name] = pd.Categorical(frame[name], categories=levels)
            if len(frame):
                yield frame

    def _file_chunks(self, columns, chunk_rows, groups):
        import pyarrow as pa
        import pyarrow.parquet as pq

        for f, run in itertools.groupby(groups, key=lambda g: self.groups[g][0]):  # one opening per run of a file
            name = self.names[f]
            with _open(self.files[f], name, self.identities[f]) as handle:
                try:
                    reader = pq.ParquetFile(handle, metadata=self.metadata[f])  # the footer as it was checked
                except (OSError, ValueError, pa.ArrowException) as error:
                    raise DataError(f"Cannot read the rows of {name!r}: {error}") from None
                for g in run:
                    r, read = self.groups[g][1], 0
                    try:
                        for batch in reader.iter_batches(batch_size=chunk_rows, row_groups=[r], columns=columns,
                                                         use_threads=False):
                            arrays = [a.dictionary_decode() if pa.types.is_dictionary(a.type) else a
                                      for a in batch.columns]
                            batch = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
                            frame = batch.to_pandas(split_blocks=True, use_threads=False)
                            read += len(frame)
                            yield frame
                    except (OSError, ValueError, pa.ArrowException) as error:
                        raise DataError(f"Cannot read the rows of {name!r}: {error}") from None
                    if read != self.group_rows_[g]:
                        raise DataError(
                            f"File {name!r} declares {self.group_rows_[g]} rows in row group {r} of its footer but "
                            f"holds {read}; the file is corrupted."
                        )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _dataset_files(data) -> list:
    """The local Parquet files of a pyarrow Dataset, or the error saying what nnfit streams instead."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    if not isinstance(data, ds.FileSystemDataset) or not isinstance(data.format, ds.ParquetFileFormat):
        kind = getattr(data.format, "default_extname", "") if isinstance(data, ds.FileSystemDataset) else ""
        raise DataError(
            f"nnfit streams a pyarrow Dataset of Parquet files (pyarrow.dataset.dataset(path, format='parquet')); "
            f"this one is a {type(data).__name__}{' of ' + kind + ' files' if kind else ''}. Write the data as Parquet, "
            "or read it into memory with nf.read()."
        )
    if not isinstance(data.filesystem, pafs.LocalFileSystem):
        raise DataError(
            f"The dataset's files are on a {data.filesystem.type_name} file system; nnfit streams only files on the "
            "local disk (copy them there, or pass a polars LazyFrame that scans them)."
        )
    if (getattr(data, "_scan_options", None) or {}).get("filter") is not None:
        raise DataError(
            "The dataset has a filter (dataset.filter(...)), and nnfit streams its files whole, every row of them; "
            "write the rows you want to their own Parquet files, or pass a polars LazyFrame that filters them."
        )
    return list(data.files)


class Streamed:
    """The training loop's data over a ``Source``: encoded batches, never all rows at once.

    Each epoch visits the source's groups (row groups) in an order drawn from the loop's
    generator, encodes each chunk with the fitted ``design`` (rows with a missing value left
    out, as in ``Design.transform``), and shuffles rows within a buffer: once it holds
    ``buffer_rows`` rows, batches of rows drawn from it at random are given until half of it
    is left to mix with the next chunks. X is float32 (the design's inputs, embedded factors' codes
    last); y float32 (n, k) for a numeric response, int64 class codes for a factor, as
    ``mlpfit.prepare`` gives them. ``len()`` is the number of rows used (counted when the
    design was fitted). ``largest_buffer_rows_`` is the most rows the buffer has held (below
    ``buffer_rows + chunk_rows``). ``shard(rank, world)`` is one process's share.

    >>> import tempfile, torch, nnfit as nf
    >>> from nnfit.streaming import prepare, write_parts
    >>> folder = write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=3)
    >>> data = prepare("species ~ bill_length_mm", folder, chunk_rows=64, buffer_rows=128).data
    >>> len(data), data.n_batches(100)
    (342, 4)
    >>> [(tuple(x.shape), y.dtype) for x, y in data.batches(100, shuffle=True, generator=torch.Generator())][-1]
    ((42, 1), torch.int64)
    """

    def __init__(self, source: Source, design: Design, n_rows: int, chunk_rows: int = CHUNK_ROWS,
                 buffer_rows: int = BUFFER_ROWS, device=None, rank: int = 0, world: int = 1):
        self.source, self.design, self.n_rows = source, design, int(n_rows)
        self.chunk_rows = _positive("chunk_rows", chunk_rows)
        self.buffer_rows = _positive("buffer_rows", buffer_rows)
        self.device, self.rank, self.world = device, rank, world
        self.largest_buffer_rows_ = 0

    def __len__(self):
        return self.n_rows

    def __repr__(self):
        share = f", rank {self.rank} of {self.world}" if self.world > 1 else ""
        return (f"Streamed({self.source.what}): {self.n_rows} rows, chunks of {self.chunk_rows}, buffer of "
                f"{self.buffer_rows}{share}")

    def _like(self, **changes) -> "Streamed":
        given = dict(device=self.device, rank=self.rank, world=self.world) | changes
        return Streamed(self.source, self.design, self.n_rows, self.chunk_rows, self.buffer_rows, **given)

    def to(self, device) -> "Streamed":
        """The same source, its batches moved to ``device``.

        >>> import tempfile, nnfit as nf
        >>> from nnfit.streaming import prepare, write_parts
        >>> data = prepare("body_mass_g ~ sex", write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp())).data
        >>> data.to("cpu").device
        'cpu'
        """
        return self._like(device=device)

    def shard(self, rank: int, world: int) -> "Streamed":
        """Process ``rank``'s share of ``world`` processes: a view of the same source that reads
        only its own groups. Each epoch every process draws the same group order from the
        generator it is given (give each the same seed), and rank r reads the groups at places
        r, r + world, r + 2 * world, ... of that order. Every process gives ``n_batches``
        batches, the most that the process with the fewest rows can fill whatever the order
        (counted from the footers, without reading): the rows a process has beyond them are
        left out of that epoch (other rows each epoch, as the order is drawn again). ``len()``
        stays the whole data's row count.

        >>> import tempfile, torch, nnfit as nf
        >>> from nnfit.streaming import prepare, write_parts
        >>> folder = write_parts(nf.datasets.load("penguins").dropna(), tempfile.mkdtemp(), n_files=4)
        >>> data = prepare("body_mass_g ~ sex", folder).data
        >>> halves = [data.shard(r, 2) for r in (0, 1)]
        >>> [h.n_batches(32) for h in halves], len(halves[1])
        ([6, 6], 333)
        >>> [len(list(h.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1)))) for h in halves]
        [6, 6]
        """
        for name, value in (("rank", rank), ("world", world)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ArgumentError(f"{name} must be a whole number, not {value!r}.")
        if world < 1 or not 0 <= rank < world:
            raise ArgumentError(f"rank must lie from 0 to world - 1 and world be at least 1, not rank={rank}, world={world}.")
        groups = len(self.source.groups)
        if groups < world:
            raise DataError(
                f"There are {groups} row groups in {self.source.what}, fewer than the {world} processes; each process "
                f"reads its own row groups: write the data in at least {world} row groups (smaller row groups, or more files)."
            )
        shard = self._like(rank=rank, world=world)
        if shard._fillable_rows() < 1:
            raise DataError(
                f"Some of the {world} processes may get no rows from {self.source.what} once the "
                f"{self.source.n_rows - self.n_rows} rows with a missing value are counted out; drop those rows when "
                "writing the files, or use fewer processes."
            )
        return shard

    def _fillable_rows(self) -> int:
        """The rows the process with the fewest is sure to have in any epoch: all rows for one process;
        for several, the smallest row groups a process can get, less every row left out for a missing value."""
        if self.world == 1:
            return self.n_rows
        smallest = sorted(self.source.group_rows_)[: len(self.source.groups) // self.world]
        return sum(smallest) - (self.source.n_rows - self.n_rows)

    def n_batches(self, batch_size, drop_last: bool = False):
        """Batches in an epoch, as ``InMemory`` counts them for ``len(self)`` rows (for a shard, for the
        rows every process can fill).

        >>> import tempfile, nnfit as nf
        >>> from nnfit.streaming import prepare, write_parts
        >>> data = prepare("body_mass_g ~ sex", write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp())).data
        >>> data.n_batches(100), data.n_batches(100, drop_last=True)
        (4, 3)
        """
        size = self._batch_size(batch_size)
        n = self._fillable_rows()
        return n // size if drop_last and n >= size else -(-n // size)

    def batches(self, batch_size, shuffle: bool, generator=None, drop_last: bool = False):
        """(x, y) tensor pairs of ``batch_size`` rows (the last may be smaller, unless ``drop_last``).

        A shuffled epoch draws the group order from ``generator`` (``randperm``), then one number
        that seeds the buffer's own draws (plus the rank), so every process takes the
        same amount from ``generator`` and draws the same order next epoch.

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
        n_groups = len(self.source.groups)
        if shuffle:
            order = torch.randperm(n_groups, generator=generator).tolist()
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            mixer = torch.Generator().manual_seed(seed + self.rank)
        else:
            order, mixer = list(range(n_groups)), None
        # Several processes: every one must yield exactly n_batches (the gradients are averaged at
        # each step), so a shard cuts no batch itself and the count below decides, whole batches
        # for drop_last included (n_batches counts what the fewest rows can fill).
        epoch = self._epoch(order[self.rank:: self.world], size, mixer, drop_last and self.world == 1)
        if self.world == 1:
            yield from epoch
            return
        yield from itertools.islice(epoch, self.n_batches(size, drop_last))  # equal steps on every process
        epoch.close()

    def _epoch(self, groups, size, mixer, drop_last):
        """The epoch's batches from ``groups``: in order without ``mixer``; with it, through the buffer."""
        import torch

        X = y = None  # unshuffled: the rows short of a batch, carried to the next chunk
        buffer = None
        seen = 0
        for x_new, y_new in self._encoded(groups):
            seen += len(y_new)
            if mixer is None:
                X, y = (x_new, y_new) if X is None else (torch.cat([X, x_new]), torch.cat([y, y_new]))
                n_out = len(X) - len(X) % size
                yield from self._cut(X[:n_out], y[:n_out], size)
                X, y = X[n_out:], y[n_out:]
                continue
            if buffer is None:
                buffer = _Buffer(self.buffer_rows + self.chunk_rows, x_new, y_new)
            buffer.add(x_new, y_new)
            self.largest_buffer_rows_ = max(self.largest_buffer_rows_, buffer.rows)
            while buffer.rows >= self.buffer_rows:  # emit all but half of it, in whole batches, drawn at random
                n_out = max((buffer.rows - self.buffer_rows // 2) // size * size, size)
                yield from self._moved(buffer.draw(n_out, size, mixer))
        if self.world == 1 and seen != self.n_rows:
            raise DataError(
                f"{_capital(self.source.what)} gave {seen} rows this epoch, but {self.n_rows} when the design was "
                "fitted; they changed during training."
            )
        if buffer is not None:
            n_out = buffer.rows - buffer.rows % size if drop_last and self.n_rows >= size else buffer.rows
            yield from self._moved(buffer.draw(n_out, size, mixer))
            return
        if X is None or not len(X):
            return
        if drop_last and self.n_rows >= size:
            keep = len(X) - len(X) % size
            X, y = X[:keep], y[:keep]
        yield from self._cut(X, y, size)

    def _encoded(self, groups):
        """(x, y) tensors of each chunk of ``groups``, in order."""
        import torch

        names = self.design.response + self.design.predictors
        factor = self.design.response_kind == "factor"
        for frame in self.source.chunks(names, self.chunk_rows, groups):
            m = self.design.transform(frame, response=True)
            yield (torch.as_tensor(m.inputs(), dtype=torch.float32),
                   torch.as_tensor(m.y, dtype=torch.int64 if factor else torch.float32))

    def _cut(self, X, y, size):
        yield from self._moved((X[start: start + size], y[start: start + size]) for start in range(0, len(X), size))

    def _moved(self, batches):
        for x_batch, y_batch in batches:
            if self.device is not None:
                x_batch, y_batch = x_batch.to(self.device), y_batch.to(self.device)
            yield x_batch, y_batch

    @staticmethod
    def _batch_size(batch_size) -> int:
        if batch_size is None:
            raise ArgumentError("Streamed data needs a batch_size: all rows as one batch would not fit in memory.")
        return _positive("batch_size", batch_size)


class _Buffer:
    """The shuffle buffer: rows in tensors of ``capacity`` rows, allocated once an epoch.
    ``draw(n, size)`` takes n rows uniformly at random, in random order, gathered a batch of
    ``size`` at a time (no copy of all n at once), then moves rows from the end into the
    places they left: each row is copied in once, out once and moved at most once."""

    def __init__(self, capacity: int, x, y):
        import torch

        self.X = torch.empty((capacity, *x.shape[1:]), dtype=x.dtype)
        self.y = torch.empty((capacity, *y.shape[1:]), dtype=y.dtype)
        self.rows = 0

    def add(self, x, y) -> None:
        self.X[self.rows: self.rows + len(x)] = x
        self.y[self.rows: self.rows + len(y)] = y
        self.rows += len(x)

    def draw(self, n: int, size: int, generator):
        import torch

        chosen = torch.randperm(self.rows, generator=generator)[:n]
        for start in range(0, n, size):  # the chosen rows stay in place until all are out
            rows = chosen[start: start + size]
            yield self.X[rows], self.y[rows]
        rest = self.rows - n
        holes = chosen[chosen < rest]  # places below the kept end that the drawn rows left
        kept = torch.ones(n, dtype=torch.bool)
        kept[chosen[chosen >= rest] - rest] = False
        movers = kept.nonzero().reshape(-1) + rest  # rows beyond the kept end that stay
        self.X[holes], self.y[holes] = self.X[movers], self.y[movers]
        self.rows = rest


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


def prepare(formula: str, source, scale=True, chunk_rows: int = CHUNK_ROWS, buffer_rows: int = BUFFER_ROWS,
            embed=None, unknown: str = "error") -> Prepared:
    """Fit the design on a source (``is_source``: Parquet files or a polars LazyFrame) in two
    streaming passes, as ``mlpfit.prepare`` fits it on a data frame (the same columns, levels
    and scaling), and return the ``Streamed`` source. Rows with a missing value are left out,
    with one ``MissingValuesWarning``.

    ``source`` may also be a ``Source``. Calls whose learned state needs the whole column at
    once (``poly()``, ``ns()``/``bs()`` without knots, ``cut(x, 3)``, ``scale()``, ``factor()``
    without levels, ``lag()``) are a ``FormulaError`` saying what to write instead.

    >>> import tempfile, nnfit as nf
    >>> from nnfit.streaming import prepare, write_parts
    >>> folder = write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=3)
    >>> prepare("body_mass_g ~ poly(flipper_length_mm, 2)", folder)
    Traceback (most recent call last):
    ...
    nnfit.errors.FormulaError: The formula 'body_mass_g ~ poly(flipper_length_mm, 2)' calls poly(flipper_length_mm, 2), whose orthogonal basis ...
    """
    source = source if isinstance(source, Source) else Source(source)
    chunk_rows, buffer_rows = _positive("chunk_rows", chunk_rows), _positive("buffer_rows", buffer_rows)
    design = Design(formula, scale=scale, scale_response=True, intercept=False, embed=embed, unknown=unknown)
    needed = design.columns_needed(source.columns)
    design.fit_chunks(lambda: source.chunks(needed, chunk_rows), source.columns)  # the rows left out: said below
    if design.n_left_out_:
        summary = ", ".join(f"{name}: {count}" for name, count in design.missing_by_column_.items())
        warn(f"Left out {design.n_left_out_} of {design.n_rows_ + design.n_left_out_} rows with a missing value ({summary}).",
             MissingValuesWarning)
    if design.response_kind == "numeric":
        task, n_outputs = "regression", len(design.response_columns)
    else:
        task = "binary" if len(design.levels) == 2 else "multiclass"
        n_outputs = 1 if task == "binary" else len(design.levels)
    data = Streamed(source, design, design.n_rows_, chunk_rows, buffer_rows)
    return Prepared(design, task, n_outputs, data, design.n_rows_, design.n_left_out_)


# ---------------------------------------------------------------------- a fitted model on a source
def predict_to_parquet(fit, source, out, type=None, chunk_rows: int = CHUNK_ROWS, **options) -> str:
    """Write ``fit.predict(rows, type=type, **options)`` for every row of ``source`` to the Parquet
    file ``out``, in the source's order; return ``out``.

    ``fit`` is a fitted ``nf.mlp`` model (``MLPFit``); ``type=None`` is its default, as for
    ``predict``. The source is read in chunks of at most ``chunk_rows`` rows, only the columns
    the formula's predictors use; each chunk's predictions are written as they come, so the
    file equals ``fit.predict(whole_frame, type=type)`` row for row (a row's prediction does not
    depend on the rows read with it; a row with a missing predictor gets a missing value, as
    there) without the rows ever being in memory together. The columns are the prediction's:
    one named after the response for a Series, the frame's own otherwise; labels are a
    dictionary column of the levels in order, so ``pandas`` reads them back as the same
    Categorical. The file is written to a temporary file beside ``out`` and renamed onto it
    once complete, so ``out`` never holds part of the predictions; it gets the user's umask.
    An ``out`` that exists already is refused: nnfit never replaces a file it did not write.

    >>> import os, tempfile, nnfit as nf
    >>> import pyarrow.parquet as pq
    >>> from nnfit.streaming import predict_to_parquet, write_parts
    >>> penguins = nf.datasets.load("penguins")
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=penguins.dropna(), hidden=3, epochs=2,
    ...              seed=1, verbose=False)
    >>> folder = tempfile.mkdtemp()
    >>> out = predict_to_parquet(fit, write_parts(penguins, os.path.join(folder, "in"), n_files=3),
    ...                          os.path.join(folder, "mass.parquet"), chunk_rows=100)
    >>> written = pq.read_table(out).to_pandas()["body_mass_g"]
    >>> len(written), bool(abs(written - fit.predict(penguins)).max() < 1e-9), int(written.isna().sum())
    (344, True, 11)
    """
    import pandas as pd
    import pyarrow.parquet as pq

    out = os.fspath(out)
    _refuse_existing(out)
    source = source if isinstance(source, Source) else Source(source)
    absent = [name for name in fit.design.predictors if name not in source.columns]
    if absent:
        raise DataError(f"There is no column {absent[0]!r} in {source.what}, which the model's formula uses.")
    if source.n_rows == 0:
        raise DataError(f"There are no rows to predict in {source.what}.")
    handle, temporary = _temporary_beside(out)
    try:
        with os.fdopen(handle, "wb") as stream:
            writer = None
            for frame in source.chunks(fit.design.predictors, chunk_rows):
                predicted = fit.predict(frame, type=type, **options)
                if isinstance(predicted, pd.Series):
                    predicted = predicted.to_frame(predicted.name if predicted.name is not None else "prediction")
                table = _arrow_table(predicted)
                if writer is None:
                    writer = pq.ParquetWriter(stream, table.schema)
                writer.write_table(table)
            writer.close()
            stream.flush()
            os.fsync(stream.fileno())
        _publish(temporary, out)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    return out


def evaluate_streamed(fit, source, chunk_rows: int = CHUNK_ROWS):
    """``fit.evaluate(whole_frame)`` for the rows of ``source``, read in chunks: the same Scores
    (keys, values, ``n``, ``n_left_out``, a classifier's ``confusion`` and ``by_class``).

    Each chunk is encoded with the fit's design (response included) and predicted with
    ``fit.predict`` (in the response's units, or a classifier's probabilities); the scores
    (R², AUC) need all predictions at once, so the per-row predictions and true values of the
    rows scored are kept (8 bytes per row and output, twice) and scored at the end with the
    functions ``evaluate`` uses (``nnfit.scores.score``, ``classification_scores``); the
    source's other columns never are. Rows left out for a missing value are counted and
    warned about once, as ``evaluate`` does.

    >>> import tempfile, warnings, nnfit as nf
    >>> from nnfit.streaming import evaluate_streamed, write_parts
    >>> penguins = nf.datasets.load("penguins")
    >>> fit = nf.mlp("species ~ bill_length_mm + flipper_length_mm", data=penguins.dropna(), hidden=3, epochs=2,
    ...              seed=1, verbose=False)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     streamed = evaluate_streamed(fit, write_parts(penguins, tempfile.mkdtemp(), n_files=3), chunk_rows=50)
    ...     whole = fit.evaluate(penguins)
    >>> streamed == whole, streamed.n, streamed.n_left_out
    (True, 342, 2)
    """
    source = source if isinstance(source, Source) else Source(source)
    design = fit.design
    absent = [name for name in design.response if name not in source.columns]
    if absent:
        raise DataError(f"evaluate needs the response: there is no column {absent[0]!r} in {source.what}.")
    regression = fit.task == "regression"
    predictions, truths, n_rows, n_left_out, missing = [], [], 0, 0, {}
    for frame in source.chunks(design.response + design.predictors, chunk_rows):
        matrices = design.transform(frame, response=True)
        n_rows += len(frame)
        n_left_out += matrices.n_left_out
        for label, count in matrices.missing_by_column.items():
            missing[label] = missing.get(label, 0) + count
        if not len(matrices.y):
            continue
        predicted = fit.predict(frame, type="response" if regression else "prob")
        predictions.append(np.asarray(predicted, dtype=np.float64).reshape(len(frame), -1)[matrices.rows])
        truths.append(design.unscale_response(matrices.y, matrices.offset) if regression else matrices.y)
    warn_left_out(Matrices(None, None, None, n_left_out, missing), n_rows)
    if not predictions:
        raise DataError("No rows to score: every row has a missing value.")
    mean, truth = np.concatenate(predictions), np.concatenate(truths)
    if regression:
        return Scores(score(mean, truth, fit.task), n=len(truth), n_left_out=n_left_out)
    scores = classification_scores(mean, truth, design.levels, fit.threshold)
    scores.n_left_out = n_left_out
    return scores


def _arrow_table(frame):
    """A pandas frame of predictions as an arrow table whose types do not depend on the chunk:
    float64 numbers, labels as a dictionary of all levels, nullable booleans as booleans; a
    missing prediction is null (pandas reads it back as NaN, polars as null, as their predict gives)."""
    import pandas as pd
    import pyarrow as pa

    names, arrays = [], []
    for name in frame.columns:
        column = frame[name]
        names.append("_".join(map(str, name)) if isinstance(name, tuple) else str(name))
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy().astype(np.int32)
            indices = pa.array(codes, mask=codes < 0, type=pa.int32())
            arrays.append(pa.DictionaryArray.from_arrays(indices, pa.array(list(column.cat.categories))))
        elif isinstance(column.dtype, pd.BooleanDtype) or column.dtype == bool:
            arrays.append(pa.array(column, type=pa.bool_(), from_pandas=True))
        else:
            arrays.append(pa.array(column.to_numpy(dtype=np.float64), type=pa.float64(), from_pandas=True))  # NaN: null
    return pa.Table.from_arrays(arrays, names=names)


def _refuse_existing(out: str) -> None:
    if os.path.lexists(out):
        raise ArgumentError(
            f"{out!r} exists already; nnfit never replaces a file it did not write: give a new path, or remove the "
            "file first."
        )
    folder = os.path.dirname(out) or "."
    if not os.path.isdir(folder):
        raise ArgumentError(f"Cannot write {out!r}: the folder {folder!r} does not exist.")


def _temporary_beside(out: str):
    """(descriptor, path) of a new temporary file beside ``out`` (``files.create_temporary``), after
    clearing what a crashed run left there (``files.remove_temporaries``)."""
    remove_temporaries(out)
    try:
        return create_temporary(out)
    except OSError as error:
        raise ArgumentError(f"Cannot write {out!r}: {error.strerror}.") from None


def _publish(temporary: str, out: str) -> None:
    """Put the complete ``temporary`` in place as ``out``, never over a file another wrote meanwhile."""
    try:
        os.link(temporary, out)  # fails if out appeared since it was checked
    except FileExistsError:
        _refuse_existing(out)
    except OSError:  # a file system without hard links
        _refuse_existing(out)
        os.replace(temporary, out)
    else:
        os.unlink(temporary)
    try:  # make the new name itself durable
        folder = os.open(os.path.dirname(out) or ".", os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass


def write_parts(frame, folder, n_files: int = 2, row_group_rows=None) -> str:
    """Write a data frame into ``n_files`` Parquet files of consecutive rows (part-0.parquet, ...)
    in ``folder``, text and categorical columns as text; returns the folder. For examples and tests.

    >>> import tempfile, nnfit as nf
    >>> from nnfit.streaming import write_parts
    >>> folder = write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=2)
    >>> sorted(os.listdir(folder))
    ['part-0.parquet', 'part-1.parquet']
    """
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


def _identity(info: os.stat_result) -> tuple:
    """What tells a file from another put in its place, or from itself rewritten: its device and
    inode, its size, and its modification time in nanoseconds."""
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _open(path: str, name: str, identity: tuple):
    """The file, opened without following a link, that must still be the regular file checked:
    the same ``_identity`` (device, inode, size, modification time) as when it was checked."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise DataError(f"Cannot open {name!r}: {error.strerror}.") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or _identity(info) != tuple(identity):
        os.close(fd)
        raise DataError(f"File {name!r} changed since it was checked; read it again.")
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


def _agreed_columns(names, schemas, every: str = "every file in the folder") -> list:
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
                    f"File {name!r} has no column {column!r}, which {names[0]!r} has; {every} must "
                    "have the same columns."
                )
            if other[column] != kind:
                raise DataError(
                    f"Column {column!r} is {kind} in {names[0]!r} but {other[column]} in {name!r}; {every} "
                    "must give a column the same type."
                )
        extra = [column for column in other if column not in first]
        if extra:
            raise DataError(
                f"File {name!r} has the column {extra[0]!r}, which {names[0]!r} does not have; {every} "
                "must have the same columns."
            )
    return list(first)

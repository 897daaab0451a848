"""Tests of streaming.py: Parquet files and polars LazyFrames, fitted, batched, predicted and scored as the
in-memory path does."""

import os
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import nnfit as nf
from nnfit import streaming
from nnfit.errors import ArgumentError, DataError, FormulaError
from nnfit.mlpfit import prepare as prepare_in_memory
from nnfit.streaming import Source, evaluate_streamed, is_source, predict_to_parquet, prepare, write_parts


@pytest.fixture
def penguins():
    """Penguins as text columns, sorted so that Gentoo and the island Biscoe appear only in later files."""
    frame = nf.datasets.load("penguins")
    for name in ("species", "island", "sex"):
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    rank = np.where(frame["species"] == "Gentoo", 2, np.where(frame["island"] == "Biscoe", 1, 0))
    return frame.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


FORMULAS = [
    "body_mass_g ~ species * sex + island + bill_length_mm + log(flipper_length_mm)",
    "species ~ island + bill_depth_mm + sex + I(bill_length_mm > 45)",
    "sex ~ .",
    "cbind(body_mass_g, bill_depth_mm) ~ poly(flipper_length_mm, 2, raw = TRUE) + cut(year, breaks = c(2006, 2008, 2010))",
]


# ---------------------------------------------------------------------- the design
@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("scale", [True, "numeric", False])
def test_streamed_design_equals_the_in_memory_design(penguins, tmp_path, formula, scale):
    folder = write_parts(penguins, tmp_path, n_files=5, row_group_rows=30)
    first = pq.read_table(os.path.join(folder, "part-0.parquet")).to_pandas()
    assert "Gentoo" not in set(first["species"]) and "Biscoe" not in set(first["island"])  # levels appear only later
    streamed = quietly(prepare, formula, folder, scale=scale, chunk_rows=17, buffer_rows=64)
    memory = quietly(prepare_in_memory, formula, penguins, scale=scale)
    a, b = streamed.design, memory.design
    assert a.columns == b.columns
    assert a.variables_ == b.variables_
    assert a.variables_["island"]["levels"] == ["Biscoe", "Dream", "Torgersen"] if "island" in a.variables_ else True
    np.testing.assert_allclose(a.center_, b.center_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.scale_, b.scale_, rtol=1e-9)
    assert a.response_kind_ == b.response_kind_ and a.levels_ == b.levels_
    if b.response_kind_ == "numeric":
        np.testing.assert_allclose(a.response_center_, b.response_center_, rtol=1e-9)
        np.testing.assert_allclose(a.response_scale_, b.response_scale_, rtol=1e-9)
    assert (streamed.task, streamed.n_outputs, streamed.n_left_out) == (memory.task, memory.n_outputs, memory.n_left_out)
    assert streamed.n_rows == len(memory.X) == len(streamed.data)
    assert a.state_ == b.state_


def test_the_species_levels_come_in_r_order_though_gentoo_appears_last(penguins, tmp_path):
    prepared = quietly(prepare, "species ~ bill_length_mm", write_parts(penguins, tmp_path, n_files=4), chunk_rows=20)
    assert prepared.design.levels == ["Adelie", "Chinstrap", "Gentoo"]
    assert (prepared.task, prepared.n_outputs, prepared.n_rows, prepared.n_left_out) == ("multiclass", 3, 342, 2)


def test_rows_left_out_are_counted_and_warned_once(penguins, tmp_path):
    folder = write_parts(penguins, tmp_path, n_files=3)
    with pytest.warns(nf.errors.MissingValuesWarning) as caught:
        prepared = prepare("body_mass_g ~ flipper_length_mm + sex", folder, chunk_rows=25)
    assert [str(w.message) for w in caught] == [
        "Left out 11 of 344 rows with a missing value (body_mass_g: 2, flipper_length_mm: 2, sex: 11)."
    ]
    assert (prepared.n_rows, prepared.n_left_out) == (333, 11)


def test_fit_chunks_merges_moments_exactly_on_badly_conditioned_data():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"y": rng.normal(size=1000), "x": 1e9 + rng.normal(size=1000)})
    parts = lambda: (frame.iloc[i: i + 7] for i in range(0, len(frame), 7))  # noqa: E731
    design = nf.Design("y ~ x", scale=True, scale_response=True).fit_chunks(parts, frame.columns)
    assert design.center_[1] == pytest.approx(frame["x"].mean(), rel=1e-15)
    assert design.scale_[1] == pytest.approx(frame["x"].std(ddof=1), rel=1e-9)
    assert design.response_scale_[0] == pytest.approx(frame["y"].std(ddof=1), rel=1e-12)
    assert (design.center_[0], design.scale_[0]) == (0.0, 1.0)  # the intercept stays as it is


# ---------------------------------------------------------------------- batches
def test_an_unshuffled_epoch_gives_prepares_rows(penguins, tmp_path):
    formula = "species ~ island + bill_depth_mm + sex"
    prepared = quietly(prepare, formula, write_parts(penguins, tmp_path, n_files=4), chunk_rows=13, buffer_rows=40)
    memory = quietly(prepare_in_memory, formula, penguins)
    batches = list(prepared.data.batches(32, shuffle=False))
    assert [len(x) for x, _ in batches] == [32] * 10 + [13]
    X, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(X, memory.X, rtol=1e-6, atol=1e-6)
    assert torch.equal(y, memory.y)


def test_a_numeric_response_is_float32_as_prepare_gives_it(penguins, tmp_path):
    formula = "body_mass_g ~ flipper_length_mm + sex"
    prepared = quietly(prepare, formula, write_parts(penguins, tmp_path, n_files=3), chunk_rows=50)
    memory = quietly(prepare_in_memory, formula, penguins)
    batches = list(prepared.data.batches(100, shuffle=False, drop_last=True))
    assert [len(x) for x, _ in batches] == [100, 100, 100] == [100] * prepared.data.n_batches(100, drop_last=True)
    y = torch.cat([y for _, y in batches])
    assert y.dtype == torch.float32 and y.shape == (300, 1)
    torch.testing.assert_close(y, memory.y[:300], rtol=1e-6, atol=1e-6)


def test_a_shuffled_epoch_gives_each_row_once(tmp_path):
    frame = pd.DataFrame({"id": np.arange(1000.0), "y": np.arange(1000.0) % 7})
    frame.loc[[5, 500], "y"] = np.nan
    prepared = quietly(prepare, "y ~ id", write_parts(frame, tmp_path, n_files=10), scale=False, chunk_rows=30,
                       buffer_rows=100)
    data = prepared.data
    generator = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(2):
        batches = list(data.batches(25, shuffle=True, generator=generator))
        assert len(batches) == data.n_batches(25) == 40
        epochs.append(torch.cat([x[:, 0] for x, _ in batches]))
    expected = sorted(set(range(1000)) - {5, 500})
    for ids in epochs:
        assert sorted(ids.long().tolist()) == expected
    assert not torch.equal(epochs[0], epochs[1])
    assert not torch.equal(epochs[0], torch.tensor(expected, dtype=torch.float32))


def test_memory_stays_bounded_by_the_chunk_and_the_buffer(tmp_path):
    rng = np.random.default_rng(0)
    n = 40_000
    frame = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": rng.choice(["a", "b", "c"], n)})
    folder = Source(write_parts(frame, tmp_path, n_files=20, row_group_rows=500))
    prepared = quietly(prepare, "y ~ x + g", folder, chunk_rows=100, buffer_rows=300)
    assert folder.largest_chunk_ == 100  # the design's passes
    data = prepared.data
    seen = sum(len(x) for x, _ in data.batches(50, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert seen == n == len(data)
    assert folder.largest_chunk_ == 100
    assert 300 <= data.largest_buffer_rows_ < 300 + 100


def test_a_batch_larger_than_the_buffer_is_refused(penguins, tmp_path):
    data = quietly(prepare, "body_mass_g ~ sex", write_parts(penguins, tmp_path), buffer_rows=64).data
    with pytest.raises(ArgumentError) as error:
        next(data.batches(100, shuffle=True))
    assert str(error.value) == (
        "batch_size (100) is larger than buffer_rows (64); a shuffled batch is drawn from the buffer, so give a buffer "
        "of at least one batch."
    )
    with pytest.raises(ArgumentError, match="^Streamed data needs a batch_size"):
        data.n_batches(None)


def test_training_through_the_loop_lowers_the_loss(penguins, tmp_path):
    prepared = quietly(prepare, "body_mass_g ~ flipper_length_mm + sex + species", write_parts(penguins, tmp_path, n_files=4),
                       chunk_rows=40, buffer_rows=128)
    learner = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=len(prepared.design.columns), hidden=[5], output_size=1)
    fitted = learner.fit(prepared.data, epochs=2, batch_size=16, seed=0, verbose=False)
    losses = fitted.metrics.query("set == 'train' and metric == 'loss'")["value"].tolist()
    assert len(losses) == 2 and losses[1] < losses[0]


# ---------------------------------------------------------------------- refusals
def test_an_empty_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("no data")
    with pytest.raises(DataError) as error:
        Source(tmp_path)
    assert str(error.value) == f"The folder {str(tmp_path)!r} holds no .parquet files."


def test_a_path_that_is_not_a_folder_is_refused(tmp_path):
    with pytest.raises(DataError) as error:
        Source(tmp_path / "absent")
    assert str(error.value) == (
        f"{tmp_path / 'absent'!r} is neither a folder, a .parquet file, a list of .parquet files, a pyarrow Dataset "
        "nor a polars LazyFrame; give one of those (see nnfit.streaming.is_source)."
    )


def test_a_symbolic_link_is_refused(penguins, tmp_path):
    folder = tmp_path / "data"
    write_parts(penguins, folder)
    outside = tmp_path / "outside.parquet"
    pq.write_table(pa.Table.from_pandas(penguins, preserve_index=False), outside)
    os.symlink(outside, folder / "part-9.parquet")
    with pytest.raises(DataError) as error:
        Source(folder)
    assert str(error.value) == (
        f"'part-9.parquet' in {str(folder)!r} is a symbolic link; nnfit reads only regular files (copy the file in "
        "instead)."
    )


def test_a_file_with_another_type_is_refused_naming_file_and_column(tmp_path):
    pq.write_table(pa.table({"y": [1.0, 2.0], "x": [1.0, 2.0]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"y": [1.0, 2.0], "x": ["1", "2"]}), tmp_path / "b.parquet")
    with pytest.raises(DataError) as error:
        Source(tmp_path)
    assert str(error.value) == (
        "Column 'x' is double in 'a.parquet' but string in 'b.parquet'; every file in the folder must give a column "
        "the same type."
    )


def test_a_missing_or_extra_column_is_refused(tmp_path):
    pq.write_table(pa.table({"y": [1.0], "x": [1.0]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"y": [1.0]}), tmp_path / "b.parquet")
    with pytest.raises(DataError) as error:
        Source(tmp_path)
    assert str(error.value) == (
        "File 'b.parquet' has no column 'x', which 'a.parquet' has; every file in the folder must have the same columns."
    )
    pq.write_table(pa.table({"y": [1.0], "x": [1.0], "z": [1]}), tmp_path / "b.parquet")
    with pytest.raises(DataError) as error:
        Source(tmp_path)
    assert str(error.value) == (
        "File 'b.parquet' has the column 'z', which 'a.parquet' does not have; every file in the folder must have the "
        "same columns."
    )


def test_a_formula_column_the_files_lack_is_refused(penguins, tmp_path):
    with pytest.raises(FormulaError, match="^The formula 'body_mass_g ~ wings' uses 'wings', which is not a column"):
        prepare("body_mass_g ~ wings", write_parts(penguins, tmp_path))


@pytest.mark.parametrize("call, clause", [
    ("poly(flipper_length_mm, 2)", "whose orthogonal basis can be learned only from the whole column at once, which streamed data never "
     "holds; write poly(flipper_length_mm, 2, raw = TRUE)"),
    ("ns(flipper_length_mm, df = 3)", "whose knots (quantiles and range of flipper_length_mm) can be learned only from the whole column at "
     "once, which streamed data never holds; give them explicitly, as in ns(flipper_length_mm, knots = c(...), "
     "Boundary.knots = c(lower, upper))"),
    ("cut(flipper_length_mm, 3)", "whose breaks (the range of flipper_length_mm) can be learned only from the whole column at once, which "
     "streamed data never holds; give the breaks explicitly, as in cut(flipper_length_mm, breaks = c(...))"),
    ("scale(flipper_length_mm)", "whose mean and standard deviation can be learned only from the whole column at once, which streamed data "
     "never holds; write flipper_length_mm: the design standardizes every column (scale=True)"),
    ("factor(year)", "whose levels can be learned only from the whole column at once, which streamed data never holds; give them "
     "explicitly, as in factor(year, levels = c(...))"),
    ("lag(flipper_length_mm)", "which reads the rows before each row, in another chunk or file at a chunk's start; "
     "compute the lagged column before writing the files"),
])
def test_calls_that_learn_from_the_whole_column_are_refused(penguins, tmp_path, call, clause):
    formula = f"body_mass_g ~ {call}"
    with pytest.raises(FormulaError) as error:
        prepare(formula, write_parts(penguins, tmp_path))
    assert str(error.value) == (
        f"The formula {formula!r} calls {call}, {clause}, or fit the design on an in-memory sample of the data."
    )


def test_calls_with_explicit_knots_breaks_and_levels_are_streamed(penguins, tmp_path):
    formula = ("body_mass_g ~ ns(flipper_length_mm, knots = c(190, 210), Boundary.knots = c(170, 235)) "
               "+ factor(sex, levels = c('male', 'female')) + cut(bill_depth_mm, breaks = c(13, 17, 22))")
    streamed = quietly(prepare, formula, write_parts(penguins, tmp_path, n_files=3), chunk_rows=30)
    memory = quietly(prepare_in_memory, formula, penguins)
    assert streamed.design.columns == memory.design.columns
    np.testing.assert_allclose(streamed.design.scale_, memory.design.scale_, rtol=1e-9)


# ---------------------------------------------------------------------- hostile files
def _one_file(tmp_path):
    pq.write_table(pa.table({"y": np.arange(100.0), "x": np.arange(100.0)}), tmp_path / "a.parquet")
    return tmp_path / "a.parquet"


def test_a_footer_larger_than_the_file_is_refused(tmp_path):
    path = _one_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[-8:-4] = (2**31 - 1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as error:
        Source(tmp_path)
    assert str(error.value) == (
        f"File 'a.parquet' declares a footer of {2**31 - 1} bytes, but holds only {len(data)} bytes; the file is corrupted."
    )


def test_a_truncated_or_foreign_file_is_refused(tmp_path):
    path = _one_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError) as error:
        Source(tmp_path)
    assert str(error.value) == "File 'a.parquet' does not begin and end with 'PAR1'; it is truncated or not a Parquet file."
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match="^File 'a.parquet' holds 4 bytes, too few for a Parquet file"):
        Source(tmp_path)


def test_a_corrupted_footer_is_refused(tmp_path):
    path = _one_file(tmp_path)
    data = bytearray(path.read_bytes())
    length = int.from_bytes(data[-8:-4], "little")
    footer = slice(len(data) - 8 - length, len(data) - 8)
    data[footer] = bytes(b ^ 0x5A for b in data[footer])
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="^Cannot read the footer of 'a.parquet': "):
        Source(tmp_path)


def test_a_column_chunk_declared_beyond_the_file_is_refused(tmp_path, monkeypatch):
    path = _one_file(tmp_path)
    size = path.stat().st_size
    real = pq.ParquetFile

    class Lying:
        """A reader whose footer declares a column chunk ten times the file's size (as a hostile file would)."""

        def __init__(self, handle):
            self.reader = real(handle)
            self.schema_arrow = self.reader.schema_arrow
            self.metadata = _Declares(self.reader.metadata, 10 * size)

    monkeypatch.setattr(pq, "ParquetFile", Lying)
    with pytest.raises(DataError) as error:
        Source(tmp_path)
    assert str(error.value).startswith("File 'a.parquet' declares column 'y' of row group 0 at bytes 4 to ")
    assert str(error.value).endswith("the file holds; the file is corrupted.")


class _Declares:
    """Metadata whose column chunks declare ``held`` compressed bytes (None: what they hold) and
    ``uncompressed`` bytes uncompressed (None: ``held``)."""

    def __init__(self, metadata, held, uncompressed=None):
        self.metadata, self.held, self.uncompressed = metadata, held, uncompressed
        self.num_rows, self.num_row_groups = metadata.num_rows, metadata.num_row_groups

    def row_group(self, r):
        group, held, uncompressed = self.metadata.row_group(r), self.held, self.uncompressed

        class Group:
            num_rows, num_columns = group.num_rows, group.num_columns

            def column(self, c):
                chunk = group.column(c)
                return type("Chunk", (), {
                    "data_page_offset": chunk.data_page_offset, "dictionary_page_offset": chunk.dictionary_page_offset,
                    "has_dictionary_page": chunk.has_dictionary_page, "path_in_schema": chunk.path_in_schema,
                    "total_compressed_size": chunk.total_compressed_size if held is None else held,
                    "total_uncompressed_size": held if uncompressed is None else uncompressed,
                })

        return Group()


def test_bad_sizes_are_refused(penguins, tmp_path):
    folder = write_parts(penguins, tmp_path)
    with pytest.raises(ArgumentError) as error:
        prepare("body_mass_g ~ sex", folder, chunk_rows=0)
    assert str(error.value) == "chunk_rows must be a whole number of at least 1, not 0."


def test_nf_mlp_streams_a_folder_of_parquet_files(tmp_path):
    import warnings

    penguins = nf.datasets.load("penguins")
    streaming.write_parts(penguins, tmp_path, 3, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = nf.mlp("body_mass_g ~ flipper_length_mm + species", data=tmp_path, hidden=5, epochs=3, seed=1,
                     verbose=False)
        in_memory = nf.mlp("body_mass_g ~ flipper_length_mm + species", data=penguins, hidden=5, epochs=3, seed=1,
                           verbose=False)
    assert fit.settings["n_train"] == in_memory.settings["n_train"] == 342
    assert fit.settings["n_left_out"] == in_memory.settings["n_left_out"] == 2
    assert fit.design.columns == in_memory.design.columns
    np.testing.assert_allclose(fit.design.center_, in_memory.design.center_, rtol=1e-9)
    assert fit.evaluate(penguins.dropna())["mae"] < 800
    with pytest.raises(nf.errors.ArgumentError) as error:
        nf.mlp("body_mass_g ~ flipper_length_mm", data=tmp_path, n_models=2, verbose=False)
    assert str(error.value) == ("data is streamed, never all in memory; n_models needs the rows in memory. "
                                "Read a sample with nf.read(), or give valid= a data frame of validation rows.")


# ---------------------------------------------------------------------- what a source is
def test_is_source_knows_every_kind_and_nothing_else(penguins, tmp_path):
    import polars as pl
    import pyarrow.dataset as ds

    folder = write_parts(penguins, tmp_path / "parts", n_files=2)
    files = sorted(str(path) for path in (tmp_path / "parts").iterdir())
    (tmp_path / "penguins.csv").write_text("a\n1\n")
    kinds = [folder, tmp_path / "parts", files[0], files, tuple(files), ds.dataset(folder, format="parquet"),
             pl.scan_parquet(files), pl.from_pandas(penguins).lazy(), Source(folder)]
    assert [is_source(kind) for kind in kinds] == [True] * len(kinds)
    others = [penguins, pl.from_pandas(penguins), str(tmp_path / "penguins.csv"), torch.zeros(3), np.zeros(3), [],
              (torch.zeros(2, 1), torch.zeros(2)), [files[0], "notes.txt"], None, 3, str(tmp_path / "absent")]
    assert [is_source(other) for other in others] == [False] * len(others)


def test_is_source_imports_neither_polars_nor_pyarrow_for_other_data():
    import subprocess
    import sys

    code = ("import sys, numpy, pandas, torch; from nnfit.streaming import is_source; "
            "data = (pandas.DataFrame({'a': [1.0]}), object(), torch.zeros(2), numpy.zeros(2), 'data.csv', [1, 2]); "
            "print([is_source(x) for x in data], 'polars' in sys.modules, 'pyarrow.dataset' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[False, False, False, False, False, False] False False"


def _kinds(frame, tmp_path):
    """The same rows as every kind of source: (name, source), the text columns' levels appearing only later."""
    import polars as pl
    import pyarrow.dataset as ds

    folder = write_parts(frame, tmp_path / "parts", n_files=4, row_group_rows=30)
    files = [os.path.join(folder, f"part-{k}.parquet") for k in range(4)]
    single = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), single, row_group_size=40)
    lazy = pl.from_pandas(frame).lazy().with_columns(pl.col("island").cast(pl.Categorical))
    return [("folder", folder), ("file", str(single)), ("list", files), ("dataset", ds.dataset(files, format="parquet")),
            ("scan", pl.scan_parquet(files)), ("lazy", lazy)]


KINDS = ["folder", "file", "list", "dataset", "scan", "lazy"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("formula", FORMULAS[:3])
def test_every_kind_of_source_gives_the_in_memory_design(penguins, tmp_path, kind, formula):
    source = dict(_kinds(penguins, tmp_path))[kind]
    streamed = quietly(prepare, formula, Source(source, group_rows=45), chunk_rows=17)
    whole = quietly(nf.Design(formula, scale=True, scale_response=True, intercept=False).fit, penguins)
    a = streamed.design
    assert a.columns == whole.columns and a.variables_ == whole.variables_ and a.levels_ == whole.levels_
    np.testing.assert_allclose(a.center_, whole.center_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.scale_, whole.scale_, rtol=1e-12)
    if whole.response_kind_ == "numeric":
        np.testing.assert_allclose(a.response_center_, whole.response_center_, rtol=1e-12)
        np.testing.assert_allclose(a.response_scale_, whole.response_scale_, rtol=1e-12)
    assert (streamed.n_rows, streamed.n_left_out) == (len(penguins) - whole.n_left_out_, whole.n_left_out_)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_source_gives_prepares_rows_in_order(penguins, tmp_path, kind):
    formula = "species ~ island + bill_depth_mm + sex"
    source = dict(_kinds(penguins, tmp_path))[kind]
    prepared = quietly(prepare, formula, Source(source, group_rows=45), chunk_rows=13, buffer_rows=40)
    memory = quietly(prepare_in_memory, formula, penguins)
    batches = list(prepared.data.batches(32, shuffle=False))
    assert [len(x) for x, _ in batches] == [32] * 10 + [13]
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), memory.X, rtol=1e-6, atol=1e-6)
    assert torch.equal(torch.cat([y for _, y in batches]), memory.y)


def test_a_lazyframe_is_written_once_by_the_streaming_engine_in_groups_of_group_rows(monkeypatch):
    import os

    import polars as pl

    frame = pd.DataFrame({"y": np.arange(1000.0), "x": np.arange(1000.0) % 7})
    lazy = pl.from_pandas(frame).lazy()
    monkeypatch.setattr(pl.LazyFrame, "collect", lambda self, *a, **k: pytest.fail("collected whole"))
    source = Source(lazy, group_rows=300)
    assert source.group_rows_ == [300, 300, 300, 100] and source.n_rows == 1000 and source.what == "the LazyFrame"
    chunks = list(source.chunks(["y"], chunk_rows=128, groups=[3, 0]))
    assert [len(c) for c in chunks] == [100, 128, 128, 44] and source.largest_chunk_ == 128
    assert chunks[0]["y"].iloc[0] == 900.0
    (written,) = source.files
    assert os.path.exists(written)
    del source, chunks
    import gc

    gc.collect()
    assert not os.path.exists(os.path.dirname(written))  # the temporary copy goes with the source


def test_a_lazyframe_whose_query_reorders_its_rows_is_read_as_one_run_of_it():
    import polars as pl

    rng = np.random.default_rng(0)
    keys = pd.DataFrame({"key": rng.integers(0, 20_000, 60_000), "x": rng.normal(size=60_000)})
    lazy = pl.from_pandas(keys).lazy().group_by("key").agg(pl.col("x").mean().alias("y"), pl.len().alias("n"))
    source = Source(lazy, group_rows=1000)
    rows = pd.concat(source.chunks(["y", "n"], chunk_rows=512))
    expected = keys.groupby("key")["x"].agg(["mean", "size"])
    assert len(rows) == source.n_rows == len(expected)  # every group once: a group_by's order changes per run
    np.testing.assert_allclose(np.sort(rows["y"].to_numpy()), np.sort(expected["mean"].to_numpy()), rtol=1e-9)
    assert sorted(rows["n"]) == sorted(expected["size"])


def test_a_lazyframe_enum_keeps_its_levels_in_order():
    import polars as pl

    lazy = pl.DataFrame({"size": ["small", "large", "medium", "small"], "y": [1.0, 3.0, 2.0, 1.5]}).lazy().with_columns(
        pl.col("size").cast(pl.Enum(["small", "medium", "large"])))
    (chunk,) = Source(lazy).chunks(["size"])
    assert list(chunk["size"].cat.categories) == ["small", "medium", "large"]


def test_the_chunk_and_buffer_caps_hold_for_a_lazyframe(tmp_path):
    import polars as pl

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"y": rng.normal(size=5000), "x": rng.normal(size=5000)})
    source = Source(pl.from_pandas(frame).lazy(), group_rows=700)
    data = quietly(prepare, "y ~ x", source, chunk_rows=150, buffer_rows=400).data
    assert sum(len(x) for x, _ in data.batches(50, shuffle=True, generator=torch.Generator().manual_seed(2))) == 5000
    assert source.largest_chunk_ == 150 and 400 <= data.largest_buffer_rows_ < 400 + 150


# ---------------------------------------------------------------------- the epoch's order
def _ids(n=1000, missing=()):
    frame = pd.DataFrame({"id": np.arange(float(n)), "y": np.arange(float(n)) % 7})
    frame.loc[list(missing), "y"] = np.nan
    return frame


def test_an_epoch_visits_row_groups_not_files_in_a_seeded_order(tmp_path):
    pq.write_table(pa.Table.from_pandas(_ids(), preserve_index=False), tmp_path / "one.parquet", row_group_size=100)
    data = quietly(prepare, "y ~ id", str(tmp_path / "one.parquet"), scale=False, chunk_rows=100, buffer_rows=100).data
    firsts = []
    for seed in range(8):
        first = next(data.batches(50, shuffle=True, generator=torch.Generator().manual_seed(seed)))[0][:, 0]
        groups = set((first // 100).long().tolist())
        assert len(groups) == 1  # the first batch comes from the first row group read, whichever it is
        firsts.append(groups.pop())
    assert len(set(firsts)) > 3


def test_the_same_seed_gives_the_same_batches(tmp_path):
    data = quietly(prepare, "y ~ id", write_parts(_ids(), tmp_path, n_files=4, row_group_rows=60), scale=False,
                   chunk_rows=40, buffer_rows=100).data

    def epoch(seed):
        return [(x, y) for x, y in data.batches(25, shuffle=True, generator=torch.Generator().manual_seed(seed))]

    one, two, other = epoch(7), epoch(7), epoch(8)
    assert len(one) == len(two) == 40
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, two))
    assert not torch.equal(torch.cat([x for x, _ in one]), torch.cat([x for x, _ in other]))


# ---------------------------------------------------------------------- one share per process
@pytest.mark.parametrize("world", [2, 3])
def test_shards_read_disjoint_row_groups_and_give_equal_batch_counts(tmp_path, world):
    source = write_parts(_ids(1000, missing=[5, 500, 501]), tmp_path, n_files=3, row_group_rows=90)
    data = quietly(prepare, "y ~ id", source, scale=False, chunk_rows=50, buffer_rows=100).data
    shards = [data.shard(rank, world) for rank in range(world)]
    assert [len(s) for s in shards] == [997] * world
    generators = [torch.Generator().manual_seed(3) for _ in range(world)]
    rows_per_group = Source(source).group_rows_  # 90 90 90 90 64 per file: 15 groups
    smallest = sorted(rows_per_group)[: len(rows_per_group) // world]
    expected = -(-(sum(smallest) - 3) // 20)
    orders = []
    for _ in range(2):  # two epochs: the generators stay in step
        ids = []
        for shard, generator in zip(shards, generators):
            batches = list(shard.batches(20, shuffle=True, generator=generator))
            assert len(batches) == shard.n_batches(20) == expected
            assert all(len(x) == 20 for x, _ in batches[:-1])
            ids.append(torch.cat([x[:, 0] for x, _ in batches]).long().tolist())
        assert all(torch.equal(g.get_state(), generators[0].get_state()) for g in generators)
        everything = [i for share in ids for i in share]
        assert len(everything) == len(set(everything))  # no row on two processes
        assert set(everything) <= set(range(1000)) - {5, 500, 501}
        orders.append([sorted({i // 90 for i in share}) for share in ids])
    assert orders[0] != orders[1]  # each epoch draws its order again


@pytest.mark.parametrize("shuffle", [True, False])
def test_shards_of_unequal_files_give_equal_batch_counts_with_drop_last(tmp_path, shuffle):
    # a shard with fewer rows than a batch must still give the batch the others give: a process
    # that takes one step fewer than another leaves it waiting in the all-reduce for ever
    pd.DataFrame({"x": np.arange(10.0), "y": np.arange(10.0)}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"x": np.arange(50.0), "y": np.arange(50.0)}).to_parquet(tmp_path / "b.parquet")
    data = quietly(prepare, "y ~ x", str(tmp_path), buffer_rows=64).data
    shards = [data.shard(r, 2) for r in range(2)]
    for seed in range(4):
        counts = [len(list(shard.batches(32, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
                                         drop_last=True))) for shard in shards]
        assert counts == [shards[0].n_batches(32, drop_last=True)] * 2 == [1, 1], seed


def test_a_filtered_pyarrow_dataset_is_refused_rather_than_read_whole(tmp_path):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    nf.datasets.load("penguins").to_parquet(tmp_path / "penguins.parquet")
    males = ds.dataset(str(tmp_path), format="parquet").filter(pc.field("sex") == "male")
    with pytest.raises(DataError) as error:
        Source(males)
    assert str(error.value) == (
        "The dataset has a filter (dataset.filter(...)), and nnfit streams its files whole, every row of them; "
        "write the rows you want to their own Parquet files, or pass a polars LazyFrame that filters them.")


def test_shards_without_shuffling_take_every_worldth_group(tmp_path):
    source = str(tmp_path / "one.parquet")
    pq.write_table(pa.Table.from_pandas(_ids(1000), preserve_index=False), source, row_group_size=100)
    data = quietly(prepare, "y ~ id", source, scale=False, chunk_rows=100, buffer_rows=100).data
    ids = torch.cat([x[:, 0] for x, _ in data.shard(1, 3).batches(100, shuffle=False)]).long()
    assert sorted(set((ids // 100).tolist())) == [1, 4, 7] and data.shard(1, 3).n_batches(100) == 3


def test_too_few_row_groups_for_the_processes_are_refused(tmp_path):
    data = quietly(prepare, "y ~ id", write_parts(_ids(100), tmp_path, n_files=2), scale=False).data
    with pytest.raises(DataError) as error:
        data.shard(0, 3)
    assert str(error.value) == (
        f"There are 2 row groups in the folder {str(tmp_path)!r}, fewer than the 3 processes; each process reads its "
        "own row groups: write the data in at least 3 row groups (smaller row groups, or more files)."
    )
    with pytest.raises(ArgumentError, match="^rank must lie from 0 to world - 1"):
        data.shard(2, 2)


# ---------------------------------------------------------------------- the training loop
def test_a_streamed_fit_equals_the_in_memory_fit_on_the_same_rows_in_the_same_order(tmp_path):
    rng = np.random.default_rng(4)
    n = 600
    frame = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n), "g": rng.choice(["a", "b", "c"], n)})
    frame["y"] = frame["x"] - 2 * frame["z"] + (frame["g"] == "b") + rng.normal(scale=0.1, size=n)
    prepared = quietly(prepare, "y ~ x + z + g", write_parts(frame, tmp_path, n_files=1), chunk_rows=n, buffer_rows=n)
    data, seed, p = prepared.data, 5, len(prepared.design.columns)
    # The epoch's rows in the streamed order, drawn as the learner draws them (its generator seeded with seed).
    epoch = list(data.batches(32, shuffle=True, generator=torch.Generator().manual_seed(seed)))
    X_streamed, y_streamed = torch.cat([x for x, _ in epoch]), torch.cat([y for _, y in epoch])
    # The same design's encoding of the whole frame, arranged so that InMemory's randperm gives that order.
    m = prepared.design.transform(frame, response=True)
    X, y = torch.as_tensor(m.inputs(), dtype=torch.float32), torch.as_tensor(m.y, dtype=torch.float32)
    key = X[:, 0].numpy()
    sigma = torch.as_tensor(np.argsort(key)[np.searchsorted(np.sort(key), X_streamed[:, 0].numpy())])
    assert torch.equal(X[sigma], X_streamed) and torch.equal(y[sigma], y_streamed)  # the same rows, bit for bit
    pi = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    X_arranged, y_arranged = torch.empty_like(X), torch.empty_like(y)
    X_arranged[pi], y_arranged[pi] = X[sigma], y[sigma]

    def fitted(training):
        learner = nf.setup(nf.MLP, loss="mse", optimizer="adam").set_hparams(input_size=p, hidden=[16], output_size=1)
        return learner.fit(training, epochs=1, batch_size=32, seed=seed, verbose=False, threads=1)

    streamed, memory = fitted(data), fitted((X_arranged, y_arranged))
    a, b = streamed.model.state_dict(), memory.model.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert streamed.metrics["value"].tolist() == memory.metrics["value"].tolist()


# ---------------------------------------------------------------------- a fitted model on a source
@pytest.fixture(scope="module")
def fits():
    penguins = nf.datasets.load("penguins")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "mass": nf.mlp("body_mass_g ~ flipper_length_mm + sex + species", data=penguins, hidden=4, epochs=3,
                           seed=1, verbose=False),
            "species": nf.mlp("species ~ bill_length_mm + flipper_length_mm + island", data=penguins, hidden=4,
                              epochs=3, seed=1, verbose=False),
            "sex": nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=penguins, hidden=[], epochs=3, seed=1,
                          verbose=False, threshold=0.4),
        }


@pytest.mark.parametrize("name, type", [("mass", "response"), ("species", "class"), ("species", "prob"),
                                        ("sex", "response"), ("sex", "class")])
@pytest.mark.parametrize("kind", ["list", "scan"])
def test_predict_to_parquet_equals_predict_on_the_whole_frame(penguins, fits, tmp_path, name, type, kind):
    fit = fits[name]
    out = predict_to_parquet(fit, dict(_kinds(penguins, tmp_path))[kind], tmp_path / "out.parquet", type=type,
                             chunk_rows=25)
    assert out == str(tmp_path / "out.parquet")
    written = pq.read_table(out).to_pandas()
    whole = fit.predict(penguins, type=type)
    whole = (whole.to_frame() if isinstance(whole, pd.Series) else whole).reset_index(drop=True)
    assert written.columns.tolist() == [str(c) for c in whole.columns]
    if type == "class":
        assert written.iloc[:, 0].equals(whole.iloc[:, 0])  # the same Categorical: levels in order, NaN where missing
    else:
        np.testing.assert_allclose(written.to_numpy(), whole.to_numpy(), rtol=1e-6, atol=1e-6)
        assert np.isnan(written.to_numpy()).sum() == np.isnan(whole.to_numpy()).sum() > 0


def test_predict_to_parquet_reads_only_the_predictors_and_leaves_no_temporary(penguins, fits, tmp_path, monkeypatch):
    read = []
    real = Source.chunks

    def chunks(self, columns=None, *args, **kwargs):
        read.append(columns)
        return real(self, columns, *args, **kwargs)

    monkeypatch.setattr(Source, "chunks", chunks)
    previous = os.umask(0o027)
    try:
        out = predict_to_parquet(fits["mass"], write_parts(penguins, tmp_path / "in"), tmp_path / "mass.parquet")
    finally:
        os.umask(previous)
    assert read == [fits["mass"].design.predictors] and sorted(read[0]) == ["flipper_length_mm", "sex", "species"]
    assert os.stat(out).st_mode & 0o777 == 0o640  # the user's umask, as for any new file
    assert sorted(os.listdir(tmp_path)) == ["in", "mass.parquet"]


def test_predict_to_parquet_never_replaces_a_file_and_leaves_nothing_on_failure(penguins, fits, tmp_path):
    folder = write_parts(penguins, tmp_path / "in")
    (tmp_path / "taken.parquet").write_bytes(b"someone else's")
    with pytest.raises(ArgumentError) as error:
        predict_to_parquet(fits["mass"], folder, tmp_path / "taken.parquet")
    assert str(error.value) == (
        f"{str(tmp_path / 'taken.parquet')!r} exists already; nnfit never replaces a file it did not write: give a new "
        "path, or remove the file first."
    )
    assert (tmp_path / "taken.parquet").read_bytes() == b"someone else's"
    with pytest.raises(ArgumentError, match="^type must be one of"):
        predict_to_parquet(fits["mass"], folder, tmp_path / "new.parquet", type="class")
    assert sorted(os.listdir(tmp_path)) == ["in", "taken.parquet"]


@pytest.mark.parametrize("name", ["mass", "species", "sex"])
def test_evaluate_streamed_equals_evaluate_on_the_whole_frame(penguins, fits, tmp_path, name):
    fit = fits[name]
    with pytest.warns(nf.errors.MissingValuesWarning) as caught:
        streamed = evaluate_streamed(fit, dict(_kinds(penguins, tmp_path))["list"], chunk_rows=30)
    with pytest.warns(nf.errors.MissingValuesWarning) as expected:
        whole = fit.evaluate(penguins)
    assert [str(w.message) for w in caught] == [str(w.message) for w in expected]
    assert list(streamed) == list(whole) and (streamed.n, streamed.n_left_out) == (whole.n, whole.n_left_out)
    np.testing.assert_allclose([streamed[k] for k in whole], [whole[k] for k in whole], rtol=1e-6, atol=1e-6)
    if whole.confusion is not None:
        assert streamed.confusion.equals(whole.confusion) and streamed.threshold == whole.threshold
        np.testing.assert_allclose(streamed.by_class.to_numpy(), whole.by_class.to_numpy(), rtol=1e-6)


def test_evaluate_streamed_needs_the_response(penguins, fits, tmp_path):
    folder = write_parts(penguins.drop(columns=["body_mass_g"]), tmp_path)
    with pytest.raises(DataError) as error:
        evaluate_streamed(fits["mass"], folder)
    assert str(error.value) == f"evaluate needs the response: there is no column 'body_mass_g' in the folder {str(tmp_path)!r}."


# ---------------------------------------------------------------------- files given one by one
@pytest.mark.parametrize("given", ["file", "list", "dataset"])
def test_a_hostile_file_given_alone_or_in_a_list_is_refused_before_its_footer_is_parsed(tmp_path, monkeypatch, given):
    import pyarrow.dataset as ds

    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"y": np.arange(100.0), "x": np.arange(100.0)}), good)
    (tmp_path / "bad").mkdir()
    bad = _one_file(tmp_path / "bad")
    source = {"file": str(bad), "list": [good, bad], "dataset": ds.dataset([str(good), str(bad)], format="parquet")}[given]
    data = bytearray(bad.read_bytes())
    data[-8:-4] = (2**31 - 1).to_bytes(4, "little")  # a footer of 2 GiB
    bad.write_bytes(bytes(data))
    parsed = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda handle, **options: parsed.append(1) or real(handle, **options))
    with pytest.raises(DataError) as error:
        Source(source)
    assert str(error.value) == (
        f"File {str(bad)!r} declares a footer of {2**31 - 1} bytes, but holds only {len(data)} bytes; the file is "
        "corrupted."
    )
    assert len(parsed) == (0 if given == "file" else 1)  # the good file's footer only


@pytest.mark.parametrize("given", ["file", "list"])
def test_a_decompression_bomb_given_alone_or_in_a_list_is_refused(tmp_path, monkeypatch, given):
    path = _one_file(tmp_path)
    size = path.stat().st_size
    real = pq.ParquetFile

    class Bomb:
        """A reader whose footer declares a column chunk a million times larger uncompressed than it holds."""

        def __init__(self, handle, **options):
            self.reader = real(handle)
            self.schema_arrow = self.reader.schema_arrow
            self.metadata = _Declares(self.reader.metadata, None, uncompressed=10**6 * size)

    monkeypatch.setattr(pq, "ParquetFile", Bomb)
    with pytest.raises(DataError) as error:
        Source(str(path) if given == "file" else [path])
    assert str(error.value).startswith(f"File {str(path)!r} declares {10**6 * size} bytes uncompressed for column 'y'")
    assert str(error.value).endswith("nnfit refuses it as a decompression bomb (rewrite the file with another compression).")


def test_listed_files_must_be_parquet_regular_distinct_and_present(tmp_path, penguins):
    folder = write_parts(penguins, tmp_path / "in")
    first = os.path.join(folder, "part-0.parquet")
    os.symlink(first, tmp_path / "link.parquet")
    cases = [
        ([first, str(tmp_path / "notes.txt")], f"{str(tmp_path / 'notes.txt')!r} in the list of files does not end in "
         ".parquet; list only Parquet files."),
        ([first, first], f"{first!r} is the same file as {first!r}; list each file once."),
        ([str(tmp_path / "absent.parquet")], f"Cannot find the file {str(tmp_path / 'absent.parquet')!r} (No such file "
         "or directory); check the path."),
        ([str(tmp_path / "link.parquet")], f"{str(tmp_path / 'link.parquet')!r} is a symbolic link; nnfit reads only "
         f"regular files (give the path of the file itself, {first!r})."),
    ]
    for given, message in cases:
        with pytest.raises(DataError) as error:
            Source(given)
        assert str(error.value) == message


def test_a_dataset_of_other_files_is_refused(tmp_path):
    import pyarrow.csv as csv
    import pyarrow.dataset as ds

    csv.write_csv(pa.table({"y": [1.0, 2.0]}), tmp_path / "a.csv")
    with pytest.raises(DataError) as error:
        Source(ds.dataset(str(tmp_path / "a.csv"), format="csv"))
    assert str(error.value) == (
        "nnfit streams a pyarrow Dataset of Parquet files (pyarrow.dataset.dataset(path, format='parquet')); this one "
        "is a FileSystemDataset of csv files. Write the data as Parquet, or read it into memory with nf.read()."
    )


def test_a_dataset_column_from_the_paths_is_refused(tmp_path):
    import pyarrow.dataset as ds

    (tmp_path / "year=2007").mkdir()
    pq.write_table(pa.table({"y": [1.0, 2.0], "x": [3.0, 4.0]}), tmp_path / "year=2007" / "a.parquet")
    with pytest.raises(DataError) as error:
        Source(ds.dataset(str(tmp_path), format="parquet", partitioning="hive"))
    assert str(error.value) == (
        "The dataset's column 'year' is not in its files (it comes from their paths, a partitioning); nnfit streams "
        "the files' own columns: write 'year' into the files, or pass the files' paths."
    )


def test_a_batch_larger_than_half_the_buffer_keeps_the_buffer_within_its_rows(tmp_path):
    data = quietly(prepare, "y ~ id", write_parts(_ids(1000), tmp_path, n_files=2, row_group_rows=99), scale=False,
                   chunk_rows=99, buffer_rows=100).data
    batches = list(data.batches(90, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert sorted(torch.cat([x[:, 0] for x, _ in batches]).long().tolist()) == list(range(1000))
    assert [len(x) for x, _ in batches] == [90] * 11 + [10] and data.largest_buffer_rows_ < 100 + 99


# ---------------------------------------------------------------------- a file replaced after its check
def _same_size_files(tmp_path):
    """Two Parquet files of exactly the same size and different rows: the checked one and its impostor."""
    checked, impostor = tmp_path / "rows.parquet", tmp_path / "impostor.parquet"
    for path, y in ((checked, np.arange(50.0)), (impostor, -np.arange(50.0))):
        pq.write_table(pa.table({"y": y, "x": y * 2}), path, compression="none", use_dictionary=False,
                       write_statistics=False)
    assert checked.stat().st_size == impostor.stat().st_size and checked.read_bytes() != impostor.read_bytes()
    return checked, impostor


def _replaced(checked, impostor):
    os.replace(impostor, checked)  # another file (another inode) of the same size, under the checked name


def _rewritten(checked, impostor):
    before = checked.stat()
    with open(checked, "r+b") as stream:  # the same inode, other bytes, written later
        stream.write(impostor.read_bytes())
    os.utime(checked, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))  # later, even on a coarse clock
    assert (checked.stat().st_ino, checked.stat().st_size) == (before.st_ino, before.st_size)


@pytest.mark.parametrize("change", [_replaced, _rewritten])
def test_a_file_changed_to_another_of_the_same_size_after_its_check_is_refused(tmp_path, change):
    checked, impostor = _same_size_files(tmp_path)
    source = Source(str(checked))
    assert next(source.chunks(["y"]))["y"].tolist()[:3] == [0.0, 1.0, 2.0]
    change(checked, impostor)
    with pytest.raises(DataError) as error:
        list(source.chunks(["y"]))
    assert str(error.value) == f"File {str(checked)!r} changed since it was checked; read it again."


def test_a_file_replaced_between_its_lstat_and_its_opening_is_refused(tmp_path, monkeypatch):
    checked, impostor = _same_size_files(tmp_path)
    real = streaming._open

    def swapped_first(path, name, identity):  # the file lstat saw is gone when the check opens it
        if os.path.exists(impostor):
            _replaced(checked, impostor)
        return real(path, name, identity)

    monkeypatch.setattr(streaming, "_open", swapped_first)
    with pytest.raises(DataError) as error:
        Source(str(checked))
    assert str(error.value) == f"File {str(checked)!r} changed since it was checked; read it again."


# ---------------------------------------------------------------------- warnings point at the caller
def test_streamed_warnings_point_at_the_callers_line(tmp_path):
    penguins = nf.datasets.load("penguins")
    folder = write_parts(penguins, tmp_path / "in", n_files=2, row_group_rows=100)
    formula = "body_mass_g ~ flipper_length_mm + sex"
    streamed = quietly(nf.mlp, formula, data=folder, hidden=3, epochs=1, seed=1, verbose=False)

    def in_memory():  # a fit that still holds its training rows: type="interval" calibrates it, with a warning
        return quietly(nf.mlp, formula, data=penguins.dropna(), hidden=3, epochs=1, seed=1, verbose=False)

    left_out = "Left out 11 of 344 rows with a missing value (body_mass_g: 2, flipper_length_mm: 2, sex: 11)."
    calibrates = "This fit has no calibration, so type='interval' calibrates it now by CV+ on the 333 rows"
    first, second = in_memory(), in_memory()
    calls = {
        "nf.mlp": (lambda: nf.mlp(formula, data=folder, hidden=3, epochs=1, seed=1, verbose=False),
                   nf.errors.MissingValuesWarning, left_out),
        "fit.evaluate": (lambda: streamed.evaluate(folder), nf.errors.MissingValuesWarning, left_out),
        "evaluate_streamed": (lambda: evaluate_streamed(streamed, folder, chunk_rows=50),
                              nf.errors.MissingValuesWarning, left_out),
        "fit.predict(out=)": (lambda: first.predict(folder, type="interval", out=tmp_path / "a.parquet"),
                              UserWarning, calibrates),
        "predict_to_parquet": (lambda: predict_to_parquet(second, folder, tmp_path / "b.parquet", type="interval",
                                                          chunk_rows=50), UserWarning, calibrates),
    }
    for name, (call, category, message) in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert [(w.category, str(w.message)[:len(message)]) for w in caught] == [(category, message)], name
        assert (caught[0].filename, caught[0].lineno) == (__file__, call.__code__.co_firstlineno), name
    with pytest.raises(ArgumentError, match="^data is streamed, so its predictions need not fit in memory"):
        streamed.predict(folder)  # no out=: refused before a row is read

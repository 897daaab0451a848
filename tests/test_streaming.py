"""Tests of streaming.py: a folder of Parquet files, fitted and batched as the in-memory path does."""

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
from nnfit.streaming import ParquetFolder, prepare, write_parts


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
    folder = ParquetFolder(write_parts(frame, tmp_path, n_files=20, row_group_rows=500))
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
        ParquetFolder(tmp_path)
    assert str(error.value) == f"The folder {str(tmp_path)!r} holds no .parquet files."


def test_a_path_that_is_not_a_folder_is_refused(tmp_path):
    with pytest.raises(DataError) as error:
        ParquetFolder(tmp_path / "absent")
    assert str(error.value) == f"{str(tmp_path / 'absent')!r} is not a folder; give a folder of .parquet files."


def test_a_symbolic_link_is_refused(penguins, tmp_path):
    folder = tmp_path / "data"
    write_parts(penguins, folder)
    outside = tmp_path / "outside.parquet"
    pq.write_table(pa.Table.from_pandas(penguins, preserve_index=False), outside)
    os.symlink(outside, folder / "part-9.parquet")
    with pytest.raises(DataError) as error:
        ParquetFolder(folder)
    assert str(error.value) == (
        f"'part-9.parquet' in {str(folder)!r} is a symbolic link; nnfit reads only regular files inside the folder "
        "(copy the file in instead)."
    )


def test_a_file_with_another_type_is_refused_naming_file_and_column(tmp_path):
    pq.write_table(pa.table({"y": [1.0, 2.0], "x": [1.0, 2.0]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"y": [1.0, 2.0], "x": ["1", "2"]}), tmp_path / "b.parquet")
    with pytest.raises(DataError) as error:
        ParquetFolder(tmp_path)
    assert str(error.value) == (
        "Column 'x' is double in 'a.parquet' but string in 'b.parquet'; every file in the folder must give a column "
        "the same type."
    )


def test_a_missing_or_extra_column_is_refused(tmp_path):
    pq.write_table(pa.table({"y": [1.0], "x": [1.0]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"y": [1.0]}), tmp_path / "b.parquet")
    with pytest.raises(DataError) as error:
        ParquetFolder(tmp_path)
    assert str(error.value) == (
        "File 'b.parquet' has no column 'x', which 'a.parquet' has; every file in the folder must have the same columns."
    )
    pq.write_table(pa.table({"y": [1.0], "x": [1.0], "z": [1]}), tmp_path / "b.parquet")
    with pytest.raises(DataError) as error:
        ParquetFolder(tmp_path)
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
        ParquetFolder(tmp_path)
    assert str(error.value) == (
        f"File 'a.parquet' declares a footer of {2**31 - 1} bytes, but holds only {len(data)} bytes; the file is corrupted."
    )


def test_a_truncated_or_foreign_file_is_refused(tmp_path):
    path = _one_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError) as error:
        ParquetFolder(tmp_path)
    assert str(error.value) == "File 'a.parquet' does not begin and end with 'PAR1'; it is truncated or not a Parquet file."
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match="^File 'a.parquet' holds 4 bytes, too few for a Parquet file"):
        ParquetFolder(tmp_path)


def test_a_corrupted_footer_is_refused(tmp_path):
    path = _one_file(tmp_path)
    data = bytearray(path.read_bytes())
    length = int.from_bytes(data[-8:-4], "little")
    footer = slice(len(data) - 8 - length, len(data) - 8)
    data[footer] = bytes(b ^ 0x5A for b in data[footer])
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="^Cannot read the footer of 'a.parquet': "):
        ParquetFolder(tmp_path)


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
        ParquetFolder(tmp_path)
    assert str(error.value).startswith("File 'a.parquet' declares column 'y' of row group 0 at bytes 4 to ")
    assert str(error.value).endswith("the file holds; the file is corrupted.")


class _Declares:
    """Metadata whose first column chunk declares ``held`` compressed bytes."""

    def __init__(self, metadata, held):
        self.metadata, self.held = metadata, held
        self.num_rows, self.num_row_groups = metadata.num_rows, metadata.num_row_groups

    def row_group(self, r):
        group, held = self.metadata.row_group(r), self.held

        class Group:
            num_rows, num_columns = group.num_rows, group.num_columns

            def column(self, c):
                chunk = group.column(c)
                return type("Chunk", (), {
                    "data_page_offset": chunk.data_page_offset, "dictionary_page_offset": chunk.dictionary_page_offset,
                    "has_dictionary_page": chunk.has_dictionary_page, "path_in_schema": chunk.path_in_schema,
                    "total_compressed_size": held, "total_uncompressed_size": held,
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
    assert str(error.value) == ("data is a folder of Parquet files, streamed; n_models needs the rows in memory. "
                                "Read a sample with nf.read(), or give valid= a data frame of validation rows.")

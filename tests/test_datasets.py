import csv
import gzip
import hashlib
import io
import re

import numpy as np
import pandas as pd
import pytest

import nnfit as nf
from nnfit.errors import ArgumentError, DataError

ISLR = ["Auto", "Bikeshare", "Boston", "Carseats", "College", "Credit", "Default", "Hitters", "NYSE", "Smarket",
        "Wage", "Weekly"]
TABLES = ISLR + ["austen", "iris", "penguins"]

# The exceptions to "levels in code-point order" and "text is a factor", as R's ISLR2 defines them.
EXCEPTIONS = {
    ("Bikeshare", "mnth"): ["Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec"],
    ("Bikeshare", "hr"): [str(h) for h in range(24)],
    ("Bikeshare", "weathersit"): ["clear", "cloudy/misty", "light rain/snow", "heavy rain/snow"],
    ("NYSE", "day_of_week"): ["mon", "tues", "wed", "thur", "fri"],
}


def raw_rows(name):
    """The bundled file read with the csv module only: header and rows of strings."""
    data = nf.datasets.path(name).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    return rows[0], rows[1:]


def test_penguins_as_r_has_them(penguins):
    assert penguins.shape == (344, 8)
    assert list(penguins.columns) == [
        "species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year",
    ]
    assert list(penguins["species"].cat.categories) == ["Adelie", "Chinstrap", "Gentoo"]
    assert list(penguins["island"].cat.categories) == ["Biscoe", "Dream", "Torgersen"]
    assert list(penguins["sex"].cat.categories) == ["female", "male"]
    # R: summary(penguins): 152 Adelie, 68 Chinstrap, 124 Gentoo; 11 NA sex; 2 NA bill length
    assert penguins["species"].value_counts().to_dict() == {"Adelie": 152, "Gentoo": 124, "Chinstrap": 68}
    assert int(penguins["sex"].isna().sum()) == 11
    assert int(penguins["bill_length_mm"].isna().sum()) == 2
    assert len(penguins.dropna()) == 333
    assert penguins["year"].dtype == np.int64
    assert penguins["body_mass_g"].mean() == pytest.approx(4201.754386, rel=1e-9)


@pytest.mark.parametrize("name", TABLES)
def test_table_matches_its_file_read_with_the_csv_module(name):
    header, rows = raw_rows(name)
    frame = nf.datasets.load(name)
    assert list(frame.columns) == header
    assert frame.shape == (len(rows), len(header)) == nf.datasets._DATASETS[name].shape
    for j, column in enumerate(header):
        fields = [row[j] for row in rows]
        missing = [field in ("NA", "") for field in fields]
        values = frame[column]
        assert values.isna().tolist() == missing, column
        present = [field for field, gone in zip(fields, missing) if not gone]
        if (name, column) == ("austen", "text"):  # documents stay text
            assert values.dtype == object and values.tolist() == fields
        elif (name, column) in EXCEPTIONS:
            assert list(values.cat.categories) == EXCEPTIONS[name, column]
            assert values.astype(str).tolist() == fields
        elif column == "date":
            assert values.dt.strftime("%Y-%m-%d").tolist() == fields
        elif set(present) <= {"TRUE", "FALSE"}:
            assert values.dtype == bool and values.tolist() == [field == "TRUE" for field in fields]
        elif all(re.fullmatch(r"-?\d+", field) for field in present):
            assert values.dtype == (np.int64 if not any(missing) else np.float64), column
            assert values.dropna().astype(np.int64).tolist() == [int(field) for field in present]
        else:
            try:
                numbers = [float(field) for field in present]
            except ValueError:  # text: a factor with its levels sorted by code point
                assert isinstance(values.dtype, pd.CategoricalDtype), column
                assert list(values.cat.categories) == sorted(set(present))
                assert values.dropna().astype(str).tolist() == present
            else:
                assert values.dtype == np.float64, column
                assert values.dropna().tolist() == numbers  # the same doubles, bit for bit


def test_the_isl_tables_are_the_islp_files_byte_for_byte():
    # sha256 of ISLP 0.6.0's ISLP/data/<name>.csv, recorded in nnfit/data/SOURCES.md.
    sources = nf.datasets.path("Hitters").with_name("SOURCES.md").read_text()
    for name in ISLR:
        digest = hashlib.sha256(gzip.decompress(nf.datasets.path(name).read_bytes())).hexdigest()
        assert f"`{digest}`" in sources, name


def test_r_facts_about_the_isl_tables():
    # Figures printed in ISLR2 (and by R on ISLR2's data).
    hitters = nf.datasets.load("Hitters")
    assert len(hitters.dropna()) == 263
    assert hitters["League"].value_counts().to_dict() == {"A": 175, "N": 147}
    default = nf.datasets.load("Default")
    assert default["default"].value_counts().to_dict() == {"No": 9667, "Yes": 333}
    nyse = nf.datasets.load("NYSE")
    assert int(nyse["train"].sum()) == 4281
    assert nyse["date"].iloc[0] == pd.Timestamp("1962-12-03") and nyse["date"].iloc[-1] == pd.Timestamp("1986-12-31")
    assert nyse["date"].dtype.kind == "M"
    college = nf.datasets.load("College")
    assert "F.Undergrad" in college.columns and college["Private"].value_counts().to_dict() == {"Yes": 565, "No": 212}
    iris = nf.datasets.load("iris")
    assert iris["Sepal.Length"].mean() == pytest.approx(5.843333333, rel=1e-9)
    assert iris["Species"].value_counts().to_dict() == {"setosa": 50, "versicolor": 50, "virginica": 50}
    credit = nf.datasets.load("Credit")
    assert list(credit["Gender"].cat.categories) == [" Male", "Female"]  # the file's leading space, as R keeps it


def test_names_describe_and_unknown():
    assert nf.datasets.names() == sorted(TABLES + ["mnist"])
    summaries = nf.datasets.describe()
    assert list(summaries) == nf.datasets.names()
    for name in TABLES:
        rows, columns = nf.datasets.load(name).shape
        assert f"{rows} rows, {columns} columns" in summaries[name]
        text = nf.datasets.describe(name)
        for column in nf.datasets.load(name).columns:
            assert re.search(rf"^  {re.escape(column)} ", text, re.M), (name, column)
    with pytest.raises(ArgumentError) as error:
        nf.datasets.load("hitters")
    assert str(error.value).startswith("Unknown data set 'hitters' (did you mean 'Hitters'")
    assert str(error.value).endswith("; bundled data sets: " + ", ".join(nf.datasets.names()) + ".")


def test_read_csv_bundled_and_errors(tmp_path, penguins):
    path = tmp_path / "p.csv"
    penguins.to_csv(path, index=False)
    frame = nf.datasets.read(path)
    assert frame.shape == (344, 8)
    assert nf.datasets.read("penguins").equals(penguins)
    assert nf.datasets.read("Hitters").shape == (322, 20)
    with pytest.raises(DataError) as error:
        nf.datasets.read(tmp_path / "none.csv")
    assert str(error.value) == (f"No data file {str(tmp_path / 'none.csv')!r}, and no bundled data set of that name "
                                f"({', '.join(nf.datasets.names())}).")
    with pytest.raises(DataError, match="is a directory"):
        nf.datasets.read(tmp_path)


# ---------------------------------------------------------------------- bundled digits and text

def test_mnist_digits_are_the_npz_arrays_scaled():
    mnist = nf.datasets.load("mnist")
    with np.load(nf.datasets.path("mnist"), allow_pickle=False) as arrays:
        raw = {key: arrays[key] for key in arrays.files}
    assert sorted(raw) == ["test_images", "test_labels", "train_images", "train_labels"]
    assert raw["train_images"].dtype == np.uint8 and raw["train_images"].shape == (4000, 28, 28)
    assert raw["train_labels"].dtype == np.int64 and raw["test_images"].shape == (1000, 28, 28)
    assert mnist.train.x.shape == (4000, 1, 28, 28) and mnist.train.x.dtype == torch_float32()
    np.testing.assert_array_equal((mnist.train.x[:, 0].numpy() * 255).round().astype(np.uint8), raw["train_images"])
    np.testing.assert_array_equal(mnist.test.y.numpy(), raw["test_labels"])
    assert np.bincount(raw["train_labels"]).tolist() == [400] * 10
    assert np.bincount(raw["test_labels"]).tolist() == [100] * 10
    assert raw["train_images"].max() == 255 and raw["train_images"].min() == 0
    assert mnist.classes == [str(d) for d in range(10)]
    # No digit is in both parts.
    train = {row.tobytes() for row in raw["train_images"]}
    assert not any(row.tobytes() in train for row in raw["test_images"])
    with pytest.raises(DataError, match="holds images, not a table"):
        nf.datasets.read("mnist")


def torch_float32():
    import torch

    return torch.float32


def test_austen_corpus_has_500_paragraphs_of_each_novel():
    austen = nf.datasets.load("austen")
    counts = austen["novel"].value_counts()
    assert counts.to_dict() == {novel: 500 for novel in austen["novel"].cat.categories}
    lengths = austen["text"].str.split().str.len()
    assert lengths.min() >= 20 and lengths.max() <= 200
    assert austen["text"].iloc[0].startswith("Emma Woodhouse, handsome, clever, and rich")


# ---------------------------------------------------------------------- full data from disk: IDX

def idx(dtype_code, dims, payload: bytes) -> bytes:
    return bytes([0, 0, dtype_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def test_read_idx_plain_and_gzip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx(0x08, [2, 3, 4], images.tobytes()))
    np.testing.assert_array_equal(nf.datasets.read_idx(tmp_path / "a"), images)
    values = np.array([-1, 2, 70000], dtype=">i4")
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx(0x0C, [3], values.tobytes())))
    read = nf.datasets.read_idx(tmp_path / "b.gz")
    assert read.tolist() == [-1, 2, 70000] and read.dtype == np.int32 and read.dtype.byteorder in "=<|"
    doubles = np.array([[0.5, -2.25]], dtype=">f8")
    (tmp_path / "c").write_bytes(idx(0x0E, [1, 2], doubles.tobytes()))
    assert nf.datasets.read_idx(tmp_path / "c").tolist() == [[0.5, -2.25]]


def test_read_idx_refuses_lying_and_broken_headers(tmp_path):
    lying = tmp_path / "lying"
    lying.write_bytes(idx(0x08, [60000, 28, 28], b"\x00" * 10))
    with pytest.raises(DataError) as error:
        nf.datasets.read_idx(lying)
    assert str(error.value) == (f"{str(lying)!r} declares 60000 x 28 x 28 values of 1 byte(s) (47040000 bytes) but holds "
                                "10 bytes after its header: the file is truncated or its header is wrong.")
    huge = tmp_path / "huge.gz"  # 2^32-1 cubed: never allocated, refused from the compressed size
    huge.write_bytes(gzip.compress(idx(0x0D, [4294967295] * 3, b"\x00" * 8)))
    with pytest.raises(DataError, match="more than its [0-9]+ compressed bytes can hold: its header is wrong"):
        nf.datasets.read_idx(huge)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(idx(0x08, [100], b"\x01" * 40)))
    with pytest.raises(DataError, match=r"declares 100 values \(100 bytes\) but holds 40 bytes"):
        nf.datasets.read_idx(short)
    longer = tmp_path / "longer.gz"
    longer.write_bytes(gzip.compress(idx(0x08, [2], b"\x01" * 3)))
    with pytest.raises(DataError, match="but holds more bytes after its header"):
        nf.datasets.read_idx(longer)
    magic = tmp_path / "magic"
    magic.write_bytes(b"\x01\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError) as error:
        nf.datasets.read_idx(magic)
    assert str(error.value) == (f"{str(magic)!r} is not an IDX file: it must start with two zero bytes, a type code "
                                "(0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E) and a number of dimensions, not '01 00 08 01'.")
    unknown_type = tmp_path / "type"
    unknown_type.write_bytes(idx(0x07, [1], b"\x00"))
    with pytest.raises(DataError, match="is not an IDX file"):
        nf.datasets.read_idx(unknown_type)
    cut = tmp_path / "cut"
    cut.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="ends inside its IDX header \\(3 dimensions declared\\)"):
        nf.datasets.read_idx(cut)
    with pytest.raises(DataError, match="No IDX file"):
        nf.datasets.read_idx(tmp_path / "none")


def write_mnist(folder, n_train=3, n_test=2, gz=True):
    rng = np.random.default_rng(0)
    parts = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        parts[prefix] = images, labels
        for kind, array, code in (("images-idx3-ubyte", images, 0x08), ("labels-idx1-ubyte", labels, 0x08)):
            payload = idx(code, list(array.shape), array.tobytes())
            name = f"{prefix}-{kind}" + (".gz" if gz else "")
            (folder / name).write_bytes(gzip.compress(payload) if gz else payload)
    return parts


def test_read_mnist_from_idx_files(tmp_path):
    parts = write_mnist(tmp_path)
    mnist = nf.datasets.read_mnist(tmp_path)
    assert mnist.train.x.shape == (3, 1, 28, 28) and mnist.test.x.shape == (2, 1, 28, 28)
    np.testing.assert_allclose(mnist.train.x[:, 0].numpy(), parts["train"][0] / 255.0, rtol=1e-6)
    assert mnist.test.y.tolist() == parts["t10k"][1].tolist() and mnist.test.y.dtype == torch_int64()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(0x08, [5], bytes(5))))
    with pytest.raises(DataError, match="MNIST's t10k files in .* disagree: images \\(2, 28, 28\\), labels \\(5,\\)"):
        nf.datasets.read_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="has no t10k labels"):
        nf.datasets.read_mnist(tmp_path)


def torch_int64():
    import torch

    return torch.int64


# ---------------------------------------------------------------------- CIFAR-100 and IMDb

def cifar_records(labels, rng):
    records = []
    for coarse, fine in labels:
        records.append(bytes([coarse, fine]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes())
    return b"".join(records)


def test_read_cifar100_binary(tmp_path):
    rng = np.random.default_rng(1)
    train = cifar_records([(3, 17), (19, 99)], rng)
    (tmp_path / "train.bin").write_bytes(train)
    (tmp_path / "test.bin").write_bytes(cifar_records([(0, 0)], rng))
    (tmp_path / "fine_label_names.txt").write_text("".join(f"class{k}\n" for k in range(100)))
    cifar = nf.datasets.read_cifar100(tmp_path)
    assert cifar.train.x.shape == (2, 3, 32, 32) and cifar.train.y.tolist() == [17, 99] and cifar.classes[99] == "class99"
    second = np.frombuffer(train[3074 + 2:], dtype=np.uint8).reshape(3, 32, 32)  # red, green, blue planes
    np.testing.assert_allclose(cifar.train.x[1].numpy(), second / 255.0, rtol=1e-6)
    coarse = nf.datasets.read_cifar100(tmp_path, label="coarse")
    assert coarse.train.y.tolist() == [3, 19] and coarse.classes == [str(k) for k in range(20)]
    (tmp_path / "test.bin").write_bytes(cifar_records([(0, 0)], rng)[:-1])
    with pytest.raises(DataError) as error:
        nf.datasets.read_cifar100(tmp_path)
    assert str(error.value) == (f"{str(tmp_path / 'test.bin')!r} holds 3073 bytes, not a whole number of 3074-byte "
                                "CIFAR-100 records: it is truncated or not CIFAR-100's binary version.")
    (tmp_path / "test.bin").write_bytes(cifar_records([(20, 0)], rng))
    with pytest.raises(DataError, match="labels out of range"):
        nf.datasets.read_cifar100(tmp_path)
    with pytest.raises(ArgumentError, match="Unknown label 'medium'"):
        nf.datasets.read_cifar100(tmp_path, label="medium")


def test_read_imdb_folder(tmp_path):
    reviews = {("train", "pos", "10_9"): "Great film.", ("train", "neg", "2_1"): "Dull.", ("train", "neg", "1_3"): "Bad <br />.",
               ("test", "pos", "0_7"): "Fine, fine.", ("test", "neg", "5_4"): "Meh."}
    for (part, sentiment, name), text in reviews.items():
        (tmp_path / part / sentiment).mkdir(parents=True, exist_ok=True)
        (tmp_path / part / sentiment / f"{name}.txt").write_text(text, encoding="utf-8")
    train, test = nf.datasets.read_imdb(tmp_path)
    assert list(train.columns) == ["id", "rating", "sentiment", "text"]
    assert train["id"].tolist() == [1, 2, 10] and train["rating"].tolist() == [3, 1, 9]
    assert train["sentiment"].astype(str).tolist() == ["neg", "neg", "pos"]
    assert list(train["sentiment"].cat.categories) == ["neg", "pos"]
    assert train["text"].tolist() == ["Bad <br />.", "Dull.", "Great film."] and test.shape == (2, 4)
    (tmp_path / "test" / "pos" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt' is not named <id>_<rating>.txt"):
        nf.datasets.read_imdb(tmp_path)
    with pytest.raises(DataError, match="has no train/neg folder: give the aclImdb folder itself"):
        nf.datasets.read_imdb(tmp_path / "train")

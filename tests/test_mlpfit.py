import statistics
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import nnfit as nf
from nnfit.errors import ArgumentError, ArgumentTypeError, DataError, LevelError, MissingValuesWarning

pytestmark = pytest.mark.filterwarnings("ignore::nnfit.errors.MissingValuesWarning")


@pytest.fixture(scope="module")
def raw_split():
    return nf.split(nf.datasets.load("penguins"), prop=0.8, seed=1)


@pytest.fixture(scope="module")
def mass_fit(raw_split):
    training, _ = raw_split
    return nf.mlp("body_mass_g ~ . - year", data=training, hidden=50, activation="relu", dropout=0.4,
                  optimizer="rmsprop", epochs=100, seed=1, verbose=False)


@pytest.fixture(scope="module")
def species_fit(raw_split):
    training, _ = raw_split
    return nf.mlp("species ~ . - year", data=training, hidden=[10, 5], dropout=[0.4, 0.3], epochs=100, seed=1,
                  verbose=False)


# ---------------------------------------------------------------- the R lab's targets
def test_body_mass_mae_median_over_five_seeds_beats_r(lab_split):
    """The R lab got 423 g; OLS on the same split gets about 285 g. Target: median <= 320 g."""
    maes = []
    for seed in range(1, 6):
        training, testing = nf.split(nf.datasets.load("penguins").dropna().drop(columns="year"), prop=0.8, seed=seed)
        fit = nf.mlp("body_mass_g ~ .", training, hidden=50, dropout=0.4, optimizer="rmsprop", epochs=100,
                     seed=seed, verbose=False)
        maes.append(fit.evaluate(testing)["mae"])
    assert statistics.median(maes) <= 320, maes


def test_species_accuracy_over_five_seeds():
    for seed in range(1, 6):
        training, testing = nf.split(nf.datasets.load("penguins").dropna().drop(columns="year"), prop=0.8, seed=seed)
        fit = nf.mlp("species ~ .", training, hidden=[10, 5], dropout=[0.4, 0.3], epochs=100, seed=seed, verbose=False)
        assert fit.evaluate(testing)["accuracy"] >= 0.97, seed


def test_linear_network_by_full_batch_gradient_descent_reaches_ols(lab_split):
    training, _ = lab_split
    fit = nf.mlp("body_mass_g ~ .", training, hidden=[], optimizer="sgd", lr=0.3, batch_size=None, epochs=2000,
                 seed=1, verbose=False)
    design = nf.Design("body_mass_g ~ .").fit(training)
    m = design.transform(training)
    beta = np.linalg.lstsq(m.X, m.y, rcond=None)[0][:, 0]
    # The network works on standardized columns and response: map its weights back to grams.
    coef = fit.coef()
    weights = coef.loc[coef["input"] > 0, "value"].to_numpy()
    bias = coef.loc[coef["input"] == 0, "value"].item()
    d = fit.design
    slopes = weights * d.response_scale_[0] / d.scale_
    intercept = d.response_center_[0] + d.response_scale_[0] * (bias - (weights * d.center_ / d.scale_).sum())
    np.testing.assert_allclose(np.r_[intercept, slopes], beta, rtol=1e-3)


# ---------------------------------------------------------------- predictions
def test_regression_predictions_are_grams_aligned_with_nan_rows(mass_fit, raw_split):
    _, testing = raw_split
    pred = mass_fit.predict(testing)
    assert isinstance(pred, pd.Series) and pred.name == "body_mass_g"
    assert pred.index.equals(testing.index)
    incomplete = testing[["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "sex"]].isna().any(axis=1)
    assert pred[incomplete].isna().all() and pred[~incomplete].notna().all()
    assert incomplete.sum() == 1
    assert 2500 < pred.min() and pred.max() < 6500


def test_predictions_equal_the_network_by_hand(mass_fit, raw_split):
    _, testing = raw_split
    complete = testing.dropna()
    X = mass_fit.design.tensors(complete, response=False)
    hidden, output = mass_fit.model.hidden[0], mass_fit.model.output
    with torch.no_grad():
        z = torch.relu(X @ hidden.weight.T + hidden.bias) @ output.weight.T + output.bias
    expected = z.double().numpy()[:, 0] * mass_fit.design.response_scale_[0] + mass_fit.design.response_center_[0]
    np.testing.assert_allclose(mass_fit.predict(complete).to_numpy(), expected, rtol=1e-5)


def test_evaluate_regression_in_grams_matches_numpy(mass_fit, raw_split):
    _, testing = raw_split
    with pytest.warns(MissingValuesWarning, match=r"^Left out 1 of 69 rows"):
        scores = mass_fit.evaluate(testing)
    complete = testing.dropna(subset=["body_mass_g", "bill_length_mm", "sex"])
    pred = mass_fit.predict(complete).to_numpy()
    truth = complete["body_mass_g"].to_numpy()
    assert set(scores) == {"mae", "rmse", "r2"}
    assert scores["mae"] == pytest.approx(np.abs(pred - truth).mean(), rel=1e-9)
    assert scores["rmse"] == pytest.approx(np.sqrt(((pred - truth) ** 2).mean()), rel=1e-9)
    assert scores["r2"] == pytest.approx(1 - ((pred - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum(), rel=1e-9)
    assert scores.n == 68 and scores.n_left_out == 1


def test_classifier_predictions_labels_and_probabilities(species_fit, raw_split):
    _, testing = raw_split
    labels = species_fit.predict(testing)
    assert labels.dtype == "category" and list(labels.cat.categories) == ["Adelie", "Chinstrap", "Gentoo"]
    assert labels.index.equals(testing.index)
    probs = species_fit.predict(testing, type="prob")
    assert list(probs.columns) == ["Adelie", "Chinstrap", "Gentoo"]
    complete = probs.dropna()
    np.testing.assert_allclose(complete.sum(axis=1), 1.0, rtol=1e-9)
    assert (complete.idxmax(axis=1) == labels[complete.index].astype(str)).all()
    assert labels.isna().sum() == probs.isna().any(axis=1).sum() == 1


def test_evaluate_classifier_matches_numpy(species_fit, raw_split):
    _, testing = raw_split
    scores = species_fit.evaluate(testing)
    complete = testing.dropna()
    probs = species_fit.predict(complete, type="prob").to_numpy()
    codes = complete["species"].cat.codes.to_numpy()
    assert scores["accuracy"] == pytest.approx((probs.argmax(1) == codes).mean())
    assert scores["log_loss"] == pytest.approx(-np.log(probs[np.arange(len(codes)), codes]).mean(), rel=1e-6)
    assert scores["accuracy"] >= 0.97


def test_binary_classifier_uses_one_logit(raw_split):
    training, testing = raw_split
    fit = nf.mlp("sex ~ body_mass_g + bill_depth_mm + species", training, hidden=8, epochs=30, seed=2, verbose=False)
    assert fit.task == "binary" and fit.model.output_size == 1
    probs = fit.predict(testing, type="prob")
    assert list(probs.columns) == ["female", "male"]
    labels = fit.predict(testing)
    complete = probs.dropna()
    assert ((complete["male"] > 0.5) == (labels[complete.index] == "male")).all()
    assert fit.evaluate(testing)["accuracy"] > 0.75


def test_multi_output_regression(raw_split):
    training, testing = raw_split
    fit = nf.mlp("cbind(body_mass_g, flipper_length_mm) ~ species + sex + bill_length_mm", training, hidden=16,
                 epochs=30, seed=1, verbose=False)
    pred = fit.predict(testing)
    assert list(pred.columns) == ["body_mass_g", "flipper_length_mm"] and pred.index.equals(testing.index)
    assert fit.model.output_size == 2
    assert fit.evaluate(testing)["r2"] > 0.5


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity", "elu", "gelu", "leaky_relu", "silu", "softplus"])
def test_every_activation_trains(lab_split, activation):
    training, testing = lab_split
    fit = nf.mlp("body_mass_g ~ .", training, hidden=[8, 4], activation=activation, epochs=15, seed=1, verbose=False)
    assert fit.evaluate(testing)["r2"] > 0.5


def test_same_seed_same_result_and_rng_untouched(lab_split):
    training, testing = lab_split
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    torch.rand(1)
    state = torch.get_rng_state()
    a = nf.mlp("body_mass_g ~ .", training, hidden=10, dropout=0.2, epochs=5, seed=7, verbose=False)
    assert torch.equal(torch.get_rng_state(), state)  # the user's global generator is left alone
    b = nf.mlp("body_mass_g ~ .", training, hidden=10, dropout=0.2, epochs=5, seed=7, verbose=False)
    c = nf.mlp("body_mass_g ~ .", training, hidden=10, dropout=0.2, epochs=5, seed=8, verbose=False)
    assert a.predict(testing).equals(b.predict(testing))
    assert not a.predict(testing).equals(c.predict(testing))
    del before


def test_validation_fraction_records_valid_metrics(lab_split):
    training, _ = lab_split
    fit = nf.mlp("body_mass_g ~ .", training, hidden=10, epochs=4, valid=0.2, seed=1, verbose=False)
    history = fit.metrics
    assert list(history.columns) == ["set", "metric", "epoch", "value"]
    assert set(history["set"]) == {"train", "valid"}
    assert set(history["metric"]) == {"loss", "mae"}
    assert history["epoch"].max() == 4
    assert (fit.settings["n_train"], fit.settings["n_valid"]) == (213, 53) and 213 + 53 == len(training)
    assert "trained on 213 rows, 53 held out for validation" in repr(fit)


def test_training_mae_is_recorded_in_grams(mass_fit):
    history = mass_fit.metrics
    last = history[(history["metric"] == "mae") & (history["epoch"] == 100)]["value"].item()
    assert 100 < last < 600  # grams, not standard deviations


# ---------------------------------------------------------------- the course's notation
def test_print_shows_the_course_notation(mass_fit):
    text = repr(mass_fit)
    assert text.splitlines()[0] == "nnfit MLP (regression): body_mass_g ~ . - year"
    assert "f(X) = beta_0 + sum_{k=1}^{K} beta_k g(w_k0 + sum_{l=1}^{p} w_kl X_l)" in text
    assert "K = 50 hidden units, g = ReLU, g(z) = max(0, z), p = 8 predictors" in text
    assert "501 parameters; rmsprop, batch size 32, 100 epochs" in text
    assert "trained on 265 rows (10 left out for missing values)" in text


def test_multilayer_notation(species_fit):
    assert species_fit.notation().splitlines()[:3] == [
        "A^(1)_k = g(w^(1)_k0 + sum_{j=1}^{p} w^(1)_kj X_j)   k = 1..10, g = ReLU",
        "A^(2)_l = g(w^(2)_l0 + sum_{k=1}^{10} w^(2)_lk A^(1)_k)   l = 1..5, g = ReLU",
        "f_t(X) = beta_t0 + sum_{l=1}^{5} beta_tl A^(2)_l",
    ]


def test_coef_names_and_values(species_fit):
    coef = species_fit.coef()
    assert list(coef.columns) == ["term", "layer", "unit", "input", "from", "value"]
    assert len(coef) == species_fit.n_parameters == 7 * 10 + 10 + 10 * 5 + 5 + 5 * 3 + 3
    first = coef.iloc[0]
    assert (first["term"], first["from"]) == ("w^(1)_{1,0}", "(bias)")
    assert first["value"] == pytest.approx(species_fit.model.hidden[0].bias[0].item())
    row = coef[coef["term"] == "w^(2)_{3,4}"].iloc[0]
    assert row["from"] == "A^(1)_4" and row["value"] == pytest.approx(species_fit.model.hidden[1].weight[2, 3].item())
    row = coef[coef["term"] == "beta_{2,5}"].iloc[0]
    assert row["value"] == pytest.approx(species_fit.model.output.weight[1, 4].item())
    assert coef[coef["term"] == "w^(1)_{1,1}"]["from"].item() == species_fit.design.columns[0]


def test_coef_single_output_uses_beta_m(mass_fit):
    coef = mass_fit.coef()
    assert coef[coef["layer"] == "output"]["term"].tolist()[:3] == ["beta_0", "beta_1", "beta_2"]


# ---------------------------------------------------------------- save and load
def test_save_and_load_give_identical_predictions(mass_fit, species_fit, raw_split, tmp_path):
    _, testing = raw_split
    for fit in (mass_fit, species_fit):
        path = tmp_path / "model.nnfit"
        fit.save(path)
        same = nf.load(path)
        pd.testing.assert_series_equal(same.predict(testing), fit.predict(testing))
        assert same.evaluate(testing) == fit.evaluate(testing)
        assert repr(same) == repr(fit)
        assert same.metrics.equals(fit.metrics)


# ---------------------------------------------------------------- bad input
def test_unseen_level_at_predict(species_fit, raw_split):
    _, testing = raw_split
    new = testing.assign(island=testing["island"].astype(str).replace({"Dream": "Atlantis"}))
    with pytest.raises(LevelError, match=r"^Column 'island' has the level 'Atlantis', which training never saw"):
        species_fit.predict(new)


def test_missing_column_at_predict(mass_fit, raw_split):
    _, testing = raw_split
    with pytest.raises(DataError) as error:
        mass_fit.predict(testing.drop(columns="flipper_length_mm"))
    assert str(error.value) == "The data has no column 'flipper_length_mm', which the design uses."


def test_evaluate_without_response(mass_fit, raw_split):
    _, testing = raw_split
    with pytest.raises(DataError) as error:
        mass_fit.evaluate(testing.drop(columns="body_mass_g"))
    assert str(error.value) == "evaluate needs the response: the data has no column 'body_mass_g'."


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dropout": 1.0}, "dropout must lie in [0, 1), not 1.0."),
        ({"dropout": -0.1}, "dropout must lie in [0, 1), not -0.1."),
        ({"activation": "swish"}, "Unknown activation 'swish'; choose one of: elu, gelu, identity, leaky_relu, linear, relu, sigmoid, silu, softplus, tanh."),
        ({"optimizer": "lbfgs2"}, "Unknown optimizer 'lbfgs2'; choose one of: adagrad, adam, adamw, rmsprop, sgd."),
        ({"epochs": 0}, "epochs must be a positive whole number, not 0."),
        ({"epochs": -3}, "epochs must be a positive whole number, not -3."),
        ({"batch_size": 0}, "batch_size must be a positive whole number or None, not 0."),
        ({"hidden": [10, 0]}, "hidden layer sizes must be positive whole numbers, not 0."),
        ({"hidden": [10, 5], "dropout": [0.1, 0.2, 0.3]}, "dropout has 3 values but there are 2 hidden layers."),
    ],
)
def test_bad_arguments(lab_split, options, message):
    training, _ = lab_split
    with pytest.raises(ArgumentError) as error:
        nf.mlp("body_mass_g ~ .", training, **dict({"epochs": 1, "verbose": False}, **options))
    assert str(error.value) == message


def test_bad_hidden_type(lab_split):
    training, _ = lab_split
    with pytest.raises(ArgumentTypeError) as error:
        nf.mlp("body_mass_g ~ .", training, hidden="big", epochs=1)
    assert str(error.value) == "hidden must be a number of units or a list of them, not 'big'."


def test_predict_type_for_regression(mass_fit, raw_split):
    with pytest.raises(ArgumentError) as error:
        mass_fit.predict(raw_split[1], type="prob")
    assert str(error.value) == "type must be one of 'response', 'link', 'interval' for this model, not 'prob'."


def test_data_not_a_frame():
    with pytest.raises(ArgumentTypeError) as error:
        nf.mlp("y ~ x", data=[[1, 2]], epochs=1)
    assert str(error.value) == "data must be a pandas (or polars) DataFrame, not list."


def test_fit_warns_once_about_left_out_rows(raw_split):
    training, _ = raw_split
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nf.mlp("body_mass_g ~ . - year", training, hidden=4, epochs=1, verbose=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, MissingValuesWarning)]
    assert messages == [
        "Left out 10 of 275 rows with a missing value (body_mass_g: 1, bill_length_mm: 1, bill_depth_mm: 1, "
        "flipper_length_mm: 1, sex: 10)."
    ]


def test_an_offset_is_added_to_the_network_output_as_glm_adds_it(lab_split, quiet):
    """y2 = y + 20 * flipper with offset(20 * flipper) trains exactly the network of y, and
    its predictions are that network's plus the offset, in training and on new data."""
    training, testing = lab_split
    shifted_train = training.assign(shifted=training["body_mass_g"] + 20 * training["flipper_length_mm"])
    shifted_test = testing.assign(shifted=testing["body_mass_g"] + 20 * testing["flipper_length_mm"])
    plain = nf.mlp("body_mass_g ~ species + bill_length_mm", training, hidden=4, epochs=3, seed=1, verbose=False)
    offset = nf.mlp("shifted ~ species + bill_length_mm + offset(20 * flipper_length_mm)", shifted_train,
                    hidden=4, epochs=3, seed=1, verbose=False)
    np.testing.assert_allclose(offset.predict(shifted_test), plain.predict(testing) + 20 * testing["flipper_length_mm"],
                               rtol=1e-12)
    assert offset.evaluate(shifted_test)["mae"] == pytest.approx(plain.evaluate(testing)["mae"], rel=1e-9)


def test_print_shows_dropout_as_given_not_as_float32_stores_it(mass_fit, species_fit):
    assert "dropout after each hidden layer: [0.4]" in repr(mass_fit)
    assert "dropout after each hidden layer: [0.4, 0.3]" in repr(species_fit)
    assert "0.4000000059604645" not in repr(mass_fit) + repr(species_fit)


@pytest.mark.parametrize("threshold, shown", [(1.5, "1.5"), ("0.5", "'0.5'"), (0, "0"), (True, "True"),
                                              (float("nan"), "nan")])
def test_a_file_whose_threshold_is_not_a_probability_is_refused(tmp_path, threshold, shown):
    from nnfit import files
    from nnfit.errors import ModelFileError

    data = nf.datasets.load("penguins").dropna()
    fit = nf.mlp("sex ~ body_mass_g", data=data, hidden=[], epochs=1, seed=1, threshold=0.4, verbose=False)
    fit.save(tmp_path / "sex.nnfit")
    tensors, metadata = files.read(tmp_path / "sex.nnfit")
    assert metadata["settings"]["threshold"] == 0.4
    metadata["settings"]["threshold"] = threshold
    files.write(tmp_path / "lying.nnfit", tensors, metadata)
    with pytest.raises(ModelFileError) as caught:
        nf.load(tmp_path / "lying.nnfit")
    assert str(caught.value) == (f"{str(tmp_path / 'lying.nnfit')!r} is not a valid nnfit model file: settings.threshold "
                                 f"is {shown}, not a probability strictly between 0 and 1.")


def test_the_recipe_defaults_are_written_once_and_every_front_door_takes_them():
    import inspect

    from nnfit import cli
    from nnfit.recipe import DEFAULTS
    from nnfit.sklearn import MLPClassifier, MLPRegressor

    assert DEFAULTS == {"hidden": 50, "activation": "relu", "dropout": 0.0, "optimizer": "rmsprop", "lr": None,
                        "epochs": 100, "batch_size": 32, "weight_decay": 0.0}
    for front in (nf.mlp, MLPRegressor.__init__, MLPClassifier.__init__):
        parameters = inspect.signature(front).parameters
        assert {name: parameters[name].default for name in DEFAULTS} == DEFAULTS, front
    parameters = inspect.signature(nf.grid).parameters
    assert {name: parameters[name].default for name in parameters if name in DEFAULTS} == {
        name: DEFAULTS[name] for name in ("hidden", "lr", "dropout", "weight_decay", "activation")}
    args = cli._parser().parse_args(["fit", "data.csv", "y ~ x", "--out", "m"])
    assert (args.hidden, args.activation, args.dropout, args.epochs, args.optimizer, args.lr, args.batch_size) == (
        "50", "relu", "0", 100, "rmsprop", None, 32)


def test_parquet_data_streams_through_fit_predict_and_evaluate(tmp_path):
    import pyarrow.parquet as pq

    from nnfit.errors import ArgumentError

    penguins = nf.datasets.load("penguins")
    single = tmp_path / "penguins.parquet"
    penguins.to_parquet(single)
    formula = "body_mass_g ~ flipper_length_mm + sex"
    streamed = nf.mlp(formula, data=str(single), hidden=4, epochs=2, seed=1, verbose=False)
    in_memory = nf.mlp(formula, data=penguins, hidden=4, epochs=2, seed=1, verbose=False)
    assert streamed.design.columns == in_memory.design.columns == ["flipper_length_mm", "sexmale"]
    assert streamed.settings["n_train"] == in_memory.settings["n_train"] == 333
    out = tmp_path / "mass.parquet"
    assert streamed.predict(single, out=out) == str(out)
    written = pq.read_table(out).to_pandas()["body_mass_g"]
    np.testing.assert_allclose(written.to_numpy(), streamed.predict(penguins).to_numpy(), rtol=1e-12)
    scores, whole = streamed.evaluate(single), streamed.evaluate(penguins)
    assert scores.keys() == whole.keys() and scores.n == whole.n
    for name in whole:
        assert scores[name] == pytest.approx(whole[name], rel=1e-9)
    with pytest.raises(ArgumentError, match=r"^data is streamed, so its predictions need not fit in "
                                            r"memory: give out= the path of a new \.parquet file to write them to\.$"):
        streamed.predict(single)
    with pytest.raises(ArgumentError, match=r"^out= writes the predictions of streamed data \(Parquet, a pyarrow dataset, "
                                            r"a polars LazyFrame\); for a data frame, predict returns them"):
        streamed.predict(penguins, out=tmp_path / "other.parquet")
    with pytest.raises(nf.errors.NnfitError, match="mass.parquet"):  # never replaced
        streamed.predict(single, out=out)
    with pytest.raises(ArgumentError, match=r"^by_model=True is not available for streamed data"):
        streamed.evaluate(single, by_model=True)

"""nf.mlp's decisions and evaluation: predict types, the full classification scores (against
scikit-learn), thresholds, case and class weights, and validation data frames."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.utils.class_weight import compute_class_weight

import nnfit as nf
from nnfit.errors import ArgumentError, DataError
from nnfit.mlpfit import classification_scores

pytestmark = pytest.mark.filterwarnings("ignore::nnfit.errors.MissingValuesWarning")


@pytest.fixture(scope="module")
def split():
    return nf.split(nf.datasets.load("penguins").dropna(), prop=0.7, seed=3)


@pytest.fixture(scope="module")
def sex_fit(split):
    training, _ = split
    return nf.mlp("sex ~ body_mass_g + bill_depth_mm + species", data=training, hidden=[], epochs=40, seed=1,
                  verbose=False)


@pytest.fixture(scope="module")
def species_fit(split):
    training, _ = split
    return nf.mlp("species ~ bill_length_mm + flipper_length_mm", data=training, hidden=5, epochs=15, seed=1,
                  verbose=False)


def _random_probs(n, k, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    truth = rng.integers(0, k, size=n)
    logits[np.arange(n), truth] += 1.0  # better than chance, not perfect
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), truth


# ---------------------------------------------------------------- the numbers, against scikit-learn
@pytest.mark.parametrize("threshold", [None, 0.3, 0.7])
def test_binary_scores_equal_scikit_learns(threshold):
    probs, truth = _random_probs(200, 2, seed=1)
    scores = classification_scores(probs, truth, ["no", "yes"], threshold)
    classes = (probs[:, 1] > (0.5 if threshold is None else threshold)).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(truth, classes).ravel()
    expected = {
        "accuracy": skm.accuracy_score(truth, classes),
        "balanced_accuracy": skm.balanced_accuracy_score(truth, classes),
        "log_loss": skm.log_loss(truth, probs),
        "auc": skm.roc_auc_score(truth, probs[:, 1]),
        "brier": skm.brier_score_loss(truth, probs[:, 1]),
        "sensitivity": skm.recall_score(truth, classes),
        "specificity": tn / (tn + fp),
    }
    assert list(scores) == list(expected)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, rel=1e-12), name
    assert scores.confusion.to_numpy().tolist() == skm.confusion_matrix(truth, classes).tolist()
    assert scores.confusion.index.tolist() == scores.confusion.columns.tolist() == ["no", "yes"]
    precision, recall, f1, support = skm.precision_recall_fscore_support(truth, classes)
    by_class = scores.by_class
    np.testing.assert_allclose(by_class["precision"], precision, rtol=1e-12)
    np.testing.assert_allclose(by_class["recall"], recall, rtol=1e-12)
    np.testing.assert_allclose(by_class["sensitivity"], recall, rtol=1e-12)
    np.testing.assert_allclose(by_class["f1"], f1, rtol=1e-12)
    np.testing.assert_array_equal(by_class["support"], support)
    np.testing.assert_allclose(by_class["specificity"], [tp / (tp + fn), tn / (tn + fp)], rtol=1e-12)
    assert scores.threshold == threshold


def test_multiclass_scores_equal_scikit_learns():
    probs, truth = _random_probs(300, 4, seed=2)
    levels = ["a", "b", "c", "d"]
    scores = classification_scores(probs, truth, levels)
    classes = probs.argmax(axis=1)
    assert list(scores) == ["accuracy", "balanced_accuracy", "log_loss", "auc", "brier"]
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(truth, classes), rel=1e-12)
    assert scores["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(truth, classes), rel=1e-12)
    assert scores["log_loss"] == pytest.approx(skm.log_loss(truth, probs), rel=1e-12)
    assert scores["auc"] == pytest.approx(skm.roc_auc_score(truth, probs, multi_class="ovr", average="macro"), rel=1e-12)
    assert scores["brier"] == pytest.approx(skm.brier_score_loss(truth, probs), rel=1e-12)
    confusion = skm.confusion_matrix(truth, classes)
    assert scores.confusion.to_numpy().tolist() == confusion.tolist()
    precision, recall, f1, _ = skm.precision_recall_fscore_support(truth, classes)
    np.testing.assert_allclose(scores.by_class["precision"], precision, rtol=1e-12)
    np.testing.assert_allclose(scores.by_class["recall"], recall, rtol=1e-12)
    np.testing.assert_allclose(scores.by_class["f1"], f1, rtol=1e-12)
    negatives = len(truth) - confusion.sum(axis=1)
    specificity = (negatives - (confusion.sum(axis=0) - np.diag(confusion))) / negatives
    np.testing.assert_allclose(scores.by_class["specificity"], specificity, rtol=1e-12)
    assert scores.by_class.index.tolist() == levels
    assert scores.threshold is None


def test_a_level_never_predicted_scores_zero_precision_and_balanced_accuracy_counts_it():
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]])
    truth = np.array([0, 1, 2, 2])
    scores = classification_scores(probs, truth, ["a", "b", "c"])
    classes = probs.argmax(axis=1)
    assert scores["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(truth, classes))
    assert scores.by_class.loc["b", "precision"] == 0.0
    assert scores.by_class.loc["b", "recall"] == 0.0


def test_evaluate_scores_the_labels_predict_gives(species_fit, split):
    _, testing = split
    scores = species_fit.evaluate(testing)
    labels = species_fit.predict(testing)
    table = pd.crosstab(testing["species"], labels).reindex(index=scores.confusion.index, columns=scores.confusion.columns,
                                                           fill_value=0)
    assert scores.confusion.to_numpy().tolist() == table.to_numpy().tolist()
    probs = species_fit.predict(testing, type="prob")
    assert scores["log_loss"] == pytest.approx(skm.log_loss(testing["species"], probs, labels=probs.columns), rel=1e-9)
    assert scores["auc"] == pytest.approx(skm.roc_auc_score(testing["species"], probs, multi_class="ovr"), rel=1e-9)
    text = repr(scores)
    assert text.splitlines()[0].startswith("{accuracy: ")
    assert "confusion (rows: truth, columns: predicted):" in text and "by class:" in text
    assert "Confusion (rows: truth, columns: predicted)" in scores._repr_html_()


def test_an_ensemble_classifier_is_scored_on_its_mean_and_by_model(split):
    training, testing = split
    ensemble = nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=training, hidden=3, epochs=5, seed=1, n_models=3,
                      verbose=False)
    by_model = ensemble.evaluate(testing, by_model=True)
    assert by_model.columns.tolist() == ["model", "accuracy", "balanced_accuracy", "log_loss", "auc", "brier",
                                         "sensitivity", "specificity"]
    p = ensemble.predict(testing, type="response")
    assert ensemble.evaluate(testing)["auc"] == pytest.approx(skm.roc_auc_score(testing["sex"] == "male", p))


# ---------------------------------------------------------------- predict types
def test_binary_types_follow_glm(sex_fit, split):
    _, testing = split
    probs = sex_fit.predict(testing, type="prob")
    response = sex_fit.predict(testing, type="response")
    link = sex_fit.predict(testing, type="link")
    assert probs.columns.tolist() == ["female", "male"]
    assert isinstance(response, pd.Series) and response.name == "sex" and response.index.equals(testing.index)
    np.testing.assert_allclose(response, probs["male"], rtol=1e-12)
    np.testing.assert_allclose(1 / (1 + np.exp(-link)), response, rtol=1e-9)
    labels = sex_fit.predict(testing)
    assert labels.equals(sex_fit.predict(testing, type="class"))
    assert (labels == "male").tolist() == (response > 0.5).tolist()


def test_multiclass_types(species_fit, split):
    _, testing = split
    probs = species_fit.predict(testing, type="prob")
    pd.testing.assert_frame_equal(species_fit.predict(testing, type="response"), probs)
    link = species_fit.predict(testing, type="link")
    assert link.columns.tolist() == ["Adelie", "Chinstrap", "Gentoo"]
    softmax = np.exp(link.to_numpy()) / np.exp(link.to_numpy()).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, probs, rtol=1e-9)
    assert species_fit.predict(testing).tolist() == probs.idxmax(axis=1).tolist()


def test_a_row_with_a_missing_predictor_is_nan_for_every_type(sex_fit, split):
    _, testing = split
    rows = testing.head(3).copy()
    rows.loc[rows.index[1], "body_mass_g"] = np.nan
    for type in ("response", "link"):
        assert sex_fit.predict(rows, type=type).isna().tolist() == [False, True, False]
    assert sex_fit.predict(rows).isna().tolist() == [False, True, False]


def test_regression_link_is_the_response(split):
    training, testing = split
    fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=training, hidden=3, epochs=2, seed=1, verbose=False)
    pd.testing.assert_series_equal(fit.predict(testing, type="link"), fit.predict(testing))
    with pytest.raises(ArgumentError, match="type must be one of 'response', 'link', 'interval' for this model, not 'prob'"):
        fit.predict(testing, type="prob")


@pytest.mark.parametrize("values", [[0, 1], [1, 2, 3, 4, 5]])
def test_a_numeric_response_of_few_whole_numbers_warns_and_says_how_to_ask_for_classes(split, values):
    training, _ = split
    data = training.assign(y=np.resize(values, len(training)))
    message = (f"The response 'y' is numeric with only {len(values)} distinct whole-number values "
               f"({', '.join(map(str, values))}), so it is fitted as a regression (mean squared error). To fit a "
               f"classifier, make it a factor in the formula: 'factor(y) ~ ...'.")
    with pytest.warns(UserWarning) as caught:
        nf.mlp("y ~ body_mass_g", data=data, hidden=[], epochs=1, seed=1, verbose=False)
    assert message in [str(w.message) for w in caught]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classes = nf.mlp("factor(y) ~ body_mass_g", data=data, hidden=[], epochs=1, seed=1, verbose=False)
        nf.mlp("body_mass_g ~ flipper_length_mm", data=data, hidden=[], epochs=1, seed=1, verbose=False)
    assert classes.task == ("binary" if len(values) == 2 else "multiclass")


# ---------------------------------------------------------------- thresholds
def test_the_threshold_decides_labels_and_evaluation(split):
    training, testing = split
    fit = nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=training, hidden=[], epochs=20, seed=1, threshold=0.3,
                 verbose=False)
    p = fit.predict(testing, type="response")
    assert fit.threshold == fit.settings["threshold"] == 0.3
    assert (fit.predict(testing) == "male").tolist() == (p > 0.3).tolist()
    scores = fit.evaluate(testing)
    truth = (testing["sex"] == "male").astype(int)
    assert scores["sensitivity"] == pytest.approx(skm.recall_score(truth, p > 0.3))
    assert scores.threshold == 0.3 and "threshold 0.3" in repr(scores).splitlines()[0]
    fit.threshold = None
    assert (fit.predict(testing) == "male").tolist() == (p > 0.5).tolist()


def test_choose_threshold_reaches_the_sensitivity_asked_for_with_the_largest_threshold(sex_fit, split):
    _, validation = split
    p = sex_fit.predict(validation, type="response").to_numpy()
    truth = (validation["sex"] == "male").to_numpy()
    chosen = sex_fit.choose_threshold(validation, sensitivity=0.9)
    assert skm.recall_score(truth, p > chosen) >= 0.9
    above = np.sort(p[p > chosen])[0]  # the next larger decision loses a positive row below 0.9
    assert skm.recall_score(truth, p > above) < 0.9
    chosen = sex_fit.choose_threshold(validation, specificity=0.8)
    assert skm.recall_score(~truth, p <= chosen) >= 0.8
    assert skm.recall_score(~truth, p <= np.sort(p[p <= chosen])[-1] - 1e-12) < 0.8


@pytest.mark.parametrize("target, score", [("balanced_accuracy", skm.balanced_accuracy_score),
                                           ("accuracy", skm.accuracy_score), ("f1", skm.f1_score)])
def test_choose_threshold_finds_the_best_score_on_the_rows_given(sex_fit, split, target, score):
    _, validation = split
    p = sex_fit.predict(validation, type="response").to_numpy()
    truth = (validation["sex"] == "male").to_numpy()
    best = max(score(truth, p > t) for t in np.concatenate([[0.0], np.unique(p)]))  # every decision there is
    chosen = sex_fit.choose_threshold(validation, target=target)
    assert score(truth, p > chosen) == pytest.approx(best)


def test_threshold_errors(sex_fit, species_fit, split):
    training, testing = split
    with pytest.raises(ArgumentError, match=r"^threshold must be a probability strictly between 0 and 1, not 1\.$"):
        nf.mlp("sex ~ body_mass_g", data=training, threshold=1, epochs=1, verbose=False)
    with pytest.raises(ArgumentError, match="^threshold is for a two-level factor response; this model's task is "
                                            "classification.$"):
        nf.mlp("species ~ body_mass_g", data=training, threshold=0.4, epochs=1, verbose=False)
    with pytest.raises(ArgumentError, match="^threshold is for a two-level factor response"):
        species_fit.threshold = 0.4
    with pytest.raises(ArgumentError, match="^choose_threshold is for a two-level factor response"):
        species_fit.choose_threshold(testing)
    with pytest.raises(ArgumentError, match="^target must be one of 'balanced_accuracy', 'accuracy', 'f1', not 'auc'.$"):
        sex_fit.choose_threshold(testing, target="auc")
    with pytest.raises(ArgumentError, match=r"^sensitivity must be a number above 0 and at most 1, not 1\.5\.$"):
        sex_fit.choose_threshold(testing, sensitivity=1.5)
    with pytest.raises(DataError, match="^choose_threshold needs rows of both levels in data.$"):
        sex_fit.choose_threshold(testing[testing["sex"] == "male"])


def test_the_threshold_survives_save_and_load(split, tmp_path):
    training, testing = split
    fit = nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=training, hidden=[], epochs=5, seed=1, threshold=0.35,
                 class_weight={"male": 2.0}, verbose=False)
    fit.save(tmp_path / "sex.nnfit")
    loaded = nf.load(tmp_path / "sex.nnfit")
    assert loaded.threshold == 0.35 and loaded.settings["class_weight"] == {"male": 2.0}
    assert loaded.predict(testing).equals(fit.predict(testing))


# ---------------------------------------------------------------- weights
def _sgd(formula, data, **options):
    return nf.mlp(formula, data=data, optimizer="sgd", lr=0.1, batch_size=None, epochs=30, seed=2, verbose=False,
                  scale=False, **options)


@pytest.mark.parametrize("hidden", [[], 4])
def test_whole_number_weights_train_as_repeated_rows(split, hidden):
    """With full batches, sum(w * loss) / sum(w) over rows is the mean over the rows repeated w times."""
    training, testing = split
    data = training.assign(mass=training["body_mass_g"] / 1000, depth=training["bill_depth_mm"] / 10)
    repeats = np.resize([1, 2, 0, 3], len(data))
    weighted = _sgd("sex ~ mass + depth", data.assign(w=repeats), weights="w", hidden=hidden)
    repeated = _sgd("sex ~ mass + depth", data.loc[data.index.repeat(repeats)], hidden=hidden)
    as_array = _sgd("sex ~ mass + depth", data, weights=repeats, hidden=hidden)
    test = testing.assign(mass=testing["body_mass_g"] / 1000, depth=testing["bill_depth_mm"] / 10)
    np.testing.assert_allclose(weighted.predict(test, type="link"), repeated.predict(test, type="link"), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(as_array.predict(test, type="link"), weighted.predict(test, type="link"), rtol=1e-6)
    assert weighted.settings["weights"] == "w" and as_array.settings["weights"] == "given"


def test_weighted_least_squares_in_closed_form(split):
    """hidden=[] with weights converges to the weighted least-squares coefficients (as lm(weights=))."""
    training, _ = split
    w = np.resize([1.0, 3.0, 0.5, 2.0], len(training))
    fit = nf.mlp("body_mass_g ~ flipper_length_mm + bill_depth_mm", data=training.assign(w=w), weights="w",
                 hidden=[], optimizer="sgd", lr=0.2, batch_size=None, epochs=1500, seed=1, verbose=False)
    X = np.column_stack([np.ones(len(training)), training[["flipper_length_mm", "bill_depth_mm"]]])
    root = np.sqrt(w)[:, None]
    beta = np.linalg.lstsq(X * root, training["body_mass_g"].to_numpy() * root[:, 0], rcond=None)[0]
    np.testing.assert_allclose(fit.coef(scale="data").to_numpy(), beta, rtol=1e-3)


def test_balanced_class_weight_equals_scikit_learns(split):
    training, _ = split
    data = training[training["species"] != "Gentoo"].assign(
        species=lambda f: f["species"].astype(str), mass=lambda f: f["body_mass_g"] / 1000)  # 2 levels, unbalanced
    levels = np.array(sorted(data["species"].unique()))
    per_level = compute_class_weight("balanced", classes=levels, y=data["species"])
    rows = pd.Series(dict(zip(levels, per_level)))[data["species"]].to_numpy()
    balanced = _sgd("species ~ mass", data, class_weight="balanced", hidden=[])
    by_rows = _sgd("species ~ mass", data, weights=rows, hidden=[])
    by_level = _sgd("species ~ mass", data, class_weight=dict(zip(levels, per_level)), hidden=[])
    assert per_level[0] != per_level[1]
    for other in (by_rows, by_level):
        np.testing.assert_allclose(balanced.predict(data, type="link"), other.predict(data, type="link"), rtol=1e-5)
    assert balanced.settings["class_weight"] == "balanced"


def test_class_weight_for_several_levels_matches_row_weights(split):
    training, testing = split
    options = {"hidden": 3, "epochs": 3, "seed": 1, "verbose": False}
    by_level = nf.mlp("species ~ bill_length_mm", data=training, class_weight={"Chinstrap": 3.0}, **options)
    rows = np.where(training["species"] == "Chinstrap", 3.0, 1.0)
    by_rows = nf.mlp("species ~ bill_length_mm", data=training, weights=rows, **options)
    np.testing.assert_allclose(by_level.predict(testing, type="prob"), by_rows.predict(testing, type="prob"), rtol=1e-5)


def test_a_weights_column_is_not_a_predictor(split):
    training, _ = split
    fit = nf.mlp("body_mass_g ~ .", data=training[["body_mass_g", "flipper_length_mm"]].assign(w=1.0), weights="w",
                 hidden=[], epochs=1, verbose=False)
    assert fit.design.columns == ["flipper_length_mm"]


def test_weight_errors(split):
    training, _ = split
    small = training.head(30)
    def call(data=small, **options):
        return nf.mlp("sex ~ body_mass_g", data=data, epochs=1, verbose=False, **options)

    with pytest.raises(DataError, match="^weights names the column 'w', which the data does not have.$"):
        call(weights="w")
    with pytest.raises(DataError, match="^weights has 3 values, but data has 30 rows; give one per row.$"):
        call(weights=[1, 2, 3])
    with pytest.raises(DataError, match="^weights must hold finite, non-negative numbers.$"):
        call(weights=np.r_[-1.0, np.ones(29)])
    with pytest.raises(DataError, match="^the weights column 'w' is missing for 1 rows used for fitting"):
        call(data=small.assign(w=np.r_[np.nan, np.ones(29)]), weights="w")
    with pytest.raises(DataError, match="^weights sums to zero"):
        call(weights=np.zeros(30))
    with pytest.raises(ArgumentError, match="^class_weight names the level 'Male', which the response does not have "
                                            r"\(levels: female, male\).$"):
        call(class_weight={"Male": 2})
    with pytest.raises(ArgumentError, match="^class_weight must be 'balanced' or a dict"):
        call(class_weight="even")
    with pytest.raises(ArgumentError, match="^class_weight is for a factor response; for a numeric one, use weights=.$"):
        nf.mlp("body_mass_g ~ bill_depth_mm", data=small, class_weight="balanced", epochs=1, verbose=False)


# ---------------------------------------------------------------- validation data frames
def test_valid_takes_a_data_frame_encoded_with_the_training_design(split):
    training, testing = split
    validation = testing.copy()
    validation.loc[validation.index[:2], "flipper_length_mm"] = np.nan
    with pytest.warns(nf.errors.MissingValuesWarning, match="Left out 2 of"):
        fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=training, valid=validation, hidden=3, epochs=4,
                     seed=1, verbose=False)
    assert fit.settings["valid"] == "data frame"
    assert fit.settings["n_valid"] == len(validation) - 2 and fit.settings["n_valid_left_out"] == 2
    assert fit.settings["n_train"] == len(training)
    last = fit.metrics.query("set == 'valid' and epoch == 4").set_index("metric")["value"]
    assert last["mae"] == pytest.approx(fit.evaluate(validation)["mae"], rel=1e-4)  # grams, on the rows it could score


def test_an_ensemble_validates_on_the_data_frame_too(split):
    training, testing = split
    ensemble = nf.mlp("species ~ bill_length_mm", data=training, valid=testing, hidden=3, epochs=2, seed=1,
                      n_models=2, verbose=False)
    assert ensemble.settings["n_valid"] == len(testing) and ensemble.settings["n_train"] == len(training)
    assert ensemble.settings["valid"] == "data frame"
    last = ensemble.metrics.query("set == 'valid' and epoch == 2 and metric == 'accuracy'")["value"]
    by_model = ensemble.evaluate(testing, by_model=True)["accuracy"]
    np.testing.assert_allclose(sorted(last), sorted(by_model), rtol=1e-6)


def test_valid_errors(split):
    training, testing = split
    with pytest.raises(ArgumentError, match="^valid must be a fraction of the training rows or a data frame of "
                                            "validation rows, not str.$"):
        nf.mlp("sex ~ body_mass_g", data=training, valid="testing", epochs=1, verbose=False)
    with pytest.raises(DataError, match="^valid needs the response: the validation data has no column 'sex'.$"):
        nf.mlp("sex ~ body_mass_g", data=training, valid=testing.drop(columns="sex"), epochs=1, verbose=False)


def test_training_records_accuracy_at_the_fits_threshold_and_print_says_so(split):
    training, testing = split
    fit = nf.mlp("sex ~ body_mass_g + bill_depth_mm", data=training.assign(w=2.0), weights="w", class_weight="balanced",
                 threshold=0.3, valid=testing, hidden=[], epochs=3, seed=1, verbose=False)
    last = fit.metrics.query("set == 'valid' and epoch == 3 and metric == 'accuracy'")["value"].item()
    assert last == pytest.approx(fit.evaluate(testing)["accuracy"], rel=1e-6)
    assert "  case weights 'w'; class weights balanced; decision threshold 0.3 on P('male')" in repr(fit).splitlines()

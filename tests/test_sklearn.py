"""nnfit.sklearn: scikit-learn's estimator checks, clone, Pipeline, cross-validation, grid search."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import nnfit as nf
from nnfit.train import learner as learner_module
from nnfit.train import fused
from nnfit.errors import ArgumentError, DataError, MissingValuesWarning
from nnfit.sklearn import EXPECTED_FAILED_CHECKS, MLPClassifier, MLPRegressor

# Skipped by scikit-learn itself, not by us: it needs SCIPY_ARRAY_API=1 and an array-API library.
SKIPPED_CHECKS = {"check_array_api_input"}


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, 2.0, -1.0]) + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize("estimator", [MLPRegressor(), MLPClassifier()], ids=lambda e: type(e).__name__)
def test_check_estimator(estimator):
    results = check_estimator(estimator, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None, on_skip=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert failed == {}
    assert {r["check_name"] for r in results if r["status"] == "xfail"} == set(EXPECTED_FAILED_CHECKS)
    assert {r["check_name"] for r in results if r["status"] == "skipped"} == SKIPPED_CHECKS
    assert len([r for r in results if r["status"] == "passed"]) > 50


@pytest.mark.parametrize("random_state", range(20))
@pytest.mark.parametrize("estimator", [MLPRegressor, MLPClassifier], ids=lambda e: e.__name__)
def test_check_estimator_at_twenty_random_states(estimator, random_state):
    """The flaky order-invariance check (probabilities 3.6e-7 apart) holds at every state:
    predictions are made in blocks of one size, so a row never depends on the rows with it."""
    results = check_estimator(estimator(epochs=10, random_state=random_state),
                              expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None, on_skip=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert failed == {}
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert {"check_methods_sample_order_invariance", "check_methods_subset_invariance"} <= passed


def test_predictions_are_bitwise_the_same_alone_and_among_other_rows():
    X, y = _data(n=300)
    for model in (MLPRegressor(hidden=16, epochs=3, random_state=0).fit(X, y),
                  MLPClassifier(hidden=16, epochs=3, random_state=0).fit(X, np.where(y > 0, "a", "b"))):
        method = model.predict if isinstance(model, MLPRegressor) else model.predict_proba
        full = method(X)
        order = np.random.default_rng(1).permutation(len(X))
        assert np.array_equal(method(X[order]), full[order])
        assert all(np.array_equal(method(X[i : i + 1]), full[i : i + 1]) for i in (0, 1, 150, 299))


def test_clone_keeps_every_parameter():
    params = dict(hidden=[7, 3], activation="tanh", dropout=[0.1, 0.2], optimizer="adam", lr=0.02, epochs=4,
                  batch_size=16, weight_decay=1e-4, n_models=1, random_state=3, class_weight={"a": 2.0, "b": 1.0},
                  device="cpu", verbose=False, warm_start=True, formula=None, distributed=False)
    original = MLPClassifier(**params)
    copied = clone(original)
    assert copied.get_params() == params
    X, y = _data()
    copied.fit(X, np.where(y > 0, "a", "b"))
    assert copied.n_iter_ == 4
    assert copied.module_.sizes == [7, 3]
    assert copied.module_.activations == ["tanh", "tanh"]
    assert copied.module_.dropouts == [0.1, 0.2]
    assert copied.learner_.opt_hparams == {"lr": 0.02, "weight_decay": 1e-4}
    assert isinstance(copied.module_.hidden[0], torch.nn.Linear) and copied.learner_.optimizer is torch.optim.Adam


def test_grid_search_in_a_pipeline_trains_every_candidate_as_asked(penguins):
    data = penguins.dropna()
    X, y = data.drop(columns=["body_mass_g", "year"]), data["body_mass_g"].to_numpy()
    pipeline = Pipeline([
        ("encode", ColumnTransformer([
            ("factors", OneHotEncoder(), ["species", "island", "sex"]),
            ("numbers", StandardScaler(), ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]),
        ])),
        ("net", MLPRegressor(random_state=1)),
    ])
    # Each scorer reads what the candidate actually trained, not what it was asked to.
    scoring = {
        "r2": "r2",
        "epochs": lambda est, X, y: est[-1].n_iter_,
        "lr": lambda est, X, y: est[-1].learner_.opt_hparams["lr"],
        "hidden": lambda est, X, y: est[-1].module_.sizes[0],
        "inputs": lambda est, X, y: est[-1].n_features_in_,
    }
    candidates = {"net__hidden": [4, 16], "net__lr": [0.03, 0.003], "net__epochs": [3, 7]}
    grid = GridSearchCV(pipeline, candidates, scoring=scoring, refit="r2",
                        cv=KFold(2, shuffle=True, random_state=0), error_score="raise").fit(X, y)
    results = grid.cv_results_
    assert len(results["params"]) == 8
    assert results["mean_test_epochs"].tolist() == [float(v) for v in results["param_net__epochs"]]
    assert results["mean_test_lr"].tolist() == [float(v) for v in results["param_net__lr"]]
    assert results["mean_test_hidden"].tolist() == [float(v) for v in results["param_net__hidden"]]
    assert results["mean_test_inputs"].tolist() == [11.0] * 8  # 3 + 3 + 2 dummies, 3 numbers
    assert grid.best_estimator_[-1].n_iter_ == grid.best_params_["net__epochs"]
    assert grid.best_score_ > 0.5


def test_cross_val_score_matches_a_manual_loop():
    X, y = _data()
    model = MLPRegressor(hidden=8, epochs=15, random_state=0)
    folds = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(model, X, y, cv=folds)
    manual = [clone(model).fit(X[a], y[a]).score(X[b], y[b]) for a, b in folds.split(X)]
    np.testing.assert_allclose(scores, manual, rtol=1e-12)
    assert scores.min() > 0.8


def test_predict_proba_and_classes():
    X, y = _data()
    labels = np.select([y < -1, y < 1], ["low", "mid"], "high")
    model = MLPClassifier(hidden=16, epochs=40, random_state=0).fit(X, labels)
    assert model.classes_.tolist() == ["high", "low", "mid"]
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert model.predict(X).tolist() == model.classes_[proba.argmax(axis=1)].tolist()
    np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba))
    assert model.score(X, labels) == np.mean(model.predict(X) == labels)
    binary = MLPClassifier(hidden=4, epochs=5, random_state=0).fit(X, y > 0)
    assert binary.classes_.tolist() == [False, True]
    assert binary.module_.output_size == 1  # one logit for two classes
    assert binary.predict_proba(X).shape == (120, 2)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_feature_names_and_n_features(penguins):
    data = penguins.dropna()[["bill_length_mm", "bill_depth_mm", "body_mass_g"]]
    model = MLPRegressor(hidden=4, epochs=2, random_state=0).fit(data[["bill_length_mm", "bill_depth_mm"]],
                                                                  data["body_mass_g"])
    assert model.n_features_in_ == 2
    assert model.feature_names_in_.tolist() == ["bill_length_mm", "bill_depth_mm"]
    with pytest.raises(ValueError, match="X has 1 features, but MLPRegressor is expecting 2 features as input"):
        model.predict(data[["bill_length_mm"]].to_numpy())


def test_sample_weight_gives_the_weighted_mean():
    # Inputs carry no information, so a linear model learns its bias: the weighted mean of y.
    X, y = np.zeros((40, 2)), np.repeat([0.0, 1.0], 20)
    weights = np.repeat([3.0, 1.0], 20)
    model = MLPRegressor(hidden=[], optimizer="adam", lr=0.05, epochs=150, batch_size=None, random_state=0)
    assert model.fit(X, y, sample_weight=weights).predict(X[:1])[0] == pytest.approx(0.25, abs=1e-3)
    assert model.fit(X, y).predict(X[:1])[0] == pytest.approx(0.5, abs=1e-3)
    # Small batches in which every row weighs 0 train on nothing, rather than failing.
    zeros_first = MLPRegressor(hidden=[], epochs=3, batch_size=2, random_state=0)
    zeros_first.fit(X, y, sample_weight=np.repeat([0.0, 1.0], 20))
    assert np.isfinite(zeros_first.loss_curve_).all()


def test_class_weight_is_a_sample_weight_per_class_and_weights_are_scale_free():
    X, y = _data()
    labels = np.where(y > 1, "rare", "common")
    by_class = MLPClassifier(hidden=4, epochs=5, random_state=0, class_weight={"rare": 3.0}).fit(X, labels)
    by_row = MLPClassifier(hidden=4, epochs=5, random_state=0).fit(X, labels, sample_weight=np.where(labels == "rare", 3.0, 1.0))
    np.testing.assert_array_equal(by_class.predict_proba(X), by_row.predict_proba(X))
    scaled = MLPClassifier(hidden=4, epochs=5, random_state=0).fit(X, labels, sample_weight=np.where(labels == "rare", 30.0, 10.0))
    np.testing.assert_allclose(scaled.predict_proba(X), by_row.predict_proba(X), rtol=1e-5)
    balanced = MLPClassifier(hidden=4, epochs=30, random_state=0, class_weight="balanced").fit(X, labels)
    plain = MLPClassifier(hidden=4, epochs=30, random_state=0).fit(X, labels)
    rare = labels == "rare"
    # Balanced weights trade common-class accuracy for recall on the rare class.
    assert (balanced.predict(X)[rare] == "rare").mean() >= (plain.predict(X)[rare] == "rare").mean()
    with pytest.raises(ArgumentError, match=r"^class_weight names 'other', which is not one of the classes \['common', 'rare'\].$"):
        MLPClassifier(epochs=1, class_weight={"other": 2.0}).fit(X, labels)


def test_partial_fit_counts_epochs_and_continues():
    X, y = _data()
    model = MLPRegressor(hidden=8, random_state=0)
    for _ in range(3):
        model.partial_fit(X, y)
    assert model.n_iter_ == 3
    assert model.history_["epoch"].tolist() == [1, 2, 3]
    assert len(model.loss_curve_) == 3 and model.loss_curve_[2] < model.loss_curve_[0]
    classifier = MLPClassifier(hidden=4)
    with pytest.raises(ArgumentError, match="^classes must be passed on the first call to partial_fit.$"):
        classifier.partial_fit(X, y > 0)
    classifier.partial_fit(X[:10], np.full(10, "a"), classes=["a", "b"])
    assert classifier.classes_.tolist() == ["a", "b"]
    with pytest.raises(DataError, match=r"^y has the label 'c', which is not one of the classes \['a', 'b'\].$"):
        classifier.partial_fit(X[:10], np.full(10, "c"))


def test_warm_start_continues_from_the_last_fit():
    X, y = _data()
    warm = MLPRegressor(hidden=8, epochs=5, random_state=0, warm_start=True).fit(X, y)
    first = warm.loss_curve_[-1]
    warm.fit(X, y)
    assert warm.n_iter_ == 10 and len(warm.loss_curve_) == 10
    assert warm.loss_curve_[5] < 2 * first  # it starts where it left off, not from scratch
    cold = MLPRegressor(hidden=8, epochs=5, random_state=0).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 5 and cold.loss_curve_[0] > 2 * first


def test_n_models_other_than_one_is_a_clear_error():
    X, y = _data()
    with pytest.raises(ArgumentError, match=r"^n_models=3: a scikit-learn estimator here fits one network; use n_models=1, or nf\.mlp\(formula, data, n_models=3\) for an ensemble\.$"):
        MLPRegressor(n_models=3).fit(X, y)


def test_formula_mode_takes_data_frames(penguins):
    training, testing = nf.split(penguins, prop=0.8, seed=1)
    with pytest.warns(MissingValuesWarning, match="^Left out 10 of 275 rows with a missing value"):
        model = MLPRegressor(formula="body_mass_g ~ . - year", epochs=10, random_state=1).fit(training)
    # R's model.frame keeps a variable that "- year" takes out of the terms: new data needs it too
    assert model.feature_names_in_.tolist() == ["species", "island", "bill_length_mm", "bill_depth_mm",
                                                "flipper_length_mm", "sex", "year"]
    predictions = model.predict(testing)
    fitted = model.fitted_model()
    np.testing.assert_array_equal(predictions, fitted.predict(testing).to_numpy())
    assert np.isnan(predictions).sum() == testing[model.feature_names_in_].isna().any(axis=1).sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingValuesWarning)
        assert model.score(testing) == pytest.approx(fitted.evaluate(testing)["r2"], rel=1e-9)
    with pytest.raises(DataError, match="^sample_weight sums to zero; at least one row needs a positive weight.$"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingValuesWarning)
            MLPRegressor(formula="body_mass_g ~ . - year", epochs=1).fit(training, sample_weight=np.zeros(len(training)))
    # y given separately fills in the response.
    numbers = training.dropna()
    separate = MLPRegressor(formula="body_mass_g ~ . - year", epochs=10, random_state=1).fit(
        numbers.drop(columns="body_mass_g"), numbers["body_mass_g"])
    np.testing.assert_allclose(separate.predict(numbers), MLPRegressor(
        formula="body_mass_g ~ . - year", epochs=10, random_state=1).fit(numbers).predict(numbers))


def test_formula_classifier_in_cross_validation(penguins, quiet):
    data = penguins.dropna()
    model = MLPClassifier(formula="species ~ . - year", hidden=8, epochs=15, random_state=1)
    scores = cross_val_score(model, data, cv=KFold(3, shuffle=True, random_state=0))
    assert scores.min() > 0.9
    fitted = clone(model).fit(data)
    assert fitted.classes_.tolist() == ["Adelie", "Chinstrap", "Gentoo"]
    assert fitted.predict(data.iloc[:3]).tolist() == fitted.fitted_model().predict(data.iloc[:3]).tolist()
    with pytest.raises(DataError, match=r"^MLPClassifier needs a factor response; 'body_mass_g' is numeric"):
        MLPClassifier(formula="body_mass_g ~ .", epochs=1).fit(data)


def _autograd_only(learner, callbacks=None):
    """In place of fused.learner_for: every fit keeps the autograd learner."""
    return learner


def _three_fits(make, X, y, **fit_options):
    """A fit, a warm refit and a partial_fit: the predictions after each."""
    model = make().set_params(warm_start=True)
    method = model.predict if isinstance(model, MLPRegressor) else model.predict_proba
    model.fit(X, y, **fit_options)
    first = method(X)
    model.fit(X, y, **fit_options)
    second = method(X)
    model.partial_fit(X, y, **fit_options)
    return model, [first, second, method(X)]


ESTIMATORS = {
    "regressor, rmsprop, dropout": (lambda: MLPRegressor(hidden=[8, 4], dropout=[0.2, 0.1], lr=0.01, epochs=4,
                                                         random_state=0), "numbers", {}),
    "regressor, two targets, adam, weight decay": (lambda: MLPRegressor(hidden=6, optimizer="adam", weight_decay=1e-3,
                                                                        epochs=3, batch_size=16, random_state=1),
                                                   "two numbers", {}),
    "binary classifier, sample weights": (lambda: MLPClassifier(hidden=6, dropout=0.3, optimizer="adamw", epochs=4,
                                                                random_state=2), "two labels", {"weighted": True}),
    "three classes, class weights, sgd": (lambda: MLPClassifier(hidden=[6, 4], activation="tanh", optimizer="sgd",
                                                                lr=0.1, epochs=4, random_state=3,
                                                                class_weight="balanced"), "three labels", {}),
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fit_warm_start_and_partial_fit_train_in_closed_form_as_autograd_trains(name, monkeypatch):
    make, target, options = ESTIMATORS[name]
    X, y = _data()
    y = {"numbers": y, "two numbers": np.column_stack([y, X[:, 0]]), "two labels": y > 0,
         "three labels": np.select([y < -1, y < 1], ["low", "mid"], "high")}[target]
    fit_options = {"sample_weight": np.linspace(0.2, 3.0, len(X))} if options.get("weighted") else {}
    fast, fast_predictions = _three_fits(make, X, y, **fit_options)
    monkeypatch.setattr(learner_module, "learner_for", _autograd_only)
    slow, slow_predictions = _three_fits(make, X, y, **fit_options)
    assert type(fast.learner_) is learner_module.FusedLearner and type(slow.learner_) is nf.Learner
    assert fast.n_iter_ == slow.n_iter_ == 2 * make().epochs + 1
    for a, b in zip(fast_predictions, slow_predictions):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast.loss_curve_, slow.loss_curve_, rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_a_warm_start_goes_on_from_either_optimizers_state(optimizer, monkeypatch):
    """A fit on one path and a partial_fit on the other continue the running averages and step
    counts, as two fits on one path do (the closed-form and torch states are converted)."""
    X, y = _data()
    def make():
        return MLPRegressor(hidden=8, optimizer=optimizer, lr=0.01, epochs=3, random_state=0)

    with monkeypatch.context() as patched:
        patched.setattr(learner_module, "learner_for", _autograd_only)
        autograd_then_fast = make().fit(X, y)
        autograd_all_along = make().fit(X, y).partial_fit(X, y)
    fast_then_autograd = make().fit(X, y)
    fast_all_along = make().fit(X, y).partial_fit(X, y)
    autograd_then_fast.partial_fit(X, y)
    with monkeypatch.context() as patched:
        patched.setattr(learner_module, "learner_for", _autograd_only)
        fast_then_autograd.partial_fit(X, y)
    assert type(autograd_then_fast.learner_) is learner_module.FusedLearner and type(fast_then_autograd.learner_) is nf.Learner
    expected = fast_all_along.predict(X)
    np.testing.assert_allclose(autograd_all_along.predict(X), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(autograd_then_fast.predict(X), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast_then_autograd.predict(X), expected, rtol=1e-5, atol=1e-5)
    # without the saved state the partial_fit would differ: the state is what carries over
    restarted = make().fit(X, y)
    del restarted._optimizer_state
    assert np.abs(restarted.partial_fit(X, y).predict(X) - expected).max() > 1e-3


def test_options_outside_the_closed_form_keep_autograd():
    X, y = _data()
    for model in (MLPRegressor(hidden=4, activation="elu", epochs=2, random_state=0, warm_start=True),
                  MLPRegressor(hidden=4, optimizer="adagrad", epochs=2, random_state=0, warm_start=True)):
        model.fit(X, y).fit(X, y)
        assert type(model.learner_) is nf.Learner and model.n_iter_ == 4


def test_equal_weights_are_no_weights_to_the_bit():
    X, y = _data()
    labels = np.where(y > 0, "a", "b")
    for make, target in ((lambda: MLPRegressor(hidden=8, epochs=5, random_state=0), y),
                         (lambda: MLPClassifier(hidden=8, epochs=5, random_state=0), labels)):
        method = "predict" if target is y else "predict_proba"
        plain = getattr(make().fit(X, target), method)(X)
        doubled = getattr(make().fit(X, target, sample_weight=np.full(len(X), 2.0)), method)(X)
        np.testing.assert_array_equal(plain, doubled)


def test_a_warm_start_leaves_torchs_generator_alone():
    X, y = _data()
    model = MLPRegressor(hidden=8, dropout=0.2, epochs=2, random_state=0).fit(X, y)
    state = torch.get_rng_state()
    model.partial_fit(X, y)
    assert torch.equal(torch.get_rng_state(), state)

"""scikit-learn estimators on nnfit's engine: ``MLPRegressor`` and ``MLPClassifier``.

They are a face over the pieces below: ``nnfit.modules.MLP`` is the network,
``nnfit.train.learner.setup(...).fit`` trains it, and with ``formula=`` a ``nnfit.Design`` encodes
data frames (factors, levels and scaling learned on the training data only). As for
``nf.mlp``, ``nnfit.train.learner.learner_for`` decides the step: closed-form gradients for the
activations, losses and optimizers it knows (weighted rows, warm starts and ``partial_fit``
included), autograd otherwise; both train the same network to float rounding. Every
hyperparameter is a constructor argument, so ``clone``, ``Pipeline``, ``cross_val_score`` and
``GridSearchCV`` see and keep all of them: a grid search over ``lr`` trains every candidate
for the ``epochs`` it was given.

Inputs are standardized with the training mean and standard deviation (as ``nf.mlp`` does),
and so is a regression target; predictions come back in the target's own units and labels.

``sample_weight`` and ``class_weight`` go to the engine's ``fit(sample_weight=,
class_weight=)``: each batch's loss is the weighted mean sum(w * loss) / sum(w). Equal
weights are no weights: they train on the plain mean, to the bit.

Both pass ``sklearn.utils.estimator_checks.check_estimator`` (tested at 20 random states)
except for the checks in ``EXPECTED_FAILED_CHECKS``, with the reason: stochastic mini-batch training cannot make a row
of weight 2 the same as two copies of the row (the shuffled batches differ). scikit-learn
itself skips ``check_array_api_input`` unless SCIPY_ARRAY_API=1 is set; these estimators take
numpy (and pandas, polars) input, not the array API. Predictions go through the network in
blocks of one size (``nnfit.train.prediction.predict_in_blocks``), so a row's prediction is the same,
to the bit, whatever rows are passed with it and in whatever order.

``n_models`` accepts only 1: an estimator here is one network, whose sample weights, class
weights, ``partial_fit`` and ``warm_start`` the stacked trainer does not carry. Any other value
is an ``ArgumentError`` at fit that points to ``nf.mlp(..., n_models=K)`` for ensembles.

>>> import numpy as np
>>> from nnfit.sklearn import MLPRegressor
>>> X = np.random.default_rng(0).normal(size=(100, 3)); y = X @ [1.0, 2.0, -1.0]
>>> model = MLPRegressor(hidden=10, epochs=20, random_state=0).fit(X, y)
>>> model.predict(X[:2]).shape
(2,)
"""

from __future__ import annotations


import numpy as np
import torch

from .errors import ArgumentError, DataError, MissingDependencyError

try:  # absolute imports: this is scikit-learn, not this module
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data
except ImportError:
    raise MissingDependencyError("nnfit.sklearn needs scikit-learn 1.6 or later: pip install 'nnfit[sklearn]'.") from None
from torch import nn

from .train import closed_form
from .train import learner as learner_module
from .train.callbacks import Callback
from .design import Design, column_stats, as_pandas, warn_left_out
from .errors import check_rate
from .train.distributed import choice
from .train.learner import setup
from .train.prediction import predict_in_blocks
from .mlpfit import MLPFit, optimizer_name
from .recipe import DEFAULTS
from .scores import probabilities
from .modules import MLP, check_architecture
from .train.optimizers import resolve as resolve_optimizer

# check_estimator's checks that stochastic mini-batch training cannot pass, with the reason.
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "mini-batch SGD: a row of weight 2 is not the same as two copies of the row, because the "
        "shuffled batches differ"
    ),
}


class _Resume(Callback):
    """Puts the last fit's optimizer state (running averages, step counts) into this fit's optimizer.

    Without it, each warm start or ``partial_fit`` would restart RMSprop or Adam from empty
    averages, whose first steps are far too large. The state may come from a torch optimizer
    or from the closed-form one (``nnfit.train.closed_form.Optimizer``), whichever trained last; the
    hyperparameters are those asked for now, not the saved ones. It acts once, before the
    first step, so the closed-form path keeps it.
    """

    needs_autograd = False

    def __init__(self, state: dict, hparams: dict):
        self.state, self.hparams = state, hparams

    def on_fit_begin(self, ctx):
        optimizer = ctx.opt
        optimizer.load_state_dict(_state_for(optimizer, self.state))
        for group in optimizer.param_groups:
            group.update(self.hparams)


# the closed-form optimizer's buffer names -> torch.optim's (the others are the same in both)
_TORCH_BUFFER_NAMES = {"momentum": "momentum_buffer"}


def _state_for(optimizer, state: dict) -> dict:
    """``state`` (a torch optimizer's ``state_dict()`` or the closed-form one's) in ``optimizer``'s own form."""
    closed = "steps" in state["state"]
    if isinstance(optimizer, closed_form.Optimizer) == closed:
        return state
    options = {key: value for key, value in state["param_groups"][0].items() if key != "params"}
    if closed:  # flat buffers -> one torch state per parameter
        params, offset, per_param = optimizer.param_groups[0]["params"], 0, {}
        for index, param in enumerate(params):
            size = param.numel()
            per_param[index] = {"step": torch.tensor(float(state["state"]["steps"]))}
            for name, buffer in state["state"]["buffers"].items():
                per_param[index][_TORCH_BUFFER_NAMES.get(name, name)] = buffer[offset : offset + size].view_as(param)
            offset += size
        return {"state": per_param, "param_groups": [{**options, "params": list(range(len(params)))}]}
    per_param = [state["state"].get(index, {}) for index in state["param_groups"][0]["params"]]
    steps = max([int(s["step"]) for s in per_param if "step" in s], default=0)
    buffers = {}
    for name in ("momentum", "square_avg", "exp_avg", "exp_avg_sq"):
        torch_name = _TORCH_BUFFER_NAMES.get(name, name)
        if per_param and all(s.get(torch_name) is not None for s in per_param):  # SGD without momentum has none
            buffers[name] = torch.cat([s[torch_name].reshape(-1) for s in per_param])
    return {"state": {"steps": steps, "buffers": buffers}, "param_groups": [options]}


def _network_from(network, module_class):
    """``network`` as an instance of ``module_class`` (``MLP``, or the fused trainer's), same weights.

    Building one draws initial weights: leave torch's generator alone, so a warm start draws
    its dropout masks as when it deep-copied the network.
    """
    if type(network) is module_class:
        return network
    with torch.random.fork_rng(devices=[]):
        built = module_class(**network.architecture())
    built.load_state_dict(network.state_dict())
    return built


class _NetworkEstimator(BaseEstimator):
    """What the regressor and the classifier share: encoding, training, history."""

    _task_kind = None  # "regression" or "classification"

    def __init__(self, hidden=DEFAULTS["hidden"], activation=DEFAULTS["activation"], dropout=DEFAULTS["dropout"],
                 optimizer=DEFAULTS["optimizer"], lr=DEFAULTS["lr"], epochs=DEFAULTS["epochs"],
                 batch_size=DEFAULTS["batch_size"], weight_decay=DEFAULTS["weight_decay"], n_models=1, random_state=None,
                 device="auto", verbose=False,
                 warm_start=False, formula=None, distributed=None):
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.n_models = n_models
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.warm_start = warm_start
        self.formula = formula
        self.distributed = distributed

    # ------------------------------------------------------------------ training
    def fit(self, X, y=None, sample_weight=None):
        """Train for ``epochs`` epochs (continuing from the last fit when ``warm_start``)."""
        return self._fit(X, y, sample_weight, epochs=self.epochs, keep=self.warm_start)

    def _fit(self, X, y, sample_weight, epochs, keep, classes=None):
        with choice(self.distributed):  # fit and partial_fit: data-parallel under torchrun unless False
            return self._fit_here(X, y, sample_weight, epochs, keep, classes)

    def _fit_here(self, X, y, sample_weight, epochs, keep, classes=None):
        if self.n_models != 1:
            raise ArgumentError(
                f"n_models={self.n_models!r}: a scikit-learn estimator here fits one network; use n_models=1, "
                f"or nf.mlp(formula, data, n_models={self.n_models!r}) for an ensemble."
            )
        check_rate("lr", self.lr, allow_none=True)
        check_rate("weight_decay", self.weight_decay, allow_zero=True)
        keep = keep and hasattr(self, "module_")
        if not keep:
            for name in ("module_", "n_iter_", "loss_curve_", "_records", "_optimizer_state"):
                self.__dict__.pop(name, None)
        X, y, sample_weight = self._encode(X, y, sample_weight, reset=not keep, classes=classes)
        if sample_weight is not None and not np.sum(sample_weight) > 0:
            raise DataError("sample_weight sums to zero; at least one row needs a positive weight.")
        if sample_weight is not None and np.all(sample_weight == sample_weight[0]):
            sample_weight = None  # equal weights are no weights: both train on the plain mean, to the bit
        self._train(X, self._target(y), epochs, sample_weight)
        return self

    def _train(self, X, y, epochs, sample_weight):
        seed = check_random_state(self.random_state).randint(2**31 - 1) + getattr(self, "n_iter_", 0)
        if hasattr(self, "module_"):  # warm: the network goes on as it is
            architecture = self.module_.architecture()
        else:
            sizes, activations, dropouts = check_architecture(self.hidden, self.activation, self.dropout)
            architecture = {"input_size": X.shape[1], "hidden": sizes, "output_size": self._n_outputs(),
                            "activation": activations, "dropout": dropouts}
        opt_hparams = {**({"lr": self.lr} if self.lr is not None else {}),
                       **({"weight_decay": self.weight_decay} if self.weight_decay else {})}
        learner = (setup(MLP, loss=self._loss(), optimizer=resolve_optimizer(self.optimizer))
                   .set_hparams(**architecture).set_opt_hparams(**opt_hparams))
        callbacks = [_Resume(self._optimizer_state, opt_hparams)] if hasattr(self, "_optimizer_state") else []
        learner = learner_module.learner_for(learner, callbacks)  # closed-form gradients when the network allows (as nf.mlp)
        if hasattr(self, "module_"):
            learner.module = _network_from(self.module_, learner.module)
        fitted = learner.fit(
            (torch.as_tensor(X, dtype=torch.float32), y), epochs=epochs, batch_size=self.batch_size,
            callbacks=callbacks, device=self.device, verbose=bool(self.verbose), seed=seed,
            sample_weight=sample_weight, class_weight=self._class_weight_by_code(),
        )
        done = getattr(self, "n_iter_", 0)
        self.module_ = fitted.model.cpu().eval()
        self._optimizer_state = fitted.ctx.opt.state_dict()
        self.learner_ = learner
        self._records = getattr(self, "_records", []) + [(s, m, done + e, v) for s, m, e, v in fitted.records]
        self.n_iter_ = done + fitted.epochs_run
        self._n_train = len(X)
        self.loss_curve_ = [v for s, m, e, v in self._records if s == "train" and m == "loss"]

    def _class_weight_by_code(self):
        return None

    # ------------------------------------------------------------------ encoding
    def _encode(self, X, y, sample_weight, reset, classes=None):
        """Standardized float inputs, targets (scaled numbers or class codes) and weights."""
        if self.formula is not None:
            return self._encode_frame(X, y, sample_weight, reset)
        if reset and y is None:
            validate_data(self, X, y)  # raises scikit-learn's "requires y" error
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float64, **self._target_options())
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        if reset:
            self.center_, self.scale_ = column_stats(X)
        return (X - self.center_) / self.scale_, self._encode_target(y, reset, classes), sample_weight

    def _encode_frame(self, X, y, sample_weight, reset):
        frame = self._with_response(X, y)
        if reset:
            self.design_ = Design(
                self.formula, scale=True, scale_response=self._task_kind == "regression", intercept=False
            ).fit(frame)
            self.n_features_in_ = len(self.design_.predictors)
            self.feature_names_in_ = np.asarray(self.design_.predictors, dtype=object)
            if self._task_kind == "classification":
                if self.design_.response_kind != "factor":
                    raise DataError(
                        f"MLPClassifier needs a factor response; {self.design_.lhs_!r} is numeric "
                        "(make it a pandas Categorical, or use MLPRegressor)."
                    )
                self.classes_ = np.asarray(self.design_.levels, dtype=object)
        matrices = self.design_.transform(frame, response=True)
        warn_left_out(matrices, len(frame))
        if matrices.y is None or not len(matrices.X):
            raise DataError("No rows to train on: every row has a missing value.")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)[matrices.rows]
        return matrices.X, matrices.y, sample_weight

    def _with_response(self, X, y):
        """The data frame, with ``y`` as its response column when given separately."""
        frame = as_pandas(X)
        if y is not None:
            response = self.formula.partition("~")[0].strip()
            if response not in frame.columns and not response.isidentifier():
                raise ArgumentError(
                    f"With formula={self.formula!r}, pass the response inside the data frame, not as y."
                )
            frame = frame.assign(**{response: np.asarray(y) if not hasattr(y, "to_numpy") else y.to_numpy()})
        return frame

    # ------------------------------------------------------------------ predicting
    def _outputs(self, X):
        """Raw network outputs (float64) for the rows of ``X``; all rows are complete."""
        check_is_fitted(self, "module_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        inputs = torch.as_tensor((X - self.center_) / self.scale_, dtype=torch.float32)
        with torch.no_grad():  # in blocks of one size: a row's prediction never depends on the others passed
            return predict_in_blocks(self.module_.eval(), inputs).double().numpy()

    def fitted_model(self) -> MLPFit:
        """The formula fit as an ``nf.MLPFit``: print, coef, evaluate, save, plot."""
        return self._fitted_model()

    def _fitted_model(self):
        """The formula fit as an ``MLPFit`` (predict, evaluate, coef, save, print)."""
        check_is_fitted(self, "module_")
        settings = {
            "formula": self.formula, "optimizer": optimizer_name(resolve_optimizer(self.optimizer)), "lr": self.lr,
            "weight_decay": self.weight_decay, "epochs": self.epochs, "batch_size": self.batch_size, "valid": None,
            "seed": self.random_state if isinstance(self.random_state, int) else None, "n_train": self._n_train,
            "n_left_out": self.design_.n_left_out_, "seconds": None, "threads": None,
        }
        task = "regression" if self._task_kind == "regression" else "binary" if len(self.classes_) == 2 else "multiclass"
        return MLPFit(self.design_, self.module_, task, self._records, settings)  # a refit replaces module_, never changes it

    @property
    def history_(self):
        """Training history as a long DataFrame: set, metric, epoch, value (epochs count on across warm starts)."""
        import pandas as pd

        check_is_fitted(self, "module_")
        return pd.DataFrame(self._records, columns=["set", "metric", "epoch", "value"])

    def _response_of(self, X):
        """(rows the design can score, their true values) for formula mode's score(X)."""
        frame = as_pandas(X)
        matrices = self.design_.transform(frame, response=True)
        truth = frame.loc[matrices.rows, self.design_.response]
        return frame.loc[matrices.rows], truth.iloc[:, 0] if truth.shape[1] == 1 else truth

    def _score_data(self, X, y):
        if self.formula is not None and y is None:
            check_is_fitted(self, "module_")
            return self._response_of(X)
        return X, y

    def _target(self, y):
        """The encoded target as the loss wants it."""
        raise NotImplementedError

    def _loss(self):
        raise NotImplementedError

    def _n_outputs(self) -> int:
        raise NotImplementedError


class MLPRegressor(RegressorMixin, _NetworkEstimator):
    """A multilayer perceptron regressor on nnfit's engine, for scikit-learn.

    Parameters
    ----------
    hidden : units per hidden layer, a number or a list (``[]`` is the linear model).
    activation, dropout : one value, or one per hidden layer ("relu", "tanh", "sigmoid", ...).
    optimizer : "rmsprop", "adam", "sgd", "adamw", "adagrad" or a torch.optim class.
    lr : learning rate (default: the optimizer's own); ``weight_decay`` its L2 penalty.
    epochs, batch_size : passes over the training data, and rows per step.
    n_models : 1 (for ensembles use ``nf.mlp(..., n_models=K)``; others raise ArgumentError).
    random_state : int for reproducible initialization, shuffling and dropout.
    device : "auto" (cuda, then mps, then cpu), "cpu", "cuda", ...; verbose : print each epoch.
    warm_start : fit continues from the previous fit's weights and scaling.
    formula : an R formula (``"y ~ . - id"``); then X is a data frame holding the response
        (or y is given separately) and a ``nnfit.Design`` encodes factors and scaling.
    distributed : None (data-parallel when torchrun started the process), True (require it)
        or False (fit in this process alone); see docs/distributed.md.

    Attributes: ``n_features_in_``, ``feature_names_in_``, ``n_iter_`` (epochs trained),
    ``loss_curve_``, ``history_``, ``module_`` (the torch network) and, with a formula,
    ``design_`` and ``fitted_model()`` (an ``nf.MLPFit``). ``sample_weight`` is honoured by
    ``fit``, ``partial_fit`` and ``score``. Checks of ``check_estimator`` that do not hold are
    listed in ``nnfit.sklearn.EXPECTED_FAILED_CHECKS`` with the reason.

    >>> import numpy as np
    >>> from sklearn.model_selection import cross_val_score
    >>> from nnfit.sklearn import MLPRegressor
    >>> X = np.random.default_rng(0).normal(size=(120, 2)); y = X[:, 0] - 2 * X[:, 1]
    >>> scores = cross_val_score(MLPRegressor(hidden=8, epochs=30, random_state=0), X, y, cv=3)
    >>> bool(scores.mean() > 0.9)
    True
    """

    _task_kind = "regression"

    def partial_fit(self, X, y=None, sample_weight=None):
        """One more epoch over ``X, y``, from the current weights (the first call sets the scaling)."""
        return self._fit(X, y, sample_weight, epochs=1, keep=True)

    def predict(self, X):
        """Predictions in the target's units: shape (n,), or (n, k) for a k-column target."""
        if self.formula is not None:
            return self._fitted_model().predict(as_pandas(X)).to_numpy()  # rows in memory, never a stream
        out = self._outputs(X) * self.y_scale_ + self.y_center_
        return out[:, 0] if self._y_1d else out

    def score(self, X, y=None, sample_weight=None):
        """R^2 of the predictions (with a formula, y defaults to the frame's response)."""
        X, y = self._score_data(X, y)
        return super().score(X, y, sample_weight=sample_weight)

    def _target_options(self):
        return {"multi_output": True, "y_numeric": True}

    def _encode_target(self, y, reset, classes):
        y = np.asarray(y, dtype=np.float64)
        if reset:
            self._y_1d = y.ndim == 1
            self.y_center_, self.y_scale_ = column_stats(y.reshape(len(y), -1))
        return (y.reshape(len(y), -1) - self.y_center_) / self.y_scale_

    def _target(self, y):
        return torch.as_tensor(np.asarray(y).reshape(len(y), -1), dtype=torch.float32)

    def _loss(self):
        return nn.MSELoss()

    def _n_outputs(self):
        return len(self.design_.response_columns) if self.formula is not None else len(self.y_center_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MLPClassifier(ClassifierMixin, _NetworkEstimator):
    """A multilayer perceptron classifier on nnfit's engine, for scikit-learn.

    Parameters are those of ``MLPRegressor``, plus ``class_weight``: None, "balanced"
    (weights inversely proportional to class frequencies) or a dict {label: weight}. Two
    classes are fitted with one logit (binary cross-entropy), more with one per class
    (cross-entropy). ``classes_`` holds the labels in code order; ``predict_proba`` has one
    column per class in that order. ``partial_fit`` needs ``classes=`` on its first call.

    >>> import numpy as np
    >>> from nnfit.sklearn import MLPClassifier
    >>> X = np.random.default_rng(0).normal(size=(120, 2)); y = np.where(X[:, 0] > 0, "yes", "no")
    >>> model = MLPClassifier(hidden=8, epochs=30, random_state=0).fit(X, y)
    >>> model.classes_.tolist(), model.predict_proba(X[:2]).shape
    (['no', 'yes'], (2, 2))
    """

    _task_kind = "classification"

    def __init__(self, hidden=DEFAULTS["hidden"], activation=DEFAULTS["activation"], dropout=DEFAULTS["dropout"],
                 optimizer=DEFAULTS["optimizer"], lr=DEFAULTS["lr"], epochs=DEFAULTS["epochs"],
                 batch_size=DEFAULTS["batch_size"], weight_decay=DEFAULTS["weight_decay"], n_models=1, random_state=None,
                 class_weight=None, device="auto",
                 verbose=False, warm_start=False, formula=None, distributed=None):
        super().__init__(hidden=hidden, activation=activation, dropout=dropout, optimizer=optimizer, lr=lr,
                         epochs=epochs, batch_size=batch_size, weight_decay=weight_decay, n_models=n_models,
                         random_state=random_state, device=device, verbose=verbose, warm_start=warm_start,
                         formula=formula, distributed=distributed)
        self.class_weight = class_weight

    def partial_fit(self, X, y=None, classes=None, sample_weight=None):
        """One more epoch over ``X, y``; the first call needs ``classes`` (all the labels there will be)."""
        if not hasattr(self, "module_") and classes is None and self.formula is None:
            raise ArgumentError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, epochs=1, keep=True, classes=classes)

    def predict(self, X):
        """The most probable class label of each row."""
        if self.formula is not None:
            return np.asarray(self._fitted_model().predict(as_pandas(X)), dtype=object)
        probabilities = self.predict_proba(X)
        return self.classes_[probabilities.argmax(axis=1)]

    def predict_proba(self, X):
        """Class probabilities, (n, n_classes), columns in the order of ``classes_``."""
        if self.formula is not None:
            return self._fitted_model().predict(as_pandas(X), type="prob").to_numpy()
        return probabilities(self._outputs(X), self._loss_task())

    def predict_log_proba(self, X):
        """The logarithm of ``predict_proba``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def score(self, X, y=None, sample_weight=None):
        """Accuracy (with a formula, y defaults to the frame's response)."""
        X, y = self._score_data(X, y)
        return super().score(X, y, sample_weight=sample_weight)

    def _target_options(self):
        return {}

    def _encode_target(self, y, reset, classes):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if type_of_target(y) not in ("binary", "multiclass"):
            raise DataError(f"MLPClassifier takes one column of class labels, not a {type_of_target(y)} target.")
        if reset:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                raise DataError(
                    f"The target has only one class ({self.classes_.tolist()[0]!r}); a classifier needs at least two classes."
                )
        unknown = np.setdiff1d(y, self.classes_)
        if len(unknown):
            raise DataError(
                f"y has the label {unknown.tolist()[0]!r}, which is not one of the classes {self.classes_.tolist()}."
            )
        return np.searchsorted(self.classes_, y).astype(np.float64)

    def _class_weight_by_code(self):
        """class_weight for the engine: None, "balanced", or {class code: weight}."""
        if self.class_weight is None or isinstance(self.class_weight, str):
            return self.class_weight
        labels = self.classes_.tolist()
        for label in self.class_weight:
            if label not in labels:
                raise ArgumentError(f"class_weight names {label!r}, which is not one of the classes {labels}.")
        return {labels.index(label): weight for label, weight in self.class_weight.items()}

    def _target(self, codes):
        codes = torch.as_tensor(np.asarray(codes).reshape(-1))
        return codes.to(torch.float32).reshape(-1, 1) if len(self.classes_) == 2 else codes.to(torch.int64)

    def _loss(self):
        return nn.BCEWithLogitsLoss() if len(self.classes_) == 2 else nn.CrossEntropyLoss()

    def _loss_task(self):
        return "binary" if len(self.classes_) == 2 else "multiclass"

    def _n_outputs(self):
        return 1 if len(self.classes_) == 2 else len(self.classes_)

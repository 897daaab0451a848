"""nnfit: fit neural networks to data frames the way statistical learners work.

R's formulas and luz's workflow (setup -> set_hparams -> fit -> predict -> evaluate), on PyTorch.

>>> import nnfit as nf
>>> penguins = nf.datasets.load("penguins")
>>> training, testing = nf.split(penguins, prop=0.8, seed=1)

Names are loaded on first use, so ``import nnfit`` costs almost nothing beyond Python itself.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_EXPORTS = {
    "Design": ("nnfit.design", "Design"),
    "split": ("nnfit.sampling", "split"),
    "setup": ("nnfit.train.learner", "setup"),
    "Learner": ("nnfit.train.learner", "Learner"),
    "Fitted": ("nnfit.train.learner", "Fitted"),
    "mlp": ("nnfit.mlpfit", "mlp"),
    "MLPFit": ("nnfit.mlpfit", "MLPFit"),
    "MLP": ("nnfit.modules", "MLP"),
    "load": ("nnfit.loading", "load"),
    "read": ("nnfit.datasets", "read"),
    "cross_validate": ("nnfit.tuning", "cross_validate"),
    "grid": ("nnfit.tuning", "grid"),
    "datasets": ("nnfit.datasets", None),
    "metrics": ("nnfit.train.metrics", None),
    "callbacks": ("nnfit.train.callbacks", None),
    "plot": ("nnfit.plot", None),
    "errors": ("nnfit.errors", None),
    "sklearn": ("nnfit.sklearn", None),  # scikit-learn estimators; imports scikit-learn on first use
    "lr_finder": ("nnfit.train.rate_finder", "lr_finder"),  # the module may not share the function's name
    "modules": ("nnfit.modules", None),  # MLP, and the ready RNN, LSTM, CNN and Spectrogram
    "lags": ("nnfit.sequences", "lags"),
    "sequences": ("nnfit.sequences", None),
    "text": ("nnfit.text", None),  # the text Vectorizer
    "labs": ("nnfit.labs", None),
    "summary": ("nnfit.summaries", "summary"),  # R's summary(fit); the module may not share the function's name  # ISLR chapter 10's labs and the penguin labs; `nnfit lab NAME`
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'nnfit' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return __all__

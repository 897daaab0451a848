"""nf.mlp's recipe, written once: the defaults of the network and its training.

``nf.mlp``, the scikit-learn estimators, ``cross_validate``, ``grid`` and ``nnfit fit`` take
their defaults from ``DEFAULTS``. This module imports nothing, so the command line reads it
without loading torch.

>>> from nnfit.recipe import DEFAULTS
>>> DEFAULTS["hidden"], DEFAULTS["optimizer"], DEFAULTS["epochs"], DEFAULTS["batch_size"]
(50, 'rmsprop', 100, 32)
"""

DEFAULTS = {"hidden": 50, "activation": "relu", "dropout": 0.0, "optimizer": "rmsprop", "lr": None, "epochs": 100,
            "batch_size": 32, "weight_decay": 0.0}

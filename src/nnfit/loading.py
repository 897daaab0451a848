"""``nf.load``: any model file nnfit wrote, back as the fitted object it was; loading runs no code.

``files`` reads and checks the file (safetensors and JSON, checksum, signature); this module
turns what it holds into an ``MLPFit``, the user's own module with its weights, or (from
``setup().fit(n_models=K)``) a list of the K modules.
"""

from __future__ import annotations

from . import schema
from .errors import ModelFileError
from .files import read, unpack
from .mlpfit import MLPFit


def load(path, module=None, key=None):
    """Load a model file that nnfit wrote; loading runs no code.

    A file from ``nf.mlp`` comes back as a ready ``MLPFit``. A file from a luz-style fit (or a
    checkpoint) holds the weights of your own module: pass ``module`` (an instance, or the
    class, which is built with the saved hparams) and get that module back with the weights loaded;
    a file of K models (``setup().fit(n_models=K)``) gives a list of K modules.
    A file saved with ``key=`` loads only with the same ``key`` (see docs/files.md).

    >>> import os, tempfile
    >>> import nnfit as nf
    >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=training, hidden=5, epochs=5,
    ...              seed=1, verbose=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "mass.nnfit")
    >>> fit.save(path)
    >>> same = nf.load(path)                           # R's readRDS: the MLPFit, ready to predict
    >>> same.predict(testing).equals(fit.predict(testing))
    True
    >>> fit.save(path, key="our team's secret")        # signed: loads only with the same key
    >>> nf.load(path, key="our team's secret").settings["formula"]
    'body_mass_g ~ flipper_length_mm + sex'
    """
    tensors, metadata = read(path, key=key)
    kind = metadata.get("kind")
    if kind == "mlp":
        return MLPFit.from_saved(tensors, metadata, path=path)
    if kind in ("module", "checkpoint"):
        if module is None:
            raise ModelFileError(
                f"{str(path)!r} holds the weights of your module {str(metadata.get('module'))[:200]}; pass it: "
                "nf.load(path, module=YourModule) (the class, or an instance)."
            )
        try:
            weights = tensors if kind == "module" else unpack(metadata["state"]["model"], tensors)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{str(path)!r} is not a valid nnfit model file: state.model ({error}).") from None
        return load_weights(path, metadata, weights, module)
    if kind == "modules":
        return _modules(path, tensors, metadata, module)
    raise ModelFileError(f"{str(path)!r} holds an unknown kind of model ({schema.short(kind)}).")


def _modules(path, tensors: dict, metadata: dict, module) -> list:
    """The K modules of a ``FittedMany`` file, as a list: model k's weights are the tensors named
    ``model{k}.``; ``module`` is the class (built K times with the saved hparams) or K instances."""
    count = metadata.get("n_models")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(tensors):
        raise ModelFileError(f"{str(path)!r} is not a valid nnfit model file: n_models is {schema.short(count)}, "
                             f"not a whole number from 1 to the {len(tensors)} tensors it holds.")
    if module is None:
        raise ModelFileError(
            f"{str(path)!r} holds the weights of {count} copies of your module {str(metadata.get('module'))[:200]}; "
            "pass it: nf.load(path, module=YourModule) (the class, or a list of instances)."
        )
    weights = [{} for _ in range(count)]
    for name, tensor in tensors.items():
        head, dot, rest = name.partition(".")
        k = head[len("model"):]
        if not (head.startswith("model") and dot and k.isdigit() and str(int(k)) == k and int(k) < count):
            raise ModelFileError(f"{str(path)!r} is not a valid nnfit model file: tensor {schema.short(name)} "
                                 f"belongs to none of its {count} models.")
        weights[int(k)][rest] = tensor
    if isinstance(module, type):
        nets = [load_weights(path, {"kind": "module", "hparams": metadata.get("hparams", {})}, w, module) for w in weights]
    else:
        if not isinstance(module, (list, tuple)) or len(module) != count:
            raise ModelFileError(f"{str(path)!r} holds {count} models; pass the class or a list of {count} instances.")
        nets = [load_weights(path, {"kind": "module"}, w, m) for w, m in zip(weights, module)]
    return nets


def load_weights(path, metadata: dict, weights: dict, module):
    """``module`` (an instance, or the class built with the file's hparams, checked first) with
    ``weights`` loaded, in eval mode.

    >>> import torch, nnfit as nf
    >>> from nnfit.loading import load_weights
    >>> net = load_weights("net.nnfit", {"hparams": {"in_features": 2, "out_features": 1}},
    ...                    {"weight": torch.ones(1, 2), "bias": torch.zeros(1)}, torch.nn.Linear)
    >>> net(torch.tensor([[1.0, 2.0]])).item(), net.training
    (3.0, False)
    """
    if isinstance(module, type):
        hparams = metadata.get("hparams", {})
        if not isinstance(hparams, dict):
            raise ModelFileError(f"{str(path)!r} is not a valid nnfit model file: hparams is not an object.")
        _check_hparams(module, hparams, weights, path)
        module = module(**hparams)
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"The weights in {str(path)!r} do not fit {type(module).__name__}: {error}") from None
    module.eval()
    return module


def _check_hparams(module: type, hparams: dict, weights: dict, path) -> None:
    """Build ``module(**hparams)`` on torch's meta device (nothing is allocated) and refuse the
    file if that network's weights do not have the shapes of the file's: hparams that ask for
    ``nn.Linear(10**9, 10**9)`` beside a 3 KB file are refused before anything is built."""
    import torch

    try:
        with torch.device("meta"):
            probe = module(**hparams)
        shapes = {name: tuple(value.shape) for name, value in probe.state_dict().items()}
    except Exception:  # a module that cannot be built on the meta device: load_state_dict checks the shapes
        return
    missing = [name for name in shapes if name not in weights]
    extra = [name for name in weights if name not in shapes]
    if missing or extra:  # the file must hold exactly the network its hparams build, before it is built
        which = (f"has no tensor {missing[0]!r}" if missing else f"has a tensor {extra[0]!r}") + f" that the "
        raise ModelFileError(
            f"{str(path)!r} is not a valid nnfit model file: it {which}{module.__name__} its hparams "
            f"{schema.short(hparams)} make {'needs' if missing else 'does not have'}."
        )
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != shape:
            raise ModelFileError(
                f"{str(path)!r} is not a valid nnfit model file: its hparams {schema.short(hparams)} make "
                f"{module.__name__} with {name!r} of shape {list(shape)}, but the file holds "
                f"{list(weights[name].shape)}."
            )

"""Model files: one file, weights in safetensors, everything else as JSON in its header.

Loading never runs code: safetensors holds only tensors, and the metadata is JSON. A SHA-256
checksum over the weights and the metadata guards against corruption, and every write goes
to a temporary file that is flushed, synced and renamed, so a crash leaves the old file or
the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .errors import ArgumentError, ModelFileError

FORMAT = "nnfit-model"
FORMAT_VERSION = 1
_PICKLE_STARTS = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, torch.save's zip


def atomic_write(path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a synced temporary file in the same folder, then rename it.

    A crash at any moment leaves the previous file or the new one, never part of one (at worst
    a ``.name.*.tmp`` file beside it, which ``remove_temporaries`` clears).

    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> atomic_write(os.path.join(folder, "notes.txt"), b"hello")
    >>> os.listdir(folder)
    ['notes.txt']
    """
    path = Path(path)
    if path.is_dir():
        raise ArgumentError(f"Cannot write to {str(path)!r}: it is a directory.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ArgumentError(f"Cannot write {str(path)!r}: the folder {str(folder)!r} does not exist.")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise ArgumentError(f"Cannot write {str(path)!r}: {error.strerror}.") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    try:  # make the rename itself durable
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError:
        pass


def _checksum(tensors: dict, metadata_json: str) -> str:
    import torch

    digest = hashlib.sha256(metadata_json.encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write(path, tensors: dict, metadata: dict) -> None:
    """Save tensors and JSON metadata as one safetensors file, atomically."""
    import torch
    from safetensors.torch import save

    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    metadata = dict(metadata, format=FORMAT, format_version=FORMAT_VERSION, torch_version=torch.__version__)
    from . import __version__

    metadata["nnfit_version"] = __version__
    text = json.dumps(metadata, sort_keys=True)
    header = {"nnfit": text, "checksum": _checksum(tensors, text)}
    atomic_write(path, save(tensors, metadata=header))


def read(path):
    """(tensors, metadata) from a file ``write`` made; anything else is a ModelFileError."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a directory, not a model file.")
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"No model file at {str(path)!r}.") from None
    except OSError as error:
        raise ModelFileError(f"Cannot read {str(path)!r}: {error.strerror}.") from None
    if not _looks_like_safetensors(payload) and payload.startswith(_PICKLE_STARTS):
        raise ModelFileError(
            f"{str(path)!r} is a pickle (or torch.save) file; nnfit never loads those, because loading "
            "them can run code. Save models with fit.save()."
        )
    try:
        header = _header(payload)
        text = header.get("nnfit")
        metadata = json.loads(text) if text is not None else None
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{str(path)!r} is not an nnfit model file or is corrupted ({error}).") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{str(path)!r} is a safetensors file without nnfit metadata.")
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{str(path)!r} is not an nnfit model file.")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{str(path)!r} has no valid format version ({version!r}); it is corrupted.")
    # Checked before the checksum: a newer format may compute its checksum differently.
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} was written by a newer nnfit (format {version}, this one reads "
            f"up to {FORMAT_VERSION}, nnfit {metadata.get('nnfit_version', '?')}); upgrade nnfit to load it."
        )
    try:
        tensors = load(payload)
    except (SafetensorError, ValueError) as error:
        raise ModelFileError(f"{str(path)!r} is not an nnfit model file or is corrupted ({error}).") from None
    if header.get("checksum") != _checksum(tensors, text):
        raise ModelFileError(f"{str(path)!r} is corrupted: its checksum does not match its contents.")
    return tensors, metadata


def _looks_like_safetensors(payload: bytes) -> bool:
    size = int.from_bytes(payload[:8], "little") if len(payload) >= 8 else 0
    return 0 < size <= len(payload) - 8 and payload[8:9] == b"{"


def _header(payload: bytes) -> dict:
    size = int.from_bytes(payload[:8], "little")
    if size <= 0 or size > len(payload) - 8:
        raise ValueError("bad header length")
    header = json.loads(payload[8 : 8 + size])
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def save_module(path, fitted) -> None:
    """Weights of a luz-style fitted module, with its class name and hparams."""
    learner = fitted.learner
    metadata = {
        "kind": "module",
        "module": f"{type(fitted.model).__module__}.{type(fitted.model).__qualname__}",
        "hparams": _jsonable(learner.hparams),
        "history": fitted.records,
    }
    write(path, fitted.model.state_dict(), metadata)


def _jsonable(values: dict) -> dict:
    out = {}
    for key, value in values.items():
        try:
            json.dumps(value)
            out[key] = value
        except TypeError:
            out[key] = repr(value)
    return out


_TENSOR, _TUPLE, _ITEMS, _ARRAY = "__tensor__", "__tuple__", "__items__", "__array__"
_MARKERS = (_TENSOR, _TUPLE, _ITEMS, _ARRAY)


def pack(value, tensors: dict, name: str = "state"):
    """``value`` as JSON, each tensor in it moved into ``tensors`` under a unique name.

    Nested dicts (any keys), lists, tuples, numbers, strings, None, tensors and numpy arrays
    come back exactly from ``unpack``, so optimizer, scheduler, callback and random-number
    generator states are stored without pickle.

    >>> import torch
    >>> tensors = {}
    >>> packed = pack({"step": 3, "betas": (0.9, 0.999), "avg": torch.zeros(2)}, tensors)
    >>> packed["betas"], sorted(tensors)
    ({'__tuple__': [0.9, 0.999]}, ['state.avg'])
    >>> unpack(packed, tensors)["betas"]
    (0.9, 0.999)
    """
    import numpy as np
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        key, n = name, 1
        while key in tensors:
            n += 1
            key = f"{name}#{n}"
        tensors[key] = value.detach().cpu().clone()
        return {_TENSOR: key}
    if isinstance(value, np.ndarray):
        return {_ARRAY: value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {_TUPLE: [pack(v, tensors, f"{name}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [pack(v, tensors, f"{name}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in _MARKERS for k in value):
            return {k: pack(v, tensors, f"{name}.{k}") for k, v in value.items()}
        return {_ITEMS: [[pack(k, tensors, f"{name}.key"), pack(v, tensors, f"{name}.{k}")] for k, v in value.items()]}
    raise TypeError(f"cannot store a value of type {type(value).__name__} ({value!r:.60}) without pickle")


def unpack(value, tensors: dict):
    """The value ``pack`` stored, with its tensors taken from ``tensors``.

    >>> unpack({"__tuple__": [1, {"__tensor__": "w"}]}, {"w": "the tensor named w"})
    (1, 'the tensor named w')
    """
    if isinstance(value, list):
        return [unpack(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR in value:
        return tensors[value[_TENSOR]]
    if _TUPLE in value:
        return tuple(unpack(v, tensors) for v in value[_TUPLE])
    if _ITEMS in value:
        return {unpack(k, tensors): unpack(v, tensors) for k, v in value[_ITEMS]}
    if _ARRAY in value:
        import numpy as np

        return np.asarray(value[_ARRAY], dtype=value["dtype"])
    return {k: unpack(v, tensors) for k, v in value.items()}


def remove_temporaries(path) -> None:
    """Delete what an interrupted ``atomic_write`` to ``path`` left: its temporary files.

    >>> remove_temporaries("run/checkpoint.nnfit")  # removes run/.checkpoint.nnfit.*.tmp
    """
    path = Path(path)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            leftover.unlink()
        except OSError:
            pass


def load(path, module=None):
    """Load a model file that nnfit wrote; loading runs no code.

    A file from ``nf.mlp`` comes back as a ready ``MLPFit``. A file from a luz-style fit (or a
    checkpoint) holds the weights of your own module: pass ``module`` (an instance, or the
    class, which is built with the saved hparams) and get that module back with the weights loaded.

    >>> import nnfit as nf
    >>> # fit.save("mass.nnfit"); same = nf.load("mass.nnfit")
    """
    tensors, metadata = read(path)
    kind = metadata.get("kind")
    if kind == "mlp":
        from .mlpfit import MLPFit

        return MLPFit.from_saved(tensors, metadata)
    if kind in ("module", "checkpoint"):
        if module is None:
            raise ModelFileError(
                f"{str(path)!r} holds the weights of your module {metadata.get('module')}; pass it: "
                "nf.load(path, module=YourModule) (the class, or an instance)."
            )
        if isinstance(module, type):
            module = module(**metadata.get("hparams", {}))
        try:
            weights = tensors if kind == "module" else unpack(metadata["state"]["model"], tensors)
            module.load_state_dict(weights)
        except (RuntimeError, KeyError, TypeError) as error:
            raise ModelFileError(f"The weights in {str(path)!r} do not fit {type(module).__name__}: {error}") from None
        module.eval()
        return module
    raise ModelFileError(f"{str(path)!r} holds an unknown kind of model ({kind!r}).")

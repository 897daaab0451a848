"""Model files: one file, weights in safetensors, everything else as JSON in its header.

Loading never runs code: safetensors holds only tensors, and the metadata is JSON. Before a
tensor is read, every size, dtype and nesting depth the file declares is checked against what
it holds and against caps (``nnfit.schema``), so a file that lies is refused, not built. A
SHA-256 checksum over the weights and the metadata guards against corruption; an optional
HMAC-SHA256 signature (``key=``) tells a team's own files from edited ones. Every write goes
to a temporary file that is flushed, synced and renamed, so a crash leaves the old file or
the new one, never half of one; new files get the user's umask, replaced ones keep their mode.
"""

from __future__ import annotations

import glob
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from pathlib import Path

from . import schema
from .errors import ArgumentError, ArgumentTypeError, ModelFileError

FORMAT = "nnfit-model"
FORMAT_VERSION = 1
SIGNATURE = "hmac-sha256:"
_PICKLE_STARTS = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, torch.save's zip
_STALE_SECONDS = 24 * 3600  # a temporary file this old is a leftover, whatever its process id says


def atomic_write(path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a synced temporary file in the same folder, then rename it.

    A crash at any moment leaves the previous file or the new one, never part of one (at worst
    a ``.NAME.PID-XXXXXXXX.tmp`` file beside it, which the next write to ``path`` removes once
    process PID has ended). A new file gets the user's umask (0644 under umask 022); a file
    that is replaced keeps its mode. An OSError (a full disk, say) names ``path``.

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
    remove_temporaries(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None  # a new file: os.open applies the umask to 0o666, as for any file a program creates
    try:
        handle, temporary = create_temporary(path)
    except OSError as error:
        raise ArgumentError(f"Cannot write {str(path)!r}: {error.strerror}.") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            if mode is not None:
                os.chmod(temporary, mode)
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    try:  # make the rename itself durable
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError:
        pass


def create_temporary(path):
    """(descriptor, path) of a new, empty temporary file ``.NAME.PID-HEX.tmp`` beside ``path``,
    created exclusively (the umask applies): what ``atomic_write`` writes before renaming, and
    what ``remove_temporaries`` clears once its writer has ended.

    >>> import os, tempfile
    >>> handle, temporary = create_temporary(os.path.join(tempfile.mkdtemp(), "mass.parquet"))
    >>> os.close(handle); os.path.basename(temporary).startswith(".mass.parquet.")
    True
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temporary = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temporary, flags, 0o666), str(temporary)
        except FileExistsError:
            continue
    raise FileExistsError(17, "no free temporary name", str(path))


def remove_temporaries(path) -> None:
    """Delete what interrupted ``atomic_write`` calls to ``path`` left: its temporary files.

    Only regular files named ``.NAME.*.tmp`` are candidates, and of those only the ones whose
    writer has ended (the process id in the name is gone, or the file is a day old), so a write
    still running in another process keeps its file.

    >>> remove_temporaries("run/checkpoint.nnfit")  # removes run/.checkpoint.nnfit.*.tmp of ended runs
    """
    path = Path(path)
    prefix = f".{path.name}."
    for leftover in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(prefix) + "*.tmp")):
        if is_leftover(leftover, os.path.basename(leftover)[len(prefix):-len(".tmp")]):
            try:
                os.unlink(leftover)
            except OSError:
                pass


def is_leftover(path, tag: str) -> bool:
    """Whether ``path``, an nnfit temporary whose name carries ``tag`` ("PID-HEX"), was left by an ended run.

    >>> is_leftover("/no/such/file", "1-ab")
    False
    """
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        return False
    if time.time() - info.st_mtime > _STALE_SECONDS:
        return True
    pid = tag.split("-", 1)[0]
    return not (pid.isdigit() and _running(int(pid)))


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, OverflowError):
        return True  # it exists (another user's), or the question cannot be asked: keep the file
    return True


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


def _signature(key, checksum: str) -> str:
    """HMAC-SHA256 of the checksum (which covers the metadata and every tensor) under ``key``."""
    mac = hmac.new(_key_bytes(key), b"nnfit-model-signature\0" + checksum.encode(), hashlib.sha256)
    return SIGNATURE + mac.hexdigest()


def _key_bytes(key) -> bytes:
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)):
        raise ArgumentTypeError(f"key must be bytes or a str (a secret your team shares), not {type(key).__name__}.")
    if not key:
        raise ArgumentError("key must not be empty; use a secret your team shares, e.g. secrets.token_hex(32).")
    return bytes(key)


def write(path, tensors: dict, metadata: dict, key=None) -> None:
    """Save tensors and JSON metadata as one safetensors file, atomically; signed if ``key`` is given.

    >>> import os, tempfile, torch
    >>> from nnfit import files
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.nnfit")
    >>> files.write(path, {"w": torch.ones(2, 3)}, {"kind": "notes", "note": "hello"})
    >>> tensors, metadata = files.read(path)
    >>> tensors["w"].shape, metadata["note"]
    (torch.Size([2, 3]), 'hello')
    """
    import torch
    from safetensors.torch import save

    if key is not None:
        _key_bytes(key)  # a bad key is refused before anything is written
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    metadata = dict(metadata, format=FORMAT, format_version=FORMAT_VERSION, torch_version=torch.__version__)
    from . import __version__

    metadata["nnfit_version"] = __version__
    text = json.dumps(metadata, sort_keys=True)
    header = {"nnfit": text, "checksum": _checksum(tensors, text)}
    if key is not None:
        header["signature"] = _signature(key, header["checksum"])
    atomic_write(path, save(tensors, metadata=header))


def read(path, key=None):
    """(tensors, metadata) from a file ``write`` made; anything else is a ModelFileError.

    Reads only a regular file, and no more of it than its header declares; checks the header
    against ``nnfit.schema`` before reading a tensor, then the checksum, then the signature:
    a file signed with a key loads only with that ``key``, and a ``key`` loads only signed files.

    >>> import os, tempfile, torch
    >>> from nnfit import files
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.nnfit")
    >>> files.write(path, {"w": torch.ones(2, 3)}, {"kind": "notes"}, key="our team's secret")
    >>> files.read(path, key="our team's secret")[1]["kind"]
    'notes'
    >>> files.read(path, key="a guess")             # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnfit.errors.ModelFileError: '...notes.nnfit' was not signed with this key: it was changed after it was signed, or signed with another key.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    name = repr(str(path))
    handle, size = _open_regular(path)
    with os.fdopen(handle, "rb", buffering=0) as stream:
        start = stream.read(9)
        declared = int.from_bytes(start[:8], "little") if len(start) >= 8 else 0
        if not (0 < declared <= size - 8 and start[8:9] == b"{"):
            if start.startswith(_PICKLE_STARTS):
                raise ModelFileError(
                    f"{name} is a pickle (or torch.save) file; nnfit never loads those, because loading "
                    "them can run code. Save models with fit.save()."
                )
            if size < 9:
                detail = f"it is {size} bytes long"
            elif 0 < declared <= size - 8:
                detail = "its header is not a JSON object"
            else:
                detail = f"its header declares {declared} bytes, but the file has {size}"
            raise ModelFileError(f"{name} is not an nnfit model file or is corrupted ({detail}).")
        if declared > schema.MAX_HEADER_BYTES:
            raise ModelFileError(f"{name} is not a valid nnfit model file: its header declares {declared} bytes, "
                                 f"more than the {schema.MAX_HEADER_BYTES} nnfit reads.")
        payload = bytearray(8 + declared)
        payload[:9] = start
        _read_exactly(stream, memoryview(payload)[9:], name)
        try:
            schema.check_depth(payload[8:], "the safetensors header")
            header = json.loads(bytes(payload[8:]))
        except schema.Refusal as refusal:
            raise ModelFileError(f"{name} is not a valid nnfit model file: {refusal}.") from None
        except (ValueError, UnicodeDecodeError) as error:
            raise ModelFileError(f"{name} is not an nnfit model file or is corrupted ({error}).") from None
        strings = header.get("__metadata__") if isinstance(header, dict) else None
        strings = strings if isinstance(strings, dict) else {}
        metadata = _metadata(strings.get("nnfit"), name)
        try:
            declared_tensors = schema.check_tensor_header(header, size - 8 - declared)
            schema.check_arrays(metadata)
        except schema.Truncated as refusal:
            raise ModelFileError(f"{name} is not an nnfit model file or is corrupted ({refusal}).") from None
        except schema.Refusal as refusal:
            raise ModelFileError(f"{name} is not a valid nnfit model file: {refusal}.") from None
        del payload
        stream.seek(0)
        payload = _read_all(stream, size, name)
    try:
        tensors = load(payload)
    except (SafetensorError, ValueError) as error:
        raise ModelFileError(f"{name} is not an nnfit model file or is corrupted ({error}).") from None
    del payload
    if set(tensors) != set(declared_tensors):
        raise ModelFileError(f"{name} is not an nnfit model file or is corrupted (its tensors differ from its header).")
    checksum = _checksum(tensors, strings["nnfit"])
    if not hmac.compare_digest(str(strings.get("checksum")).encode(), checksum.encode()):
        raise ModelFileError(f"{name} is corrupted: its checksum does not match its contents.")
    _check_signature(strings.get("signature"), key, checksum, name)
    return tensors, metadata


def _open_regular(path):
    """(file descriptor, size) of a regular file; never blocks on a pipe, never reads a device."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        handle = os.open(path, flags)
    except FileNotFoundError:
        raise ModelFileError(f"No model file at {str(path)!r}.") from None
    except IsADirectoryError:
        raise ModelFileError(f"{str(path)!r} is a directory, not a model file.") from None
    except OSError as error:
        try:  # a socket cannot even be opened: say what it is
            _refuse_unless_regular(os.stat(path).st_mode, path)
        except OSError:
            pass
        raise ModelFileError(f"Cannot read {str(path)!r}: {error.strerror}.") from None
    info = os.fstat(handle)
    try:
        _refuse_unless_regular(info.st_mode, path)
    except ModelFileError:
        os.close(handle)
        raise
    return handle, info.st_size


def _refuse_unless_regular(mode: int, path) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"{str(path)!r} is a directory, not a model file.")
    kinds = [(stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket")]
    kind = next((text for test, text in kinds if test(mode)), "not a file")
    raise ModelFileError(
        f"{str(path)!r} is {kind}, not a regular file; nnfit reads model files only from regular files."
    )


def _read_all(stream, size: int, name: str) -> bytes:
    """``size`` bytes from ``stream`` as one bytes object (safetensors takes only bytes)."""
    parts = [stream.read(size)]
    got = len(parts[0])
    while got < size:  # one read returns at most about 2 GB
        part = stream.read(size - got)
        if not part:
            raise ModelFileError(f"{name} is not an nnfit model file or is corrupted (it ended while being read).")
        parts.append(part)
        got += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_exactly(stream, view, name: str) -> None:
    done = 0
    while done < len(view):
        count = stream.readinto(view[done:])
        if not count:
            raise ModelFileError(f"{name} is not an nnfit model file or is corrupted (it ended while being read).")
        done += count


def _metadata(text, name: str) -> dict:
    """nnfit's metadata from its JSON text, depth-checked before it is parsed, and its format checked."""
    if not isinstance(text, str):
        raise ModelFileError(f"{name} is a safetensors file without nnfit metadata.")
    try:
        schema.check_depth(text)
        metadata = json.loads(text)
    except schema.Refusal as refusal:
        raise ModelFileError(f"{name} is not a valid nnfit model file: {refusal}.") from None
    except ValueError as error:
        raise ModelFileError(f"{name} is not an nnfit model file or is corrupted ({error}).") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{name} is a safetensors file without nnfit metadata.")
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{name} is not an nnfit model file.")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{name} has no valid format version ({schema.short(version)}); it is corrupted.")
    # Checked before the checksum: a newer format may compute its checksum differently.
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{name} was written by a newer nnfit (format {version}, this one reads "
            f"up to {FORMAT_VERSION}, nnfit {str(metadata.get('nnfit_version', '?'))[:40]}); upgrade nnfit to load it."
        )
    return metadata


def _check_signature(signature, key, checksum: str, name: str) -> None:
    if signature is None and key is None:
        return
    if key is None:
        raise ModelFileError(f"{name} is signed; load it with the key it was signed with: nf.load(path, key=...).")
    expected = _signature(key, checksum)
    if signature is None:
        raise ModelFileError(f"{name} is not signed, so the key cannot vouch for it; load it without key= only if "
                             "you trust where it came from, or sign it: fit.save(path, key=...).")
    if not hmac.compare_digest(str(signature).encode(), expected.encode()):
        raise ModelFileError(f"{name} was not signed with this key: it was changed after it was signed, or signed "
                             "with another key.")


def save_module(path, fitted, key=None) -> None:
    """Weights of a luz-style fitted module, with its class name and hparams (signed if ``key`` is given).

    ``Fitted.save`` calls it; ``nf.load(path, module=...)`` reads it back.

    >>> import os, tempfile, torch
    >>> import nnfit as nf
    >>> from nnfit import files
    >>> X, y = torch.randn(32, 3), torch.randn(32, 1)
    >>> fitted = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=3, hidden=[4], output_size=1).fit(
    ...     (X, y), epochs=2, seed=1, verbose=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "net.nnfit")
    >>> files.save_module(path, fitted)
    >>> files.read(path)[1]["hparams"]
    {'hidden': [4], 'input_size': 3, 'output_size': 1}
    """
    learner = fitted.learner
    metadata = {
        "kind": "module",
        "module": f"{type(fitted.model).__module__}.{type(fitted.model).__qualname__}",
        "hparams": _jsonable(learner.hparams),
        "history": fitted.records,
    }
    write(path, fitted.model.state_dict(), metadata, key=key)


def save_modules(path, fitted, key=None) -> None:
    """The weights of K fitted copies of a module (``FittedMany``), model k's under ``model{k}.``,
    with the class name, hparams, number of models and history (signed if ``key`` is given).

    ``FittedMany.save`` calls it; ``nf.load(path, module=...)`` reads the K modules back.

    >>> import os, tempfile, torch
    >>> import nnfit as nf
    >>> from nnfit import files
    >>> X, y = torch.randn(32, 3), torch.randn(32, 1)
    >>> many = nf.setup(nf.MLP, loss="mse").set_hparams(input_size=3, hidden=[4], output_size=1).fit(
    ...     (X, y), epochs=2, seed=1, n_models=3, verbose=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "nets.nnfit")
    >>> files.save_modules(path, many)
    >>> metadata = files.read(path)[1]
    >>> metadata["kind"], metadata["n_models"], sorted(files.read(path)[0])[:2]
    ('modules', 3, ['model0.hidden.0.bias', 'model0.hidden.0.weight'])
    """
    model = fitted.models[0]
    tensors = {f"model{k}.{name}": value for k, net in enumerate(fitted.models) for name, value in net.state_dict().items()}
    metadata = {
        "kind": "modules",
        "module": f"{type(model).__module__}.{type(model).__qualname__}",
        "hparams": _jsonable(fitted.learner.hparams),
        "n_models": fitted.n_models,
        "history": [list(row) for row in fitted.records],
        "dropped": dict(fitted.dropped),
    }
    write(path, tensors, metadata, key=key)


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

        if value.get("dtype") not in schema.ARRAY_DTYPES:  # a text dtype could ask for gigabytes per value
            raise ValueError(f"a stored array has the dtype {schema.short(value.get('dtype'))}, not a numeric one")
        return np.asarray(value[_ARRAY], dtype=value["dtype"])
    return {k: unpack(v, tensors) for k, v in value.items()}

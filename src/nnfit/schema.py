"""What a model file may declare, checked before anything it declares is built.

A model file is a safetensors file: 8 bytes giving the length of a JSON header, the header
(each tensor's dtype, shape and byte offsets, and string metadata), then the tensors' bytes.
nnfit's metadata is one JSON document in that header. Everything here works on the header's
plain values alone, so a file that lies (a layer of 20,000 units beside a tensor of 8, a text
dtype of half a gigabyte, JSON nested a million deep) is refused for the price of reading its
header, which is itself capped.

Each refusal is a ``ModelFileError`` that names the field, e.g.
``architecture.hidden[0] is 20000, but the tensor 'hidden.0.weight' has shape [8, 9] (expected [20000, 9])``.
Nothing here imports torch or the rest of nnfit (numpy only inside ``check_depth``).
"""

from __future__ import annotations

import math
import re

MAX_HEADER_BYTES = 16 * 2**20  # the history and state of very long fits stay far below this
MAX_DEPTH = 64  # nesting of JSON lists and objects; nnfit writes fewer than 20 levels
MAX_CONTAINERS = 1_000_000  # JSON lists and objects in one header (a history row is one)
MAX_TENSORS = 10_000
MAX_RANK = 8
MAX_LAYERS = 256
MAX_UNITS = 2**24  # units of one layer, inputs or outputs
MAX_MODELS = 10_000  # networks stacked in one file (an ensemble, folds, a grid's cell)
MAX_ARRAY_ITEMS = 2**24  # values of a numpy array stored as JSON

# safetensors dtype -> bytes per value; only numbers (and booleans) are model data.
TENSOR_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
# numpy dtypes an array stored as JSON may have (text and object dtypes can hold anything, of any size).
ARRAY_DTYPES = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"]
)
TASKS = ("regression", "binary", "multiclass")
MAX_CALIBRATION_ROWS = 1_000_000  # conformal scores kept in a file's metadata
CALIBRATION_PREFIX = "calibration."  # CV+ fold networks' tensors
CALIBRATION_FIELDS = {"split": ("method", "scores"),
                      "cv+": ("method", "scores", "fold", "folds", "members", "architecture")}


class Refusal(ValueError):
    """One field that breaks the schema; ``files`` turns it into a ModelFileError naming the file."""


class Truncated(Refusal):
    """The file holds fewer (or more) bytes of tensor data than its header declares."""


def check_depth(text, what: str = "the metadata") -> None:
    r"""Refuse JSON nested deeper than MAX_DEPTH, without parsing it (the parser would recurse).

    Escaped backslashes and quotes are dropped first, so every quote left opens or closes a
    string; brackets outside strings then count +1 and -1, a megabyte at a time, with numpy.
    More than MAX_CONTAINERS lists and objects are refused too (``[[], [], ...]`` would cost
    the parser sixty times the text's size).
    Time and memory are linear in the text, whatever it holds; text that is not JSON passes,
    to be refused by the parser with its own message.

    >>> check_depth('{"a": [[1, 2], "[[[[", "\\\\", "\\"[", "]]]"]}')
    >>> check_depth("[" * 100 + "]" * 100)
    Traceback (most recent call last):
    ...
    nnfit.schema.Refusal: the metadata nests lists and objects more than 64 levels deep
    """
    import numpy as np

    data = text.encode() if isinstance(text, str) else bytes(text)
    data = data.replace(b"\\\\", b"").replace(b'\\"', b"")  # outside strings a backslash is invalid anyway
    values = np.frombuffer(data, dtype=np.uint8)
    step = np.zeros(256, dtype=np.int8)
    step[[ord("["), ord("{")]], step[[ord("]"), ord("}")]] = 1, -1
    inside, depth, containers = 0, 0, 0
    for start in range(0, len(values), 2**20):
        chunk = values[start:start + 2**20]
        in_string = (np.cumsum(chunk == ord('"'), dtype=np.int64) + inside) & 1  # 1 from an opening quote on
        steps = np.where(in_string == 1, 0, step[chunk])
        levels = depth + np.cumsum(steps, dtype=np.int64)
        if levels.max() > MAX_DEPTH:
            raise Refusal(f"{what} nests lists and objects more than {MAX_DEPTH} levels deep")
        containers += int(np.count_nonzero(steps == 1))
        if containers > MAX_CONTAINERS:  # each costs the parser a Python object of 56 bytes or more
            raise Refusal(f"{what} holds more than {MAX_CONTAINERS} lists and objects")
        inside, depth = int(in_string[-1]), int(levels[-1])


def check_tensor_header(header, data_size: int) -> dict:
    """{name: (dtype, shape)} of the tensors a parsed safetensors header declares, or a Refusal.

    Each tensor must have a numeric dtype, a shape of at most MAX_RANK whole numbers, and byte
    offsets that tile ``data_size`` bytes exactly, with its size equal to its shape's; so the
    header cannot declare more than the file holds (``Truncated`` if the sizes differ).

    >>> check_tensor_header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 8)
    {'w': ('F32', (2,))}
    """
    if not isinstance(header, dict):
        raise Refusal("the safetensors header is not a JSON object")
    names = [name for name in header if name != "__metadata__"]
    if len(names) > MAX_TENSORS:
        raise Refusal(f"the file declares {len(names)} tensors, more than the {MAX_TENSORS} a model file may hold")
    declared, spans = {}, []
    for name in names:
        entry = header[name]
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise Refusal(f"the tensor {name!r} is not described by exactly a dtype, a shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in TENSOR_DTYPES:
            raise Refusal(f"the tensor {name!r} has the dtype {short(dtype)}; a model file holds only numbers "
                          f"({', '.join(TENSOR_DTYPES)})")
        if not (isinstance(shape, list) and len(shape) <= MAX_RANK and all(_whole(n, 0, 2**62) for n in shape)):
            raise Refusal(f"the tensor {name!r} has the shape {short(shape)}; a shape is at most {MAX_RANK} "
                          "whole numbers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(n, 0, 2**62) for n in offsets)
                and offsets[0] <= offsets[1]):
            raise Refusal(f"the tensor {name!r} has the byte offsets {short(offsets)}, not [start, end]")
        size = math.prod(shape) * TENSOR_DTYPES[dtype]
        if offsets[1] - offsets[0] != size:
            raise Refusal(f"the tensor {name!r} declares the shape {shape} of {dtype} ({size} bytes) but spans "
                          f"{offsets[1] - offsets[0]} bytes")
        declared[name] = (dtype, tuple(shape))
        spans.append((offsets[0], offsets[1]))
    position = 0
    for start, end in sorted(spans):
        if start != position:
            raise Refusal("the tensors' byte offsets overlap or leave gaps")
        position = end
    if position != data_size:
        raise Truncated(f"its tensors declare {position} bytes of data, but the file holds {data_size}")
    return declared


def check_arrays(metadata) -> None:
    """Every numpy array stored as JSON (``{"__array__": [...], "dtype": ...}``) has a numeric dtype.

    A text dtype such as 'U500000000' would make numpy allocate half a gigabyte per value.
    Walks the parsed metadata without recursion.

    >>> check_arrays({"state": {"__array__": [1, 2], "dtype": "uint32"}})
    >>> check_arrays({"state": {"__array__": ["a"], "dtype": "U500000000"}})
    Traceback (most recent call last):
    ...
    nnfit.schema.Refusal: state has the array dtype 'U500000000'; stored arrays hold only numbers (bool, float16, float32, float64, int16, int32, int64, int8, uint16, uint32, uint64, uint8)
    """
    stack = [("", metadata)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            if "__array__" in value:
                dtype = value.get("dtype")
                if not isinstance(dtype, str) or dtype not in ARRAY_DTYPES:
                    raise Refusal(f"{where or 'the metadata'} has the array dtype {short(dtype)}; stored arrays hold "
                                  f"only numbers ({', '.join(sorted(ARRAY_DTYPES))})")
                if _count(value["__array__"]) > MAX_ARRAY_ITEMS:
                    raise Refusal(f"{where} stores an array of more than {MAX_ARRAY_ITEMS} values")
            stack.extend((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


def check_mlp(metadata: dict, shapes: dict) -> dict:
    """Check an ``nf.mlp`` file's metadata against its tensors' shapes; return the architecture.

    ``shapes`` maps each tensor's name to its shape (from the header, before any tensor is
    read). Every size the architecture declares must be the size of the tensor that holds its
    weights, so a file cannot make nnfit build a network larger than the file.

    >>> shapes = {"hidden.0.weight": (4, 3), "hidden.0.bias": (4,), "output.weight": (1, 4), "output.bias": (1,)}
    >>> meta = {"task": "regression", "history": [], "design": {},
    ...         "settings": {"formula": "y ~ .", "optimizer": "rmsprop", "batch_size": 32, "n_train": 10},
    ...         "architecture": {"input_size": 3, "hidden": [4], "output_size": 1,
    ...                          "activation": ["relu"], "dropout": [0.0]}}
    >>> check_mlp(meta, shapes)["hidden"]
    [4]
    >>> meta["architecture"]["hidden"] = [20000]
    >>> check_mlp(meta, shapes)
    Traceback (most recent call last):
    ...
    nnfit.schema.Refusal: architecture.hidden[0] is 20000, but the tensor 'hidden.0.weight' has the shape [4, 3] (expected [20000, 3])
    """
    for field in ("task", "design", "architecture", "settings", "history"):
        if field not in metadata:
            raise Refusal(f"the field {field!r} is missing")
    if metadata["task"] not in TASKS:
        raise Refusal(f"task is {short(metadata['task'])}, not one of {', '.join(TASKS)}")
    if not isinstance(metadata["design"], dict):
        raise Refusal(f"design is {_kind(metadata['design'])}, not an object")
    _check_settings(metadata["settings"])
    _check_history(metadata["history"])
    architecture = metadata["architecture"]
    if not isinstance(architecture, dict):
        raise Refusal(f"architecture is {_kind(architecture)}, not an object")
    own = {name: shape for name, shape in shapes.items() if not name.startswith(CALIBRATION_PREFIX)}
    _check_shapes(architecture, _expected_shapes(architecture), own, "architecture")
    calibration = {name: shape for name, shape in shapes.items() if name.startswith(CALIBRATION_PREFIX)}
    if "calibration" in metadata:
        check_calibration(metadata["calibration"], calibration, architecture, metadata["task"])
    elif calibration:
        raise Refusal(f"the file holds the tensor {sorted(calibration)[0]!r}, but no calibration")
    return architecture


def _check_shapes(architecture: dict, expected: dict, shapes: dict, what: str, prefix: str = "") -> None:
    """Every tensor ``expected`` (named without ``prefix``) is in ``shapes`` with its shape, and no other."""
    missing = [name for name in expected if prefix + name not in shapes]
    if missing:
        raise Refusal(f"{what} needs the tensor {prefix + missing[0]!r}, which the file does not hold")
    extra = sorted(name for name in shapes if name[len(prefix):] not in expected)
    if extra:
        raise Refusal(f"the file holds the tensor {extra[0]!r}, which {what} has no place for")
    for name, (shape, fields) in expected.items():
        held = tuple(shapes[prefix + name])
        if held != shape:
            dim = next((i for i, (a, b) in enumerate(zip(held, shape)) if a != b), 0)
            field = fields[dim] if len(held) == len(shape) else fields[0]
            value = _field_value(architecture, field)
            named = field if what == "architecture" else f"{what}{field[len('architecture'):]}"
            raise Refusal(f"{named} is {value}, but the tensor {prefix + name!r} has the shape {list(held)} "
                          f"(expected {list(shape)})")


def check_calibration(calibration, shapes: dict, architecture: dict, task: str) -> None:
    """Check a file's conformal calibration (``nnfit.intervals``) before anything is built from it.

    ``calibration`` is plain JSON data: the method, one finite score of at least 0 per
    calibration row (at most 1 for a classifier, whose scores are 1 - p), and for CV+ each
    row's fold, the number of folds and of networks per fold, and the fold networks'
    architecture, which must be the fit's own stacked; ``shapes`` are the ``calibration.``
    tensors, checked against it. Lengths are checked before any value is read.

    >>> net = {"input_size": 3, "hidden": [4], "output_size": 1, "activation": ["relu"], "dropout": [0.0]}
    >>> check_calibration({"method": "split", "scores": [0.5, 1.5]}, {}, net, "regression")
    >>> check_calibration({"method": "split", "scores": [0.5, float("nan")]}, {}, net, "regression")
    Traceback (most recent call last):
    ...
    nnfit.schema.Refusal: calibration.scores[1] is nan, not a finite number of at least 0
    """
    if not isinstance(calibration, dict):
        raise Refusal(f"calibration is {_kind(calibration)}, not an object")
    method = calibration.get("method")
    if method not in CALIBRATION_FIELDS:
        raise Refusal(f"calibration.method is {short(method)}, not one of {', '.join(CALIBRATION_FIELDS)}")
    fields = CALIBRATION_FIELDS[method]
    for field in fields:
        if field not in calibration:
            raise Refusal(f"the field 'calibration.{field}' is missing")
    unknown = sorted(set(calibration) - set(fields))
    if unknown:
        raise Refusal(f"calibration has the unknown field {short(unknown[0])}")
    scores = calibration["scores"]
    if not isinstance(scores, list) or not 1 <= len(scores) <= MAX_CALIBRATION_ROWS:
        raise Refusal(f"calibration.scores is {_length(scores)}; it holds 1 to {MAX_CALIBRATION_ROWS} scores")
    high = math.inf if task == "regression" else 1
    for i, value in enumerate(scores):
        if not (_number(value) and math.isfinite(value) and 0 <= value <= high):
            bound = "of at least 0" if task == "regression" else "from 0 to 1"
            raise Refusal(f"calibration.scores[{i}] is {short(value)}, not a finite number {bound}")
    if method == "split":
        if shapes:
            raise Refusal(f"the file holds the tensor {sorted(shapes)[0]!r}, which split calibration has no place for")
        return
    if task != "regression":
        raise Refusal(f"calibration.method is 'cv+', which nnfit writes only for a regression, not for task {task!r}")
    folds, members = calibration["folds"], calibration["members"]
    if not _whole(folds, 2, MAX_MODELS):
        raise Refusal(f"calibration.folds is {short(folds)}, not a whole number from 2 to {MAX_MODELS}")
    if not _whole(members, 1, MAX_MODELS // folds):
        raise Refusal(f"calibration.members is {short(members)}, not a whole number from 1 to {MAX_MODELS // folds}")
    fold = calibration["fold"]
    if not isinstance(fold, list) or len(fold) != len(scores):
        raise Refusal(f"calibration.fold has {_length(fold)}, but calibration.scores has {len(scores)}")
    for i, value in enumerate(fold):
        if not _whole(value, 0, folds - 1):
            raise Refusal(f"calibration.fold[{i}] is {short(value)}, not a fold from 0 to {folds - 1}")
    networks = calibration["architecture"]
    if not isinstance(networks, dict):
        raise Refusal(f"calibration.architecture is {_kind(networks)}, not an object")
    for field in ("input_size", "hidden", "output_size", "activation"):
        if networks.get(field) != architecture.get(field):
            raise Refusal(f"calibration.architecture.{field} is {short(networks.get(field))}, but the fit's "
                          f"architecture.{field} is {short(architecture.get(field))}")
    if networks.get("n_models") != folds * members:
        raise Refusal(f"calibration.architecture.n_models is {short(networks.get('n_models'))}, but calibration has "
                      f"{folds} folds of {members} networks")
    try:
        expected = _expected_shapes(networks)
    except Refusal as refusal:
        raise Refusal(f"calibration.{refusal}".replace("calibration.the field 'architecture.",
                                                       "the field 'calibration.architecture.")) from None
    _check_shapes(networks, expected, shapes, "calibration.architecture", CALIBRATION_PREFIX)


def _expected_shapes(a: dict) -> dict:
    """{tensor name: (shape, the field each dimension comes from)} of an MLP or a StackedMLP."""
    required = ("input_size", "hidden", "output_size", "activation", "dropout")
    for field in required:
        if field not in a:
            raise Refusal(f"the field 'architecture.{field}' is missing")
    allowed = set(required) | {"n_models", "embeddings"}
    unknown = sorted(set(a) - allowed)
    if unknown:
        raise Refusal(f"architecture has the unknown field {unknown[0]!r}")
    hidden, activation, dropout = a["hidden"], a["activation"], a["dropout"]
    _units(a["input_size"], "architecture.input_size", low=0)
    _units(a["output_size"], "architecture.output_size")
    if not isinstance(hidden, list) or len(hidden) > MAX_LAYERS:
        raise Refusal(f"architecture.hidden must be a list of at most {MAX_LAYERS} layer sizes, not {short(hidden)}")
    for i, size in enumerate(hidden):
        _units(size, f"architecture.hidden[{i}]")
    if not isinstance(activation, list) or len(activation) != len(hidden):
        raise Refusal(f"architecture.activation has {_length(activation)}, but architecture.hidden has "
                      f"{len(hidden)} layers")
    for i, name in enumerate(activation):
        if not isinstance(name, str) or not 0 < len(name) <= 32:
            raise Refusal(f"architecture.activation[{i}] is {short(name)}, not the name of an activation")
    stacked = "n_models" in a
    n_models = a.get("n_models", 1)
    if not _whole(n_models, 1, MAX_MODELS):
        raise Refusal(f"architecture.n_models is {short(n_models)}, not a whole number from 1 to {MAX_MODELS}")
    rows = dropout if stacked else [dropout]
    if not isinstance(rows, list) or len(rows) != n_models:
        raise Refusal(f"architecture.dropout has {_length(rows)}, but architecture.n_models is {n_models}")
    for k, row in enumerate(rows):
        field = f"architecture.dropout[{k}]" if stacked else "architecture.dropout"
        if not isinstance(row, list) or len(row) != len(hidden):
            raise Refusal(f"{field} has {_length(row)}, but architecture.hidden has {len(hidden)} layers")
        for i, p in enumerate(row):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
                raise Refusal(f"{field}[{i}] is {short(p)}, not a probability in [0, 1)")
    embeddings = a.get("embeddings", [])
    if stacked and embeddings:
        raise Refusal("architecture has both n_models and embeddings, which nnfit never writes together")
    if not isinstance(embeddings, list) or len(embeddings) > MAX_LAYERS:
        raise Refusal(f"architecture.embeddings must be a list of at most {MAX_LAYERS} [levels, size] pairs")
    for k, pair in enumerate(embeddings):
        if not isinstance(pair, list) or len(pair) != 2:
            raise Refusal(f"architecture.embeddings[{k}] is {short(pair)}, not a [levels, size] pair")
        _units(pair[0], f"architecture.embeddings[{k}][0]")
        _units(pair[1], f"architecture.embeddings[{k}][1]")

    p, out = a["input_size"], a["output_size"]
    expected = {}
    if stacked:
        widths = [p] + hidden + [out]
        fields = ["architecture.input_size"] + [f"architecture.hidden[{i}]" for i in range(len(hidden))]
        fields.append("architecture.output_size")
        for i in range(len(hidden) + 1):
            expected[f"weights.{i}"] = ((n_models, widths[i], widths[i + 1]),
                                        ("architecture.n_models", fields[i], fields[i + 1]))
            expected[f"biases.{i}"] = ((n_models, 1, widths[i + 1]),
                                       ("architecture.n_models", fields[i + 1], fields[i + 1]))
        expected["dropout"] = ((n_models, len(hidden)), ("architecture.n_models", "architecture.dropout"))
        return expected
    for k, (levels, size) in enumerate(embeddings):
        field = f"architecture.embeddings[{k}]"
        expected[f"embed.{k}.weight"] = ((levels, size), (f"{field}[0]", f"{field}[1]"))
    widths = [p + sum(size for _, size in embeddings)] + hidden
    into = ["architecture.input_size"] + [f"architecture.hidden[{i}]" for i in range(len(hidden))]
    for i, size in enumerate(hidden):
        expected[f"hidden.{i}.weight"] = ((size, widths[i]), (into[i + 1], into[i]))
        expected[f"hidden.{i}.bias"] = ((size,), (into[i + 1],))
    expected["output.weight"] = ((out, widths[-1]), ("architecture.output_size", into[-1]))
    expected["output.bias"] = ((out,), ("architecture.output_size",))
    return expected


def _field_value(architecture: dict, field: str):
    value = architecture
    for part in re.findall(r"\.(\w+)|\[(\d+)\]", field[len("architecture"):]):
        value = value[part[0]] if part[0] else value[int(part[1])]
    return value


def _check_settings(settings) -> None:
    if not isinstance(settings, dict):
        raise Refusal(f"settings is {_kind(settings)}, not an object")
    for field in ("formula", "optimizer", "batch_size", "n_train"):
        if field not in settings:
            raise Refusal(f"the field 'settings.{field}' is missing")
    for field in ("formula", "optimizer"):
        if not isinstance(settings[field], str) or len(settings[field]) > 10_000:
            raise Refusal(f"settings.{field} is {short(settings[field])}, not a text")
    if settings["batch_size"] is not None and not _whole(settings["batch_size"], 1, 2**62):
        raise Refusal(f"settings.batch_size is {short(settings['batch_size'])}, not a positive whole number or null")
    for field in ("n_train", "n_valid", "n_left_out", "n_valid_left_out"):
        if field in settings and settings[field] is not None and not _whole(settings[field], 0, 2**62):
            raise Refusal(f"settings.{field} is {short(settings[field])}, not a whole number of rows")
    threshold = settings.get("threshold")  # a binary classifier's decision threshold (nf.mlp(threshold=))
    if threshold is not None and not (_number(threshold) and 0 < threshold < 1):
        raise Refusal(f"settings.threshold is {short(threshold)}, not a probability strictly between 0 and 1")
    lr = settings.get("lr")
    lrs = lr if isinstance(lr, list) else [lr]
    if len(lrs) > MAX_MODELS or not all(v is None or (_number(v) and v >= 0) for v in lrs):
        raise Refusal(f"settings.lr is {short(lr)}, not a learning rate (or a list of them)")


def _check_history(history) -> None:
    if not isinstance(history, list):
        raise Refusal(f"history is {_kind(history)}, not a list of rows")
    for i, row in enumerate(history):
        if not (isinstance(row, list) and len(row) in (4, 5) and isinstance(row[0], str) and isinstance(row[1], str)
                and len(row[0]) <= 100 and len(row[1]) <= 100 and _whole(row[2], 0, 2**62)
                and _number(row[3]) and (len(row) == 4 or _whole(row[4], 1, MAX_MODELS))):
            raise Refusal(f"history[{i}] is {short(row)}, not a row [set, metric, epoch, value] or "
                          "[set, metric, epoch, value, model]")


def _units(value, field: str, low: int = 1) -> None:
    if not _whole(value, low, MAX_UNITS):
        raise Refusal(f"{field} is {short(value)}, not a whole number from {low} to {MAX_UNITS}")


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value) -> int:
    """How many values a nested list holds, counting no further than MAX_ARRAY_ITEMS + 1."""
    total, stack = 0, [value]
    while stack and total <= MAX_ARRAY_ITEMS:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            total += 1
    return total


def _length(value) -> str:
    return f"{len(value)} values" if isinstance(value, list) else f"no list ({short(value)})"


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a text", type(None): "null"}.get(type(value), short(value))


def short(value) -> str:
    """``repr(value)``, cut to 60 characters: a field's value quoted in an error message.

    >>> short("x" * 100)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

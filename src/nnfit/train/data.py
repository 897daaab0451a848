"""What ``fit`` accepts as data, and how batches are cut from it.

Tensors that fit in memory take the fast path: one permutation per epoch and contiguous
slices, no DataLoader and no per-row Python. Datasets and DataLoaders go through torch's
DataLoader as usual.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import ArgumentError, ArgumentTypeError, DataError


class InMemory:
    """Tensors X and y (or X alone) held on one device, batched by slicing.

    With sample ``weight``s, each batch is (x, y, w).
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor | None, weight: torch.Tensor | None = None):
        self.X, self.y, self.weight = X, y, weight

    def __len__(self):
        return len(self.X)

    def to(self, device) -> "InMemory":
        X = self.X.to(device)
        return InMemory(X, None if self.y is None else self.y.to(device), None if self.weight is None else self.weight.to(device))

    def batches(self, batch_size: int | None, shuffle: bool, generator=None, drop_last: bool = False):
        """(x, y) pairs; a shuffled epoch gathers once and slices contiguous views."""
        n = len(self.X)
        X, y, w = self.X, self.y, self.weight
        if shuffle:
            order = torch.randperm(n, generator=generator).to(X.device)
            X = X[order]
            y = None if y is None else y[order]
            w = None if w is None else w[order]
        size = n if batch_size is None else batch_size
        stop = n - n % size if drop_last and n >= size else n
        for start in range(0, stop, size):
            batch = X[start : start + size], None if y is None else y[start : start + size]
            yield batch if w is None else (*batch, w[start : start + size])

    def n_batches(self, batch_size, drop_last=False):
        if batch_size is None:
            return 1
        return len(self) // batch_size if drop_last and len(self) >= batch_size else -(-len(self) // batch_size)

    def subset(self, index) -> "InMemory":
        return InMemory(self.X[index], None if self.y is None else self.y[index], None if self.weight is None else self.weight[index])


class Loader:
    """A DataLoader (given, or built over a Dataset) that moves each batch to the device."""

    def __init__(self, loader: DataLoader, device=None):
        self.loader = loader
        self.device = device

    def __len__(self):
        return len(self.loader.dataset)

    def to(self, device) -> "Loader":
        return Loader(self.loader, device)

    def batches(self, batch_size=None, shuffle=None, generator=None, drop_last=False):
        for batch in self.loader:
            x, y = _split_batch(batch)
            if self.device is not None:
                x = _to_device(x, self.device)
                y = _to_device(y, self.device)
            yield x, y

    def n_batches(self, batch_size=None, drop_last=False):
        try:
            return len(self.loader)
        except TypeError:
            return None


def _split_batch(batch):
    if isinstance(batch, (list, tuple)):
        if len(batch) == 1:
            return batch[0], None
        if len(batch) == 2:
            return batch[0], batch[1]
        return tuple(batch[:-1]), batch[-1]
    if isinstance(batch, dict) and "x" in batch:
        return batch["x"], batch.get("y")
    return batch, None


def _to_device(value, device):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value.to(device, non_blocking=True)


def as_tensor(value, name: str) -> torch.Tensor:
    """A tensor from a tensor, numpy array, pandas object or list; float64 becomes float32."""
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        if hasattr(value, "to_numpy"):
            value = value.to_numpy()
        try:
            array = np.asarray(value)
        except Exception as error:
            raise ArgumentTypeError(f"{name} must be a tensor or array, not {type(value).__name__}.") from error
        if array.dtype == object or array.dtype.kind in "USM":
            raise DataError(f"{name} holds non-numeric values (dtype {array.dtype}); encode them first, e.g. with nf.Design.")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dtype == torch.float64:
        tensor = tensor.to(torch.get_default_dtype())
    return tensor


def as_data(data, batch_size, shuffle: bool, generator=None, drop_last: bool = False, loader_options=None):
    """InMemory for (X, y) tuples and TensorDatasets; Loader for other Datasets and DataLoaders.

    A data source of the loop's own kind (``batches``, ``n_batches``, ``to`` and ``len``: such as
    ``nnfit.streaming.Streamed`` over a folder of Parquet files) comes back as it is."""
    if isinstance(data, (InMemory, Loader)) or all(hasattr(data, name) for name in ("batches", "n_batches", "to", "__len__")):
        return data
    if isinstance(data, DataLoader):
        return Loader(data)
    if isinstance(data, TensorDataset):
        data = tuple(data.tensors)
    if isinstance(data, Dataset):
        options = dict(loader_options or {})
        loader = DataLoader(
            data, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last, **options
        )
        return Loader(loader)
    if isinstance(data, (list, tuple)):
        if len(data) not in (1, 2):
            raise ArgumentError(f"data as a tuple must be (X, y) or (X,), not a tuple of {len(data)} items.")
        X = as_tensor(data[0], "X")
        y = as_tensor(data[1], "y") if len(data) == 2 and data[1] is not None else None
        if y is not None and len(X) != len(y):
            raise DataError(f"X has {len(X)} rows but y has {len(y)}; they must match.")
        if len(X) == 0:
            raise DataError("The data has no rows.")
        return InMemory(X, y)
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return InMemory(as_tensor(data, "X"), None)
    raise ArgumentTypeError(
        f"data must be a tuple (X, y) of tensors or arrays, a torch Dataset or a DataLoader, not {type(data).__name__}."
    )


def split_valid(data: InMemory, fraction: float, generator, stratify: bool):
    """Hold out ``fraction`` of in-memory rows for validation (stratified by class codes)."""
    if isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ArgumentError(f"valid_data as a fraction must lie strictly between 0 and 1, not {fraction!r}.")
    n = len(data)
    order = torch.randperm(n, generator=generator)
    if stratify and data.y is not None and not data.y.is_floating_point() and data.y.ndim == 1:
        labels = data.y.cpu()[order]
        valid = torch.cat([order[labels == c][: int(round(fraction * int((labels == c).sum())))] for c in labels.unique()])
    else:
        valid = order[: int(round(fraction * n))]
    if len(valid) == 0 or len(valid) == n:
        raise ArgumentError(f"valid_data={fraction} leaves no rows for training or validation out of {n}.")
    mask = torch.ones(n, dtype=torch.bool)
    mask[valid] = False
    train_index = mask.nonzero().reshape(-1)
    valid_index = valid.sort().values
    return data.subset(train_index.to(data.X.device)), data.subset(valid_index.to(data.X.device))


def row_weights(y, sample_weight, class_weight):
    """Each training row's weight from sample_weight and class_weight (targets ``y``), or None for neither.

    >>> import torch
    >>> from nnfit.train.data import row_weights
    >>> row_weights(torch.tensor([0, 0, 0, 1]), [1.0, 2.0, 1.0, 1.0], "balanced").tolist()
    [0.6666666865348816, 1.3333333730697632, 0.6666666865348816, 2.0]
    """
    if sample_weight is None and class_weight is None:
        return None
    weight = torch.ones(len(y))
    if sample_weight is not None:
        given = as_tensor(sample_weight, "sample_weight").to(torch.float32).reshape(-1)
        if len(given) != len(y):
            raise DataError(f"sample_weight has {len(given)} values but the data has {len(y)} rows; give one per row.")
        if not (torch.isfinite(given).all() and (given >= 0).all()):
            raise ArgumentError("sample_weight must hold finite, non-negative numbers.")
        weight = weight * given
    if class_weight is not None:
        weight = weight * _class_weights(y, class_weight)
    return weight.to(y.device)


def no_weights(sample_weight, class_weight) -> None:
    """None, or the error for weights given with data that is not (X, y) in memory."""
    if sample_weight is not None or class_weight is not None:
        raise ArgumentError(
            "sample_weight and class_weight need (X, y) data in memory; with a Dataset or DataLoader, "
            "weight the rows in your own loss function."
        )


def _class_weights(y, class_weight) -> torch.Tensor:
    codes = y.reshape(-1).cpu()
    if y.numel() != len(y) or (codes.is_floating_point() and not bool((codes == codes.round()).all())):
        raise ArgumentError(
            "class_weight needs class codes: y must hold one whole number per row (0, 1, 2, ...), "
            "as for nn.CrossEntropyLoss or a 0/1 target."
        )
    codes = codes.to(torch.int64)
    counts = torch.bincount(codes).to(torch.float32)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ArgumentError(f"class_weight must be 'balanced', a dict {{code: weight}} or one weight per class, not {class_weight!r}.")
        per_class = len(codes) / (int((counts > 0).sum()) * counts.clamp(min=1))  # as scikit-learn's "balanced"
    elif isinstance(class_weight, dict):
        per_class = torch.ones(len(counts))
        for code, value in class_weight.items():
            if not 0 <= int(code) < len(counts):
                raise ArgumentError(f"class_weight names the class {code!r}, but y's codes run from 0 to {len(counts) - 1}.")
            per_class[int(code)] = float(value)
    else:
        per_class = as_tensor(class_weight, "class_weight").to(torch.float32).reshape(-1)
        if len(per_class) < len(counts):
            raise ArgumentError(f"class_weight has {len(per_class)} weights but y has {len(counts)} classes; give one per class.")
    return per_class[codes]

"""Predicting in blocks of one size, so a row's prediction never depends on the rows that come with it.

A network evaluated on 1 row or on 1,000 gives bit-different numbers for the same row (matrix
products pick their kernels by size). ``predict_in_blocks`` always evaluates ``PREDICT_BLOCK``
rows at a time, padding the last block, so every front door predicts a row the same way.
"""

from __future__ import annotations

import torch


PREDICT_BLOCK = 1024
"""Rows per block when predicting: each block is evaluated with exactly this many rows."""


def predict_in_blocks(forward, rows, block: int = PREDICT_BLOCK, dim: int = 0, in_dim: int = 0) -> torch.Tensor:
    """``forward`` over ``rows`` (a tensor, or tensors in order) in blocks of exactly ``block`` rows.

    Matrix products pick their kernels by the number of rows (BLAS on the CPU, cuBLAS on a
    GPU), and kernels sum in different orders: the same row gave probabilities 3.6e-7 apart
    alone and among others. Evaluated in blocks of one size, the last filled up with copies
    of its first row (a valid input for any module) and the copies' outputs dropped, every row
    goes through the same kernels, so its prediction is the same whatever rows come with it,
    to the bit, at the cost of at most one padded block (about 30 microseconds for a small
    MLP on one CPU thread). ``in_dim`` and ``dim`` are the rows' dimension in the inputs and
    the outputs (for a stack of networks, outputs (K, n, outputs): ``dim=1``; inputs
    (K, n, p): ``in_dim=1``). A batch that is not one tensor is passed through as it is.

    >>> import torch
    >>> from nnfit.train.prediction import predict_in_blocks
    >>> net = torch.nn.Linear(3, 2)
    >>> x = torch.randn(5, 3)
    >>> alone = predict_in_blocks(net, x[:1]); together = predict_in_blocks(net, x)
    >>> torch.equal(alone[0], together[0])
    True
    """
    batches = [rows] if isinstance(rows, torch.Tensor) else rows
    outputs, pending, count, empty = [], [], 0, None

    def run(chunk, n):
        try:
            out = forward(chunk)
        except Exception:
            if n != block:  # say what went wrong with the rows given, not with the padded block
                forward(chunk.narrow(in_dim, 0, n))
            raise
        outputs.append(out if n == block else out.narrow(dim, 0, n))

    for x in batches:
        if not isinstance(x, torch.Tensor):
            outputs.append(forward(x))
            continue
        size = x.shape[in_dim]
        empty = x if empty is None and not size else empty
        if not pending and size >= block:  # whole blocks straight from the tensor, no copy
            whole = size - size % block
            for start in range(0, whole, block):
                run(x.narrow(in_dim, start, block), block)
            x, size = x.narrow(in_dim, whole, size - whole), size - whole
        if size:
            pending.append(x)
            count += size
        while count >= block:
            chunk = torch.cat(pending, dim=in_dim) if len(pending) > 1 else pending[0]
            run(chunk.narrow(in_dim, 0, block), block)
            rest = chunk.narrow(in_dim, block, count - block)
            pending, count = ([rest] if count > block else []), count - block
    if count:
        chunk = torch.cat(pending, dim=in_dim) if len(pending) > 1 else pending[0]
        shape = list(chunk.shape)
        shape[in_dim] = block - count
        run(torch.cat([chunk, chunk.narrow(in_dim, 0, 1).expand(shape)], dim=in_dim), count)
    if not outputs:
        if empty is None:
            raise ArgumentError("There are no rows to predict.")
        return forward(empty)
    return torch.cat(outputs, dim=dim)

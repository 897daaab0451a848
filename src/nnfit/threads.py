"""How many CPU threads a fit uses.

Tiny networks spend their time in per-operation overhead, where a second thread only adds
synchronisation (measured 20x slower on a 2-core machine under load); large ones gain from
every core. ``fit(threads=)`` overrides the choice; the previous setting is restored after.
"""

from __future__ import annotations

import contextlib
import os

import torch

# Below this many multiply-adds per training step (forward + backward), one thread is faster.
SMALL_STEP_FLOPS = 2e7


def choose(model: torch.nn.Module, batch_size: int | None, n_rows: int, device) -> int:
    """One thread for small work, all cores for large."""
    if torch.device(device).type != "cpu":
        return torch.get_num_threads()
    params = sum(p.numel() for p in model.parameters())
    rows = n_rows if batch_size is None else min(batch_size, n_rows)
    flops = 6 * params * max(rows, 1)
    return 1 if flops < SMALL_STEP_FLOPS else max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextlib.contextmanager
def using(threads: int | None):
    """Run the block with ``threads`` intra-op threads, then restore the previous number."""
    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)

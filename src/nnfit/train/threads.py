"""How many CPU threads a fit uses.

Tiny networks spend their time in per-operation overhead, where a second thread only adds
synchronisation: one thread is faster. Large ones gain from every core, but only from cores
that are idle: an OpenMP thread that has to share its core with another process makes every
parallel operation wait for it (measured 3x to 25x slower with 2 threads than with 1 on a
busy 2-core machine). So large work gets the cores that other processes leave idle at the
start of the fit, and always at least one. ``fit(threads=)`` overrides the choice; the
previous setting is restored after.

>>> import torch
>>> from nnfit.train import threads
>>> threads.choose(torch.nn.Linear(9, 1), batch_size=32, n_rows=300, device="cpu")
1
"""

from __future__ import annotations

import contextlib
import os
import time

import torch

# Below this many floating-point operations per training step (about 6 per parameter and row,
# forward and backward), one thread is faster even on an idle machine.
SMALL_STEP_FLOPS = 2e7


def choose(model: torch.nn.Module, batch_size: int | None, n_rows: int, device) -> int:
    """One thread for small work; for large work, the cores other processes leave idle."""
    if torch.device(device).type != "cpu":
        return torch.get_num_threads()
    params = sum(p.numel() for p in model.parameters())
    rows = n_rows if batch_size is None else min(batch_size, n_rows)
    if 6 * params * max(rows, 1) < SMALL_STEP_FLOPS:
        return 1
    return idle_cores()


def available_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def idle_cores(samples: int = 5, interval: float = 0.001) -> int:
    """Available cores that no other process is running on now (at least 1).

    Counts the threads running on the machine less this process's own (its OpenMP workers may
    still be spinning after the last parallel operation), a few times, and takes the median
    (Linux: /proc); where that cannot be read, every available core counts as idle.
    """
    cores = available_cores()
    counts = []
    for sample in range(samples):
        others = running_threads(), running_threads_here()
        if None in others:
            return cores
        counts.append(others[0] - others[1])
        if sample + 1 < samples:
            time.sleep(interval)
    busy = max(0, sorted(counts)[len(counts) // 2])
    return max(1, min(cores, cores - busy))


def running_threads() -> int | None:
    """Threads running or ready to run on the whole machine right now, or None if unknown."""
    try:
        with open("/proc/loadavg") as file:
            return int(file.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def running_threads_here() -> int | None:
    """This process's threads that are running or ready to run (the caller's included), or None."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    running = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat") as file:
                running += file.read().rpartition(")")[2].split()[0] == "R"
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
    return running


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

"""Threads: one for small work, the idle cores for large work, and the setting put back."""

import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit.train import threads


@pytest.fixture()
def machine(monkeypatch):
    """A pretend 4-core machine whose numbers of running threads (all, and this process's) the test sets."""
    state = {"running": 1, "here": 1}
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "running_threads", lambda: state["running"])
    monkeypatch.setattr(threads, "running_threads_here", lambda: state["here"])
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    return state


def large():
    return nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))


def test_small_work_gets_one_thread_whatever_the_load(machine):
    # the R lab's network: 9-50-1 on batches of 32, about 1e5 operations per step
    assert threads.choose(nn.Sequential(nn.Linear(9, 50), nn.ReLU(), nn.Linear(50, 1)), 32, 266, "cpu") == 1


def test_large_work_gets_the_idle_cores(machine):
    # 20-256-256-1 on batches of 1024: 6 * 71,000 parameters * 1024 rows, far above the threshold
    assert 6 * sum(p.numel() for p in large().parameters()) * 1024 > threads.SMALL_STEP_FLOPS
    machine["running"] = 1  # only the thread that asks
    assert threads.choose(large(), 1024, 1_000_000, "cpu") == 4
    machine["running"] = 3  # two other threads run: two cores are left
    assert threads.choose(large(), 1024, 1_000_000, "cpu") == 2
    machine["running"] = 9  # the machine is oversubscribed: never fewer than one
    assert threads.choose(large(), 1024, 1_000_000, "cpu") == 1


def test_this_processs_own_spinning_threads_do_not_count(machine):
    machine["running"], machine["here"] = 3, 3  # our OpenMP workers, still spinning
    assert threads.choose(large(), 1024, 1_000_000, "cpu") == 4


def test_full_batch_counts_every_row(machine):
    # 2,000 parameters: small per batch of 32, large when one batch holds 100,000 rows
    model = nn.Linear(1999, 1)
    assert threads.choose(model, 32, 100_000, "cpu") == 1
    assert threads.choose(model, None, 100_000, "cpu") == 4


def test_a_momentary_spike_does_not_decide(monkeypatch):
    readings = iter([1, 1, 7, 1, 1])
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "running_threads", lambda: next(readings))
    monkeypatch.setattr(threads, "running_threads_here", lambda: 1)
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    assert threads.idle_cores() == 2


def test_without_proc_loadavg_every_core_counts_as_idle(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    monkeypatch.setattr(threads, "running_threads", lambda: None)
    assert threads.idle_cores() == 3


def test_running_threads_reads_the_machine():
    running, here = threads.running_threads(), threads.running_threads_here()
    assert running is None or running >= 1
    assert here is None or here >= 1  # at least the thread asking


def test_using_restores_the_previous_setting():
    before = torch.get_num_threads()
    with threads.using(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), threads.using(before + 1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_fit_uses_its_choice_or_threads_and_restores(machine):
    X, y = torch.randn(64, 3), torch.randn(64, 1)
    before = torch.get_num_threads()
    seen = []

    class Spy(nf.callbacks.Callback):
        def on_fit_begin(self, ctx):
            seen.append(torch.get_num_threads())

    learner = nf.setup(nn.Linear, loss="mse").set_hparams(in_features=3, out_features=1)
    default = learner.fit((X, y), epochs=1, callbacks=[Spy()], verbose=False, seed=1)
    forced = learner.fit((X, y), epochs=1, callbacks=[Spy()], verbose=False, seed=1, threads=3)
    assert (default.threads, forced.threads) == (1, 3)
    assert seen == [1, 3]
    assert torch.get_num_threads() == before

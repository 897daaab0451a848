"""Exact resume: a fit killed with SIGKILL at random moments, including in the middle of a
checkpoint write, and rerun with AutoResume ends with the weights of an uninterrupted run."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from nnfit import files
from nnfit.train.checkpoints import CHECKPOINT_FILE, read_checkpoint

EPOCHS = 120

SCRIPT = textwrap.dedent(
    f"""
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    from torch import nn
    import nnfit as nf

    folder, out, slow_write = sys.argv[1], sys.argv[2], int(sys.argv[3])

    if slow_write:
        # Stall half-way through the n-th file write, so the test can kill the process there.
        real_fdopen, writes = os.fdopen, [0]

        class Stalling:
            def __init__(self, stream):
                self.stream = stream
            def write(self, payload):
                self.stream.write(payload[: len(payload) // 2])
                self.stream.flush()
                open(os.path.join(folder, "..", "stalled"), "w").close()
                time.sleep(600)
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                return self.stream.__exit__(*exc)
            def __getattr__(self, name):
                return getattr(self.stream, name)

        def fdopen(fd, mode="r", *args, **kwargs):
            stream = real_fdopen(fd, mode, *args, **kwargs)
            if "w" in mode:
                writes[0] += 1
                if writes[0] == slow_write:
                    return Stalling(stream)
            return stream

        os.fdopen = fdopen

    g = torch.Generator().manual_seed(0)
    X = torch.randn(512, 8, generator=g)
    y = torch.sin(X[:, :1]) + X[:, 1:2] * X[:, 2:3] + 0.1 * torch.randn(512, 1, generator=g)


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))

        def forward(self, x):
            return self.layers(x)


    class Decay(nf.callbacks.Callback):
        # State that changes training: lost on resume, the learning rate would be wrong.
        def __init__(self):
            self.count = 0
            self.first = True
        def on_epoch_begin(self, ctx):
            if self.first and folder != "-":
                with open(os.path.join(folder, "..", "starts.txt"), "a") as log:
                    log.write(f"{{ctx.epoch}}\\n")
                self.first = False
            for group in ctx.opt.param_groups:
                group["lr"] = 0.01 * 0.98 ** self.count
            self.count += 1
        def on_epoch_end(self, ctx):
            time.sleep(0.01)  # at least 10 ms an epoch, so that no run ends before the test kills it
        def state_dict(self):
            return {{"count": self.count}}
        def load_state_dict(self, state):
            self.count = state["count"]


    callbacks = [Decay(), nf.callbacks.EarlyStopping("valid_loss", patience=1000)]
    if folder != "-":
        callbacks.append(nf.callbacks.AutoResume(folder))
    fitted = nf.setup(Net, loss="mse", optimizer="rmsprop").fit(
        (X, y), epochs={EPOCHS}, batch_size=32, valid_data=0.2, seed=7, verbose=False, callbacks=callbacks
    )
    fitted.save(out)
    """
)


def _start(script, folder, out, slow_write=0):
    return subprocess.Popen(
        [sys.executable, str(script), str(folder), str(out), str(slow_write)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _wait_for(path, process, timeout=120.0, lines=1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().count("\n") >= lines:
            return
        if process.poll() is not None:
            raise AssertionError(f"the child ended early: {process.stderr.read().decode()}")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {path}")


def _kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _finish(process):
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    folder = tmp_path / "state"
    checkpoint = folder / CHECKPOINT_FILE
    starts = tmp_path / "starts.txt"

    reference = _start(script, "-", tmp_path / "reference.nnfit")

    # 1. Killed half-way through writing the third checkpoint: the second one is intact.
    child = _start(script, folder, tmp_path / "resumed.nnfit", slow_write=3)
    _wait_for(tmp_path / "stalled", child, lines=0)
    _kill(child)
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{CHECKPOINT_FILE}.")
    assert read_checkpoint(checkpoint)["epoch"] == 2

    # 2. Killed at random moments of later runs; whatever is on disk is always a whole checkpoint.
    moments = random.Random(20261126)
    for run in range(2, 5):
        child = _start(script, folder, tmp_path / "resumed.nnfit")
        _wait_for(starts, child, lines=run)
        time.sleep(moments.uniform(0.05, 0.3))  # at most 30 epochs, so runs 2-4 start by epoch 92
        assert child.poll() is None, "the run ended before it could be killed"
        _kill(child)
        if checkpoint.exists():
            files.read(checkpoint)  # raises if the file were broken

    # 3. The last run goes to the end.
    child = _start(script, folder, tmp_path / "resumed.nnfit")
    _finish(child)
    _finish(reference)

    started = [int(line) for line in starts.read_text().split()]
    assert started[0] == 0 and started[1] == 2  # the first rerun resumed after epoch 2
    assert started == sorted(started) and started[-1] > 2
    assert not checkpoint.exists() and not any(p.name.endswith(".tmp") for p in folder.iterdir())

    expected, expected_meta = files.read(tmp_path / "reference.nnfit")
    got, got_meta = files.read(tmp_path / "resumed.nnfit")
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert got_meta["history"] == expected_meta["history"]
    assert max(row[2] for row in got_meta["history"]) == EPOCHS


TWO_SCRIPTS = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    import nnfit as nf

    class Crash(nf.callbacks.Callback):
        weight = 5000  # after AutoResume has saved the epoch
        def on_epoch_end(self, ctx):
            if ctx.epoch + 1 == 2 and sys.argv[1] == "crash":
                raise SystemExit(3)

    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 3, generator=g)
    y = X.sum(dim=1, keepdim=True)
    resume = nf.callbacks.AutoResume()
    nf.setup(torch.nn.Linear, loss="mse").set_hparams(in_features=3, out_features=1).fit(
        (X, y), epochs=4, seed=int(sys.argv[2]), verbose=False, callbacks=[Crash(), resume])
    print(resume.path, resume.resumed_from)
    """
)


def test_two_scripts_with_the_default_folder_never_touch_each_others_checkpoint(tmp_path):
    """Two scripts of one name, run from one folder: each has its own checkpoint folder."""
    scripts = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        scripts.append(tmp_path / name / "train.py")
        scripts[-1].write_text(TWO_SCRIPTS)

    def run(script, *args):
        return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True)

    crashed = run(scripts[0], "crash", "1")
    assert crashed.returncode == 3, crashed.stderr
    (first,) = (tmp_path / "nnfit-resume").iterdir()
    assert first.name.startswith("train-") and len(first.name) == len("train-") + 8
    before = (first / CHECKPOINT_FILE).read_bytes()
    other = run(scripts[1], "finish", "2")  # another script, another seed: starts afresh, elsewhere
    assert other.returncode == 0, other.stderr
    assert other.stdout.split()[1] == "None" and other.stdout.split()[0] != f"nnfit-resume/{first.name}"
    assert (first / CHECKPOINT_FILE).read_bytes() == before
    assert [p.name for p in (tmp_path / "nnfit-resume").iterdir()] == [first.name]
    resumed = run(scripts[0], "finish", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == [f"nnfit-resume/{first.name}", "2"]
    assert not (tmp_path / "nnfit-resume").exists()

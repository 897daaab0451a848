"""Memory: a long fit on the R lab's workload holds its resident memory flat after warm-up."""

import gc
import os
import warnings

import pytest

import nnfit as nf

STATM = "/proc/self/statm"


def resident_bytes() -> int:
    with open(STATM) as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ResidentMemory(nf.callbacks.Callback):
    """The process's resident memory at the end of each epoch."""

    def __init__(self):
        self.by_epoch = {}

    def on_epoch_end(self, ctx):
        self.by_epoch[ctx.epoch + 1] = resident_bytes()


@pytest.mark.skipif(not os.path.exists(STATM), reason="needs /proc (Linux)")
def test_300_epochs_of_the_r_lab_do_not_grow_resident_memory(penguins):
    gc.collect()
    memory = ResidentMemory()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = nf.mlp("body_mass_g ~ .", data=penguins, hidden=50, activation="relu", dropout=0.4,
                     optimizer="rmsprop", epochs=300, valid=0.2, seed=1, verbose=False, callbacks=[memory])
    assert fit.metrics["epoch"].max() == 300 and sorted(memory.by_epoch) == list(range(1, 301))
    settled = memory.by_epoch[30]
    growth = max(memory.by_epoch[e] for e in range(30, 301)) - settled
    # The history adds a few hundred small tuples; a leak of even one batch's tensors per
    # epoch would add megabytes over 270 epochs.
    assert growth < 8 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB after epoch 30"

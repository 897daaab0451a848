"""One fit over every process that torchrun starts: on one machine, or on every node of a SLURM job.

    torchrun --nproc_per_node=2 examples/slurm/train.py                  # a demo: the penguins, as Parquet
    torchrun --nproc_per_node=2 examples/slurm/train.py DATA FORMULA OUT # a folder of Parquet files, streamed
    sbatch examples/slurm/train.sbatch examples/slurm/train.py DATA FORMULA OUT

Every process runs this whole script: each streams the Parquet folder (which must be on a file
system every node sees), trains on its share of every batch, and ends with the same model;
rank 0 alone writes OUT. Plain ``python examples/slurm/train.py`` fits in one process.
See docs/distributed.md.
"""

import os
import sys
import tempfile
import warnings

import nnfit as nf
from nnfit.streaming import write_parts
from nnfit.train import distributed


def main(data=None, formula="body_mass_g ~ . - year", out="nnfit-slurm-fit") -> None:
    if data is None:  # the demo: the penguins in three Parquet files (each process writes its own copy)
        warnings.simplefilter("ignore", nf.errors.MissingValuesWarning)
        data = write_parts(nf.datasets.load("penguins"), tempfile.mkdtemp(), n_files=3)
    fit = nf.mlp(formula, data=data, hidden=[64, 64], optimizer="adam", lr=1e-3, epochs=20, batch_size=64, seed=1,
                 verbose=False)  # the same seed= in every process: they must draw the same batches
    if distributed.rank() == 0:  # every process holds the fitted model; one writes it
        os.makedirs(out, exist_ok=True)
        fit.save(os.path.join(out, "model.nnfit"))
        print(fit)
        print(f"{distributed.world_size()} process(es); model written to {os.path.join(out, 'model.nnfit')}")


if __name__ == "__main__":
    main(*sys.argv[1:4])

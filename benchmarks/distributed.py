"""How much faster do N processes under torchrun fit than one process? Benchmarks, not tests.

Three workloads, each timed in fresh processes (one process with T threads, then N processes
started by torch.distributed.run with T // N threads each; the order alternates every round)
and reported as medians over rounds:

* L: 1,000,000 x 20 synthetic regression, MLP 20-256-256-1 ReLU, Adam, batch 1024, 1 epoch,
  through ``setup(nf.MLP).fit`` (data-parallel: each process trains on its share of each batch);
  rows per second;
* ensemble: ``nf.mlp(n_models=32)`` on the penguins (``body_mass_g ~ .``, without ``year``, hidden 50,
  dropout 0.4, RMSprop, batch 32, 100 epochs; the models spread over the processes);
* cv: 10-fold ``nf.cross_validate`` of the same networks (the folds spread over the processes).

The data are benchmarks/workloads.py's: workload L, and workload R's penguin rows (80% of the
complete rows without ``year``, nf.split seed 1). Run it on an idle machine; the timings of a
shared one are noisy.

    .venv/bin/python benchmarks/distributed.py                  # 3 rounds, 2 processes, 2 threads in all
    .venv/bin/python benchmarks/distributed.py --ceiling        # and what 2 processes could gain at best
    .venv/bin/python benchmarks/distributed.py --rounds 5 --nproc 4 --threads 4 --workloads L
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKLOADS = ("L", "ensemble", "cv")  # this script's; workloads.WORKLOADS are the suite's
PENGUINS = dict(hidden=50, dropout=0.4, optimizer="rmsprop", lr=0.01, batch_size=32, epochs=100)


def workload_data(name: str):
    """benchmarks/workloads.py's data for workload ``name`` ("L" or "R"), built the same way in every process."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workloads

    return workloads.load(workloads.WORKLOADS[name])


def worker(workload: str, threads: int, share: int = 1) -> dict:
    """One timed fit (after a short warm-up fit) in this process; rank 0's numbers.

    ``share=N`` (the ceiling, ``--ceiling``): this process alone, with no process group, does
    what one of N processes does in the spread fit: L's rows / N in batches of 1024 / N (the
    same number of steps), or 32 / N of the ensemble's networks."""
    import warnings

    import torch

    import nnfit as nf
    from nnfit.train import distributed

    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    if workload == "L":
        data = workload_data("L")
        X, y = data.X, data.y
        learner = (nf.setup(nf.MLP, loss="mse", optimizer="adam", metrics=[nf.metrics.MAE()])
                   .set_hparams(input_size=20, hidden=[256, 256], output_size=1).set_opt_hparams(lr=0.001))

        def fit(rows):
            return learner.fit((X[:rows], y[:rows]), epochs=1, batch_size=1024 // share, seed=1, verbose=False,
                               threads=threads, distributed=None if share == 1 else False).seconds

        fit(20_000)  # warm-up: the process group, the kernels
        _wait_for_the_others()
        began = time.perf_counter()
        train_seconds = fit(len(X) // share)
    else:
        training = workload_data("R").train_frame

        def fit(epochs):
            options = dict(PENGUINS, epochs=epochs, seed=1, threads=threads)
            if workload == "ensemble":
                return nf.mlp("body_mass_g ~ .", data=training, n_models=32 // share, verbose=False,
                              **options).settings["seconds"]
            began = time.perf_counter()
            nf.cross_validate("body_mass_g ~ .", training, folds=10, **options)
            return time.perf_counter() - began

        fit(2)  # warm-up
        _wait_for_the_others()
        began = time.perf_counter()
        train_seconds = fit(PENGUINS["epochs"])
    seconds = time.perf_counter() - began
    return {"workload": workload, "world": distributed.world_size(), "rank": distributed.rank(), "threads": threads,
            "seconds": seconds, "train_seconds": train_seconds}


def _wait_for_the_others() -> None:
    """In the ceiling's processes: say this one is warmed up, then wait until ``ceiling`` says all are
    (their timed fits then start together, as a spread fit's processes do; elsewhere nothing)."""
    folder = os.environ.get("NNFIT_BENCH_START")
    if not folder:
        return
    open(os.path.join(folder, f"ready-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + 600
    while not os.path.exists(os.path.join(folder, "go")):
        if not os.path.isdir(folder) or time.monotonic() > deadline:  # the parent gave up: so does this process
            raise SystemExit("benchmarks/distributed.py: no start signal; giving up")
        time.sleep(0.001)


def _read(out) -> str:
    out.seek(0)
    return out.read()


def launch_command(script: str, nproc: int, argv) -> list:
    """The command that runs ``script`` with ``argv``: in a plain interpreter for one process, under
    torch.distributed.run for several. ``--standalone`` has torchrun's rendezvous listen on a port
    the system gives it, which the processes then join: no port is picked here and freed, for
    another program to take before torchrun binds it."""
    if nproc == 1:
        return [sys.executable, script, *argv]
    # --local-addr: the loopback, not this host's full name (which some machines cannot resolve)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr=127.0.0.1",
            f"--nproc_per_node={nproc}", script, *argv]


def ceiling(workload: str, nproc: int, threads: int) -> dict:
    """What N processes could do at best: N processes started at once, each doing its share of the
    work alone (``worker(share=N)``), with nothing to exchange; the slowest one's seconds."""
    import tempfile

    script = os.path.abspath(__file__)
    command = [sys.executable, script, "--worker", workload, "--threads", str(threads), "--share", str(nproc)]
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), NNFIT_BENCH_START=folder)
        outputs = [tempfile.TemporaryFile("w+") for _ in range(nproc)]  # files: no pipe to fill up unread
        started = [subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
                   for out in outputs]
        try:
            deadline = time.monotonic() + 1800
            while len([n for n in os.listdir(folder) if n.startswith("ready-")]) < nproc:
                failed = [out for p, out in zip(started, outputs) if p.poll() is not None]
                if failed or time.monotonic() > deadline:  # no start signal: the others are stopped (finally)
                    text = _read(failed[0]) if failed else "(no process was ready after 30 minutes)"
                    raise SystemExit(f"{' '.join(command)} failed before its timed fit:\n{text}")
                time.sleep(0.001)
            open(os.path.join(folder, "go"), "w").close()  # every process is warmed up: they start together
            results = []
            for process, out in zip(started, outputs):
                process.wait(timeout=max(1, deadline - time.monotonic()))
                text = _read(out)
                lines = [line for line in text.splitlines() if line.startswith("{")]
                if process.returncode != 0 or not lines:
                    raise SystemExit(f"{' '.join(command)} failed:\n{text}")
                results.append(json.loads(lines[0]))
        finally:
            for process in started:  # none is left behind, whatever happened
                if process.poll() is None:
                    process.kill()
                    process.wait()
    return max(results, key=lambda r: r["train_seconds"])


def timed(workload: str, nproc: int, threads: int) -> dict:
    """Start the worker: in this interpreter for one process, under torch.distributed.run for several."""
    command = launch_command(os.path.abspath(__file__), nproc, ["--worker", workload, "--threads", str(threads)])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2, help="processes under torchrun (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="threads in all: one process gets them all, "
                                                               "each of N processes threads // N (default 2)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--ceiling", action="store_true",
                        help="also time N processes that each do their share alone, exchanging nothing: the most "
                             "N processes could gain (L and ensemble)")
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--share", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.worker, args.threads, args.share)
        if result["rank"] == 0:
            print(json.dumps(result), flush=True)
        return 0
    per_process = max(1, args.threads // args.nproc)
    print(f"{os.cpu_count()} cores; {args.nproc} processes x {per_process} thread(s) against 1 process x "
          f"{args.threads} threads (and, for the penguins, x 1 thread); {args.rounds} rounds, medians of the fit's "
          "seconds (after a warm-up fit in the same process)")
    for workload in args.workloads.split(","):
        # (what, processes, threads each): the spread fit, one process, and the ceiling
        setups = [("spread", args.nproc, per_process), ("one", 1, args.threads)]
        if workload != "L" and args.threads > 1:  # small networks often train faster on one thread
            setups.append(("one", 1, 1))
        if args.ceiling and workload != "cv":
            setups.append(("ceiling", args.nproc, per_process))
        runs = {setup: [] for setup in setups}
        for round_ in range(args.rounds):
            for setup in setups if round_ % 2 == 0 else setups[::-1]:
                what, nproc, threads = setup
                runs[setup].append(ceiling(workload, nproc, threads) if what == "ceiling" else timed(workload, nproc, threads))
        medians = {setup: statistics.median(r["train_seconds"] for r in runs[setup]) for setup in setups}
        for setup in setups:
            what, nproc, threads = setup
            each = ", ".join(f"{r['train_seconds']:.2f}" for r in runs[setup])
            rate = f", {1e6 / medians[setup]:,.0f} rows/s" if workload == "L" else ""
            label = f"{nproc} process(es) x {threads} thread(s)" + (", each its share alone (the ceiling)"
                                                                      if what == "ceiling" else "")
            print(f"{workload}: {label}: {medians[setup]:.2f} s{rate} ({each})")
        best = min(medians[setup] for setup in setups if setup[0] == "one")
        print(f"{workload}: {args.nproc} processes are {best / medians[setups[0]]:.2f}x as fast as the faster "
              "single process" + "".join(f"; at best (the ceiling) {best / medians[setup]:.2f}x"
                                         for setup in setups if setup[0] == "ceiling"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

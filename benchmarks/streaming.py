"""One epoch streamed from a Parquet file against the same epoch from tensors in memory.

    .venv/bin/python benchmarks/streaming.py --rows 20000000          # about 1.7 GB of Parquet
    .venv/bin/python benchmarks/streaming.py --rows 2000000 --rounds 3

Writes an N x 20 float32 Parquet file (x1..x20 and a response y, row groups of 65,536 rows)
into a temporary folder, then, in separate child processes with one torch thread each,
trains the workload "20-256-256-1 ReLU MLP, Adam, batch 1024" for one epoch:

* streamed: ``nf.setup(nf.MLP, ...).fit(streaming.prepare("y ~ .", file).data, epochs=1)``;
* in memory: the file read whole into float32 tensors, standardized as the design does, and
  ``nf.setup(nf.MLP, ...).fit((X, y), epochs=1)``.

Each child reports the epoch's rows/s (rows / ``Fitted.seconds``, the training loop alone;
the streamed child also reports its design passes, ``prepare``'s seconds) and its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). The two alternate within each round (the order
reverses every round), and the table gives medians over the rounds. Targets (the issue's):
streamed peak RSS <= 1 GB, streamed rows/s >= 0.9x in-memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

GROUP_ROWS = 65_536
FEATURES = 20
BATCH = 1024


def write(path: str, rows: int, seed: int = 0) -> None:
    """N rows of 20 standard normal float32 predictors and y = a ReLU network of them plus noise, in
    plain-encoded pages (dictionaries of random floats would only grow the file), snappy-compressed."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(FEATURES, 32)).astype(np.float32) / np.sqrt(FEATURES)
    w2 = rng.normal(size=32).astype(np.float32) / np.sqrt(32)
    names = [f"x{j}" for j in range(1, FEATURES + 1)] + ["y"]
    schema = pa.schema([(name, pa.float32()) for name in names])
    with pq.ParquetWriter(path, schema, use_dictionary=False) as writer:  # random floats: plain pages, snappy
        for start in range(0, rows, GROUP_ROWS):
            n = min(GROUP_ROWS, rows - start)
            x = rng.standard_normal((n, FEATURES), dtype=np.float32)
            y = np.maximum(x @ w1, 0) @ w2 + rng.standard_normal(n, dtype=np.float32) * 0.1
            columns = [pa.array(x[:, j]) for j in range(FEATURES)] + [pa.array(y.astype(np.float32))]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=GROUP_ROWS)


def learner():
    import nnfit as nf

    return nf.setup(nf.MLP, loss="mse", optimizer="adam").set_hparams(
        input_size=FEATURES, hidden=[256, 256], output_size=1, activation="relu")


def child(mode: str, path: str) -> dict:
    """One epoch, in this process: what it measured."""
    import warnings

    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    if mode == "streamed":
        from nnfit import streaming

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = streaming.prepare("y ~ .", path)
        data, n = prepared.data, prepared.n_rows
    else:
        import numpy as np
        import pyarrow.parquet as pq

        table = pq.read_table(path, use_threads=False)
        X = np.empty((table.num_rows, FEATURES), dtype=np.float32)
        for j in range(FEATURES):  # column by column, standardized in place (float64 sums), as the design does
            column = table.column(f"x{j + 1}").to_numpy()
            X[:, j] = (column - column.mean(dtype=np.float64)) / column.std(ddof=1, dtype=np.float64)
        y = table.column("y").to_numpy().astype(np.float32).reshape(-1, 1)
        del table, column
        y = (y - y.mean(dtype=np.float64)) / y.std(ddof=1, dtype=np.float64)
        data = (torch.from_numpy(X), torch.from_numpy(y.astype(np.float32)))
        n = len(X)
    ready = time.perf_counter() - started
    fitted = learner().fit(data, epochs=1, batch_size=BATCH, seed=1, verbose=False, threads=1)
    loss = float(fitted.metrics.query("metric == 'loss'")["value"].iloc[-1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"mode": mode, "rows": n, "ready_s": ready, "epoch_s": fitted.seconds, "rows_per_s": n / fitted.seconds,
            "peak_rss_bytes": peak, "loss": loss}


def run_child(mode: str, path: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", mode, "--file", path]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"The {mode} child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the Parquet file (default 20,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the table gives medians (default 3)")
    parser.add_argument("--child", choices=["streamed", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(child(options.child, options.file)))
        return
    if options.rows < BATCH or options.rounds < 1:
        raise SystemExit(f"--rows must be at least {BATCH} and --rounds at least 1.")
    folder = tempfile.mkdtemp(prefix="nnfit-streaming-")
    try:
        path = os.path.join(folder, "rows.parquet")
        started = time.perf_counter()
        write(path, options.rows)
        print(f"wrote {options.rows:,} x {FEATURES} float32 rows (+ y), {os.path.getsize(path) / 1e9:.2f} GB, "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        results = {"streamed": [], "memory": []}
        for round_ in range(options.rounds):
            for mode in ("streamed", "memory") if round_ % 2 == 0 else ("memory", "streamed"):
                measured = run_child(mode, path)
                results[mode].append(measured)
                print(f"round {round_ + 1} {mode:8s}: {measured['rows_per_s']:,.0f} rows/s, epoch "
                      f"{measured['epoch_s']:.1f} s, ready {measured['ready_s']:.1f} s, peak RSS "
                      f"{measured['peak_rss_bytes'] / 2**20:,.0f} MiB, loss {measured['loss']:.4f}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    median = {mode: {key: statistics.median(r[key] for r in rows) for key in ("rows_per_s", "peak_rss_bytes", "ready_s")}
              for mode, rows in results.items()}
    ratio = median["streamed"]["rows_per_s"] / median["memory"]["rows_per_s"]
    print(f"\nmedians of {options.rounds} rounds, {options.rows:,} rows, 1 torch thread:")
    print("| data | rows/s | peak RSS | before the epoch |\n|---|---|---|---|")
    for mode, label in (("streamed", "streamed (Parquet file)"), ("memory", "in-memory tensors")):
        m = median[mode]
        print(f"| {label} | {m['rows_per_s']:,.0f} | {m['peak_rss_bytes'] / 2**20:,.0f} MiB | {m['ready_s']:.1f} s |")
    rss = median["streamed"]["peak_rss_bytes"]
    print(f"streamed / in-memory rows/s: {ratio:.3f} (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'}); "
          f"streamed peak RSS {rss / 2**30:.2f} GiB (target <= 1 GB: {'met' if rss <= 1e9 else 'NOT met'})")


if __name__ == "__main__":
    main()

"""Race nnfit against hand-written PyTorch loops (and skorch, Lightning, Keras 3 when installed).

    .venv/bin/python benchmarks/run.py                 # R, C and L, 5 rounds (a few minutes)
    .venv/bin/python benchmarks/run.py --quick         # R and C, 1 round, hand loops and nnfit
    .venv/bin/python benchmarks/run.py --workloads R,C --rounds 7

Each contender runs in its own process, and the contenders alternate within each round, so
a noisy, shared machine slows them alike; tables report medians and ratios within this run.
A process loads the data, fits once cold (for R and C this is the whole-process time: a
script that fits once, from launch to the test score), then fits again warm: the fit time.
For L, and for skorch, Lightning and Keras, the warm-up is a fit on a few rows. A last
process per round times nnfit's setup().fit() with its default threads, 1 thread and 2
threads, alternating. skorch, Lightning and Keras run on R and C unless --contenders names them.

Results go to benchmarks/results/ as Markdown and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import contenders  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

THREAD_CHOICES = (None, 1, 2)  # None: nnfit's own choice
THREAD_CHECK_REPEATS = 3  # per round, alternating the choices
THREAD_CHECK_EPOCHS = 25


# ---------------------------------------------------------------------------- one process
def work(workload_name: str, contender: str, launched: float, threads: int | None) -> dict:
    """Run one contender once cold and once warm in this process; the measurements as a dict."""
    import workloads

    workload = WORKLOADS[workload_name]
    function, package = contenders.CONTENDERS[contender]
    data = workloads.load(workload)
    threads = _threads_for(contender, workload, data, threads)
    # Other libraries warm up on two batches: their whole-script time is not a target.
    warmup_rows = workload.warmup_rows if package is None else 2 * workload.batch_size
    first = function(workload, data.rows(warmup_rows), threads)
    script_seconds = time.time() - launched if warmup_rows is None else None
    cpu_began = time.process_time()
    warm = function(workload, data, threads)
    cpu_seconds = time.process_time() - cpu_began  # all threads; includes scoring the test rows
    return {
        "workload": workload_name, "contender": contender, "fit_seconds": warm.fit_seconds, "cpu_seconds": cpu_seconds,
        "train_seconds": warm.train_seconds, "metric": warm.metric, "threads": warm.threads,
        "script_seconds": script_seconds,
        "cold_fit_seconds": first.fit_seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def check_threads(workload_name: str, repeats: int) -> dict:
    """nnfit setup().fit() with its default threads, 1 and 2, alternating: {choice: [seconds]}.

    On at most ``THREAD_CHECK_EPOCHS`` epochs and the workload's ``thread_check_rows``: two
    threads on a busy machine can be many times slower.
    """
    import dataclasses

    import workloads

    workload = WORKLOADS[workload_name]
    data = workloads.load(workload).rows(workload.thread_check_rows)
    workload = dataclasses.replace(workload, epochs=min(workload.epochs, THREAD_CHECK_EPOCHS))
    contenders.nnfit_setup(workload, data.rows(2_000), None)  # warm up
    seconds = {str(choice): [] for choice in THREAD_CHOICES}
    chosen = []
    for repeat in range(repeats):
        for choice in THREAD_CHOICES[repeat % 3 :] + THREAD_CHOICES[: repeat % 3]:  # rotate who goes first
            result = contenders.nnfit_setup(workload, data, choice)
            seconds[str(choice)].append(result.train_seconds)
            if choice is None:
                chosen.append(result.threads)
    return {"workload": workload_name, "seconds": seconds, "default_threads": chosen}


def _threads_for(contender, workload, data, threads):
    """nnfit decides its own threads; every other contender gets the number nnfit would choose."""
    if threads is not None or contender.startswith("nnfit"):
        return threads
    import torch

    from nnfit.train import threads as nnfit_threads

    chosen = nnfit_threads.choose(workload.network(data.X.shape[1], data.n_outputs), workload.batch_size, len(data.X), "cpu")
    torch.set_num_threads(chosen)
    return chosen


# ---------------------------------------------------------------------------- the race
def spawn(*arguments) -> dict:
    """Run this file as a worker process and return the JSON it prints."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps([time.time(), *arguments])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{arguments} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def race(workload_names, rounds: int, names, everywhere: bool, thread_repeats: int) -> dict:
    """Alternate the contenders, round by round; other libraries skip L unless ``everywhere``."""
    runs, thread_checks = [], []
    for workload_name in workload_names:
        racing = names
        if workload_name == "L":
            racing = [name for name in names if name not in contenders.SMALL_WORKLOADS_ONLY]
        if workload_name == "L" and not everywhere:
            racing = [name for name in racing if contenders.CONTENDERS[name][1] is None]
        for round_number in range(rounds):
            order = racing if round_number % 2 == 0 else racing[::-1]  # alternate who goes first
            for name in order:
                print(f"  {workload_name} round {round_number + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
                runs.append({**spawn("work", workload_name, name), "round": round_number})
            thread_checks.append(spawn("threads", workload_name, thread_repeats))
    return {"runs": runs, "thread_checks": thread_checks}


# ---------------------------------------------------------------------------- tables
def summarize(results: dict, workload_names, names) -> dict:
    """Per workload: a row per contender (medians, ranges, ratios) and the threads check."""
    summary = {}
    for workload_name in workload_names:
        workload = WORKLOADS[workload_name]
        runs = [run for run in results["runs"] if run["workload"] == workload_name]
        rows = {}
        for name in names:
            mine = [run for run in runs if run["contender"] == name]
            if not mine:
                continue
            fits = [run["fit_seconds"] for run in mine]
            cpus = [run["cpu_seconds"] for run in mine]
            trains = [run["train_seconds"] for run in mine]
            scripts = [run["script_seconds"] for run in mine if run["script_seconds"] is not None]
            rows[name] = {
                "fit_median": statistics.median(fits), "fit_min": min(fits), "fit_max": max(fits),
                "train_median": statistics.median(trains), "cpu_median": statistics.median(cpus),
                "script_median": statistics.median(scripts) if scripts else None,
                "metric_median": statistics.median(run["metric"] for run in mine),
                "threads": sorted({run["threads"] for run in mine}),
                "peak_mb": max(run["peak_mb"] for run in mine), "rounds": len(mine),
            }
        experts = [run for run in runs if run["contender"] == "expert hand loop"]
        n_rows = 266 if workload_name != "L" else 1_000_000
        for name, row in rows.items():
            mine = [run for run in runs if run["contender"] == name]
            for measure in ("fit", "train", "cpu", "script"):
                row[f"{measure}_ratio"] = _paired_ratio(mine, experts, f"{measure}_seconds")
            row["rows_per_second"] = n_rows * workload.epochs / row["fit_median"]
            row["train_rows_per_second"] = n_rows * workload.epochs / row["train_median"]
        checks = [check for check in results["thread_checks"] if check["workload"] == workload_name]
        threads = {choice: statistics.median(s for check in checks for s in check["seconds"][choice])
                   for choice in map(str, THREAD_CHOICES)}
        # each repeat times the three choices back to back: compare within a repeat
        default_over_best = statistics.median(
            default / min(one, two)
            for check in checks
            for default, one, two in zip(*(check["seconds"][str(choice)] for choice in THREAD_CHOICES))
        )
        summary[workload_name] = {
            "title": workload.title, "metric": workload.metric, "rows": rows,
            "threads_check": {
                "median_seconds": threads, "default_over_best": default_over_best,
                "default_threads": sorted({t for check in checks for t in check["default_threads"]}),
                "rows": workload.thread_check_rows or n_rows, "epochs": min(workload.epochs, THREAD_CHECK_EPOCHS),
            },
        }
    return summary


def _paired_ratio(mine, experts, key):
    """Median over rounds of the contender's value over the expert's in the same round.

    Rounds run close together in time, so pairing them cancels a shared machine's slow spells.
    """
    expert_by_round = {run["round"]: run[key] for run in experts}
    ratios = [run[key] / expert_by_round[run["round"]] for run in mine
              if run[key] is not None and expert_by_round.get(run["round"])]
    return statistics.median(ratios) if ratios else None


def markdown(summary: dict, meta: dict) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']}, torch {meta['torch']}, {meta['rounds']} round(s); "
        f"command: `{meta['command']}`.",
        "",
    ]
    for name, part in summary.items():
        lines += [f"### {name}: {part['title']}", ""]
        lines += [
            f"| contender | fit s (median) | min-max | / expert | train s | train / expert | CPU s | CPU / expert | "
            f"rows/s | whole script s | script / expert | peak MB | threads | test {part['metric']} |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for contender, row in part["rows"].items():
            script = f"{row['script_median']:.2f} | {row['script_ratio']:.2f}x" if row["script_median"] else "- | -"
            metric = f"{row['metric_median']:.1f}" if part["metric"] == "mae" and name != "L" else f"{row['metric_median']:.3f}"
            lines.append(
                f"| {contender} | {row['fit_median']:.3f} | {row['fit_min']:.3f}-{row['fit_max']:.3f} | "
                f"{row['fit_ratio']:.2f}x | {row['train_median']:.3f} | {row['train_ratio']:.2f}x | "
                f"{row['cpu_median']:.3f} | {row['cpu_ratio']:.2f}x | "
                f"{row['train_rows_per_second']:,.0f} | {script} | {row['peak_mb']:.0f} | "
                f"{','.join(map(str, row['threads']))} | {metric} |"
            )
        check = part["threads_check"]
        seconds = check["median_seconds"]
        lines += [
            "",
            f"Threads ({check['rows']:,} rows, {check['epochs']} epoch(s), setup().fit()): default ({','.join(map(str, check['default_threads']))} "
            f"thread(s)) {seconds['None']:.3f} s, 1 thread {seconds['1']:.3f} s, 2 threads {seconds['2']:.3f} s; "
            f"default / best = {check['default_over_best']:.2f}.",
            "",
        ]
    lines += [
        "fit s: what the user calls to train (nf.mlp includes its formula and design); train s: the training "
        "loop alone. CPU s: the process's CPU time over the fit and its test score (all threads; steadier than "
        "wall time on a shared machine). whole script: from process launch to the test score of one cold fit (R and C). "
        "rows/s: training rows per second of the training loop. Ratios (/ expert) are medians over rounds of the "
        "ratio within a round; the threads line's default / best likewise compares within each back-to-back repeat.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="one round of R and C, hand loops and nnfit only (unless other options say)"
    )
    parser.add_argument("--workloads", help="comma-separated, from R, C, L (default: all; R,C with --quick)")
    parser.add_argument("--rounds", type=int, help="rounds per workload (default 5; 1 with --quick)")
    parser.add_argument(
        "--contenders", help="comma-separated names (default: all installed; skorch, Lightning and Keras only on R and C)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        launched, kind, *rest = json.loads(args.worker)
        result = work(rest[0], rest[1], launched, None) if kind == "work" else check_threads(rest[0], rest[1])
        print(json.dumps(result))
        return
    workload_names = (args.workloads or ("R,C" if args.quick else "R,C,L")).upper().split(",")
    unknown = [name for name in workload_names if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    rounds = args.rounds or (1 if args.quick else 5)
    installed = contenders.available()
    if args.contenders:
        names = args.contenders.split(",")
    else:  # --quick races nnfit against the hand loops only
        names = [name for name in installed if not args.quick or contenders.CONTENDERS[name][1] is None]
    unknown = [name for name in names if name not in contenders.CONTENDERS]
    if unknown:
        parser.error(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(contenders.CONTENDERS)}")
    skipped = [name for name in contenders.CONTENDERS if name not in installed]
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)} (pip install -e '.[bench]')", file=sys.stderr)
    began = time.perf_counter()
    results = race(workload_names, rounds, names, bool(args.contenders), 1 if args.quick else THREAD_CHECK_REPEATS)
    summary = summarize(results, workload_names, names)
    import torch

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__, "rounds": rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "command": " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "seconds": time.perf_counter() - began,
    }
    text = markdown(summary, meta)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}.md").write_text(text)
    (out / f"{stamp}.json").write_text(json.dumps({"meta": meta, "summary": summary, **results}, indent=1))
    (out / "latest.md").write_text(text)
    print(text)
    print(f"({meta['seconds']:.0f} s; written to {out / (stamp + '.md')} and .json)", file=sys.stderr)


if __name__ == "__main__":
    main()

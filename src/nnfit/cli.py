"""The ``nnfit`` command: the labs, the bundled data sets, and fit / predict / evaluate / report on files.

A user's mistake prints one line on stderr and exits with status 1, never a traceback.
Nothing the command writes replaces a file it did not write: ``nnfit fit`` keeps a manifest
(``.nnfit-manifest.json``) of the files it wrote in ``--out`` with their SHA-256, refuses a
folder holding anything else, and with ``--overwrite`` replaces only its own files. Every
argument and path is checked before training starts (see docs/files.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import warnings

from .recipe import DEFAULTS

MODEL_FILE = "model.nnfit"
MANIFEST = ".nnfit-manifest.json"
MANIFEST_FORMAT = "nnfit-manifest"
# What `nnfit fit` writes into --out (the manifest lists those of one fit).
OUTPUTS = (MODEL_FILE, "metrics.csv", "learning_curves.png", "truth_vs_predicted.png")
REPORT_FILE = "report.html"  # what `nnfit report DIR` writes into DIR by default
_STAGING = re.compile(r"\.nnfit-(\d+-[0-9a-f]{8})")  # a folder a fit writes into before it publishes
_TEMPORARY = re.compile(r"\.(.+)\.(\d+-[0-9a-f]{8})\.tmp")  # what files.atomic_write writes before it renames
_MAX_MANIFEST_BYTES = 2**20


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnfit", description="Fit neural networks to data frames, R style.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lab = commands.add_parser("lab", help="the R course's labs end to end: metrics beside the book's, plots")
    lab.add_argument("name", nargs="?", default=None, metavar="NAME", help="which lab (default: penguins)")
    lab.add_argument("--list", action="store_true", help="list the labs and what each does")
    lab.add_argument("--out", default="nnfit-lab", help="folder for the plots (default: nnfit-lab)")
    lab.add_argument("--seed", type=int, default=1)
    lab.add_argument("--epochs", type=int, default=None, help="training epochs (default: the lab's own)")

    commands.add_parser("datasets", help="the bundled data sets")

    fit = commands.add_parser("fit", help="fit a network from a formula; write the model and plots to --out")
    fit.add_argument("data", metavar="DATA",
                     help="CSV or Parquet file, a folder of Parquet files (streamed), or a bundled data set's name")
    fit.add_argument("formula", metavar="FORMULA", help="an R formula, e.g. 'body_mass_g ~ . - year'")
    fit.add_argument("--out", required=True, metavar="DIR")
    fit.add_argument("--overwrite", action="store_true",
                     help="replace an earlier fit in DIR (only the files nnfit wrote there)")
    fit.add_argument("--hidden", default=str(DEFAULTS["hidden"]),
                     help="units per hidden layer, comma-separated (e.g. 10,5)")
    fit.add_argument("--activation", default=DEFAULTS["activation"])
    fit.add_argument("--dropout", default=f"{DEFAULTS['dropout']:g}", help="one value, or one per layer, comma-separated")
    fit.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    fit.add_argument("--optimizer", default=DEFAULTS["optimizer"])
    fit.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    fit.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    fit.add_argument("--valid", type=float, default=None, help="fraction of rows held out for validation")
    fit.add_argument("--seed", type=int, default=None)
    fit.add_argument("--embed", choices=["auto"], default=None,
                     help="'auto': factors with many levels get a learned embedding instead of dummy columns")
    fit.add_argument("--unknown", choices=["error", "other"], default="error",
                     help="a new level of an embedded factor at predict time: an error, or an 'other' code")
    fit.add_argument("--stream", action="store_true",
                     help="read a .parquet file in chunks while training instead of into memory, as a folder of "
                          "Parquet files always is (no --valid fraction, no truth-vs-predicted plot)")
    fit.add_argument("--nproc", default="1", metavar="N",
                     help="processes that train data-parallel through torch.distributed.run (default: 1, this one); "
                          "see docs/distributed.md")

    predict = commands.add_parser("predict", help="predictions of a fitted model for new data, as CSV")
    predict.add_argument("model", metavar="DIR", help="a folder written by 'nnfit fit' (or a model file)")
    predict.add_argument("data", metavar="DATA")
    predict.add_argument("--out", metavar="FILE", default=None, help="CSV file (default: standard output)")
    predict.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")

    evaluate = commands.add_parser("evaluate", help="metrics of a fitted model on data with the response")
    evaluate.add_argument("model", metavar="DIR")
    evaluate.add_argument("data", metavar="DATA")

    report = commands.add_parser("report", help="one self-contained HTML page about a fitted model")
    report.add_argument("model", metavar="DIR", help="a folder written by 'nnfit fit'")
    report.add_argument("--data", metavar="DATA", default=None,
                        help="held-out rows with the response: adds their metrics, plots and permutation importance")
    report.add_argument("--out", metavar="FILE", default=None,
                        help=f"the page (default: DIR/{REPORT_FILE}, listed in DIR's manifest)")
    report.add_argument("--overwrite", action="store_true",
                        help="replace FILE outside DIR even if nnfit did not write it")
    parser.commands = commands.choices  # {command: its parser}: `fit --nproc` rebuilds a fit's command line
    return parser


def main(argv=None) -> int:
    """Entry point of the ``nnfit`` command; returns the exit status.

    >>> from nnfit.cli import main
    >>> main(["lab", "--list"])        # the shell's `nnfit lab --list`
    penguins     The R course's two penguin labs: ...
    ...
    sound        Spectrograms (torch.stft) and a CNN telling synthetic tones, chirps, pulses and noise apart.
    0
    """
    from .errors import NnfitError

    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _COMMANDS[args.command](args)
    except NnfitError as error:
        print(f"nnfit: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a folder made read-only while nnfit ran, ...
        print(f"nnfit: error: {_os_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnfit: interrupted", file=sys.stderr)
        return 130


def _os_error(error: OSError, path=None) -> str:
    """'Cannot write 'PATH': No space left on device.' from an OSError."""
    path = path if path is not None else error.filename
    reason = error.strerror or str(error)
    return f"Cannot write {str(path)!r}: {reason}." if path is not None else f"{reason}."


# ---------------------------------------------------------------------- lab, datasets
def _lab(args) -> int:
    from . import labs
    from .errors import ArgumentError, check_positive_int

    if args.list:
        for name, description in labs.LABS.items():
            print(f"{name:<12} {description}")
        return 0
    name = "penguins" if args.name is None else args.name
    if name not in labs.LABS:
        raise ArgumentError(f"Unknown lab {name!r}; choose one of: {', '.join(labs.LABS)}.")
    if args.epochs is not None:
        check_positive_int("--epochs", args.epochs)
    # Labs share one folder by default: a rerun replaces a lab's own plots, and keeps the other
    # labs' plots; a file nnfit did not write there is refused, as for `nnfit fit`.
    folder = _Folder(args.out, overwrite=True)
    try:
        labs.run(name=name, out=folder.staging, seed=args.seed, epochs=args.epochs,
                 stream=_Shown(folder.staging, args.out))
        folder.publish(keep_previous=True)
    finally:
        folder.close()
    return 0


class _Shown:
    """Standard output, with the staging folder's path written as the --out the user gave."""

    def __init__(self, staging: str, shown: str):
        self.staging, self.shown = staging, shown.rstrip("/") or shown

    def write(self, text: str) -> int:
        return sys.stdout.write(text.replace(self.staging, self.shown))

    def flush(self) -> None:
        sys.stdout.flush()


def _datasets(args) -> int:
    from . import datasets

    for name, description in datasets.describe().items():
        print(f"{name:<12} {description}")
    return 0


# ---------------------------------------------------------------------- checking arguments
def _numbers(text: str, kind, name: str):
    from .errors import ArgumentError

    try:
        values = [kind(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise ArgumentError(f"--{name} takes comma-separated numbers, not {text!r}.") from None
    return values


def _check_fit_arguments(args):
    """(hidden, dropout) from the fit options, every option checked; nothing is read or trained yet."""
    from .errors import ArgumentError, check_positive_int, check_rate
    from .modules import check_architecture
    from .train.optimizers import resolve

    hidden = _numbers(args.hidden, int, "hidden")
    dropout = _numbers(args.dropout, float, "dropout")
    dropout = dropout[0] if len(dropout) == 1 else dropout
    check_architecture(hidden, args.activation, dropout)
    resolve(args.optimizer)
    check_rate("--lr", args.lr, allow_none=True)
    check_positive_int("--epochs", args.epochs)
    check_positive_int("--batch-size", args.batch_size)
    if args.valid is not None and not 0 < args.valid < 1:
        raise ArgumentError(f"--valid must lie strictly between 0 and 1, not {args.valid}.")
    return hidden, dropout


def _data_file(source: str):
    """The path DATA names, or None for a bundled data set (which nnfit never writes)."""
    from .datasets import names

    return None if source in names() or not os.path.exists(source) else source


def _same_file(a, b) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------------- the --out folder of `fit`
class _Folder:
    """An --out folder claimed for one fit: checked, cleared of leftovers, with a staging folder."""

    def __init__(self, shown: str, overwrite: bool, label: str = "--out"):
        from .errors import ArgumentError

        self.shown, self.label = shown, label  # label: how the command's usage names the folder
        self.path = os.path.abspath(shown)
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise ArgumentError(f"{label} {shown!r} exists and is not a folder.")
        self.exists = os.path.isdir(self.path)
        self.previous = {}
        if self.exists:
            self.previous = self._check_contents(overwrite)
        self.home = self.path if self.exists else _existing_ancestor(self.path, shown)
        remove_leftovers(self.home)
        remove_leftovers(os.path.dirname(self.path))  # where a first fit into --out staged
        self.staging = _make_staging(self.home, shown, label)

    def _check_contents(self, overwrite: bool) -> dict:
        """{name: hashes} of the earlier fit here; refuses what nnfit did not write or what changed since."""
        from .errors import ArgumentError

        previous = read_manifest(self.path)
        listed = previous or {}
        remove_leftovers(self.path, listed)
        foreign, changed, ours = [], [], []
        for name in sorted(os.listdir(self.path)):
            full = os.path.join(self.path, name)
            if name == MANIFEST and previous is not None:
                continue
            if _busy(name, full, listed):
                continue  # a write of another nnfit run that is still going
            if name not in listed:
                foreign.append(name)
            elif not os.path.isfile(full) or os.path.islink(full) or _sha256(full) not in listed[name]:
                changed.append(name)
            else:
                ours.append(name)
        if foreign:
            raise ArgumentError(f"{self.label} {self.shown!r} holds files nnfit did not write ({_names(foreign)}); "
                                "nnfit never replaces them: choose another folder, or move them away.")
        if changed:
            raise ArgumentError(f"{self.label} {self.shown!r} holds files changed since nnfit wrote them ({_names(changed)}); "
                                "nnfit never replaces them: choose another folder, or move them away.")
        if ours and not overwrite:
            raise ArgumentError(f"{self.label} {self.shown!r} holds an earlier fit ({_names(ours)}); pass --overwrite to "
                                "replace it, or choose another folder.")
        return {name: listed[name] for name in ours}

    def stage(self, name: str, write) -> None:
        """Write one output into the staging folder; a failure names the file in --out."""
        from .errors import ArgumentError

        try:
            write(os.path.join(self.staging, name))
        except OSError as error:
            raise ArgumentError(_os_error(error, os.path.join(self.shown, name))) from None
        except ArgumentError as error:
            raise ArgumentError(str(error).replace(self.staging, self.shown.rstrip("/") or self.shown)) from None

    def publish(self, keep_previous: bool = False) -> None:
        """Move the staged files into --out, then drop the earlier fit's files the new one did not
        replace (or, with ``keep_previous``, keep them listed: the plots of other labs).

        The manifest is written first with the old and the new hash of each file, so a run
        killed half-way leaves files that the next run still recognises as nnfit's.
        """
        staged = {name: [_sha256(os.path.join(self.staging, name))] for name in sorted(os.listdir(self.staging))}
        shown = self.shown
        try:
            os.makedirs(self.path, exist_ok=True)
            both = {name: sorted(set(self.previous.get(name, [])) | set(staged.get(name, [])))
                    for name in sorted(set(self.previous) | set(staged))}
            write_manifest(self.path, both)
            for name in staged:
                shown = os.path.join(self.shown, name)
                os.replace(os.path.join(self.staging, name), os.path.join(self.path, name))
            final = dict(staged)
            for name, hashes in self.previous.items():
                full = os.path.join(self.path, name)
                if name in staged or not os.path.isfile(full) or _sha256(full) not in hashes:
                    continue
                if keep_previous:
                    final[name] = hashes
                else:
                    shown = os.path.join(self.shown, name)
                    os.unlink(full)  # a stale plot of the earlier fit
            shown = os.path.join(self.shown, MANIFEST)
            write_manifest(self.path, dict(sorted(final.items())))
        except OSError as error:
            from .errors import ArgumentError

            raise ArgumentError(_os_error(error, shown)) from None

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _existing_ancestor(path: str, shown: str) -> str:
    """The nearest folder above ``path`` that exists (where --out will be made)."""
    from .errors import ArgumentError

    folder = os.path.dirname(os.path.normpath(shown)) or "."
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder) or "."
    if not os.path.isdir(folder):
        raise ArgumentError(f"--out {shown!r} cannot be made: {folder!r} is a file, not a folder.")
    return os.path.abspath(folder)


def _make_staging(folder: str, shown: str, label: str = "--out") -> str:
    """A fresh `.nnfit-PID-XXXXXXXX` folder in ``folder``; it also proves that ``folder`` is writable."""
    import secrets

    from .errors import ArgumentError

    for _ in range(100):
        staging = os.path.join(folder, f".nnfit-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.mkdir(staging, 0o700)
            return staging
        except FileExistsError:
            continue
        except OSError as error:
            raise ArgumentError(f"Cannot write to {label} {shown!r}: {error.strerror}.") from None
    raise ArgumentError(f"Cannot write to {label} {shown!r}: no free name for a staging folder.")


def remove_leftovers(folder: str, names=()) -> None:
    """Remove what killed nnfit runs left in ``folder``: staging folders and temporaries of its own files.

    Only names nnfit makes (``.nnfit-PID-XXXXXXXX`` folders holding only plain files, and
    ``.NAME.PID-XXXXXXXX.tmp`` files for NAME the manifest, one of the outputs of a fit or one
    of ``names``), and only when process PID has ended or the leftover is a day old.

    >>> remove_leftovers("no-such-folder")
    """
    from .files import is_leftover

    try:
        entries = os.listdir(folder)
    except OSError:
        return
    ours = set(OUTPUTS) | {MANIFEST} | set(names)
    for name in entries:
        full = os.path.join(folder, name)
        staging, temporary = _STAGING.fullmatch(name), _TEMPORARY.fullmatch(name)
        try:
            if staging and is_leftover(full, staging.group(1)) and os.path.isdir(full) and not os.path.islink(full):
                inside = os.listdir(full)
                if all(stat.S_ISREG(os.lstat(os.path.join(full, n)).st_mode) for n in inside):
                    shutil.rmtree(full)
            elif temporary and temporary.group(1) in ours and is_leftover(full, temporary.group(2)):
                if os.path.isfile(full) and not os.path.islink(full):
                    os.unlink(full)
        except OSError:
            pass


def _busy(name: str, full: str, names=()) -> bool:
    """A staging folder, or a temporary of one of nnfit's files, of an nnfit run that is still going."""
    from .files import is_leftover

    match = _STAGING.fullmatch(name) or _TEMPORARY.fullmatch(name)
    if match is None or (match.re is _TEMPORARY and match.group(1) not in set(OUTPUTS) | {MANIFEST} | set(names)):
        return False
    return not is_leftover(full, match.group(match.re.groups))


def read_manifest(folder: str):
    """{name: [sha256, ...]} from ``folder``'s manifest, or None if it has none that nnfit wrote.

    >>> read_manifest("no-such-folder") is None
    True
    """
    from .schema import Refusal, check_depth

    path = os.path.join(folder, MANIFEST)
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_MANIFEST_BYTES:
            return None
        with open(path, "rb") as stream:
            text = stream.read(_MAX_MANIFEST_BYTES)
        check_depth(text)
        manifest = json.loads(text)
    except (OSError, ValueError, Refusal):
        return None
    listed = manifest.get("files") if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT else None
    if not isinstance(listed, dict):
        return None
    clean = {}
    for name, hashes in listed.items():
        # Plain names only: a manifest must never point nnfit at a file outside its folder.
        if (isinstance(name, str) and name == os.path.basename(name) and name not in ("", ".", "..", MANIFEST)
                and "/" not in name and "\\" not in name and isinstance(hashes, list)
                and all(isinstance(h, str) for h in hashes)):
            clean[name] = hashes
    return clean


def write_manifest(folder: str, listed: dict) -> None:
    """Write ``folder``'s manifest: the files nnfit wrote there and the SHA-256 of each.

    >>> import tempfile
    >>> from nnfit.cli import read_manifest, write_manifest
    >>> folder = tempfile.mkdtemp()
    >>> write_manifest(folder, {"model.nnfit": ["9f86d081884c7d65"]})
    >>> read_manifest(folder)
    {'model.nnfit': ['9f86d081884c7d65']}
    """
    from .files import atomic_write

    text = json.dumps({"format": MANIFEST_FORMAT, "version": 1, "files": listed}, indent=1, sort_keys=True)
    atomic_write(os.path.join(folder, MANIFEST), (text + "\n").encode())


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _names(names: list) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# ---------------------------------------------------------------------- fit, predict, evaluate
def _fit(args) -> int:
    from . import plot
    from .datasets import read
    from .errors import ArgumentError
    from .files import atomic_write
    from .mlpfit import mlp

    from .train import distributed

    nproc = _check_nproc(args.nproc)
    hidden, dropout = _check_fit_arguments(args)
    streamed = _streamed(args)
    data_file = _data_file(args.data)
    if data_file is not None and _same_file(data_file, args.out):
        kind = "folder" if os.path.isdir(data_file) else "file"
        raise ArgumentError(f"--out {args.out!r} is the data {kind}; choose another folder for the model and plots.")
    if nproc > 1:
        return _fit_in_processes(args, nproc)

    def fit(data):
        return mlp(args.formula, data, hidden=hidden, activation=args.activation, dropout=dropout,
                   optimizer=args.optimizer, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                   valid=args.valid, seed=args.seed, verbose=False, embed=args.embed, unknown=args.unknown)

    if distributed.active() and distributed.rank() > 0:  # under torchrun: rank 0 writes --out, the others train
        fit(args.data if streamed else read(args.data))
        return 0
    folder = _Folder(args.out, args.overwrite)
    try:
        frame = None if streamed else read(args.data)
        fitted = fit(args.data if streamed else frame)  # a path streams: nf.mlp reads it in chunks
        folder.stage(MODEL_FILE, fitted.save)
        folder.stage("metrics.csv", lambda path: atomic_write(path, fitted.metrics.to_csv(index=False).encode()))
        folder.stage("learning_curves.png", lambda path: plot.save(plot.learning_curves(fitted), path))
        # Streamed, the rows are not in memory for the truth-vs-predicted plot.
        if not streamed and fitted.task == "regression" and len(fitted.design.response_columns) == 1:
            # With --valid, the held-out rows (found by their encoded predictors and response, as
            # training saw them); without, the training rows, and the title says so.
            shown, rows = frame, "training rows (the model saw them; --valid holds some out)"
            held = getattr(getattr(fitted, "fitted", None), "ctx", None)
            if getattr(held, "valid_data", None) is not None:
                import numpy as np

                def key(X, y):
                    pairs = zip(np.asarray(X, np.float32), np.asarray(y, np.float32))
                    return [a.tobytes() + b.tobytes() for a, b in pairs]

                scored = fitted.design.transform(frame, response=True)
                wanted = {}
                for k in key(held.valid_data.X.cpu().numpy(), held.valid_data.y.cpu().numpy()):
                    wanted[k] = wanted.get(k, 0) + 1
                picked = []
                positions = np.flatnonzero(scored.rows) if scored.rows.dtype == bool else scored.rows
                for row, k in zip(positions, key(scored.inputs(), scored.y)):
                    if wanted.get(k, 0) > 0:
                        wanted[k] -= 1
                        picked.append(row)
                shown, rows = frame.iloc[picked], f"validation rows (held out from training, --valid {args.valid})"
            folder.stage("truth_vs_predicted.png", lambda path: plot.save(
                plot.truth_vs_predicted(fitted, shown, rows=rows), path))
        folder.publish()
    finally:
        folder.close()
    print(fitted)
    if streamed:
        print(f"Model and learning curves written to {args.out}/ (streamed data: no truth_vs_predicted.png, "
              "which needs the rows in memory)")
    else:
        print(f"Model and plots written to {args.out}/")
    return 0


def _streamed(args) -> bool:
    """Whether `nnfit fit` streams DATA: a folder of Parquet files always; a .parquet file with --stream.

    A streamed fit reads DATA in chunks while it trains (``nf.mlp(formula, data=path)``), so what
    needs every row in memory is refused (a --valid fraction) or left out (the truth-vs-predicted plot).
    """
    from .datasets import names
    from .errors import ArgumentError

    source = args.data
    if source in names() or not os.path.exists(source):  # a bundled data set, or read()'s own error
        if args.stream and source in names():
            raise ArgumentError(f"--stream reads a Parquet file in chunks, and {source!r} is a bundled data set, "
                                "read into memory; leave --stream out.")
        return False
    folder = os.path.isdir(source)
    if not folder and args.stream and not source.lower().endswith(".parquet"):
        raise ArgumentError(f"--stream reads a Parquet file in chunks, and {source!r} is not a .parquet file; "
                            "leave --stream out to read it into memory, or convert it to Parquet.")
    if (folder or args.stream) and args.valid is not None:
        raise ArgumentError(f"--valid holds out a fraction of the rows, which needs them in memory, and {source!r} "
                            f"is streamed ({'a folder of Parquet files' if folder else '--stream'}); leave --valid out"
                            f"{'' if folder else ', or leave --stream out to read the file into memory'}.")
    return folder or args.stream


def _check_nproc(text: str) -> int:
    """--nproc as a number of processes: a positive whole number; more than 1 only outside torchrun."""
    from .errors import ArgumentError
    from .train import distributed

    if not re.fullmatch(r"\s*\d+\s*", str(text)) or int(text) < 1:
        raise ArgumentError(f"--nproc must be a positive whole number of processes (1: train in this process), "
                            f"not {text!r}.")
    if int(text) > 1 and distributed.active():
        raise ArgumentError("--nproc starts torchrun's processes itself; under torchrun, leave --nproc out.")
    most = max(os.cpu_count() or 1, _gpus())
    if int(text) > most:  # a typo must not start thousands of processes
        raise ArgumentError(f"--nproc {int(text)} is more processes than this machine has cores or GPUs ({most}); "
                            "give at most that, or use torchrun --nnodes for several machines.")
    return int(text)


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _fit_in_processes(args, nproc: int) -> int:
    """`nnfit fit ... --nproc N`: the same fit in N processes started by torch.distributed.run.

    The folder is checked here first; then each process runs this command without --nproc
    (with a --seed drawn here when none was given: every process must shuffle alike), joined by
    torchrun's standalone rendezvous, which listens on a port the system gives it (no port is
    picked here and freed for another program to take first). Rank 0 writes --out as one process
    would; the others only train.
    """
    import secrets
    import subprocess

    from .errors import TrainingError

    _Folder(args.out, args.overwrite).close()  # refuse a folder now, not after training
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    # --local-addr: the loopback, as --master_addr=127.0.0.1 gave it, where torchrun would otherwise
    # give the workers this host's full name, which some machines cannot resolve (every process
    # then retries the lookup and the run hangs)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr=127.0.0.1",
               f"--nproc_per_node={nproc}", "-m", "nnfit.cli", *_fit_argv(args, seed)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # torchrun's warning otherwise
    done = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
    if done.returncode == 0:
        sys.stderr.write(done.stderr)
        return 0
    ours = [line[len("nnfit: error: "):] for line in done.stderr.splitlines() if line.startswith("nnfit: error: ")]
    if ours:
        raise TrainingError(ours[0])  # every process says the same; say it once
    sys.stderr.write(done.stderr)
    raise TrainingError(f"The {nproc} processes of the fit failed (torch.distributed.run exited with status "
                        f"{done.returncode}); their output is above.")


def _fit_argv(args, seed: int) -> list:
    """The `nnfit fit` command line of ``args`` without --nproc and with ``seed``: options, then '--' and DATA FORMULA."""
    options = []
    for action in _parser().commands["fit"]._actions:
        if not action.option_strings or action.dest in ("help", "nproc"):
            continue
        value = seed if action.dest == "seed" else getattr(args, action.dest)
        name = max(action.option_strings, key=len)
        if action.nargs == 0:  # a flag such as --overwrite
            options += [name] if value else []
        elif value is not None:
            options += [name, str(value)]
    return ["fit", *options, "--", args.data, args.formula]


def _model_path(path: str) -> str:
    return os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path


def _predict(args) -> int:
    from .datasets import read
    from .errors import ArgumentError, DataError
    from .files import atomic_write
    from .loading import load

    model_path = _model_path(args.model)
    if args.out is not None:
        data_file = _data_file(args.data)
        if data_file is not None and _same_file(data_file, args.out):
            raise ArgumentError(f"--out {args.out!r} is the data file; nnfit never writes over its input: "
                                "choose another file.")
        if os.path.lexists(model_path) and _same_file(model_path, args.out):
            raise ArgumentError(f"--out {args.out!r} is the model file; choose another file for the predictions.")
        if os.path.isdir(args.out):
            raise ArgumentError(f"Cannot write to {args.out!r}: it is a directory.")
        if os.path.lexists(args.out) and not args.overwrite:
            raise ArgumentError(f"--out {args.out!r} exists; pass --overwrite to replace it, or choose another file.")
        parent = os.path.dirname(args.out) or "."
        if not os.path.isdir(parent):
            raise ArgumentError(f"Cannot write {args.out!r}: the folder {parent!r} does not exist.")
    model = load(model_path)
    frame = read(args.data)
    if model.task == "regression":
        columns = model.design.response_columns
        names = [".pred"] if len(columns) == 1 else [f".pred_{c}" for c in columns]
    else:
        names = [".pred_class"] + [f".pred_{level}" for level in model.design.levels]
    taken = [name for name in names if name in frame.columns]
    if taken:
        raise DataError(f"The data already has the column {taken[0]!r}, where nnfit puts its predictions (is it the "
                        "output of an earlier 'nnfit predict'?); drop or rename that column first.")
    if model.task == "regression":
        predictions = model.predict(frame)
        predictions = predictions.to_frame(".pred") if predictions.ndim == 1 else predictions.add_prefix(".pred_")
    else:
        predictions = model.predict(frame, type="prob").add_prefix(".pred_")
        predictions.insert(0, ".pred_class", model.predict(frame))
    text = frame.join(predictions).to_csv(index=False)
    if args.out:
        try:
            atomic_write(args.out, text.encode())
        except OSError as error:
            raise ArgumentError(_os_error(error, args.out)) from None
    else:
        sys.stdout.write(text)
    return 0


def _evaluate(args) -> int:
    from .datasets import read
    from .loading import load

    model = load(_model_path(args.model))
    scores = model.evaluate(read(args.data))
    for name, value in scores.items():
        print(f"{name:<17} {value:.6g}")
    print(f"{'n':<17} {scores.n}")
    if scores.n_left_out:
        print(f"{'left_out':<17} {scores.n_left_out}")
    if scores.threshold is not None:
        print(f"{'threshold':<17} {scores.threshold:.6g}")
    if scores.confusion is not None:  # a classifier: the table and the per-level numbers behind the averages
        print("\nconfusion (rows: truth, columns: predicted):")
        print(scores.confusion.to_string())
        print("\nby class:")
        print(scores.by_class.to_string(float_format=lambda value: f"{value:.6g}"))
    return 0


def _report(args) -> int:
    """One HTML page about the fit in DIR; into DIR (listed in its manifest) unless --out names another folder."""
    from . import report
    from .datasets import read
    from .errors import ArgumentError
    from .loading import load

    folder = args.model
    if not os.path.isdir(folder):
        if os.path.lexists(folder):
            raise ArgumentError(f"DIR {folder!r} is not a folder; nnfit report takes the folder that "
                                "'nnfit fit DATA FORMULA --out DIR' wrote.")
        raise ArgumentError(f"No model folder at {folder!r}; 'nnfit fit DATA FORMULA --out DIR' writes one.")
    out = args.out if args.out is not None else os.path.join(folder, REPORT_FILE)
    name = os.path.basename(out)
    inside = os.path.isdir(os.path.dirname(out) or ".") and _same_file(os.path.dirname(out) or ".", folder)
    if inside and name in OUTPUTS + (MANIFEST,):
        raise ArgumentError(f"--out {out!r} is one of the files of the fit in {folder!r}; choose another name "
                            f"for the report (default: {REPORT_FILE}).")
    data_file = None if args.data is None else _data_file(args.data)
    if data_file is not None and _same_file(data_file, out):
        raise ArgumentError(f"--out {out!r} is the data file; nnfit never writes over its input: choose another file.")
    if not inside and not args.overwrite and os.path.lexists(out) and not os.path.isdir(out) \
            and not report.is_report(out):
        raise ArgumentError(f"--out {out!r} exists and nnfit did not write it; pass --overwrite to replace it, "
                            "or choose another file.")
    model = load(os.path.join(folder, MODEL_FILE))
    frame = None if args.data is None else read(args.data)
    if inside:  # DIR's manifest rules: its own files only, the manifest updated before and after
        claimed = _Folder(folder, overwrite=True, label="DIR")
        try:
            claimed.stage(name, lambda path: report.write(model, path, data=frame))
            claimed.publish(keep_previous=True)
        finally:
            claimed.close()
    else:
        try:
            report.write(model, out, data=frame, overwrite=args.overwrite)
        except OSError as error:
            raise ArgumentError(_os_error(error, out)) from None
    print(f"Report written to {out}")
    return 0


_COMMANDS = {"lab": _lab, "datasets": _datasets, "fit": _fit, "predict": _predict, "evaluate": _evaluate,
             "report": _report}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

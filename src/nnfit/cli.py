"""The ``nnfit`` command: the labs, the bundled data sets, and fit / predict / evaluate on files.

A user's mistake prints one line on stderr and exits with status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import warnings

MODEL_FILE = "model.nnfit"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnfit", description="Fit neural networks to data frames, R style.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lab = commands.add_parser("lab", help="the R course's two penguin labs end to end: metrics, plots")
    lab.add_argument("--out", default="nnfit-lab", help="folder for the plots (default: nnfit-lab)")
    lab.add_argument("--seed", type=int, default=1)
    lab.add_argument("--epochs", type=int, default=100)

    commands.add_parser("datasets", help="the bundled data sets")

    fit = commands.add_parser("fit", help="fit a network from a formula; write the model and plots to --out")
    fit.add_argument("data", metavar="DATA", help="CSV or Parquet file, or a bundled data set's name")
    fit.add_argument("formula", metavar="FORMULA", help="an R formula, e.g. 'body_mass_g ~ . - year'")
    fit.add_argument("--out", required=True, metavar="DIR")
    fit.add_argument("--hidden", default="50", help="units per hidden layer, comma-separated (e.g. 10,5)")
    fit.add_argument("--activation", default="relu")
    fit.add_argument("--dropout", default="0", help="one value, or one per layer, comma-separated")
    fit.add_argument("--epochs", type=int, default=100)
    fit.add_argument("--optimizer", default="rmsprop")
    fit.add_argument("--lr", type=float, default=None)
    fit.add_argument("--batch-size", type=int, default=32)
    fit.add_argument("--valid", type=float, default=None, help="fraction of rows held out for validation")
    fit.add_argument("--seed", type=int, default=None)
    fit.add_argument("--embed", choices=["auto"], default=None,
                     help="'auto': factors with many levels get a learned embedding instead of dummy columns")
    fit.add_argument("--unknown", choices=["error", "other"], default="error",
                     help="a new level of an embedded factor at predict time: an error, or an 'other' code")

    predict = commands.add_parser("predict", help="predictions of a fitted model for new data, as CSV")
    predict.add_argument("model", metavar="DIR", help="a folder written by 'nnfit fit' (or a model file)")
    predict.add_argument("data", metavar="DATA")
    predict.add_argument("--out", metavar="FILE", default=None, help="CSV file (default: standard output)")

    evaluate = commands.add_parser("evaluate", help="metrics of a fitted model on data with the response")
    evaluate.add_argument("model", metavar="DIR")
    evaluate.add_argument("data", metavar="DATA")
    return parser


def main(argv=None) -> int:
    """Entry point of the ``nnfit`` command; returns the exit status."""
    from .errors import NnfitError

    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _COMMANDS[args.command](args)
    except NnfitError as error:
        print(f"nnfit: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnfit: interrupted", file=sys.stderr)
        return 130


def _lab(args) -> int:
    from . import lab

    lab.run(out=args.out, seed=args.seed, epochs=args.epochs)
    return 0


def _datasets(args) -> int:
    from . import datasets

    for name, description in datasets.describe().items():
        print(f"{name:<12} {description}")
    return 0


def _numbers(text: str, kind, name: str):
    from .errors import ArgumentError

    try:
        values = [kind(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise ArgumentError(f"--{name} takes comma-separated numbers, not {text!r}.") from None
    return values


def _fit(args) -> int:
    from . import plot
    from .datasets import read
    from .files import atomic_write
    from .mlpfit import mlp

    frame = read(args.data)
    hidden = _numbers(args.hidden, int, "hidden")
    dropout = _numbers(args.dropout, float, "dropout")
    fitted = mlp(
        args.formula, frame, hidden=hidden, activation=args.activation,
        dropout=dropout[0] if len(dropout) == 1 else dropout, optimizer=args.optimizer, lr=args.lr,
        epochs=args.epochs, batch_size=args.batch_size, valid=args.valid, seed=args.seed, verbose=False,
        embed=args.embed, unknown=args.unknown,
    )
    out = os.path.abspath(args.out)
    parent = os.path.dirname(out)
    if os.path.exists(out) and not os.path.isdir(out):
        from .errors import ArgumentError

        raise ArgumentError(f"--out {args.out!r} exists and is not a folder.")
    # Write into a temporary folder and move it into place, so a failure leaves nothing behind.
    staging = tempfile.mkdtemp(prefix=".nnfit-", dir=parent if os.path.isdir(parent) else None)
    try:
        fitted.save(os.path.join(staging, MODEL_FILE))
        atomic_write(os.path.join(staging, "metrics.csv"), fitted.metrics.to_csv(index=False).encode())
        plot.save(fitted.plot(), os.path.join(staging, "learning_curves.png"))
        if fitted.task == "regression" and len(fitted.design.response_columns) == 1:
            truth = fitted.design.unscale_response(fitted.design.transform(frame).y)[:, 0]
            predicted = fitted.predict(frame).dropna().to_numpy()
            plot.save(plot.truth_vs_predicted(truth, predicted), os.path.join(staging, "truth_vs_predicted.png"))
        os.makedirs(out, exist_ok=True)
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(fitted)
    print(f"Model and plots written to {args.out}/")
    return 0


def _load(path):
    from .files import load

    return load(os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path)


def _predict(args) -> int:
    from .datasets import read
    from .files import atomic_write

    model = _load(args.model)
    frame = read(args.data)
    if model.task == "regression":
        predictions = model.predict(frame)
        predictions = predictions.to_frame(".pred") if predictions.ndim == 1 else predictions.add_prefix(".pred_")
    else:
        predictions = model.predict(frame, type="prob").add_prefix(".pred_")
        predictions.insert(0, ".pred_class", model.predict(frame))
    text = frame.join(predictions).to_csv(index=False)
    if args.out:
        atomic_write(args.out, text.encode())
    else:
        sys.stdout.write(text)
    return 0


def _evaluate(args) -> int:
    from .datasets import read

    model = _load(args.model)
    scores = model.evaluate(read(args.data))
    for name, value in scores.items():
        print(f"{name:<10} {value:.6g}")
    print(f"{'n':<10} {scores.n}")
    if scores.n_left_out:
        print(f"{'left_out':<10} {scores.n_left_out}")
    return 0


_COMMANDS = {"lab": _lab, "datasets": _datasets, "fit": _fit, "predict": _predict, "evaluate": _evaluate}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

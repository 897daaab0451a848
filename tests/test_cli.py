import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import nnfit as nf
from nnfit import cli


def run(*args, cwd=None):
    """The installed command, in a separate process, as a user runs it."""
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "nnfit.cli", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_datasets_command(capsys):
    assert cli.main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    penguins = [line for line in lines if line.startswith("penguins ")]
    assert len(penguins) == 1 and "344 rows" in penguins[0]


def test_fit_predict_evaluate_round_trip(tmp_path, capsys):
    out = tmp_path / "mass"
    assert cli.main(["fit", "penguins", "body_mass_g ~ . - year", "--out", str(out), "--hidden", "20",
                     "--dropout", "0.1", "--epochs", "20", "--seed", "1"]) == 0
    assert sorted(os.listdir(out)) == [".nnfit-manifest.json", "learning_curves.png", "metrics.csv", "model.nnfit",
                                       "truth_vs_predicted.png"]
    assert capsys.readouterr().out.splitlines()[0] == "nnfit MLP (regression): body_mass_g ~ . - year"
    history = pd.read_csv(out / "metrics.csv")
    assert list(history.columns) == ["set", "metric", "epoch", "value"] and history["epoch"].max() == 20

    predictions = tmp_path / "pred.csv"
    assert cli.main(["predict", str(out), "penguins", "--out", str(predictions)]) == 0
    frame = pd.read_csv(predictions)
    model = nf.load(out / "model.nnfit")
    expected = model.predict(nf.datasets.load("penguins"))
    assert list(frame.columns)[-1] == ".pred" and len(frame) == 344
    pd.testing.assert_series_equal(frame[".pred"], expected.reset_index(drop=True), check_names=False)

    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "penguins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    scores = model.evaluate(nf.datasets.load("penguins"))
    assert lines[0] == f"{'mae':<17} {scores['mae']:.6g}"  # as wide as 'balanced_accuracy'
    assert lines[-2:] == [f"{'n':<17} 333", f"{'left_out':<17} 11"]


def test_classifier_predictions_have_class_and_probabilities(tmp_path):
    out = tmp_path / "species"
    data = tmp_path / "penguins.csv"
    nf.datasets.load("penguins").to_csv(data, index=False)
    assert cli.main(["fit", str(data), "species ~ . - year", "--out", str(out), "--hidden", "10,5",
                     "--dropout", "0.4,0.3", "--epochs", "5", "--seed", "1"]) == 0
    result = run("predict", str(out), str(data))
    assert result.returncode == 0
    header = result.stdout.splitlines()[0]
    assert header.endswith(",.pred_class,.pred_Adelie,.pred_Chinstrap,.pred_Gentoo")


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "missing.csv", "y ~ x"], "nnfit: error: No data file 'missing.csv', and no bundled data set of that name "
                                          f"({', '.join(nf.datasets.names())}).\n"),
        (["fit", "penguins", "mass ~ ."], "nnfit: error: The response 'mass' is not a column of the data (did you mean 'body_mass_g'?).\n"),
        (["fit", "penguins", "body_mass_g ~ .", "--dropout", "2"], "nnfit: error: dropout must lie in [0, 1), not 2.0.\n"),
        (["fit", "penguins", "body_mass_g ~ .", "--hidden", "ten"], "nnfit: error: --hidden takes comma-separated numbers, not 'ten'.\n"),
    ],
)
def test_user_mistakes_print_one_line_and_leave_no_folder(tmp_path, args, message):
    result = run(*args, "--out", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == message
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []


def test_unreadable_data_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    result = run("fit", str(bad), "y ~ x", "--out", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"nnfit: error: Cannot read {str(bad)!r} as Parquet")
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["bad.parquet"]


def test_predict_with_missing_model(tmp_path):
    result = run("predict", str(tmp_path / "nothing"), "penguins")
    assert result.returncode == 1
    assert result.stderr == f"nnfit: error: No model file at {str(tmp_path / 'nothing')!r}.\n"


# ---------------------------------------------------------------------- what `nnfit fit` writes, and rewrites
def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fit(out, formula="body_mass_g ~ . - year", *extra):
    return cli.main(["fit", "penguins", formula, "--out", str(out), "--hidden", "2", "--epochs", "1", "--seed", "1",
                     *extra])


def test_fit_writes_a_manifest_of_its_files_with_their_hashes(tmp_path, capsys):
    import json

    out = tmp_path / "m"
    assert _fit(out) == 0
    manifest = json.loads((out / ".nnfit-manifest.json").read_text())
    assert manifest["format"] == "nnfit-manifest" and manifest["version"] == 1
    assert manifest["files"] == {name: [_sha256(out / name)] for name in
                                 ["learning_curves.png", "metrics.csv", "model.nnfit", "truth_vs_predicted.png"]}
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no staging folder left beside it


def test_overwrite_replaces_an_earlier_fit_and_removes_its_stale_plots(tmp_path, capsys):
    import json

    out = tmp_path / "m"
    assert _fit(out) == 0  # a regression: it has a truth-vs-predicted plot
    first_model = (out / "model.nnfit").read_bytes()
    assert _fit(out, "species ~ . - year") == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert _fit(out, "species ~ . - year", "--overwrite") == 0
    assert sorted(os.listdir(out)) == [".nnfit-manifest.json", "learning_curves.png", "metrics.csv", "model.nnfit"]
    assert (out / "model.nnfit").read_bytes() != first_model
    assert nf.load(out / "model.nnfit").task == "multiclass"
    listed = json.loads((out / ".nnfit-manifest.json").read_text())["files"]
    assert sorted(listed) == ["learning_curves.png", "metrics.csv", "model.nnfit"]


def test_fit_files_get_the_users_umask_and_nested_folders_are_made(tmp_path, capsys):
    previous = os.umask(0o022)
    try:
        out = tmp_path / "runs" / "2026" / "m"
        assert _fit(out) == 0
    finally:
        os.umask(previous)
    assert {name: os.stat(out / name).st_mode & 0o777 for name in os.listdir(out)} == {
        name: 0o644 for name in [".nnfit-manifest.json", "learning_curves.png", "metrics.csv", "model.nnfit",
                                 "truth_vs_predicted.png"]}
    assert os.stat(out).st_mode & 0o777 == 0o755
    assert sorted(os.listdir(tmp_path / "runs" / "2026")) == ["m"]


def test_predict_overwrite_replaces_a_file_and_keeps_its_mode(tmp_path, capsys):
    out = tmp_path / "m"
    assert _fit(out) == 0
    predictions = tmp_path / "pred.csv"
    predictions.write_text("old\n")
    os.chmod(predictions, 0o640)
    assert cli.main(["predict", str(out), "penguins", "--out", str(predictions), "--overwrite"]) == 0
    assert pd.read_csv(predictions).columns[-1] == ".pred" and os.stat(predictions).st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------- nnfit lab
@pytest.fixture()
def fake_labs(monkeypatch):
    """A stand-in for nnfit.labs, so these tests pin the command line alone: its run writes one
    plot per lab into ``out`` and says so, as the labs do."""
    import types

    import nnfit

    labs = types.ModuleType("nnfit.labs")
    labs.LABS = {"penguins": "the R course's two penguin labs", "hitters": "ISLR Table 10.2: network vs lasso"}
    labs.calls = []

    def run(name, out, seed, epochs, stream):
        labs.calls.append({"name": name, "seed": seed, "epochs": epochs})
        (Path(out) / f"{name}.png").write_bytes(f"{name} {seed} {epochs}".encode())
        print(f"Plots written to {out}/: {name}.png", file=stream)

    labs.run = run
    # the attribute first: reading it imports the real labs (nnfit's lazy names), which undo restores
    monkeypatch.setattr(nnfit, "labs", labs, raising=False)
    monkeypatch.setitem(sys.modules, "nnfit.labs", labs)
    return labs


def test_lab_without_a_name_runs_the_penguins(fake_labs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["lab"]) == 0
    assert fake_labs.calls == [{"name": "penguins", "seed": 1, "epochs": None}]
    assert capsys.readouterr().out == "Plots written to nnfit-lab/: penguins.png\n"
    assert sorted(os.listdir(tmp_path / "nnfit-lab")) == [".nnfit-manifest.json", "penguins.png"]
    assert os.listdir(tmp_path) == ["nnfit-lab"]


def test_lab_passes_its_options_and_keeps_the_other_labs_plots(fake_labs, tmp_path, capsys):
    out = tmp_path / "labs"
    assert cli.main(["lab", "penguins", "--out", str(out)]) == 0
    assert cli.main(["lab", "hitters", "--out", str(out), "--seed", "7", "--epochs", "3"]) == 0
    assert cli.main(["lab", "hitters", "--out", str(out), "--seed", "8"]) == 0  # a rerun replaces its own plot
    assert fake_labs.calls[1:] == [{"name": "hitters", "seed": 7, "epochs": 3}, {"name": "hitters", "seed": 8, "epochs": None}]
    assert sorted(os.listdir(out)) == [".nnfit-manifest.json", "hitters.png", "penguins.png"]
    assert (out / "hitters.png").read_bytes() == b"hitters 8 None"


def test_lab_refuses_a_folder_with_a_users_file(fake_labs, tmp_path, capsys):
    (tmp_path / "labs").mkdir()
    (tmp_path / "labs" / "penguins.png").write_bytes(b"my own drawing")
    assert cli.main(["lab", "--out", str(tmp_path / "labs")]) == 1
    assert capsys.readouterr().err == (f"nnfit: error: --out {str(tmp_path / 'labs')!r} holds files nnfit did not write "
                                       "(penguins.png); nnfit never replaces them: choose another folder, or move them away.\n")
    assert fake_labs.calls == [] and (tmp_path / "labs" / "penguins.png").read_bytes() == b"my own drawing"


def test_lab_list_prints_names_and_descriptions_in_order(fake_labs, capsys):
    assert cli.main(["lab", "--list"]) == 0
    assert capsys.readouterr().out == ("penguins     the R course's two penguin labs\n"
                                       "hitters      ISLR Table 10.2: network vs lasso\n")
    assert fake_labs.calls == []


def test_a_fit_killed_with_sigkill_leaves_a_staging_folder_the_next_fit_removes(tmp_path, capsys):
    import signal
    import time

    child = subprocess.Popen([sys.executable, "-m", "nnfit.cli", "fit", "penguins", "body_mass_g ~ . - year", "--out", "m",
                              "--hidden", "2", "--epochs", "100000"], cwd=tmp_path, env=dict(os.environ, MPLBACKEND="Agg"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(name.startswith(".nnfit-") for name in os.listdir(tmp_path)):
            assert child.poll() is None and time.monotonic() < deadline, "the fit never started"
            time.sleep(0.05)
        time.sleep(0.5)  # training
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    leftovers = os.listdir(tmp_path)
    assert len(leftovers) == 1 and leftovers[0] == f".nnfit-{child.pid}-{leftovers[0].rsplit('-', 1)[1]}"
    assert _fit(tmp_path / "m") == 0
    assert sorted(os.listdir(tmp_path)) == ["m"]


# ---------------------------------------------------------------------- evaluate of a classifier, nnfit report
def test_evaluate_prints_a_classifiers_confusion_table_and_per_class_numbers(tmp_path, capsys):
    out = tmp_path / "species"
    assert _fit(out, "species ~ bill_length_mm + island") == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "penguins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    with pytest.warns(nf.errors.MissingValuesWarning):
        scores = nf.load(out / "model.nnfit").evaluate(nf.datasets.load("penguins"))
    start = lines.index("confusion (rows: truth, columns: predicted):")
    assert lines[start - 3:start] == [f"{'n':<17} {scores.n}", f"{'left_out':<17} {scores.n_left_out}", ""]
    assert lines[start + 1].split() == ["predicted", "Adelie", "Chinstrap", "Gentoo"]
    assert lines[start + 2].split() == ["truth"]
    table = [line.split() for line in lines[start + 3:start + 6]]
    assert [row[0] for row in table] == list(scores.confusion.index)
    assert [[int(v) for v in row[1:]] for row in table] == scores.confusion.to_numpy().tolist()
    start = lines.index("by class:")
    assert lines[start + 1].split() == ["sensitivity", "specificity", "precision", "recall", "f1", "support"]
    rows = [line.split() for line in lines[start + 3:start + 6]]
    assert [row[0] for row in rows] == list(scores.by_class.index) and len(lines) == start + 6
    printed = pd.DataFrame([[float(v) for v in row[1:]] for row in rows], index=scores.by_class.index,
                           columns=scores.by_class.columns)
    pd.testing.assert_frame_equal(printed, scores.by_class.astype(float), rtol=1e-5)


def test_report_writes_into_the_folder_and_lists_the_page_in_its_manifest(tmp_path, capsys):
    import json

    out = tmp_path / "m"
    assert _fit(out) == 0
    before = json.loads((out / ".nnfit-manifest.json").read_text())["files"]
    capsys.readouterr()
    assert cli.main(["report", str(out), "--data", "penguins"]) == 0
    assert capsys.readouterr().out == f"Report written to {out / 'report.html'}\n"
    page = (out / "report.html").read_text()
    assert "<h2>Permutation importance</h2>" in page
    assert "Rows: none held by this fit (loaded from a file, or an ensemble)" in page  # a loaded fit
    assert json.loads((out / ".nnfit-manifest.json").read_text())["files"] == {
        **before, "report.html": [_sha256(out / "report.html")]}
    assert cli.main(["report", str(out)]) == 0  # its own earlier page is replaced
    assert "<h2>Permutation importance</h2>" not in (out / "report.html").read_text()
    assert json.loads((out / ".nnfit-manifest.json").read_text())["files"]["report.html"] == [
        _sha256(out / "report.html")]
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no staging folder left
    assert _fit(out, "body_mass_g ~ . - year", "--overwrite") == 0  # a new fit drops the stale page
    assert "report.html" not in os.listdir(out)


def test_report_refuses_a_page_nnfit_did_not_write_and_the_fits_own_files(tmp_path, capsys):
    out = tmp_path / "m"
    assert _fit(out) == 0
    (out / "report.html").write_text("mine")
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 1
    assert capsys.readouterr().err == (f"nnfit: error: DIR {str(out)!r} holds files nnfit did not write (report.html); "
                                       "nnfit never replaces them: choose another folder, or move them away.\n")
    assert (out / "report.html").read_text() == "mine"
    assert cli.main(["report", str(out), "--out", str(out / "model.nnfit")]) == 1
    assert capsys.readouterr().err == (f"nnfit: error: --out {str(out / 'model.nnfit')!r} is one of the files of the "
                                       f"fit in {str(out)!r}; choose another name for the report (default: "
                                       "report.html).\n")


def test_report_out_elsewhere_follows_the_reports_own_rules(tmp_path, capsys):
    from nnfit.report import is_report

    out, page = tmp_path / "m", tmp_path / "page.html"
    assert _fit(out) == 0
    page.write_text("mine")
    capsys.readouterr()
    assert cli.main(["report", str(out), "--out", str(page)]) == 1
    assert capsys.readouterr().err == (f"nnfit: error: --out {str(page)!r} exists and nnfit did not write it; pass "
                                       "--overwrite to replace it, or choose another file.\n")
    assert page.read_text() == "mine"
    assert cli.main(["report", str(out), "--out", str(page), "--overwrite"]) == 0
    assert cli.main(["report", str(out), "--out", str(page)]) == 0  # now nnfit's page: replaced
    assert is_report(page) and "report.html" not in os.listdir(out)


def test_report_of_a_missing_folder_prints_one_line(tmp_path):
    result = run("report", "nothing", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "nnfit: error: No model folder at 'nothing'; 'nnfit fit DATA FORMULA --out DIR' writes one.\n"
    assert os.listdir(tmp_path) == []
    (tmp_path / "file").write_text("x")
    assert cli.main(["report", str(tmp_path / "file")]) == 1


# ---------------------------------------------------------------------- fit --nproc (docs/distributed.md)
PENGUIN_FIT = ["fit", "penguins", "species ~ bill_length_mm + flipper_length_mm + sex", "--hidden", "8",
               "--epochs", "3", "--seed", "1"]


def test_fit_in_two_processes_writes_the_model_one_process_writes(tmp_path, capfd):
    assert cli.main([*PENGUIN_FIT, "--out", str(tmp_path / "two"), "--nproc", "2"]) == 0
    shown = capfd.readouterr().out.splitlines()
    assert shown[0] == "nnfit MLP (classification): species ~ bill_length_mm + flipper_length_mm + sex"
    assert shown[-1] == f"Model and plots written to {tmp_path / 'two'}/"  # printed once, by rank 0
    assert cli.main([*PENGUIN_FIT, "--out", str(tmp_path / "one")]) == 0
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one")) == [
        ".nnfit-manifest.json", "learning_curves.png", "metrics.csv", "model.nnfit"]
    penguins = nf.datasets.load("penguins").dropna()
    two = nf.load(tmp_path / "two" / "model.nnfit").predict(penguins, type="prob")
    one = nf.load(tmp_path / "one" / "model.nnfit").predict(penguins, type="prob")
    assert list(two.columns) == ["Adelie", "Chinstrap", "Gentoo"]
    assert (two - one).abs().to_numpy().max() < 1e-4
    history_two, history_one = (pd.read_csv(tmp_path / name / "metrics.csv") for name in ("two", "one"))
    assert history_two[["set", "metric", "epoch"]].equals(history_one[["set", "metric", "epoch"]])
    assert (history_two["value"] - history_one["value"]).abs().max() < 1e-4


def test_fit_nproc_lets_torchrun_pick_its_port(tmp_path, monkeypatch):
    import subprocess

    started = []
    monkeypatch.setattr(subprocess, "run", lambda command, **options: started.append(command) or
                        subprocess.CompletedProcess(command, 0, stderr=""))
    assert cli.main([*PENGUIN_FIT, "--out", str(tmp_path / "two"), "--nproc", "2"]) == 0
    (command,) = started
    # the standalone rendezvous listens on a port the system gives it: none is picked here and
    # freed for another program to take before torchrun binds it
    assert command[1:7] == ["-m", "torch.distributed.run", "--standalone", "--local-addr=127.0.0.1",
                            "--nproc_per_node=2", "-m"]
    assert not any(part.startswith(("--master_port", "--master_addr")) for part in command)


@pytest.mark.parametrize("given", ["0", "two", "1.5", "-2"])
def test_fit_nproc_must_be_a_positive_whole_number(tmp_path, capsys, given):
    assert cli.main([*PENGUIN_FIT, "--out", str(tmp_path / "out"), "--nproc", given]) == 1
    assert capsys.readouterr().err == (
        f"nnfit: error: --nproc must be a positive whole number of processes (1: train in this process), not {given!r}.\n")
    assert not (tmp_path / "out").exists()


def test_fit_in_two_processes_says_the_processes_error_once(tmp_path, capfd):
    assert cli.main(["fit", "penguins", "body_mass_g ~ nothere", "--out", str(tmp_path / "out"), "--epochs", "1",
                     "--nproc", "2"]) == 1
    assert capfd.readouterr().err == (
        "nnfit: error: The formula 'body_mass_g ~ nothere' uses 'nothere', which is not a column of the data.\n")
    assert not (tmp_path / "out").exists()


def test_nproc_refuses_more_processes_than_the_machine_has(tmp_path, capsys):
    import os

    most = os.cpu_count() or 1
    assert cli.main(["fit", "penguins", "body_mass_g ~ flipper_length_mm", "--out", str(tmp_path / "m"),
                     "--nproc", str(most + 1)]) == 1
    assert capsys.readouterr().err == (f"nnfit: error: --nproc {most + 1} is more processes than this machine has "
                                       f"cores or GPUs ({most}); give at most that, or use torchrun --nnodes for "
                                       "several machines.\n")
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------- fit on Parquet that streams (docs/distributed.md)
STREAM_FORMULA = "body_mass_g ~ flipper_length_mm + sex"
STREAM_OPTIONS = ["--hidden", "4", "--epochs", "3", "--seed", "1"]
STREAMED_OUTPUTS = [".nnfit-manifest.json", "learning_curves.png", "metrics.csv", "model.nnfit"]


@pytest.fixture
def parquet_folder(tmp_path):
    from nnfit.streaming import write_parts

    return write_parts(nf.datasets.load("penguins"), tmp_path / "parts", n_files=3)


def assert_same_recipe(two, alone, truth):
    """Streamed over two processes, each reads its own row groups, so the fit is another draw of
    the one-process fit's recipe, not the same numbers (tests/test_distributed.py checks the
    step itself against one process): it must fit as well, within a quarter of its error."""
    errors = [float((predicted - truth).abs().mean()) for predicted in (two, alone)]
    assert two.notna().all() and 0.75 < errors[0] / errors[1] < 1.25, errors


def _streamed_alone(folder):
    """The fit that `nnfit fit FOLDER` must make: nf.mlp on the folder's path, which streams it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nf.mlp(STREAM_FORMULA, data=folder, hidden=4, epochs=3, seed=1, verbose=False)


def test_fit_streams_a_parquet_folder_and_writes_the_model_metrics_and_curves(tmp_path, parquet_folder, capsys):
    out = tmp_path / "m"
    assert cli.main(["fit", parquet_folder, STREAM_FORMULA, "--out", str(out), *STREAM_OPTIONS]) == 0
    assert sorted(os.listdir(out)) == STREAMED_OUTPUTS  # no truth-vs-predicted plot: it needs the rows in memory
    shown = capsys.readouterr().out.splitlines()
    assert shown[-1] == (f"Model and learning curves written to {out}/ (streamed data: no truth_vs_predicted.png, "
                         "which needs the rows in memory)")
    alone = _streamed_alone(parquet_folder)
    penguins = nf.datasets.load("penguins").dropna()
    pd.testing.assert_series_equal(nf.load(out / "model.nnfit").predict(penguins), alone.predict(penguins))
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"), alone.metrics.reset_index(drop=True),
                                  check_dtype=False)


def test_fit_in_two_processes_streams_a_parquet_folder_as_one_process_does(tmp_path, parquet_folder, capfd):
    out = tmp_path / "two"
    assert cli.main(["fit", parquet_folder, STREAM_FORMULA, "--out", str(out), *STREAM_OPTIONS, "--nproc", "2"]) == 0
    assert capfd.readouterr().out.count("Model and learning curves written to") == 1  # by rank 0
    assert sorted(os.listdir(out)) == STREAMED_OUTPUTS
    penguins = nf.datasets.load("penguins").dropna()
    two = nf.load(out / "model.nnfit").predict(penguins)
    assert_same_recipe(two, _streamed_alone(parquet_folder).predict(penguins), penguins["body_mass_g"])


def test_the_slurm_script_runs_nnfit_fit_under_torchrun_with_a_c10d_rendezvous(tmp_path, parquet_folder):
    # examples/slurm/train.sbatch as SLURM would run it on one node: srun and scontrol are stand-ins
    import socket
    import stat

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "srun").write_text('#!/bin/sh\n[ "$1" = --kill-on-bad-exit=1 ] && shift\nexec "$@"\n')
    (bin_ / "scontrol").write_text('#!/bin/sh\n[ "$*" = "show hostnames node[1]" ] && echo 127.0.0.1\n')
    for tool in ("srun", "scontrol"):
        (bin_ / tool).chmod(stat.S_IRWXU)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "slurm"
    env = dict(os.environ, PATH=f"{bin_}:{Path(sys.executable).parent}:{os.environ['PATH']}", MPLBACKEND="Agg",
               SLURM_NNODES="1", SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="node[1]", SLURM_CPUS_PER_TASK="2",
               NPROC_PER_NODE="2", PORT=str(port), DATA=parquet_folder, FORMULA=STREAM_FORMULA, OUT=str(out))
    script = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "train.sbatch"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("Model and learning curves written to") == 1  # by rank 0
    assert sorted(os.listdir(out)) == STREAMED_OUTPUTS
    penguins = nf.datasets.load("penguins").dropna()
    two = nf.load(out / "model.nnfit").predict(penguins)
    import warnings

    with warnings.catch_warnings():  # the script's nnfit fit options, in one process
        warnings.simplefilter("ignore")
        alone = nf.mlp(STREAM_FORMULA, data=parquet_folder, hidden=[256, 256], optimizer="adam", lr=0.001,
                       batch_size=1024, epochs=10, seed=1, verbose=False)
    assert_same_recipe(two, alone.predict(penguins), penguins["body_mass_g"])


def test_fit_streams_a_parquet_file_with_stream_and_reads_it_into_memory_without(tmp_path, parquet_folder, capsys):
    import shutil

    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(os.path.join(parquet_folder, "part-0.parquet"), one / "rows.parquet")
    path = str(one / "rows.parquet")
    assert cli.main(["fit", path, STREAM_FORMULA, "--out", str(tmp_path / "in memory"), *STREAM_OPTIONS]) == 0
    assert sorted(os.listdir(tmp_path / "in memory")) == sorted(STREAMED_OUTPUTS + ["truth_vs_predicted.png"])
    assert cli.main(["fit", path, STREAM_FORMULA, "--out", str(tmp_path / "m"), *STREAM_OPTIONS, "--stream"]) == 0
    assert sorted(os.listdir(tmp_path / "m")) == STREAMED_OUTPUTS
    penguins = nf.datasets.load("penguins").dropna()
    alone = _streamed_alone(str(one))  # the file streamed as a folder of one file streams
    pd.testing.assert_series_equal(nf.load(tmp_path / "m" / "model.nnfit").predict(penguins), alone.predict(penguins))


def test_stream_passes_through_to_the_processes_of_nproc():
    args = cli._parser().parse_args(["fit", "rows.parquet", "y ~ x", "--out", "m", "--stream", "--nproc", "2"])
    assert cli._fit_argv(args, seed=7)[-6:] == ["--unknown", "error", "--stream", "--", "rows.parquet", "y ~ x"]
    assert "--stream" not in cli._fit_argv(cli._parser().parse_args(["fit", "d", "y ~ x", "--out", "m"]), seed=7)


@pytest.mark.parametrize("data, extra, message", [
    ("parts", ["--valid", "0.2"], "--valid holds out a fraction of the rows, which needs them in memory, and 'parts' "
                                  "is streamed (a folder of Parquet files); leave --valid out."),
    ("parts/part-0.parquet", ["--stream", "--valid", "0.2"],
     "--valid holds out a fraction of the rows, which needs them in memory, and 'parts/part-0.parquet' is streamed "
     "(--stream); leave --valid out, or leave --stream out to read the file into memory."),
    ("penguins", ["--stream"], "--stream reads a Parquet file in chunks, and 'penguins' is a bundled data set, read "
                               "into memory; leave --stream out."),
    ("rows.csv", ["--stream"], "--stream reads a Parquet file in chunks, and 'rows.csv' is not a .parquet file; leave "
                               "--stream out to read it into memory, or convert it to Parquet."),
    ("parts", ["--out", "parts"], "--out 'parts' is the data folder; choose another folder for the model and plots."),
])
def test_a_streamed_fit_refuses_what_needs_the_rows_in_memory_in_one_line(tmp_path, parquet_folder, data, extra,
                                                                          message, monkeypatch, capsys):
    nf.datasets.load("penguins").head(20).to_csv(tmp_path / "rows.csv", index=False)
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    out = [] if "--out" in extra else ["--out", "m"]
    assert cli.main(["fit", data, STREAM_FORMULA, *out, *extra]) == 1
    assert capsys.readouterr().err == f"nnfit: error: {message}\n"
    assert sorted(os.listdir(tmp_path)) == before

import os
import subprocess
import sys

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
    assert capsys.readouterr().out.startswith("penguins     Palmer Archipelago penguins (palmerpenguins, CC0): 344 rows")


def test_fit_predict_evaluate_round_trip(tmp_path, capsys):
    out = tmp_path / "mass"
    assert cli.main(["fit", "penguins", "body_mass_g ~ . - year", "--out", str(out), "--hidden", "20",
                     "--dropout", "0.1", "--epochs", "20", "--seed", "1"]) == 0
    assert sorted(os.listdir(out)) == ["learning_curves.png", "metrics.csv", "model.nnfit", "truth_vs_predicted.png"]
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
    assert lines[0] == f"mae        {scores['mae']:.6g}"
    assert lines[-2:] == ["n          333", "left_out   11"]


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
        (["fit", "missing.csv", "y ~ x"], "nnfit: error: No data file 'missing.csv', and no bundled data set of that name (penguins).\n"),
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

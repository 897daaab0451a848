import io
import os

import pytest

from nnfit import lab


def test_lab_prints_both_labs_and_writes_plots(tmp_path):
    stream = io.StringIO()
    figures = lab.run(out=tmp_path / "lab", seed=1, stream=stream)
    text = stream.getvalue()
    assert "test MAE (g)" in text and "R lab   423.0" in text and "OLS" in text
    assert "test accuracy" in text and "multinomial logistic" in text
    assert figures["mass_mae"] < 320 and figures["species_accuracy"] >= 0.97
    assert figures["species_logistic_accuracy"] >= 0.97
    assert sorted(os.listdir(tmp_path / "lab")) == [
        "mass_learning_curves.png", "mass_truth_vs_predicted.png", "species_confusion_matrix.png",
        "species_learning_curves.png",
    ]
    for name in os.listdir(tmp_path / "lab"):
        assert (tmp_path / "lab" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ols_baseline_matches_numpy_closed_form():
    import numpy as np

    training, testing = lab.data(seed=1)
    # The normal equations, solved independently of lstsq.
    def matrix(frame):
        return np.column_stack([
            np.ones(len(frame)), frame["species"] == "Chinstrap", frame["species"] == "Gentoo",
            frame["island"] == "Dream", frame["island"] == "Torgersen", frame["bill_length_mm"],
            frame["bill_depth_mm"], frame["flipper_length_mm"], frame["sex"] == "male",
        ]).astype(float)
    X = matrix(training)
    beta = np.linalg.solve(X.T @ X, X.T @ training["body_mass_g"].to_numpy())
    expected = np.abs(matrix(testing) @ beta - testing["body_mass_g"].to_numpy()).mean()
    assert lab.ols_mae(training, testing) == pytest.approx(expected, rel=1e-8)

import os

import matplotlib
import numpy as np
import pandas as pd

import nnfit as nf


def test_truth_vs_predicted_draws_points_and_identity_line():
    figure = nf.plot.truth_vs_predicted([1.0, 2.0, 3.0, np.nan], [1.5, 2.5, 2.0, 4.0])
    axis = figure.axes[0]
    points = axis.collections[0].get_offsets()
    np.testing.assert_array_equal(np.asarray(points), [[1.0, 1.5], [2.0, 2.5], [3.0, 2.0]])
    line = axis.lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [1.0, 3.0])
    np.testing.assert_array_equal(line.get_ydata(), [1.0, 3.0])
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("Truth", "Predicted")


def test_learning_curves_one_panel_per_metric():
    history = pd.DataFrame(
        [("train", "loss", 1, 2.0), ("train", "loss", 2, 1.0), ("valid", "loss", 1, 2.5), ("valid", "loss", 2, 1.5),
         ("train", "mae", 1, 0.9), ("train", "mae", 2, 0.7)],
        columns=["set", "metric", "epoch", "value"],
    )
    figure = nf.plot.learning_curves(history)
    assert [a.get_title() for a in figure.axes] == ["loss", "mae"]
    assert [line.get_label() for line in figure.axes[0].lines] == ["train", "valid"]
    np.testing.assert_array_equal(figure.axes[0].lines[1].get_ydata(), [2.5, 1.5])


def test_confusion_matrix_counts():
    truth = ["a", "a", "b", "c", "c", "c"]
    predicted = ["a", "b", "b", "c", "c", "a"]
    figure = nf.plot.confusion_matrix(truth, predicted)
    image = figure.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(image), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_save_writes_png(tmp_path):
    nf.plot.save(nf.plot.truth_vs_predicted([1, 2], [1, 2]), tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


# ---------------------------------------------------------------------- report-ready plots
import warnings

import pytest
from matplotlib.colors import to_rgb

from nnfit import cli
from nnfit.errors import ArgumentError


def relative_luminance(rgb):
    """WCAG 2 relative luminance, written out here as the independent computation."""
    def linear(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one, other):
    high, low = sorted([relative_luminance(one), relative_luminance(other)], reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(scope="module")
def penguins():
    raw = nf.datasets.load("penguins")
    return nf.split(raw, prop=0.8, seed=1)


@pytest.fixture(scope="module")
def mass(penguins):
    training, _ = penguins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nf.mlp("body_mass_g ~ . - year", data=training, hidden=10, dropout=0.4, epochs=4, valid=0.2, seed=1,
                      verbose=False)


@pytest.fixture(scope="module")
def species(penguins):
    training, _ = penguins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nf.mlp("species ~ bill_length_mm + flipper_length_mm", data=training, hidden=10, epochs=4, seed=1,
                      verbose=False)


def test_learning_curves_of_a_history_name_every_axis():
    history = pd.DataFrame([("train", "loss", 1, 2.0), ("train", "mae", 1, 0.9)], columns=["set", "metric", "epoch", "value"])
    figure = nf.plot.learning_curves(history)
    assert [(a.get_title(), a.get_xlabel(), a.get_ylabel()) for a in figure.axes] == [
        ("loss", "epoch", "loss"), ("mae", "epoch", "mae")]


def test_learning_curves_of_a_regression_are_on_the_response_scale(mass):
    figure = nf.plot.learning_curves(mass, unit="g")
    assert figure.get_suptitle() == "body_mass_g ~ . - year"
    assert [(a.get_title(), a.get_xlabel(), a.get_ylabel()) for a in figure.axes] == [
        ("rmse (from the loss)", "epoch", "RMSE (g)"), ("mae", "epoch", "MAE (g)")]
    assert [line.get_label() for line in figure.axes[0].lines] == [
        "train (dropout on, during the epoch)", "validation (eval mode)"]
    history = mass.metrics
    for line, split in zip(figure.axes[0].lines, ["train", "valid"]):
        loss = history[(history["set"] == split) & (history["metric"] == "loss")]["value"].to_numpy()
        np.testing.assert_allclose(line.get_ydata(), np.sqrt(loss) * mass.design.response_scale_[0])
    # the validation loss, converted, is the RMSE in grams that the validation MAE sits beside
    last_valid = history[(history["set"] == "valid") & (history["epoch"] == history["epoch"].max())]
    rmse = float(figure.axes[0].lines[1].get_ydata()[-1])
    assert float(last_valid[last_valid["metric"] == "mae"]["value"].iloc[0]) <= rmse
    notes = [text.get_text() for text in figure.texts if text.get_text() != figure.get_suptitle()]
    assert notes == ["Training values: the mean over each epoch's batches, with dropout on, while the weights move; "
                     "validation values: eval mode after the epoch."]
    default = nf.plot.learning_curves(mass)   # no unit given: the response's name
    assert [a.get_ylabel() for a in default.axes] == ["RMSE (body_mass_g units)", "MAE (body_mass_g units)"]


def test_learning_curves_of_a_classifier(species):
    figure = nf.plot.learning_curves(species)
    assert [(a.get_title(), a.get_ylabel()) for a in figure.axes] == [
        ("loss", "loss: cross-entropy (log loss)"), ("accuracy", "accuracy (proportion correct)")]
    assert [line.get_label() for line in figure.axes[0].lines] == ["train (during the epoch)"]
    assert [text.get_text() for text in figure.texts] == [species.settings["formula"]]   # no dropout: no note


def test_learning_curves_of_an_ensemble_draw_the_mean_over_models(penguins):
    training, _ = penguins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ensemble = nf.mlp("body_mass_g ~ flipper_length_mm", data=training, hidden=5, epochs=3, seed=1,
                          verbose=False, n_models=3)
    figure = nf.plot.learning_curves(ensemble)
    line = figure.axes[1].lines[0]
    assert line.get_label() == "train (during the epoch), mean of 3 models"
    history = ensemble.metrics
    mae = history[history["metric"] == "mae"].groupby("epoch")["value"].mean().to_numpy()
    np.testing.assert_allclose(line.get_ydata(), mae)


def test_confusion_matrix_text_contrasts_with_its_cell_and_title_gives_accuracy():
    truth = ["a"] * 40 + ["b"] * 5 + ["c"] * 12
    predicted = ["a"] * 38 + ["b"] * 2 + ["b"] * 5 + ["c"] * 10 + ["a"] * 2
    figure = nf.plot.confusion_matrix(truth, predicted)
    axis = figure.axes[0]
    image = axis.images[0]
    counts = np.asarray(image.get_array())
    assert axis.get_title() == "Accuracy 0.930 (53 of 57 rows)"
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("Predicted class", "True class")
    colours = set()
    for text in axis.texts:
        j, i = (int(round(v)) for v in text.get_position())
        cell = image.cmap(image.norm(counts[i, j]))
        assert int(text.get_text()) == counts[i, j]
        assert contrast(to_rgb(text.get_color()), cell) >= 4.5, (text.get_text(), text.get_color(), cell)
        colours.add(text.get_color())
    assert colours == {"white", "black"}   # the darkest cell (40) gets white, the empty ones black
    titled = nf.plot.confusion_matrix(truth, predicted, title="Species, test set").axes[0].get_title()
    assert titled == "Species, test set: accuracy 0.930 (53 of 57 rows)"


def test_confusion_matrix_of_a_fit_and_data(species, penguins):
    _, testing = penguins
    axis = nf.plot.confusion_matrix(species, testing).axes[0]
    scores = species.evaluate(testing)
    counts = np.asarray(axis.images[0].get_array())
    assert counts.sum() == scores.n
    assert np.trace(counts) / counts.sum() == pytest.approx(scores["accuracy"])
    assert axis.get_title() == f"Accuracy {scores['accuracy']:.3f} ({int(np.trace(counts))} of {scores.n} rows)"
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("Predicted species", "True species")
    assert [t.get_text() for t in axis.get_xticklabels()] == ["Adelie", "Chinstrap", "Gentoo"]


def test_truth_vs_predicted_of_a_fit_plots_the_rows_evaluate_scores(mass, penguins):
    _, testing = penguins
    testing = testing.copy()
    assert testing.isna().any(axis=1).any()   # rows with a missing value: left out, as evaluate leaves them
    scores = mass.evaluate(testing)
    axis = nf.plot.truth_vs_predicted(mass, testing, unit="g").axes[0]
    points = np.asarray(axis.collections[0].get_offsets())
    assert len(points) == scores.n
    scored = testing.dropna(subset=[c for c in testing.columns if c != "year"])
    np.testing.assert_allclose(points[:, 0], scored["body_mass_g"].to_numpy())
    np.testing.assert_allclose(points[:, 1], mass.predict(scored).to_numpy())
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("True body_mass_g (g)", "Predicted body_mass_g (g)")
    assert axis.get_title() == f"{scores.n} rows\nMAE {scores['mae']:.4g} g, R² {scores['r2']:.3f}"
    named = nf.plot.truth_vs_predicted(mass, testing, rows="test rows").axes[0]
    assert named.get_title().split("\n")[0] == f"{scores.n} test rows"
    assert (named.get_xlabel(), named.get_ylabel()) == ("True body_mass_g", "Predicted body_mass_g")


def test_truth_vs_predicted_of_a_classifier_says_what_to_use(species, penguins):
    with pytest.raises(ArgumentError, match=r"^truth_vs_predicted\(fit, data\) draws one numeric response; this fit "
                                            r"has a classifier\. For classes use nf\.plot\.confusion_matrix"):
        nf.plot.truth_vs_predicted(species, penguins[1])


def cli_figures(monkeypatch, args):
    figures = {}
    save = nf.plot.save

    def keep(figure, path):
        name = os.path.basename(str(path))
        figures[next(n for n in ("learning_curves.png", "truth_vs_predicted.png") if n in name)] = figure.axes
        save(figure, path)

    monkeypatch.setattr(nf.plot, "save", keep)
    assert cli.main(args) == 0
    return figures


def test_cli_truth_vs_predicted_says_which_rows(tmp_path, monkeypatch, capsys):
    base = ["fit", "penguins", "body_mass_g ~ . - year", "--hidden", "10", "--epochs", "3", "--seed", "1"]
    held = cli_figures(monkeypatch, base + ["--out", str(tmp_path / "held"), "--valid", "0.2"])
    history = pd.read_csv(tmp_path / "held" / "metrics.csv")
    last = history[(history["set"] == "valid") & (history["epoch"] == 3)].set_index("metric")["value"]
    axis = held["truth_vs_predicted.png"][0]
    n = len(axis.collections[0].get_offsets())
    assert n == nf.load(tmp_path / "held" / "model.nnfit").settings["n_valid"] == 67
    title, scores = axis.get_title().split("\n")
    assert title == "67 validation rows (held out from training, --valid 0.2)"
    assert scores.startswith(f"MAE {last['mae']:.4g},")   # the validation MAE of the last epoch: the same rows
    assert [a.get_ylabel() for a in held["learning_curves.png"]] == ["RMSE (body_mass_g units)", "MAE (body_mass_g units)"]

    seen = cli_figures(monkeypatch, base + ["--out", str(tmp_path / "seen")])
    title = seen["truth_vs_predicted.png"][0].get_title().split("\n")[0]
    assert title == "333 training rows (the model saw them; --valid holds some out)"


def drawn_outside(figure) -> list:
    """The sides ("left", "right", "bottom", "top") where something ``figure`` draws (a title, an
    axis label, a tick label, a legend) leaves the figure; a title cut at the edge shows up here."""
    figure.canvas.draw()
    drawn = figure.get_tightbbox(figure.canvas.get_renderer())  # inches; only what is drawn
    width, height = figure.get_size_inches()
    slack = 0.01
    sides = {"left": drawn.x0 < -slack, "right": drawn.x1 > width + slack,
             "bottom": drawn.y0 < -slack, "top": drawn.y1 > height + slack}
    return [side for side, out in sides.items() if out]


def test_no_plot_cuts_a_title_a_label_or_a_tick(mass, species, penguins):
    import matplotlib.pyplot as plt

    from nnfit.inspection import importance, partial_dependence

    _, testing = penguins
    figures = {
        "learning curves": nf.plot.learning_curves(mass),
        "truth vs predicted": nf.plot.truth_vs_predicted(mass, testing),
        "confusion matrix": nf.plot.confusion_matrix(species, testing),
        "importance": importance(mass, testing, repeats=2, seed=0).plot(),
        "partial dependence": partial_dependence(species, testing, "flipper_length_mm", grid=5).plot(),
    }
    for name, figure in figures.items():
        assert drawn_outside(figure) == [], name
    plt.close("all")


def test_the_overflow_check_sees_a_title_cut_at_the_edge():
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(3, 2))
    axis.set_title("a title far too long to fit across a figure three inches wide, cut at both edges")
    figure.tight_layout()
    assert drawn_outside(figure) == ["left", "right"]
    plt.close(figure)

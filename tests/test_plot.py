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

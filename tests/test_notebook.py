"""Notebook display: _repr_html_ of fitted models and evaluations, with inline learning curves."""

import base64
import re

import pytest
import torch

import nnfit as nf
from nnfit import display


def _row(name, value):
    return f"<tr><th style='text-align:left'>{name}</th><td style='text-align:left'>{value}</td></tr>"


def _png(html):
    found = re.findall(r'<img alt="learning curves" src="data:image/png;base64,([A-Za-z0-9+/=]+)"/>', html)
    assert len(found) == 1
    return base64.b64decode(found[0])


@pytest.fixture(scope="module")
def fitted_mlp(lab_split):
    training, _ = lab_split
    return nf.mlp("body_mass_g ~ .", data=training, hidden=5, epochs=3, seed=1, verbose=False)


def test_table_escapes_and_formats():
    html = display.table([("a<b", 0.123456), ("n", 7), ("text", "x & y\nz")], title="T<1>")
    assert html == (
        '<div class="nnfit"><strong>T&lt;1&gt;</strong><table><tbody>'
        + _row("a&lt;b", "0.1235") + _row("n", "7") + _row("text", "<pre style='margin:0'>x &amp; y\nz</pre>")
        + "</tbody></table></div>"
    )


def test_mlp_fit_html(fitted_mlp):
    html = fitted_mlp._repr_html_()
    assert html.startswith('<div class="nnfit"><strong>nnfit MLP (regression)</strong>')
    assert _row("formula", "body_mass_g ~ .") in html
    assert _row("parameters", f"{fitted_mlp.n_parameters:,}") in html
    assert _row("optimizer", "rmsprop") in html
    assert _row("epochs", "3") in html and _row("training rows", "266") in html
    assert f"<pre style='margin:0'>{fitted_mlp.notation()}</pre>" in html
    last = fitted_mlp.metrics.query("epoch == 3").set_index("metric")["value"]
    assert "<thead><tr><th>metric</th><th>train</th></tr></thead>" in html
    assert _row("mae", f"{last['mae']:.4g}") in html and _row("loss", f"{last['loss']:.4g}") in html
    assert _png(html).startswith(b"\x89PNG\r\n\x1a\n")


def test_scores_html(fitted_mlp, lab_split):
    scores = fitted_mlp.evaluate(lab_split[1])
    html = scores._repr_html_()
    assert html == display.table(
        [("mae", scores["mae"]), ("rmse", scores["rmse"]), ("r2", scores["r2"]), ("rows scored", 67),
         ("left out (missing values)", 0)], title="nnfit evaluation")
    assert _row("r2", f"{scores['r2']:.4g}") in html


def test_learner_fitted_and_evaluation_html():
    X = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    y = X.sum(dim=1, keepdim=True)
    fitted = (nf.setup(torch.nn.Linear, loss="mse", metrics=[nf.metrics.MAE()])
              .set_hparams(in_features=3, out_features=1).fit((X, y), epochs=2, valid_data=0.25, seed=1, verbose=False))
    html = fitted._repr_html_()
    assert html.startswith('<div class="nnfit"><strong>nnfit fitted model</strong>')
    assert _row("module", "Linear") in html and _row("parameters", "4") in html and _row("epochs", "2") in html
    assert "<thead><tr><th>metric</th><th>train</th><th>valid</th></tr></thead>" in html
    last = fitted.last_metrics()
    assert (f"<tr><th style='text-align:left'>mae</th><td style='text-align:left'>{last['train']['mae']:.4g}</td>"
            f"<td style='text-align:left'>{last['valid']['mae']:.4g}</td></tr>") in html
    assert _png(html).startswith(b"\x89PNG")
    evaluation = fitted.evaluate((X, y))
    assert evaluation._repr_html_() == display.table(
        [("loss", evaluation.metrics["loss"]), ("mae", evaluation.metrics["mae"]), ("rows", 40)], title="nnfit evaluation")

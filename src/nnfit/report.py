"""One self-contained HTML page about a fitted model: ``fit.report("report.html")``.

The page gathers what the fit already knows how to show: its summary (``fit.summary()``),
its learning curves and what was fitted (``fit._repr_html_``) and, given ``data`` (held-out
rows with the response), the held-out metrics (``fit.evaluate``), truth against prediction
or the confusion matrix (``nnfit.plot``) and permutation importance (``fit.importance``).
Each section says which rows it shows.

The page opens offline and runs nothing: the CSS is inline, the plots are PNG data URIs, it
holds no script and no external address, and its Content-Security-Policy forbids both, so
text that slipped through escaping still could not run. Every piece of text from the user or
a file (formula, column and level names, settings) is escaped.

Writing follows the rules of every file nnfit writes (``nnfit.files.atomic_write``): a
temporary file in the same folder, renamed into place, with the user's umask. The page carries
the mark ``<meta name="generator" content="nnfit VERSION">``; an existing file without it is
never replaced unless ``overwrite=True``, an earlier report is. ``nnfit report DIR`` writes
one for a folder of ``nnfit fit`` (docs/report.md).

>>> import nnfit as nf
>>> from nnfit.report import page
>>> penguins = nf.datasets.load("penguins").dropna()
>>> fit = nf.mlp("body_mass_g ~ flipper_length_mm", penguins, hidden=5, epochs=2, seed=1, verbose=False)
>>> text = page(fit)
>>> text.startswith("<!DOCTYPE html>"), '<meta name="generator" content="nnfit ' in text
(True, True)
"""

from __future__ import annotations

import html
import os
import stat

_MARK = b'<meta name="generator" content="nnfit'
_HEAD_BYTES = 4096  # the mark sits in the first few hundred bytes of a page nnfit wrote

# No script, no frame, no fetch: only inline styles and data-URI images.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; background: #fff; }
main { max-width: 62rem; margin: 0 auto; padding: 1rem 1.25rem 3rem; }
h1 { font-size: 1.5rem; margin: .5rem 0; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 2rem 0 .4rem; padding-bottom: .2rem; border-bottom: 1px solid #d0d7de; }
p { overflow-wrap: anywhere; }
p.rows { color: #57606a; margin: .2rem 0 .6rem; }
.box { max-width: 100%; overflow-x: auto; }
img { display: block; max-width: 100%; height: auto; margin: .5rem 0; }
table { border-collapse: collapse; margin: .3rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .2rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; }
tbody th { white-space: nowrap; }
.nnfit strong { display: block; margin-top: .6rem; }
pre { margin: 0; }
footer { margin-top: 2rem; color: #57606a; font-size: .85rem; }
"""


def write(fit, path, data=None, overwrite: bool = False, title: str | None = None, repeats: int = 5, seed=None,
          unit: str | None = None) -> None:
    """Write the report of ``fit`` (``page``) to ``path``: atomically, with the user's umask.

    ``data``: held-out rows with the response; the page then adds their metrics, truth against
    prediction (regression) or the confusion matrix (classification) and permutation importance
    (``repeats`` permutations per column, drawn from ``seed``). ``title`` replaces the page's
    title (default: the formula); ``unit`` names the response's unit in the plots (e.g. "g").

    An existing file at ``path`` is replaced only if nnfit wrote it (``is_report``), or with
    ``overwrite=True``. ``fit.report(path, data)`` calls this.

    >>> import os, tempfile
    >>> import nnfit as nf
    >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("body_mass_g ~ flipper_length_mm + sex", training, hidden=5, epochs=5, seed=1, verbose=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "report.html")
    >>> fit.report(path, data=testing, repeats=2, seed=1)
    >>> fit.report(path)                                 # an earlier report is replaced
    >>> notes = os.path.join(os.path.dirname(path), "notes.html")
    >>> with open(notes, "w") as stream:
    ...     _ = stream.write("<p>my notes</p>")
    >>> fit.report(notes)                                # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: '.../notes.html' exists and nnfit did not write it (it has no <meta name="generator" content="nnfit ..."> mark); nnfit never replaces such a file: pass overwrite=True to replace it, or choose another path.
    """
    from .files import atomic_write

    check_target(path, overwrite)
    text = page(fit, data=data, title=title, repeats=repeats, seed=seed, unit=unit)
    atomic_write(path, text.encode("utf-8"))


def check_target(path, overwrite: bool = False) -> None:
    """Refuse ``path`` if a file is there that nnfit did not write (unless ``overwrite``): an ArgumentError.

    >>> import os, tempfile
    >>> check_target(os.path.join(tempfile.mkdtemp(), "report.html"))   # nothing there: fine
    """
    from .errors import ArgumentError

    if overwrite or not os.path.lexists(path) or os.path.isdir(path) or is_report(path):
        return  # a folder is refused by atomic_write, with its own message
    raise ArgumentError(f"{str(path)!r} exists and nnfit did not write it (it has no <meta name=\"generator\" "
                        "content=\"nnfit ...\"> mark); nnfit never replaces such a file: pass overwrite=True to "
                        "replace it, or choose another path.")


def is_report(path) -> bool:
    """Whether ``path`` is a regular file that starts as nnfit's reports start (their generator mark).

    Only the first few kilobytes are read, and only of a regular file (never a link, a pipe or a device).

    >>> import os, tempfile
    >>> is_report(os.path.join(tempfile.mkdtemp(), "none.html"))
    False
    """
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, "rb") as stream:
            head = stream.read(_HEAD_BYTES)
    except OSError:
        return False
    return _MARK in head


def page(fit, data=None, title: str | None = None, repeats: int = 5, seed=None, unit: str | None = None) -> str:
    """The report of ``fit`` as one HTML document (a str); ``write`` saves it. Arguments as ``write``'s.

    Sections: "Summary" and "Training history" always; with ``data`` also "Held-out metrics",
    "Truth against prediction" (one numeric response) or "Confusion matrix" (a classifier),
    and "Permutation importance".

    >>> import re
    >>> import nnfit as nf
    >>> training, testing = nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)
    >>> fit = nf.mlp("species ~ bill_length_mm + flipper_length_mm", training, hidden=5, epochs=3, seed=1,
    ...              verbose=False)
    >>> re.findall("<h2>(.*?)</h2>", page(fit, data=testing, repeats=2, seed=1))
    ['Summary', 'Training history', 'Held-out metrics', 'Confusion matrix', 'Permutation importance']
    """
    from . import __version__

    formula = fit.settings["formula"]
    heading = title if title is not None else f"nnfit report: {formula}"
    sections = [_summary(fit), _history(fit)]
    if data is None:
        intro = ("No held-out rows were given: this page shows the training history and the summary. "
                 "Pass data= (rows with the response that training did not see) to add held-out metrics, "
                 + ("truth against prediction" if fit.task == "regression" else "the confusion matrix")
                 + " and permutation importance.")
    else:
        intro = "Held-out sections show the rows given as data=, which should be rows that training did not see."
        sections += _held_out(fit, data, repeats=repeats, seed=seed, unit=unit)
    escape = html.escape
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta name="generator" content="nnfit {escape(__version__)}">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(heading)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{escape(heading)}</h1>",
        f"<p>{escape(_TASKS.get(fit.task, fit.task))}: <code>{escape(formula)}</code></p>",
        f"<p class=\"rows\">{escape(intro)}</p>",
        *sections,
        f"<footer>Written by nnfit {escape(__version__)}.</footer>",
        "</main>",
        "</body>",
        "</html>",
        "",
    ])


_TASKS = {"regression": "Regression", "binary": "Classification (two levels)",
          "multiclass": "Classification (several levels)"}


def _section(heading: str, rows: str, *parts: str) -> str:
    """A section: its heading, which rows it shows (plain text, escaped here) and its HTML parts."""
    body = "".join(f'<div class="box">{part}</div>' for part in parts)
    return f'<section>\n<h2>{html.escape(heading)}</h2>\n<p class="rows">{html.escape(rows)}</p>\n{body}\n</section>'


def _image(figure, alt: str) -> str:
    """A figure as an inline PNG (``display.figure``, which closes it), with its own alt text."""
    from . import display

    return display.figure(figure, alt=alt)


def _summary(fit) -> str:
    summary = fit.summary()
    if summary.measured:
        rows = f"Rows: the {summary.n_train} training rows"
        rows += f" and the {summary.n_valid} validation rows" if summary.n_valid else ""
        rows += " the fit held, scored in eval mode (no dropout)."
    else:
        rows = ("Rows: none held by this fit (loaded from a file, or an ensemble); the metrics are the last "
                "epoch's, as training recorded them.")
    if summary.n_left_out:
        rows += f" {summary.n_left_out} rows were left out of training for missing values."
    return _section("Summary", rows, summary._repr_html_())


def _history(fit) -> str:
    rows = ("Rows: the training rows, each epoch's mean over its batches while the weights moved (the legend "
            "says whether dropout was on)"
            + (f"; the {fit.settings['n_valid']} validation rows, in eval mode after each epoch."
               if fit.settings.get("n_valid") else "; no rows were held out for validation."))
    return _section("Training history", rows, fit._repr_html_())


def _held_out(fit, data, repeats: int, seed, unit) -> list:
    import warnings

    from . import plot
    from .errors import MissingValuesWarning

    scores = fit.evaluate(data)  # warns once if rows are left out; the calls below score the same rows
    left = f"; {scores.n_left_out} left out for missing values" if scores.n_left_out else ""
    rows = f"Rows: the {scores.n} rows of data= that have the response and every predictor{left}."
    sections = [_section("Held-out metrics", rows, scores._repr_html_())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingValuesWarning)
        if fit.task != "regression":
            figure = plot.confusion_matrix(fit, data)
            sections.append(_section("Confusion matrix", rows + " Rows of the table: truth; columns: predicted.",
                                     _image(figure, "confusion matrix of the held-out rows")))
        elif len(fit.design.response_columns) == 1:
            figure = plot.truth_vs_predicted(fit, data, unit=unit, rows="held-out rows (data=)")
            sections.append(_section("Truth against prediction", rows,
                                     _image(figure, "truth against prediction on the held-out rows")))
        else:
            sections.append(_section("Truth against prediction", rows + (
                f" Not drawn: this fit has {len(fit.design.response_columns)} responses; "
                "nf.plot.truth_vs_predicted(truth, predicted) draws each one's arrays.")))
        ranked = fit.importance(data, repeats=repeats, seed=seed)
        rows = (f"Rows: the same {ranked.n} rows of data=; each column permuted {ranked.repeats} times, "
                f"scored by {ranked.metric}.")
        sections.append(_section("Permutation importance", rows,
                                 _image(ranked.plot(), "permutation importance on the held-out rows"),
                                 ranked._repr_html_()))
    return sections

"""Notebook display: fitted models and evaluations as compact HTML tables (``_repr_html_``).

Jupyter calls an object's ``_repr_html_`` to show it; nnfit's fitted objects answer with a
table of what was fitted and the last epoch's metrics, followed by the learning curves as an
inline PNG, and evaluations with a table of their metrics. Plain ``print`` is unchanged.

>>> from nnfit import display
>>> display.table([("loss", 0.25), ("mae", 0.5)], title="Evaluation")[:37]
'<div class="nnfit"><strong>Evaluation'
"""

from __future__ import annotations

import base64
import html
import io
import math


def _cell(value) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    text = html.escape(str(value))
    return f"<pre style='margin:0'>{text}</pre>" if "\n" in text else text


def table(rows, title: str = "", header=None) -> str:
    """An HTML table of (name, value, ...) rows under a bold title."""
    head = "".join(f"<th>{html.escape(str(name))}</th>" for name in header) if header else ""
    body = "".join(
        "<tr>" + f"<th style='text-align:left'>{html.escape(str(row[0]))}</th>"
        + "".join(f"<td style='text-align:left'>{_cell(value)}</td>" for value in row[1:]) + "</tr>"
        for row in rows
    )
    caption = f"<strong>{html.escape(title)}</strong>" if title else ""
    return f'<div class="nnfit">{caption}<table>' + (f"<thead><tr>{head}</tr></thead>" if head else "") + \
        f"<tbody>{body}</tbody></table></div>"


def last_epoch(values: dict) -> str:
    """The last epoch's metrics, {set: {metric: value}}, as a table: one row per metric, one column per set."""
    sets = list(values)
    names = list(dict.fromkeys(name for metrics in values.values() for name in metrics))
    rows = [[name] + [values[s].get(name, math.nan) for s in sets] for name in names]
    return table(rows, title="Last epoch", header=["metric"] + sets)


def figure(fig, alt: str = "learning curves") -> str:
    """A matplotlib figure as an inline PNG ``<img>`` with the text ``alt``; the figure is closed afterwards."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}"/>'


def fitted(title: str, facts, last: dict, curves=None) -> str:
    """A fitted model: its facts, the last epoch's metrics and, when given, its learning curves."""
    parts = [table(facts, title=title)]
    if last:
        parts.append(last_epoch(last))
    if curves is not None:
        parts.append(figure(curves))
    return "".join(parts)


def frame(data, title: str = "") -> str:
    """A pandas DataFrame as a table under a bold title: its index names the rows.

    >>> import pandas as pd
    >>> from nnfit import display
    >>> "<th>yes</th>" in display.frame(pd.DataFrame({"yes": [1]}, index=["no"]), title="Confusion")
    True
    """
    rows = [[index] + list(values) for index, values in zip(data.index, data.itertuples(index=False))]
    return table(rows, title=title, header=[data.index.name or ""] + [str(c) for c in data.columns])

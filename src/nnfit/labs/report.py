"""How a lab prints: its heading, a table of figures beside the book's and the baselines', its timing."""

from __future__ import annotations

import os
import sys
import time


class Report:
    """Collects a lab's lines and prints them to ``stream`` as they come."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.began = time.perf_counter()

    def say(self, text: str = "") -> None:
        print(text, file=self.stream)

    def table(self, header, rows) -> None:
        """Rows of cells, columns padded to one width each; numbers as given (already formatted)."""
        rows = [list(map(str, header))] + [[str(cell) for cell in row] for row in rows]
        widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
        for i, row in enumerate(rows):
            cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
            self.say("  " + "   ".join(cells).rstrip())

    def seconds(self) -> float:
        return time.perf_counter() - self.began

    def finish(self, figures: dict, note: str = "") -> dict:
        """Close the lab's printout with its run time (and ``note``); record the time in ``figures``."""
        seconds = self.seconds()
        self.say()
        self.say(f"  ({seconds:.1f} s{'; ' + note if note else ''})")
        figures["seconds"] = seconds
        return figures

    def plots(self, out, figures: dict) -> list:
        """Save {file name: figure} into ``out`` (created if needed); nothing when ``out`` is None."""
        if out is None:
            for figure in figures.values():
                _close(figure)
            return []
        from .. import plot

        os.makedirs(out, exist_ok=True)
        written = []
        for name, figure in figures.items():
            plot.save(figure, os.path.join(out, name))
            written.append(name)
        self.say(f"Plots written to {out}/: {', '.join(written)}")
        return written


def _close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


def number(value, digits: int = 3) -> str:
    """A figure for the table: '-' when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"

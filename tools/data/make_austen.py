"""Sample nnfit's bundled text corpus, austen.csv.gz, from austen-paragraphs.csv (see austen.R).

500 paragraphs of 20 to 200 words from each of Jane Austen's six novels, drawn with numpy's
default_rng(14) and kept in each novel's order; written as CSV (columns novel, text) and
compressed with gzip -9 -n (no time stamp), so the output is the same bytes every time.

    python make_austen.py austen-paragraphs.csv ../austen.csv.gz
"""

import csv
import gzip
import io
import sys

import numpy as np


def main(source, target):
    with open(source, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(14)
    chosen = []
    for novel in sorted({row["novel"] for row in rows}):
        candidates = [i for i, row in enumerate(rows)
                      if row["novel"] == novel and 20 <= len(row["text"].split()) <= 200]
        chosen += sorted(rng.choice(candidates, size=500, replace=False).tolist())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["novel", "text"])
    for i in chosen:
        writer.writerow([rows[i]["novel"], rows[i]["text"]])
    with open(target, "wb") as handle:
        handle.write(gzip.compress(buffer.getvalue().encode("utf-8"), compresslevel=9, mtime=0))


if __name__ == "__main__":
    main(*sys.argv[1:3])

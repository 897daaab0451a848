"""nnfit.report: the page's sections and rows, escaping, no external reference, the writing rules,
and the page as a real headless browser (Chromium) draws it."""

import html
import json
import os
import re
import shutil
import subprocess

import pytest

import nnfit as nf
from nnfit import report
from nnfit.errors import ArgumentError

CHROMIUM = shutil.which("chromium")
# Locally a missing browser skips; in CI (the variable CI set) it fails, since CI installs chromium.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not on PATH (Debian: apt-get install chromium); the browser tests need it",
)

BAD_LEVEL = "<script>alert(1)</script>"
BAD_COLUMN = '"><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def split():
    return nf.split(nf.datasets.load("penguins").dropna(), prop=0.8, seed=1)


@pytest.fixture(scope="module")
def regression(split):
    training, _ = split
    return nf.mlp("body_mass_g ~ . - year", training, hidden=5, epochs=5, valid=0.2, seed=1, verbose=False)


@pytest.fixture(scope="module")
def classifier(split):
    training, _ = split
    return nf.mlp("species ~ bill_length_mm + flipper_length_mm + island", training, hidden=5, epochs=5, seed=1,
                  verbose=False)


@pytest.fixture(scope="module")
def pages(tmp_path_factory, split, regression, classifier):
    """{name: path} of the reports the browser tests open: a regression's and a classifier's, with held-out rows."""
    _, testing = split
    folder = tmp_path_factory.mktemp("reports")
    paths = {"regression": folder / "regression.html", "classifier": folder / "classifier.html"}
    regression.report(paths["regression"], data=testing, repeats=2, seed=1)
    classifier.report(paths["classifier"], data=testing, repeats=2, seed=1)
    return paths


def headings(text: str) -> list:
    return re.findall(r"<h2>(.*?)</h2>", text)


def sections(text: str) -> list:
    return re.findall(r"<section>(.*?)</section>", text, flags=re.S)


# ---------------------------------------------------------------------- what the page holds
def test_sections_of_a_regression_and_a_classifier_with_held_out_rows(pages):
    regression, classifier = pages["regression"].read_text(), pages["classifier"].read_text()
    assert headings(regression) == ["Summary", "Training history", "Held-out metrics", "Truth against prediction",
                                    "Permutation importance"]
    assert headings(classifier) == ["Summary", "Training history", "Held-out metrics", "Confusion matrix",
                                    "Permutation importance"]
    assert "<title>nnfit report: body_mass_g ~ . - year</title>" in regression


def test_each_section_says_which_rows_it_shows(pages, split, regression):
    _, testing = split
    rows = [re.search(r'<p class="rows">(.*?)</p>', part).group(1) for part in sections(pages["regression"].read_text())]
    n_train, n_valid = regression.settings["n_train"], regression.settings["n_valid"]
    assert rows[0] == (f"Rows: the {n_train} training rows and the {n_valid} validation rows the fit held, scored in "
                       "eval mode (no dropout).")
    assert rows[1].startswith("Rows: the training rows, each epoch&#x27;s mean over its batches")
    assert rows[1].endswith(f"the {n_valid} validation rows, in eval mode after each epoch.")
    held_out = f"Rows: the {len(testing)} rows of data= that have the response and every predictor."
    assert rows[2] == rows[3] == held_out
    assert rows[4] == f"Rows: the same {len(testing)} rows of data=; each column permuted 2 times, scored by rmse."


def test_without_data_the_page_has_the_summary_and_the_training_history_only(classifier):
    text = report.page(classifier)
    assert headings(text) == ["Summary", "Training history"]
    assert ("No held-out rows were given: this page shows the training history and the summary. Pass data= (rows "
            "with the response that training did not see) to add held-out metrics, the confusion matrix and "
            "permutation importance.") in text


def test_held_out_metrics_and_importance_are_those_of_evaluate_and_importance(split, classifier):
    _, testing = split
    text = report.page(classifier, data=testing, repeats=2, seed=3)
    held_out = sections(text)[2]
    assert classifier.evaluate(testing)._repr_html_() in held_out
    assert classifier.importance(testing, repeats=2, seed=3)._repr_html_() in sections(text)[4]


def test_no_external_reference_and_no_script(pages):
    for path in pages.values():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text
        assert 'src="/' not in text and "href=" not in text and "url(" not in text and "@import" not in text
        assert "<script" not in text and "<link" not in text and "<iframe" not in text
        sources = re.findall(r'src="([^"]*)"', text)
        assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
        assert text.count("<img ") == len(sources)
        assert '<meta name="generator" content="nnfit 0.1.0">' in text.split("</head>")[0]


def test_every_text_from_the_user_or_the_data_is_escaped(split):
    training, testing = split

    def hostile(frame):
        frame = frame.rename(columns={"flipper_length_mm": BAD_COLUMN})
        return frame.assign(species=frame["species"].astype(str).replace({"Adelie": BAD_LEVEL}))

    formula = f"species ~ bill_length_mm + `{BAD_COLUMN}`"
    fit = nf.mlp(formula, hostile(training), hidden=3, epochs=2, seed=1, verbose=False)
    assert BAD_LEVEL in fit.design.levels
    text = report.page(fit, data=hostile(testing), repeats=1, seed=1, title=f"{BAD_LEVEL} and {BAD_COLUMN}")
    assert BAD_LEVEL not in text and BAD_COLUMN not in text
    assert "<script" not in text and "<img src=x" not in text and "onerror=alert(1)>" not in text
    assert html.escape(BAD_LEVEL) in text  # in the confusion table, the per-class table, the summary
    assert f"<h1>{html.escape(f'{BAD_LEVEL} and {BAD_COLUMN}')}</h1>" in text
    assert f"<code>{html.escape(formula)}</code>" in text
    assert "&gt;&lt;img src=x onerror=alert(1)&gt;" in text  # the column, in the importance table


# ---------------------------------------------------------------------- writing
def test_an_existing_file_nnfit_did_not_write_is_refused_and_kept(tmp_path, regression):
    path = tmp_path / "notes.html"
    path.write_text("<p>my notes</p>")
    with pytest.raises(ArgumentError) as caught:
        regression.report(path)
    assert str(caught.value) == (
        f"{str(path)!r} exists and nnfit did not write it (it has no <meta name=\"generator\" content=\"nnfit ...\"> "
        "mark); nnfit never replaces such a file: pass overwrite=True to replace it, or choose another path.")
    assert path.read_text() == "<p>my notes</p>"
    assert os.listdir(tmp_path) == ["notes.html"]


def test_overwrite_true_replaces_it_keeping_its_mode(tmp_path, regression):
    path = tmp_path / "notes.html"
    path.write_text("<p>my notes</p>")
    os.chmod(path, 0o640)
    regression.report(path, overwrite=True)
    assert report.is_report(path) and os.stat(path).st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["notes.html"]  # no temporary file left


def test_an_earlier_report_is_replaced_without_overwrite(tmp_path, regression, classifier):
    path = tmp_path / "report.html"
    regression.report(path)
    classifier.report(path)
    assert "<title>nnfit report: species ~ bill_length_mm + flipper_length_mm + island</title>" in path.read_text()
    assert os.listdir(tmp_path) == ["report.html"]


def test_a_new_report_gets_the_users_umask(tmp_path, regression):
    previous = os.umask(0o027)
    try:
        regression.report(tmp_path / "report.html")
    finally:
        os.umask(previous)
    assert os.stat(tmp_path / "report.html").st_mode & 0o777 == 0o640


def test_a_link_or_a_folder_is_not_taken_for_a_report(tmp_path, regression):
    page = tmp_path / "report.html"
    regression.report(page)
    link = tmp_path / "link.html"
    link.symlink_to(page)
    assert report.is_report(page) and not report.is_report(link) and not report.is_report(tmp_path)
    with pytest.raises(ArgumentError, match="exists and nnfit did not write it"):
        regression.report(link)
    with pytest.raises(ArgumentError) as caught:
        regression.report(tmp_path)
    assert str(caught.value) == f"Cannot write to {str(tmp_path)!r}: it is a directory."


# ---------------------------------------------------------------------- in a browser
# Appended to a copy of a page (the page itself holds no script, and its policy forbids one):
# writes into the DOM whether every image decoded and whether anything overflows sideways.
CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const result = {images: images.length, broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
                  scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth};
  const out = document.createElement("pre");
  out.id = "nnfit-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def chromium(*args, tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not on PATH, and CI is set: CI must install it (apt-get install -y chromium)")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
               *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def checked(page, width: int, tmp_path) -> dict:
    """What CHECK found in ``page`` drawn by Chromium in a window ``width`` pixels wide."""
    text = page.read_text()
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)  # let the check run
    copy = tmp_path / f"checked-{width}-{page.name}"
    copy.write_text(text.replace("</body>", CHECK + "\n</body>"))
    result = chromium("--dump-dom", "--virtual-time-budget=5000", f"--window-size={width},2000", copy,
                      tmp_path=tmp_path)
    found = re.search(r'<pre id="nnfit-check">(.*?)</pre>', result.stdout)
    assert found, f"the check did not run: {result.stdout[-500:]!r} {result.stderr[-500:]!r}"
    return json.loads(html.unescape(found.group(1)))


@needs_chromium
@pytest.mark.parametrize("name", ["regression", "classifier"])
def test_the_page_draws_in_chromium(pages, name, tmp_path):
    import matplotlib.image

    screenshot = tmp_path / "screenshot.png"
    result = chromium(f"--screenshot={screenshot}", "--window-size=1280,2000", pages[name], tmp_path=tmp_path)
    assert screenshot.exists(), result.stderr[-500:]
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape == (2000, 1280, 3)
    assert pixels.std() > 0.1  # not one colour
    assert (pixels.min(axis=2) < 0.5).mean() > 0.01  # text, tables and plots: dark pixels, not a blank page


@needs_chromium
@pytest.mark.parametrize("width", [1280, 800])
@pytest.mark.parametrize("name", ["regression", "classifier"])
def test_every_image_decodes_and_nothing_overflows_sideways(pages, name, width, tmp_path):
    found = checked(pages[name], width, tmp_path)
    assert found["innerWidth"] == width
    assert found["images"] == pages[name].read_text().count("<img ") == 3 and found["broken"] == 0
    assert found["scrollWidth"] <= found["innerWidth"]


@needs_chromium
def test_the_browser_check_sees_a_broken_image_and_an_overflow(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                    '<div style="width:3000px">wide</div></body></html>')
    found = checked(page, 800, tmp_path)
    assert found["innerWidth"] == 800 and found["images"] == found["broken"] == 1
    assert found["scrollWidth"] > found["innerWidth"]

"""The course as a book (`workbook book`): unit tests on a small made-up run, and the book of the smoke run opened
in Chromium through Playwright, page by page, as a reader would (screenshots in `runs/browser-tests/book-*.png`)."""

import base64
import io
import re
from pathlib import Path

import nbformat
import pytest

from helpers.book import build_book, executed_notebooks, fold_solutions, navigation
from helpers.workbook import RUNS_DIR

SOLUTION = "def add(a, b):\n    \"\"\"Exercise 99.1.\"\"\"\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION\n"


def png_bytes() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@pytest.fixture
def made_up_run(tmp_path):
    """A run folder with two executed notebooks: markdown with math, a figure, a table, an exercise's solution."""
    figure = nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(png_bytes()).decode(), "text/plain": "<Figure>"})
    first = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 01 · First lesson\n\nThe loss $-\\log \\sigma(z)$."),
        nbformat.v4.new_code_cell("plot()", outputs=[figure]),
        nbformat.v4.new_code_cell(SOLUTION),
    ])
    second = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 02 · Second lesson"),
                                             nbformat.v4.new_code_cell("1 + 1", outputs=[nbformat.v4.new_output(
                                                 "execute_result", data={"text/plain": "2"}, execution_count=1)])])
    for stem, notebook in (("01_first", first), ("02_second", second)):
        (tmp_path / stem).mkdir()
        nbformat.write(notebook, tmp_path / stem / f"{stem}.ipynb")
    return tmp_path


def test_solutions_are_folded_without_their_markers():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SOLUTION), nbformat.v4.new_code_cell("check()")])
    assert fold_solutions(notebook) == 1
    folded = notebook.cells[0]
    assert folded.cell_type == "markdown" and folded.source.startswith('<details class="solution"><summary>Show the solution</summary>')
    assert "return a + b" in folded.source and "BEGIN SOLUTION" not in folded.source and notebook.cells[1].source == "check()"


def test_navigation_links_the_contents_and_the_neighbours():
    pages = [("01_a.html", "01 · A"), ("02_b.html", "02 · B"), ("03_c.html", "03 · C")]
    assert re.findall(r'href="([^"]+)"', navigation(pages, 0)) == ["index.html", "02_b.html"]
    assert re.findall(r'href="([^"]+)"', navigation(pages, 1)) == ["index.html", "01_a.html", "03_c.html"]
    assert re.findall(r'href="([^"]+)"', navigation(pages, 2)) == ["index.html", "02_b.html"]


def test_a_run_without_executed_notebooks_is_refused_with_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="workbook run --out"):
        executed_notebooks(tmp_path)


def test_the_book_of_a_made_up_run(made_up_run, monkeypatch):
    import helpers.book as book

    monkeypatch.setattr(book, "executed_notebooks", lambda run_dir: [made_up_run / s / f"{s}.ipynb" for s in ("01_first", "02_second")])
    index = build_book(made_up_run)
    pages = {path.name: path.read_text() for path in index.parent.glob("*.html")}
    assert set(pages) == {"index.html", "01_first.html", "02_second.html"}
    assert re.findall(r'<li><a href="([^"]+)">', pages["index.html"]) == ["01_first.html", "02_second.html"]
    assert "01 · First lesson" in pages["index.html"]
    assert "Show the solution" in pages["01_first.html"] and "BEGIN SOLUTION" not in pages["01_first.html"]
    assert "data:image/png;base64," in pages["01_first.html"]
    assert not re.search(r'src="https?://', pages["01_first.html"]), "the book must open offline"
    assert (index.parent / "assets" / "mathjax" / "MathJax.js").is_file() and "assets/mathjax/MathJax.js" in pages["01_first.html"]


@pytest.mark.browser
@pytest.mark.notebooks
def test_the_smoke_runs_book_opens_in_chromium(smoke_run, tmp_path):
    """Every page of the smoke run's book loads from disk in Chromium with no request leaving the machine, its
    figures are images that loaded, no page shows a traceback, math is typeset, and every link between pages resolves."""
    from playwright.sync_api import sync_playwright

    from test_browser import chromium_path

    index = build_book(smoke_run[0], tmp_path / "book")
    expected = [path.stem for path in executed_notebooks(smoke_run[0])]
    shots = RUNS_DIR / "browser-tests"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page()
        remote = []
        page.on("request", lambda request: remote.append(request.url) if request.url.startswith("http") else None)
        page.goto(index.as_uri())
        links = page.eval_on_selector_all("ol a", "links => links.map(a => a.getAttribute('href'))")
        figures, typeset = 0, {}
        has_math = {f"{path.stem}.html": any(cell.cell_type == "markdown" and re.search(r"\$[^$\n]+\$", cell.source)
                                             for cell in nbformat.read(path, as_version=4).cells) for path in executed_notebooks(smoke_run[0])}
        assert links == [f"{stem}.html" for stem in expected], "the contents list every executed notebook, in order"
        for link in links:
            page.goto((index.parent / link).as_uri(), wait_until="load")
            page.wait_for_function("() => !window.MathJax || !window.MathJax.Hub || window.MathJax.Hub.queue.running === 0 && window.MathJax.Hub.queue.pending === 0",
                                   timeout=30_000)
            page.screenshot(path=str(shots / f"book-{Path(link).stem}.png"))
            text = page.inner_text("body")
            assert "Traceback (most recent call last)" not in text, f"{link} shows a traceback"
            images = page.eval_on_selector_all("img", "images => images.map(i => [i.complete, i.naturalWidth])")
            assert all(complete and width > 0 for complete, width in images), f"{link}: a figure did not load"
            figures += len(images)
            if has_math[link]:
                typeset[link] = page.evaluate("() => document.querySelectorAll('.MathJax, .MathJax_CHTML, mjx-container').length")
            for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
                if not href.startswith(("http://", "https://", "#", "mailto:")):
                    assert (index.parent / href.split("#")[0]).is_file(), f"{link} links to {href}, which is not in the book"
        browser.close()
    assert not remote, f"the book asked the network for {remote[:3]}"
    assert figures >= len(links), f"{figures} figures in {len(links)} pages: the executed notebooks' plots are missing"
    assert typeset and all(count > 0 for count in typeset.values()), f"math left as TeX source: {typeset}"

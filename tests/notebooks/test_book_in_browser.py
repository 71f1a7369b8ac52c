"""The smoke run's book opened in Chromium through Playwright, page by page, as a reader would (screenshots in
`runs/browser-tests/book-*.png`)."""

import re
from pathlib import Path

import nbformat
import pytest

from helpers.book import build_book, executed_notebooks
from helpers.workbook import RUNS_DIR


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
        has_math = {
            f"{path.stem}.html": any(
                cell.cell_type == "markdown" and re.search(r"\$[^$\n]+\$", cell.source)
                for cell in nbformat.read(path, as_version=4).cells
            )
            for path in executed_notebooks(smoke_run[0])
        }
        assert links == [f"{stem}.html" for stem in expected], "the contents list every executed notebook, in order"
        for link in links:
            page.goto((index.parent / link).as_uri(), wait_until="load")
            page.wait_for_function(
                "() => !window.MathJax || !window.MathJax.Hub || window.MathJax.Hub.queue.running === 0 && window.MathJax.Hub.queue.pending === 0",
                timeout=30_000,
            )
            page.screenshot(path=str(shots / f"book-{Path(link).stem}.png"))
            text = page.inner_text("body")
            assert "Traceback (most recent call last)" not in text, f"{link} shows a traceback"
            images = page.eval_on_selector_all("img", "images => images.map(i => [i.complete, i.naturalWidth])")
            assert all(complete and width > 0 for complete, width in images), f"{link}: a figure did not load"
            figures += len(images)
            if has_math[link]:
                typeset[link] = page.evaluate(
                    "() => document.querySelectorAll('.MathJax, .MathJax_CHTML, mjx-container').length"
                )
            for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
                if not href.startswith(("http://", "https://", "#", "mailto:")):
                    assert (index.parent / href.split("#")[0]).is_file(), (
                        f"{link} links to {href}, which is not in the book"
                    )
        browser.close()
    assert not remote, f"the book asked the network for {remote[:3]}"
    assert figures >= len(links), f"{figures} figures in {len(links)} pages: the executed notebooks' plots are missing"
    assert typeset and all(count > 0 for count in typeset.values()), f"math left as TeX source: {typeset}"

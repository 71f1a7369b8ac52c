"""The course as a book (`workbook book`): the pieces, and the book of a small made-up run."""

import base64
import io
import re

import nbformat
import pytest

from helpers.book import build_book, executed_notebooks, fold_solutions, navigation

SOLUTION = 'def add(a, b):\n    """Exercise 99.1."""\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION\n'


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
    figure = nbformat.v4.new_output(
        "display_data", data={"image/png": base64.b64encode(png_bytes()).decode(), "text/plain": "<Figure>"}
    )
    first = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# 01 · First lesson\n\nThe loss $-\\log \\sigma(z)$."),
            nbformat.v4.new_code_cell("plot()", outputs=[figure]),
            nbformat.v4.new_code_cell(SOLUTION),
        ]
    )
    second = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# 02 · Second lesson"),
            nbformat.v4.new_code_cell(
                "1 + 1", outputs=[nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1)]
            ),
        ]
    )
    for stem, notebook in (("01_first", first), ("02_second", second)):
        (tmp_path / stem).mkdir()
        nbformat.write(notebook, tmp_path / stem / f"{stem}.ipynb")
    return tmp_path


def test_solutions_are_folded_without_their_markers():
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(SOLUTION), nbformat.v4.new_code_cell("check()")]
    )
    assert fold_solutions(notebook) == 1
    folded = notebook.cells[0]
    assert folded.cell_type == "markdown" and folded.source.startswith(
        '<details class="solution"><summary>Show the solution</summary>'
    )
    assert (
        "return a + b" in folded.source
        and "BEGIN SOLUTION" not in folded.source
        and notebook.cells[1].source == "check()"
    )


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

    monkeypatch.setattr(
        book, "executed_notebooks", lambda run_dir: [made_up_run / s / f"{s}.ipynb" for s in ("01_first", "02_second")]
    )
    index = build_book(made_up_run)
    pages = {path.name: path.read_text() for path in index.parent.glob("*.html")}
    assert set(pages) == {"index.html", "01_first.html", "02_second.html"}
    assert re.findall(r'<li><a href="([^"]+)">', pages["index.html"]) == ["01_first.html", "02_second.html"]
    assert "01 · First lesson" in pages["index.html"]
    assert "Show the solution" in pages["01_first.html"] and "BEGIN SOLUTION" not in pages["01_first.html"]
    assert "data:image/png;base64," in pages["01_first.html"]
    assert not re.search(r'src="https?://', pages["01_first.html"]), "the book must open offline"
    assert (index.parent / "assets" / "mathjax" / "MathJax.js").is_file() and "assets/mathjax/MathJax.js" in pages[
        "01_first.html"
    ]

"""The course as a book: the executed notebooks of a run rendered into a static HTML site that opens offline.

`workbook book RUN_DIR` (or `make book RUN=RUN_DIR`) reads the executed copies that `workbook run` left in
`RUN_DIR/<notebook>/<notebook>.ipynb` and writes `RUN_DIR/book/`: one page per notebook (nbconvert's JupyterLab
template: code, tables and figures as the learner saw them, without prompts), each with links to the contents and to
the notebooks before and after it, the exercises' solutions folded under "Show the solution", and an `index.html`
with the table of contents. Math is typeset by a local copy of MathJax (from the `jupyter-server-mathjax` package),
so nothing is fetched from the network.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import nbformat

from .paths import NOTEBOOK_DIR

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
MATHJAX_CONFIG = "config=TeX-AMS-MML_HTMLorMML-full,Safe"
REMOTE_SCRIPT = re.compile(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>')


def executed_notebooks(run_dir: str | Path, stems: Sequence[str] | None = None) -> list[Path]:
    """The executed copies of a run, in course order: `RUN_DIR/<stem>/<stem>.ipynb` for every notebook of the workbook
    that ran. A run with none is an error that says what to run first."""
    run_dir = Path(run_dir)
    stems = stems or [path.stem for path in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))]
    found = [run_dir / stem / f"{stem}.ipynb" for stem in stems if (run_dir / stem / f"{stem}.ipynb").is_file()]
    if not found:
        raise FileNotFoundError(
            f"{run_dir} holds no executed notebook (<name>/<name>.ipynb): run `workbook run --out {run_dir}` first"
        )
    return found


def title_of(notebook: nbformat.NotebookNode, fallback: str) -> str:
    """The notebook's first level-1 heading, without the '#'."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def fold_solutions(notebook: nbformat.NotebookNode) -> int:
    """Replace every code cell that holds an exercise's solution (between nbgrader's markers) by a folded block that
    shows the code when opened; returns how many were folded."""
    folded = 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and SOLUTION_BEGIN in cell.source:
            code = "\n".join(
                line for line in cell.source.splitlines() if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END)
            )
            notebook.cells[index] = nbformat.v4.new_markdown_cell(
                f'<details class="solution"><summary>Show the solution</summary>\n\n```python\n{code}\n```\n\n</details>'
            )
            folded += 1
    return folded


def navigation(pages: Sequence[tuple[str, str]], position: int) -> str:
    """A line of links: the contents, the page before and the page after (file name, title)."""
    links = ['<a href="index.html">Contents</a>']
    if position > 0:
        links.append(f'<a href="{pages[position - 1][0]}">← {html.escape(pages[position - 1][1])}</a>')
    if position < len(pages) - 1:
        links.append(f'<a href="{pages[position + 1][0]}">{html.escape(pages[position + 1][1])} →</a>')
    return '<nav class="book-navigation">' + " · ".join(links) + "</nav>"


def _local_mathjax(out_dir: Path) -> str:
    """Copy MathJax beside the pages and return its URL relative to them ("" where the package is missing: the math
    then shows as TeX source)."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return ""
    target = out_dir / "assets" / "mathjax"
    if not (target / "MathJax.js").is_file():
        shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", target, dirs_exist_ok=True)
    return f"assets/mathjax/MathJax.js?{MATHJAX_CONFIG}"


def build_book(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Render the run's executed notebooks into `out_dir` (default `RUN_DIR/book`); returns the path of index.html."""
    from nbconvert import HTMLExporter

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "book"
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = executed_notebooks(run_dir)
    notebooks = [nbformat.read(path, as_version=4) for path in sources]
    pages = [
        (f"{path.stem}.html", title_of(notebook, path.stem)) for path, notebook in zip(sources, notebooks, strict=True)
    ]
    exporter = HTMLExporter(
        template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True, mathjax_url=_local_mathjax(out_dir)
    )
    for position, notebook in enumerate(notebooks):
        notebook.metadata.pop("widgets", None)  # a widget's saved state would load its renderer from the network
        fold_solutions(notebook)
        links = navigation(pages, position)
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(links))
        notebook.cells.append(nbformat.v4.new_markdown_cell(links))
        body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": pages[position][1]}})
        body = REMOTE_SCRIPT.sub("", body)  # require.js from a CDN: no output here needs it, and the book stays offline
        (out_dir / pages[position][0]).write_text(body, encoding="utf-8")
    index = out_dir / "index.html"
    index.write_text(contents_page(pages, run_dir), encoding="utf-8")
    return index


def contents_page(pages: Sequence[tuple[str, str]], run_dir: Path) -> str:
    """index.html: the book's title, where its pages come from, and one link per notebook."""
    summary = run_dir / "summary.json"
    ran = ""
    if summary.is_file():
        runs = json.loads(summary.read_text(encoding="utf-8"))
        ran = f"<p>Rendered from the run in <code>{html.escape(str(run_dir))}</code>: {len(runs)} notebooks executed by <code>workbook run</code>.</p>"
    items = "\n".join(f'<li><a href="{name}">{html.escape(title)}</a></li>' for name, title in pages)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>The Embedding Fine-Tuning Workbook</title>
<style>body {{ font-family: sans-serif; max-width: 50rem; margin: 2rem auto; line-height: 1.5; padding: 0 1rem; }}</style>
</head><body>
<h1>The Embedding Fine-Tuning Workbook</h1>
<p>Fine-tuning text-embedding models for domain-specific retrieval, with real data and real models, on a laptop CPU.
Each chapter is one notebook as it ran: its code, tables and figures. The exercises' solutions are folded.</p>
{ran}
<h2>Contents</h2>
<ol>
{items}
</ol>
</body></html>
"""

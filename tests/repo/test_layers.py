"""The `helpers` package in layers, checked from its source (an import-linter-style contract, with `ast`):

- bottom: where things are and how they are stored (`paths`, `storage`) and small utilities with no domain
  knowledge (`environment`, `intervals`, `outputs`, `progress`);
- middle: the domain modules (data, models, training, evaluation, indexing, serving, merging, decision, ...);
- top: the runner (`workbook`: presets, prerequisite runs, papermill) and the `workbook` command (`cli`).

A module imports only from its own layer or below, the package has no import cycle (lazy imports inside
functions count), and no module imports another module's private (`_name`) names."""

import ast
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parents[2] / "helpers"
LAYERS = {
    "bottom": {"paths", "storage", "environment", "intervals", "outputs", "progress"},
    "middle": {
        "data",
        "sources",
        "training_sets",
        "committed_runs",
        "models",
        "training",
        "evaluation",
        "indexing",
        "serving",
        "merging",
        "decision",
        "reranking",
        "parameters",
        "exercises",
        "results",
        "result_lines",
        "distributed",
        "ray_indexing",
        "decision_form",
        "decision_inputs",
        "generation",
        "task_suite",
        "vector_search",
    },
    "top": {"workbook", "cli", "book"},
}
RANK = {module: rank for rank, layer in enumerate(LAYERS.values()) for module in layer}


def package_imports(module: str, helpers: Path = HELPERS) -> list[tuple[str, list[str], int]]:
    """(imported helpers module, names imported, line) for every import of a helpers module in `module`, at any depth."""
    found = []
    for node in ast.walk(ast.parse((helpers / f"{module}.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.append((node.module.split(".")[0], [alias.name for alias in node.names], node.lineno))
            elif node.level == 0 and (node.module or "").startswith("helpers."):
                found.append((node.module.split(".")[1], [alias.name for alias in node.names], node.lineno))
            elif node.level == 1 and not node.module:
                found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (alias.name.split(".")[1], [], node.lineno) for alias in node.names if alias.name.startswith("helpers.")
            ]
    return found


MODULES = sorted(path.stem for path in HELPERS.glob("*.py") if path.stem != "__init__")


def test_every_module_has_a_layer():
    assert set(MODULES) == set(RANK), (
        f"modules without a layer: {sorted(set(MODULES) - set(RANK))}; gone: {sorted(set(RANK) - set(MODULES))}"
    )


def layer_violations(module: str, helpers: Path = HELPERS) -> list[str]:
    """What breaks the contract in `module`: an import from a layer above it, or of another module's private name."""
    problems = []
    for imported, names, line in package_imports(module, helpers):
        if RANK[imported] > RANK[module]:
            problems.append(
                f"helpers/{module}.py:{line} imports helpers.{imported}, a layer above it: move what it needs down, "
                "or the caller up"
            )
        if private := [name for name in names if name.startswith("_")]:
            problems.append(
                f"helpers/{module}.py:{line} imports {private} from helpers.{imported}: make it public or move it"
            )
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_down_the_layers_and_name_no_private_names(module):
    assert not layer_violations(module), "\n".join(layer_violations(module))


def test_the_package_has_no_import_cycle():
    graph = {
        module: {imported for imported, _, _ in package_imports(module) if imported != module} for module in MODULES
    }
    visiting, done = set(), set()

    def visit(module, path):
        if module in done:
            return
        assert module not in visiting, f"import cycle: {' -> '.join([*path, module])}"
        visiting.add(module)
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        visiting.discard(module)
        done.add(module)

    for module in MODULES:
        visit(module, [])


def test_the_contract_catches_an_upward_import_and_a_private_name(tmp_path):
    """The check itself can fail: a bottom module that imports the runner, or a private name, is reported."""
    (tmp_path / "storage.py").write_text(
        "from .workbook import run_notebook\nfrom .paths import _hidden\n", encoding="utf-8"
    )
    problems = layer_violations("storage", tmp_path)
    assert len(problems) == 2 and "a layer above it" in problems[0] and "['_hidden']" in problems[1]


# A module a maintainer can hold in mind: at most 350 lines (as `ruff format` lays them out), one job each. A module
# above the limit is listed with its one job and a ceiling it may not pass; a module that grows past the limit has
# to be split, or listed here with a reason a reviewer can check.
MAX_MODULE_LINES = 350
ONE_JOB_ABOVE_THE_LIMIT = {"data": (360, "the retrieval data set: its type, its checks, its BEIR files and its splits")}


@pytest.mark.parametrize("module", MODULES)
def test_a_module_stays_small_enough_for_one_job(module):
    lines = len((HELPERS / f"{module}.py").read_text(encoding="utf-8").splitlines())
    ceiling, _ = ONE_JOB_ABOVE_THE_LIMIT.get(module, (MAX_MODULE_LINES, ""))
    assert lines <= ceiling, f"helpers/{module}.py has {lines} lines (at most {ceiling}): split it by job"

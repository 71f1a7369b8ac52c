"""Exercises: the solutions live in the notebooks; learners get copies without them.

An exercise is a function the learner writes. Its solution sits between nbgrader's markers
`### BEGIN SOLUTION` and `### END SOLUTION` (the convention most course tools and graders already read, and
plain comments to everyone else); the function's docstring starts with `Exercise NN.M:`. The next cell checks
it inside `with exercise("NN.M", output_dir):`, which records passed, not done or failed (with the check's
message) in `output_dir/exercises.json` and never stops the notebook: an unfinished exercise leaves the rest
of the lesson running. A learner's copy has each solution replaced by `raise NotImplementedError(...)`, which
the check reports as "not done".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat

from .storage import write_atomically

SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[ \t]*\n?", re.M | re.S)
EXERCISE_NAME = re.compile(r"Exercise (\d\d\.\d+):")
CHECKED = re.compile(r"""with exercise\(["'](\d\d\.\d+)["']""")


@contextmanager
def exercise(name: str, output_dir: str | Path) -> Iterator[None]:
    """Run an exercise's checks: an assertion that fails is "failed" with its message; a function the learner
    has not written yet (NotImplementedError) is "not done"; anything else raised is "failed" with its type."""
    try:
        yield
    except NotImplementedError:
        status, message = "not done", "write the function above, then run this cell again"
    except AssertionError as failure:
        status, message = "failed", str(failure) or "a check failed"
    except Exception as error:  # the learner's code raised: report it, and keep the lesson running
        status, message = "failed", f"your code raised {type(error).__name__}: {error}"
    else:
        status, message = "passed", ""
    path = Path(output_dir) / "exercises.json"
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    results[name] = {"status": status, "message": message}
    write_atomically(path, json.dumps(results, indent=2, sort_keys=True))
    print(f"Exercise {name}: {status}" + (f": {message}" if message else ""))


def learner_copy(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook with every solution replaced by `raise NotImplementedError("Exercise NN.M: ...")` and no
    outputs; everything else identical."""
    copy = nbformat.from_dict(json.loads(json.dumps(notebook)))
    for cell in copy.cells:
        if cell.cell_type != "code" or "### BEGIN SOLUTION" not in cell.source:
            continue
        names = EXERCISE_NAME.findall(cell.source)
        if len(names) != 1:
            raise ValueError(f"a solution cell must name exactly one exercise (`Exercise NN.M:`), found {names}")
        stub = f'raise NotImplementedError("Exercise {names[0]}: your code here")\n'
        cell.source = SOLUTION.sub(lambda found: found.group(1) + stub, cell.source).rstrip("\n")
        cell.outputs, cell.execution_count = [], None
    return copy


def write_learner_copies(notebooks: list[Path], out_dir: Path) -> list[Path]:
    """`learner_copy` of each notebook into `out_dir` (same file names); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = out_dir / path.name
        nbformat.write(learner_copy(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def checked_exercises(path: Path) -> list[str]:
    """The exercises a notebook checks, in order (from its `with exercise(...)` cells)."""
    notebook = nbformat.read(path, as_version=4)
    return [name for cell in notebook.cells if cell.cell_type == "code" for name in CHECKED.findall(cell.source)]

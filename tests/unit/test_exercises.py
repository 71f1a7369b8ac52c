"""The learners' copies: generated deterministically, with every solution replaced and nothing else changed.
(That the solutions pass, a blank copy reports "not done" and a wrong answer "failed" is tested on the smoke
run, in test_notebooks.py.)"""

import nbformat
import pytest

from helpers.exercises import checked_exercises, exercise, learner_copy, write_learner_copies
from helpers.workbook import list_notebooks


def test_learner_copies_differ_from_the_notebooks_only_in_their_solutions(tmp_path):
    first = write_learner_copies(list_notebooks(), tmp_path / "a")
    second = write_learner_copies(list_notebooks(), tmp_path / "b")
    for copy, again, original in zip(first, second, list_notebooks(), strict=True):
        assert copy.read_bytes() == again.read_bytes(), f"{copy.name}: two generations differ"
        mine, theirs = nbformat.read(copy, as_version=4), nbformat.read(original, as_version=4)
        stubs = 0
        for cell, source in zip(mine.cells, theirs.cells, strict=True):
            if "### BEGIN SOLUTION" in source.source:
                stubs += 1
                assert "BEGIN SOLUTION" not in cell.source and 'raise NotImplementedError("Exercise' in cell.source
                assert (
                    cell.source.split("    raise NotImplementedError")[0]
                    == source.source.split("    ### BEGIN SOLUTION")[0]
                )
            else:
                assert cell.source == source.source
        assert stubs == len(checked_exercises(original)) >= 2, copy.name


def test_a_solution_cell_must_name_one_exercise():
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")]
    )
    with pytest.raises(ValueError, match="exactly one exercise"):
        learner_copy(notebook)


@pytest.mark.parametrize(
    "body, status",
    [
        ("assert 1 + 1 == 2", "passed"),
        ("assert False, 'off by one'", "failed"),
        ("raise NotImplementedError", "not done"),
        ("{}['x']", "failed"),
    ],
)
def test_the_check_records_what_happened_and_never_raises(body, status, tmp_path, capsys):
    with exercise("09.1", tmp_path):
        exec(body)
    assert f"Exercise 09.1: {status}" in capsys.readouterr().out
    assert (tmp_path / "exercises.json").read_text().count(status) == 1

"""Bad input and faults that need a notebook to run (papermill): a bad value stops the notebook itself, and
notebook 04 run alone prepares its data at the smoke scale."""

import json
import os
import subprocess
import sys

import pytest

from helpers import workbook as W

PAPERMILL = [sys.executable, "-m", "papermill"]


# papermill on its own: the notebook's check cell converts -p's text and stops at a bad value, before its imports
@pytest.mark.notebooks
@pytest.mark.parametrize(
    "notebook, name, value, expected",
    [
        ("04_training", "epochs", "two", "epochs='two' must be a number > 0"),
        (
            "14_batch_size_and_precision",
            "sweep_batch_sizes",
            "[16, 1]",
            "sweep_batch_sizes='[16, 1]' must be a list, each item an integer ≥ 2",
        ),
        ("03_data_preparation", "corpus_size", "-5", "corpus_size=-5 must be one of: an integer ≥ 10, None"),
    ],
)
def test_papermill_alone_rejects_a_bad_value_in_the_notebook(notebook, name, value, expected, tmp_path):
    completed = subprocess.run(
        [
            *PAPERMILL,
            str(W.NOTEBOOK_DIR / f"{notebook}.ipynb"),
            str(tmp_path / "out.ipynb"),
            "-p",
            name,
            value,
            "-p",
            "output_dir",
            str(tmp_path / "out"),
            "-p",
            "work_dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        cwd=W.NOTEBOOK_DIR,
        timeout=300,
    )
    assert completed.returncode == 1
    assert f"ParameterError: {notebook}: {expected}" in completed.stderr
    assert not (tmp_path / "work").exists(), "the notebook did work before checking its parameters"


@pytest.mark.notebooks
def test_notebook_04_alone_with_the_smoke_values_prepares_its_data_at_that_scale(tmp_path):
    """The case a learner meets: notebook 04 through papermill with the smoke preset's values, on an empty
    work_dir. Notebook 03 must run at the smoke preset's sizes (not its 20,000-document defaults), and 04 finish."""
    smoke = W.load_preset("smoke")["04_training"]
    arguments = [argument for name, value in smoke.items() for argument in ("-p", name, json.dumps(value))]
    completed = subprocess.run(
        [
            *PAPERMILL,
            str(W.NOTEBOOK_DIR / "04_training.ipynb"),
            str(tmp_path / "04.ipynb"),
            *arguments,
            "-p",
            "output_dir",
            str(tmp_path / "out"),
            "-p",
            "work_dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        cwd=W.NOTEBOOK_DIR,
        timeout=900,
        env={**os.environ, W.PRESET_ENVIRONMENT: ""},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    prepared = json.loads((W.prepared_dir(tmp_path / "work", "icd10cm") / "dataset.json").read_text())
    assert prepared["parameters"]["corpus_size"] == W.load_preset("smoke")["03_data_preparation"]["corpus_size"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["train_examples"] == smoke["max_train_examples"]

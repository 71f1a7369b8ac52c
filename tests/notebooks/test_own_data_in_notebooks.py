"""A learner's own data through notebooks 03 and 04 (papermill): mined negatives, curated ones, a BEIR folder,
and a file in another encoding stopped with its name and line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import workbook as W
from helpers.data import load_beir, save_beir
from helpers.sources import build_dataset, validate_pair_rows

from own_data_rows import (
    LONG_WORDS,
    NON_ASCII,
    own_rows,
    write_csv,
    write_jsonl,
)  # tests/ is on the path: conftest.py's folder


def run_papermill(notebook: str, out: Path, parameters: dict) -> subprocess.CompletedProcess:
    arguments = [argument for name, value in parameters.items() for argument in ("-p", name, str(value))]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(W.NOTEBOOK_DIR / f"{notebook}.ipynb"),
            str(out / f"{notebook}.ipynb"),
            *arguments,
            "-p",
            "output_dir",
            str(out / notebook),
            "-p",
            "work_dir",
            str(out / "work"),
        ],
        capture_output=True,
        text=True,
        cwd=W.NOTEBOOK_DIR,
        timeout=900,
    )


def prepare(dataset: Path | str, out: Path) -> dict:
    completed = run_papermill(
        "03_data_preparation", out, {"dataset": dataset, "corpus_size": "None", "hardness_sample": 100}
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((out / "03_data_preparation" / "metrics.json").read_text())


@pytest.mark.notebooks
def test_pairs_without_negatives_get_mined_ones_and_train_in_notebook_04(tmp_path):
    rows = own_rows(score=True)
    metrics = prepare(write_jsonl(tmp_path / "own pairs.jsonl", rows), tmp_path)
    assert metrics["curated_triplets"] == 0 and metrics["mined_triplets"] > 0
    assert set(metrics["hardness_median"]) == {"mined"}  # the plot and table hold the one kind there is
    assert metrics["texts_truncated"] >= sum(len(row["positive"].split()) > LONG_WORDS for row in rows)
    prepared = load_beir(W.prepared_dir(tmp_path / "work", str(tmp_path / "own pairs.jsonl")))
    assert sum(NON_ASCII in text for text in prepared.queries.values()) == sum(
        NON_ASCII in row["anchor"] for row in rows
    )
    completed = run_papermill(
        "04_training",
        tmp_path,
        {
            "dataset": tmp_path / "own pairs.jsonl",
            "max_train_examples": 48,
            "batch_size": 16,
            "epochs": 1,
            "eval_steps": 0,
            "save_steps": 0,
            "dev_corpus_size": 100,
        },
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    trained = json.loads((tmp_path / "04_training" / "metrics.json").read_text())
    assert trained["train_examples"] == 48 and trained["finetuned_dev_ndcg@10"] > 0
    assert W.incomplete(W.finetuned_dir(tmp_path / "work", "own pairs") / "final") == ""


@pytest.mark.notebooks
def test_a_csv_with_negatives_and_no_score_keeps_its_curated_negatives(tmp_path):
    rows = own_rows(negatives=True)
    metrics = prepare(write_csv(tmp_path / "with_negatives.csv", rows), tmp_path)
    assert metrics["curated_triplets"] > 0 and {"curated"} <= set(metrics["hardness_median"])


@pytest.mark.notebooks
def test_a_beir_folder_is_prepared_with_its_counts(tmp_path):
    pairs = validate_pair_rows(own_rows())
    data = build_dataset(str(write_jsonl(tmp_path / "source.jsonl", own_rows())))
    folder = save_beir(data, tmp_path / "my_beir")
    metrics = prepare(folder, tmp_path)
    queries = sum(metrics[f"{split}_queries"] for split in data.qrels)
    assert (metrics["corpus"], queries) == (len(data.corpus), len(data.queries)) == (len(pairs), len(pairs))


@pytest.mark.notebooks
def test_a_file_in_another_encoding_stops_notebook_03_with_its_name_and_line(tmp_path):
    rows = [row for row in own_rows(60) if NON_ASCII not in row["anchor"]]  # what Windows-1252 can write
    rows[7]["anchor"] = "névralgie intercostale"
    path = write_jsonl(tmp_path / "latin1.jsonl", rows, "cp1252")
    completed = run_papermill("03_data_preparation", tmp_path, {"dataset": path})
    assert completed.returncode == 1
    assert f"DataValidationError: {path} is not UTF-8: line 8 holds the byte" in completed.stderr
    assert not W.prepared_dir(tmp_path / "work", str(path)).exists()

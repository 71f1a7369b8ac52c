"""Bad inputs and faults through the real entry points: papermill with -p, `workbook run` with -p and -f, and
processes killed while they write. For each: the exit status, a message that names the parameter or file,
and nothing half-written used afterwards."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import cli
from helpers import workbook as W
from helpers.parameters import ParameterError, check_values
from helpers.training import StopOnNonFiniteLoss, recipe

# (arguments of `workbook run`, words the error must contain); every one fails before a kernel starts
BAD_RUNS = {
    "wrong type": (["04", "-p", "epochs", "two"], "04_training: epochs='two' must be a number > 0"),
    "out of range": (["04", "-p", "epochs", "-1"], "04_training: epochs=-1 must be > 0"),
    "a batch without negatives": (["04", "-p", "batch_size", "1"], "batch_size=1 must be ≥ 2"),
    "unknown choice": (["04", "-p", "loss", "triplet"], "loss='triplet' must be one of: mnrl, cached_mnrl"),
    "None where a number is needed": (["04", "-p", "batch_size", "None"], "batch_size=None must be"),
    "a list item out of range": (
        ["14", "-p", "sweep_batch_sizes", "[16, 1]"],
        "sweep_batch_sizes=[16, 1] must be a list, each item",
    ),
    "a list given as a number": (["07", "-p", "curve_sizes", "100"], "curve_sizes=100 must be a list"),
    "not a boolean": (["04", "-p", "resume", "maybe"], "resume='maybe' must be true or false"),
    "unknown data set for 01": (["01", "-p", "domains", "[icd10cm, pubmed]"], "domains=['icd10cm', 'pubmed']"),
    "max_steps zero": (["04", "-p", "max_steps", "0"], "max_steps=0 must be one of: -1, an integer ≥ 1"),
    "warmup of the whole run": (["04", "-p", "warmup", "1.0"], "warmup=1.0 must be ≥ 0 and < 1"),
    "target above 1": (["07", "-p", "target_ndcg", "1.2"], "target_ndcg=1.2 must be > 0 and ≤ 1"),
    "top_k below the metrics' 10": (["05", "-p", "top_k", "5"], "top_k=5 must be ≥ 10"),
    "smoke with a bad explicit value": (["04", "--smoke", "-p", "batch_size", "0"], "batch_size=0 must be ≥ 2"),
    "unknown parameter": (["04", "-p", "epoch", "2"], "unknown parameter(s) epoch"),
}


@pytest.mark.parametrize("case", BAD_RUNS, ids=str)
def test_workbook_run_rejects_a_bad_value_before_any_work(case, tmp_path, capsys, monkeypatch):
    arguments, expected = BAD_RUNS[case]
    monkeypatch.setattr(cli, "run_notebook", lambda *a, **k: pytest.fail("a notebook started despite a bad value"))
    assert cli.main(["run", *arguments, "--out", str(tmp_path)]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "content, expected",
    [
        ("epochs: 2\nbatch_size: [16\n", "is not valid YAML at line 3, column 1"),
        ("- epochs\n- 2\n", "a parameters file must be a mapping"),
        ("04_training:\n  epochs: -2\n", "04_training: epochs=-2 must be > 0"),
    ],
    ids=["broken YAML", "a list, not a mapping", "a bad value in a notebook's section"],
)
def test_workbook_run_names_the_parameters_file(content, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "run_notebook", lambda *a, **k: pytest.fail("a notebook started despite a bad file"))
    params = write(tmp_path / "params.yaml", content)
    assert cli.main(["run", "04", "-f", str(params), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert expected in error and ("params.yaml" in error or "04_training" in error)
    assert cli.main(["run", "04", "-f", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: No such file or directory" in capsys.readouterr().err


def test_explicit_settings_win_over_the_smoke_preset(tmp_path, monkeypatch):
    ran = {}

    def fake_run(path, out_dir, parameters, work_dir, cell_timeout=None):
        ran[path.stem] = dict(parameters)
        return W.NotebookRun(path.stem, "ok", 0.0, "", dict(parameters))

    monkeypatch.setattr(cli, "run_notebook", fake_run)
    assert (
        cli.main(
            ["run", "04", "--smoke", "-p", "batch_size", "32", "-p", "learning_rate", "1e-4", "--out", str(tmp_path)]
        )
        == 0
    )
    assert ran["04_training"]["batch_size"] == 32 and ran["04_training"]["learning_rate"] == 1e-4
    assert ran["04_training"]["epochs"] == W.load_preset("smoke")["04_training"]["epochs"]  # the preset still applies


def test_recipe_changes_are_checked_against_notebook_04s_declarations():
    with pytest.raises(ParameterError, match="04_training: epochs=0 must be > 0"):
        recipe(epochs=0)
    assert recipe(batch_size="32")["batch_size"] == 32


def test_a_learning_rate_far_outside_the_usual_range_warns():
    with pytest.warns(UserWarning, match="learning_rate=5.0 is far outside the usual"):
        assert check_values("04_training", {"learning_rate": 5}) == {"learning_rate": 5.0}


def test_papermill_text_is_converted_like_the_command_line():
    assert check_values(
        "04_training",
        {"max_steps": "5", "precision": "None", "learning_rate": "1e-4", "resume": "true"},
    ) == {"max_steps": 5, "precision": None, "learning_rate": 1e-4, "resume": True}
    assert check_values("14_batch_size_and_precision", {"sweep_batch_sizes": "[16, 32]"}) == {
        "sweep_batch_sizes": [16, 32]
    }


WRITER = """
import sys, time
from pathlib import Path
from helpers import workbook as W
final, stage = Path(sys.argv[1]), sys.argv[2]
staging = W.begin_output(final, "the writer of a test")
(staging / "corpus.jsonl").write_text("x" * 1000)
print("staged", flush=True)
if stage == "publish":
    W.publish_output(staging, {"version": 2})
    print("published", flush=True)
time.sleep(60)
"""


def start_writer(final: Path, stage: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(final), stage], stdout=subprocess.PIPE, text=True, cwd=W.PROJECT_ROOT
    )
    assert process.stdout.readline().strip() == "staged"
    if stage == "publish":
        assert process.stdout.readline().strip() == "published"
    return process


def published(folder: Path, version: int) -> Path:
    staging = W.begin_output(folder, "a test")
    (staging / "corpus.jsonl").write_text("complete")
    return W.publish_output(staging, {"version": version})


def test_a_run_killed_while_writing_leaves_the_previous_version(tmp_path):
    final = published(tmp_path / "data" / "icd10cm", 1)
    writer = start_writer(final, "stage")
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert W.incomplete(final) == "" and (final / "corpus.jsonl").read_text() == "complete"  # version 1, whole
    assert json.loads((final / W.MANIFEST).read_text())["about"] == {"version": 1}
    published(final, 3)  # the lock died with the process: the next run writes, and clears the staging folder
    assert not final.with_name("icd10cm.partial").exists()


def test_a_folder_cut_short_or_without_its_manifest_is_not_trusted(tmp_path):
    final = published(tmp_path / "icd10cm", 1)
    with (final / "corpus.jsonl").open("r+") as handle:
        handle.truncate(3)
    assert W.incomplete(final) == "corpus.jsonl differs from manifest.json (cut short or edited)"
    (final / W.MANIFEST).unlink()
    assert "has no manifest.json" in W.incomplete(final)
    assert W.incomplete(tmp_path / "absent") == "does not exist"


def test_ensure_prepared_prepares_again_when_the_folder_is_incomplete(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        W, "_run_prerequisite", lambda stem, work, params, folder, problem, scale: calls.append(problem)
    )
    final = published(W.prepared_dir(tmp_path, "icd10cm"), 1)
    W.ensure_prepared("icd10cm", tmp_path)
    assert calls == []
    (final / "corpus.jsonl").write_text("edited")
    W.ensure_prepared("icd10cm", tmp_path)
    assert calls == ["corpus.jsonl differs from manifest.json (cut short or edited)"]


def test_two_runs_writing_one_folder_fail_at_once_naming_the_other(tmp_path):
    final = tmp_path / "work" / "models" / "icd10cm" / "final"
    writer = start_writer(final, "stage")
    try:
        started = time.perf_counter()
        with pytest.raises(
            RuntimeError, match=rf"being written by another run \(process {writer.pid} on .*, the writer of a test"
        ):
            W.begin_output(final, "a second run")
        assert time.perf_counter() - started < 5, "the second run waited instead of failing at once"
        assert not final.exists()
    finally:
        writer.kill()
        writer.wait()


def test_a_notebook_killed_while_saving_its_metrics_leaves_none_or_the_whole_file(tmp_path):
    script = (
        "import sys\nfrom helpers import workbook as W\nprint('go', flush=True)\n"
        "while True:\n    W.write_metrics(sys.argv[1], {'rows': list(range(200_000))}, {})\n"
    )
    for delay in (0.05, 0.3, 0.6):
        writer = subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=W.PROJECT_ROOT
        )
        writer.stdout.readline()
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if (tmp_path / "metrics.json").exists():
            assert len(json.loads((tmp_path / "metrics.json").read_text())["rows"]) == 200_000


def test_a_stale_metrics_file_is_removed_before_a_notebook_runs(tmp_path):
    notebook = write(
        tmp_path / "99_fails.ipynb",
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "metadata": {"tags": ["parameters"]},
                        "source": "output_dir = ''  # [str] x",
                        "outputs": [],
                        "execution_count": None,
                        "id": "a",
                    },
                    {
                        "cell_type": "code",
                        "metadata": {},
                        "source": "raise KeyError('step')",
                        "outputs": [],
                        "execution_count": None,
                        "id": "b",
                    },
                ],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        ),
    )
    old = W.write_metrics(tmp_path / "runs" / "99_fails", {"ndcg@10": 0.9}, {})
    result = W.run_notebook(notebook, tmp_path / "runs", {}, tmp_path / "work")
    assert result.status == "failed" and "KeyError" in result.error
    assert result.metrics == {} and not old.exists()


def test_a_nan_loss_stops_training_with_its_step():
    from types import SimpleNamespace

    callback = StopOnNonFiniteLoss()
    args, state = SimpleNamespace(learning_rate=5.0), SimpleNamespace(global_step=30)
    callback.on_log(args, state, None, logs={"loss": 0.7})
    with pytest.raises(
        FloatingPointError, match="loss became nan by step 30: the learning rate \\(5\\) is likely too high"
    ):
        callback.on_log(args, state, None, logs={"loss": float("nan")})


def test_a_prerequisite_runs_with_the_preset_the_caller_runs_with(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        W, "_run_prerequisite", lambda stem, work, params, folder, problem, scale: calls.append((params, scale))
    )
    monkeypatch.delenv(W.PRESET_ENVIRONMENT, raising=False)
    smoke = W.load_preset("smoke")
    caller = {**W.declared_defaults("04_training"), **smoke["04_training"]}  # the smoke values, given by hand
    W.ensure_prepared("icd10cm", tmp_path, "all-MiniLM-L6-v2", "04_training", caller)
    assert calls[-1][0] == {**smoke["03_data_preparation"], "dataset": "icd10cm", "model": "all-MiniLM-L6-v2"}
    assert "the smoke preset's values" in calls[-1][1]
    W.ensure_finetuned(
        "icd10cm",
        tmp_path,
        "all-MiniLM-L6-v2",
        "05_evaluation",
        {**W.declared_defaults("05_evaluation"), **smoke["05_evaluation"]},
    )
    assert calls[-1][0] == {
        **smoke["04_training"],
        "dataset": "icd10cm",
        "model": "all-MiniLM-L6-v2",
    }
    own = {**W.declared_defaults("04_training"), "dev_corpus_size": 300}  # the user's own values: the defaults
    W.ensure_prepared("icd10cm", tmp_path, "all-MiniLM-L6-v2", "04_training", own)
    assert calls[-1] == ({"dataset": "icd10cm", "model": "all-MiniLM-L6-v2"}, "its defaults")
    monkeypatch.setenv(W.PRESET_ENVIRONMENT, "smoke")  # what `workbook run --smoke` sets for its notebooks' kernels
    W.ensure_prepared("icd10cm", tmp_path, "all-MiniLM-L6-v2", "04_training", own)
    assert calls[-1][0]["corpus_size"] == smoke["03_data_preparation"]["corpus_size"]


def test_workbook_run_names_its_preset_for_the_kernels_and_restores_the_environment(tmp_path, monkeypatch):
    seen = []
    monkeypatch.delenv(W.PRESET_ENVIRONMENT, raising=False)
    monkeypatch.setattr(
        cli,
        "run_notebook",
        lambda *a, **k: (
            seen.append(os.environ.get(W.PRESET_ENVIRONMENT)) or W.NotebookRun("04_training", "ok", 0.0, "", {})
        ),
    )
    assert cli.main(["run", "04", "--smoke", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["run", "04", "--out", str(tmp_path / "b")]) == 0
    assert seen == ["smoke", None] and W.PRESET_ENVIRONMENT not in os.environ


def test_a_dev_corpus_too_small_names_the_notebooks_own_parameter():
    from helpers.data import DataValidationError, RetrievalData
    from helpers.training import dev_evaluator

    corpus = {f"d{i}": f"document {i}" for i in range(30)}
    data = RetrievalData(
        "toy", corpus, {f"q{i}": f"query {i}" for i in range(12)}, {"dev": {f"q{i}": {f"d{i}": 1} for i in range(12)}}
    )
    with pytest.raises(
        DataValidationError, match=r"^dev_corpus_size=10 is smaller than the 12 documents .* raise dev_corpus_size"
    ):
        dev_evaluator(data, 10, 42)


@pytest.mark.parametrize(
    "notebook, name",
    [
        ("01_why_finetune", "training_seeds"),
        ("14_batch_size_and_precision", "sweep_seeds"),
        ("07_decision", "curve_seeds"),
        ("10_smaller_indexes", "matryoshka_seeds"),
        ("13_synthetic_pairs", "training_seeds"),
        ("15_scaling_out", "training_seeds"),
    ],
)
def test_seed_lists_must_hold_distinct_seeds(notebook, name):
    assert check_values(notebook, {name: "[42, 1, 2]"}) == {name: [42, 1, 2]}
    for wrong in ("[]", "[42, 42]"):  # no run at all; the same run twice, whose spread would pass for a seed's
        with pytest.raises(ParameterError, match=f"{name}=.* must hold one or more distinct seeds"):
            check_values(notebook, {name: wrong})

"""Progress bars: live where someone watches, absent from the copies `workbook run` executes."""

import os

import pytest
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from helpers import progress


def test_a_batch_run_sets_the_variables_for_its_kernels_and_restores_them(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "0")
    monkeypatch.delenv(progress.BATCH_RUN_ENVIRONMENT, raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    assert progress.live_progress()
    with progress.batch_run():
        assert not progress.live_progress()
        assert os.environ["TQDM_DISABLE"] == "1" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert progress.live_progress()
    assert os.environ["TQDM_DISABLE"] == "0" and "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ


@pytest.mark.parametrize("batch_run", [False, True])
def test_quiet_trainer_drops_the_log_printer_always_and_the_progress_bar_in_a_batch_run(
    batch_run, base_model, tmp_path, monkeypatch
):
    from datasets import Dataset

    monkeypatch.setenv(progress.BATCH_RUN_ENVIRONMENT, "1" if batch_run else "0")
    rows = Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"]})
    for disable_tqdm in (False, True):  # True: transformers prints every log line instead of a bar
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path), disable_tqdm=disable_tqdm, report_to="none", use_cpu=True
        )
        trainer = progress.quiet_trainer(SentenceTransformerTrainer(model=base_model, args=args, train_dataset=rows))
        kinds = [type(callback) for callback in trainer.callback_handler.callbacks]
        assert PrinterCallback not in kinds
        assert any(issubclass(kind, ProgressCallback) for kind in kinds) == (not batch_run and not disable_tqdm)
    without_table = progress.quiet_trainer(
        SentenceTransformerTrainer(model=base_model, args=args, train_dataset=rows), live_table=False
    )
    assert not any(
        issubclass(type(callback), (ProgressCallback, PrinterCallback))
        for callback in without_table.callback_handler.callbacks
    )


def test_widget_bars_are_silenced_in_a_batch_run_only(monkeypatch):
    import tqdm.notebook

    monkeypatch.setattr(tqdm.notebook.tqdm, "__init__", tqdm.notebook.tqdm.__init__)  # restored after the test
    monkeypatch.setenv(progress.BATCH_RUN_ENVIRONMENT, "0")
    progress.silence_widget_bars_in_batch_runs()
    assert not getattr(tqdm.notebook.tqdm.__init__, "silenced_by_workbook", False)
    monkeypatch.setenv(progress.BATCH_RUN_ENVIRONMENT, "1")
    progress.silence_widget_bars_in_batch_runs()
    progress.silence_widget_bars_in_batch_runs()  # twice: wrapped once
    assert tqdm.notebook.tqdm.__init__.silenced_by_workbook
    bar = tqdm.notebook.tqdm(range(3), disable=False)
    assert bar.disable and list(bar) == [0, 1, 2]


def test_a_temporary_environment_sets_removes_and_restores(monkeypatch):
    from helpers.environment import temporary_environment

    monkeypatch.setenv("WORKBOOK_TEST_KEPT", "before")
    monkeypatch.delenv("WORKBOOK_TEST_NEW", raising=False)
    with temporary_environment({"WORKBOOK_TEST_KEPT": None, "WORKBOOK_TEST_NEW": "set"}):
        assert "WORKBOOK_TEST_KEPT" not in os.environ and os.environ["WORKBOOK_TEST_NEW"] == "set"
    assert os.environ["WORKBOOK_TEST_KEPT"] == "before" and "WORKBOOK_TEST_NEW" not in os.environ


def test_a_bar_is_shown_as_asked_or_where_someone_watches(monkeypatch):
    monkeypatch.setenv(progress.BATCH_RUN_ENVIRONMENT, "1")
    assert progress.bar_shown(True) and not progress.bar_shown(False) and not progress.bar_shown(None)
    monkeypatch.setenv(progress.BATCH_RUN_ENVIRONMENT, "0")
    assert progress.bar_shown(None)


@pytest.mark.parametrize("set_by_user", [None, "64"])
def test_importing_the_helpers_caps_onednns_kernel_cache_unless_the_user_set_it(set_by_user):
    import subprocess
    import sys

    import helpers

    environment = {key: value for key, value in os.environ.items() if key != helpers.ONEDNN_CACHE_VARIABLE}
    if set_by_user:
        environment[helpers.ONEDNN_CACHE_VARIABLE] = set_by_user
    shown = subprocess.run(
        [sys.executable, "-c", f"import os, helpers; print(os.environ[{helpers.ONEDNN_CACHE_VARIABLE!r}])"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shown == (set_by_user or "16")


def test_the_elapsed_line_counts_from_the_helpers_import():
    assert progress.elapsed_line(progress.STARTED + 95) == (
        "this notebook has run 1.6 minutes (95 s) since it imported the helpers"
    )

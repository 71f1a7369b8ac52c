"""Progress bars for the one who watches them: live in JupyterLab, absent from a copy executed by `workbook run`.

A notebook executed by papermill keeps every output it printed, so a progress bar is frozen in its first state
("Batches: 0%") forever. `workbook run` sets the variables of `batch_run_environment()` for the kernels it
starts: tqdm and Hugging Face's own bars read them, `live_progress()` tells the workbook's helpers, and
`quiet_trainer` takes the trainer's progress table off (kept in a live session: it is how you watch a run).
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from typing import Any

from .environment import temporary_environment

BATCH_RUN_ENVIRONMENT = "WORKBOOK_EXECUTED"
STARTED = time.monotonic()  # when this process first imported the helpers: in a notebook, the cell after its parameters


def elapsed_line(now: float | None = None) -> str:
    """How long this process has run since it imported the helpers: in a notebook, from the cell after its parameters
    to here (the kernel's start, a few seconds, not included). `workbook run` notebooks print it when they write metrics."""
    seconds = (time.monotonic() if now is None else now) - STARTED
    return f"this notebook has run {seconds / 60:.1f} minutes ({seconds:.0f} s) since it imported the helpers"


def batch_run_environment() -> dict[str, str]:
    """The variables `workbook run` sets for the kernels it starts: no one watches their progress bars."""
    return {BATCH_RUN_ENVIRONMENT: "1", "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def live_progress() -> bool:
    """True where someone may watch a progress bar (a live kernel, a terminal); False in a batch run."""
    return os.environ.get(BATCH_RUN_ENVIRONMENT) != "1"


def bar_shown(requested: bool | None) -> bool:
    """Whether to show a progress bar: as `requested`, or (None) where someone watches."""
    return live_progress() if requested is None else requested


def quiet_trainer(trainer: Any, live_table: bool = True) -> Any:
    """`trainer` without the callbacks that print every log line (transformers' `PrinterCallback`, used when
    `disable_tqdm` is set) and, in a batch run or without `live_table`, without its progress bar or notebook
    table; returns it."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils.notebook import NotebookProgressCallback

    trainer.remove_callback(PrinterCallback)
    if not live_table or not live_progress():
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(NotebookProgressCallback)
    return trainer


def batch_run() -> AbstractContextManager[None]:
    """Set `batch_run_environment()` for the kernels started inside (they inherit the environment), then restore
    the environment as it was. Set it after tqdm is imported here: this process's own bars stay."""
    return temporary_environment(batch_run_environment())


def silence_widget_bars_in_batch_runs() -> None:
    """In a batch run, switch off tqdm's notebook (widget) bars as well: they pass `disable` to tqdm themselves,
    so `TQDM_DISABLE` never reaches them, and libraries create them on their own (sentence-transformers' model
    card, for one). Called when the package is imported; does nothing where someone watches."""
    if live_progress():
        return
    import tqdm.notebook

    original = tqdm.notebook.tqdm.__init__
    if getattr(original, "silenced_by_workbook", False):
        return

    def silenced(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    silenced.silenced_by_workbook = True  # type: ignore[attr-defined]
    tqdm.notebook.tqdm.__init__ = silenced

"""Shared fixtures, each made once per test session: the packaged default model, and a smoke run of every
notebook (the notebook tests assert on its outputs; the browser tests reuse its work_dir).

The smoke run is the slowest part of the suite, and it keeps only about one of the two CPU cores of a laptop or
CI machine busy (kernel starts and imports are single-threaded). So when a selected test needs it, it starts in
a subprocess as soon as the session does, the tests that do not need it run meanwhile, and those that do run
last, waiting for it.
"""

import json
import os
import subprocess
import sys

import pytest

# The tests compute in fp32 on every machine (as the smoke run does), so that their figures do not depend on
# whether this CPU has bf16 in hardware; tests of the bf16 path ask for it explicitly.
os.environ.setdefault("WORKBOOK_PRECISION", "fp32")

SMOKE_RUN = "smoke_run"


def pytest_collection_modifyitems(items):
    """The tests that need the smoke run go last (a stable sort), so that the others overlap with it."""
    items.sort(key=lambda item: SMOKE_RUN in item.fixturenames)


@pytest.fixture(scope="session")
def base_model():
    from helpers.models import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session", autouse=True)
def smoke_run_in_background(request, tmp_path_factory):
    """`workbook run --smoke` into a fresh folder, started at once in a subprocess if a selected test needs it:
    (the folder, the process, its log file), or None."""
    if not any(SMOKE_RUN in item.fixturenames for item in request.session.items):
        yield None
        return
    out = tmp_path_factory.mktemp("smoke-run")
    log_path = out.parent / f"{out.name}.log"
    with open(log_path, "w") as log:
        # --out is relative to the working directory: a relative path must not depend on the notebooks' folder
        process = subprocess.Popen(
            [sys.executable, "-m", "helpers.cli", "run", "--smoke", "--out", out.name],
            cwd=out.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield out, process, log_path
    finally:
        if process.poll() is None:  # the session ended early (an interrupt, -x): don't leave the run behind
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def smoke_run(smoke_run_in_background):
    """The finished smoke run: (its folder, {notebook: its summary row})."""
    out, process, log_path = smoke_run_in_background
    status = process.wait()
    summary_path = out / "summary.json"
    assert summary_path.exists(), (
        f"workbook run --smoke wrote no summary (exit {status}):\n{log_path.read_text()[-4000:]}"
    )
    summary = json.loads(summary_path.read_text())
    assert status == 0, f"workbook run failed: {[(r['notebook'], r['error']) for r in summary if r['error']]}"
    return out, {run["notebook"]: run for run in summary}

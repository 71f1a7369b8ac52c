"""Shared fixtures, each made once per test session: the packaged default model, and a smoke run of every
notebook (the notebook tests assert on its outputs; the browser tests reuse its work_dir)."""

import json

import pytest

from helpers import cli


@pytest.fixture(scope="session")
def base_model():
    from helpers.models import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """`workbook run --smoke` into a fresh folder: (the folder, {notebook: its summary row})."""
    out = tmp_path_factory.mktemp("smoke-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(out.parent)  # a relative --out must not depend on the notebooks' folder
        status = cli.main(["run", "--smoke", "--out", out.name])
    summary = json.loads((out / "summary.json").read_text())
    assert status == 0, f"workbook run failed: {[(r['notebook'], r['error']) for r in summary if r['error']]}"
    return out, {run["notebook"]: run for run in summary}

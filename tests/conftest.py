"""Shared fixtures, each made once per test session: the packaged default model, and a smoke run of every
notebook (the notebook tests assert on its outputs; the browser tests reuse its work_dir)."""

import json
import subprocess
import sys

import pytest

from helpers import cli


@pytest.fixture(scope="session")
def base_model():
    from helpers.models import load_model

    return load_model(device="cpu")


# In a fresh virtual environment (CI's) ranx compiles its numba kernels at first use, about three minutes in
# all, and numba caches them on disk. Compiled once in a background process while the first notebooks load data
# and encode, they are off the smoke run's critical path; with a warm cache this takes seconds.
RANX_WARM_UP = """
from ranx import fuse
from helpers.evaluation import per_query_scores, significance, to_ranx
qrels = {"q1": {"d1": 1, "d2": 2}, "q2": {"d3": 1}}
a, b = {"q1": {"d1": 0.9, "d4": 0.5}, "q2": {"d4": 0.3, "d3": 0.2}}, {"q1": {"d2": 0.8, "d1": 0.4}, "q2": {"d3": 0.6}}
per_query_scores(qrels, a, ["ndcg@10", "recall@10", "mrr@10", "map@10"])
significance(qrels, {"a": a, "b": b})
fuse([to_ranx(qrels, a, "a")[1], to_ranx(qrels, b, "b")[1]], method="rrf", params={"k": 60})
"""


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """`workbook run --smoke` into a fresh folder: (the folder, {notebook: its summary row})."""
    out = tmp_path_factory.mktemp("smoke-run")
    warm_up = subprocess.Popen([sys.executable, "-c", RANX_WARM_UP], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(out.parent)  # a relative --out must not depend on the notebooks' folder
        status = cli.main(["run", "--smoke", "--out", out.name])
    warm_up.wait()
    summary = json.loads((out / "summary.json").read_text())
    assert status == 0, f"workbook run failed: {[(r['notebook'], r['error']) for r in summary if r['error']]}"
    return out, {run["notebook"]: run for run in summary}

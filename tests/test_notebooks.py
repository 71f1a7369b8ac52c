"""Every notebook runs through papermill with smoke parameters; the tests assert on what each one wrote,
then nbval re-executes the executed copies and compares the cells marked NBVAL_CHECK_OUTPUT (lax mode):
same parameters must give the same numbers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli
from helpers import decision as Dn
from helpers.workbook import list_notebooks

pytestmark = pytest.mark.notebooks
SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, monkeypatch_module):
    out = tmp_path_factory.mktemp("smoke-run")
    monkeypatch_module.chdir(out.parent)  # a relative --out must not depend on the notebooks' folder
    status = cli.main(["run", "--smoke", "--out", out.name])
    summary = json.loads((out / "summary.json").read_text())
    assert status == 0, f"workbook run failed: {[(r['notebook'], r['error']) for r in summary if r['error']]}"
    return out, {run["notebook"]: run for run in summary}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def metrics_of(smoke_run, notebook):
    out, summary = smoke_run
    assert summary[notebook]["status"] == "ok"
    return json.loads((out / notebook / "metrics.json").read_text())


def test_every_notebook_ran_and_wrote_metrics(smoke_run):
    out, summary = smoke_run
    assert set(summary) == {path.stem for path in list_notebooks()}
    assert (out / "summary.md").read_text().count("ok in") == len(summary)


def test_01_why_finetune_metrics(smoke_run):
    metrics = metrics_of(smoke_run, "01_why_finetune")
    assert set(metrics["measured"]) == {"icd10cm", "hpo", "zaragoza"}
    for row in metrics["measured"].values():
        assert 0 < row["base_ndcg@10"] <= 1 and 0 < row["finetuned_ndcg@10"] <= 1 and row["steps"] > 0
        assert row["relative_gain"] == pytest.approx(row["finetuned_ndcg@10"] / row["base_ndcg@10"] - 1)
        assert row["corpus"] <= 800 and row["test_queries"] > 0
    assert metrics["dedup_f1"]["pairs"] > 0 and 0 < metrics["dedup_f1"]["base"] <= 1
    assert (smoke_run[0] / "01_why_finetune" / "quoted_vs_measured.png").stat().st_size > 10_000


def test_02_encoder_vs_decoder_metrics(smoke_run):
    metrics = metrics_of(smoke_run, "02_encoder_vs_decoder")
    assert metrics["pooling_agreement_max_difference"] < 1e-5
    cosine = metrics["unrelated_cosine"]
    assert cosine["decoder + chat template / lasttoken"] > cosine["decoder / lasttoken"]  # the template's pitfall
    table = metrics["table"]
    assert table["encoder"]["parameters (M)"] == pytest.approx(22.7, abs=0.1)
    assert table["decoder"]["parameters (M)"] == pytest.approx(134.5, abs=0.1)
    assert table["encoder"]["encode speed (texts/s)"] > table["decoder"]["encode speed (texts/s)"] > 0
    assert metrics["decoder_pooling"] in {"cls", "mean", "max", "lasttoken"}
    assert len(metrics["ndcg@10_by_pooling"]) == 2 * 4 * 2


def test_06_decision_metrics(smoke_run):
    metrics = metrics_of(smoke_run, "06_decision")
    assert metrics["seed_example"]["recommendation"] == "fine-tune"
    assert metrics["recommendation"] in Dn.RECOMMENDATIONS and metrics["seed_recommendation"] in Dn.RECOMMENDATIONS
    assert metrics["docs_per_s"] > 0 and metrics["throughput_documents"] == 300
    assert set(metrics["ndcg@10"]) == {"BM25", "dense (base)", "dense (fine-tuned)", "hybrid (BM25 + base)", "hybrid (BM25 + fine-tuned)"}
    assert all(0 < value <= 1 for value in metrics["ndcg@10"].values())
    assert len(metrics["learning_curve"]) == 3
    assert metrics["decision"]["reindex_hours"] == pytest.approx(1_000_000 / metrics["docs_per_s"] / 3600)
    for figure in ("bm25_dense_hybrid.png", "learning_curve.png"):
        assert (smoke_run[0] / "06_decision" / figure).stat().st_size > 10_000


def test_03_data_preparation_metrics(smoke_run):
    metrics = metrics_of(smoke_run, "03_data_preparation")
    assert metrics["corpus"] == 1500
    assert all(metrics[f"{split}_queries"] > 0 for split in ("train", "dev", "test", "test_unseen"))
    assert metrics["curated_triplets"] > 0 and metrics["mined_triplets"] > 0
    assert metrics["curated_triplets"] + metrics["mined_triplets"] + metrics["pairs_without_negative"] >= metrics["train_queries"]
    prepared = smoke_run[0] / "work" / "data" / "icd10cm-smoke"
    assert {"corpus.jsonl", "queries.jsonl", "train_triplets.jsonl"} <= {p.name for p in prepared.iterdir()}
    assert (smoke_run[0] / "03_data_preparation" / "negative_hardness.png").stat().st_size > 10_000


def test_04_training_metrics(smoke_run):
    metrics = metrics_of(smoke_run, "04_training")
    assert metrics["steps"] == 6 and metrics["device"] == "cpu" and metrics["precision"] == "fp32"
    assert metrics["reload_max_difference"] < 1e-5
    assert 0 < metrics["base_dev_ndcg@10"] <= 1 and 0 < metrics["finetuned_dev_ndcg@10"] <= 1
    assert set(metrics["batch_size_sweep"]) == {"8", "16"}
    assert 0 <= metrics["padding_share"]["length-grouped"] < metrics["padding_share"]["random batches"] < 1
    assert Path(metrics["model_dir"], "model.safetensors").exists()


def test_05_evaluation_metrics(smoke_run):
    metrics = metrics_of(smoke_run, "05_evaluation")
    for suffix in ("", "_test_unseen"):
        base, tuned = metrics[f"base_ndcg@10{suffix}"], metrics[f"finetuned_ndcg@10{suffix}"]
        low, high = metrics[f"ci95_ndcg@10_diff{suffix}"]
        assert 0 < base <= 1 and 0 < tuned <= 1 and low <= tuned - base <= high
        assert metrics[f"relative_gain_ndcg@10{suffix}"] == pytest.approx(tuned / base - 1)
        assert 0 <= metrics[f"p_value_fisher{suffix}"] <= 1
    assert metrics["corpus_size"] == 1500 and metrics["test_queries"] > 0
    trec = (smoke_run[0] / "05_evaluation" / "finetuned.trec").read_text().splitlines()
    assert len({line.split()[0] for line in trec}) == metrics["test_queries"]


def test_executed_notebooks_pass_nbval(smoke_run):
    out, summary = smoke_run
    executed = [run["executed"] for run in summary.values()]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-sanitize-with", str(SANITIZE), *executed],
        capture_output=True, text=True, cwd=out,
    )
    assert completed.returncode == 0, completed.stdout[-4000:]


def test_07_reindexing_metrics(smoke_run):
    metrics = metrics_of(smoke_run, "07_reindexing")
    steps = metrics["steps"]
    assert steps["blue build"]["embedded"] == steps["green build"]["embedded"] == metrics["documents"] == 1500
    assert metrics["live_table"] == metrics["green_table"] != metrics["blue_table"]
    assert steps["resume after crash"]["skipped"] == metrics["crash_committed"] > 0
    assert steps["resume after crash"]["embedded"] + metrics["crash_committed"] == 1000
    update = steps["incremental update"]
    assert (update["embedded"], update["deleted"], update["skipped"]) == (6, 1, 1494)  # 5 edited + 1 new
    assert steps["no changes"]["embedded"] == 0 and metrics["documents_indexed"] == 1500
    assert metrics["docs_per_s"] == steps["green build"]["docs_per_s"] > 0

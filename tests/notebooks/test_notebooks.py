"""Every notebook runs through papermill with the smoke preset; the tests assert on what each one wrote, against
expectations where the figure is deterministic (counts, toy computations, the off-the-shelf model's scores on
fixed data) and against bounds that a wrong result would break otherwise. nbval then re-executes the executed
copies and compares the cells marked NBVAL_CHECK_OUTPUT: the same parameters must give the same numbers."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import cli, serving
from helpers.decision import RECOMMENDATIONS
from helpers.exercises import checked_exercises, write_learner_copies
from helpers.intervals import interval_verdict
from helpers.committed_runs import committed_default_run
from helpers.training import read_recipe_record, recipe, recipe_arguments
from helpers.workbook import incomplete, list_notebooks, load_preset, run_notebook

pytestmark = pytest.mark.notebooks
SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")
SMOKE = load_preset("smoke")


def metrics_of(smoke_run, notebook):
    out, summary = smoke_run
    assert summary[notebook]["status"] == "ok"
    return json.loads((out / notebook / "metrics.json").read_text())


def figure(smoke_run, notebook, name):
    return (smoke_run[0] / notebook / name).stat().st_size


def test_every_notebook_ran_and_wrote_metrics(smoke_run):
    out, summary = smoke_run
    assert set(summary) == {path.stem for path in list_notebooks()}
    assert (out / "summary.md").read_text().count("ok in") == len(summary)


FROZEN_PROGRESS_BAR = re.compile(r"\d+%\|[^|\n]*\| *\d+/\d+")  # tqdm's "  0%|          | 0/8 [00:00<?, ?it/s]"
# what an output shows where its rich form is not rendered, when it is an object's repr instead of its content
OBJECT_REPRS = re.compile(
    r"object at 0x|\b(?:Posix|Windows)Path\(|<pandas\.io\.formats\.style\.Styler|VBox\(|<IPython\.core\.display\.\w+ object>|\bNo log\b"
)


def output_texts(smoke_run):
    """(notebook, cell number, text) of every output of the smoke run's executed copies: printed text and plain-text forms."""
    out, _ = smoke_run
    for path in list_notebooks():
        for number, cell in enumerate(nbformat.read(out / path.stem / path.name, as_version=4).cells):
            for output in cell.get("outputs", []):
                yield path.stem, number, output.get("text", "") + output.get("data", {}).get("text/plain", "")


def test_the_executed_copies_hold_no_frozen_progress_bar(smoke_run):
    """A bar printed in a papermill run stays frozen in the executed copy: `workbook run` keeps them out."""
    for notebook, number, text in output_texts(smoke_run):
        bar = FROZEN_PROGRESS_BAR.search(text)
        assert bar is None, f"{notebook} cell {number} prints a progress bar: {bar.group(0)!r}"


def test_the_executed_copies_hold_no_object_repr(smoke_run):
    """Tables, markdown and forms read as their content in every view of an executed copy (helpers.outputs), and the
    trainer leaves no table of "No log" columns."""
    for notebook, number, text in output_texts(smoke_run):
        found = OBJECT_REPRS.search(text)
        assert found is None, f"{notebook} cell {number} shows {found.group(0)!r} instead of its content"


def test_01_why_finetune(smoke_run):
    metrics = metrics_of(smoke_run, "01_why_finetune")
    assert metrics["recipe"] == recipe(**SMOKE["01_why_finetune"]["recipe_changes"])
    assert set(metrics["measured"]) == {"icd10cm", "hpo", "zaragoza"} and metrics["brief_runs"] == ["hpo", "zaragoza"]
    for domain, row in metrics["measured"].items():
        assert row["corpus"] <= 400 and row["test_queries"] > 20, domain
        if domain not in metrics["brief_runs"]:  # measured off the shelf only
            assert "finetuned_ndcg@10" not in row, domain
            continue
        assert row["training_examples"] == 32 and row["steps"] == 2, domain
        low, high = row["ci95_diff"]
        assert low <= row["finetuned_ndcg@10"] - row["base_ndcg@10"] <= high, domain
    # the off-the-shelf model on fixed data: deterministic
    assert metrics["measured"]["icd10cm"]["base_ndcg@10"] == pytest.approx(0.8365, abs=2e-3)
    # ICD-10-CM's fine-tuned row: notebook 05 in the committed default run, read back as committed
    committed = committed_default_run()["05_evaluation"]
    assert metrics["full_recipe_committed"]["finetuned_ndcg@10"] == committed["finetuned_ndcg@10"]
    assert metrics["examples_domain"] == "hpo"
    assert (
        metrics["examples_fixed_at_rank_1"] + metrics["examples_broken_at_rank_1"]
        <= metrics["measured"]["hpo"]["test_queries"]
    )
    assert figure(smoke_run, "01_why_finetune", "quoted_vs_measured.png") > 10_000
    assert figure(smoke_run, "01_why_finetune", "scores_by_corpus_size.png") > 10_000


def test_02_encoder_vs_decoder(smoke_run):
    metrics = metrics_of(smoke_run, "02_encoder_vs_decoder")
    assert metrics["pooling_agreement_max_difference"] < 1e-5  # our pooling equals sentence-transformers'
    cosine = metrics["unrelated_cosine"]
    assert cosine["decoder + chat template / lasttoken"] > cosine["decoder / lasttoken"] + 0.1  # the template's pitfall
    table = metrics["table"]
    assert table["encoder"]["parameters (M)"] == pytest.approx(22.7, abs=0.1)
    assert table["decoder"]["parameters (M)"] == pytest.approx(134.5, abs=0.1)
    assert table["encoder"]["encode speed (texts/s)"] > table["decoder"]["encode speed (texts/s)"] > 0
    assert (metrics["dev_queries"], metrics["test_queries"]) == (20, 40)
    assert len(metrics["ndcg@10_by_pooling"]) == 2 * 4 * 2
    assert metrics["ndcg@10_by_pooling"]["encoder / mean / test"] == pytest.approx(
        table["encoder"]["test NDCG@10, off the shelf"]
    )
    low, high = metrics["encoder_minus_decoder_after_finetune"]["ci95"]
    assert low <= metrics["encoder_minus_decoder_after_finetune"]["mean"] <= high
    assert all(table[name]["fine-tuning steps"] == 2 for name in ("encoder", "decoder"))


def test_03_data_preparation(smoke_run):
    metrics = metrics_of(smoke_run, "03_data_preparation")
    expected = {
        "corpus": 1500,
        "train_queries": 202,
        "dev_queries": 13,
        "test_queries": 54,
        "test_unseen_queries": 31,
        "curated_triplets": 106,
        "texts_truncated": 0,
    }
    assert {key: metrics[key] for key in expected} == expected
    assert (
        metrics["curated_triplets"] + metrics["mined_triplets"] + metrics["pairs_without_negative"]
        == metrics["train_queries"]
    )
    assert metrics["mined_triplets"] > 50
    assert metrics["seed_columns_lengths"] == {
        "anchor": 3,
        "positive": 3,
        "negative": 2,
    }  # the source chapter's misalignment, shown
    for source in ("curated", "mined"):
        assert (
            metrics["hardness_median"][source]["query-negative"] < metrics["hardness_median"][source]["query-positive"]
        )
    prepared = smoke_run[0] / "work" / "data" / "icd10cm"
    assert {"corpus.jsonl", "queries.jsonl", "train_triplets.jsonl"} <= {p.name for p in prepared.iterdir()}
    assert figure(smoke_run, "03_data_preparation", "negative_hardness.png") > 10_000


def test_04_training(smoke_run):
    metrics = metrics_of(smoke_run, "04_training")
    assert abs(metrics["mnrl_loss_by_hand"] - metrics["mnrl_loss_library"]) < 1e-5
    assert metrics["mnrl_loss_by_hand"] == pytest.approx(0.1768, abs=1e-3)
    assert all(loss >= math.log(2) - 1e-6 for loss in metrics["duplicate_row_losses"])
    assert metrics["in_batch_negatives"] == 2 * 16 - 1
    assert metrics["steps"] == 6 and metrics["device"] == "cpu" and metrics["precision"] == "fp32"
    assert metrics["parameters"]["batch_size"] == 16 and metrics["parameters"]["learning_rate"] == 2e-4  # what ran
    manifest = json.loads((Path(metrics["model_dir"]) / "manifest.json").read_text())
    assert manifest["files"]["model.safetensors"]["bytes"] > 80e6 and manifest["about"]["steps"] == 6
    assert metrics["reload_max_difference"] < 1e-5
    curve = metrics["dev_curve"]
    assert curve["step"][0] == 0 and curve["step"][-1] == 6 and curve["ndcg@10"][-1] == metrics["finetuned_dev_ndcg@10"]
    assert 0 <= metrics["padding_share"]["length-grouped"] < metrics["padding_share"]["random batches"] < 1
    final = Path(metrics["model_dir"])
    assert (final / "model.safetensors").exists()
    assert json.loads((final / "training.json").read_text())["train_examples"] == 48


def test_04_builds_the_arguments_that_notebooks_01_and_07_train_with(smoke_run, tmp_path):
    """Notebook 04's cells and `helpers.training.recipe_arguments` must agree on every recipe argument."""
    metrics = metrics_of(smoke_run, "04_training")
    smoke = SMOKE["04_training"]
    settings = recipe(batch_size=smoke["batch_size"], epochs=smoke["epochs"])
    from helpers.models import load_model

    args = recipe_arguments(tmp_path, settings, "cpu", load_model(device="cpu").tokenizer)
    ours = {name: str(getattr(args, name)) for name in metrics["arguments"] if name != "batch_sampler"}
    assert ours == {name: value for name, value in metrics["arguments"].items() if name != "batch_sampler"}
    assert type(args.batch_sampler).__name__ == metrics["arguments"]["batch_sampler"]
    assert metrics["arguments"] == metrics["recipe_arguments"]  # the notebook's own table: built by hand = the helper's


def test_04_resumes_an_interrupted_run_from_its_last_checkpoint(smoke_run):
    out, _ = smoke_run
    notebook = next(path for path in list_notebooks() if path.stem == "04_training")
    shutil.copytree(out / "work", out / "resume-work")  # the other notebooks' model stays as the smoke run left it
    parameters = {**SMOKE["04_training"], "max_steps": 9, "resume": True, "eval_steps": 0}
    result = run_notebook(notebook, out / "resumed", parameters, out / "resume-work")
    assert result.status == "ok", result.error
    assert result.metrics["steps"] == 9  # continued from checkpoint-6 of the smoke run, not from step 0
    executed = Path(result.executed).read_text()
    assert "resumed from: " in executed and "checkpoint-6" in executed


def test_05_evaluation(smoke_run):
    metrics = metrics_of(smoke_run, "05_evaluation")
    by_hand = (1 / math.log2(3) + 1 / math.log2(6)) / (1 + 1 / math.log2(3)) / 2  # q1: ranks 2 and 5 of two; q2: none
    assert metrics["toy_ndcg@10_by_hand"] == pytest.approx(by_hand, abs=1e-12)
    assert abs(metrics["toy_ndcg@10_by_hand"] - metrics["toy_ndcg@10_trec_eval"]) < 1e-9
    assert abs(metrics["toy_ndcg@10_by_hand"] - metrics["toy_ndcg@10_sentence_transformers"]) < 1e-9
    assert metrics["seed_reads_ndcg@10"] == 0  # the source chapter's key does not exist
    assert metrics["base_ndcg@10"] == pytest.approx(
        0.8287, abs=2e-3
    )  # off the shelf on the smoke corpus: deterministic
    for suffix in ("", "_test_unseen"):
        base, tuned = metrics[f"base_ndcg@10{suffix}"], metrics[f"finetuned_ndcg@10{suffix}"]
        low, high = metrics[f"ci95_ndcg@10_diff{suffix}"]
        assert 0 < base <= 1 and 0 < tuned <= 1 and low <= tuned - base <= high
        assert 0 <= metrics[f"p_value_fisher{suffix}"] <= 1
    assert metrics["corpus_size"] == 1500 and metrics["test_queries"] == 54
    assert metrics["improved_queries"] + metrics["worse_queries"] <= metrics["test_queries"]
    trec = (smoke_run[0] / "05_evaluation" / "finetuned.trec").read_text().splitlines()
    assert len({line.split()[0] for line in trec}) == metrics["test_queries"]
    dedup = metrics[
        "dedup_f1"
    ]  # duplicate detection: thresholds from dev, F1 on test and test_unseen with a query bootstrap
    assert dedup["dev_pairs"] > 0 and set(dedup["by_split"]) == {"test", "test_unseen"}
    for name in ("base", "finetuned"):
        assert dedup[name]["dev F1, by hand"] == pytest.approx(dedup[name]["dev F1, sentence-transformers"], abs=1e-6)
        assert 0 < dedup[name]["test F1"] <= 1 and 0 < dedup[name]["test_unseen F1"] <= 1
    for split, row in dedup["by_split"].items():
        assert row["difference"] == pytest.approx(dedup["finetuned"][f"{split} F1"] - dedup["base"][f"{split} F1"]), (
            split
        )
        assert row["ci"][0] <= row["difference"] <= row["ci"][1], split


def test_06_reranking(smoke_run):
    metrics = metrics_of(smoke_run, "06_reranking")
    by_hand, library = metrics["cross_encoder_by_hand"], metrics["cross_encoder_library"]
    assert len(by_hand) == len(library) == 5 and max(abs(a - b) for a, b in zip(by_hand, library)) < 1e-5
    assert len(set(round(value, 4) for value in by_hand)) > 1  # five different pairs, five different logits
    smoke = SMOKE["06_reranking"]
    for name, row in metrics["mining"].items():
        assert 0 <= row["false negatives"] <= row["negatives"] <= smoke["negatives_per_query"] * row["positives"], name
    assert metrics["false_negatives_among_mined"] == metrics["mining"]["relative margin 0.05"]["false negatives"]
    assert (
        set(metrics["rerank"]) == {str(k) for k in smoke["candidate_ks"]}
        and metrics["chosen_k"] in smoke["candidate_ks"]
    )
    assert metrics["test_queries"] == smoke["test_queries"]
    dev, tolerance = metrics["dev_ndcg_by_k"], metrics["parameters"]["k_tolerance"]
    assert metrics["chosen_k"] == min(
        int(k) for k, value in dev.items() if value >= max(dev.values()) - tolerance
    )  # the stated rule
    for k, row in metrics["rerank"].items():
        assert 0 <= row["ndcg@10"] <= 1 and row["ci"][0] <= row["difference"] <= row["ci"][1], k
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["docs_per_s"] > 0, k
    assert set(metrics["hybrid"]) == {
        "dense (fine-tuned)",
        "hybrid (BM25 + fine-tuned)",
        "dense, reranked at the chosen k",
        "hybrid, reranked at the chosen k",
    }
    assert metrics["hybrid"]["dense, reranked at the chosen k"]["ndcg@10"] == pytest.approx(
        metrics["rerank"][str(metrics["chosen_k"])]["ndcg@10"]
    )
    rows = metrics["training"]["rows"]  # every positive, the mined negatives, and random_negatives per training query
    assert (
        rows
        == metrics["mining"]["relative margin 0.05"]["positives"]
        + metrics["mining"]["relative margin 0.05"]["negatives"]
        + smoke["random_negatives"] * smoke["train_queries"]
    )
    saved = json.loads(
        (smoke_run[0] / "work" / "decision" / "icd10cm" / "reranker.json").read_text()
    )  # what notebook 07 reads
    assert saved["k"] == metrics["chosen_k"] and saved["ci"] == pytest.approx(metrics["rerank"][str(saved["k"])]["ci"])
    assert metrics["training"]["steps"] > 0 and len(metrics["training"]["dev_curve"]["step"]) >= 2
    fusion = metrics["fusion"]  # the weight and k chosen on dev by the stated rule, and the test answer at them
    dev_fusion = fusion["dev_ndcg@10"]
    best = {k: max(dev_fusion[k].values()) for k in dev_fusion}
    assert fusion["k"] == min(int(k) for k, value in best.items() if value >= max(best.values()) - tolerance)
    by_weight = dev_fusion[str(fusion["k"])]
    assert by_weight[str(fusion["weight"])] == best[str(fusion["k"])] and fusion["weight"] == min(
        float(w) for w, v in by_weight.items() if v == best[str(fusion["k"])]
    )
    for k in dev_fusion:  # weight 0 is the retriever alone, weight 1 the reranker alone
        assert dev_fusion[k]["0.0"] == pytest.approx(metrics["retriever_dev_ndcg@10"]) and dev_fusion[k][
            "1.0"
        ] == pytest.approx(dev[k])
    assert fusion["ci"][0] <= fusion["difference"] <= fusion["ci"][1]
    for name in ("training.png", "quality_vs_latency.png", "fusion.png"):
        assert figure(smoke_run, "06_reranking", name) > 10_000


def test_07_decision(smoke_run):
    metrics = metrics_of(smoke_run, "07_decision")
    assert metrics["seed_example"]["recommendation"] == "fine-tune"
    assert metrics["recommendation"] in RECOMMENDATIONS and metrics["seed_recommendation"] in RECOMMENDATIONS
    curve = metrics["learning_curve"]
    assert curve["examples"] == [8, 16, 32, 48]  # the smoke curve sizes, then notebook 04's 48 examples
    assert curve["reused_saved_runs"] == []  # a first run trains every point, and saves it for the next run
    saved = smoke_run[0] / "work" / "models" / "icd10cm" / "recipe-runs"
    assert all(read_recipe_record(saved / f"{size}-sample42-seed42")["train_examples"] == size for size in (8, 16, 32))
    assert curve["seeds"] == [42]  # one training seed by default: notebook 04's
    # the committed reference curve was measured on all 7,598 triplets: the smoke run's 48 decide from their own curve
    assert (
        metrics["decision_curve"]["source"].startswith("this run's curve")
        and metrics["decision_curve"]["examples"] == curve["examples"]
    )
    assert curve["relative_gain"][-1] == pytest.approx(metrics["measured_full_gain"])
    for gain, (low, high) in zip(curve["relative_gain"], curve["ci95"], strict=True):
        assert low <= gain <= high
    assert math.isfinite(metrics["predicted_full_gain"])
    assert metrics["prediction_error"] == pytest.approx(metrics["predicted_full_gain"] - metrics["measured_full_gain"])
    assert set(metrics["ndcg@10"]) == {
        "BM25",
        "dense (base)",
        "dense (fine-tuned)",
        "hybrid (BM25 + base)",
        "hybrid (BM25 + fine-tuned)",
    }
    assert all(0 < value <= 1 for value in metrics["ndcg@10"].values())
    assert metrics["docs_per_s"] > 0 and metrics["throughput_documents"] == 200
    assert metrics["reindex_encoder"] == "pytorch"
    assert 0 <= metrics["rule_disagreements"] <= metrics["grid_inputs"] == 4 * 5  # the measured sizes x five targets
    assert metrics["rule_branches"] == {  # the measured rule on a made-up curve: every branch, as its prose says
        "the base model already meets the target": "off-the-shelf",
        "the curve reaches the target": "fine-tune",
        "the curve falls short of the target": "fine-tune + improve retrieval pipeline",
        "ten examples, but more would help": "generate_data_first",
        "a curve that never helps": "off-the-shelf",
        "a corpus of 100 million documents": "fine-tune",
    }
    for name in ("bm25_dense_hybrid.png", "learning_curve.png"):
        assert figure(smoke_run, "07_decision", name) > 10_000


def test_08_reindexing(smoke_run):
    metrics = metrics_of(smoke_run, "08_reindexing")
    steps = metrics["steps"]
    assert steps["blue build"]["embedded"] == steps["green build"]["embedded"] == metrics["documents"] == 1500
    assert metrics["live_table"] == metrics["green_table"] != metrics["blue_table"]
    assert steps["resume after crash"]["skipped"] == metrics["crash_committed"] > 0
    assert steps["resume after crash"]["embedded"] + metrics["crash_committed"] == 1000
    update = steps["incremental update"]
    assert (update["embedded"], update["deleted"], update["skipped"]) == (6, 1, 1494)  # 5 edited + 1 new
    assert steps["no changes"]["embedded"] == 0 and metrics["documents_indexed"] == 1500
    # the smoke preset prices the reindex with the int8 encoder: the pipeline's rate times its measured speedup
    assert metrics["reindex_encoder"] == "onnx_int8" and metrics["reindex_docs_per_s"] not in (0, metrics["docs_per_s"])
    assert serving.integer_operators(smoke_run[0] / "08_reindexing" / "onnx" / "model_int8.onnx") > 0


def test_09_serving(smoke_run):
    metrics = metrics_of(smoke_run, "09_serving")
    variants = metrics["variants"]
    assert set(variants) == {"pytorch fp32", "onnx fp32", "onnx int8", "static"}
    choice = metrics["recommended"]["encoder"]
    tolerance = metrics["parameters"]["quality_tolerance"]
    assert variants[choice]["ci"][0] >= -tolerance * variants["pytorch fp32"]["ndcg@10"]  # on the interval's lower end
    acceptable = [
        name for name, row in variants.items() if row["ci"][0] >= -tolerance * variants["pytorch fp32"]["ndcg@10"]
    ]
    assert variants[choice]["docs_per_s"] == max(variants[name]["docs_per_s"] for name in acceptable)
    reference = variants["pytorch fp32"]
    assert metrics["corpus_size"] == 300 and metrics["test_queries"] == 54  # a sample that keeps every test answer
    assert variants["onnx fp32"]["ndcg@10"] == pytest.approx(reference["ndcg@10"], abs=2e-3)
    for name, row in variants.items():
        assert 0 < row["ndcg@10"] <= 1 and row["ci"][0] <= row["ci"][1], name
        assert row["docs_per_s"] > 0 and 0 < row["p50_ms"] <= row["p95_ms"], name
        assert row["relative_change"] == pytest.approx(row["ndcg@10"] / reference["ndcg@10"] - 1), name
    assert reference["index_mb"] == pytest.approx(metrics["corpus_size"] * 384 * 4 / 1e6)
    assert variants["static"]["docs_per_s"] > 5 * reference["docs_per_s"]  # a table look-up, no transformer
    int8_model = (
        smoke_run[0] / "work" / "serving" / "icd10cm" / "onnx" / "model_int8.onnx"
    )  # in work_dir: notebook 10 deploys it
    assert serving.integer_operators(int8_model) > 0
    assert figure(smoke_run, "09_serving", "quality_speed.png") > 10_000


def test_10_smaller_indexes(smoke_run):
    metrics, encoders = metrics_of(smoke_run, "10_smaller_indexes"), metrics_of(smoke_run, "09_serving")
    variants = metrics["variants"]
    dims = [256, 128, 64]
    recommended = metrics["recommended"]
    assert recommended["encoder"] == encoders["recommended"]["encoder"]  # notebook 09's choice, deployed here
    assert set(variants) == {
        "pytorch fp32",
        *(f"plain, first {d} dims" for d in dims),
        *(f"matryoshka, first {d} dims" for d in [384, *dims]),
        "int8 vectors",
        "int8 vectors, rescored",
        "binary vectors",
        "binary vectors, rescored",
        f"deployed: {recommended['encoder']} + {recommended['index']}",
    }
    assert recommended["deployed"] in variants and recommended["index"] in variants
    tolerance = metrics["parameters"]["quality_tolerance"]
    assert variants[recommended["index"]]["ci"][0] >= -tolerance * variants["pytorch fp32"]["ndcg@10"]
    reference = variants["pytorch fp32"]
    assert reference["ndcg@10"] == pytest.approx(encoders["variants"]["pytorch fp32"]["ndcg@10"])  # the same baseline
    assert variants[recommended["deployed"]]["docs_per_s"] == encoders["variants"][recommended["encoder"]]["docs_per_s"]
    assert set(metrics["matryoshka_vs_mnrl"]) == {"384", *map(str, dims)} and metrics["matryoshka_seeds"] == [42]
    for row in metrics["matryoshka_vs_mnrl"].values():
        assert row["ci"][0] <= row["difference"] <= row["ci"][1]
    assert metrics["corpus_size"] == 300 and metrics["test_queries"] == 54
    for name, row in variants.items():
        assert 0 < row["ndcg@10"] <= 1 and row["ci"][0] <= row["ci"][1], name
        assert row["docs_per_s"] > 0 and 0 < row["p50_ms"] <= row["p95_ms"], name
    documents = metrics["corpus_size"]
    assert reference["index_mb"] == pytest.approx(documents * 384 * 4 / 1e6)
    assert variants["plain, first 128 dims"]["index_mb"] == pytest.approx(documents * 128 * 4 / 1e6)
    assert variants["int8 vectors"]["index_mb"] == pytest.approx(documents * 384 / 1e6)
    assert variants["binary vectors, rescored"]["index_mb"] == pytest.approx(documents * 384 / 8 / 1e6)
    assert metrics["matryoshka_loss_by_hand"] == pytest.approx(metrics["matryoshka_loss_library"], rel=1e-5)
    for name in ("matryoshka.png", "quality_size.png"):
        assert figure(smoke_run, "10_smaller_indexes", name) > 10_000


def test_11_forgetting_and_merging(smoke_run):
    from safetensors.torch import load_file

    from helpers.models import packaged_default_model_path

    metrics = metrics_of(smoke_run, "11_forgetting_and_merging")
    tasks = {"icd10cm dev", "hpo", "zaragoza", "stsb"}
    assert set(metrics["tasks"]) == tasks and metrics["tasks"]["stsb"]["items"] == 60
    assert set(metrics["sweep"]) == {"0", "0.5", "1"} and all(set(row) == tasks for row in metrics["sweep"].values())
    for name, row in metrics["fine_tune_cost"].items():  # alpha 0 and 1 of the sweep are the two models themselves
        assert row["base"] == pytest.approx(metrics["sweep"]["0"][name]) and row["finetuned"] == pytest.approx(
            metrics["sweep"]["1"][name]
        )
        assert row["ci"][0] - 1e-4 <= row["difference"] <= row["ci"][1] + 1e-4, name
    alpha = metrics["alpha"]
    assert alpha in (0.0, 0.5, 1.0)
    dev = {float(key): row["icd10cm dev"] for key, row in metrics["sweep"].items()}
    if dev[1.0] > dev[0.0]:  # the stated rule: the smallest alpha keeping keep_share of the dev gain
        keeping = [a for a, value in dev.items() if value - dev[0.0] >= metrics["keep_share"] * (dev[1.0] - dev[0.0])]
        assert alpha == min(keeping)
    test = metrics["test"]
    assert test["base"]["ci_vs_base"] == [0.0, 0.0]
    gain = test["fine-tuned"]["ndcg@10"] - test["base"]["ndcg@10"]
    if gain > 0:  # the smoke run's fine-tune may not gain on its 54 test queries
        assert metrics["test_gain_kept"] == pytest.approx((test["merged"]["ndcg@10"] - test["base"]["ndcg@10"]) / gain)
    else:
        assert metrics["test_gain_kept"] is None
    control = metrics["renumbered_control"]  # renumbered units do not average: the merge falls below the plain one
    assert control["renumbered_dev"] < control["merged_dev"]
    assert abs(sum(metrics["alpha_choice_frequency"].values()) - 1) < 1e-9
    assert set(metrics["out_of_domain"]) == {"hpo", "zaragoza", "stsb"}
    for name, row in metrics["out_of_domain"].items():
        assert row["merged"] == pytest.approx(metrics["sweep"][f"{alpha:g}"][name]), name
        low, high = row["95% CI vs fine-tuned"]
        assert low - 1e-4 <= row["merged - fine-tuned"] <= high + 1e-4, name
    # the saved merged model's weights are the stated interpolation of the two models it came from
    merged_folder = Path(metrics["merged_model"])
    assert json.loads((merged_folder / "merge.json").read_text())["alpha"] == alpha
    base = load_file(packaged_default_model_path() / "model.safetensors")
    tuned = load_file(Path(metrics["finetuned_model"]) / "model.safetensors")
    merged = load_file(merged_folder / "model.safetensors")
    common = [name for name in base if name in tuned and name in merged and base[name].is_floating_point()]
    assert len(common) > 90
    for name in common:
        expected = (1 - alpha) * base[name].float() + alpha * tuned[name].float()
        assert (merged[name].float() - expected).abs().max() < 1e-5, name
    assert figure(smoke_run, "11_forgetting_and_merging", "tradeoff.png") > 10_000


def test_12_remedies_across_seeds(smoke_run):
    from helpers.task_suite import load_scored_models

    metrics, merging = (
        metrics_of(smoke_run, "12_remedies_across_seeds"),
        metrics_of(smoke_run, "11_forgetting_and_merging"),
    )
    alpha = metrics["alpha"]
    assert alpha == merging["alpha"] and metrics["finetuned_model"] == merging["finetuned_model"]
    scores, test, record = load_scored_models(
        metrics["merge_sweep"]
    )  # notebook 11's scores, read instead of scored again
    assert record["chosen_alpha"] == alpha and set(scores["base"]) == set(merging["tasks"])
    assert all(len(scores["base"][name]) == merging["tasks"][name]["items"] for name in merging["tasks"])
    assert test["merged"].mean() == pytest.approx(merging["test"]["merged"]["ndcg@10"])
    for name in merging["tasks"]:  # the linear merge's row is notebook 11's sweep at the chosen alpha
        assert metrics["alternatives"][f"linear α={alpha:g}"][name] == pytest.approx(
            merging["sweep"][f"{alpha:g}"][name]
        )
    assert 0 <= metrics["slerp_rows_on_line"] <= 1 and metrics["slerp_max_weight_gap"] >= 0
    assert set(metrics["alternatives"]) == {f"linear α={alpha:g}", f"ties α={alpha:g}", "fewer steps"}
    assert metrics["fewer_steps"]["steps"] == [3, 6]  # notebook 04's smoke run: checkpoints at steps 3 and 6
    # section 5: one row per comparison over the training seeds; over the smoke run's one seed, the comparisons above
    seeds = metrics["training_seeds"]
    assert (
        seeds[0] == 42
        and metrics["seed_alphas"]["42"] == alpha
        and set(metrics["seed_alphas"]) == {str(s) for s in seeds}
    )
    assert all(
        row["ci"][0] - 1e-4 <= row["mean"] <= row["ci"][1] + 1e-4 and row["seeds"] == len(seeds)
        for row in metrics["across_seeds"].values()
    )
    for name, row in merging["fine_tune_cost"].items() if len(seeds) == 1 else ():
        across = metrics["across_seeds"][f"fine-tuned - base / {merging['tasks'][name]['label']}"]
        assert across["mean"] == pytest.approx(row["difference"])
    for name, row in merging["out_of_domain"].items() if len(seeds) == 1 else ():
        assert metrics["across_seeds"][f"merged - fine-tuned / {merging['tasks'][name]['label']}"][
            "mean"
        ] == pytest.approx(row["merged - fine-tuned"])
    for key, row in (
        metrics["alternatives_against_line"].items() if len(seeds) == 1 else ()
    ):  # "ties α=0.5 / X" is "ties - the line / X"
        model, task = key.split(" / ")
        assert metrics["across_seeds"][f"{model.split(' α=')[0]} - the line / {task}"]["mean"] == pytest.approx(
            row["gap"]
        )
    assert (
        metrics["ship"]["this run"] == "train more seeds"
        if len(seeds) < 3
        else metrics["ship"]["this run"] in ("merged", "fine-tuned")
    )
    assert metrics["ship"]["the reference run"] == "merged"  # three seeds, both intervals clear (its claims)
    assert figure(smoke_run, "12_remedies_across_seeds", "remedies.png") > 10_000


def test_13_synthetic_pairs(smoke_run):
    from helpers.data import load_beir, normalize_text

    metrics = metrics_of(smoke_run, "13_synthetic_pairs")
    preset = SMOKE["13_synthetic_pairs"]
    assert metrics["generated"] == preset["documents"] and 2 <= metrics["kept"] <= metrics["generated"]
    assert metrics["kept"] + sum(metrics["dropped"].values()) == metrics["generated"]
    shares = {float(temperature): share for temperature, share in metrics["dev_usable_share"].items()}
    assert set(shares) == {0.0, 0.5, 0.8}  # the rule: the largest share kept, the lower temperature on a tie
    assert metrics["temperature"] == max(shares, key=lambda temperature: (shares[temperature], -temperature))
    # every arm trained for the same number of steps, once per training seed
    assert (
        metrics["training_seeds"] == preset["training_seeds"]
        and metrics["recipe"]["max_steps"] == preset["training_steps"]
    )
    assert set(metrics["training"]) == {
        "synthetic",
        "real",
        "both",
        "generated",
        "notebook 04 + generated",
        "notebook 04 + real",
    }
    for arm, runs in metrics["training"].items():
        assert [run["seed"] for run in runs] == preset["training_seeds"], arm
        assert all(run["steps"] == preset["training_steps"] for run in runs), arm
    comparisons = metrics["comparisons"]
    assert set(comparisons) == {
        "test: synthetic - base",
        "test: real - base",
        "test: both - base",
        "test: notebook 04 - base",
        "test: synthetic - real",
        "test: both - real",
        "test_unseen: generated - base",
        "test_unseen: notebook 04 - base",
        "test_unseen: notebook 04 + generated - notebook 04",
        "test_unseen: notebook 04 + real - notebook 04",
        "test_unseen: notebook 04 + generated - notebook 04 + real",
    }
    base = metrics["base_ndcg@10"]
    for name, row in comparisons.items():
        low, high = row["95% CI"]
        assert low - 1e-4 <= row["difference"] <= high + 1e-4, name
        assert row["verdict"] == ("above zero" if low > 0 else "below zero" if high < 0 else "can't tell"), name
        if name.endswith(" - base"):
            assert row["difference"] == pytest.approx(row["ndcg@10"] - base[name.split(":")[0]]), name
    assert comparisons["test: synthetic - real"]["difference"] == pytest.approx(
        comparisons["test: synthetic - base"]["difference"] - comparisons["test: real - base"]["difference"]
    )
    assert metrics["test_queries"] == 40 and metrics["test_corpus"] <= 300
    assert (
        metrics["unlabelled_generated"] == preset["unlabelled_documents"]
        and 2 <= metrics["kept_unlabelled"] <= preset["unlabelled_documents"]
    )
    assert metrics["recipe"]["hard_negatives"] is False  # plain pairs: the generated queries have no negatives
    rows = [
        json.loads(line)
        for line in (smoke_run[0] / "13_synthetic_pairs" / "synthetic_pairs.jsonl").read_text().splitlines()
    ]
    assert len(rows) == metrics["generated"] and sum(row["kept"] for row in rows) == metrics["kept"]
    data = load_beir(smoke_run[0] / "work" / "data" / "icd10cm")
    held_out = {
        normalize_text(text) for split in ("dev", "test", "test_unseen") for text in data.split_queries(split).values()
    }
    kept_texts = [normalize_text(row["generated"]) for row in rows if row["kept"]]
    assert not set(kept_texts) & held_out and len(set(kept_texts)) == len(kept_texts)  # no leakage, no duplicate
    assert all(
        text and text != normalize_text(row["document"])
        for text, row in zip(kept_texts, [r for r in rows if r["kept"]])
    )
    # question 2: generated for documents that only test_unseen queries answer, scored on exactly those queries
    unlabelled = [
        json.loads(line)
        for line in (smoke_run[0] / "13_synthetic_pairs" / "synthetic_pairs_unlabelled.jsonl").read_text().splitlines()
    ]
    generated_for = {row["doc_id"] for row in unlabelled}
    answered = {doc_id for judged in data.qrels["test_unseen"].values() for doc_id in judged}
    trained = {doc_id for judged in data.qrels["train"].values() for doc_id in judged}
    assert (
        len(unlabelled) == metrics["unlabelled_generated"]
        and sum(row["kept"] for row in unlabelled) == metrics["kept_unlabelled"]
    )
    assert generated_for <= answered and not generated_for & trained
    # scored: the test_unseen queries whose answers all lie among the documents generated for, searched among those only
    assert metrics["test_unseen_queries"] == sum(
        set(judged) <= generated_for for judged in data.qrels["test_unseen"].values()
    )
    assert metrics["test_unseen_corpus"] == len(generated_for)
    assert not {normalize_text(row["generated"]) for row in unlabelled if row["kept"]} & held_out
    # notebooks 07 and 11 ran first in this work_dir: the decision rule is asked again with both measurements
    advice = metrics["decision"]
    assert set(advice) == {f"{metrics['kept']} real pairs", "all of notebook 04's pairs"}
    for row in advice.values():
        assert row["recommendation"] in RECOMMENDATIONS
        if row["recommendation"] == "generate_data_first":
            assert any("synthetic pairs from" in reason for reason in row["reasons"]), row
        if row["recommendation"].startswith("fine-tune"):
            assert any("notebook 11" in reason for reason in row["reasons"]), row
    assert figure(smoke_run, "13_synthetic_pairs", "synthetic_vs_real.png") > 10_000


def test_13_names_a_generation_that_yields_no_usable_query(smoke_run, tmp_path):
    """One new token per answer: every answer is empty or cut off, and the notebook stops saying so."""
    notebook = next(path for path in list_notebooks() if path.stem == "13_synthetic_pairs")
    parameters = {**SMOKE["13_synthetic_pairs"], "max_new_tokens": 1, "temperatures": [0.0], "documents": 8}
    result = run_notebook(notebook, tmp_path, parameters, smoke_run[0] / "work", 600)
    assert result.status == "failed" and "ValueError: no usable query: 0 of 8 queries generated" in result.error, (
        result.error
    )


def test_executed_notebooks_pass_nbval(smoke_run):
    """Re-execute the notebooks that mark a cell NBVAL_CHECK_OUTPUT (the split counts of 03): same output."""
    out, summary = smoke_run
    executed = [
        run["executed"]
        for run in summary.values()
        if any(  # the marker as nbval reads it: alone on its comment line
            line.strip() == "# NBVAL_CHECK_OUTPUT"
            for cell in nbformat.read(run["executed"], as_version=4).cells
            for line in cell.source.splitlines()
        )
    ]
    assert executed, (
        "no notebook marks a cell `# NBVAL_CHECK_OUTPUT` alone on its line (with more text after it, nbval ignores it)"
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            "--nbval-sanitize-with",
            str(SANITIZE),
            *executed,
        ],
        capture_output=True,
        text=True,
        cwd=out,
    )
    assert completed.returncode == 0, completed.stdout[-4000:]


def test_every_solution_passes_its_checks(smoke_run):
    out, _ = smoke_run
    for path in list_notebooks():
        expected = checked_exercises(path)
        assert len(expected) >= 2, f"{path.stem} has fewer than two exercises"
        results = json.loads((out / path.stem / "exercises.json").read_text())
        assert {name: result["status"] for name, result in results.items()} == dict.fromkeys(expected, "passed"), (
            results
        )


@pytest.fixture(scope="module")
def learner_work(smoke_run):
    """A copy of the smoke run's work_dir (prepared data, the fine-tuned model) for learners' copies to reuse."""
    out, _ = smoke_run
    shutil.copytree(out / "work", out / "learner-work", ignore=shutil.ignore_patterns("checkpoint-*", "sweep", "curve"))
    return out / "learner-work"


def run_check(notebook, work, out, capsys):
    status = cli.main(["check", str(notebook), "--work", str(work), "--out", str(out)])
    return status, capsys.readouterr().out


def test_a_learners_copy_reports_every_exercise_as_not_done(smoke_run, learner_work, tmp_path, capsys):
    copy = write_learner_copies([path for path in list_notebooks() if path.stem == "03_data_preparation"], tmp_path)[0]
    status, printed = run_check(copy, learner_work, tmp_path / "check", capsys)
    assert status == 1 and "the notebook itself failed" not in printed
    for name in checked_exercises(copy):
        assert f"Exercise {name}: not done" in printed, printed


def test_a_wrong_answer_is_reported_as_failed(smoke_run, learner_work, tmp_path, capsys):
    copy = write_learner_copies([path for path in list_notebooks() if path.stem == "03_data_preparation"], tmp_path)[0]
    notebook = nbformat.read(copy, as_version=4)
    for cell in notebook.cells:  # a learner's plausible mistake: case folded, punctuation and spacing not
        cell.source = cell.source.replace(
            'raise NotImplementedError("Exercise 03.2: your code here")',
            "seen = {text.lower() for text in training_texts}\n"
            "    return sorted(q for q, text in held_out.items() if text.lower() in seen)",
        )
    nbformat.write(notebook, copy)
    status, printed = run_check(copy, learner_work, tmp_path / "check", capsys)
    assert status == 1
    expected = (
        "Exercise 03.2: failed: expected the copies t1, t3 and t6 only (a hyphen is a space, not nothing), got []"
    )
    assert expected in printed, printed
    assert "Exercise 03.1: not done" in printed


def test_14_batch_size_and_precision(smoke_run):
    metrics = metrics_of(smoke_run, "14_batch_size_and_precision")
    assert metrics["recipe"] == recipe()  # notebook 04's recipe at its defaults, whatever 04 ran with
    assert (
        set(metrics["batch_size_sweep"]) == {"8", "16"} and metrics["sweep_steps"]["16"] < metrics["sweep_steps"]["8"]
    )
    sweep = metrics["batch_size_sweep_comparison"]  # the largest batch minus the smallest, read by one rule
    assert sweep["comparison"] == "batch 16 minus batch 8" and sweep["seeds"] == [42]
    assert sweep["ci"][0] - 1e-4 <= sweep["mean difference"] <= sweep["ci"][1] + 1e-4
    assert sweep["mean difference"] == pytest.approx(
        metrics["batch_size_sweep"]["16"] - metrics["batch_size_sweep"]["8"], abs=1e-9
    )
    expected = interval_verdict(
        sweep["ci"], above="the larger batch scored higher", below="the larger batch scored lower"
    )
    assert sweep["verdict"] == expected
    # section 2: the smoke run pins fp32 (WORKBOOK_PRECISION), and compares bf16 with it at equal settings
    comparison = metrics["precision_comparison"]
    assert metrics["numeric_precision"] == "fp32" and comparison["arms"] == ["bf16", "fp32"]
    assert comparison["examples"] == 32 and comparison["ci"][0] <= comparison["difference"] <= comparison["ci"][1]
    assert 0 < comparison["bf16_matmul_max_error"] < 0.02  # three significant digits, not none
    assert all(row["training examples/s"] > 0 and row["encoding texts/s"] > 0 for row in comparison["by_arm"].values())
    assert figure(smoke_run, "14_batch_size_and_precision", "batch_size_sweep.png") > 10_000


def test_15_scaling_out(smoke_run):
    metrics = metrics_of(smoke_run, "15_scaling_out")
    by_hand = metrics["by_hand"]
    assert by_hand["library_max_difference"] < 1e-5  # our MNRL equals the library's
    assert by_hand["negatives"] == {"one_process": 15, "own": 7, "gathered": 15}  # 2 x 4 triplets
    assert sum(by_hand["gathered_loss"]) / 2 == pytest.approx(
        by_hand["one_process_loss"], abs=1e-5
    )  # gathered = one process
    runs = metrics["ddp_runs"]
    one, own, gathered = "1 process, batch 8", "2 processes x 4, own negatives", "2 processes x 4, gathered"
    resumed = f"{own}, killed and resumed"
    assert set(runs) == {one, own, gathered, resumed}
    assert [runs[name]["processes"] for name in (one, own, gathered, resumed)] == [1, 2, 2, 2]
    assert {runs[name]["effective_batch"] for name in runs} == {8} and {runs[name]["steps"] for name in runs} == {6}
    assert [runs[name]["negatives_per_anchor"] for name in (one, own, gathered)] == [15, 7, 15]
    assert {runs[name]["backend"] for name in runs} == {"gloo"}
    assert runs[one]["false_negative_steps"] == 0  # one process has no other process to gather from
    assert [len(batches) for batches in runs[gathered]["batches_per_process"]] == [6, 6]  # each process took every step
    assert by_hand["library_gathered"] == pytest.approx(by_hand["gathered_loss"], abs=1e-5)  # 2 real processes, gloo
    # the fourth run, own negatives again, killed after its first checkpoint (SIGKILL), resumed from it, finished
    assert metrics["interrupted_run"] == resumed and metrics["checkpoint_killed_after"] == "checkpoint-2"
    assert runs[resumed]["resumed_from_step"] == 2 and {
        runs[name]["resumed_from_step"] for name in (one, own, gathered)
    } == {0}
    # and it ends where its uninterrupted twin ended: the trainer restored weights, optimizer, schedule, data position
    twin = metrics["resumed_vs_uninterrupted"]
    assert twin["twin"] == own and twin["steps_compared"] == 4 and twin["max_loss_difference"] < 1e-3
    assert twin["ci"][0] <= twin["dev_difference"] <= twin["ci"][1]
    for run in runs.values():  # rank 0 saved one model, with its manifest
        assert (
            incomplete(run["model_dir"]) == ""
            and json.loads((Path(run["model_dir"]) / "training.json").read_text())["train_examples"] == 48
        )
    assert metrics["training_seeds"] == [42]  # one training seed per configuration by default
    for name, row in metrics["dev_minus_one_process"].items():
        assert row["ci"][0] <= row["difference"] <= row["ci"][1], name
        assert row["seeds"] == 1, name
    assert figure(smoke_run, "15_scaling_out", "ddp_runs.png") > 10_000


def test_16_ray_reindexing(smoke_run):
    metrics = metrics_of(smoke_run, "16_ray_reindexing")
    ray = metrics["ray"]
    assert ray["address"] is None and ray["resources"]["CPU"] >= 1 and ray["documents"] == 300
    assert ray["workers"]["2"]["embedded"] == 300 and len(ray["workers"]["2"]["docs_per_worker"]) == 2
    killed = ray["worker_killed"]
    # the injected crash always lands in the middle of a block: its worker dies before encoding it, so the block
    # never comes back from that worker, a restarted one redoes it, and every block comes back exactly once
    assert killed["a worker died mid-block (the block was redone)"] is True
    assert killed["workers that ran (a restart is a new process)"] >= 2
    assert killed["rows the pipeline returned"] == killed["documents"] == 300
    assert killed["rows in the table"] == killed["verified_rows"] == 300
    assert killed["ids stored twice"] == 0 and killed["documents missing"] == 0
    projection = metrics["projection"]
    assert projection["gpu"]["device_name"] == "NVIDIA H200"  # the committed measurement
    large = projection["writer_large_table"]["rates"]  # bench_writer's committed figures, read by the notebook
    assert (
        large["no id index"]["1000000"] < large["id index"]["1000000"]
    )  # without an index, the writer slows as the table grows
    assert len(projection["rows"]) == 3 * 2 * 3  # corpus sizes x (CPU, GPU) x worker counts
    for row in projection["rows"]:
        documents = int(row["documents"].replace(",", ""))
        assert (
            row["hours, id index"] >= row["hours, if writes kept up"] * (1 - 1e-9) > 0
        )  # the same sum, added in another order
        assert row["id index: past 1M rows assumed"] == (documents > 1_000_000)
        if documents <= 1_000_000:  # measured that far: the writer without an index is never faster
            assert row["hours, no id index"] >= row["hours, id index"] * 0.99
        else:
            assert row["hours, no id index"] is None  # not measured, not guessed

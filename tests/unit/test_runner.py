"""The runner and the `workbook` command (parameters, presets, prerequisite runs, summaries) and the rendered
results lines, without running a real notebook."""

import json
import re

import nbformat
import pytest

from helpers import cli
from helpers import workbook as W
from helpers.parameters import declared_parameters
from helpers.results import results_table

NOTEBOOKS = W.list_notebooks()


def test_parameters_go_to_the_notebooks_that_declare_them():
    plan = W.parameters_per_notebook(NOTEBOOKS, {"seed": 7})
    assert all(params == {"seed": 7} for params in plan.values())
    first = NOTEBOOKS[0]
    plan = W.parameters_per_notebook(NOTEBOOKS, {first.stem: {"seed": 1}})
    assert plan[first] == {"seed": 1} and plan[NOTEBOOKS[1]] == {}


def test_unknown_parameters_are_errors_not_warnings():
    with pytest.raises(ValueError, match="no_such_param"):
        W.parameters_per_notebook(NOTEBOOKS, {"no_such_param": 1})
    with pytest.raises(ValueError, match=f"{NOTEBOOKS[0].stem}.bogus"):
        W.parameters_per_notebook(NOTEBOOKS, {NOTEBOOKS[0].stem: {"bogus": 1}})


def test_explicit_settings_win_over_the_smoke_preset():
    training = next(path for path in NOTEBOOKS if path.stem == "04_training")
    smoke = W.load_preset("smoke")
    plan = W.parameters_per_notebook([training], {"batch_size": 32, "04_training": {"epochs": 3}}, smoke)
    assert plan[training]["batch_size"] == 32 and plan[training]["epochs"] == 3 != smoke["04_training"]["epochs"]
    assert plan[training]["eval_steps"] == smoke["04_training"]["eval_steps"]  # the preset fills what was not given


def test_a_missing_prerequisite_runs_its_notebook_with_the_defaults(tmp_path, monkeypatch):
    calls = []

    def fake_run(path, out_dir, parameters, work_dir, cell_timeout=None):
        calls.append((path.stem, dict(parameters)))
        staging = W.begin_output(W.finetuned_dir(work_dir, parameters["dataset"]) / "final", "a test")
        (staging / "model.safetensors").write_bytes(b"weights")
        W.publish_output(staging, {})
        return W.NotebookRun(path.stem, "ok", 1.0, "", dict(parameters))

    monkeypatch.setattr(W, "run_notebook", fake_run)
    final = W.ensure_finetuned("hpo", tmp_path)
    assert final == tmp_path.resolve() / "models" / "hpo" / "final"
    assert calls == [("04_training", {"dataset": "hpo", "model": "all-MiniLM-L6-v2"})]
    W.ensure_finetuned("hpo", tmp_path)
    assert len(calls) == 1, "a model already there is not trained again"
    (final / "model.safetensors").unlink()  # a model folder without its weights is trained again
    W.ensure_finetuned("hpo", tmp_path)
    assert len(calls) == 2 and (final / "model.safetensors").exists()
    monkeypatch.setattr(
        W,
        "run_notebook",
        lambda *args, **kwargs: W.NotebookRun("03", "failed", 1.0, "copy.ipynb", {}, {}, "KeyError: x"),
    )
    with pytest.raises(RuntimeError, match="notebook 03_data_preparation.*failed: KeyError: x"):
        W.ensure_prepared("icd10cm", tmp_path)


def test_a_fine_tune_with_another_seed_is_trained_beside_the_data_it_shares(tmp_path, monkeypatch):
    calls = []

    def fake_run(path, out_dir, parameters, work_dir, cell_timeout=None):
        calls.append((path.stem, dict(parameters), work_dir))
        staging = W.begin_output(W.finetuned_dir(work_dir, parameters["dataset"]) / "final", "a test")
        (staging / "model.safetensors").write_bytes(b"weights")
        W.publish_output(staging, {})
        return W.NotebookRun(path.stem, "ok", 1.0, "", dict(parameters))

    monkeypatch.setattr(W, "run_notebook", fake_run)
    (tmp_path / "data" / "hpo").mkdir(parents=True)
    final = W.finetuned_with_seed("hpo", tmp_path, 7)
    seed_dir = tmp_path.resolve() / "seeds" / "seed-7"
    assert final == seed_dir / "models" / "hpo" / "final" and final.exists()
    assert calls == [("04_training", {"dataset": "hpo", "model": "all-MiniLM-L6-v2", "seed": 7}, seed_dir)]
    assert (seed_dir / "data" / "hpo").is_dir() and (seed_dir / "embeddings").resolve() == (
        tmp_path / "embeddings"
    ).resolve()
    W.finetuned_with_seed("hpo", tmp_path, 7)
    assert len(calls) == 1, "a model already there is not trained again"
    assert not W.incomplete(W.ensure_finetuned("hpo", tmp_path)) and len(calls) == 2, (
        "the source chapter's model is not notebook 04's own"
    )


def test_cli_run_names_an_unknown_parameter(capsys, tmp_path):
    assert cli.main(["run", "-p", "no_such_param", "1", "--out", str(tmp_path)]) == 2
    assert "no_such_param" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()


def test_cli_run_names_an_unknown_notebook(capsys):
    assert cli.main(["run", "99_nothing"]) == 2
    assert "no notebook '99_nothing'" in capsys.readouterr().err


def test_cli_list_shows_every_parameter(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for path in NOTEBOOKS:
        assert path.stem in out
        for name in declared_parameters(path):
            assert re.search(rf"^\s+{name}\s+=", out, re.M), f"{path.stem}: {name} missing"


def test_select_notebooks_by_number_and_name():
    assert W.select_notebooks([NOTEBOOKS[0].stem[:2]], NOTEBOOKS) == [NOTEBOOKS[0]]
    assert W.select_notebooks([NOTEBOOKS[-1].name, NOTEBOOKS[0].stem], NOTEBOOKS) == [NOTEBOOKS[0], NOTEBOOKS[-1]]


def test_metrics_are_written_as_plain_json(tmp_path):
    import numpy as np

    path = W.write_metrics(
        tmp_path, {"ndcg": np.float32(0.5), "ci": (np.float64(0.1), 0.2), "nan": float("nan")}, {"seed": 1}
    )
    assert json.loads(path.read_text()) == {
        "ndcg": 0.5,
        "ci": [0.1, 0.2],
        "nan": None,
        "parameters": {"seed": 1},
        "numeric_precision": "fp32",
    }  # the tests pin fp32 (conftest)


# notebook 05's metrics as the results table reads them (a made-up run)
NOTEBOOK_05_METRICS = {
    "base_ndcg@10": 0.5,
    "finetuned_ndcg@10": 0.6,
    "relative_gain_ndcg@10": 0.2,
    "ci95_ndcg@10_diff": [0.08, 0.12],
    "p_value_fisher": 0.0,
    "test_queries": 10,
    "corpus_size": 100,
}


def test_results_table_renders_notebook_05_and_quotes_the_others_lines():
    evaluation = dict(NOTEBOOK_05_METRICS)
    runs = [
        {"notebook": "08_reindexing", "metrics": {"readme_line": "Notebook 08, 190 documents/s."}},
        {"notebook": "05_evaluation", "metrics": evaluation},
        {"notebook": "01_why_finetune", "metrics": {"readme_line": "Notebook 01, +25%."}},
    ]
    lines = results_table(runs).splitlines()
    assert "| test | 10 | 100 | 0.500 | 0.600 | +20.0% | [+0.080, +0.120] | < 0.001 |" in lines
    assert lines[-2:] == ["Notebook 01, +25%.", "Notebook 08, 190 documents/s."]  # in notebook order
    assert not any(line.startswith("Notebook") for line in results_table(runs[1:2]).splitlines())


def test_results_table_renders_notebook_09s_variants_after_the_lines():
    row = {
        "encoder": "onnx int8",
        "ndcg@10": 0.6312,
        "ci": [-0.0041, 0.0012],
        "relative_change": -0.0023,
        "docs_per_s": 441.6,
        "p50_ms": 6.04,
        "p95_ms": 9.96,
        "index_mb": 30.72,
    }
    evaluation = dict(NOTEBOOK_05_METRICS)
    runs = [
        {"notebook": "05_evaluation", "metrics": evaluation},
        {
            "notebook": "09_serving",
            "metrics": {
                "readme_line": "Notebook 09.",
                "variants": {  # sorted by name, as stored
                    "matryoshka, first 64 dims": row,
                    "onnx int8": row,
                    "plain, first 128 dims": row,
                    "plain, first 64 dims": row,
                },
            },
        },
    ]
    lines = results_table(runs).splitlines()
    assert lines[-4] == "| onnx int8 | onnx int8 | 0.631 | [-0.004, +0.001] | -0.2% | 442 | 6.0 | 10.0 | 30.72 |"
    assert [line.split(" | ")[0] for line in lines[-4:]] == [  # the notebook's reading order, not the names'
        "| onnx int8",
        "| plain, first 128 dims",
        "| plain, first 64 dims",
        "| matryoshka, first 64 dims",
    ]
    assert lines.index("Notebook 09.") < len(lines) - 6  # the line, then the table
    runs.append({"notebook": "11_forgetting_and_merging", "metrics": {"readme_line": "Notebook 11."}})
    lines = results_table(runs).splitlines()
    assert lines[-1] == "Notebook 11." and lines[-2] == "" and lines[-3].startswith("| matryoshka, first 64 dims")


def test_a_cell_over_the_timeout_fails_its_notebook_instead_of_hanging(tmp_path):
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell('output_dir = ""\nwork_dir = ""', metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("import time\ntime.sleep(60)"),
        ]
    )
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    path = tmp_path / "sleeps.ipynb"
    nbformat.write(notebook, path)
    result = W.run_notebook(path, tmp_path / "out", {}, tmp_path / "work", cell_timeout=3)
    assert result.status == "failed" and result.error.startswith("CellTimeoutError") and result.seconds < 60


def test_reference_run_records_finished_notebooks_with_provenance(tmp_path):
    from helpers.committed_runs import add_to_reference, reference_run
    from helpers.committed_runs import provenance as provenance_line

    path = tmp_path / "reference.json"
    provenance = {
        "command": "workbook run 13 -f presets/reference.yaml",
        "machine": "2-core EPYC",
        "date": "2026-12-05",
        "commit": "abc1234",
    }
    finished = {
        "notebook": "13_synthetic_pairs",
        "status": "ok",
        "seconds": 1200.04,
        "parameters": {"training_seeds": [1, 2, 3]},
        "metrics": {"kept": 400},
    }
    assert reference_run("13_synthetic_pairs", path) is None  # nothing committed yet
    assert add_to_reference([finished], provenance, path) == ["13_synthetic_pairs"]
    recorded = reference_run("13_synthetic_pairs", path)
    assert recorded["metrics"] == {"kept": 400} and recorded["date"] == "2026-12-05" and recorded["seconds"] == 1200.0
    assert provenance_line(recorded) == (
        "reference run: `workbook run 13 -f presets/reference.yaml` on 2-core EPYC, 2026-12-05 (commit abc1234; "
        "the command as typed: benchmarks/results/reference-cpu/reference.json)"
    )  # the line every notebook prints above its figures
    typed_before = {**finished, "notebook": "09_serving", "metrics": {"matryoshka_vs_mnrl": {}}}
    add_to_reference([typed_before], {**provenance, "command": "workbook run 09 -f presets/reference.yaml"}, path)
    half = reference_run("10_smaller_indexes", path)  # a split half without a record reads the notebook it came from
    assert half["metrics"] == {"matryoshka_vs_mnrl": {}} and half["read_as"] == "10_smaller_indexes"
    assert "`workbook run 10 -f presets/reference.yaml`" in provenance_line(half)  # typed as 09: the number now
    assert "`workbook run 09 -f" in provenance_line(reference_run("09_serving", path))
    assert reference_run("12_remedies_across_seeds", path) is None  # neither it nor 11_forgetting_and_merging recorded
    add_to_reference([{**finished, "notebook": "07_decision"}], {**provenance, "date": "2026-12-06"}, path)
    assert reference_run("13_synthetic_pairs", path)["date"] == "2026-12-05"  # notebooks recorded before are kept
    with pytest.raises(ValueError, match="13_synthetic_pairs did not finish"):
        add_to_reference([{**finished, "status": "failed", "metrics": {}}], provenance, path)
    with pytest.raises(ValueError, match="machine missing"):
        add_to_reference([finished], {**provenance, "machine": ""}, path)


def test_off_the_shelf_rows_line_up_each_notebooks_figure_with_its_corpus():
    from helpers.committed_runs import committed_default_run, off_the_shelf_rows

    metrics = {
        "05_evaluation": {
            "dataset": "icd10cm",
            "corpus_size": 20000,
            "test_queries": 2248,
            "base_ndcg@10": 0.5,
            "finetuned_ndcg@10": 0.65,
            "test_unseen_queries": 10,
            "base_ndcg@10_test_unseen": 0.4,
            "finetuned_ndcg@10_test_unseen": 0.5,
        },
        "02_encoder_vs_decoder": {
            "parameters": {"dataset": "icd10cm"},
            "corpus_size": 600,
            "test_queries": 200,
            "table": {"encoder": {"test NDCG@10, off the shelf": 0.8}},
        },
        "07_decision": {
            "dataset": "hpo",
            "parameters": {"dev_corpus_size": 1000},
            "learning_curve": {"base_dev_ndcg@10": 0.7},
        },
        "13_synthetic_pairs": {"dataset": "icd10cm"},  # a run without the keys: left out, not guessed
    }
    rows = off_the_shelf_rows(metrics)
    assert [(row["notebook"], row["split"], row["documents searched"]) for row in rows] == [
        ("02", "test", 600),
        ("05", "test", 20000),
        ("05", "test_unseen", 20000),
    ]  # by split, then size; 07 ran on HPO
    assert rows[1]["relative gain"] == pytest.approx(0.3) and rows[0]["relative gain"] is None
    committed = off_the_shelf_rows(committed_default_run())  # every notebook of the committed run that measures one
    assert {row["notebook"] for row in committed} >= {"01", "02", "05", "07", "11", "13"}
    assert committed_default_run(W.PROJECT_ROOT / "no-such-file.json") == {}


def test_batch_sweep_rows_put_each_batch_size_in_numeric_order_with_its_seeds():
    from helpers.committed_runs import batch_sweep_rows, reference_run

    metrics = {
        "batch_size_sweep": {"64": 0.71, "16": 0.70, "128": 0.72},  # keys as JSON writes them: "128" sorts before "16"
        "sweep_seeds": [1, 2],
        "sweep_by_seed": {"64": [0.70, 0.72], "16": [0.69, 0.71], "128": [0.71, 0.73]},
        "sweep_steps": {"16": 40, "64": 10, "128": 6},
        "base_dev_ndcg@10": 0.6,
    }
    rows = batch_sweep_rows(metrics)
    assert [(row["batch size"], row["steps"], row["seed 2"]) for row in rows] == [
        (16, 40, 0.71),
        (64, 10, 0.72),
        (128, 6, 0.73),
    ]
    assert list(rows[0]) == ["batch size", "steps", "dev NDCG@10, mean over seeds", "seed 1", "seed 2", "off the shelf"]
    committed = reference_run("14_batch_size_and_precision")[
        "metrics"
    ]  # recorded as 04: three seeds, three batch sizes
    assert len(batch_sweep_rows(committed)) == len(committed["batch_size_sweep"]) >= 3


def test_reindex_rate_rows_say_what_each_rate_includes():
    from helpers.committed_runs import committed_default_run, reindex_rate_rows

    metrics = {
        "07_decision": {"docs_per_s": 500.0, "throughput_documents": 1000, "numeric_precision": "bf16"},
        "09_serving": {
            "variants": {"pytorch fp32": {"docs_per_s": 250.0}},
            "parameters": {"throughput_documents": 500},
        },
        "16_ray_reindexing": {"ray": {}},
    }  # keys missing: left out, not guessed
    rows = reindex_rate_rows(metrics)
    assert [(row["notebook"], row["precision"]) for row in rows] == [("07", "bf16"), ("09", "fp32")]
    assert rows[0]["minutes for 1,000,000"] == pytest.approx(1_000_000 / 500 / 60)
    assert "pipeline" in rows[0]["what is timed"] and "encoding only" in rows[1]["what is timed"]
    assert len(reindex_rate_rows(committed_default_run())) == 7  # 07, 08, 09 twice, 16 three times
    projected = reindex_rate_rows({"07_decision": {**metrics["07_decision"], "reindex_encoder": "onnx_int8"}})[0]
    assert projected["what is timed"].startswith("projected") and projected["precision"] == "int8"


def test_readable_outputs_show_their_content_as_text():
    import pandas as pd

    from helpers.outputs import markdown, readable

    table = readable(
        pd.DataFrame({"score": [0.12345, 1.5], "name": ["x", "y"]}, index=["a", "bb"]).style.format({"score": "{:.2f}"})
    )
    assert repr(table).splitlines() == ["    score  name", " a   0.12     x", "bb   1.50     y"]
    assert "<table" in table._repr_html_() and "0.12" in table._repr_html_()
    note = markdown("**bold** claim")
    assert repr(note) == note._repr_markdown_() == "**bold** claim"
    approximate = markdown("~19 minutes (~0.16 at `~/prices`)")  # two tildes would strike out the text between them
    assert approximate._repr_markdown_() == "\\~19 minutes (\\~0.16 at `~/prices`)"  # not inside a code span
    assert repr(approximate) == "~19 minutes (~0.16 at `~/prices`)"


def test_intervals_are_written_one_way_everywhere():
    from helpers.outputs import interval_text, with_interval

    assert interval_text((-0.0123, 0.0345)) == "[-0.012, +0.035]"
    assert with_interval(0.021, [0.015, 0.027]) == "+0.021 [+0.015, +0.027]"
    assert with_interval(-0.00131, (-0.0021, -0.0004), digits=4) == "-0.0013 [-0.0021, -0.0004]"
    assert with_interval(0.97, (0.94, 1.0), digits=0, percent=True) == "97% [94%, 100%]"


def test_interval_bars_draws_each_interval_from_its_low_to_its_high_end_and_refuses_one_that_misses_its_point():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.outputs import interval_bars

    fig, ax = plt.subplots()
    bars = interval_bars(ax, [16, 64], [0.01, -0.02], [(-0.01, 0.04), (-0.05, -0.01)], label="difference")
    low_and_high = bars.lines[2][0].get_segments()  # one vertical segment per point
    assert [tuple(map(float, segment[:, 1])) for segment in low_and_high] == [(-0.01, 0.04), (-0.05, -0.01)]
    assert [float(x) for x in bars.lines[0].get_xdata()] == [16.0, 64.0]
    forest = interval_bars(ax, range(2), [0.01, -0.02], [(-0.01, 0.04), (-0.05, -0.01)], horizontal=True)
    assert [tuple(map(float, segment[:, 0])) for segment in forest.lines[2][0].get_segments()] == [
        (-0.01, 0.04),
        (-0.05, -0.01),
    ]
    with pytest.raises(ValueError, match=r"point 1: its interval \(-0.05, -0.03\) does not hold its centre -0.02"):
        interval_bars(ax, [16, 64], [0.01, -0.02], [(-0.01, 0.04), (-0.05, -0.03)])
    with pytest.raises(ValueError, match="2 positions, 2 centres, 1 intervals"):
        interval_bars(ax, [16, 64], [0.01, -0.02], [(-0.01, 0.04)])
    plt.close(fig)


def test_render_page_redraws_only_the_blocks(tmp_path):
    from helpers.results import render_page

    summary = [
        {
            "notebook": "05_evaluation",
            "metrics": NOTEBOOK_05_METRICS,
        }
    ]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    page = "intro\n<!-- headline: summary.json -->\nstale table\n<!-- /headline -->\noutro\n"
    rendered = render_page(page, tmp_path)
    assert rendered.startswith("intro\n<!-- headline: summary.json -->\n| split |") and rendered.endswith(
        "<!-- /headline -->\noutro\n"
    )
    assert "| test | 10 | 100 | 0.500 | 0.600 | +20.0% |" in rendered and "stale" not in rendered
    assert render_page(rendered, tmp_path) == rendered


def test_reranking_line_gives_the_chosen_k_and_the_fusion_when_measured():
    from helpers.result_lines import reranking_line

    metrics = {
        "rerank": {"10": {"ndcg@10": 0.52, "difference": -0.136, "ci": [-0.167, -0.105], "p50_ms": 23.0}},
        "chosen_k": 10,
        "retriever": {"ndcg@10": 0.657},
        "training": {"rows": 4585, "steps": 144},
        "test_queries": 250,
    }
    line = reranking_line(metrics)
    assert (
        "top 10 (k chosen on dev), test NDCG@10 0.657 → 0.520, -0.136 [-0.167, -0.105] (below zero)" in line
        and line.endswith("CPU.")
    )
    metrics["fusion"] = {"k": 20, "weight": 0.3, "difference": 0.012, "ci": [0.004, 0.02]}
    assert reranking_line(metrics).endswith(
        "(k = 20, weight 0.3, both chosen on dev): +0.012 [+0.004, +0.020] (above zero)."
    )
    metrics["fusion"] = {
        "k": 10,
        "weight": 0.0,
        "difference": 0.0,
        "ci": [0.0, 0.0],
    }  # w = 0 is the retriever itself: no verdict
    assert reranking_line(metrics).endswith("dev chose the weight 0: the retriever alone.")
    assert reranking_line({"rerank": {}}) is None


def test_provenance_gives_the_command_to_type_now_and_where_the_typed_one_is_kept():
    from helpers.committed_runs import provenance, provenance_notes

    old = {
        "command": "workbook run 10 -f benchmarks/presets/reference.yaml -p work_dir runs/ref/work (a long note)",
        "machine": "EPYC",
        "date": "2026-12-05",
        "commit": "abc",
        "read_as": "12_remedies_across_seeds",  # typed as notebook 10 before a renumbering
    }
    assert provenance(old) == (
        "reference run: `workbook run 12 -f presets/reference.yaml` on EPYC, 2026-12-05 "
        "(commit abc; the command as typed: benchmarks/results/reference-cpu/reference.json; prerequisites, as "
        "recorded: a long note)"
    )
    assert "`make reference`" in provenance({**old, "command": "make reference", "read_as": ""})  # shown as typed
    assert "workbook run 10 -f" in provenance({key: value for key, value in old.items() if key != "read_as"})
    assert provenance_notes(old) == "a long note" and provenance_notes({**old, "command": "workbook run 10"}) == ""


def test_architectures_line_pairs_scores_of_one_pipeline_and_labels_an_older_run():
    from helpers.result_lines import architectures_line

    row = {"architecture": "BertModel", "pooling": "mean", "test NDCG@10, off the shelf": 0.80, "fine-tuning steps": 10}
    row |= {"test NDCG@10, after fine-tuning": 0.81, "encode speed (texts/s)": 900.0}
    older = architectures_line({"table": {"encoder": row}})
    assert "0.800 (by-hand pooling, fp32) → 0.810 after 10 MNRL steps" in older
    newer = architectures_line({"table": {"encoder": row | {"test NDCG@10, before fine-tuning (encode)": 0.79}}})
    assert "test NDCG@10 0.790 → 0.810 after 10 MNRL steps, 900 texts/s" in newer


def test_notebook_12_runs_notebook_11_first_when_its_scores_are_missing(tmp_path, monkeypatch):
    from helpers.paths import merge_sweep_file

    calls = []

    def fake_run(path, out_dir, parameters, work_dir, cell_timeout=None):
        calls.append((path.stem, dict(parameters)))
        W.write_atomically(merge_sweep_file(work_dir, parameters["dataset"]), "{}")
        return W.NotebookRun(path.stem, "ok", 1.0, "", dict(parameters))

    monkeypatch.setattr(W, "run_notebook", fake_run)
    record = W.ensure_output("11_forgetting_and_merging", merge_sweep_file(tmp_path, "icd10cm"), "icd10cm", tmp_path)
    assert record == tmp_path / "merging" / "icd10cm" / "item_scores.json" and record.exists()
    assert calls == [("11_forgetting_and_merging", {"dataset": "icd10cm"})]
    W.ensure_output("11_forgetting_and_merging", merge_sweep_file(tmp_path, "icd10cm"), "icd10cm", tmp_path)
    assert len(calls) == 1, "scores already there: notebook 11 does not run again"

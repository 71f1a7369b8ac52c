"""The committed runs, read back: the reference run's figures (`benchmarks/results/reference-cpu/reference.json`)
with their provenance, the committed default run's metrics, and the tables that set figures of several notebooks of
one run side by side (off-the-shelf ICD-10-CM scores, reindexing rates). `workbook reference` adds a finished run
to the reference file."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "reference-cpu" / "reference.json"
DEFAULT_SUMMARY = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cpu-default-all" / "summary.json"
PROVENANCE_KEYS = ("command", "machine", "date", "commit")


# a half of a split notebook reads the record of the notebook it came from until it has its own (09 and 11 were split
# on 2026-12-06; 04's batch-size and precision sections became notebook 14 on 2026-12-06, and scale-out moved to 15)
RECORDED_AS = {
    "10_smaller_indexes": "09_serving",
    "12_remedies_across_seeds": "11_forgetting_and_merging",
    "14_batch_size_and_precision": "04_training",
    "15_scaling_out": "14_scaling_out",
}


def provenance(run: Mapping[str, Any]) -> str:
    """Where a committed reference run's figures come from, in one line a learner can act on: the command that runs
    that notebook at the reference settings now, the machine, the date, the commit and the prerequisites recorded
    with it (`provenance_notes`). The command as it was typed (a notebook number or preset path from before a
    renumbering) stays in `reference.json`, which the line names; a record whose notebook cannot be told shows it."""
    typed = re.match(r"workbook run (\d\d)\b", run["command"])
    notebook = run.get("read_as") or (typed.group(1) if typed else "")
    command = f"workbook run {notebook[:2]} -f presets/reference.yaml" if notebook else run["command"]
    notes = f"; prerequisites, as recorded: {provenance_notes(run)}" if provenance_notes(run) else ""
    return (
        f"reference run: `{command}` on {run['machine']}, {run['date']} "
        f"(commit {run['commit']}; the command as typed: benchmarks/results/reference-cpu/reference.json{notes})"
    )


def provenance_notes(run: Mapping[str, Any]) -> str:
    """The notes recorded with a reference run's command (its prerequisites: which run, at which commit, prepared
    the data and models it read), without the parentheses; empty when it has none."""
    command = run["command"]
    return command[command.index(" (") + 2 : -1] if " (" in command and command.endswith(")") else ""


def reference_run(notebook: str, path: str | Path = REFERENCE_FILE) -> dict[str, Any] | None:
    """The committed reference run of one notebook (its powered preset, several training seeds): a dict with its
    `metrics`, `parameters`, `seconds` and provenance (`command`, `machine`, `date`, `commit`, and `read_as`, the
    notebook asked for), or None when no reference run of that notebook has been committed yet. A half of a split
    notebook without a record of its own gets the record of the notebook it came from (`RECORDED_AS`)."""
    path = Path(path)
    if not path.exists():
        return None
    runs = json.loads(path.read_text())
    run = runs.get(notebook) or runs.get(RECORDED_AS.get(notebook, ""))
    return {**run, "read_as": notebook} if run else None


def add_to_reference(
    summary: Sequence[Mapping[str, Any]], provenance: Mapping[str, str], path: str | Path = REFERENCE_FILE
) -> list[str]:
    """Record the notebooks of a finished run (`workbook run`'s summary.json) as the reference run, each with the
    run's provenance (every key of PROVENANCE_KEYS); notebooks already recorded and not in `summary` are kept.
    A notebook that did not finish is refused, naming it. Returns the notebooks recorded."""
    missing = [key for key in PROVENANCE_KEYS if not provenance.get(key)]
    if missing:
        raise ValueError(f"a reference run needs its provenance: {', '.join(missing)} missing")
    failed = [run["notebook"] for run in summary if run.get("status") != "ok" or not run.get("metrics")]
    if failed:
        raise ValueError(f"only finished notebooks go into the reference run: {', '.join(failed)} did not finish")
    path = Path(path)
    runs = json.loads(path.read_text()) if path.exists() else {}
    for run in summary:
        runs[run["notebook"]] = {
            **{key: provenance[key] for key in PROVENANCE_KEYS},
            "seconds": round(run["seconds"], 1),
            "parameters": run["parameters"],
            "metrics": run["metrics"],
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(runs.items())), indent=1, ensure_ascii=False) + "\n")
    return [run["notebook"] for run in summary]


def committed_default_run(path: str | Path = DEFAULT_SUMMARY) -> dict[str, dict[str, Any]]:
    """The committed default run's metrics, notebook -> metrics.json (empty when no run is committed)."""
    path = Path(path)
    if not path.exists():
        return {}
    return {run["notebook"]: run["metrics"] for run in json.loads(path.read_text()) if run.get("metrics")}


# (notebook, split, documents searched, queries, off the shelf, notebook 04's model or None): where each notebook's
# metrics.json keeps the ICD-10-CM scores it measured with the off-the-shelf model
_OFF_THE_SHELF = (
    (
        "01_why_finetune",
        "test (compact)",
        lambda m: m["measured"]["icd10cm"]["corpus"],
        lambda m: m["measured"]["icd10cm"]["test_queries"],
        lambda m: m["measured"]["icd10cm"]["base_ndcg@10"],
        lambda m: None,
    ),
    (
        "02_encoder_vs_decoder",
        "test",
        lambda m: m["corpus_size"],
        lambda m: m["test_queries"],
        lambda m: m["table"]["encoder"]["test NDCG@10, off the shelf"],
        lambda m: None,
    ),
    (
        "05_evaluation",
        "test",
        lambda m: m["corpus_size"],
        lambda m: m["test_queries"],
        lambda m: m["base_ndcg@10"],
        lambda m: m["finetuned_ndcg@10"],
    ),
    (
        "05_evaluation",
        "test_unseen",
        lambda m: m["corpus_size"],
        lambda m: m["test_unseen_queries"],
        lambda m: m["base_ndcg@10_test_unseen"],
        lambda m: m["finetuned_ndcg@10_test_unseen"],
    ),
    (
        "07_decision",
        "dev",
        lambda m: m["parameters"]["dev_corpus_size"],
        lambda m: None,
        lambda m: m["learning_curve"]["base_dev_ndcg@10"],
        lambda m: None,
    ),
    (
        "11_forgetting_and_merging",
        "dev",
        lambda m: m["parameters"]["dev_corpus_size"],
        lambda m: m["parameters"]["dev_queries"],
        lambda m: m["fine_tune_cost"]["icd10cm dev"]["base"],
        lambda m: m["fine_tune_cost"]["icd10cm dev"]["finetuned"],
    ),
    (
        "11_forgetting_and_merging",
        "test",
        lambda m: m["parameters"]["test_corpus_size"],
        lambda m: None,
        lambda m: m["test"]["base"]["ndcg@10"],
        lambda m: m["test"]["fine-tuned"]["ndcg@10"],
    ),
    (
        "13_synthetic_pairs",
        "test (sample)",
        lambda m: m["test_corpus"],
        lambda m: m["test_queries"],
        lambda m: m["base_ndcg@10"]["test"],
        lambda m: m["comparisons"]["test: notebook 04 - base"]["ndcg@10"],
    ),
    (
        "13_synthetic_pairs",
        "test_unseen, only the documents notebook 13 generated queries for",
        lambda m: m["test_unseen_corpus"],
        lambda m: m["test_unseen_queries"],
        lambda m: m["base_ndcg@10"]["test_unseen"],
        lambda m: m["comparisons"]["test_unseen: notebook 04 - base"]["ndcg@10"],
    ),
)


def batch_sweep_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Notebook 14's batch-size sweep from its `metrics`, one row per batch size (smallest first): the steps of a
    run, the dev NDCG@10 of each training seed and their mean, and the off-the-shelf model's dev score beside them."""
    rows = []
    for batch in sorted(metrics["batch_size_sweep"], key=int):
        by_seed = dict(zip((f"seed {seed}" for seed in metrics["sweep_seeds"]), metrics["sweep_by_seed"][batch]))
        rows.append(
            {"batch size": int(batch), "steps": metrics["sweep_steps"].get(batch)}
            | {"dev NDCG@10, mean over seeds": metrics["batch_size_sweep"][batch], **by_seed}
            | {"off the shelf": metrics["base_dev_ndcg@10"]}
        )
    return rows


def off_the_shelf_rows(metrics: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The off-the-shelf model's ICD-10-CM NDCG@10 in every notebook of a run that measures it, with the number of
    documents searched, and notebook 04's model's score where the same notebook scored it on the same documents
    (with the relative gain): the figures a learner meets across the course, side by side, sorted by split and
    size. `metrics` maps notebook -> metrics.json (`committed_default_run()`); notebooks or keys a run lacks are
    left out, and a notebook run on another data set is left out too."""
    rows = []
    for notebook, split, documents, queries, base, tuned in _OFF_THE_SHELF:
        m = metrics.get(notebook)
        if not m or m.get("dataset", m.get("parameters", {}).get("dataset", "icd10cm")) != "icd10cm":
            continue
        try:
            row = {
                "notebook": notebook[:2],
                "split": split,
                "documents searched": int(documents(m)),
                "queries": queries(m),
                "off the shelf": float(base(m)),
                "notebook 04's model": tuned(m),
            }
        except (KeyError, TypeError):
            continue
        row["relative gain"] = (
            row["notebook 04's model"] / row["off the shelf"] - 1 if row["notebook 04's model"] is not None else None
        )
        rows.append(row)
    return sorted(rows, key=lambda row: (row["split"].split()[0], row["documents searched"]))


# (notebook, what is timed, model, documents/s, documents timed): where each notebook's metrics.json keeps a rate at
# which it embedded documents, and what the rate includes
_REINDEX_RATES = (
    (
        "07_decision",
        "notebook 08's pipeline (encode, hash, write to LanceDB), one process",
        "off the shelf",
        lambda m: m["docs_per_s"],
        lambda m: m["throughput_documents"],
    ),
    (
        "08_reindexing",
        "the same pipeline: the green build",
        "fine-tuned",
        lambda m: m["docs_per_s"],
        lambda m: m["documents"],
    ),
    (
        "09_serving",
        "encoding only, PyTorch in fp32",
        "fine-tuned",
        lambda m: m["variants"]["pytorch fp32"]["docs_per_s"],
        lambda m: m["parameters"]["throughput_documents"],
    ),
    (
        "09_serving",
        "encoding only, int8 ONNX",
        "fine-tuned, int8 weights",
        lambda m: m["variants"]["onnx int8"]["docs_per_s"],
        lambda m: m["parameters"]["throughput_documents"],
    ),
    (
        "16_ray_reindexing",
        "the same pipeline, one process, beside a running Ray",
        "off the shelf",
        lambda m: m["ray"]["single_process"]["docs_per_s"],
        lambda m: m["ray"]["documents"],
    ),
    (
        "16_ray_reindexing",
        "encoding only, one Ray worker on one core (of 2 running)",
        "off the shelf",
        lambda m: m["projection"]["cpu_docs_per_s_per_worker"],
        lambda m: m["ray"]["documents"],
    ),
    (
        "16_ray_reindexing",
        "the Ray pipeline end to end, 2 workers (start-up included)",
        "off the shelf",
        lambda m: m["ray"]["workers"]["2"]["docs_per_s"],
        lambda m: m["ray"]["documents"],
    ),
)


def reindex_rate_rows(metrics: Mapping[str, Mapping[str, Any]], documents: int = 1_000_000) -> list[dict[str, Any]]:
    """Every rate at which a run's notebooks embedded documents, with what it includes (the whole pipeline or encoding
    alone, the backend, the cores), the model, its numeric precision and the minutes it implies for `documents`
    documents: the reindex figures a learner meets across the course, side by side. `metrics` maps notebook ->
    metrics.json (`committed_default_run()`); notebooks or keys a run lacks are left out."""
    rows = []
    for notebook, timed, model, rate, count in _REINDEX_RATES:
        m = metrics.get(notebook)
        if not m:
            continue
        try:
            per_second, timed_documents = float(rate(m)), int(count(m))
        except (KeyError, TypeError):
            continue
        if notebook == "07_decision" and m.get("reindex_encoder") == "onnx_int8":  # a projection, not a timed pipeline
            timed = "projected: notebook 08's pipeline rate times the int8 ONNX copy's measured speed-up"
        precision = "fp32" if "fp32" in timed else "int8" if "int8" in timed else m.get("numeric_precision", "fp32")
        rows.append(
            {
                "notebook": notebook[:2],
                "what is timed": timed,
                "model": model,
                "precision": precision,
                "documents timed": timed_documents,
                "documents/s": per_second,
                f"minutes for {documents:,}": documents / per_second / 60,
            }
        )
    return rows

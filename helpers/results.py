"""The README's results, rendered from a run's `summary.json` (never typed by hand): `workbook results RUN_DIR`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "reference-cpu" / "reference.json"
PROVENANCE_KEYS = ("command", "machine", "date", "commit")


def results_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The held-out test table of notebook 05, the training line of notebook 04, and the `readme_line` that other
    notebooks write into their metrics (each states its own headline figures)."""
    by_name = {run["notebook"]: run.get("metrics") or {} for run in runs}
    evaluation, training = by_name["05_evaluation"], by_name.get("04_training", {})
    lines = [
        "| split | queries | corpus | NDCG@10 off the shelf | NDCG@10 fine-tuned | relative gain | 95% CI of the difference | p (Fisher) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, suffix in (("test", ""), ("test_unseen", "_test_unseen")):
        if f"base_ndcg@10{suffix}" not in evaluation:
            continue
        low, high = evaluation[f"ci95_ndcg@10_diff{suffix}"]
        p_value = evaluation[f"p_value_fisher{suffix}"]
        lines.append(
            f"| {split} | {evaluation[f'{split}_queries']} | {evaluation['corpus_size']} "
            f"| {evaluation[f'base_ndcg@10{suffix}']:.3f} | {evaluation[f'finetuned_ndcg@10{suffix}']:.3f} "
            f"| {evaluation[f'relative_gain_ndcg@10{suffix}']:+.1%} | [{low:+.3f}, {high:+.3f}] "
            f"| {f'{p_value:.4f}' if p_value >= 0.001 else '< 0.001'} |"
        )
    if training:
        lines += [
            "",
            f"Training: {training['train_examples']} examples ({'triplets' if training['hard_negatives'] else 'pairs'}), "
            f"{training['loss']}, batch {training['batch_size']}, {training['epochs']} epoch(s), "
            f"learning rate {training['learning_rate']}, {training['steps']} steps in {training['train_seconds']:.0f} s "
            f"on {training['device']} ({training['precision']}).",
        ]
    notes = []
    for name in sorted(by_name):
        if line := LINES.get(name, lambda metrics: metrics.get("readme_line"))(by_name[name]):
            notes.append(line)
            if name == "08_serving" and (variants := by_name[name].get("variants")):  # its table follows its line
                notes += ["", *serving_table(variants), ""]
    while notes and not notes[-1]:
        notes.pop()
    lines += ["", *notes] if notes else []
    return "\n".join(lines)


def synthetic_pairs_line(metrics: Mapping[str, Any]) -> str | None:
    """Notebook 10's line: how many generated queries were kept, and each comparison's difference, interval and
    verdict (its two questions: generated against real pairs on test, generated pairs for unlabelled codes on
    test_unseen)."""
    if "comparisons" not in metrics:  # a run from before the two questions: the line it wrote itself
        return metrics.get("readme_line")
    seeds = len(metrics["training_seeds"])
    rows = "; ".join(f"{name} {row['difference']:+.3f} [{row['95% CI'][0]:+.3f}, {row['95% CI'][1]:+.3f}] ({row['verdict']})"
                     for name, row in metrics["comparisons"].items())
    return (f"Notebook 10, synthetic pairs from {metrics['generator']} ({metrics['kept']} of {metrics['generated']} queries kept "
            f"for labelled documents, {metrics['kept_unlabelled']} of {metrics['unlabelled_generated']} for unlabelled ones; "
            f"{metrics['recipe']['max_steps']} steps per fine-tune, {seeds} training seed(s)), NDCG@10 differences on samples "
            f"of test ({metrics['test_queries']} queries) and test_unseen ({metrics['test_unseen_queries']}): {rows}.")


# notebooks whose README line is rendered here from their metrics (the others still write a `readme_line`)
LINES = {"10_synthetic_pairs": synthetic_pairs_line}


def serving_table(variants: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Notebook 08's variants, one row each: test NDCG@10 and its paired interval against the reference, the
    encoder's documents/s, single-query latency and index size."""
    lines = ["| variant | encoder | NDCG@10 | 95% CI of the difference | relative | documents/s | p50 ms | p95 ms | index MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in sorted(variants.items(), key=lambda item: _serving_order(item[0])):
        low, high = row["ci"]
        lines.append(f"| {name} | {row['encoder']} | {row['ndcg@10']:.3f} | [{low:+.3f}, {high:+.3f}] "
                     f"| {row['relative_change']:+.1%} | {row['docs_per_s']:.0f} | {row['p50_ms']:.1f} "
                     f"| {row['p95_ms']:.1f} | {row['index_mb']:.2f} |")
    return lines


# the reading order of notebook 08's table (metrics.json stores its variants sorted by name)
_SERVING_GROUPS = ("pytorch fp32", "onnx fp32", "onnx int8", "plain", "matryoshka", "int8 vectors", "binary vectors",
                   "static", "deployed")


def _serving_order(name: str) -> tuple[int, int, str]:
    group = next((index for index, prefix in enumerate(_SERVING_GROUPS) if name.startswith(prefix)), len(_SERVING_GROUPS))
    words = name.split()
    dims = int(words[-2]) if len(words) > 2 and words[-1] == "dims" and words[-2].isdigit() else 0
    return group, -dims, name


def reference_run(notebook: str, path: str | Path = REFERENCE_FILE) -> dict[str, Any] | None:
    """The committed reference run of one notebook (its powered preset, several training seeds): a dict with its
    `metrics`, `parameters`, `seconds` and provenance (`command`, `machine`, `date`, `commit`), or None when no
    reference run of that notebook has been committed yet."""
    path = Path(path)
    if not path.exists():
        return None
    runs = json.loads(path.read_text())
    return runs.get(notebook)


def add_to_reference(summary: Sequence[Mapping[str, Any]], provenance: Mapping[str, str],
                     path: str | Path = REFERENCE_FILE) -> list[str]:
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
        runs[run["notebook"]] = {**{key: provenance[key] for key in PROVENANCE_KEYS}, "seconds": round(run["seconds"], 1),
                                 "parameters": run["parameters"], "metrics": run["metrics"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(runs.items())), indent=1, ensure_ascii=False) + "\n")
    return [run["notebook"] for run in summary]

"""The README's results, rendered from a run's `summary.json` (never typed by hand): `workbook results RUN_DIR`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


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
        if line := by_name[name].get("readme_line"):
            notes.append(line)
            if name == "08_serving" and (variants := by_name[name].get("variants")):  # its table follows its line
                notes += ["", *serving_table(variants), ""]
    while notes and not notes[-1]:
        notes.pop()
    lines += ["", *notes] if notes else []
    return "\n".join(lines)


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

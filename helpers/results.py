"""The README's and docs/results.md's rendered blocks (the headline table, every notebook's line, the reference run's
lines), drawn from a run's `summary.json` (never typed by hand): `workbook results RUN_DIR`. Each notebook's line
is written by `helpers.result_lines`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .result_lines import LINES, REFERENCE_LINES


def headline_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The headline of a run: notebook 05's held-out test table (off the shelf against fine-tuned, with the paired
    interval and Fisher's p) and notebook 04's training line. The README shows it for the committed default run."""
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
    return "\n".join(lines)


def results_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The headline (`headline_table`), then one line per other notebook, rendered from its metrics by `LINES` (a
    summary from before those renderers falls back on the `readme_line` the notebook wrote itself)."""
    by_name = {run["notebook"]: run.get("metrics") or {} for run in runs}
    lines = headline_table(runs).splitlines()
    notes = []
    for name in sorted(by_name):
        if line := (LINES[name](by_name[name]) if name in LINES else None) or by_name[name].get("readme_line"):
            notes.append(line)
            if name in SERVING_NOTEBOOKS and (variants := by_name[name].get("variants")):  # its table follows its line
                notes += ["", *serving_table(variants), ""]
    while notes and not notes[-1]:
        notes.pop()
    lines += ["", *notes] if notes else []
    return "\n".join(lines)


def reference_lines(reference: Mapping[str, Mapping[str, Any]]) -> str:
    """docs/results.md's lines for the committed reference run (`reference.json`): one per notebook that has a
    renderer here, with its provenance."""
    lines = []
    for notebook, run in sorted(reference.items()):
        if notebook in REFERENCE_LINES and (line := REFERENCE_LINES[notebook](run["metrics"])):
            lines.append(
                f"{line} (Reference run of {run['date']}, commit {run['commit']}, {run['seconds'] / 60:.0f} minutes: "
                f"`{run['command']}`.)"
            )
    return "\n".join(lines)


RENDERED_BLOCKS = {"headline": headline_table, "results": results_table}


def render_page(text: str, root: Path) -> str:
    """`text` (the README or a docs page) with every rendered block redrawn from the file it names:
    `<!-- headline: PATH -->`, `<!-- results: PATH -->` (a run's summary.json) and `<!-- reference: PATH -->`
    (reference.json), each closed by `<!-- /KIND -->`. What lies outside the blocks is left as it is."""
    import re

    def redraw(match: "re.Match[str]") -> str:
        kind, path = match.group(1), root / match.group(2)
        content = json.loads(path.read_text(encoding="utf-8"))
        body = reference_lines(content) if kind == "reference" else RENDERED_BLOCKS[kind](content)
        return f"<!-- {kind}: {match.group(2)} -->\n{body.strip()}\n<!-- /{kind} -->"

    return re.sub(r"<!-- (headline|results|reference): (\S+) -->\n.*?\n<!-- /\1 -->", redraw, text, flags=re.S)


SERVING_NOTEBOOKS = ("09_serving", "10_smaller_indexes")  # their tables of variants follow their lines


def serving_table(variants: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Notebook 09's encoders or notebook 10's ways of storing vectors, one row each: test NDCG@10 and its paired interval against the reference, the
    encoder's documents/s, single-query latency and index size."""
    lines = [
        "| variant | encoder | NDCG@10 | 95% CI of the difference | relative | documents/s | p50 ms | p95 ms | index MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in sorted(variants.items(), key=lambda item: _serving_order(item[0])):
        low, high = row["ci"]
        lines.append(
            f"| {name} | {row['encoder']} | {row['ndcg@10']:.3f} | [{low:+.3f}, {high:+.3f}] "
            f"| {row['relative_change']:+.1%} | {row['docs_per_s']:.0f} | {row['p50_ms']:.1f} "
            f"| {row['p95_ms']:.1f} | {row['index_mb']:.2f} |"
        )
    return lines


# the reading order of notebooks 09 and 10's tables (metrics.json stores its variants sorted by name)
_SERVING_GROUPS = (
    "pytorch fp32",
    "onnx fp32",
    "onnx int8",
    "plain",
    "matryoshka",
    "int8 vectors",
    "binary vectors",
    "static",
    "deployed",
)


def _serving_order(name: str) -> tuple[int, int, str]:
    group = next(
        (index for index, prefix in enumerate(_SERVING_GROUPS) if name.startswith(prefix)), len(_SERVING_GROUPS)
    )
    words = name.split()
    dims = int(words[-2]) if len(words) > 2 and words[-1] == "dims" and words[-2].isdigit() else 0
    return group, -dims, name

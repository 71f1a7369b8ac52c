"""What the notebooks measure for the decision rule of notebook 07, kept in the run's `work_dir` and read back by
later notebooks: 07's own inputs (baseline, target, learning curve, throughput), notebook 06's reranker result and
notebook 11's out-of-domain cost; and the rule asked again with them (`decide_again`, notebook 13)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .decision import should_finetune_measured
from .paths import dataset_label
from .storage import write_atomically


def decision_dir(work_dir: str | Path, dataset: str) -> Path:
    """Where notebooks 06, 07 and 11 leave their measured decision inputs for later notebooks of the same run."""
    return Path(work_dir) / "decision" / dataset_label(dataset)


def save_decision_inputs(
    work_dir: str | Path,
    dataset: str,
    baseline: float,
    target: float,
    corpus_size: int,
    examples: int,
    curve: Mapping[int, float],
    docs_per_second: float,
) -> Path:
    """Notebook 07's measured inputs of `should_finetune_measured`, as JSON in the run's `work_dir`."""
    inputs = {
        "baseline": baseline,
        "target": target,
        "corpus_size": corpus_size,
        "examples": examples,
        "curve": {str(size): gain for size, gain in curve.items()},
        "docs_per_second": docs_per_second,
    }
    return write_atomically(decision_dir(work_dir, dataset) / "inputs.json", json.dumps(inputs, indent=2))


def load_decision_inputs(work_dir: str | Path, dataset: str) -> dict[str, Any] | None:
    """What `save_decision_inputs` wrote (the curve's sizes back as integers); None if notebook 07 has not run here."""
    path = decision_dir(work_dir, dataset) / "inputs.json"
    if not path.exists():
        return None
    inputs = json.loads(path.read_text())
    return {**inputs, "curve": {int(size): gain for size, gain in inputs["curve"].items()}}


def save_out_of_domain_cost(
    work_dir: str | Path, dataset: str, tasks: Mapping[str, Mapping[str, Any]], merge: Mapping[str, Any] | None
) -> Path:
    """Notebook 11's measurement: per task, the fine-tune's NDCG@10 (or Spearman) change and its 95% interval
    (`{"difference": d, "ci": [low, high]}`), and the chosen merge (`alpha`, `test_gain_kept`)."""
    for task, row in tasks.items():
        if not {"difference", "ci"} <= set(row) or len(row["ci"]) != 2:
            raise ValueError(f"task {task!r}: each task needs a 'difference' and a two-sided 'ci', got {dict(row)}")
    cost = {"tasks": tasks, "merge": merge}
    return write_atomically(decision_dir(work_dir, dataset) / "out_of_domain.json", json.dumps(cost, indent=2))


def load_out_of_domain_cost(work_dir: str | Path, dataset: str) -> dict[str, Any] | None:
    """What `save_out_of_domain_cost` wrote; None if notebook 11 has not run in this `work_dir`."""
    path = decision_dir(work_dir, dataset) / "out_of_domain.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_reranker_result(
    work_dir: str | Path, dataset: str, k: int, difference: float, ci: Sequence[float], ndcg: float
) -> Path:
    """The reranking notebook's measurement at its chosen `k`: test NDCG@10 with the reranker (`ndcg`), its
    difference from the fine-tuned retriever alone and that difference's 95% interval."""
    if len(ci) != 2 or ci[0] > ci[1]:
        raise ValueError(f"ci={list(ci)} is not a 95% interval (low, high)")
    result = {"k": int(k), "difference": float(difference), "ci": [float(ci[0]), float(ci[1])], "ndcg@10": float(ndcg)}
    return write_atomically(decision_dir(work_dir, dataset) / "reranker.json", json.dumps(result, indent=2))


def load_reranker_result(work_dir: str | Path, dataset: str) -> dict[str, Any] | None:
    """What `save_reranker_result` wrote; None if the reranking notebook has not run in this `work_dir`."""
    path = decision_dir(work_dir, dataset) / "reranker.json"
    return json.loads(path.read_text()) if path.exists() else None


def decide_again(
    work_dir: str | Path, dataset: str, examples: Mapping[str, int | None], **measured: Any
) -> dict[str, dict[str, Any]] | None:
    """Notebook 07's measured rule asked again by a later notebook, with 07's saved inputs (`save_decision_inputs`):
    once per label of `examples` (label -> training examples; None: the number notebook 07 decided with), with
    notebook 11's out-of-domain cost and notebook 06's reranker result where they ran in this `work_dir`, and the
    asking notebook's own measurement in `measured` (e.g. `synthetic=`). None if notebook 07 has not run here."""
    inputs = load_decision_inputs(work_dir, dataset)
    if inputs is None:
        return None
    elsewhere = {
        "out_of_domain": load_out_of_domain_cost(work_dir, dataset),
        "reranker": load_reranker_result(work_dir, dataset),
        **measured,
    }
    return {
        label: should_finetune_measured(
            inputs["baseline"],
            inputs["target"],
            inputs["corpus_size"],
            inputs["examples"] if count is None else count,
            inputs["curve"],
            inputs["docs_per_second"],
            **elsewhere,
        )
        for label, count in examples.items()
    }

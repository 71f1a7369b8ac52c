"""Should you fine-tune your embedding model? The source chapter's rule of thumb, and the rule notebook 07 builds on
measurements instead.

The source chapter's weak spots: the expected improvement is the gap itself times 1.5, capped at 0.25 (so a bigger gap
"predicts" a bigger gain, whatever the data), and 1,000 training pairs is a fixed threshold. The measured rule
reads the expected gain off a learning curve and the reindex time off a measured throughput; notebooks 10 and 11
add what they measure (the fine-tune's out-of-domain cost, what synthetic pairs did) as reasons. Notebook 07
saves its measured inputs into the run's `work_dir`, and notebook 10 its out-of-domain cost, so that a later
notebook can ask the rule again with everything measured so far.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .paths import dataset_label
from .storage import write_atomically

CHAPTER_MIN_PAIRS = 1_000
CHAPTER_MIN_GAP = 0.05
RECOMMENDATIONS = ("off-the-shelf", "generate_data_first", "fine-tune", "fine-tune + improve retrieval pipeline")


def check_decision_inputs(baseline_ndcg: float, target_ndcg: float, corpus_size: int, num_training_pairs: int) -> None:
    """Refuse an NDCG outside [0, 1] and a negative corpus size or number of training pairs."""
    for name, value in (("baseline_ndcg", baseline_ndcg), ("target_ndcg", target_ndcg)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} is not an NDCG: it must lie between 0 and 1")
    if corpus_size < 0 or num_training_pairs < 0:
        raise ValueError(f"corpus_size={corpus_size} and num_training_pairs={num_training_pairs} cannot be negative")


def should_finetune_embeddings(
    baseline_ndcg: float, target_ndcg: float, corpus_size: int, num_training_pairs: int, reindex_cost_hours: float
) -> dict[str, Any]:
    """The source chapter's decision helper, same inputs and outputs: a recommendation with its reasons.

    The gap must exceed 0.05 NDCG, there must be 1,000 training pairs, and fine-tuning is assumed to add
    1.5 × the gap (at most 0.25). Kept for comparison with the measured rule of notebook 07.
    """
    check_decision_inputs(baseline_ndcg, target_ndcg, corpus_size, num_training_pairs)
    if reindex_cost_hours < 0:
        raise ValueError(f"reindex_cost_hours={reindex_cost_hours} cannot be negative")
    gap = target_ndcg - baseline_ndcg
    reasons = []
    recommendation = "off-the-shelf"
    if gap <= CHAPTER_MIN_GAP:
        reasons.append("Gap to target is small (<5%); fine-tuning unlikely to help")
    elif num_training_pairs < CHAPTER_MIN_PAIRS:
        reasons.append("Need at least 1,000 training pairs; consider generating synthetic pairs with an LLM")
        recommendation = "generate_data_first"
    else:
        expected_ndcg = baseline_ndcg + min(gap * 1.5, 0.25)
        reasons.append(f"Expected NDCG after fine-tuning: ~{expected_ndcg:.2f}")
        if expected_ndcg >= target_ndcg:
            recommendation = "fine-tune"
        else:
            recommendation = "fine-tune + improve retrieval pipeline"
            reasons.append("Fine-tuning alone may not close the gap; consider hybrid retrieval (BM25 + dense)")
    reasons.append(f"Reindexing will take ~{reindex_cost_hours:.1f} hours for {corpus_size:,} documents")
    return {
        "recommendation": recommendation,
        "baseline": baseline_ndcg,
        "target": target_ndcg,
        "gap": gap,
        "reasons": reasons,
    }


def same_training_set_size(measured: int, ours: int) -> bool:
    """Whether a learning curve measured on `measured` training examples was measured on our training set of `ours`:
    equal within 0.1%, because mining hard negatives in bf16 is not bit-identical across CPUs (an AMX Xeon kept
    7,597 ICD-10-CM triplets where an AVX512-BF16 EPYC kept 7,598)."""
    return abs(measured - ours) <= ours / 1000


def expected_relative_gain(curve: Mapping[int, float], examples: int) -> float:
    """Relative NDCG@10 gain expected with `examples` training examples, read off a measured curve {size: gain}:
    linear in log(examples) between measured sizes, zero with one example, flat beyond the largest size."""
    sizes = sorted(curve)
    return float(np.interp(np.log(max(examples, 1)), np.log([1, *sizes]), [0.0, *(curve[size] for size in sizes)]))


def _out_of_domain_reason(cost: Mapping[str, Any]) -> str:
    """Notebook 10's measurement as a reason: the tasks the fine-tune lost on (interval below zero), and the merge."""
    losses = {task: row for task, row in cost["tasks"].items() if row["ci"][1] < 0}
    if not losses:
        return (
            "Notebook 10 measured no out-of-domain loss separable from zero ("
            + ", ".join(cost["tasks"])
            + "): the fine-tune itself can serve those tasks too"
        )
    merge = cost.get("merge")
    return (
        "The fine-tune lost NDCG@10 on tasks it was not tuned for: "
        + ", ".join(
            f"{task} {row['difference']:+.3f} [{row['ci'][0]:+.3f}, {row['ci'][1]:+.3f}]"
            for task, row in losses.items()
        )
        + " (notebook 10); if the model also serves such queries, consider a merge with the base model, checked on those "
        "tasks as notebook 10 checks it"
        + (
            f" (α = {merge['alpha']:g} kept {merge['test_gain_kept']:.0%} of the in-domain test gain there)"
            if merge and merge.get("test_gain_kept") is not None
            else ""
        )
    )


def _synthetic_reason(synthetic: Mapping[str, Any]) -> str:
    """Notebook 11's measurement as a reason: did generated pairs gain on real held-out queries, and did as many real
    pairs (the same documents), so that "no gain" can be told apart from "too few pairs of any kind"."""
    gain, (low, high) = synthetic["synthetic_gain"], synthetic["synthetic_ci"]
    real_gain, (real_low, real_high) = synthetic["real_gain"], synthetic["real_ci"]
    measured = (
        f"{synthetic['pairs']} synthetic pairs from {synthetic['generator']} changed test NDCG@10 by {gain:+.3f} "
        f"[{low:+.3f}, {high:+.3f}] (notebook 11; as many real pairs: {real_gain:+.3f} [{real_low:+.3f}, {real_high:+.3f}])"
    )
    if low > 0:
        return (
            measured + ": generating pairs is worth trying here; keep comparing them with real ones on held-out queries"
        )
    if high < 0:
        return (
            measured
            + ": a loss, so do not train on such pairs; collect real pairs, or generate with a model that knows the domain"
        )
    if real_low > 0:
        return (
            measured
            + ": no gain separable from zero where real pairs gained, so collect real pairs, or generate with a model that knows the domain"
        )
    return (
        measured + ": neither kind gained measurably at this count; compare them again with more pairs before choosing"
    )


def reranker_gained(reranker: Mapping[str, Any] | None) -> bool:
    """Whether a measured reranker (`load_reranker_result`) gained on the retriever alone: its interval above zero."""
    return reranker is not None and reranker["ci"][0] > 0


def _pipeline_reason(expected: float, target: float, reranker: Mapping[str, Any] | None) -> str:
    """What to add to a fine-tune that falls short: a reranker only where one was measured to gain."""
    short = f"Expected NDCG after fine-tuning: ~{expected:.2f}, short of {target:.2f}; "
    if reranker is None:
        return (
            short + "try better data, or a hybrid with BM25 where it measures better; whether a reranker (a second "
            "model that rescores the top results) helps is not among these inputs (notebook 06 measures one)"
        )
    measured = (
        f"a reranker of the top {reranker['k']} changed test NDCG@10 by {reranker['difference']:+.3f} "
        f"[{reranker['ci'][0]:+.3f}, {reranker['ci'][1]:+.3f}] over the fine-tuned retriever (notebook 06)"
    )
    if reranker_gained(reranker):
        return short + f"add the reranker: {measured}; also better data, or a hybrid with BM25 where it measures better"
    outcome = "a loss" if reranker["ci"][1] < 0 else "no gain separable from zero"
    return short + f"try better data, or a hybrid with BM25 where it measures better ({measured}: {outcome})"


def should_finetune_measured(
    baseline: float,
    target: float,
    corpus_size: int,
    examples: int,
    curve: Mapping[int, float],
    docs_per_second: float,
    price_per_hour: float = 0.0,
    min_useful_gain: float = 0.02,
    max_reindex_hours: float = 24.0,
    out_of_domain: Mapping[str, Any] | None = None,
    synthetic: Mapping[str, Any] | None = None,
    reranker: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The source chapter's question, answered from a measured learning curve and throughput: a recommendation with reasons.

    `out_of_domain` (notebook 10's `load_out_of_domain_cost`) adds the fine-tune's cost on other tasks as a reason
    to any advice to fine-tune; `synthetic` (notebook 11's result) adds what generated pairs did to advice to get
    more data first; `reranker` (the reranking notebook's `load_reranker_result`) decides whether advice to improve
    the retrieval pipeline names a reranker: only when one was measured to gain. None of them changes the
    recommendation: they are measurements on one data set, reported as such.
    """
    check_decision_inputs(baseline, target, corpus_size, examples)
    if not curve:
        raise ValueError(
            "the learning curve is empty: measure the gain at one training-set size at least (notebook 07)"
        )
    if docs_per_second <= 0:
        raise ValueError(f"docs_per_second={docs_per_second} must be positive: it is a measured encoding rate")
    expected = min(1.0, baseline * (1 + expected_relative_gain(curve, examples)))
    larger = [gain for size, gain in curve.items() if size > examples]  # what more data did on the measured curve
    best = min(1.0, baseline * (1 + max(larger))) if larger else expected
    reaching = [size for size in sorted(curve) if baseline * (1 + curve[size]) >= target]
    hours = corpus_size / docs_per_second / 3600
    smallest = min(curve)
    if target <= baseline:
        recommendation, reasons = (
            "off-the-shelf",
            [f"The off-the-shelf model already meets the target ({baseline:.2f} ≥ {target:.2f})"],
        )
    elif examples < smallest:  # below the measured range the curve says nothing: no gain is expected from it
        expected = baseline
        recommendation = "generate_data_first" if best - baseline >= min_useful_gain else "off-the-shelf"
        reasons = [
            f"With {examples:,} examples, fewer than the smallest training set the curve measured ({smallest:,}), the curve "
            "predicts nothing"
            + (
                f"; with more it reaches ~{best:.2f}: collect or generate more pairs first"
                if recommendation == "generate_data_first"
                else ", and no measured size gains usefully"
            )
        ]
    elif expected - baseline < min_useful_gain and best - baseline >= min_useful_gain:
        recommendation, reasons = (
            "generate_data_first",
            [
                f"With {examples:,} examples the measured curve predicts only ~{expected:.2f}; "
                f"with more it reaches ~{best:.2f}: collect or generate more pairs first"
            ],
        )
    elif expected - baseline < min_useful_gain:
        recommendation, reasons = (
            "off-the-shelf",
            [
                "The measured learning curve shows no useful gain with this many examples"
                + ("" if larger else ", and it was not measured with more: beyond its largest size the gain is unknown")
            ],
        )
    elif expected >= target:
        recommendation, reasons = (
            "fine-tune",
            [f"Expected NDCG after fine-tuning with {examples:,} examples: ~{expected:.2f} (measured curve)"],
        )
    else:
        recommendation, reasons = (
            "fine-tune + improve retrieval pipeline",
            [_pipeline_reason(expected, target, reranker)],
        )
    if target > baseline and reaching:
        reasons.append(
            f"On the measured curve's mean gains (not their intervals), {reaching[0]:,} examples reach the target"
        )
    if synthetic is not None and recommendation == "generate_data_first":
        reasons.append(_synthetic_reason(synthetic))
    if out_of_domain is not None and recommendation.startswith("fine-tune"):
        reasons.append(_out_of_domain_reason(out_of_domain))
    duration = f"~{hours * 60:.1f} minutes" if hours < 1 else f"~{hours:.1f} hours"
    reasons.append(
        f"Reindexing {corpus_size:,} documents takes {duration} at a measured {docs_per_second:,.0f} docs/s"
        + (f" (~{hours * price_per_hour:,.2f} at {price_per_hour:g} per hour)" if price_per_hour else "")
    )
    if hours > max_reindex_hours and recommendation.startswith("fine-tune"):
        reasons.append(
            f"Over {max_reindex_hours:g} hours: reindex on a GPU or in parallel, and incrementally (re-encoding only what changed: notebook 08)"
        )
    return {
        "recommendation": recommendation,
        "baseline": baseline,
        "target": target,
        "gap": target - baseline,
        "expected_ndcg": expected,
        "reindex_hours": hours,
        "reasons": reasons,
    }


def decision_dir(work_dir: str | Path, dataset: str) -> Path:
    """Where notebooks 07 and 10 leave their measured decision inputs for later notebooks of the same run."""
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
    """Notebook 10's measurement: per task, the fine-tune's NDCG@10 (or Spearman) change and its 95% interval
    (`{"difference": d, "ci": [low, high]}`), and the chosen merge (`alpha`, `test_gain_kept`)."""
    for task, row in tasks.items():
        if not {"difference", "ci"} <= set(row) or len(row["ci"]) != 2:
            raise ValueError(f"task {task!r}: each task needs a 'difference' and a two-sided 'ci', got {dict(row)}")
    cost = {"tasks": tasks, "merge": merge}
    return write_atomically(decision_dir(work_dir, dataset) / "out_of_domain.json", json.dumps(cost, indent=2))


def load_out_of_domain_cost(work_dir: str | Path, dataset: str) -> dict[str, Any] | None:
    """What `save_out_of_domain_cost` wrote; None if notebook 10 has not run in this `work_dir`."""
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

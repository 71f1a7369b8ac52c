"""Should you fine-tune your embedding model? The source chapter's rule of thumb, and the rule notebook 07 builds on
measurements instead.

The source chapter's weak spots: the expected improvement is the gap itself times 1.5, capped at 0.25 (so a bigger gap
"predicts" a bigger gain, whatever the data), and 1,000 training pairs is a fixed threshold. The measured rule
reads the expected gain off a learning curve and the reindex time off a measured throughput; notebooks 11 and 13
add what they measure (the fine-tune's out-of-domain cost, what synthetic pairs did) as reasons. What each
notebook measured is kept in the run's `work_dir` by `decision_inputs`, so that a later notebook can ask the rule
again with everything measured so far.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


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


def reference_curve_for(
    reference: Mapping[str, Any] | None,
    dataset: str,
    base_model: str,
    dev_corpus_size: int,
    training_examples: int,
    same_recipe: bool,
) -> tuple[dict[str, list[float]] | None, str]:
    """The learning curve of a committed reference run of notebook 07 (`committed_runs.reference_run`), if it was
    measured on this data set, base model, dev corpus size and recipe (`same_recipe`), with a full set of
    `training_examples` (`same_training_set_size`), as columns "training examples", "relative gain", "gain CI low"
    and "gain CI high", and a label naming its provenance; else None and why this run's curve is read instead."""
    curve = reference["metrics"].get("learning_curve") if reference else None
    settings = {**reference["metrics"].get("parameters", {}), **reference["parameters"]} if reference else {}
    if not (
        curve
        and same_training_set_size(curve["examples"][-1], training_examples)
        and reference["metrics"].get("dataset") == dataset
        and settings.get("base_model") == base_model
        and settings.get("dev_corpus_size") == dev_corpus_size
        and same_recipe
    ):
        return None, "this run's curve (no committed reference curve for its data, model, dev corpus, recipe, size)"
    points = {
        "training examples": list(curve["examples"]),
        "relative gain": list(curve["relative_gain"]),
        "gain CI low": [ci[0] for ci in curve["ci95"]],
        "gain CI high": [ci[1] for ci in curve["ci95"]],
    }
    source = f"the reference run's curve ({reference['date']}, commit {reference['commit']}, seeds {curve['seeds']})"
    return points, source


def expected_relative_gain(curve: Mapping[int, float], examples: int) -> float:
    """Relative NDCG@10 gain expected with `examples` training examples, read off a measured curve {size: gain}:
    linear in log(examples) between measured sizes, zero with one example, flat beyond the largest size."""
    sizes = sorted(curve)
    return float(np.interp(np.log(max(examples, 1)), np.log([1, *sizes]), [0.0, *(curve[size] for size in sizes)]))


def _out_of_domain_reason(cost: Mapping[str, Any]) -> str:
    """Notebook 11's measurement as a reason: the tasks the fine-tune lost on (interval below zero), and the merge."""
    losses = {task: row for task, row in cost["tasks"].items() if row["ci"][1] < 0}
    if not losses:
        return (
            "Notebook 11 measured no out-of-domain loss separable from zero ("
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
        + " (notebook 11); if the model also serves such queries, consider a merge with the base model, checked on those "
        "tasks as notebook 11 checks it"
        + (
            f" (α = {merge['alpha']:g} kept {merge['test_gain_kept']:.0%} of the in-domain test gain there)"
            if merge and merge.get("test_gain_kept") is not None
            else ""
        )
    )


def _synthetic_reason(synthetic: Mapping[str, Any]) -> str:
    """Notebook 13's measurement as a reason: did generated pairs gain on real held-out queries, and did as many real
    pairs (the same documents), so that "no gain" can be told apart from "too few pairs of any kind"."""
    gain, (low, high) = synthetic["synthetic_gain"], synthetic["synthetic_ci"]
    real_gain, (real_low, real_high) = synthetic["real_gain"], synthetic["real_ci"]
    measured = (
        f"{synthetic['pairs']} synthetic pairs from {synthetic['generator']} changed test NDCG@10 by {gain:+.3f} "
        f"[{low:+.3f}, {high:+.3f}] (notebook 13; as many real pairs: {real_gain:+.3f} [{real_low:+.3f}, {real_high:+.3f}])"
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
    """Whether a measured reranker (`decision_inputs.load_reranker_result`) gained on the retriever alone: its interval above zero."""
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

    `out_of_domain` (notebook 11's, `decision_inputs.load_out_of_domain_cost`) adds the fine-tune's cost on other tasks as a reason
    to any advice to fine-tune; `synthetic` (notebook 13's result) adds what generated pairs did to advice to get
    more data first; `reranker` (the reranking notebook's, `decision_inputs.load_reranker_result`) decides whether advice to improve
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


def synthetic_result(comparisons: Mapping[str, Mapping[str, Any]], generator: str, pairs: int) -> dict[str, Any]:
    """Notebook 13's question 1 in the form `should_finetune_measured(synthetic=...)` reads: from its comparison rows
    (name -> a row with "difference" and "95% CI"), the generated and the real pairs' gains over the base model on
    test, with their intervals, for `pairs` pairs per arm."""
    synthetic, real = comparisons["test: synthetic - base"], comparisons["test: real - base"]
    return {
        "generator": generator,
        "pairs": pairs,
        "synthetic_gain": float(synthetic["difference"]),
        "synthetic_ci": [float(end) for end in synthetic["95% CI"]],
        "real_gain": float(real["difference"]),
        "real_ci": [float(end) for end in real["95% CI"]],
    }

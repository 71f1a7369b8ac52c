"""Should you fine-tune your embedding model? The seed text's rule of thumb, and an estimate from measurements.

`should_finetune_embeddings` keeps the seed's signature and logic (its example call gives its recommendation).
Its weak spots: the expected improvement is the gap itself times 1.5, capped at 0.25 (so a bigger gap "predicts"
a bigger gain, whatever the data), and 1,000 training pairs is a fixed threshold. `should_finetune_measured`
replaces both with a learning curve measured on real data (NDCG@10 gain vs number of training pairs), and the
reindexing time with a throughput measured on the machine that will do it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

SEED_MIN_PAIRS = 1_000
SEED_MIN_GAP = 0.05
RECOMMENDATIONS = ("off-the-shelf", "generate_data_first", "fine-tune", "fine-tune + improve retrieval pipeline")


def _check_inputs(baseline_ndcg: float, target_ndcg: float, corpus_size: int, num_training_pairs: int) -> None:
    for name, value in (("baseline_ndcg", baseline_ndcg), ("target_ndcg", target_ndcg)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} is not an NDCG: it must lie between 0 and 1")
    if corpus_size < 0 or num_training_pairs < 0:
        raise ValueError(f"corpus_size={corpus_size} and num_training_pairs={num_training_pairs} cannot be negative")


def should_finetune_embeddings(
    baseline_ndcg: float,
    target_ndcg: float,
    corpus_size: int,
    num_training_pairs: int,
    reindex_cost_hours: float,
) -> dict[str, Any]:
    """The seed text's decision helper, same inputs and outputs: a recommendation with its reasons.

    The gap must exceed 0.05 NDCG, there must be 1,000 training pairs, and fine-tuning is assumed to add
    1.5 × the gap (at most 0.25). Kept for comparison; prefer `should_finetune_measured`.
    """
    _check_inputs(baseline_ndcg, target_ndcg, corpus_size, num_training_pairs)
    if reindex_cost_hours < 0:
        raise ValueError(f"reindex_cost_hours={reindex_cost_hours} cannot be negative")
    gap = target_ndcg - baseline_ndcg
    reasons = []
    recommendation = "off-the-shelf"
    if gap <= SEED_MIN_GAP:
        reasons.append("Gap to target is small (<5%); fine-tuning unlikely to help")
    elif num_training_pairs < SEED_MIN_PAIRS:
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
    return {"recommendation": recommendation, "baseline": baseline_ndcg, "target": target_ndcg, "gap": gap, "reasons": reasons}


def expected_relative_gain(learning_curve: Mapping[int, float], num_training_pairs: int) -> float:
    """Relative NDCG@10 gain expected with `num_training_pairs`, read off a measured learning curve
    (pairs -> relative gain): linear in log(pairs) between measured points, zero gain at one pair, and no
    extrapolation beyond the largest measured size (the last gain is kept: gains flatten, they do not grow
    forever)."""
    if not learning_curve:
        raise ValueError("the learning curve is empty: measure at least one training-set size")
    points = sorted((int(pairs), float(gain)) for pairs, gain in learning_curve.items())
    if points[0][0] < 1:
        raise ValueError(f"learning curve sizes must be positive, got {points[0][0]}")
    if num_training_pairs <= 1:
        return 0.0
    points = [(1, 0.0), *points] if points[0][0] > 1 else points
    if num_training_pairs >= points[-1][0]:
        return points[-1][1]
    for (left_pairs, left_gain), (right_pairs, right_gain) in pairwise(points):
        if left_pairs <= num_training_pairs <= right_pairs:
            share = (math.log(num_training_pairs) - math.log(left_pairs)) / (math.log(right_pairs) - math.log(left_pairs))
            return left_gain + share * (right_gain - left_gain)
    raise AssertionError("unreachable: the sizes are sorted and cover num_training_pairs")


def reindex_cost(corpus_size: int, docs_per_second: float, price_per_hour: float = 0.0) -> dict[str, float]:
    """Hours (and money, at `price_per_hour`) to re-embed `corpus_size` documents at a measured throughput."""
    if docs_per_second <= 0:
        raise ValueError(f"docs_per_second={docs_per_second} must be positive: measure it (notebook 07, helpers.indexing)")
    if corpus_size < 0 or price_per_hour < 0:
        raise ValueError("corpus_size and price_per_hour cannot be negative")
    hours = corpus_size / docs_per_second / 3600
    return {"hours": hours, "cost": hours * price_per_hour}


def should_finetune_measured(
    baseline_ndcg: float,
    target_ndcg: float,
    corpus_size: int,
    num_training_pairs: int,
    learning_curve: Mapping[int, float],
    docs_per_second: float,
    price_per_hour: float = 0.0,
    min_useful_gain: float = 0.02,
    max_reindex_hours: float = 24.0,
) -> dict[str, Any]:
    """The decision from measurements: the expected gain read off a measured learning curve instead of the
    seed's gap × 1.5, "enough data" meaning "the curve says it helps" instead of a fixed 1,000 pairs, and the
    reindexing time from a measured throughput.

    Returns the seed's keys plus `expected_ndcg`, `pairs_to_reach_target` (None when the curve never gets
    there), `reindex_hours` and `reindex_cost`.
    """
    _check_inputs(baseline_ndcg, target_ndcg, corpus_size, num_training_pairs)
    gap = target_ndcg - baseline_ndcg
    expected_ndcg = min(1.0, baseline_ndcg * (1 + expected_relative_gain(learning_curve, num_training_pairs)))
    best_ndcg = min(1.0, baseline_ndcg * (1 + max(learning_curve.values())))
    reaching = sorted(pairs for pairs, gain in learning_curve.items() if baseline_ndcg * (1 + gain) >= target_ndcg)
    cost = reindex_cost(corpus_size, docs_per_second, price_per_hour)
    reasons = []
    if gap <= 0:
        recommendation = "off-the-shelf"
        reasons.append(f"The off-the-shelf model already meets the target ({baseline_ndcg:.2f} ≥ {target_ndcg:.2f})")
    elif expected_ndcg - baseline_ndcg < min_useful_gain:
        if best_ndcg - baseline_ndcg >= min_useful_gain:
            recommendation = "generate_data_first"
            reasons.append(f"With {num_training_pairs:,} pairs the measured curve predicts only ~{expected_ndcg:.2f}; "
                           f"with more pairs it reaches ~{best_ndcg:.2f}: collect or generate more pairs first")
        else:
            recommendation = "off-the-shelf"
            reasons.append("The measured learning curve shows no useful gain on this kind of data")
    elif expected_ndcg >= target_ndcg:
        recommendation = "fine-tune"
        reasons.append(f"Expected NDCG after fine-tuning with {num_training_pairs:,} pairs: ~{expected_ndcg:.2f} (measured curve)")
    else:
        recommendation = "fine-tune + improve retrieval pipeline"
        reasons.append(f"Expected NDCG after fine-tuning: ~{expected_ndcg:.2f}, short of {target_ndcg:.2f}; "
                       "add BM25 in a hybrid, a reranker, or better data")
    if gap > 0 and reaching:
        reasons.append(f"On the measured curve, {reaching[0]:,} pairs reach the target")
    reasons.append(f"Reindexing {corpus_size:,} documents takes ~{cost['hours']:.1f} hours at a measured "
                   f"{docs_per_second:,.0f} docs/s" + (f" (~{cost['cost']:,.0f} at {price_per_hour:g}/hour)" if price_per_hour else ""))
    if cost["hours"] > max_reindex_hours and recommendation.startswith("fine-tune"):
        reasons.append(f"Over {max_reindex_hours:g} hours: reindex on a GPU or in parallel, and incrementally (notebook 07)")
    return {
        "recommendation": recommendation, "baseline": baseline_ndcg, "target": target_ndcg, "gap": gap,
        "expected_ndcg": expected_ndcg, "pairs_to_reach_target": reaching[0] if gap > 0 and reaching else None,
        "reindex_hours": cost["hours"], "reindex_cost": cost["cost"], "reasons": reasons,
    }

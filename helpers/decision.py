"""Should you fine-tune your embedding model? The seed text's rule of thumb, with its signature and logic.

Its weak spots: the expected improvement is the gap itself times 1.5, capped at 0.25 (so a bigger gap "predicts"
a bigger gain, whatever the data), and 1,000 training pairs is a fixed threshold. Notebook 06 shows it, then
builds a rule on a measured learning curve and a measured reindexing throughput instead.
"""

from __future__ import annotations

from typing import Any

SEED_MIN_PAIRS = 1_000
SEED_MIN_GAP = 0.05
RECOMMENDATIONS = ("off-the-shelf", "generate_data_first", "fine-tune", "fine-tune + improve retrieval pipeline")


def check_decision_inputs(baseline_ndcg: float, target_ndcg: float, corpus_size: int, num_training_pairs: int) -> None:
    """Refuse an NDCG outside [0, 1] and a negative corpus size or number of training pairs."""
    for name, value in (("baseline_ndcg", baseline_ndcg), ("target_ndcg", target_ndcg)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} is not an NDCG: it must lie between 0 and 1")
    if corpus_size < 0 or num_training_pairs < 0:
        raise ValueError(f"corpus_size={corpus_size} and num_training_pairs={num_training_pairs} cannot be negative")


def should_finetune_embeddings(baseline_ndcg: float, target_ndcg: float, corpus_size: int, num_training_pairs: int,
                               reindex_cost_hours: float) -> dict[str, Any]:
    """The seed text's decision helper, same inputs and outputs: a recommendation with its reasons.

    The gap must exceed 0.05 NDCG, there must be 1,000 training pairs, and fine-tuning is assumed to add
    1.5 × the gap (at most 0.25). Kept for comparison with the measured rule of notebook 06.
    """
    check_decision_inputs(baseline_ndcg, target_ndcg, corpus_size, num_training_pairs)
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

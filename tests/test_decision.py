"""The seed's decision helper: its example, its rule, and its input checks (notebook 06 tests the measured rule)."""

import pytest

from helpers import decision as Dn


def test_the_seed_example_gives_the_seed_recommendation():
    result = Dn.should_finetune_embeddings(baseline_ndcg=0.38, target_ndcg=0.55, corpus_size=500_000,
                                           num_training_pairs=5_000, reindex_cost_hours=3.5)
    assert result["recommendation"] == "fine-tune"
    assert result["gap"] == pytest.approx(0.17)
    assert result["reasons"] == ["Expected NDCG after fine-tuning: ~0.63", "Reindexing will take ~3.5 hours for 500,000 documents"]


@pytest.mark.parametrize("target", [0.38, 0.30, 0.42])
def test_a_small_or_negative_gap_means_off_the_shelf(target):
    assert Dn.should_finetune_embeddings(0.38, target, 1000, 5000, 1.0)["recommendation"] == "off-the-shelf"


def test_tiny_data_asks_for_more_data_first():
    assert Dn.should_finetune_embeddings(0.38, 0.55, 1000, 10, 1.0)["recommendation"] == "generate_data_first"


def test_a_gap_over_a_quarter_is_beyond_fine_tuning_alone():
    # 0.30 + min(0.35 * 1.5, 0.25) = 0.55 < 0.65: the seed adds a better retrieval pipeline
    result = Dn.should_finetune_embeddings(0.30, 0.65, 1000, 5000, 1.0)
    assert result["recommendation"] == "fine-tune + improve retrieval pipeline"
    assert "hybrid retrieval" in result["reasons"][1]


@pytest.mark.parametrize("call, message", [
    (lambda: Dn.should_finetune_embeddings(1.5, 0.5, 10, 10, 1.0), "baseline_ndcg=1.5 is not an NDCG"),
    (lambda: Dn.should_finetune_embeddings(0.3, 0.5, -1, 10, 1.0), "cannot be negative"),
    (lambda: Dn.should_finetune_embeddings(0.3, 0.5, 10, 10, -1.0), "reindex_cost_hours=-1.0 cannot be negative"),
])
def test_bad_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()

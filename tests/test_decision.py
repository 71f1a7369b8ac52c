"""The decision helper: the seed's example and rule, and the estimate from a measured learning curve."""

import pytest

from helpers import decision as Dn

CURVE = {250: 0.05, 1000: 0.15, 4000: 0.20}  # pairs -> relative NDCG@10 gain


def test_the_seed_example_gives_the_seed_recommendation():
    result = Dn.should_finetune_embeddings(baseline_ndcg=0.38, target_ndcg=0.55, corpus_size=500_000,
                                           num_training_pairs=5_000, reindex_cost_hours=3.5)
    assert result["recommendation"] == "fine-tune"
    assert result["gap"] == pytest.approx(0.17)
    assert result["reasons"] == ["Expected NDCG after fine-tuning: ~0.63", "Reindexing will take ~3.5 hours for 500,000 documents"]


@pytest.mark.parametrize("target", [0.38, 0.30])
def test_zero_or_negative_gap_means_off_the_shelf(target):
    assert Dn.should_finetune_embeddings(0.38, target, 1000, 5000, 1.0)["recommendation"] == "off-the-shelf"
    measured = Dn.should_finetune_measured(0.38, target, 1000, 5000, CURVE, docs_per_second=250)
    assert measured["recommendation"] == "off-the-shelf" and measured["pairs_to_reach_target"] is None


def test_tiny_data_asks_for_more_data_first():
    assert Dn.should_finetune_embeddings(0.38, 0.55, 1000, 10, 1.0)["recommendation"] == "generate_data_first"
    measured = Dn.should_finetune_measured(0.38, 0.45, 1000, 10, CURVE, docs_per_second=250)
    assert measured["recommendation"] == "generate_data_first"
    assert measured["pairs_to_reach_target"] == 4000  # 0.38 * 1.15 = 0.437 < 0.45 <= 0.38 * 1.20 = 0.456

def test_a_curve_that_never_helps_says_off_the_shelf():
    flat = {500: 0.0, 2000: 0.01}
    assert Dn.should_finetune_measured(0.5, 0.7, 1000, 2000, flat, docs_per_second=250)["recommendation"] == "off-the-shelf"


def test_measured_estimate_replaces_the_gap_times_one_and_a_half_rule():
    # The seed "expects" 0.38 + 0.25 = 0.63 whatever the data; the measured curve says 0.38 * 1.2 = 0.456.
    measured = Dn.should_finetune_measured(0.38, 0.55, 500_000, 5_000, CURVE, docs_per_second=250)
    assert measured["expected_ndcg"] == pytest.approx(0.456)
    assert measured["recommendation"] == "fine-tune + improve retrieval pipeline"
    assert measured["reindex_hours"] == pytest.approx(500_000 / 250 / 3600)


def test_huge_corpus_warns_about_the_reindex():
    measured = Dn.should_finetune_measured(0.38, 0.44, 100_000_000, 5_000, CURVE, docs_per_second=250, price_per_hour=2.0)
    assert measured["recommendation"] == "fine-tune"
    assert measured["reindex_hours"] == pytest.approx(111.1, abs=0.1) and measured["reindex_cost"] == pytest.approx(222.2, abs=0.1)
    assert any("Over 24 hours" in reason for reason in measured["reasons"])


def test_learning_curve_interpolation():
    assert Dn.expected_relative_gain(CURVE, 1000) == pytest.approx(0.15)
    assert Dn.expected_relative_gain(CURVE, 2000) == pytest.approx(0.175)  # halfway in log(pairs)
    assert Dn.expected_relative_gain(CURVE, 1_000_000) == pytest.approx(0.20)  # no extrapolation
    assert Dn.expected_relative_gain(CURVE, 0) == 0.0


@pytest.mark.parametrize("call, message", [
    (lambda: Dn.should_finetune_embeddings(1.5, 0.5, 10, 10, 1.0), "baseline_ndcg=1.5 is not an NDCG"),
    (lambda: Dn.should_finetune_embeddings(0.3, 0.5, -1, 10, 1.0), "cannot be negative"),
    (lambda: Dn.reindex_cost(1000, 0), "docs_per_second=0 must be positive"),
    (lambda: Dn.expected_relative_gain({}, 10), "learning curve is empty"),
])
def test_bad_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()

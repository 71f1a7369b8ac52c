"""The source chapter's decision helper (its example, its rule, its input checks) and the measured rule of notebook 07."""

import pytest

from helpers import decision as Dn
from helpers import decision_inputs as DI


def test_the_chapter_example_gives_the_chapter_recommendation():
    result = Dn.should_finetune_embeddings(
        baseline_ndcg=0.38, target_ndcg=0.55, corpus_size=500_000, num_training_pairs=5_000, reindex_cost_hours=3.5
    )
    assert result["recommendation"] == "fine-tune"
    assert result["gap"] == pytest.approx(0.17)
    assert result["reasons"] == [
        "Expected NDCG after fine-tuning: ~0.63",
        "Reindexing will take ~3.5 hours for 500,000 documents",
    ]


@pytest.mark.parametrize("target", [0.38, 0.30, 0.42])
def test_a_small_or_negative_gap_means_off_the_shelf(target):
    assert Dn.should_finetune_embeddings(0.38, target, 1000, 5000, 1.0)["recommendation"] == "off-the-shelf"


def test_tiny_data_asks_for_more_data_first():
    assert Dn.should_finetune_embeddings(0.38, 0.55, 1000, 10, 1.0)["recommendation"] == "generate_data_first"


def test_a_gap_over_a_quarter_is_beyond_fine_tuning_alone():
    # 0.30 + min(0.35 * 1.5, 0.25) = 0.55 < 0.65: the source chapter adds a better retrieval pipeline
    result = Dn.should_finetune_embeddings(0.30, 0.65, 1000, 5000, 1.0)
    assert result["recommendation"] == "fine-tune + improve retrieval pipeline"
    assert "hybrid retrieval" in result["reasons"][1]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Dn.should_finetune_embeddings(1.5, 0.5, 10, 10, 1.0), "baseline_ndcg=1.5 is not an NDCG"),
        (lambda: Dn.should_finetune_embeddings(0.3, 0.5, -1, 10, 1.0), "cannot be negative"),
        (lambda: Dn.should_finetune_embeddings(0.3, 0.5, 10, 10, -1.0), "reindex_cost_hours=-1.0 cannot be negative"),
    ],
)
def test_bad_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# The measured rule (notebook 07 builds it; notebooks 11 and 13 add their measurements as reasons)
CURVE = {250: 0.05, 1000: 0.15, 4000: 0.20}
COST = {
    "tasks": {"FAQ": {"difference": -0.03, "ci": [-0.05, -0.01]}, "STS": {"difference": 0.01, "ci": [-0.002, 0.02]}},
    "merge": {"alpha": 0.6, "test_gain_kept": 0.86},
}
SYNTHETIC = {
    "generator": "SmolLM2",
    "pairs": 60,
    "synthetic_gain": 0.002,
    "synthetic_ci": [-0.006, 0.010],
    "real_gain": 0.012,
    "real_ci": [0.004, 0.020],
}


def test_the_expected_gain_is_read_off_the_curve_in_log_examples_and_held_flat_past_it():
    assert Dn.expected_relative_gain(CURVE, 1000) == pytest.approx(0.15)
    assert Dn.expected_relative_gain(CURVE, 500) == pytest.approx(0.10)  # halfway between 250 and 1000 in log scale
    assert Dn.expected_relative_gain(CURVE, 1) == 0.0 and Dn.expected_relative_gain(CURVE, 0) == 0.0
    assert Dn.expected_relative_gain(CURVE, 10**6) == pytest.approx(0.20)


@pytest.mark.parametrize(
    "target, examples, curve, expected",
    [
        (0.38, 5_000, CURVE, "off-the-shelf"),
        (0.44, 5_000, CURVE, "fine-tune"),
        (0.55, 5_000, CURVE, "fine-tune + improve retrieval pipeline"),
        (0.45, 10, CURVE, "generate_data_first"),
        (0.55, 5_000, {500: 0.0, 2000: 0.01}, "off-the-shelf"),
    ],
)
def test_every_branch_of_the_measured_rule(target, examples, curve, expected):
    assert Dn.should_finetune_measured(0.40, target, 1_000_000, examples, curve, 250)["recommendation"] == expected


def test_below_the_smallest_measured_size_the_rule_expects_nothing_from_the_curve():
    few = Dn.should_finetune_measured(0.40, 0.42, 1_000_000, 100, CURVE, 250)  # 100 < 250, the smallest measured size
    assert few["recommendation"] == "generate_data_first" and few["expected_ndcg"] == 0.40
    assert few["reasons"][0].startswith(
        "With 100 examples, fewer than the smallest training set the curve measured (250)"
    )
    flat = Dn.should_finetune_measured(0.40, 0.42, 1_000_000, 100, {500: 0.0, 2000: 0.01}, 250)
    assert flat["recommendation"] == "off-the-shelf" and "no measured size gains usefully" in flat["reasons"][0]
    with pytest.raises(ValueError, match="the learning curve is empty"):
        Dn.should_finetune_measured(0.40, 0.42, 1_000_000, 100, {}, 250)


def test_the_out_of_domain_cost_is_a_reason_to_consider_a_merge_and_never_changes_the_advice():
    plain = Dn.should_finetune_measured(0.40, 0.44, 1_000_000, 5_000, CURVE, 250)
    with_cost = Dn.should_finetune_measured(0.40, 0.44, 1_000_000, 5_000, CURVE, 250, out_of_domain=COST)
    assert with_cost["recommendation"] == plain["recommendation"] == "fine-tune"
    added = [reason for reason in with_cost["reasons"] if reason not in plain["reasons"]]
    assert added == [
        "The fine-tune lost NDCG@10 on tasks it was not tuned for: FAQ -0.030 [-0.050, -0.010] (notebook 11); if the "
        "model also serves such queries, consider a merge with the base model, checked on those tasks as notebook 11 checks it "
        "(α = 0.6 kept 86% of the in-domain test gain there)"
    ]
    no_loss = {"tasks": {"STS": COST["tasks"]["STS"]}, "merge": None}  # an interval that reaches zero is not a loss
    reasons = Dn.should_finetune_measured(0.40, 0.44, 1_000_000, 5_000, CURVE, 250, out_of_domain=no_loss)["reasons"]
    assert any(
        reason.startswith("Notebook 11 measured no out-of-domain loss separable from zero (STS)") for reason in reasons
    )
    off = Dn.should_finetune_measured(
        0.40, 0.38, 1_000_000, 5_000, CURVE, 250, out_of_domain=COST
    )  # no fine-tune: no merge advice
    assert not any("notebook 11" in reason.lower() for reason in off["reasons"])


def test_the_synthetic_result_is_a_reason_when_real_pairs_are_too_few():
    few = Dn.should_finetune_measured(0.40, 0.45, 1_000_000, 10, CURVE, 250, synthetic=SYNTHETIC)
    assert few["recommendation"] == "generate_data_first"
    assert any(
        "no gain separable from zero where real pairs gained" in reason
        and "60 synthetic pairs from SmolLM2" in reason
        and "as many real pairs: +0.012 [+0.004, +0.020]" in reason
        for reason in few["reasons"]
    )
    neither = Dn.should_finetune_measured(
        0.40, 0.45, 1_000_000, 10, CURVE, 250, synthetic={**SYNTHETIC, "real_ci": [-0.002, 0.02]}
    )
    assert any("neither kind gained measurably at this count" in reason for reason in neither["reasons"])
    helped = Dn.should_finetune_measured(
        0.40, 0.45, 1_000_000, 10, CURVE, 250, synthetic={**SYNTHETIC, "synthetic_ci": [0.001, 0.01]}
    )
    assert any("worth trying" in reason for reason in helped["reasons"])
    hurt = Dn.should_finetune_measured(
        0.40, 0.45, 1_000_000, 10, CURVE, 250, synthetic={**SYNTHETIC, "synthetic_ci": [-0.03, -0.01]}
    )
    assert any("a loss, so do not train on such pairs" in reason for reason in hurt["reasons"])
    enough = Dn.should_finetune_measured(0.40, 0.44, 1_000_000, 5_000, CURVE, 250, synthetic=SYNTHETIC)
    assert not any(
        "synthetic" in reason for reason in enough["reasons"]
    )  # enough real pairs: generation is beside the point


def test_measured_inputs_round_trip_through_the_work_dir(tmp_path):
    assert (
        DI.load_decision_inputs(tmp_path, "icd10cm") is None and DI.load_out_of_domain_cost(tmp_path, "icd10cm") is None
    )
    DI.save_decision_inputs(tmp_path, "icd10cm", 0.5, 0.6, 20_000, 7_598, CURVE, 136.0)
    assert DI.load_decision_inputs(tmp_path, "icd10cm") == {
        "baseline": 0.5,
        "target": 0.6,
        "corpus_size": 20_000,
        "examples": 7_598,
        "curve": CURVE,
        "docs_per_second": 136.0,
    }
    DI.save_out_of_domain_cost(tmp_path, "icd10cm", COST["tasks"], COST["merge"])
    assert DI.load_out_of_domain_cost(tmp_path, "icd10cm") == COST
    with pytest.raises(ValueError, match="task 'FAQ': each task needs a 'difference' and a two-sided 'ci'"):
        DI.save_out_of_domain_cost(tmp_path, "icd10cm", {"FAQ": {"difference": -0.03}}, None)
    with pytest.raises(ValueError, match="task 'FAQ': each task needs"):
        DI.save_out_of_domain_cost(tmp_path, "icd10cm", {"FAQ": {"loss": -0.03}}, None)


def test_a_throughput_of_zero_is_refused():
    with pytest.raises(ValueError, match="docs_per_second=0 must be positive"):
        Dn.should_finetune_measured(0.40, 0.44, 1_000, 5_000, CURVE, 0)


def test_a_reindex_under_an_hour_is_reported_in_minutes():
    reasons = Dn.should_finetune_measured(0.40, 0.44, 20_000, 5_000, CURVE, 137)["reasons"]
    assert reasons[-1] == "Reindexing 20,000 documents takes ~2.4 minutes at a measured 137 docs/s"
    assert Dn.should_finetune_measured(0.40, 0.44, 1_000_000, 5_000, CURVE, 250)["reasons"][-1].startswith(
        "Reindexing 1,000,000 documents takes ~1.1 hours"
    )


def test_a_training_set_a_triplet_apart_is_the_same_set_and_one_a_tenth_smaller_is_not():
    assert Dn.same_training_set_size(7598, 7597) and Dn.same_training_set_size(7597, 7597)
    assert not Dn.same_training_set_size(6838, 7597)  # notebook 07 must not read a curve of another training set


def test_advice_to_improve_the_pipeline_names_a_reranker_only_where_one_was_measured_to_gain(tmp_path):
    def pipeline_reason(reranker):
        result = Dn.should_finetune_measured(0.40, 0.55, 1_000_000, 5_000, CURVE, 250, reranker=reranker)
        assert result["recommendation"] == "fine-tune + improve retrieval pipeline"  # the reranker never changes it
        return result["reasons"][0]

    assert "is not among these inputs (notebook 06 measures one)" in pipeline_reason(None)
    DI.save_reranker_result(tmp_path, "icd10cm", 20, 0.041, (0.030, 0.052), 0.69)
    gained = DI.load_reranker_result(tmp_path, "icd10cm")
    assert gained == {"k": 20, "difference": 0.041, "ci": [0.030, 0.052], "ndcg@10": 0.69} and Dn.reranker_gained(
        gained
    )
    assert (
        "add the reranker: a reranker of the top 20 changed test NDCG@10 by +0.041 [+0.030, +0.052]"
        in pipeline_reason(gained)
    )
    unclear = {**gained, "difference": 0.004, "ci": [-0.006, 0.014]}
    assert not Dn.reranker_gained(unclear)
    reason = pipeline_reason(unclear)
    assert "add the reranker" not in reason and "no gain separable from zero" in reason
    assert (
        "(a reranker of the top 20 changed test NDCG@10 by -0.100 [-0.130, -0.070] over the fine-tuned retriever (notebook 06): a loss)"
        in pipeline_reason({**gained, "difference": -0.1, "ci": [-0.13, -0.07]})
    )
    fine = Dn.should_finetune_measured(0.40, 0.44, 1_000_000, 5_000, CURVE, 250, reranker=gained)
    assert not any("reranker" in reason for reason in fine["reasons"])  # fine-tuning alone meets the target
    with pytest.raises(ValueError, match="not a 95% interval"):
        DI.save_reranker_result(tmp_path, "icd10cm", 20, 0.04, (0.05, 0.03), 0.69)


# ---- the form of notebook 07 -----------------------------------------------------------------------


def test_the_form_recomputes_the_advice_when_a_control_changes():
    from helpers import decision_form as F

    form = F.decision_form(0.40, CURVE, 100.0, target=0.44, examples=5_000, corpus_size=1_000_000, live=True)
    *controls, answer = form.children
    assert "Fine-tune</b> (fine-tune)" in answer.value
    controls[0].value = 0.38  # the target: the base model already meets it
    assert "(off-the-shelf)" in answer.value
    controls[1].value = 10  # ten training examples
    controls[0].value = 0.45
    assert "(generate_data_first)" in answer.value


def test_the_form_in_a_batch_run_is_the_advice_for_its_starting_values():
    from helpers import decision_form as F

    advice = F.decision_form(0.40, CURVE, 100.0, target=0.44, examples=5_000, corpus_size=1_000_000, live=False)
    decision = Dn.should_finetune_measured(0.40, 0.44, 1_000_000, 5_000, CURVE, 100.0)
    text = repr(advice)
    assert text.startswith("(a batch run: the form needs a live kernel) **Fine-tune**")
    assert all(f"- {reason}" in text for reason in decision["reasons"])


def test_the_form_follows_the_batch_run_environment_when_not_told(monkeypatch):
    from helpers import decision_form as F
    from helpers.progress import BATCH_RUN_ENVIRONMENT

    monkeypatch.setenv(BATCH_RUN_ENVIRONMENT, "1")
    assert repr(F.decision_form(0.40, CURVE, 100.0, target=0.44, examples=5_000, corpus_size=10)).startswith(
        "(a batch run"
    )
    monkeypatch.delenv(BATCH_RUN_ENVIRONMENT)
    form = F.decision_form(0.40, CURVE, 100.0, target=0.44, examples=5_000, corpus_size=10, price_per_hour=2.0)
    price = form.children[3]
    assert price.value == 2.0 and price.description == "price per hour"


def test_the_reference_curve_is_read_only_where_it_was_measured_on_the_same_protocol():
    reference = {
        "date": "2026-12-01",
        "commit": "abc1234",
        "parameters": {"dev_corpus_size": 1000},
        "metrics": {
            "dataset": "toy",
            "parameters": {"base_model": "m"},
            "learning_curve": {
                "examples": [100, 1000],
                "relative_gain": [0.05, 0.10],
                "ci95": [[0.01, 0.09], [0.07, 0.13]],
                "seeds": [1, 2, 3],
            },
        },
    }
    points, source = Dn.reference_curve_for(reference, "toy", "m", 1000, 1000, same_recipe=True)
    assert points == {
        "training examples": [100, 1000],
        "relative gain": [0.05, 0.10],
        "gain CI low": [0.01, 0.07],
        "gain CI high": [0.09, 0.13],
    }
    assert source == "the reference run's curve (2026-12-01, commit abc1234, seeds [1, 2, 3])"
    assert Dn.reference_curve_for(reference, "toy", "m", 1000, 1001, same_recipe=True)[0] is not None  # within 0.1%
    for changed in (
        dict(dataset="other"),
        dict(base_model="other"),
        dict(dev_corpus_size=2000),
        dict(training_examples=2000),
        dict(same_recipe=False),
    ):
        arguments = dict(dataset="toy", base_model="m", dev_corpus_size=1000, training_examples=1000, same_recipe=True)
        points, source = Dn.reference_curve_for(reference, **{**arguments, **changed})
        assert points is None and source.startswith("this run's curve (no committed reference curve"), changed
    assert Dn.reference_curve_for(None, "toy", "m", 1000, 1000, True)[0] is None


def test_advice_markdown_lists_each_decision_with_its_reasons():
    from helpers import decision_form as F

    measured = Dn.should_finetune_measured(0.40, 0.44, 1_000_000, 5_000, CURVE, 100.0)
    chapter = Dn.should_finetune_embeddings(0.40, 0.44, 1_000_000, 5_000, 1.0)
    text = repr(F.advice_markdown({"measured": measured, "chapter": chapter}, with_inputs=True))
    assert text.startswith("**measured: Fine-tune** (fine-tune) (baseline 0.400, target 0.44)")
    assert "**chapter: Use the off-the-shelf model** (off-the-shelf) (baseline 0.400, target 0.44)" in text
    assert all(f"- {reason}" in text for reason in measured["reasons"] + chapter["reasons"])
    assert "(baseline" not in repr(F.advice_markdown({"measured": measured}))


def test_notebook_13s_rows_become_the_synthetic_result_the_rule_reads():
    rows = {
        "test: synthetic - base": {"difference": 0.002, "95% CI": (-0.006, 0.010), "verdict": "can't tell"},
        "test: real - base": {"difference": 0.012, "95% CI": [0.004, 0.020], "verdict": "higher"},
    }
    assert Dn.synthetic_result(rows, "SmolLM2", 60) == SYNTHETIC


def test_a_later_notebook_asks_notebook_07s_rule_again_with_what_it_measured(tmp_path):
    labels = {"ten pairs": 10, "notebook 07's count": None}
    assert DI.decide_again(tmp_path, "icd10cm", labels) is None  # notebook 07 has not run here
    DI.save_decision_inputs(tmp_path, "icd10cm", 0.40, 0.45, 1_000_000, 5_000, CURVE, 250.0)
    advice = DI.decide_again(tmp_path, "icd10cm", labels, synthetic=SYNTHETIC)
    assert advice["ten pairs"] == Dn.should_finetune_measured(
        0.40, 0.45, 1_000_000, 10, CURVE, 250.0, synthetic=SYNTHETIC
    )
    assert advice["notebook 07's count"] == Dn.should_finetune_measured(0.40, 0.45, 1_000_000, 5_000, CURVE, 250.0)
    DI.save_out_of_domain_cost(tmp_path, "icd10cm", COST["tasks"], COST["merge"])  # notebook 11 ran since
    again = DI.decide_again(tmp_path, "icd10cm", labels)
    assert again["notebook 07's count"] == Dn.should_finetune_measured(
        0.40, 0.45, 1_000_000, 5_000, CURVE, 250.0, out_of_domain=COST
    )

"""Claims in the notebooks' prose that depend on a measurement, checked against the committed runs.

A markdown cell that states such a claim carries `<!-- claim: NAME -->`; CLAIMS holds, for every name, what
the claim says and a check on the run's summary. A new run that flips a claim fails here until the prose is
rewritten; a claim without a check, or a check that no notebook uses, fails too. CLAIMS are about the default
run (benchmarks/results/cpu-default-all); REFERENCE_CLAIMS about the reference run, the powered settings with
several training seeds that the prose concludes from (benchmarks/results/reference-cpu/reference.json). (Figures that the notebooks
print from their own run need no entry: they cannot disagree with it.)
"""

import json
import re

import nbformat
import pytest

from helpers.committed_runs import REFERENCE_FILE, off_the_shelf_rows, reindex_rate_rows
from helpers.workbook import PROJECT_ROOT, list_notebooks

SUMMARY = PROJECT_ROOT / "benchmarks" / "results" / "cpu-default-all" / "summary.json"
CLAIM_TAG = re.compile(r"<!-- claim: ([a-z0-9_]+) -->")


def _hybrid_below_dense(m):
    return all(row["95% CI high"] < 0 for row in m["07_decision"]["hybrid_vs_dense"].values())


def _gains(m):
    return [row["relative_gain"] for row in m["01_why_finetune"]["measured"].values() if "relative_gain" in row]


def _by_corpus(m, split):
    """Notebook 01's side-by-side rows of one split (its first word), smallest corpus first."""
    return [row for row in off_the_shelf_rows(m) if row["split"].split()[0] == split]


def _pooling_range(m, model, split):
    scores = [
        v
        for k, v in m["02_encoder_vs_decoder"]["ndcg@10_by_pooling"].items()
        if k.startswith(f"{model} /") and k.endswith(split)
    ]
    return max(scores) - min(scores)


def _template_gap(m, mode):
    cosine = m["02_encoder_vs_decoder"]["unrelated_cosine"]
    return cosine[f"decoder + chat template / {mode}"] - cosine[f"decoder / {mode}"]


def _full_size(by_dims):
    return by_dims[max(by_dims, key=int)]


CLAIMS = {
    "no_default_gain_inside_chapter_range": (
        "01: in the committed default run, no brief run's relative-gain interval lies inside the source chapter's "
        "+30% to +70%, nor does the full recipe's (05)",
        lambda m: (
            not any(
                0.30 <= row["ci95_diff"][0] / row["base_ndcg@10"] and row["ci95_diff"][1] / row["base_ndcg@10"] <= 0.70
                for row in [
                    *(r for r in m["01_why_finetune"]["measured"].values() if "ci95_diff" in r),
                    {
                        "ci95_diff": m["05_evaluation"]["ci95_ndcg@10_diff"],
                        "base_ndcg@10": m["05_evaluation"]["base_ndcg@10"],
                    },
                ]
            )
        ),
    ),
    "default_real_pairs_below_base": (
        "13: in the committed default run, real pairs (a few dozen, 16 steps, one seed) scored below the base model "
        "on test (interval below 0)",
        lambda m: (
            m["13_synthetic_pairs"]["comparisons"]["test: real - base"]["95% CI"][1] < 0
            and len(m["13_synthetic_pairs"]["training_seeds"]) == 1
        ),
    ),
    "off_the_shelf_falls_with_corpus": (
        "01: on the test split, every notebook that searches more documents measures a lower off-the-shelf NDCG@10",
        lambda m: (
            len(_by_corpus(m, "test")) >= 4
            and all(
                a["off the shelf"] > b["off the shelf"]
                for a, b in zip(_by_corpus(m, "test"), _by_corpus(m, "test")[1:])
                if a["documents searched"] < b["documents searched"]
            )
        ),
    ),
    "relative_gain_grows_with_corpus": (
        "01: notebook 04's model gains relatively more over 20,000 test documents than over 2,000",
        lambda m: (
            (
                gains := {
                    row["documents searched"]: row["relative gain"]
                    for row in _by_corpus(m, "test")
                    if row["relative gain"] is not None
                }
            )
            and gains[20000] > gains[2000] + 0.05
        ),
    ),
    "pipeline_rates_agree": (
        "08: the three pipeline rates (07, 08, 16's single process) agree within a factor of 1.5",
        lambda m: (
            (
                rates := [
                    row["documents/s"]
                    for row in reindex_rate_rows(m)
                    if "pipeline" in row["what is timed"] and "Ray pipeline" not in row["what is timed"]
                ]
            )
            and len(rates) == 3
            and max(rates) < min(rates) * 1.5
        ),
    ),
    "writes_small_share": (
        "08: the blue build, writing cached vectors, ran several times (over three times) faster than the pipeline",
        lambda m: m["08_reindexing"]["steps"]["blue build"]["docs_per_s"] > 3 * m["08_reindexing"]["docs_per_s"],
    ),
    "int8_onnx_encodes_faster": (
        "08/09: PyTorch fp32 encoding is no faster than the bf16 pipeline of 08; int8 ONNX encodes over 1.5 times as fast as fp32",
        lambda m: (
            m["09_serving"]["variants"]["pytorch fp32"]["docs_per_s"] <= m["08_reindexing"]["docs_per_s"]
            and m["09_serving"]["variants"]["onnx int8"]["docs_per_s"]
            > 1.5 * m["09_serving"]["variants"]["pytorch fp32"]["docs_per_s"]
        ),
    ),
    "ray_worker_and_startup": (
        "08/16: a one-core Ray worker encodes at under 3/4 of one process's pipeline rate; two workers end to end are slower than one worker's encoding",
        lambda m: (
            m["16_ray_reindexing"]["projection"]["cpu_docs_per_s_per_worker"]
            < 0.75 * m["16_ray_reindexing"]["ray"]["single_process"]["docs_per_s"]
            and m["16_ray_reindexing"]["ray"]["workers"]["2"]["docs_per_s"]
            < m["16_ray_reindexing"]["projection"]["cpu_docs_per_s_per_worker"]
        ),
    ),
    "brief_run_breaks_some_queries": (
        "01: the fine-tuned model breaks some queries the base model got right at rank 1",
        lambda m: m["01_why_finetune"]["examples_broken_at_rank_1"] > 0,
    ),
    "encoder_ahead_after_short_finetune": (
        "02: after the same short fine-tune the encoder scores above the decoder on test (interval above 0) and encodes faster",
        lambda m: (
            m["02_encoder_vs_decoder"]["encoder_minus_decoder_after_finetune"]["ci95"][0] > 0
            and m["02_encoder_vs_decoder"]["table"]["encoder"]["encode speed (texts/s)"]
            > 2 * m["02_encoder_vs_decoder"]["table"]["decoder"]["encode speed (texts/s)"]
        ),
    ),
    "decoder_poolings_differ_widely": (
        "02: the untrained decoder's poolings differ widely on dev (> 0.1 NDCG@10 apart)",
        lambda m: _pooling_range(m, "decoder", "dev") > 0.1,
    ),
    "decoder_cls_collapses": (
        "02: CLS pooling of the causal decoder makes unrelated texts nearly identical (cosine > 0.95)",
        lambda m: m["02_encoder_vs_decoder"]["unrelated_cosine"]["decoder / cls"] > 0.95,
    ),
    "chat_template_makes_texts_alike": (
        "02: through the chat template, unrelated texts look far more alike (mean and last token)",
        lambda m: min(_template_gap(m, "mean"), _template_gap(m, "lasttoken")) > 0.1,
    ),
    "random_batches_mostly_padding": (
        "04: random no-duplicates batches of these texts are mostly padding",
        lambda m: m["04_training"]["padding_share"]["random batches"] > 0.5,
    ),
    "grouped_batches_less_padding": (
        "04: length-grouped batches waste much less compute on padding (10 points less)",
        lambda m: (
            m["04_training"]["padding_share"]["length-grouped"]
            < m["04_training"]["padding_share"]["random batches"] - 0.1
        ),
    ),
    "training_most_of_the_runtime": (
        "04: the training run is most of the notebook's runtime",
        lambda m: m["04_training"]["train_seconds"] > m["04_training"]["notebook_seconds"] / 2,
    ),
    "chapter_evaluator_reads_zero": (
        "05: the source chapter's `.get` on the evaluator's results reads 0",
        lambda m: m["05_evaluation"]["seed_reads_ndcg@10"] == 0,
    ),
    "default_reranker_loses_at_every_k": (
        "06: the reranker trained in the default run scores below the retriever alone at every k, each interval below 0",
        lambda m: all(row["ci"][1] < 0 for row in m["06_reranking"]["rerank"].values()),
    ),
    "default_fusion_chose_retriever_alone": (
        "06: fusing the default run's reranker with the retriever, dev chose the weight 0",
        lambda m: m["06_reranking"]["fusion"]["weight"] == 0,
    ),
    "default_mining_no_false_negatives": (
        "06: the ICD labels count no false negative among the mined negatives, with or without the margin",
        lambda m: all(row["false negatives"] == 0 for row in m["06_reranking"]["mining"].values()),
    ),
    "bm25_weakest": (
        "07: BM25 is the weakest of the five systems on the test queries",
        lambda m: min(m["07_decision"]["ndcg@10"], key=m["07_decision"]["ndcg@10"].get) == "BM25",
    ),
    "hybrid_below_dense_both": (
        "07: fusing BM25 in scores below dense retrieval, with both models (interval below 0)",
        _hybrid_below_dense,
    ),
    "continued_steps_lower_full_score": (
        "10: the extra steps lowered the full-size NDCG@10, with MatryoshkaLoss and with MNRL alone",
        lambda m: (
            max(
                _full_size(m["10_smaller_indexes"]["matryoshka_vs_mnrl"])[key]
                for key in ("MNRL alone", "MatryoshkaLoss")
            )
            < m["10_smaller_indexes"]["variants"]["pytorch fp32"]["ndcg@10"]
        ),
    ),
    "merging_sample_scores_above_05": (
        "11: on its test sample, the base and the fine-tuned model's test NDCG@10 sit above notebook 05's whole-corpus scores",
        lambda m: (
            m["11_forgetting_and_merging"]["test"]["base"]["ndcg@10"] > m["05_evaluation"]["base_ndcg@10"]
            and m["11_forgetting_and_merging"]["test"]["fine-tuned"]["ndcg@10"]
            > m["05_evaluation"]["finetuned_ndcg@10"]
        ),
    ),
    "renumbered_merge_below_base": (
        "11: merged with the renumbered fine-tune, the model scores below the base on dev; merged with the fine-tune as it is, above",
        lambda m: (
            m["11_forgetting_and_merging"]["renumbered_control"]["renumbered_dev"]
            < m["11_forgetting_and_merging"]["sweep"]["0"]["icd10cm dev"]
            < m["11_forgetting_and_merging"]["renumbered_control"]["merged_dev"]
        ),
    ),
    "generation_drops_many": (
        "13: the filters drop a large share of what the small generator writes (over a quarter)",
        lambda m: m["13_synthetic_pairs"]["kept"] < 0.75 * m["13_synthetic_pairs"]["generated"],
    ),
    "greedy_copies_documents": (
        "13: greedy decoding copies the document for a good share of the dev documents (a fifth or more)",
        lambda m: (
            m["13_synthetic_pairs"]["dev_reasons"]["0"].get("copy of the document", 0)
            >= 0.2 * m["13_synthetic_pairs"]["dev_documents"]
        ),
    ),
    "round_trip_drops_real_queries": (
        "13: the round trip would drop a share of real, human-written queries too (over 10%)",
        lambda m: m["13_synthetic_pairs"]["round_trip_pass"]["real"] < 0.9,
    ),
    "one_writer_caps_eight_gpus": (
        "16: eight of the measured GPUs embed faster than the one writer commits, so the one-writer hours stop falling",
        lambda m: (
            8 * m["16_ray_reindexing"]["projection"]["gpu"]["docs_per_s"]
            > m["16_ray_reindexing"]["projection"]["writer_docs_per_s"]
        ),
    ),
    "slerp_close_to_linear": (
        "12: most weight-matrix rows take SLERP's straight-line fallback, and SLERP moves no weight by 0.01 from the linear merge",
        lambda m: (
            m["12_remedies_across_seeds"]["slerp_rows_on_line"] > 0.5
            and m["12_remedies_across_seeds"]["slerp_max_weight_gap"] < 0.01
        ),
    ),
}


def _verdict(notebook, comparison, verdict):
    """A check that the reference run's `comparison` got `verdict` (from its interval over seeds and queries)."""
    return lambda m: (
        m[notebook]["comparisons"][comparison]["verdict"] == verdict and len(m[notebook]["training_seeds"]) >= 3
    )


def _curve(m):
    return m["07_decision"]["learning_curve"]


def _sweep(m):
    return m["04_training"]["batch_size_sweep_comparison"]


def _ddp(m, name):  # notebook 15's comparison, recorded as 14_scaling_out in the reference run (before 04's split)
    row = m["14_scaling_out"]["dev_minus_one_process"][name]
    return row if row["seeds"] >= 3 else None


def _matryoshka(
    m, dims
):  # notebook 10's comparison, recorded under notebook 09 in the reference run (before its split)
    row = m["09_serving"]["matryoshka_vs_mnrl"][str(dims)]
    return row if row["seeds"] >= 3 else None


def _brief(m, domain):
    row = m["01_why_finetune"]["measured"][domain]
    return row if row.get("seeds", 0) >= 3 else None


def _across(m, comparison, task):
    """Notebook 12's comparison over training seeds in the reference run (three seeds or more), else None; the
    reference run recorded it under notebook 11, before notebook 11 was split in two."""
    row = m.get("11_forgetting_and_merging", {}).get("across_seeds", {}).get(f"{comparison} / {task}")
    return row if row is not None and row.get("seeds", 0) >= 3 else None


def _default(notebook):
    """A notebook's metrics in the committed default run (for a reference claim that compares the two)."""
    return next(run["metrics"] for run in json.loads(SUMMARY.read_text()) if run["notebook"] == notebook)


def _holds_zero(row):
    return row is not None and row["ci"][0] <= 0 <= row["ci"][1]


OUT_OF_DOMAIN = ("HPO lay phrases", "construction-law FAQ", "STS Benchmark (Spearman)")


# claims about the reference run: each names the comparison it rests on, whose verdict comes from its interval
REFERENCE_CLAIMS = {
    "reference_chapter_range_hpo_inside_others_below": (
        "01: in the reference run, HPO's relative-gain interval lies inside the chapter's +30% to +70%, the legal "
        "FAQ's and ICD-10-CM's brief runs' below it",
        lambda m: (
            lambda ends: (
                0.30 <= ends["hpo"][0]
                and ends["hpo"][1] <= 0.70
                and ends["zaragoza"][1] < 0.30
                and ends["icd10cm"][1] < 0.30
            )
        )(
            {
                d: [x / r["base_ndcg@10"] for x in r["ci95_diff"]]
                for d, r in m["01_why_finetune"]["measured"].items()
                if "ci95_diff" in r
            }
        ),
    ),
    "reference_icd_brief_cant_tell": (
        "01: in the reference run, a brief run on every ICD-10-CM training query of the compact set (about 1,000 pairs) can't tell a gain",
        lambda m: (
            (row := _brief(m, "icd10cm")) is not None
            and row["ci95_diff"][0] <= 0 <= row["ci95_diff"][1]
            and row["training_examples"] >= 900
        ),
    ),
    "reference_hpo_and_faq_gain": (
        "01: in the reference run, the brief recipe gains on HPO and on the legal FAQ (intervals above 0)",
        lambda m: all(
            (row := _brief(m, domain)) is not None and row["ci95_diff"][0] > 0 for domain in ("hpo", "zaragoza")
        ),
    ),
    "reference_matryoshka_helps_at_64": (
        "10: in the reference run, MatryoshkaLoss scores above MNRL alone at 64 dimensions (interval above 0)",
        lambda m: (row := _matryoshka(m, 64)) is not None and row["ci"][0] > 0,
    ),
    "reference_matryoshka_cant_tell_at_full_size": (
        "10: in the reference run, at 128, 256 and 384 dimensions the interval of MatryoshkaLoss minus MNRL alone holds 0",
        lambda m: all(
            (row := _matryoshka(m, dims)) is not None and row["ci"][0] <= 0 <= row["ci"][1] for dims in (128, 256, 384)
        ),
    ),
    "reference_ddp_runs_learn": (
        "15: in the reference run, the base model scores below the one-process run (interval below 0)",
        lambda m: (row := _ddp(m, "base")) is not None and row["ci"][1] < 0,
    ),
    "reference_gathering_cant_tell": (
        "15: in the reference run, neither gathered nor own negatives can be told from one process (both intervals hold 0)",
        lambda m: (
            len(
                names := [
                    name
                    for name in m["14_scaling_out"]["dev_minus_one_process"]
                    if "processes" in name and "killed" not in name
                ]
            )
            == 2
            and all((row := _ddp(m, name)) is not None and row["ci"][0] <= 0 <= row["ci"][1] for name in names)
        ),
    ),
    "reference_sweep_cant_tell": (
        "14 (04's record): the reference sweep cannot tell batch 128 from batch 16 (interval holds 0), though 128 scored higher with every seed",
        lambda m: (
            len(_sweep(m)["seeds"]) >= 3
            and _sweep(m)["ci"][0] <= 0 <= _sweep(m)["ci"][1]
            and all(
                large > small
                for large, small in zip(
                    m["04_training"]["sweep_by_seed"]["128"], m["04_training"]["sweep_by_seed"]["16"]
                )
            )
        ),
    ),
    "reference_sweep_no_loss": (
        "14 (04's record): in the reference sweep, batch 128 loses at most a hair (interval low end above -0.005) with about a fifth of the steps",
        lambda m: (
            len(_sweep(m)["seeds"]) >= 3
            and _sweep(m)["ci"][0] > -0.005
            and m["04_training"]["sweep_steps"]["128"] * 4 < m["04_training"]["sweep_steps"]["16"]
            and all(
                score > m["04_training"]["base_dev_ndcg@10"] for score in m["04_training"]["batch_size_sweep"].values()
            )
        ),
    ),
    "reference_bf16_loss_below_0005": (
        "14 (04's record): in the reference run, bf16 minus fp32 on dev holds zero with its low end above -0.005, and "
        "bf16 trained faster",
        lambda m: (
            (row := m["04_training"]["precision_comparison"])["ci"][0] > -0.005
            and row["ci"][0] <= 0 <= row["ci"][1]
            and row["by_arm"]["bf16"]["training examples/s"] > row["by_arm"]["fp32"]["training examples/s"]
        ),
    ),
    "reference_curve_rises": (
        "07: every size of the reference curve gains (interval above 0), every larger size gains more on average, and the "
        "smallest and the full set's intervals do not overlap",
        lambda m: (
            len(_curve(m)["seeds"]) >= 3
            and all(low > 0 for low, _ in _curve(m)["ci95"])
            and all(a < b for a, b in zip(_curve(m)["relative_gain"], _curve(m)["relative_gain"][1:]))
            and _curve(m)["ci95"][0][1] < _curve(m)["ci95"][-1][0]
        ),
    ),
    "reference_prediction_within_a_point": (
        "07: the fit on the reference curve's smaller sizes predicted the full set's gain to within a point",
        lambda m: len(_curve(m)["seeds"]) >= 3 and abs(m["07_decision"]["prediction_error"]) < 0.01,
    ),
    "reference_same_alpha_every_seed": (
        "12: in the reference run, the rule chose α = 0.75 for each of the three fine-tunes",
        lambda m: list(m["11_forgetting_and_merging"]["seed_alphas"].values()) == [0.75] * 3,
    ),
    "reference_finetune_gains_dev": (
        "12: over three seeds, the fine-tune gains on ICD-10-CM dev (interval above 0)",
        lambda m: (
            (row := _across(m, "fine-tuned - base", "ICD-10-CM dev (in domain)")) is not None and row["ci"][0] > 0
        ),
    ),
    "reference_finetune_costs_faq": (
        "12: over three seeds, the fine-tune loses on the construction-law FAQ (interval below 0)",
        lambda m: (row := _across(m, "fine-tuned - base", "construction-law FAQ")) is not None and row["ci"][1] < 0,
    ),
    "reference_finetune_cost_cant_tell_elsewhere": (
        "12: over three seeds, the fine-tune's difference from the base on HPO and the STS Benchmark holds 0",
        lambda m: all(
            _holds_zero(_across(m, "fine-tuned - base", task))
            for task in ("HPO lay phrases", "STS Benchmark (Spearman)")
        ),
    ),
    "reference_reranker_loses_less_at_every_k": (
        "06: trained on every training query, the reranker still scores below the retriever alone at every k (intervals below 0), "
        "by less than the default run's at the chosen k",
        lambda m: (
            all(row["ci"][1] < 0 for row in m["06_reranking"]["rerank"].values())
            and m["06_reranking"]["training"]["rows"] > 5 * _default("06_reranking")["training"]["rows"]
            and m["06_reranking"]["rerank"]["10"]["difference"] > _default("06_reranking")["rerank"]["10"]["difference"]
        ),
    ),
    "reference_fusion_cant_tell": (
        "06: in the reference run, the fused score chosen on dev can't be told from the retriever alone on test",
        lambda m: m["06_reranking"]["fusion"]["weight"] > 0 and _holds_zero(m["06_reranking"]["fusion"]),
    ),
    "reference_merge_above_finetune_everywhere": (
        "12: over three seeds, the chosen merge scores above the fine-tune on all three out-of-domain tasks (intervals above 0)",
        lambda m: all(
            (row := _across(m, "merged - fine-tuned", task)) is not None and row["ci"][0] > 0 for task in OUT_OF_DOMAIN
        ),
    ),
    "reference_merge_keeps_80": (
        "12: over three seeds, the merge keeps more than 80% of the fine-tune's test gain (interval's low end above)",
        lambda m: (
            (row := _across(m, "share of the test gain kept", "ICD-10-CM test")) is not None and row["ci"][0] > 0.8
        ),
    ),
    "reference_ties_one_seed_above_line": (
        "12: in the reference run's first seed alone, TIES sits above the linear merges' line on every task (intervals above 0)",
        lambda m: (
            len(
                rows := [
                    row
                    for key, row in m["11_forgetting_and_merging"]["alternatives_against_line"].items()
                    if key.startswith("ties")
                ]
            )
            == 3
            and all(row["ci"][0] > 0 for row in rows)
        ),
    ),
    "reference_ties_cant_tell": (
        "12: over three seeds, TIES against the linear merges' line holds 0 on every task",
        lambda m: all(_holds_zero(_across(m, "ties - the line", task)) for task in OUT_OF_DOMAIN),
    ),
    "reference_fewer_steps_below_line_faq": (
        "12: over three seeds, the earlier checkpoint sits below the merges' line on the FAQ (interval below 0) and holds 0 elsewhere",
        lambda m: (
            (row := _across(m, "fewer steps - the line", "construction-law FAQ")) is not None
            and row["ci"][1] < 0
            and all(
                _holds_zero(_across(m, "fewer steps - the line", task))
                for task in ("HPO lay phrases", "STS Benchmark (Spearman)")
            )
        ),
    ),
    "synthetic_pairs_below_base": (
        "13: trained on generated pairs alone, the model scores below the base model on test",
        _verdict("13_synthetic_pairs", "test: synthetic - base", "below zero"),
    ),
    "real_pairs_above_base": (
        "13: as many real pairs, same documents and steps, score above the base model on test",
        _verdict("13_synthetic_pairs", "test: real - base", "above zero"),
    ),
    "synthetic_below_real": (
        "13: generated pairs score below as many real ones (same documents, count and steps)",
        _verdict("13_synthetic_pairs", "test: synthetic - real", "below zero"),
    ),
    "both_pairs_above_base": (
        "13: generated and real pairs together score above the base model on test",
        _verdict("13_synthetic_pairs", "test: both - base", "above zero"),
    ),
    "both_minus_real_cannot_tell": (
        "13: generated pairs mixed into the real ones change nothing the run can see",
        _verdict("13_synthetic_pairs", "test: both - real", "can't tell"),
    ),
    "generated_for_unlabelled_below_base": (
        "13: pairs generated for codes with no labelled query leave the model below the base on those codes' queries",
        _verdict("13_synthetic_pairs", "test_unseen: generated - base", "below zero"),
    ),
    "real_pairs_of_other_codes_help_unseen": (
        "13: notebook 04's model (real pairs of other codes) scores above the base on test_unseen",
        _verdict("13_synthetic_pairs", "test_unseen: notebook 04 - base", "above zero"),
    ),
    "generated_on_top_below_control": (
        "13: on top of notebook 04's model, generated pairs score below as many real pairs of other codes",
        _verdict("13_synthetic_pairs", "test_unseen: notebook 04 + generated - notebook 04 + real", "below zero"),
    ),
}


def notebook_claims():
    """Claim name -> notebooks whose markdown cells carry its tag."""
    found = {}
    for path in list_notebooks():
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                for name in CLAIM_TAG.findall(cell.source):
                    found.setdefault(name, set()).add(path.stem)
    return found


@pytest.fixture(scope="module")
def summary():
    return {
        run["notebook"]: {**run["metrics"], "notebook_seconds": run["seconds"]}
        for run in json.loads(SUMMARY.read_text())
    }


def test_every_tagged_claim_has_a_check_and_every_check_a_claim():
    found = notebook_claims()
    checks = set(CLAIMS) | set(REFERENCE_CLAIMS)
    assert not set(CLAIMS) & set(REFERENCE_CLAIMS), "a claim is checked against one run, the default or the reference"
    assert set(found) - checks == set(), "claims tagged in a notebook without a check in CLAIMS or REFERENCE_CLAIMS"
    assert checks - set(found) == set(), "checks that no notebook states"


@pytest.mark.parametrize("name", sorted(REFERENCE_CLAIMS))
def test_the_reference_run_supports_the_claim(name):
    description, holds = REFERENCE_CLAIMS[name]
    reference = {notebook: run["metrics"] for notebook, run in json.loads(REFERENCE_FILE.read_text()).items()}
    assert holds(reference), f"the committed reference run contradicts the claim {name!r}: {description}"


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_the_default_run_supports_the_claim(name, summary):
    description, holds = CLAIMS[name]
    assert holds(summary), f"the committed default run contradicts the claim {name!r}: {description}"


RUNTIME_NOTE = re.compile(r"\*\*Runtime on a laptop CPU:\*\* about (\d+)(?: to (\d+))? minutes? with the defaults")


@pytest.mark.parametrize("path", list_notebooks(), ids=lambda path: path.stem)
def test_the_runtime_note_matches_the_default_run(path):
    """Each notebook opens with "about N minutes with the defaults" (or "about N to M minutes", where the CPUs this
    project runs on differ that much): the committed default run must agree (within a minute and a half, or a
    quarter of the figure)."""
    stated = RUNTIME_NOTE.search(nbformat.read(path, as_version=4).cells[0].source)
    assert stated, f"{path.name} does not open with its runtime in the expected words"
    seconds = {run["notebook"]: run["seconds"] for run in json.loads(SUMMARY.read_text())}[path.stem]
    low, high = int(stated.group(1)), int(stated.group(2) or stated.group(1))
    assert low - max(1.5, low / 4) <= seconds / 60 <= high + max(1.5, high / 4), (
        f"{path.stem} says about {stated.group(0)}; it ran {seconds / 60:.1f} minutes"
    )


def test_the_runtime_note_reads_a_range_or_one_figure():
    assert RUNTIME_NOTE.search("**Runtime on a laptop CPU:** about 5 to 9 minutes with the defaults").groups() == (
        "5",
        "9",
    )
    assert RUNTIME_NOTE.search("**Runtime on a laptop CPU:** about 1 minute with the defaults").groups() == ("1", None)

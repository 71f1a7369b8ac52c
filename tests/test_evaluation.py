import math

import numpy as np
import pytest

from helpers import evaluation as E

QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
PERFECT = {"q1": {"d1": 0.9, "d2": 0.1}, "q2": {"d2": 0.9, "d1": 0.1}, "q3": {"d3": 0.9, "d1": 0.1}}
SECOND = {"q1": {"d2": 0.9, "d1": 0.5}, "q2": {"d1": 0.9, "d2": 0.5}, "q3": {"d1": 0.9}}


def test_per_query_scores_match_the_definitions():
    scores = E.per_query_scores(QRELS, SECOND, ["ndcg@10", "mrr@10", "recall@1"])
    assert np.allclose(scores["ndcg@10"], [1 / math.log2(3), 1 / math.log2(3), 0.0])
    assert np.allclose(scores["mrr@10"], [0.5, 0.5, 0.0])
    assert np.allclose(scores["recall@1"], [0, 0, 0])


def test_bootstrap_interval_brackets_the_mean_and_needs_data():
    values = np.random.default_rng(0).normal(0.1, 0.05, size=500)
    low, high = E.bootstrap_ci(values, n_resamples=500)
    assert low < values.mean() < high and high - low < 0.02
    with pytest.raises(ValueError, match="at least two"):
        E.bootstrap_ci(np.array([0.3]))


def test_significance_separates_identical_from_different_runs():
    many_qrels = {f"q{i}": {"d1": 1} for i in range(30)}
    good = {q: {"d1": 0.9, "d2": 0.1} for q in many_qrels}
    bad = {q: {"d2": 0.9, "d3": 0.5, "d1": 0.1} for q in many_qrels}
    assert E.significance(many_qrels, {"a": good, "b": good}) == pytest.approx(1.0)
    assert E.significance(many_qrels, {"a": bad, "b": good}) < 0.01


def test_trec_files(tmp_path):
    written = E.save_trec(QRELS, {"base": SECOND, "finetuned": PERFECT}, tmp_path)
    assert sorted(p.name for p in written) == ["base.trec", "finetuned.trec", "test.qrels"]
    first = (tmp_path / "finetuned.trec").read_text().splitlines()[0].split()
    assert first[:4] == ["q1", "Q0", "d1", "1"] and first[5] == "finetuned"
    assert (tmp_path / "test.qrels").read_text().splitlines()[0].split() == ["q1", "0", "d1", "1"]


def test_evaluator_and_ranx_agree_on_a_real_model(base_model):
    corpus = {"A05.1": "Botulism food poisoning", "A48.51": "Infant botulism", "E10": "Type 1 diabetes mellitus",
              "E11": "Type 2 diabetes mellitus", "I10": "Essential (primary) hypertension", "R51": "Headache"}
    queries = {"q1": "Classical foodborne intoxication due to Clostridium botulinum", "q2": "High blood pressure",
               "q3": "Adult-onset diabetes"}
    qrels = {"q1": {"A05.1": 1}, "q2": {"I10": 1}, "q3": {"E11": 1}}
    results = E.compare_on_splits({"base": base_model}, corpus, {"test": (queries, qrels)}, top_k=5)
    outcome = results["test"]["base"]
    assert set(outcome["run"]) == set(queries) and all(len(r) == 5 for r in outcome["run"].values())
    assert outcome["metrics"]["domain-retrieval_cosine_ndcg@10"] == pytest.approx(outcome["per_query"]["ndcg@10"].mean(), abs=1e-6)
    headline = E.headline(outcome["metrics"])
    assert set(headline) == {"NDCG@10", "Recall@10", "MRR@10"} and 0 < headline["NDCG@10"] <= 1


def test_evaluation_refuses_judgements_outside_the_corpus(base_model):
    with pytest.raises(ValueError, match="not in the corpus"):
        E.evaluate_retrieval_quality(base_model, {"q": "x"}, {"d1": "y"}, {"q": {"d9"}})


def test_bm25_ranks_the_lexical_match_first():
    corpus = {"d1": "Typhoid fever", "d2": "Cholera due to Vibrio cholerae", "d3": "Asthma, unspecified"}
    run = E.bm25_run(corpus, {"q1": "fevers of typhoid", "q2": "vibrio"}, top_k=2)
    assert next(iter(run["q1"])) == "d1" and list(run["q2"]) == ["d2"]  # stemming matches "fevers"; no zero scores


def test_reciprocal_rank_fusion_rewards_agreement():
    qrels = {"q1": {"d2": 1}}
    lexical = {"q1": {"d1": 9.0, "d2": 8.0}}
    dense = {"q1": {"d3": 0.9, "d2": 0.8}}
    fused = E.fuse_rrf(qrels, {"lexical": lexical, "dense": dense})
    assert max(fused["q1"], key=fused["q1"].get) == "d2"  # second in both beats first in one
    assert fused["q1"]["d2"] == pytest.approx(2 / 62)


def test_trec_runs_read_back(tmp_path):
    E.save_trec(QRELS, {"second": SECOND}, tmp_path)
    read = E.load_trec_run(tmp_path / "second.trec")
    assert read.keys() == SECOND.keys() and all(read[q] == pytest.approx(SECOND[q]) for q in SECOND)


def test_duplicate_detection_scores_a_model(base_model):
    first = ["Typhoid fever", "Typhoid fever", "Asthma NOS", "Asthma NOS"]
    second = ["Infection due to Salmonella typhi", "Paratyphoid fever A", "Asthma, unspecified", "Acute bronchospasm"]
    scores = E.duplicate_detection(base_model, first, second, [1, 0, 1, 0])
    assert set(scores) == {"f1", "precision", "recall", "f1_threshold", "ap"} and 0 < scores["f1"] <= 1

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


def test_per_query_scores_follow_the_order_of_the_qrels_not_sorted_ids():
    qrels = {"q9": {"d1": 1}, "q1": {"d2": 1}, "q5": {"d3": 1}}
    run = {"q9": {"d1": 1.0}, "q1": {"d7": 1.0}, "q5": {"d8": 0.9, "d3": 0.5}}
    assert np.allclose(E.per_query_scores(qrels, run, ["ndcg@10"])["ndcg@10"], [1.0, 0.0, 1 / math.log2(3)])


def test_graded_ndcg_map_and_precision_follow_their_definitions():
    qrels = {"q": {"a": 2, "b": 1, "c": 1}}
    run = {"q": {"x": 0.9, "b": 0.8, "a": 0.7, "y": 0.6}}
    scores = E.per_query_scores(qrels, run, ["ndcg@3", "map@10", "precision@2", "mrr@1", "mrr@2"])
    dcg, ideal = 1 / math.log2(3) + 2 / math.log2(4), 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert np.allclose(scores["ndcg@3"], [dcg / ideal])  # linear gains, ideal ranking cut at 3
    assert np.allclose(scores["map@10"], [(1 / 2 + 2 / 3) / 3])  # divided by every relevant document, found or not
    assert np.allclose(scores["precision@2"], [0.5])
    assert np.allclose(scores["mrr@1"], [0.0]) and np.allclose(scores["mrr@2"], [0.5])


def test_an_unknown_metric_is_named():
    with pytest.raises(ValueError, match="unknown metric 'ndcg10'"):
        E.per_query_scores(QRELS, SECOND, ["ndcg10"])
    with pytest.raises(ValueError, match="unknown metric 'bleu@4'"):
        E.per_query_scores(QRELS, SECOND, ["bleu@4"])


def test_reciprocal_rank_fusion_sums_one_over_k_plus_rank():
    fused = E.reciprocal_rank_fusion([{"q": {"d1": 0.9, "d2": 0.5}}, {"q": {"d2": 3.0, "d3": 1.0}}], k=60)
    expected = {"d1": 1 / 61, "d2": 1 / 62 + 1 / 61, "d3": 1 / 62}
    assert fused["q"].keys() == expected.keys()
    assert all(fused["q"][doc] == pytest.approx(score, rel=1e-6) for doc, score in expected.items())


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


def test_encode_caches_by_weights_and_texts(tmp_path, base_model):
    import copy

    import torch

    texts = ["Botulism food poisoning", "Typhoid fever"]
    first = E.encode(base_model, texts, tmp_path, show_progress_bar=False)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    assert torch.allclose(E.encode(base_model, texts, tmp_path, show_progress_bar=False), first)  # read back
    assert torch.allclose(first.norm(dim=1), torch.ones(2), atol=1e-5)
    E.encode(base_model, [*texts, "Asthma"], tmp_path, show_progress_bar=False)
    changed = copy.deepcopy(base_model)
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    E.encode(changed, texts, tmp_path, show_progress_bar=False)
    assert len(list(tmp_path.glob("*.npy"))) == 3  # other texts, other weights: other files, never a stale hit


def test_retrieve_ranks_the_right_document_first(base_model):
    corpus = {
        "A05.1": "Botulism food poisoning",
        "E11": "Type 2 diabetes mellitus",
        "I10": "Essential (primary) hypertension",
    }
    run = E.retrieve(base_model, {"q1": "High blood pressure", "q2": "Adult-onset diabetes"}, corpus, top_k=2)
    assert {query: max(docs, key=docs.get) for query, docs in run.items()} == {"q1": "I10", "q2": "E11"}
    assert all(len(docs) == 2 for docs in run.values())


def test_trec_runs_read_back(tmp_path):
    E.save_trec(QRELS, {"second": SECOND}, tmp_path)
    read = E.load_trec_run(tmp_path / "second.trec")
    assert read.keys() == SECOND.keys() and all(read[q] == pytest.approx(SECOND[q]) for q in SECOND)


def test_shares_no_word_counts_queries_bm25_cannot_match():
    from helpers.evaluation import shares_no_word

    corpus = {"d1": "Other fatigue", "d2": "Fracture of the femur", "d3": "Fatigue fracture of vertebra"}
    queries = {"q1": "Asthenia NOS", "q2": "fractured femurs", "q3": "the of"}  # q3: stop words only
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 0}, "q3": {"d3": 1}}
    assert shares_no_word(queries, corpus, qrels).tolist() == [True, False, True]  # "fractured"/"fracture" share a stem
    with pytest.raises(KeyError, match="not in the corpus"):
        shares_no_word(queries, corpus, {"q1": {"d9": 1}})


def test_ndcg_per_query_ranks_the_whole_corpus_in_the_order_of_the_judgements(base_model):
    from helpers.evaluation import ndcg_per_query

    corpus = {"d1": "Fracture of the femur", "d2": "Type 2 diabetes mellitus", "d3": "Acute bronchitis"}
    queries = {"q2": "type 2 diabetes mellitus", "q1": "acute bronchitis"}  # each query is one document's own text
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}  # q1's judged answer is the femur, which its text does not match
    scores = ndcg_per_query(base_model, queries, corpus, qrels)
    assert (
        scores.tolist()[1] == 1.0 and 0 < scores.tolist()[0] < 1
    )  # in the order of qrels: q1 (not first), then q2 (first)


def test_significance_in_batches_gives_scipys_unbatched_p_value():
    from scipy.stats import permutation_test

    rng = np.random.default_rng(3)
    qrels = {f"q{i}": {"d1": 1} for i in range(300)}
    first = {q: {"d1": float(rng.random()), "d2": 0.5} for q in qrels}  # d1 above or below d2: per-query NDCG 1 or 0.63
    second = {q: {"d1": float(rng.random()), "d2": 0.5} for q in qrels}
    a, b = (E.per_query_scores(qrels, run, ["ndcg@10"])["ndcg@10"] for run in (first, second))
    unbatched = permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        vectorized=True,
        permutation_type="samples",
        n_resamples=2_500,
        alternative="two-sided",
        rng=np.random.default_rng(7),
    ).pvalue
    assert E.significance(qrels, {"a": first, "b": second}, seed=7, n_resamples=2_500) == pytest.approx(
        unbatched, abs=0
    )


def test_ndcg_on_a_sample_ranks_only_the_sample_and_can_reuse_the_whole_corpus_cache(base_model, tmp_path):
    from helpers.evaluation import ndcg_on_sample, ndcg_per_query

    corpus = {
        "d1": "Fracture of the femur",
        "d2": "Type 2 diabetes mellitus",
        "d3": "Acute bronchitis",
        "d4": "Fracture of the femoral neck",
    }
    queries = {"q1": "broken femur", "q2": "adult onset diabetes", "q3": "fractured femoral neck"}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d4": 1}}
    sample = ["d1", "d2", "d3"]  # without d4, q3's only answer
    encoded = ndcg_on_sample(base_model, corpus, queries, qrels, sample)
    assert encoded[2] == 0.0  # q3's answer is not searched: only the sample is ranked
    expected = ndcg_per_query(base_model, queries, {doc_id: corpus[doc_id] for doc_id in sample}, qrels)
    assert encoded.tolist() == expected.tolist()
    cached = ndcg_on_sample(base_model, corpus, queries, qrels, sample, cache_dir=tmp_path)
    assert np.allclose(cached, encoded, atol=1e-6)  # the same vectors, encoded in another batch
    cached_files = set(tmp_path.glob("*.npy"))
    assert len(cached_files) == 2  # the whole corpus and the queries
    ndcg_on_sample(base_model, corpus, queries, qrels, ["d1", "d4"], cache_dir=tmp_path)
    assert set(tmp_path.glob("*.npy")) == cached_files  # another sample of the same corpus: nothing encoded again


def test_an_evaluators_ndcg_per_query_averages_to_its_own_score(base_model):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from helpers.evaluation import evaluator_ndcg_per_query

    corpus = {"d1": "Fracture of the femur", "d2": "Type 2 diabetes mellitus", "d3": "Acute bronchitis"}
    queries = {"q3": "acute bronchitis", "q2": "adult-onset diabetes", "q1": "broken thigh bone"}
    relevant = {"q1": {"d1"}, "q2": {"d2"}, "q3": {"d1"}, "q9": {"d3"}}  # q3's judged answer is not the text it matches
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, ndcg_at_k=[10], name="dev", write_csv=False)
    scores = evaluator_ndcg_per_query(evaluator, base_model)
    assert len(scores) == 3 and scores[0] < 1  # the evaluator's queries in its order (q3 first), q9 not among them
    assert scores.mean() == pytest.approx(evaluator(base_model)["dev_cosine_ndcg@10"], abs=1e-6)

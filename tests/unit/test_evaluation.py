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
    corpus = {"A05.1": "Botulism food poisoning", "E11": "Type 2 diabetes mellitus", "I10": "Essential (primary) hypertension"}
    run = E.retrieve(base_model, {"q1": "High blood pressure", "q2": "Adult-onset diabetes"}, corpus, top_k=2)
    assert {query: max(docs, key=docs.get) for query, docs in run.items()} == {"q1": "I10", "q2": "E11"}
    assert all(len(docs) == 2 for docs in run.values())


def test_trec_runs_read_back(tmp_path):
    E.save_trec(QRELS, {"second": SECOND}, tmp_path)
    read = E.load_trec_run(tmp_path / "second.trec")
    assert read.keys() == SECOND.keys() and all(read[q] == pytest.approx(SECOND[q]) for q in SECOND)


def test_statistic_bootstrap_brackets_a_paired_spearman_difference():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    gold = rng.normal(size=300)
    good, poor = gold + 0.3 * rng.normal(size=300), gold + 2.0 * rng.normal(size=300)
    difference = spearmanr(good, gold).statistic - spearmanr(poor, gold).statistic
    low, high = E.bootstrap_statistic_ci(lambda at: spearmanr(good[at], gold[at]).statistic - spearmanr(poor[at], gold[at]).statistic,
                                         300, n_resamples=300)
    assert 0 < low < difference < high
    with pytest.raises(ValueError, match="at least two"):
        E.bootstrap_statistic_ci(lambda at: 0.0, 1)


def test_seeds_and_queries_interval_widens_with_the_spread_between_seeds():
    rng = np.random.default_rng(0)
    per_query = rng.normal(0.02, 0.05, 400)
    assert E.seeds_and_queries_ci(per_query, n_resamples=500) == E.bootstrap_ci(per_query, n_resamples=500)  # one seed
    agreeing = E.seeds_and_queries_ci(np.stack([per_query, per_query + 0.001, per_query - 0.001]), n_resamples=500)
    assert agreeing[0] < 0.02 < agreeing[1] and agreeing[1] - agreeing[0] < 0.02
    # three runs whose means disagree (one lost its gain): the interval must reach below zero
    low, high = E.seeds_and_queries_ci(np.stack([per_query + 0.02, per_query + 0.02, per_query - 0.04]), n_resamples=500)
    assert low < 0 < high and (high - low) > 3 * (agreeing[1] - agreeing[0])
    with pytest.raises(ValueError, match="shape"):
        E.seeds_and_queries_ci(np.zeros((3, 1)))


def test_seeds_and_statistic_interval_matches_the_mean_difference_version_and_takes_any_statistic():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    runs = np.stack([rng.normal(0.02 + shift, 0.05, 300) for shift in (0.0, 0.01, -0.01)])
    by_mean = E.seeds_and_queries_ci(runs, n_resamples=400)
    by_statistic = E.seeds_and_statistic_ci(lambda s, at: float(runs[s][at].mean()), 3, 300, n_resamples=400)
    assert by_statistic == pytest.approx(by_mean, abs=0.003)  # the same two parts; only the bootstrap's draws differ
    one_seed = E.seeds_and_statistic_ci(lambda s, at: float(runs[0][at].mean()), 1, 300, n_resamples=400)
    assert one_seed == E.bootstrap_statistic_ci(lambda at: float(runs[0][at].mean()), 300, n_resamples=400)
    gold = rng.normal(size=300)
    noisy = [gold + scale * rng.normal(size=300) for scale in (0.5, 0.6, 2.0)]  # one seed far worse: a wide interval
    low, high = E.seeds_and_statistic_ci(lambda s, at: spearmanr(noisy[s][at], gold[at]).statistic, 3, 300, n_resamples=300)
    assert low < np.mean([spearmanr(values, gold).statistic for values in noisy]) < high and high - low > 0.3
    with pytest.raises(ValueError, match="at least one seed"):
        E.seeds_and_statistic_ci(lambda s, at: 0.0, 0, 300)


def test_seeds_and_queries_interval_covers_as_often_as_it_claims():
    """Simulated: 3 seeds x 300 queries, no true difference, a seed effect of 0.01 on top of query noise. A
    bootstrap over the three seeds covered zero about 82% of the time here; the t-based seed part must keep it
    near 95%."""
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(200):
        per_query = rng.normal(0, 0.05, 300)
        runs = np.stack([per_query + rng.normal(0, 0.01) + rng.normal(0, 0.02, 300) for _ in range(3)])
        low, high = E.seeds_and_queries_ci(runs, n_resamples=200, seed=trial)
        covered += low <= 0 <= high
    assert covered / 200 >= 0.9


@pytest.mark.parametrize(("ci", "target", "expected"), [
    ((0.01, 0.05), 0.0, "above zero"), ((-0.05, -0.01), 0.0, "below zero"), ((-0.01, 0.05), 0.0, "can't tell"),
    ((0.0, 0.05), 0.0, "can't tell"), ((-0.05, 0.0), 0.0, "can't tell"),  # an interval that touches the target holds it
    ((0.02, 0.04), 0.01, "above 0.01"), ((2.5, 3.0), 2.0, "above 2"), ((float("-inf"), float("inf")), 0.0, "can't tell"),
])
def test_interval_verdict_reads_an_interval_against_its_target(ci, target, expected):
    assert E.interval_verdict(ci, target) == expected


def test_interval_verdict_reads_a_share_in_percent_and_takes_a_notebooks_own_labels():
    assert E.interval_verdict((0.94, 1.00), 0.8, percent=True) == "above 80%"
    assert E.interval_verdict((0.5, 0.79), 0.8, percent=True) == "below 80%"
    assert E.interval_verdict((0.8, 0.9), 0.8, percent=True) == "can't tell"
    assert E.interval_verdict((0.1, 0.2), above="a gain", below="a loss") == "a gain"
    assert E.interval_verdict((-0.2, -0.1), above="a gain", below="a loss") == "a loss"
    assert E.interval_verdict((-0.1, 0.1), undecided="makes no clear difference") == "makes no clear difference"


def test_interval_verdict_calls_an_undefined_end_undecided_and_refuses_a_reversed_interval():
    assert E.interval_verdict((float("nan"), 0.1)) == "can't tell"  # e.g. a share of a gain that was 0 on a resample
    with pytest.raises(ValueError, match="low end"):
        E.interval_verdict((0.2, 0.1))


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
    assert scores.tolist()[1] == 1.0 and 0 < scores.tolist()[0] < 1  # in the order of qrels: q1 (not first), then q2 (first)

"""Unit tests of helpers/reranking.py, with a stand-in cross-encoder that scores a pair by its document's length."""

import numpy as np
import pytest

from helpers.reranking import choose_k, latency_per_query, rerank, score_candidates, top_candidates

pytestmark = pytest.mark.unit


class LengthScorer:
    """Scores (query, document) by the document's length, and counts the pairs it was asked to score."""

    device = "cpu"

    def __init__(self):
        self.scored = 0

    def predict(self, pairs, batch_size=32, activation_fn=None, convert_to_numpy=True, show_progress_bar=False):
        self.scored += len(pairs)
        return np.array([float(len(document)) for _, document in pairs])


CORPUS = {"a": "x", "b": "xxx", "c": "xx", "d": "xxxx", "e": "xxxxx"}
QUERIES = {"q1": "query one", "q2": "query two"}
RUN = {"q1": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5}, "q2": {"e": 0.9, "d": 0.9, "a": 0.1}}


def test_top_candidates_are_best_first_with_ties_in_the_retrievers_order():
    assert top_candidates(RUN, 2) == {"q1": ["a", "b"], "q2": ["e", "d"]}
    with pytest.raises(ValueError, match="k=0"):
        top_candidates(RUN, 0)


def test_rerank_reorders_the_top_k_only_and_keeps_the_rest_below_in_order():
    scorer = LengthScorer()
    scores = score_candidates(scorer, QUERIES, CORPUS, RUN, k=3)
    reranked = rerank(RUN, scores, k=3)
    order = [doc for doc, _ in sorted(reranked["q1"].items(), key=lambda item: -item[1])]
    assert order == ["b", "c", "a", "d", "e"]  # a, b, c rescored by length (3, 2, 1); d and e keep their places
    order = [doc for doc, _ in sorted(reranked["q2"].items(), key=lambda item: -item[1])]
    assert order == ["e", "d", "a"]


def test_score_candidates_does_not_score_a_known_pair_again():
    scorer = LengthScorer()
    scores = score_candidates(scorer, QUERIES, CORPUS, RUN, k=2)
    assert scorer.scored == 4
    scores = score_candidates(scorer, QUERIES, CORPUS, RUN, k=3, known=scores)
    assert scorer.scored == 4 + 2  # only each query's third document is new
    assert scores[("q1", "c")] == 2.0


def test_rerank_names_the_query_whose_candidates_were_not_scored():
    scores = score_candidates(LengthScorer(), QUERIES, CORPUS, RUN, k=2)
    with pytest.raises(KeyError, match="q1.*top 3"):
        rerank(RUN, scores, k=3)


def test_choose_k_takes_the_smallest_k_within_the_tolerance_of_the_best():
    assert choose_k({10: 0.700, 20: 0.712, 50: 0.715, 100: 0.714}, tolerance=0.005) == 20
    assert choose_k({10: 0.700, 20: 0.712, 50: 0.715, 100: 0.714}, tolerance=0.0) == 50
    assert choose_k({10: 0.72, 20: 0.70}) == 10
    with pytest.raises(ValueError, match="empty"):
        choose_k({})


def test_latency_per_query_gives_one_positive_time_per_query():
    times = latency_per_query(LengthScorer(), QUERIES, CORPUS, RUN, k=2, rounds=2)
    assert times.shape == (2,) and (times > 0).all()


def test_rerank_breaks_ties_by_the_retrievers_order_not_by_document_id():
    run = {"q": {"c": 0.9, "a": 0.8, "b": 0.7}}
    reranked = rerank(run, {("q", "c"): 1.0, ("q", "a"): 2.0, ("q", "b"): 1.0}, k=3)
    assert [doc for doc, _ in sorted(reranked["q"].items(), key=lambda item: -item[1])] == ["a", "c", "b"]


def test_fusion_at_weight_0_keeps_the_retriever_and_at_1_is_the_cross_encoder():
    from helpers.reranking import fused_scores, rerank

    run = {"q": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}}
    cross = {("q", "a"): -2.0, ("q", "b"): 5.0, ("q", "c"): 1.0}
    order = lambda ranked: sorted(ranked["q"], key=lambda d: -ranked["q"][d])  # noqa: E731
    assert order(rerank(run, fused_scores(run, cross, 3, 0.0), 3)) == ["a", "b", "c", "d"]
    assert (
        order(rerank(run, fused_scores(run, cross, 3, 1.0), 3)) == order(rerank(run, cross, 3)) == ["b", "c", "a", "d"]
    )
    # at 0.5 the z-scores add: retriever a +1.22, b 0, c -1.22; cross-encoder a -1.16, b +1.28, c -0.12 -> b, a, c
    assert order(rerank(run, fused_scores(run, cross, 3, 0.5), 3)) == ["b", "a", "c", "d"]
    assert fused_scores({"q": {"a": 1.0, "b": 1.0}}, {("q", "a"): 3.0, ("q", "b"): 3.0}, 2, 0.5) == {
        ("q", "a"): 0.0,
        ("q", "b"): 0.0,
    }
    with pytest.raises(ValueError, match="between 0 and 1"):
        fused_scores(run, cross, 3, 1.5)
    with pytest.raises(KeyError, match="no cross-encoder score"):
        fused_scores(run, cross, 4, 0.5)


def test_choose_fusion_takes_each_ks_best_weight_then_the_k_rule():
    from helpers.reranking import choose_fusion

    dev = {10: {0.0: 0.60, 0.3: 0.62, 0.6: 0.62}, 50: {0.0: 0.60, 0.3: 0.625, 0.6: 0.61}}
    assert choose_fusion(dev, tolerance=0.005) == (
        10,
        0.3,
    )  # 0.62 is within 0.005 of 0.625; on 10's tie, the smaller weight
    assert choose_fusion(dev, tolerance=0.0) == (50, 0.3)
    assert choose_fusion({10: {0.0: 0.6, 0.5: 0.6}}) == (10, 0.0)


def test_rerank_table_reads_measured_and_committed_rows():
    from helpers.reranking import rerank_table

    measured = {
        10: {
            "ndcg@10": 0.5,
            "difference": -0.1,
            "ci": (-0.15, -0.05),
            "recall@10": 0.7,
            "recall_ci": (0.0, 0.0),
            "p50_ms": 20.0,
            "p95_ms": 30.0,
            "docs_per_s": 480.0,
        }
    }
    table = rerank_table(measured, retriever_recall=0.7)
    assert table.loc["top 10", "the reranker"] == "loses" and table.loc["top 10", "documents scored / s"] == 480
    assert table.loc["top 10", "Recall@10 minus the retriever's (95% CI)"].startswith("+0.000")
    committed = {"20": {"ndcg@10": 0.7, "difference": 0.02, "ci": [0.01, 0.03], "p50_ms": 40.0, "p95_ms": 55.0}}
    assert list(rerank_table(committed).columns) == [
        "NDCG@10",
        "minus the retriever alone (95% CI)",
        "the reranker",
        "p50 ms / query",
        "p95 ms / query",
    ]
    assert rerank_table(committed).loc["top 20", "the reranker"] == "gains"

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

import numpy as np
import pytest
from scipy.stats import spearmanr

from helpers import task_suite as S
from helpers.data import RetrievalData
from helpers.evaluation import ndcg_per_query
from helpers.sources import SimilarityPairs

CORPUS = {
    "d1": "Fracture of the femur",
    "d2": "Type 2 diabetes mellitus",
    "d3": "Acute bronchitis",
    "d4": "Fracture of the femoral neck",
    "d5": "Essential hypertension",
    "d6": "Migraine without aura",
}
DATA = RetrievalData(
    "toy",
    CORPUS,
    queries={"q1": "broken femur", "q2": "adult onset diabetes", "q3": "high blood pressure", "q4": "chest cold"},
    qrels={"dev": {"q1": {"d1": 1}, "q2": {"d2": 1}}, "test": {"q3": {"d5": 1}}, "train": {"q4": {"d3": 1}}},
)


def test_a_retrieval_task_samples_queries_and_keeps_their_answers():
    task = S.retrieval_task(DATA, ["dev", "test"], corpus_size=4, max_queries=3, seed=1)
    assert set(task.qrels) == {"q1", "q2", "q3"} and task.queries == {q: DATA.queries[q] for q in task.qrels}
    assert len(task.doc_ids) == 4 and {"d1", "d2", "d5"} <= set(task.doc_ids)  # every answer, and one distractor
    assert dict(task.corpus) == {doc_id: CORPUS[doc_id] for doc_id in task.doc_ids}  # the sample itself
    assert len(task) == 3 and task.describe() == "3 queries, 4 documents"
    whole = S.retrieval_task(DATA, ["dev", "test"], corpus_size=4, max_queries=3, seed=1, rows_of_whole_corpus=True)
    assert whole.corpus is CORPUS and whole.doc_ids == task.doc_ids  # the same sample, scored from rows of the corpus


def test_item_scores_and_their_headlines(base_model, tmp_path):
    pairs = SimilarityPairs(
        ["a man plays a guitar", "a dog runs", "the stock market fell", "a child is reading"],
        ["a person plays music", "a cat sleeps", "shares dropped sharply", "someone cooks dinner"],
        [4.2, 1.0, 4.6, 0.4],
        "toy pairs",
    )
    tasks = {
        "retrieval": S.retrieval_task(DATA, ["dev"], corpus_size=4, max_queries=2, seed=0, rows_of_whole_corpus=True),
        "sts": S.pair_task(pairs, size=3, seed=0),
    }
    assert len(tasks["sts"]) == 3 and tasks["sts"].describe() == "3 sentence pairs"
    scores = S.item_scores(base_model, tasks)
    sample = {doc_id: CORPUS[doc_id] for doc_id in tasks["retrieval"].doc_ids}
    expected = ndcg_per_query(base_model, tasks["retrieval"].queries, sample, tasks["retrieval"].qrels)
    assert scores["retrieval"].tolist() == expected.tolist()  # without a cache: the sample alone is encoded
    assert np.allclose(
        S.item_scores(base_model, tasks, tmp_path)["retrieval"], expected, atol=1e-6
    )  # rows of the cache
    assert set(S.item_scores(base_model, tasks, only=["sts"])) == {"sts"}
    assert S.headline(tasks["retrieval"], scores["retrieval"]) == pytest.approx(expected.mean())
    sts = tasks["sts"]
    assert S.headline(sts, scores["sts"]) == pytest.approx(spearmanr(scores["sts"], sts.gold).statistic)


def test_a_pair_tasks_difference_is_a_difference_of_correlations_with_an_interval():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 60)
    task = S.PairTask([""] * 60, [""] * 60, gold, "made up")
    close, noisy = gold + rng.normal(0, 0.5, 60), gold + rng.normal(0, 3.0, 60)  # two models' cosines, made up
    difference = S.headline(task, close) - S.headline(task, noisy)
    low, high = S.difference_ci(task, close, noisy, n_resamples=500, seed=0)
    assert 0 < low <= difference <= high  # the closer model correlates better, and the pairs resampled show it
    assert S.difference_ci(task, close, close, n_resamples=200, seed=0) == (0.0, 0.0)
    retrieval = S.RetrievalTask({}, {f"q{i}": {} for i in range(60)}, {}, [], "made up")
    assert S.difference_ci(retrieval, close, noisy, n_resamples=200, seed=0) == S.bootstrap_ci(
        close - noisy, n_resamples=200, seed=0
    )  # a retrieval task: the mean of per-query differences


def test_scored_models_round_trip_exactly(tmp_path):
    scores = {
        "base": {"dev": np.array([0.1, 1 / 3, 0.0]), "stsb": np.array([0.25, -0.5], dtype=np.float32)},
        "merged": {"dev": np.array([0.2, 2 / 3, 1.0]), "stsb": np.array([0.5, 0.125], dtype=np.float32)},
    }
    test = {"base": np.array([0.3, 0.7]), "merged": np.array([0.4, 0.9])}
    path = S.save_scored_models(tmp_path / "sweep" / "item_scores.json", scores, test, alphas=[0.0, 1.0], seed=7)
    loaded, loaded_test, record = S.load_scored_models(path)
    assert record == {"alphas": [0.0, 1.0], "seed": 7}
    assert set(loaded) == set(scores) and set(loaded_test) == set(test)
    for model, by_task in scores.items():  # every score back to the last bit (float32 ones widened, not rounded)
        for task, values in by_task.items():
            assert np.array_equal(loaded[model][task], values.astype(float)), (model, task)
    assert all(np.array_equal(loaded_test[model], test[model]) for model in test)
    with pytest.raises(ValueError, match=r"\['scores'\] name the scores themselves"):
        S.save_scored_models(path, scores, test, scores={})


def test_forgetting_tasks_are_rebuilt_identically_from_their_settings():
    settings = dict(
        out_of_domain=["hpo", "stsb"],
        dev_corpus_size=5,
        dev_queries=2,
        ood_corpus_size=30,
        ood_queries=6,
        stsb_pairs=12,
        seed=3,
    )
    first, second = S.forgetting_tasks(DATA, **settings), S.forgetting_tasks(DATA, **settings)
    assert list(first) == ["icd10cm dev", "hpo", "stsb"] and set(first) <= set(S.TASK_LABELS)
    assert first["icd10cm dev"].corpus is CORPUS and len(first["icd10cm dev"]) == 2  # rows of the whole corpus
    assert len(first["hpo"]) == 6 and len(first["hpo"].doc_ids) == 30 and len(first["stsb"]) == 12
    assert isinstance(first["stsb"], S.PairTask)
    for name in first:  # the same items in the same order: notebook 12 scores exactly what notebook 11 scored
        one, other = first[name], second[name]
        if isinstance(one, S.PairTask):
            assert one.first == other.first and list(one.gold) == list(other.gold)
        else:
            assert one.queries == other.queries and one.doc_ids == other.doc_ids
    reseeded = S.forgetting_tasks(DATA, **{**settings, "seed": 4})
    assert reseeded["hpo"].queries != first["hpo"].queries  # the seed chooses the items


def test_a_judged_sample_keeps_every_answer_or_searches_the_documents_given():
    import random

    sample = S.judged_sample(DATA, "dev", ["q2", "q1"], 4, random.Random(0))
    assert sample["query_ids"] == ["q2", "q1"] and sample["qrels"] == {"q2": {"d2": 1}, "q1": {"d1": 1}}
    assert len(sample["doc_ids"]) == 4 and {"d1", "d2"} <= set(sample["doc_ids"])
    assert sample["doc_ids"] == [doc_id for doc_id in CORPUS if doc_id in sample["doc_ids"]]  # the corpus's order
    rng = random.Random(0)
    given = S.judged_sample(DATA, "test", ["q3"], 4, rng, documents={"d6", "d5"})
    assert given["doc_ids"] == ["d5", "d6"] and rng.random() == random.Random(0).random()  # no draw when given
    assert S.judged_sample(DATA, "dev", ["q1"], None, random.Random(0))["doc_ids"] == list(CORPUS)  # None: all

"""helpers.data: splits and the leakage check, BEIR files on disk."""

import pytest

from helpers import data as D
from helpers.data import ContrastivePair, DataValidationError, LeakageError


# ---- splits and leakage ----------------------------------------------------------------------------


def small_retrieval_data(policy=None):
    documents = {f"d{i}": f"document number {i}" for i in range(40)}
    pairs = [(f"query {i} variant {v}", f"d{i}") for i in range(40) for v in range(3)]
    return D.assemble("toy", documents, pairs, policy or D.SplitPolicy(), seed=1, attribution="toy")


def test_splits_are_disjoint_deterministic_and_unseen_documents_have_no_training_query():
    data = small_retrieval_data()
    assert data.qrels == small_retrieval_data().qrels
    split_of = {}
    for split, judged in data.qrels.items():
        for query_id in judged:
            assert query_id not in split_of, f"{query_id} is in {split_of.get(query_id)} and {split}"
            split_of[query_id] = split
    train_docs = {doc for docs in data.qrels["train"].values() for doc in docs}
    unseen_docs = {doc for docs in data.qrels["test_unseen"].values() for doc in docs}
    assert unseen_docs and not unseen_docs & train_docs
    assert all(data.qrels[split] for split in ("train", "dev", "test", "test_unseen"))


def test_document_policy_holds_out_whole_documents():
    data = small_retrieval_data(D.SplitPolicy(by_document=True))
    train_docs = {doc for docs in data.qrels["train"].values() for doc in docs}
    test_docs = {doc for docs in data.qrels["test"].values() for doc in docs}
    assert test_docs and not test_docs & train_docs and "test_unseen" not in data.qrels


def test_assemble_merges_duplicates_and_drops_queries_equal_to_a_document():
    documents = {"d1": "Botulism food poisoning", "d2": "Infant botulism"}
    pairs = [("Botulism NOS", "d1"), ("botulism, NOS", "d2"), ("BOTULISM FOOD POISONING", "d1")]
    data = D.assemble("toy", documents, pairs, D.SplitPolicy(0, 0, 0), 0, "", {"d1": ["d2"]})
    assert list(data.queries.values()) == ["Botulism NOS"]
    assert data.qrels["train"] == {"q0": {"d1": 1, "d2": 1}}
    assert data.negatives == {}  # d2 is relevant itself, so it cannot be a negative


def test_leakage_check_fails_on_a_copied_test_query():
    data = small_retrieval_data()
    D.check_split_leakage(data)
    test_id = next(iter(data.qrels["test"]))
    data.queries["copy"] = data.queries[test_id].upper() + "."
    data.qrels["train"]["copy"] = data.qrels["test"][test_id]
    with pytest.raises(LeakageError, match="1 test queries also occur"):
        D.check_split_leakage(data)


def test_leakage_check_also_covers_training_pairs():
    data = small_retrieval_data()
    test_text = next(iter(data.split_queries("test").values()))
    with pytest.raises(LeakageError):
        D.check_split_leakage(data, [ContrastivePair("other", test_text)])


def test_subsample_keeps_needed_documents_and_refuses_a_too_small_corpus():
    data = small_retrieval_data()
    data.negatives = {next(iter(data.qrels["train"])): ["d39"]}
    small = D.subsample(data, corpus_size=None, max_queries=20, seed=0)
    assert sum(len(j) for j in small.qrels.values()) <= 22
    sized = D.subsample(small, corpus_size=30, max_queries=None, seed=0)
    needed = {doc for judged in sized.qrels.values() for docs in judged.values() for doc in docs}
    assert len(sized.corpus) == 30 and needed <= set(sized.corpus)
    with pytest.raises(DataValidationError, match="corpus_size=2 is smaller"):
        D.subsample(data, corpus_size=2, max_queries=None, seed=0)


# ---- BEIR layout -----------------------------------------------------------------------------------


def test_beir_round_trip_and_beir_reader(tmp_path):
    data = small_retrieval_data()
    D.save_beir(data, tmp_path)
    assert D.load_beir(tmp_path).qrels == data.qrels
    from beir.datasets.data_loader import GenericDataLoader

    corpus, queries, qrels = GenericDataLoader(str(tmp_path)).load(split="test")
    assert set(qrels) == set(data.qrels["test"]) and len(corpus) == len(data.corpus)


def test_beir_loading_names_unknown_documents_and_queries(tmp_path):
    data = small_retrieval_data()
    D.save_beir(data, tmp_path)
    with (tmp_path / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q0\tmissing-doc\t1\n")
    with pytest.raises(DataValidationError, match="'missing-doc'"):
        D.load_beir(tmp_path)
    D.save_beir(data, tmp_path)
    with (tmp_path / "qrels" / "dev.tsv").open("a") as handle:
        handle.write("ghost\td1\t1\n")
    with pytest.raises(DataValidationError, match="query 'ghost'"):
        D.load_beir(tmp_path)


def test_beir_loading_refuses_leakage(tmp_path):
    data = small_retrieval_data()
    test_id = next(iter(data.qrels["test"]))
    data.qrels["train"][test_id] = data.qrels["test"][test_id]
    D.save_beir(data, tmp_path)
    with pytest.raises(LeakageError):
        D.load_beir(tmp_path)


def test_not_a_beir_folder(tmp_path):
    with pytest.raises(DataValidationError, match="corpus.jsonl is missing"):
        D.load_beir(tmp_path)


def test_corpus_sample_keeps_the_needed_documents_in_corpus_order_and_is_seeded():
    import random

    corpus = {f"d{i}": f"text {i}" for i in range(50)}
    sample = D.corpus_sample(corpus, {"d3", "d40"}, 10, random.Random(1))
    assert len(sample) == 10 and {"d3", "d40"} <= set(sample)
    assert sample == [doc_id for doc_id in corpus if doc_id in sample]  # the corpus's order
    assert sample == D.corpus_sample(corpus, {"d3", "d40"}, 10, random.Random(1))
    assert D.corpus_sample(corpus, {"d3"}, None, random.Random(1)) == list(corpus)

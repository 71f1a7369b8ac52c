
import pytest

from helpers import data as D
from helpers.data import ContrastivePair, DataValidationError, LeakageError


# ---- pairs_to_dataset ------------------------------------------------------------------------------


def test_triplets_give_three_aligned_columns():
    pairs = [ContrastivePair("a1", "p1", "n1"), ContrastivePair("a2", "p2", "n2")]
    dataset = D.pairs_to_dataset(pairs)
    assert dataset.column_names == ["anchor", "positive", "negative"]
    assert dataset[1] == {"anchor": "a2", "positive": "p2", "negative": "n2"}


def test_pairs_without_negatives_give_two_columns():
    dataset = D.pairs_to_dataset([ContrastivePair("a1", "p1", score=0.5)])
    assert dataset.column_names == ["anchor", "positive"] and dataset[0] == {"anchor": "a1", "positive": "p1"}


def test_mixed_pairs_are_refused_instead_of_misaligned():
    # The source chapter's version would build negative=["n2"] beside anchor=["a1", "a2"]: row 0 would get a2's negative.
    pairs = [ContrastivePair("a1", "p1"), ContrastivePair("a2", "p2", "n2")]
    with pytest.raises(DataValidationError, match="pair 0"):
        D.pairs_to_dataset(pairs)
    without, with_negative = D.split_by_negative(pairs)
    assert [p.anchor for p in without] == ["a1"] and [p.anchor for p in with_negative] == ["a2"]


def test_no_pairs_is_an_error():
    with pytest.raises(DataValidationError, match="no pairs"):
        D.pairs_to_dataset([])


# ---- user data validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"anchor": "a"}], "no 'positive' column"),
        ([{"anchor": "a", "positive": "p"}, {"anchor": "b"}], "row 1 has no 'positive' column"),
        ([{"anchor": "a", "positive": "  "}], "row 0 has an empty"),
        ([{"anchor": 3, "positive": "p"}], "non-string 'anchor'"),
        ([{"anchor": "a", "positive": "p", "negative": 7}], "non-string 'negative'"),
        ([{"anchor": "a", "positive": "p"}, {"anchor": "a", "positive": "p"}], "row 1 repeats .* row 0"),
        ([{"anchor": "same", "positive": "same"}], "row 0: the anchor is identical"),
        ([{"anchor": "a", "positive": "p", "score": "high"}], "row 0 has a non-numeric score"),
        ([], "no rows"),
    ],
)
def test_bad_rows_are_named(rows, message):
    with pytest.raises(DataValidationError, match=message):
        D.validate_pair_rows(rows)


def test_empty_negative_means_none():
    pairs = D.validate_pair_rows([{"anchor": "a", "positive": "p", "negative": ""}, {"anchor": "b", "positive": "q", "negative": "n"}])
    assert [p.negative for p in pairs] == [None, "n"]


def test_csv_and_jsonl_files_are_read(tmp_path):
    (tmp_path / "pairs.csv").write_text("anchor,positive\nchest pain,Angina pectoris\n", encoding="utf-8")
    assert D.read_pair_rows(tmp_path / "pairs.csv") == [{"anchor": "chest pain", "positive": "Angina pectoris"}]
    (tmp_path / "bad.jsonl").write_text('{"anchor": "a"\n', encoding="utf-8")
    with pytest.raises(DataValidationError, match="line 1 is not valid JSON"):
        D.read_pair_rows(tmp_path / "bad.jsonl")
    (tmp_path / "pairs.txt").write_text("chest pain -> angina", encoding="utf-8")
    with pytest.raises(DataValidationError, match="use a .jsonl or .csv"):
        D.read_pair_rows(tmp_path / "pairs.txt")


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


# ---- the shipped domains ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def icd_codes():
    return {code.code: code for code in D.parse_icd10cm()}


def test_icd10cm_inclusion_terms_and_excludes1(icd_codes):
    botulism = icd_codes["A05.1"]
    assert botulism.description == "Botulism food poisoning"
    assert "Classical foodborne intoxication due to Clostridium botulinum" in botulism.inclusion_terms
    assert {"A48.51", "A48.52"} <= set(botulism.excludes1_codes)
    # the source chapter's own example: type 2 diabetes excludes type 1, and subcodes inherit the note
    assert "E10" in icd_codes["E11"].excludes1_codes and "E10" in icd_codes["E11.9"].excludes1_codes


def test_icd10cm_dataset_shape():
    data = D.build_icd10cm(D.SplitPolicy(), seed=42)
    counts = data.counts()
    assert counts["corpus"] == 46881
    assert 11_000 < sum(len(j) for j in data.qrels.values()) < 13_000
    assert counts["train_queries_with_curated_negative"] > 3000
    D.validate_retrieval_data(data)


def test_hpo_layperson_queries():
    data = D.build_hpo(D.SplitPolicy(by_document=True), seed=42)
    assert "Urinary incontinence" in data.corpus["HP:0000020"]
    query_ids = [q for q, text in data.queries.items() if text == "Loss of bladder control"]
    assert query_ids and any(query_ids[0] in judged and "HP:0000020" in judged[query_ids[0]] for judged in data.qrels.values())
    assert "hp/releases/" in data.attribution and "Human Phenotype Ontology" in data.attribution
    assert 6000 < len(data.queries) < 8000


def test_zaragoza_faq():
    data = D.build_dataset("zaragoza")
    assert len(data.corpus) == 503 and "CC BY 4.0" in data.attribution


def test_unknown_dataset_is_named():
    with pytest.raises(DataValidationError, match="unknown dataset 'mimic'"):
        D.build_dataset("mimic")


def test_shipped_example_file_runs_end_to_end(tmp_path):
    data = D.prepare_dataset(str(D.PROJECT_DATA / "example_pairs.jsonl"), tmp_path, seed=0)
    assert data.qrels["train"] and data.qrels["test"]
    sets = D.build_training_sets(data)
    D.save_training_sets(sets, tmp_path)
    dataset = D.load_training_dataset(tmp_path, with_negatives=True)
    assert dataset.column_names == ["anchor", "positive", "negative"] and len(dataset) == len(sets.triplets)


# ---- mined negatives -------------------------------------------------------------------------------


CORPUS = ["Type 1 diabetes mellitus", "Type 2 diabetes mellitus", "Diabetes insipidus", "Fracture of femur",
          "Essential hypertension", "Hypotension", "Migraine without aura", "Tension-type headache",
          "Cluster headache", "Gestational diabetes", "Secondary hypertension", "Fracture of tibia"]


def test_mined_negatives_respect_margin_and_known_positives(base_model):
    pairs = [
        ContrastivePair("adult onset diabetes", "Type 2 diabetes mellitus"),
        ContrastivePair("adult onset diabetes", "Diabetes insipidus"),
        ContrastivePair("high blood pressure", "Essential hypertension", "Hypotension"),
        ContrastivePair("one-sided headache", "Migraine without aura"),
    ]
    embeddings = base_model.encode(CORPUS, convert_to_tensor=True, normalize_embeddings=True)
    filled, _ = D.mine_negatives(pairs, CORPUS, embeddings, base_model, relative_margin=0.05)
    assert filled[2].negative == "Hypotension"  # a curated negative is kept as it is
    for pair in filled[:2] + filled[3:]:
        assert pair.negative is not None and pair.negative not in {p.positive for p in pairs if p.anchor == pair.anchor}
        positives = [p.positive for p in pairs if p.anchor == pair.anchor]
        sims = base_model.similarity(base_model.encode([pair.anchor]), base_model.encode([*positives, pair.negative]))[0]
        assert float(sims[-1]) <= float(sims[:-1].min()) * 0.95 + 1e-5


def test_mining_picks_what_sentence_transformers_picks(base_model):
    """Our miner runs on cached corpus embeddings; it must choose the texts `mine_hard_negatives` chooses."""
    from sentence_transformers.util import mine_hard_negatives

    pairs = [ContrastivePair(anchor, positive) for anchor, positive in [
        ("adult onset diabetes", "Type 2 diabetes mellitus"), ("high blood pressure", "Essential hypertension"),
        ("one-sided headache", "Migraine without aura"), ("broken thigh bone", "Fracture of femur"),
        ("sugar diabetes in pregnancy", "Gestational diabetes"), ("low blood pressure", "Hypotension")]]
    embeddings = base_model.encode(CORPUS, convert_to_tensor=True, normalize_embeddings=True)
    ours, _ = D.mine_negatives(pairs, CORPUS, embeddings, base_model, relative_margin=0.05, range_max=5)
    theirs = mine_hard_negatives(D.pairs_to_dataset(pairs), base_model, corpus=CORPUS, range_max=5, relative_margin=0.05,
                                 num_negatives=1, sampling_strategy="top", output_format="triplet", verbose=False)
    chosen = {row["anchor"]: row["negative"] for row in theirs}
    assert {pair.anchor: pair.negative for pair in ours if pair.negative} == chosen


def test_mining_needs_positives_that_are_corpus_texts(base_model):
    embeddings = base_model.encode(CORPUS[:3], convert_to_tensor=True, normalize_embeddings=True)
    with pytest.raises(DataValidationError, match="positives are not corpus texts"):
        D.mine_negatives([ContrastivePair("q", "not in the corpus")], CORPUS[:3], embeddings, base_model)


def test_training_samples_are_nested(tmp_path):
    rows = [ContrastivePair(f"anchor {i}", f"positive {i}", f"negative {i}") for i in range(50)]
    D.save_training_sets(D.TrainingSets(rows, rows, ["curated"] * 50, 0, 0), tmp_path)
    small, large = (D.load_training_dataset(tmp_path, True, size, seed=3) for size in (10, 30))
    assert small["anchor"] == large["anchor"][:10] and len(set(large["anchor"])) == 30


def test_corpus_sample_keeps_the_needed_documents_in_corpus_order_and_is_seeded():
    import random

    corpus = {f"d{i}": f"text {i}" for i in range(50)}
    sample = D.corpus_sample(corpus, {"d3", "d40"}, 10, random.Random(1))
    assert len(sample) == 10 and {"d3", "d40"} <= set(sample)
    assert sample == [doc_id for doc_id in corpus if doc_id in sample]  # the corpus's order
    assert sample == D.corpus_sample(corpus, {"d3", "d40"}, 10, random.Random(1))
    assert D.corpus_sample(corpus, {"d3"}, None, random.Random(1)) == list(corpus)


def test_stsb_test_split_is_read_from_its_own_file():
    from helpers.data import load_stsb

    test, dev = load_stsb("test"), load_stsb("dev")
    assert len(test.gold) == len(test.first) == len(test.second) == 1379 and len(dev.gold) == 1500
    assert test.first[0] != dev.first[0]  # the package's own loader returns the dev file for "test"
    assert all(0 <= score <= 5 for score in test.gold) and "STS Benchmark" in test.attribution
    with pytest.raises(DataValidationError, match="split 'validation'"):
        load_stsb("validation")

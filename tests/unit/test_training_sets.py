"""helpers.training_sets: aligned training columns, negatives mined with a margin."""

import pytest

from helpers import training_sets as T
from helpers.data import ContrastivePair, DataValidationError


# ---- pairs_to_dataset ------------------------------------------------------------------------------


def test_triplets_give_three_aligned_columns():
    pairs = [ContrastivePair("a1", "p1", "n1"), ContrastivePair("a2", "p2", "n2")]
    dataset = T.pairs_to_dataset(pairs)
    assert dataset.column_names == ["anchor", "positive", "negative"]
    assert dataset[1] == {"anchor": "a2", "positive": "p2", "negative": "n2"}


def test_pairs_without_negatives_give_two_columns():
    dataset = T.pairs_to_dataset([ContrastivePair("a1", "p1", score=0.5)])
    assert dataset.column_names == ["anchor", "positive"] and dataset[0] == {"anchor": "a1", "positive": "p1"}


def test_mixed_pairs_are_refused_instead_of_misaligned():
    # The source chapter's version would build negative=["n2"] beside anchor=["a1", "a2"]: row 0 would get a2's negative.
    pairs = [ContrastivePair("a1", "p1"), ContrastivePair("a2", "p2", "n2")]
    with pytest.raises(DataValidationError, match="pair 0"):
        T.pairs_to_dataset(pairs)
    without, with_negative = T.split_by_negative(pairs)
    assert [p.anchor for p in without] == ["a1"] and [p.anchor for p in with_negative] == ["a2"]


def test_no_pairs_is_an_error():
    with pytest.raises(DataValidationError, match="no pairs"):
        T.pairs_to_dataset([])


def test_duplicate_pairs_give_each_query_with_a_curated_negative_two_adjacent_rows():
    from helpers.data import RetrievalData

    data = RetrievalData(
        "toy",
        corpus={"d0": "zero", "d1": "one", "d2": "two", "d3": "three"},
        queries={"q1": "first", "q2": "second", "q3": "third"},
        qrels={
            "dev": {"q1": {"d2": 1, "d1": 1}, "q2": {"d3": 1}, "q3": {"d1": 1, "d0": 0}}
        },  # d0: judged, not relevant
        negatives={"q1": ["d3"], "q3": ["d2", "d3"]},
    )
    first, second, labels = T.duplicate_pairs(data, "dev")
    assert first == ["first", "first", "third", "third"]  # q2 has no curated negative: no pair
    assert second == ["one", "three", "one", "two"]  # the first relevant document by id, then the first negative
    assert labels.tolist() == [1, 0, 1, 0]
    assert T.duplicate_pairs(data, "test")[2].tolist() == []


def test_duplicate_pairs_in_training_counts_pairs_and_negatives_that_training_saw(tmp_path):
    from helpers.data import write_jsonl

    second = ["code a", "excluded b", "code c", "excluded d", "code e", "excluded f"]  # three queries
    assert T.duplicate_pairs_in_training(second, tmp_path) == (0.0, 0.0)  # no saved triplets
    write_jsonl(
        tmp_path / "train_triplets.jsonl",
        [
            {"anchor": "q1", "positive": "code a", "negative": "excluded b"},  # query 1's pair, as a triplet
            {"anchor": "q2", "positive": "excluded b", "negative": "code c"},  # query 2's code, as a negative only
            {"anchor": "q3", "positive": "excluded f", "negative": "code e"},  # query 3's pair, reversed: not its pair
        ],
    )
    as_triplet, as_negative = T.duplicate_pairs_in_training(second, tmp_path)
    assert as_triplet == 1 / 3
    assert as_negative == 2 / 3  # "code c" and "code e"; "code a" was a positive only
    with pytest.raises(ValueError, match="two per query"):
        T.duplicate_pairs_in_training(second[:-1], tmp_path)


def test_queries_by_document_lists_each_documents_relevant_queries_in_query_order():
    from helpers.data import RetrievalData

    data = RetrievalData(
        "toy",
        corpus={"d1": "one", "d2": "two", "d3": "three"},
        queries={"q2": "second", "q1": "first", "q3": "third"},
        qrels={"train": {"q2": {"d1": 1}, "q1": {"d1": 1, "d2": 0}, "q3": {"d2": 2}}},
    )
    assert T.queries_by_document(data, "train") == {
        "d1": ["first", "second"],
        "d2": ["third"],
    }  # d2's grade 0 is no match
    assert T.queries_by_document(data, "dev") == {}


# ---- mined negatives -------------------------------------------------------------------------------


CORPUS = [
    "Type 1 diabetes mellitus",
    "Type 2 diabetes mellitus",
    "Diabetes insipidus",
    "Fracture of femur",
    "Essential hypertension",
    "Hypotension",
    "Migraine without aura",
    "Tension-type headache",
    "Cluster headache",
    "Gestational diabetes",
    "Secondary hypertension",
    "Fracture of tibia",
]


def test_mined_negatives_respect_margin_and_known_positives(base_model):
    pairs = [
        ContrastivePair("adult onset diabetes", "Type 2 diabetes mellitus"),
        ContrastivePair("adult onset diabetes", "Diabetes insipidus"),
        ContrastivePair("high blood pressure", "Essential hypertension", "Hypotension"),
        ContrastivePair("one-sided headache", "Migraine without aura"),
    ]
    embeddings = base_model.encode(CORPUS, convert_to_tensor=True, normalize_embeddings=True)
    filled, _ = T.mine_negatives(pairs, CORPUS, embeddings, base_model, relative_margin=0.05)
    assert filled[2].negative == "Hypotension"  # a curated negative is kept as it is
    for pair in filled[:2] + filled[3:]:
        assert pair.negative is not None and pair.negative not in {p.positive for p in pairs if p.anchor == pair.anchor}
        positives = [p.positive for p in pairs if p.anchor == pair.anchor]
        sims = base_model.similarity(base_model.encode([pair.anchor]), base_model.encode([*positives, pair.negative]))[
            0
        ]
        assert float(sims[-1]) <= float(sims[:-1].min()) * 0.95 + 1e-5


def test_mining_picks_what_sentence_transformers_picks(base_model):
    """Our miner runs on cached corpus embeddings; it must choose the texts `mine_hard_negatives` chooses."""
    from sentence_transformers.util import mine_hard_negatives

    pairs = [
        ContrastivePair(anchor, positive)
        for anchor, positive in [
            ("adult onset diabetes", "Type 2 diabetes mellitus"),
            ("high blood pressure", "Essential hypertension"),
            ("one-sided headache", "Migraine without aura"),
            ("broken thigh bone", "Fracture of femur"),
            ("sugar diabetes in pregnancy", "Gestational diabetes"),
            ("low blood pressure", "Hypotension"),
        ]
    ]
    embeddings = base_model.encode(CORPUS, convert_to_tensor=True, normalize_embeddings=True)
    ours, _ = T.mine_negatives(pairs, CORPUS, embeddings, base_model, relative_margin=0.05, range_max=5)
    theirs = mine_hard_negatives(
        T.pairs_to_dataset(pairs),
        base_model,
        corpus=CORPUS,
        range_max=5,
        relative_margin=0.05,
        num_negatives=1,
        sampling_strategy="top",
        output_format="triplet",
        verbose=False,
    )
    chosen = {row["anchor"]: row["negative"] for row in theirs}
    assert {pair.anchor: pair.negative for pair in ours if pair.negative} == chosen


def test_mining_needs_positives_that_are_corpus_texts(base_model):
    embeddings = base_model.encode(CORPUS[:3], convert_to_tensor=True, normalize_embeddings=True)
    with pytest.raises(DataValidationError, match="positives are not corpus texts"):
        T.mine_negatives([ContrastivePair("q", "not in the corpus")], CORPUS[:3], embeddings, base_model)


def test_training_samples_are_nested(tmp_path):
    rows = [ContrastivePair(f"anchor {i}", f"positive {i}", f"negative {i}") for i in range(50)]
    T.save_training_sets(T.TrainingSets(rows, rows, ["curated"] * 50, 0, 0), tmp_path)
    small, large = (T.load_training_dataset(tmp_path, True, size, seed=3) for size in (10, 30))
    assert small["anchor"] == large["anchor"][:10] and len(set(large["anchor"])) == 30

"""helpers.sources: the user's rows validated, the shipped domains parsed and split."""

import pytest

from helpers import data as D
from helpers import sources as S
from helpers import training_sets as T
from helpers.data import DataValidationError


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
        S.validate_pair_rows(rows)


def test_empty_negative_means_none():
    pairs = S.validate_pair_rows(
        [{"anchor": "a", "positive": "p", "negative": ""}, {"anchor": "b", "positive": "q", "negative": "n"}]
    )
    assert [p.negative for p in pairs] == [None, "n"]


def test_csv_and_jsonl_files_are_read(tmp_path):
    (tmp_path / "pairs.csv").write_text("anchor,positive\nchest pain,Angina pectoris\n", encoding="utf-8")
    assert S.read_pair_rows(tmp_path / "pairs.csv") == [{"anchor": "chest pain", "positive": "Angina pectoris"}]
    (tmp_path / "bad.jsonl").write_text('{"anchor": "a"\n', encoding="utf-8")
    with pytest.raises(DataValidationError, match="line 1 is not valid JSON"):
        S.read_pair_rows(tmp_path / "bad.jsonl")
    (tmp_path / "pairs.txt").write_text("chest pain -> angina", encoding="utf-8")
    with pytest.raises(DataValidationError, match="use a .jsonl or .csv"):
        S.read_pair_rows(tmp_path / "pairs.txt")


# ---- the shipped domains ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def icd_codes():
    return {code.code: code for code in S.parse_icd10cm()}


def test_icd10cm_inclusion_terms_and_excludes1(icd_codes):
    botulism = icd_codes["A05.1"]
    assert botulism.description == "Botulism food poisoning"
    assert "Classical foodborne intoxication due to Clostridium botulinum" in botulism.inclusion_terms
    assert {"A48.51", "A48.52"} <= set(botulism.excludes1_codes)
    # the source chapter's own example: type 2 diabetes excludes type 1, and subcodes inherit the note
    assert "E10" in icd_codes["E11"].excludes1_codes and "E10" in icd_codes["E11.9"].excludes1_codes


def test_icd10cm_dataset_shape():
    data = S.build_icd10cm(D.SplitPolicy(), seed=42)
    counts = data.counts()
    assert counts["corpus"] == 46881
    assert 11_000 < sum(len(j) for j in data.qrels.values()) < 13_000
    assert counts["train_queries_with_curated_negative"] > 3000
    D.validate_retrieval_data(data)


def test_hpo_layperson_queries():
    data = S.build_hpo(D.SplitPolicy(by_document=True), seed=42)
    assert "Urinary incontinence" in data.corpus["HP:0000020"]
    query_ids = [q for q, text in data.queries.items() if text == "Loss of bladder control"]
    assert query_ids and any(
        query_ids[0] in judged and "HP:0000020" in judged[query_ids[0]] for judged in data.qrels.values()
    )
    assert "hp/releases/" in data.attribution and "Human Phenotype Ontology" in data.attribution
    assert 6000 < len(data.queries) < 8000


def test_zaragoza_faq():
    data = S.build_dataset("zaragoza")
    assert len(data.corpus) == 503 and "CC BY 4.0" in data.attribution


def test_unknown_dataset_is_named():
    with pytest.raises(DataValidationError, match="unknown dataset 'mimic'"):
        S.build_dataset("mimic")


def test_shipped_example_file_runs_end_to_end(tmp_path):
    data = S.prepare_dataset(str(S.PROJECT_DATA / "example_pairs.jsonl"), tmp_path, seed=0)
    assert data.qrels["train"] and data.qrels["test"]
    sets = T.build_training_sets(data)
    T.save_training_sets(sets, tmp_path)
    dataset = T.load_training_dataset(tmp_path, with_negatives=True)
    assert dataset.column_names == ["anchor", "positive", "negative"] and len(dataset) == len(sets.triplets)


def test_stsb_test_split_is_read_from_its_own_file():
    from helpers.sources import load_stsb

    test, dev = load_stsb("test"), load_stsb("dev")
    assert len(test.gold) == len(test.first) == len(test.second) == 1379 and len(dev.gold) == 1500
    assert test.first[0] != dev.first[0]  # the package's own loader returns the dev file for "test"
    assert all(0 <= score <= 5 for score in test.gold) and "STS Benchmark" in test.attribution
    with pytest.raises(DataValidationError, match="split 'validation'"):
        load_stsb("validation")

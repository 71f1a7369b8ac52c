"""A user's own data in every documented shape: pairs with and without negatives, with and without `score`,
`.jsonl` and `.csv`, a BEIR folder, texts longer than the model reads, non-ASCII text, and files in another
encoding, read directly by the helpers (the notebook tier runs notebooks 03 and 04 on them:
tests/notebooks/test_own_data_in_notebooks.py)."""

import pytest

from helpers.data import DataValidationError, RetrievalData, load_beir, save_beir
from helpers.sources import build_dataset, read_pair_rows, validate_pair_rows

from own_data_rows import (
    LONG_WORDS,
    NON_ASCII,
    own_rows,
    write_csv,
    write_jsonl,
)  # tests/ is on the path: conftest.py's folder


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
@pytest.mark.parametrize("negatives, score", [(False, False), (True, False), (False, True), (True, True)])
def test_every_documented_shape_reads_back_row_for_row(tmp_path, suffix, negatives, score):
    rows = own_rows(50, negatives, score)
    path = (write_jsonl if suffix == "jsonl" else write_csv)(tmp_path / f"pairs.{suffix}", rows)
    pairs = validate_pair_rows(read_pair_rows(path))
    assert [pair.anchor for pair in pairs] == [row["anchor"] for row in rows]  # non-ASCII kept as written
    assert [pair.positive for pair in pairs] == [row["positive"] for row in rows]  # long texts kept whole
    assert [pair.negative for pair in pairs] == [row.get("negative") for row in rows]
    assert [pair.score for pair in pairs] == [float(row.get("score", 1.0)) for row in rows]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    rows = own_rows(20)
    for path in (
        write_csv(tmp_path / "bom.csv", rows, "utf-8-sig"),
        write_jsonl(tmp_path / "bom.jsonl", rows, "utf-8-sig"),
    ):
        assert validate_pair_rows(read_pair_rows(path))[0].anchor == rows[0]["anchor"]


@pytest.mark.parametrize("encoding, line, seems", [("cp1252", 3, "looks"), ("utf-16", 1, "UTF-16-LE")])
def test_a_file_in_another_encoding_names_the_file_the_line_and_the_encoding(tmp_path, encoding, line, seems):
    rows = [
        {"anchor": "chest pain", "positive": "Angina pectoris"},
        {"anchor": "asthma", "positive": "Asthma"},
        {"anchor": "névralgie", "positive": "Neuralgia and neuritis"},
    ]
    path = write_jsonl(tmp_path / "latin.jsonl", rows, encoding)
    with pytest.raises(DataValidationError) as raised:
        build_dataset(str(path))
    message = str(raised.value)
    assert str(path) in message and "is not UTF-8" in message and f"line {line} " in message and seems in message


def test_a_json_line_that_is_not_an_object_is_named(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n["a", "b"]\n', encoding="utf-8")
    with pytest.raises(DataValidationError, match="list.jsonl line 2 is a JSON list, not an object"):
        read_pair_rows(path)


def test_a_beir_folder_reads_back_with_its_non_ascii_texts(tmp_path):
    corpus = {"d1": NON_ASCII, "d2": "Angina pectoris", "d3": " ".join(["chronic"] * LONG_WORDS)}
    data = RetrievalData(
        "mine", corpus, {"q1": "胸痛", "q2": "long"}, {"train": {"q1": {"d1": 1}}, "test": {"q2": {"d3": 1}}}
    )
    assert load_beir(save_beir(data, tmp_path / "beir")).corpus == corpus

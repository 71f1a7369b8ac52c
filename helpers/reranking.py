"""Retrieve, then rerank: a cross-encoder rescores a retriever's top k documents and reorders them.

A bi-encoder (the retriever) encodes a query and a document apart and compares the two vectors, so a corpus is
encoded once and searched fast. A cross-encoder reads the query and the document together, one pass per pair:
more accurate, too slow for a whole corpus, affordable for the first k results of a retriever. The reranking
notebook builds each step by hand first; these are the functions it then uses, and its tests check.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .evaluation import best_first
from .models import encoding_autocast

Run = Mapping[str, Mapping[str, float]]  # query id -> {document id: score}, as `evaluation.rank` returns it


def top_candidates(run: Run, k: int) -> dict[str, list[str]]:
    """Each query's first `k` document ids of a first-stage ranking, best first (ties in the retriever's order)."""
    if k < 1:
        raise ValueError(f"k={k}: rerank at least the first document")
    return {query_id: [doc_id for doc_id, _ in best_first(scores)[:k]] for query_id, scores in run.items()}


def score_pairs(
    cross_encoder: Any, pairs: Sequence[tuple[str, str]], batch_size: int = 64, precision: str = "fp32"
) -> np.ndarray:
    """The cross-encoder's raw scores (logits, no sigmoid: the order is the same) of (query, document) pairs, in
    `precision` (bf16 autocast on a CPU that computes it natively, as `models.encoding_autocast` does for encoders)."""
    import torch

    if not pairs:
        return np.zeros(0, dtype=np.float32)
    with encoding_autocast(str(cross_encoder.device), precision):
        scores = cross_encoder.predict(
            list(pairs),
            batch_size=batch_size,
            activation_fn=torch.nn.Identity(),
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.asarray(scores, dtype=np.float32)


def score_candidates(
    cross_encoder: Any,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    run: Run,
    k: int,
    batch_size: int = 64,
    precision: str = "fp32",
    known: Mapping[tuple[str, str], float] | None = None,
) -> dict[tuple[str, str], float]:
    """The cross-encoder's score of every (query id, document id) among each query's top `k` of `run`; pairs already
    in `known` are not scored again (so that k = 10, 20, 50 and 100 cost what k = 100 costs). Returns `known`
    extended with the new pairs."""
    scored = dict(known or {})
    missing = [
        (query_id, doc_id)
        for query_id, doc_ids in top_candidates(run, k).items()
        if query_id in queries
        for doc_id in doc_ids
        if (query_id, doc_id) not in scored
    ]
    values = score_pairs(cross_encoder, [(queries[q], corpus[d]) for q, d in missing], batch_size, precision)
    scored.update({pair: float(value) for pair, value in zip(missing, values, strict=True)})
    return scored


def rerank(run: Run, cross_scores: Mapping[tuple[str, str], float], k: int) -> dict[str, dict[str, float]]:
    """`run` with each query's top `k` reordered by the cross-encoder's scores; the documents below rank k keep the
    retriever's order, under every reranked one. The scores returned are ranks made into decreasing numbers."""
    reranked = {}
    for query_id, scores in run.items():
        ordered = [doc_id for doc_id, _ in best_first(scores)]
        head, tail = ordered[:k], ordered[k:]
        missing = [doc_id for doc_id in head if (query_id, doc_id) not in cross_scores]
        if missing:
            raise KeyError(
                f"query {query_id!r}: no cross-encoder score for {len(missing)} of its top {k} "
                f"(first: {missing[0]!r}); score them with score_candidates(..., k={k}) first"
            )
        head = sorted(
            head, key=lambda doc_id: -cross_scores[(query_id, doc_id)]
        )  # stable: ties keep the retriever's order
        ranked = head + tail
        reranked[query_id] = {doc_id: float(len(ranked) - position) for position, doc_id in enumerate(ranked)}
    return reranked


def latency_per_query(
    cross_encoder: Any,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    run: Run,
    k: int,
    precision: str = "fp32",
    rounds: int = 1,
) -> np.ndarray:
    """Milliseconds to score one query's top `k` (one batch of k pairs), for each query of `queries` (after one
    untimed warm-up query); with `rounds` > 1, each query's fastest round, which keeps a busy moment of the
    machine out of a query's figure. What a reranking service adds to the retriever's time per query."""
    candidates = top_candidates({query_id: run[query_id] for query_id in queries}, k)
    first = next(iter(candidates))
    score_pairs(
        cross_encoder, [(queries[first], corpus[d]) for d in candidates[first]], batch_size=k, precision=precision
    )
    timings = []
    for query_id, doc_ids in candidates.items():
        pairs = [(queries[query_id], corpus[doc_id]) for doc_id in doc_ids]
        best = float("inf")
        for _ in range(max(rounds, 1)):
            start = time.perf_counter()
            score_pairs(cross_encoder, pairs, batch_size=k, precision=precision)
            best = min(best, time.perf_counter() - start)
        timings.append(1000 * best)
    return np.array(timings)


def choose_k(dev_ndcg: Mapping[int, float], tolerance: float = 0.005) -> int:
    """The rule that picks how many documents to rerank, on dev: the smallest k whose mean NDCG@10 is within
    `tolerance` of the best k's (a larger k costs time in proportion, so it must earn more than noise)."""
    if not dev_ndcg:
        raise ValueError("dev_ndcg is empty: rerank the dev queries at one k at least")
    best = max(dev_ndcg.values())
    return min(k for k, value in dev_ndcg.items() if value >= best - tolerance)


def fused_scores(
    run: Run, cross_scores: Mapping[tuple[str, str], float], k: int, weight: float
) -> dict[tuple[str, str], float]:
    """Score fusion instead of replacement: within each query's top `k`, both scores are put on one scale (z-scores:
    minus their mean over those k documents, divided by their standard deviation; 0 where all are equal) and added,
    `weight` × the cross-encoder's + (1 - `weight`) × the retriever's. `weight` 0 keeps the retriever's order, 1 is
    the cross-encoder alone. Feed the result to `rerank` with the same k."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight={weight}: the cross-encoder's share must be between 0 and 1")

    def z_scores(values: np.ndarray) -> np.ndarray:
        spread = values.std()
        return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)

    fused = {}
    for query_id, doc_ids in top_candidates(run, k).items():
        retriever = z_scores(np.array([run[query_id][doc_id] for doc_id in doc_ids], dtype=np.float64))
        missing = [doc_id for doc_id in doc_ids if (query_id, doc_id) not in cross_scores]
        if missing:
            raise KeyError(
                f"query {query_id!r}: no cross-encoder score for {len(missing)} of its top {k} (first: {missing[0]!r})"
            )
        cross = z_scores(np.array([cross_scores[(query_id, doc_id)] for doc_id in doc_ids], dtype=np.float64))
        fused.update(
            {
                (query_id, doc_id): float(weight * c + (1 - weight) * r)
                for doc_id, c, r in zip(doc_ids, cross, retriever, strict=True)
            }
        )
    return fused


def fusion_on_dev(
    run: Run,
    cross_scores: Mapping[tuple[str, str], float],
    qrels: Mapping[str, Mapping[str, int]],
    ks: Sequence[int],
    weights: Sequence[float],
) -> dict[int, dict[float, float]]:
    """Mean NDCG@10 of the fused ranking (`fused_scores`, then `rerank`) for every k and weight: k -> weight -> NDCG@10."""
    from .evaluation import per_query_scores

    return {
        k: {
            weight: float(
                per_query_scores(qrels, rerank(run, fused_scores(run, cross_scores, k, weight), k), ["ndcg@10"])[
                    "ndcg@10"
                ].mean()
            )
            for weight in weights
        }
        for k in ks
    }


def choose_fusion(dev_ndcg: Mapping[int, Mapping[float, float]], tolerance: float = 0.005) -> tuple[int, float]:
    """The rule that picks the fusion on dev: for each k the weight with the best dev NDCG@10 (on a tie, the smaller
    weight, nearer the retriever alone), then k by `choose_k` among those best values. Returns (k, weight)."""
    best_weight = {
        k: max(by_weight, key=lambda weight: (by_weight[weight], -weight)) for k, by_weight in dev_ndcg.items()
    }
    k = choose_k({k: dev_ndcg[k][weight] for k, weight in best_weight.items()}, tolerance)
    return k, best_weight[k]


def rerank_table(rows: Mapping[Any, Mapping[str, Any]], retriever_recall: float | None = None) -> Any:
    """One row per k (a pandas DataFrame): NDCG@10, its difference from the retriever alone with the interval and the
    verdict, Recall@10 (and its difference, given the retriever's), latency and documents scored per second; for
    the rows the reranking notebook measures (`ndcg@10`, `difference`, `ci`, `p50_ms`, `p95_ms`, and when present
    `recall@10`, `recall_ci`, `docs_per_s`) and for the committed reference run's."""
    import pandas as pd

    from .intervals import interval_verdict
    from .outputs import with_interval

    table = {}
    for k, row in sorted(rows.items(), key=lambda item: int(item[0])):  # committed runs keep k as text: "100" < "20"
        line = {
            "NDCG@10": round(row["ndcg@10"], 4),
            "minus the retriever alone (95% CI)": with_interval(row["difference"], row["ci"]),
            "the reranker": interval_verdict(row["ci"], above="gains", below="loses"),
        }
        if "recall@10" in row:
            line["Recall@10"] = round(row["recall@10"], 4)
            if retriever_recall is not None and "recall_ci" in row:
                line["Recall@10 minus the retriever's (95% CI)"] = with_interval(
                    row["recall@10"] - retriever_recall, row["recall_ci"]
                )
        line.update({"p50 ms / query": round(row["p50_ms"], 1), "p95 ms / query": round(row["p95_ms"], 1)})
        if "docs_per_s" in row:
            line["documents scored / s"] = round(row["docs_per_s"])
        table[f"top {k}"] = line
    return pd.DataFrame(table).T

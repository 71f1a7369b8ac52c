"""Retrieval evaluation plumbing: cached corpus embeddings, rankings, per-query scores, intervals, TREC files.

Notebook 05 defines the metrics and computes them by hand before using these. Per-query scores, TREC files and
the significance test come from `ranx`, a maintained IR-evaluation library (metrics checked against trec_eval);
the interval of a difference is a paired bootstrap from scipy. Nothing here re-implements an IR metric.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .models import model_fingerprint

# ranx's numba-compiled NDCG casts document counts from uint64 to int64 and says so on every first call;
# the counts are far below 2**63, so the warning says nothing about these results.
warnings.filterwarnings("ignore", message="unsafe cast from uint64 to int64")

METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "recall@1", "recall@5", "recall@10", "recall@50", "mrr@10")


def encode(model: Any, texts: Sequence[str], cache_dir: str | Path | None = None, batch_size: int = 128,
           show_progress_bar: bool = True) -> torch.Tensor:
    """Normalised embeddings of `texts`, in order. With `cache_dir`, they are saved under the model's weight
    fingerprint and a hash of the texts, so the notebooks of a run encode one corpus once per model."""
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()[:16]
        path = Path(cache_dir) / f"{model_fingerprint(model)}-{digest}.npy"
        if path.exists():
            return torch.from_numpy(np.load(path)).to(model.device)
    embeddings = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                              show_progress_bar=show_progress_bar)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")  # one per process: two runs may share a cache
        np.save(partial, embeddings.cpu().numpy())
        partial.replace(path)  # complete or absent: a crash never leaves half a file under the final name
    return embeddings


def rank(query_ids: Sequence[str], query_embeddings: Any, corpus_ids: Sequence[str], corpus_embeddings: Any,
         top_k: int = 100) -> dict[str, dict[str, float]]:
    """Top-`top_k` documents per query by cosine similarity of normalised embeddings: query id -> {doc id: score}."""
    from sentence_transformers.util import semantic_search

    hits = semantic_search(torch.as_tensor(query_embeddings), torch.as_tensor(corpus_embeddings),
                           top_k=min(top_k, len(corpus_ids)))
    return {query_id: {corpus_ids[hit["corpus_id"]]: float(hit["score"]) for hit in query_hits}
            for query_id, query_hits in zip(query_ids, hits, strict=True)}


def retrieve(model: Any, queries: Mapping[str, str], corpus: Mapping[str, str], top_k: int = 100,
             cache_dir: str | Path | None = None) -> dict[str, dict[str, float]]:
    """Top-`top_k` documents of `corpus` for each query under `model` (the corpus embeddings cached in `cache_dir`)."""
    corpus_embeddings = encode(model, list(corpus.values()), cache_dir)
    query_embeddings = encode(model, list(queries.values()), show_progress_bar=False)
    return rank(list(queries), query_embeddings, list(corpus), corpus_embeddings, top_k)


def to_ranx(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], run_name: str):
    """ranx's `Qrels` and `Run` objects (a query without results gets an empty ranking)."""
    from ranx import Qrels, Run

    full_run = {query_id: dict(run.get(query_id, {})) for query_id in qrels}
    return Qrels({q: dict(d) for q, d in qrels.items()}), Run(full_run, name=run_name)


def per_query_scores(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
                     metrics: Sequence[str] = METRICS) -> dict[str, np.ndarray]:
    """Metric -> array of per-query values (computed by ranx), queries in the order of `qrels`."""
    from ranx import evaluate

    ranx_qrels, ranx_run = to_ranx(qrels, run, "run")
    scores = evaluate(ranx_qrels, ranx_run, list(metrics), return_mean=False, make_comparable=True)
    if len(metrics) == 1:
        scores = {metrics[0]: scores}
    position = {query_id: index for index, query_id in enumerate(ranx_qrels.get_query_ids())}  # ranx sorts the ids
    order = [position[query_id] for query_id in qrels]
    return {metric: np.asarray(values, dtype=float)[order] for metric, values in scores.items()}


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of per-query values (scipy).

    For a paired comparison pass the per-query differences (one model minus the other): queries are resampled
    as units, so each query's two scores stay together.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError("a bootstrap interval needs a one-dimensional array of at least two per-query values")
    result = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                       method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def significance(qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Mapping[str, Mapping[str, float]]],
                 metric: str = "ndcg@10", seed: int = 0) -> float:
    """Two-sided p-value of Fisher's randomization test (ranx) between the first two runs on `metric`."""
    from ranx import compare

    (name_a, run_a), (name_b, run_b) = list(runs.items())[:2]
    ranx_qrels, first = to_ranx(qrels, run_a, name_a)
    _, second = to_ranx(qrels, run_b, name_b)
    report = compare(ranx_qrels, [first, second], metrics=[metric], stat_test="fisher", random_seed=seed,
                     make_comparable=True)
    return float(report.to_dict()[name_a]["comparisons"][name_b][metric])


def save_trec(qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Mapping[str, Mapping[str, float]]],
              folder: str | Path) -> list[Path]:
    """Write `<name>.trec` for each run and `test.qrels`, in TREC formats any IR tool can re-score."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, run in runs.items():
        ranx_qrels, ranx_run = to_ranx(qrels, run, name)
        ranx_run.save(str(folder / f"{name}.trec"), kind="trec")
        written.append(folder / f"{name}.trec")
    ranx_qrels.save(str(folder / "test.qrels"), kind="trec")
    return [*written, folder / "test.qrels"]


def load_trec_run(path: str | Path) -> dict[str, dict[str, float]]:
    """A TREC run file (as `save_trec` writes) back as query id -> {document id: score}, read by ranx."""
    from ranx import Run

    return {query_id: dict(docs) for query_id, docs in Run.from_file(str(path), kind="trec").to_dict().items()}

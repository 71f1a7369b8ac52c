"""Retrieval evaluation: the seed text's evaluator functions, per-query scores, confidence intervals,
significance, TREC export and plots.

Aggregate metrics come from sentence-transformers' `InformationRetrievalEvaluator` (as in the seed text);
per-query scores, TREC files and the significance test come from `ranx`, a maintained IR-evaluation library
(numba-compiled metrics checked against trec_eval, TREC run/qrels I/O, paired significance tests, and rank
fusion), so nothing here re-implements an IR metric. The confidence interval of a difference is a paired
bootstrap from scipy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "recall@1", "recall@5", "recall@10", "recall@50", "mrr@10")


def encode_corpus(model: Any, corpus: Mapping[str, str], batch_size: int = 128, show_progress_bar: bool = True):
    """Normalised embeddings of the corpus texts, in the corpus's order, as a torch tensor."""
    return model.encode(
        list(corpus.values()),
        batch_size=batch_size,
        convert_to_tensor=True,
        normalize_embeddings=True,
        show_progress_bar=show_progress_bar,
    )


def evaluate_retrieval_quality(
    model: Any,
    queries: dict[str, str],
    corpus: dict[str, str],
    relevant: dict[str, set[str]],
    corpus_embeddings: Any = None,
    name: str = "domain-retrieval",
) -> dict[str, float]:
    """The seed text's evaluator: NDCG@1/5/10, Recall@1/5/10/50 and MRR@10 of `model` on a retrieval task.

    Keys are prefixed as in the seed (`domain-retrieval_cosine_ndcg@10`). Pass `corpus_embeddings` (from
    `encode_corpus`) to avoid encoding the corpus a second time.
    """
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    if not queries or not corpus:
        raise ValueError("evaluation needs at least one query and one document")
    missing = sorted({doc for docs in relevant.values() for doc in docs} - set(corpus))[:3]
    if missing:
        raise ValueError(f"relevant documents {missing} are not in the corpus")
    evaluator = InformationRetrievalEvaluator(
        queries=queries,
        corpus=corpus,
        relevant_docs=relevant,
        name=name,
        ndcg_at_k=[1, 5, 10],
        precision_recall_at_k=[1, 5, 10, 50],
        accuracy_at_k=[1, 10],
        mrr_at_k=[10],
        map_at_k=[100],
        batch_size=128,
        write_csv=False,
    )
    return evaluator(model, corpus_embeddings=corpus_embeddings)


def headline(metrics: Mapping[str, float], name: str = "domain-retrieval") -> dict[str, float]:
    """The three figures the seed's `compare_models` prints, from `evaluate_retrieval_quality`'s output."""
    return {
        "NDCG@10": metrics[f"{name}_cosine_ndcg@10"],
        "Recall@10": metrics[f"{name}_cosine_recall@10"],
        "MRR@10": metrics[f"{name}_cosine_mrr@10"],
    }


def ndcg_at_10(model: Any, data: Any, split: str = "test", corpus_embeddings: Any = None) -> float:
    """NDCG@10 of `model` on the queries of one split of a `RetrievalData` (its whole corpus as candidates)."""
    metrics = evaluate_retrieval_quality(
        model, data.split_queries(split), data.corpus, data.relevant_docs(split), corpus_embeddings=corpus_embeddings
    )
    return headline(metrics)["NDCG@10"]


def duplicate_detection(model: Any, sentences1: Sequence[str], sentences2: Sequence[str], labels: Sequence[int]) -> dict[str, float]:
    """F1, precision, recall and the best cosine threshold of `model` as a duplicate detector, from
    sentence-transformers' `BinaryClassificationEvaluator` (the threshold is chosen on the same pairs, so
    compare models with it rather than read the F1 as a deployment figure)."""
    from sentence_transformers.sentence_transformer.evaluation import (
        BinaryClassificationEvaluator,
    )

    evaluator = BinaryClassificationEvaluator(list(sentences1), list(sentences2), list(labels), name="dedup",
                                              similarity_fn_names=["cosine"], write_csv=False)
    scores = evaluator(model)
    return {key: scores[f"dedup_cosine_{key}"] for key in ("f1", "precision", "recall", "f1_threshold", "ap")}


def compare_models(
    model_names: Sequence[str],
    queries: dict[str, str],
    corpus: dict[str, str],
    relevant: dict[str, set[str]],
) -> dict[str, dict[str, float]]:
    """The seed text's comparison: load each model (offline, see `helpers.models.load_model`) and return
    NDCG@10, Recall@10 and MRR@10 per model name."""
    from .models import load_model

    return {name: headline(evaluate_retrieval_quality(load_model(name), queries, corpus, relevant)) for name in model_names}


def retrieve(
    model: Any,
    queries: Mapping[str, str],
    corpus_ids: Sequence[str],
    corpus_embeddings: Any,
    top_k: int = 100,
) -> dict[str, dict[str, float]]:
    """Top-`top_k` documents per query by cosine similarity: query id -> {document id: score}."""
    query_embeddings = model.encode(
        list(queries.values()), batch_size=128, convert_to_tensor=True, normalize_embeddings=True
    )
    return rank(list(queries), query_embeddings, corpus_ids, corpus_embeddings, top_k)


def rank(
    query_ids: Sequence[str], query_embeddings: Any, corpus_ids: Sequence[str], corpus_embeddings: Any, top_k: int = 100
) -> dict[str, dict[str, float]]:
    """Top-`top_k` documents per query from precomputed embeddings, by cosine similarity."""
    import torch
    from sentence_transformers.util import semantic_search

    hits = semantic_search(torch.as_tensor(query_embeddings), torch.as_tensor(corpus_embeddings), top_k=min(top_k, len(corpus_ids)))
    return {
        query_id: {corpus_ids[hit["corpus_id"]]: float(hit["score"]) for hit in query_hits}
        for query_id, query_hits in zip(query_ids, hits, strict=True)
    }


def to_ranx(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], run_name: str):
    """ranx's `Qrels` and `Run` objects (a query without results gets an empty ranking)."""
    from ranx import Qrels, Run

    full_run = {query_id: dict(run.get(query_id, {})) for query_id in qrels}
    return Qrels({q: dict(d) for q, d in qrels.items()}), Run(full_run, name=run_name)


def per_query_scores(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = METRICS
) -> dict[str, np.ndarray]:
    """Metric -> array of per-query values, queries in the order of `qrels`."""
    from ranx import evaluate

    ranx_qrels, ranx_run = to_ranx(qrels, run, "run")
    scores = evaluate(ranx_qrels, ranx_run, list(metrics), return_mean=False, make_comparable=True)
    if len(metrics) == 1:
        scores = {metrics[0]: scores}
    return {metric: np.asarray(values, dtype=float) for metric, values in scores.items()}


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of per-query values (scipy).

    For a paired comparison pass the per-query differences (fine-tuned minus base): queries are resampled as
    units, so each query's two scores stay together.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError("a bootstrap interval needs a one-dimensional array of at least two per-query values")
    result = bootstrap(
        (values,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def significance(
    qrels: Mapping[str, Mapping[str, int]],
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    metric: str = "ndcg@10",
    seed: int = 0,
) -> float:
    """Two-sided p-value of Fisher's randomization test (ranx) between the first two runs on `metric`."""
    from ranx import compare

    (name_a, run_a), (name_b, run_b) = list(runs.items())[:2]
    ranx_qrels, first = to_ranx(qrels, run_a, name_a)
    _, second = to_ranx(qrels, run_b, name_b)
    report = compare(ranx_qrels, [first, second], metrics=[metric], stat_test="fisher", random_seed=seed, make_comparable=True)
    return float(report.to_dict()[name_a]["comparisons"][name_b][metric])


def save_trec(
    qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Mapping[str, Mapping[str, float]]], folder: str | Path
) -> list[Path]:
    """Write `<name>.trec` for each run and `test.qrels`, in TREC formats any IR tool can re-score."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, run in runs.items():
        ranx_qrels, ranx_run = to_ranx(qrels, run, name)
        ranx_run.save(str(folder / f"{name}.trec"), kind="trec")
        written.append(folder / f"{name}.trec")
    ranx_qrels.save(str(folder / "test.qrels"), kind="trec")
    written.append(folder / "test.qrels")
    return written


def compare_on_splits(
    models: Mapping[str, Any],
    corpus: dict[str, str],
    splits: Mapping[str, tuple[dict[str, str], dict[str, dict[str, int]]]],
    top_k: int = 100,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Split -> model name -> {"metrics", "run", "per_query"} for every (queries, qrels) split.

    Each model encodes the corpus once, shared by every split, by the seed's evaluator and by the top-`top_k`
    run. The evaluator's NDCG@10 and ranx's, computed independently from the same embeddings, must agree.
    """
    results: dict[str, dict[str, dict[str, Any]]] = {split: {} for split in splits}
    for name, model in models.items():
        embeddings = encode_corpus(model, corpus)
        for split, (queries, qrels) in splits.items():
            relevant = {query_id: set(docs) for query_id, docs in qrels.items()}
            metrics = evaluate_retrieval_quality(model, queries, corpus, relevant, corpus_embeddings=embeddings)
            run = retrieve(model, queries, list(corpus), embeddings, top_k=top_k)
            scores = per_query_scores(qrels, run)
            disagreement = abs(float(scores["ndcg@10"].mean()) - metrics["domain-retrieval_cosine_ndcg@10"])
            if disagreement > 2e-3:
                raise AssertionError(f"{name}/{split}: sentence-transformers and ranx disagree on NDCG@10 by {disagreement:.4f}")
            results[split][name] = {"metrics": metrics, "run": run, "per_query": scores}
    return results


# --------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------


def plot_metric_bars(table: Mapping[str, Mapping[str, float]], errors: Mapping[str, Mapping[str, tuple[float, float]]] | None = None, ax: Any = None, title: str = ""):
    """Grouped bars: one group per metric, one bar per model, optional (low, high) error bars."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(9, 3.5))[1]
    models = list(table)
    metrics = list(next(iter(table.values())))
    width = 0.8 / len(models)
    for index, model in enumerate(models):
        values = np.array([table[model][metric] for metric in metrics])
        yerr = None
        if errors and model in errors:
            bounds = np.array([errors[model][metric] for metric in metrics])
            yerr = np.abs(bounds.T - values)
        ax.bar(np.arange(len(metrics)) + index * width, values, width, yerr=yerr, capsize=3, label=model)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(models) - 1) / 2, metrics, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    return ax


def plot_recall_curve(per_query: Mapping[str, Mapping[str, np.ndarray]], ks: Sequence[int] = (1, 5, 10, 50), ax: Any = None):
    """Mean Recall@k against k for each model."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    for name, scores in per_query.items():
        ax.plot(ks, [scores[f"recall@{k}"].mean() for k in ks], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel("mean Recall@k")
    ax.set_ylim(0, 1)
    ax.legend()
    return ax


def plot_gain_histogram(differences: np.ndarray, metric: str = "NDCG@10", ax: Any = None):
    """Distribution of the per-query change in a metric (fine-tuned minus base)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    ax.hist(differences, bins=np.linspace(-1, 1, 41), color="tab:green", edgecolor="white")
    ax.axvline(0, color="black", linewidth=1)
    ax.set_xlabel(f"per-query change in {metric}")
    ax.set_ylabel("queries")
    return ax


def bm25_run(corpus: Mapping[str, str], queries: Mapping[str, str], top_k: int = 100) -> dict[str, dict[str, float]]:
    """Top-`top_k` documents per query by BM25 (the `bm25s` library, English stop words and Snowball stemming):
    the lexical baseline that dense retrieval must beat."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    corpus_ids = list(corpus)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(corpus.values()), stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize(list(queries.values()), stopwords="en", stemmer=stemmer, show_progress=False)
    documents, scores = retriever.retrieve(query_tokens, k=min(top_k, len(corpus_ids)), show_progress=False, n_threads=1)
    return {
        query_id: {corpus_ids[int(doc)]: float(score) for doc, score in zip(row_docs, row_scores) if score > 0}
        for query_id, row_docs, row_scores in zip(queries, documents, scores, strict=True)
    }


def fuse_rrf(qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Mapping[str, Mapping[str, float]]], k: int = 60) -> dict[str, dict[str, float]]:
    """Reciprocal rank fusion of several runs (ranx's `fuse`): each document scores sum(1 / (k + rank)), so
    lexical and dense rankings combine without calibrating their scores."""
    from ranx import fuse

    fused = fuse(runs=[to_ranx(qrels, run, name)[1] for name, run in runs.items()], method="rrf", params={"k": k})
    return {query_id: dict(documents) for query_id, documents in fused.to_dict().items()}


def load_trec_run(path: str | Path) -> dict[str, dict[str, float]]:
    """A TREC run file (as `save_trec` writes) back as query id -> {document id: score}, read by ranx."""
    from ranx import Run

    return {query_id: dict(documents) for query_id, documents in Run.from_file(str(path), kind="trec").to_dict().items()}


def shared_runs_path(work_dir: str | Path, dataset_label: str) -> Path:
    """Where notebook 05 leaves its test rankings (TREC) for later notebooks (06 reuses them instead of
    encoding the corpus again)."""
    return Path(work_dir) / "runs" / dataset_label

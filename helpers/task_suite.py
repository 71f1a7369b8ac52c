"""Tasks a model is scored on item by item (notebooks 11 and 12): retrieval samples, scored by NDCG@10 per query, and
sentence pairs, scored by the cosine of each pair and read against people's similarity scores by Spearman's
correlation. Per-item scores are what a paired interval between two models resamples."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import RetrievalData, corpus_sample, subsample
from .evaluation import encode, ndcg_on_sample
from .intervals import bootstrap_ci, bootstrap_statistic_ci
from .sources import SimilarityPairs, build_dataset, load_stsb
from .storage import write_atomically


@dataclass
class RetrievalTask:
    """Queries searched among `doc_ids`; the documents' texts are `corpus[doc_id]`. `corpus` is either the sample
    itself or the whole corpus the sample was drawn from, so that a model whose whole-corpus embeddings are cached
    scores the sample from rows of that cache."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    corpus: Mapping[str, str]
    doc_ids: list[str]
    attribution: str

    def __len__(self) -> int:
        return len(self.qrels)

    def describe(self) -> str:
        return f"{len(self.queries)} queries, {len(self.doc_ids)} documents"


@dataclass
class PairTask:
    """Sentence pairs with people's similarity scores (`gold`)."""

    first: list[str]
    second: list[str]
    gold: np.ndarray
    attribution: str

    def __len__(self) -> int:
        return len(self.gold)

    def describe(self) -> str:
        return f"{len(self.gold)} sentence pairs"


Task = RetrievalTask | PairTask


def retrieval_task(
    source: RetrievalData,
    split_names: Sequence[str],
    corpus_size: int,
    max_queries: int,
    seed: int,
    rows_of_whole_corpus: bool = False,
) -> RetrievalTask:
    """The queries of `split_names`, merged, at most `max_queries` of them, against a sample of `corpus_size`
    documents that keeps every answer (`data.subsample`). With `rows_of_whole_corpus`, the task's `corpus` is the
    source's whole corpus (the sample's documents are rows of its cached embeddings), else the sample."""
    judged = {query: docs for split in split_names for query, docs in source.qrels.get(split, {}).items()}
    merged = RetrievalData(
        source.name,
        source.corpus,
        queries={query: source.queries[query] for query in judged},
        qrels={"all": judged},
        attribution=source.attribution,
    )
    sample = subsample(merged, min(corpus_size, len(merged.corpus)), max_queries, seed)
    return RetrievalTask(
        sample.split_queries("all"),
        sample.qrels["all"],
        source.corpus if rows_of_whole_corpus else sample.corpus,
        list(sample.corpus),
        source.attribution,
    )


def judged_sample(
    data: RetrievalData,
    split: str,
    query_ids: Sequence[str],
    corpus_size: int | None,
    rng: random.Random,
    documents: Collection[str] | None = None,
) -> dict[str, Any]:
    """Queries `query_ids` of `split` with their judgements, and the documents they are searched among: `documents`
    if given, else a random sample of `corpus_size` documents (None: all) that keeps every answer (`corpus_sample`,
    drawn with `rng`), in the corpus's order either way. A dict: `query_ids`, `qrels`, `doc_ids`."""
    qrels = {query_id: data.qrels[split][query_id] for query_id in query_ids}
    answers = {doc_id for judged in qrels.values() for doc_id in judged}
    if documents is not None:
        doc_ids = [doc_id for doc_id in data.corpus if doc_id in documents]
    else:
        doc_ids = corpus_sample(data.corpus, answers, corpus_size, rng)
    return {"query_ids": list(qrels), "qrels": qrels, "doc_ids": doc_ids}


def pair_task(pairs: SimilarityPairs, size: int, seed: int) -> PairTask:
    """A seeded sample of `size` of the sentence pairs (all of them if there are fewer), in their original order."""
    chosen = sorted(random.Random(seed).sample(range(len(pairs.gold)), min(size, len(pairs.gold))))
    return PairTask(
        [pairs.first[i] for i in chosen],
        [pairs.second[i] for i in chosen],
        np.array([pairs.gold[i] for i in chosen]),
        pairs.attribution,
    )


TASK_LABELS = {
    "icd10cm dev": "ICD-10-CM dev (in domain)",
    "hpo": "HPO lay phrases",
    "zaragoza": "construction-law FAQ",
    "stsb": "STS Benchmark (Spearman)",
}


def forgetting_tasks(
    data: RetrievalData,
    out_of_domain: Sequence[str],
    dev_corpus_size: int,
    dev_queries: int,
    ood_corpus_size: int,
    ood_queries: int,
    stsb_pairs: int,
    seed: int,
) -> dict[str, Task]:
    """Notebooks 11 and 12's tasks: ICD-10-CM's dev split (`data`, its documents rows of the whole corpus), and
    each out-of-domain task: a sentence-pair sample of the STS Benchmark's test split, or a retrieval task drawn
    from every split of a shipped data set (`hpo`, `zaragoza`), its sample keeping every answer. Seeded: the same
    arguments give the same items, so a notebook can rebuild the tasks another one scored."""
    tasks: dict[str, Task] = {
        "icd10cm dev": retrieval_task(data, ["dev"], dev_corpus_size, dev_queries, seed, rows_of_whole_corpus=True)
    }
    for domain in out_of_domain:
        if domain == "stsb":
            tasks[domain] = pair_task(load_stsb("test"), stsb_pairs, seed)
        else:
            source = build_dataset(domain, seed)
            tasks[domain] = retrieval_task(source, ["train", "dev", "test"], ood_corpus_size, ood_queries, seed)
    return tasks


def item_scores(
    model: Any, tasks: Mapping[str, Task], cache_dir: str | Path | None = None, only: Collection[str] | None = None
) -> dict[str, np.ndarray]:
    """Per task (or only the tasks named in `only`): NDCG@10 per query of a retrieval task, the cosine of each pair of
    a pair task. With `cache_dir`, embeddings are cached (a whole corpus once, reused by every sample of it)."""
    scores = {}
    for name, task in tasks.items():
        if only is not None and name not in only:
            continue
        if isinstance(task, PairTask):
            first, second = (
                encode(model, texts, cache_dir, show_progress_bar=False).cpu().numpy()
                for texts in (task.first, task.second)
            )
            scores[name] = (first * second).sum(axis=1)
        else:
            scores[name] = ndcg_on_sample(
                model, task.corpus, task.queries, task.qrels, task.doc_ids, cache_dir, show_progress_bar=False
            )
    return scores


def headline(task: Task, values: np.ndarray, at: Any = slice(None)) -> float:
    """The task's score from its item scores `values` on the items `at` (all by default): the mean NDCG@10 of a
    retrieval task, Spearman's correlation with people's scores for a pair task."""
    if isinstance(task, PairTask):
        from scipy.stats import spearmanr

        return float(spearmanr(values[at], task.gold[at]).statistic)
    return float(np.mean(values[at]))


def statistic_ci(task: Task, statistic: Callable[[Any], float], n_resamples: int, seed: int) -> tuple[float, float]:
    """95% bootstrap interval of `statistic(items)`, the task's items resampled as units."""
    return bootstrap_statistic_ci(statistic, len(task), n_resamples=n_resamples, seed=seed)


def difference_ci(
    task: Task, first: np.ndarray, second: np.ndarray, n_resamples: int, seed: int
) -> tuple[float, float]:
    """95% paired-bootstrap interval of headline(first) - headline(second): for a retrieval task the mean of the
    per-query differences (scipy's bootstrap, as notebook 05 does), for a pair task the difference of two
    correlations, recomputed on each resample of the pairs."""
    if isinstance(task, RetrievalTask):
        return bootstrap_ci(first - second, n_resamples=n_resamples, seed=seed)
    return statistic_ci(task, lambda at: headline(task, first, at) - headline(task, second, at), n_resamples, seed)


def save_scored_models(
    path: str | Path, scores: Mapping[str, Mapping[str, np.ndarray]], test: Mapping[str, np.ndarray], /, **record: Any
) -> Path:
    """Item scores by model and task (`scores[model][task]`), per-query test scores by model (`test[model]`), and
    what produced them (`record`: plain JSON values), as one JSON file: notebook 11 leaves its sweep so that
    notebook 12 compares other models with it without scoring the sweep again."""
    if reserved := {"scores", "test"} & set(record):
        raise ValueError(
            f"save_scored_models: {sorted(reserved)} name the scores themselves; give the record other keys"
        )
    lists = {
        model: {task: np.asarray(values).tolist() for task, values in by_task.items()}
        for model, by_task in scores.items()
    }
    test_lists = {model: np.asarray(values).tolist() for model, values in test.items()}
    return write_atomically(Path(path), json.dumps({**record, "scores": lists, "test": test_lists}))


def load_scored_models(
    path: str | Path,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray], dict[str, Any]]:
    """What `save_scored_models` wrote: the item scores, the test scores (arrays) and the record beside them."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    scores = {
        model: {task: np.asarray(values) for task, values in by_task.items()}
        for model, by_task in record.pop("scores").items()
    }
    test = {model: np.asarray(values) for model, values in record.pop("test").items()}
    return scores, test, record

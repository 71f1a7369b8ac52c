"""Notebook 08's reindex as a Ray Data pipeline: the same guarantees, with the embedding spread over workers
(notebook 16). Ray runs locally (`ray.init(num_cpus=...)`) or joins a cluster given its address; the code is the
same.

The pipeline: the driver plans what to embed as `indexing.sync_index` does (new, changed, or embedded by another
model version) and deletes rows gone from the corpus; Ray Data cuts the documents to embed into blocks and
`map_batches` sends them to a pool of `Embedder` actors, each holding one copy of the model; the driver is the one
writer, and upserts every batch that comes back by id in one LanceDB commit.

Why one writer, not Ray's Lance sink: the sink writes fragments from the workers and commits them all at the end, so
a crash loses every row written so far, and it appends, so a block retried after a worker died could be written
twice. Upserts by id make a retried block harmless (the same id is overwritten, never duplicated) and each batch
durable at once, so a crashed run resumes with what is missing. The price: writes go through one process, a ceiling
that `RayIndexStats.write_docs_per_s` measures.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .indexing import check_documents, content_hash, encode_batch_size, open_and_plan
from .models import model_fingerprint


def start_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int = 256) -> dict[str, Any]:
    """Join the Ray cluster at `address` (e.g. `ray://head:10001`, or `auto` on a node of a running cluster), or
    start a local one of this process's own with `num_cpus` CPUs (None: all of this machine's), never joining a
    cluster it was not given; returns the resources Ray sees.
    A Ray already started in this process is reused."""
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # Ray Data's per-run lines; read when ray.data is imported
    import ray

    if not ray.is_initialized():
        local = (
            {}
            if address
            else {"num_cpus": num_cpus, "object_store_memory": object_store_mb * 1024**2, "include_dashboard": False}
        )
        # "local" starts a Ray of this process's own: with no address, ray.init would join any cluster that
        # `ray start` left on this machine (or that RAY_ADDRESS names), another user's work among them.
        ray.init(address=address or "local", logging_level="ERROR", log_to_driver=False, **local)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
    return {key: float(value) for key, value in ray.cluster_resources().items() if key in ("CPU", "GPU", "memory")}


class Embedder:
    """One worker's copy of the model: Ray Data constructs it once per actor and calls it on each batch.

    Each output row carries what the index stores (content hash, model name and this copy's weight fingerprint),
    the worker's process id, the seconds this batch took to encode, and whether the batch was redone after an
    injected crash (`crash_at`, with the marker file that makes the crash happen once)."""

    def __init__(
        self,
        model_name: str,
        device: str | None = None,
        threads: int | None = None,
        crash_at: str | None = None,
        crash_marker: str | None = None,
    ) -> None:
        import torch

        from .models import load_model

        if crash_at is not None and not crash_marker:
            raise ValueError(f"crash_at={crash_at!r} needs a crash_marker path (ray_sync_index makes one)")
        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model_name, device=device)
        self.model_name = model_name
        self.version = model_fingerprint(self.model)
        self.crash_at, self.crash_marker = crash_at, crash_marker

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        redone = False  # True for the block of `crash_at` when it runs again, after its first worker died
        if self.crash_at is not None and self.crash_at in {str(doc_id) for doc_id in batch["id"]}:
            redone = _crash_once(str(self.crash_marker))
        texts = [str(text) for text in batch["text"]]
        started = time.perf_counter()
        vectors = self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
        seconds = time.perf_counter() - started
        return {
            "id": batch["id"],
            "text": batch["text"],
            "content_hash": np.array([content_hash(t) for t in texts]),
            "model": np.array([self.model_name] * len(texts)),
            "model_version": np.array([self.version] * len(texts)),
            "vector": vectors.astype(np.float32),
            "worker": np.full(len(texts), os.getpid()),
            "encode_seconds": np.full(len(texts), seconds / len(texts)),
            "redone": np.full(len(texts), redone),
        }


def _crash_once(marker: str) -> bool:
    """Kill this worker process (SIGKILL: no clean-up, as a lost machine) unless a worker already did: the first to
    create `marker` dies, so the block it held is redone by a restarted worker, for which this returns True. The
    marker lives on the worker's machine: on a cluster of several, a block can die once per machine before one of
    them redoes it."""
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    try:
        with open(marker, "x"):
            pass
    except FileExistsError:
        return True
    os.kill(os.getpid(), signal.SIGKILL)
    return False  # not reached


@dataclass
class RayIndexStats:
    """What one `ray_sync_index` call did, with the rates a projection needs."""

    table: str
    workers: int
    documents: int  # documents in the corpus given
    embedded: int  # encoded by the workers and written
    skipped: int  # already up to date
    deleted: int  # gone from the corpus
    seconds: float  # the whole call: planning, the workers' start, embedding and writing
    write_seconds: float  # the driver's time in LanceDB commits
    rows_received: int  # rows the pipeline returned (more than `embedded` if a retried block came back twice)
    crashed_mid_block: bool = False  # the block of `crash_at` came back from a worker that redid it after a crash
    docs_per_worker: dict[str, int] = field(default_factory=dict)  # by worker process id
    encode_seconds_per_worker: dict[str, float] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        """Documents embedded and committed per second of the whole call (the workers' start included)."""
        return self.embedded / self.seconds if self.embedded and self.seconds > 0 else 0.0

    @property
    def docs_per_s_per_worker(self) -> float:
        """A worker's encoding rate: its documents over its seconds of encoding, the mean over workers."""
        rates = [self.docs_per_worker[w] / s for w, s in self.encode_seconds_per_worker.items() if s > 0]
        return float(np.mean(rates)) if rates else 0.0

    @property
    def write_docs_per_s(self) -> float:
        """The one writer's rate: documents committed per second spent committing."""
        return self.rows_received / self.write_seconds if self.write_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "docs_per_s": self.docs_per_s,
            "docs_per_s_per_worker": self.docs_per_s_per_worker,
            "write_docs_per_s": self.write_docs_per_s,
        }


def ray_sync_index(
    db: Any,
    table_name: str,
    documents: Mapping[str, str],
    model: Any,
    model_name: str,
    workers: int,
    batch_size: int | None = None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    crash_at: str | None = None,
) -> RayIndexStats:
    """Bring `table_name` up to date with `documents` under the model at `model_name`, embedding on `workers` Ray
    actors (call `start_ray` first). `model` is the driver's copy, loaded from `model_name`: the plan and the rows'
    version come from its fingerprint, and `verify_index` later checks every row against it, so a worker that
    loaded other weights is caught. Resumable, as `sync_index`: each batch is one atomic upsert by id.
    `crash_at` (a document id to embed) injects a fault: the worker that receives the block holding it kills itself
    before encoding it, once, so that Ray must restart the worker and redo the block; `RayIndexStats.crashed_mid_block`
    says whether the redone block came back.
    """
    import ray.data
    from tqdm.auto import tqdm

    check_documents(documents)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    started = time.perf_counter()
    version = model_fingerprint(model)
    batch_size = batch_size or encode_batch_size("cuda" if gpus_per_worker else "cpu")
    table, to_embed, to_delete = open_and_plan(db, table_name, documents, model, version)
    stats = RayIndexStats(
        table_name, workers, len(documents), len(to_embed), len(documents) - len(to_embed), len(to_delete), 0.0, 0.0, 0
    )
    if crash_at is not None and crash_at not in to_embed:
        raise ValueError(f"crash_at={crash_at!r} is not a document this call embeds ({len(to_embed)} to embed)")
    marker = os.path.join(tempfile.mkdtemp(prefix="ray-crash-"), "crashed") if crash_at is not None else None
    try:
        if to_embed:
            threads = max(1, int(cpus_per_worker)) if not gpus_per_worker else None
            pipeline = ray.data.from_items(
                [{"id": doc_id, "text": documents[doc_id]} for doc_id in to_embed],
                override_num_blocks=math.ceil(len(to_embed) / batch_size),
            )
            embedded = pipeline.map_batches(
                Embedder,
                fn_constructor_kwargs={
                    "model_name": str(model_name),
                    "device": "cuda" if gpus_per_worker else "cpu",
                    "threads": threads,
                    "crash_at": crash_at,
                    "crash_marker": marker,
                },
                batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=cpus_per_worker,
                num_gpus=gpus_per_worker,
                batch_format="numpy",
            )
            progress = tqdm(total=len(to_embed), unit="doc", desc=f"embedding into {table_name} on {workers} worker(s)")
            for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
                rows = [
                    {
                        "id": str(doc_id),
                        "text": str(text),
                        "content_hash": str(digest),
                        "model": str(name),
                        "model_version": str(row_version),
                        "vector": vector,
                    }
                    for doc_id, text, digest, name, row_version, vector in zip(
                        batch["id"],
                        batch["text"],
                        batch["content_hash"],
                        batch["model"],
                        batch["model_version"],
                        batch["vector"],
                    )
                ]
                writing = time.perf_counter()
                table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(rows)
                stats.write_seconds += time.perf_counter() - writing
                stats.rows_received += len(rows)
                for worker, seconds in zip(batch["worker"], batch["encode_seconds"]):
                    stats.docs_per_worker[str(worker)] = stats.docs_per_worker.get(str(worker), 0) + 1
                    stats.encode_seconds_per_worker[str(worker)] = stats.encode_seconds_per_worker.get(
                        str(worker), 0.0
                    ) + float(seconds)
                progress.update(len(rows))
                stats.crashed_mid_block |= bool(batch["redone"].any())
            progress.close()
    finally:  # the marker's folder, on this machine
        if marker is not None:
            shutil.rmtree(os.path.dirname(marker), ignore_errors=True)
    stats.seconds = time.perf_counter() - started
    return stats


def projected_hours(
    documents: int, workers: int, docs_per_s_per_worker: float, write_docs_per_s: float | None
) -> float:
    """Hours to embed `documents` on `workers` workers, each at a measured rate, capped by the one writer's rate
    (None: no cap, e.g. a sink that writes from every worker)."""
    if documents < 0 or workers < 1 or docs_per_s_per_worker <= 0:
        raise ValueError(
            f"need documents >= 0, workers >= 1 and a positive rate (got {documents}, {workers}, "
            f"{docs_per_s_per_worker})"
        )
    rate = workers * docs_per_s_per_worker
    if write_docs_per_s is not None:
        rate = min(rate, write_docs_per_s)
    return documents / rate / 3600


def _writer_stretches(
    documents: int, rate_at_size: Mapping[int, float], extend_largest: bool
) -> list[tuple[int, float]] | None:
    """(rows, the writer's documents/s) for each stretch of a table growing from empty to `documents` rows: the rows
    up to each measured size at that size's rate; None past the largest measured size unless `extend_largest`."""
    if documents < 0 or not rate_at_size or min(rate_at_size.values()) <= 0:
        raise ValueError(f"need documents >= 0 and positive measured rates (got {documents}, {dict(rate_at_size)})")
    sizes = sorted(rate_at_size)
    if documents > sizes[-1] and not extend_largest:
        return None
    stretches, committed = [], 0
    for size in sizes:
        if committed >= documents:
            break
        stretches.append((min(documents, size) - committed, rate_at_size[size]))
        committed = min(documents, size)
    if documents > committed:
        stretches.append((documents - committed, rate_at_size[sizes[-1]]))
    return stretches


def writer_seconds(documents: int, rate_at_size: Mapping[int, float], extend_largest: bool = False) -> float | None:
    """Seconds for the one writer to commit `documents` rows into a table that grows from empty, from its rate
    (documents/s) measured at several table sizes (`rate_at_size`: rows -> rate, as `benchmarks/bench_writer.py`
    measures it). The rows up to each measured size are committed at that size's rate: the slower end of the
    stretch where, as without an index on `id`, the rate falls while the table grows. Past the largest measured
    size the answer is None (not measured), unless `extend_largest` assumes that size's rate holds on: say so
    wherever the figure is shown."""
    stretches = _writer_stretches(documents, rate_at_size, extend_largest)
    return None if stretches is None else sum(rows / rate for rows, rate in stretches)


def projected_hours_as_table_grows(
    documents: int,
    workers: int,
    docs_per_s_per_worker: float,
    rate_at_size: Mapping[int, float],
    extend_largest: bool = False,
) -> float | None:
    """`projected_hours` with the writer's rate at each table size (`writer_seconds`): stretch by stretch, the
    pipeline runs at the slower of the workers' encoding and the writer. None where the writer was not measured
    that far."""
    stretches = _writer_stretches(documents, rate_at_size, extend_largest)
    if stretches is None:
        return None
    encoding = projected_hours(1, workers, docs_per_s_per_worker, None) * 3600  # seconds per document, all workers
    return sum(rows * max(encoding, 1 / rate) for rows, rate in stretches) / 3600

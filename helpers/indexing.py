"""Incremental, crash-safe, blue/green reindexing of a corpus into a LanceDB vector store (notebook 08).

Fine-tuning makes every stored embedding stale. This module re-embeds a corpus into a *new* table beside the
live one, in batches that are each one atomic commit, skips what is already up to date, verifies the new table,
and only then points the `live` alias at it in one more atomic commit. Notebook 08 says why LanceDB: embedded,
every write a versioned atomic commit, upserts by id, typed metadata columns, and the same API on object storage.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .models import model_fingerprint
from .progress import bar_shown

LIVE_ALIAS = "live"
ALIASES_TABLE = "aliases"
_DEVICE_BATCH_SIZES = {"cpu": 128, "mps": 256, "cuda": 512}


class IndexVerificationError(RuntimeError):
    """A rebuilt index failed its checks, so the live alias was not switched to it."""


@dataclass
class IndexStats:
    """What one `sync_index` call did."""

    table: str
    documents: int  # documents in the corpus given
    embedded: int  # new, changed, or embedded by another model version: encoded and written
    skipped: int  # already up to date: left alone
    deleted: int  # in the table but no longer in the corpus
    seconds: float

    @property
    def docs_per_s(self) -> float:
        """Documents embedded and committed per second, store writes included."""
        return self.embedded / self.seconds if self.embedded and self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "docs_per_s": self.docs_per_s}


def content_hash(text: str) -> str:
    """Fingerprint of a document's text: a changed text gets a new hash and is embedded again."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def index_table_name(model_name: str, version: str) -> str:
    """Table name for one model version, e.g. `all-minilm-l6-v2__3f2a9c1d0b7e4a55`."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(str(model_name).rstrip("/")).name.lower()).strip("-") or "model"
    return f"{slug}__{version}"


def encode_batch_size(device: str) -> int:
    """Documents per committed batch for a device: large enough to keep it busy, small enough to lose little."""
    return _DEVICE_BATCH_SIZES.get(str(device).split(":")[0], 128)


def open_store(path: str | Path):
    """Connect to a LanceDB store (a local folder, or any URI lancedb.connect accepts)."""
    import lancedb

    if isinstance(path, Path) or "://" not in str(path):
        Path(path).mkdir(parents=True, exist_ok=True)
    return lancedb.connect(str(path))


def table_names(db: Any) -> list[str]:
    """The store's tables, the alias table included."""
    return list(db.list_tables(limit=10_000).tables)


def index_schema(dimension: int):
    """The columns of every index table: id, text, content hash, model name and version, and the vector."""
    import pyarrow as pa

    text_columns = [pa.field(name, pa.string()) for name in ("text", "content_hash", "model", "model_version")]
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            *text_columns,
            pa.field("vector", pa.list_(pa.float32(), dimension)),
        ]
    )


def _quoted(ids: Sequence[str]) -> str:
    return ", ".join("'" + doc_id.replace("'", "''") + "'" for doc_id in ids)


def read_rows(table: Any, columns: Sequence[str] = ("id", "content_hash", "model_version")) -> list[dict[str, Any]]:
    """All rows of an index table, only the columns asked for (a scan, not a vector search)."""
    return table.search().select(list(columns)).limit(None).to_arrow().to_pylist()


def plan_sync(
    rows: Sequence[Mapping[str, Any]], documents: Mapping[str, str], version: str
) -> tuple[list[str], list[str]]:
    """Ids to embed (new, changed text, or another model version) and ids to delete (gone from the corpus).

    A row is up to date when its content hash and model version both match: with an unchanged model only new
    and edited documents are embedded again; with a new model, every document is.
    """
    stored = {row["id"]: (row["content_hash"], row["model_version"]) for row in rows}
    to_embed = sorted(
        doc_id for doc_id, text in documents.items() if stored.get(doc_id) != (content_hash(text), version)
    )
    return to_embed, sorted(set(stored) - set(documents))


def check_documents(documents: Mapping[str, str]) -> None:
    if not documents:
        raise ValueError("no documents to index: the corpus is empty")
    for doc_id, text in documents.items():
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"document id {doc_id!r} must be a non-empty string")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"document {doc_id!r} has an empty text")


def open_and_plan(db: Any, table_name: str, documents: Mapping[str, str], model: Any, version: str):
    """The table (created if new), the ids to embed and the ids deleted because they left the corpus: the first
    step of every sync, in one process or on Ray (`ray_indexing.ray_sync_index`)."""
    table = db.create_table(table_name, schema=index_schema(model.get_embedding_dimension()), exist_ok=True)
    to_embed, to_delete = plan_sync(read_rows(table), documents, version)
    for start in range(0, len(to_delete), 1000):
        table.delete(f"id IN ({_quoted(to_delete[start : start + 1000])})")
    return table, to_embed, to_delete


def sync_index(
    db: Any,
    table_name: str,
    documents: Mapping[str, str],
    model: Any,
    model_name: str,
    batch_size: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    show_progress_bar: bool | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> IndexStats:
    """Bring `table_name` up to date with `documents` (id -> text) under `model`, resumably.

    Each batch of `batch_size` documents is encoded and upserted by id in one atomic LanceDB commit; a process
    killed part-way loses at most the batch in flight, and running this again embeds only what is missing.
    `on_batch(embedded_so_far, to_embed)` is called after every commit. `embed(texts)` replaces `model.encode`
    where `model`'s normalised vectors already exist (read from `evaluation.encode`'s cache, which keys them by
    the same weight fingerprint that the rows record); nothing checks that they are `model`'s. The progress bar
    shows where someone watches (`progress.live_progress`, the default) or where `show_progress_bar` asks.
    """
    from tqdm.auto import tqdm

    check_documents(documents)
    started = time.perf_counter()
    version = model_fingerprint(model)
    batch_size = batch_size or encode_batch_size(model.device.type)
    table, to_embed, to_delete = open_and_plan(db, table_name, documents, model, version)
    progress = tqdm(
        total=len(to_embed),
        unit="doc",
        desc=f"embedding into {table_name}",
        disable=not bar_shown(show_progress_bar) or not to_embed,
    )
    for start in range(0, len(to_embed), batch_size):
        ids = to_embed[start : start + batch_size]
        texts = [documents[doc_id] for doc_id in ids]
        vectors = (
            embed(texts)
            if embed
            else model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
        )
        batch = [
            {
                "id": doc_id,
                "text": text,
                "content_hash": content_hash(text),
                "model": str(model_name),
                "model_version": version,
                "vector": vector.astype(np.float32),
            }
            for doc_id, text, vector in zip(ids, texts, vectors)
        ]
        table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(batch)
        progress.update(len(ids))
        if on_batch:
            on_batch(start + len(ids), len(to_embed))
    progress.close()
    return IndexStats(
        table_name,
        len(documents),
        len(to_embed),
        len(documents) - len(to_embed),
        len(to_delete),
        time.perf_counter() - started,
    )


def search(db: Any, model: Any, queries: Sequence[str], k: int = 5, table_name: str | None = None) -> list[list[dict]]:
    """Top-k documents (id, text, cosine distance) per query, from the live index unless a table is named.

    Refuses to search an index built by another model version: its vectors live in another space, and the
    results would be silently meaningless.
    """
    table_name = table_name or live_table(db)
    table = db.open_table(table_name)
    versions = {row["model_version"] for row in read_rows(table, ["model_version"])}
    version = model_fingerprint(model)
    if versions != {version}:
        raise ValueError(
            f"index {table_name!r} holds vectors of model version(s) {sorted(versions)}, but the query "
            f"model is version {version}: search it with the model that built it, or reindex"
        )
    vectors = model.encode(list(queries), normalize_embeddings=True, convert_to_numpy=True)
    return [
        table.search(v).distance_type("cosine").select(["id", "text", "_distance"]).limit(k).to_list() for v in vectors
    ]


def verify_index(
    db: Any, table_name: str, documents: Mapping[str, str], model: Any, spot_checks: int = 20, seed: int = 0
) -> dict[str, Any]:
    """Check a rebuilt index before it goes live; raise IndexVerificationError listing every problem.

    Checks: one row per document and no other rows, every content hash and model version current, and for a
    random sample of documents, a fresh embedding equals the stored one and finds its own document first.
    """
    table = db.open_table(table_name)
    rows = read_rows(table)
    version = model_fingerprint(model)
    problems = []
    if len(rows) != len(documents):
        problems.append(f"{len(rows)} rows for {len(documents)} documents")
    to_embed, to_delete = plan_sync(rows, documents, version)
    if to_embed:
        problems.append(f"{len(to_embed)} documents missing or stale (first: {to_embed[0]!r})")
    if to_delete:
        problems.append(f"{len(to_delete)} rows not in the corpus (first: {to_delete[0]!r})")
    sample = random.Random(seed).sample(sorted(documents), min(spot_checks, len(documents)))
    fresh = model.encode([documents[doc_id] for doc_id in sample], normalize_embeddings=True, convert_to_numpy=True)
    largest_difference = 0.0
    for doc_id, vector in zip(sample, fresh):
        hits = table.search(vector).distance_type("cosine").select(["id", "vector", "_distance"]).limit(10).to_list()
        own = [hit for hit in hits if hit["id"] == doc_id]
        if not own:
            problems.append(f"document {doc_id!r} is not among its own embedding's 10 nearest neighbours")
            continue
        largest_difference = max(largest_difference, float(np.abs(np.asarray(own[0]["vector"]) - vector).max()))
        if own[0]["_distance"] > hits[0]["_distance"] + 1e-4:
            problems.append(f"document {doc_id!r} is not its own embedding's nearest neighbour")
    if largest_difference > 1e-3:
        problems.append(f"stored vectors differ from fresh ones by up to {largest_difference:.2g}")
    if problems:
        raise IndexVerificationError(f"index {table_name!r} failed verification: " + "; ".join(problems))
    return {
        "table": table_name,
        "rows": len(rows),
        "model_version": version,
        "spot_checks": len(sample),
        "max_vector_difference": largest_difference,
    }


def _aliases(db: Any):
    import pyarrow as pa

    if ALIASES_TABLE in table_names(db):
        return db.open_table(ALIASES_TABLE)
    schema = pa.schema(
        [
            pa.field("alias", pa.string(), nullable=False),
            pa.field("table", pa.string()),
            pa.field("switched_at", pa.string()),
        ]
    )
    return db.create_table(ALIASES_TABLE, schema=schema, exist_ok=True)


def live_table(db: Any, alias: str = LIVE_ALIAS) -> str:
    """The table an alias points at; queries go there."""
    rows = [row for row in read_rows(_aliases(db), ["alias", "table"]) if row["alias"] == alias]
    if not rows:
        raise LookupError(f"no index is {alias!r} yet: build one with sync_index and switch_live")
    return rows[0]["table"]


def switch_live(db: Any, table_name: str, documents: Mapping[str, str], model: Any, alias: str = LIVE_ALIAS) -> dict:
    """Verify `table_name`, then point the alias at it in one atomic commit; the previous table is kept.
    Returns the verification report with the previous table (None the first time)."""
    report = verify_index(db, table_name, documents, model)
    aliases = _aliases(db)
    try:
        previous = live_table(db, alias)
    except LookupError:
        previous = None
    row = {"alias": alias, "table": table_name, "switched_at": datetime.now(UTC).isoformat()}
    aliases.merge_insert("alias").when_matched_update_all().when_not_matched_insert_all().execute([row])
    return {**report, "previous": previous}


def drop_index(db: Any, table_name: str) -> None:
    """Drop an old index table explicitly; the live one cannot be dropped."""
    if table_name in {row["table"] for row in read_rows(_aliases(db), ["table"])}:
        raise ValueError(f"index {table_name!r} is live: switch the alias to another table before dropping it")
    db.drop_table(table_name)

"""The one writer's rate (documents/s) as the table grows: notebook 16's projection caps every reindex by it.

    python benchmarks/bench_writer.py [--sizes 10000 100000 1000000] [--batches 20] [--batch-size 128] [--out F]

For each size, a LanceDB table is filled with that many rows of the index's schema (random unit vectors of 384
dimensions), then `--batches` batches of new rows are upserted by id, one commit each, exactly as
`ray_sync_index`'s driver writes them; then the same on a second table of that size with a scalar index on `id`
(built after filling, so the new rows are not in it). The figure is the rows of those batches over their seconds.
Without an index an upsert scans every id in the table, so its rate falls as the table grows; notebook 16 timed
the writer on tables of a couple of thousand rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime

import numpy as np
from lancedb.index import BTree

from helpers.indexing import content_hash, index_schema, open_store

DIMENSIONS = 384  # all-MiniLM-L6-v2's


def rows(start: int, count: int, rng: np.random.Generator) -> list[dict]:
    """`count` rows of an index table with ids start..start+count-1 and random unit vectors."""
    vectors = rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        {
            "id": f"doc-{start + i}",
            "text": f"document {start + i}",
            "content_hash": content_hash(f"document {start + i}"),
            "model": "bench",
            "model_version": "0" * 16,
            "vector": vector,
        }
        for i, vector in enumerate(vectors)
    ]


def upsert_rate(size: int, batches: int, batch_size: int, id_index: bool, seed: int = 0) -> dict:
    """Fill a table with `size` rows (and index its ids if `id_index`), then time `batches` upserts of
    `batch_size` new rows."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        db = open_store(folder)
        filling = time.perf_counter()
        chunk = 100_000  # rows per write while filling: a million rows at once would hold them all as dicts
        table = db.create_table("index", schema=index_schema(DIMENSIONS))  # the schema sync_index creates
        for start in range(0, size, chunk):
            table.add(rows(start, min(chunk, size - start), rng))
        if id_index:
            table.create_index("id", config=BTree())
        fill_seconds = time.perf_counter() - filling
        seconds = []
        for number in range(batches):
            batch = rows(size + number * batch_size, batch_size, rng)
            started = time.perf_counter()
            table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(batch)
            seconds.append(time.perf_counter() - started)
        assert table.count_rows() == size + batches * batch_size
    return {
        "table_rows": size,
        "id_index": id_index,
        "batches": batches,
        "batch_size": batch_size,
        "fill_seconds": round(fill_seconds, 1),
        "docs_per_s": batches * batch_size / sum(seconds),
        "median_commit_s": float(np.median(seconds)),
        "slowest_commit_s": max(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", help="write the figures to this JSON file")
    args = parser.parse_args()
    results = []
    for size in args.sizes:
        for id_index in (False, True):
            result = upsert_rate(size, args.batches, args.batch_size, id_index)
            results.append(result)
            print(
                f"table of {size:>9,} rows, {'a scalar index on id' if id_index else 'no index':>20}: "
                f"{result['docs_per_s']:8,.0f} documents/s upserted in batches of {args.batch_size} (median commit "
                f"{result['median_commit_s'] * 1000:.0f} ms, slowest {result['slowest_commit_s'] * 1000:.0f} ms; "
                f"filled in {result['fill_seconds']} s)",
                flush=True,
            )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(
                {"measured": datetime.now(UTC).isoformat(timespec="seconds"), "results": results}, handle, indent=2
            )


if __name__ == "__main__":
    main()

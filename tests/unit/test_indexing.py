"""The reindexing pipeline: incremental syncs, blue/green switching, and a reindex killed part-way, resumed."""

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from helpers import indexing as I
from helpers.sources import parse_icd10cm
from helpers.models import model_fingerprint
from helpers.workbook import PROJECT_ROOT


@pytest.fixture(scope="module")
def documents():
    return {code.code: code.description for code in parse_icd10cm()[:240]}


@pytest.fixture(scope="module")
def other_model(base_model):
    """The same architecture with slightly different weights: a stand-in for a fine-tuned copy."""
    model = copy.deepcopy(base_model)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    return model


def index_contents(db, table_name):
    rows = sorted(
        I.read_rows(db.open_table(table_name), ["id", "content_hash", "model_version", "vector"]),
        key=lambda row: row["id"],
    )
    return [(row["id"], row["content_hash"], row["model_version"]) for row in rows], np.array(
        [row["vector"] for row in rows]
    )


def test_plan_sync_embeds_new_changed_and_other_model_rows_and_deletes_gone_ones():
    rows = [
        {"id": "same", "content_hash": I.content_hash("a"), "model_version": "v1"},
        {"id": "edited", "content_hash": I.content_hash("old text"), "model_version": "v1"},
        {"id": "other-model", "content_hash": I.content_hash("c"), "model_version": "v0"},
        {"id": "gone", "content_hash": I.content_hash("d"), "model_version": "v1"},
    ]
    documents = {"same": "a", "edited": "new text", "other-model": "c", "new": "e"}
    assert I.plan_sync(rows, documents, "v1") == (["edited", "new", "other-model"], ["gone"])


def test_second_sync_without_changes_embeds_nothing_and_edits_are_incremental(tmp_path, base_model, documents):
    db = I.open_store(tmp_path)
    first = I.sync_index(db, "docs", documents, base_model, "base", show_progress_bar=False)
    assert (first.embedded, first.skipped, first.deleted) == (len(documents), 0, 0)
    again = I.sync_index(db, "docs", documents, base_model, "base", show_progress_bar=False)
    assert (again.embedded, again.skipped) == (0, len(documents))

    edited = dict(documents)
    first_id, dropped_id = sorted(edited)[:2]
    edited[first_id] += " (revised)"
    del edited[dropped_id]
    edited["NEW.1"] = "Chronic cough in a long-term smoker"
    update = I.sync_index(db, "docs", edited, base_model, "base", show_progress_bar=False)
    assert (update.embedded, update.deleted, update.skipped) == (2, 1, len(edited) - 2)
    rows, _ = index_contents(db, "docs")
    assert [row[0] for row in rows] == sorted(edited)


def test_a_new_model_reembeds_everything(tmp_path, base_model, other_model, documents):
    db = I.open_store(tmp_path)
    I.sync_index(db, "docs", documents, base_model, "base", show_progress_bar=False)
    stats = I.sync_index(db, "docs", documents, other_model, "tuned", show_progress_bar=False)
    assert stats.embedded == len(documents)
    assert {row[2] for row in index_contents(db, "docs")[0]} == {model_fingerprint(other_model)}


def test_blue_green_switch_verifies_keeps_the_old_index_and_refuses_mismatched_queries(
    tmp_path, base_model, other_model, documents
):
    db = I.open_store(tmp_path)
    blue = I.index_table_name("all-MiniLM-L6-v2", model_fingerprint(base_model))
    green = I.index_table_name("/models/finetuned/", model_fingerprint(other_model))
    assert green.startswith("finetuned__")
    I.sync_index(db, blue, documents, base_model, "base", show_progress_bar=False)
    assert I.switch_live(db, blue, documents, base_model)["previous"] is None

    half = dict(sorted(documents.items())[: len(documents) // 2])
    I.sync_index(db, green, half, other_model, "tuned", show_progress_bar=False)
    with pytest.raises(I.IndexVerificationError, match=f"{len(half)} rows for {len(documents)} documents"):
        I.switch_live(db, green, documents, other_model)
    assert I.live_table(db) == blue  # queries still go to the complete old index
    with pytest.raises(ValueError, match="search it with the model that built it"):
        I.search(db, other_model, ["cholera"])

    I.sync_index(db, green, documents, other_model, "tuned", show_progress_bar=False)
    report = I.switch_live(db, green, documents, other_model)
    assert (report["previous"], report["rows"], I.live_table(db)) == (blue, len(documents), green)
    hits = I.search(db, other_model, [documents["A00.0"]], k=3)[0]
    assert hits[0]["id"] == "A00.0" and len(hits) == 3
    assert blue in I.table_names(db)
    with pytest.raises(ValueError, match="is live"):
        I.drop_index(db, green)
    I.drop_index(db, blue)
    assert blue not in I.table_names(db)


def test_verification_catches_a_corrupted_vector(tmp_path, base_model, documents):
    db = I.open_store(tmp_path)
    I.sync_index(db, "docs", documents, base_model, "base", show_progress_bar=False)
    table = db.open_table("docs")
    table.update(where="id = 'A00.0'", values={"vector": np.ones(384, dtype=np.float32) / np.sqrt(384)})
    with pytest.raises(I.IndexVerificationError, match="A00.0"):
        I.verify_index(db, "docs", documents, base_model, spot_checks=len(documents))


@pytest.mark.parametrize("bad, message", [({}, "corpus is empty"), ({"A": "  "}, "document 'A' has an empty text")])
def test_bad_corpora_are_refused(tmp_path, base_model, bad, message):
    with pytest.raises(ValueError, match=message):
        I.sync_index(I.open_store(tmp_path), "docs", bad, base_model, "base")


CHILD = textwrap.dedent("""
    import json, sys, time
    from helpers import indexing as I
    from helpers.models import load_model

    store, corpus_file = sys.argv[1:]
    documents = json.loads(open(corpus_file).read())

    def committed(done, total):
        print(f"committed {done} of {total}", flush=True)
        time.sleep(0.2)

    I.sync_index(I.open_store(store), "docs", documents, load_model(device="cpu"), "base", batch_size=16,
                 on_batch=committed, show_progress_bar=False)
    print("finished", flush=True)
""")


def test_a_killed_reindex_resumes_without_embedding_anything_twice(tmp_path, base_model, documents):
    corpus_file = tmp_path / "corpus.json"
    corpus_file.write_text(json.dumps(documents))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "killed"), str(corpus_file)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    for line in child.stdout:
        if line.startswith("committed 64 "):
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    killed = I.open_store(tmp_path / "killed")
    committed = killed.open_table("docs").count_rows()
    assert 64 <= committed < len(documents) and committed % 16 == 0  # only whole batches were committed
    resumed = I.sync_index(killed, "docs", documents, base_model, "base", batch_size=16, show_progress_bar=False)
    assert (resumed.embedded, resumed.skipped) == (len(documents) - committed, committed)

    uninterrupted = I.open_store(tmp_path / "uninterrupted")
    I.sync_index(uninterrupted, "docs", documents, base_model, "base", batch_size=16, show_progress_bar=False)
    resumed_rows, resumed_vectors = index_contents(killed, "docs")
    reference_rows, reference_vectors = index_contents(uninterrupted, "docs")
    assert resumed_rows == reference_rows
    np.testing.assert_allclose(resumed_vectors, reference_vectors, atol=1e-5)


def test_a_sync_from_cached_vectors_writes_what_encoding_would(tmp_path, base_model, documents):
    import lancedb

    from helpers.evaluation import encode

    texts = list(documents.values())
    cached = encode(base_model, texts, tmp_path / "cache").cpu().numpy()
    row_of = {text: row for row, text in enumerate(texts)}
    asked = []

    def from_cache(batch):
        asked.append(len(batch))
        return cached[[row_of[text] for text in batch]]

    db = lancedb.connect(tmp_path / "db")
    I.sync_index(db, "encoded", documents, base_model, "base", batch_size=64, show_progress_bar=False)
    I.sync_index(
        db, "from_cache", documents, base_model, "base", batch_size=64, show_progress_bar=False, embed=from_cache
    )
    encoded_rows, encoded_vectors = index_contents(db, "encoded")
    cached_rows, cached_vectors = index_contents(db, "from_cache")
    assert cached_rows == encoded_rows and sum(asked) == len(documents)  # same ids, hashes and model version
    assert np.allclose(cached_vectors, encoded_vectors, atol=1e-5)

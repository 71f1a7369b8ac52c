"""Every cached artefact a notebook reads is checked against what was written: embeddings and rankings carry a
checksum file, saved models and converted models a manifest. Each kind is damaged here, once in a way that keeps
its shape (the case that would give silently wrong figures) and once by cutting it short; the figures that come
back must equal an undamaged run's, with a line saying what was recomputed."""

import json

import numpy as np
import pytest
import torch

from helpers import workbook as W
from helpers.evaluation import cached_trec_runs, encode, per_query_scores, save_trec
from helpers.training import load_recipe_run, recipe, recipe_run_record, save_recipe_run

TEXTS = ["Cholera due to Vibrio cholerae", "Typhoid fever, unspecified", "Asthma, unspecified", "Angina pectoris"]


def flip_last_byte(path):
    """Damage that keeps the file's size and shape: the last byte (inside the data, not the header) changes."""
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x55
    path.write_bytes(bytes(raw))


def cut_short(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [flip_last_byte, cut_short])
def test_damaged_cached_embeddings_are_encoded_again(base_model, tmp_path, capsys, damage):
    first = encode(base_model, TEXTS, tmp_path, show_progress_bar=False)
    [cached] = tmp_path.glob("*.npy")
    assert W.unverified(cached) == ""
    damage(cached)
    if damage is flip_last_byte:  # what the old cache would have returned: different figures, no error
        assert not np.array_equal(np.load(cached), first.cpu().numpy())
    again = encode(base_model, TEXTS, tmp_path, show_progress_bar=False)
    assert torch.equal(again.cpu(), first.cpu())
    assert f"cached embeddings {cached.name} differs from its checksum" in capsys.readouterr().out
    assert W.unverified(cached) == ""  # written again, with a new checksum
    assert torch.equal(encode(base_model, TEXTS, tmp_path, show_progress_bar=False).cpu(), first.cpu())


def test_a_cache_written_without_a_checksum_is_not_trusted(base_model, tmp_path, capsys):
    first = encode(base_model, TEXTS, tmp_path, show_progress_bar=False)
    [cached] = tmp_path.glob("*.npy")
    W.checksum_path(cached).unlink()
    np.save(cached, np.zeros_like(first.cpu().numpy()))  # an older version's file, or one that lost its checksum
    assert torch.equal(encode(base_model, TEXTS, tmp_path, show_progress_bar=False).cpu(), first.cpu())
    assert "has no checksum file" in capsys.readouterr().out


@pytest.mark.parametrize("damage", [flip_last_byte, cut_short])
def test_damaged_rankings_are_ranked_again(tmp_path, capsys, damage):
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1}}
    runs = {
        "base": {"q1": {"d2": 0.9, "d1": 0.8}, "q2": {"d3": 0.7, "d1": 0.1}},
        "finetuned": {"q1": {"d1": 0.95, "d2": 0.5}, "q2": {"d3": 0.9, "d2": 0.2}},
    }
    save_trec(qrels, runs, tmp_path)
    assert cached_trec_runs(tmp_path, ("base", "finetuned")) == runs
    undamaged = per_query_scores(qrels, runs["finetuned"], ["ndcg@10"])["ndcg@10"].tolist()
    damage(tmp_path / "finetuned.trec")
    assert cached_trec_runs(tmp_path, ("base", "finetuned")) is None  # notebook 07 then ranks again
    assert "cached ranking finetuned.trec differs from its checksum" in capsys.readouterr().out
    save_trec(qrels, runs, tmp_path)  # what ranking again writes
    again = cached_trec_runs(tmp_path, ("base", "finetuned"))
    assert per_query_scores(qrels, again["finetuned"], ["ndcg@10"])["ndcg@10"].tolist() == undamaged


def test_a_damaged_saved_run_is_trained_again_not_loaded(base_model, tmp_path, capsys):
    settings = recipe(batch_size=8)
    record = recipe_run_record("all-MiniLM-L6-v2", "mnrl", settings, 32, 42)
    save_recipe_run(base_model, tmp_path / "32", record)
    loaded = load_recipe_run(tmp_path / "32", "all-MiniLM-L6-v2", settings, 32, 42)
    assert loaded is not None
    weights = tmp_path / "32" / "model.safetensors"
    flip_last_byte(weights)
    assert load_recipe_run(tmp_path / "32", "all-MiniLM-L6-v2", settings, 32, 42) is None  # the caller trains again
    assert "model.safetensors differs from manifest.json" in capsys.readouterr().out


@pytest.mark.parametrize("damage", [flip_last_byte, cut_short, "remove"])
def test_a_damaged_converted_model_is_converted_again(tmp_path, capsys, damage):
    builds = []

    def convert(folder):  # stands for the GGUF conversion of `models.gguf_to_hf_folder`, which uses this helper
        builds.append(folder)
        (folder / "config.json").write_text(json.dumps({"hidden_size": 8}))
        np.save(folder / "weights.npy", np.arange(64, dtype=np.float32))

    folder = W.cached_folder(tmp_path / "converted", convert, {"from": "a.gguf"})
    original = np.load(folder / "weights.npy")
    assert W.cached_folder(folder, convert, {"from": "a.gguf"}) == folder and len(builds) == 1  # reused
    if damage == "remove":
        (folder / "weights.npy").unlink()
    else:
        damage(folder / "weights.npy")
    W.cached_folder(folder, convert, {"from": "a.gguf"})
    assert len(builds) == 2 and np.array_equal(np.load(folder / "weights.npy"), original)
    assert f"{folder}: weights.npy" in capsys.readouterr().out

import json

import pytest
import torch
from datasets import Dataset

from helpers import training as T
from helpers.data import ContrastivePair
from helpers.training_sets import pairs_to_dataset
from helpers.models import load_model

PAIRS = [
    ContrastivePair(anchor, positive)
    for anchor, positive in [
        ("Botulism NOS", "Botulism food poisoning"),
        ("Classical cholera", "Cholera due to Vibrio cholerae 01, biovar cholerae"),
        ("Infection due to Salmonella typhi", "Typhoid fever"),
        ("Cholera eltor", "Cholera due to Vibrio cholerae 01, biovar eltor"),
        ("Pig-bel", "Foodborne Clostridium perfringens intoxication"),
        ("Asthenia NOS", "Other fatigue"),
        ("Sleep wake schedule disorder NOS", "Circadian rhythm sleep disorder, unspecified type"),
        ("Recurrent cholangitis", "Other cholangitis"),
    ]
]
PROBE = ["Botulism NOS", "Typhoid fever", "Other fatigue"]


def test_the_recipe_follows_notebook_04s_parameters_cell(tmp_path, monkeypatch):
    import nbformat

    cell = "\n".join(
        [
            "hard_negatives = False  # [bool] h",
            "group_by_length = True  # [bool] g",
            "epochs = 3.0  # [float > 0] e",
            "batch_size = 24  # [int ≥ 2] b",
            "learning_rate = 5e-5  # [float > 0] l",
            "warmup = 0.2  # [float ≥ 0 < 1] w",
            "max_steps = -1  # [-1 | int ≥ 1] m",
            "seed = 1  # [int] not a recipe key",
        ]
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell, metadata={"tags": ["parameters"]})])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "04_training.ipynb")
    monkeypatch.setattr(T, "RECIPE_NOTEBOOK", tmp_path / "04_training.ipynb")
    assert T.recipe() == {
        "hard_negatives": False,
        "group_by_length": True,
        "epochs": 3.0,
        "batch_size": 24,
        "learning_rate": 5e-5,
        "warmup": 0.2,
        "max_steps": -1,
    }
    assert T.recipe(batch_size=8)["batch_size"] == 8
    with pytest.raises(ValueError, match="04_training: batch_size=1 must be ≥ 2"):
        T.recipe(batch_size=1)
    with pytest.raises(ValueError, match=r"unknown recipe setting\(s\) \['batch'\]"):
        T.recipe(batch=8)


def test_recipe_arguments_follow_the_recipe_and_the_device(tmp_path):
    args = T.recipe_arguments(tmp_path, T.recipe(batch_size=8, epochs=2.0), "cpu", tokenizer=None, seed=3)
    assert (args.per_device_train_batch_size, args.num_train_epochs, args.seed, args.data_seed) == (8, 2.0, 3, 3)
    assert (args.fp16, args.bf16, args.use_cpu) == (False, False, True)
    assert isinstance(args.batch_sampler, T.LengthGroupedBatches) and args.eval_strategy == "no"
    assert T.recipe_arguments(tmp_path, T.recipe(group_by_length=False), "cpu").batch_sampler == "no_duplicates"


def test_train_with_recipe_changes_the_model_and_refuses_a_single_example(tmp_path):
    model = load_model(device="cpu")
    before = model.encode(PROBE, convert_to_tensor=True)
    record = T.train_with_recipe(
        model, pairs_to_dataset(PAIRS), tmp_path, T.recipe(batch_size=4, max_steps=3, learning_rate=5e-4)
    )
    assert record["steps"] == 3 and record["seconds"] > 0
    assert not torch.allclose(before, model.encode(PROBE, convert_to_tensor=True), atol=1e-4), (
        "training changed nothing"
    )
    with pytest.raises(ValueError, match="MNRL needs at least two"):
        T.train_with_recipe(model, pairs_to_dataset(PAIRS[:1]), tmp_path, T.recipe())


def test_train_copy_trains_a_fresh_copy_with_the_changes_and_no_evaluation_or_checkpoint(tmp_path):
    from dataclasses import replace

    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    settings = T.recipe(batch_size=4, epochs=1.0, learning_rate=5e-4, group_by_length=False)
    args = T.recipe_arguments(tmp_path / "main", settings, "cpu", seed=1)  # fp32 flags: conftest pins fp32
    args = replace(args, max_steps=2, eval_strategy="steps", eval_steps=1, save_strategy="steps", save_steps=1)
    off_the_shelf = load_model(device="cpu").encode(PROBE, convert_to_tensor=True)
    model, trainer, metrics = T.train_copy(
        "all-MiniLM-L6-v2",
        args,
        pairs_to_dataset(PAIRS),
        MultipleNegativesRankingLoss,
        tmp_path / "copy",
        "cpu",
        precision="bf16",
        per_device_train_batch_size=2,
        seed=7,
    )
    # the changes applied, and the whole set trained once (8 pairs, 2 a batch: 4 steps, not max_steps' 2)
    assert (trainer.args.per_device_train_batch_size, trainer.args.seed, trainer.state.global_step) == (2, 7, 4)
    assert (trainer.args.eval_strategy, trainer.args.save_strategy, trainer.args.disable_tqdm) == ("no", "no", True)
    assert not any((tmp_path / "copy").glob("checkpoint-*"))
    assert (trainer.args.bf16, trainer.args.fp16, model.encoding_precision) == (True, False, "bf16"), "precision set"
    assert args.per_device_train_batch_size == 4 and not args.bf16, "the main run's arguments are untouched"
    assert metrics["train_loss"] > 0
    assert not torch.allclose(off_the_shelf, model.encode(PROBE, convert_to_tensor=True), atol=1e-3)
    _, kept, _ = T.train_copy(
        "all-MiniLM-L6-v2", args, pairs_to_dataset(PAIRS[:4]), MultipleNegativesRankingLoss, tmp_path
    )
    assert (kept.args.bf16, kept.args.fp16) == (args.bf16, args.fp16), "precision None keeps the main run's flags"


def test_the_dev_evaluator_keeps_every_relevant_document():
    from helpers.data import RetrievalData

    corpus = {f"d{i}": f"document {i}" for i in range(40)}
    queries = {f"q{i}": f"query {i}" for i in range(8)}
    data = RetrievalData("toy", corpus, queries, {"dev": {f"q{i}": {f"d{i * 5}": 1} for i in range(8)}})
    evaluator = T.dev_evaluator(data, corpus_size=10, seed=0)
    assert len(evaluator.corpus) == 10 and {f"d{i * 5}" for i in range(8)} <= set(evaluator.corpus_ids)


def varied_rows(count=300, shared_positive_every=7):
    """Rows of very different lengths; every 7th row shares its positive with the row before it."""
    rows = []
    for i in range(count):
        anchor = f"query {i} " + "word " * (i * 37 % 23)
        own_positive = f"document {i} " + "term " * (i * 11 % 19)
        positive = rows[-1]["positive"] if i % shared_positive_every == 0 and rows else own_positive
        rows.append({"anchor": anchor, "positive": positive})
    return Dataset.from_list(rows)


def batches_of(sampler):
    batches = list(sampler)
    assert len(batches) == len(sampler)
    return batches


def test_length_grouped_batches_hold_every_row_once_and_no_text_twice():
    dataset = varied_rows()
    sampler = T.LengthGroupedNoDuplicatesBatchSampler(dataset, batch_size=16, drop_last=False, seed=3)
    batches = batches_of(sampler)
    assert sorted(index for batch in batches for index in batch) == list(range(len(dataset)))
    for batch in batches:
        texts = [dataset[i][column] for i in batch for column in ("anchor", "positive")]
        assert len(texts) == len(set(texts)), f"a text twice in batch {batch}"
    assert batches_of(T.LengthGroupedNoDuplicatesBatchSampler(dataset, 16, False, seed=3)) == batches
    sampler.set_epoch(1)
    assert batches_of(sampler) != batches, "every epoch must draw new batches"


def test_a_text_in_more_rows_than_batches_still_never_repeats_within_a_batch():
    rows = [{"anchor": f"query {i}", "positive": "the same document"} for i in range(5)]
    rows += [{"anchor": f"other query {i}", "positive": f"document {i}"} for i in range(11)]
    sampler = T.LengthGroupedNoDuplicatesBatchSampler(Dataset.from_list(rows), 8, False, seed=0)
    batches = batches_of(sampler)
    assert sorted(index for batch in batches for index in batch) == list(range(16))
    assert all(sum(rows[i]["positive"] == "the same document" for i in batch) <= 1 for batch in batches)
    assert len(batches) == 5


def test_length_grouping_cuts_padding(base_model):
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    dataset = varied_rows()
    tokens = [
        [len(ids) for ids in base_model.tokenizer(list(dataset[column]))["input_ids"]]
        for column in dataset.column_names
    ]

    def padding(sampler):  # share of the epoch's tokens that are padding, each column padded to its longest text
        real = sum(lengths[i] for batch in sampler for lengths in tokens for i in batch)
        return 1 - real / sum(max(lengths[i] for i in batch) * len(batch) for batch in sampler for lengths in tokens)

    settings = {"batch_size": 16, "drop_last": False, "seed": 0}
    random_share = padding(NoDuplicatesBatchSampler(dataset, **settings))
    grouped_share = padding(T.LengthGroupedBatches(base_model.tokenizer)(dataset, **settings))
    assert 0 <= grouped_share < 0.6 * random_share, (grouped_share, random_share)


def test_a_recipe_run_is_reused_only_from_the_same_model_loss_recipe_examples_and_seed(tmp_path):
    model = load_model(device="cpu")
    settings = T.recipe(batch_size=4)
    folder = T.recipe_runs_dir(tmp_path, "icd10cm") / "8"
    assert T.load_recipe_run(folder, "all-MiniLM-L6-v2", settings, 8, seed=3) is None  # nothing saved yet
    T.save_recipe_run(model, folder, T.recipe_run_record("all-MiniLM-L6-v2", "mnrl", settings, 8, seed=3))
    reused = T.load_recipe_run(folder, "all-MiniLM-L6-v2", settings, 8, seed=3, device="cpu")
    assert torch.allclose(
        reused.encode(PROBE, convert_to_tensor=True), model.encode(PROBE, convert_to_tensor=True), atol=1e-6
    )
    for other in (
        ("BAAI/bge-small-en-v1.5", settings, 8, 3),
        ("all-MiniLM-L6-v2", T.recipe(batch_size=8), 8, 3),
        ("all-MiniLM-L6-v2", settings, 16, 3),
        ("all-MiniLM-L6-v2", settings, 8, 4),
    ):
        assert T.load_recipe_run(folder, *other) is None, other
    T.save_recipe_run(model, folder, T.recipe_run_record("all-MiniLM-L6-v2", "cached_mnrl", settings, 8, seed=3))
    assert T.load_recipe_run(folder, "all-MiniLM-L6-v2", settings, 8, seed=3) is None  # not the loss 06 trains with
    (folder / "training.json").unlink()  # a save cut short before its record: never reused
    assert T.load_recipe_run(folder, "all-MiniLM-L6-v2", settings, 8, seed=3) is None


def test_the_recipe_record_is_read_back_from_beside_a_model(tmp_path):
    record = T.recipe_run_record("base", "mnrl", T.recipe(), 320, 7)
    assert T.read_recipe_record(tmp_path) is None  # a model folder without training.json
    (tmp_path / "training.json").write_text(json.dumps(record))
    assert T.read_recipe_record(tmp_path) == record
    assert T.read_recipe_record("sentence-transformers/all-MiniLM-L6-v2") is None  # a Hugging Face id

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from helpers import training as T
from helpers.data import ContrastivePair, pairs_to_dataset
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


def tiny_config(tmp_path, **overrides):
    settings = dict(output_dir=str(tmp_path), batch_size=4, max_steps=4, save_steps=2, learning_rate=5e-4,
                    warmup=0.0, device="cpu", logging_steps=1)
    settings.update(overrides)
    return T.TrainingConfig(**settings)


class StopAtStep(TrainerCallback):
    """Simulates a crash: raises once training has passed `step` (after the checkpoint at step 2 is saved)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated crash at step {self.step}")


def test_finetuned_model_reloads_and_encodes_identically(tmp_path):
    result = T.finetune(tiny_config(tmp_path), pairs_to_dataset(PAIRS))
    assert result.steps == 4 and result.precision == "fp32" and len(result.loss_history) >= 4
    before = result.model.encode(PROBE, convert_to_tensor=True)
    after = load_model(result.model_dir, device="cpu").encode(PROBE, convert_to_tensor=True)
    assert torch.allclose(before, after, atol=1e-6)
    base = load_model(device="cpu").encode(PROBE, convert_to_tensor=True)
    assert not torch.allclose(base, after, atol=1e-4), "training changed nothing"


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path):
    dataset = pairs_to_dataset(PAIRS)
    uninterrupted = T.finetune(tiny_config(tmp_path / "straight"), dataset)
    with pytest.raises(KeyboardInterrupt):
        T.finetune(tiny_config(tmp_path / "crashed"), dataset, callbacks=[StopAtStep(3)])
    assert T.last_checkpoint(tmp_path / "crashed").endswith("checkpoint-2")
    resumed = T.finetune(tiny_config(tmp_path / "crashed", resume=True), dataset)
    assert resumed.resumed_from.endswith("checkpoint-2") and resumed.steps == 4
    assert [row["step"] for row in resumed.loss_history] == [1, 2, 3, 4]  # steps 1-2 restored from the checkpoint
    straight = uninterrupted.model.encode(PROBE, convert_to_tensor=True)
    continued = resumed.model.encode(PROBE, convert_to_tensor=True)
    assert torch.allclose(straight, continued, atol=1e-5)


def test_losses_by_name(base_model):
    assert type(T.make_loss("mnrl", base_model)).__name__ == "MultipleNegativesRankingLoss"
    assert type(T.make_loss("cached_mnrl", base_model, 8)).__name__ == "CachedMultipleNegativesRankingLoss"
    assert type(T.make_loss("triplet", base_model)).__name__ == "TripletLoss"
    with pytest.raises(ValueError, match="unknown loss 'infonce'"):
        T.make_loss("infonce", base_model)


def test_bad_configurations_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="needs a 'negative' column"):
        T.finetune(tiny_config(tmp_path, loss="triplet"), pairs_to_dataset(PAIRS))
    with pytest.raises(ValueError, match="batch_size=64 is larger"):
        T.finetune(tiny_config(tmp_path, batch_size=64), pairs_to_dataset(PAIRS))


def test_training_arguments_on_cpu(tmp_path):
    args = T.training_arguments(tiny_config(tmp_path, eval_steps=5), "cpu", "fp32", has_evaluator=True)
    assert (args.fp16, args.bf16, args.use_cpu) == (False, False, True)
    assert isinstance(args.batch_sampler, T.LengthGroupedBatches)
    assert args.eval_strategy == "steps" and args.warmup_steps == 0.0
    random_batches = T.training_arguments(tiny_config(tmp_path, group_by_length=False), "cpu", "fp32", False)
    assert random_batches.batch_sampler == "no_duplicates"
    no_eval = T.training_arguments(tiny_config(tmp_path, eval_steps=5), "cpu", "fp32", has_evaluator=False)
    assert no_eval.eval_strategy == "no"


def test_measure_finetuning_gain_reports_both_scores_on_the_held_out_split(tmp_path):
    from helpers.data import RetrievalData

    corpus = {f"d{i}": pair.positive for i, pair in enumerate(PAIRS)}
    queries = {f"q{i}": pair.anchor for i, pair in enumerate(PAIRS)}
    qrels = {"train": {f"q{i}": {f"d{i}": 1} for i in range(6)}, "test": {f"q{i}": {f"d{i}": 1} for i in (6, 7)}}
    data = RetrievalData("toy", corpus, queries, qrels)
    measured = T.measure_finetuning_gain(data, tiny_config(tmp_path, max_steps=1), max_pairs=4)
    assert measured.training_pairs == 4 and measured.steps == 1
    assert 0 < measured.base_ndcg <= 1 and 0 < measured.finetuned_ndcg <= 1
    assert measured.relative_gain == pytest.approx(measured.finetuned_ndcg / measured.base_ndcg - 1)
    assert (tmp_path / "final" / "model.safetensors").exists()


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
    dataset = varied_rows()
    random_share = T.padding_share(dataset, base_model.tokenizer, group_by_length=False, batch_size=16)
    grouped_share = T.padding_share(dataset, base_model.tokenizer, group_by_length=True, batch_size=16)
    assert 0 <= grouped_share < 0.6 * random_share, (grouped_share, random_share)


def test_the_dev_curve_ends_with_the_final_model(tmp_path):
    from helpers.data import RetrievalData

    corpus = {f"d{i}": pair.positive for i, pair in enumerate(PAIRS)}
    queries = {f"q{i}": pair.anchor for i, pair in enumerate(PAIRS)}
    data = RetrievalData("toy", corpus, queries, {"dev": {f"q{i}": {f"d{i}": 1} for i in range(8)}})
    evaluator = T.dev_evaluator(data, None, seed=0)
    config = tiny_config(tmp_path, max_steps=3, eval_steps=2, checkpoints=False)
    result = T.finetune(config, pairs_to_dataset(PAIRS), evaluator)
    assert [row["step"] for row in result.eval_history] == [2, 3]
    assert result.eval_history[-1]["ndcg@10"] == pytest.approx(evaluator(result.model)["dev_cosine_ndcg@10"])

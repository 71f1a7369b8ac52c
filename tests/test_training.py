import pytest
import torch
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
    assert args.batch_sampler == "no_duplicates" and args.eval_strategy == "steps" and args.warmup_steps == 0.0
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

import copy

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from transformers import BertConfig, BertModel

from helpers import merging


@pytest.fixture(scope="module")
def tuned_copy(base_model):
    """A stand-in fine-tune: the base model with every floating-point weight moved by a small random step."""
    tuned = copy.deepcopy(base_model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in tuned.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn(tensor.shape, generator=generator))
    return tuned


def floating(state):
    return {name: tensor for name, tensor in state.items() if tensor.is_floating_point()}


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_linear_merge_is_the_stated_interpolation_of_every_weight(base_model, tuned_copy, alpha):
    merged = merging.merge(base_model, tuned_copy, alpha)
    base_state, tuned_state, merged_state = base_model.state_dict(), tuned_copy.state_dict(), merged.state_dict()
    assert set(merged_state) == set(base_state)
    for name, tensor in floating(base_state).items():
        expected = (1 - alpha) * tensor + alpha * tuned_state[name]
        assert torch.allclose(merged_state[name], expected, atol=1e-6), name
    assert any(
        not torch.equal(base_state[name], tuned_state[name]) for name in floating(base_state)
    )  # the check can fail


def test_merging_leaves_both_inputs_unchanged(base_model, tuned_copy):
    before = {name: tensor.clone() for name, tensor in floating(tuned_copy.state_dict()).items()}
    merging.merge(base_model, tuned_copy, 0.5)
    assert all(torch.equal(tuned_copy.state_dict()[name], tensor) for name, tensor in before.items())


def test_task_arithmetic_with_weight_alpha_equals_the_linear_merge(base_model, tuned_copy):
    linear = merging.merge(base_model, tuned_copy, 0.4).state_dict()
    task_vector = merging.merge(base_model, tuned_copy, 0.4, "task_arithmetic").state_dict()
    assert all(torch.allclose(task_vector[name], tensor, atol=1e-6) for name, tensor in floating(linear).items())


def test_slerp_differs_from_linear_between_the_endpoints(base_model, tuned_copy):
    texts = ["Type 2 diabetes mellitus", "Fracture of the left femur"]
    slerp = merging.merge(base_model, tuned_copy, 0.5, "slerp").encode(texts)
    linear = merging.merge(base_model, tuned_copy, 0.5).encode(texts)
    assert slerp.shape == linear.shape and not np.allclose(slerp, linear, atol=1e-7)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_zero_one_is_refused(base_model, tuned_copy, alpha):
    with pytest.raises(merging.MergeError, match=r"alpha=.*\[0, 1\]"):
        merging.merge(base_model, tuned_copy, alpha)


def test_unknown_method_is_named(base_model, tuned_copy):
    with pytest.raises(merging.MergeError, match="'model_stock'.*more than one fine-tune"):
        merging.merge(base_model, tuned_copy, 0.5, "model_stock")


def test_models_of_different_shapes_are_refused_naming_both(base_model, tmp_path):
    config = BertConfig(
        vocab_size=base_model.tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(tmp_path)
    base_model.tokenizer.save_pretrained(tmp_path)
    small = SentenceTransformer(modules=[Transformer(str(tmp_path)), Pooling(32)], device="cpu")
    with pytest.raises(merging.MergeError) as error:
        merging.merge(base_model, small, 0.5)
    message = str(error.value)
    assert "different weights" in message and str(tmp_path) in message and message.count("BertModel") == 2


def test_models_with_different_tokenizers_are_refused(base_model):
    other = copy.deepcopy(base_model)
    other.tokenizer.add_tokens(["hyperlipidaemiaxyz"])
    with pytest.raises(merging.MergeError, match="different tokenizers"):
        merging.merge(base_model, other, 0.5)


def test_the_rule_picks_the_smallest_alpha_keeping_the_share():
    dev = {0.0: 0.50, 0.25: 0.70, 0.5: 0.78, 0.75: 0.80, 1.0: 0.80}
    assert merging.smallest_alpha_keeping(dev, 0.9) == 0.5  # 0.28 of the 0.30 gain
    assert merging.smallest_alpha_keeping(dev, 0.95) == 0.75
    assert merging.smallest_alpha_keeping(dev, 0.5) == 0.25
    wavy = {**dev, 0.25: 0.85}  # a point above the fine-tune: it keeps more than the whole gain
    assert merging.smallest_alpha_keeping(wavy, 0.9) == 0.25
    assert merging.smallest_alpha_keeping({0.0: 0.6, 0.5: 0.65, 1.0: 0.58}, 0.9) == 1.0  # no gain: the fine-tune
    with pytest.raises(merging.MergeError, match="α = 0"):
        merging.smallest_alpha_keeping({0.5: 0.6, 1.0: 0.7}, 0.9)


def test_each_weight_belongs_to_one_part_of_the_network(base_model):
    assert merging.part_of("0.auto_model.encoder.layer.3.attention.self.query.weight") == "layer 3"
    assert merging.part_of("0.auto_model.encoder.layer.11.output.dense.bias") == "layer 11"
    assert merging.part_of("0.auto_model.embeddings.word_embeddings.weight") == "embeddings"
    assert merging.part_of("0.auto_model.pooler.dense.weight") == "pooler"
    assert merging.part_of("1.linear.weight") == "other"
    parts = {merging.part_of(name) for name in base_model.state_dict()}
    assert "embeddings" in parts and any(part.startswith("layer ") for part in parts)


def test_the_model_at_alpha_is_an_end_model_itself_or_the_merge(base_model, tuned_copy):
    assert merging.model_at(base_model, tuned_copy, 0.0) is base_model
    assert merging.model_at(base_model, tuned_copy, 1.0) is tuned_copy
    halfway = merging.model_at(base_model, tuned_copy, 0.5).state_dict()
    expected = merging.merge(base_model, tuned_copy, 0.5).state_dict()
    assert all(torch.equal(halfway[name], expected[name]) for name in expected)

import pytest
import torch

from helpers import generation as G
from helpers.models import resolve_model


@pytest.fixture(scope="module")
def tiny_generator():
    """A randomly initialised two-layer Llama decoder with the packaged encoder's tokenizer: enough to test batching,
    seeding and the end-of-answer bookkeeping without the real generator."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve_model())
    tokenizer.padding_side = "left"
    tokenizer.eos_token = tokenizer.sep_token
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return G.QueryGenerator(tokenizer, LlamaForCausalLM(config).eval(), "tiny", "fp32")


def test_first_line_keeps_only_the_answer():
    assert G.first_line('  "Acute appendicitis."\nIt is a disease.') == "Acute appendicitis"
    assert G.first_line("\n\nMigraine\n") == "Migraine"
    assert G.first_line("") == ""


def test_generation_gives_one_answer_per_prompt_and_repeats_with_its_seed(tiny_generator):
    prompts = ["fracture of the femur", "a headache", "high blood pressure in pregnancy"]
    settings = {"top_p": 0.9, "max_new_tokens": 4, "batch_size": 2, "seed": 7}
    answers, finished = G.generate(tiny_generator, prompts, temperature=0.8, **settings)
    assert len(answers) == len(finished) == 3
    assert all(isinstance(answer, str) for answer in answers) and all(isinstance(ended, bool) for ended in finished)
    assert G.generate(tiny_generator, prompts, temperature=0.8, **settings) == (answers, finished)  # seeded
    batches = []
    G.generate(
        tiny_generator, prompts, temperature=0.0, progress=lambda starts: batches.extend(starts) or starts, **settings
    )
    assert batches == [0, 2]  # two prompts, then one
    with pytest.raises(ValueError, match="temperature=-1"):
        G.generate(tiny_generator, prompts, temperature=-1, **settings)


def test_an_answer_counts_as_ended_only_with_an_end_token_or_a_line_break(tiny_generator):
    class Scripted:
        """Stands for a model whose generate returns the prompt followed by scripted tokens."""

        generation_config = type("Config", (), {"eos_token_id": tiny_generator.tokenizer.sep_token_id})()

        def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **sampling):
            word = tiny_generator.tokenizer.convert_tokens_to_ids("pain")
            sep = tiny_generator.tokenizer.sep_token_id
            new = torch.tensor([[word, sep, pad_token_id], [word, word, word]])
            return torch.cat([input_ids, new], dim=1)

    scripted = G.QueryGenerator(tiny_generator.tokenizer, Scripted(), "scripted", "fp32")
    answers, finished = G.generate(
        scripted, ["a", "b"], temperature=0.0, top_p=1.0, max_new_tokens=3, batch_size=2, seed=0
    )
    assert answers == ["pain", "pain pain pain"]
    assert finished == [True, False]  # the second ran out of tokens mid-phrase

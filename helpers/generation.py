"""Queries written by a small chat model (notebook 13): the model loaded for generation, and batched, seeded
generation that keeps each answer's first line and says whether it ended.

The prompt (a chat with few-shot turns) and the filters that decide which answers to keep are the lesson, and
stay in the notebook; this module is the plumbing under them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .models import Precision, choose_precision, encoding_autocast, gguf_to_hf_folder, resolve_model
from .models import smollm2_gguf_path, workbook_cache_dir

PACKAGED_GENERATOR = "SmolLM2-135M-Instruct"


@dataclass
class QueryGenerator:
    """A chat model ready to generate: its tokenizer (padding on the left), the model, a name to print, and the
    precision its matrix products run in on the CPU."""

    tokenizer: Any
    model: Any
    name: str
    precision: Precision

    @property
    def parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())


def load_generator(generator: str = "") -> QueryGenerator:
    """A chat model from a Hugging Face id or folder, or (empty `generator`) the packaged SmolLM2-135M-Instruct
    GGUF file of notebook 02, converted once to a transformers folder and cached. A decoder continues after the last
    token of its input, so a batch of prompts is padded on the left, never after a prompt; a tokenizer without a
    padding token pads with its end token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if generator:
        folder = resolve_model(generator)
    else:
        folder = gguf_to_hf_folder(smollm2_gguf_path(), workbook_cache_dir() / "smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return QueryGenerator(tokenizer, model, generator or PACKAGED_GENERATOR, choose_precision("cpu"))


def first_line(text: str) -> str:
    """An answer without what the model adds after it: a second line, surrounding quotes, a final period."""
    return text.strip().split("\n")[0].strip().strip('"').rstrip(".").strip()


def generate(
    generator: QueryGenerator,
    prompts: Sequence[str],
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    progress: Any = None,
) -> tuple[list[str], list[bool]]:
    """One answer per prompt (already a chat-templated text), `batch_size` prompts at a time, seeded so that a run
    repeats itself: greedy at temperature 0, else nucleus sampling with `top_p`. Returns each answer's
    `first_line`, and whether the answer ended (an end token, or a line break) within `max_new_tokens`; one that did
    not stops mid-phrase. `progress` wraps the batch starts (e.g. `tqdm`)."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be 0 (greedy) or above")
    tokenizer, model = generator.tokenizer, generator.model
    end_ids = model.generation_config.eos_token_id or tokenizer.eos_token_id
    stop_ids = set(np.atleast_1d(end_ids).tolist())
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    )
    starts = range(0, len(prompts), batch_size)
    torch.manual_seed(seed)
    answers, finished = [], []
    for start in progress(starts) if progress else starts:
        batch = tokenizer(
            list(prompts[start : start + batch_size]), return_tensors="pt", padding=True, return_token_type_ids=False
        )
        with torch.no_grad(), encoding_autocast("cpu", generator.precision):
            tokens = model.generate(
                **batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
            )
        new_tokens = tokens[:, batch["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        answers += [first_line(text) for text in texts]
        finished += [bool(stop_ids & set(row.tolist())) or "\n" in text.strip() for row, text in zip(new_tokens, texts)]
    return answers, finished

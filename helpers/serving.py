"""Fast CPU inference for a trained SentenceTransformer: its transformer exported to ONNX, run by onnxruntime in
fp32 or with int8 weights.

sentence-transformers' own `backend="onnx"` goes through `optimum`, which cannot install beside the transformers
this workbook pins; this module is the small stand-in, kept behind three calls (`export_onnx`, `quantize_int8`,
`OnnxEncoder`) so that a later release can replace it. The transformer is exported with `torch.onnx.export`, the
int8 copy is onnxruntime's dynamic quantization (weights int8, activations quantized per batch), and encoding
uses the model's own tokenizer, pooling and normalisation. Every model is read back from disk before use, and an
int8 file is checked to contain integer matrix products, so a quantization that silently left fp32 is refused.
`docs_per_second_alternately`, `latencies_ms` and `latencies_in_turns` time encoders in turns and single queries
(notebooks 09 and 10, benchmarks/bench_inference.py); `int8_speedup` is the ratio notebooks 07 and 08 price a reindex
with. `variant_row`, `variant_table` and `float_search` build notebooks 09 and 10's tables; `load_encoder` loads the
encoder notebook 09 chose, for notebook 10.

OpenVINO was tried and left out: on this project's 2-core VM (2026-11-29), `openvino.convert_model` of the same
ONNX graph with `nncf.quantize` (int8, 300 calibration texts) encoded 2,000 ICD-10-CM descriptions at 225-278
documents/s against PyTorch's 270 in the same script, with a worst cosine of 0.94 to fp32 (onnxruntime int8:
384-408 documents/s, 0.98), and it would add two large packages.
"""

from __future__ import annotations

import copy
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ONNX_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
SETTINGS_FILE = "serving.json"
# Operators that only an integer (quantized) matrix product uses; an "int8" graph without any is still fp32.
INTEGER_OPERATORS = {"MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "MatMulIntegerToFloat"}
POOLING_MODES = ("mean", "cls", "max")


class _TokenEmbeddings(torch.nn.Module):
    """The transformer of a SentenceTransformer, returning its last hidden states (what pooling reads)."""

    def __init__(self, transformer: torch.nn.Module, input_names: Sequence[str]):
        super().__init__()
        self.transformer, self.input_names = transformer, list(input_names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.transformer(**dict(zip(self.input_names, inputs, strict=True))).last_hidden_state


def _serving_settings(model: Any) -> dict[str, Any]:
    """Pooling mode, normalisation and maximum length of a Transformer -> Pooling [-> Normalize] model."""
    names = [type(module).__name__ for module in model]
    if names[:2] != ["Transformer", "Pooling"] or any(name != "Normalize" for name in names[2:]):
        raise ValueError(
            f"only Transformer -> Pooling [-> Normalize] models can be exported; this one is {' -> '.join(names)}"
        )
    mode = model[1].pooling_mode
    if mode not in POOLING_MODES:
        raise ValueError(
            f"pooling {mode!r} is not supported by the ONNX encoder (supported: {', '.join(POOLING_MODES)})"
        )
    return {"pooling": mode, "normalize": "Normalize" in names, "max_seq_length": int(model.max_seq_length)}


def export_onnx(model: Any, folder: str | Path, opset: int = 17) -> Path:
    """Write `model.onnx` (the transformer, dynamic batch and length), the tokenizer and `serving.json` (pooling,
    normalisation, maximum length) into `folder`, and return the folder."""
    settings = _serving_settings(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    transformer = copy.deepcopy(model[0].auto_model).float().eval().to("cpu")  # the caller's model stays as it is
    example = model.tokenizer(["an example text", "another"], padding=True, return_tensors="pt")
    input_names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in example]
    axes = {name: {0: "batch", 1: "tokens"} for name in input_names} | {"token_embeddings": {0: "batch", 1: "tokens"}}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns that two shape tests become constants: padding beyond the attention mask (0 for an
        # encoder) and causal attention (off for an encoder); tests check the graph on other batch sizes and lengths.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")  # same: indices are never negative
        # dynamo=False: the TorchScript exporter, which needs no other package (the new one needs onnxscript)
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.onnx")
        torch.onnx.export(
            _TokenEmbeddings(transformer, input_names),
            tuple(example[name] for name in input_names),
            str(folder / ONNX_FILE),
            input_names=input_names,
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    model.tokenizer.save_pretrained(folder)
    (folder / SETTINGS_FILE).write_text(json.dumps({**settings, "inputs": input_names}, indent=2))
    return folder


def integer_operators(onnx_path: str | Path) -> int:
    """How many integer matrix-product nodes the ONNX graph holds (0 for an fp32 graph)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return sum(node.op_type in INTEGER_OPERATORS for node in graph.node)


def quantize_int8(folder: str | Path, per_channel: bool = True) -> Path:
    """Quantize `folder/model.onnx` to `folder/model_int8.onnx` (int8 weights, dynamic activations) and check
    that the result really computes in integers; returns the new file's path.

    `per_channel` gives each output column of a weight matrix its own scale: measured on 2,000 ICD-10-CM
    descriptions with all-MiniLM-L6-v2 (benchmarks/bench_inference.py), the worst cosine to the fp32 embedding
    rose from 0.92 to 0.98 for a small loss of speed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = Path(folder)
    source, target = folder / ONNX_FILE, folder / INT8_FILE
    if not source.exists():
        raise FileNotFoundError(f"{source} is missing: run export_onnx first")
    root = logging.getLogger()
    level = root.level
    # onnxruntime logs advice to run its pre-processing (quant_pre_process) first: measured here, it changed neither
    # the speed nor the embeddings of this model, so the advice is silenced rather than printed in every notebook
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel)
    finally:
        root.setLevel(level)
    if integer_operators(target) == 0:
        raise RuntimeError(f"{target} has no integer matrix product: the quantization left the model in fp32")
    return target


class OnnxEncoder:
    """Encode texts with an exported model (fp32 `model.onnx` or `model_int8.onnx`), as `SentenceTransformer.encode`
    would: the model's tokenizer and maximum length, its pooling, normalised if the model normalises."""

    def __init__(
        self, folder: str | Path, file: str = ONNX_FILE, threads: int | None = None, require_int8: bool = False
    ):
        import onnxruntime
        from transformers import AutoTokenizer

        folder = Path(folder)
        self.path = folder / file
        if not self.path.exists() or not (folder / SETTINGS_FILE).exists():
            raise FileNotFoundError(f"{self.path} or its {SETTINGS_FILE} is missing: export the model with export_onnx")
        if require_int8 and integer_operators(self.path) == 0:
            raise ValueError(f"{self.path} is not an int8 model: it has no integer matrix product")
        self.settings = json.loads((folder / SETTINGS_FILE).read_text())
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings of `texts`, in order (batches of similar length, as sentence-transformers does)."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise TypeError("encode takes a list of strings")
        order = np.argsort([-len(text) for text in texts], kind="stable")
        embeddings: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(texts), batch_size):
            positions = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in positions],
                padding=True,
                truncation=True,
                max_length=self.settings["max_seq_length"],
                return_tensors="np",
            )
            feeds = {name: batch[name].astype(np.int64) for name in self.settings["inputs"]}
            tokens = self.session.run(["token_embeddings"], feeds)[0]
            for position, vector in zip(positions, self._pool(tokens, feeds["attention_mask"]), strict=True):
                embeddings[position] = vector
        return np.stack(embeddings) if texts else np.empty((0, 0), dtype=np.float32)

    def _pool(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mode, mask = self.settings["pooling"], mask[..., None].astype(tokens.dtype)
        if mode == "mean":
            pooled = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        elif mode == "cls":
            pooled = tokens[:, 0]
        else:
            pooled = np.where(mask > 0, tokens, -np.inf).max(axis=1)
        if self.settings["normalize"]:
            pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float32)


def docs_per_second_alternately(
    encoders: Mapping[str, Callable[[list[str]], Any]], texts: Sequence[str], rounds: int = 3
) -> dict[str, list[float]]:
    """Documents per second of each encoder on `texts`, one measurement per round; the encoders take turns within
    every round, so that a machine whose speed drifts during the measurement slows them all alike. Each encoder
    first encodes a few texts untimed (threads and caches warm up)."""
    if rounds < 1 or not texts:
        raise ValueError("timing needs at least one round and one text")
    texts = list(texts)
    for encode in encoders.values():
        encode(texts[:8])
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, encode in encoders.items():
            started = time.perf_counter()
            encode(texts)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    return rates


def latencies_ms(search: Callable[[str], Any], queries: Sequence[str], warmup: int = 3) -> np.ndarray:
    """Milliseconds that `search` takes for each query alone (end to end: whatever `search` does), after
    `warmup` untimed calls."""
    if not queries:
        raise ValueError("latency needs at least one query")
    for query in list(queries)[:warmup]:
        search(query)
    timings = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        timings.append((time.perf_counter() - started) * 1000)
    return np.array(timings)


def latencies_in_turns(
    searches: Mapping[str, Callable[[str], Any]], queries: Sequence[str], block: int = 10
) -> dict[str, np.ndarray]:
    """Milliseconds that each search takes for each query alone (as `latencies_ms`), the searches taking turns
    block by block: each block of `block` queries is answered by every search in turn, the order rotating by one
    from each block to the next, so that a machine whose speed drifts favours none of them. Within its turn a
    search first answers the block's first query untimed: the thread pool of the search before it (torch's,
    onnxruntime's) has gone quiet, and its own is awake, as in a server that answers one kind of query."""
    if not queries or not searches or block < 1:
        raise ValueError("latency needs at least one search, one query and a block of at least one")
    names, queries = list(searches), list(queries)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for turn, start in enumerate(range(0, len(queries), block)):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            searches[name](queries[start])  # untimed: wakes this search's threads
            for query in queries[start : start + block]:
                started = time.perf_counter()
                searches[name](query)
                timings[name].append((time.perf_counter() - started) * 1000)
    return {name: np.array(values) for name, values in timings.items()}


def int8_speedup(model: Any, texts: Sequence[str], folder: str | Path, batch_size: int = 64, rounds: int = 2) -> float:
    """How many times faster `model`'s int8 ONNX copy (exported and quantized into `folder`, read back from disk)
    encodes `texts` than the model itself in PyTorch: the ratio of their median documents/s, timed alternately.
    Notebooks 07 and 08 scale a measured PyTorch reindexing rate by it (notebook 09 compares the variants)."""
    export_onnx(model, folder)
    quantize_int8(folder)
    int8 = OnnxEncoder(folder, INT8_FILE, require_int8=True)
    rates = docs_per_second_alternately(
        {
            "pytorch": lambda batch: model.encode(batch, batch_size=batch_size, normalize_embeddings=True),
            "int8": lambda batch: int8.encode(batch, batch_size=batch_size),
        },
        texts,
        rounds,
    )
    return float(np.median(rates["int8"]) / np.median(rates["pytorch"]))


def variant_row(
    encoder: str,
    docs_per_s: float,
    stored: np.ndarray,
    per_query: np.ndarray,
    baseline: np.ndarray,
    timings_ms: Sequence[float],
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """One row of notebooks 09 and 10's tables: test NDCG@10 and the 95% paired-bootstrap interval of its difference
    from the baseline's per-query scores ([0, 0] for the baseline itself), the encoder's documents/s, single-query
    latency (p50, p95) and the stored vectors' size in MB."""
    from .intervals import bootstrap_ci

    same = np.array_equal(per_query, baseline)
    low, high = (0.0, 0.0) if same else bootstrap_ci(per_query - baseline, n_resamples=n_resamples, seed=seed)
    return {
        "encoder": encoder,
        "ndcg@10": per_query.mean(),
        "ci": [low, high],
        "relative_change": per_query.mean() / baseline.mean() - 1,
        "docs_per_s": docs_per_s,
        "p50_ms": float(np.percentile(timings_ms, 50)),
        "p95_ms": float(np.percentile(timings_ms, 95)),
        "index_mb": np.asarray(stored).nbytes / 1e6,
    }


def variant_table(rows: Mapping[str, Mapping[str, Any]]) -> Any:
    """`variant_row`s as a table that reads as its content in every view (`outputs.readable`)."""
    import pandas as pd

    from .outputs import interval_text, readable

    formats = {
        "ndcg@10": "{:.4f}",
        "ci": lambda ci: interval_text(ci, 4),
        "relative_change": "{:+.1%}",
        "docs_per_s": "{:.0f}",
    }
    formats |= {"p50_ms": "{:.1f}", "p95_ms": "{:.1f}", "index_mb": "{:.2f}"}
    return readable(pd.DataFrame(rows).T.style.format(formats))


def float_search(
    encoder: Callable[[list[str]], np.ndarray], docs: np.ndarray, dims: int | None = None
) -> Callable[[str], Any]:
    """A search for one query text over stored float vectors: encode it, keep its first `dims` numbers renormalised
    (None: all), multiply with the stored vectors in torch (one thread pool with the encoder) and keep the top 10."""
    stored = torch.from_numpy(np.ascontiguousarray(docs))

    def search(text: str) -> Any:
        query = encoder([text])[0]
        query = query[:dims] / np.linalg.norm(query[:dims]) if dims else query
        return torch.topk(stored @ torch.from_numpy(np.ascontiguousarray(query)), 10).indices

    return search


def load_encoder(
    name: str, served: Mapping[str, Any], baseline: Callable[[list[str]], np.ndarray], batch_size: int
) -> Callable:
    """Notebook 09's encoder `name` as a function of texts, from its record `served`: "pytorch fp32" is `baseline`,
    "static" its saved static model, "onnx fp32" and "onnx int8" its ONNX files (int8 checked to be integer)."""
    if name == "pytorch fp32":
        return baseline
    if name == "static":
        from sentence_transformers import SentenceTransformer

        if not (Path(served["static_dir"]) / "modules.json").exists():
            raise FileNotFoundError(
                f"{served['static_dir']}: notebook 09's static model is not there; run notebook 09 again"
            )
        static_model = SentenceTransformer(served["static_dir"], device="cpu")
        return lambda texts: static_model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    if name not in ("onnx fp32", "onnx int8"):
        raise ValueError(f"unknown encoder {name!r}: notebook 09's are pytorch fp32, onnx fp32, onnx int8 and static")
    int8 = name == "onnx int8"
    onnx_model = OnnxEncoder(served["onnx_dir"], INT8_FILE if int8 else ONNX_FILE, require_int8=int8)
    return lambda texts: onnx_model.encode(texts, batch_size=batch_size)

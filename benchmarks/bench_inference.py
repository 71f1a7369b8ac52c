"""Encoding throughput (documents/s) of one model per inference backend: PyTorch fp32 (`SentenceTransformer.encode`),
its ONNX export on onnxruntime in fp32, and the int8 copy (helpers/serving.py), with the worst cosine of each
backend's embedding to PyTorch's. The backends are timed alternately, round after round, so that a machine whose
speed drifts during the run shifts them all alike; the last line gives the int8/PyTorch ratio of the medians.

    python benchmarks/bench_inference.py [--model all-MiniLM-L6-v2] [--documents 2000] [--rounds 3] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from helpers import serving
from helpers.sources import build_dataset
from helpers.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default="all-MiniLM-L6-v2", help="a model id or folder (e.g. notebook 04's final model)"
    )
    parser.add_argument("--dataset", default="icd10cm")
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-dir", help="where to write the ONNX files (default: a temporary folder)")
    args = parser.parse_args()
    corpus = list(build_dataset(args.dataset).corpus.values())[: args.documents]
    model = load_model(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as scratch:
        folder = serving.export_onnx(model, Path(args.model_dir or scratch))
        serving.quantize_int8(folder)
        fp32, int8 = serving.OnnxEncoder(folder), serving.OnnxEncoder(folder, serving.INT8_FILE, require_int8=True)
        backends = {
            "pytorch fp32": lambda texts: model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True),
            "onnxruntime fp32": lambda texts: fp32.encode(texts, batch_size=args.batch_size),
            "onnxruntime int8": lambda texts: int8.encode(texts, batch_size=args.batch_size),
        }
        reference = backends["pytorch fp32"](corpus)
        print(
            f"model {args.model}; {len(corpus)} {args.dataset} documents, batch {args.batch_size}, {args.rounds} rounds"
        )
        for name, encode in backends.items():
            worst = float((np.asarray(encode(corpus)) * reference).sum(axis=1).min())
            print(f"  {name}: worst cosine to pytorch fp32 {worst:.4f}")
        rates = serving.docs_per_second_alternately(backends, corpus, args.rounds)
    for name, values in rates.items():
        print(f"{name}: {statistics.median(values):.0f} docs/s (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    ratio = statistics.median(rates["onnxruntime int8"]) / statistics.median(rates["pytorch fp32"])
    print(f"ratio int8/pytorch fp32 docs/s: {ratio:.2f}")


if __name__ == "__main__":
    main()

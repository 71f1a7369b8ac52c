"""Encoding throughput (documents/s) of a model on a real corpus, the figure reindexing costs scale with.

    python benchmarks/bench_encoding.py [--model all-MiniLM-L6-v2] [--documents 3000] [--batch-sizes 32 128]
        [--prepared runs/work/data/icd10cm] [--dtypes float32 float16] [--precisions fp32 bf16] [--rounds 3]
        [--out results.json]

Each batch size is timed in every precision (`--precisions`: fp32, and bf16 autocast as the workbook encodes on
a CPU that computes bf16 natively) in alternating rounds; the last line is `ratio_bf16 <bf16/fp32>`, the median
documents/s of bf16 over fp32's, with the smallest cosine between a text's two embeddings.

`--prepared` reads the corpus notebook 03 wrote instead of building the data set (a machine without the data
packages, such as a lent GPU, needs only that file); `--out` writes the figures as JSON (notebook 16 projects
reindexing times on a GPU from such a file).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from datetime import UTC, datetime

import torch

from helpers.data import load_beir
from helpers.sources import build_dataset
from helpers.models import choose_device, load_model, time_encoding_by_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--dataset", default="icd10cm")
    parser.add_argument("--prepared", help="a folder notebook 03 prepared: its corpus is encoded")
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", help="write the figures to this JSON file")
    args = parser.parse_args()
    data = load_beir(args.prepared, validate=False) if args.prepared else build_dataset(args.dataset)
    corpus = list(data.corpus.values())[: args.documents]
    device = choose_device(args.device)
    mean_chars = sum(map(len, corpus)) / len(corpus)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine()
    print(
        f"model {args.model} on {device} ({name}); {len(corpus)} {data.name} documents, {mean_chars:.0f} characters on average"
    )
    rows = []
    for dtype in args.dtypes:
        model = load_model(args.model, device=device, dtype=getattr(torch, dtype))
        model.encode(corpus[:256], batch_size=max(args.batch_sizes))  # warm-up
        precisions = args.precisions if dtype == "float32" else ["fp32"]  # autocast is for fp32 weights
        for batch_size in args.batch_sizes:
            # alternating rounds: a machine that slows down slows every precision alike
            rates, vectors = time_encoding_by_precision(model, corpus, precisions, args.rounds, batch_size)
            for precision in precisions:
                rate = statistics.median(rates[precision])
                rows.append(
                    {
                        "dtype": dtype,
                        "precision": precision,
                        "batch_size": batch_size,
                        "docs_per_s": rate,
                        "seconds": len(corpus) / rate,
                        "rounds": rates[precision],
                    }
                )
                print(f"{dtype}, {precision}, batch {batch_size}: {rate:.0f} docs/s (median of {args.rounds})")
            if {"fp32", "bf16"} <= set(precisions):
                cosine = torch.nn.functional.cosine_similarity(vectors["fp32"].float(), vectors["bf16"].float()).min()
                rows[-1]["ratio_bf16"] = statistics.median(rates["bf16"]) / statistics.median(rates["fp32"])
                rows[-1]["min_cosine_fp32_bf16"] = float(cosine)
                print(
                    f"batch {batch_size}: bf16/fp32 {rows[-1]['ratio_bf16']:.2f}, smallest cosine {float(cosine):.5f}"
                )
    ratios = [row["ratio_bf16"] for row in rows if "ratio_bf16" in row]
    if ratios:
        print(f"ratio_bf16 {statistics.median(ratios):.3f}")
    if args.out:
        record = {
            "model": args.model,
            "device": device,
            "device_name": name,
            "dataset": data.name,
            "documents": len(corpus),
            "mean_characters": mean_chars,
            "torch": torch.__version__,
            "measured_on": datetime.now(UTC).date().isoformat(),
            "runs": rows,
        }
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)


if __name__ == "__main__":
    main()

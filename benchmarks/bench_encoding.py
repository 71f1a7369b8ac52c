"""Encoding throughput (documents/s) of a model on a real corpus, the figure reindexing costs scale with.

    python benchmarks/bench_encoding.py [--model all-MiniLM-L6-v2] [--documents 3000] [--batch-sizes 32 128]
        [--prepared runs/work/data/icd10cm] [--dtypes float32 float16] [--out results.json]

`--prepared` reads the corpus notebook 03 wrote instead of building the data set (a machine without the data
packages, such as a lent GPU, needs only that file); `--out` writes the figures as JSON (notebook 11 projects
reindexing times on a GPU from such a file).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime

import torch

from helpers.data import build_dataset, load_beir
from helpers.models import choose_device, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--dataset", default="icd10cm")
    parser.add_argument("--prepared", help="a folder notebook 03 prepared: its corpus is encoded")
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", help="write the figures to this JSON file")
    args = parser.parse_args()
    data = load_beir(args.prepared, validate=False) if args.prepared else build_dataset(args.dataset)
    corpus = list(data.corpus.values())[: args.documents]
    device = choose_device(args.device)
    mean_chars = sum(map(len, corpus)) / len(corpus)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"model {args.model} on {device} ({name}); {len(corpus)} {data.name} documents, {mean_chars:.0f} characters on average")
    rows = []
    for dtype in args.dtypes:
        model = load_model(args.model, device=device, dtype=getattr(torch, dtype))
        model.encode(corpus[:256], batch_size=max(args.batch_sizes))  # warm-up
        for batch_size in args.batch_sizes:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            model.encode(corpus, batch_size=batch_size)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            rows.append({"dtype": dtype, "batch_size": batch_size, "docs_per_s": len(corpus) / seconds, "seconds": seconds})
            print(f"{dtype}, batch {batch_size}: {len(corpus) / seconds:.0f} docs/s ({seconds:.1f} s)")
    if args.out:
        record = {"model": args.model, "device": device, "device_name": name, "dataset": data.name,
                  "documents": len(corpus), "mean_characters": mean_chars, "torch": torch.__version__,
                  "measured_on": datetime.now(UTC).date().isoformat(), "runs": rows}
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)


if __name__ == "__main__":
    main()

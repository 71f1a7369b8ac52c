"""Encoding throughput (documents/s) of a model on a real corpus, the figure reindexing costs scale with.

    python benchmarks/bench_encoding.py [--model all-MiniLM-L6-v2] [--documents 3000] [--batch-sizes 32 128]
"""

from __future__ import annotations

import argparse
import time

from helpers.data import build_dataset
from helpers.models import choose_device, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--dataset", default="icd10cm")
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    corpus = list(build_dataset(args.dataset).corpus.values())[: args.documents]
    device = choose_device(args.device)
    model = load_model(args.model, device=device)
    model.encode(corpus[:64])  # warm-up
    mean_chars = sum(map(len, corpus)) / len(corpus)
    print(f"model {args.model} on {device}; {len(corpus)} {args.dataset} documents, {mean_chars:.0f} characters on average")
    for batch_size in args.batch_sizes:
        started = time.perf_counter()
        model.encode(corpus, batch_size=batch_size)
        seconds = time.perf_counter() - started
        print(f"batch {batch_size}: {len(corpus) / seconds:.0f} docs/s ({seconds:.1f} s)")


if __name__ == "__main__":
    main()

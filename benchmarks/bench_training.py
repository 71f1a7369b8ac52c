"""Training throughput of the workbook's helpers against a bare SentenceTransformerTrainer.

Both train the same model on the same examples with the same settings (MNRL, no-duplicates batches, fp32 on
CPU), alternating for several rounds so that drift of the machine hits both alike. Prints each round's
examples/s as the trainer measures it, the medians, and last a line `ratio <ours/bare>` (>= 0.95 means the
helpers add no overhead). The ratio compares like with like: ours with the same random no-duplicates batches
as the bare trainer (`group_by_length=False`). A third run per round, with the helpers' default
length-grouped batches, shows what less padding buys on the same data.

    python benchmarks/bench_training.py [--rounds 5] [--steps 20] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from helpers.data import build_dataset, pairs_to_dataset, subsample, training_pairs
from helpers.models import load_model
from helpers.training import recipe, train_with_recipe


def smoke_pairs():
    """(query, code description) pairs of ICD-10-CM's train split, at the smoke preset's sizes."""
    data = subsample(build_dataset("icd10cm"), corpus_size=1500, max_queries=300, seed=42)
    return pairs_to_dataset(training_pairs(data, use_curated_negatives=False))


def bare_run(dataset, batch_size: int, steps: int, output_dir: str) -> float:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    from helpers.models import packaged_default_model_path

    model = SentenceTransformer(str(packaged_default_model_path()), device="cpu")
    args = SentenceTransformerTrainingArguments(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=1e-4,
        warmup_steps=0.1, seed=42, batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no",
        report_to="none", use_cpu=True, logging_steps=1000, disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=losses.MultipleNegativesRankingLoss(model))
    return float(trainer.train().metrics["train_samples_per_second"])


def ours_run(dataset, batch_size: int, steps: int, output_dir: str, group_by_length: bool) -> float:
    settings = recipe(batch_size=batch_size, max_steps=steps, learning_rate=1e-4, group_by_length=group_by_length)
    return train_with_recipe(load_model(device="cpu"), dataset, output_dir, settings)["examples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        dataset = smoke_pairs()
        load_model()  # warm the file cache before timing
        ours, bare, grouped = [], [], []
        for round_number in range(1, args.rounds + 1):
            bare.append(bare_run(dataset, args.batch_size, args.steps, f"{work}/bare-{round_number}"))
            ours.append(ours_run(dataset, args.batch_size, args.steps, f"{work}/ours-{round_number}", False))
            grouped.append(ours_run(dataset, args.batch_size, args.steps, f"{work}/grouped-{round_number}", True))
            print(f"round {round_number}: bare {bare[-1]:.1f} examples/s, ours {ours[-1]:.1f} examples/s, "
                  f"ours length-grouped {grouped[-1]:.1f} examples/s", flush=True)
    print(f"median bare: {statistics.median(bare):.1f} examples/s")
    print(f"median ours length-grouped (the default): {statistics.median(grouped):.1f} examples/s, "
          f"{statistics.median(grouped) / statistics.median(bare):.2f}x bare")
    print(f"median ours: {statistics.median(ours):.1f} examples/s")
    print(f"ratio {statistics.median(ours) / statistics.median(bare):.3f}")


if __name__ == "__main__":
    main()

"""Training throughput of the workbook's helpers against a bare SentenceTransformerTrainer.

Both train the same model on the same examples with the same settings (MNRL, no-duplicates batches, fp32 on
CPU), alternating for several rounds so that drift of the machine hits both alike. Prints each round's
examples/s as the trainer measures it, the medians, and last a line `ratio <ours/bare>` (>= 0.95 means the
helpers add no overhead). The ratio compares like with like: ours with the same random no-duplicates batches
as the bare trainer (`group_by_length=False`). A third run per round, with the helpers' default
length-grouped batches, shows what less padding buys on the same data.

Then (`--compare precision`, or `both`, the default) the bare trainer in fp32 and with `bf16=True` on the CPU,
MNRL at batch 64 for 30 steps, alternating for `--precision-rounds` rounds; the last line is `ratio_bf16
<bf16/fp32>`, the median examples/s of bf16 over fp32's (about 1.8 on a CPU with AMX or AVX512-BF16, below 1 on
one that emulates bf16), beside the training loss each reached.

    python benchmarks/bench_training.py [--compare both|helpers|precision] [--rounds 5] [--steps 20] [--batch-size 32]
        [--precision-rounds 3] [--precision-steps 30] [--precision-batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from helpers.data import subsample
from helpers.sources import build_dataset
from helpers.training_sets import pairs_to_dataset, training_pairs
from helpers.models import load_model
from helpers.training import recipe, train_with_recipe


def smoke_pairs():
    """(query, code description) pairs of ICD-10-CM's train split, at the smoke preset's sizes."""
    data = subsample(build_dataset("icd10cm"), corpus_size=1500, max_queries=300, seed=42)
    return pairs_to_dataset(training_pairs(data, use_curated_negatives=False))


def bare_run(dataset, batch_size: int, steps: int, output_dir: str, bf16: bool = False) -> tuple[float, float]:
    """A bare SentenceTransformerTrainer run on the CPU: (examples/s, training loss)."""
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
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-4,
        warmup_steps=0.1,
        seed=42,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        logging_steps=1000,
        disable_tqdm=True,
        bf16=bf16,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=losses.MultipleNegativesRankingLoss(model)
    )
    metrics = trainer.train().metrics
    return float(metrics["train_samples_per_second"]), float(metrics["train_loss"])


def ours_run(dataset, batch_size: int, steps: int, output_dir: str, group_by_length: bool) -> float:
    settings = recipe(batch_size=batch_size, max_steps=steps, learning_rate=1e-4, group_by_length=group_by_length)
    return train_with_recipe(load_model(device="cpu"), dataset, output_dir, settings)["examples_per_second"]


def compare_helpers(dataset, rounds: int, steps: int, batch_size: int, work: str) -> None:
    ours, bare, grouped = [], [], []
    for round_number in range(1, rounds + 1):
        bare.append(bare_run(dataset, batch_size, steps, f"{work}/bare-{round_number}")[0])
        ours.append(ours_run(dataset, batch_size, steps, f"{work}/ours-{round_number}", False))
        grouped.append(ours_run(dataset, batch_size, steps, f"{work}/grouped-{round_number}", True))
        print(
            f"round {round_number}: bare {bare[-1]:.1f} examples/s, ours {ours[-1]:.1f} examples/s, "
            f"ours length-grouped {grouped[-1]:.1f} examples/s",
            flush=True,
        )
    print(f"median bare: {statistics.median(bare):.1f} examples/s")
    print(
        f"median ours length-grouped (the default): {statistics.median(grouped):.1f} examples/s, "
        f"{statistics.median(grouped) / statistics.median(bare):.2f}x bare"
    )
    print(f"median ours: {statistics.median(ours):.1f} examples/s")
    print(f"ratio {statistics.median(ours) / statistics.median(bare):.3f}")


def compare_precisions(dataset, rounds: int, steps: int, batch_size: int, work: str) -> None:
    from helpers.models import cpu_computes_bf16_natively

    print(
        f"fp32 against bf16 on the CPU (bf16 in hardware: {cpu_computes_bf16_natively()}), batch {batch_size}, "
        f"{steps} steps, {rounds} alternating rounds",
        flush=True,
    )
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    losses: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for round_number in range(1, rounds + 1):
        for precision in ("fp32", "bf16"):
            rate, loss = bare_run(dataset, batch_size, steps, f"{work}/{precision}-{round_number}", precision == "bf16")
            rates[precision].append(rate)
            losses[precision].append(loss)
        print(
            f"round {round_number}: fp32 {rates['fp32'][-1]:.1f} examples/s (loss {losses['fp32'][-1]:.4f}), "
            f"bf16 {rates['bf16'][-1]:.1f} examples/s (loss {losses['bf16'][-1]:.4f})",
            flush=True,
        )
    print(
        f"median fp32: {statistics.median(rates['fp32']):.1f} examples/s, bf16: {statistics.median(rates['bf16']):.1f}"
    )
    print(f"ratio_bf16 {statistics.median(rates['bf16']) / statistics.median(rates['fp32']):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=["both", "helpers", "precision"], default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision-rounds", type=int, default=3)
    parser.add_argument("--precision-steps", type=int, default=30)
    parser.add_argument("--precision-batch-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        dataset = smoke_pairs()
        load_model()  # warm the file cache before timing
        if args.compare in ("both", "helpers"):
            compare_helpers(dataset, args.rounds, args.steps, args.batch_size, work)
        if args.compare in ("both", "precision"):
            compare_precisions(dataset, args.precision_rounds, args.precision_steps, args.precision_batch_size, work)


if __name__ == "__main__":
    main()

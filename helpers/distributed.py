"""Notebook 04's recipe on several processes with PyTorch DDP, started by an existing launcher (notebook 15).

    python -m torch.distributed.run --nproc_per_node 2 -m helpers.distributed --data DIR --out DIR

(`torchrun` and `accelerate launch` are the same launcher.) Each process loads the model, takes its own share of
the batches, and DDP averages the gradients; on CPUs the processes talk over gloo, on GPUs over NCCL, and the code
is the same. Only rank 0 saves the model. `--gather` gathers the embeddings of all processes before MNRL, so that
each anchor is scored against every process's candidates, not only its own process's.

What the batch sampler promises holds per process: each process's batch never holds a text twice. Two processes'
batches of the same step are two different batches of the sampler, so one process's positive can be among another
process's candidates; with `--gather` it is then a false negative (`false_negative_steps` counts such steps).

`--check-gathered-loss FILE` does no training: each process takes its half of the anchors, positives and negatives
saved in FILE and computes sentence-transformers' MNRL with `gather_across_devices=True`; rank 0 writes every
process's loss to FILE.json (notebook 15 compares them with its own by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .training import RECIPE_KEYS, StopOnNonFiniteLoss, recipe

RUN_RECORD = "run.json"


def negatives_per_anchor(batch_size: int, processes: int, gather: bool, hard_negatives: bool) -> int:
    """How many candidates other than its positive each anchor is scored against in one MNRL step: the other rows'
    positives (and every row's hard negative, with triplets) of its own process's batch, or of every process's
    batch when the embeddings are gathered."""
    if batch_size < 1 or processes < 1:
        raise ValueError(f"batch_size ({batch_size}) and processes ({processes}) must be at least 1")
    rows = batch_size * (processes if gather else 1)
    return (rows - 1) + (rows if hard_negatives else 0)


def false_negative_steps(batches_per_process: Sequence[Sequence[Sequence[int]]], rows: Sequence[Sequence[str]]) -> int:
    """Steps in which a row's positive (column 1) is also a candidate (a positive or a negative, columns 1 and up)
    in another process's batch of the same step: gathered, that candidate is the anchor's right answer scored as a
    wrong one. `batches_per_process[p][s]` holds the row indices process p trained on at step s."""
    steps = 0
    for step_batches in zip(*batches_per_process):
        candidates = [{text for index in batch for text in rows[index][1:]} for batch in step_batches]
        steps += any(
            rows[index][1] in other
            for p, batch in enumerate(step_batches)
            for index in batch
            for q, other in enumerate(candidates)
            if q != p
        )
    return steps


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete `checkpoint-N` folder the trainer wrote (one with its trainer_state.json), or None."""
    found = [path for path in Path(folder).glob("checkpoint-*") if (path / "trainer_state.json").exists()]
    return max(found, key=lambda path: int(path.name.split("-")[1]), default=None)


def launch_command(processes: int, arguments: Sequence[str], python: str = sys.executable) -> list[str]:
    """The command that starts `processes` copies of this module on this machine with PyTorch's launcher
    (`torchrun`); on a cluster, each node runs it with `--nnodes` and a rendezvous address added."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "helpers.distributed",
        *arguments,
    ]


def read_run(out_dir: str | Path) -> dict[str, Any]:
    """The record rank 0 wrote at the end of a run (see `train`)."""
    path = Path(out_dir) / RUN_RECORD
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the run in {out_dir} did not finish (see its output)")
    return json.loads(path.read_text(encoding="utf-8"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.distributed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="a folder notebook 03 prepared (train_pairs/triplets.jsonl)")
    parser.add_argument("--out", help="where checkpoints, the final model (final/) and run.json go")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model to fine-tune: a Hugging Face id or a folder")
    parser.add_argument("--batch-size", type=int, help="rows per process per step (default: notebook 04's recipe)")
    parser.add_argument("--max-examples", type=int, help="train on a seeded sample of this many rows (default: all)")
    parser.add_argument("--epochs", type=float, help="passes over the training rows (default: the recipe's)")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--pairs", action="store_true", help="plain (anchor, positive) pairs instead of triplets")
    parser.add_argument("--gather", action="store_true", help="MNRL over the embeddings of every process")
    parser.add_argument("--save-steps", type=int, default=0, help="checkpoint every this many steps (0: none)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--check-gathered-loss",
        metavar="FILE",
        help="no training: the library's gathered MNRL on the embeddings in FILE (see above)",
    )
    return parser


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """Notebook 04's recipe with the changes given on the command line."""
    changes = {
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "hard_negatives": False if args.pairs else None,
    }
    # Batches of one fixed size: gathering needs every process's batch the same size, and the length-grouped
    # sampler makes a batch a row larger now and then.
    return recipe(**{key: value for key, value in changes.items() if value is not None}, group_by_length=False)


def train(args: argparse.Namespace) -> dict[str, Any] | None:
    """Run in every process that the launcher started; rank 0 returns (and writes) the run's record."""
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    from .training_sets import load_training_dataset
    from .models import choose_precision, load_model, precision_flags
    from .training import recipe_run_record
    from .storage import begin_output, publish_output

    processes = int(os.environ.get("WORLD_SIZE", "1"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = settings_from(args)
    out = Path(args.out)
    checkpoints = out / "checkpoints"
    resume_from = latest_checkpoint(checkpoints) if args.resume else None
    if args.resume and resume_from is None:
        raise FileNotFoundError(f"--resume: no complete checkpoint in {checkpoints}")
    model = load_model(args.model, device="cpu")  # the trainer moves it to this process's device
    dataset = load_training_dataset(args.data, settings["hard_negatives"], args.max_examples, args.seed)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=settings["epochs"],
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        warmup_steps=settings["warmup"],
        seed=args.seed,
        data_seed=args.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        dataloader_drop_last=True,
        eval_strategy="no",
        save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or 500,
        logging_steps=1,
        report_to="none",
        use_cpu=device == "cpu",
        ddp_backend="gloo" if device == "cpu" else None,
        disable_tqdm=True,
        **precision_flags(choose_precision(device)),
    )
    loss = MultipleNegativesRankingLoss(model, gather_across_devices=args.gather)
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=[StopOnNonFiniteLoss()]
    )
    dealt = trainer.get_train_dataloader().batch_sampler
    batches = list(
        getattr(dealt, "batch_sampler", dealt)
    )  # the sampler's own batches, before accelerate deals them out
    batches_per_process = [list(dealt)]  # what this process will train on, as accelerate deals it out
    if torch.distributed.is_initialized():
        batches_per_process = [None] * processes
        torch.distributed.all_gather_object(batches_per_process, list(dealt))
    if len(batches) < processes:
        raise ValueError(
            f"{len(dataset)} rows make {len(batches)} full batch(es) of {settings['batch_size']}: fewer than "
            f"the {processes} processes, so a process would have nothing to train on"
        )
    # Every process must take every step (DDP averages the gradients of all of them): stop before a last round
    # in which some processes would have no batch.
    trainer.args.max_steps = int(len(batches) // processes * settings["epochs"])
    text_rows = list(zip(*(dataset[name] for name in dataset.column_names)))
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():
        return None
    staging = begin_output(out / "final", f"helpers.distributed rank 0 of {processes}")
    model.save_pretrained(str(staging))
    record = {
        **recipe_run_record(args.model, "mnrl", settings, len(dataset), args.seed),
        "processes": processes,
        "gather_across_devices": args.gather,
    }
    (staging / "training.json").write_text(json.dumps(record, indent=2))
    publish_output(staging, record)
    run = {
        "processes": processes,
        "device": device,
        "precision": choose_precision(device),
        "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        "gather_across_devices": args.gather,
        "batch_per_process": settings["batch_size"],
        "effective_batch": settings["batch_size"] * processes,
        "negatives_per_anchor": negatives_per_anchor(
            settings["batch_size"], processes, args.gather, settings["hard_negatives"]
        ),
        "false_negative_steps": false_negative_steps(
            [b[: trainer.state.global_step] for b in batches_per_process], text_rows
        ),
        "batches_per_process": [b[: trainer.state.global_step] for b in batches_per_process],
        "steps": trainer.state.global_step,
        "resumed_from_step": int(resume_from.name.split("-")[1]) if resume_from else 0,
        "train_examples": len(dataset),
        "seconds": seconds,
        "examples_per_second": output.metrics["train_samples_per_second"],
        "loss_by_step": [[entry["step"], entry["loss"]] for entry in trainer.state.log_history if "loss" in entry],
        "recipe": {key: settings[key] for key in RECIPE_KEYS},
        "model_dir": str(out / "final"),
    }
    (out / RUN_RECORD).write_text(json.dumps(run, indent=2))
    return run


def check_gathered_loss(path: str | Path) -> list[float] | None:
    """Each process: its slice of the saved anchors, positives and negatives, and MNRL with gathering; rank 0
    writes and returns every process's loss."""
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    torch.distributed.init_process_group("gloo")
    rank, processes = torch.distributed.get_rank(), torch.distributed.get_world_size()
    saved = torch.load(path)
    rows = len(saved["anchors"]) // processes
    mine = [saved[name][rank * rows : (rank + 1) * rows] for name in ("anchors", "positives", "negatives")]
    loss = MultipleNegativesRankingLoss(None, scale=saved["scale"], gather_across_devices=True)
    with torch.no_grad():
        value = loss.compute_loss_from_embeddings(mine, None).item()
    losses = [None] * processes
    torch.distributed.all_gather_object(losses, value)
    if rank != 0:
        return None
    Path(f"{path}.json").write_text(json.dumps(losses))
    return losses


def main(argv: Sequence[str] | None = None) -> int:
    import torch.distributed

    args = build_parser().parse_args(argv)
    if args.check_gathered_loss:
        check_gathered_loss(args.check_gathered_loss)
    elif not (args.data and args.out):
        build_parser().error("--data and --out are required to train")
    else:
        train(args)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

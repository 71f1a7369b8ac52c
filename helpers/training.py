"""Contrastive fine-tuning with sentence-transformers' own trainer, with the seed text's mistakes fixed.

Fixed against the seed: the precision follows the device (no `fp16=True` on a CPU), evaluation runs only
when there is an evaluator to run, batches never hold the same text twice (the no-duplicates sampler: a
duplicate in an MNRL batch is a false negative, the loss pushes a text away from its own twin), warmup is a
fraction of the steps, and the seed is set.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .data import (
    RetrievalData,
    pairs_to_dataset,
    split_by_negative,
    subsample,
    training_pairs,
)
from .models import (
    DEFAULT_MODEL,
    choose_device,
    choose_precision,
    load_model,
    precision_flags,
)

LossName = Literal["mnrl", "cached_mnrl", "triplet"]
LOSSES: tuple[str, ...] = ("mnrl", "cached_mnrl", "triplet")


@dataclass
class TrainingConfig:
    """Every knob of one fine-tuning run (the notebook's parameters map onto these)."""

    output_dir: str
    model: str = DEFAULT_MODEL
    loss: LossName = "mnrl"
    epochs: float = 1.0
    batch_size: int = 64
    mini_batch_size: int = 32  # cached_mnrl only: the chunk that must fit in memory
    learning_rate: float = 2e-4
    warmup: float = 0.1  # fraction of the training steps
    seed: int = 42
    max_steps: int = -1  # > 0 stops early (smoke runs)
    eval_steps: int = 0  # 0: no evaluation during training
    save_steps: int = 0  # 0: one checkpoint per epoch
    checkpoints: bool = True  # False: keep no checkpoints (short runs that never resume)
    logging_steps: int = 10
    device: str | None = None
    precision: str | None = None
    resume: bool = False  # continue from the last checkpoint in output_dir/checkpoints


@dataclass
class TrainingResult:
    """What a run produced: where the model is, its loss/dev curves, and how long it took."""

    model_dir: str
    loss_history: list[dict[str, float]]  # {"step", "loss"}
    eval_history: list[dict[str, float]]  # {"step", "ndcg@10"}
    train_seconds: float
    steps: int
    examples_per_second: float
    device: str
    precision: str
    resumed_from: str | None
    model: Any = field(default=None, repr=False)  # the trained model, still in memory


def make_loss(name: str, model: Any, mini_batch_size: int = 32):
    """The loss object for a name: MNRL (in-batch negatives), its cached variant (large effective batches
    in small memory, via gradient caching), or the triplet loss (needs a negative column)."""
    from sentence_transformers.sentence_transformer import losses

    if name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model)
    if name == "cached_mnrl":
        return losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size)
    if name == "triplet":
        return losses.TripletLoss(model)
    raise ValueError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")


def dev_evaluator(data: RetrievalData, corpus_size: int | None, seed: int, split: str = "dev"):
    """An `InformationRetrievalEvaluator` on `split` over a corpus of `corpus_size` documents that always
    contains the relevant ones (a small corpus keeps evaluation during training cheap)."""
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    only_split = RetrievalData(data.name, data.corpus, data.queries, {split: data.qrels[split]}, {}, "")
    small = subsample(only_split, corpus_size, None, seed)
    return InformationRetrievalEvaluator(
        queries=small.split_queries(split),
        corpus=small.corpus,
        relevant_docs=small.relevant_docs(split),
        name=split,
        ndcg_at_k=[10],
        mrr_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[10],
        map_at_k=[10],
        batch_size=128,
        write_csv=False,
    )


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` folder under output_dir/checkpoints, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(output_dir) / "checkpoints"
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def training_arguments(config: TrainingConfig, device: str, precision: str, has_evaluator: bool):
    """`SentenceTransformerTrainingArguments` for a config (new-style names of sentence-transformers 6)."""
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    evaluating = has_evaluator and config.eval_steps > 0
    return SentenceTransformerTrainingArguments(
        output_dir=str(Path(config.output_dir) / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup,
        seed=config.seed,
        data_seed=config.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="steps" if evaluating else "no",
        eval_steps=config.eval_steps if evaluating else None,
        save_strategy="no" if not config.checkpoints else "steps" if config.save_steps > 0 else "epoch",
        save_steps=config.save_steps if config.save_steps > 0 else 500,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to="none",
        use_cpu=device == "cpu",
        **precision_flags(precision),  # type: ignore[arg-type]
    )


def finetune(
    config: TrainingConfig, train_dataset: Any, evaluator: Any = None, callbacks: list[Any] | None = None
) -> TrainingResult:
    """Fine-tune `config.model` on `train_dataset` (columns anchor, positive[, negative]) and save it with
    `save_pretrained` under output_dir/final. With `config.resume`, training continues from the last
    checkpoint instead of starting over. `callbacks` are passed to the trainer (transformers callbacks)."""
    import time

    from sentence_transformers.sentence_transformer.trainer import (
        SentenceTransformerTrainer,
    )

    if config.loss == "triplet" and "negative" not in train_dataset.column_names:
        raise ValueError("the triplet loss needs a 'negative' column: train on triplets or choose 'mnrl'")
    if len(train_dataset) < config.batch_size:
        raise ValueError(f"batch_size={config.batch_size} is larger than the {len(train_dataset)} training examples")
    device = choose_device(config.device)
    precision = choose_precision(device, config.precision)
    resume_from = last_checkpoint(config.output_dir) if config.resume else None
    model = load_model(config.model, device=device)
    args = training_arguments(config, device, precision, evaluator is not None)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=make_loss(config.loss, model, config.mini_batch_size),
        evaluator=evaluator if args.eval_strategy != "no" else None,
        callbacks=callbacks,
    )
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started
    final_dir = Path(config.output_dir) / "final"
    model.save_pretrained(str(final_dir))
    (final_dir / "training_config.json").write_text(json.dumps(asdict(config), indent=2), encoding="utf-8")
    history = trainer.state.log_history
    losses_seen = [{"step": row["step"], "loss": row["loss"]} for row in history if "loss" in row]
    evals = [
        {"step": row["step"], "ndcg@10": row[key]}
        for row in history
        for key in row
        if key.startswith("eval_") and key.endswith("ndcg@10")
    ]
    examples = output.metrics.get("train_samples_per_second", math.nan)
    return TrainingResult(
        model_dir=str(final_dir),
        loss_history=losses_seen,
        eval_history=evals,
        train_seconds=seconds,
        steps=trainer.state.global_step,
        examples_per_second=float(examples),
        device=device,
        precision=precision,
        resumed_from=resume_from,
        model=model,
    )


def finetuned_model_path(work_dir: str | Path, dataset_label: str) -> Path:
    """Where notebook 04 saves the fine-tuned model of a data set and notebook 05 looks for it."""
    return Path(work_dir) / "models" / dataset_label


def ensure_finetuned(prepared_dir: str | Path, work_dir: str | Path, smoke: bool, model: str = DEFAULT_MODEL, seed: int = 42) -> Path:
    """The folder of the model notebook 04 saves for a prepared data set; trained here with notebook 04's
    defaults (or its smoke settings) if 04 has not run yet, so that every notebook also runs on its own."""
    from .data import load_training_dataset

    model_dir = finetuned_model_path(work_dir, Path(prepared_dir).name)
    final = model_dir / "final"
    if (final / "config.json").exists():
        return final
    print(f"No fine-tuned model in {final}: training one with notebook 04's default settings.")
    config = TrainingConfig(output_dir=str(model_dir), model=model, seed=seed)
    if smoke:
        config.batch_size, config.max_steps = 16, 6
    dataset = load_training_dataset(prepared_dir, True, 48 if smoke else None, seed)
    return Path(finetune(config, dataset).model_dir)


@dataclass
class GainMeasurement:
    """Off-the-shelf vs fine-tuned NDCG@10 of one short training run."""

    base_ndcg: float
    finetuned_ndcg: float
    training_pairs: int
    steps: int
    train_seconds: float
    model_dir: str  # where the fine-tuned model was saved

    @property
    def relative_gain(self) -> float:
        return self.finetuned_ndcg / self.base_ndcg - 1


def measure_finetuning_gain(
    data: RetrievalData,
    config: TrainingConfig,
    max_pairs: int | None = None,
    use_curated_negatives: bool = False,
    split: str = "test",
    base_ndcg: float | None = None,
) -> GainMeasurement:
    """Evaluate `config.model` on `split`, fine-tune it on (at most `max_pairs`) training pairs, evaluate again.

    The compact end-to-end run behind notebook 01's measured rows and notebook 06's learning curve. With
    `use_curated_negatives`, only the pairs that have a curated negative are used (as triplets). Pass
    `base_ndcg` when the off-the-shelf score of the same model and data is already known.
    """
    import random

    from .evaluation import ndcg_at_10

    pairs = training_pairs(data, use_curated_negatives)
    if use_curated_negatives:
        pairs = split_by_negative(pairs)[1]
    if max_pairs is not None and max_pairs < len(pairs):
        pairs = random.Random(config.seed).sample(pairs, max_pairs)
    if base_ndcg is None:
        base_ndcg = ndcg_at_10(load_model(config.model, device=config.device), data, split)
    result = finetune(config, pairs_to_dataset(pairs))
    return GainMeasurement(
        base_ndcg=base_ndcg, finetuned_ndcg=ndcg_at_10(result.model, data, split), training_pairs=len(pairs),
        steps=result.steps, train_seconds=result.train_seconds, model_dir=result.model_dir,
    )

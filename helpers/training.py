"""Contrastive fine-tuning with sentence-transformers' own trainer, with the seed text's mistakes fixed.

Fixed against the seed: the precision follows the device (no `fp16=True` on a CPU), evaluation runs only
when there is an evaluator to run, batches never hold the same text twice (the no-duplicates sampler: a
duplicate in an MNRL batch is a false negative, the loss pushes a text away from its own twin), warmup is a
fraction of the steps, and the seed is set.

One addition of ours: batches of texts of similar length (`LengthGroupedNoDuplicatesBatchSampler`). A batch is
padded to its longest text, every padding token costs as much compute as a real one, and in random batches of
short, uneven texts most tokens are padding (notebook 04 measures the share on its data).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sentence_transformers import DefaultBatchSampler

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
    epochs: float = 1.5
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
    group_by_length: bool = True  # batches of similar text length (less padding); False: random batches


@dataclass
class TrainingResult:
    """What a run produced: where the model is, its loss/dev curves, and how long it took."""

    model_dir: str
    loss_history: list[dict[str, float]]  # {"step", "loss"}
    eval_history: list[dict[str, float]]  # {"step", "ndcg@10"}, the final model's last
    train_seconds: float
    steps: int
    examples_per_second: float
    device: str
    precision: str
    resumed_from: str | None
    model: Any = field(default=None, repr=False)  # the trained model, still in memory


class LengthGroupedNoDuplicatesBatchSampler(DefaultBatchSampler):
    """Batches that never hold the same text twice (as sentence-transformers' `NO_DUPLICATES`) and hold
    texts of similar length, so that little of each batch is padding.

    Each epoch shuffles the rows (seed + epoch), cuts the shuffled order into groups of
    `batches_per_group` batches, sorts each group by the length of its row's longest text (in tokens when
    `count_tokens` is given, else in characters), fills batches in
    that order (a row that repeats a text already in the batch waits for the next batch), and shuffles the
    order of the batches, so that training does not see short texts first. The batches are random draws of
    rows of similar length; the length itself never decides which batch comes when.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        count_tokens: Callable[[list[str]], list[int]] | None = None,
        batches_per_group: int = 32,
    ) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        text_columns = [name for name in dataset.column_names if name not in (valid_label_columns or [])]
        self.rows = [tuple(values) for values in zip(*(dataset[name] for name in text_columns))]
        self.batches_per_group = batches_per_group
        count = count_tokens or (lambda texts: [len(text) for text in texts])
        per_column = [count([str(value) for value in dataset[name]]) for name in text_columns]
        self.lengths = np.max(np.array(per_column), axis=0)
        self._cached_epoch: int | None = None
        self._cached_batches: list[list[int]] = []

    def _batches_without_duplicates(self, order: np.ndarray) -> list[list[int]]:
        batches: list[list[int]] = []
        texts: list[set[str]] = []
        pending = [int(index) for index in order]
        while pending:
            batch: list[int] = []
            seen: set[str] = set()
            deferred: list[int] = []
            position = 0
            while position < len(pending) and len(batch) < self.batch_size:
                index = pending[position]
                if seen.isdisjoint(map(str, self.rows[index])):
                    batch.append(index)
                    seen.update(map(str, self.rows[index]))
                else:
                    deferred.append(index)
                position += 1
            pending = deferred + pending[position:]
            if len(batch) < self.batch_size and batches and len(batches[-1]) < self.batch_size:
                # Rows left over at the end repeat a text of the last batch: each joins the smallest batch
                # without its texts (a batch or two ends up a row over the size) rather than a tiny batch.
                for index in batch:
                    values = set(map(str, self.rows[index]))
                    free = [b for b, held in enumerate(texts) if held.isdisjoint(values)]
                    home = min(free, key=lambda b: len(batches[b])) if free else None
                    if home is None:
                        batches.append([index])
                        texts.append(values)
                    else:
                        batches[home].append(index)
                        texts[home] |= values
                continue
            batches.append(batch)
            texts.append(seen)
        if self.drop_last:
            return [batch for batch in batches if len(batch) >= self.batch_size]
        return batches

    def _epoch_batches(self) -> list[list[int]]:
        if self._cached_epoch != self.epoch:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.rows), generator=generator).numpy()
            group = self.batch_size * self.batches_per_group
            groups = [order[start : start + group] for start in range(0, len(order), group)]
            by_length = np.concatenate([chunk[np.argsort(self.lengths[chunk], kind="stable")] for chunk in groups])
            batches = self._batches_without_duplicates(by_length)
            shuffled = torch.randperm(len(batches), generator=generator)
            self._cached_batches = [batches[position] for position in shuffled]
            self._cached_epoch = self.epoch
        return self._cached_batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._epoch_batches()

    def __len__(self) -> int:
        """The exact number of batches of the current epoch: rows that repeat a text of every batch with room
        left end up in small extra batches at the end of the pass, so it can exceed len(dataset) / batch_size."""
        return len(self._epoch_batches())


@dataclass
class LengthGroupedBatches:
    """The trainer's `batch_sampler` argument for `LengthGroupedNoDuplicatesBatchSampler`, with lengths
    counted by the model's own tokenizer (the trainer calls it with the data set and its batch settings)."""

    tokenizer: Any = field(repr=False)
    batches_per_group: int = 32

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts)["input_ids"]]

    def __call__(self, dataset: Any, **batch_settings: Any) -> LengthGroupedNoDuplicatesBatchSampler:
        return LengthGroupedNoDuplicatesBatchSampler(
            dataset,
            count_tokens=self.count_tokens if self.tokenizer is not None else None,
            batches_per_group=self.batches_per_group,
            **batch_settings,
        )


def padding_share(dataset: Any, tokenizer: Any, group_by_length: bool, batch_size: int, seed: int = 42) -> float:
    """The share of the tokens of one epoch that are padding, when every column of a batch is padded to its
    longest text: with sentence-transformers' random no-duplicates batches, or with length-grouped ones."""
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    settings = {"batch_size": batch_size, "drop_last": False, "generator": torch.Generator(), "seed": seed}
    if group_by_length:
        sampler = LengthGroupedBatches(tokenizer)(dataset, **settings)
    else:
        sampler = NoDuplicatesBatchSampler(dataset, **settings)
    tokens = {
        name: np.array([len(ids) for ids in tokenizer(list(dataset[name]))["input_ids"]])
        for name in dataset.column_names
    }
    real = padded = 0
    for batch in sampler:
        for lengths in tokens.values():
            real += int(lengths[batch].sum())
            padded += int(lengths[batch].max()) * len(batch)
    return 1 - real / padded


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


def training_arguments(
    config: TrainingConfig, device: str, precision: str, has_evaluator: bool, tokenizer: Any = None
):
    """`SentenceTransformerTrainingArguments` for a config (new-style names of sentence-transformers 6).
    With `config.group_by_length`, batches group texts of similar length, counted with `tokenizer` (the
    model's; characters without one)."""
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
        batch_sampler=LengthGroupedBatches(tokenizer) if config.group_by_length else BatchSamplers.NO_DUPLICATES,
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
    args = training_arguments(config, device, precision, evaluator is not None, model.tokenizer)
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
    if args.eval_strategy != "no" and (not evals or evals[-1]["step"] != trainer.state.global_step):
        final_scores = evaluator(model)  # the last step is rarely a multiple of eval_steps: score the final model
        final_ndcg = next(value for key, value in final_scores.items() if key.endswith("ndcg@10"))
        evals.append({"step": trainer.state.global_step, "ndcg@10": final_ndcg})
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

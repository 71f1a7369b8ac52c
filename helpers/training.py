"""Components for contrastive fine-tuning with sentence-transformers' own trainer.

Notebook 04 builds the training arguments, the loss and the trainer of its main run in its own cells: that is the
lesson. Here: the batch sampler it uses (no text twice in a batch, texts of similar length), its dev evaluator, the
short comparison runs of notebook 14 (`train_copy`), and its recipe (the defaults of its parameters cell) applied
for notebooks 01, 07 and 14, which use fine-tuning rather than teach it, and the record that lets notebook 07 reuse a
run it already trained with that recipe.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import DefaultBatchSampler
from transformers import TrainerCallback

from .data import RetrievalData, subsample
from .models import choose_precision, precision_flags
from .parameters import check_values, declared_parameters
from .progress import quiet_trainer
from .paths import NOTEBOOK_DIR
from .storage import MANIFEST, incomplete, write_manifest

RECIPE_NOTEBOOK = NOTEBOOK_DIR / "04_training.ipynb"
RECIPE_KEYS = ("hard_negatives", "group_by_length", "epochs", "batch_size", "learning_rate", "warmup", "max_steps")
# the training arguments the recipe sets (notebook 04 shows that the ones it builds by hand equal `recipe_arguments`)
RECIPE_ARGUMENTS = (
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "learning_rate",
    "warmup_steps",
    "seed",
    "data_seed",
    "bf16",
    "fp16",
    "use_cpu",
)


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
        return [len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]]

    def __call__(self, dataset: Any, **batch_settings: Any) -> LengthGroupedNoDuplicatesBatchSampler:
        count_tokens = self.count_tokens if self.tokenizer is not None else None
        return LengthGroupedNoDuplicatesBatchSampler(
            dataset, count_tokens=count_tokens, batches_per_group=self.batches_per_group, **batch_settings
        )


def dev_evaluator(
    data: RetrievalData, corpus_size: int | None, seed: int, split: str = "dev", parameter: str = "dev_corpus_size"
):
    """An `InformationRetrievalEvaluator` on `split` over a corpus of `corpus_size` documents that always
    contains the relevant ones (a small corpus keeps evaluation during training cheap). `parameter` is the
    calling notebook's name for `corpus_size`, named if it is too small for the split's relevant documents."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    only = RetrievalData(data.name, data.corpus, data.queries, {split: data.qrels[split]})
    small = subsample(only, corpus_size, None, seed, names=(parameter, None))
    return InformationRetrievalEvaluator(
        queries=small.split_queries(split),
        corpus=small.corpus,
        name=split,
        relevant_docs=small.relevant_docs(split),
        ndcg_at_k=[10],
        mrr_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[10],
        map_at_k=[10],
        batch_size=128,
        write_csv=False,
    )


class StopOnNonFiniteLoss(TrainerCallback):
    """Stops training when the logged loss is NaN or infinite, naming the step and the likely causes, instead of
    letting the trainer save a model whose weights are NaN."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"the training loss became {loss} by step {state.global_step}: the learning rate "
                f"({args.learning_rate:g}) is likely too high, or fp16 overflowed (try bf16 or fp32); "
                "nothing was saved as the fine-tuned model"
            )


def recipe(**changes: Any) -> dict[str, Any]:
    """Notebook 04's training recipe (the defaults of its parameters cell), with `changes` applied: notebooks 01,
    07 and 14 train with it, so that a change to the recipe notebook 04 teaches reaches them."""
    declared = declared_parameters(RECIPE_NOTEBOOK)
    settings = {key: declared[key].default for key in RECIPE_KEYS}
    if unknown := sorted(set(changes) - set(RECIPE_KEYS)):
        raise ValueError(f"unknown recipe setting(s) {unknown}: the recipe has {', '.join(RECIPE_KEYS)}")
    return {**settings, **check_values(RECIPE_NOTEBOOK.stem, changes, declared)}


def recipe_arguments(
    output_dir: str | Path, settings: dict[str, Any], device: str, tokenizer: Any = None, seed: int = 42
):
    """`SentenceTransformerTrainingArguments` for a recipe, as notebook 04 builds them (no checkpoints, no
    evaluation during training: the short runs of notebooks 01, 07 and 14 are scored afterwards)."""
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    sampler = LengthGroupedBatches(tokenizer) if settings["group_by_length"] else BatchSamplers.NO_DUPLICATES
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=settings["epochs"],
        max_steps=settings["max_steps"],
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        warmup_steps=settings["warmup"],
        seed=seed,
        data_seed=seed,
        batch_sampler=sampler,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=10,
        report_to="none",
        use_cpu=device == "cpu",
        **precision_flags(choose_precision(device)),
    )


def train_with_recipe(
    model: Any, train_dataset: Any, output_dir: str | Path, settings: dict[str, Any], seed: int = 42
) -> dict:
    """Fine-tune `model` in place on `train_dataset` with MNRL and a recipe; return steps and seconds."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer

    if len(train_dataset) < 2:
        raise ValueError(f"{len(train_dataset)} training example(s): MNRL needs at least two to have a negative")
    args = recipe_arguments(output_dir, settings, model.device.type, model.tokenizer, seed)
    loss = MultipleNegativesRankingLoss(model)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, loss=loss, callbacks=[StopOnNonFiniteLoss()]
    )
    quiet_trainer(
        trainer, live_table=False
    )  # a brief run prints its own line: no table, live or executed, the same in both
    started = time.perf_counter()
    output = trainer.train()
    return {
        "steps": trainer.state.global_step,
        "seconds": time.perf_counter() - started,
        "examples_per_second": output.metrics["train_samples_per_second"],
    }


def train_copy(
    model_name: str,
    args: Any,
    train_dataset: Any,
    make_loss: Callable[[Any], Any],
    output_dir: str | Path,
    device: str | None = None,
    precision: str | None = None,
    **changes: Any,
) -> tuple[Any, Any, dict[str, float]]:
    """Train a fresh copy of `model_name` on all of `train_dataset` for notebook 14's short comparison runs: `args`
    (the recipe's arguments, `recipe_arguments`) changed by `changes`, with no evaluation, checkpoint, progress bar or logged loss
    after the first step. `make_loss(model)` builds the loss. `precision` (bf16, fp16, fp32) sets the copy's encoding
    precision and the trainer's mixed-precision flags; None keeps `args`' flags and encodes in `choose_precision`'s
    choice. Returns the trained model, its trainer and the trainer's metrics."""
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer

    from .models import load_model

    network = load_model(model_name, device=device, precision=precision)
    flags = precision_flags(precision) if precision is not None else {}
    quiet = {"max_steps": -1, "eval_strategy": "no", "save_strategy": "no", "logging_steps": 1000, "disable_tqdm": True}
    copy_args = replace(args, output_dir=str(output_dir), **{**quiet, **flags, **changes})
    trainer = quiet_trainer(SentenceTransformerTrainer(network, copy_args, train_dataset, loss=make_loss(network)))
    return network, trainer, trainer.train().metrics


def recipe_runs_dir(work_dir: str | Path, dataset: str) -> Path:
    """Where models trained with the recipe on the first examples of a training set are kept for reuse."""
    return Path(work_dir) / "models" / dataset / "recipe-runs"


def recipe_run_record(
    started_from: str, loss: str, settings: dict[str, Any], train_examples: int, seed: int
) -> dict[str, Any]:
    """The `training.json` written beside a model trained with the recipe: the model it started from, its loss, the
    recipe, the number of examples (the first of the training set's shuffle by `seed`) and the seed."""
    return {
        "started_from": str(started_from),
        "loss": loss,
        "recipe": {key: settings[key] for key in RECIPE_KEYS},
        "train_examples": train_examples,
        "seed": seed,
    }


def read_recipe_record(model_folder: str | Path) -> dict[str, Any] | None:
    """The `recipe_run_record` saved beside a model (`training.json`: notebook 04 and `save_recipe_run` write one),
    or None for a model that has none (one trained elsewhere, or a Hugging Face id)."""
    record_file = Path(model_folder) / "training.json"
    return json.loads(record_file.read_text()) if record_file.is_file() else None


def save_recipe_run(model: Any, folder: str | Path, record: dict[str, Any]) -> None:
    """Save `model` with its `recipe_run_record` and a manifest of every file (written last: a save cut short, or
    a file damaged since, is never reused)."""
    folder = Path(folder)
    (folder / MANIFEST).unlink(missing_ok=True)
    (folder / "training.json").unlink(missing_ok=True)
    model.save_pretrained(str(folder))
    (folder / "training.json").write_text(json.dumps(record, indent=2))
    write_manifest(folder, record)


def load_recipe_run(
    folder: str | Path,
    started_from: str,
    settings: dict[str, Any],
    train_examples: int,
    seed: int,
    device: str | None = None,
) -> Any | None:
    """The model `save_recipe_run` left in `folder` if it is what `train_with_recipe` would train here: from the
    same model, with MNRL, exactly this recipe, number of examples and seed; None if there is none or it was
    trained otherwise (the caller then trains one)."""
    from .models import load_model

    record_file = Path(folder) / "training.json"
    if not record_file.exists():
        return None
    if problem := incomplete(folder):
        print(f"the saved run {folder} {problem}: training it again", flush=True)
        return None
    if json.loads(record_file.read_text()) != recipe_run_record(started_from, "mnrl", settings, train_examples, seed):
        return None
    return load_model(str(folder), device=device)

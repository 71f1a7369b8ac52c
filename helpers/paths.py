"""Where things are: the project's folders, and the folders inside a run's `work_dir` that notebooks share.

The bottom layer of `helpers` (with `storage`): it imports nothing from the package.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
RUNS_DIR = PROJECT_ROOT / "runs"
PRESETS_DIR = PROJECT_ROOT / "presets"
SHIPPED_DATASETS = ("icd10cm", "hpo", "zaragoza")
PRESET_ENVIRONMENT = "WORKBOOK_PRESET"  # set by `workbook run --smoke`; the notebooks' kernels inherit it
PRECISION_ENVIRONMENT = "WORKBOOK_PRECISION"  # fp32 or bf16: overrides the automatic choice (the smoke run pins fp32)


def notebook_dirs(notebook: str, output_dir: str, work_dir: str) -> tuple[Path, Path]:
    """The `output_dir` (what one notebook produced: metrics.json, figures) and the `work_dir` (shared by the
    notebooks of a run, so that notebook 04 finds what 03 prepared); empty parameters get defaults under runs/."""
    output = Path(output_dir) if output_dir else RUNS_DIR / "notebooks" / notebook
    work = Path(work_dir) if work_dir else RUNS_DIR / "work"
    output.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return output, work


def dataset_label(dataset: str) -> str:
    """A folder name for a data set: the shipped name, or the stem of the user's file or folder."""
    return dataset if dataset in SHIPPED_DATASETS else Path(dataset).stem


def prepared_dir(work_dir: str | Path, dataset: str) -> Path:
    """Where notebook 03 saves a prepared data set (BEIR layout plus training pairs and triplets)."""
    return Path(work_dir) / "data" / dataset_label(dataset)


def finetuned_dir(work_dir: str | Path, dataset: str) -> Path:
    """Where notebook 04 saves its fine-tuned model (`final/`) and checkpoints (`checkpoints/`)."""
    return Path(work_dir) / "models" / dataset_label(dataset)


def rankings_dir(work_dir: str | Path, dataset: str) -> Path:
    """Where notebook 05 leaves its test rankings (TREC) for notebooks 06 and 07."""
    return Path(work_dir) / "rankings" / dataset_label(dataset)


def embeddings_dir(work_dir: str | Path) -> Path:
    """Where corpus embeddings are cached by model fingerprint and content (see `evaluation.encode`)."""
    return Path(work_dir) / "embeddings"


def merge_sweep_file(work_dir: str | Path, dataset: str) -> Path:
    """Notebook 11's item scores of its merges (and what produced them), which notebook 12 reads."""
    return Path(work_dir) / "merging" / dataset_label(dataset) / "item_scores.json"


def serving_encoders_file(work_dir: str | Path, dataset: str) -> Path:
    """Notebook 09's encoders (the one its intervals chose, their rates, where its ONNX and static models are), which
    notebook 10 deploys with the index it chooses."""
    return Path(work_dir) / "serving" / dataset_label(dataset) / "encoders.json"

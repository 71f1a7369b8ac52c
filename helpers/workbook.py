"""Running the workbook: where every notebook writes, its parameters and presets, and papermill runs.

Each notebook declares its knobs in a cell tagged `parameters` and writes `metrics.json` into its
`output_dir`; the notebooks of one run share a `work_dir` (prepared data, fine-tuned models, rankings,
cached embeddings). This module is the one place that names those folders. The `workbook` command
(helpers/cli.py) runs notebooks in order and gathers their metrics.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .parameters import check_values, declared_parameters
from .progress import batch_run

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
RUNS_DIR = PROJECT_ROOT / "runs"
PRESETS_DIR = PROJECT_ROOT / "benchmarks" / "presets"
SHIPPED_DATASETS = ("icd10cm", "hpo", "zaragoza")
SMOKE_CELL_TIMEOUT = 600  # seconds; no smoke cell comes near it, so a hung kernel fails the run instead of CI


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


PRESET_ENVIRONMENT = "WORKBOOK_PRESET"  # set by `workbook run --smoke`; the notebooks' kernels inherit it
PRECISION_ENVIRONMENT = "WORKBOOK_PRECISION"  # fp32 or bf16: overrides the automatic choice (the smoke run pins fp32)


def ensure_prepared(dataset: str, work_dir: str | Path, model: str = "all-MiniLM-L6-v2", caller: str = "",
                    caller_settings: Mapping[str, Any] | None = None) -> Path:
    """The prepared folder of a data set; if notebook 03 has not written it completely into this `work_dir`,
    notebook 03 runs now, at the scale the calling notebook runs at (see `prerequisite_parameters`), so that
    every later notebook also runs on its own."""
    folder = prepared_dir(work_dir, dataset)
    if problem := incomplete(folder):
        parameters, scale = prerequisite_parameters("03_data_preparation", caller, caller_settings)
        _run_prerequisite("03_data_preparation", work_dir, {**parameters, "dataset": dataset, "model": model},
                          folder, problem, scale)
    return folder


def ensure_finetuned(dataset: str, work_dir: str | Path, model: str = "all-MiniLM-L6-v2", caller: str = "",
                     caller_settings: Mapping[str, Any] | None = None) -> Path:
    """The folder of the model notebook 04 fine-tuned on a data set; if it is not completely in this
    `work_dir`, notebook 04 runs now (without its batch-size sweep), at the calling notebook's scale."""
    final = finetuned_dir(work_dir, dataset) / "final"
    if problem := incomplete(final):
        parameters, scale = prerequisite_parameters("04_training", caller, caller_settings)
        _run_prerequisite("04_training", work_dir, {**parameters, "dataset": dataset, "model": model,
                                                    "sweep_batch_sizes": []}, final, problem, scale)
    return final


def finetuned_with_seed(dataset: str, work_dir: str | Path, seed: int, model: str = "all-MiniLM-L6-v2", caller: str = "",
                        caller_settings: Mapping[str, Any] | None = None) -> Path:
    """The folder of notebook 04's model trained with training seed `seed` instead of its own, for notebooks that
    compare fine-tunes across seeds. It is trained (notebook 04 without its sweep, at the calling notebook's scale)
    into `work_dir`/seeds/seed-`seed` when not completely there; that folder links to `work_dir`'s prepared data and
    embedding cache, so notebook 03 does not run again and nothing is encoded twice."""
    seed_dir = Path(work_dir).resolve() / "seeds" / f"seed-{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    for shared in ("data", "embeddings"):
        target, link = Path(work_dir).resolve() / shared, seed_dir / shared
        target.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and not link.exists():  # work_dir was moved since: the old link points nowhere
            link.unlink()
        if not link.exists():
            link.symlink_to(os.path.relpath(target, seed_dir), target_is_directory=True)
    final = finetuned_dir(seed_dir, dataset) / "final"
    if problem := incomplete(final):
        parameters, scale = prerequisite_parameters("04_training", caller, caller_settings)
        _run_prerequisite("04_training", seed_dir, {**parameters, "dataset": dataset, "model": model,
                                                    "sweep_batch_sizes": [], "seed": seed}, final, problem, scale)
    return final


def declared_defaults(stem: str) -> dict[str, Any]:
    """A notebook's parameters at their declared defaults (what it runs with when given nothing)."""
    return {name: declared.default for name, declared in declared_parameters(NOTEBOOK_DIR / f"{stem}.ipynb").items()}


def preset_in_use(caller: str = "", caller_settings: Mapping[str, Any] | None = None) -> str | None:
    """The preset a notebook runs with: the one `workbook run` names in the environment, else the preset whose
    section for the `caller` notebook its settings all match (the smoke preset's values given by hand through
    papermill, say), else None (the notebook runs at its defaults or at values of the user's own)."""
    if name := os.environ.get(PRESET_ENVIRONMENT):
        return name
    if not caller or not caller_settings:
        return None
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        section = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(caller)
        if isinstance(section, Mapping) and section and all(
                name in caller_settings and caller_settings[name] == value for name, value in section.items()):
            return path.stem
    return None


def prerequisite_parameters(stem: str, caller: str = "",
                            caller_settings: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """The parameters a missing prerequisite notebook `stem` runs with when `caller` needs it, and their
    description: the section for `stem` of the preset the caller runs with (a small run stays small), else
    the prerequisite's defaults."""
    preset = preset_in_use(caller, caller_settings)
    if preset is None:
        return {}, "its defaults"
    section = load_preset(preset).get(stem) or {}
    return dict(section), f"the {preset} preset's values, as {caller or 'this run'} runs with that preset"


def _run_prerequisite(stem: str, work_dir: str | Path, parameters: dict[str, Any], missing: Path, problem: str,
                      scale: str = "its defaults") -> None:
    path = NOTEBOOK_DIR / f"{stem}.ipynb"
    out_dir = Path(work_dir).resolve() / "prerequisites"
    print(f"{missing}: {problem}; running notebook {stem} with {scale}, into {out_dir / stem}", flush=True)
    plan = parameters_per_notebook([path], {}, {stem: parameters})[path]
    result = run_notebook(path, out_dir, plan, Path(work_dir).resolve())
    if result.status != "ok":
        raise RuntimeError(f"notebook {stem}, run to prepare {missing}, failed: {result.error} "
                           f"(executed copy: {result.executed})")


def _plain(value: Any) -> Any:
    """JSON-safe copy of metrics: numpy scalars become floats, NaN becomes None."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_metrics(output_dir: str | Path, metrics: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    """Write `metrics.json` (the figures a notebook computed, under "parameters" the settings it ran with, and
    under "numeric_precision" the precision models encode in on this machine) into `output_dir` in one step, and
    return its path."""
    from .models import choose_device, choose_precision

    numeric = {"numeric_precision": choose_precision(choose_device())}  # what load_model encodes in, here
    return write_atomically(Path(output_dir) / "metrics.json",
                            json.dumps(_plain({**numeric, **metrics, "parameters": settings}), indent=2, sort_keys=True))


def write_atomically(path: Path, text: str) -> Path:
    """Write a text file so that a reader sees the old file or the whole new one, never a part: a temporary
    file beside it, moved into place (a rename is atomic on one file system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


# Folders that later steps read (prepared data, a fine-tuned model) are written in a staging folder beside
# their place, under a lock that a second run writing the same folder cannot take, and moved into place with a
# manifest (every file's size and SHA-256, and what made it) written last. A reader trusts a folder only if its
# manifest is there and every file matches it.
MANIFEST = "manifest.json"
_held_locks: dict[Path, Any] = {}


def begin_output(final: str | Path, writer: str) -> Path:
    """An empty staging folder for `final`, locked for this process until `publish_output`; if another run is
    writing `final`, a RuntimeError names it (its process, host and notebook) at once instead of waiting."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.with_name(f"{final.name}.lock")
    handle = lock_path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RuntimeError(f"{final} is being written by another run ({holder}); wait for it to finish, "
                           "or give this run its own work_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}, {writer}, since {time.strftime('%H:%M:%S')}")
    handle.flush()
    _held_locks[final.resolve()] = handle
    staging = final.with_name(f"{final.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
    staging.mkdir()
    return staging


def publish_output(staging: str | Path, about: Mapping[str, Any]) -> Path:
    """Write the manifest into the staging folder from `begin_output`, move it into place (replacing an older
    version) and release the lock; returns the final folder."""
    staging = Path(staging)
    final = staging.with_name(staging.name.removesuffix(".partial"))
    write_manifest(staging, about)
    previous = final.with_name(f"{final.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        final.rename(previous)
    staging.rename(final)
    shutil.rmtree(previous, ignore_errors=True)
    if handle := _held_locks.pop(final.resolve(), None):
        handle.close()
    return final


def write_manifest(folder: str | Path, about: Mapping[str, Any]) -> Path:
    """Write `folder/manifest.json`: every file's size and SHA-256 (the manifest itself aside), and `about`."""
    folder = Path(folder)
    files = {str(path.relative_to(folder)): _file_facts(path) for path in sorted(folder.rglob("*"))
             if path.is_file() and path.name != MANIFEST}
    return write_atomically(folder / MANIFEST, json.dumps({"about": _plain(about), "files": files}, indent=2))


def cached_folder(folder: str | Path, build: Callable[[Path], Any], about: Mapping[str, Any]) -> Path:
    """A folder that `build(folder)` fills once and later runs reuse, trusted only while its manifest matches
    every file: if it does not (a file cut short, damaged or missing), a line says why and it is built again."""
    folder = Path(folder)
    problem = incomplete(folder)
    if not problem:
        return folder
    if folder.exists():
        print(f"{folder}: {problem}; building it again", flush=True)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    build(folder)
    write_manifest(folder, about)
    return folder


# Single cached files (embeddings, rankings) carry a checksum file beside them, written after the file itself;
# a reader trusts the file only if the checksum file is there and matches.
def checksum_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.name}.sha256")


def write_checksum(path: str | Path) -> Path:
    """Record `path`'s size and SHA-256 beside it (`<name>.sha256`), once the file is complete."""
    return write_atomically(checksum_path(path), json.dumps(_file_facts(Path(path))))


def unverified(path: str | Path) -> str:
    """Why the cached file `path` cannot be trusted ("" if it can): missing, no checksum beside it (written by
    an older version, or cut short before its checksum), or different from its checksum (damaged)."""
    path, recorded = Path(path), checksum_path(path)
    if not path.is_file():
        return "does not exist"
    if not recorded.is_file():
        return f"has no checksum file {recorded.name}"
    try:
        facts = json.loads(recorded.read_text(encoding="utf-8"))
        expected = (int(facts["bytes"]), str(facts["sha256"]))
    except (ValueError, KeyError, TypeError):
        return f"its checksum file {recorded.name} is damaged"
    if path.stat().st_size != expected[0] or _file_facts(path)["sha256"] != expected[1]:
        return "differs from its checksum (damaged or edited since it was written)"
    return ""


def incomplete(folder: str | Path) -> str:
    """Why `folder` cannot be trusted ("" if it can): missing, no manifest (the step that writes it did not
    finish), or a file missing or different from what the manifest says."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        return "does not exist" if not folder.exists() else f"has no {MANIFEST}: the step that writes it did not finish"
    try:
        listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"].items()
    except (ValueError, KeyError, AttributeError):
        return f"its {MANIFEST} is damaged"
    for name, facts in listed:
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != facts["bytes"] or _file_facts(path)["sha256"] != facts["sha256"]:
            return f"{name} differs from {MANIFEST} (cut short or edited)"
    return ""


def _file_facts(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The workbook's notebooks (`NN_name.ipynb`) in reading order."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {folder}: install the workbook in editable mode from its clone "
                                "(pip install -e .) so that the command finds its notebooks")
    return sorted(path for path in folder.glob("[0-9][0-9]_*.ipynb"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset of parameters by name (`smoke`, `full-gpu`): benchmarks/presets/<name>.yaml."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise ValueError(f"no preset {name!r} in {PRESETS_DIR} (known: {known})")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def select_notebooks(names: Sequence[str], available: Sequence[Path]) -> list[Path]:
    """Notebooks by name, number or file name (`04`, `04_training`, `04_training.ipynb`); all if none."""
    if not names:
        return list(available)
    chosen = []
    for name in names:
        matches = [path for path in available if name in (path.stem, path.name, path.stem.split("_")[0])]
        if not matches:
            raise ValueError(f"no notebook {name!r}; available: {', '.join(path.stem for path in available)}")
        chosen.extend(match for match in matches if match not in chosen)
    return sorted(chosen)


def parameters_per_notebook(notebooks: Sequence[Path], given: Mapping[str, Any],
                            preset: Mapping[str, Any] | None = None) -> dict[Path, dict[str, Any]]:
    """The parameters each notebook runs with: a preset's values first, then the ones given explicitly, which win.

    Both hold global names (sent to every notebook that declares them) and, optionally, a mapping per notebook
    stem (`{"04_training": {"epochs": 2}}`). A name that no chosen notebook declares is an error, where
    papermill would only warn; a value that its declaration does not allow is a `ParameterError`.
    """
    declared = {path: declared_parameters(path) for path in notebooks}
    stems = {path.stem: path for path in notebooks}
    plan: dict[Path, dict[str, Any]] = {path: {} for path in notebooks}
    unknown = []
    for layer in (preset or {}, given):
        for name, value in layer.items():
            if isinstance(value, Mapping) and name[:2].isdigit():
                if name not in stems:
                    continue  # a section for a notebook that is not part of this run
                for inner, inner_value in value.items():
                    if inner not in declared[stems[name]]:
                        unknown.append(f"{name}.{inner}")
                    plan[stems[name]][inner] = inner_value
                continue
            takers = [path for path in notebooks if name in declared[path]]
            if not takers:
                unknown.append(name)
            for path in takers:
                plan[path][name] = value
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))}: no chosen notebook declares them "
                         "(see `workbook list`)")
    return {path: check_values(path.stem, values, declared[path]) for path, values in plan.items()}


@dataclass
class NotebookRun:
    """Outcome of one notebook in a `workbook run`."""

    notebook: str
    status: str
    seconds: float
    executed: str
    parameters: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def run_notebook(path: Path, out_dir: Path, parameters: Mapping[str, Any], work_dir: Path,
                 cell_timeout: int | None = None) -> NotebookRun:
    """Execute one notebook with papermill into `out_dir/<stem>/`; never raises for a notebook error.
    A cell that runs longer than `cell_timeout` seconds (None: no limit) fails the notebook."""
    import papermill
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    output_dir = out_dir / path.stem
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / path.name
    metrics_file = output_dir / "metrics.json"
    metrics_file.unlink(missing_ok=True)  # an older run's figures must not pass for this one's
    full = {"output_dir": str(output_dir), "work_dir": str(work_dir), **parameters}
    started = time.perf_counter()
    status, error = "ok", ""
    try:
        with batch_run():  # the kernel's progress bars would be frozen in the executed copy: none there
            papermill.execute_notebook(str(path), str(executed), parameters=full, kernel_name="python3", progress_bar=True,
                                       cwd=str(path.parent), execution_timeout=cell_timeout)
    except PapermillExecutionError as failure:
        status, error = "failed", f"{failure.ename}: {failure.evalue}"
    except CellTimeoutError:
        status, error = "failed", f"CellTimeoutError: a cell ran longer than {cell_timeout} s (or its kernel hung)"
    seconds = time.perf_counter() - started
    metrics = json.loads(metrics_file.read_text()) if status == "ok" and metrics_file.exists() else {}
    return NotebookRun(path.stem, status, round(seconds, 1), str(executed), full, metrics, error)


def write_summary(out_dir: Path, runs: Sequence[NotebookRun]) -> tuple[Path, Path]:
    """`summary.json` (everything) and `summary.md` (a table per notebook) for a run."""
    json_path = write_atomically(out_dir / "summary.json", json.dumps([asdict(run) for run in runs], indent=2))
    lines = ["# Workbook run", ""]
    for run in runs:
        lines += [f"## {run.notebook}: {run.status} in {run.seconds:.0f} s", ""]
        if run.error:
            lines += [f"Error: `{run.error}`", "", f"Executed copy: `{run.executed}`", ""]
        scalar = {key: value for key, value in run.metrics.items() if not isinstance(value, dict)}
        if scalar:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {key} | {_format(value)} |" for key, value in sorted(scalar.items())]
            lines.append("")
    md_path = write_atomically(out_dir / "summary.md", "\n".join(lines))
    return json_path, md_path


def _format(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_format(item) for item in value) + "]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)

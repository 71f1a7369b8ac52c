"""Running the workbook: where every notebook writes, its parameters and presets, and papermill runs.

Each notebook declares its knobs in a cell tagged `parameters` and writes `metrics.json` into its `output_dir`;
the notebooks of one run share a `work_dir` (prepared data, fine-tuned models, rankings, cached embeddings). The
`workbook` command (helpers/cli.py) runs notebooks in order and gathers their metrics.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .parameters import check_values, declared_parameters

# the names marked noqa are re-exported: the notebooks import the runner's paths and storage from here
from .paths import (
    NOTEBOOK_DIR,
    PRECISION_ENVIRONMENT,  # noqa: F401
    PRESET_ENVIRONMENT,
    PRESETS_DIR,
    PROJECT_ROOT,  # noqa: F401
    RUNS_DIR,  # noqa: F401
    SHIPPED_DATASETS,  # noqa: F401
    dataset_label,  # noqa: F401
    embeddings_dir,  # noqa: F401
    finetuned_dir,
    notebook_dirs,  # noqa: F401
    prepared_dir,
    rankings_dir,  # noqa: F401
)
from .progress import batch_run, elapsed_line
from .storage import (
    MANIFEST,  # noqa: F401
    begin_output,  # noqa: F401
    cached_folder,  # noqa: F401
    checksum_path,  # noqa: F401
    incomplete,
    json_safe,  # noqa: F401
    publish_output,  # noqa: F401
    unverified,  # noqa: F401
    write_atomically,
    write_checksum,  # noqa: F401
    write_manifest,  # noqa: F401
)

SMOKE_CELL_TIMEOUT = 600  # seconds; no smoke cell comes near it, so a hung kernel fails the run instead of CI


def ensure_prepared(
    dataset: str,
    work_dir: str | Path,
    model: str = "all-MiniLM-L6-v2",
    caller: str = "",
    caller_settings: Mapping[str, Any] | None = None,
) -> Path:
    """The prepared folder of a data set; if it is not complete in this `work_dir`, notebook 03 runs now, at the
    calling notebook's scale (see `prerequisite_parameters`), so that every later notebook also runs on its own."""
    folder = prepared_dir(work_dir, dataset)
    if problem := incomplete(folder):
        parameters, scale = prerequisite_parameters("03_data_preparation", caller, caller_settings)
        parameters = {**parameters, "dataset": dataset, "model": model}
        _run_prerequisite("03_data_preparation", work_dir, parameters, folder, problem, scale)
    return folder


def ensure_finetuned(
    dataset: str,
    work_dir: str | Path,
    model: str = "all-MiniLM-L6-v2",
    caller: str = "",
    caller_settings: Mapping[str, Any] | None = None,
) -> Path:
    """The folder of the model notebook 04 fine-tuned on a data set; if it is not completely in this
    `work_dir`, notebook 04 runs now, at the calling notebook's scale."""
    final = finetuned_dir(work_dir, dataset) / "final"
    if problem := incomplete(final):
        parameters, scale = prerequisite_parameters("04_training", caller, caller_settings)
        _run_prerequisite(
            "04_training",
            work_dir,
            {**parameters, "dataset": dataset, "model": model},
            final,
            problem,
            scale,
        )
    return final


def finetuned_with_seed(
    dataset: str,
    work_dir: str | Path,
    seed: int,
    model: str = "all-MiniLM-L6-v2",
    caller: str = "",
    caller_settings: Mapping[str, Any] | None = None,
) -> Path:
    """Notebook 04's model trained with training seed `seed` (for notebooks that compare fine-tunes across seeds),
    into `work_dir`/seeds/seed-`seed` (notebook 04 at the caller's scale) when not complete there;
    that folder links to `work_dir`'s prepared data and embedding cache: nothing is prepared or encoded twice."""
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
        _run_prerequisite(
            "04_training",
            seed_dir,
            {**parameters, "dataset": dataset, "model": model, "seed": seed},
            final,
            problem,
            scale,
        )
    return final


def ensure_output(
    stem: str,
    record: Path,
    dataset: str,
    work_dir: str | Path,
    caller: str = "",
    given: Mapping[str, Any] | None = None,
) -> Path:
    """`record`, a file notebook `stem` leaves in `work_dir` for a later one; `stem` runs now if it is missing."""
    if not record.exists():
        parameters, scale = prerequisite_parameters(stem, caller, given)
        _run_prerequisite(stem, work_dir, {**parameters, "dataset": dataset}, record, "missing", scale)
    return record


def declared_defaults(stem: str) -> dict[str, Any]:
    """A notebook's parameters at their declared defaults (what it runs with when given nothing)."""
    return {name: declared.default for name, declared in declared_parameters(NOTEBOOK_DIR / f"{stem}.ipynb").items()}


def preset_in_use(caller: str = "", caller_settings: Mapping[str, Any] | None = None) -> str | None:
    """The preset a notebook runs with: the one `workbook run` names in the environment, else the preset whose section
    for `caller` its settings all match (the smoke preset's values given by hand to papermill, say), else None."""
    if name := os.environ.get(PRESET_ENVIRONMENT):
        return name
    if not caller or not caller_settings:
        return None
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        section = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(caller)
        if (
            isinstance(section, Mapping)
            and section
            and all(name in caller_settings and caller_settings[name] == value for name, value in section.items())
        ):
            return path.stem
    return None


def prerequisite_parameters(
    stem: str, caller: str = "", caller_settings: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], str]:
    """The parameters a missing prerequisite notebook `stem` runs with when `caller` needs it, and their
    description: the section for `stem` of the preset the caller runs with (a small run stays small), else
    the prerequisite's defaults."""
    preset = preset_in_use(caller, caller_settings)
    if preset is None:
        return {}, "its defaults"
    section = load_preset(preset).get(stem) or {}
    return dict(section), f"the {preset} preset's values, as {caller or 'this run'} runs with that preset"


def _run_prerequisite(
    stem: str,
    work_dir: str | Path,
    parameters: dict[str, Any],
    missing: Path,
    problem: str,
    scale: str = "its defaults",
) -> None:
    path = NOTEBOOK_DIR / f"{stem}.ipynb"
    out_dir = Path(work_dir).resolve() / "prerequisites"
    print(f"{missing}: {problem}; running notebook {stem} with {scale}, into {out_dir / stem}", flush=True)
    plan = parameters_per_notebook([path], {}, {stem: parameters})[path]
    result = run_notebook(path, out_dir, plan, Path(work_dir).resolve())
    if result.status != "ok":
        raise RuntimeError(
            f"notebook {stem}, run to prepare {missing}, failed: {result.error} (executed copy: {result.executed})"
        )


def write_metrics(output_dir: str | Path, metrics: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    """Write `metrics.json` (a notebook's figures, its settings under "parameters", the precision models encode in
    here under "numeric_precision") into `output_dir` in one step; print how long the notebook has run."""
    from .models import choose_device, choose_precision

    print(elapsed_line(), flush=True)
    numeric = {"numeric_precision": choose_precision(choose_device())}  # what load_model encodes in, here
    return write_atomically(
        Path(output_dir) / "metrics.json",
        json.dumps(json_safe({**numeric, **metrics, "parameters": settings}), indent=2, sort_keys=True),
    )


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The workbook's notebooks (`NN_name.ipynb`) in reading order."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no notebooks folder at {folder}: install the workbook in editable mode from its clone "
            "(pip install -e .) so that the command finds its notebooks"
        )
    return sorted(path for path in folder.glob("[0-9][0-9]_*.ipynb"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset of parameters by name (`smoke`, `full-gpu`): presets/<name>.yaml."""
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


def parameters_per_notebook(
    notebooks: Sequence[Path], given: Mapping[str, Any], preset: Mapping[str, Any] | None = None
) -> dict[Path, dict[str, Any]]:
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
        raise ValueError(
            f"unknown parameter(s) {', '.join(sorted(unknown))}: no chosen notebook declares them (see `workbook list`)"
        )
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


def run_notebook(
    path: Path, out_dir: Path, parameters: Mapping[str, Any], work_dir: Path, cell_timeout: int | None = None
) -> NotebookRun:
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
            papermill.execute_notebook(
                str(path),
                str(executed),
                parameters=full,
                kernel_name="python3",
                progress_bar=True,
                cwd=str(path.parent),
                execution_timeout=cell_timeout,
            )
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

"""Running the workbook: where notebooks write, their parameters, their metrics, and papermill runs.

Each notebook declares its knobs in a cell tagged `parameters` and writes `metrics.json` into its
`output_dir`; the `workbook` command (helpers/cli.py) runs notebooks in order and gathers those files.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
RUNS_DIR = PROJECT_ROOT / "runs"
_NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


def notebook_dirs(notebook: str, output_dir: str, work_dir: str) -> tuple[Path, Path]:
    """The `output_dir` and `work_dir` a notebook uses; empty parameters get the defaults under runs/.

    `output_dir` holds what one run of one notebook produced (metrics.json, figures); `work_dir` is shared by
    the notebooks of a run (prepared data, fine-tuned models), so notebook 04 finds what 03 prepared.
    """
    output = Path(output_dir) if output_dir else RUNS_DIR / "notebooks" / notebook
    work = Path(work_dir) if work_dir else RUNS_DIR / "work"
    output.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return output, work


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


def write_metrics(output_dir: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write `metrics.json` (the figures a notebook computed) into `output_dir` and return its path."""
    path = Path(output_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(metrics), indent=2, sort_keys=True), encoding="utf-8")
    return path


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The workbook's notebooks (`NN_name.ipynb`) in reading order."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no notebooks folder at {folder}: install the workbook in editable mode from its clone "
            "(pip install -e .) so that the command finds its notebooks"
        )
    return sorted(path for path in folder.iterdir() if _NOTEBOOK_NAME.match(path.name))


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """Name -> {default, type, help} of a notebook's `parameters` cell (papermill reads the comments)."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    return {
        name: {"default": info["default"], "type": info["inferred_type_name"], "help": info["help"]}
        for name, info in found.items()
    }


def select_notebooks(names: Sequence[str], available: Sequence[Path]) -> list[Path]:
    """Notebooks by name, number or file name (`04`, `04_training`, `04_training.ipynb`); all if none."""
    if not names:
        return list(available)
    chosen = []
    for name in names:
        matches = [path for path in available if path.stem == name or path.name == name or path.stem.split("_")[0] == name]
        if not matches:
            raise ValueError(f"no notebook {name!r}; available: {', '.join(path.stem for path in available)}")
        chosen.extend(match for match in matches if match not in chosen)
    return sorted(chosen)


def parameters_per_notebook(
    notebooks: Sequence[Path], given: Mapping[str, Any], smoke: bool
) -> dict[Path, dict[str, Any]]:
    """Split the given parameters among the notebooks that declare them.

    `given` holds global names (sent to every notebook that declares them) and, optionally, a mapping per
    notebook stem (`{"04_training": {"epochs": 2}}`). A name that no chosen notebook declares is an error,
    where papermill would only warn.
    """
    declared = {path: notebook_parameters(path) for path in notebooks}
    stems = {path.stem: path for path in notebooks}
    plan: dict[Path, dict[str, Any]] = {path: ({"smoke": True} if smoke else {}) for path in notebooks}
    unknown = []
    for name, value in given.items():
        if name in stems and isinstance(value, Mapping):
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
            f"unknown parameter(s) {', '.join(sorted(unknown))}: no chosen notebook declares them "
            "(see `workbook list`)"
        )
    return plan


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


SMOKE_CELL_TIMEOUT = 600  # seconds; no smoke cell comes near it, so a hung kernel fails the run instead of CI


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
    full = {"output_dir": str(output_dir), "work_dir": str(work_dir), **parameters}
    started = time.perf_counter()
    status, error = "ok", ""
    try:
        papermill.execute_notebook(
            str(path), str(executed), parameters=full, kernel_name="python3", progress_bar=True,
            cwd=str(path.parent), execution_timeout=cell_timeout,
        )
    except PapermillExecutionError as failure:
        status, error = "failed", f"{failure.ename}: {failure.evalue}"
    except CellTimeoutError:
        status, error = "failed", f"CellTimeoutError: a cell ran longer than {cell_timeout} s (or its kernel hung)"
    seconds = time.perf_counter() - started
    metrics_file = output_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if status == "ok" and metrics_file.exists() else {}
    return NotebookRun(path.stem, status, round(seconds, 1), str(executed), full, metrics, error)


def write_summary(out_dir: Path, runs: Sequence[NotebookRun]) -> tuple[Path, Path]:
    """`summary.json` (everything) and `summary.md` (a table per notebook) for a run."""
    from dataclasses import asdict

    json_path = out_dir / "summary.json"
    json_path.write_text(json.dumps([asdict(run) for run in runs], indent=2), encoding="utf-8")
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
    md_path = out_dir / "summary.md"
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return json_path, md_path


def _format(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_format(item) for item in value) + "]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def results_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The README's results table, rendered from a run's `summary.json` entries (never typed by hand)."""
    by_name = {run["notebook"]: run for run in runs}
    evaluation = by_name["05_evaluation"]["metrics"]
    training = by_name.get("04_training", {}).get("metrics", {})
    lines = [
        "| split | queries | corpus | NDCG@10 off the shelf | NDCG@10 fine-tuned | relative gain | 95% CI of the difference | p (Fisher) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, suffix in (("test", ""), ("test_unseen", "_test_unseen")):
        if f"base_ndcg@10{suffix}" not in evaluation:
            continue
        low, high = evaluation[f"ci95_ndcg@10_diff{suffix}"]
        p_value = evaluation[f"p_value_fisher{suffix}"]  # 0 means no permutation of ranx's 1,000 beat the observed
        lines.append(
            f"| {split} | {evaluation[f'{split}_queries']} | {evaluation['corpus_size']} "
            f"| {evaluation[f'base_ndcg@10{suffix}']:.3f} | {evaluation[f'finetuned_ndcg@10{suffix}']:.3f} "
            f"| {evaluation[f'relative_gain_ndcg@10{suffix}']:+.1%} | [{low:+.3f}, {high:+.3f}] "
            f"| {f'{p_value:.4f}' if p_value > 0 else '< 0.001'} |"
        )
    if training:
        lines += [
            "",
            f"Training: {training['train_examples']} examples ({'triplets' if training['hard_negatives'] else 'pairs'}), "
            f"{training['loss']}, batch {training['batch_size']}, {training['epochs']} epoch(s), "
            f"learning rate {training['learning_rate']}, {training['steps']} steps in {training['train_seconds']:.0f} s "
            f"on {training['device']} ({training['precision']}).",
        ]
    return "\n".join(lines + _other_results(by_name))


def _other_results(by_name: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per other notebook of the run that wrote figures the README quotes (01, 02, 06, 07)."""
    def metrics(notebook: str) -> Mapping[str, Any]:
        return by_name.get(notebook, {}).get("metrics") or {}

    lines = []
    if motivation := metrics("01_why_finetune"):
        rows = "; ".join(f"{domain} {m['base_ndcg@10']:.3f} → {m['finetuned_ndcg@10']:.3f} ({m['relative_gain']:+.1%}, "
                         f"{m['training_pairs']} pairs)" for domain, m in motivation["measured"].items())
        lines.append(f"Notebook 01, brief fine-tuning on compact corpora, test NDCG@10: {rows}.")
    if architectures := metrics("02_encoder_vs_decoder"):
        table = architectures["table"]
        after = next(row for row in table["encoder"] if row.startswith("test NDCG@10, after"))
        lines.append(
            "Notebook 02, " + "; ".join(
                f"{name} ({table[name]['architecture']}, {table[name]['pooling']} pooling) test NDCG@10 "
                f"{table[name]['test NDCG@10, off the shelf']:.3f} → {table[name][after]:.3f} {after[len('test NDCG@10, '):]}, "
                f"{table[name]['encode speed (texts/s)']:.0f} texts/s" for name in ("encoder", "decoder")) + ".")
    if decision := metrics("06_decision"):
        scores = ", ".join(f"{name} {value:.3f}" for name, value in decision["ndcg@10"].items())
        lines.append(f"Notebook 06, test NDCG@10: {scores}; recommendation: {decision['recommendation']}.")
    if reindexing := metrics("07_reindexing"):
        lines.append(f"Notebook 07, reindexing {reindexing['documents']} documents into LanceDB: "
                     f"{reindexing['docs_per_s']:.0f} documents/s on {reindexing['device']}.")
    return ["", *lines] if lines else []

"""The `workbook` command: list the notebooks' parameters, run notebooks with papermill, write the learners'
copies of the exercises and check a learner's notebook; and the two scale-out tools of notebooks 15 and 16,
notebook 04's recipe on several processes (`train-ddp`) and the reindex on a Ray cluster (`reindex-ray`)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .environment import temporary_environment
from .exercises import checked_exercises, write_learner_copies
from .parameters import declared_parameters, read_value
from .committed_runs import REFERENCE_FILE, add_to_reference
from .results import results_table
from .workbook import (
    PRECISION_ENVIRONMENT,
    PRESET_ENVIRONMENT,
    RUNS_DIR,
    SMOKE_CELL_TIMEOUT,
    list_notebooks,
    load_preset,
    parameters_per_notebook,
    run_notebook,
    select_notebooks,
    write_summary,
)


@contextmanager
def preset_named(name: str | None) -> Iterator[None]:
    """Name the preset of a run in the environment that the notebooks' kernels inherit (for the prerequisite
    notebooks they may run, see `workbook.preset_in_use`), and restore the environment afterwards."""
    changes: dict[str, str | None] = {PRESET_ENVIRONMENT: name or None}
    if name == "smoke" and PRECISION_ENVIRONMENT not in os.environ:  # the smoke run computes in fp32 on every machine,
        changes[PRECISION_ENVIRONMENT] = "fp32"  # so that its figures compare across them
    with temporary_environment(changes):
        yield


def command_list(_: argparse.Namespace) -> int:
    for path in list_notebooks():
        print(path.stem)
        for name, declared in declared_parameters(path).items():
            print(f"    {name:<22} = {declared.default!r:<28} [{declared.requirement}] {declared.meaning}")
    return 0


def command_run(args: argparse.Namespace) -> int:
    given: dict[str, Any] = {}
    if args.file:
        try:
            loaded = yaml.safe_load(Path(args.file).read_text(encoding="utf-8")) or {}
        except OSError as error:
            print(f"workbook: cannot read the parameters file {args.file}: {error.strerror}", file=sys.stderr)
            return 2
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            print(
                f"workbook: {args.file} is not valid YAML{at}: {getattr(error, 'problem', None) or error}",
                file=sys.stderr,
            )
            return 2
        if not isinstance(loaded, dict):
            print(f"workbook: {args.file}: a parameters file must be a mapping of names to values", file=sys.stderr)
            return 2
        given.update(loaded)
    given.update({name: read_value(value) for name, value in args.parameter})
    try:
        notebooks = select_notebooks(args.notebooks, list_notebooks())
        plan = parameters_per_notebook(notebooks, given, load_preset("smoke") if args.smoke else None)
    except ValueError as error:
        print(f"workbook: {error}", file=sys.stderr)
        return 2
    # absolute, since each notebook runs in the notebooks folder
    out_dir = Path(args.out).resolve() if args.out else RUNS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = out_dir / "work"
    runs = []
    for index, path in enumerate(notebooks, start=1):
        print(f"[{index}/{len(notebooks)}] {path.stem} {plan[path] or '(defaults)'}", flush=True)
        cell_timeout = args.cell_timeout or (SMOKE_CELL_TIMEOUT if args.smoke else None)
        with preset_named("smoke" if args.smoke else None):  # a prerequisite a notebook runs keeps the preset
            result = run_notebook(path, out_dir, plan[path], work_dir, cell_timeout)
        runs.append(result)
        write_summary(out_dir, runs)
        if result.status != "ok":
            print(f"workbook: {path.stem} failed: {result.error}", file=sys.stderr)
            print(f"workbook: the executed copy is {result.executed}", file=sys.stderr)
            return 1
        print(f"      done in {result.seconds:.0f} s", flush=True)
    print(f"summary: {out_dir / 'summary.md'} and {out_dir / 'summary.json'}")
    return 0


def command_exercises(args: argparse.Namespace) -> int:
    for path in write_learner_copies(list_notebooks(), Path(args.out)):
        print(f"{path}: exercises {', '.join(checked_exercises(path))}")
    return 0


def command_check(args: argparse.Namespace) -> int:
    path = Path(args.notebook)
    if not path.exists():
        try:
            path = select_notebooks([args.notebook], list_notebooks())[0]
        except ValueError as error:
            print(f"workbook: {error}", file=sys.stderr)
            return 2
    expected = checked_exercises(path)
    preset = {} if args.full else load_preset("smoke").get(path.stem, {})
    out_dir = Path(args.out).resolve() if args.out else RUNS_DIR / f"check-{datetime.now():%Y%m%d-%H%M%S}"
    work_dir = Path(args.work).resolve() if args.work else out_dir / "work"
    print(f"running {path} ({'its defaults' if args.full else 'the smoke preset'}) into {out_dir}", flush=True)
    with preset_named(None if args.full else "smoke"):
        result = run_notebook(path.resolve(), out_dir, preset, work_dir, None if args.full else SMOKE_CELL_TIMEOUT)
    results_file = out_dir / path.stem / "exercises.json"
    results = json.loads(results_file.read_text(encoding="utf-8")) if results_file.exists() else {}
    for name in expected:
        found = results.get(name, {"status": "not run", "message": "the notebook stopped before its check"})
        print(f"Exercise {name}: {found['status']}" + (f": {found['message']}" if found["message"] else ""))
    if result.status != "ok":
        print(
            f"workbook: the notebook itself failed: {result.error} (executed copy: {result.executed})", file=sys.stderr
        )
    passed = result.status == "ok" and all(results.get(name, {}).get("status") == "passed" for name in expected)
    return 0 if passed else 1


def command_reference(args: argparse.Namespace) -> int:
    summary = json.loads((Path(args.run) / "summary.json").read_text(encoding="utf-8"))
    commit = (
        args.commit
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    provenance = {
        "command": args.command,
        "machine": args.machine,
        "commit": commit,
        "date": args.date or datetime.now().strftime("%Y-%m-%d"),
    }
    recorded = add_to_reference(summary, provenance, args.into)
    print(f"recorded {', '.join(recorded)} in {args.into}")
    return 0


def command_results(args: argparse.Namespace) -> int:
    if args.write:  # redraw the rendered blocks of the README and docs/ from the committed files they name
        from .results import render_page
        from .workbook import PROJECT_ROOT

        for page in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]:
            text = page.read_text(encoding="utf-8")
            if (rendered := render_page(text, PROJECT_ROOT)) != text:
                page.write_text(rendered, encoding="utf-8")
                print(f"rendered {page.relative_to(PROJECT_ROOT)}")
        return 0
    if not args.run:
        raise SystemExit("workbook results: give a run's folder (holding summary.json), or --write")
    summary = json.loads((Path(args.run) / "summary.json").read_text(encoding="utf-8"))
    print(results_table(summary))
    return 0


def command_book(args: argparse.Namespace) -> int:
    from .book import build_book

    index = build_book(args.run, args.out)
    print(f"the book: {index} (open it in a browser; it needs no network)")
    return 0


def command_train_ddp(args: argparse.Namespace) -> int:
    from .distributed import launch_command

    arguments = args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments
    command = launch_command(args.processes, arguments)
    print("running:", " ".join(command), flush=True)
    return subprocess.run(command).returncode


def command_reindex_ray(args: argparse.Namespace) -> int:
    from .data import load_beir
    from .indexing import index_table_name, open_store, switch_live
    from .models import load_model, model_fingerprint, resolve_model
    from .ray_indexing import ray_sync_index, start_ray

    try:
        corpus = load_beir(args.data, validate=False).corpus
        model_name = resolve_model(args.model)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"workbook: {error}", file=sys.stderr)
        return 2
    if args.documents is not None:
        corpus = dict(list(corpus.items())[: args.documents])
    resources = start_ray(args.ray_address, num_cpus=args.num_cpus)
    print(f"Ray {'at ' + args.ray_address if args.ray_address else 'started locally'}: {resources}", flush=True)
    model = load_model(model_name, device="cpu")  # the driver's copy: the plan, the version and the verification
    store = open_store(args.store)
    table = index_table_name(args.model, model_fingerprint(model))
    stats = ray_sync_index(
        store,
        table,
        corpus,
        model,
        model_name,
        args.workers,
        args.batch_size,
        args.cpus_per_worker,
        args.gpus_per_worker,
    )
    report = switch_live(store, table, corpus, model)
    print(json.dumps({"reindex": stats.as_dict(), "live": report}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbook", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the notebooks and their parameters with defaults")
    listing.set_defaults(handler=command_list)
    run = commands.add_parser("run", help="execute notebooks in order with papermill")
    run.add_argument("notebooks", nargs="*", help="names or numbers (default: all, in order)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    run.add_argument("-f", "--file", help="a YAML file of parameters (global names, or per-notebook mappings)")
    run.add_argument(
        "--smoke",
        action="store_true",
        help="the smoke preset (presets/smoke.yaml: tiny sizes, what CI runs); -p and -f win over it",
    )
    run.add_argument("--out", help="output folder (default: a fresh folder under runs/)")
    run.add_argument(
        "--cell-timeout",
        type=int,
        metavar="SECONDS",
        help=f"fail a notebook whose cell runs longer (default: {SMOKE_CELL_TIMEOUT} with --smoke, else none)",
    )
    run.set_defaults(handler=command_run)
    exercises = commands.add_parser("exercises", help="write the learner's copies: every solution replaced by a stub")
    exercises.add_argument("--out", required=True, help="folder for the copies")
    exercises.set_defaults(handler=command_exercises)
    check = commands.add_parser("check", help="run a notebook (a learner's copy) and report each exercise")
    check.add_argument("notebook", help="a notebook file, or a name or number of the workbook's own notebooks")
    check.add_argument("--full", action="store_true", help="the notebook's defaults instead of the smoke preset")
    check.add_argument("--work", help="the work_dir to reuse (prepared data, models; default: a fresh one in --out)")
    check.add_argument("--out", help="output folder (default: a fresh folder under runs/)")
    check.set_defaults(handler=command_check)
    results = commands.add_parser("results", help="the results table of docs/results.md from a finished run")
    results.add_argument("run", nargs="?", help="the run's folder (holding summary.json)")
    results.add_argument(
        "--write",
        action="store_true",
        help="instead, redraw the results blocks of README.md and docs/ from the committed files they name",
    )
    results.set_defaults(handler=command_results)
    book = commands.add_parser(
        "book", help="render a run's executed notebooks into a static HTML book (RUN/book/index.html)"
    )
    book.add_argument(
        "run", help="the run's folder (holding <notebook>/<notebook>.ipynb, as `workbook run --out` leaves it)"
    )
    book.add_argument("--out", help="the book's folder (default: RUN/book)")
    book.set_defaults(handler=command_book)
    reference = commands.add_parser(
        "reference",
        help="record a finished run's notebooks as the committed reference run "
        "(benchmarks/results/reference-cpu/reference.json)",
    )
    reference.add_argument("run", help="the run's folder (holding summary.json)")
    reference.add_argument(
        "--command", required=True, help="the command that made the run, as a reader would retype it"
    )
    reference.add_argument(
        "--machine", required=True, help="the machine it ran on, in words (processor, cores, precision)"
    )
    reference.add_argument("--date", default="", help="the run's date (default: today)")
    reference.add_argument("--commit", default="", help="the commit it ran (default: git's HEAD)")
    reference.add_argument("--into", default=str(REFERENCE_FILE), help=argparse.SUPPRESS)
    reference.set_defaults(handler=command_reference)
    ddp = commands.add_parser(
        "train-ddp",
        help="notebook 04's recipe on several processes with PyTorch's launcher (torchrun); notebook 15",
        description="Runs `python -m torch.distributed.run --standalone --nproc_per_node=N -m helpers.distributed ARGS`. "
        "The script's arguments follow `--`: --data (a folder notebook 03 prepared) and --out are required; "
        "see `python -m helpers.distributed --help`. Notebook 05 evaluates the model it saves: "
        "workbook run 05 -p finetuned_model OUT/final",
    )
    ddp.add_argument("--processes", type=int, default=2, help="processes on this machine (default: 2)")
    ddp.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then the arguments of helpers.distributed")
    ddp.set_defaults(handler=command_train_ddp)
    reindex = commands.add_parser(
        "reindex-ray",
        help="reindex a corpus into LanceDB on Ray workers and switch the live alias once verified; notebook 16",
    )
    reindex.add_argument("--data", required=True, help="a folder notebook 03 prepared (its corpus.jsonl is indexed)")
    reindex.add_argument("--store", required=True, help="the LanceDB store: a folder, or any URI lancedb accepts")
    reindex.add_argument("--model", default="all-MiniLM-L6-v2", help="a Hugging Face id or a folder")
    reindex.add_argument("--workers", type=int, default=2, help="embedding workers (default: 2)")
    reindex.add_argument("--cpus-per-worker", type=float, default=1)
    reindex.add_argument("--gpus-per-worker", type=float, default=0, help="1: each worker on a GPU")
    reindex.add_argument(
        "--batch-size", type=int, help="documents per block and commit (default: 128 on CPU, 512 on GPU)"
    )
    reindex.add_argument("--documents", type=int, help="only the first N documents (a trial run)")
    reindex.add_argument("--ray-address", help="a running Ray cluster to join (default: start Ray on this machine)")
    reindex.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    reindex.set_defaults(handler=command_reindex_ray)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

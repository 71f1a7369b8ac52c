"""Storage that a crash cannot leave half-written: atomic files, checksummed caches, and folders published
with a manifest under a lock.

The bottom layer of `helpers` (with `paths`): it imports nothing from the package.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def json_safe(value: Any) -> Any:
    """JSON-safe copy of metrics: numpy scalars become floats, NaN becomes None."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


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
        raise RuntimeError(
            f"{final} is being written by another run ({holder}); wait for it to finish, "
            "or give this run its own work_dir"
        ) from None
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
    files = {
        str(path.relative_to(folder)): _file_facts(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    return write_atomically(folder / MANIFEST, json.dumps({"about": json_safe(about), "files": files}, indent=2))


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

"""Environment variables set for a while: what `workbook run` passes to the kernels it starts (they inherit the
environment of the process that starts them)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


def _apply(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def temporary_environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """Set each variable of `changes` (None: remove it) inside the block, then restore every one as it was."""
    before = {key: os.environ.get(key) for key in changes}
    try:
        _apply(changes)
        yield
    finally:
        _apply(before)

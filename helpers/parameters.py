"""Each notebook's parameters, declared once in its `parameters` cell and checked wherever they enter.

A line of that cell reads `name = default  # [requirement] meaning`. The requirement, in brackets, is what
`workbook list` shows, what `workbook run` checks before it starts a kernel, and what the notebook's next cell
checks (so a plain papermill run is checked the same way):

    int > 0          an integer, with any number of bounds (`float ≥ 0 < 1`: a number in [0, 1))
    mnrl | cached_mnrl | None      alternatives: a bare word or number is a choice, `None` allows None
    list of int ≥ 2                a list whose every item meets the requirement after `of`
    float > 0, usually 1e-7 to 1e-2    a value outside the usual range is allowed, with a warning

Bounds are written ≥ and ≤, not >= and <=: papermill's own inspection of a parameters cell gives up on a line
with a second "=". The standard library is enough here: the grammar has five words and a few operators, and
pydantic would add a second declaration (a model class) beside the parameters cell, which a learner reads.
papermill's `-p` passes what it cannot read as a number or a boolean as a string, so a string given for a
parameter that is not text is read as YAML (`"[16, 32]"` becomes a list) before it is checked.
"""

from __future__ import annotations

import ast
import io
import json
import operator
import re
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .paths import NOTEBOOK_DIR

_BOUNDS = {"≥": operator.ge, "≤": operator.le, ">": operator.gt, "<": operator.lt}
_TYPES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text", "dict": "a mapping"}


class ParameterError(ValueError):
    """A parameter value that its declaration does not allow; the message names notebook, name and value."""


@dataclass(frozen=True)
class Parameter:
    """One line of a `parameters` cell."""

    name: str
    default: Any
    requirement: str
    meaning: str

    def check(self, notebook: str, value: Any) -> Any:
        """`value` converted to what the requirement allows, or a ParameterError that says what is allowed."""
        spec, _, usual = self.requirement.partition(", usually ")
        accepted = _accepts(spec, value)
        if accepted is _REJECTED and isinstance(value, str):
            try:
                accepted = _accepts(spec, read_value(value))
            except yaml.YAMLError:
                pass
        if accepted is _REJECTED:
            raise ParameterError(
                f"{notebook}: {self.name}={value!r} must be {_failed_part(spec, value)} (`{self.name}`: {self.meaning})"
            )
        if (
            self.name.endswith("_seeds")
            and isinstance(accepted, list)
            and (not accepted or len(set(accepted)) != len(accepted))
        ):
            raise ParameterError(
                f"{notebook}: {self.name}={accepted!r} must hold one or more distinct seeds: intervals over "
                f"seeds need each run to be a different one (`{self.name}`: {self.meaning})"
            )
        if usual and isinstance(accepted, (int, float)):
            low, high = (float(bound) for bound in usual.split(" to "))
            if not low <= accepted <= high:
                warnings.warn(
                    f"{notebook}: {self.name}={accepted!r} is far outside the usual {usual}; "
                    "expect a run that learns nothing or diverges",
                    stacklevel=3,
                )
        return accepted


_REJECTED = object()


def read_value(text: str) -> Any:
    """A value typed on a command line: 3 -> int, 1e-4 -> float, None -> None, [16, 32] -> list, true -> bool,
    anything else -> the text itself (YAML's rules, except that `1e-4` is a number and `None` is None)."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return None if text.strip() == "None" else yaml.safe_load(text) if text.strip() else ""


def _accepts(spec: str, value: Any) -> Any:
    """`value` as the spec allows it (an int becomes a float where a number is asked), or _REJECTED."""
    if spec.startswith("list of "):
        if not isinstance(value, list):
            return _REJECTED
        items = [_accepts(spec[len("list of ") :], item) for item in value]
        return _REJECTED if any(item is _REJECTED for item in items) else items
    for alternative in (part.strip() for part in spec.split("|")):
        words = alternative.split()
        if alternative == "None":
            if value is None:
                return None
        elif words[0] in _TYPES:
            typed = _typed(words[0], value)
            if typed is not _REJECTED and all(
                _BOUNDS[op](typed, float(bound)) for op, bound in zip(words[1::2], words[2::2])
            ):
                return typed
        elif str(value) == alternative and not isinstance(value, bool):
            return value
    return _REJECTED


def _typed(kind: str, value: Any) -> Any:
    if kind == "bool":
        return value if isinstance(value, bool) else _REJECTED
    if isinstance(value, bool):
        return _REJECTED
    if kind == "int":
        return value if isinstance(value, int) else _REJECTED
    if kind == "float":
        return float(value) if isinstance(value, (int, float)) else _REJECTED
    return value if isinstance(value, {"str": str, "dict": dict}[kind]) else _REJECTED


def _failed_part(spec: str, value: Any) -> str:
    """What to say a value must be: only the bounds when its type is right (`epochs=-1 must be > 0`)."""
    if spec.startswith("list of "):
        return f"a list, each item {_failed_part(spec[len('list of ') :], None)}"
    alternatives = [part.strip() for part in spec.split("|")]
    if len(alternatives) == 1 and len(words := alternatives[0].split()) > 1 and words[0] in _TYPES:
        if _typed(words[0], value) is not _REJECTED:
            return " and ".join(f"{op} {bound}" for op, bound in zip(words[1::2], words[2::2]))
    described = [" ".join([_TYPES.get(part.split()[0], part), *part.split()[1:]]) for part in alternatives]
    return described[0] if len(described) == 1 else "one of: " + ", ".join(described)


def declared_parameters(notebook: str | Path) -> dict[str, Parameter]:
    """The parameters a notebook declares, by name, read from its `parameters` cell (a stem like
    `04_training` is looked up in the workbook's notebooks folder)."""
    path = Path(notebook) if str(notebook).endswith(".ipynb") else NOTEBOOK_DIR / f"{notebook}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = next(
        ("".join(cell["source"]) for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])), None
    )
    if source is None:
        raise ValueError(f"{path.name} has no cell tagged `parameters`")
    comments = {
        token.start[0]: token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    declared = {}
    for statement in ast.parse(source).body:
        if not (isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name)):
            raise ValueError(f"{path.name}: the parameters cell may only hold `name = value  # [...] meaning` lines")
        name = statement.targets[0].id
        found = re.fullmatch(r"#\s*\[([^\]]+)\]\s*(.*)", comments.get(statement.lineno, ""))
        if not found:
            raise ValueError(f"{path.name}: parameter {name} has no `# [requirement] meaning` comment")
        declared[name] = Parameter(name, ast.literal_eval(statement.value), found.group(1), found.group(2))
    return declared


def check_values(notebook: str, values: dict[str, Any], declared: dict[str, Parameter] | None = None) -> dict[str, Any]:
    """The given values, converted and checked against the notebook's declarations; names it does not declare
    are left alone (papermill passes `output_dir` and `work_dir` to every notebook)."""
    declared = declared_parameters(notebook) if declared is None else declared
    return {
        name: declared[name].check(notebook, value) if name in declared else value for name, value in values.items()
    }


def check_parameters(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Called by a notebook right after its parameters cell with `globals()`: every declared parameter checked
    and converted, the ones that differ from the defaults printed. Returns them all (for `metrics.json`)."""
    declared = declared_parameters(notebook)
    settings = check_values(notebook, {name: namespace[name] for name in declared}, declared)
    changed = {
        name: value
        for name, value in settings.items()
        if value != declared[name].default and name not in ("output_dir", "work_dir")
    }
    print("settings that differ from the defaults:", ", ".join(f"{k}={v!r}" for k, v in changed.items()) or "none")
    return settings

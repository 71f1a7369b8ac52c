"""Outputs that read the same in a notebook and in every other view of its executed copy: a pandas Styler shows
as `<pandas.io.formats.style.Styler at 0x...>` and IPython's Markdown as `<IPython.core.display.Markdown object>`
wherever the rich form is not rendered (a text diff, a terminal, a test); these show their content instead."""

from __future__ import annotations

from typing import Any


class ReadableTable:
    """A styled table whose plain-text form is the formatted table itself, not the Styler's object repr."""

    def __init__(self, styler: Any) -> None:
        self.styler = styler

    def _repr_html_(self) -> str:
        return self.styler.to_html()

    def __repr__(self) -> str:
        rows = [line.split("\x1f") for line in self.styler.to_string(delimiter="\x1f").splitlines()]
        widths = [
            max(len(row[column]) if column < len(row) else 0 for row in rows) for column in range(max(map(len, rows)))
        ]
        return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def readable(styler: Any) -> ReadableTable:
    """Wrap a pandas Styler (`df.style.format(...)`) so that it shows as HTML in a notebook and as its formatted
    text elsewhere; the last expression of a cell, or `display(readable(...))`."""
    return ReadableTable(styler)


class ReadableMarkdown:
    """Markdown rendered in a notebook, the same text in plain views."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_markdown_(self) -> str:
        # A tilde is strikethrough in GitHub-flavoured markdown: "~0.47 ... (~0.16)" would strike out the text between
        # them. Escaped outside code spans (where a backslash would show), and left as it is in the plain view.
        parts = self.text.split("`")  # odd-numbered parts lie inside code spans
        return "`".join(part if i % 2 else part.replace("~", "\\~") for i, part in enumerate(parts))

    def __repr__(self) -> str:
        return self.text


def markdown(text: str) -> ReadableMarkdown:
    """Markdown text to display (`display(markdown(...))`) that reads as itself outside a notebook too."""
    return ReadableMarkdown(text)


def interval_text(ci: Any, digits: int = 3, percent: bool = False) -> str:
    """A 95% interval as the tables show it: `[-0.012, +0.034]`, signs always written, `digits` decimals; with
    `percent`, a share as percentages with `digits` decimals: `[94%, 100%]`."""
    low, high = (float(end) for end in ci)
    if percent:
        return f"[{low:.{digits}%}, {high:.{digits}%}]"
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def with_interval(value: float, ci: Any, digits: int = 3, percent: bool = False) -> str:
    """A measured difference and its 95% interval in one table cell: `+0.021 [+0.015, +0.027]`, or a share with
    `percent`: `97% [94%, 100%]`."""
    number = f"{float(value):.{digits}%}" if percent else f"{float(value):+.{digits}f}"
    return f"{number} {interval_text(ci, digits, percent)}"


def interval_bars(
    ax: Any, positions: Any, centres: Any, intervals: Any, horizontal: bool = False, slack: float = 1e-4, **style: Any
) -> Any:
    """Draw measured differences with their 95% intervals on a matplotlib `ax` and return the errorbar container: a
    point at each of `centres`, a bar from its interval's low end to its high end (`intervals`: one (low, high) per
    point), placed at `positions` on the other axis (`horizontal`: differences along x, one row per position, as in a
    forest plot). `style` goes to `ax.errorbar` (default: points with caps). An interval that misses its centre by
    more than `slack` (the rounding of an interval printed to 4 decimals) is refused; within it, the bar ends at the
    point."""
    positions, centres = list(positions), [float(centre) for centre in centres]
    ends = [(float(low), float(high)) for low, high in intervals]
    if not len(positions) == len(centres) == len(ends):
        raise ValueError(
            f"{len(positions)} positions, {len(centres)} centres, {len(ends)} intervals: one of each per point"
        )
    if bad := [
        i for i, (centre, (low, high)) in enumerate(zip(centres, ends)) if not low - slack <= centre <= high + slack
    ]:
        raise ValueError(f"point {bad[0]}: its interval {ends[bad[0]]} does not hold its centre {centres[bad[0]]}")
    below = [max(0.0, centre - low) for centre, (low, _) in zip(centres, ends)]
    above = [max(0.0, high - centre) for centre, (_, high) in zip(centres, ends)]
    style = {"fmt": "o", "capsize": 4, **style}
    if horizontal:
        return ax.errorbar(centres, positions, xerr=[below, above], **style)
    return ax.errorbar(positions, centres, yerr=[below, above], **style)

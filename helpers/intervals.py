"""Reading a 95% interval: the one rule every notebook and the README use to call a difference a gain, a loss,
or "can't tell". Pure Python, so that the CLI can render results without importing torch."""

from __future__ import annotations

import math
from collections.abc import Sequence


def interval_verdict(ci: Sequence[float], target: float = 0.0, above: str | None = None, below: str | None = None,
                     undecided: str = "can't tell", percent: bool = False) -> str:
    """The label of a 95% interval read against a target: `above` when the whole interval lies above it, `below`
    when it lies wholly below, `undecided` ("can't tell") when it holds the target. An interval that touches the
    target holds it, and one that holds it is never a finding, whichever side its middle falls on. An end that is
    not a number (a statistic undefined on some resample, e.g. a share of a zero gain) gives `undecided` too.

    The labels default to "above zero" / "below zero" for a target of 0, else "above <target>", written as a
    percentage with `percent` (a share: "above 80%").
    """
    low, high = (float(end) for end in ci)
    if math.isnan(low) or math.isnan(high):
        return undecided
    if low > high:
        raise ValueError(f"an interval's low end must not exceed its high end; got {tuple(ci)}")
    name = "zero" if target == 0 else f"{target:.0%}" if percent else f"{target:g}"
    if low > target:
        return above if above is not None else f"above {name}"
    if high < target:
        return below if below is not None else f"below {name}"
    return undecided

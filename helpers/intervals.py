"""Intervals: the bootstrap intervals every comparison reports (over queries, and over queries and training seeds),
and the one rule every notebook and the README use to read one as a gain, a loss, or "can't tell". numpy and
scipy only (scipy imported when an interval is computed), so that the CLI can render results without torch."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def interval_verdict(
    ci: Sequence[float],
    target: float = 0.0,
    above: str | None = None,
    below: str | None = None,
    undecided: str = "can't tell",
    percent: bool = False,
) -> str:
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


def bootstrap_ci(
    values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of per-query values (scipy).

    For a paired comparison pass the per-query differences (one model minus the other): queries are resampled
    as units, so each query's two scores stay together.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError("a bootstrap interval needs a one-dimensional array of at least two per-query values")
    result = bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def seeds_and_queries_ci(
    differences: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Interval of a mean paired difference measured over several training seeds, covering both the choice of
    queries and the luck of the training runs.

    `differences[s, q]` is query q's score difference (one arm minus the other) in the runs trained with seed s.
    Two parts, added in quadrature on each side of the mean: the query part is `bootstrap_ci` of the per-query
    differences averaged over the seeds (queries resampled as units, so each query's scores stay paired); the seed
    part is Student's t interval of the seeds' mean differences, t(seeds - 1) x their standard deviation / sqrt(seeds).
    With three seeds t is 4.3: a handful of runs says little about how much another run could differ, and a
    bootstrap over three seeds would pretend otherwise (its intervals cover far less than they claim). With one
    seed (one row) this is `bootstrap_ci` of that row: queries only.
    """
    from scipy.stats import t as student_t

    differences = np.asarray(differences, dtype=float)
    if differences.ndim == 1:
        differences = differences[None, :]
    if differences.ndim != 2 or differences.shape[1] < 2:
        raise ValueError(
            "seeds_and_queries_ci needs an array of shape (seeds, queries) with at least two queries, "
            f"got shape {differences.shape}"
        )
    mean = float(differences.mean())
    low, high = bootstrap_ci(differences.mean(axis=0), confidence, n_resamples, seed)
    n_seeds = differences.shape[0]
    if n_seeds == 1:
        return low, high
    seed_means = differences.mean(axis=1)
    seed_part = student_t.ppf(0.5 + confidence / 2, n_seeds - 1) * seed_means.std(ddof=1) / np.sqrt(n_seeds)
    return mean - float(np.hypot(mean - low, seed_part)), mean + float(np.hypot(high - mean, seed_part))


def seeds_comparison(arm: Any, against: Any, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """`arm` minus `against`, per-query scores with one row per training seed (one row, or a 1-D array, for a model
    trained once, such as the base): the mean of `arm`, the mean difference over seeds and queries, its 95% interval
    (`seeds_and_queries_ci`, rounded to 4 decimals) and the interval's verdict (`interval_verdict`)."""
    differences = np.atleast_2d(arm) - np.atleast_2d(against)
    low, high = (round(bound, 4) for bound in seeds_and_queries_ci(differences, n_resamples=n_resamples, seed=seed))
    return {
        "NDCG@10": float(np.mean(arm)),
        "difference": float(differences.mean()),
        "95% CI": (low, high),
        "verdict": interval_verdict((low, high)),
    }


def bootstrap_statistic_ci(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of `statistic(indices)`, a number computed from the items at `indices`,
    for statistics that are not a mean of per-item values (a Spearman correlation). Items are resampled as
    units, so for a paired comparison let `statistic` return one model's value minus the other's on the same
    resampled items."""
    if n_items < 2:
        raise ValueError("a bootstrap interval needs at least two items")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n_items, n_items)) for _ in range(n_resamples)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def seeds_and_statistic_ci(
    statistic: Callable[[int, Any], float],
    n_seeds: int,
    n_items: int,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Interval of the mean over training seeds of `statistic(s, indices)`, a number computed from the items at
    `indices` in the runs trained with the s-th seed (a Spearman difference, a share of a gain kept), covering the
    items' sampling and the seeds' luck as `seeds_and_queries_ci` does for a mean difference: the item part is
    `bootstrap_statistic_ci` of the seeds' mean statistic (each resample draws the same items for every seed), the
    seed part Student's t interval of the seeds' statistics on all items; the two are added in quadrature on each
    side of the mean. With one seed this is `bootstrap_statistic_ci`: items only."""
    from scipy.stats import t as student_t

    if n_seeds < 1:
        raise ValueError(f"seeds_and_statistic_ci needs at least one seed, got {n_seeds}")
    everything = np.arange(n_items)
    per_seed = np.array([statistic(s, everything) for s in range(n_seeds)], dtype=float)
    mean = float(per_seed.mean())
    low, high = bootstrap_statistic_ci(
        lambda at: float(np.mean([statistic(s, at) for s in range(n_seeds)])), n_items, confidence, n_resamples, seed
    )
    if n_seeds == 1:
        return low, high
    seed_part = student_t.ppf(0.5 + confidence / 2, n_seeds - 1) * per_seed.std(ddof=1) / np.sqrt(n_seeds)
    return mean - float(np.hypot(mean - low, seed_part)), mean + float(np.hypot(high - mean, seed_part))

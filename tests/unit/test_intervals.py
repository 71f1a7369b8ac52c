"""helpers.intervals: bootstrap intervals over queries and seeds, and the rule that reads them."""

import numpy as np
import pytest

from helpers import intervals as I


def test_bootstrap_interval_brackets_the_mean_and_needs_data():
    values = np.random.default_rng(0).normal(0.1, 0.05, size=500)
    low, high = I.bootstrap_ci(values, n_resamples=500)
    assert low < values.mean() < high and high - low < 0.02
    with pytest.raises(ValueError, match="at least two"):
        I.bootstrap_ci(np.array([0.3]))


def test_statistic_bootstrap_brackets_a_paired_spearman_difference():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    gold = rng.normal(size=300)
    good, poor = gold + 0.3 * rng.normal(size=300), gold + 2.0 * rng.normal(size=300)
    difference = spearmanr(good, gold).statistic - spearmanr(poor, gold).statistic
    low, high = I.bootstrap_statistic_ci(
        lambda at: spearmanr(good[at], gold[at]).statistic - spearmanr(poor[at], gold[at]).statistic,
        300,
        n_resamples=300,
    )
    assert 0 < low < difference < high
    with pytest.raises(ValueError, match="at least two"):
        I.bootstrap_statistic_ci(lambda at: 0.0, 1)


def test_seeds_and_queries_interval_widens_with_the_spread_between_seeds():
    rng = np.random.default_rng(0)
    per_query = rng.normal(0.02, 0.05, 400)
    assert I.seeds_and_queries_ci(per_query, n_resamples=500) == I.bootstrap_ci(per_query, n_resamples=500)  # one seed
    agreeing = I.seeds_and_queries_ci(np.stack([per_query, per_query + 0.001, per_query - 0.001]), n_resamples=500)
    assert agreeing[0] < 0.02 < agreeing[1] and agreeing[1] - agreeing[0] < 0.02
    # three runs whose means disagree (one lost its gain): the interval must reach below zero
    low, high = I.seeds_and_queries_ci(
        np.stack([per_query + 0.02, per_query + 0.02, per_query - 0.04]), n_resamples=500
    )
    assert low < 0 < high and (high - low) > 3 * (agreeing[1] - agreeing[0])
    with pytest.raises(ValueError, match="shape"):
        I.seeds_and_queries_ci(np.zeros((3, 1)))


def test_seeds_and_statistic_interval_matches_the_mean_difference_version_and_takes_any_statistic():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    runs = np.stack([rng.normal(0.02 + shift, 0.05, 300) for shift in (0.0, 0.01, -0.01)])
    by_mean = I.seeds_and_queries_ci(runs, n_resamples=400)
    by_statistic = I.seeds_and_statistic_ci(lambda s, at: float(runs[s][at].mean()), 3, 300, n_resamples=400)
    assert by_statistic == pytest.approx(by_mean, abs=0.003)  # the same two parts; only the bootstrap's draws differ
    one_seed = I.seeds_and_statistic_ci(lambda s, at: float(runs[0][at].mean()), 1, 300, n_resamples=400)
    assert one_seed == I.bootstrap_statistic_ci(lambda at: float(runs[0][at].mean()), 300, n_resamples=400)
    gold = rng.normal(size=300)
    noisy = [gold + scale * rng.normal(size=300) for scale in (0.5, 0.6, 2.0)]  # one seed far worse: a wide interval
    low, high = I.seeds_and_statistic_ci(
        lambda s, at: spearmanr(noisy[s][at], gold[at]).statistic, 3, 300, n_resamples=300
    )
    assert low < np.mean([spearmanr(values, gold).statistic for values in noisy]) < high and high - low > 0.3
    with pytest.raises(ValueError, match="at least one seed"):
        I.seeds_and_statistic_ci(lambda s, at: 0.0, 0, 300)


def test_seeds_and_queries_interval_covers_as_often_as_it_claims():
    """Simulated: 3 seeds x 300 queries, no true difference, a seed effect of 0.01 on top of query noise. A
    bootstrap over the three seeds covered zero about 82% of the time here; the t-based seed part must keep it
    near 95%."""
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(200):
        per_query = rng.normal(0, 0.05, 300)
        runs = np.stack([per_query + rng.normal(0, 0.01) + rng.normal(0, 0.02, 300) for _ in range(3)])
        low, high = I.seeds_and_queries_ci(runs, n_resamples=200, seed=trial)
        covered += low <= 0 <= high
    assert covered / 200 >= 0.9


@pytest.mark.parametrize(
    ("ci", "target", "expected"),
    [
        ((0.01, 0.05), 0.0, "above zero"),
        ((-0.05, -0.01), 0.0, "below zero"),
        ((-0.01, 0.05), 0.0, "can't tell"),
        ((0.0, 0.05), 0.0, "can't tell"),
        ((-0.05, 0.0), 0.0, "can't tell"),  # an interval that touches the target holds it
        ((0.02, 0.04), 0.01, "above 0.01"),
        ((2.5, 3.0), 2.0, "above 2"),
        ((float("-inf"), float("inf")), 0.0, "can't tell"),
    ],
)
def test_interval_verdict_reads_an_interval_against_its_target(ci, target, expected):
    assert I.interval_verdict(ci, target) == expected


def test_interval_verdict_reads_a_share_in_percent_and_takes_a_notebooks_own_labels():
    assert I.interval_verdict((0.94, 1.00), 0.8, percent=True) == "above 80%"
    assert I.interval_verdict((0.5, 0.79), 0.8, percent=True) == "below 80%"
    assert I.interval_verdict((0.8, 0.9), 0.8, percent=True) == "can't tell"
    assert I.interval_verdict((0.1, 0.2), above="a gain", below="a loss") == "a gain"
    assert I.interval_verdict((-0.2, -0.1), above="a gain", below="a loss") == "a loss"
    assert I.interval_verdict((-0.1, 0.1), undecided="makes no clear difference") == "makes no clear difference"


def test_interval_verdict_calls_an_undefined_end_undecided_and_refuses_a_reversed_interval():
    assert I.interval_verdict((float("nan"), 0.1)) == "can't tell"  # e.g. a share of a gain that was 0 on a resample
    with pytest.raises(ValueError, match="low end"):
        I.interval_verdict((0.2, 0.1))


def test_a_seeds_comparison_row_reads_its_interval():
    from helpers.intervals import seeds_comparison

    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, size=200)
    better = np.vstack([base + 0.05 + rng.normal(0, 0.02, 200) for _ in range(3)])  # three seeds, each clearly above
    row = seeds_comparison(better, base, n_resamples=500, seed=1)
    assert row["NDCG@10"] == pytest.approx(better.mean()) and row["difference"] == pytest.approx((better - base).mean())
    assert row["95% CI"][0] > 0 and row["verdict"] == "above zero"
    assert all(bound == round(bound, 4) for bound in row["95% CI"])
    noise = rng.normal(0, 0.05, 200)
    same = seeds_comparison(base + noise - noise.mean(), base, n_resamples=500, seed=1)  # a mean difference of 0
    assert same["95% CI"][0] <= 0 <= same["95% CI"][1] and same["verdict"] == "can't tell"

"""marsbench.aggregate.stats: IQM, stratified bootstrap, intervals, probability of improvement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from marsbench.aggregate import stats

scores = st.floats(min_value=-2.0, max_value=3.0, allow_nan=False, width=32)
groups_strategy = st.lists(st.lists(scores, min_size=1, max_size=8), min_size=1, max_size=5)
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


# --- point statistics -------------------------------------------------------------------------

def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([10.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -10.0])  # 8 values: drop 2 each side
    assert stats.iqm(x) == pytest.approx(np.mean([1.0, 2.0, 3.0, 4.0]))


@SETTINGS
@given(value=scores, n=st.integers(1, 40))
def test_iqm_of_constant_input_equals_its_mean(value, n):
    x = np.full(n, value)
    assert stats.iqm(x) == pytest.approx(float(np.mean(x)), abs=1e-12)


@SETTINGS
@given(values=st.lists(scores, min_size=1, max_size=40), data=st.data())
def test_iqm_does_not_depend_on_run_order(values, data):
    shuffled = data.draw(st.permutations(values))
    assert stats.iqm(shuffled) == pytest.approx(stats.iqm(values), abs=1e-12)


@SETTINGS
@given(values=st.lists(scores, min_size=4, max_size=40))
def test_iqm_lies_between_median_trimmed_bounds(values):
    x = np.sort(np.asarray(values, dtype=float))
    q1, q3 = x[len(x) // 4], x[len(x) - 1 - len(x) // 4]
    assert q1 - 1e-12 <= stats.iqm(x) <= q3 + 1e-12


def test_optimality_gap_mean_and_median():
    x = np.array([0.2, 0.5, 1.3, 0.9])
    assert stats.optimality_gap(x) == pytest.approx((0.8 + 0.5 + 0.0 + 0.1) / 4)
    assert stats.optimality_gap(x, gamma=0.5) == pytest.approx(0.3 / 4)
    assert stats.mean(x) == pytest.approx(0.725)
    assert stats.median(x) == pytest.approx(0.7)


def test_statistics_work_along_an_axis():
    x = np.arange(24, dtype=float).reshape(3, 8)
    for name, f in stats.STATISTICS.items():
        np.testing.assert_allclose(f(x, axis=1), [f(row) for row in x], err_msg=name)


# --- bootstrap --------------------------------------------------------------------------------

@SETTINGS
@given(groups=groups_strategy, seed=st.integers(0, 2**32 - 1), resample=st.booleans())
def test_bootstrap_with_the_same_seed_is_reproducible(groups, seed, resample):
    a = stats.stratified_bootstrap(groups, rounds=50, rng=seed, resample_datasets=resample)
    b = stats.stratified_bootstrap(groups, rounds=50, rng=np.random.default_rng(seed),
                                   resample_datasets=resample)
    np.testing.assert_array_equal(a, b)


def test_different_seeds_give_different_bootstraps():
    groups = [np.linspace(0, 1, 7), np.linspace(0.2, 0.9, 7)]
    a = stats.stratified_bootstrap(groups, rounds=100, rng=1)
    b = stats.stratified_bootstrap(groups, rounds=100, rng=2)
    assert not np.array_equal(a, b)


@SETTINGS
@given(groups=groups_strategy, statistic=st.sampled_from(["iqm", "mean", "median"]),
       resample=st.booleans())
def test_interval_contains_the_point_estimate(groups, statistic, resample):
    est = stats.interval_estimate(groups, stats.STATISTICS[statistic], rounds=300, rng=0,
                                  resample_datasets=resample)
    assert est.low - 1e-9 <= est.point <= est.high + 1e-9


def test_bootstrap_resamples_within_each_dataset():
    # dataset 0 holds values < 1, dataset 1 values > 10: a stratified resample keeps 3 and 5 of
    # each in every round, whatever was drawn.
    groups = [np.array([0.1, 0.2, 0.3]), np.array([11.0, 12.0, 13.0, 14.0, 15.0])]

    def count_small(x, axis=-1):
        return np.sum(np.asarray(x) < 1, axis=axis)

    counts = stats.stratified_bootstrap(groups, count_small, rounds=200, rng=3)
    assert set(counts.tolist()) == {3}
    # resampling datasets too draws whole datasets, so the counts become multiples of 3
    counts = stats.stratified_bootstrap(groups, count_small, rounds=200, rng=3, resample_datasets=True)
    assert set(counts.tolist()) == {0, 3, 6}


def test_bootstrap_draws_runs_with_replacement():
    groups = [np.arange(7.0)]
    dist = stats.stratified_bootstrap(groups, lambda x, axis=-1: np.max(x, axis=axis), rounds=500, rng=0)
    # max of 7 draws with replacement misses 6 with probability (6/7)^7 ~ 0.34
    assert 0.25 < np.mean(dist < 6) < 0.43


def test_ragged_groups_are_used_as_they_are():
    groups = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], [0.9, 0.8], [0.5]]
    est = stats.interval_estimate(groups, stats.mean, rounds=200, rng=0)
    assert est.point == pytest.approx(np.mean([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 0.8, 0.5]))


def test_percentile_interval_matches_numpy():
    x = np.random.default_rng(0).normal(size=1000)
    assert stats.percentile_interval(x, 0.9) == pytest.approx(tuple(np.percentile(x, [5, 95])))


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="group 1 is empty"):
        stats.interval_estimate([[0.5], []])
    with pytest.raises(ValueError, match="non-finite"):
        stats.interval_estimate([[0.5, float("nan")]])
    with pytest.raises(ValueError, match="at least one dataset"):
        stats.interval_estimate([])
    with pytest.raises(TypeError, match="Generator or an int"):
        stats.stratified_bootstrap([[0.5]], rng=None)
    with pytest.raises(ValueError, match="confidence"):
        stats.percentile_interval([0.1, 0.2], 1.5)


# --- probability of improvement ---------------------------------------------------------------

@SETTINGS
@given(x=st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=6), min_size=1, max_size=4),
       data=st.data())
def test_probability_of_improvement_matches_mann_whitney(x, data):
    y = [data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=6)) for _ in x]
    expected = np.mean([mannwhitneyu(a, b).statistic / (len(a) * len(b)) for a, b in zip(x, y)])
    assert stats.probability_of_improvement(x, y) == pytest.approx(expected)
    assert stats.probability_of_improvement(x, y) + stats.probability_of_improvement(y, x) == pytest.approx(1.0)


def test_probability_of_improvement_interval():
    rng = np.random.default_rng(0)
    x = [rng.normal(1.0, 0.1, 7) for _ in range(4)]
    y = [rng.normal(0.0, 0.1, 7) for _ in range(4)]
    est = stats.probability_of_improvement_interval(x, y, rounds=200, rng=0)
    assert est.point == 1.0 and est.low == est.high == 1.0
    same = stats.probability_of_improvement_interval(x, x, rounds=200, rng=0)
    assert same.point == pytest.approx(0.5) and same.low < 0.5 < same.high
    with pytest.raises(ValueError, match="same datasets"):
        stats.probability_of_improvement(x, y[:2])

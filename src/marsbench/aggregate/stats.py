"""Pure statistics for benchmark scores: IQM and friends, stratified bootstrap, percentile intervals.

Written here rather than taken from rliable (Agarwal et al., 2021, the usual library) because
rliable 1.2 does not work with current dependencies (fails at import with arch 7.2 + pandas 3,
and on ``random_state=None`` with arch 8). The recipes follow rliable's:

- scores come as *groups*: one 1-D array of run scores (one per seed) per dataset; groups may
  differ in length (a model missing some seeds), and are pooled for a point estimate;
- `stratified_bootstrap` resamples the runs with replacement within each dataset (optionally the
  datasets too) and recomputes the statistic on each resample;
- intervals are percentile intervals of that bootstrap distribution.

Every random draw comes from an explicit `numpy.random.Generator` (or an integer seed for one), so
equal seeds give equal intervals. Statistics take ``axis`` so that bootstraps are vectorised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import trim_mean

Statistic = Callable[..., np.ndarray]
Groups = Sequence[ArrayLike]
RandomState = np.random.Generator | int
DEFAULT_ROUNDS = 1000


def iqm(scores: ArrayLike, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50 % (25 % trimmed from each end)."""
    return trim_mean(np.asarray(scores, dtype=float), 0.25, axis=axis)


def mean(scores: ArrayLike, axis: int = -1) -> np.ndarray:
    return np.mean(np.asarray(scores, dtype=float), axis=axis)


def median(scores: ArrayLike, axis: int = -1) -> np.ndarray:
    return np.median(np.asarray(scores, dtype=float), axis=axis)


def optimality_gap(scores: ArrayLike, axis: int = -1, gamma: float = 1.0) -> np.ndarray:
    """Mean shortfall below the target ``gamma`` (scores above it count as 0); lower is better."""
    return np.mean(np.maximum(gamma - np.asarray(scores, dtype=float), 0.0), axis=axis)


STATISTICS: dict[str, Statistic] = {
    "iqm": iqm, "mean": mean, "median": median, "optimality_gap": optimality_gap,
}


@dataclass(frozen=True)
class IntervalEstimate:
    """A point estimate with its percentile bootstrap interval."""

    point: float
    low: float
    high: float
    confidence: float
    rounds: int


def as_groups(groups: Groups) -> list[np.ndarray]:
    """Validate groups: at least one, each a non-empty 1-D array of finite numbers."""
    out = [np.asarray(g, dtype=float).ravel() for g in groups]
    if not out:
        raise ValueError("no score groups: need at least one dataset with at least one run")
    for i, g in enumerate(out):
        if g.size == 0:
            raise ValueError(f"score group {i} is empty: every dataset needs at least one run")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"score group {i} holds a non-finite score: {g.tolist()}")
    return out


def pooled(groups: Groups) -> np.ndarray:
    """All runs of all datasets in one array."""
    return np.concatenate(as_groups(groups))


def _rng(rng: RandomState) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, not {type(rng).__name__}")


def stratified_bootstrap(groups: Groups, statistic: Statistic = iqm, *, rounds: int = DEFAULT_ROUNDS,
                         rng: RandomState = 0, resample_datasets: bool = False) -> np.ndarray:
    """The statistic over ``rounds`` resamples; shape (rounds,).

    Each round draws, within every dataset, as many runs as it has, with replacement; with
    ``resample_datasets`` it first draws the datasets themselves with replacement.
    """
    data = as_groups(groups)
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    gen = _rng(rng)
    if not resample_datasets:
        draws = [g[gen.integers(0, g.size, size=(rounds, g.size))] for g in data]
        return np.asarray(statistic(np.concatenate(draws, axis=1), axis=1), dtype=float)
    # Draw datasets, then runs within each drawn dataset, for all rounds at once. With ragged
    # groups the pooled size differs between rounds, so the statistic runs once per pooled size.
    sizes = np.array([g.size for g in data])
    padded = np.zeros((len(data), sizes.max()))
    for d, g in enumerate(data):
        padded[d, : g.size] = g
    picked = gen.integers(0, len(data), size=(rounds, len(data)))
    n = sizes[picked][..., None]  # (rounds, datasets, 1)
    slots = np.arange(sizes.max())
    runs = np.minimum((gen.random((rounds, len(data), sizes.max())) * n).astype(int), n - 1)
    values = padded[picked[..., None], runs]
    valid = slots < n
    total = valid.sum(axis=(1, 2))
    out = np.empty(rounds)
    for size in np.unique(total):
        rows = np.flatnonzero(total == size)
        out[rows] = statistic(values[rows][valid[rows]].reshape(rows.size, size), axis=1)
    return out


def percentile_interval(samples: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of a bootstrap distribution."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(np.asarray(samples, dtype=float), [tail, 100.0 - tail])
    return float(low), float(high)


def interval_estimate(groups: Groups, statistic: Statistic = iqm, *, rounds: int = DEFAULT_ROUNDS,
                      confidence: float = 0.95, rng: RandomState = 0,
                      resample_datasets: bool = False) -> IntervalEstimate:
    """The statistic over the pooled runs with its stratified-bootstrap percentile interval."""
    point = float(statistic(pooled(groups), axis=-1))
    dist = stratified_bootstrap(groups, statistic, rounds=rounds, rng=rng,
                                resample_datasets=resample_datasets)
    low, high = percentile_interval(dist, confidence)
    return IntervalEstimate(point, low, high, confidence, rounds)


def _pairs(x_groups: Groups, y_groups: Groups) -> list[tuple[np.ndarray, np.ndarray]]:
    xs, ys = as_groups(x_groups), as_groups(y_groups)
    if len(xs) != len(ys):
        raise ValueError(f"probability of improvement needs the same datasets for both models "
                         f"({len(xs)} vs {len(ys)} groups)")
    return list(zip(xs, ys))


def _p_greater(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 over the last two axes (x: (..., n), y: (..., m))."""
    diff = x[..., :, None] - y[..., None, :]
    return np.mean((diff > 0) + 0.5 * (diff == 0), axis=(-2, -1))


def probability_of_improvement(x_groups: Groups, y_groups: Groups) -> float:
    """P(a run of X beats a run of Y on the same dataset), averaged over datasets (ties count 1/2).

    The groups are paired by position: ``x_groups[i]`` and ``y_groups[i]`` are the same dataset.
    """
    return float(np.mean([_p_greater(x, y) for x, y in _pairs(x_groups, y_groups)]))


def probability_of_improvement_interval(x_groups: Groups, y_groups: Groups, *,
                                        rounds: int = DEFAULT_ROUNDS, confidence: float = 0.95,
                                        rng: RandomState = 0) -> IntervalEstimate:
    """`probability_of_improvement` with a bootstrap interval (runs of each model resampled
    independently within each dataset)."""
    pairs = _pairs(x_groups, y_groups)
    gen = _rng(rng)
    per_dataset = [
        _p_greater(x[gen.integers(0, x.size, size=(rounds, x.size))],
                   y[gen.integers(0, y.size, size=(rounds, y.size))])
        for x, y in pairs
    ]
    low, high = percentile_interval(np.mean(per_dataset, axis=0), confidence)
    return IntervalEstimate(probability_of_improvement(x_groups, y_groups), low, high, confidence, rounds)

"""Rankings that survive noise: paired-bootstrap win probabilities, significance tiers, rank
intervals, and how many seeds a comparison needs.

All functions take a tidy results table (`marsbench.aggregate.table`; extra columns are ignored)
and compare the models in it. See docs/rankings_calibration.md.

What is compared
    One number per *cell* = (dataset, seed) per model. Which number: the ``score`` column when
    the table has one (normalised scores, i.e. ``Normaliser.apply(table).scores``; a `Normalised`
    may be passed directly), else the raw ``value``; ``column=`` chooses explicitly. Raw values of
    different metrics live on different scales, so for tables spanning several datasets normalise
    first. ``metric=None`` picks each dataset's headline metric (`headline_metrics`); a string
    keeps that metric only; a mapping overrides the headline per dataset. After that choice a
    (model, dataset, seed) must occur once: a table mixing regimes or variants raises a
    ``ValueError`` that names the column to filter on.

Aggregate score
    A model's score is ``statistic`` (default: the **mean**; ``"iqm"``, ``"median"`` or a
    callable on a 1-D array also work) over its cells pooled across datasets and seeds, so a
    dataset with more seeds weighs more (as in `task_scores`).

The paired bootstrap
    Each of ``rounds`` rounds draws the datasets with replacement (``resample_datasets=True``)
    and, within every drawn dataset, its seeds with replacement (the seeds of a dataset: every
    seed any model ran on it). The same draws serve every model, so two models are compared on
    the same resampled (dataset, seed) cells; for a pair, only cells where *both* have a run count
    (for complete tables that is every cell). A round in which a pair shares no cell is left out
    of that pair's numbers. Draws come from ``numpy.random.default_rng(seed)``: equal seeds give
    equal outputs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

from . import stats
from .normalise import Normalised, headline_metrics

Statistic = str | Callable[[np.ndarray], float]
DEFAULT_ROUNDS = 2000
_NAMED = {"mean", "median", "iqm"}
_AMBIGUOUS_COLUMNS = ("task", "regime", "variant", "split", "spec_key", "metric")

__all__ = [
    "rank_intervals", "seed_power_table", "significance_tiers", "t_test_power",
    "t_test_sample_size", "win_probability_matrix",
]


# --- the cell grid ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """Scores as an array (models, datasets, seed slots); NaN where a model lacks the run."""

    models: list[str]
    datasets: list[str]
    values: np.ndarray  # (M, D, S) float, NaN = no run
    n_seeds: np.ndarray  # (D,) seeds per dataset (union over models)

    @property
    def present(self) -> np.ndarray:
        return ~np.isnan(self.values)


def _score_frame(table: pd.DataFrame | Normalised, metric: str | Mapping[str, str] | None,
                 column: str | None) -> tuple[pd.DataFrame, str]:
    frame = table.scores if isinstance(table, Normalised) else table
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a results table (DataFrame) or Normalised, not {type(table).__name__}")
    column = column or ("score" if "score" in frame.columns else "value")
    needed = ["model", "dataset", "seed", column]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {missing}; it has {list(frame.columns)}")
    if "metric" in frame.columns:
        if isinstance(metric, str):
            if metric not in set(frame["metric"]):
                raise ValueError(f"metric {metric!r} is not in the table (it has "
                                 f"{sorted(set(frame['metric']))})")
            frame = frame[frame["metric"] == metric]
        elif frame["metric"].nunique() > 1 or isinstance(metric, Mapping):
            chosen = headline_metrics(frame, metric if isinstance(metric, Mapping) else None)
            frame = frame[frame["metric"].to_numpy() == frame["dataset"].map(chosen).to_numpy()]
    elif metric is not None:
        raise ValueError("metric= was given but the table has no 'metric' column")
    if frame.empty:
        raise ValueError("no runs to rank: the table is empty after choosing the metric")
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        bad = frame.iloc[int(np.flatnonzero(~np.isfinite(values))[0])]
        raise ValueError(f"non-finite {column} {bad[column]!r} for model {bad['model']!r} on "
                         f"{bad['dataset']!r} seed {bad['seed']!r}; drop failed runs first")
    dup = frame.duplicated(["model", "dataset", "seed"], keep=False)
    if dup.any():
        rows = frame[dup]
        first = rows.iloc[0]
        varying = [c for c in _AMBIGUOUS_COLUMNS if c in rows.columns
                   and rows.groupby(["model", "dataset", "seed"])[c].nunique().max() > 1]
        hint = (f"the rows differ in {varying}; keep one value of each, e.g. "
                f"table[table[{varying[0]!r}] == ...]" if varying
                else "collapse the duplicate runs first")
        raise ValueError(f"{int(dup.sum())} rows share (model, dataset, seed) e.g. "
                         f"({first['model']!r}, {first['dataset']!r}, {first['seed']!r}): a ranking "
                         f"needs one score per model, dataset and seed; {hint}")
    return frame, column


def _grid(table: pd.DataFrame | Normalised, metric: str | Mapping[str, str] | None,
          column: str | None) -> _Grid:
    frame, column = _score_frame(table, metric, column)
    models = sorted(frame["model"].astype(str).unique())
    datasets = sorted(frame["dataset"].astype(str).unique())
    seeds = {d: sorted(g.unique()) for d, g in frame.groupby(frame["dataset"].astype(str))["seed"]}
    n_seeds = np.array([len(seeds[d]) for d in datasets])
    values = np.full((len(models), len(datasets), int(n_seeds.max())), np.nan)
    m_index = {m: i for i, m in enumerate(models)}
    d_index = {d: i for i, d in enumerate(datasets)}
    s_index = {(d, s): j for d in datasets for j, s in enumerate(seeds[d])}
    for model, dataset, seed, value in zip(frame["model"].astype(str), frame["dataset"].astype(str),
                                           frame["seed"], frame[column].astype(float)):
        values[m_index[model], d_index[dataset], s_index[(dataset, seed)]] = value
    return _Grid(models, datasets, values, n_seeds)


def _resample(grid: _Grid, rounds: int, seed: int, resample_datasets: bool) -> np.ndarray:
    """Resampled scores, shape (M, rounds, D * S); NaN where a slot is unused or the run missing."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    gen = np.random.default_rng(seed)
    n_data, width = grid.values.shape[1:]
    if resample_datasets:
        picked = gen.integers(0, n_data, size=(rounds, n_data))
    else:
        picked = np.broadcast_to(np.arange(n_data), (rounds, n_data))
    n = grid.n_seeds[picked][..., None]  # (R, D, 1)
    slots = np.minimum((gen.random((rounds, n_data, width)) * n).astype(int), n - 1)
    out = grid.values[:, picked[..., None], slots]  # (M, R, D, S)
    out[:, ~(np.arange(width) < n)] = np.nan
    return out.reshape(len(grid.models), rounds, n_data * width)


# --- statistics on masked rows -------------------------------------------------------------------


def _statistic_name(statistic: Statistic) -> Statistic:
    named = {stats.mean: "mean", stats.median: "median", stats.iqm: "iqm",
             np.mean: "mean", np.median: "median"}
    if isinstance(statistic, str):
        if statistic not in _NAMED:
            raise ValueError(f"statistic must be one of {sorted(_NAMED)} or a callable, not {statistic!r}")
        return statistic
    if callable(statistic):
        return named.get(statistic, statistic)
    raise TypeError(f"statistic must be a name or a callable, not {type(statistic).__name__}")


def _masked_statistic(values: np.ndarray, statistic: Statistic) -> np.ndarray:
    """``statistic`` of every row of ``values`` (…, K) over its non-NaN entries (NaN if none)."""
    mask = ~np.isnan(values)
    count = mask.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if statistic == "mean":
            return np.where(mask, values, 0.0).sum(axis=-1) / np.where(count > 0, count, np.nan)
        if statistic == "median":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmedian(values, axis=-1)
        if statistic == "iqm":  # scipy.stats.trim_mean(x, 0.25) row by row, NaNs left out
            ordered = np.sort(values, axis=-1)  # NaN sorts last
            cut = np.floor(0.25 * count).astype(int)[..., None]
            pos = np.arange(values.shape[-1])
            keep = (pos >= cut) & (pos < count[..., None] - cut)
            kept = keep.sum(axis=-1)
            return np.where(keep, ordered, 0.0).sum(axis=-1) / np.where(kept > 0, kept, np.nan)
    flat = values.reshape(-1, values.shape[-1])
    out = np.array([float(statistic(row[~np.isnan(row)])) if np.any(~np.isnan(row)) else np.nan
                    for row in flat])
    return out.reshape(values.shape[:-1])


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` restricted to the entries both have."""
    both = ~np.isnan(a) & ~np.isnan(b)
    return np.where(both, a, np.nan), np.where(both, b, np.nan)


def _point_scores(grid: _Grid, statistic: Statistic) -> np.ndarray:
    return _masked_statistic(grid.values.reshape(len(grid.models), -1), statistic)


def _complete(grid: _Grid) -> bool:
    """Every model has every cell, so pairing changes nothing."""
    slots = np.arange(grid.values.shape[2]) < grid.n_seeds[:, None]
    return bool(np.all(grid.present[:, slots]))


def _bootstrapped(table, metric, column, statistic, rounds: int, seed: int,
                  resample_datasets: bool) -> tuple[Statistic, _Grid, np.ndarray, np.ndarray]:
    """What every ranking starts from: the statistic, the score grid, its bootstrap draws and
    each model's point score."""
    statistic = _statistic_name(statistic)
    grid = _grid(table, metric, column)
    return (statistic, grid, _resample(grid, rounds, seed, resample_datasets),
            _point_scores(grid, statistic))


def _order(models: list[str], scores: np.ndarray) -> list[int]:
    """Indices of models, best score first (NaN last), ties by name."""
    return sorted(range(len(models)), key=lambda i: (-scores[i] if np.isfinite(scores[i]) else np.inf,
                                                     models[i]))


# --- public functions ----------------------------------------------------------------------------


def win_probability_matrix(table: pd.DataFrame | Normalised, metric: str | Mapping[str, str] | None = None,
                           *, statistic: Statistic = "mean", rounds: int = DEFAULT_ROUNDS, seed: int = 0,
                           column: str | None = None, resample_datasets: bool = True) -> pd.DataFrame:
    """P(row model's aggregate score > column model's) under the paired bootstrap (module doc).

    Entry ``[A, B]`` is the share of rounds in which ``statistic`` of A's scores over the
    resampled cells both models have exceeds B's; a tied round counts one half, so
    ``P[A, B] + P[B, A] == 1`` exactly (wherever both are defined). The diagonal is NaN, as is a
    pair with no cell in common. Rows and columns are the models, best point score first.
    """
    statistic, grid, draws, scores = _bootstrapped(table, metric, column, statistic, rounds,
                                                   seed, resample_datasets)
    m = len(grid.models)
    order = _order(grid.models, scores)
    own = _masked_statistic(draws, statistic) if _complete(grid) else None  # (M, R)
    prob = np.full((m, m), np.nan)
    for i in range(m):
        for j in range(i + 1, m):
            if own is not None:
                a, b = own[i], own[j]
            else:
                a, b = (_masked_statistic(x, statistic) for x in _pair(draws[i], draws[j]))
            ok = ~np.isnan(a) & ~np.isnan(b)
            if not ok.any():
                continue
            prob[i, j] = float(np.mean((a[ok] > b[ok]) + 0.5 * (a[ok] == b[ok])))
            prob[j, i] = 1.0 - prob[i, j]
    names = [grid.models[i] for i in order]
    out = pd.DataFrame(prob[np.ix_(order, order)], index=pd.Index(names, name="model"),
                       columns=pd.Index(names, name="opponent"))
    return out


def significance_tiers(table: pd.DataFrame | Normalised, metric: str | Mapping[str, str] | None = None,
                       *, statistic: Statistic = "mean", confidence: float = 0.95,
                       rounds: int = DEFAULT_ROUNDS, seed: int = 0, column: str | None = None,
                       resample_datasets: bool = True) -> pd.DataFrame:
    """Group models into tiers of statistically indistinguishable performance.

    Rule: models are taken in order of point score (best first, ties by name). The first model
    leads tier 1. Each next model is compared with the leader of the current tier: the paired
    bootstrap distribution of ``statistic(leader) - statistic(model)`` on their common cells gives
    a central ``confidence`` percentile interval [ci_low, ci_high]. If ``ci_low <= 0`` (the
    model is not significantly worse than the leader) it joins the tier; otherwise it opens the
    next tier and leads it. Comparisons are against the leader only (so tiers are contiguous in
    score order) and there is no multiple-comparison correction.

    Returns columns model, score (point score), tier (1 = best), leader (its tier's leader),
    ci_low, ci_high (interval of the difference leader - model; NaN for a leader), one row per
    model in score order.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    statistic, grid, draws, scores = _bootstrapped(table, metric, column, statistic, rounds,
                                                   seed, resample_datasets)
    rows = []
    tier, leader = 0, None
    for i in _order(grid.models, scores):
        low = high = float("nan")
        if leader is not None:
            a, b = (_masked_statistic(x, statistic) for x in _pair(draws[leader], draws[i]))
            diff = (a - b)[~np.isnan(a - b)]
            if diff.size:
                low, high = stats.percentile_interval(diff, confidence)
        if leader is None or not low <= 0:  # NaN (no common cells) also opens a new tier
            tier, leader = tier + 1, i
            low = high = float("nan")
        rows.append({"model": grid.models[i], "score": float(scores[i]), "tier": tier,
                     "leader": grid.models[leader], "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["model", "score", "tier", "leader", "ci_low", "ci_high"])


def rank_intervals(table: pd.DataFrame | Normalised, metric: str | Mapping[str, str] | None = None,
                   *, statistic: Statistic = "mean", confidence: float = 0.95,
                   rounds: int = DEFAULT_ROUNDS, seed: int = 0, column: str | None = None,
                   resample_datasets: bool = True) -> pd.DataFrame:
    """Each model's rank (1 = best) with a bootstrap interval.

    In every round each model is scored by ``statistic`` over its own resampled cells and the
    models are ranked with competition ranking (ties share the best rank: 1, 2, 2, 4). rank_point
    ranks the point scores the same way; rank_low and rank_high are the lower and upper
    ``(1 - confidence) / 2`` quantiles of the rank distribution taken as observed ranks (numpy's
    ``method="lower"`` / ``"higher"``), so they are integers. Columns: model, score, rank_point,
    rank_low, rank_high, in score order. With a ragged table models are scored on different cells;
    check `coverage_gaps` first.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    statistic, grid, draws, scores = _bootstrapped(table, metric, column, statistic, rounds,
                                                   seed, resample_datasets)
    per_round = _masked_statistic(draws, statistic).T  # (R, M)
    ranks = sps.rankdata(-per_round, method="min", axis=1, nan_policy="omit")
    point = sps.rankdata(-scores, method="min", nan_policy="omit")
    tail = (1.0 - confidence) / 2.0
    rows = []
    for i in _order(grid.models, scores):
        r = ranks[:, i][~np.isnan(ranks[:, i])]
        rows.append({"model": grid.models[i], "score": float(scores[i]), "rank_point": int(point[i]),
                     "rank_low": int(np.quantile(r, tail, method="lower")),
                     "rank_high": int(np.quantile(r, 1.0 - tail, method="higher"))})
    return pd.DataFrame(rows, columns=["model", "score", "rank_point", "rank_low", "rank_high"])


# --- seeds needed -------------------------------------------------------------------------------


def t_test_power(effect_size: float, n: float, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test with ``n`` runs per group (equal variances).

    ``effect_size`` is Cohen's d = difference / standard deviation. Computed exactly with the
    noncentral t distribution (scipy.stats.nct): df = 2n - 2, noncentrality d * sqrt(n / 2),
    power = P(T > t_crit) + P(T < -t_crit) with t_crit the 1 - alpha/2 quantile of t(df), as
    statsmodels' ``TTestIndPower().power(d, n, alpha)`` computes it.
    """
    if n < 2:
        raise ValueError(f"a two-sample t-test needs n >= 2 per group, got {n}")
    df = 2.0 * n - 2.0
    ncp = abs(effect_size) * math.sqrt(n / 2.0)
    crit = sps.t.ppf(1.0 - alpha / 2.0, df)
    upper = float(sps.nct.sf(crit, df, ncp))
    lower = float(sps.nct.cdf(-crit, df, ncp))  # the far tail; scipy answers NaN where it is ~0
    return min(1.0, upper + (0.0 if math.isnan(lower) else lower))


def t_test_sample_size(effect_size: float, power: float = 0.8, alpha: float = 0.05, *,
                       max_n: float = 1e7) -> float:
    """The (fractional) runs per group at which `t_test_power` reaches ``power`` (as statsmodels'
    ``TTestIndPower().solve_power``); 2.0 when two runs already suffice, inf when the effect is 0
    or more than ``max_n`` runs would be needed. Round up for a number of seeds."""
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise ValueError(f"power and alpha must lie in (0, 1), got power={power}, alpha={alpha}")
    d = abs(float(effect_size))
    if math.isnan(d):
        return float("nan")
    if math.isinf(d) or t_test_power(d, 2.0, alpha) >= power:
        return 2.0
    if d == 0:
        return float("inf")
    low, high = 2.0, 4.0
    while t_test_power(d, high, alpha) < power:  # bracket the solution by doubling
        if high >= max_n:
            return float("inf")
        low, high = high, min(2.0 * high, max_n)
    return float(optimize.brentq(lambda n: t_test_power(d, n, alpha) - power, low, high,
                                 xtol=1e-10, rtol=1e-12))


def seed_power_table(table: pd.DataFrame | Normalised, deltas: Iterable[float] = (0.01, 0.02, 0.05),
                     power: float = 0.8, alpha: float = 0.05, *,
                     metric: str | Mapping[str, str] | None = None, column: str | None = None,
                     by: str | Iterable[str] | None = "dataset") -> pd.DataFrame:
    """Seeds per model needed to detect a difference ``delta`` between two models on a dataset.

    The between-seed standard deviation is estimated per (dataset, model) (ddof = 1; groups with
    one seed are skipped) and pooled within each group of ``by`` (default: per dataset; ``None``:
    one pooled value for the whole table; ``"model"`` or ``["dataset", "model"]`` also work):
    ``sd = sqrt(sum((n_i - 1) * s_i**2) / sum(n_i - 1))``. For each delta (in the units of the
    compared column: raw value or normalised score), effect size d = delta / sd and the number of
    seeds per model is the smallest integer n >= 2 at which a two-sided two-sample t-test at level
    ``alpha`` has at least ``power`` (`t_test_sample_size`, exact noncentral t).

    Columns: the ``by`` columns, sd, df (pooled degrees of freedom), delta, effect_size,
    seeds_exact (fractional solution), seeds_needed (int; -1 when sd is undefined or the effect is
    0), achieved_power (the power at seeds_needed).
    """
    deltas = [float(d) for d in deltas]
    if not deltas or any(not d > 0 for d in deltas):
        raise ValueError(f"deltas must be positive numbers, got {deltas}")
    frame, column = _score_frame(table, metric, column)
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    bad = [k for k in keys if k not in ("dataset", "model")]
    if bad:
        raise ValueError(f"by must name 'dataset' and/or 'model' (or be None), not {bad}")
    per = frame.groupby(["dataset", "model"])[column].agg(["var", "count"]).reset_index()
    per = per[per["count"] >= 2]
    per = per.assign(ss=per["var"] * (per["count"] - 1), df=per["count"] - 1)
    if keys:
        pooled = per.groupby(keys)[["ss", "df"]].sum().reset_index()
        if pooled.empty:
            pooled = pd.DataFrame(columns=[*keys, "ss", "df"])
    else:
        pooled = pd.DataFrame([{"ss": per["ss"].sum(), "df": per["df"].sum()}])
    rows = []
    for _, group in pooled.iterrows():
        df = int(group["df"])
        sd = math.sqrt(group["ss"] / df) if df > 0 else float("nan")
        for delta in deltas:
            d = delta / sd if sd > 0 else (float("inf") if sd == 0 else float("nan"))
            exact = t_test_sample_size(d, power, alpha)
            needed = int(math.ceil(exact - 1e-9)) if math.isfinite(exact) else -1
            if needed >= 2 and math.isfinite(d) and t_test_power(d, needed, alpha) < power:
                needed += 1  # the solver's tolerance landed just above an integer
            achieved = (t_test_power(d, needed, alpha) if needed >= 2 and math.isfinite(d)
                        else 1.0 if needed >= 2 else float("nan"))
            rows.append({**{k: group[k] for k in keys}, "sd": sd, "df": df, "delta": delta,
                         "effect_size": d, "seeds_exact": exact, "seeds_needed": needed,
                         "achieved_power": achieved})
    return pd.DataFrame(rows, columns=[*keys, "sd", "df", "delta", "effect_size", "seeds_exact",
                                       "seeds_needed", "achieved_power"])

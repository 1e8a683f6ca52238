"""Table-level aggregates: per-task normalised IQM with intervals, per-dataset summaries, curves,
and the coverage report for ragged tables (a model missing datasets or seeds).

Every bootstrap draws from its own generator, seeded by ``seed`` and the group's key (model, task,
...), so adding a model to the table never changes another model's interval.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from . import stats
from .normalise import Normalised

GROUP = ["model", "task", "regime", "variant"]
TASK_SCORE_COLUMNS = [
    "model", "task", "regime", "variant", "iqm", "ci_low", "ci_high", "mean", "median",
    "optimality_gap", "datasets_covered", "seeds_per_dataset", "runs",
]


def group_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator for one group: reproducible, and independent of which other groups exist."""
    words = [zlib.crc32(str(k).encode()) for k in key]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def _scores_of(normalised: Normalised | pd.DataFrame) -> pd.DataFrame:
    return normalised.scores if isinstance(normalised, Normalised) else normalised


def task_scores(normalised: Normalised | pd.DataFrame, *, variants: Sequence[str] | None = ("full",),
                rounds: int = stats.DEFAULT_ROUNDS, confidence: float = 0.95, seed: int = 0,
                resample_datasets: bool = False) -> pd.DataFrame:
    """Per model, task, regime and variant: IQM of normalised scores pooled over datasets x seeds,
    its stratified-bootstrap interval, mean, median, optimality gap and the coverage counts.

    ``seeds_per_dataset`` is the smallest number of runs of the model on any of its datasets.
    """
    scores = _scores_of(normalised)
    if variants is not None:
        scores = scores[scores["variant"].isin(variants)]
    rows = []
    for key, part in scores.groupby(GROUP, sort=True):
        groups = [g["score"].to_numpy() for _, g in part.groupby("dataset", sort=True)]
        est = stats.interval_estimate(groups, stats.iqm, rounds=rounds, confidence=confidence,
                                      rng=group_rng(seed, *key), resample_datasets=resample_datasets)
        runs = stats.pooled(groups)
        rows.append({
            **dict(zip(GROUP, key)), "iqm": est.point, "ci_low": est.low, "ci_high": est.high,
            "mean": float(stats.mean(runs)), "median": float(stats.median(runs)),
            "optimality_gap": float(stats.optimality_gap(runs)),
            "datasets_covered": len(groups), "seeds_per_dataset": min(len(g) for g in groups),
            "runs": int(runs.size),
        })
    return pd.DataFrame(rows, columns=TASK_SCORE_COLUMNS)


def dataset_summary(table: pd.DataFrame, *, variants: Sequence[str] | None = ("full",),
                    rounds: int = stats.DEFAULT_ROUNDS, confidence: float = 0.95,
                    seed: int = 0) -> pd.DataFrame:
    """Raw metric per model and dataset: runs, mean, std (ddof=1; NaN for one run), IQM over seeds
    and the IQM's bootstrap interval (seeds resampled)."""
    if variants is not None:
        table = table[table["variant"].isin(variants)]
    keys = ["task", "dataset", "metric", "model", "regime", "variant"]
    rows = []
    for key, part in table.groupby(keys, sort=True):
        values = part["value"].to_numpy()
        est = stats.interval_estimate([values], stats.iqm, rounds=rounds, confidence=confidence,
                                      rng=group_rng(seed, *key))
        rows.append({**dict(zip(keys, key)), "runs": values.size, "mean": float(values.mean()),
                     "std": float(values.std(ddof=1)) if values.size > 1 else float("nan"),
                     "iqm": est.point, "ci_low": est.low, "ci_high": est.high})
    return pd.DataFrame(rows, columns=[*keys, "runs", "mean", "std", "iqm", "ci_low", "ci_high"])


def variant_curves(table: pd.DataFrame, kind: Literal["partition", "few_shot"], *,
                   rounds: int = stats.DEFAULT_ROUNDS, confidence: float = 0.95,
                   seed: int = 0) -> pd.DataFrame:
    """Raw metric against training-set fraction (``partition``, with the full set as x = 1.0) or
    shots per class (``few_shot``): per model, dataset and x the mean over seeds and the bootstrap
    interval of that mean. Empty when the table has no runs of that kind."""
    prefix = f"{kind}:"
    part = table[table["variant"].str.startswith(prefix)].copy()
    columns = ["task", "dataset", "metric", "model", "regime", "x", "runs", "mean", "ci_low", "ci_high"]
    if part.empty:
        return pd.DataFrame(columns=columns)
    part["x"] = part["variant"].str.slice(len(prefix)).astype(float)
    if kind == "partition":  # close the curve at the full training set where it was run
        curve_keys = part[["task", "dataset", "metric", "model", "regime"]].drop_duplicates()
        full = table[table["variant"] == "full"].merge(curve_keys)
        part = pd.concat([part, full.assign(x=1.0)], ignore_index=True)
    keys = ["task", "dataset", "metric", "model", "regime", "x"]
    rows = []
    for key, grp in part.groupby(keys, sort=True):
        values = grp["value"].to_numpy()
        est = stats.interval_estimate([values], stats.mean, rounds=rounds, confidence=confidence,
                                      rng=group_rng(seed, kind, *key))
        rows.append({**dict(zip(keys, key)), "runs": values.size, "mean": est.point,
                     "ci_low": est.low, "ci_high": est.high})
    return pd.DataFrame(rows, columns=columns)


def coverage_gaps(table: pd.DataFrame, *, required_datasets: dict[str, Sequence[str]] | None = None,
                  required_seeds: Sequence[int] | int | None = None) -> pd.DataFrame:
    """What each model lacks within its (task, regime, variant) group; one row per gap.

    Required datasets: ``required_datasets[task]`` or, by default, every dataset any model of the
    group has. Required seeds per dataset: the seed ids in ``required_seeds``, at least that many
    runs if it is an int, or by default every seed any model of the group ran on that dataset.
    Columns: task, regime, variant, model, dataset, missing (``"dataset"`` or
    ``"seeds 10, 42"`` or ``"runs: 3 of 7"``).
    """
    rows = []
    for (task, regime, variant), grp in table.groupby(["task", "regime", "variant"], sort=True):
        datasets = sorted(required_datasets[task]) if required_datasets and task in required_datasets \
            else sorted(grp["dataset"].unique())
        seeds_seen = grp.groupby("dataset")["seed"].apply(lambda s: sorted(set(s)))
        for model, runs in grp.groupby("model", sort=True):
            have = runs.groupby("dataset")["seed"].apply(set)
            for dataset in datasets:
                base = {"task": task, "regime": regime, "variant": variant, "model": model, "dataset": dataset}
                if dataset not in have:
                    rows.append({**base, "missing": "dataset"})
                    continue
                if isinstance(required_seeds, int):
                    if len(have[dataset]) < required_seeds:
                        rows.append({**base, "missing": f"runs: {len(have[dataset])} of {required_seeds}"})
                    continue
                wanted = required_seeds if required_seeds is not None else seeds_seen.get(dataset, [])
                lacking = sorted(set(wanted) - have[dataset])
                if lacking:
                    rows.append({**base, "missing": "seeds " + ", ".join(map(str, lacking))})
    return pd.DataFrame(rows, columns=["task", "regime", "variant", "model", "dataset", "missing"])

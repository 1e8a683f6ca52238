"""The verdict between two models: is A better than B on Mars-Bench, and how sure is it?

`compare_models` takes a tidy results table (e.g. a store's, `ResultsStore.to_table`) and two
model labels, keeps the datasets both were run on (same regime and variant, full training set by
default), normalises each dataset's headline metric and reports:

- the IQM of the normalised scores of each model and their difference, with a stratified
  bootstrap interval: runs resampled within each dataset with the same draws for both models
  (runs paired by position, i.e. seed order, as a store's table lists them; the same datasets
  drawn for both when datasets are resampled too);
- the probability of improvement P(a run of A beats a run of B on the same dataset), averaged
  over datasets, with its bootstrap interval (`aggregate.stats`);
- per dataset: both means and standard deviations over seeds, and the winner (a tie where the
  difference of the means is within both standard errors).

The verdict: "A better" where the difference's interval lies above 0, "B better" below, else
"no significant difference" -- never a verdict from point estimates alone.

`comparison_scope` says what a comparison asked for covers (one regime, the datasets and seeds)
and which ``(model, dataset, seed)`` runs of it the table lacks; `marsbench compare` refuses to
give a verdict on a partial set, and with ``--run`` runs the missing ones first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .normalise import Normaliser, default_normaliser, select_headline
from .stats import (
    DEFAULT_ROUNDS,
    iqm,
    percentile_interval,
    probability_of_improvement_interval,
    stratified_bootstrap,
)


class CompareError(ValueError):
    """The table cannot answer the question (a model absent, no shared dataset, ...)."""


@dataclass(frozen=True)
class Comparison:
    model_a: str
    model_b: str
    regime: str
    datasets: list[str]
    iqm_a: float
    iqm_b: float
    difference: float
    difference_ci: tuple[float, float]
    probability_of_improvement: float
    probability_ci: tuple[float, float]
    per_dataset: pd.DataFrame
    confidence: float
    rounds: int
    normaliser: str

    @property
    def verdict(self) -> str:
        low, high = self.difference_ci
        if low > 0:
            return f"{self.model_a} better"
        if high < 0:
            return f"{self.model_b} better"
        return "no significant difference"

    def to_dict(self) -> dict:
        return {"model_a": self.model_a, "model_b": self.model_b, "regime": self.regime,
                "datasets": self.datasets, "iqm_a": self.iqm_a, "iqm_b": self.iqm_b,
                "difference": self.difference, "difference_ci": list(self.difference_ci),
                "probability_of_improvement": self.probability_of_improvement,
                "probability_ci": list(self.probability_ci), "verdict": self.verdict,
                "confidence": self.confidence, "rounds": self.rounds,
                "normaliser": self.normaliser,
                "per_dataset": self.per_dataset.to_dict(orient="records")}


@dataclass(frozen=True)
class Scope:
    """What a comparison covers: one regime, its datasets and seeds, and the runs of that
    grid the table lacks, as ``(model, dataset, seed)``."""

    regime: str
    datasets: list[str]
    seeds: list[int]
    missing: list[tuple[str, str, int]]


def comparison_scope(table: pd.DataFrame, models: tuple[str, str], *,
                     regime: str | None = None, variant: str = "full",
                     datasets: list[str] | None = None, seeds: list[int] | None = None,
                     default_regime: str | None = None,
                     default_seeds: list[int] | None = None, allow_absent: bool = False
                     ) -> Scope:
    """The regime (given, else the one both models share, else the only one either has, else
    ``default_regime``), the datasets (given, else every dataset either model has runs on in
    that regime), the seeds (given, else every seed either has there, else
    ``default_seeds``), and the runs of ``models x datasets x seeds`` missing from ``table``.
    A model without a single run is refused (a typo, likely) unless ``allow_absent``."""
    rows = table[(table["variant"].astype(str) == variant) & table["model"].isin(models)]
    for name in models if not allow_absent else ():
        if name not in set(rows["model"]):
            from ..errors import did_you_mean

            present = sorted(set(table.loc[table["variant"].astype(str) == variant, "model"]))
            raise CompareError(f"model {name!r} has no {variant} runs in the table; "
                               + did_you_mean(name, present))
    if regime is None:
        regimes = sorted(set(rows["regime"]))
        shared = [r for r in regimes if set(models) <= set(rows.loc[rows["regime"] == r,
                                                                    "model"])]
        if len(shared) == 1 or (not shared and len(regimes) == 1):
            regime = (shared or regimes)[0]
        elif not regimes and default_regime:
            regime = default_regime
        else:
            raise CompareError(f"choose a regime (the two models were run in "
                               f"{', '.join(shared or regimes) or 'none'})")
    rows = rows[rows["regime"] == regime]
    datasets = list(datasets or sorted(set(rows["dataset"])))
    if not datasets:
        raise CompareError(f"neither model has {variant} runs in regime {regime}: name the "
                           "datasets to compare on")
    rows = rows[rows["dataset"].isin(datasets)]
    seeds = [int(s) for s in (seeds or sorted(set(rows["seed"])) or default_seeds or [])]
    if not seeds:
        raise CompareError("no seeds to compare: name them")
    present = set(zip(rows["model"], rows["dataset"], rows["seed"].astype(int)))
    missing = [(m, d, s) for m in models for d in datasets for s in seeds
               if (m, d, s) not in present]
    return Scope(regime, datasets, seeds, missing)


def describe_missing(missing: list[tuple[str, str, int]]) -> str:
    """``A on mb-x (seeds 0, 1); B on mb-y (seed 0)``: the runs, grouped by model and dataset."""
    grouped: dict[tuple[str, str], list[int]] = {}
    for model, dataset, seed in missing:
        grouped.setdefault((model, dataset), []).append(seed)
    return "; ".join(f"{m} on {d} (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})"
                     for (m, d), s in grouped.items())


def compare_models(table: pd.DataFrame, model_a: str, model_b: str, *,
                   regime: str | None = None, variant: str = "full",
                   datasets: list[str] | None = None, seeds: list[int] | None = None,
                   normaliser: Normaliser | None = None,
                   rounds: int = DEFAULT_ROUNDS, confidence: float = 0.95, seed: int = 0,
                   resample_datasets: bool = False) -> Comparison:
    """The verdict between ``model_a`` and ``model_b`` (module doc); ``seeds`` keeps those
    seeds' runs only."""
    if model_a == model_b:
        raise CompareError("compare needs two different models")
    table = table[table["variant"].astype(str) == variant]
    if seeds:
        table = table[table["seed"].isin(list(seeds))]
    present = set(table["model"])
    for name in (model_a, model_b):
        if name not in present:
            from ..errors import did_you_mean

            raise CompareError(f"model {name!r} has no {variant} runs in the table; "
                               + did_you_mean(name, sorted(present)))
    table = table[table["model"].isin([model_a, model_b])]
    regimes = sorted(set(table["regime"]))
    if regime is None:
        shared = [r for r in regimes
                  if {model_a, model_b} <= set(table.loc[table["regime"] == r, "model"])]
        if len(shared) != 1:
            raise CompareError(f"choose a regime (both models were run in {shared or 'none'})"
                               if shared else "the two models share no regime")
        regime = shared[0]
    table = table[table["regime"] == regime]
    if datasets:
        table = table[table["dataset"].isin(datasets)]
    headline = select_headline(table)
    both = sorted(set(headline.loc[headline["model"] == model_a, "dataset"])
                  & set(headline.loc[headline["model"] == model_b, "dataset"]))
    if not both:
        raise CompareError(f"{model_a} and {model_b} share no dataset in regime {regime}")
    headline = headline[headline["dataset"].isin(both)]
    norm = normaliser or default_normaliser().merged(Normaliser.from_table(
        headline, version="table", source="min and max of the compared runs"))
    scores = norm.apply(headline).scores
    kept = sorted(set(scores.loc[scores["model"] == model_a, "dataset"])
                  & set(scores.loc[scores["model"] == model_b, "dataset"]))
    if not kept:
        raise CompareError("no dataset of the two models has usable normaliser bounds")

    def groups(model: str) -> list[np.ndarray]:
        rows = scores[scores["model"] == model]
        return [rows.loc[rows["dataset"] == d, "score"].to_numpy(float) for d in kept]

    ga, gb = groups(model_a), groups(model_b)
    boot_a = stratified_bootstrap(ga, iqm, rounds=rounds, rng=seed,
                                  resample_datasets=resample_datasets)
    boot_b = stratified_bootstrap(gb, iqm, rounds=rounds, rng=seed,
                                  resample_datasets=resample_datasets)
    iqm_a, iqm_b = float(iqm(np.concatenate(ga))), float(iqm(np.concatenate(gb)))
    poi = probability_of_improvement_interval(ga, gb, rounds=rounds, confidence=confidence,
                                              rng=seed)
    rows = []
    for dataset, a, b in zip(kept, ga, gb):
        metric = headline.loc[headline["dataset"] == dataset, "metric"].iloc[0]
        raw = headline[headline["dataset"] == dataset]
        ra = raw.loc[raw["model"] == model_a, "value"].to_numpy(float)
        rb = raw.loc[raw["model"] == model_b, "value"].to_numpy(float)
        se = np.sqrt(_var(ra) / len(ra) + _var(rb) / len(rb))
        gap = ra.mean() - rb.mean()
        winner = "tie" if abs(gap) <= se else (model_a if gap > 0 else model_b)
        rows.append({"dataset": dataset, "metric": metric, "mean_a": ra.mean(),
                     "std_a": _std(ra), "seeds_a": len(ra), "mean_b": rb.mean(),
                     "std_b": _std(rb), "seeds_b": len(rb), "winner": winner})
    return Comparison(model_a, model_b, regime, kept, iqm_a, iqm_b, iqm_a - iqm_b,
                      percentile_interval(boot_a - boot_b, confidence), poi.point,
                      (poi.low, poi.high), pd.DataFrame(rows), confidence, rounds,
                      norm.version)


def _var(x: np.ndarray) -> float:
    return float(x.var(ddof=1)) if len(x) > 1 else 0.0


def _std(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")

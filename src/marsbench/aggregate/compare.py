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


def compare_models(table: pd.DataFrame, model_a: str, model_b: str, *,
                   regime: str | None = None, variant: str = "full",
                   datasets: list[str] | None = None, normaliser: Normaliser | None = None,
                   rounds: int = DEFAULT_ROUNDS, confidence: float = 0.95, seed: int = 0,
                   resample_datasets: bool = False) -> Comparison:
    """The verdict between ``model_a`` and ``model_b`` (module doc)."""
    if model_a == model_b:
        raise CompareError("compare needs two different models")
    table = table[table["variant"].astype(str) == variant]
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

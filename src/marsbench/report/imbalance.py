"""The report's class-imbalance section: per dataset (and regime, model), each strategy's change
in the headline test metric and in tail recall over the ``imbalance=none`` runs of the same model,
seed by seed, with a bootstrap interval over the seeds; and which strategy wins where.

Built only when the records hold runs that differ in the run option ``imbalance``
(docs/imbalance.md). Runs are paired by seed: a strategy's seed without a ``none`` run of that
seed is left out (the ``seeds`` column counts the pairs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from marsbench.aggregate.stats import percentile_interval

IMBALANCE_COLUMNS = ["regime", "dataset", "model", "strategy", "seeds", "metric",
                     "delta_headline", "headline_low", "headline_high", "delta_tail", "tail_low",
                     "tail_high", "best", "ci_excludes_zero"]
TAIL = "recall_tail"


def _base_label(spec) -> str:
    """The run's report label with ``imbalance`` at its default (the runs it is compared with)."""
    options = dataclasses.replace(spec.options, imbalance="none")
    return spec.replace(options=options).label


def _interval(deltas: np.ndarray, rounds: int, rng: np.random.Generator,
              confidence: float) -> tuple[float, float]:
    if len(deltas) < 2:
        return math.nan, math.nan
    means = rng.choice(deltas, size=(rounds, len(deltas))).mean(1)
    return percentile_interval(means, confidence)


def _ci(low: float, high: float) -> str:
    return f"[{low:+.3f}, {high:+.3f}]" if math.isfinite(low) else "(one seed: no interval)"


def _note(dataset: str, regime: str, model: str, metric: str, part: list[dict],
          best: dict) -> str:
    """One line per (dataset, regime, model): every strategy's change over none, the winner."""
    each = "; ".join(f"{r['strategy']} {r['delta_headline']:+.3f} "
                     f"{_ci(r['headline_low'], r['headline_high'])}, tail {r['delta_tail']:+.3f}"
                     for r in part)
    verdict = ("its interval excludes 0" if best["ci_excludes_zero"]
               else "its interval includes 0: no strategy is shown to beat none")
    return (f"Imbalance: {dataset} ({regime}, {model}), change over imbalance=none in {metric} "
            f"with a bootstrap interval over {best['seeds']} paired seed(s), and in tail recall: "
            f"{each}. Best: {best['strategy']}; {verdict}.")


def imbalance_table(matched: Mapping[tuple, Any], headline: Mapping[str, str], *,
                    rounds: int, seed: int, confidence: float) -> tuple[pd.DataFrame, list[str]]:
    """(table, notes): the section's rows (`IMBALANCE_COLUMNS`) and one note per (regime,
    dataset, model) naming the best strategy; both empty when no run differs in ``imbalance``.
    ``matched``: (label, dataset, regime, variant, seed) -> record (full training set used);
    ``headline``: dataset -> its headline metric."""
    runs: dict[tuple, dict[str, dict[int, dict]]] = {}
    for (_, dataset, regime, variant, run_seed), rec in matched.items():
        strategy = getattr(rec.spec.options, "imbalance", None)
        if variant != "full" or strategy is None:
            continue
        group = (regime, dataset, _base_label(rec.spec))
        runs.setdefault(group, {}).setdefault(strategy, {})[int(run_seed)] = \
            rec.metrics.get("test") or {}
    if not any(set(by) - {"none"} for by in runs.values()):
        return pd.DataFrame(columns=IMBALANCE_COLUMNS), []
    rng = np.random.default_rng(seed)
    rows, notes = [], []
    for (regime, dataset, model), by in sorted(runs.items()):
        base = by.get("none", {})
        metric = headline.get(dataset, "f1_weighted")
        part = []
        for strategy in sorted(set(by) - {"none"}):
            seeds = sorted(set(by[strategy]) & set(base))
            if not seeds:
                continue
            row = {"regime": regime, "dataset": dataset, "model": model, "strategy": strategy,
                   "seeds": len(seeds), "metric": metric}
            for name, key in (("headline", metric), ("tail", TAIL)):
                d = np.array([by[strategy][s].get(key, math.nan) - base[s].get(key, math.nan)
                              for s in seeds], dtype=float)
                d = d[np.isfinite(d)]
                row[f"delta_{name}"] = float(d.mean()) if len(d) else math.nan
                row[f"{name}_low"], row[f"{name}_high"] = _interval(d, rounds, rng, confidence)
            part.append(row)
        if not part:
            notes.append(f"Imbalance: {dataset} · {regime} · {model} has no imbalance=none runs "
                         "with the same seeds to compare with.")
            continue
        scored = [r for r in part if math.isfinite(r["delta_headline"])]
        best = max(scored, key=lambda r: r["delta_headline"]) if scored else None
        for r in part:
            r["best"] = r is best
            r["ci_excludes_zero"] = bool(r["headline_low"] > 0 or r["headline_high"] < 0)
        rows += part
        if best is not None:
            notes.append(_note(dataset, regime, model, metric, part, best))
    return pd.DataFrame(rows, columns=IMBALANCE_COLUMNS), notes


IMBALANCE_INTRO = ("Each class-imbalance strategy (run option `imbalance`, docs/imbalance.md) "
                   "against the `imbalance=none` runs of the same model, paired by seed: the change "
                   "in the headline test metric and in tail-class recall, with a bootstrap "
                   "interval over the paired seeds; the best strategy per dataset is marked, and "
                   "whether its interval excludes 0. `tables/imbalance.csv`.")


def imbalance_blocks(data, task: str) -> list:
    """Per regime: one row per (dataset, model, strategy) (`section_tables.Block`)."""
    from .section_tables import Block, _num

    if task != "classification" or data.sections.imbalance.empty:
        return []
    pct = f"{100 * data.confidence:g} %"
    out = []
    table = data.sections.imbalance
    for regime in sorted(set(table["regime"])):
        rows = [{"dataset": r.dataset, "model": r.model, "strategy": r.strategy,
                 "seeds": str(r.seeds), "metric": r.metric,
                 "Δ headline": _num(r.delta_headline),
                 f"{pct} CI": f"[{_num(r.headline_low)}, {_num(r.headline_high)}]",
                 "Δ tail recall": _num(r.delta_tail),
                 f"{pct} CI, tail": f"[{_num(r.tail_low)}, {_num(r.tail_high)}]",
                 "best": ("best, CI excludes 0" if r.ci_excludes_zero else "best, CI includes 0")
                 if r.best else ""}
                for r in table[table["regime"] == regime].itertuples(index=False)]
        out.append(Block(regime, [("Change over imbalance=none (test)", pd.DataFrame(rows))]))
    return out

"""The report's rankings, calibration and cost sections, computed from the results table and the
run records (no plotting, no files).

- Rankings (`marsbench.aggregate.rankings`): per (task, regime) with ≥2 models, significance
  tiers, rank intervals and the win-probability matrix of the paired bootstrap on normalised
  scores (raw values where the group has one dataset and no normalised scores), and the seeds
  needed to detect a difference in the raw metric (`seed_power_table`, per dataset).
- Calibration: the test ECE, ECE after temperature scaling and AURC each classification record
  holds, mean over seeds per (regime, dataset, model), and, where the records' predictions CSVs
  can be read, reliability diagrams and risk-coverage curves pooled over a model's seeds on one
  dataset (`marsbench.metrics.calibration`).
- Cost: the records' ``extra["cost"]`` and ``timings`` per (task, regime, model), with the
  headline score and the Pareto front (higher score, lower cost).

Probe regimes (knn, linear_probe, mlp_probe, few_shot_episodes) are regimes like any other: every
table here is keyed by regime, so they are never pooled with feature_extraction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marsbench.aggregate import rankings
from marsbench.metrics.calibration import reliability_diagram, risk_coverage_curve

TIER_COLUMNS = ["task", "regime", "basis", "model", "score", "tier", "leader", "ci_low", "ci_high"]
RANK_COLUMNS = ["task", "regime", "basis", "model", "score", "rank_point", "rank_low", "rank_high"]
WIN_COLUMNS = ["task", "regime", "basis", "model", "opponent", "probability"]
POWER_COLUMNS = ["task", "regime", "dataset", "metric", "sd", "df", "delta", "effect_size",
                 "seeds_exact", "seeds_needed", "achieved_power", "power", "alpha"]
CALIBRATION_COLUMNS = ["task", "regime", "dataset", "model", "runs", "ece", "ece_temperature_scaled",
                       "aurc", "temperature"]
RELIABILITY_COLUMNS = ["task", "regime", "dataset", "model", "runs", "decisions", "bin", "bin_low",
                       "bin_high", "confidence", "accuracy", "count"]
RISK_COLUMNS = ["task", "regime", "dataset", "model", "runs", "decisions", "coverage", "risk",
                "aurc"]
STAGES = ["setup_s", "feature_extraction_s", "training_s", "evaluation_s", "total_s"]
COST_COLUMNS = ["task", "regime", "model", "runs", "datasets", "flops_per_image", "parameters",
                "trainable_parameters", *STAGES, "peak_memory_bytes", "peak_memory_kind",
                "energy_joules", "energy_runs", "energy_source", "score", "score_kind",
                "pareto_flops", "pareto_time"]
POWER_DELTAS = (0.01, 0.02, 0.05)
POWER, ALPHA = 0.8, 0.05
CALIBRATION_METRICS = ("ece", "ece_temperature_scaled", "aurc")
RISK_POINTS = 201  # risk-coverage curves are stored at this many coverages


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=columns)


@dataclass
class Sections:
    """What the three sections show; ``notes`` go to the report's notes."""

    tiers: pd.DataFrame = field(default_factory=lambda: _empty(TIER_COLUMNS))
    rank_intervals: pd.DataFrame = field(default_factory=lambda: _empty(RANK_COLUMNS))
    win_probability: pd.DataFrame = field(default_factory=lambda: _empty(WIN_COLUMNS))
    seed_power: pd.DataFrame = field(default_factory=lambda: _empty(POWER_COLUMNS))
    calibration: pd.DataFrame = field(default_factory=lambda: _empty(CALIBRATION_COLUMNS))
    reliability: pd.DataFrame = field(default_factory=lambda: _empty(RELIABILITY_COLUMNS))
    risk_coverage: pd.DataFrame = field(default_factory=lambda: _empty(RISK_COLUMNS))
    cost: pd.DataFrame = field(default_factory=lambda: _empty(COST_COLUMNS))
    splits: pd.DataFrame = field(default_factory=pd.DataFrame)  # report.splits
    imbalance: pd.DataFrame = field(default_factory=pd.DataFrame)  # report.imbalance
    science: pd.DataFrame = field(default_factory=pd.DataFrame)  # report.science
    notes: list[str] = field(default_factory=list)
    # classification models (task, regime) -> own models whose records lack the metrics
    uncalibrated: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    uncosted: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def _frame(rows: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    rows = [r for r in rows if len(r)]
    if not rows:
        return _empty(columns)
    return pd.concat(rows, ignore_index=True).loc[:, columns]


# -- rankings -----------------------------------------------------------------------------------

def rankings_tables(scores: pd.DataFrame, combined: pd.DataFrame, *, rounds: int, seed: int,
                    confidence: float) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Tiers, rank intervals, win probabilities and seed power per (task, regime), full training
    set. ``scores``: normalised scores (datasets without usable bounds already left out);
    ``combined``: the raw headline runs."""
    full = combined[combined["variant"] == "full"]
    normal = scores[scores["variant"] == "full"]
    tiers, ranks, wins, power, notes = [], [], [], [], []
    for (task, regime), raw in full.groupby(["task", "regime"], sort=True):
        models = sorted(raw["model"].unique())
        if len(models) < 2:
            notes.append(f"Rankings (significance tiers, rank intervals, win probabilities) need ≥2 "
                         f"models; {task} · {regime} has one ({models[0]}).")
            continue
        part = normal[(normal["task"] == task) & (normal["regime"] == regime)]
        if part["model"].nunique() >= 2:
            table, column, basis = part, "score", "normalised score"
        elif raw["dataset"].nunique() == 1:
            table, column, basis = raw, "value", f"raw {raw['metric'].iloc[0]}"
        else:
            notes.append(f"{task} · {regime} is not ranked for noise: its datasets have no "
                         "normalisation bounds, and raw values of several datasets cannot be pooled.")
            table = None
        key = {"task": task, "regime": regime}
        if table is not None:
            args = dict(column=column, rounds=rounds, seed=seed)
            try:
                t = rankings.significance_tiers(table, confidence=confidence, **args)
                r = rankings.rank_intervals(table, confidence=confidence, **args)
                w = rankings.win_probability_matrix(table, **args)
            except ValueError as err:
                notes.append(f"{task} · {regime} is not ranked for noise: {err}")
            else:
                tiers.append(t.assign(**key, basis=basis))
                ranks.append(r.assign(**key, basis=basis))
                long = pd.DataFrame([(a, b, float(w.at[a, b])) for a in w.index for b in w.columns
                                     if a != b], columns=["model", "opponent", "probability"])
                wins.append(long.assign(**key, basis=basis))
        try:
            p = rankings.seed_power_table(raw, deltas=POWER_DELTAS, power=POWER, alpha=ALPHA,
                                          column="value", by="dataset")
        except ValueError:
            p = pd.DataFrame()
        if len(p):
            metric = raw.groupby("dataset")["metric"].first()
            power.append(p.assign(**key, metric=p["dataset"].map(metric), power=POWER, alpha=ALPHA))
    return {"tiers": _frame(tiers, TIER_COLUMNS), "rank_intervals": _frame(ranks, RANK_COLUMNS),
            "win_probability": _frame(wins, WIN_COLUMNS),
            "seed_power": _frame(power, POWER_COLUMNS)}, notes


# -- calibration --------------------------------------------------------------------------------

def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out if math.isfinite(out) else float("nan")


def read_test_predictions(path: str | Path | None) -> tuple[np.ndarray, np.ndarray, str, tuple] | None:
    """(probabilities, labels, kind, class columns) of the test split of a predictions CSV
    (split, id, true, pred, p_<class>...), or None when it cannot be read. ``true`` holding
    ``[0 1 ...]`` is multi-label (one probability per label); otherwise class indices, and each
    row's probabilities are renormalised (the CSV rounds them to 6 decimals)."""
    if not path:
        return None
    path = Path(path)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype={"true": str, "split": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    cols = tuple(c for c in frame.columns if str(c).startswith("p_"))
    if not cols or "true" not in frame.columns or "split" not in frame.columns:
        return None
    test = frame[frame["split"] == "test"]
    if test.empty:
        return None
    probs = test.loc[:, list(cols)].to_numpy(dtype=float)
    if not np.all(np.isfinite(probs)) or np.any((probs < 0) | (probs > 1)):
        return None
    true = test["true"].astype(str).str.strip()
    try:
        if true.str.startswith("[").any():
            labels = np.array([[int(v) for v in t.strip("[]").split()] for t in true])
            if labels.shape != probs.shape:
                return None
            return probs, labels, "multilabel", cols
        labels = true.astype(int).to_numpy()
    except ValueError:
        return None
    sums = probs.sum(axis=1, keepdims=True)
    if np.any(np.abs(sums - 1.0) > 1e-3) or labels.min() < 0 or labels.max() >= probs.shape[1]:
        return None
    return probs / sums, labels, "multiclass", cols


def calibration_tables(matched: Mapping[tuple, Any], tasks: Mapping[str, str]) -> dict[str, Any]:
    """Mean over seeds of each calibration metric per (task, regime, dataset, model), from the
    matched full-training-set classification records that hold them; reliability diagrams and
    risk-coverage curves of the test predictions of those runs, pooled over seeds."""
    rows, preds, without = [], {}, {}
    for (model, dataset, regime, variant, seed), rec in matched.items():
        task = tasks.get(dataset)
        if variant != "full" or task != "classification":
            continue
        test = rec.metrics.get("test") or {}
        values = {m: _number(test.get(m)) for m in CALIBRATION_METRICS}
        if all(math.isnan(v) for v in values.values()):
            without.setdefault((task, regime), set()).add(model)
            continue
        info = rec.extra.get("calibration") if isinstance(rec.extra.get("calibration"), Mapping) else {}
        rows.append({"task": task, "regime": regime, "dataset": dataset, "model": model,
                     "seed": seed, **values, "temperature": _number(info.get("temperature"))})
        read = read_test_predictions(getattr(rec, "predictions_path", None))
        if read is not None:
            preds.setdefault((task, regime, dataset, model), []).append(read)
    if rows:
        frame = pd.DataFrame(rows)
        keys = ["task", "regime", "dataset", "model"]
        table = frame.groupby(keys, sort=True).agg(
            runs=("seed", "size"), ece=("ece", "mean"),
            ece_temperature_scaled=("ece_temperature_scaled", "mean"), aurc=("aurc", "mean"),
            temperature=("temperature", "mean")).reset_index().loc[:, CALIBRATION_COLUMNS]
        calibrated = set(zip(frame["task"], frame["regime"], frame["model"]))
    else:
        table, calibrated = _empty(CALIBRATION_COLUMNS), set()
    uncalibrated = {k: sorted(m for m in ms if (*k, m) not in calibrated) for k, ms in without.items()}
    reliability, risk = [], []
    for (task, regime, dataset, model), runs in sorted(preds.items()):
        columns = runs[0][3]
        kind = runs[0][2]
        runs = [r for r in runs if r[3] == columns and r[2] == kind]
        probs = np.concatenate([r[0] for r in runs])
        labels = np.concatenate([r[1] for r in runs])
        key = {"task": task, "regime": regime, "dataset": dataset, "model": model,
               "runs": len(runs), "decisions": int(labels.size if kind == "multilabel" else len(labels))}
        try:
            bins = reliability_diagram(probs, labels, kind=kind)
            curve = risk_coverage_curve(probs, labels, kind=kind)
        except ValueError:
            continue
        reliability.append(bins.assign(**key))
        keep = np.unique(np.linspace(0, len(curve.coverage) - 1, RISK_POINTS).round().astype(int))
        risk.append(pd.DataFrame({"coverage": curve.coverage[keep], "risk": curve.risk[keep],
                                  "aurc": curve.aurc}).assign(**key))
    return {"calibration": table, "reliability": _frame(reliability, RELIABILITY_COLUMNS),
            "risk_coverage": _frame(risk, RISK_COLUMNS),
            "uncalibrated": {k: v for k, v in uncalibrated.items() if v}}


# -- cost ---------------------------------------------------------------------------------------

def pareto_front(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """True where a point is not dominated: no other point has a score at least as high and a
    cost at least as low, one of them strictly. NaN score or cost: never on the front."""
    scores, costs = np.asarray(scores, float), np.asarray(costs, float)
    ok = np.isfinite(scores) & np.isfinite(costs)
    out = np.zeros(len(scores), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok & ((scores >= scores[i]) & (costs <= costs[i])
                       & ((scores > scores[i]) | (costs < costs[i])))
        out[i] = not others.any()
    return out


def headline_scores(task_scores: pd.DataFrame, combined: pd.DataFrame) -> dict[tuple, tuple[float, str]]:
    """(task, regime, model) -> (score, what it is): the IQM of normalised scores of the report's
    aggregate table (full training set); where there is none and the group has one dataset, the
    mean raw metric over seeds."""
    out: dict[tuple, tuple[float, str]] = {}
    for r in task_scores[task_scores["variant"] == "full"].itertuples(index=False):
        if math.isfinite(r.iqm):
            out[(r.task, r.regime, r.model)] = (float(r.iqm), "IQM of normalised scores")
    full = combined[combined["variant"] == "full"]
    for (task, regime), part in full.groupby(["task", "regime"], sort=True):
        if part["dataset"].nunique() != 1:
            continue
        for model, runs in part.groupby("model"):
            out.setdefault((task, regime, model),
                           (float(runs["value"].mean()), f"mean {runs['metric'].iloc[0]}"))
    return out


def cost_table(matched: Mapping[tuple, Any], tasks: Mapping[str, str],
               scores: Mapping[tuple, tuple[float, str]]) -> tuple[pd.DataFrame, dict]:
    """Per (task, regime, model): the mean over its matched full-training-set runs of FLOPs per
    image, parameters and wall time per stage, the largest peak memory (with its kind), energy
    only over runs that measured it; the headline score; on which Pareto fronts it lies."""
    rows, without = [], {}
    for (model, dataset, regime, variant, seed), rec in matched.items():
        if variant != "full":
            continue
        task = tasks.get(dataset)
        cost = rec.extra.get("cost")
        cost = cost if isinstance(cost, Mapping) else {}
        timings = rec.timings if isinstance(rec.timings, Mapping) else {}
        if not cost and not any(s in timings for s in STAGES):
            without.setdefault((task, regime), set()).add(model)
            continue
        row = {"task": task, "regime": regime, "model": model, "dataset": dataset, "seed": seed}
        for name in ("flops_per_image", "parameters", "trainable_parameters", "peak_memory_bytes",
                     "energy_joules"):
            row[name] = _number(cost.get(name))
        row["peak_memory_kind"] = str(cost.get("peak_memory_kind") or "")
        row["energy_source"] = str(cost.get("energy_source") or "")
        row.update({s: _number(timings.get(s)) for s in STAGES})
        rows.append(row)
    if not rows:
        return _empty(COST_COLUMNS), {k: sorted(v) for k, v in without.items()}
    frame = pd.DataFrame(rows)
    out = []
    for (task, regime, model), runs in frame.groupby(["task", "regime", "model"], sort=True):
        energy = runs["energy_joules"].dropna()
        measured = runs.loc[runs["energy_joules"].notna(), "energy_source"]
        sources = measured if len(measured) else runs["energy_source"]
        score, kind = scores.get((task, regime, model), (float("nan"), ""))
        out.append({
            "task": task, "regime": regime, "model": model, "runs": len(runs),
            "datasets": runs["dataset"].nunique(),
            **{c: runs[c].mean() for c in ("flops_per_image", "parameters", "trainable_parameters",
                                           *STAGES)},
            "peak_memory_bytes": runs["peak_memory_bytes"].max(),
            "peak_memory_kind": "; ".join(sorted({k for k in runs["peak_memory_kind"] if k})),
            "energy_joules": energy.mean() if len(energy) else float("nan"),
            "energy_runs": len(energy),
            "energy_source": "; ".join(sorted({s for s in sources if s})),
            "score": score, "score_kind": kind,
        })
    table = pd.DataFrame(out)
    table["pareto_flops"] = False
    table["pareto_time"] = False
    for _, idx in table.groupby(["task", "regime"]).groups.items():
        part = table.loc[idx]
        table.loc[idx, "pareto_flops"] = pareto_front(part["score"], part["flops_per_image"])
        table.loc[idx, "pareto_time"] = pareto_front(part["score"], part["total_s"])
    costed = set(zip(table["task"], table["regime"], table["model"]))
    missing = {k: sorted(m for m in v if (*k, m) not in costed) for k, v in without.items()}
    return table.loc[:, COST_COLUMNS], {k: v for k, v in missing.items() if v}


def build_sections(*, scores: pd.DataFrame, combined: pd.DataFrame,
                   task_scores: pd.DataFrame, matched: Mapping[tuple, Any], rounds: int, seed: int,
                   confidence: float) -> Sections:
    """All three sections, with a note for each that has no data."""
    ranked, notes = rankings_tables(scores, combined, rounds=rounds, seed=seed, confidence=confidence)
    tasks = dict(zip(combined["dataset"], combined["task"]))
    cal = calibration_tables(matched, tasks)
    cost, uncosted = cost_table(matched, tasks, headline_scores(task_scores, combined))
    if "classification" in set(combined["task"]) and cal["calibration"].empty:
        notes.append("Calibration: no calibration metrics in these runs (ECE, temperature-scaled "
                     "ECE and AURC come from classification run records).")
    if cost.empty:
        notes.append("Cost: no cost records in these runs (FLOPs, parameters, wall time, memory "
                      "and energy come from the run records).")
    from .imbalance import imbalance_table  # runs differing in the option imbalance

    imbalance, imbalance_notes = imbalance_table(
        matched, dict(zip(combined["dataset"], combined["metric"])), rounds=rounds, seed=seed,
        confidence=confidence)
    from .splits import split_comparison  # runs with a split scheme other than official

    splits = split_comparison(combined, rounds=rounds, seed=seed, confidence=confidence)
    from .science import science_table  # object counts / sizes, rare-class recall

    science = science_table(matched, tasks)
    return Sections(**ranked, splits=splits, calibration=cal["calibration"], reliability=cal["reliability"],
                    risk_coverage=cal["risk_coverage"], cost=cost, imbalance=imbalance, science=science,
                    notes=notes + imbalance_notes,
                    uncalibrated=cal["uncalibrated"], uncosted=uncosted)

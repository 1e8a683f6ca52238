"""Everything a report shows, computed once from a results table (no plotting, no files).

Besides the tidy table, `build_report_data` can take the runs' records (``records=``: a list of
`RunRecord` or a `ResultsStore`): the table cannot carry what only records know — whether a run
was on synthetic data (``extra['synthetic_data']``), per-class scores (``metrics['test']
['per_class_f1']`` ...) and training curves (``extra['history']``). Records are matched to the
table's own runs by (model label, dataset, regime, variant, seed) and the headline value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

import marsbench
from marsbench.aggregate import stats
from marsbench.aggregate.leaderboard import IncompleteRankingError, leaderboard
from marsbench.aggregate.normalise import (
    Normalised, Normaliser, default_normaliser, select_headline,
)
from marsbench.aggregate.summary import (
    coverage_gaps, dataset_summary, group_rng, task_scores, variant_curves,
)
from marsbench.aggregate.table import concat_tables, results_table
from marsbench.catalog import UnknownDatasetError, Variant, get_card

from .sections import Sections, build_sections

MIN_MODELS = 2  # a min-max score derived from the runs needs at least this many models
PROFILE_POINTS = 41
MATRIX_COLUMNS = ["task", "regime", "dataset", "metric", "model", "runs", "mean", "std", "best"]
PROFILE_COLUMNS = ["task", "regime", "model", "tau", "fraction", "ci_low", "ci_high"]
IMPROVEMENT_COLUMNS = ["task", "regime", "model", "other", "probability", "ci_low", "ci_high",
                       "datasets"]
PROVENANCE_COLUMNS = ["dataset", "metric", "kind", "min", "max", "models", "version", "source"]
PER_CLASS_COLUMNS = ["task", "dataset", "metric", "model", "regime", "class", "runs", "mean",
                     "std"]
HISTORY_COLUMNS = ["task", "dataset", "model", "regime", "seed", "epoch", "train_loss",
                   "val_loss"]


@dataclass
class ReportData:
    """The tables behind a report; `write_report` turns them into HTML, Markdown and CSV."""

    table: pd.DataFrame  # headline-metric runs, baselines included
    baseline_models: list[str]
    normaliser: Normaliser
    excluded: pd.DataFrame  # dataset, metric, reason, runs
    task_scores: pd.DataFrame  # per model/task/regime on the full training set, + 'baseline'
    dataset_summary: pd.DataFrame
    partition_curves: pd.DataFrame
    few_shot_curves: pd.DataFrame
    gaps: pd.DataFrame  # coverage gaps on the full training set
    leaderboard: pd.DataFrame | None
    leaderboard_error: str | None
    rounds: int
    seed: int
    confidence: float
    inputs: list[str] = field(default_factory=list)
    created: str = ""
    version: str = marsbench.__version__
    # dataset x model matrix: mean / std of the raw headline metric over seeds, full training set
    matrix: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=MATRIX_COLUMNS))
    # where each (dataset, metric)'s normalisation bounds came from: kind paper | derived | fixed | none
    provenance: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PROVENANCE_COLUMNS))
    profiles: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PROFILE_COLUMNS))
    improvement: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=IMPROVEMENT_COLUMNS))
    synthetic_datasets: list[str] = field(default_factory=list)  # own runs on synthetic data
    synthetic_runs: int = 0
    per_class: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PER_CLASS_COLUMNS))
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=HISTORY_COLUMNS))
    records_given: bool = False
    # rankings that survive noise, calibration, cost per result (see `sections`)
    sections: Sections = field(default_factory=Sections)

    @property
    def tasks(self) -> list[str]:
        order = ["classification", "segmentation", "detection"]
        present = set(self.table["task"])
        return [t for t in order if t in present]

    @property
    def synthetic(self) -> bool:
        return bool(self.synthetic_datasets)

    @property
    def models(self) -> list[str]:
        """Every model, own first (sorted), then the published baselines (sorted)."""
        names = set(self.table["model"])
        own = sorted(names - set(self.baseline_models))
        return own + sorted(names & set(self.baseline_models))

    def synthetic_message(self) -> str:
        """The banner text ('' for real data)."""
        if not self.synthetic:
            return ""
        return (f"{self.synthetic_runs} of the reported runs were trained and "
                f"tested on synthetic (procedurally drawn) images, not on the real Mars-Bench "
                f"datasets: {', '.join(self.synthetic_datasets)}. Their scores say nothing about "
                "real Mars imagery; do not publish or compare them as benchmark results.")

    def normaliser_lines(self) -> list[str]:
        """Where the normalisation bounds came from, truthfully, one line per kind."""
        out = []
        p = self.provenance
        labels = {
            "paper": "fixed bounds shipped with marsbench ({version}: {source})",
            "derived": "derived from these runs (min and max of the input runs, so scores "
                       "change when runs are added)",
            "fixed": "fixed bounds from normaliser {version} ({source})",
            "none": "no bounds: left out of the normalised aggregates",
        }
        for kind in ("paper", "fixed", "derived", "none"):
            part = p[p["kind"] == kind]
            if part.empty:
                continue
            first = part.iloc[0]
            text = labels[kind].format(version=first["version"], source=first["source"])
            out.append(f"{text}: {', '.join(part['dataset'])}")
        return out

    def normalisation_phrase(self, task: str | None = None) -> str:
        """'fixed' only where every bound used is fixed; else says which were derived."""
        p = self.provenance
        if task is not None:
            p = p[p["dataset"].isin(set(self.table.loc[self.table["task"] == task, "dataset"]))]
        kinds = set(p["kind"]) - {"none"}
        if kinds <= {"paper", "fixed"}:
            return "with fixed, saved bounds (see normaliser.json)"
        derived = ", ".join(p.loc[p["kind"] == "derived", "dataset"])
        if kinds == {"derived"}:
            return ("with bounds derived from these runs (min and max over the reported models; "
                    "not fixed: adding a model changes every score)")
        return f"with fixed bounds, except bounds derived from these runs for {derived}"

    def notes(self) -> list[str]:
        """Plain-language notes a reader must see: exclusions, gaps, the leaderboard refusal."""
        out = []
        for row in self.excluded.itertuples(index=False):
            out.append(f"{row.dataset} ({row.metric}) is left out of the normalised aggregates: "
                       f"{row.reason} ({row.runs} run(s)).")
        if len(self.gaps):
            for (model, task, regime), g in self.gaps.groupby(["model", "task", "regime"], sort=True):
                items = [f"{d} ({m})" for d, m in zip(g["dataset"], g["missing"])]
                out.append(f"{model} [{task}, {regime}] has incomplete results; its aggregate covers "
                           f"fewer runs than the others. Missing: {'; '.join(items)}.")
        if self.leaderboard_error:
            out.append("Leaderboard not written: " + self.leaderboard_error)
        out += self.sections.notes
        return out


# -- records ------------------------------------------------------------------------------------

def _as_records(records: Any) -> list:
    if records is None:
        return []
    if hasattr(records, "records") and callable(records.records):  # a ResultsStore
        records = records.records(status="ok")
    return [r for r in records if getattr(r, "status", "ok") == "ok"]


def _variant(text: str) -> str:
    try:
        return str(Variant.parse(text))
    except ValueError:
        return text


def _match_records(records: list, own: pd.DataFrame) -> dict[tuple, Any]:
    """Own headline rows' key (model, dataset, regime, variant, seed) -> the record behind it: the
    record with that key whose test headline value equals the table's (grid candidates share keys
    with seed runs), the newest where several do."""
    wanted = {(r.model, r.dataset, r.regime, r.variant, int(r.seed)): (r.metric, r.value)
              for r in own.itertuples(index=False)}
    out: dict[tuple, Any] = {}
    for rec in records:
        s = rec.spec
        key = (s.label, s.dataset, s.regime, _variant(s.variant), int(s.seed))
        if key not in wanted:
            continue
        metric, value = wanted[key]
        got = (rec.metrics.get("test") or {}).get(metric)
        if not isinstance(got, (int, float)) or not math.isclose(float(got), value, abs_tol=1e-12):
            continue
        if key not in out or rec.created_at >= out[key].created_at:
            out[key] = rec
    return out


def _synthetic(records: list, own: pd.DataFrame, table: pd.DataFrame) -> tuple[list[str], int]:
    """Datasets of own runs on synthetic data, and how many runs: records' extra['synthetic_data'],
    the catalog card's ``synthetic``, or a truthy ``synthetic`` column of the input table."""
    keys = set(zip(own["model"], own["dataset"], own["regime"], own["variant"], own["seed"]))
    runs: set[tuple] = set()
    for rec in records:
        s = rec.spec
        key = (s.label, s.dataset, s.regime, _variant(s.variant), int(s.seed))
        if key in keys and rec.extra.get("synthetic_data"):
            runs.add(key)
    for dataset in set(own["dataset"]):
        try:
            card_synthetic = get_card(dataset).synthetic
        except UnknownDatasetError:
            card_synthetic = False
        if card_synthetic:
            runs |= {k for k in keys if k[1] == dataset}
    if isinstance(table, pd.DataFrame) and "synthetic" in table.columns:
        flagged = table[table["synthetic"].fillna(False).astype(bool)]
        runs |= {(m, d, g, _variant(v), int(s)) for m, d, g, v, s in
                 zip(flagged["model"], flagged["dataset"], flagged["regime"], flagged["variant"],
                     flagged["seed"])} & keys
    return sorted({k[1] for k in runs}), len(runs)


def _per_class(matched: dict[tuple, Any], own: pd.DataFrame) -> pd.DataFrame:
    """Per-class test scores of the matched full-training-set runs, mean and std over seeds."""
    headline = dict(zip(own["dataset"], own["metric"]))
    tasks = dict(zip(own["dataset"], own["task"]))
    rows = []
    for (model, dataset, regime, variant, seed), rec in matched.items():
        if variant != "full":
            continue
        test = rec.metrics.get("test") or {}
        names = [f"per_class_{headline[dataset]}", "per_class_f1", "per_class_iou_reference",
                 "per_class_iou", *sorted(k for k in test if k.startswith("per_class_"))]
        name = next((n for n in names if isinstance(test.get(n), Mapping)), None)
        if name is None:
            continue
        for cls, value in test[name].items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                rows.append((tasks[dataset], dataset, name, model, regime, str(cls), seed, float(value)))
    if not rows:
        return pd.DataFrame(columns=PER_CLASS_COLUMNS)
    frame = pd.DataFrame(rows, columns=["task", "dataset", "metric", "model", "regime", "class",
                                        "seed", "value"])
    keys = ["task", "dataset", "metric", "model", "regime", "class"]
    out = frame.groupby(keys, sort=False)["value"].agg(runs="size", mean="mean", std="std").reset_index()
    order = {c: i for i, c in enumerate(dict.fromkeys(frame["class"]))}  # the metric's class order
    out["_order"] = out["class"].map(order)
    return (out.sort_values(["task", "dataset", "model", "regime", "_order"])
            .drop(columns="_order").reset_index(drop=True).loc[:, PER_CLASS_COLUMNS])


def _history(matched: dict[tuple, Any], own: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch train and validation loss of the matched full-training-set runs."""
    tasks = dict(zip(own["dataset"], own["task"]))
    rows = []
    for (model, dataset, regime, variant, seed), rec in matched.items():
        history = rec.extra.get("history") if variant == "full" else None
        for point in history or []:
            if not isinstance(point, Mapping) or "epoch" not in point:
                continue
            rows.append((tasks[dataset], dataset, model, regime, seed, int(point["epoch"]),
                         _num(point.get("train_loss")), _num(point.get("val_loss"))))
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    return frame.sort_values(["task", "dataset", "model", "regime", "seed", "epoch"]).reset_index(drop=True)


def _num(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return out if math.isfinite(out) else float("nan")


# -- normalisation provenance and the single-model rule ----------------------------------------

def normaliser_provenance(normaliser: Normaliser, combined: pd.DataFrame,
                          own: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, metric) of ``combined``: where its bounds came from. ``paper``: the shipped
    bounds; ``derived``: equal to the min and max of these runs (own runs or all runs, full
    training set), ``models`` then lists the models those runs are of; ``fixed``: other saved
    bounds; ``none``: no bounds."""
    paper = default_normaliser()
    rows = []
    for (dataset, metric), _ in combined.groupby(["dataset", "metric"], sort=True):
        b = normaliser.bounds.get((dataset, metric))
        base = {"dataset": dataset, "metric": metric, "models": ""}
        if b is None:
            rows.append({**base, "kind": "none", "min": np.nan, "max": np.nan,
                         "version": normaliser.version, "source": ""})
            continue
        base.update({"min": b.min, "max": b.max, "version": b.version, "source": b.source})
        shipped = paper.bounds.get((dataset, metric))
        if shipped is not None and b.version == paper.version and \
                (shipped.min, shipped.max) == (b.min, b.max):
            rows.append({**base, "kind": "paper"})
            continue
        kind, models = "fixed", ""
        for runs in (own, combined):
            full = runs[(runs["variant"] == "full") & (runs["dataset"] == dataset)
                        & (runs["metric"] == metric)]
            if len(full) and math.isclose(full["value"].min(), b.min, abs_tol=1e-12) and \
                    math.isclose(full["value"].max(), b.max, abs_tol=1e-12):
                kind, models = "derived", ", ".join(sorted(full["model"].unique()))
                break
        rows.append({**base, "kind": kind, "models": models})
    return pd.DataFrame(rows, columns=PROVENANCE_COLUMNS)


def _drop_single_model(normalised: Normalised, provenance: pd.DataFrame) -> Normalised:
    """Leave out datasets whose bounds were derived from one model's runs: min-max over one model
    scores it 0 to 1 by construction (IQM 0.5, interval [0, 1]), which means nothing."""
    bad = provenance[(provenance["kind"] == "derived")
                     & (provenance["models"].str.split(", ").str.len() < MIN_MODELS)]
    if bad.empty:
        return normalised
    scores, rows = normalised.scores, []
    for b in bad.itertuples(index=False):
        mask = (scores["dataset"] == b.dataset) & (scores["metric"] == b.metric)
        if mask.any():
            rows.append({"dataset": b.dataset, "metric": b.metric, "runs": int(mask.sum()),
                         "reason": f"needs ≥{MIN_MODELS} models: its bounds were derived from these "
                                   f"runs, which hold one model ({b.models}) only, and min-max over "
                                   "one model scores 0 to 1 by construction"})
        scores = scores[~mask]
    excluded = pd.concat([normalised.excluded, pd.DataFrame(rows, columns=normalised.excluded.columns)],
                         ignore_index=True) if rows else normalised.excluded
    return Normalised(scores.reset_index(drop=True), excluded)


# -- the paper table, profiles, probability of improvement -------------------------------------

def dataset_model_matrix(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Long form of the dataset x model matrix: per task, regime, dataset, metric and model the
    number of runs, mean and std (ddof=1; NaN for one run) of the raw metric over seeds on the
    full training set; ``best`` marks the highest mean of each row (ties at ``digits`` decimals
    all marked)."""
    full = table[table["variant"] == "full"]
    keys = ["task", "regime", "dataset", "metric", "model"]
    if full.empty:
        return pd.DataFrame(columns=MATRIX_COLUMNS)
    out = full.groupby(keys, sort=True)["value"].agg(runs="size", mean="mean", std="std").reset_index()
    top = out.groupby(["task", "regime", "dataset", "metric"])["mean"].transform("max")
    out["best"] = out["mean"].round(digits) == top.round(digits)
    out["runs"] = out["runs"].astype(int)
    return out.loc[:, MATRIX_COLUMNS]


def _groups(part: pd.DataFrame) -> dict[str, np.ndarray]:
    return {d: g["score"].to_numpy() for d, g in part.groupby("dataset", sort=True)}


def performance_profiles(scores: pd.DataFrame, *, rounds: int, confidence: float, seed: int,
                         resample_datasets: bool = False,
                         points: int = PROFILE_POINTS) -> pd.DataFrame:
    """Score distributions (rliable's performance profiles): per task, regime and model, the
    fraction of runs (datasets x seeds, full training set) with normalised score > tau, over a
    tau grid from 0 (or below) to 1 (or above), with stratified-bootstrap bands."""
    scores = scores[scores["variant"] == "full"]
    rows = []
    for (task, regime), part in scores.groupby(["task", "regime"], sort=True):
        lo, hi = min(0.0, part["score"].min()), max(1.0, part["score"].max())
        taus = np.linspace(lo, hi, points)
        for model, runs in part.groupby("model", sort=True):
            groups = list(_groups(runs).values())
            pooled = stats.pooled(groups)
            for tau in taus:
                def above(s, axis=-1, t=tau):
                    return np.mean(np.asarray(s) > t, axis=axis)
                dist = stats.stratified_bootstrap(
                    groups, above, rounds=rounds, resample_datasets=resample_datasets,
                    rng=group_rng(seed, "profile", task, regime, model))  # same draws for every tau
                low, high = stats.percentile_interval(dist, confidence)
                rows.append((task, regime, model, float(tau), float(above(pooled)), low, high))
    return pd.DataFrame(rows, columns=PROFILE_COLUMNS)


def improvement_matrix(scores: pd.DataFrame, *, rounds: int, confidence: float,
                       seed: int) -> pd.DataFrame:
    """P(model beats other) per task and regime on their common datasets (full training set),
    for every ordered pair of models, with bootstrap intervals; needs ≥2 models."""
    scores = scores[scores["variant"] == "full"]
    rows = []
    for (task, regime), part in scores.groupby(["task", "regime"], sort=True):
        groups = {m: _groups(g) for m, g in part.groupby("model", sort=True)}
        models = sorted(groups)
        for i, x in enumerate(models):
            for y in models[i + 1:]:
                common = sorted(set(groups[x]) & set(groups[y]))
                if not common:
                    continue
                est = stats.probability_of_improvement_interval(
                    [groups[x][d] for d in common], [groups[y][d] for d in common], rounds=rounds,
                    confidence=confidence, rng=group_rng(seed, "improvement", task, regime, x, y))
                rows.append((task, regime, x, y, est.point, est.low, est.high, len(common)))
                rows.append((task, regime, y, x, 1 - est.point, 1 - est.high, 1 - est.low, len(common)))
    out = pd.DataFrame(rows, columns=IMPROVEMENT_COLUMNS)
    return out.sort_values(["task", "regime", "model", "other"]).reset_index(drop=True)


# -- the whole report ---------------------------------------------------------------------------

def build_report_data(table: pd.DataFrame, *, normaliser: Normaliser,
                      baselines: pd.DataFrame | None = None,
                      metrics: Mapping[str, str] | None = None, rounds: int = stats.DEFAULT_ROUNDS,
                      seed: int = 0, confidence: float = 0.95, resample_datasets: bool = False,
                      partial: bool = False, inputs: Sequence[str] = (),
                      records: Iterable | None = None) -> ReportData:
    """Aggregate ``table`` (plus ``baselines`` rows, e.g. `paper_baselines()`) for a report.

    ``records``: the `RunRecord` s behind the table's own runs (or a `ResultsStore`), for what
    the table cannot carry: the synthetic-data flag, per-class scores, training curves,
    calibration (test metrics, predictions CSVs) and cost (``extra['cost']``, ``timings``).
    """
    own = results_table(table)
    baseline_models = sorted(baselines["model"].unique()) if baselines is not None else []
    clash = sorted(set(baseline_models) & set(own["model"]))
    if clash:
        raise ValueError(f"model name(s) {clash} occur both in the results and in the baselines; "
                         "rename the models in your results")
    combined = concat_tables([own, baselines]) if baselines is not None else own
    combined = select_headline(combined, metrics)
    own_headline = combined[~combined["model"].isin(baseline_models)]
    provenance = normaliser_provenance(normaliser, combined, own_headline)
    normalised = _drop_single_model(normaliser.apply(combined), provenance)
    scores = task_scores(normalised, rounds=rounds, confidence=confidence, seed=seed,
                         resample_datasets=resample_datasets)
    scores["baseline"] = scores["model"].isin(baseline_models)
    board, board_error = None, None
    try:
        board = leaderboard(normalised, partial=partial, rounds=rounds, confidence=confidence, seed=seed)
    except IncompleteRankingError as err:
        board_error = str(err)
    if board is not None and board.empty:
        board, board_error = None, ("no normalised scores to rank (every dataset is left out of "
                                    "the aggregates, see the notes above)")
    recs = _as_records(records)
    matched = _match_records(recs, own_headline)
    synthetic, synthetic_runs = _synthetic(recs, own_headline, table)
    curve_args = dict(rounds=rounds, confidence=confidence, seed=seed)
    sections = build_sections(scores=normalised.scores, combined=combined,
                              task_scores=scores, matched=matched, **curve_args)
    return ReportData(
        table=combined, baseline_models=baseline_models, normaliser=normaliser,
        excluded=normalised.excluded, task_scores=scores,
        dataset_summary=dataset_summary(combined, **curve_args),
        partition_curves=variant_curves(combined, "partition", **curve_args),
        few_shot_curves=variant_curves(combined, "few_shot", **curve_args),
        gaps=coverage_gaps(normalised.scores[normalised.scores["variant"] == "full"]),
        leaderboard=board, leaderboard_error=board_error, rounds=rounds, seed=seed,
        confidence=confidence, inputs=list(inputs),
        created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        matrix=dataset_model_matrix(combined), provenance=provenance,
        profiles=performance_profiles(normalised.scores, resample_datasets=resample_datasets,
                                      **curve_args),
        improvement=improvement_matrix(normalised.scores, **curve_args),
        synthetic_datasets=synthetic, synthetic_runs=synthetic_runs,
        per_class=_per_class(matched, own_headline), history=_history(matched, own_headline),
        records_given=records is not None, sections=sections,
    )

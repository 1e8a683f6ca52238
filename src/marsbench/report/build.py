"""Everything a report shows, computed once from a results table (no plotting, no files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

import marsbench
from marsbench.aggregate import stats
from marsbench.aggregate.leaderboard import IncompleteRankingError, leaderboard
from marsbench.aggregate.normalise import Normaliser, select_headline
from marsbench.aggregate.summary import coverage_gaps, dataset_summary, task_scores, variant_curves
from marsbench.aggregate.table import concat_tables, results_table


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

    @property
    def tasks(self) -> list[str]:
        order = ["classification", "segmentation", "detection"]
        present = set(self.table["task"])
        return [t for t in order if t in present]

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
        return out


def build_report_data(table: pd.DataFrame, *, normaliser: Normaliser,
                      baselines: pd.DataFrame | None = None,
                      metrics: Mapping[str, str] | None = None, rounds: int = stats.DEFAULT_ROUNDS,
                      seed: int = 0, confidence: float = 0.95, resample_datasets: bool = False,
                      partial: bool = False, inputs: Sequence[str] = ()) -> ReportData:
    """Aggregate ``table`` (plus ``baselines`` rows, e.g. `paper_baselines()`) for a report."""
    own = results_table(table)
    baseline_models = sorted(baselines["model"].unique()) if baselines is not None else []
    clash = sorted(set(baseline_models) & set(own["model"]))
    if clash:
        raise ValueError(f"model name(s) {clash} occur both in the results and in the baselines; "
                         "rename the models in your results")
    combined = concat_tables([own, baselines]) if baselines is not None else own
    combined = select_headline(combined, metrics)
    normalised = normaliser.apply(combined)
    scores = task_scores(normalised, rounds=rounds, confidence=confidence, seed=seed,
                         resample_datasets=resample_datasets)
    scores["baseline"] = scores["model"].isin(baseline_models)
    board, board_error = None, None
    try:
        board = leaderboard(normalised, partial=partial, rounds=rounds, confidence=confidence, seed=seed)
    except IncompleteRankingError as err:
        board_error = str(err)
    curve_args = dict(rounds=rounds, confidence=confidence, seed=seed)
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
    )

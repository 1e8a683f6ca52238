"""Aggregation of benchmark results: the tidy results table, fixed min-max normalisation,
IQM with stratified-bootstrap intervals, per-dataset summaries, curves, the leaderboard, and
noise-aware rankings (`rankings`: win probabilities, significance tiers, rank intervals, seeds needed).

Statistics (`marsbench.aggregate.stats`) are pure functions on arrays; everything else works on
the tidy results table of `marsbench.aggregate.table`. See docs/report.md.
"""

from __future__ import annotations

from .leaderboard import (
    LEADERBOARD_COLUMNS, IncompleteRankingError, leaderboard, leaderboard_from_table, write_leaderboard_csv,
)
from .normalise import (
    Bounds, Normalised, Normaliser, default_normaliser, headline_metrics, select_headline,
)
from .published import PublishedCsvWarning, paper_baselines, read_published_csv
from .rankings import (
    rank_intervals, seed_power_table, significance_tiers, t_test_power, t_test_sample_size,
    win_probability_matrix,
)
from .stats import (
    IntervalEstimate, interval_estimate, iqm, mean, median, optimality_gap, percentile_interval,
    probability_of_improvement, probability_of_improvement_interval, stratified_bootstrap,
)
from .summary import coverage_gaps, dataset_summary, task_scores, variant_curves
from .table import (
    COLUMNS, REGIMES, TASKS, ResultsTableError, concat_tables, read_results_csv, results_table,
    write_results_csv,
)

__all__ = [
    "COLUMNS", "LEADERBOARD_COLUMNS", "REGIMES", "TASKS", "Bounds", "IncompleteRankingError",
    "IntervalEstimate", "Normalised", "Normaliser", "PublishedCsvWarning", "ResultsTableError",
    "concat_tables", "coverage_gaps", "dataset_summary", "default_normaliser", "headline_metrics",
    "interval_estimate", "iqm", "leaderboard", "leaderboard_from_table", "mean", "median",
    "optimality_gap", "paper_baselines", "percentile_interval", "probability_of_improvement",
    "probability_of_improvement_interval", "rank_intervals", "read_published_csv",
    "read_results_csv", "results_table", "seed_power_table", "select_headline",
    "significance_tiers", "stratified_bootstrap", "t_test_power", "t_test_sample_size",
    "task_scores", "variant_curves", "win_probability_matrix", "write_leaderboard_csv",
    "write_results_csv",
]

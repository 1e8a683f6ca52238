"""Leaderboard export: one CSV, one row per (model, task, regime) on the full training set.

Schema (docs/report.md): model, task, regime, iqm, ci_low, ci_high, datasets_covered,
seeds_per_dataset — IQM of normalised scores with its 95 % stratified-bootstrap interval, the
number of datasets the model was scored on, and the smallest number of seeds it has on any of them.
Rows are sorted by task, regime, then IQM (best first).

A model is ranked only if it covers the required datasets and seeds of its (task, regime) group
(see `coverage_gaps`); otherwise `IncompleteRankingError` lists what is missing, unless
``partial=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..io import atomic_path
from ..errors import MarsbenchError
from . import stats
from .normalise import Normalised, Normaliser, default_normaliser, select_headline
from .summary import coverage_gaps, task_scores

LEADERBOARD_COLUMNS = ["model", "task", "regime", "iqm", "ci_low", "ci_high", "datasets_covered",
                       "seeds_per_dataset"]


class IncompleteRankingError(MarsbenchError, ValueError):
    """Some models lack required datasets or seeds; the message lists them."""

    def __init__(self, gaps: pd.DataFrame):
        self.gaps = gaps
        lines = []
        for (model, task, regime), g in gaps.groupby(["model", "task", "regime"], sort=True):
            datasets = g.loc[g["missing"] == "dataset", "dataset"].tolist()
            seeds = [f"{d} ({m})" for d, m in zip(g["dataset"], g["missing"]) if m != "dataset"]
            parts = ([f"datasets {', '.join(datasets)}"] if datasets else []) + \
                    ([f"seeds on {'; '.join(seeds)}"] if seeds else [])
            lines.append(f"  {model} [{task}, {regime}]: lacks {' and '.join(parts)}")
        super().__init__(
            f"cannot rank {gaps['model'].nunique()} model(s) with incomplete results:\n"
            + "\n".join(lines)
            + "\nRun the missing runs, or ask for a partial ranking (partial=True, CLI --partial)."
        )


def leaderboard(normalised: Normalised, *, partial: bool = False,
                required_datasets: dict[str, Sequence[str]] | None = None,
                required_seeds: Sequence[int] | int | None = None,
                rounds: int = stats.DEFAULT_ROUNDS, confidence: float = 0.95,
                seed: int = 0) -> pd.DataFrame:
    """The leaderboard table of the full-training-set runs in ``normalised``.

    Raises `IncompleteRankingError` when a model lacks datasets or seeds that others in its
    (task, regime) group have (or those given), unless ``partial``.
    """
    scores = normalised.scores[normalised.scores["variant"] == "full"]
    if not partial:
        gaps = coverage_gaps(scores, required_datasets=required_datasets, required_seeds=required_seeds)
        if len(gaps):
            raise IncompleteRankingError(gaps)
    table = task_scores(scores, rounds=rounds, confidence=confidence, seed=seed)
    table = table.sort_values(["task", "regime", "iqm"], ascending=[True, True, False])
    return table.loc[:, LEADERBOARD_COLUMNS].reset_index(drop=True)


def write_leaderboard_csv(board: pd.DataFrame, path: str | Path) -> Path:
    """Write a leaderboard (from `leaderboard`) as CSV in the documented schema."""
    missing = [c for c in LEADERBOARD_COLUMNS if c not in board.columns]
    if missing:
        raise ValueError(f"leaderboard lacks column(s) {missing}; build it with leaderboard()")
    path = Path(path)
    with atomic_path(path) as tmp:
        board.loc[:, LEADERBOARD_COLUMNS].to_csv(tmp, index=False, float_format="%.4f")
    return path


def leaderboard_from_table(table: pd.DataFrame, normaliser: Normaliser | None = None, **kwargs) -> pd.DataFrame:
    """Convenience: headline metrics of a results table, normalised (default: ``paper_v1``), ranked."""
    normalised = (normaliser or default_normaliser()).apply(select_headline(table))
    return leaderboard(normalised, **kwargs)

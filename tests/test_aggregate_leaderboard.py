"""Leaderboard export and its refusal to rank incomplete results; coverage, summaries, curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marsbench.aggregate import (
    LEADERBOARD_COLUMNS, IncompleteRankingError, Normaliser, coverage_gaps, dataset_summary,
    leaderboard, results_table, variant_curves, write_leaderboard_csv,
)
from marsbench.aggregate.leaderboard import leaderboard_from_table

DATASETS = ("own-a", "own-b", "own-c")
SEEDS = (0, 1, 2)


def runs(model: str, level: float, datasets=DATASETS, seeds=SEEDS, variant="full") -> list[dict]:
    return [dict(model=model, dataset=d, task="classification", regime="feature_extraction",
                 variant=variant, seed=s, metric="f1_weighted", value=level + 0.01 * s + 0.001 * i)
            for i, d in enumerate(datasets) for s in seeds]


def normalised(rows):
    table = results_table(rows)
    return Normaliser.from_table(table, version="t", source="test").apply(table)


def test_complete_results_are_ranked_in_the_documented_schema(tmp_path):
    board = leaderboard(normalised(runs("low", 0.2) + runs("high", 0.8) + runs("mid", 0.5)), rounds=200)
    assert list(board.columns) == LEADERBOARD_COLUMNS
    assert board["model"].tolist() == ["high", "mid", "low"]
    assert (board["datasets_covered"] == 3).all() and (board["seeds_per_dataset"] == 3).all()
    assert (board["ci_low"] <= board["iqm"]).all() and (board["iqm"] <= board["ci_high"]).all()
    path = write_leaderboard_csv(board, tmp_path / "lb.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == LEADERBOARD_COLUMNS and back["model"].tolist() == ["high", "mid", "low"]


def test_a_model_missing_a_dataset_or_seeds_is_not_ranked():
    rows = runs("full", 0.5) + runs("no-c", 0.6, datasets=DATASETS[:2]) + runs("two-seeds", 0.7, seeds=(0, 2))
    with pytest.raises(IncompleteRankingError) as err:
        leaderboard(normalised(rows), rounds=50)
    message = str(err.value)
    assert "cannot rank 2 model(s)" in message
    assert "no-c [classification, feature_extraction]: lacks datasets own-c" in message
    assert "two-seeds [classification, feature_extraction]: lacks seeds on own-a (seeds 1); own-b (seeds 1); own-c (seeds 1)" in message
    assert "--partial" in message
    assert set(err.value.gaps["model"]) == {"no-c", "two-seeds"}
    board = leaderboard(normalised(rows), partial=True, rounds=50).set_index("model")
    assert board.loc["no-c", "datasets_covered"] == 2 and board.loc["two-seeds", "seeds_per_dataset"] == 2
    assert board.loc["full", "datasets_covered"] == 3


def test_required_datasets_and_seeds_can_be_given():
    rows = runs("a", 0.5) + runs("b", 0.6)
    with pytest.raises(IncompleteRankingError, match="lacks datasets own-d"):
        leaderboard(normalised(rows), required_datasets={"classification": [*DATASETS, "own-d"]}, rounds=50)
    with pytest.raises(IncompleteRankingError, match=r"own-a \(runs: 3 of 5\)"):
        leaderboard(normalised(rows), required_seeds=5, rounds=50)
    with pytest.raises(IncompleteRankingError, match=r"seeds 42"):
        leaderboard(normalised(rows), required_seeds=[0, 1, 2, 42], rounds=50)
    assert len(leaderboard(normalised(rows), required_seeds=3, rounds=50)) == 2


def test_ranks_only_the_full_training_set_per_regime():
    rows = runs("a", 0.5) + runs("a", 0.1, variant="partition:0.10") + [
        {**r, "regime": "scratch"} for r in runs("b", 0.3)]
    board = leaderboard(normalised(rows), rounds=50)
    assert board[["model", "regime"]].values.tolist() == [["a", "feature_extraction"], ["b", "scratch"]]


def test_leaderboard_from_table_with_the_default_normaliser():
    rows = [dict(model="m", dataset=d, task="segmentation", regime="scratch", variant="full", seed=s,
                 metric="iou_reference", value=0.5) for d in ("mb-boulder_seg", "mb-mmls") for s in (0, 1)]
    board = leaderboard_from_table(pd.DataFrame(rows), rounds=20)
    assert board["datasets_covered"].tolist() == [2]


def test_coverage_gaps_list_every_hole():
    rows = results_table(runs("a", 0.5) + runs("b", 0.5, datasets=("own-a",), seeds=(0,)))
    gaps = coverage_gaps(rows)
    assert gaps[["model", "dataset", "missing"]].values.tolist() == [
        ["b", "own-a", "seeds 1, 2"], ["b", "own-b", "dataset"], ["b", "own-c", "dataset"]]


def test_dataset_summary_reports_raw_mean_std_and_iqm():
    table = results_table(runs("a", 0.5, datasets=("own-a",), seeds=(0, 1, 2, 3)))
    summary = dataset_summary(table, rounds=200)
    r = summary.iloc[0]
    values = np.array([0.5, 0.51, 0.52, 0.53])
    assert r["runs"] == 4 and r["mean"] == pytest.approx(values.mean())
    assert r["std"] == pytest.approx(values.std(ddof=1)) and r["iqm"] == pytest.approx(0.515)
    assert r["ci_low"] <= r["iqm"] <= r["ci_high"]


def test_curves_close_partitions_at_the_full_set():
    rows = runs("a", 0.8, datasets=("own-a",)) + runs("a", 0.4, datasets=("own-a",), variant="partition:0.1") \
        + runs("a", 0.3, datasets=("own-a",), variant="few_shot:5")
    table = results_table(rows)
    part = variant_curves(table, "partition", rounds=100)
    assert part["x"].tolist() == [0.1, 1.0]
    assert part["mean"].tolist() == pytest.approx([0.41, 0.81])
    few = variant_curves(table, "few_shot", rounds=100)
    assert few["x"].tolist() == [5.0] and (few["ci_low"] <= few["mean"]).all()
    assert variant_curves(results_table(runs("a", 0.5)), "few_shot").empty

"""The tidy results table (schema, validation, CSV) and the readers of the published CSVs.

Tests of the published CSVs themselves need ../shared/data/reference-results (fixture
``reference_results``: skipped when absent); the shipped copy of those runs is checked without."""

from __future__ import annotations

import warnings
import pandas as pd
import pytest

from marsbench.aggregate import (
    COLUMNS, PublishedCsvWarning, ResultsTableError, concat_tables, paper_baselines,
    read_published_csv, read_results_csv, results_table, write_results_csv,
)


def row(**changes) -> dict:
    base = dict(model="m", dataset="mb-domars16k", task="classification", regime="feature_extraction",
                variant="full", seed=0, metric="f1_weighted", value=0.5)
    return {**base, **changes}


def test_valid_rows_become_the_canonical_table():
    table = results_table([row(), row(seed="1", value="0.75", variant="partition:0.1", extra="x"),
                           row(seed=2.0, variant="few-shot:5"), row(seed=3, variant="default")])
    assert list(table.columns) == list(COLUMNS)
    assert table["seed"].tolist() == [0, 1, 2, 3] and str(table["seed"].dtype) == "int64"
    assert table["value"].tolist() == [0.5, 0.75, 0.5, 0.5]
    assert table["variant"].tolist() == ["full", "partition:0.10", "few_shot:5", "full"]


@pytest.mark.parametrize(("changes", "message"), [
    (dict(regime="frozen"), r"row 1: regime 'frozen' is not one of scratch\|feature_extraction"),
    (dict(task="depth"), r"row 1: task 'depth' is not one of classification"),
    (dict(variant="partition:2"), r"row 1: column 'variant': bad variant 'partition:2'"),
    (dict(seed="abc"), r"row 1: seed 'abc' is not an integer"),
    (dict(seed=1.5), r"row 1: seed 1.5 is not an integer"),
    (dict(value=float("nan")), r"row 1: value nan is not a finite number .*drop failed runs"),
    (dict(value="high"), r"row 1: value 'high' is not a finite number"),
    (dict(model=""), r"row 1: column 'model' is empty"),
    (dict(task="segmentation"), r"row 1: dataset 'mb-domars16k' is a classification dataset"),
])
def test_bad_rows_are_named_in_the_error(changes, message):
    with pytest.raises(ResultsTableError, match=message):
        results_table([row(), row(**{"seed": 1, **changes})])


def test_missing_columns_are_listed():
    frame = pd.DataFrame([row()]).drop(columns=["regime", "seed"])
    with pytest.raises(ResultsTableError, match=r"missing column\(s\) \['regime', 'seed'\]"):
        results_table(frame, source="mine.csv")


def test_user_datasets_may_have_any_task():
    table = results_table([row(dataset="my-craters", task="detection", metric="map_50_95")])
    assert table["task"].tolist() == ["detection"]


def test_identical_duplicates_collapse_and_conflicting_ones_are_refused():
    assert len(results_table([row(), row(), row(seed=1)])) == 2
    with pytest.raises(ResultsTableError, match=r"row 0, row 2: 2 runs share the key .* different values \[0.5, 0.6\]"):
        results_table([row(), row(seed=1), row(value=0.6)])


def test_csv_round_trip_and_line_numbers(tmp_path):
    table = results_table([row(), row(seed=1, value=0.25)])
    path = write_results_csv(table, tmp_path / "runs.csv")
    pd.testing.assert_frame_equal(read_results_csv(path), table)
    text = path.read_text().replace("0.25", "oops")
    path.write_text(text)
    with pytest.raises(ResultsTableError, match=r"runs.csv line 3: value 'oops'"):
        read_results_csv(path)


# --- published CSVs ----------------------------------------------------------------------------

def test_read_default_files(reference_results):
    cls = read_published_csv(reference_results / "classification_filtered.csv")
    seg = read_published_csv(reference_results / "segmentation_filtered.csv")
    assert len(cls) == 315 and len(seg) == 224
    assert set(cls["metric"]) == {"f1_weighted"} and set(seg["metric"]) == {"iou_reference"}
    assert set(cls["variant"]) == {"full"} and set(cls["regime"]) == {"feature_extraction"}
    assert set(cls["task"]) == {"classification"} and set(seg["task"]) == {"segmentation"}
    assert cls.groupby(["model", "dataset"]).size().eq(7).all()
    # the facts sheet's table: SwinV2-B on domars16k, mean of 7 seeds 0.866
    swin = cls[(cls["model"] == "SwinV2-B") & (cls["dataset"] == "mb-domars16k")]["value"]
    assert round(swin.mean(), 3) == 0.866


def test_read_partition_and_few_shot_files(reference_results):
    with pytest.warns(PublishedCsvWarning, match=r"dropped 1 run\(s\) without a score, lines \[1044\]"):
        few = read_published_csv(reference_results / "classification_few_shot_filtered.csv")
    assert sorted(few["variant"].unique()) == sorted(f"few_shot:{k}" for k in (1, 2, 5, 10, 15, 20))
    assert len(few) == 1679
    part = read_published_csv(reference_results / "classification_partition_filtered.csv")
    assert "partition:0.01" in set(part["variant"]) and "partition:0.10" in set(part["variant"])
    # the 1.0 rows are the full-set runs: stacked with the default file they collapse
    full = read_published_csv(reference_results / "classification_filtered.csv")
    both = concat_tables([full, part])
    assert len(both) == len(part)
    assert (both["variant"] == "full").sum() == 315


def test_earth_data_repeats_seeds(reference_results):
    with pytest.raises(ResultsTableError, match=r"earth_data.csv: .* repeat a seed .*renumber"):
        read_published_csv(reference_results / "earth_data.csv")
    earth = read_published_csv(reference_results / "earth_data.csv", duplicate_seeds="renumber")
    assert len(earth) == 1053
    satmae = earth[(earth["model"] == "SatMAE_ViT-L/16") & (earth["dataset"] == "mb-surface_cls")
                   & (earth["variant"] == "full")]
    assert sorted(satmae["seed"]) == list(range(7))
    # ViT-L/16 rows there carry real, distinct seeds and keep them
    vit = earth[(earth["model"] == "ViT-L/16") & (earth["variant"] == "full")]
    assert set(vit["seed"]) == {0, 1, 10, 42, 123, 1000, 1234}


def test_unknown_file_layout_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ResultsTableError, match="not a published Mars-Bench results CSV"):
        read_published_csv(path)


def test_shipped_baselines_are_the_published_runs(reference_results):
    shipped = paper_baselines(suffix="")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PublishedCsvWarning)
        published = concat_tables([read_published_csv(reference_results / name) for name in (
            "classification_filtered.csv", "segmentation_filtered.csv",
            "classification_partition_filtered.csv", "segmentation_partition_filtered.csv",
            "classification_few_shot_filtered.csv")])
    key = list(COLUMNS[:-1])
    merged = shipped.merge(published, on=key, how="outer", suffixes=("_shipped", "_published"), indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged["value_shipped"] - merged["value_published"]).abs().max() < 1e-8
    assert paper_baselines()["model"].str.endswith(" [paper]").all()


def test_shipped_baselines_hold_the_published_runs():
    """What the package ships, checked with nothing beside the repository (the published CSVs'
    counts, as in test_read_default_files and test_read_partition_and_few_shot_files)."""
    shipped = paper_baselines(suffix="")
    full = shipped[shipped["variant"] == "full"]
    assert (full["task"] == "classification").sum() == 315
    assert (full["task"] == "segmentation").sum() == 224
    assert set(full["regime"]) == {"feature_extraction"}
    assert full.groupby(["model", "dataset"]).size().eq(7).all()
    assert full["seed"].drop_duplicates().sort_values().tolist() == [0, 1, 10, 42, 123, 1000, 1234]
    swin = full[(full["model"] == "SwinV2-B") & (full["dataset"] == "mb-domars16k")]["value"]
    assert round(swin.mean(), 3) == 0.866  # the facts sheet's figure
    few = shipped[shipped["variant"].str.startswith("few_shot:")]
    assert len(few) == 1679 and set(few["task"]) == {"classification"}
    assert {"partition:0.01", "partition:0.10", "partition:0.50"} <= set(shipped["variant"])

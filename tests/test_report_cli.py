"""`marsbench report` through typer's CliRunner: files written, their content, errors.

The paper report reads the published runs in the published CSV layout, written here from the copy
the package ships (so nothing beside the repository is needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from marsbench.aggregate import (
    LEADERBOARD_COLUMNS, default_normaliser, paper_baselines, write_results_csv,
)
from marsbench.cli.main import app

# PROVENANCE.md check figures (IQM, 3 decimals)
CHECK_IQM = {"SwinV2-B": 0.898, "ViT-L/16": 0.856, "ResNet101": 0.507, "InceptionV3": 0.390,
             "SqueezeNet1.1": 0.359, "UNet": 0.824, "DPT": 0.646, "SegFormer": 0.401, "DeepLabV3+": 0.299}

runner = CliRunner()


def write_published_layout(folder: Path) -> dict[str, Path]:
    """classification_filtered.csv and segmentation_filtered.csv as the Mars-Bench repository
    publishes them (model, dataset, test metric, training_type, seed, partition name), from the
    full-training-set runs the package ships."""
    shipped = paper_baselines(suffix="")
    full = shipped[shipped["variant"] == "full"]
    paths = {}
    for task in ("classification", "segmentation"):
        rows = full[full["task"] == task]
        paths[task] = folder / f"{task}_filtered.csv"
        pd.DataFrame({"model": rows["model"], "dataset": rows["dataset"],
                      "test metric": rows["value"], "training_type": rows["regime"],
                      "seed": rows["seed"], "partition name": "default"}).to_csv(
            paths[task], index=False)
    return paths


@pytest.fixture(scope="module")
def paper_report(tmp_path_factory) -> tuple[Path, object]:
    published = write_published_layout(tmp_path_factory.mktemp("published"))
    out = tmp_path_factory.mktemp("report")
    result = runner.invoke(app, [
        "report", "--csv", str(published["classification"]),
        "--csv", str(published["segmentation"]), "--out", str(out), "--baselines", "paper",
    ])
    return out, result


def test_report_files_are_written(paper_report):
    out, result = paper_report
    assert result.exit_code == 0, result.output
    for name in ("report.html", "report.md", "leaderboard.csv", "results.csv", "normaliser.json",
                 "tables/task_scores.csv", "tables/dataset_summary.csv", "tables/partition_curves.csv",
                 "tables/few_shot_curves.csv", "tables/excluded.csv", "tables/coverage_gaps.csv"):
        assert (out / name).is_file(), name
    assert f"report: {out / 'report.html'}" in result.output
    # the degenerate dataset is reported, not silently dropped
    assert "mb-change_cls_ctx (f1_weighted) is left out" in result.output


def test_html_is_self_contained_with_every_plot(paper_report):
    out, _ = paper_report
    html = (out / "report.html").read_text()
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    # interval plot, performance profiles, probability of improvement and per-dataset plot per
    # task; partition curves per task and few-shot curves for classification come from the paper
    # baselines; no per-class or training curves (a CSV has no records)
    # (the curves twice: raw, and as the paper draws them, normalised with an aggregate panel)
    assert figures == ["classification_datasets.png", "classification_few_shot.png",
                       "classification_few_shot_paper_style.png",
                       "classification_improvement.png", "classification_iqm.png",
                       "classification_partition.png", "classification_partition_paper_style.png",
                       "classification_profiles.png", "classification_win_probability.png",
                       "segmentation_datasets.png", "segmentation_improvement.png",
                       "segmentation_iqm.png", "segmentation_partition.png",
                       "segmentation_partition_paper_style.png",
                       "segmentation_profiles.png", "segmentation_win_probability.png"]
    assert html.count('<img src="data:image/png;base64,') == len(figures)
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)  # nothing loaded from elsewhere
    assert "<script" not in html
    assert "SwinV2-B [paper]" in html and "degenerate bounds" in html


def test_leaderboard_matches_the_check_figures(paper_report):
    out, _ = paper_report
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.columns) == LEADERBOARD_COLUMNS
    assert len(board) == 18  # 9 models from the CSVs + the same 9 as published baselines
    for model, iqm in CHECK_IQM.items():
        for name in (model, f"{model} [paper]"):
            row = board[board["model"] == name].iloc[0]
            assert row["iqm"] == pytest.approx(iqm, abs=6e-4), name
            assert row["datasets_covered"] == 8 and row["seeds_per_dataset"] == 7
    cls = board[board["task"] == "classification"]
    assert cls["iqm"].is_monotonic_decreasing


def test_markdown_and_tables(paper_report):
    out, _ = paper_report
    md = (out / "report.md").read_text()
    assert "## Classification" in md and "## Segmentation" in md and "## Leaderboard" in md
    assert "![classification: IQM of normalised scores](figures/classification_iqm.png)" in md
    assert re.search(r"\| SwinV2-B \| feature_extraction \| 0\.898 \|", md)
    summary = pd.read_csv(out / "tables/dataset_summary.csv")
    row = summary[(summary["model"] == "SwinV2-B") & (summary["dataset"] == "mb-domars16k")].iloc[0]
    assert round(row["mean"], 3) == 0.866 and row["runs"] == 7 and row["std"] > 0
    excluded = pd.read_csv(out / "tables/excluded.csv")
    assert excluded["dataset"].tolist() == ["mb-change_cls_ctx"]
    curves = pd.read_csv(out / "tables/few_shot_curves.csv")
    vit = curves[(curves["model"] == "ViT-L/16 [paper]") & (curves["dataset"] == "mb-domars16k")]
    # facts sheet: ViT-L/16 few-shot F1 on domars16k 0.447 / ... / 0.731 at 1 / ... / 20 shots
    assert vit["x"].tolist() == [1, 2, 5, 10, 15, 20]
    assert vit["mean"].round(3).tolist() == [0.447, 0.504, 0.608, 0.694, 0.713, 0.731]


def test_ragged_own_results_are_reported_and_not_ranked(tmp_path):
    rows = [dict(model=m, dataset=d, task="segmentation", regime="scratch", variant="full", seed=s,
                 metric="iou_reference", value=0.3 + 0.1 * i + 0.01 * s)
            for i, m in enumerate(("a", "b")) for d in ("mb-boulder_seg", "mb-mmls", "own-seg")
            for s in (0, 1, 2) if not (m == "b" and d == "mb-mmls")]
    csv = write_results_csv(pd.DataFrame(rows), tmp_path / "mine.csv")
    out = tmp_path / "out"
    (out).mkdir()
    (out / "leaderboard.csv").write_text("stale")
    result = runner.invoke(app, ["report", "--csv", str(csv), "--out", str(out), "--baselines", "none",
                                 "--normaliser", "paper+table", "--rounds", "100"])
    assert result.exit_code == 0, result.output
    assert "b [segmentation, scratch] has incomplete results" in result.output
    assert "Leaderboard not written" in result.output and "--partial" in result.output
    assert not (out / "leaderboard.csv").exists()  # the stale ranking is gone
    # own-seg has no paper bounds: paper+table derives them from the runs
    bounds = default_normaliser().bounds
    saved = json.loads((out / "normaliser.json").read_text())["bounds"]
    own = [b for b in saved if b["dataset"] == "own-seg"][0]
    assert (own["min"], own["max"]) == (pytest.approx(0.3), pytest.approx(0.42)) and own["version"] == "table"
    boulder = [b for b in saved if b["dataset"] == "mb-boulder_seg"][0]
    assert boulder["min"] == bounds[("mb-boulder_seg", "iou_reference")].min  # paper bounds kept

    result = runner.invoke(app, ["report", "--csv", str(csv), "--out", str(out), "--baselines", "none",
                                 "--normaliser", str(out / "normaliser.json"), "--rounds", "100", "--partial"])
    assert result.exit_code == 0, result.output
    board = pd.read_csv(out / "leaderboard.csv").set_index("model")
    assert board.loc["b", "datasets_covered"] == 2 and board.loc["a", "datasets_covered"] == 3


def test_input_errors_are_clear(tmp_path):
    result = runner.invoke(app, ["report", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "give results with --store PATH and/or --csv FILE" in result.output
    result = runner.invoke(app, ["report", "--csv", str(tmp_path / "nope.csv"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no such file" in result.output and "nope.csv)" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("model,dataset,task,regime,variant,seed,metric,value\n"
                   "m,mb-domars16k,classification,frozen,full,0,f1_weighted,0.5\n")
    result = runner.invoke(app, ["report", "--csv", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "bad.csv line 2: regime 'frozen'" in result.output
    # earth_data.csv's layout: no training_type, one seed repeated for a model's runs
    earth = tmp_path / "earth_data.csv"
    earth.write_text("seed,model,dataset,partition name,test metric\n"
                     "42,SatMAE_ViT-L/16,mb-surface_cls,default,0.61\n"
                     "42,SatMAE_ViT-L/16,mb-surface_cls,default,0.63\n")
    result = runner.invoke(app, ["report", "--csv", str(earth), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--renumber-seeds" in result.output


def test_store_input(tmp_path):
    from marsbench.runs import ResultsStore, RunRecord, RunSpec

    store = ResultsStore(tmp_path / "runs.sqlite")
    for model, level in (("m1", 0.8), ("m2", 0.6)):
        for dataset in ("mb-domars16k", "mb-landmark_cls"):
            for seed in (0, 1):
                spec = RunSpec(dataset=dataset, model=model, regime="feature_extraction", seed=seed)
                store.put(RunRecord(spec, metrics={"test": {"f1_weighted": level + 0.01 * seed, "accuracy": 0.9}}))
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", "--store", str(store.path), "--out", str(out),
                                 "--baselines", "none", "--rounds", "100"])
    assert result.exit_code == 0, result.output
    board = pd.read_csv(out / "leaderboard.csv")
    assert board["model"].tolist() == ["m1", "m2"] and (board["datasets_covered"] == 2).all()
    runs = pd.read_csv(out / "results.csv")
    assert set(runs["metric"]) == {"f1_weighted"} and len(runs) == 8


def test_one_model_with_bounds_from_its_own_runs_gets_no_aggregate(tmp_path):
    # min-max over one model's own runs scores it 0 to 1 by construction: 0.500 [0.000, 1.000]
    rows = [dict(model="solo", dataset=d, task="classification", regime="feature_extraction",
                 variant="full", seed=s, metric="f1_weighted", value=0.7 + 0.01 * s + 0.02 * i)
            for i, d in enumerate(("mb-domars16k", "mb-landmark_cls")) for s in (0, 1)]
    csv = write_results_csv(pd.DataFrame(rows), tmp_path / "solo.csv")
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", "--csv", str(csv), "--out", str(out), "--baselines", "none",
                                 "--normaliser", "table", "--rounds", "50"])
    assert result.exit_code == 0, result.output
    assert "needs ≥2 models" in result.output and not (out / "leaderboard.csv").exists()
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    for text in (html, md):
        assert "needs ≥2 models" in text and "derived from these runs" in text
        assert "0.500" not in text
    assert pd.read_csv(out / "tables/task_scores.csv").empty
    matrix = pd.read_csv(out / "tables/paper_table.csv")  # the raw scores are still reported
    assert matrix["mean"].round(3).tolist() == [0.705, 0.725]

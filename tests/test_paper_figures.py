"""The paper's tables and figures (report/paper_figures.py, `marsbench paper`, `report --figure`).

Every item the shipped per-seed CSV covers is regenerated from it and compared with the published
numbers of the facts sheet, section 7 (written here as constants; when the facts sheet is beside
the repository, the constants are checked against it), and the curve recipe with the normalised
means the reference wrote (benchmark/data/*_violin_output/partition_stats.csv in
github.com/kerner-lab/Mars-Bench, parent of commit e9dab19)."""

from __future__ import annotations

import dataclasses
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import SHARED_DATA
from marsbench.aggregate.published import paper_baselines
from marsbench.cli.main import app
from marsbench.protocol import load_experiment, make_plan
from marsbench.report import paper_figures as pf
from marsbench.runs.record import RunRecord
from marsbench.runs.store import ResultsStore

runner = CliRunner()
FACTS = SHARED_DATA.parent / "reference" / "mars-bench-facts.md"
CLS_MODELS = ("InceptionV3", "ResNet101", "SqueezeNet1.1", "SwinV2-B", "ViT-L/16")
SEG_MODELS = ("DeepLabV3+", "DPT", "SegFormer", "UNet")
# facts sheet section 7: classification F1 and segmentation IoU, mean over 7 seeds
CLASSIFICATION = {
    "mb-atmospheric_dust_cls_edr": (0.943, 0.942, 0.948, 0.949, 0.940),
    "mb-atmospheric_dust_cls_rdr": (0.939, 0.947, 0.941, 0.961, 0.953),
    "mb-change_cls_ctx": (0.711, 0.711, 0.711, 0.711, 0.711),
    "mb-change_cls_hirise": (0.972, 0.984, 0.953, 0.990, 0.988),
    "mb-domars16k": (0.790, 0.820, 0.824, 0.866, 0.881),
    "mb-frost_cls": (0.925, 0.928, 0.896, 0.945, 0.930),
    "mb-landmark_cls": (0.867, 0.881, 0.894, 0.905, 0.910),
    "mb-surface_cls": (0.841, 0.852, 0.849, 0.870, 0.871),
    "mb-surface_multi_label_cls": (0.767, 0.790, 0.662, 0.828, 0.830),
}
SEGMENTATION = {
    "mb-boulder_seg": (0.514, 0.281, 0.469, 0.383),
    "mb-conequest_seg": (0.573, 0.628, 0.588, 0.600),
    "mb-crater_binary_seg": (0.661, 0.694, 0.667, 0.728),
    "mb-crater_multi_seg": (0.276, 0.282, 0.283, 0.310),
    "mb-mars_seg_mer": (0.224, 0.240, 0.232, 0.240),
    "mb-mars_seg_msl": (0.236, 0.256, 0.243, 0.252),
    "mb-mmls": (0.525, 0.289, 0.520, 0.520),
    "mb-s5mars": (0.167, 0.181, 0.161, 0.178),
}
# facts sheet section 7, "Aggregated": IQM [95 % CI] (the sheet writes U-Net for UNet)
AGGREGATED = {
    "SwinV2-B": (0.898, 0.879, 0.917), "ViT-L/16": (0.856, 0.838, 0.873),
    "ResNet101": (0.507, 0.480, 0.533), "InceptionV3": (0.390, 0.353, 0.428),
    "SqueezeNet1.1": (0.359, 0.338, 0.381), "UNet": (0.824, 0.772, 0.861),
    "DPT": (0.646, 0.578, 0.712), "SegFormer": (0.401, 0.376, 0.421),
    "DeepLabV3+": (0.299, 0.261, 0.339),
}
# facts sheet section 7: ViT-L/16 raw F1 at 1/5/10/25/50/100 % and at 1/2/5/10/15/20 shots
TRAINING_SIZE = {
    "mb-domars16k": (0.668, 0.788, 0.808, 0.839, 0.861, 0.881),
    "mb-landmark_cls": (0.599, 0.781, 0.825, 0.884, 0.908, 0.910),
    "mb-surface_cls": (0.532, 0.582, 0.674, 0.724, 0.806, 0.871),
}
FEW_SHOT = {
    "mb-domars16k": (0.447, 0.504, 0.608, 0.694, 0.713, 0.731),
    "mb-surface_cls": (0.408, 0.485, 0.555, 0.666, 0.670, 0.692),
}
# the reference's partition_stats.csv: normalised mean of ViT-L/16 on mb-domars16k
REFERENCE_NORMALISED = {  # (the shipped CSV keeps 8 decimals: compared to 1e-6)
    "figure:training_size": {0.01: 0.3166930819525933, 0.02: 0.5183702890509762,
                             0.5: 0.9300150911277351, 1.0: 0.9919701964420279},
    "figure:few_shot": {1: 0.5248790443600214, 10: 0.9281528245898125,
                        20: 0.9891339355376042},
}
MC_TOLERANCE = 0.006  # bootstrap interval ends move by about +-0.003 between bootstrap seeds


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    return paper_baselines(suffix="")


def _facts() -> str:
    if not FACTS.is_file():
        pytest.skip(f"needs the facts sheet {FACTS} (shared folder reference), which is absent")
    text = FACTS.read_text(encoding="utf-8")
    return text[text.index("## 7."):]  # section 7: the published numbers


def test_constants_are_the_facts_sheet():
    text = _facts()
    for table, models in ((CLASSIFICATION, CLS_MODELS), (SEGMENTATION, SEG_MODELS)):
        for dataset, values in table.items():
            row = re.search(rf"^\| {re.escape(dataset)} \|(.*)\|$", text, re.M)
            assert row, dataset
            assert tuple(float(v) for v in row.group(1).split("|")) == values, dataset
    for model, (iqm, lo, hi) in AGGREGATED.items():
        name = "U-Net" if model == "UNet" else model
        assert f"{name} {iqm:.3f} [{lo:.3f}, {hi:.3f}]" in " ".join(text.split()), model
    for dataset, values in TRAINING_SIZE.items():
        short = dataset.removeprefix("mb-").removesuffix("_cls")
        short = "surface_cls" if dataset == "mb-surface_cls" else short
        points = "/".join(f"{v:.3f}" for v in values)
        assert f"{short} {points}" in text, dataset
    for dataset, values in FEW_SHOT.items():
        short = "domars16k" if dataset == "mb-domars16k" else "surface_cls"
        assert f"{short} {'/'.join(f'{v:.3f}' for v in values)}" in text, dataset


@pytest.mark.parametrize("name, published, models", [
    ("table:classification", CLASSIFICATION, CLS_MODELS),
    ("table:segmentation", SEGMENTATION, SEG_MODELS)])
def test_tables_match_the_published_numbers(shipped, name, published, models):
    numbers = pf.compute(pf.get_item(name), shipped)
    assert (numbers["runs"] == 7).all() and len(numbers) == len(published) * len(models)
    got = numbers.set_index(["dataset", "model"])["mean"]
    for dataset, values in published.items():
        for model, value in zip(models, values):
            assert round(got[(dataset, model)], 3) == pytest.approx(value, abs=1e-9), \
                (dataset, model)


def test_aggregate_matches_the_published_iqms(shipped):
    numbers = pf.compute(pf.get_item("figure:aggregate"), shipped, rounds=1000, seed=0)
    assert sorted(numbers["model"]) == sorted(AGGREGATED)
    assert (numbers["datasets_covered"] == 8).all()  # mb-change_cls_ctx: min = max, left out
    for r in numbers.itertuples():
        iqm, lo, hi = AGGREGATED[r.model]
        assert round(r.iqm, 3) == pytest.approx(iqm, abs=1e-9), r.model
        assert abs(r.ci_low - lo) <= MC_TOLERANCE and abs(r.ci_high - hi) <= MC_TOLERANCE, r.model


@pytest.mark.parametrize("name, published, xs", [
    ("figure:training_size", TRAINING_SIZE, (0.01, 0.05, 0.10, 0.25, 0.50, 1.0)),
    ("figure:few_shot", FEW_SHOT, (1, 2, 5, 10, 15, 20))])
def test_curves_match_the_published_points(shipped, name, published, xs):
    numbers = pf.compute(pf.get_item(name), shipped, rounds=50)
    vit = numbers[numbers["model"] == "ViT-L/16"].set_index(["panel", "x"])
    for dataset, values in published.items():
        for x, value in zip(xs, values):
            assert round(vit.loc[(dataset, float(x)), "raw_mean"], 3) == pytest.approx(
                value, abs=1e-9), (dataset, x)
    for x, value in REFERENCE_NORMALISED[name].items():  # the reference's normalisation
        assert vit.loc[("mb-domars16k", float(x)), "mean"] == pytest.approx(value, abs=1e-6)
    agg = numbers[numbers["panel"] == pf.AGGREGATE_PANEL]
    assert set(agg["x"]) == set(numbers["x"]) and agg["model"].nunique() == 5
    assert ((agg["ci_low"] <= agg["mean"]) & (agg["mean"] <= agg["ci_high"])).all()


def test_segmentation_partition_curves_cover_the_published_rows(shipped):
    numbers = pf.compute(pf.get_item("figure:segmentation_partition"), shipped, rounds=50)
    panels = numbers[numbers["panel"] != pf.AGGREGATE_PANEL]
    assert panels["panel"].nunique() == 8 and panels["model"].nunique() == 4
    assert sorted(panels["x"].unique()) == [0.01, 0.02, 0.05, 0.10, 0.20, 0.25, 0.50, 1.0]
    boulder = panels[panels["panel"] == "mb-boulder_seg"]
    assert boulder["x"].min() == 0.05  # the catalog offers boulder partitions from 5 % only
    # normalised over all of the dataset's rows: min 0 and max 1 are reached by single runs
    assert panels["mean"].between(0, 1).all()


def _reduced(exp):
    """The experiment with a two-point grid (and the loss axis) on its first two datasets, so
    that its plan is cheap to build."""
    grid = tuple((k, v[:2] if k == "lr" else v if k == "loss" else v[:1]) for k, v in exp.grid)
    return dataclasses.replace(exp, grid=grid, datasets=exp.datasets[:2])


def test_planned_runs_are_the_plans(tmp_path):
    store = ResultsStore(tmp_path / "empty.sqlite")
    names = sorted({e for item in pf.REGISTRY for e in item.experiments})
    assert len(names) == 6
    for name in names:
        exp = load_experiment(name)
        small = _reduced(exp)
        plan = make_plan(small, store, check_data=False, check_models=False)
        planned = sum(r["planned"] - r["reused"] for r in plan.counts()) + plan.pending_seed_runs()
        assert pf.planned_runs(small) == planned, name
        assert pf.store_coverage(small, store) == (0, planned), name
        if name == "paper:few_shot_curves":  # a finished run counts, once
            spec = plan.grid[0].run.spec
            store.put(RunRecord.success(spec, task="classification",
                                        metrics={"val": {"loss": 0.5}}))
            assert pf.store_coverage(small, store) == (1, planned)
        # the full grid: the reduced grid's search stage times the fields it left out
        full = (planned - plan.pending_seed_runs()) * exp.grid_size // small.grid_size
        head = dataclasses.replace(exp, datasets=exp.datasets[:2])
        assert pf.planned_runs(head) == full + plan.pending_seed_runs(), name


def test_store_coverage_plans_only_what_the_store_holds_and_counts_as_the_full_plan(
        tmp_path, monkeypatch):
    """With runs of one dataset x model stored (a search run done, a whole group's search done
    so its seeds stage is planned), the coverage equals the full plan's own count, which
    plans every dataset and model."""
    exp = _reduced(load_experiment("paper:main_classification"))
    exp = dataclasses.replace(exp, models=exp.models[:2])
    store = ResultsStore(tmp_path / "runs.sqlite")
    full = pf._planned_coverage
    assert pf.store_coverage(exp, store) == full(exp, store) == (0, pf.planned_runs(exp))
    plan = make_plan(exp, store, check_data=False, check_models=False)
    first = plan.grid[0].run.group
    group = [s.run.spec for s in plan.grid if s.run.group == first]
    other = next(s.run.spec for s in plan.grid if s.run.group.dataset != first.dataset)
    for i, spec in enumerate([*group, other]):
        store.put(RunRecord.success(spec, task="classification", val_loss=1.0 - 0.1 * i,
                                    metrics={"val": {"loss": 1.0 - 0.1 * i}}))
    asked = []
    monkeypatch.setattr(pf, "_planned_coverage", lambda e, st: asked.append(e) or full(e, st))
    restricted = pf.store_coverage(exp, store)
    assert restricted == full(exp, store) and restricted[0] == len(group) + 1
    (kept,) = asked  # the model with no stored run was not planned
    assert len(kept.models) == 1 < len(exp.models)


def test_paper_command_lists_every_item_with_its_run_count():
    result = runner.invoke(app, ["paper"])
    assert result.exit_code == 0, result.output
    for item in pf.REGISTRY:
        assert f"{item.name}: " in result.output
        for name in item.experiments:
            runs = pf.planned_runs(load_experiment(name))
            assert f"experiment: {name}  runs: {runs}\n" in result.output
    assert "marsbench vlm" in result.output


def test_paper_command_shows_a_stores_coverage(tmp_path, monkeypatch):
    store = tmp_path / "runs.sqlite"
    ResultsStore(store)  # an empty store
    asked = []  # the count itself is tested above; here, that the command asks and prints it
    monkeypatch.setattr(pf, "store_coverage", lambda exp, s: asked.append(exp.name) or (3, 10))
    result = runner.invoke(app, ["paper", "table:classification", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert asked == ["main_classification"] and "in store: 3/10" in result.output
    assert "figure:" not in result.output
    result = runner.invoke(app, ["paper", "--store", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 2 and "no results store" in result.output


def test_report_figure_writes_its_files(tmp_path):
    out = tmp_path / "fig"
    result = runner.invoke(app, ["report", "--figure", "figure:few_shot", "--published",
                                 "--out", str(out), "--rounds", "50"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"figure_few_shot.csv", "figure_few_shot.png",
                                               "figure_few_shot.svg"}
    assert (out / "figure_few_shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "figure_few_shot.svg").read_bytes()[:400]
    numbers = pd.read_csv(out / "figure_few_shot.csv")
    assert list(numbers.columns) == pf.CURVE_COLUMNS and (numbers["runs"] > 0).all()
    table = tmp_path / "table"
    result = runner.invoke(app, ["report", "--figure", "table:segmentation", "--published",
                                 "--out", str(table)])
    assert result.exit_code == 0, result.output
    assert "| mb-boulder_seg | iou_reference | 0.514 ± " in (table / "table_segmentation.md"
                                                          ).read_text()
    assert "<table" in (table / "table_segmentation.html").read_text()


def test_report_figure_refuses_unknown_names_and_uncovered_items(tmp_path):
    result = runner.invoke(app, ["report", "--figure", "figure:trainingsize", "--published",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "figure:trainingsize" in lines[0]
    assert all(item.name in lines[0] for item in pf.REGISTRY)
    result = runner.invoke(app, ["report", "--figure", "figure:earth_observation",
                                 "--published", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "earth_data.csv --renumber-seeds" in result.output
    assert list(tmp_path.iterdir()) == []


def test_earth_observation_figure_from_the_published_csv(reference_results, tmp_path):
    result = runner.invoke(app, [
        "report", "--figure", "figure:earth_observation", "--csv",
        str(reference_results / "earth_data.csv"), "--renumber-seeds", "--rounds", "50",
        "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    numbers = pd.read_csv(tmp_path / "figure_earth_observation.csv")
    panels = numbers[numbers["panel"] != pf.AGGREGATE_PANEL]
    assert panels["model"].nunique() == 4 and panels["panel"].nunique() == 4
    # the reference's earth_data_stats.csv: CROMA on dust EDR at 1 %, mean and std normalised
    croma = panels.set_index(["panel", "model", "x"]).loc[
        ("mb-atmospheric_dust_cls_edr", "CROMA_ViT-L/16", 0.01)]
    assert croma["mean"] == pytest.approx(0.11827718019379499, abs=1e-6)
    assert croma["std"] == pytest.approx(0.18748392987031112, abs=1e-6)


def test_vlm_table_reads_the_zero_shot_runs():
    rows = [(model, dataset, task, "zero_shot", "full", 0, metric, value)
            for model, value in (("gemini-2.0-flash", 0.3), ("gpt-4o-mini", 0.5))
            for dataset, task in (("mb-frost_cls", "classification"),
                                  ("mb-mars_seg_msl", "segmentation"))
            for metric in ("f1_weighted", "accuracy")]
    rows.append(("resnet101", "mb-frost_cls", "classification", "feature_extraction", "full", 0,
                 "f1_weighted", 0.9))
    rows.append(("gpt-4o-mini", "mb-landmark_cls", "classification", "zero_shot", "full", 0,
                 "f1_weighted", 0.7))  # not one of the paper's VLM datasets
    table = pd.DataFrame(rows, columns=["model", "dataset", "task", "regime", "variant", "seed",
                                        "metric", "value"])
    numbers = pf.compute(pf.get_item("table:vlm"), table)
    assert sorted(zip(numbers["dataset"], numbers["model"], numbers["mean"])) == [
        ("mb-frost_cls", "gemini-2.0-flash", 0.3), ("mb-frost_cls", "gpt-4o-mini", 0.5),
        ("mb-mars_seg_msl", "gemini-2.0-flash", 0.3), ("mb-mars_seg_msl", "gpt-4o-mini", 0.5)]
    with pytest.raises(Exception, match="no runs for figure:few_shot.*few_shot_curves"):
        pf.compute(pf.get_item("figure:few_shot"), table)


@pytest.mark.parametrize("extra, named", [
    (["--normaliser", "table"], "--normaliser"), (["--partial"], "--partial"),
    (["--all-runs"], "--all-runs"), (["--store", "x.sqlite"], "--store/--csv")])
def test_report_figure_refuses_options_it_would_ignore(tmp_path, extra, named):
    result = runner.invoke(app, ["report", "--figure", "table:classification", "--published",
                                 "--out", str(tmp_path), *extra])
    assert result.exit_code == 2 and named in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_report_figure_from_a_store(tmp_path):
    from marsbench.runs import RunSpec

    store = ResultsStore(tmp_path / "runs.sqlite")
    for model, base in (("resnet101", 0.8), ("vit_l_16", 0.9)):
        for seed in (0, 1):
            spec = RunSpec(dataset="mb-frost_cls", model=model, regime="feature_extraction",
                           seed=seed)
            store.put(RunRecord.success(spec, task="classification", metrics={
                "test": {"f1_weighted": base + seed / 100, "accuracy": 0.5}}))
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", "--figure", "table:classification", "--store",
                                 str(tmp_path / "runs.sqlite"), "--all-runs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    numbers = pd.read_csv(out / "table_classification.csv")
    assert numbers[["model", "runs", "mean"]].values.tolist() == [["resnet101", 2, 0.805],
                                                                   ["vit_l_16", 2, 0.905]]
    assert (numbers["metric"] == "f1_weighted").all()

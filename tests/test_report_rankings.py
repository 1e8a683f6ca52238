"""The report's rankings, calibration and cost sections, checked against planted run records:
tiers separate distinct models and tie equal ones, the Pareto front is exactly the planted
non-dominated models, the calibration and cost tables are the planted numbers (means over
seeds), probe regimes stay their own groups, and each section is absent, with one note, when the
records lack its data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marsbench.aggregate import default_normaliser, results_table
from marsbench.metrics.calibration import reliability_diagram, risk_coverage_curve
from marsbench.report import build_report_data, make_figures, make_report, render_html, render_markdown
from marsbench.report.sections import pareto_front, read_test_predictions
from marsbench.runs import RunRecord, RunSpec
from test_report_content import CLASSES, write_predictions_csv

DATASETS = ("mb-domars16k", "mb-landmark_cls", "mb-surface_cls")
SEEDS = (0, 1, 2)
# planted headline levels per regime; "twin" equals "alpha" to the noise, "laggard" is far below.
# In the probe regime the order is reversed, so pooling it with fine_tuning would show.
LEVELS = {"fine_tuning": {"alpha": 0.85, "twin": 0.85, "laggard": 0.55},
          "linear_probe": {"alpha": 0.50, "twin": 0.60, "laggard": 0.80}}
# planted cost: (flops per image, parameters, trainable, wall time per stage)
COST = {"alpha": (1e10, 86_000_000, 86_000_000, dict(setup_s=4.0, feature_extraction_s=0.0,
                                                      training_s=300.0, evaluation_s=8.0)),
        "twin": (2e9, 25_000_000, 2_000, dict(setup_s=2.0, feature_extraction_s=40.0,
                                              training_s=6.0, evaluation_s=2.0)),
        "laggard": (5e9, 11_000_000, 11_000_000, dict(setup_s=1.0, feature_extraction_s=0.0,
                                                      training_s=2.0, evaluation_s=0.5))}


def planted(tmp_path, *, calibration=True, cost=True, predictions=True, regimes=tuple(LEVELS),
            models=("alpha", "twin", "laggard")) -> tuple[pd.DataFrame, list[RunRecord]]:
    """A results table and the `RunRecord.success` behind each of its runs."""
    rng = np.random.default_rng(7)
    rows, records = [], []
    for regime in regimes:
        for model in models:
            for dataset in DATASETS:
                for seed in SEEDS:
                    value = LEVELS[regime][model] + rng.normal(0, 0.004)
                    rows.append(dict(model=model, dataset=dataset, task="classification",
                                     regime=regime, variant="full", seed=seed,
                                     metric="f1_weighted", value=value))
                    test = {"f1_weighted": value, "accuracy": value}
                    extra: dict = {}
                    timings: dict = {}
                    if calibration:
                        test.update(ece=0.01 * (1 + SEEDS.index(seed)) + 0.1 * (1 - value),
                                    ece_temperature_scaled=0.005 * (1 + seed), aurc=0.4 * (1 - value))
                        extra["calibration"] = {"bins": 15, "temperature": 1.0 + 0.25 * seed}
                    if cost:
                        flops, params, trainable, stages = COST[model]
                        energy = 100.0 * (1 + seed) if seed < 2 else None  # seed 2: no meter
                        extra["cost"] = {"flops_per_image": flops, "parameters": params,
                                         "trainable_parameters": trainable,
                                         "peak_memory_bytes": 1_000_000 * (1 + seed),
                                         "peak_memory_kind": "cuda max_memory_allocated",
                                         "energy_joules": energy,
                                         "energy_source": "NVML total energy counter" if energy
                                         else "NVML has no energy counter here (NVMLError)"}
                        timings = {**{k: v * (1 + 0.1 * seed) for k, v in stages.items()}}
                        timings["total_s"] = sum(timings.values())
                    spec = RunSpec(dataset=dataset, model=model, regime=regime, seed=seed)
                    path = None
                    if predictions:
                        path = write_predictions_csv(tmp_path / f"{model}-{regime}-{dataset}-{seed}.csv",
                                                     CLASSES[dataset], value, 1.5, len(records))
                    records.append(RunRecord.success(spec, task="classification", metrics={"test": test},
                                                     extra=extra, timings=timings,
                                                     predictions_path=path))
    return results_table(rows), records


def build(table, records, **kwargs):
    return build_report_data(table, normaliser=default_normaliser(), rounds=300, records=records,
                             **kwargs)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    table, records = planted(folder)
    return table, records, build(table, records)


def test_tiers_separate_distinct_models_and_tie_equal_ones(report):
    _, _, data = report
    tiers = data.sections.tiers.set_index(["regime", "model"])
    assert set(data.sections.tiers["regime"]) == {"fine_tuning", "linear_probe"}
    assert (data.sections.tiers["basis"] == "normalised score").all()
    ft = tiers.loc["fine_tuning"]
    assert ft.loc["alpha", "tier"] == ft.loc["twin", "tier"] == 1  # planted equal: tied
    assert ft.loc["laggard", "tier"] == 2  # planted far below: its own tier
    # the probe regime is its own group, with its own (reversed) order: never pooled
    lp = tiers.loc["linear_probe"]
    assert lp.loc["laggard", "tier"] == 1 and lp.loc["twin", "tier"] == 2 and lp.loc["alpha", "tier"] == 3
    ranks = data.sections.rank_intervals.set_index(["regime", "model"])
    assert ranks.loc[("fine_tuning", "laggard"), "rank_low"] == 3
    assert {ranks.loc[("fine_tuning", m), "rank_high"] for m in ("alpha", "twin")} == {2}
    wins = data.sections.win_probability.set_index(["regime", "model", "opponent"])["probability"]
    assert wins[("fine_tuning", "alpha", "laggard")] == 1.0
    assert wins[("linear_probe", "laggard", "alpha")] == 1.0
    assert wins[("fine_tuning", "alpha", "twin")] + wins[("fine_tuning", "twin", "alpha")] == pytest.approx(1)
    # seeds needed: per regime and dataset, one row per delta, from the raw metric's spread
    power = data.sections.seed_power
    assert len(power) == 2 * len(DATASETS) * 3 and (power["metric"] == "f1_weighted").all()
    assert (power["seeds_needed"] >= 2).all()
    html = render_html(data, [])
    assert html.count("<h3>Rankings that survive noise</h3>") == 1
    assert "<h4>fine_tuning</h4>" in html and "<h4>linear_probe</h4>" in html
    assert "seeds for Δ = 0.01" in html and "seeds for Δ = 0.01" in render_markdown(data, [])


def test_pareto_front_is_exactly_the_planted_non_dominated_models(report):
    _, _, data = report
    cost = data.sections.cost.set_index(["regime", "model"])
    ft = cost.loc["fine_tuning"]
    # fine_tuning: alpha ≈ twin in score, far above laggard. FLOPs: twin (2 G) < laggard (5 G) <
    # alpha (10 G), so laggard is dominated by twin; alpha is on the front only if it scores
    # higher than twin. Wall time: laggard (3.5 s) < twin (50 s) < alpha (312 s): laggard is
    # on the time front as the cheapest.
    scores = ft["score"]
    assert scores["laggard"] < min(scores["alpha"], scores["twin"])
    alpha = {"alpha"} if scores["alpha"] > scores["twin"] else set()
    assert set(ft.index[ft["pareto_flops"]]) == {"twin"} | alpha
    assert set(ft.index[ft["pareto_time"]]) == {"laggard", "twin"} | alpha
    # linear_probe: laggard scores best and is cheapest in time; twin beats alpha at lower cost
    lp = cost.loc["linear_probe"]
    assert set(lp.index[lp["pareto_time"]]) == {"laggard"}
    assert set(lp.index[lp["pareto_flops"]]) == {"twin", "laggard"}
    # the function itself, on a hand-made case with a tie in cost
    front = pareto_front(np.array([0.9, 0.8, 0.7, 0.8, np.nan]), np.array([10, 1, 5, 1, 0.1]))
    assert front.tolist() == [True, True, False, True, False]


def test_cost_table_holds_the_planted_numbers(report):
    _, records, data = report
    cost = data.sections.cost.set_index(["regime", "model"])
    for regime in LEVELS:
        for model, (flops, params, trainable, stages) in COST.items():
            row = cost.loc[(regime, model)]
            assert row["runs"] == len(DATASETS) * len(SEEDS) and row["datasets"] == len(DATASETS)
            assert row["flops_per_image"] == flops and row["parameters"] == params
            assert row["trainable_parameters"] == trainable
            for stage, value in stages.items():  # mean over seeds of value * (1 + 0.1 seed)
                assert row[stage] == pytest.approx(np.mean([value * (1 + 0.1 * s) for s in SEEDS]))
            assert row["total_s"] == pytest.approx(np.mean([sum(stages.values()) * (1 + 0.1 * s)
                                                            for s in SEEDS]))
            assert row["peak_memory_bytes"] == 3_000_000  # the largest peak, not a mean
            assert row["peak_memory_kind"] == "cuda max_memory_allocated"
            assert row["energy_joules"] == 150.0 and row["energy_runs"] == 6  # measured runs only
            assert row["energy_source"] == "NVML total energy counter"
            iqm = data.task_scores.set_index(["regime", "model"]).loc[(regime, model), "iqm"]
            assert row["score"] == iqm and row["score_kind"] == "IQM of normalised scores"
    html = render_html(data, [])
    assert "<h3>Cost per result</h3>" in html and "10 G" in html and "86 M" in html
    assert "150 J (n=6)" in html


def test_calibration_table_is_the_mean_of_the_planted_values(report):
    _, records, data = report
    planted_rows = pd.DataFrame([
        {"regime": r.spec.regime, "dataset": r.spec.dataset, "model": r.spec.model,
         "ece": r.metrics["test"]["ece"], "scaled": r.metrics["test"]["ece_temperature_scaled"],
         "aurc": r.metrics["test"]["aurc"], "temperature": r.extra["calibration"]["temperature"]}
        for r in records])
    expect = planted_rows.groupby(["regime", "dataset", "model"]).mean()
    got = data.sections.calibration.set_index(["regime", "dataset", "model"]).sort_index()
    assert len(got) == len(expect) == 2 * 3 * len(DATASETS) and (got["runs"] == 3).all()
    assert got["ece"].to_numpy() == pytest.approx(expect["ece"].to_numpy(), abs=1e-15)
    assert got["ece_temperature_scaled"].to_numpy() == pytest.approx(expect["scaled"].to_numpy())
    assert got["aurc"].to_numpy() == pytest.approx(expect["aurc"].to_numpy())
    assert got["temperature"].to_numpy() == pytest.approx(expect["temperature"].to_numpy())
    html = render_html(data, [])
    row = expect.loc[("fine_tuning", "mb-domars16k", "alpha")]
    assert "<h3>Calibration</h3>" in html and f"<td>{row['ece']:.3f}</td>" in html
    # reliability and risk-coverage: the test rows of the three seeds' CSVs, pooled
    runs = [read_test_predictions(r.predictions_path) for r in records
            if (r.spec.regime, r.spec.dataset, r.spec.model) == ("fine_tuning", "mb-domars16k", "alpha")]
    probs, labels = np.concatenate([p[0] for p in runs]), np.concatenate([p[1] for p in runs])
    bins = data.sections.reliability
    mine = bins[(bins["regime"] == "fine_tuning") & (bins["dataset"] == "mb-domars16k")
                & (bins["model"] == "alpha")]
    assert mine["count"].sum() == 3 * 160 and (mine["runs"] == 3).all()
    pd.testing.assert_series_equal(mine["accuracy"].reset_index(drop=True),
                                   reliability_diagram(probs, labels)["accuracy"], check_names=False)
    curves = data.sections.risk_coverage
    aurc = curves.loc[(curves["regime"] == "fine_tuning") & (curves["dataset"] == "mb-domars16k")
                      & (curves["model"] == "alpha"), "aurc"].unique()
    assert aurc == pytest.approx([risk_coverage_curve(probs, labels).aurc])
    names = {f.name for f in make_figures(data)}
    assert {"classification_win_probability", "classification_reliability",
            "classification_risk_coverage", "classification_cost"} <= names


def test_a_model_without_calibration_metrics_is_not_shown(tmp_path):
    table, records = planted(tmp_path, regimes=("fine_tuning",), predictions=False)
    for r in records:
        if r.spec.model == "twin":
            for key in ("ece", "ece_temperature_scaled", "aurc"):
                del r.metrics["test"][key]
            del r.extra["cost"]
            r.timings = {}
    data = build(table, records)
    assert set(data.sections.calibration["model"]) == {"alpha", "laggard"}
    assert set(data.sections.cost["model"]) == {"alpha", "laggard"}
    assert data.sections.reliability.empty  # no predictions CSVs: no curves, the table stays
    html = render_html(data, [])
    assert "Not shown (their records hold no calibration metrics): twin." in html
    assert "Not shown (their records hold no cost): twin." in html
    assert "no calibration metrics in these runs" not in html


def test_sections_are_absent_with_a_note_when_the_records_lack_the_data(tmp_path):
    table, records = planted(tmp_path, calibration=False, cost=False, predictions=False,
                             regimes=("fine_tuning",), models=("alpha",))
    data = build(table, records)
    notes = data.notes()
    assert sum("no calibration metrics in these runs" in n for n in notes) == 1
    assert sum("no cost records in these runs" in n for n in notes) == 1
    assert sum("Rankings" in n and "need ≥2 models" in n for n in notes) == 1
    html, md = render_html(data, []), render_markdown(data, [])
    for text in (html, md):
        assert "Rankings that survive noise" not in text
        assert "Cost per result" not in text and "Calibration</h3>" not in text
        assert "### Calibration" not in text
    assert html.count("no calibration metrics in these runs") == 1
    assert not {"rankings", "calibration", "cost"} & {f.section for f in make_figures(data)}
    # without any records (a CSV), the same notes
    bare = build(table, None)
    assert bare.sections.cost.empty and bare.sections.calibration.empty
    written = make_report(table, tmp_path / "out", baselines=False, rounds=50)
    for name in ("tiers", "rank_intervals", "win_probability", "seed_power", "calibration", "cost"):
        frame = pd.read_csv(written[f"table:{name}"])
        assert frame.empty and len(frame.columns) > 3, name


def test_csv_tables_are_written(report, tmp_path):
    table, records, data = report
    written = make_report(table, tmp_path / "out", baselines=False, rounds=50, records=records)
    tiers = pd.read_csv(written["table:tiers"])
    assert list(tiers.columns) == ["task", "regime", "basis", "model", "score", "tier", "leader",
                                   "ci_low", "ci_high"]
    assert len(tiers) == 6
    win = pd.read_csv(written["table:win_probability"])
    assert len(win) == 2 * 3 * 2  # two regimes, ordered pairs of three models
    cost = pd.read_csv(written["table:cost"])
    assert {"flops_per_image", "total_s", "pareto_flops", "pareto_time"} <= set(cost.columns)
    assert len(pd.read_csv(written["table:seed_power"])) == 18
    assert len(pd.read_csv(written["table:calibration"])) == 18
    md = written["markdown"].read_text()
    assert "### Rankings that survive noise" in md and "### Calibration" in md
    assert "### Cost per result" in md and "![classification: score against cost]" in md

"""The report's science metrics (object counts / sizes, imbalance) averaged from run records."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from marsbench.report.science import science_display, science_table


def _rec(**test):
    return SimpleNamespace(metrics={"test": test})


def test_mean_and_sd_over_seeds_leave_undefined_values_out():
    matched = {
        ("unet", "mb-crater_binary_seg", "fine_tuning", "full", 0):
            _rec(object_f1=0.5, count_mae=2.0, sfd_ks=None, iou_reference=0.7),
        ("unet", "mb-crater_binary_seg", "fine_tuning", "full", 1):
            _rec(object_f1=0.7, count_mae=4.0, sfd_ks=0.2, iou_reference=0.8),
        ("unet", "mb-crater_binary_seg", "fine_tuning", "partition:0.10", 0):
            _rec(object_f1=0.0),  # not the full training set: not in the table
        ("resnet18", "mb-landmark_cls", "feature_extraction", "full", 0):
            _rec(recall_tail=0.25, balanced_accuracy=0.6),
    }
    tasks = {"mb-crater_binary_seg": "segmentation", "mb-landmark_cls": "classification"}
    table = science_table(matched, tasks)
    seg = table[table["task"] == "segmentation"].set_index("metric")
    assert seg.loc["object_f1", "mean"] == pytest.approx(0.6)
    assert seg.loc["object_f1", "std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert seg.loc["count_mae", "mean"] == pytest.approx(3.0)
    # an undefined SFD distance (fewer than two objects) is left out, not counted as 0
    assert seg.loc["sfd_ks", "mean"] == pytest.approx(0.2)
    assert (seg.loc["sfd_ks", "defined"], seg.loc["sfd_ks", "runs"]) == (1, 2)
    assert "iou_reference" not in seg.index  # the headline lives in its own tables
    shown = science_display(table, "segmentation", "fine_tuning").iloc[0]
    assert shown["object F1 ↑"] == "0.600 ± 0.141"
    assert shown["SFD KS distance ↓"] == "0.200 (n=1/2)"
    cls = science_display(table, "classification", "feature_extraction").iloc[0]
    assert cls["recall, tail classes ↑"] == "0.250"


def test_no_records_gives_an_empty_table():
    table = science_table({}, {})
    assert table.empty and "metric" in table.columns
    assert science_display(table, "detection", "fine_tuning").empty


def test_the_report_shows_and_writes_the_science_metrics(tmp_path):
    """Planted segmentation records: the rendered report carries the section with the planted
    means, and tables/science_metrics.csv holds them."""
    import pandas as pd

    from marsbench.aggregate import results_table
    from marsbench.report import make_report
    from marsbench.runs import RunRecord, RunSpec

    rows, records = [], []
    for model, f1 in (("unet", 0.8), ("deeplabv3plus", 0.4)):
        for dataset in ("mb-crater_binary_seg", "mb-boulder_seg"):
            for seed in (0, 1):
                iou = 0.5 + 0.1 * seed + (0.2 if model == "unet" else 0.0)
                rows.append(dict(model=model, dataset=dataset, task="segmentation",
                                 regime="feature_extraction", variant="full", seed=seed,
                                 metric="iou_reference", value=iou))
                spec = RunSpec(dataset=dataset, model=model, regime="feature_extraction",
                               seed=seed)
                test = {"iou_reference": iou, "object_f1": f1 + 0.1 * seed,
                        "count_mae": 1.0 + seed, "sfd_ks": 0.3, "sfd_slope_diff": -0.2}
                records.append(RunRecord.success(spec, task="segmentation",
                                                 metrics={"test": test}))
    written = make_report(results_table(rows), tmp_path / "out", baselines=False, rounds=50,
                          records=records)
    table = pd.read_csv(written["table:science_metrics"])
    unet = table[(table["model"] == "unet") & (table["dataset"] == "mb-boulder_seg")]
    assert unet.set_index("metric").loc["object_f1", "mean"] == pytest.approx(0.85)
    md = written["markdown"].read_text()
    assert "### Science metrics: objects and rare classes" in md
    assert "0.850 ± 0.071" in md  # unet's object F1 over its two seeds
    html = written["html"].read_text()
    assert "Science metrics: objects and rare classes" in html and "SFD KS distance" in html

"""Cost per result: FLOPs (against the analytic count), parameters, peak memory, energy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marsbench.runs import RunSpec
from marsbench.training.cost import CostMeter, count_flops, model_cost
from marsbench.training.run import run_experiment

pytestmark = pytest.mark.usefixtures("isolated_cache")  # tests/conftest.py


def test_flops_equal_the_analytic_count_of_a_small_conv_net():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 16 * 16, 10))
    conv = 2 * (8 * 16 * 16) * (3 * 3 * 3)  # a multiply-add per kernel tap per output
    linear = 2 * (8 * 16 * 16) * 10
    assert count_flops(net, torch.zeros(1, 3, 16, 16)) == conv + linear


def test_counts_are_cached_per_model_and_shape():
    net = nn.Linear(4, 2)
    first = model_cost("toy", torch.zeros(1, 4), lambda: net)
    assert first == {"flops_per_image": 2 * 4 * 2, "parameters": 10}

    def must_not_build():
        raise AssertionError("counted again although cached")

    assert model_cost("toy", torch.zeros(1, 4), must_not_build) == first
    assert model_cost("toy", torch.zeros(1, 8), lambda: nn.Linear(8, 2))["parameters"] == 18


def test_cpu_meter_names_its_memory_and_invents_no_energy():
    with CostMeter(torch.device("cpu")) as meter:
        pass
    summary = meter.summary(model_cost={"flops_per_image": 1, "parameters": 2}, trainable=None)
    assert summary["energy_joules"] is None and "CPU" in summary["energy_source"]
    assert summary["peak_memory_kind"].startswith("process peak RSS")
    assert summary["peak_memory_bytes"] > 10 * 2**20


def test_every_run_records_its_cost(synth_suite, monkeypatch):
    root = synth_suite["folder"]["mb-frost_cls"].parent
    base = dict(dataset="mb-frost_cls", data_root=str(root), model="efficientnet_lite0",
                max_epochs=1, batch_size=8, options={"input_size": 32})
    fe = run_experiment(RunSpec(regime="feature_extraction", **base)).extra["cost"]
    assert fe["flops_per_image"] > 1e6 and fe["parameters"] > 3e6
    assert 0 < fe["trainable_parameters"] < fe["parameters"] / 100  # the head alone
    # features and FLOPs cached: the second run builds no model and still knows its cost
    monkeypatch.setattr("marsbench.training.run.default_model",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("built")))
    again = run_experiment(RunSpec(regime="feature_extraction", seed=3, **base)).extra["cost"]
    assert again["flops_per_image"] == fe["flops_per_image"]
    assert again["parameters"] == fe["parameters"]
    monkeypatch.undo()
    tuned = run_experiment(RunSpec(regime="fine_tuning", **base)).extra["cost"]
    assert tuned["trainable_parameters"] == tuned["parameters"]


def test_classification_runs_record_calibration(synth_suite, tmp_path):
    """ECE, the temperature-scaled ECE and AURC of the test split, in the metrics; the ECE
    recomputed from the predictions CSV's probabilities agrees."""
    import pandas as pd

    from marsbench.metrics.calibration import expected_calibration_error

    root = synth_suite["folder"]["mb-domars16k"].parent
    record = run_experiment(RunSpec(dataset="mb-domars16k", data_root=str(root),
                                    model="efficientnet_lite0", regime="linear_probe",
                                    options={"input_size": 32}), out_dir=tmp_path)
    test = record.metrics["test"]
    assert {"ece", "ece_temperature_scaled", "aurc"} <= set(test)
    assert record.extra["calibration"]["temperature"] > 0
    rows = pd.read_csv(record.predictions_path)
    rows = rows[rows["split"] == "test"]
    probs = rows[[c for c in rows if c.startswith("p_")]].to_numpy()
    assert expected_calibration_error(probs, rows["true"].to_numpy()) == pytest.approx(
        test["ece"], abs=1e-4)

"""marsbench.metrics.calibration: ECE (hand-computed and against torchmetrics when installed),
temperature scaling, reliability diagrams, risk-coverage curves and the run-record summary."""

from __future__ import annotations

import numpy as np
import pytest

from marsbench.metrics import predictions_from_logits
from marsbench.metrics.calibration import (
    RiskCoverage, apply_temperature, calibration_summary, expected_calibration_error,
    fit_temperature, plot_reliability_diagram, reliability_diagram, risk_coverage_curve,
    to_probabilities,
)


def planted_logits():
    """Ten 3-class samples whose softmax is exactly the listed probabilities (logits = log p).

    confidence 0.90 x4 (3 right), 0.55 x2 (2 right), 0.75 x4 (2 right): 15 bins put the three
    groups in different bins, so ECE = (4 * |0.75 - 0.9| + 2 * |1 - 0.55| + 4 * |0.5 - 0.75|) / 10
    = (0.6 + 0.9 + 1.0) / 10 = 0.25. With 2 bins all fall in (0.5, 1]: mean confidence
    (3.6 + 1.1 + 3.0) / 10 = 0.77, accuracy 0.7, ECE 0.07.
    """
    probs = [[0.9, 0.05, 0.05]] * 4 + [[0.3, 0.55, 0.15]] * 2 + [[0.1, 0.15, 0.75]] * 4
    labels = [0, 0, 0, 1] + [1, 1] + [2, 2, 0, 1]
    return np.log(np.array(probs)), np.array(labels)


def test_ece_hand_computed():
    logits, labels = planted_logits()
    probs = to_probabilities(logits)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.25, abs=1e-12)
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.07, abs=1e-12)
    assert expected_calibration_error(probs, labels, 15, kind="multiclass") == pytest.approx(0.25)


def test_ece_perfect_and_binary_forms_agree():
    # every sample right with confidence 1 -> ECE 0
    assert expected_calibration_error(np.eye(3)[[0, 1, 2]], np.array([0, 1, 2])) == 0.0
    gen = np.random.default_rng(0)
    p = gen.random(500)
    y = (gen.random(500) < p).astype(int)
    one = expected_calibration_error(p, y)  # binary: one probability of class 1
    two = expected_calibration_error(np.stack([1 - p, p], axis=1), y)  # as 2-class
    assert one == pytest.approx(two, abs=1e-12)
    assert expected_calibration_error(p, y, kind="image_pair") == pytest.approx(one)


def test_ece_multilabel_pools_one_vs_rest_decisions():
    gen = np.random.default_rng(1)
    p = gen.random((200, 4))
    y = (gen.random((200, 4)) < p).astype(int)
    pooled = expected_calibration_error(p.reshape(-1), y.reshape(-1), kind="binary")
    assert expected_calibration_error(p, y) == pytest.approx(pooled)  # kind inferred: multilabel
    assert expected_calibration_error(p, y, kind="multilabel") == pytest.approx(pooled)


def test_ece_matches_torchmetrics():
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.classification")
    gen = np.random.default_rng(2)
    for classes, n_bins in ((5, 15), (3, 10), (2, 15)):
        logits = gen.normal(0, 3, (2000, classes))
        labels = gen.integers(0, classes, 2000)
        probs = to_probabilities(logits)
        metric = tm.MulticlassCalibrationError(num_classes=classes, n_bins=n_bins, norm="l1")
        want = float(metric(torch.tensor(probs, dtype=torch.float64), torch.tensor(labels)))
        assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(want, abs=1e-6)


def test_reliability_diagram_bins():
    logits, labels = planted_logits()
    diagram = reliability_diagram(to_probabilities(logits), labels)
    assert list(diagram.columns) == ["bin", "bin_low", "bin_high", "confidence", "accuracy", "count"]
    assert len(diagram) == 15 and diagram["count"].sum() == 10
    used = diagram[diagram["count"] > 0].set_index("bin")
    assert used["count"].to_dict() == {8: 2, 11: 4, 13: 4}  # 0.55, 0.75, 0.90
    assert used.loc[13, "confidence"] == pytest.approx(0.9) and used.loc[13, "accuracy"] == 0.75
    assert diagram.loc[diagram["count"] == 0, ["confidence", "accuracy"]].isna().all().all()
    # bins are closed on the right: confidence exactly 0.6 is in (8/15, 9/15], 1.0 in the last
    edges = reliability_diagram(np.array([[0.6, 0.4], [1.0, 0.0]]), np.array([0, 0]), 5)
    assert edges["count"].tolist() == [0, 0, 1, 0, 1]


def test_plot_reliability_diagram_returns_figure(tmp_path):
    from matplotlib.figure import Figure

    logits, labels = planted_logits()
    fig = plot_reliability_diagram(to_probabilities(logits), labels, title="planted")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "planted"
    assert "ECE 0.250" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()][1]
    fig.savefig(tmp_path / "rel.png")
    again = plot_reliability_diagram(diagram=reliability_diagram(to_probabilities(logits), labels),
                                     ax=fig.axes[0])
    assert again is fig


def test_fit_temperature_recovers_planted_overconfidence():
    # labels drawn from softmax(z): z is calibrated; a model emitting 4 z is over-confident.
    gen = np.random.default_rng(3)
    z = gen.normal(0, 1.5, (8000, 4))
    p = to_probabilities(z)
    labels = (gen.random((8000, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    temperature = fit_temperature(4 * z, labels)
    assert temperature == pytest.approx(4.0, rel=0.06)
    before = expected_calibration_error(to_probabilities(4 * z), labels)
    after = expected_calibration_error(to_probabilities(apply_temperature(4 * z, temperature)), labels)
    assert after < before / 3
    # the fit minimises the NLL: nearby temperatures do worse
    from marsbench.metrics.calibration import _nll

    best = _nll(4 * z, labels, "multiclass", temperature)
    assert best < _nll(4 * z, labels, "multiclass", temperature * 1.05)
    assert best < _nll(4 * z, labels, "multiclass", temperature / 1.05)


def test_fit_temperature_binary_and_multilabel():
    gen = np.random.default_rng(4)
    z = gen.normal(0, 2, 6000)
    y = (gen.random(6000) < to_probabilities(z)).astype(int)
    assert fit_temperature(3 * z, y) == pytest.approx(3.0, rel=0.08)
    assert fit_temperature(0.5 * z, y, kind="binary") == pytest.approx(0.5, rel=0.08)  # under-confident
    zm = gen.normal(0, 2, (2000, 3))
    ym = (gen.random((2000, 3)) < to_probabilities(zm, "multilabel")).astype(int)
    assert fit_temperature(2 * zm, ym, kind="multilabel") == pytest.approx(2.0, rel=0.08)


def test_fit_temperature_warns_at_bound():
    logits = np.array([[5.0, -5.0], [-5.0, 5.0]])  # perfectly separated: NLL falls as T -> 0
    with pytest.warns(RuntimeWarning, match="bound"):
        assert fit_temperature(logits, np.array([0, 1])) == pytest.approx(0.01, rel=1e-3)


def test_apply_temperature_and_probabilities():
    logits = np.array([[2.0, 0.0, -2.0]])
    np.testing.assert_allclose(apply_temperature(logits, 2.0), [[1.0, 0.0, -1.0]])
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(logits, 0.0)
    gen = np.random.default_rng(5)
    for kind, shape in (("multiclass", (6, 4)), ("binary", (6,)), ("multilabel", (6, 3))):
        x = gen.normal(size=shape)
        want = predictions_from_logits(x, kind)[1]
        got = to_probabilities(x, kind)
        np.testing.assert_allclose(got, want[:, 1] if kind == "binary" else want)


def test_risk_coverage_hand_checkable():
    curve = risk_coverage_curve(np.array([0.6, 0.9, 0.7, 0.8]), np.array([1, 1, 0, 1]))
    assert isinstance(curve, RiskCoverage)
    np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.threshold, [0.9, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(curve.accuracy, [1.0, 1.0, 2 / 3, 3 / 4])
    np.testing.assert_allclose(curve.risk, [0.0, 0.0, 1 / 3, 1 / 4])
    assert curve.aurc == pytest.approx(7 / 48)
    assert list(curve.to_frame().columns) == ["coverage", "accuracy", "risk", "threshold"]


def test_risk_coverage_ties_do_not_depend_on_order():
    # confidences 0.9, 0.8, 0.8, 0.6 with the tied pair one right, one wrong: at k = 2 half of
    # the pair is kept, 1.5 right of 2; risks 0, 0.25, 1/3, 1/4.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.4, 0.6]])
    labels = np.array([0, 0, 0, 1])  # right, right, wrong, right
    for order in ([0, 1, 2, 3], [0, 2, 1, 3], [3, 2, 1, 0]):
        curve = risk_coverage_curve(probs[order], labels[order])
        np.testing.assert_allclose(curve.risk, [0.0, 0.25, 1 / 3, 1 / 4])
        assert curve.aurc == pytest.approx((0.25 + 1 / 3 + 0.25) / 4)


def test_calibration_summary_keys_and_values():
    gen = np.random.default_rng(6)
    z = gen.normal(0, 1.5, (4000, 3))
    p = to_probabilities(z)
    labels = (gen.random((4000, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    logits = 4 * z
    summary = calibration_summary(logits[:2000], labels[:2000], logits[2000:], labels[2000:], "multiclass")
    assert set(summary) == {"ece", "ece_temperature_scaled", "temperature", "aurc"}
    assert all(type(v) is float for v in summary.values())
    assert summary["temperature"] == pytest.approx(fit_temperature(logits[:2000], labels[:2000]))
    assert summary["ece"] == pytest.approx(
        expected_calibration_error(to_probabilities(logits[2000:]), labels[2000:]))
    assert summary["ece_temperature_scaled"] < summary["ece"]
    assert summary["aurc"] == pytest.approx(
        risk_coverage_curve(to_probabilities(logits[2000:]), labels[2000:]).aurc)
    separated = (z[:, 0] > 0).astype(int)
    with pytest.warns(RuntimeWarning, match="bound"):  # perfectly separated: T -> 0
        binary = calibration_summary(z[:, 0], separated, z[:, 0], separated, "image_pair")
    assert binary["aurc"] == 0.0  # every decision right


def test_bad_inputs():
    with pytest.raises(ValueError, match="sums to"):
        expected_calibration_error(np.array([[0.6, 0.6], [0.5, 0.5]]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(np.array([[3.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="class indices"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([2]))
    with pytest.raises(ValueError, match="n_bins"):
        reliability_diagram(np.array([0.5]), np.array([1]), n_bins=0)
    with pytest.raises(ValueError, match="unknown classification kind"):
        expected_calibration_error(np.array([0.5]), np.array([1]), kind="regression")

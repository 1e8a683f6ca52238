"""Metrics per task: pure functions from targets and predictions to a dict of scores.

Classification lives in `classification.py` (calibration of its scores in `calibration.py`);
segmentation and detection get their own modules; object counts and size-frequency
distributions for both are in `objects.py`.
"""

from __future__ import annotations

from .calibration import (
    RiskCoverage,
    apply_temperature,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    plot_reliability_diagram,
    reliability_diagram,
    risk_coverage_curve,
    to_probabilities,
)
from .classification import (
    CLASSIFICATION_KINDS,
    classification_metrics,
    predictions_from_logits,
)
from .objects import ObjectMeter, detection_count_metrics, object_metrics, sfd_metrics

__all__ = [
    "CLASSIFICATION_KINDS", "ObjectMeter", "RiskCoverage", "apply_temperature",
    "calibration_summary", "classification_metrics", "detection_count_metrics",
    "expected_calibration_error", "fit_temperature", "object_metrics", "plot_reliability_diagram",
    "predictions_from_logits", "reliability_diagram", "risk_coverage_curve", "sfd_metrics",
    "to_probabilities",
]

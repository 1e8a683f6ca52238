"""Metrics per task: pure functions from targets and predictions to a dict of scores.

Classification lives in `classification.py`; segmentation and detection get their own modules.
"""

from __future__ import annotations

from .classification import (
    CLASSIFICATION_KINDS,
    classification_metrics,
    predictions_from_logits,
)

__all__ = ["CLASSIFICATION_KINDS", "classification_metrics", "predictions_from_logits"]

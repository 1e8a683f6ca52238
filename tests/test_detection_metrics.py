"""COCO mAP (pycocotools) against values worked out by hand, negatives included."""

import numpy as np
import pytest

from marsbench.metrics.detection import ImageDetections, detection_metrics

NO_BOXES = np.zeros((0, 4), np.float32)
NO_LABELS = np.zeros(0, np.int64)


def image(name, gt, det=(), scores=(), size=100):
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    det = np.asarray(det, np.float32).reshape(-1, 4)
    return ImageDetections(name, size, size, gt, np.ones(len(gt), np.int64), det,
                           np.asarray(scores, np.float32), np.ones(len(det), np.int64))


BOX = [10, 10, 50, 50]


def test_perfect_detections_score_one_and_nothing_detected_scores_zero():
    perfect = detection_metrics([image("a", [BOX], [BOX], [0.9]),
                                 image("b", [[60, 60, 90, 95]], [[60, 60, 90, 95]], [0.8])],
                                ["crater"])
    assert perfect["map_50_95"] == pytest.approx(1.0) and perfect["map_50"] == pytest.approx(1.0)
    empty = detection_metrics([image("a", [BOX]), image("b", [])], ["crater"])
    assert empty["map_50_95"] == 0.0 and empty["map_50"] == 0.0
    assert empty["num_negatives"] == 1 and empty["num_detections"] == 0


def test_a_false_positive_on_a_negative_image_counts():
    """Ranked detections: FP on the negative image (0.9), then the TP (0.8): precision at
    recall 1 is 1/2 at every IoU threshold, so AP = 0.5. Without the negative image it is 1."""
    with_negative = detection_metrics(
        [image("pos", [BOX], [BOX], [0.8]), image("neg", [], [[20, 20, 60, 60]], [0.9])],
        ["crater"])
    assert with_negative["map_50_95"] == pytest.approx(0.5, abs=1e-6)
    assert with_negative["map_50"] == pytest.approx(0.5, abs=1e-6)
    alone = detection_metrics([image("pos", [BOX], [BOX], [0.8])], ["crater"])
    assert alone["map_50_95"] == pytest.approx(1.0)


def test_localisation_quality_spreads_over_the_iou_thresholds():
    """A detection with IoU 0.64 with its box matches at thresholds 0.50, 0.55 and 0.60 only:
    AP50 = 1 and AP@[.5:.95] = 3/10."""
    gt, det = [0, 0, 100, 50], [0, 0, 64, 50]  # IoU = 64*50 / (100*50) = 0.64
    m = detection_metrics([image("a", [gt], [det], [0.7], size=120)], ["crater"])
    assert m["map_50"] == pytest.approx(1.0)
    assert m["map_75"] == 0.0
    assert m["map_50_95"] == pytest.approx(0.3)


def test_half_recall_and_size_buckets():
    """Two boxes, one found: precision 1 up to recall 0.5, then nothing -> AP = 51/101 (COCO's
    101 recall points 0, 0.01 .. 0.5 are covered). Both boxes are small (< 32² px)."""
    m = detection_metrics([image("a", [[0, 0, 20, 20], [50, 50, 70, 70]], [[0, 0, 20, 20]],
                                 [0.9])], ["crater"])
    assert m["map_50"] == pytest.approx(51 / 101)
    assert m["map_small"] == pytest.approx(51 / 101)
    assert np.isnan(m["map_large"])


def test_only_negatives_give_nan_not_a_crash():
    m = detection_metrics([image("neg", [], [[1, 1, 5, 5]], [0.5])], ["crater"])
    assert np.isnan(m["map_50_95"])

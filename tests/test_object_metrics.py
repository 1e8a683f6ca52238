"""Object metrics (counts, object F1, size-frequency distributions) on synthetic disks and boxes
whose answers are counted by hand."""

import math
from array import array

import numpy as np
import pytest

from marsbench.metrics.detection import ImageDetections, detection_metrics
from marsbench.metrics.objects import (
    ObjectMeter,
    box_diameters,
    cumulative_sfd_slope,
    equivalent_diameters,
    object_metrics,
    sfd_metrics,
)
from marsbench.metrics.segmentation import SegmentationMeter, segmentation_metrics

SHAPE = (120, 120)


def disks(*specs, shape=SHAPE, value=1, out=None):
    """A mask with disks ``(cy, cx, r)`` of class ``value`` drawn on background 0."""
    mask = np.zeros(shape, np.int64) if out is None else out
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for cy, cx, r in specs:
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value
    return mask


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_two_hits_one_miss_one_false_disk():
    """3 true disks; the prediction finds 2, misses 1 and adds 1 elsewhere: TP 2, FP 1, FN 1."""
    target = disks((20, 20, 6), (20, 80, 9), (80, 30, 12))
    pred = disks((20, 20, 6), (20, 80, 9), (90, 90, 7))
    m = object_metrics([target], [pred], 2)
    assert m["object_precision"] == pytest.approx(2 / 3)
    assert m["object_recall"] == pytest.approx(2 / 3)
    assert m["object_f1"] == pytest.approx(2 / 3)
    assert m["count_true"] == 3 and m["count_pred"] == 3 and m["count_mae"] == 0.0
    assert m["object_f1_per_class"] == {"1": pytest.approx(2 / 3)}


def test_perfect_prediction():
    target = disks((15, 15, 3), (15, 60, 5), (15, 100, 7), (60, 30, 9), (85, 85, 12),
                   (50, 75, 2))
    m = segmentation_metrics([target, target[::-1]], [target.copy(), target[::-1].copy()], 2)
    assert m["object_f1"] == 1.0 and m["object_precision"] == 1.0 and m["object_recall"] == 1.0
    assert m["count_mae"] == 0.0 and m["count_true"] == m["count_pred"] == 12
    assert m["sfd_ks"] == 0.0 and m["sfd_slope_diff"] == 0.0
    assert m["sfd_slope_true"] < 0
    assert m["miou"] == 1.0  # the pixel metrics are still there, unchanged


def test_a_match_below_iou_half_does_not_count_and_one_above_does():
    true = disks((60, 60, 10))
    far = disks((60, 72, 10))  # shifted 12 px
    near = disks((60, 63, 10))  # shifted 3 px
    assert iou(true == 1, far == 1) < 0.5 < iou(true == 1, near == 1)
    m = object_metrics([true], [far], 2)
    assert m["object_precision"] == 0.0 and m["object_recall"] == 0.0 and m["object_f1"] == 0.0
    assert m["count_mae"] == 0.0  # the count is right even though nothing matches
    assert object_metrics([true], [near], 2)["object_f1"] == 1.0


def test_iou_exactly_one_half_counts_and_matches_are_one_to_one():
    """A 4x4 true square inside a 4x8 predicted rectangle: IoU 16/32 = 0.5 exactly, a match.
    With a second true square (4x3) beside it under the same rectangle, the rectangle still
    matches one true object only (IoU 16/32 with the first, 12/32 with the second)."""
    target = np.zeros((10, 20), np.int64)
    target[2:6, 2:6] = 1
    pred = np.zeros_like(target)
    pred[2:6, 2:10] = 1
    assert object_metrics([target], [pred], 2)["object_f1"] == 1.0
    two = target.copy()
    two[2:6, 7:10] = 1  # a second true square 4x3 (column 6 keeps them apart)
    pred2 = np.zeros_like(target)
    pred2[2:6, 2:6] = 1
    pred2[2:6, 6:10] = 1  # one 4x8 rectangle over both
    m = object_metrics([two], [pred2], 2)
    assert m["count_true"] == 2 and m["count_pred"] == 1
    assert m["object_precision"] == 1.0 and m["object_recall"] == 0.5  # IoU 16/32 with the first


def test_count_error_per_image():
    """Image 1: 3 true, 1 predicted (miscount 2); image 2: 1 true, 2 predicted (1): MAE 1.5."""
    t1, p1 = disks((20, 20, 5), (20, 80, 5), (80, 80, 5)), disks((20, 20, 5))
    t2, p2 = disks((50, 50, 8)), disks((50, 50, 8), (100, 100, 4))
    m = object_metrics([t1, t2], [p1, p2], 2)
    assert m["count_mae"] == 1.5 and m["count_true"] == 4 and m["count_pred"] == 3
    assert m["object_precision"] == pytest.approx(2 / 3) and m["object_recall"] == 0.5


def test_classes_are_separate_and_background_is_chosen():
    """Class 1 and class 2 disks; a class-2 prediction on a class-1 disk is a miss and a false
    object. With background=None class 0 (the surrounding) is an object class too."""
    target = disks((30, 30, 8), value=1)
    disks((80, 80, 8), value=2, out=target)
    pred = disks((30, 30, 8), value=2)
    disks((80, 80, 8), value=2, out=pred)
    m = object_metrics([target], [pred], 3)
    assert m["count_true"] == 2 and m["count_pred"] == 2
    assert m["object_precision"] == 0.5 and m["object_recall"] == 0.5
    assert m["object_f1_per_class"] == {"1": 0.0, "2": pytest.approx(2 / 3)}
    assert m["count_mae"] == 2.0  # class 1: |0 - 1|, class 2: |2 - 1|
    everything = object_metrics([target], [pred], 3, background=None)
    assert everything["count_true"] == 3  # the background component counts as an object


def test_ignored_pixels_hold_no_objects():
    """A predicted disk inside the ignored region (-100) is no false object."""
    target = disks((30, 30, 8))
    target[70:, 70:] = -100
    pred = disks((30, 30, 8), (95, 95, 10))
    m = segmentation_metrics([target], [pred], 2, ignore_index=-100)
    assert m["count_pred"] == 1 and m["object_precision"] == 1.0 and m["object_f1"] == 1.0


def test_min_area_drops_specks():
    target = disks((30, 30, 8))
    pred = target.copy()
    pred[100, 100] = 1  # one-pixel speck
    assert object_metrics([target], [pred], 2)["count_pred"] == 2
    assert object_metrics([target], [pred], 2, min_area=2)["count_pred"] == 1


def test_size_frequency_by_hand():
    # equivalent-circle diameter of a pi-area disk is 2
    assert equivalent_diameters([math.pi, 4 * math.pi]) == pytest.approx([2.0, 4.0])
    assert box_diameters([[0, 0, 10, 40]]) == pytest.approx([20.0])
    # N(>=1) = 3, N(>=10) = 2, N(>=100) = 1: slope of log10 (3, 2, 1) on (0, 1, 2) = -log10(3)/2
    assert cumulative_sfd_slope(np.array([1.0, 10, 100]), 0.0) == pytest.approx(-math.log10(3) / 2)
    assert cumulative_sfd_slope(np.array([1.0, 10, 100]), 5.0) == pytest.approx(-math.log10(2))
    assert math.isnan(cumulative_sfd_slope(np.array([3.0, 3.0]), 0.0))  # one distinct size
    m = sfd_metrics(np.array([1.0, 2, 3, 4]), np.array([3.0, 4, 5, 6]))
    assert m["sfd_ks"] == pytest.approx(0.5)
    assert m["sfd_fit_min_diameter"] == pytest.approx(1.3)  # 10th percentile of 1..4
    # predicted fitted over the same range: N(>=3,4,5,6) = 4,3,2,1 vs true N(>=2,3,4) = 3,2,1
    assert m["sfd_slope_diff"] == pytest.approx(m["sfd_slope_pred"] - m["sfd_slope_true"])
    few = sfd_metrics(np.array([5.0]), np.array([5.0, 6.0]))  # undefined: None, not NaN
    assert few["sfd_ks"] is None and few["sfd_slope_true"] is None
    assert few["sfd_slope_diff"] is None and few["sfd_fit_min_diameter"] == 5.0


def _image(name, gt, det=(), scores=(), labels=None):
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    det = np.asarray(det, np.float32).reshape(-1, 4)
    labels = np.ones(len(det), np.int64) if labels is None else np.asarray(labels, np.int64)
    return ImageDetections(name, 100, 100, gt, np.ones(len(gt), np.int64), det,
                           np.asarray(scores, np.float32), labels)


def test_detection_counts_with_a_score_threshold():
    """Image a: 3 true boxes, detections scored 0.9, 0.6, 0.5, 0.3. Image b: no box, one
    detection at 0.7. At 0.5 (>=): a counts 3 (right), b counts 1 (miscount 1): MAE 0.5; at 0.55:
    a counts 2, b 1: MAE (1 + 1) / 2 = 1."""
    boxes = [[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 80, 80], [85, 85, 95, 95]]
    images = [_image("a", boxes[:3], boxes, [0.9, 0.6, 0.5, 0.3]),
              _image("b", [], [[10, 10, 20, 20]], [0.7])]
    m = detection_metrics(images, ["crater"])
    assert m["count_score_threshold"] == 0.5
    assert m["count_true"] == 3 and m["count_pred"] == 4 and m["count_mae"] == 0.5
    strict = detection_metrics(images, ["crater"], score_threshold=0.55)
    assert strict["count_pred"] == 3 and strict["count_mae"] == 1.0
    assert strict["count_score_threshold"] == 0.55
    assert strict["map_50"] == m["map_50"]  # mAP ignores the threshold
    # box diameters sqrt(w h): true 10, 20, 30; predicted (>= 0.5) 10, 20, 30, 10: the CDFs at
    # 10 are 1/3 and 2/4, at 20 2/3 and 3/4: KS 1/6
    assert m["sfd_ks"] == pytest.approx(1 / 6)


def test_detection_perfect_and_label_counts():
    boxes = [[0, 0, 8, 8], [20, 20, 36, 36], [40, 40, 70, 70], [75, 5, 95, 45]]
    m = detection_metrics([_image("a", boxes, boxes, [0.9] * 4)], ["crater"])
    assert m["count_mae"] == 0.0 and m["sfd_ks"] == 0.0 and m["sfd_slope_diff"] == 0.0
    # a box counted under the wrong label is a miss of label 1 and an extra of label 2
    wrong = detection_metrics([_image("a", boxes, boxes, [0.9] * 4, [1, 1, 1, 2])],
                              ["crater", "rock"])
    assert wrong["count_mae"] == 2.0
    empty = detection_metrics([_image("a", [])], ["crater"])  # no boxes anywhere
    assert empty["count_mae"] == 0.0 and empty["sfd_ks"] is None


def test_the_meter_keeps_no_masks():
    rng = np.random.default_rng(0)
    meter = SegmentationMeter(3, ["bg", "crater", "cone"], ignore_index=-100)
    for _ in range(4):
        target = rng.integers(0, 3, SHAPE)
        target[:10] = -100
        meter.update(target, rng.integers(0, 3, SHAPE))
    pixels = SHAPE[0] * SHAPE[1]
    objects = meter.objects
    assert isinstance(objects, ObjectMeter)
    for owner in (meter, objects):
        for name, value in vars(owner).items():
            if isinstance(value, np.ndarray):
                assert value.size <= 9, name  # class-sized vectors and the confusion matrix
            elif isinstance(value, array):
                assert value.typecode == "q", name
            else:
                assert isinstance(value, (int, float, str, list, type(None), ObjectMeter)), name
    assert len(objects.miscounts) == 4  # one integer per image
    assert len(objects.true_areas) == int(objects.n_true.sum()) < pixels
    assert sum(objects.true_areas) <= 4 * pixels
    m = meter.compute()
    assert m["count_true"] == len(objects.true_areas) and 0 <= m["object_f1"] <= 1


def test_objects_can_be_switched_off():
    target = disks((30, 30, 8))
    meter = SegmentationMeter(2, objects=False)
    meter.update(target, target)
    assert meter.objects is None and "object_f1" not in meter.compute()


def test_undefined_object_metrics_are_none_so_equal_runs_compare_equal():
    """No object anywhere: precision, recall, F1 and the SFD are undefined (None, as JSON null),
    and the same inputs give equal dicts (NaN would not compare equal)."""
    empty = np.zeros((8, 8), np.int64)
    a = object_metrics([empty], [empty], 2)
    assert a == object_metrics([empty], [empty.copy()], 2)
    for key in ("object_precision", "object_recall", "object_f1", "sfd_ks", "sfd_slope_diff"):
        assert a[key] is None, key
    assert a["count_mae"] == 0.0 and a["object_f1_per_class"] == {"1": None}

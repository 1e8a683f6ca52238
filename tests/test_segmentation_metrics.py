"""Segmentation metrics against sklearn and against the definitions computed by hand."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import jaccard_score

from marsbench.metrics.segmentation import (
    SegmentationMeter,
    confusion_matrix,
    majority_class_metrics,
    segmentation_metrics,
)

IGNORE = 255


def _random_masks(rng, n=5, k=4, shape=(12, 9)):
    targets = [rng.integers(0, k, shape) for _ in range(n)]
    for t in targets:
        t[rng.random(shape) < 0.2] = IGNORE
    preds = [np.where(rng.random(shape) < 0.6, np.where(t == IGNORE, 0, t),
                      rng.integers(0, k, shape)) for t in targets]
    return targets, preds


def test_confusion_matrix_matches_sklearn_and_skips_ignored_pixels():
    rng = np.random.default_rng(0)
    targets, preds = _random_masks(rng)
    for t, p in zip(targets, preds):
        valid = t != IGNORE
        expected = sk_confusion_matrix(t[valid], p[valid], labels=range(4))
        np.testing.assert_array_equal(confusion_matrix(t, p, 4, IGNORE), expected)


def test_dataset_miou_matches_sklearn_jaccard_on_all_pixels():
    rng = np.random.default_rng(1)
    targets, preds = _random_masks(rng)
    m = segmentation_metrics(targets, preds, 4, ["a", "b", "c", "d"], ignore_index=IGNORE)
    t = np.concatenate([x.ravel() for x in targets])
    p = np.concatenate([x.ravel() for x in preds])
    valid = t != IGNORE
    per_class = jaccard_score(t[valid], p[valid], labels=range(4), average=None)
    assert m["per_class_iou"] == pytest.approx(dict(zip("abcd", per_class)))
    assert m["miou"] == pytest.approx(per_class.mean())
    assert m["miou_no_background"] == pytest.approx(per_class[1:].mean())
    assert m["pixel_accuracy"] == pytest.approx((t[valid] == p[valid]).mean())
    assert m["num_pixels"] == valid.sum()


def test_reference_iou_by_hand():
    """Two 2x2 images, classes 0..2. Image 1: class 0 IoU 1/3, class 1 IoU 1/3 (class 2 absent
    from both, so not counted). Image 2: class 0 IoU 3/4, class 2 IoU 0 (predicted, not present).
    Per class over the images where it appears: c0 (1/3+3/4)/2 = 13/24, c1 1/3, c2 0."""
    t1, p1 = np.array([[0, 0], [1, 1]]), np.array([[0, 1], [1, 0]])
    t2, p2 = np.array([[0, 0], [0, 0]]), np.array([[0, 0], [0, 2]])
    m = segmentation_metrics([t1, t2], [p1, p2], 3)
    assert m["per_class_iou_reference"] == pytest.approx({"0": 13 / 24, "1": 1 / 3, "2": 0.0})
    assert m["iou_reference"] == pytest.approx((13 / 24 + 1 / 3) / 3)
    # dataset level: c0 tp 1+3, union (2+4)+(2+3)-4 = 7 -> 4/7; c1 tp 1, union 2+2-1 = 3; c2 0
    assert m["per_class_iou"] == pytest.approx({"0": 4 / 7, "1": 1 / 3, "2": 0.0})
    assert m["miou"] == pytest.approx((4 / 7 + 1 / 3) / 3)


def test_reference_iou_against_an_independent_per_image_computation():
    rng = np.random.default_rng(2)
    targets, preds = _random_masks(rng, n=6, k=5)
    per_class: dict[int, list[float]] = {}
    for t, p in zip(targets, preds):
        valid = t != IGNORE
        present = np.union1d(np.unique(t[valid]), np.unique(p[valid]))
        scores = jaccard_score(t[valid], p[valid], labels=present, average=None)
        for c, s in zip(present, scores):
            per_class.setdefault(int(c), []).append(s)
    expected = np.mean([np.mean(v) for v in per_class.values()])
    m = segmentation_metrics(targets, preds, 5, ignore_index=IGNORE)
    assert m["iou_reference"] == pytest.approx(expected)


def test_ignored_pixels_change_nothing():
    t = np.array([[0, 1, IGNORE], [1, 1, IGNORE]])
    p_a = np.array([[0, 1, 0], [1, 1, 0]])
    p_b = np.array([[0, 1, 1], [1, 1, 1]])  # differs only where the target is ignored
    a = segmentation_metrics([t], [p_a], 2, ignore_index=IGNORE)
    b = segmentation_metrics([t], [p_b], 2, ignore_index=IGNORE)
    assert a == b and a["miou"] == 1.0


def test_absent_classes_are_left_out_not_counted_as_zero():
    m = segmentation_metrics([np.zeros((3, 3), int)], [np.zeros((3, 3), int)], 4)
    assert m["miou"] == 1.0 and m["iou_reference"] == 1.0
    assert m["per_class_iou"]["3"] is None
    assert np.isnan(m["miou_no_background"])


def test_streaming_meter_equals_batch_function_and_majority_baseline():
    rng = np.random.default_rng(3)
    targets, preds = _random_masks(rng)
    meter = SegmentationMeter(4, ignore_index=IGNORE)
    for t, p in zip(targets, preds):
        meter.update(t, p)
    assert meter.compute() == segmentation_metrics(targets, preds, 4, ignore_index=IGNORE)
    base = majority_class_metrics(targets, 4, IGNORE)
    counts = np.bincount(np.concatenate([t[t != IGNORE] for t in targets]), minlength=4)
    assert base["class"] == counts.argmax()
    assert base["miou"] == pytest.approx(counts.max() / counts.sum() / 4)


def test_bad_prediction_values_are_an_error():
    with pytest.raises(ValueError, match="predicted class ids"):
        confusion_matrix(np.zeros((2, 2), int), np.full((2, 2), 7), 3)

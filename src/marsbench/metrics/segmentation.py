"""Segmentation metrics: the reference's per-image IoU and the standard dataset-level mIoU.

Two definitions are reported side by side, because they differ a lot on sparse classes:

- ``iou_reference`` (the Mars-Bench headline, as the reference computes it): for every image and
  every class that appears in that image's prediction *or* target, the IoU of that class in that
  image; each class's IoUs are averaged over those images, then the classes are averaged
  (background included; a class that appears in no image's prediction or target is left out).
- ``miou`` / ``miou_no_background``: IoU per class from one confusion matrix accumulated over all
  pixels of the split, averaged over classes that occur (in target or prediction), with and
  without class 0. ``per_class_iou`` maps class names to these dataset-level IoUs.

Pixels whose target is the ignore value (e.g. 255 in AI4Mars, or padding) count nowhere.
`SegmentationMeter` accumulates both in one pass, image by image, so a split's masks are never
all held in memory. The confusion matrix is a ``numpy.bincount`` (sklearn's ``confusion_matrix``
gives the same result and is the oracle in the tests, but is much slower on millions of pixels).

Object metrics (``object_precision`` / ``object_recall`` / ``object_f1``, ``count_mae``,
``count_true`` / ``count_pred``, ``sfd_*``; see `marsbench.metrics.objects`) are added beside
these: connected components of every class except ``background`` (class 0 unless told otherwise),
matched one to one at IoU >= 0.5. The meter keeps only component areas and counts for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .objects import ObjectMeter


def confusion_matrix(target: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = target class, columns = predicted class.

    Target pixels equal to ``ignore_index`` (or outside ``0..K-1``) are skipped; a predicted
    value outside ``0..K-1`` is an error (it would be a bug in the model's argmax)."""
    target = np.asarray(target).ravel()
    pred = np.asarray(pred).ravel()
    if target.shape != pred.shape:
        raise ValueError(f"mask and prediction differ in size: {target.size} vs {pred.size} pixels")
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    t, p = target[valid].astype(np.int64), pred[valid].astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted class ids must lie in 0..{num_classes - 1}, got "
                         f"{p.min()}..{p.max()}")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes,
                                                                              num_classes)


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """IoU per class, ``NaN`` for a class absent from both target and prediction."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


class SegmentationMeter:
    """Accumulates one split, image by image; `compute` returns the metric dict."""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 ignore_index: int | None = None, background: int | None = 0,
                 objects: bool = True) -> None:
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.ignore_index = ignore_index
        self.cm = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.ref_sum = np.zeros(num_classes)  # sum of per-image IoUs, per class
        self.ref_count = np.zeros(num_classes, dtype=np.int64)  # images where the class appears
        self.images = 0
        # object counts and sizes (component areas, never masks); None: not computed
        self.objects = ObjectMeter(num_classes, background, ignore_index) if objects else None

    def update(self, target: np.ndarray, pred: np.ndarray) -> None:
        """Add one image: ``target`` and ``pred`` are ``(H, W)`` class-index arrays."""
        cm = confusion_matrix(target, pred, self.num_classes, self.ignore_index)
        self.cm += cm
        self.images += 1
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0  # in this image's prediction or target
        self.ref_sum[present] += tp[present] / union[present]
        self.ref_count[present] += 1
        if self.objects is not None:
            self.objects.update(target, pred)

    def compute(self) -> dict:
        iou = iou_from_confusion(self.cm)
        with np.errstate(invalid="ignore"):
            ref_per_class = np.where(self.ref_count > 0,
                                     self.ref_sum / np.maximum(self.ref_count, 1), np.nan)
        total = self.cm.sum()
        metrics = {
            "iou_reference": _nanmean(ref_per_class),
            "miou": _nanmean(iou),
            "miou_no_background": _nanmean(iou[1:]),
            "pixel_accuracy": float(np.trace(self.cm) / total) if total else float("nan"),
            "per_class_iou": {n: _num(v) for n, v in zip(self.class_names, iou)},
            "per_class_iou_reference": {n: _num(v) for n, v in zip(self.class_names,
                                                                    ref_per_class)},
            "num_images": self.images,
            "num_pixels": int(total),
        }
        if self.objects is not None:
            metrics |= self.objects.compute(self.class_names)
        return metrics


def segmentation_metrics(targets: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                         num_classes: int, class_names: Sequence[str] | None = None,
                         ignore_index: int | None = None) -> dict:
    """All metrics of a split from lists of ``(H, W)`` target and predicted masks."""
    if len(targets) != len(preds):
        raise ValueError(f"{len(targets)} masks but {len(preds)} predictions")
    meter = SegmentationMeter(num_classes, class_names, ignore_index)
    for t, p in zip(targets, preds):
        meter.update(t, p)
    return meter.compute()


def majority_class_metrics(targets: Sequence[np.ndarray], num_classes: int,
                           ignore_index: int | None = None) -> dict:
    """The metrics of predicting the most frequent (non-ignored) training class everywhere; the
    baseline a trained model must beat. The class is taken from ``targets`` themselves."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for t in targets:
        counts += confusion_matrix(t, t, num_classes, ignore_index).sum(1)
    majority = int(np.argmax(counts))
    return segmentation_metrics(targets, [np.full_like(t, majority) for t in targets],
                                num_classes, ignore_index=ignore_index) | {"class": majority}


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _num(value: float) -> float | None:
    return None if np.isnan(value) else float(value)

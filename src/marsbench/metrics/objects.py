"""Science-facing object metrics: how many objects were found, and how large they are.

Mars scientists count objects (crater size-frequency distributions date surfaces); pixel IoU and
mAP do not measure that. These functions do, for segmentation masks and detection boxes.
Definitions (also in docs/object_metrics.md):

- **Objects of a mask.** For every foreground class ``c`` (every class except ``background``,
  class 0 by default; ``background=None`` makes every class an object class), the objects are the
  8-connected components of ``mask == c`` (``scipy.ndimage.label`` with a 3x3 structure). Pixels
  whose target is ignored (the ignore value, or outside ``0..K-1``, e.g. -100 padding) belong to
  no true object, and the prediction there is dropped too, as pixel metrics drop it. Components
  smaller than ``min_area`` pixels (default 1: all) are not objects.
- **Matching.** Within one image and one class, predicted and true components are matched one to
  one where their pixel IoU is >= 0.5, by the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment``) maximising the total IoU of the pairs. Above 0.5 a
  component can overlap at most one other component that much, so the matching is unique except
  for exact 0.5 ties. Matched pairs are true positives, unmatched predictions false positives,
  unmatched true objects false negatives; these are summed over images and foreground classes.
  ``object_precision = TP / (TP + FP)``, ``object_recall = TP / (TP + FN)``,
  ``object_f1 = 2 TP / (2 TP + FP + FN)``; undefined where the denominator is 0.
- **Counts.** ``count_mae`` is the mean over images of ``sum_c |n_pred_c - n_true_c|`` (objects
  miscounted per image, each foreground class counted separately); ``count_true`` /
  ``count_pred`` are the split's totals.
- **Size-frequency distribution (SFD).** Diameters in pixels: the equivalent-circle diameter
  ``2 sqrt(area / pi)`` of a component, ``sqrt(w h)`` of a box (the diameter of a circle whose
  bounding box it is, when square). Pooled over the foreground classes of the split.
  ``sfd_ks`` is the two-sample Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``) between the
  true and predicted diameters, undefined unless both have >= 2 objects. ``sfd_slope_true`` /
  ``sfd_slope_pred`` are least-squares slopes of ``log10 N(>=D)`` against ``log10 D`` over the
  distinct diameters ``D`` of each sample that are >= the fit cutoff, where ``N(>=D)`` counts that
  sample's objects of diameter >= D; the cutoff is the 10th percentile (``fit_quantile``) of the
  *true* diameters, the same for both samples, so both are fitted over one diameter range and the
  smallest, least complete true sizes are left out. A slope is undefined with fewer than 2
  distinct diameters in range. ``sfd_slope_diff = sfd_slope_pred - sfd_slope_true``.

Undefined values are returned as ``None`` (NaN inside `cumulative_sfd_slope`), as the per-class
dicts of the segmentation metrics do: records store JSON null, tables leave them out, and a
metric dict equals itself (NaN != NaN would break comparisons of two runs' metrics).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

import numpy as np

IOU_THRESHOLD = 0.5
FIT_QUANTILE = 0.1
STRUCTURE_8 = np.ones((3, 3), dtype=bool)


def label_components(binary: np.ndarray, min_area: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, areas)``: 8-connected components of a 2-D boolean array, labelled ``1..n``
    (0 = none), and their pixel areas; components under ``min_area`` px are removed (label 0)
    and the others renumbered."""
    from scipy import ndimage

    labels, n = ndimage.label(np.asarray(binary, dtype=bool), structure=STRUCTURE_8)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    if min_area > 1 and n:
        keep = areas >= min_area
        new_id = np.zeros(n + 1, dtype=labels.dtype)
        new_id[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
        labels, areas = new_id[labels], areas[keep]
    return labels, areas.astype(np.int64)


def match_components(true_labels: np.ndarray, pred_labels: np.ndarray, n_true: int, n_pred: int,
                     iou_threshold: float = IOU_THRESHOLD) -> int:
    """Number of one-to-one matches at IoU >= ``iou_threshold`` between two labelled images
    (labels ``1..n``; 0 = none), Hungarian on the pairs that overlap enough."""
    if n_true == 0 or n_pred == 0:
        return 0
    t, p = true_labels.ravel(), pred_labels.ravel()
    both = (t > 0) & (p > 0)
    if not both.any():
        return 0
    codes = t[both].astype(np.int64) * (n_pred + 1) + p[both].astype(np.int64)
    pairs, inter = np.unique(codes, return_counts=True)
    ti, pi = pairs // (n_pred + 1), pairs % (n_pred + 1)
    t_area = np.bincount(t, minlength=n_true + 1)
    p_area = np.bincount(p, minlength=n_pred + 1)
    iou = inter / (t_area[ti] + p_area[pi] - inter)
    ok = iou >= iou_threshold
    if not ok.any():
        return 0
    ti, pi, iou = ti[ok], pi[ok], iou[ok]
    rows, row_of = np.unique(ti, return_inverse=True)
    cols, col_of = np.unique(pi, return_inverse=True)
    if len(rows) == len(ti) and len(cols) == len(pi):  # every candidate pair is disjoint
        return int(len(ti))
    from scipy.optimize import linear_sum_assignment

    weight = np.zeros((len(rows), len(cols)))
    weight[row_of, col_of] = iou
    r, c = linear_sum_assignment(weight, maximize=True)
    return int((weight[r, c] > 0).sum())


def equivalent_diameters(areas: np.ndarray) -> np.ndarray:
    """Equivalent-circle diameters ``2 sqrt(area / pi)`` in pixels."""
    return 2.0 * np.sqrt(np.asarray(areas, dtype=np.float64) / np.pi)


def box_diameters(boxes: np.ndarray) -> np.ndarray:
    """``sqrt(w h)`` of ``(N, 4)`` xyxy boxes, in pixels."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    h = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return np.sqrt(w * h)


def cumulative_sfd_slope(diameters: np.ndarray, d_min: float) -> float:
    """Least-squares slope of ``log10 N(>=D)`` vs ``log10 D`` over the distinct diameters
    ``D >= d_min`` (> 0); NaN with fewer than 2 of them."""
    d = np.sort(np.asarray(diameters, dtype=np.float64))
    d = d[(d >= d_min) & (d > 0)]
    unique = np.unique(d)
    if len(unique) < 2:
        return float("nan")
    n_at_least = len(d) - np.searchsorted(d, unique, side="left")
    slope, _ = np.polyfit(np.log10(unique), np.log10(n_at_least), 1)
    return float(slope)


def sfd_metrics(true_diameters: np.ndarray, pred_diameters: np.ndarray,
                fit_quantile: float = FIT_QUANTILE) -> dict:
    """``sfd_ks``, ``sfd_slope_true``, ``sfd_slope_pred``, ``sfd_slope_diff`` and the fit
    cutoff ``sfd_fit_min_diameter`` (see the module doc)."""
    t = np.asarray(true_diameters, dtype=np.float64).ravel()
    p = np.asarray(pred_diameters, dtype=np.float64).ravel()
    if len(t) >= 2 and len(p) >= 2:
        from scipy.stats import ks_2samp

        ks = float(ks_2samp(t, p).statistic)
    else:
        ks = float("nan")
    d_min = float(np.quantile(t, fit_quantile)) if len(t) else float("nan")
    if math.isnan(d_min):
        slope_t = slope_p = float("nan")
    else:
        slope_t, slope_p = cumulative_sfd_slope(t, d_min), cumulative_sfd_slope(p, d_min)
    return {"sfd_ks": _f(ks), "sfd_slope_true": _f(slope_t), "sfd_slope_pred": _f(slope_p),
            "sfd_slope_diff": _f(slope_p - slope_t), "sfd_fit_min_diameter": _f(d_min)}


def _f(value: float) -> float | None:
    """A plain float, or ``None`` where the value is undefined (NaN), as the per-class dicts of
    the segmentation metrics do: run records store it as JSON null and tables leave it out, and
    two metric dicts with the same undefined entries compare equal (NaN != NaN)."""
    return None if math.isnan(value) else float(value)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


class ObjectMeter:
    """Object metrics of one split of masks, image by image. It keeps only integers: match and
    count totals, per-class component areas, and one miscount per image — never a mask."""

    def __init__(self, num_classes: int, background: int | None = 0,
                 ignore_index: int | None = None, min_area: int = 1,
                 iou_threshold: float = IOU_THRESHOLD, fit_quantile: float = FIT_QUANTILE) -> None:
        self.num_classes = num_classes
        self.background = background
        self.classes = [c for c in range(num_classes) if c != background]
        self.ignore_index = ignore_index
        self.min_area = min_area
        self.iou_threshold = iou_threshold
        self.fit_quantile = fit_quantile
        self.tp = np.zeros(num_classes, dtype=np.int64)
        self.n_true = np.zeros(num_classes, dtype=np.int64)
        self.n_pred = np.zeros(num_classes, dtype=np.int64)
        self.true_areas = array("q")  # component areas (px), all foreground classes, 8 B each
        self.pred_areas = array("q")
        self.miscounts = array("q")  # per image: sum over classes of |n_pred - n_true|

    def update(self, target: np.ndarray, pred: np.ndarray) -> None:
        target, pred = np.asarray(target), np.asarray(pred)
        if target.shape != pred.shape:
            raise ValueError(f"mask and prediction differ in shape: {target.shape} vs "
                             f"{pred.shape}")
        valid = (target >= 0) & (target < self.num_classes)
        if self.ignore_index is not None:
            valid &= target != self.ignore_index
        # classes absent from both the target and the (valid) prediction have no objects
        present = np.zeros(self.num_classes + 1, dtype=bool)
        present[np.unique(np.where(valid, target, self.num_classes))] = True
        pv = pred[valid]
        present[np.unique(pv[(pv >= 0) & (pv < self.num_classes)])] = True
        miscount = 0
        for c in self.classes:
            if not present[c]:
                continue
            t_lab, t_area = label_components(target == c, self.min_area)
            p_lab, p_area = label_components((pred == c) & valid, self.min_area)
            self.tp[c] += match_components(t_lab, p_lab, len(t_area), len(p_area),
                                           self.iou_threshold)
            self.n_true[c] += len(t_area)
            self.n_pred[c] += len(p_area)
            self.true_areas.frombytes(t_area.astype(np.int64).tobytes())
            self.pred_areas.frombytes(p_area.astype(np.int64).tobytes())
            miscount += abs(len(p_area) - len(t_area))
        self.miscounts.append(miscount)

    def compute(self, class_names: Sequence[str] | None = None) -> dict:
        names = list(class_names or [str(i) for i in range(self.num_classes)])
        tp, nt, npred = (int(x[self.classes].sum()) for x in (self.tp, self.n_true, self.n_pred))
        per_class = {names[c]: _ratio(2 * self.tp[c], self.n_true[c] + self.n_pred[c])
                     for c in self.classes}
        out = {
            "object_precision": _ratio(tp, npred),
            "object_recall": _ratio(tp, nt),
            "object_f1": _ratio(2 * tp, nt + npred),
            "object_f1_per_class": per_class,
            "object_iou_threshold": self.iou_threshold,
            "count_mae": float(np.mean(self.miscounts)) if self.miscounts else None,
            "count_true": nt,
            "count_pred": npred,
        }
        return out | sfd_metrics(equivalent_diameters(np.frombuffer(self.true_areas, np.int64)),
                                 equivalent_diameters(np.frombuffer(self.pred_areas, np.int64)),
                                 self.fit_quantile)


def object_metrics(targets: Iterable[np.ndarray], preds: Iterable[np.ndarray], num_classes: int,
                   background: int | None = 0, ignore_index: int | None = None,
                   **kwargs) -> dict:
    """Object metrics of a split from ``(H, W)`` target and predicted class masks."""
    meter = ObjectMeter(num_classes, background, ignore_index, **kwargs)
    for t, p in zip(targets, preds, strict=True):
        meter.update(t, p)
    return meter.compute()


def detection_count_metrics(gt_boxes: Sequence[np.ndarray], gt_labels: Sequence[np.ndarray],
                            boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                            labels: Sequence[np.ndarray], score_threshold: float = 0.5,
                            fit_quantile: float = FIT_QUANTILE) -> dict:
    """Counts and SFD of one split of detections, image by image (lists of per-image arrays).
    A predicted box counts when its score is >= ``score_threshold``; ``count_mae`` is the mean
    over images of ``sum_c |n_pred_c - n_true_c|`` over the labels present; diameters are
    ``sqrt(w h)`` of all counted boxes."""
    miscounts, true_d, pred_d = [], [], []
    nt = npred = 0
    for gb, gl, b, s, lab in zip(gt_boxes, gt_labels, boxes, scores, labels, strict=True):
        gl, lab = np.asarray(gl).ravel(), np.asarray(lab).ravel()
        keep = np.asarray(s, dtype=np.float64).ravel() >= score_threshold
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[keep]
        lab = lab[keep]
        classes = np.union1d(gl, lab)
        miscounts.append(int(sum(abs(int((lab == c).sum()) - int((gl == c).sum()))
                                 for c in classes)))
        nt += len(gl)
        npred += len(lab)
        true_d.append(box_diameters(gb))
        pred_d.append(box_diameters(b))
    return {
        "count_mae": float(np.mean(miscounts)) if miscounts else None,
        "count_true": nt,
        "count_pred": npred,
        "count_score_threshold": float(score_threshold),
    } | sfd_metrics(np.concatenate([np.zeros(0), *true_d]),
                    np.concatenate([np.zeros(0), *pred_d]), fit_quantile)

"""Detection metrics: COCO mAP computed by pycocotools, negatives included.

``map_50_95`` (the Mars-Bench headline) is COCO's AP averaged over IoU 0.50:0.05:0.95 with
101-point interpolation, ``map_50`` and ``map_75`` at single thresholds, and ``map_small`` /
``map_medium`` / ``map_large`` by box area (32² and 96² px). Every image of the split is an image
of the evaluation, including negatives (no boxes): a detection on a negative image is a false
positive that lowers precision, as in a real deployment. The metric is computed once over the
whole split (`detection_metrics`), never averaged over batches.

Object counts and sizes are added (`marsbench.metrics.objects.detection_count_metrics`):
``count_mae`` / ``count_true`` / ``count_pred`` count predicted boxes with score >= the
``count_score_threshold`` (default 0.5, recorded) against the true boxes, and ``sfd_*`` compare the
size-frequency distributions of box diameters ``sqrt(w h)``.

Boxes are canonical: ``(N, 4)`` xyxy absolute pixels, labels ``1..K``; predictions add scores.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .objects import detection_count_metrics

STAT_NAMES = ("map_50_95", "map_50", "map_75", "map_small", "map_medium", "map_large")


@dataclass
class ImageDetections:
    """One image: ground truth and the model's detections (canonical boxes)."""

    image_id: str
    width: int
    height: int
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def coco_ground_truth(images: Sequence[ImageDetections], class_names: Sequence[str]) -> dict:
    """The split as a COCO dataset dict (ids 1..N in order; categories 1..K)."""
    anns = []
    for i, im in enumerate(images, start=1):
        for box, label in zip(xyxy_to_xywh(im.gt_boxes), np.asarray(im.gt_labels).ravel()):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(label),
                         "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                         "iscrowd": 0})
    return {
        "images": [{"id": i, "file_name": im.image_id, "width": int(im.width),
                    "height": int(im.height)} for i, im in enumerate(images, start=1)],
        "annotations": anns,
        "categories": [{"id": k, "name": n} for k, n in enumerate(class_names, start=1)],
    }


def coco_results(images: Sequence[ImageDetections]) -> list[dict]:
    """The detections as a COCO results list (image ids as in `coco_ground_truth`)."""
    out = []
    for i, im in enumerate(images, start=1):
        for box, score, label in zip(xyxy_to_xywh(im.boxes), np.asarray(im.scores).ravel(),
                                     np.asarray(im.labels).ravel()):
            out.append({"image_id": i, "category_id": int(label),
                        "bbox": [float(v) for v in box], "score": float(score)})
    return out


def detection_metrics(images: Sequence[ImageDetections], class_names: Sequence[str],
                      score_threshold: float = 0.5) -> dict:
    """COCO metrics of one split (see the module doc); ``NaN`` where COCO reports none (-1),
    e.g. no ground-truth box at all. No detection at all scores 0 when boxes exist. Object
    counts and box SFD use detections with score >= ``score_threshold``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_dict = coco_ground_truth(images, class_names)
    results = coco_results(images)
    counts = {"num_images": len(images),
              "num_negatives": sum(1 for im in images if len(im.gt_boxes) == 0),
              "num_gt_boxes": len(gt_dict["annotations"]), "num_detections": len(results)}
    counts |= detection_count_metrics([im.gt_boxes for im in images],
                                      [im.gt_labels for im in images],
                                      [im.boxes for im in images], [im.scores for im in images],
                                      [im.labels for im in images], score_threshold)
    if not gt_dict["annotations"]:
        return {name: float("nan") for name in STAT_NAMES} | counts
    if not results:  # pycocotools cannot load an empty result list; nothing detected = AP 0
        return {name: 0.0 for name in STAT_NAMES} | counts
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats  # AP@[.5:.95], AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ...
    values = {name: _stat(stats[i]) for i, name in enumerate(STAT_NAMES)}
    values["mar_100"] = _stat(stats[8])
    return values | counts


def _stat(value: float) -> float:
    return float("nan") if value < 0 else float(value)

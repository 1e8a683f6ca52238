"""Parse the three parallel detection annotation formats into xyxy boxes and ids 1..K.

* YOLO: one ``labels/<stem>.txt`` per image, ``cls cx cy w h`` normalised, class 0-based.
* COCO: one ``coco_annotations.json`` per split, ``bbox = [x, y, w, h]`` in absolute pixels.
* Pascal VOC: one ``pascal_voc/<stem>.xml`` per image, integer ``xmin ymin xmax ymax``.

Small parsers by hand: the formats are tiny and the libraries that read them (pycocotools for COCO
aside) each pull in a framework; pycocotools' loader would add nothing over ``json`` here.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .errors import DataError

EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)
EMPTY_LABELS = np.zeros((0,), dtype=np.int64)


def _pack(boxes: list[list[float]], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    if not boxes:
        return EMPTY_BOXES.copy(), EMPTY_LABELS.copy()
    return np.asarray(boxes, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def parse_yolo(text: str, width: int, height: int, *, path: str = "") -> tuple[np.ndarray, np.ndarray]:
    boxes, labels = [], []
    for row, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DataError(f"line {row}: expected 'cls cx cy w h', got {line!r}", path=path)
        try:
            cls = int(float(parts[0]))
            cx, cy, w, h = (float(v) for v in parts[1:])
        except ValueError:
            raise DataError(f"line {row}: not numbers: {line!r}", path=path) from None
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height,
                      (cx + w / 2) * width, (cy + h / 2) * height])
        labels.append(cls + 1)
    return _pack(boxes, labels)


def parse_voc(path: Path, class_ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"unreadable Pascal VOC file ({exc})", path=path) from None
    boxes, labels = [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        key = name.lower()
        if key not in class_ids:
            raise DataError(f"unknown class name {name!r}; known: {sorted(class_ids)}", path=path)
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"object {name!r} has no <bndbox>", path=path)
        try:
            boxes.append([float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
        except (TypeError, ValueError):
            raise DataError(f"object {name!r}: bndbox values are not numbers", path=path) from None
        labels.append(class_ids[key])
    return _pack(boxes, labels)


class CocoIndex:
    """A split's COCO file indexed by image file name."""

    def __init__(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"unreadable COCO annotation file ({exc})", path=path) from None
        self.path = path
        self.categories = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
        self.images = {img["file_name"]: img for img in data.get("images", [])}
        by_image: dict[int, list[dict]] = {}
        for ann in data.get("annotations", []):
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
        self._by_image = by_image

    def boxes(self, file_name: str) -> tuple[np.ndarray, np.ndarray]:
        img = self.images.get(file_name)
        if img is None:
            raise DataError(f"image {file_name!r} has no entry in 'images'", path=self.path)
        return coco_annotations_to_boxes(self._by_image.get(int(img["id"]), []))


def coco_annotations_to_boxes(annotations: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    boxes, labels = [], []
    for ann in annotations:
        x, y, w, h = (float(v) for v in ann["bbox"])
        boxes.append([x, y, x + w, y + h])
        labels.append(int(ann["category_id"]))
    return _pack(boxes, labels)

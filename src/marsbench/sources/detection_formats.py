"""Parse the three parallel detection annotation formats into xyxy boxes and ids 1..K.

* YOLO: one ``labels/<stem>.txt`` per image, ``cls cx cy w h`` normalised, class 0-based.
* COCO: one ``coco_annotations.json`` per split, ``bbox = [x, y, w, h]`` in absolute pixels.
* Pascal VOC: one ``pascal_voc/<stem>.xml`` per image, integer ``xmin ymin xmax ymax``.

Small parsers by hand: the formats are tiny and the libraries that read them (pycocotools for COCO
aside) each pull in a framework; pycocotools' loader would add nothing over ``json`` here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .errors import DataError
from .validate import box_numbers, parse_class_id

EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)
EMPTY_LABELS = np.zeros((0,), dtype=np.int64)


def _pack(boxes: list[list[float]], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    if not boxes:
        return EMPTY_BOXES.copy(), EMPTY_LABELS.copy()
    return np.asarray(boxes, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def parse_yolo(text: str, width: int, height: int, *, path: str = "",
               num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``cls cx cy w h`` lines (normalised, class 0-based) -> xyxy pixels, ids 1..K.

    An empty file is a negative image. A class that is not a whole number (or, given
    ``num_classes`` K, not in 0..K-1), a value that is not a finite number, or a non-positive
    width or height is a `DataError` naming the file and line."""
    boxes, labels = [], []
    for row, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DataError("YOLO line must be 'cls cx cy w h'", path=path, row=row, value=line)
        try:
            cls = parse_class_id(parts[0])
        except ValueError as exc:
            raise DataError(f"YOLO class is not an integer id ({exc})", path=path, row=row,
                            value=line) from None
        if num_classes is not None and not 0 <= cls < num_classes:
            raise DataError(f"YOLO class {cls} out of range 0..{num_classes - 1}", path=path,
                            row=row, value=line,
                            fix=f"YOLO class ids are 0-based: 0..{num_classes - 1} for the "
                                f"{num_classes} class{'es' * (num_classes > 1)}")
        cx, cy, w, h = box_numbers(parts[1:], 4, "YOLO box 'cx cy w h'", path=path, row=row)
        if w <= 0 or h <= 0:
            raise DataError("YOLO box has zero or negative width/height", path=path, row=row,
                            value=line, fix="drop or fix the box")
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height,
                      (cx + w / 2) * width, (cy + h / 2) * height])
        labels.append(cls + 1)
    return _pack(boxes, labels)


def parse_voc(path: Path, class_ids: dict[str, int], *,
              text: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A Pascal VOC file (or its ``text``) -> xyxy pixels, ids from ``class_ids`` by name."""
    try:
        root = ET.fromstring(text) if text is not None else ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"unreadable Pascal VOC file ({exc})", path=path) from None
    boxes, labels = [], []
    for n, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        key = name.lower()
        if key not in class_ids:
            raise DataError(f"object {n}: unknown class name; known: {sorted(class_ids)}",
                            path=path, value=name)
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"object {n} ({name}) has no <bndbox>", path=path)
        values = [(bb.findtext(k) or "").strip() for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append(box_numbers(values, 4, f"object {n} ({name}) bndbox", path=path))
        labels.append(class_ids[key])
    return _pack(boxes, labels)


def _coco_int(value, what: str, path: Path) -> int:
    try:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not an integer")
        return parse_class_id(value)
    except ValueError as exc:
        raise DataError(f"COCO {what} is not an integer ({exc})", path=path,
                        value=repr(value)) from None


class CocoIndex:
    """A split's COCO file indexed by image file name, its shape checked in full on opening."""

    def __init__(self, path: Path, *, root: Path | None = None, text: str | None = None) -> None:
        from .classnames import load_json
        from .paths import read_text

        if text is None:
            text = read_text(root or path.parent, path, what="COCO annotation file",
                             allow_empty=False)
        if root is not None and path.is_relative_to(root):  # errors name <dataset>/<file>
            path = Path(root.name) / path.relative_to(root)
        data = load_json(text, path=path, what="COCO annotation file")
        self.path = path
        if not isinstance(data, dict):
            raise DataError("COCO annotation file must be a JSON object with 'images', "
                            "'annotations' and 'categories'", path=path,
                            value=type(data).__name__)
        sections = {}
        for key in ("images", "annotations", "categories"):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise DataError(f"COCO '{key}' must be a list of objects", path=path,
                                value=type(value).__name__)
            sections[key] = value
        self.categories: dict[int, str] = {}
        for i, c in enumerate(sections["categories"]):
            cid = _coco_int(c.get("id"), f"categories[{i}].id", path)
            name = c.get("name")
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"COCO categories[{i}].name must be text", path=path,
                                value=repr(name))
            if cid in self.categories:
                raise DataError(f"COCO category id {cid} given twice", path=path)
            self.categories[cid] = name
        self.images: dict[str, dict] = {}
        image_ids: set[int] = set()
        for i, img in enumerate(sections["images"]):
            iid = _coco_int(img.get("id"), f"images[{i}].id", path)
            name = img.get("file_name")
            if not isinstance(name, str) or not name:
                raise DataError(f"COCO images[{i}].file_name must be text", path=path,
                                value=repr(name))
            if iid in image_ids or name in self.images:
                raise DataError(f"COCO images[{i}]: image id or file name given twice", path=path,
                                value=f"id {iid}, {name}")
            image_ids.add(iid)
            self.images[name] = {**img, "id": iid}
        by_image: dict[int, list[dict]] = {}
        for i, ann in enumerate(sections["annotations"]):
            iid = _coco_int(ann.get("image_id"), f"annotations[{i}].image_id", path)
            if iid not in image_ids:
                raise DataError(f"COCO annotations[{i}] refers to an image id not in 'images'",
                                path=path, value=iid)
            cid = _coco_int(ann.get("category_id"), f"annotations[{i}].category_id", path)
            if self.categories and cid not in self.categories:
                raise DataError(f"COCO annotations[{i}].category_id is not a category",
                                path=path, value=cid)
            x, y, w, h = box_numbers(ann.get("bbox"), 4, f"COCO annotations[{i}].bbox [x, y, w, h]",
                                     path=path)
            if w <= 0 or h <= 0:
                raise DataError(f"COCO annotations[{i}].bbox has zero or negative width/height",
                                path=path, value=ann.get("bbox"), fix="drop or fix the box")
            by_image.setdefault(iid, []).append({"bbox": [x, y, w, h], "category_id": cid})
        self._by_image = by_image

    def boxes(self, file_name: str) -> tuple[np.ndarray, np.ndarray]:
        img = self.images.get(file_name)
        if img is None:
            raise DataError("image has no entry in the COCO 'images' list", path=self.path,
                            value=file_name)
        return coco_annotations_to_boxes(self._by_image.get(int(img["id"]), []))


def coco_annotations_to_boxes(annotations: list[dict], *,
                              where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """COCO ``[x, y, w, h]`` annotations -> xyxy boxes and their category ids (checked)."""
    boxes, labels = [], []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise DataError(f"COCO annotation {i} is not an object", path=where,
                            value=type(ann).__name__)
        x, y, w, h = box_numbers(ann.get("bbox"), 4, f"COCO annotation {i} bbox [x, y, w, h]",
                                 path=where)
        try:
            cid = parse_class_id(ann.get("category_id"))
        except ValueError as exc:
            raise DataError(f"COCO annotation {i} category_id is not an integer ({exc})",
                            path=where, value=repr(ann.get("category_id"))) from None
        boxes.append([x, y, x + w, y + h])
        labels.append(cid)
    return _pack(boxes, labels)

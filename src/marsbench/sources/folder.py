"""Readers for the Zenodo folder layout (facts sheet, section 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog import DatasetCard, Task, TaskKind, Variant
from .classnames import names_from_mapping, read_mapping_file, reconcile
from .content_hash import named_digests
from .dataset import MarsDataset
from .detection_formats import CocoIndex, parse_voc, parse_yolo
from .errors import DataError, VariantUnavailableError
from .images import decode_image, decode_mask, is_image_file
from .samples import ClassificationSample, DetectionSample, SegmentationSample

ANNOTATION_FORMATS = ("voc", "coco", "yolo")


def _existing(*paths: Path) -> list[Path]:
    """The files among ``paths`` that exist (optional inputs such as mapping.json)."""
    return [p for p in paths if p.is_file()]


def variant_csv(card: DatasetCard, root: Path, variant: Variant) -> Path:
    """The CSV that defines ``variant``'s train split, or a clear error listing what exists."""
    path = root / variant.folder_csv
    if path.is_file():
        return path
    on_disk = sorted(str(p.relative_to(root)) for sub in ("few_shot", "partitions")
                     for p in (root / sub).glob("*.csv")) if root.is_dir() else []
    published = card.variants()
    raise VariantUnavailableError(
        f"variant {variant} is not available (no {variant.folder_csv})", dataset=card.name,
        path=root,
        fix=f"published variants: {', '.join(published)}; files on disk: "
            f"{', '.join(on_disk) or 'none'}; or draw a recorded stratified subset with "
            "`subset_seed=` / `--subset-seed`")


def _read_csv(path: Path, required: set[str], dataset: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"unreadable CSV ({exc})", dataset=dataset, path=path) from None
    missing = required - set(df.columns)
    if missing:
        raise DataError(f"missing columns {sorted(missing)}; has {list(df.columns)}",
                        dataset=dataset, path=path)
    return df


def _split_rows(card: DatasetCard, root: Path, split: str, variant: Variant,
                required: set[str], subset_ids: list[str] | None = None) -> tuple[pd.DataFrame, Path]:
    """Rows of ``split``: train from the variant CSV, val/test always from the full annotations."""
    if split == "train" and not variant.is_full and subset_ids is None:
        path = variant_csv(card, root, variant)
    else:
        path = root / "annotation.csv"
    df = _read_csv(path, required, card.name)
    if "split" in df.columns:
        df = df[df["split"] == split]
    if subset_ids is not None:
        df = df[df["file_id"].isin(set(subset_ids))]
    return df, path


# ---- classification ----------------------------------------------------------------------------

def _parse_multilabel(text: str, num: int, where: str, dataset: str) -> np.ndarray:
    try:
        ids = ast.literal_eval(text) if text.strip() else []
        ids = [ids] if isinstance(ids, int) else list(ids)
    except (ValueError, SyntaxError):
        raise DataError(f"label {text!r} is not a list of label ids like [0, 4, 17]",
                        dataset=dataset, path=where) from None
    target = np.zeros(num, dtype=np.int8)
    for i in ids:
        if not 0 <= int(i) < num:
            raise DataError(f"label {i} out of range 0..{num - 1}", dataset=dataset, path=where)
        target[int(i)] = 1
    return target


def _after_path(before: Path) -> Path:
    parts = list(before.parts)
    for i in range(len(parts) - 1, -1, -1):
        if "before" in parts[i]:
            parts[i] = parts[i].replace("before", "after")
            return Path(*parts)
    raise DataError("image-pair file_id does not contain 'before'", path=before)


def read_classification(card: DatasetCard, root: Path, split: str, variant: Variant,
                        subset_ids: list[str] | None = None) -> MarsDataset:
    notes: list[str] = []
    mapping = read_mapping_file(root / "mapping.json")
    df, csv_path = _split_rows(card, root, split, variant, {"file_id", "label", "split"},
                               subset_ids)
    if mapping:
        aliases, _ = mapping
        names = reconcile(card, names_from_mapping(aliases), aliases, notes)
    elif card.class_names:
        names = list(card.class_names)
    else:
        raise DataError("no mapping.json and the card does not publish class names",
                        dataset=card.name, path=root, fix="add mapping.json ({\"0\": \"name\"})")
    num = len(names)
    multilabel = card.kind is TaskKind.MULTILABEL
    pair = card.kind is TaskKind.IMAGE_PAIR
    entries, ids, targets = [], [], []
    for row_no, row in zip(df.index, df.itertuples(index=False)):
        where = f"{csv_path.name} row {row_no + 2}"
        feature = getattr(row, "feature_name", "") if not multilabel else ""
        base = root / "data" / split
        path = base / feature / row.file_id if feature else base / row.file_id
        if multilabel:
            target = _parse_multilabel(row.label, num, where, card.name)
        else:
            try:
                target = int(float(row.label))
            except ValueError:
                raise DataError(f"label {row.label!r} is not an integer", dataset=card.name,
                                path=where) from None
            if not 0 <= target < num:
                raise DataError(f"label {target} out of range 0..{num - 1} ({row.file_id})",
                                dataset=card.name, path=where,
                                fix="fix the label or mapping.json")
        paths = (path, _after_path(path)) if pair else (path,)
        entries.append((row.file_id, paths, target))
        ids.append(row.file_id)
        targets.append(target)

    def load(entry) -> ClassificationSample:
        sample_id, paths, target = entry
        images = tuple(decode_image(p, name=f"{card.name}/{p.relative_to(root)}") for p in paths)
        return ClassificationSample(sample_id, images, target)

    def content() -> list[str]:  # every file this split reads, by its bytes
        return named_digests(root, [*_existing(root / "mapping.json"), csv_path,
                                    *(p for _, paths, _ in entries for p in paths)])

    return MarsDataset(card, split, variant, names, ids, entries, load, "folder", str(root),
                       content=content, notes=notes, targets=targets)


# ---- segmentation ------------------------------------------------------------------------------

def mask_for(image: Path, masks_dir: Path) -> Path | None:
    """Masks pair with images by stem (MMLS: ``Image<id>.tif`` <-> ``Mask<id>.tif``)."""
    stems = [image.stem]
    if image.stem.startswith("Image"):
        stems.append("Mask" + image.stem[len("Image"):])
    for stem in stems:
        for ext in (".png", ".tif", ".tiff", ".PNG", ".TIF"):
            candidate = masks_dir / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    return None


def _list_images(folder: Path, dataset: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError("folder missing", dataset=dataset, path=folder,
                        fix="check --root points at the extracted dataset folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _train_subset(card: DatasetCard, root: Path, split: str, variant: Variant,
                  subset_ids: list[str] | None) -> set[str] | None:
    """file_ids of a partition's train split (seg/det partition CSVs: columns file_id, split)."""
    if split != "train" or (variant.is_full and subset_ids is None):
        return None
    if subset_ids is not None:
        return set(subset_ids)
    if variant.kind == "few_shot":
        raise VariantUnavailableError("few-shot variants exist for classification only",
                                      dataset=card.name)
    df = _read_csv(variant_csv(card, root, variant), {"file_id"}, card.name)
    if "split" in df.columns:
        df = df[df["split"] == "train"]
    return {Path(f).name for f in df["file_id"]} | {Path(f).stem for f in df["file_id"]}


def _subset_csv(card: DatasetCard, root: Path, split: str, variant: Variant,
                subset_ids: list[str] | None) -> list[Path]:
    """The partition CSV `_train_subset` reads for this split, if any."""
    if split != "train" or variant.is_full or subset_ids is not None:
        return []
    return _existing(root / variant.folder_csv)


def read_segmentation(card: DatasetCard, root: Path, split: str, variant: Variant, *,
                      ignore_index: int | None = None,
                      subset_ids: list[str] | None = None,
                      skip_unpaired: bool = False) -> MarsDataset:
    notes: list[str] = []
    mapping = read_mapping_file(root / "mapping.json")
    if mapping:
        aliases, mapped_ignore = mapping
        names = reconcile(card, names_from_mapping(aliases), aliases, notes)
        ignore_index = ignore_index if ignore_index is not None else mapped_ignore
    else:
        names = list(card.class_names or [])
        if not names:
            raise DataError("no mapping.json and the card does not publish class names",
                            dataset=card.name, path=root)
    ignore_index = ignore_index if ignore_index is not None else card.ignore_index
    base = root / "data" / split
    images = _list_images(base / "images", card.name)
    keep = _train_subset(card, root, split, variant, subset_ids)
    if keep is not None:
        images = [p for p in images if p.name in keep or p.stem in keep]
    entries, ids = [], []
    for img in images:
        mask = mask_for(img, base / "masks")
        if mask is None:
            if skip_unpaired:
                notes.append(f"{split}/images/{img.name}: no mask")
                continue
            raise DataError(f"image {img.name} has no mask (expected masks/{img.stem}.png)",
                            dataset=card.name, split=split, path=img)
        entries.append((img.stem, img, mask))
        ids.append(img.stem)
    num = len(names)

    def load(entry) -> SegmentationSample:
        sample_id, img_path, mask_path = entry
        rel = f"{card.name}/{mask_path.relative_to(root)}"
        image = decode_image(img_path, name=f"{card.name}/{img_path.relative_to(root)}")
        mask = decode_mask(mask_path, name=rel)
        validate_mask(image, mask, num, ignore_index, rel)
        return SegmentationSample(sample_id, image, mask)

    def content() -> list[str]:  # every file this split reads, by its bytes
        return named_digests(root, [*_existing(root / "mapping.json"),
                                    *_subset_csv(card, root, split, variant, subset_ids),
                                    *(p for _, img, mask in entries for p in (img, mask))])

    return MarsDataset(card, split, variant, names, ids, entries, load, "folder", str(root),
                       ignore_index=ignore_index, content=content, notes=notes)


def validate_mask(image: np.ndarray, mask: np.ndarray, num_classes: int,
                  ignore_index: int | None, where: str) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise DataError(f"image is {image.shape[1]}x{image.shape[0]} but mask is "
                        f"{mask.shape[1]}x{mask.shape[0]}", path=where)
    values = np.unique(mask)
    bad = [int(v) for v in values if (v < 0 or v >= num_classes) and v != ignore_index]
    if bad:
        hint = " or set an ignore value" if ignore_index is None else ""
        raise DataError(f"mask value {bad[0]} >= {num_classes} classes", path=where,
                        fix=f"fix the mask{hint}")


# ---- detection ---------------------------------------------------------------------------------

def read_detection(card: DatasetCard, root: Path, split: str, variant: Variant, *,
                   annotation_format: str = "voc", drop_negatives: bool = False,
                   subset_ids: list[str] | None = None) -> MarsDataset:
    if annotation_format not in ANNOTATION_FORMATS:
        raise ValueError(f"annotation_format must be one of {ANNOTATION_FORMATS}")
    base = root / "data" / split
    images = _list_images(base / "images", card.name)
    keep = _train_subset(card, root, split, variant, subset_ids)
    if keep is not None:
        images = [p for p in images if p.name in keep or p.stem in keep]
    coco_path = base / "coco_annotations.json"
    coco = CocoIndex(coco_path) if coco_path.is_file() else None
    if coco and coco.categories:
        names = [coco.categories[k] for k in sorted(coco.categories)]
        if sorted(coco.categories) != list(range(1, len(names) + 1)):
            raise DataError(f"COCO category ids {sorted(coco.categories)} are not 1..K",
                            dataset=card.name, path=coco_path)
    else:
        names = list(card.class_names or ["object"])
    class_ids = {n.lower(): i + 1 for i, n in enumerate(names)}
    if annotation_format == "coco" and coco is None:
        raise DataError("annotation_format='coco' but no coco_annotations.json",
                        dataset=card.name, split=split, path=coco_path)

    def annotations(img: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        if annotation_format == "coco":
            return coco.boxes(img.name)
        if annotation_format == "yolo":
            txt = base / "labels" / f"{img.stem}.txt"
            if not txt.is_file():
                raise DataError("YOLO label file missing", dataset=card.name, split=split,
                                path=txt)
            return parse_yolo(txt.read_text(), width, height, path=str(txt))
        xml = base / "pascal_voc" / f"{img.stem}.xml"
        if not xml.is_file():
            raise DataError("Pascal VOC file missing", dataset=card.name, split=split, path=xml)
        return parse_voc(xml, class_ids)

    def load(img: Path) -> DetectionSample:
        rel = f"{card.name}/{img.relative_to(root)}"
        image = decode_image(img, name=rel)
        h, w = image.shape[:2]
        boxes, labels = annotations(img, w, h)
        validate_boxes(boxes, labels, w, h, len(names), rel)
        return DetectionSample(img.stem, image, boxes, labels)

    if drop_negatives:
        images = [p for p in images if _has_boxes(p, base, annotation_format, coco)]

    def content() -> list[str]:  # every file this split reads, by its bytes
        per_image = {"coco": lambda p: [],  # coco_annotations.json is listed below
                     "yolo": lambda p: [base / "labels" / f"{p.stem}.txt"],
                     "voc": lambda p: [base / "pascal_voc" / f"{p.stem}.xml"]}[annotation_format]
        return (named_digests(root, [*_existing(coco_path),  # its categories name the classes
                                     *_subset_csv(card, root, split, variant, subset_ids),
                                     *images])
                + named_digests(root, [a for p in images for a in per_image(p)],
                                missing_ok=True))  # a missing file fails at load; here: noted

    return MarsDataset(card, split, variant, names, [p.stem for p in images], images, load,
                       "folder", str(root), fingerprint_parts=[f"format={annotation_format}"],
                       content=content)


def _has_boxes(img: Path, base: Path, fmt: str, coco: CocoIndex | None) -> bool:
    if fmt == "coco" and coco is not None:
        return len(coco.boxes(img.name)[0]) > 0
    if fmt == "yolo":
        txt = base / "labels" / f"{img.stem}.txt"
        return txt.is_file() and bool(txt.read_text().strip())
    xml = base / "pascal_voc" / f"{img.stem}.xml"
    return xml.is_file() and "<object>" in xml.read_text()


def validate_boxes(boxes: np.ndarray, labels: np.ndarray, width: int, height: int,
                   num_classes: int, where: str, tolerance: float = 1.0) -> None:
    for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
        box = f"[{x0:g}, {y0:g}, {x1:g}, {y1:g}]"
        if x1 <= x0 or y1 <= y0:
            raise DataError(f"box {box} has zero area", path=where, fix="drop or fix the box")
        if x0 < -tolerance or y0 < -tolerance or x1 > width + tolerance or y1 > height + tolerance:
            raise DataError(f"box {box} lies outside the {width}x{height} image", path=where,
                            fix="clip or fix the box")
        if not 1 <= label <= num_classes:
            raise DataError(f"class id {label} out of range 1..{num_classes}", path=where)


# ---- dispatch ----------------------------------------------------------------------------------

def read_folder(card: DatasetCard, root: Path, split: str, variant: Variant, **options) -> MarsDataset:
    drop = {Task.CLASSIFICATION: ("annotation_format", "drop_negatives", "ignore_index",
                                  "skip_unpaired"),
            Task.SEGMENTATION: ("annotation_format", "drop_negatives"),
            Task.DETECTION: ("ignore_index", "skip_unpaired")}[card.task]
    options = {k: v for k, v in options.items() if k not in drop}
    reader = {Task.CLASSIFICATION: read_classification, Task.SEGMENTATION: read_segmentation,
              Task.DETECTION: read_detection}[card.task]
    return reader(card, root, split, variant, **options)


"""Readers for the Zenodo folder layout (facts sheet, section 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog import DatasetCard, Task, TaskKind, Variant
from .classnames import names_from_mapping, read_mapping_file, reconcile
from .content_hash import named_digests
from .dataset import MarsDataset
from .detection_formats import CocoIndex, parse_voc, parse_yolo
from .errors import DataError, VariantUnavailableError
from .images import classification_image, decode_image, decode_mask, is_image_file
from .paths import Guard, contained, display, read_text, refuse_unsafe
from .samples import ClassificationSample, DetectionSample, SegmentationSample
from .validate import class_label, multilabel_from_ids, validate_boxes, validate_mask

SPLITS = ("train", "val", "test")

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


def _read_csv(path: Path, required: set[str], dataset: str,
              root: Path | None = None) -> pd.DataFrame:
    """An annotation / variant CSV (inside ``root``) with its required columns and split names."""
    import io

    text = read_text(root or path.parent, path, dataset=dataset, what="CSV file",
                     allow_empty=False)
    shown = path.relative_to(root) if root is not None and path.is_relative_to(root) else path
    _check_csv_shape(text, shown, dataset)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises several types for a bad CSV
        raise DataError(f"unreadable CSV ({type(exc).__name__}: {exc})", dataset=dataset,
                        path=shown) from None
    missing = required - set(df.columns)
    if missing:
        raise DataError(f"CSV lacks columns {sorted(missing)}", dataset=dataset, path=shown,
                        value=f"has {list(df.columns)}")
    if "split" in df.columns:
        bad = df.index[~df["split"].isin(SPLITS)]
        if len(bad):
            from ..errors import did_you_mean

            value = df.at[bad[0], "split"]
            raise DataError("unknown split name", dataset=dataset, path=shown,
                            row=int(bad[0]) + 2, value=repr(value),
                            fix=f"valid splits: {', '.join(SPLITS)}"
                                + (f" ({did_you_mean(value, SPLITS)})" if value else "")
                                + (f"; {len(bad)} rows affected" if len(bad) > 1 else ""))
    return df


def _check_csv_shape(text: str, shown: Path, dataset: str) -> None:
    """Every row as many fields as the header, and no column named twice (pandas would shift
    the columns into the index, or rename a second ``label`` to ``label.1``)."""
    import csv
    import io

    try:
        rows = csv.reader(io.StringIO(text, newline=""))
        header = next(rows, [])
        seen: set[str] = set()
        for name in header:
            if name.strip() in seen:
                raise DataError(f"column {name.strip()!r} appears twice in the header",
                                dataset=dataset, path=shown, row=1, fix="keep one")
            seen.add(name.strip())
        for row in rows:
            if row and len(row) != len(header):
                more = "more" if len(row) > len(header) else "fewer"
                raise DataError(f"row has {len(row)} fields, {more} than the header's "
                                f"{len(header)}", dataset=dataset, path=shown, row=rows.line_num,
                                value=",".join(row),
                                fix="quote values that contain commas, or fix the row to "
                                    f"match the header {','.join(header)}")
    except csv.Error as exc:
        raise DataError(f"unreadable CSV ({exc})", dataset=dataset, path=shown,
                        row=rows.line_num) from None


def _split_rows(card: DatasetCard, root: Path, split: str, variant: Variant,
                required: set[str], subset_ids: list[str] | None = None) -> tuple[pd.DataFrame, Path]:
    """Rows of ``split``: train from the variant CSV, val/test always from the full annotations."""
    if split == "train" and not variant.is_full and subset_ids is None:
        path = variant_csv(card, root, variant)
    else:
        path = root / "annotation.csv"
    df = _read_csv(path, required, card.name, root)
    all_rows = df
    if "split" in df.columns:
        df = df[df["split"] == split]
    if subset_ids is not None:
        df = df[df["file_id"].isin(set(subset_ids))]
    _refuse_repeated_ids(df, card.name, split, path.relative_to(root))
    if df.empty:
        counts = (all_rows["split"].value_counts().to_dict() if "split" in all_rows.columns
                  else {})
        raise DataError("split has no samples", dataset=card.name, split=split,
                        path=path.relative_to(root),
                        value=", ".join(f"{k} {counts.get(k, 0)}" for k in SPLITS) or "no rows",
                        fix="add rows for this split to the CSV")
    return df, path


def _refuse_repeated_ids(df: pd.DataFrame, dataset: str, split: str, shown: Path) -> None:
    """One row per sample id in a split: a repeated id would be trained on or scored twice."""
    repeated = df[df.duplicated("file_id", keep=False)]
    if repeated.empty:
        return
    first = repeated["file_id"].iloc[0]
    rows = repeated[repeated["file_id"] == first]
    labels = sorted(set(rows["label"])) if "label" in rows.columns else []
    others = repeated["file_id"].nunique() - 1
    raise DataError(f"sample id repeated within the split (rows "
                    f"{', '.join(str(i + 2) for i in rows.index)})", dataset=dataset,
                    split=split, path=shown, value=repr(first),
                    fix="remove one of the rows"
                        + (f" (their labels differ: {', '.join(labels)})" if len(labels) > 1
                           else "")
                        + (f"; {others} more ids are repeated" if others else ""))


# ---- classification ----------------------------------------------------------------------------

def _after_path(before: Path, **at) -> Path:
    parts = list(before.parts)
    for i in range(len(parts) - 1, -1, -1):
        if "before" in parts[i]:
            parts[i] = parts[i].replace("before", "after")
            return Path(*parts)
    raise DataError("image-pair file_id does not contain 'before'", value=before.name,
                    fix="name the pair's files ...before... / ...after...", **at)


def read_classification(card: DatasetCard, root: Path, split: str, variant: Variant,
                        subset_ids: list[str] | None = None) -> MarsDataset:
    notes: list[str] = []
    mapping = read_mapping_file(root / "mapping.json", root=root, dataset=card.name)
    df, csv_path = _split_rows(card, root, split, variant, {"file_id", "label", "split"},
                               subset_ids)
    if mapping:
        aliases, ignore = mapping
        names = names_from_mapping(aliases, card=card, ignore=ignore, notes=notes,
                                   path=display(root, root / "mapping.json"))
        names = reconcile(card, names, aliases, notes)
    elif card.class_names:
        names = list(card.class_names)
    else:
        raise DataError("no mapping.json and the card does not publish class names",
                        dataset=card.name, path=root, fix="add mapping.json ({\"0\": \"name\"})")
    num = len(names)
    multilabel = card.kind is TaskKind.MULTILABEL
    pair = card.kind is TaskKind.IMAGE_PAIR
    guard = Guard(root, dataset=card.name, split=split)
    entries, ids, targets = [], [], []
    for row_no, row in zip(df.index, df.itertuples(index=False)):
        at = dict(dataset=card.name, split=split, path=csv_path.relative_to(root),
                  row=int(row_no) + 2)
        feature = getattr(row, "feature_name", "") if not multilabel else ""
        if not row.file_id.strip():
            raise DataError("file_id is empty", **at, fix="name the image file of this row")
        for part in (feature, row.file_id) if feature else (row.file_id,):
            refuse_unsafe(part, dataset=card.name, split=split, where=at["path"], row=at["row"],
                          what="image")
        relative = "/".join(["data", split, *([feature] if feature else []), row.file_id])
        path = contained(guard, relative, dataset=card.name, split=split, where=at["path"],
                         row=at["row"], what="image")
        if multilabel:
            target = multilabel_from_ids(row.label, num, **at)
        else:
            target = class_label(row.label, num, **at)
        if pair:
            after = _after_path(path, **at)
            contained(guard, after.relative_to(root), dataset=card.name, split=split,
                      where=at["path"], row=at["row"], what="image")
            paths = (path, after)
        else:
            paths = (path,)
        entries.append((row.file_id, paths, target))
        ids.append(row.file_id)
        targets.append(target)

    def load(entry) -> ClassificationSample:
        sample_id, paths, target = entry
        shown = [f"{card.name}/{p.relative_to(root)}" for p in paths]
        images = tuple(classification_image(decode_image(guard(p, what="image"), notes=notes,
                                                         name=n), n)
                       for p, n in zip(paths, shown))
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


def _no_mask(dataset: str, split: str, root: Path, img: Path, masks: Path) -> DataError:
    """The error for an image without a mask: the mask expected, and a same-stem file in
    another format (e.g. ``x.jpg``) if there is one."""
    import glob

    expected = display(root, masks / f"{img.stem}.png")
    stems = (img.stem, "Mask" + img.stem.removeprefix("Image"))
    near = sorted(p.name for stem in stems for p in masks.glob(f"{glob.escape(stem)}.*")
                  if p.is_file()) if masks.is_dir() else []
    fix = (f"found masks/{near[0]}, but masks must be PNG or TIFF: save it as {img.stem}.png"
           if near else "add the mask, or remove the image")
    return DataError(f"image {img.name} has no mask", dataset=dataset, split=split,
                     path=display(root, img), value=f"expected {expected} (or .tif)", fix=fix)


def _list_images(folder: Path, dataset: str, guard: Guard | None = None) -> list[Path]:
    """The image files of ``folder`` (each checked to resolve inside the dataset)."""
    if not folder.is_dir():
        raise DataError("folder missing", dataset=dataset, path=folder,
                        fix="check --root points at the extracted dataset folder")
    images = sorted(p for p in folder.iterdir() if is_image_file(p) and p.is_file())
    stems: dict[str, Path] = {}
    for p in images:  # the stem is the sample id (and pairs the mask / annotation file)
        if p.stem in stems:
            raise DataError("two images share a stem (one sample id)", dataset=dataset,
                            path=folder, value=f"{stems[p.stem].name}, {p.name}",
                            fix="remove one of them")
        stems[p.stem] = p
    if guard is not None:
        for p in images:
            guard(p, what="image")
    return images


def _no_samples(card: DatasetCard, split: str, folder: Path, why: str) -> DataError:
    return DataError(f"split has no samples ({why})", dataset=card.name, split=split,
                     path=folder, fix="add the split's images, or point --root at the full copy")


def _train_subset(card: DatasetCard, root: Path, split: str, variant: Variant,
                  subset_ids: list[str] | None, images: list[Path]) -> list[Path]:
    """``images`` limited to a partition's train split (seg/det partition CSVs: columns
    file_id, split); a CSV row naming no image of the split is a `DataError`, not dropped."""
    if split != "train" or (variant.is_full and subset_ids is None):
        return images
    names = {p.name for p in images} | {p.stem for p in images}
    if subset_ids is not None:
        keep = set(subset_ids)
    else:
        if variant.kind == "few_shot":
            raise VariantUnavailableError("few-shot variants exist for classification only",
                                          dataset=card.name)
        path = variant_csv(card, root, variant)
        df = _read_csv(path, {"file_id"}, card.name, root)
        if "split" in df.columns:
            df = df[df["split"] == "train"]
        for index, file_id in zip(df.index, df["file_id"]):
            if Path(file_id).name not in names and Path(file_id).stem not in names:
                raise DataError("partition row names no image of the train split",
                                dataset=card.name, split=split, path=path.relative_to(root),
                                row=int(index) + 2, value=repr(file_id),
                                fix="fix the file_id or restore the image in data/train/images")
        keep = {Path(f).name for f in df["file_id"]} | {Path(f).stem for f in df["file_id"]}
    return [p for p in images if p.name in keep or p.stem in keep]


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
    mapping = read_mapping_file(root / "mapping.json", root=root, dataset=card.name)
    if mapping:
        aliases, mapped_ignore = mapping
        names = names_from_mapping(aliases, card=card, ignore=mapped_ignore, notes=notes,
                                   path=display(root, root / "mapping.json"))
        names = reconcile(card, names, aliases, notes)
        ignore_index = ignore_index if ignore_index is not None else mapped_ignore
    else:
        names = list(card.class_names or [])
        if not names:
            raise DataError("no mapping.json and the card does not publish class names",
                            dataset=card.name, path=root)
    ignore_index = ignore_index if ignore_index is not None else card.ignore_index
    base = root / "data" / split
    guard = Guard(root, dataset=card.name, split=split)
    images = _list_images(base / "images", card.name, guard)
    images = _train_subset(card, root, split, variant, subset_ids, images)
    entries, ids = [], []
    for img in images:
        mask = mask_for(img, base / "masks")
        if mask is None:
            error = _no_mask(card.name, split, root, img, base / "masks")
            if skip_unpaired:
                notes.append(f"{split}/images/{img.name}: {error}")
                continue
            raise error
        entries.append((img.stem, img, guard(mask, what="mask")))
        ids.append(img.stem)
    if not entries:
        raise _no_samples(card, split, base / "images",
                          "no images" if not images else "no image has a mask")
    num = len(names)

    def load(entry) -> SegmentationSample:
        sample_id, img_path, mask_path = entry
        rel = f"{card.name}/{mask_path.relative_to(root)}"
        image = decode_image(guard(img_path, what="image"), notes=notes,
                             name=f"{card.name}/{img_path.relative_to(root)}")
        mask = decode_mask(guard(mask_path, what="mask"), name=rel)
        validate_mask(image, mask, num, ignore_index, rel)
        return SegmentationSample(sample_id, image, mask)

    def content() -> list[str]:  # every file this split reads, by its bytes
        return named_digests(root, [*_existing(root / "mapping.json"),
                                    *_subset_csv(card, root, split, variant, subset_ids),
                                    *(p for _, img, mask in entries for p in (img, mask))])

    return MarsDataset(card, split, variant, names, ids, entries, load, "folder", str(root),
                       ignore_index=ignore_index, content=content, notes=notes)


# ---- detection ---------------------------------------------------------------------------------

def read_detection(card: DatasetCard, root: Path, split: str, variant: Variant, *,
                   annotation_format: str = "voc", drop_negatives: bool = False,
                   subset_ids: list[str] | None = None) -> MarsDataset:
    if annotation_format not in ANNOTATION_FORMATS:
        from ..errors import OptionError, did_you_mean

        raise OptionError("unknown annotation_format", where="annotation_format",
                          value=annotation_format,
                          fix=did_you_mean(annotation_format, ANNOTATION_FORMATS))
    base = root / "data" / split
    notes: list[str] = []
    guard = Guard(root, dataset=card.name, split=split)
    images = _list_images(base / "images", card.name, guard)
    images = _train_subset(card, root, split, variant, subset_ids, images)
    if not images:
        raise _no_samples(card, split, base / "images", "no images")
    coco_path = base / "coco_annotations.json"
    coco = (CocoIndex(coco_path, root=root) if coco_path.is_file() or coco_path.is_symlink()
            else None)
    if coco and coco.categories:
        names = [coco.categories[k] for k in sorted(coco.categories)]
        if sorted(coco.categories) != list(range(1, len(names) + 1)):
            raise DataError("COCO category ids are not 1..K", dataset=card.name, split=split,
                            path=coco_path, value=sorted(coco.categories))
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
            text = read_text(root, txt, dataset=card.name, split=split, what="YOLO label file")
            return parse_yolo(text, width, height, path=_rel(root, txt, card.name),
                              num_classes=len(names))
        xml = base / "pascal_voc" / f"{img.stem}.xml"
        text = read_text(root, xml, dataset=card.name, split=split, what="Pascal VOC file",
                         allow_empty=False)
        return parse_voc(Path(_rel(root, xml, card.name)), class_ids, text=text)

    if annotation_format != "coco":  # per-image annotation files must stay inside, too
        sub, ext = ("labels", ".txt") if annotation_format == "yolo" else ("pascal_voc", ".xml")
        for img in images:
            guard(base / sub / f"{img.stem}{ext}", what="annotation file")

    def load(img: Path) -> DetectionSample:
        rel = f"{card.name}/{img.relative_to(root)}"
        image = decode_image(guard(img, what="image"), name=rel, notes=notes)
        h, w = image.shape[:2]
        boxes, labels = annotations(img, w, h)
        validate_boxes(boxes, labels, w, h, len(names), rel)
        return DetectionSample(img.stem, image, boxes, labels)

    if drop_negatives:
        images = [p for p in images if _has_boxes(p, base, annotation_format, coco, root)]
        if not images:
            raise _no_samples(card, split, base / "images", "every image is a negative and "
                              "drop_negatives is set")

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
                       content=content, notes=notes)


def _has_boxes(img: Path, base: Path, fmt: str, coco: CocoIndex | None, root: Path) -> bool:
    if fmt == "coco" and coco is not None:
        return len(coco.boxes(img.name)[0]) > 0
    if fmt == "yolo":
        txt = base / "labels" / f"{img.stem}.txt"
        return txt.is_file() and bool(read_text(root, txt, what="YOLO label file").strip())
    xml = base / "pascal_voc" / f"{img.stem}.xml"
    return xml.is_file() and "<object>" in read_text(root, xml, what="Pascal VOC file")


def _rel(root: Path, path: Path, dataset: str) -> str:
    """``<dataset>/<path relative to the dataset>``, as errors name files."""
    try:
        return f"{dataset}/{path.relative_to(root).as_posix()}"
    except ValueError:
        return str(path)


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


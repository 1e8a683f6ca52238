"""`check_dataset`: validate a local copy in one pass and list every problem found.

It reads every sample through the same readers a run uses (so each problem is the error a run
would raise) and adds what a reader cannot see: files present but not referenced, masks or
annotation files without an image, ids duplicated across splits, variant train splits leaking
val/test ids, and detection formats (YOLO / COCO / VOC) that disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..catalog import Task, Variant
from .dataset import SPLITS
from .detection_formats import CocoIndex, parse_voc, parse_yolo
from .errors import DataError
from .folder import read_folder
from .images import is_image_file
from .open import resolve


@dataclass(frozen=True)
class Problem:
    split: str
    path: str
    message: str


@dataclass
class CheckReport:
    dataset: str
    location: str
    source: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, split: str, path: str | Path, message: str) -> None:
        self.problems.append(Problem(split, str(path), message))


def _strip(message: str, location: str) -> str:
    return message.replace(location + "/", "")


def check_dataset(name_or_path: str | Path, *, root: str | Path | None = None,
                  source: str = "auto", ignore_index: int | None = None) -> CheckReport:
    card, src, location = resolve(name_or_path, root=root, source=source)
    report = CheckReport(card.name, location, src)
    ids_by_split: dict[str, set[str]] = {}
    options = dict(ignore_index=ignore_index)
    for split in SPLITS:
        try:
            if src == "folder":
                ds = read_folder(card, Path(location), split, Variant(), skip_unpaired=True,
                                 **options)
            else:
                from .hf import read_hf

                ds = read_hf(card, location, split, Variant(), **options)
        except DataError as exc:
            report.add(split, location, str(exc))
            continue
        report.counts[split] = len(ds)
        report.notes += [n for n in ds.notes if n not in report.notes]
        keys = _identity(ds, src)
        ids_by_split[split] = set(keys)
        if len(ids_by_split[split]) != len(keys):
            report.add(split, location, "sample ids repeated within the split"
                       + (" (identical image bytes)" if src == "hf" else ""))
        for i in range(len(ds)):
            try:
                ds[i]
            except DataError as exc:
                report.add(split, _entry_path(ds.entries[i]), str(exc))
        if src == "folder":
            _check_folder_files(card.task, Path(location), split, ds, report)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        dup = ids_by_split.get(a, set()) & ids_by_split.get(b, set())
        if dup:
            what = "images" if src == "hf" else "ids"
            report.add(f"{a}+{b}", location,
                       f"{len(dup)} {what} appear in both splits, e.g. {sorted(dup)[:3]}")
    _check_variant_leaks(card, src, location, ids_by_split, report)
    return report


def _identity(ds, src: str) -> list[str]:
    """What makes a sample the same sample: its id on disk, its image bytes in an HF table
    (row numbers restart in every split, so they cannot tell a duplicate)."""
    if src == "hf":
        from .hf import content_hashes

        return content_hashes(ds)
    return list(ds.sample_ids)


def _entry_path(entry) -> str:
    if isinstance(entry, Path):
        return str(entry)
    if isinstance(entry, tuple):
        for part in entry[1:]:
            if isinstance(part, Path):
                return str(part)
            if isinstance(part, tuple) and part and isinstance(part[0], Path):
                return str(part[0])
    return str(entry)


def _check_folder_files(task: Task, root: Path, split: str, ds, report: CheckReport) -> None:
    base = root / "data" / split
    if task is Task.CLASSIFICATION:
        referenced = {p.resolve() for _, paths, _ in ds.entries for p in paths}
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and is_image_file(path) and path.resolve() not in referenced:
                    report.add(split, path, "file present but not referenced by annotation.csv")
        return
    images = {p.stem for p in (base / "images").glob("*") if p.is_file()}
    if task is Task.SEGMENTATION:
        for note in ds.notes:
            if note.startswith(f"{split}/images/"):
                report.add(split, root / "data" / note.split(":")[0], "image has no mask")
        for mask in sorted((base / "masks").glob("*")):
            stem = mask.stem
            if stem not in images and "Image" + stem.removeprefix("Mask") not in images:
                report.add(split, mask, "mask present but no image with that stem")
        return
    for sub, ext in (("labels", ".txt"), ("pascal_voc", ".xml")):
        for path in sorted((base / sub).glob(f"*{ext}")):
            if path.stem not in images:
                report.add(split, path, "annotation present but no image with that stem")
    _check_detection_formats(root, split, ds, report)


def _check_detection_formats(root: Path, split: str, ds, report: CheckReport) -> None:
    """YOLO, COCO and VOC must give the same boxes (within a pixel of rounding)."""
    base = root / "data" / split
    coco_path = base / "coco_annotations.json"
    coco = CocoIndex(coco_path) if coco_path.is_file() else None
    class_ids = {n.lower(): i + 1 for i, n in enumerate(ds.class_names)}
    for img in ds.entries:
        txt, xml = base / "labels" / f"{img.stem}.txt", base / "pascal_voc" / f"{img.stem}.xml"
        if not (txt.is_file() and xml.is_file()):
            continue
        try:
            from PIL import Image

            with Image.open(img) as im:
                w, h = im.size
            formats = {"yolo": parse_yolo(txt.read_text(), w, h, path=str(txt)),
                       "voc": parse_voc(xml, class_ids)}
            if coco is not None:
                formats["coco"] = coco.boxes(img.name)
        except (DataError, OSError) as exc:
            report.add(split, img, str(exc))
            continue
        ref_boxes, ref_labels = formats["voc"]
        for fmt, (boxes, labels) in formats.items():
            if fmt == "voc":
                continue
            if not _same_boxes(ref_boxes, ref_labels, boxes, labels):
                report.add(split, img, f"{fmt} boxes disagree with Pascal VOC "
                                       f"({len(boxes)} vs {len(ref_boxes)} boxes)")


def _same_boxes(a, la, b, lb, tol: float = 1.0) -> bool:
    """Box-for-box agreement: every box of ``a`` matches a distinct box of ``b`` within ``tol``."""
    if len(a) != len(b):
        return False
    unmatched = list(range(len(b)))
    for box, label in zip(a, la):
        hit = next((j for j in unmatched if lb[j] == label
                    and np.all(np.abs(b[j] - box) <= tol)), None)
        if hit is None:
            return False
        unmatched.remove(hit)
    return True


def _check_variant_leaks(card, src: str, location: str, ids: dict[str, set[str]],
                         report: CheckReport) -> None:
    """A few-shot or partition train split must not contain val/test images."""
    held_out = ids.get("val", set()) | ids.get("test", set())
    for name in card.variants()[1:]:
        variant = Variant.parse(name)
        try:
            if src == "folder":
                ds = read_folder(card, Path(location), "train", variant, skip_unpaired=True)
            else:
                from .hf import read_hf

                ds = read_hf(card, location, "train", variant)
        except DataError:
            continue  # variants are optional; `open_dataset` reports a missing one on use
        keys = set(_identity(ds, src))
        leak = keys & held_out
        if leak:
            report.add(f"train[{variant}]", location,
                       f"{len(leak)} val/test images leak into the {variant} train split, "
                       f"e.g. {sorted(leak)[:3]}")
        extra = keys - ids.get("train", set())
        if extra and not leak:
            report.add(f"train[{variant}]", location,
                       f"{len(extra)} ids are not in the full train split, e.g. {sorted(extra)[:3]}")

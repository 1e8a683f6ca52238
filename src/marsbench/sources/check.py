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
from .errors import DataError, VariantUnavailableError
from .folder import read_folder
from .images import is_image_file
from .open import resolve
from .validate import first_repeat, validate_boxes


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


def _problem_text(exc: Exception) -> str:
    """A `DataError`'s own line; anything else (a reader bug) named by its type, never raised:
    `check` lists every problem it meets instead of stopping at the first."""
    if isinstance(exc, DataError):
        return str(exc)
    return f"unexpected {type(exc).__name__} while reading: {exc}"


def check_dataset(name_or_path: str | Path, *, root: str | Path | None = None,
                  source: str = "auto", ignore_index: int | None = None) -> CheckReport:
    """Read every split and sample of a local copy; return every problem found (never raise
    for bad data in a folder: a dataset that cannot even be opened is one listed problem)."""
    try:
        card, src, location = resolve(name_or_path, root=root, source=source)
    except DataError as exc:
        if not Path(name_or_path).is_dir():
            raise
        report = CheckReport(Path(name_or_path).name, str(name_or_path), source)
        report.add("-", name_or_path, str(exc))
        return report
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
        except Exception as exc:  # noqa: BLE001 - listed, see _problem_text
            report.add(split, location, _problem_text(exc))
            continue
        report.counts[split] = len(ds)
        try:
            keys = _identity(ds, src)
        except Exception as exc:  # noqa: BLE001
            report.add(split, location, _problem_text(exc))
            keys = list(ds.sample_ids)
        ids_by_split[split] = set(keys)
        if len(ids_by_split[split]) != len(keys):
            report.add(split, location, _repeated(keys, ds.sample_ids, src))
        for i in range(len(ds)):
            try:
                ds[i]
            except Exception as exc:  # noqa: BLE001
                report.add(split, _entry_path(ds.entries[i]), _problem_text(exc))
        report.notes += [n for n in ds.notes if n not in report.notes]
        if src == "folder":
            try:
                _check_folder_files(card.task, Path(location), split, ds, report)
            except Exception as exc:  # noqa: BLE001
                report.add(split, location, _problem_text(exc))
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        dup = ids_by_split.get(a, set()) & ids_by_split.get(b, set())
        if dup:
            what = "images" if src == "hf" else "ids"
            report.add(f"{a}+{b}", location,
                       f"{len(dup)} {what} appear in both splits, e.g. {sorted(dup)[:3]}")
    try:
        _check_variant_leaks(card, src, location, ids_by_split, report)
    except Exception as exc:  # noqa: BLE001
        report.add("train[variants]", location, _problem_text(exc))
    return report


def _identity(ds, src: str) -> list[str]:
    """What makes a sample the same sample: its id on disk, its image bytes in an HF table
    (row numbers restart in every split, so they cannot tell a duplicate)."""
    if src == "hf":
        from .hf import content_hashes

        return content_hashes(ds)
    return list(ds.sample_ids)


def _repeated(keys: list[str], ids: list[str], src: str) -> str:
    """Which samples of a split are the same sample, and the fix."""
    repeat = first_repeat(keys)
    if repeat is None:
        return "sample ids repeated within the split"
    i, j, extra = repeat
    same = (f"rows {i} and {j} hold identical image bytes" if src == "hf"
            else f"sample id {ids[j]!r} appears twice")
    return f"{same} ({extra} duplicate{'s' * (extra > 1)} in the split); remove one"


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
                where, error = note.split(": ", 1)
                report.add(split, root / "data" / where, error)
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
    from .images import image_size
    from .paths import Guard, read_text

    base = root / "data" / split
    guard = Guard(root, dataset=ds.card.name, split=split)
    coco_path = base / "coco_annotations.json"
    coco = None
    if coco_path.is_file() or coco_path.is_symlink():
        try:
            coco = CocoIndex(coco_path, root=root)
        except DataError as exc:
            report.add(split, coco_path, str(exc))
    class_ids = {n.lower(): i + 1 for i, n in enumerate(ds.class_names)}
    has_yolo, has_voc = (base / "labels").is_dir(), (base / "pascal_voc").is_dir()
    for img in ds.entries:
        txt, xml = base / "labels" / f"{img.stem}.txt", base / "pascal_voc" / f"{img.stem}.xml"
        if not has_yolo and not (has_voc and coco is not None):
            continue  # one format only: reading the sample has checked it
        try:
            w, h = image_size(guard(img, what="image"))
        except Exception:  # noqa: BLE001 - reading the sample has reported it already
            continue
        rel = f"{ds.card.name}/{img.relative_to(root).as_posix()}"
        readers = {
            "voc": lambda: parse_voc(Path(rel), class_ids, text=read_text(
                root, xml, what="Pascal VOC file", allow_empty=False)),
        }
        if has_yolo:  # a label folder: every image needs its .txt, as a YOLO run reads it
            readers["yolo"] = lambda: parse_yolo(
                read_text(root, txt, dataset=ds.card.name, split=split, what="YOLO label file"),
                w, h, path=f"{ds.card.name}/{txt.relative_to(root).as_posix()}",
                num_classes=len(ds.class_names))
        if coco is not None:
            readers["coco"] = lambda: coco.boxes(img.name)
        formats = {}
        for fmt, read in readers.items():
            try:
                formats[fmt] = read()
            except Exception as exc:  # noqa: BLE001 - listed, see _problem_text
                if fmt != "voc":  # VOC is what the split reads: `ds[i]` reported it
                    report.add(split, img, f"{fmt}: {_problem_text(exc)}")
                continue
            if fmt == "voc":
                continue
            try:
                validate_boxes(*formats[fmt], w, h, len(ds.class_names), f"{fmt}: {rel}")
            except DataError as exc:
                report.add(split, img, str(exc))
        if "voc" not in formats:
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
        except VariantUnavailableError:
            continue  # variants are optional; `open_dataset` reports a missing one on use
        except Exception as exc:  # noqa: BLE001 - a variant that exists but is broken is listed
            report.add(f"train[{variant}]", location, _problem_text(exc))
            continue
        keys = set(_identity(ds, src))
        leak = keys & held_out
        if leak:
            report.add(f"train[{variant}]", location,
                       f"{len(leak)} val/test images leak into the {variant} train split, "
                       f"e.g. {sorted(leak)[:3]}")
        extra = keys - ids.get("train", set())
        if extra and not leak and "train" in ids:  # (a train split that failed is listed already)
            report.add(f"train[{variant}]", location,
                       f"{len(extra)} ids are not in the full train split, e.g. {sorted(extra)[:3]}")

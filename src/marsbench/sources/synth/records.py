"""Build a synthetic dataset in memory: one record per file, images already encoded.

Both writers (folder and HF) consume the same :class:`SyntheticDataset`, so the two layouts of
one seed hold byte-identical images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import tifffile
from PIL import Image

from marsbench.catalog import DatasetCard, Task

from . import motifs
from .plan import (SPLITS, Variants, file_extension, per_class_counts, per_split_counts,
                   plan_variants, rng_for, synthetic_class_names, synthetic_image_size)


@dataclass(frozen=True)
class ClassificationRecord:
    """``file_id`` is relative to ``data/<split>/<feature_name>/`` (multi-label: ``data/<split>/``).

    Change pairs: ``file_id`` is ``before/<stem>.<ext>`` and ``images`` is ``(before, after)``;
    the partner file is the same path with ``after``.
    """

    split: str
    file_id: str
    feature_name: str
    label: int | tuple[int, ...]
    images: tuple[bytes, ...]

    @property
    def labelset(self) -> tuple[int, ...]:
        return self.label if isinstance(self.label, tuple) else (self.label,)

    @property
    def partner_id(self) -> str:
        return self.file_id.replace("before", "after")


@dataclass(frozen=True)
class SegmentationRecord:
    split: str
    image_name: str
    mask_name: str
    image: bytes
    mask: bytes
    pixels: np.ndarray = field(repr=False)
    mask_pixels: np.ndarray = field(repr=False)

    @property
    def labelset(self) -> tuple[int, ...]:
        return tuple(int(v) for v in np.unique(self.mask_pixels))


@dataclass(frozen=True)
class DetectionRecord:
    """``boxes``: ``(N, 4)`` integer corners ``x_min, y_min, x_max, y_max``; classes 0-based."""

    split: str
    image_name: str
    image: bytes
    width: int
    height: int
    boxes: np.ndarray = field(repr=False)
    classes: np.ndarray = field(repr=False)

    @property
    def stem(self) -> str:
        return self.image_name.rsplit(".", 1)[0]

    @property
    def labelset(self) -> tuple[int, ...]:
        return tuple(sorted({int(c) for c in self.classes}))


Record = ClassificationRecord | SegmentationRecord | DetectionRecord


@dataclass(frozen=True)
class SyntheticDataset:
    card: DatasetCard
    class_names: list[str]
    image_size: int
    extension: str
    seed: int
    scale: float
    records: dict[str, list[Record]]
    variants: Variants


def encode(pixels: np.ndarray, ext: str) -> bytes:
    """PNG, JPEG (quality 95) or TIFF bytes; all three encoders are deterministic."""
    buf = io.BytesIO()
    kind = ext.lower()
    if kind in ("tif", "tiff"):
        tifffile.imwrite(buf, pixels, photometric="minisblack")
        return buf.getvalue()
    arr = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
    if kind in ("jpg", "jpeg"):
        Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    else:
        Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _folder_name(name: str) -> str:
    return name.replace(" ", "_").replace("/", "_")


def _classification(card: DatasetCard, names: list[str], size: int, ext: str, seed: int,
                    scale: float) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for s_idx, split in enumerate(SPLITS):
        if card.multilabel:
            labels = _multilabel_sets(card, per_split_counts(card, scale)[split],
                                      rng_for(seed, card, 10, s_idx))
        else:
            counts = per_class_counts(card, scale)[split]
            labels = [c for c, n in enumerate(counts) for _ in range(n)]
        rows = []
        for i, label in enumerate(labels):
            rng = rng_for(seed, card, s_idx, i)
            images = motifs.classification_images(card, names, label, rng, size)
            stem = f"synth_{split}_{i:05d}"
            if card.multilabel:
                feature = str([names[j] for j in label])
                rows.append(ClassificationRecord(split, f"{stem}.{ext}", feature, tuple(label),
                                                 (encode(images[0], ext),)))
            elif card.image_pair:
                rows.append(ClassificationRecord(split, f"before/{stem}.{ext}",
                                                 _folder_name(names[label]), label,
                                                 tuple(encode(im, ext) for im in images)))
            else:
                rows.append(ClassificationRecord(split, f"{stem}.{ext}", _folder_name(names[label]),
                                                 label, (encode(images[0], ext),)))
        out[split] = rows
    return out


def _multilabel_sets(card: DatasetCard, count: int, rng: np.random.Generator) -> list[list[int]]:
    """Image ``i`` holds labels ``i mod K`` and ``(7 i + 3) mod K`` plus 0-1 random others.

    Both cycles visit every label, so with ``count >= K`` each label occurs at least once per
    cycle (twice for most labels), which lets the 1- and 2-shot sets exist.
    """
    k = card.num_classes
    sets = []
    for i in range(count):
        extra = rng.choice(k, int(rng.integers(0, 2)), replace=False)
        sets.append(sorted({i % k, (7 * i + 3) % k, *(int(e) for e in extra)}))
    return sets


def _segmentation(card: DatasetCard, size: int, ext: str, seed: int,
                  scale: float) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    running = 0  # MMLS ids run across splits, as ``Image<id>.tif`` / ``Mask<id>.tif``
    for s_idx, split in enumerate(SPLITS):
        rows = []
        for i in range(per_split_counts(card, scale)[split]):
            image, mask = motifs.segmentation_pair(card, rng_for(seed, card, s_idx, i), size)
            running += 1
            if card.bands == 7:
                image_name, mask_name = f"Image{running}.tif", f"Mask{running}.tif"
                mask_bytes = encode(mask, "tif")
            else:
                stem = f"synth_{split}_{i:05d}"
                image_name, mask_name = f"{stem}.{ext}", f"{stem}.png"
                mask_bytes = encode(mask, "png")
            rows.append(SegmentationRecord(split, image_name, mask_name, encode(image, ext),
                                           mask_bytes, image, mask))
        out[split] = rows
    return out


def _detection(card: DatasetCard, size: int, ext: str, seed: int,
               scale: float) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for s_idx, split in enumerate(SPLITS):
        n = per_split_counts(card, scale)[split]
        rows = []
        for i in range(n):
            negative = i == n - 1 or i % 5 == 4  # the last image of every split is a negative
            image, boxes, classes = motifs.detection_scene(card, rng_for(seed, card, s_idx, i),
                                                           size, negative)
            rows.append(DetectionRecord(split, f"synth_{split}_{i:05d}.{ext}", encode(image, ext),
                                        size, size, boxes, classes))
        out[split] = rows
    return out


def build(card: DatasetCard, seed: int = 0, scale: float = 1.0) -> SyntheticDataset:
    """Draw every image of the synthetic twin of ``card`` and choose its variant subsets."""
    names = synthetic_class_names(card)
    size, ext = synthetic_image_size(card), file_extension(card)
    if card.task is Task.CLASSIFICATION:
        records = _classification(card, names, size, ext, seed, scale)
    elif card.task is Task.SEGMENTATION:
        records = _segmentation(card, size, ext, seed, scale)
    else:
        records = _detection(card, size, ext, seed, scale)
    variants = plan_variants(card, [r.labelset for r in records["train"]], seed)
    return SyntheticDataset(card, names, size, ext, seed, scale, records, variants)

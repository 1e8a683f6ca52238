"""What a synthetic dataset holds: class names, image size, file type, split counts, variants.

Everything here is a pure function of the card, the ``scale`` and the seed, so the same inputs
always give the same plan (and, downstream, byte-identical files).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from marsbench.catalog import DatasetCard, Task

SPLITS = ("train", "val", "test")

# Default counts at scale 1.0. Single-label classification: images per class and split, capped so
# that many-class sets (36-class surface_cls) stay small. Others: images per split.
PER_CLASS = {"train": 5, "val": 2, "test": 2}
PER_CLASS_BUDGET = {"train": 120, "val": 40, "test": 40}  # per split, over all classes
PER_SPLIT = {
    "multilabel": {"train": 40, "val": 25, "test": 25},  # val/test: every label occurs
    "segmentation": {"train": 8, "val": 3, "test": 3},
    "detection": {"train": 8, "val": 3, "test": 3},
}

# File types mirror the real sets where known (MSL browse JPGs are upper-case ``.JPG``).
EXTENSIONS = {
    "mb-landmark_cls": "jpg",
    "mb-domars16k": "jpg",
    "mb-surface_cls": "JPG",
    "mb-mars_seg_msl": "jpg",
    "mb-s5mars": "jpg",
    "mb-mmls": "tif",
    "mb-boulder_det": "jpg",
    "mb-conequest_det": "jpg",
    "mb-dust_devil_det": "jpg",
}


def synthetic_class_names(card: DatasetCard) -> list[str]:
    """The card's names, else its known names with ``synthetic_class_<i>`` for the unknown ids."""
    if card.class_names:
        return list(card.class_names)
    return [card.known_class_names.get(i, f"synthetic_class_{i}") for i in range(card.num_classes)]


def synthetic_image_size(card: DatasetCard) -> int:
    """Side in pixels: 32-64 (classification), 64 (segmentation; MMLS 32), 96-128 (detection)."""
    if card.task is Task.SEGMENTATION:
        return 32 if card.bands == 7 else 64
    if card.task is Task.DETECTION:
        return 96 if card.image_size <= 512 else 128
    return int(min(64, max(32, 8 * round(card.image_size / 4 / 8))))


def file_extension(card: DatasetCard) -> str:
    return EXTENSIONS.get(card.name, "png")


def stable_id(text: str) -> int:
    """A process-independent integer for ``text`` (Python's ``hash`` is salted per process)."""
    return zlib.crc32(text.encode())


def rng_for(seed: int, card: DatasetCard, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, stable_id(card.name), *parts])


def _scaled(base: int, scale: float, minimum: int, cap: int) -> int:
    return int(max(minimum, min(cap, round(base * scale))))


def per_class_counts(card: DatasetCard, scale: float) -> dict[str, list[int]]:
    """Single-label classification: images per class in each split (never above the real set)."""
    k = card.num_classes
    out = {}
    for split in SPLITS:
        base = min(PER_CLASS[split], max(1, PER_CLASS_BUDGET[split] // k))
        real_cap = max(1, card.split_sizes[split] // k)
        minimum = 2 if split == "train" else 1
        out[split] = [_scaled(base, scale, minimum, max(minimum, real_cap))] * k
    return out


def per_split_counts(card: DatasetCard, scale: float) -> dict[str, int]:
    """Multi-label, segmentation and detection: images per split (never above the real set)."""
    group = "multilabel" if card.multilabel else str(card.task)
    return {
        split: _scaled(PER_SPLIT[group][split], scale, 2 if split == "train" else 1,
                       card.split_sizes[split])
        for split in SPLITS
    }


@dataclass(frozen=True)
class Variants:
    """Row indices into the synthetic train split for each few-shot ``k`` and partition ``p``."""

    few_shot: dict[int, list[int]]
    partitions: dict[float, list[int]]


def few_shot_indices(labelsets: list[tuple[int, ...]], k: int, num_classes: int,
                     rng: np.random.Generator) -> list[int] | None:
    """``k`` train images per class (per label for multi-label); None where a class has fewer.

    Multi-label: labels are visited in order and images holding a label are added until it has
    ``k``; an image counts for every label it holds, so the set has at most ``k * num_classes``.
    """
    counts = np.zeros(num_classes, int)
    for labels in labelsets:
        counts[list(labels)] += 1
    if counts.min() < k:
        return None
    order = rng.permutation(len(labelsets))
    chosen: list[int] = []
    have = np.zeros(num_classes, int)
    for label in range(num_classes):
        for idx in order:
            if have[label] >= k:
                break
            if label in labelsets[idx] and idx not in chosen:
                chosen.append(int(idx))
                have[list(labelsets[idx])] += 1
    return sorted(chosen)


def partition_indices(labelsets: list[tuple[int, ...]], fraction: float, single_label: bool,
                      rng: np.random.Generator) -> list[int]:
    """A stratified ``fraction`` of the train split.

    Single-label: ``max(1, round(p * n_c))`` images of each class ``c``. Otherwise
    ``max(1, round(p * n))`` images: first greedily one per class still missing (while the budget
    lasts), then random ones.
    """
    order = [int(i) for i in rng.permutation(len(labelsets))]
    if single_label:
        chosen = []
        for label in sorted({ls[0] for ls in labelsets}):
            members = [i for i in order if labelsets[i][0] == label]
            chosen += members[: max(1, round(fraction * len(members)))]
        return sorted(chosen)
    budget = max(1, round(fraction * len(labelsets)))
    chosen, covered = [], set()
    for idx in order:
        if len(chosen) < budget and set(labelsets[idx]) - covered:
            chosen.append(idx)
            covered |= set(labelsets[idx])
    for idx in order:
        if len(chosen) >= budget:
            break
        if idx not in chosen:
            chosen.append(idx)
    return sorted(chosen)


def plan_variants(card: DatasetCard, labelsets: list[tuple[int, ...]], seed: int) -> Variants:
    """Few-shot sets for the card's ``k`` that fit the synthetic train split, and all partitions."""
    few_shot = {}
    for k in card.few_shot:
        chosen = few_shot_indices(labelsets, k, card.num_classes, rng_for(seed, card, 100, k))
        if chosen is not None:
            few_shot[k] = chosen
    single = card.task is Task.CLASSIFICATION and not card.multilabel
    partitions = {
        p: partition_indices(labelsets, p, single, rng_for(seed, card, 200, math.floor(p * 100)))
        for p in card.partitions
    }
    return Variants(few_shot, partitions)

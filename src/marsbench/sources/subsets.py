"""Draw our own few-shot / partition subsets where a dataset publishes none, reproducibly.

The draw is stratified by class (classification), uses an explicit seed, and its ids are saved
as ``marsbench_subsets/<variant>_seed<seed>.csv`` next to the data (or, when that folder is
read-only, under the marsbench cache), so the same subset is read back on every later run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog import DatasetCard, Task, Variant
from ..io import atomic_path
from .errors import DataError


def subset_file(card: DatasetCard, location: Path, variant: Variant, seed: int) -> Path:
    stem = variant.folder_csv.replace("/", "_").removesuffix(".csv")
    name = f"marsbench_subsets/{stem}_seed{seed}.csv"
    if os.access(location, os.W_OK):
        return location / name
    from .cache import data_root

    return data_root() / "subsets" / card.name / name


def draw(targets: list, ids: list[str], variant: Variant, seed: int, multilabel: bool) -> list[str]:
    """Few-shot: k per class (per label for multi-label); partition: a fraction p per class."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    if not targets:  # segmentation / detection: no per-image class, plain random draw
        n = max(1, round(float(variant.value) * len(ids)))
        return [ids[i] for i in sorted(order[:n])]
    if multilabel:
        matrix = np.stack([np.asarray(t) for t in targets])
        chosen: list[int] = []
        counts = np.zeros(matrix.shape[1], dtype=int)
        goal = (np.full(matrix.shape[1], int(variant.value)) if variant.kind == "few_shot"
                else np.maximum(1, np.round(matrix.sum(0) * float(variant.value))).astype(int))
        for i in order:  # greedy: take an image when it helps a label still short of its goal
            if (matrix[i] & (counts < goal)).any():
                chosen.append(int(i))
                counts += matrix[i]
        return [ids[i] for i in sorted(chosen)]
    labels = np.asarray(targets)
    chosen = []
    for c in np.unique(labels):
        members = [i for i in order if labels[i] == c]
        n = (int(variant.value) if variant.kind == "few_shot"
             else max(1, round(float(variant.value) * len(members))))
        chosen += members[:n]
    return [ids[i] for i in sorted(chosen)]


def subset_ids(card: DatasetCard, location: Path, variant: Variant, seed: int,
               options: dict) -> list[str] | None:
    """The recorded subset's ids; None when the dataset publishes the variant itself."""
    if (location / variant.folder_csv).is_file():
        return None
    if variant.kind == "few_shot" and card.task is not Task.CLASSIFICATION:
        raise DataError("few-shot variants exist for classification only", dataset=card.name)
    path = subset_file(card, location, variant, seed)
    if path.is_file():
        from .folder import _read_csv

        ids = _read_csv(path, {"file_id"}, card.name, path.parent)["file_id"].tolist()
        if not ids:
            raise DataError("recorded subset file is empty", dataset=card.name, path=path,
                            fix="delete it to draw the subset again")
        return ids
    from .folder import read_folder

    full = read_folder(card, location, "train", Variant(), **options)
    ids = draw(full.targets or [], full.sample_ids, variant, seed, card.multilabel)
    if len(ids) == len(full.sample_ids):  # a subset that is the whole split is not a variant
        fix = (f"use k below the largest class's {max(_class_sizes(full))} images"
               if variant.kind == "few_shot" and full.targets else "use a smaller variant")
        raise DataError(f"{variant} takes every one of the {len(ids)} training images, so its "
                        f"runs would be full-data runs under another name", dataset=card.name,
                        fix=fix)
    with atomic_path(path) as tmp:  # unique temporary name: concurrent runs draw it at once
        pd.DataFrame({"file_id": ids, "split": "train"}).to_csv(tmp, index=False)
    return ids


def _class_sizes(data) -> list[int]:
    """Training images per class (per label for multi-label targets)."""
    targets = np.asarray(data.targets)
    if targets.ndim == 2:
        return [int(n) for n in targets.sum(0)]
    return [int(n) for n in np.unique(targets, return_counts=True)[1]]

"""The data a run reads: its three splits, opened once from the spec (torch-free)."""

from __future__ import annotations

from .spec import RunSpec


def open_splits(spec: RunSpec) -> dict:
    """``{"train", "val", "test"} -> MarsDataset`` as ``spec`` reads them (its variant, subset
    seed and, for detection, its annotation format and negatives policy)."""
    from ..sources import SPLITS, open_dataset

    kwargs = {}
    if spec.task == "detection":
        kwargs = dict(annotation_format=spec.options.annotation_format,
                      drop_negatives=spec.options.drop_negatives)
    return {split: open_dataset(spec.dataset, split, root=spec.data_root, source=spec.source,
                                variant=spec.variant, subset_seed=spec.subset_seed, **kwargs)
            for split in SPLITS}


def data_location(spec: RunSpec) -> tuple[str, str]:
    """(source, location) the spec's data is read from: a local folder or a hub repo id."""
    from ..sources.open import resolve

    _, source, location = resolve(spec.dataset, root=spec.data_root, source=spec.source)
    return source, location

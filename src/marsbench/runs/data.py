"""The data a run reads: its three splits, opened once from the spec (torch-free)."""

from __future__ import annotations

from .spec import RunSpec


def open_splits(spec: RunSpec) -> dict:
    """``{"train", "val", "test"} -> MarsDataset`` as ``spec`` reads them (its variant, subset
    seed, split scheme and, for detection, its annotation format and negatives policy)."""
    from ..sources import SPLITS, open_dataset
    from ..sources.splits import parse_scheme, redraw_splits

    kwargs = {}
    if spec.task == "detection":
        kwargs = dict(annotation_format=spec.options.annotation_format,
                      drop_negatives=spec.options.drop_negatives)
    scheme = parse_scheme(spec.split)
    variant = spec.variant if scheme.official else "full"  # re-drawn first, then subset
    splits = {split: open_dataset(spec.dataset, split, root=spec.data_root, source=spec.source,
                                  variant=variant, subset_seed=spec.subset_seed, **kwargs)
              for split in SPLITS}
    return splits if scheme.official else redraw_splits(splits, scheme, spec.subset_seed,
                                                        spec.variant)


def split_record(splits: dict) -> dict:
    """``{"split": counts}`` for a run's ``extra`` when its splits were re-drawn, else {}."""
    from ..sources.splits import scheme_summary

    summary = scheme_summary(splits)
    return {} if summary is None else {"split": summary}


def data_location(spec: RunSpec) -> tuple[str, str]:
    """(source, location) the spec's data is read from: a local folder or a hub repo id."""
    from ..sources.open import resolve

    _, source, location = resolve(spec.dataset, root=spec.data_root, source=spec.source)
    return source, location

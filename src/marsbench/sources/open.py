"""`open_dataset`: the one entry point from a name, a folder or a hub repo to a `MarsDataset`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..catalog import DatasetCard, Platform, Task, TaskKind, UnknownDatasetError, Variant, get_card
from ..vocab import DATA_SOURCES
from ..errors import OptionError, did_you_mean
from .dataset import SPLITS, MarsDataset
from .errors import DataError
from .folder import read_folder
from .hf import read_hf
from .samples import Sample



def detect_layout(path: Path) -> str | None:
    """``"folder"`` (Zenodo layout), ``"hf"`` (parquet shards) or None."""
    if (path / "data").is_dir() and any((path / "data").glob("*.parquet")):
        return "hf"  # an HF repo may also carry annotation.csv at its root
    if (path / "annotation.csv").is_file() or any((path / "data" / s / "images").is_dir()
                                                   for s in SPLITS):
        return "folder"
    return None


def infer_card(path: Path) -> DatasetCard:
    """A card for a user's own dataset in the Mars-Bench folder layout, read off the folder.

    The task comes from the layout (annotation.csv: classification; masks/: segmentation;
    labels/ or COCO/VOC files: detection); classes from mapping.json or the COCO categories.
    """
    import pandas as pd

    from .classnames import names_from_mapping, read_mapping_file
    from .folder import _read_csv

    mapping = read_mapping_file(path / "mapping.json", root=path, dataset=path.name)
    names = (names_from_mapping(mapping[0], ignore=mapping[1], path=f"{path.name}/mapping.json")
             if mapping else [])
    ignore = mapping[1] if mapping else None
    split_dirs = [path / "data" / s for s in SPLITS]
    sizes: dict[str, int] = {}
    if (path / "annotation.csv").is_file():
        task = Task.CLASSIFICATION
        df = _read_csv(path / "annotation.csv", {"file_id", "label", "split"}, path.name, path)
        sizes = {s: int((df.get("split") == s).sum()) for s in SPLITS}
        labels = df.get("label", pd.Series(dtype=str))
        if labels.str.startswith("[").any():
            kind = TaskKind.MULTILABEL
        elif df.get("file_id", pd.Series(dtype=str)).str.contains("before").any():
            kind = TaskKind.IMAGE_PAIR
        else:
            kind = TaskKind.BINARY if len(names) == 2 else TaskKind.MULTICLASS
    elif any((d / "masks").is_dir() for d in split_dirs):
        task = Task.SEGMENTATION
        kind = TaskKind.BINARY if len(names) == 2 else TaskKind.MULTICLASS
    elif any((d / "labels").is_dir() or (d / "pascal_voc").is_dir()
             or (d / "coco_annotations.json").is_file() for d in split_dirs):
        task = Task.DETECTION
        kind = TaskKind.MULTICLASS
        coco = next((d / "coco_annotations.json" for d in split_dirs
                     if (d / "coco_annotations.json").is_file()), None)
        if coco and not names:
            from .detection_formats import CocoIndex

            cats = CocoIndex(coco, root=path).categories
            names = [cats[k] for k in sorted(cats)]
    else:
        raise DataError("not a Mars-Bench folder: no annotation.csv, data/<split>/masks, "
                        "labels, pascal_voc or coco_annotations.json", path=path,
                        fix="see the folder layout in docs/datasets.md")
    if task is not Task.CLASSIFICATION:
        sizes = {s: len([p for p in (d / "images").glob("*") if p.is_file()])
                 for s, d in zip(SPLITS, split_dirs) if (d / "images").is_dir()}
    return DatasetCard(
        name=path.name, task=task, kind=kind, platform=Platform.UNKNOWN,
        mission="unknown (user dataset)", instrument="unknown", image_size=0, bands=0,
        num_classes=len(names), split_sizes=sizes, class_names=tuple(names) or None,
        headline_metric={Task.CLASSIFICATION: "f1_weighted", Task.SEGMENTATION: "iou_reference",
                         Task.DETECTION: "map_50_95"}[task],
        ignore_index=ignore, license="see the dataset's own PROVENANCE/licence",
        notes=f"user dataset read from {path}")


def local_folder(name_or_path: str | Path, root: str | Path | None) -> Path | None:
    """The dataset folder ``name_or_path`` names, or None (a catalog name whose copy the data
    root holds, a hub id, nothing there). A relative path is read under ``root`` when one is
    given, never from the working directory, which may hold another folder of the same name
    (reading it would silently train on other data); a bare catalog name with ``root`` is left
    to the catalog flow, which finds its copy there by layout. Without ``root`` a relative path
    is the working directory's; a bare catalog name there is refused where the data root holds
    a copy too, since nothing says which one is meant."""
    path = Path(name_or_path).expanduser()
    catalog = None
    if not path.is_absolute() and str(name_or_path) == path.name:
        try:
            catalog = get_card(path.name).name
        except UnknownDatasetError:
            pass
    if root is not None and not path.is_absolute():
        if catalog is not None:
            return None
        path = Path(root).expanduser() / path
    if not path.is_dir():
        return None
    if catalog is not None:
        from .cache import find_copies

        others = [c for c in find_copies(catalog).values() if c.resolve() != path.resolve()]
        if others:
            raise DataError("two copies answer to this name", dataset=path.name,
                            value=f"{path.resolve()} (the working directory) and {others[0]}",
                            fix=f"name the one you mean: ./{path.name}, or --root with the "
                                "data root")
    return path


def resolve(name_or_path: str | Path, *, root: str | Path | None = None,
            source: str = "auto") -> tuple[DatasetCard, str, str]:
    """(card, source, location) for a catalog name, a local folder, or a hub repo id."""
    if source not in DATA_SOURCES:
        raise OptionError("unknown data source", where="source", value=source,
                          fix=did_you_mean(source, DATA_SOURCES))
    path = local_folder(name_or_path, root)
    if path is not None:
        layout = detect_layout(path)
        if layout is None:
            raise DataError("no Mars-Bench folder or Hugging Face layout found", path=path)
        try:
            card = get_card(path.name)
        except UnknownDatasetError:
            card = infer_card(path) if layout == "folder" else _hf_user_card(path)
        if is_synthetic(path):
            card = dataclasses.replace(card, synthetic=True,
                                       notes="SYNTHETIC copy written by marsbench.sources.synth")
        return card, (layout if source == "auto" else source), str(path)
    name = str(name_or_path)
    if "/" in name and source in ("auto", "hf"):  # a hub repo id such as Mirali33/mb-domars16k
        return get_card(name.split("/")[-1]), "hf", name
    try:
        card = get_card(name)
    except UnknownDatasetError:
        if root is not None and (Path(root) / name).is_dir():  # a folder of one's own
            return resolve(Path(root) / name, source=source)
        raise
    from .cache import data_root, find_copies

    # by layout: <root>/<name> holds either (a Zenodo folder or an HF repo copy put there),
    # <root>/hf/<name> an HF copy
    present = find_copies(card.name, root)
    if source == "auto":
        for candidate in ("folder", "hf"):
            if candidate in present:  # read as a folder: a synthetic copy says so on its card
                return resolve(present[candidate], source=candidate)
        base = data_root(root)
        raise DataError(
            "not present locally", dataset=card.name,
            value=f"neither {base / card.name} nor {base / 'hf' / card.name} holds it",
            fix=f"run `marsbench datasets download {card.name}` (or pass --root DIR holding "
                f"{card.name}/ or hf/{card.name}/), or use source='hf' to read {card.hf_repo} "
                "from the hub")
    if source in present:
        return resolve(present[source], source=source)
    if source == "hf":
        return card, "hf", card.hf_repo
    other = (f"; the copy in the Hugging Face layout at {present['hf']} is read with "
             "--source auto or hf") if "hf" in present else ""
    raise DataError("no local copy in the folder layout", dataset=card.name,
                    fix=f"run `marsbench datasets download {card.name} --source zenodo`{other}")


def is_synthetic(path: Path) -> bool:
    """Folders written by the synthetic generator say so (SYNTHETIC.md, or the HF README)."""
    if (path / "SYNTHETIC.md").is_file():
        return True
    readme = path / "README.md"
    if not readme.is_file() or readme.resolve().parent != path.resolve():
        return False  # a README linked from outside the dataset is not read
    with open(readme, "rb") as f:
        return b"SYNTHETIC" in f.read(4000)


def _hf_user_card(path: Path) -> DatasetCard:
    raise DataError("a Hugging Face layout folder must be named after a Mars-Bench dataset",
                    path=path, fix="rename the folder to the dataset name, e.g. mb-domars16k")


def open_dataset(name_or_path: str | Path, split: str = "train", *,
                 root: str | Path | None = None, source: str = "auto",
                 variant: str | Variant | None = None, annotation_format: str = "voc",
                 drop_negatives: bool = False, ignore_index: int | None = None,
                 subset_seed: int | None = None,
                 transform: Callable[[Sample], Any] | None = None) -> MarsDataset:
    """Open one split of a dataset as a lazy sequence of canonical samples.

    ``name_or_path``: a catalog name (looked up under ``root``), a folder in the Zenodo or HF
    layout (a user's own data included), or a hub repo id. ``variant``: ``full``,
    ``few_shot:<k>`` or ``partition:<p>`` (only the train split changes). Where the dataset
    lacks the variant's files, ``subset_seed`` draws a recorded stratified subset instead
    (saved next to the data). Detection: ``annotation_format`` voc (as the reference), coco or
    yolo; negatives (images without boxes) are kept unless ``drop_negatives``.
    ``transform``: a callable taking the canonical sample; ``ds[i]`` is then what it returns
    (e.g. `marsbench.to_tensors`, tensors a ``torch.utils.data.DataLoader`` batches).
    """
    if transform is not None and not callable(transform):
        raise OptionError("transform must be callable", where="transform",
                          value=type(transform).__name__,
                          fix="pass a function taking the sample, e.g. marsbench.to_tensors")
    if split not in SPLITS:
        raise OptionError("unknown split", where="split", value=split,
                          fix=did_you_mean(split, SPLITS))
    from .folder import ANNOTATION_FORMATS

    if annotation_format not in ANNOTATION_FORMATS:
        raise OptionError("unknown annotation_format", where="annotation_format",
                          value=annotation_format,
                          fix=did_you_mean(annotation_format, ANNOTATION_FORMATS))
    card, src, location = resolve(name_or_path, root=root, source=source)
    variant = Variant.parse(variant)
    options = dict(annotation_format=annotation_format, drop_negatives=drop_negatives,
                   ignore_index=ignore_index)
    if subset_seed is not None and split == "train" and not variant.is_full:
        from .subsets import subset_ids

        if src != "folder":
            raise DataError("recorded subsets are supported for the folder layout only",
                            dataset=card.name)
        ids = subset_ids(card, Path(location), variant, subset_seed, options)
        dataset = read_folder(card, Path(location), split, variant, subset_ids=ids, **options)
    elif src == "folder":
        dataset = read_folder(card, Path(location), split, variant, **options)
    else:
        dataset = read_hf(card, location, split, variant, **options)
    dataset.transform = transform
    return dataset

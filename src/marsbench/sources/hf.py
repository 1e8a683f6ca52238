"""Reader for the Hugging Face layout, through the real `datasets` / `huggingface_hub` libraries.

A repo holds ``data/<split>-0000i-of-0000n.parquet`` shards written by ``push_to_hub`` and a
``mapping.json``; its card may lack the ``configs`` YAML, so splits are found from shard names.
The source is a hub repo id (``Mirali33/mb-domars16k``; public data needs no login) or a local
directory holding the same files. Rows are decoded on access from the memory-mapped Arrow table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..catalog import DatasetCard, Task, TaskKind, Variant
from .classnames import names_from_mapping, parse_mapping, reconcile
from .content_hash import named_digests
from .dataset import MarsDataset
from .errors import DataError, VariantUnavailableError
from .folder import validate_boxes, validate_mask
from .images import decode_image, decode_mask
from .samples import ClassificationSample, DetectionSample, SegmentationSample

SHARD = re.compile(r"(?:^|/)data/(?P<split>[^/]+?)-\d{5}-of-\d{5}(?:-[0-9a-f]+)?\.parquet$")
PAIR_COLUMNS = (("image_before", "image_after"), ("before", "after"), ("image1", "image2"))


def list_shards(location: str) -> tuple[dict[str, list[str]], dict | None]:
    """Parquet shards per split and the parsed ``mapping.json`` (or None), local or on the hub."""
    path = Path(location)
    if path.is_dir():
        files = [p.relative_to(path).as_posix() for p in path.rglob("*.parquet")]
        prefix = str(path) + "/"
        mapping_path = path / "mapping.json"
        mapping = json.loads(mapping_path.read_text()) if mapping_path.is_file() else None
    else:
        from huggingface_hub import hf_hub_download, list_repo_files

        try:
            files = list_repo_files(location, repo_type="dataset")
        except Exception as exc:  # offline, unknown repo: say what to do
            raise DataError(
                f"cannot list the Hugging Face repo ({type(exc).__name__}: {exc})",
                dataset=location,
                fix=f"check the network, or download it first: `marsbench datasets download "
                    f"{location.split('/')[-1]} --source hf`, then pass --root") from None
        prefix = f"hf://datasets/{location}/"
        mapping = None
        if "mapping.json" in files:
            mapping = json.loads(Path(hf_hub_download(location, "mapping.json",
                                                      repo_type="dataset")).read_text())
    shards: dict[str, list[str]] = {}
    for f in sorted(files):
        m = SHARD.search(f)
        if m:
            shards.setdefault(m.group("split"), []).append(prefix + f)
    return shards, mapping


def _hf_split_name(card: DatasetCard, split: str, variant: Variant,
                   shards: dict[str, list[str]], location: str) -> str:
    if split != "train" or variant.is_full:
        candidates: tuple[str, ...] = (split, "validation") if split == "val" else (split,)
    else:
        candidates = variant.hf_splits
    for name in candidates:
        if name in shards:
            return name
    if split == "train" and not variant.is_full:
        raise VariantUnavailableError(
            f"variant {variant} is not in the repo (no split {' or '.join(candidates)})",
            dataset=card.name, path=location,
            fix=f"splits present: {', '.join(sorted(shards))}; published variants: "
                f"{', '.join(card.variants())}")
    raise DataError(f"split {split!r} not found; splits present: {', '.join(sorted(shards))}",
                    dataset=card.name, path=location)


def _load_arrow(files: list[str]):
    import datasets

    datasets.disable_progress_bars()
    ds = datasets.load_dataset("parquet", data_files={"split": files}, split="split")
    # Decode images ourselves so every reader returns the same (H, W, C) arrays.
    for column, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(column, datasets.Image(decode=False))
    return ds


def _rows(value) -> list[dict]:
    """A sequence of structs as ``datasets`` stores it (dict of lists) or as a list of dicts."""
    if not value:
        return []
    if isinstance(value, dict):
        keys = list(value)
        return [dict(zip(keys, items)) for items in zip(*(value[k] for k in keys))]
    return list(value)


def _decode_cell(cell, where: str) -> np.ndarray:
    """An Image cell ({bytes, path}) or an array feature (e.g. MMLS 7-band Array3D)."""
    if isinstance(cell, (list, np.ndarray)):
        array = np.asarray(cell)
        if array.dtype == np.float64:
            array = array.astype(np.float32)  # Arrow lists come back as Python floats
        return array[:, :, None] if array.ndim == 2 else array
    return decode_image(_image_bytes(cell, where), name=where)


def _image_bytes(cell: dict, where: str) -> bytes:
    if not cell or cell.get("bytes") is None:
        if cell and cell.get("path") and Path(cell["path"]).is_file():
            return Path(cell["path"]).read_bytes()
        raise DataError("image cell has no bytes", path=where)
    return cell["bytes"]


def _class_names(card: DatasetCard, ds, mapping: dict | None, notes: list[str]) -> tuple[list[str], int | None]:
    import datasets

    ignore = None
    label = ds.features.get("label")
    if isinstance(label, datasets.ClassLabel):
        names = list(label.names)
        return reconcile(card, names, None, notes), None
    if mapping:
        aliases, ignore = parse_mapping(mapping)
        return reconcile(card, names_from_mapping(aliases), aliases, notes), ignore
    if "feature_names" in ds.column_names and len(ds):
        return list(ds[0]["feature_names"]), None
    if card.class_names:
        return list(card.class_names), None
    raise DataError("the repo has no ClassLabel feature and no mapping.json",
                    dataset=card.name, fix="add mapping.json at the repo root")


def read_hf(card: DatasetCard, location: str, split: str, variant: Variant, *,
            annotation_format: str = "voc", drop_negatives: bool = False,
            ignore_index: int | None = None) -> MarsDataset:
    shards, mapping = list_shards(location)
    if not shards:
        raise DataError("no parquet shards named data/<split>-NNNNN-of-NNNNN.parquet",
                        dataset=card.name, path=location,
                        fix="point at a copy of the Hugging Face repo (or its id)")
    hf_split = _hf_split_name(card, split, variant, shards, location)
    ds = _load_arrow(shards[hf_split])
    notes: list[str] = []
    where = f"{location} [{hf_split}]"
    content = shard_content(location, shards[hf_split], with_mapping=mapping is not None)
    fingerprint = [f"format={annotation_format}"] if card.task is Task.DETECTION else []
    if card.task is Task.CLASSIFICATION:
        names, _ = _class_names(card, ds, mapping, notes)
        out = _classification(card, ds, split, variant, names, location, where, fingerprint, notes)
        out.content = content
        return out
    if card.task is Task.SEGMENTATION:
        names, mapped_ignore = _class_names(card, ds, mapping, notes)
        ignore = ignore_index if ignore_index is not None else (
            mapped_ignore if mapped_ignore is not None else card.ignore_index)
        num = len(names)

        def load_seg(i: int) -> SegmentationSample:
            row = ds[i]
            rid = f"{where} row {i}"
            image = _decode_cell(row["image"], rid)
            mask = decode_mask(_image_bytes(row["mask"], rid), name=rid + " mask")
            validate_mask(image, mask, num, ignore, rid)
            return SegmentationSample(ids[i], image, mask)

        ids = _row_ids(ds, split, skip=("mask",))
        out = MarsDataset(card, split, variant, names, ids, list(range(len(ds))), load_seg,
                          "hf", location, ignore_index=ignore, fingerprint_parts=fingerprint,
                          content=content, notes=notes)
        out.arrow = ds
        return out
    out = _detection(card, ds, split, variant, location, where, fingerprint, annotation_format,
                     drop_negatives)
    out.content = content
    return out


def shard_content(location: str, shards: list[str], *, with_mapping: bool):
    """Lazily, the content identity of the parquet shards a split reads (and mapping.json):
    in a local copy the digest of each file's bytes; on the hub the git object id the hub
    keeps for each file (content-addressed; it covers the LFS sha256). Names relative to the
    repo root, never a path or an Arrow cache fingerprint."""
    folder = Path(location)
    if folder.is_dir():
        files = [*shards, *([folder / "mapping.json"] if with_mapping else [])]
        return lambda: named_digests(folder, files)
    prefix = f"hf://datasets/{location}/"
    rels = [s.removeprefix(prefix) for s in shards] + (["mapping.json"] if with_mapping else [])

    def hub() -> list[str]:
        from huggingface_hub import HfApi

        infos = {i.path: i for i in HfApi().get_paths_info(location, rels, repo_type="dataset")}
        missing = [r for r in rels if getattr(infos.get(r), "blob_id", None) is None]
        if missing:
            raise DataError("the hub lists no content id for a data file", dataset=location,
                            path=missing[0], fix="check the repo id and the network")
        return [f"{r}\0hub:{infos[r].blob_id}" for r in rels]

    return hub


def _row_id(row: dict, i: int, split: str) -> str:
    """The image's file name where the repo kept it, else ``<split>-<row or image_id>``.

    Row numbers and ``image_id`` restart in every split, so they are prefixed with the split.
    """
    for key in ("file_id", "file_name"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    for key in ("image", "image_before"):
        cell = row.get(key)
        if isinstance(cell, dict) and cell.get("path"):
            return Path(cell["path"]).stem
    voc = row.get("pascal_voc_annotation")
    if isinstance(voc, dict) and voc.get("filename"):
        return Path(voc["filename"]).stem
    if row.get("image_id") not in (None, ""):
        return f"{split}-{row['image_id']}"
    return f"{split}-{i}"


def _row_ids(ds, split: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Ids of every row, read column-wise from Arrow without touching image bytes."""
    import datasets

    image_cols = [c for c, f in ds.features.items() if isinstance(f, datasets.Image)]
    light = [c for c in ds.column_names if c not in skip and c not in image_cols
             and not isinstance(ds.features[c], (datasets.Array3D, datasets.Array2D))]
    columns = ds.select_columns(light).to_dict() if light else {}
    for c in image_cols[:1]:
        columns[c] = [{"path": p} for p in ds.data.column(c).combine_chunks().field("path").to_pylist()]
    rows = [{k: v[i] for k, v in columns.items()} for i in range(len(ds))]
    return [_row_id(row, i, split) for i, row in enumerate(rows)]


def content_hashes(data: MarsDataset) -> list[str]:
    """sha1 of each row's raw image bytes: finds duplicates and leaks whatever the ids say."""
    import hashlib

    ds = data.arrow
    column = next(c for c in ("image", "image_before") if c in ds.column_names)
    out = []
    for i in data.entries:
        cell = ds[i][column]
        raw = cell["bytes"] if isinstance(cell, dict) else np.asarray(cell).tobytes()
        out.append(hashlib.sha1(raw or b"").hexdigest())
    return out


def _classification(card, ds, split, variant, names, location, where, fingerprint, notes):
    num = len(names)
    pair_cols = next((c for c in PAIR_COLUMNS if set(c) <= set(ds.column_names)), None)
    if card.kind is TaskKind.IMAGE_PAIR and pair_cols is None:
        raise DataError(f"image-pair dataset but no before/after columns in {ds.column_names}",
                        dataset=card.name, path=location)
    image_cols = pair_cols if card.kind is TaskKind.IMAGE_PAIR else ("image",)
    multilabel = card.kind is TaskKind.MULTILABEL
    label_col = "labels" if multilabel else "label"
    if label_col not in ds.column_names:
        raise DataError(f"no {label_col!r} column; has {ds.column_names}", dataset=card.name,
                        path=location)
    raw_targets = ds[label_col]
    targets = []
    for i, value in enumerate(raw_targets):
        if multilabel:
            vec = np.asarray(value, dtype=np.int8)
            if vec.shape != (num,) or not np.isin(vec, (0, 1)).all():
                raise DataError(f"row {i}: 'labels' must be a multi-hot vector of length {num}",
                                dataset=card.name, path=where)
            targets.append(vec)
        else:
            if not 0 <= int(value) < num:
                raise DataError(f"row {i}: label {value} out of range 0..{num - 1}",
                                dataset=card.name, path=where)
            targets.append(int(value))
    ids = _row_ids(ds, split, skip=(label_col,))

    def load(i: int) -> ClassificationSample:
        row = ds[i]
        rid = f"{where} row {i}"
        images = tuple(_decode_cell(row[c], rid) for c in image_cols)
        return ClassificationSample(ids[i], images, targets[i])

    out = MarsDataset(card, split, variant, names, ids, list(range(len(ds))), load, "hf",
                      location, fingerprint_parts=fingerprint, notes=notes, targets=targets)
    out.arrow = ds
    return out


def _detection(card, ds, split, variant, location, where, fingerprint, fmt, drop_negatives):
    names = list(card.class_names or ["object"])
    class_ids = {n.lower(): i + 1 for i, n in enumerate(names)}

    def boxes_of(row: dict, width: int, height: int):
        boxes, labels = [], []
        if fmt == "coco":
            for ann in _rows((row.get("coco_annotation") or {}).get("annotations")):
                x, y, w, h = ann["bbox"]
                boxes.append([x, y, x + w, y + h]); labels.append(int(ann["category_id"]))
        elif fmt == "yolo":
            ann = row.get("yolo_annotation") or {}
            for (cx, cy, w, h), cat in zip(ann.get("bbox") or [], ann.get("category") or []):
                boxes.append([(cx - w / 2) * width, (cy - h / 2) * height,
                              (cx + w / 2) * width, (cy + h / 2) * height])
                labels.append(_category_id(cat, class_ids, where))
        else:
            for obj in _rows((row.get("pascal_voc_annotation") or {}).get("objects")):
                bb = obj["bbox"]
                boxes.append([bb["xmin"], bb["ymin"], bb["xmax"], bb["ymax"]])
                labels.append(_category_id(obj["name"], class_ids, where))
        return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                np.asarray(labels, dtype=np.int64))

    annotation_cols = [c for c in ds.column_names if c != "image"]
    meta = ds.select_columns(annotation_cols)
    indices = list(range(len(ds)))
    if drop_negatives:
        indices = [i for i in indices
                   if len(boxes_of(meta[i], meta[i].get("width") or 1, meta[i].get("height") or 1)[0])]
    all_ids = _row_ids(ds, split)
    ids = [all_ids[i] for i in indices]

    def load(i: int) -> DetectionSample:
        row = ds[i]
        rid = f"{where} row {i}"
        image = _decode_cell(row["image"], rid)
        h, w = image.shape[:2]
        boxes, labels = boxes_of(row, w, h)
        validate_boxes(boxes, labels, w, h, len(names), rid)
        return DetectionSample(all_ids[i], image, boxes, labels)

    out = MarsDataset(card, split, variant, names, ids, indices, load, "hf", location,
                      fingerprint_parts=fingerprint)
    out.arrow = ds
    return out


def _category_id(category, class_ids: dict[str, int], where: str) -> int:
    if isinstance(category, int):
        return category + 1
    key = str(category).lower()
    if key.isdigit():
        return int(key) + 1
    if key not in class_ids:
        raise DataError(f"unknown category {category!r}; known: {sorted(class_ids)}", path=where)
    return class_ids[key]

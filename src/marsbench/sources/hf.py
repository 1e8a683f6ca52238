"""Reader for the Hugging Face layout, through the real `datasets` / `huggingface_hub` libraries.

A repo holds ``data/<split>-0000i-of-0000n.parquet`` shards written by ``push_to_hub`` and a
``mapping.json``; its card may lack the ``configs`` YAML, so splits are found from shard names.
The source is a hub repo id (``Mirali33/mb-domars16k``; public data needs no login) or a local
directory holding the same files. Rows are decoded on access from the memory-mapped Arrow table.
"""

from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path

import numpy as np

from ..catalog import DatasetCard, Task, TaskKind, Variant
from ..errors import OptionError
from .classnames import load_json, names_from_mapping, parse_mapping, reconcile
from .content_hash import named_digests
from .dataset import MarsDataset
from .errors import DataError, VariantUnavailableError
from .images import (MIN_IMAGE_SIDE, classification_image, decode_image, decode_mask,
                     max_image_pixels)
from .paths import Guard, contained, decode_text, display, read_text
from .samples import ClassificationSample, DetectionSample, SegmentationSample
from .validate import (box_numbers, class_label, first_repeat, multihot, parse_class_id,
                       validate_boxes, validate_mask)

SHARD = re.compile(r"(?:^|/)data/(?P<split>[^/]+?)-\d{5}-of-\d{5}(?:-[0-9a-f]+)?\.parquet$")
PAIR_COLUMNS = (("image_before", "image_after"), ("before", "after"), ("image1", "image2"))
HUB_OFFLINE_ENV = "HF_HUB_OFFLINE"
MARSBENCH_OFFLINE_ENV = "MARSBENCH_OFFLINE"
HUB_PROBE_TIMEOUT_ENV = "MARSBENCH_HUB_TIMEOUT"
HUB_PROBE_TIMEOUT_S = 2.0  # one HEAD request; the library's own retries take minutes offline
_TRUE = {"1", "true", "yes", "on"}
_probed: dict[str, str | None] = {}  # endpoint -> why it cannot be reached (None: it can)
_probe_lock = threading.Lock()


# ---- is the Hub reachable? (once per process) ------------------------------------------------


def hub_endpoint() -> str:
    """The Hub's URL: ``$HF_ENDPOINT`` (read now, so a change after import counts) or the
    library's default."""
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    return endpoint.rstrip("/")


def hub_offline_setting() -> str | None:
    """``"HF_HUB_OFFLINE=1"`` or ``"MARSBENCH_OFFLINE=1"`` where one is set (no network may be
    tried at all), else None."""
    import sys

    hub = os.environ.get(HUB_OFFLINE_ENV, "").strip().lower() in _TRUE
    constants = sys.modules.get("huggingface_hub.constants")  # the value it read at import
    if hub or (constants is not None and getattr(constants, "HF_HUB_OFFLINE", False)):
        return f"{HUB_OFFLINE_ENV}=1 is set"
    # marsbench's own switch, as `marsbench.models.weights.downloads_allowed` reads it (not
    # imported from there: that module imports torch)
    if os.environ.get(MARSBENCH_OFFLINE_ENV, "").strip().lower() in _TRUE:
        return f"{MARSBENCH_OFFLINE_ENV}=1 is set"
    return None


def _probe_timeout() -> float:
    text = os.environ.get(HUB_PROBE_TIMEOUT_ENV, "").strip()
    if not text:
        return HUB_PROBE_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 3600:  # false for nan too; a bad setting is never silently replaced
        raise OptionError(f"{HUB_PROBE_TIMEOUT_ENV} must be a number of seconds above 0 and at "
                          "most 3600", where="environment", value=text,
                          fix=f"e.g. {HUB_PROBE_TIMEOUT_ENV}={HUB_PROBE_TIMEOUT_S:g}")
    return value


def probe_hub(endpoint: str, timeout: float) -> str | None:
    """One HEAD request to ``endpoint`` (proxy settings honoured, no retry), bounded by
    ``timeout`` seconds in all (name lookup included): None if any HTTP answer came back, else
    why not."""
    import requests

    outcome: list[str | None] = []

    def head() -> None:
        try:
            requests.head(endpoint, timeout=(timeout, timeout), allow_redirects=False)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
            outcome.append(_short_reason(exc, timeout))

    worker = threading.Thread(target=head, name="marsbench-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def _short_reason(exc: BaseException, timeout: float) -> str:
    """Why a request failed, in a few words (requests nests urllib3's reason in its message)."""
    text = " ".join(str(exc).split())
    if "Failed to resolve" in text or "NameResolution" in text or "Name or service" in text:
        return "its name does not resolve: no network or DNS"
    if "timed out" in text.lower() or "Timeout" in type(exc).__name__:
        return f"no answer within {timeout:g} s"
    if "refused" in text.lower():
        return "connection refused"
    return f"{type(exc).__name__}: {text[:160]}"


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be used now, or None if it can.

    With ``HF_HUB_OFFLINE=1`` or ``MARSBENCH_OFFLINE=1`` nothing is tried on the network.
    Otherwise one HEAD request to the endpoint (`probe_hub`, a ``$MARSBENCH_HUB_TIMEOUT``-second
    limit, default 2) is made the first time, and its answer kept for the whole process."""
    setting = hub_offline_setting()
    if setting:
        return setting
    endpoint = hub_endpoint()
    with _probe_lock:
        if endpoint not in _probed:
            why = probe_hub(endpoint, _probe_timeout())
            _probed[endpoint] = None if why is None else f"{endpoint} cannot be reached ({why})"
        return _probed[endpoint]


def reset_hub_probe() -> None:
    """Forget the probe's answers (tests; a process that went online)."""
    with _probe_lock:
        _probed.clear()


def require_hub(repo: str, name: str | None = None) -> None:
    """A `DataError` naming what is missing locally and the command fetching it, unless the
    Hub can be reached now (`hub_unreachable`). Called before any Hub request."""
    why = hub_unreachable()
    if why is None:
        return
    name = name or repo.split("/")[-1]
    raise DataError(f"{name} is not present locally and the Hugging Face Hub cannot be used",
                    dataset=repo, value=why,
                    fix=f"on a machine with network run `marsbench datasets download {name} "
                        f"--source hf` (or `--source zenodo`) and copy the data root here, "
                        f"then pass --root DIR (DIR/{name} or DIR/hf/{name})")


def list_shards(location: str) -> tuple[dict[str, list[str]], dict | None]:
    """Parquet shards per split and the parsed ``mapping.json`` (or None), local or on the hub."""
    path = Path(location)
    if path.is_dir():
        guard = Guard(path)
        found = sorted(path.rglob("*.parquet"))
        for p in found:
            guard(p, what="parquet shard")
        files = [p.relative_to(path).as_posix() for p in found]
        prefix = str(path) + "/"
        mapping_path = path / "mapping.json"
        mapping = None
        if mapping_path.is_file() or mapping_path.is_symlink():
            text = read_text(path, mapping_path, what="mapping.json", allow_empty=False)
            mapping = load_json(text, path=display(path, mapping_path), what="mapping.json")
    else:
        require_hub(location)
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
            local = Path(hf_hub_download(location, "mapping.json", repo_type="dataset"))
            text = decode_text(local.read_bytes(), path=f"{location}/mapping.json",
                               what="mapping.json", allow_empty=False)
            mapping = load_json(text, path=f"{location}/mapping.json", what="mapping.json")
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


def _load_arrow(files: list[str], dataset: str | None = None, split: str | None = None):
    """The shards as one memory-mapped table; a corrupt, truncated or mismatched shard is a
    `DataError` naming it."""
    import datasets

    import logging

    datasets.disable_progress_bars()
    library_log = logging.getLogger("datasets")
    level = library_log.level
    library_log.setLevel(logging.CRITICAL)  # its "Failed to read file" line: ours says it once
    # `load_dataset` otherwise sends a HEAD request (a download counter, up to 3 s offline) on
    # every call, for local shards too: reading a local copy touches no network
    counts = datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        ds = datasets.load_dataset("parquet", data_files={"split": files}, split="split")
        # Decode images ourselves so every reader returns the same (H, W, C) arrays.
        for column, feature in ds.features.items():
            if isinstance(feature, datasets.Image):
                ds = ds.cast_column(column, datasets.Image(decode=False))
    except Exception as exc:  # noqa: BLE001 - pyarrow / datasets raise many types here
        bad, detail = _bad_shard(files)
        cause = exc.__cause__ or exc.__context__ or exc
        detail = detail or f"{type(cause).__name__}: {cause}"
        raise DataError(f"unreadable parquet shard ({detail})",
                        dataset=dataset, split=split,
                        path=_shown_shard(bad) if bad else ", ".join(map(_shown_shard, files)),
                        fix="re-download the dataset (the shard is corrupt or truncated)") from None
    finally:
        library_log.setLevel(level)
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = counts
    return ds


def _shown_shard(path: str) -> str:
    """A shard as errors name it: ``<repo folder>/data/<file>`` (or its hub URL)."""
    parts = Path(path).parts
    return "/".join(parts[-3:]) if not path.startswith("hf://") and len(parts) >= 3 else path


def _check_local_shards(files: list[str], dataset: str, split: str) -> None:
    """Local shards' footers, read before ``datasets`` sees them: a corrupt or truncated shard
    is named, and a split whose shards hold no rows is an empty split (not a decoder error)."""
    import pyarrow.parquet as pq

    rows = 0
    for f in files:
        if f.startswith("hf://"):
            return
        try:
            rows += pq.ParquetFile(f).metadata.num_rows
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types here
            raise DataError(f"unreadable parquet shard ({type(exc).__name__}: {exc})",
                            dataset=dataset, split=split, path=_shown_shard(f),
                            fix="re-download the dataset (the shard is corrupt or truncated)"
                            ) from None
    if rows == 0:
        raise DataError("split has no samples (the parquet shards hold no rows)",
                        dataset=dataset, split=split, path=_shown_shard(files[0]),
                        fix="re-download the dataset")


def _bad_shard(files: list[str]) -> tuple[str | None, str | None]:
    """The first local shard pyarrow cannot read, and why (hub shards are not re-read)."""
    import pyarrow.parquet as pq

    for f in files:
        if f.startswith("hf://"):
            continue
        try:
            pq.read_table(f)
        except Exception as exc:  # noqa: BLE001
            return f, f"{type(exc).__name__}: {exc}"
    return None, None


def _require_columns(ds, needed: tuple[str, ...], files: list[str], dataset: str,
                     split: str) -> None:
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise DataError(f"parquet shard has no {' / '.join(repr(c) for c in missing)} column",
                        dataset=dataset, split=split, path=_shown_shard(files[0]),
                        value=f"columns: {ds.column_names}",
                        fix="the HF layout needs the columns of the facts sheet (image, label, "
                            "mask, ...)")


def _rows(value) -> list[dict]:
    """A sequence of structs as ``datasets`` stores it (dict of lists) or as a list of dicts."""
    if not value:
        return []
    if isinstance(value, dict):
        keys = list(value)
        return [dict(zip(keys, items)) for items in zip(*(value[k] for k in keys))]
    return list(value)


def _decode_cell(cell, where: str, location: str, notes: list[str] | None = None,
                 column: str = "image") -> np.ndarray:
    """An Image cell ({bytes, path}) or an array feature (e.g. MMLS 7-band Array3D)."""
    if isinstance(cell, (list, np.ndarray)):
        return _array_cell(cell, where, column)
    return decode_image(_image_bytes(cell, where, location, column), name=where, notes=notes)


def _array_cell(cell, where: str, column: str) -> np.ndarray:
    try:
        array = np.asarray(cell)
    except ValueError:
        raise DataError(f"{column!r} array cell is ragged", path=where) from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == np.bool_):
        raise DataError(f"{column!r} array cell holds non-numbers (null or ragged)", path=where,
                        value=str(array.dtype))
    if array.dtype == np.float64:
        array = array.astype(np.float32)  # Arrow lists come back as Python floats
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise DataError(f"{column!r} array cell must be (H, W) or (H, W, bands)", path=where,
                        value=str(array.shape))
    h, w = array.shape[:2]
    if h * w > max_image_pixels() or min(h, w) < MIN_IMAGE_SIDE:
        raise DataError(f"{column!r} array cell has an unusable size", path=where,
                        value=f"{w}x{h}")
    return array


def _image_bytes(cell, where: str, location: str, column: str = "image") -> bytes:
    """The encoded image of a cell: its bytes, else the file its ``path`` names - read only
    from a local copy and only inside it (a path leaving the dataset folder is refused)."""
    if cell is None:
        raise DataError(f"{column!r} cell is null", path=where,
                        fix="re-download the dataset or drop the row")
    if isinstance(cell, (bytes, bytearray)):  # a plain binary column: the encoded image itself
        return bytes(cell)
    if not isinstance(cell, dict):
        raise DataError(f"{column!r} cell is not an image ({{bytes, path}})", path=where,
                        value=type(cell).__name__)
    data = cell.get("bytes")
    if data is not None:
        if not isinstance(data, (bytes, bytearray)):
            raise DataError(f"{column!r} cell bytes are not binary", path=where,
                            value=type(data).__name__)
        return bytes(data)
    ref = cell.get("path")
    if not ref:
        raise DataError(f"{column!r} cell has neither bytes nor a path", path=where,
                        fix="re-download the dataset or drop the row")
    root = Path(location)
    if not root.is_dir():
        raise DataError(f"{column!r} cell has no bytes, only a path (not read from a hub copy)",
                        path=where, value=str(ref),
                        fix="download the repo and read the local copy")
    file = contained(root, ref, where=where, what=f"{column!r} cell path")
    if not file.is_file():
        raise DataError(f"{column!r} cell has no bytes and its path is not a file", path=where,
                        value=str(ref))
    return file.read_bytes()


def _class_names(card: DatasetCard, ds, mapping: dict | None, notes: list[str]) -> tuple[list[str], int | None]:
    import datasets

    ignore = None
    label = ds.features.get("label")
    if isinstance(label, datasets.ClassLabel):
        names = list(label.names)
        return reconcile(card, names, None, notes), None
    if mapping:
        aliases, ignore = parse_mapping(mapping, dataset=card.name)
        names = names_from_mapping(aliases, card=card, ignore=ignore, notes=notes)
        return reconcile(card, names, aliases, notes), ignore
    if card.class_names:
        return list(card.class_names), None
    if "feature_names" in ds.column_names and "labels" in ds.column_names and len(ds):
        first = ds[0]  # the full label set only where it is as long as the multi-hot vector
        if first["feature_names"] and len(first["feature_names"]) == len(first["labels"] or []):
            return [str(n) for n in first["feature_names"]], None
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
    _check_local_shards(shards[hf_split], card.name, hf_split)
    ds = _load_arrow(shards[hf_split], card.name, hf_split)
    notes: list[str] = []
    where = f"{Path(location).name if Path(location).is_dir() else location} [{hf_split}]"
    if len(ds) == 0:
        raise DataError("split has no samples (the parquet shards hold no rows)",
                        dataset=card.name, split=hf_split, path=shards[hf_split][0],
                        fix="re-download the dataset")
    if card.task is Task.SEGMENTATION:
        _require_columns(ds, ("image", "mask"), shards[hf_split], card.name, hf_split)
    elif card.task is Task.DETECTION or card.kind is not TaskKind.IMAGE_PAIR:
        _require_columns(ds, ("image",), shards[hf_split], card.name, hf_split)
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
            image = _decode_cell(row["image"], rid, location, notes)
            mask = decode_mask(_image_bytes(row["mask"], rid, location, "mask"),
                               name=rid + " mask")
            validate_mask(image, mask, num, ignore, rid)
            return SegmentationSample(ids[i], image, mask)

        ids = _row_ids(ds, split, skip=("mask",), dataset=card.name, where=where)
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
        require_hub(location)
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
        if isinstance(cell, dict) and isinstance(cell.get("path"), str) and cell["path"]:
            return Path(cell["path"]).stem
    voc = row.get("pascal_voc_annotation")
    if isinstance(voc, dict) and isinstance(voc.get("filename"), str) and voc["filename"]:
        return Path(voc["filename"]).stem
    if row.get("image_id") not in (None, ""):
        return f"{split}-{row['image_id']}"
    return f"{split}-{i}"


def _row_ids(ds, split: str, skip: tuple[str, ...] = (), *, dataset: str = "",
             where: str = "") -> list[str]:
    """Ids of every row, read column-wise from Arrow without touching image bytes. A value of
    an id column (``file_id``, ``file_name``, ``image_id``) repeated within the split is
    refused: that sample would be trained on or scored twice. (Ids taken from image file names
    may repeat across folders of the original upload and are not refused.)"""
    import datasets

    image_cols = [c for c, f in ds.features.items() if isinstance(f, datasets.Image)]
    light = [c for c in ds.column_names if c not in skip and c not in image_cols
             and not isinstance(ds.features[c], (datasets.Array3D, datasets.Array2D))]
    columns = ds.select_columns(light).to_dict() if light else {}
    for c in image_cols[:1]:
        columns[c] = [{"path": p} for p in ds.data.column(c).combine_chunks().field("path").to_pylist()]
    for key in ("file_id", "file_name", "image_id"):
        if key in columns:
            _refuse_repeated(columns[key], key, dataset, split, where)
    rows = [{k: v[i] for k, v in columns.items()} for i in range(len(ds))]
    return [_row_id(row, i, split) for i, row in enumerate(rows)]


def _refuse_repeated(values: list, column: str, dataset: str, split: str, where: str) -> None:
    repeat = first_repeat(values)
    if repeat is None:
        return
    i, j, extra = repeat
    raise DataError(f"{column} repeated within the split (rows {i} and {j}"
                    f"{f'; {extra - 1} more repeats' if extra > 1 else ''})",
                    dataset=dataset or None, split=split, path=where or None,
                    value=repr(values[i]), fix="remove the repeated rows from the parquet "
                    "shards (`marsbench check` lists the split's duplicates)")


def content_hashes(data: MarsDataset) -> list[str]:
    """sha1 of each row's raw image bytes: finds duplicates and leaks whatever the ids say."""
    import hashlib

    ds = data.arrow
    column = next(c for c in ("image", "image_before") if c in ds.column_names)
    out = []
    for i in data.entries:
        cell = ds[i][column]
        if isinstance(cell, dict) and isinstance(cell.get("bytes"), (bytes, bytearray)):
            raw = bytes(cell["bytes"])
        elif isinstance(cell, (list, np.ndarray)):
            try:
                raw = np.asarray(cell).tobytes()
            except ValueError:
                raw = None
        else:
            raw = None
        # a cell without bytes (null, path only) is no one's duplicate: reading it is reported
        out.append(hashlib.sha1(raw).hexdigest() if raw is not None else f"no-bytes-row-{i}")
    return out


def _classification(card, ds, split, variant, names, location, where, fingerprint, notes):
    num = len(names)
    pair_cols = next((c for c in PAIR_COLUMNS if set(c) <= set(ds.column_names)), None)
    if card.kind is TaskKind.IMAGE_PAIR and pair_cols is None:
        raise DataError("image-pair dataset but no before/after image columns", dataset=card.name,
                        split=split, path=where, value=f"columns: {ds.column_names}",
                        fix=f"name them {PAIR_COLUMNS[0][0]!r} and {PAIR_COLUMNS[0][1]!r}")
    image_cols = pair_cols if card.kind is TaskKind.IMAGE_PAIR else ("image",)
    multilabel = card.kind is TaskKind.MULTILABEL
    label_col = "labels" if multilabel else "label"
    if label_col not in ds.column_names:
        raise DataError(f"parquet shard has no {label_col!r} column", dataset=card.name,
                        split=split, path=where, value=f"columns: {ds.column_names}")
    raw_targets = ds[label_col]
    targets = []
    for i, value in enumerate(raw_targets):
        at = dict(dataset=card.name, path=where, row=i)
        if multilabel:
            targets.append(multihot(value, num, **at))
        else:
            targets.append(class_label(value, num, **at))
    ids = _row_ids(ds, split, skip=(label_col,), dataset=card.name, where=where)

    def load(i: int) -> ClassificationSample:
        row = ds[i]
        rid = f"{where} row {i}"
        images = tuple(classification_image(_decode_cell(row[c], rid, location, notes, c), rid)
                       for c in image_cols)
        return ClassificationSample(ids[i], images, targets[i])

    out = MarsDataset(card, split, variant, names, ids, list(range(len(ds))), load, "hf",
                      location, fingerprint_parts=fingerprint, notes=notes, targets=targets)
    out.arrow = ds
    return out


def _detection(card, ds, split, variant, location, where, fingerprint, fmt, drop_negatives):
    names = list(card.class_names or ["object"])
    class_ids = {n.lower(): i + 1 for i, n in enumerate(names)}

    column = {"coco": "coco_annotation", "yolo": "yolo_annotation",
              "voc": "pascal_voc_annotation"}[fmt]
    if column not in ds.column_names:
        raise DataError(f"parquet shard has no {column!r} column (annotation_format={fmt!r})",
                        dataset=card.name, split=split, path=where,
                        value=f"columns: {ds.column_names}")

    def boxes_of(row: dict, width: int, height: int, i: int):
        at = dict(path=where, row=i)
        ann = row.get(column)
        if not isinstance(ann, dict):
            raise DataError(f"{column!r} cell is null or not a struct", value=type(ann).__name__,
                            fix="a negative image has an annotation with empty lists", **at)
        boxes, labels = [], []
        if fmt == "coco":
            for j, a in enumerate(_struct_rows(ann.get("annotations"), column, at)):
                x, y, w, h = box_numbers(a.get("bbox"), 4, f"annotation {j} bbox [x, y, w, h]",
                                         **at)
                boxes.append([x, y, x + w, y + h])
                labels.append(_int_cell(a.get("category_id"), f"annotation {j} category_id", at))
        elif fmt == "yolo":
            bboxes, cats = ann.get("bbox") or [], ann.get("category") or []
            if len(bboxes) != len(cats):
                raise DataError(f"yolo_annotation has {len(bboxes)} boxes but {len(cats)} "
                                "categories", **at)
            for j, (bb, cat) in enumerate(zip(bboxes, cats)):
                cx, cy, w, h = box_numbers(bb, 4, f"yolo box {j} [cx, cy, w, h]", **at)
                if w <= 0 or h <= 0:
                    raise DataError(f"yolo box {j} has zero or negative width/height",
                                    value=list(bb), fix="drop or fix the box", **at)
                boxes.append([(cx - w / 2) * width, (cy - h / 2) * height,
                              (cx + w / 2) * width, (cy + h / 2) * height])
                labels.append(_category_id(cat, class_ids, where, i))
        else:
            for j, obj in enumerate(_struct_rows(ann.get("objects"), column, at)):
                bb = obj.get("bbox")
                if not isinstance(bb, dict):
                    raise DataError(f"object {j} has no bbox struct", **at)
                boxes.append(box_numbers([bb.get(k) for k in ("xmin", "ymin", "xmax", "ymax")],
                                         4, f"object {j} bbox", **at))
                labels.append(_category_id(obj.get("name"), class_ids, where, i))
        return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                np.asarray(labels, dtype=np.int64))

    notes: list[str] = []
    annotation_cols = [c for c in ds.column_names if c != "image"]
    meta = ds.select_columns(annotation_cols)
    indices = list(range(len(ds)))
    if drop_negatives:
        indices = [i for i in indices if len(boxes_of(meta[i], meta[i].get("width") or 1,
                                                      meta[i].get("height") or 1, i)[0])]
        if not indices:
            raise DataError("split has no samples (every image is a negative and "
                            "drop_negatives is set)", dataset=card.name, split=split, path=where)
    all_ids = _row_ids(ds, split, dataset=card.name, where=where)
    ids = [all_ids[i] for i in indices]

    def load(i: int) -> DetectionSample:
        row = ds[i]
        rid = f"{where} row {i}"
        image = _decode_cell(row["image"], rid, location, notes)
        h, w = image.shape[:2]
        boxes, labels = boxes_of(row, w, h, i)
        validate_boxes(boxes, labels, w, h, len(names), rid)
        return DetectionSample(all_ids[i], image, boxes, labels)

    out = MarsDataset(card, split, variant, names, ids, indices, load, "hf", location,
                      fingerprint_parts=fingerprint, notes=notes)
    out.arrow = ds
    return out


def _struct_rows(value, column: str, at: dict) -> list[dict]:
    rows = _rows(value)
    if not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{column!r} entries are not structs", **at)
    return rows


def _int_cell(value, what: str, at: dict) -> int:
    try:
        return parse_class_id(value)
    except ValueError as exc:
        raise DataError(f"{what} is not an integer ({exc})", value=repr(value), **at) from None


def _category_id(category, class_ids: dict[str, int], where: str, row: int | None = None) -> int:
    """A 0-based YOLO / VOC category (an id, or a class name) -> class id 1..K."""
    if category is None or isinstance(category, bool):
        raise DataError("category is null or not a class", path=where, row=row,
                        value=repr(category))
    key = str(category).strip().lower()
    if key in class_ids:
        return class_ids[key]
    try:
        return parse_class_id(category) + 1
    except ValueError:
        raise DataError(f"unknown category; known: {sorted(class_ids)}", path=where, row=row,
                        value=repr(category)) from None

"""Nothing silently wrong: each class of bad data is refused by name, or converted and noted.

Table-driven. Every case builds a tiny synthetic dataset (folder or HF layout), breaks it in one
way, and asserts that

* opening the split, or reading its samples, raises a `DataError` whose one line names what is
  wrong, the file (and row) and the value - never a raw exception, never a silently altered
  sample;
* `check_dataset` lists the problem instead of raising;
* (for a sample of cases) ``marsbench datasets check`` exits non-zero without a traceback.

Then: containment (no file outside the dataset is ever read: folder, HF cells, the VLM path),
images that are converted rather than refused, a "billion laughs" YAML file.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from marsbench.catalog import get_card
from marsbench.sources import DataError, open_dataset
from marsbench.sources.check import check_dataset
from marsbench.sources.synth import generate

pytestmark = pytest.mark.timeout(300)

SECRET = b"TOP-SECRET-OUTSIDE-THE-DATASET"


# ---- fixtures: pristine synthetic datasets, copied per test ------------------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("pristine")
    made: dict[tuple[str, str], Path] = {}

    def get(name: str, fmt: str) -> Path:
        if (name, fmt) not in made:
            made[name, fmt] = generate(get_card(name), base / fmt, fmt)
        return made[name, fmt]

    return get


@pytest.fixture
def make(pristine, tmp_path):
    def copy(name: str, fmt: str = "folder") -> Path:
        dest = tmp_path / "data" / fmt / name
        shutil.copytree(pristine(name, fmt), dest, symlinks=True)
        return dest

    return copy


@pytest.fixture
def outside(tmp_path) -> Path:
    """A file outside every dataset folder, holding a secret no reader may return or send."""
    path = tmp_path / "outside" / "secret.png"
    path.parent.mkdir()
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue() + SECRET)
    return path


# ---- how to break a dataset --------------------------------------------------------------------

def csv_set(root: Path, column: str, value: str, *, split: str = "train", nth: int = 0,
            csv: str = "annotation.csv") -> dict:
    """Set one cell of the ``nth`` row of ``split``; returns its line number and file_id."""
    path = root / csv
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    index = df.index[df["split"] == split][nth]
    file_id = df.at[index, "file_id"]
    df.at[index, column] = value
    df.to_csv(path, index=False)
    return {"line": str(index + 2), "file_id": file_id}


def first_file(root: Path, split: str = "train", sub: str = "images") -> Path:
    return sorted((root / "data" / split / sub).iterdir())[0]


def classification_file(root: Path, split: str = "train") -> Path:
    df = pd.read_csv(root / "annotation.csv", dtype=str, keep_default_na=False)
    row = df[df["split"] == split].iloc[0]
    return root / "data" / split / row["feature_name"] / row["file_id"]


def shard(root: Path, split: str = "train") -> Path:
    return root / "data" / f"{split}-00000-of-00001.parquet"


def hf_rows(root: Path, edit: Callable[[list[dict]], None], *, split: str = "train",
            keep_schema: bool = True) -> None:
    """Rewrite a split's shard after ``edit(rows)``; ``keep_schema=False`` re-infers the types
    (and drops the HF feature metadata, as a hand-made parquet would have none)."""
    path = shard(root, split)
    table = pq.read_table(path)
    rows = table.to_pylist()
    edit(rows)
    new = pa.Table.from_pylist(rows, schema=table.schema if keep_schema else None)
    pq.write_table(new, path)


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG") if mode else \
        Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 12000, height: int = 12000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` 8-bit gray pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _scramble_middle(data: bytes) -> bytes:
    """Damage the data pages, leave the footer (schema, row counts) intact."""
    out = bytearray(data)
    for i in range(len(out) // 3, len(out) // 3 + 2000):
        out[i] = (out[i] * 7 + 13) % 256
    return bytes(out)


# ---- the table of cases ------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    name: str                      # the synthetic dataset broken
    fmt: str                       # folder | hf
    breaks: Callable[..., dict]    # (root, outside) -> context for the pattern
    pattern: str                   # regex the DataError must match; <key> = re.escape(ctx[key])
    stage: str = "open"            # open: open_dataset raises; read: reading a sample raises
    split: str = "train"
    options: dict = field(default_factory=dict)
    check: str | None = None       # regex for check's problem line (None: `pattern`; "": skip)


def _fill(pattern: str, ctx: dict) -> str:
    return re.sub(r"<(\w+)>", lambda m: re.escape(str(ctx[m.group(1)])), pattern)


LABEL = r"^label is not an integer class id \([^)]*\) \(mb-domars16k train annotation\.csv row <line>\): "
RANGE = r"^label out of range 0\.\.14 \(mb-domars16k train annotation\.csv row <line>\): "
MULTI = r"\(mb-surface_multi_label_cls train annotation\.csv row <line>\): "


def _label(value):
    return lambda root, out: csv_set(root, "label", value)


def _multi(value):
    return lambda root, out: csv_set(root, "label", value)


def _replace(target: Callable[[Path], Path], data: bytes | Callable[[], bytes]):
    def breaks(root, out):
        path = target(root)
        path.write_bytes(data() if callable(data) else data)
        return {"file": path.relative_to(root).as_posix()}
    return breaks


def _write(relative: str, data: bytes):
    def breaks(root, out):
        (root / relative).write_bytes(data)
        return {"file": relative}
    return breaks


def _symlink_out(target: Callable[[Path], Path]):
    def breaks(root, out):
        path = target(root)
        path.unlink()
        path.symlink_to(out)
        return {"file": path.relative_to(root).as_posix(), "out": str(out.resolve())}
    return breaks


def _csv_lines(edit: Callable[[dict[int, str]], dict[int, str]], csv: str = "annotation.csv"):
    """Replace lines of a CSV (numbered from 1, the header) by ``edit(lines)``'s."""
    def breaks(root, out):
        path = root / csv
        lines = dict(enumerate(path.read_text().splitlines(), start=1))
        lines.update(edit(lines))
        path.write_text("\r\n".join(lines[i] for i in sorted(lines)) + "\r\n")
        return {}
    return breaks


def _repeat_row(split: str, *, same_label: bool):
    """Append a copy of ``split``'s first row (with another label unless ``same_label``)."""
    def breaks(root, out):
        df = pd.read_csv(root / "annotation.csv", dtype=str, keep_default_na=False)
        first = df.index[df["split"] == split][0]
        row = df.loc[[first]].copy()
        if not same_label:
            row["label"] = str((int(row["label"].iloc[0]) + 1) % 15)
        pd.concat([df, row], ignore_index=True).to_csv(root / "annotation.csv", index=False)
        return {"first": first + 2, "last": len(df) + 2, "file_id": row["file_id"].iloc[0]}
    return breaks


def _unlink(path: Path) -> Path:
    path.unlink()
    return path


def _copy_as(path: Path, suffix: str) -> Path:
    copy = path.with_suffix(suffix)
    copy.write_bytes(path.read_bytes())
    return copy


def _yolo(line: str):
    def breaks(root, out):
        path = first_file(root, "train", "labels")
        path.write_text(line + "\n")
        return {"file": path.relative_to(root).as_posix(), "stem": path.stem}
    return breaks


def _voc(edit: Callable[[str], str]):
    def breaks(root, out):
        path = first_file(root, "train", "pascal_voc")
        path.write_text(edit(path.read_text()))
        return {"file": path.relative_to(root).as_posix(), "stem": path.stem}
    return breaks


def _voc_value(tag: str, value: str):
    return _voc(lambda t: re.sub(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", t, count=1))


def _coco(edit: Callable[[dict], object], *, replace: bool = False):
    """Edit the train split's COCO file in place (``replace``: write what ``edit`` returns)."""
    def breaks(root, out):
        path = root / "data" / "train" / "coco_annotations.json"
        data = json.loads(path.read_text())
        new = edit(data)
        path.write_text(json.dumps(new if replace else data))
        return {"file": "mb-boulder_det/data/train/coco_annotations.json"}
    return breaks


def _coco_bbox(bbox):
    def edit(data):
        data["annotations"][0]["bbox"] = bbox
    return _coco(edit)


def _mapping(text: str | bytes, name: str = "mb-frost_cls"):
    def breaks(root, out):
        data = text.encode() if isinstance(text, str) else text
        (root / "mapping.json").write_bytes(data)
        return {}
    return breaks


def _drop_split_rows(split: str):
    def breaks(root, out):
        df = pd.read_csv(root / "annotation.csv", dtype=str, keep_default_na=False)
        df[df["split"] != split].to_csv(root / "annotation.csv", index=False)
        return {}
    return breaks


def _empty_folder(split: str):
    def breaks(root, out):
        for sub in ("images", "masks"):
            for p in (root / "data" / split / sub).glob("*"):
                p.unlink()
        return {}
    return breaks


def _hf_set(column: str, value, *, keep_schema: bool = True, row: int = 0, split="train"):
    def breaks(root, out):
        def edit(rows):
            rows[row][column] = value(rows[row][column]) if callable(value) else value
        hf_rows(root, edit, split=split, keep_schema=keep_schema)
        return {"row": row, "split": split}
    return breaks


def _hf_shard_bytes(edit: Callable[[bytes], bytes]):
    def breaks(root, out):
        path = shard(root)
        path.write_bytes(edit(path.read_bytes()))
        return {"file": path.name}
    return breaks


def _hf_rename_image(root, out):
    path = shard(root)
    table = pq.read_table(path)
    pq.write_table(table.rename_columns(["picture" if c == "image" else c
                                         for c in table.column_names]), path)
    return {}


def _hf_no_rows(root, out):
    path = shard(root)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 0), path)
    return {"file": path.name}


def _first_with_boxes(rows: list[dict]) -> int:
    # HF stores a sequence of structs as a struct of lists: {"name": [...], "bbox": [...]}
    return next(i for i, r in enumerate(rows) if r["pascal_voc_annotation"]["objects"]["name"])


HF_ROW = r"\(.*\[train\] row 0\)"
LAUGHS_XML = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l "lol">'
              + "".join(f'<!ENTITY l{i} "' + f"&l{i - 1 if i > 1 else ''};" * 10 + '">'
                        for i in range(1, 10))
              + ']><annotation><object><name>&l9;</name></object></annotation>')
XXE_XML = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{out}">]>'
           '<annotation><object><name>&x;</name></object></annotation>')

CASES = [
    # -- labels: not an integer, not finite, null, out of range (folder) -----------------------
    Case("label-float", "mb-domars16k", "folder", _label("1.7"), LABEL + r"'1\.7'"),
    Case("label-inf", "mb-domars16k", "folder", _label("inf"), LABEL + r"'inf'"),
    Case("label-nan", "mb-domars16k", "folder", _label("nan"), LABEL + r"'nan'"),
    Case("label-null", "mb-domars16k", "folder", _label("null"), LABEL + r"'null'"),
    Case("label-empty", "mb-domars16k", "folder", _label(""), LABEL + r"''"),
    Case("label-word", "mb-domars16k", "folder", _label("crater"), LABEL + r"'crater'"),
    Case("label-bool", "mb-domars16k", "folder", _label("True"), LABEL + r"'True'"),
    Case("label-huge-exponent", "mb-domars16k", "folder", _label("1e400"), LABEL + r"'1e400'"),
    Case("label-negative", "mb-domars16k", "folder", _label("-1"), RANGE + r"'-1'"),
    Case("label-too-big", "mb-domars16k", "folder", _label("15"), RANGE + r"'15'"),
    # -- multi-label lists with bad entries ------------------------------------------------------
    Case("multi-float", "mb-surface_multi_label_cls", "folder", _multi("[0, 1.5]"),
         r"^multi-label entry 1\.5 is not an integer label id \(not an integer\) " + MULTI
         + r"'\[0, 1\.5\]'"),
    Case("multi-range", "mb-surface_multi_label_cls", "folder", _multi("[0, 25]"),
         r"^multi-label entry 25 out of range 0\.\.24 " + MULTI),
    Case("multi-negative", "mb-surface_multi_label_cls", "folder", _multi("[-1]"),
         r"^multi-label entry -1 out of range 0\.\.24 " + MULTI),
    Case("multi-text", "mb-surface_multi_label_cls", "folder", _multi("[0, 'a']"),
         r"^multi-label entry is not an integer label id " + MULTI),
    Case("multi-nested", "mb-surface_multi_label_cls", "folder", _multi("[[1]]"),
         r"^multi-label entry is not an integer label id " + MULTI),
    Case("multi-bool", "mb-surface_multi_label_cls", "folder", _multi("[True]"),
         r"^multi-label entry True is not an integer label id \(a boolean, not a class id\) "
         + MULTI),
    Case("multi-nan", "mb-surface_multi_label_cls", "folder", _multi("[nan]"),
         r"^multi-label cell is not a list of label ids " + MULTI + r"'\[nan\]'; write"),
    Case("multi-empty-cell", "mb-surface_multi_label_cls", "folder", _multi(""),
         r"^multi-label cell is empty " + MULTI + r"''; write the label ids"),
    Case("multi-dict", "mb-surface_multi_label_cls", "folder", _multi("{1: 2}"),
         r"^multi-label cell is not a list of label ids " + MULTI),
    # -- HF labels ---------------------------------------------------------------------------
    Case("hf-label-float", "mb-domars16k", "hf", _hf_set("label", 1.7, keep_schema=False),
         r"^label is not an integer class id \(not an integer\) " + HF_ROW + r": 1\.7"),
    Case("hf-label-inf", "mb-domars16k", "hf", _hf_set("label", float("inf"), keep_schema=False),
         r"^label is not an integer class id \(not finite\) " + HF_ROW + r": inf"),
    Case("hf-label-null", "mb-domars16k", "hf", _hf_set("label", None),
         r"^label is not an integer class id \(null\) " + HF_ROW + r": None"),
    Case("hf-label-range", "mb-domars16k", "hf", _hf_set("label", 99, keep_schema=False),
         r"^label out of range 0\.\.14 " + HF_ROW + r": 99"),
    Case("hf-multihot-length", "mb-surface_multi_label_cls", "hf",
         _hf_set("labels", lambda v: v[:-1]),
         r"^multi-hot vector has 24 entries, expected 25 " + HF_ROW),
    Case("hf-multihot-two", "mb-surface_multi_label_cls", "hf",
         _hf_set("labels", lambda v: [2] + v[1:]),
         r"^multi-hot entry 0 is 2, not 0 or 1 " + HF_ROW),
    Case("hf-multihot-null-entry", "mb-surface_multi_label_cls", "hf",
         _hf_set("labels", lambda v: [None] + v[1:]),
         r"^multi-hot entry 0 is not 0 or 1 \(null\) " + HF_ROW),
    Case("hf-multihot-null", "mb-surface_multi_label_cls", "hf", _hf_set("labels", None),
         r"^multi-label cell is null " + HF_ROW),
    # -- boxes: NaN / inf / negative / zero area in YOLO, VOC, COCO ---------------------------
    Case("yolo-nan", "mb-boulder_det", "folder", _yolo("0 nan 0.5 0.1 0.1"),
         r"^YOLO box 'cx cy w h' has a non-finite value \(mb-boulder_det/<file> row 1\)",
         options={"annotation_format": "yolo"}, stage="read"),
    Case("yolo-inf", "mb-boulder_det", "folder", _yolo("0 0.5 0.5 inf 0.1"),
         r"^YOLO box 'cx cy w h' has a non-finite value \(mb-boulder_det/<file> row 1\)",
         options={"annotation_format": "yolo"}, stage="read"),
    Case("yolo-negative", "mb-boulder_det", "folder", _yolo("0 0.5 0.5 -0.1 0.1"),
         r"^YOLO box has zero or negative width/height \(mb-boulder_det/<file> row 1\): "
         r"0 0\.5 0\.5 -0\.1 0\.1", options={"annotation_format": "yolo"}, stage="read"),
    Case("yolo-zero", "mb-boulder_det", "folder", _yolo("0 0.5 0.5 0 0.1"),
         r"^YOLO box has zero or negative width/height \(mb-boulder_det/<file> row 1\)",
         options={"annotation_format": "yolo"}, stage="read"),
    Case("yolo-class-float", "mb-boulder_det", "folder", _yolo("0.5 0.5 0.5 0.1 0.1"),
         r"^YOLO class is not an integer id \(not an integer\) \(mb-boulder_det/<file> row 1\)",
         options={"annotation_format": "yolo"}, stage="read"),
    Case("yolo-fields", "mb-boulder_det", "folder", _yolo("0 0.5 0.5 0.1"),
         r"^YOLO line must be 'cls cx cy w h' \(mb-boulder_det/<file> row 1\): 0 0\.5 0\.5 0\.1",
         options={"annotation_format": "yolo"}, stage="read"),
    Case("yolo-class-range", "mb-boulder_det", "folder", _yolo("3 0.5 0.5 0.1 0.1"),
         r"^YOLO class 3 out of range 0\.\.0 \(mb-boulder_det/<file> row 1\): 3 0\.5 0\.5 0\.1 "
         r"0\.1; YOLO class ids are 0-based: 0\.\.0 for the 1 class$",
         options={"annotation_format": "yolo"}, stage="read",
         check=r"yolo: YOLO class 3 out of range 0\.\.0 \(mb-boulder_det/<file> row 1\)"),
    Case("yolo-class-negative", "mb-boulder_det", "folder", _yolo("-1 0.5 0.5 0.1 0.1"),
         r"^YOLO class -1 out of range 0\.\.0 \(mb-boulder_det/<file> row 1\)",
         options={"annotation_format": "yolo"}, stage="read",
         check=r"yolo: YOLO class -1 out of range 0\.\.0 \(mb-boulder_det/<file> row 1\)"),
    Case("yolo-missing", "mb-boulder_det", "folder",
         lambda root, out: {"file": _unlink(first_file(root, "train", "labels"))
                            .relative_to(root).as_posix()},
         r"^YOLO label file missing \(mb-boulder_det train mb-boulder_det/<file>\); restore",
         options={"annotation_format": "yolo"}, stage="read",
         check=r"yolo: YOLO label file missing \(mb-boulder_det train mb-boulder_det/<file>\)"),
    Case("yolo-folder", "mb-boulder_det", "folder",
         lambda root, out: {"file": _unlink(first_file(root, "train", "labels")).mkdir()
                            or first_file(root, "train", "labels").relative_to(root).as_posix()},
         r"^YOLO label file is a folder, not a file \(mb-boulder_det train .*<file>\); replace",
         options={"annotation_format": "yolo"}, stage="read",
         check=r"yolo: YOLO label file is a folder, not a file \(.*<file>\)"),
    Case("voc-nan", "mb-boulder_det", "folder", _voc_value("xmin", "nan"),
         r"^object 1 \(boulder\) bndbox has a non-finite value \(mb-boulder_det/<file>\)",
         stage="read"),
    Case("voc-inf", "mb-boulder_det", "folder", _voc_value("ymax", "inf"),
         r"^object 1 \(boulder\) bndbox has a non-finite value \(mb-boulder_det/<file>\)",
         stage="read"),
    Case("voc-negative-area", "mb-boulder_det", "folder", _voc_value("xmax", "0"),
         r"^box \[\d+, \d+, 0, \d+\] has negative area \(mb-boulder_det/data/train/images/<stem>\.jpg\)",
         stage="read"),
    Case("voc-text", "mb-boulder_det", "folder", _voc_value("xmin", "left"),
         r"^object 1 \(boulder\) bndbox must be 4 numbers \(mb-boulder_det/<file>\)", stage="read"),
    Case("voc-entity-bomb", "mb-boulder_det", "folder", _voc(lambda t: LAUGHS_XML),
         r"^unreadable Pascal VOC file \(limit on input amplification factor .*\) \(.*<stem>\.xml\)",
         stage="read"),
    Case("voc-external-entity", "mb-boulder_det", "folder",
         lambda root, out: _voc(lambda t: XXE_XML.format(out=out))(root, out),
         r"^unreadable Pascal VOC file \(undefined entity .*\) \(.*<stem>\.xml\)", stage="read"),
    Case("coco-nan", "mb-boulder_det", "folder", _coco_bbox([float("nan"), 1, 4, 4]),
         r"^COCO annotations\[0\]\.bbox \[x, y, w, h\] has a non-finite value \(.*<file>\): "
         r"\[nan, 1, 4, 4\]"),
    Case("coco-inf", "mb-boulder_det", "folder", _coco_bbox([1, 1, float("inf"), 4]),
         r"^COCO annotations\[0\]\.bbox \[x, y, w, h\] has a non-finite value \(.*<file>\)"),
    Case("coco-negative", "mb-boulder_det", "folder", _coco_bbox([5, 5, -3, 4]),
         r"^COCO annotations\[0\]\.bbox has zero or negative width/height \(.*<file>\)"),
    Case("coco-zero", "mb-boulder_det", "folder", _coco_bbox([5, 5, 3, 0]),
         r"^COCO annotations\[0\]\.bbox has zero or negative width/height \(.*<file>\)"),
    Case("coco-short-bbox", "mb-boulder_det", "folder", _coco_bbox([5, 5, 3]),
         r"^COCO annotations\[0\]\.bbox \[x, y, w, h\] must be 4 numbers \(.*<file>\)"),
    # -- COCO JSON of the wrong shape ------------------------------------------------------------
    Case("coco-list", "mb-boulder_det", "folder", _coco(lambda d: [d], replace=True),
         r"^COCO annotation file must be a JSON object .*\(.*<file>\): list"),
    Case("coco-annotations-dict", "mb-boulder_det", "folder",
         _coco(lambda d: d.update(annotations={"0": 1})),
         r"^COCO 'annotations' must be a list of objects \(.*<file>\): dict"),
    Case("coco-missing-image-id", "mb-boulder_det", "folder",
         _coco(lambda d: d["annotations"][0].pop("image_id")),
         r"^COCO annotations\[0\]\.image_id is not an integer \(null\) \(.*<file>\)"),
    Case("coco-unknown-image", "mb-boulder_det", "folder",
         _coco(lambda d: d["annotations"][0].update(image_id=10_000)),
         r"^COCO annotations\[0\] refers to an image id not in 'images' \(.*<file>\): 10000"),
    Case("coco-category-text", "mb-boulder_det", "folder",
         _coco(lambda d: d["annotations"][0].update(category_id="boulder")),
         r"^COCO annotations\[0\]\.category_id is not an integer \(not a number\) \(.*<file>\)"),
    Case("coco-duplicate-key", "mb-boulder_det", "folder",
         _write("data/train/coco_annotations.json", b'{"images": [], "images": []}'),
         r"^COCO annotation file: key given twice \(.*<file>\): images"),
    # -- 0-byte and binary annotation files ------------------------------------------------------
    Case("coco-empty", "mb-boulder_det", "folder",
         _write("data/train/coco_annotations.json", b""),
         r"^COCO annotation file is empty \(0 bytes\) \(.*<file>\)"),
    Case("coco-binary", "mb-boulder_det", "folder",
         _write("data/train/coco_annotations.json", b"\x89PNG\r\n\x1a\n\0\0"),
         r"^COCO annotation file is binary, not text \(NUL byte at offset 8\) \(.*<file>\)"),
    Case("voc-empty", "mb-boulder_det", "folder",
         _replace(lambda r: first_file(r, "train", "pascal_voc"), b""),
         r"^Pascal VOC file is empty \(0 bytes\) \(mb-boulder_det train .*<file>\)",
         stage="read"),
    Case("voc-latin1", "mb-boulder_det", "folder",
         _replace(lambda r: first_file(r, "train", "pascal_voc"), "<a>café</a>".encode("latin-1")),
         r"^Pascal VOC file is not UTF-8 text \(bad byte at offset 6\) \(.*<file>\)",
         stage="read"),
    Case("yolo-binary", "mb-boulder_det", "folder",
         _replace(lambda r: first_file(r, "train", "labels"), b"\0\x01\x02"),
         r"^YOLO label file is binary, not text \(NUL byte at offset 0\) \(.*<file>\)",
         options={"annotation_format": "yolo"}, stage="read", check=r"yolo: YOLO label file is binary"),
    Case("csv-empty", "mb-domars16k", "folder", _write("annotation.csv", b""),
         r"^CSV file is empty \(0 bytes\) \(mb-domars16k .*annotation\.csv\)"),
    Case("csv-binary", "mb-domars16k", "folder", _write("annotation.csv", b"file_id\0label"),
         r"^CSV file is binary, not text \(NUL byte at offset 7\) \(mb-domars16k .*annotation\.csv\)"),
    Case("csv-latin1", "mb-domars16k", "folder",
         _write("annotation.csv", "file_id,feature_name,label,split\nx\xe9.jpg,a,0,train\n"
                .encode("latin-1")),
         r"^CSV file is not UTF-8 text \(bad byte at offset 34\) \(mb-domars16k .*annotation\.csv\)"),
    Case("csv-extra-field", "mb-domars16k", "folder", _csv_lines(lambda ls: {3: ls[3] + ",x"}),
         r"^row has 5 fields, more than the header's 4 \(mb-domars16k annotation\.csv row 3\): "
         r".*,x; quote values that contain commas, or fix the row to match the header "
         r"file_id,feature_name,label,split"),
    Case("csv-extra-field-every-row", "mb-domars16k", "folder",
         _csv_lines(lambda ls: {i: line + ",x" for i, line in ls.items() if i > 1}),
         r"^row has 5 fields, more than the header's 4 \(mb-domars16k annotation\.csv row 2\)"),
    Case("csv-missing-field", "mb-domars16k", "folder",
         _csv_lines(lambda ls: {4: ls[4].rsplit(",", 1)[0]}),
         r"^row has 3 fields, fewer than the header's 4 \(mb-domars16k annotation\.csv row 4\)"),
    Case("csv-label-twice", "mb-domars16k", "folder",
         _csv_lines(lambda ls: {i: line + ("," + line.split(",")[2] if i > 1 else ",label")
                                for i, line in ls.items()}),
         r"^column 'label' appears twice in the header \(mb-domars16k annotation\.csv row 1\); "
         r"keep one"),
    Case("csv-split-twice", "mb-domars16k", "folder",
         _csv_lines(lambda ls: {i: line + ("," + line.split(",")[3] if i > 1 else ",split")
                                for i, line in ls.items()}),
         r"^column 'split' appears twice in the header \(mb-domars16k annotation\.csv"),
    Case("csv-variant-column-twice", "mb-domars16k", "folder",
         _csv_lines(lambda ls: {i: line + "," + line.split(",")[0] if i > 1 else line + ",file_id"
                                for i, line in ls.items()}, csv="few_shot/1_shot.csv"),
         r"^column 'file_id' appears twice in the header \(mb-domars16k few_shot/1_shot\.csv",
         options={"variant": "few_shot:1"}, check=r"train\[few_shot:1\].*appears twice"),
    Case("csv-partition-column-twice", "mb-boulder_seg", "folder",
         _csv_lines(lambda ls: {1: ls[1] + ",file_id"}, csv="partitions/0.50x_partition.csv"),
         r"^column 'file_id' appears twice in the header \(mb-boulder_seg "
         r"partitions/0\.50x_partition\.csv", options={"variant": "partition:0.5"},
         check=r"train\[partition:0\.50\].*appears twice"),
    Case("csv-repeated-id", "mb-domars16k", "folder", _repeat_row("test", same_label=True),
         r"^sample id repeated within the split \(rows <first>, <last>\) \(mb-domars16k test "
         r"annotation\.csv\): '<file_id>'; remove one of the rows$", split="test"),
    Case("csv-repeated-id-other-label", "mb-domars16k", "folder",
         _repeat_row("val", same_label=False),
         r"^sample id repeated within the split \(rows <first>, <last>\) \(mb-domars16k val "
         r"annotation\.csv\): '<file_id>'; remove one of the rows \(their labels differ: ",
         split="val"),
    Case("seg-repeated-stem", "mb-boulder_seg", "folder",
         lambda root, out: {"stem": _copy_as(first_file(root), ".tif").stem},
         r"^two images share a stem \(one sample id\) \(mb-boulder_seg .*data/train/images\): "
         r"<stem>\.\w+, <stem>\.\w+; remove one of them"),
    Case("seg-mask-missing", "mb-boulder_seg", "folder",
         lambda root, out: {"stem": _unlink(first_file(root, "train", "masks")).stem},
         r"^image <stem>\.\w+ has no mask \(mb-boulder_seg train mb-boulder_seg/data/train/"
         r"images/<stem>\.\w+\): expected mb-boulder_seg/data/train/masks/<stem>\.png \(or "
         r"\.tif\); add the mask, or remove the image$"),
    Case("seg-mask-jpg", "mb-boulder_seg", "folder",
         lambda root, out: {"stem": _unlink(_copy_as(first_file(root, "train", "masks"),
                                                     ".jpg").with_suffix(".png")).stem},
         r"^image <stem>\.\w+ has no mask \(.*\): expected .*/masks/<stem>\.png \(or \.tif\); "
         r"found masks/<stem>\.jpg, but masks must be PNG or TIFF: save it as <stem>\.png$"),
    Case("csv-no-label-column", "mb-domars16k", "folder",
         _write("annotation.csv", b"file_id,feature_name,split\nx.jpg,a,train\n"),
         r"^CSV lacks columns \['label'\] \(mb-domars16k annotation\.csv\)"),
    # -- mapping.json: gaps, wrong types, bad UTF-8 ---------------------------------------------
    Case("mapping-gap", "mb-frost_cls", "folder",
         _mapping('{"0": "no frost", "1": "frost", "3": "extra"}'),
         r"^mapping\.json: class ids have gaps \(mb-frost_cls .*mapping\.json\): missing 2 of 0\.\.3; "
         r"add the missing ids"),
    Case("mapping-number-name", "mb-frost_cls", "folder", _mapping('{"0": 0, "1": "frost"}'),
         r"^mapping\.json: class 0: name must be text or a non-empty list of text "
         r"\(mb-frost_cls .*mapping\.json\): 0"),
    Case("mapping-text-key", "mb-frost_cls", "folder", _mapping('{"zero": "a", "1": "b"}'),
         r"^mapping\.json: key is not a non-negative integer class id \(.*mapping\.json\): zero"),
    Case("mapping-float-key", "mb-frost_cls", "folder", _mapping('{"0": "a", "1.5": "b"}'),
         r"^mapping\.json: key is not a non-negative integer class id \(.*mapping\.json\): 1\.5"),
    Case("mapping-list", "mb-frost_cls", "folder", _mapping('["a", "b"]'),
         r"^mapping\.json: expected a JSON object of id -> class name \(.*mapping\.json\): list"),
    Case("mapping-null-name", "mb-frost_cls", "folder", _mapping('{"0": null, "1": "b"}'),
         r"^mapping\.json: class 0: name must be text"),
    Case("mapping-empty-name", "mb-frost_cls", "folder", _mapping('{"0": " ", "1": "b"}'),
         r"^mapping\.json: class 0: empty name"),
    Case("mapping-duplicate-id", "mb-frost_cls", "folder", _mapping('{"1": "a", "01": "b", "0": "c"}'),
         r"^mapping\.json: class id 1 given twice \(keys '1' and '01'\)"),
    Case("mapping-duplicate-key", "mb-frost_cls", "folder", _mapping('{"0": "a", "0": "b"}'),
         r"^mapping\.json: key given twice \(.*mapping\.json\): 0"),
    Case("mapping-bad-utf8", "mb-frost_cls", "folder", _mapping(b'{"0": "\xff", "1": "b"}'),
         r"^mapping\.json is not UTF-8 text \(bad byte at offset 7\) \(.*mapping\.json\)"),
    Case("mapping-empty", "mb-frost_cls", "folder", _mapping(b""),
         r"^mapping\.json is empty \(0 bytes\) \(.*mapping\.json\)"),
    Case("mapping-not-json", "mb-frost_cls", "folder", _mapping("{0: 'a'}"),
         r"^mapping\.json is not valid JSON \(.*line 1 column 2\) \(.*mapping\.json\)"),
    Case("mapping-no-classes", "mb-frost_cls", "folder", _mapping("{}"),
         r"^mapping\.json: has no classes \(mb-frost_cls .*mapping\.json\): \{\}; write"),
    Case("mapping-only-ignore", "mb-frost_cls", "folder", _mapping('{"255": "ignore"}'),
         r"^mapping\.json: has no classes \(only the ignore entry 255\) \(.*mapping\.json\)"),
    Case("mapping-folder", "mb-frost_cls", "folder",
         lambda root, out: (root / "mapping.json").unlink() or (root / "mapping.json").mkdir(),
         r"^mapping\.json is a folder, not a file \(mb-frost_cls mb-frost_cls/mapping\.json\); "
         r"write mapping\.json as"),
    Case("hf-mapping-gap", "mb-mars_seg_mer", "hf",
         _mapping('{"0": "a", "1": "b", "2": "c", "5": "f", "6": "g"}'),
         r"^mapping\.json: class ids have gaps .*: missing 3, 4 of 0\.\.6"),
    # -- images: 1x1, truncated, empty, not an image, bomb, unsupported pixel types ----------
    Case("image-1x1", "mb-domars16k", "folder",
         _replace(classification_file, lambda: _jpeg(np.zeros((1, 1), np.uint8))),
         r"^image too small \(a side under 8 px\) \(mb-domars16k/<file>\): 1x1", stage="read"),
    Case("image-truncated", "mb-domars16k", "folder",
         _replace(classification_file, lambda: _jpeg(np.zeros((64, 64), np.uint8))[:200]),
         r"^unreadable or truncated image \(.*\) \(mb-domars16k/<file>\); re-download",
         stage="read"),
    Case("image-empty", "mb-domars16k", "folder", _replace(classification_file, b""),
         r"^image file is empty \(0 bytes\) \(mb-domars16k/<file>\)", stage="read"),
    Case("image-text", "mb-domars16k", "folder", _replace(classification_file, b"hello"),
         r"^unreadable or truncated image \(.*\) \(mb-domars16k/<file>\)", stage="read"),
    Case("image-gif-named-jpg", "mb-domars16k", "folder",
         _replace(classification_file, lambda: _gif()),
         r"^unreadable or truncated image \(.*\) \(mb-domars16k/<file>\)", stage="read"),
    Case("image-bomb", "mb-domars16k", "folder", _replace(classification_file, bomb_png),
         r"^image too large \(decompression-bomb guard\) \(mb-domars16k/<file>\): "
         r"12000x12000 = 144000000 pixels > 100000000; .*MARSBENCH_MAX_IMAGE_PIXELS",
         stage="read"),
    Case("seg-image-int16-tiff", "mb-mmls", "folder",
         _replace(lambda r: first_file(r), lambda: _tiff(np.zeros((32, 32), np.int16))),
         r"^unsupported image pixel type int16 with 1 band \(mb-mmls/<file>\); convert",
         stage="read"),
    Case("image-float-tiff", "mb-domars16k", "folder",
         _replace(classification_file, lambda: _tiff(np.full((64, 64), np.nan, np.float32))),
         r"^unsupported image pixel type float32 with 1 band \(mb-domars16k/<file>\); convert "
         r"the file to 8-bit", stage="read"),
    Case("image-complex-tiff", "mb-domars16k", "folder",
         _replace(classification_file, lambda: _tiff(np.zeros((32, 32, 3), np.complex64))),
         r"^unsupported image pixel type complex64 with 3 bands \(mb-domars16k/<file>\)",
         stage="read"),
    Case("image-int32-tiff", "mb-domars16k", "folder",
         _replace(classification_file, lambda: _tiff(np.zeros((32, 32), np.int32))),
         r"^unsupported image pixel type int32 with 1 band \(mb-domars16k/<file>\)",
         stage="read"),
    Case("seg-image-float-tiff", "mb-boulder_seg", "folder",
         _replace(lambda r: first_file(r), lambda: _tiff(np.zeros((32, 32, 3), np.float64))),
         r"^unsupported image pixel type float64 with 3 bands \(mb-boulder_seg/<file>\)",
         stage="read"),
    Case("image-multiband-classification", "mb-domars16k", "folder",
         _replace(classification_file, lambda: _tiff(np.zeros((32, 32, 7), np.float32))),
         r"^unsupported image pixel type float32 with 7 bands for classification "
         r"\(mb-domars16k/<file>\); convert the file to 8-bit", stage="read"),
    Case("seg-mask-rgb", "mb-boulder_seg", "folder",
         _replace(lambda r: first_file(r, "train", "masks"),
                  lambda: png_bytes(np.dstack([np.zeros((32, 32), np.uint8),
                                               np.ones((32, 32), np.uint8),
                                               np.zeros((32, 32), np.uint8)]))),
         r"^mask has several different channels; expected one class-index channel "
         r"\(mb-boulder_seg/<file>\)", stage="read"),
    Case("hf-image-bomb", "mb-domars16k", "hf",
         _hf_set("image", {"bytes": bomb_png(), "path": "x.png"}),
         r"^image too large \(decompression-bomb guard\) " + HF_ROW, stage="read"),
    # -- splits: typos, empty ---------------------------------------------------------------
    Case("split-typo", "mb-domars16k", "folder",
         lambda root, out: csv_set(root, "split", "trian", split="val", nth=1),
         r"^unknown split name \(mb-domars16k annotation\.csv row <line>\): 'trian'; valid splits: "
         r"train, val, test \(did you mean 'train'\?\)", split="test"),
    Case("split-typo-variant", "mb-domars16k", "folder",
         lambda root, out: csv_set(root, "split", "Val", split="val", csv="few_shot/1_shot.csv"),
         r"^unknown split name \(mb-domars16k few_shot/1_shot\.csv row <line>\): 'Val'; valid",
         options={"variant": "few_shot:1"}, check=r"train\[few_shot:1\].*unknown split name"),
    Case("partition-unknown-image", "mb-boulder_seg", "folder",
         lambda root, out: csv_set(root, "file_id", "gone.png", csv="partitions/0.50x_partition.csv"),
         r"^partition row names no image of the train split \(mb-boulder_seg train "
         r"partitions/0\.50x_partition\.csv row <line>\): 'gone\.png'",
         options={"variant": "partition:0.5"}, check=r"train\[partition:0\.50\].*partition row"),
    Case("split-empty-csv", "mb-domars16k", "folder", _drop_split_rows("val"),
         r"^split has no samples \(mb-domars16k val annotation\.csv\): train \d+, val 0, test \d+",
         split="val"),
    Case("split-empty-seg", "mb-boulder_seg", "folder", _empty_folder("test"),
         r"^split has no samples \(no images\) \(mb-boulder_seg test .*data/test/images\)",
         split="test"),
    Case("split-empty-det", "mb-boulder_det", "folder", _empty_folder("val"),
         r"^split has no samples \(no images\) \(mb-boulder_det val .*data/val/images\)",
         split="val"),
    Case("hf-split-empty", "mb-domars16k", "hf", _hf_no_rows,
         r"^split has no samples \(the parquet shards hold no rows\) \(mb-domars16k train .*<file>\)"),
    # -- parquet: corrupt, truncated, no image column, null cells --------------------------------
    Case("hf-truncated-shard", "mb-domars16k", "hf", _hf_shard_bytes(lambda b: b[: len(b) // 2]),
         r"^unreadable parquet shard \(.*\) \(mb-domars16k train .*<file>\); re-download"),
    Case("hf-garbage-shard", "mb-domars16k", "hf", _hf_shard_bytes(lambda b: b"PAR1" + b"\0" * 64),
         r"^unreadable parquet shard \(.*\) \(mb-domars16k train .*<file>\)"),
    Case("hf-corrupt-pages", "mb-domars16k", "hf", _hf_shard_bytes(_scramble_middle),
         r"^unreadable parquet shard \(ArrowInvalid: .*\) \(mb-domars16k train .*<file>\)"),
    Case("hf-no-image-column", "mb-domars16k", "hf", _hf_rename_image,
         r"^parquet shard has no 'image' column \(mb-domars16k train .*\): columns: "
         r"\['picture', 'label'\]"),
    Case("hf-null-image", "mb-domars16k", "hf", _hf_set("image", None),
         r"^'image' cell is null " + HF_ROW, stage="read"),
    Case("hf-image-no-bytes-no-path", "mb-domars16k", "hf",
         _hf_set("image", {"bytes": None, "path": None}),
         r"^'image' cell has neither bytes nor a path " + HF_ROW, stage="read"),
    Case("hf-null-mask", "mb-boulder_seg", "hf", _hf_set("mask", None),
         r"^'mask' cell is null " + HF_ROW, stage="read"),
    Case("hf-null-voc", "mb-boulder_det", "hf", _hf_set("pascal_voc_annotation", None),
         r"^'pascal_voc_annotation' cell is null or not a struct " + HF_ROW, stage="read"),
    Case("hf-voc-nan", "mb-boulder_det", "hf", lambda root, out: _hf_voc_box(root, "xmin", float("nan")),
         r"^object 0 bbox has a non-finite value \(.*\[train\] row <row>\)", stage="read"),
    Case("hf-voc-negative", "mb-boulder_det", "hf", lambda root, out: _hf_voc_box(root, "xmax", -5),
         r"^box \[.*\] has negative area \(.*\[train\] row <row>\)", stage="read"),
    Case("hf-coco-inf", "mb-boulder_det", "hf",
         lambda root, out: _hf_coco_box(root, [1.0, 1.0, float("inf"), 2.0]),
         r"^annotation 0 bbox \[x, y, w, h\] has a non-finite value \(.*\[train\] row <row>\)",
         stage="read", options={"annotation_format": "coco"}, check=""),
    Case("hf-yolo-zero", "mb-boulder_det", "hf",
         lambda root, out: _hf_yolo_box(root, [0.5, 0.5, 0.0, 0.1]),
         r"^yolo box 0 has zero or negative width/height \(.*\[train\] row <row>\)",
         stage="read", options={"annotation_format": "yolo"}, check=""),
    # -- containment: nothing outside the dataset is read -------------------------------------
    Case("symlink-image-cls", "mb-domars16k", "folder", _symlink_out(classification_file),
         r"^image resolves outside the dataset folder \(mb-domars16k train annotation\.csv row "
         r"\d+\): <file> -> <out>; paths must stay inside"),
    Case("symlink-image-seg", "mb-boulder_seg", "folder", _symlink_out(first_file),
         r"^image resolves outside the dataset folder \(mb-boulder_seg train .*<file>\): <out>"),
    Case("symlink-mask", "mb-boulder_seg", "folder",
         _symlink_out(lambda r: first_file(r, "train", "masks")),
         r"^mask resolves outside the dataset folder \(mb-boulder_seg train .*<file>\): <out>"),
    Case("symlink-image-det", "mb-boulder_det", "folder", _symlink_out(first_file),
         r"^image resolves outside the dataset folder \(mb-boulder_det train .*<file>\): <out>"),
    Case("symlink-voc", "mb-boulder_det", "folder",
         _symlink_out(lambda r: first_file(r, "train", "pascal_voc")),
         r"^annotation file resolves outside the dataset folder \(mb-boulder_det train .*<file>\)"),
    Case("symlink-yolo", "mb-boulder_det", "folder",
         _symlink_out(lambda r: first_file(r, "train", "labels")),
         r"^annotation file resolves outside the dataset folder \(mb-boulder_det train .*<file>\)",
         options={"annotation_format": "yolo"}, check=r"yolo: YOLO label file resolves outside"),
    Case("symlink-coco", "mb-boulder_det", "folder",
         _symlink_out(lambda r: r / "data" / "train" / "coco_annotations.json"),
         r"^COCO annotation file resolves outside the dataset folder \(.*<file>\): <out>"),
    Case("symlink-csv", "mb-domars16k", "folder", _symlink_out(lambda r: r / "annotation.csv"),
         r"^CSV file resolves outside the dataset folder \(mb-domars16k .*annotation\.csv\): <out>"),
    Case("symlink-mapping", "mb-frost_cls", "folder", _symlink_out(lambda r: r / "mapping.json"),
         r"^mapping\.json resolves outside the dataset folder \(mb-frost_cls .*mapping\.json\)"),
    Case("symlink-class-folder", "mb-domars16k", "folder",
         lambda root, out: _symlink_folder(root, out),
         r"^image resolves outside the dataset folder \(mb-domars16k train "),
    Case("file-id-dotdot", "mb-domars16k", "folder",
         lambda root, out: csv_set(root, "file_id", "../../../outside/secret.png"),
         r"^image path refused: path contains '\.\.' \(mb-domars16k train annotation\.csv row "
         r"<line>\): \.\./\.\./\.\./outside/secret\.png; paths must stay inside"),
    Case("file-id-absolute", "mb-domars16k", "folder",
         lambda root, out: {**csv_set(root, "file_id", str(out)), "out": str(out)},
         r"^image path refused: absolute path \(mb-domars16k train annotation\.csv row <line>\): "
         r"<out>; paths must stay inside"),
    Case("feature-name-dotdot", "mb-domars16k", "folder",
         lambda root, out: csv_set(root, "feature_name", "../../.."),
         r"^image path refused: path contains '\.\.' \(mb-domars16k train annotation\.csv row <line>\)"),
    Case("hf-cell-path-absolute", "mb-domars16k", "hf",
         lambda root, out: {**_hf_set("image", {"bytes": None, "path": str(out)})(root, out)},
         r"^'image' cell path path refused: absolute path " + HF_ROW, stage="read"),
    Case("hf-cell-path-dotdot", "mb-domars16k", "hf",
         _hf_set("image", {"bytes": None, "path": "../../../outside/secret.png"}),
         r"^'image' cell path path refused: path contains '\.\.' " + HF_ROW
         + r": \.\./\.\./\.\./outside/secret\.png", stage="read"),
    Case("hf-cell-path-symlink", "mb-domars16k", "hf",
         lambda root, out: _hf_cell_symlink(root, out),
         r"^'image' cell path resolves outside the dataset folder " + HF_ROW
         + r": link\.png -> <out>", stage="read"),
    Case("hf-shard-symlink", "mb-domars16k", "hf",
         lambda root, out: _hf_shard_symlink(root, out),
         r"^parquet shard resolves outside the dataset folder \(.*<file>\): <out>"),
    Case("hf-mapping-symlink", "mb-mars_seg_mer", "hf", _symlink_out(lambda r: r / "mapping.json"),
         r"^mapping\.json resolves outside the dataset folder \(.*mapping\.json\): <out>"),
]


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG")
    return buf.getvalue()


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(buf, format="GIF")
    return buf.getvalue()


def _tiff(array: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    rgb = array.ndim == 3 and array.shape[-1] == 3  # stated: tifffile's default will change
    tifffile.imwrite(buf, array, **({"photometric": "rgb"} if rgb else {}))
    return buf.getvalue()


def _symlink_folder(root: Path, out: Path) -> dict:
    df = pd.read_csv(root / "annotation.csv", dtype=str, keep_default_na=False)
    row = df[df["split"] == "train"].iloc[0]
    folder = root / "data" / "train" / row["feature_name"]
    copy = out.parent / "copied_class"
    shutil.copytree(folder, copy)
    shutil.rmtree(folder)
    folder.symlink_to(copy, target_is_directory=True)
    return {}


def _hf_voc_box(root: Path, key: str, value) -> dict:
    rows = pq.read_table(shard(root)).to_pylist()
    i = _first_with_boxes(rows)

    def edit(rows):
        rows[i]["pascal_voc_annotation"]["objects"]["bbox"][0][key] = value
    hf_rows(root, edit, keep_schema=False)
    return {"row": i}


def _hf_coco_box(root: Path, bbox) -> dict:
    rows = pq.read_table(shard(root)).to_pylist()
    i = _first_with_boxes(rows)

    def edit(rows):
        rows[i]["coco_annotation"]["annotations"]["bbox"][0] = bbox
    hf_rows(root, edit, keep_schema=False)
    return {"row": i}


def _hf_yolo_box(root: Path, bbox) -> dict:
    rows = pq.read_table(shard(root)).to_pylist()
    i = _first_with_boxes(rows)

    def edit(rows):
        rows[i]["yolo_annotation"]["bbox"][0] = bbox
    hf_rows(root, edit, keep_schema=False)
    return {"row": i}


def _hf_cell_symlink(root: Path, out: Path) -> dict:
    (root / "link.png").symlink_to(out)
    _hf_set("image", {"bytes": None, "path": "link.png"})(root, out)
    return {"out": str(out.resolve())}


def _hf_shard_symlink(root: Path, out: Path) -> dict:
    path = shard(root)
    moved = out.parent / path.name
    shutil.move(path, moved)
    path.symlink_to(moved)
    return {"file": path.name, "out": str(moved.resolve())}


def _refusal(root: Path, case: Case, ctx: dict) -> DataError:
    pattern = _fill(case.pattern, ctx)
    options = dict(case.options)
    if case.stage == "open":
        with pytest.raises(DataError, match=pattern) as err:
            open_dataset(root, case.split, **options)
    else:
        ds = open_dataset(root, case.split, **options)
        with pytest.raises(DataError, match=pattern) as err:
            for i in range(len(ds)):
                ds[i]
    return err.value


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_data_is_refused_by_name_and_listed_by_check(make, outside, case):
    root = make(case.name, case.fmt)
    ctx = case.breaks(root, outside) or {}
    error = _refusal(root, case, ctx)
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    assert SECRET.decode() not in text
    if case.check == "":
        return
    report = check_dataset(root)  # lists, never raises
    assert not report.ok
    lines = [f"{p.split} {p.path}: {p.message}" for p in report.problems]
    wanted = _fill(case.check, ctx) if case.check else _fill(case.pattern, ctx).lstrip("^")
    assert any(re.search(wanted, line) for line in lines), lines
    assert not any("unexpected" in line for line in lines), lines
    assert not any(SECRET.decode() in line for line in lines)


# ---- the CLI lists problems, exits non-zero, prints no traceback --------------------------------

@pytest.mark.parametrize("case_id", ["label-float", "coco-list", "mapping-gap", "image-bomb",
                                     "hf-truncated-shard", "hf-cell-path-dotdot",
                                     "symlink-image-cls"])
def test_cli_check_lists_problems_without_traceback(make, outside, case_id):
    case = next(c for c in CASES if c.id == case_id)
    root = make(case.name, case.fmt)
    case.breaks(root, outside)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "marsbench", "datasets", "check", str(root)],
                            capture_output=True, text=True, env=env, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert SECRET.decode() not in output


def test_check_lists_a_user_folder_that_cannot_even_be_opened(make, tmp_path):
    root = make("mb-frost_cls")
    user = root.rename(root.with_name("my_frost"))  # not a catalog name: the card is inferred
    (user / "mapping.json").write_bytes(b"\xff\xfe{}")
    report = check_dataset(user)
    assert not report.ok
    assert re.search(r"mapping\.json is not UTF-8 text \(bad byte at offset 0\) "
                     r"\(my_frost my_frost/mapping\.json\)", report.problems[0].message)
    result = subprocess.run([sys.executable, "-m", "marsbench", "datasets", "check", str(user)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert "not UTF-8" in result.stdout + result.stderr


# ---- converted, not refused: documented and noted --------------------------------------------

def _one_image_dataset(make, data: bytes) -> tuple[Path, str]:
    root = make("mb-domars16k")
    path = classification_file(root)
    path.write_bytes(data)
    return root, path.name


@pytest.mark.parametrize("kind, data, channels, expected, note", [
    ("rgba", lambda: png_bytes(np.dstack([np.full((16, 16), v, np.uint8) for v in (10, 20, 30, 0)])),
     3, (10, 20, 30), "alpha channel dropped"),
    ("gray-alpha", lambda: png_bytes(np.dstack([np.full((16, 16), 40, np.uint8),
                                                np.full((16, 16), 255, np.uint8)]), "LA"),
     1, (40,), "alpha channel dropped"),
    ("16-bit", lambda: png_bytes(np.full((16, 16), 65535, np.uint16)), 1, (255,),
     "16-bit images: scaled to 8-bit as round(value / 257)"),
    ("16-bit-mid", lambda: png_bytes(np.full((16, 16), 257 * 100, np.uint16)), 1, (100,),
     "16-bit images"),
    ("cmyk", lambda: _cmyk_jpeg(), 3, None, "CMYK images: converted to RGB"),
    ("1-bit", lambda: _bilevel_png(), 1, (255,), None),
    ("gray-palette", lambda: _palette_png(gray=True), 1, (9,), None),
    ("colour-palette", lambda: _palette_png(gray=False), 3, (9, 0, 200), None),
])
def test_convertible_modes_become_uint8_and_are_noted(make, kind, data, channels, expected, note):
    root, name = _one_image_dataset(make, data())
    ds = open_dataset(root, "train")
    image = ds[0].image
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == channels
    if expected is not None:
        assert tuple(image[0, 0]) == expected
    if note is None:
        assert not any(name in n for n in ds.notes)
    else:
        assert any(n.startswith(note.split(":")[0]) and name in n for n in ds.notes), ds.notes
        report = check_dataset(root)
        assert any(note.split(":")[0] in n for n in report.notes), report.notes


def _cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buf, format="JPEG")
    return buf.getvalue()


def _bilevel_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (16, 16), 1).save(buf, format="PNG")
    return buf.getvalue()


def _palette_png(gray: bool) -> bytes:
    img = Image.new("P", (16, 16), 1)
    img.putpalette([0, 0, 0, 9, 9, 9] if gray else [0, 0, 0, 9, 0, 200])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_check_names_the_rows_of_a_repeated_hf_image(make):
    root = make("mb-domars16k", "hf")
    hf_rows(root, lambda rows: rows.append(dict(rows[0])))
    report = check_dataset(root)
    messages = [p.message for p in report.problems if p.split == "train"]
    assert any(re.match(r"rows 0 and \d+ hold identical image bytes \(1 duplicate in the split\); "
                        r"remove one$", m) for m in messages), messages


def test_image_is_decoded_by_its_content_not_its_name(make):
    """A TIFF saved under a .jpg name is read as a TIFF (Pillow failed with 'MPO')."""
    root, name = _one_image_dataset(make, _tiff(np.full((16, 16), 7, np.uint8)))
    assert open_dataset(root, "train")[0].image[0, 0].tolist() == [7]
    path = classification_file(root)
    path.write_bytes(_tiff(np.full((16, 16), 7, np.uint8))[:-100])
    with pytest.raises(DataError, match=rf"^unreadable or truncated image \(TIFF content: .*\) "
                                        rf"\(mb-domars16k/.*{name}\)"):
        open_dataset(root, "train")[0]


def test_palette_mask_keeps_its_indices(make):
    root = make("mb-crater_multi_seg")
    mask_path = first_file(root, "train", "masks")
    mask = np.array(Image.open(mask_path))
    img = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
    img.putpalette([255, 0, 0] * 256)  # every class the same colour: only the index tells
    img.save(mask_path)
    ds = open_dataset(root, "train")
    sample = ds[ds.sample_ids.index(mask_path.stem)]
    assert np.array_equal(sample.mask, mask.astype(np.int64))


def test_mapping_gap_the_card_names_is_filled_from_the_card_and_noted(make):
    root = make("mb-domars16k")
    mapping = json.loads((root / "mapping.json").read_text())
    removed = mapping.pop("3")
    (root / "mapping.json").write_text(json.dumps(mapping))
    ds = open_dataset(root, "train")
    assert ds.class_names[3] == removed == get_card("mb-domars16k").class_names[3]
    assert any("no entry for ids [3]" in n for n in ds.notes)


def test_relative_hf_cell_path_inside_the_dataset_is_read(make, pristine):
    root = make("mb-domars16k", "hf")
    data = pq.read_table(shard(root)).to_pylist()[0]["image"]["bytes"]
    (root / "images").mkdir()
    (root / "images" / "first.jpg").write_bytes(data)
    _hf_set("image", {"bytes": None, "path": "images/first.jpg"})(root, None)
    expected = open_dataset(pristine("mb-domars16k", "hf"), "train")[0].image
    assert np.array_equal(open_dataset(root, "train")[0].image, expected)


def test_symlink_inside_the_dataset_is_fine(make):
    root = make("mb-domars16k")
    path = classification_file(root)
    real = root / "store" / path.name
    real.parent.mkdir()
    shutil.move(path, real)
    path.symlink_to(real)
    assert open_dataset(root, "train")[0].image.dtype == np.uint8


def test_pixel_limit_follows_the_environment(make, monkeypatch):
    root, _ = _one_image_dataset(make, png_bytes(np.zeros((64, 64), np.uint8)))
    monkeypatch.setenv("MARSBENCH_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match=r"64x64 = 4096 pixels > 1000"):
        open_dataset(root, "train")[0]
    monkeypatch.setenv("MARSBENCH_MAX_IMAGE_PIXELS", "5000")
    assert open_dataset(root, "train")[0].image.shape == (64, 64, 1)


# ---- the VLM never uploads a file from outside the dataset ---------------------------------

class RecordingClient:
    provider, model = "fake", "recorder"
    identity = {"provider": "fake", "model": "recorder"}

    def __init__(self):
        self.sent: list[bytes] = []

    def ask(self, prompt, images):
        from marsbench.vlm.clients import Reply

        self.sent.extend(images)
        return Reply(text="0")


@pytest.mark.parametrize("fmt", ["folder", "hf"])
def test_vlm_refuses_a_sample_pointing_outside_before_sending_anything(make, outside, tmp_path,
                                                                       fmt):
    from marsbench.vlm import run_zero_shot

    root = make("mb-frost_cls", fmt)
    if fmt == "folder":
        path = classification_file(root, "test")
        path.unlink()
        path.symlink_to(outside)
    else:
        _hf_set("image", {"bytes": None, "path": str(outside)}, split="test")(root, outside)
    data = open_dataset(root, "test") if fmt == "hf" else None
    if fmt == "folder":
        with pytest.raises(DataError, match="resolves outside the dataset folder"):
            open_dataset(root, "test")
        return  # refused when the split is opened: nothing can reach the client
    client = RecordingClient()
    with pytest.raises(DataError, match=r"^'image' cell path path refused: absolute path"):
        run_zero_shot(data, client, cache=tmp_path / "vlm.sqlite", concurrency=1)
    assert not any(SECRET in png for png in client.sent)
    assert len(client.sent) == 0


# ---- YAML: a "billion laughs" file is refused, not expanded --------------------------------

BILLION_LAUGHS = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]) + "\n"


@pytest.mark.timeout(20)
def test_billion_laughs_experiment_is_refused(tmp_path):
    from marsbench.protocol.experiment import ExperimentError, load_experiment

    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS.splitlines()) == 9
    with pytest.raises(ExperimentError, match=r"laughs\.yaml:2: not valid YAML: alias \*a0 refused"):
        load_experiment(path)


@pytest.mark.timeout(20)
def test_billion_laughs_prompt_is_refused(tmp_path):
    from marsbench.vlm.prompts import PromptError, load_prompt

    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(PromptError, match=r"laughs\.yaml: not valid YAML: alias \*a0 refused"):
        load_prompt(path)


def test_safe_yaml_still_reads_ordinary_files_and_caps_depth():
    import yaml

    from marsbench import yaml_io

    assert yaml_io.safe_load("a: 1\nb: [x, {c: 2}]\n") == {"a": 1, "b": ["x", {"c": 2}]}
    with pytest.raises(yaml.YAMLError, match="nesting deeper than 100"):
        yaml_io.safe_load("[" * 200 + "]" * 200)
    with pytest.raises(yaml.YAMLError, match=r"alias \*base refused"):
        yaml_io.safe_load("base: &base {lr: 1}\nrun:\n  <<: *base\n")


def test_no_module_loads_yaml_without_the_safe_loader():
    src = Path(__file__).resolve().parents[1] / "src" / "marsbench"
    offenders = [f"{p.relative_to(src)}:{n}" for p in src.rglob("*.py") if p.name != "yaml_io.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"yaml\.(safe_load|load|compose|full_load|unsafe_load)\(", line)]
    assert offenders == []


def _tiff_bytes(array: np.ndarray, **kw) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("kind, kw, array, expected, note", [
    ("cmyk", {"photometric": "separated"}, np.zeros((16, 16, 4), np.uint8), [255, 255, 255],
     "CMYK images"),
    ("rgba", {"photometric": "rgb", "extrasamples": ["unassalpha"]},
     np.full((16, 16, 4), 9, np.uint8), [9, 9, 9], "alpha channel dropped"),
    ("palette", {"photometric": "palette",
                 "colormap": np.pad(np.array([[0], [0], [0]], np.uint16), ((0, 0), (0, 255)),
                                    constant_values=65535)},
     np.ones((16, 16), np.uint8), [255], None),
    ("colour-palette", {"photometric": "palette",
                        "colormap": np.pad(np.array([[0, 65535], [0, 0], [0, 257 * 9]],
                                                    np.uint16), ((0, 0), (0, 254)))},
     np.ones((16, 16), np.uint8), [255, 0, 9], None),
    ("white-is-zero", {"photometric": "miniswhite"}, np.zeros((16, 16), np.uint8), [255],
     "white-is-zero TIFFs"),
    ("16-bit", {}, np.full((16, 16), 257 * 3, np.uint16), [3], "16-bit images"),
])
def test_tiff_modes_are_read_as_the_pixels_they_show(kind, kw, array, expected, note):
    from marsbench.sources.images import decode_image

    notes: list[str] = []
    image = decode_image(_tiff_bytes(array, **kw), name=f"{kind}.tif", notes=notes)
    assert image.dtype == np.uint8 and image[0, 0].tolist() == expected
    assert (note is None and notes == []) or any(n.startswith(note) for n in notes), notes


def test_multiband_float_tiff_keeps_its_values_and_a_tiff_bomb_is_refused():
    from marsbench.sources.images import decode_image

    bands = np.random.default_rng(0).random((16, 16, 7), dtype=np.float32)
    assert np.array_equal(decode_image(_tiff_bytes(bands), name="mmls.tif"), bands)
    huge = _tiff_bytes(np.zeros((1, 1), np.uint8))
    import tifffile

    buf = io.BytesIO()  # a compressed TIFF declaring 20000 x 20000 pixels
    tifffile.imwrite(buf, np.zeros((20000, 20000), np.uint8), compression="zlib",
                     tile=(1024, 1024))
    assert len(buf.getvalue()) < 2 << 20 and huge
    with pytest.raises(DataError, match=r"^image too large \(decompression-bomb guard\) "
                                        r"\(bomb\.tif\): 20000x20000 = 400000000 pixels"):
        decode_image(buf.getvalue(), name="bomb.tif")


def test_run_refuses_a_repeated_hf_id_naming_both_rows(make):
    """A row whose id column repeats another's would be trained on or scored twice: the reader
    (every run, not only `marsbench check`) refuses it, naming the column, both rows and value."""
    root = make("mb-boulder_det", "hf")
    hf_rows(root, lambda rows: rows.append(dict(rows[0])))
    with pytest.raises(DataError, match=r"^image_id repeated within the split \(rows 0 and \d+\) "
                                        r"\(mb-boulder_det train .*\): 1; remove the repeated"):
        open_dataset(root, "train")
    report = check_dataset(root)
    assert any("image_id repeated" in p.message for p in report.problems if p.split == "train")


def test_a_drawn_subset_that_is_the_whole_training_split_is_refused(make):
    """few_shot:k at or above every class's size (or a partition rounding up to everything)
    would record full-data runs under a variant's name: refused, naming the largest class."""
    root = make("mb-frost_cls")
    full = open_dataset(root, "train")
    largest = int(np.bincount(full.targets).max())
    with pytest.raises(DataError, match=rf"^few_shot:{largest + 1} takes every one of the "
                                        rf"{len(full)} training images.*use k below the largest "
                                        rf"class's {largest} images$"):  # few_shot:5 is published
        open_dataset(root, "train", variant=f"few_shot:{largest + 1}", subset_seed=0)
    with pytest.raises(DataError, match="^partition:0.99 takes every one"):
        open_dataset(root, "train", variant="partition:0.99", subset_seed=0)
    assert not (root / "marsbench_subsets").exists()  # nothing recorded
    assert len(open_dataset(root, "train", variant="few_shot:3", subset_seed=0)) < len(full)

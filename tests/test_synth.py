"""The synthetic Mars-Bench generator: exact public formats, visible labels, determinism."""

from __future__ import annotations

import ast
import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import datasets
import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import jaccard_score

from marsbench.catalog import CARDS, Task, get_card
from marsbench.sources.synth import build, generate, generate_suite
from marsbench.sources.synth.plan import per_class_counts, synthetic_class_names

CLS = [c.name for c in CARDS if c.task is Task.CLASSIFICATION]
SEG = [c.name for c in CARDS if c.task is Task.SEGMENTATION]
DET = [c.name for c in CARDS if c.task is Task.DETECTION]
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def folder_suite(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_folder")
    paths = generate_suite(out, "folder")
    assert [p.name for p in paths] == [c.name for c in CARDS]
    return out


@pytest.fixture(scope="module")
def hf_suite(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_hf")
    generate_suite(out, "hf")
    return out


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def read_mapping(root: Path) -> list[str]:
    mapping = json.loads((root / "mapping.json").read_text())
    assert sorted(map(int, mapping)) == list(range(len(mapping)))
    return [mapping[str(i)] for i in range(len(mapping))]


def load_hf(root: Path, cache: Path) -> datasets.DatasetDict:
    files = {p.name.split("-00000-of-00001")[0]: str(p) for p in (root / "data").glob("*.parquet")}
    return datasets.load_dataset("parquet", data_files=files, cache_dir=str(cache))


def expected_hf_splits(root_folder: Path, name: str) -> set[str]:
    card = get_card(name)
    ks = [int(p.stem.split("_")[0]) for p in (root_folder / "few_shot").glob("*_shot.csv")]
    return ({"train", "val", "test"} | {f"few_shot_train_{k}_shot" for k in ks}
            | {f"partition_train_{p:.2f}x_partition" for p in card.partitions})


# ---- folder layout -------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLS)
def test_folder_classification_layout(folder_suite: Path, name: str) -> None:
    card, root = get_card(name), folder_suite / name
    names = read_mapping(root)
    assert names == synthetic_class_names(card) and len(names) == card.num_classes
    assert "SYNTHETIC" in (root / "SYNTHETIC.md").read_text()
    header, rows = read_csv(root / "annotation.csv")
    assert header == ["file_id", "feature_name", "label", "split"]
    assert {r["split"] for r in rows} == set(SPLITS)
    mode = "RGB" if card.bands == 3 else "L"
    for row in rows:
        if card.multilabel:
            labels = ast.literal_eval(row["label"])
            assert labels and all(0 <= j < card.num_classes for j in labels)
            assert ast.literal_eval(row["feature_name"]) == [names[j] for j in labels]
            paths = [root / "data" / row["split"] / row["file_id"]]
        else:
            label = int(row["label"])
            assert 0 <= label < card.num_classes
            assert row["feature_name"] == names[label].replace(" ", "_")
            paths = [root / "data" / row["split"] / row["feature_name"] / row["file_id"]]
            if card.image_pair:
                assert "before" in row["file_id"]
                paths.append(Path(str(paths[0]).replace("before", "after")))
        for path in paths:
            with Image.open(path) as im:
                assert im.mode == mode and im.size[0] == im.size[1] >= 32, path
    # Every class occurs in every split (per label for multi-label).
    for split in SPLITS:
        seen = set()
        for r in rows:
            if r["split"] == split:
                seen |= set(ast.literal_eval(r["label"])) if card.multilabel else {int(r["label"])}
        assert seen == set(range(card.num_classes)), (name, split)


@pytest.mark.parametrize("name", CLS)
def test_folder_classification_variants(folder_suite: Path, name: str) -> None:
    card, root = get_card(name), folder_suite / name
    _, rows = read_csv(root / "annotation.csv")
    train = [r for r in rows if r["split"] == "train"]
    fixed = [r for r in rows if r["split"] != "train"]

    def labels(r: dict) -> list[int]:
        return ast.literal_eval(r["label"]) if card.multilabel else [int(r["label"])]

    written = sorted(int(p.stem.split("_")[0]) for p in (root / "few_shot").glob("*_shot.csv"))
    if card.few_shot:
        assert written and set(written) <= set(card.few_shot) and 1 in written
    else:
        assert written == []
    if not card.multilabel:
        per_class = min(per_class_counts(card, 1.0)["train"])
        assert written == [k for k in card.few_shot if k <= per_class]
    for k in written:
        header, sub = read_csv(root / "few_shot" / f"{k}_shot.csv")
        assert header == ["file_id", "feature_name", "label", "split"]
        sub_train = [r for r in sub if r["split"] == "train"]
        assert [r for r in sub if r["split"] != "train"] == fixed
        assert all(r in train for r in sub_train)
        counts = np.zeros(card.num_classes, int)
        for r in sub_train:
            counts[labels(r)] += 1
        if card.multilabel:  # k per label, so the set is far smaller than k * K
            assert counts.min() >= k and len(sub_train) <= k * card.num_classes
        else:
            assert (counts == k).all()
    partitions = sorted((root / "partitions").glob("*x_partition.csv"))
    expected = sorted(f"{p:.2f}x_partition.csv" for p in card.partitions)
    assert [p.name for p in partitions] == expected
    for path in partitions:
        p = float(path.name.split("x_")[0])
        _, sub = read_csv(path)
        sub_train = [r for r in sub if r["split"] == "train"]
        assert [r for r in sub if r["split"] != "train"] == fixed
        assert all(r in train for r in sub_train) and 1 <= len(sub_train) <= len(train)
        if not card.multilabel:
            assert {int(r["label"]) for r in sub_train} == set(range(card.num_classes))
            assert len(sub_train) == sum(
                max(1, round(p * sum(int(r["label"]) == c for r in train)))
                for c in range(card.num_classes))


@pytest.mark.parametrize("name", SEG)
def test_folder_segmentation_layout(folder_suite: Path, name: str) -> None:
    card, root = get_card(name), folder_suite / name
    assert read_mapping(root) == synthetic_class_names(card)
    assert (root / "SYNTHETIC.md").exists()
    file_ids = {}
    for split in SPLITS:
        images = sorted((root / "data" / split / "images").iterdir())
        masks = sorted((root / "data" / split / "masks").iterdir())
        assert images and len(images) == len(masks)
        file_ids[split] = {p.name for p in images}
        for image_path in images:
            if card.bands == 7:
                assert image_path.name.startswith("Image") and image_path.suffix == ".tif"
                mask_path = image_path.parent.parent / "masks" / image_path.name.replace(
                    "Image", "Mask")
                image = tifffile.imread(image_path)
                assert image.shape == (32, 32, 7) and image.dtype == np.float32
                mask = tifffile.imread(mask_path)
            else:
                mask_path = image_path.parent.parent / "masks" / f"{image_path.stem}.png"
                with Image.open(image_path) as im:
                    assert im.mode == ("RGB" if card.bands == 3 else "L")
                    size = im.size
                with Image.open(mask_path) as m:
                    assert m.mode == "L" and m.size == size
                    mask = np.asarray(m)
            assert mask.ndim == 2 and mask.max() < card.num_classes, mask_path
    for path in (root / "partitions").glob("*.csv"):
        header, rows = read_csv(path)
        assert header == ["file_id", "split"]
        by_split = {s: {r["file_id"] for r in rows if r["split"] == s} for s in SPLITS}
        assert by_split["val"] == file_ids["val"] and by_split["test"] == file_ids["test"]
        assert by_split["train"] and by_split["train"] <= file_ids["train"]
    assert sorted(p.name for p in (root / "partitions").glob("*.csv")) == sorted(
        f"{p:.2f}x_partition.csv" for p in card.partitions)


def boxes_yolo(path: Path, w: int, h: int) -> list[tuple[int, ...]]:
    out = []
    for line in path.read_text().splitlines():
        cls, cx, cy, bw, bh = line.split()
        cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
        out.append((int(cls), *(round(v) for v in (cx - bw / 2, cy - bh / 2, cx + bw / 2,
                                                    cy + bh / 2))))
    return out


def boxes_voc(path: Path, names: list[str]) -> list[tuple[int, ...]]:
    root = ET.parse(path).getroot()
    return [(names.index(o.findtext("name")),
             *(int(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")))
            for o in root.iter("object")]


@pytest.mark.parametrize("name", DET)
def test_detection_formats_agree_box_for_box(folder_suite: Path, name: str) -> None:
    from pycocotools.coco import COCO

    card, root = get_card(name), folder_suite / name
    names = read_mapping(root)
    assert names == list(card.class_names)
    negatives = total = 0
    for split in SPLITS:
        split_dir = root / "data" / split
        coco = COCO(str(split_dir / "coco_annotations.json"))
        assert [c["id"] for c in coco.loadCats(coco.getCatIds())] == list(range(1, len(names) + 1))
        assert {i["file_name"] for i in coco.dataset["images"]} == {
            p.name for p in (split_dir / "images").iterdir()}
        inside, outside = [], []
        for info in coco.dataset["images"]:
            stem = Path(info["file_name"]).stem
            with Image.open(split_dir / "images" / info["file_name"]) as im:
                assert im.size == (info["width"], info["height"])
                pixels = np.asarray(im.convert("L"), np.float32)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]]))
            from_coco = [(a["category_id"] - 1, round(x), round(y), round(x + w), round(y + h))
                         for a in anns for x, y, w, h in [a["bbox"]]]
            from_yolo = boxes_yolo(split_dir / "labels" / f"{stem}.txt", info["width"],
                                   info["height"])
            from_voc = boxes_voc(split_dir / "pascal_voc" / f"{stem}.xml", names)
            assert from_coco == from_yolo == from_voc, (split, stem)
            for a in anns:
                assert a["area"] == a["bbox"][2] * a["bbox"][3] and a["iscrowd"] == 0
            negatives += not from_coco
            total += 1
            # Boxes sit on the drawn objects: pixels inside stand out from the terrain.
            dev = np.abs(pixels - np.median(pixels))
            box_mask = np.zeros(pixels.shape, bool)
            for _, x0, y0, x1, y1 in from_coco:
                assert 0 <= x0 < x1 <= info["width"] and 0 <= y0 < y1 <= info["height"]
                box_mask[y0:y1, x0:x1] = True
            inside.append(dev[box_mask])
            outside.append(dev[~box_mask])
        assert np.concatenate(inside).mean() > 2 * np.concatenate(outside).mean(), split
    assert 0 < negatives < total


# ---- Hugging Face layout -------------------------------------------------------------------
@pytest.mark.parametrize("name", [c.name for c in CARDS])
def test_hf_reads_back_with_features_and_splits(folder_suite: Path, hf_suite: Path,
                                                 tmp_path: Path, name: str) -> None:
    card, root = get_card(name), hf_suite / name
    names = read_mapping(root)
    assert names == read_mapping(folder_suite / name)
    readme = (root / "README.md").read_text()
    assert "SYNTHETIC" in readme and "configs:" not in readme
    dd = load_hf(root, tmp_path / "cache")
    assert set(dd) == expected_hf_splits(folder_suite / name, name)
    feats = dd["train"].features
    if card.task is Task.CLASSIFICATION:
        _, rows = read_csv(root / "annotation.csv")
        assert rows == read_csv(folder_suite / name / "annotation.csv")[1]
        for split in SPLITS:
            assert len(dd[split]) == sum(r["split"] == split for r in rows)
        if card.multilabel:
            assert set(feats) == {"image", "labels", "feature_names"}
            assert feats["labels"].feature.dtype == "int8"
            train_rows = [r for r in rows if r["split"] == "train"]
            for row, ex in zip(train_rows, dd["train"]):
                hot = np.zeros(card.num_classes, int)
                hot[ast.literal_eval(row["label"])] = 1
                assert ex["labels"] == hot.tolist()
                assert ex["feature_names"] == [names[j] for j in np.flatnonzero(hot)]
        else:
            image_cols = ["image_before", "image_after"] if card.image_pair else ["image"]
            assert set(feats) == {*image_cols, "label"}
            assert isinstance(feats["label"], datasets.ClassLabel) and feats["label"].names == names
            # Same bytes as the folder layout, row for row.
            raw = dd["train"].cast_column(image_cols[0], datasets.Image(decode=False))
            train_rows = [r for r in rows if r["split"] == "train"]
            for row, ex in zip(train_rows, raw):
                folder_file = (folder_suite / name / "data/train" / row["feature_name"]
                               / row["file_id"])
                assert ex[image_cols[0]]["bytes"] == folder_file.read_bytes()
                assert ex["label"] == int(row["label"])
        for k_split in (s for s in dd if s.startswith("few_shot_train_")):
            k = int(k_split.split("_")[3])
            _, sub = read_csv(folder_suite / name / "few_shot" / f"{k}_shot.csv")
            assert len(dd[k_split]) == sum(r["split"] == "train" for r in sub)
    elif card.task is Task.SEGMENTATION:
        assert set(feats) == {"image", "mask", "width", "height", "class_labels"}
        if card.bands == 7:
            assert isinstance(feats["image"], datasets.Array3D)
        for split in SPLITS:
            masks = list((folder_suite / name / "data" / split / "masks").iterdir())
            assert len(dd[split]) == len(masks)
        for ex in dd["val"]:
            mask = np.asarray(ex["mask"])
            assert mask.ndim == 2 and mask.max() < card.num_classes
            assert (ex["width"], ex["height"]) == mask.shape[::-1]
            assert ex["class_labels"] == [names[v] for v in np.unique(mask)]
            if card.bands == 7:
                assert np.asarray(ex["image"]).shape == (32, 32, 7)
    else:
        assert set(feats) == {"image", "image_id", "width", "height", "yolo_annotation",
                              "coco_annotation", "pascal_voc_annotation"}
        coco = json.loads((folder_suite / name / "data/train/coco_annotations.json").read_text())
        for ex in dd["train"]:
            w, h = ex["width"], ex["height"]
            yolo = [(names.index(c), *(round(v) for v in ((cx - bw / 2) * w, (cy - bh / 2) * h,
                                                          (cx + bw / 2) * w, (cy + bh / 2) * h)))
                    for (cx, cy, bw, bh), c in zip(ex["yolo_annotation"]["bbox"],
                                                   ex["yolo_annotation"]["category"])]
            anns = ex["coco_annotation"]["annotations"]
            from_coco = [(c - 1, round(x), round(y), round(x + bw), round(y + bh))
                         for c, (x, y, bw, bh) in zip(anns["category_id"], anns["bbox"])]
            objs = ex["pascal_voc_annotation"]["objects"]
            voc = [(names.index(n), b["xmin"], b["ymin"], b["xmax"], b["ymax"])
                   for n, b in zip(objs["name"], objs["bbox"])]
            assert yolo == from_coco == voc
            folder_anns = [a for a in coco["annotations"] if a["image_id"] == ex["image_id"]]
            assert anns["bbox"] == [a["bbox"] for a in folder_anns]
            assert ex["pascal_voc_annotation"]["filename"] == coco["images"][ex["image_id"] - 1][
                "file_name"]


def test_hf_split_names_inferred_without_configs(hf_suite: Path, tmp_path: Path) -> None:
    """The card has no `configs` block, so `datasets` must find the splits from shard names."""
    dd = datasets.load_dataset(str(hf_suite / "mb-landmark_cls"), cache_dir=str(tmp_path))
    assert {"train", "val", "test", "few_shot_train_5_shot",
            "partition_train_0.01x_partition"} <= set(dd)


# ---- class names ---------------------------------------------------------------------------
def test_class_names_never_invented() -> None:
    surface = synthetic_class_names(get_card("mb-surface_cls"))
    assert surface[:22] == [get_card("mb-surface_cls").known_class_names[i] for i in range(22)]
    assert surface[22:] == [f"synthetic_class_{i}" for i in range(22, 36)]
    s5mars = synthetic_class_names(get_card("mb-s5mars"))  # mirrors the card: 10, not 9
    assert s5mars == [f"synthetic_class_{i}" for i in range(10)]
    frost = synthetic_class_names(get_card("mb-frost_cls"))
    assert frost == ["synthetic_class_0", "synthetic_class_1"]
    assert synthetic_class_names(get_card("mb-landmark_cls"))[6] == "swiss cheese"


# ---- labels are visible in the pixels ------------------------------------------------------
def _image_features(data: bytes) -> np.ndarray:
    a = np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32) / 255
    small = np.asarray(Image.fromarray(a).resize((8, 8), Image.Resampling.BOX)).ravel()
    gy, gx = np.gradient(a)
    grad = np.hypot(gx, gy)
    orient = np.histogram(np.arctan2(gy, gx) % np.pi, 8, (0, np.pi), weights=grad)[0]
    return np.concatenate([small, np.histogram(a, 16, (0, 1))[0] / a.size,
                           orient / (grad.sum() + 1e-6), [a.std(), grad.mean()]])


@pytest.mark.parametrize(("name", "scale"), [("mb-landmark_cls", 4), ("mb-frost_cls", 3)])
def test_classification_labels_are_learnable(name: str, scale: int) -> None:
    ds = build(get_card(name), seed=0, scale=scale)

    def xy(split: str):
        recs = ds.records[split]
        features = np.array([_image_features(r.images[0]) for r in recs])
        return features, np.array([r.label for r in recs])

    (x_train, y_train), (x_test, y_test) = xy("train"), xy("test")
    clf = RandomForestClassifier(100, random_state=0).fit(x_train, y_train)
    accuracy = (clf.predict(x_test) == y_test).mean()
    majority = np.bincount(y_test).max() / len(y_test)
    assert accuracy >= majority + 0.3, (accuracy, majority)


def _pixel_features(image: np.ndarray) -> np.ndarray:
    a = image[..., 0].astype(np.float32) / 255
    smooth = ndimage.gaussian_filter(a, 2)
    feats = [a, ndimage.gaussian_filter(a, 1), ndimage.gaussian_filter(a, 3),
             ndimage.gaussian_gradient_magnitude(a, 1), ndimage.gaussian_gradient_magnitude(a, 2),
             np.sqrt(np.maximum(ndimage.gaussian_filter(a * a, 2) - smooth**2, 0))]
    return np.stack(feats, -1).reshape(-1, len(feats))


def test_segmentation_masks_are_learnable() -> None:
    ds = build(get_card("mb-crater_binary_seg"), seed=0, scale=2)

    def xy(split: str):
        recs = ds.records[split]
        return (np.concatenate([_pixel_features(r.pixels) for r in recs]),
                np.concatenate([r.mask_pixels.ravel() for r in recs]))

    (x_train, y_train), (x_test, y_test) = xy("train"), xy("test")
    pick = np.random.default_rng(0).choice(len(y_train), 20000, replace=False)
    clf = RandomForestClassifier(40, max_depth=12, random_state=0).fit(x_train[pick], y_train[pick])
    miou = jaccard_score(y_test, clf.predict(x_test), average="macro")
    all_background = jaccard_score(y_test, np.zeros_like(y_test), average="macro",
                                   labels=[0, 1], zero_division=0)
    assert miou >= all_background + 0.25, (miou, all_background)


# ---- determinism and safety ----------------------------------------------------------------
def _tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.mark.parametrize(("name", "fmt"), [("mb-change_cls_hirise", "folder"),
                                           ("mb-boulder_det", "hf")])
def test_same_seed_gives_identical_bytes(tmp_path: Path, name: str, fmt: str) -> None:
    a = _tree(generate(name, tmp_path / "a", fmt, seed=3))
    b = _tree(generate(name, tmp_path / "b", fmt, seed=3))
    assert a == b and len(a) >= 10
    c = _tree(generate(name, tmp_path / "c", fmt, seed=4))
    assert a.keys() == c.keys() and a != c


def test_generate_replaces_synthetic_but_refuses_real_data(tmp_path: Path) -> None:
    first = generate("mb-boulder_seg", tmp_path, scale=0.5)
    n_small = len(list(first.rglob("*.png")))
    again = generate("mb-boulder_seg", tmp_path, scale=2)
    assert again == first and len(list(again.rglob("*.png"))) > n_small
    real = tmp_path / "real" / "mb-frost_cls"
    real.mkdir(parents=True)
    (real / "annotation.csv").write_text("file_id,feature_name,label,split\n")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        generate("mb-frost_cls", tmp_path / "real")
    assert (real / "annotation.csv").exists()
    with pytest.raises(ValueError, match="unknown synthetic format"):
        generate("mb-frost_cls", tmp_path, "zip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale must be > 0"):
        generate("mb-frost_cls", tmp_path, scale=0)


def test_scale_multiplies_counts_within_real_sizes() -> None:
    small = build(get_card("mb-landmark_cls"), scale=1)
    big = build(get_card("mb-landmark_cls"), scale=2)
    assert len(big.records["train"]) == 2 * len(small.records["train"]) == 80
    boulder = build(get_card("mb-boulder_seg"), scale=100)
    assert {s: len(r) for s, r in boulder.records.items()} == {"train": 39, "val": 6, "test": 4}

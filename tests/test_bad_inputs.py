"""Each bad input is listed by `datasets check` and raises a named error when loaded in a run."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from marsbench.sources import DataError, open_dataset
from marsbench.sources.check import check_dataset


def _problems(root, **kw):
    report = check_dataset(root, **kw)
    return [f"{p.path}: {p.message}" for p in report.problems]


def _first_file(root, split="train"):
    df = pd.read_csv(root / "annotation.csv", dtype=str)
    row = df[df.split == split].iloc[0]
    return root / "data" / split / row.feature_name / row.file_id, row.file_id


def test_truncated_image(writable_copy):
    root = writable_copy("mb-landmark_cls-mini")
    path, file_id = _first_file(root)
    path.write_bytes(path.read_bytes()[:300])
    assert any(file_id in p and "truncated" in p for p in _problems(root))
    ds = open_dataset(root, "train")
    with pytest.raises(DataError, match=rf"^unreadable or truncated image .*"
                                        rf"\(mb-landmark_cls-mini/data/train/\w+/{file_id}\); "
                                        r"re-download"):
        ds[ds.sample_ids.index(file_id)]


def test_referenced_file_missing(writable_copy):
    root = writable_copy("mb-landmark_cls-mini")
    path, file_id = _first_file(root, "val")
    path.unlink()
    assert any(file_id in p and "missing" in p for p in _problems(root))
    ds = open_dataset(root, "val")
    with pytest.raises(DataError, match=rf"^file referenced but missing "
                                        rf"\(mb-landmark_cls-mini/data/val/\w+/{file_id}\)"):
        ds[ds.sample_ids.index(file_id)]


def test_file_present_but_not_referenced(writable_copy):
    root = writable_copy("mb-landmark_cls-mini")
    stray = root / "data" / "test" / "crater" / "stray.jpg"
    Image.new("L", (8, 8)).save(stray)
    assert any("stray.jpg" in p and "not referenced" in p for p in _problems(root))


def test_label_out_of_range(writable_copy):
    root = writable_copy("mb-landmark_cls-mini")
    df = pd.read_csv(root / "annotation.csv", dtype=str)
    df.loc[5, "label"] = "9"
    df.to_csv(root / "annotation.csv", index=False)
    with pytest.raises(DataError, match=r"^label out of range 0\.\.7 \(mb-landmark_cls-mini "
                                        r"\w+ annotation\.csv row 7\): '9'; fix"):
        open_dataset(root, df.loc[5, "split"])


def test_duplicated_ids_across_splits(writable_copy):
    root = writable_copy("mb-landmark_cls-mini")
    df = pd.read_csv(root / "annotation.csv", dtype=str)
    row = df[df.split == "train"].iloc[0].copy()
    src = root / "data" / "train" / row.feature_name / row.file_id
    dest = root / "data" / "test" / row.feature_name / row.file_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes())
    row["split"] = "test"
    pd.concat([df, row.to_frame().T]).to_csv(root / "annotation.csv", index=False)
    assert any("both splits" in p and row.file_id in p for p in _problems(root))


def _first_mask(root, split="train"):
    return sorted((root / "data" / split / "masks").glob("*.png"))[0]


def test_mask_value_out_of_range_and_ignore_option(writable_copy):
    root = writable_copy("ai4mars_seg-mini")
    mask_path = _first_mask(root)
    mask = np.array(Image.open(mask_path))
    mask[0, 0] = 7
    Image.fromarray(mask).save(mask_path)
    problems = _problems(root)
    assert any(mask_path.name in p and "mask value 7 >= 4 classes" in p for p in problems)
    ds = open_dataset(root, "train")
    with pytest.raises(DataError, match=rf"^mask value 7 >= 4 classes "
                                        rf"\(ai4mars_seg-mini/data/train/masks/{mask_path.name}\)"):
        ds[ds.sample_ids.index(mask_path.stem)]
    # 255 is declared as the ignore value in mapping.json; without it, 255 is an error too ...
    (root / "mapping.json").write_text('{"0": "soil", "1": "bedrock", "2": "sand", "3": "big rock"}')
    mask[0, 0] = 0
    Image.fromarray(mask).save(mask_path)
    assert any("mask value 255" in p for p in _problems(root))
    # ... unless the user names the ignore value
    assert _problems(root, ignore_index=255) == []


def test_image_mask_size_mismatch(writable_copy):
    root = writable_copy("ai4mars_seg-mini")
    mask_path = _first_mask(root, "val")
    Image.fromarray(np.zeros((100, 120), np.uint8)).save(mask_path)
    assert any(mask_path.name in p and "256x256 but mask is 120x100" in p for p in _problems(root))


def test_mask_without_image_and_image_without_mask(writable_copy):
    root = writable_copy("ai4mars_seg-mini")
    mask_path = _first_mask(root, "test")
    mask_path.rename(mask_path.with_name("orphan.png"))
    problems = _problems(root)
    assert any("orphan.png" in p and "no image" in p for p in problems)
    assert any(mask_path.stem in p and "no mask" in p for p in problems)
    with pytest.raises(DataError, match=rf"{mask_path.stem}.*has no mask"):
        open_dataset(root, "test")


def _edit_voc(root, split, edit):
    xml = sorted((root / "data" / split / "pascal_voc").glob("*.xml"))[0]
    xml.write_text(edit(xml.read_text()))
    return xml


def test_box_outside_image(writable_copy):
    root = writable_copy("crater_det-mini")
    xml = _edit_voc(root, "train", lambda t: t.replace("<xmax>", "<xmax>9", 1))
    problems = _problems(root)
    assert any(xml.stem in p and "outside the 416x416 image" in p for p in problems)
    ds = open_dataset(root, "train")
    with pytest.raises(DataError, match=rf"^box \[[^]]+\] lies outside the 416x416 image "
                                        rf"\(crater_det-mini/data/train/images/{xml.stem}\.jpg\)"):
        ds[ds.sample_ids.index(xml.stem)]


def test_zero_area_box(writable_copy):
    root = writable_copy("crater_det-mini")

    def collapse(text):
        import re
        xmin = re.search(r"<xmin>(\d+)</xmin>", text).group(1)
        return re.sub(r"<xmax>\d+</xmax>", f"<xmax>{xmin}</xmax>", text, count=1)

    xml = _edit_voc(root, "val", collapse)
    assert any(xml.stem in p and "zero area" in p for p in _problems(root))


def test_detection_class_out_of_range_in_yolo(writable_copy):
    root = writable_copy("crater_det-mini")
    txt = sorted((root / "data" / "test" / "labels").glob("*.txt"))[0]
    txt.write_text("3 0.5 0.5 0.1 0.1\n")
    ds = open_dataset(root, "test", annotation_format="yolo")
    with pytest.raises(DataError, match=r"^YOLO class 3 out of range 0\.\.0 "
                                        rf"\(crater_det-mini/data/test/labels/{txt.stem}\.txt "
                                        r"row 1\)"):
        ds[ds.sample_ids.index(txt.stem)]
    assert any(txt.stem in p and "YOLO class 3 out of range" in p for p in _problems(root))

"""Every one of the 20 cards loads from synthetic fixtures in both public layouts, identically.

The HF layout is read through the real `datasets` library; the folder layout through our CSV /
mask / YOLO-COCO-VOC readers. Both must give the same samples, split by split.
"""

import hashlib

import numpy as np
import pytest

from marsbench.catalog import CARDS, Task, TaskKind
from marsbench.sources import ClassificationSample, DetectionSample, SegmentationSample, open_dataset
from marsbench.sources.check import check_dataset

NAMES = [c.name for c in CARDS]
SAMPLE_TYPE = {Task.CLASSIFICATION: ClassificationSample, Task.SEGMENTATION: SegmentationSample,
               Task.DETECTION: DetectionSample}


def _digest(sample) -> tuple:
    """Order-free identity of a sample: its pixels and its labels."""
    h = hashlib.sha1()
    images = sample.images if isinstance(sample, ClassificationSample) else (sample.image,)
    for im in images:
        h.update(np.ascontiguousarray(im).tobytes())
    if isinstance(sample, ClassificationSample):
        label = np.asarray(sample.target).tobytes()
    elif isinstance(sample, SegmentationSample):
        label = sample.mask.tobytes()
    else:
        order = np.lexsort(sample.boxes.T[::-1]) if len(sample.boxes) else []
        label = sample.boxes[order].tobytes() + sample.labels[order].tobytes()
    return h.hexdigest(), hashlib.sha1(label).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_card_loads_identically_from_both_layouts(synth_suite, name):
    card = next(c for c in CARDS if c.name == name)
    folder, hf = synth_suite["folder"][name], synth_suite["hf"][name]
    for split in ("train", "val", "test"):
        a, b = open_dataset(folder, split), open_dataset(hf, split)
        assert (a.source, b.source) == ("folder", "hf")
        assert a.card.name == b.card.name == name  # the folder name resolves to the catalog card
        assert a.card.synthetic and b.card.synthetic  # ... marked as the SYNTHETIC copy it is
        assert len(a) == len(b) > 0
        assert a.class_names == b.class_names and len(a.class_names) == card.num_classes
        sa, sb = a[0], b[0]
        assert type(sa) is type(sb) is SAMPLE_TYPE[card.task]
        assert sa.image.ndim == 3 and sa.image.shape[2] == card.bands
        assert sa.image.dtype == (np.float32 if name == "mb-mmls" else np.uint8)
        if card.task is Task.CLASSIFICATION:
            assert len(sa.images) == (2 if card.kind is TaskKind.IMAGE_PAIR else 1)
            if card.kind is TaskKind.MULTILABEL:
                assert sa.target.shape == (card.num_classes,) and sa.target.dtype == np.int8
            else:
                assert all(0 <= t < card.num_classes for t in a.targets)
        elif card.task is Task.SEGMENTATION:
            assert sa.mask.dtype == np.int64 and sa.mask.shape == sa.image.shape[:2]
            assert sa.mask.max() < card.num_classes
        else:
            assert sa.boxes.dtype == np.float32 and sa.labels.dtype == np.int64
            assert all(set(a[i].labels.tolist()) <= {1} for i in range(len(a)))
        assert sorted(map(_digest, a)) == sorted(map(_digest, b))


@pytest.mark.parametrize("name", ["mb-boulder_det", "mb-conequest_det", "mb-dust_devil_det"])
@pytest.mark.parametrize("layout", ["folder", "hf"])
def test_yolo_coco_voc_agree_box_for_box(synth_suite, name, layout):
    path = synth_suite[layout][name]
    for split in ("train", "val", "test"):
        sets = {f: open_dataset(path, split, annotation_format=f) for f in ("voc", "coco", "yolo")}
        negatives = 0
        for i in range(len(sets["voc"])):
            ref = sets["voc"][i]
            negatives += ref.is_negative
            for fmt in ("coco", "yolo"):
                other = sets[fmt][i]
                assert other.sample_id == ref.sample_id
                np.testing.assert_allclose(other.boxes, ref.boxes, atol=1e-3)
                assert other.labels.tolist() == ref.labels.tolist()
        kept = open_dataset(path, split, drop_negatives=True)
        assert len(kept) == len(sets["voc"]) - negatives


@pytest.mark.parametrize("layout", ["folder", "hf"])
def test_variants_change_train_only(synth_suite, layout):
    path = synth_suite[layout]["mb-landmark_cls"]
    full = open_dataset(path, "train")
    few = open_dataset(path, "train", variant="few_shot:2")
    assert np.bincount(few.targets, minlength=8).tolist() == [2] * 8
    part = open_dataset(path, "train", variant="partition:0.50")
    assert 0 < len(part) < len(full)
    assert len(open_dataset(path, "val", variant="few_shot:2")) == len(open_dataset(path, "val"))
    assert str(few.variant) == "few_shot:2"


@pytest.mark.parametrize("layout", ["folder", "hf"])
def test_unpublished_variant_lists_the_available_ones(synth_suite, layout):
    from marsbench.sources import VariantUnavailableError

    with pytest.raises(VariantUnavailableError, match="few_shot:20"):
        open_dataset(synth_suite[layout]["mb-landmark_cls"], "train", variant="few_shot:20")
    with pytest.raises(VariantUnavailableError):
        open_dataset(synth_suite[layout]["mb-boulder_seg"], "train", variant="partition:0.01")


def test_segmentation_partition_in_both_layouts(synth_suite):
    a = open_dataset(synth_suite["folder"]["mb-crater_multi_seg"], "train", variant="partition:0.50")
    b = open_dataset(synth_suite["hf"]["mb-crater_multi_seg"], "train", variant="partition:0.50")
    assert len(a) == len(b) < len(open_dataset(synth_suite["folder"]["mb-crater_multi_seg"], "train"))


def test_hf_few_shot_leak_is_caught(synth_suite, tmp_path):
    """An earlier HF upload put val/test rows inside each few-shot split: check must say so."""
    import shutil

    import datasets

    root = tmp_path / "mb-surface_multi_label_cls"
    shutil.copytree(synth_suite["hf"]["mb-surface_multi_label_cls"], root)
    shard = next((root / "data").glob("few_shot_train_1_shot-*.parquet"))
    val = next((root / "data").glob("val-*.parquet"))
    leaked = datasets.concatenate_datasets([
        datasets.load_dataset("parquet", data_files=str(f), split="train") for f in (shard, val)])
    leaked.to_parquet(str(shard))
    report = check_dataset(root)
    assert any("leak into the few_shot:1 train split" in p.message for p in report.problems)


def test_class_order_permutation_is_refused(synth_suite, tmp_path):
    """Codes passed alphabetically would silently relabel every DoMars16k image: refuse it."""
    import json
    import shutil

    from marsbench.sources import DataError

    root = tmp_path / "mb-domars16k"
    shutil.copytree(synth_suite["folder"]["mb-domars16k"], root)
    mapping = json.loads((root / "mapping.json").read_text())
    codes = sorted(mapping.values())
    (root / "mapping.json").write_text(json.dumps({str(i): c for i, c in enumerate(codes)}))
    with pytest.raises(DataError, match="class order differs from the published one"):
        open_dataset(root, "train")


def test_catalog_name_resolves_under_root(synth_suite):
    root = synth_suite["folder"]["mb-frost_cls"].parent
    ds = open_dataset("mb-frost_cls", "val", root=root)
    assert ds.source == "folder" and len(ds) == 4


def test_not_present_locally_says_how_to_get_it(tmp_path):
    from marsbench.sources import DataError

    with pytest.raises(DataError, match="marsbench datasets download mb-frost_cls"):
        open_dataset("mb-frost_cls", "train", root=tmp_path)

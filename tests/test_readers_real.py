"""The real subsets in ../shared/data load as user datasets with the counts their READMEs state."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from marsbench.catalog import Task, TaskKind
from marsbench.cli.main import app
from marsbench.sources import DataError, open_dataset
from marsbench.sources.check import check_dataset

COUNTS = {
    "mb-landmark_cls-mini": (196, 67, 68),
    "mb-surface_cls-mini": (96, 110, 369),
    "ai4mars_seg-mini": (120, 30, 30),
    "crater_det-mini": (74, 63, 63),
}


def _surface_with_sun(writable_copy):
    """mb-surface_cls-mini with the id its mapping.json leaves out (22, "sun", per PROVENANCE)."""
    root = writable_copy("mb-surface_cls-mini")
    mapping = json.loads((root / "mapping.json").read_text())
    mapping["22"] = "sun"
    (root / "mapping.json").write_text(json.dumps(mapping))
    return root


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_counts_and_clean_check(shared_data, writable_copy, name):
    folder = _surface_with_sun(writable_copy) if name == "mb-surface_cls-mini" else shared_data / name
    sizes = tuple(len(open_dataset(folder, s)) for s in ("train", "val", "test"))
    assert sizes == COUNTS[name]
    report = check_dataset(folder)
    assert report.ok, report.problems[:5]
    assert report.counts == dict(zip(("train", "val", "test"), COUNTS[name]))


def test_landmark_classes_and_samples(shared_data):
    ds = open_dataset(shared_data / "mb-landmark_cls-mini", "train")
    assert ds.card.task is Task.CLASSIFICATION and ds.card.kind is TaskKind.MULTICLASS
    assert ds.class_names == ["other", "crater", "dark dune", "slope streak", "bright dune",
                              "impact ejecta", "swiss cheese", "spider"]
    sample = ds[0]
    assert sample.image.shape == (227, 227, 1) and sample.image.dtype == np.uint8
    # every label is in range and matches the class folder the file sits in
    counts = np.bincount(ds.targets, minlength=8)
    assert counts.sum() == 196 and (counts > 0).sum() >= 6


def test_surface_mini_mapping_gap_is_refused_not_invented(shared_data, writable_copy):
    # id 22 ("sun") has no entry in the shared mapping.json: no name is made up for it
    with pytest.raises(DataError, match=r"^mapping\.json: class ids have gaps \(.*mapping\.json\): "
                                        r"missing 22 of 0\.\.24; add the missing ids"):
        open_dataset(shared_data / "mb-surface_cls-mini", "test")
    report = check_dataset(shared_data / "mb-surface_cls-mini")
    assert not report.ok and any("missing 22" in p.message for p in report.problems)
    ds = open_dataset(_surface_with_sun(writable_copy), "test")
    assert ds.num_classes == 25
    assert ds.class_names[24] == "wheel" and ds.class_names[22] == "sun"
    assert ds[0].image.shape[2] == 3


def test_ai4mars_ignore_value_255(shared_data):
    ds = open_dataset(shared_data / "ai4mars_seg-mini", "val")
    assert ds.ignore_index == 255 and ds.class_names == ["soil", "bedrock", "sand", "big rock"]
    mask = ds[0].mask
    assert mask.dtype == np.int64 and set(np.unique(mask)) <= {0, 1, 2, 3, 255}


def test_crater_formats_agree_box_for_box(shared_data):
    by_format = {f: open_dataset(shared_data / "crater_det-mini", "val", annotation_format=f)
                 for f in ("voc", "coco", "yolo")}
    for i in range(5):
        ref = by_format["voc"][i]
        assert ref.labels.tolist() == [1] * len(ref.labels)
        for fmt in ("coco", "yolo"):
            other = by_format[fmt][i]
            assert len(other.boxes) == len(ref.boxes)
            # VOC rounds to integer pixels: boxes agree to within a pixel, matched by position
            a, b = np.sort(ref.boxes, axis=0), np.sort(other.boxes, axis=0)
            assert np.abs(a - b).max() <= 1.0


def test_check_cli_reports_clean(shared_data):
    result = CliRunner().invoke(app, ["datasets", "check", str(shared_data / "crater_det-mini")])
    assert result.exit_code == 0, result.output
    assert "clean" in result.output


def test_own_stratified_subset_is_recorded_and_reproducible(writable_copy):
    root = writable_copy("mb-landmark_cls-mini")
    ds = open_dataset(root, "train", variant="few_shot:2", subset_seed=3)
    labels = np.bincount(ds.targets, minlength=8)
    assert labels.max() <= 2 and (labels == 2).sum() >= 5  # 2 per class where 2 exist
    saved = root / "marsbench_subsets" / "few_shot_2_shot_seed3.csv"
    assert saved.is_file()
    again = open_dataset(root, "train", variant="few_shot:2", subset_seed=3)
    assert again.sample_ids == ds.sample_ids
    other = open_dataset(root, "train", variant="few_shot:2", subset_seed=4)
    assert other.sample_ids != ds.sample_ids
    # val/test unchanged by a variant
    assert len(open_dataset(root, "val", variant="few_shot:2", subset_seed=3)) == 67
    part = open_dataset(root, "train", variant="partition:0.25", subset_seed=0)
    assert 40 <= len(part) <= 60


def test_missing_variant_lists_what_exists(shared_data):
    from marsbench.sources import VariantUnavailableError

    with pytest.raises(VariantUnavailableError, match="few_shot/5_shot.csv.*subset"):
        open_dataset(shared_data / "mb-landmark_cls-mini", "train", variant="few_shot:5")

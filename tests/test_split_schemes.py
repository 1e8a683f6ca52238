"""Split schemes (`RunSpec.split`, `marsbench.sources.splits`): observation-disjoint and
latitude-band re-draws on planted groups and on the real HiRISE names of mb-landmark_cls-mini,
their refusals, a tiny end-to-end run, the experiment axis and the report section."""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from marsbench.errors import OptionError
from marsbench.runs import RunSpec
from marsbench.runs.data import open_splits
from marsbench.sources.audit import observation_id
from marsbench.sources.errors import DataError
from marsbench.sources.splits import (REGIONS, assign_groups, draw_assignment, parse_scheme)

from conftest import need_shared

pytestmark = pytest.mark.usefixtures("isolated_cache")  # draws are saved under the cache


def _groups(split: list[str], groups: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = collections.defaultdict(set)
    for s, g in zip(split, groups):
        out[s].add(g)
    return out


def _planted(seed: int = 0, n_groups: int = 120):
    """Groups of 1-6 images, each group one class of 4 (as tiles of one observation are)."""
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for g in range(n_groups):
        size, cls = int(rng.integers(1, 7)), int(rng.integers(0, 4))
        groups += [f"G{g}"] * size
        labels += [cls] * size
    return groups, np.eye(4)[labels]


# -- the draw ------------------------------------------------------------------------------------

def test_observation_disjoint_draw_shares_no_group_and_keeps_the_proportions():
    groups, labels = _planted()
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    split = assign_groups(groups, labels, fractions, seed=0)
    by_split = _groups(split, groups)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not by_split[a] & by_split[b]
    n = len(groups)
    for s, f in fractions.items():
        assert abs(split.count(s) / n - f) < 0.02, (s, split.count(s), n)
    # stratified: each class's share of test within a few points of the pool's
    test = np.array([s == "test" for s in split])
    assert np.allclose(labels[test].mean(0), labels.mean(0), atol=0.06)


def test_draw_is_reproducible_for_a_seed_and_differs_for_another():
    groups, labels = _planted()
    fractions = {"train": 6, "val": 2, "test": 2}  # counts work as well as fractions
    first = assign_groups(groups, labels, fractions, seed=3)
    assert first == assign_groups(groups, labels, fractions, seed=3)
    assert first != assign_groups(groups, labels, fractions, seed=4)


def test_latitude_band_puts_exactly_the_in_band_images_in_test():
    # HiRISE target codes: 0900 south pole (-90), 0750 -75, 1350 -45, 1800 equator, 2535 73.5,
    # 1100 -70, 2000 20, 1600 -20
    codes = ["0900", "0750", "1350", "1800", "2535", "1100", "2000", "1600"]
    ids = [f"ESP_{100000 + 10 * k + j:06d}_{code}_RED-{j:04d}.jpg"
           for k, code in enumerate(codes) for j in range(4)]
    ids.append("no_product_id_here.jpg")
    origins = (["train", "val", "test"] * 20)[:len(ids)]
    rows = draw_assignment(parse_scheme("region:south_polar"), ids, origins, None,
                           multilabel=False, seed=0, dataset="planted")
    lat = {r["file_id"]: observation_id(r["file_id"]) for r in rows}
    test = {r["file_id"] for r in rows if r["split"] == "test"}
    assert test == {i for i, o in lat.items() if o and -90 <= o.latitude < -60}
    assert len(test) == 12  # the 0900, 0750 and 1100 tiles
    excluded = [r["file_id"] for r in rows if r["split"] == "excluded"]
    assert excluded == ["no_product_id_here.jpg"]
    train_val = _groups([r["split"] for r in rows], [r["group"] for r in rows])
    assert train_val["train"] and train_val["val"] and not train_val["train"] & train_val["val"]
    band = draw_assignment(parse_scheme("latitude_band:-50:0.5"), ids, origins, None,
                           multilabel=False, seed=0, dataset="planted")
    assert {r["file_id"][:15] for r in band if r["split"] == "test"} == {
        i[:15] for i in ids if i.startswith("ESP") and -50 <= observation_id(i).latitude < 0.5}


@pytest.mark.parametrize("text, needle", [
    ("random", "unknown split scheme"), ("region", "unknown region"),
    ("region:southpole", "unknown region"), ("latitude_band:10", "bad latitude band"),
    ("latitude_band:a:b", "bad latitude band"), ("latitude_band:30:10", "lo < hi"),
    ("latitude_band:-100:0", "-90 <= lo"), ("official:1", "takes no parameter")])
def test_bad_schemes_are_refused_in_one_line(text, needle):
    with pytest.raises(OptionError) as err:
        RunSpec(dataset="mb-landmark_cls", model="efficientnet_lite0", regime="scratch",
                split=text)
    assert needle in str(err.value) and "\n" not in str(err.value) and text in str(err.value)


def test_datasets_without_ids_or_latitudes_are_refused_naming_the_dataset():
    with pytest.raises(OptionError, match="mb-surface_multi_label_cls .*no observation ids"):
        RunSpec(dataset="mb-surface_multi_label_cls", model="efficientnet_lite0",
                regime="scratch", split="observation_disjoint")
    with pytest.raises(OptionError, match="mb-crater_binary_seg .*no latitudes"):
        RunSpec(dataset="mb-crater_binary_seg", model="unet", regime="scratch",
                split="region:equatorial")
    with pytest.raises(DataError, match="no file name carries a product id"):
        draw_assignment(parse_scheme("observation_disjoint"), ["a.png", "b.png", "c.png"],
                        ["train", "val", "test"], None, multilabel=False, seed=0, dataset="x")
    with pytest.raises(DataError, match="2 observation groups are too few to fill test"):
        draw_assignment(parse_scheme("observation_disjoint"),
                        ["ESP_000001_1000_a.jpg", "ESP_000001_1000_b.jpg", "ESP_000002_1000.jpg"],
                        ["train", "val", "test"], None, multilabel=False, seed=0, dataset="x")


def test_split_is_keyed_labelled_and_described_only_when_not_official():
    base = dict(dataset="mb-landmark_cls", model="efficientnet_lite0", regime="scratch")
    official = RunSpec(**base)
    assert official.key == RunSpec(**base, split="official").key
    assert "split" not in official.identity() and "split" not in official.label
    disjoint = RunSpec(**base, split="Observation-Disjoint")
    assert disjoint.split == "observation_disjoint" and disjoint.key != official.key
    assert "split=observation_disjoint" in disjoint.label
    assert "split=observation_disjoint" in disjoint.describe()
    region = RunSpec(**base, split="region:south_polar")
    assert region.key not in (official.key, disjoint.key)
    assert RunSpec(**base, split="latitude_band:-90:-60.0").split == "latitude_band:-90:-60"
    assert REGIONS["south_polar"] == (-90.0, -60.0)


# -- the real HiRISE names -----------------------------------------------------------------------

def _hirise_groups(ds) -> set[str]:
    return {o.observation_id for o in map(observation_id, ds.sample_ids) if o is not None}


def test_real_landmark_official_split_leaks_and_the_disjoint_one_does_not():
    folder = need_shared("mb-landmark_cls-mini")
    base = dict(dataset=folder.name, data_root=str(folder.parent), model="efficientnet_lite0",
                regime="scratch")
    official = open_splits(RunSpec(**base))
    shared = _hirise_groups(official["train"]) & _hirise_groups(official["test"])
    leaked = [i for i in official["test"].sample_ids if observation_id(i).observation_id in shared]
    assert len(leaked) > len(official["test"]) / 2  # the audit: 56 of 68 test images
    disjoint = open_splits(RunSpec(**base, split="observation_disjoint"))
    groups = {s: _hirise_groups(d) for s, d in disjoint.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["val"]
    assert not groups["val"] & groups["test"]
    assert {s: len(d) for s, d in disjoint.items()} == {s: len(d) for s, d in official.items()}
    assert sorted(i for d in disjoint.values() for i in d.sample_ids) == sorted(
        i for d in official.values() for i in d.sample_ids)
    # saved and read back: the same draw, the same fingerprint
    again = open_splits(RunSpec(**base, split="observation_disjoint"))
    assert again["test"].sample_ids == disjoint["test"].sample_ids
    assert again["test"].fingerprint() == disjoint["test"].fingerprint()
    assert disjoint["test"].fingerprint() != official["test"].fingerprint()
    polar = open_splits(RunSpec(**base, split="region:south_polar"))
    assert all(observation_id(i).latitude < -60 for i in polar["test"].sample_ids)
    assert all(observation_id(i).latitude >= -60 for s in ("train", "val")
               for i in polar[s].sample_ids)


# -- end to end ----------------------------------------------------------------------------------

def _hirise_folder(root, n_obs: int = 12, tiles: int = 3):
    """A tiny classification folder whose file names are HiRISE ids; the official split puts
    tiles of one observation in train and test (as the real data does)."""
    folder = root / "hirise_toy"
    rows = []
    rng = np.random.default_rng(0)
    for k in range(n_obs):
        cls = k % 2
        for t in range(tiles):
            name = f"ESP_{20000 + k:06d}_{1000 + 100 * k:04d}_RED-{t:04d}.png"
            split = ("train", "val", "test")[t] if k < 6 else "train"
            path = folder / "data" / split / f"c{cls}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (16, 16), dtype=np.uint8) // (1 + cls)
            Image.fromarray(pixels).save(path)
            rows.append((name, f"c{cls}", cls, split))
    pd.DataFrame(rows, columns=["file_id", "feature_name", "label", "split"]).to_csv(
        folder / "annotation.csv", index=False)
    (folder / "mapping.json").write_text('{"0": "c0", "1": "c1"}')
    return folder


def test_a_tiny_observation_disjoint_run_trains_end_to_end(tmp_path):
    from marsbench.runs import ResultsStore
    from marsbench.training.run import run_experiment

    folder = _hirise_folder(tmp_path)
    base = dict(dataset=folder.name, data_root=str(folder.parent), model="efficientnet_lite0",
                regime="scratch", max_epochs=1, batch_size=8, options={"input_size": 32})
    spec = RunSpec(**base, split="observation_disjoint")
    store = ResultsStore(tmp_path / "runs.sqlite")
    record = run_experiment(spec, store=store)
    assert record.ok and record.spec_key == spec.key != RunSpec(**base).key
    info = record.extra["split"]
    assert info["scheme"] == "observation_disjoint" and info["excluded"] == 0
    assert sum(info[s]["images"] for s in ("train", "val", "test")) == 36
    assert record.extra["split_sizes"] == {s: info[s]["images"] for s in ("train", "val", "test")}
    assert store.get(spec.key).extra["split"] == info


def test_experiment_files_take_a_splits_axis(tmp_path):
    from marsbench.protocol.experiment import ExperimentError, load_experiment
    from marsbench.protocol.plan import grid_runs

    text = ("name: split_axis\ndatasets: [mb-landmark_cls]\nmodels: [efficientnet_lite0]\n"
            "regimes: [scratch]\ngrid_defaults: single\nseeds: [0]\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text(text)
    axis = tmp_path / "axis.yaml"
    axis.write_text(text + "splits: [official, observation_disjoint, region:south_polar]\n")
    exp_plain, exp = load_experiment(plain), load_experiment(axis)
    assert exp_plain.splits == ("official",)
    runs = grid_runs(exp)
    assert [r.spec.split for r in runs] == ["official", "observation_disjoint",
                                            "region:south_polar"]
    assert len({r.group for r in runs}) == 3 and len({r.key for r in runs}) == 3
    assert grid_runs(exp_plain)[0].key == runs[0].key
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "splits: [official, region:nowhere]\n")
    with pytest.raises(ExperimentError, match=r"bad.yaml:7: splits\[1\]: unknown region"):
        load_experiment(bad)


# -- the report ----------------------------------------------------------------------------------

def test_report_puts_official_and_held_out_scores_side_by_side():
    from marsbench.aggregate import default_normaliser
    from marsbench.report import build_report_data, render_markdown
    from marsbench.report.splits import split_comparison

    rows = []
    for label, values in (("m", [0.80, 0.82, 0.84]), ("m [split=observation_disjoint]",
                                                      [0.70, 0.71, 0.72]),
                          ("other", [0.6, 0.6, 0.6])):
        for seed, v in enumerate(values):
            rows.append((label, "mb-landmark_cls", "classification", "scratch", "full", seed,
                         "f1_weighted", v, "test", f"{label}{seed}"))
    table = pd.DataFrame(rows, columns=["model", "dataset", "task", "regime", "variant", "seed",
                                        "metric", "value", "split", "spec_key"])
    comp = split_comparison(table, rounds=2000, seed=0, confidence=0.95)
    assert len(comp) == 1
    row = comp.iloc[0]
    assert (row.model, row.scheme, row.official_runs, row.held_out_runs) == (
        "m", "observation_disjoint", 3, 3)
    assert row.difference == pytest.approx(0.71 - 0.82)
    assert row.ci_low <= row.difference <= row.ci_high < 0
    data = build_report_data(table, normaliser=default_normaliser(), rounds=50)
    assert len(data.sections.splits) == 1
    assert {"m", "m [split=observation_disjoint]"} <= set(data.table["model"])  # never pooled
    text = render_markdown(data, [])
    assert "Official vs re-drawn splits" in text and "observation_disjoint" in text
    official_only = table[~table["model"].str.contains("split=")]
    data = build_report_data(official_only, normaliser=default_normaliser(), rounds=50)
    assert data.sections.splits.empty
    assert "Official vs re-drawn splits" not in render_markdown(data, [])

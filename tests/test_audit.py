"""`marsbench datasets audit`: product-id decoding, planted shared observations and duplicates
across splits, the real HiRISE names' latitudes, and the command's output and errors."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from marsbench.cli.main import app
from marsbench.sources.audit import (audit_dataset, dhash, hamming, observation_id,
                                     target_code_latitude)

runner = CliRunner()


# -- product ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("code, lat", [(0, 0.0), (900, -90.0), (1720, -8.0), (1800, 0.0),
                                       (2700, 90.0), (3595, 0.5), (925, -87.5), (2535, 73.5)])
def test_target_code_latitude(code, lat) -> None:
    assert target_code_latitude(code) == lat


def test_off_planet_target_code_has_no_latitude() -> None:
    assert target_code_latitude(9001) is None
    obs = observation_id("PSP_001234_9001_RED.jpg")
    assert obs is not None and obs.observation_id == "PSP_001234_9001" and obs.latitude is None


def test_hirise_id() -> None:
    obs = observation_id("data/train/crater/ESP_012810_0925_RED-0071.jpg")
    assert obs.instrument == "HiRISE" and obs.observation_id == "ESP_012810_0925"
    assert obs.orbit == 12810 and obs.latitude == -87.5
    # the first transition-phase image, 8 degrees south (HiRISE "About HiRISE Image Names")
    assert observation_id("TRA_000823_1720").latitude == -8.0


@pytest.mark.parametrize("name, lat_field", [("P01_001472_1747_XI_05S146W.IMG", -5),
                                             ("B01_009838_1750_XI_05S142W.png", -5),
                                             ("G12_022735_2046_XN_24N093W.jpg", 24)])
def test_ctx_target_code_agrees_with_the_names_latitude(name, lat_field) -> None:
    obs = observation_id(name)
    assert obs.instrument == "CTX" and obs.observation_id == name[:15]
    assert abs(obs.latitude - lat_field) <= 1.0  # the name's field is rounded to a degree
    assert obs.longitude is not None and obs.longitude < 0  # west


def test_themis_and_msl_ids() -> None:
    ir, vis = observation_id("I00816001_tile3.png"), observation_id("V00816002.jpg")
    assert (ir.instrument, ir.observation_id, ir.orbit) == ("THEMIS IR", "I00816001", 816)
    assert (vis.instrument, vis.observation_id) == ("THEMIS VIS", "V00816002")
    left = observation_id("0762ML0032740020400100D01_DRCL.JPG")
    right = observation_id("0762MR0032740110403828D01_DRCL.JPG")
    assert left.instrument == "MSL Mastcam" and left.sol == 762
    assert left.observation_id == right.observation_id == "MSL_sol0762_seq003274"
    nav = observation_id("NLB_504391382EDR_F0520004NCAM07753M1.jpg")
    assert nav.instrument == "MSL Navcam" and (nav.site, nav.drive) == (52, 4)


@pytest.mark.parametrize("name", ["30_-6_png_jpg.rf.90a5f2d4d77161087ae6e19d4d45107d.jpg",
                                  "img_0001.png", "ABC_123456_1234.jpg", "crater_12.jpg"])
def test_unknown_names_have_no_id(name) -> None:
    assert observation_id(name) is None


# -- a dataset with planted leaks ----------------------------------------------------------------

def _smooth(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random texture: 8x8 noise upsampled (dHash is stable on it under JPEG noise)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC))


def _write_dataset(base: Path) -> Path:
    """A folder-layout classification dataset (annotation.csv, mapping.json, data/<split>/...)
    with: a HiRISE observation in train and test (different tiles), an exact copy of a train
    image in test, a re-saved noisy JPEG of a train image in test, and unrelated images."""
    root = base / "audit-toy"
    rows = []

    def put(split: str, name: str, array: np.ndarray, quality: int = 95) -> Path:
        folder = root / "data" / split
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / name, quality=quality)
        rows.append((name, len(rows) % 2, split))
        return folder / name

    put("train", "ESP_000100_0925_RED-0001.jpg", _smooth(1))       # shared observation ...
    put("test", "ESP_000100_0925_RED-0002.jpg", _smooth(2))        # ... its other tile in test
    src = put("train", "ESP_000200_2700_RED-0001.jpg", _smooth(3))
    dest = root / "data" / "test" / "copy_of_train.jpg"
    shutil.copyfile(src, dest)                                        # exact duplicate
    rows.append((dest.name, 0, "test"))
    noisy = _smooth(4).astype(np.int16) + np.random.default_rng(9).integers(-3, 4, (64, 64))
    put("train", "original.jpg", _smooth(4))
    put("test", "resaved.jpg", np.clip(noisy, 0, 255).astype(np.uint8), quality=80)  # near dup
    for i in range(6):                                                # unrelated images
        put("train", f"unrelated_train_{i}.jpg", _smooth(100 + i))
        put("val", f"unrelated_val_{i}.jpg", _smooth(200 + i))
        put("test", f"unrelated_test_{i}.jpg", _smooth(300 + i))
    (root / "mapping.json").write_text(json.dumps({"0": "a", "1": "b"}))
    with open(root / "annotation.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_id", "label", "split"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("audit"))


def test_near_duplicate_hash_is_close_and_unrelated_are_far(toy) -> None:
    train, test = toy / "data" / "train", toy / "data" / "test"
    assert hamming(dhash(train / "original.jpg"), dhash(test / "resaved.jpg")) <= 5
    unrelated = [dhash(test / f"unrelated_test_{i}.jpg") for i in range(6)]
    assert all(hamming(dhash(train / "original.jpg"), h) > 5 for h in unrelated)


def test_planted_leaks_are_found_and_nothing_else(toy) -> None:
    report = audit_dataset(toy)
    comp = report["comparisons"]["train-test"]
    assert comp["shared_groups"] == ["ESP_000100_0925"]
    assert [(p["a"], p["b"]) for p in comp["exact_duplicates"]] == [
        ("data/train/ESP_000200_2700_RED-0001.jpg", "data/test/copy_of_train.jpg")]
    assert [(p["a"], p["b"]) for p in comp["near_duplicates"]] == [
        ("data/train/original.jpg", "data/test/resaved.jpg")]
    leak = report["leakage"]["test"]
    assert leak == {"against": "train", "images": 9, "shared_observation": 1,
                    "exact_duplicate": 1, "near_duplicate": 1, "any": 3}
    assert report["leakage"]["val"]["any"] == 0
    for pair in ("train-val", "val-test"):
        c = report["comparisons"][pair]
        assert not (c["shared_groups"] or c["exact_duplicates"] or c["near_duplicates"]), c
    for split in ("train", "val", "test"):
        assert not report["splits"][split]["exact_duplicates"]
        assert not report["splits"][split]["near_duplicates"]
    assert report["groups"]["ESP_000100_0925"]["splits"] == {"train": 1, "test": 1}
    assert report["groups"]["ESP_000200_2700"]["latitude"] == 90.0
    assert report["splits"]["test"]["no_id"] == 8


def test_threshold_zero_keeps_only_bit_equal_hashes(toy) -> None:
    report = audit_dataset(toy, threshold=0)
    near = report["comparisons"]["train-test"]["near_duplicates"]
    assert all(p["distance"] == 0 for p in near)


# -- real names ----------------------------------------------------------------------------------

def test_swiss_cheese_tiles_are_south_polar(shared_data) -> None:
    from conftest import need_shared

    folder = need_shared("mb-landmark_cls-mini")
    tiles = sorted(folder.glob("data/*/swiss_cheese/*.jpg"))
    assert tiles
    lats = [observation_id(p).latitude for p in tiles]
    assert all(lat is not None and lat < -70 for lat in lats), lats
    report = audit_dataset(folder)
    assert all(s["no_id"] == 0 for s in report["splits"].values())


# -- the command ---------------------------------------------------------------------------------

def test_cli_plain_rows_and_json(toy) -> None:
    result = runner.invoke(app, ["datasets", "audit", str(toy)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout), delimiter="\t"))
    test_row = next(r for r in rows if r["split"] == "test")
    assert (test_row["shared_observation"], test_row["exact_duplicate"],
            test_row["near_duplicate"], test_row["any"]) == ("1", "1", "1", "3")
    result = runner.invoke(app, ["datasets", "audit", str(toy), "--json", "--threshold", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threshold"] == 0


def test_cli_on_a_terminal_prints_a_table(toy, monkeypatch) -> None:
    from marsbench.cli import env as cli_env

    monkeypatch.setattr(cli_env, "stdout_is_terminal", lambda: True)
    result = runner.invoke(app, ["datasets", "audit", str(toy)])
    assert result.exit_code == 0, result.output
    assert "train-test: 1 shared observation groups (e.g. ESP_000100_0925)" in result.stdout


@pytest.mark.parametrize("args", [["/no/such/dataset"], ["mb-landmark_cls", "--root", "{tmp}"],
                                  ["{toy}", "--threshold", "99"]])
def test_cli_errors_are_one_line_exit_2(args, toy, tmp_path) -> None:
    args = [a.format(tmp=tmp_path, toy=toy) for a in args]
    result = runner.invoke(app, ["datasets", "audit", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1

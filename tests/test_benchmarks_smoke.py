"""The benchmark scripts run end to end in their smallest settings, so they cannot rot.

No timing is asserted (a benchmark figure is printed by its script, never checked by a test):
each script must exit 0 and print every row of its table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def run_script(name: str, *args: str, tmp_path: Path, timeout: float) -> str:
    """Run ``benchmarks/<name>`` in a fresh process; its temporary folders and caches stay
    inside ``tmp_path``. Returns stdout; a non-zero exit fails with the output's tail."""
    env = dict(os.environ, TMPDIR=str(tmp_path), MARSBENCH_CACHE=str(tmp_path / "cache"),
               MARSBENCH_OFFLINE="1")
    for variable in ("MARSBENCH_EVAL_BATCH", "MARSBENCH_PIXEL_CACHE", "MARSBENCH_WORKERS"):
        env.pop(variable, None)  # the benchmark's own settings, not the caller's
    proc = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{name} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
        f"--- stderr ---\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.mark.slow
def test_training_throughput_quick(tmp_path):
    out = tmp_path / "throughput.json"
    stdout = run_script("training_throughput.py", "--quick", "--device", "cpu", "--json", str(out),
                        tmp_path=tmp_path, timeout=900)
    rows = json.loads(out.read_text())["rows"]
    expected = {
        ("pipeline (decode+resize)", "efficientnet_lite0"),
        ("pipeline (pixel cache)", "efficientnet_lite0"),
        ("feature pass", "efficientnet_lite0"),
        ("fine-tuning epoch", "efficientnet_lite0"),
        ("evaluation pass", "efficientnet_lite0"),
        ("seg pipeline (decode)", "unet_efficientnet_lite0"),
        ("seg pipeline (pixel cache)", "unet_efficientnet_lite0"),
        ("segmentation epoch", "unet_efficientnet_lite0"),
        ("seg evaluation pass", "unet_efficientnet_lite0"),
        ("peak RSS, feature pass (32 images)", "efficientnet_lite0"),
    }
    assert {(r["path"], r["model"]) for r in rows} == expected
    failed = [f"{r['path']} / {r['model']}: {r['error']}" for r in rows if r["error"]]
    assert not failed, "paths printed n/a:\n" + "\n".join(failed)
    for r in rows:  # every figure measured (values themselves are not judged)
        assert r["marsbench"] is not None and r["marsbench"] > 0, r
        if r["unit"] != "GB":
            assert r["bare_img_s"] is not None and r["bare_img_s"] > 0, r
    # the printed table has a line per row
    table = stdout[stdout.index("path "):]
    for path, model in expected:
        assert any(line.startswith(path) and model in line for line in table.splitlines()), (
            path, model)


@pytest.mark.slow
def test_training_throughput_reports_a_failing_path(tmp_path):
    """A model that cannot be timed prints n/a with its reason; the run still exits 0."""
    stdout = run_script("training_throughput.py", "--quick", "--device", "cpu",
                        "--models", "no_such_model", "--rss-images", "0",
                        tmp_path=tmp_path, timeout=300)
    line = next(ln for ln in stdout.splitlines() if ln.startswith("model ")
                and "no_such_model" in ln)
    assert "n/a (" in line


@pytest.mark.slow
def test_feature_extraction_protocol_smallest(tmp_path):
    stdout = run_script("feature_extraction_protocol.py", "--input-size", "32", "--epochs", "1",
                        tmp_path=tmp_path, timeout=900)
    for label in ("floor", "cached", "naive", "speed-up naive/cached", "mean test F1"):
        assert label in stdout, label


@pytest.mark.slow
def test_data_fingerprint_small(tmp_path):
    stdout = run_script("data_fingerprint.py", "--n", "200", "--repeat", "1",
                        "--out", str(tmp_path / "fp"), tmp_path=tmp_path, timeout=300)
    for label in ("os.stat of every file", "first hash (cold memo)", "re-check (warm memo)",
                  "hash without memo"):
        assert label in stdout, label


@pytest.mark.slow
def test_profile_effects_synthetic(tmp_path):
    """Every setting trains on the same seeds, on the profile and feature path it names; the
    table prints a paired difference with its interval for every setting but the baseline."""
    out = tmp_path / "effects.json"
    stdout = run_script("profile_effects.py", "--synthetic", "--seeds", "0", "1", "--epochs", "2",
                        "--input-size", "64", "--json", str(out), tmp_path=tmp_path, timeout=600)
    data = json.loads(out.read_text())
    one_row = ("marsbench+min_delta", "marsbench+last_epoch", "marsbench+resize",
               "marsbench+imagenet_norm")
    assert {(r["setting"], r["seed"]) for r in data["rows"]} == {
        (s, k) for s in ("marsbench", "paper", "marsbench+online", "marsbench+online+train_mode",
                         "paper_loop", *one_row)
        for k in (0, 1)}
    ran = {r["setting"]: (r["profile"], r["fe_path"], r["frozen_train_mode"])
           for r in data["rows"]}
    assert ran == {"marsbench": ("marsbench", "cached", False),
                   "paper": ("paper", "online", True),
                   "marsbench+online": ("marsbench", "online", False),
                   "marsbench+online+train_mode": ("marsbench", "online", True),
                   "paper_loop": ("paper", "cached", False),
                   **{s: ("marsbench", "cached", False) for s in one_row}}
    for r in data["rows"]:  # each setting fed and tested the model as it says
        paper_like = r["setting"] in ("paper", "paper_loop")
        last = paper_like or r["setting"] == "marsbench+last_epoch"
        assert r["tested_epoch"] == (r["epochs"] if last else r["best_epoch"]), r
        prep = r["preprocessing"]
        assert prep["antialias"] is not (paper_like or r["setting"] == "marsbench+resize"), r
        imagenet = paper_like or r["setting"] == "marsbench+imagenet_norm"
        assert (tuple(prep["mean"]) == (0.485, 0.456, 0.406)) is imagenet, r
    for row in data["summary"]:
        if row["setting"] == "marsbench":
            assert row["diff"] is None
        else:
            assert row["ci_low"] <= row["diff"] <= row["ci_high"]
            assert f"{row['diff']:+.4f}" in stdout


def test_profile_effects_refuses_a_bad_dataset_in_one_line_before_any_run(tmp_path):
    """A dataset that does not open stops the script before the first run trains, with the
    loader's one line (naming the file and the fix) and no traceback."""
    folder = tmp_path / "data" / "gappy_cls"
    (folder / "data").mkdir(parents=True)
    (folder / "mapping.json").write_text(json.dumps({"0": "ground", "2": "wheel"}))
    (folder / "annotation.csv").write_text("file_id,label,split\na.png,0,train\n")
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "profile_effects.py"), "--root",
                           str(tmp_path / "data"), "--datasets", "gappy_cls"], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, MARSBENCH_OFFLINE="1"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "gappy_cls/mapping.json" in line and "missing 1 of 0..2" in line


def test_profile_effects_one_row_settings_swap_one_field_and_restore_it():
    import importlib.util

    from marsbench.runs import profiles

    spec = importlib.util.spec_from_file_location("profile_effects",
                                                  BENCHMARKS / "profile_effects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.ONE_ROW) == {"marsbench+min_delta", "marsbench+last_epoch",
                                   "marsbench+resize", "marsbench+imagenet_norm",
                                   "marsbench+dice_clamp", "marsbench+online+train_mode"}
    for setting, (table_name, field) in module.ONE_ROW.items():
        table = getattr(profiles, table_name)
        ours, paper = table["marsbench"], table["paper"]
        with module.profile_of(setting):
            inside = table["marsbench"]
        assert getattr(inside, field) == getattr(paper, field) != getattr(ours, field)
        assert {f for f in vars(ours) if getattr(inside, f) != getattr(ours, f)} == {field}
        assert table["marsbench"] is ours


def test_profile_effects_refuses_a_setting_that_changes_nothing_in_one_line():
    """An explicitly named setting that cannot change the run (the Dice clamp on a CE run) is
    refused before anything trains, never run as a second copy of the baseline."""
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "profile_effects.py"), "--synthetic",
                           "--settings", "marsbench", "marsbench+dice_clamp", "marsbench+224"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, MARSBENCH_OFFLINE="1"))
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "marsbench+dice_clamp (it changes segmentation's Dice loss only" in line
    assert "marsbench+224 (it changes segmentation and detection input only)" in line


def test_profile_effects_refuses_a_baseline_it_does_not_run_in_one_line():
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "profile_effects.py"), "--synthetic",
                           "--settings", "marsbench", "marsbench+online+train_mode",
                           "--baseline", "marsbench+online"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, MARSBENCH_OFFLINE="1"))
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "--baseline marsbench+online is not among the settings run" in line


def test_profile_effects_rescores_detections_at_torchvision_threshold(monkeypatch):
    """Row 20's derived setting scores the same test detections keeping those >= 0.05 (Faster
    R-CNN's default): equal to COCO metrics of the filtered detections, never above ours (a
    lower threshold only appends detections at the end of the ranking)."""
    import importlib.util
    from types import SimpleNamespace

    import numpy as np

    from marsbench.metrics.detection import ImageDetections, detection_metrics
    from marsbench.models.detection import build_detector
    from marsbench.training.detection import DetectionTask

    spec = importlib.util.spec_from_file_location("profile_effects",
                                                  BENCHMARKS / "profile_effects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    images = []
    for i in range(6):
        gt = rng.uniform(0, 40, (3, 2)).repeat(2, axis=1) + [0, 0, 10, 10]
        found = np.concatenate([gt + rng.normal(0, 1.5, gt.shape), rng.uniform(0, 50, (4, 4))])
        found[:, 2:] = np.maximum(found[:, 2:], found[:, :2] + 2)
        scores = rng.choice([0.02, 0.03, 0.2, 0.6, 0.9], len(found))
        images.append(ImageDetections(f"im{i}", 64, 64, gt, np.ones(3, np.int64), found, scores,
                                      np.ones(len(found), np.int64)))
    ours = detection_metrics(images, ["crater"])
    monkeypatch.setattr(DetectionTask, "evaluate", lambda self, split: ours)
    net = build_detector("fasterrcnn_efficientnet_lite0", 1, "feature_extraction").net
    task = SimpleNamespace(model=SimpleNamespace(net=net), detections={"test": images},
                           splits={"train": SimpleNamespace(class_names=["crater"])}, info={})
    with module.rescored_at_torchvision_threshold():
        assert DetectionTask.evaluate(task, "test") is ours
    rescored = task.info["test_at_torchvision_threshold"]
    kept = [ImageDetections(d.image_id, 64, 64, d.gt_boxes, d.gt_labels, d.boxes[d.scores >= .05],
                            d.scores[d.scores >= .05], d.labels[d.scores >= .05]) for d in images]
    assert rescored["threshold"] == 0.05
    assert rescored["map_50_95"] == detection_metrics(kept, ["crater"])["map_50_95"]
    assert rescored["map_50_95"] < ours["map_50_95"]
    assert DetectionTask.evaluate(task, "test") is ours  # restored: no rescoring outside

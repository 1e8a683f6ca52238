"""Detection end to end: every detector in every regime it can run offline through
`run_experiment`, COCO-style export, the CLI, and real crater data."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from marsbench.runs.spec import RunSpec
from marsbench.runs.store import ResultsStore
from marsbench.training.run import run_experiment

FAST = dict(max_epochs=1, patience=0, batch_size=8, lr=1e-3)
SMALL = {"input_policy": "reference", "input_size": "64"}
LITE0 = ["fasterrcnn_efficientnet_lite0", "retinanet_efficientnet_lite0", "ssd_efficientnet_lite0"]
REFERENCE = ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn_v2", "ssd_resnet34"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from marsbench.sources.synth import generate

    base = tmp_path_factory.mktemp("synth_det")
    generate("mb-boulder_det", base, "folder")
    return base


def spec(synth, model, regime, options=SMALL, **kw):
    return RunSpec(dataset="mb-boulder_det", model=model, regime=regime, data_root=str(synth),
                   options=options, **{**FAST, **kw})


def _check(record):
    assert record.ok and record.task == "detection"
    assert record.epochs_run == 1 and record.best_epoch == 1
    test = record.metrics["test"]
    assert 0.0 <= test["map_50_95"] <= test["map_50"] <= 1.0
    assert test["num_images"] == 3 and test["num_negatives"] >= 1  # negatives are scored
    assert np.isfinite(record.metrics["val"]["loss"]) and np.isfinite(test["loss"])
    assert set(record.timings) >= {"feature_extraction_s", "training_s", "total_s"}
    assert "GeneralizedRCNNTransform" in record.extra["normalised_by"]  # inputs [0, 1]


@pytest.mark.parametrize("model", LITE0)
@pytest.mark.parametrize("regime", ["scratch", "feature_extraction", "fine_tuning"])
def test_lite0_detectors_train_in_every_regime(synth, model, regime):
    record = run_experiment(spec(synth, model, regime))
    _check(record)
    assert record.extra["input_policy"] == {"name": "reference", "min_size": 64, "max_size": 64}
    assert ("efficientnet-lite0" in record.extra["weights_tag"]) == (regime != "scratch")
    assert record.extra["frozen"] == (["backbone.body"] if regime == "feature_extraction" else [])


@pytest.mark.parametrize("model", REFERENCE)
def test_reference_detectors_train_from_scratch(synth, model):
    _check(run_experiment(spec(synth, model, "scratch")))


def test_native_policy_and_coco_json_export(synth, tmp_path):
    from pycocotools.coco import COCO

    record = run_experiment(spec(synth, "retinanet_efficientnet_lite0", "feature_extraction",
                                 options={}), out_dir=tmp_path)
    # the synthetic images are 96 px (the card says 500): native keeps them at 96
    assert record.extra["input_policy"] == {"name": "native", "min_size": 96, "max_size": 96}
    path = tmp_path / "predictions" / record.spec.short_key / "test.json"
    exported = json.loads(path.read_text())
    assert len(exported["images"]) == 3 and exported["categories"] == [{"id": 1, "name": "boulder"}]
    gt = COCO()
    gt.dataset = {**exported, "annotations": []}
    gt.createIndex()
    if exported["annotations"]:
        det = gt.loadRes(exported["annotations"])
        assert all(a["score"] > 0 for a in det.dataset["annotations"])
    assert record.metrics["test"]["num_detections"] == len(exported["annotations"])


def test_tile_policy_trains_on_crops_and_scores_whole_images(synth):
    record = run_experiment(spec(synth, "fasterrcnn_efficientnet_lite0", "feature_extraction",
                                 options={"input_policy": "tile", "tile_size": "64"}))
    assert record.extra["input_policy"]["tile_size"] == 64
    assert record.extra["input_policy"]["min_size"] == 96


def test_marsbench_run_cli_records_a_detection_run(synth, tmp_path):
    from marsbench.cli.main import app

    store = tmp_path / "results.sqlite"
    args = ["run", "--dataset", "mb-boulder_det", "--model", "ssd_efficientnet_lite0",
            "--regime", "fine_tuning", "--root", str(synth), "--max-epochs", "1",
            "--batch-size", "8", "--store", str(store), "--out", str(tmp_path / "out"), "--quiet"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    (record,) = ResultsStore(store).records()
    assert record.ok and record.task == "detection" and "map_50_95" in record.metrics["test"]


@pytest.mark.slow
def test_real_craters_frozen_lite0_faster_rcnn_beats_an_empty_prediction(shared_data):
    """Faster R-CNN on the ImageNet EfficientNet-Lite0 trunk (frozen), trained for one epoch on
    128 px crops of the 74 real THEMIS crater tiles, scored at full 416 px on 8 test tiles."""
    from marsbench.metrics.detection import ImageDetections, detection_metrics
    from marsbench.models.detection import build_detector
    from marsbench.training.run import open_splits, train

    run = RunSpec(dataset=str(shared_data / "crater_det-mini"),
                  model="fasterrcnn_efficientnet_lite0", regime="feature_extraction",
                  max_epochs=1, patience=0, batch_size=8, lr=3e-3,
                  options={"input_policy": "tile", "tile_size": "128"})
    splits = open_splits(run)

    def first(ds, n):
        return dataclasses.replace(ds, entries=ds.entries[:n], sample_ids=ds.sample_ids[:n])

    splits = {"train": splits["train"], "val": first(splits["val"], 4),
              "test": first(splits["test"], 8)}
    model = build_detector(run.model, 1, run.regime)
    result = train(run, splits, model=model, device="cpu")
    test = splits["test"]
    empty = detection_metrics([ImageDetections(s.sample_id, 416, 416, s.boxes, s.labels,
                                               np.zeros((0, 4)), np.zeros(0), np.zeros(0))
                               for s in (test[i] for i in range(len(test)))], ["crater"])
    got = result.metrics["test"]
    print(f"crater_det-mini Faster R-CNN Lite0 frozen, 1 epoch on 128 px crops: test mAP "
          f"{got['map_50_95']:.4f}, mAP50 {got['map_50']:.4f} on {got['num_gt_boxes']} boxes; "
          f"empty prediction {empty['map_50_95']:.4f}")
    assert got["num_gt_boxes"] == empty["num_gt_boxes"] > 0
    assert got["map_50_95"] > empty["map_50_95"] == 0.0


@pytest.mark.parametrize("regime", ["scratch", "feature_extraction", "fine_tuning"])
def test_yolo11_trains_in_every_regime(synth, tmp_path, regime):
    pytest.importorskip("ultralytics", reason="optional extra marsbench[yolo]")
    from marsbench.models.detection import build_detector

    kwargs, run = {}, spec(synth, "yolo11n", regime, options={})
    if regime != "scratch":  # COCO weights cannot be downloaded here: a checkpoint file instead
        path = tmp_path / "yolo11n_state.pth"
        torch.save(build_detector("yolo11n", 1, "scratch").net.state_dict(), path)
        kwargs, run = {"weights_path": path}, run.replace(weights="test-checkpoint")
    record = run_experiment(run, **kwargs)
    assert record.ok and record.metrics["test"]["num_images"] == 3
    assert record.extra["input_policy"]["min_size"] == 96
    assert record.extra["normalised_by"].startswith("nothing")
    frozen = [f"model.model.{i}" for i in range(11)] if regime == "feature_extraction" else []
    assert record.extra["frozen"] == frozen


# -- the paper profile's input path (docs/fidelity.md rows 11 and 18) -----------------------------

class _Captured(Exception):
    pass


def _backbone_input(spec, index=0):
    """The tensor entering the detector's backbone for val image ``index`` (the forward is
    stopped there), the task (after setup) and the raw sample."""
    from marsbench.runs.data import open_splits
    from marsbench.training.detection import DetectionTask
    from marsbench.training.run import default_model
    from marsbench.training.task import EngineContext

    splits = open_splits(spec)
    task = DetectionTask(EngineContext(spec, torch.device("cpu")), splits,
                         lambda: default_model(spec, splits))
    task.setup()
    seen = []

    def stop(module, args):
        seen.append(args[0])
        raise _Captured

    net = task.model.net.eval()
    net.backbone.register_forward_pre_hook(stop)
    image, target, _ = task.images["val"][index]
    with torch.no_grad(), pytest.raises(_Captured):
        net([image])
    return seen[0][0], task, splits["val"][index], target


def _uint8_chw(sample):
    x = torch.from_numpy(np.array(sample.image)).permute(2, 0, 1)
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


@pytest.mark.parametrize("model,detector_side", [("fasterrcnn_resnet50_fpn", 800),
                                                 ("ssd_resnet34", 224)])
def test_paper_profile_normalises_twice_at_the_reference_sizes(synth, model, detector_side):
    from torchvision.transforms.v2 import functional as TF

    from marsbench.models.preprocess import IMAGENET_MEAN as MEAN, IMAGENET_STD as STD

    paper = spec(synth, model, "scratch", options={}, profile="paper")
    got, task, sample, target = _backbone_input(paper)
    x = _uint8_chw(sample)
    h, w = x.shape[-2:]
    # albumentations Resize(224) + Normalize, then GeneralizedRCNNTransform's resize + normalize
    first = TF.normalize(TF.resize(x, [224, 224], antialias=False).float() / 255, MEAN, STD)
    side = [detector_side] * 2
    expected = TF.normalize(TF.resize(first, side, antialias=False), MEAN, STD)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(target["boxes"], torch.as_tensor(sample.boxes).float()
                               * torch.tensor([224 / w, 224 / h] * 2))  # boxes move with it
    assert task.sizes == {"name": "reference", "resize": 224, "min_size": detector_side,
                          "max_size": 1333 if detector_side == 800 else 224}
    assert task.info["normalised_by"].startswith("twice")
    assert task.info["model_built"] == (model if detector_side == 800 else "ssd_resnet34_reference")

    ours = spec(synth, model, "scratch", options={})
    got, task, sample, _ = _backbone_input(ours)  # native size: normalised once, not resized
    expected = TF.normalize(_uint8_chw(sample).float() / 255, MEAN, STD)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    assert "[0, 1]" in task.info["normalised_by"] and task.info["model_built"] == model
    assert ours.key != paper.key and ours.label != paper.label


def test_paper_profile_trains_the_reference_ssd(synth):
    run = spec(synth, "ssd_resnet34", "scratch", options={"input_size": "64"}, profile="paper")
    record = run_experiment(run)
    assert record.ok and record.epochs_run == 1
    assert record.extra["model_built"] == "ssd_resnet34_reference"
    assert record.extra["input_policy"] == {"name": "reference", "resize": 64, "min_size": 64,
                                            "max_size": 64}
    test = record.metrics["test"]
    assert test["num_negatives"] == 0  # the paper profile drops negatives, as the reference
    assert 0.0 <= test["map_50_95"] <= test["map_50"] <= 1.0 and np.isfinite(test["loss"])
    assert "profile=paper" in record.spec.label

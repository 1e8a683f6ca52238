"""Segmentation's frozen-encoder feature cache (``feature_extraction``, ``fe_path=cached``): the
same metrics as the uncached frozen path with augmentation off, the encoder never run on a hit,
invalidation by content, the encoder/decoder split of every architecture, options and keys."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from marsbench.errors import OptionError
from marsbench.models.segmentation import (
    build_segmenter,
    decode_features,
    encoder_features,
    shape_only_features,
)
from marsbench.runs.data import open_splits
from marsbench.runs.options import SegmentationOptions
from marsbench.runs.spec import RunSpec
from marsbench.training import features as feature_cache
from marsbench.training.run import run_experiment, train
from marsbench.training.segmentation import IGNORE

DATASET = "mb-crater_multi_seg"  # 5 classes, 64 px, 8 / 3 / 3 images
MODEL = "unet_efficientnet_lite0"
SMALL = {"input_policy": "reference", "input_size": 32}
FAST = dict(max_epochs=2, patience=0, batch_size=4, lr=3e-3, augment=False)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from marsbench.sources.synth import generate

    base = tmp_path_factory.mktemp("synth_seg_cache")
    for name in (DATASET, "mb-crater_binary_seg"):
        generate(name, base, "folder")
    return base


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """A fresh feature cache per test; loaders in-process (the same batches on every path)."""
    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MARSBENCH_WORKERS", "0")
    feature_cache.clear_memory_cache()
    yield
    feature_cache.clear_memory_cache()


def seg_spec(root, fe_path=None, model=MODEL, options=SMALL, dataset=DATASET, **kw):
    options = dict(options) | ({"fe_path": fe_path} if fe_path else {})
    return RunSpec(dataset=dataset, model=model, regime="feature_extraction",
                   data_root=str(root), options=options, **(FAST | kw))


def assert_same_metrics(a: dict, b: dict) -> None:
    for split in ("val", "test"):
        assert a[split].keys() == b[split].keys()
        for key, value in a[split].items():
            if isinstance(value, (int, float)):
                assert b[split][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (split, key)
            elif isinstance(value, list):
                np.testing.assert_allclose(b[split][key], value, rtol=1e-4, atol=1e-6,
                                           err_msg=f"{split}.{key}")


# -- the same metrics ----------------------------------------------------------------------------

@pytest.mark.parametrize("model", [MODEL, "deeplabv3plus_efficientnet_lite0"])  # + dropout
def test_cached_features_give_the_metrics_of_the_uncached_frozen_path(synth, model):
    online = run_experiment(seg_spec(synth, "online", model=model, loss="combined"))
    cached = run_experiment(seg_spec(synth, "cached", model=model, loss="combined"))
    assert online.extra["fe_path"] == "online" and cached.extra["fe_path"] == "cached"
    assert cached.extra["feature_cache_hits"] == {"train": False, "val": False, "test": False}
    assert cached.extra["augment_applied"] is False
    assert cached.extra["frozen"] == ["encoder"]
    assert cached.timings["feature_extraction_s"] > 0
    assert_same_metrics(online.metrics, cached.metrics)
    for a, b in zip(online.extra["history"], cached.extra["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    # a hit (from memory) trains to the same numbers again
    again = run_experiment(seg_spec(synth, "cached", model=model, loss="combined"))
    assert again.extra["feature_cache_hits"] == {"train": True, "val": True, "test": True}
    assert_same_metrics(cached.metrics, again.metrics)


def test_native_policy_of_one_image_size_is_cached_exactly(synth, tmp_path):
    online = run_experiment(seg_spec(synth, "online", options={}, dataset="mb-crater_binary_seg"))
    cached = run_experiment(seg_spec(synth, "cached", options={}, dataset="mb-crater_binary_seg"),
                            out_dir=tmp_path)
    assert_same_metrics(online.metrics, cached.metrics)
    assert cached.metrics["test"]["num_pixels"] == 3 * 64 * 64  # full resolution
    pngs = sorted((tmp_path / "predictions" / cached.spec.short_key / "test").glob("*.png"))
    assert len(pngs) == 3
    assert np.asarray(Image.open(pngs[0])).shape == (64, 64)


# -- the encoder is not run on a hit ---------------------------------------------------------------

def _count_encoder_calls(model) -> list[int]:
    calls = [0]
    model.net.encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def _train(spec, cache_dir, predictions_dir=None):
    splits = open_splits(spec)
    torch.manual_seed(spec.seed)  # the decoder's initial weights, as run_experiment draws them
    model = build_segmenter(spec.model, splits["train"].num_classes, spec.regime)
    calls = _count_encoder_calls(model)
    result = train(spec, splits, model=model, device=CPU, cache_dir=cache_dir,
                   predictions_dir=predictions_dir)
    return result, calls[0]


def test_a_second_run_reads_the_cache_and_never_runs_the_encoder(synth, tmp_path):
    cache_dir = tmp_path / "features"
    first, first_calls = _train(seg_spec(synth, "cached"), cache_dir)
    assert first_calls == 3 + 1  # one batch per split, once; one FLOPs count (training.cost)
    assert len(list(cache_dir.glob("*.pt"))) == 3
    other_hp = seg_spec(synth, "cached", lr=1e-3, seed=7, optimizer="sgd")
    second, second_calls = _train(other_hp, cache_dir)  # from memory
    assert second_calls == 0
    assert second.info["feature_cache_hits"] == {"train": True, "val": True, "test": True}
    feature_cache.clear_memory_cache()
    third, third_calls = _train(other_hp, cache_dir, predictions_dir=tmp_path / "pred")  # disk
    assert third_calls == 0
    assert_same_metrics(second.metrics, third.metrics)
    assert len(list((tmp_path / "pred" / "test").glob("*.png"))) == 3
    online, online_calls = _train(seg_spec(synth, "online"), cache_dir)
    # every training step, every validation pass and the final val + test scoring
    assert online_calls == 2 * 2 + 2 + 2
    assert online.info["fe_path"] == "online" and "feature_cache_hits" not in online.info


def test_the_cache_follows_content_policy_and_precision(synth, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synth / DATASET, root / DATASET)
    cache_dir = tmp_path / "features"
    _train(seg_spec(root, "cached"), cache_dir)
    image = root / DATASET / "data" / "train" / "images" / "synth_train_00000.png"
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(image)
    edited, calls = _train(seg_spec(root, "cached"), cache_dir)
    assert edited.info["feature_cache_hits"] == {"train": False, "val": True, "test": True}
    assert calls == 1
    bigger, calls = _train(seg_spec(root, "cached", options=SMALL | {"input_size": 64}),
                           cache_dir)
    assert bigger.info["feature_cache_hits"] == {"train": False, "val": False, "test": False}
    bf16, calls = _train(seg_spec(root, "cached", precision="bf16"), cache_dir)
    assert not any(bf16.info["feature_cache_hits"].values()) and calls == 3


# -- the encoder / decoder split ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["unet", "deeplabv3plus", "segformer",
                                  "dpt:vit_tiny_patch16_224"])
def test_decoding_encoder_features_is_the_whole_network(name):
    torch.manual_seed(0)
    net = build_segmenter(name, 3, "scratch").net.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = encoder_features(net, x)
        shape_only = shape_only_features(net, len(feats))
        # what the cache keeps: the shape alone where the decoder reads no values
        kept = [f if f is None or i not in shape_only else
                torch.zeros(()).expand(f.shape) for i, f in enumerate(feats)]
        torch.testing.assert_close(decode_features(net, kept), net(x))
    if name in ("unet", "segformer"):
        assert 0 in shape_only  # the input image itself is not stored


def test_native_features_of_mixed_sizes_decode_each_size_exactly():
    """Images of different padded sizes: each is encoded and scored at its own size; a training
    batch that mixes them gets zero-padded features and IGNORE-padded masks."""
    from marsbench.models.preprocess import normalize
    from marsbench.training.engine import Precision
    from marsbench.training.segmentation import pad_to_stride
    from marsbench.training.segmentation_features import DenseFeatures, encode_split

    torch.manual_seed(0)
    model = build_segmenter("unet", 3, "scratch")
    net = model.net.eval()
    g = torch.Generator().manual_seed(1)
    sizes = [(32, 32), (40, 64), (32, 32), (64, 50)]  # padded: 32x32, 64x64, 32x32, 64x64
    items = [(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g),
              torch.full((h, w), i % 3, dtype=torch.int64), f"id{i}")
             for i, (h, w) in enumerate(sizes)]

    class Images(torch.utils.data.Dataset):
        num_classes = 3

        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return items[i]

    entry = encode_split(net, Images(), prep=model.preprocessing, device=CPU,
                         precision=Precision("fp32", "cpu"), batch_size=3)
    bank = DenseFeatures(entry)
    assert bank.ids == ["id0", "id1", "id2", "id3"] and len(entry["groups"]) == 2
    seen = []
    with torch.no_grad():
        for idx, feats, masks in bank.eval_batches(2, CPU):
            logits = decode_features(net, feats)
            for i, out, mask in zip(idx, logits, masks):
                h, w = bank.size(i)
                assert (h, w) == sizes[i]
                x = pad_to_stride(normalize(items[i][0], model.preprocessing), 0.0)
                torch.testing.assert_close(out[:, :h, :w], net(x[None])[0, :, :h, :w],
                                           atol=2e-4, rtol=1e-3)  # batch of 2 vs 1
                assert torch.equal(mask[:h, :w], items[i][1])
                seen.append(i)
    assert sorted(seen) == [0, 1, 2, 3]
    feats, masks = bank.batch([1, 0, 3], CPU)
    assert masks.shape == (3, 64, 64) and masks.dtype == torch.int64
    assert (masks[1, 32:, :] == IGNORE).all() and (masks[1, :, 32:] == IGNORE).all()
    assert (masks[1, :32, :32] == 0).all() and (masks[2, :, 50:] == IGNORE).all()
    stored = entry["groups"][1]
    for i, f in enumerate(feats):
        if stored["shapes"][i] is not None:
            assert tuple(f.shape) == (3, *stored["shapes"][i])
        if stored["features"][i] is not None:  # item 0 (32 px): its features zero-padded
            small = entry["groups"][0]["shapes"][i]
            assert (f[1, :, small[1]:, :] == 0).all() and (f[1, :, :, small[2]:] == 0).all()
            assert f[1, :, :small[1], :small[2]].abs().sum() > 0
    with torch.no_grad():
        assert decode_features(net, feats).shape == (3, 3, 64, 64)


# -- options and keys ----------------------------------------------------------------------------

SEG = dict(dataset="mb-boulder_seg", model="unet_resnet34")


@pytest.mark.parametrize("regime, options, expected", [
    ("feature_extraction", {}, "cached"),
    ("feature_extraction", {"input_policy": "reference"}, "cached"),
    ("feature_extraction", {"input_policy": "tile"}, "online"),  # crops cannot be cached
    ("feature_extraction", {"fe_path": "Online"}, "online"),
    ("fine_tuning", {}, None),
    ("scratch", {}, None),
])
def test_fe_path_defaults(regime, options, expected):
    assert RunSpec(**SEG, regime=regime, options=options).options.fe_path == expected


@pytest.mark.parametrize("regime, options, match", [
    ("feature_extraction", {"input_policy": "tile", "fe_path": "cached"},
     "fe_path=cached is not possible with input_policy=tile"),
    ("fine_tuning", {"fe_path": "cached"}, "feature_extraction only"),
    ("feature_extraction", {"fe_path": "sometimes"}, "cached, online"),
])
def test_fe_path_refusals(regime, options, match):
    with pytest.raises(OptionError, match=match):
        RunSpec(**SEG, regime=regime, options=options)


def test_online_keeps_the_key_of_runs_recorded_before_segmentation_had_fe_path():
    online = RunSpec(**SEG, regime="feature_extraction", options={"fe_path": "online"})
    cached = RunSpec(**SEG, regime="feature_extraction")
    assert online.key != cached.key
    stored = online.to_dict()
    del stored["options"]["fe_path"]  # what a record written before this option holds
    back = RunSpec.from_dict(stored)
    assert back.options.fe_path == "online" and back.key == online.key
    assert "fe_path=online" in back.label and "fe_path" not in cached.label
    assert RunSpec.from_dict(cached.to_dict()) == cached


def test_experiment_fe_path_applies_where_it_can(tmp_path):
    from marsbench.protocol.experiment import Experiment, ModelEntry
    from marsbench.protocol.plan import run_options

    def options(exp_fe, model_options, task="segmentation"):
        exp = Experiment(name="x", datasets=(), models=(), fe_path=exp_fe)
        return run_options(exp, ModelEntry(name=MODEL, options=tuple(model_options.items())),
                           "feature_extraction", task)

    assert options("cached", {})["fe_path"] == "cached"
    assert "fe_path" not in options("cached", {"input_policy": "tile"})  # -> its default, online
    assert options("online", {"input_policy": "tile"})["fe_path"] == "online"
    assert options("cached", {}, task="classification")["fe_path"] == "cached"
    assert "fe_path" not in options("cached", {}, task="detection")
    # an explicit option is passed on as given (and refused when the spec is built)
    assert options("online", {"input_policy": "tile", "fe_path": "cached"})["fe_path"] == "cached"
    assert SegmentationOptions(fe_path="online").identity() == {"fe_path": "online"}

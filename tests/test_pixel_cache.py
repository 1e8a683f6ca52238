"""Decode once: the pixel cache (`marsbench.training.pixels`) and batched augmentation.

Pinned here: a second use decodes nothing; the cache follows the content (an image rewritten in
place, same name and size, is a new entry); damaged entries are rebuilt; builders racing for one
entry leave one whole entry; reading from the cache changes no metric; readers hold memory maps,
not arrays; batched augmentation equals the per-image augmentation it replaced.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import pickle
import shutil
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import Dataset

from marsbench.errors import OptionError
from marsbench.models.preprocess import CLASSIFICATION_AUGMENT, AugmentConfig, Preprocessing
from marsbench.sources import open_dataset
from marsbench.training import classification as cls_mod
from marsbench.training import pixels
from marsbench.training.pixels import Field, PixelCache, open_or_build

preprocess_mod = importlib.import_module("marsbench.models.preprocess")
CPU = torch.device("cpu")
PREP = Preprocessing(32, mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MARSBENCH_WORKERS", "0")  # decode in-process: the counters see it
    monkeypatch.delenv("MARSBENCH_PIXEL_CACHE", raising=False)
    from marsbench.training import features

    features.clear_memory_cache()
    yield
    features.clear_memory_cache()


@pytest.fixture
def frost(tmp_path) -> Path:
    """A writable synthetic classification dataset (PNG images), one per test."""
    from marsbench.sources.synth import generate_suite

    (path,) = generate_suite(tmp_path / "data", "folder", names=["mb-frost_cls"])
    return path


@pytest.fixture
def count_prepare(monkeypatch):
    """Counts the decodes of classification images (calls of `prepare` by `PreparedImages`)."""
    calls = []
    real = cls_mod.prepare

    def counting(images, prep):
        calls.append(1)
        return real(images, prep)

    monkeypatch.setattr(cls_mod, "prepare", counting)
    return calls


def loaded(images) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(images[i] for i in range(len(images))))
    return torch.stack(xs), torch.stack(ys)


def test_built_once_then_read_without_decoding(frost, count_prepare):
    data = open_dataset(frost, "train")
    first = cls_mod.prepared_images(data, PREP, data.card.kind, CPU)
    assert first.pixel_cache == "built" and len(count_prepare) == len(data)
    x_cached, y_cached = loaded(first)
    assert len(count_prepare) == len(data)  # reading the built entry decodes nothing

    again = cls_mod.prepared_images(open_dataset(frost, "train"), PREP, data.card.kind, CPU)
    assert again.pixel_cache == "hit"
    x_hit, y_hit = loaded(again)
    batch = again.__getitems__([3, 0, 2])  # the loader's batched read
    assert len(count_prepare) == len(data)

    plain = cls_mod.PreparedImages(data, PREP, data.card.kind)  # decoding, as without a cache
    x_dec, y_dec = loaded(plain)
    assert x_cached.dtype == torch.uint8 and torch.equal(x_cached, x_dec)
    assert torch.equal(x_hit, x_dec) and torch.equal(y_hit, y_dec) and torch.equal(y_cached, y_dec)
    assert all(torch.equal(x, x_dec[i]) and torch.equal(y, y_dec[i])
               for (x, y), i in zip(batch, [3, 0, 2]))
    xb, yb = cls_mod.PreparedImages.collate(batch)  # the loaders' collate: the batch as read
    assert torch.equal(xb, x_dec[[3, 0, 2]]) and torch.equal(yb, y_dec[[3, 0, 2]])
    xd, yd = cls_mod.PreparedImages.collate([plain[3], plain[0]])  # decoded: torch's collate
    assert torch.equal(xd, x_dec[[3, 0]]) and torch.equal(yd, y_dec[[3, 0]])
    # another preprocessing is another entry
    other = cls_mod.prepared_images(data, Preprocessing(24, mean=(0.5,) * 3, std=(0.5,) * 3),
                                    data.card.kind, CPU)
    assert other.pixel_cache == "built" and other[0][0].shape == (3, 24, 24)


def test_change_detection_pairs_are_cached_as_prepared(synth_suite):
    root = synth_suite["folder"]["mb-change_cls_ctx"]
    data = open_dataset(root, "val")
    cached = cls_mod.prepared_images(data, PREP, data.card.kind, CPU)
    x_dec, y_dec = loaded(cls_mod.PreparedImages(data, PREP, data.card.kind))
    x, y = loaded(cached)
    assert cached.pixel_cache in ("built", "hit") and torch.equal(x, x_dec)
    assert torch.equal(y, y_dec) and bool((x[:, 0] == 0).all())  # [zeros, after, before]


def test_an_image_rewritten_in_place_is_a_new_entry(frost, count_prepare):
    image = sorted((frost / "data" / "train").rglob("*.png"))[0]
    original = np.asarray(Image.open(image))
    Image.fromarray(original).save(image, compress_level=0)  # stored deflate: size = f(shape)
    size, stat = image.stat().st_size, image.stat()
    data = open_dataset(frost, "train")
    before = cls_mod.prepared_images(data, PREP, data.card.kind, CPU)
    assert before.pixel_cache == "built"

    Image.fromarray(255 - original).save(image, compress_level=0)  # same name, same size
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the old mtime
    assert image.stat().st_size == size
    fresh = open_dataset(frost, "train")
    after = cls_mod.prepared_images(fresh, PREP, fresh.card.kind, CPU)
    assert after.pixel_cache == "built" and after.pixels.path != before.pixels.path
    decoded = loaded(cls_mod.PreparedImages(fresh, PREP, fresh.card.kind))[0]
    assert torch.equal(loaded(after)[0], decoded)
    changed = [i for i in range(len(data)) if not torch.equal(before[i][0], decoded[i])]
    assert len(changed) == 1  # the old entry holds the old pixels of that one image


@pytest.mark.parametrize("damage", ["truncated", "grown", "meta", "missing_meta", "shape"])
def test_a_damaged_entry_is_rebuilt(frost, count_prepare, damage):
    data = open_dataset(frost, "train")
    built = cls_mod.prepared_images(data, PREP, data.card.kind, CPU)
    entry = built.pixels.path
    reference = loaded(built)[0]
    images_bin, meta = entry / "images.bin", entry / "meta.json"
    if damage == "truncated":  # a build killed half-way through a copy
        images_bin.write_bytes(images_bin.read_bytes()[:100])
    elif damage == "grown":
        images_bin.write_bytes(images_bin.read_bytes() + b"\0" * 7)
    elif damage == "meta":
        meta.write_text("{not json")
    elif damage == "missing_meta":
        meta.unlink()
    else:  # a header that disagrees with the file size
        doc = json.loads(meta.read_text())
        doc["fields"]["images"]["shape"] = [3, 32, 31]
        meta.write_text(json.dumps(doc))
    decodes = len(count_prepare)
    again = cls_mod.prepared_images(open_dataset(frost, "train"), PREP, data.card.kind, CPU)
    assert again.pixel_cache == "built" and len(count_prepare) == decodes + len(data)
    assert torch.equal(loaded(again)[0], reference)
    assert not [p for p in entry.parent.iterdir() if p.name.endswith((".tmp", ".old"))]


class SlowToy(Dataset):
    """Deterministic arrays; each decode is logged to a file (shared by processes)."""

    def __init__(self, log: Path, n: int = 12, ragged: bool = False) -> None:
        self.log, self.n, self.ragged = log, n, ragged

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()}:{i}\n")
        time.sleep(0.01)
        h = 5 + (i % 3) if self.ragged else 6
        image = torch.full((3, h, 7), i, dtype=torch.uint8)
        return image, torch.tensor(i * 10, dtype=torch.int64)


TOY_FIELDS = (Field("images", "uint8"), Field("targets", "int64"))


def build_toy(cache_dir: str, log: str, ragged: bool = False):
    cache = open_or_build("toy", SlowToy(Path(log), ragged=ragged), TOY_FIELDS,
                          sample_ids=[str(i) for i in range(12)], cache_dir=Path(cache_dir),
                          workers=0)
    return cache.status


def _build_in_process(cache_dir, log, queue):
    queue.put(build_toy(cache_dir, log))


def check_toy(cache: PixelCache, ragged: bool = False) -> None:
    for i in range(12):
        h = 5 + (i % 3) if ragged else 6
        assert torch.equal(cache.row("images", i), torch.full((3, h, 7), i, dtype=torch.uint8))
        assert int(cache.row("targets", i)) == i * 10


def test_concurrent_builders_in_threads_decode_once(tmp_path):
    log = tmp_path / "decodes.log"
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(
        build_toy(str(tmp_path / "c"), str(log)))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["built", "hit", "hit"]
    assert len(log.read_text().splitlines()) == 12  # one decode per sample
    check_toy(open_or_build("toy", SlowToy(log), TOY_FIELDS,
                            sample_ids=[str(i) for i in range(12)], cache_dir=tmp_path / "c"))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_concurrent_builders_in_processes_leave_one_whole_entry(tmp_path):
    log = tmp_path / "decodes.log"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_process, args=(str(tmp_path / "c"), str(log), queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(queue.get(timeout=5) for _ in procs) == ["built", "hit"]
    decoded_by = {line.split(":")[0] for line in log.read_text().splitlines()}
    assert len(log.read_text().splitlines()) == 12 and len(decoded_by) == 1
    assert [p.name for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")] == ["toy"]
    check_toy(open_or_build("toy", SlowToy(log), TOY_FIELDS,
                            sample_ids=[str(i) for i in range(12)], cache_dir=tmp_path / "c"))


def test_readers_hold_memory_maps_not_arrays(tmp_path):
    cache = open_or_build("toy", SlowToy(tmp_path / "log"), TOY_FIELDS,
                          sample_ids=[str(i) for i in range(12)], cache_dir=tmp_path / "c")
    images = cache.array("images")
    assert isinstance(images, np.memmap) and images.shape == (12, 3, 6, 7)
    assert not images.flags.writeable  # mapped read-only: nothing can write the entry
    row = cache.row("images", 3)
    row += 1  # a row is a writable copy (augmentation may work in place)
    assert int(images[3, 0, 0, 0]) == 3
    assert len(pickle.dumps(cache)) < 2000  # a worker gets paths, never the pixels
    clone = pickle.loads(pickle.dumps(cache))
    check_toy(clone)


def test_samples_of_different_sizes_are_stored_flat(tmp_path):
    log = tmp_path / "log"
    assert build_toy(str(tmp_path / "c"), str(log), ragged=True) == "built"
    cache = open_or_build("toy", SlowToy(log, ragged=True), TOY_FIELDS,
                          sample_ids=[str(i) for i in range(12)], cache_dir=tmp_path / "c")
    assert cache.status == "hit" and cache.meta["fields"]["images"]["shape"] is None
    check_toy(cache, ragged=True)
    with pytest.raises(ValueError, match="different shapes"):
        cache.array("images")


def test_setting_off_budget_and_bad_values(tmp_path, monkeypatch, frost):
    toy = dict(sample_ids=[str(i) for i in range(12)], cache_dir=tmp_path / "c")
    monkeypatch.setenv("MARSBENCH_PIXEL_CACHE", "0")
    assert open_or_build("toy", SlowToy(tmp_path / "log"), TOY_FIELDS, **toy) is None
    data = open_dataset(frost, "train")
    assert cls_mod.prepared_images(data, PREP, data.card.kind, CPU).pixel_cache == "off"
    monkeypatch.setenv("MARSBENCH_PIXEL_CACHE", "1k")  # 1 KiB: the toy needs 12 * 134 bytes
    with pytest.warns(RuntimeWarning, match="more than the budget"):
        assert open_or_build("toy", SlowToy(tmp_path / "log"), TOY_FIELDS, **toy) is None
    assert not (tmp_path / "c" / "toy").exists()
    monkeypatch.setenv("MARSBENCH_PIXEL_CACHE", "lots")
    with pytest.raises(OptionError, match="MARSBENCH_PIXEL_CACHE"):
        pixels.pixel_cache_budget()
    monkeypatch.setenv("MARSBENCH_PIXEL_CACHE", "2G")
    assert pixels.pixel_cache_budget() == 2 * 2**30


def test_least_recently_used_entries_are_pruned_past_the_budget(tmp_path, monkeypatch):
    root = tmp_path / "c"
    ids = [str(i) for i in range(12)]
    for key in ("old", "mid"):
        open_or_build(key, SlowToy(tmp_path / "log"), TOY_FIELDS, sample_ids=ids, cache_dir=root)
        time.sleep(0.05)
    os.utime(root / "old" / "meta.json", (1, 1))
    size = sum(p.stat().st_size for p in (root / "mid").iterdir())
    monkeypatch.setenv("MARSBENCH_PIXEL_CACHE", str(int(size * 2.5)))  # room for two entries
    open_or_build("new", SlowToy(tmp_path / "log"), TOY_FIELDS, sample_ids=ids, cache_dir=root)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["mid", "new"]


def test_unwritable_cache_falls_back_to_decoding(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pixels.tempfile, "mkdtemp", refuse)  # (a read-only folder, even as root)
    with pytest.warns(RuntimeWarning, match="not writable"):
        assert open_or_build("toy", SlowToy(tmp_path / "log"), TOY_FIELDS,
                             sample_ids=[str(i) for i in range(12)], cache_dir=tmp_path) is None


# -- whole runs --------------------------------------------------------------------------------

def _spec(synth_suite, name, regime, **options):
    from marsbench.runs.spec import RunSpec

    root = synth_suite["folder"][name].parent
    return RunSpec(dataset=name, model="efficientnet_lite0", regime=regime, data_root=str(root),
                   max_epochs=2, patience=0, batch_size=8, lr=1e-3,
                   options={"input_size": "32", **options})


def test_fine_tuning_metrics_are_identical_with_and_without_the_cache(synth_suite, monkeypatch):
    from marsbench.training.run import run_experiment

    spec = _spec(synth_suite, "mb-landmark_cls", "fine_tuning")  # augmentation on
    monkeypatch.setenv("MARSBENCH_PIXEL_CACHE", "0")
    off = run_experiment(spec)
    monkeypatch.setenv("MARSBENCH_PIXEL_CACHE", "1")
    built = run_experiment(spec)
    hit = run_experiment(spec)
    assert (off.extra["pixel_cache"], built.extra["pixel_cache"],
            hit.extra["pixel_cache"]) == ("off", "built", "hit")
    assert off.metrics == built.metrics == hit.metrics
    assert off.extra["history"] == built.extra["history"] == hit.extra["history"]


def test_feature_pass_reads_the_cache_and_a_feature_hit_reads_no_pixels(synth_suite):
    from marsbench.training.run import run_experiment

    spec = _spec(synth_suite, "mb-frost_cls", "feature_extraction")
    assert run_experiment(spec).extra["pixel_cache"] == "built"
    again = run_experiment(spec.replace(lr=1e-2))  # features cached: no image read at all
    assert again.extra["pixel_cache"] == "unused"


def test_segmentation_images_are_cached_as_decoded(synth_suite):
    from marsbench.training.segmentation import (
        InputPolicy,
        SegmentationImages,
        segmentation_images,
    )

    data = open_dataset(synth_suite["folder"]["mb-boulder_seg"], "val")
    for policy in (InputPolicy("native", 0), InputPolicy("reference", 64)):
        cached = segmentation_images(data, policy, PREP, CPU)
        assert cached.pixel_cache == "built"
        plain = SegmentationImages(data, policy, PREP)
        for i in range(len(data)):
            (x, m, sid), (x0, m0, sid0) = cached[i], plain[i]
            assert torch.equal(x, x0) and torch.equal(m, m0) and sid == sid0
            assert m.dtype == torch.int64
        assert segmentation_images(data, policy, PREP, CPU).pixel_cache == "hit"


def test_segmentation_masks_keep_the_ignore_label_through_the_cache():
    from marsbench.training.segmentation import IGNORE, _CacheRows, _mask_from_cache

    class One:
        def __len__(self):
            return 1

        def decode(self, i):
            return (torch.zeros(3, 2, 3, dtype=torch.uint8),
                    torch.tensor([[0, 1, IGNORE], [254, IGNORE, 2]]), "a")

    image, m8 = _CacheRows(One())[0]
    assert m8.dtype == torch.uint8 and m8.tolist() == [[0, 1, 255], [254, 255, 2]]
    assert torch.equal(_mask_from_cache(m8), One().decode(0)[1])


# -- batched augmentation ----------------------------------------------------------------------

def augment_one(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """The per-image augmentation marsbench ran before it was batched (the oracle)."""
    u = torch.rand(5, generator=g).tolist()
    if u[0] < cfg.hflip_p:
        x = x.flip(-1)
    if u[1] < cfg.vflip_p:
        x = x.flip(-2)
    if u[2] < cfg.rot90_p:
        x = torch.rot90(x, int(torch.randint(0, 4, (1,), generator=g)), dims=(-2, -1))
    if u[3] < cfg.jitter_p:
        f = (torch.rand(4, generator=g) * 2 - 1).tolist()
        ops = {0: lambda im: TF.adjust_brightness(im, 1 + cfg.brightness * f[0]),
               1: lambda im: TF.adjust_contrast(im, 1 + cfg.contrast * f[1]),
               2: lambda im: TF.adjust_saturation(im, 1 + cfg.saturation * f[2]),
               3: lambda im: TF.adjust_hue(im, cfg.hue * f[3])}
        for op in torch.randperm(4, generator=g).tolist():
            if op >= 2 and x.shape[-3] != 3:
                continue
            x = ops[op](x)
    if u[4] < cfg.blur_p:
        k = cfg.blur_kernels[int(torch.randint(0, len(cfg.blur_kernels), (1,), generator=g))]
        x = TF.gaussian_blur(x, [k, k])
    return x.contiguous()


@pytest.mark.parametrize("cfg", [CLASSIFICATION_AUGMENT, AugmentConfig(jitter_p=1.0, blur_p=1.0),
                                 AugmentConfig(jitter_p=0.0, blur_p=0.0)],
                         ids=["classification", "all-colour", "geometric"])
@pytest.mark.parametrize("channels", [1, 3])
def test_batched_augment_equals_per_image_augment(cfg, channels):
    torch.manual_seed(channels)
    x = torch.randint(0, 256, (48, channels, 24, 24), dtype=torch.uint8)
    x[:4] = 128  # flat images: contrast's mean, hue's undefined saturation
    original = x.clone()
    g = torch.Generator().manual_seed(11)
    expected = torch.stack([augment_one(im, g, cfg) for im in x])
    g2 = torch.Generator().manual_seed(11)
    out = preprocess_mod.augment(x, g2, cfg)
    assert torch.equal(out, expected)
    assert torch.equal(x, original)  # the caller's batch is not written
    assert torch.equal(g.get_state(), g2.get_state())  # the same draws consumed


def test_batched_augment_segmentation_pairs_and_non_square_images():
    from marsbench.training.segmentation import SEGMENTATION_AUGMENT

    image = torch.randint(0, 256, (4, 20, 30), dtype=torch.uint8)  # image + mask channel
    for seed in range(12):
        expected = augment_one(image, torch.Generator().manual_seed(seed), SEGMENTATION_AUGMENT)
        out = preprocess_mod.augment(image, torch.Generator().manual_seed(seed),
                                     SEGMENTATION_AUGMENT)
        assert torch.equal(out, expected)
    mixed = torch.zeros(8, 3, 20, 30, dtype=torch.uint8)
    only_rot = AugmentConfig(hflip_p=0, vflip_p=0, rot90_p=1, jitter_p=0, blur_p=0)
    with pytest.raises(ValueError, match="non-square"):
        preprocess_mod.augment(mixed, torch.Generator().manual_seed(0), only_rot)


def test_augment_keeps_a_channels_last_batch_channels_last():
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    out = preprocess_mod.augment(nhwc, torch.Generator().manual_seed(2))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, preprocess_mod.augment(x, torch.Generator().manual_seed(2)))


def test_warnings_are_not_raised_on_a_plain_hit(frost):
    data = open_dataset(frost, "train")
    cls_mod.prepared_images(data, PREP, data.card.kind, CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cls_mod.prepared_images(data, PREP, data.card.kind, CPU).pixel_cache == "hit"
    shutil.rmtree(Path(os.environ["MARSBENCH_CACHE"]) / "pixels")
    assert cls_mod.prepared_images(data, PREP, data.card.kind, CPU).pixel_cache == "built"

"""The one preprocessing path: checked against PIL and torchvision's own transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from marsbench.models import (
    AugmentConfig,
    BatchPreprocessor,
    Preprocessing,
    augment,
    get_spec,
    prepare,
    preprocess,
    preprocess_batch,
    to_uint8_tensor,
)

PREP = Preprocessing(input_size=32)


def _rng_image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_resize_matches_pil_bilinear_antialiased() -> None:
    image = _rng_image(100, 100, 3)
    ours = prepare(image, PREP).permute(1, 2, 0).numpy().astype(int)
    pil = np.asarray(Image.fromarray(image).resize((32, 32), Image.BILINEAR)).astype(int)
    assert np.abs(ours - pil).max() <= 1


def test_preprocess_matches_torchvision_pipeline() -> None:
    image = _rng_image(50, 70, 3, seed=1)
    expected = v2.Compose([
        v2.ToImage(),
        v2.Resize((32, 32), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(PREP.mean), std=list(PREP.std)),
    ])(image)
    torch.testing.assert_close(preprocess(image, PREP), expected)


def test_grayscale_replicated_to_three_identical_channels() -> None:
    gray = _rng_image(40, 40, 1, seed=2)
    x = prepare(gray, PREP)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    # 2-D arrays are grayscale too, and give the same result
    assert torch.equal(prepare(gray[:, :, 0], PREP), x)
    y = preprocess(gray, PREP)
    mean, std = torch.tensor(PREP.mean), torch.tensor(PREP.std)
    # replication happens before normalisation: each channel uses its own mean/std
    torch.testing.assert_close(y * std.view(3, 1, 1) + mean.view(3, 1, 1),
                               x.float().div(255).expand(3, -1, -1))


def test_rgb_to_single_channel_model_is_luminance_and_other_bands_are_refused() -> None:
    rgb = _rng_image(32, 32, 3, seed=3)
    one = Preprocessing(input_size=32, in_channels=1, mean=(0.5,), std=(0.5,))
    expected = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    assert np.abs(prepare(rgb, one)[0].numpy().astype(int) - expected).max() <= 1
    with pytest.raises(ValueError, match="7-band image"):
        prepare(_rng_image(32, 32, 7), PREP)


def test_image_pair_is_zeros_after_before() -> None:
    before = _rng_image(32, 32, 1, seed=4)
    after = _rng_image(32, 32, 1, seed=5)
    x = to_uint8_tensor((before, after))
    assert x.shape == (3, 32, 32)
    assert not x[0].any()
    assert torch.equal(x[1], torch.from_numpy(after[:, :, 0]))
    assert torch.equal(x[2], torch.from_numpy(before[:, :, 0]))
    # a pair goes through the same path as any sample
    assert torch.equal(prepare((before, after), PREP), x)
    with pytest.raises(ValueError, match="pair sizes differ"):
        to_uint8_tensor((before, _rng_image(16, 16, 1)))


def test_non_uint8_input_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match="uint8"):
        preprocess(np.zeros((8, 8, 3), dtype=np.float32), PREP)


def test_batch_paths_agree_with_per_sample_path() -> None:
    images = [_rng_image(40, 60, 1, seed=s) for s in range(3)]
    per_sample = torch.stack([preprocess(im, PREP) for im in images])
    torch.testing.assert_close(preprocess_batch(images, PREP), per_sample)
    raw = torch.stack([to_uint8_tensor(im) for im in images])  # (B, 1, 40, 60) uint8
    torch.testing.assert_close(BatchPreprocessor(PREP)(raw), per_sample)


def test_real_mars_image_through_a_spec(shared_data) -> None:
    path = next((shared_data / "mb-landmark_cls-mini" / "data" / "train").rglob("*.jpg"))
    image = np.asarray(Image.open(path))
    if image.ndim == 2:
        image = image[:, :, None]
    spec = get_spec("inception_v3")
    x = preprocess(image, spec.preprocessing)
    assert x.shape == (3, 299, 299) and x.dtype == torch.float32
    assert torch.isfinite(x).all()


def test_augment_is_seeded_and_keeps_shape() -> None:
    x = prepare(_rng_image(32, 32, 3, seed=6), PREP)
    batch = torch.stack([x] * 8)

    def run(seed: int) -> torch.Tensor:
        return augment(batch, torch.Generator().manual_seed(seed))

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == batch.shape and a.dtype == torch.uint8
    assert any(not torch.equal(img, x) for img in a)  # something happened


def test_augment_flips_are_exact_when_forced() -> None:
    x = prepare(_rng_image(32, 32, 3, seed=7), PREP)
    only_hflip = AugmentConfig(hflip_p=1, vflip_p=0, rot90_p=0, jitter_p=0, blur_p=0)
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), only_hflip), x.flip(-1))
    nothing = AugmentConfig(hflip_p=0, vflip_p=0, rot90_p=0, jitter_p=0, blur_p=0)
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), nothing), x)
    gray = prepare(_rng_image(32, 32, 1, seed=8), PREP)
    jitter = AugmentConfig(hflip_p=0, vflip_p=0, rot90_p=0, jitter_p=1, blur_p=0)
    out = augment(gray, torch.Generator().manual_seed(3), jitter)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # gray stays gray


def test_preprocessing_key_is_stable_and_distinguishes_specs() -> None:
    a, b = get_spec("resnet101").preprocessing, get_spec("efficientnet_lite0").preprocessing
    assert a.key() == Preprocessing(224).key()
    assert a.key() != b.key()
    assert get_spec("inception_v3").preprocessing.input_size == 299

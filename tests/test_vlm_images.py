"""What the model is shown: raw pixels as PNG, longest side capped, never upscaled."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from marsbench.vlm import encode_png, images_hash, sent_size


def decode(png: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG"
    return im


def test_small_uint8_images_are_sent_pixel_for_pixel():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (37, 53, 1), dtype=np.uint8)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    g = decode(encode_png(gray))
    assert g.mode == "L" and np.array_equal(np.array(g), gray[:, :, 0])
    c = decode(encode_png(rgb))
    assert c.mode == "RGB" and np.array_equal(np.array(c), rgb)


@pytest.mark.parametrize(("shape", "max_side", "expected"), [
    ((1200, 900, 3), 512, (512, 384)),
    ((500, 500, 1), 512, (500, 500)),
    ((513, 100, 1), 512, (512, 100)),
    ((100, 80, 1), 64, (64, 51)),
])
def test_longest_side_is_capped_keeping_the_aspect_ratio(shape, max_side, expected):
    image = np.full(shape, 77, np.uint8)
    im = decode(encode_png(image, max_side))
    assert (im.height, im.width) == sent_size(shape, max_side) == expected
    assert (np.array(im) == 77).all()  # a constant image stays constant: no normalisation


def test_seven_band_and_float_images():
    mmls = np.zeros((8, 8, 7), np.float32)
    mmls[..., 0], mmls[..., 1], mmls[..., 2] = 0.0, 0.5, 1.0
    mmls[0, 0, :3] = (1.0, 0.0, 0.5)  # every band spans its own min..max
    im = np.array(decode(encode_png(mmls)))
    assert im.shape == (8, 8, 3)
    assert tuple(im[1, 1]) == (255, 255, 0)  # bands [2, 1, 0] as RGB, each stretched
    assert tuple(im[0, 0]) == (0, 0, 255)
    sixteen = np.array([[[0], [1000]], [[500], [1000]]], np.uint16)
    assert np.array(decode(encode_png(sixteen))).tolist() == [[0, 255], [128, 255]]


def test_image_hash_follows_pixels_order_and_settings():
    a = np.zeros((4, 4, 1), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert images_hash((a,), 512) == images_hash((a.copy(),), 512)
    assert images_hash((a,), 512) != images_hash((b,), 512)
    assert images_hash((a, b), 512) != images_hash((b, a), 512)
    assert images_hash((a,), 512) != images_hash((a,), 256)
    assert images_hash((a,), 512) != images_hash((a.astype(np.uint16),), 512)

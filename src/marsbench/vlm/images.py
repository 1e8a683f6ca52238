"""What a vision-language model is shown: the raw pixels of a sample as a PNG, size-capped.

The encoding is fixed and documented so every provider sees the same thing:

- pixels are the canonical sample's raw values, never normalised; ``uint8`` is sent as is,
  other dtypes (16-bit, float TIFF bands) are stretched linearly per band from the image's own
  min..max to 0..255 (a VLM needs 8-bit pixels; a constant band becomes 0);
- 1 band -> grayscale PNG; 3 bands -> RGB; 2 bands -> the first; 4 bands -> the first three;
  more than 4 bands (MMLS, 7) -> bands [2, 1, 0] as RGB, the reference's choice;
- the longest side is capped at ``max_side`` (default 512) with Lanczos resampling, keeping the
  aspect ratio; smaller images are never upscaled;
- PNG (lossless), no metadata.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

DEFAULT_MAX_SIDE = 512
ENCODING = "png"
MIME_TYPE = "image/png"


def display_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) ``uint8`` from a canonical (H, W, C) image; see the module doc."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] < 1 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"an image must be (H, W, C); got shape {a.shape}")
    bands = a.shape[2]
    if bands == 1 or bands == 2:
        a = a[:, :, :1]
    elif bands == 4:
        a = a[:, :, :3]
    elif bands > 4:
        a = a[:, :, [2, 1, 0]]
    if a.dtype != np.uint8:
        a = _stretch(a)
    return a[:, :, 0] if a.shape[2] == 1 else np.ascontiguousarray(a)


def encode_png(image: np.ndarray, max_side: int = DEFAULT_MAX_SIDE) -> bytes:
    """PNG bytes of ``image`` as sent to a model (module doc: bands, dtype, size cap)."""
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    pixels = display_pixels(image)
    pil = Image.fromarray(pixels)
    w, h = pil.size
    scale = max_side / max(w, h)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def sent_size(shape: tuple[int, ...], max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """(height, width) of the image sent for a sample image of ``shape`` (H, W, ...)."""
    h, w = int(shape[0]), int(shape[1])
    scale = max_side / max(w, h)
    if scale >= 1:
        return h, w
    return max(1, round(h * scale)), max(1, round(w * scale))


def images_hash(images: tuple[np.ndarray, ...] | list[np.ndarray], max_side: int) -> str:
    """sha256 of the raw pixels (shape, dtype, bytes) of every image, in order, and the settings.

    Hashing the source pixels rather than the PNG keeps cache keys stable across Pillow versions.
    """
    h = hashlib.sha256(f"{ENCODING}|max_side={max_side}|n={len(images)}".encode())
    for image in images:
        a = np.ascontiguousarray(image)
        h.update(f"|{a.shape}|{a.dtype.str}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _stretch(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo = np.nanmin(a, axis=(0, 1), keepdims=True)
    hi = np.nanmax(a, axis=(0, 1), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = np.nan_to_num((a - lo) / span * 255.0, nan=0.0)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)

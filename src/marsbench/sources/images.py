"""Decode any image the Mars-Bench formats use into an (H, W, C) array."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _to_hwc(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3 and array.shape[0] < min(array.shape[1:]) and array.shape[0] <= 16:
        return np.moveaxis(array, 0, -1)  # band-first TIFF (C, H, W)
    return array


def decode_image(data: bytes | Path, *, name: str = "") -> np.ndarray:
    """Decode bytes or a file into (H, W, C): grayscale keeps C=1, colour C=3, TIFFs all bands.

    Palette and RGBA images become RGB; 16-bit and float TIFFs keep their dtype (MMLS layers).
    Raises `DataError` naming the file for unreadable or truncated images.
    """
    label = name or (str(data) if isinstance(data, Path) else "<bytes>")
    source = data if isinstance(data, Path) else io.BytesIO(data)
    try:
        if label.lower().endswith((".tif", ".tiff")):
            import tifffile

            return np.ascontiguousarray(_to_hwc(tifffile.imread(source)))
        with Image.open(source) as img:
            img.load()
            if img.mode in ("P", "PA", "RGBA", "LA", "CMYK", "YCbCr"):
                img = img.convert("L" if img.mode in ("LA",) else "RGB")
            return np.ascontiguousarray(_to_hwc(np.asarray(img)))
    except FileNotFoundError:
        raise DataError("file referenced but missing", path=label) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"unreadable or truncated image ({exc})", path=label,
                        fix="re-download the dataset or remove the file from the annotations") from None


def decode_mask(data: bytes | Path, *, name: str = "") -> np.ndarray:
    """Decode a single-channel class-index mask into (H, W) int64."""
    array = decode_image(data, name=name)
    if array.ndim == 3:
        if array.shape[2] > 1 and not all(np.array_equal(array[..., 0], array[..., c])
                                          for c in range(1, array.shape[2])):
            raise DataError("mask has several different channels; expected one class-index channel",
                            path=name or str(data))
        array = array[..., 0]
    return array.astype(np.int64)

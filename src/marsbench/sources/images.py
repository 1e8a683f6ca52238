"""Decode any image the Mars-Bench formats use into an (H, W, C) array, or refuse it by name.

What a reader gets back (the canonical image) and what happens to each kind of file:

========================  ==================================================================
file                      canonical image
========================  ==================================================================
8-bit gray / RGB          as is: ``uint8``, C = 1 or 3
1-bit (PNG/TIFF)          ``uint8`` 0 / 255
palette (P, PA, TIFF)     gray palette -> C = 1, else RGB; palette alpha dropped
gray+alpha, RGBA          alpha dropped -> gray / RGB, **noted** (the dataset's ``notes``)
CMYK, YCbCr, LAB, HSV     converted to RGB (``255 - min(255, C + K)`` for CMYK), **noted**
white-is-zero TIFF        inverted to black-is-zero, **noted**
16-bit, up to 4 bands     scaled to ``uint8`` as ``round(value / 257)`` (65535 -> 255), **noted**;
                          16-bit RGB PNGs are reduced to their high byte by Pillow itself
more than 4 TIFF bands    kept in the file's dtype, float as ``float32`` (multi-band science
                          layers such as MMLS)
other (float, complex or  refused: ``DataError`` naming the file and the pixel type, with the
32-bit int with up to 4   fix (convert it to 8-bit): nothing downstream can turn them into 8-bit
bands, 5-D TIFF, ...)     pixels without inventing a scaling
========================  ==================================================================

Always refused, with a `DataError` naming the file: unreadable, truncated or empty files, formats
other than PNG / JPEG / TIFF (no other Pillow decoder is ever run), images with a side under
`MIN_IMAGE_SIDE` pixels (a 1x1 image carries no content) and images over `max_image_pixels()`
pixels (decompression bombs: a 126-byte PNG can declare 12000x12000; the size is read from the
header before any pixel is decoded; Pillow's own `DecompressionBombError` is caught too).
``MARSBENCH_MAX_IMAGE_PIXELS`` raises the limit for genuinely huge images.

Masks (`decode_mask`) keep raw class indices instead: palette masks give their indices, 1-bit
masks 0 / 1, 16-bit masks their values; several different channels or non-integer values are
refused.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..runs.fingerprint import exact_int
from .errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
PIL_FORMATS = ("PNG", "JPEG", "MPO", "TIFF")  # the only decoders ever run on data files
MIN_IMAGE_SIDE = 8
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
MAX_IMAGE_PIXELS_ENV = "MARSBENCH_MAX_IMAGE_PIXELS"
_FIX_REREAD = "re-download the dataset or remove the file from the annotations"
_FIX_CONVERT = "convert the file to 8-bit gray or RGB (PNG, JPEG or TIFF)"


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def max_image_pixels() -> int:
    """The largest image (width x height) decoded: ``$MARSBENCH_MAX_IMAGE_PIXELS`` or 1e8."""
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    value = exact_int(text) or 0  # "inf", "nan", "12.5", "x": refused below
    if value < 1:
        raise DataError(f"{MAX_IMAGE_PIXELS_ENV} must be a positive pixel count",
                        value=text, fix=f"unset it or set e.g. {DEFAULT_MAX_IMAGE_PIXELS}")
    return value


def _note(notes: list[str] | None, key: str, text: str, label: str) -> None:
    if notes is not None and not any(n.startswith(key) for n in notes):
        notes.append(f"{key} {text} (first: {label})")


def _check_size(width: int, height: int, label: str) -> None:
    limit = max_image_pixels()
    if width * height > limit:
        raise DataError("image too large (decompression-bomb guard)", path=label,
                        value=f"{width}x{height} = {width * height} pixels > {limit}",
                        fix=f"remove the file, or set {MAX_IMAGE_PIXELS_ENV} if it is genuine")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise DataError(f"image too small (a side under {MIN_IMAGE_SIDE} px)", path=label,
                        value=f"{width}x{height}", fix=_FIX_REREAD)


def _to_hwc(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3 and array.shape[0] < min(array.shape[1:]) and array.shape[0] <= 16:
        return np.moveaxis(array, 0, -1)  # band-first TIFF (C, H, W)
    return array


def _tiff_hw(shape: tuple[int, ...], label: str) -> tuple[int, int]:
    if len(shape) == 2:
        return int(shape[1]), int(shape[0])
    if len(shape) == 3:
        if shape[0] < min(shape[1:]) and shape[0] <= 16:
            return int(shape[2]), int(shape[1])
        return int(shape[1]), int(shape[0])
    raise DataError(f"TIFF has {len(shape)} dimensions; expected (H, W) or (H, W, bands)",
                    path=label, value=str(tuple(shape)), fix=_FIX_CONVERT)


class _Tiff:
    """A TIFF's raw (H, W, C) array and how to read its samples (photometric, alpha, palette)."""

    def __init__(self, array: np.ndarray, photometric: int, alpha: bool, colormap) -> None:
        self.array, self.photometric = array, photometric
        self.alpha, self.colormap = alpha, colormap


def _read_tiff(source, label: str) -> _Tiff:
    import tifffile

    with tifffile.TiffFile(source) as tif:
        if not tif.series or not tif.pages:
            raise DataError("TIFF holds no image", path=label, fix=_FIX_REREAD)
        series, page = tif.series[0], tif.pages[0]
        width, height = _tiff_hw(tuple(series.shape), label)
        _check_size(width, height, label)
        array = series.asarray()
        photometric = getattr(page, "photometric", None)
        photometric = 1 if photometric is None else int(photometric)
        alpha = bool(getattr(page, "extrasamples", ()))
        colormap = getattr(page, "colormap", None)
    return _Tiff(_to_hwc(np.asarray(array)), photometric, alpha, colormap)


def _scale16(array: np.ndarray) -> np.ndarray:
    return np.round(array.astype(np.float64) / 257.0).astype(np.uint8)


_MINISWHITE, _RGB, _PALETTE, _SEPARATED = 0, 2, 3, 5


def _tiff_colour(tiff: _Tiff, label: str, notes: list[str] | None) -> np.ndarray:
    """Palette, CMYK, alpha and white-is-zero TIFFs as the pixels they show (noted)."""
    array = tiff.array
    if tiff.photometric == _PALETTE and tiff.colormap is not None and array.shape[2] == 1:
        cmap = np.round(np.asarray(tiff.colormap, dtype=np.float64) / 257.0).astype(np.uint8)
        index = np.clip(array[..., 0].astype(np.int64), 0, cmap.shape[1] - 1)
        rgb = np.moveaxis(cmap[:, index], 0, -1)
        return rgb[..., :1] if (cmap[0] == cmap[1]).all() and (cmap[1] == cmap[2]).all() else rgb
    if tiff.photometric == _SEPARATED and array.shape[2] == 4 and array.dtype == np.uint8:
        _note(notes, "CMYK images:", "converted to RGB", label)
        cmy, k = array[..., :3].astype(np.int64), array[..., 3:].astype(np.int64)
        return (255 - np.clip(cmy + k, 0, 255)).astype(np.uint8)
    if tiff.alpha and array.shape[2] in (2, 4):
        _note(notes, "alpha channel dropped:", "gray+alpha / RGBA images read without alpha",
              label)
        array = array[..., :-1]
    if tiff.photometric == _MINISWHITE and np.issubdtype(array.dtype, np.integer):
        _note(notes, "white-is-zero TIFFs:", "inverted to black-is-zero", label)
        array = np.iinfo(array.dtype).max - array
    return array


def _canonical_tiff(tiff: _Tiff, label: str, notes: list[str] | None) -> np.ndarray:
    array = _tiff_colour(tiff, label, notes)
    bands = array.shape[2]
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    real = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if bands > 4 and real:  # multi-band science layers (MMLS) keep their values
        return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array
    if array.dtype == np.uint16:
        _note(notes, "16-bit images:", "scaled to 8-bit as round(value / 257)", label)
        return _scale16(array)
    raise _unsupported(f"{array.dtype} with {bands} band{'s' if bands > 1 else ''}", label)


def _unsupported(what: str, label: str) -> DataError:
    """Pixels the pipeline cannot turn into 8-bit (float, complex, 32-bit int, ...)."""
    return DataError(f"unsupported image pixel type {what}", path=label, fix=_FIX_CONVERT)


def _gray_palette(img: Image.Image) -> bool:
    palette = img.getpalette() or []
    rgb = [palette[i:i + 3] for i in range(0, len(palette) - 2, 3)]
    return bool(rgb) and all(r == g == b for r, g, b in rgb)


def _canonical_pil(img: Image.Image, label: str, notes: list[str] | None) -> np.ndarray:
    mode = img.mode
    if mode in ("L", "RGB"):
        pass
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("P", "PA"):
        img = img.convert("L" if _gray_palette(img) else "RGB")
    elif mode in ("LA", "La"):
        _note(notes, "alpha channel dropped:", "gray+alpha images read as gray", label)
        img = img.convert("L")
    elif mode in ("RGBA", "RGBa", "RGBX"):
        if mode != "RGBX":
            _note(notes, "alpha channel dropped:", "RGBA images read as RGB", label)
        img = img.convert("RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        _note(notes, f"{mode} images:", "converted to RGB", label)
        img = img.convert("RGB")
    elif mode.startswith("I;16") or mode == "I":
        array = np.asarray(img)
        if mode == "I" and array.size and (array.min() < 0 or array.max() > 65535):
            raise _unsupported(f"32-bit integer (values {array.min()}..{array.max()})", label)
        _note(notes, "16-bit images:", "scaled to 8-bit as round(value / 257)", label)
        return _scale16(array)[:, :, None]
    else:
        raise _unsupported(f"mode {mode!r}", label)
    return _to_hwc(np.asarray(img))


_MAGIC = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\0", "TIFF"),
          (b"MM\0*", "TIFF"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"RIFF", "WEBP"),
          (b"\0\0\0\x0cjP", "JPEG 2000"))


def _sniff(data: bytes | Path, label: str) -> str | None:
    """The format the file's first bytes show (decoded by content: a PNG or TIFF saved under
    a .jpg name is read as what it is); a `DataError` for a format no decoder here reads."""
    if isinstance(data, Path):
        with open(data, "rb") as f:
            head = f.read(16)
    else:
        head = bytes(data[:16])
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
    if kind is not None and kind not in PIL_FORMATS:
        raise DataError(f"unreadable or truncated image (content is {kind}, not PNG, JPEG or "
                        "TIFF)", path=label, fix=_FIX_CONVERT)
    return kind


def _open(data: bytes | Path, label: str):
    """``(kind, object)``: ("tiff", array (H, W, C) raw) or ("pil", loaded PIL image)."""
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) == 0:
        raise DataError("image file is empty (0 bytes)", path=label, fix=_FIX_REREAD)
    if isinstance(data, Path) and data.is_file() and data.stat().st_size == 0:
        raise DataError("image file is empty (0 bytes)", path=label, fix=_FIX_REREAD)
    source = data if isinstance(data, Path) else io.BytesIO(bytes(data))
    kind = None
    try:
        kind = _sniff(data, label)
        if kind == "TIFF" or (kind is None and label.lower().endswith((".tif", ".tiff"))):
            return "tiff", _read_tiff(source, label)
        formats = ("JPEG", "MPO") if kind == "JPEG" else (kind,) if kind else PIL_FORMATS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit below
            img = Image.open(source, formats=formats)
        with img:
            _check_size(*img.size, label)
            img.load()
            img = img.copy()  # closing the file invalidates a loaded image's pixels
        return "pil", img
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("file referenced but missing", path=label) from None
    except IsADirectoryError:
        raise DataError("image path is a folder, not a file", path=label, fix=_FIX_REREAD) from None
    except Image.DecompressionBombError as exc:
        raise DataError("image too large (decompression-bomb guard)", path=label, value=str(exc),
                        fix=f"remove the file, or set {MAX_IMAGE_PIXELS_ENV} and "
                            "PIL.Image.MAX_IMAGE_PIXELS if it is genuine") from None
    except MemoryError:
        raise DataError("image too large to decode in memory", path=label,
                        fix=_FIX_REREAD) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is bad
        detail = str(exc) or type(exc).__name__
        detail = f"{kind} content: {detail}" if kind else detail
        raise DataError(f"unreadable or truncated image ({detail})", path=label,
                        fix=_FIX_REREAD) from None


def image_size(path: Path, *, name: str = "") -> tuple[int, int]:
    """(width, height) from the file's header only; a `DataError` like `decode_image`'s."""
    label = name or str(path)
    try:
        kind = _sniff(path, label)
        if kind == "TIFF" or (kind is None and label.lower().endswith((".tif", ".tiff"))):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return _tiff_hw(tuple(tif.series[0].shape), label)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=PIL_FORMATS) as img:
                return img.size
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("file referenced but missing", path=label) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is bad
        raise DataError(f"unreadable image header ({exc or type(exc).__name__})", path=label,
                        fix=_FIX_REREAD) from None


def decode_image(data: bytes | Path, *, name: str = "",
                 notes: list[str] | None = None) -> np.ndarray:
    """Decode bytes or a file into the canonical (H, W, C) image (see the module doc).

    Conversions that change pixel values (alpha dropped, CMYK -> RGB, 16-bit -> 8-bit) are
    recorded once per kind in ``notes`` (a dataset's ``notes`` list) when it is given.
    Raises `DataError` naming the file for anything refused.
    """
    label = name or (str(data) if isinstance(data, Path) else "<bytes>")
    kind, obj = _open(data, label)
    if kind == "tiff":
        image = _canonical_tiff(obj, label, notes)
    else:
        image = _canonical_pil(obj, label, notes)
    return np.ascontiguousarray(image)


def classification_image(image: np.ndarray, label: str) -> np.ndarray:
    """``image`` if classification models can take it (8-bit), else a `DataError` naming it:
    a multi-band or float layer is kept by `decode_image` for dense tasks only."""
    if image.dtype != np.uint8:
        bands = image.shape[2] if image.ndim == 3 else 1
        raise DataError(f"unsupported image pixel type {image.dtype} with {bands} bands for "
                        "classification", path=label,
                        fix="convert the file to 8-bit gray or RGB (select 1 or 3 bands)")
    return image


def decode_mask(data: bytes | Path, *, name: str = "") -> np.ndarray:
    """Decode a single-channel class-index mask into (H, W) int64 (raw indices, never rescaled)."""
    label = name or (str(data) if isinstance(data, Path) else "<bytes>")
    kind, obj = _open(data, label)
    if kind == "tiff":
        obj = obj.array[..., :-1] if obj.alpha and obj.array.shape[2] in (2, 4) else obj.array
    if kind == "pil":
        mode = obj.mode
        if mode == "1":
            array = np.asarray(obj).astype(np.uint8)
        elif mode in ("L", "P", "I", "RGB") or mode.startswith("I;16"):
            array = np.asarray(obj)
        elif mode in ("LA", "PA", "RGBA"):
            array = np.asarray(obj)[..., :-1]
        else:
            raise DataError("unsupported mask mode; expected a single-channel class-index image",
                            path=label, value=mode, fix="save the mask as an 8-bit gray PNG")
    else:
        array = obj
    if array.ndim == 3:
        if array.shape[2] > 1 and not all(np.array_equal(array[..., 0], array[..., c])
                                          for c in range(1, array.shape[2])):
            raise DataError("mask has several different channels; expected one class-index channel",
                            path=label, fix="save the mask as an 8-bit gray PNG of class ids")
        array = array[..., 0]
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise DataError("mask holds non-integer values; expected class ids", path=label,
                            fix="save the mask as an 8-bit gray PNG of class ids")
    elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise DataError("unsupported mask pixel type", path=label, value=str(array.dtype))
    return array.astype(np.int64)

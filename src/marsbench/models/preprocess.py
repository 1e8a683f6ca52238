"""The one preprocessing path: canonical ``uint8`` ``(H, W, C)`` images -> normalised tensors.

Every model input in marsbench goes through this module, driven by what the model's spec
declares (`Preprocessing`):

1. ``to_uint8_tensor``: one image becomes a ``(C, H, W)`` ``uint8`` tensor; a change-detection
   pair ``(before, after)`` of grayscale images becomes the 3-channel ``[zeros, after, before]``
   image, as the reference builds it (an RGB pair member is converted to luminance first).
2. ``resize``: to ``input_size x input_size`` (no aspect-ratio preservation and no crop, as in the
   reference), bilinear interpolation **with antialiasing** on the ``uint8`` tensor. The reference
   uses OpenCV's ``INTER_LINEAR`` without antialiasing; antialiasing avoids aliasing when a 1024 px
   rover image is shrunk to 224 px. ``Preprocessing(antialias=False)`` is closer to the reference.
3. ``match_channels``: grayscale (C=1) is replicated to the channels the model expects (3);
   an RGB image fed to a 1-channel model becomes luminance. Other band counts are an error.
   A model that declares a band adaptation (``Preprocessing.bands``, Earth-observation models)
   keeps the image's 1 or 3 bands here instead (any other count is an error), so augmentation
   acts on the observed bands; its strategy maps them to the model's bands in step 4.
4. ``normalize``: ``/255`` then the spec's mean/std, as ``float32`` (with ``bands``: ``/255``, the
   strategy's band map, then mean/std; see `marsbench.models.bands`).

Train-time augmentation (`augment`) works on the resized ``uint8`` tensor between steps 3 and 4,
with an explicit ``torch.Generator`` so that a seed fixes every draw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

from .bands import BandAdaptation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageInput = np.ndarray | Sequence[np.ndarray]  # one image, or a (before, after) pair


@dataclass(frozen=True)
class Preprocessing:
    """What a model declares about its input; hashable, and `key()` names it for caches."""

    input_size: int
    in_channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    antialias: bool = True
    bands: BandAdaptation | None = None  # how 1/3-band images become the model's bands

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(
                f"Preprocessing: mean {self.mean} and std {self.std} need one value per input "
                f"channel ({self.in_channels})"
            )
        if self.bands is not None and self.bands.num_bands != self.in_channels:
            raise ValueError(f"Preprocessing: band adaptation to {self.bands.num_bands} bands "
                             f"for a model with {self.in_channels} input channels")

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """A stable text form, for feature-cache keys and run records."""
        return json.dumps(self.to_dict(), sort_keys=True)


def to_uint8_tensor(images: ImageInput) -> torch.Tensor:
    """One canonical image ``(H, W, C)`` (or ``(H, W)``), or a ``(before, after)`` pair, as a
    ``(C, H, W)`` ``uint8`` tensor. A pair becomes ``[zeros, after, before]``."""
    if isinstance(images, np.ndarray):
        return _image_tensor(images)
    images = tuple(images)
    if len(images) == 1:
        return _image_tensor(images[0])
    if len(images) != 2:
        raise ValueError(f"expected one image or a (before, after) pair, got {len(images)} images")
    before, after = (_as_gray(_image_tensor(im)) for im in images)
    if before.shape != after.shape:
        raise ValueError(
            f"image pair sizes differ: before {tuple(before.shape[1:])}, "
            f"after {tuple(after.shape[1:])}; both images of a pair must have the same size"
        )
    return torch.cat([torch.zeros_like(after), after, before], dim=0)


def resize(x: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """Resize ``(..., C, H, W)`` to ``input_size`` square; a no-op when already that size."""
    size = prep.input_size
    if x.shape[-2:] == (size, size):
        return x
    mode = TF.InterpolationMode(prep.interpolation)
    return TF.resize(x, [size, size], interpolation=mode, antialias=prep.antialias)


def match_channels(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """The single place where band counts are adapted to a model (``(..., C, H, W)``)."""
    channels = x.shape[-3]
    if channels == in_channels:
        return x
    if channels == 1:
        return x.expand(*x.shape[:-3], in_channels, *x.shape[-2:])
    if channels == 3 and in_channels == 1:
        return TF.rgb_to_grayscale(x)
    raise ValueError(
        f"cannot feed a {channels}-band image to a model expecting {in_channels} channels; "
        "select the bands to use (e.g. 3 of them) before preprocessing"
    )


def match_bands(x: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """Step 3: `match_channels`, or with a band adaptation the image's checked 1 or 3 bands."""
    if prep.bands is not None:
        return prep.bands.check_source(x)
    return match_channels(x, prep.in_channels)


def normalize(x: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """``uint8`` ``(..., C, H, W)`` -> ``float32`` scaled to [0, 1], then mean/std (with a
    band adaptation: its band map in between)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize expects a uint8 tensor, got {x.dtype}")
    if prep.bands is not None:
        return prep.bands.normalize(x.float() / 255.0, prep.mean, prep.std)
    mean = torch.tensor(prep.mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    std = torch.tensor(prep.std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    return (x.float() / 255.0 - mean) / std


def prepare(images: ImageInput, prep: Preprocessing) -> torch.Tensor:
    """Everything before normalisation: ``uint8`` ``(in_channels, S, S)`` (with a band
    adaptation: the image's own 1 or 3 bands); augment this."""
    return match_bands(resize(to_uint8_tensor(images), prep), prep).contiguous()


def preprocess(images: ImageInput, prep: Preprocessing) -> torch.Tensor:
    """One sample's images -> the normalised ``float32`` ``(in_channels, S, S)`` model input
    (with the ``adapter`` band strategy: the image's 3 channels, for the model's input adapter)."""
    return normalize(prepare(images, prep), prep)


def preprocess_batch(batch: Sequence[ImageInput], prep: Preprocessing) -> torch.Tensor:
    """Many samples (images of any sizes) -> ``float32`` ``(B, in_channels, S, S)``."""
    return normalize(torch.stack([prepare(images, prep) for images in batch]), prep)


class BatchPreprocessor(nn.Module):
    """The same steps as a torch module on a ``uint8`` batch ``(B, C, H, W)``, e.g. on the GPU
    after a collate of `prepare`d or same-sized raw images."""

    def __init__(self, prep: Preprocessing) -> None:
        super().__init__()
        self.prep = prep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(match_bands(resize(x, self.prep), self.prep), self.prep)


@dataclass(frozen=True)
class AugmentConfig:
    """Train-time augmentation probabilities and ranges; defaults are the reference's
    classification pipeline (albumentations HorizontalFlip, VerticalFlip, RandomRotate90 at
    p=0.5; ColorJitter(0.2, 0.2, 0.2, 0.1) at p=0.3; GaussianBlur kernel 3-7 at p=0.2).
    Saturation and hue mix channels, which for a ``[zeros, after, before]`` pair mixes the two
    dates (the reference does it anyway); set them to 0 to keep a pair's channels apart."""

    hflip_p: float = 0.5
    vflip_p: float = 0.5
    rot90_p: float = 0.5
    jitter_p: float = 0.3
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1
    blur_p: float = 0.2
    blur_kernels: tuple[int, ...] = (3, 5, 7)

    def to_dict(self) -> dict:
        return asdict(self)


CLASSIFICATION_AUGMENT = AugmentConfig()


def augment(
    x: torch.Tensor, generator: torch.Generator, config: AugmentConfig = CLASSIFICATION_AUGMENT
) -> torch.Tensor:
    """Randomly augment a ``uint8`` image ``(C, H, W)`` or batch ``(B, C, H, W)`` (each image
    drawn independently). Every draw comes from ``generator``, so a seed fixes the result."""
    if x.dtype != torch.uint8:
        raise TypeError(f"augment expects the uint8 output of prepare(), got {x.dtype}")
    if x.ndim == 4:
        return torch.stack([_augment_one(img, generator, config) for img in x])
    return _augment_one(x, generator, config)


def _augment_one(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    u = torch.rand(5, generator=g).tolist()  # one draw per decision, always consumed
    if u[0] < cfg.hflip_p:
        x = x.flip(-1)
    if u[1] < cfg.vflip_p:
        x = x.flip(-2)
    if u[2] < cfg.rot90_p:
        k = int(torch.randint(0, 4, (1,), generator=g))  # as albumentations: k in 0..3
        x = torch.rot90(x, k, dims=(-2, -1))
    if u[3] < cfg.jitter_p:
        x = _color_jitter(x, g, cfg)
    if u[4] < cfg.blur_p:
        idx = int(torch.randint(0, len(cfg.blur_kernels), (1,), generator=g))
        k = cfg.blur_kernels[idx]
        x = TF.gaussian_blur(x, [k, k])  # sigma from kernel size, as OpenCV's sigma=0
    return x.contiguous()


def _color_jitter(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    factors = (torch.rand(4, generator=g) * 2 - 1).tolist()  # each in [-1, 1)
    ops = {
        0: lambda im: TF.adjust_brightness(im, 1 + cfg.brightness * factors[0]),
        1: lambda im: TF.adjust_contrast(im, 1 + cfg.contrast * factors[1]),
        2: lambda im: TF.adjust_saturation(im, 1 + cfg.saturation * factors[2]),
        3: lambda im: TF.adjust_hue(im, cfg.hue * factors[3]),
    }
    for op in torch.randperm(4, generator=g).tolist():
        if op >= 2 and x.shape[-3] != 3:
            continue  # saturation and hue are defined for RGB only
        x = ops[op](x)
    return x


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy image (H, W, C), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(
            f"expected a uint8 image, got {image.dtype}; scale it to 0-255 uint8 first "
            "(multi-band float TIFFs need a band selection and scaling)"
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W, C), got {image.shape}")
    if not image.flags.writeable:  # e.g. np.asarray(PIL image); torch wants writable memory
        image = image.copy()
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def _as_gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[0] == 1:
        return x
    if x.shape[0] == 3:
        return TF.rgb_to_grayscale(x)
    raise ValueError(f"a pair member must be grayscale or RGB, got {x.shape[0]} bands")


def dense_model_image(image: np.ndarray) -> torch.Tensor:
    """A canonical image for dense (segmentation, detection) models as ``uint8`` ``(3, H, W)``:
    1 or 3 uint8 bands as they are, anything else (MMLS float bands) as bands [2, 1, 0]
    stretched to 8 bits."""
    if image.dtype != np.uint8 or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        from ..vlm.images import display_pixels  # one definition of "show these bands as RGB"

        image = display_pixels(image)
    return match_channels(to_uint8_tensor(image), 3)

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
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

from ..runs.profiles import input_settings
from .bands import BandAdaptation

try:  # batch-capable colour-space helpers; the same code TF.adjust_hue runs
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv
except ImportError:  # pragma: no cover - a torchvision that moved them: hue image by image
    _rgb_to_hsv = _hsv_to_rgb = None

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


def for_profile(prep: Preprocessing, profile: str) -> Preprocessing:
    """The preprocessing a run uses under its profile. ``paper`` feeds every model as the
    reference does (docs/fidelity.md rows 16-17): bilinear resizing without antialiasing (cv2
    ``INTER_LINEAR``) and ImageNet mean/std for every 3-channel model
    (``configs/transforms/default.yaml``), e.g. DPT's 0.5/0.5 encoder too. Multi-band
    Earth-observation models keep their own statistics (the reference has none)."""
    settings = input_settings(profile)
    changes: dict = {}
    if not settings.antialias:
        changes["antialias"] = False
    if settings.imagenet_stats and prep.in_channels == 3 and prep.bands is None:
        changes.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return replace(prep, **changes) if changes else prep


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
    """Randomly augment a ``uint8`` image ``(C, H, W)`` or batch ``(B, C, H, W)`` on any device.

    Each image gets its own draws, all taken from ``generator`` (a CPU generator) in image
    order, in the same sequence as augmenting the images one by one: hflip, vflip, rot90 (k in
    0..3), colour jitter (brightness, contrast, saturation, hue in a random order) and Gaussian
    blur, with ``config``'s probabilities. The pixel work is batched: each operation runs once on
    the images that drew it, never in a loop over images, so it can run on the GPU after the
    batch is moved there. On the CPU a seed fixes the result exactly (and it equals augmenting
    image by image); on CUDA the geometric operations are exact and jitter/blur equal the CPU's
    up to float rounding (a pixel may differ by one grey level).
    Saturation and hue act on 3-band images only (a 1-band image keeps its band)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"augment expects the uint8 output of prepare(), got {x.dtype}")
    if x.ndim == 3:
        return augment(x[None], generator, config)[0]
    if x.ndim != 4:
        raise ValueError(f"augment expects (C, H, W) or (B, C, H, W), got {tuple(x.shape)}")
    layout = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
              and not x.is_contiguous() else torch.contiguous_format)  # kept (NHWC on CUDA)
    d = _AugmentDraws.draw(len(x), generator, config)
    if not d.any():
        return x
    x = _geometric(x, d)
    if any(d.jitter):
        x = _batched_jitter(x, d, config)
    if any(d.blur):
        x = _update(x, d.blur, {k: lambda part, k=k: _blur(part, k) for k in set(d.blur) - {0}})
    if layout is torch.channels_last:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


@dataclass
class _AugmentDraws:
    """Every random decision for a batch, drawn image by image on the CPU (one image's draws
    in the order a one-image augmentation takes them, so batching does not change them)."""

    hflip: list[bool]
    vflip: list[bool]
    rot_k: list[int]  # 0: no rotation
    jitter: list[tuple[tuple[float, ...], tuple[int, ...]] | None]  # factors in [-1, 1), order
    blur: list[int]  # kernel size, 0: no blur

    @classmethod
    def draw(cls, n: int, g: torch.Generator, cfg: AugmentConfig) -> _AugmentDraws:
        d = cls([], [], [], [], [])
        for _ in range(n):
            u = torch.rand(5, generator=g).tolist()  # one draw per decision, always consumed
            d.hflip.append(u[0] < cfg.hflip_p)
            d.vflip.append(u[1] < cfg.vflip_p)
            k = 0
            if u[2] < cfg.rot90_p:
                k = int(torch.randint(0, 4, (1,), generator=g))  # as albumentations: k in 0..3
            d.rot_k.append(k)
            jitter = None
            if u[3] < cfg.jitter_p:
                factors = tuple((torch.rand(4, generator=g) * 2 - 1).tolist())
                jitter = (factors, tuple(torch.randperm(4, generator=g).tolist()))
            d.jitter.append(jitter)
            blur = 0
            if u[4] < cfg.blur_p:
                blur = cfg.blur_kernels[int(torch.randint(0, len(cfg.blur_kernels), (1,),
                                                          generator=g))]
            d.blur.append(blur)
        return d

    def any(self) -> bool:
        return any(self.hflip) or any(self.vflip) or any(self.rot_k) or any(
            self.jitter) or any(self.blur)


def _geometric(x: torch.Tensor, d: _AugmentDraws) -> torch.Tensor:
    """Flips then rot90, per image: the images are grouped by their (hflip, vflip, k) draw and
    each group is transformed at once (pure index permutations: exact on any device)."""
    groups: dict[tuple[bool, bool, int], list[int]] = {}
    for i, key in enumerate(zip(d.hflip, d.vflip, d.rot_k)):
        groups.setdefault(key, []).append(i)
    if list(groups) == [(False, False, 0)]:
        return x
    if x.shape[-1] != x.shape[-2] and len({k % 2 for (_, _, k) in groups}) > 1:
        raise ValueError(f"augment: rot90 would give the images of a non-square batch "
                         f"{tuple(x.shape)} different shapes; augment them one at a time")
    parts = []
    for (hflip, vflip, k), members in groups.items():
        part = _select(x, members)
        if hflip:
            part = part.flip(-1)
        if vflip:
            part = part.flip(-2)
        if k:
            part = torch.rot90(part, k, dims=(-2, -1))
        parts.append(part)
    return _regroup(x, parts, list(groups.values()))


def _select(x: torch.Tensor, members: list[int]) -> torch.Tensor:
    if len(members) == len(x):
        return x
    return x.index_select(0, torch.tensor(members, dtype=torch.long, device=x.device))


def _regroup(x: torch.Tensor, parts: list[torch.Tensor], members: list[list[int]]
             ) -> torch.Tensor:
    """The batch made of ``parts`` (part j holds images ``members[j]``), in image order.
    (One concatenation and one gather: PyTorch's CPU ``index_copy`` was measured far slower.)"""
    if len(parts) == 1:
        return parts[0].contiguous()
    order = [i for group in members for i in group]
    where = torch.empty(len(order), dtype=torch.long)
    where[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(parts).index_select(0, where.to(x.device))


def _blur(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Gaussian blur, sigma from the kernel size (as OpenCV's sigma=0). On the CPU one image
    per call: PyTorch's CPU depthwise convolution was measured 5x slower on a batch than image
    by image (same result); on other devices one batched call."""
    if x.device.type == "cpu":
        return torch.cat([TF.gaussian_blur(part, [kernel, kernel]) for part in x.split(1)])
    return TF.gaussian_blur(x, [kernel, kernel])


def _blend(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` with one ratio per image (``(n, 1, 1, 1)`` float64): the same
    float32 arithmetic, so each image's result equals torchvision's for its ratio."""
    r = ratio.to(torch.float32)
    keep = (1.0 - ratio).to(torch.float32)
    return torch.addcmul(image.mul(r), other, keep).clamp_(0, 255).to(torch.uint8)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """float32 luminance ``(n, 1, H, W)``, floored, as torchvision's uint8 adjustments use."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3).floor_()


def _adjust(op: int, x: torch.Tensor, f: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Colour operation ``op`` (0 brightness, 1 contrast, 2 saturation, 3 hue) on the uint8
    images ``x`` with one factor in [-1, 1) each (``f``: ``(n, 1, 1, 1)`` float64)."""
    if op == 0:
        ratio = (1 + cfg.brightness * f).to(torch.float32)
        return x.to(torch.float32).mul_(ratio).clamp_(0, 255).to(torch.uint8)
    if op == 1:
        gray = _gray(x) if x.shape[-3] == 3 else x.to(torch.float32)
        mean = gray.mean(dim=(-3, -2, -1), keepdim=True)
        return _blend(x, mean, 1 + cfg.contrast * f)
    if op == 2:
        return _blend(x, _gray(x), 1 + cfg.saturation * f)
    if _rgb_to_hsv is None:  # torchvision moved its private helpers: image by image
        return torch.stack([TF.adjust_hue(im, float(cfg.hue * v))
                            for im, v in zip(x, f.view(-1).tolist())])
    hsv = _rgb_to_hsv(TF.to_dtype(x, torch.float32, scale=True))
    h, s, v = hsv.unbind(dim=-3)
    h = h.add((cfg.hue * f).to(torch.float32).view(-1, 1, 1)).remainder_(1.0)
    return TF.to_dtype(_hsv_to_rgb(torch.stack((h, s, v), dim=-3)), torch.uint8, scale=True)


def _update(x: torch.Tensor, chosen: list, fns: dict) -> torch.Tensor:
    """``x`` with image i replaced by ``fns[chosen[i]](...)`` run on all images that chose the
    same function at once (``chosen[i]`` None or absent from ``fns``: the image is kept). A new
    tensor: the caller's batch is never written."""
    groups: dict = {}
    for i, c in enumerate(chosen):
        groups.setdefault(c if c in fns else None, []).append(i)
    parts = [fns[c](_select(x, members)) if c is not None else _select(x, members)
             for c, members in groups.items()]
    return _regroup(x, parts, list(groups.values()))


def _batched_jitter(x: torch.Tensor, d: _AugmentDraws, cfg: AugmentConfig) -> torch.Tensor:
    """Colour jitter of the images that drew it, each in its own random order of the four
    operations: for each position in the order, each operation runs once on the images that
    have it there (at most 16 batched calls on the jittered images)."""
    jittered = [j for j in d.jitter if j is not None]
    factors = torch.tensor([j[0] for j in jittered], dtype=torch.float64)
    ops = range(4) if x.shape[-3] == 3 else range(2)  # saturation, hue: RGB only

    def jitter(part: torch.Tensor) -> torch.Tensor:
        for position in range(4):
            chosen = [j[1][position] for j in jittered]
            fns = {}
            for op in ops:
                f = factors[[i for i, c in enumerate(chosen) if c == op], op]
                fns[op] = lambda p, op=op, f=f: _adjust(op, p, f.view(-1, 1, 1, 1).to(p.device),
                                                        cfg)
            part = _update(part, chosen, fns)
        return part

    return _update(x, [j is not None for j in d.jitter], {True: jitter})


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

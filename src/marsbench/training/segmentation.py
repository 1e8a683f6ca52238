"""Segmentation for the training engine: input-size policies, losses, tiled inference, PNG export.

Input-size policies (the run's typed option ``input_policy``; the record's
``extra["input_policy"]`` says which one ran and with which sizes):

- ``native`` (default): images at their own size, padded to a multiple of 32 (padding is
  ignored by loss and metrics) — nothing of a 500-1200 px scene is thrown away.
- ``tile``: training on random ``tile_size`` crops (default 512), inference by sliding windows
  (``tile_overlap``, default 0.25, Gaussian-weighted, MONAI's ``sliding_window_inference``)
  stitched back to the full-resolution mask; for scenes too large for memory at native size.
- ``reference``: the reference's setting for comparisons: image and mask resized to
  ``input_size`` (default the model's 224; masks by nearest neighbour) and scored there.

Images go through the models' one preprocessing path (`marsbench.models.preprocess`): channels
matched (grayscale replicated), then ``normalize`` with the spec's mean/std, once. Multi-band
float images (MMLS, 7 bands) are first reduced to bands [2, 1, 0] stretched to 8 bits, the
reference's choice (`marsbench.vlm.images.display_pixels`).

Losses (``RunSpec.loss``): ``ce`` (default, ``auto``), ``dice`` (generalised Dice, MONAI's
``GeneralizedDiceLoss``; class weights: option ``dice_weighting`` = ``square`` (default),
``simple`` or ``uniform``) and ``combined`` (``ce+dice``: their sum). The dataset's ignore value
(e.g. 255) and padding are excluded from losses and metrics.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from functools import partial
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..io import atomic_path
from ..metrics.segmentation import SegmentationMeter
from ..models.preprocess import (
    AugmentConfig,
    augment,
    dense_model_image as model_image,
    normalize,
    resize,
)
from ..runs.options import SEGMENTATION_TILE_OVERLAP, SEGMENTATION_TILE_SIZE
from ..vocab import DICE_WEIGHTINGS
from ..sources import MarsDataset
from ..models.preprocess import for_profile
from ..runs.profiles import loop_settings
from .engine import Precision, make_loader, to_device
from .pixels import summarise
from .task import Batch, EngineContext, TaskTrainer

IGNORE = -100  # the label of ignored pixels (dataset ignore value, padding) inside training
# The parts of each segmentation loss (names: marsbench.vocab.LOSSES, validated in the spec).
LOSS_PARTS = {"auto": ("ce",), "ce": ("ce",), "dice": ("dice",), "combined": ("ce", "dice")}
# The reference's segmentation augmentation: flips and rot90, geometric only.
SEGMENTATION_AUGMENT = AugmentConfig(jitter_p=0.0, blur_p=0.0)
STRIDE = 32


@dataclass(frozen=True)
class InputPolicy:
    name: str = "native"
    size: int = 224  # reference: resize target; tile: tile side
    overlap: float = 0.25

    @classmethod
    def from_options(cls, options, model_input_size: int) -> InputPolicy:
        """From the run's validated `SegmentationOptions` (defaults resolved here, once)."""
        if options.input_policy == "tile":
            return cls("tile", options.tile_size or SEGMENTATION_TILE_SIZE,
                       SEGMENTATION_TILE_OVERLAP if options.tile_overlap is None
                       else options.tile_overlap)
        if options.input_policy == "reference":
            size = options.input_size or model_input_size
            if size % STRIDE:
                raise ValueError(f"input_size must be a multiple of {STRIDE}, got {size}")
            return cls("reference", size, 0.0)
        return cls("native", 0, 0.0)

    def describe(self) -> dict:
        out = asdict(self)
        if self.name == "native":
            out.update(size=None, pad_to_multiple_of=STRIDE)
        return out


class SegmentationImages(Dataset):
    """``(uint8 image (3, H, W), int64 mask (H, W), sample id)`` with the ignore value mapped to
    `IGNORE`; resized to the policy's size under ``reference``. With ``pixels`` (the split's
    `PixelCache`, see `segmentation_images`) image and mask are read from the cache's memory
    map: nothing is decoded."""

    def __init__(self, data: MarsDataset, policy: InputPolicy, prep, pixels=None) -> None:
        self.data, self.policy, self.prep, self.pixels = data, policy, prep, pixels
        self.ignore = data.ignore_index
        self.num_classes = data.num_classes

    @property
    def pixel_cache(self) -> str:
        """``hit`` / ``built`` (read from the pixel cache) or ``off`` (decoded every time)."""
        return "off" if self.pixels is None else self.pixels.status

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        if self.pixels is not None:
            return (self.pixels.row("images", i), _mask_from_cache(self.pixels.row("masks", i)),
                    self.data.sample_ids[i])
        return self.decode(i)

    def decode(self, i: int):
        """Sample ``i`` decoded from its files, checked, mapped (and resized)."""
        sample = self.data[i]
        image = model_image(sample.image)
        mask = torch.as_tensor(np.asarray(sample.mask), dtype=torch.int64)
        if mask.shape != image.shape[1:]:
            raise ValueError(f"{self.data.card.name}/{self.data.split}/{sample.sample_id}: mask "
                             f"{tuple(mask.shape)} and image {tuple(image.shape[1:])} differ")
        if self.ignore is not None:
            mask = torch.where(mask == self.ignore, IGNORE, mask)
        bad = mask[(mask != IGNORE) & ((mask < 0) | (mask >= self.num_classes))]
        if bad.numel():
            raise ValueError(f"{self.data.card.name}/{self.data.split}/{sample.sample_id}: mask "
                             f"value {int(bad[0])} is not a class (0..{self.num_classes - 1}) "
                             f"nor the ignore value {self.ignore}")
        if self.policy.name == "reference":
            size = [self.policy.size, self.policy.size]
            image = resize(image, _sized(self.prep, self.policy.size))
            mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
        return image, mask, sample.sample_id


def _sized(prep, size: int):
    from dataclasses import replace

    return replace(prep, input_size=size)


class _CacheRows(Dataset):
    """What the pixel cache stores per sample: the image and the mask as ``uint8`` (255 stands
    for `IGNORE`; classes 0..254)."""

    def __init__(self, images: SegmentationImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image, mask, _ = self.images.decode(i)
        return image, torch.where(mask == IGNORE, 255, mask).to(torch.uint8)


def _mask_from_cache(m8: torch.Tensor) -> torch.Tensor:
    mask = m8.long()
    return mask.masked_fill_(mask == 255, IGNORE)


def segmentation_images(data: MarsDataset, policy: InputPolicy, prep,
                        device: torch.device) -> SegmentationImages:
    """`SegmentationImages` of a split read from the pixel cache (built here on the first use,
    decoded once by the engine's loader workers): fixed-size arrays under ``reference``,
    each sample at its own size under ``native`` / ``tile`` (one entry shared by every model,
    since the image is not resized). Decoded each time when the cache is off
    (``MARSBENCH_PIXEL_CACHE=0``), the split does not fit it, or it has more than 255 classes."""
    import json

    from .engine import default_workers
    from .pixels import Field, open_or_build, pixel_cache_budget, pixel_key

    decoded = SegmentationImages(data, policy, prep)
    if pixel_cache_budget() is None or data.num_classes > 255:  # off, or masks beyond uint8
        return decoded
    if policy.name == "reference":
        resized = {"size": policy.size, "interpolation": prep.interpolation,
                   "antialias": prep.antialias, "masks": "nearest"}
    else:
        resized = {"size": None}
    key = pixel_key(fingerprint=data.fingerprint(), split=data.split, what="segmentation",
                    preprocessing=json.dumps(resized, sort_keys=True))
    pixels = open_or_build(key, _CacheRows(decoded), (Field("images", "uint8"),
                                                      Field("masks", "uint8")),
                           sample_ids=data.sample_ids, workers=default_workers(device),
                           describe={"dataset": data.card.name, "split": data.split,
                                     "variant": str(data.variant), "what": "segmentation",
                                     "fingerprint": data.fingerprint(), "resize": resized})
    return SegmentationImages(data, policy, prep, pixels)


def _collate(items):
    return list(items)


# -- losses ------------------------------------------------------------------------------------

class SegmentationLoss:
    """CE, generalised Dice or both, with `IGNORE` pixels left out; see the module doc."""

    def __init__(self, name: str, num_classes: int, dice_weighting: str = "square",
                 reference_dice: bool = False) -> None:
        if name not in LOSS_PARTS:
            raise ValueError(f"segmentation loss must be one of {', '.join(LOSS_PARTS)}, "
                             f"not {name!r}")
        if dice_weighting not in DICE_WEIGHTINGS:
            raise ValueError(f"dice_weighting must be one of {', '.join(DICE_WEIGHTINGS)}, "
                             f"not {dice_weighting!r}")
        self.parts, self.num_classes = LOSS_PARTS[name], num_classes
        self.dice = None
        if "dice" in self.parts and reference_dice:  # the paper profile
            self.dice = partial(reference_generalized_dice, weighting=dice_weighting)
        elif "dice" in self.parts:
            from monai.losses import GeneralizedDiceLoss

            self.dice = GeneralizedDiceLoss(w_type=dice_weighting, batch=True)
        self.description = "+".join(self.parts) + (
            f"({dice_weighting}{', reference clamp' if reference_dice else ''})"
            if self.dice else "")

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != IGNORE
        if not valid.any():
            return logits.sum() * 0.0  # nothing labelled in this batch: no signal, no NaN
        loss = logits.new_zeros(())
        if "ce" in self.parts:
            loss = loss + F.cross_entropy(logits, target, ignore_index=IGNORE)
        if self.dice is not None:
            # MONAI's loss has no ignore value: zeroing both sides at ignored pixels removes
            # them from every sum it takes (intersection, prediction and target volumes)
            keep = valid.unsqueeze(1).to(logits.dtype)
            probs = logits.softmax(1) * keep
            onehot = F.one_hot(target.clamp(min=0), self.num_classes).permute(0, 3, 1, 2)
            loss = loss + self.dice(probs, onehot.to(logits.dtype) * keep)
        return loss


def reference_generalized_dice(probs: torch.Tensor, onehot: torch.Tensor,
                                weighting: str = "square", smooth: float = 1e-5) -> torch.Tensor:
    """Generalised Dice as the reference computes it (``BaseSegmentationModel.py:133-160``):
    per-class target volumes over the batch clamped at ``smooth`` -- so a class absent from the
    batch gets the weight 1/smooth² = 1e10 (``square``) or 1/smooth (``simple``), where MONAI
    uses the largest finite weight -- and ``smooth`` added to both sides of the ratio. Written
    out because no library has these semantics; `SegmentationLoss` uses it under the paper
    profile. ``probs`` and ``onehot`` are (B, K, H, W), ignored pixels zeroed on both."""
    volume = onehot.sum((0, 2, 3)).clamp(min=smooth)
    weight = {"square": volume ** -2, "simple": volume ** -1}.get(weighting,
                                                                 torch.ones_like(volume))
    intersection = (probs * onehot).sum((0, 2, 3))
    union = (probs + onehot).sum((0, 2, 3))
    return 1 - (2 * (weight * intersection).sum() + smooth) / ((weight * union).sum() + smooth)


# -- batching and inference --------------------------------------------------------------------

def pad_to_stride(x: torch.Tensor, value: float, stride: int = STRIDE,
                  size: tuple[int, int] | None = None) -> torch.Tensor:
    """Pad ``(..., H, W)`` at the bottom/right to ``size`` or the next multiple of ``stride``."""
    h, w = x.shape[-2:]
    th, tw = size or (math.ceil(h / stride) * stride, math.ceil(w / stride) * stride)
    return F.pad(x, (0, tw - w, 0, th - h), value=value) if (th, tw) != (h, w) else x


def stack_padded(images: list[torch.Tensor], masks: list[torch.Tensor]):
    """Normalised images padded with 0 (the mean) and masks with `IGNORE` to one common size."""
    h = math.ceil(max(im.shape[-2] for im in images) / STRIDE) * STRIDE
    w = math.ceil(max(im.shape[-1] for im in images) / STRIDE) * STRIDE
    x = torch.stack([pad_to_stride(im, 0.0, size=(h, w)) for im in images])
    y = torch.stack([pad_to_stride(m, IGNORE, size=(h, w)) for m in masks])
    return x, y


def random_tile(image: torch.Tensor, mask: torch.Tensor, size: int, g: torch.Generator):
    """A ``size`` square crop at a random place (padded first if the image is smaller)."""
    image = pad_to_stride(image, 0, size=(max(size, image.shape[-2]), max(size, image.shape[-1])))
    mask = pad_to_stride(mask, IGNORE, size=image.shape[-2:])
    top = int(torch.randint(0, image.shape[-2] - size + 1, (1,), generator=g))
    left = int(torch.randint(0, image.shape[-1] - size + 1, (1,), generator=g))
    return image[:, top:top + size, left:left + size], mask[top:top + size, left:left + size]


def augment_pair(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator):
    """The same random flips / rot90 for image and mask: the mask rides along as an extra
    ``uint8`` channel through the one augmentation function (255 stands for `IGNORE`)."""
    if mask.max() >= 255:
        raise ValueError("augment_pair: at most 255 classes")
    m8 = torch.where(mask == IGNORE, 255, mask).to(torch.uint8)
    out = augment(torch.cat([image, m8[None]]), g, SEGMENTATION_AUGMENT)
    m = out[-1].long()
    return out[:-1], torch.where(m == 255, IGNORE, m)


@torch.no_grad()
def predict_logits(model, image: torch.Tensor, prep, policy: InputPolicy,
                   device: torch.device) -> torch.Tensor:
    """Logits ``(K, H, W)`` at the input's full resolution for one ``uint8`` image."""
    return predict_batch(model, [image], prep, policy, device)[0]


@torch.no_grad()
def predict_batch(model, images: list[torch.Tensor], prep, policy: InputPolicy,
                  device: torch.device, precision: Precision | None = None
                  ) -> list[torch.Tensor]:
    """Full-resolution fp32 logits for ``uint8`` images of any sizes: padded to a common
    multiple of 32 and run as one batch (``native`` / ``reference``), or window by window
    (``tile``); the forward pass under ``precision``'s autocast."""
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    xs = [normalize(image.to(device, non_blocking=True), prep) for image in images]
    if policy.name == "tile":
        from monai.inferers import sliding_window_inference

        with autocast():
            return [sliding_window_inference(
                x[None], roi_size=(policy.size, policy.size), sw_batch_size=4,
                predictor=model.net, overlap=policy.overlap, mode="gaussian",
                padding_mode="constant", cval=0.0)[0].float().cpu() for x in xs]
    h = math.ceil(max(x.shape[-2] for x in xs) / STRIDE) * STRIDE
    w = math.ceil(max(x.shape[-1] for x in xs) / STRIDE) * STRIDE
    batch = to_device(torch.stack([pad_to_stride(x, 0.0, size=(h, w)) for x in xs]), device)
    with autocast():
        logits = model.net(batch).float().cpu()
    return [out[:, :x.shape[-2], :x.shape[-1]] for out, x in zip(logits, xs)]


# -- the task ----------------------------------------------------------------------------------

class SegmentationTask(TaskTrainer):
    """Segmentation for the engine (`marsbench.training.task`): a `DenseModel` trained with
    early stopping on the validation loss; val and test scored at full resolution, masks
    written to ``predictions_dir/<split>/<id>.png``.

    ``feature_extraction`` with ``fe_path=cached`` runs the frozen encoder once per split and
    trains only the decoder and head on its cached features (`segmentation_features`; kept
    under the engine's cache folder on disk, or in memory only without it); ``fe_path=online``
    runs the whole network every step, with augmentation."""

    def __init__(self, ctx: EngineContext, splits: dict[str, MarsDataset],
                 build_model: Callable[[], torch.nn.Module]) -> None:
        super().__init__(ctx, splits)
        self.build_model = build_model
        self.num_classes = splits["train"].num_classes
        options = self.spec.options
        self.criterion = SegmentationLoss(self.spec.loss, self.num_classes,
                                          options.dice_weighting or "square",
                                          loop_settings(self.spec.profile).reference_dice)
        self.cached = self.spec.regime == "feature_extraction" and options.fe_path == "cached"
        self._write_error: OSError | None = None

    def setup(self) -> torch.nn.Module:
        ctx, spec = self.ctx, self.spec
        model = self.model = ctx.prepare(self.build_model())
        self.policy = policy = InputPolicy.from_options(spec.options, model.spec.input_size)
        self.prep = for_profile(model.preprocessing, spec.profile)  # paper: as the reference
        self.images = {name: segmentation_images(data, policy, self.prep, ctx.device)
                       for name, data in self.splits.items()}  # from the pixel cache
        self.info = {"input_policy": policy.describe(), "loss": self.criterion.description,
                     "preprocessing": self.prep.to_dict(), "weights_tag": model.weights_tag,
                     "ignore_index": self.splits["train"].ignore_index,
                     "frozen": model.frozen_names, "fe_path": spec.options.fe_path,
                     "augment_applied": spec.augment,
                     "pixel_cache": summarise(im.pixel_cache for im in self.images.values())}
        if self.cached:
            return self._setup_cached()
        self.forward = ctx.wrap(model.net)
        self.loader = ctx.train_loader(self.images["train"], _collate)
        self.eval_loaders = {name: ctx.eval_loader(self.images[name], _collate)
                             for name in ("val", "test")}
        if ctx.world is not None:
            self.info["train_samples_per_rank"] = len(self.loader.sampler)
        return model.trained()

    def _setup_cached(self) -> torch.nn.Module:
        from .segmentation_features import FeatureDecoder, split_features

        ctx, model = self.ctx, self.model
        if self.policy.name == "tile":
            from ..errors import OptionError

            raise OptionError("fe_path=cached is not possible with input_policy=tile",
                              where="options", value="fe_path=cached", option="fe_path",
                              fix="use fe_path=online")
        t0 = time.perf_counter()
        self.bank, hits = {}, {}
        for name, data in self.splits.items():
            self.bank[name], hits[name] = split_features(
                model.net, data, self.images[name], name, model_name=self.spec.model,
                weights=model.weights_tag, prep=self.prep, policy=self.policy,
                precision=ctx.precision, device=ctx.device, batch_size=ctx.eval_batch,
                cache_dir=ctx.cache_dir)
        self.timings["feature_extraction_s"] = time.perf_counter() - t0
        self.info.update(feature_cache_hits=hits, augment_applied=False,
                         trained=" + ".join(model.spec.head_names))
        # every rank trains on the whole (small) feature bank: no DDP; the state stays model.net's
        self.decode = ctx.wrap(FeatureDecoder(model.net), distributed=False)
        # the same shuffled order as the image loader (same seed, same generator use)
        self.order = make_loader(range(len(self.bank["train"])), batch_size=self.spec.batch_size,
                                 device=ctx.device, shuffle=True, seed=self.spec.seed,
                                 collate_fn=list, workers=0)
        return torch.nn.ModuleList([model.net.get_submodule(n) for n in model.spec.head_names])

    @property
    def steps_per_epoch(self) -> int:
        return len(self.order) if self.cached else len(self.loader)

    def train_batches(self) -> Iterator[Batch]:
        self.model.train()
        device, criterion = self.ctx.device, self.criterion
        if self.cached:
            for idx in self.order:
                feats, y = self.bank["train"].batch(idx, device)
                yield (lambda f=feats, y=y: criterion(self.decode(*f).float(), y)), len(idx)
            return
        policy, gen = self.policy, self.ctx.generator
        for batch in self.loader:
            xs, ys = [], []
            for image, mask, _ in batch:
                if policy.name == "tile":
                    image, mask = random_tile(image, mask, policy.size, gen)
                if self.spec.augment:
                    image, mask = augment_pair(image, mask, gen)
                xs.append(normalize(image, self.prep))
                ys.append(mask)
            x, y = stack_padded(xs, ys)
            x, y = to_device(x, device), y.to(device, non_blocking=True)
            yield (lambda x=x, y=y: criterion(self.forward(x).float(), y)), len(batch)

    @torch.no_grad()
    def outputs(self, name: str):
        """(full-resolution fp32 logits, mask, sample id) of every image of a split."""
        ctx = self.ctx
        if self.cached:
            feats_of = self.bank[name]
            for idx, feats, masks in feats_of.eval_batches(ctx.eval_batch, ctx.device):
                with ctx.precision.autocast():
                    logits = self.decode(*feats).float().cpu()
                for i, out_logits, mask in zip(idx, logits, masks):
                    h, w = feats_of.size(i)
                    yield out_logits[:, :h, :w], mask[:h, :w], feats_of.ids[i]
            return
        for batch in self.eval_loaders[name]:
            logits = predict_batch(self.model, [b[0] for b in batch], self.prep, self.policy,
                                   ctx.device, ctx.precision)
            for out_logits, (_, mask, sample_id) in zip(logits, batch):
                yield out_logits, mask, sample_id

    def _pass(self, name: str, meter: SegmentationMeter | None = None,
              out: Path | None = None) -> float:
        """Mean per-image loss of a split; with ``meter`` also its metrics (and PNGs)."""
        self.model.eval()
        total, n = 0.0, 0
        for out_logits, mask, sample_id in self.outputs(name):
            total += float(self.criterion(out_logits[None], mask[None]))
            n += 1
            if meter is not None:
                pred = out_logits.argmax(0).numpy()
                meter.update(mask.numpy(), pred)
                if out is not None and self._write_error is None:
                    try:
                        write_mask_png(out / name, sample_id, pred)
                    except OSError as exc:  # the metrics go on; `export` reports it
                        self._write_error = exc
        return total / max(1, n)

    def val_loss(self) -> float:
        return self._pass("val")

    def evaluate(self, split: str) -> dict:
        meter = SegmentationMeter(self.num_classes, self.splits[split].class_names)
        loss = self._pass(split, meter, self.ctx.predictions_dir)
        return meter.compute() | ({"loss": loss} if split == "test" else {})

    def model_cost(self) -> dict:
        from .cost import model_cost

        image = self.images["train"][0][0]
        if self.policy.name == "tile":
            image = image[:, :self.policy.size, :self.policy.size]
        x = stack_padded([normalize(image, self.prep)], [image[0].long()])[0]
        return model_cost(self.spec.model, to_device(x, self.ctx.device),
                          lambda: self.model.net, extra=self.policy.name)

    def export(self) -> Path | None:
        """The masks were written by `evaluate`; a write that failed there is raised here."""
        if self._write_error is not None:
            raise self._write_error
        return self.ctx.predictions_dir


def safe_name(sample_id: str) -> str:
    return str(sample_id).replace("/", "__").replace("\\", "__")


def write_mask_png(folder: Path, sample_id: str, pred: np.ndarray) -> Path:
    """A predicted mask as a single-channel class-index PNG (8-bit; 16-bit above 255 classes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe_name(sample_id)}.png"
    dtype = np.uint8 if pred.max(initial=0) < 256 else np.uint16
    with atomic_path(path, fsync=False) as tmp:  # many small files: atomic, not synced each
        Image.fromarray(np.ascontiguousarray(pred.astype(dtype))).save(tmp, format="PNG")
    return path

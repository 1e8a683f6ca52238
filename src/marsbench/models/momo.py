"""MOMO, the Mars orbital foundation model (Purohit et al., CVPR 2026), as marsbench models.

MOMO's encoders are MAE ViTs (ViT-S/16, ViT-B/16, ViT-L/16, 224 px) pre-trained on HiRISE, CTX
and THEMIS images; ``momo.pth`` is the merge of the three sensor models by task arithmetic with
"Equal Validation Loss" checkpoint selection. The authors publish them on the Hugging Face Hub,
repository ``Mirali33/MOMO``, as ``vit-{s,b,l}-16/{momo,ctx,hirise,themis,hirise_ctx_themis}.pth``;
each file is MOMO's ``utils/misc.save_model`` output ``{"model": MAE state dict, "args": ...}``.

Registered names (see docs/momo.md):

- classification ``momo_vit_<size>16[_<checkpoint>][_instrument]``: ``<size>`` is ``s``, ``b`` or
  ``l``; no checkpoint suffix means ``momo.pth`` (the merged model), else ``_ctx``, ``_hirise``,
  ``_themis`` or ``_hirise_ctx_themis``; ``_instrument`` selects MOMO's instrument normalisation
  (below), no suffix the ImageNet mean/std that MOMO's own downstream code uses; a final ``_lp``
  is MOMO's linear probe (``--finetuning_type lp``): the features are the mean-pooled patch
  tokens before ``fc_norm``, and the head is ``fc_norm -> Linear``, so ``feature_extraction``
  trains ``fc_norm`` with the head (`marsbench.models.heads.MOMO_LINEAR_PROBE`).
- segmentation ``dpt_momo_vit_<size>16[_<checkpoint>]``: smp's DPT on the MOMO encoder (the same
  decoder as the ``dpt`` baseline on ImageNet-21k ViT-B/16).

The classifier is built as MOMO's fine-tuning code builds it (``models/models_vit.py``,
``models_finetune.py``, ``main_finetune.py`` of github.com/kerner-lab/MOMO): a timm
``VisionTransformer`` (patch 16, ``qkv_bias``, MLP ratio 4, LayerNorm eps 1e-6) with global
average pooling of the patch tokens (no class token) followed by a new ``fc_norm`` LayerNorm; the
encoder's final ``norm`` is deleted (``--global_pool`` is always on there). The checkpoint's
encoder keys are timm's own names (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``); the MAE decoder
(``decoder_*``, ``mask_token``), the unused ``norm`` and, if present, the LPIPS loss network
(``lpips_fn.*``) are dropped and listed in the load report; anything else unknown, or a shape
that differs, refuses the file.

Normalisation: ``imagenet`` (the default names) is marsbench's standard path, ``/255`` then the
ImageNet mean/std, as in MOMO's ``utils/transforms.py`` for checkpoint fine-tuning (MOMO's data
loaders also min-max stretch every image first; this path does not). ``instrument``
(``..._instrument``) is MOMO's pre-training normalisation for a from-scratch run
(``data_processing.py``): each image min-max stretched to 0-255 (``uint8``), then ``/255`` and the
instrument's mean/std from ``utils/statistics.json`` (the checkpoint's instrument; the merged and
joint checkpoints use the joint HiRISE_CTX_THEMIS statistics). The stretch is computed inside the
backbone (`MinMaxInstrumentNorm`), per channel, on the resized image.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..catalog.card import Task
from .earth_observation import PublishedWeights, verify_checkpoint
from .heads import LINEAR, MOMO_LINEAR_PROBE
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .registry import register
from .spec import BackboneParts, ModelSpec
from .weights import (
    OFFLINE_ENV,
    LoadReport,
    WeightsUnavailableError,
    downloads_allowed,
    host_reachable,
)

MOMO_REPO = "Mirali33/MOMO"
# No commit of the Hub repository could be read where this was written (no network); "main" is
# pinned by name. Replace it with the commit sha shown at huggingface.co/Mirali33/MOMO/commits/main.
MOMO_REVISION = "main"
MOMO_PAGE = "https://github.com/kerner-lab/MOMO (weights: https://huggingface.co/Mirali33/MOMO)"
MOMO_LICENSE = ("MOMO code: MIT (github.com/kerner-lab/MOMO LICENSE); weights: see the model card "
                "at huggingface.co/Mirali33/MOMO")


@dataclass(frozen=True)
class MomoArch:
    """The encoder hyper-parameters (MOMO ``models_pretrain.py`` / ``models_finetune.py``)."""

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    img_size: int = 224  # pre-training size: the position-embedding grid (14 x 14 + cls)
    norm_eps: float = 1e-6  # MOMO's fine-tuning ViT (``vit_customized``); MAE pre-training: 1e-5

    @property
    def num_tokens(self) -> int:
        return (self.img_size // self.patch_size) ** 2 + 1


SIZES: dict[str, MomoArch] = {
    "s": MomoArch(384, 12, 6),
    "b": MomoArch(768, 12, 12),
    "l": MomoArch(1024, 24, 16),
}
# The timm ViT of each size with the same architecture (smp's DPT encoder is built from it).
TIMM_VIT = {"s": "vit_small_patch16_224", "b": "vit_base_patch16_224",
            "l": "vit_large_patch16_224"}

# The published files of each size, and what each was pre-trained on (MOMO's README).
CHECKPOINTS: dict[str, str] = {
    "momo": "MOMO: HiRISE, CTX and THEMIS models merged (task arithmetic + Equal Validation Loss)",
    "ctx": "CTX (Context Camera) only",
    "hirise": "HiRISE only",
    "themis": "THEMIS only",
    "hirise_ctx_themis": "HiRISE, CTX and THEMIS jointly",
}

# MOMO utils/statistics.json: per-instrument mean and std (the same value for all 3 channels).
INSTRUMENT_STATS: dict[str, tuple[float, float]] = {
    "HiRISE": (0.5052, 0.1785),
    "CTX": (0.5169, 0.1609),
    "THEMIS": (0.4782, 0.1559),
    "HiRISE_CTX_THEMIS": (0.5006, 0.1664),
}
CHECKPOINT_INSTRUMENT: dict[str, str] = {
    "momo": "HiRISE_CTX_THEMIS", "hirise_ctx_themis": "HiRISE_CTX_THEMIS",
    "hirise": "HiRISE", "ctx": "CTX", "themis": "THEMIS",
}
NORMALISATIONS = ("imagenet", "instrument")


def hub_filename(size: str, checkpoint: str) -> str:
    return f"vit-{size}-16/{checkpoint}.pth"


def momo_weights(size: str, checkpoint: str) -> PublishedWeights:
    return PublishedWeights(
        kind="hf", tag=f"momo-vit-{size}-16-{checkpoint}", hf_hub_id=MOMO_REPO,
        filename=hub_filename(size, checkpoint), revision=MOMO_REVISION, license=MOMO_LICENSE,
        page=MOMO_PAGE)


def model_name(size: str, checkpoint: str, normalisation: str = "imagenet",
               prefix: str = "", linear_probe: bool = False) -> str:
    """``momo_vit_b16``, ``momo_vit_b16_hirise``, ``momo_vit_l16_ctx_instrument_lp``, ..."""
    name = f"{prefix}momo_vit_{size}16"
    if checkpoint != "momo":
        name += f"_{checkpoint}"
    if normalisation != "imagenet":
        name += f"_{normalisation}"
    return name + ("_lp" if linear_probe else "")


# -- finding the checkpoint -------------------------------------------------------------------

def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def hub_offline() -> str | None:
    """Why no download may be tried (``MARSBENCH_OFFLINE`` or ``HF_HUB_OFFLINE``), or None."""
    if not downloads_allowed():
        return f"downloads are off ({OFFLINE_ENV}=1)"
    from huggingface_hub import constants

    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or getattr(constants, "HF_HUB_OFFLINE", False):
        return "downloads are off (HF_HUB_OFFLINE=1)"
    return None


def fetch_advice(weights: PublishedWeights) -> str:
    from huggingface_hub import constants

    return (f"download it with `hf download {weights.hf_hub_id} {weights.filename} --revision "
            f"{weights.revision}` (or from {weights.download_url()}) into the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} (set HF_HUB_CACHE to move it), or use --regime scratch")


def _missing(weights: PublishedWeights, what: str, why: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"{what}: MOMO checkpoint {weights.filename} of Hugging Face repository "
        f"{weights.hf_hub_id} at revision {weights.revision} is not in the cache and {why}: "
        f"{fetch_advice(weights)}")


def momo_checkpoint_path(weights: PublishedWeights, what: str) -> Path:
    """The cached file, else downloaded with ``hf_hub_download`` at the pinned revision; offline
    (``MARSBENCH_OFFLINE`` / ``HF_HUB_OFFLINE``) no network is tried and a missing file is one
    line naming repository, file, revision and where to put it."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    repo, filename, revision = weights.hf_hub_id or "", weights.filename or "", weights.revision
    found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE,
                                   revision=revision)
    if isinstance(found, str):
        return Path(found)
    why = hub_offline()
    if why is None and not host_reachable(weights.download_url()):
        why = "huggingface.co cannot be reached"
    if why is not None:
        raise _missing(weights, what, why)
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision,
                                    cache_dir=constants.HF_HUB_CACHE))
    except Exception as exc:  # noqa: BLE001 - any hub/network/disk failure means the same thing
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise _missing(weights, what, f"the download failed ({type(exc).__name__}: {first})"
                       ) from exc


def read_momo_checkpoint(path: Path, what: str) -> Mapping[str, Any]:
    """The MAE state dict of a MOMO file, read with ``torch.load(weights_only=True)``: the file is
    ``{"model": state dict, "args": argparse.Namespace}``; that one plain class is allowed."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report every reader failure the same way
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsUnavailableError(
            f"{what}: cannot read {path} with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {first}); delete it and download it again") from exc
    state = obj.get("model") if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        keys = sorted(map(str, obj))[:5] if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsUnavailableError(
            f"{what}: {path} has no 'model' state dict (found {keys}); MOMO checkpoints are "
            "{'model': MAE state dict, 'args': ...}")
    return state


# -- MOMO keys -> timm ------------------------------------------------------------------------

DROPPED = {
    "decoder": "MAE decoder (decoder_*, mask_token): pre-training only",
    "norm": "the encoder's final norm: MOMO's global-pool classifier deletes it (fc_norm instead)",
    "lpips": "LPIPS loss network (lpips_fn.*) of MOMO's combined pre-training loss",
}


def dropped_reason(key: str, target: Mapping[str, torch.Tensor]) -> str | None:
    """Why a checkpoint key is not loaded into ``target`` (a state dict), or None if it must be."""
    if key.startswith("decoder_") or key == "mask_token":
        return "decoder"
    if key.startswith("lpips_fn."):
        return "lpips"
    if key.startswith("norm.") and key not in target:
        return "norm"
    return None


def load_momo_encoder(model: nn.Module, source: Mapping[str, Any], path: Path | str,
                      what: str) -> LoadReport:
    """Load MOMO's encoder tensors into a timm ``VisionTransformer`` (same names, same shapes).

    Every model tensor must come from the file except ``fc_norm.*`` (new, as in MOMO's
    fine-tuning); file tensors not used must be known pre-training parts (`DROPPED`). The report
    lists the loaded keys, the new ``fc_norm`` keys as ``missing`` and the dropped file keys as
    ``unexpected``. Anything else is a `WeightsUnavailableError` naming the key."""
    target = model.state_dict()
    report = LoadReport(path=str(path))
    state: dict[str, torch.Tensor] = {}
    for key, want in target.items():
        if key.startswith("fc_norm."):
            report.missing.append(key)  # new LayerNorm (weight 1, bias 0), as MOMO builds it
            continue
        if key not in source:
            raise WeightsUnavailableError(
                f"{what}: {path} has no tensor {key!r} (shape {tuple(want.shape)} expected); it "
                "is not a MOMO checkpoint of this size")
        got = source[key]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise WeightsUnavailableError(
                f"{what}: {path} tensor {key!r} has shape {shape}, expected "
                f"{tuple(want.shape)}; it is not a MOMO checkpoint of this size")
        state[key] = got
    unknown = []
    for key in source:
        if key in state:
            continue
        if dropped_reason(key, target) is None:
            unknown.append(key)
        else:
            report.unexpected.append(key)
    if unknown:
        raise WeightsUnavailableError(
            f"{what}: {path} holds tensors a MOMO encoder does not have: "
            f"{', '.join(sorted(unknown)[:5])}{' ...' if len(unknown) > 5 else ''} "
            f"({len(unknown)}); it is not a MOMO checkpoint")
    model.load_state_dict(state, strict=False)
    report.loaded = sorted(state)
    return report


def load_published(model: nn.Module, weights: PublishedWeights,
                   what: str) -> tuple[str, LoadReport]:
    """Find (or download), verify and load ``weights`` into ``model``; the weights tag and
    report. The tag names repository, revision, file and the file's sha256."""
    path = momo_checkpoint_path(weights, what)
    digest = verify_checkpoint(weights, path, what)
    report = load_momo_encoder(model, read_momo_checkpoint(path, what), path, what)
    tag = f"hf:{weights.hf_hub_id}@{weights.revision}:{weights.filename}:sha256:{digest[:16]}"
    return tag, report


# -- the classifier backbone ------------------------------------------------------------------

class MinMaxInstrumentNorm(nn.Module):
    """MOMO's pre-training normalisation inside the model: the input arrives normalised with the
    instrument's ``mean``/``std`` (the spec's preprocessing); each image channel is recovered as
    ``uint8`` ``k``, stretched as ``floor(255 (k - min) / (max - min))`` (MOMO
    ``data_processing.py``, then ``astype(uint8)``), and normalised again. A constant channel
    becomes 0 (MOMO divides 0 by 0 there). No parameters; float32 whatever the input dtype."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = float(mean), float(std)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        k = torch.round((x.float() * self.std + self.mean) * 255.0).clamp_(0, 255)
        flat = k.flatten(2)
        low = flat.amin(dim=2)[..., None, None]
        span = (flat.amax(dim=2)[..., None, None] - low).clamp_min(1.0)
        stretched = torch.floor(255.0 * (k - low) / span)
        return ((stretched / 255.0 - self.mean) / self.std).to(dtype)


class MomoViT(VisionTransformer):
    """timm's ``VisionTransformer`` (the same state-dict keys) with an optional parameter-free
    ``input_norm`` before the patch embedding (`MinMaxInstrumentNorm`, or identity)."""

    def __init__(self, input_norm: nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_norm = input_norm if input_norm is not None else nn.Identity()
        self.load_report: LoadReport | None = None

    def forward_features(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return super().forward_features(self.input_norm(x), *args, **kwargs)


def build_momo_vit(arch: MomoArch, input_norm: nn.Module | None = None) -> MomoViT:
    """MOMO's classifier encoder: mean of the patch tokens, then a new ``fc_norm``; no ``norm``,
    no head (``num_classes=0``: the features). Any input size (position table interpolated)."""
    return MomoViT(
        input_norm=input_norm, img_size=arch.img_size, patch_size=arch.patch_size, in_chans=3,
        num_classes=0, global_pool="avg", fc_norm=True, class_token=True,
        embed_dim=arch.embed_dim, depth=arch.depth, num_heads=arch.num_heads, mlp_ratio=4.0,
        qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=arch.norm_eps),
        dynamic_img_size=True)


@dataclass(frozen=True)
class MomoSpec(ModelSpec):
    """A MOMO classifier: size, published checkpoint, normalisation and linear-probe head (all
    in the name); ``builder`` and ``head`` are derived from them."""

    builder: Callable[[bool], Any] = field(init=False, repr=False, compare=False)
    arch: MomoArch | None = None
    size: str = "b"
    checkpoint: str = "momo"
    normalisation: str = "imagenet"
    linear_probe: bool = False

    def __post_init__(self) -> None:
        if self.arch is None or self.checkpoint not in CHECKPOINTS:
            raise ValueError(f"{self.name}: a MOMO spec needs an arch and one of the checkpoints "
                             f"{', '.join(CHECKPOINTS)}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"{self.name}: unknown normalisation {self.normalisation!r}; use "
                             f"one of {', '.join(NORMALISATIONS)}")
        object.__setattr__(self, "builder", functools.partial(_build_backbone, self))
        object.__setattr__(self, "head", MOMO_LINEAR_PROBE if self.linear_probe else LINEAR)

    @property
    def instrument(self) -> str:
        return CHECKPOINT_INSTRUMENT[self.checkpoint]

    def input_norm(self) -> nn.Module | None:
        if self.normalisation == "instrument":
            return MinMaxInstrumentNorm(*INSTRUMENT_STATS[self.instrument])
        return None

    @property
    def backbone_rule(self) -> str:
        if self.linear_probe:
            return ("every parameter (MOMO encoder, mean-pooled patch tokens before fc_norm); "
                    "fc_norm is in the head and trains with it (see docs/momo.md)")
        return ("every parameter (MOMO encoder + its new fc_norm, frozen at weight 1 / bias 0 in "
                "feature_extraction; see docs/momo.md)")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(momo_checkpoint=self.checkpoint, normalisation=self.normalisation,
                   normalisation_detail=_NORMALISATION_TEXT[self.normalisation].format(
                       instrument=self.instrument, stats=INSTRUMENT_STATS[self.instrument]),
                   architecture=dataclasses.asdict(self.arch), revision=MOMO_REVISION,
                   linear_probe=self.linear_probe)
        return out


_NORMALISATION_TEXT = {
    "imagenet": "x/255, then ImageNet mean/std (MOMO's downstream transforms; no per-image "
                "min-max stretch)",
    "instrument": "per-image (per-channel) min-max stretch to uint8, /255, then the {instrument} "
                  "mean/std {stats} of MOMO utils/statistics.json (its pre-training "
                  "normalisation); the stretch runs inside the backbone",
}


def _build_backbone(spec: MomoSpec, pretrained: bool) -> BackboneParts:
    vit = build_momo_vit(spec.arch, spec.input_norm())
    if spec.linear_probe:  # fc_norm moves to the head (MOMO_LINEAR_PROBE): pre-norm features
        vit.fc_norm = nn.Identity()
    tag = "random"
    if pretrained:
        tag, vit.load_report = load_published(vit, spec.weights, spec.name)
    return BackboneParts(vit, spec.arch.embed_dim, None, None, tag)


def momo_spec(size: str, checkpoint: str, normalisation: str = "imagenet",
              linear_probe: bool = False) -> MomoSpec:
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if normalisation == "instrument":
        m, s = INSTRUMENT_STATS[CHECKPOINT_INSTRUMENT[checkpoint]]
        mean, std = (m,) * 3, (s,) * 3
    arch = SIZES[size]
    return MomoSpec(
        name=model_name(size, checkpoint, normalisation, linear_probe=linear_probe),
        task=Task.CLASSIFICATION,
        weights=momo_weights(size, checkpoint), input_size=arch.img_size, mean=mean, std=std,
        family="momo",
        description=(f"MOMO ViT-{size.upper()}/16, {CHECKPOINTS[checkpoint]} "
                     f"({hub_filename(size, checkpoint)}); mean-pooled patch tokens + new "
                     f"fc_norm{' trained with the head (linear probe)' if linear_probe else ''}; "
                     f"{normalisation} normalisation"),
        arch=arch, size=size, checkpoint=checkpoint, normalisation=normalisation,
        linear_probe=linear_probe)


# -- segmentation: DPT on the MOMO encoder ------------------------------------------------------

def _build_dpt(size: str, checkpoint: str, pretrained: bool, num_classes: int) -> nn.Module:
    from .segmentation import Encoder, build_smp

    weights = momo_weights(size, checkpoint)
    net = build_smp("dpt", Encoder(TIMM_VIT[size], "timm", weights), False, num_classes)
    if pretrained:
        what = model_name(size, checkpoint, prefix="dpt_")
        net.weights_tag, net.encoder.model.load_report = load_published(
            net.encoder.model, weights, what)
    return net


def dpt_spec(size: str, checkpoint: str) -> ModelSpec:
    from .segmentation import SEG_HEADS

    return ModelSpec(
        name=model_name(size, checkpoint, prefix="dpt_"), task=Task.SEGMENTATION,
        builder=functools.partial(_build_dpt, size, checkpoint),
        weights=momo_weights(size, checkpoint), input_size=224, head_names=SEG_HEADS,
        family="momo",
        description=(f"DPT (segmentation-models-pytorch) on the MOMO ViT-{size.upper()}/16 "
                     f"encoder, {CHECKPOINTS[checkpoint]} ({hub_filename(size, checkpoint)}); "
                     "ImageNet mean/std"))


def all_specs() -> list[ModelSpec]:
    specs: list[ModelSpec] = [momo_spec(size, ckpt, norm, lp) for size in SIZES
                              for ckpt in CHECKPOINTS for norm in NORMALISATIONS
                              for lp in (False, True)]
    specs += [dpt_spec(size, ckpt) for size in SIZES for ckpt in CHECKPOINTS]
    return specs


for _spec in all_specs():
    register(_spec)

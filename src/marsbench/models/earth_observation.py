"""Earth-observation foundation models as classification backbones, with explicit band adaptation.

Three models of the paper's Earth-observation study, each with its authors' published weights:

- ``satmae_vit_l16``: ViT-L/16, 224 px, fMoW RGB (SatMAE, non-temporal); 3 bands R, G, B;
  built with timm's ``VisionTransformer``.
- ``croma_large``: CROMA's ViT-L optical encoder, 8 px patches, 120 px, SSL4EO-S12 Sentinel-2
  L1C; 12 bands (no B10); built with TorchGeo's ``CROMA``.
- ``prithvi_eo_v1_100``: ViT-B/16, 224 px, 3-frame pre-training on HLS; 6 bands B, G, R, NIR,
  SWIR1, SWIR2; built with timm's ``VisionTransformer``.

Why these builders: TorchGeo (MIT) ships CROMA with the authors' module and key names and a
hash-named copy of the weights, so CROMA is built with it (an optional dependency: ``pip install
torchgeo``). No library ships SatMAE (TerraTorch's SatMAE factory needs the SatMAE sources on
``PYTHONPATH``); its encoder is a plain ViT-L/16 whose key names are timm's. TerraTorch ships
Prithvi, but it pulls in ~47 packages (diffusers, tensorboard, OpenCV, lightning, TorchGeo ...)
and takes over a minute to import here; Prithvi v1's encoder with a single frame is exactly a timm
ViT (see below), so it is built with timm and the authors' checkpoint is mapped onto it here.

Single images on multi-temporal Prithvi: it runs with ``T = 1`` frame. Its 3-D patch embedding has
a temporal size of 1 (``tubelet_size=1``), so each frame is embedded on its own by a 2-D
convolution (the checkpoint's ``(768, 6, 1, 16, 16)`` kernel without its unit axis); its position
embedding is the fixed 3-D sine-cosine table, whose first frame is exactly the table for ``T = 1``.
The alternative, repeating the image over 3 frames, triples the tokens (9x the attention cost) for
a "nothing changed" sequence; TerraTorch's own default for single images is also ``num_frames=1``.

Pooled features (what the head sees): SatMAE and Prithvi, the mean of the patch tokens after the
encoder's final LayerNorm (MAE's global pooling, without a new ``fc_norm``); CROMA, its own pooled
representation ``optical_GAP`` (the GAP-FFN on the mean patch encoding), as the CROMA authors use.

Value ranges: a Mars image's ``uint8`` 0-255 is read as [0, 1] and, for the multispectral models,
stands for each band's pre-training mean +- 2 std — exactly CROMA's and SatMAE's own Sentinel
normalisation (clip to mean +- 2 std, scale to [0, 1]); for Prithvi, whose input is
``(reflectance - mean) / std``, that is ``z = 4 u - 2``. SatMAE RGB reads ``u`` as an 8-bit fMoW
image, normalised with the fMoW mean and std. See `marsbench.models.bands` for the strategies.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..catalog.card import Task
from ..vocab import PROBE_REGIMES
from .bands import (
    BAND_STRATEGIES,
    AdaptedBackbone,
    Band,
    BandAdaptation,
    BandSet,
    BandStrategy,
    InputAdapter,
)
from .preprocess import Preprocessing
from .registry import get_spec, list_specs, register
from .spec import BackboneParts, ModelSpec, WeightSource
from .weights import (
    OFFLINE_ENV,
    WeightsUnavailableError,
    downloads_allowed,
    file_sha256,
    host_reachable,
    torch_hub_checkpoints_dir,
)

BAND_STRATEGY_KEY = "band_strategy"  # the run option naming the strategy

# -- the bands each model was pre-trained on ------------------------------------------------------

FMOW_RGB_MEAN = (0.4182007312774658, 0.4214799106121063, 0.3991275727748871)
FMOW_RGB_STD = (0.28774282336235046, 0.27541765570640564, 0.2764017581939697)

FMOW_RGB = BandSet(
    sensor="fMoW RGB (8-bit WorldView/QuickBird/GeoEye RGB)",
    bands=tuple(Band(n, n, None, m) for n, m in zip(("red", "green", "blue"), FMOW_RGB_MEAN,
                                                     strict=True)),
    value_range="8-bit RGB scaled to [0, 1], then (x - fMoW mean) / fMoW std "
                "(SatMAE util/datasets.py)",
    visible=(0, 1, 2),
)

# Sentinel-2 L1C without the cirrus band B10, in CROMA's order; central wavelengths of S2A.
SENTINEL2_L1C_12 = BandSet(
    sensor="Sentinel-2 L1C (SSL4EO-S12), 12 bands without B10",
    bands=tuple(Band(n, c, w, 0.5) for n, c, w in (
        ("B01", "coastal", 443), ("B02", "blue", 490), ("B03", "green", 560), ("B04", "red", 665),
        ("B05", "red edge 1", 705), ("B06", "red edge 2", 740), ("B07", "red edge 3", 783),
        ("B08", "nir", 842), ("B8A", "nir narrow", 865), ("B09", "water vapour", 945),
        ("B11", "swir 1", 1610), ("B12", "swir 2", 2190))),
    value_range="each band clipped to its mean +- 2 std and scaled to [0, 1] (CROMA README, "
                "after SatMAE/SeCo); the band mean is 0.5",
    visible=(3, 2, 1),
)

# HLS bands and Prithvi-EO v1's normalisation (reflectance x 10000), from its published config.
PRITHVI_V1_MEAN = (775.2290211032589, 1080.992780391705, 1228.5855250417867,
                   2497.2022620507532, 2204.2139147975554, 1610.8324823273745)
PRITHVI_V1_STD = (1281.526139861424, 1270.0297974547493, 1399.4802505642526,
                  1368.3446143747644, 1291.6764008585435, 1154.505683480695)
HLS_6 = BandSet(
    sensor="HLS (Harmonized Landsat Sentinel-2) surface reflectance x 10000",
    bands=tuple(Band(n, c, w, 0.5) for n, c, w in (
        ("B02", "blue", 490), ("B03", "green", 560), ("B04", "red", 665),
        ("B05", "nir narrow", 865), ("B06", "swir 1", 1610), ("B07", "swir 2", 2200))),
    value_range="(reflectance - mean) / std per band, mean " + str(PRITHVI_V1_MEAN) + ", std "
                + str(PRITHVI_V1_STD) + "; a Mars image's [0, 1] stands for mean +- 2 std",
    visible=(2, 1, 0),
)


# -- architectures --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ViTArch:
    """The encoder hyper-parameters of a published checkpoint (the authors' values)."""

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    img_size: int  # pre-training image size: the position-embedding grid
    in_chans: int
    num_frames: int = 1  # frames in the published position embedding (Prithvi: 3)
    norm_eps: float = 1e-6

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


def _timm_vit(arch: ViTArch) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=arch.img_size, patch_size=arch.patch_size, in_chans=arch.in_chans,
        num_classes=0, global_pool="avg", fc_norm=False, embed_dim=arch.embed_dim,
        depth=arch.depth, num_heads=arch.num_heads, mlp_ratio=4.0, qkv_bias=True,
        norm_layer=functools.partial(nn.LayerNorm, eps=arch.norm_eps), dynamic_img_size=True)


class CromaOpticalEncoder(nn.Module):
    """CROMA's Sentinel-2 encoder and GAP-FFN (TorchGeo's modules, the authors' names):
    image ``(B, 12, S, S)`` -> ``optical_GAP`` ``(B, D)``. The 2-D ALiBi attention bias is computed
    for the input's patch grid (it is not learned), so any ``S`` divisible by the patch size works,
    as the CROMA authors allow."""

    def __init__(self, arch: ViTArch) -> None:
        super().__init__()
        # CROMA's own attention bias (a buffer for `image_size`) is not used: built for one patch.
        croma = _torchgeo_croma()(
            modalities=["optical"], encoder_dim=arch.embed_dim, encoder_depth=arch.depth,
            num_heads=arch.num_heads, patch_size=arch.patch_size, image_size=arch.patch_size)
        self.s2_encoder = croma.s2_encoder
        self.s2_GAP_FFN = croma.s2_GAP_FFN  # noqa: N815 - the authors' checkpoint section name

    def attn_bias(self, x: torch.Tensor) -> torch.Tensor:
        size, patch = x.shape[-1], self.s2_encoder.patch_size
        if x.shape[-2] != size or size % patch:
            raise ValueError(f"CROMA takes square images with sides divisible by {patch}, got "
                             f"{tuple(x.shape[-2:])}")
        bias = _alibi(self.s2_encoder.num_heads, (size // patch) ** 2)
        return bias.to(device=x.device, dtype=x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encodings = self.s2_encoder(imgs=x, attn_bias=self.attn_bias(x))
        return self.s2_GAP_FFN(encodings.mean(dim=1))


@functools.lru_cache(maxsize=4)
def _alibi(num_heads: int, num_patches: int) -> torch.Tensor:
    """TorchGeo's 2-D ALiBi bias, computed once per process (it loops over all patch pairs)."""
    from torchgeo.models.croma import get_2dalibi

    with torch.device("cpu"):
        return get_2dalibi(num_heads=num_heads, num_patches=num_patches)


def _torchgeo_croma():
    try:
        from torchgeo.models.croma import CROMA
    except ImportError as exc:
        raise ImportError(
            "croma_large is built with TorchGeo's CROMA: install it with `pip install torchgeo` "
            "(or `pip install 'marsbench[eo]'`)") from exc
    return CROMA


# -- published checkpoints ------------------------------------------------------------------------

@dataclass(frozen=True)
class PublishedWeights(WeightSource):
    """A checkpoint where its authors (or TorchGeo, for CROMA) publish it.

    ``kind`` is ``hf`` (a Hugging Face repository ``hf_hub_id`` and ``filename``, cached in the
    HF cache) or ``url`` (a file cached in the torch hub ``checkpoints`` folder as ``filename``).
    ``sha256_prefix``: the start of the file's sha256 as published (torch hub file-name
    convention); the HF cache names every blob by the sha256 the Hub publishes and is checked too.
    """

    revision: str | None = None
    sha256_prefix: str | None = None
    page: str = ""  # where a person reads about the weights

    def download_url(self) -> str:
        if self.kind == "hf":
            return (f"https://huggingface.co/{self.hf_hub_id}/resolve/"
                    f"{self.revision or 'main'}/{self.filename}")
        return self.url or ""

    def location(self) -> str:
        if self.kind == "hf":
            from huggingface_hub import constants

            return f"Hugging Face cache {constants.HF_HUB_CACHE} ({self.hf_hub_id})"
        return str(torch_hub_checkpoints_dir() / (self.filename or ""))

    def describe(self) -> str:
        where = f"{self.hf_hub_id}/{self.filename}" if self.kind == "hf" else self.url
        return f"{self.kind}:{self.tag} ({where})"

    def fetch_advice(self) -> str:
        if self.kind == "hf":
            return (f"download file {self.filename} of the Hugging Face repository "
                    f"{self.hf_hub_id} ({self.download_url()}), e.g. `hf download {self.hf_hub_id} "
                    f"{self.filename}`, into the Hugging Face cache (HF_HUB_CACHE)")
        return (f"download {self.url} and put it at {torch_hub_checkpoints_dir() / self.filename} "
                "(the torch hub cache; set TORCH_HOME to move it)")


def checkpoint_path(weights: PublishedWeights, what: str) -> Path:
    """The cached checkpoint file, downloaded first if it is missing and downloads are allowed.
    Raises `WeightsUnavailableError` naming the repository/URL and file to fetch."""
    cached = _cached_file(weights)
    if cached is not None:
        return cached
    url = weights.download_url()
    if not downloads_allowed() or not host_reachable(url):
        why = (f"downloads are off ({OFFLINE_ENV}=1)" if not downloads_allowed()
               else f"{url.split('/')[2]} cannot be reached")
        raise WeightsUnavailableError(
            f"{what}: pretrained weights {weights.filename} are not cached and {why}: "
            f"{weights.fetch_advice()}")
    try:
        if weights.kind == "hf":
            from huggingface_hub import constants, hf_hub_download

            return Path(hf_hub_download(weights.hf_hub_id or "", weights.filename or "",
                                        revision=weights.revision,
                                        cache_dir=constants.HF_HUB_CACHE))
        path = torch_hub_checkpoints_dir() / (weights.filename or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=weights.sha256_prefix)
        return path
    except Exception as exc:  # noqa: BLE001 - any network/disk failure means the same thing
        raise WeightsUnavailableError(
            f"{what}: could not download {url} ({type(exc).__name__}: {exc}): "
            f"{weights.fetch_advice()}") from exc


def _cached_file(weights: PublishedWeights) -> Path | None:
    if weights.kind == "hf":
        from huggingface_hub import constants, try_to_load_from_cache

        found = try_to_load_from_cache(weights.hf_hub_id or "", weights.filename or "",
                                       cache_dir=constants.HF_HUB_CACHE,
                                       revision=weights.revision)
        return Path(found) if isinstance(found, str) else None
    path = torch_hub_checkpoints_dir() / (weights.filename or "")
    return path if path.is_file() else None


_HEX64 = re.compile(r"[0-9a-f]{64}")


@functools.lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:  # keyed by size/mtime: no stale hit
    return file_sha256(path)


def verify_checkpoint(weights: PublishedWeights, path: Path, what: str) -> str:
    """The file's sha256, checked against what the host publishes: the sha256 prefix in the
    file name (torch hub convention) and, in the HF cache, the blob name (the Hub's LFS sha256)."""
    stat = path.stat()
    digest = _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)
    expected: list[tuple[str, str]] = []
    if weights.sha256_prefix:
        expected.append((weights.sha256_prefix, "the sha256 prefix published in its name"))
    blob = os.path.basename(os.path.realpath(path))
    if weights.kind == "hf" and _HEX64.fullmatch(blob):
        expected.append((blob, "the sha256 the Hugging Face Hub published for it"))
    for value, source in expected:
        if not digest.startswith(value):
            raise WeightsUnavailableError(
                f"{what}: {path} has sha256 {digest}, which does not match {source} ({value}); "
                f"the file is corrupt or not the published one: delete it and "
                f"{weights.fetch_advice()}")
    return digest


def read_checkpoint(path: Path, what: str) -> Mapping[str, Any]:
    """A published checkpoint, read with ``weights_only=True``. MAE-style checkpoints (SatMAE)
    may hold the training ``args`` as an ``argparse.Namespace``: that one plain class is allowed."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report every reader failure the same way
        raise WeightsUnavailableError(
            f"{what}: cannot read the checkpoint {path} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it and download it again"
        ) from exc
    if not isinstance(obj, Mapping):
        raise WeightsUnavailableError(f"{what}: {path} holds a {type(obj).__name__}, not the "
                                      "published checkpoint (a mapping of names to tensors)")
    return obj


# -- authors' checkpoint formats -> our modules ---------------------------------------------------

@dataclass(frozen=True)
class KeyMap:
    """One target tensor: its key in the authors' file, the shape it has there, and how it
    becomes ours (``None``: unchanged)."""

    source: str
    source_shape: tuple[int, ...]
    convert: Callable[[torch.Tensor], torch.Tensor] | None = None


def load_mapped(model: nn.Module, source: Mapping[str, Any], keys: Mapping[str, KeyMap],
                dropped: Callable[[str], bool], path: Path, what: str) -> None:
    """Load ``source`` into ``model`` through ``keys`` (every model tensor must be listed); a
    missing key, a shape that differs, or a key neither used nor known to be dropped (e.g. the
    MAE decoder) is a `WeightsUnavailableError` naming the key."""
    target = model.state_dict()
    if set(keys) != set(target):
        raise AssertionError(f"{what}: key map does not cover the model: "
                             f"{sorted(set(target) ^ set(keys))[:5]}")
    state = {}
    for name, km in keys.items():
        if km.source not in source:
            raise WeightsUnavailableError(
                f"{what}: {path} has no tensor {km.source!r} (shape {km.source_shape} expected); "
                "it is not the published checkpoint of this model")
        tensor = source[km.source]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != km.source_shape:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise WeightsUnavailableError(
                f"{what}: {path} tensor {km.source!r} has shape {got}, expected "
                f"{km.source_shape}; it is not the published checkpoint of this model")
        state[name] = km.convert(tensor) if km.convert else tensor
    used = {km.source for km in keys.values()}
    unexpected = sorted(k for k in source if k not in used and not dropped(k))
    if unexpected:
        raise WeightsUnavailableError(
            f"{what}: {path} holds tensors this model does not know: "
            f"{', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''} "
            f"({len(unexpected)}); it is not the published checkpoint of this model")
    model.load_state_dict(state, strict=True)


def _is_mae_decoder(key: str) -> bool:
    return key.startswith("decoder_") or key == "mask_token"


def _same_keys(model: nn.Module, arch: ViTArch) -> dict[str, KeyMap]:
    """MAE's (and CROMA's, per section) names are the model's own: same key, same shape."""
    return {k: KeyMap(k, tuple(v.shape)) for k, v in model.state_dict().items()}


def read_satmae(path: Path, what: str) -> Mapping[str, Any]:
    """SatMAE's ``fmow_pretrain.pth``: ``{"model": MAE state dict, ...}`` (MaskedAutoencoderViT:
    the encoder, then ``mask_token`` and ``decoder_*``, which are dropped)."""
    ckpt = read_checkpoint(path, what)
    if not isinstance(ckpt.get("model"), Mapping):
        raise WeightsUnavailableError(
            f"{what}: {path} has no 'model' entry (keys: {sorted(ckpt)[:5]}); SatMAE checkpoints "
            "hold the MAE state dict under 'model'")
    return ckpt["model"]


def prithvi_keys(model: nn.Module, arch: ViTArch) -> dict[str, KeyMap]:
    """Prithvi-EO v1's ``Prithvi_EO_V1_100M.pt`` is a flat MAE state dict with a 3-D patch
    embedding ``(D, C, 1, p, p)`` and a ``num_frames``-frame position table; frame 0 of each is
    the single-frame model (see the module docstring)."""
    keys = _same_keys(model, arch)
    d, c, p = arch.embed_dim, arch.in_chans, arch.patch_size
    keys["patch_embed.proj.weight"] = KeyMap("patch_embed.proj.weight", (d, c, 1, p, p),
                                             lambda w: w[:, :, 0])
    keys["pos_embed"] = KeyMap("pos_embed", (1, 1 + arch.num_frames * arch.grid**2, d),
                               lambda pe: pe[:, : 1 + arch.grid**2])
    return keys


CROMA_UNUSED_SECTIONS = ("s1_encoder", "s1_GAP_FFN", "joint_encoder")  # radar and joint encoders


def read_croma(path: Path, what: str) -> Mapping[str, Any]:
    """CROMA's ``CROMA_large.pt``: one state dict per part (``s1_encoder``, ``s1_GAP_FFN``,
    ``s2_encoder``, ``s2_GAP_FFN``, ``joint_encoder``), flattened to ``<part>.<key>``; the
    optical parts are used (Mars has no radar image), the others dropped."""
    flat: dict[str, Any] = {}
    for section, part in read_checkpoint(path, what).items():
        if not isinstance(part, Mapping):
            raise WeightsUnavailableError(
                f"{what}: {path} entry {section!r} is not a state dict; CROMA checkpoints hold "
                "one state dict per encoder part (s2_encoder, s2_GAP_FFN, ...)")
        flat.update({f"{section}.{k}": v for k, v in part.items()})
    return flat


@dataclass(frozen=True)
class Family:
    """How a model family is built and how its authors' checkpoint maps onto it."""

    build: Callable[[ViTArch], nn.Module]
    read: Callable[[Path, str], Mapping[str, Any]]  # the file -> flat {key: tensor}
    key_map: Callable[[nn.Module, ViTArch], dict[str, KeyMap]]
    dropped: Callable[[str], bool]  # checkpoint keys the classifier does not use

    def load(self, model: nn.Module, path: Path, arch: ViTArch, what: str) -> None:
        load_mapped(model, self.read(path, what), self.key_map(model, arch), self.dropped,
                    path, what)


FAMILIES: dict[str, Family] = {
    "satmae": Family(_timm_vit, read_satmae, _same_keys, _is_mae_decoder),
    "croma": Family(CromaOpticalEncoder, read_croma, _same_keys,
                    lambda k: k.split(".", 1)[0] in CROMA_UNUSED_SECTIONS),
    "prithvi": Family(_timm_vit, read_checkpoint, prithvi_keys, _is_mae_decoder),
}


def build_encoder(spec: EOModelSpec, pretrained: bool) -> tuple[nn.Module, str]:
    """The encoder (image -> pooled features) of ``spec``, with its published weights if
    ``pretrained``; returns it with its weights tag (``random`` or source + file sha256)."""
    family = FAMILIES[spec.family_key]
    if not pretrained:
        return family.build(spec.arch), "random"
    weights = spec.weights
    path = checkpoint_path(weights, spec.name)  # before building: a missing file fails at once
    digest = verify_checkpoint(weights, path, spec.name)
    encoder = family.build(spec.arch)
    family.load(encoder, path, spec.arch, spec.name)
    if spec.family_key == "prithvi":  # the published table is fixed sine-cosine: keep it fixed
        encoder.pos_embed.requires_grad_(False)
    return encoder, f"{weights.kind}:{weights.tag}:sha256:{digest[:16]}"


def _build_backbone(spec: EOModelSpec, pretrained: bool) -> BackboneParts:
    encoder, tag = build_encoder(spec, pretrained)
    backbone: nn.Module = encoder
    if spec.band_strategy == BandStrategy.ADAPTER:
        backbone = AdaptedBackbone(InputAdapter(spec.band_adaptation, spec.mean, spec.std), encoder)
    return BackboneParts(backbone, spec.arch.embed_dim, None, None, tag)


# -- specs ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EOModelSpec(ModelSpec):
    """A `ModelSpec` for an Earth-observation model: its pre-training bands and the band
    strategy that maps Mars images onto them (part of `preprocessing`, hence of cache keys and
    run records). ``builder`` is derived from the spec."""

    builder: Callable[[bool], Any] = field(init=False, repr=False, compare=False)
    family_key: str = ""
    arch: ViTArch | None = None
    band_set: BandSet | None = None
    band_strategy: str = BandStrategy.REPLICATE.value
    temporal: str = ""  # how single images meet a multi-temporal model, in words

    def __post_init__(self) -> None:
        if self.family_key not in FAMILIES:
            raise ValueError(f"{self.name}: unknown family {self.family_key!r}")
        if self.arch is None or self.band_set is None:
            raise ValueError(f"{self.name}: an Earth-observation spec needs arch and band_set")
        if len(self.band_set.bands) != self.in_channels:
            raise ValueError(f"{self.name}: {len(self.band_set.bands)} bands declared for "
                             f"{self.in_channels} input channels")
        if self.band_strategy not in BAND_STRATEGIES:
            raise ValueError(f"{self.name}: unknown band strategy {self.band_strategy!r}; use "
                             f"one of {', '.join(BAND_STRATEGIES)}")
        object.__setattr__(self, "builder", functools.partial(_build_backbone, self))

    @property
    def band_adaptation(self) -> BandAdaptation:
        return BandAdaptation.for_bands(self.band_set, self.band_strategy)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(input_size=self.input_size, in_channels=self.in_channels,
                             mean=self.mean, std=self.std, bands=self.band_adaptation)

    @property
    def backbone_rule(self) -> str:
        if self.band_strategy == BandStrategy.ADAPTER:
            return ("every encoder parameter; the input adapter (1x1 conv, 3 -> "
                    f"{self.in_channels} bands) is trained in every regime, also "
                    "feature_extraction")
        return "every parameter"

    def with_band_strategy(self, strategy: str) -> EOModelSpec:
        return dataclasses.replace(self, band_strategy=str(strategy).strip().lower())

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(bands=self.band_set.to_dict(), band_strategy=self.band_strategy,
                   band_strategies=list(BAND_STRATEGIES), temporal=self.temporal,
                   architecture=dataclasses.asdict(self.arch))
        return out


def eo_specs() -> list[EOModelSpec]:
    return [s for s in list_specs() if isinstance(s, EOModelSpec)]


def resolve_model_spec(model: str | ModelSpec, extra: Mapping[str, str] | None = None,
                       regime: str | None = None) -> ModelSpec:
    """The spec a run uses: for an Earth-observation model, the band strategy named by
    ``extra["band_strategy"]`` (default: the spec's, ``replicate``).

    ``band_strategy`` on another model is an error, and so is ``adapter`` on the cached
    feature-extraction path: the adapter trains, so the backbone's features cannot be cached
    (use ``fe_path=online``)."""
    spec = get_spec(model) if isinstance(model, str) else model
    extra = dict(extra or {})
    strategy = extra.get(BAND_STRATEGY_KEY)
    if not isinstance(spec, EOModelSpec):
        if strategy is not None:
            names = ", ".join(s.name for s in eo_specs())
            raise ValueError(f"{BAND_STRATEGY_KEY}={strategy} applies to Earth-observation models "
                             f"({names}); model {spec.name!r} takes {spec.in_channels}-channel "
                             "images through the standard path: remove band_strategy")
        return spec
    if strategy is not None:
        if strategy.strip().lower() not in BAND_STRATEGIES:
            raise ValueError(f"{spec.name}: unknown {BAND_STRATEGY_KEY} {strategy!r}; use one of "
                             f"{', '.join(BAND_STRATEGIES)}")
        spec = spec.with_band_strategy(strategy)
    if spec.band_strategy == BandStrategy.ADAPTER and regime in PROBE_REGIMES:
        raise ValueError(f"{spec.name}: band_strategy=adapter trains a 1x1 input adapter, but "
                         f"a {regime} probe reads fixed frozen features; use replicate or visible")
    if (spec.band_strategy == BandStrategy.ADAPTER and regime == "feature_extraction"
            and extra.get("fe_path", "cached") != "online"):
        raise ValueError(
            f"{spec.name}: band_strategy=adapter trains a 1x1 input adapter with the head, so the "
            "backbone's features change during training and cannot be cached; set fe_path=online")
    return spec


# -- the registered models ------------------------------------------------------------------------

SATMAE_WEIGHTS = PublishedWeights(
    kind="url", tag="satmae-fmow-rgb-pretrain-800ep",
    url="https://zenodo.org/records/7369797/files/fmow_pretrain.pth", filename="fmow_pretrain.pth",
    license="not stated with the weights (Zenodo record 7369797); SatMAE builds on MAE "
            "(CC-BY-NC-4.0): check before commercial use",
    page="https://github.com/sustainlab-group/SatMAE (Zenodo record 7369797)")

# TorchGeo's copy of the authors' CROMA_large.pt (github.com/antofuller/CROMA, also on
# huggingface.co/antofuller/CROMA): pinned to a commit, with the sha256 prefix in its name.
# Same URL as torchgeo.models.CROMALarge_Weights.CROMA_VIT (TorchGeo 0.8); a test checks it.
CROMA_WEIGHTS = PublishedWeights(
    kind="url", tag="croma-large-ssl4eo",
    url="https://huggingface.co/torchgeo/croma/resolve/92cb1a0f4e34c6c01558baf070197c01255382f6/"
        "CROMA_large-921e69ad.pt",
    filename="CROMA_large-921e69ad.pt", sha256_prefix="921e69ad",
    license="CROMA: MIT (github.com/antofuller/CROMA)",
    page="https://github.com/antofuller/CROMA")

PRITHVI_WEIGHTS = PublishedWeights(
    kind="hf", tag="prithvi-eo-1.0-100m", hf_hub_id="ibm-nasa-geospatial/Prithvi-EO-1.0-100M",
    filename="Prithvi_EO_V1_100M.pt", license="Apache-2.0",
    page="https://huggingface.co/ibm-nasa-geospatial/Prithvi-EO-1.0-100M")

SATMAE_VIT_L16 = EOModelSpec(
    name="satmae_vit_l16", task=Task.CLASSIFICATION, weights=SATMAE_WEIGHTS, input_size=224,
    in_channels=3, mean=FMOW_RGB_MEAN, std=FMOW_RGB_STD, family="earth_observation",
    description=("SatMAE ViT-L/16 pre-trained on fMoW RGB (non-temporal, 800 epochs; assumed to be "
                 "the paper's: its multispectral ViT-L uses 8 px patches at 96 px); mean-pooled "
                 "patch tokens"),
    family_key="satmae", arch=ViTArch(1024, 24, 16, 16, 224, 3), band_set=FMOW_RGB)

CROMA_LARGE = EOModelSpec(
    name="croma_large", task=Task.CLASSIFICATION, weights=CROMA_WEIGHTS, input_size=120,
    in_channels=12, mean=(0.0,) * 12, std=(1.0,) * 12, family="earth_observation",
    description=("CROMA ViT-L (the paper's 'CROMA ViT-L/16'; CROMA-large uses 8 px patches) "
                 "Sentinel-2 optical encoder, 120 px; features = its optical_GAP"),
    family_key="croma", arch=ViTArch(1024, 24, 16, 8, 120, 12), band_set=SENTINEL2_L1C_12)

PRITHVI_EO_V1_100 = EOModelSpec(
    name="prithvi_eo_v1_100", task=Task.CLASSIFICATION, weights=PRITHVI_WEIGHTS, input_size=224,
    in_channels=6, mean=(0.5,) * 6, std=(0.25,) * 6, family="earth_observation",
    description=("Prithvi-EO 1.0 100M (ViT-B/16, HLS, 3-frame pre-training) run on single images "
                 "with T=1 frame; mean-pooled patch tokens"),
    family_key="prithvi", arch=ViTArch(768, 12, 12, 16, 224, 6, num_frames=3, norm_eps=1e-5),
    band_set=HLS_6,
    temporal=("T=1: the 3-D patch embedding has temporal size 1, so frame 0's kernel and frame 0 "
              "of the fixed sine-cosine position table are exactly the single-frame model"))

for _spec in (SATMAE_VIT_L16, CROMA_LARGE, PRITHVI_EO_V1_100):
    register(_spec)

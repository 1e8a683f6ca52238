"""Detection for the training engine (torchvision detectors), with COCO mAP and JSON export.

Input: images go through the models' preprocessing path only up to the ``uint8`` tensor with
matched channels, then are scaled to ``[0, 1]``; the detector normalises them itself with the
spec's mean/std inside its ``GeneralizedRCNNTransform`` (so nothing is normalised twice).

The ``paper`` profile feeds torchvision detectors as the reference does (docs/fidelity.md row
18; `paper_input`): the data path normalises with ImageNet mean/std (`for_profile`), and under
``input_policy=reference`` first resizes image and boxes to ``input_size`` square (bilinear,
no antialiasing: albumentations' cv2 resize); then the detector resizes *again* at its own
sizes (Faster R-CNN, RetinaNet: torchvision's 800 / 1333, so 224 px scenes are upsampled;
SSD: ``input_size``, its ``size`` in the reference) and normalises a *second* time. Boxes are
scored in the resized images' coordinates, as the reference scores them.

Input-size policy (the run's typed option ``input_policy``, recorded in the run's ``extra``):

- ``native`` (default): the detector's internal resize is set so that images of the dataset's
  size are *not* resized (``min_size`` = short side, ``max_size`` = long side, the largest
  among the first 8 training images, not the card's nominal size); small objects (8 px
  craters) keep their pixels. SSD, a fixed-size design, gets the dataset size as its square.
- ``tile``: training on random ``tile_size`` crops (default 256; a box keeps its crop-clipped
  part when at least half of it lies inside), inference and validation on whole images at the
  native size (the detectors are convolutional): large scenes train fast, nothing is shrunk.
- ``reference``: ``input_size`` (default 224) for both, as the reference resizes everything
  (under the paper profile: the reference's two resizes, above).
Options ``min_size`` / ``max_size`` override the evaluation sizes (the detector's own resize).

Validation loss: torchvision detectors only return losses in training mode, so it is computed in
training mode with every BatchNorm and Dropout layer switched to eval (running statistics are
used and never updated), under ``no_grad``, with a fixed random seed for the proposal sampling
(and the training random stream left untouched). mAP is computed once per split after training
(pycocotools, negatives included), never averaged over batches.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.transforms.v2 import functional as TF

from ..io import atomic_write_text
from ..metrics.detection import ImageDetections, coco_ground_truth, coco_results, detection_metrics
from ..models.detection import set_input_size
from ..models.preprocess import Preprocessing, for_profile, normalize, resize
from ..models.preprocess import dense_model_image as model_image
from ..runs.options import DETECTION_REFERENCE_SIZE, DETECTION_TILE_SIZE
from ..runs.spec import RunSpec
from ..sources import MarsDataset
from .task import Batch, EngineContext, TaskTrainer


NORMALISED_BY = "the detector's GeneralizedRCNNTransform (inputs in [0, 1])"
NORMALISED_TWICE = ("twice, as the reference (paper profile): ImageNet mean/std in the data "
                    "path, then again by the detector's GeneralizedRCNNTransform")
NATIVE_PROBE = 8  # training images looked at to find the native size


class DetectionImages(Dataset):
    """``(float image (3, H, W) in [0, 1], {"boxes", "labels"}, sample_id)``; boxes with no
    area (a degenerate annotation) are dropped and counted in ``dropped``.

    With ``prep`` (the paper profile) the image is normalised with its mean/std instead of only
    scaled to ``[0, 1]``, and with ``prep`` and ``size`` first resized to ``size`` square
    (bilinear as ``prep`` says) with its boxes: the reference's albumentations path."""

    def __init__(self, data: MarsDataset, prep: Preprocessing | None = None,
                 size: int | None = None) -> None:
        self.data, self.prep, self.size = data, prep, size
        self._dropped: dict[int, int] = {}

    @property
    def dropped(self) -> int:
        return sum(self._dropped.values())

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        sample = self.data[i]
        image = model_image(sample.image)
        boxes = torch.as_tensor(np.asarray(sample.boxes, dtype=np.float32)).reshape(-1, 4)
        labels = torch.as_tensor(np.asarray(sample.labels, dtype=np.int64)).reshape(-1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        image, boxes = self._model_input(image, boxes)
        self._dropped[i] = int((~keep).sum())
        k = self.data.num_classes
        if labels.numel() and (labels.min() < 1 or labels.max() > k):
            raise ValueError(f"{self.data.card.name}/{self.data.split}/{sample.sample_id}: box "
                             f"labels must lie in 1..{k}, got {labels.tolist()}")
        return image, {"boxes": boxes[keep], "labels": labels[keep]}, sample.sample_id

    def _model_input(self, image: torch.Tensor, boxes: torch.Tensor):
        """``uint8`` image -> float model input, boxes moved with any resize (class doc)."""
        if self.prep is None:
            return image.float() / 255.0, boxes
        if self.size is not None:
            h, w = image.shape[-2:]
            image = resize(image, replace(self.prep, input_size=self.size))
            boxes = boxes * torch.tensor([self.size / w, self.size / h] * 2)
        return normalize(image, self.prep), boxes


def flip_sample(image: torch.Tensor, target: dict, g: torch.Generator):
    """Random horizontal and vertical flips (p=0.5 each), boxes moved with the image."""
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY",
                                     canvas_size=tuple(image.shape[-2:]))
    u = torch.rand(2, generator=g).tolist()
    if u[0] < 0.5:
        image, boxes = TF.horizontal_flip(image), TF.horizontal_flip(boxes)
    if u[1] < 0.5:
        image, boxes = TF.vertical_flip(image), TF.vertical_flip(boxes)
    return image, {"boxes": boxes.as_subclass(torch.Tensor), "labels": target["labels"]}


def paper_input(spec: RunSpec, net: nn.Module) -> bool:
    """Whether the run feeds ``net`` as the reference does (module doc): the paper profile and
    a torchvision detector (YOLO, not in the reference, keeps its own input)."""
    return spec.profile == "paper" and isinstance(getattr(net, "transform", None),
                                                  GeneralizedRCNNTransform)


def input_sizes(spec: RunSpec, train: MarsDataset, net: nn.Module | None = None) -> dict:
    """The detector's ``min_size`` / ``max_size`` under the run's policy (module doc); with the
    reference's input path (`paper_input`) and ``reference``: ``resize`` (the data path's side)
    and the sizes the reference's detector has (SSD: ``resize``; others: their defaults)."""
    options = spec.options  # typed DetectionOptions, validated when the spec was built
    policy = options.input_policy
    out: dict = {"name": policy}
    if policy == "reference":
        lo = hi = options.input_size or DETECTION_REFERENCE_SIZE
        if net is not None and paper_input(spec, net):
            out["resize"] = lo
            if not isinstance(net, SSD):  # the reference's SSD gets size=image_size
                lo, hi = net.transform.min_size[-1], net.transform.max_size
    else:  # the images' real size (a card's nominal size may differ, e.g. synthetic twins)
        shapes = [train[i].image.shape[:2] for i in range(min(len(train), NATIVE_PROBE))]
        lo, hi = max(min(s) for s in shapes), max(max(s) for s in shapes)
    lo, hi = options.min_size or lo, options.max_size or hi
    out |= {"min_size": lo, "max_size": max(lo, hi)}
    if policy == "tile":
        out["tile_size"] = options.tile_size or DETECTION_TILE_SIZE
    return out


def random_crop(image: torch.Tensor, target: dict, size: int, g: torch.Generator,
                keep_fraction: float = 0.5):
    """A ``size`` square crop (the whole image where smaller); boxes clipped to it, and kept
    when at least ``keep_fraction`` of their area is inside."""
    h, w = image.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w))
    clipped = TF.crop(boxes, top, left, ch, cw).as_subclass(torch.Tensor)

    def area(b: torch.Tensor) -> torch.Tensor:
        return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)

    keep = (area(clipped) >= keep_fraction * area(target["boxes"])) & (area(clipped) > 0)
    return (image[:, top:top + ch, left:left + cw],
            {"boxes": clipped[keep], "labels": target["labels"][keep]})


@contextlib.contextmanager
def loss_mode(model: nn.Module, seed: int = 0):
    """Training-mode forward (so torchvision returns losses) with BatchNorm/Dropout in eval,
    gradients off, and a fixed seed for proposal sampling; modes restored afterwards."""
    was_training = model.training
    model.train()
    for module in model.modules():
        if isinstance(module, (nn.modules.batchnorm._NormBase, nn.Dropout)):
            module.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        model.train(was_training)


def _collate(items):
    return list(items)


class DetectionTask(TaskTrainer):
    """Detection for the engine (`marsbench.training.task`): a `DenseModel` around a
    torchvision detector trained with early stopping on the validation loss, then scored on val
    and test with COCO mAP; detections exported to ``predictions_dir/<split>.json``."""

    def __init__(self, ctx: EngineContext, splits: dict[str, MarsDataset],
                 build_model: Callable[[], nn.Module]) -> None:
        super().__init__(ctx, splits)
        self.build_model = build_model
        self.detections: dict[str, list[ImageDetections]] = {}

    def setup(self) -> nn.Module:
        ctx = self.ctx
        model = self.model = ctx.prepare(self.build_model())
        self.sizes = sizes = input_sizes(self.spec, self.splits["train"], model.net)
        set_input_size(model.net, sizes["min_size"], sizes["max_size"])
        paper = paper_input(self.spec, model.net)
        prep = for_profile(model.preprocessing, "paper") if paper else None
        self.images = {name: DetectionImages(data, prep, sizes.get("resize"))
                       for name, data in self.splits.items()}
        self.loaders = {"train": ctx.train_loader(self.images["train"], _collate)}
        self.loaders |= {name: ctx.eval_loader(self.images[name], _collate)
                         for name in ("val", "test")}
        self.forward = ctx.wrap(model.net)
        self.tile = sizes.get("tile_size")
        from ..models.detection import score_threshold

        self.info = {"input_policy": sizes, "model_built": model.spec.name,
                     "score_threshold": score_threshold(model.net),
                     "preprocessing": (prep or model.preprocessing).to_dict(),
                     "normalised_by": (NORMALISED_TWICE if paper else
                                       getattr(model.net, "normalised_by", NORMALISED_BY)),
                     "weights_tag": model.weights_tag, "augment_applied": self.spec.augment,
                     "frozen": model.frozen_names}
        if ctx.world is not None:
            self.info["train_samples_per_rank"] = len(self.loaders["train"].sampler)
        return model.trained()

    def batch_to_device(self, batch, train: bool):
        xs, ys = [], []
        device, gen = self.ctx.device, self.ctx.generator
        for image, target, _ in batch:
            if train and self.tile:
                image, target = random_crop(image, target, self.tile, gen)
            if train and self.spec.augment:
                image, target = flip_sample(image, target, gen)
            xs.append(image.to(device, non_blocking=True))
            ys.append({k: v.to(device, non_blocking=True) for k, v in target.items()})
        return xs, ys

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loaders["train"])

    def train_batches(self) -> Iterator[Batch]:
        net, sizes = self.model.net, self.sizes
        if self.tile:
            # crops go in at their own size (images smaller than a tile stay whole, unscaled)
            set_input_size(net, min(self.tile, sizes["min_size"]),
                           min(self.tile, sizes["max_size"]))
        self.model.train()
        try:
            for batch in self.loaders["train"]:
                xs, ys = self.batch_to_device(batch, train=True)
                yield (lambda xs=xs, ys=ys: sum(v.float() for v in
                                                self.forward(xs, ys).values())), len(batch)
        finally:
            set_input_size(net, sizes["min_size"], sizes["max_size"])

    def loss_of(self, name: str) -> float:
        total, n = 0.0, 0
        with loss_mode(self.model, self.spec.seed):
            for batch in self.loaders[name]:
                xs, ys = self.batch_to_device(batch, train=False)
                with self.ctx.precision.autocast():
                    losses = self.model.net(xs, ys)
                total += float(sum(v.float() for v in losses.values())) * len(batch)
                n += len(batch)
        return total / max(1, n)

    def val_loss(self) -> float:
        return self.loss_of("val")

    @torch.no_grad()
    def detect(self, name: str) -> list[ImageDetections]:
        self.model.eval()
        out = []
        for batch in self.loaders[name]:
            xs, _ = self.batch_to_device(batch, train=False)
            with self.ctx.precision.autocast():
                found = self.model.net(xs)
            for (image, target, sample_id), det in zip(batch, found):
                out.append(ImageDetections(
                    sample_id, image.shape[-1], image.shape[-2], target["boxes"].numpy(),
                    target["labels"].numpy(), det["boxes"].cpu().numpy(),
                    det["scores"].cpu().numpy(), det["labels"].cpu().numpy()))
        return out

    def evaluate(self, split: str) -> dict:
        self.detections[split] = self.detect(split)
        metrics = detection_metrics(self.detections[split], self.splits["train"].class_names)
        if split == "test":
            metrics["loss"] = self.loss_of("test")
        self.info["dropped_degenerate_boxes"] = sum(d.dropped for d in self.images.values())
        return metrics

    def model_cost(self) -> dict:
        from .cost import model_cost

        image = self.images["train"][0][0].to(self.ctx.device)
        sizes = f"{self.sizes['min_size']}-{self.sizes['max_size']}"
        return model_cost(self.spec.model, [image], lambda: self.model.net, extra=sizes)

    def export(self) -> Path | None:
        folder = self.ctx.predictions_dir
        if folder is None:
            return None
        for split, detections in self.detections.items():
            write_coco_predictions(folder / f"{split}.json", detections,
                                   self.splits["train"].class_names)
        return folder


def write_coco_predictions(path: Path, detections: list[ImageDetections],
                           class_names: list[str]) -> Path:
    """COCO-style JSON: ``images`` (``file_name`` = sample id), ``categories`` and
    ``annotations`` holding the detections with their ``score`` (bbox ``[x, y, w, h]``)."""
    coco = coco_ground_truth(detections, class_names)
    results = coco_results(detections)
    for i, det in enumerate(results, start=1):
        det["id"] = i
        det["area"] = det["bbox"][2] * det["bbox"][3]
    coco["annotations"] = results
    return atomic_write_text(path, json.dumps(coco))

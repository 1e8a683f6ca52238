"""Train and score one classification run: three regimes, two feature-extraction paths."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from ..catalog import TaskKind
from ..metrics.classification import classification_metrics, predictions_from_logits
from ..models.preprocess import augment, normalize, prepare
from ..runs.spec import RunSpec
from ..sources import MarsDataset
from .distributed import current_world, shard_train_loader, wrap_ddp
from ..runs.profiles import loop_settings
from .engine import (
    Precision,
    Stepper,
    TrainResult,
    eval_batch_size,
    make_loader,
    prepare_model,
    to_device,
)
from .features import cached_features, compute_features, feature_key
from .loop import fit
from .pixels import summarise



class PreparedImages(Dataset):
    """A split as model-sized ``uint8`` tensors (resized, channels matched, not normalised)
    and their targets. With ``pixels`` (the split's `PixelCache`, see `prepared_images`) both
    are read from the cache's memory map: no image is decoded."""

    def __init__(self, data: MarsDataset, prep, kind: TaskKind, pixels=None) -> None:
        self.data, self.prep, self.kind, self.pixels = data, prep, kind, pixels

    @property
    def pixel_cache(self) -> str:
        """``hit`` / ``built`` (read from the pixel cache) or ``off`` (decoded every time)."""
        return "off" if self.pixels is None else self.pixels.status

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        if self.pixels is not None:
            return self.pixels.row("images", i), self.pixels.row("targets", i)
        sample = self.data[i]
        images = sample.images if sample.is_pair else sample.image
        return prepare(images, self.prep), target_tensor(sample.target, self.kind)

    def __getitems__(self, indices: list[int]) -> list:
        """A loader's batch: from the cache one gather per field, kept whole for `collate`
        (the per-sample items are views of it, for any other collate); or decode each."""
        if self.pixels is None:
            return [self[i] for i in indices]
        return _Rows(self.pixels.rows("images", indices), self.pixels.rows("targets", indices))

    @staticmethod
    def collate(items):
        """The loaders' collate: a cached batch as it was read (no second copy), else torch's
        default collation."""
        if isinstance(items, _Rows):
            return items.images, items.targets
        return default_collate(items)


class _Rows(list):
    """A batch read from the pixel cache: the list of ``(image, target)`` views torch expects,
    and the two batched tensors they view."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        super().__init__(zip(images, targets))
        self.images, self.targets = images, targets


def prepared_images(data: MarsDataset, prep, kind: TaskKind,
                    device: torch.device) -> PreparedImages:
    """`PreparedImages` of a split read from the pixel cache (built here on the first use:
    decoded once, in parallel by the engine's loader workers), or decoding each time when the
    cache is off (``MARSBENCH_PIXEL_CACHE=0``) or the split does not fit it."""
    import json

    from .engine import default_workers
    from .pixels import Field, open_or_build, pixel_cache_budget, pixel_key

    decoded = PreparedImages(data, prep, kind)
    if pixel_cache_budget() is None:  # off: not even the fingerprint is needed
        return decoded
    target_dtype = "float32" if kind is TaskKind.MULTILABEL else "int64"
    key = pixel_key(fingerprint=data.fingerprint(), split=data.split, what="classification",
                    preprocessing=prep.key())
    fields = (Field("images", "uint8"), Field("targets", target_dtype))
    pixels = open_or_build(key, decoded, fields, sample_ids=data.sample_ids,
                           workers=default_workers(device),
                           describe={"dataset": data.card.name, "split": data.split,
                                     "variant": str(data.variant), "what": "classification",
                                     "fingerprint": data.fingerprint(),
                                     "preprocessing": json.loads(prep.key())})
    return PreparedImages(data, prep, kind, pixels)


def target_tensor(target, kind: TaskKind) -> torch.Tensor:
    if kind is TaskKind.MULTILABEL:
        return torch.as_tensor(np.asarray(target), dtype=torch.float32)
    return torch.tensor(int(target))


def make_loss(kind: TaskKind, loss: str, num_outputs: int) -> Callable:
    """CE for multi-class (and two-logit binary); BCE for one-logit binary and multi-label."""
    if kind is TaskKind.MULTILABEL:
        if loss not in ("auto", "bce"):
            raise ValueError(f"multi-label classification needs loss bce, not {loss!r}")
        return nn.BCEWithLogitsLoss()
    if num_outputs == 1:
        bce = nn.BCEWithLogitsLoss()
        return lambda logits, y: bce(logits.view(-1), y.float())
    return nn.CrossEntropyLoss()


def binary_outputs(kind: TaskKind, loss: str) -> int | None:
    """Head width override: binary with loss=ce uses two logits, otherwise the default."""
    if kind in (TaskKind.BINARY, TaskKind.IMAGE_PAIR) and loss == "ce":
        return 2
    if kind is TaskKind.MULTICLASS and loss == "bce":
        raise ValueError("loss bce is for binary and multi-label tasks; use ce or auto")
    return None



def reset_head(head: nn.Module, seed: int) -> None:
    """Initialise the head from the run's seed alone, so it does not depend on how much random
    state building the backbone consumed (a run that finds its features cached builds none)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in head.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


def weights_identity(spec: RunSpec, model_spec) -> str:
    """What the frozen features depend on besides the model name: the published weight file
    or the user's checkpoint hash."""
    if spec.weights != "default":
        return spec.weights
    w = model_spec.weights
    return f"{w.kind}:{w.tag}:{w.filename or w.url or w.hf_hub_id}"


def train_classification(spec: RunSpec, build_model: Callable[[], nn.Module],
                         splits: dict[str, MarsDataset], *, device: torch.device,
                         cache_dir: Path | None = None,
                         progress: Callable | None = None) -> TrainResult:
    """Train on ``splits['train']`` with early stopping on ``splits['val']``, restore the best
    weights, and score val and test. ``build_model()`` makes the `ClassifierModel`; on the
    cached feature-extraction path it is called only if some split's features are not cached."""
    from ..models.earth_observation import resolve_model_spec

    card = splits["train"].card
    kind = card.kind
    options = spec.options  # typed and validated when the spec was built
    fe_path = options.fe_path  # None outside feature_extraction
    model_spec = resolve_model_spec(spec.model, options.to_dict(), spec.regime)  # band strategy
    prep = model_spec.preprocessing
    if options.input_size is not None:  # e.g. small synthetic images; part of the run's identity
        prep = dataclasses.replace(prep, input_size=options.input_size)
    gen = torch.Generator().manual_seed(spec.seed)
    precision = Precision.resolve(spec.precision, device, spec.profile)
    eval_batch = eval_batch_size(device, spec.batch_size)
    timings = {"feature_extraction_s": 0.0, "training_s": 0.0}
    info = {"fe_path": fe_path, "precision": precision.name, "compiled": spec.compile,
            "augment_applied": spec.augment, "preprocessing": prep.to_dict(),
            "weights": weights_identity(spec, model_spec)}
    model = None

    def get_model():
        nonlocal model
        if model is None:
            model = prepare_model(build_model(), device)
            model.frozen_in_train_mode = loop_settings(spec.profile).frozen_backbone_train_mode
        return model

    image_sets: dict[str, PreparedImages] = {}

    def images_of(name: str, data: MarsDataset) -> PreparedImages:
        """The split's prepared images, from the pixel cache where it is on (built once)."""
        if name not in image_sets:
            image_sets[name] = prepared_images(data, prep, kind, device)
        return image_sets[name]

    if spec.regime == "feature_extraction" and fe_path == "cached":
        t0 = time.perf_counter()
        feats, hits = {}, {}
        for name, data in splits.items():
            # fp32 features keep their old keys; reduced-precision ones are other features
            prep_key = prep.key() + ("" if precision.name == "fp32" else f"|{precision.name}")
            key = feature_key(model=spec.model, weights=info["weights"],
                              dataset_fingerprint=data.fingerprint(), split=name,
                              preprocessing=prep_key)
            feats[name], hits[name] = cached_features(
                key, cache_dir, lambda d=data, n=name: compute_features(
                    get_model().backbone,
                    (normalize(to_device(x, device), prep) for x, _ in
                     make_loader(images_of(n, d), batch_size=eval_batch, device=device,
                                 collate_fn=PreparedImages.collate)),
                    device, autocast=precision.autocast))
        targets = {name: torch.stack([target_tensor(t, kind) for t in _targets(data)])
                   for name, data in splits.items()}
        timings["feature_extraction_s"] = time.perf_counter() - t0
        info.update(feature_cache_hits=hits, augment_applied=False)
        if model is not None:
            head = model.head
        else:  # every split was cached: the head is all this run needs
            from ..models.classifier import num_outputs_for

            outputs = binary_outputs(kind, spec.loss) or num_outputs_for(
                splits["train"].num_classes, card.multilabel)
            head = nn.Linear(feats["train"].shape[1], outputs).to(device)
        reset_head(head, spec.seed)
        criterion = make_loss(kind, spec.loss, head.out_features)

        def head_epoch(opt) -> float:
            head.train()
            order = torch.randperm(len(feats["train"]), generator=gen)
            total = 0.0
            for start in range(0, len(order), spec.batch_size):
                idx = order[start:start + spec.batch_size]
                opt.zero_grad()
                loss = criterion(head(feats["train"][idx].to(device)),
                                 targets["train"][idx].to(device))
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                if hasattr(progress, "batch"):
                    progress.batch(start + len(idx), len(order))
            return total / max(1, len(order))

        @torch.no_grad()
        def head_logits(name: str) -> torch.Tensor:
            head.eval()
            return head(feats[name].to(device)).cpu()

        t1 = time.perf_counter()
        result = fit(head, train_epoch=head_epoch,
                     val_loss=lambda: float(criterion(head_logits("val"), targets["val"])),
                     optimizer=spec.optimizer, lr=spec.lr, weight_decay=spec.weight_decay,
                     scheduler=spec.scheduler, max_epochs=spec.max_epochs,
                     patience=spec.patience, progress=progress, profile=spec.profile)
        timings["training_s"] = time.perf_counter() - t1
        logits = {name: head_logits(name) for name in ("val", "test")}
    else:
        model = get_model()
        reset_head(model.head, spec.seed)
        criterion = make_loss(kind, spec.loss, model.num_outputs)
        loaders = {name: make_loader(images_of(name, data),
                                     batch_size=spec.batch_size if name == "train" else eval_batch,
                                     device=device, shuffle=name == "train", seed=spec.seed,
                                     collate_fn=PreparedImages.collate)
                   for name, data in splits.items()}
        trainable: nn.Module = model
        if spec.regime == "feature_extraction":
            from ..models.bands import trainable_adapter_parameters

            trainable = model.head
            if trainable_adapter_parameters(model):  # a learned band adapter trains with the head
                trainable = nn.ModuleList([model.head, model.backbone.input_adapter])
                info["trained"] = "head + input adapter"

        step = _WithAux(model)
        if spec.compile:
            step = torch.compile(step)  # the module (and its state) stays `model`
        world = current_world()
        if world is not None:  # torchrun: shard the train split, average gradients with DDP
            loaders["train"] = shard_train_loader(loaders["train"].dataset, world,
                                                  batch_size=spec.batch_size, device=device,
                                                  seed=spec.seed,
                                                  collate_fn=PreparedImages.collate)
            step = wrap_ddp(step, device)
            info.update(world_size=world.size,
                        train_samples_per_rank=len(loaders["train"].sampler))
        epochs_seen = [0]
        stepper = Stepper(precision)

        def model_epoch(opt) -> float:
            step.train()
            if world is not None:
                loaders["train"].sampler.set_epoch(epochs_seen[0])
            epochs_seen[0] += 1
            total, n = 0.0, 0
            for x, y in loaders["train"]:
                x = to_device(x, device)
                if spec.augment:  # batched, on the device (draws from the seeded CPU generator)
                    x = augment(x, gen)
                x, y = normalize(x, prep), y.to(device, non_blocking=True)

                def forward_loss(x=x, y=y) -> torch.Tensor:
                    out, aux = step(x)
                    loss = criterion(out.float(), y)
                    if aux is not None:
                        loss = loss + model.aux_loss_weight * criterion(aux.float(), y)
                    return loss

                total += stepper.step(opt, forward_loss) * len(y)
                n += len(y)
                if hasattr(progress, "batch"):
                    progress.batch(n, len(loaders["train"].dataset))
            return total / max(1, n)

        @torch.no_grad()
        def model_logits(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            model.eval()
            outs, ys = [], []
            for x, y in loaders[name]:
                with precision.autocast():
                    outs.append(model(normalize(to_device(x, device), prep)).float().cpu())
                ys.append(y)
            return torch.cat(outs), torch.cat(ys)

        def val_loss() -> float:
            out, y = model_logits("val")
            return float(criterion(out, y))

        t1 = time.perf_counter()
        result = fit(trainable, train_epoch=model_epoch, val_loss=val_loss,
                     optimizer=spec.optimizer, lr=spec.lr, weight_decay=spec.weight_decay,
                     scheduler=spec.scheduler, max_epochs=spec.max_epochs,
                     patience=spec.patience, progress=progress, profile=spec.profile)
        timings["training_s"] = time.perf_counter() - t1
        logits = {name: model_logits(name)[0] for name in ("val", "test")}

    info["pixel_cache"] = summarise(images.pixel_cache for images in image_sets.values())
    metrics, predictions = {}, {}
    for name in ("val", "test"):
        data = splits[name]
        y_true = np.stack([np.asarray(t) for t in _targets(data)])
        y_pred, probs = predictions_from_logits(logits[name].numpy(), str(kind))
        metrics[name] = classification_metrics(y_true, y_pred, kind=str(kind),
                                               num_classes=data.num_classes,
                                               class_names=data.class_names)
        predictions[name] = {"ids": data.sample_ids, "true": y_true, "pred": y_pred,
                             "probs": probs}
    metrics["val"]["loss"] = result.best_val_loss
    return TrainResult(metrics, result.best_epoch, result.epochs_run,
                       result.best_val_loss, timings, predictions=predictions,
                       info=info | {"history": result.history,
                                    "tested_epoch": result.tested_epoch})


class _WithAux(nn.Module):
    """``forward`` = the model's ``forward_with_aux``, so DDP wraps the call that trains."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_with_aux(x)


def _targets(data: MarsDataset) -> list:
    if data.targets is not None:
        return data.targets
    return [data[i].target for i in range(len(data))]

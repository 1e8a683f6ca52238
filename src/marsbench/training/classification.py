"""Classification for the training engine: three regimes, two feature-extraction paths."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from ..catalog import TaskKind
from ..metrics.classification import (
    classification_metrics,
    imbalance_metrics,
    predictions_from_logits,
)
from ..models.preprocess import augment, normalize, prepare
from ..runs.spec import RunSpec
from ..sources import MarsDataset
from .engine import to_device
from .features import cached_features, compute_features, feature_key
from .imbalance import ImbalancePlan, check_dataset, plan_for
from .pixels import summarise
from ..models.preprocess import for_profile
from ..vocab import PROBE_REGIMES
from .task import Batch, EngineContext, TaskTrainer



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


def binary_outputs(kind: TaskKind, loss: str, profile: str = "marsbench") -> int | None:
    """Head width override: binary with loss=ce uses two logits, otherwise the default.

    Under profile ``paper`` a binary ``ce`` keeps one logit and BCE, as the reference's
    ``cross_entropy`` does on binary tasks (docs/fidelity.md row 13)."""
    if kind in (TaskKind.BINARY, TaskKind.IMAGE_PAIR) and loss == "ce":
        return None if profile == "paper" else 2
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


class ClassificationTask(TaskTrainer):
    """Classification for the engine (`marsbench.training.task`): train on ``splits['train']``,
    stop on ``splits['val']``, score val and test, export a predictions CSV.

    Two paths: ``feature_extraction`` with ``fe_path=cached`` trains only the head on frozen
    features computed once per split (`features`; ``build_model()`` is called only if some
    split's features are not cached yet); every other run trains the `ClassifierModel` on
    prepared images (pixel cache, batched augmentation on the device)."""

    def __init__(self, ctx: EngineContext, splits: dict[str, MarsDataset],
                 build_model: Callable[[], nn.Module]) -> None:
        from ..models.earth_observation import resolve_model_spec
        from ..models.registry import spec_for_run

        super().__init__(ctx, splits)
        spec = self.spec
        self.build_model = build_model
        self.kind: TaskKind = splits["train"].card.kind
        options = spec.options  # typed and validated when the spec was built
        self.model_spec = model_spec = spec_for_run(  # paper: the reference's head (fidelity 12)
            resolve_model_spec(spec.model, options.to_dict(), spec.regime), spec.profile,
            spec.regime)
        prep = model_spec.preprocessing
        if options.input_size is not None:  # e.g. small synthetic images; in the run's identity
            prep = dataclasses.replace(prep, input_size=options.input_size)
        self.prep = prep = for_profile(prep, spec.profile)  # paper: the reference's resizing
        self.cached = ((spec.regime == "feature_extraction" and options.fe_path == "cached")
                       or spec.regime in PROBE_REGIMES)  # probes read the same features
        self.info = {"fe_path": options.fe_path, "augment_applied": spec.augment,
                     "preprocessing": prep.to_dict(),
                     "weights": weights_identity(spec, model_spec),
                     "model_spec": model_spec.name, "head": model_spec.head.name}
        self.model: nn.Module | None = None
        self.image_sets: dict[str, PreparedImages] = {}
        self.predictions: dict[str, dict] = {}

    # -- shared --------------------------------------------------------------------------------

    def get_model(self) -> nn.Module:
        if self.model is None:
            self.model = self.ctx.prepare(self.build_model())
        return self.model

    def images_of(self, name: str) -> PreparedImages:
        """The split's prepared images, from the pixel cache where it is on (built once)."""
        if name not in self.image_sets:
            self.image_sets[name] = prepared_images(self.splits[name], self.prep, self.kind,
                                                    self.ctx.device)
        return self.image_sets[name]

    def setup(self) -> nn.Module:
        data = self.splits["train"]  # refuse an unusable imbalance strategy before any work
        check_dataset(self.spec.options.imbalance, multilabel=data.card.multilabel,
                      regime=self.spec.regime, where=f"{data.card.name} {self.spec.regime}")
        trained = self._setup_cached() if self.cached else self._setup_images()
        self.info["pixel_cache"] = summarise(im.pixel_cache for im in self.image_sets.values())
        return trained

    def val_loss(self) -> float:
        logits, y = self.logits("val")
        return float(self.criterion(logits, y))

    def evaluate(self, split: str) -> dict:
        data = self.splits[split]
        y_true = np.stack([np.asarray(t) for t in _targets(data)])
        logits = self.logits(split)[0].numpy()
        y_pred, probs = predictions_from_logits(logits, str(self.kind))
        self.predictions[split] = {"ids": data.sample_ids, "true": y_true, "pred": y_pred,
                                   "probs": probs, "logits": logits}
        metrics = classification_metrics(y_true, y_pred, kind=str(self.kind),
                                         num_classes=data.num_classes,
                                         class_names=data.class_names)
        metrics |= imbalance_metrics(y_true, y_pred, self.train_counts(), kind=str(self.kind))
        if split == "test" and "val" in self.predictions:
            metrics |= self.calibration()
        return metrics

    def train_counts(self) -> np.ndarray:
        """Training examples per class (per label for multi-label): the frequency terciles of
        `imbalance_metrics`."""
        targets = self.train_labels()
        if targets.ndim == 2:  # multi-hot
            return targets.sum(0)
        return np.bincount(targets.astype(int), minlength=self.splits["train"].num_classes)

    def train_labels(self) -> np.ndarray:
        """The train split's targets: class indices, or multi-hot rows."""
        return np.stack([np.asarray(t) for t in _targets(self.splits["train"])])

    def imbalance_plan(self, num_outputs: int) -> ImbalancePlan:
        """The run's ``imbalance`` strategy with its numbers from the train split (recorded in
        ``extra['imbalance']`` unless it is ``none``); refuses what the dataset cannot use."""
        data, spec = self.splits["train"], self.spec
        plan = plan_for(spec.options.imbalance, self.train_labels(),
                        num_classes=data.num_classes, multilabel=data.card.multilabel,
                        num_outputs=num_outputs, seed=spec.seed, regime=spec.regime,
                        where=f"{data.card.name} {spec.regime}")
        if plan.strategy != "none":
            self.info["imbalance"] = plan.record()
        return plan

    def calibration(self) -> dict:
        """Test-split calibration (`marsbench.metrics.calibration`): ECE (15 bins), the same
        after temperature scaling fitted on the validation split, that temperature, and the
        area under the risk-coverage curve (accuracy when the model may abstain)."""
        from ..metrics.calibration import calibration_summary

        val, test = self.predictions["val"], self.predictions["test"]
        kind = str(self.kind)
        if kind in ("binary", "image_pair") and test["logits"].ndim == 2 \
                and test["logits"].shape[1] > 1:
            kind = "multiclass"  # two logits (loss ce) or a probe's two log-probabilities
        import warnings

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                summary = calibration_summary(val["logits"], val["true"], test["logits"],
                                              test["true"], kind)
        except (ValueError, FloatingPointError) as exc:  # e.g. a one-sample split
            self.info["calibration_error"] = f"{type(exc).__name__}: {exc}"
            return {}
        self.info["calibration"] = {"bins": 15, "temperature_fitted_on": "val", **summary}
        if caught:  # e.g. a temperature at its bound on a separable validation split: noted
            self.info["calibration"]["notes"] = sorted({str(w.message) for w in caught})
        return {k: summary[k] for k in ("ece", "ece_temperature_scaled", "aurc")}

    def export(self) -> Path | None:
        """``out/predictions/<key>.csv``: split, id, true, predicted, one probability per class."""
        folder = self.ctx.predictions_dir
        if folder is None:
            return None
        return write_predictions(folder.with_name(folder.name + ".csv"), self.predictions,
                                 self.splits["test"].class_names)

    def model_cost(self) -> dict:
        from .cost import model_cost

        example = normalize(self.images_of("train")[0][0][None].to(self.ctx.device), self.prep)
        model = self.model
        return model_cost(self.spec.model, example,
                          (lambda: model) if model is not None else self.build_model,
                          extra=self.prep.key())

    # -- cached frozen features: the head alone ----------------------------------------------

    def _setup_cached(self) -> nn.Module:
        ctx, spec, prep, device = self.ctx, self.spec, self.prep, self.ctx.device
        t0 = time.perf_counter()
        # fp32 features keep their old keys; reduced-precision ones are other features
        prep_key = prep.key() + ("" if ctx.precision.name == "fp32" else f"|{ctx.precision.name}")
        feats, hits = {}, {}
        for name, data in self.splits.items():
            key = feature_key(model=self.model_spec.name, weights=self.info["weights"],
                              dataset_fingerprint=data.fingerprint(), split=name,
                              preprocessing=prep_key)
            feats[name], hits[name] = cached_features(
                key, ctx.cache_dir, lambda n=name: compute_features(
                    self.get_model().backbone,
                    (normalize(to_device(x, device), prep) for x, _ in
                     ctx.eval_loader(self.images_of(n), collate_fn=PreparedImages.collate)),
                    device, autocast=ctx.precision.autocast))
        self.feats = feats
        self.targets = {name: torch.stack([target_tensor(t, self.kind) for t in _targets(data)])
                        for name, data in self.splits.items()}
        self.timings["feature_extraction_s"] = time.perf_counter() - t0
        self.info.update(feature_cache_hits=hits, augment_applied=False)
        if self.model is not None and spec.regime != "mlp_probe":
            head = self.model.head
        else:  # every split was cached (the head is all this run needs), or an MLP probe
            from ..models.classifier import num_outputs_for

            card = self.splits["train"].card
            outputs = binary_outputs(self.kind, spec.loss, spec.profile) or num_outputs_for(
                self.splits["train"].num_classes, card.multilabel)
            if spec.regime == "mlp_probe":
                from .probes import mlp_head

                head = mlp_head(feats["train"].shape[1], outputs).to(device)
                self.info["probe"] = {"name": "mlp_probe", "head": str(head)}
            else:
                head = self.model_spec.head.build(feats["train"].shape[1], outputs).to(device)
        reset_head(head, spec.seed)
        self.head = head
        self.balance = self.imbalance_plan(head.out_features)
        self.criterion = self.balance.loss(make_loss(self.kind, spec.loss, head.out_features))
        self.train_rows = self.balance.indices()  # over- / under-sampling: the rows trained on
        self.sampler = self.balance.sampler()
        return head

    # -- images through the model ------------------------------------------------------------

    def _setup_images(self) -> nn.Module:
        ctx = self.ctx
        model = self.get_model()
        reset_head(model.head, self.spec.seed)
        self.balance = plan = self.imbalance_plan(model.num_outputs)
        self.criterion = plan.loss(make_loss(self.kind, self.spec.loss, model.num_outputs))
        collate = PreparedImages.collate
        self.loaders = {"train": self._train_loader(plan, collate)}
        self.loaders |= {name: ctx.eval_loader(self.images_of(name), collate)
                         for name in ("val", "test")}
        if self.spec.regime == "feature_extraction":
            from ..models.bands import trainable_adapter_parameters

            if trainable_adapter_parameters(model):  # a learned band adapter trains with the head
                self.info["trained"] = "head + input adapter"
        self.step = ctx.wrap(_WithAux(model))
        if ctx.world is not None:
            self.info["train_samples_per_rank"] = len(self.loaders["train"].sampler)
        return model.trained()

    def _train_loader(self, plan: ImbalancePlan, collate):
        """The training loader: shuffled, over the resampled rows (``oversample`` /
        ``undersample``), or drawn by the class-balanced sampler (not under torchrun)."""
        from torch.utils.data import Subset

        from .engine import make_loader

        ctx, images = self.ctx, self.images_of("train")
        rows = plan.indices()
        if rows is not None:
            images = Subset(images, rows.tolist())
        sampler = plan.sampler()
        if sampler is None:
            return ctx.train_loader(images, collate)
        if ctx.world is not None:
            from ..errors import OptionError

            raise OptionError("option imbalance=balanced_sampler is not supported under "
                              "torchrun", where=self.splits["train"].card.name,
                              value="imbalance=balanced_sampler", option="imbalance",
                              fix="use oversample (resampled once, sharded like any data set) "
                                  "or run on one process")
        return make_loader(images, batch_size=self.spec.batch_size, device=ctx.device,
                           sampler=sampler, seed=self.spec.seed, collate_fn=collate)

    def _cached_order(self) -> torch.Tensor:
        """One epoch's row order on cached features: a shuffle (of the resampled rows for
        over- / under-sampling), or the class-balanced sampler's draws."""
        if self.sampler is not None:
            return torch.as_tensor(list(self.sampler))
        rows = self.train_rows
        n = len(self.feats["train"]) if rows is None else len(rows)
        order = torch.randperm(n, generator=self.ctx.generator)
        return order if rows is None else torch.as_tensor(rows)[order]

    @property
    def steps_per_epoch(self) -> int:
        if self.cached:
            rows = len(self.feats["train"]) if self.train_rows is None else len(self.train_rows)
            return -(-rows // self.spec.batch_size)
        return len(self.loaders["train"])

    def train_batches(self) -> Iterator[Batch]:
        device, spec = self.ctx.device, self.spec
        if self.cached:
            self.head.train()
            order = self._cached_order()
            for start in range(0, len(order), spec.batch_size):
                idx = order[start:start + spec.batch_size]
                x = self.feats["train"][idx].to(device)
                y = self.targets["train"][idx].to(device)
                yield (lambda x=x, y=y: self.criterion(self.head(x), y)), len(idx)
            return
        model = self.model
        self.step.train()
        for x, y in self.loaders["train"]:
            x = to_device(x, device)
            if spec.augment:  # batched, on the device (draws from the seeded CPU generator)
                x = augment(x, self.ctx.generator)
            x, y = normalize(x, self.prep), y.to(device, non_blocking=True)

            def forward_loss(x=x, y=y) -> torch.Tensor:
                out, aux = self.step(x)
                loss = self.criterion(out.float(), y)
                if aux is not None:
                    loss = loss + model.aux_loss_weight * self.criterion(aux.float(), y)
                return loss

            yield forward_loss, len(y)

    @torch.no_grad()
    def logits(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 logits of a split on the CPU, and its targets."""
        device = self.ctx.device
        if self.cached:
            self.head.eval()
            return self.head(self.feats[name].to(device)).float().cpu(), self.targets[name]
        model = self.model
        model.eval()
        outs, ys = [], []
        for x, y in self.loaders[name]:
            with self.ctx.precision.autocast():
                outs.append(model(normalize(to_device(x, device), self.prep)).float().cpu())
            ys.append(y)
        return torch.cat(outs), torch.cat(ys)


def write_predictions(path: Path, predictions: dict, class_names: list[str]) -> Path:
    """CSV with split, id, true, predicted and one probability column per class."""
    import csv

    from ..io import atomic_path

    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["split", "id", "true", "pred", *(f"p_{c}" for c in class_names)])
        for split, p in predictions.items():
            for i, sid in enumerate(p["ids"]):
                probs = np.atleast_1d(p["probs"][i])
                writer.writerow([split, sid, _fmt(p["true"][i]), _fmt(p["pred"][i]),
                                 *(f"{v:.6f}" for v in probs)])
    return path


def _fmt(value) -> str:
    arr = np.asarray(value)
    return str(int(arr)) if arr.ndim == 0 else "[" + " ".join(str(int(v)) for v in arr) + "]"


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

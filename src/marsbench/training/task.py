"""The task protocol: what a task (classification, segmentation, detection) tells the engine.

The engine (`marsbench.training.engine.train_task`) owns everything a run does the same way for
every task: the seed and random streams, precision and its gradient scaler, the optimiser,
scheduler and early stopping (`loop.fit`), distributed data-parallel training, compilation,
progress, timings, the best-epoch restore and the result type. A task supplies only what is its
own, as TorchGeo's ``BaseTask`` does for Lightning:

- `TaskTrainer.setup`: build the model and the data (loaders, pixel and feature caches); return
  the module the optimiser trains;
- `TaskTrainer.train_batches`: one epoch of ``(loss closure, batch size)``;
- `TaskTrainer.val_loss`: the validation loss early stopping watches;
- `TaskTrainer.evaluate`: a split's metrics with the trained model (dense tasks write their
  masks / detections on the way);
- `TaskTrainer.export`: write what `evaluate` kept (classification's predictions CSV).

`EngineContext` is what the engine hands every task: the spec, device, resolved precision, the
evaluation batch size, the seeded augmentation generator and the loader / wrapping helpers, so
no task builds a loader, a DDP wrapper or a compiled module its own way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..runs.profiles import loop_settings
from ..runs.spec import RunSpec
from .distributed import World, current_world, shard_train_loader, wrap_ddp
from .engine import Precision, eval_batch_size, make_loader, prepare_model

# One training step: a closure computing the batch's loss (the engine runs it under autocast
# and steps the optimiser) and the number of samples in the batch.
Batch = tuple[Callable[[], torch.Tensor], int]


@dataclass
class EngineContext:
    """What every task gets from the engine (module doc)."""

    spec: RunSpec
    device: torch.device
    cache_dir: Path | None = None  # the on-disk feature cache (None: memory only)
    predictions_dir: Path | None = None  # out/predictions/<key> (None: nothing written)
    precision: Precision = field(init=False)
    eval_batch: int = field(init=False)
    generator: torch.Generator = field(init=False)  # augmentation, crops: seeded, CPU
    world: World | None = field(init=False)
    _sharded: list[DataLoader] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        spec = self.spec
        self.precision = Precision.resolve(spec.precision, self.device, spec.profile)
        self.eval_batch = eval_batch_size(self.device, spec.batch_size)
        self.generator = torch.Generator().manual_seed(spec.seed)
        self.world = current_world()

    def train_loader(self, dataset: Dataset, collate_fn: Callable | None = None) -> DataLoader:
        """The shuffled training loader (seeded); under torchrun this rank's shard of it."""
        spec = self.spec
        if self.world is None:
            return make_loader(dataset, batch_size=spec.batch_size, device=self.device,
                               shuffle=True, seed=spec.seed, collate_fn=collate_fn)
        loader = shard_train_loader(dataset, self.world, batch_size=spec.batch_size,
                                    device=self.device, seed=spec.seed, collate_fn=collate_fn)
        self._sharded.append(loader)
        return loader

    def eval_loader(self, dataset: Dataset, collate_fn: Callable | None = None) -> DataLoader:
        """A loader for a no-gradient pass, in order, at `eval_batch`."""
        return make_loader(dataset, batch_size=self.eval_batch, device=self.device,
                           collate_fn=collate_fn)

    def start_epoch(self, epoch: int) -> None:
        """Reshuffle the distributed shards (each rank sees another part every epoch)."""
        for loader in self._sharded:
            loader.sampler.set_epoch(epoch)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Put ``model`` on the device (channels_last on CUDA) with the profile's behaviour of
        frozen parts (`marsbench.models.regime`)."""
        model = prepare_model(model, self.device)
        model.frozen_in_train_mode = loop_settings(self.spec.profile).frozen_backbone_train_mode
        return model

    def wrap(self, forward: nn.Module, *, distributed: bool = True) -> nn.Module:
        """The module a training step calls: DDP under torchrun (gradients averaged across
        ranks; not with ``distributed=False``, for a pass every rank runs whole), then
        ``torch.compile`` with ``--compile``; its state stays ``forward``'s."""
        if distributed and self.world is not None:
            forward = wrap_ddp(forward, self.device)
        if self.spec.compile:
            forward = torch.compile(forward)
        return forward

    def describe(self) -> dict:
        """The engine settings a record keeps."""
        out = {"precision": self.precision.name, "compiled": self.spec.compile,
               "eval_batch_size": self.eval_batch}
        if self.world is not None:
            out["world_size"] = self.world.size
        return out


class TaskTrainer(ABC):
    """One task's part of a run (module doc). ``info`` is added to the record's ``extra``;
    ``timings`` may hold ``feature_extraction_s`` (time `setup` spent on frozen features)."""

    def __init__(self, ctx: EngineContext, splits: dict) -> None:
        self.ctx, self.spec, self.splits = ctx, ctx.spec, splits
        self.info: dict = {}
        self.timings: dict[str, float] = {"feature_extraction_s": 0.0}

    @abstractmethod
    def setup(self) -> nn.Module:
        """Build the model and data; return the module whose trainable parameters the
        optimiser gets and whose state the best epoch is restored from."""

    @property
    @abstractmethod
    def steps_per_epoch(self) -> int:
        """Training batches in one epoch (the progress bar's total)."""

    @abstractmethod
    def train_batches(self) -> Iterator[Batch]:
        """One epoch of training: ``(loss closure, batch size)`` per batch, in order."""

    @abstractmethod
    def val_loss(self) -> float:
        """The validation loss early stopping watches (no gradients)."""

    @abstractmethod
    def evaluate(self, split: str) -> dict:
        """The metrics of ``split`` (``val`` or ``test``) with the current weights."""

    def export(self) -> Path | None:
        """Write what `evaluate` kept for the predictions folder; return its path."""
        return self.ctx.predictions_dir

    def model_cost(self) -> dict:
        """``{"flops_per_image", "parameters"}`` of the task's model (`training.cost`)."""
        return {"flops_per_image": None, "parameters": None}

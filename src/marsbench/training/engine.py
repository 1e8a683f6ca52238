"""What every trainer shares, written once: precision, data loaders, the optimisation step.

- **Precision** (`RunSpec.precision`): ``auto`` is bf16 autocast on CUDA and fp32 on the CPU;
  ``bf16`` / ``fp16`` autocast the forward pass (fp16 adds a gradient scaler on CUDA); ``fp32``
  autocasts nothing. Parameters and optimiser state stay fp32 (mixed precision, as the reference's
  16-bit Lightning runs). The resolved precision is recorded with the run.
- **Loaders**: worker processes (default from the CPU count, ``$MARSBENCH_WORKERS`` overrides),
  pinned memory on CUDA, persistent workers and prefetching; every no-gradient pass (feature
  extraction, validation, test) uses `eval_batch_size`, independent of the training batch size.
  Shuffling uses a seeded generator and augmentation runs in the main process, so the same seed
  gives the same batches with any number of workers.
- **channels_last** for 4-D image batches on CUDA (convolutions run faster in NHWC there).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from ..errors import env_int
from ..runs.spec import MAX_BATCH_SIZE


@dataclass
class TrainResult:
    """What every trainer returns to `run_experiment` (one type for all tasks).

    ``predictions_path``: where the task wrote its predictions (CSV, masks or detections)."""

    metrics: dict[str, dict]
    best_epoch: int
    epochs_run: int
    val_loss: float
    timings: dict[str, float]
    predictions_path: Path | None = None
    info: dict = field(default_factory=dict)


PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
EVAL_BATCH_CUDA, EVAL_BATCH_CPU = 256, 64


@dataclass(frozen=True)
class Precision:
    """A resolved precision (``fp32`` | ``bf16`` | ``fp16``) on one device."""

    name: str
    device_type: str

    @classmethod
    def resolve(cls, requested: str, device: torch.device, profile: str = "marsbench"
                ) -> Precision:
        """``auto``: fp32 on the CPU; on CUDA bf16 (fp16, as the reference, under ``paper``)."""
        if requested == "auto":
            from ..runs.profiles import loop_settings

            requested = (loop_settings(profile).cuda_auto_precision if device.type == "cuda"
                         else "fp32")
        if requested not in PRECISION_DTYPES:
            raise ValueError(f"unknown precision {requested!r}")
        return cls(requested, device.type)

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = PRECISION_DTYPES[self.name]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range."""
        if self.name == "fp16" and self.device_type == "cuda":
            return torch.amp.GradScaler("cuda")
        return None


class Stepper:
    """One optimisation step under a precision: zero grads, forward under autocast, (scaled)
    backward, step. ``loss_fn()`` runs the forward pass and returns the loss tensor."""

    def __init__(self, precision: Precision) -> None:
        self.precision = precision
        self.scaler = precision.scaler()

    def step(self, opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]) -> float:
        opt.zero_grad(set_to_none=True)
        with self.precision.autocast():
            loss = loss_fn()
        loss = loss.float()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()
        else:
            loss.backward()
            opt.step()
        return float(loss.detach())


def default_workers(device: torch.device) -> int:
    """Loader worker processes: ``$MARSBENCH_WORKERS``, else from the CPU count (all but one,
    at most 12, on CUDA; half the cores on the CPU, where the model needs them too)."""
    value = env_int("MARSBENCH_WORKERS", 0, 1024, example="4 (0: load in-process)")
    if value is not None:
        return value
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    if device.type == "cuda":
        return max(0, min(12, cores - 1))
    return max(0, min(8, cores // 2)) if cores >= 4 else 0


def eval_batch_size(device: torch.device, train_batch_size: int = 1) -> int:
    """Batch for no-gradient passes: ``$MARSBENCH_EVAL_BATCH``, else large (256 on CUDA)."""
    value = env_int("MARSBENCH_EVAL_BATCH", 1, MAX_BATCH_SIZE, example="64")
    if value is not None:
        return value
    return max(train_batch_size, EVAL_BATCH_CUDA if device.type == "cuda" else EVAL_BATCH_CPU)


def make_loader(dataset: Dataset, *, batch_size: int, device: torch.device,
                shuffle: bool = False, seed: int = 0, sampler: Sampler | None = None,
                collate_fn: Callable | None = None, workers: int | None = None) -> DataLoader:
    """The one DataLoader factory (see the module doc)."""
    workers = default_workers(device) if workers is None else workers
    workers = min(workers, max(0, len(dataset) // max(1, batch_size)))  # tiny sets: in-process
    if shuffle and sampler is None:
        # the order comes from a generator only the sampler draws from (once per epoch), so it
        # is the same with any number of workers, persistent or not
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    # the loader's own generator only seeds worker processes; never the global RNG, whose
    # draws would then depend on how often iterators are created
    generator = torch.Generator().manual_seed(seed + 1)
    extra = {"persistent_workers": True, "prefetch_factor": 4} if workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=generator,
                      collate_fn=collate_fn, num_workers=workers,
                      pin_memory=device.type == "cuda", **extra)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move an image batch to ``device`` (non-blocking from pinned memory; NHWC on CUDA)."""
    x = x.to(device, non_blocking=True)
    if device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device``; channels_last on CUDA."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def train_task(task, progress: Callable | None = None) -> TrainResult:
    """Run one `TaskTrainer` (`marsbench.training.task`): set up, train with early stopping on
    the validation loss (`loop.fit`), score val and test, export the predictions.

    Every epoch's global random stream (dropout, drop-path, proposal sampling) is seeded from
    the run's seed and the epoch number, so the same seed gives the same run whatever ran before
    or between epochs (a cached-feature run skips the backbone's random init, for one).
    ``progress(epoch, train_loss, val_loss)`` after each epoch and ``progress.batch(done,
    total)`` (batches) after each training batch, where the object has it.
    """
    import time

    from .loop import fit

    from .cost import CostMeter

    ctx, spec = task.ctx, task.spec
    meter = CostMeter(ctx.device).__enter__()
    t0 = time.perf_counter()
    trained = task.setup()
    setup_s = time.perf_counter() - t0
    stepper = Stepper(ctx.precision)
    rng_devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    epochs = [0]
    batch_progress = getattr(progress, "batch", None)

    def train_epoch(opt) -> float:
        epochs[0] += 1
        ctx.start_epoch(epochs[0] - 1)
        total_batches = task.steps_per_epoch
        loss_sum, seen = 0.0, 0
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(spec.seed * 1_000_003 + epochs[0])
            for i, (loss_fn, size) in enumerate(task.train_batches(), start=1):
                loss_sum += stepper.step(opt, loss_fn) * size
                seen += size
                if batch_progress is not None:
                    batch_progress(i, total_batches)
        return loss_sum / max(1, seen)

    t1 = time.perf_counter()
    result = fit(trained, train_epoch=train_epoch, val_loss=task.val_loss,
                 optimizer=spec.optimizer, lr=spec.lr, weight_decay=spec.weight_decay,
                 scheduler=spec.scheduler, max_epochs=spec.max_epochs, patience=spec.patience,
                 progress=progress, profile=spec.profile)
    return scored_result(task, meter, setup_s=setup_s, training_s=time.perf_counter() - t1,
                         val_loss=lambda: result.best_val_loss, best_epoch=result.best_epoch,
                         epochs_run=result.epochs_run, trainable=trained,
                         history=result.history, tested_epoch=result.tested_epoch)


def scored_result(task, meter, *, setup_s: float, training_s: float,
                  val_loss: Callable[[], float], best_epoch: int, epochs_run: int, trainable,
                  **info) -> TrainResult:
    """The end of every run, trained by epochs or fitted as a probe: score val and test, then
    ``val_loss()`` (a probe's is known only once scored), close the cost ``meter``, export the
    predictions; ``info`` joins the record's ``extra``."""
    import time

    t0 = time.perf_counter()
    metrics = {split: task.evaluate(split) for split in ("val", "test")}
    loss = metrics["val"]["loss"] = val_loss()
    meter.__exit__(None, None, None)
    info = {**task.ctx.describe(), **task.info, **info,
            "cost": meter.summary(model_cost=task.model_cost(), trainable=trainable)}
    predictions_path = export_predictions(task, info)
    timings = {"feature_extraction_s": 0.0, **task.timings, "setup_s": setup_s,
               "training_s": training_s, "evaluation_s": time.perf_counter() - t0}
    return TrainResult(metrics, best_epoch, epochs_run, loss, timings,
                       predictions_path=predictions_path, info=info)


def export_predictions(task, info: dict) -> Path | None:
    """``task.export()``; where it fails (disk full, no permission, ...) the metrics are sound
    and cost the whole run, so the run is kept (no predictions path) and ``info`` says what
    went wrong (``predictions_error``, one line, also warned)."""
    import warnings

    try:
        return task.export()
    except OSError as exc:
        from ..errors import format_error

        where = getattr(exc, "filename", None) or task.ctx.predictions_dir
        problem = format_error(
            "predictions could not be written", where=where,
            value=f"{type(exc).__name__}: {exc}",
            fix="free space or fix permissions on --out, then rerun with --force to get them; "
                "the metrics are in the store")
        info["predictions_error"] = problem
        warnings.warn(problem, RuntimeWarning, stacklevel=3)
        return None

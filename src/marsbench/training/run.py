"""`run_experiment`: one `RunSpec` in, one `RunRecord` out (and into the store, if given)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..catalog import Task
from ..errors import MarsbenchError
from ..runs.data import open_splits, split_record
from ..runs.record import RunRecord
from ..runs.spec import RunSpec
from ..sources import SPLITS
from ..sources.dataset import splits_fingerprint
from .distributed import init_from_env


def feature_cache_dir() -> Path:
    """``<cache root>/features`` (the one cache tree: ``$MARSBENCH_CACHE``, ``~`` expanded, else
    the user cache dir; pixels, the content-hash memo and VLM responses live beside it)."""
    from ..sources.content_hash import cache_root

    return cache_root() / "features"


def pick_device(name: str | None = None) -> torch.device:
    """The torch device of ``--device``: auto (CUDA if present, else CPU), cpu, cuda, cuda:N, mps.

    A device this machine does not have is an `OptionError` (``--device cuda`` without CUDA,
    ``cuda:7`` on a machine with 2 GPUs, ``gpu``), raised before anything runs -- never a
    failed run in the store.
    """
    from ..errors import OptionError, did_you_mean

    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise OptionError("unknown device", where="--device", value=name,
                          fix=did_you_mean(str(name), ("auto", "cpu", "cuda", "cuda:0", "mps"))
                          .replace("choose from", "use one of")) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError("CUDA is not available on this machine", where="--device",
                              value=name, fix="use --device cpu (or auto), or install a CUDA "
                                              "build of PyTorch and its driver")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise OptionError(f"no such CUDA device: this machine has {count}",
                              where="--device", value=name,
                              fix=f"use cuda:0 to cuda:{count - 1}, or cuda")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise OptionError("Apple MPS is not available on this machine", where="--device",
                              value=name, fix="use --device cpu (or auto)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def run_experiment(spec: RunSpec, *, weights_path: str | Path | None = None,
                   device: str | None = None, out_dir: str | Path | None = None,
                   store=None, progress: Callable | None = None) -> RunRecord:
    """Run ``spec``: train with early stopping, restore the best weights, score val and test.

    The record holds the resolved spec and its key, metrics, best epoch, epochs run, timings
    (feature extraction / training / total), versions, git commit, device and data fingerprint.
    Predictions go to ``out_dir/predictions/<key>.csv`` (classification), or to the folder
    ``out_dir/predictions/<key>/``: ``<split>/<id>.png`` masks (segmentation) or ``<split>.json``
    COCO-style detections (detection). With ``store`` the record is written
    there atomically; a failure is recorded too, then re-raised — except bad input or a missing
    environment piece (a `MarsbenchError`: data, weights, options), which is not a result.
    """
    t0 = time.perf_counter()
    world = init_from_env()  # under torchrun: one process per device
    torch_device = pick_device(device)
    if world is not None:
        torch_device = (torch.device("cuda", world.local_rank) if torch_device.type == "cuda"
                        else torch_device)
        if not world.is_main:  # rank 0 alone writes records and predictions
            store, out_dir, progress = None, None, None
    from .loggers import LoggedProgress, RunLogger, chosen_logger

    logger_name, log_dir = chosen_logger()  # optional TensorBoard / MLflow / W&B (off)
    logger = None
    if logger_name != "none" and (world is None or world.is_main):
        logger = RunLogger(logger_name, spec, log_dir)
        progress = LoggedProgress(progress, logger)
    try:
        seed_everything(spec.seed)
        splits = open_splits(spec)
        card = splits["train"].card
        predictions_dir = (Path(out_dir) / "predictions" / spec.short_key
                           if out_dir is not None else None)
        result = train(spec, splits, device=torch_device, weights=weights_path,
                       cache_dir=feature_cache_dir(), predictions_dir=predictions_dir,
                       progress=progress)
    except MarsbenchError:
        if logger is not None:
            logger.finish(None)
        raise  # bad input or environment (data, weights, options): not a result, not recorded
    except Exception as exc:
        if logger is not None:
            logger.finish(None)
        if store is not None:
            store.put(RunRecord.failure(spec, exc), on_duplicate="replace")
        raise
    timings = result.timings | {"total_s": time.perf_counter() - t0}
    data_fp = splits_fingerprint(splits)
    info = dict(result.info)
    info["notes"] = sorted({n for s in SPLITS for n in splits[s].notes})
    info["split_sizes"] = {s: len(splits[s]) for s in SPLITS}
    info["synthetic_data"] = card.synthetic
    info |= split_record(splits)  # a re-drawn split's counts (RunSpec.split)
    record = RunRecord.success(
        spec, task=str(card.task), metrics=result.metrics, best_epoch=result.best_epoch,
        epochs_run=result.epochs_run, val_loss=result.val_loss, timings=timings,
        data_fingerprint=data_fp, device=str(torch_device), extra=info)
    record.predictions_path = str(result.predictions_path) if result.predictions_path else None
    if logger is not None:
        logger.finish(record.metrics)
    if store is not None:
        store.put(record, on_duplicate="replace")
    return record


def train(spec: RunSpec, splits: dict, *, device: torch.device | str | None = None,
          model=None, weights: str | Path | None = None, cache_dir: Path | None = None,
          predictions_dir: Path | None = None, progress: Callable | None = None):
    """Train and score ``spec`` on opened ``splits`` with the one engine: the task's
    `TaskTrainer` (classification, segmentation or detection) under `engine.train_task`.

    ``model``: a model, or a function building one (classification calls it only when some
    split's frozen features are not cached); by default the registry's model for the spec's
    task and regime (with the user checkpoint ``weights``). Returns a `TrainResult`.
    """
    from .engine import train_task
    from .task import EngineContext

    card = splits["train"].card
    trainer = task_trainer(card.task)
    if model is None:
        build = lambda: default_model(spec, splits, weights)  # noqa: E731
    elif isinstance(model, torch.nn.Module):
        build = lambda: model  # noqa: E731
    else:
        build = model
    device = device if isinstance(device, torch.device) else pick_device(device)
    ctx = EngineContext(spec, device, cache_dir=cache_dir, predictions_dir=predictions_dir)
    if spec.regime in ("knn", "linear_probe", "few_shot_episodes"):  # not epoch-based
        from .probes import FewShotTask, ProbeTask, train_probe

        probe = FewShotTask if spec.regime == "few_shot_episodes" else ProbeTask
        return train_probe(probe(ctx, splits, build), progress)
    return train_task(trainer(ctx, splits, build), progress)


def task_trainer(task: Task):
    """The `TaskTrainer` class of a task."""
    if task is Task.CLASSIFICATION:
        from .classification import ClassificationTask

        return ClassificationTask
    if task is Task.SEGMENTATION:
        from .segmentation import SegmentationTask

        return SegmentationTask
    from .detection import DetectionTask

    return DetectionTask


def default_model(spec: RunSpec, splits: dict, weights: str | Path | None = None):
    """The registry's model for ``spec`` on ``splits`` (its class count, label kind, loss)."""
    train_split = splits["train"]
    card = train_split.card
    if card.task is Task.CLASSIFICATION:
        from ..models.classifier import build_classifier
        from ..models.earth_observation import resolve_model_spec
        from ..models.registry import spec_for_run
        from .classification import binary_outputs

        model_spec = spec_for_run(resolve_model_spec(spec.model, spec.options.to_dict(),
                                                     spec.regime), spec.profile, spec.regime)
        return build_classifier(model_spec, train_split.num_classes, spec.regime,
                                weights=weights, multilabel=card.multilabel,
                                num_outputs=binary_outputs(card.kind, spec.loss, spec.profile))
    if card.task is Task.SEGMENTATION:
        from ..models.segmentation import build_segmenter

        return build_segmenter(spec.model, train_split.num_classes, spec.regime, weights=weights)
    from ..models.detection import build_detector

    return build_detector(spec.model, train_split.num_classes, spec.regime, weights=weights,
                          profile=spec.profile)

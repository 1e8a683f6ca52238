"""`run_experiment`: one `RunSpec` in, one `RunRecord` out (and into the store, if given)."""

from __future__ import annotations

import csv
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import platformdirs
import torch

from ..catalog import Task
from ..errors import MarsbenchError
from ..io import atomic_path
from ..runs.data import open_splits
from ..runs.record import RunRecord
from ..runs.spec import RunSpec
from ..sources import SPLITS
from ..sources.dataset import splits_fingerprint
from .distributed import init_from_env


class PredictionsNotWrittenError(MarsbenchError, OSError):
    """The run finished and is recorded, but its predictions file could not be written."""


def feature_cache_dir() -> Path:
    env = os.environ.get("MARSBENCH_CACHE")
    base = Path(env) if env else Path(platformdirs.user_cache_dir("marsbench"))
    return base / "features"


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
    try:
        seed_everything(spec.seed)
        splits = open_splits(spec)
        card = splits["train"].card
        dense_dir = (Path(out_dir) / "predictions" / spec.short_key
                     if out_dir is not None else None)
        if card.task is Task.CLASSIFICATION:
            from ..models.classifier import build_classifier
            from .classification import binary_outputs, train_classification

            from ..models.earth_observation import resolve_model_spec

            def build_model():  # lazy: a run whose features are all cached builds no backbone
                model_spec = resolve_model_spec(spec.model, spec.options.to_dict(), spec.regime)
                return build_classifier(model_spec, splits["train"].num_classes, spec.regime,
                                        weights=weights_path, multilabel=card.multilabel,
                                        num_outputs=binary_outputs(card.kind, spec.loss))

            result = train_classification(spec, build_model, splits, device=torch_device,
                                          cache_dir=feature_cache_dir(), progress=progress)
        elif card.task is Task.SEGMENTATION:
            from ..models.segmentation import build_segmenter
            from .segmentation import train_segmentation

            model = build_segmenter(spec.model, splits["train"].num_classes, spec.regime,
                                    weights=weights_path)
            result = train_segmentation(spec, model, splits, device=torch_device,
                                        predictions_dir=dense_dir, progress=progress,
                                        cache_dir=feature_cache_dir())
        else:
            from ..models.detection import build_detector
            from .detection import train_detection

            model = build_detector(spec.model, splits["train"].num_classes, spec.regime,
                                   weights=weights_path)
            result = train_detection(spec, model, splits, device=torch_device,
                                     predictions_dir=dense_dir, progress=progress)
    except MarsbenchError:
        raise  # bad input or environment (data, weights, options): not a result, not recorded
    except Exception as exc:
        if store is not None:
            store.put(RunRecord.failure(spec, exc), on_duplicate="replace")
        raise
    timings = result.timings | {"total_s": time.perf_counter() - t0}
    data_fp = splits_fingerprint(splits)
    info = dict(result.info)
    info["notes"] = sorted({n for s in SPLITS for n in splits[s].notes})
    info["split_sizes"] = {s: len(splits[s]) for s in SPLITS}
    info["synthetic_data"] = card.synthetic
    record = RunRecord.success(
        spec, task=str(card.task), metrics=result.metrics, best_epoch=result.best_epoch,
        epochs_run=result.epochs_run, val_loss=result.val_loss, timings=timings,
        data_fingerprint=data_fp, device=str(torch_device), extra=info)
    if card.task is not Task.CLASSIFICATION:
        # masks (PNG, class index) or detections (COCO JSON), written by the trainer
        record.predictions_path = str(result.predictions_path) if result.predictions_path else None
    elif out_dir is not None:
        target = Path(out_dir) / "predictions" / f"{spec.short_key}.csv"
        try:
            record.predictions_path = str(write_predictions(target, result.predictions,
                                                            splits["test"].class_names))
        except OSError as exc:
            # Disk full, no permission, ...: the metrics are sound and cost the whole run, so
            # the record is kept (status ok, no predictions_path) and says what went wrong.
            problem = PredictionsNotWrittenError(
                "predictions could not be written", where=target,
                value=f"{type(exc).__name__}: {exc}",
                fix="free space or fix permissions on --out, then rerun with --force to get "
                    "them; the metrics are in the store")
            record.extra["predictions_error"] = str(problem)
            warnings.warn(str(problem), RuntimeWarning, stacklevel=2)
    if store is not None:
        store.put(record, on_duplicate="replace")
    return record


def write_predictions(path: Path, predictions: dict, class_names: list[str]) -> Path:
    """CSV with split, id, true, predicted and one probability column per class."""
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

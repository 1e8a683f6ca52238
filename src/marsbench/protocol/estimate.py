"""What a sweep will cost here: measured training throughput x images x epochs (``--dry-run``).

Throughput is measured on this machine: a few timed forward + backward steps of each model (built
untrained: weights do not change the speed) at its input size and batch size on the selected
device, cached per (model, size, batch, device) in the cache root (``throughput.json``), so the
next dry-run is instant. A model whose step would take long here (ViT-L on a laptop CPU) is not
run: its throughput is extrapolated from its FLOPs (`training.cost.count_flops`) and this
device's measured FLOP rate (a small reference network), and says so.

The estimate is an upper bound, and says what it assumes: every epoch up to ``max_epochs`` runs
(early stopping ignored), every epoch trains the whole network on the train split (cached
features and frozen backbones ignored) and evaluates the val split at 3x the training rate (a
forward pass is about a third of a training step), images at the model's input size (native-
resolution segmentation sees larger ones). Detectors are not measured.
"""

from __future__ import annotations

import functools
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MEASURE_LIMIT_S = 1.0  # measure a model when one training step is expected below this
EVAL_SPEEDUP = 3.0  # val images per second / train images per second (assumed)


@dataclass(frozen=True)
class Throughput:
    images_per_s: float | None
    how: str  # "measured" | "extrapolated from FLOPs" | "not measured (<why>)"
    cached: bool = False


@dataclass
class Estimate:
    seconds: float = 0.0
    runs: int = 0
    unknown: int = 0  # runs without an estimate (detectors, unknown dataset sizes)
    throughputs: dict[str, Throughput] = field(default_factory=dict)  # "model@size/bs" -> ...


# -- throughput ---------------------------------------------------------------------------------

def _cache_file() -> Path:
    from ..sources.content_hash import cache_root

    return cache_root() / "throughput.json"


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}:{torch.get_num_threads()}threads"


def _cached(key: str, compute) -> tuple[Any, bool]:
    from ..io import json_memo

    return json_memo(_cache_file(), key, compute)


def _step_time(model, batch, device, steps: int = 3) -> float:
    """Median seconds of a forward + backward step (after one warm-up step)."""
    import statistics

    import torch

    model.train()
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = model(batch)
        out = out[0] if isinstance(out, (tuple, list)) else out
        out = getattr(out, "logits", out)
        out.float().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return statistics.median(times)


def device_flop_rate(device) -> float:
    """Training FLOP/s of ``device``: a small conv net's measured step (cached)."""
    import torch
    from torch import nn

    from ..training.cost import count_flops

    def compute() -> float:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1),
                            nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).to(device)
        x = torch.randn(8, 3, 96, 96, device=device)
        flops = count_flops(net, x)  # the batch's forward pass
        return 3 * flops / _step_time(net, x, device)

    return _cached(f"flop_rate|{_device_name(device)}|torch {torch.__version__}", compute)[0]


def _build(model_name: str, task: str, device, meta: bool = False):
    import torch

    from ..models import build_classifier
    from ..models.segmentation import build_dense

    ctx = torch.device("meta") if meta else torch.device(device)
    with ctx:
        if task == "classification":
            return build_classifier(model_name, 2, "scratch")
        return build_dense(model_name, task, 2, "scratch")


@functools.lru_cache(maxsize=2)
def _real_model(model_name: str, task: str, device: str):
    return _build(model_name, task, device)


def throughput(model_name: str, task: str, input_size: int, batch_size: int,
               device) -> Throughput:
    """Training images per second of ``model_name`` here (see the module doc)."""
    import torch

    from ..models.registry import get_spec
    from ..training.cost import cached_flops, count_flops, flops_key

    if task == "detection":
        return Throughput(None, "not measured (detectors)")
    spec = get_spec(model_name)
    key = (f"{model_name}|{task}|{input_size}px|bs{batch_size}|{_device_name(device)}|"
           f"torch {torch.__version__}")

    def compute() -> dict:
        shape = (1, spec.in_channels, input_size, input_size)

        def count() -> int | None:  # on the meta device: nothing allocated, nothing run
            try:
                return count_flops(_build(model_name, task, device, meta=True),
                                   torch.empty(shape, device="meta"))
            except Exception:  # noqa: BLE001 - an op without a meta kernel: measure instead
                return None

        flops = cached_flops(flops_key(model_name, shape, f"{task} scratch"), count)
        rate = device_flop_rate(device)
        if flops and 3 * flops * batch_size / rate > MEASURE_LIMIT_S:
            return {"images_per_s": rate / (3 * flops), "how": "extrapolated from FLOPs"}
        torch.manual_seed(0)
        model = _real_model(model_name, task, str(device))
        batch = torch.randn((batch_size, *shape[1:]), device=device)
        return {"images_per_s": batch_size / _step_time(model, batch, device),
                "how": "measured"}

    value, cached = _cached(key, compute)
    return Throughput(value["images_per_s"], value["how"], cached)


# -- the estimate -------------------------------------------------------------------------------

def split_images(spec) -> tuple[int, int] | None:
    """(train, val) image counts of a run from its dataset card (None: unknown)."""
    return _images(spec.dataset, str(spec.variant), spec.data_root, spec.source)


@functools.lru_cache(maxsize=256)
def _images(dataset: str, variant: str, root: str | None, source: str) -> tuple[int, int] | None:
    from ..catalog import Variant
    from ..runs.spec import dataset_card

    card = dataset_card(dataset, root, source, required=False)
    sizes = getattr(card, "split_sizes", None) or {}
    if "train" not in sizes:
        return None
    train, parsed = sizes["train"], Variant.parse(variant)
    if parsed.kind == "partition":
        train = round(train * parsed.value)
    elif parsed.kind == "few_shot":
        train = min(train, parsed.value * card.num_classes)
    return train, sizes.get("val", 0)


def input_size(spec) -> int:
    return _input_size(spec.model, getattr(spec.options, "input_size", None))


@functools.lru_cache(maxsize=256)
def _input_size(model: str, option: int | None) -> int:
    from ..models.registry import get_spec

    return int(option or get_spec(model).input_size)


def run_seconds(spec, device, known: dict[str, Throughput]) -> float | None:
    """Upper-bound seconds of one run (None: no estimate)."""
    images = split_images(spec)
    if images is None:
        return None
    size = input_size(spec)
    label = f"{spec.model}@{size}px/bs{spec.batch_size}"
    if label not in known:
        known[label] = throughput(spec.model, spec.task, size, spec.batch_size, device)
    rate = known[label].images_per_s
    if not rate:
        return None
    train, val = images
    return spec.max_epochs * (train / rate + val / (EVAL_SPEEDUP * rate))


def estimate_plan(plan, device) -> Estimate:
    """Upper-bound cost of the runs ``plan`` will run, plus the trials and seeds runs not
    planned yet (each costed as the mean run of its group)."""
    est = Estimate()
    by_group: dict[Any, list[float]] = {}
    for status in plan.grid + plan.seeds:
        if status.will_run and not status.reused:
            est.runs += 1
            s = run_seconds(status.run.spec, device, est.throughputs)
            if s is None:
                est.unknown += 1
            else:
                est.seconds += s
                by_group.setdefault(status.run.group, []).append(s)
    exp = plan.experiment
    per_group = (len(exp.seeds) - (exp.grid_seed in exp.seeds)) if "seeds" in exp.stages else 0
    for group, sel in plan.selections.items():
        if sel.decided:
            continue
        later = per_group + plan.trials.get(group, 0) - sum(
            s.run.group == group for s in plan.grid)
        costs = by_group.get(group)
        est.runs += later
        if costs:
            est.seconds += later * sum(costs) / len(costs)
        else:
            est.unknown += later
    return est


def describe_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365.25 * 86400):.3g} years"

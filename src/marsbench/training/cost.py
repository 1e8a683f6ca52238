"""What a result cost: FLOPs per image, parameters, peak memory, energy (where a meter exists).

Stored in every run record as ``extra["cost"]`` (the wall time split by stage is the record's
``timings``):

- ``flops_per_image``: one forward pass of one image at the run's input size, counted by
  PyTorch's ``FlopCounterMode`` (a multiply-add counts 2); a training step is about 3x that.
  Weights do not change the count, so it is cached per (model, input shape) under the cache root
  (``flops.json``): a run whose features were all cached, and built no model, still reports it.
- ``parameters``, ``trainable_parameters``: of the model as the run trained it (trainable: what
  the optimiser got; 0 for the scikit-learn probes).
- ``peak_memory_bytes``: CUDA ``max_memory_allocated`` on a GPU; on the CPU the process's peak
  resident set (``ru_maxrss``, a high-water mark of the whole process), named as such.
- ``energy_joules``: NVIDIA's energy counter through NVML (``pynvml``) on a GPU that has one;
  otherwise None with ``energy_source`` saying why -- never an estimate.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn


def count_flops(module: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of ``module(example)`` (no gradients, eval mode restored afterwards)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(example)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def _flops_file() -> Path:
    from ..sources.content_hash import cache_root

    return cache_root() / "flops.json"


def cached_flops(key: str, compute):
    """The value for ``key`` in the cache file, else ``compute()`` (stored unless None)."""
    from ..io import json_memo

    return json_memo(_flops_file(), key, compute)[0]


def parameter_counts(module: nn.Module | None) -> tuple[int, int]:
    if module is None:
        return 0, 0
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


class CostMeter:
    """Peak memory and energy over a run (a context manager); `summary` gives the record's
    ``extra["cost"]`` with the FLOPs and parameter counts the caller adds."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.energy_source = "no energy meter on the CPU"
        self._nvml = None
        self._energy0 = None
        self.energy_joules: float | None = None
        self.peak_memory_bytes: int | None = None
        self.peak_memory_kind = ""

    def __enter__(self) -> CostMeter:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start_energy()
        return self

    def _start_energy(self) -> None:
        try:
            import pynvml  # nvidia-ml-py
        except ImportError:
            self.energy_source = "pynvml (nvidia-ml-py) not installed"
            return
        try:
            pynvml.nvmlInit()
            index = self.device.index if self.device.index is not None else 0
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._energy0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ
            self._nvml = (pynvml, handle)
            self.energy_source = "NVML total energy counter"
        except Exception as exc:  # noqa: BLE001 - no counter on this GPU / driver
            self.energy_source = f"NVML has no energy counter here ({type(exc).__name__})"

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))
            self.peak_memory_kind = "cuda max_memory_allocated"
            if self._nvml is not None:
                pynvml, handle = self._nvml
                try:
                    end = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                    self.energy_joules = (end - self._energy0) / 1000.0
                except Exception:  # noqa: BLE001
                    self.energy_source = "NVML energy counter failed at the end"
        else:
            self.peak_memory_bytes = _process_peak_rss()
            self.peak_memory_kind = "process peak RSS (ru_maxrss)"

    def summary(self, *, model_cost: dict, trainable: nn.Module | None) -> dict:
        _, trainable_count = parameter_counts(trainable)
        return {**model_cost,
                "trainable_parameters": trainable_count,
                "peak_memory_bytes": self.peak_memory_bytes,
                "peak_memory_kind": self.peak_memory_kind,
                "energy_joules": self.energy_joules, "energy_source": self.energy_source}


def _process_peak_rss() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux: KiB


def flops_key(model_name: str, shape: tuple[int, ...], extra: str = "") -> str:
    return f"{model_name}|{'x'.join(map(str, shape))}|{extra}|torch {torch.__version__}"


__all__ = ["CostMeter", "cached_flops", "count_flops", "flops_key", "parameter_counts",
           "model_cost"]


def model_cost(model_name: str, example, build, extra: str = "") -> dict:
    """``{"flops_per_image", "parameters"}`` of a model on one ``example`` (a tensor, or a list
    of image tensors for detectors): from the cache file, else counted on ``build()`` (the run's
    model, or one built only to count). Counting failures give None, never a guess."""
    shape = tuple(example.shape) if isinstance(example, torch.Tensor) else tuple(
        example[0].shape)
    key = flops_key(model_name, shape, extra)

    def compute():
        try:
            module = build()
            return {"flops_per_image": count_flops(module, example),
                    "parameters": parameter_counts(module)[0]}
        except Exception:  # noqa: BLE001 - an op FlopCounterMode cannot count, ...
            return None

    value = cached_flops(key, compute)
    return value if isinstance(value, dict) else {"flops_per_image": None, "parameters": None}

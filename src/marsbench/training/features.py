"""The frozen-feature cache: the fast path of the `feature_extraction` regime.

With a frozen backbone in eval mode, the features of an un-augmented image never change, so they
are computed once per (model, weights, dataset split and its fingerprint, preprocessing) and kept
on disk (and in memory for the process, least recently used first out past a byte budget:
``MARSBENCH_FEATURE_MEMORY_BYTES``, default 2 GiB, so a long sweep does not grow without bound). Every later run that shares them — other learning rates,
optimisers, seeds — trains only the head on the cached tensors and never runs the backbone.

Segmentation caches its frozen encoder's multi-scale features (and the policy's masks) the same
way, as a structure of tensors (`marsbench.training.segmentation_features`), read back
memory-mapped.

Train-time augmentation cannot be applied to cached features; runs on this path train the head
without augmentation, and the run record says so (``fe_path=cached``). ``fe_path=online`` runs
the backbone every step with augmentation, as the reference does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_path

FEATURE_CACHE_VERSION = 1
MEMORY_ENV = "MARSBENCH_FEATURE_MEMORY_BYTES"
DEFAULT_MEMORY_BYTES = 2 * 2**30
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class _MemoryCache:
    """Feature tensors kept in this process, least recently used evicted past a byte budget."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()
        self.nbytes = 0
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Any:
        with self._lock:
            feats = self._items.get(key)
            if feats is not None:
                self._items.move_to_end(key)
            return feats

    def put(self, key: str, feats: Any, budget: int) -> None:
        size = _nbytes(feats)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= _nbytes(old)
            if size <= budget:  # larger than the whole budget: not kept (the disk has it)
                self._items[key] = feats
                self.nbytes += size
            while self.nbytes > budget:  # the budget may also have shrunk since
                _, evicted = self._items.popitem(last=False)
                self.nbytes -= _nbytes(evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def _nbytes(value: Any) -> int:
    """Bytes of the tensors in ``value``: a tensor, or lists / tuples / dicts holding them."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


def memory_budget() -> int:
    """Bytes of features kept in memory: ``$MARSBENCH_FEATURE_MEMORY_BYTES`` (a byte count, or
    with a binary suffix such as ``512M``, ``4G``; 0 keeps none), else 2 GiB."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if not text:
        return DEFAULT_MEMORY_BYTES
    number, unit = text.rstrip("bBiI"), ""
    if number and number[-1].lower() in _UNITS:
        number, unit = number[:-1], number[-1].lower()
    try:
        value = int(float(number) * _UNITS[unit])
    except (ValueError, OverflowError):  # "abc", "inf", "nan"
        value = -1
    if value < 0:
        from ..errors import OptionError

        raise OptionError("not a byte count", where=f"environment variable {MEMORY_ENV}",
                          value=text, fix="give bytes, e.g. 2147483648 or 2G (0 keeps no "
                                          "features in memory)")
    return value


_MEMORY = _MemoryCache()


def feature_key(*, model: str, weights: str, dataset_fingerprint: str, split: str,
                preprocessing: str) -> str:
    payload = json.dumps({"v": FEATURE_CACHE_VERSION, "model": model, "weights": weights,
                          "data": dataset_fingerprint, "split": split, "prep": preprocessing},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@torch.no_grad()
def compute_features(backbone: nn.Module, batches, device: torch.device, *,
                     autocast: Callable[[], Any] = contextlib.nullcontext) -> torch.Tensor:
    """Run the backbone (eval mode, no gradients, under ``autocast()``) over ``batches`` of
    model-ready inputs; the features are kept as fp32."""
    was_training = backbone.training
    backbone.eval()
    out = []
    for x in batches:
        with autocast():
            out.append(backbone(x.to(device, non_blocking=True)).float().cpu())
    backbone.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def cached_features(key: str, cache_dir: Path | None, compute: Callable[[], Any], *,
                    memory_bytes: int | None = None, mmap: bool = False) -> tuple[Any, bool]:
    """The features for ``key`` and whether they came from the cache (memory or disk).

    A cached value is a tensor or a structure of them (lists, tuples, dicts; `None`, numbers and
    text inside are kept), saved with `torch.save` and read back without unpickling objects.
    ``memory_bytes``: the in-memory budget (default `memory_budget()`). ``mmap``: read the disk
    copy memory-mapped (pages are read when a batch touches them), and when a computed value is
    larger than the whole budget, hand back that mapped copy instead of keeping it in RAM."""
    budget = memory_budget() if memory_bytes is None else int(memory_bytes)
    feats = _MEMORY.get(key)
    if feats is not None:
        return feats, True
    path = cache_dir / f"{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        try:
            feats = torch.load(path, weights_only=True, mmap=mmap)
        except Exception as exc:  # noqa: BLE001 - unreadable cache entry: recompute, say so
            warnings.warn(f"feature cache {path} is unreadable ({exc}); recomputing it",
                          stacklevel=2)
        else:
            _MEMORY.put(key, feats, budget)
            return feats, True
    feats = compute()
    written = False
    if path is not None:
        # atomic, under a name no other writer shares: a concurrent reader sees all or nothing
        try:
            with atomic_path(path) as tmp:
                torch.save(feats, tmp)
            written = True
        except OSError as exc:  # disk full, read-only cache: the run goes on uncached
            warnings.warn(f"feature cache {path} could not be written ({exc}); going on "
                          "without caching it", stacklevel=2)
    if mmap and written and _nbytes(feats) > budget:
        try:  # too large to keep in RAM: the mapped disk copy stands in for it
            feats = torch.load(path, weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - keep the computed copy
            pass
    _MEMORY.put(key, feats, budget)
    return feats, False


def clear_memory_cache() -> None:
    _MEMORY.clear()


def memory_cache_bytes() -> int:
    """Bytes of features held in memory now."""
    return _MEMORY.nbytes

"""The frozen-feature cache: the fast path of the `feature_extraction` regime.

With a frozen backbone in eval mode, the features of an un-augmented image never change, so they
are computed once per (model, weights, dataset split and its fingerprint, preprocessing) and kept
on disk (and in memory for the process). Every later run that shares them — other learning rates,
optimisers, seeds — trains only the head on the cached tensors and never runs the backbone.

Train-time augmentation cannot be applied to cached features; runs on this path train the head
without augmentation, and the run record says so (``fe_path=cached``). ``fe_path=online`` runs
the backbone every step with augmentation, as the reference does.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_path

FEATURE_CACHE_VERSION = 1
_MEMORY: dict[str, torch.Tensor] = {}


def feature_key(*, model: str, weights: str, dataset_fingerprint: str, split: str,
                preprocessing: str) -> str:
    payload = json.dumps({"v": FEATURE_CACHE_VERSION, "model": model, "weights": weights,
                          "data": dataset_fingerprint, "split": split, "prep": preprocessing},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@torch.no_grad()
def compute_features(backbone: nn.Module, batches, device: torch.device) -> torch.Tensor:
    """Run the backbone (eval mode, no gradients) over ``batches`` of model-ready inputs."""
    was_training = backbone.training
    backbone.eval()
    out = [backbone(x.to(device)).float().cpu() for x in batches]
    backbone.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def cached_features(key: str, cache_dir: Path | None,
                    compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """The features for ``key`` and whether they came from the cache (memory or disk)."""
    if key in _MEMORY:
        return _MEMORY[key], True
    path = cache_dir / f"{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        try:
            feats = torch.load(path, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - unreadable cache entry: recompute, say so
            warnings.warn(f"feature cache {path} is unreadable ({exc}); recomputing it",
                          stacklevel=2)
        else:
            _MEMORY[key] = feats
            return feats, True
    feats = compute()
    if path is not None:
        # atomic, under a name no other writer shares: a concurrent reader sees all or nothing
        try:
            with atomic_path(path) as tmp:
                torch.save(feats, tmp)
        except OSError as exc:  # disk full, read-only cache: the run goes on uncached
            warnings.warn(f"feature cache {path} could not be written ({exc}); going on "
                          "without caching it", stacklevel=2)
    _MEMORY[key] = feats
    return feats, False


def clear_memory_cache() -> None:
    _MEMORY.clear()

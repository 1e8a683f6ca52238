"""Segmentation's frozen-encoder cache, the fast path of ``feature_extraction`` (``cached``).

In ``feature_extraction`` the encoder is frozen and kept in eval mode (BatchNorm statistics never
change), so the multi-scale features of an un-augmented image never change either. They are
computed once per split — eval mode, no gradients, the run's precision, large batches — and kept
with the split's masks (as the input policy scores them) in the feature cache of
`marsbench.training.features` (disk under ``$MARSBENCH_CACHE/features``, read memory-mapped, plus
the bounded in-memory LRU). Every later run that shares them (other learning rates, optimisers,
seeds) trains only the decoder and segmentation head on the cached features: neither the images
nor the encoder are touched again.

The key covers the model, its weights, the split's content fingerprint, the preprocessing, the
input policy (and its sizes), the precision and the class count / ignore value (masks are
cached too).

Policies: ``reference`` (fixed size: one shape for all features) and ``native`` (each image
padded to a multiple of 32; images of one padded shape are encoded together, so a split of one
size gives exactly the uncached path's features). When a training batch mixes padded shapes, the
cached features are zero-padded to the batch's largest shape (the uncached path pads the image
instead; only pixels near the padding, which the loss ignores, see a difference); validation and
test decode each shape on its own and are exact. ``tile`` (new random crops every epoch) cannot
be cached: `marsbench.runs.options` refuses ``fe_path=cached`` with it.

Train-time augmentation cannot be applied to cached features: these runs record
``augment_applied: false``; ``fe_path=online`` runs the encoder every step with augmentation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models.preprocess import normalize
from ..models.segmentation import decode_features, encoder_features, shape_only_features
from .engine import Precision, make_loader, to_device
from .features import cached_features, feature_key
from .segmentation import IGNORE, STRIDE, InputPolicy, pad_to_stride

CACHE_FORMAT = 1  # bump when the cached layout or what it holds changes


def cache_preprocessing(prep, policy: InputPolicy, precision: Precision, num_classes: int,
                        ignore_index: int | None) -> str:
    """What the cached features and masks depend on besides model, weights and data."""
    return json.dumps({"what": "segmentation-encoder", "format": CACHE_FORMAT,
                       "prep": prep.key(), "policy": policy.describe(),
                       "precision": precision.name, "classes": num_classes,
                       "ignore": ignore_index}, sort_keys=True)


@torch.no_grad()
def encode_split(net: nn.Module, images, *, prep, device: torch.device,
                 precision: Precision, batch_size: int) -> dict:
    """Run ``net``'s encoder once over a `SegmentationImages` split (eval mode, no gradients,
    under ``precision``'s autocast); returns the cache entry (see `DenseFeatures`)."""
    encoder = net.encoder
    was_training = encoder.training
    encoder.eval()
    loader = make_loader(images, batch_size=batch_size, device=device, collate_fn=list)
    ids: list[str] = []
    sizes: list[tuple[int, int]] = []
    where: list[tuple[int, int]] = []  # (group, row) of each sample
    group_of: dict[tuple[int, int], int] = {}
    chunks: list[dict] = []  # per group: lists of feature chunks and mask chunks
    count, skip = None, frozenset()
    mask_dtype = torch.int16 if images.num_classes < 2**15 else torch.int32
    for batch in loader:
        by_shape: dict[tuple[int, int], list] = {}
        for pos, (image, mask, _) in enumerate(batch):
            h, w = image.shape[-2:]
            padded = (math.ceil(h / STRIDE) * STRIDE, math.ceil(w / STRIDE) * STRIDE)
            by_shape.setdefault(padded, []).append((pos, image, mask))
        placed: dict[int, tuple[int, int]] = {}  # position in batch -> (group, row)
        for padded, items in by_shape.items():
            g = group_of.setdefault(padded, len(group_of))
            if g == len(chunks):
                chunks.append({"features": [], "masks": [], "n": 0})
            x = torch.stack([pad_to_stride(normalize(im.to(device, non_blocking=True), prep),
                                           0.0, size=padded) for _, im, _ in items])
            with precision.autocast():
                feats = encoder_features(net, to_device(x, device))
            if count is None:
                count = len(feats)
                skip = shape_only_features(net, count)
            chunks[g]["features"].append([
                None if f is None else ("shape", tuple(f.shape[1:])) if i in skip
                else f.detach().cpu().contiguous()
                for i, f in enumerate(feats)])
            chunks[g]["masks"].append(torch.stack(
                [pad_to_stride(m, IGNORE, size=padded) for _, _, m in items]).to(mask_dtype))
            for pos, _, _ in items:
                placed[pos] = (g, chunks[g]["n"])
                chunks[g]["n"] += 1
        for pos, (_, mask, sample_id) in enumerate(batch):  # the split's order
            ids.append(str(sample_id))
            sizes.append(tuple(mask.shape[-2:]))
            where.append(placed[pos])
    encoder.train(was_training)
    groups = []
    for c in chunks:
        features, shapes = [], []
        for i in range(count):
            parts = [chunk[i] for chunk in c["features"]]
            if parts[0] is None:
                features.append(None), shapes.append(None)
            elif isinstance(parts[0], tuple):
                features.append(None), shapes.append(list(parts[0][1]))
            else:
                features.append(torch.cat(parts)), shapes.append(list(parts[0].shape[1:]))
        groups.append({"features": features, "shapes": shapes, "masks": torch.cat(c["masks"])})
    return {"format": CACHE_FORMAT, "ids": ids,
            "sizes": torch.tensor(sizes, dtype=torch.int64).reshape(-1, 2),
            "where": torch.tensor(where, dtype=torch.int64).reshape(-1, 2), "groups": groups}


@dataclass
class DenseFeatures:
    """One split's cached encoder output: ``groups`` of samples sharing a padded shape, each
    with its features per encoder output (``None`` where the decoder reads only the shape,
    recorded in ``shapes``) and its masks (`IGNORE` in padding); per sample its id, its unpadded
    size and its (group, row)."""

    entry: dict

    def __len__(self) -> int:
        return len(self.entry["ids"])

    @property
    def ids(self) -> list[str]:
        return self.entry["ids"]

    def _dtype(self, group: dict) -> torch.dtype:
        return next((f.dtype for f in group["features"] if f is not None), torch.float32)

    def _take(self, g: int, rows: torch.Tensor, device: torch.device):
        group = self.entry["groups"][g]
        dtype = self._dtype(group)
        feats = []
        for f, shape in zip(group["features"], group["shapes"]):
            if f is not None:
                feats.append(to_device(f.index_select(0, rows), device))
            elif shape is not None:  # only its shape is read: a view of one zero
                feats.append(torch.zeros((), dtype=dtype, device=device)
                             .expand(len(rows), *shape))
            else:
                feats.append(None)
        return feats, group["masks"].index_select(0, rows)

    def batch(self, indices: list[int], device: torch.device):
        """(features on ``device``, int64 masks on ``device``) of the samples ``indices``,
        zero-padded (masks: `IGNORE`) to a common shape when their padded shapes differ."""
        where = self.entry["where"][torch.as_tensor(indices, dtype=torch.int64)]
        groups = where[:, 0].unique()
        if len(groups) == 1:
            feats, masks = self._take(int(groups[0]), where[:, 1], device)
            return feats, masks.to(device, non_blocking=True).long()
        parts = [self._take(g, torch.tensor([r]), device) for g, r in where.tolist()]
        feats = []
        for i in range(len(parts[0][0])):
            column = [p[0][i] for p in parts]
            if column[0] is None:
                feats.append(None)
                continue
            h = max(c.shape[-2] for c in column)
            w = max(c.shape[-1] for c in column)
            feats.append(torch.cat([F.pad(c, (0, w - c.shape[-1], 0, h - c.shape[-2]))
                                    for c in column]))
        h = max(p[1].shape[-2] for p in parts)
        w = max(p[1].shape[-1] for p in parts)
        masks = torch.cat([pad_to_stride(p[1].long(), IGNORE, size=(h, w)) for p in parts])
        return feats, masks.to(device, non_blocking=True)

    def eval_batches(self, batch_size: int, device: torch.device) -> Iterator[tuple]:
        """``(indices, features, masks)`` for every sample, each batch of one padded shape."""
        where = self.entry["where"]
        for g in range(len(self.entry["groups"])):
            members = (where[:, 0] == g).nonzero().flatten()
            for start in range(0, len(members), batch_size):
                idx = members[start:start + batch_size]
                feats, masks = self._take(g, where[idx, 1], device)
                yield idx.tolist(), feats, masks.long()

    def size(self, i: int) -> tuple[int, int]:
        h, w = self.entry["sizes"][i].tolist()
        return h, w


def split_features(net: nn.Module, data, images, name: str, *, model_name: str,
                   weights: str, prep, policy: InputPolicy, precision: Precision,
                   device: torch.device, batch_size: int, cache_dir: Path | None
                   ) -> tuple[DenseFeatures, bool]:
    """One split's `DenseFeatures` from the cache, or computed (and cached); and whether it
    was a cache hit."""
    key = feature_key(model=model_name, weights=weights, dataset_fingerprint=data.fingerprint(),
                      split=name, preprocessing=cache_preprocessing(
                          prep, policy, precision, data.num_classes, data.ignore_index))
    entry, hit = cached_features(
        key, cache_dir, lambda: encode_split(net, images, prep=prep, device=device,
                                             precision=precision, batch_size=batch_size),
        mmap=True)
    return DenseFeatures(entry), hit


class FeatureDecoder(nn.Module):
    """``forward(*features)`` = the network after its encoder (decoder and head), for training
    and scoring on cached features; holds ``net`` (and so its state) without copying it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *features):
        return decode_features(self.net, list(features))

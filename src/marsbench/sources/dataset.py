"""`MarsDataset`: a lazy sequence of canonical samples, whatever format it was read from."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog import DatasetCard, Variant
from .samples import Sample

SPLITS = ("train", "val", "test")


@dataclass
class MarsDataset(Sequence):
    """One split of one dataset. Items are decoded on access; nothing is held in RAM.

    ``entries`` are whatever the reader needs to load one sample (paths, row numbers);
    ``load`` turns one entry into a canonical sample. ``notes`` lists what the reader noticed
    about the data (e.g. a class count differing from the card).
    """

    card: DatasetCard
    split: str
    variant: Variant
    class_names: list[str]
    sample_ids: list[str]
    entries: list[Any]
    load: Callable[[Any], Sample]
    source: str
    location: str
    ignore_index: int | None = None
    fingerprint_parts: list[str] = field(default_factory=list)
    # What the split reads, listed lazily (only `fingerprint()` calls it): one text per file,
    # "<name relative to the dataset>\0<digest of its bytes>" (`content_hash.named_digests`).
    content: Callable[[], list[str]] | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    targets: list[Any] | None = None  # labels known without decoding images (for stratifying)
    arrow: Any = None  # the memory-mapped `datasets.Dataset` behind an HF split
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.load(self.entries[index])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """The identity of what this split reads: card name, split, variant, classes, sample
        ids, and the content (bytes) of every file it reads - images, masks, annotation files,
        CSVs, mapping.json, parquet shards - under names relative to the dataset folder, never
        its path. Computed on the first call (a stat per file where the content-hash memo knows
        them, see `marsbench.sources.content_hash`) and kept for the life of this object."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            parts = (self.card.name, self.split, str(self.variant),
                     f"classes={self.class_names!r}", f"ignore={self.ignore_index!r}",
                     f"ids={len(self.sample_ids)}", *self.sample_ids, *self.fingerprint_parts,
                     *(self.content() if self.content is not None else ()))
            for part in parts:  # length-prefixed: no two part lists hash alike
                data = part.encode()
                h.update(len(data).to_bytes(8, "little"))
                h.update(data)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        return (f"MarsDataset({self.card.name!r}, split={self.split!r}, variant='{self.variant}', "
                f"n={len(self)}, classes={self.num_classes}, source={self.source!r})")


def splits_fingerprint(splits: "dict[str, MarsDataset]") -> str:
    """The data fingerprint of a run: one hash over its train, val and test splits."""
    joined = "".join(splits[s].fingerprint() for s in SPLITS)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]

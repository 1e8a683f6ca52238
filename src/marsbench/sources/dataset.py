"""`MarsDataset`: a lazy sequence of canonical samples, whatever format it was read from."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..catalog import DatasetCard, Variant
from .samples import ClassificationSample, DetectionSample, Sample, SegmentationSample

SPLITS = ("train", "val", "test")


@dataclass
class MarsDataset(Sequence):
    """One split of one dataset. Items are decoded on access; nothing is held in RAM.

    ``entries`` are whatever the reader needs to load one sample (paths, row numbers);
    ``load`` turns one entry into a canonical sample. ``notes`` lists what the reader noticed
    about the data (e.g. a class count differing from the card).

    ``transform``: when set, ``ds[i]`` is ``transform(sample)`` (anything it returns); when
    None, ``ds[i]`` is the canonical sample (numpy arrays, see `marsbench.sources.samples`),
    which torch's default collate cannot batch: for a ``DataLoader`` use `as_torch` (tensors
    by `to_tensors`) or a transform of one's own. The transform is not part of the data's
    identity (`fingerprint`), and `plot` always shows the canonical sample.
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
    transform: Callable[[Sample], Any] | None = field(default=None, repr=False, compare=False)
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        sample = self.load(self.entries[index])
        if self.transform is not None:
            return self.transform(sample)
        if not _COLLATE_HINT_SET:
            _explain_default_collate()
        return sample

    def sample(self, index: int) -> Sample:
        """The canonical sample ``index``, whatever the transform."""
        return self.load(self.entries[index])

    def with_transform(self, transform: Callable[[Sample], Any] | None) -> MarsDataset:
        """A copy of this split whose items are ``transform(sample)`` (None: the samples)."""
        if transform is not None and not callable(transform):
            from ..errors import OptionError

            raise OptionError("transform must be callable", where="transform",
                              value=type(transform).__name__,
                              fix="pass a function taking the sample (or None)")
        return dataclasses.replace(self, transform=transform)

    def as_torch(self) -> MarsDataset:
        """A copy whose items are tensors (`to_tensors`) that a ``torch.utils.data.DataLoader``
        batches: classification ``(image, target)``, segmentation ``(image, mask)``,
        detection ``(image, {"boxes", "labels"})`` (pass ``collate_fn=collate_detection``)."""
        return self.with_transform(to_tensors)

    def plot(self, index: int, ax=None, *, alpha: float = 0.45):
        """Draw sample ``index`` with matplotlib and return the ``Figure``: the image titled
        with its class name(s) (a change pair: before and after side by side), its mask laid
        over it (segmentation; the ignore value left clear), or its boxes with class names
        (detection). ``ax``: an existing ``Axes`` to draw into (a pair then shows ``after``)."""
        return _plot(self, index, ax, alpha)

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


# -- tensors for torch (imported lazily: reading data needs no torch) ----------------------------

def image_tensor(image: np.ndarray):
    """A canonical ``(H, W, C)`` image as a ``float32`` ``(C, H, W)`` tensor: an integer image
    divided by its dtype's maximum (``uint8`` by 255), so in ``[0, 1]``; float images (e.g.
    MMLS's physical bands) keep their values."""
    import torch

    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W, C), got {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    else:
        array = array.astype(np.float32, copy=True)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def to_tensors(sample: Sample):
    """The ready transform for torch (``open_dataset(..., transform=to_tensors)`` or
    `MarsDataset.as_torch`): a canonical sample as tensors that ``DataLoader`` batches.

    - classification: ``(image, target)``; ``image`` ``float32`` ``(C, H, W)`` in ``[0, 1]``
      (a change pair: ``(2, C, H, W)``, before then after); ``target`` ``int64``: a scalar class
      index, or the multi-hot vector ``(K,)`` of a multi-label set;
    - segmentation: ``(image, mask)``; ``mask`` ``int64`` ``(H, W)`` (the ignore value kept);
    - detection: ``(image, {"boxes": float32 (N, 4) x_min y_min x_max y_max in pixels,
      "labels": int64 (N,) in 1..K})``; images and box counts vary, so batch with
      ``collate_fn=collate_detection``.

    Float images (e.g. MMLS's 7 physical bands) keep their values (see `image_tensor`).
    """
    import torch

    if isinstance(sample, ClassificationSample):
        images = [image_tensor(im) for im in sample.images]
        image = torch.stack(images) if sample.is_pair else images[0]
        return image, torch.tensor(np.asarray(sample.target), dtype=torch.int64)
    if isinstance(sample, SegmentationSample):
        return (image_tensor(sample.image),
                torch.tensor(np.asarray(sample.mask), dtype=torch.int64))
    if isinstance(sample, DetectionSample):
        # copies (torch.tensor): a decoded array may be read-only, and items must not share it
        boxes = torch.tensor(np.asarray(sample.boxes, dtype=np.float32).reshape(-1, 4))
        labels = torch.tensor(np.asarray(sample.labels), dtype=torch.int64).reshape(-1)
        return image_tensor(sample.image), {"boxes": boxes, "labels": labels}
    raise TypeError(f"to_tensors takes a marsbench sample (ClassificationSample, "
                    f"SegmentationSample or DetectionSample), got {type(sample).__name__}")


def collate_detection(batch):
    """``DataLoader`` ``collate_fn`` for detection items ``(image, target)``: a tuple of two
    lists, ``(images, targets)``, as torchvision detectors take them (no stacking: sizes and
    box counts differ)."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


# A batch of canonical samples given to torch's default collate fails; torch's own message
# names the type but not the fix. The first time a split hands out canonical samples while
# torch's data loading is loaded, these three types get a collate entry that says what to do.
# It changes nothing else: without it the same batches fail anyway.
_COLLATE_HINT_SET = False


def _explain_default_collate() -> None:
    global _COLLATE_HINT_SET
    collate = sys.modules.get("torch.utils.data._utils.collate")
    if collate is None:
        return  # torch's data loading is not in use (yet)
    _COLLATE_HINT_SET = True
    table = getattr(collate, "default_collate_fn_map", None)
    if isinstance(table, dict):
        for kind in (ClassificationSample, SegmentationSample, DetectionSample):
            table.setdefault(kind, _refuse_collate)


def _refuse_collate(batch, *, collate_fn_map=None):
    kind = type(batch[0]).__name__
    raise TypeError(
        f"torch's default collate cannot batch marsbench {kind} objects (numpy images of "
        "varying dtype and size); open the dataset with transform=marsbench.to_tensors (or use "
        "dataset.as_torch()), pass a transform of your own, or give the DataLoader a collate_fn "
        "(collate_fn=list keeps the samples)")


# -- plotting ---------------------------------------------------------------------------------

def _display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An image matplotlib shows as it is: RGB (the first 3 bands of a multi-band image) or
    grayscale; float images stretched to [0, 1]."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    elif array.ndim == 3 and array.shape[2] not in (3, 4):
        array = array[:, :, :3]
    if array.dtype != np.uint8:
        array = array.astype(np.float64)
        finite = np.isfinite(array)
        low, high = (array[finite].min(), array[finite].max()) if finite.any() else (0.0, 1.0)
        array = np.clip((np.where(finite, array, low) - low) / ((high - low) or 1.0), 0, 1)
    return array, ("gray" if array.ndim == 2 else None)


def _plot(ds: MarsDataset, index: int, ax, alpha: float):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    sample = ds.sample(index)
    names = ds.class_names
    if ax is None:
        pair = isinstance(sample, ClassificationSample) and sample.is_pair
        fig, axes = plt.subplots(1, 2 if pair else 1, figsize=(8 if pair else 4.5, 4.5),
                                 squeeze=False)
        axes = list(axes[0])
    else:
        fig, axes = ax.figure, [ax]
    head = f"{ds.card.name} {ds.split} #{index} ({sample.sample_id})"

    def name_of(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    if isinstance(sample, ClassificationSample):
        target = np.asarray(sample.target)
        label = (", ".join(name_of(int(i)) for i in np.flatnonzero(target)) or "(no label)"
                 if target.ndim else name_of(int(target)))
        shown = list(sample.images)[-len(axes):]
        for axis, image, part in zip(axes, shown, ("before", "after")[-len(shown):]
                                     if sample.is_pair else ("",)):
            array, cmap = _display(image)
            axis.imshow(array, cmap=cmap)
            axis.set_title(f"{part}: {label}" if part else label)
    elif isinstance(sample, SegmentationSample):
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        array, cmap = _display(sample.image)
        axes[0].imshow(array, cmap=cmap)
        mask = np.asarray(sample.mask)
        hidden = mask == ds.ignore_index if ds.ignore_index is not None else mask < 0
        if names and names[0].lower() in ("background", "bg", "none"):
            hidden = hidden | (mask == 0)  # the background stays clear
        count = max(len(names), int(mask[~hidden].max()) + 1 if (~hidden).any() else 1)
        tab20 = plt.get_cmap("tab20")  # the strong colours first, then their light twins
        colours = [tab20((2 * i) % 20 + (i // 10) % 2) for i in range(count)]
        axes[0].imshow(np.ma.masked_where(hidden, mask), cmap=ListedColormap(colours),
                       vmin=-0.5, vmax=count - 0.5, alpha=alpha, interpolation="nearest")
        present = sorted({int(v) for v in np.unique(mask[~hidden])})
        if present:
            axes[0].legend(handles=[Patch(color=colours[v], label=name_of(v)) for v in present],
                           loc="lower right", fontsize=7, framealpha=0.7)
        axes[0].set_title("mask: " + (", ".join(name_of(v) for v in present) or "background"))
    elif isinstance(sample, DetectionSample):
        array, cmap = _display(sample.image)
        axes[0].imshow(array, cmap=cmap)
        colours = plt.get_cmap("tab10")
        for (x0, y0, x1, y1), label in zip(np.asarray(sample.boxes), np.asarray(sample.labels)):
            colour = colours(int(label) % 10)
            axes[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5,
                                        edgecolor=colour))
            axes[0].text(x0, y0, name_of(int(label) - 1), color="white", fontsize=7,
                         va="bottom", bbox=dict(facecolor=colour, alpha=0.7, pad=1, lw=0))
        axes[0].set_title(f"{len(sample.boxes)} boxes" if len(sample.boxes) else
                          "no boxes (negative image)")
    for axis in axes:
        axis.set_axis_off()
    if ax is None:
        fig.suptitle(head, fontsize=9)
        fig.tight_layout()
    return fig


def splits_fingerprint(splits: "dict[str, MarsDataset]") -> str:
    """The data fingerprint of a run: one hash over its train, val and test splits."""
    joined = "".join(splits[s].fingerprint() for s in SPLITS)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]

"""Synthetic twins of the 20 Mars-Bench datasets, in their exact public formats.

``generate(card, out_dir, fmt)`` writes a small SYNTHETIC dataset that mirrors a card (task, class
names, bands, splits, variants) into ``out_dir/<card.name>/``; ``generate_suite`` does it for all
20 (or some). The images are procedurally drawn, Mars-like and labelled for real: every class has
a motif a model can learn (craters with bright rims and shadowed bowls, pitted cones, boulders
with cast shadows, dust devils with shadows and tracks, bright frost patches, hazy dust, dune
stripes, slope streaks, spiders, swiss-cheese pits, landslide lobes, a new dark spot in a change
pair; classes without a known meaning get a distinct pattern derived from their index). Nothing
is real Mars data, and every layout says so (``SYNTHETIC.md``, the HF ``README.md``, ``synth_``
file names, the COCO ``info`` and the VOC ``source``).

Folder layout (``fmt="folder"``, the Zenodo zips)
    classification: ``annotation.csv`` (file_id, feature_name, label, split), ``mapping.json``
    (``"0": name``), ``data/<split>/<feature_name>/<file_id>``, ``few_shot/<k>_shot.csv``,
    ``partitions/<p:.2f>x_partition.csv`` (train rows change, val/test rows stay).
    Multi-label: ``data/<split>/<file_id>``, ``label`` as text ``"[0, 4, 17]"``, ``feature_name``
    the names as text. Change pairs: ``file_id`` is ``before/<stem>.png``, so the pair is
    ``data/<split>/<feature_name>/before/<stem>.png`` and ``.../after/<stem>.png``.
    segmentation: ``data/<split>/images/<stem>.<ext>``, ``data/<split>/masks/<stem>.png``
    (single-channel class indices), ``partitions/<p>x_partition.csv`` (file_id, split) and
    ``mapping.json``. MMLS: ``Image<id>.tif`` (7 float32 bands: optical R, G, B, elevation, slope,
    hillshade, roughness) and ``Mask<id>.tif`` (uint8).
    detection: ``data/<split>/images/``, ``labels/<stem>.txt`` (YOLO, 0-based class, full float
    precision), ``coco_annotations.json`` (category ids 1..K, ``bbox`` [x, y, w, h]) and
    ``pascal_voc/<stem>.xml``; box corners are integer pixels, so the three formats agree box for
    box. Every split ends with a negative image (no boxes), and every fifth image is one too.
    ``mapping.json`` keys are the YOLO ids.

Hugging Face layout (``fmt="hf"``, what ``DatasetDict.push_to_hub`` writes)
    ``data/<split>-00000-of-00001.parquet`` for ``train``, ``val``, ``test``,
    ``few_shot_train_<k>_shot`` and ``partition_train_<p:.2f>x_partition``; ``mapping.json`` and
    (classification) ``annotation.csv`` at the root; a ``README.md`` card without a ``configs``
    block. Features: single-label ``image`` + ``label`` (ClassLabel); change pairs
    ``image_before`` + ``image_after`` + ``label`` (our choice; the public copy is not documented);
    multi-label ``image`` + ``labels`` (multi-hot int8, length K) + ``feature_names``;
    segmentation ``image``, ``mask`` (class-index PNG), ``width``, ``height``, ``class_labels``
    (names present in the image; MMLS ``image`` is an Array3D float32 ``(H, W, 7)``); detection
    ``image``, ``image_id``, ``width``, ``height``, ``yolo_annotation`` {bbox, category = class
    names}, ``coco_annotation`` {image_id, annotations}, ``pascal_voc_annotation`` {filename,
    size, objects}.

Classes
    The card's ``class_names``; else its ``known_class_names`` with ``synthetic_class_<i>`` for
    the rest (never an invented real-looking name). Binary sets with unknown order (frost, dust,
    change) show the feature in class 1. mb-s5mars mirrors the card's 10 classes (the public HF
    copy has 9 ids).

Sizes (``scale=1``; the whole suite in both formats takes seconds)
    images: classification ``image_size / 4`` rounded to 8 and clipped to 32-64 px;
    segmentation 64 px (MMLS 32 px); detection 96 px (128 px for the ~750 px dust devils).
    counts: single-label classification 5 / 2 / 2 images per class for train / val / test
    (at most 120 / 40 / 40 per split over all classes, so 36-class surface_cls gets 3 / 1 / 1);
    multi-label 40 / 25 / 25 images (every label in every split); segmentation and detection
    8 / 3 / 3. Counts never exceed the real split sizes (mb-boulder_* stays tiny).
    ``scale`` multiplies every count (not the image size); at least 2 train and 1 val / test
    image (per class where stratified), at most the real split size.
    Few-shot: the card's ``k`` that fit the synthetic train split (k images per class; for
    multi-label k per label, so a set has at most ``k * K`` images). Partitions: every card
    fraction, stratified (``max(1, round(p * n_c))`` per class; otherwise ``max(1, round(p * n))``
    images, covering missing classes first).

Determinism: the same card, seed and scale give byte-identical files.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from marsbench.catalog import CARDS, DatasetCard, get_card

from .records import SyntheticDataset, build

__all__ = ["SyntheticDataset", "build", "generate", "generate_suite"]

Format = Literal["folder", "hf"]


def _is_synthetic(folder: Path) -> bool:
    readme = folder / "README.md"
    return (folder / "SYNTHETIC.md").exists() or (
        readme.exists() and "SYNTHETIC" in readme.read_text(errors="ignore")[:400])


def generate(card: DatasetCard | str, out_dir: Path | str, fmt: Format = "folder", *,
             seed: int = 0, scale: float | None = None) -> Path:
    """Write the synthetic twin of ``card`` into ``out_dir/<card.name>/`` and return that folder.

    An earlier synthetic folder at that path is replaced; any other existing, non-empty folder
    is refused, so real data is never overwritten. The folder appears complete or not at all.
    """
    card = get_card(card) if isinstance(card, str) else card
    if fmt not in ("folder", "hf"):
        raise ValueError(f"unknown synthetic format {fmt!r} for {card.name}: use 'folder' or 'hf'")
    scale = 1.0 if scale is None else float(scale)
    if not scale > 0:
        raise ValueError(f"scale must be > 0 for {card.name}, got {scale}")
    target = Path(out_dir) / card.name
    if target.exists() and any(target.iterdir()) and not _is_synthetic(target):
        raise FileExistsError(
            f"{target} exists and is not a synthetic dataset; refusing to overwrite it. "
            "Choose another --out directory or remove it yourself.")
    dataset = build(card, seed=seed, scale=scale)
    target.parent.mkdir(parents=True, exist_ok=True)
    # unique per process and thread: concurrent generators never write into one staging folder
    staging = Path(tempfile.mkdtemp(prefix=f".{card.name}.synth-", dir=target.parent))
    try:
        if fmt == "folder":
            from .folder import write_folder

            write_folder(dataset, staging)
        else:
            from .hf import write_hf  # imports `datasets`, which is slow to import

            write_hf(dataset, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def generate_suite(out_dir: Path | str, fmt: Format = "folder", names: Iterable[str] | None = None,
                   seed: int = 0, scale: float | None = None) -> list[Path]:
    """:func:`generate` for all 20 Mars-Bench cards, or for ``names`` in the order given."""
    cards = CARDS if names is None else [get_card(n) for n in names]
    return [generate(c, out_dir, fmt, seed=seed, scale=scale) for c in cards]

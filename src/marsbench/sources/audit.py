"""Split audit: observation groups decoded from product ids in file names, and duplicates.

A benchmark split leaks when a test image shares an *observation* with a train image (two tiles
cut from one HiRISE image, two frames of one Mastcam sequence) or is a (near-)copy of one. This
module decodes the observation from the product id in each file name (`observation_id`), hashes
every image twice - the exact content hash of `marsbench.sources.content_hash` and a 64-bit
difference hash (`dhash`) - and `audit_dataset` reports, per split, how many images share an
observation with, exactly duplicate, or nearly duplicate an image of an earlier split (train for
val and test; val for test too).

Naming conventions decoded (sources in docs/audit.md):

* **HiRISE** ``PPP_OOOOOO_TTTT`` (``ESP_012810_0925_RED-0071.jpg``): mission phase, MRO orbit,
  target code. The target code (0000-3595) is ten times the angle along the orbit from the
  night-side (descending) equator to the observation's centre: 0000 night-side equator, 0900
  south pole, 1800 day-side equator, 2700 north pole (``1720`` is 8 S). 9000-9303 are
  off-planet targets (no latitude). The observation id ``PPP_OOOOOO_TTTT`` is the group.
* **CTX** ``PNN_OOOOOO_TTTT_XI_DDHLLLW`` (``P01_001472_1747_XI_05S146W``): phase + sub-phase,
  orbit, the same target code as HiRISE (``1747`` -> 5.3 S, and the name's own ``05S``), the
  mode, and the rounded centre latitude / west longitude. The product id up to the target code
  is the group; the latitude is decoded from the target code, the longitude from the name.
* **THEMIS** ``XOOOOOIII`` (``I00816001``, ``V00816002``): image type (I infrared, V visible,
  R/S calibration), 5-digit Odyssey orbit, 3-digit image number. The image id is the group.
* **MSL MMM** (Mastcam, MAHLI, MARDI) ``SSSSIIQQQQQQCCC...`` (``0840MR0036940000500819C00``):
  sol, instrument (ML/MR Mastcam left/right, MH MAHLI, MD MARDI), 6-digit sequence id, command
  number. The group is sol + sequence (both Mastcam eyes of one sequence are one group).
* **MSL OPGS** (Navcam, Hazcams) ``IIcs<sclk:9><prod:3><geom><samp><site:3><drive:4><seq:9>``
  (``NLB_504391382EDR_F0520004NCAM07753M1``): the rover's site and drive (its position index)
  and the sequence id. The group is site + drive + sequence; site/drive are the location.

Anything else has no id (`observation_id` returns None) and is counted as such.

The perceptual hash is hand-written (Pillow + numpy, no new dependency): the image in grayscale,
resized to 9x8 (bilinear), one bit per horizontally adjacent pair (left brighter than right), as
the "dHash" of N. Krawetz and the ``imagehash`` package. Two images are near-duplicates when the
Hamming distance of their hashes is at most ``threshold`` (default 5 of 64 bits).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Observation", "observation_id", "target_code_latitude", "dhash", "hamming",
           "AuditImage", "audit_dataset", "summary_rows", "DEFAULT_THRESHOLD"]

DEFAULT_THRESHOLD = 5
EXAMPLES = 5  # example pairs/groups kept per comparison in the plain summary

# -- product ids ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What a file name's product id says: the instrument, the observation group id, and where
    the id gives one, a location (latitude in degrees north, longitude in degrees east, or a
    rover site/drive) and the orbit or sol."""

    instrument: str
    observation_id: str
    latitude: float | None = None
    longitude: float | None = None
    orbit: int | None = None
    sol: int | None = None
    site: int | None = None
    drive: int | None = None
    camera: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def target_code_latitude(code: int) -> float | None:
    """Latitude (degrees, north positive) of a HiRISE/CTX target code, None if off-planet.

    The code is 10x the angle along the orbit from the night-side equator: 0 -> 0, 900 -> -90
    (south pole), 1800 -> 0 (day-side equator), 2700 -> +90 (north pole), 3595 -> 0.5."""
    if not 0 <= code <= 3595:
        return None  # 9000-9303: Phobos, Deimos, stars; anything else is not a target code
    angle = code / 10.0
    if angle <= 90:
        lat = -angle
    elif angle <= 270:
        lat = angle - 180.0
    else:
        lat = 360.0 - angle
    return round(lat, 1) + 0.0  # no -0.0


_HIRISE = re.compile(r"(?<![A-Za-z0-9])([A-Z]{3})_(\d{6})_(\d{4})(?!\d)")
_CTX = re.compile(r"(?<![A-Za-z0-9])([A-Z]\d{2})_(\d{6})_(\d{4})"
                  r"(?:_(X[A-Z])_(\d{2})([NS])(\d{3})([EW]))?(?![0-9])")
_THEMIS = re.compile(r"(?<![A-Za-z0-9])([IVRS])(\d{5})(\d{3})(?![0-9])")
_MSL_MMM = re.compile(r"^(\d{4})(ML|MR|MH|MD)(\d{6})(\d{3})(\d{2})(\d{5})([A-Z])")
_MSL_OPGS = re.compile(r"^([FNR][LRS])([AB])_(\d{9})([A-Z]{3})(.)(.)(\d{3})(\d{4})"
                       r"([A-Z]{4}\d{5})")
_MMM_CAMERAS = {"ML": "Mastcam", "MR": "Mastcam", "MH": "MAHLI", "MD": "MARDI"}
_OPGS_CAMERAS = {"N": "Navcam", "F": "Front Hazcam", "R": "Rear Hazcam"}
# HiRISE mission phases (the SIS's list and the extended-mission ESP): guards against any
# three capitals followed by six and four digits being read as a HiRISE id
_HIRISE_PHASES = {"INT", "CAL", "ATL", "KSC", "SVT", "LAU", "CRU", "APR", "AEB", "TRA", "PSP",
                  "REL", "ESP"}


def observation_id(file_name: str | Path) -> Observation | None:
    """The observation a file belongs to, decoded from the product id in its name, or None.

    Only the base name is read (``data/train/crater/ESP_..._RED-0071.jpg`` works)."""
    name = Path(str(file_name)).name
    m = _MSL_MMM.match(name)
    if m:
        sol, inst, seq = m.group(1), m.group(2), m.group(3)
        return Observation(f"MSL {_MMM_CAMERAS[inst]}", f"MSL_sol{sol}_seq{seq}", sol=int(sol),
                           camera=inst)
    m = _MSL_OPGS.match(name)
    if m:
        inst, site, drive, seq = m.group(1), m.group(7), m.group(8), m.group(9)
        return Observation(f"MSL {_OPGS_CAMERAS[inst[0]]}",
                           f"MSL_site{site}_drive{drive}_{seq}", site=int(site),
                           drive=int(drive), camera=inst)
    m = _HIRISE.search(name)
    if m and m.group(1) in _HIRISE_PHASES:
        phase, orbit, code = m.groups()
        return Observation("HiRISE", f"{phase}_{orbit}_{code}",
                           latitude=target_code_latitude(int(code)), orbit=int(orbit))
    m = _CTX.search(name)
    if m:
        phase, orbit, code = m.group(1), m.group(2), m.group(3)
        lon = None
        if m.group(8):
            degrees = int(m.group(7))
            lon = float(-degrees if m.group(8) == "W" else degrees)
            if lon < -180:  # east longitude in (-180, 180]
                lon += 360
        return Observation("CTX", f"{phase}_{orbit}_{code}",
                           latitude=target_code_latitude(int(code)), longitude=lon,
                           orbit=int(orbit))
    m = _THEMIS.search(name)
    if m:
        kind, orbit, number = m.groups()
        return Observation(f"THEMIS {'IR' if kind == 'I' else 'VIS' if kind == 'V' else kind}",
                           f"{kind}{orbit}{number}", orbit=int(orbit))
    return None


# -- perceptual hash -----------------------------------------------------------------------------


def _dhash_array(gray: np.ndarray) -> int:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(gray)).resize((9, 8), Image.Resampling.BILINEAR)
    px = np.asarray(img, dtype=np.int16)
    bits = (px[:, :-1] > px[:, 1:]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def dhash(image: str | Path | np.ndarray) -> int:
    """64-bit difference hash of an image file or array (see the module docstring)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3:
            arr = arr[..., :3].astype(np.float32).mean(axis=-1) if arr.shape[-1] > 1 \
                else arr[..., 0]
        if arr.dtype != np.uint8:
            arr = arr.astype(np.float64)
            lo, hi = float(arr.min()), float(arr.max())
            arr = ((arr - lo) / (hi - lo) * 255 if hi > lo else arr * 0).astype(np.uint8)
        return _dhash_array(arr)
    with Image.open(image) as im:
        im.draft("L", (64, 64))  # JPEG: decode at a reduced scale, much faster
        return _dhash_array(np.asarray(im.convert("L")))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# -- the audit -----------------------------------------------------------------------------------


@dataclass
class AuditImage:
    split: str
    name: str  # the sample id (file name)
    path: str | None  # relative to the dataset folder, None for hub/parquet data
    digest: str
    dhash: int
    observation: Observation | None


@dataclass
class _SplitImages:
    images: list[AuditImage] = field(default_factory=list)


def _image_paths(ds) -> list[tuple[str, Path | None]]:
    """(sample id, image path) per sample of a folder-layout split; path None for HF data."""
    out = []
    for sid, entry in zip(ds.sample_ids, ds.entries):
        path = None
        if ds.source == "folder":
            if isinstance(entry, Path):  # detection
                path = entry
            elif isinstance(entry, tuple) and len(entry) >= 2:
                second = entry[1]
                path = second[0] if isinstance(second, tuple) else second  # pair: "before"
        out.append((sid, path))
    return out


def collect(name_or_path: str | Path, *, root: str | Path | None = None,
            source: str = "auto") -> tuple[dict[str, list[AuditImage]], dict[str, Any]]:
    """Every image of every present split, hashed and decoded; and where it was read from."""
    from .content_hash import file_digests
    from .dataset import SPLITS
    from .errors import DataError
    from .open import open_dataset, resolve

    card, src, location = resolve(name_or_path, root=root, source=source)
    splits: dict[str, list[AuditImage]] = {}
    missing: list[str] = []
    for split in SPLITS:
        try:
            ds = open_dataset(name_or_path, split, root=root, source=source)
        except DataError as exc:
            missing.append(f"{split}: {exc}")
            continue
        pairs = _image_paths(ds)
        images: list[AuditImage] = []
        if all(p is not None for _, p in pairs):
            digests = file_digests([p for _, p in pairs])
            base = Path(location)
            hashes: dict[str, int] = {}
            for (sid, path), digest in zip(pairs, digests):
                if digest not in hashes:
                    hashes[digest] = dhash(path)
                try:
                    rel = Path(path).relative_to(base).as_posix()
                except ValueError:
                    rel = str(path)
                images.append(AuditImage(split, sid, rel, digest, hashes[digest],
                                         observation_id(sid) or observation_id(path)))
        else:  # hub/parquet: the decoded pixels are what is hashed ("exact" = pixel-exact)
            for i, sid in enumerate(ds.sample_ids):
                sample = ds.sample(i)
                image = sample.images[0] if hasattr(sample, "images") else sample.image
                arr = np.ascontiguousarray(image)
                digest = hashlib.blake2b(arr.tobytes() + str(arr.shape).encode(),
                                         digest_size=16).hexdigest()
                images.append(AuditImage(split, sid, None, digest, dhash(arr),
                                         observation_id(sid)))
        splits[split] = images
    if not splits:
        raise DataError("no split could be read", dataset=card.name,
                        value="; ".join(missing), fix="run `marsbench datasets check` on it")
    return splits, {"dataset": card.name, "source": src, "location": location,
                    "pixel_exact": src != "folder", "unread_splits": missing}


def _near_pairs(a: list[AuditImage], b: list[AuditImage] | None, threshold: int
                ) -> list[tuple[int, int, int]]:
    """(i, j, distance) with distance <= threshold; b None: pairs i < j within a."""
    ha = np.array([im.dhash for im in a], dtype=np.uint64)
    hb = ha if b is None else np.array([im.dhash for im in b], dtype=np.uint64)
    out: list[tuple[int, int, int]] = []
    if not len(ha) or not len(hb):
        return out
    chunk = max(1, 2_000_000 // len(hb))
    for start in range(0, len(ha), chunk):
        block = ha[start:start + chunk]
        dist = np.bitwise_count(block[:, None] ^ hb[None, :])
        ii, jj = np.nonzero(dist <= threshold)
        for i, j in zip(ii.tolist(), jj.tolist()):
            i += start
            if b is None and j <= i:
                continue
            out.append((i, j, int(dist[i - start, j])))
    return out


def _pair(x: AuditImage, y: AuditImage, distance: int | None = None) -> dict[str, Any]:
    d = {"a": x.path or x.name, "b": y.path or y.name}
    if distance is not None:
        d["distance"] = distance
    return d


def audit_dataset(name_or_path: str | Path, *, root: str | Path | None = None,
                  source: str = "auto", threshold: int = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The audit of all splits as a JSON-ready dict (see docs/audit.md for its keys)."""
    from ..errors import OptionError

    if not 0 <= threshold <= 64:
        raise OptionError("the near-duplicate threshold must be 0..64 bits", option="threshold",
                          where="threshold", value=threshold, fix="use e.g. 5 (the default)")
    splits, where = collect(name_or_path, root=root, source=source)
    report: dict[str, Any] = {**where, "threshold": threshold, "hash": "dhash-64 (9x8 bilinear)",
                              "splits": {}, "groups": {}, "comparisons": {}, "leakage": {}}

    # per split: ids, groups, latitudes, within-split duplicates
    group_info: dict[str, dict[str, Any]] = {}
    group_splits: dict[str, Counter] = defaultdict(Counter)
    for split, images in splits.items():
        obs = [im.observation for im in images if im.observation is not None]
        lats = [o.latitude for o in obs if o.latitude is not None]
        for im in images:
            o = im.observation
            if o is not None:
                group_splits[o.observation_id][split] += 1
                info = o.to_dict()
                info.pop("camera", None)
                group_info.setdefault(o.observation_id, info)
        by_digest: dict[str, list[AuditImage]] = defaultdict(list)
        for im in images:
            by_digest[im.digest].append(im)
        exact = [_pair(g[0], other) for g in by_digest.values() if len(g) > 1 for other in g[1:]]
        near = [_pair(images[i], images[j], d) for i, j, d in _near_pairs(images, None, threshold)
                if images[i].digest != images[j].digest]
        report["splits"][split] = {
            "images": len(images), "no_id": len(images) - len(obs),
            "instruments": dict(Counter(o.instrument for o in obs)),
            "groups": len({o.observation_id for o in obs}),
            "latitude_range": [min(lats), max(lats)] if lats else None,
            "exact_duplicates": exact, "near_duplicates": near}
    report["groups"] = {gid: {**group_info[gid], "splits": dict(group_splits[gid])}
                        for gid in sorted(group_info)}

    # across splits: each later split against each earlier one
    order = list(splits)
    for k, later in enumerate(order):
        flagged: dict[str, set[str]] = {"shared_observation": set(), "exact_duplicate": set(),
                                        "near_duplicate": set()}
        for earlier in order[:k]:
            a, b = splits[earlier], splits[later]
            groups_a = {im.observation.observation_id for im in a if im.observation}
            shared = sorted({im.observation.observation_id for im in b if im.observation}
                            & groups_a)
            shared_images = [im for im in b if im.observation
                             and im.observation.observation_id in groups_a]
            digests_a: dict[str, AuditImage] = {}
            for im in a:
                digests_a.setdefault(im.digest, im)
            exact = [_pair(digests_a[im.digest], im) for im in b if im.digest in digests_a]
            near_raw = [(i, j, d) for i, j, d in _near_pairs(a, b, threshold)
                        if a[i].digest != b[j].digest]
            near = [_pair(a[i], b[j], d) for i, j, d in near_raw]
            report["comparisons"][f"{earlier}-{later}"] = {
                "shared_groups": shared,
                f"{later}_images_in_shared_groups": len(shared_images),
                "exact_duplicates": exact, "near_duplicates": near}
            if earlier == "train":  # the headline: what a model trained on train has seen
                flagged["shared_observation"].update(id(im) for im in shared_images)
                flagged["exact_duplicate"].update(id(im) for im in b if im.digest in digests_a)
                flagged["near_duplicate"].update(id(b[j]) for _, j, _ in near_raw)
        if later == "train" or "train" not in splits:
            continue
        any_flag = set().union(*flagged.values())
        report["leakage"][later] = {
            "against": "train", "images": len(splits[later]),
            **{key: len(v) for key, v in flagged.items()}, "any": len(any_flag)}
    return report


def summary_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The plain summary: one row per split (header, rows)."""
    header = ["split", "images", "no_id", "groups", "latitude", "shared_observation",
              "exact_duplicate", "near_duplicate", "any", "exact_within", "near_within"]
    rows = []
    for split, s in report["splits"].items():
        lat = s["latitude_range"]
        leak = report["leakage"].get(split)
        rows.append([split, s["images"], s["no_id"], s["groups"],
                     f"{lat[0]:g}..{lat[1]:g}" if lat else "-",
                     *( [leak[k] for k in ("shared_observation", "exact_duplicate",
                                           "near_duplicate", "any")] if leak else ["-"] * 4),
                     len(s["exact_duplicates"]), len(s["near_duplicates"])])
    return header, rows

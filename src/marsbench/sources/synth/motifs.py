"""Class -> motif rules: what each synthetic class looks like, so labels are visible in pixels.

Named classes get a motif that imitates the real feature (craters, dunes, slope streaks, spiders,
frost, dust haze, ...); classes without a known meaning get a distinct procedural pattern derived
from the class index (pattern kind, orientation, frequency, brightness, and a hue for colour
sets). Binary sets with unknown index order use class 1 for "feature present" (frost, dust,
change) and class 0 for its absence.

Public entry points return ``uint8`` arrays ``(H, W, C)`` (MMLS: ``float32``, 7 bands).
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from marsbench.catalog import DatasetCard

from . import draw

Motif = Callable[[np.ndarray, np.random.Generator], np.ndarray]


# ---- orbital classification motifs (gray canvas in, gray canvas out) -------------------------
def _plain(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    for _ in range(rng.integers(0, 3)):
        draw.crater(img, *rng.uniform(0, s, 2), rng.uniform(1.5, s / 14), depth=0.12, rim=0.1)
    return img


def _crater(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    r = rng.uniform(0.22, 0.34) * s
    draw.crater(img, *rng.uniform(0.4 * s, 0.6 * s, 2), r)
    return img


def _dunes(bright: bool) -> Motif:
    def motif(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = img.shape[0]
        wave = draw.stripes(s, s, rng.uniform(0, np.pi), rng.uniform(s / 7, s / 4),
                            rng.uniform(0, 1), curvature=rng.uniform(0, 1.5), sharp=True)
        base = 0.68 if bright else 0.2
        return (base + 0.12 * wave + 0.3 * (img - 0.5)).astype(np.float32)
    return motif


def _slope_streaks(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    for _ in range(rng.integers(2, 6)):
        streak = draw.wedge(s, s, rng.uniform(0, 0.2 * s), rng.uniform(0.1 * s, 0.9 * s),
                            np.pi / 2 + rng.uniform(-0.3, 0.3), rng.uniform(0.5, 0.8) * s,
                            rng.uniform(0.08, 0.16) * s)
        img[streak] *= 0.5
    return img


def _ejecta(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    cy, cx = rng.uniform(0.4 * s, 0.6 * s, 2)
    r = rng.uniform(0.07, 0.11) * s
    dy, dx, d = draw.polar(s, s, cy, cx, r)
    theta = np.arctan2(dy, dx) + rng.uniform(0, 2 * np.pi)
    rays = (np.cos(rng.integers(5, 9) * theta) > 0.55) & (d > 1.2) & (d < 4.5)
    img += np.where(rays, 0.3 * (1 - d / 4.5), 0).astype(np.float32)
    img += np.where((d > 1) & (d < 2.2), 0.15, 0).astype(np.float32)  # continuous blanket
    draw.crater(img, cy, cx, r, depth=0.35)
    return img


def _swiss_cheese(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    img = (0.68 + 0.2 * (img - 0.5)).astype(np.float32)
    draw.flat_pits(img, rng, int(rng.integers(4, 9)), 0.07 * s, 0.2 * s)
    return img


def _spider(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    draw.radial_troughs(img, *rng.uniform(0.4 * s, 0.6 * s, 2), rng.uniform(0.35, 0.48) * s,
                        int(rng.integers(4, 8)), rng)
    return img


def _frost(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    draw.frost_patches(img, rng, rng.uniform(0.3, 0.6))
    return img


def _dust(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return draw.haze(_plain(img, rng), rng.uniform(0.6, 0.85), img.shape[0] / rng.uniform(14, 24))


def _ripples(curved: bool) -> Motif:
    def motif(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = img.shape[0]
        wave = draw.stripes(s, s, rng.uniform(0, np.pi), rng.uniform(s / 12, s / 7),
                            rng.uniform(0, 1), curvature=rng.uniform(2, 4) if curved else 0.0)
        return (img + 0.16 * wave).astype(np.float32)
    return motif


def _rough(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    return (img + 0.45 * (draw.value_noise(rng, s, s, cells=s // 4, octaves=1) - 0.5)).astype(
        np.float32)


def _textured(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    return (img + 0.4 * (draw.value_noise(rng, s, s, cells=6, octaves=2) - 0.5)).astype(
        np.float32)


def _smooth(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (0.5 + 0.25 * (ndimage.gaussian_filter(img, 1.5) - 0.5)).astype(np.float32)


def _cliff(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    yy, xx = draw.grid(s, s)
    a = rng.uniform(0, 2 * np.pi)
    jag = 0.08 * s * (draw.value_noise(rng, s, s, cells=5, octaves=2) - 0.5)
    u = (xx - s / 2) * np.cos(a) + (yy - s / 2) * np.sin(a) + jag
    img[u > 0] = img[u > 0] * 0.55
    img[np.abs(u) < 1.5] = 0.9  # bright lit scarp lip
    return img


def _landslide(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    lobe = draw.ellipse(s, s, *rng.uniform(0.4 * s, 0.6 * s, 2), rng.uniform(0.35, 0.45) * s,
                        rng.uniform(0.18, 0.25) * s, rng.uniform(0, np.pi),
                        draw.value_noise(rng, s, s, cells=4, octaves=2))
    streaks = draw.stripes(s, s, rng.uniform(0, np.pi), s / 9)
    img[lobe] = (0.62 + 0.12 * streaks + 0.2 * (img - 0.5))[lobe]
    return img


def _ridge(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    t = np.linspace(-0.1, 1.1, 16, dtype=np.float32) * s
    y = s / 2 + rng.uniform(-0.15, 0.15) * s + 0.1 * s * np.sin(t / s * rng.uniform(3, 7))
    img[draw.polyline(s, s, y + 1.5, t, 0.05 * s)] *= 0.45  # shadowed side
    img[draw.polyline(s, s, y - 1.5, t, 0.05 * s)] = 0.88  # lit crest
    return img if rng.random() < 0.5 else img.T.copy()


def _mounds(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    for _ in range(rng.integers(3, 7)):
        draw.boulder(img, *rng.uniform(0.1 * s, 0.9 * s, 2), rng.uniform(0.06, 0.12) * s)
    return img


def _channel(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    t = np.linspace(-0.1, 1.1, 24, dtype=np.float32) * s
    y = s / 2 + 0.2 * s * np.sin(t / s * rng.uniform(4, 8) + rng.uniform(0, 6))
    img[draw.polyline(s, s, y, t, rng.uniform(0.05, 0.09) * s)] *= 0.4
    return img if rng.random() < 0.5 else img.T.copy()


def _gullies(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    apex_x = rng.uniform(0.3, 0.7) * s
    img[draw.ellipse(s, s, 0.9 * s, apex_x, 0.15 * s, 0.3 * s, 0.0)] += 0.2  # debris apron
    for x0 in np.linspace(0.15, 0.85, int(rng.integers(3, 6))) * s:
        ys = np.linspace(0, 0.8 * s, 8, dtype=np.float32)
        xs = x0 + (apex_x - x0) * ys / (0.8 * s) + rng.normal(0, 0.01 * s, 8)
        img[draw.polyline(s, s, ys, xs, 0.025 * s)] *= 0.45
    return img


def _crater_field(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    for _ in range(rng.integers(6, 13)):
        draw.crater(img, *rng.uniform(0, s, 2), rng.uniform(0.04, 0.08) * s)
    return img


def _mixed(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    other = _rough(img.copy(), rng)
    half = draw.grid(s, s)[1] + np.zeros((s, 1), np.float32) < s * rng.uniform(0.35, 0.65)
    smooth = _smooth(img, rng)
    return np.where(half, other, smooth).astype(np.float32)


MOTIFS: dict[str, Motif] = {
    # mb-landmark_cls
    "other": _plain, "crater": _crater, "dark dune": _dunes(False),
    "slope streak": _slope_streaks, "bright dune": _dunes(True), "impact ejecta": _ejecta,
    "swiss cheese": _swiss_cheese, "spider": _spider,
    # mb-domars16k codes
    "ael": _ripples(False), "aec": _ripples(True), "rou": _rough, "cli": _cliff,
    "tex": _textured, "smo": _smooth, "fss": _landslide, "rid": _ridge, "fse": _slope_streaks,
    "sfe": _mounds, "fsf": _channel, "fsg": _gullies, "sfx": _crater_field, "cra": _crater,
    "mix": _mixed,
}
# Binary sets whose index order is unknown: class 1 shows the feature, class 0 does not.
BINARY_FEATURE: dict[str, Motif] = {
    "mb-frost_cls": _frost,
    "mb-atmospheric_dust_cls_edr": _dust,
    "mb-atmospheric_dust_cls_rdr": _dust,
}


# ---- patterns for classes without a known meaning ----------------------------------------
def index_pattern(index: int, s: int, rng: np.random.Generator) -> np.ndarray:
    """A distinct pattern in ``[-1, 1]`` for class ``index``: 8 kinds x orientation/frequency."""
    kind, variant = index % 8, index // 8
    angle = variant * np.pi / 5 + kind * np.pi / 8 + rng.uniform(-0.1, 0.1)
    period = s / (3 + 2 * variant)
    phase = rng.uniform(0, 1)
    a = draw.stripes(s, s, angle, period, phase)
    b = draw.stripes(s, s, angle + np.pi / 2, period, phase)
    if kind == 0:
        out = a
    elif kind == 1:
        out = np.sign(a * b)
    elif kind == 2:
        out = np.where((a > 0.6) & (b > 0.6), 1.0, -1.0)
    elif kind == 3:
        _, _, d = draw.polar(s, s, *rng.uniform(0.3 * s, 0.7 * s, 2), 1.0)
        out = np.cos(2 * np.pi * d / period)
    elif kind == 4:
        _, _, d = draw.polar(s, s, *rng.uniform(0.35 * s, 0.65 * s, 2), (0.2 + 0.05 * variant) * s)
        out = np.where(d < 1, 1.0, -1.0) * (1 if variant % 2 == 0 else -1)
    elif kind == 5:
        out = np.where((np.abs(a) > 0.97) | (np.abs(b) > 0.97), 1.0, -1.0)
    elif kind == 6:
        out = draw.stripes(s, s, angle, period, phase, sharp=True)
    else:
        out = np.where(np.maximum(a, b) > 0.8, -1.0, 1.0)
    return out.astype(np.float32)


def index_tint(index: int, num_classes: int) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb((index / max(num_classes, 1)) % 1.0, 0.65, 0.95)


# ---- classification ------------------------------------------------------------------------
def _to_channels(img: np.ndarray, bands: int, tint=None) -> np.ndarray:
    if bands == 1:
        return draw.to_uint8(img)[..., None]
    return draw.to_uint8(draw.colourise(img, tint))


def _base(rng: np.random.Generator, s: int) -> np.ndarray:
    return draw.terrain(rng, s, s, mean=rng.uniform(0.4, 0.58), contrast=rng.uniform(0.1, 0.2))


def classification_images(card: DatasetCard, class_names: list[str], label: int | tuple[int, ...],
                          rng: np.random.Generator, size: int) -> tuple[np.ndarray, ...]:
    """One image (two, ``(before, after)``, for change pairs) showing ``label``."""
    s = size
    img = _base(rng, s)
    if card.image_pair:
        before = _plain(img, rng)
        after = before + rng.normal(0, 0.02, before.shape).astype(np.float32)
        if label == 1:  # change: a new dark spot (fresh impact or dark slope feature)
            spot = draw.ellipse(s, s, *rng.uniform(0.2 * s, 0.8 * s, 2),
                                *rng.uniform(0.06, 0.12, 2) * s, rng.uniform(0, np.pi))
            after[spot] *= 0.4
        return _to_channels(before, 1), _to_channels(after, 1)
    if card.multilabel:
        for lab in label:  # each label paints its pattern in a disc somewhere in the scene
            region = draw.ellipse(s, s, *rng.uniform(0.2 * s, 0.8 * s, 2), 0.24 * s, 0.24 * s, 0)
            pattern = index_pattern(lab, s, rng)
            img[region] = 0.5 * img[region] + 0.25 + 0.3 * pattern[region]
        return (_to_channels(img, card.bands),)
    if card.name in BINARY_FEATURE:
        img = BINARY_FEATURE[card.name](img, rng) if label == 1 else _plain(img, rng)
        if card.name.endswith("_edr"):  # raw EDR: detector column banding
            img = img + rng.normal(0, 0.015, (1, s)).astype(np.float32)
        return (_to_channels(img, card.bands),)
    name = class_names[label]
    if name in MOTIFS:
        return (_to_channels(MOTIFS[name](img, rng), card.bands),)
    img = 0.45 * img + 0.275 + 0.25 * index_pattern(label, s, rng)
    return (_to_channels(img, card.bands, index_tint(label, card.num_classes)),)


# ---- segmentation --------------------------------------------------------------------------
def _crater_type(img: np.ndarray, rng: np.random.Generator, kind: int, s: int) -> np.ndarray:
    """crater_multi_seg types: 1 other, 2 layered, 3 buried, 4 secondary (a small cluster)."""
    cy, cx = rng.uniform(0.15 * s, 0.85 * s, 2)
    if kind == 4:
        foot = np.zeros(img.shape, bool)
        for _ in range(rng.integers(3, 6)):
            y, x = cy + rng.normal(0, 0.06 * s), cx + rng.normal(0, 0.06 * s)
            foot |= draw.crater(img, y, x, rng.uniform(0.025, 0.045) * s, depth=0.4)
        return foot
    r = rng.uniform(0.1, 0.2) * s
    if kind == 3:
        foot = draw.crater(img, cy, cx, r, depth=0.05, rim=0.08)
        _, _, d = draw.polar(s, s, cy, cx, r)
        img[d < 0.9] = 0.62 + 0.02 * img[d < 0.9]  # smooth infilled floor
        return foot
    foot = draw.crater(img, cy, cx, r)
    if kind == 2:
        _, _, d = draw.polar(s, s, cy, cx, r)
        img += np.where(d < 0.95, 0.15 * np.cos(d * 3 * 2 * np.pi), 0).astype(np.float32)
    return foot


def _terrain_classes(card: DatasetCard, rng: np.random.Generator, s: int):
    """Rover scenes: warped Voronoi regions, each one class with its own texture and tone."""
    k = card.num_classes
    regions = draw.voronoi_regions(rng, s, s, int(rng.integers(4, 9)))
    region_class = rng.integers(0, k, regions.max() + 1)
    mask = region_class[regions].astype(np.uint8)
    gray = np.zeros((s, s), np.float32)
    rgb = np.zeros((s, s, 3), np.float32)
    noise = draw.value_noise(rng, s, s, cells=8, octaves=2) - 0.5
    for c in np.unique(mask):
        tone = 0.15 + 0.7 * ((3 * int(c)) % k) / max(k - 1, 1)
        texture = draw.stripes(s, s, c * np.pi / k, 3 + 2 * (c % 4), rng.uniform(0, 1))
        layer = tone + 0.1 * texture + 0.2 * noise + rng.uniform(-0.04, 0.04)
        where = mask == c
        gray[where] = layer[where]
        if card.bands == 3:
            rgb[where] = draw.colourise(layer, index_tint(int(c), k))[where]
    image = draw.to_uint8(rgb) if card.bands == 3 else draw.to_uint8(gray)[..., None]
    return image, mask


def _mmls(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray]:
    """7 float32 bands: 0-2 optical RGB, 3 elevation, 4 slope, 5 hillshade, 6 roughness."""
    optical = _base(rng, s)
    dem = draw.value_noise(rng, s, s, cells=2, octaves=2)
    mask = np.zeros((s, s), bool)
    for _ in range(rng.integers(0, 3)):
        lobe = draw.ellipse(s, s, *rng.uniform(0.25 * s, 0.75 * s, 2), rng.uniform(0.2, 0.35) * s,
                            rng.uniform(0.1, 0.18) * s, rng.uniform(0, np.pi),
                            draw.value_noise(rng, s, s, cells=3, octaves=2))
        mask |= lobe
    optical[mask] = (0.7 + 0.3 * (optical - 0.5) + 0.1 * (draw.value_noise(
        rng, s, s, cells=8, octaves=1) - 0.5))[mask]
    dem = dem - 0.2 * ndimage.gaussian_filter(mask.astype(np.float32), 1.0)
    gy, gx = np.gradient(dem * s / 4)
    slope = np.sqrt(gx * gx + gy * gy)
    hillshade = np.clip(0.5 - 0.5 * (gy * draw.LIGHT[0] + gx * draw.LIGHT[1]), 0, 1)
    detail = optical - ndimage.gaussian_filter(optical, 1)
    rough = np.sqrt(ndimage.gaussian_filter(detail**2, 1))
    rgb = draw.colourise(optical)
    bands = [rgb[..., 0], rgb[..., 1], rgb[..., 2], dem, slope, hillshade, rough * 4]
    return np.stack(bands, axis=-1).astype(np.float32), mask.astype(np.uint8)


BINARY_SEG_OBJECTS = {  # dataset -> (primitive, radius range as a fraction of size, count range)
    "mb-boulder_seg": (draw.boulder, (0.03, 0.07), (3, 9)),
    "mb-conequest_seg": (draw.cone, (0.08, 0.18), (1, 4)),
    "mb-crater_binary_seg": (draw.crater, (0.06, 0.2), (2, 6)),
}


def segmentation_pair(card: DatasetCard, rng: np.random.Generator,
                      size: int) -> tuple[np.ndarray, np.ndarray]:
    """An image and its class-index mask (``uint8``, values < ``num_classes``)."""
    s = size
    if card.bands == 7:
        return _mmls(rng, s)
    if card.name == "mb-crater_multi_seg":
        img, mask = _base(rng, s), np.zeros((s, s), np.uint8)
        kinds = rng.integers(1, card.num_classes, int(rng.integers(2, 5)))
        for kind in sorted(kinds, key=lambda k: k == 4):  # small secondaries drawn last
            mask[_crater_type(img, rng, int(kind), s)] = kind
        return draw.to_uint8(img)[..., None], mask
    if card.name in BINARY_SEG_OBJECTS:
        primitive, (rmin, rmax), (nmin, nmax) = BINARY_SEG_OBJECTS[card.name]
        img, mask = _base(rng, s), np.zeros((s, s), np.uint8)
        for _ in range(rng.integers(nmin, nmax)):
            r = rng.uniform(rmin, rmax) * s
            mask[primitive(img, *rng.uniform(r, s - r, 2), r)] = 1
        return draw.to_uint8(img)[..., None], mask
    return _terrain_classes(card, rng, s)


# ---- detection -----------------------------------------------------------------------------
DETECTION_OBJECTS = {  # dataset -> (radius range as a fraction of size, count range, margin in r)
    "mb-boulder_det": ((0.025, 0.05), (2, 9), 2.5),
    "mb-conequest_det": ((0.06, 0.12), (1, 4), 1.5),
    "mb-dust_devil_det": ((0.025, 0.045), (1, 4), 4.0),
}


def _draw_object(card: DatasetCard, img, cy, cx, r, rng) -> np.ndarray:
    if card.name == "mb-boulder_det":
        return draw.boulder(img, cy, cx, r)
    if card.name == "mb-conequest_det":
        return draw.cone(img, cy, cx, r)
    if card.name != "mb-dust_devil_det":  # a user's own card: boulders
        return draw.boulder(img, cy, cx, r)
    return draw.dust_devil(img, cy, cx, r, rng.uniform(0, 2 * np.pi), rng)


def detection_scene(card: DatasetCard, rng: np.random.Generator, size: int,
                    negative: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image, its integer boxes ``(N, 4)`` xyxy (max exclusive) and 0-based classes ``(N,)``.

    Objects never overlap, so every box encloses exactly one drawn object. A negative image holds
    only distractors (small craters), no objects.
    """
    s = size
    img = _plain(_base(rng, s), rng)
    (rmin, rmax), (nmin, nmax), margin = DETECTION_OBJECTS.get(
        card.name, DETECTION_OBJECTS["mb-boulder_det"])
    boxes: list[tuple[int, int, int, int]] = []
    wanted = 0 if negative else int(rng.integers(nmin, nmax))
    for _ in range(wanted * 20):
        if len(boxes) == wanted:
            break
        r = rng.uniform(rmin, rmax) * s
        cy, cx = rng.uniform(margin * r + 1, s - margin * r - 1, 2)
        reach = margin * r + 1  # keep every object's whole neighbourhood clear of the others
        if any(cx + reach > b[0] and cx - reach < b[2] and cy + reach > b[1] and cy - reach < b[3]
               for b in boxes):
            continue
        boxes.append(draw.bbox_of(_draw_object(card, img, cy, cx, r, rng)))
    box_arr = np.array(boxes, np.int64).reshape(-1, 4)
    return draw.to_uint8(img)[..., None], box_arr, np.zeros(len(boxes), np.int64)

"""Vectorised drawing primitives for synthetic Mars-like images.

Every function works on ``float32`` grayscale canvases with values in ``[0, 1]`` (``(H, W)``)
and returns either a new canvas or a boolean footprint mask. They are written by hand because no
library draws shaded craters, cones, boulders with cast shadows, slope streaks or spider troughs
together with their exact pixel footprints; only numpy, scipy.ndimage and Pillow are used.

The light comes from the upper left throughout, so shadows fall to the lower right.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

LIGHT = np.array([-0.7071, -0.7071], dtype=np.float32)  # (dy, dx) pointing towards the sun


def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates as broadcastable ``(H, 1)`` and ``(1, W)`` float arrays."""
    yy, xx = np.ogrid[:h, :w]
    return yy.astype(np.float32), xx.astype(np.float32)


def _resize(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    img = Image.fromarray(arr.astype(np.float32))
    return np.asarray(img.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)


def value_noise(rng: np.random.Generator, h: int, w: int, cells: int = 3, octaves: int = 4,
                persistence: float = 0.55) -> np.ndarray:
    """Fractal value noise normalised to ``[0, 1]``: random grids upsampled and summed."""
    total = np.zeros((h, w), np.float32)
    amp = 1.0
    for octave in range(octaves):
        n = cells * 2**octave + 1
        total += amp * _resize(rng.random((n, n), dtype=np.float32), h, w)
        amp *= persistence
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def terrain(rng: np.random.Generator, h: int, w: int, mean: float = 0.5,
            contrast: float = 0.18, grain: float = 0.02, cells: int = 3) -> np.ndarray:
    """A base Mars-like surface: low-frequency albedo variation plus fine grain."""
    img = mean + contrast * (value_noise(rng, h, w, cells=cells) - 0.5) * 2
    img += rng.normal(0.0, grain, (h, w)).astype(np.float32)
    return img.astype(np.float32)


def polar(h: int, w: int, cy: float, cx: float, r: float) -> tuple[np.ndarray, ...]:
    """Offsets ``dy, dx`` and distance ``d`` from a centre, in units of the radius ``r``."""
    yy, xx = grid(h, w)
    dy, dx = (yy - cy) / r, (xx - cx) / r
    return dy, dx, np.sqrt(dy * dy + dx * dx)


def crater(img: np.ndarray, cy: float, cx: float, r: float, depth: float = 0.3,
           rim: float = 0.25) -> np.ndarray:
    """A bowl crater: sunward inner wall in shadow, a bright raised rim. Returns footprint."""
    dy, dx, d = polar(*img.shape, cy, cx, r)
    bowl = d < 1.0
    facing = dy * LIGHT[0] + dx * LIGHT[1]  # +1 on the sunward side
    shade = -depth * facing * np.sqrt(np.clip(1 - d * d, 0, 1)) - 0.4 * depth * (1 - d)
    img[bowl] = img[bowl] * 0.8 + 0.1 + shade[bowl]
    ring = (d >= 1.0) & (d < 1.3)
    img[ring] += (rim * (1 - (d - 1.0) / 0.3) * (1 - 0.5 * facing))[ring]
    return d < 1.3


def cone(img: np.ndarray, cy: float, cx: float, r: float, height: float = 0.4) -> np.ndarray:
    """A pitted cone: a raised, side-lit ring around a dark central pit. Returns footprint."""
    dy, dx, d = polar(*img.shape, cy, cx, r)
    facing = dy * LIGHT[0] + dx * LIGHT[1]
    flank = (d >= 0.3) & (d < 1.0)
    profile = height * (1 - np.abs(d - 0.55) / 0.45)
    img[flank] += (profile * (0.6 + 0.6 * facing))[flank]
    pit = d < 0.3
    img[pit] = img[pit] * 0.5 + 0.02
    return d < 1.0


def boulder(img: np.ndarray, cy: float, cx: float, r: float, shadow: float = 1.6) -> np.ndarray:
    """A bright rounded boulder with a dark shadow cast away from the sun. Returns the body."""
    h, w = img.shape
    sy, sx = -LIGHT * r * shadow * 0.6
    _, _, ds = polar(h, w, cy + sy, cx + sx, r * 1.1)
    dy, dx, d = polar(h, w, cy, cx, r)
    body = d < 1.0
    img[(ds < 1.0) & ~body] *= 0.45
    facing = dy * LIGHT[0] + dx * LIGHT[1]
    img[body] = (0.72 + 0.18 * facing)[body]
    return body


def dust_devil(img: np.ndarray, cy: float, cx: float, r: float, track_angle: float,
               rng: np.random.Generator) -> np.ndarray:
    """A bright dust column, its cast shadow and a dark curving track. Returns column+shadow."""
    h, w = img.shape
    dy, dx, d = polar(h, w, cy, cx, r)
    column = d < 1.0
    img += (0.45 * np.exp(-2.5 * d * d)).astype(np.float32)
    # Shadow: a dark ellipse stretched away from the sun.
    sdy, sdx = -LIGHT * r * 1.4
    ey, ex = (dy * r - sdy) / (1.4 * r), (dx * r - sdx) / (0.7 * r)
    rot_y = ey * 0.7071 - ex * 0.7071
    rot_x = ey * 0.7071 + ex * 0.7071
    shadow = (rot_y * rot_y + rot_x * rot_x < 1.0) & ~column
    img[shadow] *= 0.55
    # Track: a dark curving trail behind the devil (not part of the footprint).
    t = np.linspace(1.2, 5.0, 40, dtype=np.float32)
    curve = 0.25 * np.sin(t * 0.8 + rng.uniform(0, 6.28))
    ty = cy + r * (t * np.sin(track_angle) + curve * np.cos(track_angle))
    tx = cx + r * (t * np.cos(track_angle) - curve * np.sin(track_angle))
    track = polyline(h, w, ty, tx, max(1.0, r * 0.25))
    img[track & ~column & ~shadow] *= 0.75
    return column | shadow


def stripes(h: int, w: int, angle: float, period: float, phase: float = 0.0,
            curvature: float = 0.0, sharp: bool = False) -> np.ndarray:
    """Oriented waves in ``[-1, 1]``; ``curvature`` bends crests, ``sharp`` gives dune profiles."""
    yy, xx = grid(h, w)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    u = u + curvature * (v - (h + w) / 4) ** 2 / max(h, w)
    t = (u / period + phase) % 1.0
    if sharp:  # gentle stoss slope, steep lee face: a sawtooth
        return (2 * t - 1).astype(np.float32)
    return np.sin(2 * np.pi * t).astype(np.float32)


def polyline(h: int, w: int, ys: np.ndarray, xs: np.ndarray, width: float) -> np.ndarray:
    """Pixels within ``width`` of a polyline through the points ``(ys[i], xs[i])``."""
    yy, xx = grid(h, w)
    best = np.full((h, w), np.inf, np.float32)
    for y0, x0, y1, x1 in zip(ys[:-1], xs[:-1], ys[1:], xs[1:]):
        vy, vx = y1 - y0, x1 - x0
        t = ((yy - y0) * vy + (xx - x0) * vx) / max(vy * vy + vx * vx, 1e-6)
        t = np.clip(t, 0, 1)
        dist = (yy - y0 - t * vy) ** 2 + (xx - x0 - t * vx) ** 2
        np.minimum(best, dist, out=best)
    return best <= width * width


def wedge(h: int, w: int, y0: float, x0: float, angle: float, length: float,
          width: float) -> np.ndarray:
    """A streak starting narrow at ``(y0, x0)`` and widening to ``width`` after ``length``."""
    yy, xx = grid(h, w)
    u = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
    v = -(xx - x0) * np.sin(angle) + (yy - y0) * np.cos(angle)
    return (u >= 0) & (u <= length) & (np.abs(v) <= 0.5 + width * u / length / 2)


def radial_troughs(img: np.ndarray, cy: float, cx: float, r: float, arms: int,
                   rng: np.random.Generator) -> np.ndarray:
    """A spider: dark branching troughs radiating from a dark centre. Returns footprint."""
    dy, dx, d = polar(*img.shape, cy, cx, r)
    theta = np.arctan2(dy, dx) + rng.uniform(0, 2 * np.pi)
    wiggle = 0.15 * np.sin(d * 7)
    arm = np.cos(arms * (theta + wiggle)) > 1 - 0.35 / np.maximum(d, 0.25)
    branch = np.cos(2 * arms * (theta - wiggle)) > 0.96
    troughs = (arm | (branch & (d > 0.5))) & (d < 1.0)
    img[troughs] = img[troughs] * 0.45
    centre = d < 0.18
    img[centre] = img[centre] * 0.4
    return troughs | centre


def flat_pits(img: np.ndarray, rng: np.random.Generator, count: int, rmin: float,
              rmax: float, floor: float = 0.28) -> np.ndarray:
    """Swiss-cheese terrain: flat-floored pits with a bright scarp on their shaded side."""
    h, w = img.shape
    yy, xx = grid(h, w)
    pits = np.zeros((h, w), bool)
    for _ in range(count):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(rmin, rmax), rng.uniform(rmin, rmax)
        pits |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0
    lit_wall = ndimage.shift(pits.astype(np.float32), (-1.5, -1.5), order=0) > 0.5
    img[pits] = floor + 0.05 * (img[pits] - 0.5)
    img[lit_wall & ~pits] = 0.9
    return pits


def ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float, angle: float,
            roughness: np.ndarray | None = None) -> np.ndarray:
    """A rotated ellipse; an optional noise field in ``[0, 1]`` roughens its outline."""
    yy, xx = grid(h, w)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    rho = (u / rx) ** 2 + (v / ry) ** 2
    limit = 1.0 if roughness is None else 0.7 + 0.6 * roughness
    return rho < limit


def frost_patches(img: np.ndarray, rng: np.random.Generator, coverage: float) -> np.ndarray:
    """Bright, patchy seasonal frost covering about ``coverage`` of the surface."""
    h, w = img.shape
    noise = value_noise(rng, h, w, cells=4, octaves=3)
    cover = noise > np.quantile(noise, 1 - coverage)
    img[cover] = 0.82 + 0.1 * img[cover]
    return cover


def haze(img: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """Atmospheric dust: lower contrast, brighter veil, blurred detail."""
    blurred = ndimage.gaussian_filter(img, sigma)
    return (blurred.mean() + (blurred - blurred.mean()) * (1 - amount) + 0.25 * amount).astype(
        np.float32
    )


def voronoi_regions(rng: np.random.Generator, h: int, w: int, seeds: int,
                    warp: float = 4.0) -> np.ndarray:
    """Integer region ids ``0..seeds-1``: nearest random seed, boundaries warped by noise."""
    yy, xx = grid(h, w)
    wy = yy + warp * (value_noise(rng, h, w, cells=3, octaves=2) - 0.5) * 2
    wx = xx + warp * (value_noise(rng, h, w, cells=3, octaves=2) - 0.5) * 2
    pts = rng.uniform(0, 1, (seeds, 2)) * np.array([h, w])
    dist = (wy[None] - pts[:, 0, None, None]) ** 2 + (wx[None] - pts[:, 1, None, None]) ** 2
    return np.argmin(dist, axis=0)


def bbox_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Integer ``(x_min, y_min, x_max, y_max)`` pixel corners enclosing ``mask`` (max exclusive)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


# Rust palette: dark basalt -> ochre dust -> pale bright dust (R, G, B anchors at 0, 0.5, 1).
_PALETTE = np.array([[0.10, 0.06, 0.04], [0.66, 0.38, 0.23], [0.96, 0.82, 0.66]], np.float32)


def colourise(gray: np.ndarray, tint: tuple[float, float, float] | None = None) -> np.ndarray:
    """Map a grayscale canvas through the rust palette (optionally tinted) to ``(H, W, 3)``."""
    g = np.clip(gray, 0.0, 1.0)
    rgb = np.stack([np.interp(g, [0.0, 0.5, 1.0], _PALETTE[:, c]) for c in range(3)], axis=-1)
    if tint is not None:
        rgb = rgb * 0.55 + np.asarray(tint, np.float32) * 0.45 * g[..., None]
    return rgb.astype(np.float32)

"""The findings: each present one placed in the anatomy with its mask and added density."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import ImageFilter

from radzero.data.phantom.anatomy import Anatomy, branches, draw_tree
from radzero.data.phantom.geometry import SIDES, SIGN, signed_lung_distance, smooth_noise, soft

FINDINGS: tuple[str, ...] = (
    "pleural effusion",
    "pneumothorax",
    "consolidation",
    "nodule",
    "mass",
    "cardiomegaly",
)

_FIELD_CM = 36.0  # detector width assumed when reports give lesion sizes
_RING = np.array(
    [(0.0, 0.0)]
    + [
        (r * math.cos(a), r * math.sin(a))
        for r in (0.5, 0.95)
        for a in np.linspace(0.0, math.tau, 12, endpoint=False)
    ]
)


@dataclass(frozen=True)
class Lesion:
    """A present finding: where it is, how big, and what it does to the image."""

    name: str
    location: str  # "" for cardiomegaly
    grade: int  # pleura: small/moderate/large; heart: mild/moderate/marked; else 0
    size_cm: float  # nodule/mass diameter, 0 otherwise
    mask: np.ndarray
    add: np.ndarray  # density added to the normal chest
    hide: np.ndarray | None  # 0..1 share of the lung markings it removes


_ZONE_NAMES = (
    ("right upper lobe", "right middle lobe", "right lower lobe"),
    ("left upper lobe", "lingula", "left lower lobe"),
)
_THIRDS = ("upper", "mid", "lower")


def _zone_location(rng: np.random.Generator, zone: int) -> str:
    """A lobe ("right lower lobe", "lingula") or zone ("left upper zone") name."""
    side, third = divmod(zone, 3)
    if rng.random() < 0.5:
        return _ZONE_NAMES[side][third]
    return f"{SIDES[side]} {_THIRDS[third]} zone"


def _cardiomegaly(anat: Anatomy) -> Lesion:
    ctr = anat.ctr[1]
    grade = 0 if ctr < 0.6 else 1 if ctr < 0.63 else 2
    big = anat.heart_big
    return Lesion("cardiomegaly", "", grade, 0.0, big > 0.5, anat.cardiomegaly, big)


def _effusion(rng: np.random.Generator, anat: Anatomy, heart: np.ndarray) -> Lesion:
    """Dependent fluid filling a costophrenic angle up to a meniscus that rises laterally."""
    side = int(rng.integers(2))
    shape, d = anat.shapes[side], anat.side_d(side)
    grade = int(rng.integers(3))
    fill = rng.uniform(*((0.16, 0.22), (0.25, 0.35), (0.38, 0.5))[grade])
    level = shape.base - fill * (shape.base - shape.apex)
    across = np.clip((d - shape.medial) / (shape.lateral - shape.medial), 0.0, 1.0)
    top = level - rng.uniform(0.05, 0.1) * across * across
    below = np.clip((anat.grid.v - top) / 0.02, 0.0, 1.0)
    fluid = soft(anat.lung_sd[side], anat.grid.px) * below * (1.0 - heart)
    add = fluid * (anat.air + rng.uniform(0.04, 0.08))
    location = f"{SIDES[side]} {'costophrenic angle' if rng.random() < 0.6 else 'lung base'}"
    return Lesion("pleural effusion", location, grade, 0.0, fluid > 0.5, add, fluid)


def _pneumothorax(rng: np.random.Generator, anat: Anatomy) -> Lesion:
    """Apical/lateral air rim without lung markings outside a thin bright visceral pleural line."""
    side = int(rng.integers(2))
    shape, d, px = anat.shapes[side], anat.side_d(side), anat.grid.px
    grade = int(rng.integers(3))
    gap = rng.uniform(*((0.045, 0.06), (0.06, 0.08), (0.08, 0.11))[grade])
    extent = rng.uniform(*((0.4, 0.6), (0.55, 0.8), (0.75, 1.0))[grade])
    collapsed = replace(shape, apex=shape.apex + gap * rng.uniform(0.8, 1.2))
    inner = signed_lung_distance(collapsed, d, anat.grid.v, anat.domes[side], (gap, extent))
    rim = soft(anat.lung_sd[side], px) * (1.0 - soft(inner, px))
    line = np.exp(-((inner / (0.9 * px)) ** 2)) * np.clip(anat.lung_sd[side] / (2 * px) - 0.5, 0, 1)
    add = rng.uniform(0.25, 0.35) * line - rng.uniform(0.06, 0.1) * rim
    where = "apex" if grade == 0 or rng.random() < 0.5 else "hemithorax"
    location = f"{SIDES[side]} {where}"
    return Lesion("pneumothorax", location, grade, 0.0, rim > 0.5, add, rim)


def _coverage(avail: np.ndarray, y: int, x: int, radius: float) -> float:
    """Share of sample points of a disc that fall on ``avail``."""
    size = avail.shape[0]
    ys = np.clip(np.rint(y + radius * _RING[:, 1]).astype(int), 0, size - 1)
    xs = np.clip(np.rint(x + radius * _RING[:, 0]).astype(int), 0, size - 1)
    return float(avail[ys, xs].mean())


def _place(
    rng: np.random.Generator, anat: Anatomy, avail: np.ndarray, radius: float, need: float
) -> tuple[int, int, int]:
    """A centre (y, x) and its zone where a disc of ``radius`` px lies mostly in ``avail``."""
    best, best_cover = None, -1.0
    for zone in rng.permutation(6):
        candidates = np.flatnonzero(avail & (anat.zone == zone))
        if candidates.size == 0:
            continue
        for pick in rng.integers(candidates.size, size=8):
            y, x = divmod(int(candidates[pick]), anat.grid.size)
            cover = _coverage(avail, y, x, radius)
            if cover > best_cover:
                best, best_cover = (y, x, int(zone)), cover
            if cover >= need:
                return best
    if best is None:  # no free lung at all: use the deepest point of the right lung
        y, x = divmod(int(np.argmax(anat.lung_sd[0])), anat.grid.size)
        best = (y, x, int(anat.zone[y, x]))
    return best


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.arange(size, dtype=np.float32)
    return p[:, None], p[None, :]


def _round_lesion(rng: np.random.Generator, anat: Anatomy, avail: np.ndarray, name: str) -> Lesion:
    """A dense nodule (radius 3.2-4.2% of the width, 2.3-3 cm) or a lobulated mass (7-11%).

    Nodules sit at the large end of the clinical range so that one spans a 16-px patch at
    224 px, the scale of the demo's backbone.
    """
    size = anat.grid.size
    lo, hi = (0.032, 0.042) if name == "nodule" else (0.07, 0.11)
    radius = rng.uniform(lo, hi) * size
    lobes = 0.0 if name == "nodule" else 0.08
    y, x, zone = _place(rng, anat, avail, radius * (1.0 + 2 * lobes), 0.92)
    py, px = _pixel_grid(size)
    dy, dx = py - y, px - x
    outline = radius * _lobulation(rng, np.arctan2(dy, dx), lobes)
    rho = np.sqrt(dx * dx + dy * dy) / outline
    inside = np.clip((1.0 - rho) * outline + 0.5, 0.0, 1.0)
    profile = 0.55 + 0.45 * np.sqrt(np.clip(1.0 - rho * rho, 0.0, 1.0))
    add = rng.uniform(*((0.5, 0.65) if name == "nodule" else (0.38, 0.55))) * inside * profile
    location = _zone_location(rng, zone)
    size_cm = 2 * radius / size * _FIELD_CM
    return Lesion(name, location, 0, size_cm, inside > 0.5, add, None)


def _lobulation(rng: np.random.Generator, phi: np.ndarray, depth: float) -> np.ndarray:
    """Relative radius of an outline with 2, 3 and 5 lobes of random depth up to ``depth``."""
    wave = sum(
        rng.uniform(0.3, 1.0) * np.cos(k * phi + rng.uniform(0.0, math.tau)) for k in (2, 3, 5)
    )
    return 1.0 + depth * wave


def _consolidation(rng: np.random.Generator, anat: Anatomy, avail: np.ndarray) -> Lesion:
    """Fluffy ill-defined opacity confined to the free lung, often with air bronchograms."""
    size = anat.grid.size
    reach = rng.uniform(0.07, 0.11) * size
    y, x, zone = _place(rng, anat, avail, reach, 0.75)
    py, px = _pixel_grid(size)
    count = int(rng.integers(5, 10))
    spread = reach * rng.uniform(-1.1, 1.1, (count, 2)) * (np.arange(count) > 0)[:, None]
    centres = np.array([y, x]) + spread
    sigmas = reach * rng.uniform(0.35, 0.6, count)
    field = sum(
        np.exp(-((py - cy) ** 2 + (px - cx) ** 2) / (2 * s * s))
        for (cy, cx), s in zip(centres.tolist(), sigmas.tolist(), strict=True)
    )
    rough = np.clip(0.25 * smooth_noise(rng, size, 20), -0.3, 0.3)
    region = np.clip((field + rough - 0.4) / 0.35, 0.0, 1.0) * avail
    texture = 0.75 + 0.25 * np.clip(smooth_noise(rng, size, min(36, size // 2)), -1.0, 1.0)
    add = rng.uniform(0.32, 0.48) * region * texture
    if rng.random() < 0.6:
        add = add - 0.3 * region * _bronchograms(rng, anat, y, x, reach)
    location = _zone_location(rng, zone)
    return Lesion("consolidation", location, 0, 0.0, region > 0.5, add, region)


def _bronchograms(
    rng: np.random.Generator, anat: Anatomy, y: int, x: int, reach: float
) -> np.ndarray:
    """Dark branching air-filled bronchi inside a consolidation (as a 0..1 image)."""
    grid = anat.grid
    u, v = float(grid.u[y, x]), float(grid.v[y, x])
    side = int(u > anat.mid)
    d = SIGN[side] * (u - anat.mid)
    length = reach / (grid.scale * grid.size) * 0.6
    root = np.array([[d - length, v - 0.2 * length]])
    segments = branches(rng, root, rng.uniform(-0.4, 0.4, 1), length, 3)
    image = draw_tree(grid, anat.mid, side, segments, 0.01)
    blurred = image.filter(ImageFilter.GaussianBlur(0.9 * grid.size / 224))
    return np.asarray(blurred, dtype=np.float32) / 255.0


def dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Grow a mask by ``steps`` pixels (diamond-shaped)."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def sample_lesions(rng: np.random.Generator, anat: Anatomy, present: set[str]) -> list[Lesion]:
    """Findings in placement order: heart, pleura, then lesions from large to small."""
    heart = anat.heart_big if "cardiomegaly" in present else anat.heart
    avail = (anat.lungs > 0.5) & (heart < 0.5)
    margin = max(2, round(0.015 * anat.grid.size))
    lesions = [_cardiomegaly(anat)] if "cardiomegaly" in present else []
    makers = {
        "pleural effusion": lambda: _effusion(rng, anat, heart),
        "pneumothorax": lambda: _pneumothorax(rng, anat),
        "mass": lambda: _round_lesion(rng, anat, avail, "mass"),
        "consolidation": lambda: _consolidation(rng, anat, avail),
        "nodule": lambda: _round_lesion(rng, anat, avail, "nodule"),
    }
    for name, make in makers.items():
        if name in present:
            lesion = make()
            avail &= ~dilate(lesion.mask, margin)
            lesions.append(lesion)
    return lesions

"""Seeded synthetic chest radiographs with known findings, reports, boxes and masks.

Anatomy is drawn in "anatomy coordinates" (u to the right, v down, both 0..1 over the image
before a small per-case rotation, shift and scale) as density layers; their sum goes through an
exponential attenuation curve, so bright means dense (bone, fluid) and dark means air. The view
is posteroanterior: the patient's right is on the image left. Side index 0 is the patient's right
lung, 1 the left.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Bumped whenever the same (count, size, seed, prevalence) would draw different cases, so that
# cached phantom sets are regenerated. 2: 30 % of findings reported without their site.
GENERATOR_VERSION = 2
FINDINGS: tuple[str, ...] = (
    "pleural effusion",
    "pneumothorax",
    "consolidation",
    "nodule",
    "mass",
    "cardiomegaly",
)

_SIDES = ("right", "left")  # patient sides, indexed like the lungs
_SIGN = (-1.0, 1.0)  # patient's right lung lies at u < midline
_FIELD_CM = 36.0  # detector width assumed when reports give lesion sizes
_HEART_AIR = 0.95  # share of the lung air behind the heart that its shadow hides
_MU = 1.2  # attenuation of the density-to-brightness curve
_RING = np.array(
    [(0.0, 0.0)]
    + [
        (r * math.cos(a), r * math.sin(a))
        for r in (0.5, 0.95)
        for a in np.linspace(0.0, math.tau, 12, endpoint=False)
    ]
)


@dataclass
class PhantomCase:
    """One synthetic radiograph with its report and ground truth."""

    image: np.ndarray
    report: str
    sentences: list[str]
    labels: dict[str, int]
    boxes: list[dict]
    masks: dict[str, np.ndarray]


# ----------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Grid:
    """Anatomy coordinates of every pixel and the inverse map for drawing."""

    size: int
    u: np.ndarray
    v: np.ndarray
    scale: float
    angle: float
    shift: tuple[float, float]

    @property
    def px(self) -> float:
        """One pixel in anatomy units."""
        return 1.0 / (self.scale * self.size)

    def to_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        x = self.scale * (c * (u - 0.5) - s * (v - 0.5)) + 0.5 + self.shift[0]
        y = self.scale * (s * (u - 0.5) + c * (v - 0.5)) + 0.5 + self.shift[1]
        return x * self.size - 0.5, y * self.size - 0.5


def _make_grid(size: int, scale: float, angle: float, shift: tuple[float, float]) -> _Grid:
    p = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    x, y = p[None, :] - shift[0], p[:, None] - shift[1]
    c, s = math.cos(angle), math.sin(angle)
    u = 0.5 + (c * x + s * y) / scale
    v = 0.5 + (c * y - s * x) / scale
    return _Grid(size, u.astype(np.float32), v.astype(np.float32), scale, angle, shift)


@dataclass(frozen=True)
class _LungShape:
    """One lung field; distances are from the midline, heights are v."""

    apex: float  # top of the lung
    base: float  # lateral costophrenic angle
    dome: float  # highest point of the hemidiaphragm
    dome_d: float  # where that highest point is
    lateral: float  # widest reach of the lateral wall
    medial: float  # closest approach of the medial border
    centre: float  # where the apex sits
    wobble: tuple[float, float, float]  # amplitude, frequency, phase of the lateral wall


def _arc(x: np.ndarray) -> np.ndarray:
    """0 at x<=0 rising as a quarter circle to 1 at x>=1 (rounded apex)."""
    return np.sqrt(1.0 - (1.0 - np.clip(x, 0.0, 1.0)) ** 2)


def _dome(shape: _LungShape, d: np.ndarray) -> np.ndarray:
    """v of the hemidiaphragm at distance d from the midline."""
    rise = shape.base - shape.dome
    lateral = ((d - shape.dome_d) / (shape.lateral - shape.dome_d)) ** 2
    medial = 0.3 * ((shape.dome_d - d) / shape.dome_d) ** 2
    return shape.dome + rise * np.where(d > shape.dome_d, lateral, medial)


def _lung_sd(
    shape: _LungShape,
    d: np.ndarray,
    v: np.ndarray,
    dome: np.ndarray,
    retract: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Signed distance-like field of a lung (positive inside, anatomy units).

    ``d`` is the distance from the midline towards the lung's side, ``dome`` its hemidiaphragm.

    ``retract`` = (gap, extent) pulls the lateral wall in by ``gap`` at the apex, tapering to
    nothing at the fraction ``extent`` of the lung height (a pneumothorax's collapsed lung).
    """
    t = (v - shape.apex) / (shape.base - shape.apex)
    amp, freq, phase = shape.wobble
    lateral = shape.centre + (shape.lateral - shape.centre) * _arc(t / 0.75)
    lateral = lateral + amp * np.sin(freq * t + phase) * np.clip(4.0 * t, 0.0, 1.0)
    lateral = lateral - retract[0] * np.clip(1.0 - t / retract[1], 0.0, 1.0)
    medial = shape.centre - (shape.centre - shape.medial) * _arc(t / 0.3)
    inside = np.minimum(np.minimum(lateral - d, d - medial), dome - v)
    return np.minimum(inside, v - shape.apex)


def _soft(sd: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased inside-mask from a signed distance (one pixel wide edge)."""
    return np.clip(sd / px + 0.5, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean unit-ish random field varying over about size/cells pixels."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)


# ----------------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class _Anatomy:
    """A normal chest: density layers plus what findings need to place themselves."""

    grid: _Grid
    mid: float
    shapes: tuple[_LungShape, _LungShape]
    lung_sd: tuple[np.ndarray, np.ndarray]
    domes: tuple[np.ndarray, np.ndarray]  # each hemidiaphragm's v over the whole image
    lungs: np.ndarray  # soft union of both lung fields
    air: np.ndarray  # density removed by the air in the lungs
    density: np.ndarray  # everything except lung markings, normal heart included
    markings: np.ndarray  # vessel branching, shown where no finding hides it
    heart: np.ndarray  # soft heart shadow
    heart_big: np.ndarray  # soft heart shadow when enlarged
    cardiomegaly: np.ndarray  # density added by the enlargement
    ctr: tuple[float, float]  # cardiothoracic ratio, normal and enlarged
    zone: np.ndarray  # side*3 + zone (upper/middle/lower) inside the lungs, else -1

    def side_d(self, side: int) -> np.ndarray:
        """Distance from the midline towards one side's lateral wall."""
        return _SIGN[side] * (self.grid.u - self.mid)


def _sample_lung(rng: np.random.Generator, base: float, left: bool) -> _LungShape:
    base = base + (0.02 if left else 0.0)
    return _LungShape(
        apex=rng.uniform(0.1, 0.15),
        base=base,
        dome=base - rng.uniform(0.08, 0.12),
        dome_d=rng.uniform(0.14, 0.19),
        lateral=rng.uniform(0.33, 0.38) - (0.01 if left else 0.0),
        medial=rng.uniform(0.045, 0.06) + (0.005 if left else 0.0),
        centre=rng.uniform(0.14, 0.17),
        wobble=(rng.uniform(0.0, 0.008), rng.uniform(4.0, 9.0), rng.uniform(0.0, math.tau)),
    )


def _sample_anatomy(rng: np.random.Generator, size: int) -> _Anatomy:
    angle = float(np.clip(rng.normal(0.0, 0.025), -0.05, 0.05))
    shift = (float(rng.normal(0.0, 0.012)), float(rng.normal(0.0, 0.012)))
    grid = _make_grid(size, rng.uniform(0.94, 1.04), angle, shift)
    mid = 0.5 + rng.normal(0.0, 0.006)
    base = rng.uniform(0.72, 0.78)
    shapes = (_sample_lung(rng, base, False), _sample_lung(rng, base, True))
    carina = rng.uniform(0.28, 0.33)
    domes = tuple(_dome(shapes[s], _SIGN[s] * (grid.u - mid)) for s in (0, 1))
    diaphragm = np.where(grid.u > mid, domes[1], domes[0])
    lung_sd = _lung_fields(rng, grid, mid, shapes, domes, carina)
    lungs = _soft(lung_sd[0], grid.px) + _soft(lung_sd[1], grid.px)
    body, body_density = _body(rng, grid, mid, shapes, diaphragm)
    texture = 1.0 + 0.035 * _smooth_noise(rng, size, min(48, size // 2))
    air = rng.uniform(0.62, 0.7) * lungs * body_density * texture
    ctr = (rng.uniform(0.42, 0.49), rng.uniform(0.57, 0.66))
    heart, heart_term = _heart(rng, grid, mid, shapes, ctr[0], air, diaphragm)
    heart_big, big_term = _heart(rng, grid, mid, shapes, ctr[1], air, diaphragm)
    density = (
        body_density
        + body * (_bones(rng, grid, mid, shapes) + _mediastinum(rng, grid, mid, shapes, carina))
        - air
        + heart_term
    )
    markings = (
        _vessels(rng, grid, mid, shapes, carina) * lungs * (1.0 - heart) * rng.uniform(0.2, 0.28)
    )
    return _Anatomy(
        grid=grid,
        mid=mid,
        shapes=shapes,
        lung_sd=lung_sd,
        domes=domes,
        lungs=lungs,
        air=air,
        density=density,
        markings=markings,
        heart=heart,
        heart_big=heart_big,
        cardiomegaly=big_term - heart_term,
        ctr=ctr,
        zone=_zones(grid, shapes, lung_sd),
    )


def _lung_fields(
    rng: np.random.Generator,
    grid: _Grid,
    mid: float,
    shapes: tuple[_LungShape, ...],
    domes: tuple[np.ndarray, ...],
    carina: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances of both lungs; the aortic knob indents the left lung's medial border."""
    right, left = (_lung_sd(shapes[s], _SIGN[s] * (grid.u - mid), grid.v, domes[s]) for s in (0, 1))
    knob_u = mid + shapes[1].medial + rng.uniform(-0.005, 0.01)
    knob_v = carina - rng.uniform(0.0, 0.03)
    knob = np.hypot(grid.u - knob_u, grid.v - knob_v) - rng.uniform(0.02, 0.03)
    return right, np.minimum(left, knob)


def _zones(
    grid: _Grid, shapes: tuple[_LungShape, ...], lung_sd: tuple[np.ndarray, ...]
) -> np.ndarray:
    zone = np.full(grid.u.shape, -1, dtype=np.int8)
    for side, shape in enumerate(shapes):
        t = (grid.v - shape.apex) / (shape.base - shape.apex)
        third = np.clip(np.floor(3.0 * t), 0, 2).astype(np.int8)
        zone = np.where(lung_sd[side] > 0, side * 3 + third, zone)
    return zone


def _body(
    rng: np.random.Generator,
    grid: _Grid,
    mid: float,
    shapes: tuple[_LungShape, ...],
    diaphragm: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft body mask and soft-tissue density (thicker centrally, denser below the diaphragm)."""
    d = np.abs(grid.u - mid)
    torso = max(s.lateral for s in shapes) + rng.uniform(0.04, 0.07)
    neck = rng.uniform(0.09, 0.12)
    shoulder = np.clip((grid.v - 0.01) / 0.13, 0.0, 1.0)
    half = neck + (torso - neck) * shoulder * shoulder * (3.0 - 2.0 * shoulder)
    body = _soft(half - d, grid.px)
    thickness = np.clip(1.0 - (d / half) ** 2, 0.0, 1.0) ** 0.7
    abdomen = np.clip((grid.v - diaphragm) / 0.05, 0.0, 1.0) * rng.uniform(0.1, 0.16)
    return body, body * (0.05 + 1.05 * thickness + abdomen)


def _stripes(
    phase: np.ndarray, start: float, spacing: float, count: int, half: float, px: float
) -> np.ndarray:
    """Parallel bands of half-width ``half`` along a phase coordinate, with bright edges."""
    k = (phase - start) / spacing
    index = np.floor(k)
    offset = np.abs(k - index - 0.5) * spacing
    band = np.clip((half - offset) / px + 0.5, 0.0, 1.0)
    cortex = np.exp(-(((offset - half) / (1.2 * px)) ** 2))
    return (0.7 * band + 0.3 * cortex) * ((index >= 0) & (index < count))


def _bones(
    rng: np.random.Generator, grid: _Grid, mid: float, shapes: tuple[_LungShape, ...]
) -> np.ndarray:
    """Posterior and anterior ribs, clavicles and the spine."""
    d, v, px = np.abs(grid.u - mid), grid.v, grid.px
    apex = min(s.apex for s in shapes)
    wall = max(s.lateral for s in shapes) + 0.03
    lateral = _soft(wall - d, 3 * px)
    spacing = rng.uniform(0.062, 0.072)
    bend = rng.uniform(2.0, 2.6)
    posterior = _stripes(v + 0.5 * d - bend * d * d, apex - 0.05, spacing, 10, 0.011, px)
    anterior = _stripes(v + 0.55 * d, apex + 0.12, spacing * 1.05, 6, 0.009, px)
    ribs = posterior * _soft(d - 0.035, 2 * px) + 0.5 * anterior * np.clip((d - 0.1) / 0.06, 0, 1)
    return rng.uniform(0.09, 0.13) * ribs * lateral + _clavicles(rng, d, v, px) + _spine(d, v, px)


def _clavicles(rng: np.random.Generator, d: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
    top = rng.uniform(0.14, 0.18)
    t = np.clip((d - 0.03) / 0.27, 0.0, 1.0)
    centre = top + 0.03 - 0.06 * t + 0.012 * np.sin(math.tau * t)
    half = 0.017 - 0.005 * t
    inside = _soft(half - np.abs(v - centre), px) * _soft(0.3 - d, 2 * px) * _soft(d - 0.03, px)
    return rng.uniform(0.22, 0.3) * inside


def _spine(d: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
    vertebrae = 0.85 + 0.15 * np.cos(v * (math.tau / 0.045))
    return 0.28 * _soft(0.035 - d, 2 * px) * vertebrae


def _mediastinum(
    rng: np.random.Generator,
    grid: _Grid,
    mid: float,
    shapes: tuple[_LungShape, ...],
    carina: float,
) -> np.ndarray:
    """Trachea (air), hila and a gastric air bubble."""
    u, v, px = grid.u, grid.v, grid.px
    trachea = _soft(0.017 - np.abs(u - mid), px) * _soft(carina - v, 3 * px)
    hila = sum(
        np.exp(-((u - mid - 0.1 * _SIGN[s]) ** 2 + (v - carina - 0.1 - 0.02 * s) ** 2) / 0.0012)
        for s in (0, 1)
    )
    left = shapes[1]
    bubble_v = float(_dome(left, np.full(1, 0.15))[0]) + 0.045
    bubble = _soft(1.0 - np.hypot((u - mid - 0.15) / 0.04, (v - bubble_v) / 0.022), 0.3)
    return 0.12 * hila - 0.22 * trachea - rng.uniform(0.0, 0.25) * bubble


def _heart(
    rng: np.random.Generator,
    grid: _Grid,
    mid: float,
    shapes: tuple[_LungShape, ...],
    ctr: float,
    air: np.ndarray,
    diaphragm: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft heart shadow of a given cardiothoracic ratio and the density it adds."""
    width = ctr * (shapes[0].lateral + shapes[1].lateral)
    right = width * rng.uniform(0.3, 0.37)
    height = rng.uniform(0.19, 0.23) * (1.0 + 0.8 * (ctr - 0.45))
    base = min(s.dome for s in shapes) - 0.005
    dx = grid.u - mid
    du = dx / np.where(dx < 0, np.float32(right), np.float32(width - right))
    dv = np.clip(base - grid.v, 0.0, None) / height
    r = np.sqrt(du * du + dv * dv)
    below = np.clip(1.0 + (diaphragm - grid.v) / 0.05, 0.0, 1.0)
    heart = _soft((1.0 - r) * right, grid.px) * below
    profile = 0.6 + 0.4 * np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0))
    return heart, heart * (rng.uniform(0.1, 0.16) * profile + _HEART_AIR * air)


def _branches(
    rng: np.random.Generator, roots: np.ndarray, angles: np.ndarray, length: float, depth: int
) -> np.ndarray:
    """Segments (d0, v0, d1, v1, weight) of binary trees grown level by level, twigs first."""
    starts, weight = roots, np.ones(len(angles))
    lengths = np.full(len(angles), length)
    segments = []
    for _ in range(depth):
        angles = angles + rng.normal(0.0, 0.12, angles.shape)
        ends = starts + lengths[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        segments.append(np.column_stack([starts, ends, weight]))
        spread = rng.uniform(0.25, 0.6, angles.shape)
        angles = np.stack([angles - spread, angles + spread], axis=1).ravel()
        starts = np.repeat(ends, 2, axis=0)
        lengths = np.repeat(lengths * rng.uniform(0.62, 0.8, lengths.shape), 2)
        weight = np.repeat(weight * 0.7, 2)
    return np.concatenate(segments[::-1])


def _draw(grid: _Grid, mid: float, side: int, segments: np.ndarray, width: float) -> Image.Image:
    """Rasterise tree segments (anatomy units) into a new 8-bit image."""
    image = Image.new("L", (grid.size, grid.size))
    _draw_into(ImageDraw.Draw(image), grid, mid, side, segments, width)
    return image


def _draw_into(
    draw: ImageDraw.ImageDraw, grid: _Grid, mid: float, side: int, seg: np.ndarray, width: float
) -> None:
    x0, y0 = grid.to_pixels(mid + _SIGN[side] * seg[:, 0], seg[:, 1])
    x1, y1 = grid.to_pixels(mid + _SIGN[side] * seg[:, 2], seg[:, 3])
    widths = np.maximum(1, np.rint(width * grid.scale * grid.size * seg[:, 4])).astype(int)
    fills = (255 * (0.25 + 0.75 * seg[:, 4])).astype(int)
    ends = np.column_stack([x0, y0, x1, y1]).tolist()
    for line, fill, pixels in zip(ends, fills.tolist(), widths.tolist(), strict=True):
        draw.line(line, fill=fill, width=pixels)


def _vessels(
    rng: np.random.Generator,
    grid: _Grid,
    mid: float,
    shapes: tuple[_LungShape, ...],
    carina: float,
) -> np.ndarray:
    """Lung markings: vessel trees from each hilum, thinner and fainter to the periphery."""
    image = Image.new("L", (grid.size, grid.size))
    draw = ImageDraw.Draw(image)
    for side, shape in enumerate(shapes):
        count = int(rng.integers(6, 9))
        angles = np.sort(rng.uniform(-1.35, 1.5, count))
        hilum = (shape.medial + rng.uniform(0.04, 0.06), carina + 0.1 + 0.02 * side)
        roots = np.tile(hilum, (count, 1))
        _draw_into(draw, grid, mid, side, _branches(rng, roots, angles, 0.085, 5), 0.013)
    blurred = image.filter(ImageFilter.GaussianBlur(0.8 * grid.size / 224))
    return np.asarray(blurred, dtype=np.float32) / 255.0


# ----------------------------------------------------------------------------------- findings


@dataclass(frozen=True)
class _Lesion:
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
    return f"{_SIDES[side]} {_THIRDS[third]} zone"


def _cardiomegaly(anat: _Anatomy) -> _Lesion:
    ctr = anat.ctr[1]
    grade = 0 if ctr < 0.6 else 1 if ctr < 0.63 else 2
    big = anat.heart_big
    return _Lesion("cardiomegaly", "", grade, 0.0, big > 0.5, anat.cardiomegaly, big)


def _effusion(rng: np.random.Generator, anat: _Anatomy, heart: np.ndarray) -> _Lesion:
    """Dependent fluid filling a costophrenic angle up to a meniscus that rises laterally."""
    side = int(rng.integers(2))
    shape, d = anat.shapes[side], anat.side_d(side)
    grade = int(rng.integers(3))
    fill = rng.uniform(*((0.16, 0.22), (0.25, 0.35), (0.38, 0.5))[grade])
    level = shape.base - fill * (shape.base - shape.apex)
    across = np.clip((d - shape.medial) / (shape.lateral - shape.medial), 0.0, 1.0)
    top = level - rng.uniform(0.05, 0.1) * across * across
    below = np.clip((anat.grid.v - top) / 0.02, 0.0, 1.0)
    fluid = _soft(anat.lung_sd[side], anat.grid.px) * below * (1.0 - heart)
    add = fluid * (anat.air + rng.uniform(0.04, 0.08))
    location = f"{_SIDES[side]} {'costophrenic angle' if rng.random() < 0.6 else 'lung base'}"
    return _Lesion("pleural effusion", location, grade, 0.0, fluid > 0.5, add, fluid)


def _pneumothorax(rng: np.random.Generator, anat: _Anatomy) -> _Lesion:
    """Apical/lateral air rim without lung markings outside a thin bright visceral pleural line."""
    side = int(rng.integers(2))
    shape, d, px = anat.shapes[side], anat.side_d(side), anat.grid.px
    grade = int(rng.integers(3))
    gap = rng.uniform(*((0.045, 0.06), (0.06, 0.08), (0.08, 0.11))[grade])
    extent = rng.uniform(*((0.4, 0.6), (0.55, 0.8), (0.75, 1.0))[grade])
    collapsed = replace(shape, apex=shape.apex + gap * rng.uniform(0.8, 1.2))
    inner = _lung_sd(collapsed, d, anat.grid.v, anat.domes[side], (gap, extent))
    rim = _soft(anat.lung_sd[side], px) * (1.0 - _soft(inner, px))
    line = np.exp(-((inner / (0.9 * px)) ** 2)) * np.clip(anat.lung_sd[side] / (2 * px) - 0.5, 0, 1)
    add = rng.uniform(0.25, 0.35) * line - rng.uniform(0.06, 0.1) * rim
    where = "apex" if grade == 0 or rng.random() < 0.5 else "hemithorax"
    location = f"{_SIDES[side]} {where}"
    return _Lesion("pneumothorax", location, grade, 0.0, rim > 0.5, add, rim)


def _coverage(avail: np.ndarray, y: int, x: int, radius: float) -> float:
    """Share of sample points of a disc that fall on ``avail``."""
    size = avail.shape[0]
    ys = np.clip(np.rint(y + radius * _RING[:, 1]).astype(int), 0, size - 1)
    xs = np.clip(np.rint(x + radius * _RING[:, 0]).astype(int), 0, size - 1)
    return float(avail[ys, xs].mean())


def _place(
    rng: np.random.Generator, anat: _Anatomy, avail: np.ndarray, radius: float, need: float
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


def _round_lesion(
    rng: np.random.Generator, anat: _Anatomy, avail: np.ndarray, name: str
) -> _Lesion:
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
    return _Lesion(name, location, 0, size_cm, inside > 0.5, add, None)


def _lobulation(rng: np.random.Generator, phi: np.ndarray, depth: float) -> np.ndarray:
    """Relative radius of an outline with 2, 3 and 5 lobes of random depth up to ``depth``."""
    wave = sum(
        rng.uniform(0.3, 1.0) * np.cos(k * phi + rng.uniform(0.0, math.tau)) for k in (2, 3, 5)
    )
    return 1.0 + depth * wave


def _consolidation(rng: np.random.Generator, anat: _Anatomy, avail: np.ndarray) -> _Lesion:
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
    rough = np.clip(0.25 * _smooth_noise(rng, size, 20), -0.3, 0.3)
    region = np.clip((field + rough - 0.4) / 0.35, 0.0, 1.0) * avail
    texture = 0.75 + 0.25 * np.clip(_smooth_noise(rng, size, min(36, size // 2)), -1.0, 1.0)
    add = rng.uniform(0.32, 0.48) * region * texture
    if rng.random() < 0.6:
        add = add - 0.3 * region * _bronchograms(rng, anat, y, x, reach)
    location = _zone_location(rng, zone)
    return _Lesion("consolidation", location, 0, 0.0, region > 0.5, add, region)


def _bronchograms(
    rng: np.random.Generator, anat: _Anatomy, y: int, x: int, reach: float
) -> np.ndarray:
    """Dark branching air-filled bronchi inside a consolidation (as a 0..1 image)."""
    grid = anat.grid
    u, v = float(grid.u[y, x]), float(grid.v[y, x])
    side = int(u > anat.mid)
    d = _SIGN[side] * (u - anat.mid)
    length = reach / (grid.scale * grid.size) * 0.6
    root = np.array([[d - length, v - 0.2 * length]])
    segments = _branches(rng, root, rng.uniform(-0.4, 0.4, 1), length, 3)
    image = _draw(grid, anat.mid, side, segments, 0.01)
    blurred = image.filter(ImageFilter.GaussianBlur(0.9 * grid.size / 224))
    return np.asarray(blurred, dtype=np.float32) / 255.0


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
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


def _sample_lesions(rng: np.random.Generator, anat: _Anatomy, present: set[str]) -> list[_Lesion]:
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
            avail &= ~_dilate(lesion.mask, margin)
            lesions.append(lesion)
    return lesions


# ----------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Case:
    """Everything that determines a case's image: rendering is a pure function of it."""

    anatomy: _Anatomy
    lesions: tuple[_Lesion, ...]
    seed: int  # of the exposure noise
    window: tuple[float, float, float, float]  # low, high, gamma, noise level


def _sample_case(rng: np.random.Generator, size: int, prevalence: float) -> _Case:
    present = {name for name in FINDINGS if rng.random() < prevalence}
    anat = _sample_anatomy(rng, size)
    lesions = _sample_lesions(rng, anat, present)
    window = (
        rng.uniform(0.1, 0.16),
        rng.uniform(0.84, 0.92),
        rng.uniform(0.9, 1.2),
        rng.uniform(0.01, 0.02),
    )
    return _Case(anat, tuple(lesions), int(rng.integers(2**63)), window)


def _render(case: _Case, bit_depth: int) -> np.ndarray:
    anat = case.anatomy
    density = anat.density.copy()
    keep = np.ones_like(density)
    for lesion in case.lesions:
        density += lesion.add
        if lesion.hide is not None:
            keep *= 1.0 - lesion.hide
    density += anat.markings * keep
    return _expose(density, case.seed, case.window, bit_depth)


def _expose(
    density: np.ndarray, seed: int, window: tuple[float, ...], bit_depth: int
) -> np.ndarray:
    """Attenuation curve, window, gain drift and quantum noise; quantised to the bit depth."""
    rng = np.random.default_rng(seed)
    low, high, gamma, noise = window
    signal = 1.0 - np.exp(-_MU * density)
    image = np.clip((signal - low) / (high - low), 0.0, 1.0) ** gamma
    size = density.shape[0]
    image *= 1.0 + 0.05 * _smooth_noise(rng, size, 5)
    image += noise * rng.standard_normal(density.shape, dtype=np.float32)
    peak = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return (np.clip(image, 0.0, 1.0) * peak + 0.5).astype(dtype)


# ----------------------------------------------------------------------------------- reports

_SYNONYMS = {
    "pleural effusion": ("pleural effusion", "effusion"),
    "pneumothorax": ("pneumothorax",),
    "consolidation": ("airspace consolidation", "consolidation"),
    "nodule": ("pulmonary nodule", "nodule", "nodular opacity"),
    "mass": ("mass", "lesion", "mass lesion"),
}
_GRADES = ("small", "moderate", "large")
_HEART_GRADES = ("mild", "moderate", "marked")
_DESCRIPTORS = {
    "consolidation": ("patchy", "dense", "focal", "confluent"),
    "nodule": ("small", "well-circumscribed", "rounded", "solid"),
    "mass": ("large", "lobulated", "dense"),
}
_STATED = ("There is {a} {np}.", "{a} {np} is present.", "{a} {np} is noted.", "{np}.")
_HEDGED = (
    "Possible {np}.",
    "{a} {np} cannot be excluded.",
    "Findings may represent {a} {np}.",
    "{a} {np} may be present.",
)
_COMPARED = (
    "New {np}.",
    "{np}, unchanged from prior.",
    "Compared with the prior study, there is {a} new {np}.",
    "{np}, new compared with the prior study.",
)
_HEART_STATED = (
    "Cardiomegaly.",
    "{mod} cardiomegaly.",
    "The heart is enlarged.",
    "The cardiac silhouette is enlarged.",
    "Enlarged cardiac silhouette.",
)
_HEART_HEDGED = (
    "Possible {mod} cardiomegaly.",
    "The heart may be {mod}ly enlarged.",
    "Cardiomegaly cannot be excluded.",
)
_HEART_COMPARED = (
    "{mod} cardiomegaly, unchanged from prior.",
    "The heart is enlarged compared with the prior study.",
    "New {mod} cardiomegaly.",
)
_NEGATIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("consolidation", "pleural effusion", "pneumothorax"),
        "No focal consolidation, pleural effusion, or pneumothorax.",
    ),
    (
        ("consolidation", "pleural effusion", "pneumothorax"),
        "There is no focal consolidation, pleural effusion, or pneumothorax.",
    ),
    (("pleural effusion", "pneumothorax"), "No pleural effusion or pneumothorax."),
    (("pleural effusion", "pneumothorax"), "There is no pleural effusion or pneumothorax."),
    (("pneumothorax", "pleural effusion"), "No pneumothorax or pleural effusion."),
    (("nodule", "mass"), "No pulmonary nodules or masses."),
    (("nodule", "mass"), "No suspicious pulmonary nodule or mass."),
    (("pleural effusion",), "No pleural effusion."),
    (("pleural effusion",), "No effusion is seen."),
    (("pleural effusion",), "The costophrenic angles are sharp."),
    (("pneumothorax",), "No pneumothorax."),
    (("pneumothorax",), "There is no pneumothorax."),
    (("consolidation",), "No focal consolidation."),
    (("consolidation",), "No focal airspace consolidation."),
    (("nodule",), "No pulmonary nodule is identified."),
    (("mass",), "No mass is seen."),
    (("cardiomegaly",), "Heart size is normal."),
    (("cardiomegaly",), "The cardiac silhouette is normal in size."),
    (("cardiomegaly",), "The cardiomediastinal silhouette is within normal limits."),
)
_BOILERPLATE = (
    "The mediastinal contours are unremarkable.",
    "No acute osseous abnormality.",
    "The visualized osseous structures are intact.",
    "The trachea is midline.",
    "No subdiaphragmatic free air.",
    "The hila are unremarkable.",
)
_NORMAL_IMPRESSIONS = (
    "No acute cardiopulmonary process.",
    "No acute cardiopulmonary abnormality.",
    "Normal chest radiograph.",
)
_UNLOCATED = 0.3  # share of findings reported without their site ("Small pneumothorax.")
_ORDER = {name: rank for rank, name in enumerate(("consolidation", "nodule", "mass"))}
_ORDER.update({"pleural effusion": 3, "pneumothorax": 3, "cardiomegaly": 4})


def _sentence(name: str, location: str, hedged: bool) -> str:
    """The ground-truth sentence of a present finding ("There is/may be {name} of {location}.")."""
    verb = "may be" if hedged else "is"
    where = f" of {location}" if location else ""
    return f"There {verb} {name}{where}."


def _tidy(text: str) -> str:
    """Fix articles before vowels, drop doubled spaces and capitalise the first letter."""
    text = re.sub(r"\b([Aa]) ([aeiou])", r"\1n \2", re.sub(r" +", " ", text).strip())
    return text[0].upper() + text[1:]


def _noun_phrase(rng: np.random.Generator, lesion: _Lesion, location: str) -> str:
    """E.g. "small effusion at the left costophrenic angle", "2.4 cm nodule" (no location)."""
    if lesion.name in ("pleural effusion", "pneumothorax"):
        modifier = _GRADES[lesion.grade]
    elif lesion.name != "consolidation" and rng.random() < 0.5:
        modifier = f"{lesion.size_cm:.1f} cm"
    else:
        modifier = str(rng.choice(_DESCRIPTORS[lesion.name]))
    synonym = rng.choice(_SYNONYMS[lesion.name])
    if not location:
        return f"{modifier} {synonym}"
    preposition = "at" if re.search(r"apex|angle|base", location) else "in"
    return f"{modifier} {synonym} {preposition} the {location}"


def _statement(
    rng: np.random.Generator, lesion: _Lesion, style: str, location: str
) -> tuple[str, str]:
    """(finding statement, impression line) for a present finding in a style, at a location."""
    if lesion.name == "cardiomegaly":
        templates = {"hedged": _HEART_HEDGED, "compared": _HEART_COMPARED}.get(style, _HEART_STATED)
        mod = _HEART_GRADES[lesion.grade]
        text = str(rng.choice(templates)).format(mod=mod)
        short = f"Possible {mod} cardiomegaly." if style == "hedged" else f"{mod} cardiomegaly."
        return _tidy(text), _tidy(short)
    templates = {"hedged": _HEDGED, "compared": _COMPARED}.get(style, _STATED)
    phrase = _noun_phrase(rng, lesion, location)
    article = "" if lesion.name == "consolidation" else "a"
    text = str(rng.choice(templates)).format(a=article, np=phrase)
    short = f"Possible {phrase}." if style == "hedged" else f"{phrase}."
    return _tidy(text), _tidy(short)


def _negations(rng: np.random.Generator, absent: list[str]) -> list[tuple[tuple[str, ...], str]]:
    """Cover a random subset of the absent findings with negative statements."""
    left = {name for name in absent if rng.random() < 0.6}
    chosen = []
    while left:
        options = [item for item in _NEGATIONS if set(item[0]) <= left]
        names, text = options[int(rng.integers(len(options)))]
        chosen.append((names, text))
        left -= set(names)
    return chosen


def _write_report(rng: np.random.Generator, lesions: tuple[_Lesion, ...]) -> tuple[str, list[str]]:
    """Free-text report and its ground-truth finding-sentences (in order of mention)."""
    prior = rng.random() < 0.5
    items: list[tuple[float, str, list[str]]] = []
    impressions = []
    for lesion in lesions:
        roll = rng.random()
        subtle = lesion.grade == 0 and lesion.name != "mass"
        style = (
            "hedged" if subtle and roll < 0.25 else "compared" if prior and roll < 0.6 else "stated"
        )
        location = lesion.location if rng.random() >= _UNLOCATED else ""
        text, short = _statement(rng, lesion, style, location)
        sentence = _sentence(lesion.name, location, style == "hedged")
        items.append((_ORDER[lesion.name] + rng.random(), text, [sentence]))
        impressions.append(short)
    absent = [name for name in FINDINGS if name not in {lesion.name for lesion in lesions}]
    for names, text in _negations(rng, absent):
        rank = min(_ORDER[name] for name in names) + rng.random()
        items.append((rank, text, [f"There is no {name}." for name in names]))
    for text in rng.choice(_BOILERPLATE, size=int(rng.integers(1, 4)), replace=False):
        items.append((5 + rng.random(), str(text), []))
    items.sort(key=lambda item: item[0])
    findings = " ".join(text for _, text, _ in items)
    comparison = "Prior chest radiograph." if prior else "None."
    report = (
        f"EXAMINATION: Chest radiograph, PA view.\nCOMPARISON: {comparison}\n"
        f"FINDINGS: {findings}\nIMPRESSION: {_impression(rng, impressions)}"
    )
    return report, [sentence for _, _, group in items for sentence in group]


def _impression(rng: np.random.Generator, lines: list[str]) -> str:
    """The positives (numbered when several) or a normal summary."""
    if not lines:
        return str(rng.choice(_NORMAL_IMPRESSIONS))
    if len(lines) == 1:
        return lines[0]
    return " ".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


# ----------------------------------------------------------------------------------- public API


def _check(size: int, prevalence: float, bit_depth: int) -> None:
    if size < 64:
        raise ValueError(f"size must be >= 64 pixels, got {size}")
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must be within [0, 1], got {prevalence}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")


def _box(lesion: _Lesion) -> dict:
    """The finding's mask bounding box, inclusive pixel coordinates."""
    rows = np.flatnonzero(lesion.mask.any(axis=1))
    cols = np.flatnonzero(lesion.mask.any(axis=0))
    return {
        "finding": lesion.name,
        "location": lesion.location,
        "x1": int(cols[0]),
        "y1": int(rows[0]),
        "x2": int(cols[-1]),
        "y2": int(rows[-1]),
    }


def generate_case(
    rng: np.random.Generator, size: int = 224, prevalence: float = 0.3, bit_depth: int = 8
) -> PhantomCase:
    """Draw one synthetic PA chest radiograph with its report, sentences, labels, boxes and masks.

    Each finding in FINDINGS is present independently with probability ``prevalence``. The image
    is ``size`` x ``size`` uint8 (``bit_depth=8``) or uint16 over the full 16-bit range.
    """
    _check(size, prevalence, bit_depth)
    case = _sample_case(rng, size, prevalence)
    report, sentences = _write_report(rng, case.lesions)
    by_name = {lesion.name: lesion for lesion in case.lesions}
    ordered = [by_name[name] for name in FINDINGS if name in by_name]
    return PhantomCase(
        image=_render(case, bit_depth),
        report=report,
        sentences=sentences,
        labels={name: int(name in by_name) for name in FINDINGS},
        boxes=[_box(lesion) for lesion in ordered],
        masks={lesion.name: lesion.mask for lesion in ordered},
    )


def _split_names(count: int, seed: int, splits: tuple[float, float, float]) -> list[str]:
    """Exact split counts from the fractions, shuffled deterministically from the seed."""
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6:
        raise ValueError(f"splits must be three non-negative fractions summing to 1, got {splits}")
    train = round(count * splits[0])
    val = min(round(count * splits[1]), count - train)
    names = np.array(["train"] * train + ["val"] * val + ["test"] * (count - train - val))
    return np.random.default_rng([seed, count, 1]).permutation(names).tolist()


def _slug(name: str) -> str:
    return name.replace(" ", "_")


def write_dataset(
    out: str | Path,
    count: int,
    size: int = 224,
    seed: int = 0,
    prevalence: float = 0.3,
    splits: tuple[float, float, float] = (0.7, 0.1, 0.2),
    bit_depth: int = 8,
) -> Path:
    """Write images/NNNNNN.png, masks/NNNNNN_<finding_slug>.png (0/255 PNG) and manifest.csv.

    Returns the manifest path. Case ``i`` is drawn from ``np.random.default_rng([seed, i])``,
    so any subset regenerates identically; each case's split depends on ``seed`` and ``count``.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    _check(size, prevalence, bit_depth)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    manifest = out / "manifest.csv"
    columns = ["image", "report", "sentences", "split", "patient_id", *FINDINGS, "boxes", "masks"]
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for index, split in enumerate(_split_names(count, seed, splits)):
            case = generate_case(np.random.default_rng([seed, index]), size, prevalence, bit_depth)
            writer.writerow(_write_case(out, index, split, case))
    return manifest


def _write_case(out: Path, index: int, split: str, case: PhantomCase) -> dict:
    """Save one case's PNGs and return its manifest row."""
    stem = f"{index:06d}"
    Image.fromarray(case.image).save(out / "images" / f"{stem}.png", compress_level=1)
    masks = {}
    for name, mask in case.masks.items():
        relative = f"masks/{stem}_{_slug(name)}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / relative, compress_level=1)
        masks[name] = relative
    return {
        "image": f"images/{stem}.png",
        "report": case.report,
        "sentences": json.dumps(case.sentences),
        "split": split,
        "patient_id": f"P{index:06d}",
        **case.labels,
        "boxes": json.dumps(case.boxes),
        "masks": json.dumps(masks),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m radzero.data.phantom",
        description="Write a seeded set of synthetic chest radiographs with reports and boxes.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=int, required=True, help="number of images (>= 1)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (>= 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prevalence", type=float, default=0.3, help="per-finding probability")
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: write the dataset and print a one-line summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if args.size < 64:
        parser.error(f"--size must be >= 64, got {args.size}")
    if not 0.0 <= args.prevalence <= 1.0:
        parser.error(f"--prevalence must be within [0, 1], got {args.prevalence}")
    manifest = write_dataset(
        args.out, args.count, args.size, args.seed, args.prevalence, bit_depth=args.bit_depth
    )
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    positives = ", ".join(f"{name} {sum(int(r[name]) for r in rows)}" for name in FINDINGS)
    print(f"wrote {len(rows)} cases to {manifest}; positives: {positives}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

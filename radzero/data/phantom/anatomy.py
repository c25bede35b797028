"""A normal chest as density layers: body, bones, mediastinum, heart, lungs and their vessels.

The layers are in anatomy coordinates (:mod:`radzero.data.phantom.geometry`); bright means dense
(bone, fluid) and dark means air once :mod:`radzero.data.phantom.rendering` exposes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from radzero.data.phantom.geometry import (
    SIGN,
    Grid,
    LungShape,
    hemidiaphragm,
    make_grid,
    signed_lung_distance,
    smooth_noise,
    soft,
)

_HEART_AIR = 0.95  # share of the lung air behind the heart that its shadow hides


@dataclass(frozen=True)
class Anatomy:
    """A normal chest: density layers plus what findings need to place themselves."""

    grid: Grid
    mid: float
    shapes: tuple[LungShape, LungShape]
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
        return SIGN[side] * (self.grid.u - self.mid)


def _sample_lung(rng: np.random.Generator, base: float, left: bool) -> LungShape:
    base = base + (0.02 if left else 0.0)
    return LungShape(
        apex=rng.uniform(0.1, 0.15),
        base=base,
        dome=base - rng.uniform(0.08, 0.12),
        dome_d=rng.uniform(0.14, 0.19),
        lateral=rng.uniform(0.33, 0.38) - (0.01 if left else 0.0),
        medial=rng.uniform(0.045, 0.06) + (0.005 if left else 0.0),
        centre=rng.uniform(0.14, 0.17),
        wobble=(rng.uniform(0.0, 0.008), rng.uniform(4.0, 9.0), rng.uniform(0.0, math.tau)),
    )


def sample_anatomy(rng: np.random.Generator, size: int) -> Anatomy:
    """A random normal chest on a ``size`` x ``size`` grid."""
    angle = float(np.clip(rng.normal(0.0, 0.025), -0.05, 0.05))
    shift = (float(rng.normal(0.0, 0.012)), float(rng.normal(0.0, 0.012)))
    grid = make_grid(size, rng.uniform(0.94, 1.04), angle, shift)
    mid = 0.5 + rng.normal(0.0, 0.006)
    base = rng.uniform(0.72, 0.78)
    shapes = (_sample_lung(rng, base, False), _sample_lung(rng, base, True))
    carina = rng.uniform(0.28, 0.33)
    domes = tuple(hemidiaphragm(shapes[s], SIGN[s] * (grid.u - mid)) for s in (0, 1))
    diaphragm = np.where(grid.u > mid, domes[1], domes[0])
    lung_sd = _lung_fields(rng, grid, mid, shapes, domes, carina)
    lungs = soft(lung_sd[0], grid.px) + soft(lung_sd[1], grid.px)
    body, body_density = _body(rng, grid, mid, shapes, diaphragm)
    texture = 1.0 + 0.035 * smooth_noise(rng, size, min(48, size // 2))
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
    return Anatomy(
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
    grid: Grid,
    mid: float,
    shapes: tuple[LungShape, ...],
    domes: tuple[np.ndarray, ...],
    carina: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances of both lungs; the aortic knob indents the left lung's medial border."""
    right, left = (
        signed_lung_distance(shapes[s], SIGN[s] * (grid.u - mid), grid.v, domes[s]) for s in (0, 1)
    )
    knob_u = mid + shapes[1].medial + rng.uniform(-0.005, 0.01)
    knob_v = carina - rng.uniform(0.0, 0.03)
    knob = np.hypot(grid.u - knob_u, grid.v - knob_v) - rng.uniform(0.02, 0.03)
    return right, np.minimum(left, knob)


def _zones(
    grid: Grid, shapes: tuple[LungShape, ...], lung_sd: tuple[np.ndarray, ...]
) -> np.ndarray:
    zone = np.full(grid.u.shape, -1, dtype=np.int8)
    for side, shape in enumerate(shapes):
        t = (grid.v - shape.apex) / (shape.base - shape.apex)
        third = np.clip(np.floor(3.0 * t), 0, 2).astype(np.int8)
        zone = np.where(lung_sd[side] > 0, side * 3 + third, zone)
    return zone


def _body(
    rng: np.random.Generator,
    grid: Grid,
    mid: float,
    shapes: tuple[LungShape, ...],
    diaphragm: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft body mask and soft-tissue density (thicker centrally, denser below the diaphragm)."""
    d = np.abs(grid.u - mid)
    torso = max(s.lateral for s in shapes) + rng.uniform(0.04, 0.07)
    neck = rng.uniform(0.09, 0.12)
    shoulder = np.clip((grid.v - 0.01) / 0.13, 0.0, 1.0)
    half = neck + (torso - neck) * shoulder * shoulder * (3.0 - 2.0 * shoulder)
    body = soft(half - d, grid.px)
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
    rng: np.random.Generator, grid: Grid, mid: float, shapes: tuple[LungShape, ...]
) -> np.ndarray:
    """Posterior and anterior ribs, clavicles and the spine."""
    d, v, px = np.abs(grid.u - mid), grid.v, grid.px
    apex = min(s.apex for s in shapes)
    wall = max(s.lateral for s in shapes) + 0.03
    lateral = soft(wall - d, 3 * px)
    spacing = rng.uniform(0.062, 0.072)
    bend = rng.uniform(2.0, 2.6)
    posterior = _stripes(v + 0.5 * d - bend * d * d, apex - 0.05, spacing, 10, 0.011, px)
    anterior = _stripes(v + 0.55 * d, apex + 0.12, spacing * 1.05, 6, 0.009, px)
    ribs = posterior * soft(d - 0.035, 2 * px) + 0.5 * anterior * np.clip((d - 0.1) / 0.06, 0, 1)
    return rng.uniform(0.09, 0.13) * ribs * lateral + _clavicles(rng, d, v, px) + _spine(d, v, px)


def _clavicles(rng: np.random.Generator, d: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
    top = rng.uniform(0.14, 0.18)
    t = np.clip((d - 0.03) / 0.27, 0.0, 1.0)
    centre = top + 0.03 - 0.06 * t + 0.012 * np.sin(math.tau * t)
    half = 0.017 - 0.005 * t
    inside = soft(half - np.abs(v - centre), px) * soft(0.3 - d, 2 * px) * soft(d - 0.03, px)
    return rng.uniform(0.22, 0.3) * inside


def _spine(d: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
    vertebrae = 0.85 + 0.15 * np.cos(v * (math.tau / 0.045))
    return 0.28 * soft(0.035 - d, 2 * px) * vertebrae


def _mediastinum(
    rng: np.random.Generator,
    grid: Grid,
    mid: float,
    shapes: tuple[LungShape, ...],
    carina: float,
) -> np.ndarray:
    """Trachea (air), hila and a gastric air bubble."""
    u, v, px = grid.u, grid.v, grid.px
    trachea = soft(0.017 - np.abs(u - mid), px) * soft(carina - v, 3 * px)
    hila = sum(
        np.exp(-((u - mid - 0.1 * SIGN[s]) ** 2 + (v - carina - 0.1 - 0.02 * s) ** 2) / 0.0012)
        for s in (0, 1)
    )
    left = shapes[1]
    bubble_v = float(hemidiaphragm(left, np.full(1, 0.15))[0]) + 0.045
    bubble = soft(1.0 - np.hypot((u - mid - 0.15) / 0.04, (v - bubble_v) / 0.022), 0.3)
    return 0.12 * hila - 0.22 * trachea - rng.uniform(0.0, 0.25) * bubble


def _heart(
    rng: np.random.Generator,
    grid: Grid,
    mid: float,
    shapes: tuple[LungShape, ...],
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
    heart = soft((1.0 - r) * right, grid.px) * below
    profile = 0.6 + 0.4 * np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0))
    return heart, heart * (rng.uniform(0.1, 0.16) * profile + _HEART_AIR * air)


def branches(
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


def draw_tree(grid: Grid, mid: float, side: int, segments: np.ndarray, width: float) -> Image.Image:
    """Rasterise tree segments (anatomy units) into a new 8-bit image."""
    image = Image.new("L", (grid.size, grid.size))
    _draw_into(ImageDraw.Draw(image), grid, mid, side, segments, width)
    return image


def _draw_into(
    draw: ImageDraw.ImageDraw, grid: Grid, mid: float, side: int, seg: np.ndarray, width: float
) -> None:
    x0, y0 = grid.to_pixels(mid + SIGN[side] * seg[:, 0], seg[:, 1])
    x1, y1 = grid.to_pixels(mid + SIGN[side] * seg[:, 2], seg[:, 3])
    widths = np.maximum(1, np.rint(width * grid.scale * grid.size * seg[:, 4])).astype(int)
    fills = (255 * (0.25 + 0.75 * seg[:, 4])).astype(int)
    ends = np.column_stack([x0, y0, x1, y1]).tolist()
    for line, fill, pixels in zip(ends, fills.tolist(), widths.tolist(), strict=True):
        draw.line(line, fill=fill, width=pixels)


def _vessels(
    rng: np.random.Generator,
    grid: Grid,
    mid: float,
    shapes: tuple[LungShape, ...],
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
        _draw_into(draw, grid, mid, side, branches(rng, roots, angles, 0.085, 5), 0.013)
    blurred = image.filter(ImageFilter.GaussianBlur(0.8 * grid.size / 224))
    return np.asarray(blurred, dtype=np.float32) / 255.0

"""Coordinates and shape primitives shared by the anatomy and the lesions.

Anatomy is drawn in "anatomy coordinates" (u to the right, v down, both 0..1 over the image
before a small per-case rotation, shift and scale). The view is posteroanterior: the patient's
right is on the image left. Side index 0 is the patient's right lung, 1 the left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIDES = ("right", "left")  # patient sides, indexed like the lungs
SIGN = (-1.0, 1.0)  # patient's right lung lies at u < midline


@dataclass(frozen=True)
class Grid:
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
        """Pixel coordinates (x, y; pixel centres at integers) of anatomy points."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        x = self.scale * (c * (u - 0.5) - s * (v - 0.5)) + 0.5 + self.shift[0]
        y = self.scale * (s * (u - 0.5) + c * (v - 0.5)) + 0.5 + self.shift[1]
        return x * self.size - 0.5, y * self.size - 0.5


def make_grid(size: int, scale: float, angle: float, shift: tuple[float, float]) -> Grid:
    """The grid of a ``size`` px image of anatomy scaled, rotated by ``angle`` and shifted."""
    p = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    x, y = p[None, :] - shift[0], p[:, None] - shift[1]
    c, s = math.cos(angle), math.sin(angle)
    u = 0.5 + (c * x + s * y) / scale
    v = 0.5 + (c * y - s * x) / scale
    return Grid(size, u.astype(np.float32), v.astype(np.float32), scale, angle, shift)


@dataclass(frozen=True)
class LungShape:
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


def hemidiaphragm(shape: LungShape, d: np.ndarray) -> np.ndarray:
    """v of the hemidiaphragm at distance d from the midline."""
    rise = shape.base - shape.dome
    lateral = ((d - shape.dome_d) / (shape.lateral - shape.dome_d)) ** 2
    medial = 0.3 * ((shape.dome_d - d) / shape.dome_d) ** 2
    return shape.dome + rise * np.where(d > shape.dome_d, lateral, medial)


def signed_lung_distance(
    shape: LungShape,
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


def soft(sd: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased inside-mask from a signed distance (one pixel wide edge)."""
    return np.clip(sd / px + 0.5, 0.0, 1.0)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean unit-ish random field varying over about size/cells pixels."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)

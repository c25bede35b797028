"""A case (anatomy, findings, exposure) and its image: the layers' summed density goes through
an exponential attenuation curve, so bright means dense (bone, fluid) and dark means air."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radzero.data.phantom.anatomy import Anatomy, sample_anatomy
from radzero.data.phantom.geometry import smooth_noise
from radzero.data.phantom.lesions import FINDINGS, Lesion, sample_lesions

_MU = 1.2  # attenuation of the density-to-brightness curve


@dataclass(frozen=True)
class Case:
    """Everything that determines a case's image: rendering is a pure function of it."""

    anatomy: Anatomy
    lesions: tuple[Lesion, ...]
    seed: int  # of the exposure noise
    window: tuple[float, float, float, float]  # low, high, gamma, noise level


def sample_case(rng: np.random.Generator, size: int, prevalence: float) -> Case:
    """A chest with each finding present with probability ``prevalence``, and its exposure."""
    present = {name for name in FINDINGS if rng.random() < prevalence}
    anat = sample_anatomy(rng, size)
    lesions = sample_lesions(rng, anat, present)
    window = (
        rng.uniform(0.1, 0.16),
        rng.uniform(0.84, 0.92),
        rng.uniform(0.9, 1.2),
        rng.uniform(0.01, 0.02),
    )
    return Case(anat, tuple(lesions), int(rng.integers(2**63)), window)


def render(case: Case, bit_depth: int) -> np.ndarray:
    """The case's radiograph: findings added, markings hidden where they hide them, exposed."""
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
    image *= 1.0 + 0.05 * smooth_noise(rng, size, 5)
    image += noise * rng.standard_normal(density.shape, dtype=np.float32)
    peak = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return (np.clip(image, 0.0, 1.0) * peak + 0.5).astype(dtype)

"""Whole cases (image, report, sentences, labels, boxes, masks) and the dataset folder."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from radzero.data.phantom.lesions import FINDINGS, Lesion
from radzero.data.phantom.rendering import render, sample_case
from radzero.data.phantom.reports import write_report

# Bumped whenever the same (count, size, seed, prevalence) would draw different cases, so that
# cached phantom sets are regenerated. 2: 30 % of findings reported without their site.
GENERATOR_VERSION = 2


@dataclass
class PhantomCase:
    """One synthetic radiograph with its report and ground truth."""

    image: np.ndarray
    report: str
    sentences: list[str]
    labels: dict[str, int]
    boxes: list[dict]
    masks: dict[str, np.ndarray]


def _check(size: int, prevalence: float, bit_depth: int) -> None:
    if size < 64:
        raise ValueError(f"size must be >= 64 pixels, got {size}")
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must be within [0, 1], got {prevalence}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")


def _box(lesion: Lesion) -> dict:
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
    case = sample_case(rng, size, prevalence)
    report, sentences = write_report(rng, case.lesions)
    by_name = {lesion.name: lesion for lesion in case.lesions}
    ordered = [by_name[name] for name in FINDINGS if name in by_name]
    return PhantomCase(
        image=render(case, bit_depth),
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
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write images/NNNNNN.png, masks/NNNNNN_<finding_slug>.png (0/255 PNG) and manifest.csv.

    Returns the manifest path; ``progress`` is called with the number of cases written. Case
    ``i`` is drawn from ``np.random.default_rng([seed, i])``, so any subset regenerates
    identically; each case's split depends on ``seed`` and ``count``.
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
            if progress is not None:
                progress(index + 1)
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

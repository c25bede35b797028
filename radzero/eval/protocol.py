"""Which rows, classes and findings a benchmark is scored on: the evaluation protocol as data.

:func:`plan` turns a benchmark's common manifest (:func:`radzero.data.benchmarks.read`) into a
:class:`Protocol`: the evaluated rows, the rows a Dice threshold is chosen on (the benchmark's
validation split, or a held-out fraction of the evaluated images when it publishes none), the
classes scored by AUC and the findings scored by segmentation. See docs/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from radzero.data import benchmarks
from radzero.data.hashing import fingerprint
from radzero.eval.scoring import TruthBuilder

CHEXPERT_COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


@dataclass(frozen=True)
class Segmentation:
    """The findings a benchmark is segmented on, and whether its masks are its boxes (RSNA)."""

    findings: tuple[str, ...]
    masks_from_boxes: bool = False


SEGMENTATION: dict[str, Segmentation] = {
    "siim": Segmentation(("Pneumothorax",)),
    "rsna": Segmentation(("Pneumonia",), masks_from_boxes=True),
    "phantom": Segmentation(benchmarks.READERS["phantom"].pathologies),
}


@dataclass
class Protocol:
    """One benchmark's evaluation: rows, classes, segmented findings and the threshold rows."""

    benchmark: str
    evaluated: pd.DataFrame
    threshold: pd.DataFrame
    threshold_from: str
    classes: list[str]
    segmentation: Segmentation | None

    def truth_builder(self, size: int, template: str) -> TruthBuilder:
        """Ground truth on a ``size`` grid, boxes queried as ``template.format(finding)``."""
        return TruthBuilder(
            size=size,
            template=template,
            segment=self.segmentation.findings if self.segmentation else (),
            masks_from_boxes=bool(self.segmentation and self.segmentation.masks_from_boxes),
            phrases=self.benchmark == "mscxr",
        )


def plan(
    frame: pd.DataFrame,
    benchmark: str,
    root: str,
    split: str = "test",
    threshold_split: str = "val",
    val_fraction: float = 0.2,
    classes: Sequence[str] | None = None,
    max_images: int | None = None,
) -> Protocol:
    """The protocol of ``benchmark`` (read from ``root``) on its ``split`` rows.

    ``classes`` default to CheXpert's five competition classes on CheXpert, else every class of
    the benchmark with a positive among the evaluated rows. The Dice threshold is chosen on
    ``threshold_split``; when the benchmark has none, a ``val_fraction`` of the evaluated
    images is held out for it, drawn from each image's path under ``root`` (the same images
    wherever the benchmark is stored).
    """
    evaluated = frame[frame["split"] == split]
    if evaluated.empty:
        raise ValueError(
            f"{benchmark} under {root} has no {split!r} rows "
            f"(splits: {sorted(frame['split'].unique())})"
        )
    segmentation = SEGMENTATION.get(benchmark)
    threshold = frame[frame["split"] == threshold_split]
    source = f"the {threshold_split!r} split"
    if segmentation is None:
        threshold, source = frame.iloc[:0], "no threshold"
    elif threshold.empty:
        held = np.array(
            [_held_out(image, root, val_fraction) for image in evaluated["image"]], dtype=bool
        )
        evaluated, threshold = evaluated[~held], evaluated[held]
        source = f"held out: {val_fraction:.0%} of the {split!r} images"
    if max_images is not None:
        evaluated, threshold = evaluated.head(max_images), threshold.head(max_images)
    return Protocol(
        benchmark=benchmark,
        evaluated=evaluated,
        threshold=threshold,
        threshold_from=source,
        classes=_classes(evaluated, benchmark, classes),
        segmentation=segmentation,
    )


def _held_out(image: str, root: str, fraction: float) -> bool:
    relative = image[len(root) :] if image.startswith(root) else image
    return int(fingerprint(relative.strip("/"), length=8), 16) / 2**32 < fraction


def _classes(evaluated: pd.DataFrame, benchmark: str, chosen: Sequence[str] | None) -> list[str]:
    labels = list(benchmarks.READERS[benchmark].pathologies)
    if chosen:
        missing = sorted(set(chosen) - set(labels))
        if missing:
            raise ValueError(f"config classes {missing} are not classes of {benchmark}")
        return list(chosen)
    if benchmark == "chexpert":
        return list(CHEXPERT_COMPETITION)
    return [c for c in labels if (evaluated[c] == 1).any()]

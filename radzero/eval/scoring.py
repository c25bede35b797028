"""Zero-shot scoring of manifest rows, batch by batch, and the benchmark metrics from the scores.

:func:`score_batch` turns a batch of preprocessed images and their ground truth into one flat
record per image: classification probabilities, pointing-game hits, Dice at every candidate
threshold and pixel-score histograms. Records are small (no maps), so a Ray Data pass over a
whole benchmark collects them on the driver, and :func:`summarise` computes the metrics.
The same two functions run in a notebook over a pandas manifest.

Ground truth is brought to the model's input grid: images are resized directly (no crop or
padding), so a box scales by ``S / width`` and ``S / height``, and a mask is resized with
nearest neighbours. Maps are compared on that grid.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from radzero import storage
from radzero.data.benchmarks import decode_rle
from radzero.eval import metrics
from radzero.model.radzero import RadZero

RECORD_KEYS = (
    "probabilities",
    "pointing_findings",
    "pointing_hits",
    "pointing_chance",
    "dice_findings",
    "dice",
    "pixels_positive",
    "pixels_negative",
)
PIXEL_BINS = 1000  # pixel AUC from histograms: pixels within 0.001 of each other count as ties


@dataclass
class Truth:
    """One image's ground truth on the model's input grid."""

    boxes: list[tuple[str, str, tuple[int, int, int, int]]] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def targets(self) -> dict[tuple[str, str], list[tuple[int, int, int, int]]]:
        """Pointing-game samples: (finding, query) -> its boxes; the map's peak hits when it
        falls in any of them."""
        grouped: dict[tuple[str, str], list[tuple[int, int, int, int]]] = {}
        for finding, query, box in self.boxes:
            grouped.setdefault((finding, query), []).append(box)
        return grouped


@dataclass
class TruthBuilder:
    """Builds a :class:`Truth` from a manifest row's ``boxes``, ``rle``, ``masks``, ``height``
    and ``width``.

    Boxes are pointing-game targets, queried as ``template.format(finding)`` or, with
    ``phrases``, by the box's own phrase (MS-CXR). ``segment`` names the findings scored by
    segmentation; a mask comes from the row's ``masks`` (finding -> mask image URI), from its
    RLE (the first segmented finding; SIIM) or, with ``masks_from_boxes``, from the union of
    the finding's boxes (RSNA).
    """

    size: int
    template: str
    segment: tuple[str, ...] = ()
    masks_from_boxes: bool = False
    phrases: bool = False

    @property
    def queries(self) -> dict[str, str]:
        """Each segmented finding and its query."""
        return {finding: self.template.format(finding) for finding in self.segment}

    def build(self, row: dict, shape: tuple[int, int]) -> Truth:
        """``row`` holds ``boxes`` and optionally ``rle``, ``masks``, ``height``, ``width``;
        ``shape`` is the decoded image's (height, width), used when the row does not give it."""
        height = int(row.get("height") or shape[0])
        width = int(row.get("width") or shape[1])
        truth = Truth()
        for box in row.get("boxes") or []:
            cells = box_on_grid(
                (box["x1"], box["y1"], box["x2"], box["y2"]), width, height, self.size
            )
            if self.masks_from_boxes:
                blank = np.zeros((self.size, self.size), bool)
                mask = truth.masks.setdefault(box["finding"], blank)
                mask[cells[1] : cells[3] + 1, cells[0] : cells[2] + 1] = True
                continue
            query = box["phrase"] if self.phrases else self.template.format(box["finding"])
            truth.boxes.append((box["finding"], query, cells))
        if row.get("rle") and self.segment:
            decoded = decode_rle(row["rle"], height, width)
            truth.masks[self.segment[0]] = mask_on_grid(decoded, self.size)
        for finding, uri in (row.get("masks") or {}).items():
            mask = np.asarray(Image.open(io.BytesIO(storage.read_bytes(uri)))) > 0
            truth.masks[finding] = mask_on_grid(mask, self.size)
        return truth


def box_on_grid(
    box: Sequence[float], width: int, height: int, size: int
) -> tuple[int, int, int, int]:
    """Inclusive (x1, y1, x2, y2) in original pixels -> inclusive cells of a ``size`` grid."""
    x1, y1, x2, y2 = box
    sx, sy = size / width, size / height
    return (
        int(np.floor(x1 * sx)),
        int(np.floor(y1 * sy)),
        min(size - 1, int(np.ceil((x2 + 1) * sx)) - 1),
        min(size - 1, int(np.ceil((y2 + 1) * sy)) - 1),
    )


def mask_on_grid(mask: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask resized to ``size`` x ``size`` with nearest neighbours."""
    tensor = torch.as_tensor(np.asarray(mask, dtype=np.uint8))[None, None].float()
    return F.interpolate(tensor, size=(size, size), mode="nearest")[0, 0].numpy() > 0.5


@torch.no_grad()
def score_batch(
    model: RadZero,
    pixels: torch.Tensor | None,
    truths: Sequence[Truth],
    classes: Sequence[str],
    templates: Sequence[str],
    segment: dict[str, str] | None = None,
    thresholds: Sequence[float] = metrics.THRESHOLDS,
    *,
    features: torch.Tensor | None = None,
) -> list[dict]:
    """One record per image: ``probabilities`` over ``classes``; ``pointing`` hits of the map
    of each boxed finding (or phrase) in any of its boxes, with the share of the grid those boxes
    cover (a uniformly random peak's chance of a hit); for each finding of ``segment``
    (finding -> query), ``dice`` at every threshold when the image has it, and pixel-score
    histograms ``pixels_positive`` and ``pixels_negative`` (the mask may be empty). Cached
    backbone ``features`` may stand in for ``pixels``."""
    model.eval()
    records = [empty_record() for _ in truths]
    if classes:
        probabilities = model.classify(
            list(classes), list(templates), images=pixels, features=features
        )
        probabilities = probabilities.float().cpu().numpy()
        for record, row in zip(records, probabilities, strict=True):
            record["probabilities"] = row.tolist()
    segment = segment or {}
    queries = sorted(
        {query for truth in truths for _, query, _ in truth.boxes} | set(segment.values())
    )
    maps = {}
    if queries:
        grid = model.similarity_maps(queries, images=pixels, features=features)
        maps = {query: grid[:, j].float().cpu().numpy() for j, query in enumerate(queries)}
    size = model.preprocess.image_size
    for i, (record, truth) in enumerate(zip(records, truths, strict=True)):
        targets = truth.targets()
        record["pointing_findings"] = [finding for finding, _ in targets]
        record["pointing_hits"] = [
            metrics.pointing_hit(maps[query][i], boxes) for (_, query), boxes in targets.items()
        ]
        record["pointing_chance"] = [
            metrics.box_fraction(boxes, (size, size)) for boxes in targets.values()
        ]
        positive = np.zeros(PIXEL_BINS, np.int64)
        negative = np.zeros(PIXEL_BINS, np.int64)
        for finding, query in segment.items():
            heatmap = maps[query][i]
            mask = truth.masks.get(finding, np.zeros((size, size), bool))
            positive += _histogram(heatmap[mask])
            negative += _histogram(heatmap[~mask])
            if mask.any():
                record["dice_findings"].append(finding)
                record["dice"].append(metrics.dice_curve([heatmap], [mask], thresholds)[0].tolist())
        if segment:
            record["pixels_positive"] = positive.tolist()
            record["pixels_negative"] = negative.tolist()
    return records


def empty_record() -> dict:
    """A record with every key of :func:`score_batch` and nothing scored (same types)."""
    return {key: [] for key in RECORD_KEYS}


def _histogram(values: np.ndarray) -> np.ndarray:
    bins = np.clip((values * PIXEL_BINS).astype(np.int64), 0, PIXEL_BINS - 1)
    return np.bincount(bins, minlength=PIXEL_BINS)


def summarise(
    records: pd.DataFrame,
    classes: Sequence[str],
    threshold_records: pd.DataFrame | None = None,
    by_frequency: bool = False,
    thresholds: Sequence[float] = metrics.THRESHOLDS,
) -> dict:
    """The benchmark's metrics from :func:`score_batch` records joined to their manifest rows
    (the class columns): "auc" (and with ``by_frequency``, PadChest's "groups"), "pointing" when
    there are boxes, "segmentation" when ``threshold_records`` are given (the Dice threshold is
    chosen on them)."""
    result: dict = {"classes": list(classes)}
    if classes:
        labels = records[list(classes)].to_numpy(dtype=np.float64)
        scores = np.stack(records["probabilities"].to_list())
        result["auc"] = metrics.auc_per_class(labels, scores, classes)
        if by_frequency:
            result["groups"] = metrics.auc_by_frequency(result["auc"])
    hits = [bool(h) for row in records["pointing_hits"] for h in row]
    if hits:
        findings = [f for row in records["pointing_findings"] for f in row]
        result["pointing"] = metrics.pointing_game(hits, findings)
        chance = [c for row in records["pointing_chance"] for c in row]
        result["pointing"]["chance"] = float(np.mean(chance))
    if threshold_records is not None:
        result["segmentation"] = _segmentation(records, threshold_records, thresholds)
    return result


def _segmentation(
    records: pd.DataFrame, threshold_records: pd.DataFrame, thresholds: Sequence[float]
) -> dict:
    """Dice per segmented finding at its threshold chosen on ``threshold_records`` (findings
    without a positive image there are listed under "skipped"); "dice" is their mean. Pixel
    AUC pools every segmented finding's pixels."""
    findings = sorted({f for row in records["dice_findings"] for f in row})
    per_class, skipped = {}, []
    for finding in findings:
        chosen_on = _curves(threshold_records, finding)
        if not len(chosen_on):
            skipped.append(finding)
            continue
        per_class[finding] = metrics.segmentation_from_curves(
            _curves(records, finding), chosen_on, thresholds
        )
    positive = np.sum(records["pixels_positive"].to_list(), axis=0)
    negative = np.sum(records["pixels_negative"].to_list(), axis=0)
    return {
        "dice": float(np.mean([s["dice"] for s in per_class.values()])) if per_class else None,
        "protocol": "validation",
        "test_sweep_dice": (
            float(np.mean([s["test_sweep"]["dice"] for s in per_class.values()]))
            if per_class
            else None
        ),
        "per_class": per_class,
        "skipped": skipped,
        "pixel_auc": metrics.pixel_auc_from_histograms(positive, negative),
    }


def _curves(records: pd.DataFrame, finding: str) -> np.ndarray:
    """(positive images, thresholds) Dice curves of ``finding`` in the records."""
    curves = [
        curve
        for names, rows in zip(records["dice_findings"], records["dice"], strict=True)
        for name, curve in zip(names, rows, strict=True)
        if name == finding
    ]
    if not curves:  # no positive image of it here (e.g. a small threshold split)
        return np.empty((0, 0))
    return np.asarray(curves, dtype=np.float64).reshape(len(curves), -1)

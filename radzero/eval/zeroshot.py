"""Zero-shot tasks over a set of images: classification, grounding, segmentation.

Everything works from cached backbone features, so one backbone pass serves every task;
the same functions run in a notebook and inside a Ray actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from radzero.eval.metrics import auc_per_class, best_threshold, mean_dice, pointing_hit
from radzero.model.radzero import RadZero


@torch.no_grad()
def classification_scores(
    model: RadZero, features: torch.Tensor, findings: Sequence[str], batch_size: int = 128
) -> np.ndarray:
    """(N, F) zero-shot probabilities for each image and finding."""
    model.eval()
    parts = [model.classify(None, findings, features=f) for f in features.split(batch_size)]
    return torch.cat(parts).numpy()


@dataclass
class Localisation:
    """Maps of each finding on the images that have it, with their ground truth."""

    maps: dict[str, list[np.ndarray]] = field(default_factory=dict)
    boxes: dict[str, list[list[tuple[int, int, int, int]]]] = field(default_factory=dict)
    masks: dict[str, list[np.ndarray]] = field(default_factory=dict)
    images: dict[str, list[int]] = field(default_factory=dict)


@torch.no_grad()
def localise(
    model: RadZero,
    features: torch.Tensor,
    positives: Sequence[dict[str, dict]],
    size: tuple[int, int],
    template: str = "There is {}",
    batch_size: int = 32,
) -> Localisation:
    """Similarity maps for every (image, present finding) pair.

    ``positives[i]`` maps each finding present in image i to ``{"boxes": [...], "mask": array
    or None}``; the query is ``template.format(finding)``.
    """
    model.eval()
    findings = sorted({f for item in positives for f in item})
    result = Localisation()
    if not findings:
        return result
    phrases = [template.format(f) for f in findings]
    for start in range(0, features.shape[0], batch_size):
        maps = model.similarity_maps(
            None, phrases, features=features[start : start + batch_size], size=size
        ).numpy()
        for offset, item in enumerate(positives[start : start + batch_size]):
            for finding, truth in item.items():
                result.maps.setdefault(finding, []).append(maps[offset, findings.index(finding)])
                result.boxes.setdefault(finding, []).append(truth["boxes"])
                result.masks.setdefault(finding, []).append(truth.get("mask"))
                result.images.setdefault(finding, []).append(start + offset)
    return result


def pointing_game(loc: Localisation) -> dict[str, object]:
    """Hit rate of the map's argmax in the boxes: per finding, mean over findings, pooled.

    "chance" is the pooled hit rate of a uniformly random point: the mean fraction of the
    image that the boxes cover.
    """
    hits = {
        f: [pointing_hit(m, b) for m, b in zip(maps, loc.boxes[f], strict=True)]
        for f, maps in sorted(loc.maps.items())
    }
    per_class = {f: float(np.mean(h)) for f, h in hits.items()}
    pooled = [hit for h in hits.values() for hit in h]
    covered = [
        box_fraction(boxes, maps[0].shape) for f, maps in loc.maps.items() for boxes in loc.boxes[f]
    ]
    return {
        "mean": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        "pooled": float(np.mean(pooled)) if pooled else float("nan"),
        "chance": float(np.mean(covered)) if covered else float("nan"),
        "pairs": len(pooled),
        "per_class": per_class,
    }


def box_fraction(boxes: Sequence[Sequence[int]], shape: tuple[int, int]) -> float:
    """Fraction of an image of ``shape`` inside the union of inclusive (x1, y1, x2, y2) boxes."""
    covered = np.zeros(shape, dtype=bool)
    for x1, y1, x2, y2 in boxes:
        covered[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1] = True
    return float(covered.mean())


def segmentation(test: Localisation, validation: Localisation) -> dict[str, object]:
    """Dice per finding at the threshold that is best on the validation maps."""
    per_class, thresholds = {}, {}
    for finding, maps in sorted(test.maps.items()):
        if not validation.maps.get(finding):
            continue
        thresholds[finding] = best_threshold(validation.maps[finding], validation.masks[finding])
        per_class[finding] = mean_dice(maps, test.masks[finding], thresholds[finding])
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {"mean": mean, "per_class": per_class, "thresholds": thresholds}


def classification(
    model: RadZero, features: torch.Tensor, labels: np.ndarray, findings: Sequence[str]
) -> tuple[dict[str, object], np.ndarray]:
    """Macro and per-class AUC of zero-shot classification, with the scores."""
    scores = classification_scores(model, features, findings)
    return auc_per_class(labels, scores, findings), scores

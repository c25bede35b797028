"""Zero-shot metrics: ROC-AUC, pointing game, Dice (REFERENCE.md section 1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score


def auc_per_class(
    labels: np.ndarray, scores: np.ndarray, names: Sequence[str]
) -> dict[str, object]:
    """Per-class and macro ROC-AUC over (N, C) 0/1 labels and scores.

    A class without both positives and negatives has no AUC: it is listed under "skipped"
    and left out of the macro mean, never averaged in as NaN.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    if labels.shape != scores.shape or labels.ndim != 2 or labels.shape[1] != len(names):
        raise ValueError(
            f"labels {labels.shape} and scores {scores.shape} must be (N, {len(names)})"
        )
    per_class, skipped = {}, []
    for j, name in enumerate(names):
        column = labels[:, j]
        if column.min() == column.max():
            skipped.append(name)
            continue
        per_class[name] = float(roc_auc_score(column, scores[:, j]))
    macro = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {"macro": macro, "per_class": per_class, "skipped": skipped}


def pointing_hit(heatmap: np.ndarray, boxes: Sequence[Sequence[float]]) -> bool:
    """Whether the map's argmax falls inside any (x1, y1, x2, y2) box, edges inclusive."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return any(x1 <= x <= x2 and y1 <= y <= y2 for x1, y1, x2, y2 in boxes)


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice overlap of two boolean masks; 1.0 when both are empty."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    total = pred.sum() + target.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(pred, target).sum() / total)


def mean_dice(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float) -> float:
    """Dice of thresholded maps averaged over the (positive) images given."""
    if not maps:
        return float("nan")
    return float(np.mean([dice(m >= threshold, t) for m, t in zip(maps, masks, strict=True)]))


def best_threshold(
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    candidates: Sequence[float] = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2)),
) -> float:
    """The candidate threshold with the highest mean Dice (choose it on a validation split)."""
    if not maps:
        raise ValueError("best_threshold needs at least one positive map")
    return float(max(candidates, key=lambda t: mean_dice(maps, masks, t)))

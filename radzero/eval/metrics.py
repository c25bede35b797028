"""Zero-shot metrics: ROC-AUC, pointing game, Dice, pixel AUC (docs/method.md).

Metrics that cannot be computed on the data given (a class without positives, a group without
classes, images whose pixels are all one class) are reported as skipped or ``None``, never
averaged in as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Segmentation thresholds on the sigmoid map: the paper's 0.01 grid.
THRESHOLDS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))

TEST_SWEEP = "test-set sweep (optimistic; the paper's protocol)"


def auc_per_class(
    labels: np.ndarray, scores: np.ndarray, names: Sequence[str]
) -> dict[str, object]:
    """Per-class and macro ROC-AUC over (N, C) labels and scores.

    Labels are 0/1, or NaN where unknown: a NaN row is left out of that class only. A class
    without both positives and negatives among its known labels has no AUC: it is listed under
    "skipped" and left out of the macro mean ("macro" is NaN only when every class is skipped).
    "positives" counts each class's known positives, skipped classes included.
    """
    labels, scores = np.asarray(labels, dtype=np.float64), np.asarray(scores)
    if labels.shape != scores.shape or labels.ndim != 2 or labels.shape[1] != len(names):
        raise ValueError(
            f"labels {labels.shape} and scores {scores.shape} must be (N, {len(names)})"
        )
    from sklearn.metrics import roc_auc_score  # here: sklearn costs every Train process ~1 s

    per_class, positives, skipped = {}, {}, []
    for j, name in enumerate(names):
        known = ~np.isnan(labels[:, j])
        column = labels[known, j]
        if not np.isin(column, (0.0, 1.0)).all():
            raise ValueError(f"labels of {name!r} must be 0, 1 or NaN")
        positives[name] = int(column.sum())
        if positives[name] in (0, column.size):
            skipped.append(name)
            continue
        per_class[name] = float(roc_auc_score(column, scores[known, j]))
    macro = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {"macro": macro, "per_class": per_class, "skipped": skipped, "positives": positives}


def auc_by_frequency(
    result: dict[str, object],
    *,
    tail_max: int = 10,
    medium_max: float | None = None,
    head_percentile: float = 65.0,
) -> dict[str, dict[str, object]]:
    """Macro AUC of PadChest's head / medium / tail classes, and of "tail10" (PadChest20).

    ``result`` is what :func:`auc_per_class` returns. Classes are grouped by their number of
    positives n in the evaluated set: tail n <= ``tail_max``, medium ``tail_max`` < n <=
    ``medium_max``, head n > ``medium_max``; "tail10" is always the classes with n <= 10,
    PadChest20 (introduced by CARZero, reported by RadZero).

    Defaults follow CARZero's evaluation code (laihaoran/CARZero, ``inference.py`` with
    ``utils.py::obtaion_LT_multi_label_distribution``): tail is n <= 10, and the head/medium
    boundary is the ``head_percentile`` = 65th percentile (numpy's linear one) of the
    per-class positive counts, taken here over the classes with at least one positive
    (CARZero's class list has no others) and never below ``tail_max``, so the groups stay
    disjoint. Give ``medium_max`` to fix that boundary instead.

    Each group gives "macro" (``None`` when the group has no scored class), "classes" (scored,
    in input order), "skipped" (in the group by count but without an AUC) and its bounds
    "more_than" / "at_most" (``None`` where unbounded).
    """
    per_class: dict[str, float] = result["per_class"]
    positives: dict[str, int] = result["positives"]
    if medium_max is None:
        present = [n for n in positives.values() if n > 0]
        percentile = float(np.percentile(present, head_percentile)) if present else 0.0
        medium_max = max(percentile, tail_max)
    elif medium_max < tail_max:
        raise ValueError(f"medium_max {medium_max} is below tail_max {tail_max}")
    bounds = {
        "head": (medium_max, None),
        "medium": (tail_max, medium_max),
        "tail": (None, tail_max),
        "tail10": (None, 10),
    }
    groups: dict[str, dict[str, object]] = {}
    for group, (above, at_most) in bounds.items():
        members = [
            name
            for name, n in positives.items()
            if (above is None or n > above) and (at_most is None or n <= at_most)
        ]
        scored = [name for name in members if name in per_class]
        groups[group] = {
            "macro": float(np.mean([per_class[n] for n in scored])) if scored else None,
            "classes": scored,
            "skipped": [name for name in members if name not in per_class],
            "more_than": above,
            "at_most": at_most,
        }
    return groups


def pointing_hit(heatmap: np.ndarray, boxes: Sequence[Sequence[float]]) -> bool:
    """Whether the map's argmax falls inside any (x1, y1, x2, y2) box, edges inclusive."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return any(x1 <= x <= x2 and y1 <= y <= y2 for x1, y1, x2, y2 in boxes)


def pointing_game(hits: Sequence[bool], classes: Sequence[str]) -> dict[str, object]:
    """Pointing-game scores of per-sample hits (from :func:`pointing_hit`) and their classes.

    "mean_over_classes" is the mean of the per-class hit rates (ChestX-Det10 style);
    "accuracy" is the hit rate over all samples (MS-CXR style, one box set per phrase). Both
    are ``None`` when there are no samples.
    """
    if len(hits) != len(classes):
        raise ValueError(f"{len(hits)} hits but {len(classes)} classes")
    by_class: dict[str, list[bool]] = {}
    for hit, name in zip(hits, classes, strict=True):
        by_class.setdefault(name, []).append(bool(hit))
    per_class = {name: float(np.mean(by_class[name])) for name in sorted(by_class)}
    return {
        "mean_over_classes": float(np.mean(list(per_class.values()))) if per_class else None,
        "accuracy": float(np.mean(np.asarray(hits, dtype=bool))) if len(hits) else None,
        "per_class": per_class,
        "per_class_samples": {name: len(by_class[name]) for name in per_class},
        "samples": len(hits),
    }


def box_fraction(boxes: Sequence[Sequence[int]], shape: tuple[int, int]) -> float:
    """Fraction of an image of ``shape`` inside the union of inclusive (x1, y1, x2, y2) boxes."""
    covered = np.zeros(shape, dtype=bool)
    for x1, y1, x2, y2 in boxes:
        covered[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1] = True
    return float(covered.mean())


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice overlap of two boolean masks; 1.0 when both are empty."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    total = pred.sum() + target.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(pred, target).sum() / total)


def dice_curve(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], thresholds: Sequence[float]
) -> np.ndarray:
    """(images, thresholds) Dice of ``map >= threshold`` against each mask (1.0 if both empty).

    One pass per image: each pixel is binned by how many thresholds it reaches, and reversed
    cumulative counts give every threshold's predicted and overlapping pixel counts.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    order = np.argsort(thresholds, kind="stable")
    ordered = thresholds[order]
    curve = np.empty((len(maps), len(thresholds)))
    for i, (heat, mask) in enumerate(zip(maps, masks, strict=True)):
        heat, mask = np.asarray(heat), np.asarray(mask, dtype=bool)
        if heat.shape != mask.shape:
            raise ValueError(f"map {heat.shape} and mask {mask.shape} differ in shape")
        reached = np.searchsorted(ordered, heat.ravel(), side="right")
        bins = len(ordered) + 1
        predicted = np.cumsum(np.bincount(reached, minlength=bins)[::-1])[::-1][1:]
        overlap = np.cumsum(np.bincount(reached[mask.ravel()], minlength=bins)[::-1])[::-1][1:]
        total = predicted + np.count_nonzero(mask)
        curve[i, order] = np.where(total == 0, 1.0, 2 * overlap / np.maximum(total, 1))
    return curve


def mean_dice(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float) -> float:
    """Dice of ``map >= threshold`` averaged over the (positive) images given; NaN if none."""
    if not len(maps):
        return float("nan")
    return float(dice_curve(maps, masks, [threshold]).mean())


def _best(curves: np.ndarray, split: str) -> tuple[int, float]:
    """The column of ``curves`` with the highest mean Dice (the first on ties), and that mean."""
    if not len(curves):
        raise ValueError(f"{split}: choosing a threshold needs at least one positive image")
    means = np.asarray(curves, dtype=np.float64).mean(axis=0)
    best = int(np.argmax(means))
    return best, float(means[best])


def best_threshold(
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    candidates: Sequence[float] = THRESHOLDS,
) -> float:
    """The candidate threshold with the highest mean Dice (choose it on a validation split)."""
    if not len(maps):
        raise ValueError("best_threshold needs at least one positive map")
    return float(candidates[_best(dice_curve(maps, masks, candidates), "best_threshold")[0]])


def _test_sweep(curves: np.ndarray, thresholds: Sequence[float]) -> dict[str, object]:
    column, mean = _best(curves, "test")
    return {
        "dice": mean,
        "threshold": float(thresholds[column]),
        "protocol": TEST_SWEEP,
        "images": len(curves),
    }


def segmentation_from_curves(
    test_curves: np.ndarray, val_curves: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> dict[str, object]:
    """Validation-threshold Dice, and the test-set sweep, from per-image Dice curves.

    The curves are (positive images, thresholds) rows of :func:`dice_curve`. "dice" is the
    mean test Dice at the threshold best on the validation curves; "test_sweep" holds the
    paper's protocol, labelled optimistic in its "protocol". Keys: "dice", "threshold",
    "protocol" ("validation"), "images" (test curves), "test_sweep".
    """
    for name, curves in (("test", test_curves), ("validation", val_curves)):
        if len(curves) and np.shape(curves)[1:] != (len(thresholds),):
            raise ValueError(f"{name} curves {np.shape(curves)} need {len(thresholds)} columns")
    column = _best(val_curves, "validation")[0]
    sweep = _test_sweep(test_curves, thresholds)
    return {
        "dice": float(np.asarray(test_curves, dtype=np.float64)[:, column].mean()),
        "threshold": float(thresholds[column]),
        "protocol": "validation",
        "images": len(test_curves),
        "test_sweep": sweep,
    }


def _positive_curves(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], thresholds: Sequence[float]
) -> tuple[np.ndarray, int]:
    """Dice curves of the images whose mask is not empty, and how many were left out."""
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
    keep = [i for i, mask in enumerate(masks) if np.any(mask)]
    curves = dice_curve([maps[i] for i in keep], [masks[i] for i in keep], thresholds)
    return curves, len(masks) - len(keep)


def segmentation_dice(
    test_maps: Sequence[np.ndarray],
    test_masks: Sequence[np.ndarray],
    val_maps: Sequence[np.ndarray],
    val_masks: Sequence[np.ndarray],
    candidates: Sequence[float] = THRESHOLDS,
) -> dict[str, object]:
    """Mean test Dice at the threshold that is best on the validation split.

    Only positive images count: images whose mask is empty are left out of both the threshold
    choice and the average ("excluded_empty" counts the test ones). A pixel is foreground when
    its value is >= the threshold. Keys as :func:`segmentation_from_curves`, plus
    "excluded_empty".
    """
    test, excluded = _positive_curves(test_maps, test_masks, candidates)
    val, _ = _positive_curves(val_maps, val_masks, candidates)
    return segmentation_from_curves(test, val, candidates) | {"excluded_empty": excluded}


def segmentation_dice_test_sweep(
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    candidates: Sequence[float] = THRESHOLDS,
) -> dict[str, object]:
    """The paper's protocol: the best mean Dice over thresholds swept on the test set itself.

    Optimistic, as the threshold is tuned on the images it is scored on; use
    :func:`segmentation_dice` for a fair number. Positive images only, as there. Keys:
    "dice", "threshold", "protocol" (says it is this sweep), "images", "excluded_empty".
    """
    curves, excluded = _positive_curves(maps, masks, candidates)
    return _test_sweep(curves, candidates) | {"excluded_empty": excluded}


def _below_and_ties(
    ordered: np.ndarray, values: np.ndarray, chunk: int = 1 << 22
) -> tuple[int, int]:
    """Over ``values``: the total count of ``ordered`` entries below each, and equal to each."""
    below = ties = 0
    for start in range(0, values.size, chunk):
        part = values[start : start + chunk]
        left = np.searchsorted(ordered, part, side="left")
        right = np.searchsorted(ordered, part, side="right")
        below += int(left.sum())
        ties += int((right - left).sum())
    return below, ties


def pixel_auc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict[str, object]:
    """ROC-AUC over all pixels of all images, negative images included (the paper's Pix-AUC).

    Rank-based (Mann-Whitney, ties counted half) on two flat arrays in the maps' own dtype:
    the positive and negative pixel values are sorted, and the smaller set is counted against
    the larger in chunks, so memory stays near one copy of the pixels. "auc" is ``None``, with
    the reason under "skipped", when every pixel is of one class. Keys: "auc", "pixels",
    "positive_pixels", "skipped".
    """
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
    total = n_pos = 0
    for heat, mask in zip(maps, masks, strict=True):
        if np.shape(heat) != np.shape(mask):
            raise ValueError(f"map {np.shape(heat)} and mask {np.shape(mask)} differ in shape")
        if not np.isfinite(heat).all():
            raise ValueError("maps must be finite")
        total += np.size(mask)
        n_pos += int(np.count_nonzero(mask))
    n_neg = total - n_pos
    report: dict[str, object] = {
        "auc": None,
        "pixels": total,
        "positive_pixels": n_pos,
        "skipped": None,
    }
    if n_pos == 0 or n_neg == 0:
        report["skipped"] = f"all {total} pixels are {'negative' if n_pos == 0 else 'positive'}"
        return report
    dtype = np.result_type(*(np.asarray(heat).dtype for heat in maps))
    pos, neg = np.empty(n_pos, dtype), np.empty(n_neg, dtype)
    p = n = 0
    for heat, mask in zip(maps, masks, strict=True):
        heat, mask = np.asarray(heat), np.asarray(mask, dtype=bool)
        k = int(np.count_nonzero(mask))
        pos[p : p + k] = heat[mask]
        neg[n : n + mask.size - k] = heat[~mask]
        p, n = p + k, n + mask.size - k
    pos.sort()
    neg.sort()
    if n_pos <= n_neg:
        greater, ties = _below_and_ties(neg, pos)
    else:
        below, ties = _below_and_ties(pos, neg)
        greater = n_pos * n_neg - below - ties
    report["auc"] = (greater + 0.5 * ties) / (n_pos * n_neg)
    return report


def pixel_auc_from_histograms(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """Pixel AUC from counts of positive and negative pixels in the same ascending score bins.

    Pixels in one bin count as ties, so this equals :func:`pixel_auc` on maps quantised to
    the bins. ``None`` when either histogram is empty.
    """
    positive = np.asarray(positive, dtype=np.int64).tolist()
    negative = np.asarray(negative, dtype=np.int64).tolist()
    if len(positive) != len(negative):
        raise ValueError(f"{len(positive)} positive bins but {len(negative)} negative bins")
    n_pos, n_neg = sum(positive), sum(negative)
    if n_pos == 0 or n_neg == 0:
        return None
    below = greater = ties = 0
    for p, n in zip(positive, negative, strict=True):
        greater += p * below
        ties += p * n
        below += n
    return (greater + 0.5 * ties) / (n_pos * n_neg)

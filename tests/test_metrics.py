"""Metrics against independent computations on crafted cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radzero.eval.metrics import (
    TEST_SWEEP,
    _below_and_ties,
    auc_by_frequency,
    auc_per_class,
    best_threshold,
    box_fraction,
    dice,
    dice_curve,
    mean_dice,
    pixel_auc,
    pixel_auc_from_histograms,
    pointing_game,
    pointing_hit,
    segmentation_dice,
    segmentation_dice_test_sweep,
    segmentation_from_curves,
)


def test_auc_per_class_matches_sklearn_and_skips_constant_classes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(50, 3))
    labels[:, 2] = 0  # no positives: no AUC
    scores = rng.random((50, 3))
    result = auc_per_class(labels, scores, ["a", "b", "c"])
    expected = [roc_auc_score(labels[:, j], scores[:, j]) for j in range(2)]
    assert result["per_class"] == pytest.approx(dict(zip("ab", expected, strict=True)))
    assert result["macro"] == pytest.approx(np.mean(expected))
    assert result["skipped"] == ["c"]


def test_pointing_hit_is_inclusive_of_box_edges():
    heat = np.zeros((10, 10))
    heat[3, 7] = 1.0  # row 3, column 7: x = 7, y = 3
    assert pointing_hit(heat, [(7, 3, 9, 9)])
    assert pointing_hit(heat, [(0, 0, 1, 1), (5, 0, 7, 3)])
    assert not pointing_hit(heat, [(0, 0, 6, 9)])


def test_dice_and_threshold_choice():
    target = np.zeros((8, 8), bool)
    target[2:6, 2:6] = True
    pred = np.zeros((8, 8), bool)
    pred[2:6, 2:4] = True
    assert dice(pred, target) == pytest.approx(2 * 8 / (8 + 16))
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    heat = np.where(target, 0.7, 0.2)
    assert mean_dice([heat], [target], 0.5) == 1.0
    assert 0.2 < best_threshold([heat], [target]) <= 0.7


def test_box_fraction_counts_the_union_of_boxes():
    assert box_fraction([(0, 0, 4, 4)], (10, 10)) == pytest.approx(0.25)
    assert box_fraction([(0, 0, 4, 4), (0, 0, 9, 4)], (10, 10)) == pytest.approx(0.5)


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC as the share of (positive, negative) pairs ranked right, ties counting half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def test_auc_per_class_leaves_out_nan_labels_per_class_and_counts_positives():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=(40, 3)).astype(float)
    labels[:5, 1] = 1.0
    labels[5:, 1] = np.nan  # only positives are known: no AUC for "b"
    labels[rng.random(40) < 0.3, 0] = np.nan
    labels[:, 2] = np.where(np.arange(40) < 20, np.nan, labels[:, 2])
    scores = rng.random((40, 3))
    result = auc_per_class(labels, scores, ["a", "b", "c"])
    known_a, known_c = ~np.isnan(labels[:, 0]), np.arange(40) >= 20
    assert result["per_class"] == pytest.approx(
        {
            "a": roc_auc_score(labels[known_a, 0], scores[known_a, 0]),
            "c": roc_auc_score(labels[known_c, 2], scores[known_c, 2]),
        }
    )
    assert result["skipped"] == ["b"]
    assert result["macro"] == pytest.approx(np.mean(list(result["per_class"].values())))
    assert result["positives"] == {
        "a": int(np.nansum(labels[:, 0])),
        "b": 5,
        "c": int(np.nansum(labels[:, 2])),
    }


def test_auc_per_class_with_tied_scores_and_invalid_labels():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=(60, 2))
    scores = np.round(rng.random((60, 2)), 1)  # many ties
    scores[:, 1] = 0.5  # every score tied: AUC 0.5
    result = auc_per_class(labels, scores, ["a", "b"])
    assert result["per_class"]["a"] == pytest.approx(_pairwise_auc(labels[:, 0], scores[:, 0]))
    assert result["per_class"]["b"] == 0.5
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        auc_per_class(np.array([[1], [-1], [0]]), np.zeros((3, 1)), ["a"])


def _labels_with_counts(counts: dict[str, int], n: int, rng) -> tuple[np.ndarray, list[str]]:
    names = list(counts)
    labels = np.zeros((n, len(names)), dtype=int)
    for j, name in enumerate(names):
        labels[rng.choice(n, size=counts[name], replace=False), j] = 1
    return labels, names


def test_auc_by_frequency_groups_classes_by_their_positives():
    rng = np.random.default_rng(3)
    counts = {"h1": 150, "h2": 101, "m1": 100, "m2": 11, "t1": 10, "t2": 3, "none": 0}
    labels, names = _labels_with_counts(counts, 400, rng)
    scores = rng.random(labels.shape) + 0.3 * labels
    result = auc_per_class(labels, scores, names)
    sk = {name: roc_auc_score(labels[:, j], scores[:, j]) for j, name in enumerate(names[:-1])}
    # CARZero's head boundary: the 65th percentile of the counts of classes present.
    sorted_counts = sorted(n for n in counts.values() if n)  # 3, 10, 11, 100, 101, 150
    boundary = sorted_counts[3] + 0.25 * (sorted_counts[4] - sorted_counts[3])  # rank 3.25
    groups = auc_by_frequency(result)
    assert set(groups) == {"head", "medium", "tail", "tail10"}
    assert (groups["head"]["more_than"], groups["head"]["at_most"]) == (
        pytest.approx(boundary),
        None,
    )
    assert (groups["medium"]["more_than"], groups["tail10"]["at_most"]) == (10, 10)
    expected = {
        "head": ["h1", "h2"],
        "medium": ["m1", "m2"],
        "tail": ["t1", "t2"],
        "tail10": ["t1", "t2"],
    }
    for group, members in expected.items():
        assert groups[group]["classes"] == members
        assert groups[group]["macro"] == pytest.approx(np.mean([sk[m] for m in members]))
    assert groups["tail"]["skipped"] == ["none"]
    assert groups["tail10"]["skipped"] == ["none"]
    assert groups["head"]["skipped"] == []
    fixed = auc_by_frequency(result, medium_max=50, tail_max=2)
    assert fixed["head"]["classes"] == ["h1", "h2", "m1"]
    assert fixed["medium"]["classes"] == ["m2", "t1", "t2"]
    assert fixed["tail"]["macro"] is None
    assert (fixed["tail"]["classes"], fixed["tail"]["skipped"]) == ([], ["none"])
    assert fixed["tail10"]["classes"] == ["t1", "t2"]  # PadChest20 stays at 10 positives


def test_auc_by_frequency_reports_groups_without_scored_classes():
    rng = np.random.default_rng(4)
    labels, names = _labels_with_counts({"a": 2, "b": 3, "c": 4, "d": 40}, 300, rng)
    scores = rng.random(labels.shape)
    groups = auc_by_frequency(auc_per_class(labels, scores, names))
    # The 65th percentile (3.95) is below tail_max: the boundary stays at 10, medium is empty.
    assert groups["medium"] == {
        "macro": None,
        "classes": [],
        "skipped": [],
        "more_than": 10,
        "at_most": 10,
    }
    assert groups["head"]["classes"] == ["d"]
    assert groups["tail"]["classes"] == ["a", "b", "c"]
    labels[:, 3] = 1  # "d" has no negatives left: the head group has no AUC at all
    groups = auc_by_frequency(auc_per_class(labels, scores, names), medium_max=100)
    assert (groups["head"]["macro"], groups["head"]["skipped"]) == (None, ["d"])
    with pytest.raises(ValueError, match="below tail_max"):
        auc_by_frequency(auc_per_class(labels, scores, names), tail_max=50, medium_max=20)


def _peak_at(x: int, y: int, shape: tuple[int, int] = (20, 30)) -> np.ndarray:
    heat = np.zeros(shape)
    heat[y, x] = 1.0
    return heat


def test_pointing_game_mean_over_classes_and_accuracy():
    samples = [  # (class, peak x, peak y, boxes): hits on each edge and corner of a box
        ("mass", 5, 2, [(5, 2, 9, 6)]),
        ("mass", 9, 6, [(5, 2, 9, 6)]),
        ("mass", 7, 6, [(0, 0, 1, 1), (5, 2, 9, 6)]),
        ("nodule", 10, 6, [(5, 2, 9, 6)]),  # one column right of the box
        ("nodule", 7, 1, [(5, 2, 9, 6)]),  # one row above the box
        ("nodule", 29, 19, [(20, 10, 29, 19)]),  # the image's last pixel
    ]
    hits = [pointing_hit(_peak_at(x, y), boxes) for _, x, y, boxes in samples]
    assert hits == [True, True, True, False, False, True]
    result = pointing_game(hits, [name for name, *_ in samples])
    assert result["per_class"] == pytest.approx({"mass": 1.0, "nodule": 1 / 3})
    assert result["per_class_samples"] == {"mass": 3, "nodule": 3}
    assert result["mean_over_classes"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["samples"] == 6
    unbalanced = pointing_game([True, True, True, False], ["a", "a", "a", "b"])
    assert unbalanced["mean_over_classes"] == 0.5
    assert unbalanced["accuracy"] == 0.75
    empty = pointing_game([], [])
    assert empty["mean_over_classes"] is None and empty["accuracy"] is None
    with pytest.raises(ValueError):
        pointing_game([True], ["a", "b"])


def _dice_loop(heat: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    pred = {tuple(p) for p in np.argwhere(heat.astype(np.float64) >= threshold)}
    truth = {tuple(p) for p in np.argwhere(mask)}
    return 1.0 if not pred | truth else 2 * len(pred & truth) / (len(pred) + len(truth))


def test_mean_dice_and_best_threshold_match_a_direct_computation():
    rng = np.random.default_rng(5)
    maps = [rng.random((12, 9)).astype(np.float32) for _ in range(4)]
    masks = [m > rng.uniform(0.3, 0.8) for m in maps]
    maps[0] = np.round(maps[0], 1)  # values equal to thresholds: >= counts them in
    for threshold in (0.1, 0.3, 0.5, 0.77, 0.9):
        expected = np.mean([_dice_loop(m, t, threshold) for m, t in zip(maps, masks, strict=True)])
        assert mean_dice(maps, masks, threshold) == pytest.approx(expected)
    candidates = [0.9, 0.2, 0.55, 0.4, 0.7]
    means = [
        np.mean([_dice_loop(m, t, c) for m, t in zip(maps, masks, strict=True)]) for c in candidates
    ]
    assert best_threshold(maps, masks, candidates) == candidates[int(np.argmax(means))]
    assert mean_dice([np.zeros((3, 3))], [np.zeros((3, 3), bool)], 0.5) == 1.0
    assert np.isnan(mean_dice([], [], 0.5))


def test_validation_threshold_differs_from_the_test_sweep():
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True
    val_map = np.where(mask, 0.35, 0.25).astype(np.float32)  # best from 0.26 up to 0.35
    test_map = np.where(mask, 0.8, 0.5).astype(np.float32)  # best from 0.51 up to 0.80
    empty_mask, hot_map = np.zeros((8, 8), bool), np.full((8, 8), 0.9, np.float32)
    fair = segmentation_dice(
        [test_map, hot_map], [mask, empty_mask], [val_map, hot_map], [mask, empty_mask]
    )
    assert fair["protocol"] == "validation"
    assert fair["threshold"] == 0.26
    assert fair["dice"] == pytest.approx(_dice_loop(test_map, mask, 0.26))  # all predicted
    assert fair["dice"] == pytest.approx(2 * 32 / (64 + 32))
    assert (fair["images"], fair["excluded_empty"]) == (1, 1)
    sweep = segmentation_dice_test_sweep([test_map, hot_map], [mask, empty_mask])
    assert sweep["threshold"] == 0.51
    assert sweep["dice"] == 1.0
    assert sweep["protocol"] == TEST_SWEEP and "optimistic" in TEST_SWEEP
    assert (sweep["images"], sweep["excluded_empty"]) == (1, 1)
    assert fair["test_sweep"] == {k: v for k, v in sweep.items() if k != "excluded_empty"}
    with pytest.raises(ValueError, match=r"validation: .* positive image"):
        segmentation_dice([test_map], [mask], [hot_map], [empty_mask])


def test_segmentation_from_curves_matches_the_map_version():
    rng = np.random.default_rng(9)
    maps = [rng.random((10, 10)) for _ in range(6)]
    masks = [m + rng.normal(0, 0.2, m.shape) > 0.6 for m in maps]
    grid = [0.3, 0.5, 0.7]
    curves = dice_curve(maps, masks, grid)
    expected = [[_dice_loop(m, t, c) for c in grid] for m, t in zip(maps, masks, strict=True)]
    np.testing.assert_allclose(curves, expected)
    result = segmentation_from_curves(curves[:4], curves[4:], grid)
    from_maps = segmentation_dice(maps[:4], masks[:4], maps[4:], masks[4:], grid)
    assert from_maps == result | {"excluded_empty": 0}
    best_val = int(np.argmax(np.mean(expected[4:], axis=0)))
    assert result["threshold"] == grid[best_val]
    assert result["dice"] == pytest.approx(np.mean([row[best_val] for row in expected[:4]]))
    with pytest.raises(ValueError, match="columns"):
        segmentation_from_curves(curves[:4, :2], curves[4:], grid)


def test_pixel_auc_matches_sklearn_over_all_pixels():
    rng = np.random.default_rng(6)
    maps = [rng.random((16, 20)).astype(np.float32) for _ in range(5)]
    maps.append(np.round(rng.random((10, 10)), 1).astype(np.float32))  # ties, other size
    masks = [m + rng.normal(0, 0.3, m.shape) > 0.7 for m in maps]
    masks[2][:] = False  # a negative image still counts
    flat_maps = np.concatenate([m.ravel() for m in maps])
    flat_masks = np.concatenate([t.ravel() for t in masks])
    result = pixel_auc(maps, masks)
    assert result["auc"] == pytest.approx(roc_auc_score(flat_masks, flat_maps))
    assert result["pixels"] == flat_maps.size
    assert result["positive_pixels"] == flat_masks.sum()
    assert result["skipped"] is None
    flipped = pixel_auc(maps, [~t for t in masks])  # positives now the larger set
    assert flipped["auc"] == pytest.approx(roc_auc_score(~flat_masks, flat_maps))


def test_pixel_auc_skips_masks_of_one_class():
    maps = [np.random.default_rng(7).random((4, 4)) for _ in range(2)]
    negative = pixel_auc(maps, [np.zeros((4, 4), bool)] * 2)
    assert negative["auc"] is None
    assert negative["skipped"] == "all 32 pixels are negative"
    positive = pixel_auc(maps, [np.ones((4, 4), bool)] * 2)
    assert positive["auc"] is None and "positive" in positive["skipped"]
    with pytest.raises(ValueError, match="shape"):
        pixel_auc([np.zeros((4, 4))], [np.zeros((4, 5), bool)])


def test_pixel_auc_from_histograms_treats_a_bin_as_ties():
    rng = np.random.default_rng(10)
    bins = rng.integers(0, 20, 3000)  # pixel scores already binned: many ties
    truth = rng.random(3000) < 0.1 + 0.04 * bins
    positive = np.bincount(bins[truth], minlength=20)
    negative = np.bincount(bins[~truth], minlength=20)
    auc = pixel_auc_from_histograms(positive, negative)
    assert auc == pytest.approx(roc_auc_score(truth, bins), abs=1e-12)
    assert auc == pytest.approx(pixel_auc([bins.reshape(60, 50)], [truth.reshape(60, 50)])["auc"])
    assert pixel_auc_from_histograms(np.zeros(20, int), negative) is None
    assert pixel_auc_from_histograms(positive, np.zeros(20, int)) is None


def test_chunked_rank_counts_match_brute_force():
    rng = np.random.default_rng(8)
    ordered = np.sort(rng.integers(0, 10, 50)).astype(float)
    values = rng.integers(0, 10, 23).astype(float)
    below, ties = _below_and_ties(ordered, values, chunk=4)
    assert below == sum(int((ordered < v).sum()) for v in values)
    assert ties == sum(int((ordered == v).sum()) for v in values)


def test_a_finding_with_no_positive_in_the_threshold_rows_has_no_curves() -> None:
    """A small threshold split may hold no positive of a finding: it is skipped, not a crash."""
    import pandas as pd

    from radzero.eval import scoring

    records = pd.DataFrame({"dice_findings": [["mass"]], "dice": [[[0.1, 0.4, 0.2]]]})
    assert scoring._curves(records, "mass").shape == (1, 3)
    assert scoring._curves(records, "nodule").shape == (0, 0)
    assert scoring._curves(records.iloc[:0], "mass").shape == (0, 0)

"""Metrics against independent computations on crafted cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radzero.eval.metrics import auc_per_class, best_threshold, dice, mean_dice, pointing_hit
from radzero.eval.zeroshot import box_fraction


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

"""The metric functions of tagteller.evaluate.metrics against small hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from tagteller.evaluate import metrics

LABELS = ("cat", "dog", "fox")


def test_confusion_matrix_counts_rows_true_columns_predicted():
    true = [0, 0, 0, 1, 1, 2]
    pred = [0, 1, 1, 1, 0, 2]
    cm = metrics.confusion_matrix(np.array(true), np.array(pred), 3)
    assert cm.tolist() == [[1, 2, 0], [1, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError):
        metrics.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def test_class_scores_and_averages_by_hand():
    cm = np.array([[1, 2, 0], [1, 1, 0], [0, 0, 1]])
    s = metrics.class_scores(cm)
    # cat: 1 hit, 2 predicted as cat, 3 true cats; dog: 1 hit of 3 predicted, 2 true; fox: 1/1, 1/1
    assert s.precision == pytest.approx([1 / 2, 1 / 3, 1.0])
    assert s.recall == pytest.approx([1 / 3, 1 / 2, 1.0])
    f1 = [2 * (1 / 2 * 1 / 3) / (1 / 2 + 1 / 3), 2 * (1 / 3 * 1 / 2) / (1 / 3 + 1 / 2), 1.0]
    assert s.f1 == pytest.approx(f1)  # 0.4, 0.4, 1
    assert s.support.tolist() == [3, 2, 1]
    assert s.predicted.tolist() == [2, 3, 1]
    avg = metrics.averages(s)
    assert avg["macro"]["f1"] == pytest.approx((0.4 + 0.4 + 1.0) / 3)
    assert avg["weighted"]["recall"] == pytest.approx((3 * 1 / 3 + 2 * 1 / 2 + 1 * 1.0) / 6)  # = accuracy 3/6
    assert avg["weighted"]["precision"] == pytest.approx((3 * 0.5 + 2 / 3 + 1.0) / 6)


def test_zero_denominators_are_zero_and_absent_classes_leave_macro_alone():
    # fox never occurs and is never predicted: not counted in the macro average.
    cm = np.array([[2, 0, 0], [2, 0, 0], [0, 0, 0]])
    s = metrics.class_scores(cm)
    assert s.precision.tolist() == [0.5, 0.0, 0.0]  # dog never predicted: precision 0, not NaN
    assert s.recall.tolist() == [1.0, 0.0, 0.0]
    assert s.present.tolist() == [True, True, False]
    avg = metrics.averages(s)
    assert avg["macro"]["precision"] == pytest.approx(0.25)
    assert avg["macro"]["f1"] == pytest.approx((2 * 0.5 * 1.0 / 1.5) / 2)


def test_top_k_uses_the_engines_tie_order():
    probs = np.array([
        [0.7, 0.2, 0.1],  # true 0: rank 0
        [0.5, 0.3, 0.2],  # true 2: rank 2
        [0.4, 0.3, 0.3],  # true 2: tied with 1, which has the lower index: rank 2
        [0.4, 0.3, 0.3],  # true 1: tied with 2, lower index wins: rank 1
    ])
    true = np.array([0, 2, 2, 1])
    assert metrics.true_class_rank(probs, true).tolist() == [0, 2, 2, 1]
    assert metrics.top_k_accuracy(probs, true, 1) == 0.25
    assert metrics.top_k_accuracy(probs, true, 2) == 0.5
    assert metrics.top_k_accuracy(probs, true, 3) == 1.0


def test_expected_calibration_error_hand_worked_bins():
    conf = np.array([1.0, 0.95, 0.85, 0.85, 0.7, 0.55, 0.2, 0.0])
    correct = np.array([1, 1, 1, 0, 1, 0, 1, 0], dtype=bool)
    bins = metrics.calibration_bins(conf, correct, n_bins=10)
    counts = [b.count for b in bins]
    # (0.9,1]: 1.0, 0.95 | (0.8,0.9]: 0.85 x2 | (0.6,0.7]: 0.7 (an upper edge belongs to its bin)
    # (0.5,0.6]: 0.55 | (0.1,0.2]: 0.2 | [0,0.1]: 0.0
    assert counts == [1, 1, 0, 0, 0, 1, 1, 0, 2, 2]
    assert bins[9].accuracy == 1.0 and bins[9].confidence == pytest.approx(0.975)
    assert bins[8].accuracy == 0.5 and bins[8].confidence == pytest.approx(0.85)
    assert bins[3].accuracy is None and bins[3].confidence is None
    # gaps: 0.025 (x2), 0.35 (x2), 0.3, 0.55, 0.8, 0.0 -> (0.05 + 0.7 + 0.3 + 0.55 + 0.8) / 8 = 0.3
    assert metrics.expected_calibration_error(bins) == pytest.approx(0.3)


def test_most_confused_pairs_order_and_fractions():
    cm = np.array([[5, 1, 0], [2, 4, 0], [1, 1, 3]])
    pairs = metrics.most_confused(cm, LABELS, limit=3)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("dog", "cat", 2), ("cat", "dog", 1), ("fox", "cat", 1),
    ]
    assert pairs[0]["fraction_of_true"] == pytest.approx(2 / 6)
    assert metrics.most_confused(np.eye(3, dtype=int), LABELS) == []

"""The label rule and the threshold picker, as pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from sqlml.bridge.runtimes.sentiment import label_for, labels_for
from sqlml.bridge.training.sentiment import pick_thresholds


@pytest.mark.parametrize(
    ("p", "label", "confidence"),
    [
        (0.95, "positive", 0.95),
        (0.7, "positive", 0.7),  # exactly on positive_above
        (0.3, "negative", 0.7),  # exactly on negative_below
        (0.05, "negative", 0.95),
        (0.5, "neutral", 1.0),
        (0.6, "neutral", 0.8),
        (0.4, "neutral", 0.8),
    ],
)
def test_label_for_follows_the_documented_rule(p: float, label: str, confidence: float) -> None:
    got_label, got_confidence = label_for(p, negative_below=0.3, positive_above=0.7)
    assert got_label == label
    assert got_confidence == pytest.approx(confidence)


def test_labels_for_a_vector_keeps_order_and_range() -> None:
    labels, confidences = labels_for(np.array([0.99, 0.01, 0.5]), 0.3, 0.7)
    assert labels == ["positive", "negative", "neutral"]
    assert all(0.0 <= c <= 1.0 for c in confidences)


def test_collapsed_band_has_no_neutral() -> None:
    assert label_for(0.5, 0.5, 0.5)[0] == "positive"
    assert label_for(0.49, 0.5, 0.5)[0] == "negative"


def test_pick_thresholds_reaches_target_precision_on_each_side() -> None:
    rng = np.random.default_rng(0)
    great = rng.random(2000) < 0.65
    p = np.clip(np.where(great, 0.7, 0.3) + rng.normal(0, 0.2, 2000), 0, 1)
    t = pick_thresholds(p, great, target_precision=0.85)
    assert 0.0 <= t["negative_below"] <= t["positive_above"] <= 1.0
    assert great[p >= t["positive_above"]].mean() >= 0.85
    assert (~great[p <= t["negative_below"]]).mean() >= 0.85


def test_pick_thresholds_on_a_perfect_model_splits_the_classes() -> None:
    p = np.array([0.1, 0.2, 0.8, 0.9])
    great = np.array([False, False, True, True])
    t = pick_thresholds(p, great, target_precision=0.99)
    assert t == {"negative_below": 0.2, "positive_above": 0.8}


def test_pick_thresholds_on_a_useless_model_falls_back_to_one_half() -> None:
    p = np.full(10, 0.5)
    great = np.array([True, False] * 5)
    assert pick_thresholds(p, great, target_precision=0.9) == {"negative_below": 0.5, "positive_above": 0.5}

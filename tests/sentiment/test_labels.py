"""The four Comprehend-shaped scores, the label rule, calibration and the lexical model, as pure functions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from sqlml.bridge.runtimes.sentiment_labels import (
    LABELS,
    Calibration,
    LexicalModel,
    four_scores,
    labels_and_confidences,
    mixed_strength,
    segments,
)
from sqlml.bridge.training.sentiment import calibrate, expected_calibration_error, fit_lexical


def test_the_four_scores_sum_to_one_and_stay_in_range() -> None:
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(500), [0.0, 0.5, 1.0]])
    mixed = np.concatenate([rng.random(500) * (rng.random(500) < 0.5), [0.0, 1.0, 0.3]])
    for gamma in (1.0, 3.0, 8.0):
        scores = four_scores(p, mixed, gamma)
        assert scores.shape == (len(p), 4)
        assert np.allclose(scores.sum(axis=1), 1.0)
        assert (scores >= 0).all() and (scores <= 1).all()


def test_label_is_the_largest_score_and_confidence_is_that_score() -> None:
    scores = four_scores(np.array([0.97, 0.03, 0.5, 0.9]), np.array([0.0, 0.0, 0.0, 0.95]))
    labels, confidences = labels_and_confidences(scores)
    assert labels == ["positive", "negative", "neutral", "mixed"]
    assert confidences == pytest.approx(scores.max(axis=1).tolist())
    assert LABELS == ("positive", "negative", "neutral", "mixed")


@pytest.mark.parametrize(("p", "label"), [(0.8, "positive"), (0.2, "negative"), (0.5, "neutral"), (0.57, "neutral")])
def test_plain_praise_and_complaint_are_not_neutral(p: float, label: str) -> None:
    labels, _ = labels_and_confidences(four_scores(np.array([p]), np.zeros(1)))
    assert labels == [label]


def test_mixed_needs_a_clearly_positive_and_a_clearly_negative_segment() -> None:
    assert mixed_strength([0.95]) == 0.0  # one segment is never mixed
    assert mixed_strength([0.95, 0.05]) == pytest.approx(0.9)
    assert mixed_strength([0.95, 0.9, 0.8]) == 0.0
    assert mixed_strength([0.7, 0.4]) == pytest.approx(0.2)


def test_segments_cut_sentences_and_contrast_clauses() -> None:
    assert segments("Great taste. Awful price!") == ["Great taste", "Awful price!"]
    assert segments("The flavor is great but the price is too high.") == [
        "The flavor is great",
        "the price is too high",
    ]
    assert segments("Tastes wonderful; half of the cans were dented") == [
        "Tastes wonderful",
        "half of the cans were dented",
    ]
    assert segments("Highly recommended.") == ["Highly recommended"]
    assert segments("  ") == []


def test_calibration_is_the_identity_by_default_and_stacks_logits() -> None:
    p = np.array([0.1, 0.5, 0.9])
    assert Calibration()(p) == pytest.approx(p)
    stacked = Calibration(encoder_weight=1.0, lexical_weight=1.0, bias=0.0)(np.array([0.5]), np.array([2.0]))
    assert stacked == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert (
        Calibration.from_params(Calibration(2.0, 0.5, -1.0).as_params()).as_params()
        == Calibration(2.0, 0.5, -1.0).as_params()
    )


def test_calibrate_fixes_an_overconfident_model() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(4000) < 0.6).astype(int)
    true_logit = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1.0, len(y))
    overconfident = 1 / (1 + np.exp(-4.0 * true_logit))
    fitted = calibrate(overconfident[:2000], None, y[:2000])
    after = fitted(overconfident[2000:])
    assert expected_calibration_error(after, y[2000:]) < expected_calibration_error(overconfident[2000:], y[2000:]) / 2
    assert calibrate(overconfident[:10], None, np.ones(10, dtype=int)).as_params() == Calibration().as_params()


def test_expected_calibration_error_of_simple_cases() -> None:
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([0, 0])) == pytest.approx(0.9)


def test_lexical_model_matches_sklearn() -> None:
    texts = [
        "Great coffee, I love it", "Awful taste, never again", "great value and great taste", "stale and awful",
        "Café crème was lovely", "not great, not awful", "I love this tea", "never buy this, awful",
    ]  # fmt: skip
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, strip_accents="unicode")
    classifier = LogisticRegression(C=10.0).fit(vectorizer.fit_transform(texts), labels)
    ours = LexicalModel.from_json(LexicalModel.from_sklearn(vectorizer, classifier).to_json())
    probe = [*texts, "Cafe CREME, great great great", "nothing known here", ""]
    assert ours.logits(probe) == pytest.approx(classifier.decision_function(vectorizer.transform(probe)), abs=1e-9)
    assert isinstance(fit_lexical(texts * 2, np.concatenate([labels, labels])), LexicalModel)

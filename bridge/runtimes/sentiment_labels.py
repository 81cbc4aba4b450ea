"""From model scores to Amazon Comprehend's answer: four scores that sum to 1 and the label.

The training data only says whether a review got 5 stars, so the four labels are derived, in
three documented steps, from calibrated probabilities (`p` below is P(positive) after
calibration, i.e. after the stacked logistic regression the trainer fits on its validation slice:
`p = sigmoid(encoder_weight * logit(p_encoder) + lexical_weight * lexical_logit + bias)`):

1. **mixed** needs two sides. The text is cut into sentences and contrast clauses (`segments`:
   sentence ends, semicolons, "but", "however", "although", "though", "yet"). With two or more
   segments, each is scored alone (by the encoder alone, calibrated on its own: `segment_calibration`);
   the strength of a side is `|2q - 1|` of its strongest segment,
   and `mixed = min(strongest positive strength, strongest negative strength)`: high only when
   one part is clearly positive and another clearly negative. One segment: `mixed = 0`.
2. **neutral** is weak polarity of the whole text: `neutral = (1 - mixed) * (1 - |2p - 1|) ** gamma`.
   `gamma` (manifest `params.labels.neutral_gamma`) sets the width of the band: larger means
   narrower, so plain praise or complaint with p around 0.8 / 0.2 is not neutral.
3. what is left is split by polarity: `positive = rest * p`, `negative = rest * (1 - p)` with
   `rest = 1 - mixed - neutral`.

The label is the largest score and `confidence` is that score, so both follow Comprehend's shape.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

from sqlml.sql.sentiment import SCORE_FIELDS, SENTIMENT_LABELS

LABELS = SENTIMENT_LABELS  # the label set and its score columns are defined once, for every surface
SCORE_COLUMNS = SCORE_FIELDS
DEFAULT_NEUTRAL_GAMMA = 4.0  # chosen among 2, 3, 4, 6 on the 86-sentence probe set (bench/sentiment_probe.py)

_SEGMENT = re.compile(r"(?<=[.!?;])\s+|;\s*|,?\s+\b(?:but|however|although|though|yet)\b,?\s+", re.IGNORECASE)


def segments(text: str) -> list[str]:
    """Sentences and contrast clauses of `text` (pieces of at most two characters are dropped)."""
    pieces = (piece.strip(" .,;") for piece in _SEGMENT.split(text.strip()))
    return [piece for piece in pieces if len(piece) > 2]


def logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(clipped / (1 - clipped)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64))))


def four_scores(p: np.ndarray, mixed: np.ndarray, neutral_gamma: float = DEFAULT_NEUTRAL_GAMMA) -> np.ndarray:
    """(n, 4) scores in LABELS order from calibrated P(positive) and the mixed strength; rows sum to 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    mixed = np.clip(np.asarray(mixed, dtype=np.float64), 0.0, 1.0)
    neutral = (1.0 - mixed) * (1.0 - np.abs(2.0 * p - 1.0)) ** neutral_gamma
    rest = 1.0 - mixed - neutral
    return np.column_stack([rest * p, rest * (1.0 - p), neutral, mixed])


def mixed_strength(segment_p: Sequence[float] | np.ndarray) -> float:
    """min(strongest positive, strongest negative) segment strength, |2q - 1|; 0 with < 2 segments."""
    if len(segment_p) < 2:
        return 0.0
    q = np.asarray(segment_p, dtype=np.float64)
    positive = float(np.max(2.0 * q - 1.0))
    negative = float(np.max(1.0 - 2.0 * q))
    return max(0.0, min(positive, negative))


def labels_and_confidences(scores: np.ndarray) -> tuple[list[str], list[float]]:
    best = np.argmax(scores, axis=1)
    return [LABELS[i] for i in best], [float(scores[row, i]) for row, i in enumerate(best)]


class Calibration:
    """The stacked logistic regression: encoder logit, optional lexical logit, bias."""

    def __init__(self, encoder_weight: float = 1.0, lexical_weight: float = 0.0, bias: float = 0.0):
        self.encoder_weight, self.lexical_weight, self.bias = encoder_weight, lexical_weight, bias

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> Calibration:
        params = params or {}
        return cls(
            float(params.get("encoder_weight", 1.0)),
            float(params.get("lexical_weight", 0.0)),
            float(params.get("bias", 0.0)),
        )

    def as_params(self) -> dict[str, float]:
        return {"encoder_weight": self.encoder_weight, "lexical_weight": self.lexical_weight, "bias": self.bias}

    def __call__(self, p_encoder: np.ndarray, lexical_logit: np.ndarray | None = None) -> np.ndarray:
        z = self.encoder_weight * logit(p_encoder) + self.bias
        if lexical_logit is not None and self.lexical_weight:
            z = z + self.lexical_weight * np.asarray(lexical_logit, dtype=np.float64)
        return sigmoid(z)


class LexicalModel:
    """TF-IDF (1-2 grams, sublinear tf, l2) + logistic regression, stored as plain JSON.

    The analyzer is sklearn's default word analyzer (lowercase, unicode accents stripped, tokens
    of two or more word characters); `tests/sentiment` checks it against sklearn's own
    `TfidfVectorizer`, so serving needs no pickle and no scikit-learn.
    """

    TOKEN = re.compile(r"(?u)\b\w\w+\b")

    def __init__(self, vocabulary: dict[str, int], idf: Sequence[float], coef: Sequence[float], intercept: float):
        self.vocabulary = vocabulary
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)

    @classmethod
    def from_sklearn(cls, vectorizer: Any, classifier: Any) -> LexicalModel:
        vocabulary = {str(term): int(i) for term, i in vectorizer.vocabulary_.items()}
        return cls(vocabulary, vectorizer.idf_.tolist(), classifier.coef_[0].tolist(), float(classifier.intercept_[0]))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LexicalModel:
        return cls(data["vocabulary"], data["idf"], data["coef"], data["intercept"])

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "tfidf-logistic",
            "ngram_range": [1, 2],
            "sublinear_tf": True,
            "vocabulary": self.vocabulary,
            "idf": self.idf.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
        }

    @classmethod
    def terms(cls, text: str) -> list[str]:
        folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
        tokens = cls.TOKEN.findall(folded)
        return tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty(len(texts), dtype=np.float64)
        for row, text in enumerate(texts):
            counts: dict[int, int] = {}
            for term in self.terms(text):
                index = self.vocabulary.get(term)
                if index is not None:
                    counts[index] = counts.get(index, 0) + 1
            if not counts:
                out[row] = self.intercept
                continue
            indices = np.fromiter(counts, dtype=np.int64)
            weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * self.idf[indices]
            out[row] = self.intercept + float(weights @ self.coef[indices]) / math.sqrt(float(weights @ weights))
        return out

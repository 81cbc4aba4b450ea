"""What `ml.sentiment` returns on every surface, in Amazon Comprehend's shape.

The label is one of `SENTIMENT_LABELS`, `confidence` is that label's probability, and one score a
label (`score_positive`, ...) gives the whole distribution, summing to 1. The bridge's sentiment
runtime writes these columns, PostgreSQL's `ml.sentiment_result` and `ml.sentiment_batch` return
them (a drift test reads the installed types), and the rewriter rebuilds the result from them.
A version trained before the scores existed answers label and confidence; its scores are NULL.

`ml.sentiment(text, language)` takes Aurora's `aws_comprehend.detect_sentiment(text, 'en')`
form: the model reads English, so `language_error` refuses any other code.

Standard library only: the PostgreSQL helper is built with this very module.
"""

from __future__ import annotations

SENTIMENT_MODEL = "sentiment"  # the model ml.sentiment scores unless sqlml.sentiment_model names another
SENTIMENT_LABELS = ("positive", "negative", "neutral", "mixed")
SCORE_FIELDS = tuple(f"score_{label}" for label in SENTIMENT_LABELS)
SENTIMENT_FIELDS = ("label", "confidence", *SCORE_FIELDS)
SENTIMENT_LANGUAGES = ("en",)
# The refusal of another language; DuckDB's macro splices the given code in at `{language}` too.
LANGUAGE_ERROR = (
    "ml.sentiment reads " + ", ".join(f"'{code}'" for code in SENTIMENT_LANGUAGES) + " only, not '{language}'"
    " (the sentiment model was trained on English reviews)"
)


def language_error(language: object) -> str | None:
    """Why `language` cannot be scored (None when it can): an ISO 639-1 code the model reads,
    compared without case and surrounding blanks ('en', 'EN ')."""
    code = language.strip().lower() if isinstance(language, str) else None
    if code in SENTIMENT_LANGUAGES:
        return None
    return LANGUAGE_ERROR.replace("{language}", str(language))

"""The names schema `ml` defines itself, on either engine: no model's function may take one.

A model named like one of these (a model called `sync`, or `predict`) gets no function of its
own; it stays reachable through `ml.predict('<name>', row)`. The list is the same on PostgreSQL
and DuckDB so that a model has the same functions on both. A drift test compares it with the
functions the installed extension and the DuckDB registration really define
(tests/postgres/test_sql_surface_drift.py, tests/udfs/test_macros.py). Standard library only: the
PostgreSQL helper is built with this module.
"""

from __future__ import annotations

from sqlml.sql.sentiment import SENTIMENT_MODEL

RESERVED_FUNCTIONS = frozenset(
    {
        # both engines
        "predict",
        "explain",
        "forecast",
        "models",
        "evaluate",
        # DuckDB (PostgreSQL lists jobs with SQL on ml.job)
        "jobs",
        # PostgreSQL
        "sentiment_batch",
        "predict_batch",
        "predict_query",
        "train",
        "job",
        "sync",
        "deploy",
        "rollback",
        "set_token",
        "health",
        "grant",
        "revoke",
    }
)

# Model functions PostgreSQL's extension defines itself: `ml.sentiment(text)` scores the model
# named `sentiment` and has a batch twin (`ml.sentiment_batch`) that the rewriter uses, so ml.sync()
# generates nothing for that model. On DuckDB the same call is the model's generated macro; both
# return (label, confidence).
BUILTIN_MODEL_FUNCTIONS = frozenset({SENTIMENT_MODEL})

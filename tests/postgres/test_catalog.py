"""What `\\df+ ml.*` shows a person: every function's source is a few lines (the helper module lives
in a private table, not in a function body), and documented options are ones the code accepts."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]


def test_df_plus_is_readable(conn: psycopg.Connection) -> None:
    largest = conn.execute(
        "SELECT p.oid::regprocedure::text, length(p.prosrc) FROM pg_proc p"
        " WHERE p.pronamespace = 'ml'::regnamespace ORDER BY length(p.prosrc) DESC LIMIT 1"
    ).fetchone()
    assert largest is not None and largest[1] < 3_000, largest  # it was 3.3 MB: the embedded helper


def test_the_forecast_comment_names_quantiles_the_model_accepts(conn: psycopg.Connection) -> None:
    comment = conn.execute(
        "SELECT obj_description('ml.forecast(text, text, integer, text[], text, text)'::regprocedure)"
    )
    text = comment.fetchone()[0]  # type: ignore[index]
    assert "q0.05" not in text and "p2.5" in text

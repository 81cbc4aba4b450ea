"""`(ml.sentiment(body)).*` is expanded by PostgreSQL into one call per output column; the
extension answers the repeated calls of a row from the first, so each row costs one request (the
bridge's own request counter says so), and a new statement never reuses an old answer."""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]

TEXTS = "(VALUES ('good'), ('bad'), ('great'), ('good'))"


def _sentiment_requests(bridge_url: str) -> float:
    text = httpx.get(f"{bridge_url}/metrics", timeout=10).text
    counts = re.findall(
        r'^sqlml_requests_total\{[^}]*model="sentiment"[^}]*operation="predict"[^}]*\} (\S+)$', text, re.M
    )
    return sum(float(c) for c in counts)


def test_star_expansion_costs_one_request_per_row(conn: psycopg.Connection, bridge_url: str) -> None:
    before = _sentiment_requests(bridge_url)
    rows = conn.execute(f"SELECT (ml.sentiment(t)).* FROM {TEXTS} v(t)").fetchall()
    assert [r[0] for r in rows] == ["positive", "negative", "positive", "positive"]
    assert _sentiment_requests(bridge_url) - before == 4  # two output columns, four rows, four requests

    before = _sentiment_requests(bridge_url)
    conn.execute("SELECT (ml.sentiment('good')).label").fetchall()
    conn.execute("SELECT (ml.sentiment('good')).label").fetchall()
    assert _sentiment_requests(bridge_url) - before == 2  # a new statement asks again

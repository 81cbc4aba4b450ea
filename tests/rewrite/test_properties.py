"""Property tests: random queries over the demo tables, each either left unchanged or rewritten
into a query that returns the same rows (and column names) on PostgreSQL with the stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlml.sql.catalog import Catalog
from sqlml.sql.rewrite import rewrite
from tests.rewrite.conftest import demo_catalog
from tests.rewrite.test_golden import assert_same_result

REVIEW_ITEMS = [
    "r.review_id",
    "r.product",
    "(ml.sentiment(r.body)).label",
    "(ml.sentiment(r.body)).confidence AS confidence",
    "ml.sentiment(r.body)",
    "(ml.sentiment(r.product || r.stars)).label AS mixed",
    "length((ml.sentiment(lower(r.body))).label) AS n",
    "CASE WHEN r.stars > 3 THEN (ml.sentiment(r.body)).label END AS guarded",
]
REVIEW_FILTERS = [
    "r.stars > 2",
    "r.product IN ('p1', 'p2')",
    "r.body IS NOT NULL",
    "(ml.sentiment(r.body)).label <> 'neutral'",
    "(ml.sentiment(r.body)).confidence > 0.3",
    "r.review_id % 3 = 0",
]
LEAD_ITEMS = [
    "l.lead_id",
    "ml.lead_score(l.mostype, l.maanthui, l.mgemomv) AS score",
    "ml.lead_nulls(l.mostype, l.maanthui, l.mgemomv) AS missing_scored",
    "(ml.churn(l.tenure, l.plan)).churned",
    "ml.predict('lead_score', jsonb_build_object('mostype', l.mostype)) ->> 'probability' AS p",
]
LEAD_FILTERS = [
    "l.tenure > 5",
    "l.plan IS NOT NULL",
    "ml.lead_score(l.mostype, l.maanthui, l.mgemomv) > 0.1",
    "ml.lead_nulls(l.mostype, l.maanthui, l.mgemomv) > 0.1",
]


@st.composite
def queries(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        table, key, items, filters = "reviews r", "r.review_id", REVIEW_ITEMS, REVIEW_FILTERS
    else:
        table, key, items, filters = "leads l", "l.lead_id", LEAD_ITEMS, LEAD_FILTERS
    chosen = draw(st.lists(st.sampled_from(items), min_size=1, max_size=3, unique=True))
    where = draw(st.lists(st.sampled_from(filters), max_size=2, unique=True))
    shape = draw(st.sampled_from(["plain", "distinct", "grouped", "ordered_limit", "limit", "derived"]))
    where_sql = f" WHERE {' AND '.join(where)}" if where else ""
    if shape == "grouped":
        return f"SELECT {chosen[0]}, count(*) AS rows FROM {table}{where_sql} GROUP BY 1"
    if shape == "distinct":
        return f"SELECT DISTINCT {', '.join(chosen)} FROM {table}{where_sql}"
    if shape == "ordered_limit":
        n = draw(st.integers(min_value=0, max_value=12))
        return f"SELECT {key} AS k, {', '.join(chosen)} FROM {table}{where_sql} ORDER BY {key} DESC LIMIT {n}"
    if shape == "limit":
        # without ORDER BY the rows LIMIT keeps are up to the engine: compare counts only
        return f"SELECT count(*) AS n FROM (SELECT {', '.join(chosen)} FROM {table}{where_sql} LIMIT 5) AS v"
    if shape == "derived":
        return f"SELECT v.*, 1 AS one FROM (SELECT {', '.join(chosen)} FROM {table}{where_sql}) AS v"
    return f"SELECT {', '.join(chosen)} FROM {table}{where_sql}"


@pytest.fixture(scope="module")
def connection(standin_dsn: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(standin_dsn, autocommit=True) as connection:
        yield connection


CATALOG: Catalog = demo_catalog()


@pytest.mark.postgres
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries())
def test_rewrite_returns_the_same_rows_or_leaves_the_query_alone(query: str, connection: Any) -> None:
    result = rewrite(query, CATALOG)
    if not result.changed:
        assert result.sql == query and result.reason
        return
    assert "ml.sentiment(" not in result.sql and "ml.lead_score(" not in result.sql
    assert "ml.lead_nulls(" not in result.sql
    assert_same_result(connection, query, result.sql)


@given(query=queries())
@settings(max_examples=150, deadline=None)
def test_rewrite_output_parses_and_is_stable(query: str) -> None:
    """The rewrite is deterministic and a rewritten query has nothing left to rewrite."""
    first, second = rewrite(query, CATALOG), rewrite(query, CATALOG)
    assert first == second
    if first.changed:
        again = rewrite(first.sql, CATALOG)
        assert not again.changed and again.reason == "no per-row model calls"

"""The rewriter's golden cases executed on the real thing: PostgreSQL with the sqlml extension
and a real bridge. Each case's original and rewritten query must return the same rows and
column names, and the rewrite must match the reviewed golden SQL. (Cases over the stand-in's
extra models — churn, the 3-feature lead_score, ml.predict with partial features — run on the
stand-in in tests/rewrite; here the typed case uses the test bridge's 4-feature lead model.)"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import sqlglot

from sqlml.sql.catalog import Catalog
from sqlml.sql.rewrite import rewrite
from tests.rewrite.golden_cases import load_cases, normalize

DEMO_TABLES = (__import__("pathlib").Path(__file__).parents[1] / "rewrite" / "demo_tables.sql").read_text()
OTHER_MODELS = ("lead_score", "churn", "ml.predict(")
CASES = [c for c in load_cases() if not c.expect_unchanged and not any(m in c.input_sql for m in OTHER_MODELS)]
TYPED_QUERIES = [
    "SELECT id, ml.lead_score(mostype, maothers, mgemleef, ppersaut) AS score FROM leads",
    "SELECT id, ml.lead_score(mostype, maothers, mgemleef, ppersaut) FROM leads ORDER BY id DESC LIMIT 25",
    "SELECT mostype, avg(ml.lead_score(mostype, maothers, mgemleef, ppersaut)) AS s FROM leads GROUP BY mostype",
    "SELECT id, ml.predict('lead_score', jsonb_build_object('mostype', mostype, 'maothers', maothers, "
    "'mgemleef', mgemleef, 'ppersaut', ppersaut)) AS p FROM leads WHERE id < 300",
]


@pytest.fixture(scope="module")
def demo(database: str) -> Iterator[psycopg.Connection]:
    """The golden cases' tables in a schema of their own, first on the search path."""
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA IF NOT EXISTS rw")
        connection.execute("SET search_path = rw, public")
        if connection.execute("SELECT to_regclass('rw.reviews')").fetchone() == (None,):
            connection.execute(DEMO_TABLES)
        yield connection


def same_result(connection: psycopg.Connection, original: str, rewritten: str) -> None:
    from tests.rewrite.test_golden import fetch

    original_names, original_rows = fetch(connection, original)
    rewritten_names, rewritten_rows = fetch(connection, rewritten)
    assert rewritten_names == original_names
    if sqlglot.parse_one(original, read="postgres").args.get("order") is not None:
        assert rewritten_rows == original_rows
    else:
        assert sorted(map(repr, rewritten_rows)) == sorted(map(repr, original_rows))


def test_the_extension_catalog_knows_the_batchable_functions(demo: psycopg.Connection) -> None:
    catalog = Catalog.from_connection(demo)
    assert {"sentiment", "predict", "lead_score"} <= set(catalog.functions)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case_on_the_extension(case, demo: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    result = rewrite(case.input_sql, Catalog.from_connection(demo))
    assert result.changed
    assert normalize(result.sql) == normalize(case.expected_sql)
    same_result(demo, case.input_sql, result.sql)


@pytest.mark.parametrize("query", TYPED_QUERIES)
def test_typed_lead_score_on_the_extension(query: str, conn: psycopg.Connection) -> None:
    result = rewrite(query, Catalog.from_connection(conn))
    assert result.changed and "ml.predict_batch('lead_score'" in result.sql
    same_result(conn, query, result.sql)

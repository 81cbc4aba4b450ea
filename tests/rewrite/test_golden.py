"""Golden rewrite cases: the rewrite matches the reviewed expected SQL, and original and rewrite
return the same rows (and column names) on a real PostgreSQL with the pure-SQL stand-in."""

from __future__ import annotations

from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from sqlml.sql.catalog import Catalog
from sqlml.sql.rewrite import rewrite
from tests.rewrite.golden_cases import GoldenCase, load_cases

CASES = load_cases()


def without_comments(sql: str) -> str:
    return sqlglot.parse_one(sql, read="postgres").sql(dialect="postgres", comments=False)


def test_there_are_at_least_forty_rewritten_cases() -> None:
    assert sum(not case.expect_unchanged for case in CASES) >= 40
    assert all(case.expected_sql for case in CASES), "run python -m tests.rewrite.golden_cases"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rewrite_matches_golden(case: GoldenCase, catalog: Catalog) -> None:
    result = rewrite(case.input_sql, catalog)
    assert without_comments(result.sql) == without_comments(case.expected_sql)
    assert result.changed is (not case.expect_unchanged)
    assert result.reason


def fetch(connection: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        names = [column.name for column in cursor.description]
        return names, cursor.fetchall()


def per_row_calls(connection: Any) -> int:
    return int(connection.execute("SELECT last_value FROM ml.per_row_calls").fetchone()[0])


def assert_same_result(connection: Any, original: str, rewritten: str) -> None:
    """Same column names, and the same rows: in order when the query orders them, else as a multiset."""
    original_names, original_rows = fetch(connection, original)
    before = per_row_calls(connection)
    rewritten_names, rewritten_rows = fetch(connection, rewritten)
    assert per_row_calls(connection) == before, "the rewrite still calls a per-row function"
    assert rewritten_names == original_names
    ordered = sqlglot.parse_one(original, read="postgres").args.get("order") is not None
    if ordered:
        assert rewritten_rows == original_rows
    else:
        assert sorted(map(repr, rewritten_rows)) == sorted(map(repr, original_rows))


EXECUTED = [c for c in CASES if not c.expect_unchanged]


@pytest.mark.postgres
@pytest.mark.parametrize("case", EXECUTED, ids=[c.name for c in EXECUTED])
def test_golden_rows_match_on_postgres(case: GoldenCase, catalog: Catalog, standin: Any) -> None:
    result = rewrite(case.input_sql, catalog)
    assert result.changed
    assert_same_result(standin, case.input_sql, result.sql)


def test_golden_inputs_each_parse() -> None:
    for case in CASES:
        assert isinstance(sqlglot.parse_one(case.input_sql, read="postgres"), exp.Expression)

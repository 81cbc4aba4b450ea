"""Models with many inputs: PostgreSQL passes at most 100 arguments to a function, so the
rewrite must never build one `jsonb_build_object` call with more (85 Caravan features = 170)."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from sqlml.sql.catalog import Catalog, ModelFunction, SqlColumn
from sqlml.sql.rewrite import rewrite

WIDE = ModelFunction(
    name="wide_score",
    kind="typed",
    inputs=tuple(SqlColumn(f"f{i}", "bigint") for i in range(85)),
    outputs=(SqlColumn("probability", "double precision"),),
    model="wide_score",
)


def test_wide_typed_calls_stay_under_the_argument_limit() -> None:
    arguments = ", ".join(f"c{i}" for i in range(85))
    result = rewrite(f"SELECT id, ml.wide_score({arguments}) FROM t", Catalog.of(WIDE))
    assert result.changed, result.reason
    calls = [
        node
        for node in sqlglot.parse_one(result.sql, read="postgres").find_all(exp.Func)
        if node.sql(dialect="postgres").lower().startswith("jsonb_build_object(")
    ]
    assert len(calls) == 2  # 85 pairs in chunks of 50
    for call in calls:
        assert len(call.expressions) <= 100
    assert sum(len(call.expressions) for call in calls) == 170

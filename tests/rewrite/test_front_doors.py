"""The rewriter's front doors: the `sqlml sql rewrite` CLI, `sqlml.sql.postgres_connection.connect`, and
the catalog read from PostgreSQL's catalog."""

from __future__ import annotations

import ast
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import sqlml
import sqlml.sql.catalog as catalog_module
import sqlml.sql.rewrite as rewrite_module
from sqlml.cli import app
from sqlml.sql.catalog import SENTIMENT, Catalog, typed_function_from_model
from sqlml.sql.postgres_connection import connect
from sqlml.sql.rewrite import rewrite
from tests.rewrite.conftest import CHURN, LEAD_NULLS, LEAD_SCORE


def test_cli_prints_the_rewrite() -> None:
    result = CliRunner().invoke(app, ["sql", "rewrite"], input="SELECT id, ml.sentiment(body) FROM reviews")
    assert result.exit_code == 0, result.output
    assert "ml.sentiment_batch" in result.stdout


def test_cli_says_why_it_left_a_query_unchanged() -> None:
    query = "SELECT CASE WHEN id > 1 THEN ml.sentiment(body) END FROM reviews"
    result = CliRunner().invoke(app, ["sql", "rewrite"], input=query)
    assert result.exit_code == 0
    assert result.stdout.strip() == query
    assert "conditionally" in result.stderr


def test_cli_duckdb_needs_no_rewrite() -> None:
    result = CliRunner().invoke(app, ["sql", "rewrite", "--dialect", "duckdb"], input="SELECT ml.sentiment(b) FROM t")
    assert result.exit_code == 0
    assert "vectorized" in result.stderr


def test_unchanged_queries_are_logged(catalog: Catalog, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sqlml.rewrite"):
        result = rewrite("SELECT ml.sentiment(body || random()::text) FROM reviews", catalog)
    assert not result.changed
    assert any("left unchanged" in r.getMessage() and "volatile" in r.getMessage() for r in caplog.records)


def test_rewriter_imports_sqlglot_and_stdlib_only() -> None:
    """Superset imports the rewriter in its own venv: the modules themselves need only sqlglot."""
    for module in (rewrite_module, catalog_module):
        tree = ast.parse(Path(module.__file__ or "").read_text())
        imported = {n.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for n in node.names}
        imported |= {
            node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        assert imported - sys.stdlib_module_names <= {"sqlglot", "sqlml", "__future__"}


def test_catalog_from_models_follows_ml_sync() -> None:
    entry = {
        "name": "lead_score",
        "task": "classification",
        "signature": {
            "inputs": [{"name": "mostype", "type": "bigint"}, {"name": "maanthui", "type": "bigint"}],
            "outputs": [{"name": "probability", "type": "double"}],
        },
    }
    function = typed_function_from_model(entry)
    assert function is not None
    assert [i.name for i in function.inputs] == ["mostype", "maanthui"]
    assert function.outputs[0].sql_type == "double precision" and function.result_type is None
    assert typed_function_from_model({**entry, "task": "forecast"}) is None
    assert Catalog.from_models([entry]).lookup("LEAD_SCORE") == function


@pytest.mark.postgres
def test_catalog_from_connection_reads_pg_proc(standin: Any) -> None:
    catalog = Catalog.from_connection(standin)
    assert catalog.lookup("sentiment") == SENTIMENT
    assert catalog.lookup("lead_score") == LEAD_SCORE
    assert catalog.lookup("churn") == CHURN
    assert catalog.lookup("lead_nulls") == LEAD_NULLS  # proisstrict = false: NULL inputs are scored


@pytest.mark.postgres
def test_a_function_that_scores_nulls_is_batched_with_its_null_rows_scored(standin: Any) -> None:
    """A tabular model's typed function is not STRICT: the rewrite keys its batch by the jsonb
    object of the inputs (never NULL), so rows with a NULL input are scored in the batch too and
    get what the per-row call gives them, not NULL."""
    query = "SELECT l.lead_id, ml.lead_nulls(l.mostype, l.maanthui, l.mgemomv) AS p FROM leads l ORDER BY l.lead_id"
    result = rewrite(query, Catalog.from_connection(standin))
    assert result.changed, result.reason
    assert "jsonb_build_object" in result.sql.lower() and "ml.lead_nulls(" not in result.sql
    per_row = standin.execute(query).fetchall()
    before = standin.execute("SELECT last_value FROM ml.per_row_calls").fetchone()[0]
    batched = standin.execute(result.sql).fetchall()
    assert standin.execute("SELECT last_value FROM ml.per_row_calls").fetchone()[0] == before
    assert batched == per_row
    nulls = standin.execute("SELECT lead_id FROM leads WHERE mostype IS NULL").fetchall()
    assert nulls and all(p is not None for lead, p in batched if (lead,) in nulls)


@pytest.mark.postgres
@pytest.mark.parametrize("front_door", [connect, sqlml.connect], ids=["postgres_connection.connect", "sqlml.connect"])
def test_connect_rewrites_transparently(standin_dsn: str, front_door: Any) -> None:
    with front_door(standin_dsn, autocommit=True) as connection:
        before = connection.execute("SELECT last_value FROM ml.per_row_calls").fetchone()
        cursor = connection.execute(
            "SELECT review_id, (ml.sentiment(body)).label FROM reviews WHERE product = %(p)s ORDER BY review_id",
            {"p": "p1"},
        )
        rows = cursor.fetchall()
        assert cursor.last_rewrite is not None and "sentiment_batch" in cursor.last_rewrite
        after = connection.execute("SELECT last_value FROM ml.per_row_calls").fetchone()
        expected = connection.connection.execute(
            "SELECT review_id, (ml.sentiment(body)).label FROM reviews WHERE product = 'p1' ORDER BY review_id"
        ).fetchall()
    assert before == after
    assert rows == expected and len(rows) == 15


@pytest.mark.postgres
def test_connect_without_extension_runs_queries_as_written(standin_dsn: str) -> None:
    with connect(standin_dsn.replace("dbname=sqlml_rw_", "dbname=postgres application_name=sqlml_rw_")) as connection:
        assert not connection.catalog.functions
        assert connection.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.postgres
def test_the_row_form_is_batched_as_the_typed_call_it_stands_for(standin: Any) -> None:
    """`ml.lead_score(l)` over a source `l` reads l's input columns: the rewrite spells it with them,
    so the row form costs batch calls, not one call per row."""
    row_form = "SELECT l.lead_id, ml.lead_score(l) AS p FROM leads l ORDER BY l.lead_id"
    typed = "SELECT l.lead_id, ml.lead_score(l.mostype, l.maanthui, l.mgemomv) AS p FROM leads l ORDER BY l.lead_id"
    result = rewrite(row_form, Catalog.from_connection(standin))
    assert result.changed, result.reason
    before = standin.execute("SELECT last_value FROM ml.per_row_calls").fetchone()[0]
    batched = standin.execute(result.sql).fetchall()
    assert standin.execute("SELECT last_value FROM ml.per_row_calls").fetchone()[0] == before
    assert batched == standin.execute(typed).fetchall()

"""The installed extension and the Python package define one SQL surface.

The reserved names (sqlml/sql/reserved.py) must be exactly the public functions schema ml defines
on one engine or the other: a function the extension adds without reserving its name would be
replaced by ml.sync() for a model of that name, and a stale reserved name hides models for nothing.
The helper the database runs must be the one the package builds today (a stale install runs old
rules).
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

from sqlml.sql.reserved import BUILTIN_MODEL_FUNCTIONS, RESERVED_FUNCTIONS
from sqlml.sql.sentiment import SENTIMENT_FIELDS
from sqlml.sql.spec import FORECAST_ARGUMENTS
from sqlml.udfs.macros import GENERIC_MACROS

sys.path.insert(0, str(Path(__file__).parents[2] / "extension"))
from build_helper import build

pytestmark = pytest.mark.postgres

EXTENSION_FUNCTIONS_SQL = """
SELECT DISTINCT p.proname
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'ml'
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'sqlml'
WHERE p.proname !~ '^_'
"""


def test_every_public_extension_function_is_reserved(conn: psycopg.Connection) -> None:
    defined = {row[0] for row in conn.execute(EXTENSION_FUNCTIONS_SQL).fetchall()}
    assert "sync" in defined  # the query reads the extension's functions at all
    assert defined - RESERVED_FUNCTIONS - BUILTIN_MODEL_FUNCTIONS == set()
    assert defined >= BUILTIN_MODEL_FUNCTIONS


def test_every_reserved_name_is_defined_by_an_engine(conn: psycopg.Connection) -> None:
    defined = {row[0] for row in conn.execute(EXTENSION_FUNCTIONS_SQL).fetchall()}
    assert RESERVED_FUNCTIONS - defined - set(GENERIC_MACROS) == set()


def test_ml_forecast_takes_the_arguments_duckdb_takes(conn: psycopg.Connection) -> None:
    """PostgreSQL's ml.forecast and DuckDB's forecast macros read the same FORECAST_ARGUMENTS."""
    names = conn.execute("SELECT proargnames[1:6] FROM pg_catalog.pg_proc WHERE oid = 'ml.forecast'::regproc")
    assert names.fetchone() == (["model", *FORECAST_ARGUMENTS],)


def test_ml_sentiment_returns_the_sentiment_fields(conn: psycopg.Connection) -> None:
    """ml.sentiment_result and ml.sentiment_batch carry sqlml/sql/sentiment.py's fields, in order."""
    attributes = conn.execute(
        "SELECT array_agg(attname ORDER BY attnum) FROM pg_catalog.pg_attribute"
        " WHERE attrelid = 'ml.sentiment_result'::regclass AND attnum > 0 AND NOT attisdropped"
    ).fetchone()
    assert attributes == (list(SENTIMENT_FIELDS),)
    batch = conn.execute(
        "SELECT proargnames[2:] FROM pg_catalog.pg_proc WHERE oid = 'ml.sentiment_batch(text[])'::regprocedure"
    ).fetchone()
    assert batch == (["ord", *SENTIMENT_FIELDS],)


def test_the_database_runs_the_helper_the_package_builds(conn: psycopg.Connection) -> None:
    installed = conn.execute("SELECT source FROM sqlml_private.helper_source").fetchone()
    assert installed is not None
    assert installed[0].strip() == build().strip()
